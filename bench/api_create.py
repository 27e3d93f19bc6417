"""API server benchmark: pod creates through the whole stack, start-up time, idle memory.

Starts a real `k8py up` in a subprocess on a fresh data dir and measures
1. time from process start to `/readyz` answering 200,
2. idle RSS of the whole `k8py up` process tree after it settled;
then a `k8py up --disable-scheduler --disable-controller-manager` on another fresh data dir for
3. 5,000 pod creates over HTTPS from 32 concurrent clients: creates/s, p50/p99 latency,
4. the raw store's single-row commit rate measured in the same run with the same pragmas
   (WAL, synchronous=FULL: an acknowledged write is on disk).
Writes bench/api_create.png (latency histogram) when matplotlib is installed.

    python bench/api_create.py [--pods 5000] [--clients 32]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.store_commit import measure_single_row_commit_rate  # noqa: E402
from k8py.kubelet.app import killall  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


RUNTIME_COMMS = ("containerd", "containerd-shim", "containerd-shim-runc-v2", "runc")


def _rss_tree_kib(pid: int) -> int:
    """RSS of a process and all its descendants, from /proc (the container runtime excluded)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            if Path(f"/proc/{p}/comm").read_text().strip() in RUNTIME_COMMS:
                continue
        except OSError:
            continue
        todo.extend(children.get(p, []))
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def _pod(i: int) -> bytes:
    return orjson.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"bench-{i:05d}", "labels": {"app": "bench", "i": str(i % 10)}},
            "spec": {
                "containers": [
                    {
                        "name": "c",
                        "image": "registry.k8s.io/pause:3.10",
                        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                        "env": [{"name": f"E{k}", "value": "x" * 40} for k in range(10)],
                    }
                ]
            },
        }
    )


async def _wait_ready(session: aiohttp.ClientSession, url: str, t0: float, proc: subprocess.Popen[bytes]) -> float:
    while True:
        if proc.poll() is not None:
            raise RuntimeError("k8py up exited early")
        try:
            async with session.get(url + "/readyz") as r:
                if r.status == 200:
                    return time.monotonic() - t0
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.005)


async def _default_service_account(session: aiohttp.ClientSession, url: str, namespace: str = "default") -> None:
    """What the service account controller does for every namespace (pods need it to be admitted)."""
    body = orjson.dumps({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}})
    async with session.post(
        f"{url}/api/v1/namespaces/{namespace}/serviceaccounts", data=body, headers={"Content-Type": "application/json"}
    ) as r:
        if r.status not in (201, 409):
            raise RuntimeError(f"creating the default ServiceAccount failed: {r.status} {await r.text()}")


async def concurrently(n: int, clients: int, op: Callable[[int], Awaitable[object]]) -> tuple[float, list[float]]:
    """op(0..n-1) from `clients` concurrent tasks: ops/s and each op's latency."""
    latencies: list[float] = []
    next_i = 0

    async def worker() -> None:
        nonlocal next_i
        while next_i < n:
            i = next_i
            next_i += 1
            t = time.perf_counter()
            await op(i)
            latencies.append(time.perf_counter() - t)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    return n / (time.perf_counter() - t0), latencies


async def _create_pods(
    session: aiohttp.ClientSession, url: str, n: int, clients: int, namespace: str = "default"
) -> tuple[float, list[float]]:
    bodies = [_pod(i) for i in range(n)]

    async def create(i: int) -> None:
        async with session.post(
            f"{url}/api/v1/namespaces/{namespace}/pods", data=bodies[i], headers={"Content-Type": "application/json"}
        ) as r:
            await r.read()
            if r.status != 201:
                raise RuntimeError(f"create failed: {r.status}")

    return await concurrently(n, clients, create)


def _plot(latencies: list[float], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist([v * 1000 for v in latencies], bins=80)
    ax.set_xlabel("create latency (ms)")
    ax.set_ylabel("requests")
    ax.set_title("k8py: pod creates, 32 concurrent clients")
    fig.tight_layout()
    fig.savefig(path)
    print(f"plot: {path}")


def _up(data: Path, port: int, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "k8py.cli", "up", "--data-dir", str(data), "--port", str(port), *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)


@contextlib.asynccontextmanager
async def api_server(data: Path, clients: int, *extra: str) -> AsyncIterator[tuple[aiohttp.ClientSession, str, int]]:
    """`k8py up` as the API server alone (with `extra` flags), an admin session to it and its pid; stopped
    on exit. Without nodes, a scheduler would add a failed attempt (an Event and a status patch) for every
    pod created, and the controller manager's controllers watch pods (garbage collector, endpoints,
    disruption, ...); the one thing a pod needs from them, the namespace's `default` ServiceAccount, is
    created by the benchmarks themselves."""
    port = _free_port()
    proc = _up(data, port, "--disable-scheduler", "--disable-controller-manager", "--disable-kubelet", *extra)
    try:
        url = f"https://127.0.0.1:{port}"
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=False)) as s:
            await _wait_ready(s, url, time.monotonic(), proc)
        ctx = ssl.create_default_context(cafile=str(data / "pki" / "ca.crt"))
        ctx.load_cert_chain(data / "pki" / "admin.crt", data / "pki" / "admin.key")
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx, limit=clients)) as s:
            yield s, url, proc.pid
    finally:
        _stop(proc)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pods", type=int, default=5000)
    ap.add_argument("--clients", type=int, default=32)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="k8py-bench-") as tmp:
        # start-up and idle memory of the whole `k8py up` (scheduler included)
        port = _free_port()
        t0 = time.monotonic()
        proc = _up(Path(tmp) / "full", port, "--kubelet-port", str(_free_port()))
        try:
            insecure = aiohttp.TCPConnector(ssl=False)
            async with aiohttp.ClientSession(connector=insecure) as s:
                ready = await _wait_ready(s, f"https://127.0.0.1:{port}", t0, proc)
            await asyncio.sleep(3)
            idle_rss = _rss_tree_kib(proc.pid)
        finally:
            _stop(proc)
            await killall(Path(tmp) / "full" / "kubelet")
        # the API server's create path alone
        async with api_server(Path(tmp) / "data", args.clients) as (s, url, _):
            await _default_service_account(s, url)
            rate, lat = await _create_pods(s, url, args.pods, args.clients)
        raw = await measure_single_row_commit_rate(str(Path(tmp) / "raw.db"), 5000)
    lat.sort()
    p50, p99 = lat[len(lat) // 2], lat[int(len(lat) * 0.99)]
    print(f"machine: {os.cpu_count()} cores, {sys.platform}, python {sys.version.split()[0]}")
    print(f"time to /readyz:        {ready * 1000:.0f} ms")
    print(f"idle RSS (k8py up):     {idle_rss / 1024:.0f} MiB")
    print(f"pod creates:            {rate:.0f}/s ({args.pods} pods, {args.clients} clients, API server alone)")
    print(f"create latency:         p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms")
    print(f"raw store commit rate:  {raw:.0f}/s (one row per transaction, same pragmas)")
    print(f"creates / raw commits:  {rate / raw * 100:.0f}%")
    _plot(lat, Path(__file__).with_suffix(".png"))


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
