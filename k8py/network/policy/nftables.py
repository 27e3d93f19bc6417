"""A :class:`~k8py.network.policy.ruleset.Ruleset` as nftables, and the script that moves the kernel to it.

Everything lives in the table ``inet k8py-netpol``::

    map ingress-pods { type ipv4_addr : verdict }      # local pod IP -> goto its ingress chain
    map egress-pods  { type ipv4_addr : verdict }      # local pod IP -> goto its egress chain
    chain forward-ingress { type filter hook forward priority filter; policy accept;
        ct state established,related accept
        ip daddr vmap @ingress-pods }
    chain forward-egress  { ... ip saddr vmap @egress-pods }
    chain pod-in-HASH-ns/pod { jump pol-in-HASH-ns/policy; ...; drop }
    chain pol-in-HASH-ns/policy { ip saddr @peer-HASH tcp dport { 80, 8000-8080 } accept; ... }
    set peer-HASH { type ipv4_addr }  set cidr-HASH { ...; flags interval }
    set port-NAME { type ipv4_addr . inet_proto . inet_service }

Ingress and egress are two base chains on the same hook: ``accept`` ends only the base chain
it is in, so a packet between two isolated pods must pass the egress chain of its source and
then the ingress chain of its destination; ``drop`` is final.  Replies of accepted
connections pass both (conntrack).

Why the ``forward`` hook of the ``inet`` family: pods hang off the node's Linux bridge (the CNI
``bridge`` plugin), so traffic between two pods of one node is bridged, not routed.  The
``bridge`` family sees it, but has no conntrack unless the kernel has ``nf_conntrack_bridge``
(often absent), and would see traffic to a Service address before kube-proxy's DNAT.
``br_netfilter`` with ``net.bridge.bridge-nf-call-iptables=1`` (which kube-proxy with a bridge
CNI needs anyway, and kubeadm's preflight requires) passes bridged IPv4 through the ``inet``
hooks, so one ``forward`` chain sees pod-to-pod traffic on the bridge, routed traffic to and
from other nodes, and Service traffic after DNAT.  Traffic between a pod and its own node
(kubelet probes, node-local agents) goes through ``output``/``input`` and is not filtered.

:func:`sync_script` writes one ``nft -f`` transaction: from nothing, the whole table (deleting
any old one in the same transaction, so the switch is atomic); otherwise only the difference:
set elements added and deleted, chains created, rewritten (flush + rules) only when their
rules changed, or deleted, map entries changed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from k8py.network.policy.ruleset import Direction, IPSet, Match, Ruleset

TABLE = "k8py-netpol"
FAMILY = "inet"
DISPATCH_MAPS: dict[Direction, str] = {"ingress": "ingress-pods", "egress": "egress-pods"}
BASE_CHAINS: dict[Direction, str] = {"ingress": "forward-ingress", "egress": "forward-egress"}
PROTOCOL_NAMES = {6: "tcp", 17: "udp", 132: "sctp"}
ELEMENTS_PER_LINE = 1000


@dataclass(slots=True)
class Applied:
    """The table's content as written: sets, chains (rule texts), dispatch maps."""

    sets: dict[str, IPSet] = field(default_factory=dict)
    chains: dict[str, tuple[str, ...]] = field(default_factory=dict)
    dispatch: dict[Direction, dict[str, str]] = field(default_factory=lambda: {"ingress": {}, "egress": {}})


def render_match(match: Match, direction: Direction) -> str:
    parts = []
    if match.peer_set is not None:
        parts.append(f"ip {'saddr' if direction == 'ingress' else 'daddr'} @{match.peer_set}")
    if match.protocol is not None:
        if match.ports:
            ranges = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in match.ports)
            parts.append(f"{PROTOCOL_NAMES[match.protocol]} dport {{ {ranges} }}")
        else:
            parts.append(f"meta l4proto {match.protocol}")
    if match.named_port is not None:
        parts.append(f"ip daddr . meta l4proto . th dport @{match.named_port}")
    parts.append("accept")
    return " ".join(parts)


def render(ruleset: Ruleset) -> Applied:
    """The nftables form of ``ruleset``."""
    chains = {
        name: tuple(render_match(m, chain.direction) for m in chain.matches)
        for name, chain in ruleset.policy_chains.items()
    }
    for name, targets in ruleset.pod_chains.items():
        chains[name] = (*(f"jump {t}" for t in targets), "drop")
    return Applied(dict(ruleset.sets), chains, {d: dict(entries) for d, entries in ruleset.dispatch.items()})


def sync_script(old: Applied | None, new: Applied) -> str:
    """The transaction taking the table from ``old`` (None: unknown or absent) to ``new``."""
    t = f"{FAMILY} {TABLE}"
    lines: list[str] = []
    if old is None:
        old = Applied()
        lines += [f"add table {t}", f"delete table {t}", f"add table {t}"]
        for direction, map_name in DISPATCH_MAPS.items():
            field_ = "daddr" if direction == "ingress" else "saddr"
            chain = BASE_CHAINS[direction]
            lines += [
                f"add map {t} {map_name} {{ type ipv4_addr : verdict ; }}",
                f"add chain {t} {chain} {{ type filter hook forward priority filter ; policy accept ; }}",
                f"add rule {t} {chain} ct state established,related accept",
                f"add rule {t} {chain} ip {field_} vmap @{map_name}",
            ]
    # sets first: rules refer to them
    for name, s in new.sets.items():
        before = old.sets.get(name)
        if before is None:
            flags = " flags interval ;" if s.interval else ""
            lines.append(f"add set {t} {name} {{ type {s.type} ;{flags} }}")
            lines += _elements("add", t, name, sorted(s.elements))
        else:
            lines += _elements("delete", t, name, sorted(before.elements - s.elements))
            lines += _elements("add", t, name, sorted(s.elements - before.elements))
    # chains: create all new ones before writing any rule, since rules jump between them
    lines += [f"add chain {t} {name}" for name in new.chains if name not in old.chains]
    for name, rules in new.chains.items():
        before_rules = old.chains.get(name)
        if before_rules == rules:
            continue
        if before_rules is not None:
            lines.append(f"flush chain {t} {name}")
        lines += [f"add rule {t} {name} {rule}" for rule in rules]
    for direction, map_name in DISPATCH_MAPS.items():
        was, now = old.dispatch[direction], new.dispatch[direction]
        gone = [ip for ip, chain in was.items() if now.get(ip) != chain]
        lines += _elements("delete", t, map_name, gone)
        lines += _elements(
            "add", t, map_name, [f"{ip} : goto {c}" for ip, c in now.items() if was.get(ip) != c]
        )
    stale = [name for name in old.chains if name not in new.chains]
    lines += [f"flush chain {t} {name}" for name in stale]
    lines += [f"delete chain {t} {name}" for name in stale]
    lines += [f"delete set {t} {name}" for name in old.sets if name not in new.sets]
    return "".join(line + "\n" for line in lines)


def _elements(verb: str, table: str, name: str, elements: Sequence[str]) -> list[str]:
    return [
        f"{verb} element {table} {name} {{ {', '.join(elements[i : i + ELEMENTS_PER_LINE])} }}"
        for i in range(0, len(elements), ELEMENTS_PER_LINE)
    ]


class NFTables:
    """Runs ``nft`` (``command``, e.g. ``("ip", "netns", "exec", "n1", "nft")``) on scripts."""

    def __init__(self, command: Iterable[str] = ("nft",)) -> None:
        self.command = tuple(command)

    async def run(self, script: str, *args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            *self.command,
            *args,
            "-f",
            "-",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate(script.encode())
        if proc.returncode != 0:
            raise NFTError(
                f"{' '.join(self.command)} -f -: exit {proc.returncode}: {err.decode(errors='replace').strip()}"
            )
        return out.decode()

    async def delete_table(self) -> None:
        """Delete the table if it exists."""
        await self.run(f"add table {FAMILY} {TABLE}\ndelete table {FAMILY} {TABLE}\n")

    async def list_table(self) -> str:
        return await self.run(f"list table {FAMILY} {TABLE}\n")


class NFTError(RuntimeError):
    """``nft`` failed; the transaction changed nothing."""
