"""`metadata.managedFields`: recording writes and server-side apply, as kube's field manager does.

kube-apiserver stacks its field manager from small wrappers
(k8s.io/apimachinery/pkg/util/managedfields/internal); this module is that stack,
flattened into two entry points:

- `record_update` (every create, update and non-apply patch, operation Update): the
  paths the write changed (`typed.compare`, or `typed.created` for a create) go to
  the writing manager's entry, merged per (manager, apiVersion, subresource) and
  stamped with the time; every other entry loses what changed (an update forces)
  and what was removed. A request may set managedFields itself (kubectl's migration
  from client-side apply does): a valid, non-empty list replaces the stored one,
  `[]` or `[{}]` resets it, anything else is ignored, and subresources always keep
  the stored one. A write that changes nothing leaves everything as it was.
- `apply` (PATCH `application/apply-patch+yaml`, operation Apply): the configuration
  is checked (GVK, no managedFields, every field declared), merged over the live
  object, and the fields this manager applied last time but not now are pruned when
  nobody else owns them. Fields whose value changed and that another manager owns
  are conflicts: a 409 listing them, or with `force` they change hands. An apply
  that changes neither the object nor who owns what changes nothing (not even the
  time, as upstream's IgnoreManagedFieldsTimestampsTransformer reverts it). For `kubectl`, conflicts with the values of
  the `last-applied-configuration` annotation are allowed (upgrading from
  client-side apply) and that annotation follows the applied configuration.

Both leave out what kube strips (apiVersion, kind, and the server-managed metadata:
name, namespace, uid, resourceVersion, generation, creationTimestamp, ...), and the
fields the request cannot change (`Scope`): a kind's main resource never records
its status when status is a subresource, the status subresource only records
status. At most ten Update entries are kept; older ones fold into
`ancient-changes`. Entries come out in kube's order: Apply first, then by time,
manager, apiVersion and subresource.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import Any

import orjson

from k8py.api import errors
from k8py.api import meta as objmeta
from k8py.api.fieldmanager import fieldpath as fp
from k8py.api.fieldmanager import typed
from k8py.api.fieldmanager.fieldpath import Node
from k8py.api.registry import ResourceInfo
from k8py.api.validation import field

log = logging.getLogger(__name__)
Obj = dict[str, Any]
Schema = dict[str, Any]

APPLY, UPDATE = "Apply", "Update"
MAX_UPDATE_MANAGERS = 10
ANCIENT_CHANGES = "ancient-changes"
MAX_MANAGER_LENGTH = 128
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
KUBECTL = "kubectl"  # the manager whose applies take over client-side apply
_MAX_ANNOTATIONS_SIZE = 256 * 1024
_STRIPPED_META = frozenset(
    ("name", "namespace", "creationTimestamp", "selfLink", "uid", "clusterName", "generation", "managedFields", "resourceVersion")
)
# upstream's stripMetaManager: paths no manager ever owns (the metadata node itself included).
_STRIPPED: Node = {
    "f:apiVersion": {},
    "f:kind": {},
    "f:metadata": {fp.SELF: {}, **{fp.field(name): {} for name in sorted(_STRIPPED_META)}},
}


class Scope(enum.Enum):
    """Which part of an object a request may change."""

    WHOLE = "whole"  # a kind without a status subresource
    MAIN = "main"  # the main resource of a kind with one: everything but status
    STATUS = "status"  # the status subresource: only status


class InvalidManagedFields(ValueError):
    """managedFields that do not decode (upstream's DecodeManagedFields fails)."""


@dataclass
class Entry:
    """One managedFields entry, its fieldsV1 kept as a `fieldpath` set."""

    manager: str
    operation: str
    api_version: str
    time: str | None
    fields: Node
    subresource: str = ""

    @property
    def identity(self) -> tuple[str, str, str, str]:
        """upstream's manager identifier: appliers are one entry across API versions."""
        return (self.manager, self.operation, self.api_version if self.operation == UPDATE else "", self.subresource)

    def encode(self) -> Obj:
        out: Obj = {"manager": self.manager} if self.manager else {}
        out["operation"] = self.operation
        out["apiVersion"] = self.api_version
        if self.time:
            out["time"] = self.time
        out["fieldsType"] = "FieldsV1"
        out["fieldsV1"] = self.fields
        if self.subresource:
            out["subresource"] = self.subresource
        return out

    def describe(self) -> str:
        """upstream's printManager, as conflicts name their managers."""
        text = field.go_quote(self.manager)
        if self.subresource:
            text += f" with subresource {field.go_quote(self.subresource)}"
        return f"{text} using {self.api_version}" if self.operation == UPDATE else text


Entries = dict[tuple[str, str, str, str], Entry]


# ---- managers ---------------------------------------------------------------------------------


def manager_from_user_agent(user_agent: str) -> str:
    """The manager of a request without `fieldManager`: the User-Agent up to its first "/",
    printable characters only, at most 128 bytes (upstream's prefixFromUserAgent)."""
    out = ""
    size = 0
    for ch in user_agent.split("/", 1)[0]:
        if not ch.isprintable():
            continue
        if size >= MAX_MANAGER_LENGTH:
            break
        out += ch
        size += len(ch.encode())
    return out


def validate_options(options: str, field_manager: str, *, apply: bool = False, force: bool | None = None) -> None:
    """upstream's Validate{Create,Update,Patch}Options (`options` names which) on `fieldManager`: at
    most 128 bytes of printable characters; a patch also: apply needs one, only apply takes `force`."""
    causes = []
    if options == "PatchOptions" and not apply and force is not None:
        causes.append(field.forbidden("force", "may not be specified for non-apply patch"))
    if apply and not field_manager:
        causes.append(field.required("fieldManager", "is required for apply patch"))
    if len(field_manager.encode()) > MAX_MANAGER_LENGTH:
        causes.append(field.too_long("fieldManager", MAX_MANAGER_LENGTH))
    for i, ch in enumerate(field_manager):
        if not ch.isprintable():
            rune = f"U+{ord(ch):04X}"  # Go's %#U of a character it cannot print
            causes.append(field.invalid("fieldManager", field_manager, f"invalid character {rune} (at position {i})"))
    if causes:
        raise errors.invalid("meta.k8s.io", options, "", causes)


# ---- entries ----------------------------------------------------------------------------------


def decode(raw: Any, *, trusted: bool) -> Entries:
    """managedFields as entries; `trusted` (stored by k8py) skips re-encoding the field sets."""
    if raw is None:
        return {}
    if not isinstance(raw, list):
        raise InvalidManagedFields("managedFields must be a list")
    out: Entries = {}
    for i, e in enumerate(raw):
        if not isinstance(e, dict):
            raise InvalidManagedFields(f"managed fields entry {i} is not an object")
        operation, api_version, fields_type = e.get("operation"), e.get("apiVersion"), e.get("fieldsType")
        if operation not in (APPLY, UPDATE):
            raise InvalidManagedFields("operation must be `Apply` or `Update`")
        if not isinstance(api_version, str) or not api_version:
            raise InvalidManagedFields("apiVersion must not be empty")
        if fields_type != "FieldsV1":
            raise InvalidManagedFields(f"invalid fieldsType {fields_type!r} in managed fields entry {i}")
        manager, subresource, time = e.get("manager", ""), e.get("subresource", ""), e.get("time")
        if not isinstance(manager, str) or not isinstance(subresource, str) or not isinstance(time, str | None):
            raise InvalidManagedFields(f"managed fields entry {i} is malformed")
        raw_fields = e.get("fieldsV1") or {}
        try:
            fields = raw_fields if trusted else fp.decode(raw_fields)
            if time is not None and not trusted:
                time = objmeta.format_time(objmeta.parse_time(time))
        except ValueError as err:
            raise InvalidManagedFields(str(err)) from err
        entry = Entry(manager, operation, api_version, time, fields, subresource)
        out[entry.identity] = entry
    return out


def _ownership(entries: Entries) -> dict[tuple[str, str, str, str], tuple[str, Node]]:
    """Entries without their times."""
    return {i: (e.api_version, e.fields) for i, e in entries.items()}


def encode(entries: Entries) -> list[Obj]:
    ordered = sorted(
        entries.values(), key=lambda e: (e.operation, e.time or "", e.manager, e.api_version, e.subresource)
    )
    return [e.encode() for e in ordered]


def _stored(obj: Obj | None) -> Entries:
    """The entries of a stored object; ones that do not decode are dropped, as upstream resets them."""
    raw = ((obj or {}).get("metadata") or {}).get("managedFields")
    try:
        return decode(raw, trusted=True)
    except InvalidManagedFields:
        return {}


def _write(obj: Obj, entries: Entries) -> None:
    md = objmeta.metadata(obj)
    if entries:
        md["managedFields"] = encode(entries)
    else:
        md.pop("managedFields", None)


def _cap(entries: Entries) -> None:
    """upstream's capManagersManager: fold the oldest Update entries into per-version `ancient-changes`."""
    updaters = sorted(
        (i for i, e in entries.items() if e.operation == UPDATE), key=lambda i: (entries[i].time or "", i)
    )
    count = len(updaters)
    first_of_version: dict[str, tuple[str, str, str, str]] = {}
    for ident in updaters:
        if count <= MAX_UPDATE_MANAGERS:
            break
        entry = entries[ident]
        version = entry.api_version
        bucket = (ANCIENT_CHANGES, UPDATE, version, "")
        if version not in first_of_version:
            first_of_version[version] = ident
            continue
        if bucket not in entries:
            first = entries.pop(first_of_version[version])
            entries[bucket] = Entry(ANCIENT_CHANGES, UPDATE, version, first.time, first.fields)
        merged = entries[bucket]
        merged.fields = fp.union(entry.fields, merged.fields)
        merged.time = entry.time
        del entries[ident]
        count -= 1


def _view(obj: Obj, scope: Scope) -> Obj:
    """The part of an object whose changes are recorded: `scope`'s, without what is stripped anyway
    (shallow: subtrees are shared)."""
    if scope is Scope.STATUS:
        return {"status": obj["status"]} if "status" in obj else {}
    out = {k: v for k, v in obj.items() if k != "apiVersion" and k != "kind" and (k != "status" or scope is Scope.WHOLE)}
    md = obj.get("metadata")
    if isinstance(md, dict):
        out["metadata"] = {k: v for k, v in md.items() if k not in _STRIPPED_META}
    return out


# ---- Update -----------------------------------------------------------------------------------


def record_update(
    live: Obj | None,
    new: Obj,
    *,
    manager: str,
    api_version: str,
    schema: Schema | None,
    scope: Scope,
    subresource: str = "",
) -> None:
    """Set `new`'s managedFields after `manager` wrote it over `live` (None: a create)."""
    t = typed.compile_schema(schema)
    if live is None and scope is not Scope.STATUS and _record_create(new, t, manager, api_version, scope, subresource):
        return
    entries = _base_entries(live, new, subresource)
    try:
        if live is None:
            changed, removed = typed.created(_view(new, scope), t), {}
        else:
            changed, removed = typed.compare(_view(live, scope), _view(new, scope), t)
    except Exception as e:  # upstream's UpdateNoErrors: the write goes on with the stored managedFields
        if not isinstance(e, ValueError):  # ValueError: a list item without its key, the client's doing
            log.exception("failed to update managedFields of %s", (new.get("metadata") or {}).get("name"))
        _write(new, _stored(live))
        return
    changed = fp.difference(changed, _STRIPPED)
    if changed or removed:
        for entry in entries.values():
            entry.fields = fp.difference(fp.difference(entry.fields, changed), removed)
    if changed:
        ident = (manager, UPDATE, api_version, subresource)
        previous = entries.get(ident)
        fields = fp.union(previous.fields, changed) if previous else changed
        entries[ident] = Entry(manager, UPDATE, api_version, objmeta.now(), fields, subresource)
    entries = {i: e for i, e in entries.items() if e.fields}
    _cap(entries)
    _write(new, entries)


_CREATE_OMIT = {
    Scope.WHOLE: frozenset(("apiVersion", "kind")),
    Scope.MAIN: frozenset(("apiVersion", "kind", "status")),
}


def _record_create(new: Obj, t: typed.Type, manager: str, api_version: str, scope: Scope, subresource: str) -> bool:
    """The usual create (no managedFields in the request): its one entry, the object's whole field set,
    computed in one pass (`typed.created_fields`). False when the general path must decide (managedFields
    requested, a type the fast walk does not take, an object it cannot key: the general path handles and
    reports those)."""
    md = new.get("metadata")
    if not isinstance(md, dict):
        return False
    requested = md.get("managedFields")
    if not (subresource or requested is None or requested == [] or requested == [{}]):
        return False
    try:
        changed = typed.created_fields(new, t, _CREATE_OMIT[scope], "metadata", _STRIPPED_META)
    except Exception:  # the general path fails the same way, and says so
        return False
    if changed is None:
        return False
    if changed:
        fields = _interned(changed)
        md["managedFields"] = [Entry(manager, UPDATE, api_version, objmeta.now(), fields, subresource).encode()]
    else:
        md.pop("managedFields", None)
    return True


_INTERNED: dict[bytes, Node] = {}
MAX_INTERNED = 1024  # field sets kept for sharing (the oldest go first)
MAX_INTERNED_SIZE = 8192  # bytes of JSON: larger sets are not kept


def _interned(fields: Node) -> Node:
    """One copy of each field set creates produce: objects made from one template (a Deployment's pods)
    have one, and sharing it (sets are never mutated) keeps the watch cache's copies of them from
    holding a few KiB of small dicts each, for the garbage collector to walk again and again."""
    key = orjson.dumps(fields)
    hit = _INTERNED.get(key)
    if hit is not None:
        return hit
    if len(key) <= MAX_INTERNED_SIZE:
        if len(_INTERNED) >= MAX_INTERNED:
            del _INTERNED[next(iter(_INTERNED))]
        _INTERNED[key] = fields
    return fields


def _base_entries(live: Obj | None, new: Obj, subresource: str) -> Entries:
    """upstream's decodeLiveOrNew: the request's managedFields when valid and not empty, else the stored ones."""
    if subresource:
        return _stored(live)
    requested = (new.get("metadata") or {}).get("managedFields")
    stored = ((live or {}).get("metadata") or {}).get("managedFields")
    if requested == [] or requested == [{}]:
        return {}
    if requested is None or requested == stored:
        return _stored(live)
    try:
        entries = decode(requested, trusted=False)
    except InvalidManagedFields:
        entries = {}
    return entries or _stored(live)


# ---- Apply ------------------------------------------------------------------------------------


def apply(
    live: Obj | None,
    config: Obj,
    *,
    manager: str,
    api_version: str,
    kind: str,
    schema: Schema | None,
    scope: Scope,
    force: bool,
    subresource: str = "",
) -> Obj:
    """The object after `manager` applied `config` over `live` (None: create-on-apply), managedFields set.

    Raises StatusError: 400 for a configuration that does not fit, 409 for conflicts."""
    config_md = config.get("metadata")
    if config.get("apiVersion") != api_version or config.get("kind") != kind:
        raise errors.bad_request(f"invalid object type: {_gvk(config.get('apiVersion'), config.get('kind'))}")
    if isinstance(config_md, dict) and config_md.get("managedFields") is not None:
        raise errors.bad_request("metadata.managedFields must be nil")
    t = typed.compile_schema(schema)
    applied = _applied_part(config, scope)
    try:
        full_set = typed.field_set(applied, t)  # name and namespace included: they keep metadata from pruning
    except typed.SchemaError as e:
        md = config_md if isinstance(config_md, dict) else {}
        raise errors.bad_request(
            f"failed to create typed patch object ({md.get('namespace', '')}/{md.get('name', '')}; "
            f"{_gvk(api_version, kind)}): {e}"
        ) from None
    applied_set = fp.difference(full_set, _STRIPPED)
    base = live if live is not None else {}
    entries = _stored(live)
    ownership = _ownership(entries)
    ident = (manager, APPLY, "", subresource)
    last = entries.get(ident)
    try:
        merged = typed.merge(base, applied, t)
        entries[ident] = Entry(manager, APPLY, api_version, last.time if last else None, applied_set, subresource)
        if last is not None and last.fields:
            owned = full_set
            for entry in entries.values():
                owned = fp.union(owned, entry.fields)
            merged = typed.prune(merged, last.fields, owned, t)
        changed, removed = typed.compare(_view(base, scope), _view(merged, scope), t)
    except ValueError as e:
        raise errors.bad_request(f"failed to merge config: {e}") from None
    conflicts = {i: c for i, e in entries.items() if i != ident and (c := fp.intersection(e.fields, changed))}
    if conflicts and not force:
        remaining = conflicts
        if manager == KUBECTL:
            allowed = _allowed_by_last_applied(base, t, scope)
            remaining = {i: rest for i, c in conflicts.items() if (rest := fp.difference(c, allowed))}
        if remaining:
            raise _conflict_error([(entries[i], c) for i, c in remaining.items()])
    for i, entry in entries.items():
        if i != ident:
            entry.fields = fp.difference(fp.difference(entry.fields, conflicts.get(i, {})), removed)
    entries[ident].time = objmeta.now()
    entries = {i: e for i, e in entries.items() if e.fields}
    _cap(entries)
    if manager == KUBECTL:
        _update_last_applied(merged, config)
    if merged == base and _ownership(entries) == ownership:
        return merged  # only the time would change: upstream's IgnoreManagedFieldsTimestampsTransformer
    merged["metadata"] = dict(merged.get("metadata") or {})  # may be the live object's
    _write(merged, entries)
    return merged


def _gvk(api_version: Any, kind: Any) -> str:
    """A GroupVersionKind as Go prints it: `apps/v1, Kind=Deployment`, `/v1, Kind=Pod`."""
    group, _, version = str(api_version or "").rpartition("/")
    return f"{group}/{version}, Kind={kind or ''}"


def _applied_part(config: Obj, scope: Scope) -> Obj:
    """What of a configuration the request may apply (the rest is reset by the strategy upstream)."""
    if scope is Scope.MAIN:
        return {k: v for k, v in config.items() if k != "status"}
    if scope is Scope.STATUS:
        return {k: config[k] for k in ("apiVersion", "kind", "status") if k in config}
    return config


def _allowed_by_last_applied(live: Obj, t: typed.Type, scope: Scope) -> Node:
    """The fields of the last-applied-configuration annotation that still hold their applied values:
    an apply by kubectl may take those over from client-side apply without a conflict."""
    annotations = (live.get("metadata") or {}).get("annotations") or {}
    try:
        last_applied = orjson.loads(annotations.get(LAST_APPLIED) or "null")
        if not isinstance(last_applied, dict):
            return {}
        view = _view(last_applied, scope)
        changed, removed = typed.compare(view, _view(live, scope), t)
        return fp.difference(fp.difference(typed.field_set(view, t), changed), removed)
    except (orjson.JSONDecodeError, ValueError):
        return {}


def _update_last_applied(obj: Obj, config: Obj) -> None:
    """kubectl's applies keep an existing last-applied-configuration annotation current (upstream's
    lastAppliedUpdater): the configuration without that annotation, as Go's JSON encoder writes it."""
    md = obj.get("metadata") or {}
    annotations = md.get("annotations")
    if not isinstance(annotations, dict) or LAST_APPLIED not in annotations:
        return
    config_md = config.get("metadata")
    if isinstance(config_md, dict) and "annotations" in config_md:
        config_md = dict(config_md)
        if isinstance(config_md["annotations"], dict):
            config_md["annotations"] = {k: v for k, v in config_md["annotations"].items() if k != LAST_APPLIED}
        else:
            del config_md["annotations"]
        config = {**config, "metadata": config_md}
    annotations = {**annotations, LAST_APPLIED: fp.go_json(config) + "\n"}
    obj["metadata"] = {**md, "annotations": annotations}  # copies: they may be the live object's
    if sum(len(k) + len(v) for k, v in annotations.items() if isinstance(v, str)) > _MAX_ANNOTATIONS_SIZE:
        del annotations[LAST_APPLIED]


def _conflict_error(conflicts: list[tuple[Entry, Node]]) -> errors.StatusError:
    """upstream's NewConflictError: 409 with one FieldManagerConflict cause per path."""
    found = [(entry, fp.path_string(path)) for entry, c in sorted(conflicts, key=lambda x: x[0].identity) for path in fp.paths(c)]
    causes = [{"reason": "FieldManagerConflict", "message": f"conflict with {e.describe()}", "field": p} for e, p in found]
    if len(found) == 1:
        message = f"Apply failed with 1 conflict: conflict with {found[0][0].describe()}: {found[0][1]}"
    else:
        lines = []
        for entry, c in sorted(conflicts, key=lambda x: x[0].identity):
            lines.append(f"conflicts with {entry.describe()}:")
            lines += [f"- {fp.path_string(path)}" for path in fp.paths(c)]
        message = f"Apply failed with {len(found)} conflicts: " + "\n".join(lines)
    return errors.StatusError(409, "Conflict", message, details={"causes": causes})


def scope_of(info: ResourceInfo, subresource: str) -> Scope:
    """The part of `info`'s objects a write through `subresource` ("" or the store's: "status", ...) may change."""
    if subresource == "status":
        return Scope.STATUS
    return Scope.MAIN if info.subresource("status") is not None else Scope.WHOLE
