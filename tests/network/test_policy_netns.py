"""NetworkPolicy enforcement in a real kernel: two "nodes" and their "pods" in network namespaces.

Topology (a :class:`~tests.network.netns.NetnsLab` on 10.198.0.0/24)::

    node n1 (10.198.0.1): bridge cni0 10.198.1.1/24 -- a1 10.198.1.2, a2 10.198.1.3, b1 10.198.1.4
    node n2 (10.198.0.2): bridge cni0 10.198.2.1/24 -- a3 10.198.2.2
    host-gw routes between the nodes' pod CIDRs

Pods a1, a2 (namespace A) and b1 (namespace B) share n1's bridge; a3 (namespace A) is on n2.
The Pod objects live in the shared ``cluster``'s API with those IPs and nodes; one
:class:`PolicyAgent` per node programs that node's namespace through ``ip netns exec``.
Connections are TCP connects between the pod namespaces; a dropped SYN shows as a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import secrets
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from k8py.client import NotFound, RESTClient
from k8py.client.resources import NAMESPACES, NETWORK_POLICIES, PODS, SERVICE_ACCOUNTS
from k8py.network.policy import TABLE, PolicyAgent, compute_ruleset
from k8py.network.policy.nftables import NFTables, render, sync_script
from tests.conftest import Cluster
from tests.network.netns import NetnsLab, Pod, requires_netns

pytestmark = requires_netns

PORTS = (80, 8080)
BLOCKED_TIMEOUT = 0.4  # a connect that gets no answer in this time is taken as dropped


@dataclass
class Topology:
    lab: NetnsLab
    pods: dict[str, Pod]  # a1, a2, b1 on n1; a3 on n2

    def node_nft(self, node: str) -> tuple[str, ...]:
        return ("ip", "netns", "exec", self.lab.hosts[node].netns, "nft")

    def connects(self, src: str, dst: str, port: int = 80, timeout: float = BLOCKED_TIMEOUT) -> bool:
        try:
            self.lab.peer_seen(self.pods[src].netns, self.pods[dst].ip, port, timeout=timeout)
        except subprocess.CalledProcessError:
            return False
        return True


@pytest.fixture(scope="module")
def topology() -> Iterator[Topology]:
    with NetnsLab("10.198.0.0/24") as lab:
        n1, n2 = lab.add_host("n1"), lab.add_host("n2")
        pods = {name: lab.add_pod(n1, "10.198.1.0/24", name) for name in ("a1", "a2", "b1")}
        pods["a3"] = lab.add_pod(n2, "10.198.2.0/24", "a3")
        lab.run(n1.netns, "ip", "route", "add", "10.198.2.0/24", "via", n2.ip)
        lab.run(n2.netns, "ip", "route", "add", "10.198.1.0/24", "via", n1.ip)
        for host in (n1, n2):  # bridged traffic reaches the inet hooks (br_netfilter; see nftables.py)
            setting = lab.run(host.netns, "sysctl", "-n", "net.bridge.bridge-nf-call-iptables", check=False)
            if setting.stdout.strip() != "1":
                pytest.skip("needs br_netfilter with net.bridge.bridge-nf-call-iptables=1 in new namespaces")
        for pod in pods.values():
            for port in PORTS:
                lab.serve_peer(pod.netns, port)
        yield Topology(lab, pods)


async def eventually(predicate: Callable[[], Awaitable[bool]], timeout: float, what: str) -> float:
    """Poll until ``predicate`` holds; the seconds it took."""
    start = time.monotonic()
    while not await predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


@dataclass
class Scenario:
    client: RESTClient
    topo: Topology
    ns_a: str
    ns_b: str
    agents: dict[str, PolicyAgent]

    async def connects(self, src: str, dst: str, port: int = 80) -> bool:
        return await asyncio.to_thread(self.topo.connects, src, dst, port)

    async def expect(self, src: str, dst: str, allowed: bool, port: int = 80, timeout: float = 3.0) -> float:
        """Wait until a connect from ``src`` to ``dst`` succeeds (``allowed``) or is dropped."""

        async def check() -> bool:
            return await self.connects(src, dst, port) is allowed

        verb = "connect" if allowed else "be blocked"
        return await eventually(check, timeout, f"{src} -> {dst}:{port} to {verb}")

    async def policy(self, name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
        body = {"metadata": {"name": name, "namespace": namespace}, "spec": spec}
        return await self.client.create(NETWORK_POLICIES, body)


NODE_OF = {"a1": "n1", "a2": "n1", "b1": "n1", "a3": "n2"}


@pytest.fixture
async def scenario(cluster: Cluster, topology: Topology) -> AsyncIterator[Scenario]:
    run = secrets.token_hex(3)
    client = RESTClient.from_kubeconfig(cluster.kubeconfig, component="policy-test")
    ns_a, ns_b = f"np-{run}-a", f"np-{run}-b"
    nodes = {name: f"np-{run}-{name}" for name in ("n1", "n2")}
    agents: dict[str, PolicyAgent] = {}
    try:
        for name, team in ((ns_a, "a"), (ns_b, "b")):
            await client.create(NAMESPACES, {"metadata": {"name": name, "labels": {"team": team}}})
            await eventually(
                functools.partial(_exists, client, name), 10, f"ServiceAccount default in {name}"
            )
        for name, pod in topology.pods.items():
            namespace = ns_b if name.startswith("b") else ns_a
            body = {
                "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
                "spec": {
                    "nodeName": nodes[NODE_OF[name]],
                    "containers": [
                        {"name": "c", "image": "busybox", "ports": [{"name": "http", "containerPort": 8080}]}
                    ],
                },
            }
            created = await client.create(PODS, body)
            created["status"] = {"phase": "Running", "podIP": pod.ip, "podIPs": [{"ip": pod.ip}]}
            await client.update_status(PODS, created)
        for node, node_name in nodes.items():
            agents[node] = PolicyAgent(client, node_name, nft=topology.node_nft(node))
            await agents[node].start()
        yield Scenario(client, topology, ns_a, ns_b, agents)
    finally:
        for agent in agents.values():
            await agent.stop()
            await agent.cleanup()
        for name in (ns_a, ns_b):  # without a namespace controller, its content must go first
            await client.delete_collection(NETWORK_POLICIES, namespace=name)
            await client.delete_collection(PODS, namespace=name, grace_period_seconds=0)
            with contextlib.suppress(NotFound):
                await client.delete(NAMESPACES, name)
        await client.close()


async def _exists(client: RESTClient, namespace: str) -> bool:
    try:
        await client.get(SERVICE_ACCOUNTS, "default", namespace=namespace)
    except NotFound:
        return False
    return True


async def test_default_deny_then_allow_by_namespace_label(scenario: Scenario) -> None:
    s = scenario
    # no policy: everything connects, on the bridge and across nodes
    for src, dst in (("b1", "a1"), ("a2", "a1"), ("a3", "a1"), ("a1", "a3")):
        assert await s.connects(src, dst), f"{src} -> {dst}"

    await s.policy("default-deny", s.ns_a, {"podSelector": {}, "policyTypes": ["Ingress"]})
    await s.expect("b1", "a1", allowed=False)  # same bridge
    await s.expect("a3", "a1", allowed=False)  # from the other node
    await s.expect("a1", "a3", allowed=False)  # enforced by n2's agent
    await s.expect("a1", "b1", allowed=True)  # b1 is not isolated; replies pass
    # the node itself reaches its pods (kubelet probes)
    node = s.topo.lab.hosts["n1"].netns
    assert await asyncio.to_thread(s.topo.lab.peer_seen, node, s.topo.pods["a1"].ip, 80, 1.0) == "10.198.1.1"

    await s.policy(
        "from-team-b",
        s.ns_a,
        {
            "podSelector": {"matchLabels": {"app": "a1"}},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "b"}}}]}],
        },
    )
    await s.expect("b1", "a1", allowed=True)
    assert not await s.connects("a2", "a1") and not await s.connects("b1", "a2")

    # the namespace loses its label: within a second b1 is out
    await s.client.patch(NAMESPACES, s.ns_b, {"metadata": {"labels": {"team": None}}})
    took = await s.expect("b1", "a1", allowed=False, timeout=1.0 + BLOCKED_TIMEOUT)
    assert took < 1.0 + BLOCKED_TIMEOUT


async def test_named_port_and_pod_selector(scenario: Scenario) -> None:
    s = scenario
    await s.policy(
        "http-from-a2",
        s.ns_a,
        {
            "podSelector": {"matchLabels": {"app": "a1"}},
            "ingress": [
                {"from": [{"podSelector": {"matchLabels": {"app": "a2"}}}], "ports": [{"port": "http"}]}
            ],
        },
    )
    await s.expect("a2", "a1", allowed=True, port=8080)
    await s.expect("a2", "a1", allowed=False, port=80)
    assert not await s.connects("b1", "a1", 8080)  # app=a2 only in the policy's namespace
    assert not await s.connects("a3", "a1", 8080)
    assert await s.connects("a3", "a2", 80)  # a2 is not selected


async def test_egress_deny_and_policy_update_latency(scenario: Scenario) -> None:
    s = scenario
    pol = await s.policy("egress", s.ns_b, {"podSelector": {}, "policyTypes": ["Egress"], "egress": []})
    await s.expect("b1", "a1", allowed=False)  # same bridge
    await s.expect("b1", "a3", allowed=False)  # to the other node
    assert await s.connects("a1", "b1")  # ingress to b1 is open, and its replies are not new egress

    # allow egress to the other node's pod CIDR: live within a second
    pol["spec"]["egress"] = [{"to": [{"ipBlock": {"cidr": "10.198.2.0/24"}}]}]
    await s.client.update(NETWORK_POLICIES, pol)
    took = await s.expect("b1", "a3", allowed=True, timeout=1.0)
    assert took < 1.0
    assert not await s.connects("b1", "a1")

    # ... and an except block takes it back
    pol = await s.client.get(NETWORK_POLICIES, "egress", namespace=s.ns_b)
    pol["spec"]["egress"][0]["to"][0]["ipBlock"]["except"] = [f"{s.topo.pods['a3'].ip}/32"]
    await s.client.update(NETWORK_POLICIES, pol)
    took = await s.expect("b1", "a3", allowed=False, timeout=1.0 + BLOCKED_TIMEOUT)
    assert took < 1.0 + BLOCKED_TIMEOUT

    # deleting the policy opens everything again
    await s.client.delete(NETWORK_POLICIES, "egress", namespace=s.ns_b)
    await s.expect("b1", "a1", allowed=True, timeout=1.0)


async def test_pod_label_change_updates_peer_sets(scenario: Scenario) -> None:
    s = scenario
    await s.policy(
        "from-web",
        s.ns_a,
        {
            "podSelector": {"matchLabels": {"app": "a1"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "web"}}}]}],
        },
    )
    await s.expect("a3", "a1", allowed=False)
    await s.client.patch(PODS, "a3", {"metadata": {"labels": {"role": "web"}}}, namespace=s.ns_a)
    await s.expect("a3", "a1", allowed=True, timeout=1.0)
    assert not await s.connects("a2", "a1")
    applied = s.agents["n1"].applied
    assert applied is not None
    assert len([n for n in applied.chains if n.startswith("pol-")]) == 1, applied.chains


async def test_scripts_apply_and_cleanup_in_a_real_table(topology: Topology) -> None:
    """Every diff the unit tests reason about is valid nft, in order, on a real kernel."""
    nft = NFTables(topology.node_nft("n1"))
    ns_labels = [{"metadata": {"name": "a", "labels": {"team": "a"}}}]
    pod: dict[str, Any] = {
        "metadata": {"namespace": "a", "name": "p", "labels": {"app": "x"}},
        "spec": {
            "nodeName": "n",
            "containers": [{"name": "c", "ports": [{"name": "dns", "containerPort": 53, "protocol": "UDP"}]}],
        },
        "status": {"podIP": "10.198.1.2"},
    }
    rule = {
        "from": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.198.1.0/24"]}}, {"podSelector": {}}],
        "ports": [{"port": 80, "endPort": 90}, {"protocol": "UDP", "port": "dns"}, {"protocol": "SCTP"}],
    }
    policies = [
        {
            "metadata": {"namespace": "a", "name": "p"},
            "spec": {
                "podSelector": {},
                "ingress": [rule],
                "egress": [{"to": rule["from"], "ports": rule["ports"]}],
            },
        }
    ]
    states = [
        render(compute_ruleset([pod], ns_labels, policies, "n")),
        render(
            compute_ruleset(
                [
                    pod,
                    {**pod, "metadata": {**pod["metadata"], "name": "q"}, "status": {"podIP": "10.198.1.3"}},
                ],
                ns_labels,
                policies,
                "n",
            )
        ),
        render(compute_ruleset([pod], ns_labels, [], "n")),
        render(compute_ruleset([pod], ns_labels, policies, "n")),
    ]
    try:
        applied = None
        for state in states:
            await nft.run(sync_script(applied, state))
            applied = state
        listing = await nft.list_table()
        assert "10.198.1.2 . udp . 53" in listing and "tcp dport 80-90 accept" in listing
        await nft.run(sync_script(None, states[1]))  # a full rebuild over an existing table
    finally:
        await nft.delete_table()
    assert TABLE not in topology.lab.run(topology.lab.hosts["n1"].netns, "nft", "list", "tables").stdout


async def test_restart_keeps_rules_and_resync_repairs(scenario: Scenario) -> None:
    s = scenario
    await s.policy("default-deny", s.ns_a, {"podSelector": {}, "policyTypes": ["Ingress"]})
    await s.expect("b1", "a1", allowed=False)
    # stop leaves the rules: the pods stay isolated while the agent is down
    agent = s.agents["n1"]
    await agent.stop()
    assert not await s.connects("b1", "a1")
    # a new agent takes over the table (rebuilt in one transaction) ...
    s.agents["n1"] = agent = PolicyAgent(s.client, agent.node_name, nft=agent.nft.command, resync_period=0.5)
    await agent.start()
    assert not await s.connects("b1", "a1")
    # ... and restores it when someone deletes it behind its back
    await agent.nft.delete_table()
    netns = s.topo.lab.hosts["n1"].netns

    async def table_present() -> bool:
        return TABLE in s.topo.lab.run(netns, "nft", "list", "tables").stdout

    assert not await table_present()
    await eventually(table_present, 2.0, "the resync to recreate the table")
    await s.expect("b1", "a1", allowed=False, timeout=2.0)
