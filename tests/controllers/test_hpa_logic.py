"""The HPA's replica calculation and normalization (upstream's replica_calculator_test and
horizontal_test cases, on plain objects)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from k8py.controllers.podautoscaler import (
    MetricsError,
    PodMetric,
    Recommender,
    ReplicaCalculator,
    ScaleEvent,
    convert_desired_replicas_with_rules,
    default_behavior,
    pod_metrics_from_list,
    scale_down_limit,
    scale_up_limit,
)

NOW = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)


def ts(seconds_ago: float) -> str:
    return (NOW - dt.timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(name: str, request: str = "1", *, ready: bool = True, phase: str = "Running",
        started_ago: float = 600, transition_ago: float = 600, deleted: bool = False) -> dict[str, Any]:  # fmt: skip
    md: dict[str, Any] = {"name": name, "namespace": "ns", "labels": {"app": "x"}}
    if deleted:
        md["deletionTimestamp"] = ts(0)
    return {
        "metadata": md,
        "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": request, "memory": "1Gi"}}}]},
        "status": {
            "phase": phase,
            "startTime": ts(started_ago),
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "lastTransitionTime": ts(transition_ago),
                }
            ],  # fmt: skip
        },
    }


def metrics(**values: int) -> dict[str, PodMetric]:
    return {name: PodMetric(v, NOW, 30.0) for name, v in values.items()}


CALC = ReplicaCalculator()


def replicas(current: int, target: int, pods: list[dict[str, Any]], m: dict[str, PodMetric]) -> int:
    return CALC.resource_replicas(current, target, "cpu", pods, m, now=NOW)[0]


def test_scale_up() -> None:
    pods = [pod("a"), pod("b"), pod("c")]
    r, util, raw = CALC.resource_replicas(3, 30, "cpu", pods, metrics(a=300, b=500, c=700), now=NOW)
    assert (r, util, raw) == (5, 50, 500)


def test_scale_down() -> None:
    pods = [pod(n) for n in "abcde"]
    assert replicas(5, 50, pods, metrics(a=100, b=300, c=500, d=250, e=250)) == 3


def test_within_tolerance() -> None:
    pods = [pod("a", "900m"), pod("b", "1"), pod("c", "1100m")]
    assert replicas(3, 100, pods, metrics(a=1010, b=1030, c=1020)) == 3


def test_unready_pod_counts_zero_when_scaling_up() -> None:
    # the unready pod (still initializing, not ready) is left out, then counted as 0 %
    pods = [pod("a", ready=False, started_ago=10, transition_ago=10), pod("b"), pod("c")]
    assert replicas(3, 30, pods, metrics(a=300, b=500, c=700)) == 4


def test_pending_pod_is_unready() -> None:
    pods = [pod("a", phase="Pending"), pod("b"), pod("c")]
    assert replicas(3, 30, pods, metrics(b=500, c=700)) == 4


def test_unready_pods_ignored_when_scaling_down() -> None:
    pods = [pod("a", ready=False, started_ago=10, transition_ago=10), pod("b"), pod("c")]
    assert replicas(3, 50, pods, metrics(a=100, b=100, c=100)) == 1


def test_metric_within_a_window_of_readiness_is_unready() -> None:
    # in its cpu initialization period, a pod's sample taken less than a window after it got ready is skipped
    pods = [pod("a", started_ago=20, transition_ago=10), pod("b"), pod("c")]
    assert replicas(3, 30, pods, metrics(a=3000, b=300, c=300)) == 3


def test_never_ready_after_initialization_is_unready() -> None:
    pods = [pod("a", ready=False, started_ago=600, transition_ago=590), pod("b"), pod("c")]
    assert replicas(3, 30, pods, metrics(a=3000, b=300, c=300)) == 3


def test_deleted_and_failed_pods_are_ignored() -> None:
    pods = [pod("a", deleted=True), pod("b", phase="Failed"), pod("c"), pod("d")]
    assert replicas(2, 50, pods, metrics(a=2000, b=2000, c=500, d=500)) == 2


def test_missing_metrics_scale_up() -> None:
    pods = [pod(n) for n in "abcd"]
    assert replicas(4, 50, pods, metrics(a=900, b=900, c=900)) == 6


def test_missing_metrics_scale_down() -> None:
    # the missing pod counts as 100 % of its request
    pods = [pod(n) for n in "abcd"]
    assert replicas(4, 50, pods, metrics(a=100, b=100, c=100)) == 3


def test_missing_metrics_flip_keeps_current() -> None:
    # above target with the metrics we have, below once the missing pod counts as 0: no change
    pods = [pod(n) for n in "abcd"]
    assert replicas(4, 100, pods, metrics(a=2000, b=1000, c=400)) == 4


def test_raw_average_value() -> None:
    pods = [pod(n) for n in "abc"]
    assert CALC.raw_resource_replicas(3, 200, "cpu", pods, metrics(a=400, b=400, c=400), now=NOW) == (6, 400)
    assert CALC.raw_resource_replicas(3, 400, "cpu", pods, metrics(a=400, b=410, c=390), now=NOW) == (3, 400)


def test_errors() -> None:
    with pytest.raises(MetricsError, match="no pods returned"):
        replicas(1, 50, [], metrics(a=1))
    with pytest.raises(MetricsError, match="did not receive metrics"):
        replicas(1, 50, [pod("a", phase="Pending")], metrics(a=1))
    bad = pod("a")
    bad["spec"]["containers"][0]["resources"] = {}
    with pytest.raises(MetricsError, match="missing request for cpu in container c of Pod a"):
        replicas(1, 50, [bad], metrics(a=1))


def test_pod_metrics_from_list() -> None:
    items = [
        {"metadata": {"name": "a"}, "timestamp": ts(0), "window": "30s",
         "containers": [{"name": "c", "usage": {"cpu": "250m"}}, {"name": "s", "usage": {"cpu": "1"}}]},
        {"metadata": {"name": "b"}, "timestamp": ts(0), "window": "1m0s",
         "containers": [{"name": "c", "usage": {"memory": "1Gi"}}]},
    ]  # fmt: skip
    got = pod_metrics_from_list(items, "cpu")
    assert list(got) == ["a"] and got["a"].value == 1250 and got["a"].window == 30
    assert pod_metrics_from_list(items, "cpu", "s")["a"].value == 1000
    assert pod_metrics_from_list(items, "memory")["b"].value == 1024**3 * 1000


# -- normalization ---------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_rules_without_behavior() -> None:
    assert convert_desired_replicas_with_rules(1, 10, 1, 10) == (
        4, "ScaleUpLimit", "the desired replica count is increasing faster than the maximum scale rate")  # fmt: skip
    assert convert_desired_replicas_with_rules(3, 10, 1, 5)[:2] == (5, "TooManyReplicas")
    assert convert_desired_replicas_with_rules(3, 0, 2, 5)[:2] == (2, "TooFewReplicas")
    assert convert_desired_replicas_with_rules(3, 4, 2, 5)[:2] == (4, "DesiredWithinRange")


def test_downscale_stabilization_window() -> None:
    clock = Clock()
    r = Recommender(downscale_window=300, clock=clock)
    r.record_initial("k", 5)
    clock.t += 15
    assert r.stabilize("k", 2) == 5  # the initial recommendation is still in the window
    clock.t += 290
    assert r.stabilize("k", 2) == 2  # both 5 (305 s ago) ... and the 2 recommended 290 s ago
    clock.t += 1
    assert r.stabilize("k", 4) == 4


def test_scale_up_policies() -> None:
    up = default_behavior(None, 300)["scaleUp"]
    assert scale_up_limit(1, [], [], up, 0) == 5  # max(1 + 4 pods, 1 * 200 %)
    assert scale_up_limit(10, [], [], up, 0) == 20
    # replicas added within the period count against it
    assert scale_up_limit(8, [ScaleEvent(4, 100)], [], up, 110) == 8
    assert scale_up_limit(8, [ScaleEvent(4, 100)], [], up, 120) == 16
    # ... and those removed for it
    assert scale_up_limit(4, [], [ScaleEvent(2, 100)], up, 110) == 12
    rules = {"selectPolicy": "Min", "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60},
                                                 {"type": "Percent", "value": 50, "periodSeconds": 60}]}  # fmt: skip
    assert scale_up_limit(10, [], [], rules, 0) == 11
    assert scale_up_limit(10, [], [], {**rules, "selectPolicy": "Disabled"}, 0) == 10


def test_scale_down_policies() -> None:
    rules = {"selectPolicy": "Max", "policies": [{"type": "Pods", "value": 2, "periodSeconds": 60},
                                                 {"type": "Percent", "value": 10, "periodSeconds": 60}]}  # fmt: skip
    assert scale_down_limit(10, [], [], rules, 0) == 8  # the larger change: 2 pods
    assert scale_down_limit(10, [], [], {**rules, "selectPolicy": "Min"}, 0) == 9  # 10 % of 10
    assert scale_down_limit(8, [], [ScaleEvent(2, 100)], rules, 130) == 8  # 2 already removed this period


def test_behavior_stabilization_and_rate() -> None:
    clock = Clock()
    r = Recommender(downscale_window=300, clock=clock)
    behavior = default_behavior(
        {"scaleUp": {"stabilizationWindowSeconds": 60, "policies": [{"type": "Pods", "value": 1, "periodSeconds": 30}]},
         "scaleDown": {"stabilizationWindowSeconds": 30}}, 300)  # fmt: skip
    assert behavior["scaleDown"]["policies"] == [{"type": "Percent", "value": 100, "periodSeconds": 15}]
    r.record_initial("k", 2)
    clock.t += 1
    # scale-up window: the lowest recent recommendation (2) wins
    assert r.stabilize_with_behaviors("k", 2, 6, behavior)[:2] == (2, "ScaleUpStabilized")
    clock.t += 61
    assert r.stabilize_with_behaviors("k", 2, 6, behavior)[0] == 6
    assert r.convert_with_behavior_rate("k", 2, 6, 1, 10, behavior)[:2] == (3, "ScaleUpLimit")
    r.store_scale_event("k", behavior, 2, 3)
    clock.t += 5
    assert r.convert_with_behavior_rate("k", 3, 6, 1, 10, behavior)[0] == 3  # this period's pod is used
    # scale-down window: the highest recommendation of the last 30 s
    assert r.stabilize_with_behaviors("k", 3, 1, behavior)[:2] == (3, "ScaleDownStabilized")
    clock.t += 31
    assert r.stabilize_with_behaviors("k", 3, 1, behavior)[0] == 1
    assert r.convert_with_behavior_rate("k", 3, 1, 2, 10, behavior)[:2] == (2, "TooFewReplicas")
