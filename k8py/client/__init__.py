"""The client every k8py component uses to talk to the API server.

``rest`` is the async REST client, ``resources`` the resource descriptors it is keyed by,
``config`` kubeconfig loading, ``errors`` the Status exceptions, ``events`` the event recorder;
``cache`` (Indexer), ``informer`` (Reflector, SharedIndexInformer, SharedInformerFactory),
``workqueue`` (rate-limited work queues) and ``leaderelection`` (Lease-based LeaderElector) are
client-go's controller machinery.
"""

from k8py.client.cache import (
    NAMESPACE_INDEX,
    DeletedFinalStateUnknown,
    Indexer,
    IndexFunc,
    meta_namespace_index_func,
    meta_namespace_key,
    split_meta_namespace_key,
)
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
from k8py.client.informer import (
    FilteringResourceEventHandler,
    Reflector,
    ResourceEventHandler,
    ResourceEventHandlerFuncs,
    SharedIndexInformer,
    SharedInformerFactory,
    wait_for_cache_sync,
)
from k8py.client.leaderelection import LeaderElector
from k8py.client.resources import Resource
from k8py.client.rest import PatchType, RESTClient, Watch, WatchEvent
from k8py.client.workqueue import (
    BucketRateLimiter,
    DelayingQueue,
    ItemExponentialFailureRateLimiter,
    ItemFastSlowRateLimiter,
    MaxOfRateLimiter,
    RateLimiter,
    RateLimitingQueue,
    ShutDown,
    WorkQueue,
    default_controller_rate_limiter,
)

__all__ = [
    "NAMESPACE_INDEX",
    "NORMAL",
    "WARNING",
    "APIError",
    "AlreadyExists",
    "BucketRateLimiter",
    "ClientConfig",
    "ClientError",
    "ConfigError",
    "Conflict",
    "DelayingQueue",
    "DeletedFinalStateUnknown",
    "EventCorrelator",
    "EventRecorder",
    "FilteringResourceEventHandler",
    "Gone",
    "IndexFunc",
    "Indexer",
    "Invalid",
    "ItemExponentialFailureRateLimiter",
    "ItemFastSlowRateLimiter",
    "LeaderElector",
    "MaxOfRateLimiter",
    "NotFound",
    "PatchType",
    "RESTClient",
    "RateLimiter",
    "RateLimitingQueue",
    "Reflector",
    "Resource",
    "ResourceEventHandler",
    "ResourceEventHandlerFuncs",
    "SharedIndexInformer",
    "SharedInformerFactory",
    "ShutDown",
    "TransportError",
    "Watch",
    "WatchEvent",
    "WorkQueue",
    "default_controller_rate_limiter",
    "is_already_exists",
    "is_conflict",
    "is_gone",
    "is_not_found",
    "load_kubeconfig",
    "meta_namespace_index_func",
    "meta_namespace_key",
    "object_reference",
    "split_meta_namespace_key",
    "wait_for_cache_sync",
]
