"""What only EtcdStore does, on real etcd members (the Store contract: tests/test_storage_contract.py):
failover across --etcd-servers, watches resumed across a leader's kill -9 without gaps or repeats,
etcd's size limits, TLS client certificates, progress notifications, and a `k8py up` cluster on etcd
(kubectl, consistent reads, 503 while etcd is down)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from k8py.apiserver.watchcache import WatchCache
from k8py.storage.etcd import EtcdStore, TLSFiles
from k8py.storage.interface import (
    ConflictError,
    Event,
    KeyExistsError,
    StoreUnavailableError,
    ValueTooLargeError,
)
from tests.conftest import start_cluster, wait_for, wait_for_async
from tests.etcdcluster import EtcdCluster, needs_etcd

pytestmark = needs_etcd


@pytest.fixture(scope="module")
def etcd3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    cluster = EtcdCluster(tmp_path_factory.mktemp("etcd3"), size=3).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
async def store(etcd3: EtcdCluster, request: pytest.FixtureRequest) -> AsyncIterator[EtcdStore]:
    s = EtcdStore(etcd3.endpoints, tls=etcd3.client_tls, prefix=f"/{request.node.name}")
    await s.start()
    try:
        yield s
    finally:
        await s.close()


async def test_writes_and_watch_survive_killing_the_leader(etcd3: EtcdCluster, store: EtcdStore) -> None:
    """kill -9 of the leader (the store's active endpoint) mid-stream: every acknowledged write is
    there afterwards and the watch delivers each exactly once, in order."""
    leader = etcd3.wait_leader()
    store._active = etcd3.members.index(leader)  # noqa: SLF001 - aim the store at the member to kill
    start = await store.current_revision() + 1
    watch = store.watch("/registry/cm/", start_revision=start)
    acked: dict[str, int] = {}
    seen: list[Event] = []

    async def writer() -> None:
        for i in range(300):
            key = f"/registry/cm/{i:03d}"
            while True:  # as client-go: retry what failed
                try:
                    acked[key] = await store.create(key, b"v")
                    break
                except KeyExistsError:  # an earlier attempt did land
                    kv = await store.get(key)
                    assert kv is not None
                    acked[key] = kv.mod_revision
                    break
                except StoreUnavailableError:
                    await asyncio.sleep(0.05)
            if i == 100:
                etcd3.kill(leader)

    async def reader() -> None:
        async for batch in watch:
            seen.extend(batch)
            if len(seen) >= 300:
                return

    try:
        await asyncio.wait_for(asyncio.gather(writer(), reader()), 60)
        revs = [e.kv.mod_revision for e in seen]
        assert revs == sorted(set(revs)), "events repeated or out of order"
        assert {e.kv.key: e.kv.mod_revision for e in seen} == acked
        listed = await store.list("/registry/cm/")
        assert {kv.key: kv.mod_revision for kv in listed.items} == acked
        assert store.servers[store._active] != leader.client_url  # noqa: SLF001 - failed over
    finally:
        await watch.aclose()  # type: ignore[attr-defined]
        etcd3.restart(leader)
        wait_for(etcd3.healthy, timeout=30, what="etcd member back")


async def test_limits_large_values_and_large_lists(store: EtcdStore) -> None:
    with pytest.raises(ValueTooLargeError):
        await store.create("/registry/big/x", b"x" * (2 * 1024 * 1024))
    value = b"y" * 100_000
    await asyncio.gather(*(store.create(f"/registry/big/{i:03d}", value) for i in range(60)))  # 6 MB in all
    listed = await store.list("/registry/big/")
    assert len(listed.items) == 60 and not listed.more and all(kv.value == value for kv in listed.items)
    page = await store.list("/registry/big/", limit=7)
    assert len(page.items) == 7 and page.more


async def test_update_conflict_carries_the_current_value(store: EtcdStore) -> None:
    r1 = await store.create("/registry/u/a", b"1")
    r2 = await store.update("/registry/u/a", b"2", expected_revision=r1)
    with pytest.raises(ConflictError) as ei:
        await store.delete("/registry/u/a", expected_revision=r1)
    assert ei.value.current is not None and (ei.value.current.value, ei.value.current.mod_revision) == (b"2", r2)


async def test_client_without_certificate_is_refused_clearly(etcd3: EtcdCluster) -> None:
    s = EtcdStore(etcd3.endpoints[:1], tls=TLSFiles(ca_file=etcd3.client_tls.ca_file), connect_timeout=1.0)
    with pytest.raises(StoreUnavailableError, match="cannot reach etcd at https://127.0.0.1"):
        await s.start()


async def test_progress_reports_writes_outside_the_prefix(etcd3: EtcdCluster, store: EtcdStore) -> None:
    other = EtcdStore(etcd3.endpoints, tls=etcd3.client_tls, prefix="/elsewhere")
    await other.start()
    progress: list[int] = []
    watch = store.watch("/registry/", start_revision=await store.current_revision() + 1, progress=progress.append)
    task = asyncio.ensure_future(anext(watch))
    try:
        rev = await other.create("/registry/x", b"")  # moves the revision without an event for `watch`

        async def reported() -> bool:
            return bool(progress) and progress[-1] >= rev

        await wait_for_async(reported, timeout=5)
        assert not task.done()  # no event was made up
    finally:
        task.cancel()
        await other.close()


def test_kubectl_on_a_cluster_over_etcd(tmp_path: Path, etcd3: EtcdCluster) -> None:
    """`k8py up --etcd-servers ...`: the API on etcd, objects under the given prefix in etcd's own
    layout, 503 (a Status) while etcd has no quorum, and back once it has."""
    tls = etcd3.client_tls
    cluster = start_cluster(tmp_path / "up", extra=(
        "--etcd-servers", ",".join(etcd3.endpoints), "--etcd-prefix", "/k8py-up",
        "--etcd-cafile", str(tls.ca_file), "--etcd-certfile", str(tls.cert_file), "--etcd-keyfile", str(tls.key_file),
        "--disable-controller-manager", "--disable-scheduler"))
    try:
        cluster.kubectl("create", "configmap", "c1", "--from-literal=a=b")
        assert json.loads(cluster.kubectl("get", "cm", "c1", "-o", "json").stdout)["data"] == {"a": "b"}
        assert "/k8py-up/configmaps/default/c1" in etcd3.etcdctl("get", "--prefix", "--keys-only", "/k8py-up/configmaps/")
        # Writes outside the prefix do not hold up consistent reads (progress notifications).
        for i in range(20):
            etcd3.etcdctl("put", f"/other/{i}", "x")
        out = cluster.kubectl("get", "cm", "-o", "name", timeout=5)
        assert "configmap/c1" in out.stdout
        # Two of three members gone: no quorum, writes answer 503 with a Status.
        down = etcd3.members[1:]
        for m in down:
            etcd3.kill(m)
        # (client-go retries a 503 with Retry-After: -v=6 shows the answers until its own timeout)
        res = cluster.kubectl("create", "configmap", "c2", "--request-timeout=15s", "-v=6", check=False, timeout=30)
        assert res.returncode != 0 and "503 Service Unavailable" in res.stderr, res.stderr[-2000:]
        for m in down:
            etcd3.restart(m)
        wait_for(etcd3.healthy, timeout=30, what="etcd quorum back")
        wait_for(lambda: cluster.kubectl("create", "configmap", "c3", check=False).returncode == 0, timeout=30,
                 what="writes accepted again")
    finally:
        cluster.stop()


async def test_watch_cache_relists_after_falling_behind_a_compaction(etcd3: EtcdCluster) -> None:
    """The cache's only member is down while the others write and compact: once it is back, the watch is
    told its revision is compacted, and the cache relists (the new state, its watchers ended)."""
    leader = etcd3.wait_leader()
    member = next(m for m in etcd3.members if m is not leader)  # (freezing the leader would stall writes)
    prefix = "/relist"
    cached = EtcdStore([member.client_url], tls=etcd3.client_tls, prefix=prefix)
    others = EtcdStore([m.client_url for m in etcd3.members if m is not member], tls=etcd3.client_tls, prefix=prefix)
    await cached.start()
    await others.start()
    cache = WatchCache(cached)
    try:
        await others.create("/registry/cm/ns/gone", b'{"metadata":{"name":"gone"}}')
        await cache.start()
        sub = cache.subscribe("/registry/")
        etcd3.kill(member)
        try:
            await others.delete("/registry/cm/ns/gone")
            rev = await others.create("/registry/cm/ns/new", b'{"metadata":{"name":"new"}}')
            await others.compact(rev)
        finally:
            etcd3.restart(member)

        async def relisted() -> bool:
            return cache.get("/registry/cm/ns/new") is not None and cache.revision >= rev

        await wait_for_async(relisted, timeout=30)
        assert cache.get("/registry/cm/ns/gone") is None
        assert sub.closed
    finally:
        await cache.stop()
        await cached.close()
        await others.close()
