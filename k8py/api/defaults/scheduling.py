"""Defaulting of scheduling.k8s.io/v1 (pkg/apis/scheduling/v1/defaults.go)."""

from __future__ import annotations

from k8py.api.defaults.core import Obj, set_if_unset


def default_priority_class(priority_class: Obj) -> None:
    set_if_unset(priority_class, "preemptionPolicy", "PreemptLowerPriority")


DEFAULTERS = {("v1", "PriorityClass"): default_priority_class}
