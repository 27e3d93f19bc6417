"""Recording core/v1 Events: client-go's ``record.EventRecorder`` with its ``EventCorrelator``.

A component calls ``recorder.event(pod, WARNING, "FailedScheduling", "0/3 nodes are available")``
and goes on: the call builds the Event (name ``<object name>.<hex nanoseconds>``, the
object's reference as ``involvedObject``, ``source``/``reportingComponent`` from the recorder,
``firstTimestamp``/``lastTimestamp``, ``count`` 1; the ``default`` namespace for cluster-scoped
objects) and puts it on a bounded queue.  It never blocks and never raises: a full queue, a
malformed object or an invalid type are logged and the event dropped, because an event is
worth less than the work that emits it.  One background task (started by the first event)
writes the queue out; :meth:`EventRecorder.stop` flushes it.

Before writing, the :class:`EventCorrelator` does what upstream's does (events_cache.go), so
a component stuck in a loop cannot flood the API server:

* **Counting.**  An event identical to one already written (same source, object, type,
  reason, message) is not created again: the existing Event is patched with ``count`` + 1, the
  new ``lastTimestamp`` and message (a strategic merge patch, as client-go sends).  Like
  upstream there is no time window, only an LRU of 4096 entries; an Event deleted on the server
  meanwhile (404 on the patch) is created afresh.
* **Aggregation.**  When the same source, object, type and reason come with a 10th distinct
  message within 10 minutes of the previous one, the event is replaced by one whose message is
  ``"(combined from similar events): " + message``; later ones count up on that single Event.
* **Spam filter.**  A token bucket per source and object (burst 25, refilled one token every 5
  minutes) drops whatever exceeds it, after counting, again as upstream.

Failed writes follow ``recordToSink``: a TransportError is retried (up to 12 tries, 10 s
apart, the first delay randomised so clients do not retry in step after an outage); an
APIError (rejected; AlreadyExists from a duplicate) drops the event.  Once stopping, nothing
is retried: :meth:`~EventRecorder.stop` gives each queued event one try within its timeout.

The recorder is bound to the event loop it first runs in and, like everything in k8py, is
used from that loop's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from k8py.api.meta import format_time
from k8py.client.errors import APIError, NotFound, TransportError, is_already_exists
from k8py.client.resources import EVENTS
from k8py.client.rest import PatchType, RESTClient

Obj = dict[str, Any]
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

log = logging.getLogger(__name__)

NORMAL = "Normal"
WARNING = "Warning"

LRU_CACHE_ENTRIES = 4096
AGGREGATE_MAX_EVENTS = 10
AGGREGATE_INTERVAL = 600.0  # seconds
SPAM_BURST = 25
SPAM_QPS = 1 / 300
COMBINED_PREFIX = "(combined from similar events): "
QUEUE_SIZE = 1000  # client-go's maxQueuedEvents
MAX_TRIES = 12
RETRY_INTERVAL = 10.0  # seconds

# The fields that make up each of the correlator's keys (upstream's getSpamKey,
# EventAggregatorByReasonFunc and getEventKey): (field,) or (field, subfield).
_OBJECT_KEY = (
    ("source", "component"),
    ("source", "host"),
    ("involvedObject", "kind"),
    ("involvedObject", "namespace"),
    ("involvedObject", "name"),
    ("involvedObject", "uid"),
    ("involvedObject", "apiVersion"),
)
_AGGREGATE_KEY = (*_OBJECT_KEY, ("type",), ("reason",), ("reportingComponent",), ("reportingInstance",))
_EVENT_KEY = (*_OBJECT_KEY, ("involvedObject", "fieldPath"), ("type",), ("reason",), ("message",))


def _key(tag: str, event: Obj, fields: tuple[tuple[str, ...], ...]) -> tuple[str, ...]:
    values = [tag]
    for path in fields:
        value: Any = event
        for part in path:
            value = (value or {}).get(part)
        values.append(value or "")
    return tuple(values)


_last_name_suffix = 0


def _event_name(object_name: str) -> str:
    """``<name>.<hex nanoseconds>`` as upstream, strictly increasing in this process, so two
    recorders (one ``k8py up`` runs several) never mint the same name in the same nanosecond."""
    global _last_name_suffix
    _last_name_suffix = max(time.time_ns(), _last_name_suffix + 1)
    return f"{object_name}.{_last_name_suffix:x}"


def _timestamp(t: float) -> str:
    return format_time(dt.datetime.fromtimestamp(t, dt.UTC))


def object_reference(obj: Obj, *, field_path: str = "") -> Obj:
    """A core/v1 ObjectReference to ``obj`` (an object with metadata, or already a reference)."""
    if "metadata" in obj:
        md = obj["metadata"] or {}
        ref = {
            "kind": obj.get("kind"),
            "namespace": md.get("namespace"),
            "name": md.get("name"),
            "uid": md.get("uid"),
            "apiVersion": obj.get("apiVersion"),
            "resourceVersion": md.get("resourceVersion"),
        }
        ref = {k: v for k, v in ref.items() if v}
    else:
        ref = dict(obj)
    if field_path:
        ref["fieldPath"] = field_path
    if not (ref.get("kind") and ref.get("apiVersion") and ref.get("name")):
        raise ValueError("cannot refer to an object without apiVersion, kind and name")
    return ref


class _LRU(Generic[K, V]):
    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        if len(self._items) > self._size:
            self._items.popitem(last=False)


@dataclass(slots=True)
class _TokenBucket:
    tokens: float
    updated: float

    def take(self, now: float, *, burst: int, qps: float) -> bool:
        self.tokens = min(burst, self.tokens + (now - self.updated) * qps)
        self.updated = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


@dataclass(slots=True)
class _Similar:
    messages: set[str]  # distinct messages seen, capped below the threshold
    last_seen: float


@dataclass(frozen=True, slots=True)
class _Observation:
    count: int
    first_timestamp: str
    name: str


@dataclass(frozen=True, slots=True)
class Correlation:
    """What to write for an event: create ``event``, or (``patch`` set) patch the Event it repeats."""

    event: Obj
    patch: Obj | None


class EventCorrelator:
    """Counting, aggregation and spam filtering of events before they are written; pure, no I/O."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        cache_size: int = LRU_CACHE_ENTRIES,
        spam_burst: int = SPAM_BURST,
        spam_qps: float = SPAM_QPS,
        aggregate_max_events: int = AGGREGATE_MAX_EVENTS,
        aggregate_interval: float = AGGREGATE_INTERVAL,
    ) -> None:
        self.clock = clock
        self._spam_burst = spam_burst
        self._spam_qps = spam_qps
        self._max_events = aggregate_max_events
        self._interval = aggregate_interval
        self._buckets: _LRU[tuple[str, ...], _TokenBucket] = _LRU(cache_size)
        self._similar: _LRU[tuple[str, ...], _Similar] = _LRU(cache_size)
        self._observed: _LRU[tuple[str, ...], _Observation] = _LRU(cache_size)

    def correlate(self, event: Obj) -> Correlation | None:
        """What to write for ``event``, or None when the spam filter drops it."""
        now = self.clock()
        event, key = self._aggregate(event, now)
        event, patch = self._observe(event, key)
        if not self._allow(event, now):
            return None
        return Correlation(event, patch)

    def update_state(self, written: Obj) -> None:
        """Remember the Event as the server stored it, so a repeat patches it."""
        self._remember(_key("event", written, _EVENT_KEY), written)

    def _aggregate(self, event: Obj, now: float) -> tuple[Obj, tuple[str, ...]]:
        """The event, or a combined one once similar events reach the threshold; and its key."""
        similar_key = _key("similar", event, _AGGREGATE_KEY)
        similar = self._similar.get(similar_key)
        if similar is None or now - similar.last_seen > self._interval:
            similar = _Similar(set(), now)
        similar.messages.add(event.get("message", ""))
        similar.last_seen = now
        self._similar.put(similar_key, similar)
        if len(similar.messages) < self._max_events:
            return event, _key("event", event, _EVENT_KEY)
        similar.messages.pop()  # an arbitrary one (upstream's PopAny): the set stays at the threshold
        ts = _timestamp(now)
        combined = {
            **event,
            "metadata": {
                "name": _event_name(event["involvedObject"]["name"]),
                "namespace": event["metadata"]["namespace"],
            },
            "message": COMBINED_PREFIX + event.get("message", ""),
            "firstTimestamp": ts,
            "lastTimestamp": ts,
            "count": 1,
        }
        return combined, similar_key

    def _observe(self, event: Obj, key: tuple[str, ...]) -> tuple[Obj, Obj | None]:
        """Count a repeat of an Event already written: the event as it now stands, and the patch."""
        last = self._observed.get(key)
        patch = None
        if last is not None:
            event = {
                **event,
                "metadata": {**event["metadata"], "name": last.name},
                "firstTimestamp": last.first_timestamp,
                "count": last.count + 1,
            }
            patch = {
                "count": event["count"],
                "lastTimestamp": event["lastTimestamp"],
                "message": event.get("message", ""),
            }
        self._remember(key, event)
        return event, patch

    def _remember(self, key: tuple[str, ...], event: Obj) -> None:
        observation = _Observation(
            event.get("count") or 1, event.get("firstTimestamp", ""), event["metadata"]["name"]
        )
        self._observed.put(key, observation)

    def _allow(self, event: Obj, now: float) -> bool:
        key = _key("object", event, _OBJECT_KEY)
        bucket = self._buckets.get(key) or _TokenBucket(self._spam_burst, now)
        allowed = bucket.take(now, burst=self._spam_burst, qps=self._spam_qps)
        self._buckets.put(key, bucket)
        return allowed


class EventRecorder:
    """Records Events about objects on behalf of one component; see the module docstring."""

    def __init__(
        self,
        client: RESTClient,
        *,
        component: str,
        host: str = "",
        correlator: EventCorrelator | None = None,
        queue_size: int = QUEUE_SIZE,
        max_tries: int = MAX_TRIES,
        retry_interval: float = RETRY_INTERVAL,
    ) -> None:
        self.component = component
        self.host = host
        self._client = client
        self._correlator = correlator or EventCorrelator()
        self._queue: asyncio.Queue[Obj] = asyncio.Queue(maxsize=queue_size)
        self._max_tries = max_tries
        self._retry_interval = retry_interval
        self._worker: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    def event(
        self,
        obj: Obj,
        event_type: str,
        reason: str,
        message: str,
        *,
        field_path: str = "",
        annotations: Mapping[str, str] | None = None,
    ) -> None:
        """Record an event about ``obj`` (an object, or an ObjectReference); never blocks or raises."""
        if event_type not in (NORMAL, WARNING):
            log.error(
                "event %s about %s dropped: type %r is neither Normal nor Warning",
                reason,
                _name(obj),
                event_type,
            )
            return
        try:
            ref = object_reference(obj, field_path=field_path)
        except ValueError as e:
            log.error("event %s (%s) dropped: %s", reason, message, e)
            return
        if self._stopping.is_set():
            log.warning("event %s about %s dropped: the recorder is stopped", reason, _name(obj))
            return
        if self._worker is None:
            try:
                self._worker = asyncio.get_running_loop().create_task(
                    self._run(), name=f"events:{self.component}"
                )
            except RuntimeError:
                log.error("event %s about %s dropped: recorders run in an event loop", reason, _name(obj))
                return
        try:
            self._queue.put_nowait(self._make_event(ref, event_type, reason, message, annotations))
        except asyncio.QueueFull:
            log.error(
                "event %s about %s dropped: %d events already queued", reason, _name(obj), self._queue.qsize()
            )

    def eventf(
        self,
        obj: Obj,
        event_type: str,
        reason: str,
        message_format: str,
        *args: object,
        field_path: str = "",
        annotations: Mapping[str, str] | None = None,
    ) -> None:
        """:meth:`event` with ``message_format % args`` as the message."""
        try:
            message = message_format % args
        except (TypeError, ValueError) as e:
            log.error(
                "event %s dropped: message %r does not format with %r: %s", reason, message_format, args, e
            )
            return
        self.event(obj, event_type, reason, message, field_path=field_path, annotations=annotations)

    async def stop(self, *, timeout: float = 5.0) -> None:
        """Write what is queued (one try each, within ``timeout``), then end; later events are dropped."""
        self._stopping.set()  # also cuts short a retry delay in progress
        worker = self._worker
        if worker is None:
            return
        try:
            await asyncio.wait_for(self._queue.join(), timeout)
        except TimeoutError:
            log.warning("%d events not written within %.1fs of stopping", self._queue.qsize(), timeout)
        finally:
            worker.cancel()  # idle in queue.get() once flushed; mid-write if the flush timed out
        await asyncio.wait([worker])  # the worker's cancellation is not ours: wait, don't raise it

    def _make_event(
        self, ref: Obj, event_type: str, reason: str, message: str, annotations: Mapping[str, str] | None
    ) -> Obj:
        ts = _timestamp(self._correlator.clock())
        metadata: Obj = {"name": _event_name(ref["name"]), "namespace": ref.get("namespace") or "default"}
        if annotations:
            metadata["annotations"] = dict(annotations)
        return {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": metadata,
            "involvedObject": ref,
            "reason": reason,
            "message": message,
            "type": event_type,
            "source": {"component": self.component, **({"host": self.host} if self.host else {})},
            "reportingComponent": self.component,
            "reportingInstance": self.host,
            "firstTimestamp": ts,
            "lastTimestamp": ts,
            "count": 1,
        }

    async def _run(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                await self._record(event)
            except Exception:  # a bug here must not end the recorder for the rest of the process
                log.exception("event %s about %s dropped", event["reason"], _name(event["involvedObject"]))
            finally:
                self._queue.task_done()

    async def _record(self, event: Obj) -> None:
        correlation = self._correlator.correlate(event)
        if correlation is None:
            log.debug(
                "event %s about %s dropped by the spam filter",
                event["reason"],
                _name(event["involvedObject"]),
            )
            return
        tries = 0
        while not await self._write(correlation):
            tries += 1
            if tries >= self._max_tries or self._stopping.is_set():
                log.error("unable to write event %s (tried %d times); dropped", _describe(event), tries)
                return
            delay = self._retry_interval * (random.random() if tries == 1 else 1.0)
            with contextlib.suppress(TimeoutError):  # woken early by stop(): one last try
                await asyncio.wait_for(self._stopping.wait(), delay)

    async def _write(self, correlation: Correlation) -> bool:
        """One try; False when it should be retried (no answer from the server)."""
        event = correlation.event
        md = event["metadata"]
        try:
            if correlation.patch is None:
                written = await self._client.create(EVENTS, event)
            else:
                try:
                    written = await self._client.patch(
                        EVENTS,
                        md["name"],
                        correlation.patch,
                        namespace=md["namespace"],
                        patch_type=PatchType.STRATEGIC,
                    )
                except NotFound:  # deleted meanwhile (events expire): record it anew
                    written = await self._client.create(EVENTS, event)
        except TransportError as e:
            log.warning("unable to write event %s (will retry): %s", _describe(event), e)
            return False
        except APIError as e:
            quiet = is_already_exists(e) or any(
                cause.get("reason") == "NamespaceTerminating" for cause in e.details.get("causes") or ()
            )
            log.log(
                logging.DEBUG if quiet else logging.ERROR, "server rejected event %s: %s", _describe(event), e
            )
            return True
        self._correlator.update_state(written)
        return True


def _name(obj: Obj) -> str:
    md = obj.get("metadata") or obj
    return f"{md.get('namespace') or ''}/{md.get('name') or ''}".lstrip("/")


def _describe(event: Obj) -> str:
    return f"{event['metadata']['name']} ({event['type']} {event['reason']} {_name(event['involvedObject'])})"
