"""The StatefulSet controller (``pkg/controller/statefulset``): pods with stable names, stable
storage and ordered rollouts.

Informers on StatefulSets and pods feed one queue of set keys (PVCs and ControllerRevisions are
read from their informers' caches). ``sync(key)``, as kube's ``sync`` + ``UpdateStatefulSet``:

1. Orphaned ControllerRevisions matching the selector are adopted; the set's pods (members by
   name, ``<set>-<ordinal>``) are claimed, and owned pods that are no longer members released.
2. **Revisions** (``getStatefulSetRevisions``): the set's template is a revision
   ``<set>-<hash>`` (see :mod:`k8py.controllers.history`). The *update revision* is the newest
   revision equal to it (an older equal one is renumbered: a rollback) or a new one; the
   *current revision* is ``status.currentRevision`` (the update revision on the first sync).
3. **Replicas**: ordinals ``[start, start+replicas)`` are the replicas, others are condemned.
   A missing replica is planned at the current revision below the partition and at the update
   revision from it. With ``OrderedReady`` (monotonic) the replicas are walked in order and the
   walk stops at the first pod it creates or that is not Running, Ready and available
   (minReadySeconds): pod ``i+1`` is created only once pod ``i`` is; failed and succeeded pods
   are deleted (and recreated by a later sync); a pod's PVCs (``<claim>-<set>-<i>``) are created
   before the pod, and again while it is Pending. Condemned pods are deleted from the highest
   ordinal down, each once the ones before are healthy and the previous is gone. With
   ``Parallel`` the same work is done for all pods at once (slow-start batches) without waiting.
4. **RollingUpdate**: once scaling is settled, the highest-ordinal replica (down to the
   ``partition``) not at the update revision is deleted, one at a time, each only when every
   higher one is healthy again; it comes back at the update revision. ``OnDelete`` stops here.
5. **Status** (replicas, ready, available, current, updated, revisions, collisionCount,
   observedGeneration) is written when it changed; once every replica is updated and ready, the
   update revision becomes the current one. ``kubectl rollout status statefulset`` reads it.
6. **History**: revisions no pod, current or update revision uses are kept up to
   ``revisionHistoryLimit``.

StatefulSets do not use expectations (as in kube): pod names are fixed, so a create the cache
has not seen yet fails with AlreadyExists and is retried, never duplicated. Not done: the
MaxUnavailableStatefulSet alpha (``rollingUpdate.maxUnavailable``, off by default in 1.32).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from k8py.api import meta
from k8py.api.selectors import LabelSelector
from k8py.client import ClientError, PatchType, is_conflict, is_not_found
from k8py.client.cache import DeletedFinalStateUnknown
from k8py.client.informer import ResourceEventHandlerFuncs
from k8py.client.resources import CONTROLLER_REVISIONS, PERSISTENT_VOLUME_CLAIMS, PODS, STATEFUL_SETS
from k8py.controllers.base import QueueController, unwrap
from k8py.controllers.controller_utils import (
    ControllerRefManager,
    controller_ref,
    is_controlled_by,
    is_pod_ready,
)
from k8py.controllers.history import (
    History,
    apply_revision,
    equal_revision,
    find_equal_revisions,
    next_revision,
    sort_controller_revisions,
    truncate_history,
)
from k8py.controllers.manager import ControllerContext
from k8py.controllers.statefulset_utils import (
    StatefulPodControl,
    allows_burst,
    end_ordinal,
    get_ordinal,
    get_pod_revision,
    identity_matches,
    is_created,
    is_failed,
    is_healthy,
    is_member_of,
    is_pending,
    is_running_and_available,
    is_running_and_ready,
    is_succeeded,
    is_terminating,
    new_revision,
    new_versioned_stateful_set_pod,
    pod_in_ordinal_range,
    spec_replicas,
    start_ordinal,
    storage_matches,
)

log = logging.getLogger(__name__)

Obj = dict[str, Any]

MAX_BATCH_SIZE = 500  # realistic in-flight requests in Parallel mode


@dataclass
class StatefulSetStatus:
    observed_generation: int = 0
    replicas: int = 0
    ready_replicas: int = 0
    current_replicas: int = 0
    updated_replicas: int = 0
    available_replicas: int = 0
    current_revision: str = ""
    update_revision: str = ""
    collision_count: int = 0

    def to_json(self, conditions: Any = None) -> Obj:
        """apps/v1 StatefulSetStatus, zero values of omitempty fields left out."""
        out: Obj = {"replicas": self.replicas, "availableReplicas": self.available_replicas}
        for key, value in (
            ("observedGeneration", self.observed_generation),
            ("readyReplicas", self.ready_replicas),
            ("currentReplicas", self.current_replicas),
            ("updatedReplicas", self.updated_replicas),
            ("currentRevision", self.current_revision),
            ("updateRevision", self.update_revision),
        ):
            if value:
                out[key] = value
        out["collisionCount"] = self.collision_count
        if conditions:
            out["conditions"] = conditions
        return out

    def count(self, pods: list[Obj], min_ready_seconds: int, current: str, update: str) -> None:
        """updateStatus over `pods` (computeReplicaStatus summed)."""
        self.replicas = self.ready_replicas = self.available_replicas = 0
        self.current_replicas = self.updated_replicas = 0
        now = dt.datetime.now(dt.UTC)
        for pod in pods:
            created = is_created(pod)
            self.replicas += created
            if is_running_and_ready(pod):
                self.ready_replicas += 1
                self.available_replicas += is_running_and_available(pod, min_ready_seconds, now)
            if created and not is_terminating(pod):
                revision = get_pod_revision(pod)
                self.current_replicas += revision == current
                self.updated_replicas += revision == update


def _status_of(sts: Obj) -> StatefulSetStatus:
    s = sts.get("status") or {}
    return StatefulSetStatus(
        observed_generation=int(s.get("observedGeneration") or 0),
        replicas=int(s.get("replicas") or 0),
        ready_replicas=int(s.get("readyReplicas") or 0),
        current_replicas=int(s.get("currentReplicas") or 0),
        updated_replicas=int(s.get("updatedReplicas") or 0),
        available_replicas=int(s.get("availableReplicas") or 0),
        current_revision=s.get("currentRevision") or "",
        update_revision=s.get("updateRevision") or "",
        collision_count=int(s.get("collisionCount") or 0),
    )


def complete_rolling_update(sts: Obj, status: StatefulSetStatus) -> None:
    """Every replica updated and ready: the update revision becomes the current one."""
    replicas = spec_replicas(sts)
    strategy = ((sts.get("spec") or {}).get("updateStrategy") or {}).get("type", "RollingUpdate")
    if (
        strategy == "RollingUpdate"
        and status.updated_replicas == replicas
        and status.ready_replicas == replicas
        and status.replicas == replicas
    ):
        status.current_replicas = status.updated_replicas
        status.current_revision = status.update_revision


def inconsistent_status(sts: Obj, status: StatefulSetStatus) -> bool:
    old = _status_of(sts)
    return (
        status.observed_generation > old.observed_generation
        or status.replicas != old.replicas
        or status.current_replicas != old.current_replicas
        or status.ready_replicas != old.ready_replicas
        or status.updated_replicas != old.updated_replicas
        or status.current_revision != old.current_revision
        or status.available_replicas != old.available_replicas
        or status.update_revision != old.update_revision
        or status.collision_count != old.collision_count
    )


async def slow_start_batch(initial: int, remaining: int, fn: Callable[[int], Awaitable[bool]]) -> int:
    """Call fn(0..remaining-1) in concurrent batches of doubling size (at most MAX_BATCH_SIZE),
    stopping after the first batch with an error; returns the successes or raises the first error."""
    successes = j = 0
    batch = min(remaining, initial)
    while batch > 0:
        results = await asyncio.gather(*(fn(j + k) for k in range(batch)), return_exceptions=True)
        j += batch
        errors = [r for r in results if isinstance(r, BaseException)]
        successes += batch - len(errors)
        if errors:
            raise errors[0]
        remaining -= batch
        batch = min(2 * batch, remaining, MAX_BATCH_SIZE)
    return successes


async def run_for_all(pods: list[Obj], fn: Callable[[int], Awaitable[bool]], monotonic: bool) -> bool:
    """In order, stopping at the first pod that says so (monotonic); else all at once. True to exit."""
    if monotonic:
        for i in range(len(pods)):
            if await fn(i):
                return True
        return False
    await slow_start_batch(1, len(pods), fn)
    return False


class StatefulSetController(QueueController):
    name = "statefulset"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(workers=ctx.options.workers("statefulset", 5))
        self.client = ctx.client
        self.recorder = ctx.recorder("statefulset-controller")
        informers = ctx.informers
        self.set_informer = informers.informer_for(STATEFUL_SETS)
        self.pod_informer = informers.informer_for(PODS)
        self.claim_informer = informers.informer_for(PERSISTENT_VOLUME_CLAIMS)
        self.revision_informer = informers.informer_for(CONTROLLER_REVISIONS)
        self.history = History(self.client, self.revision_informer)
        self.pod_control = StatefulPodControl(
            self.client, self.recorder, pods=self.pod_informer, claims=self.claim_informer
        )
        self.pod_informer.add_event_handler(
            ResourceEventHandlerFuncs(
                add_func=lambda p, _i: self._add_pod(p),
                update_func=self._update_pod,
                delete_func=self._delete_pod,
            )
        )
        self.set_informer.add_event_handler(
            ResourceEventHandlerFuncs(
                add_func=lambda s, _i: self.enqueue(s),
                update_func=lambda _o, n: self.enqueue(n),
                delete_func=self.enqueue,
            )
        )
        self.synced = [self.set_informer, self.pod_informer, self.claim_informer, self.revision_informer]

    # -- event handlers ---------------------------------------------------------------------------

    def _resolve_controller_ref(self, namespace: str, ref: Obj | None) -> Obj | None:
        if ref is None or ref.get("kind") != "StatefulSet":
            return None
        sts = self.set_informer.indexer.get_by_key(f"{namespace}/{ref.get('name')}")
        if sts is None or sts["metadata"].get("uid") != ref.get("uid"):
            return None
        return sts

    def _sets_for_pod(self, pod: Obj) -> list[Obj]:
        labels = pod["metadata"].get("labels") or {}
        if not labels:
            return []
        out = []
        for sts in self.set_informer.indexer.by_index("namespace", pod["metadata"].get("namespace") or ""):
            selector = (sts.get("spec") or {}).get("selector")
            try:
                sel = LabelSelector.from_label_selector(selector)
            except Exception:
                continue
            if not sel.empty and sel.matches(labels):
                out.append(sts)
        return out

    def _add_pod(self, pod: Obj) -> None:
        if pod["metadata"].get("deletionTimestamp"):
            self._delete_pod(pod)
            return
        ref = controller_ref(pod)
        if ref is not None:
            sts = self._resolve_controller_ref(pod["metadata"].get("namespace") or "", ref)
            if sts is not None:
                self.enqueue(sts)
            return
        for sts in self._sets_for_pod(pod):
            self.enqueue(sts)

    def _update_pod(self, old: Obj, new: Obj) -> None:
        if old["metadata"].get("resourceVersion") == new["metadata"].get("resourceVersion"):
            return
        ns = new["metadata"].get("namespace") or ""
        cur_ref, old_ref = controller_ref(new), controller_ref(old)
        if cur_ref != old_ref and old_ref is not None:
            sts = self._resolve_controller_ref(ns, old_ref)
            if sts is not None:
                self.enqueue(sts)
        if cur_ref is not None:
            sts = self._resolve_controller_ref(ns, cur_ref)
            if sts is None:
                return
            self.enqueue(sts)
            min_ready = int((sts.get("spec") or {}).get("minReadySeconds") or 0)
            if not is_pod_ready(old) and is_pod_ready(new) and min_ready > 0:
                self.enqueue_after(sts, min_ready + 1)
            return
        labels_changed = (old["metadata"].get("labels") or {}) != (new["metadata"].get("labels") or {})
        if labels_changed or cur_ref != old_ref:
            for sts in self._sets_for_pod(new):
                self.enqueue(sts)

    def _delete_pod(self, obj: Obj | DeletedFinalStateUnknown) -> None:
        pod = unwrap(obj)
        sts = self._resolve_controller_ref(pod["metadata"].get("namespace") or "", controller_ref(pod))
        if sts is not None:
            self.enqueue(sts)

    # -- sync -----------------------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        sts = self.set_informer.indexer.get_by_key(key)
        if sts is None:
            return
        try:
            selector = LabelSelector.from_label_selector((sts.get("spec") or {}).get("selector"))
        except Exception as e:
            log.error("statefulset %s: bad selector (not retried): %s", key, e)
            return
        await self.adopt_orphan_revisions(sts, selector)
        pods = await self.get_pods_for_stateful_set(sts, selector)
        status = await self.update_stateful_set(sts, pods)
        min_ready = int((sts.get("spec") or {}).get("minReadySeconds") or 0)
        if min_ready > 0 and status is not None and status.available_replicas != spec_replicas(sts):
            # one more sync once the pods may have become available (and against clock skew)
            self.enqueue_after(sts, min_ready)

    async def adopt_orphan_revisions(self, sts: Obj, selector: LabelSelector) -> None:
        orphans = [
            r for r in self.history.list_controller_revisions(sts, selector) if controller_ref(r) is None
        ]
        if orphans and not sts["metadata"].get("deletionTimestamp"):
            for rev in orphans:
                try:
                    await self.history.adopt_controller_revision(sts, rev)
                except ClientError as e:
                    if not is_not_found(e):
                        raise

    async def get_pods_for_stateful_set(self, sts: Obj, selector: LabelSelector) -> list[Obj]:
        """Claim the members (by name) the selector matches; release owned pods that are not members."""
        manager = ControllerRefManager(self.client, PODS, sts, selector)
        out = []
        for pod in self.pod_informer.indexer.by_index("namespace", sts["metadata"].get("namespace") or ""):
            if is_member_of(sts, pod):
                claimed = await manager.claim_one(pod)
                if claimed is not None:
                    out.append(claimed)
            elif is_controlled_by(pod, sts) and not sts["metadata"].get("deletionTimestamp"):
                await self._release(sts, pod)
        return out

    async def _release(self, sts: Obj, pod: Obj) -> None:
        md = pod["metadata"]
        patch = {
            "metadata": {
                "ownerReferences": [{"$patch": "delete", "uid": sts["metadata"]["uid"]}],
                "uid": md["uid"],
            }
        }
        try:
            await self.client.patch(
                PODS, md["name"], patch, namespace=md["namespace"], patch_type=PatchType.STRATEGIC
            )
        except ClientError as e:
            if not is_not_found(e):
                raise

    # -- the control loop (defaultStatefulSetControl) ----------------------------------------------

    async def update_stateful_set(self, sts: Obj, pods: list[Obj]) -> StatefulSetStatus | None:
        """UpdateStatefulSet: reconcile the pods, write the status, truncate the history."""
        sts = meta.clone(sts)
        selector = LabelSelector.from_label_selector((sts.get("spec") or {}).get("selector"))
        revisions = sort_controller_revisions(self.history.list_controller_revisions(sts, selector))
        current = update = None
        status: StatefulSetStatus | None = None
        err: BaseException | None = None
        try:
            current, update, collision_count = await self.get_stateful_set_revisions(sts, revisions)
            status, err = await self.reconcile(sts, current, update, collision_count, pods)
            try:
                await self.update_stateful_set_status(sts, status)
            except Exception as e:
                if err is None:
                    err = e
                else:
                    log.error("statefulset %s: could not update status: %s", sts["metadata"]["name"], e)
        except Exception as e:
            err = e
        live = {get_pod_revision(p) for p in pods} | {r["metadata"]["name"] for r in (current, update) if r}
        limit = (sts.get("spec") or {}).get("revisionHistoryLimit")
        try:
            await truncate_history(self.history, revisions, live, 10 if limit is None else int(limit))
        except Exception as e:
            if err is None:
                err = e
        if err is not None:
            raise err
        return status

    async def get_stateful_set_revisions(self, sts: Obj, revisions: list[Obj]) -> tuple[Obj, Obj, int]:
        """(current revision, update revision, collision count); may create or renumber a revision."""
        collision_count = int((sts.get("status") or {}).get("collisionCount") or 0)
        update = new_revision(sts, next_revision(revisions), collision_count)
        equal = find_equal_revisions(revisions, update)
        if equal and equal_revision(revisions[-1], equal[-1]):
            update = revisions[-1]  # unchanged
        elif equal:
            # an older template again: roll back by renumbering its revision
            update = await self.history.update_controller_revision(equal[-1], int(update["revision"]))
        else:
            update, collision_count = await self.history.create_controller_revision(
                sts, update, collision_count
            )
        current_name = (sts.get("status") or {}).get("currentRevision")
        current = next((r for r in revisions if r["metadata"]["name"] == current_name), None)
        return current or update, update, collision_count

    async def reconcile(
        self, sts: Obj, current: Obj, update: Obj, collision_count: int, pods: list[Obj]
    ) -> tuple[StatefulSetStatus, BaseException | None]:
        """updateStatefulSet: create, update and delete pods toward the set's spec; the status
        that results (and the error that stopped it, if any)."""
        current_set = apply_revision(sts, current)
        update_set = apply_revision(sts, update)
        current_name, update_name = current["metadata"]["name"], update["metadata"]["name"]
        min_ready = int((sts.get("spec") or {}).get("minReadySeconds") or 0)
        status = StatefulSetStatus(
            observed_generation=int(sts["metadata"].get("generation") or 0),
            current_revision=current_name,
            update_revision=update_name,
            collision_count=collision_count,
        )
        status.count(pods, min_ready, current_name, update_name)

        start = start_ordinal(sts)
        replicas: list[Obj | None] = [None] * spec_replicas(sts)
        condemned: list[Obj] = []
        for pod in pods:
            if pod_in_ordinal_range(pod, sts):
                replicas[get_ordinal(pod) - start] = pod
            elif get_ordinal(pod) >= 0:
                condemned.append(pod)
        for ordinal in range(start, end_ordinal(sts) + 1):
            if replicas[ordinal - start] is None:
                replicas[ordinal - start] = new_versioned_stateful_set_pod(
                    current_set, update_set, current_name, update_name, ordinal
                )
        members: list[Obj] = [p for p in replicas if p is not None]
        condemned.sort(key=get_ordinal, reverse=True)

        first_unhealthy: Obj | None = next((p for p in members if not is_healthy(p)), None)
        if first_unhealthy is None:
            first_unhealthy = next((p for p in reversed(condemned) if not is_healthy(p)), None)

        def recount() -> None:
            status.count(members + condemned, min_ready, current_name, update_name)

        if sts["metadata"].get("deletionTimestamp"):
            return status, None
        monotonic = not allows_burst(sts)

        async def process_replica(i: int) -> bool:
            return await self.process_replica(sts, update_set, monotonic, members, i)

        async def fix_pod_claim(i: int) -> bool:
            if not self.pod_control.claims_match_retention_policy(update_set, condemned[i]):
                await self.pod_control.update_pod_claim_for_retention_policy(update_set, condemned[i])
            return False

        async def process_condemned(i: int) -> bool:
            return await self.process_condemned(sts, first_unhealthy, monotonic, condemned, i)

        for pods_, fn in (
            (members, process_replica),
            (condemned, fix_pod_claim),
            (condemned, process_condemned),
        ):
            try:
                if await run_for_all(pods_, fn, monotonic):
                    recount()
                    return status, None
            except Exception as e:
                recount()
                return status, e
        recount()

        strategy = (sts.get("spec") or {}).get("updateStrategy") or {}
        if strategy.get("type", "RollingUpdate") == "OnDelete":
            return status, None  # pods are updated as someone deletes them
        update_min = int((strategy.get("rollingUpdate") or {}).get("partition") or 0)
        # delete the highest-ordinal replica not at the update revision, once all above are healthy
        for target in range(len(members) - 1, update_min - 1, -1):
            pod = members[target]
            if get_pod_revision(pod) != update_name and not is_terminating(pod):
                log.info(
                    "statefulset %s: pod %s is terminating for update",
                    sts["metadata"]["name"],
                    pod["metadata"]["name"],
                )
                try:
                    await self.pod_control.delete_stateful_pod(sts, pod)
                except ClientError as e:
                    if not is_not_found(e):
                        return status, e
                status.current_replicas -= 1
                return status, None
            if not is_healthy(pod):
                return status, None  # wait for it before going on
        return status, None

    async def process_replica(
        self, sts: Obj, update_set: Obj, monotonic: bool, replicas: list[Obj], i: int
    ) -> bool:
        """processReplica: one replica toward its target; True when a monotonic walk must stop here."""
        pod = replicas[i]
        if is_failed(pod) or is_succeeded(pod):
            # restart it whatever the exit code: a later sync creates it again once it is gone
            if not is_terminating(pod):
                await self.pod_control.delete_stateful_pod(sts, pod)
            return True
        if not is_created(pod):
            if self.pod_control.pod_claim_is_stale(sts, pod):
                return True  # the claim of an earlier pod must go first
            await self.pod_control.create_stateful_pod(sts, pod)
            if monotonic:
                return True  # one at a time
        if is_pending(pod):
            await self.pod_control.create_missing_persistent_volume_claims(sts, pod)
        if is_terminating(pod) and monotonic:
            return True  # wait for the graceful deletion to finish
        min_ready = int((sts.get("spec") or {}).get("minReadySeconds") or 0)
        if not is_running_and_ready(pod) and monotonic:
            return True
        if not is_running_and_available(pod, min_ready) and monotonic:
            return True
        try:
            retention_match = self.pod_control.claims_match_retention_policy(update_set, pod)
        except Exception:
            retention_match = True
        if identity_matches(sts, pod) and storage_matches(sts, pod) and retention_match:
            return False
        await self.pod_control.update_stateful_pod(update_set, meta.clone(pod))
        return False

    async def process_condemned(
        self, sts: Obj, first_unhealthy: Obj | None, monotonic: bool, condemned: list[Obj], i: int
    ) -> bool:
        """processCondemned: delete a pod beyond the replicas (in monotonic mode the highest first,
        and only while every other pod is healthy)."""
        pod = condemned[i]
        if is_terminating(pod):
            return monotonic  # wait for it to go before the next one
        min_ready = int((sts.get("spec") or {}).get("minReadySeconds") or 0)
        if monotonic and pod is not first_unhealthy:
            if not is_running_and_ready(pod) or not is_running_and_available(pod, min_ready):
                return True
        log.info(
            "statefulset %s: pod %s is terminating for scale down",
            sts["metadata"]["name"],
            pod["metadata"]["name"],
        )
        await self.pod_control.delete_stateful_pod(sts, pod)
        return True

    async def update_stateful_set_status(self, sts: Obj, status: StatefulSetStatus) -> None:
        complete_rolling_update(sts, status)
        if not inconsistent_status(sts, status):
            return
        to_update = meta.clone(sts)
        for attempt in range(5):
            to_update["status"] = status.to_json((to_update.get("status") or {}).get("conditions"))
            try:
                await self.client.update_status(STATEFUL_SETS, to_update)
                return
            except ClientError as e:
                if not is_conflict(e) or attempt == 4:
                    raise
            md = sts["metadata"]
            to_update = await self.client.get(STATEFUL_SETS, md["name"], namespace=md["namespace"])
