"""Schema-directed walks over objects: structured-merge-diff's `typed` package on JSON dicts.

A schema (kubernetes-validate's dialect, which CRD schemas are translated into) is
compiled, lazily and once per schema node, into a `Type` carrying what upstream's
`schemaconv` derives from OpenAPI:

- objects with `properties` are structs, with `additionalProperties` maps; both are
  granular unless `x-kubernetes-map-type: atomic` (on the field or its type);
- arrays follow `x-kubernetes-list-type` (`map` with `x-kubernetes-list-map-keys`,
  `set`, `atomic`); without one, a `merge` patch strategy makes a map list keyed by
  the patch merge key (a set without a key), anything else is atomic;
- IntOrString, Quantity and other scalars are leaves; a schema that says nothing
  (None, RawExtension, `x-kubernetes-preserve-unknown-fields`) is *deduced* from
  the value: maps granular, lists atomic, like upstream's `__untyped_deduced_`.

Key fields a map-list item omits take their default: the schema's `default` for
CRDs; for built-in kinds the few OpenAPI defaults the kubernetes-validate schemas
drop (`protocol: TCP` of ports, `name: ""` of LocalObjectReference).

The walks, each one pass, never mutating their inputs:

- `field_set`: upstream's ToFieldSet of an applied configuration (scalars, atomic
  values and list items are members; struct fields only through their children;
  map keys always), rejecting fields the schema does not declare;
- `compare`: upstream's Compare, reduced to what the field manager uses: the changed
  paths (added or modified) and the removed ones; equal subtrees are skipped with
  one `==`, so an update touching one field costs a walk down to that field;
- `created`: Compare against the Go zero value of the kind, what recording a create
  amounts to. The zero value holds the struct fields Go does not omit; the schemas
  do not say which those are (kube-openapi's `default: {}` markers are not in
  kubernetes-validate), so for built-in kinds they are approximated as the required
  non-scalar fields plus the usual value structs (`metadata`, `spec`, `status`,
  `template`, `strategy`, ...). This only decides whether such a node carries
  `"."` in the creator's entry; custom resources have no zero value, as upstream;
- `merge`: upstream's Merge (the live object with the applied configuration on top,
  map-list items matched by key in upstream's order); a null in the configuration
  clears a leaf, as decoding the merged object into a Go struct does;
- `prune`: removes from the merged object what the applier owned last time and
  nobody owns now (upstream's prune + add-back of owned and dangling items).
"""

from __future__ import annotations

import functools
from typing import Any

from k8py.api import schema as schemas
from k8py.api.fieldmanager import fieldpath as fp
from k8py.api.fieldmanager.fieldpath import Node

Schema = dict[str, Any]

SCALAR, STRUCT, MAP, LIST, UNTYPED = range(5)
ATOMIC, SET, ASSOCIATIVE = range(3)  # list types
LEAF, FIELDS, ITEMS = range(3)  # how a value is walked

_CONTAINERS = (dict, list)
MISSING: Any = type("Missing", (), {"__repr__": lambda self: "MISSING"})()  # an absent field (not a null)
_DROP: Any = type("Drop", (), {"__repr__": lambda self: "DROP"})()

_KEY_DEFAULTS = {
    ("io.k8s.api.core.v1.ContainerPort", "protocol"): "TCP",
    ("io.k8s.api.core.v1.ServicePort", "protocol"): "TCP",
    ("io.k8s.api.core.v1.LocalObjectReference", "name"): "",
}
_VALUE_STRUCTS = frozenset(
    (
        "metadata", "spec", "status", "template", "jobTemplate", "strategy", "updateStrategy",
        "resources", "loadBalancer", "roleRef", "daemonEndpoints", "nodeInfo", "involvedObject",
    )
)


class SchemaError(ValueError):
    """A value the schema cannot take, with upstream's path and message."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = errors
        lines = [f"{path}: {message}" for path, message in errors]
        super().__init__(lines[0] if len(lines) == 1 else "\n  ".join(["errors:", *lines]))


class Type:
    """A compiled schema node."""

    __slots__ = ("atomic", "defaults", "kind", "keys", "list_type", "open", "zero", "_elem", "_elem_schema", "_fields", "_props")

    def __init__(self, kind: int) -> None:
        self.kind = kind
        self.atomic = False
        self.list_type = ATOMIC
        self.keys: tuple[str, ...] = ()  # map lists
        self.defaults: dict[str, Any] = {}  # map lists: defaults of key fields
        self.open = False  # structs: undeclared fields allowed (deduced)
        self.zero: frozenset[str] = frozenset()  # structs of built-in kinds: fields in Go's zero value
        self._props: Schema = {}
        self._fields: dict[str, Type] = {}
        self._elem_schema: Schema | None = None
        self._elem: Type | None = None

    def field(self, name: str) -> Type | None:
        """A struct's declared field."""
        t = self._fields.get(name)
        if t is None:
            sub = self._props.get(name)
            if sub is None:
                return None
            t = self._fields[name] = compile_schema(sub)
        return t

    def declares(self, name: str) -> bool:
        """Is `name` a declared field of this struct (a *named field* upstream, which owns its subtree)?"""
        return self.kind == STRUCT and name in self._props

    def child(self, name: str) -> Type:
        """The type of a field of a map or struct value (deduced where a struct does not declare it)."""
        kind = self.kind
        if kind == STRUCT:
            return self._fields.get(name) or self.field(name) or UNTYPED_T
        if kind == MAP:
            return self._elem or self.elem()
        return UNTYPED_T

    def elem(self) -> Type:
        """A map's values or a list's items."""
        if self._elem is None:
            self._elem = compile_schema(self._elem_schema)
        return self._elem


SCALAR_T = Type(SCALAR)
UNTYPED_T = Type(UNTYPED)
_COMPILED: dict[int, tuple[Schema, Type]] = {}


@functools.cache
def _builtin() -> frozenset[int]:
    return frozenset(id(s) for s in schemas.definitions().values())


def compile_schema(schema: Schema | None) -> Type:
    """The `Type` of a schema node (None: deduced), compiled once per node."""
    if schema is None:
        return UNTYPED_T
    hit = _COMPILED.get(id(schema))
    if hit is not None and hit[0] is schema:
        return hit[1]
    t = _build(schema)
    _COMPILED[id(schema)] = (schema, t)
    return t


def _build(schema: Schema) -> Type:
    s = schemas.resolve(schema)
    if s is None:
        return UNTYPED_T

    def ext(name: str) -> Any:
        value = schema.get(name)
        return s.get(name) if value is None else value

    if "oneOf" in s or "anyOf" in s or s.get("x-kubernetes-int-or-string"):
        return SCALAR_T
    types = schemas.types(s)
    props = s.get("properties")
    additional = s.get("additionalProperties")
    if isinstance(props, dict):
        t = Type(STRUCT)
        t._props = props
        t.atomic = ext("x-kubernetes-map-type") == "atomic"
        t.open = bool(s.get("x-kubernetes-preserve-unknown-fields")) or additional is True
        if id(s) in _builtin():
            required = set(s.get("required") or ())
            t.zero = frozenset(p for p, sub in props.items() if (p in _VALUE_STRUCTS or p in required) and _container(sub))
        return t
    if isinstance(additional, dict):
        t = Type(MAP)
        t._elem_schema = additional
        t.atomic = ext("x-kubernetes-map-type") == "atomic"
        return t
    if "array" in types or "items" in s:
        t = Type(LIST)
        t._elem_schema = schemas.items_schema(s)
        _list_semantics(t, ext)
        return t
    if types & {"string", "integer", "number", "boolean"}:
        return SCALAR_T
    return UNTYPED_T


def _container(schema: Schema) -> bool:
    s = schemas.resolve(schema) or {}
    return "properties" in s or "additionalProperties" in s or "array" in schemas.types(s)


def _list_semantics(t: Type, ext: Any) -> None:
    """upstream's getListElementRelationship."""
    list_type = ext("x-kubernetes-list-type")
    keys: list[str] = []
    if list_type is None and ext("x-kubernetes-patch-strategy") in ("merge", "merge,retainKeys"):
        merge_key = ext("x-kubernetes-patch-merge-key")
        list_type, keys = ("map", [merge_key]) if merge_key else ("set", [])
    elif list_type == "map":
        keys = list(ext("x-kubernetes-list-map-keys") or ())
    if list_type == "set":
        t.list_type = SET
    elif list_type == "map" and keys:
        t.list_type = ASSOCIATIVE
        t.keys = tuple(keys)
        item = schemas.resolve(t._elem_schema) or {}
        item_name = schemas.ref_name(t._elem_schema or {}) or ""
        for k in keys:
            default = ((item.get("properties") or {}).get(k) or {}).get("default", _KEY_DEFAULTS.get((item_name, k), MISSING))
            if default is not MISSING:
                t.defaults[k] = default


# ---- helpers ----------------------------------------------------------------------------------


def _shape(t: Type, v: Any) -> int:
    """LEAF, FIELDS (a granular map or struct) or ITEMS (an associative list); null is an empty container."""
    kind = t.kind
    if kind == STRUCT or kind == MAP:
        return FIELDS if not t.atomic and (v is None or type(v) is dict) else LEAF
    if kind == LIST:
        return ITEMS if t.list_type != ATOMIC and (v is None or type(v) is list) else LEAF
    if kind == UNTYPED:
        return FIELDS if type(v) is dict else LEAF
    return LEAF


def _item_element(t: Type, item: Any) -> str:
    """The path element of an associative list's item; raises ValueError with upstream's words."""
    if t.list_type == SET:
        if isinstance(item, dict):
            raise ValueError("associative list without keys has an element that's a map type")
        if isinstance(item, list):
            raise ValueError("not supported: associative list with lists as elements")
        return fp.value(item)
    if not isinstance(item, dict):
        raise ValueError("associative list with keys has an element that is " + ("null" if item is None else "not a map"))
    fields = {}
    for k in t.keys:
        if k in item:
            fields[k] = item[k]
        elif k in t.defaults:
            fields[k] = t.defaults[k]
        else:
            raise ValueError(f'associative list with keys has an element that omits key field "{k}" (and doesn\'t have default value)')
    return fp.key(fields)


def _index(t: Type, items: list[Any]) -> dict[str, Any]:
    """Path element -> item, the first of duplicates winning."""
    out: dict[str, Any] = {}
    for item in items:
        out.setdefault(_item_element(t, item), item)
    return out


# ---- ToFieldSet -------------------------------------------------------------------------------


def field_set(obj: dict[str, Any], t: Type) -> Node:
    """The paths an applied configuration sets; raises SchemaError for fields the schema lacks."""
    errors: list[tuple[str, str]] = []
    _, node = _to_set(obj, t, (), errors)
    if errors:
        raise SchemaError(errors)
    return node


def _to_set(v: Any, t: Type, path: tuple[str, ...], errors: list[tuple[str, str]]) -> tuple[bool, Node]:
    """(is the value's path a member, its children)."""
    shape = _shape(t, v)
    if shape == LEAF:
        return True, {}
    if not v:
        return False, {}
    out: Node = {}
    if shape == FIELDS:
        for name in sorted(v):
            pe = fp.field(name)
            declared = t.declares(name)
            if t.kind == STRUCT and not declared and not t.open:
                errors.append((fp.path_string((*path, pe)), "field not declared in schema"))
                continue
            member, sub = _to_set(v[name], t.child(name), (*path, pe), errors)
            node = fp.make(member or not declared, sub)
            if node is not None:
                out[pe] = node
        return False, out
    elem = t.elem()
    for i, item in enumerate(v):
        try:
            pe = _item_element(t, item)
        except ValueError as e:
            errors.append((fp.path_string(path), f"element {i}: {e}"))
            continue
        if pe in out:
            errors.append((fp.path_string(path), f"duplicate entries for key {fp.element_string(pe)}"))
            continue
        _, sub = _to_set(item, elem, (*path, pe), errors)
        out[pe] = fp.make(True, sub)
    return False, {pe: out[pe] for pe in fp.sort_elements(list(out))}


# ---- Compare ----------------------------------------------------------------------------------


def compare(old: Any, new: Any, t: Type) -> tuple[Node, Node]:
    """(changed, removed) paths from `old` to `new`, both present; raises ValueError on a bad list key."""
    if old == new:
        return {}, {}
    changed, removed = _compare(old, new, t)
    return fp.children(changed or {}), fp.children(removed or {})


def _compare(lv: Any, rv: Any, t: Type) -> tuple[Node | None, Node | None]:
    if lv is MISSING:
        return _full(rv, t), None
    if rv is MISSING:
        return None, _full(lv, t)
    shape = _shape(t, lv)
    if shape != _shape(t, rv) or shape == LEAF or (not lv and not rv):
        return fp.LEAF, None  # a modified leaf (empty and null containers are leaves too)
    changed: Node = {}
    removed: Node = {}
    if shape == FIELDS:
        lm, rm = lv or {}, rv or {}
        for name in sorted(lm.keys() | rm.keys()):
            a, b = lm.get(name, MISSING), rm.get(name, MISSING)
            if a is not MISSING and b is not MISSING and a == b:
                continue
            c, r = _compare(a, b, t.child(name))
            if c is not None:
                changed[fp.field(name)] = c
            if r is not None:
                removed[fp.field(name)] = r
    else:
        li, ri = _index(t, lv or []), _index(t, rv or [])
        elem = t.elem()
        for pe in fp.sort_elements(list(li.keys() | ri.keys())):
            a, b = li.get(pe, MISSING), ri.get(pe, MISSING)
            if a is not MISSING and b is not MISSING and a == b:
                continue
            c, r = _compare(a, b, elem)
            if c is not None:
                changed[pe] = c
            if r is not None:
                removed[pe] = r
    return fp.make(False, changed), fp.make(False, removed)


def _full(v: Any, t: Type) -> Node:
    """Every path of a value that appears or disappears as a whole (each one a member).

    The hottest walk (every create): shapes are decided inline rather than through `_shape`."""
    leaf = fp.LEAF
    if not v:
        return leaf  # null or an empty container: a leaf
    kind = t.kind
    if type(v) is dict:
        if (kind != STRUCT and kind != MAP and kind != UNTYPED) or t.atomic:
            return leaf
        out: Node = {fp.SELF: leaf}
        for name in sorted(v):
            cv = v[name]
            out["f:" + name] = _full(cv, t.child(name)) if cv and type(cv) in _CONTAINERS else leaf
        return out
    if type(v) is not list or kind != LIST or t.list_type == ATOMIC:
        return leaf
    elem = t.elem()
    items = _index(t, v)
    out = {fp.SELF: leaf}
    for pe in fp.sort_elements(list(items)):
        cv = items[pe]
        out[pe] = _full(cv, elem) if cv and type(cv) in _CONTAINERS else leaf
    return out


def created(obj: dict[str, Any], t: Type) -> Node:
    """The paths a create sets: Compare from the Go zero value of the kind."""
    return fp.children(_from_zero(obj, t) or {})


def _from_zero(v: Any, t: Type) -> Node | None:
    """The node of a value whose path the zero value already has (so it is not itself added)."""
    shape = _shape(t, v)
    if shape == LEAF:
        return None if v is None else fp.LEAF
    if not v:
        return None
    if shape == ITEMS:
        return fp.children(_full(v, t))
    out: Node = {}
    zero = t.zero
    for name in sorted(v):
        ct = t.child(name)
        node = _from_zero(v[name], ct) if name in zero else _full(v[name], ct)
        if node is not None:
            out["f:" + name] = node
    return out or None


# ---- Created, in one pass ---------------------------------------------------------------------


def created_fields(obj: dict[str, Any], t: Type, omit: frozenset[str], meta: str, meta_omit: frozenset[str]) -> Node | None:
    """What recording a create sets, in one pass: `created` of `obj` without its top-level fields `omit`
    and without `meta_omit` in its metadata (field `meta`), whose own membership is dropped (kube strips
    the metadata node). The field manager's view, walk and difference with the stripped paths, without
    the copies and the second walk: every create pays for it.

    Same result and errors (ValueError) as the general walk, which the tests compare it with; None when
    `t` is not a granular object type (the general walk then decides)."""
    kind = t.kind
    if t.atomic or not (kind == STRUCT or kind == MAP or kind == UNTYPED):
        return None
    out: Node = {}
    zero = t.zero
    for name in sorted(obj):
        if name in omit:
            continue
        ct = t.child(name)
        if name == meta:
            node = _meta_fast(obj[name], ct, name in zero, meta_omit)
        elif name in zero:
            node = _zero_fast(obj[name], ct)
        else:
            node = _full_fast(obj[name], ct)
        if node is not None:
            out["f:" + name] = node
    return out


def _meta_fast(v: Any, t: Type, in_zero: bool, omit: frozenset[str]) -> Node | None:
    """The metadata's children (its membership and the omitted fields stripped); None when nothing is left."""
    kind = t.kind
    if not v or type(v) is not dict or t.atomic or not (kind == STRUCT or kind == MAP or kind == UNTYPED):
        return None  # a leaf, or nothing: stripped with the metadata node
    out: Node = {}
    zero = t.zero if in_zero else ()
    for name in sorted(v):
        if name in omit:
            continue
        ct = t.child(name)
        node = _zero_fast(v[name], ct) if name in zero else _full_fast(v[name], ct)
        if node is not None:
            out["f:" + name] = node
    return out or None


def _zero_fast(v: Any, t: Type) -> Node | None:
    """`_from_zero`, shapes decided inline."""
    if v is None:
        return None
    leaf = fp.LEAF
    kind = t.kind
    tv = type(v)
    if kind == STRUCT or kind == MAP:
        if t.atomic or tv is not dict:
            return leaf
    elif kind == LIST:
        if t.list_type == ATOMIC or tv is not list:
            return leaf
        return _items_fast(v, t, {}) if v else None
    elif kind != UNTYPED or tv is not dict:
        return leaf
    if not v:
        return None
    out: Node = {}
    zero = t.zero
    for name in sorted(v):
        ct = t.child(name)
        node = _zero_fast(v[name], ct) if name in zero else _full_fast(v[name], ct)
        if node is not None:
            out["f:" + name] = node
    return out or None


def _full_fast(v: Any, t: Type) -> Node:
    """`_full`, with the child types and list keys looked up the short way."""
    leaf = fp.LEAF
    if not v:
        return leaf
    kind = t.kind
    tv = type(v)
    if tv is dict:
        if t.atomic or not (kind == STRUCT or kind == MAP or kind == UNTYPED):
            return leaf
        out: Node = {fp.SELF: leaf}
        if kind == STRUCT:
            fields = t._fields
            for name in sorted(v):
                cv = v[name]
                if cv and type(cv) in _CONTAINERS:
                    out["f:" + name] = _full_fast(cv, fields.get(name) or t.field(name) or UNTYPED_T)
                else:
                    out["f:" + name] = leaf
        else:
            ct = (t._elem or t.elem()) if kind == MAP else UNTYPED_T
            for name in sorted(v):
                cv = v[name]
                out["f:" + name] = _full_fast(cv, ct) if cv and type(cv) in _CONTAINERS else leaf
        return out
    if tv is not list or kind != LIST or t.list_type == ATOMIC:
        return leaf
    return _items_fast(v, t, {fp.SELF: leaf})


def _items_fast(v: list[Any], t: Type, out: Node) -> Node:
    """The items of a non-empty associative list added to `out`, as `_full` adds them."""
    leaf = fp.LEAF
    elem = t._elem or t.elem()
    if t.list_type == ASSOCIATIVE and len(t.keys) == 1:
        # The usual map list (containers, env, volumes: keyed by a string name): ordered by that string,
        # which is upstream's order of the `k:` elements.
        k = t.keys[0]
        single = fp.single_key
        keyed = []
        for item in v:
            if type(item) is not dict or type(item.get(k)) is not str:
                break
            keyed.append((item[k], item))
        else:
            keyed.sort(key=_first)  # stable: of duplicates, the first stays first (and wins)
            last = None
            for name, item in keyed:
                if name != last:
                    last = name
                    out[single(k, name)] = _full_fast(item, elem)
            return out
    index: dict[str, Any] = {}
    for item in v:
        index.setdefault(_item_element(t, item), item)
    for pe in fp.sort_elements(list(index)):
        cv = index[pe]
        out[pe] = _full_fast(cv, elem) if cv and type(cv) in _CONTAINERS else leaf
    return out


def _first(pair: tuple[Any, ...]) -> Any:
    return pair[0]


# ---- Merge ------------------------------------------------------------------------------------


def merge(live: dict[str, Any], config: dict[str, Any], t: Type) -> dict[str, Any]:
    """The live object with the configuration applied on top (new containers; subtrees shared)."""
    out = _merge(live, config, t)
    return out if isinstance(out, dict) else {}


def _merge(lv: Any, rv: Any, t: Type) -> Any:
    if rv is MISSING:
        return lv
    if lv is MISSING:
        return _DROP if rv is None else rv
    shape = _shape(t, rv)
    if shape != _shape(t, lv) or shape == LEAF:
        return _DROP if rv is None else rv
    if rv is None:
        return lv
    if not lv and not rv:
        return rv
    if shape == FIELDS:
        out = dict(lv or {})
        for name, value in rv.items():
            merged = _merge(out.get(name, MISSING), value, t.child(name))
            if merged is _DROP:
                out.pop(name, None)
            else:
                out[name] = merged
        return out
    return _merge_items(lv or [], rv, t)


def _merge_items(lhs: list[Any], rhs: list[Any], t: Type) -> list[Any]:
    """upstream's visitListItems order: the live order, with the configuration's items where it puts them."""
    li, ri = _index(t, lhs), _index(t, rhs)
    lpes, rpes = list(li), list(ri)
    shared = iter([pe for pe in rpes if pe in li])
    next_shared = next(shared, None)
    elem = t.elem()
    out: list[Any] = []
    merged_rhs: set[str] = set()

    def add(a: Any, b: Any) -> None:
        value = _merge(a, b, elem)
        if value is not _DROP:
            out.append(value)

    i = j = 0
    while i < len(lpes) or j < len(rpes):
        if i < len(lpes) and j < len(rpes):
            pe = lpes[i]
            if pe == rpes[j]:
                merged_rhs.add(pe)
                add(li[pe], ri[pe])
                i, j = i + 1, j + 1
                next_shared = next(shared, None)
                continue
            if pe in ri and next_shared is not None and next_shared != pe:
                i += 1  # a shared item, but not the one this round wants
                continue
        if i < len(lpes):
            pe = lpes[i]
            if pe not in ri:
                add(li[pe], MISSING)
                i += 1
                continue
            if pe in merged_rhs:
                i += 1
                continue
        if j < len(rpes):
            pe = rpes[j]
            merged_rhs.add(pe)
            add(li.get(pe, MISSING), ri[pe])
            j += 1
            if next_shared == pe:
                next_shared = next(shared, None)
    return out


# ---- Prune ------------------------------------------------------------------------------------


def prune(v: Any, last: Node, owned: Node | None, t: Type) -> Any:
    """`v` without what `last` holds and `owned` does not (struct fields owning their subtrees,
    as upstream's EnsureNamedFieldsAreMembers); copies only the containers it changes."""
    shape = _shape(t, v)
    if shape == LEAF or not v:
        return v
    if shape == FIELDS:
        out: Any = None
        for pe, ln in last.items():
            name = pe[2:]
            if pe[0] != "f" or name not in v:
                continue
            ct, declared = t.child(name), t.declares(name)
            on = owned.get(pe) if owned else None
            if _claims(ln, declared) and (on is None or not _claims(on, declared)):
                out = dict(v) if out is None else out
                del out[name]
            elif fp.children(ln):
                value = prune(v[name], fp.children(ln), fp.children(on) if on is not None else None, ct)
                if value is not v[name]:
                    out = dict(v) if out is None else out
                    out[name] = value
        return v if out is None else out
    elem = t.elem()
    positions = {}
    for n, item in enumerate(v):
        positions.setdefault(_item_element(t, item), n)
    items = list(v)
    drop = set()
    for pe, ln in last.items():
        n = positions.get(pe)
        if n is None:
            continue
        on = owned.get(pe) if owned else None
        if fp.is_member(ln) and (on is None or not fp.is_member(on)):
            drop.add(n)
        elif fp.children(ln):
            items[n] = prune(items[n], fp.children(ln), fp.children(on) if on is not None else None, elem)
    if not drop and all(a is b for a, b in zip(items, v, strict=True)):
        return v
    return [item for n, item in enumerate(items) if n not in drop]


def _claims(node: Node, declared: bool) -> bool:
    """Does a set node own its path (a member, or a struct field with owned children)?"""
    return fp.is_member(node) or (declared and bool(node))
