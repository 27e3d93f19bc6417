"""k8py.loadbalancer: the client-side load balancer in front of real servers on loopback.

The backends are aiohttp HTTPS servers on 127.0.0.2, .3, .4 (a certificate of a test CA) that
serve /readyz and /name; clients reach them through the balancer at 127.0.0.1 with TLS end to
end (the balancer only relays bytes).  A real k8py API server (the session cluster) answers
kubectl and the REST client through the balancer; discovery runs against a k8py API server and
`k8py loadbalancer` in network namespaces of their own.  Every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import yaml
from aiohttp import web

from k8py.bootstrap.kubeconfig import write_kubeconfig
from k8py.bootstrap.pki import PKIPaths, create_ca, ensure_pki, issue_serving_cert, save_pair
from k8py.client import RESTClient
from k8py.client.resources import NAMESPACES
from k8py.loadbalancer import LoadBalancer, endpoints_addresses
from k8py.netutil import split_host_port
from tests.conftest import KUBECTL, Cluster, free_port, wait_for
from tests.network import netns
from tests.test_informer import eventually

netns_lab = netns.netns_lab
INTERVAL = 0.2  # health checks in these tests


class Backend:
    """An HTTPS server answering /readyz (200, or 500 when not ``ready``) and /name (its name)."""

    def __init__(self, name: str, host: str, port: int, ssl_ctx: ssl.SSLContext) -> None:
        self.name, self.host, self.port, self.ssl_ctx = name, host, port, ssl_ctx
        self.ready = True
        self.runner: web.AppRunner | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def start(self) -> None:
        async def readyz(_: web.Request) -> web.Response:
            return web.Response(status=200 if self.ready else 500, text="ok")

        async def name(_: web.Request) -> web.Response:
            return web.Response(text=self.name)

        app = web.Application()
        app.router.add_get("/readyz", readyz)
        app.router.add_get("/name", name)
        self.runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self.runner.setup()
        await web.TCPSite(self.runner, self.host, self.port, ssl_context=self.ssl_ctx).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ssl.SSLContext]:
    """(CA file, the backends' server context): one certificate for 127.0.0.1-4."""
    d = tmp_path_factory.mktemp("lb-pki")
    ca = create_ca("lb-test-ca")
    save_pair(ca, d / "ca.crt", d / "ca.key")
    save_pair(issue_serving_cert(ca, "backend", [], [f"127.0.0.{i}" for i in range(1, 5)]), d / "b.crt", d / "b.key")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(d / "b.crt", d / "b.key")
    return d / "ca.crt", ctx


@pytest.fixture
async def backends(pki: tuple[Path, ssl.SSLContext]) -> AsyncIterator[list[Backend]]:
    started = [Backend(name, f"127.0.0.{i}", free_port(), pki[1]) for i, name in ((2, "a"), (3, "b"), (4, "c"))]
    for b in started:
        await b.start()
    yield started
    for b in started:
        await b.stop()


@pytest.fixture(params=["readyz", "tcp"])
async def lb(request: pytest.FixtureRequest, backends: list[Backend], pki: tuple[Path, ssl.SSLContext]
             ) -> AsyncIterator[LoadBalancer]:
    """A balancer over the three backends, health-checked by GET /readyz or by a TCP connect."""
    balancer = LoadBalancer([b.address for b in backends], "127.0.0.1:0", health_interval=INTERVAL,
                            ca_file=pki[0] if request.param == "readyz" else None)
    await balancer.start()
    await eventually(lambda: all(balancer.servers.values()), what="every server healthy")
    yield balancer
    await balancer.stop()


def client_context(ca_file: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_file))


async def whoami(lb: LoadBalancer, ca_file: Path) -> str:
    """The name of the backend a new connection through the balancer reaches (TLS verified end to end)."""
    connector = aiohttp.TCPConnector(ssl=client_context(ca_file), force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session, \
            session.get(f"https://127.0.0.1:{lb.port}/name", timeout=aiohttp.ClientTimeout(total=5)) as resp:
        return await resp.text()


async def open_connection(lb: LoadBalancer, ca_file: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A kept-alive TLS connection through the balancer, after one request answered on it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", lb.port, ssl=client_context(ca_file))
    writer.write(b"GET /name HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
    await reader.readexactly(length)
    return reader, writer


async def closed(reader: asyncio.StreamReader, timeout: float = 5.0) -> bool:
    """True when the connection ends (EOF or an error) before the deadline."""
    try:
        return await asyncio.wait_for(reader.read(1), timeout) == b""
    except (ConnectionError, ssl.SSLError):
        return True


def by_address(backends: list[Backend], address: str | None) -> Backend:
    return next(b for b in backends if b.address == address)


async def test_sticky_failover_and_recovery(lb: LoadBalancer, backends: list[Backend],
                                           pki: tuple[Path, ssl.SSLContext]) -> None:
    ca_file = pki[0]
    first = by_address(backends, lb.active)
    assert {await whoami(lb, ca_file) for _ in range(5)} == {first.name}  # sticky
    await first.stop()
    # the very next connection reaches another server: the failed dial moves on at once, no client error
    second_name = await whoami(lb, ca_file)
    assert second_name != first.name
    second = next(b for b in backends if b.name == second_name)
    assert lb.active == second.address
    assert lb.servers[first.address] is False

    await first.start()
    await eventually(lambda: lb.servers[first.address], what=f"{first.address} healthy again")
    assert await whoami(lb, ca_file) == second.name  # still sticky to the server now active
    others = [b for b in backends if b is not first]
    for b in others:
        await b.stop()
    assert await whoami(lb, ca_file) == first.name  # the server that came back is used again
    assert lb.active == first.address


async def test_open_connections_break_only_on_their_server(lb: LoadBalancer, backends: list[Backend],
                                                           pki: tuple[Path, ssl.SSLContext]) -> None:
    ca_file = pki[0]
    first = by_address(backends, lb.active)
    reader, writer = await open_connection(lb, ca_file)
    await first.stop()
    assert await closed(reader)
    writer.close()
    assert await whoami(lb, ca_file) != first.name


async def test_unready_server_is_skipped_and_its_connections_closed(
    backends: list[Backend], pki: tuple[Path, ssl.SSLContext]
) -> None:
    """/readyz failing (a server shutting down still accepts connections) counts as failed."""
    ca_file = pki[0]
    lb = LoadBalancer([b.address for b in backends], "127.0.0.1:0", ca_file=ca_file, health_interval=INTERVAL)
    await lb.start()
    try:
        await eventually(lambda: all(lb.servers.values()), what="every server healthy")
        first = by_address(backends, lb.active)
        reader, writer = await open_connection(lb, ca_file)
        first.ready = False
        assert await closed(reader)  # closed by the balancer: the server itself is still up
        writer.close()
        assert lb.servers[first.address] is False and lb.active != first.address
        assert await whoami(lb, ca_file) == by_address(backends, lb.active).name
        first.ready = True
        await eventually(lambda: lb.servers[first.address], what=f"{first.address} ready again")
    finally:
        await lb.stop()


async def test_all_down_closes_connections_promptly(backends: list[Backend], pki: tuple[Path, ssl.SSLContext]) -> None:
    lb = LoadBalancer([b.address for b in backends], "127.0.0.1:0", ca_file=pki[0], health_interval=INTERVAL)
    await lb.start()
    try:
        for b in backends:
            await b.stop()
        await eventually(lambda: not any(lb.servers.values()), what="every server failed")
        assert lb.active is None
        for _ in range(3):
            t0 = time.monotonic()
            reader, writer = await asyncio.open_connection("127.0.0.1", lb.port)
            assert await closed(reader, timeout=2.0)
            assert time.monotonic() - t0 < 1.0
            writer.close()
        await backends[1].start()  # one back: served again (a failed server is still tried last)
        assert await whoami(lb, pki[0]) == "b"
    finally:
        await lb.stop()


async def test_stop_closes_every_socket(lb: LoadBalancer, pki: tuple[Path, ssl.SSLContext]) -> None:
    reader, writer = await open_connection(lb, pki[0])
    await lb.stop()
    assert await closed(reader, timeout=2.0)
    writer.close()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", lb.port)


def test_addresses() -> None:
    assert split_host_port("10.0.0.1:6443") == ("10.0.0.1", 6443)
    assert split_host_port("[fd00::1]:6443") == ("fd00::1", 6443)
    for bad in ("10.0.0.1", ":6443", "host:x", "h:70000"):
        with pytest.raises(ValueError):
            split_host_port(bad)
    endpoints = {"subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "fd00::2"}],
                              "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]}]}
    assert endpoints_addresses(endpoints) == ["10.0.0.1:6443", "[fd00::2]:6443"]
    assert endpoints_addresses({}) == []


# ---- a real k8py API server ---------------------------------------------------------------------


def lb_kubeconfig(cluster_kubeconfig: Path, port: int, path: Path) -> Path:
    """The cluster's kubeconfig with its server replaced by the balancer's address."""
    config = yaml.safe_load(cluster_kubeconfig.read_text())
    for c in config["clusters"]:
        c["cluster"]["server"] = f"https://127.0.0.1:{port}"
    path.write_text(yaml.safe_dump(config))
    return path


async def test_kubectl_and_rest_client_through_the_balancer(cluster: Cluster, tmp_path: Path) -> None:
    dead = f"127.0.0.1:{free_port()}"  # listed first: never answers, skipped
    lb = LoadBalancer([dead, f"127.0.0.1:{cluster.port}"], "127.0.0.1:0",
                      ca_file=cluster.data_dir / "pki" / "ca.crt", health_interval=INTERVAL)
    await lb.start()
    try:
        await eventually(lambda: lb.servers[f"127.0.0.1:{cluster.port}"], what="the API server healthy")
        assert lb.servers[dead] is False
        kubeconfig = lb_kubeconfig(cluster.kubeconfig, lb.port, tmp_path / "kubeconfig")
        proc = await asyncio.create_subprocess_exec(
            KUBECTL, "--kubeconfig", str(kubeconfig), "get", "namespace", "default", "-o", "name",
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "HOME": str(tmp_path)},
        )
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, err
        assert out.decode().strip() == "namespace/default"
        async with RESTClient.from_kubeconfig(kubeconfig, component="test-loadbalancer") as client:
            names = {ns["metadata"]["name"] for ns in (await client.list(NAMESPACES))["items"]}
        assert {"default", "kube-system"} <= names
        assert lb.active == f"127.0.0.1:{cluster.port}"
    finally:
        await lb.stop()


# ---- discovery: `k8py loadbalancer` on a node, the API server on another host ---------------------


@netns.requires_netns
def test_discovery_from_the_kubernetes_endpoints(netns_lab: netns.NetnsLab, tmp_path: Path) -> None:
    """The API server (host cp) advertises a second address of its host; the balancer (host node) is
    given the first one, discovers the second from default/kubernetes through itself, and fails over
    to it when the first goes away."""
    cp, node = netns_lab.add_host("cp"), netns_lab.add_host("node")
    advertised = cp.ip.rsplit(".", 1)[0] + ".11"  # a second address of cp's, on the same LAN
    netns_lab.run(cp.netns, "sysctl", "-qw", "net.ipv4.conf.eth0.promote_secondaries=1")
    netns_lab.run(cp.netns, "ip", "addr", "add", f"{advertised}/24", "dev", "eth0")
    pki = PKIPaths.in_dir(ensure_pki(tmp_path / "pki", ips=[cp.ip, advertised]).directory)
    kubeconfig = write_kubeconfig(tmp_path / "node.kubeconfig", "https://127.0.0.1:6444", pki.ca_cert.read_bytes(),
                                  pki.admin_cert.read_bytes(), pki.admin_key.read_bytes())
    k8py = (sys.executable, "-m", "k8py.cli")
    apiserver_log, lb_log = tmp_path / "apiserver.log", tmp_path / "lb.log"
    netns_lab.popen(cp.netns, *k8py, "apiserver", "--data-dir", str(tmp_path / "data"), "--pki-dir", str(pki.directory),
                    "--bind-address", "0.0.0.0", "--port", "6443", "--advertise-address", advertised, log=apiserver_log)
    wait_for(lambda: "API server listening" in apiserver_log.read_text(), timeout=60, what="the API server")
    netns_lab.popen(node.netns, *k8py, "loadbalancer", "--listen", "127.0.0.1:6444", "--server", f"{cp.ip}:6443",
                    "--ca-file", str(pki.ca_cert), "--kubeconfig", str(kubeconfig), log=lb_log)

    def logged(text: str) -> bool:
        return text in lb_log.read_text()

    wait_for(lambda: logged(f"discovered API servers: {advertised}:6443"), timeout=30, what="discovery")
    wait_for(lambda: logged(f"server {advertised}:6443 healthy"), timeout=10, what="the discovered server healthy")
    assert logged(f"active server now {cp.ip}:6443")  # the configured one stays active (sticky)

    netns_lab.run(cp.netns, "ip", "addr", "del", f"{cp.ip}/24", "dev", "eth0")
    wait_for(lambda: logged(f"failover from {cp.ip}:6443; active server now {advertised}:6443"), timeout=15,
             what="failover to the discovered server")
    env = {**os.environ, "HOME": str(tmp_path)}
    res = subprocess.run(["ip", "netns", "exec", node.netns, KUBECTL, "--kubeconfig", str(kubeconfig), "get",
                          "endpoints", "kubernetes", "-o", "jsonpath={.subsets[0].addresses[0].ip}"],
                         capture_output=True, text=True, env=env, timeout=30)
    assert res.returncode == 0, res.stderr
    assert res.stdout == advertised
