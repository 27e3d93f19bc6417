"""NodeName: a pod with ``spec.nodeName`` fits only the node of that name."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from k8py.scheduler.framework.interface import (
    SKIP,
    ActionType,
    ClusterEvent,
    ClusterEventWithHint,
    CycleState,
    EventResource,
    Handle,
    PreFilterResult,
    QueueingHint,
    Status,
    unresolvable,
)
from k8py.scheduler.framework.types import NodeInfo, Obj, PodInfo

ERR_REASON = "node(s) didn't match the requested node name"

_EMPTY: Obj = {}


def fits(pod: Obj, node_name: str) -> bool:
    """nodename.Fits: no node name asked for, or the node's."""
    want = (pod.get("spec") or _EMPTY).get("nodeName")
    return not want or want == node_name


class NodeName:
    name = "NodeName"

    def __init__(self, args: Mapping[str, Any], handle: Handle) -> None:
        pass

    def pre_filter(
        self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]
    ) -> tuple[PreFilterResult | None, Status | None]:
        """Skip the Filter for pods that ask for no node (upstream has no PreFilter; the same outcome)."""
        if not (pod.pod.get("spec") or _EMPTY).get("nodeName"):
            return None, SKIP
        return None, None

    def pre_filter_extensions(self) -> None:
        return None

    def filter(self, state: CycleState, pod: PodInfo, node_info: NodeInfo) -> Status | None:
        want = (pod.pod.get("spec") or _EMPTY).get("nodeName")
        if not want or want == node_info.name:
            return None
        return unresolvable(ERR_REASON)

    def events_to_register(self) -> list[ClusterEventWithHint]:
        # with queueing hints there is no preCheck, so a node's label/taint updates need no event
        return [ClusterEventWithHint(ClusterEvent(EventResource.NODE, ActionType.ADD), self._after_node_add)]

    def _after_node_add(self, pod: Obj, old: Obj | None, new: Obj | None) -> QueueingHint:
        if new is not None and fits(pod, new["metadata"]["name"]):
            return QueueingHint.QUEUE
        return QueueingHint.SKIP
