"""Field errors as metav1.StatusCauses, worded like k8s.io/apimachinery's field.Error.

A cause's message is what upstream's `ErrorBody()` renders: the error type's
phrase ("Invalid value", "Required value", ...), the bad value where the type
shows one, and the detail. Values render as Go does: strings with `%q`,
numbers and booleans plain, everything else as JSON (maps with sorted keys).
`GoStruct` renders a value as a Go struct of an internal type would marshal:
fields in declaration order under their Go names.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from k8py.api.errors import cause
from k8py.api.gofmt import go_quote

Cause = dict[str, str]



class GoStruct(dict[str, Any]):
    """A value that renders with its keys in insertion order (a Go struct), not sorted (a Go map)."""


def render(value: Any) -> str:
    if isinstance(value, str):
        return go_quote(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if value is None:
        return "null"
    if isinstance(value, GoStruct):
        return orjson.dumps(value).decode()
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _body(phrase: str, detail: str) -> str:
    return f"{phrase}: {detail}" if detail else phrase


def required(path: str, detail: str = "") -> Cause:
    return cause(path, _body("Required value", detail), "FieldValueRequired")


def forbidden(path: str, detail: str) -> Cause:
    return cause(path, _body("Forbidden", detail), "FieldValueForbidden")


def invalid(path: str, value: Any, detail: str) -> Cause:
    return cause(path, _body(f"Invalid value: {render(value)}", detail), "FieldValueInvalid")


def not_supported(path: str, value: Any, supported: Iterable[str]) -> Cause:
    detail = ", ".join(go_quote(v) for v in supported)
    return cause(
        path,
        _body(f"Unsupported value: {render(value)}", f"supported values: {detail}" if detail else ""),
        "FieldValueNotSupported",
    )


def duplicate(path: str, value: Any, detail: str = "") -> Cause:
    return cause(path, _body(f"Duplicate value: {render(value)}", detail), "FieldValueDuplicate")


def not_found(path: str, value: Any, detail: str = "") -> Cause:
    return cause(path, _body(f"Not found: {render(value)}", detail), "FieldValueNotFound")


def too_long(path: str, max_bytes: int) -> Cause:
    unit = "byte" if max_bytes == 1 else "bytes"
    return cause(path, f"Too long: may not be more than {max_bytes} {unit}", "FieldValueTooLong")


def too_many(path: str, actual: int, max_items: int) -> Cause:
    unit = "item" if max_items == 1 else "items"
    return cause(path, f"Too many: {actual}: must have at most {max_items} {unit}", "FieldValueTooMany")


def enum_value(path: str, value: Any, supported: tuple[str, ...]) -> list[Cause]:
    """The usual switch over an enum field: empty is Required, an unknown value NotSupported."""
    if value in supported:
        return []
    return [required(path)] if not value else [not_supported(path, value, supported)]


def invalid_each(path: str, value: Any, messages: Iterable[str]) -> list[Cause]:
    """One Invalid cause per message, the shape of every `for _, msg := range IsX(v)` loop upstream."""
    return [invalid(path, value, msg) for msg in messages]


def immutable(path: str, new: Any, old: Any) -> list[Cause]:
    """ValidateImmutableField."""
    return [] if new == old else [invalid(path, new, "field is immutable")]


def non_negative(path: str, value: int | None) -> list[Cause]:
    """ValidateNonnegativeField (None, an unset pointer, passes)."""
    if value is None or value >= 0:
        return []
    return [invalid(path, value, "must be greater than or equal to 0")]
