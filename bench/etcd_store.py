"""k8py on etcd: API creates next to raw etcd writes, and LIST from the watch cache versus from etcd.

One run against one local etcd member (TLS with client certificates, data dir on disk; the
tests' `EtcdCluster`) and `k8py up --etcd-servers ... --disable-scheduler
--disable-controller-manager --disable-kubelet` (the API server alone, as bench/api_create.py):
1. LIST of 10,000 pods in one namespace: a plain list (served from the watch cache), the same
   list with `resourceVersionMatch=Exact` at the cache's revision (served from etcd: ranges,
   decoding, filtering, encoding), and `EtcdStore.list` of the same keys at that revision in
   this process (the ranges alone);
2. at each concurrency C, in turn:
   a. with the API server stopped (its watch covers the whole key space, so it would also work
      on every raw write): raw writes from Python over grpc.aio with etcd3aio's stubs and the
      store's channel options, of a pod exactly as the API server stored it: `KV.Put` (the
      baseline), `KV.Txn` as `EtcdStore.create` sends it, and `EtcdStore.create` itself;
   b. the API server restarted on the same etcd: the keystone's pod creates over HTTPS from C
      clients (bench/api_create.py's).
Prints rates, latencies, the CPU time each process spent per operation (utime + stime: this
script, the API server, etcd; they share the machine's cores, so CPU bounds the rates) and API
creates / raw puts (issue 9's target: at least 50 %).

    python bench/etcd_store.py [--pods 5000] [--puts 10000] [--clients 32,128] [--list-pods 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import sys
import tempfile
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import grpc.aio
import orjson
from etcd3aio._protobuf import rpc_pb2, rpc_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.api_create import (  # noqa: E402
    _create_pods,
    _default_service_account,
    api_server,
    concurrently,
)
from bench.deployment_scale import cpu_seconds  # noqa: E402
from k8py.storage.etcd import CHANNEL_OPTIONS, EtcdStore  # noqa: E402
from tests.etcdcluster import EtcdCluster  # noqa: E402

JSON = {"Content-Type": "application/json"}
T0 = time.monotonic()


@dataclass
class Run:
    """n operations from concurrent clients: their rate, latencies, and each process's CPU µs per operation."""

    rate: float
    latencies: list[float]
    cpu_us: dict[str, float]

    def row(self, label: str) -> str:
        p50, p99 = _percentiles(self.latencies)
        cpu = "  ".join(f"{k} {v:3.0f}" for k, v in self.cpu_us.items())
        return (f"{label:<28} {self.rate:6.0f}/s  p50 {p50 * 1000:5.1f} ms  p99 {p99 * 1000:5.1f} ms  "
                f"CPU us/op: {cpu}  (sum {sum(self.cpu_us.values()):.0f})")


def _percentiles(latencies: list[float]) -> tuple[float, float]:
    s = sorted(latencies)
    return s[len(s) // 2], s[min(int(len(s) * 0.99), len(s) - 1)]


def _progress(what: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f} s] {what}", file=sys.stderr, flush=True)


async def _measure(n: int, pids: dict[str, int], work: Awaitable[tuple[float, list[float]]]) -> Run:
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    rate, latencies = await work
    return Run(rate, latencies, {name: (cpu_seconds(pid) - before[name]) / n * 1e6 for name, pid in pids.items()})


async def _namespace(session: aiohttp.ClientSession, url: str, name: str) -> None:
    body = orjson.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    async with session.post(url + "/api/v1/namespaces", data=body, headers=JSON) as r:
        if r.status != 201:
            raise RuntimeError(f"creating namespace {name} failed: {r.status} {await r.text()}")
    await _default_service_account(session, url, name)


async def _get(session: aiohttp.ClientSession, url: str) -> bytes:
    async with session.get(url) as r:
        body = await r.read()
        if r.status != 200:
            raise RuntimeError(f"GET {url}: {r.status} {body[:200]!r}")
        return body


async def _raw_writes(etcd: EtcdCluster, value: bytes, n: int, clients: int, tag: str) -> dict[str, Run]:
    """KV.Put, KV.Txn (a create) and EtcdStore.create of n new keys each, from `clients` tasks; all
    outside the API server's /registry."""
    store = EtcdStore(etcd.endpoints, prefix="/bench/store", tls=etcd.client_tls)
    await store.start()
    channel = grpc.aio.secure_channel(etcd.members[0].client_url.removeprefix("https://"),
                                      etcd.client_tls.credentials(), options=CHANNEL_OPTIONS)
    kv = rpc_pb2_grpc.KVStub(channel)
    pids = {"bench": os.getpid(), "etcd": _pid(etcd)}
    try:
        async def put(i: int) -> None:
            await kv.Put(rpc_pb2.PutRequest(key=f"/bench/put-{tag}/{i:08d}".encode(), value=value))

        async def txn(i: int) -> None:
            k = f"/bench/txn-{tag}/{i:08d}".encode()
            resp = await kv.Txn(rpc_pb2.TxnRequest(
                compare=[rpc_pb2.Compare(key=k, target=rpc_pb2.Compare.CREATE, result=rpc_pb2.Compare.EQUAL,
                                         create_revision=0)],
                success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=k, value=value))],
            ))
            assert resp.succeeded

        async def create(i: int) -> None:
            await store.create(f"/registry/{tag}/{i:08d}", value)

        return {
            "put": await _measure(n, pids, concurrently(n, clients, put)),
            "txn": await _measure(n, pids, concurrently(n, clients, txn)),
            "store": await _measure(n, pids, concurrently(n, clients, create)),
        }
    finally:
        await channel.close()
        await store.close()


def _pid(etcd: EtcdCluster) -> int:
    proc = etcd.members[0].proc
    assert proc is not None
    return proc.pid


def _api_server(data: Path, etcd: EtcdCluster, clients: int,
                ) -> contextlib.AbstractAsyncContextManager[tuple[aiohttp.ClientSession, str, int]]:
    """The API server alone on etcd (api_create's api_server)."""
    tls = etcd.client_tls
    return api_server(data, clients, "--etcd-servers", etcd.endpoints[0], "--etcd-cafile", str(tls.ca_file),
                      "--etcd-certfile", str(tls.cert_file), "--etcd-keyfile", str(tls.key_file))


async def _lists(s: aiohttp.ClientSession, url: str, store: EtcdStore, n: int, iterations: int,
                 ) -> dict[str, list[float]]:
    """Latencies of listing the n pods of namespace bench-list: from the watch cache, from etcd through
    the API, and EtcdStore.list's ranges."""
    lists: dict[str, list[float]] = {"cache": [], "etcd": [], "store": []}
    pods = f"{url}/api/v1/namespaces/bench-list/pods"
    rv = orjson.loads(await _get(s, pods + "?limit=1"))["metadata"]["resourceVersion"]
    for i in range(iterations):
        for name, op in (
            ("cache", lambda: _get(s, pods)),
            ("etcd", lambda: _get(s, f"{pods}?resourceVersion={rv}&resourceVersionMatch=Exact")),
            ("store", lambda: store.list("/registry/pods/bench-list/", revision=int(rv))),
        ):
            t = time.perf_counter()
            result = await op()
            lists[name].append(time.perf_counter() - t)
            if i == 0:  # once: decoding 30 MB costs more than the list, in GC above all
                items = orjson.loads(result)["items"] if isinstance(result, bytes) else result.items
                if len(items) != n:
                    raise RuntimeError(f"list from {name}: {len(items)} pods, want {n}")
            del result
    return lists


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pods", type=int, default=5000, help="pod creates through the API per concurrency")
    ap.add_argument("--puts", type=int, default=10000, help="raw writes per kind and concurrency")
    ap.add_argument("--clients", default="32,128", help="concurrencies, comma-separated")
    ap.add_argument("--list-pods", type=int, default=10000)
    ap.add_argument("--list-iterations", type=int, default=20)
    args = ap.parse_args()
    concurrencies = [int(c) for c in args.clients.split(",")]
    api: dict[int, Run] = {}
    raw: dict[int, dict[str, Run]] = {}
    with tempfile.TemporaryDirectory(prefix="k8py-bench-etcd-", dir="/var/tmp") as tmp:
        etcd = EtcdCluster(Path(tmp) / "etcd").start()
        store = EtcdStore(etcd.endpoints, tls=etcd.client_tls)
        data = Path(tmp) / "k8py"
        try:
            await store.start()
            async with _api_server(data, etcd, max(concurrencies)) as (s, url, _):
                _progress(f"{args.list_pods} pods to list")
                for ns in ("bench-list", *(f"bench-c{c}" for c in concurrencies)):
                    await _namespace(s, url, ns)
                await _create_pods(s, url, args.list_pods, max(concurrencies), "bench-list")
                _progress("lists")
                lists = await _lists(s, url, store, args.list_pods, args.list_iterations)
            stored = await store.get("/registry/pods/bench-list/bench-00000")
            assert stored is not None
            # raw writes with the API server stopped, then API creates, at each concurrency in turn
            # (close together in time: the machine's other load changes both alike)
            for c in concurrencies:
                _progress(f"raw writes, {c} clients")
                raw[c] = await _raw_writes(etcd, stored.value, args.puts, c, f"c{c}")
                async with _api_server(data, etcd, c) as (s, url, pid):
                    _progress(f"API creates, {c} clients")
                    pids = {"bench": os.getpid(), "etcd": _pid(etcd), "apiserver": pid}
                    api[c] = await _measure(args.pods, pids, _create_pods(s, url, args.pods, c, f"bench-c{c}"))
        finally:
            await store.close()
            etcd.stop()

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    print(f"machine: {os.cpu_count()} cores ({cpu}), python {sys.version.split()[0]}, etcd 1 member (TLS, disk)")
    print(f"stored pod: {len(stored.value)} bytes; {args.puts} raw writes and {args.pods} API creates per row")
    for c in concurrencies:
        print(f"-- {c} concurrent clients")
        print(raw[c]["put"].row("raw etcd KV.Put"))
        print(raw[c]["txn"].row("raw etcd KV.Txn (create)"))
        print(raw[c]["store"].row("EtcdStore.create"))
        print(api[c].row("pod creates through the API"))
        print(f"API creates / raw puts:      {api[c].rate / raw[c]['put'].rate * 100:.0f}%  (target >= 50%)")
    print(f"-- LIST of {args.list_pods} pods, {args.list_iterations} iterations")
    for name, label in (("cache", "API, watch cache"), ("etcd", "API, resourceVersionMatch=Exact (etcd)"),
                        ("store", "EtcdStore.list (ranges only)")):
        p50, p99 = _percentiles(lists[name])
        print(f"{label:<40} p50 {p50 * 1000:7.1f} ms  p99 {p99 * 1000:7.1f} ms")


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
