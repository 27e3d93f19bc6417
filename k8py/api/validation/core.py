"""core/v1 kinds other than Pods: pkg/apis/core/validation (and events.go for Events).

Every validator takes the new object and, on update, the stored one. Cluster
IPs are read as the Service strategy normalizes them (`clusterIPs` follows
`clusterIP` when only the latter is given); node ports and health-check ports
are the allocator's business and are not range-checked here.
"""

from __future__ import annotations

import base64
import ipaddress
from typing import Any

from k8py.api.validation.field import (
    Cause,
    GoStruct,
    duplicate,
    forbidden,
    immutable,
    invalid,
    invalid_each,
    non_negative,
    not_supported,
    required,
    too_long,
)
from k8py.api.validation.meta import (
    Obj,
    validate_kube_finalizer_name,
    validate_label_name,
    validate_label_selector,
    validate_labels,
    validate_meta,
    validate_object_meta,
    validate_object_meta_update,
)
from k8py.api.validation.names import (
    is_config_map_key,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_qualified_name,
    is_valid_cidr,
    is_valid_ip,
    is_valid_label_value,
    is_valid_port_num,
    name_is_dns1035_label,
    name_is_dns_label,
    name_is_dns_subdomain,
)
from k8py.api.validation.pods import (
    PROTOCOLS,
    spec_diff,
    validate_pod,
    validate_pod_template_spec,
    validate_port_num_or_name,
    validate_resource_quantity,
    validate_volume_source,
)

MAX_SECRET_SIZE = 1024 * 1024


# --- Services -------------------------------------------------------------------------------------


def _cluster_ips(spec: Obj) -> list[str]:
    """spec.clusterIPs as the strategy's normalizeClusterIPs leaves it."""
    return spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])


def _is_headless(spec: Obj) -> bool:
    return _cluster_ips(spec) == ["None"]


def _validate_service_port(port: Obj, require_name: bool, names: set[str], path: str) -> list[Cause]:
    causes: list[Cause] = []
    name = port.get("name", "")
    if require_name and not name:
        causes.append(required(f"{path}.name"))
    elif name:
        causes += invalid_each(f"{path}.name", name, is_dns1123_label(name))
        if name in names:
            causes.append(duplicate(f"{path}.name", name))
        names.add(name)
    causes += invalid_each(f"{path}.port", port.get("port", 0), is_valid_port_num(port.get("port", 0)))
    protocol = port.get("protocol", "")
    if not protocol:
        causes.append(required(f"{path}.protocol"))
    elif protocol not in PROTOCOLS:
        causes.append(not_supported(f"{path}.protocol", protocol, PROTOCOLS))
    causes += validate_port_num_or_name(port.get("targetPort"), f"{path}.targetPort")
    if port.get("appProtocol") is not None:
        causes += invalid_each(
            f"{path}.appProtocol", port["appProtocol"], is_qualified_name(port["appProtocol"])
        )
    return causes


def _is_ipv6(ip: str) -> bool:
    return ":" in ip


def _validate_cluster_ips(spec: Obj) -> list[Cause]:
    """ValidateServiceClusterIPsRelatedFields."""
    if spec.get("type") == "ExternalName":
        return []
    causes: list[Cause] = []
    ips, families = _cluster_ips(spec), spec.get("ipFamilies") or []
    if spec.get("clusterIP") and ips[0] != spec["clusterIP"]:
        causes.append(invalid("spec.clusterIPs", ips, "first value must match `clusterIP`"))
    elif not spec.get("clusterIP") and ips:
        causes.append(invalid("spec.clusterIPs", ips, "must be empty when `clusterIP` is not specified"))
    seen: set[str] = set()
    for i, family in enumerate(families):
        if family not in ("IPv4", "IPv6"):
            causes.append(not_supported(f"spec.ipFamilies[{i}]", family, ("IPv4", "IPv6")))
        if family in seen:
            causes.append(duplicate(f"spec.ipFamilies[{i}]", family))
        seen.add(family)
    policies = ("PreferDualStack", "RequireDualStack", "SingleStack")
    if spec.get("ipFamilyPolicy") is not None and spec["ipFamilyPolicy"] not in policies:
        causes.append(not_supported("spec.ipFamilyPolicy", spec["ipFamilyPolicy"], policies))
    bad_ips = False
    for i, ip in enumerate(ips):
        if i == 0 and ip == "None":
            if len(ips) > 1:
                bad_ips = True
                causes.append(invalid("spec.clusterIPs", ips, "'None' must be the first and only value"))
            continue
        errs = invalid_each(f"spec.clusterIPs[{i}]", ip, is_valid_ip(ip))
        bad_ips = bad_ips or bool(errs)
        causes += errs
    if len(ips) > 2:
        causes.append(invalid("spec.clusterIPs", ips, "may only hold up to 2 values"))
    if bad_ips:
        return causes
    if len(ips) > 1 and _is_ipv6(ips[0]) == _is_ipv6(ips[1]):
        causes.append(invalid("spec.clusterIPs", ips, "may specify no more than one IP for each IP family"))
    if not _is_headless(spec):
        for i, (ip, family) in enumerate(zip(ips, families, strict=False)):
            if family == "IPv4" and _is_ipv6(ip):
                causes.append(
                    invalid(
                        f"spec.clusterIPs[{i}]",
                        ip,
                        f"expected an IPv4 value as indicated by `ipFamilies[{i}]`",
                    )
                )
            if family == "IPv6" and not _is_ipv6(ip):
                causes.append(
                    invalid(
                        f"spec.clusterIPs[{i}]",
                        ip,
                        f"expected an IPv6 value as indicated by `ipFamilies[{i}]`",
                    )
                )
    return causes


def _non_special_ip(ip: str, path: str) -> list[Cause]:
    address = ipaddress.ip_address(ip)
    causes = []
    if address.is_unspecified:
        causes.append(invalid(path, ip, f"may not be unspecified ({ip})"))
    if address.is_loopback:
        causes.append(invalid(path, ip, "may not be in the loopback range (127.0.0.0/8, ::1/128)"))
    if address.is_link_local:
        causes.append(invalid(path, ip, "may not be in the link-local range (169.254.0.0/16, fe80::/10)"))
    return causes


def _externally_accessible(spec: Obj) -> bool:
    return spec.get("type") in ("LoadBalancer", "NodePort") or (
        spec.get("type") == "ClusterIP" and bool(spec.get("externalIPs"))
    )


def _validate_service_spec(service: Obj) -> list[Cause]:
    spec = service.get("spec") or {}
    meta = service.get("metadata") or {}
    svc_type = spec.get("type", "")
    ports = spec.get("ports") or []
    headless = _is_headless(spec)
    causes: list[Cause] = []
    if not ports and not headless and svc_type != "ExternalName":
        causes.append(required("spec.ports"))
    if svc_type in ("LoadBalancer", "NodePort") and headless:
        causes.append(
            invalid("spec.clusterIPs[0]", "None", f"may not be set to 'None' for {svc_type} services")
        )
    elif svc_type == "ExternalName":
        for key in ("clusterIPs", "ipFamilies"):
            if _cluster_ips(spec) if key == "clusterIPs" else spec.get(key):
                causes.append(forbidden(f"spec.{key}", "may not be set for ExternalName services"))
        if spec.get("ipFamilyPolicy") is not None:
            causes.append(forbidden("spec.ipFamilyPolicy", "may not be set for ExternalName services"))
        cname = (spec.get("externalName") or "").removesuffix(".")
        if cname:
            causes += invalid_each("spec.externalName", cname, is_dns1123_subdomain(cname))
        else:
            causes.append(required("spec.externalName"))
    names: set[str] = set()
    for i, port in enumerate(ports):
        causes += _validate_service_port(port, len(ports) > 1, names, f"spec.ports[{i}]")
    if spec.get("selector") is not None:
        causes += validate_labels(spec["selector"], "spec.selector")
    affinity = spec.get("sessionAffinity", "")
    if not affinity:
        causes.append(required("spec.sessionAffinity"))
    elif affinity not in ("ClientIP", "None"):
        causes.append(not_supported("spec.sessionAffinity", affinity, ("ClientIP", "None")))
    if affinity == "ClientIP":
        timeout = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}).get("timeoutSeconds")
        if timeout is None:
            causes.append(required("spec.sessionAffinityConfig", "when session affinity type is ClientIP"))
        elif not 0 < timeout <= 86400:
            causes.append(
                invalid(
                    "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                    timeout,
                    "must be greater than 0 and less than 86400",
                )
            )
    elif affinity == "None" and spec.get("sessionAffinityConfig") is not None:
        causes.append(
            forbidden("spec.sessionAffinityConfig", "must not be set when session affinity is None")
        )
    causes += _validate_cluster_ips(spec)
    for i, ip in enumerate(spec.get("externalIPs") or []):
        errs = invalid_each(f"spec.externalIPs[{i}]", ip, is_valid_ip(ip))
        causes += errs or _non_special_ip(ip, f"spec.externalIPs[{i}]")
    types = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")
    if not svc_type:
        causes.append(required("spec.type"))
    elif svc_type not in types:
        causes.append(not_supported("spec.type", svc_type, types))
    node_ports: set[tuple[str, int]] = set()
    service_ports: set[tuple[str, int]] = set()
    for i, port in enumerate(ports):
        protocol, node_port = port.get("protocol", ""), port.get("nodePort", 0)
        if svc_type == "ClusterIP" and node_port:
            causes.append(
                forbidden(f"spec.ports[{i}].nodePort", "may not be used when `type` is 'ClusterIP'")
            )
        if node_port:
            if (protocol, node_port) in node_ports:
                causes.append(duplicate(f"spec.ports[{i}].nodePort", node_port))
            node_ports.add((protocol, node_port))
        key = (protocol, port.get("port", 0))
        if key in service_ports:
            # The duplicate is an internal core.ServicePort; Go marshals its fields by their Go names.
            value = GoStruct(
                Name="", Protocol=protocol, AppProtocol=None, Port=key[1], TargetPort=0, NodePort=0
            )
            causes.append(duplicate(f"spec.ports[{i}]", value))
        service_ports.add(key)
    source_ranges = spec.get("loadBalancerSourceRanges") or []
    if source_ranges:
        if svc_type != "LoadBalancer":
            causes.append(
                forbidden("spec.LoadBalancerSourceRanges", "may only be used when `type` is 'LoadBalancer'")
            )
        for i, cidr in enumerate(source_ranges):
            causes += invalid_each(
                f"spec.LoadBalancerSourceRanges[{i}]", cidr.strip(), is_valid_cidr(cidr.strip())
            )
    if spec.get("allocateLoadBalancerNodePorts") is not None and svc_type != "LoadBalancer":
        causes.append(
            forbidden("spec.allocateLoadBalancerNodePorts", "may only be used when `type` is 'LoadBalancer'")
        )
    if svc_type == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts") is None:
        causes.append(required("allocateLoadBalancerNodePorts"))
    if spec.get("loadBalancerClass") is not None:
        if svc_type == "LoadBalancer":
            causes += invalid_each(
                "spec.loadBalancerClass",
                spec["loadBalancerClass"],
                is_qualified_name(spec["loadBalancerClass"]),
            )
        else:
            causes.append(
                forbidden("spec.loadBalancerClass", "may only be used when `type` is 'LoadBalancer'")
            )
    traffic = spec.get("externalTrafficPolicy", "")
    if not _externally_accessible(spec):
        if traffic:
            causes.append(
                invalid(
                    "spec.externalTrafficPolicy",
                    traffic,
                    "may only be set for externally-accessible services",
                )
            )
    elif not traffic:
        causes.append(required("spec.externalTrafficPolicy"))
    elif traffic not in ("Cluster", "Local"):
        causes.append(not_supported("spec.externalTrafficPolicy", traffic, ("Cluster", "Local")))
    if spec.get("healthCheckNodePort") and not (svc_type == "LoadBalancer" and traffic == "Local"):
        causes.append(
            invalid(
                "spec.healthCheckNodePort",
                spec["healthCheckNodePort"],
                "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
            )
        )
    internal = spec.get("internalTrafficPolicy")
    if internal is None and svc_type in ("NodePort", "LoadBalancer", "ClusterIP"):
        causes.append(required("spec.internalTrafficPolicy"))
    elif internal is not None and internal not in ("Cluster", "Local"):
        causes.append(not_supported("spec.internalTrafficPolicy", internal, ("Cluster", "Local")))
    distribution = spec.get("trafficDistribution")
    if distribution is not None and distribution != "PreferClose":
        causes.append(not_supported("spec.trafficDistribution", distribution, ("PreferClose",)))
    topology = (meta.get("annotations") or {}).get("service.kubernetes.io/topology-mode")
    hints = (meta.get("annotations") or {}).get("service.kubernetes.io/topology-aware-hints")
    if topology is not None and hints is not None and topology != hints:
        causes.append(
            invalid(
                "metadata.annotations[service.kubernetes.io/topology-mode]",
                topology,
                "must match annotations[service.kubernetes.io/topology-aware-hints] when both are specified",
            )
        )
    return causes


def _validate_service_update(spec: Obj, old_spec: Obj) -> list[Cause]:
    """Cluster IPs and IP families may be added or dropped, never changed; the LB class is fixed."""
    causes: list[Cause] = []
    if "ExternalName" in (spec.get("type"), old_spec.get("type")):
        return causes
    ips, old_ips = _cluster_ips(spec), _cluster_ips(old_spec)
    if not (_is_headless(spec) and _is_headless(old_spec)):
        if len(ips) == len(old_ips):
            causes += [
                invalid(f"spec.clusterIPs[{i}]", ips, "may not change once set")
                for i, ip in enumerate(old_ips)
                if ip != ips[i]
            ]
        elif len(old_ips) > len(ips):
            if not ips:
                causes.append(invalid("spec.clusterIPs[0]", ips, "primary clusterIP can not be unset"))
            elif ips[0] != old_ips[0]:
                causes.append(invalid("spec.clusterIPs[0]", ips, "may not change once set"))
            if len(ips) == 1 and spec.get("ipFamilyPolicy") != "SingleStack":
                causes.append(
                    invalid(
                        "spec.ipFamilyPolicy",
                        spec.get("ipFamilyPolicy"),
                        "must be set to 'SingleStack' when releasing the secondary clusterIP",
                    )
                )
        elif old_ips and ips[0] != old_ips[0]:
            causes.append(invalid("spec.clusterIPs[0]", ips, "may not change once set"))
    families, old_families = spec.get("ipFamilies") or [], old_spec.get("ipFamilies") or []
    if _is_headless(spec) == _is_headless(old_spec) and not _is_headless(spec):
        if len(families) == len(old_families):
            if families != old_families:
                causes.append(invalid("spec.ipFamilies[0]", families, "may not change once set"))
        elif len(old_families) > len(families):
            if families and families[0] != old_families[0]:
                causes.append(invalid("spec.ipFamilies[0]", ips, "may not change once set"))
            if len(families) == 1 and spec.get("ipFamilyPolicy") != "SingleStack":
                causes.append(
                    invalid(
                        "spec.ipFamilyPolicy",
                        spec.get("ipFamilyPolicy"),
                        "must be set to 'SingleStack' when releasing the secondary ipFamily",
                    )
                )
        elif old_families and families[0] != old_families[0]:
            causes.append(invalid("spec.ipFamilies[0]", ips, "may not change once set"))
    both_lb = spec.get("type") == old_spec.get("type") == "LoadBalancer"
    if both_lb and spec.get("loadBalancerClass") != old_spec.get("loadBalancerClass"):
        causes.append(
            invalid("spec.loadBalancerClass", spec.get("loadBalancerClass"), "may not change once set")
        )
    return causes


def validate_service(service: Obj, old: Obj | None) -> list[Cause]:
    causes = validate_meta(service, old, True, name_is_dns1035_label)
    if old is not None:
        causes += _validate_service_update(service.get("spec") or {}, old.get("spec") or {})
    return causes + _validate_service_spec(service)


# --- ConfigMaps and Secrets -------------------------------------------------------------------------


def _decode(value: str) -> bytes:
    """A base64 `data` value (as it is, when it does not decode: the decoder would have refused it)."""
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        return value.encode()


def _immutable_contents(obj: Obj, old: Obj, contents: dict[str, tuple[Any, Any]]) -> list[Cause]:
    """An immutable ConfigMap or Secret stays immutable and keeps its contents (field -> (new, old))."""
    if not old.get("immutable"):
        return []
    causes = (
        [] if obj.get("immutable") else [forbidden("immutable", "field is immutable when `immutable` is set")]
    )
    return causes + [
        forbidden(key, "field is immutable when `immutable` is set")
        for key, (new, prev) in contents.items()
        if new != prev
    ]


def validate_config_map(config_map: Obj, old: Obj | None) -> list[Cause]:
    causes = validate_meta(config_map, old, True, name_is_dns_subdomain)
    if old is not None:
        causes += _immutable_contents(
            config_map,
            old,
            {key: (config_map.get(key) or {}, old.get(key) or {}) for key in ("data", "binaryData")},
        )
    data, binary = config_map.get("data") or {}, config_map.get("binaryData") or {}
    size = 0
    for key, value in data.items():
        causes += invalid_each(f"data[{key}]", key, is_config_map_key(key))
        if key in binary:
            causes.append(invalid(f"data[{key}]", key, "duplicate of key present in binaryData"))
        size += len(value.encode())
    for key, value in binary.items():
        causes += invalid_each(f"binaryData[{key}]", key, is_config_map_key(key))
        size += len(_decode(value))
    if size > MAX_SECRET_SIZE:
        causes.append(too_long("", MAX_SECRET_SIZE))
    return causes


def _secret_data(secret: Obj) -> dict[str, bytes]:
    """`data` with `stringData` merged in, as the v1 conversion merges them before validation."""
    data = {key: _decode(value) for key, value in (secret.get("data") or {}).items()}
    data.update({key: value.encode() for key, value in (secret.get("stringData") or {}).items()})
    return data


def validate_secret(secret: Obj, old: Obj | None) -> list[Cause]:
    causes = validate_meta(secret, old, True, name_is_dns_subdomain)
    if old is not None:
        causes += immutable("type", secret.get("type", ""), old.get("type", ""))
        causes += _immutable_contents(secret, old, {"data": (_secret_data(secret), _secret_data(old))})
    data = _secret_data(secret)
    for key in data:
        causes += invalid_each(f"data[{key}]", key, is_config_map_key(key))
    if sum(len(value) for value in data.values()) > MAX_SECRET_SIZE:
        causes.append(too_long("data", MAX_SECRET_SIZE))
    secret_type = secret.get("type", "")
    annotations = (secret.get("metadata") or {}).get("annotations") or {}
    if secret_type == "kubernetes.io/service-account-token":
        if not annotations.get("kubernetes.io/service-account.name"):
            causes.append(required("metadata.annotations[kubernetes.io/service-account.name]"))
    elif secret_type in ("kubernetes.io/dockercfg", "kubernetes.io/dockerconfigjson"):
        key = ".dockercfg" if secret_type == "kubernetes.io/dockercfg" else ".dockerconfigjson"
        if key not in data:
            causes.append(required(f"data[{key}]"))
    elif secret_type == "kubernetes.io/basic-auth":
        if "username" not in data and "password" not in data:
            causes += [required("data[username]"), required("data[password]")]
    elif secret_type == "kubernetes.io/ssh-auth":
        if not data.get("ssh-privatekey"):
            causes.append(required("data[ssh-privatekey]"))
    elif secret_type == "kubernetes.io/tls":
        causes += [required(f"data[{key}]") for key in ("tls.crt", "tls.key") if key not in data]
    return causes


# --- cluster objects ----------------------------------------------------------------------------------


def validate_namespace(namespace: Obj, old: Obj | None) -> list[Cause]:
    causes = validate_meta(namespace, old, False, name_is_dns_label)
    if old is not None:
        return causes
    for finalizer in (namespace.get("spec") or {}).get("finalizers") or []:
        causes += invalid_each("spec.finalizers", finalizer, is_qualified_name(finalizer))
        causes += validate_kube_finalizer_name(finalizer, "spec.finalizers")
    return causes


def _validate_taints(taints: list[Obj] | None, path: str) -> list[Cause]:
    causes: list[Cause] = []
    seen: set[tuple[str, str]] = set()
    for i, taint in enumerate(taints or []):
        idx = f"{path}[{i}]"
        key, effect = taint.get("key", ""), taint.get("effect", "")
        causes += validate_label_name(key, f"{idx}.key")
        if errs := is_valid_label_value(taint.get("value", "")):
            causes.append(invalid(f"{idx}.value", taint.get("value", ""), ";".join(errs)))
        effects = ("NoSchedule", "PreferNoSchedule", "NoExecute")
        if not effect:
            causes.append(required(f"{idx}.effect"))
        elif effect not in effects:
            causes.append(not_supported(f"{idx}.effect", effect, effects))
        if (key, effect) in seen:
            causes.append(duplicate(idx, taint, "taints must be unique by key and effect pair"))
        seen.add((key, effect))
    return causes


def validate_node(node: Obj, old: Obj | None) -> list[Cause]:
    spec, old_spec = node.get("spec") or {}, (old or {}).get("spec") or {}
    causes = validate_meta(node, old, False, name_is_dns_subdomain)
    # Upstream reports spec.taints under metadata; so do we.
    causes += _validate_taints(spec.get("taints"), "metadata.taints")
    for key in ("capacity", "allocatable"):
        for name, raw in ((node.get("status") or {}).get(key) or {}).items():
            causes += validate_resource_quantity(name, raw, f"status.{key}.{name}")[1]
    cidrs = spec.get("podCIDRs") or []
    for i, cidr in enumerate(cidrs):
        causes += invalid_each(f"spec.podCIDRs[{i}]", cidr, is_valid_cidr(cidr))
    if len(cidrs) > 1:
        if len(cidrs) > 2 or _is_ipv6(cidrs[0]) == _is_ipv6(cidrs[1]):
            causes.append(
                invalid("spec.podCIDRs", cidrs, "may specify no more than one CIDR for each IP family")
            )
    if old is not None:
        old_cidrs = old_spec.get("podCIDRs") or []
        if old_cidrs and old_cidrs != cidrs:
            causes.append(
                forbidden("spec.podCIDRs", 'node updates may not change podCIDR except from "" to valid')
            )
        if old_spec.get("providerID") and old_spec["providerID"] != spec.get("providerID"):
            causes.append(
                forbidden("spec.providerID", 'node updates may not change providerID except from "" to valid')
            )
    return causes


def validate_endpoints(endpoints: Obj, old: Obj | None) -> list[Cause]:
    causes = validate_meta(endpoints, old, True, name_is_dns_subdomain)
    for i, subset in enumerate(endpoints.get("subsets") or []):
        idx = f"subsets[{i}]"
        if not subset.get("addresses") and not subset.get("notReadyAddresses"):
            causes.append(required(idx, "must specify `addresses` or `notReadyAddresses`"))
        for key in ("addresses", "notReadyAddresses"):
            for j, address in enumerate(subset.get(key) or []):
                addr_path = f"{idx}.{key}[{j}]"
                ip = address.get("ip", "")
                errs = invalid_each(f"{addr_path}.ip", ip, is_valid_ip(ip))
                causes += errs
                if address.get("hostname"):
                    causes += invalid_each(
                        f"{addr_path}.hostname", address["hostname"], is_dns1123_label(address["hostname"])
                    )
                if address.get("nodeName") is not None:
                    causes += invalid_each(
                        f"{addr_path}.nodeName",
                        address["nodeName"],
                        name_is_dns_subdomain(address["nodeName"], False),
                    )
                causes += (
                    [invalid(f"{addr_path}.ip", ip, "must be a valid IP address")]
                    if errs
                    else _non_special_ip(ip, f"{addr_path}.ip")
                )
        ports = subset.get("ports") or []
        names: set[str] = set()
        for j, port in enumerate(ports):
            causes += _validate_endpoint_port(port, len(ports) > 1, names, f"{idx}.ports[{j}]")
    return causes


def _validate_endpoint_port(port: Obj, require_name: bool, names: set[str], path: str) -> list[Cause]:
    causes: list[Cause] = []
    name = port.get("name", "")
    if require_name and not name:
        causes.append(required(f"{path}.name"))
    elif name:
        causes += invalid_each(f"{path}.name", name, is_dns1123_label(name))
    causes += invalid_each(f"{path}.port", port.get("port", 0), is_valid_port_num(port.get("port", 0)))
    protocol = port.get("protocol", "")
    if not protocol:
        causes.append(required(f"{path}.protocol"))
    elif protocol not in PROTOCOLS:
        causes.append(not_supported(f"{path}.protocol", protocol, PROTOCOLS))
    return causes


_ACCESS_MODES = ("ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod")


def _validate_access_modes(modes: list[str], path: str) -> list[Cause]:
    causes = [not_supported(path, mode, _ACCESS_MODES) for mode in modes if mode not in _ACCESS_MODES]
    if "ReadWriteOncePod" in modes and any(m in _ACCESS_MODES and m != "ReadWriteOncePod" for m in modes):
        causes.append(forbidden(path, "may not use ReadWriteOncePod with other access modes"))
    return causes


def validate_persistent_volume(volume: Obj, old: Obj | None) -> list[Cause]:
    spec = volume.get("spec") or {}
    causes = validate_meta(volume, old, False, name_is_dns_subdomain)
    modes = spec.get("accessModes") or []
    if not modes:
        causes.append(required("spec.accessModes"))
    causes += _validate_access_modes(modes, "spec.accessModes")
    capacity = spec.get("capacity") or {}
    if not capacity:
        causes.append(required("spec.capacity"))
    if "storage" not in capacity or len(capacity) > 1:
        causes.append(not_supported("spec.capacity", capacity, ("storage",)))
    for name, raw in capacity.items():
        quantity, errs = validate_resource_quantity(name, raw, f"spec.capacity[{name}]")
        causes += errs
        if quantity is not None and quantity.value <= 0:
            causes.append(invalid(f"spec.capacity[{name}]", str(quantity), "must be greater than zero"))
    policy = spec.get("persistentVolumeReclaimPolicy")
    if policy and policy not in ("Delete", "Recycle", "Retain"):
        causes.append(
            not_supported("spec.persistentVolumeReclaimPolicy", policy, ("Delete", "Recycle", "Retain"))
        )
    sources = [key for key in _PV_SOURCES if spec.get(key) is not None]
    for key in sources[1:]:
        causes.append(forbidden(f"spec.{key}", "may not specify more than 1 volume type"))
    if sources:
        causes += validate_volume_source(sources[0], spec[sources[0]], f"spec.{sources[0]}")
    else:
        causes.append(required("spec", "must specify a volume type"))
    if spec.get("volumeMode") is not None and spec["volumeMode"] not in ("Block", "Filesystem"):
        causes.append(not_supported("spec.volumeMode", spec["volumeMode"], ("Block", "Filesystem")))
    if old is not None:
        causes += immutable("volumeMode", spec.get("volumeMode"), (old.get("spec") or {}).get("volumeMode"))
    return causes


_PV_SOURCES = (
    "hostPath gcePersistentDisk awsElasticBlockStore glusterfs flocker nfs rbd quobyte cephfs iscsi cinder fc "
    "flexVolume azureFile vsphereVolume azureDisk photonPersistentDisk portworxVolume scaleIO local storageos csi"
).split()


def validate_pvc_spec(spec: Obj, path: str) -> list[Cause]:
    causes: list[Cause] = []
    modes = spec.get("accessModes") or []
    if not modes:
        causes.append(required(f"{path}.accessModes", "at least 1 access mode is required"))
    if spec.get("selector") is not None:
        causes += validate_label_selector(spec["selector"], f"{path}.selector")
    causes += _validate_access_modes(modes, f"{path}.accessModes")
    requests = (spec.get("resources") or {}).get("requests") or {}
    storage_path = f"{path}.resources[storage]"
    if "storage" not in requests:
        causes.append(required(storage_path))
    else:
        quantity, errs = validate_resource_quantity("storage", requests["storage"], storage_path)
        if quantity is not None and quantity.value <= 0:
            errs = [invalid(storage_path, str(quantity), "must be greater than zero")]
        causes += errs
    if spec.get("storageClassName"):
        causes += invalid_each(
            f"{path}.storageClassName",
            spec["storageClassName"],
            name_is_dns_subdomain(spec["storageClassName"], False),
        )
    if spec.get("volumeMode") is not None and spec["volumeMode"] not in ("Block", "Filesystem"):
        causes.append(not_supported(f"{path}.volumeMode", spec["volumeMode"], ("Block", "Filesystem")))
    return causes


def validate_persistent_volume_claim(claim: Obj, old: Obj | None) -> list[Cause]:
    causes = validate_meta(claim, old, True, name_is_dns_subdomain)
    spec = claim.get("spec") or {}
    causes += validate_pvc_spec(spec, "spec")
    if old is not None:
        old_spec = old.get("spec") or {}
        munged = dict(spec)
        if not old_spec.get("volumeName"):
            munged.pop("volumeName", None)
            if "volumeName" in old_spec:
                munged["volumeName"] = old_spec["volumeName"]
        if (claim.get("status") or {}).get("phase") == "Bound":
            munged["resources"] = old_spec.get("resources")
            munged.pop("volumeAttributesClassName", None)
            if "volumeAttributesClassName" in old_spec:
                munged["volumeAttributesClassName"] = old_spec["volumeAttributesClassName"]
        if munged != old_spec:
            diff = "\n".join(spec_diff(old_spec, munged, "spec"))
            causes.append(
                forbidden(
                    "spec",
                    f"spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims\n{diff}",
                )
            )
        causes += immutable("volumeMode", spec.get("volumeMode"), old_spec.get("volumeMode"))
    return causes


# --- workloads and templates ------------------------------------------------------------------------


def validate_replication_controller(rc: Obj, old: Obj | None) -> list[Cause]:
    spec = rc.get("spec") or {}
    causes = validate_meta(rc, old, True, name_is_dns_subdomain)
    causes += non_negative("spec.minReadySeconds", spec.get("minReadySeconds", 0))
    selector = spec.get("selector") or {}
    if not selector:
        causes.append(required("spec.selector"))
    causes += non_negative("spec.replicas", spec.get("replicas", 0))
    template = spec.get("template")
    if template is None:
        return causes + [required("spec.template")]
    labels = (template.get("metadata") or {}).get("labels") or {}
    if selector and any(labels.get(k) != v for k, v in selector.items()):
        causes.append(
            invalid("spec.template.metadata.labels", labels, "`selector` does not match template `labels`")
        )
    causes += validate_pod_template_spec(template, "spec.template")
    restart = (template.get("spec") or {}).get("restartPolicy", "")
    if restart != "Always":
        causes.append(not_supported("spec.template.spec.restartPolicy", restart, ("Always",)))
    if (template.get("spec") or {}).get("activeDeadlineSeconds") is not None:
        causes.append(
            forbidden(
                "spec.template.spec.activeDeadlineSeconds",
                "activeDeadlineSeconds in ReplicationController is not Supported",
            )
        )
    return causes


def validate_pod_template(pod_template: Obj, old: Obj | None) -> list[Cause]:
    causes = validate_meta(pod_template, old, True, name_is_dns_subdomain)
    return causes + validate_pod_template_spec(pod_template.get("template"), "template")


def validate_resource_quota(quota: Obj, old: Obj | None) -> list[Cause]:
    causes = validate_meta(quota, old, True, name_is_dns_subdomain)
    for name, raw in ((quota.get("spec") or {}).get("hard") or {}).items():
        causes += invalid_each(f"spec.hard[{name}]", name, is_qualified_name(name))
        causes += validate_resource_quantity(name, raw, f"spec.hard[{name}]")[1]
    if old is not None:
        scopes = set((quota.get("spec") or {}).get("scopes") or [])
        if scopes != set((old.get("spec") or {}).get("scopes") or []):
            causes.append(
                invalid("spec.scopes", (quota.get("spec") or {}).get("scopes"), "field is immutable")
            )
    return causes


def validate_limit_range(limit_range: Obj, old: Obj | None) -> list[Cause]:
    causes = validate_meta(limit_range, old, True, name_is_dns_subdomain)
    types: set[str] = set()
    for i, item in enumerate((limit_range.get("spec") or {}).get("limits") or []):
        kind = item.get("type", "")
        causes += invalid_each(f"spec.limits[{i}].type", kind, is_qualified_name(kind))
        if kind in types:
            causes.append(duplicate(f"spec.limits[{i}].type", kind))
        types.add(kind)
        if kind == "Pod":
            for key in ("default", "defaultRequest"):
                if item.get(key):
                    causes.append(
                        forbidden(f"spec.limits[{i}].{key}", "may not be specified when `type` is 'Pod'")
                    )
    return causes


# --- Events -------------------------------------------------------------------------------------------

# events.k8s.io/v1 field -> core/v1 field, the conversion upstream validates after.
_EVENTS_V1_FIELDS = {
    "regarding": "involvedObject",
    "note": "message",
    "deprecatedSource": "source",
    "deprecatedFirstTimestamp": "firstTimestamp",
    "deprecatedLastTimestamp": "lastTimestamp",
    "deprecatedCount": "count",
}


def _as_core_event(event: Obj, events_api: bool) -> Obj:
    if not events_api:
        return {**event, "reportingController": event.get("reportingComponent", "")}
    return {_EVENTS_V1_FIELDS.get(key, key): value for key, value in event.items()}


def _legacy_event(event: Obj, events_api: bool) -> list[Cause]:
    """legacyValidateEvent: what every Event, old client or new, must satisfy."""
    causes: list[Cause] = []
    namespace = (event.get("metadata") or {}).get("namespace", "")
    involved_namespace = (event.get("involvedObject") or {}).get("namespace", "")
    controller_field = "reportingController" if events_api else "reportingComponent"
    if not event.get("eventTime"):
        if involved_namespace:
            mismatch = namespace != involved_namespace
        else:
            mismatch = namespace not in ("", "default")
        if mismatch:
            causes.append(
                invalid("involvedObject.namespace", involved_namespace, "does not match event.namespace")
            )
    else:
        if not involved_namespace and namespace not in ("default", "kube-system"):
            causes.append(
                invalid("involvedObject.namespace", involved_namespace, "does not match event.namespace")
            )
        controller = event.get("reportingController", "")
        if not controller:
            causes.append(required(controller_field))
        causes += invalid_each(controller_field, controller, is_qualified_name(controller))
        for key, limit in (("reportingInstance", 128), ("action", 128), ("reason", 128)):
            if not event.get(key):
                causes.append(required(key))
            if len(event.get(key, "")) > limit:
                causes.append(invalid(key, "", f"can have at most {limit} characters"))
        if len(event.get("message", "")) > 1024:
            causes.append(invalid("message", "", "can have at most 1024 characters"))
    causes += invalid_each("namespace", namespace, is_dns1123_subdomain(namespace))
    return causes


def _event_series(event: Obj) -> list[Cause]:
    series = event.get("series")
    if series is None:
        return []
    causes = []
    if series.get("count", 0) < 2:
        causes.append(invalid("series.count", "", "should be at least 2"))
    if not series.get("lastObservedTime"):
        causes.append(required("series.lastObservedTime"))
    return causes


_IMMUTABLE_EVENT_FIELDS = (
    "involvedObject reason message source firstTimestamp lastTimestamp count type eventTime action related "
    "reportingController reportingInstance"
).split()


def _validate_event(event: Obj, old: Obj | None, *, events_api: bool) -> list[Cause]:
    core_event = _as_core_event(event, events_api)
    causes = _legacy_event(core_event, events_api)
    if not events_api:
        return causes
    if old is not None:
        old_event = _as_core_event(old, events_api)
        causes += validate_object_meta_update(event.get("metadata"), old.get("metadata"))
        if core_event.get("series") != old_event.get("series"):
            causes += _event_series(core_event)
        for key in _IMMUTABLE_EVENT_FIELDS:
            causes += immutable(key, core_event.get(key), old_event.get(key))
        return causes
    causes += validate_object_meta(event.get("metadata"), True, name_is_dns_subdomain)
    causes += _event_series(core_event)
    if not core_event.get("eventTime"):
        causes.append(required("eventTime"))
    if core_event.get("type") not in ("Normal", "Warning"):
        causes.append(invalid("type", "", f"has invalid value: {core_event.get('type', '')}"))
    for key in ("firstTimestamp", "lastTimestamp", "count", "source"):
        if core_event.get(key):
            causes.append(invalid(key, "", "needs to be unset"))
    return causes


def validate_core_event(event: Obj, old: Obj | None) -> list[Cause]:
    return _validate_event(event, old, events_api=False)


def validate_events_event(event: Obj, old: Obj | None) -> list[Cause]:
    return _validate_event(event, old, events_api=True)


VALIDATORS = {
    "Pod": validate_pod,
    "Service": validate_service,
    "ConfigMap": validate_config_map,
    "Secret": validate_secret,
    "Namespace": validate_namespace,
    "Node": validate_node,
    "Endpoints": validate_endpoints,
    "PersistentVolume": validate_persistent_volume,
    "PersistentVolumeClaim": validate_persistent_volume_claim,
    "ReplicationController": validate_replication_controller,
    "PodTemplate": validate_pod_template,
    "ResourceQuota": validate_resource_quota,
    "LimitRange": validate_limit_range,
    "Event": validate_core_event,
}
