"""k8py dns against the real API server: the Kubernetes DNS schema over UDP and TCP, forwarding, truncation.

The session cluster runs no endpoint controllers: the tests write the EndpointSlices (and pods'
statuses) themselves, as those controllers and the kubelet would.  The server listens on
127.0.0.1 on a free port and forwards only to the fake upstream of tests/dns/conftest.py.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdatatype
import dns.reversename
import pytest

from k8py.client import RESTClient
from k8py.client.resources import ENDPOINT_SLICES, PODS, SERVICES
from k8py.dns import DNSServer, Upstream
from tests.conftest import Cluster
from tests.dns.conftest import FakeUpstream, eventually, free_udp_tcp_port, query

Obj = dict[str, Any]
DOMAIN = "cluster.local"


@pytest.fixture(scope="module")
async def server(client: RESTClient, fake_upstream: FakeUpstream) -> AsyncIterator[DNSServer]:
    srv = DNSServer(client, bind_address="127.0.0.1", port=0, upstreams=[fake_upstream.upstream],
                    forward_timeout=0.5)
    await srv.start()
    yield srv
    await srv.stop()


def service(name: str, *, cluster_ip: str | None = None, ports: list[Obj] | None = None, **spec: Any) -> Obj:
    body: Obj = {"ports": ports if ports is not None else [{"name": "http", "port": 80, "protocol": "TCP"}], **spec}
    if cluster_ip:
        body["clusterIP"] = cluster_ip
    return {"metadata": {"name": name}, "spec": body}


def endpoint_slice(name: str, svc: str, endpoints: list[Obj], ports: list[Obj] | None = None) -> Obj:
    return {
        "metadata": {"name": name, "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4",
        "ports": ports if ports is not None else [{"name": "web", "port": 8080, "protocol": "TCP"}],
        "endpoints": endpoints,
    }


def ep(ip: str, *, ready: bool = True, hostname: str | None = None) -> Obj:
    e: Obj = {"addresses": [ip], "conditions": {"ready": ready}}
    if hostname:
        e["hostname"] = hostname
    return e


def answers(msg: dns.message.Message, rdtype: str = "A") -> list[str]:
    t = dns.rdatatype.from_text(rdtype)
    return sorted(rd.to_text() for rrset in msg.answer if rrset.rdtype == t for rd in rrset)


def assert_negative(msg: dns.message.Message, rcode: int) -> None:
    """NXDOMAIN or NODATA as the spec has them: no answer, the zone's SOA in the authority section."""
    assert msg.rcode() == rcode, dns.rcode.to_text(msg.rcode())
    assert not msg.answer
    assert [r.rdtype for r in msg.authority] == [dns.rdatatype.SOA]
    assert msg.authority[0].name.to_text() == f"{DOMAIN}."
    assert msg.flags & dns.flags.AA


async def test_cluster_ip_service(server: DNSServer, client: RESTClient, namespace: str) -> None:
    svc = await client.create(SERVICES, service("web", ports=[
        {"name": "http", "port": 80, "protocol": "TCP"}, {"name": "dns", "port": 53, "protocol": "UDP"}]),
        namespace=namespace)
    ip = svc["spec"]["clusterIP"]
    name = f"web.{namespace}.svc.{DOMAIN}."

    async def resolved() -> dns.message.Message | None:
        msg = await query(server.port, name)
        return msg if msg.answer else None

    msg = await eventually(resolved, what="the Service's A record")
    assert answers(msg) == [ip]
    assert msg.answer[0].ttl == 5 and msg.flags & dns.flags.AA and msg.flags & dns.flags.RA
    for tcp in (False, True):  # the same over TCP, and case-insensitively (answered in the question's case)
        upper = await query(server.port, name.upper(), tcp=tcp)
        assert answers(upper) == [ip] and upper.answer[0].name.to_text() == name.upper()

    # an existing name asked for another type: NODATA; names that do not exist: NXDOMAIN
    assert_negative(await query(server.port, name, "AAAA"), dns.rcode.NOERROR)
    assert_negative(await query(server.port, name, "TXT", tcp=True), dns.rcode.NOERROR)
    assert_negative(await query(server.port, f"nope.{namespace}.svc.{DOMAIN}."), dns.rcode.NXDOMAIN)
    assert_negative(await query(server.port, f"{namespace}.svc.{DOMAIN}."), dns.rcode.NOERROR)
    assert_negative(await query(server.port, f"no-such-namespace-x.svc.{DOMAIN}."), dns.rcode.NXDOMAIN)
    assert_negative(await query(server.port, f"svc.{DOMAIN}."), dns.rcode.NOERROR)
    assert_negative(await query(server.port, f"other.{DOMAIN}."), dns.rcode.NXDOMAIN)
    assert_negative(await query(server.port, f"x.web.{namespace}.svc.{DOMAIN}."), dns.rcode.NXDOMAIN)

    # SRV per named port, the target's address in the additional section
    srv = await query(server.port, f"_http._tcp.{name}", "SRV")
    assert answers(srv, "SRV") == [f"0 100 80 {name}"]
    assert [(r.name.to_text(), sorted(rd.to_text() for rd in r)) for r in srv.additional] == [(name, [ip])]
    assert answers(await query(server.port, f"_dns._udp.{name}", "SRV"), "SRV") == [f"0 100 53 {name}"]
    assert_negative(await query(server.port, f"_http._udp.{name}", "SRV"), dns.rcode.NXDOMAIN)
    assert_negative(await query(server.port, f"_tcp.{name}", "SRV"), dns.rcode.NOERROR)  # empty non-terminal

    # PTR of the ClusterIP
    ptr = await query(server.port, dns.reversename.from_address(ip).to_text(), "PTR")
    assert answers(ptr, "PTR") == [name]

    # the schema version, the apex
    txt = await query(server.port, f"dns-version.{DOMAIN}.", "TXT")
    assert answers(txt, "TXT") == ['"1.1.0"']
    soa = await query(server.port, f"{DOMAIN}.", "SOA")
    assert answers(soa, "SOA")[0].startswith(f"ns.dns.{DOMAIN}. hostmaster.{DOMAIN}.")


async def test_headless_service(server: DNSServer, client: RESTClient, namespace: str) -> None:
    await client.create(SERVICES, service("db", cluster_ip="None"), namespace=namespace)
    await client.create(ENDPOINT_SLICES, endpoint_slice("db-1", "db", [
        ep("10.244.1.10", hostname="db-0"), ep("10.244.1.11", hostname="db-1"), ep("10.244.1.12"),
        ep("10.244.1.13", ready=False, hostname="db-3"),
    ]), namespace=namespace)
    name = f"db.{namespace}.svc.{DOMAIN}."

    async def resolved() -> list[str]:
        return answers(await query(server.port, name))

    assert await eventually(resolved, what="headless A records") == ["10.244.1.10", "10.244.1.11", "10.244.1.12"]
    assert answers(await query(server.port, f"db-0.{name}")) == ["10.244.1.10"]
    assert answers(await query(server.port, f"10-244-1-12.{name}")) == ["10.244.1.12"]
    assert_negative(await query(server.port, f"db-3.{name}"), dns.rcode.NXDOMAIN)  # not ready
    assert_negative(await query(server.port, f"db-0.{name}", "AAAA"), dns.rcode.NOERROR)

    srv = await query(server.port, f"_web._tcp.{name}", "SRV")
    assert answers(srv, "SRV") == [f"0 33 8080 10-244-1-12.{name}", f"0 33 8080 db-0.{name}",
                                   f"0 33 8080 db-1.{name}"]
    extra = {r.name.to_text(): [rd.to_text() for rd in r] for r in srv.additional}
    assert extra == {f"db-0.{name}": ["10.244.1.10"], f"db-1.{name}": ["10.244.1.11"],
                     f"10-244-1-12.{name}": ["10.244.1.12"]}
    assert answers(await query(server.port, "10.1.244.10.in-addr.arpa.", "PTR"), "PTR") == [f"db-0.{name}"]

    # no ready endpoints: NXDOMAIN, unless the Service publishes not-ready addresses
    await client.create(SERVICES, service("cold", cluster_ip="None"), namespace=namespace)
    await client.create(SERVICES, service("warm", cluster_ip="None", publishNotReadyAddresses=True),
                        namespace=namespace)
    for svc in ("cold", "warm"):
        await client.create(ENDPOINT_SLICES, endpoint_slice(f"{svc}-1", svc, [ep("10.244.2.1", ready=False)]),
                            namespace=namespace)

    async def warm() -> list[str]:
        return answers(await query(server.port, f"warm.{namespace}.svc.{DOMAIN}."))

    assert await eventually(warm, what="publishNotReadyAddresses") == ["10.244.2.1"]
    assert_negative(await query(server.port, f"cold.{namespace}.svc.{DOMAIN}."), dns.rcode.NXDOMAIN)


async def test_endpoint_changes_within_a_second(server: DNSServer, client: RESTClient, namespace: str) -> None:
    await client.create(SERVICES, service("app", cluster_ip="None"), namespace=namespace)
    es = await client.create(ENDPOINT_SLICES, endpoint_slice("app-1", "app", [ep("10.244.3.1")]),
                             namespace=namespace)
    name = f"app.{namespace}.svc.{DOMAIN}."

    async def ips() -> list[str]:
        return answers(await query(server.port, name))

    assert await eventually(ips) == ["10.244.3.1"]
    for want in (["10.244.3.1", "10.244.3.2"], ["10.244.3.2"]):
        es["endpoints"] = [ep(ip) for ip in want]
        t0 = time.monotonic()
        es = await client.update(ENDPOINT_SLICES, es)

        async def updated(want: list[str] = want) -> bool:
            return await ips() == want

        await eventually(updated, timeout=1.0, what=f"answer {want} within 1 s")
        assert time.monotonic() - t0 < 1.0
    await client.delete(SERVICES, "app", namespace=namespace)

    async def gone() -> bool:
        return (await query(server.port, name)).rcode() == dns.rcode.NXDOMAIN

    await eventually(gone, timeout=1.0, what="NXDOMAIN once the Service is deleted")


async def test_external_name(server: DNSServer, client: RESTClient, namespace: str,
                             fake_upstream: FakeUpstream) -> None:
    fake_upstream.add("www.example.test.", 60, "A", "192.0.2.53")
    await client.create(SERVICES, service("ext", ports=[], type="ExternalName", externalName="www.example.test"),
                        namespace=namespace)
    name = f"ext.{namespace}.svc.{DOMAIN}."

    async def resolved() -> dns.message.Message | None:
        msg = await query(server.port, name)
        return msg if msg.answer else None

    msg = await eventually(resolved, what="the ExternalName CNAME")
    assert [r.to_text() for r in msg.answer] == [f"{name} 5 IN CNAME www.example.test.",
                                                 "www.example.test. 30 IN A 192.0.2.53"]  # cached: at most 30 s
    cname = await query(server.port, name, "CNAME")
    assert answers(cname, "CNAME") == ["www.example.test."] and len(cname.answer) == 1
    assert_negative(await query(server.port, f"_http._tcp.{name}", "SRV"), dns.rcode.NXDOMAIN)


async def test_pod_records(server: DNSServer, client: RESTClient, namespace: str) -> None:
    """``pods insecure`` (kubeadm's Corefile): any dashed address in an existing namespace."""
    async def resolved() -> list[str]:
        return answers(await query(server.port, f"10-244-5-6.{namespace}.pod.{DOMAIN}."))

    assert await eventually(resolved, what="a pod A record") == ["10.244.5.6"]
    assert_negative(await query(server.port, f"10-244-5-6.{namespace}.pod.{DOMAIN}.", "AAAA"), dns.rcode.NOERROR)
    assert_negative(await query(server.port, f"10-244-5-6.no-such-ns-y.pod.{DOMAIN}."), dns.rcode.NXDOMAIN)
    assert_negative(await query(server.port, f"not-an-ip.{namespace}.pod.{DOMAIN}."), dns.rcode.NXDOMAIN)
    assert_negative(await query(server.port, f"{namespace}.pod.{DOMAIN}."), dns.rcode.NOERROR)


async def test_verified_pod_records(client: RESTClient, namespace: str, fake_upstream: FakeUpstream) -> None:
    """``pods verified``: only the IPs of pods in that namespace, from the Pod informer."""
    srv = DNSServer(client, bind_address="127.0.0.1", port=0, upstreams=[fake_upstream.upstream], pods="verified")
    await srv.start()
    try:
        pod = await client.create(PODS, {
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]},
        }, namespace=namespace)
        pod["status"] = {"phase": "Running", "podIP": "10.244.7.8", "podIPs": [{"ip": "10.244.7.8"}]}
        await client.update_status(PODS, pod)

        async def resolved() -> list[str]:
            return answers(await query(srv.port, f"10-244-7-8.{namespace}.pod.{DOMAIN}."))

        assert await eventually(resolved, what="a verified pod A record") == ["10.244.7.8"]
        assert_negative(await query(srv.port, f"10-244-7-9.{namespace}.pod.{DOMAIN}."), dns.rcode.NXDOMAIN)
        await client.delete(PODS, "p", namespace=namespace, grace_period_seconds=0)

        async def gone() -> bool:
            msg = await query(srv.port, f"10-244-7-8.{namespace}.pod.{DOMAIN}.")
            return msg.rcode() == dns.rcode.NXDOMAIN

        await eventually(gone, what="NXDOMAIN once the pod is deleted")
    finally:
        await srv.stop()


async def test_forwarding_and_cache(server: DNSServer, fake_upstream: FakeUpstream) -> None:
    fake_upstream.add("cached.example.test.", 300, "A", "192.0.2.1")
    fake_upstream.add("short.example.test.", 1, "A", "192.0.2.2")
    first = await query(server.port, "cached.example.test.")
    assert answers(first) == ["192.0.2.1"] and not first.flags & dns.flags.AA
    assert first.answer[0].ttl == 30  # capped by the cache's max TTL, as `cache 30`
    for tcp in (False, True, False):
        assert answers(await query(server.port, "Cached.Example.Test.", tcp=tcp)) == ["192.0.2.1"]
    assert fake_upstream.count("cached.example.test.") == 1

    # concurrent identical questions: one upstream exchange
    await asyncio.gather(*(query(server.port, "short.example.test.") for _ in range(20)))
    assert fake_upstream.count("short.example.test.") == 1

    async def expired() -> bool:  # a 1 s TTL: asked again once it has passed
        await query(server.port, "short.example.test.")
        return fake_upstream.count("short.example.test.") == 2

    await eventually(expired, timeout=5, what="the cached answer to expire")

    # negative answers: passed on, and cached for the SOA's negative TTL
    for _ in range(2):
        nx = await query(server.port, "missing.example.test.")
        assert nx.rcode() == dns.rcode.NXDOMAIN and nx.authority[0].rdtype == dns.rdatatype.SOA
    nodata = await query(server.port, "cached.example.test.", "AAAA")
    assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer
    assert fake_upstream.count("missing.example.test.") == 1

    # PTRs of addresses the cluster does not know are forwarded too
    await query(server.port, "9.2.0.192.in-addr.arpa.", "PTR")
    assert fake_upstream.count("9.2.0.192.in-addr.arpa.", "PTR") == 1


async def test_servfail_when_upstreams_fail(client: RESTClient, fake_upstream: FakeUpstream) -> None:
    down = FakeUpstream()
    await down.start()
    down.mode = "drop"
    srv = DNSServer(client, bind_address="127.0.0.1", port=0, upstreams=[down.upstream], forward_timeout=0.3)
    await srv.start()
    try:
        msg = await query(srv.port, "anything.example.test.")
        assert msg.rcode() == dns.rcode.SERVFAIL
        assert down.count("anything.example.test.") >= 1
        # a second upstream that answers is used when the first one fails
        srv.forwarder.upstreams.append(fake_upstream.upstream)
        fake_upstream.add("fallback.example.test.", 60, "A", "192.0.2.9")
        assert answers(await query(srv.port, "fallback.example.test.")) == ["192.0.2.9"]
    finally:
        await srv.stop()
        await down.stop()


async def test_truncation_and_tcp(server: DNSServer, client: RESTClient, namespace: str) -> None:
    await client.create(SERVICES, service("big", cluster_ip="None"), namespace=namespace)
    ips = [f"10.244.{10 + i // 250}.{i % 250 + 1}" for i in range(100)]
    await client.create(ENDPOINT_SLICES, endpoint_slice("big-1", "big", [ep(ip) for ip in ips]), namespace=namespace)
    name = f"big.{namespace}.svc.{DOMAIN}."

    async def full() -> dns.message.Message | None:
        msg = await query(server.port, name, tcp=True)
        return msg if len(answers(msg)) == len(ips) else None

    msg = await eventually(full, what="the 100 endpoints over TCP")
    assert answers(msg) == sorted(ips)

    plain = await query(server.port, name)  # no EDNS: 512 bytes
    assert plain.flags & dns.flags.TC and len(plain.to_wire()) <= 512
    edns = await query(server.port, name, edns=0, payload=4096)  # capped at 1232
    assert edns.flags & dns.flags.TC and len(edns.to_wire()) <= 1232

    # a client that follows the TC bit gets the whole answer over TCP
    q = dns.message.make_query(name, "A")
    response, used_tcp = await dns.asyncquery.udp_with_fallback(q, "127.0.0.1", port=server.port, timeout=5)
    assert used_tcp and answers(response) == sorted(ips)

    # a small answer still fits in a plain UDP reply
    small = await query(server.port, f"10-244-10-1.{name}")
    assert not small.flags & dns.flags.TC and answers(small) == ["10.244.10.1"]


@pytest.mark.skipif(not shutil.which("busybox", path="/bin"), reason="/bin/busybox (busybox-static) is not installed")
async def test_busybox_nslookup(server: DNSServer, client: RESTClient, namespace: str) -> None:
    """A user's resolver: busybox nslookup against the server (``server:port``, loopback only)."""
    svc = await client.create(SERVICES, service("shell"), namespace=namespace)
    name = f"shell.{namespace}.svc.{DOMAIN}"

    async def nslookup(*args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            "/bin/busybox", "nslookup", *args, f"127.0.0.1:{server.port}",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await asyncio.wait_for(proc.communicate(), 10)
        return out.decode()

    async def resolved() -> str | None:
        out = await nslookup(name)
        return out if svc["spec"]["clusterIP"] in out else None

    out = await eventually(resolved, what="busybox nslookup")
    assert f"Name:\t{name}" in out
    assert "NXDOMAIN" in await nslookup(f"nope.{namespace}.svc.{DOMAIN}")
    srv_out = await nslookup("-type=srv", f"_http._tcp.{name}")
    assert f"0 100 80 {name}" in srv_out


async def _udp_exchange(port: int, data: bytes, timeout: float) -> bytes | None:
    loop = asyncio.get_running_loop()
    got: asyncio.Future[bytes] = loop.create_future()

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, reply: bytes, addr: Any) -> None:
            if not got.done():
                got.set_result(reply)

    transport, _ = await loop.create_datagram_endpoint(Client, remote_addr=("127.0.0.1", port))
    try:
        transport.sendto(data)
        return await asyncio.wait_for(got, timeout)
    except TimeoutError:
        return None
    finally:
        transport.close()


async def test_protocol_edges(server: DNSServer, namespace: str) -> None:
    # a header followed by garbage: FORMERR with the query's ID; a short packet or a response: no answer
    reply = await _udp_exchange(server.port, b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xff", 2)
    assert reply is not None and reply[:2] == b"\x12\x34" and reply[3] & 0x0F == dns.rcode.FORMERR
    assert reply[2] & 0x80
    assert await _udp_exchange(server.port, b"\x12\x34\x01", 0.3) is None
    response = dns.message.make_response(dns.message.make_query(f"{DOMAIN}.", "SOA"))
    assert await _udp_exchange(server.port, response.to_wire(), 0.3) is None

    # other opcodes: NOTIMP; EDNS versions above 0: BADVERS
    notify = dns.message.make_query(f"{DOMAIN}.", "SOA")
    notify.set_opcode(dns.opcode.NOTIFY)
    reply = await _udp_exchange(server.port, notify.to_wire(), 2)
    assert reply is not None and dns.message.from_wire(reply).rcode() == dns.rcode.NOTIMP
    v1 = dns.message.make_query(f"{DOMAIN}.", "SOA", use_edns=1)
    reply = await _udp_exchange(server.port, v1.to_wire(), 2)
    assert reply is not None and dns.message.from_wire(reply).rcode() == dns.rcode.BADVERS

    # several queries on one TCP connection, answered in order
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        names = [f"{namespace}.svc.{DOMAIN}.", f"nope.{namespace}.svc.{DOMAIN}.", f"dns-version.{DOMAIN}."]
        queries = [dns.message.make_query(n, "TXT") for n in names]
        for q in queries:
            wire = q.to_wire()
            writer.write(len(wire).to_bytes(2, "big") + wire)
        await writer.drain()
        rcodes = []
        for q in queries:
            size = int.from_bytes(await reader.readexactly(2), "big")
            msg = dns.message.from_wire(await reader.readexactly(size))
            assert msg.id == q.id
            rcodes.append(msg.rcode())
        assert rcodes == [dns.rcode.NOERROR, dns.rcode.NXDOMAIN, dns.rcode.NOERROR]
    finally:
        writer.close()


async def test_cli(cluster: Cluster, fake_upstream: FakeUpstream, tmp_path: Path) -> None:
    """`k8py dns` as a process: serves the cluster zone and forwards, stops cleanly on SIGTERM."""
    port = free_udp_tcp_port()
    fake_upstream.add("cli.example.test.", 60, "A", "192.0.2.77")
    log_path = tmp_path / "dns.log"
    with open(log_path, "wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "k8py.cli", "dns", "--kubeconfig", str(cluster.kubeconfig),
            "--bind-address", "127.0.0.1", "--port", str(port), "--upstream", f"127.0.0.1:{fake_upstream.port}",
            stdout=log, stderr=log, start_new_session=True,
        )
    try:
        async def serving() -> bool:
            assert proc.returncode is None, log_path.read_text()
            return b"serving on 127.0.0.1:" in log_path.read_bytes()

        await eventually(serving, timeout=30, what="k8py dns to serve")
        kubernetes = await query(port, f"kubernetes.default.svc.{DOMAIN}.", "SRV", tcp=True)
        assert answers(kubernetes, "SRV") == [f"0 100 443 kubernetes.default.svc.{DOMAIN}."]
        assert answers(await query(port, "cli.example.test.")) == ["192.0.2.77"]
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 15) == 0, log_path.read_text()

    bad = subprocess.run([sys.executable, "-m", "k8py.cli", "dns", "--upstream", "not-an-ip"],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "--upstream" in bad.stderr


def test_never_forwards_to_itself() -> None:
    srv = DNSServer(None, bind_address="0.0.0.0", port=5353,  # type: ignore[arg-type]  # no API needed
                    upstreams=[Upstream("127.0.0.1", 5353), Upstream("127.0.0.1", 53), Upstream("192.0.2.1", 5353)])
    srv._drop_self_upstreams()
    assert srv.forwarder.upstreams == [Upstream("127.0.0.1", 53), Upstream("192.0.2.1", 5353)]
