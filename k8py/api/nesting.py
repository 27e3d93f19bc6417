"""How deeply the API server lets the documents it decodes nest.

orjson parses recursively and overflows the C stack on a document nested some
10^5 levels deep (a crash, not an error); it encodes at most 255 levels; and the
code that walks objects (patches, validation, YAML output) recurses. So a request
body nested deeper than `MAX_DEPTH` is refused with 400 before it is parsed:
`check_json` measures the JSON text itself (strings skipped), at C speed, and only
when the body has more brackets than the limit; YAML is measured on the parser's
events (`k8py.api.yamljson`). A JSON patch, which can nest a document deeper than
its body, is checked on each value it puts (`depth`). Stored objects therefore
stay within `MAX_DEPTH`, and lists and watch events wrapping them within orjson's
limit. kube's JSON decoder stops at 10000 levels; no real object comes near either.
"""

from __future__ import annotations

import array
import itertools
import re
from typing import Any

from k8py.api import errors

MAX_DEPTH = 200
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = re.compile(rb"[^\[\]{}]+")
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # +1 and, as a signed byte, -1


def depth(value: Any, limit: int = MAX_DEPTH) -> int:
    """How many objects and arrays `value` nests (a scalar: 0), counting at most to `limit` + 1."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, level)
        if deepest > limit:
            break
        stack.extend((child, level + 1) for child in children if isinstance(child, dict | list))
    return deepest


def check_json(raw: bytes) -> None:
    """400 BadRequest when the JSON text `raw` nests deeper than MAX_DEPTH (safe before parsing it)."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH:
        return  # a document nests no deeper than it has brackets
    brackets = _NOT_BRACKET.sub(b"", _STRING.sub(b"", raw))
    if max(itertools.accumulate(array.array("b", brackets.translate(_STEPS))), default=0) > MAX_DEPTH:
        raise too_deep()


def too_deep() -> errors.StatusError:
    return errors.bad_request(f"the document exceeds the maximum nesting depth of {MAX_DEPTH}")
