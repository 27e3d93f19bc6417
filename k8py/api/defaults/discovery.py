"""Defaulting of discovery.k8s.io/v1 (pkg/apis/discovery/v1/defaults.go)."""

from __future__ import annotations

from k8py.api.defaults.core import Obj, set_if_unset


def default_endpoint_slice(slice_: Obj) -> None:
    for port in slice_.get("ports") or []:
        set_if_unset(port, "name", "")
        set_if_unset(port, "protocol", "TCP")


DEFAULTERS = {("v1", "EndpointSlice"): default_endpoint_slice}
