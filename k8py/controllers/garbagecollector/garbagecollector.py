"""The garbage collector (upstream's pkg/controller/garbagecollector/garbagecollector.go).

It deletes objects whose owners are gone, and carries out the two deletion modes that need a
controller: *foreground* (the owner carries the ``foregroundDeletion`` finalizer until every
dependent that blocks it, ``blockOwnerDeletion: true``, is gone) and *orphan* (the ``orphan``
finalizer: the owner's references are removed from its dependents, then the finalizer).
*Background* deletion needs nothing more than the first: the API server deletes the owner at
once and its dependents become garbage.  Which finalizer a DELETE sets is the API server's
business (``propagationPolicy``, else the kind's default: ``gc_finalizers`` in the generic store).

The graph (``graph.py``) is fed by informers over every resource discovery reports as listable,
watchable and deletable (custom resources included; events ignored), rediscovered every
``garbagecollector-sync-period`` seconds (``Options.extra``, upstream 30 s) so that new CRDs
are picked up and the informers of vanished resources stopped.  Two queues of graph nodes feed
the workers:

* **attemptToDelete** (``attempt_to_delete_item``): the graph may lag behind the API server, so
  a decision to delete is always made on live state: the item is read again (a uid mismatch or
  404 means it is gone: a *virtual delete event* takes it out of the graph), and each owner
  reference is checked with a GET by name whose uid must match the reference's (a reference
  to a wrong uid, or to a namespaced owner in another namespace, is as good as absent).  Owners
  that exist are *solid*; owners being deleted in foreground are *waiting*.  No solid owner:
  the item is deleted (in foreground if a waiting owner needs it gone and it has dependents of
  its own, else with the policy its own finalizers ask for, else in background), with uid and
  resourceVersion preconditions.  A solid owner: references to absent or waiting owners are
  removed from it instead.  An item in foreground deletion gets its finalizer removed once it
  has no blocking dependents left.
* **attemptToOrphan**: the owner's references are removed from every dependent, then the
  ``orphan`` finalizer from the owner.

Writes are JSON merge patches computed from a fresh read with its resourceVersion as the
precondition (so they work on custom resources, which have no strategic merge patch) and are
retried on conflicts; a failed item is requeued with the queue's backoff.  While the monitors
are resynced after a discovery change, the workers pause (upstream's workerLock), so that no
decision is made on a graph missing the new resources' objects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from k8py.client.discovery import DiscoveryError, ServerResources, server_resources
from k8py.client.errors import ClientError, Conflict, NotFound
from k8py.client.resources import Resource
from k8py.client.rest import PARTIAL_OBJECT_METADATA, PatchType
from k8py.client.workqueue import RateLimitingQueue, ShutDown, default_controller_rate_limiter
from k8py.controllers.garbagecollector.graph import (
    FOREGROUND_FINALIZER,
    ORPHAN_FINALIZER,
    GraphBuilder,
    Node,
    ObjectReference,
    being_deleted,
    has_finalizer,
)

if TYPE_CHECKING:
    from k8py.controllers.manager import ControllerContext

log = logging.getLogger(__name__)

Obj = dict[str, Any]

SYNC_PERIOD = 30.0  # seconds between discoveries (kube-controller-manager's garbage collector: 30 s)
WORKERS = 20  # --concurrent-gc-syncs
IGNORED_RESOURCES = (("", "events"), ("events.k8s.io", "events"))  # DefaultIgnoredResources
MAX_PATCH_RETRIES = 5
MAPPER_REFRESH_INTERVAL = 1.0  # a reference to an unknown kind rediscovers at most this often


class _RestMappingError(Exception):
    """An ownerReference or item of a kind discovery does not (yet) report: retried."""


class _EnqueuedVirtualDelete(Exception):
    """The item is gone; a virtual delete event took it out of the graph: not retried."""


class _NamespacedOwnerOfClusterScoped(Exception):
    """A cluster-scoped item names a namespaced owner; retrying cannot help."""


class _WorkerLock:
    """Upstream's workerLock (a sync.RWMutex): each item is processed holding it shared; a
    monitor resync holds it alone, waiting for the items in flight."""

    def __init__(self) -> None:
        self._cond = asyncio.Condition()
        self._readers = 0
        self._writer = False

    @contextlib.asynccontextmanager
    async def shared(self) -> AsyncIterator[None]:
        async with self._cond:
            await self._cond.wait_for(lambda: not self._writer)
            self._readers += 1
        try:
            yield
        finally:
            async with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        async with self._cond:
            await self._cond.wait_for(lambda: not self._writer)
            self._writer = True
            await self._cond.wait_for(lambda: self._readers == 0)
        try:
            yield
        finally:
            async with self._cond:
                self._writer = False
                self._cond.notify_all()


def _not_found(ref: ObjectReference) -> NotFound:
    return NotFound({"code": 404, "reason": "NotFound", "message": f"{ref} not found"})


class GarbageCollector:
    """kube-controller-manager's ``garbagecollector``; see the module docstring."""

    name = "garbagecollector"

    def __init__(self, ctx: ControllerContext) -> None:
        self.client = ctx.client
        self.workers = ctx.options.workers(self.name, WORKERS)
        self.sync_period = float(ctx.options.extra.get("garbagecollector-sync-period", SYNC_PERIOD))
        self.attempt_to_delete: RateLimitingQueue[Node] = RateLimitingQueue(
            default_controller_rate_limiter(), name="garbage_collector_attempt_to_delete"
        )
        self.attempt_to_orphan: RateLimitingQueue[Node] = RateLimitingQueue(
            default_controller_rate_limiter(), name="garbage_collector_attempt_to_orphan"
        )
        self.recorder = ctx.recorder("garbage-collector-controller")
        self.graph = GraphBuilder(
            ctx.client,
            ctx.informers,
            attempt_to_delete=self.attempt_to_delete,
            attempt_to_orphan=self.attempt_to_orphan,
            recorder=self.recorder,
            ignored=IGNORED_RESOURCES,
        )
        self.mapper = ServerResources(())
        self._mapper_refreshed = -float("inf")
        self._worker_lock = _WorkerLock()

    # ---- running ----------------------------------------------------------------------------------

    async def run(self) -> None:
        resources = await self._initial_discovery()
        await self.graph.sync_monitors(resources)
        await self.graph.wait_for_sync()
        log.info("garbage collector: all resource monitors have synced; proceeding to collect garbage")
        tasks = [asyncio.create_task(self._attempt_to_delete_worker()) for _ in range(self.workers)]
        tasks += [asyncio.create_task(self._attempt_to_orphan_worker()) for _ in range(self.workers)]
        tasks.append(asyncio.create_task(self._sync(resources), name="garbagecollector-sync"))
        try:
            await asyncio.gather(*tasks)
        finally:
            self.attempt_to_delete.shut_down()
            self.attempt_to_orphan.shut_down()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.graph.shutdown()

    async def _discover(self) -> set[Resource]:
        """The deletable resources (GetDeletableResources); refreshes the REST mapper too."""
        found = await server_resources(self.client)
        self.mapper = found
        self._mapper_refreshed = time.monotonic()
        return set(found.with_verbs("delete", "list", "watch"))

    async def _initial_discovery(self) -> set[Resource]:
        delay = 1.0
        while True:
            try:
                resources = await self._discover()
                if resources:
                    return resources
            except (ClientError, DiscoveryError) as e:
                log.warning("garbage collector: discovery failed (retrying): %s", e)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.sync_period)

    async def _sync(self, old: set[Resource]) -> None:
        """Rediscover every sync period; on a change, resync the monitors with the workers paused."""
        while True:
            await asyncio.sleep(self.sync_period)
            try:
                new = await self._discover()
            except (ClientError, DiscoveryError) as e:
                log.warning("garbage collector: discovery failed: %s", e)
                continue
            if not new:
                log.info("garbage collector: no resources reported by discovery, skipping sync")
                continue
            if new == old:
                continue
            added = sorted(f"{r.plural}.{r.group}" if r.group else r.plural for r in new - old)
            removed = sorted(f"{r.plural}.{r.group}" if r.group else r.plural for r in old - new)
            log.info("garbage collector: syncing monitors (added %s, removed %s)", added, removed)
            async with self._worker_lock.exclusive():
                await self.graph.sync_monitors(new)
                if not await self.graph.wait_for_sync(timeout=self.sync_period):
                    log.warning("garbage collector: timed out waiting for the dependency graph builder sync")
                    continue  # retried at the next period
            old = new

    # ---- workers ----------------------------------------------------------------------------------

    async def _attempt_to_delete_worker(self) -> None:
        queue = self.attempt_to_delete
        while True:
            try:
                node = await queue.get()
            except ShutDown:
                return
            try:
                async with self._worker_lock.shared():
                    requeue = await self._process_attempt_to_delete(node)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("garbage collector: processing %s failed", node.identity)
                requeue = True
            if requeue:
                queue.add_rate_limited(node)
            else:
                queue.forget(node)
            queue.done(node)

    async def _process_attempt_to_delete(self, node: Node) -> bool:
        """attemptToDeleteWorker: True to requeue the node (rate limited)."""
        if not node.is_observed():
            in_graph = self.graph.uid_to_node.get(node.identity.uid)
            if in_graph is None or in_graph.is_observed():
                return False  # deleted, or observed since: a stale virtual node
        try:
            await self.attempt_to_delete_item(node)
        except (_EnqueuedVirtualDelete, _NamespacedOwnerOfClusterScoped):
            return False
        except _RestMappingError as e:
            log.debug("garbage collector: %s: %s", node.identity, e)
            return True
        except ClientError as e:
            log.info("garbage collector: error syncing item %s: %s", node.identity, e)
            return True
        # an owner that exists but was not seen by an informer yet: look again later
        return not node.is_observed()

    async def _attempt_to_orphan_worker(self) -> None:
        queue = self.attempt_to_orphan
        while True:
            try:
                owner = await queue.get()
            except ShutDown:
                return
            try:
                async with self._worker_lock.shared():
                    await self._orphan_dependents(owner.identity, list(owner.dependents))
                    await self._remove_finalizer(owner, ORPHAN_FINALIZER)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.info("garbage collector: orphaning the dependents of %s failed: %s", owner.identity, e)
                queue.add_rate_limited(owner)
            else:
                queue.forget(owner)
            queue.done(owner)

    # ---- attemptToDelete --------------------------------------------------------------------------

    async def attempt_to_delete_item(self, item: Node) -> None:
        # being deleted is a one-way trip: wait for the final deletion (unless waiting on dependents)
        if item.being_deleted and not item.deleting_dependents:
            return
        try:
            latest = await self._get_object(item.identity)
        except NotFound:
            # a virtual owner that does not exist, or an item deleted since: out of the graph
            self.graph.process_virtual_delete(item.identity)
            raise _EnqueuedVirtualDelete() from None
        md = latest.get("metadata") or {}
        if md.get("uid") != item.identity.uid:
            self.graph.process_virtual_delete(item.identity)
            raise _EnqueuedVirtualDelete()
        if item.deleting_dependents:
            await self._process_deleting_dependents_item(item)
            return
        owner_refs: list[Obj] = list(md.get("ownerReferences") or [])
        if not owner_refs:
            return
        solid, dangling, waiting = await self._classify_references(item, owner_refs)
        if solid:
            if not dangling and not waiting:
                return
            # references to absent owners, and to owners waiting for their dependents' deletion
            # (they would wait forever), go; the item stays
            gone = {r.get("uid") for r in dangling + waiting}
            log.info("garbage collector: removing dangling and waiting references from %s", item.identity)
            await self._patch_metadata(item, lambda m: _without_owner_refs(m, gone))
            return
        if waiting and item.dependents:
            if any(dep.deleting_dependents for dep in item.dependents):
                # a cycle may be forming (owner and dependent both waiting): unblock the item's
                # references first, then delete it in foreground
                log.info("garbage collector: unblocking the owner references of %s", item.identity)
                await self._patch_metadata(item, _unblocked_owner_refs)
            log.info("garbage collector: deleting %s in foreground (an owner waits for it)", item.identity)
            await self._delete_object(item.identity, md.get("resourceVersion", ""), owner_refs, "Foreground")
            return
        if has_finalizer(md, ORPHAN_FINALIZER):
            policy = "Orphan"
        elif has_finalizer(md, FOREGROUND_FINALIZER):
            policy = "Foreground"
        else:
            policy = "Background"
        log.info("garbage collector: deleting %s (propagationPolicy %s)", item.identity, policy)
        await self._delete_object(item.identity, md.get("resourceVersion", ""), owner_refs, policy)

    async def _process_deleting_dependents_item(self, item: Node) -> None:
        blocking = item.blocking_dependents()
        if not blocking:
            log.info("garbage collector: removing the %s finalizer from %s", FOREGROUND_FINALIZER, item.identity)
            await self._remove_finalizer(item, FOREGROUND_FINALIZER)
            return
        for dep in blocking:
            if not dep.deleting_dependents:
                self.attempt_to_delete.add(dep)

    async def _classify_references(
        self, item: Node, refs: list[Obj]
    ) -> tuple[list[Obj], list[Obj], list[Obj]]:
        """(solid, dangling, waitingForDependentsDeletion) owner references."""
        solid: list[Obj] = []
        dangling: list[Obj] = []
        waiting: list[Obj] = []
        for ref in refs:
            owner = await self._dangling_owner(ref, item)
            if owner is None:
                dangling.append(ref)
                continue
            omd = owner.get("metadata") or {}
            if being_deleted(omd) and has_finalizer(omd, FOREGROUND_FINALIZER):
                waiting.append(ref)
            else:
                solid.append(ref)
        return solid, dangling, waiting

    async def _dangling_owner(self, ref: Obj, item: Node) -> Obj | None:
        """The live owner ``ref`` names, or None if it is absent (isDangling)."""
        cluster_key = ObjectReference.from_owner_reference(ref, "")
        if self.graph.absent_owner_cache.has(cluster_key):
            return None
        namespaced_key = ObjectReference.from_owner_reference(ref, item.identity.namespace)
        if self.graph.absent_owner_cache.has(namespaced_key):
            return None
        res = await self._resource_for(ref.get("apiVersion", ""), ref.get("kind", ""))
        absent_key = namespaced_key if res.namespaced else cluster_key
        if res.namespaced and not item.identity.namespace:
            log.info("garbage collector: %s is cluster-scoped but names a namespaced owner %s", item.identity, ref)
            raise _NamespacedOwnerOfClusterScoped()
        try:
            owner = await self.client.get(
                res,
                ref.get("name", ""),
                namespace=item.identity.namespace if res.namespaced else None,
                accept=PARTIAL_OBJECT_METADATA,
            )
        except NotFound:
            self.graph.absent_owner_cache.add(absent_key)
            return None
        if (owner.get("metadata") or {}).get("uid") != ref.get("uid"):
            self.graph.absent_owner_cache.add(absent_key)  # the name is taken by another object
            return None
        return owner

    # ---- API calls ----------------------------------------------------------------------------------

    async def _resource_for(self, api_version: str, kind: str) -> Resource:
        res = self.mapper.for_kind(api_version, kind)
        if res is None and time.monotonic() - self._mapper_refreshed > MAPPER_REFRESH_INTERVAL:
            with contextlib.suppress(ClientError, DiscoveryError):
                await self._discover()  # a kind the mapper has not seen: maybe a new CRD
            res = self.mapper.for_kind(api_version, kind)
        if res is None:
            raise _RestMappingError(f'no matches for kind "{kind}" in version "{api_version}"')
        return res

    async def _get_object(self, ref: ObjectReference) -> Obj:
        """The live metadata of ``ref`` (by name; the caller checks the uid)."""
        res = await self._resource_for(ref.api_version, ref.kind)
        if res.namespaced and not ref.namespace:
            raise _not_found(ref)
        return await self.client.get(
            res, ref.name, namespace=ref.namespace if res.namespaced else None, accept=PARTIAL_OBJECT_METADATA
        )

    async def _delete_object(self, ref: ObjectReference, resource_version: str, owners: list[Obj], policy: str) -> None:
        """DELETE with uid and resourceVersion preconditions; if only the resourceVersion moved and
        the ownerReferences are as they were, delete again with the uid precondition alone."""
        res = await self._resource_for(ref.api_version, ref.kind)
        ns = ref.namespace if res.namespaced else None
        preconditions = {"uid": ref.uid}
        if resource_version:
            preconditions["resourceVersion"] = resource_version
        try:
            await self.client.delete(res, ref.name, namespace=ns, propagation_policy=policy, preconditions=preconditions)
            return
        except NotFound:
            return  # gone already: the informer will tell
        except Conflict:
            if not resource_version:
                raise
        try:
            live = await self.client.get(res, ref.name, namespace=ns, accept=PARTIAL_OBJECT_METADATA)
        except NotFound:
            return
        lmd = live.get("metadata") or {}
        if (
            lmd.get("uid") == ref.uid
            and lmd.get("resourceVersion") != resource_version
            and list(lmd.get("ownerReferences") or []) == owners
        ):
            with contextlib.suppress(NotFound):
                await self.client.delete(
                    res, ref.name, namespace=ns, propagation_policy=policy, preconditions={"uid": ref.uid}
                )
            return
        raise Conflict({"code": 409, "reason": "Conflict", "message": f"{ref} changed; will look again"})

    async def _patch_metadata(self, item: Node, mutate: Callable[[Obj], Obj | None]) -> None:
        """A JSON merge patch of ``item``'s metadata: ``mutate(live metadata)`` computes the changed
        fields (None: nothing to do), sent with the live resourceVersion; retried on conflicts."""
        ref = item.identity
        res = await self._resource_for(ref.api_version, ref.kind)
        ns = ref.namespace if res.namespaced else None
        for _ in range(MAX_PATCH_RETRIES):
            try:
                live = await self._get_object(ref)
            except NotFound:
                return
            md = live.get("metadata") or {}
            if md.get("uid") != ref.uid:
                return
            changes = mutate(md)
            if changes is None:
                return
            changes["resourceVersion"] = md.get("resourceVersion")
            try:
                await self.client.patch(res, ref.name, {"metadata": changes}, namespace=ns, patch_type=PatchType.MERGE)
                return
            except NotFound:
                return
            except Conflict:
                continue
        raise Conflict({"code": 409, "reason": "Conflict", "message": f"{ref}: too many conflicts"})

    async def _remove_finalizer(self, node: Node, finalizer: str) -> None:
        def without(md: Obj) -> Obj | None:
            finalizers = list(md.get("finalizers") or [])
            if finalizer not in finalizers:
                return None
            return {"finalizers": [f for f in finalizers if f != finalizer] or None}

        await self._patch_metadata(node, without)

    async def _orphan_dependents(self, owner: ObjectReference, dependents: list[Node]) -> None:
        """Remove the references to ``owner`` from every dependent (concurrently)."""
        results = await asyncio.gather(
            *(self._patch_metadata(dep, lambda m: _without_owner_refs(m, {owner.uid})) for dep in dependents),
            return_exceptions=True,
        )
        errors = [f"orphaning {dep.identity} failed: {r}" for dep, r in zip(dependents, results, strict=True)
                  if isinstance(r, BaseException) and not isinstance(r, NotFound)]
        for r in results:
            if isinstance(r, asyncio.CancelledError):
                raise r
        if errors:
            raise RuntimeError("; ".join(errors))


def _without_owner_refs(md: Obj, uids: set[Any]) -> Obj | None:
    refs = list(md.get("ownerReferences") or [])
    kept = [r for r in refs if r.get("uid") not in uids]
    if len(kept) == len(refs):
        return None
    return {"ownerReferences": kept or None}


def _unblocked_owner_refs(md: Obj) -> Obj | None:
    refs = list(md.get("ownerReferences") or [])
    if not any(r.get("blockOwnerDeletion") for r in refs):
        return None
    return {"ownerReferences": [{**r, "blockOwnerDeletion": False} if r.get("blockOwnerDeletion") else r for r in refs]}
