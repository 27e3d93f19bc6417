"""The TTL-after-finished controller (``pkg/controller/ttlafterfinished``): deletes a finished
Job ``ttlSecondsAfterFinished`` seconds after it finished.

A Job is queued when it is added or updated, finished (Complete or Failed) and has a TTL. The sync
computes the expiry from the lastTransitionTime of the finishing condition; before it, the key is
requeued for the moment it expires. At expiry the Job is read fresh from the API server (the TTL
may have just been changed) and, still expired, deleted with ``propagationPolicy: Foreground`` and
a UID precondition, as upstream: the Job stays (with the ``foregroundDeletion`` finalizer) until
the garbage collector has deleted its pods.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from k8py.client import ClientError, is_not_found
from k8py.client.cache import split_meta_namespace_key
from k8py.client.informer import ResourceEventHandlerFuncs
from k8py.client.resources import JOBS
from k8py.controllers.base import QueueController
from k8py.controllers.jobutil import is_job_finished, job_finish_time

log = logging.getLogger(__name__)

Obj = dict[str, Any]


def needs_cleanup(job: Obj) -> bool:
    return (job.get("spec") or {}).get("ttlSecondsAfterFinished") is not None and is_job_finished(job)


class TTLAfterFinishedController(QueueController):
    name = "ttl-after-finished"

    def __init__(self, ctx: Any) -> None:
        super().__init__(workers=ctx.options.workers("ttl-after-finished", 5))
        self.client = ctx.client
        self.now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
        self.jobs = ctx.informers.informer_for(JOBS)
        self.jobs.add_event_handler(
            ResourceEventHandlerFuncs(
                add_func=lambda j, _i: self._changed(j), update_func=lambda _o, n: self._changed(n)
            )
        )
        self.synced = [self.jobs]

    def _changed(self, job: Obj) -> None:
        if not job["metadata"].get("deletionTimestamp") and needs_cleanup(job):
            self.enqueue(job)

    async def sync(self, key: str) -> None:
        ns, name = split_meta_namespace_key(key)
        job = self.jobs.indexer.get_by_key(key)
        if job is None or job["metadata"].get("deletionTimestamp") or not needs_cleanup(job):
            return
        if self._process_ttl(key, job) is None:
            return
        # the cached TTL may be stale: check the Job as it is now before deleting it
        try:
            fresh = await self.client.get(JOBS, name, namespace=ns)
        except ClientError as e:
            if is_not_found(e):
                return
            raise
        if fresh["metadata"].get("deletionTimestamp") or not needs_cleanup(fresh):
            return
        if self._process_ttl(key, fresh) is None:
            return
        log.info("ttl-after-finished: cleaning up Job %s", key)
        try:
            await self.client.delete(
                JOBS,
                name,
                namespace=ns,
                propagation_policy="Foreground",
                preconditions={"uid": fresh["metadata"]["uid"]},
            )
        except ClientError as e:
            if not is_not_found(e):
                raise

    def _process_ttl(self, key: str, job: Obj) -> dt.datetime | None:
        """The expiry time if the TTL has expired; else requeue the key for it and return None."""
        finished = job_finish_time(job)
        if finished is None:
            raise ValueError(f"unable to find the time when the Job {key} finished")
        now = self.now()
        if finished > now:
            log.warning(
                "ttl-after-finished: Job %s finished in the future (clock skew?): cleanup deferred", key
            )
        expire_at = finished + dt.timedelta(seconds=int(job["spec"]["ttlSecondsAfterFinished"]))
        left = (expire_at - now).total_seconds()
        if left <= 0:
            return expire_at
        self.enqueue_after(key, left)
        return None
