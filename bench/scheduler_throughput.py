"""Scheduler benchmark: 1,000 simulated nodes, 10,000 pending pods, pods/s and latency.

Runs the control plane as kubeadm lays it out, one process per component: `k8py apiserver`
on a fresh data dir and `k8py scheduler` beside it (no kubelet: the nodes are Node objects
with capacity, created through the API). Then creates the pods (mixed cpu/memory requests)
from 32 concurrent clients and watches them get bound. Prints pods/s from the first create
to the last binding seen, and per-pod scheduling latency (create acknowledged -> binding
seen on the watch) p50/p99. A second run adds InterPodAffinity and PodTopologySpread work:
every pod carries a preferred pod anti-affinity term and a zone topology spread constraint.

    python bench/scheduler_throughput.py [--nodes 1000] [--pods 10000] [--only plain|spread]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from k8py.bootstrap.kubeconfig import write_kubeconfig  # noqa: E402
from k8py.bootstrap.pki import PKIPaths  # noqa: E402

ZONES = ("zone-a", "zone-b", "zone-c")
REQUESTS = (("100m", "128Mi"), ("250m", "256Mi"), ("500m", "512Mi"), ("50m", "64Mi"), ("1", "1Gi"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node(i: int) -> dict[str, Any]:
    name = f"node-{i:04d}"
    res = {"cpu": "32", "memory": "128Gi", "pods": "110"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {"kubernetes.io/hostname": name, "topology.kubernetes.io/zone": ZONES[i % len(ZONES)]},
        },
        "status": {
            "capacity": res,
            "allocatable": res,
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "simulated"}],
        },
    }


def _pod(i: int, spread: bool) -> bytes:
    cpu, mem = REQUESTS[i % len(REQUESTS)]
    app = f"app-{i % 20}"
    spec: dict[str, Any] = {
        "containers": [
            {"name": "c", "image": "registry.k8s.io/pause:3.10", "resources": {"requests": {"cpu": cpu, "memory": mem}}}
        ]
    }
    if spread:
        selector = {"matchLabels": {"app": app}}
        spec["affinity"] = {
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 100, "podAffinityTerm": {"labelSelector": selector, "topologyKey": "kubernetes.io/hostname"}}
                ]
            }
        }
        spec["topologySpreadConstraints"] = [
            {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway",
             "labelSelector": selector}
        ]
    return orjson.dumps(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"pod-{i:05d}", "labels": {"app": app}}, "spec": spec}
    )


class ControlPlane:
    """`k8py apiserver` + `k8py scheduler` in their own processes on a fresh data dir."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.port = _free_port()
        self.procs: list[subprocess.Popen[bytes]] = []

    async def start(self, session: aiohttp.ClientSession) -> None:
        log = open(self.dir / "apiserver.log", "wb")
        self.procs.append(subprocess.Popen(
            [sys.executable, "-m", "k8py.cli", "apiserver", "--data-dir", str(self.dir), "--port", str(self.port)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        ))
        await self._wait(session, "/readyz")
        pki = PKIPaths.in_dir(self.dir / "pki")
        self.kubeconfig = write_kubeconfig(
            self.dir / "admin.conf", self.url, pki.ca_cert.read_bytes(), pki.admin_cert.read_bytes(),
            pki.admin_key.read_bytes(),
        )
        log = open(self.dir / "scheduler.log", "wb")
        self.procs.append(subprocess.Popen(
            [sys.executable, "-m", "k8py.cli", "scheduler", "--kubeconfig", str(self.kubeconfig), "--port", "0"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        ))

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    async def _wait(self, session: aiohttp.ClientSession, path: str) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self.procs):
                raise RuntimeError(f"a component exited early; see {self.dir}")
            try:
                async with session.get(self.url + path) as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.02)
        raise RuntimeError("API server not ready within 30 s")

    def stop(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


async def _post_all(session: aiohttp.ClientSession, url: str, bodies: list[bytes], clients: int,
                    created: dict[str, float] | None = None) -> None:
    it = iter(enumerate(bodies))

    async def worker() -> None:
        for _, body in it:
            async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
                text = await r.read()
                if r.status != 201:
                    raise RuntimeError(f"create failed: {r.status} {text[:200]!r}")
                if created is not None:
                    created[orjson.loads(text)["metadata"]["name"]] = time.perf_counter()

    await asyncio.gather(*(worker() for _ in range(clients)))


async def _watch_bindings(session: aiohttp.ClientSession, url: str, total: int, bound: dict[str, float]) -> None:
    async with session.get(url + "/api/v1/namespaces/default/pods",
                           params={"watch": "1", "allowWatchBookmarks": "false"}, timeout=aiohttp.ClientTimeout()) as r:
        async for line in r.content:
            ev = orjson.loads(line)
            obj = ev["object"]
            name = obj["metadata"]["name"]
            if obj.get("spec", {}).get("nodeName") and name not in bound:
                bound[name] = time.perf_counter()
                if len(bound) >= total:
                    return


async def run_once(nodes: int, pods: int, clients: int, spread: bool) -> dict[str, float]:
    workdir = Path(tempfile.mkdtemp(prefix="k8py-sched-bench-"))
    cp = ControlPlane(workdir)
    connector = aiohttp.TCPConnector(ssl=False, limit=clients + 4)
    async with aiohttp.ClientSession(connector=connector) as probe:
        await cp.start(probe)
    pki = PKIPaths.in_dir(workdir / "pki")
    ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
    ctx.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx, limit=clients + 4)) as session:
            t = time.perf_counter()
            await _post_all(session, cp.url + "/api/v1/nodes", [orjson.dumps(_node(i)) for i in range(nodes)], clients)
            print(f"  {nodes} nodes created in {time.perf_counter() - t:.1f} s", flush=True)
            # let the scheduler's informers see every node before the clock starts
            await asyncio.sleep(2.0)
            bodies = [_pod(i, spread) for i in range(pods)]
            random.Random(0).shuffle(bodies)
            created: dict[str, float] = {}
            bound: dict[str, float] = {}
            watcher = asyncio.create_task(_watch_bindings(session, cp.url, pods, bound))
            await asyncio.sleep(0.2)
            t0 = time.perf_counter()
            await _post_all(session, cp.url + "/api/v1/namespaces/default/pods", bodies, clients, created)
            t_created = time.perf_counter()
            await asyncio.wait_for(watcher, timeout=600)
            t_end = max(bound.values())
            lat = sorted(bound[n] - created[n] for n in bound if n in created)
            return {
                "pods_per_s": pods / (t_end - t0),
                "create_s": t_created - t0,
                "total_s": t_end - t0,
                "p50_ms": lat[len(lat) // 2] * 1000,
                "p99_ms": lat[int(len(lat) * 0.99)] * 1000,
            }
    finally:
        cp.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--pods", type=int, default=10000)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--only", choices=("plain", "spread"))
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} cpus; {args.nodes} nodes, {args.pods} pods, {args.clients} clients")
    for label, spread in (("plain", False), ("spread", True)):
        if args.only and args.only != label:
            continue
        title = "mixed requests" if not spread else "mixed requests + InterPodAffinity + PodTopologySpread"
        print(f"{title}:", flush=True)
        r = asyncio.run(run_once(args.nodes, args.pods, args.clients, spread))
        print(
            f"  {r['pods_per_s']:.0f} pods/s (first create to last binding {r['total_s']:.1f} s; creates took "
            f"{r['create_s']:.1f} s); scheduling latency p50 {r['p50_ms']:.0f} ms, p99 {r['p99_ms']:.0f} ms",
            flush=True,
        )


if __name__ == "__main__":
    main()
