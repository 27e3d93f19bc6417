"""DNS queries/s: `k8py dns` answering cluster names, against a raw dnspython echo server, in one run.

Starts `k8py up` (the API server only), creates ``--services`` ClusterIP Services in one
namespace, then runs `k8py dns` on a loopback port (its upstream is a closed loopback port: the
bench asks only cluster names) and, as the reference, a minimal dnspython server on another port
that parses each query and answers one fixed A record (``--echo-server``, this file).  One asyncio
client process (uvloop when installed) keeps ``--concurrency`` UDP queries in flight against each
server for ``--seconds`` and counts the answers (NOERROR with one answer record each):

* ``services``: A queries for the Services' names, round-robin (repeated questions: `k8py dns`
  serves them from its rendered-answer cache, the reference parses and renders every one);
* ``pods``: A queries for ``<a-b-c-d>.<ns>.pod`` names, every one different (`k8py dns` parses,
  looks up and renders every query, like the reference).

Prints the queries/s of each server and workload, and the ratio k8py dns / echo server.  The
servers and the client share the machine's cores: compare the figures of one run.

    python bench/dns_qps.py [--services 1000] [--concurrency 64] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import itertools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.deployment_scale import Processes, _free_port, cpu_seconds  # noqa: E402
from k8py.client import RESTClient  # noqa: E402
from k8py.client.resources import NAMESPACES, SERVICES  # noqa: E402

NAMESPACE = "dnsbench"
QTYPE_A = b"\x00\x01\x00\x01"  # type A, class IN


def _free_udp_port() -> int:
    """A port free for both UDP and TCP (the DNS server binds both)."""
    while True:
        port = _free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue


def wire_query(name: str) -> bytes:
    """A query for ``name`` A, RD set, ID 0 (patched per send), built by hand to keep the client cheap."""
    labels = b"".join(len(label).to_bytes(1, "big") + label.encode() for label in name.strip(".").split("."))
    return b"\x00\x00\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + labels + b"\x00" + QTYPE_A


# ---- the reference server ----------------------------------------------------------------------


def echo_server(port: int) -> None:
    """Answer every query with one fixed A record, parsing and rendering with dnspython."""
    import dns.message
    import dns.rrset

    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport: asyncio.DatagramTransport = transport  # type: ignore[assignment]

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            query = dns.message.from_wire(data)
            response = dns.message.make_response(query, recursion_available=True)
            response.answer.append(dns.rrset.from_text(query.question[0].name, 5, "IN", "A", "10.96.0.1"))
            self.transport.sendto(response.to_wire(), addr)

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", port))
        print("echo server ready", flush=True)
        await asyncio.Event().wait()

    _run(serve())


def _run(main: object) -> None:
    try:
        import uvloop

        uvloop.run(main)  # type: ignore[arg-type]
    except ImportError:
        asyncio.run(main)  # type: ignore[arg-type]


# ---- the load client ---------------------------------------------------------------------------


class LoadClient(asyncio.DatagramProtocol):
    """``concurrency`` queries in flight on one socket, told apart by their IDs; a reply sends the next."""

    def __init__(self, queries: itertools.cycle[bytes] | itertools.chain[bytes], concurrency: int) -> None:
        self.queries = queries
        self.concurrency = concurrency
        self.answered = 0
        self.errors = 0
        self.lost = 0
        self.sent_at = [0.0] * concurrency
        self.running = True
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        for slot in range(self.concurrency):
            self.send(slot)

    def send(self, slot: int) -> None:
        wire = next(self.queries)
        self.sent_at[slot] = time.monotonic()
        assert self.transport is not None
        self.transport.sendto(slot.to_bytes(2, "big") + wire[2:])

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        slot = int.from_bytes(data[:2], "big")
        if data[3] & 0x0F == 0 and data[6:8] == b"\x00\x01":  # NOERROR, one answer
            self.answered += 1
        else:
            self.errors += 1
        if self.running and slot < self.concurrency:
            self.send(slot)

    def resend_lost(self) -> None:
        now = time.monotonic()
        for slot, sent in enumerate(self.sent_at):
            if self.running and now - sent > 1.0:
                self.lost += 1
                self.send(slot)


async def measure(port: int, queries: itertools.cycle[bytes] | itertools.chain[bytes], concurrency: int,
                  seconds: float) -> tuple[float, int, int]:
    """Queries/s answered by the server on 127.0.0.1:``port`` (after a 1 s warm-up), errors, lost."""
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_datagram_endpoint(
        lambda: LoadClient(queries, concurrency), remote_addr=("127.0.0.1", port)
    )
    try:
        await asyncio.sleep(1.0)
        start, t0 = client.answered, time.monotonic()
        end = t0 + seconds
        while time.monotonic() < end:
            await asyncio.sleep(0.25)
            client.resend_lost()
        qps = (client.answered - start) / (time.monotonic() - t0)
        client.running = False
        return qps, client.errors, client.lost
    finally:
        transport.close()


# ---- the scenario ------------------------------------------------------------------------------


async def create_services(kubeconfig: Path, n: int) -> None:
    async with RESTClient.from_kubeconfig(kubeconfig, component="bench") as client:
        await client.create(NAMESPACES, {"metadata": {"name": NAMESPACE}})
        sem = asyncio.Semaphore(32)

        async def one(i: int) -> None:
            async with sem:
                await client.create(SERVICES, {
                    "metadata": {"name": f"svc-{i}"},
                    "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
                }, namespace=NAMESPACE)

        await asyncio.gather(*(one(i) for i in range(n)))


class _Probe(asyncio.DatagramProtocol):
    def __init__(self, got: asyncio.Future[bytes]) -> None:
        self.got = got

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if not self.got.done():
            self.got.set_result(data)


async def wait_answering(port: int, name: str, timeout: float = 60) -> None:
    """Until the server answers ``name`` with a record (the informers have synced)."""
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got: asyncio.Future[bytes] = loop.create_future()
        transport, _ = await loop.create_datagram_endpoint(functools.partial(_Probe, got), remote_addr=("127.0.0.1", port))
        try:
            transport.sendto(b"\x00\x07" + wire_query(name)[2:])
            if (await asyncio.wait_for(got, 0.5))[6:8] == b"\x00\x01":
                return
        except TimeoutError:
            pass
        finally:
            transport.close()
        await asyncio.sleep(0.2)
    raise RuntimeError(f"no answer for {name} on port {port} within {timeout} s")


def pod_queries() -> itertools.chain[bytes]:
    """A different pod name in every query (16 M of them before they repeat)."""
    return itertools.chain.from_iterable(
        (wire_query(f"10-{a}-{b}-{c}.{NAMESPACE}.pod.cluster.local") for c in range(256))
        for a in range(256) for b in range(256)
    )


async def scenario(kubeconfig: Path, dns_port: int, echo_port: int, args: argparse.Namespace,
                   pids: dict[str, int]) -> None:
    await create_services(kubeconfig, args.services)
    await wait_answering(dns_port, f"svc-{args.services - 1}.{NAMESPACE}.svc.cluster.local")
    await wait_answering(echo_port, "anything.example")
    service_wires = [wire_query(f"svc-{i}.{NAMESPACE}.svc.cluster.local") for i in range(args.services)]
    results: dict[tuple[str, str], float] = {}
    for workload in ("services", "pods"):
        for server, port in (("k8py dns", dns_port), ("echo server", echo_port)):
            queries = itertools.cycle(service_wires) if workload == "services" else pod_queries()
            pid = pids[server]
            cpu0 = cpu_seconds(pid)
            qps, errors, lost = await measure(port, queries, args.concurrency, args.seconds)
            cpu = (cpu_seconds(pid) - cpu0) / (args.seconds + 1.0)
            results[(workload, server)] = qps
            print(f"{workload:9} {server:12} {qps:10,.0f} queries/s  (server CPU {cpu:4.0%} of a core; "
                  f"{errors} errors, {lost} lost)", flush=True)
    for workload in ("services", "pods"):
        ratio = results[(workload, "k8py dns")] / max(1.0, results[(workload, "echo server")])
        print(f"{workload:9} k8py dns / echo server: {ratio:.2f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--keep", action="store_true", help="keep the data dir and logs")
    ap.add_argument("--echo-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.echo_server:
        echo_server(args.echo_server)
        return
    workdir = Path(tempfile.mkdtemp(prefix="k8py-dns-bench-"))
    procs = Processes(workdir)
    port, dns_port, echo_port, closed_port = _free_port(), _free_udp_port(), _free_udp_port(), _free_udp_port()
    print(f"machine: {os.cpu_count()} cpus; {args.services} Services, {args.concurrency} queries in flight, "
          f"{args.seconds:g} s per measurement", flush=True)
    try:
        procs.start("k8py-up", "up", "--data-dir", str(workdir), "--port", str(port), "--disable-kubelet",
                    "--disable-scheduler", "--controllers", "serviceaccount")
        procs.wait_log("k8py-up", "export KUBECONFIG=")
        kubeconfig = workdir / "kubeconfig.yaml"
        dns_proc = procs.start("k8py-dns", "dns", "--kubeconfig", str(kubeconfig), "--bind-address", "127.0.0.1",
                               "--port", str(dns_port), "--upstream", f"127.0.0.1:{closed_port}")
        procs.wait_log("k8py-dns", "serving on")
        log = open(workdir / "echo-server.log", "wb")
        echo = subprocess.Popen(
            [sys.executable, __file__, "--echo-server", str(echo_port)], stdout=log, stderr=log,
            start_new_session=True,
        )
        log.close()
        procs.procs["echo-server"] = echo
        procs.wait_log("echo-server", "echo server ready")
        pids = {"k8py dns": dns_proc.pid, "echo server": echo.pid}
        _run(scenario(kubeconfig, dns_port, echo_port, args, pids))
    finally:
        procs.stop()
        if args.keep:
            print(f"logs: {workdir}", flush=True)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
