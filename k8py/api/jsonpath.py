"""The JSONPath of client-go's `util/jsonpath`, as far as CRD printer columns use it.

kube-apiserver evaluates each `additionalPrinterColumns[].jsonPath` with client-go's
JSONPath (missing keys allowed) and prints the first value found. Supported here:
fields (`.spec.replicas`, `['a.b']`), `*` and `[*]`, recursive descent (`..name`),
indexes and slices (`[0]`, `[-1]`, `[1:3]`, `[::2]`), unions (`[0,2]`, `['a','b']`)
and filters (`[?(@.type=="Ready")]`, with `==`, `!=`, `<`, `<=`, `>`, `>=`, or a
bare `@.field` for existence), compared like Go's text/template: only values of the
same kind compare. A path that does not parse raises `JSONPathError`; one that finds
nothing returns [] (as client-go with AllowMissingKeys).

`text()` renders a found value as `PrintResults` does: strings as they are, numbers
with Go's `%v`, maps and lists as compact JSON with sorted keys.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from k8py.api.gofmt import go_number


class JSONPathError(ValueError):
    """The expression is not a JSONPath this module understands."""


@dataclass(frozen=True)
class _Field:
    name: str


@dataclass(frozen=True)
class _Wildcard:
    pass


@dataclass(frozen=True)
class _Recursive:
    pass


@dataclass(frozen=True)
class _Slice:
    start: int | None
    end: int | None
    step: int | None
    single: bool  # `[3]` rather than `[3:4]`


@dataclass(frozen=True)
class _Union:
    parts: tuple[_Field | _Slice, ...]


@dataclass(frozen=True)
class _Literal:
    value: Any


@dataclass(frozen=True)
class _Filter:
    left: tuple[Any, ...]
    op: str  # "" for an existence test
    right: tuple[Any, ...] | _Literal


_FILTER = re.compile(r"^([^!<>=]+)([!<>=]+)(.+?)$")
_FIELD_END = ".[]()*, "


def _split_top(text: str, sep: str) -> list[str]:
    """`text` split at `sep`, except inside quotes."""
    parts: list[str] = []
    current: list[str] = []
    quote = ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == sep:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return parts


def _closing_bracket(text: str, start: int) -> int:
    depth, quote = 0, ""
    for i in range(start, len(text)):
        ch = text[i]
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
            if depth == 0:
                return i
    raise JSONPathError(f"unclosed array expect ] in {text!r}")


def _int(text: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise JSONPathError(f"invalid array index {text!r}") from None


def _literal(text: str) -> _Literal | None:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return _Literal(text[1:-1])
    if text in ("true", "false"):
        return _Literal(text == "true")
    for kind in (int, float):
        try:
            return _Literal(kind(text))
        except ValueError:
            pass
    return None


def _bracket(content: str) -> Any:
    content = content.strip()
    if content.startswith("?(") and content.endswith(")"):
        inner = content[2:-1].strip()
        match = _FILTER.match(inner)
        if match is None:
            return _Filter(_parse(inner), "", ())
        left, op, right = match.groups()
        if op not in ("==", "!=", "<", "<=", ">", ">="):
            raise JSONPathError(f"unrecognized filter operator {op!r}")
        return _Filter(_parse(left.strip()), op, _literal(right) or _parse(right.strip()))
    if content == "*":
        return _Wildcard()
    parts = _split_top(content, ",")
    if any(p.strip()[:1] in ("'", '"') for p in parts):
        names = [_literal(p) for p in parts]
        if any(n is None or not isinstance(n.value, str) for n in names):
            raise JSONPathError(f"invalid field list {content!r}")
        fields = tuple(_Field(n.value) for n in names if n is not None)
        return fields[0] if len(fields) == 1 else _Union(fields)
    slices = []
    for part in parts:
        bounds = part.split(":")
        if len(bounds) > 3:
            raise JSONPathError(f"invalid array slice {part!r}")
        values = [_int(b) for b in bounds] + [None] * (3 - len(bounds))
        slices.append(_Slice(values[0], values[1], values[2], len(bounds) == 1))
    return slices[0] if len(slices) == 1 else _Union(tuple(slices))


def _parse(text: str) -> tuple[Any, ...]:
    steps: list[Any] = []
    i, n = 0, len(text)
    if text[:1] in ("$", "@"):
        i = 1
    while i < n:
        ch = text[i]
        if text.startswith("..", i):
            steps.append(_Recursive())
            i += 1
        elif ch == ".":
            i += 1
            start = i
            while i < n and text[i] not in _FIELD_END:
                i += 1
            if i < n and text[i] == "*" and i == start:
                steps.append(_Wildcard())
                i += 1
            elif i > start:
                steps.append(_Field(text[start:i]))
        elif ch == "[":
            end = _closing_bracket(text, i)
            steps.append(_bracket(text[i + 1 : end]))
            i = end + 1
        elif ch == "*":
            steps.append(_Wildcard())
            i += 1
        elif ch.isspace():
            i += 1
        else:
            raise JSONPathError(f"unrecognized character in action: {ch!r}")
    return tuple(steps)


def _descendants(value: Any) -> Iterator[Any]:
    yield value
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    for child in children:
        yield from _descendants(child)


def _slice(values: list[Any], s: _Slice) -> list[Any]:
    if s.single:
        if s.start is None:
            return []
        index = s.start + len(values) if s.start < 0 else s.start
        return [values[index]] if 0 <= index < len(values) else []
    return values[s.start : s.end : s.step or None]


def _comparable(a: Any, b: Any) -> bool:
    def kind(v: Any) -> str:
        if isinstance(v, bool):
            return "bool"
        if isinstance(v, int | float):
            return "number"
        return type(v).__name__

    return kind(a) == kind(b)


def _compare(a: Any, op: str, b: Any) -> bool:
    if not _comparable(a, b):
        return False
    if op == "==":
        return bool(a == b)
    if op == "!=":
        return bool(a != b)
    if isinstance(a, dict | list | bool) or a is None:
        return False
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


def _matches(item: Any, f: _Filter) -> bool:
    lefts = _evaluate(f.left, [item])
    if not f.op:
        return bool(lefts)
    rights = [f.right.value] if isinstance(f.right, _Literal) else _evaluate(f.right, [item])
    if len(lefts) != 1 or len(rights) != 1:
        return False
    return _compare(lefts[0], f.op, rights[0])


def _step(step: Any, values: list[Any]) -> list[Any]:
    out: list[Any] = []
    for value in values:
        if isinstance(step, _Field):
            if isinstance(value, dict) and step.name in value:
                out.append(value[step.name])
        elif isinstance(step, _Wildcard):
            if isinstance(value, dict):
                out.extend(value.values())
            elif isinstance(value, list):
                out.extend(value)
        elif isinstance(step, _Recursive):
            out.extend(_descendants(value))
        elif isinstance(step, _Slice):
            if isinstance(value, list):
                out.extend(_slice(value, step))
        elif isinstance(step, _Union):
            for part in step.parts:
                out.extend(_step(part, [value]))
        elif isinstance(step, _Filter) and isinstance(value, list):
            out.extend(item for item in value if _matches(item, step))
    return out


def _evaluate(steps: tuple[Any, ...], values: list[Any]) -> list[Any]:
    for step in steps:
        values = _step(step, values)
    return values


class JSONPath:
    """A parsed path such as `.status.conditions[?(@.type=="Ready")].status` (no `{}`)."""

    def __init__(self, expression: str) -> None:
        text = expression.strip()
        if text.startswith("{") and text.endswith("}"):
            text = text[1:-1].strip()
        self.expression = expression
        self._steps = _parse(text)

    def find(self, obj: Any) -> list[Any]:
        """Every value the path reaches in `obj`, in order; [] when it reaches none."""
        return _evaluate(self._steps, [obj])


def text(value: Any) -> str | None:
    """A value as client-go's JSONPath prints it; None for JSON null (which it cannot print)."""
    if value is None:
        return None
    if isinstance(value, dict | list):
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return go_number(value)
    return str(value)
