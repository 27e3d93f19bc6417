"""The resource metrics API (metrics.k8s.io/v1beta1) built into the API server.

Unit tests of the decoding and the two-point storage, on the text the kubelet's ``resource_metrics``
writes; then a real ``k8py up --runtime process`` (scraping every 2 s) with the real
``kubectl top nodes|pods`` and ``kubectl get --raw``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

import k8py.kubelet.app
from k8py.api.validation.quantity import parse_quantity
from k8py.apiserver.metricsserver import MetricsPoint, Storage, decode_batch
from k8py.kubelet.server import resource_metrics
from tests.conftest import Cluster, http, start_cluster, wait_for

S = 10**9  # ns
T0 = 1_700_000_000 * S


def _time(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / S, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _summary(at: int, node_cpu: float, containers: dict[str, tuple[float, int | None]], start: int = T0) -> dict[str, Any]:
    """A Summary with pod default/web; ``containers``: name -> (CPU seconds, working set or None)."""

    def stats(cpu: float, memory: int | None) -> dict[str, Any]:
        out: dict[str, Any] = {"cpu": {"time": _time(at), "usageCoreNanoSeconds": int(cpu * S)}}
        if memory is not None:
            out["memory"] = {"time": _time(at), "workingSetBytes": memory}
        return out

    return {
        "node": {"nodeName": "n1", **stats(node_cpu, 1 << 30)},
        "pods": [{
            "podRef": {"name": "web", "namespace": "default", "uid": "u"},
            "containers": [{"name": n, "startTime": _time(start), **stats(c, m)} for n, (c, m) in containers.items()],
        }],
    }


def _batch(at: int, node_cpu: float, containers: dict[str, tuple[float, int | None]], start: int = T0) -> Any:
    return decode_batch(resource_metrics(_summary(at, node_cpu, containers, start)), at, "n1")


def test_decode_resource_metrics() -> None:
    batch = _batch(T0 + 30 * S, 100.0, {"app": (1.5, 4096), "idle": (0.0, 2048)})
    assert batch.nodes == {"n1": MetricsPoint(timestamp=T0 + 30 * S, cpu=100 * S, memory=1 << 30)}
    assert batch.pods[("default", "web")]["app"] == MetricsPoint(T0 + 30 * S, T0, int(1.5 * S), 4096)
    assert batch.pods[("default", "web")]["idle"].cpu == 0  # kept: the process runtime counts in clock ticks
    # a container without its working set: the pod is incomplete
    assert _batch(T0 + 30 * S, 100.0, {"app": (1.5, 4096), "bad": (1.0, None)}).pods == {}
    # samples without timestamps take the scrape's time
    text = "node_cpu_usage_seconds_total 5\nnode_memory_working_set_bytes 10\n"
    assert decode_batch(text, T0, "n1").nodes["n1"] == MetricsPoint(timestamp=T0, cpu=5 * S, memory=10)


def test_storage_needs_two_points_and_computes_rates() -> None:
    storage = Storage(resolution=15)
    storage.store(_batch(T0 + 100 * S, 100.0, {"app": (10.0, 4096)}))
    assert storage.node("n1") is None and storage.pod("default", "web") is None
    storage.store(_batch(T0 + 115 * S, 103.0, {"app": (10.75, 8192)}))
    node = storage.node("n1")
    assert node is not None and (node.cpu, node.window, node.timestamp) == (200_000_000, 15 * S, T0 + 115 * S)
    assert node.quantities() == {"cpu": "200m", "memory": "1Gi"}
    found = storage.pod("default", "web")
    assert found is not None
    containers, info = found
    assert containers == [{"name": "app", "usage": {"cpu": "50m", "memory": "8Ki"}}]
    assert (info.window, info.timestamp) == (15 * S, T0 + 115 * S)
    # the same point again (a kubelet that did not sample anew): the previous point stays
    storage.store(_batch(T0 + 115 * S, 103.0, {"app": (10.75, 8192)}))
    assert storage.pod("default", "web") is not None
    # a restarted container (started after the stored point) starts over
    storage.store(_batch(T0 + 130 * S, 104.0, {"app": (0.5, 100)}, start=T0 + 125 * S))
    assert storage.pod("default", "web") is None
    assert storage.node("n1") is not None


def test_storage_fresh_container_and_counter_decrease() -> None:
    storage = Storage(resolution=15)
    # started 12 s before its first point (10 s <= age < resolution): a zero point at its start time
    storage.store(_batch(T0 + 12 * S, 100.0, {"app": (0.6, 4096)}))
    found = storage.pod("default", "web")
    assert found is not None and found[0][0]["usage"]["cpu"] == "50m" and found[1].window == 12 * S
    # a counter that went down: that container is skipped
    storage = Storage(resolution=15)
    storage.store(_batch(T0 + 100 * S, 100.0, {"app": (10.0, 4096), "side": (1.0, 1024)}))
    storage.store(_batch(T0 + 115 * S, 101.0, {"app": (9.0, 4096), "side": (1.15, 1024)}))
    found = storage.pod("default", "web")
    assert found is not None and [c["name"] for c in found[0]] == ["side"]


# ---- end to end --------------------------------------------------------------------------------

NS = "metrics"
PODS = textwrap.dedent(f"""\
    apiVersion: v1
    kind: Pod
    metadata: {{name: sleeper, namespace: {NS}, labels: {{app: sleeper}}}}
    spec:
      containers:
      - {{name: main, image: busybox, command: [sleep, "3600"]}}
    ---
    apiVersion: v1
    kind: Pod
    metadata: {{name: busy, namespace: {NS}, labels: {{app: busy}}}}
    spec:
      containers:
      - name: burner
        image: busybox
        command: [sh, -c, 'while true; do i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; sleep 1; done']
      - {{name: idle, image: busybox, command: [sleep, "3600"]}}
    """)


@pytest.fixture(scope="module")
def mcluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = start_cluster(
        tmp_path_factory.mktemp("k8py-metrics"),
        extra=("--runtime", "process", "--metric-resolution", "2",
               "--controllers", "serviceaccount,root-ca-cert-publisher"),
        kubelet=True,
    )
    try:
        c.kubectl("create", "namespace", NS)
        wait_for(lambda: http(c, "GET", f"/api/v1/namespaces/{NS}/serviceaccounts/default").status == 200,
                 what="the default ServiceAccount")
        c.kubectl("apply", "-f", "-", input=PODS)
        yield c
    finally:
        c.stop()
        asyncio.run(k8py.kubelet.app.killall(c.data_dir / "kubelet"))  # pods outlive `k8py up` by design


def _raw(c: Cluster, path: str) -> Any:
    return json.loads(c.kubectl("get", "--raw", f"/apis/metrics.k8s.io/v1beta1{path}").stdout)


def _cpu_nanocores(q: str) -> int:
    parsed = parse_quantity(q)
    assert parsed is not None, q
    return int(parsed.value * S)


@pytest.fixture(scope="module")
def ready(mcluster: Cluster) -> Cluster:
    """Once both pods have metrics and the burner has used CPU in a window."""

    def busy_cpu() -> bool:
        pods = {p["metadata"]["name"]: p for p in _raw(mcluster, f"/namespaces/{NS}/pods")["items"]}
        if set(pods) != {"busy", "sleeper"}:
            return False
        return any(c["name"] == "burner" and _cpu_nanocores(c["usage"]["cpu"]) > 0 for c in pods["busy"]["containers"])

    wait_for(busy_cpu, timeout=90, interval=1, what="pod metrics")
    return mcluster


def test_discovery(mcluster: Cluster) -> None:
    out = mcluster.kubectl("api-resources", "--api-group=metrics.k8s.io").stdout
    lines = [line.split() for line in out.splitlines()[1:]]
    assert ["nodes", "metrics.k8s.io/v1beta1", "false", "NodeMetrics"] in lines
    assert ["pods", "metrics.k8s.io/v1beta1", "true", "PodMetrics"] in lines
    rl = _raw(mcluster, "")
    assert rl["groupVersion"] == "metrics.k8s.io/v1beta1"
    assert {r["name"]: r["verbs"] for r in rl["resources"]} == {"nodes": ["get", "list"], "pods": ["get", "list"]}
    group = json.loads(mcluster.kubectl("get", "--raw", "/apis/metrics.k8s.io").stdout)
    assert group["preferredVersion"]["groupVersion"] == "metrics.k8s.io/v1beta1"


def test_kubectl_top_nodes(ready: Cluster) -> None:
    nodes = ready.kubectl_json("get", "nodes")  # still the core group's
    assert nodes["items"][0]["kind"] == "Node"
    node = nodes["items"][0]["metadata"]["name"]
    out = ready.kubectl("top", "nodes").stdout.splitlines()
    assert out[0].split()[:3] == ["NAME", "CPU(cores)", "CPU(%)"]
    row = out[1].split()
    assert row[0] == node and row[1].endswith("m") and row[3].endswith("Mi")
    metrics = _raw(ready, f"/nodes/{node}")
    assert metrics["kind"] == "NodeMetrics" and metrics["apiVersion"] == "metrics.k8s.io/v1beta1"
    assert metrics["metadata"]["name"] == node and metrics["metadata"]["labels"]["kubernetes.io/hostname"]
    assert set(metrics["usage"]) == {"cpu", "memory"} and metrics["window"].endswith("s")
    dt.datetime.fromisoformat(metrics["timestamp"])
    listed = _raw(ready, f"/nodes?fieldSelector=metadata.name%3D{node}")
    assert listed["kind"] == "NodeMetricsList" and [i["metadata"]["name"] for i in listed["items"]] == [node]
    assert _raw(ready, "/nodes?labelSelector=no-such-label")["items"] == []


def test_kubectl_top_pods(ready: Cluster) -> None:
    out = ready.kubectl("top", "pods", "-n", NS).stdout.splitlines()
    assert out[0].split() == ["NAME", "CPU(cores)", "MEMORY(bytes)"]
    assert [line.split()[0] for line in out[1:]] == ["busy", "sleeper"]
    out = ready.kubectl("top", "pods", "-A").stdout.splitlines()
    assert out[0].split()[:2] == ["NAMESPACE", "NAME"]
    assert [NS, "busy"] in [line.split()[:2] for line in out[1:]]
    out = ready.kubectl("top", "pods", "-n", NS, "-l", "app=sleeper").stdout.splitlines()
    assert [line.split()[0] for line in out[1:]] == ["sleeper"]
    out = ready.kubectl("top", "pods", "-n", NS, "--containers").stdout.splitlines()
    assert out[0].split() == ["POD", "NAME", "CPU(cores)", "MEMORY(bytes)"]
    assert sorted(tuple(line.split()[:2]) for line in out[1:]) == [("busy", "burner"), ("busy", "idle"), ("sleeper", "main")]
    out = ready.kubectl("top", "pod", "sleeper", "-n", NS).stdout.splitlines()
    assert [line.split()[0] for line in out[1:]] == ["sleeper"]


def test_pod_metrics_objects(ready: Cluster) -> None:
    pm = _raw(ready, f"/namespaces/{NS}/pods/busy")
    assert pm["kind"] == "PodMetrics" and pm["metadata"]["namespace"] == NS and pm["metadata"]["labels"] == {"app": "busy"}
    assert {c["name"] for c in pm["containers"]} == {"burner", "idle"}
    assert all(set(c["usage"]) == {"cpu", "memory"} for c in pm["containers"])
    listed = _raw(ready, f"/namespaces/{NS}/pods?fieldSelector=metadata.name%3Dsleeper")
    assert listed["kind"] == "PodMetricsList" and [i["metadata"]["name"] for i in listed["items"]] == ["sleeper"]
    everywhere = _raw(ready, "/pods")["items"]
    assert {(i["metadata"]["namespace"], i["metadata"]["name"]) for i in everywhere} >= {(NS, "busy"), (NS, "sleeper")}
    out = ready.kubectl("get", "podmetrics", "-n", NS).stdout.splitlines()  # metrics-server's Table
    assert out[0].split() == ["NAME", "CPU", "MEMORY", "WINDOW"] and out[1].split()[0] == "busy"


def test_errors(ready: Cluster) -> None:
    res = ready.kubectl("top", "pod", "nosuch", "-n", NS, check=False)
    assert res.returncode != 0 and 'pods "nosuch" not found' in res.stderr
    res = http(ready, "GET", f"/apis/metrics.k8s.io/v1beta1/namespaces/{NS}/pods/nosuch")
    assert res.status == 404 and res.json()["details"] == {"name": "nosuch", "kind": "pods"}
    res = http(ready, "GET", "/apis/metrics.k8s.io/v1beta1/nodes/nosuch")
    assert res.status == 404 and res.json()["message"] == 'node "nosuch" not found'
    res = http(ready, "GET", "/apis/metrics.k8s.io/v1beta1/pods?watch=true")
    assert res.status == 405 and res.json()["message"] == 'watch is not supported on resources of kind "pods.metrics.k8s.io"'
    res = http(ready, "GET", "/apis/metrics.k8s.io/v1beta1/pods?fieldSelector=spec.nodeName%3Dx")
    assert res.status == 400 and "is not a known field selector" in res.json()["message"]
    res = http(ready, "DELETE", f"/apis/metrics.k8s.io/v1beta1/namespaces/{NS}/pods/busy")
    assert res.status == 405
    assert http(ready, "GET", "/apis/metrics.k8s.io/v1beta1/namespaces/x/nodes").status == 404
    # a pod that exists but has no metrics (yet): metrics-server's podmetrics NotFound
    ready.kubectl("create", "-n", NS, "-f", "-", input=textwrap.dedent("""\
        apiVersion: v1
        kind: Pod
        metadata: {name: unscheduled}
        spec:
          nodeSelector: {no-such-node: "true"}
          containers: [{name: c, image: busybox, command: [sleep, "1"]}]
        """))
    res = http(ready, "GET", f"/apis/metrics.k8s.io/v1beta1/namespaces/{NS}/pods/unscheduled")
    assert res.status == 404 and res.json()["message"] == f'podmetrics.metrics.k8s.io "{NS}/unscheduled" not found'
    ready.kubectl("delete", "pod", "unscheduled", "-n", NS, "--wait=false")


def test_deleted_pod_leaves(ready: Cluster) -> None:
    ready.kubectl("delete", "pod", "sleeper", "-n", NS, "--grace-period=0", "--force", "--wait=false")
    wait_for(
        lambda: [i["metadata"]["name"] for i in _raw(ready, f"/namespaces/{NS}/pods")["items"]] == ["busy"],
        timeout=30, interval=0.5, what="the deleted pod's metrics gone",
    )
