"""k8py.kubeadm.apiserverlb: the node-local API server load balancer as a host service (its live
behaviour is asserted end to end by tests/network/test_kubeadm_ha.py)."""

from __future__ import annotations

import sys
from pathlib import Path

from k8py.kubeadm.apiserverlb import APISERVER_LB, LOCAL_URL, discovery_rbac, server_address
from k8py.kubeadm.layout import Layout


def test_unit_flags_and_files(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    unit = APISERVER_LB.unit_text(layout)
    assert f"EnvironmentFile=-{tmp_path}/var/lib/k8py/apiserver-lb.env" in unit
    assert f"ExecStart={sys.executable} -m k8py.cli loadbalancer $K8PY_APISERVER_LB_ARGS" in unit
    assert APISERVER_LB.unit_file(layout) == tmp_path / "etc/systemd/system/k8py-apiserver-lb.service"
    assert APISERVER_LB.pidfile(layout) == tmp_path / "run/k8py/apiserver-lb.pid"
    flags = ["--listen", "127.0.0.1:6444", "--server", "10.0.0.1:6443", "--kubeconfig", "/a b/kubelet.conf"]
    APISERVER_LB.write_flags(layout, flags)
    assert APISERVER_LB.read_flags(layout) == flags
    assert LOCAL_URL == "https://127.0.0.1:6444"


def test_server_address() -> None:
    assert server_address("https://10.0.0.1:6443") == "10.0.0.1:6443"
    assert server_address("https://[fd00::1]:6443") == "[fd00::1]:6443"
    assert server_address("https://cp.example") == "cp.example:443"


def test_nodes_may_watch_the_default_endpoints() -> None:
    role, binding = discovery_rbac()
    assert role["metadata"] == {"name": "k8py:apiserver-lb-discovery", "namespace": "default"}
    assert role["rules"] == [{"apiGroups": [""], "resources": ["endpoints"], "verbs": ["get", "list", "watch"]}]
    assert binding["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:nodes"}]
