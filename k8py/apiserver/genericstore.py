"""The generic registry store: create/get/list/update/patch/delete for every kind.

kube-apiserver's `registry/generic/registry/store.go`: one implementation of
the REST verbs over the Store, with per-kind policy from `k8py.api.strategy`,
defaulting and validation from `k8py.api.defaults` / `k8py.api.validation`,
and the admission chain in between. Reads come from the watch cache after it
caught up with the store (consistent reads); writes are conditional on the
revision they read (optimistic concurrency) and retried where kube retries
(unconditional updates, patches).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from k8py.api import errors, fieldmanager, meta
from k8py.api.conversion import from_storage, from_wire, to_storage
from k8py.api.defaults import apply_defaults
from k8py.api.registry import ResourceInfo
from k8py.api.schema import schema_for
from k8py.api.selectors import FieldSelector, LabelSelector
from k8py.api.strategy import Strategy, strategy_for
from k8py.api.validation import validate
from k8py.apiserver.admission import Attributes, Chain, UserInfo
from k8py.apiserver.watchcache import WatchCache, decode, stamp
from k8py.storage.interface import (
    CompactedError,
    ConflictError,
    FutureRevisionError,
    KeyExistsError,
    KeyNotFoundError,
    Store,
)

Obj = dict[str, Any]
MAX_CONFLICT_RETRIES = 5
_MAX_RV = 1 << 63  # revisions are etcd's int64
# Server-managed metadata a client cannot set or change.
_SERVER_META = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation", "selfLink")


@dataclass
class Context:
    """What one request carries into the store: who asks and how."""

    user: UserInfo
    dry_run: bool = False
    # The managedFields manager: the request's fieldManager or User-Agent; the API server's own writes
    # are kube-apiserver's, as its loopback client's User-Agent makes them upstream.
    field_manager: str = "kube-apiserver"
    warnings: list[str] = field(default_factory=list)
    subresource: str = ""  # the request's subresource, as managedFields entries name it
    applied: bool = False  # server-side apply already set the object's managedFields
    # The objects this request writes were built for it alone (decoded from its body, or a copy of the
    # stored object changed): once stored, one becomes the watch cache's object as it is, instead of
    # being parsed again from the stored bytes. Writes whose objects share parts with anything someone
    # may still change (the API server's own, from templates) leave it False.
    exclusive: bool = False


@dataclass
class ListOptions:
    label_selector: str = ""
    field_selector: str = ""
    limit: int = 0
    continue_token: str = ""
    resource_version: str = ""
    resource_version_match: str = ""


def _encode(obj: Obj) -> bytes:
    """Stored form: the object without its resourceVersion (the store's revision is the truth)."""
    md = obj.get("metadata") or {}
    if "resourceVersion" in md:
        obj = {**obj, "metadata": {k: v for k, v in md.items() if k != "resourceVersion"}}
    return orjson.dumps(obj)


def _spec_of(obj: Obj) -> Obj:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def _after(seconds: int) -> str:
    """The time `seconds` from now; a grace period reaching past year 9999 ends there."""
    now = dt.datetime.now(dt.UTC)
    last = dt.datetime.max.replace(tzinfo=dt.UTC)
    return meta.format_time(now + dt.timedelta(seconds=seconds) if seconds < (last - now).total_seconds() else last)


ORPHAN_FINALIZER = "orphan"
FOREGROUND_FINALIZER = "foregroundDeletion"


def gc_finalizers(finalizers: list[str], policy: str | None, orphan: bool | None, default_policy: str) -> list[str]:
    """The finalizers a DELETE leaves for the garbage collector (deletionFinalizersForGarbageCollection):
    ``orphan`` or ``foregroundDeletion`` as the options ask (orphanDependents, then propagationPolicy),
    else as the object already has, else as the kind's default policy; Background asks for neither."""
    def wanted(marker: str, other: str) -> bool:
        if orphan is not None:
            return orphan if marker == ORPHAN_FINALIZER else False
        if policy:
            return policy == ("Orphan" if marker == ORPHAN_FINALIZER else "Foreground")
        for f in finalizers:
            if f in (marker, other):
                return f == marker
        return marker == ORPHAN_FINALIZER and default_policy == "OrphanDependents"

    new = [f for f in finalizers if f not in (ORPHAN_FINALIZER, FOREGROUND_FINALIZER)]
    if wanted(ORPHAN_FINALIZER, FOREGROUND_FINALIZER):
        new.append(ORPHAN_FINALIZER)
    if wanted(FOREGROUND_FINALIZER, ORPHAN_FINALIZER):
        new.append(FOREGROUND_FINALIZER)
    return finalizers if set(new) == set(finalizers) else new


def encode_continue(revision: int, start: str) -> str:
    raw = orjson.dumps({"v": "meta.k8s.io/v1", "rv": revision, "start": start})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_continue(token: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = orjson.loads(raw)
        if data.get("v") != "meta.k8s.io/v1" or not isinstance(data.get("rv"), int) or not 0 <= data["rv"] < _MAX_RV:
            raise ValueError
        start = str(data.get("start", ""))
        if ".." in start.split("/") or start.startswith("/"):
            raise ValueError
        return data["rv"], start
    except (ValueError, binascii.Error, orjson.JSONDecodeError):
        raise errors.bad_request("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)") from None


def parse_resource_version(rv: str) -> int:
    try:
        value = int(rv)
        if not 0 <= value < _MAX_RV:
            raise ValueError
        return value
    except ValueError:
        raise errors.bad_request(f'Invalid value: "{rv}": resourceVersion: must be a non-negative integer') from None


class GenericStore:
    def __init__(self, store: Store, cache: WatchCache, admission: Chain) -> None:
        self.store = store
        self.cache = cache
        self.admission = admission
        # Called with (info, obj) after a Service or other object was written or abandoned.
        self.after_write: list[Callable[[ResourceInfo, Obj], None]] = []
        # Raises when a stored value at a key (or under a prefix ending in "/") cannot be decrypted.
        self.unreadable: Callable[[str], None] = lambda key: None
        # Whether a key's stored value is stale (not in the form a write makes now): written even when unchanged.
        self.stale: Callable[[str], bool] = lambda key: False

    # ---- reads -------------------------------------------------------------------------------

    async def get(self, info: ResourceInfo, namespace: str, name: str, resource_version: str = "") -> Obj:
        if resource_version and resource_version != "0":
            rv = parse_resource_version(resource_version)
            if not await self.cache.wait_for(rv):
                raise errors.timeout(f"Too large resource version: {rv}, current: {self.cache.revision}")
        elif not resource_version:
            await self.cache.sync()
        obj = self.cache.get(info.key(namespace, name))
        if obj is None:
            self.unreadable(info.key(namespace, name))
            raise errors.not_found(info.group, info.resource, name)
        return from_storage(info, obj)

    async def list(self, info: ResourceInfo, namespace: str, opts: ListOptions) -> tuple[list[Obj], Obj]:
        """The items and the list's metadata (resourceVersion, continue, remainingItemCount)."""
        labels = LabelSelector.parse(opts.label_selector)
        fields = FieldSelector.parse(opts.field_selector)
        strategy = strategy_for(info)
        fields.validate_fields(strategy.supported_fields(info))
        prefix = info.prefix(namespace)
        # metadata.name / metadata.namespace equality narrow the scan like kube's cacher indexes.
        eq = dict((f, v) for f, op, v in fields.requirements if op in ("=", "=="))
        if info.namespaced and not namespace and eq.get("metadata.namespace"):
            prefix = info.prefix(eq["metadata.namespace"])

        def match(obj: Obj) -> bool:
            if not labels.matches((obj.get("metadata") or {}).get("labels") or {}):
                return False
            return fields.empty or fields.matches(strategy.field_set(obj))

        filtered = bool(opts.label_selector or opts.field_selector)
        if opts.continue_token:
            revision, start = decode_continue(opts.continue_token)
            return await self._list_from_store(info, prefix, prefix + start, revision, opts.limit, match, filtered)
        match_mode = opts.resource_version_match
        if match_mode not in ("", "NotOlderThan", "Exact"):
            raise errors.bad_request(f'Unsupported value: "{match_mode}": supported values: "Exact", "NotOlderThan"')
        if match_mode and not opts.resource_version:
            raise errors.bad_request("resourceVersionMatch is forbidden unless resourceVersion is provided")
        if match_mode == "Exact":
            rv = parse_resource_version(opts.resource_version)
            if rv == 0:
                raise errors.bad_request('resourceVersionMatch "exact" is forbidden for resourceVersion "0"')
            return await self._list_from_store(info, prefix, prefix, rv, opts.limit, match, filtered)
        if opts.resource_version:
            rv = parse_resource_version(opts.resource_version)
            if rv and not await self.cache.wait_for(rv):
                raise errors.timeout(f"Too large resource version: {rv}, current: {self.cache.revision}")
        else:
            await self.cache.sync()
        self.unreadable(prefix)
        revision = self.cache.revision
        keys = self.cache.keys(prefix)
        if name := eq.get("metadata.name"):
            keys = [k for k in keys if k.rsplit("/", 1)[-1] == name]
        items: list[Obj] = []
        limit = opts.limit if opts.resource_version != "0" else 0
        list_meta: Obj = {"resourceVersion": str(revision)}
        for i, key in enumerate(keys):
            obj = self.cache.get(key)
            if obj is None or not match(obj):
                continue
            items.append(from_storage(info, obj))
            if limit and len(items) == limit and i + 1 < len(keys):
                list_meta["continue"] = encode_continue(revision, key[len(prefix) :] + "\x00")
                if not filtered:
                    list_meta["remainingItemCount"] = len(keys) - i - 1
                break
        return items, list_meta

    async def _list_from_store(
        self,
        info: ResourceInfo,
        prefix: str,
        start_key: str,
        revision: int,
        limit: int,
        match: Callable[[Obj], bool],
        filtered: bool,
    ) -> tuple[list[Obj], Obj]:
        items: list[Obj] = []
        key = start_key
        list_meta: Obj = {"resourceVersion": str(revision)}
        while True:
            want = max(limit - len(items), 0) if limit else 0
            try:
                page = await self.store.list(prefix, start_key=key, limit=want and min(max(want, 100), 10_000), revision=revision)
            except CompactedError:
                raise errors.gone(
                    "The provided continue parameter is too old to display a consistent list result. "
                    "You can start a new list without the continue parameter."
                ) from None
            except FutureRevisionError:
                raise errors.timeout(f"Too large resource version: {revision}") from None
            for n, kv in enumerate(page.items):
                obj = decode(kv)
                if not match(obj):
                    continue
                items.append(from_storage(info, obj))
                if limit and len(items) == limit:
                    more = page.more or n + 1 < len(page.items)
                    if more:
                        list_meta["continue"] = encode_continue(revision, kv.key[len(prefix) :] + "\x00")
                        if not filtered:
                            remaining = await self.store.count(prefix)
                            list_meta["remainingItemCount"] = max(remaining - len(items), 0)
                    return items, list_meta
            if not page.more or not page.items:
                return items, list_meta
            key = page.items[-1].key + "\x00"

    # ---- writes ------------------------------------------------------------------------------

    def _check_identity(self, info: ResourceInfo, obj: Obj, namespace: str) -> None:
        if not isinstance(obj, dict):
            raise errors.bad_request("the body of the request must be a JSON object")
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        if kind and kind != info.kind:
            raise errors.bad_request(
                f"the kind in the data ({kind}) does not match the expected kind ({info.kind})"
            )
        if api_version and api_version != info.api_version:
            raise errors.bad_request(
                f"the API version in the data ({api_version}) does not match the expected API version ({info.api_version})"
            )
        md = obj.get("metadata")
        if md is not None and not isinstance(md, dict):
            raise errors.bad_request("metadata must be an object")
        md = meta.metadata(obj)
        if info.namespaced:
            if md.get("namespace") and md["namespace"] != namespace:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            md["namespace"] = namespace
        else:
            md.pop("namespace", None)
        obj["apiVersion"], obj["kind"] = info.api_version, info.kind

    def _validate(self, info: ResourceInfo, obj: Obj, old: Obj | None) -> None:
        causes = validate(info, obj, old)
        if causes:
            raise errors.invalid(info.group, info.kind, (obj.get("metadata") or {}).get("name", ""), causes)

    async def create(self, ctx: Context, info: ResourceInfo, namespace: str, obj: Obj, *, subresource: str = "") -> Obj:
        self._check_identity(info, obj, namespace)
        md = meta.metadata(obj)
        strategy = strategy_for(info)
        if not md.get("name"):
            if md.get("generateName"):
                md["name"] = meta.generate_name(md["generateName"])
            else:
                raise errors.invalid(
                    info.group,
                    info.kind,
                    "",
                    [errors.cause("metadata.name", "Required value: name or generateName is required", "FieldValueRequired")],
                )
        for k in _SERVER_META:
            md.pop(k, None)
        md.pop("resourceVersion", None)
        md["uid"] = meta.new_uid()
        md["creationTimestamp"] = meta.now()
        from_wire(info, obj)
        if strategy.tracks_generation:
            md["generation"] = 1
        apply_defaults(info.group, info.version, info.kind, obj)
        if strategy.prepare_for_create:
            strategy.prepare_for_create(obj)
        if strategy.prepare_for_create_by:
            strategy.prepare_for_create_by(obj, ctx.user)
        self._record_fields(ctx, info, None, obj, subresource)
        attrs = Attributes("CREATE", info, namespace, md["name"], obj, None, subresource, ctx.user, ctx.dry_run, ctx.warnings)
        await self.admission.admit(attrs)
        self._validate(info, obj, None)
        await self.admission.validate(attrs)
        stored = to_storage(info, obj)
        key = info.key(namespace, md["name"])
        if ctx.dry_run:
            if self.cache.get(key) is not None:
                raise errors.already_exists(info.group, info.resource, md["name"])
            return obj
        data = _encode(stored)
        try:
            with self._priming(ctx, key, data, stored):
                revision = await self.store.create(key, data)
        except KeyExistsError:
            raise errors.already_exists(info.group, info.resource, md["name"]) from None
        finally:
            for hook in self.after_write:
                hook(info, obj)
        self._written(ctx, stored, revision)
        return from_storage(info, stored)

    def _priming(self, ctx: Context, key: str, data: bytes, stored: Obj) -> contextlib.AbstractContextManager[None]:
        """Around a store write: the object becomes the watch cache's when it is the request's alone (then
        it is shared once written: the caller only reads it)."""
        return self.cache.prime(key, data, stored) if ctx.exclusive else contextlib.nullcontext()

    @staticmethod
    def _written(ctx: Context, stored: Obj, revision: int) -> None:
        """Stamp the resourceVersion of an object just stored (as the watch cache does, if it is shared)."""
        if ctx.exclusive:
            stamp(stored, revision)
        else:
            stored.setdefault("metadata", {})["resourceVersion"] = str(revision)

    async def _current(self, info: ResourceInfo, namespace: str, name: str) -> Obj | None:
        await self.cache.sync()
        return self.cache.get(info.key(namespace, name))

    async def update(
        self,
        ctx: Context,
        info: ResourceInfo,
        namespace: str,
        name: str,
        obj: Obj,
        *,
        subresource: str = "",
    ) -> tuple[Obj, bool]:
        """PUT. Returns (object, created)."""
        self._check_identity(info, obj, namespace)
        md = meta.metadata(obj)
        if md.get("name") and md["name"] != name:
            raise errors.bad_request(
                f"the name of the object ({md['name']}) does not match the name on the URL ({name})"
            )
        md["name"] = name
        client_rv = md.get("resourceVersion", "")
        if client_rv:
            parse_resource_version(client_rv)

        def transform(current: Obj | None) -> Obj:
            return meta.clone(obj)

        return await self.guaranteed_update(
            ctx, info, namespace, name, transform, subresource=subresource, client_rv=client_rv, may_create=True
        )

    async def guaranteed_update(
        self,
        ctx: Context,
        info: ResourceInfo,
        namespace: str,
        name: str,
        transform: Callable[[Obj | None], Obj],
        *,
        subresource: str = "",
        client_rv: str = "",
        may_create: bool = False,
        force_allow_create: bool = False,
    ) -> tuple[Obj, bool]:
        """Read, transform, write conditionally; retry on conflicts unless the client pinned a resourceVersion.

        `transform` gets the current object in `info`'s version (a copy it may change, or None when
        missing) and returns the desired object. A missing object is created when `may_create` and the kind
        allows create-on-update, or always with `force_allow_create` (server-side apply)."""
        strategy = strategy_for(info)
        key = info.key(namespace, name)
        for _ in range(MAX_CONFLICT_RETRIES):
            current_stored = await self._current(info, namespace, name)
            if current_stored is None:
                if (force_allow_create or may_create and strategy.allow_create_on_update) and not subresource:
                    new = transform(None)
                    meta.metadata(new).pop("resourceVersion", None)
                    return await self.create(ctx, info, namespace, new), True
                raise errors.not_found(info.group, info.resource, name)
            current = meta.clone(from_storage(info, current_stored))
            current_rv = current["metadata"]["resourceVersion"]
            new = transform(meta.clone(current))
            self._check_identity(info, new, namespace)
            new_md = meta.metadata(new)
            new_md["name"] = name
            rv = new_md.get("resourceVersion") or client_rv
            if rv and rv != current_rv:
                raise errors.stale_conflict(info.group, info.resource, name)
            result = await self._prepare_update(ctx, info, strategy, new, current, subresource)
            if result is None:  # nothing changed: no write, like etcd3 GuaranteedUpdate, unless stale
                if not self.stale(key):
                    return current, False
                result = current
            stored = to_storage(info, result)
            if ctx.dry_run:
                return result, False
            finalized = self._finalized(stored, strategy)
            try:
                if finalized:
                    revision, _ = await self.store.delete(key, expected_revision=int(current_rv))
                else:
                    data = _encode(stored)
                    with self._priming(ctx, key, data, stored):
                        revision = await self.store.update(key, data, expected_revision=int(current_rv))
            except ConflictError:
                continue  # the next round re-checks a pinned resourceVersion
            except KeyNotFoundError:
                raise errors.not_found(info.group, info.resource, name) from None
            finally:
                for hook in self.after_write:
                    hook(info, result)
            if finalized:
                stored.setdefault("metadata", {})["resourceVersion"] = str(revision)
            else:
                self._written(ctx, stored, revision)
            return from_storage(info, stored), False
        raise errors.conflict(info.group, info.resource, name, "too many conflicts, please retry")

    @staticmethod
    def _record_fields(ctx: Context, info: ResourceInfo, old: Obj | None, new: Obj, subresource: str) -> None:
        """managedFields for a write that is not a server-side apply (kube's field manager, operation Update)."""
        if not ctx.applied:
            fieldmanager.record_update(
                old, new, manager=ctx.field_manager, api_version=info.api_version, schema=schema_for(info),
                scope=fieldmanager.scope_of(info, subresource), subresource=ctx.subresource,
            )

    @staticmethod
    def _finalized(obj: Obj, strategy: Strategy) -> bool:
        """An object marked for deletion whose last finalizer is gone is deleted by the update
        (a namespace's spec.finalizers count too)."""
        md = obj.get("metadata") or {}
        if strategy.spec_finalizers and (obj.get("spec") or {}).get("finalizers"):
            return False
        return bool(md.get("deletionTimestamp")) and not md.get("finalizers") and not md.get("deletionGracePeriodSeconds")

    async def _prepare_update(
        self, ctx: Context, info: ResourceInfo, strategy: Strategy, new: Obj, old: Obj, subresource: str
    ) -> Obj | None:
        new_md, old_md = meta.metadata(new), old["metadata"]
        if subresource == "binding":
            # kube's binding REST writes straight to storage: no update validation (nodeName is immutable there)
            new_md["resourceVersion"] = old_md["resourceVersion"]
            return None if new == old else new
        if subresource == "finalize":
            new = {**old, "spec": {**(old.get("spec") or {}), "finalizers": (new.get("spec") or {}).get("finalizers") or []}}
            new["metadata"] = new_md = dict(old_md)
        elif subresource == "status":
            # Only status changes; everything else (metadata included, as kube resets it) comes from old.
            merged = {**old, "status": new.get("status")}
            if new.get("status") is None:
                merged.pop("status", None)
            merged["metadata"] = dict(old_md)
            if strategy.status_updates_annotations:
                if new_md.get("annotations"):
                    merged["metadata"]["annotations"] = new_md["annotations"]
                else:
                    merged["metadata"].pop("annotations", None)
            new, new_md = merged, merged["metadata"]
            if strategy.prepare_for_subresource_update:
                strategy.prepare_for_subresource_update(new, old, ctx.subresource or subresource)
        else:
            for k in _SERVER_META:
                if k in old_md:
                    new_md[k] = old_md[k]
                else:
                    new_md.pop(k, None)
            if info.subresource("status") is not None and subresource == "":
                if "status" in old:
                    new["status"] = old["status"]
                else:
                    new.pop("status", None)
            from_wire(info, new)
            if strategy.prepare_for_update:
                strategy.prepare_for_update(new, old)
            apply_defaults(info.group, info.version, info.kind, new)
            if strategy.tracks_generation and _spec_of(new) != _spec_of(old):
                new_md["generation"] = int(old_md.get("generation", 1)) + 1
        if old_md.get("deletionTimestamp"):
            # finalizers may only be removed once deletion started, and nothing added
            added = set(new_md.get("finalizers") or []) - set(old_md.get("finalizers") or [])
            if added:
                raise errors.invalid(
                    info.group,
                    info.kind,
                    new_md.get("name", ""),
                    [errors.cause("metadata.finalizers", "Forbidden: no new finalizers can be added if the object is being deleted", "FieldValueForbidden")],
                )
        new_md["resourceVersion"] = old_md["resourceVersion"]
        self._record_fields(ctx, info, old, new, subresource)
        if new == old:
            return None
        attrs = Attributes(
            "UPDATE", info, new_md.get("namespace", ""), new_md["name"], new, old, ctx.subresource or subresource, ctx.user,
            ctx.dry_run, ctx.warnings,
        )
        await self.admission.admit(attrs)
        self._validate(info, new, old)
        await self.admission.validate(attrs)
        return new

    async def _delete_namespace(
        self, ctx: Context, info: ResourceInfo, key: str, current: Obj, policy: str | None, orphan: bool | None
    ) -> Obj | None:
        """A namespace's DELETE (kube's namespace REST Delete): the first one sets deletionTimestamp,
        phase Terminating and the GC finalizers the options ask for, and answers the namespace; later
        ones answer it unchanged while spec.finalizers remain. None: a write conflict."""
        md = current["metadata"]
        if md.get("deletionTimestamp"):
            return current
        updated = meta.clone(current)
        umd = updated["metadata"]
        umd["deletionTimestamp"] = meta.now()
        updated.setdefault("status", {})["phase"] = "Terminating"
        have = list(md.get("finalizers") or [])
        # shouldHaveOrphanFinalizer / shouldHaveDeleteDependentsFinalizer: no default policy here
        if orphan is not None:
            want_orphan, want_foreground = orphan, not orphan
        elif policy:
            want_orphan, want_foreground = policy == "Orphan", policy == "Foreground"
        else:
            want_orphan, want_foreground = ORPHAN_FINALIZER in have, FOREGROUND_FINALIZER in have
        finalizers = [f for f in have if f not in (ORPHAN_FINALIZER, FOREGROUND_FINALIZER)]
        finalizers += [f for f, want in ((ORPHAN_FINALIZER, want_orphan), (FOREGROUND_FINALIZER, want_foreground)) if want]
        if finalizers:
            umd["finalizers"] = finalizers
        else:
            umd.pop("finalizers", None)
        if ctx.dry_run:
            return updated
        try:
            revision = await self.store.update(key, _encode(to_storage(info, updated)), expected_revision=int(md["resourceVersion"]))
        except (ConflictError, KeyNotFoundError):
            return None
        umd["resourceVersion"] = str(revision)
        return updated

    async def delete(
        self,
        ctx: Context,
        info: ResourceInfo,
        namespace: str,
        name: str,
        options: Obj,
    ) -> tuple[Obj, bool]:
        """DELETE. Returns (the object as it was or now is, deleted-now)."""
        strategy = strategy_for(info)
        key = info.key(namespace, name)
        pre = options.get("preconditions") or {}
        grace_opt = options.get("gracePeriodSeconds")
        if grace_opt is not None and not isinstance(grace_opt, int):
            raise errors.bad_request("gracePeriodSeconds must be an integer")
        policy = options.get("propagationPolicy")
        orphan = options.get("orphanDependents")
        if policy and orphan is not None:
            raise errors.invalid(
                "meta.k8s.io", "DeleteOptions", "",
                [errors.cause("propagationPolicy", "Invalid value: ...: orphanDependents and deletionPropagation cannot be both set")],
            )
        if policy not in (None, "", "Orphan", "Background", "Foreground"):
            raise errors.invalid(
                "meta.k8s.io", "DeleteOptions", "",
                [errors.cause("propagationPolicy", f'Unsupported value: "{policy}": supported values: "Foreground", "Background", "Orphan", "nil"', "FieldValueNotSupported")],
            )
        for _ in range(MAX_CONFLICT_RETRIES):
            stored = await self._current(info, namespace, name)
            if stored is None:
                raise errors.not_found(info.group, info.resource, name)
            current = meta.clone(from_storage(info, stored))
            md = current["metadata"]
            if pre.get("uid") and pre["uid"] != md.get("uid"):
                raise errors.conflict(
                    info.group, info.resource, name,
                    f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: {md.get('uid')}",
                )
            if pre.get("resourceVersion") and pre["resourceVersion"] != md.get("resourceVersion"):
                raise errors.conflict(
                    info.group, info.resource, name,
                    f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, "
                    f"ResourceVersion in object meta: {md.get('resourceVersion')}",
                )
            attrs = Attributes("DELETE", info, namespace, name, None, current, "", ctx.user, ctx.dry_run, ctx.warnings)
            await self.admission.admit(attrs)
            await self.admission.validate(attrs)
            if strategy.spec_finalizers:
                answer = await self._delete_namespace(ctx, info, key, current, policy, orphan)
                if answer is None:
                    continue  # a conflict: read again
                if answer is not current or (current.get("spec") or {}).get("finalizers"):
                    return answer, False
                # finalized: the generic delete below removes it (or waits for metadata.finalizers)
            finalizers = list(md.get("finalizers") or [])
            if not md.get("deletionTimestamp"):  # the kind's own cleanup (CRDs: their objects) comes first
                finalizers += [f for f in strategy.delete_finalizers if f not in finalizers]
            finalizers = gc_finalizers(finalizers, policy, orphan, strategy.default_gc_policy)
            grace = strategy.graceful_delete(current, grace_opt) if strategy.graceful_delete else 0
            already = bool(md.get("deletionTimestamp"))
            if grace > 0 or finalizers:
                updated = meta.clone(current)
                umd = updated["metadata"]
                if not already:
                    umd["deletionTimestamp"] = _after(grace)
                    umd["deletionGracePeriodSeconds"] = grace
                elif grace < int(md.get("deletionGracePeriodSeconds") or 0):
                    umd["deletionTimestamp"] = _after(grace)
                    umd["deletionGracePeriodSeconds"] = grace
                if finalizers:
                    umd["finalizers"] = finalizers
                else:
                    umd.pop("finalizers", None)
                if grace == 0 and not finalizers:
                    pass  # falls through to the real delete below
                else:
                    if updated == current:
                        return current, False
                    if ctx.dry_run:
                        return updated, False
                    try:
                        revision = await self.store.update(
                            key, _encode(to_storage(info, updated)), expected_revision=int(md["resourceVersion"])
                        )
                    except (ConflictError, KeyNotFoundError):
                        continue
                    umd["resourceVersion"] = str(revision)
                    return updated, False
            if ctx.dry_run:
                return current, True
            try:
                revision, _ = await self.store.delete(key, expected_revision=int(md["resourceVersion"]))
            except (ConflictError, KeyNotFoundError):
                continue
            for hook in self.after_write:
                hook(info, current)
            current["metadata"]["resourceVersion"] = str(revision)
            return current, True
        raise errors.conflict(info.group, info.resource, name, "too many conflicts, please retry")
