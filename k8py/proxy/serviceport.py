"""Services as kube-proxy sees them: one :class:`ServicePortInfo` per (Service, port), and the
:class:`ServiceChangeTracker` that accumulates changes between two syncs (upstream
pkg/proxy/serviceport.go and servicechangetracker.go).

The tracker keeps, per Service, its port map as of the last sync (``previous``) and as of
now (``current``); a Service changed back to what it was drops out, so a sync touches only
the Services whose proxy-relevant fields really differ.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, NamedTuple

Obj = dict[str, Any]

DEFAULT_CLIENT_IP_TIMEOUT = 10800  # v1.DefaultClientIPServiceAffinitySeconds


class NamespacedName(NamedTuple):
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


class ServicePortName(NamedTuple):
    """A Service's port: (namespace/name, port name, protocol)."""

    service: NamespacedName
    port: str
    protocol: str  # TCP, UDP, SCTP

    def __str__(self) -> str:
        return f"{self.service}:{self.port}" if self.port else str(self.service)


@dataclass(frozen=True, slots=True)
class ServicePortInfo:
    """The fields of one Service port that the rules depend on (upstream BaseServicePortInfo)."""

    name: ServicePortName
    cluster_ip: str
    port: int
    protocol: str
    node_port: int = 0
    external_ips: tuple[str, ...] = ()
    load_balancer_vips: tuple[str, ...] = ()
    load_balancer_source_ranges: tuple[str, ...] = ()
    session_affinity_client_ip: bool = False
    sticky_max_age_seconds: int = DEFAULT_CLIENT_IP_TIMEOUT
    external_policy_local: bool = False
    internal_policy_local: bool = False
    health_check_node_port: int = 0

    def externally_accessible(self) -> bool:
        return self.node_port != 0 or bool(self.load_balancer_vips) or bool(self.external_ips)

    def uses_cluster_endpoints(self) -> bool:
        """Whether some traffic to this port goes to Cluster-policy endpoints."""
        return not self.internal_policy_local or (self.externally_accessible() and not self.external_policy_local)

    def uses_local_endpoints(self) -> bool:
        return self.internal_policy_local or (self.externally_accessible() and self.external_policy_local)


ServicePortMap = dict[ServicePortName, ServicePortInfo]


def _ipv4(addresses: Any) -> tuple[str, ...]:
    out = []
    for a in addresses or ():
        try:
            if ipaddress.ip_address(a).version == 4:
                out.append(a)
        except ValueError:
            continue
    return tuple(out)


def should_skip_service(service: Obj) -> bool:
    """Headless and ExternalName Services get no rules (upstream proxyutil.ShouldSkipService)."""
    spec = service.get("spec") or {}
    ip = spec.get("clusterIP") or ""
    return ip in ("", "None") or spec.get("type") == "ExternalName"


def service_to_service_map(service: Obj | None) -> ServicePortMap:
    """The IPv4 ServicePortInfos of a Service ({} for None and skipped Services)."""
    if service is None or should_skip_service(service):
        return {}
    spec = service.get("spec") or {}
    cluster_ips = _ipv4(spec.get("clusterIPs") or [spec.get("clusterIP")])
    if not cluster_ips:
        return {}
    meta = service["metadata"]
    svc = NamespacedName(meta.get("namespace", ""), meta["name"])
    svc_type = spec.get("type") or "ClusterIP"
    node_ports = svc_type in ("NodePort", "LoadBalancer")
    external_ips = _ipv4(spec.get("externalIPs"))
    # upstream apiservice.ExternallyAccessible: what an externalTrafficPolicy applies to
    externally_accessible = node_ports or (svc_type == "ClusterIP" and bool(spec.get("externalIPs")))
    affinity = spec.get("sessionAffinity") == "ClientIP"
    timeout = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}).get("timeoutSeconds")
    lb_ips = _ipv4(
        ing.get("ip") for ing in ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        if ing.get("ipMode", "VIP") == "VIP"
    ) if svc_type == "LoadBalancer" else ()
    result: ServicePortMap = {}
    for port in spec.get("ports") or []:
        protocol = port.get("protocol") or "TCP"
        name = ServicePortName(svc, port.get("name") or "", protocol)
        result[name] = ServicePortInfo(
            name=name,
            cluster_ip=cluster_ips[0],
            port=int(port["port"]),
            protocol=protocol,
            node_port=int(port.get("nodePort") or 0) if node_ports else 0,
            external_ips=external_ips,
            load_balancer_vips=lb_ips,
            load_balancer_source_ranges=tuple(spec.get("loadBalancerSourceRanges") or ()) if lb_ips else (),
            session_affinity_client_ip=affinity,
            sticky_max_age_seconds=int(timeout or DEFAULT_CLIENT_IP_TIMEOUT),
            external_policy_local=externally_accessible and spec.get("externalTrafficPolicy") == "Local",
            internal_policy_local=spec.get("internalTrafficPolicy") == "Local",
            health_check_node_port=int(spec.get("healthCheckNodePort") or 0),
        )
    return result


@dataclass
class _ServiceChange:
    previous: ServicePortMap
    current: ServicePortMap = field(default_factory=dict)


@dataclass
class UpdateServiceMapResult:
    """What :func:`update_service_map` changed: the Services to rewrite, and the previous state
    of the ports removed or changed (for the conntrack cleanup)."""

    updated_services: set[NamespacedName]
    removed_ports: list[ServicePortInfo]


class ServiceChangeTracker:
    """Accumulates Service changes between syncs (upstream ServiceChangeTracker)."""

    def __init__(self) -> None:
        self.items: dict[NamespacedName, _ServiceChange] = {}

    def update(self, previous: Obj | None, current: Obj | None) -> bool:
        """Record a Service's add (previous None), update or delete (current None); True if
        changes are pending."""
        svc = current if current is not None else previous
        if svc is None:
            return False
        meta = svc["metadata"]
        key = NamespacedName(meta.get("namespace", ""), meta["name"])
        change = self.items.get(key)
        if change is None:
            change = self.items[key] = _ServiceChange(service_to_service_map(previous))
        change.current = service_to_service_map(current)
        if change.previous == change.current:
            del self.items[key]
        return bool(self.items)

    def pending(self) -> bool:
        return bool(self.items)

    def checkout(self) -> dict[NamespacedName, _ServiceChange]:
        items, self.items = self.items, {}
        return items


def update_service_map(service_map: ServicePortMap, changes: ServiceChangeTracker) -> UpdateServiceMapResult:
    """Apply the tracker's pending changes to ``service_map`` (upstream ServicePortMap.Update)."""
    result = UpdateServiceMapResult(set(), [])
    for key, change in changes.checkout().items():
        result.updated_services.add(key)
        for name, info in change.previous.items():
            if name not in change.current:
                service_map.pop(name, None)
            if change.current.get(name) != info:
                result.removed_ports.append(info)
        service_map.update(change.current)
    return result
