"""Pod workers: one task per pod, so that a pod's syncs never overlap (upstream pod_workers.go).

A pod moves through syncing -> terminating -> terminated. ``update_pod`` hands the newest spec
to the pod's worker and wakes it; ``wake`` (the PLEG's events, back-off expiry) re-runs a sync
with the spec it has; ``remove_pod`` says the pod is gone from every config source. The worker
calls the kubelet's three hooks, as upstream's podWorkers call syncPod, syncTerminatingPod and
syncTerminatedPod:

- ``sync_pod(pod) -> bool``: make the pod's containers what its spec says; True once the pod
  is terminal (every container finished for good);
- ``sync_terminating_pod(pod, grace)``: stop everything, within the grace period;
- ``sync_terminated_pod(pod, removed)``: final status, clean-up; ``removed`` once the pod is gone.

A worker also wakes every ``resync`` seconds (volumes refresh, statuses are re-checked) and at the
time the pod's sync asked for (``request_resync``: a back-off ending).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

Obj = dict[str, Any]


class WorkState(enum.Enum):
    SYNCING = "syncing"
    TERMINATING = "terminating"
    TERMINATED = "terminated"


@dataclass
class _Worker:
    pod: Obj
    state: WorkState = WorkState.SYNCING
    removed: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    next_sync: float | None = None
    task: asyncio.Task[None] | None = None


class PodWorkers:
    def __init__(
        self,
        *,
        sync_pod: Callable[[Obj], Awaitable[bool]],
        sync_terminating_pod: Callable[[Obj, int], Awaitable[None]],
        sync_terminated_pod: Callable[[Obj, bool], Awaitable[None]],
        resync: float = 10.0,
    ) -> None:
        self._sync_pod = sync_pod
        self._sync_terminating = sync_terminating_pod
        self._sync_terminated = sync_terminated_pod
        self.resync = resync
        self._workers: dict[str, _Worker] = {}

    def update_pod(self, pod: Obj) -> None:
        uid = pod["metadata"]["uid"]
        w = self._workers.get(uid)
        if w is None:
            w = self._workers[uid] = _Worker(pod=pod)
            w.task = asyncio.create_task(self._run(uid, w), name=f"pod-worker:{pod['metadata']['name']}")
        else:
            w.pod = pod
        w.wake.set()

    def remove_pod(self, uid: str) -> None:
        w = self._workers.get(uid)
        if w is not None:
            w.removed = True
            w.wake.set()

    def wake(self, uid: str) -> None:
        w = self._workers.get(uid)
        if w is not None:
            w.wake.set()

    def request_resync(self, uid: str, after: float) -> None:
        """Sync this pod again in ``after`` seconds (sooner if something else wakes it)."""
        w = self._workers.get(uid)
        if w is not None:
            loop = asyncio.get_running_loop()
            at = loop.time() + after
            if w.next_sync is None or at < w.next_sync:
                w.next_sync = at

    def state(self, uid: str) -> WorkState | None:
        w = self._workers.get(uid)
        return w.state if w else None

    def known(self) -> set[str]:
        return set(self._workers)

    async def stop(self) -> None:
        tasks = [w.task for w in self._workers.values() if w.task]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._workers.clear()

    async def _run(self, uid: str, w: _Worker) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                w.wake.clear()
                w.next_sync = None
                pod = w.pod
                try:
                    await self._step(w, pod)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("syncing pod %s/%s", pod["metadata"].get("namespace"), pod["metadata"]["name"])
                    self.request_resync(uid, 1.0)
                if w.state is WorkState.TERMINATED and w.removed:
                    return
                timeout = self.resync
                if w.next_sync is not None:
                    timeout = max(0.0, min(timeout, w.next_sync - loop.time()))
                with contextlib.suppress(TimeoutError):  # (not wait_for: see SharedIndexInformer)
                    async with asyncio.timeout(timeout):
                        await w.wake.wait()
        finally:
            if self._workers.get(uid) is w:
                del self._workers[uid]

    async def _step(self, w: _Worker, pod: Obj) -> None:
        if w.state is WorkState.SYNCING:
            if w.removed or pod["metadata"].get("deletionTimestamp"):
                w.state = WorkState.TERMINATING
            elif await self._sync_pod(pod):
                w.state = WorkState.TERMINATING
        if w.state is WorkState.TERMINATING:
            await self._sync_terminating(pod, grace_period(pod))
            w.state = WorkState.TERMINATED
        if w.state is WorkState.TERMINATED:
            await self._sync_terminated(pod, w.removed)


def grace_period(pod: Obj) -> int:
    """The pod's termination grace period: the deletion's, else the spec's (default 30 s)."""
    md, spec = pod["metadata"], pod.get("spec") or {}
    if md.get("deletionGracePeriodSeconds") is not None:
        return int(md["deletionGracePeriodSeconds"])
    value = spec.get("terminationGracePeriodSeconds")
    return 30 if value is None else int(value)
