"""Simulated kubelets at scale: 200 nodes x 30 pods each, held for 10 minutes.

`k8py up --disable-kubelet --controllers nodeipam,serviceaccount` (API server, scheduler, node
IPAM for the pods' addresses), then `k8py simulated-nodes --count 200` (200 real kubelets with
the simulated runtime, in one process), then 6,000 pods spread over the nodes by the scheduler.
Once every pod is Running the pods are held for ``--hold`` seconds; prints the time to all
Running, and the kubelets' process CPU (seconds and % of one core over the hold) and RSS
(at the start and end of the hold, and peak).

    python bench/kubelet_simulated.py [--nodes 200] [--pods-per-node 30] [--hold 600]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.deployment_scale import Processes, _free_port, cpu_seconds, peak_rss_mib  # noqa: E402
from k8py.client import RESTClient  # noqa: E402
from k8py.client.resources import NODES, PODS  # noqa: E402


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def pod(i: int) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"sim-{i:05d}", "namespace": "default", "labels": {"app": "sim"}},
        "spec": {
            "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
                            "resources": {"requests": {"cpu": "1m", "memory": "1Mi"}}}],
        },
    }


async def scenario(kubeconfig: Path, nodes: int, pods: int, hold: float, kubelet_pid: int) -> None:
    client = RESTClient.from_kubeconfig(kubeconfig, component="bench", max_connections=64)
    try:
        deadline = time.monotonic() + 300
        while True:
            items = (await client.list(NODES))["items"]
            ready = [n for n in items if n["spec"].get("podCIDR") and any(
                c["type"] == "Ready" and c["status"] == "True" for c in n["status"].get("conditions", []))]
            if len(ready) >= nodes:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(ready)} of {nodes} nodes ready")
            await asyncio.sleep(0.5)
        print(f"{nodes} simulated nodes Ready", flush=True)
        t0 = time.monotonic()
        sem = asyncio.Semaphore(32)

        async def create(i: int) -> None:
            async with sem:
                await client.create(PODS, pod(i), namespace="default")

        await asyncio.gather(*(create(i) for i in range(pods)))
        created = time.monotonic() - t0
        while True:
            listed = await client.list(PODS, namespace="default", label_selector="app=sim")
            running = sum(1 for p in listed["items"] if (p.get("status") or {}).get("phase") == "Running")
            if running >= pods:
                break
            if time.monotonic() - t0 > 600:
                raise RuntimeError(f"only {running} of {pods} pods Running after 600 s")
            await asyncio.sleep(1.0)
        all_running = time.monotonic() - t0
        print(f"{pods} pods created in {created:.1f} s, all Running after {all_running:.1f} s", flush=True)
        cpu0, rss0, h0 = cpu_seconds(kubelet_pid), rss_mib(kubelet_pid), time.monotonic()
        while time.monotonic() - h0 < hold:
            await asyncio.sleep(min(30.0, hold))
            print(f"  held {time.monotonic() - h0:.0f} s: kubelets RSS {rss_mib(kubelet_pid):.0f} MiB", flush=True)
        cpu = cpu_seconds(kubelet_pid) - cpu0
        held = time.monotonic() - h0
        listed = await client.list(PODS, namespace="default", label_selector="app=sim")
        still = sum(1 for p in listed["items"] if (p.get("status") or {}).get("phase") == "Running")
        print(f"held {held:.0f} s with {still} pods Running on {nodes} nodes")
        print(f"kubelets (one process): CPU {cpu:.1f} s = {100 * cpu / held:.1f}% of one core; "
              f"RSS {rss0:.0f} MiB at start, {rss_mib(kubelet_pid):.0f} MiB at end, peak {peak_rss_mib(kubelet_pid):.0f} MiB")
    finally:
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--pods-per-node", type=int, default=30)
    parser.add_argument("--hold", type=float, default=600.0)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="k8py-sim-bench-"))
    procs = Processes(workdir)
    port = _free_port()
    print(f"machine: {os.cpu_count()} cpus; {args.nodes} simulated nodes x {args.pods_per_node} pods", flush=True)
    try:
        procs.start("k8py-up", "up", "--data-dir", str(workdir / "up"), "--port", str(port), "--disable-kubelet",
                    "--controllers", "nodeipam,serviceaccount")
        procs.wait_log("k8py-up", "export KUBECONFIG=")
        kubeconfig = workdir / "up" / "kubeconfig.yaml"
        sim = procs.start("sim", "simulated-nodes", "--kubeconfig", str(kubeconfig), "--count", str(args.nodes),
                          "--root-dir", str(workdir / "nodes"))
        procs.wait_log("sim", "registered", timeout=120)
        asyncio.run(scenario(kubeconfig, args.nodes, args.nodes * args.pods_per_node, args.hold, sim.pid))
    finally:
        procs.stop()


if __name__ == "__main__":
    main()
