"""rbac.authorization.k8s.io/v1: pkg/apis/rbac/validation.

RBAC objects take any name that fits in a URL path segment, as upstream's
minimalNameRequirements allows.
"""

from __future__ import annotations

from k8py.api.validation.field import Cause, GoStruct, invalid, invalid_each, not_supported, required
from k8py.api.validation.meta import Obj, validate_meta
from k8py.api.validation.names import name_is_dns_subdomain, name_is_path_segment

GROUP_NAME = "rbac.authorization.k8s.io"


def _validate_policy_rule(rule: Obj, namespaced: bool, path: str) -> list[Cause]:
    causes: list[Cause] = []
    if not rule.get("verbs"):
        causes.append(required(f"{path}.verbs", "verbs must contain at least one value"))
    urls = rule.get("nonResourceURLs") or []
    if urls:
        if namespaced:
            causes.append(
                invalid(f"{path}.nonResourceURLs", urls, "namespaced rules cannot apply to non-resource URLs")
            )
        if rule.get("apiGroups") or rule.get("resources") or rule.get("resourceNames"):
            causes.append(
                invalid(
                    f"{path}.nonResourceURLs",
                    urls,
                    "rules cannot apply to both regular resources and non-resource URLs",
                )
            )
        return causes
    if not rule.get("apiGroups"):
        causes.append(required(f"{path}.apiGroups", "resource rules must supply at least one api group"))
    if not rule.get("resources"):
        causes.append(required(f"{path}.resources", "resource rules must supply at least one resource"))
    if rule.get("resourceNames") and len(rule.get("resources") or []) > 1:
        causes.append(required(f"{path}.resourceNames", "resource names cannot apply to multiple resources"))
    return causes


def _validate_role(role: Obj, old: Obj | None, namespaced: bool) -> list[Cause]:
    causes = validate_meta(role, old, namespaced, name_is_path_segment)
    for i, rule in enumerate(role.get("rules") or []):
        causes += _validate_policy_rule(rule, namespaced, f"rules[{i}]")
    return causes


def validate_role(role: Obj, old: Obj | None) -> list[Cause]:
    return _validate_role(role, old, True)


def validate_cluster_role(role: Obj, old: Obj | None) -> list[Cause]:
    return _validate_role(role, old, False)


def _validate_subject(subject: Obj, namespaced: bool, path: str) -> list[Cause]:
    causes: list[Cause] = []
    name, kind, group = subject.get("name", ""), subject.get("kind", ""), subject.get("apiGroup", "")
    if not name:
        causes.append(required(f"{path}.name"))
    if kind == "ServiceAccount":
        if name:
            causes += invalid_each(f"{path}.name", name, name_is_dns_subdomain(name, False))
        if group:
            causes.append(not_supported(f"{path}.apiGroup", group, ("",)))
        if not namespaced and not subject.get("namespace"):
            causes.append(required(f"{path}.namespace"))
    elif kind in ("User", "Group"):
        if not name:
            causes.append(invalid(f"{path}.name", name, f"{kind.lower()} name cannot be empty"))
        if group != GROUP_NAME:
            causes.append(not_supported(f"{path}.apiGroup", group, (GROUP_NAME,)))
    else:
        causes.append(not_supported(f"{path}.kind", kind, ("ServiceAccount", "User", "Group")))
    return causes


def _role_ref(binding: Obj) -> GoStruct:
    """roleRef as upstream renders the internal rbac.RoleRef in "cannot change roleRef"."""
    ref = binding.get("roleRef") or {}
    return GoStruct(APIGroup=ref.get("apiGroup", ""), Kind=ref.get("kind", ""), Name=ref.get("name", ""))


def _validate_binding(binding: Obj, old: Obj | None, namespaced: bool) -> list[Cause]:
    causes = validate_meta(binding, old, namespaced, name_is_path_segment)
    ref = binding.get("roleRef") or {}
    if ref.get("apiGroup", "") != GROUP_NAME:
        causes.append(not_supported("roleRef.apiGroup", ref.get("apiGroup", ""), (GROUP_NAME,)))
    kinds = ("Role", "ClusterRole") if namespaced else ("ClusterRole",)
    if ref.get("kind", "") not in kinds:
        causes.append(not_supported("roleRef.kind", ref.get("kind", ""), kinds))
    if not ref.get("name"):
        causes.append(required("roleRef.name"))
    else:
        causes += invalid_each("roleRef.name", ref["name"], name_is_path_segment(ref["name"], False))
    for i, subject in enumerate(binding.get("subjects") or []):
        causes += _validate_subject(subject, namespaced, f"subjects[{i}]")
    if old is not None and _role_ref(binding) != _role_ref(old):
        causes.append(invalid("roleRef", _role_ref(binding), "cannot change roleRef"))
    return causes


def validate_role_binding(binding: Obj, old: Obj | None) -> list[Cause]:
    return _validate_binding(binding, old, True)


def validate_cluster_role_binding(binding: Obj, old: Obj | None) -> list[Cause]:
    return _validate_binding(binding, old, False)


VALIDATORS = {
    "Role": validate_role,
    "ClusterRole": validate_cluster_role,
    "RoleBinding": validate_role_binding,
    "ClusterRoleBinding": validate_cluster_role_binding,
}
