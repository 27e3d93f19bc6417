"""The nftables Proxier's transactions for a set of Services and EndpointSlices (no kernel):
full syncs, partial syncs with only the deltas, and the endpoint semantics (ready, serving +
terminating fallback, traffic policies, affinity, no endpoints)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from k8py.proxy.nftables import NFTablesError, Transaction
from k8py.proxy.proxier import (
    BoundedFrequencyRunner,
    Proxier,
    ProxierConfig,
    endpoint_chain_name_base,
    service_port_chain_name_base,
)
from k8py.proxy.serviceport import NamespacedName, ServicePortName

NODE = "node-a"


def service(name: str, ip: str, port: int = 80, ns: str = "ns", **spec: Any) -> dict[str, Any]:
    ports = [{"name": "http", "port": port, "protocol": "TCP", **spec.pop("port_extra", {})}]
    return {"metadata": {"namespace": ns, "name": name},
            "spec": {"clusterIP": ip, "clusterIPs": [ip], "ports": ports, **spec}}


def endpoint(ip: str, node: str = NODE, **conditions: bool) -> dict[str, Any]:
    return {"addresses": [ip], "nodeName": node, "conditions": {"ready": True, **conditions}}


def endpoint_slice(svc: str, endpoints: list[dict[str, Any]], port: int = 8080, ns: str = "ns",
                   name: str | None = None) -> dict[str, Any]:
    return {"metadata": {"namespace": ns, "name": name or f"{svc}-abcde",
                         "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
            "endpoints": endpoints}


class FakeProxier(Proxier):
    """A Proxier whose transactions are recorded instead of run."""

    def __init__(self, **config: Any) -> None:
        super().__init__(ProxierConfig(hostname=NODE, cluster_cidr="10.244.0.0/16", node_ips=["10.199.0.1"],
                                       service_cidrs=["10.96.0.0/12"], **config))
        self.transactions: list[Transaction] = []
        self.fail_next = False
        self.kernel_chains: list[str] = []

        async def run(tx: Transaction) -> None:
            if self.fail_next:
                self.fail_next = False
                raise NFTablesError("nft -f - exited 1: boom")
            self.transactions.append(tx)

        async def list_(kind: str) -> list[str]:
            return self.kernel_chains if kind == "chains" else []

        self.nftables.run = run  # type: ignore[method-assign]
        self.nftables.list = list_  # type: ignore[method-assign]

    @property
    def last(self) -> list[str]:
        return self.transactions[-1].lines

    async def start(self) -> None:
        await self.on_services_synced()
        await self.on_endpoint_slices_synced()


def spn(name: str, ns: str = "ns") -> ServicePortName:
    return ServicePortName(NamespacedName(ns, name), "http", "TCP")


def chain(prefix: str, name: str) -> str:
    return prefix + service_port_chain_name_base(spn(name))


def ep_chain(name: str, ep: str) -> str:
    return "endpoint-" + endpoint_chain_name_base(spn(name), ep)


def rules(lines: list[str], chain_name: str) -> list[str]:
    head = f"add rule ip kube-proxy {chain_name} "
    return [line[len(head):] for line in lines if line.startswith(head)]


def elements(lines: list[str], container: str, op: str = "add") -> list[str]:
    head = f"{op} element ip kube-proxy {container} {{ "
    return [line[len(head):-2] for line in lines if line.startswith(head)]


async def test_chain_names_follow_upstream() -> None:
    # the hash prefix is base32(sha256(name))[:8], as upstream's hashAndTruncate
    assert service_port_chain_name_base(spn("svc1", "ns1")).endswith("-ns1/svc1/tcp/http")
    assert len(service_port_chain_name_base(spn("svc1", "ns1")).split("-")[0]) == 8
    assert endpoint_chain_name_base(spn("svc1", "ns1"), "10.180.0.1:80").endswith("-ns1/svc1/tcp/http__10.180.0.1/80")


async def test_full_sync_cluster_ip() -> None:
    p = FakeProxier()
    p.on_service_add(service("web", "10.96.0.10"))
    p.on_endpoint_slice_update(endpoint_slice("web", [
        endpoint("10.244.1.11"), endpoint("10.244.1.12", node="node-b"), endpoint("10.244.1.13", ready=False),
    ]))
    await p.start()
    lines = p.last
    assert lines[0] == 'add table ip kube-proxy { comment "rules for kube-proxy" ; }'
    assert "add chain ip kube-proxy nat-prerouting { type nat hook prerouting priority -100 ; }" in lines
    assert "add rule ip kube-proxy nat-postrouting jump masquerading" in lines
    assert rules(lines, "masquerading") == ["mark and 0x004000 == 0 return", "mark set mark xor 0x004000",
                                            "masquerade fully-random"]
    assert rules(lines, "cluster-ips-check") == [
        'ip daddr @cluster-ips reject comment "Reject traffic to invalid ports of ClusterIPs"',
        'ip daddr { 10.96.0.0/12 } drop comment "Drop traffic to unallocated ClusterIPs"',
    ]
    assert elements(lines, "nodeport-ips") == ["10.199.0.1"]
    svc_chain = chain("service-", "web")
    assert elements(lines, "service-ips") == [f"10.96.0.10 . tcp . 80 : goto {svc_chain}"]
    assert elements(lines, "cluster-ips") == ["10.96.0.10"]
    ep1, ep2 = ep_chain("web", "10.244.1.11:8080"), ep_chain("web", "10.244.1.12:8080")
    assert rules(lines, svc_chain) == [
        "ip daddr 10.96.0.10 tcp dport 80 ip saddr != 10.244.0.0/16 jump mark-for-masquerade",
        f"numgen random mod 2 vmap {{ 0 : goto {ep1} , 1 : goto {ep2} }}",
    ]
    assert rules(lines, ep1) == ["ip saddr 10.244.1.11 jump mark-for-masquerade",
                                 "meta l4proto tcp dnat to 10.244.1.11:8080"]
    assert not any("10.244.1.13" in line for line in lines)  # not ready


async def test_serving_terminating_fallback() -> None:
    p = FakeProxier()
    p.on_service_add(service("web", "10.96.0.10"))
    p.on_endpoint_slice_update(endpoint_slice("web", [
        endpoint("10.244.1.11", ready=False, serving=True, terminating=True),
        endpoint("10.244.1.12", ready=False, serving=False, terminating=True),
    ]))
    await p.start()
    assert rules(p.last, chain("service-", "web"))[-1] == \
        f"numgen random mod 1 vmap {{ 0 : goto {ep_chain('web', '10.244.1.11:8080')} }}"
    # a ready endpoint appears: the terminating one is no longer used
    p.on_endpoint_slice_update(endpoint_slice("web", [
        endpoint("10.244.1.11", ready=False, serving=True, terminating=True), endpoint("10.244.1.14"),
    ]))
    await p.sync_proxy_rules()
    assert rules(p.last, chain("service-", "web"))[-1] == \
        f"numgen random mod 1 vmap {{ 0 : goto {ep_chain('web', '10.244.1.14:8080')} }}"
    assert f"flush chain ip kube-proxy {ep_chain('web', '10.244.1.11:8080')}" in p.last


async def test_no_endpoints_rejected() -> None:
    p = FakeProxier()
    p.on_service_add(service("np", "10.96.0.11", type="NodePort", port_extra={"nodePort": 30080}))
    await p.start()
    assert elements(p.last, "no-endpoint-services") == ['10.96.0.11 . tcp . 80 comment "ns/np:http" : goto reject-chain']
    assert elements(p.last, "no-endpoint-nodeports") == ['tcp . 30080 comment "ns/np:http" : goto reject-chain']
    assert elements(p.last, "service-ips") == []
    assert rules(p.last, "reject-chain") == ["reject"]
    # endpoints arrive: the reject elements go, the dispatch elements come, in one partial sync
    p.on_endpoint_slice_update(endpoint_slice("np", [endpoint("10.244.1.11")]))
    await p.sync_proxy_rules()
    lines = p.last
    assert not lines[0].startswith("add table")
    assert elements(lines, "no-endpoint-services", "delete") == ["10.96.0.11 . tcp . 80"]
    assert elements(lines, "no-endpoint-nodeports", "delete") == ["tcp . 30080"]
    assert elements(lines, "service-nodeports") == [f"tcp . 30080 : goto {chain('external-', 'np')}"]
    assert rules(lines, chain("external-", "np")) == ["jump mark-for-masquerade", f"goto {chain('service-', 'np')}"]


async def test_internal_traffic_policy_local() -> None:
    p = FakeProxier()
    p.on_service_add(service("web", "10.96.0.10", internalTrafficPolicy="Local"))
    p.on_endpoint_slice_update(endpoint_slice("web", [endpoint("10.244.2.11", node="node-b")]))
    await p.start()
    # endpoints elsewhere only: dropped, not rejected
    assert elements(p.last, "no-endpoint-services") == ['10.96.0.10 . tcp . 80 comment "ns/web:http" : drop']
    p.on_endpoint_slice_update(endpoint_slice("web", [endpoint("10.244.2.11", node="node-b"), endpoint("10.244.1.11")]))
    await p.sync_proxy_rules()
    local = chain("local-", "web")
    assert elements(p.last, "service-ips") == [f"10.96.0.10 . tcp . 80 : goto {local}"]
    assert rules(p.last, local)[-1] == f"numgen random mod 1 vmap {{ 0 : goto {ep_chain('web', '10.244.1.11:8080')} }}"
    assert f"add chain ip kube-proxy {chain('service-', 'web')}" not in p.last


async def test_external_traffic_policy_local() -> None:
    p = FakeProxier()
    p.on_service_add(service("np", "10.96.0.11", type="NodePort", externalTrafficPolicy="Local",
                             port_extra={"nodePort": 30080}))
    p.on_endpoint_slice_update(endpoint_slice("np", [endpoint("10.244.1.11"), endpoint("10.244.2.11", node="node-b")]))
    await p.start()
    ext, svc, local = chain("external-", "np"), chain("service-", "np"), chain("local-", "np")
    assert elements(p.last, "service-nodeports") == [f"tcp . 30080 : goto {ext}"]
    assert rules(p.last, ext) == [
        f'ip saddr 10.244.0.0/16 goto {svc} comment "short-circuit pod traffic"',
        'fib saddr type local jump mark-for-masquerade comment "masquerade local traffic"',
        f'fib saddr type local goto {svc} comment "short-circuit local traffic"',
        f"goto {local}",
    ]
    assert rules(p.last, svc)[-1].startswith("numgen random mod 2 ")
    assert rules(p.last, local)[-1] == f"numgen random mod 1 vmap {{ 0 : goto {ep_chain('np', '10.244.1.11:8080')} }}"
    # no local endpoint left: external traffic is dropped, ClusterIP traffic still served
    p.on_endpoint_slice_update(endpoint_slice("np", [endpoint("10.244.2.11", node="node-b")]))
    await p.sync_proxy_rules()
    assert elements(p.last, "no-endpoint-nodeports") == ['tcp . 30080 comment "ns/np:http" : drop']
    assert f"flush chain ip kube-proxy {local}" in p.last


async def test_session_affinity_client_ip() -> None:
    p = FakeProxier()
    p.on_service_add(service("web", "10.96.0.10", sessionAffinity="ClientIP",
                             sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}}))
    p.on_endpoint_slice_update(endpoint_slice("web", [endpoint("10.244.1.11"), endpoint("10.244.1.12")]))
    await p.start()
    ep1 = ep_chain("web", "10.244.1.11:8080")
    aff1 = "affinity-" + ep1.removeprefix("endpoint-")
    assert (f"add set ip kube-proxy {aff1} {{ type ipv4_addr ; flags dynamic,timeout ; timeout 60s ; }}"
            in p.last)
    assert rules(p.last, chain("service-", "web"))[1] == f"ip saddr @{aff1} goto {ep1}"
    assert rules(p.last, ep1)[1] == f"update @{aff1} {{ ip saddr }}"
    # affinity off: the sets are deleted
    p.on_service_update(None, service("web", "10.96.0.10"))
    await p.sync_proxy_rules()
    assert f"delete set ip kube-proxy {aff1}" in p.last


async def test_partial_sync_writes_only_deltas() -> None:
    p = FakeProxier()
    for i in range(50):
        p.on_service_add(service(f"s{i}", f"10.96.1.{i}"))
        p.on_endpoint_slice_update(endpoint_slice(f"s{i}", [endpoint(f"10.244.1.{i}"), endpoint(f"10.244.2.{i}")]))
    await p.start()
    full = len(p.last)
    p.on_endpoint_slice_update(endpoint_slice("s7", [endpoint("10.244.1.7"), endpoint("10.244.3.7")]))
    await p.sync_proxy_rules()
    lines = p.last
    assert len(lines) < full / 20
    assert all("s7" in line for line in lines), lines
    assert f"flush chain ip kube-proxy {ep_chain('s7', '10.244.2.7:8080')}" in lines
    assert elements(lines, "service-ips") == []  # the element did not change
    # the stale chain is deleted a second later, in the transaction before the next sync's
    stale = ep_chain("s7", "10.244.2.7:8080")
    p.stale_chains[stale] -= 2
    p.on_service_delete(service("s8", "10.96.1.8"))
    await p.sync_proxy_rules()
    assert p.transactions[-2].lines == [f"delete chain ip kube-proxy {stale}"]
    assert elements(p.last, "service-ips", "delete") == ["10.96.1.8 . tcp . 80"]
    assert elements(p.last, "cluster-ips", "delete") == ["10.96.1.8"]
    assert f"flush chain ip kube-proxy {chain('service-', 's8')}" in p.last


async def test_unchanged_updates_need_no_sync() -> None:
    p = FakeProxier()
    svc = service("web", "10.96.0.10")
    p.on_service_add(svc)
    await p.start()
    changed = service("web", "10.96.0.10")
    changed["metadata"]["labels"] = {"a": "b"}  # not a proxy-relevant change
    p.on_service_update(svc, changed)
    assert not p.service_changes.pending()
    p.on_service_update(svc, service("web", "10.96.0.10", port=81))
    p.on_service_update(svc, service("web", "10.96.0.10"))  # back to what was synced
    assert not p.service_changes.pending()


async def test_failed_sync_makes_next_one_full() -> None:
    p = FakeProxier()
    p.on_service_add(service("web", "10.96.0.10"))
    await p.start()
    p.on_endpoint_slice_update(endpoint_slice("web", [endpoint("10.244.1.11")]))
    p.fail_next = True
    await p.sync_proxy_rules()
    assert p.need_full_sync
    await p.sync_proxy_rules()
    assert p.last[0].startswith("add table")
    assert elements(p.last, "service-ips") == [f"10.96.0.10 . tcp . 80 : goto {chain('service-', 'web')}"]


@pytest.mark.parametrize("spec", [{"clusterIP": "None", "clusterIPs": ["None"]},
                                  {"type": "ExternalName", "externalName": "example.com"}])
async def test_skipped_services(spec: dict[str, Any]) -> None:
    p = FakeProxier()
    p.on_service_add(service("web", "10.96.0.10", **spec))
    await p.start()
    assert elements(p.last, "cluster-ips") == []


async def test_external_ips_and_load_balancer_source_ranges() -> None:
    p = FakeProxier()
    svc = service("lb", "10.96.0.20", type="LoadBalancer", externalIPs=["192.0.2.5"],
                  loadBalancerSourceRanges=["198.51.100.0/24"], port_extra={"nodePort": 30081})
    svc["status"] = {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}}
    p.on_service_add(svc)
    p.on_endpoint_slice_update(endpoint_slice("lb", [endpoint("10.244.1.11")]))
    await p.start()
    ext, fw = chain("external-", "lb"), chain("firewall-", "lb")
    assert sorted(elements(p.last, "service-ips")) == sorted([
        f"10.96.0.20 . tcp . 80 : goto {chain('service-', 'lb')}",
        f"192.0.2.5 . tcp . 80 : goto {ext}", f"203.0.113.7 . tcp . 80 : goto {ext}",
    ])
    assert elements(p.last, "firewall-ips") == [f'203.0.113.7 . tcp . 80 comment "ns/lb:http" : goto {fw}']
    assert rules(p.last, fw) == ["ip saddr != { 198.51.100.0/24 } drop"]


async def test_bounded_frequency_runner_folds_requests() -> None:
    runs: list[float] = []
    runner = BoundedFrequencyRunner("test", lambda: runs.append(time.monotonic()), 0.1, 60.0)
    task = asyncio.create_task(runner.loop())
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 0.5:  # a request every 10 ms for half a second
            runner.run()
            await asyncio.sleep(0.01)
        deadline = time.monotonic() + 2
        while runner._wake.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
    # a burst of 2, then at most one run per 0.1 s: ~50 requests folded into ~6 runs
    assert 3 <= len(runs) <= 9, runs
    assert all(b - a >= 0.08 for a, b in zip(runs[1:], runs[2:], strict=False))
