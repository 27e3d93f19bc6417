"""The network agent: desired routes (unit), then three hosts in network namespaces (real kernel).

The real-kernel tests share one lab (:mod:`tests.network.netns`): hosts h0, h1, h2 on a test
LAN, a Node per host in the test cluster, one in-process :class:`NetworkAgent` bound to each
host's namespace, and a pod namespace on h0 and on h1.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from k8py.client import NotFound, PatchType, RESTClient
from k8py.client.resources import NODES
from k8py.network.agent import NetworkAgent
from k8py.network.routes import (
    NAT_TABLE,
    SERVICE_LINK,
    Route,
    desired_routes,
    nat_ruleset,
    node_internal_ip,
    node_pod_cidrs,
)
from tests.conftest import Cluster
from tests.network import netns
from tests.network.netns import Host, NetnsLab, Pod, requires_netns

netns_lab = netns.netns_lab

CLUSTER_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.96.0.0/12"


def node(name: str, pod_cidr: str | None = None, ip: str | None = None, **spec: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "spec": dict(spec)}
    if pod_cidr:
        obj["spec"]["podCIDR"] = pod_cidr
    if ip:
        obj["status"] = {"addresses": [{"type": "Hostname", "address": name}, {"type": "InternalIP", "address": ip}]}
    return obj


# ---- unit: what the routes should be ------------------------------------------------------------


def test_desired_routes_host_gw_and_guards() -> None:
    nodes = [
        node("a", "10.244.0.0/24", "192.168.1.10"),
        node("b", "10.244.1.0/24", "192.168.1.11"),
        node("c", "10.244.2.0/24", "192.168.1.12"),
        node("no-cidr", None, "192.168.1.13"),
        node("no-ip", "10.244.4.0/24"),
    ]
    routes = desired_routes(nodes, "a", cluster_cidr=CLUSTER_CIDR, service_cidr=SERVICE_CIDR)
    assert routes == {
        Route("10.244.1.0/24", "192.168.1.11"),
        Route("10.244.2.0/24", "192.168.1.12"),
        Route("10.244.0.0/16", type="unreachable"),
        Route("10.96.0.0/12", dev=SERVICE_LINK),
    }
    # the guards alone when this node is the only one (or its Node is not there yet)
    guards = desired_routes([], "a", cluster_cidr=CLUSTER_CIDR, service_cidr="10.96.0.1/12")
    assert guards == {Route("10.244.0.0/16", type="unreachable"), Route("10.96.0.0/12", dev="k8py-svc")}
    # the Service CIDR goes out of the dummy link, no gateway: a connect() from the node gets as far as
    # kube-proxy's DNAT, where an `unreachable` route would fail it
    assert sorted(str(r) for r in guards) == ["10.96.0.0/12 dev k8py-svc", "unreachable 10.244.0.0/16"]
    assert str(Route("10.244.1.0/24", "192.168.1.11")) == "10.244.1.0/24 via 192.168.1.11"


def test_desired_routes_conflicts_and_families() -> None:
    dual = node("b", None, None, podCIDRs=["fd00:10:244:1::/64", "10.244.1.0/24"])
    dual["status"] = {
        "addresses": [{"type": "InternalIP", "address": "fd00::11"}, {"type": "InternalIP", "address": "192.168.1.11"}]
    }
    nodes = [
        node("a", "10.244.0.0/24", "192.168.1.10"),
        dual,
        node("c", "10.244.1.0/24", "192.168.1.12"),  # claims b's range: b (first by name) keeps it
        node("d", "10.244.0.0/25", "192.168.1.13"),  # inside a's own range: never routed away
        node("e", SERVICE_CIDR, "192.168.1.14"),  # the Service CIDR's route stays the dummy link's
    ]
    routes = desired_routes(nodes, "a", cluster_cidr=CLUSTER_CIDR, service_cidr=SERVICE_CIDR)
    assert {r for r in routes if r.gateway is not None} == {Route("10.244.1.0/24", "192.168.1.11")}
    assert Route(SERVICE_CIDR, dev=SERVICE_LINK) in routes


def test_node_fields() -> None:
    n = node("x", "10.244.3.7/24")
    n["status"] = {"addresses": [{"type": "ExternalIP", "address": "1.2.3.4"}, {"type": "InternalIP", "address": "10.0.0.5"}]}
    assert node_internal_ip(n) == "10.0.0.5"
    assert node_pod_cidrs(n) == ["10.244.3.0/24"]
    assert node_internal_ip(node("y")) is None and node_pod_cidrs(node("y")) == []


def test_nat_ruleset_masquerades_only_leaving_traffic() -> None:
    script = nat_ruleset(CLUSTER_CIDR)
    assert f"delete table ip {NAT_TABLE}\n" in script  # replaced atomically
    assert "type nat hook postrouting priority srcnat" in script
    assert "ip saddr 10.244.0.0/16 ip daddr != { 10.244.0.0/16, 224.0.0.0/4 } masquerade" in script


# ---- real kernel: three hosts ---------------------------------------------------------------------


async def eventually(predicate: Callable[[], Any], *, timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll a blocking ``predicate`` (in a thread, so that the agents keep running) until truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = await asyncio.to_thread(predicate)
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@dataclass
class Net:
    lab: NetnsLab
    client: RESTClient
    hosts: list[Host]
    node_names: list[str]
    pod_cidrs: list[str]
    agents: list[NetworkAgent]
    pods: list[Pod]

    def routes(self, host: Host) -> set[str]:
        return agent_routes(self.lab, host)

    def expected(self, i: int) -> set[str]:
        peers = {f"{self.pod_cidrs[j]} via {h.ip}" for j, h in enumerate(self.hosts) if j != i}
        return peers | GUARDS

    def nat_tables(self, host: Host) -> list[str]:
        return nft_tables(self.lab, host)


GUARDS = {f"unreachable {CLUSTER_CIDR}", f"{SERVICE_CIDR} dev {SERVICE_LINK}"}


def agent_routes(lab: NetnsLab, host: Host) -> set[str]:
    """The host's routes with the agent's protocol, as ``ip -j`` shows them."""
    out = lab.run(host.netns, "ip", "-j", "route", "show", "proto", "199").stdout
    return {
        f"{r['dst']} via {r['gateway']}" if "gateway" in r else f"{r['type']} {r['dst']}" if "type" in r
        else f"{r['dst']} dev {r['dev']}"
        for r in json.loads(out)
    }


def service_link(lab: NetnsLab, host: Host) -> dict[str, Any] | None:
    """The agent's Service link in the host (``ip -j -d addr`` of it), if there is one."""
    res = lab.run(host.netns, "ip", "-j", "-d", "addr", "show", "dev", SERVICE_LINK, check=False)
    return json.loads(res.stdout)[0] if res.returncode == 0 else None


def nft_tables(lab: NetnsLab, host: Host) -> list[str]:
    return lab.run(host.netns, "nft", "list", "tables").stdout.splitlines()


async def add_node(client: RESTClient, name: str, pod_cidr: str, ip: str) -> None:
    await client.create(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "spec": {"podCIDR": pod_cidr}})
    status = {"addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}]}
    await client.patch(NODES, name, {"status": status}, subresource="status", patch_type=PatchType.STRATEGIC)


async def delete_node(client: RESTClient, name: str) -> None:
    try:
        await client.delete(NODES, name)
    except NotFound:
        pass


@pytest.fixture(scope="module")
async def net(cluster: Cluster) -> AsyncIterator[Net]:
    if requires_netns.args[0]:
        pytest.skip(requires_netns.kwargs["reason"])
    lab = NetnsLab()
    client = RESTClient.from_kubeconfig(cluster.kubeconfig, component="test-network-agent")
    hosts = [lab.add_host(f"h{i}") for i in range(3)]
    names = [f"k8pytest-{lab.id}-{h.name}" for h in hosts]
    cidrs = [f"10.244.{i + 1}.0/24" for i in range(3)]
    agents: list[NetworkAgent] = []
    try:
        pods = [lab.add_pod(hosts[i], cidrs[i], "p0") for i in (0, 1)]
        for name, cidr, host in zip(names, cidrs, hosts, strict=True):
            await add_node(client, name, cidr, host.ip)
        for name, host in zip(names, hosts, strict=True):
            agent = NetworkAgent(
                client, name, cluster_cidr=CLUSTER_CIDR, service_cidr=SERVICE_CIDR, netns=host.netns,
                resync_period=2.0,
            )
            agents.append(agent)
            await agent.start()
        n = Net(lab, client, hosts, names, cidrs, agents, pods)
        for i, host in enumerate(hosts):
            await eventually(
                lambda i=i, host=host: n.routes(host) == n.expected(i) and f"table ip {NAT_TABLE}" in n.nat_tables(host),
                what=f"routes and NAT table of {host.name}",
            )
        yield n
    finally:
        try:
            for agent in agents:
                await agent.stop()
                await agent.cleanup()
            for host in hosts:
                assert not agent_routes(lab, host) and f"table ip {NAT_TABLE}" not in nft_tables(lab, host)
                assert service_link(lab, host) is None
        finally:
            for name in names:
                await delete_node(client, name)
            await client.close()
            lab.close()


@requires_netns
async def test_routes_and_nat_table_installed(net: Net) -> None:
    for i, host in enumerate(net.hosts):
        assert net.routes(host) == net.expected(i)
        assert f"table ip {NAT_TABLE}" in net.nat_tables(host)
        assert net.lab.run(host.netns, "sysctl", "-n", "net.ipv4.ip_forward").stdout.strip() == "1"
        link = service_link(net.lab, host)  # a dummy link (ifb where the kernel has no dummy driver), up, no address
        assert link is not None and "UP" in link["flags"]
        assert not [a for a in link["addr_info"] if a["family"] == "inet"]  # (IPv6 gives it a link-local one)
        assert link["linkinfo"]["info_kind"] in ("dummy", "ifb")
    # a route removed behind the agent's back comes back at the next resync
    h0 = net.hosts[0]
    net.lab.run(h0.netns, "ip", "route", "del", net.pod_cidrs[1], "proto", "199")
    await eventually(lambda: net.routes(h0) == net.expected(0), what="the route restored")
    # so does the Service route after its link is set down (the kernel drops the route) or deleted, or
    # after it was replaced by the `unreachable` guard of an earlier agent (a stale route of ours)
    for change in (("link", "set", SERVICE_LINK, "down"), ("link", "del", SERVICE_LINK),
                   ("route", "replace", "unreachable", SERVICE_CIDR, "proto", "199")):
        net.lab.run(h0.netns, "ip", *change)
        assert f"{SERVICE_CIDR} dev {SERVICE_LINK}" not in net.routes(h0)
        await eventually(lambda: net.routes(h0) == net.expected(0), what=f"the Service route restored after {change}")


@requires_netns
async def test_pod_to_pod_across_hosts_without_nat(net: Net) -> None:
    lab, (p0, p1) = net.lab, net.pods
    assert (await asyncio.to_thread(lab.ping, p0.netns, p1.ip)).returncode == 0
    await asyncio.to_thread(lab.serve_peer, p1.netns, 8080)
    await asyncio.to_thread(lab.serve_peer, p0.netns, 8080)
    assert await asyncio.to_thread(lab.peer_seen, p0.netns, p1.ip, 8080) == p0.ip
    assert await asyncio.to_thread(lab.peer_seen, p1.netns, p0.ip, 8080) == p1.ip
    # a host reaches a remote pod too (and is seen with its node IP)
    assert await asyncio.to_thread(lab.peer_seen, net.hosts[2].netns, p1.ip, 8080) == net.hosts[2].ip


@requires_netns
async def test_unrouted_cluster_and_service_addresses_stay_on_the_node(net: Net) -> None:
    lab, h0, p0 = net.lab, net.hosts[0], net.pods[0]
    unused, service = "10.244.250.7", "10.96.0.10"
    leaked = lab.count_lan("10.244.250.0/24", SERVICE_CIDR)
    control = lab.count_lan(net.pod_cidrs[1])  # proves the counting: pod-to-pod does cross the LAN
    # an unknown pod address fails on the node; from the host itself the route lookup fails (EHOSTUNREACH,
    # an `unreachable` route) and nothing is sent
    res = lab.run(h0.netns, "ip", "route", "get", unused, check=False)
    assert res.returncode != 0 and "no route to host" in res.stderr.lower()
    res = await asyncio.to_thread(lab.ping, h0.netns, unused, 1)
    assert res.returncode != 0 and "no route to host" in (res.stdout + res.stderr).lower()
    # from a pod: the host answers with an ICMP host unreachable (one probe: ICMP is rate-limited)
    before = lab.snmp(h0.netns, "Icmp", "OutDestUnreachs")
    assert await asyncio.to_thread(lab.tcp_connect, p0.netns, unused, 443) == "EHOSTUNREACH"
    assert lab.snmp(h0.netns, "Icmp", "OutDestUnreachs") == before + 1
    # a Service address kube-proxy does not translate goes to the dummy link, which drops it: from the
    # host the connect() gets a route (no EHOSTUNREACH: kube-proxy's OUTPUT DNAT would come next) and
    # times out; from a pod it is dropped the same way, without an ICMP error
    assert f"dev {SERVICE_LINK}" in lab.run(h0.netns, "ip", "route", "get", service).stdout
    assert await asyncio.to_thread(lab.tcp_connect, h0.netns, service, 443) == "timeout"
    before = lab.snmp(h0.netns, "Icmp", "OutDestUnreachs")
    assert await asyncio.to_thread(lab.tcp_connect, p0.netns, service, 443) == "timeout"
    assert lab.snmp(h0.netns, "Icmp", "OutDestUnreachs") == before
    assert (await asyncio.to_thread(lab.ping, p0.netns, net.pods[1].ip)).returncode == 0
    assert control.packets() > 0
    assert leaked.packets() == 0


@requires_netns
async def test_host_reaches_a_cluster_ip_kube_proxy_translates(net: Net) -> None:
    """The kubeadm behaviour (`curl https://10.96.0.1` on a node): a connect() from the host to a ClusterIP
    is routed to the Service link, DNATed in the nat OUTPUT hook (kube-proxy's job; here a table of the
    test's) and routed again to the endpoint, a pod on this node or on another."""
    lab, h0, (p0, p1) = net.lab, net.hosts[0], net.pods
    vips = {"10.96.0.50": p0, "10.96.0.51": p1}
    for pod in vips.values():
        await asyncio.to_thread(lab.serve_peer, pod.netns, 8082)
    rules = "".join(f"\t\tip daddr {vip} tcp dport 80 dnat to {pod.ip}:8082\n" for vip, pod in vips.items())
    table = "k8pytest-dnat"
    lab.run(h0.netns, "nft", "-f", "-", input=(
        f"table ip {table} {{\n\tchain output {{\n\t\ttype nat hook output priority -100; policy accept;\n"
        f"{rules}\t}}\n}}\n"
    ))
    try:
        for vip in vips:
            assert await asyncio.to_thread(lab.peer_seen, h0.netns, vip, 80) == h0.ip
            assert await asyncio.to_thread(lab.tcp_connect, h0.netns, vip, 80) == "ok"
        assert await asyncio.to_thread(lab.tcp_connect, h0.netns, "10.96.0.50", 81) == "timeout"  # not translated
    finally:
        lab.run(h0.netns, "nft", "delete", "table", "ip", table)


@requires_netns
async def test_snat_for_destinations_outside_the_cluster(net: Net) -> None:
    lab = net.lab
    await asyncio.to_thread(lab.serve_peer, lab.lan, 8081)
    for pod in net.pods:
        assert await asyncio.to_thread(lab.peer_seen, pod.netns, lab.outside_ip, 8081) == pod.host.ip


@requires_netns
async def test_node_changes_and_deletion_update_routes(net: Net) -> None:
    name, cidr = f"k8pytest-{net.lab.id}-gone", "10.244.9.0/24"
    await add_node(net.client, name, cidr, "10.197.0.200")
    try:
        for i, host in enumerate(net.hosts):
            await eventually(
                lambda i=i, host=host: net.routes(host) == net.expected(i) | {f"{cidr} via 10.197.0.200"},
                what=f"the new node's route on {host.name}",
            )
        status = {"addresses": [{"type": "InternalIP", "address": "10.197.0.201"}]}
        await net.client.patch(NODES, name, {"status": status}, subresource="status")
        h0 = net.hosts[0]
        await eventually(lambda: f"{cidr} via 10.197.0.201" in net.routes(h0), what="the gateway changed")
        await net.client.delete(NODES, name)
        for i, host in enumerate(net.hosts):
            await eventually(lambda i=i, host=host: net.routes(host) == net.expected(i), what="the route removed")
    finally:
        await delete_node(net.client, name)


@requires_netns
async def test_cleanup_leaves_nothing_and_touches_no_other_route(net: Net) -> None:
    lab, h2, agent = net.lab, net.hosts[2], net.agents[2]
    lab.run(h2.netns, "ip", "route", "add", "10.244.77.0/24", "via", net.hosts[0].ip, "proto", "static")
    await agent.sync(nat=True)  # a reconcile leaves the foreign route alone
    await agent.stop()
    await agent.cleanup()
    assert net.routes(h2) == set()
    assert f"table ip {NAT_TABLE}" not in net.nat_tables(h2)
    assert "10.244.77.0/24 via" in lab.run(h2.netns, "ip", "route", "show", "10.244.77.0/24").stdout
    assert net.routes(net.hosts[0]) == net.expected(0)  # the other nodes keep theirs


@requires_netns
def test_harness_builds_and_removes_everything(netns_lab: NetnsLab) -> None:
    lab = netns_lab
    h0, h1 = lab.add_host("h0"), lab.add_host("h1")
    pod = lab.add_pod(h0, "10.244.1.0/24", "p0")
    assert (h0.ip, h1.ip, pod.ip, lab.outside_ip) == ("10.197.0.1", "10.197.0.2", "10.244.1.2", "10.197.0.254")
    assert lab.ping(pod.netns, h0.ip).returncode == 0 and lab.ping(h0.netns, h1.ip).returncode == 0
    lab.serve_peer(h1.netns, 8080)
    assert lab.peer_seen(h0.netns, h1.ip, 8080) == h0.ip
    mine = {lab.lan, h0.netns, h1.netns, pod.netns}
    assert mine <= netns_names()
    lab.close()
    assert not mine & netns_names()


def netns_names() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


@requires_netns
async def test_network_agent_command(net: Net, cluster: Cluster, tmp_path: Path) -> None:
    """`k8py network-agent` run in a fourth host's namespace, as on a node: routes, NAT and the NetworkPolicy
    table on start, kept on SIGTERM."""
    lab = net.lab
    h3 = lab.add_host("h3")
    name, cidr = f"k8pytest-{lab.id}-h3", "10.244.4.0/24"
    await add_node(net.client, name, cidr, h3.ip)
    try:
        lab.relay_loopback(h3.netns, cluster.port)  # the kubeconfig's https://127.0.0.1:<port>
        argv = [sys.executable, "-m", "k8py.cli", "network-agent", "--kubeconfig", str(cluster.kubeconfig),
                "--node-name", name, "--cluster-cidr", CLUSTER_CIDR, "--service-cluster-ip-range", SERVICE_CIDR]
        proc = lab.popen(h3.netns, *argv, log=tmp_path / "network-agent.log")
        expected = {f"{c} via {h.ip}" for c, h in zip(net.pod_cidrs, net.hosts, strict=True)}
        expected |= GUARDS
        await eventually(
            lambda: agent_routes(lab, h3) == expected and f"table ip {NAT_TABLE}" in nft_tables(lab, h3)
            and "table inet k8py-netpol" in nft_tables(lab, h3),
            timeout=20,
            what="the command's routes, NAT table and NetworkPolicy table",
        )
        await eventually(lambda: f"{cidr} via {h3.ip}" in agent_routes(lab, net.hosts[0]), what="h0's route to h3")
        proc.terminate()
        assert await asyncio.to_thread(proc.wait, 15) == 0, (tmp_path / "network-agent.log").read_text()
        assert agent_routes(lab, h3) == expected and service_link(lab, h3)  # stopping keeps the node's network up
        await NetworkAgent(
            net.client, name, cluster_cidr=CLUSTER_CIDR, service_cidr=SERVICE_CIDR, netns=h3.netns
        ).cleanup()
        assert agent_routes(lab, h3) == set() and f"table ip {NAT_TABLE}" not in nft_tables(lab, h3)
        assert service_link(lab, h3) is None
    finally:
        await delete_node(net.client, name)
