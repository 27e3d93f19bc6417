"""The Deployment controller (``pkg/controller/deployment``): rolls a Deployment's pod template
out through ReplicaSets.

A Deployment owns ReplicaSets named ``<deployment>-<pod-template-hash>``; the hash (of the
template and ``status.collisionCount``) is also a label on the ReplicaSet, its selector and its
template, so that ReplicaSets of different templates never fight over pods. The *new*
ReplicaSet is the one whose template is the Deployment's (hash label aside); every other is
*old*. ``sync(key)`` follows upstream's ``syncDeployment``:

* claim the ReplicaSets (adopt matching orphans, release those that stopped matching);
* a Deployment being deleted only gets its status computed;
* the Progressing condition notes pausing and resuming;
* paused, or a *scaling event* (an active ReplicaSet's ``desired-replicas`` annotation differs
  from ``spec.replicas``): scale, proportionally to each active ReplicaSet's size when several
  run (the leftover going to the largest), clean up history, write status;
* otherwise roll out: **RollingUpdate** grows the new ReplicaSet up to replicas + maxSurge pods
  in all, then shrinks old ones (unhealthy pods first) while at least replicas - maxUnavailable
  stay available; **Recreate** scales every old ReplicaSet to zero, waits until none of their
  pods runs, then scales the new one up;
* the status (observedGeneration, replicas, updatedReplicas, readyReplicas,
  availableReplicas, unavailableReplicas) and its conditions: Available
  (MinimumReplicasAvailable/Unavailable) and Progressing (NewReplicaSetCreated,
  FoundNewReplicaSet, ReplicaSetUpdated, NewReplicaSetAvailable, ProgressDeadlineExceeded),
  re-checked when the progress deadline would pass.

Revisions: the new ReplicaSet carries ``deployment.kubernetes.io/revision`` = 1 + the highest
old revision (a ReplicaSet coming back into use, by ``kubectl rollout undo``, keeps its former
revisions in ``revision-history``), the Deployment the revision of its new ReplicaSet (written
with the status: the status subresource of Deployments takes annotations, as upstream's).
Old ReplicaSets scaled to zero beyond ``revisionHistoryLimit`` are deleted, oldest revision
first. ``kubectl rollout undo`` is client-side (kubectl patches the template back from the old
ReplicaSet), so the controller has no rollback of its own (apps/v1 has no ``rollbackTo``).

Writes use the cached objects' resourceVersions; a stale cache ends a sync with a conflict and
the key is retried, as upstream. Pure helpers are in :mod:`k8py.controllers.deployment_util`.
"""

from __future__ import annotations

import logging
from typing import Any

from k8py.api import meta
from k8py.api.selectors import LabelSelector
from k8py.client import NORMAL, WARNING, ClientError, is_already_exists, is_not_found
from k8py.client.cache import DeletedFinalStateUnknown
from k8py.client.informer import ResourceEventHandlerFuncs
from k8py.client.resources import DEPLOYMENTS, PODS, REPLICA_SETS
from k8py.controllers import deployment_util as du
from k8py.controllers.base import QueueController, key_of, unwrap
from k8py.controllers.controller_utils import (
    CONTROLLER_UID_INDEX,
    ControllerRefManager,
    compute_hash,
    controller_ref,
    controller_uid_index_func,
    error_message,
    orphan_index_key,
    owner_reference,
    pod_phase,
)
from k8py.controllers.manager import ControllerContext

log = logging.getLogger(__name__)

Obj = dict[str, Any]


class DeploymentController(QueueController):
    """``pkg/controller/deployment``; see the module docstring."""

    name = "deployment"
    event_source = "deployment-controller"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(workers=ctx.options.workers(self.name, 5))
        self.client = ctx.client
        self.recorder = ctx.recorder(self.event_source)
        indexers = {CONTROLLER_UID_INDEX: controller_uid_index_func}
        self.d_informer = ctx.informers.informer_for(DEPLOYMENTS)
        self.rs_informer = ctx.informers.informer_for(REPLICA_SETS, indexers=indexers)
        self.pod_informer = ctx.informers.informer_for(PODS, indexers=indexers)
        self.d_informer.add_event_handler(
            ResourceEventHandlerFuncs(
                add_func=lambda d, _initial: self.enqueue(d),
                update_func=lambda _old, cur: self.enqueue(cur),
                delete_func=self.enqueue,
            )
        )
        self.rs_informer.add_event_handler(
            ResourceEventHandlerFuncs(
                add_func=self._add_replica_set,
                update_func=self._update_replica_set,
                delete_func=self._delete_replica_set,
            )
        )
        self.pod_informer.add_event_handler(ResourceEventHandlerFuncs(delete_func=self._delete_pod))
        self.synced = [self.d_informer, self.rs_informer, self.pod_informer]

    # ---- event handlers --------------------------------------------------------------------------

    def _resolve(self, namespace: str, ref: Obj) -> Obj | None:
        if ref.get("kind") != "Deployment":
            return None
        d = self.d_informer.indexer.get_by_key(f"{namespace}/{ref.get('name', '')}")
        if d is None or du.uid_of(d) != ref.get("uid"):
            return None
        return d

    def _deployments_for_replica_set(self, rs: Obj) -> list[Obj]:
        """Deployments whose selectors match an orphan ReplicaSet's labels."""
        labels = rs["metadata"].get("labels") or {}
        out = []
        for d in self.d_informer.indexer.by_index("namespace", rs["metadata"].get("namespace", "")):
            selector = _selector(d)
            if selector is not None and not selector.empty and selector.matches(labels):
                out.append(d)
        if len(out) > 1:
            log.info("more than one deployment selects replica set %s: %s", key_of(rs), [key_of(d) for d in out])
        return out

    def _add_replica_set(self, rs: Obj, _initial: bool) -> None:
        if rs["metadata"].get("deletionTimestamp"):
            self._delete_replica_set(rs)
            return
        ref = controller_ref(rs)
        if ref is not None:
            d = self._resolve(rs["metadata"].get("namespace", ""), ref)
            if d is not None:
                self.enqueue(d)
            return
        for d in self._deployments_for_replica_set(rs):
            self.enqueue(d)

    def _update_replica_set(self, old: Obj, cur: Obj) -> None:
        if old["metadata"].get("resourceVersion") == cur["metadata"].get("resourceVersion"):
            return
        ns = cur["metadata"].get("namespace", "")
        cur_ref, old_ref = controller_ref(cur), controller_ref(old)
        ref_changed = cur_ref != old_ref
        if ref_changed and old_ref is not None:
            d = self._resolve(ns, old_ref)
            if d is not None:
                self.enqueue(d)
        if cur_ref is not None:
            d = self._resolve(ns, cur_ref)
            if d is not None:
                self.enqueue(d)
            return
        if ref_changed or old["metadata"].get("labels") != cur["metadata"].get("labels"):
            for d in self._deployments_for_replica_set(cur):
                self.enqueue(d)

    def _delete_replica_set(self, obj: Obj | DeletedFinalStateUnknown) -> None:
        rs = unwrap(obj)
        ref = controller_ref(rs)
        if ref is None:
            return
        d = self._resolve(rs["metadata"].get("namespace", ""), ref)
        if d is not None:
            self.enqueue(d)

    def _deployment_for_pod(self, pod: Obj) -> Obj | None:
        ref = controller_ref(pod)
        if ref is None or ref.get("kind") != "ReplicaSet":
            return None
        ns = pod["metadata"].get("namespace", "")
        rs = self.rs_informer.indexer.get_by_key(f"{ns}/{ref.get('name', '')}")
        if rs is None or du.uid_of(rs) != ref.get("uid"):
            return None
        rs_ref = controller_ref(rs)
        return self._resolve(ns, rs_ref) if rs_ref is not None else None

    def _delete_pod(self, obj: Obj | DeletedFinalStateUnknown) -> None:
        """A Recreate Deployment waits for its old pods to be gone: sync it when the last one goes."""
        d = self._deployment_for_pod(unwrap(obj))
        if d is None or ((d.get("spec") or {}).get("strategy") or {}).get("type") != "Recreate":
            return
        rs_list = [rs for rs in self.rs_informer.indexer.by_index(CONTROLLER_UID_INDEX, du.uid_of(d))]
        if not any(self._pod_map(d, rs_list).values()):
            self.enqueue(d)

    # ---- reading the caches ----------------------------------------------------------------------

    async def get_replica_sets_for_deployment(self, d: Obj, selector: LabelSelector) -> list[Obj]:
        """The ReplicaSets the Deployment owns, after adopting and releasing (ClaimReplicaSets)."""
        idx = self.rs_informer.indexer
        candidates = idx.by_index(CONTROLLER_UID_INDEX, du.uid_of(d)) + idx.by_index(
            CONTROLLER_UID_INDEX, orphan_index_key(d["metadata"].get("namespace", ""))
        )
        return await ControllerRefManager(self.client, REPLICA_SETS, d, selector).claim(candidates)

    def _pod_map(self, d: Obj, rs_list: list[Obj]) -> dict[str, list[Obj]]:
        """Pods matching the Deployment's selector, by the UID of the ReplicaSet controlling them
        (inactive ones too: Recreate waits for every old pod to be gone)."""
        selector = _selector(d) or LabelSelector.nothing()
        idx = self.pod_informer.indexer
        return {
            du.uid_of(rs): [
                p for p in idx.by_index(CONTROLLER_UID_INDEX, du.uid_of(rs))
                if selector.matches(p["metadata"].get("labels"))
            ]
            for rs in rs_list
        }

    # ---- syncDeployment --------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        cached = self.d_informer.indexer.get_by_key(key)
        if cached is None:
            log.debug("deployment %s has been deleted", key)
            return
        d = meta.clone(cached)  # annotations and status are changed in place, as upstream's DeepCopy
        spec = d.setdefault("spec", {})
        if spec.get("selector") == {}:
            self.recorder.event(
                d, WARNING, "SelectingAll", "This deployment is selecting all pods. A non-empty selector is required."
            )
            if du.status_of(d).get("observedGeneration", 0) < d["metadata"].get("generation", 0):
                d.setdefault("status", {})["observedGeneration"] = d["metadata"]["generation"]
                await self._update_status(d)
            return
        selector = _selector(d)
        if selector is None:
            return  # invalid selector: validation keeps these out
        rs_list = await self.get_replica_sets_for_deployment(d, selector)
        if d["metadata"].get("deletionTimestamp"):
            await self.sync_status_only(d, rs_list)
            return
        await self.check_paused_conditions(d)
        if spec.get("paused"):
            await self.sync_scale(d, rs_list)
            return
        if await self.is_scaling_event(d, rs_list):
            await self.sync_scale(d, rs_list)
            return
        if (spec.get("strategy") or {}).get("type") == "Recreate":
            await self.rollout_recreate(d, rs_list)
        else:
            await self.rollout_rolling(d, rs_list)

    async def _update_status(self, d: Obj) -> Obj:
        """UpdateStatus (the annotations go along); `d` takes the new resourceVersion, so that a
        second write in the same sync does not conflict with the first."""
        updated = await self.client.update_status(DEPLOYMENTS, d)
        d["metadata"]["resourceVersion"] = updated["metadata"]["resourceVersion"]
        return updated

    async def check_paused_conditions(self, d: Obj) -> None:
        """Progressing=Unknown DeploymentPaused/DeploymentResumed, so that time spent paused is
        not taken for lack of progress."""
        if not du.has_progress_deadline(d):
            return
        status = d.setdefault("status", {})
        cond = du.get_condition(status, du.DEPLOYMENT_PROGRESSING)
        if cond is not None and cond.get("reason") == du.TIMED_OUT_REASON:
            return  # lack of progress reported: not overwritten by a pause
        paused = bool(d["spec"].get("paused"))
        paused_cond = cond is not None and cond.get("reason") == du.PAUSED_DEPLOY_REASON
        if paused and not paused_cond:
            new = du.new_condition(du.DEPLOYMENT_PROGRESSING, "Unknown", du.PAUSED_DEPLOY_REASON, "Deployment is paused")
        elif not paused and paused_cond:
            new = du.new_condition(
                du.DEPLOYMENT_PROGRESSING, "Unknown", du.RESUMED_DEPLOY_REASON, "Deployment is resumed"
            )
        else:
            return
        du.set_condition(status, new)
        await self._update_status(d)

    async def is_scaling_event(self, d: Obj, rs_list: list[Obj]) -> bool:
        """An active ReplicaSet whose desired-replicas annotation is not spec.replicas."""
        new_rs, old_rss = await self.get_all_replica_sets_and_sync_revision(d, rs_list, create=False)
        for rs in du.filter_active([*old_rss, new_rs]):
            desired = du.desired_replicas_annotation(rs)
            if desired is not None and desired != du.spec_replicas(d):
                return True
        return False

    # ---- sync.go ---------------------------------------------------------------------------------

    async def sync_status_only(self, d: Obj, rs_list: list[Obj]) -> None:
        new_rs, old_rss = await self.get_all_replica_sets_and_sync_revision(d, rs_list, create=False)
        await self.sync_deployment_status([*old_rss, new_rs], new_rs, d)

    async def sync_scale(self, d: Obj, rs_list: list[Obj]) -> None:
        """Upstream's ``dc.sync``: reconcile a paused Deployment or a scaling event."""
        new_rs, old_rss = await self.get_all_replica_sets_and_sync_revision(d, rs_list, create=False)
        await self.scale(d, new_rs, old_rss)
        if d["spec"].get("paused"):
            await self.cleanup_deployment(old_rss, d)
        await self.sync_deployment_status([*old_rss, new_rs], new_rs, d)

    async def get_all_replica_sets_and_sync_revision(
        self, d: Obj, rs_list: list[Obj], *, create: bool
    ) -> tuple[Obj | None, list[Obj]]:
        """(the new ReplicaSet, created if asked and missing, with its revision synced; the old ones)."""
        new_rs = du.find_new_replica_set(d, rs_list)
        _, all_old = du.find_old_replica_sets(d, rs_list, new_rs)
        return await self.get_new_replica_set(d, rs_list, all_old, new_rs, create=create), all_old

    async def get_new_replica_set(
        self, d: Obj, rs_list: list[Obj], old_rss: list[Obj], existing: Obj | None, *, create: bool
    ) -> Obj | None:
        """getNewReplicaSet; see the module docstring for revisions."""
        new_revision = str(du.max_revision(old_rss) + 1)
        status = d.setdefault("status", {})
        spec = d["spec"]
        if existing is not None:
            rs_copy = meta.clone(existing)
            annotations_updated = du.set_new_replica_set_annotations(d, rs_copy, new_revision, True)
            min_ready = spec.get("minReadySeconds") or 0
            if annotations_updated or (rs_copy["spec"].get("minReadySeconds") or 0) != min_ready:
                rs_copy["spec"]["minReadySeconds"] = min_ready
                return await self.client.update(REPLICA_SETS, rs_copy)
            needs_update = du.set_deployment_revision(d, du.annotations_of(rs_copy).get(du.REVISION_ANNOTATION, ""))
            if du.has_progress_deadline(d) and du.get_condition(status, du.DEPLOYMENT_PROGRESSING) is None:
                msg = f'Found new replica set "{rs_copy["metadata"]["name"]}"'
                du.set_condition(status, du.new_condition(du.DEPLOYMENT_PROGRESSING, "True", du.FOUND_NEW_RS_REASON, msg))
                needs_update = True
            if needs_update:
                await self._update_status(d)
            return rs_copy
        if not create:
            return None

        template = meta.clone(spec.get("template") or {})
        pod_template_hash = compute_hash(template, status.get("collisionCount"))
        template.setdefault("metadata", {})["labels"] = du.clone_and_add_label(
            template["metadata"].get("labels"), du.DEFAULT_DEPLOYMENT_UNIQUE_LABEL_KEY, pod_template_hash
        )
        name = f"{d['metadata']['name']}-{pod_template_hash}"
        new_rs: Obj = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": name,
                "namespace": d["metadata"]["namespace"],
                "ownerReferences": [owner_reference(d)],
                "labels": dict(template["metadata"]["labels"]),
            },
            "spec": {
                "replicas": 0,
                "minReadySeconds": spec.get("minReadySeconds") or 0,
                "selector": du.clone_selector_and_add_label(
                    spec.get("selector"), du.DEFAULT_DEPLOYMENT_UNIQUE_LABEL_KEY, pod_template_hash
                ),
                "template": template,
            },
        }
        new_replicas = du.new_rs_new_replicas(d, [*old_rss, new_rs], new_rs)
        new_rs["spec"]["replicas"] = new_replicas
        du.set_new_replica_set_annotations(d, new_rs, new_revision, False)
        already_exists = False
        try:
            created = await self.client.create(REPLICA_SETS, new_rs)
        except ClientError as e:
            if is_already_exists(e):
                rs = self.rs_informer.indexer.get_by_key(f"{d['metadata']['namespace']}/{name}")
                if rs is None:
                    raise
                ref = controller_ref(rs)
                if (
                    ref is not None
                    and ref.get("uid") == du.uid_of(d)
                    and du.equal_ignore_hash(spec.get("template"), (rs.get("spec") or {}).get("template"))
                ):
                    created, already_exists = rs, True
                else:
                    # a hash collision: bump collisionCount, and the next sync hashes differently
                    status["collisionCount"] = (status.get("collisionCount") or 0) + 1
                    try:
                        await self._update_status(d)
                        log.info("deployment %s: hash collision on %s, collisionCount now %d",
                                 key_of(d), name, status["collisionCount"])
                    except ClientError:
                        pass
                    raise
            elif getattr(e, "reason", "") == "Forbidden" and "being terminated" in str(e):
                raise
            else:
                msg = f'Failed to create new replica set "{name}": {error_message(e)}'
                if du.has_progress_deadline(d):
                    du.set_condition(
                        status, du.new_condition(du.DEPLOYMENT_PROGRESSING, "False", du.FAILED_RS_CREATE_REASON, msg)
                    )
                    try:
                        await self._update_status(d)
                    except ClientError:
                        pass
                self.recorder.event(d, WARNING, du.FAILED_RS_CREATE_REASON, msg)
                raise
        if not already_exists and new_replicas > 0:
            self.recorder.event(
                d, NORMAL, "ScalingReplicaSet", f"Scaled up replica set {name} from 0 to {new_replicas}"
            )
        needs_update = du.set_deployment_revision(d, new_revision)
        if not already_exists and du.has_progress_deadline(d):
            msg = f'Created new replica set "{name}"'
            du.set_condition(
                status, du.new_condition(du.DEPLOYMENT_PROGRESSING, "True", du.NEW_RS_NEW_REPLICAS_REASON, msg)
            )
            needs_update = True
        if needs_update:
            await self._update_status(d)
        return created

    async def scale(self, d: Obj, new_rs: Obj | None, old_rss: list[Obj]) -> None:
        """Scale the active ReplicaSets to spec.replicas (+ maxSurge), proportionally."""
        replicas = du.spec_replicas(d)
        active_or_latest = du.find_active_or_latest(new_rs, old_rss)
        if active_or_latest is not None:
            if du.spec_replicas(active_or_latest) != replicas:
                await self.scale_replica_set_and_record_event(active_or_latest, replicas, d)
            return
        if du.is_saturated(d, new_rs):
            for old in du.filter_active(old_rss):
                await self.scale_replica_set_and_record_event(old, 0, d)
            return
        if not du.is_rolling_update(d):
            return
        all_rss = du.filter_active([*old_rss, new_rs])
        all_replicas = du.replica_count(all_rss)
        allowed = replicas + du.max_surge(d) if replicas > 0 else 0
        to_add = allowed - all_replicas
        if to_add > 0:
            all_rss = du.by_size_newer(all_rss)
        elif to_add < 0:
            all_rss = du.by_size_older(all_rss)
        added = 0
        sizes: dict[str, int] = {}
        for rs in all_rss:
            name = rs["metadata"]["name"]
            if to_add != 0:
                p = du.proportion(rs, d, to_add, added)
                sizes[name] = du.spec_replicas(rs) + p
                added += p
            else:
                sizes[name] = du.spec_replicas(rs)
        if to_add != added and all_rss:
            # the leftover (rounding) goes to the largest ReplicaSet
            name = all_rss[0]["metadata"]["name"]
            sizes[name] = max(sizes[name] + to_add - added, 0)
        for rs in all_rss:
            await self.scale_replica_set(rs, sizes[rs["metadata"]["name"]], d)

    async def scale_replica_set_and_record_event(self, rs: Obj, new_scale: int, d: Obj) -> tuple[bool, Obj]:
        if du.spec_replicas(rs) == new_scale:
            return False, rs
        return await self.scale_replica_set(rs, new_scale, d)

    async def scale_replica_set(self, rs: Obj, new_scale: int, d: Obj) -> tuple[bool, Obj]:
        """Set the ReplicaSet's replicas and its desired/max-replicas annotations."""
        size_needs_update = du.spec_replicas(rs) != new_scale
        desired = du.spec_replicas(d)
        max_replicas = desired + du.max_surge(d)
        if not size_needs_update and not du.replicas_annotations_need_update(rs, desired, max_replicas):
            return False, rs
        old_scale = du.spec_replicas(rs)
        rs_copy = meta.clone(rs)
        rs_copy["spec"]["replicas"] = new_scale
        du.set_replicas_annotations(rs_copy, desired, max_replicas)
        updated = await self.client.update(REPLICA_SETS, rs_copy)
        if size_needs_update:
            op = "up" if old_scale < new_scale else "down"
            self.recorder.event(
                d,
                NORMAL,
                "ScalingReplicaSet",
                f"Scaled {op} replica set {updated['metadata']['name']} from {old_scale} to {new_scale}",
            )
        return size_needs_update, updated

    async def cleanup_deployment(self, old_rss: list[Obj], d: Obj) -> None:
        """Delete old ReplicaSets beyond revisionHistoryLimit (empty ones only, lowest revision first)."""
        if not du.has_revision_history_limit(d):
            return
        alive = [rs for rs in old_rss if not rs["metadata"].get("deletionTimestamp")]
        diff = len(alive) - int(d["spec"]["revisionHistoryLimit"])
        if diff <= 0:
            return
        for rs in du.by_revision(alive)[:diff]:
            md = rs["metadata"]
            if (
                du.status_of(rs).get("replicas", 0) != 0
                or du.spec_replicas(rs) != 0
                or md.get("generation", 0) > du.status_of(rs).get("observedGeneration", 0)
                or md.get("deletionTimestamp")
            ):
                continue
            log.debug("deployment %s: deleting old replica set %s", key_of(d), md["name"])
            try:
                await self.client.delete(REPLICA_SETS, md["name"], namespace=md["namespace"],
                                         preconditions={"uid": md["uid"]})
            except ClientError as e:
                if not is_not_found(e):
                    raise

    async def sync_deployment_status(self, all_rss: list[Obj | None], new_rs: Obj | None, d: Obj) -> None:
        new_status = self.calculate_status(all_rss, new_rs, d)
        if _normalized(du.status_of(d)) == new_status:
            return
        d["status"] = new_status
        await self._update_status(d)

    def calculate_status(self, all_rss: list[Obj | None], new_rs: Obj | None, d: Obj) -> Obj:
        available = du.available_replica_count(all_rss)
        total = du.replica_count(all_rss)
        old = du.status_of(d)
        status: Obj = {
            "observedGeneration": d["metadata"].get("generation", 0),
            "replicas": du.actual_replica_count(all_rss),
            "updatedReplicas": du.actual_replica_count([new_rs]),
            "readyReplicas": du.ready_replica_count(all_rss),
            "availableReplicas": available,
            "unavailableReplicas": max(total - available, 0),
        }
        if old.get("collisionCount") is not None:
            status["collisionCount"] = old["collisionCount"]
        status["conditions"] = [dict(c) for c in old.get("conditions") or ()]
        if available >= du.spec_replicas(d) - du.max_unavailable(d):
            cond = du.new_condition(
                du.DEPLOYMENT_AVAILABLE, "True", du.MINIMUM_REPLICAS_AVAILABLE, "Deployment has minimum availability."
            )
        else:
            cond = du.new_condition(
                du.DEPLOYMENT_AVAILABLE,
                "False",
                du.MINIMUM_REPLICAS_UNAVAILABLE,
                "Deployment does not have minimum availability.",
            )
        du.set_condition(status, cond)
        return _normalized(status)

    # ---- progress.go -----------------------------------------------------------------------------

    async def sync_rollout_status(self, all_rss: list[Obj | None], new_rs: Obj | None, d: Obj) -> None:
        new_status = self.calculate_status(all_rss, new_rs, d)
        if not du.has_progress_deadline(d):
            du.remove_condition(new_status, du.DEPLOYMENT_PROGRESSING)
        current = du.get_condition(du.status_of(d), du.DEPLOYMENT_PROGRESSING)
        complete = (
            new_status.get("replicas", 0) == new_status.get("updatedReplicas", 0)
            and current is not None
            and current.get("reason") == du.NEW_RS_AVAILABLE_REASON
        )
        if du.has_progress_deadline(d) and not complete:
            d_name = d["metadata"]["name"]
            what = f'ReplicaSet "{new_rs["metadata"]["name"]}"' if new_rs is not None else f'Deployment "{d_name}"'
            if du.deployment_complete(d, new_status):
                du.set_condition(
                    new_status,
                    du.new_condition(
                        du.DEPLOYMENT_PROGRESSING, "True", du.NEW_RS_AVAILABLE_REASON, f"{what} has successfully progressed."
                    ),
                )
            elif du.deployment_progressing(d, new_status):
                cond = du.new_condition(
                    du.DEPLOYMENT_PROGRESSING, "True", du.REPLICA_SET_UPDATED_REASON, f"{what} is progressing."
                )
                # the same reason again, only lastUpdateTime moves: replace the condition
                if current is not None:
                    if current.get("status") == "True":
                        cond["lastTransitionTime"] = current.get("lastTransitionTime")
                    du.remove_condition(new_status, du.DEPLOYMENT_PROGRESSING)
                du.set_condition(new_status, cond)
            elif du.deployment_timed_out(d, new_status):
                du.set_condition(
                    new_status,
                    du.new_condition(
                        du.DEPLOYMENT_PROGRESSING, "False", du.TIMED_OUT_REASON, f"{what} has timed out progressing."
                    ),
                )
        failures = self._replica_failures(all_rss, new_rs)
        if failures:
            du.set_condition(new_status, failures[0])
        else:
            du.remove_condition(new_status, du.DEPLOYMENT_REPLICA_FAILURE)
        new_status = _normalized(new_status)
        if _normalized(du.status_of(d)) == new_status:
            self.requeue_stuck_deployment(d, new_status)
            return
        d["status"] = new_status
        await self._update_status(d)

    @staticmethod
    def _replica_failures(all_rss: list[Obj | None], new_rs: Obj | None) -> list[Obj]:
        """The ReplicaFailure conditions of the new ReplicaSet, else of any."""
        for group in ([new_rs], all_rss):
            found = [
                du.rs_condition_to_deployment_condition(c)
                for rs in group
                if rs is not None
                for c in du.status_of(rs).get("conditions") or ()
                if c.get("type") == du.DEPLOYMENT_REPLICA_FAILURE
            ]
            if found:
                return found
        return []

    def requeue_stuck_deployment(self, d: Obj, new_status: Obj) -> float:
        """Come back when the progress deadline passes (nothing else would wake us)."""
        current = du.get_condition(du.status_of(d), du.DEPLOYMENT_PROGRESSING)
        if not du.has_progress_deadline(d) or current is None:
            return -1
        if du.deployment_complete(d, new_status) or current.get("reason") == du.TIMED_OUT_REASON:
            return -1
        since = current.get("lastUpdateTime")
        if not since:
            return -1
        after = (
            meta.parse_time(since).timestamp() + d["spec"]["progressDeadlineSeconds"] - du.utcnow().timestamp()
        )
        key = key_of(d)
        if after < 1:
            self.queue.add_rate_limited(key)
            return 0
        self.enqueue_after(key, after + 1)
        return after

    # ---- rolling.go ------------------------------------------------------------------------------

    async def rollout_rolling(self, d: Obj, rs_list: list[Obj]) -> None:
        new_rs, old_rss = await self.get_all_replica_sets_and_sync_revision(d, rs_list, create=True)
        assert new_rs is not None
        all_rss: list[Obj | None] = [*old_rss, new_rs]
        scaled_up, new_rs = await self.reconcile_new_replica_set(all_rss, new_rs, d)
        all_rss = [*old_rss, new_rs]
        if scaled_up:
            await self.sync_rollout_status(all_rss, new_rs, d)
            return
        scaled_down = await self.reconcile_old_replica_sets(
            [*old_rss, new_rs], du.filter_active(old_rss), new_rs, d
        )
        if scaled_down:
            await self.sync_rollout_status(all_rss, new_rs, d)
            return
        if du.deployment_complete(d, du.status_of(d)):
            await self.cleanup_deployment(old_rss, d)
        await self.sync_rollout_status(all_rss, new_rs, d)

    async def reconcile_new_replica_set(self, all_rss: list[Obj | None], new_rs: Obj, d: Obj) -> tuple[bool, Obj]:
        replicas = du.spec_replicas(d)
        if du.spec_replicas(new_rs) == replicas:
            return False, new_rs
        if du.spec_replicas(new_rs) > replicas:
            return await self.scale_replica_set_and_record_event(new_rs, replicas, d)
        count = du.new_rs_new_replicas(d, [rs for rs in all_rss if rs is not None], new_rs)
        return await self.scale_replica_set_and_record_event(new_rs, count, d)

    async def reconcile_old_replica_sets(
        self, all_rss: list[Obj], old_rss: list[Obj], new_rs: Obj, d: Obj
    ) -> bool:
        old_pods = du.replica_count(old_rss)
        if old_pods == 0:
            return False
        all_pods = du.replica_count(all_rss)
        min_available = du.spec_replicas(d) - du.max_unavailable(d)
        new_unavailable = du.spec_replicas(new_rs) - du.status_of(new_rs).get("availableReplicas", 0)
        max_scaled_down = all_pods - min_available - new_unavailable
        if max_scaled_down <= 0:
            return False
        # Clean up unhealthy replicas first: they cost no availability.
        old_rss, cleaned = await self.cleanup_unhealthy_replicas(old_rss, d, max_scaled_down)
        scaled = await self.scale_down_old_replica_sets_for_rolling_update([*old_rss, new_rs], old_rss, d)
        return cleaned + scaled > 0

    async def cleanup_unhealthy_replicas(self, old_rss: list[Obj], d: Obj, max_cleanup: int) -> tuple[list[Obj], int]:
        old_rss = du.by_creation(old_rss)
        total = 0
        for i, rs in enumerate(old_rss):
            if total >= max_cleanup:
                break
            replicas = du.spec_replicas(rs)
            available = du.status_of(rs).get("availableReplicas", 0)
            if replicas == 0 or replicas == available:
                continue
            count = min(max_cleanup - total, replicas - available)
            new_count = replicas - count
            if new_count > replicas:
                raise RuntimeError(f"when cleaning up unhealthy replicas, got invalid request to scale down "
                                   f"{rs['metadata']['namespace']}/{rs['metadata']['name']} {replicas} -> {new_count}")
            _, old_rss[i] = await self.scale_replica_set_and_record_event(rs, new_count, d)
            total += count
        return old_rss, total

    async def scale_down_old_replica_sets_for_rolling_update(
        self, all_rss: list[Obj], old_rss: list[Obj], d: Obj
    ) -> int:
        min_available = du.spec_replicas(d) - du.max_unavailable(d)
        available = du.available_replica_count(all_rss)
        if available <= min_available:
            return 0
        to_scale_down = available - min_available
        total = 0
        for rs in du.by_creation(old_rss):
            if total >= to_scale_down:
                break
            replicas = du.spec_replicas(rs)
            if replicas == 0:
                continue
            count = min(replicas, to_scale_down - total)
            await self.scale_replica_set_and_record_event(rs, replicas - count, d)
            total += count
        return total

    # ---- recreate.go -----------------------------------------------------------------------------

    async def rollout_recreate(self, d: Obj, rs_list: list[Obj]) -> None:
        new_rs, old_rss = await self.get_all_replica_sets_and_sync_revision(d, rs_list, create=False)
        all_rss: list[Obj | None] = [*old_rss, new_rs]
        active_old = du.filter_active(old_rss)
        scaled_down = False
        for rs in active_old:
            scaled, _ = await self.scale_replica_set_and_record_event(rs, 0, d)
            scaled_down = scaled_down or scaled
        if scaled_down:
            await self.sync_rollout_status(all_rss, new_rs, d)
            return
        if self._old_pods_running(new_rs, old_rss, self._pod_map(d, rs_list)):
            await self.sync_rollout_status(all_rss, new_rs, d)
            return
        if new_rs is None:
            new_rs, old_rss = await self.get_all_replica_sets_and_sync_revision(d, rs_list, create=True)
            all_rss = [*old_rss, new_rs]
        assert new_rs is not None
        _, new_rs = await self.scale_replica_set_and_record_event(new_rs, du.spec_replicas(d), d)
        all_rss = [*old_rss, new_rs]
        if du.deployment_complete(d, du.status_of(d)):
            await self.cleanup_deployment(old_rss, d)
        await self.sync_rollout_status(all_rss, new_rs, d)

    @staticmethod
    def _old_pods_running(new_rs: Obj | None, old_rss: list[Obj], pod_map: dict[str, list[Obj]]) -> bool:
        if du.actual_replica_count(old_rss) > 0:
            return True
        new_uid = du.uid_of(new_rs) if new_rs is not None else None
        for rs_uid, pods in pod_map.items():
            if rs_uid == new_uid:
                continue
            for pod in pods:
                if pod_phase(pod) not in ("Failed", "Succeeded"):
                    return True
        return False


def _selector(d: Obj) -> LabelSelector | None:
    try:
        return LabelSelector.from_label_selector((d.get("spec") or {}).get("selector"))
    except Exception:
        return None


_STATUS_INTS = (
    "observedGeneration",
    "replicas",
    "updatedReplicas",
    "readyReplicas",
    "availableReplicas",
    "unavailableReplicas",
)


def _normalized(status: Obj) -> Obj:
    """A DeploymentStatus as Go writes it (omitempty): zero counts and empty conditions dropped."""
    out = {k: v for k, v in status.items() if not (k in _STATUS_INTS and not v)}
    if not out.get("conditions"):
        out.pop("conditions", None)
    return out
