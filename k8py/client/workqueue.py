"""Work queues: client-go's ``util/workqueue`` (queue, delaying queue, rate-limiting queue) on asyncio.

A controller's event handlers put *keys* on a :class:`WorkQueue`; its workers ``get()`` a key,
reconcile it, and call ``done(key)``.  The queue promises what client-go's does:

* **Fair**: keys come out in the order they went in.
* **Stingy**: a key added many times before a worker takes it is processed once (the queue
  holds a *dirty* set), and a key is never handed to two workers at once (a *processing* set).
  A key added while it is being processed is not handed out again until ``done()``: then it
  goes to the back of the queue and is processed once more, so that no change is missed.
* **Shutdown**: ``shut_down()`` makes ``add`` a no-op; ``get()`` still hands out what is
  queued, then raises :class:`ShutDown` to every worker.  ``shut_down_with_drain()`` also
  waits until every queued and in-flight key is ``done()``.

A :class:`DelayingQueue` adds ``add_after(key, delay)``: the key waits in a heap (one entry
per key, the earliest time wins) and one ``loop.call_at`` timer, set for the earliest entry,
moves due keys onto the queue; no task runs while nothing waits.  A
:class:`RateLimitingQueue` adds ``add_rate_limited(key)``, delayed by a :class:`RateLimiter`
that remembers each key's failures until ``forget(key)``: the per-item exponential backoff
(5 ms doubling to 1000 s) and an overall token bucket (10 qps, burst 100), combined by
:func:`default_controller_rate_limiter` as in kube's controllers.

Everything runs on one event loop and nothing here blocks: ``add`` and ``done`` are plain
calls (event handlers are synchronous), only ``get`` and ``shut_down_with_drain`` await.
Items must be hashable; keys are usually ``"namespace/name"`` strings.

Counters for metrics: ``adds`` (items accepted), ``retries`` (rate-limited adds); ``len(q)``
is the depth.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, Protocol, TypeVar

T = TypeVar("T", bound=Hashable)


class ShutDown(Exception):
    """``get()`` on a queue that is shut down and empty: the worker should exit."""


class WorkQueue(Generic[T]):
    """client-go's workqueue.Type; see the module docstring."""

    def __init__(self, *, name: str = "") -> None:
        self.name = name
        self._queue: deque[T] = deque()
        self._dirty: set[T] = set()
        self._processing: set[T] = set()
        self._getters: deque[asyncio.Future[None]] = deque()
        self._shutting_down = False
        self._drained: asyncio.Event | None = None
        self.adds = 0

    def add(self, item: T) -> None:
        """Mark ``item`` as needing processing (no-op if already queued, or shutting down)."""
        if self._shutting_down or item in self._dirty:
            return
        self.adds += 1
        self._dirty.add(item)
        if item in self._processing:
            return  # done() re-queues it
        self._queue.append(item)
        self._wake_one()

    async def get(self) -> T:
        """The next item, once there is one; it is the caller's until ``done(item)``.

        Raises :class:`ShutDown` when the queue is shut down and empty.
        """
        while not self._queue:
            if self._shutting_down:
                raise ShutDown(self.name)
            waiter = asyncio.get_running_loop().create_future()
            self._getters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                # If we were woken for an item and cancelled before taking it, pass the wake-up on.
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()
                else:
                    waiter.cancel()
                raise
        item = self._queue.popleft()
        self._processing.add(item)
        self._dirty.discard(item)
        return item

    def done(self, item: T) -> None:
        """The caller has finished with ``item``; if it was added meanwhile, it is queued again."""
        self._processing.discard(item)
        if item in self._dirty:
            self._queue.append(item)
            self._wake_one()
        elif self._drained is not None and not self._processing and not self._queue:
            self._drained.set()

    def len(self) -> int:
        """How many items wait to be handed out (client-go's Len)."""
        return len(self._queue)

    def __len__(self) -> int:
        return len(self._queue)

    def shut_down(self) -> None:
        """Accept no new items; workers get what is queued, then :class:`ShutDown`.

        Also ends a :meth:`shut_down_with_drain` that is waiting.
        """
        self._shutting_down = True
        if self._drained is not None:
            self._drained.set()
            self._drained = None
        self._on_shut_down()
        self._wake_all()

    async def shut_down_with_drain(self) -> None:
        """Shut down, then wait until every queued and in-flight item is ``done()``.

        Workers must go on calling ``done`` or this waits forever (``shut_down()`` ends the
        wait).  client-go waits for the in-flight items only; waiting for the queued ones too
        is what "drained" means to a caller, and equal whenever workers run.
        """
        self._shutting_down = True
        self._on_shut_down()
        self._wake_all()
        if not (self._processing or self._queue):
            return
        if self._drained is None:
            self._drained = asyncio.Event()
        await self._drained.wait()

    def shutting_down(self) -> bool:
        return self._shutting_down

    def _on_shut_down(self) -> None:
        """Subclasses' hook: stop whatever would add items later."""

    def _wake_one(self) -> None:
        while self._getters:
            waiter = self._getters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _wake_all(self) -> None:
        while self._getters:
            waiter = self._getters.popleft()
            if not waiter.done():
                waiter.set_result(None)


class DelayingQueue(WorkQueue[T]):
    """A WorkQueue with ``add_after``; see the module docstring."""

    def __init__(self, *, name: str = "") -> None:
        super().__init__(name=name)
        self._waiting: dict[T, float] = {}  # item -> when it is due (loop time)
        self._heap: list[tuple[float, int, T]] = []  # entries not matching _waiting are stale
        self._seq = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf

    def add_after(self, item: T, delay: float) -> None:
        """Add ``item`` once ``delay`` seconds have passed (at once if ``delay <= 0``).

        An item already waiting keeps the earlier of its two due times.
        """
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(item)
            return
        loop = asyncio.get_running_loop()
        at = loop.time() + delay
        if at >= self._waiting.get(item, math.inf):
            return
        self._waiting[item] = at
        heapq.heappush(self._heap, (at, next(self._seq), item))
        if at < self._timer_at:
            self._arm(loop, at)

    def waiting(self) -> int:
        """How many items wait for their delay to pass."""
        return len(self._waiting)

    def _on_shut_down(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer, self._timer_at = None, math.inf
        self._waiting.clear()
        self._heap.clear()

    def _arm(self, loop: asyncio.AbstractEventLoop, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_at = loop.call_at(at, self._fire), at

    def _fire(self) -> None:
        self._timer, self._timer_at = None, math.inf
        loop = asyncio.get_running_loop()
        now = loop.time()
        heap = self._heap
        while heap and heap[0][0] <= now:
            at, _, item = heapq.heappop(heap)
            if self._waiting.get(item) == at:
                del self._waiting[item]
                self.add(item)
        while heap and self._waiting.get(heap[0][2]) != heap[0][0]:
            heapq.heappop(heap)  # drop stale entries so the timer is not armed for them
        if heap:
            self._arm(loop, heap[0][0])


# ---- rate limiters -------------------------------------------------------------------------------


class RateLimiter(Protocol):
    """How long an item waits before its next retry (client-go's workqueue.RateLimiter)."""

    def when(self, item: Hashable) -> float:
        """The delay for ``item``'s next retry (recording the retry)."""
        ...

    def forget(self, item: Hashable) -> None:
        """Stop tracking ``item`` (it succeeded, or was given up on)."""
        ...

    def num_requeues(self, item: Hashable) -> int:
        """How many times ``item`` was rate-limited since it was last forgotten."""
        ...


class ItemExponentialFailureRateLimiter:
    """``base_delay * 2 ** failures``, capped at ``max_delay``, per item."""

    def __init__(self, base_delay: float = 0.005, max_delay: float = 1000.0) -> None:
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._failures: dict[Hashable, int] = {}

    def when(self, item: Hashable) -> float:
        exp = self._failures.get(item, 0)
        self._failures[item] = exp + 1
        if exp > 1023:  # 2.0 ** 1024 overflows
            return self.max_delay
        return min(self.base_delay * 2.0**exp, self.max_delay)

    def forget(self, item: Hashable) -> None:
        self._failures.pop(item, None)

    def num_requeues(self, item: Hashable) -> int:
        return self._failures.get(item, 0)


class ItemFastSlowRateLimiter:
    """``fast_delay`` for an item's first ``max_fast_attempts`` retries, ``slow_delay`` after."""

    def __init__(self, fast_delay: float, slow_delay: float, max_fast_attempts: int) -> None:
        self.fast_delay = fast_delay
        self.slow_delay = slow_delay
        self.max_fast_attempts = max_fast_attempts
        self._attempts: dict[Hashable, int] = {}

    def when(self, item: Hashable) -> float:
        attempts = self._attempts.get(item, 0) + 1
        self._attempts[item] = attempts
        return self.fast_delay if attempts <= self.max_fast_attempts else self.slow_delay

    def forget(self, item: Hashable) -> None:
        self._attempts.pop(item, None)

    def num_requeues(self, item: Hashable) -> int:
        return self._attempts.get(item, 0)


class BucketRateLimiter:
    """An overall token bucket (``qps`` refill, ``burst`` size), as golang.org/x/time/rate reserves.

    Every ``when`` takes a token, going into debt when the bucket is empty; the delay is the
    time the debt takes to refill.  Items are not tracked: ``forget`` does nothing and
    ``num_requeues`` is 0.
    """

    def __init__(self, qps: float = 10, burst: int = 100, *, clock: Callable[[], float] = time.monotonic) -> None:
        if qps <= 0:
            raise ValueError("qps must be positive")
        self.qps = qps
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()

    def when(self, item: Hashable) -> float:
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.qps)
        self._last = now
        self._tokens -= 1
        return max(0.0, -self._tokens / self.qps)

    def forget(self, item: Hashable) -> None:
        pass

    def num_requeues(self, item: Hashable) -> int:
        return 0


class MaxOfRateLimiter:
    """The longest delay of several limiters (each one records every retry)."""

    def __init__(self, *limiters: RateLimiter) -> None:
        if not limiters:
            raise ValueError("MaxOfRateLimiter needs at least one limiter")
        self.limiters = limiters

    def when(self, item: Hashable) -> float:
        return max(limiter.when(item) for limiter in self.limiters)

    def forget(self, item: Hashable) -> None:
        for limiter in self.limiters:
            limiter.forget(item)

    def num_requeues(self, item: Hashable) -> int:
        return max(limiter.num_requeues(item) for limiter in self.limiters)


def default_controller_rate_limiter() -> RateLimiter:
    """kube's controllers' limiter: per-item 5 ms..1000 s exponential, overall 10 qps burst 100."""
    return MaxOfRateLimiter(ItemExponentialFailureRateLimiter(0.005, 1000.0), BucketRateLimiter(10, 100))


class RateLimitingQueue(DelayingQueue[T]):
    """A DelayingQueue whose retries wait as ``rate_limiter`` says; see the module docstring."""

    def __init__(self, rate_limiter: RateLimiter | None = None, *, name: str = "") -> None:
        super().__init__(name=name)
        self.rate_limiter = rate_limiter if rate_limiter is not None else default_controller_rate_limiter()
        self.retries = 0

    def add_rate_limited(self, item: T) -> None:
        """Add ``item`` after the delay the rate limiter gives it (a retry after a failure)."""
        if self._shutting_down:
            return
        self.retries += 1
        self.add_after(item, self.rate_limiter.when(item))

    def forget(self, item: T) -> None:
        """``item`` succeeded: its next failure starts the backoff over."""
        self.rate_limiter.forget(item)

    def num_requeues(self, item: T) -> int:
        return self.rate_limiter.num_requeues(item)
