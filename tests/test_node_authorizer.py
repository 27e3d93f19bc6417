"""The Node authorizer (graph and decisions) and the NodeRestriction admission plugin.

Unit tests run both on a real WatchCache over a SQLiteStore (objects written to the store,
the graph following the cache's events); the end-to-end tests send requests with a client
certificate for `system:node:<name>` (group `system:nodes`) to a `k8py up` cluster.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from k8py.api.errors import StatusError
from k8py.api.registry import Registry
from k8py.apiserver.admission import Attributes as AdmissionAttributes
from k8py.apiserver.admission import UserInfo
from k8py.apiserver.admission_plugins.noderestriction import NodeRestriction, forbidden_labels
from k8py.apiserver.authorization import Attributes, Decision
from k8py.apiserver.nodeauthorizer import NodeAuthorizer, NodeGraph, node_identity, pod_references
from k8py.apiserver.watchcache import WatchCache
from k8py.bootstrap.kubeconfig import write_kubeconfig
from k8py.bootstrap.pki import ensure_client_cert
from tests import test_watchcache
from tests.conftest import Cluster, start_cluster, wait_for

Obj = dict[str, Any]
REGISTRY = Registry()


def info(group: str, resource: str) -> Any:
    found = REGISTRY.get(group, "v1", resource)
    assert found is not None
    return found


PODS, NODES, PVS = info("", "pods"), info("", "nodes"), info("", "persistentvolumes")
VAS = info("storage.k8s.io", "volumeattachments")


def node_user(name: str) -> UserInfo:
    return UserInfo(f"system:node:{name}", ["system:nodes", "system:authenticated"])


A, B = node_user("a"), node_user("b")


class Objects:
    """Writes objects to the store under their registry keys and waits for the cache to see them."""

    def __init__(self, cache: WatchCache) -> None:
        self.cache = cache
        self.store = cache._store  # noqa: SLF001

    def _key(self, obj: Obj) -> str:
        md = obj["metadata"]
        kind_info = {"Pod": PODS, "Node": NODES, "PersistentVolume": PVS, "VolumeAttachment": VAS}[obj["kind"]]
        return kind_info.key(md.get("namespace", ""), md["name"])

    async def put(self, obj: Obj) -> Obj:
        key = self._key(obj)
        current = await self.store.get(key)
        value = orjson.dumps(obj)
        if current is None:
            await self.store.create(key, value)
        else:
            await self.store.update(key, value, expected_revision=current.mod_revision)
        await self.cache.sync()
        return obj

    async def delete(self, obj: Obj) -> None:
        await self.store.delete(self._key(obj))
        await self.cache.sync()


cache = test_watchcache.cache  # the same real watch cache over SQLite


@pytest.fixture
def objects(cache: WatchCache) -> Objects:
    return Objects(cache)


@pytest.fixture
def authorizer(cache: WatchCache) -> NodeAuthorizer:
    return NodeAuthorizer(NodeGraph(cache, REGISTRY))


def pod(name: str, node: str, ns: str = "ns", **spec: Any) -> Obj:
    containers = spec.pop("containers", [{"name": "c", "image": "busybox"}])
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "uid": f"uid-{name}"},
        "spec": {"containers": containers, **({"nodeName": node} if node else {}), **spec},
    }


def get(resource: str, name: str, ns: str = "ns", group: str = "", verb: str = "get", sub: str = "") -> Attributes:
    return Attributes(verb=verb, namespace=ns, api_group=group, api_version="v1", resource=resource, name=name, subresource=sub)


def decide(authorizer: NodeAuthorizer, user: UserInfo, attrs: Attributes) -> Decision:
    return authorizer.authorize(user, attrs)[0]


ALLOW, NO = Decision.ALLOW, Decision.NO_OPINION
NO_RELATION = "no relationship found between node '{}' and this object"


# ---- identity and references -------------------------------------------------------------------


def test_node_identity() -> None:
    assert node_identity(A) == ("a", True)
    assert node_identity(UserInfo("system:node:a", ["system:authenticated"])) == ("", False)
    assert node_identity(UserInfo("alice", ["system:nodes"])) == ("", False)
    assert node_identity(UserInfo("system:node:", ["system:nodes"])) == ("", True)


def test_pod_references_cover_every_source() -> None:
    p = pod(
        "p", "a",
        imagePullSecrets=[{"name": "pull"}],
        serviceAccountName="sa",
        initContainers=[{"name": "i", "envFrom": [{"secretRef": {"name": "init-env"}}]}],
        containers=[{
            "name": "c",
            "env": [
                {"name": "X", "valueFrom": {"secretKeyRef": {"name": "env-secret", "key": "k"}}},
                {"name": "Y", "valueFrom": {"configMapKeyRef": {"name": "env-cm", "key": "k"}}},
            ],
            "envFrom": [{"configMapRef": {"name": "from-cm"}}],
        }],
        ephemeralContainers=[{"name": "e", "envFrom": [{"secretRef": {"name": "eph"}}]}],
        volumes=[
            {"name": "s", "secret": {"secretName": "vol-secret"}},
            {"name": "m", "configMap": {"name": "vol-cm"}},
            {"name": "pr", "projected": {"sources": [{"secret": {"name": "proj-secret"}}, {"configMap": {"name": "proj-cm"}}]}},
            {"name": "csi", "csi": {"driver": "d", "nodePublishSecretRef": {"name": "csi-secret"}}},
            {"name": "rbd", "rbd": {"monitors": ["m"], "image": "i", "secretRef": {"name": "rbd-secret"}}},
            {"name": "claim", "persistentVolumeClaim": {"claimName": "data"}},
            {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}},
        ],
        resourceClaims=[{"name": "gpu", "resourceClaimName": "shared-gpu"}, {"name": "tpl", "resourceClaimTemplateName": "t"}],
    )
    p["status"] = {"resourceClaimStatuses": [{"name": "tpl", "resourceClaimName": "p-tpl-x1"}]}
    secrets = {"pull", "init-env", "env-secret", "eph", "vol-secret", "proj-secret", "csi-secret", "rbd-secret"}
    assert pod_references(p) == frozenset(
        {("secret", "ns", s) for s in secrets}
        | {("configmap", "ns", c) for c in ("env-cm", "from-cm", "vol-cm", "proj-cm")}
        | {("pvc", "ns", "data"), ("pvc", "ns", "p-scratch"), ("serviceaccount", "ns", "sa")}
        | {("resourceclaim", "ns", "shared-gpu"), ("resourceclaim", "ns", "p-tpl-x1")}
    )


# ---- the graph and decisions -------------------------------------------------------------------


async def test_secret_of_a_pod_is_readable_by_its_node_only(authorizer: NodeAuthorizer, objects: Objects) -> None:
    p = await objects.put(pod("web", "a", volumes=[{"name": "s", "secret": {"secretName": "s1"}}]))
    assert authorizer.authorize(A, get("secrets", "s1")) == (ALLOW, "")
    for verb in ("list", "watch"):  # a watch of one object (fieldSelector metadata.name) names it
        assert decide(authorizer, A, get("secrets", "s1", verb=verb)) is ALLOW
    assert authorizer.authorize(B, get("secrets", "s1")) == (NO, NO_RELATION.format("b"))
    assert authorizer.authorize(A, get("secrets", "other")) == (NO, NO_RELATION.format("a"))
    assert authorizer.authorize(A, get("secrets", "s1", ns="elsewhere")) == (NO, NO_RELATION.format("a"))
    assert authorizer.authorize(A, get("secrets", "", verb="list")) == (NO, "No Object name found")
    assert authorizer.authorize(A, get("secrets", "s1", verb="update")) == (NO, "can only read resources of this type")
    assert authorizer.authorize(A, get("secrets", "s1", ns="")) == (NO, "can only read namespaced object of this type")
    await objects.delete(p)
    assert authorizer.authorize(A, get("secrets", "s1")) == (NO, NO_RELATION.format("a"))


async def test_graph_follows_updates_and_shared_references(authorizer: NodeAuthorizer, objects: Objects) -> None:
    env = [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}}]
    p1 = await objects.put(pod("p1", "a", containers=[{"name": "c", "image": "i", "env": env}]))
    p2 = await objects.put(pod("p2", "a", containers=[{"name": "c", "image": "i", "env": env}]))
    await objects.put(pod("pending", "", volumes=[{"name": "s", "secret": {"secretName": "pending-secret"}}]))
    assert decide(authorizer, A, get("configmaps", "cm")) is ALLOW
    assert decide(authorizer, A, get("secrets", "pending-secret")) is NO  # not bound to a node yet
    await objects.delete(p1)
    assert decide(authorizer, A, get("configmaps", "cm")) is ALLOW  # p2 still needs it
    await objects.delete(p2)
    assert decide(authorizer, A, get("configmaps", "cm")) is NO
    bound = pod("pending", "b", volumes=[{"name": "s", "secret": {"secretName": "pending-secret"}}])
    await objects.put(bound)  # the scheduler bound it
    assert decide(authorizer, B, get("secrets", "pending-secret")) is ALLOW
    assert decide(authorizer, A, get("secrets", "pending-secret")) is NO


async def test_graph_starts_from_the_cache(cache: WatchCache, objects: Objects) -> None:
    """Objects stored before the authorizer existed (an API server restart) count from the first request."""
    await objects.put(pod("old", "a", serviceAccountName="builder"))
    authorizer = NodeAuthorizer(NodeGraph(cache, REGISTRY))
    token = get("serviceaccounts", "builder", verb="create", sub="token")
    assert authorizer.authorize(A, token) == (ALLOW, "")
    assert decide(authorizer, B, token) is NO
    assert authorizer.authorize(A, get("serviceaccounts", "builder")) == (NO, "can only create tokens for individual service accounts")
    assert authorizer.authorize(A, get("serviceaccounts", "builder", verb="create")) == (
        NO, "can only create token subresource of serviceaccount"
    )
    # the first event after creation also starts from the cache, then follows
    other = NodeAuthorizer(NodeGraph(cache, REGISTRY))
    await objects.put(pod("new", "b", serviceAccountName="builder"))
    assert decide(other, A, token) is ALLOW and decide(other, B, token) is ALLOW


async def test_mirror_pods_grant_nothing(authorizer: NodeAuthorizer, objects: Objects) -> None:
    mirror = pod("static-web", "a", volumes=[{"name": "s", "secret": {"secretName": "s1"}}])
    mirror["metadata"]["annotations"] = {"kubernetes.io/config.mirror": "hash"}
    await objects.put(mirror)
    assert decide(authorizer, A, get("secrets", "s1")) is NO
    await objects.delete(mirror)
    assert authorizer.graph._pods == {} and authorizer.graph._reach == {}  # noqa: SLF001


async def test_pvc_pv_and_pv_secrets(authorizer: NodeAuthorizer, objects: Objects) -> None:
    await objects.put(pod("db", "a", volumes=[{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]))
    pv = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": "pv1"},
        "spec": {
            "claimRef": {"namespace": "ns", "name": "data"},
            "csi": {
                "driver": "d",
                "volumeHandle": "h",
                "nodeStageSecretRef": {"namespace": "storage", "name": "stage"},
                "controllerPublishSecretRef": {"namespace": "storage", "name": "controller"},
            },
        },
    }
    await objects.put(pv)
    assert decide(authorizer, A, get("persistentvolumeclaims", "data")) is ALLOW
    assert decide(authorizer, B, get("persistentvolumeclaims", "data")) is NO
    assert authorizer.authorize(A, get("persistentvolumeclaims", "data", verb="list")) == (
        NO, "can only get individual resources of this type"
    )
    assert decide(authorizer, A, get("persistentvolumeclaims", "data", verb="patch", sub="status")) is ALLOW
    assert authorizer.authorize(A, get("persistentvolumeclaims", "data", verb="delete", sub="status")) == (
        NO, "can only get/update/patch this type"
    )
    assert decide(authorizer, A, get("persistentvolumes", "pv1", ns="")) is ALLOW
    assert decide(authorizer, B, get("persistentvolumes", "pv1", ns="")) is NO
    assert decide(authorizer, A, get("secrets", "stage", ns="storage")) is ALLOW
    assert decide(authorizer, A, get("secrets", "controller", ns="storage")) is NO  # not the kubelet's
    del pv["spec"]["claimRef"]  # released
    await objects.put(pv)
    assert decide(authorizer, A, get("persistentvolumes", "pv1", ns="")) is NO
    assert decide(authorizer, A, get("secrets", "stage", ns="storage")) is NO


async def test_volume_attachments(authorizer: NodeAuthorizer, objects: Objects) -> None:
    va = {"apiVersion": "storage.k8s.io/v1", "kind": "VolumeAttachment", "metadata": {"name": "va1"},
          "spec": {"attacher": "d", "nodeName": "a", "source": {"persistentVolumeName": "pv1"}}}
    await objects.put(va)
    attrs = get("volumeattachments", "va1", ns="", group="storage.k8s.io")
    assert decide(authorizer, A, attrs) is ALLOW
    assert decide(authorizer, B, attrs) is NO
    await objects.delete(va)
    assert decide(authorizer, A, attrs) is NO


def test_leases_csinodes_and_static_rules(authorizer: NodeAuthorizer) -> None:
    lease = "coordination.k8s.io"
    assert decide(authorizer, A, get("leases", "a", ns="kube-node-lease", group=lease, verb="update")) is ALLOW
    assert decide(authorizer, A, get("leases", "", ns="kube-node-lease", group=lease, verb="create")) is ALLOW
    assert authorizer.authorize(A, get("leases", "b", ns="kube-node-lease", group=lease)) == (
        NO, "can only access node lease with the same name as the requesting node"
    )
    assert authorizer.authorize(A, get("leases", "a", ns="kube-system", group=lease)) == (
        NO, 'can only access leases in the "kube-node-lease" system namespace'
    )
    assert authorizer.authorize(A, get("leases", "", ns="kube-node-lease", group=lease, verb="list")) == (
        NO, "can only get, create, update, patch, or delete a node lease"
    )
    assert decide(authorizer, A, get("csinodes", "a", ns="", group="storage.k8s.io")) is ALLOW
    assert decide(authorizer, A, get("csinodes", "b", ns="", group="storage.k8s.io")) is NO
    # the static node rules
    for allowed in (
        get("events", "", verb="create"),
        get("nodes", "a", ns="", verb="patch", sub="status"),
        get("pods", "", ns="", verb="watch"),
        get("pods", "web", verb="create", sub="eviction"),
        get("services", "", ns="", verb="list"),
        get("endpoints", "kubernetes", ns="default"),
        get("certificatesigningrequests", "", ns="", group="certificates.k8s.io", verb="create"),
        get("subjectaccessreviews", "", ns="", group="authorization.k8s.io", verb="create"),
        get("runtimeclasses", "gvisor", ns="", group="node.k8s.io"),
    ):
        assert decide(authorizer, A, allowed) is ALLOW, allowed
    for refused in (
        get("namespaces", "ns", ns="", verb="delete"),
        get("deployments", "", group="apps", verb="list"),
        get("pods", "web", verb="update"),
        get("nodes", "a", ns="", verb="delete"),
        get("endpoints", "", ns="default", verb="list"),
        Attributes(verb="get", resource_request=False, path="/healthz"),
    ):
        assert authorizer.authorize(A, refused) == (NO, ""), refused


def test_non_nodes_get_no_opinion(authorizer: NodeAuthorizer) -> None:
    assert authorizer.authorize(UserInfo("alice", ["system:authenticated"]), get("events", "", verb="create")) == (NO, "")
    assert authorizer.authorize(UserInfo("system:node:", ["system:nodes"]), get("events", "", verb="create")) == (
        NO, 'unknown node for user "system:node:"'
    )
    rules = authorizer.rules_for(A, "ns")
    assert rules.incomplete and rules.evaluation_error == "node authorizer does not support user rule resolution"
    assert not authorizer.rules_for(UserInfo("alice"), "ns").incomplete


async def test_decisions_are_indexed(authorizer: NodeAuthorizer, objects: Objects) -> None:
    """A decision looks up one node's index: thousands of pods elsewhere cost nothing per request."""
    graph = authorizer.graph
    for i in range(2000):
        graph._set("pods", pod(f"p{i}", f"n{i % 100}", volumes=[{"name": "s", "secret": {"secretName": f"s{i}"}}]))  # noqa: SLF001
    start = time.perf_counter()
    for i in range(2000):
        assert decide(authorizer, node_user(f"n{i % 100}"), get("secrets", f"s{i}")) is ALLOW
        assert decide(authorizer, node_user(f"n{(i + 1) % 100}"), get("secrets", f"s{i}")) is NO
    assert time.perf_counter() - start < 1.0


# ---- NodeRestriction ---------------------------------------------------------------------------


def admission(op: str, resource_info: Any, name: str, obj: Obj | None, old: Obj | None = None, *, user: UserInfo = A,
              ns: str = "", sub: str = "") -> AdmissionAttributes:
    return AdmissionAttributes(op, resource_info, ns, name, obj, old, sub, user, False)


def refused(plugin: NodeRestriction, attrs: AdmissionAttributes) -> str:
    with pytest.raises(StatusError) as e:
        plugin.admit(attrs)
    assert e.value.code in (403, 404)
    return e.value.message


def node(name: str, **labels: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "uid": f"uid-{name}", "labels": labels}, "spec": {}}


@pytest.fixture
def restriction(cache: WatchCache) -> NodeRestriction:
    return NodeRestriction(cache, PODS, NODES)


def test_labels_a_node_may_set() -> None:
    assert forbidden_labels({"kubernetes.io/hostname": "a", "node.kubernetes.io/instance-type": "x",
                             "kubelet.kubernetes.io/x": "1", "sub.node.kubernetes.io/y": "2", "example.com/z": "3",
                             "plain": "4"}, {}) == []
    assert forbidden_labels({"node-role.kubernetes.io/control-plane": "", "node-restriction.kubernetes.io/pool": "x",
                             "foo.k8s.io/bar": "1", "kubernetes.io/hostname": "a"}, {"kubernetes.io/hostname": "a"}) == [
        "foo.k8s.io/bar", "node-restriction.kubernetes.io/pool", "node-role.kubernetes.io/control-plane"
    ]
    assert forbidden_labels({}, {"node-restriction.kubernetes.io/pool": "x"}) == ["node-restriction.kubernetes.io/pool"]


async def test_own_node_only(restriction: NodeRestriction) -> None:
    mine, other = node("a"), node("b")
    restriction.admit(admission("CREATE", NODES, "a", mine))
    restriction.admit(admission("UPDATE", NODES, "a", {**mine, "status": {"phase": "x"}}, mine, sub="status"))
    restriction.admit(admission("DELETE", NODES, "a", None, mine))
    assert refused(restriction, admission("UPDATE", NODES, "b", other, other)) == (
        'nodes "b" is forbidden: node "a" is not allowed to modify node "b"'
    )
    assert "not allowed to modify node" in refused(restriction, admission("DELETE", NODES, "b", None, other))
    assert "not allowed to modify node" in refused(restriction, admission("CREATE", NODES, "b", other))
    # labels and taints
    labelled = node("a", **{"node-role.kubernetes.io/control-plane": ""})
    assert refused(restriction, admission("CREATE", NODES, "a", labelled)) == (
        'nodes "a" is forbidden: node "a" is not allowed to set the following labels: node-role.kubernetes.io/control-plane'
    )
    assert refused(restriction, admission("UPDATE", NODES, "a", labelled, mine)) == (
        'nodes "a" is forbidden: is not allowed to modify labels: node-role.kubernetes.io/control-plane'
    )
    restriction.admit(admission("UPDATE", NODES, "a", node("a", **{"kubernetes.io/hostname": "a", "team": "x"}), mine))
    tainted = {**mine, "spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]}}
    assert refused(restriction, admission("UPDATE", NODES, "a", mine, tainted)) == (
        'nodes "a" is forbidden: node "a" is not allowed to modify taints'
    )
    restriction.admit(admission("CREATE", NODES, "a", tainted))  # registering with taints is fine
    # other users are not restricted
    restriction.admit(admission("UPDATE", NODES, "b", labelled, other, user=UserInfo("admin", ["system:masters"])))


async def test_mirror_pods(restriction: NodeRestriction, objects: Objects) -> None:
    await objects.put(node("a"))

    def mirror(**changes: Any) -> Obj:
        p = pod("static-web-a", "a", ns="kube-system")
        p["metadata"]["annotations"] = {"kubernetes.io/config.mirror": "hash"}
        p["metadata"]["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": "a", "uid": "uid-a", "controller": True}]
        for key, value in changes.items():
            target = p["metadata"] if key in ("annotations", "ownerReferences") else p["spec"]
            target[key] = value
        return p

    def create(p: Obj) -> AdmissionAttributes:
        return admission("CREATE", PODS, p["metadata"]["name"], p, ns="kube-system")

    restriction.admit(create(mirror()))
    prefix = 'pods "static-web-a" is forbidden: '
    cases = {
        "annotations": ({}, 'pod does not have "kubernetes.io/config.mirror" annotation, node "a" can only create mirror pods'),
        "nodeName": ("b", 'node "a" can only create pods with spec.nodeName set to itself'),
        "ownerReferences": ([], 'node "a" can only create pods with an owner reference set to itself'),
        "serviceAccountName": ("default", 'node "a" can not create pods that reference a service account'),
        "imagePullSecrets": ([{"name": "pull"}], 'node "a" can not create pods that reference secrets'),
        "volumes": ([{"name": "c", "configMap": {"name": "cm"}}], 'node "a" can not create pods that reference configmaps'),
    }
    for key, (value, message) in cases.items():
        assert refused(restriction, create(mirror(**{key: value}))) == prefix + message, key
    pvc = mirror(volumes=[{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}])
    assert refused(restriction, create(pvc)).endswith('node "a" can not create pods that reference persistentvolumeclaims')
    wrong_uid = mirror(ownerReferences=[{"apiVersion": "v1", "kind": "Node", "name": "a", "uid": "forged", "controller": True}])
    assert refused(restriction, create(wrong_uid)).endswith("node a UID mismatch: expected forged got uid-a")
    not_controller = mirror(ownerReferences=[{"apiVersion": "v1", "kind": "Node", "name": "a", "uid": "uid-a"}])
    assert refused(restriction, create(not_controller)).endswith("can only create pods with a controller owner reference set to itself")
    # deleting, status and eviction: only pods bound to the node
    mine, theirs = pod("mine", "a"), pod("theirs", "b")
    restriction.admit(admission("DELETE", PODS, "mine", None, mine, ns="ns"))
    assert refused(restriction, admission("DELETE", PODS, "theirs", None, theirs, ns="ns")).endswith(
        'node "a" can only delete pods with spec.nodeName set to itself'
    )
    assert refused(restriction, admission("UPDATE", PODS, "mine", mine, mine, ns="ns")).endswith(
        'unexpected operation "UPDATE", node "a" can only create and delete mirror pods'
    )
    restriction.admit(admission("UPDATE", PODS, "mine", {**mine, "status": {"phase": "Running"}}, mine, ns="ns", sub="status"))
    assert refused(restriction, admission("UPDATE", PODS, "theirs", theirs, theirs, ns="ns", sub="status")).endswith(
        'node "a" can only update pod status for pods with spec.nodeName set to itself'
    )
    relabelled = {**mine, "metadata": {**mine["metadata"], "labels": {"x": "y"}}}
    assert refused(restriction, admission("UPDATE", PODS, "mine", relabelled, mine, ns="ns", sub="status")).endswith(
        'node "a" cannot update labels through pod status'
    )
    await objects.put(mine)
    await objects.put(theirs)
    eviction = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "mine", "namespace": "ns"}}
    restriction.admit(admission("CREATE", PODS, "mine", eviction, ns="ns", sub="eviction"))
    assert refused(restriction, admission("CREATE", PODS, "theirs", eviction, ns="ns", sub="eviction")).endswith(
        "node a can only evict pods with spec.nodeName set to itself"
    )


async def test_leases_tokens_and_pvc_status(restriction: NodeRestriction, objects: Objects) -> None:
    leases = info("coordination.k8s.io", "leases")
    lease = {"metadata": {"name": "a", "namespace": "kube-node-lease"}, "spec": {}}
    restriction.admit(admission("CREATE", leases, "a", lease, ns="kube-node-lease"))
    restriction.admit(admission("UPDATE", leases, "a", lease, lease, ns="kube-node-lease"))
    assert refused(restriction, admission("UPDATE", leases, "b", lease, lease, ns="kube-node-lease")).endswith(
        "can only access node lease with the same name as the requesting node"
    )
    assert refused(restriction, admission("CREATE", leases, "a", lease, ns="default")).endswith(
        'can only access leases in the "kube-node-lease" system namespace'
    )
    # TokenRequests bound to a pod on the node
    await objects.put(pod("mine", "a"))
    await objects.put(pod("theirs", "b"))
    sas = info("", "serviceaccounts")

    def token(name: str, uid: str) -> AdmissionAttributes:
        request = {"spec": {"boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": name, "uid": uid}}}
        return admission("CREATE", sas, "default", request, ns="ns", sub="token")

    restriction.admit(token("mine", "uid-mine"))
    assert refused(restriction, token("theirs", "uid-theirs")).endswith("node requested token bound to a pod scheduled on a different node")
    assert "does not match the UID in record" in refused(restriction, token("mine", "stale"))
    assert refused(restriction, admission("CREATE", sas, "default", {"spec": {}}, ns="ns", sub="token")).endswith(
        "node requested token not bound to a pod"
    )
    # PVC status: capacity and conditions only; nothing else of a PVC
    pvcs = info("", "persistentvolumeclaims")
    pvc = {"metadata": {"name": "data", "namespace": "ns", "resourceVersion": "5"}, "spec": {"resources": {}}, "status": {"phase": "Bound"}}
    resized = {**pvc, "metadata": {**pvc["metadata"], "resourceVersion": "6"}, "status": {"phase": "Bound", "capacity": {"storage": "2Gi"}}}
    restriction.admit(admission("UPDATE", pvcs, "data", resized, pvc, ns="ns", sub="status"))
    lost = {**pvc, "status": {"phase": "Lost"}}
    assert refused(restriction, admission("UPDATE", pvcs, "data", lost, pvc, ns="ns", sub="status")).endswith(
        'node "a" is not allowed to update fields other than status.capacity and status.conditions'
    )
    assert refused(restriction, admission("UPDATE", pvcs, "data", pvc, pvc, ns="ns")).endswith("may only update PVC status")


# ---- end to end: `k8py up --authorization-mode Node,RBAC` ------------------------------------


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = start_cluster(
        tmp_path_factory.mktemp("k8py-node"),
        extra=("--authorization-mode", "Node,RBAC", "--disable-scheduler", "--controllers", "serviceaccount"),
    )
    yield c
    c.stop()


def node_kubeconfig(cluster: Cluster, name: str) -> Path:
    """A kubeconfig with a client certificate for system:node:<name> in group system:nodes."""
    pki_dir = cluster.data_dir / "pki"
    pair = ensure_client_cert(pki_dir, f"node-{name}", f"system:node:{name}", ("system:nodes",))
    return write_kubeconfig(
        cluster.data_dir / f"node-{name}.kubeconfig", cluster.url, (pki_dir / "ca.crt").read_bytes(),
        pair.cert_pem(), pair.key_pem(), user=f"system:node:{name}", context=f"system:node:{name}@k8py",
    )


def as_node(cluster: Cluster, name: str, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return cluster.kubectl(f"--kubeconfig={node_kubeconfig(cluster, name)}", *args, input=input, check=False)


def test_nodes_read_only_their_pods_secrets(secured: Cluster) -> None:
    ns = "node-authz"
    secured.kubectl("create", "namespace", ns)
    secured.kubectl("create", "secret", "generic", "s1", "-n", ns, "--from-literal=k=v")
    wait_for(lambda: secured.kubectl("get", "sa", "default", "-n", ns, check=False).returncode == 0, what="default SA")
    pod_yaml = json.dumps(pod("web", "node-a", ns=ns, volumes=[{"name": "s", "secret": {"secretName": "s1"}}]))
    secured.kubectl("create", "-f", "-", input=pod_yaml)
    read = ("get", "secret", "s1", "-n", ns, "-o", "name")
    wait_for(lambda: as_node(secured, "node-a", *read).returncode == 0, what="node-a reads s1")
    assert as_node(secured, "node-a", *read).stdout.strip() == "secret/s1"
    denied = as_node(secured, "node-b", "get", "secret", "s1", "-n", ns)
    assert denied.returncode == 1
    assert (
        'secrets "s1" is forbidden: User "system:node:node-b" cannot get resource "secrets" in API group "" '
        f"in the namespace \"{ns}\": no relationship found between node 'node-b' and this object"
    ) in denied.stderr
    listed = as_node(secured, "node-a", "get", "secrets", "-n", ns)
    assert "No Object name found" in listed.stderr and listed.returncode == 1
    assert as_node(secured, "node-a", "auth", "can-i", "create", "events").stdout.strip() == "yes"
    assert as_node(secured, "node-a", "auth", "can-i", "delete", "namespaces").stdout.strip() == "no"
    secured.kubectl("delete", "pod", "web", "-n", ns, "--grace-period=0", "--force")
    wait_for(lambda: as_node(secured, "node-a", "get", "secret", "s1", "-n", ns).returncode == 1, what="access revoked")


def test_node_restriction(secured: Cluster) -> None:
    mine = json.dumps(node("node-c", **{"kubernetes.io/hostname": "node-c"}))
    created = as_node(secured, "node-c", "create", "-f", "-", input=mine)
    assert created.returncode == 0, created.stderr
    other = as_node(secured, "node-c", "create", "-f", "-", input=json.dumps(node("node-d")))
    assert 'nodes "node-d" is forbidden: node "node-c" is not allowed to modify node "node-d"' in other.stderr
    relabel = as_node(secured, "node-c", "label", "node", "node-c", "node-role.kubernetes.io/control-plane=")
    assert "is not allowed to modify labels: node-role.kubernetes.io/control-plane" in relabel.stderr
    assert as_node(secured, "node-c", "label", "node", "node-c", "team=blue").returncode == 0
    taint = as_node(secured, "node-c", "taint", "node", "node-c", "k=v:NoSchedule")
    assert 'node "node-c" is not allowed to modify taints' in taint.stderr
    assert as_node(secured, "node-c", "get", "node", "node-c", "-o", "name").stdout.strip() == "node/node-c"
    # the admin is not restricted
    secured.kubectl("label", "node", "node-c", "node-role.kubernetes.io/control-plane=")


def test_mirror_pods_end_to_end(secured: Cluster) -> None:
    created = as_node(secured, "node-e", "create", "-f", "-", input=json.dumps(node("node-e")))
    assert created.returncode == 0, created.stderr
    uid = secured.kubectl("get", "node", "node-e", "-o", "jsonpath={.metadata.uid}").stdout
    mirror = pod("static-web-node-e", "node-e", ns="default")
    mirror["metadata"] = {
        "name": "static-web-node-e",
        "namespace": "default",
        "annotations": {"kubernetes.io/config.mirror": "hash"},
        "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": "node-e", "uid": uid, "controller": True}],
    }
    made = as_node(secured, "node-e", "create", "-f", "-", input=json.dumps(mirror))
    assert made.returncode == 0, made.stderr
    plain = {**mirror, "metadata": {"name": "plain", "namespace": "default"}}
    refused = as_node(secured, "node-e", "create", "-f", "-", input=json.dumps(plain))
    assert 'node "node-e" can only create mirror pods' in refused.stderr
    stolen = as_node(secured, "node-f", "delete", "pod", "static-web-node-e", "-n", "default")
    assert 'node "node-f" can only delete pods with spec.nodeName set to itself' in stolen.stderr
    assert as_node(secured, "node-e", "delete", "pod", "static-web-node-e", "-n", "default", "--wait=false").returncode == 0
