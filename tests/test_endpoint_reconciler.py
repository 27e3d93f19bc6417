"""The `kubernetes` Service's endpoints with several API servers over one store (the lease endpoint reconciler).

Real API servers run in this process and share one SQLite store, as API servers share etcd. They
advertise 192.0.2.10 and 192.0.2.11 (TEST-NET-1: only data, nothing connects there) and listen on
127.0.0.1 and 127.0.0.2 with the same port, as control-plane nodes share --secure-port. The master
lease TTL is short (2 s: renewed every 1.33 s) so that expiry shows within a test.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from k8py.apiserver.endpointreconciler import ADDRESS_ANNOTATION, IDENTITY_LABEL, PORT_ANNOTATION, lease_name
from k8py.apiserver.server import APIServer, APIServerConfig
from k8py.storage.sqlite import SQLiteStore

TTL = 2.0
IPS = ("192.0.2.10", "192.0.2.11")
BIND = ("127.0.0.1", "127.0.0.2")
ENDPOINTS = "/api/v1/namespaces/default/endpoints/kubernetes"
SLICE = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/kubernetes"
LEASES = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases"


class SharedStore(SQLiteStore):
    """One store for the API servers of this process: opened by the first to start, closed by the last
    to stop (each API server starts and closes its store)."""

    users = 0

    async def start(self) -> None:
        self.users += 1
        await super().start()

    async def close(self) -> None:
        self.users -= 1
        if self.users == 0:
            await super().close()


def shared_port() -> int:
    """A port free on every address of BIND."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind((BIND[0], 0))
            port: int = s.getsockname()[1]
            try:
                with socket.socket() as other:
                    other.bind((BIND[1], port))
            except OSError:
                continue
            return port
    raise RuntimeError("no port free on both loopback addresses")


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.05)
    raise TimeoutError(f"timed out waiting for {what} (last: {last!r})")


class Servers:
    def __init__(self, store: SQLiteStore, session: aiohttp.ClientSession, port: int) -> None:
        self.store = store
        self.session = session
        self.port = port
        self.running: list[APIServer] = []

    async def start(self, advertise: str, bind: str) -> APIServer:
        config = APIServerConfig(
            bind_address=bind, port=self.port, advertise_address=advertise, compaction_interval=0,
            metrics_server=False, master_endpoint_reconcile_ttl=TTL,
        )
        server = APIServer(self.store, None, config)
        await server.start()
        self.running.append(server)
        return server

    async def stop(self, server: APIServer) -> None:
        self.running.remove(server)
        await server.stop()

    async def get(self, path: str, server: APIServer | None = None) -> Any:
        server = server or self.running[0]
        async with self.session.get(f"http://{server.config.bind_address}:{self.port}{path}") as resp:
            return await resp.json() if resp.status == 200 else None

    async def send(self, method: str, path: str, body: Any, content_type: str = "application/json") -> Any:
        server = self.running[0]
        async with self.session.request(
            method, f"http://{server.config.bind_address}:{self.port}{path}", data=orjson.dumps(body),
            headers={"Content-Type": content_type},
        ) as resp:
            assert resp.status in (200, 201), await resp.text()
            return await resp.json()

    async def addresses(self, server: APIServer | None = None) -> list[tuple[str, int]]:
        ep = await self.get(ENDPOINTS, server)
        return [(a["ip"], p["port"]) for s in (ep or {}).get("subsets", []) for a in s["addresses"] for p in s["ports"]]

    async def events(self, path: str, rv: str, seconds: int) -> list[dict[str, Any]]:
        """The watch events of `path` (a collection with a field selector) after `rv`, for `seconds`."""
        url = f"http://{self.running[0].config.bind_address}:{self.port}{path}"
        params = {"watch": "1", "resourceVersion": rv, "timeoutSeconds": str(seconds)}
        async with self.session.get(url, params=params) as resp:
            assert resp.status == 200
            return [orjson.loads(line) for line in (await resp.read()).splitlines() if line.strip()]


@pytest.fixture
async def servers(tmp_path: Path) -> AsyncIterator[Servers]:
    store = SharedStore(str(tmp_path / "state.db"))
    async with aiohttp.ClientSession() as session:
        s = Servers(store, session, shared_port())
        try:
            yield s
        finally:
            for server in reversed(s.running):
                await server.stop()


async def two(servers: Servers) -> tuple[APIServer, APIServer]:
    a = await servers.start(IPS[0], BIND[0])
    b = await servers.start(IPS[1], BIND[1])
    return a, b


async def test_every_api_server_is_listed(servers: Servers) -> None:
    a, b = await two(servers)
    want = [(IPS[0], servers.port), (IPS[1], servers.port)]
    for server in (a, b):
        await eventually(lambda: servers.addresses(server), what="endpoints")  # noqa: B023
        assert await servers.addresses(server) == want
    ep = await servers.get(ENDPOINTS)
    assert len(ep["subsets"]) == 1 and ep["subsets"][0]["ports"] == [{"name": "https", "port": servers.port, "protocol": "TCP"}]
    assert ep["metadata"]["labels"] == {"endpointslice.kubernetes.io/skip-mirror": "true"}
    eps = await servers.get(SLICE)
    assert [e["addresses"] for e in eps["endpoints"]] == [[IPS[0]], [IPS[1]]]
    assert all(e["conditions"]["ready"] for e in eps["endpoints"])
    assert eps["addressType"] == "IPv4" and eps["ports"][0]["port"] == servers.port
    assert eps["metadata"]["labels"]["kubernetes.io/service-name"] == "kubernetes"

    leases = await servers.get(f"{LEASES}?labelSelector={IDENTITY_LABEL}%3Dkube-apiserver")
    by_name = {item["metadata"]["name"]: item for item in leases["items"]}
    assert set(by_name) == {lease_name(ip) for ip in IPS}
    for ip in IPS:
        lease = by_name[lease_name(ip)]
        assert lease["metadata"]["annotations"][ADDRESS_ANNOTATION] == ip
        assert lease["metadata"]["annotations"][PORT_ANNOTATION] == str(servers.port)
        assert lease["spec"]["leaseDurationSeconds"] == 2 and lease["spec"]["holderIdentity"] == lease_name(ip)
    assert lease_name(IPS[0]).startswith("apiserver-") and len(lease_name(IPS[0])) == len("apiserver-") + 26


async def test_a_stopped_server_is_removed(servers: Servers) -> None:
    a, b = await two(servers)
    await eventually(lambda: servers.addresses(a), what="endpoints")
    await servers.stop(b)  # it writes the endpoints without itself before it lets go of the store
    assert await eventually(
        lambda: _equal(servers.addresses(a), [(IPS[0], servers.port)]), what="only the running server"
    )
    eps = await servers.get(SLICE)
    assert [e["addresses"] for e in eps["endpoints"]] == [[IPS[0]]]
    assert await servers.get(f"{LEASES}/{lease_name(IPS[1])}") is None


async def test_an_expired_lease_drops_its_address(servers: Servers) -> None:
    """A lease nobody renews (its server died) falls out of the endpoints and is deleted."""
    await servers.start(IPS[0], BIND[0])
    dead = "192.0.2.99"
    await servers.send("POST", LEASES, {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": lease_name(dead),
            "labels": {IDENTITY_LABEL: "kube-apiserver"},
            "annotations": {ADDRESS_ANNOTATION: dead, PORT_ANNOTATION: str(servers.port)},
        },
        "spec": {
            "holderIdentity": lease_name(dead),
            "leaseDurationSeconds": 3,
            "renewTime": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        },
    })
    both = sorted([(IPS[0], servers.port), (dead, servers.port)])
    await eventually(lambda: _equal(servers.addresses(), both), timeout=5, what="the other server's address")
    await eventually(
        lambda: _equal(servers.addresses(), [(IPS[0], servers.port)]), timeout=8, what="the expired address gone"
    )
    await eventually(lambda: _is_none(servers.get(f"{LEASES}/{lease_name(dead)}")), timeout=5, what="lease deleted")


async def test_no_write_storm(servers: Servers) -> None:
    """Servers agree: renewing leases writes nothing else; a change by hand is repaired once, not fought over."""
    await two(servers)

    async def settled() -> str | None:  # the resourceVersion of the newer of the two, once both list both servers
        ep, eps = await servers.get(ENDPOINTS), await servers.get(SLICE)
        if [a["ip"] for a in ep["subsets"][0]["addresses"]] != list(IPS) or len(eps["endpoints"]) != 2:
            return None
        return str(max(int(ep["metadata"]["resourceVersion"]), int(eps["metadata"]["resourceVersion"])))

    rv = await eventually(settled, what="endpoints and slice")
    selector = "fieldSelector=metadata.name%3Dkubernetes"
    window = 3  # seconds: over two renewals of each lease
    ep_events, slice_events, lease_events = await asyncio.gather(
        servers.events(f"/api/v1/namespaces/default/endpoints?{selector}", rv, window),
        servers.events(f"/apis/discovery.k8s.io/v1/namespaces/default/endpointslices?{selector}", rv, window),
        servers.events(f"{LEASES}?labelSelector={IDENTITY_LABEL}%3Dkube-apiserver", rv, window),
    )
    assert ep_events == [] and slice_events == []
    renewed = {e["object"]["metadata"]["name"] for e in lease_events if e["type"] == "MODIFIED"}
    assert renewed == {lease_name(ip) for ip in IPS}  # the servers were busy meanwhile

    # a change by hand wakes both servers: the endpoints are put back, then left alone
    patched = await servers.send(
        "PATCH", ENDPOINTS, {"subsets": [{"addresses": [{"ip": "10.1.2.3"}], "ports": [{"name": "https", "port": 1}]}]},
        "application/merge-patch+json",
    )
    events = await servers.events(
        f"/api/v1/namespaces/default/endpoints?{selector}", patched["metadata"]["resourceVersion"], window
    )
    assert len(events) == 1, events
    subsets = events[0]["object"]["subsets"]
    assert [a["ip"] for a in subsets[0]["addresses"]] == list(IPS)


async def test_loopback_advertise_address_publishes_no_endpoints(servers: Servers) -> None:
    await servers.start("127.0.0.1", BIND[0])
    assert await servers.get("/api/v1/namespaces/default/services/kubernetes") is not None
    assert await servers.get(ENDPOINTS) is None
    leases = await servers.get(f"{LEASES}?labelSelector={IDENTITY_LABEL}%3Dkube-apiserver")
    assert leases["items"] == []


async def _equal(value: Awaitable[Any], want: Any) -> bool:
    return await value == want


async def _is_none(value: Awaitable[Any]) -> bool:
    return await value is None
