"""The API server against malformed input: every bad request is a 4xx metav1.Status, never a 500.

Wrong JSON types at many paths of Pods, Deployments, Services, ConfigMaps and
Namespaces (creates, updates, merge/strategic/JSON patches), broken bodies, hostile
YAML (billion laughs, recursive aliases), nesting 100k levels deep, odd names and
numbers, bad patches, bad query parameters and weird paths, then a small seeded
fuzzer mutating a valid Deployment. Every rejected request is checked the same
way (`rejected`): a 4xx whose body is a Status with the same code, the object it
aimed at exactly as before (nothing created, nothing half-written), and /readyz
still 200.
"""

from __future__ import annotations

import copy
import json
import random
import time
from collections.abc import Callable
from typing import Any

import pytest

from k8py.api import yamljson
from tests.conftest import Cluster, http

Obj = dict[str, Any]

JSON = {"Content-Type": "application/json"}
YAML = {"Content-Type": "application/yaml"}
MERGE = {"Content-Type": "application/merge-patch+json"}
STRATEGIC = {"Content-Type": "application/strategic-merge-patch+json"}
JSON_PATCH = {"Content-Type": "application/json-patch+json"}


def rejected(
    cluster: Cluster,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    *,
    code: int | None = None,
    unchanged: str | None = None,
) -> Obj:
    """Send a request that must fail; return its Status.

    It must be a 4xx (`code`, if given) with a metav1 Status body of that code;
    the object at `unchanged` must read exactly as before; the server stays ready."""
    before = _read(cluster, unchanged) if unchanged else None
    if isinstance(body, list):
        body = json.dumps(body)
        headers = headers or JSON
    resp = http(cluster, method, path, body, headers)
    what = f"{method} {path[:120]} -> {resp.status} {resp.body[:400]!r}"
    assert 400 <= resp.status < 500 and (code is None or resp.status == code), what
    status = resp.json()
    assert (status["kind"], status["apiVersion"], status["status"]) == ("Status", "v1", "Failure"), what
    assert status["code"] == resp.status, what
    if unchanged:
        assert _read(cluster, unchanged) == before, f"{what}: {unchanged} changed"
    assert http(cluster, "GET", "/readyz").status == 200, f"{what}: server not ready"
    return status


def _read(cluster: Cluster, path: str) -> tuple[int, Any]:
    resp = http(cluster, "GET", path)
    return resp.status, resp.json()


def created(cluster: Cluster, path: str, body: Any, headers: dict[str, str] | None = None) -> Obj:
    resp = http(cluster, "POST", path, body, headers)
    assert resp.status == 201, resp.body[:400]
    return resp.json()


def put(obj: Obj, path: tuple[Any, ...], value: Any) -> Obj:
    """`obj` with the value at `path` set (missing dicts on the way created)."""
    node = obj
    for key in path[:-1]:
        if isinstance(node, dict):
            node = node.setdefault(key, {})
        else:
            node = node[key]
    node[path[-1]] = value
    return obj


def nested(path: tuple[Any, ...], value: Any) -> Obj:
    """A merge patch setting `path` (dict keys only) to `value`."""
    for key in reversed(path):
        value = {key: value}
    return value


def pointer(path: tuple[Any, ...]) -> str:
    return "".join(f"/{str(key).replace('~', '~0').replace('/', '~1')}" for key in path)


# ---- the objects and their wrong types ------------------------------------------------------------


def pod(name: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "r"}},
        "spec": {
            "containers": [
                {
                    "name": "c",
                    "image": "busybox",
                    "ports": [{"containerPort": 80}],
                    "resources": {"limits": {"cpu": "100m"}},
                }
            ]
        },
    }


def deployment(name: str) -> Obj:
    template = pod(name)
    del template["apiVersion"], template["kind"], template["metadata"]["name"]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "r"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
            "template": template,
        },
    }


def service(name: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": "r"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }


def configmap(name: str) -> Obj:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"a": "b"}}


def namespace_object(name: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


CONTAINER = ("spec", "containers", 0)
TEMPLATE_CONTAINER = ("spec", "template", "spec", "containers", 0)

# kind -> (collection URL for a namespace, object factory, (path, wrong value) pairs)
WRONG_TYPES: dict[str, tuple[Callable[[str], str], Callable[[str], Obj], list[tuple[tuple[Any, ...], Any]]]] = {
    "Pod": (
        lambda ns: f"/api/v1/namespaces/{ns}/pods",
        pod,
        [
            (("spec", "containers"), {}),
            ((*CONTAINER, "image"), 5),
            ((*CONTAINER, "ports", 0, "containerPort"), "80"),
            ((*CONTAINER, "resources", "limits", "cpu"), {}),
            ((*CONTAINER, "resources", "limits", "cpu"), "lots"),
            ((*CONTAINER, "args"), [1]),
            ((*CONTAINER, "env"), [{"name": "A", "value": 1}]),
            (("metadata", "labels"), {"a": 1}),
            (("metadata",), "x"),
            (("spec",), []),
            (("spec", "activeDeadlineSeconds"), 2**63),
            (("spec", "terminationGracePeriodSeconds"), 1.5),
            (("spec", "hostNetwork"), "yes"),
            (("spec", "nodeSelector"), ["a"]),
            (("metadata", "creationTimestamp"), "not a time"),
        ],
    ),
    "Deployment": (
        lambda ns: f"/apis/apps/v1/namespaces/{ns}/deployments",
        deployment,
        [
            (("spec", "replicas"), "three"),
            (("spec", "replicas"), 1.5),
            (("spec", "replicas"), 2**31),
            (("spec", "replicas"), 2**64),
            (("spec", "selector"), "app=r"),
            (("spec", "template"), []),
            (("spec", "strategy", "rollingUpdate", "maxSurge"), {}),
            (("spec", "strategy", "rollingUpdate", "maxSurge"), True),
            (("spec", "paused"), "true"),
            (("spec", "template", "metadata", "labels", "app"), True),
            ((*TEMPLATE_CONTAINER, "imagePullPolicy"), ["Always"]),
        ],
    ),
    "Service": (
        lambda ns: f"/api/v1/namespaces/{ns}/services",
        service,
        [
            (("spec", "ports", 0, "port"), "80"),
            (("spec", "ports", 0, "targetPort"), True),
            (("spec", "ports", 0, "targetPort"), 1.5),
            (("spec", "ports"), {"port": 80}),
            (("spec", "selector"), "app=r"),
            (("spec", "type"), 7),
            (("spec", "clusterIPs"), "10.96.0.10"),
            (("spec", "sessionAffinityConfig", "clientIP", "timeoutSeconds"), "10"),
        ],
    ),
    "ConfigMap": (
        lambda ns: f"/api/v1/namespaces/{ns}/configmaps",
        configmap,
        [
            (("data",), ["a"]),
            (("data", "a"), 1),
            (("data", "a"), {"nested": "x"}),
            (("binaryData", "b"), "not base64!"),
            (("immutable",), "yes"),
            (("metadata", "annotations"), {"a": False}),
            (("metadata", "finalizers"), "x"),
            (("metadata", "ownerReferences"), {}),
            (("metadata", "resourceVersion"), 5),
        ],
    ),
    "Namespace": (
        lambda ns: "/api/v1/namespaces",
        namespace_object,
        [
            (("spec", "finalizers"), [5]),
            (("spec",), []),
            (("metadata", "labels"), ["x"]),
            (("status", "phase"), 1),
            (("metadata", "generateName"), 5),
        ],
    ),
}


def _url(kind: str, namespace: str, name: str = "") -> str:
    base = WRONG_TYPES[kind][0](namespace)
    return f"{base}/{name}" if name else base


@pytest.mark.parametrize("kind", list(WRONG_TYPES))
def test_wrong_types_are_decode_errors(cluster: Cluster, namespace: str, kind: str) -> None:
    """Creates and updates are 400 with kube's decode error; merge, strategic and JSON patches 422 on `patch`."""
    _, factory, cases = WRONG_TYPES[kind]
    name = f"{namespace}-x" if kind == "Namespace" else "x"
    for path, value in cases:
        body = put(factory(name), path, value)
        status = rejected(cluster, "POST", _url(kind, namespace), body, code=400, unchanged=_url(kind, namespace, name))
        assert f"cannot be handled as a {kind}: " in status["message"], status["message"]
    current = created(cluster, _url(kind, namespace), factory(name))
    target = _url(kind, namespace, name)
    for path, value in cases:
        body = put(copy.deepcopy(current), path, value)
        status = rejected(cluster, "PUT", target, body, code=400, unchanged=target)
        assert f"cannot be handled as a {kind}: " in status["message"], status["message"]
        if 0 not in path:  # lists are replaced whole by merge patches
            for headers in (MERGE, STRATEGIC):
                status = rejected(cluster, "PATCH", target, nested(path, value), headers, code=422, unchanged=target)
                assert status["reason"] == "Invalid" and status["details"]["causes"][0]["field"] == "patch"
        ops = [{"op": "add", "path": pointer(path), "value": value}]
        assert rejected(cluster, "PATCH", target, ops, JSON_PATCH, code=422, unchanged=target)["reason"] == "Invalid"


def test_kubes_words_for_wrong_types(cluster: Cluster, namespace: str) -> None:
    base = _url("Deployment", namespace)
    prefix = 'Deployment in version "v1" cannot be handled as a Deployment: json: cannot unmarshal '
    for path, value, message in [
        (("spec", "replicas"), "three", "string into Go struct field DeploymentSpec.spec.replicas of type int32"),
        (("spec", "replicas"), 1.5, "number 1.5 into Go struct field DeploymentSpec.spec.replicas of type int32"),
        (
            ("spec", "template", "spec", "containers"),
            {},
            "object into Go struct field PodSpec.spec.template.spec.containers of type []v1.Container",
        ),
        (("metadata", "labels"), {"a": 1}, "number into Go struct field ObjectMeta.metadata.labels of type string"),
        (("metadata",), "x", "string into Go struct field Deployment.metadata of type v1.ObjectMeta"),
        (("spec",), [], "array into Go struct field Deployment.spec of type v1.DeploymentSpec"),
    ]:
        status = rejected(cluster, "POST", base, put(deployment("w"), path, value), code=400)
        assert (status["reason"], status["message"]) == ("BadRequest", prefix + message)
    created(cluster, base, deployment("w"))
    status = rejected(cluster, "PATCH", f"{base}/w", {"spec": {"replicas": "three"}}, STRATEGIC, code=422)
    assert status["message"] == ' "" is invalid: patch: Invalid value: "map[spec:map[replicas:three]]": unrecognized type: int32'


def test_nulls_are_zero_values(cluster: Cluster, namespace: str) -> None:
    """JSON null decodes to Go's zero value anywhere: accepted, and never stored as null."""
    body = pod("nulls")
    body["metadata"]["labels"]["gone"] = None
    body["metadata"]["annotations"] = None
    body["spec"]["containers"][0]["args"] = ["a", None]
    body["spec"]["containers"].append(None)  # a Container{}: kube then wants its name and image
    body["spec"]["nodeSelector"] = {"disk": None}
    status = rejected(cluster, "POST", _url("Pod", namespace), body, code=422, unchanged=f"{_url('Pod', namespace)}/nulls")
    assert "spec.containers[1].name: Required value" in status["message"]
    del body["spec"]["containers"][1]
    obj = created(cluster, _url("Pod", namespace), body)
    assert obj["metadata"]["labels"] == {"app": "r", "gone": ""} and "annotations" not in obj["metadata"]
    assert obj["spec"]["containers"][0]["args"] == ["a", ""] and obj["spec"]["nodeSelector"] == {"disk": ""}
    ops = [{"op": "add", "path": "/metadata/labels", "value": {"app": None}}]
    patched = http(cluster, "PATCH", f"{_url('Pod', namespace)}/nulls", json.dumps(ops), JSON_PATCH)
    assert patched.status == 200 and patched.json()["metadata"]["labels"] == {"app": ""}


# ---- broken bodies --------------------------------------------------------------------------------

BILLION_LAUGHS = (
    b"a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    + b"".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n".encode() for i in range(8)
    )
    + b"metadata: {name: laughs}\ndata: {x: y}\nbinaryData: {i: *i}\n"
)
QUADRATIC = b"a: &a [" + b"x," * 20000 + b"x]\nmetadata: {name: quad}\nlist: [" + b"*a," * 20000 + b"*a]\n"


def test_broken_bodies(cluster: Cluster, namespace: str) -> None:
    base = _url("ConfigMap", namespace)
    deep_array = b"[" * 100_000 + b"]" * 100_000
    deep_object = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
    for body, headers, code in [
        (b"", JSON, 400),
        (b"null", JSON, 400),
        (b"5", JSON, 400),
        (b'"x"', JSON, 400),
        (b"[]", JSON, 400),
        (b"true", YAML, 400),
        (b"{", JSON, 400),
        (b"\xff\xfe\xfd", JSON, 400),
        (b'{"metadata":{"name":"bad-utf8-\xff"}}', JSON, 400),
        (b"metadata: {name: bad-utf8-\xff}\n", YAML, 400),
        (b"\x00" * 64, JSON, 400),
        (b"\x00" * 64, YAML, 400),
        (deep_array, JSON, 400),
        (deep_object, JSON, 400),
        (b'{"metadata":{"name":"deep"},"data":{"a":' + deep_array + b"}}", JSON, 400),
        (b'{"metadata":{"name":"deep"},"zz":' + b"[" * 250 + b"]" * 250 + b"}", JSON, 400),
        (b"[" * 100_000, YAML, 400),
        ("".join(f"{'  ' * i}a:\n" for i in range(300)).encode(), YAML, 400),
        (b"metadata: {name: a}\n---\nmetadata: {name: b}\n", YAML, 400),
        (b"metadata: {name: rec}\ndata: &d {a: *d}\n", YAML, 400),
        (b"metadata: {name: undef}\ndata: *nope\n", YAML, 400),
        (b"metadata: {name: nan}\ndata: {a: b}\nx: .nan\n", YAML, 400),
        (b"metadata: {name: ct}\n", JSON, 400),
        (b'{"metadata":{"name":"ct"}}', {"Content-Type": "text/plain"}, 415),
        (b'{"metadata":{"name":"ct"}}', {"Content-Type": "application/vnd.kubernetes.protobuf"}, 400),
        (b'{"metadata":{"name":"ct"}}', MERGE, 415),
    ]:
        rejected(cluster, "POST", base, body, headers, code=code, unchanged=f"{base}/deep")
    for bomb, name in ((BILLION_LAUGHS, "laughs"), (QUADRATIC, "quad")):
        started = time.monotonic()
        status = rejected(cluster, "POST", base, bomb, YAML, code=400, unchanged=f"{base}/{name}")
        assert "excessive aliasing" in status["message"] and time.monotonic() - started < 5


def test_yaml_and_json_bodies_that_must_work(cluster: Cluster, namespace: str) -> None:
    base = _url("ConfigMap", namespace)
    yaml_types = b"metadata: {name: yaml-types}\ndata: {when: 2001-12-14, 1: one, true: yes-key}\n"
    assert created(cluster, base, yaml_types, YAML)["data"] == {"when": "2001-12-14", "1": "one", "true": "yes-key"}
    aliases = b"metadata: {name: aliases, labels: &l {app: r}}\ndata: *l\n"
    assert created(cluster, base, aliases, YAML)["data"] == {"app": "r"}
    assert created(cluster, base, b'{"metadata":{"name":"json-as-yaml"}}', YAML)["metadata"]["name"] == "json-as-yaml"
    charset = {"Content-Type": "application/json; charset=utf-8"}
    assert created(cluster, base, b'{"metadata":{"name":"charset"}}', charset)["metadata"]["name"] == "charset"
    deep_enough = b'{"metadata":{"name":"deep-enough"},"data":{"a":"' + b"[" * 5000 + b'"}}'
    assert created(cluster, base, deep_enough, JSON)["data"]["a"] == "[" * 5000  # brackets in strings do not nest
    unicode = created(cluster, base, {"metadata": {"name": "unicode"}, "data": {"k": "ünï ☃ \u0000"}})
    assert unicode["data"]["k"] == "ünï ☃ \u0000"


def test_yaml_aliases_share_nothing() -> None:
    value = yamljson.load(b"a: &x {k: [v]}\nb: *x\n")
    assert value == {"a": {"k": ["v"]}, "b": {"k": ["v"]}}
    assert value["a"] is not value["b"] and value["a"]["k"] is not value["b"]["k"]


def test_odd_names_and_numbers(cluster: Cluster, namespace: str) -> None:
    base = _url("ConfigMap", namespace)
    deployments = _url("Deployment", namespace)
    for name in ("x" * 300, "ünï", "a/b", "..", "Upper", ""):
        rejected(cluster, "POST", base, {"metadata": {"name": name}}, code=422, unchanged=f"{base}/ok")
    rejected(cluster, "POST", base, {"metadata": {"name": "ok", "labels": {"a": "x" * 100_000}}}, code=422, unchanged=f"{base}/ok")
    big_annotations = {f"k{i}": "x" * 1000 for i in range(300)}
    rejected(cluster, "POST", base, {"metadata": {"name": "ok", "annotations": big_annotations}}, code=422, unchanged=f"{base}/ok")
    for replicas, code in ((-1, 422), (2**63, 400), (2**64, 400), (-(2**63) - 1, 400), (1e308, 400)):
        body = put(deployment("n"), ("spec", "replicas"), replicas)
        rejected(cluster, "POST", deployments, body, code=code, unchanged=f"{deployments}/n")
    body = put(deployment("n"), ("spec", "template", "spec", "terminationGracePeriodSeconds"), 2**63)
    rejected(cluster, "POST", deployments, body, code=400, unchanged=f"{deployments}/n")
    raw = b'{"metadata":{"name":"dup","name":"dup2"},"data":{}}'
    status = rejected(cluster, "POST", f"{base}?fieldValidation=Strict", raw, JSON, code=400, unchanged=f"{base}/dup2")
    assert 'duplicate field "metadata.name"' in status["message"]


# ---- patches, subresources, options, paths --------------------------------------------------------


def test_bad_patches(cluster: Cluster, namespace: str) -> None:
    base = _url("Deployment", namespace)
    created(cluster, base, deployment("p"))
    target = f"{base}/p"
    deep = {"metadata": {"annotations": {"a": "b"}}, "x": json.loads("[" * 300 + "]" * 300)}
    for body, headers, code in [
        ([{"op": "add", "path": "spec/replicas", "value": 2}], JSON_PATCH, 422),
        ([{"op": "replace", "path": "/spec/template/spec/containers/9/image", "value": "x"}], JSON_PATCH, 422),
        ([{"op": "add", "path": "/spec/template/spec/containers/x/image", "value": "x"}], JSON_PATCH, 422),
        ([{"op": "frobnicate", "path": "/spec"}], JSON_PATCH, 422),
        ([{"op": "add", "value": 1}], JSON_PATCH, 422),
        ([{"op": "test", "path": "/spec/replicas", "value": 99}], JSON_PATCH, 422),
        ([{"op": "move", "from": "/spec/nope", "path": "/spec/x"}], JSON_PATCH, 422),
        ([{"op": "replace", "path": "", "value": []}], JSON_PATCH, 422),
        ([{"op": "remove", "path": "/metadata"}, {"op": "add", "path": "/metadata", "value": "x"}], JSON_PATCH, 422),
        ({"op": "add", "path": "/spec/replicas", "value": 2}, JSON_PATCH, 400),
        (b"[5]", JSON_PATCH, 400),
        (b"[" * 100_000 + b"]" * 100_000, JSON_PATCH, 400),
        ([{"op": "add", "path": "/metadata/annotations/x", "value": deep["x"]}], JSON_PATCH, 400),
        (b"[]", MERGE, 400),
        (b'"x"', MERGE, 400),
        (b"{", MERGE, 400),
        (deep, MERGE, 400),
        (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, MERGE, 400),
        (deep, STRATEGIC, 400),
        ({"$patch": "frob"}, STRATEGIC, 400),
        ({"spec": {"template": {"spec": {"containers": [{"$patch": "delete"}]}}}}, STRATEGIC, 400),
        ({"spec": {"template": {"spec": {"containers": ["nginx"]}}}}, STRATEGIC, 400),
        ({"spec": {"template": {"spec": {"$setElementOrder/containers": "x"}}}}, STRATEGIC, 400),
        ({"metadata": {"finalizers": [{"a": 1}, "x"]}}, STRATEGIC, 422),
        (b"5", STRATEGIC, 400),
        ({"spec": {"replicas": 2}}, JSON, 415),
        ({"spec": {"replicas": 2}}, {"Content-Type": "application/apply-patch+yaml"}, 422),  # no fieldManager
    ]:
        rejected(cluster, "PATCH", target, body, headers, code=code, unchanged=target)
    # copies that double the object until kube's 3 MiB copy budget is spent
    doubling = [{"op": "copy", "from": "/spec/template", "path": f"/spec/template/metadata/x{i}"} for i in range(30)]
    status = rejected(cluster, "PATCH", target, doubling, JSON_PATCH, code=422, unchanged=target)
    assert status["message"] == "the server rejected our request due to an error in our request"
    # a JSON patch may not nest the object deeper than a body may be nested
    deep = json.loads("[" * 150 + "]" * 150)
    into_itself = [
        {"op": "add", "path": "/spec/x", "value": deep},
        {"op": "copy", "from": "/spec/x", "path": "/spec/x" + "/0" * 149},
    ]
    rejected(cluster, "PATCH", target, into_itself, JSON_PATCH, code=400, unchanged=target)
    rejected(cluster, "PATCH", f"{base}/missing", {"spec": {}}, MERGE, code=404, unchanged=f"{base}/missing")


def test_subresources_options_and_query_parameters(cluster: Cluster, namespace: str) -> None:
    deployments, pods, configmaps = (_url(k, namespace) for k in ("Deployment", "Pod", "ConfigMap"))
    created(cluster, deployments, deployment("s"))
    created(cluster, pods, pod("s"))
    created(cluster, configmaps, configmap("s"))
    dep, po, cm = f"{deployments}/s", f"{pods}/s", f"{configmaps}/s"
    for method, path, body, headers, code in [
        ("PUT", f"{dep}/scale", {"metadata": {"name": "s"}, "spec": {"replicas": "x"}}, JSON, 400),
        ("PUT", f"{dep}/scale", {"metadata": {"name": "s"}, "spec": "x"}, JSON, 400),
        ("PATCH", f"{dep}/scale", {"spec": "x"}, MERGE, 422),
        ("PATCH", f"{dep}/scale", {"spec": {"replicas": 1.5}}, MERGE, 422),
        ("PUT", f"{dep}/status", {"metadata": {"name": "s"}, "status": 5}, JSON, 400),
        ("PATCH", f"{dep}/status", {"status": {"replicas": "x"}}, MERGE, 422),
        ("POST", f"{po}/binding", {"metadata": {"name": "s"}, "target": "node-1"}, JSON, 400),
        ("POST", f"/api/v1/namespaces/{namespace}/bindings", {"metadata": "s", "target": {"name": "n"}}, JSON, 400),
        ("DELETE", cm, b"[1]", JSON, 400),
        ("DELETE", cm, {"preconditions": "x"}, JSON, 400),
        ("DELETE", cm, {"gracePeriodSeconds": "x"}, JSON, 400),
        ("DELETE", cm, {"propagationPolicy": 5}, JSON, 400),
        ("DELETE", f"{cm}?gracePeriodSeconds=abc", None, None, 400),
        ("DELETE", f"{po}?gracePeriodSeconds={2**63}", None, None, 400),
        ("GET", f"{configmaps}?limit={2**63}", None, None, 400),
        ("GET", f"{configmaps}?limit=abc", None, None, 400),
        ("GET", f"{configmaps}?resourceVersion={2**63}", None, None, 400),
        ("GET", f"{configmaps}?resourceVersion=-1", None, None, 400),
        ("GET", f"{configmaps}?continue=garbage", None, None, 400),
        ("GET", f"{configmaps}?watch=1&timeoutSeconds=nan", None, None, 400),
        ("GET", f"{configmaps}?watch=1&timeoutSeconds=1{'0' * 400}", None, None, 400),
        ("GET", f"{configmaps}?labelSelector=a%20in%20(", None, None, 400),
        ("GET", f"{configmaps}?fieldSelector=nope%3D1", None, None, 400),
    ]:
        unchanged = po if "binding" in path else dep if path.startswith(dep) else cm
        rejected(cluster, method, path, body, headers, code=code, unchanged=unchanged)
    rejected(cluster, "POST", f"{configmaps}?fieldValidation=Bogus", configmap("fv"), code=400, unchanged=f"{configmaps}/fv")


def test_weird_paths(cluster: Cluster, namespace: str) -> None:
    configmaps = _url("ConfigMap", namespace)
    created(cluster, configmaps, configmap("cm"))
    cm = f"{configmaps}/cm"
    for method, path, body, code in [
        ("GET", "/api/v1/namespaces//pods", None, 404),
        ("POST", "/api/v1/namespaces//pods", pod("x"), 404),
        ("GET", "/apis/apps/v1/namespaces/x/deployments/y/z/w", None, 404),
        ("GET", f"{cm}/status", None, 404),
        ("GET", f"{configmaps}/cm%2Fx", None, 404),
        ("PUT", f"{configmaps}/cm%2Fx", configmap("cm"), 404),
        ("DELETE", f"{configmaps}/cm%2F..%2F..", None, 404),
        ("DELETE", f"{configmaps}/cm/..%2F..", None, 404),
        ("GET", f"{configmaps}/%00", None, 404),
        ("GET", "/apis/apps/v9/deployments", None, 404),
        ("GET", "/api/v1/nosuchthings", None, 404),
        ("PUT", cm, configmap("other"), 400),
        ("POST", cm, configmap("other"), 405),
        ("PUT", configmaps, configmap("cm"), 405),
        ("PATCH", configmaps, {"data": {}}, 405),
    ]:
        rejected(cluster, method, path, body, code=code, unchanged=cm)


# ---- fuzzing ---------------------------------------------------------------------------------------

JUNK: list[Any] = [
    None, "", "x" * 5000, "ünï ☃", "\u0000", -1, 0, 2**31, 2**63, 2**64 - 1, -(2**63), 1.5, -0.0, 1e308, True, False,
    [], {}, [None], {"": None}, {"$patch": "delete"}, {"$retainKeys": 5}, [[1]], {"a": {"b": [1, {"c": None}]}},
    "2024-13-45T99:99:99Z", "1Ki", "-1", "../..", json.loads("[" * 201 + "]" * 201),
]


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _paths(value, (*prefix, i))
    return found


def _mutate(rng: random.Random, obj: Obj) -> tuple[tuple[Any, ...], Any]:
    """Change `obj` in place at a random path: a type swap, a deletion or junk; returns (path, new value)."""
    path = rng.choice(_paths(obj))
    parent = obj
    for key in path[:-1]:
        parent = parent[key]
    action = rng.random()
    if action < 0.2:
        del parent[path[-1]]
        return path, None
    if action < 0.3 and isinstance(parent, dict):
        path = (*path[:-1], rng.choice(["bogus", "$patch", "a.b", ""]))
    value = rng.choice(JUNK) if action < 0.7 else rng.choice([str(rng.random()), rng.randint(-9, 9), [1, "a"], {"k": "v"}])
    parent[path[-1]] = copy.deepcopy(value)
    return path, value


def test_fuzzing_a_deployment_never_gets_a_5xx(cluster: Cluster, namespace: str) -> None:
    rng = random.Random(20261125)
    base = _url("Deployment", namespace)
    target = f"{base}/fz"
    current = created(cluster, base, deployment("fz"))
    started = time.monotonic()
    for i in range(300):
        op = rng.choice(["create", "put", "merge", "strategic", "json"])
        obj = deployment(f"fz-{i}") if op == "create" else copy.deepcopy(current)
        for _ in range(rng.randint(1, 3)):
            path, value = _mutate(rng, obj)
        if op == "create":
            method, url, body, headers = "POST", base, obj, JSON
        elif op == "put":
            method, url, body, headers = "PUT", target, obj, JSON
        elif op == "json":
            ops = [{"op": rng.choice(["add", "replace", "remove", "test"]), "path": pointer(path), "value": value}]
            method, url, body, headers = "PATCH", target, json.dumps(ops), JSON_PATCH
        else:
            method, url, headers = "PATCH", target, MERGE if op == "merge" else STRATEGIC
            body = {key: obj[key] for key in ("spec", "metadata") if key in obj and rng.random() < 0.7}
        resp = http(cluster, method, url, body, headers)
        what = f"#{i} {op} {path} = {str(value)[:80]} -> {resp.status} {resp.body[:300]!r}"
        assert resp.status < 500, what
        if resp.status >= 400:
            assert resp.json()["kind"] == "Status" and resp.json()["code"] == resp.status, what
            if op != "create":
                assert http(cluster, "GET", target).json() == current, f"{what}: changed"
        elif op != "create":
            current = resp.json()
    assert http(cluster, "GET", "/readyz").status == 200
    assert time.monotonic() - started < 15
