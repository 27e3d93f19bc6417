"""PodTopologySpread and InterPodAffinity, table-driven after kube-scheduler's plugin tests:
skew with maxSkew/minDomains/missing topology keys, inclusion policies, matchLabelKeys, the
system default constraints from Services/ReplicaSets, spread scores; required affinity and
anti-affinity (the incoming pod's and existing pods'), namespace selectors, the first pod of a
self-affine group, preferred scores and their normalization, and preemption's add_pod/remove_pod.

The plugins run inside a real ``Framework`` (their handle) over ``Snapshot.from_objects`` and
informer ``Indexer``s, as the scheduler runs them."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from typing import Any

import pytest

from k8py.client.cache import Indexer, meta_namespace_index_func
from k8py.scheduler.framework.handle import SchedulerContext
from k8py.scheduler.framework.interface import Code, CycleState, NodeScore, QueueingHint, Status
from k8py.scheduler.framework.runtime import Framework
from k8py.scheduler.framework.types import PodInfo
from k8py.scheduler.plugins import interpodaffinity as ipa
from k8py.scheduler.plugins import podtopologyspread as pts
from k8py.scheduler.plugins.defaultbinder import DefaultBinder
from k8py.scheduler.plugins.interpodaffinity import InterPodAffinity
from k8py.scheduler.plugins.podtopologyspread import PodTopologySpread, default_selector
from k8py.scheduler.plugins.queuesort import PrioritySort
from k8py.scheduler.snapshot import Snapshot

HOSTNAME = "kubernetes.io/hostname"
Obj = dict[str, Any]
_seq = itertools.count(1)

# -- builders ------------------------------------------------------------------------------------


def make_node(name: str, labels: Mapping[str, str] | None = None, *, taints: list[Obj] | None = None) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": dict(labels or {})},
        "spec": {"taints": taints} if taints else {},
        "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}},
    }


def make_pod(
    name: str,
    *,
    node: str = "",
    namespace: str = "default",
    labels: Mapping[str, str] | None = None,
    spread: list[Obj] | None = None,
    affinity: Obj | None = None,
    node_selector: Mapping[str, str] | None = None,
    tolerations: list[Obj] | None = None,
    owner: Obj | None = None,
    terminating: bool = False,
) -> Obj:
    meta: Obj = {
        "name": name,
        "namespace": namespace,
        "uid": f"uid-{name}-{next(_seq)}",
        "labels": dict(labels or {}),
    }
    if owner is not None:
        meta["ownerReferences"] = [owner]
    if terminating:
        meta["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    spec: Obj = {"containers": [{"name": "c", "image": "busybox"}]}
    if node:
        spec["nodeName"] = node
    if spread:
        spec["topologySpreadConstraints"] = spread
    if affinity:
        spec["affinity"] = affinity
    if node_selector:
        spec["nodeSelector"] = dict(node_selector)
    if tolerations:
        spec["tolerations"] = tolerations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def constraint(
    max_skew: int,
    key: str,
    when: str = "DoNotSchedule",
    selector: Obj | None = None,
    *,
    min_domains: int | None = None,
    affinity_policy: str | None = None,
    taints_policy: str | None = None,
    match_label_keys: list[str] | None = None,
) -> Obj:
    c: Obj = {"maxSkew": max_skew, "topologyKey": key, "whenUnsatisfiable": when}
    if selector is not None:
        c["labelSelector"] = selector
    if min_domains is not None:
        c["minDomains"] = min_domains
    if affinity_policy:
        c["nodeAffinityPolicy"] = affinity_policy
    if taints_policy:
        c["nodeTaintsPolicy"] = taints_policy
    if match_label_keys:
        c["matchLabelKeys"] = match_label_keys
    return c


def exists(key: str) -> Obj:
    return {"matchExpressions": [{"key": key, "operator": "Exists"}]}


def term(
    selector: Obj | None, key: str, *, namespaces: list[str] | None = None, ns_selector: Obj | None = None
) -> Obj:
    t: Obj = {"labelSelector": selector, "topologyKey": key}
    if namespaces:
        t["namespaces"] = namespaces
    if ns_selector is not None:
        t["namespaceSelector"] = ns_selector
    return t


def weighted(weight: int, t: Obj) -> Obj:
    return {"weight": weight, "podAffinityTerm": t}


def affinity(
    *,
    required: list[Obj] | None = None,
    anti_required: list[Obj] | None = None,
    preferred: list[Obj] | None = None,
    anti_preferred: list[Obj] | None = None,
) -> Obj:
    out: Obj = {}
    if required or preferred:
        out["podAffinity"] = {}
        if required:
            out["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] = required
        if preferred:
            out["podAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"] = preferred
    if anti_required or anti_preferred:
        out["podAntiAffinity"] = {}
        if anti_required:
            out["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] = anti_required
        if anti_preferred:
            out["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"] = anti_preferred
    return out


def indexer(objs: Iterable[Obj] = ()) -> Indexer:
    ix = Indexer({"namespace": meta_namespace_index_func})
    for o in objs:
        ix.add(o)
    return ix


def make_namespace(name: str, labels: Mapping[str, str]) -> Obj:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": dict(labels)}}


REGISTRY = {cls.name: cls for cls in (PrioritySort, PodTopologySpread, InterPodAffinity, DefaultBinder)}


class Env:
    """A Framework with the two plugins over a snapshot of `nodes` and the assigned `pods`."""

    def __init__(
        self,
        nodes: list[Obj],
        pods: list[Obj] = (),  # type: ignore[assignment]
        *,
        objects: Mapping[str, list[Obj]] | None = None,
        spread_args: Obj | None = None,
        affinity_args: Obj | None = None,
    ) -> None:
        self.snapshot = Snapshot.from_objects([p for p in pods if p["spec"].get("nodeName")], nodes)
        listers = {resource: indexer(objs) for resource, objs in (objects or {}).items()}
        self.ctx = SchedulerContext(listers=listers, snapshot=self.snapshot)
        profile = {
            "plugins": {"multiPoint": {"enabled": [{"name": n} for n in REGISTRY]}},
            "pluginConfig": [
                {
                    "name": pts.NAME,
                    "args": spread_args if spread_args is not None else {"defaultingType": "List"},
                },
                {"name": ipa.NAME, "args": affinity_args or {"hardPodAffinityWeight": 1}},
            ],
        }
        self.fw = Framework(profile, REGISTRY, self.ctx)
        self.spread: PodTopologySpread = self.fw.plugin(pts.NAME)  # type: ignore[assignment]
        self.affinity: InterPodAffinity = self.fw.plugin(ipa.NAME)  # type: ignore[assignment]

    def nodes(self, names: Iterable[str] | None = None) -> list[Any]:
        if names is None:
            return list(self.snapshot.node_infos())
        return [self.snapshot.get(n) for n in names]

    def filter(self, plugin: Any, pod: Obj) -> tuple[Status | None, dict[str, Status | None], CycleState]:
        """PreFilter, then Filter on every node (unless PreFilter did not succeed)."""
        pi = PodInfo(pod)
        state = CycleState()
        _, status = plugin.pre_filter(state, pi, self.nodes())
        if status is not None:
            return status, {}, state
        return None, {ni.name: plugin.filter(state, pi, ni) for ni in self.nodes()}, state

    def score(
        self, plugin: Any, pod: Obj, names: Iterable[str] | None = None
    ) -> tuple[Status | None, dict[str, int]]:
        """PreScore on the candidate nodes, Score each, NormalizeScore."""
        pi = PodInfo(pod)
        state = CycleState()
        nodes = self.nodes(names)
        status = plugin.pre_score(state, pi, nodes)
        if status is not None:
            return status, {}
        scores = []
        for ni in nodes:
            s, st = plugin.score(state, pi, ni)
            assert st is None
            scores.append(NodeScore(ni.name, s))
        assert plugin.normalize_score(state, pi, scores) is None
        return None, {ns.name: ns.score for ns in scores}


def codes(results: Mapping[str, Status | None]) -> dict[str, Any]:
    """Node -> None (passes) or (code, reason)."""
    return {n: None if s is None else (s.code, s.reasons[0]) for n, s in results.items()}


FOO = exists("foo")
BAR = exists("bar")

ZONE_NODES = [
    make_node("node-a", {"zone": "zone1", "node": "node-a"}),
    make_node("node-b", {"zone": "zone1", "node": "node-b"}),
    make_node("node-x", {"zone": "zone2", "node": "node-x"}),
    make_node("node-y", {"zone": "zone2", "node": "node-y"}),
]

SKEW = (Code.UNSCHEDULABLE, pts.ERR_REASON_CONSTRAINTS_NOT_MATCH)
MISSING = (Code.UNSCHEDULABLE_AND_UNRESOLVABLE, pts.ERR_REASON_NODE_LABEL_NOT_MATCH)


def foo_pods(spec: Mapping[str, int], labels: Mapping[str, str] | None = None, **kw: Any) -> list[Obj]:
    """`count` pods labelled foo (or `labels`) on each node."""
    return [
        make_pod(f"p-{node}-{i}", node=node, labels=labels if labels is not None else {"foo": ""}, **kw)
        for node, count in spec.items()
        for i in range(count)
    ]


# == PodTopologySpread: PreFilter state ==========================================================


@pytest.mark.parametrize(
    "name, pod, nodes, pods, want",
    [
        (
            "clean cluster with one spreadConstraint",
            make_pod(
                "p",
                labels={"foo": ""},
                spread=[constraint(5, "zone", selector={"matchLabels": {"foo": "bar"}})],
            ),
            ZONE_NODES,
            [],
            [{"zone1": 0, "zone2": 0}],
        ),
        (
            "normal case with one spreadConstraint",
            make_pod("p", labels={"foo": ""}, spread=[constraint(1, "zone", selector=FOO)]),
            ZONE_NODES,
            foo_pods({"node-a": 2, "node-b": 1, "node-y": 2}),
            [{"zone1": 3, "zone2": 2}],
        ),
        (
            "normal case with null label selector",
            make_pod("p", labels={"foo": ""}, spread=[constraint(1, "zone")]),
            ZONE_NODES,
            foo_pods({"node-a": 2, "node-b": 1, "node-y": 2}),
            [{"zone1": 0, "zone2": 0}],
        ),
        (
            "namespace mismatch doesn't count",
            make_pod("p", labels={"foo": ""}, spread=[constraint(1, "zone", selector=FOO)]),
            ZONE_NODES,
            foo_pods({"node-a": 1, "node-b": 1, "node-y": 1})
            + foo_pods({"node-a": 1, "node-y": 1}, namespace="ns1"),
            [{"zone1": 2, "zone2": 1}],
        ),
        (
            "terminating pods don't count",
            make_pod("p", labels={"foo": ""}, spread=[constraint(1, "zone", selector=FOO)]),
            ZONE_NODES,
            foo_pods({"node-a": 1, "node-y": 1}) + foo_pods({"node-a": 2}, terminating=True),
            [{"zone1": 1, "zone2": 1}],
        ),
        (
            "two constraints; soft ones are bypassed",
            make_pod(
                "p",
                labels={"foo": ""},
                spread=[
                    constraint(1, "zone", "ScheduleAnyway", FOO),
                    constraint(1, "zone", selector=FOO),
                    constraint(1, "node", "ScheduleAnyway", FOO),
                    constraint(1, "node", selector=FOO),
                ],
            ),
            ZONE_NODES,
            foo_pods({"node-a": 2, "node-b": 1, "node-y": 4}),
            [{"zone1": 3, "zone2": 4}, {"node-a": 2, "node-b": 1, "node-x": 0, "node-y": 4}],
        ),
        (
            "nodes missing a topology key are not counted",
            make_pod(
                "p",
                labels={"foo": ""},
                spread=[constraint(1, "zone", selector=FOO), constraint(1, "node", selector=FOO)],
            ),
            [*ZONE_NODES[:3], make_node("node-y", {"zone": "zone2"})],
            foo_pods({"node-a": 2, "node-b": 1, "node-y": 4}),
            [{"zone1": 3, "zone2": 0}, {"node-a": 2, "node-b": 1, "node-x": 0}],
        ),
        (
            "nodeAffinityPolicy Honor (default): nodes the pod's nodeSelector rejects are not counted",
            make_pod(
                "p",
                labels={"foo": ""},
                node_selector={"zone": "zone1"},
                spread=[constraint(1, "zone", selector=FOO)],
            ),
            ZONE_NODES,
            foo_pods({"node-a": 1, "node-y": 2}),
            [{"zone1": 1}],
        ),
        (
            "nodeAffinityPolicy Ignore counts every node",
            make_pod(
                "p",
                labels={"foo": ""},
                node_selector={"zone": "zone1"},
                spread=[constraint(1, "zone", selector=FOO, affinity_policy="Ignore")],
            ),
            ZONE_NODES,
            foo_pods({"node-a": 1, "node-y": 2}),
            [{"zone1": 1, "zone2": 2}],
        ),
        (
            "nodeTaintsPolicy Honor: nodes with untolerated taints are not counted",
            make_pod(
                "p", labels={"foo": ""}, spread=[constraint(1, "node", selector=FOO, taints_policy="Honor")]
            ),
            [
                make_node("node-a", {"node": "node-a"}),
                make_node("node-b", {"node": "node-b"}, taints=[{"key": "k", "effect": "NoSchedule"}]),
                make_node("node-c", {"node": "node-c"}, taints=[{"key": "k", "effect": "PreferNoSchedule"}]),
            ],
            foo_pods({"node-a": 1, "node-b": 1, "node-c": 1}),
            [{"node-a": 1, "node-c": 1}],
        ),
        (
            "matchLabelKeys are merged into the selector",
            make_pod(
                "p",
                labels={"foo": "", "version": "v2"},
                spread=[constraint(1, "zone", selector=FOO, match_label_keys=["version", "absent"])],
            ),
            ZONE_NODES,
            foo_pods({"node-a": 2}, labels={"foo": "", "version": "v1"})
            + foo_pods({"node-x": 1}, labels={"foo": "", "version": "v2"}),
            [{"zone1": 0, "zone2": 1}],
        ),
    ],
)
def test_spread_pre_filter_state(
    name: str, pod: Obj, nodes: list[Obj], pods: list[Obj], want: list[dict[str, int]]
) -> None:
    env = Env(nodes, pods)
    status, _, state = env.filter(env.spread, pod)
    assert status is None, name
    s = state[pts.PRE_FILTER_KEY]
    assert [dict(c) for c in s.tp_counts] == want, name
    for i, counts in enumerate(want):
        assert s.critical_paths[i][1] == (min(counts.values()) if counts else (1 << 31) - 1), name


# == PodTopologySpread: Filter ===================================================================


@pytest.mark.parametrize(
    "name, pod, nodes, pods, want",
    [
        (
            "no existing pods",
            make_pod("p", labels={"foo": ""}, spread=[constraint(1, "zone", selector=FOO)]),
            ZONE_NODES,
            [],
            {"node-a": None, "node-b": None, "node-x": None, "node-y": None},
        ),
        (
            "no existing pods, incoming pod doesn't match itself",
            make_pod("p", labels={"foo": ""}, spread=[constraint(1, "zone", selector=BAR)]),
            ZONE_NODES,
            [],
            {"node-a": None, "node-b": None, "node-x": None, "node-y": None},
        ),
        (
            "existing pods in a different namespace do not count",
            make_pod("p", labels={"foo": ""}, spread=[constraint(1, "zone", selector=FOO)]),
            ZONE_NODES,
            foo_pods({"node-a": 1, "node-b": 1}, namespace="ns1") + foo_pods({"node-x": 2}),
            {"node-a": None, "node-b": None, "node-x": SKEW, "node-y": SKEW},
        ),
        (
            "pods spread across zones as 3/3, all nodes fit",
            make_pod("p", labels={"foo": ""}, spread=[constraint(1, "zone", selector=FOO)]),
            ZONE_NODES,
            foo_pods({"node-a": 1, "node-b": 2, "node-x": 3}),
            {"node-a": None, "node-b": None, "node-x": None, "node-y": None},
        ),
        (
            "incoming pod has nodeAffinity, pods spread as 2/~1~/~0~/3: only node-a and node-y are domains",
            make_pod(
                "p",
                labels={"foo": ""},
                affinity={
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [
                                {
                                    "matchExpressions": [
                                        {"key": "node", "operator": "In", "values": ["node-a", "node-y"]}
                                    ]
                                }
                            ]
                        }
                    }
                },
                spread=[constraint(1, "node", selector=FOO)],
            ),
            ZONE_NODES,
            foo_pods({"node-a": 2, "node-b": 1, "node-y": 3}),
            # node-b and node-x are no domains (NodeAffinity rejects them): 0 + 1 - 2 passes here
            {"node-a": None, "node-b": None, "node-x": None, "node-y": SKEW},
        ),
        (
            "pods spread as 2/1/0/3 per node, only node-x fits with maxSkew 1",
            make_pod("p", labels={"foo": ""}, spread=[constraint(1, "node", selector=FOO)]),
            ZONE_NODES,
            foo_pods({"node-a": 2, "node-b": 1, "node-y": 3}),
            {"node-a": SKEW, "node-b": SKEW, "node-x": None, "node-y": SKEW},
        ),
        (
            "maxSkew 2 lets node-b in too",
            make_pod("p", labels={"foo": ""}, spread=[constraint(2, "node", selector=FOO)]),
            ZONE_NODES,
            foo_pods({"node-a": 2, "node-b": 1, "node-y": 3}),
            {"node-a": SKEW, "node-b": None, "node-x": None, "node-y": SKEW},
        ),
        (
            "incoming pod doesn't match its own selector: selfMatch is 0",
            make_pod("p", labels={"bar": ""}, spread=[constraint(1, "node", selector=FOO)]),
            ZONE_NODES,
            foo_pods({"node-a": 2, "node-b": 1, "node-y": 3}),
            {"node-a": SKEW, "node-b": None, "node-x": None, "node-y": SKEW},
        ),
        (
            "node missing the topology key is unresolvable",
            make_pod("p", labels={"foo": ""}, spread=[constraint(1, "zone", selector=FOO)]),
            [*ZONE_NODES[:3], make_node("node-y", {"node": "node-y"})],
            foo_pods({"node-a": 1}),
            {"node-a": SKEW, "node-b": SKEW, "node-x": None, "node-y": MISSING},
        ),
        (
            "minDomains 3 with 2 domains: the global minimum is 0",
            make_pod("p", labels={"foo": ""}, spread=[constraint(1, "zone", selector=FOO, min_domains=3)]),
            ZONE_NODES,
            foo_pods({"node-a": 1, "node-x": 1}),
            {"node-a": SKEW, "node-b": SKEW, "node-x": SKEW, "node-y": SKEW},
        ),
        (
            "minDomains 2 with 2 domains behaves as without",
            make_pod("p", labels={"foo": ""}, spread=[constraint(1, "zone", selector=FOO, min_domains=2)]),
            ZONE_NODES,
            foo_pods({"node-a": 1, "node-x": 1}),
            {"node-a": None, "node-b": None, "node-x": None, "node-y": None},
        ),
        (
            "minDomains 3, maxSkew 2 with 2 domains: 1 + 1 - 0 <= 2",
            make_pod("p", labels={"foo": ""}, spread=[constraint(2, "zone", selector=FOO, min_domains=3)]),
            ZONE_NODES,
            foo_pods({"node-a": 1, "node-x": 2}),
            {"node-a": None, "node-b": None, "node-x": SKEW, "node-y": SKEW},
        ),
        (
            "two constraints: zone 3/4 and node 2/1/0/4; node-x is the only fit",
            make_pod(
                "p",
                labels={"foo": ""},
                spread=[constraint(1, "zone", selector=FOO), constraint(1, "node", selector=FOO)],
            ),
            ZONE_NODES,
            foo_pods({"node-a": 2, "node-b": 1, "node-y": 4}),
            {"node-a": SKEW, "node-b": SKEW, "node-x": SKEW, "node-y": SKEW},
        ),
        (
            "two constraints: zone 1/3 and node 1/0/0/3; node-b fits",
            make_pod(
                "p",
                labels={"foo": ""},
                spread=[constraint(1, "zone", selector=FOO), constraint(1, "node", selector=FOO)],
            ),
            ZONE_NODES,
            foo_pods({"node-a": 1, "node-y": 3}),
            {"node-a": SKEW, "node-b": None, "node-x": SKEW, "node-y": SKEW},
        ),
        (
            "nodeTaintsPolicy Honor: the tainted node is no domain, so the minimum is 1",
            make_pod(
                "p", labels={"foo": ""}, spread=[constraint(1, "node", selector=FOO, taints_policy="Honor")]
            ),
            [
                make_node("node-a", {"node": "node-a"}),
                make_node("node-b", {"node": "node-b"}),
                make_node("node-c", {"node": "node-c"}, taints=[{"key": "k", "effect": "NoSchedule"}]),
            ],
            foo_pods({"node-a": 2, "node-b": 1}),
            {"node-a": SKEW, "node-b": None, "node-c": None},
        ),
        (
            "nodeTaintsPolicy Ignore (default): the tainted node is a domain with 0",
            make_pod("p", labels={"foo": ""}, spread=[constraint(1, "node", selector=FOO)]),
            [
                make_node("node-a", {"node": "node-a"}),
                make_node("node-b", {"node": "node-b"}),
                make_node("node-c", {"node": "node-c"}, taints=[{"key": "k", "effect": "NoSchedule"}]),
            ],
            foo_pods({"node-a": 2, "node-b": 1}),
            {"node-a": SKEW, "node-b": SKEW, "node-c": None},
        ),
    ],
)
def test_spread_filter(name: str, pod: Obj, nodes: list[Obj], pods: list[Obj], want: dict[str, Any]) -> None:
    env = Env(nodes, pods)
    status, results, _ = env.filter(env.spread, pod)
    assert status is None, name
    assert codes(results) == want, name


def test_spread_pre_filter_skips_without_hard_constraints() -> None:
    env = Env(ZONE_NODES)
    for pod in (
        make_pod("p"),
        make_pod("p", labels={"foo": ""}, spread=[constraint(1, "zone", "ScheduleAnyway", FOO)]),
    ):
        status, _, state = env.filter(env.spread, pod)
        assert status is not None and status.code == Code.SKIP
        assert pts.PRE_FILTER_KEY not in state


def test_spread_filter_without_pre_filter_state_is_an_error() -> None:
    env = Env(ZONE_NODES)
    status = env.spread.filter(CycleState(), PodInfo(make_pod("p")), env.nodes()[0])
    assert status is not None and status.code == Code.ERROR
    assert status.reasons == ('reading "PreFilterPodTopologySpread" from cycleState: not found',)


def test_spread_invalid_selector_is_an_error() -> None:
    env = Env(ZONE_NODES)
    bad = {"matchExpressions": [{"key": "foo", "operator": "In", "values": ["{{.bad}}"]}]}
    status, _, _ = env.filter(env.spread, make_pod("p", spread=[constraint(1, "zone", selector=bad)]))
    assert status is not None and status.code == Code.ERROR


# == PodTopologySpread: add_pod / remove_pod (preemption) =========================================


def test_spread_add_remove_pod_update_pre_filter_state() -> None:
    pods = foo_pods({"node-a": 1, "node-b": 1, "node-x": 1})
    env = Env(ZONE_NODES, pods)
    pod = PodInfo(make_pod("p", labels={"foo": ""}, spread=[constraint(1, "zone", selector=FOO)]))
    state = CycleState()
    env.spread.pre_filter(state, pod, env.nodes())
    node_y = env.snapshot.get("node-y")
    # zone1: 2, zone2: 1 -> zone2 fits, zone1 does not
    assert env.spread.filter(state, pod, env.snapshot.get("node-a")) is not None
    assert env.spread.filter(state, pod, node_y) is None

    what_if = state.clone()
    victim = env.snapshot.get("node-a").pods[0]
    assert env.spread.remove_pod(what_if, pod, victim, env.snapshot.get("node-a")) is None
    s = what_if[pts.PRE_FILTER_KEY]
    assert s.tp_counts[0] == {"zone1": 1, "zone2": 1}
    assert s.critical_paths[0][1] == 1
    assert env.spread.filter(what_if, pod, env.snapshot.get("node-a")) is None
    # the original state (shared with the plugin's tally) is untouched
    assert state[pts.PRE_FILTER_KEY].tp_counts[0] == {"zone1": 2, "zone2": 1}

    # add_pod: a matching pod in zone2 makes zone1 and zone2 even (2/2)
    newcomer = PodInfo(make_pod("n", node="node-y", labels={"foo": ""}))
    assert env.spread.add_pod(state, pod, newcomer, node_y) is None
    assert state[pts.PRE_FILTER_KEY].tp_counts[0] == {"zone1": 2, "zone2": 2}
    assert env.spread.filter(state, pod, env.snapshot.get("node-a")) is None
    # pods in other namespaces, or not matching, change nothing
    other_ns = PodInfo(make_pod("o", node="node-y", namespace="other", labels={"foo": ""}))
    unmatched = PodInfo(make_pod("u", node="node-y", labels={"bar": ""}))
    env.spread.add_pod(state, pod, other_ns, node_y)
    env.spread.add_pod(state, pod, unmatched, node_y)
    assert state[pts.PRE_FILTER_KEY].tp_counts[0] == {"zone1": 2, "zone2": 2}

    # copy-on-write: a new cycle sees the cluster as it is, not as the what-ifs left it
    fresh = CycleState()
    env.spread.pre_filter(fresh, pod, env.nodes())
    assert dict(fresh[pts.PRE_FILTER_KEY].tp_counts[0]) == {"zone1": 2, "zone2": 1}


def test_spread_counts_follow_node_changes_across_cycles() -> None:
    """The tally recounts nodes whose generation moved and forgets nodes that are gone."""
    env = Env(ZONE_NODES, foo_pods({"node-a": 1}))
    pod = PodInfo(make_pod("p", labels={"foo": ""}, spread=[constraint(1, "node", selector=FOO)]))

    def counts(nodes: list[Any]) -> dict[str, int]:
        state = CycleState()
        env.spread.pre_filter(state, pod, nodes)
        return dict(state[pts.PRE_FILTER_KEY].tp_counts[0])

    assert counts(env.nodes()) == {"node-a": 1, "node-b": 0, "node-x": 0, "node-y": 0}
    env.snapshot.get("node-x").add_pod(PodInfo(make_pod("q", node="node-x", labels={"foo": ""})))
    assert counts(env.nodes()) == {"node-a": 1, "node-b": 0, "node-x": 1, "node-y": 0}
    victim = env.snapshot.get("node-a").pods[0]
    env.snapshot.get("node-a").remove_pod(victim)
    assert counts(env.nodes(["node-a", "node-x"])) == {"node-a": 0, "node-x": 1}
    assert counts(env.nodes()) == {"node-a": 0, "node-b": 0, "node-x": 1, "node-y": 0}


# == PodTopologySpread: scoring ==================================================================

HOST_NODES = [make_node(n, {HOSTNAME: n}) for n in ("node-a", "node-b", "node-c", "node-d")]
ZONE_HOST_NODES = [
    make_node("node-a", {"zone": "zone1", HOSTNAME: "node-a"}),
    make_node("node-b", {"zone": "zone1", HOSTNAME: "node-b"}),
    make_node("node-x", {"zone": "zone2", HOSTNAME: "node-x"}),
    make_node("node-y", {"zone": "zone2", HOSTNAME: "node-y"}),
]


@pytest.mark.parametrize(
    "name, pod, nodes, pods, candidates, want",
    [
        (
            "one constraint on node, no existing pods",
            make_pod("p", labels={"foo": ""}, spread=[constraint(1, HOSTNAME, "ScheduleAnyway", FOO)]),
            HOST_NODES[:2],
            [],
            None,
            {"node-a": 100, "node-b": 100},
        ),
        (
            "one constraint on node, only one node is candidate",
            make_pod("p", labels={"foo": ""}, spread=[constraint(1, HOSTNAME, "ScheduleAnyway", FOO)]),
            HOST_NODES[:2],
            foo_pods({"node-a": 2, "node-b": 1}),
            ["node-a"],
            {"node-a": 100},
        ),
        (
            "one constraint on node, all 4 nodes are candidates (2/1/0/3)",
            make_pod("p", labels={"foo": ""}, spread=[constraint(1, HOSTNAME, "ScheduleAnyway", FOO)]),
            HOST_NODES,
            foo_pods({"node-a": 2, "node-b": 1, "node-d": 3}),
            None,
            {"node-a": 20, "node-b": 60, "node-c": 100, "node-d": 0},
        ),
        (
            "one constraint on node, null selector",
            make_pod("p", labels={"foo": ""}, spread=[constraint(1, HOSTNAME, "ScheduleAnyway")]),
            HOST_NODES,
            foo_pods({"node-a": 2, "node-b": 1, "node-d": 3}),
            None,
            {"node-a": 100, "node-b": 100, "node-c": 100, "node-d": 100},
        ),
        (
            "maxSkew=2",
            make_pod("p", labels={"foo": ""}, spread=[constraint(2, HOSTNAME, "ScheduleAnyway", FOO)]),
            HOST_NODES,
            foo_pods({"node-a": 2, "node-b": 1, "node-d": 3}),
            None,
            {"node-a": 33, "node-b": 66, "node-c": 100, "node-d": 16},
        ),
        (
            "maxSkew=3, 4/3/2/1",
            make_pod("p", labels={"foo": ""}, spread=[constraint(3, HOSTNAME, "ScheduleAnyway", FOO)]),
            HOST_NODES,
            foo_pods({"node-a": 4, "node-b": 3, "node-c": 2, "node-d": 1}),
            None,
            {"node-a": 44, "node-b": 66, "node-c": 77, "node-d": 100},
        ),
        (
            "3 out of 4 nodes are candidates (4/2/1/~3~)",
            make_pod("p", labels={"foo": ""}, spread=[constraint(1, HOSTNAME, "ScheduleAnyway", FOO)]),
            [make_node(n, {HOSTNAME: n}) for n in ("node-a", "node-b", "node-x", "node-y")],
            foo_pods({"node-a": 4, "node-b": 2, "node-x": 1, "node-y": 3}),
            ["node-a", "node-b", "node-x"],
            {"node-a": 33, "node-b": 83, "node-x": 100},
        ),
        (
            "one candidate doesn't have the topology key (4/?2?/1/~3~)",
            make_pod("p", labels={"foo": ""}, spread=[constraint(1, HOSTNAME, "ScheduleAnyway", FOO)]),
            [
                make_node("node-a", {HOSTNAME: "node-a"}),
                make_node("node-b", {"n": "node-b"}),
                make_node("node-x", {HOSTNAME: "node-x"}),
                make_node("node-y", {HOSTNAME: "node-y"}),
            ],
            foo_pods({"node-a": 4, "node-b": 2, "node-x": 1, "node-y": 3}),
            ["node-a", "node-b", "node-x"],
            {"node-a": 16, "node-b": 0, "node-x": 100},
        ),
        (
            "one constraint on zone, 3 out of 4 nodes are candidates",
            make_pod("p", labels={"foo": ""}, spread=[constraint(1, "zone", "ScheduleAnyway", FOO)]),
            ZONE_HOST_NODES,
            foo_pods({"node-a": 4, "node-b": 2, "node-x": 1, "node-y": 3}),
            ["node-a", "node-b", "node-x"],
            {"node-a": 75, "node-b": 75, "node-x": 100},
        ),
        (
            "two constraints on zone and node, 2 out of 4 nodes are candidates",
            make_pod(
                "p",
                labels={"foo": ""},
                spread=[
                    constraint(1, "zone", "ScheduleAnyway", FOO),
                    constraint(1, HOSTNAME, "ScheduleAnyway", FOO),
                ],
            ),
            ZONE_HOST_NODES,
            foo_pods({"node-a": 2, "node-b": 1, "node-x": 2, "node-y": 4}),
            ["node-a", "node-x"],
            {"node-a": 100, "node-x": 63},
        ),
        (
            "two constraints with different selectors",
            make_pod(
                "p",
                labels={"foo": "", "bar": ""},
                spread=[
                    constraint(1, "zone", "ScheduleAnyway", FOO),
                    constraint(1, HOSTNAME, "ScheduleAnyway", BAR),
                ],
            ),
            ZONE_HOST_NODES,
            [
                make_pod("p-a1", node="node-a", labels={"foo": ""}),
                make_pod("p-b1", node="node-b", labels={"foo": "", "bar": ""}),
                make_pod("p-y1", node="node-y", labels={"foo": ""}),
                make_pod("p-y2", node="node-y", labels={"bar": ""}),
            ],
            None,
            {"node-a": 60, "node-b": 20, "node-x": 100, "node-y": 60},
        ),
        (
            "existing pods in a different namespace do not count",
            make_pod("p", labels={"foo": ""}, spread=[constraint(1, HOSTNAME, "ScheduleAnyway", FOO)]),
            HOST_NODES[:2],
            foo_pods({"node-a": 1}, namespace="ns1") + foo_pods({"node-a": 1, "node-b": 2}),
            None,
            {"node-a": 100, "node-b": 33},
        ),
        (
            "terminating pods are excluded",
            make_pod("p", labels={"foo": ""}, spread=[constraint(1, HOSTNAME, "ScheduleAnyway", FOO)]),
            HOST_NODES[:2],
            foo_pods({"node-a": 1}, terminating=True) + foo_pods({"node-b": 1}),
            None,
            {"node-a": 100, "node-b": 0},
        ),
        (
            "nodeAffinityPolicy honored with nodeSelector",
            make_pod(
                "p",
                labels={"foo": ""},
                node_selector={"foo": ""},
                spread=[constraint(1, "node", "ScheduleAnyway", FOO)],
            ),
            [
                make_node("node-a", {"node": "node-a", "foo": ""}),
                make_node("node-b", {"node": "node-b", "foo": ""}),
                make_node("node-c", {"node": "node-c"}),
            ],
            foo_pods({"node-a": 2, "node-b": 1, "node-c": 1}),
            None,
            {"node-a": 0, "node-b": 33, "node-c": 100},
        ),
        (
            "nodeAffinityPolicy ignored with nodeSelector",
            make_pod(
                "p",
                labels={"foo": ""},
                node_selector={"foo": ""},
                spread=[constraint(1, "node", "ScheduleAnyway", FOO, affinity_policy="Ignore")],
            ),
            [
                make_node("node-a", {"node": "node-a", "foo": ""}),
                make_node("node-b", {"node": "node-b", "foo": ""}),
                make_node("node-c", {"node": "node-c"}),
            ],
            foo_pods({"node-a": 2, "node-b": 1, "node-c": 1}),
            None,
            {"node-a": 66, "node-b": 100, "node-c": 100},
        ),
        (
            "nodeTaintsPolicy honored",
            make_pod(
                "p",
                labels={"foo": ""},
                spread=[constraint(1, "node", "ScheduleAnyway", FOO, taints_policy="Honor")],
            ),
            [
                make_node("node-a", {"node": "node-a"}),
                make_node("node-b", {"node": "node-b"}),
                make_node(
                    "node-c",
                    {"node": "node-c"},
                    taints=[{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}],
                ),
            ],
            foo_pods({"node-a": 2, "node-b": 1, "node-c": 1}),
            None,
            {"node-a": 0, "node-b": 33, "node-c": 100},
        ),
        (
            "minDomains has no effect when ScheduleAnyway",
            make_pod(
                "p", labels={"foo": ""}, spread=[constraint(2, "node", "ScheduleAnyway", FOO, min_domains=10)]
            ),
            [make_node(n, {"node": n}) for n in ("node-a", "node-b", "node-c")],
            foo_pods({"node-a": 2, "node-b": 2, "node-c": 1}),
            None,
            {"node-a": 75, "node-b": 75, "node-c": 100},
        ),
    ],
)
def test_spread_score(
    name: str, pod: Obj, nodes: list[Obj], pods: list[Obj], candidates: list[str] | None, want: dict[str, int]
) -> None:
    env = Env(nodes, pods)
    status, scores = env.score(env.spread, pod, candidates)
    assert status is None, name
    assert scores == want, name


def test_spread_pre_score_state_weights() -> None:
    env = Env(ZONE_HOST_NODES, foo_pods({"node-a": 1, "node-x": 2}))
    pod = PodInfo(
        make_pod(
            "p",
            labels={"foo": ""},
            spread=[
                constraint(1, "zone", "ScheduleAnyway", FOO),
                constraint(3, HOSTNAME, "ScheduleAnyway", FOO),
            ],
        )
    )
    state = CycleState()
    assert env.spread.pre_score(state, pod, env.nodes(["node-a", "node-b", "node-x"])) is None
    s = state[pts.PRE_SCORE_KEY]
    assert s.counts[0] == {"zone1": 1, "zone2": 2}
    assert s.weights == [pts.topology_normalizing_weight(2), pts.topology_normalizing_weight(3)]
    assert s.ignored_nodes == set()
    # node-a: zone1 (1 * log 4) + hostname (1 * log 5 + 2)
    score, status = env.spread.score(state, pod, env.snapshot.get("node-a"))
    assert status is None and score == round(math.log(4) + math.log(5) + 2)


def test_spread_pre_score_skips_without_soft_constraints() -> None:
    env = Env(ZONE_HOST_NODES)
    state = CycleState()
    hard_only = make_pod("p", labels={"foo": ""}, spread=[constraint(1, "zone", selector=FOO)])
    status = env.spread.pre_score(state, PodInfo(hard_only), env.nodes())
    assert status is not None and status.code == Code.SKIP
    status = env.spread.pre_score(state, PodInfo(make_pod("q")), env.nodes())
    assert status is not None and status.code == Code.SKIP
    status = env.spread.pre_score(
        state, PodInfo(make_pod("q", spread=[constraint(1, "zone", "ScheduleAnyway", FOO)])), []
    )
    assert status is not None and status.code == Code.SKIP


# == PodTopologySpread: default constraints ======================================================


def service(name: str, selector: Mapping[str, str] | None, namespace: str = "default") -> Obj:
    spec = {} if selector is None else {"selector": dict(selector)}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def replica_set(name: str, selector: Obj | None, namespace: str = "default", kind: str = "ReplicaSet") -> Obj:
    spec = {} if selector is None else {"selector": selector}
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def owner(kind: str, name: str, api_version: str = "apps/v1") -> Obj:
    return {"apiVersion": api_version, "kind": kind, "name": name, "uid": f"uid-{name}", "controller": True}


@pytest.mark.parametrize(
    "name, pod, objects, want",
    [
        ("no services, no owner", make_pod("p", labels={"foo": "bar"}), {}, ""),
        (
            "services selecting the pod are merged, others ignored",
            make_pod("p", labels={"foo": "bar", "baz": "qux"}),
            {
                "services": [
                    service("s1", {"foo": "bar"}),
                    service("s2", {"baz": "qux"}),
                    service("s3", {"foo": "other"}),
                    service("s4", None),  # nil selector: matches nothing
                    service("s5", {"foo": "bar", "x": "y"}),
                    service("s6", {"foo": "bar"}, namespace="elsewhere"),
                ]
            },
            "baz=qux,foo=bar",
        ),
        (
            "the controlling ReplicaSet's selector is added",
            make_pod("p", labels={"foo": "bar", "app": "web"}, owner=owner("ReplicaSet", "rs")),
            {
                "services": [service("s1", {"foo": "bar"})],
                "replicasets": [
                    replica_set(
                        "rs", {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]}
                    )
                ],
            },
            "app in (web),foo=bar",
        ),
        (
            "a StatefulSet's selector",
            make_pod("p", labels={"app": "db"}, owner=owner("StatefulSet", "ss")),
            {"statefulsets": [replica_set("ss", {"matchLabels": {"app": "db"}}, kind="StatefulSet")]},
            "app=db",
        ),
        (
            "a ReplicationController's selector is a label set",
            make_pod("p", labels={"app": "old"}, owner=owner("ReplicationController", "rc", "v1")),
            {
                "replicationcontrollers": [
                    {
                        "apiVersion": "v1",
                        "kind": "ReplicationController",
                        "metadata": {"name": "rc", "namespace": "default"},
                        "spec": {"selector": {"app": "old"}},
                    }
                ]
            },
            "app=old",
        ),
        (
            "an owner that is not cached, or of another kind, adds nothing",
            make_pod("p", labels={"app": "x"}, owner=owner("Job", "j", "batch/v1")),
            {"replicasets": [replica_set("j", {"matchLabels": {"app": "x"}})]},
            "",
        ),
    ],
)
def test_default_selector(name: str, pod: Obj, objects: Mapping[str, list[Obj]], want: str) -> None:
    env = Env(HOST_NODES, objects=objects)
    assert str(default_selector(pod, env.fw)) == want, name


def test_system_default_constraints_score_like_a_hostname_constraint() -> None:
    """System defaulting, nodes without a zone label, pods matching a Service: hostname spreading
    (maxSkew 3) still applies and scores as one spreading constraint would."""
    pods = foo_pods({"node-a": 4, "node-b": 3, "node-c": 2, "node-d": 1})
    env = Env(
        HOST_NODES,
        pods,
        objects={"services": [service("svc", {"foo": ""})]},
        spread_args={"defaultingType": "System"},
    )
    status, scores = env.score(env.spread, make_pod("p", labels={"foo": ""}))
    assert status is None
    assert scores == {"node-a": 44, "node-b": 66, "node-c": 77, "node-d": 100}
    # the system defaults are all ScheduleAnyway: nothing to filter
    status, _, _ = env.filter(env.spread, make_pod("p", labels={"foo": ""}))
    assert status is not None and status.code == Code.SKIP


def test_system_default_constraints_from_a_replica_set_with_zones() -> None:
    pods = foo_pods(
        {"node-a": 2, "node-b": 2, "node-x": 1}, labels={"app": "web"}, owner=owner("ReplicaSet", "rs")
    )
    env = Env(
        ZONE_HOST_NODES,
        pods,
        objects={"replicasets": [replica_set("rs", {"matchLabels": {"app": "web"}})]},
        spread_args={"defaultingType": "System"},
    )
    pod = make_pod("p", labels={"app": "web"}, owner=owner("ReplicaSet", "rs"))
    state = CycleState()
    assert env.spread.pre_score(state, PodInfo(pod), env.nodes()) is None
    s = state[pts.PRE_SCORE_KEY]
    assert [(c.topology_key, c.max_skew, str(c.selector)) for c in s.constraints] == [
        (HOSTNAME, 3, "app=web"),
        ("topology.kubernetes.io/zone", 5, "app=web"),
    ]
    # no zone labels on these nodes (they use "zone"): the zone constraint counts everything under ""
    assert s.counts[1] == {"": 5}
    status, scores = env.score(env.spread, pod)
    assert status is None
    assert scores["node-y"] == 100 and scores["node-a"] == scores["node-b"] < scores["node-x"] < 100
    # a pod no controller or service selects gets no default constraints
    status, _ = env.score(env.spread, make_pod("lonely", labels={"app": "web"}))
    assert status is not None and status.code == Code.SKIP


def test_list_defaulting_with_hard_default_constraints() -> None:
    args = {
        "defaultingType": "List",
        "defaultConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}],
    }
    pods = foo_pods({"node-a": 2, "node-x": 1})
    env = Env(ZONE_NODES, pods, objects={"services": [service("svc", {"foo": ""})]}, spread_args=args)
    status, results, _ = env.filter(env.spread, make_pod("p", labels={"foo": ""}))
    assert status is None
    assert codes(results) == {"node-a": SKEW, "node-b": SKEW, "node-x": None, "node-y": None}
    # a pod with its own constraints does not get the defaults
    status, _, _ = env.filter(
        env.spread, make_pod("p", labels={"foo": ""}, spread=[constraint(1, "zone", "ScheduleAnyway", FOO)])
    )
    assert status is not None and status.code == Code.SKIP


@pytest.mark.parametrize(
    "args, message",
    [
        ({"defaultingType": "Bogus"}, 'defaultingType: Unsupported value: "Bogus"'),
        (
            {
                "defaultingType": "System",
                "defaultConstraints": [
                    {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}
                ],
            },
            ".defaultConstraints must be empty",
        ),
        (
            {
                "defaultingType": "List",
                "defaultConstraints": [
                    {"maxSkew": 0, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}
                ],
            },
            "maxSkew",
        ),
        (
            {
                "defaultingType": "List",
                "defaultConstraints": [
                    {
                        "maxSkew": 1,
                        "topologyKey": "zone",
                        "whenUnsatisfiable": "DoNotSchedule",
                        "labelSelector": {},
                    }
                ],
            },
            "must not define a selector",
        ),
    ],
)
def test_spread_args_validation(args: Obj, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PodTopologySpread(args, None)  # type: ignore[arg-type]


def test_spread_queueing_hints() -> None:
    env = Env(ZONE_NODES)
    events = env.spread.events_to_register()
    assert {e.event.resource for e in events} == {"Pod", "Node"}
    pod = make_pod("p", labels={"foo": ""}, spread=[constraint(1, "zone", selector=FOO)])
    pod_hint = next(e.hint for e in events if e.event.resource == "Pod")
    node_hint = next(e.hint for e in events if e.event.resource == "Node")
    assigned = make_pod("a", node="node-a", labels={"foo": ""})
    assert pod_hint(pod, None, assigned) == QueueingHint.QUEUE
    assert pod_hint(pod, assigned, None) == QueueingHint.QUEUE
    assert pod_hint(pod, None, make_pod("b", node="node-a", labels={"bar": ""})) == QueueingHint.SKIP
    assert pod_hint(pod, None, make_pod("c", labels={"foo": ""})) == QueueingHint.SKIP  # unassigned
    relabelled = {**assigned, "metadata": {**assigned["metadata"], "labels": {}}}
    assert pod_hint(pod, assigned, relabelled) == QueueingHint.QUEUE
    assert node_hint(pod, None, make_node("n", {"zone": "z3"})) == QueueingHint.QUEUE
    assert node_hint(pod, None, make_node("n", {"other": "x"})) == QueueingHint.SKIP
    assert (
        node_hint(pod, make_node("n", {"zone": "z1"}), make_node("n", {"zone": "z2"})) == QueueingHint.QUEUE
    )
    assert (
        node_hint(pod, make_node("n", {"zone": "z1"}), make_node("n", {"zone": "z1", "x": "y"}))
        == QueueingHint.SKIP
    )


# == InterPodAffinity: Filter ====================================================================

AFF = (Code.UNSCHEDULABLE_AND_UNRESOLVABLE, ipa.ERR_REASON_AFFINITY_RULES_NOT_MATCH)
ANTI = (Code.UNSCHEDULABLE, ipa.ERR_REASON_ANTI_AFFINITY_RULES_NOT_MATCH)
EXISTING = (Code.UNSCHEDULABLE, ipa.ERR_REASON_EXISTING_ANTI_AFFINITY_RULES_NOT_MATCH)

SEC_S1 = {"matchExpressions": [{"key": "security", "operator": "In", "values": ["S1"]}]}
SEC_S2 = {"matchExpressions": [{"key": "security", "operator": "In", "values": ["S2"]}]}

REGION_NODES = [
    make_node("node1", {"region": "r1", "zone": "z11", HOSTNAME: "node1"}),
    make_node("node2", {"region": "r1", "zone": "z12", HOSTNAME: "node2"}),
    make_node("node3", {"region": "r2", "zone": "z21", HOSTNAME: "node3"}),
    make_node("node4", {HOSTNAME: "node4"}),
]
NAMESPACES = [
    make_namespace("default", {"team": "none"}),
    make_namespace("subteam1.team1", {"team": "team1"}),
    make_namespace("subteam2.team1", {"team": "team1"}),
    make_namespace("subteam1.team2", {"team": "team2"}),
]


@pytest.mark.parametrize(
    "name, pod, pods, want",
    [
        (
            "required affinity: nodes in the region of a matching pod fit, others don't, a node without the key is unresolvable",
            make_pod("p", affinity=affinity(required=[term(SEC_S1, "region")])),
            [make_pod("e", node="node1", labels={"security": "S1"})],
            {"node1": None, "node2": None, "node3": AFF, "node4": AFF},
        ),
        (
            "required affinity with two terms: one pod must match all of them",
            make_pod("p", affinity=affinity(required=[term(SEC_S1, "region"), term(exists("tier"), "zone")])),
            [
                make_pod("e1", node="node1", labels={"security": "S1"}),
                make_pod("e2", node="node3", labels={"security": "S1", "tier": "x"}),
            ],
            {"node1": AFF, "node2": AFF, "node3": None, "node4": AFF},
        ),
        (
            "required affinity: pods in other namespaces don't match",
            make_pod("p", labels={"security": "S2"}, affinity=affinity(required=[term(SEC_S1, "region")])),
            [make_pod("e", node="node1", namespace="subteam1.team1", labels={"security": "S1"})],
            {"node1": AFF, "node2": AFF, "node3": AFF, "node4": AFF},
        ),
        (
            "required affinity with a namespaceSelector",
            make_pod(
                "p",
                affinity=affinity(
                    required=[term(SEC_S1, "region", ns_selector={"matchLabels": {"team": "team1"}})]
                ),
            ),
            [
                make_pod("e1", node="node1", namespace="subteam2.team1", labels={"security": "S1"}),
                make_pod("e2", node="node3", namespace="subteam1.team2", labels={"security": "S1"}),
            ],
            {"node1": None, "node2": None, "node3": AFF, "node4": AFF},
        ),
        (
            "required affinity with an empty namespaceSelector selects every namespace",
            make_pod("p", affinity=affinity(required=[term(SEC_S1, "region", ns_selector={})])),
            [make_pod("e", node="node3", namespace="subteam1.team2", labels={"security": "S1"})],
            {"node1": AFF, "node2": AFF, "node3": None, "node4": AFF},
        ),
        (
            "the first pod of a group with affinity to itself goes anywhere with the topology key",
            make_pod("p", labels={"security": "S1"}, affinity=affinity(required=[term(SEC_S1, "region")])),
            [make_pod("e", node="node1", labels={"security": "S2"})],
            {"node1": None, "node2": None, "node3": None, "node4": AFF},
        ),
        (
            "a pod whose affinity doesn't match itself is not let through",
            make_pod("p", labels={"security": "S2"}, affinity=affinity(required=[term(SEC_S1, "region")])),
            [],
            {"node1": AFF, "node2": AFF, "node3": AFF, "node4": AFF},
        ),
        (
            "self-affinity once a matching pod exists: only its domain",
            make_pod("p", labels={"security": "S1"}, affinity=affinity(required=[term(SEC_S1, "region")])),
            [make_pod("e", node="node3", labels={"security": "S1"})],
            {"node1": AFF, "node2": AFF, "node3": None, "node4": AFF},
        ),
        (
            "required anti-affinity: the zone of a matching pod is out, a node without the key fits",
            make_pod("p", affinity=affinity(anti_required=[term(SEC_S1, "zone")])),
            [make_pod("e", node="node1", labels={"security": "S1"})],
            {"node1": ANTI, "node2": None, "node3": None, "node4": None},
        ),
        (
            "required anti-affinity by region",
            make_pod("p", affinity=affinity(anti_required=[term(SEC_S1, "region")])),
            [make_pod("e", node="node2", labels={"security": "S1"})],
            {"node1": ANTI, "node2": ANTI, "node3": None, "node4": None},
        ),
        (
            "existing pods' anti-affinity: the incoming pod can't join the hostname of a pod that hates it",
            make_pod("p", labels={"security": "S1"}),
            [
                make_pod(
                    "e",
                    node="node1",
                    labels={"app": "x"},
                    affinity=affinity(anti_required=[term(SEC_S1, HOSTNAME)]),
                )
            ],
            {"node1": EXISTING, "node2": None, "node3": None, "node4": None},
        ),
        (
            "existing pods' anti-affinity through a namespaceSelector on the incoming pod's namespace",
            make_pod("p", namespace="subteam1.team1", labels={"security": "S1"}),
            [
                make_pod(
                    "e",
                    node="node3",
                    labels={"app": "x"},
                    affinity=affinity(
                        anti_required=[term(SEC_S1, "region", ns_selector={"matchLabels": {"team": "team1"}})]
                    ),
                ),
                make_pod(
                    "f",
                    node="node1",
                    labels={"app": "x"},
                    affinity=affinity(
                        anti_required=[term(SEC_S1, "region", ns_selector={"matchLabels": {"team": "team2"}})]
                    ),
                ),
            ],
            {"node1": None, "node2": None, "node3": EXISTING, "node4": None},
        ),
        (
            "existing pods' anti-affinity not matching the incoming pod",
            make_pod("p", labels={"security": "S2"}),
            [
                make_pod(
                    "e",
                    node="node1",
                    labels={"app": "x"},
                    affinity=affinity(anti_required=[term(SEC_S1, HOSTNAME)]),
                )
            ],
            None,  # Skip
        ),
        (
            "affinity satisfied, anti-affinity violated",
            make_pod(
                "p",
                affinity=affinity(required=[term(SEC_S1, "region")], anti_required=[term(SEC_S2, "zone")]),
            ),
            [
                make_pod("e1", node="node1", labels={"security": "S1"}),
                make_pod("e2", node="node2", labels={"security": "S2"}),
            ],
            {"node1": None, "node2": ANTI, "node3": AFF, "node4": AFF},
        ),
    ],
)
def test_affinity_filter(name: str, pod: Obj, pods: list[Obj], want: dict[str, Any] | None) -> None:
    env = Env(REGION_NODES, pods, objects={"namespaces": NAMESPACES})
    status, results, _ = env.filter(env.affinity, pod)
    if want is None:
        assert status is not None and status.code == Code.SKIP, name
        return
    assert status is None, name
    assert codes(results) == want, name


def test_affinity_pre_filter_skip() -> None:
    env = Env(REGION_NODES, [make_pod("e", node="node1", labels={"security": "S1"})])
    status, _, state = env.filter(env.affinity, make_pod("p", labels={"security": "S1"}))
    assert status is not None and status.code == Code.SKIP
    assert ipa.PRE_FILTER_KEY not in state


def test_affinity_pre_filter_state_counts() -> None:
    pods = [
        make_pod("e1", node="node1", labels={"security": "S1"}),
        make_pod("e2", node="node2", labels={"security": "S1"}),
        make_pod("e3", node="node3", labels={"security": "S2"}),
        make_pod(
            "h", node="node3", affinity=affinity(anti_required=[term(SEC_S1, "zone"), term(SEC_S1, "region")])
        ),
    ]
    env = Env(REGION_NODES, pods)
    pod = make_pod(
        "p",
        labels={"security": "S1"},
        affinity=affinity(required=[term(SEC_S1, "region")], anti_required=[term(SEC_S2, HOSTNAME)]),
    )
    status, _, state = env.filter(env.affinity, pod)
    assert status is None
    s = state[ipa.PRE_FILTER_KEY]
    assert s.existing_anti_affinity_counts == {"zone": {"z21": 1}, "region": {"r2": 1}}
    assert s.affinity_counts == {"region": {"r1": 2}}
    assert s.anti_affinity_counts == {HOSTNAME: {"node3": 1}}


def test_affinity_add_remove_pod_update_pre_filter_state() -> None:
    pods = [
        make_pod("e1", node="node1", labels={"security": "S1"}),
        make_pod("h", node="node3", affinity=affinity(anti_required=[term(SEC_S2, "region")])),
    ]
    env = Env(REGION_NODES, pods)
    pod = PodInfo(
        make_pod(
            "p",
            labels={"security": "S2"},
            affinity=affinity(required=[term(SEC_S1, "region")], anti_required=[term(exists("bad"), "zone")]),
        )
    )
    state = CycleState()
    _, status = env.affinity.pre_filter(state, pod, env.nodes())
    assert status is None
    n1, n2, n3 = (env.snapshot.get(n) for n in ("node1", "node2", "node3"))
    assert env.affinity.filter(state, pod, n1) is None
    assert codes({"n3": env.affinity.filter(state, pod, n3)}) == {"n3": AFF}

    # preemption what-if: removing the pod the affinity depends on (the pod does not match itself)
    what_if = state.clone()
    assert env.affinity.remove_pod(what_if, pod, n1.pods[0], n1) is None
    assert what_if[ipa.PRE_FILTER_KEY].affinity_counts == {"region": {}}
    assert codes({"n1": env.affinity.filter(what_if, pod, n1)}) == {"n1": AFF}
    # removing the pod whose anti-affinity hates the incoming one
    hater = n3.pods[0]
    assert env.affinity.remove_pod(what_if, pod, hater, n3) is None
    assert what_if[ipa.PRE_FILTER_KEY].existing_anti_affinity_counts == {"region": {}}
    # the original state is untouched
    assert state[ipa.PRE_FILTER_KEY].affinity_counts == {"region": {"r1": 1}}
    assert state[ipa.PRE_FILTER_KEY].existing_anti_affinity_counts == {"region": {"r2": 1}}

    # add_pod on the original state: a pod the incoming pod's anti-affinity hates, in z12
    bad = PodInfo(make_pod("b", node="node2", labels={"bad": "1", "security": "S1"}))
    assert env.affinity.add_pod(state, pod, bad, n2) is None
    s = state[ipa.PRE_FILTER_KEY]
    assert s.anti_affinity_counts == {"zone": {"z12": 1}}
    assert s.affinity_counts == {"region": {"r1": 2}}
    assert codes({"n2": env.affinity.filter(state, pod, n2)}) == {"n2": ANTI}
    # ... and a pod with anti-affinity against the incoming pod on node1
    hater2 = PodInfo(make_pod("h2", node="node1", affinity=affinity(anti_required=[term(SEC_S2, HOSTNAME)])))
    env.affinity.add_pod(state, pod, hater2, n1)
    assert codes({"n1": env.affinity.filter(state, pod, n1)}) == {"n1": EXISTING}

    # the plugin's tallies were not changed by the what-ifs
    fresh = CycleState()
    env.affinity.pre_filter(fresh, pod, env.nodes())
    f = fresh[ipa.PRE_FILTER_KEY]
    assert (f.affinity_counts, f.anti_affinity_counts, f.existing_anti_affinity_counts) == (
        {"region": {"r1": 1}},
        {},
        {"region": {"r2": 1}},
    )


def test_affinity_self_match_toggles_with_add_remove() -> None:
    env = Env(REGION_NODES, [make_pod("e", node="node3", labels={"security": "S1"})])
    pod = PodInfo(
        make_pod("p", labels={"security": "S1"}, affinity=affinity(required=[term(SEC_S1, "region")]))
    )
    state = CycleState()
    env.affinity.pre_filter(state, pod, env.nodes())
    n1, n3 = env.snapshot.get("node1"), env.snapshot.get("node3")
    assert env.affinity.filter(state, pod, n1) is not None
    env.affinity.remove_pod(state, pod, n3.pods[0], n3)
    # no pod matches anywhere now, and the pod matches itself
    assert env.affinity.filter(state, pod, n1) is None


# == InterPodAffinity: scoring ===================================================================

R_CHINA = {"region": "China"}
R_INDIA = {"region": "India"}
AZ1 = {"az": "az1"}
AZ2 = {"az": "az2"}
S1 = {"security": "S1"}
S2 = {"security": "S2"}
STAY_S1_REGION = affinity(preferred=[weighted(5, term(SEC_S1, "region"))])
STAY_S2_REGION = affinity(preferred=[weighted(6, term(SEC_S2, "region"))])
AFFINITY3 = affinity(
    preferred=[
        weighted(
            8,
            term(
                {
                    "matchExpressions": [
                        {"key": "security", "operator": "NotIn", "values": ["S1"]},
                        {"key": "security", "operator": "In", "values": ["S2"]},
                    ]
                },
                "region",
            ),
        ),
        weighted(
            2,
            term(
                {
                    "matchExpressions": [
                        {"key": "security", "operator": "Exists"},
                        {"key": "wrongkey", "operator": "DoesNotExist"},
                    ]
                },
                "region",
            ),
        ),
    ]
)
HARD_AFFINITY = affinity(
    required=[
        term(
            {"matchExpressions": [{"key": "security", "operator": "In", "values": ["S1", "value2"]}]},
            "region",
        ),
        term(
            {
                "matchExpressions": [
                    {"key": "security", "operator": "Exists"},
                    {"key": "wrongkey", "operator": "DoesNotExist"},
                ]
            },
            "region",
        ),
    ]
)
AWAY_S1_AZ = affinity(anti_preferred=[weighted(5, term(SEC_S1, "az"))])
AWAY_S2_AZ = affinity(anti_preferred=[weighted(5, term(SEC_S2, "az"))])
STAY_S1_REGION_AWAY_S2_AZ = affinity(
    preferred=[weighted(8, term(SEC_S1, "region"))], anti_preferred=[weighted(5, term(SEC_S2, "az"))]
)
NS_SELECTOR = {"matchExpressions": [{"key": "team", "operator": "In", "values": ["team1"]}]}
AFFINITY_NS_SELECTOR = affinity(
    preferred=[weighted(5, term(SEC_S1, "region", namespaces=["subteam2.team2"], ns_selector=NS_SELECTOR))]
)
ANTI_NS_SELECTOR = affinity(
    anti_preferred=[
        weighted(5, term(SEC_S1, "region", namespaces=["subteam2.team2"], ns_selector=NS_SELECTOR))
    ]
)


def n(name: str, labels: Mapping[str, str]) -> Obj:
    return make_node(name, labels)


@pytest.mark.parametrize(
    "name, pod, pods, nodes, want",
    [
        (
            "no affinity anywhere: Skip",
            make_pod("p", labels=S1),
            [],
            [n("node1", R_CHINA), n("node2", R_INDIA), n("node3", AZ1)],
            None,
        ),
        (
            "affinity: the node matching topology key and pods gets the high score",
            make_pod("p", labels=S1, affinity=STAY_S1_REGION),
            [
                make_pod("e1", node="node1", labels=S1),
                make_pod("e2", node="node2", labels=S2),
                make_pod("e3", node="node3", labels=S1),
            ],
            [n("node1", R_CHINA), n("node2", R_INDIA), n("node3", AZ1)],
            {"node1": 100, "node2": 0, "node3": 0},
        ),
        (
            "all nodes with the same topology value as a matching pod score the same",
            make_pod("p", affinity=STAY_S1_REGION),
            [make_pod("e1", node="node1", labels=S1)],
            [n("node1", R_CHINA), n("node2", {**R_CHINA, **AZ1}), n("node3", R_INDIA)],
            {"node1": 100, "node2": 100, "node3": 0},
        ),
        (
            "the region with more matching pods scores higher",
            make_pod("p", labels=S1, affinity=STAY_S2_REGION),
            [
                make_pod(f"e{i}", node=node, labels=S2)
                for i, node in enumerate(["node1", "node1", "node2", "node3", "node4", "node5"])
            ],
            [
                n("node1", R_CHINA),
                n("node2", R_INDIA),
                n("node3", R_CHINA),
                n("node4", R_CHINA),
                n("node5", R_INDIA),
            ],
            {"node1": 100, "node2": 0, "node3": 100, "node4": 100, "node5": 0},
        ),
        (
            "different operators and values, including some match failures",
            make_pod("p", labels=S1, affinity=AFFINITY3),
            [
                make_pod("e1", node="node1", labels=S1),
                make_pod("e2", node="node2", labels=S2),
                make_pod("e3", node="node3", labels=S1),
            ],
            [n("node1", R_CHINA), n("node2", R_INDIA), n("node3", AZ1)],
            {"node1": 20, "node2": 100, "node3": 0},
        ),
        (
            "symmetry: existing pods' preferred affinity",
            make_pod("p", labels=S2),
            [
                make_pod("e1", node="node1", labels=S1, affinity=STAY_S1_REGION),
                make_pod("e2", node="node2", labels=S2, affinity=STAY_S2_REGION),
            ],
            [n("node1", R_CHINA), n("node2", R_INDIA), n("node3", AZ1)],
            {"node1": 0, "node2": 100, "node3": 0},
        ),
        (
            "symmetry with a namespace selector",
            make_pod("p", namespace="subteam1.team1", labels=S1),
            [
                make_pod("e1", node="node1", labels=S1, affinity=AFFINITY_NS_SELECTOR),
                make_pod("e2", node="node2", labels=S2, affinity=STAY_S2_REGION),
            ],
            [n("node1", R_CHINA), n("node2", R_INDIA), n("node3", AZ1)],
            {"node1": 100, "node2": 0, "node3": 0},
        ),
        (
            "anti-affinity symmetry with a namespace selector",
            make_pod("p", namespace="subteam1.team1", labels=S1),
            [
                make_pod("e1", node="node1", labels=S1, affinity=ANTI_NS_SELECTOR),
                make_pod("e2", node="node2", labels=S2, affinity=STAY_S2_REGION),
            ],
            [n("node1", R_CHINA), n("node2", R_INDIA), n("node3", AZ1)],
            {"node1": 0, "node2": 100, "node3": 100},
        ),
        (
            "symmetry: existing pods' required affinity weighs hardPodAffinityWeight",
            make_pod("p", labels=S1),
            [
                make_pod("e1", node="node1", labels=S1, affinity=HARD_AFFINITY),
                make_pod("e2", node="node2", labels=S2, affinity=HARD_AFFINITY),
            ],
            [n("node1", R_CHINA), n("node2", R_INDIA), n("node3", AZ1)],
            {"node1": 100, "node2": 100, "node3": 0},
        ),
        (
            "anti-affinity: the node without matching pods scores high",
            make_pod("p", labels=S1, affinity=AWAY_S1_AZ),
            [make_pod("e1", node="node1", labels=S1), make_pod("e2", node="node2", labels=S2)],
            [n("node1", AZ1), n("node2", R_CHINA)],
            {"node1": 0, "node2": 100},
        ),
        (
            "anti-affinity symmetry",
            make_pod("p", labels=S2),
            [
                make_pod("e1", node="node1", labels=S1, affinity=AWAY_S2_AZ),
                make_pod("e2", node="node2", labels=S2, affinity=AWAY_S1_AZ),
            ],
            [n("node1", AZ1), n("node2", AZ2)],
            {"node1": 0, "node2": 100},
        ),
        (
            "affinity and anti-affinity with the same labels",
            make_pod("p", labels=S1, affinity=STAY_S1_REGION_AWAY_S2_AZ),
            [
                make_pod(f"e{i}", node=node, labels=S1)
                for i, node in enumerate(["node1", "node1", "node2", "node3", "node3", "node4", "node5"])
            ],
            [
                n("node1", {**R_CHINA, **AZ1}),
                n("node2", R_INDIA),
                n("node3", R_CHINA),
                n("node4", R_CHINA),
                n("node5", R_INDIA),
            ],
            {"node1": 100, "node2": 0, "node3": 100, "node4": 100, "node5": 0},
        ),
        (
            "affinity, anti-affinity and symmetry together",
            make_pod("p", labels=S1, affinity=STAY_S1_REGION_AWAY_S2_AZ),
            [
                make_pod("e1", node="node1", labels=S1),
                make_pod("e2", node="node2", labels=S2),
                make_pod("e3", node="node3", affinity=STAY_S1_REGION_AWAY_S2_AZ),
                make_pod("e4", node="node4", affinity=AWAY_S1_AZ),
            ],
            [n("node1", R_CHINA), n("node2", AZ1), n("node3", R_INDIA), n("node4", AZ2)],
            {"node1": 100, "node2": 0, "node3": 100, "node4": 0},
        ),
        (
            "partial nodes in a topology without pods with affinity",
            make_pod("p", labels=S1),
            [
                make_pod("e1", node="node1", labels=S1),
                make_pod("e2", node="node2", affinity=STAY_S1_REGION_AWAY_S2_AZ),
            ],
            [n("node1", R_CHINA), n("node2", R_CHINA)],
            {"node1": 0, "node2": 0},
        ),
        (
            "affinity with pods matching a namespaceSelector",
            make_pod("p", namespace="subteam1.team1", labels=S1, affinity=AFFINITY_NS_SELECTOR),
            [
                make_pod("e1", node="node1", namespace="subteam1.team1", labels=S1),
                make_pod("e2", node="node2", namespace="subteam1.team2", labels=S1),
                make_pod("e3", node="node3", namespace="subteam2.team2", labels=S1),
            ],
            [n("node1", R_CHINA), n("node2", R_INDIA), n("node3", {"region": "Japan"})],
            {"node1": 100, "node2": 0, "node3": 100},
        ),
    ],
)
def test_affinity_score(
    name: str, pod: Obj, pods: list[Obj], nodes: list[Obj], want: dict[str, int] | None
) -> None:
    env = Env(
        nodes,
        pods,
        objects={"namespaces": [*NAMESPACES, make_namespace("subteam2.team2", {"team": "team2"})]},
    )
    status, scores = env.score(env.affinity, pod)
    if want is None:
        assert status is not None and status.code == Code.SKIP, name
        return
    assert status is None, name
    assert scores == want, name


def test_affinity_score_weights_and_args() -> None:
    nodes = [n("node1", R_CHINA), n("node2", R_INDIA), n("node3", AZ1)]
    pods = [
        make_pod("e1", node="node1", labels=S1, affinity=HARD_AFFINITY),
        make_pod("e2", node="node2", labels=S1, affinity=STAY_S1_REGION),
    ]
    env = Env(nodes, pods, affinity_args={"hardPodAffinityWeight": 7})
    pod = PodInfo(make_pod("p", labels=S1))
    state = CycleState()
    assert env.affinity.pre_score(state, pod, env.nodes()) is None
    # node1: two required terms matched x 7; node2: the preferred term's weight 5
    assert state[ipa.PRE_SCORE_KEY].topology_score == {"region": {"China": 14, "India": 5}}
    assert [env.affinity.score(state, pod, ni)[0] for ni in env.nodes()] == [14, 5, 0]

    env = Env(nodes, pods[:1], affinity_args={"hardPodAffinityWeight": 0})
    status, _ = env.score(env.affinity, make_pod("p", labels=S1))
    assert status is not None and status.code == Code.SKIP

    env = Env(nodes, pods, affinity_args={"ignorePreferredTermsOfExistingPods": True})
    status, _ = env.score(env.affinity, make_pod("p", labels=S1))
    assert status is not None and status.code == Code.SKIP

    with pytest.raises(
        ValueError, match=r"hardPodAffinityWeight: Invalid value: 101: not in valid range \[0-100\]"
    ):
        InterPodAffinity({"hardPodAffinityWeight": 101}, None)  # type: ignore[arg-type]


def test_affinity_normalize_score_by_min_and_max() -> None:
    env = Env([n("node1", R_CHINA)], [make_pod("e", node="node1", labels=S1)])
    state = CycleState()
    pod = PodInfo(make_pod("p", affinity=STAY_S1_REGION))
    env.affinity.pre_score(state, pod, env.nodes())
    scores = [NodeScore("a", -10), NodeScore("b", 0), NodeScore("c", 5), NodeScore("d", 20)]
    env.affinity.normalize_score(state, pod, scores)
    assert [s.score for s in scores] == [0, 33, 50, 100]
    same = [NodeScore("a", 3), NodeScore("b", 3)]
    env.affinity.normalize_score(state, pod, same)
    assert [s.score for s in same] == [0, 0]


def test_affinity_queueing_hints() -> None:
    env = Env(REGION_NODES)
    events = {e.event.resource: e.hint for e in env.affinity.events_to_register()}
    pod = make_pod(
        "p", affinity=affinity(required=[term(SEC_S1, "region")], anti_required=[term(SEC_S2, "zone")])
    )
    pod_hint, node_hint = events["Pod"], events["Node"]
    assert pod_hint(pod, None, make_pod("a", node="node1", labels=S1)) == QueueingHint.QUEUE
    assert pod_hint(pod, None, make_pod("a", node="node1", labels=S2)) == QueueingHint.SKIP
    assert pod_hint(pod, None, make_pod("a", labels=S1)) == QueueingHint.SKIP  # unassigned
    assert pod_hint(pod, make_pod("a", node="node1", labels=S2), None) == QueueingHint.QUEUE
    assert (
        pod_hint(pod, make_pod("a", node="node1", labels=S2), make_pod("a", node="node1", labels={}))
        == QueueingHint.QUEUE
    )
    assert node_hint(pod, None, make_node("n", {"region": "r9"})) == QueueingHint.QUEUE
    assert node_hint(pod, make_node("n", {"x": "1"}), make_node("n", {"x": "2"})) == QueueingHint.SKIP
    assert node_hint(pod, make_node("n", {"zone": "a"}), make_node("n", {})) == QueueingHint.QUEUE


# == both, through the Framework ================================================================


def test_framework_runs_both_plugins() -> None:
    """PreFilter/Filter/PreScore/Score through the runtime, with weights, Skips and state keys."""
    pods = [
        make_pod("web-1", node="node1", labels={"app": "web"}),
        make_pod(
            "db-1",
            node="node3",
            labels={"app": "db"},
            affinity=affinity(anti_required=[term({"matchLabels": {"app": "web"}}, "region")]),
        ),
    ]
    env = Env(REGION_NODES[:3], pods)
    pod = PodInfo(
        make_pod(
            "web-2",
            labels={"app": "web"},
            spread=[constraint(1, HOSTNAME, "ScheduleAnyway", {"matchLabels": {"app": "web"}})],
            affinity=affinity(preferred=[weighted(10, term({"matchLabels": {"app": "web"}}, "region"))]),
        )
    )
    state = CycleState()
    _, status = env.fw.run_pre_filter_plugins(state, pod, env.nodes())
    assert status is None
    assert pts.NAME in state.skip_filter_plugins  # no hard constraints
    assert ipa.NAME not in state.skip_filter_plugins  # db-1's anti-affinity matches
    results = {ni.name: env.fw.run_filter_plugins(state, pod, ni) for ni in env.nodes()}
    assert codes(results) == {"node1": None, "node2": None, "node3": EXISTING}
    assert results["node3"].plugin == ipa.NAME
    feasible = env.nodes(["node1", "node2"])
    assert env.fw.run_pre_score_plugins(state, pod, feasible) is None
    totals, status = env.fw.run_score_plugins(state, pod, feasible)
    assert status is None
    # spread prefers node2 (no web pod), affinity ties (same region): 100*1 for spread + 0 for both
    assert totals[1] > totals[0]


# == the cross-cycle tallies agree with a fresh count ============================================


def test_tallies_agree_with_fresh_counts_as_the_cluster_changes() -> None:
    """Random pod adds/removes between cycles (and nodes leaving the list): the plugins' kept
    tallies give the same PreFilter/PreScore states as new plugin instances counting afresh."""
    import random

    rng = random.Random(7)
    nodes = [
        make_node(f"n{i}", {HOSTNAME: f"n{i}", **({"zone": f"z{i % 3}"} if i % 5 else {})}) for i in range(12)
    ]
    anti = affinity(anti_required=[term({"matchLabels": {"app": "a"}}, "zone")])
    pref = affinity(preferred=[weighted(3, term({"matchLabels": {"app": "b"}}, HOSTNAME))])

    def random_pod(i: int, node: str) -> Obj:
        app = rng.choice(["a", "b", "c"])
        aff = rng.choice([None, None, anti, pref])
        return make_pod(f"r{i}", node=node, labels={"app": app}, affinity=aff, terminating=rng.random() < 0.1)

    pods = [random_pod(i, f"n{rng.randrange(12)}") for i in range(40)]
    env = Env(nodes, pods, spread_args={"defaultingType": "List"})
    incoming = PodInfo(
        make_pod(
            "p",
            labels={"app": "a"},
            spread=[
                constraint(1, "zone", selector={"matchLabels": {"app": "a"}}),
                constraint(2, HOSTNAME, "ScheduleAnyway", {"matchLabels": {"app": "a"}}),
                constraint(1, "zone", "ScheduleAnyway", {"matchLabels": {"app": "b"}}),
            ],
            affinity=affinity(
                required=[term({"matchLabels": {"app": "b"}}, "zone")],
                anti_required=[term({"matchLabels": {"app": "c"}}, HOSTNAME)],
                preferred=[weighted(4, term({"matchLabels": {"app": "a"}}, "zone"))],
            ),
        )
    )

    def states(plugin_env: Env, infos: list[Any]) -> tuple[Any, ...]:
        plugin_env.snapshot.refresh_lists()
        s = CycleState()
        plugin_env.spread.pre_filter(s, incoming, infos)
        plugin_env.spread.pre_score(s, incoming, infos)
        plugin_env.affinity.pre_filter(s, incoming, infos)
        plugin_env.affinity.pre_score(s, incoming, infos)
        spread_f, spread_s = s[pts.PRE_FILTER_KEY], s[pts.PRE_SCORE_KEY]
        aff_f, aff_s = s[ipa.PRE_FILTER_KEY], s.get(ipa.PRE_SCORE_KEY)
        return (
            [dict(d) for d in spread_f.tp_counts],
            [p[1] for p in spread_f.critical_paths],
            spread_s.counts,
            {k: dict(d) for k, d in aff_f.existing_anti_affinity_counts.items() if d},
            {k: dict(d) for k, d in aff_f.affinity_counts.items() if d},
            {k: dict(d) for k, d in aff_f.anti_affinity_counts.items() if d},
            None if aff_s is None else aff_s.topology_score,
        )

    for round_ in range(40):
        for _ in range(rng.randrange(1, 4)):
            ni = env.snapshot.get(f"n{rng.randrange(12)}")
            if ni.pods and rng.random() < 0.5:
                ni.remove_pod(rng.choice(ni.pods))
            else:
                ni.add_pod(PodInfo(random_pod(1000 + round_, ni.name)))
        infos = [ni for ni in env.nodes() if rng.random() > 0.1]
        fresh = Env([], spread_args={"defaultingType": "List"})
        fresh.snapshot = env.snapshot
        fresh.ctx.snapshot = env.snapshot
        assert states(env, infos) == states(fresh, infos), round_
