"""JSON patch, merge patch and strategic merge patch, in the shapes kubectl sends."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest

from k8py.api import schema
from k8py.api.errors import StatusError
from k8py.api.patch import (
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_MERGE_PATCH,
    PatchFailure,
    apply_patch,
    json_patch,
    merge_patch,
    strategic_merge_patch,
)

DEPLOYMENT = schema.for_kind("apps", "v1", "Deployment")
POD = schema.for_kind("", "v1", "Pod")
SERVICE = schema.for_kind("", "v1", "Service")
PDB = schema.for_kind("policy", "v1", "PodDisruptionBudget")

GENERIC_INVALID = "the server rejected our request due to an error in our request"


def deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "labels": {"app": "web", "tier": "frontend"},
            "annotations": {"deployment.kubernetes.io/revision": "1"},
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
            },
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "nginx",
                            "image": "nginx:1.25",
                            "ports": [{"containerPort": 80, "protocol": "TCP"}],
                            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                            "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}},
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                        },
                        {"name": "sidecar", "image": "busybox:1.36", "args": ["sleep", "3600"]},
                    ],
                    "volumes": [
                        {"name": "data", "emptyDir": {}},
                        {"name": "conf", "configMap": {"name": "cfg"}},
                    ],
                    "tolerations": [{"key": "a", "operator": "Exists"}, {"key": "b", "operator": "Exists"}],
                },
            },
        },
        "status": {"replicas": 2},
    }


def pod_spec(d: dict[str, Any]) -> dict[str, Any]:
    return d["spec"]["template"]["spec"]


def containers(d: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in pod_spec(d)["containers"]}


def names(items: list[dict[str, Any]], key: str = "name") -> list[Any]:
    return [i[key] for i in items]


def assert_no_directives(value: Any) -> None:
    if isinstance(value, dict):
        assert not [k for k in value if k.startswith("$")], value
        for v in value.values():
            assert_no_directives(v)
    elif isinstance(value, list):
        for v in value:
            assert_no_directives(v)


def smp(doc: dict[str, Any], patch: dict[str, Any], kind_schema: Any = DEPLOYMENT) -> dict[str, Any]:
    """Apply, checking the inputs are left alone and no directive survives."""
    doc_before, patch_before = copy.deepcopy(doc), copy.deepcopy(patch)
    out = strategic_merge_patch(doc, patch, kind_schema)
    assert doc == doc_before and patch == patch_before
    assert_no_directives(out)
    return out


def template_patch(spec: dict[str, Any]) -> dict[str, Any]:
    return {"spec": {"template": {"spec": spec}}}


# --- JSON patch ------------------------------------------------------------------------------------


def test_json_patch_operations() -> None:
    doc = deployment()
    before = copy.deepcopy(doc)
    ops = [
        {"op": "test", "path": "/metadata/labels/app", "value": "web"},
        {"op": "replace", "path": "/spec/replicas", "value": 5},
        {"op": "add", "path": "/metadata/annotations/example.com~1owner", "value": "team-a"},
        {"op": "add", "path": "/metadata/annotations/a~0b", "value": "tilde"},
        {"op": "remove", "path": "/metadata/labels/tier"},
        {"op": "add", "path": "/spec/template/spec/containers/0/env/-", "value": {"name": "C", "value": "3"}},
        {"op": "add", "path": "/spec/template/spec/containers/0/env/0", "value": {"name": "Z"}},
        {"op": "copy", "from": "/metadata/labels", "path": "/spec/template/metadata/labels"},
        {
            "op": "move",
            "from": "/spec/template/spec/containers/1",
            "path": "/spec/template/spec/containers/0",
        },
        {"op": "remove", "path": "/spec/template/spec/tolerations/-1"},
    ]
    out = json_patch(doc, ops)
    assert doc == before
    assert out["spec"]["replicas"] == 5
    assert out["metadata"]["annotations"]["example.com/owner"] == "team-a"
    assert out["metadata"]["annotations"]["a~b"] == "tilde"
    assert out["metadata"]["labels"] == {"app": "web"}
    assert names(pod_spec(out)["containers"]) == ["sidecar", "nginx"]
    assert names(pod_spec(out)["containers"][1]["env"]) == ["Z", "A", "B", "C"]
    assert pod_spec(out)["tolerations"] == [{"key": "a", "operator": "Exists"}]
    out["spec"]["template"]["metadata"]["labels"]["x"] = "y"  # the copy is deep
    assert "x" not in out["metadata"]["labels"]


def test_json_patch_values_are_not_aliased() -> None:
    value = {"name": "C", "value": "3"}
    out = json_patch(
        deployment(), [{"op": "add", "path": "/spec/template/spec/containers/0/env/-", "value": value}]
    )
    pod_spec(out)["containers"][0]["env"][-1]["value"] = "changed"
    assert value == {"name": "C", "value": "3"}


def test_json_patch_evanphx_quirks() -> None:
    # replace of a missing object member adds it; test of a missing member against null passes;
    # replace "" swaps the whole document; negative indices count from the end.
    out = json_patch(
        deployment(),
        [
            {"op": "replace", "path": "/metadata/labels/new", "value": "x"},
            {"op": "test", "path": "/metadata/labels/absent", "value": None},
            {"op": "add", "path": "/spec/template/spec/volumes/-2", "value": {"name": "v"}},
        ],
    )
    assert out["metadata"]["labels"]["new"] == "x"
    assert names(pod_spec(out)["volumes"]) == ["data", "v", "conf"]
    assert json_patch(deployment(), [{"op": "replace", "path": "", "value": {"kind": "X"}}]) == {"kind": "X"}


@pytest.mark.parametrize(
    ("op", "cause"),
    [
        (
            {"op": "test", "path": "/metadata/labels/app", "value": "db"},
            "testing value /metadata/labels/app failed: test failed",
        ),
        (
            {"op": "test", "path": "/spec/replicas", "value": "2"},
            "testing value /spec/replicas failed: test failed",
        ),
        (
            {"op": "remove", "path": "/metadata/labels/nope"},
            "error in remove for path: '/metadata/labels/nope': Unable to remove nonexistent key: nope: missing value",
        ),
        (
            {"op": "add", "path": "/spec/missing/x", "value": 1},
            'add operation does not apply: doc is missing path: "/spec/missing/x": missing value',
        ),
        (
            {"op": "replace", "path": "/spec/template/spec/containers/7", "value": {}},
            "replace operation does not apply: doc is missing key: /spec/template/spec/containers/7: missing value",
        ),
        (
            {"op": "add", "path": "/spec/template/spec/containers/9", "value": {}},
            "error in add for path: '/spec/template/spec/containers/9': "
            "Unable to access invalid index: 9: invalid index referenced",
        ),
        (
            {"op": "add", "path": "/spec/template/spec/containers/x", "value": {}},
            "error in add for path: '/spec/template/spec/containers/x': "
            "value was not a proper array index: 'x': strconv.Atoi: parsing \"x\": invalid syntax",
        ),
        (
            {"op": "move", "from": "/metadata/nope", "path": "/metadata/x"},
            "error in move for path: 'nope': Unable to remove nonexistent key: nope: missing value",
        ),
        ({"op": "frobnicate", "path": "/a"}, "Unexpected kind: frobnicate"),
        ({"path": "/a"}, "Unexpected kind: unknown"),
        ({"op": "add", "value": 1}, "add operation failed to decode path: missing value"),
        (
            {"op": "remove", "path": "metadata/labels"},
            'remove operation does not apply: doc is missing path: "metadata/labels": missing value',
        ),
    ],
)
def test_json_patch_failures_are_generic_422(op: dict[str, Any], cause: str) -> None:
    with pytest.raises(StatusError) as err:
        json_patch(deployment(), [op])
    assert (err.value.code, err.value.reason, err.value.message) == (422, "Invalid", GENERIC_INVALID)
    assert err.value.status()["details"] == {}
    assert isinstance(err.value.__cause__, PatchFailure)
    assert str(err.value.__cause__) == cause


def test_json_patch_failure_leaves_nothing_half_applied() -> None:
    doc = deployment()
    with pytest.raises(StatusError):
        json_patch(
            doc, [{"op": "remove", "path": "/metadata/labels"}, {"op": "test", "path": "/x", "value": 1}]
        )
    assert doc == deployment()


def test_json_patch_too_many_operations() -> None:
    ops = [{"op": "test", "path": "/kind", "value": "Deployment"}] * 10001
    with pytest.raises(StatusError) as err:
        json_patch(deployment(), ops)
    assert err.value.code == 413
    assert err.value.message.endswith("The allowed maximum operations in a JSON patch is 10000, got 10001")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"op": "add"}', "json: cannot unmarshal object into Go value of type jsonpatch.Patch"),
        (b'["add"]', "json: cannot unmarshal string into Go value of type jsonpatch.Operation"),
        (b"[{", None),
    ],
)
def test_json_patch_body_decode_errors(body: bytes, message: str | None) -> None:
    with pytest.raises(StatusError) as err:
        apply_patch(deployment(), body, JSON_PATCH, DEPLOYMENT)
    assert (err.value.code, err.value.reason) == (400, "BadRequest")
    if message:
        assert err.value.message == message


def test_json_patch_null_body_is_a_no_op() -> None:
    assert apply_patch(deployment(), b"null", JSON_PATCH, DEPLOYMENT) == deployment()


# --- merge patch ------------------------------------------------------------------------------------


def test_merge_patch_label_and_annotate() -> None:
    doc = deployment()
    patch = {"metadata": {"labels": {"tier": None, "env": "prod"}, "annotations": {"note": "hi"}}}
    out = merge_patch(doc, patch)
    assert doc == deployment()
    assert out["metadata"]["labels"] == {"app": "web", "env": "prod"}
    assert out["metadata"]["annotations"] == {"deployment.kubernetes.io/revision": "1", "note": "hi"}


def test_merge_patch_replaces_lists_and_prunes_nulls() -> None:
    out = merge_patch(
        deployment(),
        {
            "spec": {
                "replicas": 3,
                "strategy": None,
                "template": {"spec": {"containers": [{"name": "only", "image": "x", "command": None}]}},
                "paused": {"reason": None, "by": "me"},
            }
        },
    )
    assert out["spec"]["replicas"] == 3
    assert "strategy" not in out["spec"]
    assert pod_spec(out)["containers"] == [{"name": "only", "image": "x"}]
    assert out["spec"]["paused"] == {"by": "me"}
    assert pod_spec(out)["volumes"] == pod_spec(deployment())["volumes"]


def test_merge_patch_replaces_scalar_with_object_and_back() -> None:
    out = merge_patch({"a": 1, "b": {"c": 1}}, {"a": {"x": 1, "y": None}, "b": "s"})
    assert out == {"a": {"x": 1}, "b": "s"}


@pytest.mark.parametrize("body", [b"[1]", b'"x"', b"null", b"{", b""])
def test_merge_patch_body_not_an_object(body: bytes) -> None:
    with pytest.raises(StatusError) as err:
        apply_patch(deployment(), body, MERGE_PATCH, DEPLOYMENT)
    assert (err.value.code, err.value.reason, err.value.message) == (400, "BadRequest", "Invalid JSON Patch")


# --- strategic merge patch: plain merging ----------------------------------------------------------


def test_set_image_merges_container_by_name() -> None:
    out = smp(deployment(), template_patch({"containers": [{"name": "nginx", "image": "nginx:1.26"}]}))
    nginx = containers(out)["nginx"]
    assert nginx["image"] == "nginx:1.26"
    assert nginx["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    assert names(pod_spec(out)["containers"]) == ["nginx", "sidecar"]


def test_new_list_item_goes_first_without_set_element_order() -> None:
    # Upstream's mergeSortedSlice puts patch items the server has not seen ahead of server-only items.
    out = smp(deployment(), template_patch({"containers": [{"name": "log", "image": "fluentbit"}]}))
    assert names(pod_spec(out)["containers"]) == ["log", "nginx", "sidecar"]


def test_patch_items_keep_patch_order_among_server_items() -> None:
    patch = template_patch(
        {"containers": [{"name": "sidecar", "image": "b:2"}, {"name": "nginx", "image": "n:2"}]}
    )
    out = smp(deployment(), patch)
    assert names(pod_spec(out)["containers"]) == ["sidecar", "nginx"]


def test_nested_lists_merge_by_their_own_keys() -> None:
    patch = template_patch(
        {
            "containers": [
                {
                    "name": "nginx",
                    "env": [{"name": "B", "value": "two"}],
                    "ports": [{"containerPort": 443, "protocol": "TCP"}],
                    "volumeMounts": [
                        {"mountPath": "/data", "readOnly": True},
                        {"name": "conf", "mountPath": "/etc/c"},
                    ],
                    "resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "100m"}},
                }
            ],
            "volumes": [{"name": "conf", "configMap": {"name": "cfg2"}}],
        }
    )
    out = smp(deployment(), patch)
    nginx = containers(out)["nginx"]
    assert nginx["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "two"}]
    assert names(nginx["ports"], "containerPort") == [443, 80]
    assert nginx["volumeMounts"] == [
        {"name": "data", "mountPath": "/data", "readOnly": True},
        {"name": "conf", "mountPath": "/etc/c"},
    ]
    assert nginx["resources"] == {"limits": {"cpu": "1", "memory": "128Mi"}, "requests": {"cpu": "100m"}}
    assert pod_spec(out)["volumes"][1] == {"name": "conf", "configMap": {"name": "cfg2"}}


def test_atomic_lists_are_replaced() -> None:
    patch = template_patch(
        {
            "tolerations": [{"key": "c", "operator": "Exists"}],
            "containers": [{"name": "sidecar", "args": ["sleep", "10"]}],
        }
    )
    out = smp(deployment(), patch)
    assert pod_spec(out)["tolerations"] == [{"key": "c", "operator": "Exists"}]
    assert containers(out)["sidecar"]["args"] == ["sleep", "10"]


def test_list_map_without_patch_strategy_is_replaced() -> None:
    # resources.claims is x-kubernetes-list-type=map keyed by name, but has no patchStrategy.
    doc = deployment()
    containers(doc)["nginx"]["resources"]["claims"] = [{"name": "gpu"}, {"name": "fpga"}]
    patch = template_patch({"containers": [{"name": "nginx", "resources": {"claims": [{"name": "tpu"}]}}]})
    out = smp(doc, patch)
    assert containers(out)["nginx"]["resources"]["claims"] == [{"name": "tpu"}]


def test_service_ports_merge_by_port() -> None:
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {
            "selector": {"app": "web"},
            "ports": [
                {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
                {"name": "https", "port": 443, "targetPort": 8443, "protocol": "TCP"},
            ],
        },
    }
    out = smp(
        svc, {"spec": {"ports": [{"port": 80, "targetPort": 9090}, {"port": 8081, "name": "m"}]}}, SERVICE
    )
    assert out["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": 9090, "protocol": "TCP"},
        {"port": 8081, "name": "m"},
        {"name": "https", "port": 443, "targetPort": 8443, "protocol": "TCP"},
    ]
    out = smp(
        svc, {"spec": {"ports": [{"port": 443, "$patch": "delete"}], "selector": {"app": None}}}, SERVICE
    )
    assert names(out["spec"]["ports"], "port") == [80]
    assert out["spec"]["selector"] == {}


def test_maps_merge_and_null_deletes() -> None:
    patch = {
        "metadata": {"labels": {"tier": None, "env": "prod"}, "annotations": None},
        "spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "now"}}}},
    }
    out = smp(deployment(), patch)
    assert out["metadata"]["labels"] == {"app": "web", "env": "prod"}
    assert "annotations" not in out["metadata"]
    assert out["spec"]["template"]["metadata"] == {
        "labels": {"app": "web"},
        "annotations": {"kubectl.kubernetes.io/restartedAt": "now"},
    }


def test_patch_strategy_replace_on_a_map() -> None:
    pdb = {"spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}, "matchExpressions": []}}}
    out = smp(pdb, {"spec": {"selector": {"matchLabels": {"app": "db"}}}}, PDB)
    assert out["spec"] == {"minAvailable": 1, "selector": {"matchLabels": {"app": "db"}}}


def test_type_change_replaces_the_value() -> None:
    out = smp(deployment(), {"spec": {"replicas": "3", "selector": ["x"]}})
    assert out["spec"]["replicas"] == "3" and out["spec"]["selector"] == ["x"]


def test_unknown_fields_and_unknown_kinds_merge_like_merge_patch() -> None:
    doc = {"spec": {"group": {"items": [{"name": "a", "v": 1}], "keep": 1}, "x": 1}, "status": {"n": 1}}
    patch = {"spec": {"group": {"items": [{"name": "b", "v": None}], "new": {"k": None, "j": 2}}, "x": None}}
    expected = {"spec": {"group": {"items": [{"name": "b"}], "keep": 1, "new": {"j": 2}}}, "status": {"n": 1}}
    assert smp(doc, patch, None) == expected
    with_unknown = deployment()
    with_unknown["spec"]["extra"] = doc["spec"]
    out = smp(with_unknown, {"spec": {"extra": patch["spec"]}})
    assert out["spec"]["extra"] == expected["spec"]


def test_directives_still_apply_without_a_schema() -> None:
    doc = {"spec": {"a": {"x": 1, "y": 2}, "b": {"k": 1}}}
    out = smp(doc, {"spec": {"a": {"$retainKeys": ["x"], "x": 3}, "b": {"$patch": "replace", "n": 1}}}, None)
    assert out == {"spec": {"a": {"x": 3}, "b": {"n": 1}}}


def test_values_new_to_the_object_have_their_directives_applied() -> None:
    # A patch for a key the original lacks is taken after its own directives are applied.
    doc = deployment()
    del doc["spec"]["strategy"]
    del pod_spec(doc)["volumes"]
    patch = {
        "spec": {
            "strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": None},
            "template": {
                "spec": {
                    "volumes": [
                        {"name": "gone", "$patch": "delete"},
                        {"name": "v", "emptyDir": {"medium": None}},
                    ],
                    "containers": [
                        {
                            "name": "new",
                            "image": "x",
                            "$setElementOrder/env": [{"name": "E"}],
                            "env": [{"name": "E"}],
                        }
                    ],
                }
            },
        }
    }
    out = smp(doc, patch)
    assert out["spec"]["strategy"] == {"type": "Recreate"}
    assert pod_spec(out)["volumes"] == [{"name": "v", "emptyDir": {}}]
    assert containers(out)["new"] == {"name": "new", "image": "x", "env": [{"name": "E"}]}


# --- strategic merge patch: directives -------------------------------------------------------------


def test_kubectl_apply_three_way_patch() -> None:
    # live has nginx+sidecar; the applied manifest drops sidecar, adds "log", reorders env and drops B.
    patch = template_patch(
        {
            "$setElementOrder/containers": [{"name": "log"}, {"name": "nginx"}],
            "containers": [
                {"name": "log", "image": "fluentbit:3"},
                {
                    "name": "nginx",
                    "$setElementOrder/env": [{"name": "C"}, {"name": "A"}],
                    "env": [{"name": "C", "value": "3"}, {"name": "B", "$patch": "delete"}],
                },
                {"name": "sidecar", "$patch": "delete"},
            ],
        }
    )
    out = smp(deployment(), patch)
    assert names(pod_spec(out)["containers"]) == ["log", "nginx"]
    assert containers(out)["nginx"]["env"] == [{"name": "C", "value": "3"}, {"name": "A", "value": "1"}]
    assert containers(out)["nginx"]["image"] == "nginx:1.25"


def test_set_element_order_keeps_server_only_items_in_place() -> None:
    doc = deployment()
    pod_spec(doc)["containers"].insert(1, {"name": "injected", "image": "mesh-proxy"})
    patch = template_patch(
        {
            "$setElementOrder/containers": [{"name": "nginx"}, {"name": "sidecar"}, {"name": "extra"}],
            "containers": [{"name": "extra", "image": "e"}],
        }
    )
    out = smp(doc, patch)
    assert names(pod_spec(out)["containers"]) == ["nginx", "injected", "sidecar", "extra"]


def test_set_element_order_alone_reorders() -> None:
    out = smp(
        deployment(), template_patch({"$setElementOrder/volumes": [{"name": "conf"}, {"name": "data"}]})
    )
    assert names(pod_spec(out)["volumes"]) == ["conf", "data"]


def test_set_element_order_may_name_items_that_do_not_exist() -> None:
    patch = template_patch(
        {"$setElementOrder/volumes": [{"name": "ghost"}, {"name": "conf"}, {"name": "data"}]}
    )
    assert names(pod_spec(smp(deployment(), patch))["volumes"]) == ["conf", "data"]


def test_set_element_order_on_a_list_the_original_lacks() -> None:
    doc = deployment()
    del containers(doc)["sidecar"]["args"]
    patch = template_patch(
        {"containers": [{"name": "sidecar", "$setElementOrder/env": [{"name": "X"}], "env": [{"name": "X"}]}]}
    )
    assert containers(smp(doc, patch))["sidecar"]["env"] == [{"name": "X"}]


def test_finalizers_primitive_merge_list() -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "finalizers": ["a", "b", "x"]}}
    assert smp(pod, {"metadata": {"finalizers": ["c", "a"]}}, POD)["metadata"]["finalizers"] == [
        "c",
        "a",
        "b",
        "x",
    ]
    out = smp(pod, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["b", "zz"]}}, POD)
    assert out["metadata"]["finalizers"] == ["a", "x"]
    apply_shape = {
        "metadata": {
            "$deleteFromPrimitiveList/finalizers": ["b"],
            "$setElementOrder/finalizers": ["a", "c"],
            "finalizers": ["c"],
        }
    }
    assert smp(pod, apply_shape, POD)["metadata"]["finalizers"] == ["a", "c", "x"]
    # deleting from a list the object does not have changes nothing
    bare = {"metadata": {"name": "p"}}
    assert smp(bare, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}, POD) == bare


def test_retain_keys_on_deployment_strategy() -> None:
    patch = {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": None}}}
    assert smp(deployment(), patch)["spec"]["strategy"] == {"type": "Recreate"}
    # retained keys merge as usual
    patch = {
        "spec": {"strategy": {"$retainKeys": ["rollingUpdate", "type"], "rollingUpdate": {"maxSurge": 1}}}
    }
    assert smp(deployment(), patch)["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": "25%"},
    }


def test_retain_keys_in_volume_items() -> None:
    # kubectl apply switching a volume's source: volumes are "merge,retainKeys".
    patch = template_patch(
        {
            "$setElementOrder/volumes": [{"name": "data"}, {"name": "conf"}],
            "volumes": [{"name": "data", "$retainKeys": ["configMap", "name"], "configMap": {"name": "d"}}],
        }
    )
    assert pod_spec(smp(deployment(), patch))["volumes"][0] == {"name": "data", "configMap": {"name": "d"}}


def test_patch_replace_and_delete_on_maps() -> None:
    patch = template_patch(
        {"containers": [{"name": "nginx", "resources": {"$patch": "replace", "requests": {"cpu": "1"}}}]}
    )
    assert containers(smp(deployment(), patch))["nginx"]["resources"] == {"requests": {"cpu": "1"}}
    out = smp(
        deployment(), {"metadata": {"labels": {"$patch": "delete"}, "annotations": {"$patch": "delete"}}}
    )
    assert out["metadata"]["labels"] == {} and out["metadata"]["annotations"] == {}
    out = smp(deployment(), {"spec": {"paused": {"$patch": "delete"}}})
    assert "paused" not in out["spec"]
    assert smp(deployment(), {"$patch": "delete"}) == {}


def test_patch_replace_in_a_merging_list() -> None:
    patch = template_patch({"containers": [{"$patch": "replace"}, {"name": "solo", "image": "s"}]})
    assert pod_spec(smp(deployment(), patch))["containers"] == [{"name": "solo", "image": "s"}]
    patch = template_patch({"volumes": [{"$patch": "replace"}]})
    assert pod_spec(smp(deployment(), patch))["volumes"] == []


def test_directive_items_in_replaced_lists_are_dropped() -> None:
    patch = template_patch({"tolerations": [{"key": "c"}, {"key": "a", "$patch": "delete"}]})
    assert pod_spec(smp(deployment(), patch))["tolerations"] == [{"key": "c"}]


def test_merging_primitive_lists_and_status_conditions() -> None:
    node = schema.for_kind("", "v1", "Node")
    out = smp(
        {"spec": {"podCIDRs": ["10.0.0.0/24"]}}, {"spec": {"podCIDRs": ["10.0.0.0/24", "fd00::/64"]}}, node
    )
    assert out["spec"]["podCIDRs"] == ["10.0.0.0/24", "fd00::/64"]
    job = schema.for_kind("batch", "v1", "Job")
    status = {
        "status": {
            "conditions": [{"type": "Complete", "status": "False"}, {"type": "Failed", "status": "False"}]
        }
    }
    out = smp(status, {"status": {"conditions": [{"type": "Complete", "status": "True"}]}}, job)
    assert out["status"]["conditions"] == [
        {"type": "Complete", "status": "True"},
        {"type": "Failed", "status": "False"},
    ]


# --- strategic merge patch: errors -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("patch", "code", "message"),
    [
        (
            template_patch({"containers": [{"image": "nginx"}]}),
            400,
            "map: map[image:nginx] does not contain declared merge key: name",
        ),
        (
            template_patch({"containers": [{"$patch": "delete", "image": "x"}]}),
            400,
            "map: map[$patch:delete image:x] does not contain declared merge key: name",
        ),
        (
            template_patch({"containers": [{"$patch": "merge"}]}),
            400,
            "merging lists cannot yet be specified in the patch",
        ),
        (
            template_patch({"containers": [{"name": "nginx", "$patch": "frob"}]}),
            400,
            "unknown patch type: frob in map: map[$patch:frob name:nginx]",
        ),
        (
            {"metadata": {"labels": {"$patch": "merge"}}},
            400,
            "unknown patch type: merge in map: map[$patch:merge]",
        ),
        (
            template_patch({"containers": ["nginx"]}),
            400,
            "list element types are not identical: "
            "[[map[env:[map[name:A value:1] map[name:B value:2]] image:nginx:1.25 name:nginx "
            "ports:[map[containerPort:80 protocol:TCP]] resources:map[limits:map[cpu:500m memory:128Mi]] "
            "volumeMounts:[map[mountPath:/data name:data]]] map[args:[sleep 3600] image:busybox:1.36 name:sidecar]] "
            "[nginx]]",
        ),
        (
            {"spec": {"strategy": {"$retainKeys": "type", "type": "Recreate"}}},
            400,
            "invalid patch format of retainKeys",
        ),
        (
            {"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}},
            400,
            "invalid patch format of retainKeys",
        ),
        (
            {"metadata": {"$deleteFromPrimitiveList": ["a"]}},
            400,
            "invalid patch format of primitive list",
        ),
        (
            template_patch({"$setElementOrderX/containers": []}),
            400,
            "invalid patch format of setElementOrder list",
        ),
        (
            template_patch({"$setElementOrder/containers": "nginx"}),
            400,
            "expected a []interface {}, but received a string",
        ),
        (
            template_patch({"$setElementOrder/containers": [{"name": "x"}], "containers": [{"name": "y"}]}),
            400,
            "the order in patch list:\n[map[name:y]]\n doesn't match $setElementOrder list:\n[map[name:x]]",
        ),
        (
            template_patch(
                {
                    "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "nginx"}],
                    "containers": [{"name": "nginx"}, {"name": "sidecar"}],
                }
            ),
            400,
            "the order in patch list:\n[map[name:nginx] map[name:sidecar]]\n doesn't match $setElementOrder list:\n"
            "[map[name:sidecar] map[name:nginx]]",
        ),
        (
            template_patch({"$setElementOrder/containers": ["nginx"], "containers": [{"name": "nginx"}]}),
            400,
            "expected a map[string]interface {}, but received a string",
        ),
    ],
)
def test_smp_errors(patch: dict[str, Any], code: int, message: str) -> None:
    with pytest.raises(StatusError) as err:
        strategic_merge_patch(deployment(), patch, DEPLOYMENT)
    assert (err.value.code, err.value.message) == (code, message)
    assert err.value.reason == "BadRequest"  # upstream answers the Go errors 500; k8py never does


def test_smp_list_of_lists_is_generic_422() -> None:
    pod = {"metadata": {"finalizers": [["a"]]}}
    with pytest.raises(StatusError) as err:
        strategic_merge_patch(pod, {"metadata": {"finalizers": [["b"]]}}, POD)
    assert (err.value.code, err.value.reason, err.value.message) == (422, "Invalid", GENERIC_INVALID)
    assert str(err.value.__cause__) == "lists of lists are not supported"


def test_smp_live_item_without_merge_key_fails() -> None:
    doc = deployment()
    pod_spec(doc)["volumes"].append({"emptyDir": {}})
    with pytest.raises(StatusError) as err:
        strategic_merge_patch(doc, template_patch({"volumes": [{"name": "v"}]}), DEPLOYMENT)
    assert err.value.message == "map: map[emptyDir:map[]] does not contain declared merge key: name"


# --- dispatch --------------------------------------------------------------------------------------


def test_apply_patch_dispatches_on_content_type() -> None:
    body = orjson.dumps(template_patch({"containers": [{"name": "nginx", "image": "nginx:2"}]}))
    out = apply_patch(deployment(), body, STRATEGIC_MERGE_PATCH + "; charset=utf-8", DEPLOYMENT)
    assert names(pod_spec(out)["containers"]) == ["nginx", "sidecar"]
    out = apply_patch(deployment(), body, MERGE_PATCH, DEPLOYMENT)
    assert pod_spec(out)["containers"] == [{"name": "nginx", "image": "nginx:2"}]
    ops = orjson.dumps([{"op": "replace", "path": "/spec/replicas", "value": 0}])
    assert apply_patch(deployment(), ops, JSON_PATCH, DEPLOYMENT)["spec"]["replicas"] == 0
    assert apply_patch(deployment(), b"null", STRATEGIC_MERGE_PATCH, DEPLOYMENT) == deployment()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[]", "json: cannot unmarshal array into Go value of type map[string]interface {}"),
        (b"3", "json: cannot unmarshal number into Go value of type map[string]interface {}"),
        (b"{x", None),
    ],
)
def test_strategic_merge_patch_body_errors(body: bytes, message: str | None) -> None:
    with pytest.raises(StatusError) as err:
        apply_patch(deployment(), body, STRATEGIC_MERGE_PATCH, DEPLOYMENT)
    assert (err.value.code, err.value.reason) == (400, "BadRequest")
    if message:
        assert err.value.message == message


@pytest.mark.parametrize("content_type", ["application/apply-patch+yaml", "application/json", ""])
def test_apply_patch_unknown_content_type(content_type: str) -> None:
    with pytest.raises(StatusError) as err:
        apply_patch(deployment(), b"{}", content_type, DEPLOYMENT)
    assert (err.value.code, err.value.reason) == (415, "UnsupportedMediaType")
    assert err.value.message == (
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json-patch+json, application/merge-patch+json, "
        "application/strategic-merge-patch+json, application/apply-patch+yaml"
    )
