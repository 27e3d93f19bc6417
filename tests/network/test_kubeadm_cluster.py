"""The seed's topology stood up like kubeadm does it, on one machine: three network namespaces as
hosts master0, worker0 and worker1 (node IPs on the test LAN only), `k8py init` on master0 and the
printed `k8py join` on both workers, each host with its own root file system (``--rootfs``).

Then, from the admin kubeconfig: three Ready nodes, the control plane as mirror pods, a Deployment
spread over both workers reached through its Service by DNS name, the cluster locked down (a
kubelet reads only its own pods' Secrets and writes only its own Node, anonymous requests are
refused, a deleted bootstrap token joins nothing), and `k8py reset` leaving a worker clean.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from k8py.kubelet.runtime.cri.containerd import Containerd
from k8py.kubelet.runtime.cri.imagebuild import build_busybox_image
from tests.conftest import wait_for
from tests.network.kubeadm_hosts import KubeadmHosts, join
from tests.network.netns import NetnsLab, requires_netns

pytestmark = [
    requires_netns,
    pytest.mark.skipif(not Containerd.available(), reason="needs containerd, runc and the CNI plugins"),
]

HOSTS = ("master0", "worker0", "worker1")
JOIN = re.compile(r"k8py join (\S+) --token (\S+) \\\n\t--discovery-token-ca-cert-hash (\S+)")


class Seed(KubeadmHosts):
    """master0 (init), worker0 and worker1 (join)."""


@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seed]:
    root = tmp_path_factory.mktemp("seed")
    with NetnsLab() as lab:
        try:
            for host in HOSTS:
                lab.add_host(host)
            for host in HOSTS[1:]:  # k8py's offline busybox image, imported by each worker's containerd
                (root / host / "var/lib/kubelet/images").mkdir(parents=True)
                build_busybox_image(root / host / "var/lib/kubelet/images/busybox.tar")
            started = time.monotonic()
            init = lab.run(f"/run/netns/{lab.hosts['master0'].netns}", sys.executable, "-m", "k8py.cli", "init",
                           "--node-name", "master0", "--apiserver-advertise-address", lab.hosts["master0"].ip,
                           "--runtime", "process", "--ignore-preflight-errors", "all",
                           "--rootfs", str(root / "master0"), check=False, timeout=300)
            assert init.returncode == 0, init.stdout + init.stderr
            assert "Your Kubernetes control-plane has initialized successfully!" in init.stdout
            match = JOIN.search(init.stdout)
            assert match, init.stdout
            init_seconds = time.monotonic() - started
            joins = [join(lab, root, host, *match.groups(), runtime="cri", discovery_timeout=300) for host in HOSTS[1:]]
            for proc in joins:
                out, _ = proc.communicate(timeout=300)
                assert proc.returncode == 0 and "This node has joined the cluster" in out, out
            seed = Seed(lab, root, *match.groups(), init_seconds, time.monotonic() - started - init_seconds)
            yield seed
        finally:
            for host in HOSTS:  # what init and join started goes with reset (asserted by the last test)
                lab.run(f"/run/netns/{lab.hosts[host].netns}", sys.executable, "-m", "k8py.cli", "reset", "--force",
                        "--rootfs", str(root / host), check=False, timeout=120) if host in lab.hosts else None


def test_three_ready_nodes_and_the_control_plane_as_mirror_pods(seed: Seed) -> None:
    assert seed.init_seconds < 60 and seed.join_seconds < 60
    wait_for(lambda: seed.kubectl("get", "nodes").count(" Ready ") == 3, timeout=60, what="three Ready nodes")
    nodes = {n["metadata"]["name"]: n for n in seed.get("nodes")["items"]}
    assert sorted(nodes) == list(HOSTS)
    master = nodes["master0"]
    assert "node-role.kubernetes.io/control-plane" in master["metadata"]["labels"]
    assert {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"} in master["spec"]["taints"]
    assert all(nodes[w]["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")
               for w in HOSTS[1:])
    for component in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        pod = wait_for(lambda c=component: (p := seed.get("pod", "-n", "kube-system", f"{c}-master0"))["status"].get(
            "phase") == "Running" and p, timeout=60, what=f"{component} mirror pod")
        assert pod["metadata"]["labels"] == {"component": component, "tier": "control-plane"}
        assert pod["metadata"]["annotations"]["kubernetes.io/config.mirror"]
    # the add-ons: kube-proxy and the network agent on every node, DNS behind kube-dns
    for ds in ("kube-proxy", "k8py-network"):
        wait_for(lambda d=ds: seed.get("daemonset", "-n", "kube-system", d)["status"].get("numberReady") == 3,
                 timeout=90, what=f"{ds} ready on three nodes")


_WEB = {
    "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
    "spec": {
        "replicas": 2, "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {
                "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                               "whenUnsatisfiable": "DoNotSchedule",
                                               "labelSelector": {"matchLabels": {"app": "web"}}}],
                "containers": [{
                    "name": "web", "image": "busybox", "imagePullPolicy": "IfNotPresent",
                    "command": ["sh", "-c", "echo hello from $(hostname) > /www/index.html; exec httpd -f -p 8080 -h /www"],
                    "volumeMounts": [{"name": "www", "mountPath": "/www"}],
                    "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1},
                }],
                "volumes": [{"name": "www", "emptyDir": {}}],
            },
        },
    },
}


def test_a_deployment_over_both_workers_through_its_service_by_dns_name(seed: Seed) -> None:
    seed.kubectl("apply", "-f", "-", input=json.dumps(_WEB))
    seed.kubectl("expose", "deployment", "web", "--port", "80", "--target-port", "8080")
    seed.kubectl("run", "client", "--image", "busybox", "--image-pull-policy", "IfNotPresent", "--", "sleep", "3600")
    seed.kubectl("rollout", "status", "deployment/web", "--timeout=90s")
    pods = seed.get("pods", "-l", "app=web")["items"]
    assert sorted(p["spec"]["nodeName"] for p in pods) == ["worker0", "worker1"]
    wait_for(lambda: seed.get("pod", "client")["status"].get("phase") == "Running", timeout=60, what="client pod")
    seen: set[str] = set()

    def fetch() -> bool:
        out = seed.kubectl("exec", "client", "--", "timeout", "5", "wget", "-qO-",
                           "http://web.default.svc.cluster.local/", check=False)
        if out.startswith("hello from web-"):
            seen.add(out.strip())
        return len(seen) == 2

    wait_for(fetch, timeout=60, interval=0.2, what="both replicas answering through the Service by DNS name")


def test_kubelet_credentials_are_confined_to_their_node(seed: Seed) -> None:
    seed.kubectl("create", "secret", "generic", "only-w1", "--from-literal=k=v")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "uses-secret"},
           "spec": {"nodeName": "worker1", "containers": [{
               "name": "c", "image": "busybox", "imagePullPolicy": "IfNotPresent", "command": ["sleep", "3600"],
               "env": [{"name": "K", "valueFrom": {"secretKeyRef": {"name": "only-w1", "key": "k"}}}]}]}}
    seed.kubectl("apply", "-f", "-", input=json.dumps(pod))
    w0, w1 = "worker0/etc/kubernetes/kubelet.conf", "worker1/etc/kubernetes/kubelet.conf"
    assert "forbidden" in seed.kubectl("get", "secret", "only-w1", kubeconfig=w0, check=False)
    assert wait_for(lambda: "only-w1" in seed.kubectl("get", "secret", "only-w1", kubeconfig=w1, check=False),
                    timeout=20, what="worker1 reading its pod's secret")
    denied = seed.kubectl("label", "node", "worker1", "x=y", kubeconfig=w0, check=False)
    assert "forbidden" in denied or "Forbidden" in denied
    anonymous = seed.lab.run(seed.netns("master0"), sys.executable, "-c", _ANONYMOUS_GET,
                             f"https://{seed.endpoint}/api/v1/secrets", check=False)
    assert anonymous.stdout.strip() == "403"


# GET a URL without credentials (and without verifying the server): the status code
_ANONYMOUS_GET = """
import ssl, sys, urllib.error, urllib.request
ctx = ssl.create_default_context()
ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
try:
    print(urllib.request.urlopen(sys.argv[1], context=ctx).status)
except urllib.error.HTTPError as e:
    print(e.code)
"""


def test_reset_leaves_a_worker_clean_and_a_deleted_token_joins_nothing(seed: Seed) -> None:
    reset = seed.k8py("worker1", "reset", "--force", timeout=120)
    assert reset.returncode == 0, reset.stdout + reset.stderr
    rootfs = seed.root / "worker1"
    for directory in ("etc/kubernetes/manifests", "etc/kubernetes/pki", "var/lib/kubelet"):
        assert not any((rootfs / directory).iterdir()), directory
    assert not (rootfs / "etc/kubernetes/kubelet.conf").exists()
    procs = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(rootfs) not in procs
    assert f" {rootfs}/" not in Path("/proc/self/mountinfo").read_text()
    tables = seed.lab.run(seed.netns("worker1"), "nft", "list", "tables").stdout
    assert not any(t in tables for t in ("kube-proxy", "k8py-nat", "k8py-netpol"))
    # the token printed by init, deleted, no longer lets a node join
    seed.lab.run(seed.netns("master0"), sys.executable, "-m", "k8py.cli", "token", "delete", seed.token,
                 "--kubeconfig", str(seed.root / "master0/etc/kubernetes/admin.conf"))
    rejoin = join(seed.lab, seed.root, "worker1", seed.endpoint, seed.token, seed.ca_hash, runtime="cri",
                  discovery_timeout=5)
    out, _ = rejoin.communicate(timeout=60)
    assert rejoin.returncode != 0 and "This node has joined" not in out, out
