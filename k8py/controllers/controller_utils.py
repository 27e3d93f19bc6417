"""Helpers the workload controllers share (``pkg/controller/controller_utils.go``,
``controller_ref_manager.go``, ``podutil``): pod state, owner references, adoption and
release, pod creation from a template, and the template hash.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from typing import Any

from k8py.api import meta
from k8py.api.selectors import LabelSelector
from k8py.client import NORMAL, WARNING, ClientError, EventRecorder, PatchType, RESTClient, is_not_found
from k8py.client.resources import PODS, Resource

log = logging.getLogger(__name__)

Obj = dict[str, Any]

# -- pods --------------------------------------------------------------------------------------


def pod_phase(pod: Obj) -> str:
    return (pod.get("status") or {}).get("phase") or "Pending"


def is_pod_active(pod: Obj) -> bool:
    """Not finished and not being deleted (controller.IsPodActive)."""
    return pod_phase(pod) not in ("Succeeded", "Failed") and not pod["metadata"].get("deletionTimestamp")


def is_pod_terminating(pod: Obj) -> bool:
    return pod_phase(pod) not in ("Succeeded", "Failed") and bool(pod["metadata"].get("deletionTimestamp"))


def pod_condition(pod: Obj, type_: str) -> Obj | None:
    return next(
        (c for c in (pod.get("status") or {}).get("conditions") or () if c.get("type") == type_), None
    )


def is_pod_ready(pod: Obj) -> bool:
    c = pod_condition(pod, "Ready")
    return c is not None and c.get("status") == "True"


def is_pod_available(pod: Obj, min_ready_seconds: int, now: dt.datetime | None = None) -> bool:
    """Ready for at least minReadySeconds (podutil.IsPodAvailable)."""
    c = pod_condition(pod, "Ready")
    if c is None or c.get("status") != "True":
        return False
    if min_ready_seconds <= 0:
        return True
    since = c.get("lastTransitionTime")
    if not since:
        return False
    now = now or dt.datetime.now(dt.UTC)
    return meta.parse_time(since) + dt.timedelta(seconds=min_ready_seconds) <= now


# -- owner references ------------------------------------------------------------------------


def controller_ref(obj: Obj) -> Obj | None:
    """The ownerReference with controller=true (metav1.GetControllerOf)."""
    for ref in obj["metadata"].get("ownerReferences") or ():
        if ref.get("controller"):
            return ref
    return None


def owner_reference(owner: Obj, *, controller: bool = True, block: bool = True) -> Obj:
    """metav1.NewControllerRef: a reference to `owner` from an object it controls."""
    ref = {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
    }
    if controller:
        ref["controller"] = True
    if block:
        ref["blockOwnerDeletion"] = True
    return ref


def is_controlled_by(obj: Obj, owner: Obj) -> bool:
    ref = controller_ref(obj)
    return ref is not None and ref.get("uid") == owner["metadata"].get("uid")


# An informer index of objects by their controller's UID, orphans filed per namespace under
# orphan_index_key(ns) (upstream's PodControllerUIDIndex / controllerUIDIndex): a controller finds
# what it owns, and the orphans it might adopt, without scanning the namespace.
CONTROLLER_UID_INDEX = "controllerUID"
ORPHAN_INDEX_KEY = "_ORPHAN"


def orphan_index_key(namespace: str) -> str:
    return f"{ORPHAN_INDEX_KEY}/{namespace}"


def controller_uid_index_func(obj: Obj) -> list[str]:
    ref = controller_ref(obj)
    if ref is not None:
        return [ref.get("uid", "")]
    return [orphan_index_key(obj["metadata"].get("namespace") or "")]


class ControllerRefManager:
    """Claims objects for an owner as upstream's BaseControllerRefManager does: owned objects
    that still match the selector are kept, owned ones that stopped matching are released
    (the ownerReference patched away), orphans that match are adopted (an ownerReference
    patched on) unless the owner is being deleted. Objects owned by others are left alone."""

    def __init__(self, client: RESTClient, resource: Resource, owner: Obj, selector: LabelSelector) -> None:
        self.client = client
        self.resource = resource
        self.owner = owner
        self.selector = selector
        self.uid = owner["metadata"]["uid"]

    async def claim(self, objs: Iterable[Obj]) -> list[Obj]:
        claimed: list[Obj] = []
        for obj in objs:
            got = await self.claim_one(obj)
            if got is not None:
                claimed.append(got)
        return claimed

    async def claim_one(self, obj: Obj) -> Obj | None:
        meta_ = obj["metadata"]
        ref = controller_ref(obj)
        matches = self.selector.matches(meta_.get("labels") or {})
        if ref is not None:
            if ref.get("uid") != self.uid:
                return None
            if matches:
                return obj
            if self.owner["metadata"].get("deletionTimestamp"):
                return None
            await self._release(obj)
            return None
        if not matches or self.owner["metadata"].get("deletionTimestamp") or meta_.get("deletionTimestamp"):
            return None
        return await self._adopt(obj)

    async def _adopt(self, obj: Obj) -> Obj | None:
        patch = {
            "metadata": {
                "ownerReferences": [owner_reference(self.owner)],
                "uid": obj["metadata"]["uid"],
            }
        }
        try:
            return await self.client.patch(
                self.resource,
                obj["metadata"]["name"],
                patch,
                namespace=obj["metadata"].get("namespace"),
                patch_type=PatchType.STRATEGIC,
            )
        except ClientError as e:
            if is_not_found(e):
                return None
            raise

    async def _release(self, obj: Obj) -> None:
        patch = {
            "metadata": {
                "ownerReferences": [{"$patch": "delete", "uid": self.uid}],
                "uid": obj["metadata"]["uid"],
            }
        }
        try:
            await self.client.patch(
                self.resource,
                obj["metadata"]["name"],
                patch,
                namespace=obj["metadata"].get("namespace"),
                patch_type=PatchType.STRATEGIC,
            )
        except ClientError as e:
            if not is_not_found(e):
                raise


# -- creating and deleting pods -----------------------------------------------------------------


def error_message(e: BaseException) -> str:
    """What Go's err.Error() says: an API error's Status message (no HTTP code in front)."""
    message = getattr(e, "message", None)
    return message if isinstance(message, str) and message else str(e)


def pod_from_template(template: Obj, owner: Obj | None, *, generate_name: str = "", name: str = "") -> Obj:
    """GetPodFromTemplate: a pod with the template's labels, annotations, finalizers and spec."""
    tmeta = template.get("metadata") or {}
    md: Obj = {"namespace": (owner or {}).get("metadata", {}).get("namespace", "")}
    if name:
        md["name"] = name
    else:
        md["generateName"] = generate_name
    for field_name in ("labels", "annotations", "finalizers"):
        if tmeta.get(field_name):
            md[field_name] = meta.clone(tmeta[field_name])
    if owner is not None:
        md["ownerReferences"] = [owner_reference(owner)]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": md, "spec": meta.clone(template.get("spec") or {})}


def generate_name_prefix(owner_name: str) -> str:
    """getPodsPrefix: `<name>-`, cut so the generated name stays a valid name."""
    prefix = f"{owner_name}-"
    return prefix if len(prefix) <= 58 else prefix[:58]


class PodControl:
    """RealPodControl: create and delete pods for a controller, with its events."""

    def __init__(self, client: RESTClient, recorder: EventRecorder) -> None:
        self.client = client
        self.recorder = recorder

    async def create_pod(self, pod: Obj, owner: Obj) -> Obj | None:
        """Create `pod` (from pod_from_template); None when the namespace is terminating."""
        ns = pod["metadata"]["namespace"]
        try:
            created = await self.client.create(PODS, pod, namespace=ns)
        except ClientError as e:
            if getattr(e, "reason", "") == "Forbidden" and "being terminated" in str(e):
                return None  # the namespace is going away: no event, no retry (upstream)
            self.recorder.event(owner, WARNING, "FailedCreate", f"Error creating: {error_message(e)}")
            raise
        self.recorder.event(owner, NORMAL, "SuccessfulCreate", f"Created pod: {created['metadata']['name']}")
        return created

    async def delete_pod(self, pod: Obj, owner: Obj) -> None:
        md = pod["metadata"]
        try:
            await self.client.delete(
                PODS, md["name"], namespace=md["namespace"], preconditions={"uid": md["uid"]}
            )
        except ClientError as e:
            if is_not_found(e):
                return
            self.recorder.event(owner, WARNING, "FailedDelete", f"Error deleting: {error_message(e)}")
            raise
        self.recorder.event(owner, NORMAL, "SuccessfulDelete", f"Deleted pod: {md['name']}")


# -- template hash --------------------------------------------------------------------------------

_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def safe_encode_string(s: str) -> str:
    """rand.SafeEncodeString: digits and consonants only, so no words are spelled."""
    return "".join(_SAFE_ALPHABET[ord(c) % len(_SAFE_ALPHABET)] for c in s)


def compute_hash(template: Obj, collision_count: int | None = None) -> str:
    """controller.ComputeHash: a short stable hash of a pod template (pod-template-hash).

    Upstream hashes the Go struct as printed by spew; k8py hashes canonical JSON. The value
    differs from kube's for the same template, but is stable, and nothing outside the
    cluster compares it."""
    import orjson

    data = orjson.dumps(template, option=orjson.OPT_SORT_KEYS)
    if collision_count is not None:
        data += str(collision_count).encode()
    return safe_encode_string(str(fnv32a(data)))
