"""The CronJob controller (``pkg/controller/cronjob``, kube's ControllerV2): creates a Job for
each time a CronJob's schedule comes due.

Informers on CronJobs and Jobs feed a delaying queue of CronJob keys. ``sync(key)`` reconciles the
Jobs the CronJob controls with its status (``active``, ``lastScheduleTime``,
``lastSuccessfulTime``), deletes finished Jobs beyond ``successfulJobsHistoryLimit`` /
``failedJobsHistoryLimit`` (oldest first), and, unless suspended, looks for the most recent
schedule time that has passed since the last one (or since the CronJob was created): no wake-up
is missed by a controller that was down, but only the most recent missed time runs, and more than
100 missed times earn a TooManyMissedTimes warning. A time older than ``startingDeadlineSeconds``
is missed (MissSchedule). ``concurrencyPolicy`` decides what happens while a Job is still active:
Allow starts another, Forbid skips this time (JobAlreadyActive), Replace deletes the running Jobs
first. Then the key is requeued for the next schedule time (plus 100 ms).

A Job is named ``<cronjob>-<scheduled time in minutes since the epoch>``, so that a restart
between creating a Job and recording it cannot create it twice (AlreadyExists means "ours, record
it"); it carries the ``batch.kubernetes.io/cronjob-scheduled-timestamp`` annotation (RFC 3339 in
the CronJob's time zone). Schedules run in ``spec.timeZone`` (the controller manager's local zone
when unset); a ``TZ=``/``CRON_TZ=`` prefix, refused by the API server on new objects, still works
for old ones with an UnsupportedSchedule warning, as upstream.

``sync_cronjob`` takes the time from ``self.now`` so that tests can drive the schedule math with
a clock of their own.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Callable
from typing import Any

from k8py.api import meta
from k8py.client import NORMAL, WARNING, ClientError, is_already_exists, is_not_found
from k8py.client.cache import DeletedFinalStateUnknown
from k8py.client.informer import ResourceEventHandlerFuncs
from k8py.client.resources import CRON_JOBS, JOBS
from k8py.controllers.base import QueueController, unwrap
from k8py.controllers.controller_utils import controller_ref, is_controlled_by, owner_reference
from k8py.controllers.cron import ConstantDelaySchedule, Schedule, load_location, parse_standard
from k8py.controllers.jobutil import finished_condition_type, is_job_finished, is_job_succeeded, parse_time

log = logging.getLogger(__name__)

Obj = dict[str, Any]

NEXT_SCHEDULE_DELTA = 0.1  # seconds added to a requeue, against clock skew
SCHEDULED_TIMESTAMP_ANNOTATION = "batch.kubernetes.io/cronjob-scheduled-timestamp"
TOO_MANY_MISSED = 100

NONE_MISSED, FEW_MISSED, MANY_MISSED = 0, 1, 2


class CronJobController(QueueController):
    name = "cronjob"

    def __init__(self, ctx: Any) -> None:
        super().__init__(workers=ctx.options.workers("cronjob", 5))
        self.client = ctx.client
        self.recorder = ctx.recorder("cronjob-controller")
        self.now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
        self.jobs = ctx.informers.informer_for(JOBS)
        self.cronjobs = ctx.informers.informer_for(CRON_JOBS)
        self.jobs.add_event_handler(
            ResourceEventHandlerFuncs(
                add_func=lambda j, _i: self._add_job(j),
                update_func=self._update_job,
                delete_func=self._delete_job,
            )
        )
        self.cronjobs.add_event_handler(
            ResourceEventHandlerFuncs(
                add_func=lambda c, _i: self.enqueue(c),
                update_func=self._update_cronjob,
                delete_func=self.enqueue,
            )
        )
        self.synced = [self.jobs, self.cronjobs]

    # -- event handlers --------------------------------------------------------------------------

    def _resolve(self, namespace: str, ref: Obj) -> Obj | None:
        if ref.get("kind") != "CronJob":
            return None
        cj = self.cronjobs.indexer.get_by_key(f"{namespace}/{ref.get('name')}")
        if cj is None or cj["metadata"].get("uid") != ref.get("uid"):
            return None
        return cj

    def _add_job(self, job: Obj) -> None:
        if job["metadata"].get("deletionTimestamp"):
            self._delete_job(job)
            return
        ref = controller_ref(job)
        if ref is not None and (cj := self._resolve(job["metadata"].get("namespace", ""), ref)) is not None:
            self.enqueue(cj)

    def _update_job(self, old: Obj, cur: Obj) -> None:
        if old["metadata"].get("resourceVersion") == cur["metadata"].get("resourceVersion"):
            return
        ns = cur["metadata"].get("namespace", "")
        cur_ref, old_ref = controller_ref(cur), controller_ref(old)
        if cur_ref != old_ref and old_ref is not None and (cj := self._resolve(ns, old_ref)) is not None:
            self.enqueue(cj)
        if cur_ref is not None and (cj := self._resolve(ns, cur_ref)) is not None:
            self.enqueue(cj)

    def _delete_job(self, obj: Obj | DeletedFinalStateUnknown) -> None:
        job = unwrap(obj)
        ref = controller_ref(job)
        if ref is not None and (cj := self._resolve(job["metadata"].get("namespace", ""), ref)) is not None:
            self.enqueue(cj)

    def _update_cronjob(self, old: Obj, cur: Obj) -> None:
        """A new schedule or zone: requeue for its next time; anything else: sync now."""
        old_spec, spec = old.get("spec") or {}, cur.get("spec") or {}
        if old_spec.get("schedule") != spec.get("schedule") or old_spec.get("timeZone") != spec.get(
            "timeZone"
        ):
            try:
                sched = parse_standard(format_schedule(cur, None))
            except ValueError:
                self.recorder.event(
                    cur,
                    WARNING,
                    "UnParseableCronJobSchedule",
                    f"unparseable schedule for cronjob: {spec.get('schedule', '')}",
                )
                return
            self.enqueue_after(cur, next_schedule_time_duration(cur, self.now(), sched))
            return
        self.enqueue(cur)

    # -- the sync ---------------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        shared = self.cronjobs.indexer.get_by_key(key)
        if shared is None:
            return  # deleted: its Jobs go with the garbage collector
        jobs = self._jobs_to_be_reconciled(shared)
        cj: Obj = meta.clone(shared)
        update_after_cleanup = await self.cleanup_finished_jobs(cj, jobs)
        cj, requeue_after, update_after_sync, error = await self.sync_cronjob(cj, jobs)
        if error is not None:
            log.info("cronjob %s: %s", key, error)
        if update_after_cleanup or update_after_sync:
            await self.client.update_status(CRON_JOBS, cj)
        if requeue_after is not None:
            self.queue.add_after(key, requeue_after)
            return
        if error is not None:
            raise error

    def _jobs_to_be_reconciled(self, cj: Obj) -> list[Obj]:
        """Every Job of the namespace controlled by the CronJob, whatever its labels."""
        name = cj["metadata"]["name"]
        result = []
        for job in self.jobs.indexer.by_index("namespace", cj["metadata"].get("namespace", "")):
            ref = controller_ref(job)
            if ref is not None and ref.get("kind") == "CronJob" and ref.get("name") == name:
                result.append(job)
        return result

    async def sync_cronjob(
        self, cj: Obj, jobs: list[Obj]
    ) -> tuple[Obj, float | None, bool, Exception | None]:
        """syncCronJob: (the CronJob as changed, seconds until the next sync or None, whether its
        status must be written, an error)."""
        now = self.now()
        update = False
        status = cj.setdefault("status", {})
        md = cj["metadata"]
        children: set[str] = set()
        for j in jobs:
            uid = j["metadata"]["uid"]
            children.add(uid)
            found = _in_active_list(cj, uid)
            if not found and not is_job_finished(j):
                try:
                    fresh = await self.client.get(CRON_JOBS, md["name"], namespace=md["namespace"])
                except ClientError as e:
                    return cj, None, update, e
                if _in_active_list(fresh, uid):
                    cj = fresh
                    status = cj.setdefault("status", {})
                    continue
                # created by us before a crash, or by someone who wants us to adopt it
                self.recorder.event(
                    cj,
                    WARNING,
                    "UnexpectedJob",
                    f"Saw a job that the controller did not create or forgot: {j['metadata']['name']}",
                )
            elif found and is_job_finished(j):
                _delete_from_active_list(cj, uid)
                self.recorder.event(
                    cj,
                    NORMAL,
                    "SawCompletedJob",
                    f"Saw completed job: {j['metadata']['name']}, status: {finished_condition_type(j)}",
                )
                update = True
            elif is_job_succeeded(j):
                # an active Job or not, a success moves lastSuccessfulTime
                completed = parse_time((j.get("status") or {}).get("completionTime"))
                last = parse_time(status.get("lastSuccessfulTime"))
                if completed is not None and (last is None or completed > last):
                    status["lastSuccessfulTime"] = j["status"]["completionTime"]
                    update = True

        # an active Job that no longer exists would keep the CronJob "active" forever
        for ref in list(status.get("active") or ()):
            if ref.get("uid") in children:
                continue
            try:
                await self.client.get(
                    JOBS, ref.get("name", ""), namespace=ref.get("namespace") or md["namespace"]
                )
            except ClientError as e:
                if not is_not_found(e):
                    return cj, None, update, e
                self.recorder.event(cj, NORMAL, "MissingJob", f"Active job went missing: {ref.get('name')}")
                _delete_from_active_list(cj, ref.get("uid", ""))
                update = True

        if md.get("deletionTimestamp"):
            return cj, None, update, None  # being deleted: only the status
        spec = cj.get("spec") or {}
        time_zone = spec.get("timeZone")
        if time_zone is not None:
            try:
                load_location(time_zone)
            except ValueError as e:
                self.recorder.event(cj, WARNING, "UnknownTimeZone", f'invalid timeZone: "{time_zone}": {e}')
                return cj, None, update, None
        if spec.get("suspend"):
            return cj, None, update, None
        try:
            sched = parse_standard(format_schedule(cj, self.recorder))
        except ValueError as e:
            # a user error: nothing to do until the spec changes
            self.recorder.event(
                cj,
                WARNING,
                "UnparseableSchedule",
                f'unparseable schedule: "{spec.get("schedule", "")}" : {e}',
            )
            return cj, None, update, None
        scheduled, err = self._next_schedule_time(cj, now, sched)
        if err is not None:
            self.recorder.event(
                cj, WARNING, "InvalidSchedule", f"invalid schedule: {spec.get('schedule', '')} : {err}"
            )
            return cj, None, update, None
        if scheduled is None:
            # nothing due: only after a restart or an early wake-up
            return cj, next_schedule_time_duration(cj, now, sched), update, None

        deadline = spec.get("startingDeadlineSeconds")
        if deadline is not None and scheduled + dt.timedelta(seconds=deadline) < now:
            self.recorder.event(
                cj,
                WARNING,
                "MissSchedule",
                f"Missed scheduled time to start a job: {_rfc1123z(scheduled)}",
            )
            return cj, next_schedule_time_duration(cj, now, sched), update, None
        job_name = get_job_name(cj, scheduled)
        last = parse_time(status.get("lastScheduleTime"))
        if any(r.get("name") == job_name for r in status.get("active") or ()) or last == scheduled:
            return cj, next_schedule_time_duration(cj, now, sched), update, None
        policy = spec.get("concurrencyPolicy") or "Allow"
        if policy == "Forbid" and status.get("active"):
            # a Job we have not seen yet could still slip through; schedules far enough apart do not
            self.recorder.event(
                cj,
                NORMAL,
                "JobAlreadyActive",
                "Not starting job because prior execution is running and concurrency policy is Forbid",
            )
            return cj, next_schedule_time_duration(cj, now, sched), update, None
        if policy == "Replace":
            for ref in list(status.get("active") or ()):
                try:
                    job = await self.client.get(
                        JOBS, ref.get("name", ""), namespace=ref.get("namespace") or md["namespace"]
                    )
                except ClientError as e:
                    self.recorder.event(cj, WARNING, "FailedGet", f"Get job: {e}")
                    return cj, None, update, e
                if not await self._delete_job_of(cj, job):
                    return (
                        cj,
                        None,
                        update,
                        RuntimeError(
                            f"could not replace job {job['metadata'].get('namespace')}/{job['metadata']['name']}"
                        ),
                    )
                update = True

        request = job_from_template(cj, scheduled)
        try:
            created = await self.client.create(JOBS, request, namespace=md["namespace"])
            already_exists = False
        except ClientError as e:
            if getattr(e, "reason", "") == "Forbidden" and "being terminated" in str(e):
                return cj, None, update, e
            if not is_already_exists(e):
                self.recorder.event(cj, WARNING, "FailedCreate", f"Error creating job: {e}")
                return cj, None, update, e
            # created before a crash (then record it), or by someone else (then leave it)
            already_exists = True
            try:
                created = await self.client.get(JOBS, job_name, namespace=md["namespace"])
            except ClientError as e2:
                return cj, None, update, e2
            if not is_controlled_by(created, cj) or _in_active_list(cj, created["metadata"]["uid"]):
                return cj, None, update, None
        if already_exists:
            log.info("cronjob %s/%s: job %s already exists", md["namespace"], md["name"], job_name)
        else:
            self.recorder.event(cj, NORMAL, "SuccessfulCreate", f"Created job {created['metadata']['name']}")
        cmd = created["metadata"]
        status.setdefault("active", []).append(
            {
                "kind": "Job",
                "namespace": cmd.get("namespace"),
                "name": cmd["name"],
                "uid": cmd["uid"],
                "apiVersion": "batch/v1",
                "resourceVersion": cmd.get("resourceVersion", ""),
            }
        )
        status["lastScheduleTime"] = meta.format_time(scheduled)
        return cj, next_schedule_time_duration(cj, now, sched), True, None

    def _next_schedule_time(
        self, cj: Obj, now: dt.datetime, sched: Schedule
    ) -> tuple[dt.datetime | None, Exception | None]:
        """The most recent unmet schedule time, if any (TooManyMissedTimes past 100 of them)."""
        _, recent, missed, err = most_recent_schedule_time(cj, now, sched, include_starting_deadline=True)
        if recent is None or recent > now:
            return None, err
        if missed == MANY_MISSED:
            self.recorder.event(
                cj,
                WARNING,
                "TooManyMissedTimes",
                "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew",
            )
        return recent, err

    async def cleanup_finished_jobs(self, cj: Obj, jobs: list[Obj]) -> bool:
        """Delete finished Jobs beyond the history limits, oldest first."""
        spec = cj.get("spec") or {}
        if spec.get("successfulJobsHistoryLimit") is None and spec.get("failedJobsHistoryLimit") is None:
            return False
        succeeded = [j for j in jobs if finished_condition_type(j) == "Complete"]
        failed = [j for j in jobs if finished_condition_type(j) == "Failed"]
        update = False
        for found, limit in (
            (succeeded, spec.get("successfulJobsHistoryLimit")),
            (failed, spec.get("failedJobsHistoryLimit")),
        ):
            if limit is None or len(found) <= limit:
                continue
            found.sort(key=functools.cmp_to_key(_by_job_start_time))
            for job in found[: len(found) - limit]:
                if await self._delete_job_of(cj, job):
                    update = True
        return update

    async def _delete_job_of(self, cj: Obj, job: Obj) -> bool:
        """Delete a Job (and, through the garbage collector, its pods) and forget it as active."""
        jmd = job["metadata"]
        try:
            await self.client.delete(
                JOBS, jmd["name"], namespace=jmd.get("namespace"), propagation_policy="Background"
            )
        except ClientError as e:
            if not is_not_found(e):
                self.recorder.event(cj, WARNING, "FailedDelete", f"Deleted job: {e}")
                log.info("cronjob %s: deleting job %s: %s", cj["metadata"]["name"], jmd["name"], e)
                return False
        _delete_from_active_list(cj, jmd.get("uid", ""))
        self.recorder.event(cj, NORMAL, "SuccessfulDelete", f"Deleted job {jmd['name']}")
        return True


# -- schedule math -------------------------------------------------------------------------------


def format_schedule(cj: Obj, recorder: Any) -> str:
    """The schedule with the CronJob's zone as a TZ= prefix (a TZ in the schedule itself wins,
    with a warning: the API no longer accepts it on new objects)."""
    spec = cj.get("spec") or {}
    schedule = spec.get("schedule", "")
    if "TZ" in schedule:
        if recorder is not None:
            recorder.event(
                cj,
                WARNING,
                "UnsupportedSchedule",
                f'CRON_TZ or TZ used in schedule "{schedule}" is not officially supported, see '
                "https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/ for more details",
            )
        return schedule
    tz = spec.get("timeZone")
    if tz is not None:
        try:
            load_location(tz)
        except ValueError:
            return schedule
        return f"TZ={tz} {schedule}"
    return schedule


def most_recent_schedule_time(
    cj: Obj, now: dt.datetime, sched: Schedule, *, include_starting_deadline: bool
) -> tuple[dt.datetime, dt.datetime | None, int, Exception | None]:
    """mostRecentScheduleTime: (the last schedule time or the creation time, the most recent
    schedule time up to `now` after it or None, how many were missed (NONE/FEW/MANY), an error
    for a schedule whose two consecutive times are less than a second apart)."""
    md, spec, status = cj["metadata"], cj.get("spec") or {}, cj.get("status") or {}
    earliest = parse_time(status.get("lastScheduleTime")) or parse_time(md.get("creationTimestamp")) or now
    deadline = spec.get("startingDeadlineSeconds")
    if include_starting_deadline and deadline is not None:
        # nothing older than the deadline will be started
        earliest = max(earliest, now - dt.timedelta(seconds=deadline))
    t1 = sched.next(earliest)
    if t1 is None or now < t1:
        return earliest, None, NONE_MISSED, None
    t2 = sched.next(t1)
    if t2 is None or now < t2:
        return earliest, t1, NONE_MISSED, None
    # e.g. "59 23 31 2 *" parses, yet never comes
    between = round((t2 - t1).total_seconds())
    if between < 1:
        return (
            earliest,
            None,
            NONE_MISSED,
            ValueError("time difference between two schedules is less than 1 second"),
        )
    # an estimate of how many fit between t1 and now (exact for regular schedules)
    missed_count = int((now - t1).total_seconds()) // between + 1
    # jump close to now, then walk on: exact for irregular schedules too
    start = t1 + dt.timedelta(seconds=max(0, missed_count - 2) * between)
    t: dt.datetime | None = start
    if start > t1 and not isinstance(sched, ConstantDelaySchedule):
        t = sched.next(start - dt.timedelta(seconds=1))  # the first activation from the estimate on
        if t is None or t > now:
            t = t1  # the estimate overshot: walk from the first
    most_recent = t1
    while t is not None and t <= now:
        most_recent, t = t, sched.next(t)
    missed = MANY_MISSED if missed_count > TOO_MANY_MISSED else FEW_MISSED
    return earliest, most_recent, missed, None


def next_schedule_time_duration(cj: Obj, now: dt.datetime, sched: Schedule) -> float:
    """Seconds until the next schedule time after the most recent one, plus 100 ms."""
    earliest, recent, missed, err = most_recent_schedule_time(cj, now, sched, include_starting_deadline=False)
    if err is not None:
        base = now  # still requeue: aim for the next slot from now
    elif recent is None:
        base = earliest if missed == NONE_MISSED else now
    else:
        base = recent
    nxt = sched.next(base)
    if nxt is None:
        return 24 * 3600.0
    return (nxt - now).total_seconds() + NEXT_SCHEDULE_DELTA


def get_job_name(cj: Obj, scheduled: dt.datetime) -> str:
    return f"{cj['metadata']['name']}-{int(scheduled.timestamp()) // 60}"


def job_from_template(cj: Obj, scheduled: dt.datetime) -> Obj:
    """getJobFromTemplate2: the Job of one scheduled time."""
    spec = cj.get("spec") or {}
    template = spec.get("jobTemplate") or {}
    tmeta = template.get("metadata") or {}
    annotations = dict(tmeta.get("annotations") or {})
    try:
        zone = load_location(spec.get("timeZone") or "")
    except ValueError:
        zone = dt.UTC
    annotations[SCHEDULED_TIMESTAMP_ANNOTATION] = _rfc3339(scheduled.astimezone(zone))
    md: Obj = {
        "name": get_job_name(cj, scheduled),
        "namespace": cj["metadata"].get("namespace"),
        "annotations": annotations,
        "ownerReferences": [owner_reference(cj)],
    }
    if tmeta.get("labels"):
        md["labels"] = dict(tmeta["labels"])
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": md,
        "spec": meta.clone(template.get("spec") or {}),
    }


def _rfc3339(t: dt.datetime) -> str:
    """Go's time.RFC3339: "Z" for UTC, else the offset."""
    offset = t.utcoffset()
    if not offset:
        return t.strftime("%Y-%m-%dT%H:%M:%SZ")
    text = t.strftime("%Y-%m-%dT%H:%M:%S%z")
    return text[:-2] + ":" + text[-2:]


def _rfc1123z(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")


def _in_active_list(cj: Obj, uid: str) -> bool:
    return any(r.get("uid") == uid for r in (cj.get("status") or {}).get("active") or ())


def _delete_from_active_list(cj: Obj, uid: str) -> None:
    status = cj.setdefault("status", {})
    active = [r for r in status.get("active") or () if r.get("uid") != uid]
    if active:
        status["active"] = active
    else:
        status.pop("active", None)


def _by_job_start_time(a: Obj, b: Obj) -> int:
    """Oldest start first, Jobs not started last, names breaking ties."""
    sa, sb = (
        parse_time((a.get("status") or {}).get("startTime")),
        parse_time((b.get("status") or {}).get("startTime")),
    )
    if sa is None or sb is None:
        if sa is None and sb is None:
            return 0
        return -1 if sb is None else 1
    if sa == sb:
        na, nb = a["metadata"]["name"], b["metadata"]["name"]
        return (na > nb) - (na < nb)
    return -1 if sa < sb else 1
