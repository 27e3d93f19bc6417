"""The scheduler: informers in, one scheduling cycle at a time, bindings out (``scheduler.go``,
``schedule_one.go``, ``eventhandlers.go``).

Everything is learnt from list+watch through the API server and every decision is
written back through it: the ``pods/binding`` subresource, the pod's ``PodScheduled``
condition and ``nominatedNodeName`` (status patches), and Events. Nothing else.

One loop pops the queue and runs a *scheduling cycle* synchronously: snapshot, filter,
score, assume the pod in the cache, Reserve, Permit. The *binding cycle* (wait on
Permit, PreBind, Bind) then runs as its own task, so the next scheduling cycle does not
wait on the API server; the assumed pod already counts on its node meanwhile.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Mapping
from typing import Any

from k8py.client import NORMAL, WARNING, ClientError, EventRecorder, PatchType, RESTClient, is_not_found
from k8py.client.cache import DeletedFinalStateUnknown
from k8py.client.informer import (
    FilteringResourceEventHandler,
    ResourceEventHandlerFuncs,
    SharedInformerFactory,
)
from k8py.client.resources import (
    CSI_NODES,
    NAMESPACES,
    NODES,
    PERSISTENT_VOLUME_CLAIMS,
    PERSISTENT_VOLUMES,
    POD_DISRUPTION_BUDGETS,
    PODS,
    REPLICA_SETS,
    REPLICATION_CONTROLLERS,
    SERVICES,
    STATEFUL_SETS,
    STORAGE_CLASSES,
    Resource,
    builtin,
)
from k8py.scheduler.cache import Cache
from k8py.scheduler.config import load_configuration
from k8py.scheduler.framework.handle import SchedulerContext
from k8py.scheduler.framework.interface import (
    ActionType,
    ClusterEvent,
    ClusterEventWithHint,
    Code,
    CycleState,
    EventResource,
    Status,
)
from k8py.scheduler.framework.runtime import Framework, PluginFactory
from k8py.scheduler.framework.types import Obj, PodInfo, QueuedPodInfo
from k8py.scheduler.metrics import Metrics
from k8py.scheduler.plugins.registry import IN_TREE
from k8py.scheduler.queue import SchedulingQueue
from k8py.scheduler.schedule_one import Algorithm, FitError, NoNodesAvailable, ScheduleResult, SchedulingError

log = logging.getLogger(__name__)

# what the scheduler watches besides pods and nodes, by lister name
_LISTERS: dict[str, Resource] = {
    "namespaces": NAMESPACES,
    "services": SERVICES,
    "replicationcontrollers": REPLICATION_CONTROLLERS,
    "replicasets": REPLICA_SETS,
    "statefulsets": STATEFUL_SETS,
    "poddisruptionbudgets": POD_DISRUPTION_BUDGETS,
    "persistentvolumeclaims": PERSISTENT_VOLUME_CLAIMS,
    "persistentvolumes": PERSISTENT_VOLUMES,
    "storageclasses": STORAGE_CLASSES,
    "csinodes": CSI_NODES,
    "csidrivers": builtin("csidrivers", "storage.k8s.io"),
    "csistoragecapacities": builtin("csistoragecapacities", "storage.k8s.io"),
}
# storage objects whose add/update may make a pod schedulable
_STORAGE_EVENTS = {
    "persistentvolumeclaims": EventResource.PVC,
    "persistentvolumes": EventResource.PV,
    "storageclasses": EventResource.STORAGE_CLASS,
    "csinodes": EventResource.CSI_NODE,
    "csidrivers": EventResource.CSI_DRIVER,
    "csistoragecapacities": EventResource.CSI_STORAGE_CAPACITY,
}
NOT_TERMINAL = "status.phase!=Succeeded,status.phase!=Failed"
MAX_IN_FLIGHT_WRITES = 32


class Scheduler:
    def __init__(
        self,
        client: RESTClient,
        config: Mapping[str, Any] | None = None,
        *,
        registry: Mapping[str, PluginFactory] = IN_TREE,
    ) -> None:
        self.client = client
        self.config = load_configuration(config)
        self.factory = SharedInformerFactory(client)
        self.pod_informer = self.factory.informer_for(PODS, field_selector=NOT_TERMINAL)
        self.node_informer = self.factory.informer_for(NODES)
        informers = {name: self.factory.informer_for(res) for name, res in _LISTERS.items()}
        listers = {name: inf.indexer for name, inf in informers.items()}
        listers["pods"] = self.pod_informer.indexer
        listers["nodes"] = self.node_informer.indexer
        self.recorder = EventRecorder(client, component="default-scheduler")
        self.context = SchedulerContext(client=client, listers=listers, recorder=self.recorder)
        pct = self.config["percentageOfNodesToScore"]
        self.profiles: dict[str, Framework] = {
            p["schedulerName"]: Framework(p, registry, self.context, percentage_of_nodes_to_score=pct)
            for p in self.config["profiles"]
        }
        first = next(iter(self.profiles.values()))
        events: dict[str, list[ClusterEventWithHint]] = {}
        for fwk in self.profiles.values():
            for name, evs in fwk.enqueue_extensions().items():
                events.setdefault(name, []).extend(evs)
        self.cache = Cache()
        self.queue = SchedulingQueue(
            first.less,
            pre_enqueue=self._pre_enqueue,
            events=events,
            nominator=self.context.nominator,
            initial_backoff=float(self.config["podInitialBackoffSeconds"]),
            max_backoff=float(self.config["podMaxBackoffSeconds"]),
        )
        self.algorithm = Algorithm(pct)
        self.metrics = Metrics()
        self._tasks: set[asyncio.Task[Any]] = set()
        # API writes of binding cycles and status updates in flight at once (a few connections
        # kept busy, rather than a TLS handshake storm when thousands of pods bind together)
        self._api_slots = asyncio.Semaphore(MAX_IN_FLIGHT_WRITES)
        self._add_event_handlers(informers)

    # -- running --------------------------------------------------------------------------

    async def run(self) -> None:
        """Watch, wait for the caches, then schedule until cancelled."""
        self.factory.start()
        queue_task = asyncio.create_task(self.queue.run(), name="scheduler-queue")
        try:
            await self.factory.wait_for_cache_sync()
            while True:
                qpi = await self.queue.pop()
                if qpi is None:
                    return
                await self.schedule_one(qpi)
        finally:
            queue_task.cancel()
            self.queue.close()
            for t in list(self._tasks):
                t.cancel()
            await asyncio.gather(queue_task, *self._tasks, return_exceptions=True)
            await self.factory.shutdown()
            await self.recorder.stop()

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def framework_for_pod(self, pod: Obj) -> Framework | None:
        return self.profiles.get((pod.get("spec") or {}).get("schedulerName") or "default-scheduler")

    def _pre_enqueue(self, pod: Obj) -> Status | None:
        fwk = self.framework_for_pod(pod)
        return fwk.run_pre_enqueue_plugins(pod) if fwk is not None else None

    # -- one pod --------------------------------------------------------------------------

    async def schedule_one(self, qpi: QueuedPodInfo) -> None:
        pod = qpi.pod_info
        fwk = self.framework_for_pod(pod.pod)
        if fwk is None or self._skip_pod_schedule(pod):
            self.queue.done(pod.uid)
            return
        start = time.monotonic()
        state = CycleState()
        self.cache.update_snapshot(self.context.snapshot)
        try:
            result = self.algorithm.schedule_pod(fwk, state, pod, self.context.snapshot)
        except (FitError, NoNodesAvailable) as e:
            self.metrics.scheduling_algorithm_duration.observe(time.monotonic() - start)
            await self._handle_fit_failure(fwk, state, qpi, e, start)
            return
        except SchedulingError as e:
            self._fail(fwk, qpi, e.status, start, result_label="error")
            return
        except Exception as e:  # a bug in a plugin: the pod goes to backoff, the scheduler lives on
            log.exception("scheduling %s failed", pod.key)
            self._fail(fwk, qpi, Status(Code.ERROR, str(e), error=e), start, result_label="error")
            return
        self.metrics.scheduling_algorithm_duration.observe(time.monotonic() - start)
        self._assume_and_bind(fwk, state, qpi, result, start)

    def _skip_pod_schedule(self, pod: PodInfo) -> bool:
        if pod.pod["metadata"].get("deletionTimestamp"):
            return True
        return self.cache.is_assumed_pod(pod.uid)

    async def _handle_fit_failure(
        self, fwk: Framework, state: CycleState, qpi: QueuedPodInfo, err: Exception, start: float
    ) -> None:
        pod = qpi.pod_info
        nominated: str | None = None  # None: leave the pod's nomination alone; "": clear it
        if isinstance(err, FitError):
            diagnosis = err.diagnosis
            qpi.unschedulable_plugins = diagnosis.unschedulable_plugins
            qpi.pending_plugins = diagnosis.pending_plugins
            if fwk.has_post_filter_plugins():
                self.metrics.preemption_attempts.inc()
                result, status = await fwk.run_post_filter_plugins(state, pod, diagnosis.node_to_status)
                if status.code == Code.ERROR:
                    log.error("running PostFilter for %s: %s", pod.key, status.message())
                elif status.code != Code.SUCCESS and status.message():
                    diagnosis.post_filter_msg = status.message()
                if result is not None and result.mode == "Override":
                    nominated = result.nominated_node_name
            status = Status(Code.UNSCHEDULABLE, str(err))
        else:
            qpi.unschedulable_plugins = set()
            status = Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, str(err))
        self._fail(fwk, qpi, status, start, result_label="unschedulable", nominated_node=nominated)

    def _assume_and_bind(
        self, fwk: Framework, state: CycleState, qpi: QueuedPodInfo, result: ScheduleResult, start: float
    ) -> None:
        pod = qpi.pod_info
        host = result.suggested_host
        assumed = self.cache.assume_pod(pod, host)
        status = fwk.run_reserve_plugins_reserve(state, assumed, host)
        if status is not None:
            fwk.run_reserve_plugins_unreserve(state, assumed, host)
            self.cache.forget_pod(pod)
            self._fail(
                fwk,
                qpi,
                status,
                start,
                result_label="error" if status.code == Code.ERROR else "unschedulable",
            )
            return
        status = fwk.run_permit_plugins(state, assumed, host)
        if status is not None and status.code != Code.WAIT:
            fwk.run_reserve_plugins_unreserve(state, assumed, host)
            self.cache.forget_pod(pod)
            self._fail(
                fwk,
                qpi,
                status,
                start,
                result_label="error" if status.code == Code.ERROR else "unschedulable",
            )
            return
        # a pod that was nominated somewhere no longer needs the nomination
        self.context.nominator.delete(pod)
        self._spawn(self._binding_cycle(fwk, state, qpi, assumed, host, start), f"bind:{pod.key}")

    async def _binding_cycle(
        self, fwk: Framework, state: CycleState, qpi: QueuedPodInfo, assumed: PodInfo, host: str, start: float
    ) -> None:
        pod = qpi.pod_info
        try:
            status = await fwk.wait_on_permit(assumed)
            if status is None:
                async with self._api_slots:
                    status = await fwk.run_pre_bind_plugins(state, assumed, host)
                    if status is None:
                        status = await fwk.run_bind_plugins(state, assumed, host)
        except Exception as e:  # a transport error or a plugin bug: the attempt fails, the pod goes back
            log.warning("binding %s to %s failed: %s", pod.key, host, e)
            status = Status(Code.ERROR, str(e), error=e)
        if status is not None:
            fwk.run_reserve_plugins_unreserve(state, assumed, host)
            self.cache.forget_pod(pod)
            # the pod's resources are free again: pods waiting on them may fit now
            self.queue.move_all_to_active_or_backoff(
                ClusterEvent(EventResource.ASSIGNED_POD, ActionType.DELETE, "AssignedPodDelete")
            )
            self._fail(
                fwk,
                qpi,
                status,
                start,
                result_label="error" if status.code == Code.ERROR else "unschedulable",
            )
            return
        self.cache.finish_binding(assumed)
        self.queue.done(pod.uid)
        now = time.monotonic()
        self.metrics.schedule_attempts.labels(result="scheduled", profile=fwk.profile_name).inc()
        self.metrics.scheduling_attempt_duration.labels(result="scheduled", profile=fwk.profile_name).observe(
            now - start
        )
        self.metrics.e2e_scheduling_duration.labels(attempts=str(qpi.attempts)).observe(
            now - (qpi.initial_attempt_timestamp or qpi.timestamp)
        )
        self.recorder.event(assumed.pod, NORMAL, "Scheduled", f"Successfully assigned {pod.key} to {host}")
        fwk.run_post_bind_plugins(state, assumed, host)

    # -- failures -------------------------------------------------------------------------

    def _fail(
        self,
        fwk: Framework,
        qpi: QueuedPodInfo,
        status: Status,
        start: float,
        *,
        result_label: str,
        nominated_node: str | None = None,
    ) -> None:
        """handleSchedulingFailure: back to the queue, a FailedScheduling event, the pod's condition."""
        pod = qpi.pod_info
        self.metrics.schedule_attempts.labels(result=result_label, profile=fwk.profile_name).inc()
        self.metrics.scheduling_attempt_duration.labels(
            result=result_label, profile=fwk.profile_name
        ).observe(time.monotonic() - start)
        if status.code == Code.ERROR:
            qpi.unschedulable_plugins = set()
            qpi.pending_plugins = set()
        elif status.plugin and not qpi.unschedulable_plugins and not qpi.pending_plugins:
            qpi.unschedulable_plugins = {status.plugin}
        current = self.pod_informer.indexer.get_by_key(pod.key)
        if current is None or current["metadata"].get("uid") != pod.uid:
            self.queue.done(pod.uid)
            return  # deleted meanwhile
        if (current.get("spec") or {}).get("nodeName"):
            self.queue.done(pod.uid)
            return  # bound meanwhile (by someone else)
        qpi.pod_info.update(current)
        self.queue.add_unschedulable_if_not_present(qpi, self.queue.scheduling_cycle)
        if nominated_node:
            self.context.nominator.add(qpi.pod_info, nominated_node)
        elif nominated_node == "":
            self.context.nominator.delete(qpi.pod_info)
        message = status.message() or "scheduling failed"
        reason = "Unschedulable" if status.is_rejected() else "SchedulerError"
        self.recorder.event(current, WARNING, "FailedScheduling", message)
        self._spawn(self._update_pod_status(current, reason, message, nominated_node), f"status:{pod.key}")

    async def _update_pod_status(self, pod: Obj, reason: str, message: str, nominated_node: str | None) -> None:
        async with self._api_slots:
            await self._patch_pod_status(pod, reason, message, nominated_node)

    async def _patch_pod_status(self, pod: Obj, reason: str, message: str, nominated_node: str | None) -> None:
        status = pod.get("status") or {}
        old = next((c for c in status.get("conditions") or () if c.get("type") == "PodScheduled"), None)
        condition = {"type": "PodScheduled", "status": "False", "reason": reason, "message": message}
        nnn_changed = nominated_node is not None and (status.get("nominatedNodeName") or "") != nominated_node
        if old is not None and all(old.get(k) == v for k, v in condition.items()) and not nnn_changed:
            return
        condition["lastProbeTime"] = None
        condition["lastTransitionTime"] = (
            old.get("lastTransitionTime") if old is not None and old.get("status") == "False" else _now()
        )
        patch: Obj = {"status": {"conditions": [condition]}}
        if nnn_changed:
            patch["status"]["nominatedNodeName"] = nominated_node or None
        meta = pod["metadata"]
        try:
            await self.client.patch(
                PODS,
                meta["name"],
                patch,
                patch_type=PatchType.STRATEGIC,
                namespace=meta["namespace"],
                subresource="status",
            )
        except ClientError as e:
            if not is_not_found(e):
                log.warning("updating the status of pod %s/%s: %s", meta["namespace"], meta["name"], e)

    # -- informer events ------------------------------------------------------------------

    def _add_event_handlers(self, informers: Mapping[str, Any]) -> None:
        self.pod_informer.add_event_handler(
            FilteringResourceEventHandler(
                _assigned,
                ResourceEventHandlerFuncs(
                    add_func=self._add_pod_to_cache,
                    update_func=self._update_pod_in_cache,
                    delete_func=self._delete_pod_from_cache,
                ),
            )
        )
        self.pod_informer.add_event_handler(
            FilteringResourceEventHandler(
                lambda p: not _assigned(p) and self.framework_for_pod(p) is not None,
                ResourceEventHandlerFuncs(
                    add_func=lambda p, _initial: self._queue_changed(self.queue.add, p),
                    update_func=self._update_pod_in_queue,
                    delete_func=self._delete_pod_from_queue,
                ),
            )
        )
        self.node_informer.add_event_handler(
            ResourceEventHandlerFuncs(
                add_func=self._add_node, update_func=self._update_node, delete_func=self._delete_node
            )
        )
        for name, resource in _STORAGE_EVENTS.items():
            informers[name].add_event_handler(
                ResourceEventHandlerFuncs(
                    add_func=lambda o, _initial, r=resource: self._move(
                        ClusterEvent(r, ActionType.ADD, f"{r}Add")
                    ),
                    update_func=lambda _o, _n, r=resource: self._move(
                        ClusterEvent(r, ActionType.UPDATE, f"{r}Update")
                    ),
                )
            )

    def _queue_changed(self, fn: Any, *args: Any) -> None:
        fn(*args)
        self.metrics.observe_queue(self.queue.pending(), self.queue.incoming)

    def _move(self, event: ClusterEvent, old: Obj | None = None, new: Obj | None = None) -> None:
        self._queue_changed(self.queue.move_all_to_active_or_backoff, event, old, new)

    def _add_pod_to_cache(self, pod: Obj, _initial: bool = False) -> None:
        self.cache.add_pod(pod)
        self._move(ClusterEvent(EventResource.ASSIGNED_POD, ActionType.ADD, "AssignedPodAdd"), None, pod)

    def _update_pod_in_cache(self, old: Obj, new: Obj) -> None:
        if old["metadata"].get("resourceVersion") == new["metadata"].get("resourceVersion"):
            return
        self.cache.update_pod(old, new)
        action = ActionType(0)
        if (old["metadata"].get("labels") or {}) != (new["metadata"].get("labels") or {}):
            action |= ActionType.UPDATE_POD_LABEL
        if old.get("spec") != new.get("spec"):  # requests only change with the spec (parsing them is not free)
            before, after = PodInfo(old).requests(), PodInfo(new).requests()
            if after.milli_cpu < before.milli_cpu or after.memory < before.memory:
                action |= ActionType.UPDATE_POD_SCALE_DOWN
        if action:
            self._move(ClusterEvent(EventResource.ASSIGNED_POD, action, "AssignedPodUpdate"), old, new)

    def _delete_pod_from_cache(self, obj: Obj | DeletedFinalStateUnknown) -> None:
        pod = obj.obj if isinstance(obj, DeletedFinalStateUnknown) else obj
        self.cache.remove_pod(pod)
        self._move(
            ClusterEvent(EventResource.ASSIGNED_POD, ActionType.DELETE, "AssignedPodDelete"), pod, None
        )

    def _update_pod_in_queue(self, old: Obj, new: Obj) -> None:
        if old["metadata"].get("resourceVersion") == new["metadata"].get("resourceVersion"):
            return
        if self.cache.is_assumed_pod(new["metadata"].get("uid", "")):
            return
        self._queue_changed(self.queue.update, old, new)

    def _delete_pod_from_queue(self, obj: Obj | DeletedFinalStateUnknown) -> None:
        pod = obj.obj if isinstance(obj, DeletedFinalStateUnknown) else obj
        self._queue_changed(self.queue.delete, pod)
        fwk = self.framework_for_pod(pod)
        if fwk is not None:
            waiting = fwk.get_waiting_pod(pod["metadata"].get("uid", ""))
            if waiting is not None:
                waiting.reject("", "removed")
        self._move(
            ClusterEvent(EventResource.UNSCHEDULED_POD, ActionType.DELETE, "UnscheduledPodDelete"), pod, None
        )

    def _add_node(self, node: Obj, _initial: bool = False) -> None:
        self.cache.add_node(node)
        self._move(ClusterEvent(EventResource.NODE, ActionType.ADD, "NodeAdd"), None, node)

    def _update_node(self, old: Obj, new: Obj) -> None:
        self.cache.update_node(old, new)
        action = node_scheduling_properties_change(old, new)
        if action:
            self._move(ClusterEvent(EventResource.NODE, action, "NodeUpdate"), old, new)

    def _delete_node(self, obj: Obj | DeletedFinalStateUnknown) -> None:
        node = obj.obj if isinstance(obj, DeletedFinalStateUnknown) else obj
        self.cache.remove_node(node)


def node_scheduling_properties_change(old: Obj, new: Obj) -> ActionType:
    """What changed about a node that scheduling cares about (eventhandlers.go)."""
    action = ActionType(0)
    old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
    old_status, new_status = old.get("status") or {}, new.get("status") or {}
    if bool(old_spec.get("unschedulable")) != bool(new_spec.get("unschedulable")):
        action |= ActionType.UPDATE_NODE_TAINT
    if old_status.get("allocatable") != new_status.get("allocatable"):
        action |= ActionType.UPDATE_NODE_ALLOCATABLE
    if (old["metadata"].get("labels") or {}) != (new["metadata"].get("labels") or {}):
        action |= ActionType.UPDATE_NODE_LABEL
    if old_spec.get("taints") != new_spec.get("taints"):
        action |= ActionType.UPDATE_NODE_TAINT
    if _conditions(old_status) != _conditions(new_status):
        action |= ActionType.UPDATE_NODE_CONDITION
    if (old["metadata"].get("annotations") or {}) != (new["metadata"].get("annotations") or {}):
        action |= ActionType.UPDATE_NODE_ANNOTATION
    return action


def _conditions(status: Obj) -> dict[str, str]:
    return {c.get("type", ""): c.get("status", "") for c in status.get("conditions") or ()}


def _assigned(pod: Obj) -> bool:
    return bool((pod.get("spec") or {}).get("nodeName"))


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
