"""The EndpointSlice controller (``pkg/controller/endpointslice`` + ``k8s.io/endpointslice``).

For every Service with a selector, the pods it selects are published as discovery.k8s.io/v1
EndpointSlices named ``<service>-<suffix>`` (generateName), labelled
``kubernetes.io/service-name`` and ``endpointslice.kubernetes.io/managed-by:
endpointslice-controller.k8s.io``, controlled by the Service (an ownerReference: the garbage
collector deletes them with it, as upstream, which deletes nothing itself).

The design is upstream's, in two halves:

- :func:`reconcile` is pure: from the Service, its pods, the nodes and the existing slices it
  computes a :class:`Plan` (slices to create, update, delete). Pods are grouped by their
  resolved ports (a named ``targetPort`` may resolve to different numbers on different pods:
  each distinct port mapping gets its own slices), one group of slices per address family.
  Churn is kept low as upstream's reconciler keeps it: an existing slice keeps the endpoints
  still wanted (updated in place where their conditions changed), slices marked for update
  are filled up first, the leftovers go into the unchanged slice they fit best, and only
  then into new slices of at most ``max_endpoints_per_slice`` endpoints (100; kube's
  ``--max-endpoints-per-slice``, here the ``max-endpoints-per-slice`` controller option). A Service
  without any endpoint keeps one empty placeholder slice per address family.
- :class:`EndpointSliceController` runs it per Service key and writes the plan, turning
  creates into updates of slices that would otherwise be deleted. Its
  :class:`EndpointSliceTracker` remembers the generation of every slice it wrote (and the
  slices it deleted), so that a sync never acts on an informer cache that has not caught up
  with its own writes (it retries instead: no duplicate slices), and so that only changes
  made by someone else requeue the Service.

Endpoint conditions follow 1.32: ``serving`` is the pod's readiness, ``terminating`` its
deletionTimestamp, ``ready`` is ``serving and not terminating`` (or always true with
``publishNotReadyAddresses``); terminating pods stay in the slices. The slices carry the
``endpoints.kubernetes.io/last-change-trigger-time`` annotation computed by the
:class:`TriggerTimeTracker`. ``trafficDistribution: PreferClose`` gives ready endpoints a
same-zone hint. Topology-aware-hints (the annotation) and EndpointSlice mirroring of
selectorless Services are not done here.

The pod -> services helpers (:func:`services_to_update_on_pod_change` and friends),
:func:`find_port` and the trigger-time tracker are shared with the Endpoints controller
(upstream's ``k8s.io/endpointslice/util``).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from k8py.api import meta
from k8py.client import WARNING, ClientError, is_not_found
from k8py.client.cache import DeletedFinalStateUnknown, split_meta_namespace_key
from k8py.client.informer import ResourceEventHandlerFuncs, SharedIndexInformer
from k8py.client.resources import ENDPOINT_SLICES, NODES, PODS, SERVICES
from k8py.controllers.base import QueueController, key_of, unwrap
from k8py.controllers.controller_utils import is_pod_ready, pod_condition

log = logging.getLogger(__name__)

Obj = dict[str, Any]

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
CONTROLLER_NAME = "endpointslice-controller.k8s.io"
HEADLESS_LABEL = "service.kubernetes.io/headless"
TRIGGER_TIME_ANNOTATION = "endpoints.kubernetes.io/last-change-trigger-time"
ZONE_LABEL = "topology.kubernetes.io/zone"
MAX_ENDPOINTS_PER_SLICE = 100
# a sync caused by a slice change waits this long (endpointSliceChangeMinSyncDelay)
SLICE_CHANGE_MIN_SYNC_DELAY = 1.0
NAMESPACE_TERMINATING_CAUSE = "NamespaceTerminating"


# -- helpers shared with the Endpoints controller (k8s.io/endpointslice/util) -----------------------


def service_selector(svc: Obj) -> dict[str, str] | None:
    """The Service's selector; None (selects nothing) when unset or empty, as the API stores it."""
    return (svc.get("spec") or {}).get("selector") or None


def selector_matches(selector: dict[str, str], labels: dict[str, str] | None) -> bool:
    labels = labels or {}
    return all(labels.get(k) == v for k, v in selector.items())


def services_for_pod(
    services: SharedIndexInformer, namespace: str, labels: dict[str, str] | None
) -> set[str]:
    """Keys of the Services in `namespace` whose selector matches `labels` (getServicesForPod)."""
    keys: set[str] = set()
    for svc in services.indexer.by_index("namespace", namespace):
        selector = service_selector(svc)
        if selector is not None and selector_matches(selector, labels):
            keys.add(key_of(svc))
    return keys


def pod_ips(pod: Obj) -> list[str]:
    status = pod.get("status") or {}
    ips = [p.get("ip", "") for p in status.get("podIPs") or () if p.get("ip")]
    if not ips and status.get("podIP"):
        ips = [status["podIP"]]
    return ips


def pod_endpoints_changed(old: Obj, new: Obj) -> tuple[bool, bool]:
    """(the pod changed in a way its endpoints show, the pod may match other Services now)."""
    ospec, nspec = old.get("spec") or {}, new.get("spec") or {}
    labels_changed = (old["metadata"].get("labels") or {}) != (new["metadata"].get("labels") or {}) or (
        ospec.get("hostname"),
        ospec.get("subdomain"),
    ) != (nspec.get("hostname"), nspec.get("subdomain"))
    changed = (
        old["metadata"].get("deletionTimestamp") != new["metadata"].get("deletionTimestamp")
        or is_pod_ready(old) != is_pod_ready(new)
        or pod_ips(old) != pod_ips(new)
    )
    return changed, labels_changed


def services_to_update_on_pod_change(services: SharedIndexInformer, old: Obj, new: Obj) -> set[str]:
    """GetServicesToUpdateOnPodChange: the Services whose endpoints a pod update may change."""
    if old["metadata"].get("resourceVersion") == new["metadata"].get("resourceVersion"):
        return set()  # a resync: the service informer covers those
    changed, labels_changed = pod_endpoints_changed(old, new)
    if not changed and not labels_changed:
        return set()
    ns = new["metadata"].get("namespace", "")
    current = services_for_pod(services, ns, new["metadata"].get("labels"))
    if not labels_changed:
        return current
    before = services_for_pod(services, ns, old["metadata"].get("labels"))
    return current | before if changed else current ^ before


def pod_event_handlers(
    services: SharedIndexInformer, enqueue: Callable[[str], None]
) -> ResourceEventHandlerFuncs:
    """The pod handlers both endpoint controllers use: enqueue the Services a change concerns."""

    def add(pod: Obj | DeletedFinalStateUnknown, _initial: bool = False) -> None:
        p = unwrap(pod)
        for key in services_for_pod(
            services, p["metadata"].get("namespace", ""), p["metadata"].get("labels")
        ):
            enqueue(key)

    def update(old: Obj, new: Obj) -> None:
        for key in services_to_update_on_pod_change(services, old, new):
            enqueue(key)

    return ResourceEventHandlerFuncs(add_func=add, update_func=update, delete_func=add)


def should_pod_be_in_endpoints(pod: Obj, include_terminating: bool) -> bool:
    """Not terminal, has an IP, and not terminating unless `include_terminating`."""
    if (pod.get("status") or {}).get("phase") in ("Failed", "Succeeded"):
        return False
    if not pod_ips(pod):
        return False
    return include_terminating or not pod["metadata"].get("deletionTimestamp")


def should_set_hostname(pod: Obj, svc: Obj) -> bool:
    spec = pod.get("spec") or {}
    return (
        bool(spec.get("hostname"))
        and spec.get("subdomain") == svc["metadata"]["name"]
        and pod["metadata"].get("namespace") == svc["metadata"].get("namespace")
    )


def find_port(pod: Obj, svc_port: Obj) -> int | None:
    """FindPort: the container port a Service port targets on `pod` (None: the pod has none).

    A numeric targetPort is used as is; a name is looked up among the ports of the containers
    (then of sidecars, init containers with restartPolicy Always) with the same protocol."""
    target = svc_port.get("targetPort", svc_port.get("port"))
    if isinstance(target, int):
        return target
    protocol = svc_port.get("protocol") or "TCP"
    spec = pod.get("spec") or {}
    sidecars = [c for c in spec.get("initContainers") or () if c.get("restartPolicy") == "Always"]
    for container in [*(spec.get("containers") or ()), *sidecars]:
        for port in container.get("ports") or ():
            if port.get("name") == target and (port.get("protocol") or "TCP") == protocol:
                return int(port["containerPort"])
    return None


def is_service_ip_set(svc: Obj) -> bool:
    ip = (svc.get("spec") or {}).get("clusterIP") or ""
    return ip not in ("", "None")


def is_ipv6(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).version == 6
    except ValueError:
        return False


def format_trigger_time(t: dt.datetime) -> str:
    """Go's time.RFC3339Nano in UTC (trailing zeros of the fraction dropped)."""
    t = t.astimezone(dt.UTC)
    base = t.strftime("%Y-%m-%dT%H:%M:%S")
    frac = f"{t.microsecond:06d}".rstrip("0")
    return f"{base}.{frac}Z" if frac else f"{base}Z"


def _time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        return meta.parse_time(value)
    except ValueError:
        return None


@dataclass
class _TriggerState:
    pods: dict[str, dt.datetime] = field(default_factory=dict)
    service: dt.datetime | None = None


class TriggerTimeTracker:
    """When did the change that a sync publishes happen (TriggerTimeTracker)?

    A pod's trigger time is its Ready condition's lastTransitionTime, a Service's its
    creationTimestamp. The first sync of a Service answers its creationTimestamp; later ones
    the earliest trigger time that changed since the previous sync, or None (nothing did)."""

    def __init__(self) -> None:
        self.states: dict[str, _TriggerState] = {}

    def compute(self, svc: Obj, pods: Iterable[Obj]) -> dt.datetime | None:
        key = key_of(svc)
        state = self.states.get(key)
        previous = state or _TriggerState()
        changed: list[dt.datetime] = []
        pod_times: dict[str, dt.datetime] = {}
        for pod in pods:
            ready = pod_condition(pod, "Ready")
            t = _time(ready.get("lastTransitionTime")) if ready else None
            if t is None:
                continue
            name = pod["metadata"]["name"]
            pod_times[name] = t
            last = previous.pods.get(name)
            if last is None or t > last:
                changed.append(t)
        service_time = _time(svc["metadata"].get("creationTimestamp"))
        if service_time is not None and (previous.service is None or service_time > previous.service):
            changed.append(service_time)
        self.states[key] = _TriggerState(pod_times, service_time)
        if state is None:
            return service_time
        return min(changed) if changed else None

    def delete_service(self, key: str) -> None:
        self.states.pop(key, None)


# -- the reconciler (pure) -------------------------------------------------------------------------


def address_types_for_service(svc: Obj) -> list[str]:
    """getAddressTypesForService: the Service's ipFamilies as address types."""
    spec = svc.get("spec") or {}
    types = [
        {"IPv4": "IPv4", "IPv6": "IPv6"}[f] for f in spec.get("ipFamilies") or () if f in ("IPv4", "IPv6")
    ]
    if types:
        return list(dict.fromkeys(types))
    if is_service_ip_set(svc):
        return ["IPv6" if is_ipv6(spec["clusterIP"]) else "IPv4"]
    return ["IPv4", "IPv6"]


def endpoint_ports(svc: Obj, pod: Obj) -> list[Obj]:
    """getEndpointPorts: the Service's ports resolved on `pod` (ports the pod lacks are left out)."""
    ports: list[Obj] = []
    for sp in (svc.get("spec") or {}).get("ports") or ():
        number = find_port(pod, sp)
        if number is None:
            continue
        port: Obj = {"name": sp.get("name") or "", "port": number, "protocol": sp.get("protocol") or "TCP"}
        if sp.get("appProtocol") is not None:
            port["appProtocol"] = sp["appProtocol"]
        ports.append(port)
    return ports


def port_map_key(ports: Iterable[Obj] | None) -> tuple[tuple[str, int, str, str], ...]:
    """NewPortMapKey: ports in a canonical order, identifying a group of slices."""
    return tuple(
        sorted(
            (
                p.get("name") or "",
                int(p.get("port") or 0),
                p.get("protocol") or "TCP",
                p.get("appProtocol") or "",
            )
            for p in ports or ()
        )
    )


def _sorted_ports(ports: list[Obj]) -> list[Obj]:
    return sorted(
        ports, key=lambda p: (p.get("name") or "", int(p.get("port") or 0), p.get("protocol") or "")
    )


def endpoint_addresses(pod: Obj, address_type: str) -> list[str]:
    want_v6 = address_type == "IPv6"
    out: list[str] = []
    for ip in pod_ips(pod):
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            continue
        if (addr.version == 6) == want_v6:
            out.append(str(addr))
    return out


def pod_to_endpoint(pod: Obj, node: Obj | None, svc: Obj, address_type: str) -> Obj:
    """podToEndpoint: a pod as an endpoint, with 1.32's ready/serving/terminating conditions."""
    md, spec = pod["metadata"], pod.get("spec") or {}
    serving = is_pod_ready(pod)
    terminating = bool(md.get("deletionTimestamp"))
    ready = bool((svc.get("spec") or {}).get("publishNotReadyAddresses")) or (serving and not terminating)
    ep: Obj = {
        "addresses": endpoint_addresses(pod, address_type),
        "conditions": {"ready": ready, "serving": serving, "terminating": terminating},
        "targetRef": {
            "kind": "Pod",
            "namespace": md.get("namespace", ""),
            "name": md["name"],
            "uid": md.get("uid", ""),
        },
    }
    if spec.get("nodeName"):
        ep["nodeName"] = spec["nodeName"]
    zone = ((node or {}).get("metadata", {}).get("labels") or {}).get(ZONE_LABEL)
    if zone:
        ep["zone"] = zone
    if should_set_hostname(pod, svc):
        ep["hostname"] = spec["hostname"]
    return ep


def endpoint_key(ep: Obj) -> tuple[Any, ...]:
    """hashEndpoint: an endpoint's identity (addresses, hostname, target)."""
    ref = ep.get("targetRef") or {}
    return (
        tuple(sorted(ep.get("addresses") or ())),
        ep.get("hostname") or "",
        ref.get("namespace") or "",
        ref.get("name") or "",
    )


def _ref_without_rv(ref: Obj | None) -> Obj | None:
    if ref is None:
        return None
    return {k: v for k, v in ref.items() if k != "resourceVersion" and v not in (None, "")}


def endpoints_equal_beyond_hash(a: Obj, b: Obj) -> bool:
    """EndpointsEqualBeyondHash: node, zone, conditions and target (its resourceVersion aside)."""
    ca, cb = a.get("conditions") or {}, b.get("conditions") or {}
    return (
        a.get("nodeName") == b.get("nodeName")
        and a.get("zone") == b.get("zone")
        and all(ca.get(k) == cb.get(k) for k in ("ready", "serving", "terminating"))
        and _ref_without_rv(a.get("targetRef")) == _ref_without_rv(b.get("targetRef"))
    )


def _is_reserved_label(key: str) -> bool:
    return key in (SERVICE_NAME_LABEL, MANAGED_BY_LABEL, HEADLESS_LABEL)


def slice_labels(slice_: Obj, svc: Obj) -> tuple[dict[str, str], bool]:
    """setEndpointSliceLabels: the Service's labels plus the reserved ones; True if they changed."""
    current = {k: v for k, v in (slice_["metadata"].get("labels") or {}).items() if not _is_reserved_label(k)}
    labels = {k: v for k, v in (svc["metadata"].get("labels") or {}).items() if not _is_reserved_label(k)}
    changed = current != labels
    if not is_service_ip_set(svc):
        labels[HEADLESS_LABEL] = ""
    labels[SERVICE_NAME_LABEL] = svc["metadata"]["name"]
    labels[MANAGED_BY_LABEL] = CONTROLLER_NAME
    return labels, changed


def slice_prefix(service_name: str) -> str:
    """getEndpointSlicePrefix: `<name>-` (Service names are short enough for the dash)."""
    return f"{service_name}-"


def service_owner_reference(svc: Obj) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "name": svc["metadata"]["name"],
        "uid": svc["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def owned_by(slice_: Obj, svc: Obj) -> bool:
    uid = svc["metadata"].get("uid")
    return any(
        o.get("uid") == uid and o.get("kind") == "Service" and o.get("apiVersion") == "v1"
        for o in slice_["metadata"].get("ownerReferences") or ()
    )


def new_endpoint_slice(svc: Obj, ports: list[Obj], address_type: str) -> Obj:
    """newEndpointSlice: an empty slice of the Service for one port mapping and address type."""
    slice_: Obj = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "generateName": slice_prefix(svc["metadata"]["name"]),
            "namespace": svc["metadata"].get("namespace", ""),
            "labels": {},
            "ownerReferences": [service_owner_reference(svc)],
        },
        "addressType": address_type,
        "endpoints": [],
        "ports": meta.clone(ports),
    }
    slice_["metadata"]["labels"], _ = slice_labels(slice_, svc)
    return slice_


def _owner_refs_key(slice_: Obj) -> list[tuple[Any, ...]]:
    return [
        (
            o.get("apiVersion"),
            o.get("kind"),
            o.get("name"),
            o.get("uid"),
            bool(o.get("controller")),
            bool(o.get("blockOwnerDeletion")),
        )
        for o in slice_["metadata"].get("ownerReferences") or ()
    ]


def is_same_placeholder(existing: Obj, placeholder: Obj) -> bool:
    """placeholderSliceCompare: namespace, labels, owners, address type, (no) ports and endpoints."""
    return (
        existing["metadata"].get("namespace") == placeholder["metadata"].get("namespace")
        and (existing["metadata"].get("labels") or {}) == placeholder["metadata"]["labels"]
        and _owner_refs_key(existing) == _owner_refs_key(placeholder)
        and existing.get("addressType") == placeholder["addressType"]
        and not existing.get("ports")
        and not existing.get("endpoints")
    )


@dataclass
class Plan:
    """The writes one reconcile needs (slices to create have no name, only generateName)."""

    create: list[Obj] = field(default_factory=list)
    update: list[Obj] = field(default_factory=list)
    delete: list[Obj] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.create or self.update or self.delete)


def reconcile(
    svc: Obj,
    pods: Iterable[Obj],
    existing: Iterable[Obj],
    node: Callable[[str], Obj | None],
    *,
    max_endpoints_per_slice: int = MAX_ENDPOINTS_PER_SLICE,
) -> tuple[Plan, list[str]]:
    """Reconciler.Reconcile: the Plan that makes `existing` slices publish `pods`, and the errors
    (pods skipped because their node is unknown) that should make the caller retry later."""
    plan = Plan()
    errors: list[str] = []
    pods = list(pods)
    types = address_types_for_service(svc)
    by_type: dict[str, list[Obj]] = {}
    for s in existing:
        if s.get("addressType") in types:
            by_type.setdefault(s["addressType"], []).append(s)
        else:
            plan.delete.append(s)
    for address_type in types:
        sub, errs = _reconcile_address_type(
            svc, pods, by_type.get(address_type, []), node, address_type, max_endpoints_per_slice
        )
        plan.create += sub.create
        plan.update += sub.update
        plan.delete += sub.delete
        errors += errs
    return plan, errors


def _reconcile_address_type(
    svc: Obj,
    pods: list[Obj],
    existing: list[Obj],
    node: Callable[[str], Obj | None],
    address_type: str,
    max_per_slice: int,
) -> tuple[Plan, list[str]]:
    plan = Plan()
    errors: list[str] = []
    existing_by_ports: dict[tuple[Any, ...], list[Obj]] = {}
    for s in existing:
        if owned_by(s, svc):
            existing_by_ports.setdefault(port_map_key(s.get("ports")), []).append(s)
        else:
            plan.delete.append(s)

    desired_ports: dict[tuple[Any, ...], list[Obj]] = {}
    desired: dict[tuple[Any, ...], dict[tuple[Any, ...], Obj]] = {}
    publish_not_ready = bool((svc.get("spec") or {}).get("publishNotReadyAddresses"))
    for pod in pods:
        if not should_pod_be_in_endpoints(pod, True):
            continue
        ports = endpoint_ports(svc, pod)
        key = port_map_key(ports)
        desired.setdefault(key, {})
        desired_ports.setdefault(key, _sorted_ports(ports))
        node_name = (pod.get("spec") or {}).get("nodeName") or ""
        n = node(node_name) if node_name else None
        if n is None and not publish_not_ready:
            md = pod["metadata"]
            errors.append(
                f"skipping Pod {md['name']} for Service {svc['metadata'].get('namespace')}/{svc['metadata']['name']}: "
                f"Node {node_name} Not Found"
            )
            continue
        ep = pod_to_endpoint(pod, n, svc, address_type)
        if ep["addresses"]:
            desired[key][endpoint_key(ep)] = ep

    for key, wanted in desired.items():
        sub = _reconcile_port_mapping(
            svc, existing_by_ports.get(key, []), wanted, desired_ports[key], address_type, max_per_slice
        )
        plan.create += sub.create
        plan.update += sub.update
        plan.delete += sub.delete
    for key, slices in existing_by_ports.items():
        if key not in desired:
            plan.delete += slices

    # A Service without endpoints keeps one placeholder slice (no ports, no endpoints).
    if len(existing) == len(plan.delete) and not plan.create:
        placeholder = new_endpoint_slice(svc, [], address_type)
        if len(plan.delete) == 1 and is_same_placeholder(plan.delete[0], placeholder):
            plan.delete = []
        else:
            plan.create.append(placeholder)

    _reconcile_hints(svc, plan, existing)
    return plan, errors


def _reconcile_port_mapping(
    svc: Obj,
    existing: list[Obj],
    wanted: dict[tuple[Any, ...], Obj],
    ports: list[Obj],
    address_type: str,
    max_per_slice: int,
) -> Plan:
    """reconcileByPortMapping: keep, update, fill, then create."""
    wanted = dict(wanted)
    by_name: dict[str, Obj] = {}
    unchanged: list[str] = []
    to_update: list[str] = []
    to_delete: list[str] = []
    # 1. existing slices keep the endpoints still wanted (as wanted now), drop the others
    for s in existing:
        name = s["metadata"]["name"]
        by_name[name] = s
        kept: list[Obj] = []
        endpoint_changed = False
        for ep in s.get("endpoints") or ():
            got = wanted.pop(endpoint_key(ep), None)
            if got is not None:
                kept.append(got)
                if not endpoints_equal_beyond_hash(got, ep):
                    endpoint_changed = True
        labels, labels_changed = slice_labels(s, svc)
        if endpoint_changed or len(kept) != len(s.get("endpoints") or ()):
            if not kept:
                to_delete.append(name)
            else:
                new = meta.clone(s)
                new["endpoints"] = kept
                new["metadata"]["labels"] = labels
                by_name[name] = new
                to_update.append(name)
        elif labels_changed:
            new = meta.clone(s)
            new["metadata"]["labels"] = labels
            by_name[name] = new
            to_update.append(name)
        else:
            unchanged.append(name)

    remaining = list(wanted.values())
    # 2. slices being updated anyway are filled up first, fullest first
    if remaining and to_update:
        for name in sorted(to_update, key=lambda n: -len(by_name[n]["endpoints"])):
            s = by_name[name]
            while remaining and len(s["endpoints"]) < max_per_slice:
                s["endpoints"].append(remaining.pop())
    # 3. the rest goes into the unchanged slice it fits best, else into new slices
    creates: list[Obj] = []
    while remaining:
        fill: Obj | None = None
        if len(remaining) < max_per_slice and unchanged:
            best = _slice_to_fill([by_name[n] for n in unchanged], len(remaining), max_per_slice)
            if best is not None:
                fill = meta.clone(best)
                fill["endpoints"] = list(fill.get("endpoints") or ())
                by_name[fill["metadata"]["name"]] = fill
        if fill is None:
            fill = new_endpoint_slice(svc, ports, address_type)
        while remaining and len(fill["endpoints"]) < max_per_slice:
            fill["endpoints"].append(remaining.pop())
        name = fill["metadata"].get("name")
        if name:
            to_update.append(name)
            unchanged.remove(name)
        else:
            creates.append(fill)
    return Plan(
        create=creates, update=[by_name[n] for n in to_update], delete=[by_name[n] for n in to_delete]
    )


def _slice_to_fill(slices: list[Obj], count: int, max_per_slice: int) -> Obj | None:
    """getSliceToFill: the slice closest to full once `count` endpoints are added."""
    closest, best = max_per_slice, None
    for s in slices:
        diff = max_per_slice - (count + len(s.get("endpoints") or ()))
        if 0 <= diff < closest:
            closest, best = diff, s
            if diff == 0:
                break
    return best


def _reconcile_hints(svc: Obj, plan: Plan, existing: list[Obj]) -> None:
    """trafficdist.ReconcileHints: PreferClose gives ready endpoints a hint for their own zone;
    otherwise no endpoint has hints. Unchanged slices whose hints are wrong get updated."""
    prefer_close = (svc.get("spec") or {}).get("trafficDistribution") == "PreferClose"

    def wanted_hints(ep: Obj) -> Obj | None:
        return {"forZones": [{"name": ep["zone"]}]} if ep.get("zone") else None

    def needs_update(s: Obj) -> bool:
        for ep in s.get("endpoints") or ():
            if not prefer_close:
                if ep.get("hints") is not None:
                    return True
            elif (ep.get("conditions") or {}).get("ready") and (ep.get("hints") or None) != wanted_hints(ep):
                return True
        return False

    def update(s: Obj) -> None:
        for ep in s.get("endpoints") or ():
            if not prefer_close:
                ep.pop("hints", None)
            elif (ep.get("conditions") or {}).get("ready"):
                hints = wanted_hints(ep)
                if hints is None:
                    ep.pop("hints", None)
                else:
                    ep["hints"] = hints

    changed = {s["metadata"].get("name") for s in [*plan.update, *plan.delete]}
    for s in existing:
        if s["metadata"]["name"] not in changed and needs_update(s):
            plan.update.append(meta.clone(s))
    for s in [*plan.create, *plan.update]:
        update(s)


# -- the tracker -----------------------------------------------------------------------------------

DELETION_EXPECTED = -1


def _service_key_of_slice(slice_: Obj) -> str:
    md = slice_["metadata"]
    return f"{md.get('namespace', '')}/{(md.get('labels') or {}).get(SERVICE_NAME_LABEL, '')}"


class EndpointSliceTracker:
    """The generations of the slices this controller wrote, per Service (EndpointSliceTracker);
    DELETION_EXPECTED for slices it deleted."""

    def __init__(self) -> None:
        self.generations: dict[str, dict[str, int]] = {}
        self.service_uids: dict[str, str] = {}

    def has(self, slice_: Obj) -> bool:
        return slice_["metadata"].get("uid") in self.generations.get(_service_key_of_slice(slice_), {})

    def should_sync(self, slice_: Obj) -> bool:
        """True unless this is (at most) the generation this controller wrote itself."""
        gens = self.generations.get(_service_key_of_slice(slice_))
        if gens is None:
            return True
        g = gens.get(slice_["metadata"].get("uid", ""))
        return g is None or int(slice_["metadata"].get("generation") or 0) > g

    def stale_slices(self, svc: Obj, slices: list[Obj]) -> bool:
        """Is the informer cache behind this controller's own writes for the Service?"""
        key = key_of(svc)
        uid = svc["metadata"].get("uid", "")
        if self.service_uids.get(key, uid) != uid:
            self.generations.pop(key, None)  # a new Service of the same name: old writes are moot
        self.service_uids[key] = uid
        gens = self.generations.get(key)
        if not gens:
            return False
        provided: set[str] = set()
        for s in slices:
            suid = s["metadata"].get("uid", "")
            provided.add(suid)
            g = gens.get(suid)
            if g is not None and (g == DELETION_EXPECTED or g > int(s["metadata"].get("generation") or 0)):
                return True
        return any(g != DELETION_EXPECTED and suid not in provided for suid, g in gens.items())

    def update(self, slice_: Obj) -> None:
        gens = self.generations.setdefault(_service_key_of_slice(slice_), {})
        gens[slice_["metadata"]["uid"]] = int(slice_["metadata"].get("generation") or 0)

    def expect_deletion(self, slice_: Obj) -> None:
        self.generations.setdefault(_service_key_of_slice(slice_), {})[slice_["metadata"]["uid"]] = (
            DELETION_EXPECTED
        )

    def handle_deletion(self, slice_: Obj) -> bool:
        """Forget a deleted slice; True if this controller deleted it."""
        gens = self.generations.get(_service_key_of_slice(slice_))
        if gens is None:
            return True
        g = gens.pop(slice_["metadata"].get("uid", ""), None)
        return g is None or g == DELETION_EXPECTED

    def delete_service(self, key: str) -> None:
        self.generations.pop(key, None)
        self.service_uids.pop(key, None)


class StaleInformerCache(Exception):
    """The EndpointSlice cache has not caught up with this controller's writes: retry later."""


def has_status_cause(e: ClientError, cause: str) -> bool:
    details = getattr(e, "details", None) or {}
    return any(c.get("reason") == cause for c in details.get("causes") or ())


# -- the controller --------------------------------------------------------------------------------


def managed_by_us(slice_: Obj) -> bool:
    return (slice_["metadata"].get("labels") or {}).get(MANAGED_BY_LABEL) == CONTROLLER_NAME


class EndpointSliceController(QueueController):
    """Keys are Services (`namespace/name`); see the module docstring."""

    name = "endpointslice"

    def __init__(self, ctx: Any) -> None:
        super().__init__(workers=ctx.options.workers("endpointslice", 5))
        self.client = ctx.client
        self.recorder = ctx.recorder("endpoint-slice-controller")
        self.max_endpoints_per_slice = int(
            ctx.options.extra.get("max-endpoints-per-slice", MAX_ENDPOINTS_PER_SLICE)
        )
        self.pods = ctx.informers.informer_for(PODS)
        self.services = ctx.informers.informer_for(SERVICES)
        self.slices = ctx.informers.informer_for(ENDPOINT_SLICES)
        self.nodes = ctx.informers.informer_for(NODES)
        self.synced = [self.pods, self.services, self.slices, self.nodes]
        self.tracker = EndpointSliceTracker()
        self.trigger_times = TriggerTimeTracker()
        self.services.add_event_handler(
            ResourceEventHandlerFuncs(
                add_func=lambda o, _i: self.enqueue(o),
                update_func=lambda _o, n: self.enqueue(n),
                delete_func=self.enqueue,
            )
        )
        self.pods.add_event_handler(pod_event_handlers(self.services, self.queue.add))
        self.slices.add_event_handler(
            ResourceEventHandlerFuncs(
                add_func=self._slice_added, update_func=self._slice_updated, delete_func=self._slice_deleted
            )
        )

    # -- handlers --

    def _queue_for_slice(self, slice_: Obj) -> None:
        if (slice_["metadata"].get("labels") or {}).get(SERVICE_NAME_LABEL):
            self.enqueue_after(_service_key_of_slice(slice_), SLICE_CHANGE_MIN_SYNC_DELAY)

    def _slice_added(self, slice_: Obj, _initial: bool) -> None:
        if managed_by_us(slice_) and self.tracker.should_sync(slice_):
            self._queue_for_slice(slice_)

    def _slice_updated(self, old: Obj, new: Obj) -> None:
        old_svc = (old["metadata"].get("labels") or {}).get(SERVICE_NAME_LABEL)
        new_svc = (new["metadata"].get("labels") or {}).get(SERVICE_NAME_LABEL)
        if old_svc != new_svc:
            self._queue_for_slice(new)
            self._queue_for_slice(old)
        elif managed_by_us(old) != managed_by_us(new) or (
            managed_by_us(new) and self.tracker.should_sync(new)
        ):
            self._queue_for_slice(new)

    def _slice_deleted(self, obj: Obj | DeletedFinalStateUnknown) -> None:
        slice_ = unwrap(obj)
        if not managed_by_us(slice_):
            return
        if not self.tracker.has(slice_):
            # Upstream requeues only for slices it tracks; one nobody here wrote since the start
            # (deleted by hand after a restart) is requeued too, so that it comes back at once.
            self._queue_for_slice(slice_)
        elif not self.tracker.handle_deletion(slice_):
            self._queue_for_slice(slice_)

    def _node(self, name: str) -> Obj | None:
        return self.nodes.indexer.get_by_key(name)

    # -- sync --

    async def sync(self, key: str) -> None:
        namespace, name = split_meta_namespace_key(key)
        svc = self.services.indexer.get_by_key(key)
        if svc is None:
            # the slices go with the Service (garbage collector, through their ownerReference)
            self.trigger_times.delete_service(key)
            self.tracker.delete_service(key)
            return
        if (svc.get("spec") or {}).get("type") == "ExternalName" or service_selector(svc) is None:
            return
        selector = service_selector(svc) or {}
        pods = [
            p
            for p in self.pods.indexer.by_index("namespace", namespace or "")
            if selector_matches(selector, p["metadata"].get("labels"))
        ]
        slices = [
            s
            for s in self.slices.indexer.by_index("namespace", namespace or "")
            if (s["metadata"].get("labels") or {}).get(SERVICE_NAME_LABEL) == name
            and managed_by_us(s)
            and not s["metadata"].get("deletionTimestamp")
        ]
        if self.tracker.stale_slices(svc, slices):
            raise StaleInformerCache("EndpointSlice informer cache is out of date")
        trigger = self.trigger_times.compute(svc, pods)
        plan, errors = reconcile(
            svc, pods, slices, self._node, max_endpoints_per_slice=self.max_endpoints_per_slice
        )
        try:
            await self._finalize(svc, plan, trigger)
        except ClientError as e:
            errors.append(str(e))
        if errors:
            message = "; ".join(errors)
            self.recorder.event(
                svc,
                WARNING,
                "FailedToUpdateEndpointSlices",
                f"Error updating Endpoint Slices for Service {namespace}/{name}: {message}",
            )
            raise RuntimeError(message)

    async def _finalize(self, svc: Obj, plan: Plan, trigger: dt.datetime | None) -> None:
        """finalize: creates become updates of slices about to be deleted, then the writes."""
        i = 0
        while i < len(plan.delete) and plan.create:
            old = plan.delete[i]
            new = plan.create[-1]
            if old.get("addressType") == new["addressType"] and owned_by(old, svc):
                reused = meta.clone(old)
                reused["metadata"]["labels"] = new["metadata"]["labels"]
                reused["metadata"]["ownerReferences"] = new["metadata"]["ownerReferences"]
                reused["ports"] = new["ports"]
                reused["endpoints"] = new["endpoints"]
                plan.create.pop()
                plan.update.append(reused)
                plan.delete.pop(i)
            else:
                i += 1
        ns = svc["metadata"].get("namespace", "")
        if not svc["metadata"].get("deletionTimestamp"):
            for s in plan.create:
                _set_trigger_time(s, trigger)
                try:
                    created = await self.client.create(ENDPOINT_SLICES, s, namespace=ns)
                except ClientError as e:
                    if has_status_cause(e, NAMESPACE_TERMINATING_CAUSE):
                        return
                    raise
                self.tracker.update(created)
        for s in plan.update:
            _set_trigger_time(s, trigger)
            s.update(apiVersion="discovery.k8s.io/v1", kind="EndpointSlice")
            updated = await self.client.update(ENDPOINT_SLICES, s)
            self.tracker.update(updated)
        for s in plan.delete:
            try:
                await self.client.delete(ENDPOINT_SLICES, s["metadata"]["name"], namespace=ns)
            except ClientError as e:
                if not is_not_found(e):
                    raise
                continue
            self.tracker.expect_deletion(s)


def _set_trigger_time(slice_: Obj, trigger: dt.datetime | None) -> None:
    annotations = slice_["metadata"].setdefault("annotations", {})
    if trigger is not None:
        annotations[TRIGGER_TIME_ANNOTATION] = format_trigger_time(trigger)
    else:
        annotations.pop(TRIGGER_TIME_ANNOTATION, None)
    if not annotations:
        del slice_["metadata"]["annotations"]
