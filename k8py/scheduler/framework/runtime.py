"""framework.Framework: one scheduling profile's plugins, run at each extension point.

Modelled on ``pkg/scheduler/framework/runtime/framework.go``. A profile names, per
extension point, the plugins enabled (with score weights); the framework builds each
plugin once from the registry and calls them in order. It never looks inside a plugin.

The filter and score loops are the hot path of the whole scheduler (thousands of
calls per pod), so the per-node methods keep to prebuilt lists of bound methods and
skip the plugins whose PreFilter/PreScore answered Skip.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from k8py.client.cache import Indexer
from k8py.scheduler.framework.handle import Nominator, SchedulerContext
from k8py.scheduler.framework.interface import (
    MAX_NODE_SCORE,
    MIN_NODE_SCORE,
    BindPlugin,
    ClusterEventWithHint,
    Code,
    CycleState,
    EnqueueExtensions,
    FilterPlugin,
    Handle,
    NodeScore,
    NodeToStatus,
    PermitPlugin,
    Plugin,
    PostBindPlugin,
    PostFilterPlugin,
    PostFilterResult,
    PreBindPlugin,
    PreEnqueuePlugin,
    PreFilterPlugin,
    PreFilterResult,
    PreScorePlugin,
    QueueSortPlugin,
    ReservePlugin,
    ScorePlugin,
    Status,
    as_status,
    unresolvable,
)
from k8py.scheduler.framework.types import NodeInfo, PodInfo
from k8py.scheduler.snapshot import Snapshot

log = logging.getLogger(__name__)

PluginFactory = Callable[[Mapping[str, Any], Handle], Any]

# the extension points of a profile's `plugins` section, in kube's spelling
EXTENSION_POINTS = (
    "preEnqueue",
    "queueSort",
    "preFilter",
    "filter",
    "postFilter",
    "preScore",
    "score",
    "reserve",
    "permit",
    "preBind",
    "bind",
    "postBind",
)

_PROTOCOLS: dict[str, type] = {
    "preEnqueue": PreEnqueuePlugin,
    "queueSort": QueueSortPlugin,
    "preFilter": PreFilterPlugin,
    "filter": FilterPlugin,
    "postFilter": PostFilterPlugin,
    "preScore": PreScorePlugin,
    "score": ScorePlugin,
    "reserve": ReservePlugin,
    "permit": PermitPlugin,
    "preBind": PreBindPlugin,
    "bind": BindPlugin,
    "postBind": PostBindPlugin,
}


class ConfigError(ValueError):
    """A profile that names unknown plugins or plugins lacking the extension point."""


class WaitingPod:
    """A pod a Permit plugin asked to wait: allowed when every waiting plugin allows it."""

    def __init__(self, pod: PodInfo, plugins: dict[str, float]) -> None:
        self.pod = pod
        self.pending = set(plugins)
        self.future: asyncio.Future[Status | None] = asyncio.get_running_loop().create_future()
        self.timers = [
            asyncio.get_running_loop().call_later(
                timeout,
                self.reject,
                name,
                f"rejected due to timeout after waiting {timeout:g}s at plugin {name}",
            )
            for name, timeout in plugins.items()
        ]

    def allow(self, plugin: str) -> None:
        self.pending.discard(plugin)
        if not self.pending:
            self._finish(None)

    def reject(self, plugin: str, message: str) -> None:
        self._finish(Status(Code.UNSCHEDULABLE, message, plugin=plugin))

    def _finish(self, status: Status | None) -> None:
        for t in self.timers:
            t.cancel()
        if not self.future.done():
            self.future.set_result(status)


class Framework:
    """One profile: its scheduler name, its plugins per extension point, score weights."""

    def __init__(
        self,
        profile: Mapping[str, Any],
        registry: Mapping[str, PluginFactory],
        context: SchedulerContext,
        *,
        percentage_of_nodes_to_score: int | None = None,
    ) -> None:
        self.profile_name: str = profile.get("schedulerName", "default-scheduler")
        self.context = context
        handle: Handle = self
        plugins_cfg: Mapping[str, Any] = profile.get("plugins") or {}
        args = {pc["name"]: pc.get("args") or {} for pc in profile.get("pluginConfig") or ()}
        self.plugin_args = args
        pct = profile.get("percentageOfNodesToScore")
        self.percentage_of_nodes_to_score: int | None = (
            pct if pct is not None else percentage_of_nodes_to_score
        )
        self.instances: dict[str, Any] = {}
        self.score_weights: dict[str, int] = {}
        points: dict[str, list[Any]] = {}
        multi_point = (plugins_cfg.get("multiPoint") or {}).get("enabled") or []
        for entry in multi_point:
            self._instance(entry["name"], registry, args, handle)
        for point in EXTENSION_POINTS:
            cfg = plugins_cfg.get(point) or {}
            disabled = {d["name"] for d in cfg.get("disabled") or ()}
            entries = list(cfg.get("enabled") or ())
            specific = {e["name"] for e in entries}
            if "*" not in disabled:
                entries += [
                    e
                    for e in multi_point
                    if e["name"] not in disabled
                    and e["name"] not in specific
                    and isinstance(self.instances[e["name"]], _PROTOCOLS[point])
                ]
            points[point] = []
            for entry in entries:
                name = entry["name"]
                plugin = self._instance(name, registry, args, handle)
                if not isinstance(plugin, _PROTOCOLS[point]):
                    raise ConfigError(f'plugin "{name}" does not extend {point} plugin')
                points[point].append(plugin)
                if point == "score":
                    self.score_weights[name] = entry.get("weight") or 1
        if len(points["queueSort"]) != 1:
            raise ConfigError(f"only one queue sort plugin can be enabled, got {len(points['queueSort'])}")
        if not points["bind"]:
            raise ConfigError("at least one bind plugin is needed")
        self.pre_enqueue_plugins: list[PreEnqueuePlugin] = points["preEnqueue"]
        self.queue_sort: QueueSortPlugin = points["queueSort"][0]
        self.pre_filter_plugins: list[PreFilterPlugin] = points["preFilter"]
        self.filter_plugins: list[FilterPlugin] = points["filter"]
        self.post_filter_plugins: list[PostFilterPlugin] = points["postFilter"]
        self.pre_score_plugins: list[PreScorePlugin] = points["preScore"]
        self.score_plugins: list[ScorePlugin] = points["score"]
        self.reserve_plugins: list[ReservePlugin] = points["reserve"]
        self.permit_plugins: list[PermitPlugin] = points["permit"]
        self.pre_bind_plugins: list[PreBindPlugin] = points["preBind"]
        self.bind_plugins: list[BindPlugin] = points["bind"]
        self.post_bind_plugins: list[PostBindPlugin] = points["postBind"]
        self.waiting_pods: dict[str, WaitingPod] = {}

    def _instance(
        self, name: str, registry: Mapping[str, PluginFactory], args: Mapping[str, Any], handle: Handle
    ) -> Any:
        if name not in self.instances:
            if name not in registry:
                raise ConfigError(f'plugin "{name}" does not exist')
            self.instances[name] = registry[name](args.get(name, {}), handle)
        return self.instances[name]

    # -- framework.Handle ----------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        return self.context.snapshot

    def lister(self, resource: str) -> Indexer:
        return self.context.lister(resource)

    @property
    def client(self) -> Any:
        return self.context.client

    @property
    def nominator(self) -> Nominator:
        return self.context.nominator

    # -- queueing -------------------------------------------------------------------------

    def less(self, a: Any, b: Any) -> bool:
        return self.queue_sort.less(a, b)

    def run_pre_enqueue_plugins(self, pod: Any) -> Status | None:
        for pl in self.pre_enqueue_plugins:
            status = pl.pre_enqueue(pod)
            if status is not None and status.code != Code.SUCCESS:
                return status.with_plugin(pl.name)
        return None

    def enqueue_extensions(self) -> dict[str, list[ClusterEventWithHint]]:
        """The cluster events each plugin registered, by plugin name."""
        out: dict[str, list[ClusterEventWithHint]] = {}
        for name, pl in self.instances.items():
            if isinstance(pl, EnqueueExtensions):
                out[name] = pl.events_to_register()
        return out

    # -- filtering ------------------------------------------------------------------------

    def run_pre_filter_plugins(
        self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]
    ) -> tuple[PreFilterResult | None, Status | None]:
        result: PreFilterResult | None = None
        skipped = state.skip_filter_plugins
        returned_by: list[str] = []
        for pl in self.pre_filter_plugins:
            try:
                r, status = pl.pre_filter(state, pod, nodes)
            except Exception as e:  # a plugin bug fails the pod's attempt, not the scheduler
                log.exception("PreFilter plugin %s failed", pl.name)
                return None, as_status(e).with_plugin(pl.name)
            if status is not None and status.code == Code.SKIP:
                skipped.add(pl.name)
                continue
            if status is not None and status.code != Code.SUCCESS:
                status.plugin = pl.name
                if status.is_rejected():
                    return None, status
                return None, Status(
                    Code.ERROR, f'running PreFilter plugin "{pl.name}": {status.message()}', plugin=pl.name
                )
            if r is not None and r.node_names is not None:
                returned_by.append(pl.name)
                result = r if result is None else result.merge(r)
                if not result.node_names:
                    return result, unresolvable(
                        f"node(s) didn't satisfy plugin(s) {returned_by} simultaneously"
                        if len(returned_by) > 1
                        else f"node(s) didn't satisfy plugin {returned_by[0]}"
                    ).with_plugin(returned_by[-1])
        return result, None

    def active_filters(self, state: CycleState) -> list[tuple[str, Callable[..., Status | None]]]:
        skip = state.skip_filter_plugins
        return [(pl.name, pl.filter) for pl in self.filter_plugins if pl.name not in skip]

    def run_filter_plugins(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        """The first rejection of the pod on `node`, or None when every Filter passes."""
        for name, fn in self.active_filters(state):
            status = fn(state, pod, node)
            if status is not None and status.code != Code.SUCCESS:
                status.plugin = name
                if not status.is_rejected():
                    return Status(
                        Code.ERROR, f'running "{name}" filter plugin: {status.message()}', plugin=name
                    )
                return status
        return None

    def run_filter_plugins_with_nominated_pods(
        self, state: CycleState, pod: PodInfo, node: NodeInfo
    ) -> Status | None:
        """RunFilterPluginsWithNominatedPods: filter as if the pods nominated to `node` with at
        least the pod's priority were already there, then (if any were) also without them."""
        nominated = [
            p
            for p in self.context.nominator.nominated_pods_for_node(node.name)
            if p.priority >= pod.priority and p.uid != pod.uid
        ]
        if nominated:
            state_with = state.clone()
            node_with = node.clone()
            for p in nominated:
                node_with.add_pod(p)
                status = self.run_pre_filter_extension_add_pod(state_with, pod, p, node_with)
                if status is not None:
                    return status
            status = self.run_filter_plugins(state_with, pod, node_with)
            if status is not None:
                return status
        return self.run_filter_plugins(state, pod, node)

    def run_pre_filter_extension_add_pod(
        self, state: CycleState, pod: PodInfo, to_add: PodInfo, node: NodeInfo
    ) -> Status | None:
        for pl in self.pre_filter_plugins:
            if pl.name in state.skip_filter_plugins:
                continue
            ext = pl.pre_filter_extensions()
            if ext is not None and (status := ext.add_pod(state, pod, to_add, node)) is not None:
                return status.with_plugin(pl.name)
        return None

    def run_pre_filter_extension_remove_pod(
        self, state: CycleState, pod: PodInfo, to_remove: PodInfo, node: NodeInfo
    ) -> Status | None:
        for pl in self.pre_filter_plugins:
            if pl.name in state.skip_filter_plugins:
                continue
            ext = pl.pre_filter_extensions()
            if ext is not None and (status := ext.remove_pod(state, pod, to_remove, node)) is not None:
                return status.with_plugin(pl.name)
        return None

    async def run_post_filter_plugins(
        self, state: CycleState, pod: PodInfo, filtered: NodeToStatus
    ) -> tuple[PostFilterResult | None, Status]:
        reasons: list[str] = []
        rejector = ""
        for pl in self.post_filter_plugins:
            r, status = await pl.post_filter(state, pod, filtered)
            if status is None or status.code == Code.SUCCESS:
                return r, Status(Code.SUCCESS, plugin=pl.name)
            if status.code == Code.UNSCHEDULABLE_AND_UNRESOLVABLE:
                return r, status.with_plugin(pl.name)
            if not status.is_rejected():
                return None, status.with_plugin(pl.name)
            reasons.extend(status.reasons)
            rejector = pl.name
        return None, Status(Code.UNSCHEDULABLE, *reasons, plugin=rejector)

    # -- scoring --------------------------------------------------------------------------

    def run_pre_score_plugins(
        self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]
    ) -> Status | None:
        skipped = state.skip_score_plugins
        for pl in self.pre_score_plugins:
            status = pl.pre_score(state, pod, nodes)
            if status is None or status.code == Code.SUCCESS:
                continue
            if status.code == Code.SKIP:
                skipped.add(pl.name)
                continue
            return Status(
                Code.ERROR, f'running PreScore plugin "{pl.name}": {status.message()}', plugin=pl.name
            )
        return None

    def run_score_plugins(
        self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]
    ) -> tuple[list[int], Status | None]:
        """The weighted total score of each node, in `nodes`' order.

        Plugin-major, with the per-node calls in comprehensions: this loop runs a few thousand
        plugin calls per pod, and per-call bookkeeping here costs as much as the plugins."""
        totals = [0] * len(nodes)
        skip = state.skip_score_plugins
        for pl in self.score_plugins:
            if pl.name in skip:
                continue
            score = pl.score
            results = [score(state, pod, ni) for ni in nodes]
            for _, status in results:
                if status is not None and status.code != Code.SUCCESS:
                    return totals, Status(
                        Code.ERROR,
                        f'running Score plugins: plugin "{pl.name}": {status.message()}',
                        plugin=pl.name,
                    )
            ext = pl.score_extensions()
            if ext is not None:
                scores = [NodeScore(ni.name, r[0]) for ni, r in zip(nodes, results, strict=True)]
                status = ext.normalize_score(state, pod, scores)
                if status is not None and status.code != Code.SUCCESS:
                    return totals, Status(
                        Code.ERROR, f"running Normalize on Score plugins: {status.message()}", plugin=pl.name
                    )
                values = [ns.score for ns in scores]
            else:
                values = [r[0] for r in results]
            if values and (min(values) < MIN_NODE_SCORE or max(values) > MAX_NODE_SCORE):
                bad = next(v for v in values if not MIN_NODE_SCORE <= v <= MAX_NODE_SCORE)
                return totals, Status(
                    Code.ERROR,
                    f'plugin "{pl.name}" returns an invalid score {bad}, it should in the range of '
                    f"[{MIN_NODE_SCORE}, {MAX_NODE_SCORE}] after normalizing",
                    plugin=pl.name,
                )
            weight = self.score_weights.get(pl.name, 1)
            if weight == 1:
                totals = [t + v for t, v in zip(totals, values, strict=True)]
            else:
                totals = [t + v * weight for t, v in zip(totals, values, strict=True)]
        return totals, None

    # -- reserve, permit, bind ------------------------------------------------------------

    def run_reserve_plugins_reserve(self, state: CycleState, pod: PodInfo, node_name: str) -> Status | None:
        for pl in self.reserve_plugins:
            status = pl.reserve(state, pod, node_name)
            if status is not None and status.code != Code.SUCCESS:
                if status.is_rejected():
                    return status.with_plugin(pl.name)
                return Status(
                    Code.ERROR, f'running Reserve plugin "{pl.name}": {status.message()}', plugin=pl.name
                )
        return None

    def run_reserve_plugins_unreserve(self, state: CycleState, pod: PodInfo, node_name: str) -> None:
        for pl in reversed(self.reserve_plugins):
            try:
                pl.unreserve(state, pod, node_name)
            except Exception:
                log.exception("Unreserve plugin %s failed", pl.name)

    def run_permit_plugins(self, state: CycleState, pod: PodInfo, node_name: str) -> Status | None:
        waits: dict[str, float] = {}
        for pl in self.permit_plugins:
            status, timeout = pl.permit(state, pod, node_name)
            if status is None or status.code == Code.SUCCESS:
                continue
            if status.is_rejected():
                return status.with_plugin(pl.name)
            if status.code == Code.WAIT:
                waits[pl.name] = min(timeout, 15 * 60)
                continue
            return Status(
                Code.ERROR, f'running Permit plugin "{pl.name}": {status.message()}', plugin=pl.name
            )
        if waits:
            self.waiting_pods[pod.uid] = WaitingPod(pod, waits)
            return Status(Code.WAIT, "one or more plugins asked to wait and no plugin rejected pod")
        return None

    async def wait_on_permit(self, pod: PodInfo) -> Status | None:
        wp = self.waiting_pods.get(pod.uid)
        if wp is None:
            return None
        try:
            return await wp.future
        finally:
            self.waiting_pods.pop(pod.uid, None)

    def get_waiting_pod(self, uid: str) -> WaitingPod | None:
        return self.waiting_pods.get(uid)

    async def run_pre_bind_plugins(self, state: CycleState, pod: PodInfo, node_name: str) -> Status | None:
        for pl in self.pre_bind_plugins:
            status = await pl.pre_bind(state, pod, node_name)
            if status is not None and status.code != Code.SUCCESS:
                if status.is_rejected():
                    return status.with_plugin(pl.name)
                return Status(
                    Code.ERROR, f'running PreBind plugin "{pl.name}": {status.message()}', plugin=pl.name
                )
        return None

    async def run_bind_plugins(self, state: CycleState, pod: PodInfo, node_name: str) -> Status | None:
        status: Status | None = Status(Code.SKIP)
        for pl in self.bind_plugins:
            status = await pl.bind(state, pod, node_name)
            if status is not None and status.code == Code.SKIP:
                continue
            if status is not None and status.code != Code.SUCCESS:
                if status.is_rejected():
                    return status.with_plugin(pl.name)
                return Status(Code.ERROR, f'binding "{pod.key}": {status.message()}', plugin=pl.name)
            return None
        return status

    def run_post_bind_plugins(self, state: CycleState, pod: PodInfo, node_name: str) -> None:
        for pl in self.post_bind_plugins:
            pl.post_bind(state, pod, node_name)

    def has_post_filter_plugins(self) -> bool:
        return bool(self.post_filter_plugins)

    def has_score_plugins(self) -> bool:
        return bool(self.score_plugins)

    def plugin(self, name: str) -> Plugin | None:
        return self.instances.get(name)
