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


def test_values_of_the_wrong_shape_and_nulls_are_left_to_other_checks() -> None:
    obj = deployment()
    obj["spec"]["selector"] = None
    obj["spec"]["template"]["spec"]["containers"] = {"not": "a list"}
    obj["spec"]["strategy"] = "Recreate"
    assert fv.unknown_fields(obj, DEPLOYMENT) == []


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


# --- duplicates and ordering, against raw JSON ---


def test_conformance_strict_create_message() -> None:
    obj = orjson.loads(CONFORMANCE_BODY)
    assert obj["spec"]["replicas"] == 3  # orjson keeps the last, as kube does
    err = raises(lambda: fv.check(obj, DEPLOYMENT, "Strict", CONFORMANCE_BODY))
    assert err.code == 400 and err.reason == "BadRequest"
    assert err.message == (
        'Deployment in version "v1" cannot be handled as a Deployment: '
        'strict decoding error: unknown field "spec.unknownField", duplicate field "spec.replicas"'
    )


def test_conformance_unknown_metadata_message() -> None:
    body = deployment()
    body["metadata"] = {"name": "my-dep", "unknownMeta": "foo", "labels": {"app": "nginx"}}
    raw = orjson.dumps(body)
    err = raises(lambda: fv.check(orjson.loads(raw), DEPLOYMENT, "Strict", raw))
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
        lambda: fv.check(
            {"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"foo": 1}}, DEPLOYMENT, "Strict", raw
        )
    )
    assert (
        err.message
        == 'Deployment in version "v1" cannot be handled as a Deployment: strict decoding error: unknown field "spec.foo"'
    )


def test_errors_are_capped_like_kube() -> None:
    obj = {"kind": "Pod", **{f"f{i}": i for i in range(150)}}
    assert len(fv.check(obj, POD, "Warn")) == fv.MAX_ERRORS


# --- modes ---


def test_warn_returns_one_warning_per_field() -> None:
    obj = orjson.loads(CONFORMANCE_BODY)
    assert fv.check(obj, DEPLOYMENT, "Warn", CONFORMANCE_BODY) == [
        'unknown field "spec.unknownField"',
        'duplicate field "spec.replicas"',
    ]
    assert fv.check(obj, DEPLOYMENT, "", CONFORMANCE_BODY) == fv.check(
        obj, DEPLOYMENT, "Warn", CONFORMANCE_BODY
    )


def test_ignore_checks_nothing() -> None:
    obj = orjson.loads(CONFORMANCE_BODY)
    assert fv.check(obj, DEPLOYMENT, "Ignore", CONFORMANCE_BODY) == []


def test_valid_objects_pass_every_mode() -> None:
    raw = orjson.dumps(deployment())
    for mode in ("Strict", "Warn", "Ignore"):
        assert fv.check(orjson.loads(raw), DEPLOYMENT, mode, raw) == []


def test_unknown_mode_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        fv.check({}, DEPLOYMENT, "strict")


def test_patched_objects_get_the_patch_handler_wording() -> None:
    patched = deployment(foo=1)
    err = raises(lambda: fv.check(patched, DEPLOYMENT, "Strict"))
    assert err.message == 'strict decoding error: unknown field "spec.foo"'
    patch = b'{"spec":{"replicas":1,"replicas":2,"foo":1}}'
    err = raises(lambda: fv.check(patched, DEPLOYMENT, "Strict", patch=patch))
    assert err.message == 'strict decoding error: duplicate field "spec.replicas", unknown field "spec.foo"'
    assert fv.check(patched, DEPLOYMENT, "Warn", patch=patch) == [
        'duplicate field "spec.replicas"',
        'unknown field "spec.foo"',
    ]


def test_decode_error_names_the_body_kind_and_version() -> None:
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containerz": []}}
    raw = orjson.dumps(body)
    err = raises(lambda: fv.check(body, POD, "Strict", raw))
    assert (
        err.message
        == 'Pod in version "v1" cannot be handled as a Pod: strict decoding error: unknown field "spec.containerz"'
    )
    bare = {"spec": {"containerz": []}}  # kind and apiVersion defaulted from the endpoint
    err = raises(lambda: fv.check(bare, POD, "Strict", orjson.dumps(bare)))
    assert err.message.startswith('Pod in version "v1" cannot be handled as a Pod: ')


def test_checking_a_manifest_is_cheap() -> None:
    raw = orjson.dumps(deployment())
    obj = orjson.loads(raw)
    started = time.perf_counter()
    for _ in range(200):
        fv.check(obj, DEPLOYMENT, "Strict", raw)
    per_call = (time.perf_counter() - started) / 200
    assert per_call < 0.002, f"{per_call * 1e6:.0f} µs per check"
