"""Pruning of unknown fields from custom objects: kube's structural pruning algorithm.

What a structural schema does not specify is dropped (`pkg/apiserver/schema/pruning`):
an object's fields that are neither properties nor covered by additionalProperties
(an object schema with neither keeps nothing), recursively, except under
`x-kubernetes-preserve-unknown-fields` (whose declared properties are still
pruned) and except apiVersion, kind and metadata of the resource and of every
`x-kubernetes-embedded-resource` (ObjectMeta's decoding prunes metadata). The
pruned paths (`spec.foo`, `spec.items[0].bar`) are what strict field validation
reports as unknown fields; like kube, they are returned sorted.

Nothing here looks at types: a custom object decodes as unstructured JSON, and
its types are the schema validation's business (422), not the decoder's.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]
META_FIELDS = frozenset(("apiVersion", "kind", "metadata"))


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _properties(s: Schema) -> dict[str, Schema]:
    raw = s.get("properties")
    return {k: v for k, v in raw.items() if isinstance(v, dict)} if isinstance(raw, dict) else {}


def _additional(s: Schema) -> tuple[bool, Schema | None]:
    """(are undeclared fields allowed, their schema) of an object schema."""
    extra = s.get("additionalProperties")
    if isinstance(extra, dict):
        return True, extra
    return extra is True, None


def _prune(x: Any, s: Schema | None, path: str, out: list[str]) -> None:
    if s is not None and s.get("x-kubernetes-preserve-unknown-fields"):
        _skip(x, s, path, out)
        return
    if isinstance(x, dict):
        if s is None:
            out.extend(_join(path, k) for k in x)
            x.clear()
            return
        props = _properties(s)
        allowed, extra = _additional(s)
        embedded = bool(s.get("x-kubernetes-embedded-resource"))
        for key in list(x):
            if embedded and key in META_FIELDS:
                continue
            if key in props:
                _prune(x[key], props[key], _join(path, key), out)
            elif allowed:
                _prune(x[key], extra, _join(path, key), out)
            else:
                out.append(_join(path, key))
                del x[key]
    elif isinstance(x, list):
        items = s.get("items") if s is not None else None
        for i, value in enumerate(x):
            _prune(value, items if isinstance(items, dict) else None, f"{path}[{i}]", out)


def _skip(x: Any, s: Schema, path: str, out: list[str]) -> None:
    """Under x-kubernetes-preserve-unknown-fields: unknown fields stay, declared ones are pruned inside."""
    if isinstance(x, dict):
        props = _properties(s)
        allowed, extra = _additional(s)
        embedded = bool(s.get("x-kubernetes-embedded-resource"))
        for key, value in x.items():
            if embedded and key in META_FIELDS:
                continue
            if key in props:
                _prune(value, props[key], _join(path, key), out)
            elif allowed:
                _prune(value, extra, _join(path, key), out)
    elif isinstance(x, list) and isinstance(s.get("items"), dict):
        for i, value in enumerate(x):
            _skip(value, s["items"], f"{path}[{i}]", out)


def prune(obj: Any, schema: Schema | None, *, resource: bool = True) -> list[str]:
    """Drop, in place, what `schema` does not specify; the paths dropped, sorted.

    `resource`: `obj` is a whole resource, whose apiVersion, kind and metadata are left alone."""
    s = {**(schema or {}), "x-kubernetes-embedded-resource": True} if resource else schema
    out: list[str] = []
    _prune(obj, s, "", out)
    return sorted(out)
