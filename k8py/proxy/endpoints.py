"""Endpoints as kube-proxy sees them (upstream pkg/proxy/endpoint.go, endpointslicecache.go,
endpointschangetracker.go, topology.go).

EndpointSlices are cached per Service and per slice name, in two layers: ``applied`` (what
the last sync used) and ``pending`` (changed since). A sync checks the pending slices out:
for every Service with pending slices, the endpoints of the port before and after, so the
proxier rewrites only those Services. An endpoint is ``ip:port`` with its conditions
(ready, serving, terminating) and whether it runs on this node (its ``nodeName``).
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass, field
from datetime import datetime

from k8py.proxy.serviceport import NamespacedName, Obj, ServicePortInfo, ServicePortName

log = logging.getLogger(__name__)

LABEL_SERVICE_NAME = "kubernetes.io/service-name"
LAST_CHANGE_TRIGGER_TIME = "endpoints.kubernetes.io/last-change-trigger-time"


@dataclass(frozen=True, slots=True)
class EndpointInfo:
    """One endpoint of a Service port (upstream BaseEndpointInfo)."""

    ip: str
    port: int
    is_local: bool = False
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    node_name: str = ""
    zone: str = ""

    def __str__(self) -> str:
        return f"{self.ip}:{self.port}"


EndpointsMap = dict[ServicePortName, list[EndpointInfo]]


@dataclass(frozen=True, slots=True)
class _SliceEndpoint:
    addresses: tuple[str, ...]
    node_name: str
    zone: str
    ready: bool
    serving: bool
    terminating: bool


@dataclass(frozen=True, slots=True)
class _SliceInfo:
    """What kube-proxy keeps of an EndpointSlice: (port name, port, protocol)s and endpoints."""

    ports: tuple[tuple[str, int, str], ...]
    endpoints: tuple[_SliceEndpoint, ...]
    remove: bool = False


def _slice_info(endpoint_slice: Obj, remove: bool) -> _SliceInfo:
    ports = tuple(sorted(
        ((p.get("name") or ""), int(p.get("port") or 0), p.get("protocol") or "TCP")
        for p in endpoint_slice.get("ports") or []
    ))
    endpoints: tuple[_SliceEndpoint, ...] = ()
    if not remove:
        eps = []
        for ep in endpoint_slice.get("endpoints") or []:
            cond = ep.get("conditions") or {}
            eps.append(_SliceEndpoint(
                addresses=tuple(ep.get("addresses") or ()),
                node_name=ep.get("nodeName") or "",
                zone=ep.get("zone") or "",
                # upstream: nil ready/serving mean true, nil terminating false
                ready=cond.get("ready") is not False,
                serving=cond.get("serving") is not False,
                terminating=cond.get("terminating") is True,
            ))
        endpoints = tuple(sorted(eps, key=lambda e: e.addresses))
    return _SliceInfo(ports, endpoints, remove)


@dataclass
class _SliceTracker:
    applied: dict[str, _SliceInfo] = field(default_factory=dict)
    pending: dict[str, _SliceInfo] = field(default_factory=dict)


def _service_key(endpoint_slice: Obj) -> NamespacedName | None:
    meta = endpoint_slice.get("metadata") or {}
    service = (meta.get("labels") or {}).get(LABEL_SERVICE_NAME)
    if not service or not meta.get("namespace") or not meta.get("name"):
        return None
    return NamespacedName(meta["namespace"], service)


class EndpointSliceCache:
    """EndpointSlices grouped by Service, applied and pending (upstream EndpointSliceCache)."""

    def __init__(self, hostname: str) -> None:
        self.hostname = hostname
        self.trackers: dict[NamespacedName, _SliceTracker] = {}

    def update_pending(self, endpoint_slice: Obj, remove: bool) -> NamespacedName | None:
        """Record a slice's new state; the Service's key if that changes anything."""
        key = _service_key(endpoint_slice)
        if key is None:
            log.warning("ignoring EndpointSlice %s without a %s label",
                        endpoint_slice.get("metadata", {}).get("name"), LABEL_SERVICE_NAME)
            return None
        name = endpoint_slice["metadata"]["name"]
        info = _slice_info(endpoint_slice, remove)
        tracker = self.trackers.setdefault(key, _SliceTracker())
        known = tracker.pending.get(name) or tracker.applied.get(name)
        if known is not None:
            changed = known != info
        else:
            changed = not remove
        if changed:
            tracker.pending[name] = info
        return key if changed else None

    def pending(self) -> bool:
        return any(t.pending for t in self.trackers.values())

    def checkout_changes(self) -> dict[NamespacedName, tuple[EndpointsMap, EndpointsMap]]:
        """Mark every pending slice applied; per changed Service, its endpoints before and after."""
        changes = {}
        for key, tracker in list(self.trackers.items()):
            if not tracker.pending:
                continue
            previous = self._endpoints_map(key, tracker.applied)
            for name, info in tracker.pending.items():
                if info.remove:
                    tracker.applied.pop(name, None)
                else:
                    tracker.applied[name] = info
            tracker.pending.clear()
            changes[key] = (previous, self._endpoints_map(key, tracker.applied))
            if not tracker.applied:
                del self.trackers[key]
        return changes

    def _endpoints_map(self, key: NamespacedName, slices: dict[str, _SliceInfo]) -> EndpointsMap:
        by_port: dict[ServicePortName, dict[str, EndpointInfo]] = {}
        for info in slices.values():
            for port_name, port, protocol in info.ports:
                if not port:
                    continue
                endpoints = by_port.setdefault(ServicePortName(key, port_name, protocol), {})
                for ep in info.endpoints:
                    if not ep.addresses or not _is_ipv4(ep.addresses[0]):
                        continue
                    is_local = bool(self.hostname) and ep.node_name == self.hostname
                    endpoint = EndpointInfo(ep.addresses[0], port, is_local, ep.ready, ep.serving, ep.terminating,
                                            ep.node_name, ep.zone)
                    # the same endpoint in two slices (moving between them): a local one wins
                    if str(endpoint) not in endpoints or is_local:
                        endpoints[str(endpoint)] = endpoint
        return {
            name: sorted(eps.values(), key=_endpoint_sort_key)
            for name, eps in by_port.items() if eps
        }


def _endpoint_sort_key(ep: EndpointInfo) -> str:
    return str(ep)  # upstream sorts by the endpoint string


def _is_ipv4(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).version == 4
    except ValueError:
        return False


@dataclass
class UpdateEndpointsMapResult:
    """The Services whose endpoints changed and, per Service, the trigger times of the changes
    (the EndpointSlices' last-change-trigger-time annotations) for network programming latency."""

    updated_services: set[NamespacedName]
    last_change_trigger_times: dict[NamespacedName, list[datetime]]


class EndpointsChangeTracker:
    """Accumulates EndpointSlice changes between syncs (upstream EndpointsChangeTracker)."""

    def __init__(self, hostname: str) -> None:
        self.cache = EndpointSliceCache(hostname)
        self.last_change_trigger_times: dict[NamespacedName, list[datetime]] = {}
        self.tracker_start_time = datetime.now().astimezone()

    def endpoint_slice_update(self, endpoint_slice: Obj, remove: bool) -> bool:
        """Record an EndpointSlice's add/update (or delete with ``remove``); True if the rules
        of its Service need a change."""
        key = self.cache.update_pending(endpoint_slice, remove)
        if key is None:
            return False
        if remove:
            # a deleted slice's annotation tells the time of its last update, not of this change
            self.last_change_trigger_times.pop(key, None)
        else:
            t = _trigger_time(endpoint_slice)
            if t is not None and t > self.tracker_start_time:
                self.last_change_trigger_times.setdefault(key, []).append(t)
        return True

    def pending(self) -> bool:
        return self.cache.pending()


def _trigger_time(endpoint_slice: Obj) -> datetime | None:
    value = ((endpoint_slice.get("metadata") or {}).get("annotations") or {}).get(LAST_CHANGE_TRIGGER_TIME)
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def update_endpoints_map(endpoints_map: EndpointsMap, changes: EndpointsChangeTracker) -> UpdateEndpointsMapResult:
    """Apply the tracker's pending changes to ``endpoints_map`` (upstream EndpointsMap.Update)."""
    result = UpdateEndpointsMapResult(set(), changes.last_change_trigger_times)
    changes.last_change_trigger_times = {}
    for key, (previous, current) in changes.cache.checkout_changes().items():
        result.updated_services.add(key)
        for name in previous.keys() - current.keys():
            endpoints_map.pop(name, None)
        endpoints_map.update(current)
    return result


def categorize_endpoints(
    endpoints: list[EndpointInfo], svc: ServicePortInfo
) -> tuple[list[EndpointInfo], list[EndpointInfo], list[EndpointInfo], bool]:
    """(cluster endpoints, local endpoints, all endpoints reachable from this node, whether the
    Service has usable endpoints anywhere), as upstream CategorizeEndpoints without topology:
    "usable" is ready, falling back to serving-and-terminating when none is ready, separately
    for the Cluster and the Local policy."""
    cluster: list[EndpointInfo] = []
    local: list[EndpointInfo] = []
    if not endpoints:
        return cluster, local, [], False
    has_any = False
    if svc.uses_cluster_endpoints():
        cluster = [ep for ep in endpoints if ep.ready]
        if not cluster:
            cluster = [ep for ep in endpoints if ep.serving and ep.terminating]
        has_any = bool(cluster)
    if not svc.uses_local_endpoints():
        return cluster, local, cluster, has_any
    local_ready = local_terminating = False
    for ep in endpoints:
        if ep.ready:
            has_any = True
            local_ready = local_ready or ep.is_local
        elif ep.serving and ep.terminating:
            has_any = True
            local_terminating = local_terminating or ep.is_local
    use_terminating = False
    if local_ready:
        local = [ep for ep in endpoints if ep.is_local and ep.ready]
    elif local_terminating:
        use_terminating = True
        local = [ep for ep in endpoints if ep.is_local and ep.serving and ep.terminating]
    if not svc.uses_cluster_endpoints():
        return cluster, local, local, has_any
    if not use_terminating:
        # local holds ready endpoints only, all of which are in cluster
        return cluster, local, cluster, has_any
    merged = {str(ep): ep for ep in cluster}
    merged.update((str(ep), ep) for ep in local)
    return cluster, local, sorted(merged.values(), key=_endpoint_sort_key), has_any
