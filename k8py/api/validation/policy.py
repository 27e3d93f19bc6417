"""policy/v1 PodDisruptionBudgets (pkg/apis/policy/validation).

Upstream's strategy checks only the spec; the metadata gets the generic
registry's checks, as for every kind.
"""

from __future__ import annotations

from k8py.api.validation.apps import not_more_than_100_percent, validate_positive_int_or_percent
from k8py.api.validation.field import Cause, GoStruct, invalid, not_supported
from k8py.api.validation.meta import Obj, validate_label_selector

_EVICTION_POLICIES = ("AlwaysAllow", "IfHealthyBudget")


def validate_pod_disruption_budget(pdb: Obj, old: Obj | None) -> list[Cause]:
    spec = pdb.get("spec") or {}
    causes: list[Cause] = []
    if spec.get("minAvailable") is not None and spec.get("maxUnavailable") is not None:
        # The whole internal spec is the bad value; render its set fields under their Go names.
        value = GoStruct(
            MinAvailable=spec["minAvailable"],
            Selector=spec.get("selector"),
            MaxUnavailable=spec["maxUnavailable"],
        )
        causes.append(invalid("spec", value, "minAvailable and maxUnavailable cannot be both set"))
    for key in ("minAvailable", "maxUnavailable"):
        if spec.get(key) is not None:
            causes += validate_positive_int_or_percent(spec[key], f"spec.{key}")
            causes += not_more_than_100_percent(spec[key], f"spec.{key}")
    causes += validate_label_selector(spec.get("selector"), "spec.selector")
    policy = spec.get("unhealthyPodEvictionPolicy")
    if policy is not None and policy not in _EVICTION_POLICIES:
        causes.append(not_supported("spec.unhealthyPodEvictionPolicy", policy, _EVICTION_POLICIES))
    return causes


VALIDATORS = {"PodDisruptionBudget": validate_pod_disruption_budget}
