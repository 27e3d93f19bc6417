"""DefaultPreemption and the preemption Evaluator: victim selection with real filter plugins,
the choice of a node, eligibility, candidates; and one preemption against a real API server."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator, Iterable
from typing import Any

import pytest

from k8py.client import NotFound, RESTClient
from k8py.client.cache import Indexer, meta_namespace_index_func
from k8py.client.events import EventRecorder
from k8py.client.resources import EVENTS, NODES, PODS, PRIORITY_CLASSES
from k8py.scheduler.config import DEFAULT_PLUGIN_ARGS
from k8py.scheduler.framework.handle import SchedulerContext
from k8py.scheduler.framework.interface import Code, CycleState, NodeToStatus, PostFilterResult, unresolvable
from k8py.scheduler.framework.runtime import Framework, WaitingPod
from k8py.scheduler.framework.types import PodInfo
from k8py.scheduler.plugins.defaultpreemption import (
    DefaultPreemption,
    filter_pods_with_pdb_violation,
    validate_args,
)
from k8py.scheduler.plugins.registry import IN_TREE
from k8py.scheduler.preemption import (
    Victims,
    fit_error_message,
    pick_one_node_for_preemption,
    update_pod_condition,
)
from k8py.scheduler.snapshot import Snapshot
from tests.conftest import Cluster

# -- fixtures and builders -------------------------------------------------------------------

_seq = itertools.count(1)


def make_node(name: str, cpu: str = "3", *, taints: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    resources = {"cpu": cpu, "memory": "16Gi", "pods": "110"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {"taints": taints} if taints else {},
        "status": {"capacity": dict(resources), "allocatable": dict(resources)},
    }


def make_pod(
    name: str,
    *,
    node: str = "",
    priority: int = 0,
    cpu: str = "1",
    namespace: str = "default",
    labels: dict[str, str] | None = None,
    start: str | None = None,
    policy: str | None = None,
    nominated: str | None = None,
    terminating_by_preemption: bool = False,
) -> dict[str, Any]:
    n = next(_seq)
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}-{n}", "labels": labels or {}},
        "spec": {
            "schedulerName": "default-scheduler",
            "priority": priority,
            "containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": cpu}}}],
        },
        "status": {"phase": "Running" if node else "Pending"},
    }
    if node:
        pod["spec"]["nodeName"] = node
        pod["status"]["startTime"] = start or f"2024-01-01T00:{n // 60 % 60:02d}:{n % 60:02d}Z"
    if policy:
        pod["spec"]["preemptionPolicy"] = policy
    if nominated:
        pod["status"]["nominatedNodeName"] = nominated
    if terminating_by_preemption:
        pod["metadata"]["deletionTimestamp"] = "2024-01-02T00:00:00Z"
        pod["status"]["conditions"] = [
            {"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler"}
        ]
    return pod


def make_pdb(name: str, match: dict[str, str], allowed: int, namespace: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"selector": {"matchLabels": match}},
        "status": {"disruptionsAllowed": allowed},
    }


PLUGINS = (
    "PrioritySort",
    "NodeUnschedulable",
    "TaintToleration",
    "NodeResourcesFit",
    "PodTopologySpread",
    "InterPodAffinity",
    "DefaultPreemption",
)


def profile(**preemption_args: int) -> dict[str, Any]:
    args = {
        **DEFAULT_PLUGIN_ARGS,
        "DefaultPreemption": {**DEFAULT_PLUGIN_ARGS["DefaultPreemption"], **preemption_args},
    }
    return {
        "schedulerName": "default-scheduler",
        "plugins": {"multiPoint": {"enabled": [{"name": n} for n in (*PLUGINS, "DefaultBinder")]}},
        "pluginConfig": [{"name": n, "args": args.get(n, {})} for n in PLUGINS],
    }


class FakeClient:
    """Records the writes preemption makes."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    async def patch(self, res: Any, name: str, patch: Any, *, namespace: str | None = None, **kw: Any) -> Any:
        self.calls.append(("patch", f"{namespace}/{name}", kw.get("subresource"), patch))
        return {}

    async def delete(self, res: Any, name: str, *, namespace: str | None = None, **kw: Any) -> Any:
        self.calls.append(("delete", f"{namespace}/{name}"))
        return {}

    def deleted(self) -> list[str]:
        return [c[1] for c in self.calls if c[0] == "delete"]


class FakeRecorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str, str]] = []

    def event(self, obj: Any, event_type: str, reason: str, message: str, **kw: Any) -> None:
        self.events.append((obj["metadata"]["name"], event_type, reason, message))


def indexer(objs: Iterable[dict[str, Any]] = ()) -> Indexer:
    ix = Indexer({"namespace": meta_namespace_index_func})
    for o in objs:
        ix.add(o)
    return ix


def framework(
    nodes: list[dict[str, Any]],
    pods: list[dict[str, Any]],
    *,
    pdbs: Iterable[dict[str, Any]] = (),
    client: Any = None,
    recorder: Any = None,
    offset: int = 0,
    **preemption_args: int,
) -> Framework:
    ctx = SchedulerContext(
        client=client if client is not None else FakeClient(),
        listers={"pods": indexer(pods), "poddisruptionbudgets": indexer(pdbs)},
        snapshot=Snapshot.from_objects([p for p in pods if p["spec"].get("nodeName")], nodes),
        recorder=recorder,
    )
    fw = Framework(profile(**preemption_args), IN_TREE, ctx)
    preemption(fw).offset_rand = lambda n: offset % n
    return fw


def preemption(fw: Framework) -> DefaultPreemption:
    pl = fw.plugin("DefaultPreemption")
    assert isinstance(pl, DefaultPreemption)
    return pl


def diagnose(fw: Framework, pod: PodInfo) -> tuple[CycleState, NodeToStatus]:
    """What the scheduling cycle hands PostFilter: the cycle state and why each node failed."""
    state = CycleState()
    nodes = fw.snapshot().node_infos()
    _, status = fw.run_pre_filter_plugins(state, pod, nodes)
    assert status is None, status
    statuses = NodeToStatus(absent=unresolvable())
    for ni in nodes:
        s = fw.run_filter_plugins_with_nominated_pods(state, pod, ni)
        assert s is not None, f"{pod.key} fits on {ni.name}: nothing to preempt"
        statuses.set(ni.name, s)
    return state, statuses


def victims_on(fw: Framework, pod: dict[str, Any], node: str) -> tuple[list[str], int, Any]:
    pi = PodInfo(pod)
    state, _ = diagnose(fw, pi)
    ni = fw.snapshot().get(node)
    assert ni is not None
    pdbs = fw.lister("poddisruptionbudgets").list()
    victims, violations, status = preemption(fw).select_victims_on_node(state.clone(), pi, ni.clone(), pdbs)
    return [v.name for v in victims], violations, status


async def post_filter(fw: Framework, pod: dict[str, Any]) -> tuple[PostFilterResult | None, Any]:
    fw.lister("pods").add(pod)  # the informer has seen the pending pod
    pi = PodInfo(pod)
    state, statuses = diagnose(fw, pi)
    return await preemption(fw).post_filter(state, pi, statuses)


# -- victims on one node ---------------------------------------------------------------------


async def test_lowest_priority_victim_is_chosen() -> None:
    pods = [
        make_pod("p10", node="n1", priority=10),
        make_pod("p20", node="n1", priority=20),
        make_pod("p30", node="n1", priority=30),
    ]
    high = make_pod("high", priority=100)
    client, recorder = FakeClient(), FakeRecorder()
    fw = framework([make_node("n1", "3")], [*pods, high], client=client, recorder=recorder)
    assert victims_on(fw, high, "n1") == (["p10"], 0, None)

    result, status = await post_filter(fw, high)
    assert status is None
    assert result == PostFilterResult(nominated_node_name="n1")
    assert client.deleted() == ["default/p10"]
    (patch,) = [c for c in client.calls if c[0] == "patch"]
    assert patch[1:3] == ("default/p10", "status")
    (cond,) = patch[3]["status"]["conditions"]
    assert cond["type"] == "DisruptionTarget" and cond["status"] == "True"
    assert cond["reason"] == "PreemptionByScheduler"
    assert cond["message"] == "default-scheduler: preempting to accommodate a higher priority pod"
    assert cond["lastTransitionTime"]
    uid = high["metadata"]["uid"]
    assert recorder.events == [("p10", "Normal", "Preempted", f"Preempted by pod {uid} on node n1")]


def test_reprieve_keeps_pods_that_need_not_go() -> None:
    pods = [
        make_pod("big10", node="n1", priority=10, cpu="2"),
        make_pod("p20", node="n1", priority=20),
        make_pod("p5", node="n1", priority=5),
        make_pod("p200", node="n1", priority=200),
    ]
    fw = framework([make_node("n1", "5")], pods)
    # all three lower-priority pods removed, then put back from the most important: p20 fits,
    # big10 does not (a victim), p5 fits again; p200 is never a candidate victim
    assert victims_on(fw, make_pod("high", priority=100, cpu="2"), "n1") == (["big10"], 0, None)
    # needing more, the victims are listed most important first
    assert victims_on(fw, make_pod("high", priority=100, cpu="4"), "n1") == (["p20", "big10", "p5"], 0, None)


def test_equal_priority_the_newest_pod_goes_first() -> None:
    pods = [
        make_pod("new", node="n1", priority=10, start="2024-05-01T00:00:00Z"),
        make_pod("old", node="n1", priority=10, start="2024-01-01T00:00:00Z"),
    ]
    fw = framework([make_node("n1", "2")], pods)
    assert victims_on(fw, make_pod("high", priority=100), "n1") == (["new"], 0, None)


def test_victims_through_pre_filter_extensions_on_cloned_state() -> None:
    pods = [
        make_pod("x", node="n1", priority=1, cpu="0", labels={"app": "x"}),
        make_pod("y", node="n1", priority=2, cpu="0", labels={"app": "y"}),
    ]
    fw = framework([make_node("n1", "8")], pods)
    high = make_pod("high", priority=100, cpu="0")
    term = {"labelSelector": {"matchLabels": {"app": "x"}}, "topologyKey": "kubernetes.io/hostname"}
    high["spec"]["affinity"] = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}
    pi = PodInfo(high)
    state, statuses = diagnose(fw, pi)
    assert statuses.get("n1").code == Code.UNSCHEDULABLE  # InterPodAffinity: anti-affinity to x
    ni = fw.snapshot().get("n1")
    assert ni is not None
    victims, _, status = preemption(fw).select_victims_on_node(state.clone(), pi, ni.clone(), [])
    assert status is None and [v.name for v in victims] == ["x"]
    # the cycle's own state and node are untouched
    assert len(ni.pods) == 2
    assert fw.run_filter_plugins_with_nominated_pods(state, pi, ni) is not None


def test_no_lower_priority_pods_no_victims() -> None:
    fw = framework([make_node("n1", "2")], [make_pod("a", node="n1", priority=100, cpu="2")])
    names, _, status = victims_on(fw, make_pod("high", priority=100), "n1")
    assert names == []
    assert status.code == Code.UNSCHEDULABLE_AND_UNRESOLVABLE
    assert status.message() == "No preemption victims found for incoming pod"


def test_pod_that_does_not_fit_even_without_victims() -> None:
    fw = framework([make_node("n1", "2")], [make_pod("a", node="n1", priority=1)])
    names, _, status = victims_on(fw, make_pod("huge", priority=100, cpu="3"), "n1")
    assert names == [] and status.code == Code.UNSCHEDULABLE
    assert status.message() == "Insufficient cpu"


# -- PodDisruptionBudgets --------------------------------------------------------------------


def test_pdb_violating_pods_are_avoided_when_possible() -> None:
    pods = [
        make_pod("guarded", node="n1", priority=10, labels={"app": "a"}),
        make_pod("free", node="n1", priority=20),
        make_pod("p30", node="n1", priority=30),
    ]
    high = make_pod("high", priority=100)
    # without a budget the lowest-priority pod goes
    assert victims_on(framework([make_node("n1")], pods), high, "n1") == (["guarded"], 0, None)
    # a budget allowing no disruption: the next pod goes instead
    fw = framework([make_node("n1")], pods, pdbs=[make_pdb("pdb", {"app": "a"}, 0)])
    assert victims_on(fw, high, "n1") == (["free"], 0, None)
    # one that allows a disruption does not protect it
    fw = framework([make_node("n1")], pods, pdbs=[make_pdb("pdb", {"app": "a"}, 1)])
    assert victims_on(fw, high, "n1") == (["guarded"], 0, None)
    # a budget in another namespace does not apply
    fw = framework([make_node("n1")], pods, pdbs=[make_pdb("pdb", {"app": "a"}, 0, namespace="other")])
    assert victims_on(fw, high, "n1") == (["guarded"], 0, None)


def test_pdb_violation_when_unavoidable_is_counted() -> None:
    pods = [
        make_pod("guarded", node="n1", priority=10, labels={"app": "a"}),
        make_pod("top", node="n1", priority=500),
    ]
    fw = framework([make_node("n1", "2")], pods, pdbs=[make_pdb("pdb", {"app": "a"}, 0)])
    assert victims_on(fw, make_pod("high", priority=100), "n1") == (["guarded"], 1, None)


def test_filter_pods_with_pdb_violation() -> None:
    pis = [PodInfo(make_pod(f"p{i}", node="n1", labels={"app": "a"})) for i in range(3)]
    unlabelled = PodInfo(make_pod("bare", node="n1"))
    pdb = make_pdb("pdb", {"app": "a"}, 1)
    violating, ok = filter_pods_with_pdb_violation([*pis, unlabelled], [pdb])
    assert [p.name for p in ok] == ["p0", "bare"] and [p.name for p in violating] == ["p1", "p2"]
    # pods the API server already counted as disrupted do not use the budget again
    pdb["status"]["disruptedPods"] = {"p0": "2024-01-01T00:00:00Z"}
    violating, ok = filter_pods_with_pdb_violation(pis, [pdb])
    assert [p.name for p in ok] == ["p0", "p1"] and [p.name for p in violating] == ["p2"]
    # an empty selector matches nothing
    empty = {**pdb, "spec": {"selector": {}}}
    assert filter_pods_with_pdb_violation(pis, [empty]) == ([], pis)


async def test_node_without_pdb_violations_is_preferred() -> None:
    pods = [
        make_pod("guarded", node="n1", priority=10, labels={"app": "a"}),
        make_pod("n1-top", node="n1", priority=500, cpu="2"),
        make_pod("free", node="n2", priority=50),
        make_pod("n2-top", node="n2", priority=500, cpu="2"),
    ]
    client = FakeClient()
    fw = framework(
        [make_node("n1"), make_node("n2")], pods, pdbs=[make_pdb("pdb", {"app": "a"}, 0)], client=client
    )
    result, status = await post_filter(fw, make_pod("high", priority=100))
    assert status is None and result is not None and result.nominated_node_name == "n2"
    assert client.deleted() == ["default/free"]


# -- choosing the node -----------------------------------------------------------------------


def _victims(*pods: tuple[int, str], pdb: int = 0) -> Victims:
    return Victims(
        [PodInfo(make_pod(f"v{i}", node="x", priority=p, start=s)) for i, (p, s) in enumerate(pods)], pdb
    )


T1, T2, T3 = "2024-01-01T00:00:00Z", "2024-02-01T00:00:00Z", "2024-03-01T00:00:00Z"


def test_pick_one_node_criteria_in_order() -> None:
    # 1. fewest PDB violations
    assert pick_one_node_for_preemption({"a": _victims((1, T1), pdb=1), "b": _victims((50, T1))}) == "b"
    # 2. lowest priority of the most important victim
    assert pick_one_node_for_preemption({"a": _victims((50, T1)), "b": _victims((40, T1), (30, T1))}) == "b"
    # 3. smallest sum of priorities, each shifted by 2^31: more victims cost more, also when
    # their priorities are negative
    assert (
        pick_one_node_for_preemption({"a": _victims((50, T1), (40, T1)), "b": _victims((50, T1), (10, T1))})
        == "b"
    )
    assert pick_one_node_for_preemption({"a": _victims((50, T1), (0, T1)), "b": _victims((50, T1))}) == "b"
    assert pick_one_node_for_preemption({"a": _victims((-5, T1), (-5, T1)), "b": _victims((-5, T1))}) == "b"
    # 4. fewest victims (equal shifted sums only happen at the ends of the int32 range)
    top, bottom = 10**9, -(2**31)
    assert (
        pick_one_node_for_preemption({"a": _victims((top, T1), (bottom, T1)), "b": _victims((top, T1))})
        == "b"
    )
    # 5. latest start among the highest-priority victims (the lower-priority ones do not count)
    assert (
        pick_one_node_for_preemption({"a": _victims((50, T1), (10, T3)), "b": _victims((50, T2), (10, T1))})
        == "b"
    )
    # 6. the first one left
    assert pick_one_node_for_preemption({"a": _victims((50, T1)), "b": _victims((50, T1))}) == "a"
    assert pick_one_node_for_preemption({}) == ""


async def test_node_with_lowest_priority_victims_is_chosen() -> None:
    pods = [make_pod("mid", node="n1", priority=50), make_pod("low", node="n2", priority=10)]
    client = FakeClient()
    fw = framework([make_node("n1", "1"), make_node("n2", "1")], pods, client=client)
    result, status = await post_filter(fw, make_pod("high", priority=100))
    assert status is None and result == PostFilterResult(nominated_node_name="n2")
    assert client.deleted() == ["default/low"]


# -- eligibility and candidates --------------------------------------------------------------


async def test_preemption_policy_never() -> None:
    client = FakeClient()
    fw = framework([make_node("n1", "1")], [make_pod("low", node="n1", priority=1)], client=client)
    result, status = await post_filter(fw, make_pod("high", priority=100, policy="Never"))
    assert result is None
    assert status.code == Code.UNSCHEDULABLE
    assert status.message() == "preemption: not eligible due to preemptionPolicy=Never."
    assert client.calls == []


async def test_not_eligible_while_a_victim_terminates_on_the_nominated_node() -> None:
    pods = [make_pod("going", node="n1", priority=1, terminating_by_preemption=True)]
    high = make_pod("high", priority=100, cpu="3", nominated="n1")
    fw = framework([make_node("n1", "3")], [*pods, high])
    result, status = await post_filter(fw, high)
    assert result is None and status.code == Code.UNSCHEDULABLE
    assert status.message() == "preemption: not eligible due to a terminating pod on the nominated node."
    # ... unless the nominated node can no longer take it at all
    pl = preemption(fw)
    pi = PodInfo(high)
    assert pl.pod_eligible_to_preempt_others(pi, unresolvable("node(s) didn't match")) == (True, "")
    # a terminating pod of higher priority, or one not preempted, does not count
    other = make_pod("going", node="n1", priority=1)
    other["metadata"]["deletionTimestamp"] = "2024-01-02T00:00:00Z"
    fw = framework([make_node("n1", "3")], [other, high])
    assert preemption(fw).pod_eligible_to_preempt_others(pi, None) == (True, "")


async def test_unresolvable_nodes_are_no_candidates() -> None:
    taint = [{"key": "dedicated", "value": "x", "effect": "NoSchedule"}]
    pods = [
        make_pod("low-on-tainted", node="n1", priority=1),
        make_pod("top", node="n2", priority=500, cpu="3"),
    ]
    client = FakeClient()
    fw = framework([make_node("n1", taints=taint), make_node("n2")], pods, client=client)
    high = make_pod("high", priority=100, cpu="3")
    _, statuses = diagnose(fw, PodInfo(high))
    assert statuses.get("n1").code == Code.UNSCHEDULABLE_AND_UNRESOLVABLE
    result, status = await post_filter(fw, high)
    # nominating "" clears a nomination the pod may have had
    assert result == PostFilterResult(nominated_node_name="")
    assert status.code == Code.UNSCHEDULABLE
    assert status.message() == (
        "preemption: 0/2 nodes are available: 1 No preemption victims found for incoming pod,"
        " 1 Preemption is not helpful for scheduling."
    )
    assert client.calls == []


async def test_no_potential_node_clears_the_pods_nomination() -> None:
    taint = [{"key": "dedicated", "value": "x", "effect": "NoSchedule"}]
    client = FakeClient()
    high = make_pod("high", priority=100, nominated="n1")
    fw = framework(
        [make_node("n1", taints=taint)], [make_pod("low", node="n1", priority=1), high], client=client
    )
    result, status = await post_filter(fw, high)
    assert result == PostFilterResult(nominated_node_name="")
    assert (
        status.message() == "preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
    )
    assert client.calls == [("patch", "default/high", "status", {"status": {"nominatedNodeName": None}})]


def test_number_of_candidates() -> None:
    fw = framework([make_node("n1")], [])
    pl = preemption(fw)
    assert pl.calculate_num_candidates(50) == 50  # at least 100, at most all
    assert pl.calculate_num_candidates(5000) == 500  # 10%
    pl.min_candidate_nodes_percentage, pl.min_candidate_nodes_absolute = 40, 1
    assert pl.calculate_num_candidates(10) == 4
    assert pl.calculate_num_candidates(2) == 1
    pl.offset_rand = lambda n: n - 1
    assert pl.get_offset_and_num_candidates(10) == (9, 4)
    with pytest.raises(ValueError, match="cannot be zero"):
        validate_args(0, 0)
    with pytest.raises(ValueError, match="not in valid range"):
        validate_args(101, 1)


def test_dry_run_starts_at_the_offset_and_stops_at_enough_candidates() -> None:
    nodes = [make_node(f"n{i}", "1") for i in range(5)]
    pods = [make_pod(f"low{i}", node=f"n{i}", priority=1) for i in range(5)]
    fw = framework(nodes, pods, minCandidateNodesPercentage=0, minCandidateNodesAbsolute=2)
    pi = PodInfo(make_pod("high", priority=100))
    state, _ = diagnose(fw, pi)
    ev = preemption(fw).evaluator
    candidates, _, errors = ev.dry_run_preemption(state, pi, fw.snapshot().node_infos(), [], 3, 2)
    assert [c.name for c in candidates] == ["n3", "n4"] and not errors
    # violating candidates come last, and the search goes on until one violates no PDB
    pods[4]["metadata"]["labels"] = pods[0]["metadata"]["labels"] = {"app": "a"}
    fw = framework(nodes, pods, pdbs=[make_pdb("pdb", {"app": "a"}, 0)])
    state, _ = diagnose(fw, pi)
    pdbs = fw.lister("poddisruptionbudgets").list()
    candidates, _, _ = preemption(fw).evaluator.dry_run_preemption(
        state, pi, fw.snapshot().node_infos(), pdbs, 4, 2
    )
    assert [(c.name, c.victims.num_pdb_violations) for c in candidates] == [("n1", 0), ("n4", 1), ("n0", 1)]


# -- preparing the chosen node ---------------------------------------------------------------


async def test_lower_priority_nominations_are_cleared_and_waiting_victims_rejected() -> None:
    waiting = make_pod("waiting", node="n1", priority=1)
    pods = [waiting, make_pod("low", node="n1", priority=2)]
    nominated_low = make_pod("nominated-low", priority=50, nominated="n1")
    nominated_top = make_pod("nominated-top", priority=500, nominated="n1", cpu="0")
    client = FakeClient()
    fw = framework([make_node("n1", "2")], [*pods, nominated_low, nominated_top], client=client)
    fw.nominator.add(PodInfo(nominated_top))
    fw.nominator.add(PodInfo(nominated_low))
    wp = WaitingPod(PodInfo(waiting), {"SomePermit": 60})
    fw.waiting_pods[waiting["metadata"]["uid"]] = wp

    result, status = await post_filter(fw, make_pod("high", priority=100, cpu="2"))
    assert status is None and result == PostFilterResult(nominated_node_name="n1")
    # the pod waiting at Permit is rejected rather than deleted
    assert wp.future.done() and wp.future.result().message() == "preempted"
    assert client.deleted() == ["default/low"]
    # only the lower-priority nominated pod loses its nomination
    assert (
        "patch",
        "default/nominated-low",
        "status",
        {"status": {"nominatedNodeName": None}},
    ) in client.calls
    assert not [c for c in client.calls if c[1] == "default/nominated-top"]


def test_update_pod_condition() -> None:
    cond = {"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler", "message": "m"}
    status: dict[str, Any] = {"conditions": [{"type": "Ready", "status": "True"}]}
    assert update_pod_condition(status, cond)
    first = status["conditions"][1]
    assert first["lastTransitionTime"]
    assert not update_pod_condition(status, cond)  # no change, transition time kept
    assert status["conditions"][1] == first
    assert update_pod_condition(status, {**cond, "message": "other"})


def test_fit_error_message() -> None:
    statuses = NodeToStatus(absent=unresolvable("Preemption is not helpful for scheduling"))
    statuses.set("a", unresolvable("No preemption victims found for incoming pod"))
    statuses.set("b", unresolvable("Insufficient cpu", "Insufficient memory"))
    assert fit_error_message(12, statuses) == (
        "0/12 nodes are available: 1 Insufficient cpu, 1 Insufficient memory, "
        "1 No preemption victims found for incoming pod, 10 Preemption is not helpful for scheduling."
    )


# -- against a real API server ---------------------------------------------------------------


@pytest.fixture
async def client(cluster: Cluster) -> AsyncIterator[RESTClient]:
    async with RESTClient.from_kubeconfig(cluster.kubeconfig, component="test-preemption") as c:
        yield c


def _api_pod(name: str, namespace: str, cpu: str, priority_class: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        # the test plays the scheduler: keep `k8py up`'s own scheduler off these pods
        "schedulerName": "test-plays-scheduler",
        "containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": cpu}}}],
    }
    if priority_class:
        spec["priorityClassName"] = priority_class
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


async def test_preemption_against_the_api_server(client: RESTClient, namespace: str) -> None:
    suffix = uuid.uuid4().hex[:8]
    node_name, pc_name = f"preempt-node-{suffix}", f"preempt-high-{suffix}"
    recorder = EventRecorder(client, component="default-scheduler")
    try:
        await client.create(
            PRIORITY_CLASSES,
            {
                "apiVersion": "scheduling.k8s.io/v1",
                "kind": "PriorityClass",
                "metadata": {"name": pc_name},
                "value": 1000,
            },
        )
        node = await client.create(NODES, {**make_node(node_name, "2"), "metadata": {"name": node_name}})
        if not (node.get("status") or {}).get("allocatable"):
            node = await client.update_status(NODES, {**node, "status": make_node(node_name, "2")["status"]})
        assert node["status"]["allocatable"]["cpu"] == "2"

        victim = await client.create(PODS, _api_pod("victim", namespace, "1500m"))
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": "victim", "namespace": namespace},
            "target": {"kind": "Node", "name": node_name},
        }
        await client.create_subresource(PODS, "victim", "binding", binding, namespace=namespace)
        victim = await client.get(PODS, "victim", namespace=namespace)
        assert victim["spec"]["nodeName"] == node_name and victim["spec"]["priority"] == 0
        preemptor = await client.create(PODS, _api_pod("preemptor", namespace, "1", pc_name))
        assert preemptor["spec"]["priority"] == 1000

        ctx = SchedulerContext(
            client=client,
            listers={"pods": indexer([victim, preemptor]), "poddisruptionbudgets": indexer()},
            snapshot=Snapshot.from_objects([victim], [node]),
            recorder=recorder,
        )
        fw = Framework(profile(), IN_TREE, ctx)
        pi = PodInfo(preemptor)
        state, statuses = diagnose(fw, pi)
        assert statuses.get(node_name).code == Code.UNSCHEDULABLE
        result, status = await fw.run_post_filter_plugins(state, pi, statuses)
        assert status.code == Code.SUCCESS, status
        assert result == PostFilterResult(nominated_node_name=node_name)

        # deleted with the default grace period: bound to a node (and without a kubelet to
        # finish it), the victim stays Terminating, with the condition set before the delete
        gone = await client.get(PODS, "victim", namespace=namespace)
        assert gone["metadata"].get("deletionTimestamp")
        assert gone["metadata"].get("deletionGracePeriodSeconds") == 30
        (cond,) = [c for c in gone["status"].get("conditions") or () if c["type"] == "DisruptionTarget"]
        assert cond["status"] == "True" and cond["reason"] == "PreemptionByScheduler"
        assert cond["message"] == "test-plays-scheduler: preempting to accommodate a higher priority pod"

        await recorder.stop()
        events = await client.list(EVENTS, namespace=namespace, field_selector="involvedObject.name=victim")
        messages = [(e["reason"], e["message"]) for e in events["items"]]
        assert (
            "Preempted",
            f"Preempted by pod {preemptor['metadata']['uid']} on node {node_name}",
        ) in messages
    finally:
        await recorder.stop()
        for name in ("victim", "preemptor"):
            try:
                await client.delete(PODS, name, namespace=namespace, grace_period_seconds=0)
            except NotFound:
                pass
        for res, name in ((NODES, node_name), (PRIORITY_CLASSES, pc_name)):
            try:
                await client.delete(res, name)
            except NotFound:
                pass
