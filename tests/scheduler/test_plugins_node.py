"""Unit tests of the node plugins, table-driven after kube-scheduler's own tests.

The cases mirror ``pkg/scheduler/framework/plugins/<name>/*_test.go`` (1.32): the same
pods, nodes, expected reasons and expected (normalized) scores. Nodes and pods are plain
dicts; NodeInfo/PodInfo/Snapshot come from the framework types, the handle is a stand-in
that only serves the snapshot.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from k8py.scheduler.framework.handle import SchedulerContext
from k8py.scheduler.framework.interface import (
    ActionType,
    ClusterEvent,
    ClusterEventWithHint,
    Code,
    CycleState,
    EventResource,
    NodeScore,
    QueueingHint,
    Status,
)
from k8py.scheduler.framework.runtime import Framework
from k8py.scheduler.framework.types import NodeInfo, PodInfo
from k8py.scheduler.plugins import helper
from k8py.scheduler.plugins.defaultbinder import DefaultBinder
from k8py.scheduler.plugins.imagelocality import ImageLocality
from k8py.scheduler.plugins.nodeaffinity import (
    NodeAffinity,
    node_selector_matches,
    pod_matches_node_selector_and_affinity,
)
from k8py.scheduler.plugins.nodename import NodeName
from k8py.scheduler.plugins.nodeports import NodePorts
from k8py.scheduler.plugins.noderesources import BalancedAllocation, Fit, fits
from k8py.scheduler.plugins.noderesources_scoring import (
    balanced_resource_scorer,
    requested_to_capacity_ratio_scorer,
)
from k8py.scheduler.plugins.nodeunschedulable import NodeUnschedulable
from k8py.scheduler.plugins.queuesort import PrioritySort
from k8py.scheduler.plugins.schedulinggates import SchedulingGates
from k8py.scheduler.plugins.tainttoleration import TaintToleration
from k8py.scheduler.snapshot import Snapshot

Obj = dict[str, Any]
MB = 1024 * 1024

# -- builders ----------------------------------------------------------------------------------


def node(
    name: str = "node1",
    *,
    alloc: dict[str, Any] | None = None,
    labels: dict[str, str] | None = None,
    taints: list[Obj] | None = None,
    unschedulable: bool = False,
    images: list[Obj] | None = None,
) -> Obj:
    spec: Obj = {}
    if taints:
        spec["taints"] = taints
    if unschedulable:
        spec["unschedulable"] = True
    status: Obj = {"allocatable": {k: str(v) for k, v in (alloc or {}).items()}}
    if images:
        status["images"] = images
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": spec,
        "status": status,
    }


_seq = iter(range(1, 1_000_000))


def pod(
    *requests: dict[str, Any],
    name: str = "",
    node_name: str = "",
    init: list[dict[str, Any]] | None = None,
    overhead: dict[str, Any] | None = None,
    tolerations: list[Obj] | None = None,
    node_selector: dict[str, str] | None = None,
    affinity: Obj | None = None,
    ports: list[str] | None = None,
    images: list[str] | None = None,
    init_images: list[str] | None = None,
    gates: list[str] | None = None,
) -> Obj:
    """A pod with one container per `requests` entry; ports as "PROTO/hostIP/port"."""
    n = next(_seq)
    containers: list[Obj] = [
        {"name": f"c{i}", "image": "pause", "resources": {"requests": {k: str(v) for k, v in r.items()}}}
        for i, r in enumerate(requests)
    ]
    if ports:
        containers.append({"name": "ports", "image": "pause", "ports": [_port(p) for p in ports]})
    if images:
        containers += [{"name": f"img{i}", "image": img} for i, img in enumerate(images)]
    spec: Obj = {"containers": containers}
    if init is not None:
        spec["initContainers"] = [
            {"name": f"i{i}", "image": "pause", "resources": {"requests": {k: str(v) for k, v in r.items()}}}
            for i, r in enumerate(init)
        ]
    if init_images:
        spec.setdefault("initContainers", []).extend(
            {"name": f"iimg{i}", "image": img} for i, img in enumerate(init_images)
        )
    if overhead:
        spec["overhead"] = {k: str(v) for k, v in overhead.items()}
    if node_name:
        spec["nodeName"] = node_name
    if tolerations is not None:
        spec["tolerations"] = tolerations
    if node_selector is not None:
        spec["nodeSelector"] = node_selector
    if affinity is not None:
        spec["affinity"] = affinity
    if gates:
        spec["schedulingGates"] = [{"name": g} for g in gates]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name or f"pod{n}", "namespace": "default", "uid": f"uid-{n}"},
        "spec": spec,
    }


def _port(text: str) -> Obj:
    proto, ip, port = text.split("/")
    return {"containerPort": int(port), "hostPort": int(port), "protocol": proto, "hostIP": ip}


def node_info(n: Obj, *pods: Obj) -> NodeInfo:
    return NodeInfo(n, [PodInfo(p) for p in pods])


class FakeHandle:
    """framework.Handle for plugins that only read the snapshot."""

    def __init__(self, snapshot: Snapshot | None = None) -> None:
        self._snapshot = snapshot or Snapshot()
        self.client = None

    def snapshot(self) -> Snapshot:
        return self._snapshot

    def lister(self, resource: str) -> Any:
        raise KeyError(resource)


def run_filter(plugin: Any, p: Obj, ni: NodeInfo, *, pre_filter: bool = True) -> Status | None:
    """PreFilter (Skip means the Filter does not run) then Filter, as the framework does."""
    state = CycleState()
    pi = PodInfo(p)
    if pre_filter and hasattr(plugin, "pre_filter"):
        _, status = plugin.pre_filter(state, pi, [ni])
        if status is not None and status.code == Code.SKIP:
            return None
        assert status is None, status
    return plugin.filter(state, pi, ni)


def run_score(plugin: Any, p: Obj, snapshot: Snapshot) -> list[int]:
    """PreScore, Score on every node, NormalizeScore: the plugin's final scores in node order."""
    state = CycleState()
    pi = PodInfo(p)
    nodes = snapshot.node_infos()
    if hasattr(plugin, "pre_score"):
        status = plugin.pre_score(state, pi, nodes)
        if status is not None and status.code == Code.SKIP:
            return [0] * len(nodes)
        assert status is None, status
    scores = []
    for ni in nodes:
        s, status = plugin.score(state, pi, ni)
        assert status is None, status
        scores.append(NodeScore(ni.name, s))
    ext = plugin.score_extensions()
    if ext is not None:
        assert ext.normalize_score(state, pi, scores) is None
    return [ns.score for ns in scores]


def reasons(status: Status | None) -> tuple[Code, tuple[str, ...]] | None:
    return None if status is None else (status.code, status.reasons)


UNRESOLVABLE = Code.UNSCHEDULABLE_AND_UNRESOLVABLE
UNSCHEDULABLE = Code.UNSCHEDULABLE


# -- taints and tolerations --------------------------------------------------------------------


def taint(key: str, value: str = "", effect: str = "NoSchedule") -> Obj:
    t = {"key": key, "effect": effect}
    if value:
        t["value"] = value
    return t


def tol(key: str = "", op: str = "", value: str = "", effect: str = "") -> Obj:
    t: Obj = {}
    if key:
        t["key"] = key
    if op:
        t["operator"] = op
    if value:
        t["value"] = value
    if effect:
        t["effect"] = effect
    return t


@pytest.mark.parametrize(
    "toleration, taint_, want",
    [
        (tol("foo", "Equal", "bar", "NoSchedule"), taint("foo", "bar"), True),
        (tol("foo", "Equal", "baz", "NoSchedule"), taint("foo", "bar"), False),
        (tol("foo", "", "bar", "NoSchedule"), taint("foo", "bar"), True),  # operator defaults to Equal
        (tol("foo", "Exists", "", "NoSchedule"), taint("foo", "bar"), True),
        (tol("foo", "Exists", "", "NoExecute"), taint("foo", "bar"), False),  # effect differs
        (tol("foo", "Equal", "bar"), taint("foo", "bar", "NoExecute"), True),  # empty effect: all effects
        (tol("", "Exists"), taint("anything", "v", "PreferNoSchedule"), True),  # empty key + Exists: all
        (tol("", "Exists", effect="NoSchedule"), taint("anything", "v", "NoExecute"), False),
        (tol("", "Equal", "v"), taint("anything", "v"), True),  # empty key: key not compared
        (tol("other", "Exists"), taint("foo", "bar"), False),
        (tol("foo", "Lt", "bar"), taint("foo", "bar"), False),  # unknown operator
        (tol("foo", "Equal"), taint("foo"), True),  # empty values equal
    ],
)
def test_tolerates(toleration: Obj, taint_: Obj, want: bool) -> None:
    assert helper.tolerates(toleration, taint_) is want
    compiled = helper.compile_tolerations([toleration])
    assert helper.compiled_tolerate(compiled, taint_) is want


def test_find_untolerated_taint() -> None:
    taints = [taint("a", "1", "PreferNoSchedule"), taint("b", "2"), taint("c", "3", "NoExecute")]
    assert helper.find_untolerated_taint(taints, [], helper.do_not_schedule_taints_filter) == taints[1]
    assert (
        helper.find_untolerated_taint(taints, [tol("b", "Exists")], helper.do_not_schedule_taints_filter)
        == (taints[2])
    )
    assert helper.find_untolerated_taint(taints, [tol("b", "Exists"), tol("c", "Equal", "3")]) == taints[0]
    assert (
        helper.find_untolerated_taint(
            taints, [tol("b", "Exists"), tol("c", "Equal", "3")], helper.do_not_schedule_taints_filter
        )
        is None
    )
    assert helper.find_untolerated_taint(None, None) is None


@pytest.mark.parametrize(
    "name, tolerations, taints, want",
    [
        (
            "a pod having no tolerations can't be scheduled onto a node with nonempty taints",
            [],
            [taint("dedicated", "user1")],
            "node(s) had untolerated taint {dedicated: user1}",
        ),
        (
            "a pod which can be scheduled on a dedicated node assigned to user1 with effect NoSchedule",
            [tol("dedicated", "Equal", "user1", "NoSchedule")],
            [taint("dedicated", "user1")],
            None,
        ),
        (
            "a pod which can't be scheduled on a dedicated node assigned to user2 with effect NoSchedule",
            [tol("dedicated", "Equal", "user2", "NoSchedule")],
            [taint("dedicated", "user1")],
            "node(s) had untolerated taint {dedicated: user1}",
        ),
        (
            "a toleration with operator Exists tolerates the taints on the node",
            [tol("foo", "Exists", effect="NoSchedule")],
            [taint("foo", "bar")],
            None,
        ),
        (
            "multiple tolerations, multiple taints, all tolerated",
            [tol("dedicated", "Equal", "user2", "NoSchedule"), tol("foo", "Exists", effect="NoSchedule")],
            [taint("dedicated", "user2"), taint("foo", "bar")],
            None,
        ),
        (
            "key and value match but the (non-empty) effect doesn't",
            [tol("foo", "Equal", "bar", "PreferNoSchedule")],
            [taint("foo", "bar")],
            "node(s) had untolerated taint {foo: bar}",
        ),
        (
            "empty toleration effect matches a NoSchedule taint",
            [tol("foo", "Equal", "bar")],
            [taint("foo", "bar")],
            None,
        ),
        (
            "an untolerated PreferNoSchedule taint does not filter",
            [tol("dedicated", "Equal", "user2", "NoSchedule")],
            [taint("dedicated", "user1", "PreferNoSchedule")],
            None,
        ),
        (
            "no toleration, PreferNoSchedule taint",
            [],
            [taint("dedicated", "user1", "PreferNoSchedule")],
            None,
        ),
        (
            "an untolerated NoExecute taint filters",
            [tol("foo", "Exists", effect="NoSchedule")],
            [taint("foo", "bar"), taint("evict", "", "NoExecute")],
            "node(s) had untolerated taint {evict: }",
        ),
        ("no taints", [], [], None),
    ],
)
def test_taint_toleration_filter(
    name: str, tolerations: list[Obj], taints: list[Obj], want: str | None
) -> None:
    pl = TaintToleration({}, FakeHandle())
    status = run_filter(pl, pod(tolerations=tolerations), node_info(node(taints=taints)))
    assert reasons(status) == (None if want is None else (UNRESOLVABLE, (want,))), name


@pytest.mark.parametrize(
    "name, tolerations, node_taints, want",
    [
        (
            "node with taints tolerated by the pod gets a higher score than one with intolerable taints",
            [tol("foo", "Equal", "bar", "PreferNoSchedule")],
            [[taint("foo", "bar", "PreferNoSchedule")], [taint("foo", "blah", "PreferNoSchedule")]],
            [100, 0],
        ),
        (
            "nodes whose taints are all tolerated get the same score however many taints they have",
            [
                tol("cpu-type", "Equal", "arm64", "PreferNoSchedule"),
                tol("disk-type", "Equal", "ssd", "PreferNoSchedule"),
            ],
            [
                [],
                [taint("cpu-type", "arm64", "PreferNoSchedule")],
                [
                    taint("cpu-type", "arm64", "PreferNoSchedule"),
                    taint("disk-type", "ssd", "PreferNoSchedule"),
                ],
            ],
            [100, 100, 100],
        ),
        (
            "the more intolerable taints a node has, the lower score it gets",
            [tol("foo", "Equal", "bar", "PreferNoSchedule")],
            [
                [],
                [taint("cpu-type", "arm64", "PreferNoSchedule")],
                [
                    taint("cpu-type", "arm64", "PreferNoSchedule"),
                    taint("disk-type", "ssd", "PreferNoSchedule"),
                ],
            ],
            [100, 50, 0],
        ),
        (
            "only PreferNoSchedule taints and tolerations count",
            [tol("cpu-type", "Equal", "arm64", "NoSchedule"), tol("disk-type", "Equal", "ssd", "NoSchedule")],
            [
                [],
                [taint("cpu-type", "arm64", "NoSchedule")],
                [
                    taint("cpu-type", "arm64", "PreferNoSchedule"),
                    taint("disk-type", "ssd", "PreferNoSchedule"),
                ],
            ],
            [100, 100, 0],
        ),
        (
            "default behaviour: lands on the node without taints",
            [tol("foo", "Equal", "bar", "NoSchedule")],
            [[], [taint("cpu-type", "arm64", "PreferNoSchedule")]],
            [100, 0],
        ),
        (
            "a toleration without effect tolerates PreferNoSchedule taints",
            [tol("cpu-type", "Exists")],
            [[taint("cpu-type", "arm64", "PreferNoSchedule")], [taint("x", "y", "PreferNoSchedule")]],
            [100, 0],
        ),
        # every node would get 100: PreScore skips the plugin (run_score reports a skip as 0s)
        ("no taints anywhere", [], [[], []], [0, 0]),
    ],
)
def test_taint_toleration_score(
    name: str, tolerations: list[Obj], node_taints: list[list[Obj]], want: list[int]
) -> None:
    snap = Snapshot.from_objects([], [node(f"node{i}", taints=t) for i, t in enumerate(node_taints)])
    pl = TaintToleration({}, FakeHandle(snap))
    assert run_score(pl, pod(tolerations=tolerations), snap) == want, name


def test_taint_toleration_hints() -> None:
    pl = TaintToleration({}, FakeHandle())
    events = pl.events_to_register()
    assert events[0].event.resource == EventResource.NODE
    assert events[0].event.action == ActionType.ADD | ActionType.UPDATE_NODE_TAINT
    assert events[1].event.resource == EventResource.UNSCHEDULED_POD
    p = pod(tolerations=[tol("foo", "Exists")])
    node_hint = events[0].hint
    assert node_hint is not None
    assert node_hint(p, None, node(taints=[taint("foo", "bar")])) == QueueingHint.QUEUE
    assert node_hint(p, None, node(taints=[taint("baz", "bar")])) == QueueingHint.SKIP
    assert node_hint(p, node(taints=[taint("baz", "bar")]), node()) == QueueingHint.QUEUE
    assert node_hint(p, node(), node(taints=[taint("foo")])) == QueueingHint.SKIP
    pod_hint = events[1].hint
    assert pod_hint is not None
    assert pod_hint(p, p, p) == QueueingHint.QUEUE
    assert pod_hint(p, pod(), pod()) == QueueingHint.SKIP


# -- NodeName, NodeUnschedulable, SchedulingGates ------------------------------------------------


@pytest.mark.parametrize(
    "pod_node, node_name, want",
    [
        ("", "foo", None),
        ("foo", "foo", None),
        ("bar", "foo", (UNRESOLVABLE, ("node(s) didn't match the requested node name",))),
    ],
)
def test_node_name(pod_node: str, node_name: str, want: Any) -> None:
    pl = NodeName({}, FakeHandle())
    assert reasons(run_filter(pl, pod(node_name=pod_node), node_info(node(node_name)))) == want
    (ev,) = pl.events_to_register()
    assert ev.event.action == ActionType.ADD and ev.hint is not None
    assert ev.hint(pod(node_name=pod_node), None, node(node_name)) == (
        QueueingHint.QUEUE if want is None else QueueingHint.SKIP
    )


@pytest.mark.parametrize(
    "tolerations, unschedulable, want",
    [
        ([], False, None),
        ([], True, (UNRESOLVABLE, ("node(s) were unschedulable",))),
        ([tol("node.kubernetes.io/unschedulable", effect="NoSchedule", op="Exists")], True, None),
        ([tol("node.kubernetes.io/unschedulable", "Exists")], True, None),
        ([tol(op="Exists")], True, None),
        (
            [tol("node.kubernetes.io/unschedulable", "Exists", effect="NoExecute")],
            True,
            (UNRESOLVABLE, ("node(s) were unschedulable",)),
        ),
    ],
)
def test_node_unschedulable(tolerations: list[Obj], unschedulable: bool, want: Any) -> None:
    pl = NodeUnschedulable({}, FakeHandle())
    status = run_filter(pl, pod(tolerations=tolerations), node_info(node(unschedulable=unschedulable)))
    assert reasons(status) == want


def test_node_unschedulable_hints() -> None:
    pl = NodeUnschedulable({}, FakeHandle())
    node_ev, pod_ev = pl.events_to_register()
    assert node_ev.event.action == ActionType.ADD | ActionType.UPDATE_NODE_TAINT
    assert pod_ev.event == ClusterEvent(EventResource.UNSCHEDULED_POD, ActionType.UPDATE_POD_TOLERATIONS)
    p = pod()
    assert node_ev.hint is not None and pod_ev.hint is not None
    assert node_ev.hint(p, None, node()) == QueueingHint.QUEUE
    assert node_ev.hint(p, None, node(unschedulable=True)) == QueueingHint.SKIP
    assert node_ev.hint(p, node(unschedulable=True), node()) == QueueingHint.QUEUE
    assert node_ev.hint(p, node(), node(labels={"a": "b"})) == QueueingHint.SKIP
    tolerant = {
        **p,
        "spec": {**p["spec"], "tolerations": [tol("node.kubernetes.io/unschedulable", "Exists")]},
    }
    assert pod_ev.hint(p, p, tolerant) == QueueingHint.QUEUE
    assert pod_ev.hint(p, tolerant, tolerant) == QueueingHint.SKIP


def test_scheduling_gates() -> None:
    pl = SchedulingGates({}, FakeHandle())
    assert pl.pre_enqueue(pod()) is None
    status = pl.pre_enqueue(pod(gates=["foo", "bar"]))
    assert reasons(status) == (UNRESOLVABLE, ("waiting for scheduling gates: [foo bar]",))
    (ev,) = pl.events_to_register()
    assert ev.event.resource == EventResource.UNSCHEDULED_POD
    assert ev.event.action == ActionType.UPDATE_POD_SCHEDULING_GATES_ELIMINATED
    p = pod(gates=["foo"])
    assert ev.hint is not None
    assert ev.hint(p, p, pod()) == QueueingHint.SKIP
    assert ev.hint(p, p, {**p, "spec": {"containers": []}}) == QueueingHint.QUEUE


# -- NodeAffinity --------------------------------------------------------------------------------


def required(*terms: Obj) -> Obj:
    return {
        "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": list(terms)}}
    }


def expr(key: str, op: str, *values: str) -> Obj:
    e: Obj = {"key": key, "operator": op}
    if values:
        e["values"] = list(values)
    return e


def term(*exprs: Obj, fields: list[Obj] | None = None) -> Obj:
    t: Obj = {}
    if exprs:
        t["matchExpressions"] = list(exprs)
    if fields:
        t["matchFields"] = fields
    return t


def name_in(*names: str) -> Obj:
    return {"key": "metadata.name", "operator": "In", "values": list(names)}


ERR_POD = (UNRESOLVABLE, ("node(s) didn't match Pod's node affinity/selector",))
ERR_ENFORCED = (UNRESOLVABLE, ("node(s) didn't match scheduler-enforced node affinity",))


@pytest.mark.parametrize(
    "name, spec, labels, node_name, want, want_names",
    [
        ("no selector", {}, {}, "node1", None, None),
        ("missing labels", {"node_selector": {"foo": "bar"}}, {}, "node1", ERR_POD, None),
        ("same labels", {"node_selector": {"foo": "bar"}}, {"foo": "bar"}, "node1", None, None),
        (
            "node labels are superset",
            {"node_selector": {"foo": "bar"}},
            {"foo": "bar", "baz": "blah"},
            "n",
            None,
            None,
        ),
        (
            "node labels are subset",
            {"node_selector": {"foo": "bar", "baz": "blah"}},
            {"foo": "bar"},
            "n",
            ERR_POD,
            None,
        ),
        (
            "In matches",
            {"affinity": required(term(expr("foo", "In", "bar", "value2")))},
            {"foo": "bar"},
            "n",
            None,
            None,
        ),
        (
            "Gt matches",
            {"affinity": required(term(expr("kernel-version", "Gt", "0204")))},
            {"kernel-version": "0206"},
            "n",
            None,
            None,
        ),
        (
            "Gt equal fails",
            {"affinity": required(term(expr("kernel-version", "Gt", "206")))},
            {"kernel-version": "0206"},
            "n",
            ERR_POD,
            None,
        ),
        (
            "Gt on a non-integer label fails",
            {"affinity": required(term(expr("v", "Gt", "1")))},
            {"v": "abc"},
            "n",
            ERR_POD,
            None,
        ),
        (
            "Gt on a missing label fails",
            {"affinity": required(term(expr("v", "Gt", "1")))},
            {},
            "n",
            ERR_POD,
            None,
        ),
        ("Lt matches", {"affinity": required(term(expr("v", "Lt", "5")))}, {"v": "3"}, "n", None, None),
        (
            "a negative Gt/Lt value is not a valid label value: the term matches nothing",
            {"affinity": required(term(expr("v", "Lt", "-1")))},
            {"v": "-2"},
            "n",
            ERR_POD,
            None,
        ),
        ("Lt fails", {"affinity": required(term(expr("v", "Lt", "5")))}, {"v": "+5"}, "n", ERR_POD, None),
        (
            "NotIn matches",
            {"affinity": required(term(expr("mem-type", "NotIn", "DDR", "DDR2")))},
            {"mem-type": "DDR3"},
            "n",
            None,
            None,
        ),
        (
            "NotIn matches a missing label",
            {"affinity": required(term(expr("mem-type", "NotIn", "DDR")))},
            {},
            "n",
            None,
            None,
        ),
        (
            "NotIn fails",
            {"affinity": required(term(expr("mem-type", "NotIn", "DDR")))},
            {"mem-type": "DDR"},
            "n",
            ERR_POD,
            None,
        ),
        (
            "Exists matches",
            {"affinity": required(term(expr("GPU", "Exists")))},
            {"GPU": "NVIDIA-GRID-K1"},
            "n",
            None,
            None,
        ),
        (
            "DoesNotExist fails",
            {"affinity": required(term(expr("GPU", "DoesNotExist")))},
            {"GPU": "x"},
            "n",
            ERR_POD,
            None,
        ),
        (
            "DoesNotExist matches",
            {"affinity": required(term(expr("GPU", "DoesNotExist")))},
            {},
            "n",
            None,
            None,
        ),
        (
            "affinity that doesn't match the node's labels",
            {"affinity": required(term(expr("foo", "In", "value1", "value2")))},
            {"foo": "bar"},
            "n",
            ERR_POD,
            None,
        ),
        (
            "nil nodeSelectorTerms match nothing",
            {
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": None}
                    }
                }
            },
            {"foo": "bar"},
            "n",
            ERR_POD,
            None,
        ),
        (
            "empty nodeSelectorTerms match nothing",
            {"affinity": required()},
            {"foo": "bar"},
            "n",
            ERR_POD,
            None,
        ),
        (
            "a term with empty matchExpressions matches nothing",
            {"affinity": required({"matchExpressions": []})},
            {"foo": "bar"},
            "n",
            ERR_POD,
            None,
        ),
        (
            "affinity without node affinity",
            {"affinity": {"nodeAffinity": {}}},
            {"foo": "bar"},
            "n",
            None,
            None,
        ),
        (
            "matchExpressions are ANDed (match)",
            {"affinity": required(term(expr("GPU", "Exists"), expr("GPU", "NotIn", "AMD", "INTER")))},
            {"GPU": "NVIDIA-GRID-K1"},
            "n",
            None,
            None,
        ),
        (
            "matchExpressions are ANDed (no match)",
            {"affinity": required(term(expr("GPU", "Exists"), expr("GPU", "In", "AMD", "INTER")))},
            {"GPU": "NVIDIA-GRID-K1"},
            "n",
            ERR_POD,
            None,
        ),
        (
            "terms are ORed",
            {
                "affinity": required(
                    term(expr("foo", "In", "bar", "value2")), term(expr("diffkey", "In", "wrong"))
                )
            },
            {"foo": "bar"},
            "n",
            None,
            None,
        ),
        (
            "affinity and nodeSelector both satisfied",
            {"node_selector": {"foo": "bar"}, "affinity": required(term(expr("foo", "Exists")))},
            {"foo": "bar"},
            "n",
            None,
            None,
        ),
        (
            "affinity satisfied but not the nodeSelector",
            {"node_selector": {"foo": "bar"}, "affinity": required(term(expr("foo", "Exists")))},
            {"foo": "barrrrrr"},
            "n",
            ERR_POD,
            None,
        ),
        (
            "an invalid value in a term matches nothing",
            {"affinity": required(term(expr("foo", "NotIn", "invalid value: ___@#$%^")))},
            {"foo": "bar"},
            "n",
            ERR_POD,
            None,
        ),
        (
            "an invalid term does not keep a valid one from matching",
            {"affinity": required(term(expr("foo", "Bogus", "x")), term(expr("foo", "In", "bar")))},
            {"foo": "bar"},
            "n",
            None,
            None,
        ),
        (
            "matchFields In matches the node",
            {"affinity": required(term(fields=[name_in("node1")]))},
            {},
            "node1",
            None,
            {"node1"},
        ),
        (
            "matchFields In does not match the node",
            {"affinity": required(term(fields=[name_in("node1")]))},
            {},
            "node2",
            ERR_POD,
            {"node1"},
        ),
        (
            "matchFields NotIn",
            {
                "affinity": required(
                    term(fields=[{"key": "metadata.name", "operator": "NotIn", "values": ["node1"]}])
                )
            },
            {},
            "node1",
            ERR_POD,
            None,
        ),
        (
            "matchFields with two values is invalid",
            {
                "affinity": required(
                    term(fields=[{"key": "metadata.name", "operator": "NotIn", "values": ["a", "b"]}])
                )
            },
            {},
            "node1",
            ERR_POD,
            None,
        ),
        (
            "two terms: matchFields does not match, matchExpressions does",
            {"affinity": required(term(fields=[name_in("node1")]), term(expr("foo", "In", "bar")))},
            {"foo": "bar"},
            "node2",
            None,
            None,
        ),
        (
            "one term: matchFields does not match, matchExpressions does",
            {"affinity": required(term(expr("foo", "In", "bar"), fields=[name_in("node1")]))},
            {"foo": "bar"},
            "node2",
            ERR_POD,
            {"node1"},
        ),
        (
            "one term: both matchFields and matchExpressions match",
            {"affinity": required(term(expr("foo", "In", "bar"), fields=[name_in("node1")]))},
            {"foo": "bar"},
            "node1",
            None,
            {"node1"},
        ),
        (
            "two terms: neither matches",
            {
                "affinity": required(
                    term(fields=[name_in("node1")]), term(expr("foo", "In", "not-match-to-bar"))
                )
            },
            {"foo": "bar"},
            "node2",
            ERR_POD,
            None,
        ),
        (
            "two terms of node name affinity",
            {"affinity": required(term(fields=[name_in("node1")]), term(fields=[name_in("node2")]))},
            {},
            "node2",
            None,
            {"node1", "node2"},
        ),
        (
            "node name requirements within a term are intersected",
            {"affinity": required(term(fields=[name_in("node2"), name_in("node2")]))},
            {},
            "node2",
            None,
            {"node2"},
        ),
        (
            # PreFilter narrows to both names, but a matchFields requirement takes exactly one value
            "a matchFields requirement with two values narrows the nodes but matches none",
            {"affinity": required(term(fields=[name_in("node1", "node2")]))},
            {},
            "node2",
            ERR_POD,
            {"node1", "node2"},
        ),
    ],
)
def test_node_affinity_filter(
    name: str,
    spec: dict[str, Any],
    labels: dict[str, str],
    node_name: str,
    want: Any,
    want_names: set[str] | None,
) -> None:
    pl = NodeAffinity({}, FakeHandle())
    p = pod(**spec)
    ni = node_info(node(node_name, labels=labels))
    assert reasons(run_filter(pl, p, ni)) == want, name
    # Filter falls back to computing the affinity when PreFilter did not run
    assert reasons(run_filter(pl, p, ni, pre_filter=False)) == want, name
    result, status = pl.pre_filter(CycleState(), PodInfo(p), [ni])
    assert (None if result is None else result.node_names) == want_names, name
    # the shared helpers answer the same
    assert pod_matches_node_selector_and_affinity(p, ni.node) is (want is None), name


def test_node_affinity_pre_filter() -> None:
    pl = NodeAffinity({}, FakeHandle())
    # nothing to check: Skip
    _, status = pl.pre_filter(CycleState(), PodInfo(pod()), [])
    assert status is not None and status.code == Code.SKIP
    # conflicting node names within one term
    p = pod(affinity=required(term(fields=[name_in("node1"), name_in("node2")])))
    result, status = pl.pre_filter(CycleState(), PodInfo(p), [])
    assert result is None and reasons(status) == (UNRESOLVABLE, ("pod affinity terms conflict",))
    # addedAffinity alone is enough not to skip
    pl = NodeAffinity(_added_required(term(expr("zone", "In", "foo"))), FakeHandle())
    _, status = pl.pre_filter(CycleState(), PodInfo(pod()), [])
    assert status is None


def _added_required(*terms: Obj) -> dict[str, Any]:
    return {
        "addedAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": list(terms)}
        }
    }


@pytest.mark.parametrize(
    "name, labels, want",
    [
        ("matches added affinity and the pod's node affinity", {"zone": "foo", "foo": "bar"}, None),
        ("matches added affinity but not the pod's node affinity", {"zone": "foo"}, ERR_POD),
        ("doesn't match added affinity", {"zone": "bar", "foo": "bar"}, ERR_ENFORCED),
    ],
)
def test_node_affinity_added_affinity(name: str, labels: dict[str, str], want: Any) -> None:
    pl = NodeAffinity(_added_required(term(expr("zone", "In", "foo"))), FakeHandle())
    p = pod(affinity=required(term(expr("foo", "In", "bar"))))
    assert reasons(run_filter(pl, p, node_info(node(labels=labels)))) == want, name


def test_node_affinity_invalid_added_affinity() -> None:
    with pytest.raises(ValueError, match="parsing addedAffinity"):
        NodeAffinity(_added_required(term(expr("zone", "Bogus", "foo"))), FakeHandle())


def preferred(*weighted: tuple[int, Obj]) -> Obj:
    return {
        "nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": w, "preference": t} for w, t in weighted
            ]
        }
    }


AFFINITY1 = preferred((2, term(expr("foo", "In", "bar"))))
AFFINITY2 = preferred(
    (2, term(expr("foo", "In", "bar"))),
    (4, term(expr("key", "In", "value"))),
    (5, term(expr("foo", "In", "bar"), expr("key", "In", "value"), expr("az", "In", "az1"))),
)
LABEL1 = {"foo": "bar"}
LABEL2 = {"key": "value"}
LABEL3 = {"az": "az1"}
LABEL4 = {"abc": "az11", "def": "az22"}
LABEL5 = {"foo": "bar", "key": "value", "az": "az1"}


@pytest.mark.parametrize(
    "name, affinity, labels, args, want",
    [
        ("all nodes score the same without node affinity", None, [LABEL1, LABEL2, LABEL3], {}, [0, 0, 0]),
        ("no node matches the preferred terms", AFFINITY1, [LABEL4, LABEL2, LABEL3], {}, [0, 0, 0]),
        ("only node1 matches", AFFINITY1, [LABEL1, LABEL2, LABEL3], {}, [100, 0, 0]),
        (
            "all nodes match, with different priorities",
            AFFINITY2,
            [LABEL1, LABEL5, LABEL2],
            {},
            [18, 100, 36],
        ),
        (
            "added affinity",
            None,
            [LABEL1, LABEL2],
            {"addedAffinity": preferred((5, term(expr("foo", "In", "bar"))))["nodeAffinity"]},
            [100, 0],
        ),
        (
            "added affinity and the pod's own",
            AFFINITY1,
            [LABEL1, LABEL2, LABEL5],
            {"addedAffinity": preferred((3, term(expr("key", "In", "value"))))["nodeAffinity"]},
            [40, 60, 100],
        ),
        (
            "terms with weight 0 or an empty preference are ignored",
            preferred((0, term(expr("foo", "In", "bar"))), (3, {}), (1, term(expr("key", "Exists")))),
            [LABEL1, LABEL2],
            {},
            [0, 100],
        ),
    ],
)
def test_node_affinity_score(
    name: str, affinity: Obj | None, labels: list[dict[str, str]], args: dict[str, Any], want: list[int]
) -> None:
    snap = Snapshot.from_objects([], [node(f"node{i}", labels=lab) for i, lab in enumerate(labels)])
    pl = NodeAffinity(args, FakeHandle(snap))
    assert run_score(pl, pod(affinity=affinity), snap) == want, name


def test_node_affinity_pre_score() -> None:
    pl = NodeAffinity({}, FakeHandle())
    status = pl.pre_score(CycleState(), PodInfo(pod()), [])
    assert status is not None and status.code == Code.SKIP
    bad = pod(affinity=preferred((1, term(expr("foo", "Bogus", "x")))))
    status = pl.pre_score(CycleState(), PodInfo(bad), [])
    assert status is not None and status.code == Code.ERROR


def test_node_affinity_hint() -> None:
    pl = NodeAffinity({}, FakeHandle())
    (ev,) = pl.events_to_register()
    assert ev.event.action == ActionType.ADD | ActionType.UPDATE_NODE_LABEL
    hint = ev.hint
    assert hint is not None
    p = pod(node_selector={"foo": "bar"})
    assert hint(p, None, node(labels={"foo": "bar"})) == QueueingHint.QUEUE
    assert hint(p, None, node(labels={"foo": "baz"})) == QueueingHint.SKIP
    assert hint(p, node(), node(labels={"foo": "bar"})) == QueueingHint.QUEUE
    assert hint(p, node(labels={"foo": "bar"}), node(labels={"foo": "bar", "x": "y"})) == QueueingHint.SKIP


def test_node_selector_matches() -> None:
    n = node("node1", labels={"zone": "a", "size": "10"})
    assert node_selector_matches(n, [term(expr("zone", "In", "a"))])
    assert not node_selector_matches(n, [term(expr("zone", "In", "b"))])
    assert node_selector_matches(n, [term(expr("zone", "In", "b")), term(expr("size", "Gt", "9"))])
    assert not node_selector_matches(n, [term(expr("size", "Lt", "10"))])
    assert node_selector_matches(n, [term(fields=[name_in("node1")])])
    assert not node_selector_matches(n, [term(fields=[name_in("node2")])])
    assert not node_selector_matches(n, [])
    assert not node_selector_matches(n, [{}])
    assert not node_selector_matches(n, None)


# -- NodePorts -----------------------------------------------------------------------------------

ERR_PORTS = (UNSCHEDULABLE, ("node(s) didn't have free ports for the requested pod ports",))


@pytest.mark.parametrize(
    "name, want_ports, used_ports, want",
    [
        ("nothing running", [], [], None),
        ("other port", ["UDP/127.0.0.1/8080"], ["UDP/127.0.0.1/9090"], None),
        ("same udp port", ["UDP/127.0.0.1/8080"], ["UDP/127.0.0.1/8080"], ERR_PORTS),
        ("same tcp port", ["TCP/127.0.0.1/8080"], ["TCP/127.0.0.1/8080"], ERR_PORTS),
        ("different host ip", ["TCP/127.0.0.1/8080"], ["TCP/127.0.0.2/8080"], None),
        ("different protocol", ["UDP/127.0.0.1/8080"], ["TCP/127.0.0.1/8080"], None),
        (
            "second udp port conflict",
            ["UDP/127.0.0.1/8000", "UDP/127.0.0.1/8080"],
            ["UDP/127.0.0.1/8080"],
            ERR_PORTS,
        ),
        (
            "first tcp port conflict",
            ["TCP/127.0.0.1/8001", "UDP/127.0.0.1/8080"],
            ["TCP/127.0.0.1/8001", "UDP/127.0.0.1/8081"],
            ERR_PORTS,
        ),
        (
            "first tcp port conflict due to 0.0.0.0 hostIP",
            ["TCP/0.0.0.0/8001"],
            ["TCP/127.0.0.1/8001"],
            ERR_PORTS,
        ),
        (
            "TCP hostPort conflict due to 0.0.0.0 hostIP",
            ["TCP/10.0.10.10/8001", "TCP/0.0.0.0/8001"],
            ["TCP/127.0.0.1/8001"],
            ERR_PORTS,
        ),
        (
            "second tcp port conflict to 0.0.0.0 hostIP",
            ["TCP/127.0.0.1/8001"],
            ["TCP/0.0.0.0/8001"],
            ERR_PORTS,
        ),
        ("second different protocol", ["UDP/127.0.0.1/8001"], ["TCP/0.0.0.0/8001"], None),
        (
            "UDP hostPort conflict due to 0.0.0.0 hostIP",
            ["UDP/127.0.0.1/8001"],
            ["TCP/0.0.0.0/8001", "UDP/0.0.0.0/8001"],
            ERR_PORTS,
        ),
        ("empty hostIP means 0.0.0.0", ["TCP//8001"], ["TCP/127.0.0.1/8001"], ERR_PORTS),
    ],
)
def test_node_ports(name: str, want_ports: list[str], used_ports: list[str], want: Any) -> None:
    pl = NodePorts({}, FakeHandle())
    existing = [pod(ports=used_ports, node_name="node1")] if used_ports else []
    status = run_filter(pl, pod(ports=want_ports), node_info(node(), *existing))
    assert reasons(status) == want, name


def test_node_ports_sidecars() -> None:
    """Sidecars (restartable init containers) hold their host ports; plain init containers do not."""
    sidecar = {"name": "s", "image": "x", "restartPolicy": "Always", "ports": [_port("TCP/0.0.0.0/9000")]}
    plain = {"name": "i", "image": "x", "ports": [_port("TCP/0.0.0.0/9001")]}
    existing = pod(node_name="node1")
    existing["spec"]["initContainers"] = [sidecar, plain]
    ni = node_info(node(), existing)
    pl = NodePorts({}, FakeHandle())
    assert reasons(run_filter(pl, pod(ports=["TCP/127.0.0.1/9000"]), ni)) == ERR_PORTS
    assert run_filter(pl, pod(ports=["TCP/127.0.0.1/9001"]), ni) is None
    incoming = pod()
    incoming["spec"]["initContainers"] = [sidecar]
    assert reasons(run_filter(pl, incoming, ni)) == ERR_PORTS


def test_node_ports_pre_filter_skip_and_hint() -> None:
    pl = NodePorts({}, FakeHandle())
    _, status = pl.pre_filter(CycleState(), PodInfo(pod()), [])
    assert status is not None and status.code == Code.SKIP
    delete_ev, node_ev = pl.events_to_register()
    assert delete_ev.event.action == ActionType.DELETE and node_ev.event.action == ActionType.ADD
    assert node_ev.hint is None and delete_ev.hint is not None
    p = pod(ports=["TCP/0.0.0.0/80"])
    assert delete_ev.hint(p, pod(ports=["TCP/127.0.0.1/80"], node_name="n"), None) == QueueingHint.QUEUE
    assert delete_ev.hint(p, pod(ports=["TCP/127.0.0.1/81"], node_name="n"), None) == QueueingHint.SKIP
    assert delete_ev.hint(p, pod(ports=["TCP/127.0.0.1/80"]), None) == QueueingHint.SKIP  # never scheduled
    assert delete_ev.hint(p, pod(node_name="n"), None) == QueueingHint.SKIP


# -- NodeResourcesFit: Filter --------------------------------------------------------------------

EXT_A = "example.com/aaa"
EXT_B = "example.com/bbb"
K8S_A = "kubernetes.io/something"
K8S_B = "subdomain.kubernetes.io/something"
HUGE_A = "hugepages-2Mi"


def res(cpu: int = 0, mem: int = 0, **scalars: int) -> dict[str, Any]:
    """A container's requests: millicores, bytes, and scalar resources by keyword (a__b -> a/b)."""
    out: dict[str, Any] = {"cpu": f"{cpu}m", "memory": str(mem)}
    for k, v in scalars.items():
        out[k.replace("__", "/").replace("_", "-")] = str(v)
    return out


def fit_node(*existing: dict[str, Any], pods: int = 32) -> NodeInfo:
    """makeAllocatableResources(10, 20, pods, 5, 20, 5): 10m cpu, 20 bytes memory, 5 example.com/aaa,
    20 bytes ephemeral storage, 5 hugepages-2Mi; `existing` is one pod per requests dict."""
    n = node(
        alloc={"cpu": "10m", "memory": 20, "pods": pods, EXT_A: 5, "ephemeral-storage": 20, HUGE_A: 5},
    )
    return node_info(n, *(pod(r, node_name="node1") for r in existing))


def ins(*names: str) -> tuple[Code, tuple[str, ...]]:
    return (UNSCHEDULABLE, tuple(n if n == "Too many pods" else f"Insufficient {n}" for n in names))


@pytest.mark.parametrize(
    "name, incoming, existing, args, want",
    [
        ("no resources requested always fits", pod(), res(10, 20), {}, None),
        ("too many resources fails", pod(res(1, 1)), res(10, 20), {}, ins("cpu", "memory")),
        (
            "too many resources fails due to init container cpu",
            pod(res(1, 1), init=[res(3, 1)]),
            res(8, 19),
            {},
            ins("cpu"),
        ),
        (
            "too many resources fails due to highest init container cpu",
            pod(res(1, 1), init=[res(3, 1), res(2, 1)]),
            res(8, 19),
            {},
            ins("cpu"),
        ),
        (
            "too many resources fails due to init container memory",
            pod(res(1, 1), init=[res(1, 3)]),
            res(9, 19),
            {},
            ins("memory"),
        ),
        (
            "init container fits because it's the max, not sum, of containers and init containers",
            pod(res(1, 1), init=[res(1, 1), res(1, 1)]),
            res(9, 19),
            {},
            None,
        ),
        ("both resources fit", pod(res(1, 1)), res(5, 5), {}, None),
        ("one resource memory fits", pod(res(2, 1)), res(9, 5), {}, ins("cpu")),
        ("one resource cpu fits", pod(res(1, 2)), res(5, 19), {}, ins("memory")),
        ("equal edge case", pod(res(5, 1)), res(5, 19), {}, None),
        ("equal edge case for init container", pod(res(4, 1), init=[res(5, 1)]), res(5, 19), {}, None),
        ("extended resource fits", pod(res(**{"example.com__aaa": 1})), res(), {}, None),
        (
            "extended resource fits for init container",
            pod(res(), init=[res(**{"example.com__aaa": 1})]),
            res(),
            {},
            None,
        ),
        (
            "extended resource capacity enforced",
            pod(res(1, 1, **{"example.com__aaa": 10})),
            res(0, 0, **{"example.com__aaa": 0}),
            {},
            ins(EXT_A),
        ),
        (
            "extended resource allocatable enforced",
            pod(res(1, 1, **{"example.com__aaa": 1})),
            res(0, 0, **{"example.com__aaa": 5}),
            {},
            ins(EXT_A),
        ),
        (
            "extended resource allocatable enforced for multiple containers",
            pod(res(1, 1, **{"example.com__aaa": 3}), res(1, 1, **{"example.com__aaa": 3})),
            res(0, 0, **{"example.com__aaa": 2}),
            {},
            ins(EXT_A),
        ),
        (
            "extended resource allocatable admits multiple init containers",
            pod(res(), init=[res(1, 1, **{"example.com__aaa": 3}), res(1, 1, **{"example.com__aaa": 3})]),
            res(0, 0, **{"example.com__aaa": 2}),
            {},
            None,
        ),
        (
            "extended resource allocatable enforced for unknown resource",
            pod(res(1, 1, **{"example.com__bbb": 1})),
            res(),
            {},
            ins(EXT_B),
        ),
        (
            "kubernetes.io resource capacity enforced",
            pod(res(1, 1, **{"kubernetes.io__something": 10})),
            res(),
            {},
            ins(K8S_A),
        ),
        (
            "kubernetes.io resource capacity enforced for init container",
            pod(res(), init=[res(1, 1, **{"subdomain.kubernetes.io__something": 10})]),
            res(),
            {},
            ins(K8S_B),
        ),
        (
            "hugepages resource capacity enforced",
            pod(res(1, 1, hugepages_2Mi=10)),
            res(hugepages_2Mi=0),
            {},
            ins(HUGE_A),
        ),
        (
            "hugepages resource allocatable enforced for multiple containers",
            pod(res(1, 1, hugepages_2Mi=3), res(1, 1, hugepages_2Mi=3)),
            res(hugepages_2Mi=2),
            {},
            ins(HUGE_A),
        ),
        (
            "skip checking ignored extended resource",
            pod(res(1, 1, **{"example.com__bbb": 1})),
            res(),
            {"ignoredResources": [EXT_B]},
            None,
        ),
        (
            "resources + pod overhead fits",
            pod(res(1, 1), overhead={"cpu": "3m", "memory": "13"}),
            res(5, 5),
            {},
            None,
        ),
        (
            "requests + overhead does not fit for memory",
            pod(res(1, 1), overhead={"cpu": "1m", "memory": "15"}),
            res(5, 5),
            {},
            ins("memory"),
        ),
        (
            "skip checking ignored extended resource via resource groups",
            pod(res(1, 1, **{"example.com__bbb": 1, "kubernetes.io__something": 1})),
            res(),
            {"ignoredResourceGroups": ["example.com"]},
            ins(K8S_A),
        ),
        (
            "skip checking extended resource request with quantity zero",
            pod(res(1, 1, **{"example.com__aaa": 0})),
            res(0, 0, **{"example.com__aaa": 6}),
            {},
            None,
        ),
        (
            "storage ephemeral local storage request exceeds allocatable",
            pod({"ephemeral-storage": 25}),
            res(2, 2),
            {},
            ins("ephemeral-storage"),
        ),
        (
            "ephemeral local storage is sufficient",
            pod({"ephemeral-storage": 10}),
            {**res(2, 2), "ephemeral-storage": "10"},
            {},
            None,
        ),
        (
            "cpu, memory, storage and extended resources all insufficient, in upstream's order",
            pod(res(11, 21, **{"example.com__aaa": 6}) | {"ephemeral-storage": "21"}),
            res(),
            {},
            ins("cpu", "memory", "ephemeral-storage", EXT_A),
        ),
    ],
)
def test_fit_filter(
    name: str, incoming: Obj, existing: dict[str, Any], args: dict[str, Any], want: Any
) -> None:
    pl = Fit(args, FakeHandle())
    ni = fit_node(existing)
    assert reasons(run_filter(pl, incoming, ni)) == want, name
    if not args:
        assert [i.reason for i in fits(incoming, ni)] == ([] if want is None else list(want[1])), name


@pytest.mark.parametrize(
    "name, incoming, existing",
    [
        ("even without specified resources, there's no space for an additional pod", pod(), res(10, 20)),
        ("even if both resources fit, there's no space for an additional pod", pod(res(1, 1)), res(5, 5)),
        ("even for the equal edge case", pod(res(5, 1)), res(5, 19)),
        ("even for the equal edge case due to init container", pod(res(5, 1), init=[res(5, 1)]), res(5, 19)),
    ],
)
def test_fit_too_many_pods(name: str, incoming: Obj, existing: dict[str, Any]) -> None:
    pl = Fit({}, FakeHandle())
    n = node(alloc={"cpu": "10m", "memory": 20, "pods": 1})
    ni = node_info(n, pod(existing, node_name="node1"))
    assert reasons(run_filter(pl, incoming, ni)) == ins("Too many pods"), name


def test_fit_too_many_pods_and_insufficient() -> None:
    pl = Fit({}, FakeHandle())
    n = node(alloc={"cpu": "10m", "memory": 20, "pods": 1})
    ni = node_info(n, pod(res(10, 20), node_name="node1"))
    assert reasons(run_filter(pl, pod(res(1, 1)), ni)) == ins("Too many pods", "cpu", "memory")


def test_fit_filter_without_pre_filter() -> None:
    pl = Fit({}, FakeHandle())
    status = run_filter(pl, pod(), fit_node(), pre_filter=False)
    assert status is not None and status.code == Code.ERROR
    assert status.message() == 'error reading "PreFilterNodeResourcesFit" from cycleState: not found'


def test_fit_sidecar_requests() -> None:
    """Sidecars keep running: their requests add to the containers'."""
    pl = Fit({}, FakeHandle())
    p = pod(res(3, 1), init=[res(3, 1)])
    p["spec"]["initContainers"][0]["restartPolicy"] = "Always"
    assert reasons(run_filter(pl, p, fit_node(res(5, 1)))) == ins("cpu")
    assert run_filter(pl, p, fit_node(res(4, 1))) is None


def test_fit_invalid_args() -> None:
    with pytest.raises(ValueError, match="scoringStrategy.type"):
        Fit({"scoringStrategy": {"type": "Bogus"}}, FakeHandle())
    with pytest.raises(ValueError, match=r"resources\[0\].weight"):
        Fit(
            {"scoringStrategy": {"type": "LeastAllocated", "resources": [{"name": "cpu", "weight": 0}]}},
            FakeHandle(),
        )
    with pytest.raises(ValueError, match="shape"):
        Fit(
            {
                "scoringStrategy": {
                    "type": "RequestedToCapacityRatio",
                    "resources": [{"name": "cpu", "weight": 1}],
                }
            },
            FakeHandle(),
        )


def test_fit_hints() -> None:
    pl = Fit({}, FakeHandle())
    pod_ev, node_ev = pl.events_to_register()
    assert pod_ev.event.resource == EventResource.POD
    assert pod_ev.event.action == ActionType.DELETE | ActionType.UPDATE_POD_SCALE_DOWN
    assert node_ev.event.action == ActionType.ADD | ActionType.UPDATE_NODE_ALLOCATABLE
    assert pod_ev.hint is not None and node_ev.hint is not None
    p = pod(res(1000, 1000))
    big = node(alloc={"cpu": 2, "memory": 2000, "pods": 10})
    small = node(alloc={"cpu": "500m", "memory": 2000, "pods": 10})
    assert node_ev.hint(p, None, big) == QueueingHint.QUEUE
    assert node_ev.hint(p, None, small) == QueueingHint.SKIP
    assert node_ev.hint(p, small, big) == QueueingHint.QUEUE
    assert node_ev.hint(p, big, big) == QueueingHint.SKIP  # fits, but nothing grew
    assert pod_ev.hint(p, pod(res(1, 1), node_name="n"), None) == QueueingHint.QUEUE
    assert pod_ev.hint(p, pod(res(1, 1)), None) == QueueingHint.SKIP  # unscheduled pod deleted
    other_before, other_after = pod(res(500, 10), node_name="n"), pod(res(100, 10), node_name="n")
    other_after["metadata"]["uid"] = other_before["metadata"]["uid"]
    assert pod_ev.hint(p, other_before, other_after) == QueueingHint.QUEUE
    assert pod_ev.hint(p, other_after, other_after) == QueueingHint.SKIP


# -- NodeResourcesFit: Score ---------------------------------------------------------------------


def cap(cpu: str | int, mem: str | int, **scalars: Any) -> dict[str, Any]:
    out = {"cpu": cpu, "memory": mem, "pods": 110}
    out.update({k.replace("__", "/"): v for k, v in scalars.items()})
    return out


def cores(cpu: int | str = 0, mem: int | str = 0, **scalars: Any) -> dict[str, Any]:
    """Requests as upstream's st.MakePod().Req: cpu in cores."""
    out = {"cpu": str(cpu), "memory": str(mem)}
    out.update({k.replace("__", "/"): str(v) for k, v in scalars.items()})
    return out


def scored(
    plugin_cls: type, args: dict[str, Any], incoming: Obj, nodes: list[Obj], existing: list[Obj]
) -> list[int]:
    snap = Snapshot.from_objects(existing, nodes)
    pl = plugin_cls(args, FakeHandle(snap))
    return run_score(pl, incoming, snap)


def _strategy(
    kind: str, resources: list[dict[str, Any]] | None = None, shape: list[tuple[int, int]] | None = None
) -> dict[str, Any]:
    s: dict[str, Any] = {
        "type": kind,
        "resources": resources or [{"name": "cpu", "weight": 1}, {"name": "memory", "weight": 1}],
    }
    if shape is not None:
        s["requestedToCapacityRatio"] = {"shape": [{"utilization": u, "score": sc} for u, sc in shape]}
    return {"scoringStrategy": s}


EXTENDED = "intel.com/foo"
EXT_RESOURCES = [
    {"name": "cpu", "weight": 1},
    {"name": "memory", "weight": 1},
    {"name": EXTENDED, "weight": 1},
]
N4_10 = [node("node1", alloc=cap(4000, 10000)), node("node2", alloc=cap(4000, 10000))]
N4_6 = [node("node1", alloc=cap(4000, 10000)), node("node2", alloc=cap(6000, 10000))]
N10_20 = [node("node1", alloc=cap(10000, 20000)), node("node2", alloc=cap(10000, 20000))]
N10_20_50 = [node("node1", alloc=cap(10000, 20000)), node("node2", alloc=cap(10000, 50000))]
REQ_3_5 = pod(cores(1000, 2000), cores(2000, 3000))


def on(node_name: str, *reqs: dict[str, Any]) -> Obj:
    return pod(*reqs, node_name=node_name)


@pytest.mark.parametrize(
    "name, args, incoming, nodes, existing, want",
    [
        # LeastAllocated (least_allocated_test.go)
        ("least: nothing scheduled, nothing requested", {}, pod(), N4_10, [], [100, 100]),
        ("least: resources requested, differently sized nodes", {}, REQ_3_5, N4_6, [], [37, 50]),
        (
            "least: no resources requested, pods scheduled",
            {},
            pod(),
            N4_10,
            [on("node1"), on("node1"), on("node2"), on("node2")],
            [100, 100],
        ),
        (
            "least: no resources requested, pods scheduled with resources",
            {},
            pod(),
            N10_20,
            [
                on("node1", cores(3000, 0)),
                on("node1", cores(3000, 0)),
                on("node2", cores(3000, 0)),
                on("node2", cores(3000, 5000)),
            ],
            [70, 57],
        ),
        (
            "least: resources requested, pods scheduled with resources",
            {},
            REQ_3_5,
            N10_20,
            [on("node1", cores(3000, 0)), on("node2", cores(3000, 5000))],
            [57, 45],
        ),
        (
            "least: resources requested, pods scheduled with resources, differently sized nodes",
            {},
            REQ_3_5,
            N10_20_50,
            [on("node1", cores(3000, 0)), on("node2", cores(3000, 5000))],
            [57, 60],
        ),
        (
            "least: requested resources exceed node capacity",
            {},
            pod(cores(3000, 0)),
            N4_10,
            [on("node1", cores(3000, 0)), on("node2", cores(3000, 5000))],
            [50, 25],
        ),
        (
            "least: zero node resources",
            {},
            pod(),
            [node("node1"), node("node2")],
            [on("node1", cores(3000, 0)), on("node2", cores(3000, 5000))],
            [0, 0],
        ),
        (
            "least: different weights on cpu and memory",
            _strategy("LeastAllocated", [{"name": "memory", "weight": 2}, {"name": "cpu", "weight": 1}]),
            REQ_3_5,
            N4_6,
            [],
            [41, 50],
        ),
        (
            "least: bypass an extended resource the pod does not request",
            _strategy("LeastAllocated", EXT_RESOURCES),
            REQ_3_5,
            [
                node("node1", alloc=cap(6000, 10000)),
                node("node2", alloc=cap(6000, 10000, **{"intel.com__foo": 4})),
            ],
            [],
            [50, 50],
        ),
        (
            "least: honor an extended resource the pod requests",
            _strategy("LeastAllocated", EXT_RESOURCES),
            pod(cores(1000, 2000), cores(2000, 3000, **{"intel.com__foo": 2})),
            [
                node("node1", alloc=cap(6000, 10000, **{"intel.com__foo": 4})),
                node("node2", alloc=cap(6000, 10000, **{"intel.com__foo": 10})),
            ],
            [],
            [50, 60],
        ),
        (
            "least: a pod without containers requests nothing, one with containers the non-zero defaults",
            {},
            pod({}),
            [node("node1", alloc=cap("1", str(400 * MB)))],
            [],
            [(90 + 50) // 2],
        ),
        # MostAllocated (most_allocated_test.go)
        ("most: nothing scheduled, nothing requested", _strategy("MostAllocated"), pod(), N4_10, [], [0, 0]),
        (
            "most: resources requested, differently sized nodes",
            _strategy("MostAllocated"),
            REQ_3_5,
            N4_6,
            [],
            [62, 50],
        ),
        (
            "most: resources requested, pods scheduled with resources",
            _strategy("MostAllocated"),
            REQ_3_5,
            N10_20,
            [on("node1", cores(3000, 0)), on("node2", cores(3000, 5000))],
            [42, 55],
        ),
        (
            "most: requested resources above capacity count as full",
            _strategy("MostAllocated"),
            pod(cores(5000, 6000)),
            N4_10,
            [on("node2", cores(0, 5000))],
            [80, 100],
        ),
        (
            "most: different weights",
            _strategy("MostAllocated", [{"name": "memory", "weight": 2}, {"name": "cpu", "weight": 1}]),
            REQ_3_5,
            N4_6,
            [],
            [(75 + 50 * 2) // 3, 50],
        ),
        (
            "most: honor an extended resource the pod requests",
            _strategy("MostAllocated", EXT_RESOURCES),
            pod(cores(1000, 2000), cores(2000, 3000, **{"intel.com__foo": 2})),
            [
                node("node1", alloc=cap(6000, 10000, **{"intel.com__foo": 4})),
                node("node2", alloc=cap(6000, 10000, **{"intel.com__foo": 10})),
            ],
            [],
            [50, (50 + 50 + 20) // 3],
        ),
        # RequestedToCapacityRatio (requested_to_capacity_ratio_test.go)
        (
            "ratio: nothing scheduled, nothing requested",
            _strategy("RequestedToCapacityRatio", shape=[(0, 10), (100, 0)]),
            pod(),
            N4_10,
            [],
            [100, 100],
        ),
        (
            "ratio: nothing scheduled, resources requested, differently sized nodes",
            _strategy("RequestedToCapacityRatio", shape=[(0, 10), (100, 0)]),
            REQ_3_5,
            N4_6,
            [],
            [38, 50],
        ),
        (
            "ratio: no resources requested, pods scheduled with resources",
            _strategy("RequestedToCapacityRatio", shape=[(0, 10), (100, 0)]),
            pod(),
            N10_20,
            [
                on("node1", cores(3000, 0)),
                on("node1", cores(3000, 0)),
                on("node2", cores(3000, 0)),
                on("node2", cores(3000, 5000)),
            ],
            [70, 58],
        ),
        (
            "ratio: bin packing shape",
            _strategy("RequestedToCapacityRatio", shape=[(0, 0), (100, 10)]),
            REQ_3_5,
            N4_6,
            [],
            [63, 50],
        ),
        (
            "ratio: decreasing shape truncates like Go",
            _strategy("RequestedToCapacityRatio", [{"name": "cpu", "weight": 1}], shape=[(0, 10), (30, 0)]),
            pod(cores(1000)),
            [node("node1", alloc=cap(10000, 100))],
            [],
            [67],
        ),
        (
            "ratio: single extended resource, nothing requested",
            _strategy(
                "RequestedToCapacityRatio", [{"name": EXTENDED, "weight": 1}], shape=[(0, 0), (100, 10)]
            ),
            pod(),
            [
                node("node1", alloc=cap(4000, 10000, **{"intel.com__foo": 4})),
                node("node2", alloc=cap(4000, 10000, **{"intel.com__foo": 8})),
            ],
            [],
            [0, 0],
        ),
        (
            "ratio: single extended resource requested, differently sized nodes",
            _strategy(
                "RequestedToCapacityRatio", [{"name": EXTENDED, "weight": 1}], shape=[(0, 0), (100, 10)]
            ),
            pod(cores(0, 0, **{"intel.com__foo": 2})),
            [
                node("node1", alloc=cap(4000, 10000, **{"intel.com__foo": 4})),
                node("node2", alloc=cap(4000, 10000, **{"intel.com__foo": 8})),
            ],
            [],
            [50, 25],
        ),
        (
            "ratio: single extended resource, pods scheduled with it",
            _strategy(
                "RequestedToCapacityRatio", [{"name": EXTENDED, "weight": 1}], shape=[(0, 0), (100, 10)]
            ),
            pod(cores(0, 0, **{"intel.com__foo": 2})),
            [
                node("node1", alloc=cap(4000, 10000, **{"intel.com__foo": 4})),
                node("node2", alloc=cap(4000, 10000, **{"intel.com__foo": 8})),
            ],
            [
                on("node1", cores(0, 0, **{"intel.com__foo": 2})),
                on("node2", cores(0, 0, **{"intel.com__foo": 2})),
            ],
            [100, 50],
        ),
        (
            "ratio: two extended resources with weights",
            _strategy(
                "RequestedToCapacityRatio",
                [{"name": EXTENDED, "weight": 3}, {"name": "intel.com/bar", "weight": 5}],
                shape=[(0, 0), (100, 10)],
            ),
            pod(cores(0, 0, **{"intel.com__foo": 2, "intel.com__bar": 2})),
            [
                node("node1", alloc=cap(4000, 10000, **{"intel.com__foo": 4, "intel.com__bar": 8})),
                node("node2", alloc=cap(4000, 10000, **{"intel.com__foo": 8, "intel.com__bar": 4})),
            ],
            [],
            # node1: foo 50*3 + bar 25*5 = 275 / 8 = 34.375; node2: foo 25*3 + bar 50*5 = 325 / 8 = 40.625
            [34, 41],
        ),
    ],
)
def test_fit_score(
    name: str, args: dict[str, Any], incoming: Obj, nodes: list[Obj], existing: list[Obj], want: list[int]
) -> None:
    assert scored(Fit, args, incoming, nodes, existing) == want, name


def test_broken_linear_function() -> None:
    f = helper.build_broken_linear_function([(10, 1), (90, 9)])
    assert [f(p) for p in (-10, 0, 9, 10, 11, 50, 89, 90, 91, 100)] == [1, 1, 1, 1, 1, 5, 8, 9, 9, 9]
    g = helper.build_broken_linear_function([(0, 2), (40, 10), (100, 0)])
    assert [g(p) for p in (0, 20, 40, 70, 100)] == [2, 6, 10, 5, 0]
    # Go truncates towards zero: 10 + (0 - 10) * 1 / 3 = 10 - 3
    assert helper.build_broken_linear_function([(0, 10), (3, 0)])(1) == 7
    assert helper.go_div(-7, 2) == -3 and helper.go_div(7, -2) == -3 and helper.go_div(7, 2) == 3


def test_requested_to_capacity_ratio_rounding() -> None:
    """Averages round half away from zero, as Go's math.Round."""
    scorer = requested_to_capacity_ratio_scorer(
        [1, 1], [{"utilization": 0, "score": 0}, {"utilization": 100, "score": 10}]
    )
    assert scorer([25, 50], [100, 100]) == 38  # 37.5
    assert scorer([0, 50], [100, 100]) == 50  # resources scoring 0 do not count


# -- NodeResourcesBalancedAllocation -------------------------------------------------------------


@pytest.mark.parametrize(
    "name, args, incoming, nodes, existing, want",
    [
        ("nothing scheduled, nothing requested", {}, pod(), N4_10, [], [100, 100]),
        ("nothing scheduled, resources requested, differently sized nodes", {}, REQ_3_5, N4_6, [], [87, 100]),
        (
            "no resources requested, pods scheduled",
            {},
            pod(),
            N4_10,
            [on("node1"), on("node1"), on("node2"), on("node2")],
            [100, 100],
        ),
        (
            "no resources requested, pods scheduled with resources",
            {},
            pod(),
            N10_20,
            [
                on("node1", cores(3000, 0)),
                on("node1", cores(3000, 0)),
                on("node2", cores(3000, 0)),
                on("node2", cores(3000, 5000)),
            ],
            [70, 82],
        ),
        (
            "resources requested, pods scheduled with resources",
            {},
            REQ_3_5,
            N10_20,
            [on("node1", cores(3000, 0)), on("node2", cores(3000, 5000))],
            [82, 95],
        ),
        (
            "resources requested, pods scheduled with resources, differently sized nodes",
            {},
            REQ_3_5,
            N10_20_50,
            [on("node1", cores(3000, 0)), on("node2", cores(3000, 5000))],
            [82, 80],
        ),
        (
            "requested resources at node capacity",
            {},
            pod(cores(3000, 0)),
            N4_10,
            [on("node1", cores(3000, 0)), on("node2", cores(3000, 5000))],
            [50, 75],
        ),
        (
            "requests above capacity are clamped to 1",
            {},
            pod(cores(6000, 10000)),
            N4_10,
            [],
            [100, 100],
        ),
        (
            "zero node resources",
            {},
            pod(),
            [node("node1"), node("node2")],
            [on("node1", cores(3000, 0)), on("node2", cores(3000, 5000))],
            [100, 100],
        ),
        (
            "include a scalar resource on the node",
            {
                "resources": [
                    {"name": "cpu", "weight": 1},
                    {"name": "memory", "weight": 1},
                    {"name": "nvidia.com/gpu", "weight": 1},
                ]
            },
            pod(cores(2000, 5000, **{"nvidia.com__gpu": 1})),
            [
                node("node1", alloc=cap(4000, 20000, **{"nvidia.com__gpu": 4})),
                node("node2", alloc=cap(4000, 20000)),
            ],
            [],
            # node1: fractions 0.5, 0.25, 0.25: std sqrt(1/72) -> 88; node2 has no gpu: 0.5, 0.25 -> 87
            [88, 87],
        ),
        (
            "a scalar resource the pod does not request is left out",
            {
                "resources": [
                    {"name": "cpu", "weight": 1},
                    {"name": "memory", "weight": 1},
                    {"name": "nvidia.com/gpu", "weight": 1},
                ]
            },
            pod(cores(2000, 5000)),
            [node("node1", alloc=cap(4000, 20000, **{"nvidia.com__gpu": 4}))],
            [on("node1", cores(0, 0, **{"nvidia.com__gpu": 4}))],
            [87],
        ),
        (
            "cpu only: a single fraction has no deviation",
            {"resources": [{"name": "cpu", "weight": 1}]},
            REQ_3_5,
            N4_6,
            [],
            [100, 100],
        ),
    ],
)
def test_balanced_allocation(
    name: str, args: dict[str, Any], incoming: Obj, nodes: list[Obj], existing: list[Obj], want: list[int]
) -> None:
    assert scored(BalancedAllocation, args, incoming, nodes, existing) == want, name


def test_balanced_allocation_uses_requested_not_non_zero() -> None:
    """Unlike Fit, BalancedAllocation counts real requests: best-effort pods add nothing."""
    nodes = [node("node1", alloc=cap(1, str(1000 * MB)))]
    existing = [on("node1", {})]  # one container, no requests: non-zero would count 100m / 200Mi
    assert scored(BalancedAllocation, {}, pod({}), nodes, existing) == [100]
    assert scored(Fit, {}, pod({}), nodes, existing) == [((800 * 100 // 1000) + (600 * 100 // 1000)) // 2]


def test_balanced_scorer_generic_matches_fast() -> None:
    for req, alloc in [([1, 2], [3, 4]), ([5, 1], [4, 10]), ([0, 0], [1, 1]), ([7, 3], [0, 5])]:
        fc = min(req[0] / alloc[0], 1) if alloc[0] else None
        fm = min(req[1] / alloc[1], 1) if alloc[1] else None
        want = 100 if fc is None or fm is None else int((1 - abs((fc - fm) / 2)) * 100)
        assert balanced_resource_scorer(req, alloc) == want


def test_balanced_allocation_invalid_args() -> None:
    with pytest.raises(ValueError, match="must be 1"):
        BalancedAllocation({"resources": [{"name": "cpu", "weight": 2}]}, FakeHandle())


# -- ImageLocality -------------------------------------------------------------------------------


def image(size_mb: int, *names: str) -> Obj:
    return {"names": list(names), "sizeBytes": size_mb * MB}


NODE_40_300_2000 = node(
    "node1",
    images=[
        image(40, "gcr.io/40:latest", "gcr.io/40:v1", "gcr.io/40:v1"),
        image(300, "gcr.io/300:latest", "gcr.io/300:v1"),
        image(2000, "gcr.io/2000:latest"),
    ],
)
NODE_250_10 = node(
    "node2", images=[image(250, "gcr.io/250:latest"), image(10, "gcr.io/10:latest", "gcr.io/10:v1")]
)
NODE_NO_IMAGES = node("node3")
NODE_600_40_900 = node(
    "node3",
    images=[image(600, "gcr.io/600:latest"), image(40, "gcr.io/40:latest"), image(900, "gcr.io/900:latest")],
)


@pytest.mark.parametrize(
    "name, incoming, nodes, want",
    [
        (
            # node1: 40MB * 1/2 = 20MB < 23MB -> 0; node2: 250MB * 1/2 = 125MB -> 100 * (125 - 23) / (1000 * 2 - 23) = 5
            "two images spread on two nodes, prefer the larger image one",
            pod(images=["gcr.io/40", "gcr.io/250"]),
            [NODE_40_300_2000, NODE_250_10],
            [0, 5],
        ),
        (
            # node1: (40 + 300) / 2 = 170MB -> 100 * (170 - 23) / 1977 = 7
            "two images on one node, prefer this node",
            pod(images=["gcr.io/40", "gcr.io/300"]),
            [NODE_40_300_2000, NODE_250_10],
            [7, 0],
        ),
        (
            # node1: 2000 / 2 = 1000MB -> 100 * 977 / 1977 = 49; node2: 10 / 2 -> 0
            "if exceed limit, use limit",
            pod(images=["gcr.io/10", "gcr.io/2000"]),
            [NODE_40_300_2000, NODE_250_10],
            [49, 0],
        ),
        (
            # node1: 2000 / 3 = 666.67MB -> 32
            "if exceed limit, use limit (with a node without images)",
            pod(images=["gcr.io/10", "gcr.io/2000"]),
            [NODE_40_300_2000, NODE_250_10, NODE_NO_IMAGES],
            [32, 0, 0],
        ),
        (
            # four containers: the threshold is 4000MB. node1: 300 / 3 = 100MB + 40 * 2/3 (40 is on two of
            # the three nodes) = 126.67MB -> 100 * (126.67 - 23) / (4000 - 23) = 2;
            # node3: 600 / 3 + 900 / 3 + 26.67 = 526.67MB -> 12
            "spread of images over three nodes, four containers",
            pod(images=["gcr.io/300", "gcr.io/600", "gcr.io/900"], init_images=["gcr.io/40"]),
            [NODE_40_300_2000, NODE_250_10, NODE_600_40_900],
            [2, 0, 12],
        ),
        (
            "init containers count too",
            pod(images=["gcr.io/40"], init_images=["gcr.io/300"]),
            [NODE_40_300_2000, NODE_250_10],
            [7, 0],
        ),
        # 300 / 2 = 150MB, one container: 100 * (150 - 23) / (1000 - 23) = 12
        (
            "an image tagged explicitly",
            pod(images=["gcr.io/300:v1"]),
            [NODE_40_300_2000, NODE_250_10],
            [12, 0],
        ),
    ],
)
def test_image_locality(name: str, incoming: Obj, nodes: list[Obj], want: list[int]) -> None:
    snap = Snapshot.from_objects([], nodes)
    got = run_score(ImageLocality({}, FakeHandle(snap)), incoming, snap)
    assert got[: len(want)] == want, name


# -- framework wiring ----------------------------------------------------------------------------


def test_plugins_wire_into_a_framework() -> None:
    """Every plugin lands on the extension points its upstream counterpart implements."""
    classes = [
        SchedulingGates,
        PrioritySort,
        NodeUnschedulable,
        NodeName,
        TaintToleration,
        NodeAffinity,
        NodePorts,
        Fit,
        BalancedAllocation,
        ImageLocality,
        DefaultBinder,
    ]
    registry = {c.name: c for c in classes}
    profile = {"plugins": {"multiPoint": {"enabled": [{"name": c.name} for c in classes]}}}
    fw = Framework(profile, registry, SchedulerContext())

    def names(plugins: list[Any]) -> list[str]:
        return [p.name for p in plugins]

    assert names(fw.pre_enqueue_plugins) == ["SchedulingGates"]
    assert names(fw.pre_filter_plugins) == ["NodeName", "NodeAffinity", "NodePorts", "NodeResourcesFit"]
    assert names(fw.filter_plugins) == [
        "NodeUnschedulable",
        "NodeName",
        "TaintToleration",
        "NodeAffinity",
        "NodePorts",
        "NodeResourcesFit",
    ]
    assert names(fw.pre_score_plugins) == [
        "TaintToleration",
        "NodeAffinity",
        "NodeResourcesFit",
        "NodeResourcesBalancedAllocation",
        "ImageLocality",
    ]
    assert names(fw.score_plugins) == [
        "TaintToleration",
        "NodeAffinity",
        "NodeResourcesFit",
        "NodeResourcesBalancedAllocation",
        "ImageLocality",
    ]
    events = fw.enqueue_extensions()
    assert set(events) == {
        "SchedulingGates",
        "NodeUnschedulable",
        "NodeName",
        "TaintToleration",
        "NodeAffinity",
        "NodePorts",
        "NodeResourcesFit",
    }
    assert all(isinstance(e, ClusterEventWithHint) for evs in events.values() for e in evs)


def test_framework_filters_and_scores_a_pod() -> None:
    """A pod through the framework's filter and score runs over three nodes."""
    nodes = [
        node("tainted", alloc=cap(4, "8Gi"), taints=[taint("dedicated", "gpu")]),
        node("small", alloc=cap(1, "1Gi"), labels={"disk": "ssd"}),
        node("big", alloc=cap(8, "16Gi"), labels={"disk": "ssd"}),
    ]
    snap = Snapshot.from_objects([], nodes)
    classes = [
        PrioritySort,
        NodeUnschedulable,
        NodeName,
        TaintToleration,
        NodeAffinity,
        NodePorts,
        Fit,
        BalancedAllocation,
        DefaultBinder,
    ]
    profile = {
        "plugins": {"multiPoint": {"enabled": [{"name": c.name} for c in classes]}},
        "pluginConfig": [
            {"name": "NodeResourcesFit", "args": {"scoringStrategy": {"type": "LeastAllocated"}}}
        ],
    }
    fw = Framework(profile, {c.name: c for c in classes}, SchedulerContext(snapshot=snap))
    p = PodInfo(pod(cores("2", "2Gi"), node_selector={"disk": "ssd"}))
    state = CycleState()
    result, status = fw.run_pre_filter_plugins(state, p, snap.node_infos())
    assert status is None and result is None
    statuses = {ni.name: fw.run_filter_plugins(state, p, ni) for ni in snap.node_infos()}
    assert reasons(statuses["tainted"]) == (UNRESOLVABLE, ("node(s) had untolerated taint {dedicated: gpu}",))
    assert reasons(statuses["small"]) == ins("cpu", "memory")
    assert statuses["big"] is None
    feasible = [snap.get("big")]
    assert fw.run_pre_score_plugins(state, p, feasible) is None
    assert "NodeAffinity" in state.skip_score_plugins  # no preferred terms
    totals, status = fw.run_score_plugins(state, p, feasible)
    assert status is None
    # TaintToleration skipped (no taints on the feasible node: 100 for all alike) + Fit (75 + 87) / 2 = 81
    # + BalancedAllocation (1 - |0.25 - 0.125| / 2) * 100 = 93
    assert "TaintToleration" in state.skip_score_plugins
    assert totals == [81 + 93]


@pytest.mark.parametrize(
    "plugin_cls, args",
    [
        (Fit, {}),
        (Fit, _strategy("LeastAllocated", [{"name": "memory", "weight": 3}, {"name": "cpu", "weight": 7}])),
        (Fit, _strategy("MostAllocated")),
        (Fit, _strategy("MostAllocated", [{"name": "memory", "weight": 2}, {"name": "cpu", "weight": 1}])),
        (BalancedAllocation, {}),
        (BalancedAllocation, {"resources": [{"name": "memory", "weight": 1}, {"name": "cpu", "weight": 1}]}),
    ],
)
def test_cpu_memory_fast_path_matches_generic(plugin_cls: type, args: dict[str, Any]) -> None:
    """The inlined cpu+memory scorers answer what the generic resource loop does."""
    rnd = random.Random(42)
    pl = plugin_cls(args, FakeHandle())
    scorer = pl.scorer
    for _ in range(300):
        alloc = {
            "cpu": f"{rnd.choice([0, 1, 250, 4000])}m",
            "memory": str(rnd.choice([0, 1, 1000, 10**9])),
            "pods": 110,
        }
        existing = [
            on("n", {"cpu": f"{rnd.randrange(0, 5000)}m", "memory": str(rnd.randrange(0, 2 * 10**9))})
            for _ in range(rnd.randrange(0, 3))
        ]
        if rnd.random() < 0.3:
            existing.append(on("n", {}))  # best effort: counts only as NonZeroRequested
        ni = node_info(node("n", alloc=alloc), *existing)
        incoming = PodInfo(
            rnd.choice(
                [
                    pod(),
                    pod({}),
                    pod({"cpu": f"{rnd.randrange(0, 3000)}m", "memory": str(rnd.randrange(0, 10**9))}),
                ]
            )
        )
        state = CycleState()
        pl.pre_score(state, incoming, [ni])
        got, status = pl.score(state, incoming, ni)
        assert status is None
        assert got == scorer.score(ni, scorer.pod_requests(incoming))
        # and without PreScore
        assert pl.score(CycleState(), incoming, ni)[0] == got
