"""CustomResourceDefinitions end to end: the real kubectl and raw HTTPS against `k8py up`.

Each test defines its own CRD (its own group), so tests share the session cluster
without seeing each other's resources.
"""

from __future__ import annotations

import http.client as httpclient
import json
import time
from pathlib import Path
from typing import Any

from tests.conftest import Cluster, _ssl_context, http, start_cluster, wait_for

AGGREGATED = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"
CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "description": "What the widget should be.",
            "required": ["size"],
            "properties": {
                "size": {"type": "integer", "minimum": 1, "maximum": 10, "description": "How big."},
                "color": {"type": "string", "enum": ["red", "blue"], "default": "blue"},
                "nick": {"type": "string", "maxLength": 5, "pattern": "^[a-z]+$"},
                "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2, "x-kubernetes-list-type": "set"},
                "port": {"x-kubernetes-int-or-string": True},
                "when": {"type": "string", "format": "date-time"},
                "replicas": {"type": "integer", "default": 1},
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "template": {"type": "object", "x-kubernetes-embedded-resource": True, "x-kubernetes-preserve-unknown-fields": True},
                "nothing": {"type": "object"},
            },
        },
        "status": {
            "type": "object",
            "properties": {
                "replicas": {"type": "integer"},
                "selector": {"type": "string"},
                "conditions": {
                    "type": "array",
                    "items": {"type": "object", "properties": {"type": {"type": "string"}, "status": {"type": "string"}}},
                },
            },
        },
    },
}
COLUMNS = [
    {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
    {"name": "Color", "type": "string", "jsonPath": ".spec.color", "description": "The color."},
    {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
    {"name": "Tags", "type": "string", "jsonPath": ".spec.tags", "priority": 1},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def crd(group: str, *, plural: str = "widgets", kind: str = "Widget", versions: list[dict[str, Any]] | None = None,
        scope: str = "Namespaced") -> dict[str, Any]:
    body = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": scope,
            "names": {"plural": plural, "singular": kind.lower(), "kind": kind, "shortNames": [f"{plural[:2]}x"]},
            "versions": versions
            or [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": SCHEMA},
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": COLUMNS,
                    "selectableFields": [{"jsonPath": ".spec.color"}],
                }
            ],
        },
    }
    return json.loads(json.dumps(body))  # a copy tests may change


def install(cluster: Cluster, body: dict[str, Any]) -> dict[str, Any]:
    """Create a CRD and wait until it is Established."""
    created = http(cluster, "POST", CRDS, body)
    assert created.status == 201, created.body
    name = body["metadata"]["name"]

    def established() -> dict[str, Any] | None:
        got = http(cluster, "GET", f"{CRDS}/{name}").json()
        conds = {c["type"]: c["status"] for c in got.get("status", {}).get("conditions", [])}
        return got if conds.get("Established") == "True" else None

    return wait_for(established, timeout=5, what=f"{name} Established")


def widgets(group: str, namespace: str, version: str = "v1") -> str:
    return f"/apis/{group}/{version}/namespaces/{namespace}/widgets"


def widget(name: str, group: str, version: str = "v1", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{group}/{version}", "kind": "Widget", "metadata": {"name": name}, "spec": {"size": 1, **spec}}


def test_a_new_crd_is_served_everywhere_within_a_second(cluster: Cluster) -> None:
    group = "served.example.com"
    start = time.monotonic()
    assert http(cluster, "POST", CRDS, crd(group)).status == 201

    def discovered() -> bool:
        return http(cluster, "GET", f"/apis/{group}/v1").status == 200

    wait_for(discovered, timeout=1, interval=0.01, what="the group-version in discovery")
    assert time.monotonic() - start < 1
    resources = http(cluster, "GET", f"/apis/{group}/v1").json()["resources"]
    assert [(r["name"], r["kind"]) for r in resources] == [
        ("widgets", "Widget"),
        ("widgets/status", "Widget"),
        ("widgets/scale", "Scale"),
    ]
    assert resources[0]["shortNames"] == ["wix"] and resources[0]["namespaced"] is True
    assert resources[0]["singularName"] == "widget" and "storageVersionHash" in resources[0]
    groups = {g["name"]: g for g in http(cluster, "GET", "/apis").json()["groups"]}
    assert groups[group]["preferredVersion"] == {"groupVersion": f"{group}/v1", "version": "v1"}
    agg = http(cluster, "GET", "/apis", headers={"Accept": AGGREGATED}).json()
    mine = next(i for i in agg["items"] if i["metadata"]["name"] == group)
    res = mine["versions"][0]["resources"][0]
    assert res["resource"] == "widgets" and res["scope"] == "Namespaced"
    assert [s["subresource"] for s in res["subresources"]] == ["status", "scale"]
    root = http(cluster, "GET", "/openapi/v3").json()["paths"]
    doc = http(cluster, "GET", root[f"apis/{group}/v1"]["serverRelativeURL"]).json()
    schema = doc["components"]["schemas"]["com.example.served.v1.Widget"]
    assert schema["x-kubernetes-group-version-kind"] == [{"group": group, "kind": "Widget", "version": "v1"}]
    assert schema["properties"]["spec"]["properties"]["size"]["description"] == "How big."
    assert schema["properties"]["spec"]["properties"]["port"]["anyOf"] == [{"type": "integer"}, {"type": "string"}]
    assert "com.example.served.v1.WidgetList" in doc["components"]["schemas"]
    api_resources = cluster.kubectl("api-resources", "--api-group", group).stdout
    assert "widgets" in api_resources and "wix" in api_resources
    explained = cluster.kubectl("explain", f"widgets.{group}.spec").stdout
    assert "What the widget should be." in explained and "How big." in explained


def test_crd_status_names_and_conditions(cluster: Cluster) -> None:
    group = "status.example.com"
    got = install(cluster, crd(group))
    status = got["status"]
    assert status["acceptedNames"] == {
        "kind": "Widget",
        "listKind": "WidgetList",
        "plural": "widgets",
        "singular": "widget",
        "shortNames": ["wix"],
    }
    assert status["storedVersions"] == ["v1"]
    conds = {c["type"]: c for c in status["conditions"]}
    assert (conds["NamesAccepted"]["status"], conds["NamesAccepted"]["reason"]) == ("True", "NoConflicts")
    assert (conds["Established"]["status"], conds["Established"]["reason"]) == ("True", "InitialNamesAccepted")
    assert got["spec"]["conversion"] == {"strategy": "None"}
    assert got["metadata"]["generation"] == 1
    out = cluster.kubectl("wait", "--for=condition=Established", f"crd/widgets.{group}", "--timeout=5s")
    assert "condition met" in out.stdout
    # a second CRD whose kind is taken in the group is not accepted, and not served
    clash = crd(group, plural="gadgets", kind="Widget")
    assert http(cluster, "POST", CRDS, clash).status == 201

    def refused() -> dict[str, Any] | None:
        c = http(cluster, "GET", f"{CRDS}/gadgets.{group}").json()
        conds = {x["type"]: x for x in c.get("status", {}).get("conditions", [])}
        return conds if conds.get("NamesAccepted", {}).get("status") == "False" else None

    conds = wait_for(refused, timeout=5, what="NamesAccepted False")
    assert conds["NamesAccepted"]["reason"] == "ListKindConflict"  # the last conflict found, as upstream
    assert conds["NamesAccepted"]["message"] == '"WidgetList" is already in use'
    assert conds["Established"]["status"] == "False"
    assert http(cluster, "GET", f"/apis/{group}/v1/namespaces/default/gadgets").status == 404


def test_custom_objects_crud_list_watch_and_selectors(cluster: Cluster, namespace: str) -> None:
    group = "crud.example.com"
    install(cluster, crd(group))
    base = widgets(group, namespace)
    first = http(cluster, "POST", base, widget("a", group, color="red"))
    assert first.status == 201, first.body
    a = first.json()
    assert a["apiVersion"] == f"{group}/v1" and a["metadata"]["generation"] == 1 and a["metadata"]["uid"]
    rv = a["metadata"]["resourceVersion"]
    conn = httpclient.HTTPSConnection("127.0.0.1", cluster.port, context=_ssl_context(cluster, True), timeout=10)
    conn.request("GET", f"{base}?watch=1&resourceVersion={rv}")
    stream = conn.getresponse()
    assert stream.status == 200
    b = http(cluster, "POST", base, {**widget("b", group), "metadata": {"name": "b", "labels": {"team": "x"}}})
    assert b.status == 201
    assert http(cluster, "POST", base, widget("b", group)).status == 409
    assert http(cluster, "GET", f"{base}/b").json()["metadata"]["labels"] == {"team": "x"}
    names = [i["metadata"]["name"] for i in http(cluster, "GET", base).json()["items"]]
    assert names == ["a", "b"]
    listed = http(cluster, "GET", base).json()
    assert listed["kind"] == "WidgetList" and listed["apiVersion"] == f"{group}/v1"
    assert [i["metadata"]["name"] for i in http(cluster, "GET", f"{base}?labelSelector=team%3Dx").json()["items"]] == ["b"]
    by_color = http(cluster, "GET", f"{base}?fieldSelector=spec.color%3Dblue").json()["items"]
    assert [i["metadata"]["name"] for i in by_color] == ["b"]
    by_name = http(cluster, "GET", f"{base}?fieldSelector=metadata.name%3Da").json()["items"]
    assert [i["metadata"]["name"] for i in by_name] == ["a"]
    bad = http(cluster, "GET", f"{base}?fieldSelector=spec.size%3D1")
    assert bad.status == 400 and "field label not supported" in bad.json()["message"]
    assert cluster.kubectl("get", f"widgets.{group}", "-n", namespace, "--field-selector", "spec.color=red", "-o", "name").stdout == (
        f"widget.{group}/a\n"
    )
    merged = http(cluster, "PATCH", f"{base}/a", {"spec": {"size": 3}}, {"Content-Type": "application/merge-patch+json"})
    assert merged.status == 200 and merged.json()["spec"]["size"] == 3 and merged.json()["metadata"]["generation"] == 2
    patched = http(cluster, "PATCH", f"{base}/a", json.dumps([{"op": "replace", "path": "/spec/size", "value": 4}]),
                   {"Content-Type": "application/json-patch+json"})
    assert patched.status == 200 and patched.json()["spec"]["size"] == 4
    smp = http(cluster, "PATCH", f"{base}/a", {"spec": {"size": 5}}, {"Content-Type": "application/strategic-merge-patch+json"})
    assert smp.status == 415 and smp.json()["reason"] == "UnsupportedMediaType"
    assert "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml" in smp.json()["message"]
    cluster.kubectl("label", f"widgets.{group}", "a", "-n", namespace, "tier=gold")
    assert http(cluster, "GET", f"{base}/a").json()["metadata"]["generation"] == 3  # labels do not count
    current = http(cluster, "GET", f"{base}/a").json()
    current["spec"]["size"] = 6
    assert http(cluster, "PUT", f"{base}/a", current).json()["spec"]["size"] == 6
    assert http(cluster, "DELETE", f"{base}/a").json()["status"] == "Success"
    deleted = http(cluster, "DELETE", f"{base}?labelSelector=team%3Dx").json()
    assert deleted["kind"] == "WidgetList" and [i["metadata"]["name"] for i in deleted["items"]] == ["b"]
    events = []
    while len(events) < 7:
        events.append(json.loads(stream.readline()))
    conn.close()
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "b"),
        ("MODIFIED", "a"),
        ("MODIFIED", "a"),
        ("MODIFIED", "a"),
        ("MODIFIED", "a"),
        ("DELETED", "a"),
        ("DELETED", "b"),
    ]
    assert events[0]["object"]["apiVersion"] == f"{group}/v1" and events[0]["object"]["kind"] == "Widget"


def _causes(response: Any) -> list[tuple[str, str, str]]:
    body = response.json()
    assert response.status == 422, body
    assert body["reason"] == "Invalid"
    return [(c["field"], c["reason"], c["message"]) for c in body["details"]["causes"]]


def test_schema_validation_is_422_with_kube_causes(cluster: Cluster, namespace: str) -> None:
    group = "invalid.example.com"
    install(cluster, crd(group))
    base = widgets(group, namespace)
    body = widget("w", group, size="big", color="green", nick="TooLongName", tags=["a", "a", "b"], port=True,
                  when="yesterday")
    body["spec"]["template"] = {"metadata": {"name": "x"}}
    del body["spec"]["size"]
    body["spec"]["size"] = 11
    assert _causes(http(cluster, "POST", base, body)) == [
        ("spec.size", "FieldValueInvalid", "Invalid value: 11: spec.size in body should be less than or equal to 10"),
        ("spec.color", "FieldValueNotSupported", 'Unsupported value: "green": supported values: "red", "blue"'),
        ("spec.nick", "FieldValueTooLong", "Too long: may not be more than 5 bytes"),
        ("spec.nick", "FieldValueInvalid", "Invalid value: \"TooLongName\": spec.nick in body should match '^[a-z]+$'"),
        ("spec.tags", "FieldValueTooMany", "Too many: 3: must have at most 2 items"),
        ("spec.port", "FieldValueTypeInvalid",
         'Invalid value: "boolean": spec.port in body must be of type integer,string: "boolean"'),
        ("spec.when", "FieldValueTypeInvalid",
         'Invalid value: "yesterday": spec.when in body must be of type date-time: "yesterday"'),
        ("spec.template.apiVersion", "FieldValueRequired", "Required value: must not be empty"),
        ("spec.template.kind", "FieldValueRequired", "Required value: must not be empty"),
        ("spec.tags[1]", "FieldValueDuplicate", 'Duplicate value: "a"'),
    ]
    missing = widget("w", group)
    del missing["spec"]["size"]
    response = http(cluster, "POST", base, missing)
    assert _causes(response) == [("spec.size", "FieldValueRequired", "Required value")]
    assert response.json()["message"] == f'Widget.{group} "w" is invalid: spec.size: Required value'
    wrong = http(cluster, "POST", base, {**widget("w", group), "spec": "nope"})
    assert _causes(wrong) == [
        ("spec", "FieldValueTypeInvalid", 'Invalid value: "string": spec in body must be of type object: "string"')
    ]
    bad_name = http(cluster, "POST", base, widget("Bad_Name", group))
    assert _causes(bad_name)[0][:2] == ("metadata.name", "FieldValueInvalid")
    created = http(cluster, "POST", base, widget("ok", group, port="http", when="2024-01-02T03:04:05Z"))
    assert created.status == 201, created.body
    out = cluster.kubectl("patch", f"widgets.{group}", "ok", "-n", namespace, "--type=merge", "-p", '{"spec":{"size":0}}',
                          check=False)
    assert out.returncode != 0
    assert "spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1" in out.stderr


def test_pruning_defaulting_and_field_validation(cluster: Cluster, namespace: str) -> None:
    group = "prune.example.com"
    install(cluster, crd(group))
    base = widgets(group, namespace)
    body = widget("p", group, unknown=1, extra={"anything": {"goes": True}}, nothing={"dropped": 1},
                  template={"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "t", "bogus": 1}, "spec": {"x": 1}})
    body["metadata"]["bogusMeta"] = 1
    body["status"] = {"replicas": 3}
    warned = http(cluster, "POST", base, body)
    assert warned.status == 201, warned.body
    warnings = warned.headers.get_all("Warning")
    assert warnings == [
        '299 - "unknown field \\"metadata.bogusMeta\\""',
        '299 - "unknown field \\"spec.nothing.dropped\\""',
        '299 - "unknown field \\"spec.unknown\\""',
    ]
    got = warned.json()
    assert got["spec"] == {
        "size": 1,
        "color": "blue",
        "replicas": 1,
        "extra": {"anything": {"goes": True}},
        "nothing": {},
        "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "t", "bogus": 1}, "spec": {"x": 1}},
    }
    assert "bogusMeta" not in got["metadata"] and "status" not in got  # status is a subresource
    strict = http(cluster, "POST", f"{base}?fieldValidation=Strict", {**widget("s", group), "junk": 1})
    assert strict.status == 400
    assert strict.json()["message"] == (
        'Widget in version "v1" cannot be handled as a Widget: strict decoding error: unknown field "junk"'
    )
    dup = http(cluster, "POST", f"{base}?fieldValidation=Strict",
               '{"apiVersion":"' + group + '/v1","kind":"Widget","metadata":{"name":"d"},"spec":{"size":1,"size":2}}',
               {"Content-Type": "application/json"})
    assert dup.status == 400 and 'duplicate field "spec.size"' in dup.json()["message"]
    ignored = http(cluster, "POST", f"{base}?fieldValidation=Ignore", {**widget("i", group), "junk": 1})
    assert ignored.status == 201 and "junk" not in ignored.json() and not ignored.headers.get_all("Warning")
    nulls = http(cluster, "POST", base, widget("n", group, color=None, nick=None))
    assert nulls.status == 201 and nulls.json()["spec"]["color"] == "blue" and "nick" not in nulls.json()["spec"]
    patched = http(cluster, "PATCH", f"{base}/n?fieldValidation=Strict", {"spec": {"oops": 1}},
                   {"Content-Type": "application/merge-patch+json"})
    assert patched.status == 400 and patched.json()["message"] == 'strict decoding error: unknown field "spec.oops"'
    out = cluster.kubectl("apply", "-n", namespace, "-f", "-", check=False,
                          input=f"apiVersion: {group}/v1\nkind: Widget\nmetadata: {{name: k}}\nspec: {{size: 1, oops: 1}}\n")
    assert out.returncode != 0 and 'unknown field "spec.oops"' in out.stderr


def test_status_and_scale_subresources(cluster: Cluster, namespace: str) -> None:
    group = "subres.example.com"
    install(cluster, crd(group))
    base = widgets(group, namespace)
    assert http(cluster, "POST", base, widget("s", group, replicas=2)).status == 201
    status = http(cluster, "PUT", f"{base}/s/status", {
        **http(cluster, "GET", f"{base}/s").json(),
        "spec": {"size": 9},
        "status": {"replicas": 2, "selector": "app=s", "conditions": [{"type": "Ready", "status": "True"}]},
    })
    assert status.status == 200, status.body
    got = status.json()
    assert got["spec"]["size"] == 1 and got["status"]["replicas"] == 2 and got["metadata"]["generation"] == 1
    main = http(cluster, "PATCH", f"{base}/s", {"spec": {"size": 2}, "status": {"replicas": 7}},
                {"Content-Type": "application/merge-patch+json"}).json()
    assert main["status"]["replicas"] == 2 and main["metadata"]["generation"] == 2
    scale = http(cluster, "GET", f"{base}/s/scale").json()
    assert scale == {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {k: main["metadata"][k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")},
        "spec": {"replicas": 2},
        "status": {"replicas": 2, "selector": "app=s"},
    }
    cluster.kubectl("scale", f"widgets.{group}", "s", "-n", namespace, "--replicas=5")
    assert http(cluster, "GET", f"{base}/s").json()["spec"]["replicas"] == 5
    too_many = http(cluster, "PATCH", f"{base}/s/scale", {"spec": {"replicas": -1}}, {"Content-Type": "application/merge-patch+json"})
    assert too_many.status == 422
    bad_status = http(cluster, "PATCH", f"{base}/s/status", {"status": {"replicas": "x"}},
                      {"Content-Type": "application/merge-patch+json"})
    assert ("status.replicas", "FieldValueTypeInvalid") in [c[:2] for c in _causes(bad_status)]


def test_printer_columns_in_kubectl_get(cluster: Cluster, namespace: str) -> None:
    group = "print.example.com"
    install(cluster, crd(group))
    base = widgets(group, namespace)
    assert http(cluster, "POST", base, widget("p", group, size=3, tags=["x", "y"])).status == 201
    http(cluster, "PATCH", f"{base}/p/status", {"status": {"conditions": [{"type": "Ready", "status": "True"}]}},
         {"Content-Type": "application/merge-patch+json"})
    table = http(cluster, "GET", base, headers={"Accept": TABLE}).json()
    assert [(c["name"], c["type"], c["priority"]) for c in table["columnDefinitions"]] == [
        ("Name", "string", 0), ("Size", "integer", 0), ("Color", "string", 0), ("Ready", "string", 0),
        ("Tags", "string", 1), ("Age", "date", 0),
    ]
    assert table["columnDefinitions"][2]["description"] == "The color."
    assert table["columnDefinitions"][1]["description"] == "Custom resource definition column (in JSONPath format): .spec.size"
    assert table["rows"][0]["cells"][:5] == ["p", 3, "blue", "True", '["x","y"]']
    lines = cluster.kubectl("get", f"widgets.{group}", "-n", namespace).stdout.splitlines()
    assert lines[0].split() == ["NAME", "SIZE", "COLOR", "READY", "AGE"]
    assert lines[1].split()[:4] == ["p", "3", "blue", "True"]
    wide = cluster.kubectl("get", f"widgets.{group}", "-n", namespace, "-o", "wide").stdout.splitlines()
    assert wide[0].split() == ["NAME", "SIZE", "COLOR", "READY", "TAGS", "AGE"]
    # no columns declared: NAME and AGE, as kube serves them
    plain = crd("plain.example.com")
    del plain["spec"]["versions"][0]["additionalPrinterColumns"]
    install(cluster, plain)
    assert http(cluster, "POST", widgets("plain.example.com", namespace), widget("q", "plain.example.com")).status == 201
    assert cluster.kubectl("get", "widgets.plain.example.com", "-n", namespace).stdout.split()[:3] == ["NAME", "AGE", "q"]


def test_several_versions_share_one_storage(cluster: Cluster, namespace: str) -> None:
    group = "versions.example.com"
    open_object = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    schema = {"openAPIV3Schema": {"type": "object", "properties": {"spec": open_object, "status": open_object}}}
    versions = [
        {"name": "v1alpha1", "served": True, "storage": False, "schema": schema},
        {"name": "v1beta1", "served": True, "storage": False, "schema": schema, "deprecated": True},
        {"name": "v1", "served": True, "storage": True, "schema": schema},
        {"name": "v2alpha1", "served": False, "storage": False, "schema": schema},
    ]
    install(cluster, crd(group, versions=versions))
    assert http(cluster, "GET", f"/apis/{group}").json()["versions"] == [
        {"groupVersion": f"{group}/v1", "version": "v1"},
        {"groupVersion": f"{group}/v1beta1", "version": "v1beta1"},
        {"groupVersion": f"{group}/v1alpha1", "version": "v1alpha1"},
    ]
    assert http(cluster, "GET", f"/apis/{group}/v2alpha1").status == 404
    made = http(cluster, "POST", widgets(group, namespace, "v1beta1"), widget("m", group, "v1beta1"))
    assert made.status == 201 and made.json()["apiVersion"] == f"{group}/v1beta1"
    for version in ("v1", "v1alpha1"):
        got = http(cluster, "GET", f"{widgets(group, namespace, version)}/m").json()
        assert got["apiVersion"] == f"{group}/{version}"
        assert got["metadata"]["uid"] == made.json()["metadata"]["uid"]
    # without a status subresource, status is written with the object and counts as a change
    bumped = http(cluster, "PATCH", f"{widgets(group, namespace)}/m", {"status": {"seen": True}},
                  {"Content-Type": "application/merge-patch+json"}).json()
    assert bumped["status"] == {"seen": True} and bumped["metadata"]["generation"] == 2
    with_status = http(cluster, "POST", widgets(group, namespace), {**widget("st", group), "status": {"x": 1}}).json()
    assert with_status["status"] == {"x": 1} and with_status["metadata"]["generation"] == 1
    listed = http(cluster, "GET", widgets(group, namespace, "v1alpha1")).json()
    assert listed["apiVersion"] == f"{group}/v1alpha1" and listed["items"][0]["apiVersion"] == f"{group}/v1alpha1"
    assert cluster.kubectl("get", f"widgets.{group}", "m", "-n", namespace, "-o", "jsonpath={.apiVersion}").stdout == (
        f"{group}/v1"
    )
    crd_now = http(cluster, "GET", f"{CRDS}/widgets.{group}").json()
    assert crd_now["status"]["storedVersions"] == ["v1"]
    crd_now["spec"]["versions"][2]["storage"] = False
    crd_now["spec"]["versions"][1]["storage"] = True
    updated = http(cluster, "PUT", f"{CRDS}/widgets.{group}", crd_now)
    assert updated.status == 200 and updated.json()["status"]["storedVersions"] == ["v1", "v1beta1"]


def test_invalid_crds_are_422_with_causes(cluster: Cluster) -> None:
    group = "bad.example.com"

    def reject(body: dict[str, Any]) -> list[tuple[str, str, str]]:
        return _causes(http(cluster, "POST", CRDS, body))

    untyped = crd(group)
    untyped["spec"]["versions"][0]["schema"] = {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"properties": {"a": {"type": "string"}}}}}}
    del untyped["spec"]["versions"][0]["selectableFields"]
    assert reject(untyped) == [
        ("spec.validation.openAPIV3Schema.properties[spec].type", "FieldValueRequired",
         "Required value: must not be empty for specified object fields"),
    ]
    ref = crd(group)
    ref["spec"]["versions"][0]["schema"]["openAPIV3Schema"] = {
        "type": "object",
        "properties": {"spec": {"type": "object", "$ref": "#/x", "properties": {"a": {"type": "string"}}, "additionalProperties": {"type": "string"}}},
    }
    del ref["spec"]["versions"][0]["selectableFields"]
    assert reject(ref) == [
        ("spec.validation.openAPIV3Schema.properties[spec].$ref", "FieldValueForbidden", "Forbidden: $ref is not supported"),
        ("spec.validation.openAPIV3Schema.properties[spec].additionalProperties", "FieldValueForbidden",
         "Forbidden: additionalProperties and properties are mutual exclusive"),
    ]
    two = crd(group)
    extra = {**two["spec"]["versions"][0], "name": "v2"}
    two["spec"]["versions"].append(extra)
    causes = reject(two)
    assert ("spec.versions", "FieldValueInvalid") in [c[:2] for c in causes]
    assert any(c[2].endswith("must have exactly one version marked as storage version") for c in causes)
    misnamed = crd(group)
    misnamed["metadata"]["name"] = "wrong.bad.example.com"
    assert ("metadata.name", "FieldValueInvalid", 'Invalid value: "wrong.bad.example.com": must be spec.names.plural+"."+spec.group') in reject(misnamed)
    nodot = crd("nodot")
    assert ("spec.group", "FieldValueInvalid", 'Invalid value: "nodot": should be a domain with at least one dot') in reject(nodot)
    scope = crd(group, scope="Everywhere")
    assert ("spec.scope", "FieldValueNotSupported", 'Unsupported value: "Everywhere": supported values: "Cluster", "Namespaced"') in reject(scope)
    protected = crd("things.k8s.io")
    assert ("metadata.annotations[api-approved.kubernetes.io]", "FieldValueRequired") in [c[:2] for c in reject(protected)]
    mistyped = crd(group)
    mistyped["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["required"] = "spec"
    bad = http(cluster, "POST", CRDS, mistyped)
    assert bad.status == 400 and "cannot unmarshal string" in bad.json()["message"]
    assert http(cluster, "GET", f"{CRDS}/widgets.{group}").status == 404


def test_cel_rules_are_accepted_with_a_warning(cluster: Cluster, namespace: str) -> None:
    group = "cel.example.com"
    body = crd(group)
    body["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["x-kubernetes-validations"] = [
        {"rule": "self.size <= 5", "message": "too big"}
    ]
    created = http(cluster, "POST", CRDS, body)
    assert created.status == 201
    assert created.headers.get_all("Warning") == [
        '299 - "x-kubernetes-validations rules are accepted but not enforced: k8py does not evaluate CEL (1 schema node with rules)"'
    ]
    install_name = body["metadata"]["name"]
    wait_for(lambda: http(cluster, "GET", f"/apis/{group}/v1").status == 200, timeout=5, what="served")
    assert http(cluster, "POST", widgets(group, namespace), widget("big", group, size=9)).status == 201  # not enforced
    out = cluster.kubectl("get", "crd", install_name, "-o", "name")
    assert out.stdout.strip() == f"customresourcedefinition.apiextensions.k8s.io/{install_name}"
    empty = crd("celbad.example.com")
    empty["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["x-kubernetes-validations"] = [{"rule": " "}]
    assert _causes(http(cluster, "POST", CRDS, empty)) == [
        ("spec.validation.openAPIV3Schema.x-kubernetes-validations[0].rule", "FieldValueRequired",
         "Required value: rule is not specified")
    ]


def test_deleting_a_crd_deletes_its_objects(cluster: Cluster, namespace: str) -> None:
    group = "gone.example.com"
    install(cluster, crd(group))
    base = widgets(group, namespace)
    for name in ("a", "b"):
        assert http(cluster, "POST", base, widget(name, group)).status == 201
    held = widget("held", group)
    held["metadata"]["finalizers"] = ["example.com/hold"]
    assert http(cluster, "POST", base, held).status == 201
    deleting = http(cluster, "DELETE", f"{CRDS}/widgets.{group}").json()
    assert "customresourcecleanup.apiextensions.k8s.io" in deleting["metadata"]["finalizers"]

    def terminating() -> dict[str, Any] | None:
        got = http(cluster, "GET", f"{CRDS}/widgets.{group}").json()
        conds = {c["type"]: c for c in got["status"]["conditions"]}
        return conds if conds.get("Terminating", {}).get("reason") == "InstanceDeletionInProgress" else None

    conds = wait_for(terminating, timeout=5, what="Terminating")
    assert conds["Terminating"]["message"] == "CustomResource deletion is in progress"
    wait_for(lambda: [i["metadata"]["name"] for i in http(cluster, "GET", base).json()["items"]] == ["held"], timeout=5,
             what="the objects without finalizers to go")
    refused = http(cluster, "POST", base, widget("late", group))
    assert refused.status == 405 and refused.json()["message"] == "create not allowed while custom resource definition is terminating"
    http(cluster, "PATCH", f"{base}/held", {"metadata": {"finalizers": None}}, {"Content-Type": "application/merge-patch+json"})
    wait_for(lambda: http(cluster, "GET", f"{CRDS}/widgets.{group}").status == 404, timeout=10, what="the CRD to go")
    wait_for(lambda: http(cluster, "GET", f"/apis/{group}/v1").status == 404, timeout=2, what="the group to go")
    assert group not in [g["name"] for g in http(cluster, "GET", "/apis").json()["groups"]]
    assert f"apis/{group}/v1" not in http(cluster, "GET", "/openapi/v3").json()["paths"]
    # recreated, the resource starts empty
    install(cluster, crd(group))
    assert http(cluster, "GET", base).json()["items"] == []


def test_cluster_scoped_custom_resources(cluster: Cluster) -> None:
    group = "cluster.example.com"
    install(cluster, crd(group, scope="Cluster"))
    created = http(cluster, "POST", f"/apis/{group}/v1/widgets", widget("c", group))
    assert created.status == 201 and "namespace" not in created.json()["metadata"]
    assert http(cluster, "GET", f"/apis/{group}/v1/namespaces/default/widgets").status == 404
    assert cluster.kubectl("get", f"widgets.{group}", "-o", "name").stdout == f"widget.{group}/c\n"


def test_restart_serves_stored_crds_before_ready(tmp_path: Path) -> None:
    data = tmp_path / "data"
    c = start_cluster(data)
    try:
        group = "restart.example.com"
        install(c, crd(group))
        assert http(c, "POST", widgets(group, "default"), widget("r", group)).status == 201
    finally:
        assert c.stop() == 0
    c2 = start_cluster(data, port=c.port)
    try:
        got = http(c2, "GET", f"{widgets(group, 'default')}/r")  # the first request, no waiting
        assert got.status == 200 and got.json()["spec"]["color"] == "blue"
        assert c2.kubectl("get", f"widgets.{group}", "-o", "name").stdout == f"widget.{group}/r\n"
        assert "widgets" in c2.kubectl("api-resources", "--api-group", group).stdout
    finally:
        c2.stop()
