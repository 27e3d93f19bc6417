"""The Job controller (``pkg/controller/job``): runs a Job's pods to completion.

Informers on Jobs and Pods feed one queue of Job keys; ``sync(key)`` reads the caches and
reconciles, as kube 1.32 does with its default feature gates (JobPodReplacementPolicy,
JobManagedBy, JobBackoffLimitPerIndex, JobSuccessPolicy, PodIndexLabel on):

* **Pods**: at most ``parallelism`` active, no more than the completions still needed; created
  from the template in slow-start batches (1, 2, 4, ...) with the ``batch.kubernetes.io/job-tracking``
  finalizer and an ownerReference; excess pods deleted (pending and not-ready ones first).
  ``ControllerExpectations`` keep a sync from acting on caches that have not yet seen its own
  creations and deletions. Replacements of failed pods wait an exponential backoff (10 s
  doubling, capped at 10 minutes) counted from the last failure since the last success.
* **Accounting**: a finished pod keeps its finalizer until its UID is written to
  ``status.uncountedTerminatedPods``; only then is the finalizer removed, and once removed the
  UID moves into ``succeeded``/``failed``. A restart between any two of those writes neither loses
  nor double-counts a pod (upstream's job tracking with finalizers). Pods the controller no
  longer owns (orphans, pods of deleted or finished Jobs) lose the finalizer through a second
  queue (``orphan_queue``).
* **Indexed** Jobs: each pod carries its index as the ``batch.kubernetes.io/job-completion-index``
  annotation and label, a ``JOB_COMPLETION_INDEX`` env var (from that label), hostname
  ``<job>-<index>``; ``status.completedIndexes`` holds the succeeded indexes as intervals.
  ``backoffLimitPerIndex`` counts failures per index (``job-index-failure-count`` annotations,
  a failed pod's finalizer kept until its replacement carries the count), ``status.failedIndexes``
  and ``maxFailedIndexes``.
* **Termination**: ``backoffLimit`` (BackoffLimitExceeded), ``activeDeadlineSeconds``
  (DeadlineExceeded, requeued for the deadline), ``podFailurePolicy`` (FailJob, FailIndex, Ignore,
  Count on exit codes and pod conditions), ``successPolicy``; the interim ``FailureTarget`` /
  ``SuccessCriteriaMet`` condition is written first, active pods are deleted, and ``Failed`` /
  ``Complete`` (with ``completionTime``) follow once no pod is terminating or uncounted.
* ``suspend`` deletes the active pods (Suspended condition, JobSuspended/JobResumed; resuming
  resets ``startTime``). ``status.active/ready/terminating/startTime`` are kept current; events
  as upstream (SuccessfulCreate, SuccessfulDelete, Completed, BackoffLimitExceeded, ...).

Syncs caused by pod events are batched (1 s, ``syncJobBatchPeriod``); Job events sync at once.
Status is written with ``update_status`` (a resourceVersion precondition), so a stale cache
costs a conflict and a retry, never a lost update. Deviation: while waiting out a backoff,
``status.active`` keeps counting the active pods (upstream reports 0 for that sync).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from k8py.api import meta
from k8py.api.selectors import LabelSelector
from k8py.client import NORMAL, WARNING, ClientError, PatchType, is_not_found
from k8py.client.cache import DeletedFinalStateUnknown
from k8py.client.informer import ResourceEventHandlerFuncs, wait_for_cache_sync
from k8py.client.resources import JOBS, PODS
from k8py.client.workqueue import ItemExponentialFailureRateLimiter, RateLimitingQueue, ShutDown
from k8py.controllers.base import QueueController, key_of, unwrap
from k8py.controllers.controller_utils import (
    CONTROLLER_UID_INDEX,
    ControllerRefManager,
    PodControl,
    controller_ref,
    controller_uid_index_func,
    generate_name_prefix,
    is_pod_active,
    is_pod_ready,
    is_pod_terminating,
    orphan_index_key,
    owner_reference,
    pod_from_template,
    pod_phase,
)
from k8py.controllers.expectations import ControllerExpectations
from k8py.controllers.jobutil import (
    COMPLETE,
    COMPLETION_INDEX_ENV,
    FAILED,
    FAILURE_TARGET,
    JOB_COMPLETION_INDEX,
    JOB_CONTROLLER_NAME,
    JOB_INDEX_FAILURE_COUNT,
    JOB_INDEX_IGNORED_FAILURE_COUNT,
    JOB_TRACKING_FINALIZER,
    MAX_POD_FAILURE_BACKOFF,
    POD_FAILURE_BACKOFF,
    REASON_BACKOFF_LIMIT_EXCEEDED,
    REASON_COMPLETIONS_REACHED,
    REASON_DEADLINE_EXCEEDED,
    REASON_FAILED_INDEXES,
    REASON_MAX_FAILED_INDEXES_EXCEEDED,
    REASON_POD_FAILURE_POLICY,
    REASON_SUCCESS_POLICY,
    SUCCESS_CRITERIA_MET,
    SUSPENDED,
    UNKNOWN_INDEX,
    BackoffRecord,
    BackoffStore,
    Interval,
    active_pods_order,
    completion_index,
    ensure_condition,
    find_condition,
    finished_time,
    has_backoff_limit_per_index,
    has_tracking_finalizer,
    index_absolute_failure_count,
    intervals_has,
    intervals_str,
    intervals_total,
    is_index_failed,
    is_indexed,
    is_job_finished,
    is_pod_failed,
    is_suspended,
    match_pod_failure_policy,
    match_success_policy,
    merge_intervals,
    new_condition,
    new_index_failure_counts,
    now_utc,
    only_replace_failed_pods,
    parse_indexes,
    parse_time,
    remaining_backoff,
    with_ordered_indexes,
)

log = logging.getLogger(__name__)

Obj = dict[str, Any]

SYNC_JOB_BATCH_PERIOD = 1.0
MAX_UNCOUNTED_PODS = 500
MAX_POD_CREATE_DELETE_PER_SYNC = 500
SLOW_START_INITIAL_BATCH_SIZE = 1


@dataclass
class _SyncCtx:
    """What one sync learns about a Job (upstream's syncJobCtx)."""

    job: Obj
    pods: list[Obj]
    active_pods: list[Obj]
    ready: int
    uncounted_succeeded: set[str]
    uncounted_failed: set[str]
    expected_rm_finalizers: set[str]
    terminating: int = 0
    succeeded: int = 0
    failed: int = 0
    finished: Obj | None = None
    prev_succeeded_indexes: list[Interval] = field(default_factory=list)
    succeeded_indexes: list[Interval] = field(default_factory=list)
    failed_indexes: list[Interval] | None = None
    new_backoff: BackoffRecord | None = None
    delayed_deletion: dict[int, Obj] = field(default_factory=dict)


class _JobPodRefManager(ControllerRefManager):
    """Adopting a pod also adds the tracking finalizer (upstream's PodControllerRefManager with
    the Job's finalizers)."""

    async def _adopt(self, obj: Obj) -> Obj | None:
        md: Obj = {"ownerReferences": [owner_reference(self.owner)], "uid": obj["metadata"]["uid"]}
        if JOB_TRACKING_FINALIZER not in (obj["metadata"].get("finalizers") or ()):
            md["finalizers"] = [JOB_TRACKING_FINALIZER]
        try:
            return await self.client.patch(
                self.resource,
                obj["metadata"]["name"],
                {"metadata": md},
                namespace=obj["metadata"].get("namespace"),
                patch_type=PatchType.STRATEGIC,
            )
        except ClientError as e:
            if is_not_found(e):
                return None
            raise


class JobController(QueueController):
    name = "job"

    def __init__(self, ctx: Any) -> None:
        super().__init__(workers=ctx.options.workers("job", 5))
        # upstream's Job queue retries from 1 s up to 1 minute
        self.queue = RateLimitingQueue(ItemExponentialFailureRateLimiter(1.0, 60.0), name="job")
        self.orphan_queue: RateLimitingQueue[str] = RateLimitingQueue(
            ItemExponentialFailureRateLimiter(1.0, 60.0), name="job_orphan_pod"
        )
        self.client = ctx.client
        self.recorder = ctx.recorder("job-controller")
        self.pod_control = PodControl(ctx.client, self.recorder)
        self.expectations = ControllerExpectations()
        self.finalizer_expectations: dict[str, set[str]] = {}  # job key -> pod UIDs
        self.backoff = BackoffStore()
        self.now: Callable[[], dt.datetime] = now_utc
        self.jobs = ctx.informers.informer_for(JOBS)
        self.pods = ctx.informers.informer_for(
            PODS, indexers={CONTROLLER_UID_INDEX: controller_uid_index_func}
        )
        self.jobs.add_event_handler(
            ResourceEventHandlerFuncs(
                add_func=lambda j, _i: self._add_job(j),
                update_func=self._update_job,
                delete_func=self._delete_job,
            )
        )
        self.pods.add_event_handler(
            ResourceEventHandlerFuncs(
                add_func=lambda p, _i: self._add_pod(p),
                update_func=self._update_pod,
                delete_func=lambda p: self._delete_pod(p, final=True),
            )
        )
        self.synced = [self.jobs, self.pods]

    # -- running ---------------------------------------------------------------------------------

    async def run(self) -> None:
        orphans = asyncio.create_task(self._orphan_worker(), name="job-orphan-worker")
        try:
            await super().run()
        finally:
            self.orphan_queue.shut_down()
            orphans.cancel()
            await asyncio.gather(orphans, return_exceptions=True)

    async def _orphan_worker(self) -> None:
        await wait_for_cache_sync(*self.synced)
        while True:
            try:
                key = await self.orphan_queue.get()
            except ShutDown:
                return
            try:
                await self._sync_orphan_pod(key)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.info("job: orphan pod %s: %s (will retry)", key, e)
                self.orphan_queue.add_rate_limited(key)
            else:
                self.orphan_queue.forget(key)
            finally:
                self.orphan_queue.done(key)

    # -- event handlers --------------------------------------------------------------------------

    def _resolve(self, namespace: str, ref: Obj) -> Obj | None:
        if ref.get("kind") != "Job":
            return None
        job = self.jobs.indexer.get_by_key(f"{namespace}/{ref.get('name')}")
        if job is None or job["metadata"].get("uid") != ref.get("uid"):
            return None
        return job

    def _pod_jobs(self, pod: Obj) -> list[Obj]:
        """Jobs whose selector matches an orphan pod (candidates to adopt it)."""
        labels = pod["metadata"].get("labels") or {}
        found = []
        for job in self.jobs.indexer.by_index("namespace", pod["metadata"].get("namespace", "")):
            try:
                selector = LabelSelector.from_label_selector((job.get("spec") or {}).get("selector"))
            except ValueError:
                continue
            if not selector.empty and selector.matches(labels):
                found.append(job)
        return found

    def _enqueue_batched(self, job: Obj) -> None:
        self.queue.add_after(key_of(job), SYNC_JOB_BATCH_PERIOD)

    def _enqueue_orphan(self, pod: Obj) -> None:
        self.orphan_queue.add(key_of(pod))

    def _add_pod(self, pod: Obj) -> None:
        if pod["metadata"].get("deletionTimestamp"):
            # a restarted controller may see a pod already being deleted: not a creation
            self._delete_pod(pod, final=False)
            return
        ref = controller_ref(pod)
        if ref is not None:
            job = self._resolve(pod["metadata"].get("namespace", ""), ref)
            if job is None:
                return
            self.expectations.creation_observed(key_of(job))
            self._enqueue_batched(job)
            return
        if has_tracking_finalizer(pod):
            self._enqueue_orphan(pod)
        for job in self._pod_jobs(pod):
            self._enqueue_batched(job)

    def _update_pod(self, old: Obj, cur: Obj) -> None:
        if old["metadata"].get("resourceVersion") == cur["metadata"].get("resourceVersion"):
            return
        if cur["metadata"].get("deletionTimestamp"):
            self._delete_pod(cur, final=False)
            return
        ns = cur["metadata"].get("namespace", "")
        uid = cur["metadata"].get("uid", "")
        finalizer_removed = not has_tracking_finalizer(cur)
        cur_ref, old_ref = controller_ref(cur), controller_ref(old)
        ref_changed = cur_ref != old_ref
        if ref_changed and old_ref is not None:
            job = self._resolve(ns, old_ref)
            if job is not None:
                if finalizer_removed:
                    self._finalizer_removal_observed(key_of(job), uid)
                self._enqueue_batched(job)
        if cur_ref is not None:
            job = self._resolve(ns, cur_ref)
            if job is None:
                return
            if finalizer_removed:
                self._finalizer_removal_observed(key_of(job), uid)
            self._enqueue_batched(job)
            return
        if has_tracking_finalizer(cur):
            self._enqueue_orphan(cur)
        if ref_changed or (cur["metadata"].get("labels") or {}) != (old["metadata"].get("labels") or {}):
            for job in self._pod_jobs(cur):
                self._enqueue_batched(job)

    def _delete_pod(self, obj: Obj | DeletedFinalStateUnknown, *, final: bool) -> None:
        pod = unwrap(obj)
        ref = controller_ref(pod)
        has_finalizer = has_tracking_finalizer(pod)
        if ref is None:
            # the garbage collector may have removed the reference of a Job's pod
            if has_finalizer:
                self._enqueue_orphan(pod)
            return
        job = self._resolve(pod["metadata"].get("namespace", ""), ref)
        if job is None or is_job_finished(job):
            if has_finalizer:  # syncJob will not remove it
                self._enqueue_orphan(pod)
            return
        key = key_of(job)
        self.expectations.deletion_observed(key)
        if final or not has_finalizer:
            self._finalizer_removal_observed(key, pod["metadata"].get("uid", ""))
        self._enqueue_batched(job)

    def _add_job(self, job: Obj) -> None:
        self.enqueue(job)

    def _update_job(self, old: Obj, cur: Obj) -> None:
        key = key_of(cur)
        if cur["metadata"].get("generation") == old["metadata"].get("generation"):
            self._enqueue_batched(cur)  # a status update, usually caused by pod events
        else:
            self.queue.add(key)
        if is_job_finished(cur):
            self._cleanup_pod_finalizers(cur)  # a backup: finished Jobs should have none left
        start = parse_time((cur.get("status") or {}).get("startTime"))
        ads = (cur.get("spec") or {}).get("activeDeadlineSeconds")
        if (
            start is not None
            and ads is not None
            and ads != (old.get("spec") or {}).get("activeDeadlineSeconds")
        ):
            passed = (self.now() - start).total_seconds()
            self.queue.add_after(key, ads - passed)

    def _delete_job(self, obj: Obj | DeletedFinalStateUnknown) -> None:
        self.queue.add(key_of(obj))
        self._cleanup_pod_finalizers(unwrap(obj))

    def _cleanup_pod_finalizers(self, job: Obj) -> None:
        uid = job["metadata"].get("uid", "")
        for pod in self.pods.indexer.by_index(CONTROLLER_UID_INDEX, uid):
            if has_tracking_finalizer(pod):
                self._enqueue_orphan(pod)

    def _finalizer_removal_observed(self, key: str, uid: str) -> None:
        uids = self.finalizer_expectations.get(key)
        if uids is not None:
            uids.discard(uid)

    # -- orphan pods ------------------------------------------------------------------------------

    async def _sync_orphan_pod(self, key: str) -> None:
        """Remove the tracking finalizer of a pod no unfinished Job of ours owns."""
        pod = self.pods.indexer.get_by_key(key)
        if pod is None:
            return
        ref = controller_ref(pod)
        if ref is not None:
            if ref.get("kind") != "Job" or ref.get("apiVersion") != "batch/v1":
                return  # not ours to clean
            job = self._resolve(pod["metadata"].get("namespace", ""), ref)
            if job is not None and _managed_externally(job):
                return
            if job is not None and not is_job_finished(job):
                return  # adopted meanwhile
        await self._remove_finalizer_patch(pod)

    async def _remove_finalizer_patch(self, pod: Obj) -> None:
        if not has_tracking_finalizer(pod):
            return
        md = pod["metadata"]
        try:
            await self.client.patch(
                PODS,
                md["name"],
                {"metadata": {"$deleteFromPrimitiveList/finalizers": [JOB_TRACKING_FINALIZER]}},
                namespace=md["namespace"],
                patch_type=PatchType.STRATEGIC,
            )
        except ClientError as e:
            if not is_not_found(e):
                raise

    # -- the sync ---------------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        shared = self.jobs.indexer.get_by_key(key)
        if shared is None:
            self.expectations.delete(key)
            self.finalizer_expectations.pop(key, None)
            self.backoff.remove(key)
            return
        if _managed_externally(shared):
            return
        job: Obj = meta.clone(shared)
        if is_job_finished(job):
            self.backoff.remove(key)
            return
        spec = job.setdefault("spec", {})
        mode = spec.get("completionMode")
        if mode not in (None, "NonIndexed", "Indexed"):
            self.recorder.event(
                job, WARNING, "UnknownCompletionMode", "Skipped Job sync because completion mode is unknown"
            )
            return
        status = job.setdefault("status", {})
        uncounted = status.get("uncountedTerminatedPods") or {}
        status["uncountedTerminatedPods"] = uncounted
        now = self.now()

        # check expectations before listing pods: a pod arriving in between defers to the next sync
        satisfied = self.expectations.satisfied(key)
        pods = await self._get_pods_for_job(job)
        active_pods = [p for p in pods if is_pod_active(p)]
        ctx = _SyncCtx(
            job=job,
            pods=pods,
            active_pods=active_pods,
            ready=sum(1 for p in active_pods if is_pod_ready(p)),
            uncounted_succeeded=set(uncounted.get("succeeded") or ()),
            uncounted_failed=set(uncounted.get("failed") or ()),
            expected_rm_finalizers=set(self.finalizer_expectations.get(key) or ()),
        )
        ctx.terminating = sum(1 for p in pods if is_pod_terminating(p))
        active = len(active_pods)
        new_succeeded, new_failed = self._new_finished_pods(ctx)
        ctx.succeeded = (status.get("succeeded") or 0) + len(new_succeeded) + len(ctx.uncounted_succeeded)
        ctx.failed = (
            (status.get("failed") or 0)
            + _non_ignored_failed_count(job, new_failed)
            + len(ctx.uncounted_failed)
        )
        if not status.get("startTime") and not is_suspended(job):
            status["startTime"] = meta.format_time(now)
        ctx.new_backoff = self.backoff.new_record(key, new_succeeded, new_failed)

        manage_error: Exception | None = None
        exceeds_backoff_limit = ctx.failed > int(spec.get("backoffLimit", 6))
        ctx.finished = _success_criteria_met(job)
        # with SuccessCriteriaMet already written the Job succeeds: no pod failure policy any more
        if ctx.finished is None:
            target = find_condition(job, FAILURE_TARGET)
            if target is not None and target.get("status") == "True":
                ctx.finished = new_condition(
                    FAILED, "True", target.get("reason", ""), target.get("message", ""), now
                )
            elif (msg := _fail_job_message(job, pods)) is not None:
                # the interim FailureTarget records the message before finalizers (and pods) go
                ctx.finished = new_condition(FAILURE_TARGET, "True", REASON_POD_FAILURE_POLICY, msg, now)
        if ctx.finished is None:
            if exceeds_backoff_limit or _past_backoff_limit_on_failure(job, pods):
                ctx.finished = self._failure_condition(
                    REASON_BACKOFF_LIMIT_EXCEEDED, "Job has reached the specified backoff limit"
                )
            elif self._past_active_deadline(job):
                ctx.finished = self._failure_condition(
                    REASON_DEADLINE_EXCEEDED, "Job was active longer than specified deadline"
                )
            elif spec.get("activeDeadlineSeconds") is not None and not is_suspended(job):
                start = parse_time(status.get("startTime")) or now
                left = spec["activeDeadlineSeconds"] - (now - start).total_seconds()
                self.queue.add_after(key, left)

        if is_indexed(job):
            completions = int(spec.get("completions") or 0)
            ctx.prev_succeeded_indexes, ctx.succeeded_indexes = _calculate_succeeded_indexes(job, pods)
            ctx.succeeded = intervals_total(ctx.succeeded_indexes)
            if has_backoff_limit_per_index(job):
                ctx.failed_indexes = _calculate_failed_indexes(job, pods)
                failed_total = intervals_total(ctx.failed_indexes)
                if ctx.finished is None:
                    max_failed = spec.get("maxFailedIndexes")
                    if max_failed is not None and failed_total > max_failed:
                        ctx.finished = self._failure_condition(
                            REASON_MAX_FAILED_INDEXES_EXCEEDED,
                            "Job has exceeded the specified maximal number of failed indexes",
                        )
                    elif failed_total > 0 and failed_total + ctx.succeeded >= completions:
                        ctx.finished = self._failure_condition(
                            REASON_FAILED_INDEXES, "Job has failed indexes"
                        )
                ctx.delayed_deletion = _pods_with_delayed_deletion_per_index(ctx)
            if ctx.finished is None:
                msg = match_success_policy(spec.get("successPolicy"), completions, ctx.succeeded_indexes)
                if msg is not None:
                    ctx.finished = new_condition(
                        SUCCESS_CRITERIA_MET, "True", REASON_SUCCESS_POLICY, msg, now
                    )

        suspend_changed = False
        if ctx.finished is not None:
            # the Job is done: its remaining pods go
            deleted_ready, deleted, manage_error = await self._delete_active_pods(job, ctx.active_pods)
            if deleted != active or not satisfied:
                # not finished yet: pods or finalizers the caches have not caught up with
                ctx.finished = None
            active -= deleted
            ctx.terminating += deleted
            ctx.ready -= deleted_ready
        else:
            manage_called = False
            if satisfied and not job["metadata"].get("deletionTimestamp"):
                active, manage_error = await self._manage_job(job, ctx)
                manage_called = True
            completions_ = spec.get("completions")
            if completions_ is None:
                # any success completes the Job once the other pods are done
                complete = ctx.succeeded > 0 and active == 0
            else:
                complete = ctx.succeeded >= completions_ and active == 0
            if complete:
                ctx.finished = new_condition(
                    SUCCESS_CRITERIA_MET,
                    "True",
                    REASON_COMPLETIONS_REACHED,
                    "Reached expected number of succeeded pods",
                    now,
                )
            elif manage_called:
                if is_suspended(job):
                    if ensure_condition(job, SUSPENDED, "True", "JobSuspended", "Job suspended", now):
                        suspend_changed = True
                        self.recorder.event(job, NORMAL, "Suspended", "Job suspended")
                elif ensure_condition(job, SUSPENDED, "False", "JobResumed", "Job resumed", now):
                    suspend_changed = True
                    self.recorder.event(job, NORMAL, "Resumed", "Job resumed")
                    # activeDeadlineSeconds counts time continuously active: start again
                    status["startTime"] = meta.format_time(now)

        needs_status_update = (
            suspend_changed
            or active != (status.get("active") or 0)
            or ctx.ready != status.get("ready")
            or ctx.terminating != status.get("terminating")
        )
        _set_int(status, "active", active)
        status["ready"] = ctx.ready
        status["terminating"] = ctx.terminating
        await self._track_status_and_remove_finalizers(ctx, needs_status_update)
        if manage_error is not None:
            raise manage_error

    def _failure_condition(self, reason: str, message: str) -> Obj:
        # 1.32 (JobManagedBy/JobPodReplacementPolicy): FailureTarget first, Failed once pods are gone
        return new_condition(FAILURE_TARGET, "True", reason, message, self.now())

    def _past_active_deadline(self, job: Obj) -> bool:
        ads = (job.get("spec") or {}).get("activeDeadlineSeconds")
        start = parse_time((job.get("status") or {}).get("startTime"))
        if ads is None or start is None or is_suspended(job):
            return False
        return (self.now() - start).total_seconds() >= ads

    # -- pods of a Job -----------------------------------------------------------------------

    async def _get_pods_for_job(self, job: Obj) -> list[Obj]:
        """The Job's pods: owned ones that still match, plus matching orphans it adopts (with the
        tracking finalizer); owned ones that stopped matching are released."""
        md = job["metadata"]
        selector = LabelSelector.from_label_selector((job.get("spec") or {}).get("selector"))
        candidates = self.pods.indexer.by_index(CONTROLLER_UID_INDEX, md["uid"]) + self.pods.indexer.by_index(
            CONTROLLER_UID_INDEX, orphan_index_key(md.get("namespace", ""))
        )
        manager = _JobPodRefManager(self.client, PODS, job, selector)
        return await manager.claim(candidates)

    def _new_finished_pods(self, ctx: _SyncCtx) -> tuple[list[Obj], list[Obj]]:
        """Pods finished since the last sync: with the finalizer, not yet in uncountedTerminatedPods."""
        succeeded = self._valid_pods(ctx, ctx.uncounted_succeeded, lambda p: pod_phase(p) == "Succeeded")
        failed = self._valid_pods(ctx, ctx.uncounted_failed, lambda p: is_pod_failed(p, ctx.job))
        return succeeded, failed

    @staticmethod
    def _valid_pods(ctx: _SyncCtx, uncounted: set[str], keep: Callable[[Obj], bool]) -> list[Obj]:
        result = []
        completions = int((ctx.job.get("spec") or {}).get("completions") or 0)
        for p in ctx.pods:
            uid = p["metadata"].get("uid", "")
            if not has_tracking_finalizer(p) or uid in uncounted or uid in ctx.expected_rm_finalizers:
                continue
            if is_indexed(ctx.job):
                ix = completion_index(p)
                if ix == UNKNOWN_INDEX or ix >= completions:
                    continue
            if keep(p):
                result.append(p)
        return result

    # -- creating and deleting pods --------------------------------------------------------------

    async def _manage_job(self, job: Obj, ctx: _SyncCtx) -> tuple[int, Exception | None]:
        """Create or delete pods towards the wanted number of active ones; returns (active, error)."""
        spec = job["spec"]
        active = len(ctx.active_pods)
        parallelism = int(spec.get("parallelism") or 0)
        key = key_of(job)
        if is_suspended(job):
            to_delete = _active_pods_for_removal(job, ctx.active_pods, active)
            self.expectations.expect(key, delete=len(to_delete))
            removed_ready, removed, err = await self._delete_job_pods(job, key, to_delete)
            ctx.terminating += removed
            ctx.ready -= removed_ready
            return active - removed, err

        completions = spec.get("completions")
        if completions is None:
            # no completion count: parallelism pods until one succeeds, then let them finish
            want = active if ctx.succeeded > 0 else parallelism
        else:
            want = max(0, min(completions - ctx.succeeded, parallelism))

        to_delete = _active_pods_for_removal(job, ctx.active_pods, max(0, active - want))
        if has_backoff_limit_per_index(job) and ctx.failed_indexes:
            doomed = {id(p) for p in to_delete}
            to_delete += [
                p
                for p in ctx.active_pods
                if id(p) not in doomed and intervals_has(ctx.failed_indexes, completion_index(p))
            ]
        to_delete = to_delete[:MAX_POD_CREATE_DELETE_PER_SYNC]
        if to_delete:
            self.expectations.expect(key, delete=len(to_delete))
            removed_ready, removed, err = await self._delete_job_pods(job, key, to_delete)
            ctx.terminating += removed
            ctx.ready -= removed_ready
            # one sync either deletes or creates; deletion first
            return active - removed, err

        terminating = ctx.terminating if only_replace_failed_pods(job) else 0
        diff = want - terminating - active
        if diff <= 0:
            return active, None
        now = self.now()
        if not has_backoff_limit_per_index(job):
            remaining = ctx.new_backoff.remaining(now) if ctx.new_backoff else 0.0
            if remaining > 0:
                self.queue.add_after(key, max(remaining, SYNC_JOB_BATCH_PERIOD))
                return active, None
        diff = min(diff, MAX_POD_CREATE_DELETE_PER_SYNC)
        indexes: list[int] = []
        if is_indexed(job):
            indexes = _first_pending_indexes(ctx, diff, int(completions or 0))
            if has_backoff_limit_per_index(job):
                indexes, remaining = _creatable_indexes(now, indexes, ctx.delayed_deletion)
                if remaining > 0:
                    self.queue.add_after(key, max(remaining, SYNC_JOB_BATCH_PERIOD))
                    return active, None
            diff = len(indexes)
        if diff <= 0:
            return active, None

        self.expectations.expect(key, add=diff)
        template = meta.clone(spec.get("template") or {})
        if is_indexed(job):
            _add_completion_index_env(template)
        tmeta = template.setdefault("metadata", {})
        if JOB_TRACKING_FINALIZER not in (tmeta.get("finalizers") or ()):
            tmeta["finalizers"] = [*(tmeta.get("finalizers") or []), JOB_TRACKING_FINALIZER]
        active += diff
        errors: list[Exception] = []

        async def create(index: int) -> None:
            nonlocal active
            pod_template = template
            generate_name = generate_name_prefix(job["metadata"]["name"])
            if index != UNKNOWN_INDEX:
                pod_template = meta.clone(template)
                pmeta = pod_template["metadata"]
                pmeta.setdefault("annotations", {})[JOB_COMPLETION_INDEX] = str(index)
                pmeta.setdefault("labels", {})[JOB_COMPLETION_INDEX] = str(index)
                pod_template.setdefault("spec", {})["hostname"] = f"{job['metadata']['name']}-{index}"
                generate_name = _generate_name_with_index(job["metadata"]["name"], index)
                if has_backoff_limit_per_index(job):
                    failures, ignored = new_index_failure_counts(job, ctx.delayed_deletion.get(index))
                    pmeta["annotations"][JOB_INDEX_FAILURE_COUNT] = str(failures)
                    if ignored > 0:
                        pmeta["annotations"][JOB_INDEX_IGNORED_FAILURE_COUNT] = str(ignored)
            pod = pod_from_template(pod_template, job, generate_name=generate_name)
            try:
                created = await self.pod_control.create_pod(pod, job)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                # the informer will never see this pod
                self.expectations.creation_observed(key)
                active -= 1
                errors.append(e)
                return
            if created is None:  # the namespace is being deleted
                return

        # slow start: batches of 1, 2, 4, ... so that a failing create is not repeated hundreds of times
        pending = list(indexes) if indexes else [UNKNOWN_INDEX] * diff
        batch = min(diff, SLOW_START_INITIAL_BATCH_SIZE)
        while pending:
            before = len(errors)
            await asyncio.gather(*(create(i) for i in pending[:batch]))
            pending = pending[batch:]
            if len(errors) > before and pending:
                skipped = len(pending)
                active -= skipped
                self.expectations.lower(key, add=skipped)
                break
            batch = min(2 * batch, len(pending))
        return active, (errors[0] if errors else None)

    async def _delete_active_pods(self, job: Obj, pods: list[Obj]) -> tuple[int, int, Exception | None]:
        """Delete a finished Job's active pods, keeping their finalizers (the tracking removes them)."""
        results = await asyncio.gather(*(self._delete_one(job, p) for p in pods))
        errors = [e for e in results if e is not None]
        deleted_ready = sum(1 for p, e in zip(pods, results, strict=True) if e is None and is_pod_ready(p))
        return deleted_ready, len(pods) - len(errors), (errors[0] if errors else None)

    async def _delete_one(self, job: Obj, pod: Obj) -> Exception | None:
        try:
            await self.pod_control.delete_pod(pod, job)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            return e
        return None

    async def _delete_job_pods(
        self, job: Obj, key: str, pods: list[Obj]
    ) -> tuple[int, int, Exception | None]:
        """Delete pods the Job no longer wants (removing their finalizer first: they are not counted)."""

        async def one(pod: Obj) -> Exception | None:
            try:
                await self._remove_finalizer_patch(pod)
                await self.pod_control.delete_pod(pod, job)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self.expectations.deletion_observed(key)
                return None if isinstance(e, ClientError) and is_not_found(e) else e
            return None

        results = await asyncio.gather(*(one(p) for p in pods))
        errors = [e for e in results if e is not None]
        deleted_ready = sum(1 for p, e in zip(pods, results, strict=True) if e is None and is_pod_ready(p))
        return deleted_ready, len(pods) - len(errors), (errors[0] if errors else None)

    # -- status and finalizers ---------------------------------------------------------------

    async def _track_status_and_remove_finalizers(self, ctx: _SyncCtx, needs_flush: bool) -> None:
        """Record finished pods in uncountedTerminatedPods, remove their finalizers, move them
        into the counters, and set Complete/Failed when everything is counted."""
        job = ctx.job
        status = job["status"]
        indexed = is_indexed(job)
        completions = int((job.get("spec") or {}).get("completions") or 0)
        uncounted = status["uncountedTerminatedPods"]
        pods = sorted(ctx.pods, key=completion_index) if indexed else ctx.pods
        with_finalizer = {
            p["metadata"]["uid"]
            for p in pods
            if has_tracking_finalizer(p) and p["metadata"]["uid"] not in ctx.expected_rm_finalizers
        }
        if _clean_uncounted(status, with_finalizer):
            needs_flush = True
        to_remove: list[Obj] = []
        new_succeeded_indexes: list[int] = []
        reached_max = False
        policy = (job.get("spec") or {}).get("podFailurePolicy")
        for pod in pods:
            uid = pod["metadata"]["uid"]
            if not has_tracking_finalizer(pod) or uid in ctx.expected_rm_finalizers:
                continue  # counted in an earlier sync
            failed = is_pod_failed(pod, job)
            if not _can_remove_finalizer(ctx, pod, failed):
                continue
            to_remove.append(pod)
            if pod_phase(pod) == "Succeeded" and uid not in ctx.uncounted_failed:
                if indexed:
                    # the index alone prevents counting a success twice
                    ix = completion_index(pod)
                    if (
                        ix != UNKNOWN_INDEX
                        and ix < completions
                        and not intervals_has(ctx.prev_succeeded_indexes, ix)
                    ):
                        new_succeeded_indexes.append(ix)
                        needs_flush = True
                elif uid not in ctx.uncounted_succeeded:
                    needs_flush = True
                    uncounted.setdefault("succeeded", []).append(uid)
            elif failed or (ctx.finished is not None and not _is_success_criteria_met(ctx.finished)):
                # once the Job is finished (failed), every pod not succeeded counts as failed
                ix = completion_index(pod)
                if uid not in ctx.uncounted_failed and (
                    not indexed or (ix != UNKNOWN_INDEX and ix < completions)
                ):
                    count_failed = True
                    if policy is not None:
                        _, count_failed, _ = match_pod_failure_policy(policy, pod)
                    if count_failed:
                        needs_flush = True
                        uncounted.setdefault("failed", []).append(uid)
            if (
                len(new_succeeded_indexes)
                + len(uncounted.get("succeeded") or ())
                + len(uncounted.get("failed") or ())
                >= MAX_UNCOUNTED_PODS
            ):
                # keep the status small and leave other Jobs their share: the rest next sync
                reached_max = True
                break
        if indexed:
            ctx.succeeded_indexes = with_ordered_indexes(ctx.succeeded_indexes, sorted(new_succeeded_indexes))
            text = intervals_str(ctx.succeeded_indexes)
            if text != (status.get("completedIndexes") or ""):
                needs_flush = True
            _set_int(status, "succeeded", intervals_total(ctx.succeeded_indexes))
            if text:
                status["completedIndexes"] = text
            else:
                status.pop("completedIndexes", None)
            failed_text = intervals_str(ctx.failed_indexes) if ctx.failed_indexes is not None else None
            if status.get("failedIndexes") != failed_text:
                needs_flush = True
                if failed_text is None:
                    status.pop("failedIndexes", None)
                else:
                    status["failedIndexes"] = failed_text
        now = self.now()
        if ctx.finished is not None and ctx.finished["type"] == FAILURE_TARGET:
            # record the interim FailureTarget before finalizers go; Failed comes after
            status.setdefault("conditions", []).append(ctx.finished)
            needs_flush = True
            ctx.finished = new_condition(
                FAILED, "True", ctx.finished.get("reason", ""), ctx.finished.get("message", ""), now
            )
        if _is_success_criteria_met(ctx.finished):
            assert ctx.finished is not None
            if _success_criteria_met(job) is None:
                status.setdefault("conditions", []).append(ctx.finished)
                needs_flush = True
            ctx.finished = new_condition(
                COMPLETE, "True", ctx.finished.get("reason", ""), ctx.finished.get("message", ""), now
            )
        needs_flush = await self._flush_uncounted_and_remove_finalizers(
            ctx, to_remove, with_finalizer, needs_flush
        )
        finished = not reached_max and self._enact_job_finished(ctx)
        if finished:
            needs_flush = True
        if needs_flush:
            ctx.job = await self._update_status(ctx.job)
            if finished:
                self._record_job_finished(ctx.job, ctx.finished)

    async def _flush_uncounted_and_remove_finalizers(
        self, ctx: _SyncCtx, to_remove: list[Obj], with_finalizer: set[str], needs_flush: bool
    ) -> bool:
        if needs_flush:
            ctx.job = await self._update_status(ctx.job)
            if ctx.new_backoff is not None:
                self.backoff.update(ctx.new_backoff)
            needs_flush = False
        error: Exception | None = None
        if to_remove:
            succeeded, error = await self._remove_tracking_finalizers(key_of(ctx.job), to_remove)
            for pod, ok in zip(to_remove, succeeded, strict=True):
                if ok:
                    with_finalizer.discard(pod["metadata"]["uid"])
        # pods whose finalizer is gone move from uncountedTerminatedPods to the counters
        if _clean_uncounted(ctx.job["status"], with_finalizer):
            needs_flush = True
        if error is not None:
            if needs_flush:
                ctx.job = await self._update_status(ctx.job)
            raise error
        return needs_flush

    async def _remove_tracking_finalizers(
        self, key: str, pods: list[Obj]
    ) -> tuple[list[bool], Exception | None]:
        uids = [p["metadata"]["uid"] for p in pods]
        self.finalizer_expectations.setdefault(key, set()).update(uids)

        async def one(pod: Obj) -> bool | Exception:
            try:
                await self._remove_finalizer_patch(pod)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                # no update will show the finalizer removed
                self._finalizer_removal_observed(key, pod["metadata"]["uid"])
                return e
            return True

        results = await asyncio.gather(*(one(p) for p in pods))
        errors = [r for r in results if isinstance(r, Exception)]
        return [r is True for r in results], (errors[0] if errors else None)

    def _enact_job_finished(self, ctx: _SyncCtx) -> bool:
        """Set Complete or Failed, unless pods are still uncounted or terminating."""
        cond = ctx.finished
        if cond is None:
            return False
        status = ctx.job["status"]
        uncounted = status.get("uncountedTerminatedPods") or {}
        if uncounted.get("succeeded") or uncounted.get("failed"):
            return False
        if ctx.terminating > 0:
            return False
        ensure_condition(
            ctx.job, cond["type"], cond["status"], cond.get("reason", ""), cond.get("message", ""), self.now()
        )
        if cond["type"] == COMPLETE:
            status["completionTime"] = cond["lastTransitionTime"]
        return True

    def _record_job_finished(self, job: Obj, cond: Obj | None) -> None:
        if cond is None:
            return
        if cond["type"] == COMPLETE:
            completions = (job.get("spec") or {}).get("completions")
            if completions is not None and ((job.get("status") or {}).get("succeeded") or 0) > completions:
                self.recorder.event(
                    job,
                    WARNING,
                    "TooManySucceededPods",
                    "Too many succeeded pods running after completion count reached",
                )
            self.recorder.event(job, NORMAL, "Completed", "Job completed")
        else:
            self.recorder.event(job, WARNING, cond.get("reason", ""), cond.get("message", ""))

    async def _update_status(self, job: Obj) -> Obj:
        status = job.get("status") or {}
        unc = status.get("uncountedTerminatedPods") or {}
        for k in ("succeeded", "failed"):
            if not unc.get(k):
                unc.pop(k, None)
        return await self.client.update_status(JOBS, job)


# -- helpers on one Job ------------------------------------------------------------------------


def _managed_externally(job: Obj) -> bool:
    managed_by = (job.get("spec") or {}).get("managedBy")
    return managed_by is not None and managed_by != JOB_CONTROLLER_NAME


def _set_int(status: Obj, name: str, value: int) -> None:
    """int32 fields with omitempty: zero is left out."""
    if value:
        status[name] = value
    else:
        status.pop(name, None)


def _success_criteria_met(job: Obj) -> Obj | None:
    c = find_condition(job, SUCCESS_CRITERIA_MET)
    return c if c is not None and c.get("status") == "True" else None


def _is_success_criteria_met(cond: Obj | None) -> bool:
    return cond is not None and cond.get("type") == SUCCESS_CRITERIA_MET and cond.get("status") == "True"


def _non_ignored_failed_count(job: Obj, failed: list[Obj]) -> int:
    policy = (job.get("spec") or {}).get("podFailurePolicy")
    if policy is None:
        return len(failed)
    return sum(1 for p in failed if match_pod_failure_policy(policy, p)[1])


def _fail_job_message(job: Obj, pods: list[Obj]) -> str | None:
    """The message of a FailJob rule a failed pod matches."""
    policy = (job.get("spec") or {}).get("podFailurePolicy")
    if policy is None:
        return None
    for p in pods:
        if is_pod_failed(p, job):
            msg, _, _ = match_pod_failure_policy(policy, p)
            if msg is not None:
                return msg
    return None


def _past_backoff_limit_on_failure(job: Obj, pods: list[Obj]) -> bool:
    """restartPolicy OnFailure: the restarts of running and pending pods' containers reach backoffLimit."""
    spec = job.get("spec") or {}
    if ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy") != "OnFailure":
        return False
    restarts = 0
    for p in pods:
        if pod_phase(p) in ("Running", "Pending"):
            status = p.get("status") or {}
            for s in (*(status.get("initContainerStatuses") or ()), *(status.get("containerStatuses") or ())):
                restarts += s.get("restartCount") or 0
    limit = int(spec.get("backoffLimit", 6))
    return restarts > 0 if limit == 0 else restarts >= limit


def _can_remove_finalizer(ctx: _SyncCtx, pod: Obj, failed: bool) -> bool:
    """A finalizer goes when the Job is being deleted or finished, the pod succeeded, or it failed
    (unless it is the failed pod of an index whose replacement must first copy its failure count)."""
    if (
        ctx.job["metadata"].get("deletionTimestamp")
        or ctx.finished is not None
        or pod_phase(pod) == "Succeeded"
    ):
        return True
    if not failed:
        return False
    if has_backoff_limit_per_index(ctx.job):
        ix = completion_index(pod)
        if ix != UNKNOWN_INDEX:
            delayed = ctx.delayed_deletion.get(ix)
            if delayed is not None and delayed["metadata"]["uid"] == pod["metadata"]["uid"]:
                return False
    return True


def _clean_uncounted(status: Obj, with_finalizer: set[str]) -> bool:
    """Move UIDs whose finalizer is gone from uncountedTerminatedPods into the counters."""
    uncounted = status.setdefault("uncountedTerminatedPods", {})
    changed = False
    for name in ("succeeded", "failed"):
        uids = uncounted.get(name) or []
        keep = [u for u in uids if u in with_finalizer]
        if len(keep) != len(uids):
            changed = True
            _set_int(status, name, (status.get(name) or 0) + len(uids) - len(keep))
            if keep:
                uncounted[name] = keep
            else:
                uncounted.pop(name, None)
    return changed


def _calculate_succeeded_indexes(job: Obj, pods: list[Obj]) -> tuple[list[Interval], list[Interval]]:
    completions = int(job["spec"].get("completions") or 0)
    prev = parse_indexes((job.get("status") or {}).get("completedIndexes"), completions)
    new = {
        ix
        for p in pods
        if pod_phase(p) == "Succeeded"
        and has_tracking_finalizer(p)
        and (ix := completion_index(p)) != UNKNOWN_INDEX
        and ix < completions
    }
    return prev, with_ordered_indexes(prev, sorted(new))


def _calculate_failed_indexes(job: Obj, pods: list[Obj]) -> list[Interval]:
    completions = int(job["spec"].get("completions") or 0)
    prev = parse_indexes((job.get("status") or {}).get("failedIndexes"), completions)
    new = {
        ix
        for p in pods
        if has_tracking_finalizer(p)
        and is_index_failed(job, p)
        and (ix := completion_index(p)) != UNKNOWN_INDEX
        and ix < completions
    }
    return with_ordered_indexes(prev, sorted(new))


def _pods_with_delayed_deletion_per_index(ctx: _SyncCtx) -> dict[int, Obj]:
    """Per index still to be retried: the last failed pod, whose finalizer stays until a
    replacement carrying its failure count exists."""
    job = ctx.job
    completions = int(job["spec"].get("completions") or 0)
    active_indexes = {completion_index(p) for p in ctx.active_pods}
    result: dict[int, Obj] = {}
    for p in ctx.pods:
        uid = p["metadata"]["uid"]
        if not has_tracking_finalizer(p) or uid in ctx.expected_rm_finalizers or not is_pod_failed(p, job):
            continue
        ix = completion_index(p)
        if ix == UNKNOWN_INDEX or ix >= completions:
            continue
        if (
            intervals_has(ctx.succeeded_indexes, ix)
            or intervals_has(ctx.failed_indexes or [], ix)
            or ix in active_indexes
        ):
            continue
        last = result.get(ix)
        if last is None or (
            index_absolute_failure_count(last) <= index_absolute_failure_count(p)
            and finished_time(p) >= finished_time(last)
        ):
            result[ix] = p
    return result


def _creatable_indexes(
    now: dt.datetime, indexes: list[int], delayed: dict[int, Obj]
) -> tuple[list[int], float]:
    """The indexes whose per-index backoff is over; else the shortest remaining backoff."""
    ready: list[int] = []
    shortest: float | None = None
    for ix in indexes:
        last = delayed.get(ix)
        remaining = 0.0
        if last is not None:
            failures = index_absolute_failure_count(last) + 1
            remaining = remaining_backoff(
                now, failures, finished_time(last), POD_FAILURE_BACKOFF, MAX_POD_FAILURE_BACKOFF
            )
        if remaining == 0:
            ready.append(ix)
        elif shortest is None or remaining < shortest:
            shortest = remaining
    if ready:
        return ready, 0.0
    return ready, shortest or 0.0


def _first_pending_indexes(ctx: _SyncCtx, count: int, completions: int) -> list[int]:
    """The first `count` indexes below `completions` neither succeeded, failed, nor active."""
    if count == 0:
        return []
    active = sorted({ix for p in ctx.active_pods if (ix := completion_index(p)) != UNKNOWN_INDEX})
    taken = with_ordered_indexes(ctx.succeeded_indexes, active)
    if ctx.failed_indexes:
        taken = merge_intervals(taken, ctx.failed_indexes)
    result: list[int] = []
    candidate = 0
    for first, last in taken:
        while candidate < completions and len(result) < count and candidate < first:
            result.append(candidate)
            candidate += 1
        candidate = max(candidate, last + 1)
    while candidate < completions and len(result) < count:
        result.append(candidate)
        candidate += 1
    return result


def _active_pods_for_removal(job: Obj, pods: list[Obj], at_least: int) -> list[Obj]:
    """Pods to delete: for Indexed Jobs those without a valid index and all but one per repeated
    index, then more in ActivePods order until `at_least`."""
    rm: list[Obj] = []
    left = list(pods)
    if is_indexed(job):
        completions = int(job["spec"].get("completions") or 0)
        by_index: dict[int, list[Obj]] = {}
        left = []
        for p in pods:
            ix = completion_index(p)
            if ix == UNKNOWN_INDEX or ix >= completions:
                rm.append(p)
            else:
                by_index.setdefault(ix, []).append(p)
        for ix in sorted(by_index):
            group = sorted(by_index[ix], key=active_pods_order)
            rm += group[:-1]
            left.append(group[-1])
    if len(rm) < at_least:
        left.sort(key=active_pods_order)
        rm += left[: at_least - len(rm)]
    return rm


def _add_completion_index_env(template: Obj) -> None:
    """JOB_COMPLETION_INDEX in every container, from the pod's completion-index label."""
    spec = template.setdefault("spec", {})
    for kind in ("initContainers", "containers"):
        for c in spec.get(kind) or ():
            env = c.setdefault("env", [])
            if any(e.get("name") == COMPLETION_INDEX_ENV for e in env):
                continue
            env.append(
                {
                    "name": COMPLETION_INDEX_ENV,
                    "valueFrom": {"fieldRef": {"fieldPath": f"metadata.labels['{JOB_COMPLETION_INDEX}']"}},
                }
            )


def _generate_name_with_index(job_name: str, index: int) -> str:
    suffix = f"-{index}-"
    prefix = job_name + suffix
    max_len = 63 - 5  # names.MaxGeneratedNameLength
    if len(prefix) > max_len:
        prefix = prefix[: max_len - len(suffix)] + suffix
    return prefix
