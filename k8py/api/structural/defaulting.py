"""Defaulting of custom objects from their schema's `default`s, as kube's decoder does it.

Two passes over a decoded (and pruned) object, both upstream's
(`pkg/apiserver/schema/defaulting`): first a null where the schema is not
`nullable` and has no default is dropped (`PruneNonNullableNullsWithoutDefaults`),
then every absent property with a default, and every remaining non-nullable
null, takes a deep copy of the default (`Default`). Defaults apply top-down, so a
defaulted object gets its own properties' defaults too.
"""

from __future__ import annotations

import copy
from typing import Any

Schema = dict[str, Any]


def _sub(s: Schema | None, key: str) -> Schema | None:
    if s is None:
        return None
    props = s.get("properties")
    if isinstance(props, dict) and isinstance(props.get(key), dict):
        return props[key]
    additional = s.get("additionalProperties")
    return additional if isinstance(additional, dict) else None


def _items(s: Schema | None) -> Schema | None:
    items = None if s is None else s.get("items")
    return items if isinstance(items, dict) else None


def _prunable_null(value: Any, s: Schema | None) -> bool:
    return value is None and s is not None and not s.get("nullable") and "default" not in s


def prune_nulls(value: Any, s: Schema | None) -> None:
    """Drop, in place, nulls the schema neither allows nor defaults."""
    if isinstance(value, dict):
        for key in list(value):
            sub = _sub(s, key)
            if _prunable_null(value[key], sub):
                del value[key]
            else:
                prune_nulls(value[key], sub)
    elif isinstance(value, list):
        for item in value:
            prune_nulls(item, _items(s))


def _defaultable_null(value: Any, s: Schema | None) -> bool:
    return value is None and s is not None and not s.get("nullable") and "default" in s


def apply(value: Any, s: Schema | None) -> None:
    """Fill in, in place, the defaults `s` declares for what `value` lacks."""
    if s is None:
        return
    if isinstance(value, dict):
        raw = s.get("properties")
        props: Schema = {k: v for k, v in raw.items() if isinstance(v, dict)} if isinstance(raw, dict) else {}
        for key, prop in props.items():
            if "default" in prop and (key not in value or _defaultable_null(value[key], prop)):
                value[key] = copy.deepcopy(prop["default"])
        additional = s.get("additionalProperties")
        for key in value:
            if key in props:
                apply(value[key], props[key])
            elif isinstance(additional, dict):
                if _defaultable_null(value[key], additional):
                    value[key] = copy.deepcopy(additional["default"])
                apply(value[key], additional)
    elif isinstance(value, list):
        items = _items(s)
        for i, item in enumerate(value):
            if items is not None and _defaultable_null(item, items):
                value[i] = copy.deepcopy(items["default"])
            apply(value[i], items)


def default(obj: Any, schema: Schema) -> None:
    """Both passes, in place: what kube's unstructured defaulter does to a decoded custom object."""
    prune_nulls(obj, schema)
    apply(obj, schema)
