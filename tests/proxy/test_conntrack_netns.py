"""Stale UDP conntrack entries (k8py/proxy/conntrack.py): which frontends and entries the
cleanup picks (no kernel), what the proxier hands it, and a UDP client in a pod of a
:class:`~tests.network.netns.NetnsLab` that keeps one source port while its Service's
endpoints come and go (the proxy programs the host namespace, the API server is the test
session's cluster)."""

from __future__ import annotations

import asyncio
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from pyroute2 import NFCTSocket
from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple

from k8py.client import RESTClient
from k8py.client.resources import ENDPOINT_SLICES, NAMESPACES, SERVICES
from k8py.proxy import ProxierConfig, ProxyServer, cleanup_leftovers
from k8py.proxy.conntrack import ConntrackCleaner, Entry, Frontends, entry_from_netlink, frontends
from k8py.proxy.endpoints import EndpointInfo
from k8py.proxy.serviceport import NamespacedName, ServicePortInfo, ServicePortName
from tests.conftest import Cluster
from tests.network import netns
from tests.network.netns import NetnsLab, requires_netns
from tests.proxy.test_proxier import FakeProxier

netns_lab = netns.netns_lab

UDP, SCTP = socket.IPPROTO_UDP, socket.IPPROTO_SCTP
DNS = NamespacedName("ns", "dns")


def port_info(name: NamespacedName = DNS, ip: str = "10.96.0.10", port: int = 53, protocol: str = "UDP",
              **fields: Any) -> ServicePortInfo:
    return ServicePortInfo(ServicePortName(name, "dns", protocol), ip, port, protocol, **fields)


def eps(*addresses: str, ready: bool = True, serving: bool = True, terminating: bool = False) -> list[EndpointInfo]:
    return [EndpointInfo(a.split(":")[0], int(a.split(":")[1]), ready=ready, serving=serving, terminating=terminating)
            for a in addresses]


def entry(dst: str, dport: int, reply: str, proto: int = UDP) -> Entry:
    ip, port = reply.split(":")
    return Entry(proto, "10.244.1.5", dst, 40000, dport, ip, int(port))


# ---- which entries are stale ----------------------------------------------------------------------


def test_frontends_of_changed_udp_and_sctp_ports() -> None:
    dns = port_info(external_ips=("192.0.2.1",), load_balancer_vips=("192.0.2.2",), node_port=30053)
    sctp = port_info(NamespacedName("ns", "sig"), "10.96.0.11", 3868, "SCTP")
    tcp = port_info(NamespacedName("ns", "web"), "10.96.0.12", 80, "TCP")
    svc_map = {s.name: s for s in (dns, sctp, tcp)}
    endpoints = {
        dns.name: eps("10.244.1.11:5353", "10.244.2.12:5353", ready=False, serving=True, terminating=True)
        + eps("10.244.1.13:5353", ready=False, serving=False),
        tcp.name: eps("10.244.1.14:8080"),
    }
    f = frontends(svc_map, endpoints)
    serving = frozenset({("10.244.1.11", 5353), ("10.244.2.12", 5353)})  # serving, terminating or not
    assert f.ips == {(UDP, "10.96.0.10", 53): serving, (UDP, "192.0.2.1", 53): serving,
                     (UDP, "192.0.2.2", 53): serving, (SCTP, "10.96.0.11", 3868): frozenset()}
    assert f.node_ports == {(UDP, 30053): serving}
    # a partial sync: only the Services it rewrote
    assert frontends(svc_map, endpoints, {sctp.name.service}).ips == {(SCTP, "10.96.0.11", 3868): frozenset()}
    assert not frontends(svc_map, endpoints, {tcp.name.service})


def test_frontends_of_removed_ports() -> None:
    old = port_info(node_port=30053, external_ips=("192.0.2.1",))
    new = port_info()  # no NodePort, no external IP any more
    f = frontends({new.name: new}, {new.name: eps("10.244.1.11:5353")}, {DNS}, [old])
    assert f.ips == {(UDP, "10.96.0.10", 53): frozenset({("10.244.1.11", 5353)}),
                     (UDP, "192.0.2.1", 53): frozenset()}
    assert f.node_ports == {(UDP, 30053): frozenset()}


def test_stale_entries() -> None:
    f = frontends({(p := port_info(node_port=30053)).name: p}, {p.name: eps("10.244.1.11:5353")})
    assert not f.is_stale(entry("10.96.0.10", 53, "10.244.1.11:5353"))  # DNATed to the endpoint
    assert f.is_stale(entry("10.96.0.10", 53, "10.244.1.12:5353"))  # to a gone endpoint
    assert f.is_stale(entry("10.96.0.10", 53, "10.244.1.11:5354"))  # to a gone targetPort
    assert f.is_stale(entry("10.96.0.10", 53, "10.96.0.10:53"))  # sent while there was no endpoint
    assert f.is_stale(entry("10.199.0.1", 30053, "10.199.0.1:30053"))  # NodePort, any address
    assert not f.is_stale(entry("10.199.0.1", 30053, "10.244.1.11:5353"))
    assert not f.is_stale(entry("10.96.0.10", 54, "10.244.1.12:5353"))  # another port
    assert not f.is_stale(entry("10.96.0.10", 53, "10.244.1.12:5353", proto=SCTP))  # another protocol
    # no endpoint left: every entry of the frontend
    none = frontends({p.name: p}, {})
    assert none.is_stale(entry("10.96.0.10", 53, "10.244.1.11:5353"))


def test_newer_frontends_win() -> None:
    f = Frontends({(UDP, "10.96.0.10", 53): frozenset()})
    f.update(Frontends({(UDP, "10.96.0.10", 53): frozenset({("10.244.1.11", 5353)})}, {(UDP, 30053): frozenset()}))
    assert f.ips == {(UDP, "10.96.0.10", 53): frozenset({("10.244.1.11", 5353)})}
    assert f.node_ports == {(UDP, 30053): frozenset()}


# ---- what the proxier asks for --------------------------------------------------------------------


class RecordingCleaner(ConntrackCleaner):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[Frontends] = []

    def clean(self, frontends: Frontends) -> None:
        self.calls.append(frontends)


def udp_service(name: str, ip: str, port: int = 53) -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": name},
            "spec": {"clusterIP": ip, "clusterIPs": [ip], "ports": [{"name": "dns", "port": port, "protocol": "UDP"}]}}


def udp_slice(svc: str, *ips: str) -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": f"{svc}-1", "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4", "ports": [{"name": "dns", "port": 5353, "protocol": "UDP"}],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True}} for ip in ips]}


async def test_proxier_cleans_what_a_sync_rewrote() -> None:
    p = FakeProxier()
    p.conntrack = cleaner = RecordingCleaner()  # never the test machine's own conntrack table
    p.on_service_add(udp_service("dns", "10.96.0.10"))
    p.on_service_add(udp_service("other", "10.96.0.11"))
    p.on_endpoint_slice_update(udp_slice("dns", "10.244.1.11"))
    await p.start()
    assert cleaner.calls[-1].ips == {(UDP, "10.96.0.10", 53): frozenset({("10.244.1.11", 5353)}),
                                     (UDP, "10.96.0.11", 53): frozenset()}  # full sync: every port
    p.on_endpoint_slice_update(udp_slice("dns", "10.244.1.12"))
    await p.sync_proxy_rules()
    assert cleaner.calls[-1].ips == {(UDP, "10.96.0.10", 53): frozenset({("10.244.1.12", 5353)})}
    p.on_service_update(udp_service("dns", "10.96.0.10"), udp_service("dns", "10.96.0.10", 54))
    await p.sync_proxy_rules()
    assert cleaner.calls[-1].ips == {(UDP, "10.96.0.10", 53): frozenset(),  # the old port
                                     (UDP, "10.96.0.10", 54): frozenset({("10.244.1.12", 5353)})}
    p.on_service_delete(udp_service("other", "10.96.0.11"))
    await p.sync_proxy_rules()
    assert cleaner.calls[-1].ips == {(UDP, "10.96.0.11", 53): frozenset()}


# ---- a UDP client that keeps its source port ------------------------------------------------------

CLUSTER_IP, PORT, TARGET_PORT, CLIENT_PORT = "10.96.123.53", 53, 5353, 40053
# answers every datagram with its name
_ECHO = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[2])))
print("ready", flush=True)
while True:
    _, addr = s.recvfrom(2048)
    s.sendto(sys.argv[1].encode(), addr)
"""
# a datagram every 50 ms from one source port; prints the answers
_CLIENT = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[3])))
while True:
    try:
        s.sendto(b"ping", (sys.argv[1], int(sys.argv[2])))
    except OSError:
        pass
    end = time.monotonic() + 0.05
    while (left := end - time.monotonic()) > 0:
        s.settimeout(left)
        try:
            print(s.recv(2048).decode(), flush=True)
        except TimeoutError:
            break
        except OSError:
            pass
"""


class Answers:
    """The lines a background process prints, with when they came."""

    def __init__(self, stdout: Any) -> None:
        self.lines: list[tuple[float, str]] = []
        threading.Thread(target=self._read, args=(stdout,), daemon=True).start()

    def _read(self, stdout: Any) -> None:
        for line in stdout:
            self.lines.append((time.monotonic(), line.strip()))

    def since(self, t: float) -> list[str]:
        return [line for at, line in self.lines if at >= t]


def entries(netns_name: str) -> list[Entry]:
    """The UDP conntrack entries to CLUSTER_IP:PORT in ``netns_name``."""
    with NFCTSocket(netns=netns_name, flags=0) as ct:
        return [entry_from_netlink(m) for m in ct.dump(tuple_orig=NFCTAttrTuple(proto=UDP, daddr=CLUSTER_IP,
                                                                                   dport=PORT))]


async def until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


async def until_async(predicate: Callable[[], Any], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


@requires_netns
async def test_udp_flow_follows_its_endpoints(netns_lab: NetnsLab, cluster: Cluster) -> None:
    lab = netns_lab
    host = await asyncio.to_thread(lab.add_host, "node")
    pods = {name: await asyncio.to_thread(lab.add_pod, host, "10.244.1.0/24", name) for name in ("client", "pa", "pb")}
    for name in ("pa", "pb"):
        proc = lab.popen(pods[name].netns, sys.executable, "-c", _ECHO, name, str(TARGET_PORT))
        assert proc.stdout is not None and await asyncio.to_thread(proc.stdout.readline) == "ready\n"

    ns = f"ct-{secrets.token_hex(3)}"
    client = RESTClient.from_kubeconfig(cluster.kubeconfig)
    await client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})

    slice_version: list[str] = []  # the EndpointSlice's, once created

    async def set_endpoints(*pod_names: str) -> float:
        """Make these pods the Service's endpoints; when the API write began."""
        body: dict[str, Any] = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": "dns-1", "namespace": ns, "labels": {"kubernetes.io/service-name": "dns"}},
                "addressType": "IPv4", "ports": [{"name": "dns", "port": TARGET_PORT, "protocol": "UDP"}],
                "endpoints": [{"addresses": [pods[n].ip], "nodeName": "node", "conditions": {"ready": True}}
                              for n in pod_names]}
        t = time.monotonic()
        if slice_version:
            body["metadata"]["resourceVersion"] = slice_version[0]
            current = await client.update(ENDPOINT_SLICES, body)
        else:
            current = await client.create(ENDPOINT_SLICES, body, namespace=ns)
        slice_version[:] = [current["metadata"]["resourceVersion"]]
        return t

    # no --service-cluster-ip-range: a packet to an unallocated ClusterIP goes its way (to the LAN)
    config = ProxierConfig(hostname="node", cluster_cidr="10.244.0.0/16", node_ips=[host.ip], min_sync_period=0.05)
    server = ProxyServer(client, config, netns=host.netns)
    try:
        await server.start()
        proc = lab.popen(pods["client"].netns, sys.executable, "-c", _CLIENT, CLUSTER_IP, str(PORT), str(CLIENT_PORT))
        answers = Answers(proc.stdout)
        # sent before the Service exists: an entry without DNAT
        await until_async(lambda: asyncio.to_thread(
            lambda: any(e.reply_src == CLUSTER_IP for e in entries(host.netns))), 5, "an entry without DNAT")

        await client.create(SERVICES, {
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "dns", "namespace": ns},
            "spec": {"clusterIP": CLUSTER_IP,
                     "ports": [{"name": "dns", "port": PORT, "targetPort": TARGET_PORT, "protocol": "UDP"}]},
        }, namespace=ns)
        t = await set_endpoints("pa")
        await until(lambda: "pa" in answers.since(t), 2, "answers from pa")

        # pa is replaced by pb: the flow follows at once, though its source port stays
        t = await set_endpoints("pb")
        await until(lambda: "pb" in answers.since(t), 2, "answers from pb")
        t = time.monotonic()
        await until(lambda: len(answers.since(t)) >= 5, 2, "more answers")
        assert set(answers.since(t)) == {"pb"}

        # no endpoint left: the flow's entry goes, new packets are rejected (no new entry)
        await set_endpoints()
        await until_async(lambda: asyncio.to_thread(lambda: not entries(host.netns)), 2, "no entry left")
        assert server.proxier.conntrack.deleted >= 2
    finally:
        await server.stop()
        assert await cleanup_leftovers(netns=host.netns)
        await client.close()
