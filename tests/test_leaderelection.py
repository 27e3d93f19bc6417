"""k8py.client.leaderelection: electors competing for a real Lease on the API server.

Durations are short (lease 2 s, renew deadline 1.5 s, retry 0.2 s) so that takeovers happen
within the test's patience; every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from k8py.client import RESTClient
from k8py.client.leaderelection import LeaderElector, micro_time
from k8py.client.resources import LEASES
from tests.conftest import Cluster

LEASE, RENEW, RETRY = 2.0, 1.5, 0.2
MICRO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


@pytest.fixture
async def client(cluster: Cluster) -> AsyncIterator[RESTClient]:
    async with RESTClient.from_kubeconfig(cluster.kubeconfig, component="test-leaderelection") as c:
        yield c


async def eventually(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not (value := predicate()):
        if loop.time() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
    return value


class Candidate:
    """One replica: an elector, its run() task, and what its callbacks were told."""

    def __init__(self, client: RESTClient, namespace: str, identity: str, *, lock: str = "lock", **options: Any) -> None:
        self.identity = identity
        self.started = 0
        self.stopped = 0
        self.work_cancelled = False
        self.new_leaders: list[str] = []
        self.elector = LeaderElector(
            client,
            namespace=namespace,
            name=lock,
            identity=identity,
            lease_duration=LEASE,
            renew_deadline=RENEW,
            retry_period=RETRY,
            on_started_leading=options.pop("on_started_leading", self._work),
            on_stopped_leading=self._stopped,
            on_new_leader=self.new_leaders.append,
            **options,
        )
        self.task: asyncio.Task[None] | None = None

    async def _work(self) -> None:
        self.started += 1
        try:
            await asyncio.Event().wait()  # the component's work, until cancelled
        except asyncio.CancelledError:
            self.work_cancelled = True
            raise

    def _stopped(self) -> None:
        self.stopped += 1

    def start(self) -> Candidate:
        self.task = asyncio.create_task(self.elector.run())
        return self

    async def cancel(self) -> None:
        assert self.task is not None
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task


async def _lease(client: RESTClient, namespace: str, name: str = "lock") -> dict[str, Any]:
    return (await client.get(LEASES, name, namespace=namespace))["spec"]


async def test_one_leader_and_release_on_cancel_hands_over(client: RESTClient, namespace: str) -> None:
    a, b = Candidate(client, namespace, "a").start(), Candidate(client, namespace, "b").start()
    try:
        leader = await eventually(
            lambda: next((c for c in (a, b) if c.elector.is_leader() and c.started), None), what="a leader"
        )
        other = b if leader is a else a
        # For a while (several renewals), exactly one leads and both agree on who.
        loop = asyncio.get_running_loop()
        until = loop.time() + 5 * RETRY
        while loop.time() < until:
            assert leader.elector.is_leader() and not other.elector.is_leader()
            await asyncio.sleep(0.05)
        assert other.elector.get_leader() == leader.identity and other.started == 0
        assert leader.identity in other.new_leaders and leader.new_leaders == [leader.identity]
        spec = await _lease(client, namespace)
        assert spec["holderIdentity"] == leader.identity
        assert spec["leaseDurationSeconds"] == 2 and spec["leaseTransitions"] == 0
        assert MICRO_TIME.match(spec["acquireTime"]) and MICRO_TIME.match(spec["renewTime"])
        assert spec["renewTime"] > spec["acquireTime"]  # renewed since

        # Cancelling the leader releases the lease: the other takes over at its next try.
        await leader.cancel()
        t0 = loop.time()
        assert leader.work_cancelled and leader.stopped == 1 and not leader.elector.is_leader()
        await eventually(lambda: other.elector.is_leader() and other.started, timeout=LEASE, what="takeover")
        assert loop.time() - t0 < LEASE - 0.5  # well before the lease would have run out
        spec = await _lease(client, namespace)
        assert spec["holderIdentity"] == other.identity and spec["leaseTransitions"] == 1
        assert other.new_leaders[-1] == other.identity
    finally:
        for c in (a, b):
            if c.task is not None and not c.task.done():
                await c.cancel()
    assert (await _lease(client, namespace))["holderIdentity"] == ""  # released on the way out


async def test_takeover_after_leader_stops_renewing(client: RESTClient, namespace: str) -> None:
    a = Candidate(client, namespace, "a", release_on_cancel=False).start()
    b: Candidate | None = None
    try:
        await eventually(lambda: a.elector.is_leader(), what="a leads")
        b = Candidate(client, namespace, "b").start()
        await eventually(lambda: b.elector.get_leader() == "a", what="b sees a")
        loop = asyncio.get_running_loop()
        await a.cancel()  # a dies without releasing
        t0 = loop.time()
        assert (await _lease(client, namespace))["holderIdentity"] == "a"
        await eventually(lambda: b.elector.is_leader() and b.started, timeout=3 * LEASE, what="takeover")
        waited = loop.time() - t0
        # b waits out a's lease (from when it last saw a renew, at most ~2 retry periods before a
        # stopped) and takes over at its next try after that.
        assert LEASE - 2.5 * RETRY <= waited <= LEASE + 3 * RETRY + 0.5, waited
        spec = await _lease(client, namespace)
        assert spec["holderIdentity"] == "b" and spec["leaseTransitions"] == 1
        assert b.new_leaders == ["a", "b"]
    finally:
        for c in (a, b):
            if c is not None and c.task is not None and not c.task.done():
                await c.cancel()


async def test_losing_the_lease_stops_leading(client: RESTClient, namespace: str) -> None:
    a = Candidate(client, namespace, "a").start()
    try:
        await eventually(lambda: a.elector.is_leader() and a.started, what="a leads")
        # Someone else writes the lease (as a partitioned-away leader would find on its return).
        lease = await client.get(LEASES, "lock", namespace=namespace)
        now = micro_time()
        lease["spec"].update(holderIdentity="usurper", leaseDurationSeconds=60, acquireTime=now, renewTime=now)
        await client.update(LEASES, lease)
        assert a.task is not None
        await asyncio.wait_for(a.task, timeout=RENEW + 2)  # run() returns once renewing failed
        assert a.work_cancelled and a.stopped == 1 and not a.elector.is_leader()
        assert a.elector.get_leader() == "usurper" and a.new_leaders == ["a", "usurper"]
        assert (await _lease(client, namespace))["holderIdentity"] == "usurper"  # not ours to release
    finally:
        if a.task is not None and not a.task.done():
            await a.cancel()


async def test_failing_work_gives_up_the_lease(client: RESTClient, namespace: str) -> None:
    async def broken() -> None:
        raise RuntimeError("cannot lead")

    a = Candidate(client, namespace, "a", lock="broken", on_started_leading=broken).start()
    assert a.task is not None
    await asyncio.wait_for(a.task, timeout=5)
    assert a.stopped == 1 and not a.elector.is_leader()
    assert (await _lease(client, namespace, "broken"))["holderIdentity"] == ""


def test_validation() -> None:
    async def work() -> None:
        pass

    client: Any = object()
    ok: dict[str, Any] = {"namespace": "ns", "name": "n", "identity": "me", "on_started_leading": work}
    LeaderElector(client, **ok)
    with pytest.raises(ValueError, match="lease_duration"):
        LeaderElector(client, **ok, lease_duration=5, renew_deadline=5)
    with pytest.raises(ValueError, match="renew_deadline"):
        LeaderElector(client, **ok, lease_duration=5, renew_deadline=2, retry_period=2)
    with pytest.raises(ValueError, match="identity"):
        LeaderElector(client, **{**ok, "identity": ""})
    assert MICRO_TIME.match(micro_time())
