"""Authorization: may this user do this? kube-apiserver's `authorizer.Authorizer` and its union.

A request is described by `Attributes` (authorizer.AttributesRecord without the
user): a verb on a resource (group, version, resource, subresource, namespace,
name) or on a non-resource path. An `Authorizer` answers ALLOW, DENY or
NO_OPINION with a reason. A `Chain` asks its authorizers in order, as kube's
union authorizer does for `--authorization-mode=Node,RBAC`: the first ALLOW or
DENY decides; when every one has no opinion the request is not allowed (the
API server answers 403 to anything but ALLOW).

A `RuleResolver` lists what a user may do in a namespace (the rules a
SelfSubjectRulesReview answers with, `kubectl auth can-i --list`); a chain
resolves the union of its members' rules.

The policy today is `AlwaysAllow` (kube's `--authorization-mode=AlwaysAllow`);
RBAC will take its place in the chain built by `default_authorizer`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Protocol

from k8py.api import errors
from k8py.apiserver.admission import UserInfo
from k8py.apiserver.requestinfo import RequestInfo


class Decision(enum.Enum):
    DENY = "Deny"
    ALLOW = "Allow"
    NO_OPINION = "NoOpinion"


@dataclass(frozen=True, slots=True)
class Attributes:
    """What a request does: a resource request, or `verb` on a non-resource `path`."""

    verb: str
    resource_request: bool = True
    namespace: str = ""
    api_group: str = ""
    api_version: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    path: str = ""


@dataclass(frozen=True, slots=True)
class ResourceRule:
    verbs: tuple[str, ...]
    api_groups: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    resource_names: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """authorization.k8s.io/v1 ResourceRule (empty lists omitted, as kube's omitempty does)."""
        out: dict[str, Any] = {"verbs": list(self.verbs)}
        for key, values in (("apiGroups", self.api_groups), ("resources", self.resources), ("resourceNames", self.resource_names)):
            if values:
                out[key] = list(values)
        return out


@dataclass(frozen=True, slots=True)
class NonResourceRule:
    verbs: tuple[str, ...]
    non_resource_urls: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"verbs": list(self.verbs)}
        if self.non_resource_urls:
            out["nonResourceURLs"] = list(self.non_resource_urls)
        return out


@dataclass
class Rules:
    """What a RuleResolver knows a user may do in a namespace."""

    resource_rules: list[ResourceRule] = field(default_factory=list)
    non_resource_rules: list[NonResourceRule] = field(default_factory=list)
    incomplete: bool = False  # some authorizer cannot enumerate its rules
    evaluation_error: str = ""


class Authorizer(Protocol):
    def authorize(self, user: UserInfo, attributes: Attributes) -> tuple[Decision, str]:
        """The decision on `attributes` for `user`, and a reason (shown to the user, may be "")."""
        ...


class RuleResolver(Protocol):
    def rules_for(self, user: UserInfo, namespace: str) -> Rules: ...


class AlwaysAllow:
    """Everyone may do everything: kube-apiserver's `--authorization-mode=AlwaysAllow`."""

    def authorize(self, user: UserInfo, attributes: Attributes) -> tuple[Decision, str]:
        return Decision.ALLOW, ""

    def rules_for(self, user: UserInfo, namespace: str) -> Rules:
        return Rules([ResourceRule(("*",), ("*",), ("*",))], [NonResourceRule(("*",), ("*",))])


class Chain:
    """kube's union authorizer and rule resolver: the first ALLOW or DENY wins."""

    def __init__(self, members: list[Any]) -> None:
        self.members = members  # each an Authorizer, and a RuleResolver when it can list rules

    def authorize(self, user: UserInfo, attributes: Attributes) -> tuple[Decision, str]:
        reasons = []
        for member in self.members:
            decision, reason = member.authorize(user, attributes)
            if decision is not Decision.NO_OPINION:
                return decision, reason
            if reason:
                reasons.append(reason)
        return Decision.NO_OPINION, "\n".join(reasons)

    def rules_for(self, user: UserInfo, namespace: str) -> Rules:
        out = Rules()
        errors_: list[str] = []
        for member in self.members:
            if not hasattr(member, "rules_for"):
                out.incomplete = True
                continue
            rules = member.rules_for(user, namespace)
            out.resource_rules += rules.resource_rules
            out.non_resource_rules += rules.non_resource_rules
            out.incomplete = out.incomplete or rules.incomplete
            if rules.evaluation_error:
                errors_.append(rules.evaluation_error)
        out.evaluation_error = ", ".join(errors_)
        return out


def default_authorizer() -> Chain:
    """The API server's authorizer: AlwaysAllow until RBAC (and the Node authorizer) exist."""
    return Chain([AlwaysAllow()])


def request_attributes(ri: RequestInfo, path: str) -> Attributes:
    """The attributes of a request as `requestinfo.parse` understood it."""
    if not ri.is_resource:
        return Attributes(verb=ri.verb, resource_request=False, path=path)
    return Attributes(
        verb=ri.verb,
        namespace=ri.namespace,
        api_group=ri.group,
        api_version=ri.version,
        resource=ri.resource,
        subresource=ri.subresource,
        name=ri.name,
    )


def forbidden(user: UserInfo, attributes: Attributes, reason: str) -> errors.StatusError:
    """403 with kube's message: `pods is forbidden: User "u" cannot list resource "pods" in API group "" ...`."""
    a = attributes
    if not a.resource_request:
        message = f'forbidden: User "{user.name}" cannot {a.verb} path "{a.path}"'
        details: dict[str, Any] = {}
    else:
        resource = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
        scope = f'in the namespace "{a.namespace}"' if a.namespace else "at the cluster scope"
        qualified = f"{a.resource}.{a.api_group}" if a.api_group else a.resource
        message = (
            f'{qualified} "{a.name}" is forbidden: ' if a.name else f"{qualified} is forbidden: "
        ) + f'User "{user.name}" cannot {a.verb} resource "{resource}" in API group "{a.api_group}" {scope}'
        details = {**({"name": a.name} if a.name else {}), **({"group": a.api_group} if a.api_group else {}), "kind": a.resource}
    if reason:
        message += f": {reason}"
    return errors.StatusError(403, "Forbidden", message, details=details)
