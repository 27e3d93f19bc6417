"""Protobuf request bodies: the wire reader, the message decoder, the tables, and the HTTP path.

Bodies are built here with a tiny encoder that writes what gogo-protobuf writes
for kube's types: non-pointer scalars always (zero or not), pointers only when
set, non-pointer messages always (possibly empty).
"""

from __future__ import annotations

import base64
import struct

import pytest

from k8py.api.protobuf import MAGIC, DecodeError, UnknownKind, decode_object, schema, wire
from k8py.api.protobuf.decode import SPECIAL, decode_message, go_duration
from tests.conftest import Cluster, http

# ---- a test-only encoder ------------------------------------------------------------------------


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def num(field: int, value: int) -> bytes:
    return varint(field << 3) + varint(value)


def raw(field: int, data: bytes) -> bytes:
    return varint(field << 3 | 2) + varint(len(data)) + data


def text(field: int, value: str) -> bytes:
    return raw(field, value.encode())


def msg(field: int, *parts: bytes) -> bytes:
    return raw(field, b"".join(parts))


def entry(field: int, key: str, value: bytes) -> bytes:
    """A map entry whose value (field 2) is already encoded."""
    return msg(field, text(1, key), value)


def envelope(api_version: str, kind: str, *parts: bytes) -> bytes:
    return MAGIC + msg(1, text(1, api_version), text(2, kind)) + raw(2, b"".join(parts))


def object_meta(name: str = "", **extra: bytes) -> bytes:
    """ObjectMeta as gogo writes it: every non-pointer field, zero or not; the zero creationTimestamp empty."""
    return msg(
        1, text(1, name), text(2, ""), text(3, ""), text(4, ""), text(5, ""), text(6, ""), num(7, 0), raw(8, b""),
        *extra.values(),
    )


# ---- wire ----------------------------------------------------------------------------------------


def test_varints() -> None:
    for n in (0, 1, 127, 128, 300, (1 << 63) - 1, (1 << 64) - 1):
        assert wire.read_varint(varint(n), 0) == (n, len(varint(n)))
    assert wire.int64(wire.read_varint(varint(-5), 0)[0]) == -5
    assert wire.int32(wire.read_varint(varint(-1), 0)[0]) == -1  # a negative int32 takes 10 bytes
    with pytest.raises(DecodeError, match="truncated"):
        wire.read_varint(b"\x80\x80", 0)
    with pytest.raises(DecodeError, match="longer than 10 bytes"):
        wire.read_varint(b"\xff" * 11, 0)
    with pytest.raises(DecodeError, match="overflows 64 bits"):
        wire.read_varint(b"\xff" * 9 + b"\x7f", 0)
    with pytest.raises(DecodeError, match="overflows int32"):
        wire.int32(1 << 40)


def test_fields_and_wire_types() -> None:
    body = num(1, 150) + text(2, "hi") + varint(3 << 3 | 1) + struct.pack("<d", 1.5) + varint(4 << 3 | 5) + struct.pack("<f", 2.5)
    got = list(wire.fields(body))
    assert got[0] == (1, wire.VARINT, 150) and got[1] == (2, wire.LEN, b"hi")
    assert wire.double(got[2][2]) == 1.5 and wire.float32(got[3][2]) == 2.5  # type: ignore[arg-type]
    assert wire.packed_varints(varint(1) + varint(300) + varint(2)) == [1, 300, 2]
    assert wire.packed_fixed(struct.pack("<II", 7, 8), 4) == [7, 8]
    for bad, why in (
        (text(2, "hi")[:-1], "runs past the end"),
        (varint(1 << 3 | 3), "unsupported wire type 3"),  # groups
        (varint(0), "invalid field number 0"),
        (varint(1 << 3 | 1) + b"\x00" * 3, "truncated fixed-width"),
    ):
        with pytest.raises(DecodeError, match=why):
            list(wire.fields(bad))
    with pytest.raises(DecodeError, match="not a multiple"):
        wire.packed_fixed(b"\x00" * 5, 4)


# ---- the tables -------------------------------------------------------------------------------------


def test_every_described_type_resolves() -> None:
    for message in schema.MESSAGES:
        fields = schema.fields_of(message)
        assert fields is not None
        for number, spec in fields.items():
            assert number > 0
            assert spec.type in schema.SCALARS or spec.type in schema.MESSAGES or spec.type in SPECIAL, (message, spec)
            assert not spec.map_key or spec.map_key in schema.SCALARS
    for message in [*schema.KINDS.values(), *schema.ANY_VERSION.values()]:
        assert message in schema.MESSAGES


def test_tables_hold_the_facts_of_the_api() -> None:
    """Spot checks against k8s.io/api and apimachinery generated.proto (1.32)."""
    meta = schema.fields_of("meta.v1.ObjectMeta")
    assert meta is not None
    assert (meta[1].name, meta[3].name, meta[8].type, meta[11].name, meta[11].map_key, meta[17].name) == (
        "name", "namespace", "meta.v1.Time", "labels", "string", "managedFields",
    )
    container = schema.fields_of("core.v1.Container")
    assert container is not None
    assert {n: f.name for n, f in container.items() if n in (1, 2, 6, 7, 8, 14, 19, 24)} == {
        1: "name", 2: "image", 6: "ports", 7: "env", 8: "resources", 14: "imagePullPolicy", 19: "envFrom",
        24: "restartPolicy",
    }
    spec = schema.fields_of("apps.v1.DeploymentSpec")
    assert spec is not None and spec[1].name == "replicas" and spec[1].keep_zero  # *int32
    assert not spec[5].keep_zero  # minReadySeconds int32
    # JSON names that differ from the proto field names
    ref = schema.fields_of("authentication.v1.BoundObjectReference")
    assert ref is not None and ref[4].name == "uid"
    assert schema.KINDS["apps/v1", "Deployment"] == "apps.v1.Deployment"
    assert schema.KINDS["v1", "Secret"] == "core.v1.Secret"
    assert schema.KINDS["authorization.k8s.io/v1", "SelfSubjectAccessReview"] == "authorization.v1.SelfSubjectAccessReview"
    assert schema.KINDS["apiextensions.k8s.io/v1", "CustomResourceDefinition"] == "apiextensions.v1.CustomResourceDefinition"


# ---- decoding ---------------------------------------------------------------------------------------


def deployment(replicas: int) -> bytes:
    container = (
        text(1, "web") + text(2, "nginx") + text(5, "")  # workingDir: "" (non-pointer) is dropped
        + msg(6, text(1, ""), num(2, 0), num(3, 80), text(4, "TCP"), text(5, ""))
        + msg(7, text(1, "A"), text(2, "1"))
        + msg(8, entry(1, "cpu", msg(2, text(1, "100m"))))  # resources.limits
        + msg(10, msg(1, msg(2, text(1, "/healthz"), msg(2, num(1, 1), num(2, 0), text(3, "http")))), num(2, 0))
        + num(16, 0)  # stdin: false (non-pointer) is dropped
    )
    pod_spec = msg(1, text(1, "data"), msg(2, msg(2))) + msg(2, container) + num(4, 0)  # terminationGracePeriodSeconds: *0
    spec = (
        num(1, replicas)
        + msg(2, entry(1, "app", text(2, "web")))
        + msg(3, object_meta(labels=entry(11, "app", text(2, "web"))), msg(2, pod_spec))
        + msg(4, text(1, "RollingUpdate"), msg(2, msg(1, num(1, 0), num(2, 1)), msg(2, num(1, 1), text(3, "25%"))))
        + num(5, 0)
    )
    return envelope("apps/v1", "Deployment", object_meta("web", labels=entry(11, "app", text(2, "web"))), msg(2, spec), msg(3))


def test_deployment_decodes_as_a_json_client_would_send_it() -> None:
    obj = decode_object(deployment(replicas=0))
    assert obj == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "replicas": 0,  # a pointer: zero is kept
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "volumes": [{"name": "data", "emptyDir": {}}],  # inline VolumeSource; an empty pointer message stays
                    "containers": [
                        {
                            "name": "web",
                            "image": "nginx",
                            "ports": [{"containerPort": 80, "protocol": "TCP"}],
                            "env": [{"name": "A", "value": "1"}],
                            "resources": {"limits": {"cpu": "100m"}},
                            "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}},  # inline ProbeHandler
                        }
                    ],
                    "terminationGracePeriodSeconds": 0,
                },
            },
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": "25%"}},
        },
        "status": {},
    }


def test_special_types() -> None:
    time_ = msg(4, num(1, 1_700_000_000))  # ManagedFieldsEntry.time
    fields_v1 = msg(7, raw(1, b'{"f:metadata":{}}'))
    managed = msg(17, text(1, "kubectl"), text(2, "Update"), time_, text(6, "FieldsV1"), fields_v1)
    secret = envelope(
        "v1", "Secret",
        object_meta("s", managed=managed),
        entry(2, "key", raw(2, b"\x00\xffbin")),
        entry(2, "empty", raw(2, b"")),
        text(3, "Opaque"),
        num(5, 0),  # immutable: *false
    )
    obj = decode_object(secret)
    assert obj["data"] == {"key": base64.b64encode(b"\x00\xffbin").decode(), "empty": ""}
    assert obj["immutable"] is False and obj["type"] == "Opaque"
    assert obj["metadata"]["managedFields"] == [
        {"manager": "kubectl", "operation": "Update", "time": "2023-11-14T22:13:20Z", "fieldsType": "FieldsV1",
         "fieldsV1": {"f:metadata": {}}}
    ]
    # MicroTime keeps microseconds; Duration prints as Go does; RawExtension holds JSON.
    event = envelope("events.k8s.io/v1", "Event", object_meta("e"), msg(2, num(1, 0), num(2, 123_456_789)))
    assert decode_object(event)["eventTime"] == "1970-01-01T00:00:00.123456Z"
    revision = envelope("apps/v1", "ControllerRevision", object_meta("r"), msg(2, raw(1, b'{"spec":{"x":1}}')), num(3, 2))
    assert decode_object(revision)["data"] == {"spec": {"x": 1}}
    assert [go_duration(n) for n in (0, 999, 1500, 2_500_000, 1_500_000_000, 90 * 10**9, 3600 * 10**9, -61 * 10**9)] == [
        "0s", "999ns", "1.5µs", "2.5ms", "1.5s", "1m30s", "1h0m0s", "-1m1s",
    ]


def test_list_wrappers_and_packed_repeated() -> None:
    # SubjectAccessReviewSpec.extra is map<string, ExtraValue>; ExtraValue wraps `repeated string items = 1`.
    review = envelope(
        "authorization.k8s.io/v1", "SubjectAccessReview", object_meta(),
        msg(2, msg(2, text(1, "/healthz"), text(2, "get")), text(3, "alice"), entry(5, "scopes", msg(2, text(1, "a"), text(1, "b")))),
        msg(3),
    )
    obj = decode_object(review)
    assert obj["spec"] == {"nonResourceAttributes": {"path": "/healthz", "verb": "get"}, "user": "alice", "extra": {"scopes": ["a", "b"]}}
    # Repeated numbers come packed or one per field (gogo writes the latter): PodSecurityContext.supplementalGroups.
    pod = envelope("v1", "Pod", object_meta("p"), msg(2, msg(14, raw(4, varint(1) + varint(2)), num(4, 3))))
    assert decode_object(pod)["spec"]["securityContext"]["supplementalGroups"] == [1, 2, 3]


def test_custom_resource_definition() -> None:
    leaf = text(5, "string") + msg(8, raw(1, b'"x"'))  # default: "x"
    props = (
        text(5, "object")
        + entry(29, "name", msg(2, leaf))
        + msg(30, num(1, 0))  # additionalProperties: false
        + msg(24, msg(1, text(5, "integer")))  # items: one schema
        + num(38, 1)  # x-kubernetes-preserve-unknown-fields: true
        + text(3, "#/ref")  # $ref
        + varint(9 << 3 | 1) + struct.pack("<d", 10.0)  # maximum: 10
    )
    version = text(1, "v1") + num(2, 1) + num(3, 0) + msg(4, msg(1, props))
    crd = envelope(
        "apiextensions.k8s.io/v1", "CustomResourceDefinition", object_meta("widgets.example.com"),
        msg(2, text(1, "example.com"), msg(3, text(1, "widgets"), text(4, "Widget")), text(4, "Namespaced"), msg(7, version)),
    )
    obj = decode_object(crd)
    schema_ = obj["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert obj["spec"]["versions"][0]["storage"] is False  # required: kept
    assert schema_ == {
        "type": "object",
        "properties": {"name": {"type": "string", "default": "x"}},
        "additionalProperties": False,
        "items": {"type": "integer"},
        "x-kubernetes-preserve-unknown-fields": True,
        "$ref": "#/ref",
        "maximum": 10,
    }


def test_unknown_fields_are_skipped() -> None:
    cm = envelope("v1", "ConfigMap", object_meta("c"), num(99, 1), text(100, "future"), entry(2, "k", text(2, "v")))
    assert decode_object(cm) == {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}}


def test_options_under_any_group_version() -> None:
    body = envelope("apps/v1", "DeleteOptions", num(1, 0), text(4, "Foreground"), text(5, "All"))
    assert decode_object(body) == {
        "apiVersion": "apps/v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0, "propagationPolicy": "Foreground",
        "dryRun": ["All"],
    }


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b'{"kind":"Pod"}', "does not appear to be a protobuf message"),
        (MAGIC + b"\x0a\x05ab", "runs past the end"),
        (envelope("v1", ""), "'Kind' is missing"),
        (envelope("v1", "ConfigMap", num(1, 5)), "ConfigMap.metadata: message meta.v1.ObjectMeta sent with wire type 0"),
        (envelope("v1", "ConfigMap", msg(1, num(1, 5))), "ObjectMeta.name: string sent with wire type 0"),
        (envelope("apps/v1", "ControllerRevision", msg(2, raw(1, b"{nope"))), "embedded JSON is malformed"),
        (MAGIC + msg(1, text(2, "Pod")) + raw(2, b"") + text(3, "gzip"), "unsupported content encoding"),
    ],
)
def test_malformed_bodies(body: bytes, error: str) -> None:
    with pytest.raises(DecodeError, match=error):
        decode_object(body)


def test_unknown_kind_and_depth() -> None:
    with pytest.raises(UnknownKind, match='no kind "Widget" is registered for version "example.com/v1"'):
        decode_object(envelope("example.com/v1", "Widget"))
    nested = text(5, "object")
    for _ in range(250):
        nested = msg(28, nested)  # not: JSONSchemaProps
    with pytest.raises(DecodeError, match="nests deeper"):
        decode_message(nested, "apiextensions.v1.JSONSchemaProps")


# ---- through the API server -------------------------------------------------------------------------

PROTOBUF = {"Content-Type": "application/vnd.kubernetes.protobuf", "Accept": "application/json"}


def test_http_create_malformed_and_unknown(cluster: Cluster, namespace: str) -> None:
    cm = envelope("v1", "ConfigMap", object_meta("pb"), entry(2, "k", text(2, "v")))
    r = http(cluster, "POST", f"/api/v1/namespaces/{namespace}/configmaps", cm, PROTOBUF)
    assert r.status == 201, r.body
    assert r.json()["data"] == {"k": "v"} and r.json()["metadata"]["namespace"] == namespace
    r = http(cluster, "POST", f"/api/v1/namespaces/{namespace}/configmaps", cm[:-3], PROTOBUF)
    assert r.status == 400 and r.json()["reason"] == "BadRequest"
    assert "error decoding protobuf request body" in r.json()["message"]
    r = http(cluster, "POST", f"/api/v1/namespaces/{namespace}/configmaps", envelope("example.com/v1", "Widget"), PROTOBUF)
    assert r.status == 415 and r.json()["reason"] == "UnsupportedMediaType"
    r = http(cluster, "POST", f"/api/v1/namespaces/{namespace}/configmaps", envelope("v1", "Secret", object_meta("x")), PROTOBUF)
    assert r.status == 400 and "kind" in r.json()["message"]


def test_http_scale_and_delete_options(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("create", "deployment", "pb", "--image=nginx", "-n", namespace)
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments/pb"
    scale = envelope("autoscaling/v1", "Scale", object_meta("pb", ns=text(3, namespace)), msg(2, num(1, 4)), msg(3))
    r = http(cluster, "PUT", f"{path}/scale", scale, PROTOBUF)
    assert r.status == 200, r.body
    assert r.json()["spec"]["replicas"] == 4
    assert cluster.kubectl_json("get", "deployment", "pb", "-n", namespace)["spec"]["replicas"] == 4
    options = envelope("apps/v1", "DeleteOptions", msg(2, text(1, "not-the-uid")))
    r = http(cluster, "DELETE", path, options, PROTOBUF)
    assert r.status == 409 and "Precondition failed: UID in precondition: not-the-uid" in r.json()["message"]
    r = http(cluster, "DELETE", path, envelope("meta.k8s.io/v1", "DeleteOptions", text(4, "Background")), PROTOBUF)
    assert r.status == 200, r.body
    assert http(cluster, "GET", path).status == 404
