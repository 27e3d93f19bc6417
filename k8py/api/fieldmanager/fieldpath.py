"""Field sets: structured-merge-diff's `fieldpath.Set`, kept in its FieldsV1 wire form.

`managedFields[].fieldsV1` serializes a set of field paths as a trie of JSON objects
keyed by path elements:

- `f:<name>`  a struct field or a map key,
- `k:<json>`  the item of a `map` list whose key fields have these values (a JSON
  object, fields sorted by name, compact, Go's escaping),
- `v:<json>`  the item of a `set` list with this value,
- `i:<n>`     the item at an index of an atomic list (k8py never produces one: atomic
  lists are leaves, as upstream's ToFieldSet and Compare treat them),

where a node `{}` is a path in the set and a `"."` key marks a node that is in the
set *and* has children. k8py works on that form directly: a set is the dict of the
root's children (a `Node`), exactly the `fieldsV1` value, so a stored entry needs no
decoding and an updated one no encoding, which matters because every create and
update records one. The operations keep two invariants: no node that is neither a
member nor has children (it would read back as a member), and upstream's order of
keys, which is the byte order of the JSON it writes: `"."` first, then fields by
name, keys (FieldLists compared name by name, value by value), values
(`value.Compare`: numbers, strings, booleans, lists, maps, null) and indices.

Sets are values: operations build new nodes and share unchanged subtrees, and
nothing mutates a node once built. That is what lets every leaf be the one `LEAF`
dict (a create's set is mostly leaves; allocating each is work for the GC).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from typing import Any

import orjson

from k8py.api.gofmt import go_number
from k8py.api.validation.field import go_quote

Node = dict[str, Any]
SELF = "."  # the node itself is a member (it also has children)
LEAF: Node = {}  # the member leaf, shared (never mutate a set's nodes)
_HTML = re.compile("[<>&\u2028\u2029]")
_HTML_ESCAPES = (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029"))


class InvalidFieldSet(ValueError):
    """A fieldsV1 value that is not a valid set (upstream's FromJSON would fail)."""


# ---- path elements ----------------------------------------------------------------------------


def go_json(value: Any) -> str:
    """`value` as Go's encoding/json writes it: compact, maps sorted, `<>&` escaped, integral floats plain."""
    text = orjson.dumps(_integral_floats(value), option=orjson.OPT_SORT_KEYS).decode()
    if _HTML.search(text):
        for raw, escaped in _HTML_ESCAPES:
            text = text.replace(raw, escaped)
    return text


def _integral_floats(value: Any) -> Any:
    """Integral floats as ints (Go prints float64 1 as `1`), rebuilding only what holds one."""
    if isinstance(value, float):
        return int(value) if value.is_integer() and abs(value) < 1e21 else value
    if isinstance(value, dict):
        items = {k: _integral_floats(v) for k, v in value.items()}
        return value if all(items[k] is v for k, v in value.items()) else items
    if isinstance(value, list):
        out = [_integral_floats(v) for v in value]
        return value if all(a is b for a, b in zip(out, value, strict=True)) else out
    return value


def field(name: str) -> str:
    return "f:" + name


def key(fields: dict[str, Any]) -> str:
    """The `k:` element of a map-list item with these key field values."""
    if len(fields) == 1:  # the usual case (a name, a port): cached
        [(name, v)] = fields.items()
        if type(v) is str or type(v) is int:
            return single_key(name, v)
    return "k:" + go_json(fields)


@functools.lru_cache(maxsize=16384)
def single_key(name: str, v: str | int) -> str:
    """`key({name: v})` for a string or int (not bool) `v`."""
    return "k:" + go_json({name: v})


def value(item: Any) -> str:
    """The `v:` element of a set-list item."""
    return "v:" + go_json(item)


def _value_order(v: Any) -> tuple[Any, ...]:
    """upstream's `value.Compare` as a sort key: numbers < strings < booleans < lists < maps < null."""
    if v is None:
        return (5,)
    if isinstance(v, bool):
        return (2, v)
    if isinstance(v, int | float):
        return (0, v)
    if isinstance(v, str):
        return (1, v)
    if isinstance(v, list):
        return (3, tuple(_value_order(x) for x in v))
    return (4, tuple((k, _value_order(v[k])) for k in sorted(v)))


@functools.lru_cache(maxsize=16384)
def _element_order(pe: str) -> tuple[Any, ...]:
    kind = pe[0]
    if kind == "f":
        return (1, pe[2:])
    if kind == "k":
        fields = orjson.loads(pe[2:])
        return (2, tuple((k, _value_order(fields[k])) for k in sorted(fields)))
    if kind == "v":
        return (3, _value_order(orjson.loads(pe[2:])))
    if kind == "i":
        return (4, int(pe[2:]))
    return (0,)  # SELF


def sort_elements(elements: list[str]) -> list[str]:
    """Path elements in upstream's order (plain string order when all are fields)."""
    if all(pe[0] in ".f" for pe in elements):
        return sorted(elements)
    return sorted(elements, key=_element_order)


def element_string(pe: str) -> str:
    """upstream's `PathElement.String()`: `.name`, `[k=v,...]`, `[=v]`, `[i]`."""
    kind, text = pe[0], pe[2:]
    if kind == "f":
        return "." + text
    if kind == "k":
        fields = orjson.loads(text)
        return "[" + ",".join(f"{k}={_value_string(fields[k])}" for k in sorted(fields)) + "]"
    if kind == "v":
        return f"[={_value_string(orjson.loads(text))}]"
    return f"[{text}]"


def _value_string(v: Any) -> str:
    """upstream's `value.ToString`."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return go_number(v)
    if isinstance(v, str):
        return go_quote(v)
    if isinstance(v, list):
        return "[" + ",".join(_value_string(x) for x in v) + "]"
    return "".join(f"{k}={_value_string(x)}" for k, x in v.items())


def path_string(path: tuple[str, ...]) -> str:
    """A path as upstream prints it in conflicts: `.spec.containers[name="app"].image`."""
    return "".join(element_string(pe) for pe in path)


# ---- nodes ------------------------------------------------------------------------------------


def is_member(node: Node) -> bool:
    return not node or SELF in node


def make(member: bool, children: Node) -> Node | None:
    """A node from its membership and children (in order); None when it would be empty."""
    if not children:
        return LEAF if member else None
    return {SELF: LEAF, **children} if member else children


def children(node: Node) -> Node:
    return {k: v for k, v in node.items() if k != SELF} if SELF in node else node


def _sorted(node: Node) -> Node:
    keys = sort_elements(list(node))
    return node if keys == list(node) else {k: node[k] for k in keys}


def union(a: Node, b: Node) -> Node:
    """Every path of `a` or `b`."""
    if not b or a is b:
        return a
    if not a:
        return b
    out = dict(a)
    added = False
    for pe, bn in b.items():
        an = out.get(pe)
        if an is None:
            out[pe] = bn
            added = True
        else:
            out[pe] = _union_node(an, bn)
    return _sorted(out) if added else out


def _union_node(a: Node, b: Node) -> Node:
    member = is_member(a) or is_member(b)
    node = make(member, union(children(a), children(b)))
    assert node is not None
    return node


def difference(a: Node, b: Node) -> Node:
    """The paths of `a` that are not in `b` (children are compared one by one)."""
    if not b or not a:
        return a
    out: Node = {}
    for pe, an in a.items():
        bn = b.get(pe)
        if bn is None:
            out[pe] = an
            continue
        node = make(is_member(an) and not is_member(bn), difference(children(an), children(bn)))
        if node is not None:
            out[pe] = node
    return out


def intersection(a: Node, b: Node) -> Node:
    """The paths in both `a` and `b`."""
    out: Node = {}
    for pe, an in a.items():
        bn = b.get(pe)
        if bn is None:
            continue
        node = make(is_member(an) and is_member(bn), intersection(children(an), children(bn)))
        if node is not None:
            out[pe] = node
    return out


def paths(node: Node, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """The member paths, as upstream's `Set.Iterate` yields them: a node's members, then its children's."""
    subtrees = []
    for pe, child in node.items():
        if is_member(child):
            yield (*prefix, pe)
        if child and (len(child) > 1 or SELF not in child):
            subtrees.append((pe, child))
    for pe, child in subtrees:
        yield from paths(children(child), (*prefix, pe))


# ---- decoding ---------------------------------------------------------------------------------


def decode(raw: Any) -> Node:
    """A fieldsV1 value from a client, checked and put in upstream's form (keys re-encoded and sorted).

    Unknown element kinds are dropped, as upstream's reader does; anything else malformed raises
    InvalidFieldSet."""
    if not isinstance(raw, dict):
        raise InvalidFieldSet("fieldsV1 must be an object")
    return children(_decode_node(raw))


def _decode_node(raw: dict[str, Any]) -> Node:
    out: Node = {}
    member = False
    for pe, sub in raw.items():
        if pe == SELF:
            member = True
            continue
        if len(pe) < 2 or pe[1] != ":" or not isinstance(sub, dict):
            raise InvalidFieldSet(f"invalid path element {pe!r}")
        kind = pe[0]
        if kind not in "fkvi":
            continue
        if kind in "kv":
            try:
                decoded = orjson.loads(pe[2:])
            except orjson.JSONDecodeError as e:
                raise InvalidFieldSet(f"invalid path element {pe!r}") from e
            if kind == "k" and not isinstance(decoded, dict):
                raise InvalidFieldSet(f"invalid key {pe!r}")
            pe = key(decoded) if kind == "k" else value(decoded)
        elif kind == "i" and not pe[2:].lstrip("-").isdigit():
            raise InvalidFieldSet(f"invalid index {pe!r}")
        child = _decode_node(sub)
        out[pe] = _union_node(out[pe], child) if pe in out else child
    node = make(member or not out, _sorted(out))
    assert node is not None
    return node
