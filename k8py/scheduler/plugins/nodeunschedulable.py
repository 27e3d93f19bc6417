"""NodeUnschedulable: nodes with ``spec.unschedulable`` (cordoned) take only pods that tolerate
the ``node.kubernetes.io/unschedulable:NoSchedule`` taint."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from k8py.scheduler.framework.interface import (
    ActionType,
    ClusterEvent,
    ClusterEventWithHint,
    CycleState,
    EventResource,
    Handle,
    QueueingHint,
    Status,
    unresolvable,
)
from k8py.scheduler.framework.types import NodeInfo, Obj, PodInfo
from k8py.scheduler.plugins.helper import NO_SCHEDULE, TAINT_NODE_UNSCHEDULABLE, tolerations_tolerate_taint

ERR_REASON_UNKNOWN_CONDITION = "node(s) had unknown conditions"
ERR_REASON_UNSCHEDULABLE = "node(s) were unschedulable"

_UNSCHEDULABLE_TAINT = {"key": TAINT_NODE_UNSCHEDULABLE, "effect": NO_SCHEDULE}


def pod_tolerates_unschedulable(tolerations: Iterable[Mapping[str, Any]] | None) -> bool:
    return tolerations_tolerate_taint(tolerations, _UNSCHEDULABLE_TAINT)


def _tolerations(pod: Obj | None) -> list[Obj]:
    return ((pod or {}).get("spec") or {}).get("tolerations") or []


class NodeUnschedulable:
    name = "NodeUnschedulable"

    def __init__(self, args: Mapping[str, Any], handle: Handle) -> None:
        pass

    def filter(self, state: CycleState, pod: PodInfo, node_info: NodeInfo) -> Status | None:
        if not node_info.unschedulable:
            return None
        if pod_tolerates_unschedulable(_tolerations(pod.pod)):
            return None
        return unresolvable(ERR_REASON_UNSCHEDULABLE)

    def events_to_register(self) -> list[ClusterEventWithHint]:
        # spec.unschedulable changes are classified as UpdateNodeTaint
        return [
            ClusterEventWithHint(
                ClusterEvent(EventResource.NODE, ActionType.ADD | ActionType.UPDATE_NODE_TAINT),
                self._after_node_change,
            ),
            ClusterEventWithHint(
                ClusterEvent(EventResource.UNSCHEDULED_POD, ActionType.UPDATE_POD_TOLERATIONS),
                self._after_pod_toleration_change,
            ),
        ]

    def _after_node_change(self, pod: Obj, old: Obj | None, new: Obj | None) -> QueueingHint:
        """A node added schedulable, or turned from unschedulable to schedulable."""
        now = bool(((new or {}).get("spec") or {}).get("unschedulable"))
        if old is None:
            return QueueingHint.SKIP if now else QueueingHint.QUEUE
        was = bool((old.get("spec") or {}).get("unschedulable"))
        return QueueingHint.QUEUE if was and not now else QueueingHint.SKIP

    def _after_pod_toleration_change(self, pod: Obj, old: Obj | None, new: Obj | None) -> QueueingHint:
        """The pod itself now tolerates the unschedulable taint."""
        if (
            new is not None
            and new["metadata"].get("uid") == pod["metadata"].get("uid")
            and not pod_tolerates_unschedulable(_tolerations(old))
            and pod_tolerates_unschedulable(_tolerations(new))
        ):
            return QueueingHint.QUEUE
        return QueueingHint.SKIP
