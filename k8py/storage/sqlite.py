"""SQLiteStore: the embedded Store, kine's log-structured model on stdlib sqlite3.

The data model
--------------
One append-only table, `kv`. Its `id` (INTEGER PRIMARY KEY AUTOINCREMENT) *is*
the global revision. Every write appends one row:

    id | name | created | deleted | create_revision | prev_revision | value

* create: `created=1`, `create_revision=id`, `prev_revision` = the key's
  previous row (its tombstone) or 0.
* update: `create_revision` carried over, `prev_revision` = the row replaced.
* delete: `deleted=1` and `value` = the value deleted (so a DELETE event can be
  rebuilt from the row alone).

A key's value at revision R is its newest row with `id <= R`, unless that row is
a tombstone. History (for watches) is simply the rows with `id > R`; a PUT's
previous value is found through `prev_revision`. The current revision is
`sqlite_sequence.seq` for `kv`, which AUTOINCREMENT never lets go backwards,
even when compaction deletes the newest rows. A fresh store starts at
revision 1 (like etcd), so the first write is revision 2. The compacted
revision lives in the `meta` table.

Compaction to R deletes every row superseded by a later row with `id <= R`
(the row named by such a row's `prev_revision`) and every tombstone
`<= R`, in chunks so writes keep flowing. Reads at revisions `>= R` stay
exact; reads below R raise `CompactedError`, as do watches from `<= R`
(the events at R and before are gone).

Threads
-------
Nothing touches sqlite on the event loop.

* One writer thread owns the only writing connection and does *group commit*:
  it takes everything queued (up to `max_batch` ops), checks each op in order
  against the key's latest row (an in-memory overlay for rows written earlier
  in the same batch, then a cache of live keys, then the database, asked once
  for all the batch's other keys), appends the rows of the ops that pass with
  a few multi-row INSERTs, commits once, and then hands the outcomes and the
  batch's events back to the loop in a single `call_soon_threadsafe`. Few
  statements matter as much as few commits: sqlite3 lets go of the GIL for
  every statement step, and each time the writer must win it back from a busy
  event loop. An op that fails its check (KeyExists / NotFound /
  Conflict) fails only its own future; an sqlite error fails the whole batch
  (it is rolled back, nothing was acknowledged).
* Reads run on a small thread pool, one connection per thread. WAL lets them
  read consistent snapshots while the writer commits. Reads at a revision run
  inside one read transaction, so the compacted/current checks and the rows
  come from the same snapshot.

Durability: WAL with `synchronous=FULL`, like etcd's fsync per commit: an
acknowledged write is on disk before its future resolves, so it survives `kill -9`
of the process and a power loss. Group commit pays one fsync for a whole batch,
which is why the store's concurrent create rate is many times the raw
one-row-per-transaction rate.

Only one SQLiteStore may own a database file at a time (enforced with `flock`),
because the writer assigns revisions and caches keys itself.

Watches
-------
`watch()` subscribes at once (synchronously), then the generator reads the
retained history (rows `>= start_revision`, in pages) and continues with the
live batches the writer publishes, dropping live events already seen in the
history: no gaps, no duplicates. Live events are pushed to a per-watcher
`asyncio.Queue`, one list per commit batch. A watcher whose queue holds more
than `max_watch_backlog` events is cut off: its generator raises
`WatchOverflowError` (a `StoreError`) and the consumer must re-list, as a
client does on 410. `close()` ends every watch normally.

Cancelling a caller awaiting a write does not cancel the write: it may still
commit (as with etcd, where the request may already be on the wire).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from k8py.storage.interface import (
    CompactedError,
    ConflictError,
    Event,
    EventType,
    FutureRevisionError,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    ListResult,
    StoreError,
)

__all__ = ["INSERT_ROW", "PRAGMAS", "SCHEMA", "SQLiteStore", "WatchOverflowError", "connect"]

log = logging.getLogger(__name__)

T = TypeVar("T")

# Applied to every connection (the benchmark uses them too). page_size only
# takes effect on a new database (before WAL is set): 8 KiB pages hold three
# ~2 KiB objects where 4 KiB pages hold one, for about the same commit rate.
PRAGMAS = (
    "PRAGMA page_size=8192",
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    "PRAGMA busy_timeout=10000",
    "PRAGMA cache_size=-16000",
    "PRAGMA temp_store=MEMORY",
)

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS kv (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL,
        created INTEGER NOT NULL,
        deleted INTEGER NOT NULL,
        create_revision INTEGER NOT NULL,
        prev_revision INTEGER NOT NULL,
        value BLOB NOT NULL
    )""",
    # (name, id) finds a key's latest row; `deleted` makes counts index-only.
    "CREATE INDEX IF NOT EXISTS kv_name_id ON kv (name, id, deleted)",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
    "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', 1), ('compact_rev', 0)",
    # Start at revision 1, as etcd does: the first write is revision 2.
    "INSERT INTO sqlite_sequence (name, seq) SELECT 'kv', 1"
    " WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'kv')",
)

INSERT_ROW = (
    "INSERT INTO kv (id, name, created, deleted, create_revision, prev_revision, value)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_LATEST = "SELECT id, create_revision, deleted FROM kv WHERE name = ? ORDER BY id DESC LIMIT 1"
_VALUE = "SELECT value FROM kv WHERE id = ?"
_STATE = (
    "SELECT (SELECT seq FROM sqlite_sequence WHERE name = 'kv'),"
    " (SELECT value FROM meta WHERE key = 'compact_rev')"
)

# Statements over several rows or keys come in power-of-two sizes (few to prepare and cache), small
# enough for SQLite's oldest default limit of 999 parameters.
_MAX_INSERT_ROWS = 128
_MAX_LOOKUP_KEYS = 512


@functools.cache
def _insert_rows(n: int) -> str:
    """An INSERT of `n` rows (INSERT_ROW's columns)."""
    return INSERT_ROW + ", (?, ?, ?, ?, ?, ?, ?)" * (n - 1)


@functools.cache
def _latest_rows(n: int) -> str:
    """The latest row of each of `n` keys (bare columns of a max() aggregate come from the max row)."""
    marks = ", ".join("?" * n)
    return f"SELECT name, max(id), create_revision, deleted FROM kv WHERE name IN ({marks}) GROUP BY name"


def _pow2_floor(n: int) -> int:
    return 1 << (n.bit_length() - 1)


_CREATE, _UPDATE, _DELETE, _CALL = range(4)
_STOP = object()
_CLOSED = object()

HISTORY_PAGE = 1000
COMPACT_CHUNK = 5000


class WatchOverflowError(StoreError):
    """The watcher fell more than `max_watch_backlog` events behind and was cut off."""


def connect(path: str) -> sqlite3.Connection:
    """An autocommit connection (explicit BEGIN/COMMIT) with the store's pragmas."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    for pragma in PRAGMAS:
        conn.execute(pragma)
    return conn


def _prefix_end(prefix: str) -> str | None:
    """The smallest string greater than every string starting with `prefix`
    (None: no bound). Code-point order equals SQLite's UTF-8 BINARY order."""
    while prefix:
        last = ord(prefix[-1])
        if last < 0x10FFFF:
            nxt = last + 1
            if 0xD800 <= nxt <= 0xDFFF:  # surrogates cannot be encoded
                nxt = 0xE000
            return prefix[:-1] + chr(nxt)
        prefix = prefix[:-1]
    return None


def _range_sql(col: str, lo: str, end: str | None, args: list[Any]) -> str:
    args.append(lo)
    if end is None:
        return f"{col} >= ?"
    args.append(end)
    return f"{col} >= ? AND {col} < ?"


class _Watcher:
    __slots__ = ("prefix", "queue", "pending")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.pending = 0  # events queued, for the backlog limit


# A write op as queued: (kind, key, value, expected_revision, future).
_Op = tuple[int, str, bytes, int, "asyncio.Future[Any]"]
# Latest row of a key as the writer sees it: (mod_revision, create_revision, deleted, value|None).
_Latest = tuple[int, int, bool, bytes | None]


class SQLiteStore:
    """The embedded Store. `path` is a database file (created if missing)."""

    def __init__(
        self,
        path: str,
        *,
        readers: int = 4,
        max_batch: int = 1000,
        max_watch_backlog: int = 100_000,
    ) -> None:
        self.path = path
        self._n_readers = readers
        self._max_batch = max_batch
        self._max_watch_backlog = max_watch_backlog

        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = True
        self._lock_fd: int | None = None
        # Loop-side: the newest revision delivered to futures and watchers; the compacted revision.
        self._rev = 0
        self._compacted = 0
        self._watchers: set[_Watcher] = set()
        self._compact_lock = asyncio.Lock()
        # Writer-side state (writer thread only once started).
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._wconn: sqlite3.Connection | None = None
        self._writer: threading.Thread | None = None
        self._w_rev = 0
        self._cache: dict[str, tuple[int, int]] = {}  # live key -> (mod_revision, create_revision)
        # Readers.
        self._readers: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._rconns: list[sqlite3.Connection] = []
        self._rconns_lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if not self._closed:
            return
        self._loop = asyncio.get_running_loop()
        self._local = threading.local()
        rev, compacted = await asyncio.to_thread(self._open)
        self._rev = self._w_rev = rev
        self._compacted = compacted
        self._readers = ThreadPoolExecutor(self._n_readers, thread_name_prefix="k8py-sqlite-read")
        self._writer = threading.Thread(target=self._writer_main, name="k8py-sqlite-write", daemon=True)
        self._writer.start()
        self._closed = False

    def _open(self) -> tuple[int, int]:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreError(f"{self.path} is in use by another store") from None
        try:
            conn = connect(self.path)
            conn.execute("BEGIN IMMEDIATE")
            for stmt in SCHEMA:
                conn.execute(stmt)
            conn.execute("COMMIT")
            rev, compacted = conn.execute(_STATE).fetchone()
        except BaseException:
            os.close(fd)
            raise
        self._lock_fd = fd
        self._wconn = conn
        return rev, compacted

    async def close(self) -> None:
        """Finish queued writes, end every watch, close the database."""
        if self._closed:
            return
        self._closed = True
        for w in self._watchers:
            w.queue.put_nowait(_CLOSED)
        self._watchers.clear()
        assert self._readers is not None and self._writer is not None
        await asyncio.to_thread(self._readers.shutdown, wait=True)
        with self._rconns_lock:
            for conn in self._rconns:
                conn.close()
            self._rconns.clear()
        self._queue.put(_STOP)
        await asyncio.to_thread(self._writer.join)
        # Only now: closing any fd of the file drops sqlite's POSIX locks in this process.
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("store is not open")

    # ------------------------------------------------------------------ revisions

    async def current_revision(self) -> int:
        # The writer's committed revision: never behind what a read can see.
        return self._w_rev

    async def compacted_revision(self) -> int:
        return self._compacted

    # ------------------------------------------------------------------ reads

    def _rconn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path)
            self._local.conn = conn
            with self._rconns_lock:
                self._rconns.append(conn)
        return conn

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        self._check_open()
        assert self._loop is not None
        return await self._loop.run_in_executor(self._readers, fn, *args)

    def _in_snapshot(self, fn: Callable[[sqlite3.Connection, int, int], T], revision: int) -> T:
        """Run `fn(conn, current, compacted)` inside one read transaction, after
        checking `revision` (0: latest) against that same snapshot."""
        conn = self._rconn()
        conn.execute("BEGIN")
        try:
            current, compacted = conn.execute(_STATE).fetchone()
            if revision > 0:
                if revision < compacted:
                    raise CompactedError(revision, compacted)
                if revision > current:
                    raise FutureRevisionError(f"required revision {revision} is a future revision ({current})")
            return fn(conn, current, compacted)
        finally:
            conn.execute("COMMIT")

    async def get(self, key: str, *, revision: int = 0) -> KeyValue | None:
        if revision < 0:
            raise ValueError("revision must be >= 0")
        return await self._read(self._get, key, revision)

    def _get(self, key: str, revision: int) -> KeyValue | None:
        if revision == 0:
            row = self._rconn().execute(
                "SELECT id, create_revision, deleted, value FROM kv WHERE name = ? ORDER BY id DESC LIMIT 1",
                (key,),
            ).fetchone()
        else:
            row = self._in_snapshot(
                lambda conn, _c, _k: conn.execute(
                    "SELECT id, create_revision, deleted, value FROM kv"
                    " WHERE name = ? AND id <= ? ORDER BY id DESC LIMIT 1",
                    (key, revision),
                ).fetchone(),
                revision,
            )
        if row is None or row[2]:
            return None
        return KeyValue(key, row[3], row[1], row[0])

    async def list(self, prefix: str, *, start_key: str = "", limit: int = 0, revision: int = 0) -> ListResult:
        if revision < 0 or limit < 0:
            raise ValueError("revision and limit must be >= 0")
        return await self._read(self._list, prefix, start_key, limit, revision)

    def _list(self, prefix: str, start_key: str, limit: int, revision: int) -> ListResult:
        return self._in_snapshot(
            lambda conn, current, _k: self._list_at(conn, revision or current, prefix, start_key, limit), revision
        )

    @staticmethod
    def _list_at(conn: sqlite3.Connection, at: int, prefix: str, start_key: str, limit: int) -> ListResult:
        end = _prefix_end(prefix)
        lo = max(prefix, start_key)
        if end is not None and lo >= end:
            return ListResult([], at, False)
        args: list[Any] = []
        where = _range_sql("k.name", lo, end, args)
        # Walk the (name, id) index in key order; keep each key's newest row <= at.
        sql = (
            "SELECT k.id, k.name, k.create_revision, k.value FROM kv AS k"
            f" WHERE {where} AND k.id <= ? AND k.deleted = 0"
            " AND k.id = (SELECT max(j.id) FROM kv AS j WHERE j.name = k.name AND j.id <= ?)"
            " ORDER BY k.name"
        )
        args += [at, at]
        if limit:
            sql += " LIMIT ?"
            args.append(limit + 1)
        rows = conn.execute(sql, args).fetchall()
        more = bool(limit) and len(rows) > limit
        if more:
            rows = rows[:limit]
        return ListResult([KeyValue(name, value, cr, rid) for rid, name, cr, value in rows], at, more)

    async def count(self, prefix: str) -> int:
        return await self._read(self._count, prefix)

    def _count(self, prefix: str) -> int:
        args: list[Any] = []
        where = _range_sql("k.name", prefix, _prefix_end(prefix), args)
        sql = (
            f"SELECT count(*) FROM kv AS k WHERE {where} AND k.deleted = 0"
            " AND k.id = (SELECT max(j.id) FROM kv AS j WHERE j.name = k.name)"
        )
        return self._rconn().execute(sql, args).fetchone()[0]

    # ------------------------------------------------------------------ writes

    async def _submit(self, kind: int, key: str, value: bytes, expected: int) -> Any:
        self._check_open()
        assert self._loop is not None
        fut = self._loop.create_future()
        self._queue.put((kind, key, value, expected, fut))
        return await fut

    async def create(self, key: str, value: bytes) -> int:
        return await self._submit(_CREATE, key, bytes(value), 0)

    async def update(self, key: str, value: bytes, *, expected_revision: int) -> int:
        return await self._submit(_UPDATE, key, bytes(value), expected_revision)

    async def delete(self, key: str, *, expected_revision: int = 0) -> tuple[int, KeyValue]:
        return await self._submit(_DELETE, key, b"", expected_revision)

    async def _call_writer(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(conn)` in the writer thread, in a transaction of its own."""
        self._check_open()
        assert self._loop is not None
        fut = self._loop.create_future()
        self._queue.put((_CALL, "", b"", 0, fut, fn))
        return await fut

    def _writer_main(self) -> None:
        q = self._queue
        conn = self._wconn
        assert conn is not None
        try:
            while True:
                items = [q.get()]
                while len(items) < self._max_batch:
                    try:
                        items.append(q.get_nowait())
                    except queue.Empty:
                        break
                stop = False
                try:
                    ops: list[_Op] = []
                    for item in items:
                        if item is _STOP:
                            stop = True  # close() enqueues nothing after it
                        elif item[0] == _CALL:
                            self._commit_batch(ops)
                            ops = []
                            self._run_call(item[4], item[5])
                        else:
                            ops.append(item)
                    self._commit_batch(ops)
                except Exception:  # a bug, or the loop is gone; keep the writer alive
                    log.exception("sqlite store: writer failed on a batch")
                if stop:
                    return
        finally:
            conn.close()

    def _run_call(self, fut: asyncio.Future[Any], fn: Callable[[sqlite3.Connection], Any]) -> None:
        conn = self._wconn
        assert conn is not None and self._loop is not None
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except Exception as e:
            self._loop.call_soon_threadsafe(_settle, fut, None, e)
        else:
            self._loop.call_soon_threadsafe(_settle, fut, result, None)

    def _fetch_latest(self, ops: Sequence[_Op]) -> dict[str, _Latest | None]:
        """The latest rows of the keys of `ops` that are not cached live (None: no row), in one query
        per `_MAX_LOOKUP_KEYS` keys (padded to a power of two)."""
        cache = self._cache
        keys = list(dict.fromkeys(op[1] for op in ops if op[1] not in cache))
        out: dict[str, _Latest | None] = dict.fromkeys(keys)
        conn = self._wconn
        assert conn is not None
        while keys:
            chunk, keys = keys[:_MAX_LOOKUP_KEYS], keys[_MAX_LOOKUP_KEYS:]
            size = 1 << (len(chunk) - 1).bit_length()  # the power of two at or above
            chunk += chunk[-1:] * (size - len(chunk))
            for name, rid, cr, deleted in conn.execute(_latest_rows(size), chunk):
                out[name] = (rid, cr, bool(deleted), None)
                if not deleted:
                    cache[name] = (rid, cr)
        return out

    def _latest(self, key: str, overlay: dict[str, _Latest], fetched: dict[str, _Latest | None]) -> _Latest | None:
        hit = overlay.get(key)
        if hit is not None:
            return hit
        cached = self._cache.get(key)
        if cached is not None:
            return (cached[0], cached[1], False, None)
        if key in fetched:
            return fetched[key]
        assert self._wconn is not None
        row = self._wconn.execute(_LATEST, (key,)).fetchone()
        if row is None:
            return None
        if not row[2]:
            self._cache[key] = (row[0], row[1])
        return (row[0], row[1], bool(row[2]), None)

    def _value(self, latest: _Latest) -> bytes:
        if latest[3] is not None:
            return latest[3]
        assert self._wconn is not None
        return self._wconn.execute(_VALUE, (latest[0],)).fetchone()[0]

    def _commit_batch(self, ops: Sequence[_Op]) -> None:
        if not ops:
            return
        loop = self._loop
        assert loop is not None and self._wconn is not None
        overlay: dict[str, _Latest] = {}
        rows: list[tuple[int, str, int, int, int, int, bytes]] = []
        outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        events: list[Event] = []
        rev = self._w_rev
        try:
            fetched = self._fetch_latest(ops)
        except Exception:  # an sqlite error: each op looks its key up alone (and fails alone)
            log.exception("sqlite store: looking up a batch's keys failed")
            fetched = {}
        for kind, key, value, expected, fut in ops:
            try:
                latest = self._latest(key, overlay, fetched)
                live = latest is not None and not latest[2]
                if kind == _CREATE:
                    if live:
                        raise KeyExistsError(key)
                    rev += 1
                    rows.append((rev, key, 1, 0, rev, latest[0] if latest else 0, value))
                    overlay[key] = (rev, rev, False, value)
                    events.append(Event(EventType.PUT, KeyValue(key, value, rev, rev), None, True))
                    outcomes.append((fut, rev, None))
                    continue
                if not live:
                    raise KeyNotFoundError(key)
                assert latest is not None
                mod, cr = latest[0], latest[1]
                if expected and expected != mod:
                    raise ConflictError(key, KeyValue(key, self._value(latest), cr, mod))
                if kind == _UPDATE:
                    prev = KeyValue(key, self._value(latest), cr, mod)
                    rev += 1
                    rows.append((rev, key, 0, 0, cr, mod, value))
                    overlay[key] = (rev, cr, False, value)
                    events.append(Event(EventType.PUT, KeyValue(key, value, cr, rev), prev))
                    outcomes.append((fut, rev, None))
                else:  # _DELETE
                    old = self._value(latest)
                    prev = KeyValue(key, old, cr, mod)
                    rev += 1
                    rows.append((rev, key, 0, 1, cr, mod, old))
                    overlay[key] = (rev, cr, True, old)
                    events.append(Event(EventType.DELETE, KeyValue(key, old, cr, rev), prev))
                    outcomes.append((fut, (rev, prev), None))
            except StoreError as e:
                outcomes.append((fut, None, e))
            except Exception as e:  # a bug or an sqlite error while checking: this op only
                outcomes.append((fut, None, StoreError(f"sqlite: {e}")))
        if rows:
            conn = self._wconn
            try:
                conn.execute("BEGIN")
                done = 0
                while done < len(rows):
                    n = min(_pow2_floor(len(rows) - done), _MAX_INSERT_ROWS)
                    conn.execute(_insert_rows(n), [v for row in rows[done : done + n] for v in row])
                    done += n
                conn.execute("COMMIT")
            except Exception as e:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                log.exception("sqlite store: batch of %d writes failed", len(rows))
                err = StoreError(f"sqlite commit failed: {e}")
                outcomes = [(f, None, exc or err) for f, _, exc in outcomes]
                events = []
                rev = self._w_rev
            else:
                self._w_rev = rev
                for name, (mod, cr, deleted, _) in overlay.items():
                    if deleted:
                        self._cache.pop(name, None)
                    else:
                        self._cache[name] = (mod, cr)
        loop.call_soon_threadsafe(self._deliver, outcomes, events, rev)

    def _deliver(
        self,
        outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]],
        events: list[Event],
        rev: int,
    ) -> None:
        """On the loop: resolve the batch's futures, then publish its events."""
        if rev > self._rev:
            self._rev = rev
        for fut, result, exc in outcomes:
            _settle(fut, result, exc)
        if not events or not self._watchers:
            return
        for w in list(self._watchers):
            p = w.prefix
            mine = events[:] if not p else [e for e in events if e.kv.key.startswith(p)]
            if not mine:
                continue
            if w.pending + len(mine) > self._max_watch_backlog:
                # Cut the watcher off: free its backlog and make it raise.
                self._watchers.discard(w)
                while not w.queue.empty():
                    w.queue.get_nowait()
                w.pending = 0
                w.queue.put_nowait(
                    WatchOverflowError(f"watch on {p!r} fell more than {self._max_watch_backlog} events behind")
                )
                continue
            w.pending += len(mine)
            w.queue.put_nowait(mine)

    # ------------------------------------------------------------------ watch

    def watch(self, prefix: str, *, start_revision: int,
              progress: Callable[[int], None] | None = None) -> AsyncIterator[list[Event]]:
        """Batches of events under `prefix` with revision >= start_revision
        (0: only writes after this call). Subscribes at once; raises
        CompactedError here when start_revision is already compacted.
        Every key is under /registry/, so `progress` has nothing to learn."""
        self._check_open()
        if 0 < start_revision <= self._compacted:
            raise CompactedError(start_revision, self._compacted)
        w = _Watcher(prefix)
        self._watchers.add(w)
        if start_revision > 0:
            return self._watch(w, start_revision - 1, history=True)
        # Everything delivered so far is "before now"; later batches reach w.queue.
        return self._watch(w, self._rev, history=False)

    async def _watch(self, w: _Watcher, after: int, *, history: bool) -> AsyncIterator[list[Event]]:
        """Yield history after `after` (when asked), then live batches newer than the last event seen."""
        try:
            if history:
                while True:
                    page = await self._read(self._history, w.prefix, after)
                    if page:
                        after = page[-1].kv.mod_revision
                        yield page
                    if len(page) < HISTORY_PAGE:
                        break
            while True:
                item = await w.queue.get()
                if item is _CLOSED:
                    return
                if isinstance(item, BaseException):
                    raise item
                w.pending -= len(item)
                if item[-1].kv.mod_revision <= after:
                    continue  # already seen in the history
                if item[0].kv.mod_revision <= after:
                    item = [e for e in item if e.kv.mod_revision > after]
                after = item[-1].kv.mod_revision
                yield item
        finally:
            self._watchers.discard(w)

    def _history(self, prefix: str, after: int) -> list[Event]:
        """Events under `prefix` with revision > after (one page)."""

        def read(conn: sqlite3.Connection, _cur: int, compacted: int) -> list[Event]:
            if after < compacted:
                raise CompactedError(after + 1, compacted)
            args: list[Any] = [after]
            # `+k.name`: walk the primary key from `after`, not the name index.
            where = _range_sql("+k.name", prefix, _prefix_end(prefix), args)
            args.append(HISTORY_PAGE)
            rows = conn.execute(
                "SELECT k.id, k.name, k.created, k.deleted, k.create_revision, k.prev_revision, k.value, p.value"
                " FROM kv AS k LEFT JOIN kv AS p"
                " ON p.id = k.prev_revision AND k.created = 0 AND k.deleted = 0"
                f" WHERE k.id > ? AND {where} ORDER BY k.id LIMIT ?",
                args,
            ).fetchall()
            out: list[Event] = []
            for rid, name, created, deleted, cr, prev_rev, value, prev_value in rows:
                if deleted:
                    prev = KeyValue(name, value, cr, prev_rev)
                    out.append(Event(EventType.DELETE, KeyValue(name, value, cr, rid), prev))
                elif created:
                    out.append(Event(EventType.PUT, KeyValue(name, value, cr, rid), None, True))
                else:
                    prev = KeyValue(name, prev_value, cr, prev_rev) if prev_value is not None else None
                    out.append(Event(EventType.PUT, KeyValue(name, value, cr, rid), prev))
            return out

        return self._in_snapshot(read, 0)

    # ------------------------------------------------------------------ compaction

    async def compact(self, revision: int) -> None:
        """Forget history before `revision`. A revision at or below the compacted
        one is a no-op; one above the current revision raises FutureRevisionError."""
        async with self._compact_lock:
            if revision <= self._compacted:
                return
            if revision > self._w_rev:
                raise FutureRevisionError(f"required revision {revision} is a future revision ({self._w_rev})")
            lo = self._compacted
            while lo < revision:
                hi = min(lo + COMPACT_CHUNK, revision)
                await self._call_writer(lambda conn, lo=lo, hi=hi: _compact_chunk(conn, lo, hi))
                self._compacted = lo = hi


def _compact_chunk(conn: sqlite3.Connection, lo: int, hi: int) -> None:
    """Compact revisions (lo, hi]. Order matters: superseded rows are found
    through their successors' prev_revision, tombstones included."""
    conn.execute(
        "DELETE FROM kv WHERE id IN"
        " (SELECT prev_revision FROM kv WHERE id > ? AND id <= ? AND prev_revision > 0)",
        (lo, hi),
    )
    conn.execute("DELETE FROM kv WHERE id > ? AND id <= ? AND deleted = 1", (lo, hi))
    conn.execute("UPDATE meta SET value = ? WHERE key = 'compact_rev'", (hi,))


def _settle(fut: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if fut.done():  # the caller was cancelled
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)
