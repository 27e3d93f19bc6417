"""The addon phase's objects (kube-proxy and network agent DaemonSets, the DNS Deployment, their
ServiceAccounts and RBAC, the kube-dns Service): their shape, and the API server accepting them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

from k8py.kubeadm.addons import KUBECONFIG, addon_objects
from tests.conftest import Cluster

OBJECTS = addon_objects(server="https://10.197.0.1:6443", cluster_cidr="10.244.0.0/16",
                        service_cidr="10.96.0.0/12", cluster_domain="cluster.local")


def _find(kind: str, name: str) -> dict:
    return next(o for o in OBJECTS if o["kind"] == kind and o["metadata"]["name"] == name)


def test_components_run_k8py_with_their_service_account_kubeconfig() -> None:
    for kind, name, subcommand in (("DaemonSet", "kube-proxy", "proxy"), ("DaemonSet", "k8py-network", "network-agent"),
                                   ("Deployment", "k8py-dns", "dns")):
        spec = _find(kind, name)["spec"]["template"]["spec"]
        container = spec["containers"][0]
        assert container["command"][:4] == [sys.executable, "-m", "k8py.cli", subcommand]
        assert container["command"][container["command"].index("--kubeconfig") + 1] == KUBECONFIG
        assert spec["serviceAccountName"] == name and spec["runtimeClassName"] == "process" and spec["hostNetwork"]
        assert spec["volumes"] == [{"name": "kubeconfig", "configMap": {"name": name}}]
        kubeconfig = yaml.safe_load(_find("ConfigMap", name)["data"]["kubeconfig.conf"])
        assert kubeconfig["clusters"][0]["cluster"]["server"] == "https://10.197.0.1:6443"
        assert kubeconfig["users"][0]["user"]["tokenFile"] == "/var/run/secrets/kubernetes.io/serviceaccount/token"
    proxy = _find("DaemonSet", "kube-proxy")["spec"]["template"]["spec"]["containers"][0]["command"]
    assert proxy[proxy.index("--hostname-override") + 1] == "$(NODE_NAME)"
    dns = _find("Deployment", "k8py-dns")["spec"]["template"]["spec"]["containers"][0]
    assert dns["command"][dns["command"].index("--bind-address") + 1] == "$(POD_IP)"
    assert {p["hostPort"] for p in dns["ports"]} == {53}  # one per node
    binding = _find("ClusterRoleBinding", "kubeadm:kube-proxy")
    assert binding["roleRef"]["name"] == "system:node-proxier"
    assert _find("Service", "kube-dns")["spec"]["clusterIP"] == "10.96.0.10"


def test_the_api_server_accepts_them(cluster: Cluster) -> None:
    body = json.dumps({"apiVersion": "v1", "kind": "List", "items": OBJECTS})
    out = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=body).stdout
    assert "daemonset.apps/kube-proxy created (server dry run)" in out
    assert "deployment.apps/k8py-dns created (server dry run)" in out
    assert "service/kube-dns created (server dry run)" in out


def test_control_plane_static_pods(tmp_path: Path) -> None:
    from k8py.kubeadm.config import InitConfig
    from k8py.kubeadm.controlplane import control_plane_manifests, write_control_plane
    from k8py.kubeadm.layout import Layout

    layout = Layout(tmp_path)
    config = InitConfig(node_name="master0", advertise_address="10.197.0.1", cert_dir=layout.cert_dir,
                        kubernetes_dir=layout.kubernetes_dir)
    manifests = control_plane_manifests(config, layout)
    assert sorted(manifests) == ["kube-apiserver.yaml", "kube-controller-manager.yaml", "kube-scheduler.yaml"]
    apiserver = manifests["kube-apiserver.yaml"]
    assert apiserver["metadata"]["labels"] == {"component": "kube-apiserver", "tier": "control-plane"}
    command = apiserver["spec"]["containers"][0]["command"]
    assert command[:4] == [sys.executable, "-m", "k8py.cli", "apiserver"]
    flags = dict(zip(command[4::2], command[5::2], strict=True))
    assert flags["--tls-cert-file"] == f"{layout.cert_dir}/apiserver.crt"
    assert flags["--authorization-mode"] == "Node,RBAC" and flags["--advertise-address"] == "10.197.0.1"
    probe = apiserver["spec"]["containers"][0]["livenessProbe"]["httpGet"]
    assert probe == {"host": "10.197.0.1", "path": "/livez", "port": 6443, "scheme": "HTTPS"}
    cm = manifests["kube-controller-manager.yaml"]["spec"]["containers"][0]["command"]
    assert "*,bootstrapsigner,tokencleaner" in cm and f"{layout.kubernetes_dir}/controller-manager.conf" in cm
    lines: list[str] = []
    write_control_plane(config, layout, lines.append)
    assert sorted(p.name for p in layout.manifests_dir.iterdir()) == sorted(manifests)
    assert yaml.safe_load((layout.manifests_dir / "kube-scheduler.yaml").read_text())["spec"]["runtimeClassName"] == \
        "process"
    assert lines[-1] == '[control-plane] Creating static Pod manifest for "kube-scheduler"'
