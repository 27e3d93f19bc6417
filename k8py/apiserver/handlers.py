"""REST handlers: one resource request, from parsed URL to response.

`ResourceHandler.handle` takes an aiohttp request whose RequestInfo names a
resource, checks the verb against the registry, decodes the body, calls the
generic store, and encodes the answer (JSON, YAML, Table or
PartialObjectMetadata). Subresources with their own shape (scale, binding)
are translated here; watch streaming lives in `k8py.apiserver.watch`.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import orjson
from aiohttp import web

from k8py.api import errors, fieldvalidation, meta, printers, schema
from k8py.api.patch import apply_patch
from k8py.api.registry import Registry, ResourceInfo
from k8py.apiserver.genericstore import Context, GenericStore, ListOptions
from k8py.apiserver.negotiation import MAX_BODY, Output, choose_output, decode_body, encode
from k8py.apiserver.requestinfo import RequestInfo
from k8py.apiserver.watch import serve_watch

log = logging.getLogger(__name__)
Obj = dict[str, Any]

FIELD_VALIDATION_MODES = ("Strict", "Warn", "Ignore")


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
        resp.headers.add("Warning", f'299 - "{w}"')
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
        if ri.subresource:
            sub = info.subresource(ri.subresource)
            if sub is None:
                raise errors.StatusError(404, "NotFound", "the server could not find the requested resource", details={})
            return await self._subresource(request, ri, info, ctx)
        verb = ri.verb
        if ri.namespace and not info.namespaced:
            raise errors.StatusError(404, "NotFound", "the server could not find the requested resource", details={})
        if verb not in info.verbs:
            raise errors.method_not_allowed()
        if info.namespaced and verb in ("create",) and not ri.namespace:
            raise errors.StatusError(404, "NotFound", "the server could not find the requested resource", details={})
        ctx.dry_run = _dry_run(q)
        ctx.field_manager = q.get("fieldManager", "")
        if verb == "get":
            obj = await self.store.get(info, ri.namespace, ri.name, q.get("resourceVersion", ""))
            return self._object_response(request, info, obj)
        if verb == "list":
            items, list_meta = await self.store.list(info, ri.namespace, _list_options(q))
            return self._list_response(request, info, items, list_meta)
        if verb == "watch":
            return await serve_watch(request, info, ri.namespace, self.store, choose_output(request.headers.get("Accept", "")))
        if verb == "create":
            obj, raw = await self._decode_object(request)
            ctx.warnings += _decode_fields(obj, info, _field_validation(q), raw)
            created = await self.store.create(ctx, info, ri.namespace, obj)
            return self._object_response(request, info, created, 201, ctx.warnings)
        if verb == "update":
            obj, raw = await self._decode_object(request)
            ctx.warnings += _decode_fields(obj, info, _field_validation(q), raw)
            updated, created = await self.store.update(ctx, info, ri.namespace, ri.name, obj)
            return self._object_response(request, info, updated, 201 if created else 200, ctx.warnings)
        if verb == "patch":
            updated = await self._patch(request, ri, info, ctx, "")
            return self._object_response(request, info, updated, 200, ctx.warnings)
        if verb == "delete":
            options = await self._delete_options(request)
            obj, deleted = await self.store.delete(ctx, info, ri.namespace, ri.name, options)
            if deleted and not _strategy_returns_object(info):
                body = status_success(info, ri.name, obj["metadata"].get("uid", ""))
                return json_response(body, 200, choose_output(request.headers.get("Accept", "")))
            return self._object_response(request, info, obj, 200)
        if verb == "deletecollection":
            options = await self._delete_options(request)
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
        return options

    async def _patch(self, request: web.Request, ri: RequestInfo, info: ResourceInfo, ctx: Context, subresource: str) -> Obj:
        raw = await read_body(request)
        content_type = request.headers.get("Content-Type", "")
        if not raw.strip():
            raise errors.bad_request("the body of the request was empty")
        type_schema = _schema_of(info)
        mode = _field_validation(request.query)

        def transform(current: Obj | None) -> Obj:
            assert current is not None
            patched = apply_patch(current, raw, content_type, type_schema)
            if not isinstance(patched, dict):
                raise errors.bad_request("the patched object must be a JSON object")
            ctx.warnings[:] = _decode_fields(patched, info, mode, None, patch=raw)
            return patched

        updated, _ = await self.store.guaranteed_update(ctx, info, ri.namespace, ri.name, transform, subresource=subresource)
        return updated

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
                list_metadata=list_meta,
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
        ctx.field_manager = q.get("fieldManager", "")
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
                updated = await self._patch(request, ri, info, ctx, store_sub)
                return self._object_response(request, info, updated, 200, ctx.warnings)
        if sub == "scale":
            return await self._scale(request, ri, info, ctx)
        if sub == "binding":
            binding, _ = await self._decode_object(request)
            return await self._binding(binding, ri, info, ctx)
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
            client_rv = (scale.get("metadata") or {}).get("resourceVersion", "")

        def transform(cur: Obj | None) -> Obj:
            assert cur is not None
            new_scale = scale if ri.verb == "update" else apply_patch(to_scale(cur), raw, content_type, scale_schema)
            replicas = (new_scale.get("spec") or {}).get("replicas")
            if replicas is None:
                replicas = 0
            if not isinstance(replicas, int) or replicas < 0:
                raise errors.invalid(
                    "autoscaling", "Scale", ri.name,
                    [errors.cause("spec.replicas", f"Invalid value: {replicas}: must be greater than or equal to 0")],
                )
            cur.setdefault("spec", {})["replicas"] = replicas
            rv = (new_scale.get("metadata") or {}).get("resourceVersion")
            if rv:
                cur["metadata"]["resourceVersion"] = rv
            return cur

        updated, _ = await self.store.guaranteed_update(ctx, info, ri.namespace, ri.name, transform, client_rv=client_rv)
        return self._object_response(request, info, to_scale(updated), printed_as=("autoscaling", "Scale"))

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
        binding, _ = await self._decode_object(request)
        name = (binding.get("metadata") or {}).get("name", "")
        sub_ri = RequestInfo(True, verb="create", namespace=ri.namespace, resource="pods", name=name, subresource="binding")
        return await self._binding(binding, sub_ri, pods, ctx)


def partial_object_metadata(obj: Obj) -> Obj:
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata") or {}}


def _strategy_returns_object(info: ResourceInfo) -> bool:
    from k8py.api.strategy import strategy_for

    return strategy_for(info).return_deleted_object


def _decode_fields(obj: Obj, info: ResourceInfo, mode: str, raw: bytes | None, *, patch: bytes | None = None) -> list[str]:
    """Strict field validation, then drop unknown fields as decoding into kube's types does."""
    type_schema = _schema_of(info)
    warnings = fieldvalidation.check(obj, type_schema, mode, raw, patch=patch)
    if mode == "Ignore" or any(w.startswith("unknown field") for w in warnings):
        fieldvalidation.prune(obj, type_schema)
    return warnings


def _schema_of(info: ResourceInfo) -> Any:
    return schema.for_kind(info.group, info.version, info.kind)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _dry_run(q: Any) -> bool:
    values = q.getall("dryRun", [])
    for v in values:
        if v != "All":
            raise errors.bad_request(f'Unsupported value: "{v}": supported values: "All"')
    return bool(values)


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
