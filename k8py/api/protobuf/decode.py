"""Protobuf messages to the JSON values a JSON client would have sent.

`decode_message` walks a message by its description (`schema.fields_of`):
fields absent from the wire are absent from the result (proto2 `optional`),
unknown field numbers are skipped (as gogo-protobuf does), zero scalars are
dropped unless the description keeps them, repeated fields become lists
(packed or not), maps dicts, bytes base64 strings. Types whose JSON form is
not their message shape (Time, Quantity, IntOrString, RawExtension, ...) are
`SPECIAL`: each has its own small decoder here.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
from collections.abc import Callable
from typing import Any

import orjson

from k8py.api.nesting import MAX_DEPTH, check_json
from k8py.api.protobuf import wire
from k8py.api.protobuf.schema import SCALARS, FieldSpec, fields_of

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_NUMERIC = SCALARS - {"string", "bytes"}  # what may come packed
_INTEGERS: dict[str, Callable[[int], int]] = {"int32": wire.int32, "int64": wire.int64, "uint32": wire.uint32, "uint64": int}
# a map entry may leave out its value: the value type's zero
_ZERO: dict[str, Any] = {"string": "", "bytes": "", "bool": False, **dict.fromkeys(_NUMERIC - {"bool"}, 0)}


def _scalar(type_: str, wire_type: int, value: int | bytes) -> Any:
    if type_ in ("string", "bytes"):
        if wire_type != wire.LEN:
            raise wire.DecodeError(f"{type_} sent with wire type {wire_type}")
        assert isinstance(value, bytes)
        return value.decode("utf-8", "replace") if type_ == "string" else base64.b64encode(value).decode()
    expected = {"double": wire.I64, "float": wire.I32}.get(type_, wire.VARINT)
    if wire_type != expected:
        raise wire.DecodeError(f"{type_} sent with wire type {wire_type}")
    assert isinstance(value, int)
    if type_ in ("double", "float"):
        f = wire.double(value) if type_ == "double" else wire.float32(value)
        if not math.isfinite(f):
            raise wire.DecodeError(f"{f} is not a JSON number")
        return int(f) if f.is_integer() and abs(f) < 1e21 else f  # Go's JSON writes 1.0 as 1
    if type_ == "bool":
        return value != 0
    return _INTEGERS[type_](value)


def _packed(type_: str, buf: bytes) -> list[Any]:
    if type_ in ("double", "float"):
        width, wire_type = (8, wire.I64) if type_ == "double" else (4, wire.I32)
        return [_scalar(type_, wire_type, v) for v in wire.packed_fixed(buf, width)]
    return [_scalar(type_, wire.VARINT, v) for v in wire.packed_varints(buf)]


def _is_zero(value: Any) -> bool:
    return value == "" or value is False or (value == 0 and not isinstance(value, bool))


def _value(spec_type: str, wire_type: int, value: int | bytes, depth: int) -> Any:
    if spec_type in SCALARS:
        return _scalar(spec_type, wire_type, value)
    if wire_type != wire.LEN:
        raise wire.DecodeError(f"message {spec_type} sent with wire type {wire_type}")
    assert isinstance(value, bytes)
    return decode_message(value, spec_type, depth + 1)


def decode_message(buf: bytes, message: str, depth: int = 0) -> Any:
    """The JSON value of the protobuf message `buf` of type `message` (a short name, e.g. `apps.v1.Deployment`)."""
    if depth > MAX_DEPTH:
        raise wire.DecodeError(f"the message nests deeper than {MAX_DEPTH} levels")
    special = SPECIAL.get(message)
    if special is not None:
        return special(buf, depth)
    fields = fields_of(message)
    if fields is None:
        raise wire.DecodeError(f"no description of message {message}")
    out: dict[str, Any] = {}
    for number, wire_type, value in wire.fields(buf):
        spec = fields.get(number)
        if spec is None:
            continue
        try:
            _set(out, spec, wire_type, value, depth)
        except wire.DecodeError as e:
            raise wire.DecodeError(f"{message}.{spec.name or spec.type}: {e}") from None
    only = next(iter(fields.values())) if len(fields) == 1 else None
    if only is not None and not only.name and only.repeated:  # a list wrapper (ExtraValue): the message is its items
        return out.get("", [])
    inline = out.pop("", None)
    return {**inline, **out} if inline else out


def _set(out: dict[str, Any], spec: FieldSpec, wire_type: int, value: int | bytes, depth: int) -> None:
    if spec.map_key:
        if wire_type != wire.LEN:
            raise wire.DecodeError(f"map entry sent with wire type {wire_type}")
        assert isinstance(value, bytes)
        key, item = "", None
        for n, wt, v in wire.fields(value):
            if n == 1:
                key = _scalar(spec.map_key, wt, v)
            elif n == 2:
                item = _value(spec.type, wt, v, depth)
        if item is None:
            item = _ZERO[spec.type] if spec.type in _ZERO else decode_message(b"", spec.type, depth + 1)
        out.setdefault(spec.name, {})[key] = item
    elif spec.repeated:
        items = out.setdefault(spec.name, [])
        if wire_type == wire.LEN and spec.type in _NUMERIC:
            assert isinstance(value, bytes)
            items.extend(_packed(spec.type, value))
        else:
            items.append(_value(spec.type, wire_type, value, depth))
    else:
        decoded = _value(spec.type, wire_type, value, depth)
        if decoded is None or (not spec.keep_zero and spec.type in SCALARS and _is_zero(decoded)):
            out.pop(spec.name, None)
        else:
            out[spec.name] = decoded



# ---- types with JSON forms of their own ---------------------------------------------------------


def _fields(buf: bytes) -> dict[int, tuple[int, int | bytes]]:
    """The last occurrence of each field (enough for the small messages below)."""
    return {n: (wt, v) for n, wt, v in wire.fields(buf)}


def _get(f: dict[int, tuple[int, int | bytes]], number: int, type_: str, default: Any = None) -> Any:
    return _scalar(type_, *f[number]) if number in f else default


def _timestamp(buf: bytes, *, micro: bool) -> str | None:
    """metav1.Time (seconds; kube drops nanos) and MicroTime as RFC 3339; empty means the zero time: null."""
    if not buf:
        return None
    f = _fields(buf)
    seconds = _get(f, 1, "int64", 0)
    nanos = _get(f, 2, "int32", 0) if micro else 0
    try:
        t = _EPOCH + dt.timedelta(seconds=seconds, microseconds=nanos // 1000)
    except OverflowError:
        raise wire.DecodeError(f"timestamp {seconds} is out of range") from None
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ")


def go_duration(ns: int) -> str:
    """time.Duration.String(): "1h2m3.5s", "150ms", "0s"."""
    if ns == 0:
        return "0s"
    sign, u = ("-" if ns < 0 else ""), abs(ns)

    def frac(value: int, unit: int, digits: int) -> str:
        whole, rest = divmod(value, unit)
        return str(whole) + ("." + f"{rest:0{digits}d}".rstrip("0") if rest else "")

    if u < 1000:
        return f"{sign}{u}ns"
    if u < 1_000_000:
        return f"{sign}{frac(u, 1000, 3)}µs"
    if u < 1_000_000_000:
        return f"{sign}{frac(u, 1_000_000, 6)}ms"
    seconds = u // 1_000_000_000
    text = frac(u % 60_000_000_000, 1_000_000_000, 9) + "s"
    minutes, hours = seconds // 60 % 60, seconds // 3600
    if seconds >= 60:
        text = f"{minutes}m{text}"
    if hours:
        text = f"{hours}h{text}"
    return sign + text


def _json_raw(buf: bytes, depth: int) -> Any:
    """RawExtension, FieldsV1 and apiextensions' JSON: one bytes field holding JSON; empty is null."""
    wire_type, raw = _fields(buf).get(1, (wire.LEN, b""))
    if wire_type != wire.LEN:
        raise wire.DecodeError(f"raw JSON sent with wire type {wire_type}")
    assert isinstance(raw, bytes)
    if not raw:
        return None
    check_json(raw)  # orjson recurses on the C stack: measure first
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise wire.DecodeError(f"embedded JSON is malformed: {e}") from None


def _int_or_string(buf: bytes, depth: int) -> int | str:
    f = _fields(buf)
    if _get(f, 1, "int64", 0) == 1:
        return _get(f, 3, "string", "")
    return _get(f, 2, "int32", 0)


def _props(buf: bytes, depth: int) -> Any:
    return decode_message(buf, "apiextensions.v1.JSONSchemaProps", depth + 1)


def _message_fields(buf: bytes, depth: int, schema_field: int) -> tuple[Any, list[tuple[int, int, int | bytes]]]:
    """The JSONSchemaProps in `schema_field` (or None) and the other fields, for the JSONSchemaPropsOr* types."""
    schema, others = None, []
    for n, wt, v in wire.fields(buf):
        if n == schema_field:
            if wt != wire.LEN:
                raise wire.DecodeError(f"schema sent with wire type {wt}")
            assert isinstance(v, bytes)
            schema = _props(v, depth)
        else:
            others.append((n, wt, v))
    return schema, others


def _props_or_array(buf: bytes, depth: int) -> Any:
    schema, others = _message_fields(buf, depth, 1)
    array = [_value("apiextensions.v1.JSONSchemaProps", wt, v, depth) for n, wt, v in others if n == 2]
    return array if array else schema


def _props_or_bool(buf: bytes, depth: int) -> Any:
    schema, others = _message_fields(buf, depth, 2)
    if schema is not None:
        return schema
    return any(_scalar("bool", wt, v) for n, wt, v in others if n == 1)


def _props_or_string_array(buf: bytes, depth: int) -> Any:
    schema, others = _message_fields(buf, depth, 1)
    strings = [_scalar("string", wt, v) for n, wt, v in others if n == 2]
    return strings if strings else schema


SPECIAL: dict[str, Callable[[bytes, int], Any]] = {
    "meta.v1.Time": lambda buf, depth: _timestamp(buf, micro=False),
    "meta.v1.MicroTime": lambda buf, depth: _timestamp(buf, micro=True),
    "meta.v1.Duration": lambda buf, depth: go_duration(_get(_fields(buf), 1, "int64", 0)),
    "meta.v1.FieldsV1": _json_raw,
    "runtime.RawExtension": _json_raw,
    "resource.Quantity": lambda buf, depth: _get(_fields(buf), 1, "string", "") or "0",
    "intstr.IntOrString": _int_or_string,
    "apiextensions.v1.JSON": _json_raw,
    "apiextensions.v1.JSONSchemaPropsOrArray": _props_or_array,
    "apiextensions.v1.JSONSchemaPropsOrBool": _props_or_bool,
    "apiextensions.v1.JSONSchemaPropsOrStringArray": _props_or_string_array,
}
