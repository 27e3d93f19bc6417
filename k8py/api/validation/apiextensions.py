"""apiextensions.k8s.io/v1 CustomResourceDefinitions (apiextensions-apiserver `apis/apiextensions/validation`).

kube validates a v1 CRD in its internal form, which the v1 conversion builds by
hoisting a per-version `schema`, `subresources`, `additionalPrinterColumns` or
`selectableFields` to the top level when every version carries the same one. So
the paths of kube's causes are internal ones, and this module reproduces them:
with one version (or identical schemas) a schema error reads
`spec.validation.openAPIV3Schema.properties[spec].type: Required value: ...`,
otherwise `spec.versions[1].schema.openAPIV3Schema...`; likewise
`spec.subresources.scale.specReplicasPath` and `spec.additionalPrinterColumns[0].JSONPath`
(kube's spelling), and the conversion webhook as `spec.conversion.webhookClientConfig`.

Checked, as upstream: the name (plural.group), group, scope, versions (DNS-1035
names, unique, exactly one storage version), names (spec and status.acceptedNames),
every schema (an OpenAPI v3 subset: no $ref, additionalItems, patternProperties,
definitions, dependencies, uniqueItems or `type: null`; additionalProperties and
properties exclusive; the x-kubernetes-* extensions coherent; structural, with
valid and pruned defaults: `k8py.api.structural.invariants`; a root fit for a
status subresource), subresources' JSON paths, printer columns, selectable fields,
conversion settings, storedVersions, the API-approval annotation of *.k8s.io
groups, and immutability of group and plural (and of scope and kind once
Established).

`x-kubernetes-validations` rules are checked for what needs no CEL (a rule is
given, messages are single-line, reasons are known) and accepted, but k8py does
not evaluate CEL: `warnings` tells the client so on every create and update of a
CRD that has rules, and likewise that conversion webhooks are not called.

A CRD whose JSON does not even have the field types of a CRD (a string where a
list belongs, ...) fails as kube fails to decode it: 400 BadRequest.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from k8py.api import errors
from k8py.api.structural import invariants, pruning
from k8py.api.validation.field import (
    Cause,
    duplicate,
    forbidden,
    immutable,
    invalid,
    not_supported,
    required,
    too_many,
)
from k8py.api.validation.meta import Obj, validate_object_meta, validate_object_meta_update
from k8py.api.validation.names import is_dns1035_label, is_dns1123_subdomain, name_is_dns_subdomain

Schema = dict[str, Any]

PRINTER_COLUMN_TYPES = ("boolean", "date", "integer", "number", "string")
PRINTER_COLUMN_FORMATS = ("byte", "date", "date-time", "double", "float", "int32", "int64", "password")
OPENAPI_TYPES = ("array", "boolean", "integer", "number", "object", "string")
RULE_REASONS = ("FieldValueDuplicate", "FieldValueForbidden", "FieldValueInvalid", "FieldValueRequired")
MAX_SELECTABLE_FIELDS = 8
APPROVAL_ANNOTATION = "api-approved.kubernetes.io"
# JSONSchemaProps fields allowed at the root when the status subresource is enabled, in Go field order.
_ROOT_FIELDS = (
    ("Description", "description"), ("Type", "type"), ("Format", "format"), ("Title", "title"),
    ("Maximum", "maximum"), ("ExclusiveMaximum", "exclusiveMaximum"), ("Minimum", "minimum"),
    ("ExclusiveMinimum", "exclusiveMinimum"), ("MaxLength", "maxLength"), ("MinLength", "minLength"),
    ("Pattern", "pattern"), ("MaxItems", "maxItems"), ("MinItems", "minItems"), ("UniqueItems", "uniqueItems"),
    ("MultipleOf", "multipleOf"), ("Required", "required"), ("Items", "items"), ("Properties", "properties"),
    ("ExternalDocs", "externalDocs"), ("Example", "example"),
    ("XPreserveUnknownFields", "x-kubernetes-preserve-unknown-fields"), ("XValidations", "x-kubernetes-validations"),
)
_ALLOWED_AT_ROOT = {key for _, key in _ROOT_FIELDS}


# ---- decoding: the field types a CRD must have ---------------------------------------------------

_STR, _BOOL, _INT, _NUM, _LIST, _DICT = "string", "bool", "int64", "float64", "[]interface {}", "map[string]interface {}"
_SCHEMA_FIELDS = {
    "id": _STR, "$schema": _STR, "$ref": _STR, "description": _STR, "type": _STR, "format": _STR, "title": _STR,
    "maximum": _NUM, "exclusiveMaximum": _BOOL, "minimum": _NUM, "exclusiveMinimum": _BOOL, "maxLength": _INT,
    "minLength": _INT, "pattern": _STR, "maxItems": _INT, "minItems": _INT, "uniqueItems": _BOOL,
    "multipleOf": _NUM, "maxProperties": _INT, "minProperties": _INT, "required": _LIST, "enum": _LIST,
    "allOf": _LIST, "oneOf": _LIST, "anyOf": _LIST, "properties": _DICT, "patternProperties": _DICT,
    "definitions": _DICT, "dependencies": _DICT, "externalDocs": _DICT, "nullable": _BOOL,
    "x-kubernetes-preserve-unknown-fields": _BOOL, "x-kubernetes-embedded-resource": _BOOL,
    "x-kubernetes-int-or-string": _BOOL, "x-kubernetes-list-map-keys": _LIST, "x-kubernetes-list-type": _STR,
    "x-kubernetes-map-type": _STR, "x-kubernetes-validations": _LIST,
}


def _fits(value: Any, go_type: str) -> bool:
    if value is None:
        return True
    if go_type == _STR:
        return isinstance(value, str)
    if go_type == _BOOL:
        return isinstance(value, bool)
    if go_type == _INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if go_type == _NUM:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if go_type == _LIST:
        return isinstance(value, list)
    return isinstance(value, dict)


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object" if isinstance(value, dict) else "value"


def _bad(path: str, value: Any, go_type: str) -> errors.StatusError:
    return errors.bad_request(
        'CustomResourceDefinition in version "v1" cannot be handled as a CustomResourceDefinition: '
        f"json: cannot unmarshal {_json_kind(value)} into Go struct field {path} of type {go_type}"
    )


def _check_schema(s: Any, path: str) -> None:
    if not isinstance(s, dict):
        raise _bad(path, s, "v1.JSONSchemaProps")
    for key, go_type in _SCHEMA_FIELDS.items():
        if key in s and not _fits(s[key], go_type):
            raise _bad(f"{path}.{key}", s[key], go_type)
    for key in ("properties", "patternProperties", "definitions"):
        for name, sub in (s.get(key) or {}).items():
            _check_schema(sub, f"{path}.{key}.{name}")
    for key in ("allOf", "oneOf", "anyOf"):
        for sub in s.get(key) or []:
            _check_schema(sub, f"{path}.{key}")
    for key in ("not", "additionalItems", "additionalProperties"):
        if s.get(key) is not None and not isinstance(s[key], bool):
            _check_schema(s[key], f"{path}.{key}")
    items = s.get("items")
    for sub in items if isinstance(items, list) else [items] if items is not None else []:
        _check_schema(sub, f"{path}.items")
    for key in ("required", "x-kubernetes-list-map-keys"):
        for item in s.get(key) or []:
            if not isinstance(item, str):
                raise _bad(f"{path}.{key}", item, _STR)
    for rule in s.get("x-kubernetes-validations") or []:
        if not isinstance(rule, dict) or not all(isinstance(v, str | bool | None) for v in rule.values()):
            raise _bad(f"{path}.x-kubernetes-validations", rule, "v1.ValidationRule")


def _check_decodable(crd: Obj) -> None:
    """Raise kube's 400 for a body that does not decode into a CustomResourceDefinition."""
    spec = crd.get("spec")
    if not _fits(spec, _DICT):
        raise _bad("CustomResourceDefinition.spec", spec, "v1.CustomResourceDefinitionSpec")
    spec = spec or {}
    for key, go_type in (("group", _STR), ("scope", _STR), ("preserveUnknownFields", _BOOL), ("names", _DICT),
                         ("versions", _LIST), ("conversion", _DICT)):
        if not _fits(spec.get(key), go_type):
            raise _bad(f"CustomResourceDefinition.spec.{key}", spec[key], go_type)
    for names in (spec.get("names"), (crd.get("status") or {}).get("acceptedNames")):
        for key, value in (names or {}).items():
            expected = _LIST if key in ("shortNames", "categories") else _STR
            if not _fits(value, expected) or (expected == _LIST and not all(isinstance(v, str) for v in value)):
                raise _bad(f"CustomResourceDefinition.spec.names.{key}", value, expected)
    for version in spec.get("versions") or []:
        if not isinstance(version, dict):
            raise _bad("CustomResourceDefinition.spec.versions", version, "v1.CustomResourceDefinitionVersion")
        for key, go_type in (("name", _STR), ("served", _BOOL), ("storage", _BOOL), ("deprecated", _BOOL),
                             ("deprecationWarning", _STR), ("schema", _DICT), ("subresources", _DICT),
                             ("additionalPrinterColumns", _LIST), ("selectableFields", _LIST)):
            if not _fits(version.get(key), go_type):
                raise _bad(f"CustomResourceDefinition.spec.versions.{key}", version[key], go_type)
        for key in ("additionalPrinterColumns", "selectableFields"):
            for item in version.get(key) or []:
                if not isinstance(item, dict):
                    raise _bad(f"CustomResourceDefinition.spec.versions.{key}", item, _DICT)
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        if schema is not None:
            _check_schema(schema, "CustomResourceDefinition.spec.versions.schema.openAPIV3Schema")
    status = crd.get("status")
    if not _fits(status, _DICT) or not _fits((status or {}).get("storedVersions"), _LIST):
        raise _bad("CustomResourceDefinition.status", status, "v1.CustomResourceDefinitionStatus")


# ---- the internal view ---------------------------------------------------------------------------


def _versions(spec: Obj) -> list[Obj]:
    return [v for v in spec.get("versions") or [] if isinstance(v, dict)]


def _hoisted(spec: Obj, key: str) -> Any:
    """The version field every version shares (the internal top-level field), else None."""
    versions = _versions(spec)
    if not versions or not versions[0].get(key):
        return None
    first = versions[0][key]
    return first if all(v.get(key) == first for v in versions) else None


def _schema_of(container: Any) -> Schema | None:
    schema = (container or {}).get("openAPIV3Schema")
    return schema if isinstance(schema, dict) else None


def _status_enabled(subresources: Any) -> bool:
    return isinstance(subresources, dict) and subresources.get("status") is not None


def _walk(s: Schema) -> Iterator[Schema]:
    yield s
    for key in ("properties", "patternProperties", "definitions"):
        for sub in (s.get(key) or {}).values():
            yield from _walk(sub)
    for key in ("allOf", "oneOf", "anyOf"):
        for sub in s.get(key) or []:
            yield from _walk(sub)
    for key in ("not", "additionalProperties", "additionalItems"):
        if isinstance(s.get(key), dict):
            yield from _walk(s[key])
    items = s.get("items")
    for sub in items if isinstance(items, list) else [items] if isinstance(items, dict) else []:
        yield from _walk(sub)


def _schemas(spec: Obj) -> Iterator[tuple[str, Schema]]:
    for i, version in enumerate(_versions(spec)):
        schema = _schema_of(version.get("schema"))
        if schema is not None:
            yield f"spec.versions[{i}].schema.openAPIV3Schema", schema


# ---- the schema, as an OpenAPI v3 subset ---------------------------------------------------------


class _Opts:
    """specStandardValidatorV3's state while recursing."""

    def __init__(self, allow_defaults: bool = True, reason: str = "", inside_meta: bool = False) -> None:
        self.allow_defaults, self.reason, self.inside_meta = allow_defaults, reason, inside_meta

    def no_defaults(self, reason: str) -> _Opts:
        return _Opts(False, reason, self.inside_meta)

    def in_meta(self) -> _Opts:
        return _Opts(self.allow_defaults, self.reason, True)


def _standard(s: Schema, path: str, o: _Opts) -> list[Cause]:
    out: list[Cause] = []
    node_type = s.get("type") or ""
    if node_type and node_type not in OPENAPI_TYPES and node_type != "null":
        out.append(not_supported(f"{path}.type", node_type, OPENAPI_TYPES))
    if "default" in s and not o.allow_defaults:
        out.append(forbidden(f"{path}.default", "must not be set" + (f" {o.reason}" if o.reason else "")))
    if s.get("id"):
        out.append(forbidden(f"{path}.id", "id is not supported"))
    for key in ("additionalItems", "patternProperties", "definitions", "dependencies"):
        if s.get(key) is not None and (key == "additionalItems" or s[key]):
            out.append(forbidden(f"{path}.{key}", f"{key} is not supported"))
    if "$ref" in s and s["$ref"] is not None:
        out.append(forbidden(f"{path}.$ref", "$ref is not supported"))
    if node_type == "null":
        out.append(forbidden(f"{path}.type", "type cannot be set to null, use nullable as an alternative"))
    if isinstance(s.get("items"), list):
        out.append(forbidden(f"{path}.items", "items must be a schema object and not an array"))
    if o.inside_meta and s.get("x-kubernetes-embedded-resource"):
        out.append(forbidden(f"{path}.x-kubernetes-embedded-resource", "must not be used inside of resource meta"))
    return out


def _list_and_map_types(s: Schema, path: str) -> list[Cause]:
    out: list[Cause] = []
    node_type = s.get("type") or ""
    map_type, list_type, keys = s.get("x-kubernetes-map-type"), s.get("x-kubernetes-list-type"), s.get("x-kubernetes-list-map-keys") or []
    items = s.get("items") if isinstance(s.get("items"), dict) else None
    if map_type is not None and node_type != "object":
        out.append(
            required(f"{path}.type", "must be object if x-kubernetes-map-type is specified")
            if not node_type
            else invalid(f"{path}.type", node_type, "must be object if x-kubernetes-map-type is specified")
        )
    if map_type is not None and map_type not in ("atomic", "granular"):
        out.append(not_supported(f"{path}.x-kubernetes-map-type", map_type, ("atomic", "granular")))
    if list_type is not None and node_type != "array":
        out.append(
            required(f"{path}.type", "must be array if x-kubernetes-list-type is specified")
            if not node_type
            else invalid(f"{path}.type", node_type, "must be array if x-kubernetes-list-type is specified")
        )
    elif list_type == "set" and items is not None:
        if items.get("type") == "array" and items.get("x-kubernetes-list-type") not in (None, "atomic"):
            out.append(invalid(f"{path}.items.x-kubernetes-list-type", items.get("x-kubernetes-list-type"),
                               "must be atomic as item of a list with x-kubernetes-list-type=set"))
        if items.get("type") == "object" and items.get("x-kubernetes-map-type") != "atomic":
            out.append(invalid(f"{path}.items.x-kubernetes-map-type", items.get("x-kubernetes-list-type"),
                               "must be atomic as item of a list with x-kubernetes-list-type=set"))
    if list_type is not None and list_type not in ("atomic", "set", "map"):
        out.append(not_supported(f"{path}.x-kubernetes-list-type", list_type, ("atomic", "set", "map")))
    if keys:
        if list_type is None:
            out.append(required(f"{path}.x-kubernetes-list-type", "must be map if x-kubernetes-list-map-keys is non-empty"))
        elif list_type != "map":
            out.append(invalid(f"{path}.x-kubernetes-list-type", list_type, "must be map if x-kubernetes-list-map-keys is non-empty"))
    if list_type == "map":
        if not keys:
            out.append(required(f"{path}.x-kubernetes-list-map-keys", "must not be empty if x-kubernetes-list-type is map"))
        if s.get("items") is None:
            out.append(required(f"{path}.items", "must have a schema if x-kubernetes-list-type is map"))
        elif items is None:
            out.append(invalid(f"{path}.items", s["items"], "must only have a single schema if x-kubernetes-list-type is map"))
        elif items.get("type") != "object":
            out.append(invalid(f"{path}.items.type", items.get("type", ""), "must be object if parent array's x-kubernetes-list-type is map"))
        else:
            props = items.get("properties") or {}
            seen: set[str] = set()
            for key in keys:
                if key in props:
                    if props[key].get("type") in ("array", "object"):
                        out.append(invalid(f"{path}.items.properties[{key}].type", items.get("type"),
                                           "must be a scalar type if parent array's x-kubernetes-list-type is map"))
                else:
                    out.append(invalid(f"{path}.x-kubernetes-list-map-keys", keys, "entries must all be names of item properties"))
                if key in seen:
                    out.append(invalid(f"{path}.x-kubernetes-list-map-keys", keys, "must not contain duplicate entries"))
                seen.add(key)
    if list_type in ("set", "map") and items is not None:
        if items.get("nullable"):
            out.append(forbidden(f"{path}.items.nullable", f"cannot be nullable when x-kubernetes-list-type is {list_type}"))
        if list_type == "map":
            props = items.get("properties") or {}
            for key in keys:
                if key not in props:
                    continue
                if key not in (items.get("required") or []) and "default" not in props[key]:
                    out.append(required(f"{path}.items.properties[{key}].default",
                                        "this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property"))
                if props[key].get("nullable"):
                    out.append(forbidden(f"{path}.items.properties[{key}].nullable",
                                         "this property is in x-kubernetes-list-map-keys, so it cannot be nullable"))
    return out


def _rules(s: Schema, path: str) -> list[Cause]:
    """The checks of x-kubernetes-validations that need no CEL."""
    out: list[Cause] = []
    for i, rule in enumerate(s.get("x-kubernetes-validations") or []):
        rpath = f"{path}.x-kubernetes-validations[{i}]"
        text, message = (rule.get("rule") or "").strip(), rule.get("message") or ""
        if not text:
            out.append(required(f"{rpath}.rule", "rule is not specified"))
        elif message and not message.strip():
            out.append(invalid(f"{rpath}.message", message, "message must be non-empty if specified"))
        elif "\n" in message.strip() or "\r" in message.strip():
            out.append(invalid(f"{rpath}.message", message, "message must not contain line breaks"))
        elif ("\n" in text or "\r" in text) and not message.strip():
            out.append(required(f"{rpath}.message", "message must be specified if rule contains line breaks"))
        expression = rule.get("messageExpression") or ""
        if expression and not expression.strip():
            out.append(required(f"{rpath}.messageExpression", "messageExpression must be non-empty if specified"))
        reason = rule.get("reason")
        if reason is not None and reason not in RULE_REASONS:
            out.append(not_supported(f"{rpath}.reason", reason, RULE_REASONS))
        field_path = rule.get("fieldPath") or ""
        if field_path and not field_path.strip():
            out.append(invalid(f"{rpath}.fieldPath", field_path, "fieldPath must be non-empty if specified"))
        if "\n" in field_path or "\r" in field_path:
            out.append(invalid(f"{rpath}.fieldPath", field_path, "fieldPath must not contain line breaks"))
    return out


def _openapi_schema(s: Schema, path: str, o: _Opts, root: bool) -> list[Cause]:
    """ValidateCustomResourceDefinitionOpenAPISchema."""
    out = _standard(s, path, o)
    if s.get("uniqueItems"):
        out.append(forbidden(f"{path}.uniqueItems", "uniqueItems cannot be set to true since the runtime complexity becomes quadratic"))
    props = s.get("properties") or {}
    additional = s.get("additionalProperties")
    if additional is not None:
        if props and (additional is False or isinstance(additional, dict)):
            out.append(forbidden(f"{path}.additionalProperties", "additionalProperties and properties are mutual exclusive"))
        if isinstance(additional, dict):
            sub = o.no_defaults("inside additionalProperties applying to object metadata") if o.inside_meta else o
            out += _openapi_schema(additional, f"{path}.additionalProperties", sub, False)
    for name, sub_schema in props.items():
        sub = o
        if (root or s.get("x-kubernetes-embedded-resource")) and name in pruning.META_FIELDS:
            sub = sub.in_meta()
            if root:
                sub = sub.no_defaults(f"in top-level {name}")
        out += _openapi_schema(sub_schema, f"{path}.properties[{name}]", sub, False)
    if isinstance(s.get("not"), dict):
        out += _openapi_schema(s["not"], f"{path}.not", o, False)
    for key in ("allOf", "oneOf", "anyOf"):
        for i, sub_schema in enumerate(s.get(key) or []):
            out += _openapi_schema(sub_schema, f"{path}.{key}[{i}]", o, False)
    for name, sub_schema in (s.get("definitions") or {}).items():
        out += _openapi_schema(sub_schema, f"{path}.definitions[{name}]", o, False)
    items = s.get("items")
    if isinstance(items, dict):
        out += _openapi_schema(items, f"{path}.items", o, False)
    elif isinstance(items, list):
        for i, sub_schema in enumerate(items):
            out += _openapi_schema(sub_schema, f"{path}.items[{i}]", o, False)
    if s.get("x-kubernetes-preserve-unknown-fields") is False:
        out.append(invalid(f"{path}.x-kubernetes-preserve-unknown-fields", False, "must be true or undefined"))
    return out + _list_and_map_types(s, path) + _rules(s, path)


def _root_fields_error(schema: Schema, path: str) -> list[Cause]:
    """With a status subresource, only some fields may be set at the schema's root (Go field order)."""
    for key, value in schema.items():
        if value in (None, False, "", [], {}):
            continue
        if key == "type":
            if value != "object":
                return [invalid(f"{path}.openAPIV3Schema.type", value,
                                'only "object" is allowed as the type at the root of the schema if the status subresource is enabled')]
        elif key not in _ALLOWED_AT_ROOT:
            allowed = "[" + " ".join(name for name, _ in _ROOT_FIELDS) + "]"
            return [invalid(f"{path}.openAPIV3Schema", schema,
                            f"only {allowed} fields are allowed at the root of the schema if the status subresource is enabled")]
    return []


def _validation(container: Any, status_enabled: bool, path: str) -> list[Cause]:
    """validateCustomResourceDefinitionValidation of `schema` (or the hoisted `validation`) at `path`."""
    schema = _schema_of(container)
    if schema is None:
        return []
    out = _root_fields_error(schema, path) if status_enabled else []
    if schema.get("nullable"):
        out.append(forbidden(f"{path}.openAPIV3Schema.nullable", "nullable cannot be true at the root"))
    schema_path = f"{path}.openAPIV3Schema"
    structural = invariants.validate_structural(schema, schema_path)
    out += structural or invariants.validate_defaults(schema, schema_path)
    return out + _openapi_schema(schema, schema_path, _Opts(), True)


# ---- subresources, columns, selectable fields ----------------------------------------------------


def _simple_json_path(value: str, path: str) -> list[Cause]:
    if not value:
        return [invalid(path, value, "must not be empty")]
    if value[0] != ".":
        return [invalid(path, value, "must be a simple json path starting with .")]
    return []


def _subresources(subresources: Any, path: str) -> list[Cause]:
    scale = (subresources or {}).get("scale")
    if not isinstance(scale, dict):
        return []
    out: list[Cause] = []
    for key, prefixes, where in (
        ("specReplicasPath", (".spec.",), ".spec"),
        ("statusReplicasPath", (".status.",), ".status"),
    ):
        value = scale.get(key) or ""
        if not value:
            out.append(required(f"{path}.scale.{key}"))
        elif errs := _simple_json_path(value, f"{path}.scale.{key}"):
            out += errs
        elif not value.startswith(prefixes):
            out.append(invalid(f"{path}.scale.{key}", value, f"should be a json path under {where}"))
    selector = scale.get("labelSelectorPath") or ""
    if selector:
        if errs := _simple_json_path(selector, f"{path}.scale.labelSelectorPath"):
            out += errs
        elif not selector.startswith((".spec.", ".status.")):
            out.append(invalid(f"{path}.scale.labelSelectorPath", selector, "should be a json path under either .spec or .status"))
    return out


def _column(col: Obj, path: str) -> list[Cause]:
    out: list[Cause] = []
    if not col.get("name"):
        out.append(required(f"{path}.name"))
    col_type = col.get("type") or ""
    types = "must be one of " + ",".join(PRINTER_COLUMN_TYPES)
    if not col_type:
        out.append(required(f"{path}.type", types))
    elif col_type not in PRINTER_COLUMN_TYPES:
        out.append(invalid(f"{path}.type", col_type, types))
    if col.get("format") and col["format"] not in PRINTER_COLUMN_FORMATS:
        out.append(invalid(f"{path}.format", col["format"], "must be one of " + ",".join(PRINTER_COLUMN_FORMATS)))
    json_path = col.get("jsonPath") or ""
    if not json_path:
        out.append(required(f"{path}.JSONPath"))
    else:
        out += _simple_json_path(json_path, f"{path}.JSONPath")
    return out


def _field_schema(json_path: str, schema: Schema) -> tuple[str, Schema | None, str]:
    """(the field path, its schema, why it is invalid) of a selectable field's `.a.b`."""
    if not json_path.startswith("."):
        return "", None, "must start with '.'"
    if "[" in json_path:
        return "", None, "array notation is not allowed"
    node: Schema | None = schema
    parts = json_path[1:].split(".")
    for part in parts:
        props = (node or {}).get("properties") or {}
        additional = (node or {}).get("additionalProperties")
        if part in props:
            node = props[part]
        elif isinstance(additional, dict):
            node = additional
        else:
            return "", None, "does not refer to a valid field"
    return ".".join(parts), node, ""


def _selectable_fields(selectable: list[Obj], schema: Schema | None, path: str) -> list[Cause]:
    if schema is None:
        return [invalid(path, "", "selectableFields may only be set when version.schema.openAPIV3Schema is not included")]
    out: list[Cause] = []
    seen: set[str] = set()
    for i, item in enumerate(selectable):
        json_path = item.get("jsonPath") or ""
        field_path = f"{path}[{i}].jsonPath"
        if not json_path:
            out.append(required(field_path))
            continue
        resolved, node, why = _field_schema(json_path, schema)
        if why:
            out.append(invalid(field_path, json_path, f"is an invalid path: {why}"))
            continue
        if resolved.split(".")[0] == "metadata":
            out.append(invalid(field_path, json_path, "must not point to fields in metadata"))
        if (node or {}).get("type") not in ("string", "boolean", "integer"):
            out.append(invalid(field_path, json_path,
                               "must point to a field of type string, boolean or integer. Enum string fields and strings with formats are allowed."))
        if resolved in seen:
            out.append(duplicate(field_path, json_path))
        seen.add(resolved)
    if len(seen) > MAX_SELECTABLE_FIELDS:
        out.append(too_many(path, len(seen), MAX_SELECTABLE_FIELDS))
    return out


def _deprecation_warning(version: Obj) -> list[str]:
    warning = version.get("deprecationWarning")
    if not version.get("deprecated") and warning is not None:
        return ["can only be set for deprecated versions"]
    if warning is None:
        return []
    out = []
    if len(warning) > 256:
        out.append("must be <= 256 characters long")
    if not warning:
        out.append("must not be an empty string")
    for i, ch in enumerate(warning):
        if not ch.isprintable():
            out.append(f"must only contain printable UTF-8 characters; non-printable character found at index {i}")
            break
    return out


# ---- names, conversion, status ---------------------------------------------------------------------


def _names(names: Obj, path: str) -> list[Cause]:
    out: list[Cause] = []
    for key, lower in (("plural", False), ("singular", False), ("kind", True), ("listKind", True)):
        value = names.get(key) or ""
        errs = is_dns1035_label(value.lower() if lower else value)
        if value and errs:
            detail = ",".join(errs)
            out.append(invalid(f"{path}.{key}", value, f"may have mixed case, but should otherwise match: {detail}" if lower else detail))
    for i, short in enumerate(names.get("shortNames") or []):
        if errs := is_dns1035_label(short):
            out.append(invalid(f"{path}.shortNames[{i}]", short, ",".join(errs)))
    if names.get("kind") and names.get("kind") == names.get("listKind"):
        out.append(invalid(f"{path}.listKind", names["listKind"], "kind and listKind may not be the same"))
    for i, category in enumerate(names.get("categories") or []):
        if errs := is_dns1035_label(category):
            out.append(invalid(f"{path}.categories[{i}]", category, ",".join(errs)))
    return out


def _enum(value: str, path: str, accepted: tuple[str, ...]) -> list[Cause]:
    if not value:
        return [required(path)]
    return [] if value in accepted else [not_supported(path, value, accepted)]


def _conversion(conversion: Any) -> list[Cause]:
    if not isinstance(conversion, dict):
        return []
    path = "spec.conversion"
    strategy = conversion.get("strategy") or ""
    out = _enum(strategy, f"{path}.strategy", ("None", "Webhook"))
    raw_webhook = conversion.get("webhook")
    webhook: Obj = raw_webhook if isinstance(raw_webhook, dict) else {}
    client = webhook.get("clientConfig")
    review_versions = webhook.get("conversionReviewVersions") or []
    if strategy == "Webhook":
        if not isinstance(client, dict):
            out.append(required(f"{path}.webhookClientConfig", "required when strategy is set to Webhook"))
        elif (client.get("url") is None) == (client.get("service") is None):
            out.append(required(f"{path}.webhookClientConfig", "exactly one of url or service is required"))
        elif client.get("url") is not None:
            url = urlsplit(str(client["url"]))
            if url.scheme != "https":
                out.append(invalid(f"{path}.webhookClientConfig.url", client["url"], "'https' is the only allowed URL scheme"))
        if not review_versions:
            out.append(required(f"{path}.conversionReviewVersions"))
        else:
            seen: set[str] = set()
            for i, v in enumerate(review_versions):
                if v in seen:
                    out.append(invalid(f"{path}.conversionReviewVersions[{i}]", v, "duplicate version"))
                    continue
                seen.add(v)
                out += [invalid(f"{path}.conversionReviewVersions[{i}]", v, e) for e in is_dns1035_label(v)]
            if not seen & {"v1", "v1beta1"}:
                out.append(invalid(f"{path}.conversionReviewVersions", review_versions, "must include at least one of v1, v1beta1"))
    else:
        if client is not None:
            out.append(forbidden(f"{path}.webhookClientConfig", "should not be set when strategy is not set to Webhook"))
        if review_versions:
            out.append(forbidden(f"{path}.conversionReviewVersions", "should not be set when strategy is not set to Webhook"))
    return out


def _stored_versions(crd: Obj) -> list[Cause]:
    path = "status.storedVersions"
    stored = (crd.get("status") or {}).get("storedVersions") or []
    if not stored:
        return [invalid(path, stored, "must have at least one stored version")]
    out: list[Cause] = []
    names = {v.get("name") for v in _versions(crd.get("spec") or {})}
    for v in _versions(crd.get("spec") or {}):
        if v.get("storage") and v.get("name") not in stored:
            out.append(invalid(path, stored, f"must have the storage version {v.get('name')}"))
    for i, v in enumerate(stored):
        if v not in names:
            out.append(invalid(f"{path}[{i}]", v, (
                f"missing from spec.versions; {v} was previously a storage version, and must remain in spec.versions "
                f"until a storage migration ensures no data remains persisted in {v} and removes {v} from status.storedVersions"
            )))
    return out


def _protected_group(group: str) -> bool:
    return group in ("k8s.io", "kubernetes.io") or group.endswith((".k8s.io", ".kubernetes.io"))


def _approval_state(annotations: Obj) -> tuple[str, str]:
    value = annotations.get(APPROVAL_ANNOTATION, "")
    link = "see https://github.com/kubernetes/enhancements/pull/1111"
    if not value:
        return "missing", f'protected groups must have approval annotation "{APPROVAL_ANNOTATION}", {link}'
    if value.startswith("unapproved"):
        return "bypassed", f"not approved: {value}"
    parsed = urlsplit(value)
    if not (value.startswith("/") or parsed.scheme) or any(c.isspace() for c in value):
        return "invalid", (f'protected groups must have approval annotation "{APPROVAL_ANNOTATION}" with either a URL '
                           f'or a reason starting with "unapproved", {link}')
    return "approved", ""


def _api_approval(crd: Obj, old: Obj | None) -> list[Cause]:
    if not _protected_group((crd.get("spec") or {}).get("group") or ""):
        return []
    annotations = (crd.get("metadata") or {}).get("annotations") or {}
    state, reason = _approval_state(annotations)
    if old is not None and _approval_state((old.get("metadata") or {}).get("annotations") or {})[0] == state:
        return []
    path = f"metadata.annotations[{APPROVAL_ANNOTATION}]"
    if state == "missing":
        return [required(path, reason)]
    if state == "invalid":
        return [invalid(path, annotations.get(APPROVAL_ANNOTATION, ""), reason)]
    return []


def _established(crd: Obj) -> bool:
    return any(c.get("type") == "Established" and c.get("status") == "True"
               for c in (crd.get("status") or {}).get("conditions") or [])


# ---- the CRD ------------------------------------------------------------------------------------------


def _spec(spec: Obj) -> list[Cause]:
    out: list[Cause] = []
    group = spec.get("group") or ""
    if not group:
        out.append(required("spec.group"))
    elif errs := is_dns1123_subdomain(group):
        out.append(invalid("spec.group", group, ",".join(errs)))
    elif len(group.split(".")) < 2:
        out.append(invalid("spec.group", group, "should be a domain with at least one dot"))
    out += _enum(spec.get("scope") or "", "spec.scope", ("Cluster", "Namespaced"))
    versions = _versions(spec)
    validation, subresources = _hoisted(spec, "schema"), _hoisted(spec, "subresources")
    columns, selectable = _hoisted(spec, "additionalPrinterColumns"), _hoisted(spec, "selectableFields")
    if validation is None:
        for i, v in enumerate(versions):
            if _schema_of(v.get("schema")) is None:
                out.append(required(f"spec.versions[{i}].schema.openAPIV3Schema", "schemas are required"))
    if spec.get("preserveUnknownFields") and any("default" in s for _, schema in _schemas(spec) for s in _walk(schema)):
        out.append(invalid("spec.preserveUnknownFields", True, "must be false in order to use defaults in the schema"))
    names_seen: set[str] = set()
    unique, storage = True, 0
    for i, v in enumerate(versions):
        path = f"spec.versions[{i}]"
        name = v.get("name") or ""
        storage += bool(v.get("storage"))
        unique = unique and name not in names_seen
        names_seen.add(name)
        if errs := is_dns1035_label(name):
            out.append(invalid(f"{path}.name", name, ",".join(errs)))
        out += [invalid(f"{path}.deprecationWarning", v.get("deprecationWarning"), e) for e in _deprecation_warning(v)]
        sub = subresources if subresources is not None else v.get("subresources")
        if validation is None:
            out += _validation(v.get("schema"), _status_enabled(sub), f"{path}.schema")
        if subresources is None:
            out += _subresources(v.get("subresources"), f"{path}.subresources")
        if columns is None:
            for j, col in enumerate(v.get("additionalPrinterColumns") or []):
                out += _column(col, f"{path}.additionalPrinterColumns[{j}]")
        if selectable is None and v.get("selectableFields"):
            out += _selectable_fields(v["selectableFields"], _schema_of(v.get("schema")), f"{path}.selectableFields")
    if not unique:
        out.append(invalid("spec.versions", versions, "must contain unique version names"))
    if storage != 1:
        out.append(invalid("spec.versions", versions, "must have exactly one version marked as storage version"))
    names = spec.get("names") or {}
    for key in ("plural", "singular", "kind", "listKind"):
        if not names.get(key):
            out.append(required(f"spec.names.{key}"))
    out += _names(names, "spec.names")
    any_status = any(_status_enabled(v.get("subresources")) for v in versions)
    out += _validation(validation, any_status, "spec.validation")
    out += _subresources(subresources, "spec.subresources")
    for j, col in enumerate(columns or []):
        out += _column(col, f"spec.additionalPrinterColumns[{j}]")
    if selectable:
        out += _selectable_fields(selectable, _schema_of(validation), "spec.selectableFields")
    conversion = spec.get("conversion")
    strategy = conversion.get("strategy") if isinstance(conversion, dict) else None
    if strategy not in (None, "None") and spec.get("preserveUnknownFields"):
        out.append(invalid("spec.conversion.strategy", strategy, "must be None if spec.preserveUnknownFields is true"))
    return out + _conversion(conversion)


def validate_crd(crd: Obj, old: Obj | None) -> list[Cause]:
    """ValidateCustomResourceDefinition(Update)."""
    _check_decodable(crd)
    spec = crd.get("spec") or {}
    md = crd.get("metadata")
    if old is None:
        plural, group = (spec.get("names") or {}).get("plural", ""), spec.get("group", "")

        def name_fn(name: str, prefix: bool) -> list[str]:
            errs = name_is_dns_subdomain(name, prefix)
            if name != f"{plural}.{group}":
                errs.append('must be spec.names.plural+"."+spec.group')
            return errs

        out = validate_object_meta(md, False, name_fn, kube_finalizers=False) + _spec(spec)
        if spec.get("preserveUnknownFields"):
            out.append(invalid("spec.preserveUnknownFields", True, "must be false"))
    else:
        old_spec = old.get("spec") or {}
        out = validate_object_meta_update(md, old.get("metadata"), kube_finalizers=False) + _spec(spec)
        if _established(old):
            out += immutable("spec.scope", spec.get("scope"), old_spec.get("scope"))
            out += immutable("spec.names.kind", (spec.get("names") or {}).get("kind"), (old_spec.get("names") or {}).get("kind"))
        out += immutable("spec.group", spec.get("group"), old_spec.get("group"))
        out += immutable("spec.names.plural", (spec.get("names") or {}).get("plural"), (old_spec.get("names") or {}).get("plural"))
        if spec.get("preserveUnknownFields") and not old_spec.get("preserveUnknownFields"):
            out.append(invalid("spec.preserveUnknownFields", True, "must be false"))
    out += _names((crd.get("status") or {}).get("acceptedNames") or {}, "status.acceptedNames")
    return out + _stored_versions(crd) + _api_approval(crd, old)


def warnings(crd: Obj, old: Obj | None) -> list[str]:
    """What the client should know: k8py accepts but does not enforce CEL rules nor call conversion webhooks."""
    out = []
    count = sum(
        1 for _, schema in _schemas(crd.get("spec") or {}) for node in _walk(schema) if node.get("x-kubernetes-validations")
    )
    if count:
        out.append(
            "x-kubernetes-validations rules are accepted but not enforced: k8py does not evaluate CEL "
            f"({count} schema node{'s' if count != 1 else ''} with rules)"
        )
    conversion = (crd.get("spec") or {}).get("conversion") or {}
    if isinstance(conversion, dict) and conversion.get("strategy") == "Webhook":
        out.append("conversion webhooks are not called by k8py: objects change version as with strategy None")
    return out


VALIDATORS = {"CustomResourceDefinition": validate_crd}
