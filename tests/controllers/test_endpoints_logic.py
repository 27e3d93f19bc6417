"""The pure parts of the endpoint controllers: the EndpointSlice reconciler's plans, the
tracker, the Endpoints subsets (repacking, truncation), ports and trigger times."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

from k8py.controllers.endpoint import MAX_CAPACITY, endpoint_subsets, repack_subsets, truncate_endpoints
from k8py.controllers.endpointslice import (
    CONTROLLER_NAME,
    EndpointSliceTracker,
    Plan,
    TriggerTimeTracker,
    find_port,
    format_trigger_time,
    reconcile,
    services_to_update_on_pod_change,
)

Obj = dict[str, Any]
_uid = itertools.count()


def svc(name: str = "web", **spec: Any) -> Obj:
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"svc-{name}",
            "creationTimestamp": "2025-01-01T00:00:00Z",
        },
        "spec": {
            "selector": {"app": "web"},
            "clusterIP": "10.96.0.10",
            "ipFamilies": ["IPv4"],
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
            **spec,
        },
    }


def pod(name: str, ip: str, *, port: int = 8080, ready: bool = True, node: str = "n1", **md: Any) -> Obj:
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"uid-{name}",
            "labels": {"app": "web"},
            "resourceVersion": str(next(_uid)),
            **md,
        },
        "spec": {
            "nodeName": node,
            "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": port}]}],
        },
        "status": {
            "phase": "Running",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "lastTransitionTime": "2025-01-01T00:01:00Z",
                }
            ],
        },
    }


NODES = {"n1": {"metadata": {"name": "n1", "labels": {"topology.kubernetes.io/zone": "z1"}}}}


def node(name: str) -> Obj | None:
    return NODES.get(name)


def pods(n: int, port: int = 8080) -> list[Obj]:
    return [pod(f"p{i}", f"10.0.{i // 250}.{i % 250 + 1}", port=port) for i in range(n)]


def written(plan: Plan, s: Obj) -> list[Obj]:
    """Slices as they would be after the plan (names given to creates)."""
    out = []
    for i, x in enumerate(plan.create):
        x = {**x, "metadata": {**x["metadata"], "name": f"new-{i}", "uid": f"new-{i}"}}
        out.append(x)
    return out + plan.update


def test_slices_hold_at_most_100_endpoints() -> None:
    plan, errors = reconcile(svc(), pods(250), [], node)
    assert not errors and not plan.update and not plan.delete
    assert sorted(len(s["endpoints"]) for s in plan.create) == [50, 100, 100]
    s = plan.create[0]
    assert s["metadata"]["generateName"] == "web-"
    assert s["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == CONTROLLER_NAME
    assert s["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    assert s["endpoints"][0]["zone"] == "z1"


def test_unchanged_slices_are_not_touched_and_new_endpoints_fill_the_best_fit() -> None:
    first, _ = reconcile(svc(), pods(250), [], node)
    existing = written(first, svc())
    again, _ = reconcile(svc(), pods(250), existing, node)
    assert not again
    more, _ = reconcile(svc(), pods(251), existing, node)
    assert not more.create and not more.delete
    assert [len(s["endpoints"]) for s in more.update] == [51]  # the slice that had 50


def test_removed_endpoints_update_their_slice_and_empty_slices_go() -> None:
    first, _ = reconcile(svc(), pods(150), [], node)
    existing = written(first, svc())
    plan, _ = reconcile(svc(), pods(100)[:50], existing, node)  # p0..p49 remain
    kept = {ep["targetRef"]["name"] for s in plan.update for ep in s["endpoints"]}
    unchanged = [
        s
        for s in existing
        if s["metadata"]["name"] not in {x["metadata"]["name"] for x in plan.update + plan.delete}
    ]
    kept |= {ep["targetRef"]["name"] for s in unchanged for ep in s["endpoints"]}
    assert kept == {f"p{i}" for i in range(50)}
    assert not plan.create


def test_no_endpoints_means_one_placeholder_which_is_kept() -> None:
    plan, _ = reconcile(svc(), [], [], node)
    assert len(plan.create) == 1 and plan.create[0]["endpoints"] == [] and plan.create[0]["ports"] == []
    existing = written(plan, svc())
    assert not reconcile(svc(), [], existing, node)[0]
    # pods come: the placeholder goes (the controller turns that delete into an update)
    plan, _ = reconcile(svc(), pods(2), existing, node)
    assert len(plan.create) == 1 and [s["metadata"]["name"] for s in plan.delete] == ["new-0"]


def test_named_port_mapping_per_pod() -> None:
    plan, _ = reconcile(svc(), [pod("a", "10.0.0.1", port=8080), pod("b", "10.0.0.2", port=9090)], [], node)
    assert sorted(s["ports"][0]["port"] for s in plan.create) == [8080, 9090]
    # a pod without the named port is published without ports
    bare = pod("c", "10.0.0.3")
    bare["spec"]["containers"][0]["ports"] = []
    plan, _ = reconcile(svc(), [bare], [], node)
    assert plan.create[0]["ports"] == [] and len(plan.create[0]["endpoints"]) == 1


def test_conditions_and_exclusions() -> None:
    terminating = pod("t", "10.0.0.2", deletionTimestamp="2025-01-01T00:02:00Z")
    finished = pod("f", "10.0.0.3")
    finished["status"]["phase"] = "Succeeded"
    no_ip = pod("x", "10.0.0.4")
    no_ip["status"] = {"phase": "Pending"}
    plan, _ = reconcile(
        svc(),
        [pod("r", "10.0.0.1"), pod("u", "10.0.0.5", ready=False), terminating, finished, no_ip],
        [],
        node,
    )
    got = {ep["targetRef"]["name"]: ep["conditions"] for ep in plan.create[0]["endpoints"]}
    assert got == {
        "r": {"ready": True, "serving": True, "terminating": False},
        "u": {"ready": False, "serving": False, "terminating": False},
        "t": {"ready": False, "serving": True, "terminating": True},
    }
    plan, _ = reconcile(
        svc(publishNotReadyAddresses=True), [pod("u", "10.0.0.5", ready=False), terminating], [], node
    )
    assert all(ep["conditions"]["ready"] for ep in plan.create[0]["endpoints"])


def test_unknown_node_skips_the_pod_with_an_error() -> None:
    plan, errors = reconcile(svc(), [pod("a", "10.0.0.1", node="gone"), pod("b", "10.0.0.2")], [], node)
    assert [ep["targetRef"]["name"] for ep in plan.create[0]["endpoints"]] == ["b"]
    assert errors == ["skipping Pod a for Service ns/web: Node gone Not Found"]
    plan, errors = reconcile(
        svc(publishNotReadyAddresses=True), [pod("a", "10.0.0.1", node="gone")], [], node
    )
    assert not errors and "zone" not in plan.create[0]["endpoints"][0]


def test_address_types_follow_ip_families() -> None:
    first, _ = reconcile(svc(), pods(1), [], node)
    existing = written(first, svc())
    v6 = pod("v6", "fd00::1")
    plan, _ = reconcile(svc(ipFamilies=["IPv6"], clusterIP="fd00:10::1"), [v6], existing, node)
    assert [s["addressType"] for s in plan.create] == ["IPv6"] and plan.delete == existing
    assert plan.create[0]["endpoints"][0]["addresses"] == ["fd00::1"]


def test_headless_label_and_service_labels() -> None:
    s = svc(clusterIP="None")
    s["metadata"]["labels"] = {"tier": "front", "kubernetes.io/service-name": "spoof"}
    plan, _ = reconcile(s, pods(1), [], node)
    assert plan.create[0]["metadata"]["labels"] == {
        "tier": "front",
        "service.kubernetes.io/headless": "",
        "kubernetes.io/service-name": "web",
        "endpointslice.kubernetes.io/managed-by": CONTROLLER_NAME,
    }
    # a label change on the Service updates the slice
    existing = written(plan, s)
    s2 = svc(clusterIP="None")
    s2["metadata"]["labels"] = {"tier": "back"}
    plan, _ = reconcile(s2, pods(1), existing, node)
    assert [x["metadata"]["labels"]["tier"] for x in plan.update] == ["back"]


def test_prefer_close_hints() -> None:
    s = svc(trafficDistribution="PreferClose")
    plan, _ = reconcile(s, [pod("a", "10.0.0.1"), pod("u", "10.0.0.2", ready=False)], [], node)
    hints = {ep["targetRef"]["name"]: ep.get("hints") for ep in plan.create[0]["endpoints"]}
    assert hints == {"a": {"forZones": [{"name": "z1"}]}, "u": None}
    existing = written(plan, s)
    assert not reconcile(s, [pod("a", "10.0.0.1"), pod("u", "10.0.0.2", ready=False)], existing, node)[0]
    # the hints go when the Service stops asking for them
    plan, _ = reconcile(svc(), [pod("a", "10.0.0.1"), pod("u", "10.0.0.2", ready=False)], existing, node)
    assert len(plan.update) == 1 and all("hints" not in ep for ep in plan.update[0]["endpoints"])


def test_slices_of_another_service_uid_are_deleted() -> None:
    first, _ = reconcile(svc(), pods(1), [], node)
    existing = written(first, svc())
    newer = svc()
    newer["metadata"]["uid"] = "svc-web-2"
    plan, _ = reconcile(newer, pods(1), existing, node)
    assert plan.delete == existing and len(plan.create) == 1


def test_tracker() -> None:
    t = EndpointSliceTracker()
    s = svc()
    slice_ = {
        "metadata": {
            "name": "web-x",
            "namespace": "ns",
            "uid": "s1",
            "generation": 1,
            "labels": {"kubernetes.io/service-name": "web"},
        }
    }
    assert t.should_sync(slice_) and not t.stale_slices(s, [])
    t.update(slice_)
    assert not t.should_sync(slice_)
    assert t.stale_slices(s, [])  # written but not in the cache yet
    assert not t.stale_slices(s, [slice_])
    assert t.stale_slices(s, [{**slice_, "metadata": {**slice_["metadata"], "generation": 0}}])
    assert t.should_sync({**slice_, "metadata": {**slice_["metadata"], "generation": 2}})
    t.expect_deletion(slice_)
    assert t.stale_slices(s, [slice_]) and not t.stale_slices(s, [])
    assert t.handle_deletion(slice_) and not t.has(slice_)
    t.update(slice_)
    assert not t.handle_deletion(slice_)  # someone else deleted it
    # a new Service of the same name: old writes do not count
    t.update(slice_)
    recreated = svc()
    recreated["metadata"]["uid"] = "other"
    t.stale_slices(s, [slice_])
    assert not t.stale_slices(recreated, [])


def test_services_to_update_on_pod_change() -> None:
    class Informer:
        class indexer:  # noqa: N801
            @staticmethod
            def by_index(_name: str, _ns: str) -> list[Obj]:
                a, b = svc("a"), svc("b")
                b["spec"]["selector"] = {"app": "other"}
                none = svc("none")
                none["spec"].pop("selector")
                return [a, b, none]

    old = pod("p", "10.0.0.1")
    assert services_to_update_on_pod_change(Informer, old, old) == set()  # resync
    same = {**old, "metadata": {**old["metadata"], "resourceVersion": "x", "annotations": {"a": "b"}}}
    assert services_to_update_on_pod_change(Informer, old, same) == set()
    unready = pod("p", "10.0.0.1", ready=False)
    assert services_to_update_on_pod_change(Informer, old, unready) == {"ns/a"}
    moved = {**old, "metadata": {**old["metadata"], "resourceVersion": "y", "labels": {"app": "other"}}}
    assert services_to_update_on_pod_change(Informer, old, moved) == {"ns/a", "ns/b"}


def test_find_port() -> None:
    p = pod("a", "10.0.0.1")
    p["spec"]["initContainers"] = [
        {"name": "side", "restartPolicy": "Always", "ports": [{"name": "metrics", "containerPort": 9100}]},
        {"name": "init", "ports": [{"name": "setup", "containerPort": 1}]},
    ]
    assert find_port(p, {"targetPort": "http"}) == 8080
    assert find_port(p, {"targetPort": "http", "protocol": "UDP"}) is None
    assert find_port(p, {"targetPort": "metrics"}) == 9100
    assert find_port(p, {"targetPort": "setup"}) is None
    assert find_port(p, {"targetPort": 7000}) == 7000
    assert find_port(p, {"port": 81}) == 81


def test_trigger_times() -> None:
    t = TriggerTimeTracker()
    s = svc()
    a = pod("a", "10.0.0.1")
    assert t.compute(s, [a]) == dt.datetime(2025, 1, 1, tzinfo=dt.UTC)  # first sync: the Service's creation
    assert t.compute(s, [a]) is None  # nothing changed since
    b = pod("b", "10.0.0.2")
    b["status"]["conditions"][0]["lastTransitionTime"] = "2025-01-01T00:05:00Z"
    a2 = pod("a", "10.0.0.1")
    a2["status"]["conditions"][0]["lastTransitionTime"] = "2025-01-01T00:03:00Z"
    assert t.compute(s, [a2, b]) == dt.datetime(2025, 1, 1, 0, 3, tzinfo=dt.UTC)
    assert format_trigger_time(dt.datetime(2025, 1, 1, 0, 3, tzinfo=dt.UTC)) == "2025-01-01T00:03:00Z"
    assert (
        format_trigger_time(dt.datetime(2025, 1, 1, 0, 3, 0, 120000, tzinfo=dt.UTC))
        == "2025-01-01T00:03:00.12Z"
    )


def test_endpoints_subsets_repacked() -> None:
    s = svc()
    s["spec"]["ports"].append({"name": "plain", "port": 81, "targetPort": 7070, "protocol": "TCP"})
    subsets = repack_subsets(
        endpoint_subsets(
            s, [pod("a", "10.0.0.10"), pod("b", "10.0.0.9"), pod("c", "10.0.0.8", ready=False, port=9090)]
        )
    )
    assert [
        (
            sorted(a["ip"] for a in x.get("addresses", [])),
            sorted(a["ip"] for a in x.get("notReadyAddresses", [])),
            [p["port"] for p in x["ports"]],
        )
        for x in subsets
    ] == [
        (["10.0.0.10", "10.0.0.9"], [], [8080]),
        ([], ["10.0.0.8"], [9090]),
        (["10.0.0.10", "10.0.0.9"], ["10.0.0.8"], [7070]),
    ]
    assert [a["ip"] for a in subsets[0]["addresses"]] == ["10.0.0.9", "10.0.0.10"]  # numeric order
    # an address both ready and not ready for the same port counts as ready
    twice = [
        {"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 1}]},
        {"notReadyAddresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 1}]},
    ]
    assert repack_subsets(twice) == [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 1}]}]
    # headless without ports: subsets without ports
    headless = svc(clusterIP="None", ports=[])
    assert repack_subsets(endpoint_subsets(headless, [pod("a", "10.0.0.1")]))[0].keys() == {"addresses"}
    # terminating pods are left out unless publishNotReadyAddresses
    gone = pod("g", "10.0.0.7", deletionTimestamp="2025-01-01T00:02:00Z")
    assert endpoint_subsets(s, [gone]) == []
    assert endpoint_subsets(svc(publishNotReadyAddresses=True), [gone])[0]["addresses"][0]["ip"] == "10.0.0.7"


def test_endpoints_truncated_to_capacity() -> None:
    ready = [{"ip": f"10.1.{i // 250}.{i % 250}"} for i in range(900)]
    not_ready = [{"ip": f"10.2.{i // 250}.{i % 250}"} for i in range(300)]
    ep = {"subsets": [{"addresses": ready, "notReadyAddresses": not_ready, "ports": [{"port": 80}]}]}
    assert truncate_endpoints(ep)
    sub = ep["subsets"][0]
    assert len(sub["addresses"]) == 900 and len(sub["notReadyAddresses"]) == MAX_CAPACITY - 900
    small = {"subsets": [{"addresses": ready[:10]}]}
    assert not truncate_endpoints(small)
