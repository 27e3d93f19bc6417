"""A CRD version's schema in the dialect of `k8py.api.schema`'s walkers (`schema_for`).

Patches, server-side apply and anything else that walks kubernetes-validate's
schemas (`properties`, `items`, `additionalProperties`, `$ref` into the 1.32
definitions, `x-kubernetes-*`) get a custom resource's openAPIV3Schema with the
differences closed that would make them see it otherwise than kube does:

- an object schema declaring neither properties nor additionalProperties nor
  `x-kubernetes-preserve-unknown-fields` holds no fields at all for kube (it
  prunes them); the walkers would take it for an opaque object (RawExtension), so
  it gets an empty `properties`;
- `apiVersion`, `kind` and `metadata` of the resource, and of every
  `x-kubernetes-embedded-resource`, are TypeMeta and ObjectMeta: strings and a
  `$ref` to ObjectMeta (managedFields, ownerReferences and the rest are known);
- value validations (allOf/anyOf/oneOf/not) say nothing of structure and are left out.

The root also carries `x-kubernetes-group-version-kind`, as every kind's schema does.
Decoding (pruning, defaulting) and validation use the CRD's schema itself
(`k8py.api.structural.pruning`, `defaulting`, `validate`).
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

OBJECT_META = {"$ref": "#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
_STRING = {"type": "string"}


def _convert(s: Schema, resource: bool) -> Schema:
    out: Schema = {}
    for key, value in s.items():
        if key == "properties" and isinstance(value, dict):
            out[key] = {name: _convert(sub, False) for name, sub in value.items() if isinstance(sub, dict)}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = _convert(value, False)
        elif key not in ("allOf", "anyOf", "oneOf", "not"):
            out[key] = value
    if resource or s.get("x-kubernetes-embedded-resource"):
        out["properties"] = {
            "apiVersion": _STRING,
            "kind": _STRING,
            **out.get("properties", {}),
            "metadata": OBJECT_META,
        }
    elif (
        s.get("type") == "object"
        and "properties" not in out
        and "additionalProperties" not in out
        and not s.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["properties"] = {}
    return out


def type_schema(schema: Schema | None, group: str, version: str, kind: str) -> Schema:
    """The walkers' schema of a custom resource whose version declares `schema` (None: anything goes)."""
    root = _convert(schema if schema is not None else {"x-kubernetes-preserve-unknown-fields": True}, True)
    root["x-kubernetes-group-version-kind"] = [{"group": group, "kind": kind, "version": version}]
    return root
