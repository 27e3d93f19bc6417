"""Printers of networking.k8s.io and discovery.k8s.io."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from k8py.api.printers._common import (
    AGE,
    NAME,
    NONE,
    Column,
    Obj,
    Printer,
    Printers,
    age,
    format_label_selector,
    get,
    items,
    list_with_more,
    load_balancer_ingress,
    mapping,
    name,
)


def _hosts(rules: list[Obj]) -> str:
    """formatHosts: up to three hosts; the "more" count is of rules, hostless ones included."""
    hosts: list[str] = []
    for rule in rules:
        if len(hosts) == 3:
            return f"{','.join(hosts)} + {len(rules) - 3} more..."
        if rule.get("host"):
            hosts.append(rule["host"])
    return ",".join(hosts) or "*"


def _ingress_cells(obj: Obj, now: datetime) -> list[Any]:
    spec = mapping(obj, "spec")
    class_name = spec.get("ingressClassName")
    return [
        name(obj),
        NONE if class_name is None else class_name,
        _hosts(items(spec, "rules")),
        load_balancer_ingress(get(obj, "status", "loadBalancer")),
        "80, 443" if items(spec, "tls") else "80",
        age(obj, now),
    ]


INGRESS = Printer(
    (
        NAME,
        Column(
            "Class",
            text="The name of the IngressClass resource that should be used for additional configuration",
        ),
        Column("Hosts", text="Hosts that incoming requests are matched against before the ingress rule"),
        Column("Address", text="Address is a list containing ingress points for the load-balancer"),
        Column("Ports", text="Ports of TLS configurations that open"),
        AGE,
    ),
    _ingress_cells,
)


def _ingress_class_parameters(spec: Obj) -> str:
    parameters = spec.get("parameters")
    if parameters is None:
        return NONE
    kind = parameters.get("kind", "")
    if parameters.get("apiGroup") is not None:
        kind = f"{kind}.{parameters['apiGroup']}"
    return f"{kind}/{parameters.get('name', '')}"


INGRESS_CLASS = Printer(
    (
        NAME,
        Column("Controller", text="Controller that is responsible for handling this class"),
        Column("Parameters", text="A reference to a resource with additional parameters"),
        AGE,
    ),
    lambda o, now: [
        name(o),
        get(o, "spec", "controller") or "",
        _ingress_class_parameters(mapping(o, "spec")),
        age(o, now),
    ],
)

NETWORK_POLICY = Printer(
    (NAME, Column("Pod-Selector", doc=("networking.v1.NetworkPolicySpec", "podSelector")), AGE),
    # podSelector is not a pointer upstream: an absent one is the empty selector
    lambda o, now: [name(o), format_label_selector(mapping(o, "spec", "podSelector")), age(o, now)],
)


def _slice_port(port: Obj) -> str:
    if port.get("port") is not None:
        return str(port["port"])
    if port.get("name") is not None:
        return port["name"]
    return "*"


def _slice_cells(obj: Obj, now: datetime) -> list[Any]:
    ports = [_slice_port(p) for p in items(obj, "ports")]
    addresses = [a for e in items(obj, "endpoints") for a in items(e, "addresses")]
    return [
        name(obj),
        obj.get("addressType", ""),
        list_with_more(ports, 3),
        list_with_more(addresses, 3),
        age(obj, now),
    ]


ENDPOINT_SLICE = Printer(
    (
        NAME,
        Column("AddressType", doc=("discovery.v1.EndpointSlice", "addressType")),
        Column("Ports", doc=("discovery.v1.EndpointSlice", "ports")),
        Column("Endpoints", doc=("discovery.v1.EndpointSlice", "endpoints")),
        AGE,
    ),
    _slice_cells,
)

PRINTERS: Printers = {
    ("discovery.k8s.io", "EndpointSlice"): ENDPOINT_SLICE,
    ("networking.k8s.io", "Ingress"): INGRESS,
    ("networking.k8s.io", "IngressClass"): INGRESS_CLASS,
    ("networking.k8s.io", "NetworkPolicy"): NETWORK_POLICY,
}
