"""`k8py up --runtime cri` end to end: k8py's own containerd + runc + CNI, the offline busybox
image, driven with the real kubectl (root and the Debian packages needed; skipped otherwise)."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from k8py.kubelet.app import killall
from k8py.kubelet.runtime.cri.containerd import Containerd
from k8py.kubelet.runtime.cri.imagebuild import build_busybox_image
from tests.conftest import Cluster, start_cluster, wait_for

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
        "command": ["sh", "-c", "echo run; touch /tmp/healthy; sleep 2; rm /tmp/healthy; exec sleep 600"],
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
