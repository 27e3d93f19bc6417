"""The API over raw HTTPS: status codes, Status bodies, discovery, health, authentication, bad input."""

from __future__ import annotations

import json

import pytest

from tests.conftest import Cluster, http

CM = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c1"}, "data": {"a": "b"}}


def _status(resp, code: int, reason: str) -> dict:  # type: ignore[no-untyped-def]
    assert resp.status == code, resp.body
    body = resp.json()
    assert body["kind"] == "Status" and body["apiVersion"] == "v1"
    assert body["status"] == "Failure" and body["code"] == code
    assert body.get("reason") == reason
    return body


def test_health_and_version_are_public(cluster: Cluster) -> None:
    for path in ("/healthz", "/livez", "/readyz", "/version"):
        assert http(cluster, "GET", path, client_cert=False).status == 200
    verbose = http(cluster, "GET", "/readyz?verbose", client_cert=False)
    assert verbose.body.decode().rstrip().endswith("readyz check passed")
    assert "[+]ping ok" in verbose.body.decode()
    # anonymous requests are system:anonymous: RBAC lets it read health and version only (discovery is
    # for system:authenticated)
    _status(http(cluster, "GET", "/apis", client_cert=False), 403, "Forbidden")
    _status(http(cluster, "GET", "/api/v1/pods", client_cert=False), 403, "Forbidden")


def test_discovery_legacy_and_aggregated(cluster: Cluster) -> None:
    api = http(cluster, "GET", "/api").json()
    assert api["kind"] == "APIVersions" and api["versions"] == ["v1"]
    groups = http(cluster, "GET", "/apis").json()
    names = {g["name"] for g in groups["groups"]}
    assert {"apps", "batch", "autoscaling", "rbac.authorization.k8s.io", "policy"} <= names
    autoscaling = next(g for g in groups["groups"] if g["name"] == "autoscaling")
    assert autoscaling["preferredVersion"]["version"] == "v2"
    v1 = http(cluster, "GET", "/api/v1").json()
    pods = next(r for r in v1["resources"] if r["name"] == "pods")
    assert pods["shortNames"] == ["po"] and pods["categories"] == ["all"] and pods["namespaced"]
    assert any(r["name"] == "pods/status" for r in v1["resources"])
    accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
    agg = http(cluster, "GET", "/apis", headers={"Accept": accept})
    assert agg.headers["Content-Type"] == "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    body = agg.json()
    assert body["kind"] == "APIGroupDiscoveryList"
    apps = next(i for i in body["items"] if i["metadata"]["name"] == "apps")
    deploy = next(r for r in apps["versions"][0]["resources"] if r["resource"] == "deployments")
    assert deploy["scope"] == "Namespaced" and {s["subresource"] for s in deploy["subresources"]} == {"scale", "status"}
    etag = agg.headers["ETag"]
    assert http(cluster, "GET", "/apis", headers={"Accept": accept, "If-None-Match": etag}).status == 304
    assert http(cluster, "GET", "/apis/apps").json()["kind"] == "APIGroup"
    assert http(cluster, "GET", "/apis/apps/v1").json()["groupVersion"] == "apps/v1"


def test_crud_and_conflicts(cluster: Cluster, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    created = http(cluster, "POST", base, CM)
    assert created.status == 201
    obj = created.json()
    assert obj["metadata"]["uid"] and obj["metadata"]["creationTimestamp"] and obj["metadata"]["resourceVersion"]
    _status(http(cluster, "POST", base, CM), 409, "AlreadyExists")
    stale = dict(obj, data={"a": "c"})
    ok = http(cluster, "PUT", f"{base}/c1", stale)
    assert ok.status == 200 and ok.json()["data"] == {"a": "c"}
    assert int(ok.json()["metadata"]["resourceVersion"]) > int(obj["metadata"]["resourceVersion"])
    body = _status(http(cluster, "PUT", f"{base}/c1", stale), 409, "Conflict")
    assert "the object has been modified" in body["message"]
    gen = http(cluster, "POST", base, {"metadata": {"generateName": "gen-"}, "data": {}})
    assert gen.status == 201 and gen.json()["metadata"]["name"].startswith("gen-")
    assert len(gen.json()["metadata"]["name"]) == len("gen-") + 5
    _status(http(cluster, "GET", f"{base}/missing"), 404, "NotFound")
    deleted = http(cluster, "DELETE", f"{base}/c1")
    assert deleted.status == 200 and deleted.json()["status"] == "Success"
    _status(http(cluster, "DELETE", f"{base}/c1"), 404, "NotFound")


def test_delete_preconditions(cluster: Cluster, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    obj = http(cluster, "POST", base, CM).json()
    body = _status(
        http(cluster, "DELETE", f"{base}/c1", {"preconditions": {"uid": "wrong"}}), 409, "Conflict"
    )
    assert "Precondition failed: UID in precondition: wrong" in body["message"]
    ok = http(cluster, "DELETE", f"{base}/c1", {"preconditions": {"uid": obj["metadata"]["uid"]}})
    assert ok.status == 200


def test_bad_input(cluster: Cluster, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    _status(http(cluster, "POST", base, b"{not json", {"Content-Type": "application/json"}), 400, "BadRequest")
    _status(http(cluster, "POST", base, b"[1,2]", {"Content-Type": "application/json"}), 400, "BadRequest")
    _status(http(cluster, "POST", base, b"a: [", {"Content-Type": "application/yaml"}), 400, "BadRequest")
    _status(http(cluster, "POST", base, b"x", {"Content-Type": "text/plain"}), 415, "UnsupportedMediaType")
    huge = {"metadata": {"name": "huge"}, "data": {"a": "x" * (3 * 1024 * 1024 + 10)}}
    _status(http(cluster, "POST", base, huge), 413, "RequestEntityTooLarge")
    assert http(cluster, "GET", f"{base}/huge").status == 404  # nothing half-written
    body = _status(http(cluster, "POST", base, {"metadata": {"name": "Bad_Name"}}), 422, "Invalid")
    assert body["details"]["causes"][0]["field"] == "metadata.name"
    body = _status(http(cluster, "POST", base, {"metadata": {}}), 422, "Invalid")
    wrong_kind = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}}
    _status(http(cluster, "POST", base, wrong_kind), 400, "BadRequest")
    other_ns = {"metadata": {"name": "x", "namespace": "elsewhere"}}
    _status(http(cluster, "POST", base, other_ns), 400, "BadRequest")
    _status(http(cluster, "POST", "/api/v1/namespaces/no-such-ns/configmaps", CM), 404, "NotFound")
    _status(http(cluster, "GET", "/api/v1/nosuchresource"), 404, "NotFound")
    _status(http(cluster, "GET", f"{base}?labelSelector=a%20in%20(", None), 400, "BadRequest")
    _status(http(cluster, "GET", f"{base}?fieldSelector=spec.foo=bar", None), 400, "BadRequest")
    _status(http(cluster, "GET", f"{base}?resourceVersion=abc", None), 400, "BadRequest")
    _status(http(cluster, "GET", f"{base}?continue=garbage", None), 400, "BadRequest")
    _status(http(cluster, "PATCH", f"{base}/nothere", b"{}", {"Content-Type": "application/merge-patch+json"}), 404, "NotFound")
    # the server is still fine
    assert http(cluster, "GET", "/readyz").status == 200


def test_field_validation_modes(cluster: Cluster, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    obj = {"metadata": {"name": "fv"}, "data": {}, "bogus": 1}
    body = _status(http(cluster, "POST", base + "?fieldValidation=Strict", obj), 400, "BadRequest")
    assert body["message"].endswith('strict decoding error: unknown field "bogus"')
    warned = http(cluster, "POST", base + "?fieldValidation=Warn", obj)
    assert warned.status == 201
    assert warned.headers["Warning"] == '299 - "unknown field \\"bogus\\""'  # a quoted-string, as kubectl parses it
    assert "bogus" not in warned.json()
    raw = b'{"metadata":{"name":"dup"},"data":{},"data":{}}'
    body = _status(http(cluster, "POST", base + "?fieldValidation=Strict", raw, {"Content-Type": "application/json"}), 400, "BadRequest")
    assert 'duplicate field "data"' in body["message"]


def test_status_subresource_and_generation(cluster: Cluster, namespace: str) -> None:
    base = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    dep = {
        "metadata": {"name": "d"},
        "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}},
        },
        "status": {"replicas": 9},
    }
    obj = http(cluster, "POST", base, dep).json()
    assert obj["metadata"]["generation"] == 1 and "replicas" not in (obj.get("status") or {})
    st = http(cluster, "PATCH", f"{base}/d/status", {"status": {"replicas": 4}}, {"Content-Type": "application/merge-patch+json"})
    assert st.status == 200 and st.json()["status"]["replicas"] == 4
    assert st.json()["metadata"]["generation"] == 1  # status changes don't bump generation
    main = http(cluster, "PATCH", f"{base}/d", {"spec": {"replicas": 7}, "status": {"replicas": 1}}, {"Content-Type": "application/merge-patch+json"})
    assert main.json()["metadata"]["generation"] == 2 and main.json()["status"]["replicas"] == 4
    scale = http(cluster, "GET", f"{base}/d/scale").json()
    assert scale["kind"] == "Scale" and scale["apiVersion"] == "autoscaling/v1" and scale["spec"]["replicas"] == 7
    assert scale["status"]["selector"] == "a=b"
    put = http(cluster, "PUT", f"{base}/d/scale", dict(scale, spec={"replicas": 2}))
    assert put.status == 200 and put.json()["spec"]["replicas"] == 2


def test_table_and_partial_metadata(cluster: Cluster, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    http(cluster, "POST", base, CM)
    table = http(cluster, "GET", base, headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"}).json()
    assert table["kind"] == "Table"
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Data", "Age"]
    assert table["rows"][0]["cells"][:2] == ["c1", 1]
    assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    meta = http(
        cluster, "GET", base, headers={"Accept": "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io"}
    ).json()
    assert meta["kind"] == "PartialObjectMetadataList" and meta["items"][0]["metadata"]["name"] == "c1"
    yaml_body = http(cluster, "GET", f"{base}/c1", headers={"Accept": "application/yaml"})
    assert yaml_body.headers["Content-Type"].startswith("application/yaml") and b"name: c1" in yaml_body.body


def test_list_pagination_and_resource_version(cluster: Cluster, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}/secrets"  # a namespace starts with none (but with a ConfigMap)
    for i in range(10):
        http(cluster, "POST", base, {"metadata": {"name": f"p{i}"}})
    first = http(cluster, "GET", f"{base}?limit=4").json()
    assert [i["metadata"]["name"] for i in first["items"]] == ["p0", "p1", "p2", "p3"]
    assert first["metadata"]["remainingItemCount"] == 6
    http(cluster, "POST", base, {"metadata": {"name": "p45"}})  # not in this consistent snapshot
    names = [i["metadata"]["name"] for i in first["items"]]
    token = first["metadata"]["continue"]
    while token:
        page = http(cluster, "GET", f"{base}?limit=4&continue={token}").json()
        assert page["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
        names += [i["metadata"]["name"] for i in page["items"]]
        token = page["metadata"].get("continue")
    assert names == [f"p{i}" for i in range(10)]
    exact = http(cluster, "GET", f"{base}?resourceVersion={first['metadata']['resourceVersion']}&resourceVersionMatch=Exact").json()
    assert len(exact["items"]) == 10
    now = http(cluster, "GET", base).json()
    assert len(now["items"]) == 11


@pytest.mark.parametrize(
    "path",
    ["/apis/batch/v1/jobs", "/apis/autoscaling/v1/horizontalpodautoscalers", "/apis/events.k8s.io/v1/events", "/api/v1/nodes"],
)
def test_lists_of_every_group(cluster: Cluster, path: str) -> None:
    resp = http(cluster, "GET", path)
    assert resp.status == 200 and resp.json()["kind"].endswith("List")


def test_hpa_served_in_v1_and_v2(cluster: Cluster, namespace: str) -> None:
    hpa = {
        "metadata": {"name": "h"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "d"},
            "minReplicas": 1,
            "maxReplicas": 5,
            "targetCPUUtilizationPercentage": 60,
        },
    }
    created = http(cluster, "POST", f"/apis/autoscaling/v1/namespaces/{namespace}/horizontalpodautoscalers", hpa)
    assert created.status == 201, created.body
    v2 = http(cluster, "GET", f"/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers/h").json()
    assert v2["apiVersion"] == "autoscaling/v2"
    assert v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 60
    v1 = http(cluster, "GET", f"/apis/autoscaling/v1/namespaces/{namespace}/horizontalpodautoscalers/h").json()
    assert v1["spec"]["targetCPUUtilizationPercentage"] == 60


def test_events_in_both_groups(cluster: Cluster, namespace: str) -> None:
    ev = {
        "metadata": {"name": "e1"},
        "involvedObject": {"kind": "Pod", "name": "p", "namespace": namespace},
        "reason": "Tested",
        "message": "hello",
        "type": "Normal",
    }
    assert http(cluster, "POST", f"/api/v1/namespaces/{namespace}/events", ev).status == 201
    new = http(cluster, "GET", f"/apis/events.k8s.io/v1/namespaces/{namespace}/events/e1").json()
    assert new["note"] == "hello" and new["regarding"]["name"] == "p"
    sel = http(cluster, "GET", f"/api/v1/namespaces/{namespace}/events?fieldSelector=reason%3DTested").json()
    assert [i["metadata"]["name"] for i in sel["items"]] == ["e1"]


def test_namespace_lifecycle_admission(cluster: Cluster) -> None:
    _status(http(cluster, "DELETE", "/api/v1/namespaces/default"), 403, "Forbidden")
    ns = http(cluster, "GET", "/api/v1/namespaces/kube-system").json()
    assert ns["metadata"]["labels"]["kubernetes.io/metadata.name"] == "kube-system"
    assert ns["spec"]["finalizers"] == ["kubernetes"] and ns["status"]["phase"] == "Active"


def test_service_cluster_ip_allocation(cluster: Cluster, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}/services"
    svc = {"metadata": {"name": "s"}, "spec": {"selector": {"a": "b"}, "ports": [{"port": 80}]}}
    obj = http(cluster, "POST", base, svc).json()
    ip = obj["spec"]["clusterIP"]
    assert ip.startswith("10.") and obj["spec"]["clusterIPs"] == [ip]
    assert obj["spec"]["ports"][0]["targetPort"] == 80 and obj["spec"]["type"] == "ClusterIP"
    np = {"metadata": {"name": "n"}, "spec": {"type": "NodePort", "ports": [{"port": 80}]}}
    port = http(cluster, "POST", base, np).json()["spec"]["ports"][0]["nodePort"]
    assert 30000 <= port <= 32767
    taken = {"metadata": {"name": "t"}, "spec": {"clusterIP": ip, "ports": [{"port": 80}]}}
    _status(http(cluster, "POST", base, taken), 422, "Invalid")


def test_pod_binding(cluster: Cluster, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}/pods"
    http(cluster, "POST", base, {"metadata": {"name": "b"}, "spec": {"containers": [{"name": "c", "image": "x"}]}})
    binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "b"}, "target": {"kind": "Node", "name": "n1"}}
    assert http(cluster, "POST", f"{base}/b/binding", binding).status == 201
    pod = http(cluster, "GET", f"{base}/b").json()
    assert pod["spec"]["nodeName"] == "n1"
    assert any(c["type"] == "PodScheduled" and c["status"] == "True" for c in pod["status"]["conditions"])
    _status(http(cluster, "POST", f"{base}/b/binding", binding), 409, "Conflict")
    # a pod on a node is deleted gracefully
    deleted = http(cluster, "DELETE", f"{base}/b")
    assert deleted.status == 200 and deleted.json()["metadata"]["deletionGracePeriodSeconds"] == 30
    assert http(cluster, "DELETE", f"{base}/b", {"gracePeriodSeconds": 0}).status == 200
    assert http(cluster, "GET", f"{base}/b").status == 404


def test_deletecollection(cluster: Cluster, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}/secrets"
    for i in range(3):
        http(cluster, "POST", base, {"metadata": {"name": f"dc{i}", "labels": {"grp": "x" if i < 2 else "y"}}})
    resp = http(cluster, "DELETE", f"{base}?labelSelector=grp%3Dx")
    assert resp.status == 200 and len(resp.json()["items"]) == 2
    left = [i["metadata"]["name"] for i in http(cluster, "GET", base).json()["items"]]
    assert left == ["dc2"]


def test_dry_run(cluster: Cluster, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    resp = http(cluster, "POST", base + "?dryRun=All", CM)
    assert resp.status == 201 and resp.json()["metadata"]["name"] == "c1"
    assert http(cluster, "GET", f"{base}/c1").status == 404
    _status(http(cluster, "POST", base + "?dryRun=Bogus", CM), 400, "BadRequest")


def test_openapi_v3(cluster: Cluster) -> None:
    root = http(cluster, "GET", "/openapi/v3").json()
    url = root["paths"]["apis/apps/v1"]["serverRelativeURL"]
    doc = http(cluster, "GET", url)
    assert doc.status == 200
    body = json.loads(doc.body)
    assert "io.k8s.api.apps.v1.Deployment" in body["components"]["schemas"]
    etag = doc.headers["ETag"]
    assert http(cluster, "GET", url, headers={"If-None-Match": etag}).status == 304
