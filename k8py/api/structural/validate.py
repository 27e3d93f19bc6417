"""Custom objects checked against their CRD version's schema, worded as kube-apiserver words it.

`validate` is kube-openapi's SchemaValidator (the go-openapi validator kube vendors)
over plain JSON, with its results turned into StatusCauses the way apiextensions'
`kubeOpenAPIResultToFieldErrors` does: a missing required field is `Required value`,
a value outside an enum `Unsupported value`, a too-long string `Too long: may not be
more than N bytes`, too many items `Too many: N: must have at most M items`, a wrong
type `Invalid value: "string": spec.replicas in body must be of type integer:
"string"` (reason FieldValueTypeInvalid), and everything else `Invalid value: <v>:
<path> in body should ...`. The node's checks run in go-openapi's order (type,
allOf/anyOf/oneOf/not, string, format, number, array, enum, object), properties in
schema order. Only the formats kube keeps are checked (`k8py.api.structural.formats`).

Updates are validated with ratcheting (CRDValidationRatcheting, on in 1.32): a value
equal to the one it replaces is not judged again, so objects stored under an older,
looser schema stay updatable. Values correlate through object properties and the
keys of `x-kubernetes-list-type: map` lists, as upstream correlates them.

`validate_lists` checks the uniqueness `x-kubernetes-list-type: set` and `map`
promise (kube's `ValidateListSetsAndMaps`); `validate_embedded` the apiVersion, kind
and metadata of `x-kubernetes-embedded-resource` values (kube's objectmeta.Validate).
"""

from __future__ import annotations

import functools
import re
from typing import Any, Final, TypeGuard

import orjson

from k8py.api.errors import cause
from k8py.api.gofmt import go_number
from k8py.api.structural import formats
from k8py.api.validation import field as fields
from k8py.api.validation import meta as metavalidation
from k8py.api.validation import names

Schema = dict[str, Any]
Cause = dict[str, str]
MISSING: Final = object()  # no correlated old value: validate in full


def json_type(value: Any) -> str:
    """The JSON type name go-openapi infers for a decoded value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def same(a: Any, b: Any) -> bool:
    """Deep equality of JSON values that, unlike `==`, tells true from 1 and 1 from 1.0."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def declared_types(s: Schema) -> list[str]:
    """The `type` go-openapi checks; x-kubernetes-int-or-string is integer or string."""
    if s.get("x-kubernetes-int-or-string"):
        return ["integer", "string"]
    t = s.get("type")
    return [t] if isinstance(t, str) and t else []


@functools.lru_cache(maxsize=1024)
def _pattern(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern)
    except re.error:
        return None


def _num(value: int | float) -> str:
    return go_number(value)


class _Run:
    """One validation: `base` is the field path the causes hang under ("" for none)."""

    def __init__(self, base: str) -> None:
        self.base = base

    def field(self, name: str) -> str:
        if not name:
            return self.base or "<nil>"
        return f"{self.base}.{name}" if self.base else name

    def invalid(self, name: str, value: Any, message: str) -> Cause:
        return cause(self.field(name), f"Invalid value: {render(value)}: {message}")

    def composite(self, message: str) -> Cause:
        """A go-openapi error that is not a *Validation: Invalid at the base path, value ""."""
        return fields.invalid(self.base or "<nil>", "", message)

    def node(self, s: Schema, v: Any, name: str, old: Any) -> list[Cause]:
        if old is not MISSING and same(v, old):
            return []
        out: list[Cause] = []
        types = declared_types(s)
        if v is None:
            if types and not s.get("nullable"):
                out.append(self.type_invalid(name, ",".join(types), "null"))
            out += self.enum(s, v, name)
            return out
        kind = json_type(v)
        out += self.type_check(s, types, kind, v, name)
        out += self.junctors(s, v, name)
        if kind == "string":
            out += self.string(s, v, name)
        if kind in ("integer", "number"):
            out += self.number(s, v, name)
        if kind == "array":
            out += self.array(s, v, name, old)
        out += self.enum(s, v, name)
        if kind == "object":
            out += self.object(s, v, name, old)
        return out

    # ---- the validators of one node ---------------------------------------------------------

    def type_invalid(self, name: str, expected: str, actual: str) -> Cause:
        return cause(
            self.field(name),
            f"Invalid value: {fields.go_quote(actual)}: {name} in body must be of type {expected}: "
            f"{fields.go_quote(actual)}",
            "FieldValueTypeInvalid",
        )

    def type_check(self, s: Schema, types: list[str], kind: str, v: Any, name: str) -> list[Cause]:
        fmt = s.get("format") if isinstance(s.get("format"), str) else ""
        if not types and not fmt:
            return []
        float_int = kind == "number" and float(v).is_integer() and "integer" in types
        int_float = kind == "integer" and "number" in types
        data_format = {"integer": "int64", "number": "double"}.get(kind, "")
        if kind not in ("string", "array") and fmt and not (kind in types or data_format == fmt or float_int or int_float):
            return [self.type_invalid(name, fmt, data_format)]
        if "number" not in types and "integer" not in types and fmt and kind in ("string", "array"):
            return []
        if not (kind in types or float_int or int_float):
            return [self.type_invalid(name, ",".join(types), kind)]
        return []

    def junctors(self, s: Schema, v: Any, name: str) -> list[Cause]:
        """allOf, anyOf, oneOf and not (a failing alternative's own errors are reported too)."""
        out: list[Cause] = []
        quoted = fields.go_quote(name)
        any_of = [x for x in s.get("anyOf") or [] if isinstance(x, dict)]
        results: list[list[Cause]]
        if any_of:
            results = [self.node(x, v, name, MISSING) for x in any_of]
            if all(results):
                out.append(self.composite(f"{quoted} must validate at least one schema (anyOf)"))
                out += _fewest(results)
        one_of = [x for x in s.get("oneOf") or [] if isinstance(x, dict)]
        if one_of:
            results = [self.node(x, v, name, MISSING) for x in one_of]
            valid = sum(1 for r in results if not r)
            if valid != 1:
                found = "Found none valid" if valid == 0 else f"Found {valid} valid alternatives"
                out.append(self.composite(f"{quoted} must validate one and only one schema (oneOf). {found}"))
                if valid == 0:
                    out += _fewest(results)
        all_of = [x for x in s.get("allOf") or [] if isinstance(x, dict)]
        if all_of:
            results = [self.node(x, v, name, MISSING) for x in all_of]
            for r in results:
                out += r
            failed = sum(1 for r in results if r)
            if failed:
                none = ". None validated" if failed == len(results) else ""
                out.append(self.composite(f"{quoted} must validate all the schemas (allOf){none}"))
        if isinstance(s.get("not"), dict) and not self.node(s["not"], v, name, MISSING):
            out.append(self.composite(f"{quoted} must not validate the schema (not)"))
        return out

    def string(self, s: Schema, v: str, name: str) -> list[Cause]:
        out: list[Cause] = []
        length = len(v)
        if isinstance(s.get("maxLength"), int) and length > s["maxLength"]:
            out.append(fields.too_long(self.field(name), s["maxLength"]))
        if isinstance(s.get("minLength"), int) and length < s["minLength"]:
            out.append(self.invalid(name, v, f"{name} in body should be at least {s['minLength']} chars long"))
        pattern = s.get("pattern")
        if isinstance(pattern, str) and pattern:
            compiled = _pattern(pattern)
            if compiled is None or compiled.search(v) is None:
                out.append(self.invalid(name, v, f"{name} in body should match '{pattern}'"))
        fmt = s.get("format")
        check = formats.checked(fmt) if isinstance(fmt, str) and fmt else None
        if check is not None and not check(v):
            out.append(self.type_invalid_value(name, fmt or "", v))
        return out

    def type_invalid_value(self, name: str, fmt: str, v: str) -> Cause:
        return cause(
            self.field(name),
            f"Invalid value: {fields.go_quote(v)}: {name} in body must be of type {fmt}: {fields.go_quote(v)}",
            "FieldValueTypeInvalid",
        )

    def number(self, s: Schema, v: int | float, name: str) -> list[Cause]:
        out: list[Cause] = []
        is_int = isinstance(v, int)

        def bound(limit: int | float) -> str:
            return _num(int(limit)) if is_int else _num(float(limit))

        factor = s.get("multipleOf")
        if _is_number(factor):
            if is_int and factor >= 1:
                ok = v % int(factor) == 0
            else:
                mult = (1 / factor * v) if factor < 1 else (v / factor)
                ok = float(mult).is_integer()
            if not ok:
                out.append(self.invalid(name, v, f"{name} in body should be a multiple of {_num(float(factor))}"))
        maximum = s.get("maximum")
        if _is_number(maximum):
            limit = int(maximum) if is_int else maximum
            exclusive = s.get("exclusiveMaximum") is True
            if v > limit or (exclusive and v >= limit):
                word = "less than" if exclusive else "less than or equal to"
                out.append(self.invalid(name, v, f"{name} in body should be {word} {bound(maximum)}"))
        minimum = s.get("minimum")
        if _is_number(minimum):
            limit = int(minimum) if is_int else minimum
            exclusive = s.get("exclusiveMinimum") is True
            if v < limit or (exclusive and v <= limit):
                word = "greater than" if exclusive else "greater than or equal to"
                out.append(self.invalid(name, v, f"{name} in body should be {word} {bound(minimum)}"))
        return out

    def array(self, s: Schema, v: list[Any], name: str, old: Any) -> list[Cause]:
        out: list[Cause] = []
        items = s.get("items")
        if isinstance(items, dict):
            olds = _correlate_items(s, v, old)
            for i, item in enumerate(v):
                out += self.node(items, item, f"{name}[{i}]", olds[i])
        if isinstance(s.get("minItems"), int) and len(v) < s["minItems"]:
            out.append(self.invalid(name, len(v), f"{name} in body should have at least {s['minItems']} items"))
        if isinstance(s.get("maxItems"), int) and len(v) > s["maxItems"]:
            out.append(fields.too_many(self.field(name), len(v), s["maxItems"]))
        return out

    def enum(self, s: Schema, v: Any, name: str) -> list[Cause]:
        allowed = s.get("enum")
        if not isinstance(allowed, list) or not allowed:
            return []
        if v is not None and any(_enum_equal(v, e) for e in allowed):
            return []
        supported = [e if isinstance(e, str) else orjson.dumps(e).decode() for e in allowed]
        return [fields.not_supported(self.field(name), "null" if v is None else v, supported)]

    def object(self, s: Schema, v: dict[str, Any], name: str, old: Any) -> list[Cause]:
        count = len(v)
        if isinstance(s.get("minProperties"), int) and count < s["minProperties"]:
            return [self.invalid(name, count, f"{name} in body should have at least {s['minProperties']} properties")]
        if isinstance(s.get("maxProperties"), int) and count > s["maxProperties"]:
            return [fields.too_many(self.field(name), count, s["maxProperties"])]
        out: list[Cause] = []
        props = _properties(s)
        additional = s.get("additionalProperties")
        old_map = old if isinstance(old, dict) else {}
        if isinstance(additional, dict):
            for key, value in v.items():
                if key not in props:
                    out += self.node(additional, value, f"{name}.{key}" if name else key, old_map.get(key, MISSING))
        for key, sub in props.items():
            if key in v:
                out += self.node(sub, v[key], f"{name}.{key}" if name else key, old_map.get(key, MISSING))
        for key in s.get("required") or []:
            if key not in v:
                out.append(fields.required(self.field(f"{name}.{key}" if name else key)))
        return out


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def render(value: Any) -> str:
    """A bad value as field errors show it, numbers as Go prints a decoded JSON number."""
    if _is_number(value):
        return go_number(value)
    return fields.render(value)


def _fewest(results: list[list[Cause]]) -> list[Cause]:
    """The errors of the alternative that came closest (go-openapi keeps the best failure's)."""
    return min(results, key=len)


def _properties(s: Schema) -> dict[str, Schema]:
    raw = s.get("properties")
    return {k: v for k, v in raw.items() if isinstance(v, dict)} if isinstance(raw, dict) else {}


def _enum_equal(value: Any, member: Any) -> bool:
    """reflect.DeepEqual after Go's conversion of the value to the member's type."""
    if same(value, member):
        return True
    if _is_number(value) and _is_number(member):
        return float(value) == float(member)
    return False


def _map_key(item: Any, keys: list[str]) -> Any:
    if not isinstance(item, dict):
        return None
    return tuple(orjson.dumps(item.get(k)) for k in keys)


def _correlate_items(s: Schema, items: list[Any], old: Any) -> list[Any]:
    """For each item, the old item it replaces (map lists only), else MISSING."""
    keys = s.get("x-kubernetes-list-map-keys")
    if s.get("x-kubernetes-list-type") != "map" or not isinstance(old, list) or not isinstance(keys, list):
        return [MISSING] * len(items)
    by_key = {_map_key(o, keys): o for o in old if isinstance(o, dict)}
    return [by_key.get(_map_key(item, keys), MISSING) for item in items]


def validate(schema: Schema, value: Any, *, old: Any = MISSING, field: str = "") -> list[Cause]:
    """The causes kube reports for `value` (an object, or a default under `field`) against `schema`.

    With `old`, the value it replaces in an update, unchanged parts are not judged (ratcheting)."""
    return _Run(field).node(schema, value, "", old)


# ---- x-kubernetes-list-type ------------------------------------------------------------------


def _unique_key(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def _duplicates(values: list[Any]) -> list[int]:
    """Indexes of the second appearance of each repeated value (validateListSet)."""
    seen: dict[bytes, int] = {}
    out = []
    for i, v in enumerate(values):
        key = _unique_key(v)
        seen[key] = seen.get(key, 0) + 1
        if seen[key] == 2:
            out.append(i)
    return out


def _list_map(path: str, s: Schema, items: list[Any]) -> list[Cause]:
    for i, x in enumerate(items):
        if x is not None and not isinstance(x, dict):
            return [fields.invalid(f"{path}[{i}]", x, "must be an object for an array of list-type map")]
    keys = [k for k in s.get("x-kubernetes-list-map-keys") or [] if isinstance(k, str)]
    entries = [{k: x[k] for k in keys if isinstance(x, dict) and k in x} for x in items]
    return [fields.duplicate(f"{path}[{i}]", entries[i]) for i in _duplicates(entries)]


def _lists(path: str, s: Schema, value: Any) -> list[Cause]:
    out: list[Cause] = []
    if isinstance(value, dict):
        props = _properties(s)
        additional = s.get("additionalProperties")
        for key, v in value.items():
            if isinstance(additional, dict):
                out += _lists(f"{path}[{key}]", additional, v)
            if key in props:
                out += _lists(f"{path}.{key}" if path else key, props[key], v)
    elif isinstance(value, list):
        list_type = s.get("x-kubernetes-list-type")
        if list_type == "set":
            out += [fields.duplicate(f"{path}[{i}]", value[i]) for i in _duplicates(value)]
        elif list_type == "map":
            out += _list_map(path, s, value)
        if isinstance(s.get("items"), dict):
            for i, item in enumerate(value):
                out += _lists(f"{path}[{i}]", s["items"], item)
    return out


def validate_lists(schema: Schema, obj: dict[str, Any]) -> list[Cause]:
    """Duplicates in `x-kubernetes-list-type: set` lists and duplicate keys in `map` lists."""
    return _lists("", schema, obj)


# ---- x-kubernetes-embedded-resource ---------------------------------------------------------


def _embedded(path: str, x: dict[str, Any]) -> list[Cause]:
    out: list[Cause] = []
    for key in ("apiVersion", "kind"):
        if key not in x:
            out.append(fields.required(f"{path}.{key}", "must not be empty"))
    for key, v in x.items():
        if key in ("apiVersion", "kind") and not isinstance(v, str):
            out.append(fields.invalid(f"{path}.{key}", v, "must be a string"))
        elif key in ("apiVersion", "kind") and not v:
            out.append(fields.invalid(f"{path}.{key}", v, "must not be empty"))
        elif key == "apiVersion" and v.count("/") > 1:
            out.append(fields.invalid(f"{path}.apiVersion", v, f"unexpected GroupVersion string: {v}"))
        elif key == "kind":
            errs = names.is_dns1035_label(v.lower())
            if errs:
                out.append(
                    fields.invalid(f"{path}.kind", v, "may have mixed case, but should otherwise match: " + ",".join(errs))
                )
        elif key == "metadata":
            if not isinstance(v, dict):
                out.append(fields.invalid(f"{path}.metadata", None, "must be an object"))
                continue
            meta = {**v, "name": v.get("name") or "fakename"}
            out += metavalidation.validate_object_meta(
                meta, bool(meta.get("namespace")), names.name_is_path_segment, f"{path}.metadata", kube_finalizers=False
            )
    return out


def _embedded_walk(path: str, s: Schema, value: Any) -> list[Cause]:
    out: list[Cause] = []
    if isinstance(value, dict):
        if s.get("x-kubernetes-embedded-resource"):
            out += _embedded(path, value)
        props = _properties(s)
        additional = s.get("additionalProperties")
        for key, v in value.items():
            sub = props.get(key, additional)
            if isinstance(sub, dict):
                out += _embedded_walk(f"{path}.{key}" if path else key, sub, v)
    elif isinstance(value, list) and isinstance(s.get("items"), dict):
        for i, item in enumerate(value):
            out += _embedded_walk(f"{path}[{i}]", s["items"], item)
    return out


def validate_embedded(schema: Schema, obj: dict[str, Any]) -> list[Cause]:
    """apiVersion, kind and metadata of the embedded resources in `obj`."""
    return _embedded_walk("", schema, obj)
