"""Printers of the core group (and events.k8s.io, whose events share core's storage)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from k8py.api.printers._common import (
    AGE,
    CONTAINERS,
    IMAGES,
    NAME,
    NONE,
    UNKNOWN,
    UNSET,
    Column,
    Obj,
    Printer,
    Printers,
    age,
    condition_true,
    container_cells,
    format_labels,
    get,
    items,
    join_or_none,
    list_with_more,
    load_balancer_ingress,
    mapping,
    name,
    or_none,
    parse_time,
    quantity,
    since,
    spec_replicas,
)
from k8py.netutil import join_host_port

# --- Pod ---------------------------------------------------------------------------------------------

_NODE_LOST = "NodeLost"  # NodeUnreachablePodReason
_TERMINAL = ("Failed", "Succeeded")


def _later(current: datetime | None, candidate: str | None) -> datetime | None:
    """The later of a restart time and a container's last termination (Go's `Before` on zero times)."""
    when = parse_time(candidate)
    if when is not None and (current is None or current < when):
        return when
    return current


def _last_finished(status: Obj) -> str | None:
    terminated = get(status, "lastState", "terminated")
    return None if terminated is None else terminated.get("finishedAt")


def _terminated_reason(terminated: Obj, prefix: str) -> str:
    if terminated.get("reason"):
        return prefix + terminated["reason"]
    if terminated.get("signal"):
        return f"{prefix}Signal:{terminated['signal']}"
    return f"{prefix}ExitCode:{terminated.get('exitCode', 0)}"


def _pod_cells(obj: Obj, now: datetime) -> list[Any]:
    spec, status = mapping(obj, "spec"), mapping(obj, "status")
    init_specs = items(spec, "initContainers")
    restartable = {c.get("name") for c in init_specs if c.get("restartPolicy") == "Always"}
    total = len(items(spec, "containers")) + len(restartable)
    ready = 0
    phase = status.get("phase", "")
    reason = status.get("reason") or phase
    conditions = items(status, "conditions")
    if any(c.get("type") == "PodScheduled" and c.get("reason") == "SchedulingGated" for c in conditions):
        reason = "SchedulingGated"

    restarts = sidecar_restarts = 0
    last_restart: datetime | None = None
    last_sidecar_restart: datetime | None = None
    initializing = False
    for i, cs in enumerate(items(status, "initContainerStatuses")):
        restarts += cs.get("restartCount", 0)
        last_restart = _later(last_restart, _last_finished(cs))
        is_sidecar = cs.get("name") in restartable
        if is_sidecar:
            sidecar_restarts += cs.get("restartCount", 0)
            last_sidecar_restart = _later(last_sidecar_restart, _last_finished(cs))
        terminated, waiting = get(cs, "state", "terminated"), get(cs, "state", "waiting")
        if terminated is not None and terminated.get("exitCode", 0) == 0:
            continue
        if is_sidecar and cs.get("started"):
            ready += bool(cs.get("ready"))
            continue
        if terminated is not None:
            reason = _terminated_reason(terminated, "Init:")
        elif waiting is not None and waiting.get("reason") and waiting["reason"] != "PodInitializing":
            reason = "Init:" + waiting["reason"]
        else:
            reason = f"Init:{i}/{len(init_specs)}"
        initializing = True
        break

    if not initializing or condition_true(conditions, "Initialized"):
        restarts, last_restart = sidecar_restarts, last_sidecar_restart
        has_running = False
        for cs in reversed(items(status, "containerStatuses")):
            restarts += cs.get("restartCount", 0)
            last_restart = _later(last_restart, _last_finished(cs))
            state = mapping(cs, "state")
            waiting, terminated = state.get("waiting"), state.get("terminated")
            if waiting is not None and waiting.get("reason"):
                reason = waiting["reason"]
            elif terminated is not None:
                reason = _terminated_reason(terminated, "")
            elif cs.get("ready") and state.get("running") is not None:
                has_running = True
                ready += 1
        # a pod with a container still running is not "Completed"
        if reason == "Completed" and has_running:
            reason = "Running" if condition_true(conditions, "Ready") else "NotReady"

    if get(obj, "metadata", "deletionTimestamp"):
        if status.get("reason") == _NODE_LOST:
            reason = "Unknown"
        elif phase not in _TERMINAL:
            reason = "Terminating"

    restarts_cell = str(restarts)
    if restarts and last_restart is not None:
        restarts_cell = f"{restarts} ({since(last_restart, now)} ago)"

    gates = items(spec, "readinessGates")
    readiness = NONE
    if gates:
        readiness = (
            f"{sum(condition_true(conditions, g.get('conditionType', '')) for g in gates)}/{len(gates)}"
        )
    return [
        name(obj),
        f"{ready}/{total}",
        reason,
        restarts_cell,
        age(obj, now),
        or_none(_pod_ip(status)),
        or_none(spec.get("nodeName")),
        or_none(status.get("nominatedNodeName")),
        readiness,
    ]


def _pod_ip(status: Obj) -> str | None:
    """status.podIP wins over podIPs[0], as the v1 -> internal conversion decides."""
    return status.get("podIP") or next((ip.get("ip") for ip in items(status, "podIPs")), None)


def _pod_conditions(obj: Obj) -> list[dict[str, str]]:
    phase = get(obj, "status", "phase")
    if phase == "Succeeded":
        return [_completed("Succeeded", "The pod has completed successfully.")]
    if phase == "Failed":
        return [_completed("Failed", "The pod failed.")]
    return []


def _completed(reason: str, message: str) -> dict[str, str]:
    return {"type": "Completed", "status": "True", "reason": reason, "message": message}


POD = Printer(
    (
        NAME,
        Column("Ready", text="The aggregate readiness state of this pod for accepting traffic."),
        Column("Status", text="The aggregate status of the containers in this pod."),
        Column(
            "Restarts",
            text="The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
        ),
        AGE,
        Column("IP", doc=("core.v1.PodStatus", "podIP"), priority=1),
        Column("Node", doc=("core.v1.PodSpec", "nodeName"), priority=1),
        Column("Nominated Node", doc=("core.v1.PodStatus", "nominatedNodeName"), priority=1),
        Column("Readiness Gates", doc=("core.v1.PodSpec", "readinessGates"), priority=1),
    ),
    _pod_cells,
    _pod_conditions,
)

# --- Workloads of the core group ---------------------------------------------------------------------

POD_TEMPLATE = Printer(
    (
        NAME,
        replace(CONTAINERS, priority=0),
        replace(IMAGES, priority=0),
        Column("Pod Labels", text="The labels for the pod template."),
    ),
    lambda o, now: [
        name(o),
        *container_cells(get(o, "template", "spec")),
        format_labels(get(o, "template", "metadata", "labels")),
    ],
)

REPLICATION_CONTROLLER = Printer(
    (
        NAME,
        Column("Desired", "integer", ("core.v1.ReplicationControllerSpec", "replicas")),
        Column("Current", "integer", ("core.v1.ReplicationControllerStatus", "replicas")),
        Column("Ready", "integer", ("core.v1.ReplicationControllerStatus", "readyReplicas")),
        AGE,
        CONTAINERS,
        IMAGES,
        Column("Selector", doc=("core.v1.ReplicationControllerSpec", "selector"), priority=1),
    ),
    lambda o, now: [
        name(o),
        spec_replicas(o),
        get(o, "status", "replicas") or 0,
        get(o, "status", "readyReplicas") or 0,
        age(o, now),
        *container_cells(get(o, "spec", "template", "spec")),
        format_labels(get(o, "spec", "selector")),
    ],
)

# --- Service and Endpoints ---------------------------------------------------------------------------


def _external_ip(spec: Obj, status: Obj) -> str:
    external = items(spec, "externalIPs")
    kind = spec.get("type", "ClusterIP")
    if kind in ("ClusterIP", "NodePort"):
        return join_or_none(external)
    if kind == "LoadBalancer":
        balancer = load_balancer_ingress(status.get("loadBalancer"))
        return ",".join([*filter(None, [balancer]), *external]) or "<pending>"
    if kind == "ExternalName":
        return spec.get("externalName", "")
    return UNKNOWN


def _service_ports(spec: Obj) -> str:
    ports = []
    for p in items(spec, "ports"):
        node_port = f":{p['nodePort']}" if p.get("nodePort") else ""
        ports.append(f"{p.get('port', 0)}{node_port}/{p.get('protocol', 'TCP')}")
    return join_or_none(ports)


def _service_cells(obj: Obj, now: datetime) -> list[Any]:
    spec, status = mapping(obj, "spec"), mapping(obj, "status")
    # spec.clusterIP wins over clusterIPs[0], as the v1 -> internal conversion decides
    cluster_ip = spec.get("clusterIP") or next(iter(items(spec, "clusterIPs")), None)
    return [
        name(obj),
        spec.get("type", "ClusterIP"),
        or_none(cluster_ip),
        _external_ip(spec, status),
        _service_ports(spec),
        age(obj, now),
        format_labels(spec.get("selector")),
    ]


SERVICE = Printer(
    (
        NAME,
        Column("Type", doc=("core.v1.ServiceSpec", "type")),
        Column("Cluster-IP", doc=("core.v1.ServiceSpec", "clusterIP")),
        Column("External-IP", doc=("core.v1.ServiceSpec", "externalIPs")),
        Column("Port(s)", doc=("core.v1.ServiceSpec", "ports")),
        AGE,
        Column("Selector", doc=("core.v1.ServiceSpec", "selector"), priority=1),
    ),
    _service_cells,
)


def _endpoints(obj: Obj) -> str:
    subsets = items(obj, "subsets")
    if not subsets:
        return NONE
    shown: list[str] = []
    for subset in subsets:
        addresses = [a.get("ip", "") for a in items(subset, "addresses")]
        ports = items(subset, "ports")
        if not ports:  # headless services may have no ports
            shown += addresses
        for port in ports:
            shown += [join_host_port(ip, port.get("port", 0)) for ip in addresses]
    return list_with_more(shown, 3, empty="")


ENDPOINTS = Printer(
    (NAME, Column("Endpoints", doc=("core.v1.Endpoints", "subsets")), AGE),
    lambda o, now: [name(o), _endpoints(o), age(o, now)],
)

# --- Node --------------------------------------------------------------------------------------------

_ROLE_PREFIX = "node-role.kubernetes.io/"
_ROLE_LABEL = "kubernetes.io/role"


def _node_roles(labels: dict[str, str]) -> str:
    roles = set()
    for key, value in labels.items():
        if key.startswith(_ROLE_PREFIX) and key != _ROLE_PREFIX:
            roles.add(key[len(_ROLE_PREFIX) :])
        elif key == _ROLE_LABEL and value:
            roles.add(value)
    return join_or_none(sorted(roles))


def _node_address(status: Obj, kind: str) -> str:
    return next((a.get("address", "") for a in items(status, "addresses") if a.get("type") == kind), NONE)


def _node_cells(obj: Obj, now: datetime) -> list[Any]:
    status, info = mapping(obj, "status"), mapping(obj, "status", "nodeInfo")
    conditions = {c.get("type"): c.get("status") for c in items(status, "conditions")}
    states = []
    if "Ready" in conditions:
        states.append("Ready" if conditions["Ready"] == "True" else "NotReady")
    else:
        states.append("Unknown")
    if get(obj, "spec", "unschedulable"):
        states.append("SchedulingDisabled")
    return [
        name(obj),
        ",".join(states),
        _node_roles(mapping(obj, "metadata", "labels")),
        age(obj, now),
        info.get("kubeletVersion", ""),
        _node_address(status, "InternalIP"),
        _node_address(status, "ExternalIP"),
        info.get("osImage") or UNKNOWN,
        info.get("kernelVersion") or UNKNOWN,
        info.get("containerRuntimeVersion") or UNKNOWN,
    ]


def _system_info(prop: str, text: str, priority: int = 1) -> Column:
    return Column(text, doc=("core.v1.NodeSystemInfo", prop), priority=priority)


NODE = Printer(
    (
        NAME,
        Column("Status", text="The status of the node"),
        Column("Roles", text="The roles of the node"),
        AGE,
        _system_info("kubeletVersion", "Version", priority=0),
        Column("Internal-IP", doc=("core.v1.NodeStatus", "addresses"), priority=1),
        Column("External-IP", doc=("core.v1.NodeStatus", "addresses"), priority=1),
        _system_info("osImage", "OS-Image"),
        _system_info("kernelVersion", "Kernel-Version"),
        _system_info("containerRuntimeVersion", "Container-Runtime"),
    ),
    _node_cells,
)

# --- Event -------------------------------------------------------------------------------------------

# events.k8s.io/v1 field -> core/v1 field (the conversion both go through upstream)
_EVENTS_V1_FIELDS = {
    "regarding": "involvedObject",
    "note": "message",
    "deprecatedSource": "source",
    "deprecatedFirstTimestamp": "firstTimestamp",
    "deprecatedLastTimestamp": "lastTimestamp",
    "deprecatedCount": "count",
    "reportingController": "reportingComponent",
}


def _as_core_event(obj: Obj) -> Obj:
    if obj.get("apiVersion") != "events.k8s.io/v1":
        return obj
    return {_EVENTS_V1_FIELDS.get(k, k): v for k, v in obj.items()}


def _event_cells(obj: Obj, now: datetime) -> list[Any]:
    event = _as_core_event(obj)
    first = since(event.get("firstTimestamp") or event.get("eventTime"), now)
    last = since(event["lastTimestamp"], now) if event.get("lastTimestamp") else first
    count = event.get("count") or 1  # singleton events have no count in the new API
    series = event.get("series")
    if series is not None:
        last, count = since(series.get("lastObservedTime"), now), series.get("count", 0)
    involved = mapping(event, "involvedObject")
    target = involved.get("kind", "").lower()
    if involved.get("name"):
        target = f"{target}/{involved['name']}"
    component = get(event, "source", "component") or event.get("reportingComponent", "")
    instance = get(event, "source", "host") or event.get("reportingInstance", "")
    return [
        last,
        event.get("type", ""),
        event.get("reason", ""),
        target,
        involved.get("fieldPath", ""),
        f"{component}, {instance}" if instance else component,
        event.get("message", "").strip(),
        first,
        count,
        name(event),
    ]


EVENT = Printer(
    (
        Column("Last Seen", doc=("core.v1.Event", "lastTimestamp")),
        Column("Type", doc=("core.v1.Event", "type")),
        Column("Reason", doc=("core.v1.Event", "reason")),
        Column("Object", doc=("core.v1.Event", "involvedObject")),
        Column("Subobject", doc=("core.v1.ObjectReference", "fieldPath"), priority=1),
        Column("Source", doc=("core.v1.Event", "source"), priority=1),
        Column("Message", doc=("core.v1.Event", "message")),
        Column("First Seen", doc=("core.v1.Event", "firstTimestamp"), priority=1),
        Column("Count", doc=("core.v1.Event", "count"), priority=1),
        Column("Name", doc=NAME.doc, priority=1, format="name"),
    ),
    _event_cells,
)

# --- Configuration and accounts ----------------------------------------------------------------------

NAMESPACE = Printer(
    (NAME, Column("Status", text="The status of the namespace"), AGE),
    lambda o, now: [name(o), get(o, "status", "phase") or "", age(o, now)],
)

SECRET = Printer(
    (
        NAME,
        Column("Type", doc=("core.v1.Secret", "type")),
        Column("Data", doc=("core.v1.Secret", "data")),
        AGE,
    ),
    lambda o, now: [name(o), o.get("type", ""), len(mapping(o, "data")), age(o, now)],
)

CONFIG_MAP = Printer(
    (NAME, Column("Data", doc=("core.v1.ConfigMap", "data")), AGE),
    lambda o, now: [name(o), len(mapping(o, "data")) + len(mapping(o, "binaryData")), age(o, now)],
)

SERVICE_ACCOUNT = Printer(
    (NAME, Column("Secrets", doc=("core.v1.ServiceAccount", "secrets")), AGE),
    lambda o, now: [name(o), len(items(o, "secrets")), age(o, now)],
)


def _resource_quota_cells(obj: Obj, now: datetime) -> list[Any]:
    hard, used = mapping(obj, "status", "hard"), mapping(obj, "status", "used")
    requests, limits = [], []
    for resource in sorted(hard):
        column = limits if resource.startswith("limits.") else requests
        column.append(f"{resource}: {quantity(used.get(resource))}/{quantity(hard[resource])}")
    return [name(obj), ", ".join(requests), ", ".join(limits), age(obj, now)]


RESOURCE_QUOTA = Printer(
    (
        NAME,
        Column(
            "Request", text="Request represents a minimum amount of cpu/memory that a container may consume."
        ),
        Column(
            "Limit",
            text="Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.",
        ),
        AGE,
    ),
    _resource_quota_cells,
)

# --- Persistent volumes ------------------------------------------------------------------------------

_STORAGE_CLASS_ANNOTATION = "volume.beta.kubernetes.io/storage-class"
_ACCESS_MODES = (
    ("ReadWriteOnce", "RWO"),
    ("ReadOnlyMany", "ROX"),
    ("ReadWriteMany", "RWX"),
    ("ReadWriteOncePod", "RWOP"),
)


def _access_modes(modes: list[str]) -> str:
    """GetAccessModesAsString: always in the order RWO,ROX,RWX,RWOP."""
    return ",".join(short for mode, short in _ACCESS_MODES if mode in modes)


def _storage_class(obj: Obj) -> str:
    """The beta annotation wins over spec.storageClassName."""
    annotations = mapping(obj, "metadata", "annotations")
    if _STORAGE_CLASS_ANNOTATION in annotations:
        return annotations[_STORAGE_CLASS_ANNOTATION]
    return get(obj, "spec", "storageClassName") or ""


def _volume_phase(obj: Obj) -> str:
    return "Terminating" if get(obj, "metadata", "deletionTimestamp") else get(obj, "status", "phase") or ""


def _pv_cells(obj: Obj, now: datetime) -> list[Any]:
    spec = mapping(obj, "spec")
    claim = spec.get("claimRef")
    return [
        name(obj),
        quantity(get(spec, "capacity", "storage")),
        _access_modes(items(spec, "accessModes")),
        spec.get("persistentVolumeReclaimPolicy", ""),
        _volume_phase(obj),
        "" if claim is None else f"{claim.get('namespace', '')}/{claim.get('name', '')}",
        _storage_class(obj),
        spec.get("volumeAttributesClassName") or UNSET,
        get(obj, "status", "reason") or "",
        age(obj, now),
        spec.get("volumeMode") or UNSET,
    ]


PERSISTENT_VOLUME = Printer(
    (
        NAME,
        Column("Capacity", doc=("core.v1.PersistentVolumeSpec", "capacity")),
        Column("Access Modes", doc=("core.v1.PersistentVolumeSpec", "accessModes")),
        Column("Reclaim Policy", doc=("core.v1.PersistentVolumeSpec", "persistentVolumeReclaimPolicy")),
        Column("Status", doc=("core.v1.PersistentVolumeStatus", "phase")),
        Column("Claim", doc=("core.v1.PersistentVolumeSpec", "claimRef")),
        Column("StorageClass", text="StorageClass of the pv"),
        Column("VolumeAttributesClass", text="VolumeAttributesClass of the pv"),
        Column("Reason", doc=("core.v1.PersistentVolumeStatus", "reason")),
        AGE,
        Column("VolumeMode", doc=("core.v1.PersistentVolumeSpec", "volumeMode"), priority=1),
    ),
    _pv_cells,
)


def _pvc_cells(obj: Obj, now: datetime) -> list[Any]:
    spec, status = mapping(obj, "spec"), mapping(obj, "status")
    bound = bool(spec.get("volumeName"))
    return [
        name(obj),
        _volume_phase(obj),
        spec.get("volumeName", ""),
        quantity(get(status, "capacity", "storage")) if bound else "",
        _access_modes(items(status, "accessModes")) if bound else "",
        _storage_class(obj),
        spec.get("volumeAttributesClassName") or UNSET,
        age(obj, now),
        spec.get("volumeMode") or UNSET,
    ]


PERSISTENT_VOLUME_CLAIM = Printer(
    (
        NAME,
        Column("Status", doc=("core.v1.PersistentVolumeClaimStatus", "phase")),
        Column("Volume", doc=("core.v1.PersistentVolumeClaimSpec", "volumeName")),
        Column("Capacity", doc=("core.v1.PersistentVolumeClaimStatus", "capacity")),
        Column("Access Modes", doc=("core.v1.PersistentVolumeClaimStatus", "accessModes")),
        Column("StorageClass", text="StorageClass of the pvc"),
        Column("VolumeAttributesClass", text="VolumeAttributesClass of the pvc"),
        AGE,
        Column("VolumeMode", doc=("core.v1.PersistentVolumeClaimSpec", "volumeMode"), priority=1),
    ),
    _pvc_cells,
)

PRINTERS: Printers = {
    ("", "ConfigMap"): CONFIG_MAP,
    ("", "Endpoints"): ENDPOINTS,
    ("", "Event"): EVENT,
    ("events.k8s.io", "Event"): EVENT,
    ("", "Namespace"): NAMESPACE,
    ("", "Node"): NODE,
    ("", "PersistentVolume"): PERSISTENT_VOLUME,
    ("", "PersistentVolumeClaim"): PERSISTENT_VOLUME_CLAIM,
    ("", "Pod"): POD,
    ("", "PodTemplate"): POD_TEMPLATE,
    ("", "ReplicationController"): REPLICATION_CONTROLLER,
    ("", "ResourceQuota"): RESOURCE_QUOTA,
    ("", "Secret"): SECRET,
    ("", "Service"): SERVICE,
    ("", "ServiceAccount"): SERVICE_ACCOUNT,
}
