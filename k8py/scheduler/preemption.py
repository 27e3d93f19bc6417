"""Preemption: the generic evaluator behind PostFilter plugins (``pkg/scheduler/framework/preemption``).

When no node passes the filters, a preemption plugin asks: on which node would the pod fit
if some lower-priority pods were gone, and which pods? The :class:`Evaluator` holds the part
of the answer every such plugin shares, in upstream's five steps (``Evaluator.Preempt``):

1. ask the plugin whether the pod may preempt at all (``pod_eligible_to_preempt_others``);
2. ``find_candidates``: the nodes whose filter status is ``Unschedulable`` (a node rejected
   as UnschedulableAndUnresolvable cannot be helped by removing pods), starting at an offset
   and stopping once enough candidates are found (``get_offset_and_num_candidates``); on
   each, ``dry_run_preemption`` calls the plugin's ``select_victims_on_node`` with a cloned
   NodeInfo and a cloned CycleState, so the what-if never touches the cycle's view;
3. (extenders: k8py has none);
4. ``select_candidate``: the plugin's score functions, or upstream's default order
   (:func:`pick_one_node_for_preemption`);
5. ``prepare_candidate``: mark each victim with a ``DisruptionTarget`` condition and delete
   it (or reject it when it waits at Permit), and take the nomination away from the
   lower-priority pods nominated to the node, so they look elsewhere sooner.

What is plugin-specific (how victims are chosen on one node, PDBs, how many candidates) is
the plugin's: see ``plugins/defaultpreemption.py``, the :class:`Interface` implementation.

Steps 1-4 are synchronous, as the scheduling cycle is: the evaluation reads the cycle's
snapshot and nothing can change it under us. Only step 5 awaits (API calls), after the
decision is made. Upstream runs the per-node dry runs in parallel goroutines; here they run
one after another from the offset, which is what the parallel version approximates (stop
once ``num_candidates`` are found, at least one of them violating no PDB) and is
deterministic for a given offset.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from k8py.api.meta import now as meta_now
from k8py.api.meta import parse_time
from k8py.client.errors import NotFound
from k8py.client.resources import PODS
from k8py.client.rest import PatchType
from k8py.scheduler.framework.interface import (
    Code,
    CycleState,
    NodeToStatus,
    PostFilterResult,
    Status,
    as_status,
    unresolvable,
)
from k8py.scheduler.framework.types import NodeInfo, Obj, PodInfo

log = logging.getLogger(__name__)

NO_NODE_AVAILABLE_MSG = "0/{} nodes are available"
PREEMPTION_NOT_HELPFUL = "Preemption is not helpful for scheduling"
DISRUPTION_TARGET = "DisruptionTarget"
PREEMPTION_BY_SCHEDULER = "PreemptionByScheduler"
MAX_INT32 = (1 << 31) - 1


@dataclass(slots=True)
class Victims:
    """extenderv1.Victims: the pods to preempt on a node (most important first), and how many
    of them violate a PodDisruptionBudget."""

    pods: list[PodInfo]
    num_pdb_violations: int = 0


@dataclass(slots=True)
class Candidate:
    """A node the preemptor would fit on once ``victims`` are gone."""

    name: str
    victims: Victims


class Interface(Protocol):
    """preemption.Interface: what a preemption plugin decides itself."""

    def get_offset_and_num_candidates(self, num_nodes: int) -> tuple[int, int]:
        """A (random) offset into the potential nodes and how many candidates to look for."""
        ...

    def candidates_to_victims_map(self, candidates: Sequence[Candidate]) -> dict[str, Victims]: ...

    def pod_eligible_to_preempt_others(
        self, pod: PodInfo, nominated_node_status: Status | None
    ) -> tuple[bool, str]:
        """Whether `pod` may preempt at all; the reason when it may not."""
        ...

    def select_victims_on_node(
        self, state: CycleState, pod: PodInfo, node_info: NodeInfo, pdbs: Sequence[Obj]
    ) -> tuple[list[PodInfo], int, Status | None]:
        """The fewest pods to remove from `node_info` (a clone, as is `state`) for `pod` to fit:
        (victims, number of PDB violations, None), or a status saying why there are none."""
        ...

    def ordered_score_funcs(self, nodes_to_victims: dict[str, Victims]) -> list[Callable[[str], int]] | None:
        """Score functions to pick a candidate by (highest first, ties go to the next); None: the default."""
        ...


# -- pods' importance ------------------------------------------------------------------------


def pod_start_time(pod: PodInfo, now: float | None = None) -> float:
    """util.GetPodStartTime: status.startTime as a POSIX timestamp, or now for a pod not started."""
    start = (pod.pod.get("status") or {}).get("startTime")
    if start:
        try:
            return parse_time(start).timestamp()
        except ValueError:
            pass
    return time.time() if now is None else now


def importance_key(now: float | None = None) -> Callable[[PodInfo], tuple[int, float]]:
    """A sort key putting pods in util.MoreImportantPod's order: higher priority first, then the
    longer running (earlier start) first."""
    now = time.time() if now is None else now
    return lambda p: (-p.priority, pod_start_time(p, now))


def earliest_pod_start_time(victims: Victims, now: float | None = None) -> float | None:
    """util.GetEarliestPodStartTime: the earliest start among the highest-priority victims."""
    if not victims.pods:
        return None
    now = time.time() if now is None else now
    top = max(p.priority for p in victims.pods)
    return min(pod_start_time(p, now) for p in victims.pods if p.priority == top)


def pick_one_node_for_preemption(
    nodes_to_victims: dict[str, Victims], score_funcs: Sequence[Callable[[str], int]] | None = None
) -> str:
    """pickOneNodeForPreemption: the candidate node, by `score_funcs` (highest score wins, a tie
    goes to the next function) or by default, in this order:

    1. fewest PDB violations; 2. lowest priority of the most important victim; 3. smallest sum
    of victims' priorities; 4. fewest victims; 5. latest start of the highest-priority victims;
    6. the first node left. Victims are expected most important first.
    """
    if not nodes_to_victims:
        return ""
    candidates = list(nodes_to_victims)
    if not score_funcs:
        now = time.time()

        def latest_start(node: str) -> int:
            earliest = earliest_pod_start_time(nodes_to_victims[node], now)
            return -(1 << 63) if earliest is None else int(earliest * 1e9)

        score_funcs = [
            lambda node: -nodes_to_victims[node].num_pdb_violations,
            lambda node: -nodes_to_victims[node].pods[0].priority,
            # shifted by MaxInt32+1 so that more victims of negative priority never look better
            lambda node: -sum(p.priority + MAX_INT32 + 1 for p in nodes_to_victims[node].pods),
            lambda node: -len(nodes_to_victims[node].pods),
            latest_start,
        ]
    for f in score_funcs:
        best: list[str] = []
        max_score: int | None = None
        for node in candidates:
            score = f(node)
            if max_score is None or score > max_score:
                max_score = score
                best = []
            if score == max_score:
                best.append(node)
        if len(best) == 1:
            return best[0]
        candidates = best
    return candidates[0]


# -- the fit error ---------------------------------------------------------------------------


def fit_error_message(
    num_all_nodes: int, statuses: NodeToStatus, *, pre_filter_msg: str = "", post_filter_msg: str = ""
) -> str:
    """framework.FitError.Error(): "0/N nodes are available: <count> <reason>, ... ." with the
    reasons of the nodes listed, those of the absent status for the others, sorted as strings."""
    msg = NO_NODE_AVAILABLE_MSG.format(num_all_nodes) + ":"
    if pre_filter_msg:
        msg += f" {pre_filter_msg}."
    else:
        counts: dict[str, int] = {}
        for status in statuses.statuses.values():
            for reason in status.reasons:
                counts[reason] = counts.get(reason, 0) + 1
        absent = num_all_nodes - len(statuses)
        if absent > 0 and statuses.absent is not None:
            for reason in statuses.absent.reasons:
                counts[reason] = counts.get(reason, 0) + absent
        histogram = sorted(f"{n} {reason}" for reason, n in counts.items())
        if histogram:
            msg += f" {', '.join(histogram)}."
    if post_filter_msg:
        msg += f" {post_filter_msg}."
    return msg


def nodes_for_status_code(snapshot: Any, statuses: NodeToStatus, code: Code) -> list[NodeInfo]:
    """NodeToStatus.NodesForStatusCode: the snapshot's nodes whose status has `code` (a node not
    listed has the absent status; None, success, matches no rejection)."""
    absent_code = Code.SUCCESS if statuses.absent is None else statuses.absent.code
    if absent_code == code:
        nodes = snapshot.node_infos()
        if not len(statuses):
            return list(nodes)
        return [ni for ni in nodes if _code(statuses.get(ni.name)) == code]
    out = []
    for name, status in statuses.statuses.items():
        if _code(status) == code:
            ni = snapshot.get(name)
            if ni is not None and ni.node is not None:
                out.append(ni)
    return out


def _code(status: Status | None) -> Code:
    return Code.SUCCESS if status is None else status.code


# -- API helpers -----------------------------------------------------------------------------


def update_pod_condition(status: Obj, condition: Obj) -> bool:
    """apipod.UpdatePodCondition on a status dict (modified in place): add or replace the
    condition of its type; lastTransitionTime moves only when the condition's status changes.
    False when nothing changed."""
    condition = {**condition, "lastTransitionTime": meta_now()}
    conditions: list[Obj] = status.setdefault("conditions", [])
    for i, old in enumerate(conditions):
        if old.get("type") != condition["type"]:
            continue
        if old.get("status") == condition["status"]:
            if old.get("lastTransitionTime"):
                condition["lastTransitionTime"] = old["lastTransitionTime"]
            else:
                condition.pop("lastTransitionTime")
        conditions[i] = condition
        return any(
            old.get(k) != condition.get(k)
            for k in ("status", "reason", "message", "lastProbeTime", "lastTransitionTime")
        )
    conditions.append(condition)
    return True


async def patch_pod_status(client: Any, pod: Obj, status_patch: Obj) -> None:
    """util.PatchPodStatus: a strategic merge patch of the status subresource."""
    meta = pod["metadata"]
    await client.patch(
        PODS,
        meta["name"],
        {"status": status_patch},
        namespace=meta.get("namespace"),
        patch_type=PatchType.STRATEGIC,
        subresource="status",
    )


async def clear_nominated_node_name(client: Any, pods: Iterable[Obj]) -> list[Exception]:
    """util.ClearNominatedNodeName: drop status.nominatedNodeName of those pods that have one."""
    errors: list[Exception] = []
    for pod in pods:
        if not (pod.get("status") or {}).get("nominatedNodeName"):
            continue
        try:
            await patch_pod_status(client, pod, {"nominatedNodeName": None})
        except Exception as e:  # every pod gets its try; the caller logs what failed
            errors.append(e)
    return errors


def pod_terminating_by_preemption(pod: Obj) -> bool:
    """Whether the pod is terminating because a scheduler preempted it."""
    if not (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    for c in (pod.get("status") or {}).get("conditions") or ():
        if c.get("type") == DISRUPTION_TARGET:
            return c.get("status") == "True" and c.get("reason") == PREEMPTION_BY_SCHEDULER
    return False


# -- the evaluator ---------------------------------------------------------------------------


@dataclass
class _CandidateList:
    """newCandidateList: at most `size` candidates, extra ones dropped."""

    size: int
    items: list[Candidate] = field(default_factory=list)

    def add(self, c: Candidate) -> None:
        if len(self.items) < self.size:
            self.items.append(c)


class Evaluator:
    """preemption.Evaluator: the generic preemption flow around a plugin's :class:`Interface`."""

    def __init__(self, *, plugin_name: str, handle: Any, interface: Interface) -> None:
        self.plugin_name = plugin_name
        self.handle = handle
        self.interface = interface

    async def preempt(
        self, state: CycleState, pod: PodInfo, statuses: NodeToStatus
    ) -> tuple[PostFilterResult | None, Status | None]:
        """Evaluator.Preempt. The outcomes, as upstream:

        - ``(None, Error)``: a transient failure; ``(None, Unschedulable)``: the pod may not
          preempt now (its nomination is kept);
        - ``(PostFilterResult(""), Unschedulable)``: preemption cannot help; the nomination goes;
        - ``(PostFilterResult(node), None)``: victims are on their way out, nominate `node`.
        """
        # 0) the latest version of the pod, from the informer cache (a cache that holds no pod
        # at all is a scheduler without a pod informer, as in unit tests: take the pod as given)
        pods = self.handle.lister("pods")
        latest = pods.get_by_key(pod.key)
        if latest is None and len(pods):
            return None, Status(Code.ERROR, f'pod "{pod.key}" not found in the informer cache')
        if latest is not None and latest is not pod.pod:
            pod = PodInfo(latest)

        # 1) may it preempt at all?
        nominated = (pod.pod.get("status") or {}).get("nominatedNodeName") or ""
        ok, msg = self.interface.pod_eligible_to_preempt_others(pod, statuses.get(nominated))
        if not ok:
            log.debug("pod %s is not eligible for preemption: %s", pod.key, msg)
            return None, Status(Code.UNSCHEDULABLE, msg)

        # 2) the candidates
        all_nodes = self.handle.snapshot().node_infos()
        try:
            candidates, node_statuses, errors = await self.find_candidates(state, all_nodes, pod, statuses)
        except Exception as e:
            return None, as_status(e)
        if errors and not candidates:
            return None, as_status(errors[0])
        if not candidates:
            node_statuses.absent = unresolvable(PREEMPTION_NOT_HELPFUL)
            # nominating "" clears the pod's nomination, if it had one
            return PostFilterResult(nominated_node_name=""), Status(
                Code.UNSCHEDULABLE, fit_error_message(len(all_nodes), node_statuses)
            )

        # 4) the best candidate (3, extenders, does not apply)
        best = self.select_candidate(candidates)
        if best is None or not best.name:
            return None, Status(Code.UNSCHEDULABLE, "no candidate node for preemption")
        log.info("preempting %d pod(s) on node %s for %s", len(best.victims.pods), best.name, pod.key)

        # 5) evict the victims, take the node from lower-priority nominated pods
        status = await self.prepare_candidate(best, pod, self.plugin_name)
        if status is not None:
            return None, status
        return PostFilterResult(nominated_node_name=best.name), None

    async def find_candidates(
        self, state: CycleState, all_nodes: Sequence[NodeInfo], pod: PodInfo, statuses: NodeToStatus
    ) -> tuple[list[Candidate], NodeToStatus, list[Exception]]:
        """FindCandidates: dry-run preemption on the nodes where removing pods might help."""
        if not all_nodes:
            raise RuntimeError("no nodes available")
        potential = nodes_for_status_code(self.handle.snapshot(), statuses, Code.UNSCHEDULABLE)
        if not potential:
            log.debug("preemption will not help schedule pod %s on any node", pod.key)
            # the pod's nomination can go now (the decision is made: awaiting is safe here)
            for e in await clear_nominated_node_name(self.handle.client, [pod.pod]):
                log.error("could not clear the nominatedNodeName of pod %s: %s", pod.key, e)
            return [], NodeToStatus(absent=unresolvable()), []
        pdbs = self.handle.lister("poddisruptionbudgets").list()
        offset, num_candidates = self.interface.get_offset_and_num_candidates(len(potential))
        return self.dry_run_preemption(state, pod, potential, pdbs, offset, num_candidates)

    def dry_run_preemption(
        self,
        state: CycleState,
        pod: PodInfo,
        potential_nodes: Sequence[NodeInfo],
        pdbs: Sequence[Obj],
        offset: int,
        num_candidates: int,
    ) -> tuple[list[Candidate], NodeToStatus, list[Exception]]:
        """DryRunPreemption: victims on each potential node (from `offset`, wrapping around) until
        `num_candidates` are found with at least one violating no PDB. Candidates violating no
        PDB come first. Also the status of each node that is no candidate, and the errors."""
        non_violating = _CandidateList(num_candidates)
        violating = _CandidateList(num_candidates)
        node_statuses = NodeToStatus(absent=unresolvable())
        errors: list[Exception] = []
        n = len(potential_nodes)
        for i in range(n):
            node_copy = potential_nodes[(offset + i) % n].clone()
            try:
                pods, num_violations, status = self.interface.select_victims_on_node(
                    state.clone(), pod, node_copy, pdbs
                )
            except Exception as e:  # a plugin bug fails this node, not the scheduler
                log.exception("selecting victims on node %s failed", node_copy.name)
                pods, num_violations, status = [], 0, as_status(e)
            if status is None or status.code == Code.SUCCESS:
                if pods:
                    c = Candidate(node_copy.name, Victims(pods, num_violations))
                    (violating if num_violations else non_violating).add(c)
                    nvc, vc = len(non_violating.items), len(violating.items)
                    if nvc > 0 and nvc + vc >= num_candidates:
                        break
                    continue
                status = as_status(
                    RuntimeError(f'expected at least one victim pod on node "{node_copy.name}"')
                )
            if status.code == Code.ERROR:
                err = status.error
                errors.append(err if isinstance(err, Exception) else RuntimeError(status.message()))
            node_statuses.set(node_copy.name, status)
        return non_violating.items + violating.items, node_statuses, errors

    def select_candidate(self, candidates: Sequence[Candidate]) -> Candidate | None:
        """SelectCandidate: the best of the candidates (the plugin's score functions, or upstream's
        default criteria)."""
        if not candidates:
            return None
        if len(candidates) == 1:
            return candidates[0]
        victims = self.interface.candidates_to_victims_map(candidates)
        node = pick_one_node_for_preemption(victims, self.interface.ordered_score_funcs(victims))
        if node in victims:
            return Candidate(node, victims[node])
        log.error("no candidate selected among %s", [c.name for c in candidates])
        return candidates[0]

    async def prepare_candidate(self, c: Candidate, pod: PodInfo, plugin_name: str) -> Status | None:
        """prepareCandidate: preempt every victim (concurrently), then clear the nomination of the
        lower-priority pods nominated to the node (a failure there is only logged)."""
        victims = [v for v in c.victims.pods if not (v.pod.get("metadata") or {}).get("deletionTimestamp")]
        results = await asyncio.gather(
            *(self.preempt_pod(c, pod, v, plugin_name) for v in victims), return_exceptions=True
        )
        for r in results:
            if isinstance(r, asyncio.CancelledError):
                raise r
            if isinstance(r, BaseException):
                return as_status(r)
        lower = [
            p.pod for p in self.handle.nominator.nominated_pods_for_node(c.name) if p.priority < pod.priority
        ]
        for e in await clear_nominated_node_name(self.handle.client, lower):
            log.error("cannot clear the nominatedNodeName of a pod nominated to %s: %s", c.name, e)
        return None

    async def preempt_pod(self, c: Candidate, preemptor: PodInfo, victim: PodInfo, plugin_name: str) -> None:
        """Evaluator.PreemptPod: reject the victim if it waits at Permit; otherwise add a
        DisruptionTarget condition to it and delete it (default grace period). Then the
        ``Preempted`` event. A victim already gone counts as preempted."""
        get_waiting_pod = getattr(self.handle, "get_waiting_pod", None)
        waiting = get_waiting_pod(victim.uid) if get_waiting_pod is not None else None
        if waiting is not None:
            waiting.reject(plugin_name, "preempted")
            log.info("%s rejected waiting pod %s on node %s", preemptor.key, victim.key, c.name)
        else:
            client = self.handle.client
            scheduler_name = preemptor.spec.get("schedulerName") or ""
            condition = {
                "type": DISRUPTION_TARGET,
                "status": "True",
                "reason": PREEMPTION_BY_SCHEDULER,
                "message": f"{scheduler_name}: preempting to accommodate a higher priority pod",
            }
            status = {
                "conditions": [dict(x) for x in (victim.pod.get("status") or {}).get("conditions") or ()]
            }
            if update_pod_condition(status, condition):
                changed = next(x for x in status["conditions"] if x["type"] == DISRUPTION_TARGET)
                try:
                    await patch_pod_status(client, victim.pod, {"conditions": [changed]})
                except NotFound:
                    log.info("victim %s of %s is already deleted", victim.key, preemptor.key)
                    return
            try:
                await client.delete(PODS, victim.name, namespace=victim.namespace)
            except NotFound:
                log.info("victim %s of %s is already deleted", victim.key, preemptor.key)
                return
            log.info("%s preempted %s on node %s", preemptor.key, victim.key, c.name)
        context = getattr(self.handle, "context", None)
        recorder = getattr(context, "recorder", None)
        if recorder is not None:
            recorder.event(
                victim.pod, "Normal", "Preempted", f"Preempted by pod {preemptor.uid} on node {c.name}"
            )
