"""The API server's side of garbage collection and namespace deletion, with no controller running:
the finalizers a DELETE sets (propagationPolicy, orphanDependents, the kind's default policy,
a second DELETE changing its mind), and a namespace's two-step deletion (Terminating, then gone
once ``spec.finalizers`` is empty through ``namespaces/<name>/finalize``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Cluster, http, start_cluster


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = start_cluster(tmp_path_factory.mktemp("k8py-gc-apiserver"), extra=("--disable-controller-manager",))
    try:
        yield c
    finally:
        c.stop()


def _req(c: Cluster, method: str, path: str, body: Any = None, status: int = 200, **kw: Any) -> Any:
    resp = http(c, method, path, body, **kw)
    assert resp.status == status, (method, path, resp.status, resp.body)
    return resp.json() if resp.body else None


def _delete(c: Cluster, path: str, policy: str | None = None, **options: Any) -> Any:
    body: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1", **options}
    if policy:
        body["propagationPolicy"] = policy
    return _req(c, "DELETE", path, body)


def _merge(c: Cluster, path: str, patch: Any) -> Any:
    return _req(c, "PATCH", path, json.dumps(patch), headers={"Content-Type": "application/merge-patch+json"})


def _namespace(c: Cluster, name: str) -> None:
    _req(c, "POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}, 201)


def test_delete_options_set_gc_finalizers(bare: Cluster) -> None:
    _namespace(bare, "gcapi")
    cms = "/api/v1/namespaces/gcapi/configmaps"
    _req(bare, "POST", cms, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}, 201)
    obj = _delete(bare, f"{cms}/a", "Foreground")
    md = obj["metadata"]
    assert md["finalizers"] == ["foregroundDeletion"] and md["deletionTimestamp"] and md["deletionGracePeriodSeconds"] == 0
    # a second DELETE may change the policy: the GC finalizers follow it
    assert _delete(bare, f"{cms}/a", "Orphan")["metadata"]["finalizers"] == ["orphan"]
    _delete(bare, f"{cms}/a", orphanDependents=False)  # neither: no finalizer left, so deleted
    _req(bare, "GET", f"{cms}/a", status=404)

    # other finalizers stay; background asks for none
    _req(bare, "POST", cms, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b", "finalizers": ["x/y"]}}, 201)
    assert _delete(bare, f"{cms}/b", "Foreground")["metadata"]["finalizers"] == ["x/y", "foregroundDeletion"]
    assert _delete(bare, f"{cms}/b", "Background")["metadata"]["finalizers"] == ["x/y"]
    assert _delete(bare, f"{cms}/b", orphanDependents=True)["metadata"]["finalizers"] == ["x/y", "orphan"]
    _merge(bare, f"{cms}/b", {"metadata": {"finalizers": None}})
    _req(bare, "GET", f"{cms}/b", status=404)


def test_default_policy_orphans_jobs_and_replication_controllers(bare: Cluster) -> None:
    """batch/v1 Jobs and core/v1 ReplicationControllers orphan by default (DefaultGarbageCollectionPolicy);
    other kinds delete their dependents in background."""
    _namespace(bare, "gcdefault")
    template = {"metadata": {"labels": {"a": "b"}}, "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}
    jobs = "/apis/batch/v1/namespaces/gcdefault/jobs"
    _req(bare, "POST", jobs, {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"}, "spec": {"template": template}}, 201)
    assert _delete(bare, f"{jobs}/j")["metadata"]["finalizers"] == ["orphan"]
    _delete(bare, f"{jobs}/j", "Background")
    _req(bare, "GET", f"{jobs}/j", status=404)
    rcs = "/api/v1/namespaces/gcdefault/replicationcontrollers"
    rc_template = {**template, "spec": {**template["spec"], "restartPolicy": "Always"}}
    _req(bare, "POST", rcs, {"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "r"},
                             "spec": {"selector": {"a": "b"}, "template": rc_template}}, 201)
    assert _delete(bare, f"{rcs}/r")["metadata"]["finalizers"] == ["orphan"]
    deps = "/apis/apps/v1/namespaces/gcdefault/deployments"
    _req(bare, "POST", deps, {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
                              "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": rc_template}}, 201)
    _delete(bare, f"{deps}/d")
    _req(bare, "GET", f"{deps}/d", status=404)


def test_namespace_deletion_waits_for_finalize(bare: Cluster) -> None:
    _namespace(bare, "nsdel")
    obj = _delete(bare, "/api/v1/namespaces/nsdel", "Background")
    assert obj["status"]["phase"] == "Terminating" and obj["metadata"]["deletionTimestamp"]
    assert obj["spec"]["finalizers"] == ["kubernetes"] and not obj["metadata"].get("finalizers")
    # deleting again changes nothing while spec.finalizers remain
    again = _delete(bare, "/api/v1/namespaces/nsdel")
    assert again["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"]
    ns = _req(bare, "GET", "/api/v1/namespaces/nsdel")
    # another finalizer in spec keeps it
    _req(bare, "PUT", "/api/v1/namespaces/nsdel/finalize", {**ns, "spec": {"finalizers": ["other"]}})
    assert _req(bare, "GET", "/api/v1/namespaces/nsdel")["spec"]["finalizers"] == ["other"]
    ns = _req(bare, "GET", "/api/v1/namespaces/nsdel")
    _req(bare, "PUT", "/api/v1/namespaces/nsdel/finalize", {**ns, "spec": {"finalizers": []}})
    _req(bare, "GET", "/api/v1/namespaces/nsdel", status=404)


def test_namespace_deletion_with_gc_finalizers(bare: Cluster) -> None:
    _namespace(bare, "nsorphan")
    obj = _delete(bare, "/api/v1/namespaces/nsorphan", "Orphan")
    assert obj["metadata"]["finalizers"] == ["orphan"]
    ns = _req(bare, "GET", "/api/v1/namespaces/nsorphan")
    _req(bare, "PUT", "/api/v1/namespaces/nsorphan/finalize", {**ns, "spec": {"finalizers": []}})
    ns = _req(bare, "GET", "/api/v1/namespaces/nsorphan")  # the orphan finalizer holds it
    assert ns["status"]["phase"] == "Terminating"
    _merge(bare, "/api/v1/namespaces/nsorphan", {"metadata": {"finalizers": None}})
    _req(bare, "GET", "/api/v1/namespaces/nsorphan", status=404)
