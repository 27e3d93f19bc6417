"""Unit tests for k8py.api.fieldmanager: field sets, schema walks, managedFields and server-side apply."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import orjson
import pytest

from k8py.api import errors
from k8py.api import meta as objmeta
from k8py.api import schema as schemas
from k8py.api.fieldmanager import (
    Scope,
    apply,
    manager_from_user_agent,
    record_update,
    typed,
    validate_options,
)
from k8py.api.fieldmanager import fieldpath as fp
from k8py.api.fieldmanager import manager as fm_manager
from k8py.api.structural import typeschema

DEPLOYMENT = schemas.for_kind("apps", "v1", "Deployment")
CONFIGMAP = schemas.for_kind("", "v1", "ConfigMap")
SERVICE = schemas.for_kind("", "v1", "Service")

# structured-merge-diff's fieldpath/serialize_test.go golden data (TestSerializeV1GoldenData).
GOLDEN = [
    r'{"f:aaa":{},"f:aab":{},"f:aac":{},"f:aad":{},"f:aae":{},"f:aaf":{},"k:{\"name\":\"first\"}":{},"k:{\"name\":\"second\"}":{},"k:{\"port\":443,\"protocol\":\"tcp\"}":{},"k:{\"port\":443,\"protocol\":\"udp\"}":{},"v:1":{},"v:2":{},"v:3":{},"v:\"aa\"":{},"v:\"ab\"":{},"v:true":{},"i:1":{},"i:2":{},"i:3":{},"i:4":{}}',
    r'{"f:aaa":{"k:{\"name\":\"second\"}":{"v:3":{"f:aab":{}}},"v:3":{},"v:true":{}},"f:aab":{"f:aaa":{},"f:aaf":{"k:{\"port\":443,\"protocol\":\"udp\"}":{"k:{\"port\":443,\"protocol\":\"tcp\"}":{}}},"k:{\"name\":\"first\"}":{}},"f:aac":{"f:aaa":{"v:1":{}},"f:aac":{},"v:3":{"k:{\"name\":\"second\"}":{}}},"i:1":{"i:3":{"f:aaf":{}}}}',
]


def shuffled(node: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    keys = list(node)
    rng.shuffle(keys)
    return {k: shuffled(node[k], rng) for k in keys}


def deployment(replicas: int = 2, image: str = "nginx:1.14.2", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": image, "ports": [{"containerPort": 80}]}]},
            },
            **spec,
        },
    }


def configmap(data: dict[str, str], **md: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": "default", **md}, "data": data}


def entries(obj: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(e.get("manager", ""), e["operation"], e["fieldsV1"]) for e in obj["metadata"].get("managedFields", [])]


def stored(obj: dict[str, Any]) -> dict[str, Any]:
    """What the store would hold after a write: a copy with server metadata."""
    out = copy.deepcopy(obj)
    out["metadata"].setdefault("uid", "u-1")
    out["metadata"]["resourceVersion"] = "1"
    return out


def do_apply(live: dict[str, Any] | None, config: dict[str, Any], manager: str = "kubectl", *, force: bool = False,
             schema: dict[str, Any] | None = DEPLOYMENT, scope: Scope = Scope.MAIN) -> dict[str, Any]:
    api_version, kind = config["apiVersion"], config["kind"]
    return apply(copy.deepcopy(live), copy.deepcopy(config), manager=manager, api_version=api_version, kind=kind,
                 schema=schema, scope=scope, force=force)


# ---- fieldpath ----------------------------------------------------------------------------------


@pytest.mark.parametrize("golden", GOLDEN)
def test_fieldsv1_order_matches_upstream_golden_data(golden: str) -> None:
    rng = random.Random(7)
    for _ in range(5):
        assert orjson.dumps(fp.decode(shuffled(json.loads(golden), rng))).decode() == golden


def test_decode_canonicalizes_keys_and_self() -> None:
    raw = {"f:b": {}, "f:a": {"f:x": {}, ".": {}}, 'k:{"protocol":"TCP","containerPort":80}': {}, "z:unknown": {}}
    assert orjson.dumps(fp.decode(raw)).decode() == (
        '{"f:a":{".":{},"f:x":{}},"f:b":{},"k:{\\"containerPort\\":80,\\"protocol\\":\\"TCP\\"}":{}}'
    )
    for bad in ([], {"x": {}}, {"k:[1]": {}}, {"k:{bad": {}}, {"i:x": {}}, {"f:a": 1}):
        with pytest.raises(fp.InvalidFieldSet):
            fp.decode(bad)


def test_set_algebra() -> None:
    a = {"f:metadata": {"f:labels": {".": {}, "f:app": {}}}, "f:spec": {"f:replicas": {}}}
    b = {"f:spec": {"f:paused": {}, "f:replicas": {}}}
    assert fp.union(a, b) == {"f:metadata": {"f:labels": {".": {}, "f:app": {}}}, "f:spec": {"f:paused": {}, "f:replicas": {}}}
    assert fp.union({"f:b": {}}, {"f:a": {"f:x": {}}, "f:b": {"f:y": {}}}) == {"f:a": {"f:x": {}}, "f:b": {".": {}, "f:y": {}}}
    assert fp.intersection(a, b) == {"f:spec": {"f:replicas": {}}}
    assert fp.difference(a, b) == {"f:metadata": {"f:labels": {".": {}, "f:app": {}}}}
    # Difference removes exact paths, not what lies below them
    assert fp.difference(a, {"f:metadata": {"f:labels": {}}}) == {"f:metadata": {"f:labels": {"f:app": {}}}, "f:spec": {"f:replicas": {}}}
    assert a == {"f:metadata": {"f:labels": {".": {}, "f:app": {}}}, "f:spec": {"f:replicas": {}}}  # values, never mutated


def test_paths_iterate_members_before_children_and_print_like_upstream() -> None:
    s = fp.decode({"f:spec": {"f:template": {"f:x": {}}, "f:z": {}}, 'k:{"name":"a","port":1}': {".": {}, "v:"
                   '"x"': {}}})
    assert [fp.path_string(p) for p in fp.paths(s)] == [
        '[name="a",port=1]', ".spec.z", ".spec.template.x", '[name="a",port=1][="x"]',
    ]
    assert fp.element_string("i:3") == "[3]"
    assert fp.go_json({"b": "<&>", "a": 1.0}) == '{"a":1,"b":"\\u003c\\u0026\\u003e"}'


# ---- typed ---------------------------------------------------------------------------------------


def test_field_set_of_an_applied_deployment() -> None:
    s = typed.field_set(deployment(), typed.compile_schema(DEPLOYMENT))
    containers = s["f:spec"]["f:template"]["f:spec"]["f:containers"]
    assert containers == {
        'k:{"name":"web"}': {
            ".": {},
            "f:image": {},
            "f:name": {},
            # the key's protocol comes from the OpenAPI default
            "f:ports": {'k:{"containerPort":80,"protocol":"TCP"}': {".": {}, "f:containerPort": {}}},
        }
    }
    assert s["f:spec"]["f:selector"] == {}  # LabelSelector is an atomic struct
    assert s["f:metadata"] == {"f:labels": {"f:app": {}}, "f:name": {}, "f:namespace": {}}


def test_field_set_rejects_undeclared_fields_and_keyless_items() -> None:
    t = typed.compile_schema(DEPLOYMENT)
    bad = deployment()
    bad["spec"]["foo"] = 1
    bad["spec"]["template"]["spec"]["containers"].append({"image": "x"})
    with pytest.raises(typed.SchemaError) as e:
        typed.field_set(bad, t)
    assert str(e.value) == (
        "errors:\n  .spec.foo: field not declared in schema\n"
        '  .spec.template.spec.containers: element 1: associative list with keys has an element that omits key '
        'field "name" (and doesn\'t have default value)'
    )
    dup = deployment()
    dup["spec"]["template"]["spec"]["containers"] *= 2
    with pytest.raises(typed.SchemaError, match=r'duplicate entries for key \[name="web"\]'):
        typed.field_set(dup, t)


def test_untyped_values_are_deduced() -> None:
    s = typed.field_set({"spec": {"a": {"b": 1}, "l": [1, 2]}}, typed.compile_schema(None))
    assert s == {"f:spec": {".": {}, "f:a": {".": {}, "f:b": {}}, "f:l": {}}}


def test_compare_reports_changed_and_removed_paths() -> None:
    t = typed.compile_schema(DEPLOYMENT)
    old, new = deployment(), deployment(replicas=3)
    new["spec"]["template"]["spec"]["containers"].append({"name": "side", "image": "busybox"})
    del new["metadata"]["labels"]
    changed, removed = typed.compare(old, new, t)
    assert changed == {
        "f:spec": {
            "f:replicas": {},
            "f:template": {"f:spec": {"f:containers": {'k:{"name":"side"}': {".": {}, "f:image": {}, "f:name": {}}}}},
        }
    }
    assert removed == {"f:metadata": {"f:labels": {".": {}, "f:app": {}}}}
    assert typed.compare(old, copy.deepcopy(old), t) == ({}, {})


def test_merge_honours_list_and_map_types() -> None:
    t = typed.compile_schema(SERVICE)
    live = {
        "spec": {
            "selector": {"a": "1", "b": "2"},  # atomic map: replaced
            "ports": [{"port": 80, "name": "http"}, {"port": 443, "name": "https"}],  # map list: merged by key
            "externalIPs": ["1.1.1.1"],  # atomic list
        },
        "metadata": {"finalizers": ["x", "y"], "labels": {"keep": "1"}},  # set; granular map
    }
    config = {
        "spec": {"selector": {"c": "3"}, "ports": [{"port": 8080}, {"port": 80, "targetPort": 8080}], "externalIPs": ["2.2.2.2"]},
        "metadata": {"finalizers": ["z", "x"], "labels": {"new": "1", "keep": None}},
    }
    merged = typed.merge(live, config, t)
    assert merged["spec"]["selector"] == {"c": "3"}
    assert merged["spec"]["ports"] == [
        {"port": 8080},
        {"port": 80, "name": "http", "targetPort": 8080},
        {"port": 443, "name": "https"},
    ]
    assert merged["spec"]["externalIPs"] == ["2.2.2.2"]
    assert merged["metadata"]["finalizers"] == ["z", "x", "y"]
    assert merged["metadata"]["labels"] == {"new": "1"}  # a null clears
    assert live["spec"]["ports"][0] == {"port": 80, "name": "http"}  # inputs untouched


def test_prune_removes_what_only_the_applier_owned() -> None:
    t = typed.compile_schema(CONFIGMAP)
    obj = {"data": {"a": "1", "b": "2", "c": "3"}, "metadata": {"name": "cm", "labels": {"x": "1"}}}
    last = {"f:data": {"f:a": {}, "f:b": {}}, "f:metadata": {"f:labels": {"f:x": {}}}}
    owned = {"f:data": {"f:a": {}}, "f:metadata": {"f:name": {}}}
    pruned = typed.prune(obj, last, owned, t)
    # c was never the applier's; labels goes whole (a struct field owning its subtree), metadata stays
    assert pruned == {"data": {"a": "1", "c": "3"}, "metadata": {"name": "cm"}}
    assert obj["data"] == {"a": "1", "b": "2", "c": "3"}


# ---- Update --------------------------------------------------------------------------------------


def test_create_records_fields_against_the_go_zero_value() -> None:
    obj = deployment()
    obj["spec"]["strategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}}
    record_update(None, obj, manager="kubectl-create", api_version="apps/v1", schema=DEPLOYMENT, scope=Scope.MAIN)
    [entry] = obj["metadata"]["managedFields"]
    assert list(entry) == ["manager", "operation", "apiVersion", "time", "fieldsType", "fieldsV1"]
    assert (entry["manager"], entry["operation"], entry["apiVersion"]) == ("kubectl-create", "Update", "apps/v1")
    f = entry["fieldsV1"]
    assert f["f:metadata"] == {"f:labels": {".": {}, "f:app": {}}}  # name/namespace stripped
    spec = f["f:spec"]
    assert "." not in spec and "." not in spec["f:template"] and "." not in spec["f:strategy"]
    assert spec["f:strategy"]["f:rollingUpdate"] == {".": {}, "f:maxSurge": {}}
    assert spec["f:template"]["f:spec"]["f:containers"]['k:{"name":"web"}']["f:ports"] == {
        ".": {}, 'k:{"containerPort":80,"protocol":"TCP"}': {".": {}, "f:containerPort": {}},
    }


def test_updates_move_ownership_and_merge_per_manager() -> None:
    live = configmap({"a": "1"})
    record_update(None, live, manager="one", api_version="v1", schema=CONFIGMAP, scope=Scope.WHOLE)
    live = stored(live)
    new = copy.deepcopy(live)
    new["data"] = {"a": "2", "b": "1"}
    record_update(live, new, manager="two", api_version="v1", schema=CONFIGMAP, scope=Scope.WHOLE)
    # "one" keeps only the data map itself, which was there before "two" came
    assert entries(new)[0][::2] == ("one", {"f:data": {}})
    assert entries(new)[1] == ("two", "Update", {"f:data": {"f:a": {}, "f:b": {}}})
    live = stored(new)
    new = copy.deepcopy(live)
    new["data"]["c"] = "3"
    del new["data"]["b"]
    record_update(live, new, manager="two", api_version="v1", schema=CONFIGMAP, scope=Scope.WHOLE)
    assert entries(new)[1] == ("two", "Update", {"f:data": {"f:a": {}, "f:c": {}}})
    unchanged = copy.deepcopy(stored(new))
    again = copy.deepcopy(unchanged)
    record_update(unchanged, again, manager="three", api_version="v1", schema=CONFIGMAP, scope=Scope.WHOLE)
    assert again == unchanged


def test_requested_managed_fields_replace_reset_or_are_ignored() -> None:
    live = configmap({"a": "1"})
    record_update(None, live, manager="one", api_version="v1", schema=CONFIGMAP, scope=Scope.WHOLE)
    live = stored(live)
    mine = {"manager": "mine", "operation": "Apply", "apiVersion": "v1", "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:a": {}}}}
    for requested, expected in (
        ([mine], [("mine", "Apply", {"f:data": {"f:a": {}}})]),
        ([], []),
        ([{}], []),
        ([{"operation": "Bogus"}], [("one", "Update", {"f:data": {".": {}, "f:a": {}}})]),
    ):
        new = copy.deepcopy(live)
        new["metadata"]["managedFields"] = requested
        record_update(live, new, manager="two", api_version="v1", schema=CONFIGMAP, scope=Scope.WHOLE)
        assert entries(new) == expected
    # a subresource never takes them from the request
    new = copy.deepcopy(live)
    new["metadata"]["managedFields"] = [mine]
    record_update(live, new, manager="two", api_version="v1", schema=CONFIGMAP, scope=Scope.STATUS, subresource="status")
    assert entries(new) == [("one", "Update", {"f:data": {".": {}, "f:a": {}}})]


def test_an_update_the_schema_cannot_key_keeps_the_stored_entries() -> None:
    live = deployment()
    record_update(None, live, manager="one", api_version="apps/v1", schema=DEPLOYMENT, scope=Scope.MAIN)
    live = stored(live)
    new = copy.deepcopy(live)
    new["spec"]["template"]["spec"]["containers"].append({"image": "no-name"})
    record_update(live, new, manager="two", api_version="apps/v1", schema=DEPLOYMENT, scope=Scope.MAIN)
    assert new["metadata"]["managedFields"] == live["metadata"]["managedFields"]


def test_status_is_recorded_only_through_the_status_subresource() -> None:
    live = stored(deployment())
    new = copy.deepcopy(live)
    new["status"] = {"replicas": 2}
    record_update(live, new, manager="ctrl", api_version="apps/v1", schema=DEPLOYMENT, scope=Scope.STATUS, subresource="status")
    [entry] = new["metadata"]["managedFields"]
    assert entry["subresource"] == "status" and entry["fieldsV1"] == {"f:status": {".": {}, "f:replicas": {}}}
    other = copy.deepcopy(live)
    other["status"] = {"replicas": 2}
    record_update(live, other, manager="ctrl", api_version="apps/v1", schema=DEPLOYMENT, scope=Scope.MAIN)
    assert "managedFields" not in other["metadata"]


def test_more_than_ten_updaters_fold_into_ancient_changes() -> None:
    obj = stored(configmap({}))
    for i in range(12):
        new = copy.deepcopy(obj)
        new["data"][f"k{i}"] = "v"
        record_update(obj, new, manager=f"m{i:02}", api_version="v1", schema=CONFIGMAP, scope=Scope.WHOLE)
        for n, e in enumerate(new["metadata"]["managedFields"]):
            e["time"] = f"2024-01-01T00:00:{n:02}Z"  # distinct, ordered times
        obj = stored(new)
    managers = [e["manager"] for e in obj["metadata"]["managedFields"]]
    assert len(managers) == 10 and "ancient-changes" in managers
    ancient = next(e for e in obj["metadata"]["managedFields"] if e["manager"] == "ancient-changes")
    assert ancient["fieldsV1"] == {"f:data": {"f:k0": {}, "f:k1": {}, "f:k2": {}}}


# ---- Apply ---------------------------------------------------------------------------------------


def test_apply_creates_then_conflicts_then_forces() -> None:
    obj = stored(do_apply(None, deployment()))
    assert [(m, op) for m, op, _ in entries(obj)] == [("kubectl", "Apply")]
    with pytest.raises(errors.StatusError) as e:
        do_apply(obj, deployment(replicas=3), "other")
    assert e.value.code == 409 and e.value.reason == "Conflict"
    assert e.value.message == 'Apply failed with 1 conflict: conflict with "kubectl": .spec.replicas'
    assert e.value.details == {"causes": [{"reason": "FieldManagerConflict", "message": 'conflict with "kubectl"', "field": ".spec.replicas"}]}
    forced = do_apply(obj, deployment(replicas=3), "other", force=True)
    assert forced["spec"]["replicas"] == 3
    owners = {m: f for m, _, f in entries(forced)}
    assert "f:replicas" not in owners["kubectl"]["f:spec"] and "f:replicas" in owners["other"]["f:spec"]


def test_conflicts_with_several_managers_are_grouped() -> None:
    live = stored(deployment())
    record_update(None, live, manager="kubectl-client-side-apply", api_version="apps/v1", schema=DEPLOYMENT, scope=Scope.MAIN)
    live = stored(do_apply(stored(live), {**deployment(), "spec": {"paused": True}}, "pauser", force=True))
    with pytest.raises(errors.StatusError) as e:
        do_apply(live, deployment(replicas=5, image="nginx:2", paused=False), "new")
    assert e.value.message == (
        "Apply failed with 3 conflicts: "
        'conflicts with "kubectl-client-side-apply" using apps/v1:\n'
        "- .spec.replicas\n"
        '- .spec.template.spec.containers[name="web"].image\n'
        'conflicts with "pauser":\n'
        "- .spec.paused"
    )


def test_shared_ownership_and_pruning() -> None:
    obj = stored(do_apply(None, configmap({"a": "1", "b": "2"}), "one", schema=CONFIGMAP, scope=Scope.WHOLE))
    obj = stored(do_apply(obj, configmap({"a": "1"}), "two", schema=CONFIGMAP, scope=Scope.WHOLE))  # same value: no conflict
    obj = stored(do_apply(obj, configmap({}), "one", schema=CONFIGMAP, scope=Scope.WHOLE))
    assert obj["data"] == {"a": "1"}  # b pruned, a still owned by "two"
    assert entries(obj) == [("two", "Apply", {"f:data": {"f:a": {}}})]


def test_noop_apply_changes_nothing() -> None:
    obj = stored(do_apply(None, configmap({"a": "1"}), "one", schema=CONFIGMAP, scope=Scope.WHOLE))
    obj["metadata"]["managedFields"][0]["time"] = "2020-01-01T00:00:00Z"
    assert do_apply(obj, configmap({"a": "1"}), "one", schema=CONFIGMAP, scope=Scope.WHOLE) == obj
    again = do_apply(obj, configmap({"a": "1"}), "two", schema=CONFIGMAP, scope=Scope.WHOLE)
    assert [e.get("time") != "2020-01-01T00:00:00Z" for e in again["metadata"]["managedFields"]] == [False, True]


def test_kubectl_takes_over_client_side_apply_fields() -> None:
    config = deployment()
    live = copy.deepcopy(config)
    live["metadata"]["annotations"] = {"kubectl.kubernetes.io/last-applied-configuration": json.dumps(config)}
    record_update(None, live, manager="kubectl-client-side-apply", api_version="apps/v1", schema=DEPLOYMENT, scope=Scope.MAIN)
    live = stored(live)
    changed = deployment(replicas=4)
    with pytest.raises(errors.StatusError):
        do_apply(live, changed, "someone-else")
    applied = do_apply(live, changed)  # replicas still holds its last-applied value: allowed
    assert applied["spec"]["replicas"] == 4
    assert json.loads(applied["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]) == changed
    live["spec"]["replicas"] = 7  # changed since by someone else: a real conflict
    with pytest.raises(errors.StatusError, match="conflict"):
        do_apply(live, changed)


def test_apply_rejects_bad_configurations() -> None:
    cases = [
        ({**deployment(), "kind": "ReplicaSet"}, "invalid object type: apps/v1, Kind=ReplicaSet"),
        ({"metadata": {"name": "web"}}, "invalid object type: /, Kind="),
        ({**deployment(), "metadata": {"name": "web", "managedFields": []}}, "metadata.managedFields must be nil"),
        ({**deployment(), "spec": {"bogus": 1}},
         "failed to create typed patch object (default/web; apps/v1, Kind=Deployment): .spec.bogus: field not declared in schema"),
    ]
    for config, message in cases:
        with pytest.raises(errors.StatusError) as e:
            apply(None, config, manager="m", api_version="apps/v1", kind="Deployment", schema=DEPLOYMENT, scope=Scope.MAIN, force=False)
        assert (e.value.code, e.value.message) == (400, message)


def test_apply_to_status_subresource_only_touches_status() -> None:
    live = stored(do_apply(None, deployment()))
    config = {**deployment(replicas=9), "status": {"replicas": 1}}
    out = apply(live, config, manager="ctrl", api_version="apps/v1", kind="Deployment", schema=DEPLOYMENT,
                scope=Scope.STATUS, force=False, subresource="status")
    assert out["spec"]["replicas"] == 2 and out["status"] == {"replicas": 1}
    status_entry = next(e for e in out["metadata"]["managedFields"] if e["manager"] == "ctrl")
    assert status_entry["subresource"] == "status" and status_entry["fieldsV1"] == {"f:status": {"f:replicas": {}}}


def test_manager_names_and_patch_options() -> None:
    assert manager_from_user_agent("kubectl/v1.32.4 (linux/amd64) kubernetes/abc") == "kubectl"
    assert manager_from_user_agent("OpenAPI-Generator/37.0.2/python") == "OpenAPI-Generator"
    assert manager_from_user_agent("a\x01b" + "x" * 300) == "ab" + "x" * 126
    validate_options("PatchOptions", "kubectl", apply=True, force=False)
    validate_options("CreateOptions", "")
    for manager, is_apply, force, message in (
        ("", True, None, 'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch'),
        ("m", False, True, 'PatchOptions.meta.k8s.io "" is invalid: force: Forbidden: may not be specified for non-apply patch'),
        ("x" * 129, True, None, 'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Too long: may not be more than 128 bytes'),
    ):
        with pytest.raises(errors.StatusError) as e:
            validate_options("PatchOptions", manager, apply=is_apply, force=force)
        assert (e.value.code, e.value.message) == (422, message)
    with pytest.raises(errors.StatusError) as e:
        validate_options("CreateOptions", "a\x07b")
    assert e.value.message == 'CreateOptions.meta.k8s.io "" is invalid: fieldManager: Invalid value: "a\\ab": invalid character U+0007 (at position 1)'


# ---- the create fast path -------------------------------------------------------------------------

POD = schemas.for_kind("", "v1", "Pod")
CRD_SCHEMA = typeschema.type_schema(
    {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "size": {"type": "integer"},
                    "ports": {
                        "type": "array",
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["port", "protocol"],
                        "items": {
                            "type": "object",
                            "properties": {
                                "port": {"type": "integer"},
                                "protocol": {"type": "string", "default": "TCP"},
                                "name": {"type": "string"},
                            },
                        },
                    },
                    "members": {
                        "type": "array",
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["name"],
                        "items": {"type": "object", "properties": {"name": {"type": "string"}, "tags": {"type": "object", "additionalProperties": {"type": "string"}}}},
                    },
                    "flags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
                    "args": {"type": "array", "items": {"type": "string"}},
                    "selector": {"type": "object", "x-kubernetes-map-type": "atomic", "properties": {"app": {"type": "string"}}},
                    "raw": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                },
            },
            "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
        },
    },
    "example.com", "v1", "Widget",
)


def bench_pod() -> dict[str, Any]:
    """The benchmark's pod after defaulting, as the generic store records it."""
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "bench-00001", "labels": {"app": "bench", "i": "1"}, "namespace": "default",
                     "uid": "0301307a-7b92-44f1-9f85-9ea57a13e37f", "creationTimestamp": "2026-11-26T00:46:16Z"},
        "spec": {
            "containers": [{
                "name": "c", "image": "registry.k8s.io/pause:3.10",
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                "env": [{"name": f"E{k}", "value": "x" * 40} for k in range(10)],
                "imagePullPolicy": "IfNotPresent", "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
            }],
            "dnsPolicy": "ClusterFirst", "restartPolicy": "Always", "securityContext": {},
            "terminationGracePeriodSeconds": 30, "schedulerName": "default-scheduler", "enableServiceLinks": True,
        },
        "status": {"phase": "Pending", "qosClass": "Burstable"},
    }


def busy_pod() -> dict[str, Any]:
    pod = bench_pod()
    spec = pod["spec"]
    spec["initContainers"] = [{"name": "init", "image": "busybox", "command": ["sh", "-c", "true"]}]
    spec["containers"] += [
        {"name": "web", "image": "nginx", "ports": [{"containerPort": 80}, {"containerPort": 53, "protocol": "UDP"},
                                                    {"containerPort": 80}],
         "env": [{"name": "Z", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}, {"name": "A", "value": ""},
                 {"name": "<&>\"é", "value": "1"}, {"name": "A", "value": "dup"}],
         "volumeMounts": [{"name": "data", "mountPath": "/data"}, {"name": "cfg", "mountPath": "/etc/cfg", "readOnly": True}],
         "securityContext": {"capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]}}},
        {"name": "B", "image": "x", "args": []},
    ]
    spec["volumes"] = [
        {"name": "data", "emptyDir": {}},
        {"name": "cfg", "configMap": {"name": "cfg", "items": [{"key": "a", "path": "a"}], "defaultMode": 420}},
        {"name": "proj", "projected": {"sources": [{"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                                                   {"downwardAPI": {"items": [{"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}]}},
    ]
    spec["tolerations"] = [{"key": "k", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]
    spec["imagePullSecrets"] = [{"name": "regcred"}, {}]
    spec["hostAliases"] = [{"ip": "10.0.0.1", "hostnames": ["a", "b"]}]
    spec["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}}
    spec["topologySpreadConstraints"] = [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}]
    spec["schedulingGates"] = [{"name": "gate"}]
    spec["nodeSelector"] = {"disk": "ssd"}
    pod["metadata"].update(
        annotations={"a": "1", "": "empty"}, finalizers=["x/b", "x/a", "x/b"],
        ownerReferences=[{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u1", "controller": True}],
        generateName="bench-", resourceVersion="5", generation=3, managedFields=[],
    )
    return pod


def service() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "default"},
            "spec": {"ports": [{"port": 443, "targetPort": 8443, "name": "https"}, {"port": 53, "protocol": "UDP"}],
                     "selector": {"app": "web"}, "clusterIPs": ["10.96.0.10"], "ipFamilies": ["IPv4"]},
            "status": {"loadBalancer": {}}}


def widget() -> dict[str, Any]:
    return {"apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w", "namespace": "default", "labels": {"x": "y"}},
            "spec": {"size": 3, "ports": [{"port": 80}, {"port": 80, "protocol": "UDP", "name": "u"}],
                     "members": [{"name": "b", "tags": {"t": "1"}}, {"name": "a"}], "flags": ["x", "y", "x"],
                     "args": ["-v"], "selector": {"app": "a"}, "raw": {"any": {"thing": [1, {"x": None}]}},
                     "unknown": {"deduced": True}},
            "status": {"ready": True}}


def create_cases() -> list[tuple[str, dict[str, Any], dict[str, Any] | None, Scope]]:
    wrong = bench_pod()
    wrong["spec"]["containers"].append({"image": "no-name"})  # a map-list item without its key
    null_item = bench_pod()
    null_item["spec"]["containers"].append(None)
    odd_keys = widget()
    odd_keys["spec"]["ports"] = [{"port": True}, {"port": None}, {"port": 1.5}, {"port": "80"}]
    odd_members = widget()
    odd_members["spec"]["members"] = [{"name": 1}, {"name": "1"}, {"name": "b"}, {"name": 0}]
    requested = bench_pod()
    requested["metadata"]["managedFields"] = [{"manager": "mine", "operation": "Update", "apiVersion": "v1",
                                               "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:dnsPolicy": {}}}}]
    reset = bench_pod()
    reset["metadata"]["managedFields"] = [{}]
    bare = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": "default"}}
    return [
        ("bench pod", bench_pod(), POD, Scope.MAIN),
        ("busy pod", busy_pod(), POD, Scope.MAIN),
        ("pod, whole", busy_pod(), POD, Scope.WHOLE),
        ("deployment", {**deployment(strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}}),
                        "status": {"replicas": 1}}, DEPLOYMENT, Scope.MAIN),
        ("service", service(), SERVICE, Scope.MAIN),
        ("configmap", configmap({"b": "2", "a": "1"}, annotations={"k": "v"}, finalizers=["f"]), CONFIGMAP, Scope.WHOLE),
        ("bare configmap", bare, CONFIGMAP, Scope.WHOLE),
        ("empty metadata", {**bare, "metadata": {}}, CONFIGMAP, Scope.WHOLE),
        ("custom resource", widget(), CRD_SCHEMA, Scope.MAIN),
        ("custom resource, whole", widget(), CRD_SCHEMA, Scope.WHOLE),
        ("odd keys", odd_keys, CRD_SCHEMA, Scope.MAIN),
        ("odd members", odd_members, CRD_SCHEMA, Scope.MAIN),
        ("untyped", widget(), None, Scope.WHOLE),
        ("item without its key", wrong, POD, Scope.MAIN),
        ("null item", null_item, POD, Scope.MAIN),
        ("requested managedFields", requested, POD, Scope.MAIN),
        ("reset managedFields", reset, POD, Scope.MAIN),
    ]


def general_created(obj: dict[str, Any], t: typed.Type, scope: Scope) -> dict[str, Any]:
    """What the general walk records for a create: the view, its field set, the stripped paths removed."""
    return fp.difference(typed.created(fm_manager._view(obj, scope), t), fm_manager._STRIPPED)  # noqa: SLF001


def fast_created(obj: dict[str, Any], t: typed.Type, scope: Scope) -> dict[str, Any] | None:
    omit = fm_manager._CREATE_OMIT[scope]  # noqa: SLF001
    return typed.created_fields(obj, t, omit, "metadata", fm_manager._STRIPPED_META)  # noqa: SLF001


def same_outcome(obj: dict[str, Any], t: typed.Type, scope: Scope) -> None:
    """The fast walk gives byte for byte the general walk's set, or fails as it does."""
    try:
        expected: Any = orjson.dumps(general_created(obj, t, scope))
    except ValueError as e:
        expected = type(e)
    try:
        got = fast_created(obj, t, scope)
        assert got is not None
        actual: Any = orjson.dumps(got)
    except ValueError as e:
        actual = type(e)
    assert actual == expected


@pytest.mark.parametrize("case", create_cases(), ids=lambda c: c[0])
def test_create_fast_path_records_what_the_general_path_records(
    case: tuple[str, dict[str, Any], dict[str, Any] | None, Scope], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, obj, schema, scope = case
    monkeypatch.setattr(objmeta, "now", lambda: "2026-11-26T00:00:00Z")
    same_outcome(obj, typed.compile_schema(schema), scope)
    fast, general = copy.deepcopy(obj), copy.deepcopy(obj)
    record_update(None, fast, manager="m", api_version=obj["apiVersion"], schema=schema, scope=scope)
    monkeypatch.setattr(fm_manager, "_record_create", lambda *args: False)
    record_update(None, general, manager="m", api_version=obj["apiVersion"], schema=schema, scope=scope)
    assert orjson.dumps(fast) == orjson.dumps(general)


def test_create_fast_path_on_generated_objects() -> None:
    """Objects drawn at random from the schemas of several kinds (and a CRD's): every list and map
    type, nulls and empty values, duplicate and missing keys, keys of every JSON type."""
    rng = random.Random(1)
    kinds = [("", "v1", "Pod"), ("apps", "v1", "Deployment"), ("apps", "v1", "StatefulSet"), ("", "v1", "Service"),
             ("batch", "v1", "CronJob"), ("", "v1", "ConfigMap"), ("networking.k8s.io", "v1", "NetworkPolicy")]
    for schema in [schemas.for_kind(*k) for k in kinds] + [CRD_SCHEMA, None]:
        t = typed.compile_schema(schema)
        for _ in range(40):
            obj = generate(t, rng, 0)
            obj.update(apiVersion="v1", kind="X")
            for scope in (Scope.MAIN, Scope.WHOLE):
                same_outcome(obj, t, scope)


def generate(t: typed.Type, rng: random.Random, depth: int) -> Any:
    """A random value of type `t`."""
    roll = rng.random()
    if depth > 1 and roll < 0.05:
        return None
    if depth > 6 or t.kind == typed.SCALAR:
        return rng.choice(["a", "b", "", "<x>", 0, 7, 1.5, True, False])
    if t.kind == typed.STRUCT:
        names = sorted(t._props)  # noqa: SLF001
        chosen = rng.sample(names, min(len(names), rng.randint(0, 6))) if depth else names
        out = {name: generate(t.child(name), rng, depth + 1) for name in chosen}
        if rng.random() < 0.1:
            out["undeclared"] = {"x": [1]}
        return out
    if t.kind == typed.MAP:
        return {rng.choice(["k", "a", "z", "é", "<"]): generate(t.elem(), rng, depth + 1) for _ in range(rng.randint(0, 3))}
    if t.kind == typed.LIST:
        items = []
        for _ in range(rng.randint(0, 4)):
            item = generate(t.elem(), rng, depth + 1)
            if t.list_type == typed.ASSOCIATIVE and isinstance(item, dict) and rng.random() < 0.9:
                for k in t.keys:
                    if rng.random() < 0.9:
                        item[k] = rng.choice(["a", "b", "c", "<", 'q"', 80, 443, "80"] + ([None, True] if rng.random() < 0.1 else []))
            items.append(item)
        if items and rng.random() < 0.2:
            items.append(copy.deepcopy(items[0]))  # a duplicate
        return items
    if depth == 0:  # an untyped object
        return {"metadata": {"name": "n", "labels": {"a": "b"}}, "spec": generate(t, rng, 1), "status": {"x": [1]}}
    return rng.choice([{"a": {"b": [1, 2]}, "c": None}, [1, {"x": 2}], "s", 3, {}, {"d": {"e": {}}}])


def test_creates_of_one_shape_share_their_field_set() -> None:
    a, b, c = bench_pod(), bench_pod(), bench_pod()
    b["metadata"]["labels"]["i"] = "2"  # another value: the same fields
    c["metadata"]["labels"]["j"] = "3"
    for obj in (a, b, c):
        record_update(None, obj, manager="m", api_version="v1", schema=POD, scope=Scope.MAIN)
    fields = [obj["metadata"]["managedFields"][0]["fieldsV1"] for obj in (a, b, c)]
    assert fields[0] is fields[1] and fields[2] is not fields[0]
    assert fields[2]["f:metadata"]["f:labels"] == {".": {}, "f:app": {}, "f:i": {}, "f:j": {}}
