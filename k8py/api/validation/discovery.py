"""discovery.k8s.io/v1 EndpointSlices (pkg/apis/discovery/validation), the essentials."""

from __future__ import annotations

from k8py.api.validation.field import (
    Cause,
    duplicate,
    immutable,
    invalid_each,
    not_supported,
    required,
    too_many,
)
from k8py.api.validation.meta import Obj, validate_meta
from k8py.api.validation.names import is_dns1123_label, is_valid_ip, is_valid_port_num, name_is_dns_subdomain
from k8py.api.validation.pods import PROTOCOLS

ADDRESS_TYPES = ("FQDN", "IPv4", "IPv6")
MAX_ENDPOINTS = 1000
MAX_ADDRESSES = 100
MAX_PORTS = 20000


def validate_endpoint_slice(slice_: Obj, old: Obj | None) -> list[Cause]:
    causes = validate_meta(slice_, old, True, name_is_dns_subdomain)
    if old is not None:
        causes += immutable("addressType", slice_.get("addressType", ""), old.get("addressType", ""))
    address_type = slice_.get("addressType", "")
    if not address_type:
        causes.append(required("addressType"))
    elif address_type not in ADDRESS_TYPES:
        causes.append(not_supported("addressType", address_type, ADDRESS_TYPES))
    endpoints = slice_.get("endpoints") or []
    if len(endpoints) > MAX_ENDPOINTS:
        causes.append(too_many("endpoints", len(endpoints), MAX_ENDPOINTS))
    for i, endpoint in enumerate(endpoints):
        addresses = endpoint.get("addresses") or []
        path = f"endpoints[{i}].addresses"
        if not addresses:
            causes.append(required(path, "must contain at least 1 address"))
        elif len(addresses) > MAX_ADDRESSES:
            causes.append(too_many(path, len(addresses), MAX_ADDRESSES))
        for j, address in enumerate(addresses):
            if address_type in ("IPv4", "IPv6"):
                causes += invalid_each(f"{path}[{j}]", address, is_valid_ip(address))
    ports = slice_.get("ports") or []
    if len(ports) > MAX_PORTS:
        causes.append(too_many("ports", len(ports), MAX_PORTS))
    names: set[str] = set()
    for i, port in enumerate(ports):
        path = f"ports[{i}]"
        name = port.get("name") or ""
        if name:
            causes += invalid_each(f"{path}.name", name, is_dns1123_label(name))
        if name in names:
            causes.append(duplicate(f"{path}.name", name))
        names.add(name)
        protocol = port.get("protocol") or ""
        if protocol not in PROTOCOLS:
            causes.append(not_supported(f"{path}.protocol", protocol, PROTOCOLS))
        if port.get("port") is not None:
            causes += invalid_each(f"{path}.port", port["port"], is_valid_port_num(port["port"]))
    return causes


VALIDATORS = {"EndpointSlice": validate_endpoint_slice}
