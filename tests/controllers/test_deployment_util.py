"""Pure logic of the ReplicaSet and Deployment controllers: fenceposts, revisions, proportions,
deletion ranking, slow-start batches."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from k8py.api.selectors import LabelSelector
from k8py.controllers import deployment_util as du
from k8py.controllers.replicaset import label_matcher, rank_pods_for_deletion, slow_start_batch


def _d(replicas: int, surge: Any = "25%", unavailable: Any = "25%", **extra: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "d", "generation": 1, "annotations": extra.pop("annotations", {})},
        "spec": {
            "replicas": replicas,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}},
            "template": {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}},
            **extra,
        },
        "status": {},
    }


def _rs(name: str, replicas: int, *, ts: str = "2024-01-01T00:00:00Z", annotations: dict[str, str] | None = None,
        available: int = 0) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "uid": name, "creationTimestamp": ts, "annotations": dict(annotations or {})},
        "spec": {"replicas": replicas},
        "status": {"replicas": replicas, "availableReplicas": available},
    }


@pytest.mark.parametrize(
    ("surge", "unavailable", "replicas", "expected"),
    [
        ("25%", "25%", 3, (1, 0)),  # surge rounds up, unavailable down
        ("25%", "25%", 10, (3, 2)),
        (0, 0, 5, (0, 1)),  # both zero: one may be unavailable
        ("0%", "10%", 5, (0, 1)),  # rounds down to zero, then the fencepost
        (2, "50%", 5, (2, 2)),
    ],
)
def test_fenceposts(surge: Any, unavailable: Any, replicas: int, expected: tuple[int, int]) -> None:
    assert du.resolve_fenceposts(surge, unavailable, replicas) == expected
    d = _d(replicas, surge, unavailable)
    assert (du.max_surge(d), du.max_unavailable(d)) == expected


def test_max_unavailable_bounds() -> None:
    assert du.max_unavailable(_d(2, 0, 5)) == 2  # never more than replicas
    assert du.max_unavailable(_d(0)) == 0
    recreate = _d(4)
    recreate["spec"]["strategy"] = {"type": "Recreate"}
    assert du.max_surge(recreate) == du.max_unavailable(recreate) == 0
    with pytest.raises(ValueError):
        du.scaled_value("5", 10, True)


def test_revision_annotations() -> None:
    d = _d(3, annotations={"kubernetes.io/change-cause": "v2", du.REVISION_ANNOTATION: "9"})
    rs = _rs("new", 0)
    assert du.set_new_replica_set_annotations(d, rs, "4", exists=False)
    ann = rs["metadata"]["annotations"]
    assert ann == {
        "kubernetes.io/change-cause": "v2",
        du.REVISION_ANNOTATION: "4",
        du.DESIRED_REPLICAS_ANNOTATION: "3",
        du.MAX_REPLICAS_ANNOTATION: "4",
    }
    assert not du.set_new_replica_set_annotations(d, rs, "4", exists=True)  # nothing new
    assert not du.set_new_replica_set_annotations(d, rs, "2", exists=True)  # revisions never go down
    assert du.set_new_replica_set_annotations(d, rs, "6", exists=True)  # back in use (rollback)
    assert (ann[du.REVISION_ANNOTATION], ann[du.REVISION_HISTORY_ANNOTATION]) == ("6", "4")
    du.set_new_replica_set_annotations(d, rs, "8", exists=True)
    assert ann[du.REVISION_HISTORY_ANNOTATION] == "4,6"
    du.set_new_replica_set_annotations(d, rs, "10", exists=True, limit=4)  # the oldest revisions drop out
    assert ann[du.REVISION_HISTORY_ANNOTATION] == "6,8"
    assert du.max_revision([rs, _rs("x", 1, annotations={du.REVISION_ANNOTATION: "bad"}), None]) == 10


def test_new_and_old_replica_sets() -> None:
    d = _d(3)
    template = d["spec"]["template"]
    new = _rs("new", 1, ts="2024-01-02T00:00:00Z")
    new["spec"]["template"] = {
        "metadata": {"labels": {"app": "d", "pod-template-hash": "abc"}, "annotations": {}},
        "spec": template["spec"],
    }
    old = _rs("old", 2)
    old["spec"]["template"] = {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": [{"name": "c", "image": "y"}]}}
    empty = _rs("empty", 0)
    empty["spec"]["template"] = old["spec"]["template"]
    assert du.find_new_replica_set(d, [old, new, empty]) is new
    assert du.find_old_replica_sets(d, [old, new, empty]) == ([old], [old, empty])
    assert du.find_active_or_latest(new, [old]) is None
    assert du.find_active_or_latest(new, [empty]) is new
    assert du.find_active_or_latest(None, [empty]) is empty


def test_new_rs_new_replicas_and_saturation() -> None:
    d = _d(10, 3, 2)
    old, new = _rs("old", 10), _rs("new", 0)
    assert du.new_rs_new_replicas(d, [old, new], new) == 3  # up to replicas + maxSurge
    new["spec"]["replicas"] = 3
    assert du.new_rs_new_replicas(d, [old, new], new) == 3  # no room
    old["spec"]["replicas"] = 2
    assert du.new_rs_new_replicas(d, [old, new], new) == 10  # never beyond replicas
    new = _rs("new", 10, annotations={du.DESIRED_REPLICAS_ANNOTATION: "10"}, available=10)
    assert du.is_saturated(d, new)
    new["status"]["availableReplicas"] = 9
    assert not du.is_saturated(d, new)


def test_proportional_scaling() -> None:
    # 10 -> 15 replicas (maxSurge 3) in the middle of a rollout: old 8, new 5, both annotated with 13
    d = _d(15, 3, 0)
    annotations = {du.MAX_REPLICAS_ANNOTATION: "13"}
    old, new = _rs("old", 8, annotations=annotations), _rs("new", 5, annotations=annotations)
    to_add = 15 + 3 - 13
    p_old = du.proportion(old, d, to_add, 0)
    p_new = du.proportion(new, d, to_add, p_old)
    assert (p_old, p_new) == (3, 2)  # round(8*18/13) - 8, then min(round(5*18/13) - 5, what is left)
    assert du.go_round(2.5) == 3 and du.go_round(-2.5) == -3 and du.go_round(2.4) == 2
    assert du.replica_set_fraction(old, _d(0)) == -8


def test_conditions() -> None:
    status: dict[str, Any] = {}
    first = du.new_condition("Progressing", "True", "A", "a")
    du.set_condition(status, first)
    du.set_condition(status, {**du.new_condition("Progressing", "True", "A", "b"), "lastUpdateTime": "later"})
    assert status["conditions"] == [first]  # same status and reason: unchanged
    du.set_condition(status, {**du.new_condition("Progressing", "True", "B", "b"), "lastTransitionTime": "later"})
    assert status["conditions"][0]["reason"] == "B"
    assert status["conditions"][0]["lastTransitionTime"] == first["lastTransitionTime"]  # status kept: time kept
    du.remove_condition(status, "Progressing")
    assert "conditions" not in status


def test_sort_orders() -> None:
    a = _rs("a", 1, ts="2024-01-01T00:00:00Z", annotations={du.REVISION_ANNOTATION: "3"})
    b = _rs("b", 3, ts="2024-01-02T00:00:00Z", annotations={du.REVISION_ANNOTATION: "1"})
    c = _rs("c", 1, ts="2024-01-03T00:00:00Z", annotations={du.REVISION_ANNOTATION: "2"})
    names = lambda rss: [r["metadata"]["name"] for r in rss]  # noqa: E731
    assert names(du.by_creation([c, b, a])) == ["a", "b", "c"]
    assert names(du.by_size_older([c, b, a])) == ["b", "a", "c"]
    assert names(du.by_size_newer([a, b, c])) == ["b", "c", "a"]
    assert names(du.by_revision([a, b, c])) == ["b", "c", "a"]


def _pod(name: str, *, node: str = "n1", phase: str = "Running", ready: str | None = "2024-01-01T00:00:00Z",
         created: str = "2024-01-01T00:00:00Z", restarts: int = 0, cost: str | None = None) -> dict[str, Any]:
    conditions = [{"type": "Ready", "status": "True", "lastTransitionTime": ready}] if ready else []
    md: dict[str, Any] = {"name": name, "uid": name, "creationTimestamp": created}
    if cost is not None:
        md["annotations"] = {"controller.kubernetes.io/pod-deletion-cost": cost}
    return {
        "metadata": md,
        "spec": {"nodeName": node},
        "status": {"phase": phase, "conditions": conditions, "containerStatuses": [{"restartCount": restarts}]},
    }


def test_deletion_ranking() -> None:
    now = 1_704_153_600.0  # 2024-01-02T00:00:00Z
    pods = [
        _pod("old-ready"),
        _pod("unassigned", node="", phase="Pending", ready=None),
        _pod("pending", phase="Pending", ready=None),
        _pod("not-ready", ready=None),
        _pod("costly", cost="100"),
        _pod("cheap", cost="-5"),
        _pod("doubled", node="n2"),
        _pod("recently-ready", ready="2024-01-01T23:59:50Z"),
        _pod("restarted", restarts=3),
    ]
    related = [_pod(f"sibling-{i}", node="n2") for i in range(10)]  # n2 more crowded than n1
    ranked = [p["metadata"]["name"] for p in rank_pods_for_deletion(pods, pods + related, now)]
    assert ranked == [
        "unassigned", "pending", "not-ready", "cheap", "doubled", "recently-ready", "restarted", "old-ready", "costly",
    ]
    # creation times within the same power-of-two age bucket are ties, broken by UID
    young = [_pod("b", created="2024-01-01T23:00:00Z"), _pod("a", created="2024-01-01T23:00:01Z")]
    assert [p["metadata"]["name"] for p in rank_pods_for_deletion(young, [], now)] == ["a", "b"]


async def test_slow_start_batch() -> None:
    batches: list[int] = []
    in_flight = 0

    async def ok() -> bool:
        nonlocal in_flight
        in_flight += 1
        await asyncio.sleep(0)
        batches.append(in_flight)
        in_flight -= 1
        return True

    assert await slow_start_batch(10, 1, ok) == (10, None)
    assert max(batches) == 4  # 1, 2, 4, then the remaining 3
    calls = 0

    async def fails_from_the_fourth() -> bool:
        nonlocal calls
        calls += 1
        if calls >= 4:
            raise RuntimeError("quota")
        return True

    successes, error = await slow_start_batch(100, 1, fails_from_the_fourth)
    assert (successes, str(error), calls) == (3, "quota", 7)  # batches of 1, 2, then 4 with failures


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ({"matchLabels": {"a": "1", "b": "2"}}, {"a": "1", "b": "2", "c": "3"}, True),
        ({"matchLabels": {"a": "1", "b": "2"}}, {"a": "1"}, False),
        ({"matchLabels": {"a": "1"}, "matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]},
         {"a": "1"}, True),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {}, True),
        ({}, {"x": "y"}, True),
        (None, {"x": "y"}, False),
    ],
)
def test_label_matcher(selector: Any, labels: dict[str, str], expected: bool) -> None:
    parsed = LabelSelector.from_label_selector(selector)
    assert label_matcher(parsed)(labels) is expected is parsed.matches(labels)
