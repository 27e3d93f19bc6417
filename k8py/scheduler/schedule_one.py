"""One scheduling attempt's algorithm (``schedule_one.go``): filter, score, select a host.

``schedule_pod`` runs PreFilter, then the Filter plugins over the nodes starting where the
last cycle stopped (round-robin, so every node gets looked at), stopping once it has
found ``num_feasible_nodes_to_find`` feasible nodes (the adaptive percentageOfNodesToScore
of large clusters), then PreScore/Score and picks the best score, ties broken at random.
A pod that fits nowhere raises ``FitError``, whose message is kube-scheduler's
("0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint ...").
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from k8py.scheduler.framework.interface import Code, CycleState, NodeToStatus, Status
from k8py.scheduler.framework.runtime import Framework
from k8py.scheduler.framework.types import NodeInfo, PodInfo
from k8py.scheduler.snapshot import Snapshot

MIN_FEASIBLE_NODES_TO_FIND = 100
MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND = 5
NO_NODES_AVAILABLE = "no nodes available to schedule pods"


@dataclass
class Diagnosis:
    node_to_status: NodeToStatus = field(default_factory=NodeToStatus)
    unschedulable_plugins: set[str] = field(default_factory=set)
    pending_plugins: set[str] = field(default_factory=set)
    pre_filter_msg: str = ""
    post_filter_msg: str = ""


class FitError(Exception):
    """The pod fits on no node: kube's FitError and its message."""

    def __init__(self, pod: PodInfo, num_all_nodes: int, diagnosis: Diagnosis) -> None:
        super().__init__()
        self.pod = pod
        self.num_all_nodes = num_all_nodes
        self.diagnosis = diagnosis

    def __str__(self) -> str:
        d = self.diagnosis
        msg = f"0/{self.num_all_nodes} nodes are available:"
        if d.pre_filter_msg:
            msg += f" {d.pre_filter_msg}."
        else:
            counts: dict[str, int] = {}
            statuses = d.node_to_status.statuses
            for status in statuses.values():
                for reason in status.reasons:
                    counts[reason] = counts.get(reason, 0) + 1
            absent = d.node_to_status.absent
            if absent is not None and self.num_all_nodes > len(statuses):
                for reason in absent.reasons:  # the nodes a PreFilter result ruled out
                    counts[reason] = counts.get(reason, 0) + self.num_all_nodes - len(statuses)
            if counts:
                msg += " " + ", ".join(sorted(f"{n} {r}" for r, n in counts.items())) + "."
        if d.post_filter_msg:
            msg += f" {d.post_filter_msg}."
        return msg


class NoNodesAvailable(Exception):
    def __str__(self) -> str:
        return NO_NODES_AVAILABLE


class SchedulingError(Exception):
    """A plugin failed (not a rejection): the pod goes to backoff."""

    def __init__(self, status: Status) -> None:
        super().__init__(status.message())
        self.status = status


@dataclass(slots=True)
class ScheduleResult:
    suggested_host: str
    evaluated_nodes: int
    feasible_nodes: int


def num_feasible_nodes_to_find(percentage: int | None, num_all_nodes: int) -> int:
    """How many feasible nodes to look for before scoring (percentageOfNodesToScore)."""
    if num_all_nodes < MIN_FEASIBLE_NODES_TO_FIND:
        return num_all_nodes
    adaptive = percentage or 0
    if adaptive <= 0:
        adaptive = 50 - num_all_nodes // 125
        if adaptive < MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND:
            adaptive = MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND
    if adaptive >= 100:
        return num_all_nodes
    n = num_all_nodes * adaptive // 100
    return max(n, MIN_FEASIBLE_NODES_TO_FIND)


class Algorithm:
    """The filter/score/select part of a cycle; remembers where the last search stopped."""

    def __init__(self, default_percentage: int = 0) -> None:
        self.next_start_node_index = 0
        self.default_percentage = default_percentage

    def schedule_pod(
        self, fwk: Framework, state: CycleState, pod: PodInfo, snapshot: Snapshot
    ) -> ScheduleResult:
        num_nodes = snapshot.num_nodes()
        if num_nodes == 0:
            raise NoNodesAvailable()
        feasible, diagnosis = self.find_nodes_that_fit_pod(fwk, state, pod, snapshot)
        if not feasible:
            raise FitError(pod, num_nodes, diagnosis)
        evaluated = len(feasible) + len(diagnosis.node_to_status)
        if len(feasible) == 1:
            return ScheduleResult(feasible[0].name, evaluated, 1)
        scores = self.prioritize_nodes(fwk, state, pod, feasible)
        return ScheduleResult(select_host(feasible, scores), evaluated, len(feasible))

    def find_nodes_that_fit_pod(
        self, fwk: Framework, state: CycleState, pod: PodInfo, snapshot: Snapshot
    ) -> tuple[list[NodeInfo], Diagnosis]:
        diagnosis = Diagnosis()
        all_nodes = snapshot.node_info_list
        result, status = fwk.run_pre_filter_plugins(state, pod, all_nodes)
        if status is not None:
            if not status.is_rejected():
                raise SchedulingError(status)
            diagnosis.node_to_status.absent = status
            for ni in all_nodes:
                diagnosis.node_to_status.set(ni.name, status)
            diagnosis.pre_filter_msg = status.message()
            if status.plugin:
                diagnosis.unschedulable_plugins.add(status.plugin)
            return [], diagnosis

        # a pod nominated by an earlier preemption tries its nominated node first
        nominated = (pod.pod.get("status") or {}).get("nominatedNodeName")
        if nominated:
            ni = snapshot.get(nominated)
            if ni is not None and (
                result is None or result.node_names is None or nominated in result.node_names
            ):
                feasible = self.find_nodes_that_pass_filters(fwk, state, pod, diagnosis, [ni], rotate=False)
                if feasible:
                    return feasible, diagnosis

        nodes = all_nodes
        if result is not None and result.node_names is not None:
            nodes = [ni for name in result.node_names if (ni := snapshot.get(name)) is not None]
            unresolvable = Status(
                Code.UNSCHEDULABLE_AND_UNRESOLVABLE, "node(s) didn't satisfy plugin(s) PreFilter result"
            )
            diagnosis.node_to_status.absent = unresolvable
        return self.find_nodes_that_pass_filters(fwk, state, pod, diagnosis, nodes), diagnosis

    def find_nodes_that_pass_filters(
        self,
        fwk: Framework,
        state: CycleState,
        pod: PodInfo,
        diagnosis: Diagnosis,
        nodes: list[NodeInfo],
        *,
        rotate: bool = True,
    ) -> list[NodeInfo]:
        n = len(nodes)
        if n == 0:
            return []
        pct = fwk.percentage_of_nodes_to_score
        to_find = num_feasible_nodes_to_find(self.default_percentage if pct is None else pct, n)
        start = self.next_start_node_index % n if rotate else 0
        order = nodes[start:] + nodes[:start] if start else nodes
        if fwk.nominator.nominated:
            feasible, processed = self._filter_one_by_one(fwk, state, pod, diagnosis, order, to_find)
        else:
            feasible, processed = self._filter_in_chunks(fwk, state, pod, diagnosis, order, to_find)
        if rotate:
            self.next_start_node_index = (start + processed) % n
        return feasible

    @staticmethod
    def _filter_in_chunks(
        fwk: Framework,
        state: CycleState,
        pod: PodInfo,
        diagnosis: Diagnosis,
        order: list[NodeInfo],
        to_find: int,
    ) -> tuple[list[NodeInfo], int]:
        """Filter plugin by plugin over chunks of nodes (as many as are still needed): the same
        nodes, in the same order, as node by node, at a fraction of the per-call overhead.
        Returns the feasible nodes and how many nodes of `order` that used up."""
        filters = fwk.active_filters(state)
        feasible: list[NodeInfo] = []
        pos = 0
        n = len(order)
        while pos < n:
            chunk = order[pos : pos + max(to_find - len(feasible), 16)]
            survivors = chunk
            for name, fn in filters:
                results = [fn(state, pod, ni) for ni in survivors]
                kept = [
                    ni
                    for ni, st in zip(survivors, results, strict=True)
                    if st is None or st.code == Code.SUCCESS
                ]
                if len(kept) != len(survivors):
                    for ni, st in zip(survivors, results, strict=True):
                        if st is not None and st.code != Code.SUCCESS:
                            st.plugin = name
                            _record(diagnosis, ni, st)
                survivors = kept
            need = to_find - len(feasible)
            if len(survivors) >= need:
                survivors = survivors[:need]
                last = survivors[-1]
                used = next(i for i, ni in enumerate(chunk) if ni is last) + 1
                # nodes past the last one needed were never looked at, as far as anyone can tell
                for ni in chunk[used:]:
                    diagnosis.node_to_status.statuses.pop(ni.name, None)
                feasible.extend(survivors)
                return feasible, pos + used
            feasible.extend(survivors)
            pos += len(chunk)
        return feasible, n

    @staticmethod
    def _filter_one_by_one(
        fwk: Framework,
        state: CycleState,
        pod: PodInfo,
        diagnosis: Diagnosis,
        order: list[NodeInfo],
        to_find: int,
    ) -> tuple[list[NodeInfo], int]:
        """Node by node, with the pods nominated to each node counted in (after a preemption)."""
        feasible: list[NodeInfo] = []
        processed = 0
        for ni in order:
            processed += 1
            status = fwk.run_filter_plugins_with_nominated_pods(state, pod, ni)
            if status is None:
                feasible.append(ni)
                if len(feasible) >= to_find:
                    break
            else:
                _record(diagnosis, ni, status)
        return feasible, processed

    def prioritize_nodes(
        self, fwk: Framework, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]
    ) -> list[int]:
        if not fwk.score_plugins:
            return [1] * len(nodes)
        status = fwk.run_pre_score_plugins(state, pod, nodes)
        if status is not None:
            raise SchedulingError(status)
        totals, status = fwk.run_score_plugins(state, pod, nodes)
        if status is not None:
            raise SchedulingError(status)
        return totals


def _record(diagnosis: Diagnosis, ni: NodeInfo, status: Status) -> None:
    """A node's rejection into the diagnosis; a plugin error fails the attempt."""
    if not status.is_rejected():
        raise SchedulingError(status)
    diagnosis.node_to_status.statuses[ni.name] = status
    if status.code == Code.PENDING:
        diagnosis.pending_plugins.add(status.plugin)
    else:
        diagnosis.unschedulable_plugins.add(status.plugin)


def select_host(nodes: list[NodeInfo], scores: list[int]) -> str:
    """The highest-scored node; among equals, each is equally likely."""
    best = max(scores)
    ties = [i for i, s in enumerate(scores) if s == best]
    return nodes[ties[0] if len(ties) == 1 else random.choice(ties)].name
