"""The real kubectl against a real `k8py up`: everyday commands print what they print against kube-apiserver."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
import yaml

from tests.conftest import Cluster, wait_for

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx:1.25
        ports: [{containerPort: 80}]
        env:
        - {name: A, value: "1"}
        - {name: B, value: "2"}
"""


def test_version(cluster: Cluster) -> None:
    out = cluster.kubectl("version", "-o", "json").stdout
    server = json.loads(out)["serverVersion"]
    assert server["major"] == "1" and server["minor"] == "32"
    assert server["gitVersion"].startswith("v1.32.")


def test_api_resources(cluster: Cluster) -> None:
    out = cluster.kubectl("api-resources").stdout
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    pods = next(line.split() for line in lines if line.startswith("pods "))
    assert pods == ["pods", "po", "v1", "true", "Pod"]
    deploy = next(line.split() for line in lines if line.startswith("deployments "))
    assert deploy == ["deployments", "deploy", "apps/v1", "true", "Deployment"]
    assert any(line.startswith("horizontalpodautoscalers ") and "autoscaling/v2" in line for line in lines)
    namespaced = cluster.kubectl("api-resources", "--namespaced=false", "-o", "name").stdout.split()
    assert "nodes" in namespaced and "pods" not in namespaced


def test_api_versions(cluster: Cluster) -> None:
    versions = cluster.kubectl("api-versions").stdout.split()
    for gv in ("v1", "apps/v1", "batch/v1", "autoscaling/v1", "autoscaling/v2", "rbac.authorization.k8s.io/v1"):
        assert gv in versions


def test_default_namespaces_and_kubernetes_service(cluster: Cluster) -> None:
    out = cluster.kubectl("get", "namespaces").stdout
    names = [line.split()[0] for line in out.splitlines()[1:]]
    for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
        assert ns in names
    assert out.splitlines()[0].split() == ["NAME", "STATUS", "AGE"]
    svc = cluster.kubectl("get", "svc", "kubernetes").stdout.splitlines()
    assert svc[0].split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert svc[1].split()[:5] == ["kubernetes", "ClusterIP", "10.96.0.1", "<none>", "443/TCP"]


def test_apply_twice_strategic_merge(cluster: Cluster, namespace: str) -> None:
    out = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=DEPLOYMENT).stdout
    assert out.strip() == "deployment.apps/web created"
    changed = DEPLOYMENT.replace("replicas: 2", "replicas: 3").replace('- {name: B, value: "2"}', '- {name: C, value: "3"}')
    out = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=changed).stdout
    assert out.strip() == "deployment.apps/web configured"
    d = cluster.kubectl_json("get", "deployment", "web", "-n", namespace)
    assert d["spec"]["replicas"] == 3
    assert d["metadata"]["generation"] == 2
    env = d["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env == [{"name": "A", "value": "1"}, {"name": "C", "value": "3"}]
    # defaults were applied
    assert d["spec"]["strategy"]["type"] == "RollingUpdate"
    assert d["spec"]["template"]["spec"]["restartPolicy"] == "Always"
    out = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=changed).stdout
    assert out.strip() == "deployment.apps/web unchanged"
    table = cluster.kubectl("get", "deploy", "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert table[1].split()[:4] == ["web", "0/3", "0", "0"]
    wide = cluster.kubectl("get", "deploy", "-n", namespace, "-o", "wide").stdout.splitlines()
    assert wide[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]
    assert wide[1].split()[5:] == ["nginx", "nginx:1.25", "app=web"]


POD = """
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app: demo, tier: {tier}}}
spec:
  containers:
  - name: c
    image: busybox
    command: ["sleep", "3600"]
"""


def _pod(name: str, tier: str = "a") -> str:
    return POD.format(name=name, tier=tier)


def test_get_pods_table_wide_yaml_all_namespaces_labels(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=_pod("p1"))
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=_pod("p2", "b"))
    table = cluster.kubectl("get", "pods", "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert table[1].split()[:4] == ["p1", "0/1", "Pending", "0"]
    wide = cluster.kubectl("get", "pods", "-n", namespace, "-o", "wide").stdout.splitlines()
    assert wide[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED", "NODE", "READINESS", "GATES"]
    everywhere = cluster.kubectl("get", "pods", "-A").stdout.splitlines()
    assert everywhere[0].split()[:2] == ["NAMESPACE", "NAME"]
    assert any(line.split()[:2] == [namespace, "p1"] for line in everywhere)
    labels = cluster.kubectl("get", "pods", "-n", namespace, "--show-labels").stdout.splitlines()
    assert labels[0].split()[-1] == "LABELS"
    assert labels[1].split()[-1] == "app=demo,tier=a"
    selected = cluster.kubectl("get", "pods", "-n", namespace, "-l", "tier=b", "-o", "name").stdout.split()
    assert selected == ["pod/p2"]
    doc = yaml.safe_load(cluster.kubectl("get", "pod", "p1", "-n", namespace, "-o", "yaml").stdout)
    assert doc["kind"] == "Pod" and doc["metadata"]["namespace"] == namespace
    assert doc["status"]["phase"] == "Pending" and doc["status"]["qosClass"] == "BestEffort"
    assert doc["spec"]["containers"][0]["terminationMessagePath"] == "/dev/termination-log"
    assert {t["key"] for t in doc["spec"]["tolerations"]} == {
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    }
    jp = cluster.kubectl("get", "pods", "-n", namespace, "-o", "jsonpath={.items[*].metadata.name}").stdout
    assert jp == "p1 p2"
    field = cluster.kubectl("get", "pods", "-n", namespace, "--field-selector", "metadata.name=p2", "-o", "name").stdout
    assert field.split() == ["pod/p2"]


def test_label_annotate_patch(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=_pod("lp"))
    assert cluster.kubectl("label", "pod", "lp", "-n", namespace, "env=prod").stdout.strip() == "pod/lp labeled"
    assert cluster.kubectl("annotate", "pod", "lp", "-n", namespace, "note=hi").stdout.strip() == "pod/lp annotated"
    pod = cluster.kubectl_json("get", "pod", "lp", "-n", namespace)
    assert pod["metadata"]["labels"]["env"] == "prod" and pod["metadata"]["annotations"]["note"] == "hi"
    cluster.kubectl("label", "pod", "lp", "-n", namespace, "env-")
    cluster.kubectl("patch", "pod", "lp", "-n", namespace, "--type=merge", "-p", '{"metadata":{"labels":{"m":"1"}}}')
    cluster.kubectl(
        "patch", "pod", "lp", "-n", namespace, "--type=json", "-p", '[{"op":"add","path":"/metadata/labels/j","value":"2"}]'
    )
    cluster.kubectl(
        "patch", "pod", "lp", "-n", namespace, "--type=strategic",
        "-p", '{"spec":{"containers":[{"name":"c","image":"busybox:1.36"}]}}',
    )
    pod = cluster.kubectl_json("get", "pod", "lp", "-n", namespace)
    assert "env" not in pod["metadata"]["labels"]
    assert pod["metadata"]["labels"]["m"] == "1" and pod["metadata"]["labels"]["j"] == "2"
    assert pod["spec"]["containers"][0]["image"] == "busybox:1.36"
    assert pod["spec"]["containers"][0]["command"] == ["sleep", "3600"]
    bad = cluster.kubectl(
        "patch", "pod", "lp", "-n", namespace, "--type=json", "-p", '[{"op":"test","path":"/metadata/name","value":"x"}]',
        check=False,
    )
    assert bad.returncode != 0


def test_delete_waits_for_deletion(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("create", "-n", namespace, "-f", "-", input="apiVersion: v1\nkind: ConfigMap\nmetadata: {name: gone}\ndata: {a: b}\n")
    out = cluster.kubectl("delete", "configmap", "gone", "-n", namespace).stdout
    assert out.strip() == 'configmap "gone" deleted'
    res = cluster.kubectl("get", "configmap", "gone", "-n", namespace, check=False)
    assert res.returncode == 1
    assert 'configmaps "gone" not found' in res.stderr
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=_pod("dp"))
    assert cluster.kubectl("delete", "pod", "dp", "-n", namespace, "--timeout=20s").stdout.strip() == 'pod "dp" deleted'


def test_finalizers_hold_deletion(cluster: Cluster, namespace: str) -> None:
    cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: held, finalizers: [example.com/hold]}\n"
    cluster.kubectl("create", "-n", namespace, "-f", "-", input=cm)
    cluster.kubectl("delete", "configmap", "held", "-n", namespace, "--wait=false")
    obj = cluster.kubectl_json("get", "configmap", "held", "-n", namespace)
    assert obj["metadata"]["deletionTimestamp"]
    cluster.kubectl("patch", "configmap", "held", "-n", namespace, "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
    res = cluster.kubectl("get", "configmap", "held", "-n", namespace, check=False)
    assert res.returncode == 1 and "not found" in res.stderr


def test_explain(cluster: Cluster) -> None:
    out = cluster.kubectl("explain", "pods.spec.containers").stdout
    assert "KIND:" in out and "Pod" in out
    assert "FIELD: containers <[]Container>" in out
    assert "image" in out and "List of containers belonging to the pod" in out
    out = cluster.kubectl("explain", "deployment.spec.strategy").stdout
    assert "rollingUpdate" in out


def test_chunked_list(cluster: Cluster, namespace: str) -> None:
    docs = "\n---\n".join(
        f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm-{i:02d}}}\ndata: {{i: '{i}'}}" for i in range(25)
    )
    cluster.kubectl("create", "-n", namespace, "-f", "-", input=docs)
    out = cluster.kubectl("get", "configmaps", "-n", namespace, "--chunk-size=7", "-o", "name", "-v=6").stdout
    names = [n for n in out.split() if n.startswith("configmap/cm-")]
    assert names == [f"configmap/cm-{i:02d}" for i in range(25)]
    res = cluster.kubectl("get", "configmaps", "-n", namespace, "--chunk-size=7", "-v=6")
    assert res.stderr.count("limit=7") >= 4  # really paged


def test_get_watch(cluster: Cluster, namespace: str) -> None:
    env_cmd = ["/usr/bin/kubectl", "get", "configmaps", "-n", namespace, "-w", "--request-timeout=30s"]
    import os

    proc = subprocess.Popen(
        env_cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)},
    )
    try:
        time.sleep(0.1)  # let the watch start; the wait below has its own deadline
        cluster.kubectl("create", "-n", namespace, "-f", "-", input="apiVersion: v1\nkind: ConfigMap\nmetadata: {name: w1}\ndata: {a: b}\n")
        assert proc.stdout is not None
        lines: list[str] = []

        def saw() -> bool:
            lines.append(proc.stdout.readline())  # type: ignore[union-attr]
            return any(line.startswith("w1 ") for line in lines)

        wait_for(saw, timeout=15, what="watch line")
        assert lines[0].split() == ["NAME", "DATA", "AGE"]
    finally:
        proc.kill()
        proc.wait()


def test_errors_through_kubectl(cluster: Cluster, namespace: str) -> None:
    res = cluster.kubectl("get", "pod", "nope", "-n", namespace, check=False)
    assert res.returncode == 1 and 'Error from server (NotFound): pods "nope" not found' in res.stderr
    res = cluster.kubectl("create", "-n", namespace, "-f", "-", input=_pod("Bad_Name"), check=False)
    assert res.returncode == 1 and "Invalid" in res.stderr and "RFC 1123" in res.stderr
    cluster.kubectl("create", "-n", namespace, "-f", "-", input=_pod("dup"))
    res = cluster.kubectl("create", "-n", namespace, "-f", "-", input=_pod("dup"), check=False)
    assert res.returncode == 1 and 'pods "dup" already exists' in res.stderr
    res = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=_pod("unk").replace("image: busybox", "image: busybox\n    imagee: x"), check=False)
    assert res.returncode == 1 and 'unknown field "spec.containers[0].imagee"' in res.stderr
    res = cluster.kubectl("get", "pods", "-n", "no-such-ns", check=False)
    assert res.returncode == 0 and "No resources found" in res.stderr


@pytest.mark.parametrize("kind", ["pods", "deployments", "services", "configmaps", "secrets", "jobs", "events", "nodes", "namespaces"])
def test_get_empty_kinds(cluster: Cluster, kind: str) -> None:
    res = cluster.kubectl("get", kind, "-A")
    assert res.returncode == 0
