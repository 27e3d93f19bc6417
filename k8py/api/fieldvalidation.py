"""Decoding a request body into its kind's type, as kube-apiserver's JSON decoder does.

kube decodes every create/update body and every patched object into Go structs
(sigs.k8s.io/json). k8py keeps plain dicts, so `decode` does on the dict what that
step does, in one walk over the kind's kubernetes-validate schema (compiled once
per type into `_Type` nodes):

1. **Types**, whatever the fieldValidation mode. A value of the wrong JSON type is
   a decode error, the first one in document order, as Go reports it:
   `json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas
   of type int32` names the innermost struct, the JSON path without list indices or
   map keys, and the Go type of the slot (the underlying one: k8py's schemas do not
   know named types such as `v1.PullPolicy`). Integers must be integral and fit
   their int32/int64 (`number 1.5`, `number 3000000000`). Types with their own
   UnmarshalJSON answer in their words: IntOrString as an int32, quantities
   (`quantities must match the regular expression ...`), times (`parsing time ...`),
   byte strings (`illegal base64 data at input byte N`). A JSON null is the zero
   value anywhere; RawExtension, FieldsV1 and `x-kubernetes-preserve-unknown-fields`
   take any value. A create/update body is answered 400 through kube's
   `transformDecodeError` (`Deployment in version "v1" cannot be handled as a
   Deployment: json: ...`). A patched object is answered as kube's patch handler
   does: 422 Invalid on field `patch`, showing the patched JSON (JSON and merge
   patch) or the patch map (strategic merge patch, whose result goes through the
   unstructured converter, worded `cannot restore slice from map`, `unrecognized
   type: int32` and, unlike JSON, taking integral floats for integers).

2. **Strict field validation** (`?fieldValidation=Strict|Warn|Ignore`). sigs.k8s.io/json's
   strict mode collects, in document order, deduplicated, at most 100:
   `unknown field "spec.template.spec.containers[0].imagee"` for a key the type does
   not declare (its value is skipped) and `duplicate field "spec.replicas"` for a
   declared field or map key seen twice in one object (the last value wins, as
   orjson keeps it too). Strict: 400 (`... cannot be handled as a Deployment:
   strict decoding error: unknown field "spec.foo", duplicate field "x"`; a patched
   object just `strict decoding error: ...`); Warn (the default): each message
   becomes a `Warning` header; Ignore: nothing. Declared properties are known; maps
   accept any key; `apiVersion` and `kind` are always known at the root (TypeMeta).
   orjson says nothing of duplicate keys, so for Strict/Warn a JSON body is parsed
   a second time with the stdlib parser into `(key, value)` pair lists, and the
   walk goes over those (a YAML body is checked for unknown fields only).

3. **Normalization**, in place, when the walk saw the need: unknown fields are
   dropped, a null field is dropped and a null list item or map value becomes its
   zero value ("" / 0 / false / {} / []), integral floats in integer fields (from
   the strategic path) become ints. Later code never meets a null or a wrong type.

The walk is a dict traversal over compiled nodes, microseconds for a typical
manifest; the normalization pass only runs when there is something to normalize.
"""

from __future__ import annotations

import binascii
import datetime as dt
import functools
import json
import re
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from k8py.api import errors
from k8py.api import schema as schemas
from k8py.api.patch import STRATEGIC_MERGE_PATCH, go_value
from k8py.api.validation.field import invalid
from k8py.api.validation.quantity import QUANTITY_FORMAT_ERROR, parse_quantity

Schema = dict[str, Any]

STRICT, WARN, IGNORE = "Strict", "Warn", "Ignore"
MAX_ERRORS = 100  # sigs.k8s.io/json stops collecting strict errors here
_TYPE_META = ("apiVersion", "kind")
_INT32 = (-(1 << 31), (1 << 31) - 1)
_INT64 = (-(1 << 63), (1 << 63) - 1)
_RFC3339 = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})")
_BASE64 = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")

# _Type kinds
UNTYPED, RAW, STRUCT, MAP, LIST = range(5)  # UNTYPED: any JSON, looked into only for duplicate keys
STRING, BYTES, TIME, INTEGER, NUMBER, BOOLEAN, INT_OR_STRING, QUANTITY = range(5, 13)


class _Pairs(list[tuple[str, Any]]):
    """A JSON object as its (key, value) pairs in document order, duplicates kept."""


class _Type:
    """A schema compiled for the walk: what a value must be and what it holds."""

    __slots__ = ("accepts", "check", "extra", "go", "kind", "leaf", "props", "range", "struct")

    def __init__(self, kind: int, go: str) -> None:
        self.kind = kind
        self.go = go  # the Go type, as reflect prints it ("int32", "[]v1.Container")
        self.struct = ""  # STRUCT: the Go struct's name
        self.props: dict[str, _Type] = {}
        self.extra: _Type | None = None  # map values, list items, undeclared fields of an open struct (else unknown)
        self.leaf = kind >= STRING or kind == RAW
        self.accepts: frozenset[type] | None = None  # a leaf's Python types (None: any)
        self.check: Callable[[Any, _Type, _Walk], None] | None = None  # a leaf's further check
        self.range = _INT64


class _Walk:
    """What one walk collects."""

    __slots__ = ("dirty", "found", "lenient")

    def __init__(self, collect: bool, lenient: bool) -> None:
        self.found: list[tuple[str, str]] | None = [] if collect else None  # ("unknown"|"duplicate", path)
        self.dirty = False  # normalization needed
        self.lenient = lenient  # integral floats pass as integers (the unstructured converter)


class _Mismatch(Exception):
    """The value does not decode into its slot; the frames it unwinds through add the Go path."""

    def __init__(self, value: Any, slot: _Type) -> None:
        super().__init__()
        self.value, self.slot = value, slot
        self.fields: list[str] = []  # JSON field names, innermost first
        self.struct = ""

    def at(self, key: str, struct: str) -> None:
        self.fields.append(key)
        self.struct = self.struct or struct

    def json_message(self) -> str:
        """encoding/json's words, as a body decode reports them."""
        value, slot = self.value, self.slot
        special = _special_message(value, slot)
        if special:
            return special
        where = (
            f"Go struct field {self.struct}.{'.'.join(reversed(self.fields))}" if self.struct else "Go value"
        )
        return f"json: cannot unmarshal {_json_what(value, slot)} into {where} of type {_slot_go(slot)}"

    def converter_message(self) -> str:
        """runtime.DefaultUnstructuredConverter's words, as a strategic merge patch reports them."""
        value, slot = self.value, self.slot
        source = _unstructured_kind(value)
        kind = slot.kind
        if kind == STRUCT:
            return f"cannot restore struct from: {source}"
        if kind == MAP:
            return f"cannot restore map from {source}"
        if kind == LIST or (kind == BYTES and not isinstance(value, str)):
            return f"cannot restore slice from {source}"
        if kind == BYTES:
            return f"error decoding from json: {_special_message(value, slot)}"
        if kind in (INT_OR_STRING, QUANTITY, TIME):  # decoded by their UnmarshalJSON
            return _special_message(value, slot) or (
                f"json: cannot unmarshal {_json_what(value, slot)} into Go value of type {_slot_go(slot)}"
            )
        if (source, kind) in (("int64", STRING), ("float64", INTEGER), ("int64", INTEGER)):
            return f"cannot convert {source} to {slot.go}"
        return f"unrecognized type: {slot.go}"


# ---- compiling schemas --------------------------------------------------------------------------

_UNTYPED = _Type(UNTYPED, "interface {}")
_UNTYPED.extra = _UNTYPED
_STRING = _Type(STRING, "string")
_STRING.accepts = frozenset((str,))
_COMPILED: dict[int, tuple[Schema, _Type]] = {}
_NAMED = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": INT_OR_STRING,
    "io.k8s.apimachinery.pkg.api.resource.Quantity": QUANTITY,
}


@functools.cache
def _definition_names() -> dict[int, str]:
    return {id(s): name for name, s in schemas.definitions().items()}


def _compile(schema: Schema | None) -> _Type:
    """The `_Type` of a schema, compiled once (recursive types included)."""
    s = schemas.resolve(schema) if schema is not None else None
    if s is None:
        return _UNTYPED
    hit = _COMPILED.get(id(s))
    if hit is not None and hit[0] is s:
        return hit[1]
    name = _definition_names().get(id(s), "")
    go_name = ".".join(name.split(".")[-2:]) if name else ""
    types = schemas.types(s)
    fmt = s.get("format", "")
    additional = s.get("additionalProperties")
    open_ = additional is True or s.get("x-kubernetes-preserve-unknown-fields") is True
    if name in _NAMED or s.get("x-kubernetes-int-or-string") is True:
        t = _Type(_NAMED.get(name, INT_OR_STRING), go_name or "intstr.IntOrString")
        t.range = _INT32  # IntOrString's int
    elif "properties" in s:
        t = _Type(STRUCT, go_name or "struct")
        t.struct = go_name.rpartition(".")[2]
    elif isinstance(additional, dict):
        t = _Type(MAP, "")
    elif types == {"object"}:
        t = _Type(UNTYPED if open_ else RAW, go_name or "interface {}")
    elif types == {"array"}:
        t = _Type(LIST, "")
    elif types == {"string"}:
        kind = {"byte": BYTES, "date-time": TIME}.get(fmt, STRING)
        t = _Type(kind, {BYTES: "[]uint8", TIME: go_name or "v1.Time"}.get(kind, "string"))
    elif types == {"integer"}:
        t = _Type(INTEGER, "int32" if fmt == "int32" else "int64")
        t.range = _INT32 if fmt == "int32" else _INT64
    elif types == {"number"}:
        t = _Type(NUMBER, "float64")
    elif types == {"boolean"}:
        t = _Type(BOOLEAN, "bool")
    else:
        t = _UNTYPED
    _COMPILED[id(s)] = (s, t)  # before the children: a type may contain itself
    if t.kind == STRUCT:
        t.props = {key: _compile(sub) for key, sub in s["properties"].items()}
        t.extra = _UNTYPED if open_ else None
    elif t.kind == MAP:
        t.extra = _compile(additional)
        t.go = f"map[string]{t.extra.go}"
    elif t.kind == LIST:
        t.extra = _compile(schemas.items_schema(s))
        t.go = f"[]{t.extra.go}"
    t.accepts, t.check = _LEAVES.get(t.kind, (None, None))
    return t


# ---- leaves ---------------------------------------------------------------------------------------


def _check_integer(value: Any, t: _Type, w: _Walk) -> None:
    if type(value) is str:  # IntOrString
        return
    if type(value) is float:
        if not (w.lenient and value.is_integer()):
            raise _Mismatch(value, t)
        w.dirty = True  # becomes an int
        value = int(value)
    low, high = t.range
    if not low <= value <= high:
        raise _Mismatch(value, t)


def _check_quantity(value: Any, t: _Type, w: _Walk) -> None:
    if type(value) is str and parse_quantity(value) is None:
        raise _Mismatch(value, t)


def _check_time(value: str, t: _Type, w: _Walk) -> None:
    if _time_error(value):
        raise _Mismatch(value, t)


def _check_bytes(value: str, t: _Type, w: _Walk) -> None:
    if _base64_error(value) is not None:
        raise _Mismatch(value, t)


_NUMBERS = frozenset((int, float))
_LEAVES: dict[int, tuple[frozenset[type] | None, Callable[[Any, _Type, _Walk], None] | None]] = {
    STRING: (frozenset((str,)), None),
    BYTES: (frozenset((str,)), _check_bytes),
    TIME: (frozenset((str,)), _check_time),
    INTEGER: (_NUMBERS, _check_integer),
    NUMBER: (_NUMBERS, None),
    BOOLEAN: (frozenset((bool,)), None),
    INT_OR_STRING: (frozenset((int, float, str)), _check_integer),
    QUANTITY: (frozenset((int, float, str)), _check_quantity),
}


def _time_error(value: str) -> bool:
    """Does `value` fail Go's time.Parse(time.RFC3339, value)?"""
    m = _RFC3339.fullmatch(value)
    if m is None:
        return True
    try:
        dt.datetime(*(int(m[i]) for i in range(1, 7)))
    except ValueError:
        return True
    return False


def _base64_error(value: str) -> int | None:
    """The offset Go's base64.StdEncoding reports for `value`, None when it decodes."""
    data = value.encode().replace(b"\r", b"").replace(b"\n", b"")
    try:
        binascii.a2b_base64(data, strict_mode=True)
        return None
    except binascii.Error:
        # the first byte outside the alphabet (misplaced padding included), else the cut-off quantum
        return next((i for i, c in enumerate(data) if c not in _BASE64), len(data) - len(data) % 4)


def _special_message(value: Any, slot: _Type) -> str:
    """The error of a type with its own UnmarshalJSON, "" when encoding/json's applies."""
    kind = slot.kind
    if kind == QUANTITY:
        return QUANTITY_FORMAT_ERROR
    if kind == TIME and isinstance(value, str):
        layout = "2006-01-02T15:04:05Z07:00"
        return f'parsing time {json.dumps(value)} as "{layout}": cannot parse {json.dumps(value)} as "2006"'
    if kind == BYTES and isinstance(value, str):
        return f"illegal base64 data at input byte {_base64_error(value)}"
    return ""


def _slot_go(slot: _Type) -> str:
    """The Go type an encoding/json error names for a slot."""
    return {INT_OR_STRING: "int32", TIME: "string"}.get(slot.kind, slot.go)


def _json_what(value: Any, slot: _Type) -> str:
    """How encoding/json names the offending JSON value ("string", "number 1.5", ...)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return f"number {value}" if slot.kind in (INTEGER, INT_OR_STRING) else "number"
    return {str: "string", dict: "object", _Pairs: "object", list: "array"}.get(type(value), type(value).__name__)


def _unstructured_kind(value: Any) -> str:
    """The reflect.Kind of a value in an unstructured map."""
    kinds = {str: "string", bool: "bool", int: "int64", float: "float64", dict: "map", list: "slice"}
    return kinds.get(type(value), type(value).__name__)


# ---- the walk -------------------------------------------------------------------------------------


def _walk(node: Any, t: _Type, path: str, w: _Walk) -> None:
    """Check `node` (not None, not a leaf) against `t`; collect strict errors; note what to normalize."""
    kind = t.kind
    if kind == LIST:
        if type(node) is not list:
            raise _Mismatch(node, t)
        item = t.extra
        assert item is not None
        for i, value in enumerate(node):
            if value is None:
                if item.kind not in (UNTYPED, RAW):
                    w.dirty = True  # becomes the item's zero value
            elif item.leaf:
                if item.accepts is not None and type(value) not in item.accepts:
                    raise _Mismatch(value, item)
                if item.check is not None:
                    item.check(value, item, w)
            else:
                _walk(value, item, f"{path}[{i}]", w)
        return
    if isinstance(node, _Pairs):
        items: Iterable[tuple[str, Any]] = node
        seen: set[str] | None = set()
    elif type(node) is dict:
        if kind == UNTYPED:
            return  # plain data: nothing to check
        items, seen = node.items(), None
    elif kind == UNTYPED:
        if type(node) is list:
            for i, value in enumerate(node):
                _walk(value, t, f"{path}[{i}]", w)
        return
    else:
        raise _Mismatch(node, t)
    props, extra = t.props, t.extra
    try:
        for key, value in items:
            sub = props.get(key, extra)
            if sub is None:
                if not path and key in _TYPE_META:  # inlined TypeMeta of every top-level type
                    sub = _STRING
                else:
                    w.dirty = True
                    if w.found is not None:
                        w.found.append(("unknown", f"{path}.{key}" if path else key))
                    continue  # kube skips an unknown field's value and tracks duplicates of known keys only
            if seen is not None:
                if key in seen:
                    assert w.found is not None
                    w.found.append(("duplicate", f"{path}.{key}" if path else key))
                else:
                    seen.add(key)
            if value is None:
                if kind != UNTYPED:
                    w.dirty = True  # a field dropped, a map value made zero
            elif sub.leaf:
                if sub.accepts is not None and type(value) not in sub.accepts:
                    raise _Mismatch(value, sub)
                if sub.check is not None:
                    sub.check(value, sub, w)
            else:
                _walk(value, sub, f"{path}.{key}" if path else key, w)
    except _Mismatch as m:
        if kind == STRUCT:
            m.at(key, t.struct)
        raise


def _normalize(node: Any, t: _Type, root: bool = False) -> None:
    """Drop unknown and null fields, turn null items and map values into zero values, floats into ints."""
    if t.kind == UNTYPED:
        return
    if type(node) is list:
        item = t.extra
        assert item is not None
        for i, value in enumerate(node):
            fixed = _fixed(value, item)
            if fixed is not value:
                node[i] = fixed
        return
    props, extra = t.props, t.extra
    for key in list(node):
        sub = props.get(key, extra)
        if sub is None:
            if not (root and key in _TYPE_META):
                del node[key]
        elif node[key] is None and t.kind == STRUCT:
            del node[key]
        else:
            fixed = _fixed(node[key], sub)
            if fixed is not node[key]:
                node[key] = fixed


def _fixed(value: Any, t: _Type) -> Any:
    """`value` normalized for a slot of type `t` (containers in place)."""
    if value is None:
        return _zero(t)
    if type(value) is float and t.kind in (INTEGER, INT_OR_STRING):
        return int(value)
    if not t.leaf:
        _normalize(value, t)
    return value


def _zero(t: _Type) -> Any:
    """The JSON of a Go zero value (None where Go writes null: times, raw and untyped values)."""
    kind = t.kind
    if kind in (STRUCT, MAP):
        return {}
    if kind == LIST:
        return []
    return {STRING: "", BYTES: "", INTEGER: 0, NUMBER: 0, BOOLEAN: False, INT_OR_STRING: 0, QUANTITY: "0"}.get(kind)


# ---- entry points ---------------------------------------------------------------------------------


def unknown_fields(obj: Any, schema: Schema | None) -> list[str]:
    """Paths (`spec.template.spec.containers[0].imagee`) of the fields `schema` does not declare."""
    w = _walk_checked(obj, schema, None)
    assert w.found is not None
    return [path for what, path in w.found if what == "unknown"]


def duplicate_fields(raw: bytes) -> list[str]:
    """Paths of keys repeated within one JSON object of `raw` (a patch body, say); [] if not JSON."""
    pairs = _pairs(raw)
    if pairs is None:
        return []
    w = _Walk(True, False)
    _walk(pairs, _UNTYPED, "", w)
    assert w.found is not None
    return [path for _, path in w.found]


def strict_errors(obj: Any, schema: Schema | None, raw: bytes | None = None) -> list[str]:
    """kube's strict decoding messages for `obj`, in document order.

    With `raw`, the JSON body `obj` was decoded from, duplicate fields are reported too."""
    w = _walk_checked(obj, schema, raw)
    assert w.found is not None
    return _messages(w.found)


def decode(
    obj: dict[str, Any],
    schema: Schema | None,
    mode: str,
    raw: bytes | None = None,
    *,
    patch: bytes | None = None,
    patch_type: str = "",
) -> list[str]:
    """Decode `obj` in place into `schema`'s type as kube does; returns the warnings for Warn.

    `raw` is the create/update request body `obj` was decoded from (JSON or YAML);
    its presence selects kube's decode-error wording. For a patch, pass the patched
    object without `raw`, the patch body as `patch` (its duplicate keys are reported
    first, as kube's patch handler does) and its media type as `patch_type`. Raises
    400 (a body) or 422 (a patched object) for a value of the wrong type, 400 for
    strict errors in Strict mode. `mode` "" means kube's default, Warn."""
    if mode not in (STRICT, WARN, IGNORE, ""):
        raise ValueError(f"unknown fieldValidation mode {mode!r}")
    t = _compile(schema)
    collect = mode != IGNORE
    w = _Walk(collect, lenient=patch_type == STRATEGIC_MERGE_PATCH)
    pairs = _pairs(raw) if collect and raw is not None and not _reencodes_to(obj, raw) else None
    try:
        _walk(obj if pairs is None else pairs, t, "", w)
    except _Mismatch as m:
        if raw is not None or patch is None:
            raise errors.bad_request(_decode_error_prefix(obj, schema) + m.json_message()) from None
        raise _patch_error(m, obj, patch, patch_type) from None
    messages: list[str] = []
    if collect:
        assert w.found is not None
        found = [f'duplicate field "{p}"' for p in duplicate_fields(patch)] if patch is not None else []
        messages = list(dict.fromkeys(found + _messages(w.found)))[:MAX_ERRORS]
    if messages and mode == STRICT:
        detail = "strict decoding error: " + ", ".join(messages)
        if raw is not None:
            detail = _decode_error_prefix(obj, schema) + detail
        raise errors.bad_request(detail)
    if w.dirty:
        _normalize(obj, t, root=True)
    return messages


def _walk_checked(obj: Any, schema: Schema | None, raw: bytes | None) -> _Walk:
    """A collecting walk; a type error is the 400 a body would get."""
    w = _Walk(True, lenient=False)
    pairs = _pairs(raw) if raw is not None else None
    try:
        _walk(obj if pairs is None else pairs, _compile(schema), "", w)
    except _Mismatch as m:
        raise errors.bad_request(_decode_error_prefix(obj, schema) + m.json_message()) from None
    return w


def _patch_error(m: _Mismatch, patched: Any, patch: bytes, patch_type: str) -> errors.StatusError:
    """kube's patch handler: a patched object that does not decode is 422 on field `patch`."""
    if patch_type == STRATEGIC_MERGE_PATCH:
        value, detail = go_value(orjson.loads(patch)), m.converter_message()
    else:
        value, detail = orjson.dumps(patched).decode(), m.json_message()
    cause = invalid("patch", value, detail)
    message = f' "" is invalid: {cause["field"]}: {cause["message"]}'
    return errors.StatusError(422, "Invalid", message, details={"causes": [cause]})


def _decode_error_prefix(obj: Any, schema: Schema | None) -> str:
    """`<Kind> in version "<v>" cannot be handled as a <Kind>: ` (kube's transformDecodeError)."""
    gvks = (schema or {}).get("x-kubernetes-group-version-kind") or [{}]
    target_kind, target_version = gvks[0].get("kind", ""), gvks[0].get("version", "")
    body = obj if isinstance(obj, dict) else {}
    kind = body.get("kind") if isinstance(body.get("kind"), str) and body.get("kind") else target_kind
    api_version = body.get("apiVersion")
    version = (
        api_version.rpartition("/")[2] if isinstance(api_version, str) and api_version else target_version
    )
    return f'{kind} in version "{version}" cannot be handled as a {target_kind}: '


def _reencodes_to(obj: Any, raw: bytes) -> bool:
    """`obj` serializes back to exactly `raw` (a compact body from an orjson-like client): then `raw`
    cannot have held duplicate keys, and the slow key-pairs parse that finds them is skipped."""
    return orjson.dumps(obj) == raw


def _pairs(raw: bytes | None) -> Any:
    """`raw` parsed with objects as `_Pairs`, or None when it is not a JSON object (e.g. YAML)."""
    if not raw or raw.lstrip()[:1] != b"{":
        return None
    try:
        return json.loads(raw, object_pairs_hook=_Pairs)
    except ValueError:
        return None


def _messages(found: Iterable[tuple[str, str]]) -> list[str]:
    return list(dict.fromkeys(f'{what} field "{path}"' for what, path in found))[:MAX_ERRORS]
