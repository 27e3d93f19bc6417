"""The garbage collector and the namespace controller, end to end: real kubectl, a real API
server, the replicaset controller making pods that a hollow node runs (and finishes off when
they are deleted)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import http, wait_for
from tests.controllers.conftest import ControllerCluster, start_controller_manager

CONTROLLERS = "garbagecollector,namespace,replicaset"
HOLLOW_NODES = 1
GC_SYNC_PERIOD = 3  # seconds between the garbage collector's discoveries (upstream 30)
CONTROLLER_MANAGER_ARGS = (
    "--controller-option", f"garbagecollector-sync-period={GC_SYNC_PERIOD}",
    "--controller-option", "namespace-deletion-grace-period=0.2",
)
HOLD = "example.com/hold"  # a finalizer nobody handles: the test removes it


def _get(cm: ControllerCluster, path: str) -> Any:
    """The object at `path`, or None if it is not found."""
    resp = http(cm.cluster, "GET", path)
    if resp.status == 404:
        return None
    assert resp.status == 200, resp.body
    return resp.json()


def _create(cm: ControllerCluster, obj: dict[str, Any]) -> dict[str, Any]:
    return json.loads(cm.kubectl("create", "-o", "json", "-f", "-", input=json.dumps(obj)).stdout)


def _patch(cm: ControllerCluster, path: str, patch: dict[str, Any]) -> Any:
    resp = http(cm.cluster, "PATCH", path, json.dumps(patch), {"Content-Type": "application/merge-patch+json"})
    assert resp.status == 200, resp.body
    return resp.json()


def _owner(obj: dict[str, Any], *, block: bool = False) -> dict[str, Any]:
    md = obj["metadata"]
    ref = {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": md["name"], "uid": md["uid"]}
    if block:
        ref["blockOwnerDeletion"] = True
    return ref


def _configmap(name: str, ns: str, *owners: dict[str, Any], finalizers: list[str] | None = None) -> dict[str, Any]:
    md: dict[str, Any] = {"name": name, "namespace": ns}
    if owners:
        md["ownerReferences"] = list(owners)
    if finalizers:
        md["finalizers"] = finalizers
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": md, "data": {"k": "v"}}


@pytest.fixture
def ns(cm_cluster: ControllerCluster, request: pytest.FixtureRequest) -> Iterator[str]:
    name = "gc-" + request.node.name.removeprefix("test_").replace("_", "-")[:40]
    cm_cluster.kubectl("create", "namespace", name)
    yield name


def _replicaset(cm: ControllerCluster, ns: str, name: str, replicas: int = 2) -> tuple[dict[str, Any], list[str]]:
    """A ReplicaSet whose `replicas` pods are running; (the RS, its pods' names)."""
    labels = {"app": name}
    rs = _create(cm, {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}},
        },
    })

    def running() -> list[str] | None:
        pods = _get(cm, f"/api/v1/namespaces/{ns}/pods?labelSelector=app%3D{name}")["items"]
        ok = [p for p in pods if p.get("status", {}).get("phase") == "Running"]
        return [p["metadata"]["name"] for p in ok] if len(ok) == replicas else None

    return rs, wait_for(running, timeout=30, what=f"{replicas} running pods of {name}")


def _pods(cm: ControllerCluster, ns: str, app: str) -> list[dict[str, Any]]:
    return _get(cm, f"/api/v1/namespaces/{ns}/pods?labelSelector=app%3D{app}")["items"]


# ---- cascading deletion, as kubectl asks for it ----------------------------------------------------


def test_cascade_background(cm_cluster: ControllerCluster, ns: str) -> None:
    cm = cm_cluster
    _, pods = _replicaset(cm, ns, "bg")
    out = cm.kubectl("delete", "rs", "bg", "-n", ns, "--cascade=background").stdout
    assert out.strip() == 'replicaset.apps "bg" deleted'
    assert _get(cm, f"/apis/apps/v1/namespaces/{ns}/replicasets/bg") is None  # gone at once
    wait_for(lambda: not _pods(cm, ns, "bg"), timeout=20, what="the pods garbage collected")


def test_cascade_foreground(cm_cluster: ControllerCluster, ns: str) -> None:
    cm = cm_cluster
    _, pods = _replicaset(cm, ns, "fg")
    # one pod is held by a finalizer, so that the owner's wait can be seen
    _patch(cm, f"/api/v1/namespaces/{ns}/pods/{pods[0]}", {"metadata": {"finalizers": [HOLD]}})
    cm.kubectl("delete", "rs", "fg", "-n", ns, "--cascade=foreground", "--wait=false")
    rs = _get(cm, f"/apis/apps/v1/namespaces/{ns}/replicasets/fg")
    assert rs["metadata"]["deletionTimestamp"] and "foregroundDeletion" in rs["metadata"]["finalizers"]
    # the unheld pod goes; the held one is terminating; the ReplicaSet waits for it
    wait_for(lambda: [p["metadata"]["name"] for p in _pods(cm, ns, "fg")] == [pods[0]], timeout=20,
             what="the unheld pod deleted")
    held = _get(cm, f"/api/v1/namespaces/{ns}/pods/{pods[0]}")
    assert held["metadata"]["deletionTimestamp"]
    time.sleep(1)  # a negative check: give the collector a chance to get it wrong
    rs = _get(cm, f"/apis/apps/v1/namespaces/{ns}/replicasets/fg")
    assert rs is not None and rs["metadata"]["finalizers"] == ["foregroundDeletion"]
    _patch(cm, f"/api/v1/namespaces/{ns}/pods/{pods[0]}", {"metadata": {"finalizers": None}})
    wait_for(lambda: _get(cm, f"/apis/apps/v1/namespaces/{ns}/replicasets/fg") is None, timeout=20,
             what="the ReplicaSet deleted after its pods")
    assert not _pods(cm, ns, "fg")


def test_cascade_foreground_kubectl_waits(cm_cluster: ControllerCluster, ns: str) -> None:
    """kubectl --cascade=foreground waits until the owner is gone, which is after its pods."""
    cm = cm_cluster
    _replicaset(cm, ns, "fgw")
    cm.kubectl("delete", "rs", "fgw", "-n", ns, "--cascade=foreground", "--timeout=30s")
    assert _get(cm, f"/apis/apps/v1/namespaces/{ns}/replicasets/fgw") is None
    assert not _pods(cm, ns, "fgw")


def test_cascade_orphan(cm_cluster: ControllerCluster, ns: str) -> None:
    cm = cm_cluster
    _, pods = _replicaset(cm, ns, "or")
    cm.kubectl("delete", "rs", "or", "-n", ns, "--cascade=orphan", "--timeout=30s")
    assert _get(cm, f"/apis/apps/v1/namespaces/{ns}/replicasets/or") is None
    left = _pods(cm, ns, "or")
    assert sorted(p["metadata"]["name"] for p in left) == sorted(pods)
    assert all(not p["metadata"].get("ownerReferences") and not p["metadata"].get("deletionTimestamp") for p in left)
    time.sleep(1)  # and they stay
    assert len(_pods(cm, ns, "or")) == 2


# ---- owners of any kind -----------------------------------------------------------------------------


def _crd(cm: ControllerCluster, plural: str, group: str = "gc.example.com") -> str:
    kind = plural.capitalize().removesuffix("s")
    _create(cm, {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": kind.lower(), "kind": kind},
            "versions": [{
                "name": "v1", "served": True, "storage": True,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
            }],
        },
    })
    wait_for(lambda: _get(cm, f"/apis/{group}/v1") is not None, timeout=10, what=f"{plural} served")
    return kind


def test_custom_resource_owner_and_dependent(cm_cluster: ControllerCluster, ns: str) -> None:
    cm = cm_cluster
    kind = _crd(cm, "widgets")
    base = f"/apis/gc.example.com/v1/namespaces/{ns}/widgets"
    widget = _create(cm, {"apiVersion": "gc.example.com/v1", "kind": kind, "metadata": {"name": "w", "namespace": ns}})
    _create(cm, _configmap("owned-by-widget", ns, _owner(widget)))
    # and the other way round: a custom object owned by a ConfigMap
    owner_cm = _create(cm, _configmap("widget-owner", ns))
    _create(cm, {"apiVersion": "gc.example.com/v1", "kind": kind,
                 "metadata": {"name": "owned", "namespace": ns, "ownerReferences": [_owner(owner_cm)]}})
    time.sleep(0.5)
    assert _get(cm, f"/api/v1/namespaces/{ns}/configmaps/owned-by-widget") is not None  # owners exist: kept
    cm.kubectl("delete", "widgets.gc.example.com", "w", "-n", ns)
    wait_for(lambda: _get(cm, f"/api/v1/namespaces/{ns}/configmaps/owned-by-widget") is None, timeout=20,
             what="the ConfigMap owned by the widget collected")
    cm.kubectl("delete", "configmap", "widget-owner", "-n", ns)
    wait_for(lambda: _get(cm, f"{base}/owned") is None, timeout=20, what="the widget owned by the ConfigMap collected")


def test_dangling_owner_and_wrong_uid(cm_cluster: ControllerCluster, ns: str) -> None:
    cm = cm_cluster
    real = _create(cm, _configmap("real", ns))
    missing = {"apiVersion": "v1", "kind": "ConfigMap", "name": "never-existed", "uid": "00000000-0000-0000-0000-000000000001"}
    wrong_uid = {**_owner(real), "uid": "00000000-0000-0000-0000-000000000002"}
    _create(cm, _configmap("dangling", ns, missing))
    _create(cm, _configmap("wrong-uid", ns, wrong_uid))
    _create(cm, _configmap("kept", ns, _owner(real)))
    for name in ("dangling", "wrong-uid"):
        wait_for(lambda n=name: _get(cm, f"/api/v1/namespaces/{ns}/configmaps/{n}") is None, timeout=20,
                 what=f"{name} collected")
    assert _get(cm, f"/api/v1/namespaces/{ns}/configmaps/kept") is not None


def test_multiple_owners(cm_cluster: ControllerCluster, ns: str) -> None:
    cm = cm_cluster
    a = _create(cm, _configmap("owner-a", ns))
    b = _create(cm, _configmap("owner-b", ns))
    _create(cm, _configmap("shared", ns, _owner(a), _owner(b)))
    cm.kubectl("delete", "configmap", "owner-a", "-n", ns)
    # one owner left: kept, and the reference to the gone owner removed
    wait_for(lambda: _get(cm, f"/api/v1/namespaces/{ns}/configmaps/shared")["metadata"]["ownerReferences"]
             == [_owner(b)], timeout=20, what="the dangling reference removed")
    cm.kubectl("delete", "configmap", "owner-b", "-n", ns)
    wait_for(lambda: _get(cm, f"/api/v1/namespaces/{ns}/configmaps/shared") is None, timeout=20,
             what="collected once both owners are gone")


def test_cluster_scoped_owner_and_other_namespace_owner(cm_cluster: ControllerCluster, ns: str) -> None:
    cm = cm_cluster
    owner_ns = _create(cm, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"{ns}-owner"}})
    _create(cm, _configmap("owned-by-namespace", ns, _owner(owner_ns)))
    # a namespaced owner in another namespace is no owner: the dependent goes, with a warning event
    other = _create(cm, _configmap("in-other-namespace", f"{ns}-owner"))
    _create(cm, _configmap("cross-namespace", ns, _owner(other)))
    wait_for(lambda: _get(cm, f"/api/v1/namespaces/{ns}/configmaps/cross-namespace") is None, timeout=20,
             what="the dependent of an owner in another namespace collected")
    events = wait_for(lambda: _get(cm, f"/api/v1/namespaces/{ns}/events?fieldSelector=reason%3DOwnerRefInvalidNamespace")
                      ["items"], timeout=10, what="the OwnerRefInvalidNamespace event")
    ev = events[0]
    assert ev["type"] == "Warning" and ev["source"]["component"] == "garbage-collector-controller"
    assert ev["involvedObject"]["name"] == "cross-namespace"
    md = other["metadata"]
    assert ev["message"] == (f"ownerRef [v1/ConfigMap, namespace: {ns}, name: in-other-namespace, uid: {md['uid']}] "
                             f'does not exist in namespace "{ns}"')
    assert _get(cm, f"/api/v1/namespaces/{ns}/configmaps/owned-by-namespace") is not None
    cm.kubectl("delete", "namespace", f"{ns}-owner", "--timeout=30s")
    wait_for(lambda: _get(cm, f"/api/v1/namespaces/{ns}/configmaps/owned-by-namespace") is None, timeout=20,
             what="the dependent of a deleted cluster-scoped owner collected")


def test_new_crd_is_covered_after_discovery(cm_cluster: ControllerCluster, ns: str) -> None:
    """A CRD created after the collector started is watched after its next discovery: a foreground
    deletion of its object, which only an informer on it lets the collector see, completes."""
    cm = cm_cluster
    kind = _crd(cm, "gadgets", "late.example.com")
    gadget = _create(cm, {"apiVersion": "late.example.com/v1", "kind": kind, "metadata": {"name": "g", "namespace": ns}})
    _create(cm, _configmap("owned-by-gadget", ns, _owner(gadget, block=True)))
    start = time.monotonic()
    cm.kubectl("delete", "gadgets.late.example.com", "g", "-n", ns, "--cascade=foreground",
               f"--timeout={GC_SYNC_PERIOD + 15}s", timeout=GC_SYNC_PERIOD + 20)
    assert time.monotonic() - start < GC_SYNC_PERIOD + 10
    assert _get(cm, f"/api/v1/namespaces/{ns}/configmaps/owned-by-gadget") is None


# ---- namespaces ---------------------------------------------------------------------------------------


def test_namespace_deletion(cm_cluster: ControllerCluster, ns: str) -> None:
    cm = cm_cluster
    kind = _crd(cm, "things")
    _create(cm, {"apiVersion": "gc.example.com/v1", "kind": kind, "metadata": {"name": "t", "namespace": ns}})
    for i in range(3):
        _create(cm, _configmap(f"cm-{i}", ns))
    _replicaset(cm, ns, "web")
    out = cm.kubectl("delete", "namespace", ns, "--timeout=40s").stdout
    assert out.strip() == f'namespace "{ns}" deleted'
    assert _get(cm, f"/api/v1/namespaces/{ns}") is None
    # and nothing is left behind under its name
    for path in ("/api/v1/pods", "/api/v1/configmaps", "/apis/gc.example.com/v1/things", "/apis/apps/v1/replicasets"):
        items = _get(cm, path)["items"]
        assert not [i for i in items if i["metadata"]["namespace"] == ns], path


def test_namespace_waits_for_finalizers(cm_cluster: ControllerCluster, ns: str) -> None:
    cm = cm_cluster
    _create(cm, _configmap("held", ns, finalizers=[HOLD]))
    _create(cm, _configmap("free", ns))
    cm.kubectl("delete", "namespace", ns, "--wait=false")

    def conditions() -> dict[str, Any] | None:
        obj = _get(cm, f"/api/v1/namespaces/{ns}")
        conds = {c["type"]: c for c in obj.get("status", {}).get("conditions", [])}
        return conds if conds.get("NamespaceFinalizersRemaining", {}).get("status") == "True" else None

    conds = wait_for(conditions, timeout=20, what="the FinalizersRemaining condition")
    obj = _get(cm, f"/api/v1/namespaces/{ns}")
    assert obj["status"]["phase"] == "Terminating" and obj["spec"]["finalizers"] == ["kubernetes"]
    assert conds["NamespaceContentRemaining"]["status"] == "True"
    assert conds["NamespaceContentRemaining"]["reason"] == "SomeResourcesRemain"
    assert conds["NamespaceContentRemaining"]["message"] == "Some resources are remaining: configmaps. has 1 resource instances"
    assert conds["NamespaceFinalizersRemaining"]["reason"] == "SomeFinalizersRemain"
    assert conds["NamespaceFinalizersRemaining"]["message"] == (
        f"Some content in the namespace has finalizers remaining: {HOLD} in 1 resource instances"
    )
    assert conds["NamespaceDeletionDiscoveryFailure"]["status"] == "False"
    assert conds["NamespaceDeletionDiscoveryFailure"]["reason"] == "ResourcesDiscovered"
    assert conds["NamespaceDeletionContentFailure"]["status"] == "False"
    assert _get(cm, f"/api/v1/namespaces/{ns}/configmaps/free") is None
    # no new content in a terminating namespace
    res = cm.kubectl("create", "configmap", "late", "-n", ns, check=False)
    assert res.returncode != 0 and "is being terminated" in res.stderr
    _patch(cm, f"/api/v1/namespaces/{ns}/configmaps/held", {"metadata": {"finalizers": None}})
    wait_for(lambda: _get(cm, f"/api/v1/namespaces/{ns}") is None, timeout=30, what="the namespace removed")


# ---- restarts -------------------------------------------------------------------------------------------


def test_restart_catches_up(cm_cluster: ControllerCluster, ns: str) -> None:
    """Level-triggered: what happened while the controller manager was down is done after its restart
    (kept last in the module: it leaves the restarted controller manager running until the end)."""
    cm = cm_cluster
    owner = _create(cm, _configmap("owner", ns))
    _create(cm, _configmap("dep", ns, _owner(owner)))
    cm.kubectl("create", "namespace", f"{ns}-gone")
    _create(cm, _configmap("content", f"{ns}-gone"))
    cm.cm.stop()
    cm.kubectl("delete", "configmap", "owner", "-n", ns)
    cm.kubectl("delete", "namespace", f"{ns}-gone", "--wait=false")
    time.sleep(0.5)
    assert _get(cm, f"/api/v1/namespaces/{ns}/configmaps/dep") is not None
    assert _get(cm, f"/api/v1/namespaces/{ns}-gone")["status"]["phase"] == "Terminating"
    restarted = start_controller_manager(cm.cluster, CONTROLLERS, "--no-leader-elect", *CONTROLLER_MANAGER_ARGS)
    try:
        wait_for(lambda: _get(cm, f"/api/v1/namespaces/{ns}/configmaps/dep") is None, timeout=20,
                 what="the orphan collected after the restart")
        wait_for(lambda: _get(cm, f"/api/v1/namespaces/{ns}-gone") is None, timeout=20,
                 what="the namespace removed after the restart")
    finally:
        restarted.stop()
