"""A served version of a CRD, as the generic machinery sees it.

kube-apiserver's apiextensions `customresource_handler.go` builds, for every
served version of an Established CRD, a REST storage with its own strategy,
validator, table convertor and status/scale subresources. Here
`resource_infos(crd)` builds the ResourceInfos of those versions, and each one's
`custom` (a `CustomResource`) carries that behaviour to the places that dispatch
on it: `strategy_for`, `validate`, `schema_for`, the conversion between versions,
the printers and the scale subresource handler. Everything else is the generic
store's, exactly as for built-in kinds.

Per version, following `pkg/registry/customresource`:
- strategy: generation tracking (any change outside metadata counts, the status
  too unless it is a subresource), status dropped on create and kept on update
  when `subresources.status` is set, `selectableFields` for field selectors;
- validation: ObjectMeta (DNS-subdomain names), the schema (`k8py.api.structural`,
  ratcheting unchanged values on update), list-type uniqueness, embedded resources,
  and the replicas/selector the scale subresource reads;
- decoding (`decode`): duplicate and unknown fields reported per fieldValidation,
  unknown fields pruned (`k8py.api.structural.pruning`), then the schema's defaults;
- `to_scale`/`set_replicas`: the autoscaling/v1 Scale at specReplicasPath,
  statusReplicasPath and labelSelectorPath.

Objects are stored under `/registry/<group>/<plural>/` in the storage version;
every served version reads and writes them with only apiVersion rewritten
(conversion strategy None).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from k8py.api import fieldvalidation
from k8py.api.errors import StatusError, bad_request
from k8py.api.patch import APPLY_PATCH, JSON_PATCH, MERGE_PATCH
from k8py.api.printers._common import Printer
from k8py.api.printers.custom import custom_printer
from k8py.api.registry import ALL_VERBS, SCALE, STATUS, ResourceInfo
from k8py.api.strategy import Strategy
from k8py.api.structural import defaulting, pruning, typeschema
from k8py.api.structural import validate as values
from k8py.api.validation.field import Cause, invalid
from k8py.api.validation.meta import validate_object_meta, validate_object_meta_update
from k8py.api.validation.names import name_is_dns_subdomain

Obj = dict[str, Any]
MAX_INT32 = 2**31 - 1
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, APPLY_PATCH)


def _path(json_path: str) -> list[str]:
    """`.spec.replicas` -> ["spec", "replicas"]."""
    return json_path.lstrip(".").split(".")


def _go_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, int):
        return "int64"
    if isinstance(value, str):
        return "string"
    return "[]interface {}" if isinstance(value, list) else "map[string]interface {}" if isinstance(value, dict) else "<nil>"


def _nested(obj: Obj, json_path: str, expected: type) -> tuple[Any, str]:
    """unstructured.NestedInt64/NestedString: (value or None, error text)."""
    cur: Any = obj
    for part in _path(json_path):
        if not isinstance(cur, dict) or part not in cur:
            return None, ""
        cur = cur[part]
    if isinstance(cur, expected) and not isinstance(cur, bool):
        return cur, ""
    expected_name = "int64" if expected is int else "string"
    return None, f"{json_path} accessor error: {cur} is of the type {_go_type(cur)}, expected {expected_name}"


def _replicas(obj: Obj, json_path: str) -> list[Cause]:
    value, error = _nested(obj, json_path, int)
    if error:
        return [invalid(json_path, 0, error)]
    if value is not None and value < 0:
        return [invalid(json_path, value, "should be a non-negative integer")]
    if value is not None and value > MAX_INT32:
        return [invalid(json_path, value, f"should be less than or equal to {MAX_INT32}")]
    return []


@dataclass(frozen=True, eq=False)
class CustomResource:
    """What one served version of a CRD adds to the generic machinery."""

    crd_name: str
    list_kind: str
    namespaced: bool
    schema: Obj | None  # the version's openAPIV3Schema
    type_schema: Obj  # that schema for the walkers (`k8py.api.schema.schema_for`)
    strategy: Strategy
    printer: Printer
    scale: Obj | None  # subresources.scale

    def validate(self, obj: Obj, old: Obj | None) -> list[Cause]:
        md = obj.get("metadata")
        if old is None:
            causes = validate_object_meta(md, self.namespaced, name_is_dns_subdomain, kube_finalizers=False)
        else:
            causes = validate_object_meta_update(md, old.get("metadata"), kube_finalizers=False)
        if self.schema is not None:
            causes += values.validate(self.schema, obj, old=values.MISSING if old is None else old)
        if self.scale is not None:
            causes += _replicas(obj, self.scale.get("specReplicasPath", ""))
            causes += _replicas(obj, self.scale.get("statusReplicasPath", ""))
            if self.scale.get("labelSelectorPath"):
                _, error = _nested(obj, self.scale["labelSelectorPath"], str)
                if error:
                    causes.append(invalid(self.scale["labelSelectorPath"], "", error))
        if self.schema is not None:
            causes += values.validate_embedded(self.schema, obj)
            causes += values.validate_lists(self.schema, obj)
        return causes

    def decode(self, obj: Obj, mode: str, raw: bytes | None, *, patch: bytes | None = None) -> list[str]:
        """kube's custom resource decoder on a request body (`raw`) or a patched object (`patch`).

        Duplicate fields, then the unknown fields pruning drops (metadata's as ObjectMeta's
        decoding drops them), are reported per `fieldValidation` (`mode`): warnings for Warn,
        400 for Strict. Then the schema's defaults apply. Types are left to validation (422)."""
        found: list[str] = []
        if mode != fieldvalidation.IGNORE:
            for body in (patch, raw):
                if body is not None:
                    found += [f'duplicate field "{p}"' for p in fieldvalidation.duplicate_fields(body)]
        unknown = pruning.prune(obj, self.schema) if self.schema is not None else []
        if isinstance(obj.get("metadata"), dict):
            wrapper = {"metadata": obj["metadata"]}
            unknown = sorted(unknown + fieldvalidation.unknown_fields(wrapper, self._meta_schema))
            fieldvalidation.decode(wrapper, self._meta_schema, fieldvalidation.IGNORE)
        messages = list(dict.fromkeys(found + [f'unknown field "{p}"' for p in unknown]))[: fieldvalidation.MAX_ERRORS]
        if messages and mode == fieldvalidation.STRICT:
            detail = "strict decoding error: " + ", ".join(messages)
            if raw is not None:
                kind = self.type_schema["x-kubernetes-group-version-kind"][0]
                detail = f'{kind["kind"]} in version "{kind["version"]}" cannot be handled as a {kind["kind"]}: {detail}'
            raise bad_request(detail)
        if self.schema is not None:
            defaulting.default(obj, self.schema)
        return messages if mode != fieldvalidation.IGNORE else []

    @functools.cached_property
    def _meta_schema(self) -> Obj:
        """The object reduced to its ObjectMeta, for decoding metadata as kube does (one dict per version:
        field validation compiles a schema once per object)."""
        gvk = self.type_schema["x-kubernetes-group-version-kind"]
        return {"properties": {"metadata": typeschema.OBJECT_META}, "x-kubernetes-group-version-kind": gvk}

    def to_scale(self, obj: Obj) -> Obj:
        """The autoscaling/v1 Scale of a custom object (scaleFromCustomResource)."""
        assert self.scale is not None
        md = obj["metadata"]
        spec, _ = _nested(obj, self.scale.get("specReplicasPath", ""), int)
        status_replicas, _ = _nested(obj, self.scale.get("statusReplicasPath", ""), int)
        selector = ""
        if self.scale.get("labelSelectorPath"):
            selector = _nested(obj, self.scale["labelSelectorPath"], str)[0] or ""
        status: Obj = {"replicas": status_replicas or 0}
        if selector:
            status["selector"] = selector
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {k: md[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in md},
            "spec": {"replicas": spec or 0},
            "status": status,
        }

    def set_replicas(self, obj: Obj, replicas: int) -> None:
        """Write a Scale's spec.replicas to specReplicasPath."""
        assert self.scale is not None
        *parents, leaf = _path(self.scale.get("specReplicasPath", ""))
        cur = obj
        for part in parents:
            if not isinstance(cur.get(part), dict):
                cur[part] = {}
            cur = cur[part]
        cur[leaf] = replicas


def check_patch_type(content_type: str) -> None:
    """Custom resources take JSON, merge and apply patches; strategic merge patch is 415, as in kube."""
    media = content_type.split(";", 1)[0].strip()
    if media not in PATCH_TYPES:
        raise StatusError(
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted media types include: " + ", ".join(PATCH_TYPES),
        )


def _drop_status(obj: Obj) -> None:
    obj.pop("status", None)


def _count_status_changes(obj: Obj, old: Obj) -> None:
    """Without a status subresource a status change is a change like any other: a new generation."""
    if obj.get("status") != old.get("status"):
        md = obj.setdefault("metadata", {})
        md["generation"] = int((old.get("metadata") or {}).get("generation") or 1) + 1


def _strategy(version: Obj, status: bool) -> Strategy:
    selectable = tuple(
        f["jsonPath"].lstrip(".") for f in version.get("selectableFields") or [] if isinstance(f.get("jsonPath"), str)
    )
    prepare_update: Callable[[Obj, Obj], None] | None = None if status else _count_status_changes
    return Strategy(
        selectable_fields=selectable,
        tracks_generation=True,
        prepare_for_create=_drop_status if status else None,
        prepare_for_update=prepare_update,
    )


def _storage_version(crd: Obj) -> str:
    return next(v["name"] for v in crd["spec"]["versions"] if v.get("storage"))


def resource_infos(crd: Obj, preferred: str) -> list[ResourceInfo]:
    """The ResourceInfos of an Established CRD's served versions, under its accepted names;
    `preferred` is the group's preferred version."""
    spec, names = crd["spec"], crd["status"]["acceptedNames"]
    group, plural, kind = spec["group"], names["plural"], names["kind"]
    namespaced = spec.get("scope") == "Namespaced"
    infos = []
    for version in spec["versions"]:
        if not version.get("served"):
            continue
        subresources = version.get("subresources") or {}
        status, scale = subresources.get("status") is not None, subresources.get("scale")
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        custom = CustomResource(
            crd_name=crd["metadata"]["name"],
            list_kind=names.get("listKind") or f"{kind}List",
            namespaced=namespaced,
            schema=schema,
            type_schema=typeschema.type_schema(schema, group, version["name"], kind),
            strategy=_strategy(version, status),
            printer=custom_printer(version.get("additionalPrinterColumns") or []),
            scale=scale,
        )
        infos.append(
            ResourceInfo(
                group,
                version["name"],
                plural,
                kind,
                namespaced,
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                verbs=ALL_VERBS,
                subresources=(*((STATUS,) if status else ()), *((SCALE,) if scale is not None else ())),
                storage_prefix=f"/registry/{group}/{plural}",
                storage_version=f"{group}/{_storage_version(crd)}",
                preferred=version["name"] == preferred,
                singular=names.get("singular") or kind.lower(),
                custom=custom,
            )
        )
    return infos
