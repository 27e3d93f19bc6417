"""The pod garbage collector (``pkg/controller/podgc``): removes pods nobody else will.

Every ``gcCheckPeriod`` (20 s) it looks at the pod and node caches and force-deletes (grace period
0), as kube 1.32 does:

* **terminated** pods (Succeeded or Failed) beyond ``--terminated-pod-gc-threshold`` (12500; 0
  turns this off), evicted ones first, then oldest first;
* **terminating** pods on nodes that are not Ready and carry the ``node.kubernetes.io/out-of-service``
  taint;
* **orphaned** pods bound to a node that no longer exists: a missing node waits out a quarantine
  (40 s) in a delaying queue, then is looked up in the API server itself, so that a node the
  informer has not delivered yet is not mistaken for a deleted one; its pods first get the
  ``DisruptionTarget`` condition (DeletionByPodGC);
* **unscheduled terminating** pods (being deleted, never bound: no kubelet will finish them).

A pod not yet terminal is first moved to phase Failed (server-side apply of its status, field
manager ``PodGC``), so that controllers counting failures (the Job controller) see it fail.
``Options.extra`` knobs, for tests: ``podgc-check-period`` and ``podgc-quarantine`` (seconds).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from k8py.api import meta
from k8py.client import ClientError, PatchType, is_not_found
from k8py.client.informer import wait_for_cache_sync
from k8py.client.resources import NODES, PODS
from k8py.client.workqueue import DelayingQueue
from k8py.controllers.controller_utils import pod_phase

log = logging.getLogger(__name__)

Obj = dict[str, Any]

GC_CHECK_PERIOD = 20.0
QUARANTINE_TIME = 40.0
FIELD_MANAGER = "PodGC"
OUT_OF_SERVICE_TAINT = "node.kubernetes.io/out-of-service"


def is_pod_terminated(pod: Obj) -> bool:
    return pod_phase(pod) not in ("Pending", "Running", "Unknown")


def _is_evicted(pod: Obj) -> bool:
    status = pod.get("status") or {}
    return status.get("phase") == "Failed" and status.get("reason") == "Evicted"


def _gc_order(pod: Obj) -> tuple[bool, str, str]:
    """byEvictionAndCreationTimestamp: evicted first, then oldest, names breaking ties."""
    md = pod["metadata"]
    return (not _is_evicted(pod), md.get("creationTimestamp") or "", md.get("name", ""))


def _node_ready(node: Obj) -> bool:
    for c in (node.get("status") or {}).get("conditions") or ():
        if c.get("type") == "Ready":
            return c.get("status") == "True"
    return False


class PodGCController:
    name = "podgc"

    def __init__(self, ctx: Any) -> None:
        self.client = ctx.client
        self.threshold = int(ctx.options.terminated_pod_gc_threshold)
        extra = ctx.options.extra
        self.check_period = float(extra.get("podgc-check-period", GC_CHECK_PERIOD))
        self.quarantine = float(extra.get("podgc-quarantine", QUARANTINE_TIME))
        self.pods = ctx.informers.informer_for(PODS)
        self.nodes = ctx.informers.informer_for(NODES)
        self.node_queue: DelayingQueue[str] = DelayingQueue(name="orphaned_pods_nodes")

    async def run(self) -> None:
        await wait_for_cache_sync(self.pods, self.nodes)
        try:
            while True:
                try:
                    await self.gc()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("podgc: collection failed")
                await asyncio.sleep(self.check_period)
        finally:
            self.node_queue.shut_down()

    async def gc(self) -> None:
        pods = self.pods.indexer.list()
        nodes = self.nodes.indexer.list()
        if self.threshold > 0:
            await self._gc_terminated(pods)
        await self._gc_terminating(pods)
        await self._gc_orphaned(pods, nodes)
        await self._gc_unscheduled_terminating(pods)

    async def _gc_terminated(self, pods: list[Obj]) -> None:
        terminated = [p for p in pods if is_pod_terminated(p)]
        count = len(terminated) - self.threshold
        if count <= 0:
            return
        log.info("podgc: garbage collecting %d pods", count)
        terminated.sort(key=_gc_order)
        await asyncio.gather(*(self._mark_failed_and_delete(p) for p in terminated[:count]))

    async def _gc_terminating(self, pods: list[Obj]) -> None:
        """Pods being deleted on a not-ready node tainted out-of-service: its kubelet is gone for good."""
        doomed = []
        for pod in pods:
            if not pod["metadata"].get("deletionTimestamp"):
                continue
            node = self.nodes.indexer.get_by_key((pod.get("spec") or {}).get("nodeName") or "")
            if node is None:
                continue
            taints = (node.get("spec") or {}).get("taints") or ()
            if not _node_ready(node) and any(t.get("key") == OUT_OF_SERVICE_TAINT for t in taints):
                doomed.append(pod)
        if doomed:
            doomed.sort(key=_gc_order)
            await asyncio.gather(*(self._mark_failed_and_delete(p) for p in doomed))

    async def _gc_orphaned(self, pods: list[Obj], nodes: list[Obj]) -> None:
        existing = {n["metadata"]["name"] for n in nodes}
        for pod in pods:
            node = (pod.get("spec") or {}).get("nodeName")
            if node and node not in existing:
                self.node_queue.add_after(node, self.quarantine)  # the earliest due time is kept
        deleted = await self._discover_deleted_nodes(existing)
        condition = {
            "type": "DisruptionTarget",
            "status": "True",
            "reason": "DeletionByPodGC",
            "message": "PodGC: node no longer exists",
        }
        orphans = [p for p in pods if (p.get("spec") or {}).get("nodeName") in deleted]
        for pod in orphans:
            log.info(
                "podgc: deleting orphaned pod %s/%s of deleted node %s",
                pod["metadata"].get("namespace"),
                pod["metadata"]["name"],
                pod["spec"]["nodeName"],
            )
        await asyncio.gather(*(self._mark_failed_and_delete(p, condition) for p in orphans))

    async def _discover_deleted_nodes(self, existing: set[str]) -> set[str]:
        """The quarantined nodes that are still missing, asking the API server itself."""
        deleted: set[str] = set()
        while len(self.node_queue) > 0:
            name = await self.node_queue.get()
            try:
                if name not in existing:
                    try:
                        await self.client.get(NODES, name)
                    except ClientError as e:
                        if is_not_found(e):
                            deleted.add(name)
                        else:
                            log.info("podgc: getting node %s: %s", name, e)  # back in the queue next round
            finally:
                self.node_queue.done(name)
        return deleted

    async def _gc_unscheduled_terminating(self, pods: list[Obj]) -> None:
        doomed = [
            p
            for p in pods
            if p["metadata"].get("deletionTimestamp") and not (p.get("spec") or {}).get("nodeName")
        ]
        await asyncio.gather(*(self._mark_failed_and_delete(p) for p in doomed))

    async def _mark_failed_and_delete(self, pod: Obj, condition: Obj | None = None) -> None:
        """Force-delete a pod, moving it to Failed first (an orphan's phase would never change)."""
        md = pod["metadata"]
        ns, name = md.get("namespace", ""), md["name"]
        log.info("podgc: force deleting pod %s/%s", ns, name)
        try:
            if pod_phase(pod) not in ("Succeeded", "Failed"):
                status: Obj = {"phase": "Failed"}
                if condition is not None:
                    status["conditions"] = [{**condition, "lastTransitionTime": meta.now()}]
                body = {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": name, "namespace": ns},
                    "status": status,
                }
                await self.client.patch(
                    PODS,
                    name,
                    body,
                    namespace=ns,
                    subresource="status",
                    patch_type=PatchType.APPLY,
                    field_manager=FIELD_MANAGER,
                    force=True,
                )
            await self.client.delete(PODS, name, namespace=ns, grace_period_seconds=0)
        except ClientError as e:
            if not is_not_found(e):
                log.info("podgc: deleting pod %s/%s: %s", ns, name, e)
