"""The scheduling queue, the scheduler cache and its snapshots, and the configuration."""

from __future__ import annotations

import pytest

from k8py.scheduler.cache import Cache
from k8py.scheduler.config import ConfigError, load_configuration
from k8py.scheduler.framework.interface import (
    ActionType,
    ClusterEvent,
    ClusterEventWithHint,
    Code,
    EventResource,
    QueueingHint,
    Status,
)
from k8py.scheduler.framework.types import NodeInfo, PodInfo
from k8py.scheduler.plugins.queuesort import PrioritySort
from k8py.scheduler.queue import SchedulingQueue
from k8py.scheduler.schedule_one import Diagnosis, FitError, num_feasible_nodes_to_find
from k8py.scheduler.snapshot import Snapshot


def pod(
    name: str,
    *,
    priority: int = 0,
    node: str = "",
    cpu: str | None = None,
    uid: str | None = None,
    gates: list[str] | None = None,
    labels: dict[str, str] | None = None,
) -> dict:
    container: dict = {"name": "c", "image": "busybox"}
    if cpu:
        container["resources"] = {"requests": {"cpu": cpu}}
    spec: dict = {"containers": [container], "priority": priority}
    if node:
        spec["nodeName"] = node
    if gates:
        spec["schedulingGates"] = [{"name": g} for g in gates]
    return {
        "metadata": {
            "name": name,
            "namespace": "default",
            "uid": uid or f"uid-{name}",
            "labels": labels or {},
        },
        "spec": spec,
    }


def node(name: str, *, cpu: str = "4", zone: str | None = None, images: list | None = None) -> dict:
    labels = {"kubernetes.io/hostname": name}
    if zone:
        labels["topology.kubernetes.io/zone"] = zone
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {},
        "status": {"allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"}, "images": images or []},
    }


def queue(**kw) -> SchedulingQueue:
    sort = PrioritySort({}, None)  # type: ignore[arg-type]
    return SchedulingQueue(sort.less, **kw)


def gate(p: dict) -> Status | None:
    gates = p["spec"].get("schedulingGates")
    if gates:
        return Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, "gated", plugin="SchedulingGates")
    return None


async def test_active_queue_orders_by_priority_then_arrival() -> None:
    q = queue()
    q.add(pod("low", priority=1))
    q.add(pod("high", priority=100))
    q.add(pod("low2", priority=1))
    names = [(await q.pop()).pod_info.name for _ in range(3)]  # type: ignore[union-attr]
    assert names == ["high", "low", "low2"]
    assert q.scheduling_cycle == 3


async def test_backoff_doubles_to_the_maximum() -> None:
    now = [100.0]
    q = queue(initial_backoff=1, max_backoff=10, clock=lambda: now[0])
    q.add(pod("p"))
    qpi = await q.pop()
    assert qpi is not None
    assert [q.backoff_duration(qpi) for qpi.attempts in range(1, 7)] == [1, 2, 4, 8, 10, 10]
    qpi.attempts = 1
    q.add_unschedulable_if_not_present(qpi, q.scheduling_cycle)  # an error: no plugins to blame
    assert q.pending()["backoff"] == 1
    q.flush_backoff_completed()
    assert q.pending()["backoff"] == 1
    now[0] += 1.01
    q.flush_backoff_completed()
    assert q.pending() == {"active": 1, "backoff": 0, "unschedulable": 0, "gated": 0}


async def test_unschedulable_pods_move_only_on_registered_events() -> None:
    now = [0.0]
    events = {
        "NodeResourcesFit": [ClusterEventWithHint(ClusterEvent(EventResource.NODE, ActionType.ADD))],
        "TaintToleration": [
            ClusterEventWithHint(
                ClusterEvent(EventResource.NODE, ActionType.UPDATE_NODE_TAINT),
                hint=lambda p, old, new: QueueingHint.QUEUE if new and new.get("ok") else QueueingHint.SKIP,
            )
        ],
    }
    q = queue(events=events, clock=lambda: now[0])
    for name, plugin in (("fit", "NodeResourcesFit"), ("taint", "TaintToleration")):
        q.add(pod(name))
        qpi = await q.pop()
        assert qpi is not None
        qpi.unschedulable_plugins = {plugin}
        q.add_unschedulable_if_not_present(qpi, q.scheduling_cycle - 1)
    assert q.pending()["unschedulable"] == 2
    q.move_all_to_active_or_backoff(ClusterEvent(EventResource.ASSIGNED_POD, ActionType.DELETE))
    assert q.pending()["unschedulable"] == 2  # nobody registered for pod deletions
    now[0] = 50.0  # past every backoff
    q.move_all_to_active_or_backoff(
        ClusterEvent(EventResource.NODE, ActionType.UPDATE_NODE_TAINT), {}, {"ok": False}
    )
    assert q.pending()["unschedulable"] == 2  # the hint said skip
    q.move_all_to_active_or_backoff(
        ClusterEvent(EventResource.NODE, ActionType.UPDATE_NODE_TAINT), {}, {"ok": True}
    )
    assert set(q.unschedulable) == {"uid-fit"} and q.pending()["active"] == 1
    q.move_all_to_active_or_backoff(ClusterEvent(EventResource.NODE, ActionType.ADD))
    assert q.pending()["active"] == 2


async def test_move_request_during_a_cycle_sends_the_pod_to_backoff() -> None:
    events = {"NodeResourcesFit": [ClusterEventWithHint(ClusterEvent(EventResource.NODE, ActionType.ADD))]}
    q = queue(events=events)
    q.add(pod("p"))
    qpi = await q.pop()
    assert qpi is not None
    cycle = q.scheduling_cycle
    q.move_all_to_active_or_backoff(ClusterEvent(EventResource.NODE, ActionType.ADD))  # while "scheduling"
    qpi.unschedulable_plugins = {"NodeResourcesFit"}
    q.add_unschedulable_if_not_present(qpi, cycle)
    assert q.pending()["backoff"] == 1 and not q.unschedulable


async def test_gated_pods_wait_until_an_update_lifts_the_gate() -> None:
    q = queue(pre_enqueue=gate)
    gated = pod("g", gates=["example.com/wait"])
    q.add(gated)
    assert q.pending() == {"active": 0, "backoff": 0, "unschedulable": 0, "gated": 1}
    q.move_all_to_active_or_backoff(ClusterEvent(EventResource.NODE, ActionType.ADD))
    assert q.pending()["gated"] == 1
    ungated = pod("g")
    q.update(gated, ungated)
    assert q.pending() == {"active": 1, "backoff": 0, "unschedulable": 0, "gated": 0}


async def test_deleted_pods_leave_every_queue() -> None:
    q = queue()
    q.add(pod("a"))
    q.add(pod("b"))
    q.delete(pod("a"))
    got = await q.pop()
    assert got is not None and got.pod_info.name == "b"
    assert len(q) == 0


def test_cache_assume_confirm_forget_and_incremental_snapshot() -> None:
    cache = Cache()
    for i in range(3):
        cache.add_node(node(f"n{i}"))
    snap = Snapshot()
    cache.update_snapshot(snap)
    assert [ni.name for ni in snap.node_infos()] == ["n0", "n1", "n2"]
    before = {ni.name: ni for ni in snap.node_infos()}

    p = PodInfo(pod("p", cpu="500m"))
    cache.assume_pod(p, "n1")
    assert cache.is_assumed_pod("uid-p")
    cache.update_snapshot(snap)
    after = {ni.name: ni for ni in snap.node_infos()}
    assert after["n0"] is before["n0"] and after["n2"] is before["n2"]  # untouched nodes are not copied
    assert after["n1"] is not before["n1"] and after["n1"].requested.milli_cpu == 500
    assert before["n1"].requested.milli_cpu == 0  # the old snapshot entry was not mutated

    cache.add_pod(pod("p", cpu="500m", node="n1"))  # the informer confirms the binding
    assert not cache.is_assumed_pod("uid-p")
    cache.update_snapshot(snap)
    assert snap.get("n1").requested.milli_cpu == 500  # type: ignore[union-attr]
    assert len(snap.get("n1").pods) == 1  # type: ignore[union-attr]

    q = PodInfo(pod("q", cpu="1"))
    cache.assume_pod(q, "n2")
    cache.forget_pod(q)
    cache.update_snapshot(snap)
    assert snap.get("n2").requested.milli_cpu == 0  # type: ignore[union-attr]

    cache.remove_pod(pod("p", node="n1"))
    cache.remove_node(node("n0"))
    cache.update_snapshot(snap)
    assert [ni.name for ni in snap.node_infos()] == ["n1", "n2"]
    assert snap.get("n1").requested.milli_cpu == 0  # type: ignore[union-attr]


def test_pods_of_unknown_nodes_are_kept_until_the_node_arrives() -> None:
    cache = Cache()
    cache.add_pod(pod("early", cpu="1", node="late"))
    snap = Snapshot()
    cache.update_snapshot(snap)
    assert snap.num_nodes() == 0
    cache.add_node(node("late"))
    cache.update_snapshot(snap)
    assert snap.get("late").requested.milli_cpu == 1000  # type: ignore[union-attr]


def test_node_order_interleaves_zones_and_images_are_summarised() -> None:
    cache = Cache()
    img = [{"names": ["registry/app:v1"], "sizeBytes": 100}]
    for name, zone in (("a1", "a"), ("a2", "a"), ("a3", "a"), ("b1", "b"), ("b2", "b")):
        cache.add_node(node(name, zone=zone, images=img if name in ("a1", "b1") else None))
    assert cache.node_order() == ["a1", "b1", "a2", "b2", "a3"]
    snap = Snapshot()
    cache.update_snapshot(snap)
    state = snap.get("b1").image_states["registry/app:v1"]  # type: ignore[union-attr]
    assert (state.size, state.num_nodes) == (100, 2)


def test_node_info_requests_count_init_containers_overhead_and_defaults() -> None:
    p = pod("p")
    p["spec"]["containers"] = [
        {"name": "a", "resources": {"requests": {"cpu": "200m", "memory": "1Gi"}}},
        {"name": "b"},  # no requests: the scorers count 100m and 200Mi
    ]
    p["spec"]["initContainers"] = [{"name": "i", "resources": {"requests": {"cpu": "2"}}}]
    p["spec"]["overhead"] = {"cpu": "10m"}
    pi = PodInfo(p)
    assert pi.requests().milli_cpu == 2010 and pi.requests().memory == 1 << 30
    assert pi.non_zero_requests() == (2010, (1 << 30) + 200 * 1024 * 1024)
    ni = NodeInfo(node("n"), [pi])
    assert ni.requested.milli_cpu == 2010 and ni.non_zero_cpu == 2010
    ni.remove_pod(pi)
    assert ni.requested.milli_cpu == 0 and ni.non_zero_mem == 0


def test_feasible_nodes_to_find_is_adaptive() -> None:
    assert num_feasible_nodes_to_find(0, 50) == 50
    assert num_feasible_nodes_to_find(0, 1000) == 420  # 50 - 1000/125 = 42 %
    assert num_feasible_nodes_to_find(0, 5000) == 500  # 10 %
    assert num_feasible_nodes_to_find(0, 100_000) == 5000  # floor of 5 %
    assert num_feasible_nodes_to_find(1, 1000) == 100  # never fewer than 100
    assert num_feasible_nodes_to_find(100, 1000) == 1000


def test_fit_error_message_is_kube_schedulers() -> None:
    d = Diagnosis()
    d.node_to_status.set("a", Status(Code.UNSCHEDULABLE, "Insufficient cpu"))
    d.node_to_status.set(
        "b",
        Status(
            Code.UNSCHEDULABLE_AND_UNRESOLVABLE,
            "node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }",
        ),
    )
    d.node_to_status.set("c", Status(Code.UNSCHEDULABLE, "Insufficient cpu", "Insufficient memory"))
    d.post_filter_msg = "preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling"
    err = FitError(PodInfo(pod("p")), 3, d)
    assert str(err) == (
        "0/3 nodes are available: 1 Insufficient memory, 1 node(s) had untolerated taint "
        "{node-role.kubernetes.io/control-plane: }, 2 Insufficient cpu. preemption: 0/3 nodes are available: "
        "3 Preemption is not helpful for scheduling."
    )


def test_configuration_defaults_and_profiles(tmp_path) -> None:
    cfg = load_configuration(None)
    (profile,) = cfg["profiles"]
    assert profile["schedulerName"] == "default-scheduler"
    names = [e["name"] for e in profile["plugins"]["multiPoint"]["enabled"]]
    assert (
        names[:3] == ["SchedulingGates", "PrioritySort", "NodeUnschedulable"] and names[-1] == "DefaultBinder"
    )
    path = tmp_path / "config.yaml"
    path.write_text(
        "apiVersion: kubescheduler.config.k8s.io/v1\n"
        "kind: KubeSchedulerConfiguration\n"
        "percentageOfNodesToScore: 50\n"
        "profiles:\n"
        "- schedulerName: default-scheduler\n"
        "- schedulerName: no-scoring\n"
        "  plugins:\n"
        "    multiPoint:\n"
        "      disabled: [{name: ImageLocality}]\n"
        "    score:\n"
        "      disabled: [{name: '*'}]\n"
        "  pluginConfig:\n"
        "  - name: NodeResourcesFit\n"
        "    args: {scoringStrategy: {type: MostAllocated}}\n"
    )
    cfg = load_configuration(path)
    assert cfg["percentageOfNodesToScore"] == 50
    second = cfg["profiles"][1]
    assert "ImageLocality" not in [e["name"] for e in second["plugins"]["multiPoint"]["enabled"]]
    args = {pc["name"]: pc["args"] for pc in second["pluginConfig"]}
    assert args["NodeResourcesFit"]["scoringStrategy"]["type"] == "MostAllocated"
    path.write_text("apiVersion: kubescheduler.config.k8s.io/v1\nprofiles: [{}, {}]\n")
    with pytest.raises(ConfigError, match="Duplicate"):
        load_configuration(path)
    path.write_text("apiVersion: kubescheduler.config.k8s.io/v1beta9\n")
    with pytest.raises(ConfigError, match="v1beta9"):
        load_configuration(path)
