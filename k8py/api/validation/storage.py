"""storage.k8s.io/v1 StorageClasses (pkg/apis/storage/validation)."""

from __future__ import annotations

from k8py.api.validation.field import (
    Cause,
    forbidden,
    immutable,
    invalid,
    invalid_each,
    not_supported,
    required,
    too_long,
)
from k8py.api.validation.meta import Obj, validate_object_meta, validate_object_meta_update
from k8py.api.validation.names import is_qualified_name, name_is_dns_subdomain

MAX_PROVISIONER_PARAMETERS = 512
MAX_PROVISIONER_PARAMETER_SIZE = 256 * 1024


def _validate_parameters(parameters: dict[str, str]) -> list[Cause]:
    if len(parameters) > MAX_PROVISIONER_PARAMETERS:
        return [too_long("parameters", MAX_PROVISIONER_PARAMETERS)]
    causes = [invalid("parameters", key, "field can not be empty.") for key in parameters if not key]
    if sum(len(k.encode()) + len(v.encode()) for k, v in parameters.items()) > MAX_PROVISIONER_PARAMETER_SIZE:
        causes.append(too_long("parameters", MAX_PROVISIONER_PARAMETER_SIZE))
    return causes


def validate_storage_class(storage_class: Obj, old: Obj | None) -> list[Cause]:
    if old is not None:
        causes = validate_object_meta_update(storage_class.get("metadata"), old.get("metadata"))
        if (storage_class.get("parameters") or {}) != (old.get("parameters") or {}):
            causes.append(forbidden("parameters", "updates to parameters are forbidden."))
        if storage_class.get("provisioner") != old.get("provisioner"):
            causes.append(forbidden("provisioner", "updates to provisioner are forbidden."))
        if storage_class.get("reclaimPolicy") != old.get("reclaimPolicy"):
            causes.append(forbidden("reclaimPolicy", "updates to reclaimPolicy are forbidden."))
        return causes + immutable(
            "volumeBindingMode", storage_class.get("volumeBindingMode"), old.get("volumeBindingMode")
        )
    causes = validate_object_meta(storage_class.get("metadata"), False, name_is_dns_subdomain)
    provisioner = storage_class.get("provisioner", "")
    if not provisioner:
        causes.append(required("provisioner"))
    else:
        causes += invalid_each("provisioner", provisioner.lower(), is_qualified_name(provisioner.lower()))
    causes += _validate_parameters(storage_class.get("parameters") or {})
    policy = storage_class.get("reclaimPolicy")
    if policy and policy not in ("Delete", "Retain"):
        causes.append(not_supported("reclaimPolicy", policy, ("Delete", "Retain")))
    mode = storage_class.get("volumeBindingMode")
    if mode is None:
        causes.append(required("volumeBindingMode"))
    elif mode not in ("Immediate", "WaitForFirstConsumer"):
        causes.append(not_supported("volumeBindingMode", mode, ("Immediate", "WaitForFirstConsumer")))
    return causes


VALIDATORS = {"StorageClass": validate_storage_class}
