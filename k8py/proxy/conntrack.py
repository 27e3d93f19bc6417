"""Stale UDP and SCTP conntrack entries (upstream pkg/proxy/conntrack/cleanup.go).

A conntrack entry keeps a flow DNATed to the endpoint its first packet went to for as long as
packets keep coming, whatever the rules say since. For TCP that is what one wants; a UDP
client sending from one port, though, would talk to a deleted pod forever, or keep being
rejected after packets it sent while the Service had no endpoints. So after a sync, the
entries of the UDP and SCTP Service ports it rewrote (every one after a full sync) are
checked as upstream does: an entry whose original destination is a frontend of the port (its
ClusterIP, external IPs and load balancer IPs with the port; its NodePort on any address) is
deleted unless its reply source is a serving endpoint of the port. Serving, whatever the
traffic policies, topology or termination: existing flows go on as TCP connections do.

Unlike upstream, which lists the whole table after every sync:

* only the Service ports a sync rewrote are checked, and the kernel filters the listing
  per frontend (CTA_FILTER, kernel 5.8+; an older one lists everything, matched here);
* the reply source must be the endpoint's ip:port (upstream: its IP only, missing a
  targetPort change);
* a port without serving endpoints, and the frontends of a removed (or changed) port, lose
  all their entries (upstream keeps them until an endpoint appears), so that new packets
  meet the rules: rejected or dropped;
* SCTP entries too (upstream: UDP only).

The netlink work (pyroute2's ``NFCTSocket``, opened in the proxy's network namespace) runs in
a thread of its own, after the transaction is live and without holding up the next sync:
:meth:`ConntrackCleaner.clean` queues frontends, one cleanup runs at a time, and a failed
one is retried with the next sync's frontends (a newer state of a frontend wins).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Collection, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from pyroute2 import NFCTSocket
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple

from k8py.proxy.endpoints import EndpointsMap
from k8py.proxy.serviceport import NamespacedName, ServicePortInfo, ServicePortMap
from k8py.tasks import cancel

log = logging.getLogger(__name__)

PROTOCOLS = {"UDP": socket.IPPROTO_UDP, "SCTP": socket.IPPROTO_SCTP}

Endpoints = frozenset[tuple[str, int]]  # (ip, port)s an entry's reply may come from


class Entry(NamedTuple):
    """A conntrack entry: its original tuple and the source of its reply tuple."""

    proto: int
    src: str
    dst: str
    sport: int
    dport: int
    reply_src: str
    reply_sport: int


@dataclass
class Frontends:
    """Service port frontends to check, each with the endpoints its entries may be DNATed to."""

    ips: dict[tuple[int, str, int], Endpoints] = field(default_factory=dict)  # (l4proto, ip, port)
    node_ports: dict[tuple[int, int], Endpoints] = field(default_factory=dict)  # (l4proto, port)

    def __bool__(self) -> bool:
        return bool(self.ips or self.node_ports)

    def update(self, other: Frontends) -> None:
        self.ips.update(other.ips)
        self.node_ports.update(other.node_ports)

    def add(self, svc: ServicePortInfo, endpoints: Endpoints) -> None:
        proto = PROTOCOLS[svc.protocol]
        for ip in (svc.cluster_ip, *svc.external_ips, *svc.load_balancer_vips):
            self.ips[proto, ip, svc.port] = endpoints
        if svc.node_port:
            self.node_ports[proto, svc.node_port] = endpoints

    def is_stale(self, entry: Entry) -> bool:
        """Whether ``entry`` goes to one of these frontends but not to one of its endpoints."""
        reply = (entry.reply_src, entry.reply_sport)
        for endpoints in (self.ips.get((entry.proto, entry.dst, entry.dport)),
                          self.node_ports.get((entry.proto, entry.dport))):
            if endpoints is not None and reply not in endpoints:
                return True
        return False


def frontends(svc_port_map: ServicePortMap, endpoints_map: EndpointsMap,
              services: Collection[NamespacedName] | None = None,
              removed: Iterable[ServicePortInfo] = ()) -> Frontends:
    """The UDP and SCTP frontends of ``services`` (None: all) with their serving endpoints, and
    those of the ``removed`` ports (their previous state) that no current port has, with none."""
    out = Frontends()
    for svc in removed:
        if svc.protocol in PROTOCOLS:
            out.add(svc, frozenset())
    for name, svc in svc_port_map.items():
        if svc.protocol in PROTOCOLS and (services is None or name.service in services):
            out.add(svc, frozenset((ep.ip, ep.port) for ep in endpoints_map.get(name, ()) if ep.serving))
    return out


def entry_from_netlink(msg: Any) -> Entry:
    """An :class:`Entry` of a conntrack message (``nfct_msg``) of an IPv4 dump."""
    orig, reply = msg.get_attr("CTA_TUPLE_ORIG"), msg.get_attr("CTA_TUPLE_REPLY")
    o_ip, o_proto = orig.get_attr("CTA_TUPLE_IP"), orig.get_attr("CTA_TUPLE_PROTO")
    r_ip, r_proto = reply.get_attr("CTA_TUPLE_IP"), reply.get_attr("CTA_TUPLE_PROTO")
    return Entry(
        o_proto.get_attr("CTA_PROTO_NUM"),
        o_ip.get_attr("CTA_IP_V4_SRC"), o_ip.get_attr("CTA_IP_V4_DST"),
        o_proto.get_attr("CTA_PROTO_SRC_PORT") or 0, o_proto.get_attr("CTA_PROTO_DST_PORT") or 0,
        r_ip.get_attr("CTA_IP_V4_SRC"), r_proto.get_attr("CTA_PROTO_SRC_PORT") or 0,
    )


class ConntrackCleaner:
    """Deletes the stale entries of the frontends it is given, in the background (see the
    module docstring); ``netns``: the named network namespace to act in (None: our own)."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        self.deleted = 0  # entries deleted so far
        self._pending = Frontends()
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._sock: NFCTSocket | None = None

    def clean(self, frontends: Frontends) -> None:
        """Check ``frontends`` soon (with those still waiting)."""
        self._pending.update(frontends)
        if self._pending and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self._run(), name="conntrack cleanup")

    async def _run(self) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="conntrack")
        loop = asyncio.get_running_loop()
        while self._pending:
            batch, self._pending = self._pending, Frontends()
            try:
                deleted = await loop.run_in_executor(self._executor, self._clean, batch)
            except Exception as e:
                log.error("conntrack cleanup failed; will retry after the next sync: %r", e)
                batch.update(self._pending)
                self._pending = batch
                return
            self.deleted += deleted
            if deleted:
                log.info("deleted %d stale conntrack entries", deleted)

    def _clean(self, frontends: Frontends) -> int:
        """List the frontends' entries, delete the stale ones (in the cleaner's thread)."""
        try:
            if self._sock is None:
                # flags=0: never create a missing namespace (pyroute2's default)
                self._sock = NFCTSocket(netns=self.netns, flags=0)
            stale: dict[Entry, tuple[int, int | None]] = {}
            filters = [NFCTAttrTuple(proto=p, daddr=ip, dport=port) for p, ip, port in frontends.ips]
            filters += [NFCTAttrTuple(proto=p, dport=port) for p, port in frontends.node_ports]
            for tuple_orig in filters:
                for msg in self._sock.dump(tuple_orig=tuple_orig):
                    entry = entry_from_netlink(msg)
                    if frontends.is_stale(entry):
                        stale[entry] = (msg.get_attr("CTA_ID"), msg.get_attr("CTA_ZONE"))
            deleted = 0
            for entry, (ct_id, zone) in stale.items():
                tuple_orig = NFCTAttrTuple(proto=entry.proto, saddr=entry.src, daddr=entry.dst,
                                           sport=entry.sport, dport=entry.dport)
                try:
                    # the id: not a newer entry with the same tuple
                    self._sock.entry("del", tuple_orig=tuple_orig, id=ct_id, zone=zone)
                except NetlinkError as e:
                    if e.code != errno.ENOENT:  # gone meanwhile
                        raise
                    continue
                deleted += 1
                log.debug("deleted stale conntrack entry %s", entry)
            return deleted
        except Exception:
            self._close()  # a fresh socket next time
            raise

    def _close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    async def close(self) -> None:
        """Stop cleaning up (a cleanup under way finishes) and close the socket."""
        await cancel(self._task)
        if self._executor is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._close)
            self._executor.shutdown()
            self._executor = None
