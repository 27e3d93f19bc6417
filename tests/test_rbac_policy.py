"""RBAC without a cluster: rule matching and covering, the authorizer's index, the bootstrap policy and its
reconciliation; and, with a cluster, the bootstrap policy reconciled again after a restart."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from k8py.api.registry import Registry
from k8py.apiserver.admission import UserInfo
from k8py.apiserver.authorization import Attributes, Decision
from k8py.apiserver.rbac import policy
from k8py.apiserver.rbac.authorizer import RBACAuthorizer
from k8py.apiserver.rbac.reconcile import reconcile_binding, reconcile_role
from k8py.apiserver.rbac.rules import Rule, allows, compact, covers, parse
from k8py.apiserver.watchcache import WatchEvent
from tests.conftest import free_port, start_cluster, wait_for


def res(verb: str, resource: str, group: str = "", namespace: str = "", name: str = "", sub: str = "") -> Attributes:
    return Attributes(verb=verb, namespace=namespace, api_group=group, resource=resource, subresource=sub, name=name)


def url(verb: str, path: str) -> Attributes:
    return Attributes(verb=verb, resource_request=False, path=path)


@pytest.mark.parametrize(
    ("rule", "attrs", "allowed"),
    [
        (Rule(("get",), ("",), ("pods",)), res("get", "pods"), True),
        (Rule(("get",), ("",), ("pods",)), res("list", "pods"), False),
        (Rule(("get",), ("",), ("pods",)), res("get", "pods", "apps"), False),
        (Rule(("*",), ("*",), ("*",)), res("delete", "deployments", "apps", sub="scale"), True),
        (Rule(("get",), ("",), ("pods",)), res("get", "pods", sub="log"), False),
        (Rule(("get",), ("",), ("pods/log",)), res("get", "pods", sub="log"), True),
        (Rule(("get",), ("",), ("pods/log",)), res("get", "pods"), False),
        (Rule(("get",), ("*",), ("*/scale",)), res("get", "deployments", "apps", sub="scale"), True),
        (Rule(("get",), ("*",), ("*/scale",)), res("get", "deployments", "apps"), False),
        (Rule(("get",), ("",), ("configmaps",), ("a",)), res("get", "configmaps", name="a"), True),
        (Rule(("get",), ("",), ("configmaps",), ("a",)), res("get", "configmaps", name="b"), False),
        (Rule(("get",), ("",), ("configmaps",), ("a",)), res("list", "configmaps"), False),
        (Rule(("get",), non_resource_urls=("/healthz",)), url("get", "/healthz"), True),
        (Rule(("get",), non_resource_urls=("/healthz",)), url("get", "/healthz/etcd"), False),
        (Rule(("get",), non_resource_urls=("/healthz/*",)), url("get", "/healthz/etcd"), True),
        (Rule(("get",), non_resource_urls=("/apis/*",)), url("get", "/apis"), False),
        (Rule(("*",), non_resource_urls=("*",)), url("post", "/anything"), True),
        (Rule(("get",), ("",), ("pods",)), url("get", "/api"), False),
        (Rule(("get",), non_resource_urls=("*",)), res("get", "pods"), False),
    ],
)
def test_rule_matching(rule: Rule, attrs: Attributes, allowed: bool) -> None:
    assert allows(rule, attrs) is allowed


def test_covers_and_compaction() -> None:
    owner = [Rule(("get", "list"), ("",), ("pods", "configmaps")), Rule(("get",), ("*",), ("*/scale",)),
             Rule(("get",), non_resource_urls=("/logs/*",))]
    assert covers(owner, [Rule(("get",), ("",), ("pods",))]) == []
    assert covers(owner, [Rule(("get",), ("apps",), ("deployments/scale",))]) == []
    assert covers(owner, [Rule(("get",), non_resource_urls=("/logs/a",))]) == []
    assert covers(owner, [Rule(("get",), ("",), ("pods",), ("named",))]) == []  # no names held: any name
    missing = covers(owner, [Rule(("get", "create", "delete"), ("",), ("pods", "secrets"))])
    assert [m.compact_string() for m in missing] == [
        '{APIGroups:[""], Resources:["pods"], Verbs:["create" "delete"]}',
        '{APIGroups:[""], Resources:["secrets"], Verbs:["get" "create" "delete"]}',
    ]
    # held for one name only: not for all names
    assert covers([Rule(("get",), ("",), ("secrets",), ("a",))], [Rule(("get",), ("",), ("secrets",))])
    assert compact([Rule(("get",), ("",), ("pods",)), Rule(("list",), ("",), ("pods",))]) == [Rule(("get", "list"), ("",), ("pods",))]


class FakeCache:
    """The watch cache's read side and event hook."""

    def __init__(self) -> None:
        self.objects: dict[str, Any] = {}
        self.on_events: list[Any] = []

    def get(self, key: str) -> Any:
        return self.objects.get(key)

    def list(self, prefix: str) -> list[Any]:
        return [v for k, v in sorted(self.objects.items()) if k.startswith(prefix)]

    def put(self, key: str, obj: Any) -> None:
        prev = self.objects.get(key)
        self.objects[key] = obj
        for hook in self.on_events:
            hook([WatchEvent("ADDED" if prev is None else "MODIFIED", key, obj, prev, 1)])

    def delete(self, key: str) -> None:
        prev = self.objects.pop(key)
        for hook in self.on_events:
            hook([WatchEvent("DELETED", key, prev, prev, 2)])


def _obj(kind: str, name: str, namespace: str = "", **fields: Any) -> dict[str, Any]:
    md = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": md, **fields}


def test_authorizer_index_follows_bindings() -> None:
    cache = FakeCache()
    registry = Registry()
    rbac = RBACAuthorizer(cache, registry)  # type: ignore[arg-type]
    cr = registry.get("rbac.authorization.k8s.io", "v1", "clusterroles")
    crb = registry.get("rbac.authorization.k8s.io", "v1", "clusterrolebindings")
    rb = registry.get("rbac.authorization.k8s.io", "v1", "rolebindings")
    assert cr and crb and rb
    cache.put(cr.key("", "reader"), _obj("ClusterRole", "reader", rules=[{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]))
    cache.put(crb.key("", "devs-read"), _obj(
        "ClusterRoleBinding", "devs-read", roleRef={"kind": "ClusterRole", "name": "reader"},
        subjects=[{"kind": "Group", "name": "devs"}],
    ))
    rbac.start()
    alice = UserInfo("alice", ["devs", "system:authenticated"])
    bob = UserInfo("bob", ["system:authenticated"])
    sa = UserInfo("system:serviceaccount:ns1:robot", ["system:serviceaccounts"])
    decision, reason = rbac.authorize(alice, res("get", "pods", namespace="x"))
    assert decision is Decision.ALLOW
    assert reason == 'RBAC: allowed by ClusterRoleBinding "devs-read" of ClusterRole "reader" to Group "devs"'
    assert rbac.authorize(bob, res("get", "pods", namespace="x"))[0] is Decision.NO_OPINION
    # a RoleBinding (added after start) grants in its namespace only, to a ServiceAccount subject
    cache.put(rb.key("ns1", "robot"), _obj(
        "RoleBinding", "robot", "ns1", roleRef={"kind": "ClusterRole", "name": "reader"},
        subjects=[{"kind": "ServiceAccount", "name": "robot", "namespace": "ns1"}],
    ))
    assert rbac.authorize(sa, res("get", "pods", namespace="ns1"))[0] is Decision.ALLOW
    assert rbac.authorize(sa, res("get", "pods", namespace="ns2"))[0] is Decision.NO_OPINION
    assert rbac.authorize(sa, res("get", "pods"))[0] is Decision.NO_OPINION
    rules = rbac.rules_for(sa, "ns1")
    assert [r.to_json() for r in rules.resource_rules] == [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]
    # subjects change: the index follows
    cache.put(crb.key("", "devs-read"), _obj(
        "ClusterRoleBinding", "devs-read", roleRef={"kind": "ClusterRole", "name": "reader"},
        subjects=[{"kind": "User", "name": "bob"}],
    ))
    assert rbac.authorize(alice, res("get", "pods"))[0] is Decision.NO_OPINION
    assert rbac.authorize(bob, res("get", "pods"))[0] is Decision.ALLOW
    # the role changes and disappears: no stale rules
    cache.put(cr.key("", "reader"), _obj("ClusterRole", "reader", rules=[{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]))
    assert rbac.authorize(bob, res("get", "pods"))[0] is Decision.NO_OPINION
    cache.delete(cr.key("", "reader"))
    assert rbac.authorize(bob, res("list", "pods")) == (
        Decision.NO_OPINION, 'RBAC: clusterrole.rbac.authorization.k8s.io "reader" not found'
    )
    cache.delete(crb.key("", "devs-read"))
    assert rbac.authorize(bob, res("list", "pods")) == (Decision.NO_OPINION, "")
    assert not rbac._crb


def test_bootstrap_policy_shape() -> None:
    names = [r["metadata"]["name"] for r in (*policy.CLUSTER_ROLES, *policy.CONTROLLER_ROLES)]
    assert len(names) == len(set(names))
    for name in ("cluster-admin", "admin", "edit", "view", "system:basic-user", "system:discovery",
                 "system:public-info-viewer", "system:node", "system:node-proxier", "system:kube-scheduler",
                 "system:kube-controller-manager", "system:kube-dns", "system:volume-scheduler",
                 "system:node-bootstrapper", "system:certificates.k8s.io:kubelet-serving-approver",
                 "system:controller:clusterrole-aggregation-controller", "system:controller:namespace-controller"):
        assert name in names, name
    role_names = set(names)
    for b in (*policy.CLUSTER_ROLE_BINDINGS, *policy.CONTROLLER_ROLE_BINDINGS):
        assert b["roleRef"]["name"] in role_names
        assert b["metadata"]["annotations"][policy.AUTOUPDATE] == "true"
    ns_roles = {(r["metadata"]["namespace"], r["metadata"]["name"]) for r in policy.NAMESPACE_ROLES}
    for b in policy.NAMESPACE_ROLE_BINDINGS:
        assert (b["metadata"]["namespace"], b["roleRef"]["name"]) in ns_roles
    masters = next(b for b in policy.CLUSTER_ROLE_BINDINGS if b["metadata"]["name"] == "cluster-admin")
    assert masters["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:masters"}]


def test_reconcile_unions_without_removing() -> None:
    expected = next(r for r in policy.CLUSTER_ROLES if r["metadata"]["name"] == "system:kube-dns")
    current = copy.deepcopy(expected)
    current["rules"] = [{"apiGroups": [""], "resources": ["services"], "verbs": ["list", "watch", "get"]}]
    current["metadata"]["labels"] = {"mine": "yes"}
    assert reconcile_role(current, expected)
    assert current["rules"][0]["verbs"] == ["list", "watch", "get"]  # kept
    assert parse(current["rules"]) and not covers(parse(current["rules"]), parse(expected["rules"]))
    assert current["metadata"]["labels"] == {"mine": "yes", "kubernetes.io/bootstrapping": "rbac-defaults"}
    assert not reconcile_role(current, expected)  # idempotent
    binding = next(b for b in policy.CLUSTER_ROLE_BINDINGS if b["metadata"]["name"] == "system:public-info-viewer")
    current_b = copy.deepcopy(binding)
    current_b["subjects"] = [{"kind": "User", "name": "extra"}]
    assert reconcile_binding(current_b, binding)
    assert current_b["subjects"][0] == {"kind": "User", "name": "extra"} and len(current_b["subjects"]) == 3


def test_bootstrap_roles_reconciled_after_restart(tmp_path: Path) -> None:
    """Deleted and trimmed bootstrap objects come back at start; one with autoupdate "false" stays as edited."""
    port = free_port()
    extra = ("--disable-scheduler", "--disable-controller-manager")
    cluster = start_cluster(tmp_path, port, extra)
    try:
        cluster.kubectl("delete", "clusterrole", "system:public-info-viewer")
        cluster.kubectl("delete", "rolebinding", "-n", "kube-system", "system::leader-locking-kube-scheduler")
        trimmed = cluster.kubectl_json("get", "clusterrole", "system:kube-dns")
        trimmed["rules"] = [{"apiGroups": [""], "resources": ["services"], "verbs": ["list"]}]
        cluster.kubectl("replace", "-f", "-", input=json.dumps(trimmed))
        protected = cluster.kubectl_json("get", "clusterrole", "system:discovery")
        protected["metadata"]["annotations"][policy.AUTOUPDATE] = "false"
        protected["rules"] = [{"nonResourceURLs": ["/version"], "verbs": ["get"]}]
        cluster.kubectl("replace", "-f", "-", input=json.dumps(protected))
    finally:
        cluster.stop()
    cluster = start_cluster(tmp_path, port, extra)
    try:
        wait_for(lambda: cluster.kubectl("get", "--raw", "/readyz", check=False).returncode == 0, what="readyz")
        readyz = cluster.kubectl("get", "--raw", "/readyz?verbose").stdout
        assert "[+]poststarthook/rbac/bootstrap-roles ok" in readyz
        assert cluster.kubectl_json("get", "clusterrole", "system:public-info-viewer")["rules"][0]["verbs"] == ["get"]
        cluster.kubectl("get", "rolebinding", "-n", "kube-system", "system::leader-locking-kube-scheduler")
        dns_rules = cluster.kubectl_json("get", "clusterrole", "system:kube-dns")["rules"]
        assert dns_rules[0] == {"apiGroups": [""], "resources": ["services"], "verbs": ["list"]}
        assert not covers(parse(dns_rules), parse(next(
            r for r in policy.CLUSTER_ROLES if r["metadata"]["name"] == "system:kube-dns")["rules"]))
        discovery = cluster.kubectl_json("get", "clusterrole", "system:discovery")
        assert discovery["rules"] == [{"nonResourceURLs": ["/version"], "verbs": ["get"]}]
        assert discovery["metadata"]["annotations"][policy.AUTOUPDATE] == "false"
    finally:
        cluster.stop()
