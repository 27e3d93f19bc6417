"""TaintToleration: a node's NoSchedule/NoExecute taints keep off the pods that do not tolerate
them (Filter); its PreferNoSchedule taints the pod does not tolerate count against it (Score,
normalized in reverse: the fewest such taints scores highest).

The pod's tolerations are compiled to tuples once per cycle (lazily in Filter, in PreScore for
Score), so the per-node loops only compare strings; a node without taints returns at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from k8py.scheduler.framework.interface import (
    MAX_NODE_SCORE,
    SKIP,
    ActionType,
    ClusterEvent,
    ClusterEventWithHint,
    CycleState,
    EventResource,
    Handle,
    NodeScore,
    QueueingHint,
    Status,
    unresolvable,
)
from k8py.scheduler.framework.types import NodeInfo, Obj, PodInfo
from k8py.scheduler.plugins.helper import (
    NO_EXECUTE,
    NO_SCHEDULE,
    PREFER_NO_SCHEDULE,
    compile_tolerations,
    compiled_tolerate,
    default_normalize_score,
    do_not_schedule_taints_filter,
    find_untolerated_taint,
    taint_reason,
)

NAME = "TaintToleration"
_FILTER_KEY = "PreFilter" + NAME  # the compiled tolerations, written by the first Filter call
_SCORE_KEY = NAME  # the compiled PreferNoSchedule tolerations, written by PreScore

_ZERO = (0, None)
_EMPTY: Obj = {}


def _tolerations(pod: Obj | None) -> list[Obj]:
    return ((pod or _EMPTY).get("spec") or _EMPTY).get("tolerations") or []


class TaintToleration:
    name = NAME

    def __init__(self, args: Mapping[str, Any], handle: Handle) -> None:
        pass

    # -- Filter --

    def filter(self, state: CycleState, pod: PodInfo, node_info: NodeInfo) -> Status | None:
        taints = node_info.taints
        if not taints:
            return None
        tols = state.get(_FILTER_KEY)
        if tols is None:
            tols = state[_FILTER_KEY] = compile_tolerations(_tolerations(pod.pod))
        for taint in taints:
            effect = taint.get("effect")
            if (effect == NO_SCHEDULE or effect == NO_EXECUTE) and not compiled_tolerate(tols, taint):
                return unresolvable(taint_reason(taint))
        return None

    # -- Score --

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Status | None:
        if nodes and not any(ni.taints for ni in nodes):
            # every node would score 0, normalized to 100: the same for all, so no effect on the
            # choice (upstream computes it anyway)
            return SKIP
        # an empty effect tolerates every effect, PreferNoSchedule included
        prefer = [
            t for t in _tolerations(pod.pod) if not t.get("effect") or t.get("effect") == PREFER_NO_SCHEDULE
        ]
        state[_SCORE_KEY] = compile_tolerations(prefer)
        return None

    def score(self, state: CycleState, pod: PodInfo, node_info: NodeInfo) -> tuple[int, Status | None]:
        taints = node_info.taints
        if not taints:
            return _ZERO
        tols = state.get(_SCORE_KEY)
        if tols is None:
            self.pre_score(state, pod, ())
            tols = state[_SCORE_KEY]
        count = 0
        for taint in taints:
            if taint.get("effect") == PREFER_NO_SCHEDULE and not compiled_tolerate(tols, taint):
                count += 1
        return count, None

    def score_extensions(self) -> TaintToleration:
        return self

    def normalize_score(self, state: CycleState, pod: PodInfo, scores: list[NodeScore]) -> Status | None:
        return default_normalize_score(MAX_NODE_SCORE, True, scores)

    # -- EnqueueExtensions --

    def events_to_register(self) -> list[ClusterEventWithHint]:
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
        """Queue when the node went from having an untolerated taint to having none."""
        if new is None:
            return QueueingHint.SKIP
        tols = _tolerations(pod)
        was_untolerated = old is None or (
            find_untolerated_taint(_node_taints(old), tols, do_not_schedule_taints_filter) is not None
        )
        is_untolerated = (
            find_untolerated_taint(_node_taints(new), tols, do_not_schedule_taints_filter) is not None
        )
        return QueueingHint.QUEUE if was_untolerated and not is_untolerated else QueueingHint.SKIP

    def _after_pod_toleration_change(self, pod: Obj, old: Obj | None, new: Obj | None) -> QueueingHint:
        if new is not None and new["metadata"].get("uid") == pod["metadata"].get("uid"):
            return QueueingHint.QUEUE
        return QueueingHint.SKIP


def _node_taints(node: Obj) -> list[Obj]:
    return (node.get("spec") or _EMPTY).get("taints") or []
