"""The OpenAPI v3 definitions of a custom resource version, as kube's CRD OpenAPI builder publishes them.

`k8py.apiserver.openapi` builds a custom resource's paths like any resource's;
this module supplies the two component schemas those paths refer to
(apiextensions `controller/openapi/builder`):

- the kind, named like kube's REST-friendly name (`com.example.stable.v1.CronTab`):
  the version's openAPIV3Schema with `metadata` a reference to ObjectMeta,
  `apiVersion` and `kind` described as TypeMeta's, the same three on every
  `x-kubernetes-embedded-resource` (which also requires apiVersion and kind),
  `x-kubernetes-int-or-string` unfolded into `anyOf: [integer, string]`, and its
  `x-kubernetes-group-version-kind`. kubectl explain reads these, and kubectl
  finds the operations' `fieldValidation` parameter by that GVK;
- the list kind: `items` of that kind and ListMeta `metadata`.

A version without a schema publishes a bare `type: object`.
"""

from __future__ import annotations

import functools
from typing import Any

from k8py.api import schema as schemas
from k8py.api.registry import ResourceInfo

Schema = dict[str, Any]

REF_PREFIX = "#/components/schemas/"
OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
LIST_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"
_OBJECT_META_DOC = (
    "Standard object's metadata. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"
)
_LIST_META_DOC = (
    "Standard list metadata. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"
)
_EMBEDDED_API_VERSION_DOC = (
    "apiVersion defines the versioned schema of this representation of an object. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources"
)
_EMBEDDED_KIND_DOC = (
    "kind is a string value representing the type of this object. In CamelCase. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"
)
_INT_OR_STRING = [{"type": "integer"}, {"type": "string"}]


def definition_name(group: str, version: str, kind: str) -> str:
    """util.ToRESTFriendlyName("<group>/<version>.<kind>"): the group's labels reversed."""
    return ".".join([*reversed(group.split(".")), version, kind])


@functools.cache
def _type_meta() -> dict[str, Schema]:
    """TypeMeta's apiVersion and kind, as every kind's schema describes them."""
    pod = schemas.definitions()["io.k8s.api.core.v1.Pod"]["properties"]
    return {key: {"description": pod[key]["description"], "type": "string"} for key in ("apiVersion", "kind")}


def _ref(name: str, description: str) -> Schema:
    return {"allOf": [{"$ref": REF_PREFIX + name}], "description": description}


def _publish(s: Schema) -> Schema:
    out: Schema = {}
    for key, value in s.items():
        if key == "properties" and isinstance(value, dict):
            out[key] = {name: _publish(sub) for name, sub in value.items() if isinstance(sub, dict)}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = _publish(value)
        elif key in ("allOf", "anyOf", "oneOf") and isinstance(value, list):
            out[key] = [_publish(sub) for sub in value if isinstance(sub, dict)]
        else:
            out[key] = value
    all_of = out.get("allOf") or [{}]
    if s.get("x-kubernetes-int-or-string") and out.get("anyOf") != _INT_OR_STRING and all_of[0].get("anyOf") != _INT_OR_STRING:
        if "anyOf" in out:
            out["allOf"] = [{"anyOf": _INT_OR_STRING}, *out.get("allOf", [])]
        else:
            out["anyOf"] = _INT_OR_STRING
    if s.get("x-kubernetes-embedded-resource"):
        out["properties"] = {
            **out.get("properties", {}),
            "apiVersion": {**_type_meta()["apiVersion"], "description": _EMBEDDED_API_VERSION_DOC},
            "kind": {**_type_meta()["kind"], "description": _EMBEDDED_KIND_DOC},
            "metadata": _ref(OBJECT_META, _OBJECT_META_DOC),
        }
        required = list(out.get("required") or [])
        out["required"] = required + [k for k in ("kind", "apiVersion") if k not in required]
    return out


def definitions(info: ResourceInfo) -> dict[str, Schema]:
    """The component schemas of a custom resource version: its kind and its list kind."""
    assert info.custom is not None
    group, version, kind, list_kind = info.group, info.version, info.kind, info.list_kind
    name = definition_name(group, version, kind)
    if info.custom.schema is None:
        root: Schema = {"type": "object"}
    else:
        root = _publish(info.custom.schema)
        root["properties"] = {
            **root.get("properties", {}),
            "metadata": _ref(OBJECT_META, _OBJECT_META_DOC),
            **_type_meta(),
        }
    root["x-kubernetes-group-version-kind"] = [{"group": group, "kind": kind, "version": version}]
    listing: Schema = {
        "description": f"{list_kind} is a list of {kind}",
        "properties": {
            **_type_meta(),
            "items": {
                "description": f"List of {info.resource}. More info: "
                "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md",
                "items": {"$ref": REF_PREFIX + name},
                "type": "array",
            },
            "metadata": _ref(LIST_META, _LIST_META_DOC),
        },
        "required": ["items"],
        "x-kubernetes-group-version-kind": [{"group": group, "kind": list_kind, "version": version}],
    }
    return {name: root, definition_name(group, version, list_kind): listing}
