"""The garbage collector's dependency graph and the builder that keeps it (upstream's graph.go and
graph_builder.go).

Every object the collector watches is a :class:`Node` in ``uid_to_node``: its identity (the
ownerReference coordinates apiVersion/kind/name/uid, plus its namespace), the ownerReferences
it carries, and the set of nodes that name it as an owner (its dependents).  An owner that was
never seen (not yet, or never: deleted, or a uid that does not exist) is a *virtual* node, made
from the first dependent's reference, and is handed to attemptToDelete, which asks the API
server whether it exists: if not, a virtual delete event removes it and its dependents are
processed as orphans of a deleted owner.

The :class:`GraphBuilder` runs one *monitor* per watched resource: an informer whose events it
applies to the graph (``process_event``, upstream's processGraphChanges).  client-go funnels
events through a graphChanges queue to one goroutine; here the handlers run on the event loop
and never await, so each event is applied in place, in order, and a worker (which reads the
graph between its awaits) never sees half of one.  Applying an event decides what to look at
next: dependents of a deleted owner and objects whose owners look wrong go on attemptToDelete,
an owner entering orphan deletion on attemptToOrphan, an owner entering foreground deletion
(and its dependents) on attemptToDelete.

Monitors reuse the shared factory's informer of a resource when another controller already
watches it (pods, replicasets, ...: full objects, one watch for everyone); every other resource
gets a metadata-only informer of its own (``PartialObjectMetadata`` lists and watches), since
the collector reads nothing but metadata.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, cast

from k8py.client import DeletedFinalStateUnknown, EventRecorder
from k8py.client.informer import (
    ResourceEventHandlerFuncs,
    ResourceEventHandlerRegistration,
    SharedIndexInformer,
    SharedInformerFactory,
)
from k8py.client.resources import Resource
from k8py.client.rest import PARTIAL_OBJECT_METADATA, PARTIAL_OBJECT_METADATA_LIST, RESTClient, Watch
from k8py.client.workqueue import RateLimitingQueue

log = logging.getLogger(__name__)

Obj = dict[str, Any]

ORPHAN_FINALIZER = "orphan"  # metav1.FinalizerOrphanDependents
FOREGROUND_FINALIZER = "foregroundDeletion"  # metav1.FinalizerDeleteDependents
ABSENT_OWNER_CACHE_SIZE = 500


@dataclass(frozen=True, order=True, slots=True)
class ObjectReference:
    """An object's coordinates: its ownerReference fields and its namespace (upstream's objectReference)."""

    api_version: str
    kind: str
    name: str
    uid: str
    namespace: str = ""

    def __str__(self) -> str:
        return (
            f"[{self.api_version}/{self.kind}, namespace: {self.namespace}, name: {self.name}, uid: {self.uid}]"
        )

    @classmethod
    def from_owner_reference(cls, ref: Obj, namespace: str) -> ObjectReference:
        return cls(ref.get("apiVersion", ""), ref.get("kind", ""), ref.get("name", ""), ref.get("uid", ""), namespace)

    def matches(self, ref: Obj) -> bool:
        """Does ownerReference ``ref`` name these coordinates (ownerReferenceMatchesCoordinates)?"""
        return (
            ref.get("uid") == self.uid
            and ref.get("name") == self.name
            and ref.get("kind") == self.kind
            and ref.get("apiVersion") == self.api_version
        )

    def as_object(self) -> Obj:
        """The reference in the shape an event recorder takes."""
        md = {"name": self.name, "namespace": self.namespace, "uid": self.uid}
        return {"apiVersion": self.api_version, "kind": self.kind, "metadata": {k: v for k, v in md.items() if v}}


@dataclass(eq=False)
class Node:
    """One object of the graph; hashed by identity (nodes go on the work queues)."""

    identity: ObjectReference
    owners: list[Obj] = field(default_factory=list)  # the object's ownerReferences
    dependents: set[Node] = field(default_factory=set)
    deleting_dependents: bool = False  # in foreground deletion: waits for its blocking dependents
    being_deleted: bool = False
    virtual: bool = False  # not observed through an informer (yet)

    def is_observed(self) -> bool:
        return not self.virtual

    def blocking_dependents(self) -> list[Node]:
        """The dependents whose reference to this node has blockOwnerDeletion=true."""
        out = []
        for dep in self.dependents:
            for ref in dep.owners:
                if ref.get("uid") == self.identity.uid and ref.get("blockOwnerDeletion"):
                    out.append(dep)
        return out

    def __repr__(self) -> str:
        return f"Node({self.identity}{', virtual' if self.virtual else ''})"


class AbsentOwnerCache:
    """The coordinates of owners verified absent (a small LRU, as upstream's ReferenceCache)."""

    def __init__(self, size: int = ABSENT_OWNER_CACHE_SIZE) -> None:
        self._size = size
        self._items: OrderedDict[ObjectReference, None] = OrderedDict()

    def add(self, ref: ObjectReference) -> None:
        self._items[ref] = None
        self._items.move_to_end(ref)
        while len(self._items) > self._size:
            self._items.popitem(last=False)

    def has(self, ref: ObjectReference) -> bool:
        if ref in self._items:
            self._items.move_to_end(ref)
            return True
        return False


def being_deleted(md: Obj) -> bool:
    return bool(md.get("deletionTimestamp"))


def has_finalizer(md: Obj, finalizer: str) -> bool:
    return finalizer in (md.get("finalizers") or ())


def _deletion_starts_with_finalizer(old: Obj | None, new_md: Obj, finalizer: str) -> bool:
    """The object is (now) being deleted with ``finalizer``, and was not before."""
    if not being_deleted(new_md) or not has_finalizer(new_md, finalizer):
        return False
    if old is None:
        return True
    old_md = old.get("metadata") or {}
    return not being_deleted(old_md) or not has_finalizer(old_md, finalizer)


def references_diffs(old: list[Obj], new: list[Obj]) -> tuple[list[Obj], list[Obj], list[tuple[Obj, Obj]]]:
    """(added, removed, changed (old, new)) ownerReferences, matched by uid."""
    old_by_uid = {r.get("uid"): r for r in old}
    new_by_uid = {r.get("uid"): r for r in new}
    added = [r for uid, r in new_by_uid.items() if uid not in old_by_uid]
    removed = [r for uid, r in old_by_uid.items() if uid not in new_by_uid]
    changed = [(r, new_by_uid[uid]) for uid, r in old_by_uid.items() if uid in new_by_uid and new_by_uid[uid] != r]
    return added, removed, changed


def partition_dependents(dependents: Iterable[Node], owner: ObjectReference) -> tuple[list[Node], list[Node]]:
    """The dependents whose references to ``owner``'s uid match its coordinates, and those that do not."""
    matching, nonmatching = [], []
    for dep in dependents:
        found_match = found_mismatch = False
        if owner.namespace and owner.namespace != dep.identity.namespace:
            found_mismatch = True  # a namespaced owner is only an owner in its own namespace
        else:
            for ref in dep.owners:
                if ref.get("uid") == owner.uid:
                    if owner.matches(ref):
                        found_match = True
                    else:
                        found_mismatch = True
        if found_match:
            matching.append(dep)
        if found_mismatch:
            nonmatching.append(dep)
    return matching, nonmatching


def alternate_owner_identity(deps: Iterable[Node], absent: ObjectReference) -> ObjectReference | None:
    """Another identity the dependents give the owner verified ``absent`` (getAlternateOwnerIdentity):
    the first in sort order after ``absent``, else the first."""
    cluster_scoped = not absent.namespace
    seen = {absent}
    first: ObjectReference | None = None
    first_following: ObjectReference | None = None
    for dep in deps:
        for ref in dep.owners:
            if ref.get("uid") != absent.uid:
                continue
            if absent.matches(ref) and (cluster_scoped or absent.namespace == dep.identity.namespace):
                continue
            alt = ObjectReference.from_owner_reference(ref, dep.identity.namespace)
            if cluster_scoped and alt.api_version == absent.api_version and alt.kind == absent.kind:
                alt = ObjectReference(alt.api_version, alt.kind, alt.name, alt.uid, "")
            if alt in seen:
                continue
            seen.add(alt)
            if first is None or alt < first:
                first = alt
            if absent < alt and (first_following is None or alt < first_following):
                first_following = alt
    return first_following or first


class _MetadataClient:
    """The RESTClient as a reflector uses it (list_all, watch), asking for PartialObjectMetadata."""

    def __init__(self, client: RESTClient) -> None:
        self._client = client

    async def list_all(self, res: Resource, **kw: Any) -> Obj:
        return await self._client.list_all(res, accept=PARTIAL_OBJECT_METADATA_LIST, **kw)

    def watch(self, res: Resource, **kw: Any) -> Watch:
        return self._client.watch(res, accept=PARTIAL_OBJECT_METADATA, **kw)


@dataclass
class Monitor:
    """The informer of one resource, and the graph builder's handler on it."""

    resource: Resource
    informer: SharedIndexInformer
    registration: ResourceEventHandlerRegistration
    shared: bool  # the factory's informer (other controllers use it): never stopped here

    def has_synced(self) -> bool:
        return self.informer.has_synced()


class GraphBuilder:
    """Keeps ``uid_to_node`` in step with the monitors' events; see the module docstring."""

    def __init__(
        self,
        client: RESTClient,
        informers: SharedInformerFactory,
        *,
        attempt_to_delete: RateLimitingQueue[Node],
        attempt_to_orphan: RateLimitingQueue[Node],
        recorder: EventRecorder,
        ignored: Iterable[tuple[str, str]] = (),
    ) -> None:
        self.client = client
        self.informers = informers
        self.metadata_client = _MetadataClient(client)
        self.attempt_to_delete = attempt_to_delete
        self.attempt_to_orphan = attempt_to_orphan
        self.recorder = recorder
        self.ignored = set(ignored)  # (group, resource)
        self.uid_to_node: dict[str, Node] = {}
        self.absent_owner_cache = AbsentOwnerCache()
        self.monitors: dict[Resource, Monitor] = {}

    # ---- monitors ---------------------------------------------------------------------------------

    async def sync_monitors(self, resources: Iterable[Resource]) -> None:
        """Monitor exactly ``resources`` (minus the ignored ones): start the new, stop the gone."""
        wanted = {r for r in resources if (r.group, r.plural) not in self.ignored}
        for res in [r for r in self.monitors if r not in wanted]:
            monitor = self.monitors.pop(res)
            log.info("garbage collector: stopped monitoring %s", _gvr(res))
            monitor.informer.remove_event_handler(monitor.registration)
            if not monitor.shared:
                await monitor.informer.stop()
        for res in sorted(wanted - self.monitors.keys(), key=_gvr):
            self.monitors[res] = self._monitor_for(res)
        if any(not m.shared for m in self.monitors.values()):
            log.debug("garbage collector: monitoring %d resources", len(self.monitors))

    def _monitor_for(self, res: Resource) -> Monitor:
        handler = ResourceEventHandlerFuncs(
            add_func=lambda obj, _initial: self.process_event("add", obj, None, res),
            update_func=lambda old, new: self.process_event("update", new, old, res),
            delete_func=lambda obj: self.process_event(
                "delete", obj.obj if isinstance(obj, DeletedFinalStateUnknown) else obj, None, res
            ),
        )
        shared = next(
            (
                i
                for i in self.informers.informers()
                if i.resource == res and i.namespace is None and not i.label_selector and not i.field_selector
            ),
            None,
        )
        if shared is not None:
            registration = shared.add_event_handler(handler)
            if not shared.is_started():
                shared.start()
            return Monitor(res, shared, registration, True)
        informer = SharedIndexInformer(cast(RESTClient, self.metadata_client), res)
        registration = informer.add_event_handler(handler)
        informer.start()
        return Monitor(res, informer, registration, False)

    def is_synced(self) -> bool:
        return all(m.has_synced() for m in self.monitors.values())

    async def wait_for_sync(self, timeout: float | None = None) -> bool:
        try:
            async with asyncio.timeout(timeout):
                for m in list(self.monitors.values()):
                    await m.informer.wait_for_sync()
        except TimeoutError:
            return False
        return True

    async def shutdown(self) -> None:
        for m in self.monitors.values():
            m.informer.remove_event_handler(m.registration)
        await asyncio.gather(*(m.informer.stop() for m in self.monitors.values() if not m.shared))
        self.monitors.clear()

    # ---- graph changes (processGraphChanges) ------------------------------------------------------

    def process_event(self, event_type: str, obj: Obj, old: Obj | None, res: Resource) -> None:
        md = obj.get("metadata") or {}
        uid = md.get("uid")
        if not uid:
            return
        identity = ObjectReference(res.api_version, res.kind, md.get("name", ""), uid, md.get("namespace") or "")
        self._apply(event_type, identity, md, old, virtual=False)

    def process_virtual_delete(self, identity: ObjectReference) -> None:
        """The API server says ``identity`` does not exist (enqueueVirtualDeleteEvent)."""
        md = {"name": identity.name, "namespace": identity.namespace, "uid": identity.uid}
        self._apply("delete", identity, md, None, virtual=True)

    def _apply(self, event_type: str, identity: ObjectReference, md: Obj, old: Obj | None, *, virtual: bool) -> None:
        existing = self.uid_to_node.get(identity.uid)
        if existing is not None and not virtual and not existing.is_observed():
            # the first informer event for a node made from a dependent's reference
            if identity != existing.identity:
                # dependents that named the owner by other coordinates may be wrong: let
                # attemptToDelete check them (a no-op if their owners are solid)
                _, suspicious = partition_dependents(existing.dependents, identity)
                for dep in suspicious:
                    if identity.namespace and dep.identity.namespace != identity.namespace:
                        log.info("garbage collector: %s references owner %s in another namespace", dep.identity, identity)
                        self.report_invalid_namespace_owner_ref(dep, identity.uid)
                    self.attempt_to_delete.add(dep)
                log.debug("garbage collector: replacing virtual %s with observed %s", existing.identity, identity)
                existing.identity = identity
            existing.virtual = False

        if event_type in ("add", "update"):
            owners = list(md.get("ownerReferences") or [])
            if existing is None:
                node = Node(
                    identity,
                    owners=owners,
                    deleting_dependents=being_deleted(md) and has_finalizer(md, FOREGROUND_FINALIZER),
                    being_deleted=being_deleted(md),
                )
                self.uid_to_node[identity.uid] = node
                self._add_dependent_to_owners(node, owners)
                self._process_transitions(old, md, node)
                return
            added, removed, changed = references_diffs(existing.owners, owners)
            if added or removed or changed:
                self._add_unblocked_owners_to_delete_queue(removed, changed)
                existing.owners = owners
                self._add_dependent_to_owners(existing, added)
                self._remove_dependent_from_owners(existing, removed)
            if being_deleted(md):
                existing.being_deleted = True
            self._process_transitions(old, md, existing)
            return

        # delete
        if existing is None:
            return
        remove = True
        if virtual:
            deleted = identity
            if existing.virtual:
                # a virtual node: dependents may disagree on its coordinates
                matching, nonmatching = partition_dependents(existing.dependents, deleted)
                if nonmatching:
                    remove = False  # some dependents know it by other coordinates: keep it
                    if matching:
                        self.absent_owner_cache.add(deleted)
                        for dep in matching:
                            self.attempt_to_delete.add(dep)
                    if existing.identity == deleted:
                        replacement = alternate_owner_identity(nonmatching, deleted)
                        if replacement is not None:
                            existing.identity = replacement
                            self.attempt_to_delete.add_rate_limited(existing)
            elif existing.identity != deleted:
                # an observed node is not removed by a virtual delete of other coordinates
                remove = False
                matching, _ = partition_dependents(existing.dependents, deleted)
                if matching:
                    self.absent_owner_cache.add(deleted)
                    for dep in matching:
                        self.attempt_to_delete.add(dep)
        if not remove:
            return
        self._remove_node(existing)
        if existing.dependents:
            self.absent_owner_cache.add(identity)
        for dep in existing.dependents:
            self.attempt_to_delete.add(dep)
        for ref in existing.owners:
            owner = self.uid_to_node.get(ref.get("uid", ""))
            if owner is not None and owner.deleting_dependents:
                # the owner may have been waiting for this one
                self.attempt_to_delete.add(owner)

    def _process_transitions(self, old: Obj | None, md: Obj, node: Node) -> None:
        if _deletion_starts_with_finalizer(old, md, ORPHAN_FINALIZER):
            log.debug("garbage collector: %s to attemptToOrphan", node.identity)
            self.attempt_to_orphan.add(node)
            return
        if _deletion_starts_with_finalizer(old, md, FOREGROUND_FINALIZER):
            log.debug("garbage collector: %s waits for its dependents to be deleted", node.identity)
            node.deleting_dependents = True
            for dep in node.dependents:
                self.attempt_to_delete.add(dep)
            self.attempt_to_delete.add(node)

    def _add_dependent_to_owners(self, node: Node, owners: list[Obj]) -> None:
        suspicious = False
        for ref in owners:
            uid = ref.get("uid", "")
            owner = self.uid_to_node.get(uid)
            if owner is None:
                # an owner never seen: a virtual node, which attemptToDelete verifies with the API server
                owner = Node(ObjectReference.from_owner_reference(ref, node.identity.namespace), virtual=True)
                self.uid_to_node[uid] = owner
                owner.dependents.add(node)
                self.attempt_to_delete.add(owner)
                continue
            owner.dependents.add(node)
            if suspicious:
                continue
            owner_namespaced = bool(owner.identity.namespace)
            if owner_namespaced and owner.identity.namespace != node.identity.namespace:
                if owner.is_observed():
                    # a namespaced owner is only an owner in its own namespace
                    log.info("garbage collector: %s references owner %s in another namespace", node.identity, owner.identity)
                    self.report_invalid_namespace_owner_ref(node, uid)
                suspicious = True
            elif not owner.identity.matches(ref):
                suspicious = True
            elif not owner_namespaced and owner.identity.namespace != node.identity.namespace and owner.virtual:
                # a virtual cluster-scoped owner may be a namespaced kind named from the wrong scope
                suspicious = True
        if suspicious:
            self.attempt_to_delete.add(node)

    def _remove_dependent_from_owners(self, node: Node, owners: list[Obj]) -> None:
        for ref in owners:
            owner = self.uid_to_node.get(ref.get("uid", ""))
            if owner is not None:
                owner.dependents.discard(node)

    def _remove_node(self, node: Node) -> None:
        if self.uid_to_node.get(node.identity.uid) is node:
            del self.uid_to_node[node.identity.uid]
        self._remove_dependent_from_owners(node, node.owners)

    def _add_unblocked_owners_to_delete_queue(self, removed: list[Obj], changed: list[tuple[Obj, Obj]]) -> None:
        """Owners in foreground deletion that a dependent stopped blocking may be done waiting."""
        unblocked = [r for r in removed if r.get("blockOwnerDeletion")]
        unblocked += [new for old, new in changed if old.get("blockOwnerDeletion") and not new.get("blockOwnerDeletion")]
        for ref in unblocked:
            owner = self.uid_to_node.get(ref.get("uid", ""))
            if owner is not None:
                self.attempt_to_delete.add(owner)

    def report_invalid_namespace_owner_ref(self, node: Node, owner_uid: str) -> None:
        ref = next((r for r in node.owners if r.get("uid") == owner_uid), None)
        if ref is None:
            return
        invalid = ObjectReference.from_owner_reference(ref, node.identity.namespace)
        self.recorder.event(
            node.identity.as_object(),
            "Warning",
            "OwnerRefInvalidNamespace",
            f'ownerRef {invalid} does not exist in namespace "{node.identity.namespace}"',
        )


def _gvr(res: Resource) -> str:
    return f"{res.group}/{res.version}, Resource={res.plural}"
