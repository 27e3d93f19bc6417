"""Deployment scale benchmark: a Deployment scaled from 0 to 3,000 replicas on 100 hollow nodes.

Runs the components as separate processes, as a cluster has them: `k8py up
--disable-controller-manager` (API server + scheduler), `k8py controller-manager --controllers
replicaset,deployment,serviceaccount` (the last for the namespace's `default` ServiceAccount, which
pods need), and `k8py hollow-nodes --count 100` (kubemark: reports bound pods
Running). Creates a Deployment with 0 replicas, then scales it to 3,000 through the scale
subresource (as `kubectl scale` does) and watches the pods until every one is bound and Running.

Prints the time from the scale request to the last pod Running (and to the last pod created and
bound), and for each process the CPU seconds spent in that window (utime + stime from
/proc/<pid>/stat) and the peak RSS (VmHWM): the controller manager's are the figures asked for;
the API server, scheduler, hollow nodes and this script share the same cores.

    python bench/deployment_scale.py [--replicas 3000] [--nodes 100]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from k8py.client import RESTClient  # noqa: E402
from k8py.client.resources import DEPLOYMENTS, NODES, PODS  # noqa: E402
from k8py.client.rest import PatchType  # noqa: E402

NAMESPACE = "default"
NAME = "bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Processes:
    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.dir / f"{name}.log", "wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "k8py.cli", *args], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        self.procs[name] = proc
        return proc

    def wait_log(self, name: str, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        path = self.dir / f"{name}.log"
        while time.monotonic() < deadline:
            if text.encode() in path.read_bytes():
                return
            if self.procs[name].poll() is not None:
                raise RuntimeError(f"{name} exited:\n{path.read_text(errors='replace')}")
            time.sleep(0.05)
        raise RuntimeError(f"{name}: no {text!r} within {timeout} s")

    def stop(self) -> None:
        for proc in reversed(self.procs.values()):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def deployment(replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": NAME, "namespace": NAMESPACE},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": NAME}},
            "template": {
                "metadata": {"labels": {"app": NAME}},
                "spec": {
                    "containers": [
                        {
                            "name": "c",
                            "image": "registry.k8s.io/pause:3.10",
                            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                        }
                    ]
                },
            },
        },
    }


async def scenario(kubeconfig: Path, replicas: int, nodes: int, pids: dict[str, int]) -> dict[str, Any]:
    client = RESTClient.from_kubeconfig(kubeconfig, component="bench")
    try:
        deadline = time.monotonic() + 120
        while True:
            ready = [n for n in (await client.list(NODES))["items"]
                     if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"].get("conditions", []))]
            if len(ready) >= nodes:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(ready)} nodes ready")
            await asyncio.sleep(0.2)
        await client.create(DEPLOYMENTS, deployment(0))
        while True:  # the controller has seen the Deployment (and made its empty ReplicaSet)
            d = await client.get(DEPLOYMENTS, NAME, namespace=NAMESPACE)
            if d.get("status", {}).get("observedGeneration") == d["metadata"]["generation"]:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # quiet before the clock starts

        created: dict[str, float] = {}
        bound: dict[str, float] = {}
        running: dict[str, float] = {}
        done = asyncio.Event()
        listed = await client.list(PODS, namespace=NAMESPACE)
        rv = listed["metadata"]["resourceVersion"]

        async def watch() -> None:
            nonlocal rv
            while not done.is_set():
                try:
                    async with client.watch(PODS, namespace=NAMESPACE, resource_version=rv, timeout_seconds=600) as w:
                        async for ev in w:
                            obj = ev.object
                            rv = obj["metadata"].get("resourceVersion", rv)
                            if ev.type == "BOOKMARK" or ev.type == "DELETED":
                                continue
                            name = obj["metadata"]["name"]
                            now = time.perf_counter()
                            created.setdefault(name, now)
                            if obj.get("spec", {}).get("nodeName"):
                                bound.setdefault(name, now)
                            if obj.get("status", {}).get("phase") == "Running":
                                running.setdefault(name, now)
                                if len(running) >= replicas:
                                    done.set()
                                    return
                except Exception as e:  # a broken stream: resume from rv
                    print(f"  (watch restarted: {e})", flush=True)

        watcher = asyncio.create_task(watch())
        cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
        cpu0["bench (this script)"] = time.process_time()
        t0 = time.perf_counter()
        await client.patch(DEPLOYMENTS, NAME, {"spec": {"replicas": replicas}}, namespace=NAMESPACE,
                           patch_type=PatchType.MERGE, subresource="scale")
        await asyncio.wait_for(watcher, timeout=600)
        t_end = time.perf_counter()
        cpu = {name: cpu_seconds(pid) - cpu0[name] for name, pid in pids.items()}
        cpu["bench (this script)"] = time.process_time() - cpu0["bench (this script)"]
        while True:  # the Deployment's status catching up (what `kubectl rollout status` waits for)
            st = (await client.get(DEPLOYMENTS, NAME, namespace=NAMESPACE)).get("status", {})
            if st.get("availableReplicas") == replicas and st.get("updatedReplicas") == replicas:
                break
            await asyncio.sleep(0.05)
        t_status = time.perf_counter()
        pods = (await client.list(PODS, namespace=NAMESPACE))["items"]
        return {
            "total_s": t_end - t0,
            "created_s": max(created.values()) - t0,
            "bound_s": max(bound.values()) - t0,
            "status_s": t_status - t0,
            "pods": len(running),
            "pods_ever": len(created),
            "pods_now": len(pods),
            "cpu": cpu,
        }
    finally:
        await client.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--replicas", type=int, default=3000)
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--keep", action="store_true", help="keep the data dir and logs")
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="k8py-deploy-bench-"))
    procs = Processes(workdir)
    port = _free_port()
    print(f"machine: {os.cpu_count()} cpus; {args.nodes} hollow nodes, 0 -> {args.replicas} replicas", flush=True)
    try:
        up = procs.start("k8py-up", "up", "--data-dir", str(workdir), "--port", str(port),
                         "--disable-controller-manager", "--disable-kubelet")
        procs.wait_log("k8py-up", "export KUBECONFIG=")
        kubeconfig = workdir / "kubeconfig.yaml"
        cm = procs.start("controller-manager", "controller-manager", "--kubeconfig", str(kubeconfig),
                         "--controllers", "replicaset,deployment,serviceaccount", "--no-leader-elect")
        procs.wait_log("controller-manager", "controller manager started")
        hollow = procs.start("hollow-nodes", "hollow-nodes", "--kubeconfig", str(kubeconfig), "--count",
                             str(args.nodes), "--prefix", "bench-node-", "--pods", "110", "--cpu", "32",
                             "--memory", "128Gi")
        procs.wait_log("hollow-nodes", "registered")
        pids = {"controller-manager": cm.pid, "apiserver + scheduler (k8py up)": up.pid, "hollow nodes": hollow.pid}
        r = asyncio.run(scenario(kubeconfig, args.replicas, args.nodes, pids))
        print(f"  {r['pods']} pods Running {r['total_s']:.1f} s after the scale request "
              f"(last created at {r['created_s']:.1f} s, last bound at {r['bound_s']:.1f} s; the Deployment's "
              f"status says {args.replicas} available at {r['status_s']:.1f} s)")
        print(f"  pods created in all: {r['pods_ever']} (now {r['pods_now']})")
        print("  CPU seconds in that window, peak RSS:")
        for name, seconds in r["cpu"].items():
            pid = pids.get(name)
            rss = f"{peak_rss_mib(pid):.0f} MiB" if pid else "-"
            print(f"    {name:34s} {seconds:6.1f} s   {rss}")
    finally:
        procs.stop()
        if args.keep:
            print(f"  logs and data in {workdir}")
        else:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
