"""WatchCache on a real SQLiteStore: objects primed by their writer are cached as they are."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from k8py.apiserver.watchcache import WatchCache
from k8py.storage.interface import KeyExistsError
from k8py.storage.sqlite import SQLiteStore


@pytest.fixture
async def cache(tmp_path: Path) -> AsyncIterator[WatchCache]:
    store = SQLiteStore(str(tmp_path / "k8py.db"))
    await store.start()
    cache = WatchCache(store)
    await cache.start()
    try:
        yield cache
    finally:
        await cache.stop()
        await store.close()


def encoded(obj: dict) -> bytes:
    return orjson.dumps({**obj, "metadata": {k: v for k, v in obj["metadata"].items() if k != "resourceVersion"}})


async def test_a_primed_write_is_cached_as_written(cache: WatchCache) -> None:
    store = cache._store  # noqa: SLF001
    obj = {"kind": "ConfigMap", "metadata": {"name": "a", "resourceVersion": "1", "uid": "u"}, "data": {"k": "v"}}
    value = encoded(obj)
    with cache.prime("/registry/configmaps/ns/a", value, obj):
        revision = await store.create("/registry/configmaps/ns/a", value)
    await cache.sync()
    cached = cache.get("/registry/configmaps/ns/a")
    assert cached is obj
    # resourceVersion last, as decoding the stored value puts it: the same object a GET would get
    assert list(cached["metadata"]) == ["name", "uid", "resourceVersion"]
    assert cached == {**orjson.loads(value), "metadata": {"name": "a", "uid": "u", "resourceVersion": str(revision)}}
    assert not cache._primed  # noqa: SLF001


async def test_a_failed_write_takes_its_object_back(cache: WatchCache) -> None:
    store = cache._store  # noqa: SLF001
    await store.create("/registry/configmaps/ns/b", b'{"metadata":{"name":"b"}}')
    obj = {"metadata": {"name": "b"}, "data": {}}
    with pytest.raises(KeyExistsError), cache.prime("/registry/configmaps/ns/b", encoded(obj), obj):
        await store.create("/registry/configmaps/ns/b", encoded(obj))
    assert not cache._primed  # noqa: SLF001
    await cache.sync()
    assert cache.get("/registry/configmaps/ns/b") == {"metadata": {"name": "b", "resourceVersion": "2"}}


async def test_other_bytes_are_decoded(cache: WatchCache) -> None:
    """An event that does not carry the primed value (another writer's) is decoded; the primed object
    waits for its own write."""
    store = cache._store  # noqa: SLF001
    mine = {"metadata": {"name": "c"}, "data": {"x": "mine"}}
    with cache.prime("/registry/configmaps/ns/c", encoded(mine), mine):
        first = await store.create("/registry/configmaps/ns/c", b'{"metadata":{"name":"c"},"data":{"x":"theirs"}}')
        await cache.sync()
        assert cache.get("/registry/configmaps/ns/c") == {"metadata": {"name": "c", "resourceVersion": str(first)}, "data": {"x": "theirs"}}
        await store.update("/registry/configmaps/ns/c", encoded(mine), expected_revision=first)
    await cache.sync()
    assert cache.get("/registry/configmaps/ns/c") is mine
