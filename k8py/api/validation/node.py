"""node.k8s.io/v1 RuntimeClasses (pkg/apis/node/validation)."""

from __future__ import annotations

from k8py.api.validation.field import Cause, immutable, invalid_each
from k8py.api.validation.meta import Obj, validate_object_meta, validate_object_meta_update
from k8py.api.validation.names import name_is_dns_label, name_is_dns_subdomain
from k8py.api.validation.pods import validate_resource_requirements, validate_tolerations


def validate_runtime_class(runtime_class: Obj, old: Obj | None) -> list[Cause]:
    if old is not None:
        causes = validate_object_meta_update(runtime_class.get("metadata"), old.get("metadata"))
        return causes + immutable("handler", runtime_class.get("handler", ""), old.get("handler", ""))
    causes = validate_object_meta(runtime_class.get("metadata"), False, name_is_dns_subdomain)
    handler = runtime_class.get("handler", "")
    causes += invalid_each("handler", handler, name_is_dns_label(handler, False))
    pod_fixed = (runtime_class.get("overhead") or {}).get("podFixed")
    if pod_fixed is not None:
        causes += validate_resource_requirements({"limits": pod_fixed}, "overhead.podFixed")
    causes += validate_tolerations(
        (runtime_class.get("scheduling") or {}).get("tolerations"), "scheduling.tolerations"
    )
    return causes


VALIDATORS = {"RuntimeClass": validate_runtime_class}
