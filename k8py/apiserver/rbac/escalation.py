"""Privilege-escalation prevention for RBAC writes (pkg/registry/rbac/*/policybased).

Creating or updating a Role or ClusterRole needs every permission it grants
(in the role's namespace; cluster-wide for ClusterRoles), or the `escalate`
verb on it; setting or changing a ClusterRole's aggregationRule needs full
authority. Creating or updating a RoleBinding or ClusterRoleBinding needs the
permissions of the role it references (in the binding's namespace), or the
`bind` verb on that role. Members of system:masters are never checked, nor are
updates that only touch what the garbage collector changes (ownerReferences,
finalizers). A refusal is 403 Forbidden naming the object, with kube's
"is attempting to grant RBAC permissions not currently held" message.

Runs in the admission chain's validating phase, on the object about to be stored.
"""

from __future__ import annotations

from typing import Any

from k8py.api import errors
from k8py.apiserver.admission import Attributes as AdmissionAttributes
from k8py.apiserver.admission import UserInfo, forbidden
from k8py.apiserver.authorization import Attributes, Authorizer, Decision
from k8py.apiserver.rbac.authorizer import GROUP, RBACAuthorizer, RoleNotFound
from k8py.apiserver.rbac.rules import Rule, covers, parse, quote_list

Obj = dict[str, Any]
MASTERS = "system:masters"
FULL_AUTHORITY = (Rule(("*",), ("*",), ("*",)), Rule(("*",), non_resource_urls=("*",)))
GC_FIELDS = ("ownerReferences", "finalizers", "managedFields", "resourceVersion", "selfLink", "generation")


def only_gc_fields(new: Obj | None, old: Obj | None) -> bool:
    """rbacregistry.IsOnlyMutatingGCFields: equal but for the fields the garbage collector writes."""
    if new is None or old is None:
        return False

    def strip(obj: Obj) -> Obj:
        md = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in GC_FIELDS and v not in (None, {}, [])}
        return {**{k: v for k, v in obj.items() if k != "metadata" and v not in (None, {}, [])}, "metadata": md}

    return strip(new) == strip(old)


class EscalationCheck:
    """The policybased stores' checks, as a validating admission step for the four RBAC resources."""

    name = "RBACEscalation"

    def __init__(self, authorizer: Authorizer, rbac: RBACAuthorizer) -> None:
        self.authorizer = authorizer
        self.rbac = rbac

    def validate(self, attrs: AdmissionAttributes) -> None:
        info = attrs.info
        if info.group != GROUP or attrs.operation not in ("CREATE", "UPDATE") or attrs.subresource or attrs.obj is None:
            return
        if info.resource not in ("roles", "clusterroles", "rolebindings", "clusterrolebindings"):
            return
        if MASTERS in attrs.user.groups:
            return
        if attrs.operation == "UPDATE" and only_gc_fields(attrs.obj, attrs.old):
            return
        if info.resource in ("roles", "clusterroles"):
            self._check_role(attrs)
        else:
            self._check_binding(attrs)

    def _allowed(self, user: UserInfo, verb: str, resource: str, namespace: str, name: str) -> bool:
        a = Attributes(verb=verb, namespace=namespace, api_group=GROUP, api_version="*", resource=resource, name=name)
        return self.authorizer.authorize(user, a)[0] is Decision.ALLOW

    def _check_role(self, attrs: AdmissionAttributes) -> None:
        # upstream checks the request's name: none on a create (POST to the collection)
        name = attrs.name if attrs.operation == "UPDATE" else ""
        if self._allowed(attrs.user, "escalate", attrs.info.resource, attrs.namespace, name):
            return
        assert attrs.obj is not None
        self._confirm(attrs, parse(attrs.obj.get("rules")))
        if attrs.info.resource != "clusterroles":
            return
        new_rule = attrs.obj.get("aggregationRule")
        old_rule = (attrs.old or {}).get("aggregationRule")
        if (new_rule or old_rule) and (attrs.operation == "CREATE" or new_rule != old_rule):
            if self._missing(attrs.user, "", FULL_AUTHORITY)[0]:
                raise forbidden(attrs, "must have cluster-admin privileges to use the aggregationRule")

    def _check_binding(self, attrs: AdmissionAttributes) -> None:
        assert attrs.obj is not None
        ref = attrs.obj.get("roleRef") or {}
        resource = "clusterroles" if ref.get("kind") == "ClusterRole" else "roles"
        if self._allowed(attrs.user, "bind", resource, attrs.namespace, ref.get("name", "")):
            return
        try:
            rules = self.rbac.role_ref_rules(ref, attrs.namespace)
        except RoleNotFound as e:
            raise errors.not_found(GROUP, e.singular, e.name) from None
        except LookupError as e:
            raise forbidden(attrs, str(e)) from None
        self._confirm(attrs, rules)

    def _missing(self, user: UserInfo, namespace: str, rules: tuple[Rule, ...]) -> tuple[list[Rule], list[str]]:
        held, resolution_errors = self.rbac.user_rules(user, namespace)
        return covers(held, rules), resolution_errors

    def _confirm(self, attrs: AdmissionAttributes, rules: tuple[Rule, ...]) -> None:
        """ConfirmNoEscalation: the user holds every rule (in the request's namespace)."""
        missing, resolution_errors = self._missing(attrs.user, attrs.namespace, rules)
        if not missing:
            return
        user = attrs.user
        descriptions = sorted(set(m.compact_string() for m in missing))
        msg = (
            f'user "{user.name}" (groups={quote_list(user.groups)}) is attempting to grant RBAC permissions '
            "not currently held:\n" + "\n".join(descriptions)
        )
        if resolution_errors:
            msg += f"; resolution errors: [{' '.join(resolution_errors)}]"
        raise forbidden(attrs, msg)
