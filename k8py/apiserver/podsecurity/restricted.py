"""The restricted checks (pod-security-admission/policy/check_*.go): pod hardening best practices."""

from __future__ import annotations

from k8py.apiserver.podsecurity.baseline import valid_seccomp
from k8py.apiserver.podsecurity.checks import (
    Obj,
    Violation,
    containers,
    field_use,
    is_windows,
    join_quote,
    named,
    pluralize,
    profile_type,
    security_context,
)


def allow_privilege_escalation_1_8(meta: Obj, spec: Obj) -> Violation | None:
    """Every container sets allowPrivilegeEscalation=false."""
    bad = [
        c.get("name", "")
        for c in containers(spec)
        if security_context(c).get("allowPrivilegeEscalation") is not False
    ]
    if not bad:
        return None
    return Violation(
        "allowPrivilegeEscalation != false",
        f"{named('container', bad)} must set securityContext.allowPrivilegeEscalation=false",
    )


def allow_privilege_escalation_1_25(meta: Obj, spec: Obj) -> Violation | None:
    """v1.25: not for Windows pods (their validation forbids the field)."""
    return None if is_windows(spec) else allow_privilege_escalation_1_8(meta, spec)


def capabilities_restricted_1_22(meta: Obj, spec: Obj) -> Violation | None:
    """Containers drop ALL and add at most NET_BIND_SERVICE."""
    missing_drop: list[str] = []
    adding: list[str] = []
    added: set[str] = set()
    for c in containers(spec):
        capabilities = security_context(c).get("capabilities")
        if capabilities is None:
            missing_drop.append(c.get("name", ""))
            continue
        if "ALL" not in (capabilities.get("drop") or []):
            missing_drop.append(c.get("name", ""))
        forbidden = [cap for cap in capabilities.get("add") or [] if cap != "NET_BIND_SERVICE"]
        if forbidden:
            adding.append(c.get("name", ""))
            added.update(forbidden)
    details = []
    if missing_drop:
        details.append(
            f'{named("container", missing_drop)} must set securityContext.capabilities.drop=["ALL"]'
        )
    if adding:
        details.append(
            f"{named('container', adding)} must not include {join_quote(sorted(added))} in securityContext.capabilities.add"
        )
    return Violation("unrestricted capabilities", "; ".join(details)) if details else None


def capabilities_restricted_1_25(meta: Obj, spec: Obj) -> Violation | None:
    """v1.25: not for Windows pods."""
    return None if is_windows(spec) else capabilities_restricted_1_22(meta, spec)


_VOLUME_TYPES_ALLOWED = (
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
)
_VOLUME_TYPES_RESTRICTED = (
    "hostPath", "gcePersistentDisk", "awsElasticBlockStore", "gitRepo", "nfs", "iscsi", "glusterfs", "rbd", "flexVolume",
    "cinder", "cephfs", "flocker", "fc", "azureFile", "vsphereVolume", "quobyte", "azureDisk", "photonPersistentDisk",
    "portworxVolume", "scaleIO", "storageos",
)  # fmt: skip


def restricted_volumes(meta: Obj, spec: Obj) -> Violation | None:
    """Inline volumes only of the types that expose nothing of the node or of other tenants."""
    bad: list[str] = []
    types: set[str] = set()
    for v in spec.get("volumes") or []:
        if any(v.get(t) is not None for t in _VOLUME_TYPES_ALLOWED):
            continue
        bad.append(v.get("name", ""))
        types.add(next((t for t in _VOLUME_TYPES_RESTRICTED if v.get(t) is not None), "unknown"))
    if not bad:
        return None
    return Violation(
        "restricted volume types",
        f"{named('volume', bad)} {pluralize('uses', 'use', len(bad))} "
        f"{pluralize('restricted volume type', 'restricted volume types', len(types))} {join_quote(sorted(types))}",
    )


def run_as_non_root(meta: Obj, spec: Obj) -> Violation | None:
    """runAsNonRoot=true on the pod (containers may not unset it) or on every container."""
    use = field_use(spec, "runAsNonRoot", lambda v: v is True)
    if use.setters():
        return Violation(
            "runAsNonRoot != true",
            f"{' and '.join(use.setters())} must not set securityContext.runAsNonRoot=false",
        )
    if use.unset and not use.pod_allowed:
        return Violation(
            "runAsNonRoot != true",
            f"pod or {named('container', use.unset)} must set securityContext.runAsNonRoot=true",
        )
    return None


def run_as_user(meta: Obj, spec: Obj) -> Violation | None:
    """No runAsUser=0 (root), on the pod or on any container."""
    bad_setters = field_use(spec, "runAsUser", lambda v: v != 0).setters()
    return (
        Violation("runAsUser=0", f"{' and '.join(bad_setters)} must not set runAsUser=0")
        if bad_setters
        else None
    )


def seccomp_profile_restricted_1_19(meta: Obj, spec: Obj) -> Violation | None:
    """A RuntimeDefault or Localhost seccomp profile on the pod (inherited) or on every container."""
    use = field_use(spec, "seccompProfile", valid_seccomp, profile_type)
    if use.setters():
        return Violation(
            "seccompProfile",
            f"{' and '.join(use.setters())} must not set securityContext.seccompProfile.type to {join_quote(sorted(use.values))}",
        )
    if use.unset and not use.pod_allowed:
        return Violation(
            "seccompProfile",
            f'pod or {named("container", use.unset)} must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost"',
        )
    return None


def seccomp_profile_restricted_1_25(meta: Obj, spec: Obj) -> Violation | None:
    """v1.25: not for Windows pods."""
    return None if is_windows(spec) else seccomp_profile_restricted_1_19(meta, spec)
