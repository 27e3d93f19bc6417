"""Pure logic of the node IPAM, node lifecycle, taint eviction, disruption and resource quota
controllers (no cluster)."""

from __future__ import annotations

import ipaddress

import pytest

from k8py.apiserver.admission_plugins.resourcequota import evaluator_for_resource, scope_selectors
from k8py.controllers.disruption import (
    conditions_up_to_date,
    disruption_allowed_condition,
    pdb_selector,
    scaled_value,
    set_condition,
)
from k8py.controllers.nodeipam import CIDRRangeFull, CidrSet, node_pod_cidrs
from k8py.controllers.nodelifecycle import (
    NodeLifecycleController,
    RateLimitedTimedQueue,
    TokenBucket,
    zone_key,
)
from k8py.controllers.resourcequota import named_resources, usage_stats
from k8py.controllers.tainteviction import FOREVER, matching_tolerations, min_toleration_time


def net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text)


def test_cidr_set_allocates_round_robin_and_releases() -> None:
    s = CidrSet(net("10.244.0.0/22"), 24)
    assert [str(s.allocate_next()) for _ in range(2)] == ["10.244.0.0/24", "10.244.1.0/24"]
    s.occupy(net("10.244.2.0/24"))  # restored from a node
    assert str(s.allocate_next()) == "10.244.3.0/24"
    with pytest.raises(CIDRRangeFull):
        s.allocate_next()
    s.release(net("10.244.1.0/24"))
    assert str(s.allocate_next()) == "10.244.1.0/24"
    # a larger range (a Service CIDR overlapping the cluster CIDR) occupies every subnet it covers
    t = CidrSet(net("10.0.0.0/16"), 24)
    t.occupy(net("10.0.0.0/12"))
    assert len(t.used) == t.max_cidrs
    with pytest.raises(ValueError, match="out of the range"):
        t.occupy(net("192.168.0.0/24"))
    with pytest.raises(ValueError):
        CidrSet(net("10.0.0.0/24"), 16)
    v6 = CidrSet(net("fd00::/48"), 64)
    assert str(v6.allocate_next()) == "fd00::/64" and str(v6.allocate_next()) == "fd00:0:0:1::/64"


def test_node_pod_cidrs() -> None:
    assert node_pod_cidrs({"spec": {"podCIDR": "10.0.0.0/24"}}) == ["10.0.0.0/24"]
    assert node_pod_cidrs({"spec": {"podCIDR": "a", "podCIDRs": ["a", "b"]}}) == ["a", "b"]
    assert node_pod_cidrs({"spec": {}}) == []


def test_tolerations() -> None:
    unreachable = {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}
    not_ready = {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}
    t300 = {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
    forever = {"operator": "Exists"}
    assert matching_tolerations([unreachable], []) == (False, [])
    assert matching_tolerations([unreachable], [t300]) == (True, [t300])
    assert matching_tolerations([unreachable, not_ready], [t300]) == (False, [])
    assert matching_tolerations([unreachable, not_ready], [t300, forever]) == (True, [t300, forever])
    assert min_toleration_time([t300, forever]) == 300
    assert min_toleration_time([forever]) == FOREVER
    assert min_toleration_time([]) == 0
    assert min_toleration_time([{**t300, "tolerationSeconds": -5}, forever]) == 0


def test_zone_state_and_rate_limited_queue() -> None:
    nlc = NodeLifecycleController.__new__(NodeLifecycleController)
    nlc.unhealthy_zone_threshold = 0.55
    ready, unready = {"status": "True"}, {"status": "Unknown"}
    assert nlc.compute_zone_state([ready, unready]) == (1, "Normal")
    assert nlc.compute_zone_state([unready, None]) == (2, "FullDisruption")
    assert nlc.compute_zone_state([ready, unready, unready, unready]) == (3, "PartialDisruption")
    assert nlc.compute_zone_state([ready, ready, unready, unready]) == (2, "Normal")  # not more than 2 unready
    assert zone_key({"metadata": {"labels": {"topology.kubernetes.io/zone": "a"}}}) == ":\x00:a"
    assert zone_key({"metadata": {}}) == ""

    now = [0.0]
    bucket = TokenBucket(0.1, 1, clock=lambda: now[0])
    assert bucket.try_accept() and not bucket.try_accept()
    now[0] = 10.0
    assert bucket.try_accept()
    assert not TokenBucket(0.0).try_accept()
    q = RateLimitedTimedQueue(1.0)
    assert q.add("a", "uid-a") and not q.add("a", "uid-a") and q.remove("a") and not q.remove("a")


async def test_rate_limited_queue_try() -> None:
    q = RateLimitedTimedQueue(0.0001)  # one token (the burst), then practically none
    q.add("a", "1")
    q.add("b", "2")
    seen: list[str] = []

    async def fn(item):  # type: ignore[no-untyped-def]
        seen.append(item.value)
        return True, 0.0

    await q.try_(fn)
    await q.try_(fn)
    assert seen == ["a"] and list(q.items) == ["b"]


def test_pdb_helpers() -> None:
    assert scaled_value(3, 10, round_up=True) == 3
    assert scaled_value("50%", 3, round_up=True) == 2
    assert scaled_value("10%", 1, round_up=True) == 1
    assert not pdb_selector({"spec": {}}).matches({"a": "b"})  # null: nothing
    assert pdb_selector({"spec": {"selector": {}}}).matches({"a": "b"})  # empty: everything (policy/v1)
    status = {"disruptionsAllowed": 1, "observedGeneration": 2}
    cond = disruption_allowed_condition(status)
    assert (cond["status"], cond["reason"]) == ("True", "SufficientPods")
    conditions = set_condition([], cond)
    stamp = conditions[0]["lastTransitionTime"]
    pdb = {"metadata": {"generation": 2}, "status": {**status, "conditions": conditions}}
    assert conditions_up_to_date(pdb)
    again = set_condition(conditions, {**cond, "observedGeneration": 3})
    assert again[0]["lastTransitionTime"] == stamp and again[0]["observedGeneration"] == 3
    assert not conditions_up_to_date({"metadata": {"generation": 3}, "status": pdb["status"]})


def test_quota_usage_matches_admission() -> None:
    assert named_resources(["count/deployments.apps", "configmaps", "pods", "requests.cpu"]) == {
        ("apps", "deployments"), ("", "configmaps"),
    }  # fmt: skip
    pods = evaluator_for_resource("", "pods")
    assert pods is not None
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "250m"}}}]}}
    done = {**pod, "status": {"phase": "Succeeded"}}
    used = usage_stats(pods, [pod, pod, done], ["pods", "requests.cpu", "count/pods"], [])
    assert {k: str(v) for k, v in used.items()} == {"pods": "2", "requests.cpu": "500m", "count/pods": "3"}
    quota = {"spec": {"scopes": ["BestEffort"]}}
    used = usage_stats(pods, [pod], ["pods"], scope_selectors(quota))
    assert str(used["pods"]) == "0"
    configmaps = evaluator_for_resource("", "configmaps")
    assert configmaps is not None
    assert {k: str(v) for k, v in usage_stats(configmaps, [{}, {}], ["configmaps"], []).items()} == {"configmaps": "2"}


class _FakeClient:
    def __init__(self) -> None:
        self.patches: list[tuple[str, dict]] = []

    async def patch(self, res, name, patch, **kw):  # type: ignore[no-untyped-def]
        self.patches.append((name, patch))
        return {}


async def test_range_allocator_full_then_released() -> None:
    from k8py.client.informer import SharedInformerFactory
    from k8py.controllers.manager import ControllerContext, Options
    from k8py.controllers.nodeipam import NodeIpamController

    client = _FakeClient()
    ctx = ControllerContext(client, SharedInformerFactory(client),  # type: ignore[arg-type]
                            Options(cluster_cidr="10.0.0.0/30", node_cidr_mask_size=31, service_cidr=""))
    ipam = NodeIpamController(ctx)
    events: list[tuple[str, str]] = []
    ipam.recorder.event = lambda obj, type_, reason, message, **kw: events.append((reason, message))  # type: ignore[method-assign]
    nodes = {n: {"metadata": {"name": n, "uid": f"uid-{n}"}, "spec": {}} for n in ("a", "b", "c")}
    nodes["a"]["spec"] = {"podCIDR": "10.0.0.0/31", "podCIDRs": ["10.0.0.0/31"]}  # allocated by an earlier run
    for node in nodes.values():
        ipam.nodes.indexer.add(node)
    ipam._occupy("a", ["10.0.0.0/31"])
    await ipam.sync("b")
    assert client.patches == [("b", {"metadata": {"uid": "uid-b"},
                                     "spec": {"podCIDR": "10.0.0.2/31", "podCIDRs": ["10.0.0.2/31"]}})]
    with pytest.raises(CIDRRangeFull):
        await ipam.sync("c")
    assert events == [("CIDRNotAvailable", "Node c status is now: CIDRNotAvailable")]
    ipam._node_deleted(nodes["a"])  # a's subnet is free again
    await ipam.sync("c")
    assert client.patches[-1][1]["spec"]["podCIDR"] == "10.0.0.0/31"
