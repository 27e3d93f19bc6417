"""ObjectMeta, labels, annotations and label selectors (apimachinery's api/validation and meta/v1/validation).

`validate_object_meta` is upstream's ValidateObjectMeta: a kind's name rule is
passed in as a ValidateNameFunc, and `kube_finalizers` adds the core rule that
an unprefixed finalizer must be one of Kubernetes' own, which every built-in
kind's validation applies but the generic registry's does not.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from k8py.api.errors import StatusError
from k8py.api.selectors import LabelSelector
from k8py.api.validation.field import (
    Cause,
    forbidden,
    immutable,
    invalid,
    invalid_each,
    non_negative,
    required,
    too_long,
)
from k8py.api.validation.names import (
    NameValidator,
    is_qualified_name,
    is_valid_label_value,
    name_is_dns_label,
)

Obj = dict[str, Any]

TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024
STANDARD_FINALIZERS = frozenset(("kubernetes", "orphan", "foregroundDeletion"))
# Owners that may not own anything: core/v1 Events.
_BANNED_OWNERS = {("", "v1", "Event")}


def validate_label_name(name: str, path: str) -> list[Cause]:
    return invalid_each(path, name, is_qualified_name(name))


def validate_labels(labels: Mapping[str, str] | None, path: str) -> list[Cause]:
    causes: list[Cause] = []
    for key, value in (labels or {}).items():
        causes += validate_label_name(key, path)
        causes += invalid_each(path, value, is_valid_label_value(value))
    return causes


def validate_annotations(annotations: Mapping[str, str] | None, path: str) -> list[Cause]:
    causes: list[Cause] = []
    size = 0
    for key, value in (annotations or {}).items():
        # Annotation keys are qualified names, except that case does not matter.
        causes += invalid_each(path, key, is_qualified_name(key.lower()))
        size += len(key.encode()) + len(value.encode())
    if size > TOTAL_ANNOTATION_SIZE_LIMIT:
        causes.append(too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT))
    return causes


def _parse_api_version(api_version: str) -> tuple[str, str]:
    """schema.ParseGroupVersion, with a malformed value as no group and no version."""
    if not api_version:
        return "", ""
    parts = api_version.split("/")
    if len(parts) == 1:
        return "", parts[0]
    if len(parts) == 2:
        return parts[0], parts[1]
    return "", ""


def validate_owner_references(refs: list[Obj] | None, path: str) -> list[Cause]:
    causes: list[Cause] = []
    controller = ""
    for ref in refs or []:
        group, version = _parse_api_version(ref.get("apiVersion", ""))
        kind = ref.get("kind", "")
        if not version:
            causes.append(
                invalid(f"{path}.apiVersion", ref.get("apiVersion", ""), "version must not be empty")
            )
        if not kind:
            causes.append(invalid(f"{path}.kind", kind, "must not be empty"))
        for key in ("name", "uid"):
            if not ref.get(key):
                causes.append(invalid(f"{path}.{key}", ref.get(key, ""), "must not be empty"))
        if (group, version, kind) in _BANNED_OWNERS:
            causes.append(
                invalid(path, ref, f"{group}/{version}, Kind={kind} is disallowed from being an owner")
            )
        if ref.get("controller"):
            name = f"{kind}/{ref.get('name', '')}"
            if controller:
                causes.append(
                    invalid(
                        path,
                        refs,
                        "Only one reference can have Controller set to true. "
                        f'Found "true" in references for {controller} and {name}',
                    )
                )
            else:
                controller = name
    return causes


def validate_finalizers(finalizers: list[str] | None, path: str, *, kube_finalizers: bool) -> list[Cause]:
    causes: list[Cause] = []
    for finalizer in finalizers or []:
        causes += invalid_each(path, finalizer, is_qualified_name(finalizer))
    if "orphan" in (finalizers or []) and "foregroundDeletion" in (finalizers or []):
        causes.append(invalid(path, finalizers, "finalizer orphan and foregroundDeletion cannot be both set"))
    if kube_finalizers:
        for i, finalizer in enumerate(finalizers or []):
            causes += validate_kube_finalizer_name(finalizer, f"{path}[{i}]")
    return causes


def validate_kube_finalizer_name(finalizer: str, path: str) -> list[Cause]:
    if "/" not in finalizer and finalizer not in STANDARD_FINALIZERS:
        return [
            invalid(path, finalizer, "name is neither a standard finalizer name nor is it fully qualified")
        ]
    return []


def _validate_managed_fields(entries: list[Obj] | None, path: str) -> list[Cause]:
    causes: list[Cause] = []
    for i, entry in enumerate(entries or []):
        operation = entry.get("operation", "")
        if operation not in ("Apply", "Update"):
            causes.append(invalid(f"{path}[{i}].operation", operation, "must be `Apply` or `Update`"))
        if entry.get("fieldsType") and entry["fieldsType"] != "FieldsV1":
            causes.append(invalid(f"{path}[{i}].fieldsType", entry["fieldsType"], "must be `FieldsV1`"))
    return causes


def _validate_common(meta: Obj, namespaced: bool, path: str, *, kube_finalizers: bool) -> list[Cause]:
    causes: list[Cause] = []
    namespace = meta.get("namespace", "")
    if namespaced:
        if not namespace:
            causes.append(required(f"{path}.namespace"))
        else:
            causes += invalid_each(f"{path}.namespace", namespace, name_is_dns_label(namespace, False))
    elif namespace:
        causes.append(forbidden(f"{path}.namespace", "not allowed on this type"))
    causes += non_negative(f"{path}.generation", meta.get("generation"))
    causes += validate_labels(meta.get("labels"), f"{path}.labels")
    causes += validate_annotations(meta.get("annotations"), f"{path}.annotations")
    causes += validate_owner_references(meta.get("ownerReferences"), f"{path}.ownerReferences")
    causes += validate_finalizers(
        meta.get("finalizers"), f"{path}.finalizers", kube_finalizers=kube_finalizers
    )
    causes += _validate_managed_fields(meta.get("managedFields"), f"{path}.managedFields")
    return causes


def validate_object_meta(
    meta: Obj | None,
    namespaced: bool,
    name_fn: NameValidator,
    path: str = "metadata",
    *,
    kube_finalizers: bool = True,
) -> list[Cause]:
    """ValidateObjectMeta on create; the caller has already turned generateName into a name."""
    meta = meta or {}
    causes: list[Cause] = []
    generate_name = meta.get("generateName", "")
    if generate_name:
        causes += invalid_each(f"{path}.generateName", generate_name, name_fn(generate_name, True))
    name = meta.get("name", "")
    if not name:
        causes.append(required(f"{path}.name", "name or generateName is required"))
    else:
        causes += invalid_each(f"{path}.name", name, name_fn(name, False))
    return causes + _validate_common(meta, namespaced, path, kube_finalizers=kube_finalizers)


def validate_meta(obj: Obj, old: Obj | None, namespaced: bool, name_fn: NameValidator) -> list[Cause]:
    """A kind's ObjectMeta: on create under its name rule, on update the update rules
    (the name is immutable, so it is not judged again)."""
    if old is None:
        return validate_object_meta(obj.get("metadata"), namespaced, name_fn)
    return validate_object_meta_update(obj.get("metadata"), old.get("metadata"))


def _go_string_slice(values: list[str]) -> str:
    return "[]string{" + ", ".join(f'"{v}"' for v in values) + "}"


def validate_object_meta_update(
    new: Obj | None, old: Obj | None, path: str = "metadata", *, kube_finalizers: bool = True
) -> list[Cause]:
    """ValidateObjectMetaUpdate: identity fields are immutable and a deleting object takes no new finalizers.

    An update must carry a resourceVersion; for an unconditional update the caller fills
    it in from the stored object first, as kube's generic store does.
    """
    new, old = new or {}, old or {}
    causes: list[Cause] = []
    if old.get("deletionTimestamp"):
        added = sorted(set(new.get("finalizers") or []) - set(old.get("finalizers") or []))
        if added:
            causes.append(
                forbidden(
                    f"{path}.finalizers",
                    f"no new finalizers can be added if the object is being deleted, found new finalizers {_go_string_slice(added)}",
                )
            )
    if not new.get("resourceVersion"):
        causes.append(
            invalid(
                f"{path}.resourceVersion", new.get("resourceVersion", ""), "must be specified for an update"
            )
        )
    if (new.get("generation") or 0) < (old.get("generation") or 0):
        causes.append(invalid(f"{path}.generation", new.get("generation") or 0, "must not be decremented"))
    for key, zero in (
        ("name", ""),
        ("namespace", ""),
        ("uid", ""),
        ("creationTimestamp", None),
        ("deletionTimestamp", None),
        ("deletionGracePeriodSeconds", None),
    ):
        causes += immutable(f"{path}.{key}", new.get(key, zero), old.get(key, zero))
    causes += validate_labels(new.get("labels"), f"{path}.labels")
    causes += validate_annotations(new.get("annotations"), f"{path}.annotations")
    causes += validate_owner_references(new.get("ownerReferences"), f"{path}.ownerReferences")
    causes += _validate_managed_fields(new.get("managedFields"), f"{path}.managedFields")
    if kube_finalizers:
        for i, finalizer in enumerate(new.get("finalizers") or []):
            causes += validate_kube_finalizer_name(finalizer, f"{path}.finalizers[{i}]")
    return causes


def validate_label_selector(
    selector: Obj | None, path: str, *, allow_invalid_values: bool = False
) -> list[Cause]:
    """ValidateLabelSelector; a nil selector is valid here (callers that need one say so)."""
    if selector is None:
        return []
    causes = validate_labels(selector.get("matchLabels"), f"{path}.matchLabels")
    for i, expr in enumerate(selector.get("matchExpressions") or []):
        expr_path = f"{path}.matchExpressions[{i}]"
        operator, values = expr.get("operator", ""), expr.get("values") or []
        if operator in ("In", "NotIn"):
            if not values:
                causes.append(
                    required(f"{expr_path}.values", "must be specified when `operator` is 'In' or 'NotIn'")
                )
        elif operator in ("Exists", "DoesNotExist"):
            if values:
                causes.append(
                    forbidden(
                        f"{expr_path}.values",
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    )
                )
        else:
            causes.append(invalid(f"{expr_path}.operator", operator, "not a valid selector operator"))
        causes += validate_label_name(expr.get("key", ""), f"{expr_path}.key")
        if not allow_invalid_values:
            for j, value in enumerate(values):
                causes += invalid_each(f"{expr_path}.values[{j}]", value, is_valid_label_value(value))
    return causes


def as_selector(selector: Obj | None) -> LabelSelector | None:
    """metav1.LabelSelectorAsSelector; None where upstream's conversion fails."""
    try:
        return LabelSelector.from_label_selector(selector)
    except StatusError:
        return None


def validate_has_label(meta: Obj | None, path: str, key: str, expected: str) -> list[Cause]:
    """ValidateHasLabel."""
    labels = (meta or {}).get("labels") or {}
    if key not in labels:
        return [required(f"{path}.labels[{key}]", f"must be '{expected}'")]
    if labels[key] != expected:
        return [invalid(f"{path}.labels[{key}]", labels, f"must be '{expected}'")]
    return []
