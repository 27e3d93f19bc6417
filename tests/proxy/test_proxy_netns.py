"""kube-proxy against the real kernel, entirely inside network namespaces this module creates.

Topology (every address lives in these namespaces; nothing touches the host's):

    ext (10.199.0.2) --veth-- node (10.199.0.1 ; br0 10.244.1.1/24) --bridge-- p1 10.244.1.11
                                                                           +-- p2 10.244.1.12
                                                                           +-- p3 10.244.1.13

``node`` is the node kube-proxy programs (nft through ``ip netns exec``), ``ext`` a host
outside the cluster, p1..p3 pods serving TCP 8080 (p1, p2 on this node, p3 "on node-b").
The API server is a real `k8py up --disable-kubelet`; the ProxyServer runs in this process.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from k8py.client import RESTClient
from k8py.client.resources import ENDPOINT_SLICES, NAMESPACES, SERVICES
from k8py.proxy import Proxier, ProxierConfig, ProxyServer, cleanup_leftovers
from k8py.proxy.serviceport import NamespacedName
from tests.conftest import Cluster, start_cluster, wait_for

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("nft") or not shutil.which("ip"),
    reason="needs root, nft and ip (network namespaces)",
)

NETPROBE = str(Path(__file__).with_name("netprobe.py"))
NODE, OTHER_NODE = "node-a", "node-b"
NODE_IP, EXT_IP, GATEWAY = "10.199.0.1", "10.199.0.2", "10.244.1.1"
PODS = {"p1": ("10.244.1.11", NODE), "p2": ("10.244.1.12", NODE), "p3": ("10.244.1.13", OTHER_NODE)}
NS = "proxytest"


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


@dataclass
class Topology:
    prefix: str
    servers: list[subprocess.Popen[bytes]]

    def ns(self, short: str) -> str:
        return f"{self.prefix}-{short}"

    @property
    def node(self) -> str:
        return self.ns("node")

    def names(self) -> list[str]:
        return [self.ns(s) for s in ("node", "ext", *PODS)]


def _build(topo: Topology) -> None:
    for name in topo.names():
        sh("ip", "netns", "add", name)
        sh("ip", "-n", name, "link", "set", "lo", "up")
    node, ext = topo.node, topo.ns("ext")
    sh("ip", "netns", "exec", node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    sh("ip", "-n", node, "link", "add", "vext", "type", "veth", "peer", "name", "eth0", "netns", ext)
    sh("ip", "-n", node, "addr", "add", f"{NODE_IP}/24", "dev", "vext")
    sh("ip", "-n", node, "link", "set", "vext", "up")
    sh("ip", "-n", ext, "addr", "add", f"{EXT_IP}/24", "dev", "eth0")
    sh("ip", "-n", ext, "link", "set", "eth0", "up")
    sh("ip", "-n", ext, "route", "add", "default", "via", NODE_IP)
    sh("ip", "-n", node, "link", "add", "br0", "type", "bridge")
    sh("ip", "-n", node, "addr", "add", f"{GATEWAY}/24", "dev", "br0")
    sh("ip", "-n", node, "link", "set", "br0", "up")
    # the node's own connections to ClusterIPs need a route to pick a source address (a real node
    # has its default route); DNAT then sends them to the endpoint
    sh("ip", "-n", node, "route", "add", "10.96.0.0/12", "dev", "br0")
    for short, (ip, _) in PODS.items():
        pod = topo.ns(short)
        sh("ip", "-n", node, "link", "add", f"v{short}", "type", "veth", "peer", "name", "eth0", "netns", pod)
        sh("ip", "-n", node, "link", "set", f"v{short}", "master", "br0", "up")
        # as the CNI bridge plugin's hairpinMode: with br_netfilter, a pod's packet DNATed back to
        # itself leaves by the bridge port it came in on
        sh("ip", "-n", node, "link", "set", f"v{short}", "type", "bridge_slave", "hairpin", "on")
        sh("ip", "-n", pod, "addr", "add", f"{ip}/24", "dev", "eth0")
        sh("ip", "-n", pod, "link", "set", "eth0", "up")
        sh("ip", "-n", pod, "route", "add", "default", "via", GATEWAY)
        server = subprocess.Popen(["ip", "netns", "exec", pod, sys.executable, NETPROBE, "serve", "8080"],
                                  stdout=subprocess.PIPE)
        topo.servers.append(server)
        assert server.stdout is not None and server.stdout.readline().strip() == b"ready"


@pytest.fixture(scope="module")
def topology() -> Iterator[Topology]:
    topo = Topology(f"k8pytest-{secrets.token_hex(3)}", [])
    try:
        _build(topo)
        yield topo
    finally:
        for server in topo.servers:
            server.terminate()
            server.wait(timeout=10)
        for name in topo.names():
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = start_cluster(tmp_path_factory.mktemp("proxy"),
                            extra=("--disable-scheduler", "--disable-controller-manager"))
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
async def client(api: Cluster) -> AsyncIterator[RESTClient]:
    c = RESTClient.from_kubeconfig(api.kubeconfig)
    await c.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    yield c
    await c.close()


@pytest.fixture(scope="module")
async def proxy(topology: Topology, client: RESTClient) -> AsyncIterator[ProxyServer]:
    config = ProxierConfig(hostname=NODE, cluster_cidr="10.244.0.0/16", node_ips=[NODE_IP],
                           service_cidrs=["10.96.0.0/12"], min_sync_period=0.05)
    prefix = ("ip", "netns", "exec", topology.node)
    server = ProxyServer(client, config, netns=topology.node)
    try:
        await server.start()
        yield server
    finally:
        await server.stop()
        assert await cleanup_leftovers(netns=topology.node)
        out = subprocess.run([*prefix, "nft", "list", "tables"], capture_output=True, text=True).stdout
        assert "kube-proxy" not in out


# ---- helpers --------------------------------------------------------------------------------------


async def probe(topo: Topology, src: str, host: str, port: int, count: int = 1, *, bind: str | None = None,
                timeout: float = 2.0) -> list[str]:
    argv = ["ip", "netns", "exec", topo.ns(src), sys.executable, NETPROBE, "connect", host, str(port), str(count),
            "--timeout", str(timeout)] + (["--bind", bind] if bind else [])
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    return json.loads(out)


def servers(results: list[str]) -> Counter[str]:
    """How many answers each endpoint gave (by its pod IP)."""
    return Counter(r.split()[0] for r in results)


async def create_service(client: RESTClient, name: str, **spec: Any) -> dict[str, Any]:
    ports = [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP", **spec.pop("port_extra", {})}]
    return await client.create(SERVICES, {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NS},
        "spec": {"ports": ports, **spec},
    }, namespace=NS)


def slice_body(service: str, pods: list[str], **conditions: bool) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": f"{service}-1", "namespace": NS, "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": [PODS[p][0]], "nodeName": PODS[p][1],
                       "conditions": {"ready": True, **conditions}} for p in pods],
    }


async def set_endpoints(client: RESTClient, service: str, pods: list[str], **conditions: bool) -> None:
    body = slice_body(service, pods, **conditions)
    try:
        current = await client.get(ENDPOINT_SLICES, f"{service}-1", namespace=NS)
    except Exception:
        await client.create(ENDPOINT_SLICES, body, namespace=NS)
        return
    body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
    await client.update(ENDPOINT_SLICES, body)


async def until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def synced(proxy: ProxyServer, service: str, endpoints: int) -> None:
    """Wait until the Service with this many endpoints is in the rules (a sync has applied it)."""
    p = proxy.proxier
    key = NamespacedName(NS, service)

    def done() -> bool:
        have = [name for name in p.svc_port_map if name.service == key]
        n = sum(len(p.endpoints_map.get(name, [])) for name in have)
        return bool(have) and n == endpoints and p.idle

    await until(done, what=f"{service} with {endpoints} endpoints synced")


# ---- tests ----------------------------------------------------------------------------------------


async def test_cluster_ip_spreads_over_ready_endpoints(proxy: ProxyServer, client: RESTClient,
                                                       topology: Topology) -> None:
    svc = await create_service(client, "web")
    await set_endpoints(client, "web", ["p1", "p2", "p3"])
    await synced(proxy, "web", 3)
    ip = svc["spec"]["clusterIP"]
    results = await probe(topology, "ext", ip, 80, 60)
    assert set(servers(results)) == {"10.244.1.11", "10.244.1.12", "10.244.1.13"}, results
    # from outside the cluster CIDR: masqueraded to the node's address on the pod network
    assert {r.split()[1] for r in results} == {GATEWAY}
    # from the node itself
    assert set(servers(await probe(topology, "node", ip, 80, 30))) <= {"10.244.1.11", "10.244.1.12", "10.244.1.13"}
    # a port the ClusterIP does not serve is rejected (cluster-ips-check)
    assert await probe(topology, "ext", ip, 81) == ["refused"]


async def test_hairpin_and_pod_source_kept(proxy: ProxyServer, client: RESTClient, topology: Topology) -> None:
    svc = await create_service(client, "self")
    await set_endpoints(client, "self", ["p1"])
    await synced(proxy, "self", 1)
    ip = svc["spec"]["clusterIP"]
    # p1 reaches itself through its Service: masqueraded (hairpin), else the answer would bypass the node
    assert await probe(topology, "p1", ip, 80, 3) == [f"10.244.1.11 {GATEWAY}"] * 3
    # another pod keeps its source address
    assert await probe(topology, "p2", ip, 80) == ["10.244.1.11 10.244.1.12"]


async def test_node_port_and_external_traffic_policy_local(proxy: ProxyServer, client: RESTClient,
                                                           topology: Topology) -> None:
    svc = await create_service(client, "np", type="NodePort")
    await set_endpoints(client, "np", ["p1", "p2", "p3"])
    await synced(proxy, "np", 3)
    node_port = svc["spec"]["ports"][0]["nodePort"]
    assert 30000 <= node_port <= 32767
    results = await probe(topology, "ext", NODE_IP, node_port, 60)
    assert set(servers(results)) == {"10.244.1.11", "10.244.1.12", "10.244.1.13"}
    assert {r.split()[1] for r in results} == {GATEWAY}  # Cluster policy: masqueraded
    # Local: only this node's endpoints, and the client's address is kept
    svc["spec"]["externalTrafficPolicy"] = "Local"
    await client.update(SERVICES, svc)
    await until(lambda: any(s.external_policy_local for s in proxy.proxier.svc_port_map.values()
                            if s.name.service.name == "np") and proxy.proxier.idle,
                what="eTP Local synced")
    results = await probe(topology, "ext", NODE_IP, node_port, 40)
    assert set(servers(results)) == {"10.244.1.11", "10.244.1.12"}, results
    assert {r.split()[1] for r in results} == {EXT_IP}


async def test_internal_traffic_policy_local(proxy: ProxyServer, client: RESTClient, topology: Topology) -> None:
    svc = await create_service(client, "itp", internalTrafficPolicy="Local")
    await set_endpoints(client, "itp", ["p3"])  # only on node-b
    await synced(proxy, "itp", 1)
    ip = svc["spec"]["clusterIP"]
    assert await probe(topology, "p1", ip, 80, timeout=0.5) == ["timeout"]  # dropped
    await set_endpoints(client, "itp", ["p1", "p3"])
    await synced(proxy, "itp", 2)
    assert set(servers(await probe(topology, "p2", ip, 80, 20))) == {"10.244.1.11"}


async def test_session_affinity_client_ip(proxy: ProxyServer, client: RESTClient, topology: Topology) -> None:
    svc = await create_service(client, "sticky", sessionAffinity="ClientIP",
                               sessionAffinityConfig={"clientIP": {"timeoutSeconds": 30}})
    await set_endpoints(client, "sticky", ["p1", "p2", "p3"])
    await synced(proxy, "sticky", 3)
    results = await probe(topology, "ext", svc["spec"]["clusterIP"], 80, 30)
    assert len(servers(results)) == 1, results
    # another client gets its own (possibly different) endpoint, and keeps it too
    assert len(servers(await probe(topology, "node", svc["spec"]["clusterIP"], 80, 15))) == 1


async def test_no_endpoints_rejected_then_served(proxy: ProxyServer, client: RESTClient,
                                                 topology: Topology) -> None:
    svc = await create_service(client, "empty", type="NodePort")
    await until(lambda: any(s.name.service.name == "empty" for s in proxy.proxier.svc_port_map.values())
                and proxy.proxier.idle, what="empty synced")
    ip, node_port = svc["spec"]["clusterIP"], svc["spec"]["ports"][0]["nodePort"]
    assert await probe(topology, "ext", ip, 80) == ["refused"]
    assert await probe(topology, "node", ip, 80) == ["refused"]
    assert await probe(topology, "ext", NODE_IP, node_port) == ["refused"]
    # an EndpointSlice appears: served within a moment (a partial sync)
    fulls: list[bool] = []
    proxy.proxier.sync_listeners.append(lambda r: fulls.append(r.full))
    t0 = time.monotonic()
    await set_endpoints(client, "empty", ["p2"])
    await synced(proxy, "empty", 1)
    assert time.monotonic() - t0 < 1.0
    assert fulls and not any(fulls)
    assert await probe(topology, "ext", ip, 80) == [f"10.244.1.12 {GATEWAY}"]
    assert servers(await probe(topology, "ext", NODE_IP, node_port)) == {"10.244.1.12": 1}
    # terminating but serving endpoints still serve when none is ready
    await set_endpoints(client, "empty", ["p3"], ready=False, serving=True, terminating=True)
    await until(lambda: all(e.terminating for e in proxy.proxier.endpoints_map.get(
        next(n for n in proxy.proxier.svc_port_map if n.service.name == "empty"), [])) and proxy.proxier.idle,
        what="terminating")
    assert servers(await probe(topology, "ext", ip, 80)) == {"10.244.1.13": 1}
    # the Service goes: its address is unallocated, dropped
    await client.delete(SERVICES, "empty", namespace=NS)
    await until(lambda: not any(s.name.service.name == "empty" for s in proxy.proxier.svc_port_map.values())
                and proxy.proxier.idle, what="empty deleted")
    assert await probe(topology, "ext", ip, 80, timeout=0.5) == ["timeout"]


async def test_cli_programs_and_cleans_up(api: Cluster, client: RESTClient) -> None:
    """`k8py proxy --netns` programs its namespace; `--cleanup` deletes the table."""
    svc = await create_service(client, "cli")
    await set_endpoints(client, "cli", ["p1"])
    netns = f"k8pytest-{secrets.token_hex(3)}"
    sh("ip", "netns", "add", netns)
    proc: subprocess.Popen[bytes] | None = None
    log = api.data_dir / "proxy-cli.log"
    try:
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "k8py.cli", "proxy", "--kubeconfig", str(api.kubeconfig), "--netns", netns,
                 "--hostname-override", NODE, "--nodeport-addresses", "0.0.0.0/0",
                 "--metrics-bind-address", "127.0.0.1:0"],
                stdout=out, stderr=subprocess.STDOUT,
            )
        wait_for(lambda: "proxy started" in log.read_text() or proc.poll() is not None, timeout=30, what="k8py proxy")
        assert proc.poll() is None, log.read_text()
        listing = subprocess.run(["ip", "netns", "exec", netns, "nft", "list", "map", "ip", "kube-proxy",
                                  "service-ips"], capture_output=True, text=True, check=True).stdout
        assert f"{svc['spec']['clusterIP']} . tcp . 80 : goto service-" in listing
        port = int(re.search(r"/metrics on port (\d+)", log.read_text()).group(1))  # type: ignore[union-attr]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            assert r.read() == b"ok"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            metrics = r.read().decode()
        assert "kubeproxy_sync_full_proxy_rules_duration_seconds_count 1.0" in metrics
        proc.terminate()
        proc.wait(timeout=15)
        subprocess.run([sys.executable, "-m", "k8py.cli", "proxy", "--cleanup", "--netns", netns], check=True,
                       capture_output=True, timeout=30)
        tables = subprocess.run(["ip", "netns", "exec", netns, "nft", "list", "tables"], capture_output=True,
                                text=True).stdout
        assert "kube-proxy" not in tables
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        subprocess.run(["ip", "netns", "del", netns], capture_output=True)


async def test_nodeport_addresses_cidrs(topology: Topology) -> None:
    """--nodeport-addresses CIDRs select the namespace's own addresses in them."""
    p = Proxier(ProxierConfig(hostname=NODE, nodeport_addresses=["10.199.0.0/24", "10.244.0.0/16"]),
                netns=topology.node)
    assert sorted(await p._nodeport_ips()) == [NODE_IP, GATEWAY]
