"""The watch cache: every object in memory, fed by one store watch.

kube-apiserver's cacher: one list+watch against the store keeps a copy of
every object and a window of recent events, so that lists and a thousand
watchers cost one store read. Objects in the cache are shared: nobody may
mutate them (handlers copy before changing anything).

Reads that must see the latest writes ("consistent reads") first wait until
the cache has caught up with the store's current revision.

An object is parsed once per write: the generic store `prime`s the cache with
the object it is writing and the bytes it stores, and the event that carries
those bytes takes the object instead of decoding them again (the stored value
is that object's encoding). The match is on the bytes, not on the order in
which the write's caller and the cache's watch happen to run.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from k8py.storage.interface import CompactedError, Event, EventType, KeyValue, Store
from k8py.tasks import cancel

log = logging.getLogger(__name__)

Obj = dict[str, Any]
ROOT = "/registry/"
# Events kept for watchers that resume from a recent resourceVersion.
EVENT_WINDOW = 100_000
# A watcher further behind than this is dropped (it reconnects and resumes).
MAX_PENDING = 50_000


@dataclass(slots=True, frozen=True)
class WatchEvent:
    type: str  # ADDED, MODIFIED, DELETED
    key: str
    obj: Obj  # resourceVersion set; for DELETED the revision of the delete
    prev: Obj | None
    revision: int


def decode(kv: KeyValue, revision: int | None = None) -> Obj:
    """Parse a stored value and stamp its resourceVersion."""
    import orjson

    obj = orjson.loads(kv.value)
    obj.setdefault("metadata", {})["resourceVersion"] = str(revision or kv.mod_revision)
    return obj


def stamp(obj: Obj, revision: int) -> Obj:
    """Set an object's resourceVersion last in its metadata, where `decode` puts it."""
    md = obj.setdefault("metadata", {})
    md.pop("resourceVersion", None)
    md["resourceVersion"] = str(revision)
    return obj


class Subscription:
    """One watcher's feed of events under a key prefix."""

    def __init__(self, cache: WatchCache, prefix: str) -> None:
        self.prefix = prefix
        self.queue: asyncio.Queue[list[WatchEvent] | None] = asyncio.Queue()
        self._cache = cache
        self.pending = 0
        self.closed = False

    def push(self, events: list[WatchEvent]) -> None:
        if self.closed:
            return
        self.pending += len(events)
        if self.pending > MAX_PENDING:
            self.close()
            return
        self.queue.put_nowait(events)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.queue.put_nowait(None)
            self._cache.unsubscribe(self)

    async def next(self) -> list[WatchEvent] | None:
        """The next batch, or None when the subscription was closed."""
        events = await self.queue.get()
        if events is not None:
            self.pending -= len(events)
        return events


class WatchCache:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._objects: dict[str, Obj] = {}
        self._keys: list[str] = []  # sorted, for prefix scans
        self._events: deque[WatchEvent] = deque(maxlen=EVENT_WINDOW)
        self._subs: set[Subscription] = set()
        self._task: asyncio.Task[None] | None = None
        self._progress = asyncio.Condition()
        self._waiting = 0  # reads in wait_for
        self.revision = 0
        self._start_revision = 0
        self._primed: dict[str, tuple[bytes, Obj]] = {}  # key -> (value being written, its object)
        self.on_events: list[Callable[[list[WatchEvent]], None]] = []

    async def start(self) -> None:
        revision = await self._load()
        self._task = asyncio.create_task(self._run(revision + 1), name="watchcache")

    async def _load(self) -> int:
        """Every object, read at one revision (which it returns); the event window starts there."""
        revision = await self._store.current_revision()
        objects: dict[str, Obj] = {}
        start_key = ROOT
        while True:
            page = await self._store.list(ROOT, start_key=start_key, limit=10_000, revision=revision)
            for kv in page.items:
                objects[kv.key] = decode(kv)
            if not page.more:
                break
            start_key = page.items[-1].key + "\x00"
        self._objects = objects
        self._keys = sorted(objects)
        self._events.clear()
        self.revision = self._start_revision = revision
        return revision

    async def stop(self) -> None:
        if self._task:
            await cancel(self._task)
        for sub in list(self._subs):
            sub.close()
        self._primed.clear()

    @contextlib.contextmanager
    def prime(self, key: str, value: bytes, obj: Obj) -> Iterator[None]:
        """Around a write of `value` (the encoding of `obj`) at `key`: its event takes `obj` as the cached
        object (resourceVersion stamped) instead of decoding `value`. The writer gives `obj` up: once
        written it is shared, and nobody may change it but to stamp the same resourceVersion. A write
        that fails takes its object back."""
        self._primed[key] = (value, obj)
        try:
            yield
        except BaseException:
            hit = self._primed.get(key)
            if hit is not None and hit[1] is obj:
                del self._primed[key]
            raise

    async def _run(self, start: int) -> None:
        while True:
            try:
                async for batch in self._store.watch(ROOT, start_revision=start, progress=self._on_progress):
                    self._apply(batch)
                return
            except asyncio.CancelledError:
                raise
            except CompactedError as e:
                # (etcd: this server lost etcd while another one compacted) as the cacher: relist, and
                # end every watch so that its client resumes from the new state or relists after a 410
                log.warning("watch cache fell behind a compaction (%s): relisting", e)
                for sub in list(self._subs):
                    sub.close()
                start = await self._load() + 1
            except Exception:  # the cache is the API server's view of the world: losing it is fatal
                log.exception("watch cache lost its store watch")
                raise

    def _apply(self, batch: list[Event]) -> None:
        events: list[WatchEvent] = []
        primed = self._primed
        for ev in batch:
            key = ev.kv.key
            prev = self._objects.get(key)
            if ev.type is EventType.DELETE:
                if prev is None:
                    continue
                # (etcd leaves out the deleted value when its revision is already compacted)
                obj = decode(ev.kv, ev.kv.mod_revision) if ev.kv.value else stamp({**prev, "metadata": dict(prev["metadata"])}, ev.kv.mod_revision)
                del self._objects[key]
                i = bisect.bisect_left(self._keys, key)
                if i < len(self._keys) and self._keys[i] == key:
                    del self._keys[i]
                events.append(WatchEvent("DELETED", key, obj, prev, ev.kv.mod_revision))
            else:
                hit = primed.get(key) if primed else None
                if hit is not None and (hit[0] is ev.kv.value or hit[0] == ev.kv.value):
                    del primed[key]
                    obj = stamp(hit[1], ev.kv.mod_revision)
                else:
                    obj = decode(ev.kv)
                self._objects[key] = obj
                if prev is None:
                    bisect.insort(self._keys, key)
                events.append(WatchEvent("ADDED" if prev is None else "MODIFIED", key, obj, prev, ev.kv.mod_revision))
        if batch:
            self.revision = max(self.revision, batch[-1].kv.mod_revision)
        self._events.extend(events)
        for sub in list(self._subs):
            mine = [e for e in events if e.key.startswith(sub.prefix)]
            if mine:
                sub.push(mine)
        for hook in self.on_events:
            hook(events)
        if self._waiting:  # a task per batch only when a read waits for one
            asyncio.get_running_loop().create_task(self._notify())

    def _on_progress(self, revision: int) -> None:
        """The store says no event up to `revision` is still to come (etcd's progress notification)."""
        if revision > self.revision:
            self.revision = revision
            if self._waiting:
                asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self._progress:
            self._progress.notify_all()

    async def wait_for(self, revision: int, timeout: float = 3.0) -> bool:
        """Wait until the cache has seen `revision`; False on timeout."""
        if self.revision >= revision:
            return True
        self._waiting += 1
        try:
            async with asyncio.timeout(timeout):
                async with self._progress:
                    await self._progress.wait_for(lambda: self.revision >= revision)
        except TimeoutError:
            return False
        finally:
            self._waiting -= 1
        return True

    async def sync(self) -> None:
        """Catch up with every write the store has acknowledged. When the newest revisions were writes
        the cache does not watch (outside the prefix in a shared etcd), the store's progress tells it."""
        await self.wait_for(await self._store.current_revision(), timeout=10.0)

    def get(self, key: str) -> Obj | None:
        return self._objects.get(key)

    def keys(self, prefix: str) -> list[str]:
        i = bisect.bisect_left(self._keys, prefix)
        j = bisect.bisect_left(self._keys, prefix + "\xff")
        return self._keys[i:j]

    def list(self, prefix: str) -> list[Obj]:
        return [self._objects[k] for k in self.keys(prefix)]

    def count(self, prefix: str) -> int:
        return len(self.keys(prefix))

    def events_since(self, revision: int, prefix: str) -> list[WatchEvent] | None:
        """Events after `revision` under `prefix`, or None when the window no longer reaches back that far."""
        if revision < self._window_start():
            return None
        out = []
        for ev in reversed(self._events):
            if ev.revision <= revision:
                break
            if ev.key.startswith(prefix):
                out.append(ev)
        out.reverse()
        return out

    def _window_start(self) -> int:
        """The oldest revision after which the event window holds every event."""
        if len(self._events) < EVENT_WINDOW:
            return self._start_revision
        return self._events[0].revision - 1

    def compacted(self, revision: int) -> None:
        """The store forgot history up to `revision`: so does the window (older watches get 410)."""
        while self._events and self._events[0].revision <= revision:
            self._events.popleft()
        self._start_revision = max(self._start_revision, revision)

    def subscribe(self, prefix: str) -> Subscription:
        sub = Subscription(self, prefix)
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    async def store_history(self, prefix: str, revision: int) -> Any:
        """A store watch for watchers older than the window (CompactedError when too old)."""
        return self._store.watch(prefix, start_revision=revision + 1)


__all__ = ["CompactedError", "Subscription", "WatchCache", "WatchEvent", "decode"]
