"""kube-proxy (nftables) network programming: 1,000 Services x 10 endpoints.

`k8py up --disable-kubelet --disable-scheduler --disable-controller-manager` serves the API;
the bench creates N selectorless Services and one EndpointSlice of E endpoints each through
it, then starts a ProxyServer in this process that programs a network namespace it creates
(``k8pytest-bench-<hex>``, the node IP on a veth inside it: nft runs through ``ip netns exec``; nothing touches the host's
own tables). It prints:

* cold start: informers' list + the first (full) sync, and the full sync alone (the time of
  the one ``nft -f -`` transaction that writes every chain, set and map element);
* network programming latency: U EndpointSlice updates (one endpoint replaced, through the
  API, at ``--rate`` per second): from just before the API write to the end of the sync
  whose transaction contains it (``nft -f -`` has returned: the rule is live in the kernel).
  Percentiles, and the partial syncs' sizes and durations.

    sudo python bench/proxy_programming.py [--services 1000] [--endpoints 10] [--updates 200] [--rate 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.deployment_scale import Processes, _free_port  # noqa: E402
from k8py.client import RESTClient  # noqa: E402
from k8py.client.resources import ENDPOINT_SLICES, SERVICES  # noqa: E402
from k8py.proxy import ProxierConfig, ProxyServer, SyncResult, cleanup_leftovers  # noqa: E402
from k8py.proxy.serviceport import NamespacedName  # noqa: E402

NAMESPACE = "default"
NODE_IP = "10.199.0.1"


def service(i: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"svc-{i:04d}", "namespace": NAMESPACE},
            "spec": {"type": "NodePort" if i % 10 == 0 else "ClusterIP",
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}}


def endpoint_slice(i: int, endpoints: int, generation: int = 0) -> dict[str, Any]:
    eps = []
    for j in range(endpoints):
        n = i * endpoints + j + generation * 7919
        ip = f"10.{244 + (n >> 16) % 8}.{(n >> 8) & 255}.{n & 255 or 1}"
        eps.append({"addresses": [ip], "nodeName": "bench-node", "conditions": {"ready": True}})
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"svc-{i:04d}-1", "namespace": NAMESPACE,
                         "labels": {"kubernetes.io/service-name": f"svc-{i:04d}"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}], "endpoints": eps}


async def bounded(n: int, make: Any, concurrency: int = 32) -> None:
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem:
            await make(i)

    await asyncio.gather(*(one(i) for i in range(n)))


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


async def scenario(kubeconfig: Path, netns: str, args: argparse.Namespace) -> None:
    client = RESTClient.from_kubeconfig(kubeconfig, component="bench", max_connections=64)
    prefix = ("ip", "netns", "exec", netns)
    try:
        t0 = time.monotonic()
        await bounded(args.services, lambda i: client.create(SERVICES, service(i)))
        await bounded(args.services, lambda i: client.create(ENDPOINT_SLICES, endpoint_slice(i, args.endpoints)))
        print(f"  created {args.services} Services + EndpointSlices ({args.endpoints} endpoints each) through the "
              f"API in {time.monotonic() - t0:.1f} s", flush=True)

        config = ProxierConfig(hostname="bench-node", cluster_cidr="10.244.0.0/16", node_ips=[NODE_IP],
                               service_cidrs=["10.96.0.0/12"], min_sync_period=args.min_sync_period)
        server = ProxyServer(client, config, netns=netns)
        results: list[SyncResult] = []
        server.proxier.sync_listeners.append(results.append)
        t0 = time.monotonic()
        await server.start()
        cold = time.monotonic() - t0
        full = next(r for r in results if r.full)
        out = subprocess.run([*prefix, "nft", "list", "chains", "ip"], capture_output=True, text=True).stdout
        chains = out.count("chain ")
        print(f"  cold start: {cold:.2f} s from start to all rules live (informer lists + first full sync); "
              f"the full sync: {full.elapsed:.2f} s ({full.nft_elapsed:.2f} s of it nft), one transaction of {full.lines} lines; {chains} chains "
              "in the table", flush=True)

        # network programming latency: API write -> end of the sync that contains it
        pending: dict[NamespacedName, list[float]] = {}
        latencies: list[float] = []
        partial: list[SyncResult] = []

        def on_sync(r: SyncResult) -> None:
            if r.full:
                return
            partial.append(r)
            for svc in r.updated_services:
                for t in pending.pop(svc, []):
                    latencies.append(r.finished - t)

        server.proxier.sync_listeners.append(on_sync)
        rng = random.Random(7)

        async def update(k: int) -> None:
            i = rng.randrange(args.services)
            body = endpoint_slice(i, args.endpoints, generation=k + 1)
            current = await client.get(ENDPOINT_SLICES, f"svc-{i:04d}-1", namespace=NAMESPACE)
            body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            body["endpoints"][1:] = current["endpoints"][1:]  # one endpoint replaced
            pending.setdefault(NamespacedName(NAMESPACE, f"svc-{i:04d}"), []).append(time.monotonic())
            await client.update(ENDPOINT_SLICES, body)

        tasks = []
        t0 = time.monotonic()
        for k in range(args.updates):
            tasks.append(asyncio.create_task(update(k)))
            await asyncio.sleep(max(0.0, t0 + (k + 1) / args.rate - time.monotonic()))
        await asyncio.gather(*tasks)
        deadline = time.monotonic() + 30
        while pending and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if pending:
            print(f"  !! {sum(map(len, pending.values()))} updates never synced")
        ms = [x * 1000 for x in latencies]
        print(f"  network programming latency over {len(ms)} EndpointSlice updates at {args.rate}/s "
              f"(API write -> rule live): p50 {pct(ms, 50):.0f} ms, p90 {pct(ms, 90):.0f} ms, "
              f"p99 {pct(ms, 99):.0f} ms, max {max(ms):.0f} ms", flush=True)
        durations = [r.elapsed * 1000 for r in partial]
        nft = statistics.mean(r.nft_elapsed * 1000 for r in partial)
        print(f"  {len(partial)} partial syncs: {statistics.mean(durations):.0f} ms mean ({nft:.0f} ms of it nft), "
              f"p99 {pct(durations, 99):.0f} ms; {statistics.mean(r.lines for r in partial):.0f} nft lines each, "
              f"{statistics.mean(len(r.updated_services) for r in partial):.1f} Services each", flush=True)
        print(f"  target p99 < 1000 ms: {'met' if pct(ms, 99) < 1000 else 'MISSED'}")
        await server.stop()
    finally:
        await cleanup_leftovers(netns=netns)
        await client.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--endpoints", type=int, default=10)
    ap.add_argument("--updates", type=int, default=200)
    ap.add_argument("--rate", type=float, default=20.0, help="EndpointSlice updates per second")
    ap.add_argument("--min-sync-period", type=float, default=0.1)
    args = ap.parse_args()
    if os.geteuid() != 0 or not shutil.which("nft"):
        sys.exit("needs root and nft (it programs a network namespace of its own)")
    workdir = Path(tempfile.mkdtemp(prefix="k8py-proxy-bench-"))
    netns = f"k8pytest-bench-{secrets.token_hex(3)}"
    procs = Processes(workdir)
    print(f"machine: {os.cpu_count()} cpus; {args.services} Services x {args.endpoints} endpoints; objects created "
          "through a real API server (k8py up), proxier in this process, rules in a network namespace", flush=True)
    try:
        subprocess.run(["ip", "netns", "add", netns], check=True)
        subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "-n", netns, "link", "add", "node0", "type", "veth", "peer", "name", "node1"], check=True)
        subprocess.run(["ip", "-n", netns, "addr", "add", f"{NODE_IP}/24", "dev", "node0"], check=True)
        subprocess.run(["ip", "-n", netns, "link", "set", "node0", "up"], check=True)
        port = _free_port()
        procs.start("k8py-up", "up", "--data-dir", str(workdir), "--port", str(port), "--disable-kubelet",
                    "--disable-scheduler", "--disable-controller-manager")
        procs.wait_log("k8py-up", "export KUBECONFIG=")
        asyncio.run(scenario(workdir / "kubeconfig.yaml", netns, args))
    finally:
        procs.stop()
        subprocess.run(["ip", "netns", "del", netns], capture_output=True)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
