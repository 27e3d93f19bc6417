"""Defaulting of core/v1 kinds: pkg/apis/core/v1/defaults.go and its generated walk.

kube-apiserver defaults every object it decodes (request bodies and storage
alike), so every function here only fills in what is missing and is safe to
run again. The pod template defaulter (`default_pod_spec`) is the one shared by
every workload kind; `default_pod` adds what kube defaults on Pods alone
(SetDefaults_Pod), which is why `enableServiceLinks` shows on Pods and not in
Deployment templates.

Two things look like defaults but are not, and live elsewhere: the namespace
`kubernetes` finalizer (`prepare_namespace`, the namespace strategy's
PrepareForCreate: defaulting would re-add it after the namespace controller
removed it) and cluster IP allocation (the API server's service allocator).
"""

from __future__ import annotations

import re
from typing import Any

Obj = dict[str, Any]

SECRET_DEFAULT_MODE = 0o644
TERMINATION_GRACE_PERIOD_SECONDS = 30

# docker/distribution's reference grammar, enough to tell a tag from a registry port.
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REFERENCE = re.compile(
    r"^(?:(?P<domain>(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
    r"(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*(?::[0-9]+)?)/)?"
    rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?"
    r"(?:@(?P<digest>[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9A-Fa-f]{32,}))?$"
)


def image_tag(image: str) -> str:
    """The tag kube's parsers.ParseImageName finds: "latest" when neither tag nor digest, "" when unparsable."""
    first, _, rest = image.partition("/")
    if rest and not ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        image = f"docker.io/{image}"  # a first component that is not a host is a path component
    m = _REFERENCE.match(image)
    if m is None:
        return ""
    if m["tag"]:
        return m["tag"]
    return "" if m["digest"] else "latest"


def set_if_unset(obj: Obj, key: str, value: Any) -> None:
    """Default a pointer field: one that is absent or null."""
    if obj.get(key) is None:
        obj[key] = value


def set_if_zero(obj: Obj, key: str, value: Any) -> None:
    """Default a value field: one that is absent, null or Go's zero value ("" or 0)."""
    current = obj.get(key)
    if current is None or (not isinstance(current, bool) and current in ("", 0)):
        obj[key] = value


def _default_object_field_selector(selector: Obj | None) -> None:
    if selector is not None:
        selector.setdefault("apiVersion", "v1")


def _default_http_get(action: Obj | None) -> None:
    if action is not None:
        set_if_zero(action, "path", "/")
        set_if_zero(action, "scheme", "HTTP")


def _default_probe(probe: Obj | None) -> None:
    if probe is None:
        return
    for key, value in (
        ("timeoutSeconds", 1),
        ("periodSeconds", 10),
        ("successThreshold", 1),
        ("failureThreshold", 3),
    ):
        set_if_zero(probe, key, value)
    _default_http_get(probe.get("httpGet"))
    if probe.get("grpc") is not None:
        probe["grpc"].setdefault("service", "")


def default_container(container: Obj) -> None:
    """SetDefaults_Container and the generated walk over its ports, env, probes and lifecycle."""
    if not container.get("imagePullPolicy"):
        tag = image_tag(container.get("image") or "")
        container["imagePullPolicy"] = "Always" if tag == "latest" else "IfNotPresent"
    set_if_zero(container, "terminationMessagePath", "/dev/termination-log")
    set_if_zero(container, "terminationMessagePolicy", "File")
    # ResourceRequirements is a struct, not a pointer: Go always serializes it.
    container.setdefault("resources", {})
    for port in container.get("ports") or []:
        set_if_zero(port, "protocol", "TCP")
    for env in container.get("env") or []:
        _default_object_field_selector((env.get("valueFrom") or {}).get("fieldRef"))
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        _default_probe(container.get(probe))
    lifecycle = container.get("lifecycle") or {}
    for hook in ("postStart", "preStop"):
        _default_http_get((lifecycle.get(hook) or {}).get("httpGet"))


def _default_downward_api_items(items: list[Obj] | None) -> None:
    for item in items or []:
        _default_object_field_selector(item.get("fieldRef"))


def default_volume_source(source: Obj) -> None:
    """Defaults of the volume sources a Pod volume and a PersistentVolume share."""
    if (host_path := source.get("hostPath")) is not None:
        host_path.setdefault("type", "")
    if (iscsi := source.get("iscsi")) is not None:
        set_if_zero(iscsi, "iscsiInterface", "default")
    if (rbd := source.get("rbd")) is not None:
        set_if_zero(rbd, "pool", "rbd")
        set_if_zero(rbd, "user", "admin")
        set_if_zero(rbd, "keyring", "/etc/ceph/keyring")
    if (azure := source.get("azureDisk")) is not None:
        azure.setdefault("cachingMode", "ReadWrite")
        azure.setdefault("fsType", "ext4")
        azure.setdefault("readOnly", False)
        azure.setdefault("kind", "Shared")
    if (scale_io := source.get("scaleIO")) is not None:
        set_if_zero(scale_io, "storageMode", "ThinProvisioned")
        set_if_zero(scale_io, "fsType", "xfs")


_VOLUME_SOURCES = frozenset(
    (
        "hostPath emptyDir gcePersistentDisk awsElasticBlockStore gitRepo secret nfs iscsi glusterfs "
        "persistentVolumeClaim rbd flexVolume cinder cephfs flocker downwardAPI fc azureFile configMap "
        "vsphereVolume quobyte azureDisk photonPersistentDisk projected portworxVolume scaleIO storageos "
        "csi ephemeral image"
    ).split()
)


def default_volume(volume: Obj) -> None:
    """SetDefaults_Volume (a volume with no source is an emptyDir) and the per-source defaults."""
    if not any(volume.get(key) is not None for key in _VOLUME_SOURCES):
        volume["emptyDir"] = {}
    default_volume_source(volume)
    for key in ("secret", "configMap", "downwardAPI", "projected"):
        if (source := volume.get(key)) is not None:
            source.setdefault("defaultMode", SECRET_DEFAULT_MODE)
    _default_downward_api_items((volume.get("downwardAPI") or {}).get("items"))
    for projection in (volume.get("projected") or {}).get("sources") or []:
        _default_downward_api_items((projection.get("downwardAPI") or {}).get("items"))
        if (token := projection.get("serviceAccountToken")) is not None:
            token.setdefault("expirationSeconds", 3600)
    claim = ((volume.get("ephemeral") or {}).get("volumeClaimTemplate") or {}).get("spec")
    if claim is not None:
        default_pvc_spec(claim)


def default_pod_spec(spec: Obj) -> None:
    """SetDefaults_PodSpec plus its nested defaults: what every pod template gets."""
    set_if_zero(spec, "dnsPolicy", "ClusterFirst")
    set_if_zero(spec, "restartPolicy", "Always")
    set_if_unset(spec, "securityContext", {})
    set_if_unset(spec, "terminationGracePeriodSeconds", TERMINATION_GRACE_PERIOD_SECONDS)
    set_if_zero(spec, "schedulerName", "default-scheduler")
    for volume in spec.get("volumes") or []:
        default_volume(volume)
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for container in spec.get(key) or []:
            default_container(container)


def default_pod_template(template: Obj | None) -> None:
    """A PodTemplateSpec inside a workload: only the pod spec is defaulted."""
    if template is not None:
        default_pod_spec(template.setdefault("spec", {}))


def _requests_from_limits(container: Obj) -> None:
    resources = container.get("resources") or {}
    limits = resources.get("limits")
    if limits:
        requests = resources.setdefault("requests", {})
        for name, value in limits.items():
            requests.setdefault(name, value)


def default_pod(pod: Obj) -> None:
    spec = pod.setdefault("spec", {})
    default_pod_spec(spec)
    # SetDefaults_Pod: only Pods, never templates, get these.
    for key in ("containers", "initContainers"):
        for container in spec.get(key) or []:
            _requests_from_limits(container)
    set_if_unset(spec, "enableServiceLinks", True)
    if spec.get("hostNetwork"):
        for key in ("containers", "initContainers"):
            for container in spec.get(key) or []:
                for port in container.get("ports") or []:
                    if not port.get("hostPort"):
                        port["hostPort"] = port.get("containerPort", 0)


def _externally_accessible(spec: Obj) -> bool:
    svc_type = spec.get("type")
    return svc_type in ("LoadBalancer", "NodePort") or (
        svc_type == "ClusterIP" and bool(spec.get("externalIPs"))
    )


def default_service_ip_families(service: Obj, *, family: str = "IPv4") -> None:
    """The allocator's initIPFamilyFields for a single-stack cluster of `family`.

    kube-apiserver does this while allocating cluster IPs, not in SetDefaults_Service;
    headless selectorless Services ask for RequireDualStack and get both families listed.
    """
    spec = service.setdefault("spec", {})
    if spec.get("type") == "ExternalName":
        return
    headless_selectorless = spec.get("clusterIP") == "None" and not spec.get("selector")
    if not spec.get("ipFamilyPolicy"):
        spec["ipFamilyPolicy"] = "RequireDualStack" if headless_selectorless else "SingleStack"
    families = spec.get("ipFamilies") or []
    if not families:
        families = [family]
    if headless_selectorless and len(families) < 2 and spec["ipFamilyPolicy"] != "SingleStack":
        families = [*families, "IPv6" if families[0] == "IPv4" else "IPv4"]
    spec["ipFamilies"] = families


def default_service(service: Obj) -> None:
    spec = service.setdefault("spec", {})
    set_if_zero(spec, "sessionAffinity", "None")
    if spec["sessionAffinity"] == "None":
        spec.pop("sessionAffinityConfig", None)
    elif spec["sessionAffinity"] == "ClientIP":
        client_ip = (spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}
        if client_ip.get("timeoutSeconds") is None:
            spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": 10800}}
    set_if_zero(spec, "type", "ClusterIP")
    for port in spec.get("ports") or []:
        set_if_zero(port, "protocol", "TCP")
        if port.get("targetPort") in (None, 0, ""):
            port["targetPort"] = port.get("port", 0)
    if _externally_accessible(spec):
        set_if_zero(spec, "externalTrafficPolicy", "Cluster")
    if spec.get("internalTrafficPolicy") is None and spec["type"] in (
        "NodePort",
        "LoadBalancer",
        "ClusterIP",
    ):
        spec["internalTrafficPolicy"] = "Cluster"
    status = service.setdefault("status", {})
    load_balancer = status.setdefault("loadBalancer", {})  # a struct: Go always serializes it
    if spec["type"] == "LoadBalancer":
        spec.setdefault("allocateLoadBalancerNodePorts", True)
        for ingress in load_balancer.get("ingress") or []:
            if ingress.get("ip") and ingress.get("ipMode") is None:
                ingress["ipMode"] = "VIP"
    default_service_ip_families(service)


def default_namespace(namespace: Obj) -> None:
    meta = namespace.setdefault("metadata", {})
    if meta.get("name"):
        labels = meta.get("labels") or {}
        labels["kubernetes.io/metadata.name"] = meta["name"]
        meta["labels"] = labels
    set_if_zero(namespace.setdefault("status", {}), "phase", "Active")


def prepare_namespace(namespace: Obj) -> None:
    """The namespace strategy's PrepareForCreate: status Active and the `kubernetes` finalizer."""
    namespace["status"] = {"phase": "Active"}
    spec = namespace.setdefault("spec", {})
    finalizers = spec.get("finalizers") or []
    if "kubernetes" not in finalizers:
        spec["finalizers"] = [*finalizers, "kubernetes"]


def default_secret(secret: Obj) -> None:
    set_if_zero(secret, "type", "Opaque")


def default_pvc_spec(spec: Obj) -> None:
    set_if_zero(spec, "volumeMode", "Filesystem")


def default_pvc(claim: Obj) -> None:
    set_if_zero(claim.setdefault("status", {}), "phase", "Pending")
    default_pvc_spec(claim.setdefault("spec", {}))


def default_pv(volume: Obj) -> None:
    set_if_zero(volume.setdefault("status", {}), "phase", "Pending")
    spec = volume.setdefault("spec", {})
    set_if_zero(spec, "persistentVolumeReclaimPolicy", "Retain")
    set_if_zero(spec, "volumeMode", "Filesystem")
    default_volume_source(spec)


def default_endpoints(endpoints: Obj) -> None:
    for subset in endpoints.get("subsets") or []:
        for port in subset.get("ports") or []:
            set_if_zero(port, "protocol", "TCP")


def default_node(node: Obj) -> None:
    status = node.get("status") or {}
    if status.get("allocatable") is None and status.get("capacity") is not None:
        status["allocatable"] = dict(status["capacity"])


def default_limit_range(limit_range: Obj) -> None:
    for item in (limit_range.get("spec") or {}).get("limits") or []:
        if item.get("type") != "Container":
            continue
        default = item.setdefault("default", {})
        default_request = item.setdefault("defaultRequest", {})
        for name, value in (item.get("max") or {}).items():
            default.setdefault(name, value)
        for name, value in default.items():
            default_request.setdefault(name, value)
        for name, value in (item.get("min") or {}).items():
            default_request.setdefault(name, value)


def default_replication_controller(rc: Obj) -> None:
    spec = rc.setdefault("spec", {})
    template = spec.get("template")
    labels = (template or {}).get("metadata", {}).get("labels")
    if labels is not None:
        if not spec.get("selector"):
            spec["selector"] = dict(labels)
        meta = rc.setdefault("metadata", {})
        if not meta.get("labels"):
            meta["labels"] = dict(labels)
    set_if_unset(spec, "replicas", 1)
    default_pod_template(template)


def default_pod_template_object(pod_template: Obj) -> None:
    default_pod_template(pod_template.get("template"))


DEFAULTERS = {
    ("v1", "Pod"): default_pod,
    ("v1", "PodTemplate"): default_pod_template_object,
    ("v1", "ReplicationController"): default_replication_controller,
    ("v1", "Service"): default_service,
    ("v1", "Namespace"): default_namespace,
    ("v1", "Secret"): default_secret,
    ("v1", "PersistentVolume"): default_pv,
    ("v1", "PersistentVolumeClaim"): default_pvc,
    ("v1", "Endpoints"): default_endpoints,
    ("v1", "Node"): default_node,
    ("v1", "LimitRange"): default_limit_range,
}
