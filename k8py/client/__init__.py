"""The client every k8py component uses to talk to the API server.

``rest`` is the async REST client, ``resources`` the resource descriptors it is keyed by,
``config`` kubeconfig loading, ``errors`` the Status exceptions, ``events`` the event recorder.
"""

from k8py.client.config import ClientConfig, ConfigError, load_kubeconfig
from k8py.client.errors import (
    AlreadyExists,
    APIError,
    ClientError,
    Conflict,
    Gone,
    Invalid,
    NotFound,
    TransportError,
    is_already_exists,
    is_conflict,
    is_gone,
    is_not_found,
)
from k8py.client.events import NORMAL, WARNING, EventCorrelator, EventRecorder, object_reference
from k8py.client.resources import Resource
from k8py.client.rest import PatchType, RESTClient, Watch, WatchEvent

__all__ = [
    "NORMAL",
    "WARNING",
    "APIError",
    "AlreadyExists",
    "ClientConfig",
    "ClientError",
    "ConfigError",
    "Conflict",
    "EventCorrelator",
    "EventRecorder",
    "Gone",
    "Invalid",
    "NotFound",
    "PatchType",
    "RESTClient",
    "Resource",
    "TransportError",
    "Watch",
    "WatchEvent",
    "is_already_exists",
    "is_conflict",
    "is_gone",
    "is_not_found",
    "load_kubeconfig",
    "object_reference",
]
