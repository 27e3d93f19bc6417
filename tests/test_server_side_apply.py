"""Server-side apply, managedFields and dry run end to end: the real kubectl, the official client, raw HTTPS."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import Cluster, http, wait_for

APPLY = "application/apply-patch+yaml"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def deployment(name: str = "web", replicas: int = 2, image: str = "nginx:1.25") -> str:
    return f"""
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  labels: {{app: {name}}}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
      - name: app
        image: {image}
        ports: [{{containerPort: 80}}]
"""


def get(cluster: Cluster, namespace: str, *what: str) -> Any:
    return json.loads(cluster.kubectl("get", *what, "-n", namespace, "-o", "json", "--show-managed-fields").stdout)


def managers(obj: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(e.get("manager", ""), e["operation"]): e for e in obj["metadata"].get("managedFields", [])}


def path(namespace: str, resource: str = "configmaps", name: str = "", group: str = "") -> str:
    base = f"/apis/{group}" if group else "/api/v1"
    return f"{base}/namespaces/{namespace}/{resource}" + (f"/{name}" if name else "")


def apply_raw(cluster: Cluster, url: str, body: Any, query: str = "fieldManager=test", **headers: str) -> Any:
    data = body if isinstance(body, str) else json.dumps(body)
    return http(cluster, "PATCH", f"{url}?{query}", data, {"Content-Type": APPLY, **headers})


def test_kubectl_apply_server_side_creates_and_records_fields(cluster: Cluster, namespace: str) -> None:
    out = cluster.kubectl("apply", "--server-side", "-n", namespace, "-f", "-", input=deployment())
    assert out.stdout.strip() == "deployment.apps/web serverside-applied"
    obj = get(cluster, namespace, "deployment", "web")
    [entry] = obj["metadata"]["managedFields"]
    assert (entry["manager"], entry["operation"], entry["apiVersion"], entry["fieldsType"]) == ("kubectl", "Apply", "apps/v1", "FieldsV1")
    assert entry["fieldsV1"] == {
        "f:metadata": {"f:labels": {"f:app": {}}},
        "f:spec": {
            "f:replicas": {},
            "f:selector": {},
            "f:template": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {
                    "f:containers": {
                        'k:{"name":"app"}': {
                            ".": {},
                            "f:image": {},
                            "f:name": {},
                            "f:ports": {'k:{"containerPort":80,"protocol":"TCP"}': {".": {}, "f:containerPort": {}}},
                        }
                    }
                },
            },
        },
    }
    # defaults were applied to the created object, and re-applying the same manifest changes nothing
    assert obj["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    cluster.kubectl("apply", "--server-side", "-n", namespace, "-f", "-", input=deployment())
    assert get(cluster, namespace, "deployment", "web")["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"]
    yaml_out = cluster.kubectl("get", "deployment", "web", "-n", namespace, "-o", "yaml", "--show-managed-fields").stdout
    assert "managedFields:" in yaml_out and "manager: kubectl" in yaml_out and "operation: Apply" in yaml_out


def test_conflict_between_managers_and_force(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("apply", "--server-side", "-n", namespace, "-f", "-", input=deployment())
    res = cluster.kubectl("apply", "--server-side", "--field-manager=other", "-n", namespace, "-f", "-",
                          input=deployment(replicas=3), check=False)
    assert res.returncode != 0
    assert 'Apply failed with 1 conflict: conflict with "kubectl": .spec.replicas' in res.stderr
    assert get(cluster, namespace, "deployment", "web")["spec"]["replicas"] == 2
    cluster.kubectl("apply", "--server-side", "--field-manager=other", "--force-conflicts", "-n", namespace, "-f", "-",
                    input=deployment(replicas=3))
    obj = get(cluster, namespace, "deployment", "web")
    assert obj["spec"]["replicas"] == 3
    owners = managers(obj)
    assert "f:replicas" in owners[("other", "Apply")]["fieldsV1"]["f:spec"]
    assert "f:replicas" not in owners[("kubectl", "Apply")]["fieldsV1"]["f:spec"]
    # the image is shared by both appliers (same value): no conflict, and neither may prune it alone
    cluster.kubectl("apply", "--server-side", "-n", namespace, "-f", "-", input=deployment(replicas=3))


def test_conflict_status_over_http(cluster: Cluster, namespace: str) -> None:
    url = path(namespace, name="cm")
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"a": "1"}}
    created = apply_raw(cluster, url, cm, "fieldManager=first")
    assert created.status == 201
    assert apply_raw(cluster, url, cm, "fieldManager=first").status == 200
    res = http(cluster, "PUT", url + "?fieldManager=writer", {**cm, "data": {"a": "2"}})
    assert res.status == 200
    res = apply_raw(cluster, url, {**cm, "data": {"a": "3"}}, "fieldManager=first&force=false")
    assert res.status == 409
    assert res.json() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'Apply failed with 1 conflict: conflict with "writer" using v1: .data.a',
        "reason": "Conflict",
        "details": {"causes": [{"reason": "FieldManagerConflict", "message": 'conflict with "writer" using v1', "field": ".data.a"}]},
        "code": 409,
    }
    res = apply_raw(cluster, url, {**cm, "data": {"a": "3"}}, "fieldManager=first&force=true")
    assert res.status == 200 and res.json()["data"] == {"a": "3"}
    assert [(e["manager"], e["operation"]) for e in res.json()["metadata"]["managedFields"]] == [("first", "Apply")]


def test_removed_fields_are_pruned_unless_someone_else_owns_them(cluster: Cluster, namespace: str) -> None:
    url = path(namespace, name="pruned")
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "pruned", "labels": {"l": "1"}}, "data": {"a": "1", "b": "2"}}
    apply_raw(cluster, url, cm, "fieldManager=one")
    apply_raw(cluster, url, {**cm, "metadata": {"name": "pruned"}, "data": {"b": "2"}}, "fieldManager=two")
    res = apply_raw(cluster, url, {**cm, "metadata": {"name": "pruned"}, "data": {}}, "fieldManager=one")
    assert res.status == 200
    obj = res.json()
    assert obj["data"] == {"b": "2"} and "labels" not in obj["metadata"]


def test_migration_from_client_side_apply(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=deployment())
    before = get(cluster, namespace, "deployment", "web")
    assert list(managers(before)) == [("kubectl-client-side-apply", "Update")]
    cluster.kubectl("apply", "--server-side", "-n", namespace, "-f", "-", input=deployment(replicas=4))
    obj = get(cluster, namespace, "deployment", "web")
    assert obj["spec"]["replicas"] == 4
    owners = managers(obj)
    assert set(owners) == {("kubectl", "Apply"), ("kubectl-last-applied", "Apply")}
    assert owners[("kubectl-last-applied", "Apply")]["fieldsV1"] == {"f:metadata": {"f:annotations": {"f:" + LAST_APPLIED: {}}}}
    assert json.loads(obj["metadata"]["annotations"][LAST_APPLIED])["spec"]["replicas"] == 4
    # client-side apply still works on the migrated object
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=deployment(replicas=1))
    assert get(cluster, namespace, "deployment", "web")["spec"]["replicas"] == 1


def test_kubectl_diff_stores_nothing(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=deployment())
    rv = get(cluster, namespace, "deployment", "web")["metadata"]["resourceVersion"]
    for extra in ((), ("--server-side",), ("--server-side", "--force-conflicts")):
        res = cluster.kubectl("diff", "-n", namespace, *extra, "-f", "-", input=deployment(replicas=5), check=False)
        assert res.returncode == 1, res.stderr
        assert "-  replicas: 2" in res.stdout and "+  replicas: 5" in res.stdout
    res = cluster.kubectl("diff", "-n", namespace, "-f", "-", input=deployment(name="new"), check=False)
    assert res.returncode == 1 and "+  name: new" in res.stdout
    obj = get(cluster, namespace, "deployment", "web")
    assert obj["metadata"]["resourceVersion"] == rv and obj["spec"]["replicas"] == 2
    assert cluster.kubectl("get", "deployment", "new", "-n", namespace, check=False).returncode != 0


def test_dry_run_on_every_mutating_verb_stores_nothing(cluster: Cluster, namespace: str) -> None:
    k = cluster.kubectl
    k("create", "configmap", "cm", "-n", namespace, "--from-literal=a=1")
    k("create", "deployment", "d", "-n", namespace, "--image=nginx")
    before = {r: get(cluster, namespace, r) for r in ("configmaps", "deployments")}
    k("create", "configmap", "other", "-n", namespace, "--from-literal=a=1", "--dry-run=server")
    k("apply", "--server-side", "--force-conflicts", "--dry-run=server", "-n", namespace, "-f", "-", input=deployment(name="d", replicas=7))
    k("apply", "--server-side", "--dry-run=server", "-n", namespace, "-f", "-", input=deployment(name="fresh"))
    k("apply", "--dry-run=server", "-n", namespace, "-f", "-", input=deployment(name="d", replicas=7))
    k("label", "configmap", "cm", "-n", namespace, "x=y", "--dry-run=server")
    k("patch", "configmap", "cm", "-n", namespace, "-p", '{"data":{"b":"2"}}', "--dry-run=server")
    k("scale", "deployment", "d", "-n", namespace, "--replicas=4", "--dry-run=server")
    replaced = json.loads(k("get", "configmap", "cm", "-n", namespace, "-o", "json").stdout)
    replaced["data"] = {"c": "3"}
    k("replace", "--dry-run=server", "-f", "-", input=json.dumps(replaced))
    k("delete", "configmap", "cm", "-n", namespace, "--dry-run=server")
    k("delete", "deployment", "d", "-n", namespace, "--dry-run=server")
    for url in (path(namespace), path(namespace, "deployments", group="apps/v1")):
        assert http(cluster, "DELETE", url + "?dryRun=All").status == 200  # deletecollection
    cm_url = path(namespace, name="cm")
    assert http(cluster, "DELETE", cm_url, {"dryRun": ["All"]}).status == 200
    dep_url = path(namespace, "deployments", "d", group="apps/v1")
    dep = http(cluster, "GET", dep_url).json()
    assert http(cluster, "PUT", dep_url + "/status?dryRun=All", {**dep, "status": {"replicas": 9}}).status == 200
    assert http(cluster, "PATCH", dep_url + "/status?dryRun=All", {"status": {"replicas": 9}},
                {"Content-Type": "application/merge-patch+json"}).status == 200
    assert apply_raw(cluster, path(namespace, name="applied"), {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}},
                     "fieldManager=x&dryRun=All").status == 201
    assert http(cluster, "DELETE", cm_url, {"dryRun": ["Bogus"]}).status == 400
    after = {r: get(cluster, namespace, r) for r in ("configmaps", "deployments")}
    for r in after:
        assert [i["metadata"] for i in after[r]["items"]] == [i["metadata"] for i in before[r]["items"]], r
        assert [(i.get("spec"), i.get("data"), i.get("status")) for i in after[r]["items"]] == [
            (i.get("spec"), i.get("data"), i.get("status")) for i in before[r]["items"]
        ]


def test_updates_record_managers(cluster: Cluster, namespace: str) -> None:
    k = cluster.kubectl
    k("create", "configmap", "cm", "-n", namespace, "--from-literal=a=1")
    k("label", "configmap", "cm", "-n", namespace, "x=y")
    url = path(namespace, name="cm")
    res = http(cluster, "PATCH", url, {"data": {"b": "2"}}, {"Content-Type": "application/merge-patch+json", "User-Agent": "my-agent/1.2 (x)"})
    assert res.status == 200
    owners = managers(res.json())
    assert owners[("kubectl-create", "Update")]["fieldsV1"] == {"f:data": {".": {}, "f:a": {}}}
    assert owners[("kubectl-label", "Update")]["fieldsV1"] == {"f:metadata": {"f:labels": {".": {}, "f:x": {}}}}
    assert owners[("my-agent", "Update")]["fieldsV1"] == {"f:data": {"f:b": {}}}
    entries = res.json()["metadata"]["managedFields"]
    assert all(e["time"].endswith("Z") and e["apiVersion"] == "v1" for e in entries)
    # status goes to its own entry, named by subresource
    k("create", "deployment", "d", "-n", namespace, "--image=nginx")
    dep_url = path(namespace, "deployments", "d", group="apps/v1")
    res = http(cluster, "PATCH", dep_url + "/status?fieldManager=ctrl", {"status": {"observedGeneration": 1}},
               {"Content-Type": "application/merge-patch+json"})
    assert res.status == 200
    [entry] = [e for e in res.json()["metadata"]["managedFields"] if e["manager"] == "ctrl"]
    assert entry["subresource"] == "status" and entry["fieldsV1"] == {"f:status": {".": {}, "f:observedGeneration": {}}}
    k("scale", "deployment", "d", "-n", namespace, "--replicas=3")
    scaled = get(cluster, namespace, "deployment", "d")
    [entry] = [e for e in scaled["metadata"]["managedFields"] if e.get("subresource") == "scale"]
    assert entry["fieldsV1"] == {"f:spec": {"f:replicas": {}}}


def test_apply_bad_requests(cluster: Cluster, namespace: str) -> None:
    url = path(namespace, name="bad")
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "bad"}}
    res = apply_raw(cluster, url, cm, "")
    assert res.status == 422
    assert res.json()["message"] == 'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch'
    for body, status, message in (
        ("[1, 2]", 400, "error decoding YAML: json: cannot unmarshal array into Go value of type map[string]interface {}"),
        ("a: [", 400, None),
        (json.dumps({**cm, "kind": "Secret"}), 400, "invalid object type: /v1, Kind=Secret"),
        (json.dumps({**cm, "bogus": 1}), 400,
         "failed to create typed patch object (/bad; /v1, Kind=ConfigMap): .bogus: field not declared in schema"),
        (json.dumps({**cm, "metadata": {"name": "other"}}), 400, "the name of the object (other) does not match the name on the URL (bad)"),
    ):
        res = apply_raw(cluster, url, body)
        assert res.status == status, res.body
        if message:
            assert res.json()["message"] == message
    res = http(cluster, "PATCH", url + "?force=true", {"data": {}}, {"Content-Type": "application/merge-patch+json"})
    assert res.status == 422 and "force: Forbidden: may not be specified for non-apply patch" in res.json()["message"]
    yaml_body = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\ndata:\n  k: v\n"
    res = apply_raw(cluster, url, yaml_body)
    assert res.status == 201 and res.json()["data"] == {"k": "v"}


def test_official_python_client_apply(cluster: Cluster, namespace: str, core_v1: Any) -> None:
    from kubernetes.client.rest import ApiException

    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "py"}, "data": {"a": "1"}}
    cm = core_v1.patch_namespaced_config_map("py", namespace, body, field_manager="py", _content_type=APPLY)
    assert cm.data == {"a": "1"} and [(m.manager, m.operation) for m in cm.metadata.managed_fields] == [("py", "Apply")]
    core_v1.patch_namespaced_config_map("py", namespace, {"data": {"a": "2"}})
    with pytest.raises(ApiException) as e:
        core_v1.patch_namespaced_config_map("py", namespace, {**body, "data": {"a": "3"}}, field_manager="py", _content_type=APPLY)
    assert e.value.status == 409
    assert json.loads(e.value.body)["details"]["causes"][0]["field"] == ".data.a"
    cm = core_v1.patch_namespaced_config_map("py", namespace, {**body, "data": {"a": "3"}}, field_manager="py", force=True,
                                             _content_type=APPLY)
    assert cm.data == {"a": "3"}


def test_custom_resources_use_their_schema(cluster: Cluster, namespace: str) -> None:
    group = "ssa.k8py.test"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"gizmos.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "gizmos", "singular": "gizmo", "kind": "Gizmo"},
            "versions": [{
                "name": "v1", "served": True, "storage": True,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object", "properties": {
                    "size": {"type": "integer"},
                    "items": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                              "items": {"type": "object", "required": ["name"],
                                        "properties": {"name": {"type": "string"}, "value": {"type": "string"}}}},
                    "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                }}}}},
            }],
        },
    }
    assert http(cluster, "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd).status == 201
    url = path(namespace, "gizmos", "g", group=f"{group}/v1")
    gizmo = {"apiVersion": f"{group}/v1", "kind": "Gizmo", "metadata": {"name": "g"},
             "spec": {"size": 1, "items": [{"name": "a", "value": "1"}], "free": {"x": {"y": 1}}}}
    res = wait_for(lambda: (r := apply_raw(cluster, url, gizmo, "fieldManager=one")).status == 201 and r, what="CRD served")
    [entry] = res.json()["metadata"]["managedFields"]
    assert entry["fieldsV1"] == {"f:spec": {
        "f:free": {"f:x": {".": {}, "f:y": {}}},  # a declared field; what it preserves is deduced
        "f:items": {'k:{"name":"a"}': {".": {}, "f:name": {}, "f:value": {}}},
        "f:size": {},
    }}
    res = apply_raw(cluster, url, {**gizmo, "spec": {"items": [{"name": "b", "value": "2"}]}}, "fieldManager=two")
    assert res.status == 200
    assert [i["name"] for i in res.json()["spec"]["items"]] == ["a", "b"]  # merged by key, not replaced
    res = apply_raw(cluster, url, {**gizmo, "spec": {"bogus": 1}}, "fieldManager=one")
    assert res.status == 400 and ".spec.bogus: field not declared in schema" in res.json()["message"]
