"""k8py.client.cache and k8py.client.informer: the Indexer, and informers against a real API server.

The informer tests run against `k8py up` (the session cluster, or a dedicated one for the tests
that stop the API server and compact its history), never a mock of it.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from k8py.client import RESTClient
from k8py.client.cache import (
    NAMESPACE_INDEX,
    DeletedFinalStateUnknown,
    Indexer,
    meta_namespace_index_func,
    meta_namespace_key,
    split_meta_namespace_key,
)
from k8py.client.errors import Gone
from k8py.client.informer import (
    FilteringResourceEventHandler,
    ResourceEventHandlerFuncs,
    SharedIndexInformer,
    SharedInformerFactory,
    wait_for_cache_sync,
)
from k8py.client.resources import CONFIGMAPS, NAMESPACES
from tests.conftest import Cluster, free_port, start_cluster

Obj = dict[str, Any]


@pytest.fixture
async def client(cluster: Cluster) -> AsyncIterator[RESTClient]:
    async with RESTClient.from_kubeconfig(cluster.kubeconfig, component="test-informer") as c:
        yield c


def _cm(name: str, namespace: str, **labels: str) -> Obj:
    return {"metadata": {"name": name, "namespace": namespace, "labels": labels}, "data": {"v": "1"}}


def _obj(name: str, namespace: str | None = None, rv: str = "1", **labels: str) -> Obj:
    md: Obj = {"name": name, "resourceVersion": rv, "labels": labels}
    if namespace:
        md["namespace"] = namespace
    return {"metadata": md}


async def eventually(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll ``predicate`` on the event loop until it is truthy or the deadline passes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not (value := predicate()):
        if loop.time() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
    return value


class Recorder:
    """An event handler writing down what it is told, as (kind, name, detail)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, Any]] = []

    def on_add(self, obj: Obj, is_in_initial_list: bool) -> None:
        self.events.append(("add", obj["metadata"]["name"], is_in_initial_list))

    def on_update(self, old: Obj, new: Obj) -> None:
        self.events.append(("update", new["metadata"]["name"], (old["data"], new["data"])))

    def on_delete(self, obj: Obj | DeletedFinalStateUnknown) -> None:
        if isinstance(obj, DeletedFinalStateUnknown):
            self.events.append(("delete-unknown", obj.obj["metadata"]["name"], obj.key))
        else:
            self.events.append(("delete", obj["metadata"]["name"], None))

    def named(self, name: str) -> list[tuple[str, str, Any]]:
        return [e for e in self.events if e[1] == name]


# ---- the cache -----------------------------------------------------------------------------------


def test_keys() -> None:
    assert meta_namespace_key(_obj("a", "ns")) == "ns/a"
    assert meta_namespace_key(_obj("node-1")) == "node-1"
    assert meta_namespace_key(DeletedFinalStateUnknown("ns/gone", _obj("gone", "ns"))) == "ns/gone"
    assert split_meta_namespace_key("ns/a") == ("ns", "a")
    assert split_meta_namespace_key("node-1") == (None, "node-1")
    with pytest.raises(ValueError):
        split_meta_namespace_key("a/b/c")
    assert meta_namespace_index_func(_obj("a", "ns")) == ["ns"]
    assert meta_namespace_index_func(_obj("n")) == [""]


def test_indexer_incremental_indices() -> None:
    def by_team(obj: Obj) -> list[str]:
        team = obj["metadata"]["labels"].get("team")
        return [team] if team else []

    def by_label_keys(obj: Obj) -> list[str]:
        return sorted(obj["metadata"]["labels"])

    idx = Indexer({NAMESPACE_INDEX: meta_namespace_index_func, "team": by_team})
    idx.add(_obj("a", "ns1", team="red"))
    idx.add(_obj("b", "ns1", team="blue"))
    idx.add(_obj("c", "ns2", team="red"))
    assert len(idx) == 3 and idx.list_keys() == ["ns1/a", "ns1/b", "ns2/c"]
    assert [o["metadata"]["name"] for o in idx.by_index(NAMESPACE_INDEX, "ns1")] == ["a", "b"]
    assert idx.index_keys("team", "red") == ["ns1/a", "ns2/c"]
    assert idx.get_by_key("ns2/c") is idx.get(_obj("c", "ns2"))

    idx.update(_obj("a", "ns1", rv="2", team="blue"))  # moves from red to blue
    assert idx.index_keys("team", "red") == ["ns2/c"]
    assert idx.index_keys("team", "blue") == ["ns1/b", "ns1/a"]
    idx.update(_obj("c", "ns2", rv="2"))  # no team any more: the empty bucket goes
    assert idx.index_keys("team", "red") == [] and "red" not in idx.list_index_func_values("team")
    assert [o["metadata"]["name"] for o in idx.index("team", _obj("x", team="blue"))] == ["b", "a"]

    idx.delete(_obj("b", "ns1"))
    idx.delete(_obj("missing", "ns1"))  # nothing happens
    idx.delete(DeletedFinalStateUnknown("ns1/a", {}))
    assert idx.list_keys() == ["ns2/c"] and idx.index_keys("team", "blue") == []
    assert idx.by_index(NAMESPACE_INDEX, "ns1") == []

    # An indexer added once items exist indexes them; a taken name is refused.
    idx.replace([_obj("p", "ns3", app="x", tier="web"), _obj("q", "ns3", app="y")])
    assert idx.list_keys() == ["ns3/p", "ns3/q"] and idx.by_index(NAMESPACE_INDEX, "ns2") == []
    idx.add_indexers({"label-keys": by_label_keys})
    assert idx.index_keys("label-keys", "app") == ["ns3/p", "ns3/q"]
    assert idx.index_keys("label-keys", "tier") == ["ns3/p"]
    with pytest.raises(ValueError):
        idx.add_indexers({"team": by_team})
    with pytest.raises(KeyError):
        idx.by_index("nope", "x")


def test_filtering_handler() -> None:
    rec = Recorder()
    handler = FilteringResourceEventHandler(lambda o: o["metadata"]["labels"].get("keep") == "yes", rec)

    def cm(name: str, keep: str, v: str = "1") -> Obj:
        obj = _obj(name, "ns", keep=keep)
        obj["data"] = {"v": v}
        return obj

    handler.on_add(cm("a", "yes"), True)
    handler.on_add(cm("b", "no"), False)
    handler.on_update(cm("a", "yes"), cm("a", "yes", "2"))
    handler.on_update(cm("b", "no"), cm("b", "yes"))  # starts passing: an add
    handler.on_update(cm("a", "yes"), cm("a", "no"))  # stops passing: a delete
    handler.on_delete(DeletedFinalStateUnknown("ns/b", cm("b", "yes")))
    handler.on_delete(cm("c", "no"))
    assert rec.events == [
        ("add", "a", True),
        ("update", "a", ({"v": "1"}, {"v": "2"})),
        ("add", "b", False),
        ("delete", "a", None),
        ("delete-unknown", "b", "ns/b"),
    ]


# ---- informers against the API server ------------------------------------------------------------


async def test_paginated_list_then_events_in_order(client: RESTClient, namespace: str) -> None:
    await asyncio.gather(*(client.create(CONFIGMAPS, _cm(f"cm{i:02}", namespace, app="web")) for i in range(23)))
    await client.create(CONFIGMAPS, _cm("other", namespace, app="db"))
    pages: list[str | None] = []
    real_list = client.list

    async def counting_list(*args: Any, **kwargs: Any) -> Obj:
        pages.append(kwargs.get("continue_"))
        return await real_list(*args, **kwargs)

    client.list = counting_list  # type: ignore[method-assign]
    informer = SharedIndexInformer(
        client, CONFIGMAPS, namespace=namespace, label_selector="app=web", page_size=5
    )
    rec = Recorder()
    informer.add_event_handler(rec)
    informer.start()
    try:
        assert await wait_for_cache_sync(informer, timeout=10)
        assert len(pages) == 5 and pages[0] is None and all(pages[1:])  # 23 objects, 5 a page
        assert sorted(informer.indexer.list_keys()) == [f"{namespace}/cm{i:02}" for i in range(23)]
        assert sorted(rec.events) == [("add", f"cm{i:02}", True) for i in range(23)]
        assert all(o["kind"] == "ConfigMap" and o["apiVersion"] == "v1" for o in informer.indexer.list())
        assert informer.last_sync_resource_version()
        assert len(informer.indexer.by_index(NAMESPACE_INDEX, namespace)) == 23
        rec.events.clear()

        # Events arrive in order, and the cache is up to date when a handler runs.
        seen_in_cache: list[bool] = []
        informer.add_event_handler(
            ResourceEventHandlerFuncs(
                update_func=lambda old, new: seen_in_cache.append(informer.indexer.get(new) is new)
            )
        )
        await client.create(CONFIGMAPS, _cm("x", namespace, app="web"))
        await client.patch(CONFIGMAPS, "x", {"data": {"v": "2"}}, namespace=namespace)
        await client.patch(CONFIGMAPS, "other", {"data": {"v": "2"}}, namespace=namespace)  # not selected
        await client.patch(CONFIGMAPS, "cm00", {"metadata": {"labels": {"app": "db"}}}, namespace=namespace)
        await client.delete(CONFIGMAPS, "x", namespace=namespace)
        await eventually(lambda: ("delete", "x", None) in rec.events, what="the delete of x")
        assert rec.events == [
            ("add", "x", False),
            ("update", "x", ({"v": "1"}, {"v": "2"})),
            ("delete", "cm00", None),  # stopped matching the selector
            ("delete", "x", None),
        ]
        assert seen_in_cache == [True]
        assert informer.indexer.get_by_key(f"{namespace}/x") is None
        assert f"{namespace}/cm00" not in informer.indexer
        assert informer.reflector.lists == 1
    finally:
        await informer.stop()
        del client.list


async def test_late_handler_replay_field_selector_and_failing_handler(
    client: RESTClient, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("a", "b", "c"):
        await client.create(CONFIGMAPS, _cm(name, namespace))
    informer = SharedIndexInformer(client, CONFIGMAPS, namespace=namespace, field_selector="metadata.name!=b")

    def explode(*args: Any) -> None:
        raise RuntimeError("handler bug")

    informer.add_event_handler(ResourceEventHandlerFuncs(add_func=explode, update_func=explode))
    informer.start()
    try:
        assert await wait_for_cache_sync(informer, timeout=10)
        late = Recorder()
        reg = informer.add_event_handler(late)  # told of the cache at once
        assert reg.has_synced()
        assert sorted(late.events) == [("add", "a", True), ("add", "c", True), ("add", "kube-root-ca.crt", True)]
        late.events.clear()
        with caplog.at_level(logging.ERROR, logger="k8py.client.informer"):
            await client.patch(CONFIGMAPS, "a", {"data": {"v": "2"}}, namespace=namespace)
            await client.patch(CONFIGMAPS, "b", {"data": {"v": "2"}}, namespace=namespace)
            await client.create(CONFIGMAPS, _cm("d", namespace))
            await eventually(lambda: ("add", "d", False) in late.events, what="d")
        assert late.events == [("update", "a", ({"v": "1"}, {"v": "2"})), ("add", "d", False)]
        assert sum("handler bug" in r.getMessage() or "failed" in r.getMessage() for r in caplog.records) >= 2
        assert informer.indexer.get_by_key(f"{namespace}/a")["data"] == {"v": "2"}  # type: ignore[index]
        informer.remove_event_handler(reg)
        await client.delete(CONFIGMAPS, "d", namespace=namespace)
        await eventually(lambda: f"{namespace}/d" not in informer.indexer, what="d deleted")
        assert ("delete", "d", None) not in late.events
    finally:
        await informer.stop()


async def test_resume_after_watch_timeout_without_relist(client: RESTClient, namespace: str) -> None:
    informer = SharedIndexInformer(client, CONFIGMAPS, namespace=namespace, min_watch_timeout=1)
    rec = Recorder()
    informer.add_event_handler(rec)
    informer.start()
    try:
        assert await wait_for_cache_sync(informer, timeout=10)
        reflector = informer.reflector
        for i in range(3):
            watches = reflector.watches
            await client.create(CONFIGMAPS, _cm(f"r{i}", namespace))
            # The server ends each watch after timeoutSeconds=1; the reflector watches again from
            # the last resourceVersion: wait for a new watch before the next change.
            await eventually(lambda w=watches: reflector.watches > w, timeout=5, what="a new watch")
        await client.patch(CONFIGMAPS, "r0", {"data": {"v": "2"}}, namespace=namespace)
        await eventually(lambda: rec.named("r0")[-1][0] == "update", what="r0 update")
        assert reflector.lists == 1 and reflector.watches >= 4
        assert [e for e in rec.events if e[1] != "kube-root-ca.crt"] == [
            ("add", "r0", False),
            ("add", "r1", False),
            ("add", "r2", False),
            ("update", "r0", ({"v": "1"}, {"v": "2"})),
        ]
    finally:
        await informer.stop()


async def test_resync(client: RESTClient, namespace: str) -> None:
    await client.create(CONFIGMAPS, _cm("s", namespace))
    informer = SharedIndexInformer(client, CONFIGMAPS, namespace=namespace, field_selector="metadata.name=s")
    quiet, resyncing = Recorder(), Recorder()
    informer.add_event_handler(quiet)
    informer.add_event_handler(resyncing, resync_period=0.3)  # raised to the 1 s minimum
    informer.start()
    try:
        await eventually(lambda: len(resyncing.named("s")) >= 3, timeout=5, what="two resyncs")
        assert resyncing.named("s")[1:3] == [("update", "s", ({"v": "1"}, {"v": "1"}))] * 2
        assert quiet.events == [("add", "s", True)]
    finally:
        await informer.stop()


async def test_factory_shares_informers(client: RESTClient, namespace: str) -> None:
    await client.create(CONFIGMAPS, _cm("f", namespace, app="web"))
    factory = SharedInformerFactory(client, namespace=namespace)
    cms = factory.informer_for(CONFIGMAPS)
    by_app = {"app": lambda o: [app] if (app := (o["metadata"].get("labels") or {}).get("app")) else []}
    assert factory.informer_for(CONFIGMAPS, indexers=by_app) is cms
    assert factory.informer_for(CONFIGMAPS, namespace=namespace) is cms
    web = factory.informer_for(CONFIGMAPS, label_selector="app=web")
    assert web is not cms
    namespaces = factory.informer_for(NAMESPACES)  # cluster-scoped: the factory's namespace does not apply
    assert namespaces.namespace is None
    factory.start()
    try:
        assert await factory.wait_for_cache_sync(timeout=10)
        assert [o["metadata"]["name"] for o in cms.indexer.by_index("app", "web")] == ["f"]
        assert [o["metadata"]["name"] for o in web.indexer.list()] == ["f"]
        assert namespaces.indexer.get_by_key(namespace) is not None
        extra = factory.informer_for(CONFIGMAPS, field_selector="metadata.name=f")
        assert not extra.has_synced()
        factory.start()  # starts the new one only
        assert await factory.wait_for_cache_sync(timeout=10) and extra.has_synced()
    finally:
        await factory.shutdown()
    assert len(factory.informers()) == 4


async def test_wait_for_cache_sync_times_out(client: RESTClient) -> None:
    informer = SharedIndexInformer(client, CONFIGMAPS, namespace="default")  # never started
    assert not await wait_for_cache_sync(informer, timeout=0.05)


# ---- a dedicated cluster: the API server goes away, history is compacted ------------------------


async def test_relist_after_restart_and_compaction(tmp_path: Path) -> None:
    """The informer's API server stops; meanwhile (on another port, so the informer cannot see it)
    objects are deleted, changed and created and the history is compacted; the API server comes
    back on the informer's port: the watch from the informer's resourceVersion gets 410, the
    informer relists and reports the difference, a vanished object as DeletedFinalStateUnknown."""
    data = tmp_path / "data"
    extra = ("--etcd-compaction-interval", "0.3", "--compaction-retain", "0")
    c = await asyncio.to_thread(start_cluster, data, None, extra)
    clusters = [c]
    client = RESTClient.from_kubeconfig(c.kubeconfig, component="test-informer")
    informer = SharedIndexInformer(
        client, CONFIGMAPS, namespace="default", label_selector="app=relist", initial_backoff=0.05, max_backoff=0.3
    )
    rec = Recorder()
    informer.add_event_handler(rec)
    try:
        for name in ("keep", "change", "vanish"):
            await client.create(CONFIGMAPS, _cm(name, "default", app="relist"))
        informer.start()
        assert await wait_for_cache_sync(informer, timeout=10)
        assert sorted(rec.events) == [("add", n, True) for n in ("change", "keep", "vanish")]
        vanished = copy.deepcopy(informer.indexer.get_by_key("default/vanish"))
        rec.events.clear()
        old_rv = informer.last_sync_resource_version()

        await asyncio.to_thread(c.stop)
        meanwhile = await asyncio.to_thread(start_cluster, data, free_port(), extra)
        clusters.append(meanwhile)
        async with RESTClient.from_kubeconfig(meanwhile.kubeconfig) as other:
            await other.delete(CONFIGMAPS, "vanish", namespace="default")
            await other.patch(CONFIGMAPS, "change", {"data": {"v": "2"}}, namespace="default")
            await other.create(CONFIGMAPS, _cm("new", "default", app="relist"))

            async def compacted() -> bool:
                await other.create(CONFIGMAPS, {"metadata": {"generateName": "tick-", "namespace": "default"}})
                try:
                    async with other.watch(CONFIGMAPS, namespace="default", resource_version=old_rv) as w:
                        await asyncio.wait_for(anext(w), 0.5)
                except Gone:
                    return True
                except TimeoutError:
                    pass
                return False

            loop = asyncio.get_running_loop()
            deadline = loop.time() + 15
            while not await compacted():
                assert loop.time() < deadline, "history never compacted"
                await asyncio.sleep(0.1)
        await asyncio.to_thread(meanwhile.stop)
        assert rec.events == [] and informer.reflector.lists == 1  # it saw none of that

        back = await asyncio.to_thread(start_cluster, data, c.port, extra)
        clusters.append(back)
        await eventually(lambda: len(rec.events) >= 4, timeout=15, what="the relist's events")
        assert sorted(rec.events, key=str) == sorted(
            [
                ("add", "new", False),
                ("delete-unknown", "vanish", "default/vanish"),
                ("update", "change", ({"v": "1"}, {"v": "2"})),
                ("update", "keep", ({"v": "1"}, {"v": "1"})),  # a relist also resyncs
            ],
            key=str,
        )
        assert rec.events[-1][0] == "delete-unknown"  # deletions come after the list's items
        assert informer.reflector.lists == 2 and informer.reflector.expired >= 1
        assert sorted(informer.indexer.list_keys()) == ["default/change", "default/keep", "default/new"]
        assert vanished is not None and vanished["metadata"]["name"] == "vanish"

        # And it goes on watching the restarted server.
        rec.events.clear()
        async with RESTClient.from_kubeconfig(back.kubeconfig) as other:
            await other.delete(CONFIGMAPS, "keep", namespace="default")
        await eventually(lambda: rec.events == [("delete", "keep", None)], what="the delete of keep")
    finally:
        await informer.stop()
        await client.close()
        for cluster in clusters:
            await asyncio.to_thread(cluster.stop)


async def test_resume_after_api_server_restart(tmp_path: Path) -> None:
    """The API server restarts on the same data dir and port with its history intact: the
    informer rides out the outage with backoff and resumes its watch where it was, no relist;
    a deletion made while it was away arrives as an ordinary DELETED event."""
    data = tmp_path / "data"
    c = await asyncio.to_thread(start_cluster, data)
    clusters = [c]
    client = RESTClient.from_kubeconfig(c.kubeconfig, component="test-informer")
    informer = SharedIndexInformer(client, CONFIGMAPS, namespace="default", initial_backoff=0.05, max_backoff=0.3)
    rec = Recorder()
    informer.add_event_handler(rec)
    try:
        await client.create(CONFIGMAPS, _cm("doomed", "default"))
        informer.start()
        assert await wait_for_cache_sync(informer, timeout=10)
        rec.events.clear()
        await asyncio.to_thread(c.stop)
        back = await asyncio.to_thread(start_cluster, data, c.port)
        clusters.append(back)
        async with RESTClient.from_kubeconfig(back.kubeconfig) as other:
            await other.delete(CONFIGMAPS, "doomed", namespace="default")
            await other.create(CONFIGMAPS, _cm("born", "default"))
        await eventually(lambda: ("add", "born", False) in rec.events, timeout=15, what="born")
        assert [e for e in rec.events if e[1] != "kube-root-ca.crt"] == [
            ("delete", "doomed", None),
            ("add", "born", False),
        ]
        assert informer.reflector.lists == 1 and informer.reflector.expired == 0
    finally:
        await informer.stop()
        await client.close()
        for cluster in clusters:
            await asyncio.to_thread(cluster.stop)
