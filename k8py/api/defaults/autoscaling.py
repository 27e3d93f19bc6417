"""Defaulting of autoscaling v1 and v2 HorizontalPodAutoscalers (pkg/apis/autoscaling/v{1,2}/defaults.go).

v2 fills a CPU utilization target of 80% when no metrics are given and, when a
`behavior` is set, completes both scaling directions with the controller's
historical rules (scale up by max(4 pods, 100%) per 15 s, down by 100% per 15 s).
"""

from __future__ import annotations

import copy

from k8py.api.defaults.core import Obj, set_if_unset

DEFAULT_CPU_UTILIZATION = 80

_SCALE_UP = {
    "stabilizationWindowSeconds": 0,
    "selectPolicy": "Max",
    "policies": [
        {"type": "Pods", "value": 4, "periodSeconds": 15},
        {"type": "Percent", "value": 100, "periodSeconds": 15},
    ],
}
# No stabilizationWindowSeconds: the controller's --horizontal-pod-autoscaler-downscale-stabilization applies.
_SCALE_DOWN = {"selectPolicy": "Max", "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}


def _scaling_rules(rules: Obj | None, defaults: Obj) -> Obj:
    merged = copy.deepcopy(defaults)
    for key in ("selectPolicy", "stabilizationWindowSeconds", "policies"):
        if (rules or {}).get(key) is not None:
            merged[key] = rules[key]  # type: ignore[index]
    return merged


def default_hpa_v2(hpa: Obj) -> None:
    spec = hpa.setdefault("spec", {})
    set_if_unset(spec, "minReplicas", 1)
    if not spec.get("metrics"):
        spec["metrics"] = [
            {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": DEFAULT_CPU_UTILIZATION},
                },
            }
        ]
    behavior = spec.get("behavior")
    if behavior is not None:
        behavior["scaleUp"] = _scaling_rules(behavior.get("scaleUp"), _SCALE_UP)
        behavior["scaleDown"] = _scaling_rules(behavior.get("scaleDown"), _SCALE_DOWN)


def default_hpa_v1(hpa: Obj) -> None:
    set_if_unset(hpa.setdefault("spec", {}), "minReplicas", 1)


DEFAULTERS = {
    ("v2", "HorizontalPodAutoscaler"): default_hpa_v2,
    ("v1", "HorizontalPodAutoscaler"): default_hpa_v1,
}
