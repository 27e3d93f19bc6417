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

`build_authorizer` makes the chain of kube's `--authorization-mode` list
(`AUTHORIZATION_MODES`: mode name -> factory taking the API server);
`AlwaysAllow` is the default.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
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


class AlwaysDeny:
    """`--authorization-mode=AlwaysDeny`: no opinion on anything (so nothing is allowed)."""

    def authorize(self, user: UserInfo, attributes: Attributes) -> tuple[Decision, str]:
        return Decision.NO_OPINION, "Everything is forbidden."

    def rules_for(self, user: UserInfo, namespace: str) -> Rules:
        return Rules()


def _node_authorizer(server: Any) -> Any:
    from k8py.apiserver.nodeauthorizer import NodeAuthorizer, NodeGraph  # it imports this module

    return NodeAuthorizer(NodeGraph(server.cache, server.registry))


# --authorization-mode names -> factory(api server) -> that mode's authorizer (and rule resolver)
AUTHORIZATION_MODES: dict[str, Callable[[Any], Any]] = {
    "AlwaysAllow": lambda server: AlwaysAllow(),
    "AlwaysDeny": lambda server: AlwaysDeny(),
    "RBAC": lambda server: server.rbac,
    "Node": _node_authorizer,
}


def parse_modes(value: str | Sequence[str]) -> tuple[str, ...]:
    """The modes of `--authorization-mode` ("Node,RBAC"); ValueError with kube's messages when invalid."""
    modes = tuple(m.strip() for m in value.split(",")) if isinstance(value, str) else tuple(value)
    if not modes or modes == ("",):
        raise ValueError("at least one authorization-mode must be passed")
    for mode in modes:
        if mode not in AUTHORIZATION_MODES:
            raise ValueError(f"authorization-mode {mode!r} is not a valid mode (one of {', '.join(AUTHORIZATION_MODES)})")
        if modes.count(mode) > 1:
            raise ValueError(f"authorization-mode {mode!r} has mode specified more than once")
    return modes


def build_authorizer(modes: Sequence[str], server: Any) -> Chain:
    """The union of the modes' authorizers, in the order given (kube's `--authorization-mode`)."""
    return Chain([AUTHORIZATION_MODES[mode](server) for mode in parse_modes(modes)])


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
