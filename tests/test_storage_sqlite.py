"""SQLiteStore against the Store contract: MVCC reads, conditional writes,
watches, compaction, restart, group commit and durability across kill -9."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import textwrap
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from k8py.storage.compactor import run_compactor
from k8py.storage.interface import (
    CompactedError,
    ConflictError,
    Event,
    EventType,
    FutureRevisionError,
    KeyExistsError,
    KeyNotFoundError,
    StoreError,
)
from k8py.storage.sqlite import SQLiteStore, WatchOverflowError

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(str(tmp_path / "k8py.db"))
    await s.start()
    try:
        yield s
    finally:
        await s.close()


async def collect(it: AsyncIterator[list[Event]], n: int, timeout: float = 5.0) -> list[Event]:
    """The next `n` events of a watch (batches flattened)."""
    out: list[Event] = []

    async def run() -> None:
        async for batch in it:
            assert batch, "empty batch"
            out.extend(batch)
            if len(out) >= n:
                return

    await asyncio.wait_for(run(), timeout)
    return out


async def test_fresh_store_starts_at_revision_1(store: SQLiteStore) -> None:
    assert await store.current_revision() == 1
    assert await store.compacted_revision() == 0
    assert await store.create("/a", b"1") == 2


async def test_create_get_update_conflicts(store: SQLiteStore) -> None:
    r1 = await store.create("/registry/pods/default/a", b"v1")
    with pytest.raises(KeyExistsError):
        await store.create("/registry/pods/default/a", b"again")
    kv = await store.get("/registry/pods/default/a")
    assert kv is not None
    assert (kv.value, kv.create_revision, kv.mod_revision) == (b"v1", r1, r1)

    r2 = await store.update("/registry/pods/default/a", b"v2", expected_revision=r1)
    assert r2 > r1
    with pytest.raises(ConflictError) as ei:
        await store.update("/registry/pods/default/a", b"stale", expected_revision=r1)
    assert ei.value.current is not None
    assert (ei.value.current.value, ei.value.current.mod_revision) == (b"v2", r2)
    with pytest.raises(KeyNotFoundError):
        await store.update("/registry/pods/default/missing", b"x", expected_revision=1)

    kv = await store.get("/registry/pods/default/a")
    assert kv is not None and (kv.value, kv.create_revision, kv.mod_revision) == (b"v2", r1, r2)
    assert await store.get("/registry/pods/default/missing") is None
    assert await store.current_revision() == r2


async def test_delete_with_expected_revision(store: SQLiteStore) -> None:
    r1 = await store.create("/k", b"v1")
    r2 = await store.update("/k", b"v2", expected_revision=r1)
    with pytest.raises(ConflictError) as ei:
        await store.delete("/k", expected_revision=r1)
    assert ei.value.current is not None and ei.value.current.mod_revision == r2
    rd, old = await store.delete("/k", expected_revision=r2)
    assert rd > r2
    assert (old.value, old.create_revision, old.mod_revision) == (b"v2", r1, r2)
    assert await store.get("/k") is None
    with pytest.raises(KeyNotFoundError):
        await store.delete("/k")
    with pytest.raises(KeyNotFoundError):
        await store.update("/k", b"x", expected_revision=rd)
    # Re-create after delete: a new create_revision; unconditional delete.
    r3 = await store.create("/k", b"v3")
    kv = await store.get("/k")
    assert kv is not None and kv.create_revision == r3
    rd2, old = await store.delete("/k")
    assert old.value == b"v3" and rd2 == r3 + 1


async def test_list_paging(store: SQLiteStore) -> None:
    for i in range(25):
        await store.create(f"/registry/cm/ns/{i:02d}", f"v{i}".encode())
    await store.create("/registry/cm/ns0", b"outside")  # shares the string prefix but not "ns/"
    await store.create("/registry/cmx", b"outside")
    await store.delete("/registry/cm/ns/03")

    full = await store.list("/registry/cm/ns/")
    assert [kv.key[-2:] for kv in full.items] == [f"{i:02d}" for i in range(25) if i != 3]
    assert full.more is False and full.revision == await store.current_revision()

    seen: list[str] = []
    start = ""
    pages = 0
    while True:
        page = await store.list("/registry/cm/ns/", start_key=start, limit=10, revision=full.revision)
        pages += 1
        seen += [kv.key for kv in page.items]
        assert page.revision == full.revision
        if not page.more:
            break
        start = page.items[-1].key + "\x00"
    assert pages == 3 and seen == [kv.key for kv in full.items]

    exact = await store.list("/registry/cm/ns/", limit=24)
    assert len(exact.items) == 24 and exact.more is False
    assert await store.count("/registry/cm/ns/") == 24
    assert await store.count("/registry/cm") == 26
    assert await store.count("") == 26


async def test_list_and_get_at_old_revision(store: SQLiteStore) -> None:
    ra = await store.create("/p/a", b"a1")
    rb = await store.create("/p/b", b"b1")
    ra2 = await store.update("/p/a", b"a2", expected_revision=ra)
    rdel, _ = await store.delete("/p/b")
    rc = await store.create("/p/c", b"c1")

    at_rb = await store.list("/p/", revision=rb)
    assert [(kv.key, kv.value) for kv in at_rb.items] == [("/p/a", b"a1"), ("/p/b", b"b1")]
    assert at_rb.revision == rb
    at_del = await store.list("/p/", revision=rdel)
    assert [(kv.key, kv.value, kv.mod_revision) for kv in at_del.items] == [("/p/a", b"a2", ra2)]
    now = await store.list("/p/")
    assert [kv.key for kv in now.items] == ["/p/a", "/p/c"] and now.revision == rc

    old = await store.get("/p/a", revision=ra)
    assert old is not None and old.value == b"a1"
    assert await store.get("/p/b", revision=rdel) is None
    assert await store.get("/p/c", revision=rdel) is None

    with pytest.raises(FutureRevisionError):
        await store.list("/p/", revision=rc + 1)
    with pytest.raises(FutureRevisionError):
        await store.get("/p/a", revision=rc + 5)
    await store.compact(ra2)
    with pytest.raises(CompactedError):
        await store.list("/p/", revision=ra)
    at_compacted = await store.list("/p/", revision=ra2)  # the compacted revision itself stays readable
    assert [(kv.key, kv.value) for kv in at_compacted.items] == [("/p/a", b"a2"), ("/p/b", b"b1")]


async def test_watch_history_then_live_without_gaps_or_dupes(store: SQLiteStore) -> None:
    first = await store.create("/w/0", b"0")
    for i in range(1, 1500):  # more than one history page
        await store.create(f"/w/{i}", b"x")
    await store.create("/other/x", b"ignored")
    r = await store.update("/w/0", b"1", expected_revision=first)

    watch = store.watch("/w/", start_revision=first)
    total = 1500 + 1 + 600  # history + live

    async def writer() -> None:
        for i in range(1500, 2100):
            await store.create(f"/w/{i}", b"live")

    events, _ = await asyncio.gather(collect(watch, total), writer())
    revs = [e.kv.mod_revision for e in events]
    assert revs == sorted(set(revs)) and len(revs) == total and revs[0] == first
    assert all(e.kv.key.startswith("/w/") for e in events)
    upd = next(e for e in events if e.kv.mod_revision == r)
    assert upd.type is EventType.PUT and not upd.created
    assert upd.prev is not None and (upd.prev.value, upd.prev.mod_revision) == (b"0", first)
    assert events[0].created and events[0].prev is None

    # A live delete carries the value deleted, in kv and prev.
    rd, _ = await store.delete("/w/5")
    (ev,) = await collect(watch, 1)
    assert ev.type is EventType.DELETE and ev.kv.mod_revision == rd and ev.kv.value == b"x"
    assert ev.prev is not None and ev.prev.value == b"x"
    await watch.aclose()  # type: ignore[attr-defined]

    # The same delete read back from history.
    hist = store.watch("/w/5", start_revision=rd)
    (hev,) = await collect(hist, 1)
    assert hev == ev
    await hist.aclose()  # type: ignore[attr-defined]


async def test_watch_drops_live_events_already_read_from_history(store: SQLiteStore) -> None:
    r1 = await store.create("/h/a", b"")
    watch = store.watch("/h/", start_revision=r1)  # subscribed now: r2 reaches history *and* the live queue
    r2 = await store.create("/h/b", b"")
    first = await asyncio.wait_for(anext(watch), 5)
    assert [e.kv.mod_revision for e in first] == [r1, r2]
    r3 = await store.create("/h/c", b"")
    assert [e.kv.mod_revision for e in await collect(watch, 1)] == [r3]
    await watch.aclose()  # type: ignore[attr-defined]


async def test_watch_from_now_and_close_ends_it(tmp_path: Path) -> None:
    s = SQLiteStore(str(tmp_path / "db"))
    await s.start()
    await s.create("/a/old", b"")
    watch = s.watch("/a/", start_revision=0)
    r = await s.create("/a/new", b"")  # written before the first iteration: still delivered
    (ev,) = await collect(watch, 1)
    assert ev.kv.mod_revision == r
    await s.close()
    assert [b async for b in watch] == []


async def test_watch_compacted_revision_raises(store: SQLiteStore) -> None:
    r1 = await store.create("/c/a", b"1")
    r2 = await store.update("/c/a", b"2", expected_revision=r1)
    r3 = await store.create("/c/b", b"1")
    await store.compact(r2)
    with pytest.raises(CompactedError) as ei:
        store.watch("/c/", start_revision=r2)
    assert ei.value.compacted == r2
    events = await collect(store.watch("/c/", start_revision=r2 + 1), 1)
    assert [e.kv.mod_revision for e in events] == [r3]


async def test_compaction_keeps_latest_values(store: SQLiteStore) -> None:
    rev = 0
    for i in range(10):
        rev = await store.create(f"/k/{i}", b"0")
        for v in range(1, 4):
            rev = await store.update(f"/k/{i}", str(v).encode(), expected_revision=rev)
    rd, _ = await store.delete("/k/9")
    r8 = await store.update("/k/8", b"after", expected_revision=(await store.get("/k/8")).mod_revision)  # type: ignore[union-attr]
    await store.compact(rd)
    await store.compact(rd - 5)  # older than compacted: no-op
    assert await store.compacted_revision() == rd
    with pytest.raises(FutureRevisionError):
        await store.compact(r8 + 1)

    now = await store.list("/k/")
    assert [(kv.key, kv.value) for kv in now.items] == [(f"/k/{i}", b"3") for i in range(8)] + [("/k/8", b"after")]
    # History after the compacted revision is intact, with prev values.
    events = await collect(store.watch("/k/", start_revision=rd + 1), 1)
    assert events[0].kv.mod_revision == r8 and events[0].prev is not None and events[0].prev.value == b"3"
    # Superseded rows and the tombstone are gone from the table.
    conn = store._rconn()  # noqa: SLF001 - peeking at the table
    (rows,) = conn.execute("SELECT count(*) FROM kv").fetchone()
    assert rows == 10  # 9 live keys' latest rows + /k/8's previous row (superseded after rd)
    # Writes keep working, revisions keep increasing.
    assert await store.create("/k/9", b"new") == r8 + 1


async def test_restart_keeps_data_and_revision(tmp_path: Path) -> None:
    path = str(tmp_path / "db")
    s = SQLiteStore(path)
    await s.start()
    r1 = await s.create("/x/a", b"a")
    await s.create("/x/b", b"b")
    rd, _ = await s.delete("/x/b")
    await s.compact(rd)  # the newest row (a tombstone) is compacted away
    await s.close()

    s2 = SQLiteStore(path)
    await s2.start()
    try:
        assert await s2.current_revision() == rd
        assert await s2.compacted_revision() == rd
        kv = await s2.get("/x/a")
        assert kv is not None and (kv.value, kv.mod_revision) == (b"a", r1)
        with pytest.raises(KeyExistsError):
            await s2.create("/x/a", b"again")
        assert await s2.create("/x/b", b"b2") == rd + 1
        assert await s2.update("/x/a", b"a2", expected_revision=r1) == rd + 2
    finally:
        await s2.close()


async def test_second_store_on_same_file_is_refused(store: SQLiteStore) -> None:
    other = SQLiteStore(store.path)
    with pytest.raises(StoreError, match="in use"):
        await other.start()


async def test_concurrent_writers_get_unique_increasing_revisions(store: SQLiteStore) -> None:
    watch = store.watch("/c/", start_revision=0)

    async def writer(w: int) -> list[int]:
        revs = []
        for i in range(50):
            revs.append(await store.create(f"/c/{w}/{i}", b"v" * 100))
        rev = revs[-1]
        for _ in range(20):  # contended updates of one shared key
            while True:
                kv = await store.get("/c/shared")
                try:
                    if kv is None:
                        rev = await store.create("/c/shared", b"0")
                    else:
                        rev = await store.update("/c/shared", b"%d" % (int(kv.value) + 1), expected_revision=kv.mod_revision)
                    break
                except (ConflictError, KeyExistsError):
                    continue
            revs.append(rev)
        return revs

    results = await asyncio.gather(*(writer(w) for w in range(32)))
    for revs in results:
        assert revs == sorted(revs)
    flat = [r for revs in results for r in revs]
    assert len(set(flat)) == len(flat) == 32 * 70
    kv = await store.get("/c/shared")
    assert kv is not None and int(kv.value) == 32 * 20 - 1
    events = await collect(watch, len(flat))
    assert sorted(flat) == [e.kv.mod_revision for e in events]
    await watch.aclose()  # type: ignore[attr-defined]


async def test_failing_op_does_not_fail_its_batch(store: SQLiteStore) -> None:
    r0 = await store.create("/b/exists", b"")
    watch = store.watch("/b/", start_revision=0)
    # Hold the writer so that everything below is queued and committed as one batch.
    release = threading.Event()
    held = asyncio.ensure_future(store._call_writer(lambda conn: release.wait(5)))  # noqa: SLF001
    await asyncio.sleep(0.05)
    ops = [
        store.create("/b/1", b"1"),
        store.create("/b/exists", b"dup"),
        store.update("/b/exists", b"2", expected_revision=r0 + 100),
        store.create("/b/2", b"2"),
        store.update("/b/1", b"1b", expected_revision=r0 + 1),  # depends on the first op in the batch
        store.delete("/b/missing"),
        store.delete("/b/2", expected_revision=r0 + 2),
    ]
    tasks = [asyncio.ensure_future(op) for op in ops]
    await asyncio.sleep(0.05)
    release.set()
    await held
    res = await asyncio.gather(*tasks, return_exceptions=True)
    assert res[0] == r0 + 1
    assert isinstance(res[1], KeyExistsError)
    assert isinstance(res[2], ConflictError)
    assert res[3] == r0 + 2
    assert res[4] == r0 + 3
    assert isinstance(res[5], KeyNotFoundError)
    assert isinstance(res[6], tuple) and res[6][0] == r0 + 4
    (batch,) = [b async for b in _take(watch, 1)]
    assert [e.kv.mod_revision for e in batch] == [r0 + 1, r0 + 2, r0 + 3, r0 + 4]  # one commit, one batch
    assert batch[2].prev is not None and batch[2].prev.value == b"1"
    await watch.aclose()  # type: ignore[attr-defined]


async def _take(it: AsyncIterator[list[Event]], n: int) -> AsyncIterator[list[Event]]:
    for _ in range(n):
        yield await asyncio.wait_for(anext(it), 5)


async def test_slow_watcher_is_cut_off(tmp_path: Path) -> None:
    s = SQLiteStore(str(tmp_path / "db"), max_watch_backlog=10)
    await s.start()
    try:
        slow = s.watch("/", start_revision=0)
        for i in range(11):
            await s.create(f"/{i}", b"")
        with pytest.raises(WatchOverflowError):
            async for _ in slow:
                pass
    finally:
        await s.close()


async def test_run_compactor(store: SQLiteStore) -> None:
    for i in range(30):
        await store.create(f"/r/{i}", b"")
    task = asyncio.ensure_future(run_compactor(store, interval=0.05, min_retain=10))
    try:
        cur = await store.current_revision()
        for _ in range(100):
            if await store.compacted_revision() == cur - 10:
                break
            await asyncio.sleep(0.02)
        assert await store.compacted_revision() == cur - 10
    finally:
        task.cancel()
    assert await store.count("/r/") == 30


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from k8py.storage.sqlite import SQLiteStore

    async def main():
        s = SQLiteStore(sys.argv[1])
        await s.start()
        async def writer(w):
            i = 0
            while True:
                key = f"/d/{w}/{i}"
                rev = await s.create(key, b"x" * 2048)
                sys.stdout.write(f"{key} {rev}\\n")
                sys.stdout.flush()
                i += 1
        await asyncio.gather(*(writer(w) for w in range(8)))

    asyncio.run(main())
    """
)


async def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    path = str(tmp_path / "db")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, path, stdout=asyncio.subprocess.PIPE, env=env
    )
    acked: dict[str, int] = {}
    try:
        assert proc.stdout is not None
        while len(acked) < 2000:
            line = await asyncio.wait_for(proc.stdout.readline(), 10)
            assert line, "child exited early"
            key, rev = line.decode().split()
            acked[key] = int(rev)
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    assert proc.returncode == -signal.SIGKILL

    s = SQLiteStore(path)
    await s.start()
    try:
        assert await s.current_revision() >= max(acked.values())
        items = {kv.key: kv.mod_revision for kv in (await s.list("/d/")).items}
        missing = {k: r for k, r in acked.items() if items.get(k) != r}
        assert not missing
    finally:
        await s.close()


async def test_large_batch_after_restart_checks_every_key(tmp_path: Path) -> None:
    """One batch of more keys than one lookup or one INSERT takes, none of them cached (a restart):
    live keys conflict, deleted ones are created again over their tombstones, in-batch duplicates
    see the batch's own rows."""
    path = str(tmp_path / "db")
    s = SQLiteStore(path)
    await s.start()
    live = await s.create("/k/live", b"1")
    await s.create("/k/gone", b"1")
    gone, _ = await s.delete("/k/gone")
    await s.close()

    s = SQLiteStore(path)
    await s.start()
    try:
        release = threading.Event()
        held = asyncio.ensure_future(s._call_writer(lambda conn: release.wait(5)))  # noqa: SLF001
        await asyncio.sleep(0.05)
        keys = ["/k/live", "/k/gone", "/k/new", "/k/new"] + [f"/k/n{i:04d}" for i in range(700)]
        tasks = [asyncio.ensure_future(s.create(k, b"v")) for k in keys]
        await asyncio.sleep(0.05)
        release.set()
        await held
        res = await asyncio.gather(*tasks, return_exceptions=True)
        assert isinstance(res[0], KeyExistsError) and isinstance(res[3], KeyExistsError)
        assert res[1] == gone + 1 and res[2] == gone + 2
        assert res[4:] == list(range(gone + 3, gone + 3 + 700))
        with pytest.raises(ConflictError):
            await s.update("/k/live", b"2", expected_revision=live + 1)
    finally:
        await s.close()
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT id, created, deleted, prev_revision FROM kv WHERE name = '/k/gone' ORDER BY id").fetchall()
    assert rows[-1] == (gone + 1, 1, 0, gone)  # the create points at the tombstone it follows
    assert conn.execute("SELECT count(*) FROM kv WHERE name LIKE '/k/n0%'").fetchone() == (700,)
    conn.close()
