"""The horizontal pod autoscaler (``pkg/controller/podautoscaler``): autoscaling/v2 HPAs on
resource metrics (cpu/memory, ``Resource`` and ``ContainerResource`` metrics, ``Utilization``
and ``AverageValue`` targets).

Every HPA is reconciled once per sync period (``horizontal-pod-autoscaler-sync-period``, 15 s):
the target's ``scale`` subresource gives its replicas and pod selector (``status.selector``),
the resource metrics API (``GET /apis/metrics.k8s.io/v1beta1/namespaces/<ns>/pods?labelSelector=``,
served by a metrics server — a later add-on; k8py has no API aggregation) gives the pods'
usage, and :class:`ReplicaCalculator` (upstream's replica calculator) turns usage / requests
into a replica count: within the tolerance (0.1) nothing changes; unready pods (cpu: not yet
ready within the initial readiness delay, or in their cpu initialization period) and pods
without metrics count as 0 % when scaling up and 100 % (the target, if higher) when scaling
down, and a scale-up that this turns into a scale-down (or vice versa) is dropped.

:class:`Recommender` then normalizes the proposal as the controller does: without
``spec.behavior`` the downscale stabilization window (``horizontal-pod-autoscaler-downscale-
stabilization``, 300 s: the highest recommendation in the window wins) and the default
scale-up rate (max(2x, 4)); with ``behavior`` the scale-up/scale-down stabilization windows and
rate policies (Pods/Percent per period, selectPolicy Max/Min/Disabled), remembering the
controller's own past scale events. The result is clamped to min/maxReplicas, written
through the scale subresource (event SuccessfulRescale), and the HPA's status (replicas,
lastScaleTime, currentMetrics, conditions AbleToScale/ScalingActive/ScalingLimited) updated.

The recommendations and scale events live in memory, as upstream's do: a restarted controller
begins anew from the current replica count.

Knobs (``--controller-option``): ``horizontal-pod-autoscaler-sync-period``,
``horizontal-pod-autoscaler-downscale-stabilization``, ``horizontal-pod-autoscaler-tolerance``,
``horizontal-pod-autoscaler-cpu-initialization-period``,
``horizontal-pod-autoscaler-initial-readiness-delay`` (seconds / a ratio).
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from k8py.api import meta
from k8py.api.registry import RESOURCES
from k8py.api.resources import milli
from k8py.api.selectors import LabelSelector
from k8py.api.validation.quantity import parse_quantity
from k8py.client import NORMAL, WARNING, ClientError, ResourceEventHandlerFuncs, is_not_found
from k8py.client.cache import NAMESPACE_INDEX
from k8py.client.resources import HORIZONTAL_POD_AUTOSCALERS, PODS, Resource
from k8py.controllers.base import QueueController
from k8py.controllers.controller_utils import pod_condition
from k8py.controllers.manager import ControllerContext

log = logging.getLogger(__name__)

Obj = dict[str, Any]

METRICS_PATH = "/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods"
DEFAULT_CPU_UTILIZATION = 80  # the v1/v2 default metric when spec.metrics is empty
MAX_INT32 = 2**31 - 1


class MetricsError(Exception):
    """A metric (or the replica count from it) could not be computed."""


# -- metrics --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PodMetric:
    """One pod's usage of a resource (milli-units), upstream's metricsclient.PodMetric."""

    value: int
    timestamp: dt.datetime
    window: float  # seconds


def pod_metrics_from_list(
    items: Iterable[Obj], resource: str, container: str | None = None
) -> dict[str, PodMetric]:
    """metricsclient.GetResourceMetric on a PodMetricsList: the pods whose every (or the named)
    container reports `resource`; the others are missing."""
    result: dict[str, PodMetric] = {}
    for m in items:
        total, missing, found = 0, False, False
        for c in m.get("containers") or ():
            if container is not None and c.get("name") != container:
                continue
            q = parse_quantity((c.get("usage") or {}).get(resource))
            if q is None:
                missing = True
                break
            total += milli(q)
            found = True
        if missing or (container is not None and not found):
            continue
        ts = m.get("timestamp")
        result[m["metadata"]["name"]] = PodMetric(
            total, meta.parse_time(ts) if ts else _utcnow(), _duration(m.get("window"))
        )
    return result


def _duration(text: Any) -> float:
    """A Go duration ("30s", "1m0s", "500ms") in seconds; 0 when absent or unparsable."""
    if isinstance(text, int | float):
        return float(text)
    if not isinstance(text, str) or not text:
        return 0.0
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
    total, num, i = 0.0, "", 0
    while i < len(text):
        ch = text[i]
        if ch.isdigit() or ch == ".":
            num += ch
            i += 1
            continue
        unit = next((u for u in ("ms", "us", "µs", "ns", "h", "m", "s") if text.startswith(u, i)), None)
        if unit is None or not num:
            return 0.0
        total += float(num) * units[unit]
        num, i = "", i + len(unit)
    return total


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# -- the replica calculator -----------------------------------------------------------------------


def pod_requests(pods: Iterable[Obj], resource: str, container: str | None = None) -> dict[str, int]:
    """calculatePodRequests: each pod's request of `resource` (milli), summed over its (or the named)
    containers; a container without one is an error."""
    out: dict[str, int] = {}
    for pod in pods:
        total = 0
        for c in (pod.get("spec") or {}).get("containers") or ():
            if container is not None and c.get("name") != container:
                continue
            q = parse_quantity(((c.get("resources") or {}).get("requests") or {}).get(resource))
            if q is None:
                raise MetricsError(
                    f"missing request for {resource} in container {c.get('name')} of Pod {pod['metadata']['name']}"
                )
            total += milli(q)
        out[pod["metadata"]["name"]] = total
    return out


@dataclass
class PodGroups:
    ready_count: int = 0
    unready: set[str] = field(default_factory=set)
    missing: set[str] = field(default_factory=set)
    ignored: set[str] = field(default_factory=set)


def group_pods(
    pods: Iterable[Obj],
    metrics: Mapping[str, PodMetric],
    resource: str,
    cpu_initialization_period: float,
    delay_of_initial_readiness_status: float,
    now: dt.datetime,
) -> PodGroups:
    """groupPods: deleted/failed pods are ignored, pending ones unready, pods without a metric
    missing; for cpu, a pod is unready when it has no Ready condition or start time, when within
    its initialization period it is not ready or its metric predates a window after its last
    readiness change, or when it has never been ready since starting (within the readiness delay)."""
    g = PodGroups()
    for pod in pods:
        name = pod["metadata"]["name"]
        status = pod.get("status") or {}
        phase = status.get("phase") or "Pending"
        if pod["metadata"].get("deletionTimestamp") or phase == "Failed":
            g.ignored.add(name)
            continue
        if phase == "Pending":
            g.unready.add(name)
            continue
        metric = metrics.get(name)
        if metric is None:
            g.missing.add(name)
            continue
        if resource == "cpu":
            cond = pod_condition(pod, "Ready")
            start = status.get("startTime")
            if cond is None or not start:
                unready = True
            else:
                started = meta.parse_time(start)
                changed = (
                    meta.parse_time(cond["lastTransitionTime"]) if cond.get("lastTransitionTime") else started
                )
                if started + dt.timedelta(seconds=cpu_initialization_period) > now:
                    unready = cond.get("status") == "False" or (
                        metric.timestamp < changed + dt.timedelta(seconds=metric.window)
                    )
                else:
                    unready = cond.get("status") == "False" and (
                        started + dt.timedelta(seconds=delay_of_initial_readiness_status) > changed
                    )
            if unready:
                g.unready.add(name)
                continue
        g.ready_count += 1
    return g


def utilization_ratio(
    metrics: Mapping[str, PodMetric], requests: Mapping[str, int], target_utilization: int
) -> tuple[float, int, int]:
    """GetResourceUtilizationRatio: (usage ratio, utilization %, raw average usage in milli)."""
    metrics_total = requests_total = entries = 0
    for name, m in metrics.items():
        if name in requests:
            metrics_total += m.value
            requests_total += requests[name]
            entries += 1
    if requests_total == 0:
        raise MetricsError("no metrics returned matched known pods")
    utilization = metrics_total * 100 // requests_total
    return utilization / target_utilization, utilization, metrics_total // entries


def usage_ratio(metrics: Mapping[str, PodMetric], target_usage: int) -> tuple[float, int]:
    """GetMetricUsageRatio: (usage ratio, average usage in milli)."""
    usage = sum(m.value for m in metrics.values()) // len(metrics)
    return usage / target_usage, usage


@dataclass
class ReplicaCalculator:
    tolerance: float = 0.1
    cpu_initialization_period: float = 300.0
    delay_of_initial_readiness_status: float = 30.0

    def _prepare(
        self, pods: list[Obj], metrics: dict[str, PodMetric], resource: str, now: dt.datetime
    ) -> tuple[PodGroups, dict[str, PodMetric]]:
        if not pods:
            raise MetricsError("no pods returned by selector while calculating replica count")
        g = group_pods(pods, metrics, resource, self.cpu_initialization_period,
                       self.delay_of_initial_readiness_status, now)  # fmt: skip
        metrics = {n: m for n, m in metrics.items() if n not in g.ignored and n not in g.unready}
        if not metrics:
            raise MetricsError("did not receive metrics for targeted pods (pods might be unready)")
        return g, metrics

    def resource_replicas(
        self,
        current: int,
        target_utilization: int,
        resource: str,
        pods: list[Obj],
        metrics: dict[str, PodMetric],
        container: str | None = None,
        now: dt.datetime | None = None,
    ) -> tuple[int, int, int]:
        """GetResourceReplicas: (replicas, utilization %, raw average usage in milli)."""
        g, metrics = self._prepare(pods, metrics, resource, now or _utcnow())
        requests = pod_requests(pods, resource, container)
        ratio, utilization, raw = utilization_ratio(metrics, requests, target_utilization)
        scale_up_with_unready = bool(g.unready) and ratio > 1.0
        if not scale_up_with_unready and not g.missing:
            if abs(1.0 - ratio) <= self.tolerance:
                return current, utilization, raw
            return math.ceil(ratio * g.ready_count), utilization, raw
        if g.missing:
            if ratio < 1.0:
                fallback = max(100, target_utilization)
                for name in g.missing:
                    metrics[name] = PodMetric(requests[name] * fallback // 100, _utcnow(), 0)
            elif ratio > 1.0:
                for name in g.missing:
                    metrics[name] = PodMetric(0, _utcnow(), 0)
        if scale_up_with_unready:
            for name in g.unready:
                metrics[name] = PodMetric(0, _utcnow(), 0)
        new_ratio, _, _ = utilization_ratio(metrics, requests, target_utilization)
        return self._rebalanced(current, ratio, new_ratio, len(metrics)), utilization, raw

    def raw_resource_replicas(
        self,
        current: int,
        target_usage: int,
        resource: str,
        pods: list[Obj],
        metrics: dict[str, PodMetric],
        now: dt.datetime | None = None,
    ) -> tuple[int, int]:
        """GetRawResourceReplicas (an AverageValue target, milli): (replicas, average usage)."""
        g, metrics = self._prepare(pods, metrics, resource, now or _utcnow())
        ratio, usage = usage_ratio(metrics, target_usage)
        scale_up_with_unready = bool(g.unready) and ratio > 1.0
        if not scale_up_with_unready and not g.missing:
            if abs(1.0 - ratio) <= self.tolerance:
                return current, usage
            return math.ceil(ratio * g.ready_count), usage
        if g.missing:
            for name in g.missing:
                metrics[name] = PodMetric(target_usage if ratio < 1.0 else 0, _utcnow(), 0)
        if scale_up_with_unready:
            for name in g.unready:
                metrics[name] = PodMetric(0, _utcnow(), 0)
        new_ratio, _ = usage_ratio(metrics, target_usage)
        return self._rebalanced(current, ratio, new_ratio, len(metrics)), usage

    def _rebalanced(self, current: int, ratio: float, new_ratio: float, count: int) -> int:
        if abs(1.0 - new_ratio) <= self.tolerance or (ratio < 1.0 < new_ratio) or (ratio > 1.0 > new_ratio):
            return current
        new = math.ceil(new_ratio * count)
        if (new_ratio < 1.0 and new > current) or (new_ratio > 1.0 and new < current):
            return current
        return new


# -- normalization: stabilization and rate limits ------------------------------------------------


def default_behavior(behavior: Obj | None, downscale_window: int) -> Obj:
    """The API's defaults for spec.behavior (GenerateHPAScaleUpRules / ScaleDownRules), the
    scale-down stabilization window defaulting to the controller's."""
    behavior = copy.deepcopy(behavior or {})
    up = behavior.setdefault("scaleUp", {})
    up.setdefault("stabilizationWindowSeconds", 0)
    up.setdefault("selectPolicy", "Max")
    up.setdefault("policies", [{"type": "Pods", "value": 4, "periodSeconds": 15},
                               {"type": "Percent", "value": 100, "periodSeconds": 15}])  # fmt: skip
    down = behavior.setdefault("scaleDown", {})
    if down.get("stabilizationWindowSeconds") is None:
        down["stabilizationWindowSeconds"] = downscale_window
    down.setdefault("selectPolicy", "Max")
    down.setdefault("policies", [{"type": "Percent", "value": 100, "periodSeconds": 15}])
    return behavior


@dataclass
class ScaleEvent:
    change: int
    timestamp: float
    outdated: bool = False


def replicas_change_per_period(period: float, events: Iterable[ScaleEvent], now: float) -> int:
    return sum(e.change for e in events if e.timestamp > now - period)


def _period_start(
    current: int, period: float, up: list[ScaleEvent], down: list[ScaleEvent], now: float
) -> int:
    """The replicas at the start of the policy's period: the changes made within it undone."""
    return (
        current - replicas_change_per_period(period, up, now) + replicas_change_per_period(period, down, now)
    )


def scale_up_limit(
    current: int, up_events: list[ScaleEvent], down_events: list[ScaleEvent], rules: Obj, now: float
) -> int:
    """calculateScaleUpLimitWithScalingRules."""
    select = rules.get("selectPolicy") or "Max"
    if select == "Disabled":
        return current
    pick, result = (min, MAX_INT32) if select == "Min" else (max, -MAX_INT32)
    for p in rules.get("policies") or ():
        start = _period_start(current, p["periodSeconds"], up_events, down_events, now)
        proposed = start + p["value"] if p["type"] == "Pods" else math.ceil(start * (1 + p["value"] / 100))
        result = pick(result, proposed)
    return result


def scale_down_limit(
    current: int, up_events: list[ScaleEvent], down_events: list[ScaleEvent], rules: Obj, now: float
) -> int:
    """calculateScaleDownLimitWithBehaviors (Min picks the smallest change: the highest limit)."""
    select = rules.get("selectPolicy") or "Max"
    if select == "Disabled":
        return current
    pick, result = (max, -MAX_INT32) if select == "Min" else (min, MAX_INT32)
    for p in rules.get("policies") or ():
        start = _period_start(current, p["periodSeconds"], up_events, down_events, now)
        proposed = start - p["value"] if p["type"] == "Pods" else int(start * (1 - p["value"] / 100))
        result = pick(result, proposed)
    return result


def convert_desired_replicas_with_rules(current: int, desired: int, lo: int, hi: int) -> tuple[int, str, str]:
    """convertDesiredReplicasWithRules: the clamp without behavior (scale up at most max(2x, 4))."""
    up_limit = max(2 * current, 4)
    if hi > up_limit:
        allowed, cond, msg = (
            up_limit,
            "ScaleUpLimit",
            "the desired replica count is increasing faster than the maximum scale rate",
        )  # noqa: E501
    else:
        allowed, cond, msg = (
            hi,
            "TooManyReplicas",
            "the desired replica count is more than the maximum replica count",
        )
    if desired < lo:
        return lo, "TooFewReplicas", "the desired replica count is less than the minimum replica count"
    if desired > allowed:
        return allowed, cond, msg
    return desired, "DesiredWithinRange", "the desired count is within the acceptable range"


@dataclass
class Recommender:
    """The controller's memory of recommendations and scale events per HPA key, and the
    normalization of a proposed replica count (stabilization, rate limits, min/max)."""

    downscale_window: float = 300.0
    clock: Callable[[], float] = time.time
    recommendations: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    scale_up_events: dict[str, list[ScaleEvent]] = field(default_factory=dict)
    scale_down_events: dict[str, list[ScaleEvent]] = field(default_factory=dict)

    def record_initial(self, key: str, current: int) -> None:
        if not self.recommendations.get(key):
            self.recommendations[key] = [(current, self.clock())]

    def forget(self, key: str) -> None:
        for d in (self.recommendations, self.scale_up_events, self.scale_down_events):
            d.pop(key, None)

    def _store(self, key: str, rec: int, now: float, cutoff: float) -> None:
        recs = self.recommendations.setdefault(key, [])
        for i, (_, ts) in enumerate(recs):
            if ts < cutoff:
                recs[i] = (rec, now)
                return
        recs.append((rec, now))

    def stabilize(self, key: str, prenormalized: int) -> int:
        """stabilizeRecommendation (no behavior): the highest recommendation in the window."""
        now = self.clock()
        cutoff = now - self.downscale_window
        best = prenormalized
        for rec, ts in self.recommendations.get(key, ()):
            if ts > cutoff:
                best = max(best, rec)
        self._store(key, prenormalized, now, cutoff)
        return best

    def stabilize_with_behaviors(
        self, key: str, current: int, desired: int, behavior: Obj
    ) -> tuple[int, str, str]:
        """stabilizeRecommendationWithBehaviors: up = the lowest recommendation in the scale-up
        window, down = the highest in the scale-down window; the current count moved into [up, down]."""
        now = self.clock()
        up_cutoff = now - behavior["scaleUp"]["stabilizationWindowSeconds"]
        down_cutoff = now - behavior["scaleDown"]["stabilizationWindowSeconds"]
        up = down = desired
        for rec, ts in self.recommendations.get(key, ()):
            if ts > up_cutoff:
                up = min(up, rec)
            if ts > down_cutoff:
                down = max(down, rec)
        recommendation = max(current, up)
        recommendation = min(recommendation, down)
        self._store(key, desired, now, min(up_cutoff, down_cutoff))
        if desired >= current:
            return (
                recommendation,
                "ScaleUpStabilized",
                (
                    "recent recommendations were lower than current one, applying the lowest recent recommendation"
                ),
            )
        return (
            recommendation,
            "ScaleDownStabilized",
            (
                "recent recommendations were higher than current one, applying the highest recent recommendation"
            ),
        )

    def convert_with_behavior_rate(
        self, key: str, current: int, desired: int, lo: int, hi: int, behavior: Obj
    ) -> tuple[int, str, str]:
        """convertDesiredReplicasWithBehaviorRate."""
        now = self.clock()
        if desired > current:
            limit = max(scale_up_limit(current, *self._events(key), behavior["scaleUp"], now), current)
            if hi > limit:
                allowed, reason, msg = (
                    limit,
                    "ScaleUpLimit",
                    "the desired replica count is increasing faster than the maximum scale rate",
                )  # noqa: E501
            else:
                allowed, reason, msg = (
                    hi,
                    "TooManyReplicas",
                    "the desired replica count is more than the maximum replica count",
                )  # noqa: E501
            if desired > allowed:
                return allowed, reason, msg
        elif desired < current:
            limit = min(
                scale_down_limit(current, *self._events(key), behavior["scaleDown"], now),
                current,
            )
            if lo < limit:
                allowed, reason, msg = (
                    limit,
                    "ScaleDownLimit",
                    "the desired replica count is decreasing faster than the maximum scale rate",
                )  # noqa: E501
            else:
                allowed, reason, msg = (
                    lo,
                    "TooFewReplicas",
                    "the desired replica count is less than the minimum replica count",
                )  # noqa: E501
            if desired < allowed:
                return allowed, reason, msg
        return desired, "DesiredWithinRange", "the desired count is within the acceptable range"

    def _events(self, key: str) -> tuple[list[ScaleEvent], list[ScaleEvent]]:
        return self.scale_up_events.get(key, []), self.scale_down_events.get(key, [])

    def store_scale_event(self, key: str, behavior: Obj | None, prev: int, new: int) -> None:
        """storeScaleEvent: only with behavior; the opposite direction's events become outdated."""
        if behavior is None:
            return
        now = self.clock()
        up = new > prev
        rules = (behavior.get("scaleUp") if up else behavior.get("scaleDown")) or {}
        mine = (self.scale_up_events if up else self.scale_down_events).setdefault(key, [])
        longest = max((p["periodSeconds"] for p in rules.get("policies") or ()), default=0)
        for e in mine:  # markScaleEventsOutdated: events older than every period are reused
            if e.timestamp < now - longest:
                e.outdated = True
        event = ScaleEvent(abs(new - prev), now)
        old = [i for i, e in enumerate(mine) if e.outdated]
        if old:
            mine[old[-1]] = event
        else:
            mine.append(event)


# -- conditions -----------------------------------------------------------------------------------


def set_condition(status: Obj, type_: str, cond_status: str, reason: str, message: str) -> None:
    """setCondition: lastTransitionTime changes only with the status."""
    conds: list[Obj] = status.setdefault("conditions", [])
    for c in conds:
        if c.get("type") == type_:
            if c.get("status") != cond_status:
                c["lastTransitionTime"] = meta.now()
            c.update(status=cond_status, reason=reason, message=message)
            return
    conds.append({"type": type_, "status": cond_status, "lastTransitionTime": meta.now(),
                  "reason": reason, "message": message})  # fmt: skip


def _milli_quantity(v: int) -> str:
    return f"{v // 1000}" if v % 1000 == 0 else f"{v}m"


# -- the controller -------------------------------------------------------------------------------


class HorizontalController(QueueController):
    name = "horizontalpodautoscaling"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(workers=ctx.options.workers(self.name, 5))
        self.client = ctx.client
        self.recorder = ctx.recorder("horizontal-pod-autoscaler")
        extra = ctx.options.extra
        self.sync_period = float(extra.get("horizontal-pod-autoscaler-sync-period", 15))
        self.recommender = Recommender(
            float(extra.get("horizontal-pod-autoscaler-downscale-stabilization", 300))
        )
        self.calculator = ReplicaCalculator(
            tolerance=float(extra.get("horizontal-pod-autoscaler-tolerance", 0.1)),
            cpu_initialization_period=float(
                extra.get("horizontal-pod-autoscaler-cpu-initialization-period", 300)
            ),
            delay_of_initial_readiness_status=float(
                extra.get("horizontal-pod-autoscaler-initial-readiness-delay", 30)
            ),
        )
        self.hpas = ctx.informers.informer_for(HORIZONTAL_POD_AUTOSCALERS)
        self.pods = ctx.informers.informer_for(PODS)
        self.hpas.add_event_handler(
            ResourceEventHandlerFuncs(
                add_func=lambda h, _i: self.enqueue(h),
                update_func=self._updated,
                delete_func=self.enqueue,
            )
        )
        self.synced = [self.hpas, self.pods]

    def _updated(self, old: Obj, new: Obj) -> None:
        # our own status writes do not trigger a sync: the next one comes with the sync period
        if old["metadata"].get("generation") != new["metadata"].get("generation"):
            self.enqueue(new)

    async def sync(self, key: str) -> None:
        """reconcileKey, then again after the sync period (as upstream's fixed-interval rate limiter):
        an error is logged, not retried sooner."""
        hpa = self.hpas.indexer.get_by_key(key)
        if hpa is None:
            self.recommender.forget(key)
            return
        try:
            await self.reconcile(copy.deepcopy(hpa), key)
        except Exception as e:
            log.info("horizontalpodautoscaling: %s: %s", key, e)
        self.enqueue_after(key, self.sync_period)  # an earlier pending add wins

    # -- reconcileAutoscaler ----------------------------------------------------------------------

    async def reconcile(self, hpa: Obj, key: str) -> None:
        spec, ns = hpa.get("spec") or {}, hpa["metadata"]["namespace"]
        status: Obj = copy.deepcopy(hpa.get("status") or {})
        original = copy.deepcopy(status)
        ref = spec.get("scaleTargetRef") or {}
        reference = f"{ref.get('kind')}/{ref.get('name')}"
        try:
            resource = await self._resource_for(ref.get("apiVersion", ""), ref.get("kind", ""))
            scale = await self.client.get_subresource(resource, ref.get("name", ""), "scale", namespace=ns)
        except Exception as e:
            set_condition(status, "AbleToScale", "False", "FailedGetScale",
                          f"the HPA controller was unable to get the target's current scale: {e}")  # fmt: skip
            self.recorder.event(hpa, WARNING, "FailedGetScale", str(e))
            await self._update_status_if_needed(hpa, original, status)
            raise MetricsError(f"failed to query scale subresource for {reference}: {e}") from e
        set_condition(status, "AbleToScale", "True", "SucceededGetScale",
                      "the HPA controller was able to get the target's current scale")  # fmt: skip
        current = int((scale.get("spec") or {}).get("replicas") or 0)
        self.recommender.record_initial(key, current)
        lo = spec.get("minReplicas", 1)
        hi = spec["maxReplicas"]
        desired, reason, metric_statuses = 0, "", status.get("currentMetrics")
        error: Exception | None = None
        if current == 0 and lo != 0:
            rescale = False
            set_condition(status, "ScalingActive", "False", "ScalingDisabled",
                          "scaling is disabled since the replica count of the target is zero")  # fmt: skip
        elif current > hi:
            reason, desired, rescale = "Current number of replicas above Spec.MaxReplicas", hi, True
        elif lo != 0 and current < lo:
            reason, desired, rescale = "Current number of replicas below Spec.MinReplicas", lo, True
        else:
            proposal, metric_name, metric_statuses, error = await self._compute_replicas_for_metrics(
                hpa, scale, status, current
            )
            if proposal == -1:
                status.update(currentReplicas=current, currentMetrics=metric_statuses or None)
                await self._update_status_if_needed(hpa, original, status)
                self.recorder.event(
                    hpa, WARNING, "FailedComputeMetricsReplicas", f"invalid metrics, first error is: {error}"
                )
                raise MetricsError(
                    f"failed to compute desired number of replicas based on listed metrics for {reference}: {error}"
                )  # noqa: E501
            desired = proposal
            if desired > current:
                reason = f"{metric_name} above target"
            elif desired < current:
                reason = "All metrics below target"
            desired = self._normalize(hpa, key, status, current, desired, lo, hi)
            rescale = desired != current
        if rescale:
            new_scale = copy.deepcopy(scale)
            new_scale.setdefault("spec", {})["replicas"] = desired
            try:
                await self.client.update(resource, new_scale, subresource="scale")
            except Exception as e:
                self.recorder.event(
                    hpa, WARNING, "FailedRescale", f"New size: {desired}; reason: {reason}; error: {e}"
                )
                set_condition(status, "AbleToScale", "False", "FailedUpdateScale",
                              f"the HPA controller was unable to update the target scale: {e}")  # fmt: skip
                status.update(currentReplicas=current, currentMetrics=metric_statuses or None)
                await self._update_status_if_needed(hpa, original, status)
                raise
            set_condition(status, "AbleToScale", "True", "SucceededRescale",
                          f"the HPA controller was able to update the target scale to {desired}")  # fmt: skip
            self.recorder.event(hpa, NORMAL, "SuccessfulRescale", f"New size: {desired}; reason: {reason}")
            self.recommender.store_scale_event(key, self._behavior(hpa), current, desired)
            log.info("horizontalpodautoscaling: successful rescale of %s, old size: %d, new size: %d, reason: %s",
                     key, current, desired, reason)  # fmt: skip
        status.update(
            currentReplicas=current, desiredReplicas=desired, currentMetrics=metric_statuses or None
        )
        if rescale:
            status["lastScaleTime"] = meta.now()
        await self._update_status_if_needed(hpa, original, status)
        if error is not None:
            raise error

    def _behavior(self, hpa: Obj) -> Obj | None:
        b = (hpa.get("spec") or {}).get("behavior")
        return default_behavior(b, int(self.recommender.downscale_window)) if b is not None else None

    def _normalize(
        self, hpa: Obj, key: str, status: Obj, current: int, desired: int, lo: int, hi: int
    ) -> int:
        behavior = self._behavior(hpa)
        r = self.recommender
        if behavior is None:
            stabilized = r.stabilize(key, desired)
            reason = "ScaleDownStabilized"
            message = "recent recommendations were higher than current one, applying the highest recent recommendation"
        else:
            stabilized, reason, message = r.stabilize_with_behaviors(key, current, desired, behavior)
        if stabilized != desired:
            set_condition(status, "AbleToScale", "True", reason, message)
        else:
            set_condition(
                status, "AbleToScale", "True", "ReadyForNewScale", "recommended size matches current size"
            )
        if behavior is None:
            final, cond, msg = convert_desired_replicas_with_rules(current, stabilized, lo, hi)
        else:
            final, cond, msg = r.convert_with_behavior_rate(key, current, stabilized, lo, hi, behavior)
        set_condition(status, "ScalingLimited", "False" if final == stabilized else "True", cond, msg)
        return final

    async def _compute_replicas_for_metrics(
        self, hpa: Obj, scale: Obj, status: Obj, current: int
    ) -> tuple[int, str, list[Obj], Exception | None]:
        """computeReplicasForMetrics: the largest proposal over the metrics; -1 when all are invalid
        (or an invalid one might have proposed more)."""
        specs = (hpa.get("spec") or {}).get("metrics") or [
            {"type": "Resource", "resource": {"name": "cpu", "target": {
                "type": "Utilization", "averageUtilization": DEFAULT_CPU_UTILIZATION}}}
        ]  # fmt: skip
        selector_text = (scale.get("status") or {}).get("selector")
        if not selector_text:
            msg = "selector is required"
            self.recorder.event(hpa, WARNING, "SelectorRequired", msg)
            set_condition(status, "ScalingActive", "False", "InvalidSelector",
                          "the HPA target's scale is missing a selector")  # fmt: skip
            return -1, "", [], MetricsError(msg)
        try:
            selector = LabelSelector.parse(selector_text)
        except Exception as e:
            self.recorder.event(hpa, WARNING, "InvalidSelector", str(e))
            set_condition(status, "ScalingActive", "False", "InvalidSelector",
                          "the HPA target's pod selector could not be parsed")  # fmt: skip
            return -1, "", [], e
        replicas, name, statuses = 0, "", []
        invalid, first_error = 0, None
        for spec in specs:
            try:
                proposal, metric_name, metric_status = await self._compute_replicas_for_metric(
                    hpa, spec, selector_text, selector, status, current
                )
            except Exception as e:
                invalid += 1
                first_error = first_error or e
                statuses.append({"type": ""})
                continue
            statuses.append(metric_status)
            if proposal > replicas:
                replicas, name = proposal, metric_name
        statuses = [s for s in statuses if s.get("type")]
        if invalid >= len(specs) or (invalid > 0 and replicas < current):
            return -1, "", statuses, first_error
        set_condition(status, "ScalingActive", "True", "ValidMetricFound",
                      f"the HPA was able to successfully calculate a replica count from {name}")  # fmt: skip
        return replicas, name, statuses, first_error

    async def _compute_replicas_for_metric(
        self, hpa: Obj, spec: Obj, selector_text: str, selector: LabelSelector, status: Obj, current: int
    ) -> tuple[int, str, Obj]:
        kind = spec.get("type")
        if kind == "Resource":
            src, container = spec.get("resource") or {}, None
        elif kind == "ContainerResource":
            src = spec.get("containerResource") or {}
            container = src.get("container")
        else:
            msg = f"unsupported metric source type {kind!r} (k8py serves resource metrics only)"
            set_condition(status, "ScalingActive", "False", "InvalidMetricSourceType",
                          "the HPA was unable to compute the replica count: " + msg)  # fmt: skip
            self.recorder.event(hpa, WARNING, "InvalidMetricSourceType", msg)
            raise MetricsError(msg)
        resource, target = src.get("name", ""), src.get("target") or {}
        label = f"{resource} container resource" if container else f"{resource} resource"
        fail_reason = "FailedGetContainerResourceMetric" if container else "FailedGetResourceMetric"
        try:
            ns = hpa["metadata"]["namespace"]
            metrics = await self._resource_metrics(ns, selector_text, resource, container)
            pods = [p for p in self.pods.indexer.by_index(NAMESPACE_INDEX, ns)
                    if selector.matches(p["metadata"].get("labels") or {})]  # fmt: skip
            current_block: Obj
            if target.get("averageValue") is not None:
                q = parse_quantity(target["averageValue"])
                if q is None:
                    raise MetricsError(f"invalid averageValue {target['averageValue']!r}")
                replicas, usage = self.calculator.raw_resource_replicas(
                    current, milli(q), resource, pods, metrics
                )
                current_block = {"averageValue": _milli_quantity(usage)}
            elif target.get("averageUtilization") is not None:
                replicas, utilization, raw = self.calculator.resource_replicas(
                    current, int(target["averageUtilization"]), resource, pods, metrics, container
                )
                current_block = {"averageUtilization": utilization, "averageValue": _milli_quantity(raw)}
                label += " utilization (percentage of request)"
            else:
                raise MetricsError(
                    "invalid resource metric source: neither a utilization target nor a value target was set"
                )  # noqa: E501
        except Exception as e:
            self.recorder.event(hpa, WARNING, fail_reason, str(e))
            set_condition(status, "ScalingActive", "False", fail_reason,
                          f"the HPA was unable to compute the replica count: {e}")  # fmt: skip
            raise
        if container:
            metric_status = {"type": "ContainerResource",
                             "containerResource": {"name": resource, "container": container, "current": current_block}}  # fmt: skip
        else:
            metric_status = {"type": "Resource", "resource": {"name": resource, "current": current_block}}
        return replicas, label, metric_status

    async def _resource_metrics(
        self, namespace: str, selector: str, resource: str, container: str | None
    ) -> dict[str, PodMetric]:
        """metricsclient.GetResourceMetric through the resource metrics API."""
        try:
            body = await self.client.raw("GET", METRICS_PATH.format(namespace=namespace),
                                         params={"labelSelector": selector})  # fmt: skip
        except ClientError as e:
            raise MetricsError(f"unable to get metrics for resource {resource}: unable to fetch metrics from "
                               f"resource metrics API: {e}") from e  # fmt: skip
        items = orjson.loads(body).get("items") or []
        if not items:
            raise MetricsError(f"unable to get metrics for resource {resource}: "
                               "no metrics returned from resource metrics API")  # fmt: skip
        return pod_metrics_from_list(items, resource, container)

    async def _resource_for(self, api_version: str, kind: str) -> Resource:
        group, _, version = api_version.rpartition("/")
        for r in RESOURCES:
            if r.group == group and r.version == version and r.kind == kind:
                return Resource(r.group, r.version, r.resource, r.kind, r.namespaced)
        path = f"/apis/{api_version}" if group else f"/api/{api_version}"
        listing = orjson.loads(await self.client.raw("GET", path))
        for r in listing.get("resources") or ():
            if r.get("kind") == kind and "/" not in r.get("name", ""):
                return Resource(group, version, r["name"], kind, bool(r.get("namespaced")))
        raise MetricsError(f"no matches for kind {kind!r} in group {group!r}")

    async def _update_status_if_needed(self, hpa: Obj, original: Obj, status: Obj) -> None:
        status["observedGeneration"] = hpa["metadata"].get("generation")
        status = {k: v for k, v in status.items() if v is not None}
        if status == original:
            return
        new = copy.deepcopy(hpa)
        new["status"] = status
        try:
            await self.client.update_status(HORIZONTAL_POD_AUTOSCALERS, new)
        except ClientError as e:
            if is_not_found(e):
                return
            raise
