"""The Endpoints controller (``pkg/controller/endpoint``): core/v1 Endpoints for Services with a
selector.

Per Service key, ``sync`` lists the selected pods from the cache and builds the subsets as
upstream does: one single-address subset per (pod, Service port), the port resolved on the
pod (a named ``targetPort`` may differ from pod to pod), ready pods under ``addresses`` and
the others under ``notReadyAddresses`` (all under ``addresses`` with
``publishNotReadyAddresses``); terminating pods are left out unless
``publishNotReadyAddresses``. :func:`repack_subsets` then packs them back into the fewest
subsets (addresses that serve the same set of ports share one), in a stable order, so that an
unchanged set of pods gives an identical object and no write.

The Endpoints object carries the Service's labels (plus ``service.kubernetes.io/headless``
for headless Services), the ``endpoints.kubernetes.io/last-change-trigger-time`` annotation,
and, beyond 1000 addresses, is truncated with ``endpoints.kubernetes.io/over-capacity:
truncated``. Endpoints have no owner: when the Service goes, the controller deletes them, and
at start it queues every Endpoints object so that leftovers of Services deleted while it was
down go too (checkLeftoverEndpoints). Services without a selector (the ``kubernetes`` Service,
whose Endpoints the API server keeps) and ExternalName Services are left alone.

After an update, the replaced resourceVersion is remembered: a sync that still finds it in
the cache fails and retries instead of acting on stale data (the staleEndpointsTracker).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
from typing import Any

from k8py.api import meta
from k8py.client import WARNING, ClientError, is_not_found
from k8py.client.cache import DeletedFinalStateUnknown, split_meta_namespace_key
from k8py.client.informer import ResourceEventHandlerFuncs, wait_for_cache_sync
from k8py.client.resources import ENDPOINTS, PODS, SERVICES
from k8py.controllers.base import QueueController, key_of
from k8py.controllers.controller_utils import is_pod_ready
from k8py.controllers.endpointslice import (
    HEADLESS_LABEL,
    NAMESPACE_TERMINATING_CAUSE,
    TRIGGER_TIME_ANNOTATION,
    TriggerTimeTracker,
    find_port,
    format_trigger_time,
    has_status_cause,
    is_ipv6,
    is_service_ip_set,
    pod_event_handlers,
    pod_ips,
    selector_matches,
    service_selector,
    should_pod_be_in_endpoints,
    should_set_hostname,
)

log = logging.getLogger(__name__)

Obj = dict[str, Any]

MAX_CAPACITY = 1000
OVER_CAPACITY_ANNOTATION = "endpoints.kubernetes.io/over-capacity"
TRUNCATED = "truncated"
LEADER_ANNOTATION = "control-plane.alpha.kubernetes.io/leader"


def pod_to_endpoint_address(svc: Obj, pod: Obj) -> Obj | None:
    """podToEndpointAddressForService: the pod's IP of the Service's (first) family."""
    spec = svc.get("spec") or {}
    families = spec.get("ipFamilies") or []
    if families:
        v6 = families[0] == "IPv6"
    elif is_service_ip_set(svc):
        v6 = is_ipv6(spec["clusterIP"])
    else:
        v6 = is_ipv6((pod.get("status") or {}).get("podIP") or "")
    ip = next((ip for ip in pod_ips(pod) if is_ipv6(ip) == v6), None)
    if ip is None:
        return None
    md = pod["metadata"]
    address: Obj = {"ip": ip}
    if (pod.get("spec") or {}).get("nodeName"):
        address["nodeName"] = pod["spec"]["nodeName"]
    address["targetRef"] = {
        "kind": "Pod",
        "namespace": md.get("namespace", ""),
        "name": md["name"],
        "uid": md.get("uid", ""),
    }
    return address


def endpoint_subsets(svc: Obj, pods: list[Obj]) -> list[Obj]:
    """The subsets of a Service's Endpoints, one address and port each, before repacking."""
    spec = svc.get("spec") or {}
    publish_not_ready = bool(spec.get("publishNotReadyAddresses"))
    subsets: list[Obj] = []
    for pod in pods:
        if not should_pod_be_in_endpoints(pod, publish_not_ready):
            continue
        address = pod_to_endpoint_address(svc, pod)
        if address is None:
            continue
        if should_set_hostname(pod, svc):
            address["hostname"] = pod["spec"]["hostname"]
        ready = publish_not_ready or is_pod_ready(pod)
        where = "addresses" if ready else "notReadyAddresses"
        if not spec.get("ports"):
            if spec.get("clusterIP") == "None":  # a headless Service may have no ports
                subsets.append({where: [address], "ports": []})
            continue
        for sp in spec["ports"]:
            number = find_port(pod, sp)
            if number is None:
                continue
            port: Obj = {
                "name": sp.get("name") or "",
                "port": number,
                "protocol": sp.get("protocol") or "TCP",
            }
            if sp.get("appProtocol") is not None:
                port["appProtocol"] = sp["appProtocol"]
            subsets.append({where: [meta.clone(address)], "ports": [port]})
    return subsets


def _address_key(addr: Obj) -> tuple[str, str]:
    return addr.get("ip", ""), (addr.get("targetRef") or {}).get("uid", "")


def _ip_sort_key(addr: Obj) -> tuple[Any, ...]:
    ip = addr.get("ip", "")
    try:
        parsed = ipaddress.ip_address(ip)
        return (parsed.version, parsed.packed, (addr.get("targetRef") or {}).get("uid", ""))
    except ValueError:
        return (99, ip.encode(), (addr.get("targetRef") or {}).get("uid", ""))


def _port_key(port: Obj) -> tuple[str, int, str, str]:
    return (
        port.get("name") or "",
        int(port.get("port") or 0),
        port.get("protocol") or "",
        port.get("appProtocol") or "",
    )


def _subset_sort_key(subset: Obj) -> tuple[Any, ...]:
    return (
        [_port_key(p) for p in subset.get("ports") or ()],
        [_ip_sort_key(a) for a in subset.get("addresses") or ()],
        [_ip_sort_key(a) for a in subset.get("notReadyAddresses") or ()],
    )


def repack_subsets(subsets: list[Obj]) -> list[Obj]:
    """RepackSubsets: the same addresses and ports in the fewest subsets, sorted.

    Every port is mapped to the addresses offering it (ready wins when an address is both),
    ports with the same (address, ready) set share a subset. Subsets without ports keep their
    addresses under a sentinel."""
    addresses: dict[tuple[str, str], Obj] = {}
    ports: dict[tuple[str, int, str, str] | None, Obj | None] = {}
    port_addrs: dict[tuple[str, int, str, str] | None, dict[tuple[str, str], bool]] = {}
    for subset in subsets:
        for port in subset.get("ports") or [None]:
            pkey = _port_key(port) if port is not None else None
            ports.setdefault(pkey, port)
            readiness = port_addrs.setdefault(pkey, {})
            for field, ready in (("addresses", True), ("notReadyAddresses", False)):
                for addr in subset.get(field) or ():
                    akey = _address_key(addr)
                    addresses.setdefault(akey, addr)
                    if not readiness.get(akey, False):
                        readiness[akey] = ready
    groups: dict[frozenset[tuple[tuple[str, str], bool]], list[Obj]] = {}
    members: dict[frozenset[tuple[tuple[str, str], bool]], dict[tuple[str, str], bool]] = {}
    for pkey, readiness in port_addrs.items():
        gkey = frozenset(readiness.items())
        members[gkey] = readiness
        group = groups.setdefault(gkey, [])
        port = ports[pkey]
        if port is not None:
            group.append(port)
    final: list[Obj] = []
    for gkey, group_ports in groups.items():
        ready = sorted((addresses[a] for a, r in members[gkey].items() if r), key=_ip_sort_key)
        not_ready = sorted((addresses[a] for a, r in members[gkey].items() if not r), key=_ip_sort_key)
        subset: Obj = {}
        if ready:
            subset["addresses"] = ready
        if not_ready:
            subset["notReadyAddresses"] = not_ready
        if group_ports:
            subset["ports"] = sorted(group_ports, key=_port_key)
        if ready or not_ready:
            final.append(subset)
    return sorted(final, key=_subset_sort_key)


def truncate_endpoints(endpoints: Obj) -> bool:
    """truncateEndpoints: at most MAX_CAPACITY addresses, ready ones first, each subset keeping
    its share; True if anything was cut."""
    subsets = endpoints.get("subsets") or []
    total_ready = sum(len(s.get("addresses") or ()) for s in subsets)
    total_not_ready = sum(len(s.get("notReadyAddresses") or ()) for s in subsets)
    if total_ready + total_not_ready <= MAX_CAPACITY:
        return False
    truncate_ready = total_ready > MAX_CAPACITY
    limit, total = (
        (MAX_CAPACITY, total_ready) if truncate_ready else (MAX_CAPACITY - total_ready, total_not_ready)
    )
    can_add = limit
    for subset in subsets:
        field = "addresses" if truncate_ready else "notReadyAddresses"
        in_subset = len(subset.get(field) or ())
        to_add = min(math.ceil(in_subset / total * limit) if total else 0, can_add)
        subset[field] = (subset.get(field) or [])[:to_add]
        if truncate_ready:
            subset.pop("notReadyAddresses", None)
        can_add -= len(subset[field])
        if not subset[field]:
            del subset[field]
    endpoints["subsets"] = [s for s in subsets if s.get("addresses") or s.get("notReadyAddresses")]
    return True


def _without_target_rv(subsets: list[Obj]) -> list[Obj]:
    """Subsets as compared: targetRef.resourceVersion ignored, absent lists as empty ones."""
    out = []
    for s in subsets:
        norm: Obj = {}
        for field in ("addresses", "notReadyAddresses"):
            addrs = []
            for a in s.get(field) or ():
                a = {k: v for k, v in a.items() if v not in (None, "")}
                if a.get("targetRef"):
                    a["targetRef"] = {k: v for k, v in a["targetRef"].items() if k != "resourceVersion" and v}
                addrs.append(a)
            norm[field] = addrs
        norm["ports"] = [{k: v for k, v in p.items() if v not in (None, "")} for p in s.get("ports") or ()]
        out.append(norm)
    return out


def _capacity_annotation_ok(annotations: dict[str, str], subsets: list[Obj]) -> bool:
    n = sum(len(s.get("addresses") or ()) + len(s.get("notReadyAddresses") or ()) for s in subsets)
    return n <= MAX_CAPACITY and OVER_CAPACITY_ANNOTATION not in annotations


class EndpointController(QueueController):
    """Keys are Services (`namespace/name`); see the module docstring."""

    name = "endpoint"

    def __init__(self, ctx: Any) -> None:
        super().__init__(workers=ctx.options.workers("endpoint", 5))
        self.client = ctx.client
        self.recorder = ctx.recorder("endpoint-controller")
        self.pods = ctx.informers.informer_for(PODS)
        self.services = ctx.informers.informer_for(SERVICES)
        self.endpoints = ctx.informers.informer_for(ENDPOINTS)
        self.synced = [self.pods, self.services, self.endpoints]
        self.trigger_times = TriggerTimeTracker()
        self.stale: dict[str, str] = {}  # key -> the resourceVersion an update replaced
        self.services.add_event_handler(
            ResourceEventHandlerFuncs(
                add_func=lambda o, _i: self.enqueue(o),
                update_func=lambda _o, n: self.enqueue(n),
                delete_func=self.enqueue,
            )
        )
        self.pods.add_event_handler(pod_event_handlers(self.services, self.queue.add))
        self.endpoints.add_event_handler(ResourceEventHandlerFuncs(delete_func=self._endpoints_deleted))

    def _endpoints_deleted(self, obj: Obj | DeletedFinalStateUnknown) -> None:
        self.enqueue(obj)

    async def run(self) -> None:
        leftovers = asyncio.create_task(self._check_leftover_endpoints(), name="endpoint-leftovers")
        try:
            await super().run()
        finally:
            leftovers.cancel()
            await asyncio.gather(leftovers, return_exceptions=True)

    async def _check_leftover_endpoints(self) -> None:
        """checkLeftoverEndpoints, once the caches are in: every Endpoints object is queued, so that
        those whose Service is gone are deleted (leader-election records aside)."""
        await wait_for_cache_sync(*self.synced)
        for ep in self.endpoints.indexer.list():
            if LEADER_ANNOTATION not in (ep["metadata"].get("annotations") or {}):
                self.queue.add(key_of(ep))

    async def sync(self, key: str) -> None:
        namespace, name = split_meta_namespace_key(key)
        ns = namespace or ""
        svc = self.services.indexer.get_by_key(key)
        if svc is None:
            # the Service is gone: so are its Endpoints
            try:
                await self.client.delete(ENDPOINTS, name, namespace=ns)
            except ClientError as e:
                if not is_not_found(e):
                    raise
            self.trigger_times.delete_service(key)
            self.stale.pop(key, None)
            return
        if (svc.get("spec") or {}).get("type") == "ExternalName":
            return
        selector = service_selector(svc)
        if selector is None:
            return  # Endpoints of Services without a selector are written by others
        pods = [
            p
            for p in self.pods.indexer.by_index("namespace", ns)
            if selector_matches(selector, p["metadata"].get("labels"))
        ]
        trigger = self.trigger_times.compute(svc, pods)
        subsets = repack_subsets(endpoint_subsets(svc, pods))

        current = self.endpoints.indexer.get_by_key(key)
        if current is not None and self.stale.get(key) == current["metadata"].get("resourceVersion"):
            raise RuntimeError(
                f"endpoints informer cache is out of date, resource version "
                f"{current['metadata'].get('resourceVersion')} already processed for endpoints {key}"
            )
        service_labels = svc["metadata"].get("labels") or {}
        if current is not None:
            labels = {
                k: v for k, v in (current["metadata"].get("labels") or {}).items() if k != HEADLESS_LABEL
            }
            annotations = current["metadata"].get("annotations") or {}
            existing = current.get("subsets") or []
            if (
                _without_target_rv(existing) == _without_target_rv(subsets)
                and labels == service_labels
                and _capacity_annotation_ok(annotations, existing)
            ):
                return
            new = meta.clone(current)
        else:
            new = {"metadata": {"name": name, "namespace": ns}}
        new.update(apiVersion="v1", kind="Endpoints")
        md = new["metadata"]
        if subsets:
            new["subsets"] = subsets
        else:
            new.pop("subsets", None)
        md["labels"] = dict(service_labels)
        annotations = md.setdefault("annotations", {})
        if trigger is not None:
            annotations[TRIGGER_TIME_ANNOTATION] = format_trigger_time(trigger)
        else:
            annotations.pop(TRIGGER_TIME_ANNOTATION, None)
        if truncate_endpoints(new):
            annotations[OVER_CAPACITY_ANNOTATION] = TRUNCATED
        else:
            annotations.pop(OVER_CAPACITY_ANNOTATION, None)
        if not annotations:
            del md["annotations"]
        if not is_service_ip_set(svc):
            md["labels"][HEADLESS_LABEL] = ""
        if not md["labels"]:
            del md["labels"]
        try:
            if current is None:
                await self.client.create(ENDPOINTS, new, namespace=ns)
            else:
                updated = await self.client.update(ENDPOINTS, new)
                if updated["metadata"].get("resourceVersion") != current["metadata"].get("resourceVersion"):
                    self.stale[key] = current["metadata"].get("resourceVersion", "")
        except ClientError as e:
            if current is None and has_status_cause(e, NAMESPACE_TERMINATING_CAUSE):
                return  # the namespace is going away: creates keep failing, drop the key
            if current is None:
                reason, message = (
                    "FailedToCreateEndpoint",
                    f"Failed to create endpoint for service {ns}/{name}: {e}",
                )
            else:
                reason, message = "FailedToUpdateEndpoint", f"Failed to update endpoint {ns}/{name}: {e}"
            self.recorder.event(new, WARNING, reason, message)
            raise
