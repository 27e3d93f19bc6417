"""Pod startup latency: 50 pods created at once on one node, creation to Running as seen by a watch.

For each runtime (``process``, and ``cri`` when running as root with containerd installed) a fresh
`k8py up --runtime R` (API server, scheduler, the serviceaccount and node IPAM controllers, the
kubelet; for cri its own containerd with the busybox image imported offline) gets 50 pods of
`sleep` at once from 50 concurrent clients; a watch started before the creates records when each
pod is first reported Running. Prints p50/p99/max of creation-to-Running per runtime (targets:
p99 < 2 s for cri, < 1 s for process), and for cri the time containerd alone takes to start the
same 50 sandboxes + containers at once (no kubelet, no API server): the floor under the cri
figure on the machine. Everything is stopped and removed afterwards (`killall`).

    python bench/pod_startup.py [--pods 50] [--runtime process|cri|all]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.deployment_scale import Processes, _free_port  # noqa: E402
from k8py.client import ClientError, RESTClient  # noqa: E402
from k8py.client.resources import NODES, PODS, SERVICE_ACCOUNTS  # noqa: E402
from k8py.kubelet.app import bridge_name, killall  # noqa: E402
from k8py.kubelet.runtime.cri.containerd import Containerd, write_cni_config  # noqa: E402
from k8py.kubelet.runtime.cri.imagebuild import build_busybox_image  # noqa: E402
from k8py.kubelet.runtime.cri.runtime import CRIRuntime  # noqa: E402
from k8py.kubelet.runtime.interface import ContainerConfig, PodSandboxConfig  # noqa: E402


def pod(i: int) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"start-{i:03d}", "namespace": "default", "labels": {"bench": "startup"}},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "c", "image": "busybox", "imagePullPolicy": "IfNotPresent",
                            "command": ["sleep", "3600"]}],
        },
    }


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


async def measure(kubeconfig: Path, n: int) -> list[float]:
    client = RESTClient.from_kubeconfig(kubeconfig, component="bench", max_connections=n + 8)
    try:
        deadline = time.monotonic() + 60
        while True:
            nodes = (await client.list(NODES))["items"]
            if nodes and any(c["type"] == "Ready" and c["status"] == "True" for c in nodes[0]["status"]["conditions"]):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("node not Ready")
            await asyncio.sleep(0.2)
        while True:  # pods need the namespace's default ServiceAccount
            try:
                await client.get(SERVICE_ACCOUNTS, "default", namespace="default")
                break
            except ClientError:
                await asyncio.sleep(0.1)
        # open the client's connections first: a client that multiplexes (HTTP/2, as client-go does)
        # would not pay a TLS handshake per concurrent create
        await asyncio.gather(*(client.list(PODS, namespace="default", limit=1) for _ in range(n)))
        listed = await client.list(PODS, namespace="default")
        created: dict[str, float] = {}
        running: dict[str, float] = {}
        done = asyncio.Event()

        async def watch() -> None:
            async with client.watch(PODS, namespace="default", resource_version=listed["metadata"]["resourceVersion"],
                                    label_selector="bench=startup") as events:
                async for ev in events:
                    name = ev.object["metadata"]["name"]
                    if (ev.object.get("status") or {}).get("phase") == "Running" and name not in running:
                        running[name] = time.monotonic()
                        if len(running) == n:
                            done.set()
                            return

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0.2)

        async def create(i: int) -> None:
            obj = pod(i)
            created[obj["metadata"]["name"]] = time.monotonic()  # type: ignore[index]
            await client.create(PODS, obj, namespace="default")

        await asyncio.gather(*(create(i) for i in range(n)))
        await asyncio.wait_for(done.wait(), timeout=120)
        watcher.cancel()
        return [running[k] - created[k] for k in created]
    finally:
        await client.close()


async def raw_containerd(workdir: Path, n: int) -> float:
    """Seconds for containerd alone (no kubelet, no API) to run n sandboxes + containers at once."""
    containerd = Containerd(workdir)
    await containerd.start()
    runtime = CRIRuntime(containerd.address)
    try:
        build_busybox_image(workdir / "busybox.tar")
        await containerd.import_image(workdir / "busybox.tar")
        write_cni_config(containerd.cni_conf_dir, "10.244.250.0/24", bridge=bridge_name(workdir))
        await runtime.start()

        async def one(i: int) -> None:
            cfg = PodSandboxConfig(name=f"raw-{i}", namespace="default", uid=f"raw-{i}",
                                   log_directory=str(workdir / "logs" / str(i)))
            sid = await runtime.run_pod_sandbox(cfg)
            container = ContainerConfig(name="c", image="docker.io/library/busybox:latest",
                                        command=["sleep", "3600"], log_path="c/0.log")
            await runtime.start_container(await runtime.create_container(sid, container, cfg))

        t0 = time.monotonic()
        await asyncio.gather(*(one(i) for i in range(n)))
        return time.monotonic() - t0
    finally:
        await runtime.stop()
        await containerd.stop()


def run(runtime: str, n: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix=f"k8py-startup-{runtime}-"))
    if runtime == "cri":
        images = workdir / "kubelet" / "images"
        images.mkdir(parents=True)
        build_busybox_image(images / "busybox.tar")
    procs = Processes(workdir)
    port = _free_port()
    try:
        procs.start("k8py-up", "up", "--data-dir", str(workdir), "--port", str(port), "--runtime", runtime,
                    "--kubelet-port", str(_free_port()), "--controllers", "serviceaccount,root-ca-cert-publisher,nodeipam")
        procs.wait_log("k8py-up", "export KUBECONFIG=")
        latencies = asyncio.run(measure(workdir / "kubeconfig.yaml", n))
        print(f"{runtime:8s} {n} pods: creation -> Running p50 {statistics.median(latencies) * 1000:.0f} ms, "
              f"p99 {percentile(latencies, 99) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms", flush=True)
    finally:
        procs.stop()
        asyncio.run(killall(workdir / "kubelet"))
    if runtime == "cri":
        raw = workdir / "raw"
        try:
            seconds = asyncio.run(raw_containerd(raw, n))
            print(f"containerd alone: {n} sandboxes + containers started at once in {seconds * 1000:.0f} ms "
                  "(the floor under the cri figure on this machine)", flush=True)
        finally:
            asyncio.run(killall(raw))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pods", type=int, default=50)
    parser.add_argument("--runtime", choices=["process", "cri", "all"], default="all")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cpus", flush=True)
    runtimes = ["process", "cri"] if args.runtime == "all" else [args.runtime]
    for runtime in runtimes:
        if runtime == "cri" and not Containerd.available():
            print("cri: skipped (needs root and containerd, runc, the CNI plugins)")
            continue
        run(runtime, args.pods)


if __name__ == "__main__":
    main()
