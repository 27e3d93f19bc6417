"""SchedulingGates: a pod with ``spec.schedulingGates`` waits, gated, outside the active queue
until the gates are all removed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from k8py.scheduler.framework.interface import (
    ActionType,
    ClusterEvent,
    ClusterEventWithHint,
    Code,
    EventResource,
    Handle,
    QueueingHint,
    Status,
)
from k8py.scheduler.framework.types import Obj


class SchedulingGates:
    name = "SchedulingGates"

    def __init__(self, args: Mapping[str, Any], handle: Handle) -> None:
        pass

    def pre_enqueue(self, pod: Obj) -> Status | None:
        gates = (pod.get("spec") or {}).get("schedulingGates")
        if not gates:
            return None
        names = " ".join(g.get("name", "") for g in gates)
        return Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, f"waiting for scheduling gates: [{names}]")

    def events_to_register(self) -> list[ClusterEventWithHint]:
        return [
            ClusterEventWithHint(
                ClusterEvent(
                    EventResource.UNSCHEDULED_POD, ActionType.UPDATE_POD_SCHEDULING_GATES_ELIMINATED
                ),
                self._after_gates_eliminated,
            )
        ]

    def _after_gates_eliminated(self, pod: Obj, old: Obj | None, new: Obj | None) -> QueueingHint:
        if new is not None and new["metadata"].get("uid") == pod["metadata"].get("uid"):
            return QueueingHint.QUEUE
        return QueueingHint.SKIP
