"""Printers of the autoscaling group: HorizontalPodAutoscaler (v2 and v1 objects) and Scale."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from k8py.api.printers._common import (
    AGE,
    NAME,
    NONE,
    UNKNOWN,
    UNSET,
    Column,
    Obj,
    Printer,
    Printers,
    age,
    get,
    items,
    list_with_more,
    mapping,
    name,
    quantity,
)

_NIL = "<nil>"  # what Quantity.String() prints for a nil pointer


def _v2_metrics(obj: Obj) -> tuple[list[Obj], list[Obj]]:
    """spec.metrics and status.currentMetrics, converting an autoscaling/v1 object's CPU fields."""
    spec, status = mapping(obj, "spec"), mapping(obj, "status")
    if obj.get("apiVersion") != "autoscaling/v1":
        return items(spec, "metrics"), items(status, "currentMetrics")
    metrics, current = [], []
    if spec.get("targetCPUUtilizationPercentage") is not None:
        target = {"type": "Utilization", "averageUtilization": spec["targetCPUUtilizationPercentage"]}
        metrics.append({"type": "Resource", "resource": {"name": "cpu", "target": target}})
    if status.get("currentCPUUtilizationPercentage") is not None:
        cpu = {"averageUtilization": status["currentCPUUtilizationPercentage"]}
        current.append({"type": "Resource", "resource": {"name": "cpu", "current": cpu}})
    return metrics, current


def _reported(current: Obj | None, field: str) -> str:
    """A current quantity: "<unknown>" when the status does not report the metric, "<nil>" when it lacks the field."""
    return UNKNOWN if current is None else quantity(current.get(field), _NIL)


def _value_metric(target: Obj, current: Obj | None) -> str:
    """An Object or External metric: "current/target", with " (avg)" for an average value."""
    if target.get("averageValue") is not None:
        average = get(current, "averageValue")
        actual = UNKNOWN if average is None else quantity(average)
        return f"{actual}/{target['averageValue']} (avg)"
    return f"{_reported(current, 'value')}/{quantity(target.get('value'), _NIL)}"


def _resource_metric(source: Obj, current: Obj | None) -> str:
    """A Resource or ContainerResource metric: "name: current/target"."""
    target = mapping(source, "target")
    if target.get("averageValue") is not None:
        return f"{source.get('name', '')}: {_reported(current, 'averageValue')}/{target['averageValue']}"
    utilization = get(current, "averageUtilization")
    actual = UNKNOWN if utilization is None else f"{utilization}%"
    wanted = "<auto>" if target.get("averageUtilization") is None else f"{target['averageUtilization']}%"
    return f"{source.get('name', '')}: {actual}/{wanted}"


_SOURCES = {
    "External": "external",
    "Object": "object",
    "Pods": "pods",
    "Resource": "resource",
    "ContainerResource": "containerResource",
}


def _metric(spec: Obj, status: Obj | None) -> str:
    kind = spec.get("type", "")
    if kind not in _SOURCES:
        return "<unknown type>"
    key = _SOURCES[kind]
    source = mapping(spec, key)
    # the current value, when the status of the same index reports this metric's source
    reported = get(status, key)
    current = None if reported is None else mapping(reported, "current")
    if kind == "Pods":
        return f"{_reported(current, 'averageValue')}/{quantity(get(source, 'target', 'averageValue'), _NIL)}"
    if kind in ("Resource", "ContainerResource"):
        return _resource_metric(source, current)
    return _value_metric(mapping(source, "target"), current)


def _targets(obj: Obj) -> str:
    """formatHPAMetrics: the first two metrics as "current/target", then " + N more..."."""
    specs, statuses = _v2_metrics(obj)
    if not specs:
        return NONE
    shown = [_metric(spec, statuses[i] if i < len(statuses) else None) for i, spec in enumerate(specs)]
    return list_with_more(shown, 2, sep=", ")


def _hpa_cells(obj: Obj, now: datetime) -> list[Any]:
    spec = mapping(obj, "spec")
    target = mapping(spec, "scaleTargetRef")
    min_replicas = spec.get("minReplicas")
    return [
        name(obj),
        f"{target.get('kind', '')}/{target.get('name', '')}",
        _targets(obj),
        UNSET if min_replicas is None else str(min_replicas),
        spec.get("maxReplicas", 0),
        get(obj, "status", "currentReplicas") or 0,
        age(obj, now),
    ]


def _hpa_doc(field: str, definition: str = "HorizontalPodAutoscalerSpec") -> tuple[str, str]:
    return (f"autoscaling.v2.{definition}", field)


HORIZONTAL_POD_AUTOSCALER = Printer(
    (
        NAME,
        Column("Reference", doc=_hpa_doc("scaleTargetRef")),
        Column("Targets", doc=_hpa_doc("metrics")),
        Column("MinPods", doc=_hpa_doc("minReplicas")),
        Column("MaxPods", doc=_hpa_doc("maxReplicas")),
        Column("Replicas", doc=_hpa_doc("currentReplicas", "HorizontalPodAutoscalerStatus")),
        AGE,
    ),
    _hpa_cells,
)

# Upstream's Scale table names no format for its Name column.
SCALE = Printer(
    (
        Column("Name", doc=NAME.doc),
        Column("Desired", "integer", ("autoscaling.v1.ScaleSpec", "replicas")),
        Column("Available", "integer", ("autoscaling.v1.ScaleStatus", "replicas")),
        AGE,
    ),
    lambda o, now: [name(o), get(o, "spec", "replicas") or 0, get(o, "status", "replicas") or 0, age(o, now)],
)

PRINTERS: Printers = {
    ("autoscaling", "HorizontalPodAutoscaler"): HORIZONTAL_POD_AUTOSCALER,
    ("autoscaling", "Scale"): SCALE,
}
