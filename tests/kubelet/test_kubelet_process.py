"""The kubelet end to end with the `process` runtime: a real `k8py up` API server, a real
`k8py kubelet` subprocess, real host processes, driven with kubectl."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from k8py.kubelet.app import killall
from tests.conftest import Cluster, free_port, start_cluster, wait_for
from tests.controllers.conftest import Component, run_component

NODE = "proc-node"


@dataclass
class Node:
    cluster: Cluster
    root: Path
    manifests: Path
    port: int
    kubelet: Component

    def start_kubelet(self) -> None:
        self.kubelet = _kubelet(self.cluster, self.root, self.manifests, self.port)

    def pod(self, name: str, namespace: str = "default") -> Any:
        return self.cluster.kubectl_json("get", "pod", name, "-n", namespace)

    def status(self, name: str, namespace: str = "default") -> dict[str, Any]:
        return self.pod(name, namespace).get("status") or {}

    def container_state(self, name: str, container: str | None = None) -> dict[str, Any]:
        for s in self.status(name).get("containerStatuses") or []:
            if container is None or s["name"] == container:
                return s
        return {}

    def process_pid(self, container: str) -> int:
        """The pid of the running container process named ``container`` (from the runtime's state)."""
        for f in (self.root / "process" / "containers").glob("*.json"):
            d = json.loads(f.read_text())
            if d["config"]["name"] == container and d["state"] == 1:
                return int(d["pid"])
        raise LookupError(container)


def _kubelet(cluster: Cluster, root: Path, manifests: Path, port: int) -> Component:
    k = run_component(
        cluster, "kubelet", "kubelet", "--runtime", "process", "--node-name", NODE, "--root-dir", str(root),
        "--pod-manifest-path", str(manifests), "--port", str(port),
    )
    wait_for(lambda: "registered" in k.log() or k.proc.poll() is not None, timeout=30, what="kubelet")
    if k.proc.poll() is not None:
        raise RuntimeError(f"kubelet exited:\n{k.log()}")
    return k


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    data = tmp_path_factory.mktemp("kubelet-process")
    cluster = start_cluster(data / "up", extra=("--disable-scheduler", "--controllers", "serviceaccount,root-ca-cert-publisher"))
    root, manifests, port = data / "kubelet", data / "manifests", free_port()
    n = Node(cluster, root, manifests, port, _kubelet(cluster, root, manifests, port))
    yield n
    n.kubelet.stop()
    cluster.stop()
    asyncio.run(killall(root))  # container processes and volumes outlive the kubelet by design


def _apply(node: Node, name: str, spec: dict[str, Any], namespace: str = "default", **meta: Any) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, **meta},
        "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 5, **spec},
    }
    node.cluster.kubectl("apply", "-f", "-", input=json.dumps(pod))


def _sh(script: str, name: str = "main", **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": "busybox", "command": ["sh", "-c", script], **extra}


def test_node_registers_with_lease_and_capacity(node: Node) -> None:
    n = node.cluster.kubectl_json("get", "node", NODE)
    conds = {c["type"]: c for c in n["status"]["conditions"]}
    assert conds["Ready"]["status"] == "True" and conds["Ready"]["reason"] == "KubeletReady"
    assert conds["MemoryPressure"]["status"] == "False"
    assert int(n["status"]["capacity"]["cpu"]) == os.cpu_count()
    assert n["status"]["capacity"]["pods"] == "110"
    assert n["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"] == node.port
    assert n["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("k8py-process://")
    assert n["metadata"]["labels"]["kubernetes.io/hostname"] == NODE
    lease = node.cluster.kubectl_json("get", "lease", NODE, "-n", "kube-node-lease")
    assert lease["spec"]["holderIdentity"] == NODE
    assert lease["metadata"]["ownerReferences"][0]["kind"] == "Node"
    out = node.cluster.kubectl("get", "node", NODE, "-o", "wide").stdout
    assert "Ready" in out and "k8py-process://" in out


def test_pod_runs_and_reports_full_status(node: Node) -> None:
    _apply(node, "runs", {"containers": [_sh("echo hello; echo oops >&2; exec sleep 600")]})
    wait_for(lambda: node.status("runs").get("phase") == "Running", timeout=15, what="pod running")
    st = node.status("runs")
    conds = {c["type"]: c["status"] for c in st["conditions"]}
    for ctype in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady"):
        assert conds[ctype] == "True", ctype
    node_ip = next(a["address"] for a in node.cluster.kubectl_json("get", "node", NODE)["status"]["addresses"]
                   if a["type"] == "InternalIP")
    assert st["hostIP"] == node_ip and st["podIP"] == node_ip and st["qosClass"] == "BestEffort"
    cs = st["containerStatuses"][0]
    assert cs["ready"] and cs["started"] and cs["restartCount"] == 0
    assert cs["containerID"].startswith("process://") and "running" in cs["state"]
    row = node.cluster.kubectl("get", "pod", "runs").stdout.splitlines()[1].split()
    assert row[1:3] == ["1/1", "Running"]
    uid = node.pod("runs")["metadata"]["uid"]
    log = node.root / "logs" / "pods" / f"default_runs_{uid}" / "main" / "0.log"
    wait_for(lambda: log.exists() and b"stderr F oops" in log.read_bytes(), timeout=5, what="CRI log")
    lines = log.read_bytes().splitlines()
    assert any(line.endswith(b" stdout F hello") for line in lines)
    assert all(line[:4].isdigit() and (b"Z stdout " in line or b"Z stderr " in line) for line in lines)


def test_init_containers_then_failure_with_restart_never(node: Node) -> None:
    _apply(node, "never", {
        "restartPolicy": "Never",
        "initContainers": [_sh("echo one", "init1"), _sh("echo two", "init2")],
        "containers": [_sh("exit 3")],
    })
    wait_for(lambda: node.status("never").get("phase") == "Failed", timeout=15, what="pod failed")
    st = node.status("never")
    assert [s["state"]["terminated"]["reason"] for s in st["initContainerStatuses"]] == ["Completed", "Completed"]
    term = st["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == 3 and term["reason"] == "Error"
    assert node.cluster.kubectl("get", "pod", "never").stdout.split("\n")[1].split()[2] == "Error"


def test_failed_init_container_fails_never_pod(node: Node) -> None:
    _apply(node, "badinit", {"restartPolicy": "Never", "initContainers": [_sh("exit 1", "init")],
                             "containers": [_sh("exit 0")]})
    wait_for(lambda: node.status("badinit").get("phase") == "Failed", timeout=15, what="pod failed")
    st = node.status("badinit")
    assert "terminated" not in st["containerStatuses"][0]["state"]  # the app container never ran
    assert node.cluster.kubectl("get", "pod", "badinit").stdout.split("\n")[1].split()[2] == "Init:Error"


def test_job_style_pod_succeeds(node: Node) -> None:
    _apply(node, "done", {"restartPolicy": "OnFailure", "containers": [_sh("echo ok")]})
    wait_for(lambda: node.status("done").get("phase") == "Succeeded", timeout=15, what="pod succeeded")
    conds = {c["type"]: c for c in node.status("done")["conditions"]}
    assert conds["Ready"]["status"] == "False" and conds["Ready"]["reason"] == "PodCompleted"


def test_crash_loop_back_off_timing(node: Node) -> None:
    """Restart 1 at once, restart 2 only after the 10 s back-off (then 20 s)."""
    _apply(node, "crash", {"containers": [_sh("echo crashing; exit 1")]})
    wait_for(lambda: node.container_state("crash").get("restartCount") == 1, timeout=15, what="restart 1")
    t1 = time.monotonic()
    wait_for(
        lambda: (node.container_state("crash").get("state") or {}).get("waiting", {}).get("reason") == "CrashLoopBackOff",
        timeout=5, what="CrashLoopBackOff",
    )
    cs = node.container_state("crash")
    assert "back-off 10s restarting failed container=main" in cs["state"]["waiting"]["message"]
    assert cs["lastState"]["terminated"]["exitCode"] == 1
    assert "CrashLoopBackOff" in node.cluster.kubectl("get", "pod", "crash").stdout
    wait_for(lambda: node.container_state("crash").get("restartCount") == 2, timeout=20, what="restart 2")
    assert time.monotonic() - t1 >= 8.5
    events = node.cluster.kubectl("get", "events", "--field-selector", "involvedObject.name=crash").stdout
    assert "BackOff" in events


def test_container_without_command_fails_clearly(node: Node) -> None:
    _apply(node, "nocmd", {"containers": [{"name": "main", "image": "nginx"}]})
    wait_for(
        lambda: (node.container_state("nocmd").get("state") or {}).get("waiting", {}).get("reason") == "CreateContainerError",
        timeout=15, what="CreateContainerError",
    )
    msg = node.container_state("nocmd")["state"]["waiting"]["message"]
    assert "nginx" in msg and "command" in msg


def test_graceful_deletion_sigterm_then_sigkill(node: Node, tmp_path: Path) -> None:
    marker = tmp_path / "got-term"
    _apply(node, "graceful", {
        "terminationGracePeriodSeconds": 2,
        "containers": [
            _sh(f"trap 'touch {marker}' TERM; while true; do sleep 0.1; done", "stubborn"),
        ],
    })
    wait_for(lambda: node.status("graceful").get("phase") == "Running", timeout=15, what="running")
    pid = node.process_pid("stubborn")
    t0 = time.monotonic()
    node.cluster.kubectl("delete", "pod", "graceful", "--wait=true", timeout=30)
    elapsed = time.monotonic() - t0
    assert marker.exists()  # SIGTERM first
    assert 1.5 <= elapsed < 10  # then SIGKILL after the 2 s grace period
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), timeout=5, what="process gone")


def test_static_pod_mirror_restart_and_removal(node: Node) -> None:
    node.manifests.mkdir(parents=True, exist_ok=True)
    manifest = node.manifests / "static-web.yaml"
    manifest.write_text(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: static-web\n  namespace: kube-system\n"
        "spec:\n  containers:\n  - name: web\n    image: none\n    command: [sh, -c, 'exec sleep 600']\n"
    )
    name = f"static-web-{NODE}"
    wait_for(lambda: node.status(name, "kube-system").get("phase") == "Running", timeout=15, what="mirror pod")
    mirror = node.pod(name, "kube-system")
    ann = mirror["metadata"]["annotations"]
    assert ann["kubernetes.io/config.source"] == "file"
    assert ann["kubernetes.io/config.mirror"] == ann["kubernetes.io/config.hash"]
    assert mirror["metadata"]["ownerReferences"][0]["kind"] == "Node"
    # its process killed: the kubelet restarts it
    os.kill(node.process_pid("web"), signal.SIGKILL)
    wait_for(
        lambda: (node.pod(name, "kube-system")["status"]["containerStatuses"][0]["restartCount"] == 1
                 and node.status(name, "kube-system")["containerStatuses"][0].get("ready")),
        timeout=15, what="static pod restarted",
    )
    # the mirror pod deleted: the kubelet recreates it, the pod itself keeps running
    pid = node.process_pid("web")
    old_uid = mirror["metadata"]["uid"]
    node.cluster.kubectl("delete", "pod", name, "-n", "kube-system", "--wait=false")
    wait_for(lambda: node.pod(name, "kube-system")["metadata"]["uid"] != old_uid, timeout=15, what="mirror back")
    assert node.process_pid("web") == pid
    # the manifest removed: the pod stops and its mirror goes
    manifest.unlink()
    wait_for(
        lambda: node.cluster.kubectl("get", "pod", name, "-n", "kube-system", check=False).returncode != 0,
        timeout=15, what="mirror deleted",
    )
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), timeout=10, what="static pod stopped")


def test_kubelet_restart_adopts_running_containers(node: Node) -> None:
    _apply(node, "adopted", {"containers": [_sh("exec sleep 600", "kept")]})
    _apply(node, "orphan", {"containers": [_sh("exec sleep 601", "orphaned")]})
    for name in ("adopted", "orphan"):
        wait_for(lambda n=name: node.status(n).get("phase") == "Running", timeout=15, what=f"{name} running")
    pid, orphan_pid = node.process_pid("kept"), node.process_pid("orphaned")
    before = node.container_state("adopted")
    node.kubelet.stop()
    assert Path(f"/proc/{pid}").exists()  # containers outlive their kubelet
    # a pod deleted for good while the kubelet is down: its containers go when the kubelet returns
    node.cluster.kubectl("delete", "pod", "orphan", "--grace-period=0", "--force", "--wait=false")
    node.start_kubelet()
    wait_for(lambda: not Path(f"/proc/{orphan_pid}").exists(), timeout=15, what="orphan stopped")
    after = node.container_state("adopted")
    assert after["containerID"] == before["containerID"] and after["restartCount"] == 0
    assert node.process_pid("kept") == pid


def test_memory_pressure_evicts_a_pod(node: Node, tmp_path: Path) -> None:
    """A node whose threshold is always crossed reports MemoryPressure and evicts its pods."""
    name = "pressured-node"
    k = run_component(
        node.cluster, "kubelet-pressure", "kubelet", "--runtime", "process", "--node-name", name,
        "--root-dir", str(tmp_path / "root"), "--port", "0",
        "--eviction-hard", "memory.available<100000Gi", "--eviction-interval", "0.5",
    )
    try:
        wait_for(lambda: "registered" in k.log() or k.proc.poll() is not None, timeout=30, what="kubelet")
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "evictee", "namespace": "default"},
               "spec": {"nodeName": name, "containers": [_sh("exec sleep 600")]}}
        node.cluster.kubectl("apply", "-f", "-", input=json.dumps(pod))
        wait_for(lambda: node.status("evictee").get("phase") == "Failed", timeout=20, what="evicted")
        st = node.status("evictee")
        assert st["reason"] == "Evicted" and st["message"].startswith("The node was low on resource: memory.")
        assert {"type": "DisruptionTarget", "status": "True"}.items() <= next(
            c for c in st["conditions"] if c["type"] == "DisruptionTarget").items()
        conds = {c["type"]: c for c in node.cluster.kubectl_json("get", "node", name)["status"]["conditions"]}
        assert conds["MemoryPressure"]["status"] == "True"
        assert conds["MemoryPressure"]["reason"] == "KubeletHasInsufficientMemory"
        events = node.cluster.kubectl("get", "events", "--field-selector", "involvedObject.name=evictee").stdout
        assert "Evicted" in events
    finally:
        k.stop()
        asyncio.run(killall(tmp_path / "root"))


def test_sidecar_and_lifecycle_hooks(node: Node, tmp_path: Path) -> None:
    """A sidecar (restartable init container) starts before the app container and keeps running;
    postStart runs after the start, preStop before the stop."""
    started, stopping = tmp_path / "post-start", tmp_path / "pre-stop"
    _apply(node, "hooked", {
        "initContainers": [_sh("exec sleep 600", "sidecar", restartPolicy="Always")],
        "containers": [_sh("exec sleep 600", "main", lifecycle={
            "postStart": {"exec": {"command": ["touch", str(started)]}},
            "preStop": {"exec": {"command": ["touch", str(stopping)]}},
        })],
    })
    wait_for(lambda: node.status("hooked").get("phase") == "Running" and all(
        c.get("ready") for c in node.status("hooked").get("containerStatuses") or [{}]), timeout=15, what="running")
    st = node.status("hooked")
    sidecar = st["initContainerStatuses"][0]
    assert "running" in sidecar["state"] and sidecar["started"] and sidecar["ready"]
    assert sidecar["state"]["running"]["startedAt"] <= st["containerStatuses"][0]["state"]["running"]["startedAt"]
    assert started.exists()
    assert node.cluster.kubectl("get", "pod", "hooked").stdout.split("\n")[1].split()[1] == "2/2"
    node.cluster.kubectl("delete", "pod", "hooked", "--wait=true", timeout=30)
    assert stopping.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="mount namespaces need root")
def test_volumes_are_mounted_where_the_container_wants_them(node: Node, tmp_path: Path) -> None:
    """As root, a container's mounts (a ConfigMap read-only at a path of its choosing, the service
    account token) are bind-mounted in a mount namespace of its own: the host sees none of them."""
    target = Path(f"/tmp/k8pytest-mnt-{os.getpid()}")
    node.cluster.kubectl("create", "configmap", "mounted", "--from-literal=greeting=hello")
    wait_for(lambda: node.cluster.kubectl("get", "sa", "default", check=False).returncode == 0, timeout=10, what="SA")
    out = tmp_path / "seen"
    script = (f"cat {target}/cfg/greeting > {out}; echo >> {out}; "
              f"cat /var/run/secrets/kubernetes.io/serviceaccount/namespace >> {out}; echo >> {out}; "
              f"touch {target}/cfg/x 2>/dev/null || echo read-only >> {out}; exec sleep 600")
    try:
        _apply(node, "mounted", {
            "containers": [_sh(script, volumeMounts=[{"name": "cfg", "mountPath": f"{target}/cfg", "readOnly": True}])],
            "volumes": [{"name": "cfg", "configMap": {"name": "mounted"}}],
        })
        wait_for(lambda: out.exists() and out.read_text().count("\n") >= 3, timeout=15, what="the container's view")
        assert out.read_text().splitlines() == ["hello", "default", "read-only"]
        mounts = Path("/proc/self/mountinfo").read_text()
        assert f" {target}/cfg " not in mounts and "serviceaccount" not in mounts
    finally:
        node.cluster.kubectl("delete", "pod", "mounted", "--grace-period=0", "--force", check=False)
        node.cluster.kubectl("delete", "configmap", "mounted", check=False)
        if target.exists():
            (target / "cfg").rmdir()
            target.rmdir()
