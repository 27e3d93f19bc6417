"""coordination.k8s.io/v1 Leases (pkg/apis/coordination/validation)."""

from __future__ import annotations

from k8py.api.validation.field import Cause, invalid
from k8py.api.validation.meta import Obj, validate_meta
from k8py.api.validation.names import name_is_dns_subdomain


def validate_lease(lease: Obj, old: Obj | None) -> list[Cause]:
    causes = validate_meta(lease, old, True, name_is_dns_subdomain)
    spec = lease.get("spec") or {}
    duration, transitions = spec.get("leaseDurationSeconds"), spec.get("leaseTransitions")
    if duration is not None and duration <= 0:
        causes.append(invalid("spec.leaseDurationSeconds", duration, "must be greater than 0"))
    if transitions is not None and transitions < 0:
        causes.append(invalid("spec.leaseTransitions", transitions, "must be greater than or equal to 0"))
    return causes


VALIDATORS = {"Lease": validate_lease}
