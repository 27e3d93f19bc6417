"""kube-apiserver's validation of built-in kinds, on plain JSON dicts.

`validate(info, obj, old=None)` returns the metav1.StatusCauses kube-apiserver
1.32 would report for a create (`old` is None) or an update, with kube's
reasons, field paths and messages (`Invalid value: "Foo_bar": a lowercase RFC
1123 subdomain must ...`); `errors.invalid()` turns them into the 422.

As in kube's generic registry, each kind has a validator (one module per API
group) and every kind also gets the generic metadata checks: on create they run
only when the kind's own found nothing (so its specific messages win), on update
they always run first. A kind with no validator of its own gets just those: names
fit for a URL path segment, valid labels, annotations, owner references and
finalizers. A custom resource's validator comes with its ResourceInfo
(`k8py.apiextensions.customresource`). Causes are reported once each, in order.

The caller resolves generateName into a name before validating, and on an
unconditional update copies the stored resourceVersion in, as kube's store does.

The name and value formats (`is_dns1123_subdomain`, `is_qualified_name`, ...)
are re-exported for other code; like upstream's they return the reasons a value
is invalid, so an empty list means valid.
"""

from __future__ import annotations

from collections.abc import Callable

from k8py.api.registry import ResourceInfo
from k8py.api.validation import (
    apiextensions,
    apps,
    autoscaling,
    batch,
    certificates,
    coordination,
    core,
    discovery,
    networking,
    node,
    policy,
    rbac,
    scheduling,
    storage,
)
from k8py.api.validation.field import Cause
from k8py.api.validation.meta import Obj, validate_meta, validate_object_meta, validate_object_meta_update
from k8py.api.validation.names import (
    NameValidator,
    is_config_map_key,
    is_dns1035_label,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_qualified_name,
    is_valid_label_value,
    name_is_dns_subdomain,
    name_is_path_segment,
)

__all__ = [
    "Cause",
    "is_config_map_key",
    "is_dns1035_label",
    "is_dns1123_label",
    "is_dns1123_subdomain",
    "is_qualified_name",
    "is_valid_label_value",
    "validate",
]

Validator = Callable[[Obj, Obj | None], list[Cause]]


def _meta_only(name_fn: NameValidator, namespaced: bool) -> Validator:
    """A kind whose validation (as far as k8py goes) is its ObjectMeta under its own name rule."""
    return lambda obj, old: validate_meta(obj, old, namespaced, name_fn)


_GROUPS = {
    "": core,
    "apiextensions.k8s.io": apiextensions,
    "apps": apps,
    "batch": batch,
    "rbac.authorization.k8s.io": rbac,
    "networking.k8s.io": networking,
    "policy": policy,
    "scheduling.k8s.io": scheduling,
    "storage.k8s.io": storage,
    "certificates.k8s.io": certificates,
    "coordination.k8s.io": coordination,
    "node.k8s.io": node,
    "discovery.k8s.io": discovery,
    "autoscaling": autoscaling,
}
_VALIDATORS: dict[tuple[str, str], Validator] = {
    (group, kind): fn for group, module in _GROUPS.items() for kind, fn in module.VALIDATORS.items()
}
_VALIDATORS.update(
    {
        ("", "ServiceAccount"): _meta_only(name_is_dns_subdomain, True),
        ("events.k8s.io", "Event"): core.validate_events_event,
        ("storage.k8s.io", "CSIDriver"): _meta_only(name_is_dns_subdomain, False),
        ("storage.k8s.io", "CSINode"): _meta_only(name_is_dns_subdomain, False),
        ("storage.k8s.io", "CSIStorageCapacity"): _meta_only(name_is_dns_subdomain, True),
        ("storage.k8s.io", "VolumeAttachment"): _meta_only(name_is_dns_subdomain, False),
        ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"): _meta_only(
            name_is_dns_subdomain, False
        ),
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"): _meta_only(
            name_is_dns_subdomain, False
        ),
    }
)


def _unique(causes: list[Cause]) -> list[Cause]:
    seen: set[tuple[str, str, str]] = set()
    out = []
    for c in causes:
        key = (c["reason"], c["field"], c["message"])
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out


def validate(info: ResourceInfo, obj: Obj, old: Obj | None = None) -> list[Cause]:
    """The causes kube-apiserver reports against `obj` (a create, or an update of `old`); [] when valid."""
    specific = info.custom.validate if info.custom is not None else _VALIDATORS.get((info.group, info.kind))
    causes = specific(obj, old) if specific is not None else []
    generic = validate_object_meta(
        obj.get("metadata"), info.namespaced, name_is_path_segment, kube_finalizers=False
    )
    if old is not None:
        generic += validate_object_meta_update(
            obj.get("metadata"), old.get("metadata"), kube_finalizers=False
        )
        causes = generic + causes
    elif not causes:
        causes = generic
    return _unique(causes)
