"""Server-side field validation (`?fieldValidation=Strict|Warn|Ignore`), as kube-apiserver does it.

kube decodes request bodies into Go structs with sigs.k8s.io/json's strict mode,
which collects two kinds of errors in document order, deduplicated, at most 100:
`unknown field "spec.template.spec.containers[0].imagee"` for a key the type does
not declare (its value is skipped), and `duplicate field "spec.replicas"` for a
declared field or map key seen twice in one object (the last value wins, as orjson
keeps it too). Then:

- Strict: 400 BadRequest. A create/update body is reported through
  `transformDecodeError`: `Deployment in version "v1" cannot be handled as a
  Deployment: strict decoding error: unknown field "spec.foo", duplicate field "x"`;
  a patched object just `strict decoding error: ...` (patch.go).
- Warn (the default): each message becomes a `Warning` header; the request goes on.
- Ignore: nothing is checked.

Here the type is the kubernetes-validate schema, walked with `k8py.api.schema`:
declared properties are known; maps (`additionalProperties`) accept any key;
opaque types (RawExtension, FieldsV1, Patch: an object with neither properties nor
additionalProperties) and `x-kubernetes-preserve-unknown-fields` accept anything;
`apiVersion` and `kind` are always allowed at the root (TypeMeta). A CRD schema
must mark its open parts with `x-kubernetes-preserve-unknown-fields`, as CRDs do.

orjson keeps the last of duplicate keys and says nothing, so duplicates are found
by parsing the raw JSON body a second time with the stdlib parser into
`(key, value)` pair lists; walking those pairs against the schema yields unknown
and duplicate fields interleaved in document order, as kube reports them. The
second parse only happens for Strict/Warn and JSON bodies (a YAML body is checked
for unknown fields only); the walk itself is a dict traversal, microseconds for a
typical manifest.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from k8py.api import errors
from k8py.api import schema as schemas

Schema = dict[str, Any]

STRICT, WARN, IGNORE = "Strict", "Warn", "Ignore"
MAX_ERRORS = 100  # sigs.k8s.io/json stops collecting strict errors here


class _Pairs(list[tuple[str, Any]]):
    """A JSON object as its (key, value) pairs in document order, duplicates kept."""


def unknown_fields(obj: Any, schema: Schema | None) -> list[str]:
    """Paths (`spec.template.spec.containers[0].imagee`) of the fields `schema` does not declare."""
    found: list[tuple[str, str]] = []
    _walk(obj, schema, "", found)
    return [path for what, path in found if what == "unknown"]


def duplicate_fields(raw: bytes) -> list[str]:
    """Paths of keys repeated within one JSON object of `raw` (a patch body, say); [] if not JSON."""
    found: list[tuple[str, str]] = []
    pairs = _pairs(raw)
    if pairs is not None:
        _walk(pairs, None, "", found)
    return [path for _, path in found]


def strict_errors(obj: Any, schema: Schema | None, raw: bytes | None = None) -> list[str]:
    """kube's strict decoding messages for `obj`, in document order.

    With `raw`, the JSON body `obj` was decoded from, duplicate fields are reported too."""
    found: list[tuple[str, str]] = []
    pairs = _pairs(raw) if raw is not None else None
    _walk(obj if pairs is None else pairs, schema, "", found)
    return _messages(found)


def check(
    obj: Any,
    schema: Schema | None,
    mode: str,
    raw: bytes | None = None,
    *,
    patch: bytes | None = None,
) -> list[str]:
    """Apply the `fieldValidation` mode; returns the warnings for Warn, raises 400 for Strict.

    `raw` is the create/update request body `obj` was decoded from (JSON or YAML);
    its presence selects kube's decode-error wording. For a patch, pass the patched
    object without `raw`, and the patch body as `patch` to report its duplicate keys
    first, as kube's patch handler does. `mode` "" means kube's default, Warn."""
    if mode == IGNORE:
        return []
    if mode not in (STRICT, WARN, ""):
        raise ValueError(f"unknown fieldValidation mode {mode!r}")
    found: list[str] = []
    if patch is not None:
        found += [f'duplicate field "{p}"' for p in duplicate_fields(patch)]
    found += strict_errors(obj, schema, raw)
    messages = list(dict.fromkeys(found))[:MAX_ERRORS]
    if not messages or mode != STRICT:
        return messages
    detail = "strict decoding error: " + ", ".join(messages)
    if raw is not None:
        detail = _decode_error_prefix(obj, schema) + detail
    raise errors.bad_request(detail)


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


def _shape(s: Schema | None) -> tuple[dict[str, Schema], Schema | None, bool] | None:
    """(declared properties, map value schema, are undeclared keys unknown) of an object schema;
    None for an opaque object whose content is never looked at."""
    if s is None:
        return {}, None, False
    additional = s.get("additionalProperties")
    open_ = additional is True or s.get("x-kubernetes-preserve-unknown-fields") is True
    if isinstance(additional, dict):  # a map
        return {}, additional, False
    if "properties" in s:  # a struct
        return s["properties"], None, not open_
    if schemas.types(s) == {"object"} and not open_:
        return None
    return {}, None, False


def prune(obj: Any, schema: Schema | None, *, _root: bool = True) -> None:
    """Drop, in place, the fields `schema` does not declare: what decoding into kube's Go types does."""
    s = schemas.resolve(schema) if schema is not None else None
    if s is None:
        return
    if isinstance(obj, list):
        item_schema = schemas.items_schema(s)
        for value in obj:
            prune(value, item_schema, _root=False)
        return
    if not isinstance(obj, dict):
        return
    shape = _shape(s)
    if shape is None:
        return
    props, extra, check_unknown = shape
    for key in list(obj):
        sub = props.get(key, extra)
        if sub is None:
            if check_unknown and not (_root and key in ("apiVersion", "kind")):
                del obj[key]
            continue
        prune(obj[key], sub, _root=False)


def _walk(node: Any, schema: Schema | None, path: str, found: list[tuple[str, str]]) -> None:
    """Collect ("unknown"|"duplicate", path) under `node`.

    `schema` None means nothing is known of the node: only duplicates are looked for,
    as when decoding into `map[string]interface{}`."""
    s = schemas.resolve(schema) if schema is not None else None
    if isinstance(node, _Pairs):
        items: Iterable[tuple[str, Any]] = node
        seen: set[str] | None = set()
    elif isinstance(node, dict):
        items, seen = node.items(), None
    elif isinstance(node, list):
        item_schema = schemas.items_schema(s) if s is not None else None
        for i, value in enumerate(node):
            _walk(value, item_schema, f"{path}[{i}]", found)
        return
    else:
        return

    shape = _shape(s)
    if shape is None:
        return  # RawExtension, FieldsV1: kube keeps the raw bytes and looks at nothing inside
    props, extra, check_unknown = shape
    for key, value in items:
        child = f"{path}.{key}" if path else key
        sub = props.get(key, extra)
        type_meta = not path and key in ("apiVersion", "kind")  # inlined in every top-level type
        if sub is None and check_unknown and not type_meta:
            found.append(("unknown", child))
            continue  # kube skips an unknown field's value and tracks duplicates of known keys only
        if seen is not None:
            if key in seen:
                found.append(("duplicate", child))
            else:
                seen.add(key)
        _walk(value, sub, child, found)
