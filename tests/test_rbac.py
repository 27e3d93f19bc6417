"""RBAC end to end: a cluster started with `--authorization-mode RBAC`, kubectl as users with their own
client certificates (issued from the cluster CA) and as impersonated users (`--as`)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from k8py.bootstrap.kubeconfig import write_kubeconfig
from k8py.bootstrap.pki import PKIPaths, ensure_client_cert
from tests.conftest import KUBECTL, Cluster, http, start_cluster, wait_for

NS, OTHER = "rbac-team", "rbac-other"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """RBAC on; the one controller these tests need. The controller manager runs as one user
    (system:kube-controller-manager), so it is bound to the aggregation controller's role here."""
    c = start_cluster(
        tmp_path_factory.mktemp("rbac"),
        extra=("--disable-scheduler", "--controllers", "clusterrole-aggregation", "--authorization-mode", "RBAC"),
    )
    try:
        c.kubectl("create", "clusterrolebinding", "k8py-test:aggregation", "--user", "system:kube-controller-manager",
                  "--clusterrole", "system:controller:clusterrole-aggregation-controller")
        for ns in (NS, OTHER):
            c.kubectl("create", "namespace", ns)
        c.kubectl("create", "rolebinding", "alice-view", "-n", NS, "--clusterrole", "view", "--user", "alice")
        wait_for(lambda: c.kubectl_json("get", "clusterrole", "view").get("rules"), what="view aggregated")
        yield c
    finally:
        c.stop()


def kubectl_as(cluster: Cluster, user: str, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """kubectl with `user`'s own client certificate (CN=user, from the cluster CA)."""
    pki = cluster.data_dir / "pki"
    config = cluster.data_dir / f"{user}.kubeconfig"
    if not config.exists():
        pair = ensure_client_cert(pki, f"test-{user}", user)
        write_kubeconfig(config, cluster.url, PKIPaths.in_dir(pki).ca_cert.read_bytes(), pair.cert_pem(), pair.key_pem(), user=user)
    env = {**os.environ, "KUBECONFIG": str(config), "HOME": str(cluster.data_dir)}
    return subprocess.run([KUBECTL, *args], input=input, capture_output=True, text=True, env=env, timeout=30)


def can_i(cluster: Cluster, *args: str) -> str:
    return cluster.kubectl("auth", "can-i", *args, check=False).stdout.strip()


def test_view_in_one_namespace(cluster: Cluster) -> None:
    assert can_i(cluster, "list", "pods", "-n", NS, "--as", "alice") == "yes"
    assert can_i(cluster, "get", "deployments.apps", "-n", NS, "--as", "alice") == "yes"
    assert can_i(cluster, "get", "secrets", "-n", NS, "--as", "alice") == "no"
    assert can_i(cluster, "create", "pods", "-n", NS, "--as", "alice") == "no"
    assert can_i(cluster, "list", "pods", "-n", OTHER, "--as", "alice") == "no"
    assert can_i(cluster, "list", "pods", "-n", OTHER, "--as", "bob") == "no"
    assert can_i(cluster, "list", "pods", "-n", OTHER, "--as", "bob", "--as-group", "system:masters") == "yes"

    assert kubectl_as(cluster, "alice", "get", "pods", "-n", NS).returncode == 0
    assert kubectl_as(cluster, "alice", "get", "configmaps", "-n", NS).returncode == 0
    res = kubectl_as(cluster, "alice", "create", "configmap", "x", "-n", NS)
    assert res.returncode == 1
    assert ('configmaps is forbidden: User "alice" cannot create resource "configmaps" in API group "" '
            f'in the namespace "{NS}"') in res.stderr
    res = kubectl_as(cluster, "alice", "get", "pods", "-n", OTHER)
    assert f'pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "{OTHER}"' in res.stderr
    res = kubectl_as(cluster, "alice", "get", "namespaces")
    assert 'cannot list resource "namespaces" in API group "" at the cluster scope' in res.stderr
    assert kubectl_as(cluster, "alice", "auth", "can-i", "delete", "pods", "-n", NS).stdout.strip() == "no"


def test_can_i_list(cluster: Cluster) -> None:
    out = cluster.kubectl("auth", "can-i", "--list", "-n", NS, "--as", "alice").stdout
    lines = {line.split()[0]: line for line in out.splitlines()[1:] if line.strip()}
    assert "[get list watch]" in lines["pods"]
    assert "[get list watch]" in lines["deployments.apps"]
    assert "[create]" in lines["selfsubjectaccessreviews.authorization.k8s.io"]
    assert "secrets" not in lines
    assert any("/healthz" in line and "[get]" in line for line in out.splitlines())
    other = cluster.kubectl("auth", "can-i", "--list", "-n", OTHER, "--as", "alice").stdout
    assert "pods " not in other and "selfsubjectaccessreviews.authorization.k8s.io" in other


def test_anonymous(cluster: Cluster) -> None:
    res = http(cluster, "GET", "/api/v1/secrets", client_cert=False)
    assert res.status == 403
    status = json.loads(res.body)
    assert status["reason"] == "Forbidden"
    assert status["message"] == (
        'secrets is forbidden: User "system:anonymous" cannot list resource "secrets" in API group "" at the cluster scope'
    )
    for path in ("/healthz", "/version", "/readyz", "/livez"):
        assert http(cluster, "GET", path, client_cert=False).status == 200, path
    assert http(cluster, "GET", "/api", client_cert=False).status == 403  # system:discovery is for the authenticated
    readyz = http(cluster, "GET", "/readyz?verbose", client_cert=False).body.decode()
    assert "[+]poststarthook/rbac/bootstrap-roles ok" in readyz


def test_impersonation_needs_the_verb(cluster: Cluster) -> None:
    res = kubectl_as(cluster, "alice", "get", "pods", "-n", NS, "--as", "bob")
    assert res.returncode == 1
    assert 'users "bob" is forbidden: User "alice" cannot impersonate resource "users" in API group "" at the cluster scope' in res.stderr
    review = cluster.kubectl_json("auth", "whoami", "--as", "carol", "--as-group", "devs")
    assert review["status"]["userInfo"] == {"username": "carol", "groups": ["devs", "system:authenticated"]}


def _role(name: str, rules: list[dict[str, Any]], kind: str = "Role") -> str:
    md = {"name": name, **({"namespace": NS} if kind == "Role" else {})}
    return json.dumps({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": md, "rules": rules})


def _binding(name: str, role_kind: str, role: str, user: str) -> str:
    return json.dumps({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": name, "namespace": NS},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    })


def test_escalation_prevention(cluster: Cluster) -> None:
    manager_rules = [
        {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"], "verbs": ["create", "get", "update"]},
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]},
    ]
    cluster.kubectl("create", "-f", "-", input=_role("rbac-manager", manager_rules))
    cluster.kubectl("create", "rolebinding", "dave-manager", "-n", NS, "--role", "rbac-manager", "--user", "dave")

    # a role with a permission dave does not hold: refused, naming what is missing
    secrets = [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]
    res = kubectl_as(cluster, "dave", "create", "-f", "-", input=_role("secret-reader", secrets))
    assert res.returncode == 1
    assert ('roles.rbac.authorization.k8s.io "secret-reader" is forbidden: user "dave" (groups=["system:authenticated"]) '
            'is attempting to grant RBAC permissions not currently held:\n'
            '{APIGroups:[""], Resources:["secrets"], Verbs:["get"]}') in res.stderr
    # what he holds he may grant
    held = [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]
    assert kubectl_as(cluster, "dave", "create", "-f", "-", input=_role("cm-reader", held)).returncode == 0
    # binding: to a role he holds, yes; to edit, no
    assert kubectl_as(cluster, "dave", "create", "-f", "-", input=_binding("erin-cm", "Role", "cm-reader", "erin")).returncode == 0
    res = kubectl_as(cluster, "dave", "create", "-f", "-", input=_binding("erin-edit", "ClusterRole", "edit", "erin"))
    assert res.returncode == 1
    assert 'rolebindings.rbac.authorization.k8s.io "erin-edit" is forbidden: user "dave"' in res.stderr
    assert "is attempting to grant RBAC permissions not currently held" in res.stderr
    # a ClusterRole is out of reach without cluster-wide rights
    res = kubectl_as(cluster, "dave", "create", "-f", "-", input=_role("x", held, kind="ClusterRole"))
    assert res.returncode == 1 and "forbidden" in res.stderr

    # the escalate and bind verbs lift the checks
    grants = [
        {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"], "verbs": ["escalate"]},
        {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"], "verbs": ["bind"], "resourceNames": ["edit"]},
    ]
    cluster.kubectl("create", "-f", "-", input=_role("rbac-escalator", grants))
    cluster.kubectl("create", "rolebinding", "dave-escalator", "-n", NS, "--role", "rbac-escalator", "--user", "dave")
    assert kubectl_as(cluster, "dave", "create", "-f", "-", input=_role("secret-reader", secrets)).returncode == 0
    assert kubectl_as(cluster, "dave", "create", "-f", "-", input=_binding("erin-edit", "ClusterRole", "edit", "erin")).returncode == 0
    assert can_i(cluster, "create", "deployments.apps", "-n", NS, "--as", "erin") == "yes"
    # bind is per role name: admin stays out of reach
    res = kubectl_as(cluster, "dave", "create", "-f", "-", input=_binding("erin-admin", "ClusterRole", "admin", "erin"))
    assert res.returncode == 1 and "not currently held" in res.stderr


def test_aggregation_controller(cluster: Cluster) -> None:
    rule = {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "list", "watch"]}
    assert can_i(cluster, "list", "leases.coordination.k8s.io", "-n", NS, "--as", "alice") == "no"
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "k8py-test:leases-view", "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}},
        "rules": [rule],
    }
    cluster.kubectl("create", "-f", "-", input=json.dumps(role))
    for name in ("view", "edit", "admin"):
        wait_for(lambda n=name: rule in cluster.kubectl_json("get", "clusterrole", n)["rules"], what=f"{name} aggregates leases")
    assert can_i(cluster, "list", "leases.coordination.k8s.io", "-n", NS, "--as", "alice") == "yes"
    cluster.kubectl("delete", "clusterrole", "k8py-test:leases-view")
    wait_for(lambda: rule not in cluster.kubectl_json("get", "clusterrole", "admin")["rules"], what="admin drops leases")


def test_bootstrap_policy_present(cluster: Cluster, tmp_path: Path) -> None:
    names = {i["metadata"]["name"] for i in cluster.kubectl_json("get", "clusterroles")["items"]}
    assert {"cluster-admin", "system:node", "system:controller:namespace-controller"} <= names
    crb = cluster.kubectl_json("get", "clusterrolebinding", "system:public-info-viewer")
    assert [s["name"] for s in crb["subjects"]] == ["system:authenticated", "system:unauthenticated"]
    assert can_i(cluster, "get", "configmaps/extension-apiserver-authentication", "-n", "kube-system",
                 "--as", "system:kube-scheduler") == "yes"
