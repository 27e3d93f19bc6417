"""The Kubernetes 1.32 type schemas, from the `kubernetes-validate` package.

Its `_definitions.json` holds every API type as JSON Schema (`$defs`, refs as
`#/$defs/<name>`), with descriptions, `required`, the GVK of top-level kinds
and the strategic-merge metadata (`x-kubernetes-patch-merge-key`,
`x-kubernetes-patch-strategy`, `x-kubernetes-list-type`, ...). Everything the
API server derives from types (OpenAPI, strategic merge patch, strict field
validation) walks these through the helpers here. `schema_for` is the one
lookup by served resource: a custom resource's schema comes from its CRD.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from k8py.api.registry import ResourceInfo

Schema = dict[str, Any]
REF_PREFIX = "#/$defs/"


@functools.cache
def definitions() -> dict[str, Schema]:
    """Definition name (e.g. `io.k8s.api.core.v1.Pod`) -> schema."""
    path = resources.files("kubernetes_validate") / "kubernetes-json-schema" / "v1.32.0-local" / "_definitions.json"
    return orjson.loads(path.read_bytes())["$defs"]


@functools.cache
def _gvk_index() -> dict[tuple[str, str, str], str]:
    index: dict[tuple[str, str, str], str] = {}
    for name, schema in definitions().items():
        for gvk in schema.get("x-kubernetes-group-version-kind", ()):
            index.setdefault((gvk["group"], gvk["version"], gvk["kind"]), name)
    return index


def definition_name(group: str, version: str, kind: str) -> str | None:
    """The definition of a top-level kind, e.g. ("apps", "v1", "Deployment")."""
    return _gvk_index().get((group, version, kind))


def for_kind(group: str, version: str, kind: str) -> Schema | None:
    name = definition_name(group, version, kind)
    return definitions()[name] if name else None


def schema_for(info: ResourceInfo) -> Schema | None:
    """The type schema of a served resource: its kind's, or a CRD version's openAPIV3Schema in
    these walkers' dialect (`k8py.api.structural.typeschema`); None for a kind without one."""
    if info.custom is not None:
        return info.custom.type_schema
    return for_kind(info.group, info.version, info.kind)


def resolve(schema: Schema | None) -> Schema | None:
    """Follow `$ref` (and a single-element `allOf`) to the schema it names."""
    while schema is not None:
        ref = schema.get("$ref")
        if ref is None and len(schema.get("allOf", ())) == 1:
            ref = schema["allOf"][0].get("$ref")
        if ref is None:
            return schema
        schema = definitions().get(ref[len(REF_PREFIX) :])
    return None


def ref_name(schema: Schema) -> str | None:
    """The definition name a schema refers to, if it is a reference."""
    ref = schema.get("$ref")
    if ref is None and len(schema.get("allOf", ())) == 1:
        ref = schema["allOf"][0].get("$ref")
    return ref[len(REF_PREFIX) :] if ref else None


def types(schema: Schema) -> set[str]:
    """The JSON types a schema admits, without "null"."""
    t = schema.get("type")
    if t is None:
        return set()
    if isinstance(t, str):
        return {t}
    return {x for x in t if x != "null"}


def property_schema(schema: Schema | None, name: str) -> Schema | None:
    """The (resolved) schema of property `name` of an object schema.

    Properties not declared fall back to `additionalProperties` (maps)."""
    schema = resolve(schema)
    if schema is None:
        return None
    props = schema.get("properties")
    if props and name in props:
        return props[name]
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        return extra
    return None


def items_schema(schema: Schema | None) -> Schema | None:
    """The schema of an array's items."""
    schema = resolve(schema)
    if schema is None:
        return None
    items = schema.get("items")
    return items if isinstance(items, dict) else None


def is_open(schema: Schema | None) -> bool:
    """True when the schema says nothing about its content (any JSON is valid),
    as for RawExtension or a type with no properties and no type."""
    schema = resolve(schema)
    if schema is None:
        return True
    return not schema.get("properties") and not schema.get("additionalProperties") and not schema.get("type")
