"""The NetworkPolicy desired state (pure): semantics through a packet evaluator, and the nft diffs."""

from __future__ import annotations

import ipaddress
from typing import Any

from k8py.network.policy.nftables import render, sync_script
from k8py.network.policy.ruleset import PROTOCOL_NUMBERS, Match, Ruleset, compute_ruleset

NODE = "node-1"


def ns(name: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name, **labels}}}


def pod(
    namespace: str,
    name: str,
    ip: str,
    *,
    node: str = NODE,
    ports: dict[str, int] | None = None,
    udp_ports: dict[str, int] | None = None,
    phase: str = "Running",
    host_network: bool = False,
    **labels: str,
) -> dict[str, Any]:
    container_ports = [{"name": n, "containerPort": p} for n, p in (ports or {}).items()]
    container_ports += [
        {"name": n, "containerPort": p, "protocol": "UDP"} for n, p in (udp_ports or {}).items()
    ]
    return {
        "metadata": {"namespace": namespace, "name": name, "labels": labels},
        "spec": {
            "nodeName": node,
            "hostNetwork": host_network,
            "containers": [{"name": "c", "ports": container_ports}],
        },
        "status": {"phase": phase, "podIP": ip, "podIPs": [{"ip": ip}] if ip else []},
    }


def policy(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    spec.setdefault("podSelector", {})
    return {"metadata": {"namespace": namespace, "name": name}, "spec": spec}


def _peer_has(rs: Ruleset, set_name: str, ip: str) -> bool:
    s = rs.sets[set_name]
    if s.interval:
        return any(ipaddress.ip_address(ip) in ipaddress.ip_network(e) for e in s.elements)
    return ip in s.elements


def _matches(rs: Ruleset, m: Match, direction: str, src: str, dst: str, proto: str, port: int) -> bool:
    number = PROTOCOL_NUMBERS[proto]
    if m.peer_set is not None and not _peer_has(rs, m.peer_set, src if direction == "ingress" else dst):
        return False
    if m.protocol is not None and m.protocol != number:
        return False
    if m.ports and not any(lo <= port <= hi for lo, hi in m.ports):
        return False
    return m.named_port is None or f"{dst} . {number} . {port}" in rs.sets[m.named_port].elements


def allowed(rs: Ruleset, src: str, dst: str, port: int = 80, proto: str = "TCP") -> bool:
    """What the table does with a new connection, from the ruleset (egress of src, then ingress of dst)."""
    for direction, ip in (("egress", src), ("ingress", dst)):
        chain = rs.dispatch[direction].get(ip)  # type: ignore[index]
        if chain is None:
            continue
        policy_chains = [rs.policy_chains[name] for name in rs.pod_chains[chain]]
        if not any(
            _matches(rs, m, direction, src, dst, proto, port) for pc in policy_chains for m in pc.matches
        ):
            return False
    return True


A1, A2, B1, C1, REMOTE = "10.198.1.2", "10.198.1.3", "10.198.1.4", "10.198.1.5", "10.198.2.2"
NAMESPACES = [ns("a", team="a"), ns("b", team="b"), ns("c")]


def pods() -> list[dict[str, Any]]:
    return [
        pod("a", "a1", A1, app="web", ports={"http": 8080}),
        pod("a", "a2", A2, app="db", ports={"http": 9090}),
        pod("b", "b1", B1, app="web"),
        pod("c", "c1", C1, app="client"),
        pod("a", "remote", REMOTE, node="node-2", app="web", ports={"http": 7070}),
    ]


def compute(*policies: dict[str, Any], pod_list: list[dict[str, Any]] | None = None) -> Ruleset:
    return compute_ruleset(pods() if pod_list is None else pod_list, NAMESPACES, policies, NODE)


def test_no_policy_allows_everything() -> None:
    rs = compute()
    assert rs.dispatch == {"ingress": {}, "egress": {}} and not rs.pod_chains
    assert allowed(rs, B1, A1) and allowed(rs, A1, REMOTE)


def test_default_deny_ingress_isolates_only_the_namespace() -> None:
    rs = compute(policy("a", "deny", policyTypes=["Ingress"]))
    assert not allowed(rs, B1, A1) and not allowed(rs, A2, A1)
    assert allowed(rs, A1, B1)  # egress is not isolated, and b1 is not selected
    assert allowed(rs, A1, REMOTE)  # a pod of another node: its own node enforces
    assert set(rs.dispatch["ingress"]) == {A1, A2} and rs.dispatch["egress"] == {}


def test_policy_types_default() -> None:
    # no policyTypes, no egress rules: an Ingress policy only
    rs = compute(policy("a", "p", ingress=[]))
    assert not allowed(rs, B1, A1) and allowed(rs, A1, B1)
    # egress rules present: Ingress and Egress
    rs = compute(policy("a", "p", egress=[{"to": [{"podSelector": {}}]}]))
    assert not allowed(rs, B1, A1) and not allowed(rs, A1, B1) and allowed(rs, A1, REMOTE, 1234)
    assert not allowed(rs, A1, A2)  # egress allowed, but a2 is isolated for ingress too
    # explicit Egress only: ingress stays open
    rs = compute(policy("a", "p", policyTypes=["Egress"]))
    assert allowed(rs, B1, A1) and not allowed(rs, A1, B1) and not allowed(rs, A1, REMOTE)


def test_allow_all_rule_and_empty_peers() -> None:
    rs = compute(policy("a", "deny", policyTypes=["Ingress"]), policy("a", "all", ingress=[{}]))
    assert allowed(rs, B1, A1, 1) and allowed(rs, "192.0.2.1", A2, 443, "UDP")
    rs = compute(policy("a", "all", ingress=[{"from": [], "ports": []}]))
    assert allowed(rs, C1, A1)


def test_pod_selector_peer_is_namespace_local() -> None:
    rs = compute(
        policy(
            "a",
            "p",
            podSelector={"matchLabels": {"app": "db"}},
            ingress=[{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}]}],
        )
    )
    assert allowed(rs, A1, A2) and allowed(rs, REMOTE, A2)  # peers are cluster-wide
    assert not allowed(rs, B1, A2)  # app=web, but in namespace b
    assert allowed(rs, B1, A1)  # a1 is not selected


def test_namespace_selector_peer_and_combination() -> None:
    by_ns = {"namespaceSelector": {"matchLabels": {"team": "b"}}}
    rs = compute(policy("a", "p", ingress=[{"from": [by_ns]}]))
    assert allowed(rs, B1, A1) and not allowed(rs, C1, A1) and not allowed(rs, A2, A1)
    # namespaceSelector AND podSelector (one peer) ...
    both = {**by_ns, "podSelector": {"matchLabels": {"app": "db"}}}
    rs = compute(policy("a", "p", ingress=[{"from": [both]}]))
    assert not allowed(rs, B1, A1)
    # ... versus two peers (OR)
    rs = compute(
        policy("a", "p", ingress=[{"from": [by_ns, {"podSelector": {"matchLabels": {"app": "db"}}}]}])
    )
    assert allowed(rs, B1, A1) and allowed(rs, A2, A1) and not allowed(rs, C1, A1)
    # empty namespaceSelector: every namespace
    rs = compute(policy("a", "p", ingress=[{"from": [{"namespaceSelector": {}}]}]))
    assert allowed(rs, C1, A1) and not allowed(rs, "192.0.2.1", A1)


def test_namespace_label_change_moves_pods_in_and_out() -> None:
    rule = {"from": [{"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "Exists"}]}}]}
    pol = policy("a", "p", ingress=[rule])
    assert not allowed(compute(pol), C1, A1)
    rs = compute_ruleset(pods(), [*NAMESPACES[:2], ns("c", team="c")], [pol], NODE)
    assert allowed(rs, C1, A1)


def test_ip_block_with_except() -> None:
    block = {"ipBlock": {"cidr": "10.198.0.0/16", "except": ["10.198.1.4/32", "10.198.2.0/24"]}}
    rs = compute(policy("a", "p", ingress=[{"from": [block]}]))
    assert allowed(rs, A2, A1) and allowed(rs, "10.198.200.1", A1)
    assert not allowed(rs, B1, A1) and not allowed(rs, REMOTE, A1) and not allowed(rs, "10.199.0.1", A1)
    [cidr_set] = [s for s in rs.sets.values() if s.interval]
    nets = [ipaddress.ip_network(e) for e in cidr_set.elements]
    assert all(not a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1 :])
    # an except covering the whole block leaves nothing; IPv6 blocks are ignored
    rs = compute(
        policy(
            "a",
            "p",
            ingress=[
                {
                    "from": [
                        {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["0.0.0.0/0"]}},
                        {"ipBlock": {"cidr": "fd00::/8"}},
                    ]
                }
            ],
        )
    )
    assert not allowed(rs, A2, A1)


def test_ports_protocols_and_end_port() -> None:
    ports = [
        {"port": 80},
        {"protocol": "UDP", "port": 53},
        {"port": 8000, "endPort": 8080},
        {"protocol": "SCTP"},
    ]
    rs = compute(policy("a", "p", ingress=[{"ports": ports}]))
    assert allowed(rs, B1, A1, 80) and not allowed(rs, B1, A1, 80, "UDP")
    assert allowed(rs, B1, A1, 53, "UDP") and not allowed(rs, B1, A1, 53)
    assert allowed(rs, B1, A1, 8000) and allowed(rs, B1, A1, 8080) and not allowed(rs, B1, A1, 8081)
    assert allowed(rs, B1, A1, 9, "SCTP")


def test_named_port_resolves_per_destination_pod() -> None:
    rs = compute(policy("a", "p", ingress=[{"ports": [{"port": "http"}]}]))
    assert allowed(rs, B1, A1, 8080) and not allowed(rs, B1, A1, 9090)
    assert allowed(rs, B1, A2, 9090) and not allowed(rs, B1, A2, 8080)
    assert not allowed(rs, B1, A1, 8080, "UDP")  # the port is TCP
    # egress: the name resolves against the destination (peer) pod
    rs = compute(policy("c", "p", policyTypes=["Egress"], egress=[{"ports": [{"port": "http"}]}]))
    assert allowed(rs, C1, A2, 9090) and not allowed(rs, C1, A2, 8080) and allowed(rs, C1, REMOTE, 7070)
    assert not allowed(rs, C1, B1, 8080)  # b1 declares no such port


def test_named_udp_port() -> None:
    pod_list = [*pods(), pod("b", "dns", "10.198.1.9", udp_ports={"dns": 53})]
    rs = compute(
        policy("c", "p", policyTypes=["Egress"], egress=[{"ports": [{"protocol": "UDP", "port": "dns"}]}]),
        pod_list=pod_list,
    )
    assert allowed(rs, C1, "10.198.1.9", 53, "UDP") and not allowed(rs, C1, "10.198.1.9", 53)


def test_egress_rules() -> None:
    rs = compute(
        policy(
            "b",
            "p",
            policyTypes=["Egress"],
            egress=[
                {
                    "to": [
                        {
                            "namespaceSelector": {"matchLabels": {"team": "a"}},
                            "podSelector": {"matchLabels": {"app": "web"}},
                        }
                    ],
                    "ports": [{"port": 80}],
                },
                {"to": [{"ipBlock": {"cidr": "192.0.2.0/24"}}]},
            ],
        )
    )
    assert allowed(rs, B1, A1, 80) and allowed(rs, B1, REMOTE, 80)
    assert not allowed(rs, B1, A1, 81) and not allowed(rs, B1, A2, 80) and not allowed(rs, B1, C1)
    assert allowed(rs, B1, "192.0.2.7", 22)
    assert allowed(rs, A1, B1)  # b1's ingress is not isolated


def test_policies_add_up() -> None:
    rs = compute(
        policy("a", "from-b", ingress=[{"from": [{"namespaceSelector": {"matchLabels": {"team": "b"}}}]}]),
        policy(
            "a",
            "from-c",
            podSelector={"matchLabels": {"app": "web"}},
            ingress=[
                {"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "c"}}}]}
            ],
        ),
    )
    assert allowed(rs, B1, A1) and allowed(rs, C1, A1) and allowed(rs, B1, A2) and not allowed(rs, C1, A2)


def test_pods_that_take_no_part() -> None:
    pod_list = [
        pod("a", "a1", A1, app="web"),
        pod("a", "done", "10.198.1.20", phase="Succeeded", app="web"),
        pod("a", "pending", "", app="web"),
        pod("a", "host", "10.0.0.1", host_network=True, app="web"),
        pod("b", "b1", B1),
    ]
    rs = compute(policy("a", "p", ingress=[{"from": [{"podSelector": {}}]}]), pod_list=pod_list)
    assert set(rs.dispatch["ingress"]) == {A1}
    assert not allowed(rs, "10.198.1.20", A1) and not allowed(rs, "10.0.0.1", A1)
    [peer] = [s for name, s in rs.sets.items() if name.startswith("peer-")]
    assert peer.elements == {A1}


def test_peer_sets_are_shared_and_rules_do_not_grow_with_pods() -> None:
    rule = {"from": [{"namespaceSelector": {"matchLabels": {"team": "b"}}}], "ports": [{"port": 80}]}
    many = [*pods(), *(pod("b", f"b{i}", f"10.198.3.{i}") for i in range(1, 200))]
    rs = compute(policy("a", "p1", ingress=[rule]), policy("c", "p2", ingress=[rule]), pod_list=many)
    assert len([n for n in rs.sets if n.startswith("peer-")]) == 1
    assert sum(len(c.matches) for c in rs.policy_chains.values()) == 2


# ---- the nft script --------------------------------------------------------------------------------


def test_script_from_scratch_then_no_op() -> None:
    desired = render(
        compute(policy("a", "p", ingress=[{"from": [{"podSelector": {}}], "ports": [{"port": "http"}]}]))
    )
    script = sync_script(None, desired)
    assert script.startswith(
        "add table inet k8py-netpol\ndelete table inet k8py-netpol\nadd table inet k8py-netpol\n"
    )
    assert "ip daddr vmap @ingress-pods" in script and "ip saddr vmap @egress-pods" in script
    assert f"{A1} : goto pod-in-" in script
    assert sync_script(desired, desired) == ""


def test_script_pod_change_touches_only_elements() -> None:
    pol = policy("a", "p", ingress=[{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}]}])
    before = render(compute(pol))
    changed = pods()
    changed[1]["metadata"]["labels"]["app"] = "web"  # a2 joins the peer set
    after = render(compute(pol, pod_list=changed))
    lines = sync_script(before, after).splitlines()
    assert len(lines) == 1 and lines[0].startswith("add element inet k8py-netpol peer-") and A2 in lines[0]
    lines = sync_script(after, before).splitlines()
    assert len(lines) == 1 and lines[0].startswith("delete element") and A2 in lines[0]


def test_script_policy_change_rewrites_its_chain_only() -> None:
    p1 = policy("a", "p1", ingress=[{"ports": [{"port": 80}]}])
    p2 = policy("a", "p2", ingress=[{"ports": [{"port": 443}]}])
    before = render(compute(p1, p2))
    after = render(compute(policy("a", "p1", ingress=[{"ports": [{"port": 81}]}]), p2))
    lines = sync_script(before, after).splitlines()
    assert lines[0].startswith("flush chain inet k8py-netpol pol-in-") and "a/p1" in lines[0]
    assert lines[1:] == [lines[0].replace("flush chain", "add rule") + " tcp dport { 81 } accept"]


def test_script_removal_order() -> None:
    before = render(compute(policy("a", "p", ingress=[{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}])))
    lines = sync_script(before, render(compute())).splitlines()
    kinds = list(dict.fromkeys(" ".join(line.split()[:2]) for line in lines))
    # map entries first, then chains emptied, then deleted, then the sets they used
    assert kinds == ["delete element", "flush chain", "delete chain", "delete set"]
    assert sum(line.startswith("delete chain") for line in lines) == 3  # the policy's, a1's and a2's
