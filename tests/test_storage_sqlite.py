"""What only SQLiteStore does (the Store contract itself: tests/test_storage_contract.py): revision 1
when fresh, subscribe-at-call watches, restart, one owner per file, group commit, slow watchers cut off,
compaction shrinking the table, durability across kill -9."""

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

from k8py.storage.interface import (
    ConflictError,
    Event,
    KeyExistsError,
    KeyNotFoundError,
    StoreError,
)
from k8py.storage.sqlite import SQLiteStore, WatchOverflowError
from tests.test_storage_contract import collect

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(str(tmp_path / "k8py.db"))
    await s.start()
    try:
        yield s
    finally:
        await s.close()


async def test_fresh_store_starts_at_revision_1(store: SQLiteStore) -> None:
    assert await store.current_revision() == 1
    assert await store.compacted_revision() == 0
    assert await store.create("/a", b"1") == 2


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


async def test_compaction_deletes_superseded_rows(store: SQLiteStore) -> None:
    """(The contract suite checks what stays readable; this checks the table shrinks.)"""
    rev = 0
    for i in range(10):
        rev = await store.create(f"/k/{i}", b"0")
        for v in range(1, 4):
            rev = await store.update(f"/k/{i}", str(v).encode(), expected_revision=rev)
    rd, _ = await store.delete("/k/9")
    await store.update("/k/8", b"after", expected_revision=(await store.get("/k/8")).mod_revision)  # type: ignore[union-attr]
    await store.compact(rd)
    conn = store._rconn()  # noqa: SLF001 - peeking at the table
    (rows,) = conn.execute("SELECT count(*) FROM kv").fetchone()
    assert rows == 10  # 9 live keys' latest rows + /k/8's previous row (superseded after rd)


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
