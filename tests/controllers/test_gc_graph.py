"""The garbage collector's graph builder and the API server's GC finalizer rule, as pure logic."""

from __future__ import annotations

from typing import Any

import pytest

from k8py.apiserver.genericstore import gc_finalizers
from k8py.client.resources import CONFIGMAPS, NAMESPACES, REPLICA_SETS
from k8py.client.workqueue import RateLimitingQueue
from k8py.controllers.garbagecollector.graph import (
    GraphBuilder,
    Node,
    ObjectReference,
    alternate_owner_identity,
    references_diffs,
)


class _Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def event(self, obj: Any, type_: str, reason: str, message: str) -> None:
        self.events.append((obj, type_, reason, message))


def _builder() -> tuple[GraphBuilder, RateLimitingQueue[Node], RateLimitingQueue[Node], _Recorder]:
    delete: RateLimitingQueue[Node] = RateLimitingQueue()
    orphan: RateLimitingQueue[Node] = RateLimitingQueue()
    recorder = _Recorder()
    gb = GraphBuilder(None, None, attempt_to_delete=delete, attempt_to_orphan=orphan, recorder=recorder)  # type: ignore[arg-type]
    return gb, delete, orphan, recorder


def _queued(q: RateLimitingQueue[Node]) -> list[Node]:
    return list(q._queue)


def _obj(name: str, uid: str, ns: str = "default", owners: list[dict[str, Any]] | None = None, **md: Any) -> dict[str, Any]:
    meta = {"name": name, "uid": uid, "namespace": ns, **md}
    if owners:
        meta["ownerReferences"] = owners
    return {"metadata": meta}


def _ref(kind: str, name: str, uid: str, api_version: str = "v1", block: bool = False) -> dict[str, Any]:
    ref = {"apiVersion": api_version, "kind": kind, "name": name, "uid": uid}
    if block:
        ref["blockOwnerDeletion"] = True
    return ref


async def test_virtual_owner_then_observed_then_deleted() -> None:
    gb, delete, _, _ = _builder()
    rs_ref = _ref("ReplicaSet", "rs", "u-rs", "apps/v1", block=True)
    gb.process_event("add", _obj("pod", "u-pod", owners=[rs_ref]), None, CONFIGMAPS)
    owner = gb.uid_to_node["u-rs"]
    assert owner.virtual and _queued(delete) == [owner]  # to be verified with the API server
    assert owner.identity == ObjectReference("apps/v1", "ReplicaSet", "rs", "u-rs", "default")
    gb.process_event("add", _obj("rs", "u-rs"), None, REPLICA_SETS)
    assert not owner.virtual and [d.identity.name for d in owner.dependents] == ["pod"]
    assert [d.identity.name for d in owner.blocking_dependents()] == ["pod"]
    gb.process_event("delete", _obj("rs", "u-rs"), None, REPLICA_SETS)
    assert "u-rs" not in gb.uid_to_node
    assert gb.uid_to_node["u-pod"] in _queued(delete)  # the dependent of a deleted owner
    assert gb.absent_owner_cache.has(owner.identity)


async def test_transitions_and_owner_changes() -> None:
    gb, delete, orphan, _ = _builder()
    gb.process_event("add", _obj("rs", "u-rs"), None, REPLICA_SETS)
    gb.process_event("add", _obj("a", "u-a", owners=[_ref("ReplicaSet", "rs", "u-rs", "apps/v1", block=True)]), None, CONFIGMAPS)
    rs = gb.uid_to_node["u-rs"]
    old = _obj("rs", "u-rs")
    orphaning = _obj("rs", "u-rs", deletionTimestamp="2024-01-01T00:00:00Z", finalizers=["orphan"])
    gb.process_event("update", orphaning, old, REPLICA_SETS)
    assert _queued(orphan) == [rs] and rs.being_deleted
    gb.process_event("update", orphaning, orphaning, REPLICA_SETS)  # no transition: not queued again
    assert len(_queued(orphan)) == 1
    foreground = _obj("rs", "u-rs", deletionTimestamp="2024-01-01T00:00:00Z", finalizers=["foregroundDeletion"])
    gb.process_event("update", foreground, orphaning, REPLICA_SETS)
    assert rs.deleting_dependents and {n.identity.name for n in _queued(delete)} == {"a", "rs"}
    # a dependent that stops blocking puts its waiting owner on the queue
    for n in _queued(delete):
        delete.forget(n)
    delete._queue.clear()
    delete._dirty.clear()
    a = gb.uid_to_node["u-a"]
    gb.process_event("update", _obj("a", "u-a", owners=[_ref("ReplicaSet", "rs", "u-rs", "apps/v1")]), None, CONFIGMAPS)
    assert _queued(delete) == [rs] and rs.blocking_dependents() == [] and a in rs.dependents
    gb.process_event("update", _obj("a", "u-a"), None, CONFIGMAPS)
    assert a not in rs.dependents


async def test_owner_in_another_namespace_is_reported() -> None:
    gb, delete, _, recorder = _builder()
    gb.process_event("add", _obj("owner", "u-o", ns="other"), None, CONFIGMAPS)
    gb.process_event("add", _obj("dep", "u-d", owners=[_ref("ConfigMap", "owner", "u-o")]), None, CONFIGMAPS)
    assert [n.identity.name for n in _queued(delete)] == ["dep"]
    (_, type_, reason, message), = recorder.events
    assert (type_, reason) == ("Warning", "OwnerRefInvalidNamespace")
    assert message == 'ownerRef [v1/ConfigMap, namespace: default, name: owner, uid: u-o] does not exist in namespace "default"'
    # a cluster-scoped owner is an owner from any namespace
    gb.process_event("add", _obj("ns", "u-ns", ns=""), None, NAMESPACES)
    gb.process_event("add", _obj("dep2", "u-d2", owners=[_ref("Namespace", "ns", "u-ns")]), None, CONFIGMAPS)
    assert [n.identity.name for n in _queued(delete)] == ["dep"] and len(recorder.events) == 1


async def test_virtual_delete_with_disagreeing_dependents() -> None:
    gb, delete, _, _ = _builder()
    gb.process_event("add", _obj("a", "u-a", owners=[_ref("ConfigMap", "x", "u-x")]), None, CONFIGMAPS)
    gb.process_event("add", _obj("b", "u-b", owners=[_ref("Secret", "x", "u-x")]), None, CONFIGMAPS)
    owner = gb.uid_to_node["u-x"]
    absent = owner.identity
    gb.process_virtual_delete(absent)
    # kept, under the other coordinates a dependent gives it; the matching dependent is checked
    assert gb.uid_to_node["u-x"] is owner and owner.identity.kind == "Secret"
    assert gb.absent_owner_cache.has(absent)
    assert gb.uid_to_node["u-a"] in _queued(delete)
    # the dependents named by the other coordinates are still there: it swaps back, and stays
    gb.process_virtual_delete(owner.identity)
    assert gb.uid_to_node["u-x"] is owner and owner.identity == absent
    assert gb.uid_to_node["u-b"] in _queued(delete)
    # once the dependents (verified orphans) are gone, the virtual owner goes with the next verdict
    gb.process_event("delete", _obj("a", "u-a", owners=[_ref("ConfigMap", "x", "u-x")]), None, CONFIGMAPS)
    gb.process_event("delete", _obj("b", "u-b", owners=[_ref("Secret", "x", "u-x")]), None, CONFIGMAPS)
    assert not owner.dependents
    gb.process_virtual_delete(owner.identity)
    assert "u-x" not in gb.uid_to_node


def test_references_diffs_and_alternates() -> None:
    a, b, b2, c = _ref("K", "a", "1"), _ref("K", "b", "2"), _ref("K", "b", "2", block=True), _ref("K", "c", "3")
    assert references_diffs([a, b], [b2, c]) == ([c], [a], [(b, b2)])
    absent = ObjectReference("v1", "K", "a", "1", "ns")
    dep = Node(ObjectReference("v1", "Pod", "p", "9", "ns"), owners=[_ref("K2", "a", "1")])
    assert alternate_owner_identity([dep], absent) == ObjectReference("v1", "K2", "a", "1", "ns")


@pytest.mark.parametrize(
    ("have", "policy", "orphan", "default", "want"),
    [
        ([], None, None, "DeleteDependents", []),
        ([], None, None, "OrphanDependents", ["orphan"]),
        ([], "Background", None, "OrphanDependents", []),
        ([], "Foreground", None, "DeleteDependents", ["foregroundDeletion"]),
        (["x", "foregroundDeletion"], "Orphan", None, "DeleteDependents", ["x", "orphan"]),
        (["orphan"], None, None, "DeleteDependents", ["orphan"]),  # the object's own wins over the default
        (["foregroundDeletion"], None, None, "OrphanDependents", ["foregroundDeletion"]),
        (["orphan"], None, False, "DeleteDependents", []),
        ([], "Foreground", True, "DeleteDependents", ["orphan"]),  # orphanDependents first (validation forbids both)
    ],
)
def test_gc_finalizers(have: list[str], policy: str | None, orphan: bool | None, default: str, want: list[str]) -> None:
    assert gc_finalizers(have, policy, orphan, default) == want
