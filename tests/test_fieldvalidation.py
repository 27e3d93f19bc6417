"""Strict field validation: unknown and duplicate fields, with kube-apiserver's messages."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest

from k8py.api import fieldvalidation as fv
from k8py.api import schema as schemas
from k8py.api.errors import StatusError

DEPLOYMENT = schemas.for_kind("apps", "v1", "Deployment")
POD = schemas.for_kind("", "v1", "Pod")

# The body of kube's conformance test "should detect unknown and duplicate fields of a typed object".
CONFORMANCE_BODY = b"""{
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {
        "name": "my-dep",
        "labels": {"app": "nginx"}
    },
    "spec": {
        "unknownField": "foo",
        "replicas": 2,
        "replicas": 3,
        "selector": {"matchLabels": {"app": "nginx"}},
        "template": {
            "metadata": {"labels": {"app": "nginx"}},
            "spec": {"containers": [{"name": "nginx", "image": "nginx:latest"}]}
        }
    }
}"""


def deployment(**spec_extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}, "annotations": {"a/b": "c"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": "nginx",
                            "ports": [{"containerPort": 80}],
                            "resources": {"limits": {"cpu": "1", "memory": 1024}},
                        }
                    ]
                },
            },
            **spec_extra,
        },
    }


def raises(call: Any) -> StatusError:
    with pytest.raises(StatusError) as info:
        call()
    return info.value


# --- unknown_fields ---


def test_a_valid_object_has_no_unknown_fields() -> None:
    assert fv.unknown_fields(deployment(), DEPLOYMENT) == []


def test_unknown_fields_are_reported_with_their_paths() -> None:
    obj = deployment(paused=False, unknownSpec=1)
    obj["metadata"]["unknownMeta"] = "x"
    obj["spec"]["template"]["spec"]["containers"][0]["imagee"] = "typo"
    obj["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPortZ"] = 8080
    obj["status"] = {"replicas": 1, "bogus": True}
    assert fv.unknown_fields(obj, DEPLOYMENT) == [
        "metadata.unknownMeta",
        "spec.template.spec.containers[0].ports[0].containerPortZ",
        "spec.template.spec.containers[0].imagee",
        "spec.unknownSpec",
        "status.bogus",
    ]


def test_maps_opaque_types_and_type_meta_are_open() -> None:
    revision = {
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": {
            "name": "r",
            "labels": {"anything": "goes"},
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {"f:whatever": {}}}}],
        },
        "data": {"spec": {"free": {"form": [1, 2]}}},  # RawExtension
        "revision": 1,
    }
    assert fv.unknown_fields(revision, schemas.for_kind("apps", "v1", "ControllerRevision")) == []


def test_type_meta_is_only_known_at_the_root() -> None:
    obj = deployment()
    obj["spec"]["template"]["kind"] = "PodTemplateSpec"
    assert fv.unknown_fields(obj, DEPLOYMENT) == ["spec.template.kind"]


def test_nulls_are_fine_and_wrong_shapes_are_decode_errors() -> None:
    obj = deployment()
    obj["spec"]["selector"] = None
    assert fv.unknown_fields(obj, DEPLOYMENT) == []
    obj["spec"]["strategy"] = "Recreate"
    err = raises(lambda: fv.unknown_fields(obj, DEPLOYMENT))
    assert err.code == 400 and "of type v1.DeploymentStrategy" in err.message


def test_without_a_schema_nothing_is_unknown() -> None:
    assert fv.unknown_fields({"whatever": {"goes": 1}}, None) == []


def test_preserve_unknown_fields_opens_a_struct() -> None:
    crd_like = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": True,
                "properties": {"known": {"type": "object", "properties": {"a": {"type": "string"}}}},
            }
        },
    }
    obj = {"apiVersion": "x/v1", "kind": "X", "spec": {"free": 1, "known": {"a": "1", "b": 2}}, "top": 1}
    assert fv.unknown_fields(obj, crd_like) == ["spec.known.b", "top"]


# --- types ---

DECODE_PREFIX = 'Deployment in version "v1" cannot be handled as a Deployment: '
CONTAINER = ("spec", "template", "spec", "containers", 0)


def put(obj: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    node = obj
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return obj


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (
            ("spec", "replicas"),
            "three",
            "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32",
        ),
        (
            ("spec", "replicas"),
            1.5,
            "json: cannot unmarshal number 1.5 into Go struct field DeploymentSpec.spec.replicas of type int32",
        ),
        (
            ("spec", "replicas"),
            1 << 31,
            "json: cannot unmarshal number 2147483648 into Go struct field DeploymentSpec.spec.replicas of type int32",
        ),
        (
            ("spec", "paused"),
            "yes",
            "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.paused of type bool",
        ),
        (
            ("spec", "template", "spec", "containers"),
            {},
            "json: cannot unmarshal object into Go struct field PodSpec.spec.template.spec.containers "
            "of type []v1.Container",
        ),
        (
            (*CONTAINER, "ports", 0, "containerPort"),
            "80",
            "json: cannot unmarshal string into Go struct field "
            "ContainerPort.spec.template.spec.containers.ports.containerPort of type int32",
        ),
        (
            ("metadata", "labels", "app"),
            1,
            "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.labels of type string",
        ),
        (
            ("metadata",),
            "x",
            "json: cannot unmarshal string into Go struct field Deployment.metadata of type v1.ObjectMeta",
        ),
        (
            ("spec",),
            [],
            "json: cannot unmarshal array into Go struct field Deployment.spec of type v1.DeploymentSpec",
        ),
        (
            ("spec", "strategy", "rollingUpdate", "maxSurge"),
            True,
            "json: cannot unmarshal bool into Go struct field "
            "RollingUpdateDeployment.spec.strategy.rollingUpdate.maxSurge of type int32",
        ),
        (
            (*CONTAINER, "resources", "limits", "cpu"),
            "lots",
            "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
        ),
        (
            ("metadata", "creationTimestamp"),
            "yesterday",
            'parsing time "yesterday" as "2006-01-02T15:04:05Z07:00": cannot parse "yesterday" as "2006"',
        ),
    ],
)
def test_a_value_of_the_wrong_type_is_kubes_decode_error(path: tuple[Any, ...], value: Any, message: str) -> None:
    body = put(deployment(), path, value)
    for mode in ("Strict", "Warn", "Ignore"):
        err = raises(lambda: fv.decode(body, DEPLOYMENT, mode, orjson.dumps(body)))  # noqa: B023
        assert (err.code, err.reason, err.message) == (400, "BadRequest", DECODE_PREFIX + message)


def test_values_of_the_right_type_pass() -> None:
    body = deployment()
    put(body, ("metadata", "creationTimestamp"), "2024-02-29T12:00:00.5+01:00")
    put(body, ("spec", "strategy", "rollingUpdate", "maxUnavailable"), "10%")
    put(body, (*CONTAINER, "resources", "requests"), {"cpu": 0.5, "memory": "1Gi"})
    put(body, ("spec", "template", "spec", "terminationGracePeriodSeconds"), (1 << 63) - 1)
    assert fv.decode(body, DEPLOYMENT, "Strict", orjson.dumps(body)) == []


def test_the_first_type_error_in_document_order_counts_duplicates_included() -> None:
    raw = b'{"spec":{"replicas":"x","replicas":2,"paused":1},"metadata":"m"}'
    err = raises(lambda: fv.decode(orjson.loads(raw), DEPLOYMENT, "Warn", raw))
    assert err.message.endswith("DeploymentSpec.spec.replicas of type int32")
    err = raises(lambda: fv.decode(orjson.loads(raw), DEPLOYMENT, "Ignore", raw))
    assert err.message.endswith("DeploymentSpec.spec.paused of type bool")  # no pairs: orjson kept the 2


def test_type_errors_win_over_strict_errors() -> None:
    body = put(deployment(bogus=1), ("spec", "replicas"), "x")
    err = raises(lambda: fv.decode(body, DEPLOYMENT, "Strict", orjson.dumps(body)))
    assert "strict decoding error" not in err.message and "spec.replicas of type int32" in err.message


def test_null_is_the_zero_value_and_unknown_fields_go() -> None:
    body = deployment(selector=None, bogus=1)
    put(body, (*CONTAINER, "args"), ["a", None])
    put(body, ("metadata", "labels", "app"), None)
    put(body, ("spec", "template", "spec", "containers"), [None, body["spec"]["template"]["spec"]["containers"][0]])
    put(body, ("spec", "template", "spec", "tolerations"), [None])
    fv.decode(body, DEPLOYMENT, "Warn", orjson.dumps(body))
    assert "selector" not in body["spec"] and "bogus" not in body["spec"]
    assert body["metadata"]["labels"] == {"app": ""}
    containers = body["spec"]["template"]["spec"]["containers"]
    assert containers[0] == {} and containers[1]["args"] == ["a", ""]
    assert body["spec"]["template"]["spec"]["tolerations"] == [{}]


def test_byte_strings_must_be_base64() -> None:
    secret = schemas.for_kind("", "v1", "Secret")
    ok = {"kind": "Secret", "data": {"a": "aGVsbG8=", "b": ""}}
    assert fv.decode(ok, secret, "Strict", orjson.dumps(ok)) == []
    for value, message in [
        ("hello", "illegal base64 data at input byte 4"),
        ("aGV*bG8=", "illegal base64 data at input byte 3"),
        (5, "json: cannot unmarshal number into Go struct field Secret.data of type []uint8"),
    ]:
        bad = {"kind": "Secret", "data": {"a": value}}
        err = raises(lambda: fv.decode(bad, secret, "Ignore"))  # noqa: B023
        assert err.message == 'Secret in version "v1" cannot be handled as a Secret: ' + message


def test_a_patched_object_of_the_wrong_type_is_422_on_patch() -> None:
    patched = put(deployment(), ("spec", "replicas"), "three")
    err = raises(lambda: fv.decode(patched, DEPLOYMENT, "Warn", patch=b"{}", patch_type="application/merge-patch+json"))
    assert (err.code, err.reason) == (422, "Invalid")
    detail = "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32"
    assert err.message.startswith(' "" is invalid: patch: Invalid value: "{\\"apiVersion\\":')
    assert err.message.endswith(detail)
    assert err.details == {"causes": [{"reason": "FieldValueInvalid", "field": "patch", "message": err.message.split("patch: ", 1)[1]}]}
    smp = "application/strategic-merge-patch+json"
    patch = b'{"spec":{"replicas":"three"}}'
    err = raises(lambda: fv.decode(patched, DEPLOYMENT, "Warn", patch=patch, patch_type=smp))
    assert err.message == ' "" is invalid: patch: Invalid value: "map[spec:map[replicas:three]]": unrecognized type: int32'
    listed = put(deployment(), ("spec", "template", "spec", "containers"), {})
    err = raises(lambda: fv.decode(listed, DEPLOYMENT, "Warn", patch=patch, patch_type=smp))
    assert err.message.endswith(": cannot restore slice from map")


def test_integral_floats_are_integers_only_through_the_strategic_path() -> None:
    patched = put(deployment(), ("spec", "replicas"), 3.0)
    smp = "application/strategic-merge-patch+json"
    assert fv.decode(patched, DEPLOYMENT, "Warn", patch=b"{}", patch_type=smp) == []
    assert patched["spec"]["replicas"] == 3 and isinstance(patched["spec"]["replicas"], int)
    patched["spec"]["replicas"] = 3.0
    err = raises(lambda: fv.decode(patched, DEPLOYMENT, "Warn", patch=b"{}", patch_type="application/json-patch+json"))
    assert err.message.endswith("json: cannot unmarshal number 3.0 into Go struct field DeploymentSpec.spec.replicas of type int32")


# --- duplicates and ordering, against raw JSON ---


def test_conformance_strict_create_message() -> None:
    obj = orjson.loads(CONFORMANCE_BODY)
    assert obj["spec"]["replicas"] == 3  # orjson keeps the last, as kube does
    err = raises(lambda: fv.decode(obj, DEPLOYMENT, "Strict", CONFORMANCE_BODY))
    assert err.code == 400 and err.reason == "BadRequest"
    assert err.message == (
        'Deployment in version "v1" cannot be handled as a Deployment: '
        'strict decoding error: unknown field "spec.unknownField", duplicate field "spec.replicas"'
    )


def test_conformance_unknown_metadata_message() -> None:
    body = deployment()
    body["metadata"] = {"name": "my-dep", "unknownMeta": "foo", "labels": {"app": "nginx"}}
    raw = orjson.dumps(body)
    err = raises(lambda: fv.decode(orjson.loads(raw), DEPLOYMENT, "Strict", raw))
    assert 'strict decoding error: unknown field "metadata.unknownMeta"' in err.message


def test_errors_come_in_document_order_and_once() -> None:
    raw = (
        b'{"kind":"Deployment","apiVersion":"apps/v1","zz":1,"metadata":{"labels":{"a":"1","a":"2"},"name":"x"},'
        b'"spec":{"template":{"spec":{"containers":[{"name":"c","name":"d","bad":1,"bad":2}]}}},"zz":2}'
    )
    assert fv.strict_errors(orjson.loads(raw), DEPLOYMENT, raw) == [
        'unknown field "zz"',
        'duplicate field "metadata.labels.a"',
        'duplicate field "spec.template.spec.containers[0].name"',
        'unknown field "spec.template.spec.containers[0].bad"',
    ]


def test_nothing_inside_unknown_or_opaque_values_is_looked_at() -> None:
    raw = b'{"kind":"ControllerRevision","revision":1,"x":{"d":1,"d":2},"data":{"d":1,"d":2}}'
    revision = schemas.for_kind("apps", "v1", "ControllerRevision")
    assert fv.strict_errors(orjson.loads(raw), revision, raw) == ['unknown field "x"']


def test_duplicate_fields_of_a_patch_body() -> None:
    assert fv.duplicate_fields(b'{"spec":{"replicas":1,"replicas":2},"a":[{"b":1,"b":2}]}') == [
        "spec.replicas",
        "a[0].b",
    ]
    assert fv.duplicate_fields(b"spec:\n  replicas: 1\n") == []  # YAML: not looked at
    assert fv.duplicate_fields(b"[1, 2]") == []


def test_yaml_bodies_are_checked_for_unknown_fields_only() -> None:
    raw = b"apiVersion: apps/v1\nkind: Deployment\nspec:\n  foo: 1\n"
    err = raises(
        lambda: fv.decode(
            {"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"foo": 1}}, DEPLOYMENT, "Strict", raw
        )
    )
    assert (
        err.message
        == 'Deployment in version "v1" cannot be handled as a Deployment: strict decoding error: unknown field "spec.foo"'
    )


def test_errors_are_capped_like_kube() -> None:
    obj = {"kind": "Pod", **{f"f{i}": i for i in range(150)}}
    assert len(fv.decode(obj, POD, "Warn")) == fv.MAX_ERRORS


# --- modes ---


def test_warn_returns_one_warning_per_field() -> None:
    obj = orjson.loads(CONFORMANCE_BODY)
    assert fv.decode(obj, DEPLOYMENT, "Warn", CONFORMANCE_BODY) == [
        'unknown field "spec.unknownField"',
        'duplicate field "spec.replicas"',
    ]
    assert fv.decode(obj, DEPLOYMENT, "", CONFORMANCE_BODY) == fv.decode(
        obj, DEPLOYMENT, "Warn", CONFORMANCE_BODY
    )


def test_ignore_checks_nothing() -> None:
    obj = orjson.loads(CONFORMANCE_BODY)
    assert fv.decode(obj, DEPLOYMENT, "Ignore", CONFORMANCE_BODY) == []


def test_valid_objects_pass_every_mode() -> None:
    raw = orjson.dumps(deployment())
    for mode in ("Strict", "Warn", "Ignore"):
        assert fv.decode(orjson.loads(raw), DEPLOYMENT, mode, raw) == []


def test_unknown_mode_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        fv.decode({}, DEPLOYMENT, "strict")


def test_patched_objects_get_the_patch_handler_wording() -> None:
    patched = deployment(foo=1)
    err = raises(lambda: fv.decode(patched, DEPLOYMENT, "Strict"))
    assert err.message == 'strict decoding error: unknown field "spec.foo"'
    patch = b'{"spec":{"replicas":1,"replicas":2,"foo":1}}'
    err = raises(lambda: fv.decode(patched, DEPLOYMENT, "Strict", patch=patch))
    assert err.message == 'strict decoding error: duplicate field "spec.replicas", unknown field "spec.foo"'
    assert fv.decode(patched, DEPLOYMENT, "Warn", patch=patch) == [
        'duplicate field "spec.replicas"',
        'unknown field "spec.foo"',
    ]


def test_decode_error_names_the_body_kind_and_version() -> None:
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containerz": []}}
    raw = orjson.dumps(body)
    err = raises(lambda: fv.decode(body, POD, "Strict", raw))
    assert (
        err.message
        == 'Pod in version "v1" cannot be handled as a Pod: strict decoding error: unknown field "spec.containerz"'
    )
    bare = {"spec": {"containerz": []}}  # kind and apiVersion defaulted from the endpoint
    err = raises(lambda: fv.decode(bare, POD, "Strict", orjson.dumps(bare)))
    assert err.message.startswith('Pod in version "v1" cannot be handled as a Pod: ')


def test_checking_a_manifest_is_cheap() -> None:
    raw = orjson.dumps(deployment())
    obj = orjson.loads(raw)
    started = time.perf_counter()
    for _ in range(200):
        fv.decode(obj, DEPLOYMENT, "Strict", raw)
    per_call = (time.perf_counter() - started) / 200
    assert per_call < 0.002, f"{per_call * 1e6:.0f} µs per check"
