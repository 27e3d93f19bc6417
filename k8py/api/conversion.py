"""Conversion between served versions that share one storage.

Most resources are stored in the version they are served in, and conversion
is only stamping apiVersion/kind. Two pairs differ in shape:
- autoscaling/v1 HorizontalPodAutoscaler <-> autoscaling/v2 (stored as v2),
- events.k8s.io/v1 Event <-> core/v1 Event (stored as core/v1).
Fields a version cannot hold travel in annotations, as kube does for HPA v1
(`autoscaling.alpha.kubernetes.io/...`) — here only the CPU target is mapped.
Custom resources convert with their CRD's strategy None: only apiVersion changes.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from k8py.api.registry import ResourceInfo

Obj = dict[str, Any]


def from_wire(info: ResourceInfo, obj: Obj) -> None:
    """What decoding into kube's internal types does to a request body: Secret.stringData
    is write-only, merged into data (base64) and dropped; a Node's podCIDR and podCIDRs are
    one field inside (podCIDRs; podCIDR only when podCIDRs is empty), podCIDR its first entry."""
    if info.group:
        return
    if info.kind == "Secret" and "stringData" in obj:
        string_data = obj.pop("stringData") or {}
        data = obj.get("data") or {}
        for k, v in string_data.items():
            data[k] = base64.b64encode(str(v).encode()).decode()
        obj["data"] = data
    elif info.kind == "Node" and isinstance(spec := obj.get("spec"), dict):
        # Convert_v1_NodeSpec_To_core_NodeSpec and back
        cidrs = spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else [])
        if cidrs:
            spec["podCIDRs"], spec["podCIDR"] = cidrs, cidrs[0]


def to_storage(info: ResourceInfo, obj: Obj) -> Obj:
    """`obj` is in `info`'s version; return it in the storage version."""
    if info.group_version == info.storage_version:
        obj["apiVersion"], obj["kind"] = info.api_version, info.kind
        return obj
    out = _converter(info, info.group_version, info.storage_version)(obj)
    out["apiVersion"], out["kind"] = info.storage_version, info.kind
    return out


def from_storage(info: ResourceInfo, obj: Obj) -> Obj:
    """`obj` is in the storage version; return it in `info`'s version (a new dict when it changes shape)."""
    if info.group_version == info.storage_version:
        if obj.get("apiVersion") == info.api_version and obj.get("kind") == info.kind:
            return obj
        return {**obj, "apiVersion": info.api_version, "kind": info.kind}
    out = _converter(info, info.storage_version, info.group_version)(obj)
    out["apiVersion"], out["kind"] = info.api_version, info.kind
    return out


def _converter(info: ResourceInfo, source: str, target: str) -> Callable[[Obj], Obj]:
    if info.custom is not None:
        return dict  # conversion strategy None: a shallow copy that only changes apiVersion
    return _CONVERTERS[(source, target, info.kind)]


def _hpa_v1_to_v2(obj: Obj) -> Obj:
    out = {k: v for k, v in obj.items() if k not in ("spec", "status")}
    spec = dict(obj.get("spec") or {})
    target = spec.pop("targetCPUUtilizationPercentage", None)
    if target is not None:
        spec["metrics"] = [
            {
                "type": "Resource",
                "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": target}},
            }
        ]
    out["spec"] = spec
    status = dict(obj.get("status") or {})
    current = status.pop("currentCPUUtilizationPercentage", None)
    if current is not None:
        status["currentMetrics"] = [
            {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": current}}}
        ]
    if obj.get("status") is not None:
        out["status"] = status
    return out


def _hpa_v2_to_v1(obj: Obj) -> Obj:
    out = {k: v for k, v in obj.items() if k not in ("spec", "status")}
    spec = {k: v for k, v in (obj.get("spec") or {}).items() if k not in ("metrics", "behavior")}
    for m in (obj.get("spec") or {}).get("metrics") or []:
        res = m.get("resource") or {}
        if m.get("type") == "Resource" and res.get("name") == "cpu":
            target = res.get("target") or {}
            if "averageUtilization" in target:
                spec["targetCPUUtilizationPercentage"] = target["averageUtilization"]
    out["spec"] = spec
    if "status" in obj:
        src = obj.get("status") or {}
        status = {k: v for k, v in src.items() if k not in ("currentMetrics", "conditions")}
        for m in src.get("currentMetrics") or []:
            res = m.get("resource") or {}
            if m.get("type") == "Resource" and res.get("name") == "cpu":
                current = res.get("current") or {}
                if "averageUtilization" in current:
                    status["currentCPUUtilizationPercentage"] = current["averageUtilization"]
        out["status"] = status
    return out


# events.k8s.io/v1 field <-> core/v1 field, for fields that only move.
_EVENT_RENAMES = (
    ("note", "message"),
    ("regarding", "involvedObject"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedSource", "source"),
    ("deprecatedCount", "count"),
)
_EVENT_SAME = ("metadata", "reason", "type", "action", "related", "series", "eventTime", "reportingController",
               "reportingInstance")


def _event_core_to_events(obj: Obj) -> Obj:
    out = {k: obj[k] for k in _EVENT_SAME if k in obj and k not in ("reportingController", "reportingInstance")}
    for new, old in _EVENT_RENAMES:
        if old in obj:
            out[new] = obj[old]
    if "reportingComponent" in obj:
        out["reportingController"] = obj["reportingComponent"]
    if "reportingInstance" in obj:
        out["reportingInstance"] = obj["reportingInstance"]
    return out


def _event_events_to_core(obj: Obj) -> Obj:
    out = {k: obj[k] for k in _EVENT_SAME if k in obj and k not in ("reportingController", "reportingInstance")}
    for new, old in _EVENT_RENAMES:
        if new in obj:
            out[old] = obj[new]
    if "reportingController" in obj:
        out["reportingComponent"] = obj["reportingController"]
    if "reportingInstance" in obj:
        out["reportingInstance"] = obj["reportingInstance"]
    return out


_CONVERTERS = {
    ("autoscaling/v1", "autoscaling/v2", "HorizontalPodAutoscaler"): _hpa_v1_to_v2,
    ("autoscaling/v2", "autoscaling/v1", "HorizontalPodAutoscaler"): _hpa_v2_to_v1,
    ("v1", "events.k8s.io/v1", "Event"): _event_core_to_events,
    ("events.k8s.io/v1", "v1", "Event"): _event_events_to_core,
}
