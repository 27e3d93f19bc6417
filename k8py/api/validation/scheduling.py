"""scheduling.k8s.io/v1 PriorityClasses (pkg/apis/scheduling/validation)."""

from __future__ import annotations

from k8py.api.validation.field import Cause, forbidden, immutable, not_supported
from k8py.api.validation.meta import Obj, validate_object_meta, validate_object_meta_update
from k8py.api.validation.names import name_is_dns_subdomain

HIGHEST_USER_DEFINABLE_PRIORITY = 1_000_000_000
SYSTEM_PRIORITY_CLASS_PREFIX = "system-"
# The classes kube-apiserver creates: name -> (value, globalDefault).
SYSTEM_PRIORITY_CLASSES = {
    "system-node-critical": (2_000_001_000, False),
    "system-cluster-critical": (2_000_000_000, False),
}


def _system_class_error(name: str, value: int, global_default: bool) -> str | None:
    """IsKnownSystemPriorityClass: None when the class is one of kube's own, as kube defines it."""
    if name not in SYSTEM_PRIORITY_CLASSES:
        return f"{name} is not a known system priority class"
    expected_value, expected_default = SYSTEM_PRIORITY_CLASSES[name]
    if value != expected_value:
        return f"value of {name} PriorityClass must be {expected_value}"
    if global_default != expected_default:
        return f"globalDefault of {name} PriorityClass must be {str(expected_default).lower()}"
    return None


def validate_priority_class(priority_class: Obj, old: Obj | None) -> list[Cause]:
    value = priority_class.get("value", 0)
    if old is not None:
        causes = validate_object_meta_update(priority_class.get("metadata"), old.get("metadata"))
        if value != old.get("value", 0):
            causes.append(forbidden("value", "may not be changed in an update."))
        return causes + immutable(
            "preemptionPolicy", priority_class.get("preemptionPolicy"), old.get("preemptionPolicy")
        )
    causes = validate_object_meta(priority_class.get("metadata"), False, name_is_dns_subdomain)
    name = (priority_class.get("metadata") or {}).get("name", "")
    if name.startswith(SYSTEM_PRIORITY_CLASS_PREFIX):
        error = _system_class_error(name, value, bool(priority_class.get("globalDefault")))
        if error:
            causes.append(
                forbidden(
                    "metadata.name",
                    f"priority class names with '{SYSTEM_PRIORITY_CLASS_PREFIX}' prefix are reserved for system use only. error: {error}",
                )
            )
    elif value > HIGHEST_USER_DEFINABLE_PRIORITY:
        causes.append(
            forbidden(
                "value",
                f"maximum allowed value of a user defined priority is {HIGHEST_USER_DEFINABLE_PRIORITY}",
            )
        )
    policy = priority_class.get("preemptionPolicy")
    if policy is not None and policy not in ("PreemptLowerPriority", "Never"):
        causes.append(not_supported("preemptionPolicy", policy, ("PreemptLowerPriority", "Never")))
    return causes


VALIDATORS = {"PriorityClass": validate_priority_class}
