"""Leader election on a coordination.k8s.io/v1 Lease: client-go's ``tools/leaderelection``, on asyncio.

Replicas of a component (the scheduler, the controller manager) run a :class:`LeaderElector`
each; the one that holds the Lease does the work.  The Lease carries client-go's
LeaderElectionRecord: ``holderIdentity``, ``leaseDurationSeconds``, ``acquireTime``,
``renewTime`` (MicroTime) and ``leaseTransitions``.  Every write is a PUT carrying the
resourceVersion last read (optimistic concurrency), so of two candidates racing for the same
record exactly one wins and the other gets a 409.

Expiry is judged as client-go judges it, without trusting anyone's wall clock: a candidate
remembers, on its own monotonic clock, when it last saw the record *change*; the holder's lease
is over once ``leaseDurationSeconds`` pass after that without another change.  The times in the
record are informational.  A holder renews every ``retry_period``; when renewing has not
succeeded for ``renew_deadline`` (which must be shorter than ``lease_duration``, so that the
holder gives up before anyone else may take over) it stops leading: the task running
``on_started_leading`` is cancelled, ``on_stopped_leading`` is called and :meth:`run` returns.
A candidate tries to acquire every ``retry_period`` (with up to 120% jitter, so candidates do
not retry in step).

On cancellation of :meth:`run` a leader, with ``release_on_cancel`` (the default), releases the
Lease: it writes an empty ``holderIdentity`` (and a 1 s duration), as upstream does, so another
candidate takes over at its next try instead of waiting out the lease.

Deviations from client-go, on purpose: ``on_stopped_leading`` is called only if this elector
was leading (upstream calls it whenever Run returns); ``on_new_leader`` is not told of an empty
holder (a released lease has no leader); if the ``on_started_leading`` coroutine raises, the
elector stops leading (a leader that cannot do its work should let another replica try),
while a normal return keeps the lease, as upstream.  ``leaseDurationSeconds`` is
``lease_duration`` rounded up to whole seconds (never shorter than configured).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from k8py.client.errors import ClientError, Conflict, NotFound
from k8py.client.resources import LEASES
from k8py.client.rest import RESTClient

Obj = dict[str, Any]

log = logging.getLogger(__name__)

JITTER_FACTOR = 1.2  # client-go's JitterFactor: acquire retries wait retry_period * [1, 2.2)


def micro_time(value: dt.datetime | None = None) -> str:
    """metav1.MicroTime's wire format: ``2006-01-02T15:04:05.000000Z``."""
    return (value or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class LeaderElectionRecord:
    """What a Lease's spec says about leadership (client-go's LeaderElectionRecord)."""

    holder_identity: str = ""
    lease_duration_seconds: int = 0
    acquire_time: str | None = None
    renew_time: str | None = None
    leader_transitions: int = 0

    @classmethod
    def from_lease(cls, lease: Obj) -> LeaderElectionRecord:
        spec = lease.get("spec") or {}
        return cls(
            holder_identity=spec.get("holderIdentity") or "",
            lease_duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
            acquire_time=spec.get("acquireTime"),
            renew_time=spec.get("renewTime"),
            leader_transitions=int(spec.get("leaseTransitions") or 0),
        )

    def to_lease_spec(self) -> Obj:
        spec: Obj = {
            "holderIdentity": self.holder_identity,
            "leaseDurationSeconds": self.lease_duration_seconds,
            "leaseTransitions": self.leader_transitions,
        }
        if self.acquire_time:
            spec["acquireTime"] = self.acquire_time
        if self.renew_time:
            spec["renewTime"] = self.renew_time
        return spec


class LeaseLock:
    """The record kept in one Lease (client-go's resourcelock.LeaseLock).

    ``update`` writes over the Lease last read or written, with its resourceVersion: it fails
    with :class:`~k8py.client.errors.Conflict` if anyone wrote in between.
    """

    def __init__(self, client: RESTClient, *, namespace: str, name: str, identity: str) -> None:
        self.client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self._lease: Obj | None = None

    def describe(self) -> str:
        return f"{self.namespace}/{self.name}"

    async def get(self) -> LeaderElectionRecord:
        """The current record (raises NotFound if there is no Lease)."""
        self._lease = await self.client.get(LEASES, self.name, namespace=self.namespace)
        return LeaderElectionRecord.from_lease(self._lease)

    async def create(self, record: LeaderElectionRecord) -> None:
        lease = {
            "apiVersion": LEASES.api_version,
            "kind": LEASES.kind,
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": record.to_lease_spec(),
        }
        self._lease = await self.client.create(LEASES, lease)

    async def update(self, record: LeaderElectionRecord) -> None:
        if self._lease is None:
            raise RuntimeError("lease not initialized: get or create it first")
        lease = {**self._lease, "spec": {**(self._lease.get("spec") or {}), **record.to_lease_spec()}}
        self._lease = await self.client.update(LEASES, lease)


class LeaderElector:
    """Campaigns for, holds and gives up one Lease; see the module docstring."""

    def __init__(
        self,
        client: RESTClient,
        *,
        namespace: str,
        name: str,
        identity: str,
        lease_duration: float = 15,
        renew_deadline: float = 10,
        retry_period: float = 2,
        on_started_leading: Callable[[], Awaitable[None]],
        on_stopped_leading: Callable[[], None] | None = None,
        on_new_leader: Callable[[str], None] | None = None,
        release_on_cancel: bool = True,
    ) -> None:
        if not identity:
            raise ValueError("identity may not be empty")
        if lease_duration <= renew_deadline:
            raise ValueError("lease_duration must be greater than renew_deadline")
        if renew_deadline <= JITTER_FACTOR * retry_period:
            raise ValueError(f"renew_deadline must be greater than retry_period * {JITTER_FACTOR}")
        if retry_period <= 0:
            raise ValueError("retry_period must be greater than zero")
        self.lock = LeaseLock(client, namespace=namespace, name=name, identity=identity)
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.on_started_leading = on_started_leading
        self.on_stopped_leading = on_stopped_leading
        self.on_new_leader = on_new_leader
        self.release_on_cancel = release_on_cancel
        self._observed = LeaderElectionRecord()
        self._observed_time = -math.inf  # monotonic time the observed record last changed
        self._reported_leader = ""
        self._leading = False

    # ---- state ----------------------------------------------------------------------------------

    def is_leader(self) -> bool:
        """True while this elector leads (acquired, last observed as holder, not yet stopped)."""
        return self._leading and self._holds()

    def get_leader(self) -> str:
        """The holder in the last record observed ("" if none)."""
        return self._observed.holder_identity

    def _holds(self) -> bool:
        return self._observed.holder_identity == self.identity

    def _lease_valid(self, now: float) -> bool:
        return self._observed_time + self._observed.lease_duration_seconds > now

    def _set_observed(self, record: LeaderElectionRecord) -> None:
        self._observed = record
        self._observed_time = time.monotonic()

    # ---- running --------------------------------------------------------------------------------

    async def run(self) -> None:
        """Acquire the lease, lead while renewing it; return once leadership is lost.

        Cancelling it stops leading (releasing the lease with ``release_on_cancel``).
        """
        await self._acquire()
        self._leading = True
        log.info("%s: became leader of lease %s", self.identity, self.lock.describe())
        leading = asyncio.create_task(self._lead(), name=f"leading {self.lock.describe()}")
        try:
            await self._renew(leading)
        finally:
            leading.cancel()
            await asyncio.wait([leading])  # never raises what the task raised
            if not leading.cancelled() and (error := leading.exception()) is not None:
                log.error("%s: on_started_leading failed", self.identity, exc_info=error)
            if self.release_on_cancel:
                await self._release()
            self._leading = False
            log.info("%s: stopped leading lease %s", self.identity, self.lock.describe())
            if self.on_stopped_leading is not None:
                try:
                    self.on_stopped_leading()
                except Exception:
                    log.exception("%s: on_stopped_leading failed", self.identity)

    async def _lead(self) -> None:
        await self.on_started_leading()

    async def _acquire(self) -> None:
        """Try every retry_period (jittered) until the lease is ours."""
        log.info("%s: attempting to acquire lease %s", self.identity, self.lock.describe())
        while True:
            acquired = await self._try_acquire_or_renew()
            self._maybe_report_transition()
            if acquired:
                return
            await asyncio.sleep(self.retry_period * (1 + random.random() * JITTER_FACTOR))

    async def _renew(self, leading: asyncio.Task[None]) -> None:
        """Renew every retry_period; return when renewal fails for renew_deadline or the work fails."""
        while True:
            try:
                async with asyncio.timeout(self.renew_deadline):
                    while not await self._try_acquire_or_renew():
                        await asyncio.sleep(self.retry_period)
            except TimeoutError:
                self._maybe_report_transition()
                log.warning("%s: failed to renew lease %s within %.3gs",
                            self.identity, self.lock.describe(), self.renew_deadline)
                return
            self._maybe_report_transition()
            if not leading.done():
                await asyncio.wait([leading], timeout=self.retry_period)
            else:
                await asyncio.sleep(self.retry_period)
            if leading.done() and not leading.cancelled() and leading.exception() is not None:
                log.warning("%s: on_started_leading failed; giving up the lease", self.identity)
                return  # run() logs the exception

    async def _try_acquire_or_renew(self) -> bool:
        """One attempt (client-go's tryAcquireOrRenew): True if we hold the lease now."""
        now_wall = micro_time()
        record = LeaderElectionRecord(
            holder_identity=self.identity,
            lease_duration_seconds=max(1, math.ceil(self.lease_duration)),
            acquire_time=now_wall,
            renew_time=now_wall,
        )
        # 1. The fast path: a leader renews assuming the record is still the one it wrote.
        if self._holds() and self._lease_valid(time.monotonic()):
            record = replace(
                record,
                acquire_time=self._observed.acquire_time,
                leader_transitions=self._observed.leader_transitions,
            )
            try:
                await self.lock.update(record)
            except ClientError as e:
                log.info("%s: optimistic renewal failed (%s); falling back to the slow path", self.identity, e)
            else:
                self._set_observed(record)
                return True
        # 2. Read (or create) the record.
        try:
            current = await self.lock.get()
        except NotFound:
            try:
                await self.lock.create(record)
            except ClientError as e:
                log.info("%s: creating lease %s failed: %s", self.identity, self.lock.describe(), e)
                return False
            self._set_observed(record)
            return True
        except ClientError as e:
            log.warning("%s: reading lease %s failed: %s", self.identity, self.lock.describe(), e)
            return False
        # 3. Note when the record changed; leave a valid lease of someone else's alone.
        if current != self._observed:
            self._set_observed(current)
        if current.holder_identity and not self._holds() and self._lease_valid(time.monotonic()):
            return False
        # 4. Take it over, or renew it.
        if self._holds():
            record = replace(
                record, acquire_time=current.acquire_time, leader_transitions=current.leader_transitions
            )
        else:
            record = replace(record, leader_transitions=current.leader_transitions + 1)
        try:
            await self.lock.update(record)
        except ClientError as e:
            level = logging.DEBUG if isinstance(e, Conflict) else logging.WARNING
            log.log(level, "%s: updating lease %s failed: %s", self.identity, self.lock.describe(), e)
            return False
        self._set_observed(record)
        return True

    async def _release(self) -> None:
        """Give the lease up (empty holder), if we hold it; bounded by renew_deadline."""
        if not self._holds():
            return
        now_wall = micro_time()
        record = LeaderElectionRecord(
            holder_identity="",
            lease_duration_seconds=1,
            acquire_time=now_wall,
            renew_time=now_wall,
            leader_transitions=self._observed.leader_transitions,
        )
        try:
            async with asyncio.timeout(self.renew_deadline):
                try:
                    await self.lock.update(record)
                except Conflict:
                    # A renewal cancelled in flight may have been applied: re-read, and release
                    # if the lease is still ours.
                    if (await self.lock.get()).holder_identity != self.identity:
                        return
                    await self.lock.update(record)
        except (ClientError, TimeoutError) as e:
            log.warning("%s: releasing lease %s failed: %s", self.identity, self.lock.describe(), e)
            return
        self._set_observed(record)
        log.info("%s: released lease %s", self.identity, self.lock.describe())

    def _maybe_report_transition(self) -> None:
        holder = self._observed.holder_identity
        if not holder or holder == self._reported_leader:
            return
        self._reported_leader = holder
        if self.on_new_leader is not None:
            try:
                self.on_new_leader(holder)
            except Exception:
                log.exception("%s: on_new_leader failed", self.identity)
