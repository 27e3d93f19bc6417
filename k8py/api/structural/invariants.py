"""Is a CRD schema structural, and are its defaults valid? kube's `ValidateStructural` and `ValidateDefaults`.

A structural schema (apiextensions-apiserver `pkg/apiserver/schema`) splits every
node in two: the structural part (type, properties, items, additionalProperties,
description, title, default, nullable and the `x-kubernetes-*` extensions), which
must fully describe the data, and value validations (format, bounds, enum,
pattern, required, allOf/anyOf/oneOf/not), whose nested schemas may only restrict
what the structural part declares. `validate_structural` reports what breaks that
(sorted by message, as upstream sorts its map-ordered findings):

- a node without `type` (unless int-or-string or preserve-unknown-fields), arrays
  without `items`, a root that is not an object, additionalProperties at the root;
- anything but name/generateName restrictions on the root's metadata, a
  non-string apiVersion/kind, embedded resources that are not objects;
- in nested value validations: types, defaults, descriptions, extensions, metadata,
  additionalProperties, and properties or items the structural part lacks
  (with the two IntOrString patterns of `anyOf: [{type: integer}, {type: string}]`);
- patterns that do not compile.

`validate_defaults` checks each `default` (outside additionalProperties) against
its own node: pruned (no unknown fields) and valid, with the node's messages under
`<path>.default`.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from k8py.api.structural import pruning
from k8py.api.structural import validate as values
from k8py.api.validation import field as fields

Schema = dict[str, Any]
Cause = dict[str, str]

ROOT, ITEM, FIELD = "root", "item", "field"
_INT_OR_STRING = [{"type": "integer"}, {"type": "string"}]
_EXTENSIONS = (
    ("x-kubernetes-preserve-unknown-fields", "must be false to be structural"),
    ("x-kubernetes-embedded-resource", "must be false to be structural"),
    ("x-kubernetes-int-or-string", "must be false to be structural"),
    ("x-kubernetes-list-map-keys", "must be empty to be structural"),
    ("x-kubernetes-list-type", "must be undefined to be structural"),
    ("x-kubernetes-map-type", "must be undefined to be structural"),
    ("x-kubernetes-validations", "must be empty to be structural"),
)


def _dict(value: Any) -> Schema | None:
    return value if isinstance(value, dict) else None


def _props(s: Schema) -> dict[str, Schema]:
    props = s.get("properties")
    return {k: v for k, v in props.items() if isinstance(v, dict)} if isinstance(props, dict) else {}


def _error_key(c: Cause) -> str:
    return f"{c['field']}: {c['message']}"


def _junctors(s: Schema, path: str) -> list[tuple[Schema, str]]:
    out = []
    for key in ("allOf", "anyOf", "oneOf"):
        for i, sub in enumerate(s.get(key) or []):
            if isinstance(sub, dict):
                out.append((sub, f"{path}.{key}[{i}]"))
    if isinstance(s.get("not"), dict):
        out.append((s["not"], f"{path}.not"))
    return out


def _int_or_string_any_of(s: Schema) -> bool:
    return s.get("anyOf") == _INT_OR_STRING


def _int_or_string_all_of(s: Schema) -> bool:
    all_of = s.get("allOf")
    return isinstance(all_of, list) and bool(all_of) and isinstance(all_of[0], dict) and all_of[0].get("anyOf") == _INT_OR_STRING


def _value_validation(s: Schema, path: str, skip_any_of: bool, skip_first_all_of_any_of: bool) -> list[Cause]:
    """validateValueValidation: the nested schemas of a node's junctors, and its pattern."""
    out: list[Cause] = []
    if not skip_any_of:
        for i, sub in enumerate(s.get("anyOf") or []):
            if isinstance(sub, dict):
                out += _nested(sub, f"{path}.anyOf[{i}]", False)
    for i, sub in enumerate(s.get("allOf") or []):
        if isinstance(sub, dict):
            out += _nested(sub, f"{path}.allOf[{i}]", skip_first_all_of_any_of and i == 0)
    for i, sub in enumerate(s.get("oneOf") or []):
        if isinstance(sub, dict):
            out += _nested(sub, f"{path}.oneOf[{i}]", False)
    if isinstance(s.get("not"), dict):
        out += _nested(s["not"], f"{path}.not", False)
    pattern = s.get("pattern")
    if isinstance(pattern, str) and pattern:
        try:
            re.compile(pattern)
        except re.error as e:
            out.append(fields.invalid(f"{path}.pattern", pattern, f"must be a valid regular expression, but isn't: {e}"))
    return out


def _nested(v: Schema, path: str, skip_any_of: bool) -> list[Cause]:
    """validateNestedValueValidation: what a schema under allOf/anyOf/oneOf/not may not say."""
    out = _value_validation(v, path, skip_any_of, False)
    if isinstance(v.get("items"), dict):
        out += _nested(v["items"], f"{path}.items", False)
    for key, sub in _props(v).items():
        out += _nested(sub, f"{path}.properties[{key}]", False)
    if v.get("type"):
        out.append(fields.forbidden(f"{path}.type", "must be empty to be structural"))
    if "additionalProperties" in v:
        out.append(fields.forbidden(f"{path}.additionalProperties", "must be undefined to be structural"))
    if "default" in v:
        out.append(fields.forbidden(f"{path}.default", "must be undefined to be structural"))
    for key, why in (("title", "must be empty"), ("description", "must be empty"), ("nullable", "must be false"),
                     ("externalDocs", "must be undefined")):
        if v.get(key):
            out.append(fields.forbidden(f"{path}.{key}", f"{why} to be structural"))
    for key, why in _EXTENSIONS:
        if v.get(key):
            out.append(fields.forbidden(f"{path}.{key}", why))
    if "metadata" in _props(v):
        out.append(fields.forbidden(f"{path}.properties[metadata]", "must not be specified in a nested context"))
    return out


def _metadata(s: Schema, check: bool, level: str, path: str) -> list[Cause]:
    out: list[Cause] = []
    if check and s.get("type") != "object":
        out.append(fields.invalid(f"{path}.type", s.get("type", ""), "must be object"))
    if level == ROOT:
        props = s.get("properties")
        only_names = isinstance(props, dict) and bool(props) and set(props) <= {"name", "generateName"}
        rest = {k: v for k, v in s.items() if k not in ("type", "default") and not (k == "properties" and only_names)}
        if any(v not in (None, False, "", [], {}) for v in rest.values()):
            out.append(
                fields.forbidden(
                    path, "must not specify anything other than name and generateName, but metadata is implicitly specified"
                )
            )
    return out


def _invariants(s: Schema, level: str, path: str) -> list[Cause]:
    """validateStructuralInvariants of one node and its structural children."""
    out: list[Cause] = []
    node_type = s.get("type") or ""
    if node_type == "array" and not isinstance(s.get("items"), dict):
        out.append(fields.required(f"{path}.items", "must be specified"))
    if isinstance(s.get("items"), dict):
        out += _invariants(s["items"], ITEM, f"{path}.items")
    for key, sub in _props(s).items():
        out += _invariants(sub, FIELD, f"{path}.properties[{key}]")
    if "additionalProperties" in s:
        if level == ROOT:
            out.append(fields.forbidden(f"{path}.additionalProperties", "must not be used at the root"))
        if isinstance(s["additionalProperties"], dict):
            out += _invariants(s["additionalProperties"], FIELD, f"{path}.additionalProperties")
    int_or_string = bool(s.get("x-kubernetes-int-or-string"))
    embedded = bool(s.get("x-kubernetes-embedded-resource"))
    preserve = bool(s.get("x-kubernetes-preserve-unknown-fields"))
    if int_or_string and preserve:
        out.append(fields.invalid(f"{path}.x-kubernetes-preserve-unknown-fields", True, "must be false if x-kubernetes-int-or-string is true"))
    if int_or_string and embedded:
        out.append(fields.invalid(f"{path}.x-kubernetes-embedded-resource", True, "must be false if x-kubernetes-int-or-string is true"))
    out += _value_validation(s, path, _int_or_string_any_of(s), _int_or_string_all_of(s))
    if embedded and node_type != "object":
        if not node_type:
            out.append(fields.required(f"{path}.type", "must be object if x-kubernetes-embedded-resource is true"))
        else:
            out.append(fields.invalid(f"{path}.type", node_type, "must be object if x-kubernetes-embedded-resource is true"))
    elif not node_type and not int_or_string and not preserve:
        where = {ROOT: "at the root", ITEM: "for specified array items", FIELD: "for specified object fields"}[level]
        out.append(fields.required(f"{path}.type", f"must not be empty {where}"))
    if embedded and "additionalProperties" in s:
        out.append(fields.forbidden(f"{path}.additionalProperties", "must not be used if x-kubernetes-embedded-resource is set"))
    if level == ROOT and node_type and node_type != "object":
        out.append(fields.invalid(f"{path}.type", node_type, "must be object at the root"))
    check_metadata = level == ROOT or embedded
    props = _props(s)
    for key in ("kind", "apiVersion"):
        if key in props and check_metadata and props[key].get("type") != "string":
            out.append(fields.invalid(f"{path}.properties[{key}].type", props[key].get("type", ""), "must be string"))
    if "metadata" in props:
        out += _metadata(props["metadata"], check_metadata, level, f"{path}.properties[metadata]")
    if embedded and not preserve and not props:
        out.append(
            fields.required(
                f"{path}.properties",
                "must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields",
            )
        )
    return out


def _complete(v: Schema, s: Schema, s_path: str, v_path: str) -> list[Cause]:
    """validateValueValidationCompleteness: the junctors of `v`, a value validation applying to `s`."""
    out: list[Cause] = []
    for sub, sub_path in _junctors(v, v_path):
        out += _nested_complete(sub, s, s_path, sub_path)
    return out


def _nested_complete(v: Schema, s: Schema | None, s_path: str, v_path: str) -> list[Cause]:
    """What a nested value validation names (properties, items) must exist in the structural part."""
    if s is None:
        return [fields.required(s_path, f"because it is defined in {v_path}")]
    out = _complete(v, s, s_path, v_path)
    if isinstance(v.get("items"), dict):
        out += _nested_complete(v["items"], _dict(s.get("items")), f"{s_path}.items", f"{v_path}.items")
    s_props = _props(s)
    for key, sub in _props(v).items():
        out += _nested_complete(sub, s_props.get(key), f"{s_path}.properties[{key}]", f"{v_path}.properties[{key}]")
    return out


def validate_structural(schema: Schema, path: str) -> list[Cause]:
    """Why `schema` (an openAPIV3Schema at `path`) is not structural; [] when it is."""
    found = _invariants(schema, ROOT, path) + _complete(schema, schema, path, path)
    return sorted(found, key=_error_key)


def _defaults(s: Schema, path: str) -> list[Cause]:
    out: list[Cause] = []
    if "default" in s:
        default = s["default"]
        if pruning.prune(copy.deepcopy(default), s, resource=bool(s.get("x-kubernetes-embedded-resource"))):
            out.append(fields.invalid(f"{path}.default", default, "must not have unknown fields"))
        out += values.validate(s, default, field=f"{path}.default")
    if isinstance(s.get("items"), dict):
        out += _defaults(s["items"], f"{path}.items")
    for key, sub in _props(s).items():
        out += _defaults(sub, f"{path}.properties[{key}]")
    return out


def validate_defaults(schema: Schema, path: str) -> list[Cause]:
    """Defaults that are not pruned or do not validate against their own schema node."""
    return _defaults(schema, path)
