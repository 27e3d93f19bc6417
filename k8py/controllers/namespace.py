"""The namespace controller (upstream's pkg/controller/namespace): empties a namespace being
deleted, then releases it.

Deleting a namespace only marks it (the API server sets ``deletionTimestamp`` and phase
``Terminating``; its ``spec.finalizers`` holds ``kubernetes`` from creation).  This controller
watches namespaces and, for one being deleted, runs :class:`NamespacedResourcesDeleter`:

1. discover every namespaced resource the server serves that supports ``delete`` (preferred
   versions, custom resources included: discovery is read on every sync);
2. per resource, concurrently: ``deletecollection`` where the resource supports it, else list and
   delete each object, always with ``propagationPolicy: Background`` (no orphan finalizers that
   would leave content behind); then list again to see what remains, and why: pods still
   terminating (an estimate from their grace periods) or objects held by finalizers;
3. write the outcome as the namespace's deletion conditions (NamespaceDeletionDiscoveryFailure,
   NamespaceDeletionGroupVersionParsingFailure, NamespaceDeletionContentFailure,
   NamespaceContentRemaining, NamespaceFinalizersRemaining, with upstream's reasons and
   messages; each is False with its "ok" reason when all is well);
4. once nothing remains, remove ``kubernetes`` from ``spec.finalizers`` through the
   ``namespaces/<name>/finalize`` subresource; with no finalizer left the API server deletes
   the namespace.

While content remains the namespace is requeued after half the estimate (plus a second); its
own status writes also requeue it, after ``namespace-deletion-grace-period`` (``Options.extra``,
upstream's 5 s namespaceDeletionGracePeriod: time for late creations to land, so they are seen).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from k8py.api import meta
from k8py.client.discovery import DiscoveryError, server_resources
from k8py.client.errors import ClientError, Conflict, MethodNotAllowed, NotFound
from k8py.client.informer import ResourceEventHandlerFuncs
from k8py.client.resources import NAMESPACES, PODS, Resource
from k8py.client.rest import PARTIAL_OBJECT_METADATA_LIST, RESTClient
from k8py.controllers.base import QueueController

if TYPE_CHECKING:
    from k8py.controllers.manager import ControllerContext

log = logging.getLogger(__name__)

Obj = dict[str, Any]

FINALIZER = "kubernetes"  # v1.FinalizerKubernetes: this controller's token in spec.finalizers
DELETION_GRACE_PERIOD = 5.0  # namespaceDeletionGracePeriod
SYNC_PERIOD = 300.0  # --namespace-sync-period (a resync of every namespace)
WORKERS = 10  # --concurrent-namespace-syncs
FINALIZER_ESTIMATE_SECONDS = 15  # how long objects held by finalizers are given before a recheck

DISCOVERY_FAILURE = "NamespaceDeletionDiscoveryFailure"
GV_PARSING_FAILURE = "NamespaceDeletionGroupVersionParsingFailure"
CONTENT_FAILURE = "NamespaceDeletionContentFailure"
CONTENT_REMAINING = "NamespaceContentRemaining"
FINALIZERS_REMAINING = "NamespaceFinalizersRemaining"
CONDITION_TYPES = (DISCOVERY_FAILURE, GV_PARSING_FAILURE, CONTENT_FAILURE, CONTENT_REMAINING, FINALIZERS_REMAINING)
OK_REASONS = {
    DISCOVERY_FAILURE: "ResourcesDiscovered",
    GV_PARSING_FAILURE: "ParsedGroupVersions",
    CONTENT_FAILURE: "ContentDeleted",
    CONTENT_REMAINING: "ContentRemoved",
    FINALIZERS_REMAINING: "ContentHasNoFinalizers",
}
OK_MESSAGES = {
    DISCOVERY_FAILURE: "All resources successfully discovered",
    GV_PARSING_FAILURE: "All legacy kube types successfully parsed",
    CONTENT_FAILURE: "All content successfully deleted, may be waiting on finalization",
    CONTENT_REMAINING: "All content successfully removed",
    FINALIZERS_REMAINING: "All content-preserving finalizers finished",
}


class ResourcesRemaining(Exception):
    """Content is still being removed; look again in about ``estimate`` seconds."""

    def __init__(self, estimate: int) -> None:
        super().__init__(f"some content remains in the namespace, estimate {estimate} seconds before it is removed")
        self.estimate = estimate


@dataclass
class _Remaining:
    """What one resource left behind (gvrDeletionMetadata)."""

    estimate: int = 0
    count: int = 0
    finalizers: Counter[str] = field(default_factory=Counter)


class NamespaceConditionUpdater:
    """Collects a sync's failures and leftovers, and turns them into the namespace's conditions."""

    def __init__(self) -> None:
        self.new: dict[str, Obj] = {}
        self.content_errors: list[str] = []

    def _condition(self, type_: str, reason: str, message: str) -> None:
        self.new[type_] = {"type": type_, "status": "True", "reason": reason, "message": message}

    def discovery_error(self, err: Exception) -> None:
        self._condition(DISCOVERY_FAILURE, "DiscoveryFailed", str(err))

    def content_error(self, err: Exception) -> None:
        self.content_errors.append(str(err))

    def content_totals(self, remaining: dict[Resource, int], finalizers: Counter[str]) -> None:
        if remaining:
            parts = sorted(f"{r.plural}.{r.group} has {n} resource instances" for r, n in remaining.items() if n)
            self._condition(CONTENT_REMAINING, "SomeResourcesRemain", f"Some resources are remaining: {', '.join(parts)}")
        if finalizers:
            parts = sorted(f"{f} in {n} resource instances" for f, n in finalizers.items() if n)
            self._condition(
                FINALIZERS_REMAINING,
                "SomeFinalizersRemain",
                f"Some content in the namespace has finalizers remaining: {', '.join(parts)}",
            )

    def update(self, status: Obj) -> bool:
        """Set every managed condition in ``status`` (a failure, or its "ok" form); True if any changed."""
        if CONTENT_FAILURE not in self.new and self.content_errors:
            errs = sorted(self.content_errors)
            self._condition(
                CONTENT_FAILURE,
                "ContentDeletionFailed",
                f"Failed to delete all resource types, {len(errs)} remaining: {', '.join(errs)}",
            )
        conditions: list[Obj] = status.setdefault("conditions", [])
        changed = False
        now = meta.now()
        for type_ in CONDITION_TYPES:
            new = self.new.get(type_) or {
                "type": type_, "status": "False", "reason": OK_REASONS[type_], "message": OK_MESSAGES[type_]
            }
            old = next((c for c in conditions if c.get("type") == type_), None)
            if old is None:
                conditions.append({**new, "lastTransitionTime": now})
                changed = True
            elif any(old.get(k) != new[k] for k in ("status", "reason", "message")):
                if old.get("status") != new["status"]:
                    old["lastTransitionTime"] = now
                old.update(new)
                changed = True
        return changed


class NamespacedResourcesDeleter:
    """Deletes everything in a namespace being deleted, then finalizes it (upstream's deletion package)."""

    def __init__(self, client: RESTClient, *, finalizer_token: str = FINALIZER) -> None:
        self.client = client
        self.finalizer_token = finalizer_token

    async def delete(self, name: str) -> None:
        """One pass; raises ResourcesRemaining while content is still going away."""
        try:
            ns = await self.client.get(NAMESPACES, name)
        except NotFound:
            return
        if not ns["metadata"].get("deletionTimestamp"):
            return
        try:
            ns = await self._retry_on_conflict(ns, self._update_status_terminating)
        except NotFound:
            return
        if not ns["metadata"].get("deletionTimestamp") or self._finalized(ns):
            return
        estimate = await self.delete_all_content(ns)
        if estimate > 0:
            raise ResourcesRemaining(estimate)
        try:
            await self._retry_on_conflict(ns, self._finalize)
        except NotFound:
            return
        log.info("namespace controller: namespace %s finalized", name)

    def _finalized(self, ns: Obj) -> bool:
        return self.finalizer_token not in ((ns.get("spec") or {}).get("finalizers") or [])

    async def _retry_on_conflict(self, ns: Obj, fn: Any) -> Obj:
        latest = ns
        while True:
            try:
                result: Obj = await fn(latest)
                return result
            except Conflict:
                previous = latest
                latest = await self.client.get(NAMESPACES, ns["metadata"]["name"])
                if latest["metadata"].get("uid") != previous["metadata"].get("uid"):
                    raise RuntimeError("namespace uid has changed across retries") from None

    async def _update_status_terminating(self, ns: Obj) -> Obj:
        if (ns.get("status") or {}).get("phase") == "Terminating":
            return ns
        new = meta.clone(ns)
        new.setdefault("status", {})["phase"] = "Terminating"
        return await self.client.update_status(NAMESPACES, new)

    async def _finalize(self, ns: Obj) -> Obj:
        new = meta.clone(ns)
        spec = new.setdefault("spec", {})
        spec["finalizers"] = sorted({f for f in spec.get("finalizers") or [] if f != self.finalizer_token})
        try:
            return await self.client.update(NAMESPACES, new, subresource="finalize")
        except NotFound:
            return ns  # removed already

    async def delete_all_content(self, ns: Obj) -> int:
        """Delete what the namespace holds; the estimated seconds until the rest is gone (0: all gone)."""
        name = ns["metadata"]["name"]
        deleted_at = meta.parse_time(ns["metadata"]["deletionTimestamp"])
        updater = NamespaceConditionUpdater()
        errors: list[Exception] = []
        resources: list[tuple[Resource, frozenset[str]]] = []
        try:
            discovered = await server_resources(self.client)
            resources = [(r.resource, r.verbs) for r in discovered.preferred()
                         if r.resource.namespaced and "delete" in r.verbs]
        except (ClientError, DiscoveryError) as e:
            errors.append(e)
            updater.discovery_error(e)
        results = await asyncio.gather(
            *(self._delete_all_of(res, verbs, name, deleted_at) for res, verbs in resources), return_exceptions=True
        )
        estimate = 0
        remaining: dict[Resource, int] = {}
        finalizers: Counter[str] = Counter()
        for (res, _), result in zip(resources, results, strict=True):
            if isinstance(result, asyncio.CancelledError):
                raise result
            if isinstance(result, BaseException):
                errors.append(result)  # type: ignore[arg-type]
                updater.content_error(result)  # type: ignore[arg-type]
                continue
            estimate = max(estimate, result.estimate)
            if result.count:
                remaining[res] = result.count
                finalizers.update(result.finalizers)
        updater.content_totals(remaining, finalizers)
        updated = meta.clone(ns)
        if updater.update(updated.setdefault("status", {})):
            try:
                await self.client.update_status(NAMESPACES, updated)
            except ClientError as e:
                log.warning("namespace controller: couldn't update the status conditions of namespace %s: %s", name, e)
        if errors:
            raise RuntimeError("; ".join(sorted(str(e) for e in errors)))
        log.debug("namespace controller: %s: remaining %s, estimate %ds", name, remaining, estimate)
        return estimate

    async def _delete_all_of(
        self, res: Resource, verbs: frozenset[str], namespace: str, deleted_at: dt.datetime
    ) -> _Remaining:
        """deleteAllContentForGroupVersionResource."""
        estimate = await self._estimate_graceful_termination(res, namespace, deleted_at)
        if "deletecollection" in verbs:
            try:
                await self.client.delete_collection(res, namespace=namespace, propagation_policy="Background")
            except (MethodNotAllowed, NotFound):
                await self._delete_each(res, verbs, namespace)
        else:
            await self._delete_each(res, verbs, namespace)
        items = await self._list(res, verbs, namespace)
        if items is None or not items:
            return _Remaining()
        finalizers: Counter[str] = Counter(f for item in items for f in (item["metadata"].get("finalizers") or ()))
        if estimate:
            return _Remaining(estimate, len(items), finalizers)
        if finalizers:
            return _Remaining(FINALIZER_ESTIMATE_SECONDS, len(items), finalizers)
        raise RuntimeError(f"unexpected items still remain in namespace: {namespace} for gvr: {_gvr(res)}")

    async def _list(self, res: Resource, verbs: frozenset[str], namespace: str) -> list[Obj] | None:
        """The objects left (metadata only); None if the resource cannot be listed."""
        if "list" not in verbs:
            return None
        try:
            result = await self.client.list_all(res, namespace=namespace, accept=PARTIAL_OBJECT_METADATA_LIST)
        except (MethodNotAllowed, NotFound):
            return None
        return list(result.get("items") or [])

    async def _delete_each(self, res: Resource, verbs: frozenset[str], namespace: str) -> None:
        for item in await self._list(res, verbs, namespace) or []:
            try:
                await self.client.delete(
                    res, item["metadata"]["name"], namespace=namespace, propagation_policy="Background"
                )
            except (NotFound, MethodNotAllowed):
                pass

    async def _estimate_graceful_termination(self, res: Resource, namespace: str, deleted_at: dt.datetime) -> int:
        """Pods get their grace period (the longest of those not finished), counted from the
        namespace's deletion; everything else 0."""
        if (res.group, res.plural) != ("", "pods"):
            return 0
        pods = (await self.client.list_all(PODS, namespace=namespace)).get("items") or []
        estimate = 0
        for pod in pods:
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds")
            if grace is not None:
                estimate = max(estimate, int(grace))
        if (dt.datetime.now(dt.UTC) - deleted_at).total_seconds() >= estimate:
            return 0
        return estimate


class NamespaceController(QueueController):
    """kube-controller-manager's ``namespace`` controller; see the module docstring."""

    name = "namespace"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(workers=ctx.options.workers(self.name, WORKERS))
        self.deletion_grace_period = float(ctx.options.extra.get("namespace-deletion-grace-period", DELETION_GRACE_PERIOD))
        self.deleter = NamespacedResourcesDeleter(ctx.client)
        informer = ctx.informers.informer_for(NAMESPACES)
        informer.add_event_handler(
            ResourceEventHandlerFuncs(
                add_func=lambda obj, _initial: self._enqueue_namespace(obj),
                update_func=lambda _old, new: self._enqueue_namespace(new),
            ),
            resync_period=float(ctx.options.extra.get("namespace-sync-period", SYNC_PERIOD)),
        )
        self.synced = [informer]

    def _enqueue_namespace(self, ns: Obj) -> None:
        if not ns["metadata"].get("deletionTimestamp"):
            return
        # delayed so that the deletion is seen everywhere, and late creations land before the sweep
        self.enqueue_after(ns, self.deletion_grace_period)

    async def sync(self, key: str) -> None:
        try:
            await self.deleter.delete(key)
        except ResourcesRemaining as e:
            wait = e.estimate // 2 + 1
            log.debug("namespace controller: content remaining in namespace %s; looking again in %ds", key, wait)
            self.enqueue_after(key, wait)


def _gvr(res: Resource) -> str:
    return f"{res.group}/{res.version}, Resource={res.plural}"
