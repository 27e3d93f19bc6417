"""Fixtures of the cluster DNS tests: a fake upstream resolver on loopback, and DNS clients.

The fake upstream is the only resolver any test's DNS server forwards to: no test ever sends a
query to a real resolver.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import dns.asyncquery
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from k8py.client import RESTClient
from k8py.dns import Upstream
from tests.conftest import Cluster

SOA_TEXT = "ns.example.test. hostmaster.example.test. 1 7200 1800 86400 60"


class FakeUpstream:
    """An authoritative server for a few test names on 127.0.0.1 (UDP and TCP) that counts its queries.

    ``mode``: "answer" (the default), "drop" (never answers) or "servfail".
    """

    def __init__(self) -> None:
        self.records: dict[tuple[dns.name.Name, int], dns.rrset.RRset] = {}
        self.queries: list[tuple[str, str]] = []
        self.mode = "answer"
        self.port = 0
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None

    def add(self, name: str, ttl: int, rdtype: str, *rdatas: str) -> None:
        rrset = dns.rrset.from_text_list(name, ttl, "IN", rdtype, list(rdatas))
        self.records[(rrset.name, rrset.rdtype)] = rrset

    def count(self, name: str, rdtype: str = "A") -> int:
        return self.queries.count((dns.name.from_text(name).to_text().lower(), rdtype))

    def answer(self, wire: bytes) -> bytes | None:
        query = dns.message.from_wire(wire)
        q = query.question[0]
        self.queries.append((q.name.to_text().lower(), dns.rdatatype.to_text(q.rdtype)))
        if self.mode == "drop":
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if self.mode == "servfail":
            response.set_rcode(dns.rcode.SERVFAIL)
        elif (q.name, q.rdtype) in self.records:
            response.answer.append(self.records[(q.name, q.rdtype)])
        else:
            if not any(name == q.name for name, _ in self.records):
                response.set_rcode(dns.rcode.NXDOMAIN)
            response.authority.append(dns.rrset.from_text("example.test.", 60, "IN", "SOA", SOA_TEXT))
        return response.to_wire()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        upstream = self

        class UDP(asyncio.DatagramProtocol):
            def connection_made(self, transport: Any) -> None:
                self.transport = transport

            def datagram_received(self, data: bytes, addr: Any) -> None:
                out = upstream.answer(data)
                if out is not None:
                    self.transport.sendto(out, addr)

        async def tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
                while True:
                    size = int.from_bytes(await reader.readexactly(2), "big")
                    out = upstream.answer(await reader.readexactly(size))
                    if out is None:
                        break
                    writer.write(len(out).to_bytes(2, "big") + out)
                    await writer.drain()
            writer.close()

        for _ in range(20):  # a free UDP port whose TCP twin may be taken: try another
            self._udp, _ = await loop.create_datagram_endpoint(UDP, local_addr=("127.0.0.1", 0))
            self.port = self._udp.get_extra_info("sockname")[1]
            try:
                self._tcp = await asyncio.start_server(tcp, "127.0.0.1", self.port)
                return
            except OSError:
                self._udp.close()
        raise OSError("no port free for both UDP and TCP")

    @property
    def upstream(self) -> Upstream:
        return Upstream("127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()


@pytest.fixture(scope="module")
async def client(cluster: Cluster) -> AsyncIterator[RESTClient]:
    async with RESTClient.from_kubeconfig(cluster.kubeconfig, component="test-dns") as c:
        yield c


@pytest.fixture(scope="module")
async def fake_upstream() -> AsyncIterator[FakeUpstream]:
    upstream = FakeUpstream()
    await upstream.start()
    yield upstream
    await upstream.stop()


def free_udp_tcp_port() -> int:
    """A loopback port free for both UDP and TCP right now."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket() as tcp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            try:
                tcp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


async def query(port: int, name: str, rdtype: str = "A", *, tcp: bool = False, edns: int = -1,
                payload: int = 1232) -> dns.message.Message:
    """Ask the server on 127.0.0.1:``port`` one question (UDP unless ``tcp``; no EDNS unless ``edns`` >= 0)."""
    q = dns.message.make_query(name, rdtype, use_edns=edns, payload=payload)
    if tcp:
        return await dns.asyncquery.tcp(q, "127.0.0.1", port=port, timeout=5)
    return await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=5, ignore_trailing=False)


async def eventually(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Await ``predicate()`` (a coroutine function) until it returns something truthy, or fail at the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: Exception | None = None
    while loop.time() < deadline:
        try:
            value = await predicate()
            if value:
                return value
        except Exception as e:  # keep polling; report the last error on timeout
            last = e
        await asyncio.sleep(0.02)
    raise TimeoutError(f"timed out waiting for {what}" + (f": {last!r}" if last else ""))
