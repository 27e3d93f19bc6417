"""REST handlers: one resource request, from parsed URL to response.

`ResourceHandler.handle` takes an aiohttp request whose RequestInfo names a
resource, checks the verb against the registry, decodes the body, calls the
generic store, and encodes the answer (JSON, YAML, Table or
PartialObjectMetadata). Subresources with their own shape (scale, binding)
are translated here, eviction in `k8py.apiserver.eviction`; watch streaming lives in `k8py.apiserver.watch`.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import orjson
from aiohttp import web

from k8py.api import errors, fieldmanager, fieldvalidation, meta, nesting, printers, schema
from k8py.api.patch import APPLY_PATCH, apply_patch
from k8py.api.registry import Registry, ResourceInfo
from k8py.apiextensions.customresource import check_patch_type
from k8py.apiserver.eviction import EvictionREST
from k8py.apiserver.genericstore import Context, GenericStore, ListOptions
from k8py.apiserver.negotiation import MAX_BODY, YAML, Output, choose_output, decode_body, encode
from k8py.apiserver.requestinfo import RequestInfo
from k8py.apiserver.watch import serve_watch

log = logging.getLogger(__name__)
Obj = dict[str, Any]

FIELD_VALIDATION_MODES = ("Strict", "Warn", "Ignore")
_DELETE_OPTIONS = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions"


def status_success(info: ResourceInfo, name: str, uid: str = "") -> Obj:
    details: Obj = {"name": name, "kind": info.resource}
    if info.group:
        details["group"] = info.group
    if uid:
        details["uid"] = uid
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}


def selector_string(sel: Obj | None) -> str:
    """metav1.LabelSelector as the text form kube prints (Scale.status.selector)."""
    if not sel:
        return ""
    parts = [f"{k}={v}" for k, v in sorted((sel.get("matchLabels") or {}).items())]
    for e in sel.get("matchExpressions") or []:
        op, key, values = e.get("operator"), e.get("key"), sorted(e.get("values") or [])
        if op == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(sorted(parts))


async def read_body(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise errors.too_large()
    chunks = []
    size = 0
    async for chunk in request.content.iter_chunked(65536):
        size += len(chunk)
        if size > MAX_BODY:
            raise errors.too_large()
        chunks.append(chunk)
    return b"".join(chunks)


def json_response(body: Any, status: int = 200, output: Output | None = None, warnings: list[str] | None = None) -> web.Response:
    enc = output.encoding if output else "application/json"
    resp = web.Response(body=encode(body, enc), status=status, content_type=enc)
    for w in warnings or []:
        text = w.replace("\\", "\\\\").replace('"', '\\"')  # a quoted-string (RFC 9110), as kube writes it
        resp.headers.add("Warning", f'299 - "{text}"')
    return resp


class ResourceHandler:
    def __init__(self, registry: Registry, store: GenericStore) -> None:
        self.registry = registry
        self.store = store

    def lookup(self, ri: RequestInfo) -> ResourceInfo:
        info = self.registry.get(ri.group, ri.version, ri.resource)
        if info is None:
            raise errors.StatusError(404, "NotFound", "the server could not find the requested resource", details={})
        return info

    async def handle(self, request: web.Request, ri: RequestInfo, ctx: Context) -> web.StreamResponse:
        info = self.lookup(ri)
        q = request.query
        ctx.exclusive = True  # what a request writes is decoded from its body or a copy: the store may keep it
        if ri.subresource:
            sub = info.subresource(ri.subresource)
            if sub is None:
                raise errors.StatusError(404, "NotFound", "the server could not find the requested resource", details={})
            return await self._subresource(request, ri, info, ctx)
        verb = ri.verb
        if ri.namespace and not info.namespaced:
            raise errors.StatusError(404, "NotFound", "the server could not find the requested resource", details={})
        if verb not in info.verbs or (verb == "create" and ri.name) or (verb in ("update", "patch") and not ri.name):
            raise errors.method_not_allowed()  # kube routes POST to collections only, PUT and PATCH to objects only
        if info.namespaced and verb in ("create",) and not ri.namespace:
            raise errors.StatusError(404, "NotFound", "the server could not find the requested resource", details={})
        ctx.dry_run = _dry_run(q)
        ctx.field_manager = _field_manager(request)
        if verb == "get":
            obj = await self.store.get(info, ri.namespace, ri.name, q.get("resourceVersion", ""))
            return self._object_response(request, info, obj)
        if verb == "list":
            items, list_meta = await self.store.list(info, ri.namespace, _list_options(q))
            return self._list_response(request, info, items, list_meta)
        if verb == "watch":
            return await serve_watch(request, info, ri.namespace, self.store, choose_output(request.headers.get("Accept", "")))
        if verb == "create":
            fieldmanager.validate_options("CreateOptions", q.get("fieldManager", ""))
            obj, raw = await self._decode_object(request)
            ctx.warnings += _decode_fields(obj, info, _field_validation(q), raw)
            created = await self.store.create(ctx, info, ri.namespace, obj)
            return self._object_response(request, info, created, 201, ctx.warnings)
        if verb == "update":
            fieldmanager.validate_options("UpdateOptions", q.get("fieldManager", ""))
            obj, raw = await self._decode_object(request)
            ctx.warnings += _decode_fields(obj, info, _field_validation(q), raw)
            updated, created = await self.store.update(ctx, info, ri.namespace, ri.name, obj)
            return self._object_response(request, info, updated, 201 if created else 200, ctx.warnings)
        if verb == "patch":
            updated, created = await self._patch(request, ri, info, ctx, "")
            return self._object_response(request, info, updated, 201 if created else 200, ctx.warnings)
        if verb == "delete":
            options = await self._delete_options(request)
            ctx.dry_run = ctx.dry_run or _dry_run_values(options.get("dryRun") or [])
            obj, deleted = await self.store.delete(ctx, info, ri.namespace, ri.name, options)
            if deleted and not _strategy_returns_object(info):
                body = status_success(info, ri.name, obj["metadata"].get("uid", ""))
                return json_response(body, 200, choose_output(request.headers.get("Accept", "")))
            return self._object_response(request, info, obj, 200)
        if verb == "deletecollection":
            options = await self._delete_options(request)
            ctx.dry_run = ctx.dry_run or _dry_run_values(options.get("dryRun") or [])
            items, list_meta = await self.store.list(info, ri.namespace, _list_options(q))
            deleted = []
            for item in items:
                md = item["metadata"]
                try:
                    obj, _ = await self.store.delete(ctx, info, md.get("namespace", ""), md["name"], options)
                    deleted.append(obj)
                except errors.StatusError as e:
                    if e.code != 404:
                        raise
            return self._list_response(request, info, deleted, list_meta)
        raise errors.method_not_allowed()

    async def _decode_object(self, request: web.Request) -> tuple[Obj, bytes]:
        raw = await read_body(request)
        if not raw.strip():
            raise errors.bad_request("the body of the request was empty")
        obj = decode_body(raw, request.headers.get("Content-Type", ""))
        if not isinstance(obj, dict):
            raise errors.bad_request("the body of the request must be a JSON object")
        return obj, raw

    async def _delete_options(self, request: web.Request) -> Obj:
        raw = await read_body(request)
        options: Obj = {}
        if raw.strip():
            options = decode_body(raw, request.headers.get("Content-Type", ""))
            if not isinstance(options, dict):
                raise errors.bad_request("DeleteOptions must be a JSON object")
        q = request.query
        if "gracePeriodSeconds" in q:
            try:
                options["gracePeriodSeconds"] = int(q["gracePeriodSeconds"])
            except ValueError:
                raise errors.bad_request("gracePeriodSeconds must be an integer") from None
        if "propagationPolicy" in q:
            options["propagationPolicy"] = q["propagationPolicy"]
        if "orphanDependents" in q:
            options["orphanDependents"] = q["orphanDependents"] == "true"
        if options.get("dryRun"):
            options["dryRun"] = options["dryRun"]
        fieldvalidation.decode(options, schema.definitions()[_DELETE_OPTIONS], fieldvalidation.IGNORE)
        return options

    async def _patch(
        self, request: web.Request, ri: RequestInfo, info: ResourceInfo, ctx: Context, subresource: str
    ) -> tuple[Obj, bool]:
        """PATCH: (the object, created by server-side apply)."""
        raw = await read_body(request)
        content_type = request.headers.get("Content-Type", "")
        if not raw.strip():
            raise errors.bad_request("the body of the request was empty")
        q = request.query
        is_apply = _media_type(content_type) == APPLY_PATCH
        fieldmanager.validate_options("PatchOptions", q.get("fieldManager", ""), apply=is_apply, force=_force(q))
        type_schema = _schema_of(info)
        mode = _field_validation(q)
        if info.custom is not None:
            check_patch_type(content_type)
        if is_apply:
            return await self._apply(ri, info, ctx, subresource, raw, mode, force=bool(_force(q)))

        def transform(current: Obj | None) -> Obj:
            assert current is not None
            patched = apply_patch(current, raw, content_type, type_schema)
            if not isinstance(patched, dict):
                raise errors.bad_request("the patched object must be a JSON object")
            ctx.warnings[:] = _decode_fields(patched, info, mode, None, patch=raw, patch_type=_media_type(content_type))
            return patched

        return await self.store.guaranteed_update(ctx, info, ri.namespace, ri.name, transform, subresource=subresource)

    async def _apply(
        self, ri: RequestInfo, info: ResourceInfo, ctx: Context, subresource: str, raw: bytes, mode: str, *, force: bool
    ) -> tuple[Obj, bool]:
        """Server-side apply of the body over the live object, or over nothing (create-on-apply)."""
        config = _apply_configuration(raw)
        scope = fieldmanager.scope_of(info, subresource)
        type_schema = _schema_of(info)
        ctx.applied = True

        def transform(current: Obj | None) -> Obj:
            merged = fieldmanager.apply(
                current, meta.clone(config), manager=ctx.field_manager, api_version=info.api_version, kind=info.kind,
                schema=type_schema, scope=scope, force=force, subresource=ri.subresource,
            )
            name = (merged.get("metadata") or {}).get("name", "")
            if name != ri.name:
                raise errors.bad_request(f"the name of the object ({name}) does not match the name on the URL ({ri.name})")
            ctx.warnings[:] = _decode_fields(merged, info, mode, None, patch=raw, patch_type=APPLY_PATCH)
            return merged

        return await self.store.guaranteed_update(
            ctx, info, ri.namespace, ri.name, transform, subresource=subresource, force_allow_create=True
        )

    def _object_response(
        self,
        request: web.Request,
        info: ResourceInfo,
        obj: Obj,
        status: int = 200,
        warnings: list[str] | None = None,
        *,
        printed_as: tuple[str, str] | None = None,
    ) -> web.Response:
        """`obj` as asked for; `printed_as` (group, kind) when it is not `info`'s kind (Scale)."""
        output = choose_output(request.headers.get("Accept", ""))
        if output.as_kind == "Table":
            group, kind = printed_as or (info.group, info.kind)
            body = printers.table(
                group, kind, [obj], _now(), include_object=request.query.get("includeObject", "Metadata"),
                list_metadata={"resourceVersion": obj["metadata"].get("resourceVersion", "")},
                custom=info.custom.printer if info.custom is not None and printed_as is None else None,
            )
        elif output.as_kind == "PartialObjectMetadata":
            body = partial_object_metadata(obj)
        elif output.as_kind == "PartialObjectMetadataList":
            raise errors.not_acceptable("PartialObjectMetadataList is only for lists")
        else:
            body = obj
        return json_response(body, status, output, warnings)

    def _list_response(self, request: web.Request, info: ResourceInfo, items: list[Obj], list_meta: Obj) -> web.Response:
        output = choose_output(request.headers.get("Accept", ""))
        if output.as_kind == "Table":
            body = printers.table(
                info.group, info.kind, items, _now(), include_object=request.query.get("includeObject", "Metadata"),
                list_metadata=list_meta, custom=info.custom.printer if info.custom is not None else None,
            )
        elif output.as_kind in ("PartialObjectMetadataList", "PartialObjectMetadata"):
            body = {
                "kind": "PartialObjectMetadataList",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": list_meta,
                "items": [partial_object_metadata(o) for o in items],
            }
        else:
            body = {"kind": info.list_kind, "apiVersion": info.api_version, "metadata": list_meta, "items": items}
        return json_response(body, 200, output)

    # ---- subresources ---------------------------------------------------------------------------

    async def _subresource(self, request: web.Request, ri: RequestInfo, info: ResourceInfo, ctx: Context) -> web.StreamResponse:
        sub = ri.subresource
        q = request.query
        ctx.dry_run = _dry_run(q)
        ctx.field_manager = _field_manager(request)
        ctx.subresource = sub
        verb = ri.verb
        spec = info.subresource(sub)
        assert spec is not None
        if verb not in spec.verbs:
            raise errors.method_not_allowed()
        if sub in ("status", "finalize", "ephemeralcontainers", "resize", "approval"):
            if verb == "get":
                obj = await self.store.get(info, ri.namespace, ri.name)
                return self._object_response(request, info, obj)
            if verb == "update":
                fieldmanager.validate_options("UpdateOptions", q.get("fieldManager", ""))
                obj, raw = await self._decode_object(request)
                ctx.warnings += _decode_fields(obj, info, _field_validation(q), raw)
                md = meta.metadata(obj)
                if md.get("name") and md["name"] != ri.name:
                    raise errors.bad_request(f"the name of the object ({md['name']}) does not match the name on the URL ({ri.name})")
                store_sub = "status" if sub in ("status", "approval") else sub
                if sub == "finalize":
                    return await self._finalize(request, ri, info, ctx, obj)
                updated, _ = await self.store.guaranteed_update(
                    ctx, info, ri.namespace, ri.name, lambda cur: obj, subresource=store_sub,
                    client_rv=md.get("resourceVersion", ""),
                )
                return self._object_response(request, info, updated, 200, ctx.warnings)
            if verb == "patch":
                store_sub = "status" if sub in ("status", "approval") else ""
                updated, _ = await self._patch(request, ri, info, ctx, store_sub)
                return self._object_response(request, info, updated, 200, ctx.warnings)
        if sub == "scale":
            return await self._scale(request, ri, info, ctx)
        if sub == "binding":
            return await self._binding(await self._decode_binding(request), ri, info, ctx)
        if sub == "eviction" and info.kind == "Pod" and not info.group:
            eviction, raw = await self._decode_object(request)
            ctx.warnings += fieldvalidation.decode(eviction, schema.for_kind("policy", "v1", "Eviction"), _field_validation(q), raw)
            body, code = await EvictionREST(self.registry, self.store).create(ctx, ri.namespace, ri.name, eviction)
            return json_response(body, code, choose_output(request.headers.get("Accept", "")), ctx.warnings)
        raise errors.StatusError(
            405, "MethodNotAllowed", f"{info.resource}/{sub} is not supported by this server yet"
        )

    async def _finalize(self, request: web.Request, ri: RequestInfo, info: ResourceInfo, ctx: Context, obj: Obj) -> web.Response:
        finalizers = (obj.get("spec") or {}).get("finalizers") or []

        def transform(cur: Obj | None) -> Obj:
            assert cur is not None
            cur.setdefault("spec", {})["finalizers"] = finalizers
            return cur

        updated, _ = await self.store.guaranteed_update(ctx, info, ri.namespace, ri.name, transform, subresource="finalize")
        return self._object_response(request, info, updated)

    async def _scale(self, request: web.Request, ri: RequestInfo, info: ResourceInfo, ctx: Context) -> web.Response:
        def to_scale(obj: Obj) -> Obj:
            if info.custom is not None:
                return info.custom.to_scale(obj)
            md = obj["metadata"]
            status = obj.get("status") or {}
            selector = (obj.get("spec") or {}).get("selector")
            if info.kind == "ReplicationController":
                sel_text = ",".join(f"{k}={v}" for k, v in sorted((selector or {}).items()))
            else:
                sel_text = selector_string(selector)
            return {
                "kind": "Scale",
                "apiVersion": "autoscaling/v1",
                "metadata": {k: md[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in md},
                "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 0)},
                "status": {"replicas": status.get("replicas", 0), **({"selector": sel_text} if sel_text else {})},
            }

        if ri.verb == "get":
            scale = to_scale(await self.store.get(info, ri.namespace, ri.name))
            return self._object_response(request, info, scale, printed_as=("autoscaling", "Scale"))
        raw = await read_body(request)
        content_type = request.headers.get("Content-Type", "")
        scale_schema = schema.for_kind("autoscaling", "v1", "Scale")
        client_rv = ""
        if ri.verb == "update":
            scale = decode_body(raw, content_type or "application/json")
            if not isinstance(scale, dict):
                raise errors.bad_request("the body of the request must be a JSON object")
            ctx.warnings += fieldvalidation.decode(scale, scale_schema, _field_validation(request.query), raw)
            client_rv = (scale.get("metadata") or {}).get("resourceVersion", "")

        def transform(cur: Obj | None) -> Obj:
            assert cur is not None
            if ri.verb == "update":
                new_scale = scale
            else:
                new_scale = apply_patch(to_scale(cur), raw, content_type, scale_schema)
                fieldvalidation.decode(
                    new_scale, scale_schema, fieldvalidation.IGNORE, patch=raw, patch_type=_media_type(content_type)
                )
            replicas = (new_scale.get("spec") or {}).get("replicas")
            if replicas is None:
                replicas = 0
            if not isinstance(replicas, int) or replicas < 0:
                raise errors.invalid(
                    "autoscaling", "Scale", ri.name,
                    [errors.cause("spec.replicas", f"Invalid value: {replicas}: must be greater than or equal to 0")],
                )
            if info.custom is not None:
                info.custom.set_replicas(cur, replicas)
            else:
                cur.setdefault("spec", {})["replicas"] = replicas
            rv = (new_scale.get("metadata") or {}).get("resourceVersion")
            if rv:
                cur["metadata"]["resourceVersion"] = rv
            return cur

        updated, _ = await self.store.guaranteed_update(ctx, info, ri.namespace, ri.name, transform, client_rv=client_rv)
        return self._object_response(request, info, to_scale(updated), printed_as=("autoscaling", "Scale"))

    async def _decode_binding(self, request: web.Request) -> Obj:
        binding, raw = await self._decode_object(request)
        fieldvalidation.decode(binding, schema.for_kind("", "v1", "Binding"), _field_validation(request.query), raw)
        return binding

    async def _binding(self, binding: Obj, ri: RequestInfo, info: ResourceInfo, ctx: Context) -> web.Response:
        target = binding.get("target") or {}
        node = target.get("name")
        if not node:
            raise errors.invalid("", "Binding", ri.name, [errors.cause("target.name", "Required value", "FieldValueRequired")])

        def transform(cur: Obj | None) -> Obj:
            assert cur is not None
            spec = cur.setdefault("spec", {})
            if spec.get("nodeName"):
                raise errors.conflict("", "pods/binding", ri.name, f"pod {ri.name} is already assigned to node \"{spec['nodeName']}\"")
            if cur["metadata"].get("deletionTimestamp"):
                raise errors.conflict("", "pods/binding", ri.name, f"pod {ri.name} is being deleted, cannot be assigned to a host")
            spec["nodeName"] = node
            status = cur.setdefault("status", {})
            conds = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"]
            conds.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": meta.now()})
            status["conditions"] = conds
            return cur

        await self.store.guaranteed_update(ctx, info, ri.namespace, ri.name, transform, subresource="binding")
        return json_response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}, 201)

    async def create_binding(self, request: web.Request, ri: RequestInfo, ctx: Context) -> web.Response:
        """POST /api/v1/namespaces/{ns}/bindings: the legacy form of pods/binding."""
        pods = self.registry.get("", "v1", "pods")
        assert pods is not None
        ctx.exclusive = True
        binding = await self._decode_binding(request)
        name = (binding.get("metadata") or {}).get("name", "")
        sub_ri = RequestInfo(True, verb="create", namespace=ri.namespace, resource="pods", name=name, subresource="binding")
        return await self._binding(binding, sub_ri, pods, ctx)


def partial_object_metadata(obj: Obj) -> Obj:
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata") or {}}


def _strategy_returns_object(info: ResourceInfo) -> bool:
    from k8py.api.strategy import strategy_for

    return strategy_for(info).return_deleted_object


def _decode_fields(
    obj: Obj, info: ResourceInfo, mode: str, raw: bytes | None, *, patch: bytes | None = None, patch_type: str = ""
) -> list[str]:
    """Decode `obj` into its kind's type as kube does: type errors, strict field validation, unknown fields dropped."""
    if info.custom is not None:  # unstructured, as kube decodes custom resources
        return info.custom.decode(obj, mode, raw, patch=patch)
    return fieldvalidation.decode(obj, _schema_of(info), mode, raw, patch=patch, patch_type=patch_type)


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip()


def _schema_of(info: ResourceInfo) -> Any:
    return schema.schema_for(info)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _dry_run(q: Any) -> bool:
    return _dry_run_values(q.getall("dryRun", []))


def _dry_run_values(values: list[Any]) -> bool:
    """dryRun (a query parameter, or DeleteOptions in the body): only "All" exists."""
    for v in values:
        if v != "All":
            raise errors.bad_request(f'Unsupported value: "{v}": supported values: "All"')
    return bool(values)


def _field_manager(request: web.Request) -> str:
    """The managedFields manager: `fieldManager`, else derived from the User-Agent as kube does."""
    return request.query.get("fieldManager") or fieldmanager.manager_from_user_agent(request.headers.get("User-Agent", ""))


def _force(q: Any) -> bool | None:
    """The `force` query parameter (Go's ParseBool), None when absent."""
    if "force" not in q:
        return None
    value = q["force"]
    if value in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if value in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    raise errors.bad_request(f'strconv.ParseBool: parsing "{value}": invalid syntax')


def _apply_configuration(raw: bytes) -> Obj:
    """An apply patch body: YAML (JSON is YAML) holding an object; anything else is 400, as kube answers."""
    nesting.check_json(raw)
    try:
        config = orjson.loads(raw)
    except orjson.JSONDecodeError:
        config = decode_body(raw, YAML)
    if config is None:
        return {}
    if not isinstance(config, dict):
        what = {list: "array", str: "string", bool: "bool"}.get(type(config), "number")
        raise errors.bad_request(
            f"error decoding YAML: json: cannot unmarshal {what} into Go value of type map[string]interface {{}}"
        )
    return config


def _field_validation(q: Any) -> str:
    mode = q.get("fieldValidation", "Warn")
    if mode not in FIELD_VALIDATION_MODES:
        raise errors.bad_request(
            f'fieldValidation: Unsupported value: "{mode}": supported values: "Ignore", "Strict", "Warn"'
        )
    return mode


def _list_options(q: Any) -> ListOptions:
    limit = q.get("limit", "0") or "0"
    try:
        n = int(limit)
        if not -(1 << 63) <= n < 1 << 63:  # an int64
            raise ValueError
    except ValueError:
        raise errors.bad_request(f'Invalid value: "{limit}": limit must be an integer') from None
    return ListOptions(
        label_selector=q.get("labelSelector", ""),
        field_selector=q.get("fieldSelector", ""),
        limit=max(n, 0),
        continue_token=q.get("continue", ""),
        resource_version=q.get("resourceVersion", ""),
        resource_version_match=q.get("resourceVersionMatch", ""),
    )


__all__ = ["ResourceHandler", "json_response", "orjson"]
