"""Printers of the apps group."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from k8py.api.printers._common import (
    AGE,
    CONTAINERS,
    IMAGES,
    NAME,
    NONE,
    Column,
    Obj,
    Printer,
    Printers,
    age,
    container_cells,
    format_label_selector,
    format_labels,
    get,
    items,
    name,
    selector_string,
    spec_replicas,
)

_READY = Column("Ready", text="Number of the pod with ready state")


def _template_spec(obj: Obj) -> Obj | None:
    return get(obj, "spec", "template", "spec")


def _deployment_cells(obj: Obj, now: datetime) -> list[Any]:
    status = obj.get("status") or {}
    selector = selector_string(get(obj, "spec", "selector"))
    return [
        name(obj),
        f"{status.get('readyReplicas', 0)}/{spec_replicas(obj)}",
        status.get("updatedReplicas", 0),
        status.get("availableReplicas", 0),
        age(obj, now),
        *container_cells(_template_spec(obj)),
        "<invalid>" if selector is None else selector,
    ]


DEPLOYMENT = Printer(
    (
        NAME,
        _READY,
        Column("Up-to-date", doc=("apps.v1.DeploymentStatus", "updatedReplicas")),
        Column("Available", doc=("apps.v1.DeploymentStatus", "availableReplicas")),
        AGE,
        CONTAINERS,
        IMAGES,
        Column("Selector", doc=("apps.v1.DeploymentSpec", "selector"), priority=1),
    ),
    _deployment_cells,
)

REPLICA_SET = Printer(
    (
        NAME,
        Column("Desired", "integer", ("apps.v1.ReplicaSetSpec", "replicas")),
        Column("Current", "integer", ("apps.v1.ReplicaSetStatus", "replicas")),
        Column("Ready", "integer", ("apps.v1.ReplicaSetStatus", "readyReplicas")),
        AGE,
        CONTAINERS,
        IMAGES,
        Column("Selector", doc=("apps.v1.ReplicaSetSpec", "selector"), priority=1),
    ),
    lambda o, now: [
        name(o),
        spec_replicas(o),
        get(o, "status", "replicas") or 0,
        get(o, "status", "readyReplicas") or 0,
        age(o, now),
        *container_cells(_template_spec(o)),
        format_label_selector(get(o, "spec", "selector")),
    ],
)

_DAEMON_SET_COUNTS = (
    ("Desired", "desiredNumberScheduled"),
    ("Current", "currentNumberScheduled"),
    ("Ready", "numberReady"),
    ("Up-to-date", "updatedNumberScheduled"),
    ("Available", "numberAvailable"),
)

DAEMON_SET = Printer(
    (
        NAME,
        *(
            Column(title, "integer", ("apps.v1.DaemonSetStatus", field))
            for title, field in _DAEMON_SET_COUNTS
        ),
        Column("Node Selector", doc=("core.v1.PodSpec", "nodeSelector")),
        AGE,
        CONTAINERS,
        IMAGES,
        Column("Selector", doc=("apps.v1.DaemonSetSpec", "selector"), priority=1),
    ),
    lambda o, now: [
        name(o),
        *((get(o, "status", field) or 0) for _, field in _DAEMON_SET_COUNTS),
        format_labels(get(o, "spec", "template", "spec", "nodeSelector")),
        age(o, now),
        *container_cells(_template_spec(o)),
        format_label_selector(get(o, "spec", "selector")),
    ],
)

STATEFUL_SET = Printer(
    (NAME, _READY, AGE, CONTAINERS, IMAGES),
    lambda o, now: [
        name(o),
        f"{get(o, 'status', 'readyReplicas') or 0}/{spec_replicas(o)}",
        age(o, now),
        *container_cells(_template_spec(o)),
    ],
)


def _controller_name(obj: Obj) -> str:
    """formatResourceName of the controller: "kind.group/name", lower case."""
    ref = next((r for r in items(obj, "metadata", "ownerReferences") if r.get("controller")), None)
    if ref is None:
        return NONE
    api_version, kind = ref.get("apiVersion", ""), ref.get("kind", "")
    group = api_version.rpartition("/")[0]
    group_kind = f"{kind}.{group}" if group else kind
    return f"{group_kind.lower()}/{ref.get('name', '')}" if group_kind else ref.get("name", "")


CONTROLLER_REVISION = Printer(
    (
        NAME,
        Column("Controller", text="Controller of the object"),
        Column("Revision", doc=("apps.v1.ControllerRevision", "revision")),
        AGE,
    ),
    lambda o, now: [name(o), _controller_name(o), o.get("revision", 0), age(o, now)],
)

PRINTERS: Printers = {
    ("apps", "ControllerRevision"): CONTROLLER_REVISION,
    ("apps", "DaemonSet"): DAEMON_SET,
    ("apps", "Deployment"): DEPLOYMENT,
    ("apps", "ReplicaSet"): REPLICA_SET,
    ("apps", "StatefulSet"): STATEFUL_SET,
}
