"""The StatefulSet controller's helpers (``stateful_set_utils.go``, ``stateful_pod_control.go``):
pod identity and storage, revisions of a set, the PVC retention policy's owner references, and
``StatefulPodControl``, which creates, updates and deletes a set's pods and claims with the
controller's events.

A member of set ``web`` is the pod ``web-<ordinal>``: labelled
``statefulset.kubernetes.io/pod-name`` and ``apps.kubernetes.io/pod-index``, with hostname
``web-<i>`` and the set's ``serviceName`` as subdomain, and for each volumeClaimTemplate
``<claim>`` a volume of that name bound to the claim ``<claim>-web-<i>``, which is created before
the pod. A pod's revision is its ``controller-revision-hash`` label, the name of a
ControllerRevision of the set.

``persistentVolumeClaimRetentionPolicy`` (kube 1.32, StatefulSetAutoDeletePVC on) decides who
owns the claims: nobody (Retain/Retain, the default), the set (whenDeleted Delete: the
garbage collector removes them with the set), the pod of a scaled-down ordinal (whenScaled
Delete: they go with the pod). The controller keeps the claims' controller references in line
with the policy, and leaves alone claims controlled by anything else.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from typing import Any

from k8py.api import meta
from k8py.client import (
    NORMAL,
    WARNING,
    ClientError,
    EventRecorder,
    RESTClient,
    is_already_exists,
    is_conflict,
)
from k8py.client.informer import SharedIndexInformer
from k8py.client.resources import PERSISTENT_VOLUME_CLAIMS, PODS
from k8py.controllers.controller_utils import is_pod_available, is_pod_ready, pod_from_template
from k8py.controllers.history import CONTROLLER_REVISION_HASH_LABEL, new_controller_revision, template_patch

log = logging.getLogger(__name__)

Obj = dict[str, Any]

STATEFUL_SET_POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
STATEFUL_SET_REVISION_LABEL = CONTROLLER_REVISION_HASH_LABEL
RETAIN = "Retain"
DELETE = "Delete"
SET_GVK = ("apps/v1", "StatefulSet")
POD_GVK = ("v1", "Pod")

_STATEFUL_POD_RE = re.compile(r"^(.*)-([0-9]+)$")

# -- identity ------------------------------------------------------------------------------------


def parent_name_and_ordinal(pod: Obj) -> tuple[str, int]:
    """getParentNameAndOrdinal: ("", -1) for a name that is not ``<parent>-<ordinal>``."""
    m = _STATEFUL_POD_RE.match(pod["metadata"].get("name") or "")
    if m is None:
        return "", -1
    ordinal = int(m.group(2))
    return m.group(1), ordinal if ordinal < 2**31 else -1


def get_ordinal(pod: Obj) -> int:
    return parent_name_and_ordinal(pod)[1]


def is_member_of(sts: Obj, pod: Obj) -> bool:
    return parent_name_and_ordinal(pod)[0] == sts["metadata"]["name"]


def spec_replicas(sts: Obj) -> int:
    replicas = (sts.get("spec") or {}).get("replicas")
    return 1 if replicas is None else int(replicas)


def start_ordinal(sts: Obj) -> int:
    return int(((sts.get("spec") or {}).get("ordinals") or {}).get("start") or 0)


def end_ordinal(sts: Obj) -> int:
    return start_ordinal(sts) + spec_replicas(sts) - 1


def pod_in_ordinal_range(pod: Obj, sts: Obj) -> bool:
    return start_ordinal(sts) <= get_ordinal(pod) <= end_ordinal(sts)


def pod_name(sts: Obj, ordinal: int) -> str:
    return f"{sts['metadata']['name']}-{ordinal}"


def claim_name(sts: Obj, template: Obj, ordinal: int) -> str:
    """getPersistentVolumeClaimName: ``<claim>-<set>-<ordinal>``."""
    return f"{(template.get('metadata') or {}).get('name', '')}-{sts['metadata']['name']}-{ordinal}"


def identity_matches(sts: Obj, pod: Obj) -> bool:
    parent, ordinal = parent_name_and_ordinal(pod)
    md = pod["metadata"]
    return (
        ordinal >= 0
        and parent == sts["metadata"]["name"]
        and md.get("name") == pod_name(sts, ordinal)
        and md.get("namespace") == sts["metadata"].get("namespace")
        and (md.get("labels") or {}).get(STATEFUL_SET_POD_NAME_LABEL) == md.get("name")
    )


def update_identity(sts: Obj, pod: Obj) -> None:
    ordinal = get_ordinal(pod)
    md = pod["metadata"]
    md["name"] = pod_name(sts, ordinal)
    md["namespace"] = sts["metadata"].get("namespace")
    labels = md.setdefault("labels", {})
    labels[STATEFUL_SET_POD_NAME_LABEL] = md["name"]
    labels[POD_INDEX_LABEL] = str(ordinal)


def init_identity(sts: Obj, pod: Obj) -> None:
    """updateIdentity, plus hostname and subdomain (immutable: set only at creation)."""
    update_identity(sts, pod)
    spec = pod.setdefault("spec", {})
    spec["hostname"] = pod["metadata"]["name"]
    service = (sts.get("spec") or {}).get("serviceName")
    if service:
        spec["subdomain"] = service


# -- storage ----------------------------------------------------------------------------------


def persistent_volume_claims(sts: Obj, pod: Obj) -> dict[str, Obj]:
    """getPersistentVolumeClaims: template name -> the pod's claim, labelled with the set's
    matchLabels."""
    ordinal = get_ordinal(pod)
    match_labels = ((sts.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    claims: dict[str, Obj] = {}
    for template in (sts.get("spec") or {}).get("volumeClaimTemplates") or ():
        tmd = template.get("metadata") or {}
        md: Obj = {k: meta.clone(v) for k, v in tmd.items() if k in ("labels", "annotations", "finalizers")}
        md["name"] = claim_name(sts, template, ordinal)
        md["namespace"] = sts["metadata"].get("namespace")
        md["labels"] = {**(md.get("labels") or {}), **match_labels}
        claims[tmd.get("name", "")] = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": md,
            "spec": meta.clone(template.get("spec") or {}),
        }
    return claims


def storage_matches(sts: Obj, pod: Obj) -> bool:
    ordinal = get_ordinal(pod)
    if ordinal < 0:
        return False
    volumes = {v.get("name"): v for v in (pod.get("spec") or {}).get("volumes") or ()}
    for template in (sts.get("spec") or {}).get("volumeClaimTemplates") or ():
        vol = volumes.get((template.get("metadata") or {}).get("name"))
        source = (vol or {}).get("persistentVolumeClaim")
        if source is None or source.get("claimName") != claim_name(sts, template, ordinal):
            return False
    return True


def update_storage(sts: Obj, pod: Obj) -> None:
    """updateStorage: a volume per claim template (replacing pod volumes of the same name)."""
    claims = persistent_volume_claims(sts, pod)
    spec = pod.setdefault("spec", {})
    volumes = [
        {"name": name, "persistentVolumeClaim": {"claimName": claim["metadata"]["name"]}}
        for name, claim in claims.items()
    ]
    volumes += [v for v in spec.get("volumes") or () if v.get("name") not in claims]
    spec["volumes"] = volumes


# -- pod state ----------------------------------------------------------------------------------


def _phase(pod: Obj) -> str:
    return (pod.get("status") or {}).get("phase") or ""


def is_created(pod: Obj) -> bool:
    """The pod exists in the API (a pod the controller only plans has no phase)."""
    return _phase(pod) != ""


def is_pending(pod: Obj) -> bool:
    return _phase(pod) == "Pending"


def is_failed(pod: Obj) -> bool:
    return _phase(pod) == "Failed"


def is_succeeded(pod: Obj) -> bool:
    return _phase(pod) == "Succeeded"


def is_terminating(pod: Obj) -> bool:
    return bool(pod["metadata"].get("deletionTimestamp"))


def is_running_and_ready(pod: Obj) -> bool:
    return _phase(pod) == "Running" and is_pod_ready(pod)


def is_running_and_available(pod: Obj, min_ready_seconds: int, now: dt.datetime | None = None) -> bool:
    return is_pod_available(pod, min_ready_seconds, now)


def is_healthy(pod: Obj) -> bool:
    return is_running_and_ready(pod) and not is_terminating(pod)


def allows_burst(sts: Obj) -> bool:
    return (sts.get("spec") or {}).get("podManagementPolicy") == "Parallel"


def get_pod_revision(pod: Obj) -> str:
    return (pod["metadata"].get("labels") or {}).get(STATEFUL_SET_REVISION_LABEL, "")


def set_pod_revision(pod: Obj, revision: str) -> None:
    pod["metadata"].setdefault("labels", {})[STATEFUL_SET_REVISION_LABEL] = revision


def new_stateful_set_pod(sts: Obj, ordinal: int) -> Obj:
    """newStatefulSetPod: the member at `ordinal`, from the set's template (not yet created)."""
    pod = pod_from_template((sts.get("spec") or {}).get("template") or {}, sts, name=pod_name(sts, ordinal))
    init_identity(sts, pod)
    update_storage(sts, pod)
    return pod


def new_versioned_stateful_set_pod(
    current_set: Obj, update_set: Obj, current_revision: str, update_revision: str, ordinal: int
) -> Obj:
    """newVersionedStatefulSetPod: ordinals below the partition (or, without a rollingUpdate,
    below status.currentReplicas) are recreated at the current revision, the rest at the update
    revision."""
    spec = current_set.get("spec") or {}
    strategy = spec.get("updateStrategy") or {}
    rolling = strategy.get("rollingUpdate")
    start = start_ordinal(current_set)
    current_replicas = int((current_set.get("status") or {}).get("currentReplicas") or 0)
    # Go's precedence: (RollingUpdate && rolling == nil && ...) || (rolling != nil && ...)
    if (
        strategy.get("type", "RollingUpdate") == "RollingUpdate"
        and rolling is None
        and ordinal < start + current_replicas
    ) or (rolling is not None and ordinal < start + int(rolling.get("partition") or 0)):
        pod = new_stateful_set_pod(current_set, ordinal)
        set_pod_revision(pod, current_revision)
        return pod
    pod = new_stateful_set_pod(update_set, ordinal)
    set_pod_revision(pod, update_revision)
    return pod


def new_revision(sts: Obj, revision: int, collision_count: int | None) -> Obj:
    """newRevision: an unsaved ControllerRevision of the set's template, with its annotations."""
    template_labels = ((((sts.get("spec") or {}).get("template") or {}).get("metadata")) or {}).get("labels")
    cr = new_controller_revision(sts, template_labels, template_patch(sts), revision, collision_count)
    annotations = sts["metadata"].get("annotations")
    if annotations:
        cr["metadata"]["annotations"] = dict(annotations)
    return cr


# -- claim ownership (the retention policy) ------------------------------------------------------


def retention_policy(sts: Obj) -> tuple[str, str]:
    """(whenScaled, whenDeleted), Retain where unset."""
    policy = (sts.get("spec") or {}).get("persistentVolumeClaimRetentionPolicy") or {}
    return policy.get("whenScaled") or RETAIN, policy.get("whenDeleted") or RETAIN


def _uid(obj: Obj) -> str:
    return obj["metadata"].get("uid") or ""


def matches_ref(ref: Obj, obj: Obj, gvk: tuple[str, str]) -> bool:
    return (
        ref.get("apiVersion") == gvk[0]
        and ref.get("kind") == gvk[1]
        and ref.get("name") == obj["metadata"].get("name")
    )


def has_owner_ref(target: Obj, owner: Obj) -> bool:
    uid = _uid(owner)
    return any(ref.get("uid") == uid for ref in target["metadata"].get("ownerReferences") or ())


def has_stale_owner_ref(target: Obj, obj: Obj, gvk: tuple[str, str]) -> bool:
    """A reference to `obj` by kind and name, but not its UID (an earlier object of that name)."""
    for ref in target["metadata"].get("ownerReferences") or ():
        if matches_ref(ref, obj, gvk):
            return ref.get("uid") != _uid(obj)
    return False


def has_unexpected_controller(claim: Obj, sts: Obj, pod: Obj) -> bool:
    """Something other than the set or pod controls the claim (Retain/Retain never minds)."""
    if retention_policy(sts) == (RETAIN, RETAIN):
        return False
    for ref in claim["metadata"].get("ownerReferences") or ():
        if matches_ref(ref, sts, SET_GVK):
            if ref.get("uid") != _uid(sts):
                return True
            continue
        if matches_ref(ref, pod, POD_GVK):
            if ref.get("uid") != _uid(pod):
                return True
            continue
        if ref.get("controller"):
            return True
    return False


def has_non_controller_owner(claim: Obj, sts: Obj, pod: Obj) -> bool:
    uids = {_uid(sts), _uid(pod)}
    return any(
        ref.get("uid") in uids and not ref.get("controller")
        for ref in claim["metadata"].get("ownerReferences") or ()
    )


def is_claim_owner_up_to_date(claim: Obj, sts: Obj, pod: Obj) -> bool:
    """Whether the claim's owner references agree with the retention policy (stale references
    and foreign controllers count as agreeing: such claims are not touched)."""
    if has_stale_owner_ref(claim, sts, SET_GVK) or has_stale_owner_ref(claim, pod, POD_GVK):
        return True
    if has_unexpected_controller(claim, sts, pod):
        return not (has_owner_ref(claim, sts) or has_owner_ref(claim, pod))
    if has_non_controller_owner(claim, sts, pod):
        return False
    when_scaled, when_deleted = retention_policy(sts)
    set_ref, pod_ref = has_owner_ref(claim, sts), has_owner_ref(claim, pod)
    scaled_down = not pod_in_ordinal_range(pod, sts)
    if when_scaled == RETAIN and when_deleted == DELETE:
        return set_ref and not pod_ref
    if when_scaled == DELETE and when_deleted == RETAIN:
        return not set_ref and scaled_down == pod_ref
    if when_scaled == DELETE and when_deleted == DELETE:
        return scaled_down != set_ref and scaled_down == pod_ref
    return not set_ref and not pod_ref  # Retain/Retain, and unknown policies


def _controller_ref(owner: Obj, gvk: tuple[str, str]) -> Obj:
    return {
        "apiVersion": gvk[0],
        "kind": gvk[1],
        "name": owner["metadata"]["name"],
        "uid": _uid(owner),
        "controller": True,
        "blockOwnerDeletion": True,
    }


def update_claim_owner_ref_for_set_and_pod(claim: Obj, sts: Obj, pod: Obj) -> None:
    """Rewrite the claim's references to the set and pod as the retention policy wants them."""
    unexpected = has_unexpected_controller(claim, sts, pod)
    refs = [
        r
        for r in claim["metadata"].get("ownerReferences") or ()
        if not (matches_ref(r, sts, SET_GVK) or matches_ref(r, pod, POD_GVK))
    ]
    if not unexpected:
        when_scaled, when_deleted = retention_policy(sts)
        scaled_down = not pod_in_ordinal_range(pod, sts)
        owners: list[tuple[Obj, tuple[str, str]]] = []
        if when_scaled == RETAIN and when_deleted == DELETE:
            owners.append((sts, SET_GVK))
        elif when_scaled == DELETE and when_deleted == RETAIN:
            if scaled_down:
                owners.append((pod, POD_GVK))
        elif when_scaled == DELETE and when_deleted == DELETE:
            owners.append((pod, POD_GVK) if scaled_down else (sts, SET_GVK))
        for owner, gvk in owners:
            if not any(r.get("uid") == _uid(owner) for r in refs):
                refs.append(_controller_ref(owner, gvk))
    if refs:
        claim["metadata"]["ownerReferences"] = refs
    else:
        claim["metadata"].pop("ownerReferences", None)


# -- StatefulPodControl --------------------------------------------------------------------------


class StatefulPodControl:
    """Creates, updates and deletes a set's pods and their claims (claims read from the cache)."""

    def __init__(
        self,
        client: RESTClient,
        recorder: EventRecorder,
        *,
        pods: SharedIndexInformer,
        claims: SharedIndexInformer,
    ) -> None:
        self.client = client
        self.recorder = recorder
        self.pods = pods
        self.claims = claims

    def _claim(self, namespace: str, name: str) -> Obj | None:
        return self.claims.indexer.get_by_key(f"{namespace}/{name}")

    async def create_stateful_pod(self, sts: Obj, pod: Obj) -> Obj:
        """The pod's claims first, then the pod; AlreadyExists is raised without an event."""
        try:
            await self.create_persistent_volume_claims(sts, pod)
        except Exception as e:
            self.record_pod_event("create", sts, pod, e)
            raise
        try:
            created = await self.client.create(PODS, pod, namespace=pod["metadata"]["namespace"])
        except ClientError as e:
            if not is_already_exists(e):
                self.record_pod_event("create", sts, pod, e)
            raise
        try:
            await self.update_pod_claim_for_retention_policy(sts, created)
        except Exception as e:
            self.record_pod_event("update", sts, pod, e)
            raise
        self.record_pod_event("create", sts, pod, None)
        return created

    async def update_stateful_pod(self, sts: Obj, pod: Obj) -> None:
        """Bring the pod's identity, volumes and claims' ownership in line with `sts`, retrying conflicts."""
        attempted = False
        err: Exception | None = None
        for _ in range(5):
            consistent = True
            if not identity_matches(sts, pod):
                update_identity(sts, pod)
                consistent = False
            if not storage_matches(sts, pod):
                update_storage(sts, pod)
                consistent = False
                try:
                    await self.create_persistent_volume_claims(sts, pod)
                except Exception as e:
                    self.record_pod_event("update", sts, pod, e)
                    raise
            if not self.claims_match_retention_policy(sts, pod):
                try:
                    await self.update_pod_claim_for_retention_policy(sts, pod)
                except Exception as e:
                    self.record_pod_event("update", sts, pod, e)
                    raise
                consistent = False
            if consistent:
                return
            attempted = True
            try:
                await self.client.update(PODS, pod)
                err = None
                break
            except ClientError as e:
                err = e
                if not is_conflict(e):
                    break
                cached = self.pods.indexer.get_by_key(
                    f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
                )
                if cached is not None:
                    pod = meta.clone(cached)
        if attempted:
            self.record_pod_event("update", sts, pod, err)
        if err is not None:
            raise err

    async def delete_stateful_pod(self, sts: Obj, pod: Obj) -> None:
        md = pod["metadata"]
        try:
            await self.client.delete(PODS, md["name"], namespace=md["namespace"])
        except ClientError as e:
            self.record_pod_event("delete", sts, pod, e)
            raise
        self.record_pod_event("delete", sts, pod, None)

    def claims_match_retention_policy(self, sts: Obj, pod: Obj) -> bool:
        ordinal = get_ordinal(pod)
        ns = sts["metadata"].get("namespace") or ""
        for template in (sts.get("spec") or {}).get("volumeClaimTemplates") or ():
            claim = self._claim(ns, claim_name(sts, template, ordinal))
            if claim is not None and not is_claim_owner_up_to_date(claim, sts, pod):
                return False
        return True  # a missing claim is picked up by a later sync

    async def update_pod_claim_for_retention_policy(self, sts: Obj, pod: Obj) -> None:
        ordinal = get_ordinal(pod)
        ns = sts["metadata"].get("namespace") or ""
        for template in (sts.get("spec") or {}).get("volumeClaimTemplates") or ():
            name = claim_name(sts, template, ordinal)
            claim = self._claim(ns, name)
            if claim is None:
                continue
            if has_unexpected_controller(claim, sts, pod):
                self.recorder.event(
                    sts,
                    WARNING,
                    "ConflictingController",
                    f"PersistentVolumeClaim {name} has a conflicting OwnerReference that acts as a managing "
                    "controller, the retention policy is ignored for this claim",
                )
            if not is_claim_owner_up_to_date(claim, sts, pod):
                claim = meta.clone(claim)
                update_claim_owner_ref_for_set_and_pod(claim, sts, pod)
                try:
                    await self.client.update(PERSISTENT_VOLUME_CLAIMS, claim)
                except ClientError as e:
                    raise RuntimeError(
                        f"could not update claim {name} for delete policy ownerRefs: {e}"
                    ) from e

    def pod_claim_is_stale(self, sts: Obj, pod: Obj) -> bool:
        """With whenScaled Delete, a claim still owned by an earlier pod of this name blocks the
        new pod until the garbage collector removes it."""
        if retention_policy(sts)[0] == RETAIN:
            return False
        for claim in persistent_volume_claims(sts, pod).values():
            existing = self._claim(claim["metadata"]["namespace"], claim["metadata"]["name"])
            if existing is not None and has_stale_owner_ref(existing, pod, POD_GVK):
                return True
        return False

    async def create_missing_persistent_volume_claims(self, sts: Obj, pod: Obj) -> None:
        await self.create_persistent_volume_claims(sts, pod)
        try:
            await self.update_pod_claim_for_retention_policy(sts, pod)
        except Exception as e:
            self.record_pod_event("update", sts, pod, e)
            raise

    async def create_persistent_volume_claims(self, sts: Obj, pod: Obj) -> None:
        errors: list[str] = []
        for claim in persistent_volume_claims(sts, pod).values():
            md = claim["metadata"]
            existing = self._claim(md["namespace"], md["name"])
            if existing is None:
                try:
                    await self.client.create(PERSISTENT_VOLUME_CLAIMS, claim, namespace=md["namespace"])
                except ClientError as e:
                    if is_already_exists(e):
                        continue  # created by an earlier sync the cache has not seen yet
                    errors.append(f"failed to create PVC {md['name']}: {e}")
                    self.record_claim_event("create", sts, pod, claim, e)
                else:
                    self.record_claim_event("create", sts, pod, claim, None)
            elif existing["metadata"].get("deletionTimestamp"):
                errors.append(f"pvc {md['name']} is being deleted")
        if errors:
            raise RuntimeError(errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]")

    def record_pod_event(self, verb: str, sts: Obj, pod: Obj, err: BaseException | None) -> None:
        name, set_name = pod["metadata"]["name"], sts["metadata"]["name"]
        if err is None:
            self.recorder.event(
                sts,
                NORMAL,
                f"Successful{verb.title()}",
                f"{verb} Pod {name} in StatefulSet {set_name} successful",
            )
        else:
            self.recorder.event(
                sts,
                WARNING,
                f"Failed{verb.title()}",
                f"{verb} Pod {name} in StatefulSet {set_name} failed error: {err}",
            )

    def record_claim_event(
        self, verb: str, sts: Obj, pod: Obj, claim: Obj, err: BaseException | None
    ) -> None:
        name, cname, set_name = pod["metadata"]["name"], claim["metadata"]["name"], sts["metadata"]["name"]
        if err is None:
            self.recorder.event(
                sts,
                NORMAL,
                f"Successful{verb.title()}",
                f"{verb} Claim {cname} Pod {name} in StatefulSet {set_name} success",
            )
        else:
            self.recorder.event(
                sts,
                WARNING,
                f"Failed{verb.title()}",
                f"{verb} Claim {cname} for Pod {name} in StatefulSet {set_name} failed error: {err}",
            )
