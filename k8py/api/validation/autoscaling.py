"""autoscaling HorizontalPodAutoscalers, v1 and v2 (pkg/apis/autoscaling/validation), the essentials."""

from __future__ import annotations

from k8py.api.validation.field import Cause, invalid, invalid_each, required
from k8py.api.validation.meta import Obj, validate_meta
from k8py.api.validation.names import is_path_segment_name, name_is_dns_subdomain


def validate_hpa(hpa: Obj, old: Obj | None) -> list[Cause]:
    causes = validate_meta(hpa, old, True, name_is_dns_subdomain)
    spec = hpa.get("spec") or {}
    min_replicas, max_replicas = spec.get("minReplicas"), spec.get("maxReplicas", 0)
    if min_replicas is not None and min_replicas < 1:
        causes.append(invalid("spec.minReplicas", min_replicas, "must be greater than or equal to 1"))
    if max_replicas < 1:
        causes.append(invalid("spec.maxReplicas", max_replicas, "must be greater than 0"))
    if min_replicas is not None and max_replicas < min_replicas:
        causes.append(
            invalid("spec.maxReplicas", max_replicas, "must be greater than or equal to `minReplicas`")
        )
    ref = spec.get("scaleTargetRef") or {}
    for key in ("kind", "name"):
        if not ref.get(key):
            causes.append(required(f"spec.scaleTargetRef.{key}"))
        else:
            causes += invalid_each(f"spec.scaleTargetRef.{key}", ref[key], is_path_segment_name(ref[key]))
    return causes


VALIDATORS = {"HorizontalPodAutoscaler": validate_hpa}
