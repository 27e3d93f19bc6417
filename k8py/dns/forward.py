"""Names outside the cluster: forwarding to upstream resolvers, and a cache of their answers.

The pair plays kubeadm's Corefile lines ``forward . /etc/resolv.conf`` and ``cache 30``.
:class:`Forwarder` asks the upstreams in order (UDP, retried over TCP when the answer comes back
truncated), moving on to the next one when an upstream times out or fails; when none answers,
the caller answers SERVFAIL.  Concurrent identical questions share one upstream exchange.

:class:`DNSCache` keeps answers for their TTL, capped at ``max_ttl`` (30 s, the Corefile's
``cache 30``): positive answers for the smallest TTL of their records, negative ones (NXDOMAIN,
NODATA) for the SOA's negative TTL (RFC 2308: the smaller of the SOA record's TTL and its
minimum field); an answer without that SOA, or any other rcode (SERVFAIL, REFUSED), is not
cached.  A cached answer is served with its TTLs decreased by the time it has been held.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

log = logging.getLogger(__name__)

CacheKey = tuple[dns.name.Name, int, int, bool, bool]  # name, type, class, DO, CD

UPSTREAM_PAYLOAD = 1232  # the EDNS buffer size we offer upstreams (DNS flag day 2020)


@dataclass(frozen=True, slots=True)
class Upstream:
    host: str
    port: int = 53

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_upstream(text: str) -> Upstream:
    """``IP``, ``IP:PORT``, ``[IPv6]:PORT`` or a bare IPv6 address."""
    text = text.strip()
    host, port = text, 53
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            port = int(rest.removeprefix(":"))
    elif text.count(":") == 1:
        host, _, p = text.partition(":")
        port = int(p)
    ipaddress.ip_address(host)  # raises ValueError for anything but an address
    if not 0 < port < 65536:
        raise ValueError(f"port {port} out of range")
    return Upstream(host, port)


def resolv_conf_upstreams(path: str | Path = "/etc/resolv.conf") -> list[Upstream]:
    """The ``nameserver`` lines of a resolv.conf (port 53); none when there is no such file."""
    upstreams: list[Upstream] = []
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return upstreams
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            with contextlib.suppress(ValueError):
                upstreams.append(parse_upstream(fields[1].split("%")[0]))
    return upstreams


def cache_key(q: dns.message.Message) -> CacheKey:
    question = q.question[0]
    return (
        question.name.canonicalize(), question.rdtype, question.rdclass,
        bool(q.ednsflags & dns.flags.DO), bool(q.flags & dns.flags.CD),
    )


@dataclass(slots=True)
class CachedAnswer:
    stored: float  # time.monotonic() when cached
    expires: float
    rcode: dns.rcode.Rcode
    flags: int
    answer: list[dns.rrset.RRset]
    authority: list[dns.rrset.RRset]
    additional: list[dns.rrset.RRset]


def _capped(rrsets: list[dns.rrset.RRset], ttl: int) -> list[dns.rrset.RRset]:
    return [r if r.ttl <= ttl else dns.rrset.from_rdata_list(r.name, ttl, list(r)) for r in rrsets]


def _aged(rrsets: list[dns.rrset.RRset], age: int) -> list[dns.rrset.RRset]:
    if not age:
        return rrsets
    return [dns.rrset.from_rdata_list(r.name, max(0, r.ttl - age), list(r)) for r in rrsets]


class DNSCache:
    """Answers by (name, type, class, DO, CD), for their TTL; see the module docstring."""

    def __init__(self, *, capacity: int = 10_000, max_ttl: int = 30) -> None:
        self.capacity = capacity
        self.max_ttl = max_ttl
        self._entries: dict[CacheKey, CachedAnswer] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: CacheKey) -> dns.message.Message | None:
        """A copy of the cached answer with its TTLs aged, or None (expired entries are dropped)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        now = time.monotonic()
        if now >= entry.expires:
            del self._entries[key]
            return None
        age = int(now - entry.stored)
        msg = dns.message.Message()
        msg.flags = entry.flags
        msg.set_rcode(entry.rcode)
        msg.answer = _aged(entry.answer, age)
        msg.authority = _aged(entry.authority, age)
        msg.additional = _aged(entry.additional, age)
        return msg

    def put(self, key: CacheKey, response: dns.message.Message) -> bool:
        """Cache ``response`` if it may be, its records' TTLs capped at the time it is held (as CoreDNS)."""
        ttl = self.ttl_of(response)
        if ttl is None or ttl <= 0:
            return False
        if len(self._entries) >= self.capacity:
            self._entries.pop(next(iter(self._entries)))  # the oldest entry
        now = time.monotonic()
        self._entries[key] = CachedAnswer(
            now, now + ttl, response.rcode(), response.flags, _capped(response.answer, ttl),
            _capped(response.authority, ttl), _capped(response.additional, ttl),
        )
        return True

    def ttl_of(self, response: dns.message.Message) -> int | None:
        """How long ``response`` may be cached, None if not at all."""
        rcode = response.rcode()
        if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN) or response.flags & dns.flags.TC:
            return None
        if rcode == dns.rcode.NOERROR and response.answer:
            ttl = min(r.ttl for r in (*response.answer, *response.authority))
        else:
            soas = [r for r in response.authority if r.rdtype == dns.rdatatype.SOA]
            if not soas:
                return None
            ttl = min(soas[0].ttl, soas[0][0].minimum)
        return min(ttl, self.max_ttl)

    def clear(self) -> None:
        self._entries.clear()


class Forwarder:
    """Resolves questions through the upstreams, with a cache; see the module docstring."""

    def __init__(self, upstreams: Sequence[Upstream], *, timeout: float = 2.0, cache: DNSCache | None = None) -> None:
        self.upstreams = list(upstreams)
        self.timeout = timeout
        self.cache = cache if cache is not None else DNSCache()
        self._inflight: dict[CacheKey, asyncio.Future[dns.message.Message | None]] = {}

    async def resolve(
        self, qname: dns.name.Name, rdtype: dns.rdatatype.RdataType,
        rdclass: dns.rdataclass.RdataClass = dns.rdataclass.IN, *, dnssec_ok: bool = False,
        checking_disabled: bool = False,
    ) -> dns.message.Message | None:
        """The upstream answer to one question (from the cache when there), None if no upstream answered.

        The returned message is shared with other callers: read it, do not change it.
        """
        query = dns.message.make_query(qname, rdtype, rdclass, use_edns=0, payload=UPSTREAM_PAYLOAD,
                                       want_dnssec=dnssec_ok)
        if checking_disabled:
            query.flags |= dns.flags.CD
        key = cache_key(query)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[dns.message.Message | None] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            response = await self._exchange(query)
        except BaseException:
            future.cancel()  # the question is abandoned (shutdown): so are its waiters
            raise
        finally:
            del self._inflight[key]
        if response is not None and self.cache.put(key, response):
            response = self.cache.get(key) or response
        future.set_result(response)
        return response

    async def _exchange(self, query: dns.message.Message) -> dns.message.Message | None:
        for upstream in self.upstreams:
            try:
                response, _ = await dns.asyncquery.udp_with_fallback(
                    query, upstream.host, timeout=self.timeout, port=upstream.port, ignore_unexpected=True
                )
                return response
            except (dns.exception.DNSException, OSError, EOFError) as e:
                log.debug("upstream %s failed for %s: %s", upstream, query.question[0], e or type(e).__name__)
        return None
