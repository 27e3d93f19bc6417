"""The Store contract, run against both backends: the embedded SQLiteStore and EtcdStore on a real etcd
(one member shared by the module; each test has an --etcd-prefix of its own). MVCC reads, conditional
writes, paging, watches from history into live writes, compaction."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from k8py.storage.compactor import run_compactor
from k8py.storage.etcd import EtcdStore
from k8py.storage.interface import (
    CompactedError,
    ConflictError,
    Event,
    EventType,
    FutureRevisionError,
    KeyExistsError,
    KeyNotFoundError,
    Store,
)
from k8py.storage.sqlite import SQLiteStore
from tests.conftest import wait_for_async
from tests.etcdcluster import EtcdCluster, needs_etcd

_prefixes = itertools.count()


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    cluster = EtcdCluster(tmp_path_factory.mktemp("etcd")).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(params=["sqlite", pytest.param("etcd", marks=needs_etcd)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    s: Store
    if request.param == "sqlite":
        s = SQLiteStore(str(tmp_path / "k8py.db"))
    else:
        cluster: EtcdCluster = request.getfixturevalue("etcd")
        s = EtcdStore(cluster.endpoints, tls=cluster.client_tls, prefix=f"/t{next(_prefixes)}")
    await s.start()
    try:
        yield s
    finally:
        await s.close()


async def collect(it: AsyncIterator[list[Event]], n: int, timeout: float = 10.0) -> list[Event]:
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


async def test_create_get_update_conflicts(store: Store) -> None:
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


async def test_delete_with_expected_revision(store: Store) -> None:
    r1 = await store.create("/registry/k", b"v1")
    r2 = await store.update("/registry/k", b"v2", expected_revision=r1)
    with pytest.raises(ConflictError) as ei:
        await store.delete("/registry/k", expected_revision=r1)
    assert ei.value.current is not None and ei.value.current.mod_revision == r2
    rd, old = await store.delete("/registry/k", expected_revision=r2)
    assert rd > r2
    assert (old.value, old.create_revision, old.mod_revision) == (b"v2", r1, r2)
    assert await store.get("/registry/k") is None
    with pytest.raises(KeyNotFoundError):
        await store.delete("/registry/k")
    with pytest.raises(KeyNotFoundError):
        await store.update("/registry/k", b"x", expected_revision=rd)
    # Re-create after delete: a new create_revision; unconditional delete.
    r3 = await store.create("/registry/k", b"v3")
    kv = await store.get("/registry/k")
    assert kv is not None and kv.create_revision == r3
    rd2, old = await store.delete("/registry/k")
    assert old.value == b"v3" and rd2 == r3 + 1


async def test_list_paging(store: Store) -> None:
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
    assert await store.count("/registry/") == 26


async def test_list_and_get_at_old_revision(store: Store) -> None:
    ra = await store.create("/registry/p/a", b"a1")
    rb = await store.create("/registry/p/b", b"b1")
    ra2 = await store.update("/registry/p/a", b"a2", expected_revision=ra)
    rdel, _ = await store.delete("/registry/p/b")
    rc = await store.create("/registry/p/c", b"c1")

    at_rb = await store.list("/registry/p/", revision=rb)
    assert [(kv.key, kv.value) for kv in at_rb.items] == [("/registry/p/a", b"a1"), ("/registry/p/b", b"b1")]
    assert at_rb.revision == rb
    at_del = await store.list("/registry/p/", revision=rdel)
    assert [(kv.key, kv.value, kv.mod_revision) for kv in at_del.items] == [("/registry/p/a", b"a2", ra2)]
    now = await store.list("/registry/p/")
    assert [kv.key for kv in now.items] == ["/registry/p/a", "/registry/p/c"] and now.revision == rc

    old = await store.get("/registry/p/a", revision=ra)
    assert old is not None and old.value == b"a1"
    assert await store.get("/registry/p/b", revision=rdel) is None
    assert await store.get("/registry/p/c", revision=rdel) is None

    with pytest.raises(FutureRevisionError):
        await store.list("/registry/p/", revision=rc + 1)
    with pytest.raises(FutureRevisionError):
        await store.get("/registry/p/a", revision=rc + 5)
    await store.compact(ra2)
    with pytest.raises(CompactedError):
        await store.list("/registry/p/", revision=ra)
    at_compacted = await store.list("/registry/p/", revision=ra2)  # the compacted revision itself stays readable
    assert [(kv.key, kv.value) for kv in at_compacted.items] == [("/registry/p/a", b"a2"), ("/registry/p/b", b"b1")]


async def test_watch_history_then_live_without_gaps_or_dupes(store: Store) -> None:
    first = await store.create("/registry/w/0", b"0")
    for i in range(1, 1500):  # more than one history page
        await store.create(f"/registry/w/{i}", b"x")
    await store.create("/registry/other/x", b"ignored")
    r = await store.update("/registry/w/0", b"1", expected_revision=first)

    watch = store.watch("/registry/w/", start_revision=first)
    total = 1500 + 1 + 600  # history + live

    async def writer() -> None:
        for i in range(1500, 2100):
            await store.create(f"/registry/w/{i}", b"live")

    events, _ = await asyncio.gather(collect(watch, total, timeout=30), writer())
    revs = [e.kv.mod_revision for e in events]
    assert revs == sorted(set(revs)) and len(revs) == total and revs[0] == first
    assert all(e.kv.key.startswith("/registry/w/") for e in events)
    upd = next(e for e in events if e.kv.mod_revision == r)
    assert upd.type is EventType.PUT and not upd.created
    assert upd.prev is not None and (upd.prev.value, upd.prev.mod_revision) == (b"0", first)
    assert events[0].created and events[0].prev is None

    # A live delete carries the value deleted, in kv and prev.
    rd, _ = await store.delete("/registry/w/5")
    (ev,) = await collect(watch, 1)
    assert ev.type is EventType.DELETE and ev.kv.mod_revision == rd and ev.kv.value == b"x"
    assert ev.prev is not None and ev.prev.value == b"x"
    await watch.aclose()  # type: ignore[attr-defined]

    # The same delete read back from history.
    hist = store.watch("/registry/w/5", start_revision=rd)
    (hev,) = await collect(hist, 1)
    assert hev == ev
    await hist.aclose()  # type: ignore[attr-defined]


async def test_watch_compacted_revision_raises(store: Store) -> None:
    r1 = await store.create("/registry/c/a", b"1")
    r2 = await store.update("/registry/c/a", b"2", expected_revision=r1)
    r3 = await store.create("/registry/c/b", b"1")
    await store.compact(r2)
    with pytest.raises(CompactedError) as ei:
        await anext(store.watch("/registry/c/", start_revision=r1))
    assert ei.value.compacted == r2
    events = await collect(store.watch("/registry/c/", start_revision=r2 + 1), 1)
    assert [e.kv.mod_revision for e in events] == [r3]


async def test_compaction_keeps_latest_values(store: Store) -> None:
    rev = 0
    for i in range(10):
        rev = await store.create(f"/registry/k/{i}", b"0")
        for v in range(1, 4):
            rev = await store.update(f"/registry/k/{i}", str(v).encode(), expected_revision=rev)
    rd, _ = await store.delete("/registry/k/9")
    kv8 = await store.get("/registry/k/8")
    assert kv8 is not None
    r8 = await store.update("/registry/k/8", b"after", expected_revision=kv8.mod_revision)
    await store.compact(rd)
    await store.compact(rd - 5)  # older than compacted: no-op
    assert await store.compacted_revision() == rd
    with pytest.raises(FutureRevisionError):
        await store.compact(await store.current_revision() + 1)

    now = await store.list("/registry/k/")
    assert [(kv.key, kv.value) for kv in now.items] == (
        [(f"/registry/k/{i}", b"3") for i in range(8)] + [("/registry/k/8", b"after")])
    # History after the compacted revision is intact, with prev values.
    events = await collect(store.watch("/registry/k/", start_revision=rd + 1), 1)
    assert events[0].kv.mod_revision == r8 and events[0].prev is not None and events[0].prev.value == b"3"
    # Writes keep working, revisions keep increasing (etcd's store records the compaction: a write).
    assert await store.create("/registry/k/9", b"new") > r8


async def test_concurrent_writers_get_unique_increasing_revisions(store: Store) -> None:
    watch = store.watch("/registry/c/", start_revision=await store.current_revision() + 1)

    async def writer(w: int) -> list[int]:
        revs = []
        for i in range(50):
            revs.append(await store.create(f"/registry/c/{w}/{i}", b"v" * 100))
        rev = revs[-1]
        for _ in range(20):  # contended updates of one shared key
            while True:
                kv = await store.get("/registry/c/shared")
                try:
                    if kv is None:
                        rev = await store.create("/registry/c/shared", b"0")
                    else:
                        rev = await store.update("/registry/c/shared", b"%d" % (int(kv.value) + 1),
                                                 expected_revision=kv.mod_revision)
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
    kv = await store.get("/registry/c/shared")
    assert kv is not None and int(kv.value) == 32 * 20 - 1
    events = await collect(watch, len(flat), timeout=30)
    assert sorted(flat) == [e.kv.mod_revision for e in events]
    await watch.aclose()  # type: ignore[attr-defined]


async def test_run_compactor(store: Store) -> None:
    for i in range(30):
        await store.create(f"/registry/r/{i}", b"")
    task = asyncio.ensure_future(run_compactor(store, interval=0.05, min_retain=10))
    try:
        cur = await store.current_revision()

        async def compacted() -> bool:
            return await store.compacted_revision() == cur - 10

        await wait_for_async(compacted, timeout=5)
    finally:
        task.cancel()
    assert await store.count("/registry/r/") == 30
