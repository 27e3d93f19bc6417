"""YAML request bodies, read as kube-apiserver reads them: as the JSON they convert to.

kube turns YAML into JSON (sigs.k8s.io/yaml over go-yaml) before decoding it, so
only JSON values come out: timestamps stay the text they are, `!!binary` is its
decoded text, a `!!set` is a map of nulls, `!!omap`/`!!pairs` are lists of
one-entry maps, map keys become strings (`1` -> "1", `true` -> "true"), integers
beyond 64 bits become floats, and NaN or infinities, which JSON cannot hold, are
errors. PyYAML's safe loader would hand back dates, bytes, sets, tuples and
non-string keys instead, which nothing downstream can store.

Two limits are checked on the parser's events before anything is built (libyaml
composes nodes recursively in C, so a document nested 100k deep would overflow
its stack): the nesting depth, aliases included (`nesting.MAX_DEPTH`), and
go-yaml's alias expansion limit, which rejects "billion laughs" documents whose
aliases expand to far more nodes than they spell out ("document contains
excessive aliasing"). A document with aliases is copied once built, so that, as
in Go, no two places of it share a dict or list that later code could change.
"""

from __future__ import annotations

import math
from typing import Any

import orjson
import yaml

from k8py.api import nesting

try:
    _SafeLoader: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML without libyaml
    _SafeLoader = yaml.SafeLoader

_UINT64_MAX = (1 << 64) - 1
_INT64_MIN = -(1 << 63)


class LimitError(yaml.YAMLError):
    """A YAML document beyond the nesting or alias limits."""


class _JSONLoader(_SafeLoader):  # type: ignore[misc, valid-type]
    """A safe loader whose values are JSON values."""

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[str, Any]:
        """A mapping with its keys made strings as they are built (so `1` and `true` stay two keys)."""
        if not isinstance(node, yaml.MappingNode):
            raise yaml.constructor.ConstructorError(
                None, None, f"expected a mapping node, but found {node.id}", node.start_mark
            )
        self.flatten_mapping(node)
        return {
            _key(self.construct_object(k, deep=deep), k): self.construct_object(v, deep=deep) for k, v in node.value
        }


def _key(key: Any, node: Any) -> str:
    """A map key as sigs.k8s.io/yaml writes it into JSON."""
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, int):
        return str(key)
    if isinstance(key, float):
        return ".nan" if math.isnan(key) else ".inf" if key == math.inf else "-.inf" if key == -math.inf else repr(key)
    raise yaml.constructor.ConstructorError(
        None, None, f"unsupported map key of type {type(key).__name__}", node.start_mark
    )


def _int(loader: _JSONLoader, node: Any) -> int | float:
    try:
        value = yaml.constructor.SafeConstructor.construct_yaml_int(loader, node)
    except ValueError:  # more digits than Python converts
        return _float_value(math.inf, node)
    if _INT64_MIN <= value <= _UINT64_MAX:
        return value
    try:
        return _float_value(float(value), node)
    except OverflowError:
        return _float_value(math.inf if value > 0 else -math.inf, node)


def _float(loader: _JSONLoader, node: Any) -> float:
    return _float_value(yaml.constructor.SafeConstructor.construct_yaml_float(loader, node), node)


def _float_value(value: float, node: Any) -> float:
    if math.isnan(value) or math.isinf(value):
        raise yaml.constructor.ConstructorError(None, None, f"json: unsupported value: {value}", node.start_mark)
    return value


def _binary(loader: _JSONLoader, node: Any) -> str:
    return yaml.constructor.SafeConstructor.construct_yaml_binary(loader, node).decode("utf-8", "replace")


def _set(loader: _JSONLoader, node: Any) -> Any:
    data: dict[str, Any] = {}
    yield data
    data.update(dict.fromkeys(loader.construct_mapping(node)))


def _pairs(loader: _JSONLoader, node: Any) -> Any:
    items: list[dict[str, Any]] = []
    yield items
    for entry in node.value:
        items.append(loader.construct_mapping(entry))


_JSONLoader.add_constructor("tag:yaml.org,2002:timestamp", yaml.constructor.SafeConstructor.construct_yaml_str)
_JSONLoader.add_constructor("tag:yaml.org,2002:int", _int)
_JSONLoader.add_constructor("tag:yaml.org,2002:float", _float)
_JSONLoader.add_constructor("tag:yaml.org,2002:binary", _binary)
_JSONLoader.add_constructor("tag:yaml.org,2002:set", _set)
_JSONLoader.add_constructor("tag:yaml.org,2002:omap", _pairs)
_JSONLoader.add_constructor("tag:yaml.org,2002:pairs", _pairs)


def load(body: bytes) -> Any:
    """The JSON value of a one-document YAML body; yaml.YAMLError when it is not one or breaks a limit."""
    aliased = _check_limits(body)
    value = yaml.load(body, Loader=_JSONLoader)
    return orjson.loads(orjson.dumps(value)) if aliased else value


def _check_limits(body: bytes) -> bool:
    """Nesting depth and alias expansion, counted on the parser's events; are there aliases?"""
    sizes: dict[str, tuple[int, int]] = {}  # anchor -> (nodes, depth) of what it names
    stack: list[list[Any]] = [[None, 0, 0]]  # open collections: [anchor, nodes, depth below]
    aliased = 0
    for event in yaml.parse(body, Loader=_SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            stack.append([event.anchor, 1, 0])
            if len(stack) - 1 > nesting.MAX_DEPTH:
                raise LimitError(nesting.too_deep().message)
            continue
        if isinstance(event, yaml.CollectionEndEvent):
            anchor, nodes, below = stack.pop()
            size = (nodes, below + 1)
        elif isinstance(event, yaml.ScalarEvent):
            anchor, size = event.anchor, (1, 0)
        elif isinstance(event, yaml.AliasEvent):
            anchor, found = None, sizes.get(event.anchor)
            if found is None:  # undefined, or an alias inside what it names
                raise LimitError(f"unknown or recursive anchor {event.anchor!r}")
            size = found
            aliased += size[0]
        else:
            continue
        if anchor is not None:
            sizes[anchor] = size
        parent = stack[-1]
        parent[1] += size[0]
        parent[2] = max(parent[2], size[1])
        if len(stack) - 1 + size[1] > nesting.MAX_DEPTH:
            raise LimitError(nesting.too_deep().message)
    decoded = stack[0][1]
    if aliased > 100 and decoded > 1000 and aliased / decoded > _allowed_alias_ratio(decoded):
        raise LimitError("document contains excessive aliasing")
    return aliased > 0


def _allowed_alias_ratio(decoded: int) -> float:
    """go-yaml's share of nodes that may come from aliases: 99% of small documents, 10% of huge ones."""
    low, high = 400_000, 4_000_000
    if decoded <= low:
        return 0.99
    if decoded >= high:
        return 0.10
    return 0.99 - 0.89 * (decoded - low) / (high - low)
