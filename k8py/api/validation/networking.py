"""networking.k8s.io/v1: NetworkPolicies, Ingresses and IngressClasses (pkg/apis/networking/validation)."""

from __future__ import annotations

import ipaddress

from k8py.api.validation.field import (
    Cause,
    forbidden,
    immutable,
    invalid,
    invalid_each,
    not_supported,
    required,
    too_long,
)
from k8py.api.validation.meta import (
    Obj,
    validate_label_selector,
    validate_meta,
)
from k8py.api.validation.names import (
    is_dns1123_subdomain,
    is_path_segment_name,
    is_valid_cidr,
    is_valid_ip,
    is_valid_port_name,
    is_valid_port_num,
    is_wildcard_dns1123_subdomain,
    name_is_dns1035_label,
    name_is_dns_label,
    name_is_dns_subdomain,
)
from k8py.api.validation.pods import PROTOCOLS

_PATH_TYPES = ("Exact", "ImplementationSpecific", "Prefix")
_INVALID_PATH_SEQUENCES = ("//", "/./", "/../", "%2f", "%2F")
_INVALID_PATH_SUFFIXES = ("/..", "/.")


def _validate_policy_port(port: Obj, path: str) -> list[Cause]:
    causes: list[Cause] = []
    protocol = port.get("protocol")
    if protocol is not None and protocol not in PROTOCOLS:
        causes.append(not_supported(f"{path}.protocol", protocol, ("TCP", "UDP", "SCTP")))
    number, end = port.get("port"), port.get("endPort")
    if number is None:
        if end is not None:
            causes.append(
                invalid(f"{path}.endPort", end, "may not be specified when `port` is not specified")
            )
    elif isinstance(number, int):
        causes += invalid_each(f"{path}.port", number, is_valid_port_num(number))
        if end is not None:
            if end < number:
                causes.append(invalid(f"{path}.endPort", end, "must be greater than or equal to `port`"))
            causes += invalid_each(f"{path}.endPort", end, is_valid_port_num(end))
    else:
        if end is not None:
            causes.append(invalid(f"{path}.endPort", end, "may not be specified when `port` is non-numeric"))
        causes += invalid_each(f"{path}.port", number, is_valid_port_name(number))
    return causes


def _validate_ip_block(block: Obj, path: str) -> list[Cause]:
    cidr = block.get("cidr", "")
    if not cidr:
        return [required(f"{path}.cidr")]
    causes = invalid_each(f"{path}.cidr", cidr, is_valid_cidr(cidr))
    if causes:
        return causes
    network = ipaddress.ip_network(cidr, strict=False)
    for i, except_cidr in enumerate(block.get("except") or []):
        except_path = f"{path}.except[{i}]"
        errs = invalid_each(except_path, except_cidr, is_valid_cidr(except_cidr))
        causes += errs
        if errs:
            continue
        excluded = ipaddress.ip_network(except_cidr, strict=False)
        if (
            excluded.version != network.version
            or not excluded.subnet_of(network)
            or excluded.prefixlen <= network.prefixlen
        ):
            causes.append(invalid(except_path, except_cidr, "must be a strict subset of `cidr`"))
    return causes


def _validate_peer(peer: Obj, path: str) -> list[Cause]:
    causes: list[Cause] = []
    kinds = [key for key in ("podSelector", "namespaceSelector", "ipBlock") if peer.get(key) is not None]
    for key in ("podSelector", "namespaceSelector"):
        if peer.get(key) is not None:
            causes += validate_label_selector(peer[key], f"{path}.{key}")
    if peer.get("ipBlock") is not None:
        causes += _validate_ip_block(peer["ipBlock"], f"{path}.ipBlock")
    if not kinds:
        causes.append(required(path, "must specify a peer"))
    elif len(kinds) > 1 and "ipBlock" in kinds:
        causes.append(forbidden(path, "may not specify both ipBlock and another peer"))
    return causes


def validate_network_policy(policy: Obj, old: Obj | None) -> list[Cause]:
    spec = policy.get("spec") or {}
    causes = validate_meta(policy, old, True, name_is_dns_subdomain)
    causes += validate_label_selector(spec.get("podSelector") or {}, "spec.podSelector")
    for direction, peers_key in (("ingress", "from"), ("egress", "to")):
        for i, rule in enumerate(spec.get(direction) or []):
            rule_path = f"spec.{direction}[{i}]"
            for j, port in enumerate(rule.get("ports") or []):
                causes += _validate_policy_port(port, f"{rule_path}.ports[{j}]")
            for j, peer in enumerate(rule.get(peers_key) or []):
                causes += _validate_peer(peer, f"{rule_path}.{peers_key}[{j}]")
    types = spec.get("policyTypes") or []
    if len(types) > 2:
        return causes + [invalid("spec.policyTypes", types, "may not specify more than two policyTypes")]
    for i, policy_type in enumerate(types):
        if policy_type not in ("Ingress", "Egress"):
            causes.append(not_supported(f"spec.policyTypes[{i}]", policy_type, ("Ingress", "Egress")))
    return causes


def _validate_backend(backend: Obj, path: str) -> list[Cause]:
    resource, service = backend.get("resource"), backend.get("service")
    if resource is not None and service is not None:
        return [invalid(path, "", "cannot set both resource and service backends")]
    if resource is not None:
        causes: list[Cause] = []
        for key in ("kind", "name"):
            if not resource.get(key):
                causes.append(required(f"{path}.resource.{key}"))
            else:
                causes += invalid_each(
                    f"{path}.resource.{key}", resource[key], is_path_segment_name(resource[key])
                )
        return causes
    if service is None:
        return [invalid(path, "", "resource or service backend is required")]
    causes = []
    name = service.get("name", "")
    if not name:
        causes.append(required(f"{path}.service.name"))
    else:
        causes += invalid_each(f"{path}.service.name", name, name_is_dns1035_label(name, False))
    port = service.get("port") or {}
    port_name, port_number = port.get("name", ""), port.get("number", 0)
    if port_name and port_number:
        causes.append(invalid(path, "", "cannot set both port name & port number"))
    elif port_name:
        causes += invalid_each(f"{path}.service.port.name", port_name, is_valid_port_name(port_name))
    elif port_number:
        causes += invalid_each(f"{path}.service.port.number", port_number, is_valid_port_num(port_number))
    else:
        causes.append(required(path, "port name or number is required"))
    return causes


def _validate_http_path(http_path: Obj, path: str) -> list[Cause]:
    path_type = http_path.get("pathType")
    if path_type is None:
        return [required(f"{path}.pathType", "pathType must be specified")]
    value = http_path.get("path", "")
    causes: list[Cause] = []
    if path_type in ("Exact", "Prefix"):
        if not value.startswith("/"):
            causes.append(invalid(f"{path}.path", value, "must be an absolute path"))
        causes += [
            invalid(f"{path}.path", value, f"must not contain '{seq}'")
            for seq in _INVALID_PATH_SEQUENCES
            if seq in value
        ]
        causes += [
            invalid(f"{path}.path", value, f"cannot end with '{suffix}'")
            for suffix in _INVALID_PATH_SUFFIXES
            if value.endswith(suffix)
        ]
    elif path_type == "ImplementationSpecific":
        if value and not value.startswith("/"):
            causes.append(invalid(f"{path}.path", value, "must be an absolute path"))
    else:
        causes.append(not_supported(f"{path}.pathType", path_type, _PATH_TYPES))
    return causes + _validate_backend(http_path.get("backend") or {}, f"{path}.backend")


def _validate_host(host: str, path: str) -> list[Cause]:
    if "*" in host:
        return invalid_each(path, host, is_wildcard_dns1123_subdomain(host))
    return invalid_each(path, host, is_dns1123_subdomain(host))


def validate_ingress(ingress: Obj, old: Obj | None) -> list[Cause]:
    spec = ingress.get("spec") or {}
    causes = validate_meta(ingress, old, True, name_is_dns_subdomain)
    rules = spec.get("rules") or []
    if not rules and spec.get("defaultBackend") is None:
        causes.append(invalid("spec", rules, "either `defaultBackend` or `rules` must be specified"))
    if spec.get("defaultBackend") is not None:
        causes += _validate_backend(spec["defaultBackend"], "spec.defaultBackend")
    for i, rule in enumerate(rules):
        host = rule.get("host", "")
        if host:
            if not is_valid_ip(host):
                causes.append(invalid(f"spec.rules[{i}].host", host, "must be a DNS name, not an IP address"))
            causes += _validate_host(host, f"spec.rules[{i}].host")
        http = rule.get("http")
        if http is not None:
            paths = http.get("paths") or []
            if not paths:
                causes.append(required(f"spec.rules[{i}].http.paths"))
            for j, http_path in enumerate(paths):
                causes += _validate_http_path(http_path, f"spec.rules[{i}].http.paths[{j}]")
    for i, tls in enumerate(spec.get("tls") or []):
        for j, host in enumerate(tls.get("hosts") or []):
            causes += _validate_host(host, f"spec.tls[{i}].hosts[{j}]")
        if tls.get("secretName"):
            causes += invalid_each(
                f"spec.tls[{i}].secretName",
                tls["secretName"],
                name_is_dns_subdomain(tls["secretName"], False),
            )
    class_name = spec.get("ingressClassName")
    if class_name is not None:
        causes += invalid_each("spec.ingressClassName", class_name, name_is_dns_subdomain(class_name, False))
    annotation = ((ingress.get("metadata") or {}).get("annotations") or {}).get("kubernetes.io/ingress.class")
    if old is None and annotation is not None and class_name is not None and annotation != class_name:
        causes.append(
            invalid(
                "annotations.kubernetes.io/ingress.class",
                annotation,
                "must match `ingressClassName` when both are specified",
            )
        )
    return causes


def validate_ingress_class(ingress_class: Obj, old: Obj | None) -> list[Cause]:
    spec = ingress_class.get("spec") or {}
    causes = validate_meta(ingress_class, old, False, name_is_dns_subdomain)
    controller = spec.get("controller", "")
    if not controller:
        causes.append(required("spec.controller"))
    elif len(controller) > 250:
        causes.append(too_long("spec.controller", 250))
    parameters = spec.get("parameters")
    if parameters is not None:
        path = "spec.parameters"
        for key in ("kind", "name"):
            if not parameters.get(key):
                causes.append(required(f"{path}.{key}"))
            else:
                causes += invalid_each(
                    f"{path}.{key}", parameters[key], is_path_segment_name(parameters[key])
                )
        scope = parameters.get("scope")
        if scope is None:
            causes.append(required(f"{path}.scope"))
        elif scope not in ("Cluster", "Namespace"):
            causes.append(not_supported(f"{path}.scope", scope, ("Cluster", "Namespace")))
        elif scope == "Namespace":
            if parameters.get("namespace") is None:
                causes.append(required(f"{path}.namespace", "`parameters.scope` is set to 'Namespace'"))
            else:
                causes += invalid_each(
                    f"{path}.namespace",
                    parameters["namespace"],
                    name_is_dns_label(parameters["namespace"], False),
                )
        elif parameters.get("namespace") is not None:
            causes.append(forbidden(f"{path}.namespace", "`parameters.scope` is set to 'Cluster'"))
    if old is not None:
        causes += immutable("spec.controller", controller, (old.get("spec") or {}).get("controller", ""))
    return causes


VALIDATORS = {
    "NetworkPolicy": validate_network_policy,
    "Ingress": validate_ingress,
    "IngressClass": validate_ingress_class,
}
