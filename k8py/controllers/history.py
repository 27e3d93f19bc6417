"""ControllerRevision history (``pkg/controller/history``), shared by the DaemonSet and
StatefulSet controllers.

A workload that rolls out (DaemonSet, StatefulSet) records every pod template it has had as an
``apps/v1`` ControllerRevision it controls: ``data`` is a strategic merge patch that restores the
template (``{"spec": {"template": {..., "$patch": "replace"}}}``, upstream's ``getPatch``, which
is also what ``kubectl rollout undo`` applies), ``revision`` a number that grows with every
change (a rollback renumbers the old revision instead of copying it), and the name
``<parent>-<hash>`` carries a hash of the data (plus the parent's ``status.collisionCount``, bumped
when two different revisions hash alike). Pods carry the hash as ``controller-revision-hash``.

``History`` is ``realHistory``: revisions read from the shared informer's cache, written through
the API. The per-controller policies (which revision is current, what is live, how many to keep)
stay in the controllers; the pieces they share are here.

k8py hashes canonical JSON (sorted keys), not Go's encoding of the struct, so hashes differ from
kube's for the same template; they are stable, and nothing outside the cluster compares them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from k8py.api import meta
from k8py.api.selectors import LabelSelector
from k8py.client import ClientError, PatchType, RESTClient, is_already_exists, is_conflict, is_not_found
from k8py.client.informer import SharedIndexInformer
from k8py.client.resources import CONTROLLER_REVISIONS
from k8py.controllers.controller_utils import controller_ref, owner_reference, safe_encode_string

Obj = dict[str, Any]

CONTROLLER_REVISION_HASH_LABEL = "controller-revision-hash"  # apps.ControllerRevisionHashLabelKey
_MAX_NAME_PREFIX = 223  # ControllerRevisionName keeps names within 253 characters


# -- the revision object ------------------------------------------------------------------------


def template_patch(parent: Obj) -> Obj:
    """getPatch: the data of a revision of `parent`, a patch that replaces its pod template."""
    template = meta.clone((parent.get("spec") or {}).get("template") or {})
    template["$patch"] = "replace"
    return {"spec": {"template": template}}


def apply_revision(parent: Obj, revision: Obj) -> Obj:
    """ApplyRevision: a copy of `parent` with the template `revision` recorded.

    Revisions are always template replacements (``template_patch``), so applying the strategic
    merge patch is replacing ``spec.template``."""
    out = meta.clone(parent)
    template = meta.clone((((revision.get("data") or {}).get("spec")) or {}).get("template") or {})
    template.pop("$patch", None)
    out.setdefault("spec", {})["template"] = template
    return out


def fnv32(data: bytes) -> int:
    """FNV-1 32 (Go's hash/fnv New32, which HashControllerRevision uses)."""
    h = 0x811C9DC5
    for b in data:
        h = (h * 0x01000193) & 0xFFFFFFFF
        h ^= b
    return h


def hash_controller_revision(data: Obj | None, probe: int | None = None) -> str:
    """HashControllerRevision: the hash of a revision's data, salted with the collision count."""
    raw = orjson.dumps(data, option=orjson.OPT_SORT_KEYS) if data else b""
    if probe is not None:
        raw += str(probe).encode()
    return safe_encode_string(str(fnv32(raw)))


def controller_revision_name(prefix: str, hash_: str) -> str:
    return f"{prefix[:_MAX_NAME_PREFIX]}-{hash_}"


def new_controller_revision(
    parent: Obj, template_labels: dict[str, str] | None, data: Obj, revision: int, collision_count: int | None
) -> Obj:
    """NewControllerRevision: an unsaved revision of `parent`, named and labelled by its hash."""
    hash_ = hash_controller_revision(data, collision_count)
    md = parent["metadata"]
    labels = dict(template_labels or {})
    labels[CONTROLLER_REVISION_HASH_LABEL] = hash_
    return {
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": {
            "name": controller_revision_name(md["name"], hash_),
            "namespace": md.get("namespace", ""),
            "labels": labels,
            "ownerReferences": [owner_reference(parent)],
        },
        "data": data,
        "revision": revision,
    }


def revision_number(revision: Obj) -> int:
    return int(revision.get("revision") or 0)


def sort_controller_revisions(revisions: Iterable[Obj]) -> list[Obj]:
    """SortControllerRevisions: by revision, then creation time, then name."""
    return sorted(
        revisions,
        key=lambda r: (
            revision_number(r),
            r["metadata"].get("creationTimestamp") or "",
            r["metadata"].get("name") or "",
        ),
    )


def equal_revision(lhs: Obj | None, rhs: Obj | None) -> bool:
    """EqualRevision: the same data."""
    if lhs is None or rhs is None:
        return lhs is rhs
    return (lhs.get("data") or None) == (rhs.get("data") or None)


def find_equal_revisions(revisions: Iterable[Obj], needle: Obj) -> list[Obj]:
    return [r for r in revisions if equal_revision(needle, r)]


def max_revision(revisions: Iterable[Obj]) -> int:
    return max((revision_number(r) for r in revisions), default=0)


def next_revision(revisions: list[Obj]) -> int:
    """nextRevision: one past the last of the (sorted) revisions, 1 for none."""
    return revision_number(revisions[-1]) + 1 if revisions else 1


# -- reads and writes -------------------------------------------------------------------------


class History:
    """realHistory: a parent's revisions from the informer cache, changes through the API."""

    def __init__(self, client: RESTClient, informer: SharedIndexInformer) -> None:
        self.client = client
        self.informer = informer

    def list_controller_revisions(self, parent: Obj, selector: LabelSelector) -> list[Obj]:
        """The revisions in the parent's namespace matching `selector` that it controls, or that
        nobody controls (candidates for adoption)."""
        ns = parent["metadata"].get("namespace") or ""
        uid = parent["metadata"].get("uid")
        out = []
        for rev in self.informer.indexer.by_index("namespace", ns):
            if not selector.matches(rev["metadata"].get("labels") or {}):
                continue
            ref = controller_ref(rev)
            if ref is None or ref.get("uid") == uid:
                out.append(rev)
        return out

    async def create_controller_revision(
        self, parent: Obj, revision: Obj, collision_count: int
    ) -> tuple[Obj, int]:
        """CreateControllerRevision: create `revision`, renaming it with a bumped collision count
        while its name is taken by a revision with other data. Returns (revision, collision count)."""
        clone = meta.clone(revision)
        ns = parent["metadata"].get("namespace")
        while True:
            hash_ = hash_controller_revision(revision.get("data"), collision_count)
            clone["metadata"]["name"] = controller_revision_name(parent["metadata"]["name"], hash_)
            clone["metadata"].setdefault("labels", {})[CONTROLLER_REVISION_HASH_LABEL] = hash_
            try:
                created = await self.client.create(CONTROLLER_REVISIONS, clone, namespace=ns)
            except ClientError as e:
                if not is_already_exists(e):
                    raise
                exists = await self.client.get(CONTROLLER_REVISIONS, clone["metadata"]["name"], namespace=ns)
                if (exists.get("data") or None) == (clone.get("data") or None):
                    return exists, collision_count
                collision_count += 1
                continue
            return created, collision_count

    async def update_controller_revision(self, revision: Obj, new_revision: int) -> Obj:
        """UpdateControllerRevision: renumber `revision` (a rollback), retrying conflicts."""
        clone = meta.clone(revision)
        md = clone["metadata"]
        for _ in range(5):
            if revision_number(clone) == new_revision:
                return clone
            clone["revision"] = new_revision
            try:
                return await self.client.update(CONTROLLER_REVISIONS, clone)
            except ClientError as e:
                if not is_conflict(e):
                    raise
                clone = await self.client.get(CONTROLLER_REVISIONS, md["name"], namespace=md["namespace"])
                md = clone["metadata"]
        raise RuntimeError(f"could not update ControllerRevision {md['namespace']}/{md['name']}: conflicts")

    async def delete_controller_revision(self, revision: Obj) -> None:
        md = revision["metadata"]
        try:
            await self.client.delete(CONTROLLER_REVISIONS, md["name"], namespace=md["namespace"])
        except ClientError as e:
            if not is_not_found(e):
                raise

    async def adopt_controller_revision(self, parent: Obj, revision: Obj) -> Obj:
        """AdoptControllerRevision: make `parent` the controller of an orphaned revision."""
        md = revision["metadata"]
        patch = {"metadata": {"ownerReferences": [owner_reference(parent)], "uid": md["uid"]}}
        return await self.client.patch(
            CONTROLLER_REVISIONS, md["name"], patch, namespace=md["namespace"], patch_type=PatchType.STRATEGIC
        )

    async def release_controller_revision(self, parent: Obj, revision: Obj) -> None:
        """ReleaseControllerRevision: drop `parent`'s ownerReference from `revision`."""
        md = revision["metadata"]
        patch = {
            "metadata": {
                "ownerReferences": [{"$patch": "delete", "uid": parent["metadata"]["uid"]}],
                "uid": md["uid"],
            }
        }
        try:
            await self.client.patch(
                CONTROLLER_REVISIONS,
                md["name"],
                patch,
                namespace=md["namespace"],
                patch_type=PatchType.STRATEGIC,
            )
        except ClientError as e:
            if not is_not_found(e):
                raise


async def truncate_history(history: History, revisions: Iterable[Obj], live: set[str], limit: int) -> None:
    """Delete the oldest revisions not named in `live` until at most `limit` non-live remain
    (the StatefulSet controller's truncateHistory)."""
    old = [r for r in sort_controller_revisions(revisions) if r["metadata"]["name"] not in live]
    for rev in old[: max(0, len(old) - limit)]:
        await history.delete_controller_revision(rev)
