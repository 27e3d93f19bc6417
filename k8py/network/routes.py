"""A node's pod-network state in the kernel: host-gw routes, cluster and Service CIDR guards, SNAT.

What a node needs (flannel's host-gw backend, or Calico without BGP):

* for every other Node with a ``spec.podCIDR`` and an InternalIP, ``<podCIDR> via <InternalIP>``
  (the nodes share an L2 segment, so the peer's address is a directly reachable next hop);
* guards that keep a packet for a cluster or Service address with no more specific route on the
  node instead of letting it follow the default route off the machine.  For the cluster CIDR (a
  node not yet known) an ``unreachable`` route: the packet fails with an ICMP error, and a local
  connect() with EHOSTUNREACH.  The node's own podCIDR is the connected route of the CNI bridge,
  more specific than the guard;
* for the Service CIDR, not ``unreachable`` but ``<serviceCIDR> dev k8py-svc``, a route to
  :data:`SERVICE_LINK`: a link of type dummy, up and without an address (the ``kube-ipvs0`` of
  kube-proxy's IPVS mode; on a kernel built without the dummy driver, an ifb link, which drops
  alike whatever is routed to it).  A process on the node must reach ClusterIPs, and for a
  locally generated packet the route lookup happens in connect(), before the nat OUTPUT hook
  where kube-proxy DNATs the ClusterIP: an ``unreachable`` route would fail that connect() with
  EHOSTUNREACH, whereas a route to the dummy link lets the packet reach the hook, and after the
  DNAT the kernel routes it again, to the endpoint.  A ClusterIP kube-proxy does not translate
  is dropped silently on the node (as kube-proxy's own nftables mode drops unallocated
  ClusterIPs), from the node itself as from its pods;
* the nftables table ``ip k8py-nat``: masquerade of traffic from the cluster CIDR to anything
  outside it (and outside multicast), so that pod-to-pod traffic keeps its pod addresses while
  traffic leaving the cluster takes the node's address, as flannel's ``FLANNEL-POSTRTG``.

The routes the agent owns carry a routing protocol number of their own (:data:`RTPROT_K8PY`,
as bird marks its routes ``proto bird`` and Calico ``proto 80``): :class:`RouteTable` adds the
missing ones, deletes its own stale ones, and never touches a route with another protocol; it
also creates the Service link when missing (and sets it up: the kernel drops the routes of a
link that goes down).  Routes and links go through netlink (pyroute2); the NAT table and the
sysctl through the ``nft`` and ``sysctl`` binaries.  Everything takes ``netns``: a named network
namespace (``ip netns``) to act in instead of the caller's own, which is how the tests run
several nodes on one machine.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import os
import socket
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import rt_type

from k8py.client.cache import Obj

log = logging.getLogger(__name__)
T = TypeVar("T")

RTPROT_K8PY = 199  # routing protocol number of the agent's routes (unassigned in rtnetlink.h)
MAIN_TABLE = 254
RT_SCOPE_LINK = 253  # the scope of a route without gateway, as `ip route add <dst> dev <link>` gives it
RT_SCOPE_NOWHERE = 255  # in a delete: a route of any scope
NAT_TABLE = "k8py-nat"
MULTICAST = "224.0.0.0/4"
SERVICE_LINK = "k8py-svc"
# the link kinds that drop what is routed to them, in order of preference (ifb: no dummy driver)
SERVICE_LINK_KINDS = ("dummy", "ifb")


@dataclass(frozen=True, order=True)
class Route:
    """One IPv4 route in the main table to ``dst`` (a normalised CIDR): a unicast route either via
    ``gateway`` or, without a gateway, out of the link named ``dev``; or a route of another
    ``type`` (``unreachable``), which has neither."""

    dst: str
    gateway: str | None = None
    type: str = "unicast"
    dev: str | None = None

    def __str__(self) -> str:
        if self.type != "unicast":
            return f"{self.type} {self.dst}"
        return f"{self.dst} via {self.gateway}" if self.gateway is not None else f"{self.dst} dev {self.dev}"


def _network(cidr: str) -> str:
    return str(ipaddress.IPv4Network(cidr, strict=False))


def unreachable(cidr: str) -> Route:
    return Route(_network(cidr), type="unreachable")


def on_link(cidr: str, dev: str) -> Route:
    return Route(_network(cidr), dev=dev)


# ---- what the routes should be --------------------------------------------------------------------


def _ipv4(value: Any) -> ipaddress.IPv4Address | None:
    try:
        return ipaddress.IPv4Address(value)
    except ValueError:
        return None


def node_internal_ip(node: Obj) -> str | None:
    """The Node's first IPv4 InternalIP (status.addresses), if any."""
    for addr in node.get("status", {}).get("addresses") or ():
        if addr.get("type") == "InternalIP" and (ip := _ipv4(addr.get("address"))) is not None:
            return str(ip)
    return None


def node_pod_cidrs(node: Obj) -> list[str]:
    """The Node's IPv4 pod CIDRs (spec.podCIDRs, else spec.podCIDR), normalised."""
    spec = node.get("spec", {})
    cidrs: list[str] = []
    for value in spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else []):
        try:
            net = ipaddress.ip_network(value, strict=False)
        except ValueError:
            continue
        if net.version == 4:
            cidrs.append(str(net))
    return cidrs


def desired_routes(nodes: Iterable[Obj], node_name: str, *, cluster_cidr: str, service_cidr: str) -> set[Route]:
    """The routes the node ``node_name`` should have, given every Node (see the module docstring).

    A peer's podCIDR that overlaps this node's own is skipped (the bridge owns that range), and
    of two peers claiming one podCIDR the first by name wins: the kernel holds one route per
    destination.
    """
    nodes = sorted(nodes, key=lambda n: n["metadata"]["name"])
    own = [ipaddress.IPv4Network(c) for n in nodes if n["metadata"]["name"] == node_name for c in node_pod_cidrs(n)]
    routes = {r.dst: r for r in (unreachable(cluster_cidr), on_link(service_cidr, SERVICE_LINK))}
    for node in nodes:
        name = node["metadata"]["name"]
        gateway = node_internal_ip(node)
        if name == node_name or gateway is None:
            continue
        for cidr in node_pod_cidrs(node):
            net = ipaddress.IPv4Network(cidr)
            if any(net.overlaps(o) for o in own):
                log.warning("node %s: podCIDR %s overlaps this node's own; not routed", name, cidr)
                continue
            existing = routes.get(cidr)
            if existing is not None and existing.type == "unicast":
                log.warning("node %s: podCIDR %s is already routed: %s", name, cidr, existing)
                continue
            routes[cidr] = Route(cidr, gateway)
    return set(routes.values())


def nat_ruleset(cluster_cidr: str) -> str:
    """The ``nft -f`` script that (re)creates the NAT table atomically, in one transaction."""
    cidr = ipaddress.IPv4Network(cluster_cidr, strict=False)
    return (
        f"table ip {NAT_TABLE}\n"  # create-then-delete: replacing works whether or not it exists
        f"delete table ip {NAT_TABLE}\n"
        f"table ip {NAT_TABLE} {{\n"
        "\tchain postrouting {\n"
        "\t\ttype nat hook postrouting priority srcnat; policy accept;\n"
        f"\t\tip saddr {cidr} ip daddr != {{ {cidr}, {MULTICAST} }} masquerade fully-random\n"
        "\t}\n"
        "}\n"
    )


# ---- commands in a namespace --------------------------------------------------------------------


def netns_prefix(netns: str | None) -> list[str]:
    """The argv prefix that runs a command in the named network namespace (none: here)."""
    return ["ip", "netns", "exec", netns] if netns else []


async def run_command(argv: list[str], *, input: str | None = None) -> str:
    """Run ``argv``; its stdout, or RuntimeError with its stderr when it fails."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate(input.encode() if input is not None else None)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {proc.returncode}: {err.decode(errors='replace').strip()}")
    return out.decode()


async def enable_ip_forward(netns: str | None = None) -> None:
    """Forwarding on, and bridged pod traffic through the IP hooks (br_netfilter), so that the
    NetworkPolicy and kube-proxy rules see traffic between pods on the same node's bridge."""
    await run_command([*netns_prefix(netns), "sysctl", "-qw", "net.ipv4.ip_forward=1"])
    if Path("/proc/sys/net/bridge/bridge-nf-call-iptables").exists():
        await run_command([*netns_prefix(netns), "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"])


async def apply_nat(cluster_cidr: str, netns: str | None = None) -> None:
    """Install (or restore) the NAT table."""
    await run_command([*netns_prefix(netns), "nft", "-f", "-"], input=nat_ruleset(cluster_cidr))


async def delete_nat(netns: str | None = None) -> None:
    """Remove the NAT table if it exists."""
    script = f"table ip {NAT_TABLE}\ndelete table ip {NAT_TABLE}\n"
    await run_command([*netns_prefix(netns), "nft", "-f", "-"], input=script)


# ---- the routes in the kernel -------------------------------------------------------------------


class RouteTable:
    """The agent's routes in one network namespace's main table, and its links, over one netlink socket.

    Only IPv4 routes with protocol ``protocol`` are read, added and deleted.  The socket is
    pyroute2's synchronous ``IPRoute``, used from one thread of its own: its asyncio flavour
    needs a netlink datagram endpoint, which uvloop (the loop of ``k8py`` commands) cannot open.
    """

    def __init__(self, *, netns: str | None = None, protocol: int = RTPROT_K8PY) -> None:
        self.netns = netns
        self.protocol = protocol
        self._ipr: IPRoute | None = None
        self._executor: ThreadPoolExecutor | None = None

    async def _call(self, func: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            raise RuntimeError("RouteTable is not open")
        return await asyncio.get_running_loop().run_in_executor(self._executor, func, *args)

    async def open(self) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="netlink")
            # flags=0: never create a missing namespace (pyroute2's default); groups=0: no events
            self._ipr = await self._call(lambda: IPRoute(netns=self.netns, flags=0, groups=0))

    async def close(self) -> None:
        if self._executor is not None:
            if self._ipr is not None:
                await self._call(self._ipr.close)
            self._executor.shutdown()
            self._executor = self._ipr = None

    async def list(self) -> set[Route]:
        """The routes of ours in the kernel now."""
        return await self._call(self._list)

    async def reconcile(self, desired: set[Route]) -> list[tuple[Route, str]]:
        """Delete our routes not in ``desired``, then add the missing ones.

        Returns the routes that could not be added with the reason (a route of another owner to
        the same destination; a gateway not on a connected network; no link ``dev``); they are
        logged, and the caller tries again later.
        """
        return await self._call(self._reconcile, frozenset(desired))

    async def flush(self) -> None:
        """Delete every route of ours."""
        await self.reconcile(set())

    async def ensure_link(self, name: str, kinds: tuple[str, ...] = SERVICE_LINK_KINDS) -> bool:
        """Create the link ``name`` (of the first of ``kinds`` the kernel supports, no address) if
        missing, and set it up; False (logged) if it cannot be made."""
        return await self._call(self._ensure_link, name, kinds)

    async def delete_link(self, name: str) -> None:
        """Delete the link ``name`` (and with it the routes out of it) if it exists."""
        await self._call(self._delete_link, name)

    # ---- in the netlink thread ------------------------------------------------------------------

    def _list(self) -> set[Route]:
        assert self._ipr is not None
        routes: set[Route] = set()
        for msg in self._ipr.route("dump", family=socket.AF_INET):
            if msg.get("table") != MAIN_TABLE or msg["proto"] != self.protocol:
                continue
            dst = f"{msg.get('dst') or '0.0.0.0'}/{msg['dst_len']}"
            gateway, type_, oif = msg.get("gateway"), rt_type.get(msg["type"], str(msg["type"])), msg.get("oif")
            dev = self._link_name(oif) if type_ == "unicast" and gateway is None and oif else None
            routes.add(Route(dst, gateway, type_, dev))
        return routes

    def _link_name(self, index: int) -> str | None:
        assert self._ipr is not None
        try:
            return self._ipr.link("get", index=index)[0].get("ifname")
        except NetlinkError as e:
            if e.code != errno.ENODEV:
                raise
            return None  # deleted since the dump

    def _link_index(self, name: str) -> int | None:
        assert self._ipr is not None
        indexes = self._ipr.link_lookup(ifname=name)
        return indexes[0] if indexes else None

    def _request(self, command: str, route: Route) -> None:
        """Add or delete ``route``, with the scope ``ip route`` would use."""
        assert self._ipr is not None
        spec: dict[str, Any] = {"dst": route.dst, "table": MAIN_TABLE, "proto": self.protocol, "type": route.type}
        if route.gateway is not None:
            spec["gateway"] = route.gateway
        if route.dev is not None:
            if (index := self._link_index(route.dev)) is None:
                raise NetlinkError(errno.ENODEV, f"no link {route.dev}")
            spec["oif"] = index
        if command == "del":
            spec["scope"] = RT_SCOPE_NOWHERE
        elif route.dev is not None:
            spec["scope"] = RT_SCOPE_LINK
        self._ipr.route(command, **spec)

    def _reconcile(self, desired: frozenset[Route]) -> list[tuple[Route, str]]:
        assert self._ipr is not None
        current = self._list()
        for route in sorted(current - desired):
            try:
                self._request("del", route)
                log.info("deleted route %s", route)
            except NetlinkError as e:
                if e.code not in (errno.ESRCH, errno.ENODEV):  # gone already (with its link)
                    raise
        failed: list[tuple[Route, str]] = []
        for route in sorted(desired - current):
            try:
                self._request("add", route)
                log.info("added route %s", route)
            except NetlinkError as e:
                reason = "a route to this destination exists" if e.code == errno.EEXIST else os.strerror(e.code)
                log.warning("cannot add route %s: %s", route, reason)
                failed.append((route, reason))
        return failed

    def _ensure_link(self, name: str, kinds: tuple[str, ...]) -> bool:
        assert self._ipr is not None
        index = self._link_index(name)
        if index is None and (index := self._add_link(name, kinds)) is None:
            return False
        self._ipr.link("set", index=index, state="up")
        return True

    def _add_link(self, name: str, kinds: tuple[str, ...]) -> int | None:
        assert self._ipr is not None
        for kind in kinds:
            try:
                self._ipr.link("add", ifname=name, kind=kind)
            except NetlinkError as e:
                if e.code == errno.EOPNOTSUPP:  # the kernel has no driver for this kind
                    continue
                log.warning("cannot create link %s: %s", name, os.strerror(e.code))
                return None
            log.info("created link %s (%s)", name, kind)
            return self._link_index(name)
        log.warning("cannot create link %s: the kernel supports none of %s", name, ", ".join(kinds))
        return None

    def _delete_link(self, name: str) -> None:
        assert self._ipr is not None
        if (index := self._link_index(name)) is not None:
            try:
                self._ipr.link("del", index=index)
                log.info("deleted link %s", name)
            except NetlinkError as e:
                if e.code != errno.ENODEV:
                    raise
