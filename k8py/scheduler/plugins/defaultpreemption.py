"""DefaultPreemption: the PostFilter plugin that preempts lower-priority pods.

The flow (candidates, choice of a node, eviction) is the generic ``preemption.Evaluator``;
this plugin is its ``Interface``, as upstream's ``defaultpreemption`` package is:

- **eligibility**: a pod with ``preemptionPolicy: Never`` never preempts; a pod already
  nominated to a node where a lower-priority pod is still terminating because of a
  preemption waits for it, instead of preempting more (unless its nominated node has become
  UnschedulableAndUnresolvable);
- **victims on one node** (``select_victims_on_node``, on a clone of the node and of the
  cycle state): remove every lower-priority pod, check that the pod then fits (filters, with
  the pods nominated to the node), then *reprieve* as many as possible, putting each back
  if the pod still fits: first the pods whose eviction would violate a PodDisruptionBudget,
  then the others, the most important (priority, then the longest running) first;
- **how many candidates**: ``max(minCandidateNodesAbsolute, nodes * minCandidateNodesPercentage
  / 100)``, at most the number of nodes, from a random offset so that successive preemptions
  spread over the cluster.

PDBs come from the ``poddisruptionbudgets`` informer cache (``status.disruptionsAllowed``,
``spec.selector``, ``status.disruptedPods``), as upstream's ``filterPodsWithPDBViolation``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from k8py.api.selectors import LabelSelector
from k8py.scheduler.framework.interface import (
    Code,
    CycleState,
    Handle,
    NodeToStatus,
    PostFilterResult,
    Status,
    unresolvable,
)
from k8py.scheduler.framework.types import NodeInfo, Obj, PodInfo
from k8py.scheduler.preemption import (
    Candidate,
    Evaluator,
    Victims,
    importance_key,
    pod_terminating_by_preemption,
)

NAME = "DefaultPreemption"
DEFAULT_MIN_CANDIDATE_NODES_PERCENTAGE = 10
DEFAULT_MIN_CANDIDATE_NODES_ABSOLUTE = 100


def validate_args(percentage: int, absolute: int) -> None:
    """ValidateDefaultPreemptionArgs."""
    errors = []
    if not 0 <= percentage <= 100:
        errors.append(
            f"minCandidateNodesPercentage: Invalid value: {percentage}: not in valid range [0, 100]"
        )
    if absolute < 0:
        errors.append(f"minCandidateNodesAbsolute: Invalid value: {absolute}: not in valid range [0, inf)")
    if percentage == 0 and absolute == 0:
        errors.append(
            "minCandidateNodesPercentage: Invalid value: 0: cannot be zero at the same time as "
            "minCandidateNodesAbsolute"
        )
    if errors:
        raise ValueError("; ".join(errors))


class DefaultPreemption:
    name = NAME

    def __init__(self, args: Mapping[str, Any], handle: Handle) -> None:
        self.handle: Any = handle
        self.min_candidate_nodes_percentage = int(
            args.get("minCandidateNodesPercentage", DEFAULT_MIN_CANDIDATE_NODES_PERCENTAGE)
        )
        self.min_candidate_nodes_absolute = int(
            args.get("minCandidateNodesAbsolute", DEFAULT_MIN_CANDIDATE_NODES_ABSOLUTE)
        )
        validate_args(self.min_candidate_nodes_percentage, self.min_candidate_nodes_absolute)
        self.evaluator = Evaluator(plugin_name=NAME, handle=handle, interface=self)
        # the offset source (rand.Int31n): replaceable to make tests deterministic
        self.offset_rand: Callable[[int], int] = random.randrange

    async def post_filter(
        self, state: CycleState, pod: PodInfo, filtered: NodeToStatus
    ) -> tuple[PostFilterResult | None, Status | None]:
        result, status = await self.evaluator.preempt(state, pod, filtered)
        if status is not None and status.message():
            return result, Status(status.code, "preemption: " + status.message(), error=status.error)
        return result, status

    # -- preemption.Interface -------------------------------------------------------------

    def calculate_num_candidates(self, num_nodes: int) -> int:
        """How many candidates the dry run looks for: the percentage of the nodes, at least the
        absolute minimum, at most all of them."""
        n = num_nodes * self.min_candidate_nodes_percentage // 100
        n = max(n, self.min_candidate_nodes_absolute)
        return min(n, num_nodes)

    def get_offset_and_num_candidates(self, num_nodes: int) -> tuple[int, int]:
        return self.offset_rand(num_nodes), self.calculate_num_candidates(num_nodes)

    def candidates_to_victims_map(self, candidates: Sequence[Candidate]) -> dict[str, Victims]:
        return {c.name: c.victims for c in candidates}

    def pod_eligible_to_preempt_others(
        self, pod: PodInfo, nominated_node_status: Status | None
    ) -> tuple[bool, str]:
        if pod.spec.get("preemptionPolicy") == "Never":
            return False, "not eligible due to preemptionPolicy=Never."
        nominated = (pod.pod.get("status") or {}).get("nominatedNodeName") or ""
        if nominated:
            # a nominated node the filters now reject for good: the pod may look elsewhere
            if (
                nominated_node_status is not None
                and nominated_node_status.code == Code.UNSCHEDULABLE_AND_UNRESOLVABLE
            ):
                return True, ""
            node_info = self.handle.snapshot().get(nominated)
            if node_info is not None:
                for p in node_info.pods:
                    if p.priority < pod.priority and pod_terminating_by_preemption(p.pod):
                        return False, "not eligible due to a terminating pod on the nominated node."
        return True, ""

    def select_victims_on_node(
        self, state: CycleState, pod: PodInfo, node_info: NodeInfo, pdbs: Sequence[Obj]
    ) -> tuple[list[PodInfo], int, Status | None]:
        fh = self.handle

        def remove(p: PodInfo) -> Status | None:
            node_info.remove_pod(p)
            status = fh.run_pre_filter_extension_remove_pod(state, pod, p, node_info)
            if status is not None and status.code != Code.SUCCESS:
                return Status(
                    Code.ERROR,
                    f'running RemovePod on PreFilter plugin "{status.plugin}": {status.message()}',
                    plugin=status.plugin,
                    error=status.error,
                )
            return None

        def add(p: PodInfo) -> Status | None:
            node_info.add_pod(p)
            status = fh.run_pre_filter_extension_add_pod(state, pod, p, node_info)
            if status is not None and status.code != Code.SUCCESS:
                return Status(
                    Code.ERROR,
                    f'running AddPod on PreFilter plugin "{status.plugin}": {status.message()}',
                    plugin=status.plugin,
                    error=status.error,
                )
            return None

        # remove every pod of lower priority, and see whether the pod fits without them
        potential = [p for p in node_info.pods if p.priority < pod.priority]
        for p in potential:
            if (err := remove(p)) is not None:
                return [], 0, err
        if not potential:
            return [], 0, unresolvable("No preemption victims found for incoming pod")
        # (affinity of the pod to some of the victims is not considered, as upstream: affinity
        # to pods of lower priority is not a recommended configuration)
        status = fh.run_filter_plugins_with_nominated_pods(state, pod, node_info)
        if status is not None and status.code != Code.SUCCESS:
            return [], 0, status

        # reprieve as many as possible, PDB-protected pods first, the most important first
        potential.sort(key=importance_key())
        violating, non_violating = filter_pods_with_pdb_violation(potential, pdbs)
        victims: list[PodInfo] = []

        def reprieve(p: PodInfo) -> tuple[bool, Status | None]:
            if (err := add(p)) is not None:
                return False, err
            status = fh.run_filter_plugins_with_nominated_pods(state, pod, node_info)
            fits = status is None or status.code == Code.SUCCESS
            if not fits:
                if (err := remove(p)) is not None:
                    return False, err
                victims.append(p)
            return fits, None

        num_violating = 0
        for p in violating:
            fits, err = reprieve(p)
            if err is not None:
                return [], 0, err
            if not fits:
                num_violating += 1
        for p in non_violating:
            _, err = reprieve(p)
            if err is not None:
                return [], 0, err
        if violating and non_violating:
            victims.sort(key=importance_key())
        return victims, num_violating, None

    def ordered_score_funcs(self, nodes_to_victims: dict[str, Victims]) -> list[Callable[[str], int]] | None:
        return None


@dataclass(slots=True)
class _Budget:
    namespace: str
    selector: LabelSelector
    disrupted_pods: Mapping[str, Any]
    allowed: int


def filter_pods_with_pdb_violation(
    pods: Sequence[PodInfo], pdbs: Sequence[Obj]
) -> tuple[list[PodInfo], list[PodInfo]]:
    """filterPodsWithPDBViolation: split `pods` (order kept) into those whose eviction, one after
    the other, would take some matching PDB below zero disruptions allowed, and the others.
    A pod already in a PDB's status.disruptedPods does not count against it again."""
    budgets: list[_Budget] = []
    for pdb in pdbs:
        try:
            selector = LabelSelector.from_label_selector((pdb.get("spec") or {}).get("selector"))
        except Exception:  # an invalid selector matches nothing
            continue
        if selector.empty or selector.matches_nothing:  # a nil or empty selector matches nothing
            continue
        status = pdb.get("status") or {}
        budgets.append(
            _Budget(
                (pdb.get("metadata") or {}).get("namespace") or "",
                selector,
                status.get("disruptedPods") or {},
                int(status.get("disruptionsAllowed") or 0),
            )
        )
    violating: list[PodInfo] = []
    non_violating: list[PodInfo] = []
    for p in pods:
        violated = False
        if p.labels:  # a pod without labels matches no PDB
            for b in budgets:
                if b.namespace != p.namespace or not b.selector.matches(p.labels):
                    continue
                if p.name in b.disrupted_pods:  # already processed by the API server: no new violation
                    continue
                b.allowed -= 1
                if b.allowed < 0:
                    violated = True
        (violating if violated else non_violating).append(p)
    return violating, non_violating
