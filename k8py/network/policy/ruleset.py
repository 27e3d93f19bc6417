"""What the packet filter must hold for a set of NetworkPolicies: a pure function of the objects.

:func:`compute_ruleset` turns Pods, Namespaces and NetworkPolicies (the informers' caches) into
a :class:`Ruleset`, the intermediate form :mod:`k8py.network.policy.nftables` renders and diffs.
Its shape keeps the rule count independent of how many pods a policy's peers select:

* every distinct *peer* (a ``podSelector`` in the policy's namespace, a ``namespaceSelector``,
  both combined, or an ``ipBlock``) becomes one named set, shared by every policy that has the
  same peer (Calico's selector IP sets): pod IPs, or the ``ipBlock``'s CIDR minus its
  ``except`` blocks as disjoint prefixes;
* every named port a policy uses becomes one set of ``pod IP . protocol . port`` over all pods
  that declare a container port of that name, so that the name resolves per destination pod
  (for ingress the selected pod, for egress the peer);
* every policy becomes one chain per direction, one rule per (peer, port group) of each of its
  rules, accepting what the rule allows;
* every pod of this node selected by a policy for a direction gets a chain that jumps to each
  selecting policy's chain and then drops (the pod is isolated); a verdict map keyed by pod IP
  sends traffic to it.  Pods no policy selects have no entry and are not isolated.

Semantics as upstream (networking.k8s.io/v1 and its e2e suite): ``policyTypes`` defaults to
Ingress, plus Egress when the policy has egress rules; an empty rule list isolates without
allowing anything (default deny); a rule with no peers allows every source/destination, with
no ports every port; ``protocol`` defaults to TCP; ``endPort`` makes a range.  Pods without an
IP, finished pods and ``hostNetwork`` pods are neither selected nor peers.  IPv4 only: IPv6
pod addresses and IPv6 ``ipBlock``s are ignored.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from k8py.api.selectors import LabelSelector

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Direction = Literal["ingress", "egress"]

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
PROTOCOL_NUMBERS = {"TCP": 6, "UDP": 17, "SCTP": 132}
MAX_NAME = 200  # nftables object names are at most 255 bytes

IP_TYPE = "ipv4_addr"
NAMED_PORT_TYPE = "ipv4_addr . inet_proto . inet_service"


@dataclass(frozen=True, slots=True)
class IPSet:
    """A named nftables set: ``type``, interval flag, and its elements as nft writes them."""

    type: str
    elements: frozenset[str]
    interval: bool = False


@dataclass(frozen=True, slots=True)
class Match:
    """One rule of a policy chain: accept when every given part matches (None: any).

    ``peer_set`` holds the peer addresses (source for ingress, destination for egress);
    ``ports`` are destination port ranges of ``protocol``; ``named_port`` a named-port set
    that the destination address, protocol and port must be in.
    """

    peer_set: str | None = None
    protocol: int | None = None
    ports: tuple[tuple[int, int], ...] = ()
    named_port: str | None = None


@dataclass(frozen=True, slots=True)
class PolicyChain:
    direction: Direction
    matches: tuple[Match, ...]


@dataclass(slots=True)
class Ruleset:
    """The desired state; see the module docstring.

    ``pod_chains`` maps a pod chain to the policy chains it jumps to (then it drops);
    ``dispatch[direction]`` maps a local pod IP to its chain for that direction.
    """

    sets: dict[str, IPSet] = field(default_factory=dict)
    policy_chains: dict[str, PolicyChain] = field(default_factory=dict)
    pod_chains: dict[str, tuple[str, ...]] = field(default_factory=dict)
    dispatch: dict[Direction, dict[str, str]] = field(default_factory=lambda: {"ingress": {}, "egress": {}})


@dataclass(frozen=True, slots=True)
class PodInfo:
    namespace: str
    name: str
    node: str
    labels: Mapping[str, str]
    ips: tuple[str, ...]
    ports: tuple[tuple[str, int, int], ...]  # (name, protocol number, containerPort)


def object_name(prefix: str, key: str, *, readable: bool = True) -> str:
    """A valid, unique nftables name for ``key``: ``prefix-HASH-key`` (kube-proxy's style), bounded.

    The hash keeps truncated names unique; ``readable=False`` leaves the key out (selectors).
    """
    digest = base64.b32encode(hashlib.sha256(key.encode()).digest()).decode()
    return f"{prefix}-{digest[:8]}-{key}"[:MAX_NAME] if readable else f"{prefix}-{digest[:16]}"


def pod_info(pod: Obj) -> PodInfo | None:
    """What policies need of a pod, or None when the pod takes no part (no IP, finished, host network)."""
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    if spec.get("hostNetwork") or status.get("phase") in ("Succeeded", "Failed"):
        return None
    addresses = [a.get("ip", "") for a in status.get("podIPs") or []] or [status.get("podIP") or ""]
    ips = tuple(ip for ip in addresses if _is_ipv4(ip))
    if not ips:
        return None
    ports = tuple(
        (p["name"], PROTOCOL_NUMBERS.get(p.get("protocol") or "TCP", 6), int(p["containerPort"]))
        for c in spec.get("containers") or []
        for p in c.get("ports") or []
        if p.get("name") and p.get("containerPort")
    )
    meta = pod.get("metadata") or {}
    return PodInfo(
        meta.get("namespace", ""),
        meta.get("name", ""),
        spec.get("nodeName") or "",
        meta.get("labels") or {},
        ips,
        ports,
    )


def policy_types(spec: Mapping[str, Any]) -> set[str]:
    """``spec.policyTypes``, defaulted as the API server does when it is empty."""
    types = spec.get("policyTypes")
    if types:
        return set(types)
    return {"Ingress", "Egress"} if spec.get("egress") else {"Ingress"}


def compute_ruleset(
    pods: Iterable[Obj], namespaces: Iterable[Obj], policies: Iterable[Obj], node_name: str
) -> Ruleset:
    """The desired state for node ``node_name``: peers cluster-wide, dispatch for its own pods."""
    return _Builder(pods, namespaces).build(policies, node_name)


class _Builder:
    def __init__(self, pods: Iterable[Obj], namespaces: Iterable[Obj]) -> None:
        self.pods = [info for info in map(pod_info, pods) if info is not None]
        self.pods_by_namespace: dict[str, list[int]] = {}  # indexes into self.pods
        for i, p in enumerate(self.pods):
            self.pods_by_namespace.setdefault(p.namespace, []).append(i)
        self.ns_labels: dict[str, dict[str, str]] = {}
        for ns in namespaces:
            name = ns["metadata"]["name"]
            self.ns_labels[name] = {**(ns["metadata"].get("labels") or {}), NAMESPACE_NAME_LABEL: name}
        self.ruleset = Ruleset()

    def namespace_labels(self, namespace: str) -> dict[str, str]:
        # A namespace the informer has not seen yet still has its automatic name label.
        return self.ns_labels.get(namespace) or {NAMESPACE_NAME_LABEL: namespace}

    def build(self, policies: Iterable[Obj], node_name: str) -> Ruleset:
        rs = self.ruleset
        selecting: dict[tuple[Direction, int], list[str]] = {}  # (direction, index in self.pods)
        for policy in policies:
            meta, spec = policy["metadata"], policy.get("spec") or {}
            key = f"{meta['namespace']}/{meta['name']}"
            types = policy_types(spec)
            selector = _selector(spec.get("podSelector"))
            local = [
                i
                for i in self.pods_by_namespace.get(meta["namespace"], ())
                if self.pods[i].node == node_name and selector.matches(self.pods[i].labels)
            ]
            directions: tuple[tuple[Direction, str], ...] = (("ingress", "Ingress"), ("egress", "Egress"))
            for direction, type_ in directions:
                if type_ not in types:
                    continue
                chain = object_name("pol-in" if direction == "ingress" else "pol-eg", key)
                rs.policy_chains[chain] = PolicyChain(
                    direction, self.policy_matches(meta["namespace"], spec.get(direction) or [], direction)
                )
                for index in local:
                    selecting.setdefault((direction, index), []).append(chain)
        for (direction, index), chains in selecting.items():
            pod = self.pods[index]
            pod_chain = object_name(
                "pod-in" if direction == "ingress" else "pod-eg", f"{pod.namespace}/{pod.name}"
            )
            rs.pod_chains[pod_chain] = tuple(sorted(chains))
            for ip in pod.ips:
                rs.dispatch[direction][ip] = pod_chain
        return rs

    def policy_matches(self, namespace: str, rules: list[Obj], direction: Direction) -> tuple[Match, ...]:
        matches: list[Match] = []
        for rule in rules:
            peers = rule.get("from" if direction == "ingress" else "to") or []
            peer_sets: list[str | None] = [self.peer_set(namespace, peer) for peer in peers] or [None]
            for port_match in self.port_matches(rule.get("ports") or []):
                for peer_set in peer_sets:
                    if peer_set is not None or not peers:
                        matches.append(Match(peer_set, *port_match))
        return tuple(dict.fromkeys(matches))  # identical rules once, in order

    def port_matches(
        self, ports: list[Obj]
    ) -> list[tuple[int | None, tuple[tuple[int, int], ...], str | None]]:
        """(protocol, port ranges, named-port set) per group of the rule's ports; any port if none."""
        if not ports:
            return [(None, (), None)]
        ranges: dict[int, list[tuple[int, int]]] = {}
        out: list[tuple[int | None, tuple[tuple[int, int], ...], str | None]] = []
        for port in ports:
            proto = PROTOCOL_NUMBERS.get(port.get("protocol") or "TCP")
            if proto is None:
                continue
            number = port.get("port")
            if number is None:
                out.append((proto, (), None))
            elif isinstance(number, str) and not number.isdigit():
                out.append((proto, (), self.named_port_set(number)))
            else:
                first = int(number)
                ranges.setdefault(proto, []).append((first, max(first, int(port.get("endPort") or first))))
        return [(proto, tuple(sorted(set(r))), None) for proto, r in sorted(ranges.items())] + out

    def peer_set(self, namespace: str, peer: Obj) -> str | None:
        """The set holding ``peer``'s addresses (made on first use), None for a peer of no known kind."""
        if (block := peer.get("ipBlock")) is not None:
            return self.ip_block_set(block)
        pod_sel, ns_sel = peer.get("podSelector"), peer.get("namespaceSelector")
        if pod_sel is None and ns_sel is None:
            return None
        key = orjson.dumps(
            {"namespace": namespace if ns_sel is None else None, "pods": pod_sel, "namespaces": ns_sel},
            option=orjson.OPT_SORT_KEYS,
        ).decode()
        name = object_name("peer", key, readable=False)
        if name not in self.ruleset.sets:
            pods = _selector(pod_sel if pod_sel is not None else {})
            namespaces = _selector(ns_sel) if ns_sel is not None else None
            if namespaces is None:
                candidates = self.pods_by_namespace.get(namespace, [])
            else:
                candidates = [
                    i
                    for ns, indexes in self.pods_by_namespace.items()
                    if namespaces.matches(self.namespace_labels(ns))
                    for i in indexes
                ]
            ips = {ip for i in candidates if pods.matches(self.pods[i].labels) for ip in self.pods[i].ips}
            self.ruleset.sets[name] = IPSet(IP_TYPE, frozenset(ips))
        return name

    def ip_block_set(self, block: Obj) -> str | None:
        try:
            cidr = ipaddress.ip_network(block.get("cidr", ""), strict=False)
            excepts = [ipaddress.ip_network(e, strict=False) for e in block.get("except") or []]
        except ValueError:
            log.warning("ignoring invalid ipBlock %s", block)
            return None
        if not isinstance(cidr, ipaddress.IPv4Network):
            return None
        nets: list[ipaddress.IPv4Network] = [cidr]
        for ex in excepts:
            if isinstance(ex, ipaddress.IPv4Network):
                nets = [rest for net in nets for rest in _exclude(net, ex)]
        key = orjson.dumps([str(cidr), sorted(str(e) for e in excepts)]).decode()
        name = object_name("cidr", key, readable=False)
        self.ruleset.sets[name] = IPSet(IP_TYPE, frozenset(map(str, nets)), interval=True)
        return name

    def named_port_set(self, port_name: str) -> str:
        name = f"port-{port_name}"[:MAX_NAME]
        if name not in self.ruleset.sets:
            self.ruleset.sets[name] = IPSet(
                NAMED_PORT_TYPE,
                frozenset(
                    f"{ip} . {proto} . {number}"
                    for p in self.pods
                    for (pname, proto, number) in p.ports
                    if pname == port_name
                    for ip in p.ips
                ),
            )
        return name


def _exclude(net: ipaddress.IPv4Network, ex: ipaddress.IPv4Network) -> list[ipaddress.IPv4Network]:
    if ex.supernet_of(net):
        return []
    if not net.supernet_of(ex):
        return [net]
    return sorted(net.address_exclude(ex))


def _selector(obj: Mapping[str, Any] | None) -> LabelSelector:
    """metav1.LabelSelectorAsSelector; an invalid selector (the API server rejects those) selects nothing."""
    try:
        return LabelSelector.from_label_selector(obj)
    except Exception:
        return LabelSelector.nothing()


def _is_ipv4(address: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(address), ipaddress.IPv4Address)
    except ValueError:
        return False
