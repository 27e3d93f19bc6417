"""The addon phase's objects (kube-proxy and network agent DaemonSets, the DNS Deployment, their
ServiceAccounts and RBAC, the kube-dns Service): their shape, and the API server accepting them."""

from __future__ import annotations

import json
import sys

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
