"""The RBAC authorizer and rule resolver (plugin/pkg/auth/authorizer/rbac), read from the watch cache.

A request is allowed when a rule of a role bound to the user allows it: the
ClusterRoleBindings first, then the RoleBindings of the request's namespace
(a RoleBinding may reference a ClusterRole: its rules, in that namespace).
Otherwise RBAC has no opinion (the chain's next authorizer decides).

Bindings are indexed by subject (User name, Group name; a ServiceAccount
subject is its user `system:serviceaccount:<ns>:<name>`), kept current by a
watch-cache hook, so that a request looks at the bindings of its user and
groups only. A role's parsed rules are cached per stored object.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from k8py.api.registry import Registry, ResourceInfo
from k8py.apiserver.admission import UserInfo
from k8py.apiserver.authorization import Attributes, Decision, NonResourceRule, ResourceRule, Rules
from k8py.apiserver.rbac.rules import Rule, allows, parse
from k8py.apiserver.watchcache import WatchCache, WatchEvent

GROUP = "rbac.authorization.k8s.io"
Obj = dict[str, Any]


class RoleNotFound(LookupError):
    """A roleRef names a missing role: the listers' NotFound (`clusterrole.rbac.authorization.k8s.io "x" not found`)."""

    def __init__(self, singular: str, name: str) -> None:
        super().__init__(f'{singular}.{GROUP} "{name}" not found')
        self.singular = singular
        self.name = name


def subject_key(subject: Obj) -> str | None:
    """The index key of a binding's subject: `User:<name>` or `Group:<name>` (None: matches no one)."""
    kind, name = subject.get("kind"), subject.get("name", "")
    if kind == "ServiceAccount":
        namespace = subject.get("namespace") or ""
        return f"User:system:serviceaccount:{namespace}:{name}" if namespace else None
    if kind in ("User", "Group"):
        return f"{kind}:{name}"
    return None


def user_keys(user: UserInfo) -> list[str]:
    return [f"User:{user.name}", *(f"Group:{g}" for g in user.groups)]


def describe_subject(key: str) -> str:
    kind, name = key.split(":", 1)
    if kind == "User" and name.startswith("system:serviceaccount:"):
        ns, _, sa = name.removeprefix("system:serviceaccount:").partition(":")
        return f'ServiceAccount "{sa}/{ns}"'  # upstream's describeSubject: name/namespace
    return f'{kind} "{name}"'


class RBACAuthorizer:
    """Authorizer and RuleResolver over Roles, ClusterRoles and their bindings in the watch cache."""

    def __init__(self, cache: WatchCache, registry: Registry) -> None:
        self.cache = cache
        self.roles = self._info(registry, "roles")
        self.cluster_roles = self._info(registry, "clusterroles")
        self.role_bindings = self._info(registry, "rolebindings")
        self.cluster_role_bindings = self._info(registry, "clusterrolebindings")
        self._crb: dict[str, set[str]] = defaultdict(set)  # subject key -> ClusterRoleBinding keys
        self._rb: dict[tuple[str, str], set[str]] = defaultdict(set)  # (namespace, subject key) -> RoleBinding keys
        self._indexed: dict[str, list[tuple[dict[Any, set[str]], Any]]] = {}  # binding key -> its (index, key)s
        self._rules: dict[str, tuple[Obj, tuple[Rule, ...]]] = {}  # role key -> (stored object, parsed rules)
        self._started = False

    @staticmethod
    def _info(registry: Registry, resource: str) -> ResourceInfo:
        info = registry.get(GROUP, "v1", resource)
        assert info is not None, resource
        return info

    def start(self) -> None:
        """Index the cached bindings and follow the cache's events (synchronous: nothing slips between)."""
        if self._started:
            return
        self._started = True
        for info in (self.cluster_role_bindings, self.role_bindings):
            for obj in self.cache.list(info.prefix()):
                self._index(info, obj)
        self.cache.on_events.append(self._on_events)

    def _on_events(self, events: list[WatchEvent]) -> None:
        crb, rb = self.cluster_role_bindings.prefix(), self.role_bindings.prefix()
        roles, cluster_roles = self.roles.prefix(), self.cluster_roles.prefix()
        for ev in events:
            if ev.key.startswith(crb) or ev.key.startswith(rb):
                self._unindex(ev.key)
                if ev.type != "DELETED":
                    self._index(self.cluster_role_bindings if ev.key.startswith(crb) else self.role_bindings, ev.obj)
            elif ev.type == "DELETED" and (ev.key.startswith(roles) or ev.key.startswith(cluster_roles)):
                self._rules.pop(ev.key, None)

    def _index(self, info: ResourceInfo, obj: Obj) -> None:
        md = obj.get("metadata") or {}
        namespace = md.get("namespace", "") if info.namespaced else ""
        key = info.key(namespace, md.get("name", ""))
        entries: list[tuple[dict[Any, set[str]], Any]] = []
        for subject in obj.get("subjects") or ():
            skey = subject_key(subject)
            if skey is not None:
                entry: tuple[dict[Any, set[str]], Any] = (self._rb, (namespace, skey)) if info.namespaced else (self._crb, skey)
                entry[0][entry[1]].add(key)
                entries.append(entry)
        self._indexed[key] = entries

    def _unindex(self, key: str) -> None:
        for index, ikey in self._indexed.pop(key, ()):
            bucket = index.get(ikey)
            if bucket is not None:
                bucket.discard(key)
                if not bucket:
                    del index[ikey]

    # ---- resolution ----------------------------------------------------------------------------

    def role_ref_rules(self, role_ref: Obj, namespace: str) -> tuple[Rule, ...]:
        """GetRoleReferenceRules: the rules of a binding's roleRef; LookupError with kube's message when absent."""
        kind, name = role_ref.get("kind"), role_ref.get("name", "")
        if kind == "ClusterRole":
            key, singular = self.cluster_roles.key("", name), "clusterrole"
        elif kind == "Role":
            key, singular = self.roles.key(namespace, name), "role"
        else:
            raise LookupError(f"unsupported role reference kind: {kind!r}")
        obj = self.cache.get(key)
        if obj is None:
            raise RoleNotFound(singular, name)
        cached = self._rules.get(key)
        if cached is not None and cached[0] is obj:
            return cached[1]
        rules = parse(obj.get("rules"))
        self._rules[key] = (obj, rules)
        return rules

    def _bindings(self, user: UserInfo, namespace: str) -> Iterator[tuple[Obj, str, str]]:
        """(binding, its namespace, the subject key that matched) for `user`: cluster bindings, then the namespace's."""
        keys = user_keys(user)
        seen: set[str] = set()
        for skey in keys:
            for bkey in sorted(self._crb.get(skey, ())):
                obj = self.cache.get(bkey)
                if obj is not None and bkey not in seen:
                    seen.add(bkey)
                    yield obj, "", skey
        if namespace:
            for skey in keys:
                for bkey in sorted(self._rb.get((namespace, skey), ())):
                    obj = self.cache.get(bkey)
                    if obj is not None and bkey not in seen:
                        seen.add(bkey)
                        yield obj, namespace, skey

    def _visit(self, user: UserInfo, namespace: str) -> Iterator[tuple[Obj, str, tuple[Rule, ...] | str]]:
        """Each applicable binding with its rules, or the error resolving them."""
        for binding, ns, skey in self._bindings(user, namespace):
            try:
                yield binding, skey, self.role_ref_rules(binding.get("roleRef") or {}, ns)
            except LookupError as e:
                yield binding, skey, str(e)

    def authorize(self, user: UserInfo, attributes: Attributes) -> tuple[Decision, str]:
        errors_: list[str] = []
        for binding, skey, rules in self._visit(user, attributes.namespace):
            if isinstance(rules, str):
                errors_.append(rules)
                continue
            if any(allows(rule, attributes) for rule in rules):
                return Decision.ALLOW, f"RBAC: allowed by {_describe(binding, skey)}"
        if not errors_:
            return Decision.NO_OPINION, ""
        unique = list(dict.fromkeys(errors_))
        return Decision.NO_OPINION, "RBAC: " + (unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]")

    def user_rules(self, user: UserInfo, namespace: str) -> tuple[list[Rule], list[str]]:
        """RulesFor: every rule granted to `user` in `namespace` ("": cluster-wide only) and resolution errors."""
        rules: list[Rule] = []
        errors_: list[str] = []
        for _binding, _skey, found in self._visit(user, namespace):
            if isinstance(found, str):
                errors_.append(found)
            else:
                rules.extend(found)
        return rules, errors_

    def rules_for(self, user: UserInfo, namespace: str) -> Rules:
        rules, errors_ = self.user_rules(user, namespace)
        out = Rules(incomplete=bool(errors_), evaluation_error=", ".join(dict.fromkeys(errors_)))
        for rule in rules:
            converted = rule.to_review_rules()
            if isinstance(converted, NonResourceRule):
                out.non_resource_rules.append(converted)
            elif isinstance(converted, ResourceRule):
                out.resource_rules.append(converted)
        return out


def _describe(binding: Obj, skey: str) -> str:
    md = binding.get("metadata") or {}
    ref = binding.get("roleRef") or {}
    if md.get("namespace"):
        what = f'RoleBinding "{md.get("name")}/{md["namespace"]}"'
    else:
        what = f'ClusterRoleBinding "{md.get("name")}"'
    return f'{what} of {ref.get("kind")} "{ref.get("name")}" to {describe_subject(skey)}'
