"""k8py.client.workqueue: client-go's queue semantics, delays, rate limiters, shutdown and drain."""

from __future__ import annotations

import asyncio

import pytest

from k8py.client.workqueue import (
    BucketRateLimiter,
    DelayingQueue,
    ItemExponentialFailureRateLimiter,
    ItemFastSlowRateLimiter,
    MaxOfRateLimiter,
    RateLimitingQueue,
    ShutDown,
    WorkQueue,
    default_controller_rate_limiter,
)


async def _get(q: WorkQueue[str], timeout: float = 2.0) -> str:
    return await asyncio.wait_for(q.get(), timeout)


async def _nothing_ready(q: WorkQueue[str]) -> bool:
    """True if ``get`` would block: it did not return within a few loop iterations."""
    task = asyncio.create_task(q.get())
    for _ in range(5):
        await asyncio.sleep(0)
    if task.done():
        q.done(task.result())
        return False
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return True


async def test_fifo_and_dedup() -> None:
    q: WorkQueue[str] = WorkQueue()
    for item in ("a", "b", "a", "c", "b"):
        q.add(item)
    assert len(q) == q.len() == 3 and q.adds == 3
    assert [await _get(q) for _ in range(3)] == ["a", "b", "c"]
    assert await _nothing_ready(q)


async def test_item_added_while_processing_is_processed_again_after_done() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    assert await _get(q) == "a"
    q.add("a")  # dirty while processing: not handed out again yet
    q.add("a")
    assert len(q) == 0 and await _nothing_ready(q)
    q.add("b")
    assert await _get(q) == "b"
    q.done("a")  # now it is queued again, once
    assert len(q) == 1
    assert await _get(q) == "a"
    q.done("a")
    q.done("b")
    assert len(q) == 0 and await _nothing_ready(q)


async def test_never_two_workers_on_one_item() -> None:
    q: WorkQueue[int] = WorkQueue()
    in_flight: set[int] = set()
    processed: list[int] = []

    async def worker() -> None:
        while True:
            try:
                item = await q.get()
            except ShutDown:
                return
            assert item not in in_flight
            in_flight.add(item)
            await asyncio.sleep(0.001)
            in_flight.discard(item)
            processed.append(item)
            q.done(item)

    workers = [asyncio.create_task(worker()) for _ in range(5)]
    for round_ in range(20):
        for item in range(4):
            q.add(item)
        await asyncio.sleep(0.0005 * (round_ % 3))
    await asyncio.wait_for(q.shut_down_with_drain(), 5)
    await asyncio.wait_for(asyncio.gather(*workers), 5)
    assert set(processed) == {0, 1, 2, 3}
    assert not in_flight and len(q) == 0
    # Items re-added while processing are processed again after done(): the last adds were seen.
    assert len(processed) >= 4


async def test_get_waits_for_add() -> None:
    q: WorkQueue[str] = WorkQueue()
    getter = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    assert not getter.done()
    q.add("x")
    assert await asyncio.wait_for(getter, 1) == "x"


async def test_cancelled_getter_passes_its_wakeup_on() -> None:
    q: WorkQueue[str] = WorkQueue()
    first = asyncio.create_task(q.get())
    second = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    q.add("x")  # wakes `first`...
    first.cancel()  # ...which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await asyncio.wait_for(second, 1) == "x"


async def test_shut_down() -> None:
    q: WorkQueue[str] = WorkQueue()
    waiting = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    q.shut_down()
    with pytest.raises(ShutDown):
        await asyncio.wait_for(waiting, 1)
    assert q.shutting_down()

    q = WorkQueue()
    q.add("a")
    q.add("b")
    q.shut_down()
    q.add("c")  # ignored
    assert len(q) == 2
    assert [await _get(q), await _get(q)] == ["a", "b"]  # what was queued is still handed out
    with pytest.raises(ShutDown):
        await _get(q)


async def test_shut_down_with_drain_waits_for_queued_and_in_flight() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    q.add("b")
    item = await _get(q)
    drain = asyncio.create_task(q.shut_down_with_drain())
    await asyncio.sleep(0)
    assert not drain.done() and q.shutting_down()
    q.add("c")  # ignored once shutting down
    q.done(item)
    await asyncio.sleep(0)
    assert not drain.done()  # b is still queued
    assert await _get(q) == "b"
    q.done("b")
    await asyncio.wait_for(drain, 1)
    with pytest.raises(ShutDown):
        await _get(q)

    # An empty queue drains at once; shut_down() ends a drain that would wait forever.
    await asyncio.wait_for(WorkQueue().shut_down_with_drain(), 1)
    q = WorkQueue()
    q.add("stuck")
    await _get(q)
    drain = asyncio.create_task(q.shut_down_with_drain())
    await asyncio.sleep(0)
    q.shut_down()
    await asyncio.wait_for(drain, 1)


async def test_add_after() -> None:
    loop = asyncio.get_running_loop()
    q: DelayingQueue[str] = DelayingQueue()
    t0 = loop.time()
    q.add_after("late", 0.15)
    q.add_after("early", 0.05)
    q.add_after("now", 0)
    q.add_after("early", 0.5)  # already waiting with an earlier time: that one stands
    assert q.waiting() == 2 and len(q) == 1
    assert await _get(q) == "now"
    assert await _get(q) == "early"
    assert 0.05 <= loop.time() - t0 < 0.14
    assert await _get(q) == "late"
    assert loop.time() - t0 >= 0.15
    assert q.waiting() == 0

    # An earlier add_after moves a waiting item forward; shut down drops what waits.
    t0 = loop.time()
    q.add_after("x", 10)
    q.add_after("x", 0.02)
    assert await _get(q) == "x" and loop.time() - t0 < 1
    q.add_after("y", 0.01)
    q.shut_down()
    assert q.waiting() == 0
    with pytest.raises(ShutDown):
        await _get(q)


def test_exponential_failure_rate_limiter() -> None:
    rl = ItemExponentialFailureRateLimiter(0.001, 1.0)
    assert [rl.when("a") for _ in range(5)] == [0.001, 0.002, 0.004, 0.008, 0.016]
    assert rl.when("b") == 0.001
    assert rl.num_requeues("a") == 5 and rl.num_requeues("b") == 1
    for _ in range(20):
        rl.when("a")
    assert rl.when("a") == 1.0  # capped
    rl.forget("a")
    assert rl.num_requeues("a") == 0 and rl.when("a") == 0.001
    big = ItemExponentialFailureRateLimiter(0.005, 1000.0)
    for _ in range(2000):  # no overflow however often it fails
        delay = big.when("x")
    assert delay == 1000.0


def test_fast_slow_rate_limiter() -> None:
    rl = ItemFastSlowRateLimiter(0.01, 5.0, 3)
    assert [rl.when("a") for _ in range(5)] == [0.01, 0.01, 0.01, 5.0, 5.0]
    assert rl.num_requeues("a") == 5
    rl.forget("a")
    assert rl.when("a") == 0.01


def test_bucket_rate_limiter() -> None:
    now = [100.0]
    rl = BucketRateLimiter(qps=2, burst=3, clock=lambda: now[0])
    assert [rl.when(i) for i in range(5)] == [0.0, 0.0, 0.0, 0.5, 1.0]  # burst, then 1/qps apart
    now[0] += 1.0  # two tokens refill the debt of two
    assert rl.when("x") == 0.5
    now[0] += 100.0  # refills to the burst, no more
    assert [rl.when(i) for i in range(4)] == [0.0, 0.0, 0.0, 0.5]
    assert rl.num_requeues("x") == 0


def test_max_of_and_default_rate_limiters() -> None:
    now = [0.0]
    rl = MaxOfRateLimiter(ItemExponentialFailureRateLimiter(0.01, 10.0), BucketRateLimiter(1, 2, clock=lambda: now[0]))
    assert [rl.when("a") for _ in range(4)] == [0.01, 0.02, 1.0, 2.0]
    assert rl.num_requeues("a") == 4
    rl.forget("a")
    assert rl.num_requeues("a") == 0
    default = default_controller_rate_limiter()
    assert default.when("k") == 0.005 and default.when("k") == 0.01


async def test_rate_limiting_queue() -> None:
    loop = asyncio.get_running_loop()
    q: RateLimitingQueue[str] = RateLimitingQueue(ItemExponentialFailureRateLimiter(0.02, 1.0), name="test")
    q.add("k")
    assert await _get(q) == "k"
    t0 = loop.time()
    q.add_rate_limited("k")  # a failure: back in 20 ms (k is processing: it waits for done too)
    q.done("k")
    assert await _get(q) == "k" and loop.time() - t0 >= 0.02
    q.add_rate_limited("k")
    q.done("k")
    t0 = loop.time()
    assert await _get(q) == "k" and loop.time() - t0 >= 0.03  # 40 ms after the second failure
    assert q.num_requeues("k") == 2 and q.retries == 2
    q.forget("k")
    assert q.num_requeues("k") == 0
    q.done("k")
    q.shut_down()
    q.add_rate_limited("k")
    assert q.retries == 2 and await _nothing_ready_or_shutdown(q)
    assert isinstance(RateLimitingQueue().rate_limiter, MaxOfRateLimiter)


async def _nothing_ready_or_shutdown(q: WorkQueue[str]) -> bool:
    with pytest.raises(ShutDown):
        await _get(q)
    return True
