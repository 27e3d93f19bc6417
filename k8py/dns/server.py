"""The cluster DNS server (CoreDNS's role): the cluster zone from informers, everything else forwarded.

:class:`DNSServer` lists and watches Namespaces, Services, EndpointSlices (and Pods, in
``verified`` pod mode) through shared informers into a :class:`~k8py.dns.records.ClusterZone`,
and serves DNS over UDP and TCP on one address and port (asyncio datagram and stream servers,
dnspython for the wire format).  A question in the cluster domain (or a PTR of a known cluster
address) is answered from the zone, authoritatively; any other is handed to the
:class:`~k8py.dns.forward.Forwarder`, whose cache answers repeats; SERVFAIL when no upstream
answers.  An ExternalName's CNAME is followed: in the zone, or upstream.

UDP answers are limited to 512 bytes, or to the client's EDNS buffer size (at most
:data:`MAX_UDP_PAYLOAD`); a longer one is sent truncated with the TC bit, and the client asks
again over TCP, which carries any size.  A TCP connection may carry several queries, answered in
order, and is closed after :attr:`DNSServer.tcp_idle_timeout` seconds without one.

Answers from the zone are a pure function of the query bytes (after the ID) and the zone's
contents, so the rendered answer is kept per query and zone generation: a repeated question costs
a dictionary lookup, not a parse and a render.  (CoreDNS puts its ``cache`` plugin in front of
the ``kubernetes`` one for the same reason; here the cache can never serve a stale answer, since
any informer event invalidates it.)
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Callable, Sequence
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from k8py.client.cache import DeletedFinalStateUnknown, Obj
from k8py.client.informer import (
    ResourceEventHandlerFuncs,
    ResourceEventHandlerRegistration,
    SharedInformerFactory,
)
from k8py.client.resources import ENDPOINT_SLICES, NAMESPACES, PODS, SERVICES
from k8py.client.rest import RESTClient
from k8py.dns.forward import DNSCache, Forwarder, Upstream, resolv_conf_upstreams
from k8py.dns.records import DEFAULT_TTL, ClusterZone, PodMode, Result

log = logging.getLogger(__name__)

MAX_UDP_PAYLOAD = 1232  # the largest UDP answer we send, and the EDNS buffer size we advertise
MAX_CNAME_CHAIN = 8
WIRE_CACHE_SIZE = 10_000
NOT_SERVED_TYPES = frozenset({dns.rdatatype.AXFR, dns.rdatatype.IXFR, dns.rdatatype.OPT})

Pending = tuple[dns.message.Message, Result | None]  # a question that needs upstream work


def _same(old: Obj, new: Obj) -> bool:
    """A resync or relist hands back the object unchanged: nothing to index again."""
    return old is new or old["metadata"].get("resourceVersion") == new["metadata"].get("resourceVersion")


def _handler(apply: Callable[..., None]) -> ResourceEventHandlerFuncs:
    def update(old: Obj, new: Obj) -> None:
        if not _same(old, new):
            apply(new)

    def delete(obj: Obj | DeletedFinalStateUnknown) -> None:
        apply(obj, deleted=True)

    return ResourceEventHandlerFuncs(add_func=lambda obj, _initial: apply(obj), update_func=update,
                                     delete_func=delete)


def _error_reply(wire: bytes, rcode: int) -> bytes | None:
    """A bare reply (header only) to a query we cannot parse; None when even the header is short."""
    if len(wire) < 12 or wire[2] & 0x80:  # no header, or a response: never answer those
        return None
    flags = 0x8000 | ((wire[2] << 8) & 0x7900) | rcode  # QR, the query's opcode and RD, the rcode
    return wire[:2] + flags.to_bytes(2, "big") + b"\x00" * 8


class DNSServer:
    """Cluster DNS on ``bind_address``:``port`` (UDP and TCP); see the module docstring.

    ``upstreams`` default to the nameservers of /etc/resolv.conf.  ``factory`` shares the
    informers of a process that has them (``k8py up``); otherwise the server makes its own from
    ``client``.  ``port`` 0 picks a free port (the same for UDP and TCP): read :attr:`port`.
    """

    def __init__(
        self,
        client: RESTClient,
        *,
        cluster_domain: str = "cluster.local",
        bind_address: str = "0.0.0.0",
        port: int = 53,
        upstreams: Sequence[Upstream] | None = None,
        ttl: int = DEFAULT_TTL,
        pods: PodMode = "insecure",
        forward_timeout: float = 2.0,
        cache_max_ttl: int = 30,
        factory: SharedInformerFactory | None = None,
        sync_timeout: float = 5.0,
        tcp_idle_timeout: float = 10.0,
    ) -> None:
        self.zone = ClusterZone(cluster_domain, ttl=ttl, pods=pods)
        self.forwarder = Forwarder(
            resolv_conf_upstreams() if upstreams is None else upstreams,
            timeout=forward_timeout,
            cache=DNSCache(max_ttl=cache_max_ttl),
        )
        self.bind_address = bind_address
        self.port = port
        self.sync_timeout = sync_timeout
        self.tcp_idle_timeout = tcp_idle_timeout
        self._own_factory = factory is None
        self.factory = factory or SharedInformerFactory(client)
        self._registrations: list[ResourceEventHandlerRegistration] = []
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._tcp_writers: set[asyncio.StreamWriter] = set()
        self._wire_cache: tuple[dict[bytes, tuple[int, bytes]], dict[bytes, tuple[int, bytes]]] = ({}, {})

    # ---- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the informers, wait for their first lists (at most ``sync_timeout``, as CoreDNS), listen."""
        zone = self.zone
        watched = [(NAMESPACES, zone.on_namespace), (SERVICES, zone.on_service),
                   (ENDPOINT_SLICES, zone.on_endpoint_slice)]
        if zone.pods == "verified":
            watched.append((PODS, zone.on_pod))
        for resource, apply in watched:
            informer = self.factory.informer_for(resource)
            self._registrations.append(informer.add_event_handler(_handler(apply)))
        self.factory.start()
        if not await self.factory.wait_for_cache_sync(timeout=self.sync_timeout):
            log.warning("serving DNS before the informers synced (after %.1fs)", self.sync_timeout)
        try:
            await self._listen()
        except BaseException:
            await self.stop()
            raise

    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        for attempt in range(10):
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _UDPProtocol(self), local_addr=(self.bind_address, self.port)
            )
            port = transport.get_extra_info("sockname")[1]
            try:
                self._tcp = await asyncio.start_server(self._serve_tcp, self.bind_address, port, reuse_address=True)
            except OSError:
                transport.close()
                if self.port or attempt == 9:  # a fixed port is taken; or no free pair found
                    raise
                continue
            self._udp = transport  # type: ignore[assignment]
            self.port = port
            self._drop_self_upstreams()
            log.info("cluster DNS for %s on %s:%d (udp, tcp); upstreams %s", self.zone.origin, self.bind_address,
                     port, ", ".join(map(str, self.forwarder.upstreams)) or "none")
            return

    def _drop_self_upstreams(self) -> None:
        """Forget upstreams that are this server (a node whose resolv.conf names it): forwarding would loop."""
        wildcard = self.bind_address in ("0.0.0.0", "::", "")
        for upstream in list(self.forwarder.upstreams):
            if upstream.port == self.port and (
                upstream.host == self.bind_address or wildcard and ipaddress.ip_address(upstream.host).is_loopback
            ):
                log.warning("upstream %s is this server: not forwarding to it", upstream)
                self.forwarder.upstreams.remove(upstream)

    async def stop(self) -> None:
        """Stop serving, end open connections and pending answers, stop (or leave) the informers."""
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
        for writer in list(self._tcp_writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._tcp is not None:
            await self._tcp.wait_closed()
            self._tcp = None
        for reg in self._registrations:
            reg.informer.remove_event_handler(reg)
        self._registrations.clear()
        if self._own_factory:
            await self.factory.shutdown()

    # ---- answering ------------------------------------------------------------------------------

    def handle(self, wire: bytes, *, tcp: bool) -> bytes | Pending | None:
        """The answer to one query if it needs no upstream, else what :meth:`resolve` completes.

        None: the message is not to be answered (no header, or not a query).
        """
        cache = self._wire_cache[tcp]
        hit = cache.get(wire[2:])
        if hit is not None and hit[0] == self.zone.generation:
            return wire[:2] + hit[1]
        try:
            query = dns.message.from_wire(wire)
        except (dns.exception.DNSException, ValueError):
            return _error_reply(wire, dns.rcode.FORMERR)
        if query.flags & dns.flags.QR:
            return None
        if query.opcode() != dns.opcode.QUERY:
            return self._render(self._reply(query, dns.rcode.NOTIMP), query, tcp)
        if query.edns > 0:
            return self._render(self._reply(query, dns.rcode.BADVERS), query, tcp)
        if len(query.question) != 1:
            return self._render(self._reply(query, dns.rcode.FORMERR), query, tcp)
        q = query.question[0]
        if q.rdtype in NOT_SERVED_TYPES:
            return self._render(self._reply(query, dns.rcode.REFUSED), query, tcp)
        result = None
        if q.rdclass == dns.rdataclass.IN:
            result = self.zone.lookup(q.name, q.rdtype)
        elif self.zone.is_ours(q.name):
            return self._render(self._reply(query, dns.rcode.REFUSED), query, tcp)
        if result is None or result.chase is not None:
            return query, result
        out = self._render(self._zone_reply(query, result), query, tcp)
        if len(cache) >= WIRE_CACHE_SIZE:
            cache.clear()
        cache[wire[2:]] = (self.zone.generation, out[2:])
        return out

    async def resolve(self, query: dns.message.Message, result: Result | None, *, tcp: bool) -> bytes:
        """The answer that needs the upstreams: a forwarded question, or an ExternalName's CNAME target."""
        try:
            if result is None:
                response = await self._forward(query)
            else:
                response = await self._chase(query, result)
        except Exception:
            log.exception("answering %s failed", query.question[0])
            response = self._reply(query, dns.rcode.SERVFAIL)
        return self._render(response, query, tcp)

    def _reply(self, query: dns.message.Message, rcode: dns.rcode.Rcode) -> dns.message.Message:
        response = dns.message.make_response(query, recursion_available=True, our_payload=MAX_UDP_PAYLOAD)
        response.set_rcode(rcode)
        return response

    def _zone_reply(self, query: dns.message.Message, result: Result) -> dns.message.Message:
        response = self._reply(query, result.rcode)
        response.flags |= dns.flags.AA
        response.answer = list(result.answer)
        response.authority = list(result.authority)
        response.additional = list(result.additional)
        return response

    async def _forward(self, query: dns.message.Message) -> dns.message.Message:
        q = query.question[0]
        upstream = await self.forwarder.resolve(
            q.name, q.rdtype, q.rdclass, dnssec_ok=bool(query.ednsflags & dns.flags.DO),
            checking_disabled=bool(query.flags & dns.flags.CD),
        )
        if upstream is None:
            return self._reply(query, dns.rcode.SERVFAIL)
        response = self._reply(query, upstream.rcode())
        response.flags |= upstream.flags & dns.flags.AD
        response.answer = [_renamed(r, q.name) for r in upstream.answer]
        response.authority = list(upstream.authority)
        response.additional = list(upstream.additional)
        return response

    async def _chase(self, query: dns.message.Message, result: Result) -> dns.message.Message:
        """The CNAME of ``result`` and what its target answers, in the zone or upstream."""
        qtype = query.question[0].rdtype
        response = self._zone_reply(query, result)
        target = result.chase
        for _ in range(MAX_CNAME_CHAIN):
            if target is None:
                break
            local = self.zone.lookup(target, qtype) if self.zone.is_ours(target) else None
            if local is not None:
                response.answer += local.answer
                response.additional += local.additional
                response.set_rcode(local.rcode)
                response.authority = list(local.authority)
                target = local.chase
                continue
            upstream = await self.forwarder.resolve(target, qtype)
            if upstream is not None and upstream.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
                response.answer += upstream.answer
                response.authority = [] if upstream.answer else list(upstream.authority)
                response.set_rcode(upstream.rcode())
            break  # an upstream failure leaves the CNAME alone, as CoreDNS does
        return response

    def _render(self, response: dns.message.Message, query: dns.message.Message, tcp: bool) -> bytes:
        if tcp:
            limit = 65535
        elif query.edns >= 0:
            limit = max(512, min(query.payload, MAX_UDP_PAYLOAD))
        else:
            limit = 512
        return response.to_wire(max_size=limit, prefer_truncation=True)

    # ---- transports -----------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer_later(self, pending: Pending, send: Callable[[bytes], None], tcp: bool) -> None:
        send(await self.resolve(*pending, tcp=tcp))

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._tcp_writers.add(writer)
        try:
            while True:
                async with asyncio.timeout(self.tcp_idle_timeout):
                    size = int.from_bytes(await reader.readexactly(2), "big")
                    wire = await reader.readexactly(size)
                out = self.handle(wire, tcp=True)
                if out is None:
                    break
                if not isinstance(out, bytes):
                    out = await self.resolve(*out, tcp=True)
                writer.write(len(out).to_bytes(2, "big") + out)
                await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            pass
        finally:
            self._tcp_writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def _renamed(rrset: dns.rrset.RRset, qname: dns.name.Name) -> dns.rrset.RRset:
    """``rrset`` owned by ``qname``'s spelling when the names are equal (upstreams may change the case)."""
    if rrset.name == qname and rrset.name.labels != qname.labels:
        return dns.rrset.from_rdata_list(qname, rrset.ttl, list(rrset))
    return rrset


class _UDPProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DNSServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            out = self.server.handle(data, tcp=False)
        except Exception:
            log.exception("answering a query from %s failed", addr)
            out = _error_reply(data, dns.rcode.SERVFAIL)
        if out is None:
            return
        transport = self.transport
        assert transport is not None
        if isinstance(out, bytes):
            transport.sendto(out, addr)
        else:
            self.server._spawn(self.server._answer_later(out, lambda b: transport.sendto(b, addr), False))

    def error_received(self, exc: Exception) -> None:
        log.debug("udp: %s", exc)
