"""The scheduling queue (``internalqueue.PriorityQueue``): activeQ, backoffQ, unschedulable pods.

* **activeQ** is a heap ordered by the profile's QueueSort plugin (PrioritySort: priority,
  then arrival); ``pop`` waits for it.
* **backoffQ** holds pods that failed and wait out their backoff (1 s doubling up to 10 s
  by default, per attempt) before returning to activeQ; flushed every second.
* **unschedulablePods** holds pods that were rejected by plugins. They leave only when a
  cluster event that one of those plugins registered for happens (a node added, a pod
  deleted, ...; ``move_all_to_active_or_backoff``), or after five minutes regardless.
  Pods gated by PreEnqueue plugins (scheduling gates) wait here too, until an update lifts
  the gate.

A move request that arrives while a pod is being scheduled would be lost if the pod then
went to unschedulablePods; like upstream, the queue remembers the cycle of the last move
request and sends a pod that failed in an earlier-or-equal cycle to backoffQ instead.

Removal from the heaps is lazy: an entry is invalidated and skipped when popped.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable, Mapping
from typing import Any

from k8py.scheduler.framework.handle import Nominator
from k8py.scheduler.framework.interface import ClusterEvent, ClusterEventWithHint, Code, QueueingHint
from k8py.scheduler.framework.types import Obj, PodInfo, QueuedPodInfo

UNSCHEDULABLE_FLUSH_INTERVAL = 30.0
MAX_IN_UNSCHEDULABLE = 5 * 60.0

Less = Callable[[QueuedPodInfo, QueuedPodInfo], bool]
PreEnqueue = Callable[[Obj], Any]  # returns a Status or None


class _Entry:
    __slots__ = ("qpi", "less", "valid")

    def __init__(self, qpi: QueuedPodInfo, less: Less) -> None:
        self.qpi = qpi
        self.less = less
        self.valid = True

    def __lt__(self, other: _Entry) -> bool:
        return self.less(self.qpi, other.qpi)


class SchedulingQueue:
    def __init__(
        self,
        less: Less,
        *,
        pre_enqueue: Callable[[Obj], Any] | None = None,
        events: Mapping[str, list[ClusterEventWithHint]] | None = None,
        nominator: Nominator | None = None,
        initial_backoff: float = 1.0,
        max_backoff: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.less = less
        self.pre_enqueue = pre_enqueue
        self.events = events or {}
        self.nominator = nominator or Nominator()
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.clock = clock
        self._active: list[_Entry] = []
        self._active_entries: dict[str, _Entry] = {}
        self._backoff: list[tuple[float, int, QueuedPodInfo]] = []
        self._backoff_pods: dict[str, QueuedPodInfo] = {}
        self.unschedulable: dict[str, QueuedPodInfo] = {}
        self.in_flight: dict[str, QueuedPodInfo] = {}
        self.scheduling_cycle = 0
        self.move_request_cycle = -1
        self._seq = itertools.count()
        self._wakeup = asyncio.Event()
        self._closed = False
        self.incoming: dict[str, int] = {}  # metrics: pods added to each queue, by event

    # -- sizes ----------------------------------------------------------------------------

    def pending(self) -> dict[str, int]:
        gated = sum(1 for q in self.unschedulable.values() if q.gated)
        return {
            "active": len(self._active_entries),
            "backoff": len(self._backoff_pods),
            "unschedulable": len(self.unschedulable) - gated,
            "gated": gated,
        }

    def __len__(self) -> int:
        return len(self._active_entries) + len(self._backoff_pods) + len(self.unschedulable)

    # -- adding ---------------------------------------------------------------------------

    def add(self, pod: Obj) -> None:
        """A new unscheduled pod (informer add)."""
        pi = PodInfo(pod)
        qpi = QueuedPodInfo(pi, next(self._seq))
        self.nominator.add(pi)
        self._to_active_or_gated(qpi, "PodAdd")

    def _to_active_or_gated(self, qpi: QueuedPodInfo, event: str) -> bool:
        status = self.pre_enqueue(qpi.pod) if self.pre_enqueue is not None else None
        if status is not None and status.code != Code.SUCCESS:
            qpi.gated = True
            qpi.unschedulable_plugins = {status.plugin}
            self.unschedulable[qpi.pod_info.uid] = qpi
            return False
        qpi.gated = False
        self._push_active(qpi, event)
        return True

    def _push_active(self, qpi: QueuedPodInfo, event: str) -> None:
        uid = qpi.pod_info.uid
        old = self._active_entries.get(uid)
        if old is not None:
            old.valid = False
        entry = _Entry(qpi, self.less)
        self._active_entries[uid] = entry
        heapq.heappush(self._active, entry)
        self.incoming[f"active:{event}"] = self.incoming.get(f"active:{event}", 0) + 1
        self._wakeup.set()

    def _push_backoff(self, qpi: QueuedPodInfo, event: str) -> None:
        uid = qpi.pod_info.uid
        self._backoff_pods[uid] = qpi
        heapq.heappush(self._backoff, (qpi.backoff_expiration, qpi.seq, qpi))
        self.incoming[f"backoff:{event}"] = self.incoming.get(f"backoff:{event}", 0) + 1

    def update(self, old: Obj, new: Obj) -> None:
        """An unscheduled pod changed (informer update)."""
        uid = new["metadata"].get("uid", "")
        if uid in self.in_flight:
            self.in_flight[uid].pod_info.update(new)
            return
        entry = self._active_entries.get(uid)
        if entry is not None:
            self.nominator.update(PodInfo(old), entry.qpi.pod_info)
            entry.qpi.pod_info.update(new)
            self._push_active(entry.qpi, "PodUpdate")  # re-sort (priority may change)
            return
        qpi = self._backoff_pods.get(uid)
        if qpi is not None:
            qpi.pod_info.update(new)
            self.nominator.update(PodInfo(old), qpi.pod_info)
            return
        qpi = self.unschedulable.get(uid)
        if qpi is not None:
            qpi.pod_info.update(new)
            self.nominator.update(PodInfo(old), qpi.pod_info)
            if _spec_or_labels_changed(old, new):
                del self.unschedulable[uid]
                if qpi.gated:
                    self._to_active_or_gated(qpi, "PodUpdate")
                elif self._backing_off(qpi):
                    self._push_backoff(qpi, "PodUpdate")
                else:
                    self._push_active(qpi, "PodUpdate")
            return
        self.add(new)

    def delete(self, pod: Obj) -> None:
        uid = pod["metadata"].get("uid", "")
        entry = self._active_entries.pop(uid, None)
        if entry is not None:
            entry.valid = False
            self.nominator.delete(entry.qpi.pod_info)
        qpi = self._backoff_pods.pop(uid, None) or self.unschedulable.pop(uid, None)
        if qpi is not None:
            self.nominator.delete(qpi.pod_info)
        in_flight = self.in_flight.get(uid)
        if in_flight is not None:
            self.nominator.delete(in_flight.pod_info)

    # -- popping --------------------------------------------------------------------------

    async def pop(self) -> QueuedPodInfo | None:
        """The next pod to schedule; None once closed."""
        while True:
            while self._active:
                entry = heapq.heappop(self._active)
                if not entry.valid:
                    continue
                qpi = entry.qpi
                del self._active_entries[qpi.pod_info.uid]
                self.scheduling_cycle += 1
                qpi.attempts += 1
                if qpi.initial_attempt_timestamp is None:
                    qpi.initial_attempt_timestamp = self.clock()
                self.in_flight[qpi.pod_info.uid] = qpi
                return qpi
            if self._closed:
                return None
            self._wakeup.clear()
            await self._wakeup.wait()

    def done(self, uid: str) -> None:
        """The pod's scheduling attempt is over (bound, or handed back to the queue)."""
        self.in_flight.pop(uid, None)

    def close(self) -> None:
        self._closed = True
        self._wakeup.set()

    # -- failures -------------------------------------------------------------------------

    def backoff_duration(self, qpi: QueuedPodInfo) -> float:
        d = self.initial_backoff
        for _ in range(1, qpi.attempts):
            d *= 2
            if d >= self.max_backoff:
                return self.max_backoff
        return d

    def _backing_off(self, qpi: QueuedPodInfo) -> bool:
        qpi.backoff_expiration = qpi.timestamp + self.backoff_duration(qpi)
        return qpi.backoff_expiration > self.clock()

    def add_unschedulable_if_not_present(self, qpi: QueuedPodInfo, pod_scheduling_cycle: int) -> None:
        """Hand a pod that failed its attempt back: to backoffQ (an error, or a move request came
        in during its cycle) or to unschedulablePods."""
        uid = qpi.pod_info.uid
        self.in_flight.pop(uid, None)
        if uid in self._active_entries or uid in self._backoff_pods or uid in self.unschedulable:
            return
        qpi.timestamp = self.clock()
        if (
            not qpi.unschedulable_plugins
            and not qpi.pending_plugins
            or (self.move_request_cycle >= pod_scheduling_cycle)
        ):
            self._backing_off(qpi)
            self._push_backoff(qpi, "ScheduleAttemptFailure")
        else:
            self.unschedulable[uid] = qpi
        self.nominator.add(qpi.pod_info)

    # -- moving ---------------------------------------------------------------------------

    def flush_backoff_completed(self) -> None:
        now = self.clock()
        while self._backoff and self._backoff[0][0] <= now:
            _, _, qpi = heapq.heappop(self._backoff)
            if self._backoff_pods.get(qpi.pod_info.uid) is not qpi:
                continue
            del self._backoff_pods[qpi.pod_info.uid]
            self._push_active(qpi, "BackoffComplete")

    def flush_unschedulable_left_over(self) -> None:
        now = self.clock()
        stale = [
            q for q in self.unschedulable.values() if not q.gated and now - q.timestamp > MAX_IN_UNSCHEDULABLE
        ]
        self._move(stale, "UnschedulableTimeout")

    def move_all_to_active_or_backoff(
        self,
        event: ClusterEvent,
        old: Obj | None = None,
        new: Obj | None = None,
        *,
        pre_check: Callable[[Obj], bool] | None = None,
    ) -> None:
        """A cluster event: move the unschedulable pods it may help (by their rejecting plugins'
        registered events and queueing hints)."""
        movable = [
            q
            for q in self.unschedulable.values()
            if not q.gated
            and (pre_check is None or pre_check(q.pod))
            and self._worth_requeuing(q, event, old, new)
        ]
        self._move(movable, event.label or f"{event.resource}{event.action!r}")
        self.move_request_cycle = self.scheduling_cycle

    def _worth_requeuing(
        self, qpi: QueuedPodInfo, event: ClusterEvent, old: Obj | None, new: Obj | None
    ) -> bool:
        plugins = qpi.unschedulable_plugins | qpi.pending_plugins
        if not plugins:
            return True
        for name in plugins:
            for reg in self.events.get(name, ()):
                if not event.matches(reg.event):
                    continue
                if reg.hint is None:
                    return True
                try:
                    if reg.hint(qpi.pod, old, new) == QueueingHint.QUEUE:
                        return True
                except Exception:  # a failing hint must not strand the pod
                    return True
        return False

    def _move(self, pods: list[QueuedPodInfo], event: str) -> None:
        for qpi in pods:
            uid = qpi.pod_info.uid
            if self.unschedulable.pop(uid, None) is None:
                continue
            if self._backing_off(qpi):
                self._push_backoff(qpi, event)
            else:
                self._push_active(qpi, event)

    async def run(self) -> None:
        """Flush backoffQ every second and stale unschedulable pods every 30 s, until cancelled."""
        last_unschedulable_flush = self.clock()
        while True:
            await asyncio.sleep(1.0)
            self.flush_backoff_completed()
            if self.clock() - last_unschedulable_flush >= UNSCHEDULABLE_FLUSH_INTERVAL:
                self.flush_unschedulable_left_over()
                last_unschedulable_flush = self.clock()


def _spec_or_labels_changed(old: Obj, new: Obj) -> bool:
    """isPodUpdated: anything but status and server-managed metadata changed."""

    def strip(p: Obj) -> tuple[Any, ...]:
        meta = p.get("metadata") or {}
        return (p.get("spec"), meta.get("labels"), meta.get("annotations"), meta.get("finalizers"))

    return strip(old) != strip(new)
