"""The three patch types kube-apiserver accepts on PATCH, on plain JSON dicts.

- `json_patch`: RFC 6902, with the semantics of the evanphx/json-patch v4
  library kube-apiserver vendors (negative array indices, `replace` of a
  missing object member adds it, `copy` from a missing member copies null).
- `merge_patch`: RFC 7386, as evanphx's `MergePatch` (null deletes; the nulls
  inside a value that is set rather than merged are pruned).
- `strategic_merge_patch`: apimachinery's `strategicpatch.StrategicMergeMapPatch`,
  driven by the `x-kubernetes-patch-strategy` / `x-kubernetes-patch-merge-key`
  of the kind's schema. Like upstream (whose metadata are the Go struct tags),
  only the patch strategy counts: a list with `x-kubernetes-list-type: map` but
  no `merge` strategy is replaced, and `retainKeys` only marks where clients
  send `$retainKeys`. Unknown fields, and every field when the schema is None,
  merge as in a merge patch (maps merged, lists replaced), directives included.
- `apply_patch`: picks one of those by request Content-Type and decodes the body.

Nothing given is mutated. The document is cloned once (an orjson round trip,
far faster than `copy.deepcopy`) and then merged into in place, the way
upstream merges into its freshly decoded map; values taken from a patch are
always rebuilt, so the result shares no container with the patch either.

Strategic merge follows upstream step for step, including its list order: the
patch's items in patch order (or `$setElementOrder` order), interleaved with
the server-only items in their live order, and items new to the server placed
ahead of the server-only items they are compared with. Where releases differ it
takes the newer apimachinery behaviour: a value that lands where the original
has nothing is merged into an empty value, so its directives are applied and
its nulls dropped; `$deleteFromPrimitiveList` deletes whatever the field's
strategy and does nothing on a field the original lacks.

Errors mirror kube-apiserver's answers (handlers/patch.go):
- a body that does not decode, or is not the JSON shape the type needs: 400;
- a JSON patch with more than 10000 operations: 413;
- a JSON patch operation that fails (failed `test`, missing path, bad index):
  422 Invalid with the generic message "the server rejected our request due
  to an error in our request" and empty details, as upstream, which drops the
  library's message; ours is kept as the exception's `__cause__` (a
  `PatchFailure`) for logs;
- a JSON patch whose `copy` operations add more than 3 MiB, kube-apiserver's
  `JSONPatchMaxCopyBytes`, is that generic 422 too;
- strategic merge: malformed `$retainKeys`, `$setElementOrder` or
  `$deleteFromPrimitiveList` directives are 400 BadRequest, a list of lists is
  the generic 422, and everything else upstream reports as a plain Go error
  (missing merge key, unknown `$patch`, list items of mixed types, patch list
  out of `$setElementOrder` order) is, with upstream's message, a 400
  BadRequest: kube-apiserver answers a non-Status error with a 500, but a bad
  patch is the client's error and k8py never answers 500 for one;
- a body, or a JSON patch result, nested deeper than `nesting.MAX_DEPTH`: 400 BadRequest;
- an unknown Content-Type: 415 UnsupportedMediaType.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import orjson

from k8py.api import nesting
from k8py.api import schema as schemas
from k8py.api.errors import StatusError, bad_request, too_large

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
# What kube-apiserver lists as accepted for built-in resources (server-side
# apply included, though `apply_patch` leaves that one to the field manager).
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, APPLY_PATCH)
MAX_JSON_PATCH_OPERATIONS = 10000
MAX_JSON_PATCH_COPY_BYTES = 3 * 1024 * 1024  # kube-apiserver's JSONPatchMaxCopyBytes

Object = dict[str, Any]
Schema = schemas.Schema

_DIRECTIVE = "$patch"
_RETAIN_KEYS = "$retainKeys"
_DELETE_PREFIX = "$deleteFromPrimitiveList"
_ORDER_PREFIX = "$setElementOrder"
_INVALID_MESSAGE = "the server rejected our request due to an error in our request"


class PatchFailure(Exception):
    """Why a patch failed, where kube-apiserver answers only a generic message."""


def apply_patch(doc: Object, patch_bytes: bytes, content_type: str, schema: Schema | None) -> Object:
    """Apply a PATCH request body of the given Content-Type to `doc`.

    `schema` is the kind's schema for strategic merge patch (None: unknown type)."""
    media_type = content_type.split(";", 1)[0].strip()
    if media_type == JSON_PATCH:
        ops = _decode(patch_bytes)
        return json_patch(doc, [] if ops is None else ops)
    if media_type == MERGE_PATCH:
        nesting.check_json(patch_bytes)
        try:
            patch = orjson.loads(patch_bytes)
        except orjson.JSONDecodeError:
            patch = None
        if not isinstance(patch, dict):
            raise bad_request("Invalid JSON Patch")
        return merge_patch(doc, patch)
    if media_type == STRATEGIC_MERGE_PATCH:
        patch = _decode(patch_bytes)
        if patch is None:  # upstream decodes `null` into an empty map
            patch = {}
        if not isinstance(patch, dict):
            raise bad_request(
                f"json: cannot unmarshal {_json_kind(patch)} into Go value of type map[string]interface {{}}"
            )
        return strategic_merge_patch(doc, patch, schema)
    raise StatusError(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        + ", ".join(PATCH_TYPES),
    )


def _decode(body: bytes) -> Any:
    nesting.check_json(body)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise bad_request(str(e)) from e


def _clone(value: Any) -> Any:
    return orjson.loads(orjson.dumps(value))


def _json_kind(value: Any) -> str:
    """The JSON type name Go's encoding/json uses in its errors."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return "string" if isinstance(value, str) else "number"


def _same(a: Any, b: Any) -> bool:
    """Go's `==` on decoded JSON values: same type and value (so True != 1)."""
    return type(a) is type(b) and a == b


def _json_equal(a: Any, b: Any) -> bool:
    """Structural JSON equality (booleans are not numbers)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(_json_equal, a, b))
    if isinstance(b, (dict, list)):
        return False
    if isinstance(a, bool) or isinstance(b, bool):
        return _same(a, b)
    return a == b


# --- RFC 6902 JSON patch ---------------------------------------------------------------------------

_GO_INT = re.compile(r"[+-]?[0-9]+")


def json_patch(doc: Object, ops: list[Any]) -> Object:
    """Apply an RFC 6902 patch (already decoded) to a copy of `doc`."""
    if not isinstance(ops, list):
        raise bad_request(f"json: cannot unmarshal {_json_kind(ops)} into Go value of type jsonpatch.Patch")
    for op in ops:
        if op is not None and not isinstance(op, dict):
            raise bad_request(
                f"json: cannot unmarshal {_json_kind(op)} into Go value of type jsonpatch.Operation"
            )
    if len(ops) > MAX_JSON_PATCH_OPERATIONS:
        raise too_large(
            "Request entity too large: The allowed maximum operations in a JSON patch is "
            f"{MAX_JSON_PATCH_OPERATIONS}, got {len(ops)}"
        )
    result = _clone(doc)
    copied = [0]  # bytes the copy operations added so far
    try:
        for op in ops:
            result = _apply_op(result, op or {}, copied)
    except PatchFailure as e:
        raise StatusError(422, "Invalid", _INVALID_MESSAGE, details={}) from e
    return result


def _apply_op(doc: Object, op: Object, copied: list[int]) -> Object:
    kind = op.get("op")
    if not isinstance(kind, str):
        kind = "unknown"
    if kind not in _OPS and kind != "copy":
        raise PatchFailure(f"Unexpected kind: {kind}")
    path = op.get("path")
    if not isinstance(path, str):
        raise PatchFailure(f"{kind} operation failed to decode path: missing value")
    if kind == "copy":
        return _op_copy(doc, op, path, copied)
    return _OPS[kind](doc, op, path)


def _locate(doc: Object, path: str) -> tuple[Object | list[Any], str] | None:
    """The container a JSON pointer points into and the (unescaped) last token."""
    if not path.startswith("/"):
        return None
    tokens = [t.replace("~1", "/").replace("~0", "~") for t in path.split("/")[1:]]
    node: Any = doc
    for token in tokens[:-1]:
        if isinstance(node, dict):
            node = node.get(token)
        else:
            try:
                node = node[_index(token, len(node) - 1)]
            except PatchFailure:
                return None
        if not isinstance(node, (dict, list)):
            return None
    return node, tokens[-1]


def _index(token: str, last: int) -> int:
    """An array index in [-(last+1), last] (negative counts from the end), as evanphx parses it."""
    if not _GO_INT.fullmatch(token):
        raise PatchFailure(f'strconv.Atoi: parsing "{token}": invalid syntax')
    idx = int(token)
    if idx > last or idx < -(last + 1):
        raise PatchFailure(f"Unable to access invalid index: {idx}: invalid index referenced")
    return idx + last + 1 if idx < 0 else idx


def _get(container: Object | list[Any], key: str) -> Any:
    if isinstance(container, dict):
        return container.get(key)
    return container[_index(key, len(container) - 1)]


def _add(container: Object | list[Any], key: str, value: Any) -> None:
    if isinstance(container, dict):
        container[key] = value
    elif key == "-":
        container.append(value)
    elif not _GO_INT.fullmatch(key):
        raise PatchFailure(
            f"value was not a proper array index: '{key}': strconv.Atoi: parsing \"{key}\": invalid syntax"
        )
    else:
        container.insert(_index(key, len(container)), value)


def _remove(container: Object | list[Any], key: str) -> None:
    if isinstance(container, dict):
        if key not in container:
            raise PatchFailure(f"Unable to remove nonexistent key: {key}: missing value")
        del container[key]
    else:
        del container[_index(key, len(container) - 1)]


def _op_add(doc: Object, op: Object, path: str) -> Object:
    found = _locate(doc, path)
    if found is None:
        raise PatchFailure(f'add operation does not apply: doc is missing path: "{path}": missing value')
    try:
        _add(*found, _nested(path, _clone(op.get("value"))))
    except PatchFailure as e:
        raise PatchFailure(f"error in add for path: '{path}': {e}") from None
    return doc


def _op_remove(doc: Object, op: Object, path: str) -> Object:
    found = _locate(doc, path)
    if found is None:
        raise PatchFailure(f'remove operation does not apply: doc is missing path: "{path}": missing value')
    try:
        _remove(*found)
    except PatchFailure as e:
        raise PatchFailure(f"error in remove for path: '{path}': {e}") from None
    return doc


def _op_replace(doc: Object, op: Object, path: str) -> Object:
    value = _nested(path, _clone(op.get("value")))
    if path == "":
        if not isinstance(value, dict):
            raise PatchFailure("replace operation value must be object")
        return value
    found = _locate(doc, path)
    if found is None:
        raise PatchFailure(f"replace operation does not apply: doc is missing path: {path}: missing value")
    container, key = found
    if isinstance(container, dict):
        container[key] = value  # evanphx v4: replacing a missing member adds it
    else:
        try:
            container[_index(key, len(container) - 1)] = value
        except PatchFailure:
            raise PatchFailure(
                f"replace operation does not apply: doc is missing key: {path}: missing value"
            ) from None
    return doc


def _op_move(doc: Object, op: Object, path: str) -> Object:
    source = op.get("from")
    if not isinstance(source, str):
        raise PatchFailure(
            "move operation failed to decode from: operation, missing from field: missing value"
        )
    found = _locate(doc, source)
    if found is None:
        raise PatchFailure(
            f"move operation does not apply: doc is missing from path: {source}: missing value"
        )
    container, key = found
    try:
        value = _get(container, key)
        _remove(container, key)
    except PatchFailure as e:
        raise PatchFailure(f"error in move for path: '{key}': {e}") from None
    target = _locate(doc, path)
    if target is None:
        raise PatchFailure(
            f"move operation does not apply: doc is missing destination path: {path}: missing value"
        )
    try:
        _add(*target, _nested(path, value))
    except PatchFailure as e:
        raise PatchFailure(f"error in move for path: '{path}': {e}") from None
    return doc


def _op_copy(doc: Object, op: Object, path: str, copied: list[int]) -> Object:
    source = op.get("from")
    if not isinstance(source, str):
        raise PatchFailure(
            "copy operation failed to decode from: operation, missing from field: missing value"
        )
    found = _locate(doc, source)
    if found is None:
        raise PatchFailure(
            f"copy operation does not apply: doc is missing from path: {source}: missing value"
        )
    try:
        encoded = orjson.dumps(_get(*found))
    except PatchFailure as e:
        raise PatchFailure(f"error in copy for from: '{source}': {e}") from None
    copied[0] += len(encoded)
    if copied[0] > MAX_JSON_PATCH_COPY_BYTES:
        raise PatchFailure(
            f"Unable to complete the copy, the accumulated size increase of copy is {copied[0]}, "
            f"exceeding the limit {MAX_JSON_PATCH_COPY_BYTES}"
        )
    value = _nested(path, orjson.loads(encoded))
    target = _locate(doc, path)
    if target is None:
        raise PatchFailure(
            f"copy operation does not apply: doc is missing destination path: {path}: missing value"
        )
    try:
        _add(*target, value)
    except PatchFailure as e:
        raise PatchFailure(f"error while adding value during copy: {e}") from None
    return doc


def _nested(path: str, value: Any) -> Any:
    """`value`, which is put at `path`: 400 if it would nest the document deeper than nesting allows."""
    level = path.count("/")
    if isinstance(value, dict | list) and level + nesting.depth(value, nesting.MAX_DEPTH - level) > nesting.MAX_DEPTH:
        raise nesting.too_deep()
    return value


def _op_test(doc: Object, op: Object, path: str) -> Object:
    if path == "":
        actual: Any = doc
    else:
        found = _locate(doc, path)
        if found is None:
            raise PatchFailure(f"test operation does not apply: is missing path: {path}: missing value")
        try:
            actual = _get(*found)
        except PatchFailure as e:
            raise PatchFailure(f"error in test for path: '{path}': {e}") from None
    expected = op.get("value")
    # A missing member and a JSON null are the same to evanphx: both pass against null.
    if actual is None and expected is None:
        return doc
    if actual is None or "value" not in op or not _json_equal(actual, expected):
        raise PatchFailure(f"testing value {path} failed: test failed")
    return doc


_OPS: dict[str, Callable[[Object, Object, str], Object]] = {
    "add": _op_add,
    "remove": _op_remove,
    "replace": _op_replace,
    "move": _op_move,
    "test": _op_test,
}


# --- RFC 7386 JSON merge patch ---------------------------------------------------------------------


def merge_patch(doc: Object, patch: Object) -> Object:
    """Apply an RFC 7386 merge patch to a copy of `doc`."""
    if not isinstance(patch, dict):
        raise bad_request("Invalid JSON Patch")
    return _merge_objects(_clone(doc), patch)


def _merge_objects(target: Object, patch: Object) -> Object:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge_objects(target[key], value)
        else:
            target[key] = _without_nulls(value)
    return target


def _without_nulls(value: Any) -> Any:
    """A copy of `value` with null members and elements pruned, all the way down."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value if v is not None]
    return value


# --- strategic merge patch -------------------------------------------------------------------------


def strategic_merge_patch(doc: Object, patch: Object, schema: Schema | None) -> Object:
    """Apply a strategic merge patch to a copy of `doc`, whose kind's schema is `schema`."""
    return _merge_map(_clone(doc), patch, schema)


def go_value(value: Any) -> str:
    """A decoded JSON value as Go's `%v` prints it (upstream's messages embed these)."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{go_value(value[k])}" for k in sorted(value)) + "]"
    if isinstance(value, list):
        return "[" + " ".join(go_value(v) for v in value) + "]"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return str(value)


def _go_type(value: Any) -> str:
    if value is None:
        return "<nil>"
    if isinstance(value, dict):
        return "map[string]interface {}"
    if isinstance(value, list):
        return "[]interface {}"
    return {bool: "bool", int: "int64", float: "float64"}.get(type(value), "string")


def _fail(message: str) -> StatusError:
    """A plain Go error in upstream (a 500 there): the client's bad patch, so 400 here."""
    return bad_request(message)


def _bad_type(expected: str, value: Any) -> StatusError:
    return _fail(f"expected a {expected}, but received a {_go_type(value)}")


def _no_merge_key(item: Object, merge_key: str) -> StatusError:
    return _fail(f"map: {go_value(item)} does not contain declared merge key: {merge_key}")


def _patch_meta(field: Schema | None) -> tuple[str, str]:
    """(patch strategy without retainKeys, merge key) of a field's schema."""
    if field is None:
        return "", ""
    strategies = [s for s in field.get("x-kubernetes-patch-strategy", "").split(",") if s]
    others = [s for s in strategies if s != "retainKeys"]
    if len(others) > 1 or len(strategies) > 2:
        raise _fail(f"unexpected patch strategy: {go_value(strategies)}")
    return (others[0] if others else ""), field.get("x-kubernetes-patch-merge-key", "")


def _directive_field(key: str, prefix: str) -> str:
    """The field a `$deleteFromPrimitiveList/<field>` or `$setElementOrder/<field>` key names."""
    head, slash, field = key.partition("/")
    if not slash or head != prefix:
        kind = "primitive list" if prefix == _DELETE_PREFIX else "setElementOrder list"
        raise bad_request(f"invalid patch format of {kind}")
    return field


def _fresh(value: Any, schema: Schema | None) -> Any:
    """A patch value that lands where the original has nothing: merged into an
    empty value, so directives apply and nulls go (and nothing aliases the patch)."""
    if isinstance(value, dict):
        return _merge_map({}, value, schema)
    if isinstance(value, list):
        items = schemas.items_schema(schema)
        return [_fresh(v, items) for v in value if not (isinstance(v, dict) and _DIRECTIVE in v)]
    return value


def _merge_map(original: Object, patch: Object, schema: Schema | None) -> Object:
    """Merge `patch` into `original` (owned by the caller, changed in place)."""
    if _DIRECTIVE in patch:
        directive = patch[_DIRECTIVE]
        if directive == "replace":
            return _merge_map({}, {k: v for k, v in patch.items() if k != _DIRECTIVE}, schema)
        if directive == "delete":
            return {}
        raise _fail(f"unknown patch type: {go_value(directive)} in map: {go_value(patch)}")
    pending = dict(patch)
    if _RETAIN_KEYS in pending:
        keep = pending.pop(_RETAIN_KEYS)
        _retain_keys(original, pending, keep)
    for key in [k for k in pending if k.startswith(_ORDER_PREFIX)]:
        _set_element_order(original, pending, key, schema)
    deletions = []
    for key, value in pending.items():
        if key.startswith(_DELETE_PREFIX):
            deletions.append((_directive_field(key, _DELETE_PREFIX), value))
        else:
            _merge_field(original, key, value, schema)
    for field, value in deletions:
        _delete_from_list(original, field, value)
    return original


def _merge_field(original: Object, key: str, value: Any, schema: Schema | None) -> None:
    if value is None:
        original.pop(key, None)
        return
    field = schemas.property_schema(schema, key)
    current = original.get(key)
    if key not in original:
        if not (isinstance(value, dict) and value.get(_DIRECTIVE) == "delete"):
            original[key] = _fresh(value, field)
    elif isinstance(current, dict) and isinstance(value, dict):
        replace = _patch_meta(field)[0] == "replace"
        original[key] = _fresh(value, field) if replace else _merge_map(current, value, field)
    elif isinstance(current, list) and isinstance(value, list):
        original[key] = _merge_list(current, value, field)
    else:
        original[key] = _fresh(value, field)


def _retain_keys(original: Object, patch: Object, keep: Any) -> None:
    """`$retainKeys`: drop the original's fields not listed; the patch may set only listed ones."""
    if not isinstance(keep, list):
        raise bad_request("invalid patch format of retainKeys")
    for key, value in patch.items():
        if value is None or key.startswith((_DELETE_PREFIX, _ORDER_PREFIX)):
            continue
        if key not in keep:
            raise bad_request("invalid patch format of retainKeys")
    for key in [k for k in original if k not in keep]:
        del original[key]


def _element_kind(*lists: list[Any]) -> str:
    """Whether the lists hold maps or scalars; like upstream, all elements must share one Go type."""
    kinds = {_go_type(v) for items in lists for v in items}
    first = next(v for items in lists for v in items)
    if isinstance(first, list):
        raise StatusError(422, "Invalid", _INVALID_MESSAGE, details={}) from PatchFailure(
            "lists of lists are not supported"
        )
    if len(kinds) > 1:
        raise _fail(f"list element types are not identical: {go_value(list(lists))}")
    return "map" if isinstance(first, dict) else "scalar"


def _merge_list(original: list[Any], patch: list[Any], field: Schema | None) -> list[Any]:
    strategy, merge_key = _patch_meta(field)
    if strategy != "merge":
        return _fresh(patch, field)
    if not original and not patch:
        return []
    items = schemas.items_schema(field)
    if _element_kind(original, patch) == "scalar":
        merged: list[Any] = []
        for v in original + patch:
            if not any(_same(v, m) for m in merged):
                merged.append(v)
        return _order(merged, patch, original, "")
    if not merge_key:
        raise _fail("cannot merge lists without merge key for type struct")
    original, patch = _list_directives(original, patch, merge_key, items)
    merged = list(original)
    for item in patch:
        if merge_key not in item:
            raise _no_merge_key(item, merge_key)
        at = next(
            (i for i, m in enumerate(merged) if merge_key in m and _same(m[merge_key], item[merge_key])),
            None,
        )
        if at is None:
            merged.append(_fresh(item, items))
        else:
            merged[at] = _merge_map(merged[at], item, items)
    return _order(merged, patch, original, merge_key)


def _list_directives(
    original: list[Object], patch: list[Object], merge_key: str, items: Schema | None
) -> tuple[list[Object], list[Object]]:
    """Apply the `$patch` items of a merging list: (original left, patch items left)."""
    rest = []
    replace = False
    for item in patch:
        if _DIRECTIVE not in item:
            rest.append(item)
            continue
        directive = item[_DIRECTIVE]
        if directive == "delete":
            if merge_key not in item:
                raise _no_merge_key(item, merge_key)
            original = [m for m in original if not (merge_key in m and _same(m[merge_key], item[merge_key]))]
        elif directive == "replace":
            replace = True
        elif directive == "merge":
            raise _fail("merging lists cannot yet be specified in the patch")
        else:
            raise _fail(f"unknown patch type: {go_value(directive)} in map: {go_value(item)}")
    if replace:
        return [_fresh(item, items) for item in rest], []
    return original, rest


def _order(merged: list[Any], wanted: list[Any], server: list[Any], merge_key: str) -> list[Any]:
    """Upstream's normalizeElementOrder: the items of `merged` named in `wanted`,
    in that order, interleaved with the others kept in their `server` order."""
    if merge_key:
        for item in (*merged, *wanted, *server):
            if not isinstance(item, dict):
                raise _bad_type("map[string]interface {}", item)
            if merge_key not in item:
                raise _no_merge_key(item, merge_key)

    def ident(item: Any) -> Any:
        return item[merge_key] if merge_key else item

    def position(items: list[Any], item: Any) -> int:
        return next((i for i, v in enumerate(items) if _same(ident(v), ident(item))), -1)

    def rank(items: list[Any]) -> Callable[[Any], int]:
        return lambda item: p if (p := position(items, item)) >= 0 else len(items)

    named = sorted((m for m in merged if position(wanted, m) >= 0), key=rank(wanted))
    server_only = sorted((m for m in merged if position(wanted, m) < 0), key=rank(server))
    # mergeSortedSlice: take the server-only item only when both are live and it comes first.
    result: list[Any] = []
    i = j = 0
    while i < len(server_only) or j < len(named):
        if j >= len(named):
            result.append(server_only[i])
            i += 1
        elif i >= len(server_only):
            result.append(named[j])
            j += 1
        else:
            left, right = position(server, server_only[i]), position(server, named[j])
            if left >= 0 and right >= 0 and left < right:
                result.append(server_only[i])
                i += 1
            else:
                result.append(named[j])
                j += 1
    return result


def _set_element_order(original: Object, pending: Object, key: str, schema: Schema | None) -> None:
    """`$setElementOrder/<field>`: merge the field's list now, then order it by the directive."""
    order = pending.pop(key)
    if not isinstance(order, list):
        raise _bad_type("[]interface {}", order)
    name = _directive_field(key, _ORDER_PREFIX)
    field = schemas.property_schema(schema, name)
    merge_key = _patch_meta(field)[1]
    in_original, in_patch = name in original, name in pending
    current, patch = original.get(name), pending.get(name)
    if in_original and not isinstance(current, list):
        raise _bad_type("[]interface {}", current)
    if in_patch and not isinstance(patch, list):
        raise _bad_type("[]interface {}", patch)
    _check_order(patch or [], order, merge_key)
    if in_original and in_patch:
        merged = _merge_list(current, patch, field)
    elif in_patch:
        merged = _fresh(patch, field)
    elif in_original:
        merged = current
    else:
        return
    pending.pop(name, None)
    original[name] = _order(merged, order, current or [], merge_key)


def _check_order(patch: list[Any], order: list[Any], merge_key: str) -> None:
    """The patch list's items (deletions aside) must appear in `order`, in the same order."""
    if not order or not patch:
        return
    if merge_key:
        for item in patch:
            if not isinstance(item, dict):
                raise _bad_type("map[string]interface {}", item)
        patch_items = [m for m in patch if m.get(_DIRECTIVE) != "delete"]
    else:
        patch_items = patch
    p = o = 0
    while p < len(patch_items) and o < len(order):
        item = patch_items[p]
        if isinstance(item, dict) and _DIRECTIVE in item:
            p += 1
            continue
        if _order_key_equal(item, order[o], merge_key):
            p += 1
        o += 1
    if p < len(patch_items):
        raise _fail(
            f"the order in patch list:\n{go_value(patch)}\n doesn't match {_ORDER_PREFIX} list:\n{go_value(order)}"
        )


def _order_key_equal(item: Any, named: Any, merge_key: str) -> bool:
    if not merge_key:
        return _same(item, named)
    for m in (item, named):
        if not isinstance(m, dict):
            raise _bad_type("map[string]interface {}", m)
        if merge_key not in m:
            raise _no_merge_key(m, merge_key)
    return _same(item[merge_key], named[merge_key])


def _delete_from_list(original: Object, name: str, values: Any) -> None:
    """`$deleteFromPrimitiveList/<field>`: drop those values from a list of scalars."""
    if values is None:  # a null directive deletes the field itself, as upstream
        original.pop(name, None)
        return
    current = original.get(name)
    if not isinstance(current, list) or not isinstance(values, list) or not (current or values):
        return
    if _element_kind(current, values) == "map":
        raise bad_request("invalid patch format of primitive list")
    original[name] = [v for v in current if not any(_same(v, d) for d in values)]
