"""`k8py up --runtime cri` end to end: k8py's own containerd + runc + CNI, the offline busybox
image, driven with the real kubectl (root and the Debian packages needed; skipped otherwise)."""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from k8py.kubelet.app import killall
from k8py.kubelet.runtime.cri.containerd import Containerd
from k8py.kubelet.runtime.cri.imagebuild import build_busybox_image
from tests.conftest import KUBECTL, Cluster, free_port, start_cluster, wait_for

pytestmark = pytest.mark.skipif(
    not Containerd.available(), reason="needs root and containerd, runc and the CNI plugins (scripts/install-node-deps.sh)"
)


@pytest.fixture(scope="module")
def cri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    data = tmp_path_factory.mktemp("kubelet-cri")
    images = data / "kubelet" / "images"
    images.mkdir(parents=True)
    build_busybox_image(images / "busybox.tar")
    cluster = start_cluster(data, kubelet=True, extra=("--runtime", "cri"))
    try:
        wait_for(lambda: _node_ready(cluster), timeout=60, what="node Ready with a pod CIDR")
        yield cluster
    finally:
        cluster.stop()
        asyncio.run(killall(data / "kubelet"))


def _node_ready(cluster: Cluster) -> bool:
    nodes = cluster.kubectl_json("get", "nodes")["items"]
    return bool(nodes) and bool(nodes[0]["spec"].get("podCIDR")) and any(
        c["type"] == "Ready" and c["status"] == "True" for c in nodes[0]["status"]["conditions"]
    )


def _apply(cluster: Cluster, *objs: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objs)}))


def _pod(name: str, containers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    for c in containers:
        c.setdefault("image", "busybox")
        c.setdefault("imagePullPolicy", "IfNotPresent")
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": containers, **spec}}


def _status(cluster: Cluster, name: str) -> dict[str, Any]:
    return cluster.kubectl_json("get", "pod", name).get("status") or {}


def _log_file(cluster: Cluster, name: str, container: str, attempt: int = 0) -> Path:
    uid = cluster.kubectl_json("get", "pod", name)["metadata"]["uid"]
    return cluster.data_dir / "kubelet" / "logs" / "pods" / f"default_{name}_{uid}" / container / f"{attempt}.log"


def test_node_reports_containerd(cri: Cluster) -> None:
    node = cri.kubectl_json("get", "nodes")["items"][0]
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")
    names = {n for img in node["status"]["images"] for n in img["names"]}
    assert "docker.io/library/busybox:latest" in names


def test_deployment_of_busybox_httpd_becomes_ready(cri: Cluster) -> None:
    deploy = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "httpd"},
        "spec": {
            "replicas": 2, "selector": {"matchLabels": {"app": "httpd"}},
            "template": {
                "metadata": {"labels": {"app": "httpd"}},
                "spec": {"containers": [{
                    "name": "httpd", "image": "busybox", "imagePullPolicy": "IfNotPresent",
                    "command": ["sh", "-c", "echo hello from $(hostname) > /www/index.html; exec httpd -f -p 8080 -h /www"],
                    "volumeMounts": [{"name": "www", "mountPath": "/www"}],
                    "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1},
                }], "volumes": [{"name": "www", "emptyDir": {}}]},
            },
        },
    }
    _apply(cri, deploy)
    cri.kubectl("rollout", "status", "deployment/httpd", "--timeout=60s", timeout=70)
    pods = cri.kubectl_json("get", "pods", "-l", "app=httpd")["items"]
    cidr = ipaddress.ip_network(cri.kubectl_json("get", "nodes")["items"][0]["spec"]["podCIDR"])
    for p in pods:
        ip = p["status"]["podIP"]
        assert ipaddress.ip_address(ip) in cidr
        body = urllib.request.urlopen(f"http://{ip}:8080/", timeout=5).read().decode()
        assert body == f"hello from {p['metadata']['name']}\n"
        cs = p["status"]["containerStatuses"][0]
        assert cs["containerID"].startswith("containerd://") and cs["imageID"]


def test_service_and_cluster_dns_from_a_pod(cri: Cluster) -> None:
    """The node add-ons (kube-proxy, network agent, DNS as static pods on the process runtime):
    a pod resolves a Service by name and reaches it through its ClusterIP."""
    node = cri.kubectl_json("get", "nodes")["items"][0]["metadata"]["name"]
    for addon in ("kube-proxy", "k8py-network", "k8py-dns"):
        wait_for(lambda a=addon: (cri.kubectl_json("get", "pod", f"{a}-{node}", "-n", "kube-system").get("status")
                                  or {}).get("phase") == "Running", timeout=30, what=f"{addon} running")
    cri.kubectl("expose", "deployment", "httpd", "--port", "80", "--target-port", "8080")
    ip = cri.kubectl_json("get", "service", "httpd")["spec"]["clusterIP"]
    client = cri.kubectl_json("get", "pods", "-l", "app=httpd")["items"][0]["metadata"]["name"]
    looked_up = wait_for(
        lambda: (r := cri.kubectl("exec", client, "--", "nslookup", "httpd.default.svc.cluster.local", check=False))
        .returncode == 0 and ip in r.stdout and r.stdout,
        timeout=30, what="the Service's name resolved in the pod",
    )
    assert "10.96.0.10" in looked_up  # the kube-dns ClusterIP answered
    # wget resolves the name itself (through the pod's resolv.conf) and goes through the ClusterIP
    request = ["timeout", "5", "wget", "-qO-", "http://httpd.default.svc.cluster.local/"]
    body = wait_for(
        lambda: (r := cri.kubectl("exec", client, "--", *request, check=False)).returncode == 0 and r.stdout,
        timeout=30, what="the Service reached by name from a pod",
    )
    assert body.startswith("hello from httpd-"), body
    # and the API server through the kubernetes Service
    reach_api = "nc -w 3 10.96.0.1 443 </dev/null && echo connected"
    assert "connected" in wait_for(
        lambda: cri.kubectl("exec", client, "--", "sh", "-c", reach_api, check=False).stdout,
        timeout=30, what="the kubernetes Service reached from a pod",
    )


def test_kubelet_managed_etc_hosts(cri: Cluster) -> None:
    """/etc/hosts is the kubelet's (upstream's text): the pod's IP with its FQDN and hostname, then
    hostAliases; in an init container too; a container mounting a volume at /etc/hosts keeps it."""
    serve = "mkdir -p /www; echo served > /www/index.html; exec httpd -f -p 8080 -h /www"
    _apply(
        cri,
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "own-hosts"},
         "data": {"hosts": "127.0.0.1\tmine\n"}},
        _pod("hosted", [
            {"name": "main", "command": ["sh", "-c", serve]},
            {"name": "own", "command": ["sleep", "600"],
             "volumeMounts": [{"name": "own", "mountPath": "/etc/hosts", "subPath": "hosts"}]},
        ], hostname="db-0", subdomain="db",
            hostAliases=[{"ip": "127.0.0.1", "hostnames": ["foo.local", "bar.local"]},
                         {"ip": "10.1.2.3", "hostnames": ["foo.remote"]}],
            initContainers=[{"name": "init", "image": "busybox", "imagePullPolicy": "IfNotPresent",
                             "command": ["cat", "/etc/hosts"]}],
            volumes=[{"name": "own", "configMap": {"name": "own-hosts"}}]),
    )
    wait_for(lambda: _running(cri, "hosted"), timeout=30, what="pod hosted running")
    ip = _status(cri, "hosted")["podIP"]
    expected = (
        "# Kubernetes-managed hosts file.\n"
        "127.0.0.1\tlocalhost\n"
        "::1\tlocalhost ip6-localhost ip6-loopback\n"
        "fe00::0\tip6-localnet\n"
        "fe00::0\tip6-mcastprefix\n"
        "fe00::1\tip6-allnodes\n"
        "fe00::2\tip6-allrouters\n"
        f"{ip}\tdb-0.db.default.svc.cluster.local\tdb-0\n"
        "\n"
        "# Entries added by HostAliases.\n"
        "127.0.0.1\tfoo.local\tbar.local\n"
        "10.1.2.3\tfoo.remote\n"
    )
    assert cri.kubectl("exec", "hosted", "-c", "main", "--", "cat", "/etc/hosts").stdout == expected
    assert cri.kubectl("logs", "hosted", "-c", "init").stdout == expected
    assert cri.kubectl("exec", "hosted", "-c", "own", "--", "cat", "/etc/hosts").stdout == "127.0.0.1\tmine\n"
    assert cri.kubectl("exec", "hosted", "-c", "main", "--", "hostname").stdout == "db-0\n"
    # the names resolve from the file (no DNS has them): each reaches the pod's own httpd

    def get(name: str) -> str:
        cmd = ["timeout", "5", "wget", "-qO-", f"http://{name}:8080/"]
        return cri.kubectl("exec", "hosted", "-c", "main", "--", *cmd, check=False).stdout

    for name in ("db-0", "db-0.db.default.svc.cluster.local", "bar.local"):
        assert wait_for(functools.partial(get, name), timeout=15, what=f"httpd reached as {name}") == "served\n", name


def test_configmap_and_secret_volumes_and_env(cri: Cluster) -> None:
    _apply(
        cri,
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"greeting": "hi", "mode": "fast"}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "sec"}, "stringData": {"password": "s3cret"}},
        _pod("consumer", [{
            "name": "main",
            "command": ["sh", "-c", "cat /cfg/greeting; echo; cat /sec/password; echo; echo env $MODE $PASS $POD_NAME; "
                        "cat /var/run/secrets/kubernetes.io/serviceaccount/namespace; echo; exec sleep 600"],
            "env": [
                {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode"}}},
                {"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "password"}}},
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            ],
            "volumeMounts": [{"name": "cfg", "mountPath": "/cfg"}, {"name": "sec", "mountPath": "/sec"}],
        }], volumes=[{"name": "cfg", "configMap": {"name": "cfg"}}, {"name": "sec", "secret": {"secretName": "sec"}}]),
    )
    log = wait_for(lambda: _log_file(cri, "consumer", "main"), timeout=30, what="log file")
    wait_for(lambda: log.exists() and b"stdout F default" in log.read_bytes(), timeout=30, what="output")
    lines = [line.split(b" ", 3)[3].decode() for line in log.read_bytes().splitlines()]
    assert lines[:4] == ["hi", "s3cret", "env fast s3cret consumer", "default"]


def test_liveness_probe_failure_restarts_container(cri: Cluster) -> None:
    _apply(cri, _pod("unhealthy", [{
        "name": "main",
        "command": ["sh", "-c", "echo run $(cat /proc/sys/kernel/random/uuid); touch /tmp/healthy; sleep 2; "
                    "rm /tmp/healthy; exec sleep 600"],
        "livenessProbe": {"exec": {"command": ["test", "-f", "/tmp/healthy"]}, "periodSeconds": 1, "failureThreshold": 1},
    }]))
    wait_for(lambda: (_status(cri, "unhealthy").get("containerStatuses") or [{}])[0].get("restartCount", 0) >= 1,
             timeout=40, what="restart after liveness failure")
    cs = _status(cri, "unhealthy")["containerStatuses"][0]
    assert cs["lastState"]["terminated"]["exitCode"] == 137
    events = cri.kubectl("get", "events", "--field-selector", "involvedObject.name=unhealthy").stdout
    assert "Liveness probe failed" in events and "Killing" in events
    assert _log_file(cri, "unhealthy", "main", 0).exists()  # the previous run's log is kept


def test_oom_killed_container(cri: Cluster) -> None:
    _apply(cri, _pod("hog", [{
        "name": "main",
        "command": ["sh", "-c", "x=$(head -c 200m /dev/zero | tr '\\0' a); echo survived"],
        "resources": {"limits": {"memory": "32Mi"}},
    }], restartPolicy="Never"))
    wait_for(lambda: _status(cri, "hog").get("phase") == "Failed", timeout=60, what="pod failed")
    term = _status(cri, "hog")["containerStatuses"][0]["state"]["terminated"]
    assert term["reason"] == "OOMKilled" and term["exitCode"] == 137
    assert "OOMKilled" in cri.kubectl("get", "pod", "hog").stdout


def test_job_pod_completes(cri: Cluster) -> None:
    job = {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "once"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
            {"name": "main", "image": "busybox", "imagePullPolicy": "IfNotPresent", "command": ["sh", "-c", "echo done"]},
        ]}}},
    }
    _apply(cri, job)
    cri.kubectl("wait", "--for=condition=Complete", "job/once", "--timeout=60s", timeout=70)
    pod = cri.kubectl_json("get", "pods", "-l", "job-name=once")["items"][0]
    assert pod["status"]["phase"] == "Succeeded"


def _popen_kubectl(cluster: Cluster, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "HOME": str(cluster.data_dir)}
    return subprocess.Popen([KUBECTL, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _stop(proc: subprocess.Popen[str]) -> str:
    """Interrupt a long-running kubectl; its stderr."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err


def _running(cluster: Cluster, name: str) -> bool:
    statuses = _status(cluster, name).get("containerStatuses") or []
    return bool(statuses) and all("running" in cs["state"] for cs in statuses)


def _ticker(cluster: Cluster) -> None:
    """A pod that writes a numbered line every 0.2 s."""
    script = "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done"
    _apply(cluster, _pod("ticker", [{"name": "main", "command": ["sh", "-c", script]}]))
    wait_for(lambda: _running(cluster, "ticker"), timeout=30, what="pod ticker running")


def test_kubectl_exec(cri: Cluster) -> None:
    _apply(cri, _pod("shell", [{"name": "main", "command": ["sleep", "600"]}]))
    wait_for(lambda: _running(cri, "shell"), timeout=30, what="pod shell running")
    res = cri.kubectl("exec", "shell", "--", "sh", "-c", "exit 3", check=False)
    assert res.returncode == 3 and "command terminated with exit code 3" in res.stderr, res.stderr
    res = cri.kubectl("exec", "shell", "--", "sh", "-c", "echo out; echo err >&2")
    assert (res.stdout, res.stderr) == ("out\n", "err\n")
    assert cri.kubectl("exec", "-i", "shell", "--", "cat", input="hi\n").stdout == "hi\n"
    assert cri.kubectl("exec", "shell", "--", "hostname").stdout == "shell\n"
    res = cri.kubectl("exec", "shell", "--", "no-such-command", check=False)
    assert res.returncode != 0 and "no-such-command" in res.stderr, res.stderr


def test_kubectl_exec_tty_and_resize(cri: Cluster) -> None:
    """kubectl exec -it on a terminal (script(1) makes one): kubectl's size reaches the container's TTY."""
    _apply(cri, _pod("shell", [{"name": "main", "command": ["sleep", "600"]}]))
    wait_for(lambda: _running(cri, "shell"), timeout=30, what="pod shell running")
    # busybox's stty prints an error (and exits 0) while the terminal is 0x0, until the size arrives
    wait_size = 'i=0; until stty size 2>&1 | grep -q "^[1-9]" || [ $i -ge 200 ]; do sleep 0.05; i=$((i+1)); done; stty size'
    inner = f"stty cols 123 rows 45; {KUBECTL} exec -it shell -- sh -c '{wait_size}; exit 5'"
    env = {**os.environ, "KUBECONFIG": str(cri.kubeconfig), "HOME": str(cri.data_dir)}
    res = subprocess.run(["script", "-qec", inner, "/dev/null"], capture_output=True, text=True, env=env, timeout=30)
    assert res.returncode == 5, res.stdout + res.stderr
    assert "45 123" in res.stdout, res.stdout


def test_kubectl_attach(cri: Cluster) -> None:
    """attach -i to a container with stdin: kubectl's input reaches `cat`; stdinOnce ends it with the input."""
    _apply(cri, _pod("reader", [{"name": "main", "command": ["cat"], "stdin": True, "stdinOnce": True}],
                     restartPolicy="Never"))
    wait_for(lambda: _running(cri, "reader"), timeout=30, what="pod reader running")
    res = cri.kubectl("attach", "-i", "reader", input="hello through attach\n")
    assert "hello through attach" in res.stdout, res.stdout + res.stderr
    wait_for(lambda: _status(cri, "reader").get("phase") == "Succeeded", timeout=30, what="cat to exit")
    # Output only: attach follows what the container writes from now on.
    _ticker(cri)
    proc = _popen_kubectl(cri, "attach", "ticker")
    try:
        assert proc.stdout is not None
        first, second = proc.stdout.readline(), proc.stdout.readline()
        assert first.startswith("tick ") and int(second.split()[1]) == int(first.split()[1]) + 1, (first, second)
    finally:
        _stop(proc)


def test_kubectl_port_forward_to_httpd(cri: Cluster) -> None:
    cri.kubectl("rollout", "status", "deployment/httpd", "--timeout=60s", timeout=70)
    pod = cri.kubectl_json("get", "pods", "-l", "app=httpd")["items"][0]["metadata"]["name"]
    local = free_port()
    proc = _popen_kubectl(cri, "port-forward", f"pod/{pod}", f"{local}:8080")
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith(f"Forwarding from 127.0.0.1:{local} -> 8080"), line
        for _ in range(3):  # a connection each: a new pair of streams each
            body = urllib.request.urlopen(f"http://127.0.0.1:{local}/", timeout=10).read().decode()
            assert body == f"hello from {pod}\n"
        assert proc.poll() is None
    finally:
        err = _stop(proc)
    assert "error" not in err.lower(), err


def test_kubectl_logs_follow_and_previous(cri: Cluster) -> None:
    """On the liveness-restarted pod: each run logs its own id; --previous shows the run before."""
    run = re.compile(r"^run [0-9a-f-]{36}\n$")

    def previous_and_current() -> tuple[str, str] | None:
        cs = (_status(cri, "unhealthy").get("containerStatuses") or [{}])[0]
        if cs.get("restartCount", 0) < 1:
            return None
        # Previous first: a restart in between only makes the current run newer still.
        previous = cri.kubectl("logs", "unhealthy", "--previous").stdout
        current = cri.kubectl("logs", "unhealthy").stdout
        return (previous, current) if previous != current else None

    previous, current = wait_for(previous_and_current, timeout=60, what="a restarted container's logs")
    assert run.match(previous) and run.match(current), (previous, current)
    res = cri.kubectl("logs", "unhealthy", "--timestamps", "--tail=1")
    assert re.match(r"^\d{4}-\d\d-\d\dT[\d:.]+Z run ", res.stdout), res.stdout
    # -f streams what the container writes while it runs.
    _ticker(cri)
    proc = _popen_kubectl(cri, "logs", "-f", "--tail=1", "ticker")
    try:
        assert proc.stdout is not None
        ticks = [int(proc.stdout.readline().split()[1]) for _ in range(4)]
        assert ticks == list(range(ticks[0], ticks[0] + 4)), ticks
    finally:
        _stop(proc)


def test_missing_image_err_image_pull_then_back_off(cri: Cluster) -> None:
    _apply(cri, _pod("noimage", [{"name": "main", "image": "127.0.0.1:1/k8py/none:1", "command": ["true"]}]))

    def reason() -> str:
        cs = (_status(cri, "noimage").get("containerStatuses") or [{}])[0]
        return ((cs.get("state") or {}).get("waiting") or {}).get("reason", "")

    # ErrImagePull shows for about a second, until the next sync finds the pull backing off
    wait_for(lambda: reason() in ("ErrImagePull", "ImagePullBackOff"), timeout=30, what="ErrImagePull")
    wait_for(lambda: reason() == "ImagePullBackOff", timeout=30, what="ImagePullBackOff")
    events = cri.kubectl("get", "events", "--field-selector", "involvedObject.name=noimage").stdout
    assert "Failed to pull image" in events and "Back-off pulling image" in events


def test_image_import_and_ls_commands(cri: Cluster, tmp_path: Path) -> None:
    tar = tmp_path / "tools.tar"
    build_busybox_image(tar, ref="k8py.test/tools:1.0")
    out = subprocess.run([sys.executable, "-m", "k8py.cli", "image", "import", str(tar), "--data-dir", str(cri.data_dir)],
                         capture_output=True, text=True, check=True).stdout
    assert "k8py.test/tools:1.0" in out
    listed = subprocess.run([sys.executable, "-m", "k8py.cli", "image", "ls", "--data-dir", str(cri.data_dir)],
                            capture_output=True, text=True, check=True).stdout.split()
    assert {"docker.io/library/busybox:latest", "k8py.test/tools:1.0", "k8py.local/pause:3.10"} <= set(listed)
    _apply(cri, _pod("tools", [{"name": "main", "image": "k8py.test/tools:1.0", "imagePullPolicy": "Never",
                                 "command": ["sh", "-c", "exec sleep 600"]}]))
    wait_for(lambda: _status(cri, "tools").get("phase") == "Running", timeout=30, what="pod on the imported image")


def test_static_pod_on_the_process_runtime(cri: Cluster) -> None:
    """Control-plane style: a static pod with no image, run as a host process via RuntimeClass `process`."""
    manifest = cri.data_dir / "manifests" / "hostproc.yaml"
    manifest.write_text(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: hostproc\n  namespace: kube-system\n"
        "spec:\n  runtimeClassName: process\n  containers:\n  - name: main\n    image: none\n"
        "    command: [sh, -c, 'exec sleep 600']\n"
    )
    node = cri.kubectl_json("get", "nodes")["items"][0]["metadata"]["name"]
    name = f"hostproc-{node}"
    try:
        wait_for(
            lambda: (cri.kubectl_json("get", "pod", name, "-n", "kube-system").get("status") or {}).get("phase") == "Running",
            timeout=30, what="static pod running",
        )
        cs = cri.kubectl_json("get", "pod", name, "-n", "kube-system")["status"]["containerStatuses"][0]
        assert cs["containerID"].startswith("process://")
    finally:
        manifest.unlink()
    wait_for(lambda: cri.kubectl("get", "pod", name, "-n", "kube-system", check=False).returncode != 0,
             timeout=30, what="mirror pod deleted")


def test_restarted_node_adopts_its_containers(cri: Cluster) -> None:
    """`k8py up` stopped and started again: running pods keep their containers (k3s' behaviour).
    Runs last in this module: it restarts the module's cluster."""
    before = {p["metadata"]["name"]: p["status"]["containerStatuses"][0]
              for p in cri.kubectl_json("get", "pods", "-l", "app=httpd")["items"]}
    cri.stop()
    again = start_cluster(cri.data_dir, port=cri.port, kubelet=True, extra=("--runtime", "cri"))
    try:
        wait_for(lambda: _node_ready(again), timeout=60, what="node Ready again")
        again.kubectl("rollout", "status", "deployment/httpd", "--timeout=30s", timeout=40)
        after = {p["metadata"]["name"]: p["status"]["containerStatuses"][0]
                 for p in again.kubectl_json("get", "pods", "-l", "app=httpd")["items"]}
        assert after.keys() == before.keys()
        for name, cs in after.items():
            assert cs["containerID"] == before[name]["containerID"] and cs["restartCount"] == before[name]["restartCount"]
    finally:
        again.stop()
