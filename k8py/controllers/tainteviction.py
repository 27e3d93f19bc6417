"""Taint eviction (``pkg/controller/tainteviction``, the former NoExecute taint manager): pods
leave nodes tainted ``NoExecute`` unless they tolerate the taint, and only for as long as they do.

The controller keeps each node's NoExecute taints (``tainted_nodes``) and, for every pod on a
tainted node, decides as upstream's processPodOnNode:

* a taint the pod does not tolerate: the pod is deleted now;
* all tolerated, none with ``tolerationSeconds``: the pod stays (any scheduled deletion is
  cancelled);
* otherwise the pod is deleted when the smallest ``tolerationSeconds`` of the tolerations used
  has passed, counted from when this controller first scheduled it (a later, longer toleration
  does not postpone it; a shorter one brings it forward). The API server's
  DefaultTolerationSeconds admission gives every pod 300 s for not-ready and unreachable.

Scheduled deletions live in a :class:`TimedWorkerQueue` (one asyncio timer per pod). When one
fires, a ``TaintManagerEviction`` event ("Marking for deletion Pod ns/name") is recorded, the
pod gets the ``DisruptionTarget`` condition (reason ``DeletionByTaintManager``), then it is
deleted with its default grace period. Taints removed, the pod gone, or its tolerations changed
cancel the timer ("Cancelling deletion of Pod ns/name"). A deletion done is remembered until the
pod is gone, so that it is not scheduled twice.

Node and pod events only put keys (``node/<name>``, ``pod/<ns>/<name>``) on the work queue;
``sync`` reads the caches. The bookkeeping is in memory and rebuilt from the caches after a
restart (the timers restart too: a pod is given its full toleration again, as upstream).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from k8py.api import meta
from k8py.client import NORMAL, ClientError, PatchType, ResourceEventHandlerFuncs, is_not_found
from k8py.client.cache import DeletedFinalStateUnknown
from k8py.client.resources import NODES, PODS
from k8py.controllers.base import QueueController, key_of, unwrap
from k8py.controllers.controller_utils import pod_condition
from k8py.controllers.manager import ControllerContext
from k8py.controllers.nodelifecycle import NODE_NAME_INDEX, node_pods_index
from k8py.scheduler.plugins.helper import tolerates

log = logging.getLogger(__name__)

Obj = dict[str, Any]
NO_EXECUTE = "NoExecute"
DELETE_RETRIES = 5
FOREVER = -1.0


def no_execute_taints(node: Obj | None) -> list[Obj]:
    return [t for t in ((node or {}).get("spec") or {}).get("taints") or () if t.get("effect") == NO_EXECUTE]


def matching_tolerations(taints: list[Obj], tolerations: list[Obj]) -> tuple[bool, list[Obj]]:
    """v1helper.GetMatchingTolerations: (all taints tolerated, the first toleration used for each)."""
    used: list[Obj] = []
    for taint in taints:
        found = next((t for t in tolerations if tolerates(t, taint)), None)
        if found is None:
            return False, []
        used.append(found)
    return True, used


def min_toleration_time(tolerations: list[Obj]) -> float:
    """getMinTolerationTime: the smallest tolerationSeconds (0 when <= 0 or no tolerations), FOREVER if none set."""
    if not tolerations:
        return 0.0
    least: float | None = None
    for t in tolerations:
        seconds = t.get("tolerationSeconds")
        if seconds is None:
            continue
        if seconds <= 0:
            return 0.0
        least = seconds if least is None else min(least, seconds)
    return FOREVER if least is None else float(least)


@dataclass
class TimedWorker:
    created_at: float
    fire_at: float
    handle: asyncio.TimerHandle | None = None
    task: asyncio.Task[None] | None = None
    done: bool = field(default=False)

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
        if self.task is not None and not self.task.done():
            self.task.cancel()


class TimedWorkerQueue:
    """timed_workers.TimedWorkerQueue: one delayed call of `work(key)` per key."""

    def __init__(self, work: Callable[[str], Awaitable[None]]) -> None:
        self.work = work
        self.workers: dict[str, TimedWorker] = {}

    def add_work(self, key: str, created_at: float, fire_at: float) -> None:
        if key in self.workers:
            return  # already scheduled (or done): kept until cancelled
        worker = TimedWorker(created_at, fire_at)
        loop = asyncio.get_running_loop()
        worker.handle = loop.call_later(max(0.0, fire_at - time.time()), self._fire, key, worker)
        self.workers[key] = worker

    def _fire(self, key: str, worker: TimedWorker) -> None:
        worker.handle = None
        worker.task = asyncio.create_task(self._run(key, worker), name=f"taint-eviction {key}")

    async def _run(self, key: str, worker: TimedWorker) -> None:
        try:
            await self.work(key)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.warning("taint-eviction-controller: deleting pod %s failed: %s", key, e)
            if self.workers.get(key) is worker:
                del self.workers[key]  # a later event may schedule it again
            return
        worker.done = True  # kept, so that the pod is not scheduled again until it is gone

    def cancel_work(self, key: str) -> bool:
        """True when a deletion that had not run yet was cancelled."""
        worker = self.workers.pop(key, None)
        if worker is None:
            return False
        worker.cancel()
        return not worker.done

    def get(self, key: str) -> TimedWorker | None:
        return self.workers.get(key)

    def shut_down(self) -> None:
        for worker in self.workers.values():
            worker.cancel()
        self.workers.clear()


class TaintEvictionController(QueueController):
    name = "taint-eviction-controller"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(workers=ctx.options.workers(self.name, 8))
        self.client = ctx.client
        self.recorder = ctx.recorder(self.name)
        self.nodes = ctx.informers.informer_for(NODES)
        self.pods = ctx.informers.informer_for(PODS, indexers={NODE_NAME_INDEX: node_pods_index})
        self.tainted_nodes: dict[str, list[Obj]] = {}
        self.evictions = TimedWorkerQueue(self._delete_pod)
        self.nodes.add_event_handler(
            ResourceEventHandlerFuncs(
                add_func=lambda n, _i: self._node_updated(None, n),
                update_func=self._node_updated,
                delete_func=lambda n: self.queue.add(f"node/{key_of(n)}"),
            )
        )
        self.pods.add_event_handler(
            ResourceEventHandlerFuncs(
                add_func=lambda p, _i: self._pod_updated(None, p),
                update_func=self._pod_updated,
                delete_func=lambda p: self.queue.add(f"pod/{key_of(p)}"),
            )
        )
        self.synced = [self.nodes, self.pods]

    # -- events -------------------------------------------------------------------------------------

    def _node_updated(self, old: Obj | None, new: Obj) -> None:
        if old is not None and no_execute_taints(old) == no_execute_taints(new):
            return
        self.queue.add(f"node/{new['metadata']['name']}")

    def _pod_updated(self, old: Obj | None, new: Obj | DeletedFinalStateUnknown) -> None:
        pod = unwrap(new)
        if old is not None:
            o, n = old.get("spec") or {}, pod.get("spec") or {}
            if o.get("tolerations") == n.get("tolerations") and o.get("nodeName") == n.get("nodeName"):
                return
        self.queue.add(f"pod/{key_of(pod)}")

    # -- running ------------------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            await super().run()
        finally:
            self.evictions.shut_down()

    async def sync(self, key: str) -> None:
        kind, _, rest = key.partition("/")
        if kind == "node":
            self._handle_node_update(rest)
        elif kind == "pod":
            self._handle_pod_update(rest)

    def _handle_pod_update(self, key: str) -> None:
        pod = self.pods.indexer.get_by_key(key)
        if pod is None:
            self._cancel(key)
            return
        node = (pod.get("spec") or {}).get("nodeName")
        if not node:
            return
        taints = self.tainted_nodes.get(node)
        if taints is None:
            return
        self._process_pod_on_node(key, pod, taints, time.time())

    def _handle_node_update(self, name: str) -> None:
        node = self.nodes.indexer.get_by_key(name)
        if node is None:
            self.tainted_nodes.pop(name, None)
            return
        taints = no_execute_taints(node)
        if taints:
            self.tainted_nodes[name] = taints
        else:
            self.tainted_nodes.pop(name, None)
        pods = self.pods.indexer.by_index(NODE_NAME_INDEX, name)
        if not taints:
            for pod in pods:
                self._cancel(key_of(pod))
            return
        now = time.time()
        for pod in pods:
            self._process_pod_on_node(key_of(pod), pod, taints, now)

    def _process_pod_on_node(self, key: str, pod: Obj, taints: list[Obj], now: float) -> None:
        if not taints:
            self._cancel(key)
            return
        tolerated, used = matching_tolerations(taints, (pod.get("spec") or {}).get("tolerations") or [])
        if not tolerated:
            log.info("taint-eviction-controller: pod %s does not tolerate every taint of its node: deleting it", key)
            self._cancel(key)
            self.evictions.add_work(key, now, now)
            return
        seconds = min_toleration_time(used)
        if seconds < 0:
            self._cancel(key)  # tolerated forever
            return
        start, trigger = now, now + seconds
        scheduled = self.evictions.get(key)
        if scheduled is not None:
            start = scheduled.created_at
            if start + seconds < trigger:
                return  # the earlier schedule stands
            self._cancel(key)
        self.evictions.add_work(key, start, trigger)

    def _cancel(self, key: str) -> None:
        if self.evictions.cancel_work(key):
            self._event(key, f"Cancelling deletion of Pod {key}")

    def _event(self, key: str, message: str) -> None:
        namespace, _, name = key.partition("/")
        ref = {"apiVersion": "v1", "kind": "Pod", "name": name, "namespace": namespace}
        self.recorder.event(ref, NORMAL, "TaintManagerEviction", message)

    # -- the deletion --------------------------------------------------------------------------------

    async def _delete_pod(self, key: str) -> None:
        """deletePodHandler: the event, then DisruptionTarget and delete, retried a few times."""
        log.info("taint-eviction-controller: deleting pod %s", key)
        self._event(key, f"Marking for deletion Pod {key}")
        namespace, _, name = key.partition("/")
        error: Exception | None = None
        for _ in range(DELETE_RETRIES):
            try:
                await self._add_condition_and_delete(namespace, name)
                return
            except ClientError as e:
                if is_not_found(e):
                    return
                error = e
                await asyncio.sleep(0.01)
        assert error is not None
        raise error

    async def _add_condition_and_delete(self, namespace: str, name: str) -> None:
        pod = await self.client.get(PODS, name, namespace=namespace)
        condition = pod_condition(pod, "DisruptionTarget")
        if condition is None or condition.get("status") != "True" or condition.get("reason") != "DeletionByTaintManager":
            target = {
                "type": "DisruptionTarget",
                "status": "True",
                "reason": "DeletionByTaintManager",
                "message": "Taint manager: deleting due to NoExecute taint",
                "lastTransitionTime": meta.now(),
            }
            patch = {"metadata": {"uid": pod["metadata"]["uid"]}, "status": {"conditions": [target]}}
            await self.client.patch(
                PODS, name, patch, namespace=namespace, subresource="status", patch_type=PatchType.STRATEGIC
            )
        await self.client.delete(PODS, name, namespace=namespace)
