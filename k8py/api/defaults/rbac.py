"""Defaulting of rbac.authorization.k8s.io/v1 (pkg/apis/rbac/v1/defaults.go)."""

from __future__ import annotations

from k8py.api.defaults.core import Obj, set_if_zero

GROUP_NAME = "rbac.authorization.k8s.io"


def default_binding(binding: Obj) -> None:
    """RoleBinding and ClusterRoleBinding: roleRef and User/Group subjects live in the RBAC group."""
    set_if_zero(binding.setdefault("roleRef", {}), "apiGroup", GROUP_NAME)
    for subject in binding.get("subjects") or []:
        if not subject.get("apiGroup"):
            subject["apiGroup"] = GROUP_NAME if subject.get("kind") in ("User", "Group") else ""


DEFAULTERS = {
    ("v1", "RoleBinding"): default_binding,
    ("v1", "ClusterRoleBinding"): default_binding,
}
