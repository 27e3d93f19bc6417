"""PolicyRules: matching a request (rbac.go's RuleAllows) and covering other rules (validation.Covers).

A `Rule` is an rbac.authorization.k8s.io/v1 PolicyRule as tuples. Matching is
kube's: "*" matches any verb, API group and resource; a resource "*/scale"
matches the scale subresource of any resource; an empty resourceNames list
matches any name; a nonResourceURL ending in "*" matches every path under its
prefix.

`covers` answers escalation checks: the requested rules are broken down into
one verb on one resource (and name) or one URL each, and every piece must be
held by some rule of the requester (kube's BreakdownRule/ruleCovers), missing
pieces compacted into one rule per resource for the Forbidden message.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from k8py.apiserver.authorization import Attributes, NonResourceRule, ResourceRule

ALL = "*"


@dataclass(frozen=True, slots=True)
class Rule:
    verbs: tuple[str, ...]
    api_groups: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    resource_names: tuple[str, ...] = ()
    non_resource_urls: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, rule: dict[str, Any]) -> Rule:
        return cls(
            tuple(rule.get("verbs") or ()),
            tuple(rule.get("apiGroups") or ()),
            tuple(rule.get("resources") or ()),
            tuple(rule.get("resourceNames") or ()),
            tuple(rule.get("nonResourceURLs") or ()),
        )

    def to_json(self) -> dict[str, Any]:
        """The PolicyRule (empty lists omitted, as kube's omitempty; verbs always)."""
        out: dict[str, Any] = {}
        for key, values in (
            ("apiGroups", self.api_groups),
            ("resources", self.resources),
            ("resourceNames", self.resource_names),
            ("nonResourceURLs", self.non_resource_urls),
        ):
            if values:
                out[key] = list(values)
        out["verbs"] = list(self.verbs)
        return out

    def compact_string(self) -> str:
        """rbacv1helpers.CompactString: `{APIGroups:["apps"], Resources:["deployments"], Verbs:["get"]}`."""
        parts = [
            f"{label}:[{' '.join(_quote(v) for v in values)}]"
            for label, values in (
                ("APIGroups", self.api_groups),
                ("Resources", self.resources),
                ("NonResourceURLs", self.non_resource_urls),
                ("ResourceNames", self.resource_names),
                ("Verbs", self.verbs),
            )
            if values
        ]
        return "{" + ", ".join(parts) + "}"

    def to_review_rules(self) -> ResourceRule | NonResourceRule:
        """The SelfSubjectRulesReview form of this rule."""
        if self.non_resource_urls:
            return NonResourceRule(self.verbs, self.non_resource_urls)
        return ResourceRule(self.verbs, self.api_groups, self.resources, self.resource_names)


def _quote(value: str) -> str:
    """Go's %q of a string (the ASCII cases RBAC names use)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_list(values: Iterable[str]) -> str:
    """Go's %q of a []string: `["a" "b"]`."""
    return "[" + " ".join(_quote(v) for v in values) + "]"


def parse(rules: Iterable[dict[str, Any]] | None) -> tuple[Rule, ...]:
    return tuple(Rule.from_json(r) for r in rules or ())


def allows(rule: Rule, a: Attributes) -> bool:
    """rbac.RuleAllows: does `rule` grant the request?"""
    if ALL not in rule.verbs and a.verb not in rule.verbs:
        return False
    if not a.resource_request:
        return any(_url_matches(url, a.path) for url in rule.non_resource_urls)
    if ALL not in rule.api_groups and a.api_group not in rule.api_groups:
        return False
    if not _resource_matches(rule.resources, a.resource, a.subresource):
        return False
    return not rule.resource_names or a.name in rule.resource_names


def _resource_matches(resources: tuple[str, ...], resource: str, subresource: str) -> bool:
    combined = f"{resource}/{subresource}" if subresource else resource
    for r in resources:
        if r == ALL or r == combined:
            return True
        if subresource and r == "*/" + subresource:
            return True
    return False


def _url_matches(pattern: str, path: str) -> bool:
    if pattern == ALL or pattern == path:
        return True
    return pattern.endswith("*") and path.startswith(pattern[:-1])


# ---- escalation: does one set of rules cover another? ---------------------------------------------


def _breakdown(rule: Rule) -> Iterable[Rule]:
    """One verb on one group/resource (/name), or one verb on one URL, per piece of `rule`."""
    for group in rule.api_groups:
        for resource in rule.resources:
            for verb in rule.verbs:
                if rule.resource_names:
                    for name in rule.resource_names:
                        yield Rule((verb,), (group,), (resource,), (name,))
                else:
                    yield Rule((verb,), (group,), (resource,))
    for url in rule.non_resource_urls:
        for verb in rule.verbs:
            yield Rule((verb,), non_resource_urls=(url,))


def _has_all(owner: tuple[str, ...], wanted: tuple[str, ...]) -> bool:
    return all(w in owner for w in wanted)


def _resources_cover(owner: tuple[str, ...], wanted: tuple[str, ...]) -> bool:
    if ALL in owner:
        return True
    for path in wanted:
        if path in owner:
            continue
        if "/" not in path or "*/" + path.split("/", 1)[1] not in owner:
            return False
    return True


def _urls_cover(owner: tuple[str, ...], wanted: tuple[str, ...]) -> bool:
    return all(any(_url_matches(o, w) for o in owner) for w in wanted)


def rule_covers(owner: Rule, sub: Rule) -> bool:
    """kube's ruleCovers: `owner` grants everything `sub` (one broken-down piece) does."""
    if sub.resource_names:
        names = not owner.resource_names or _has_all(owner.resource_names, sub.resource_names)
    else:
        names = not owner.resource_names
    return (
        (ALL in owner.verbs or _has_all(owner.verbs, sub.verbs))
        and (ALL in owner.api_groups or _has_all(owner.api_groups, sub.api_groups))
        and _resources_cover(owner.resources, sub.resources)
        and _urls_cover(owner.non_resource_urls, sub.non_resource_urls)
        and names
    )


def covers(owner: Iterable[Rule], requested: Iterable[Rule]) -> list[Rule]:
    """The pieces of `requested` no rule of `owner` covers, compacted (empty: fully covered)."""
    held = list(owner)
    missing = [piece for rule in requested for piece in _breakdown(rule) if not any(rule_covers(o, piece) for o in held)]
    return compact(missing)


def compact(rules: list[Rule]) -> list[Rule]:
    """kube's CompactRules: simple resource rules on the same group/resource/name merged, verbs joined."""
    merged: dict[tuple[Any, ...], list[str]] = {}
    out: list[Rule | tuple[Any, ...]] = []
    for r in rules:
        if r.non_resource_urls or len(r.api_groups) != 1 or len(r.resources) != 1 or len(r.resource_names) > 1:
            out.append(r)
            continue
        key = (r.api_groups, r.resources, r.resource_names)
        if key not in merged:
            merged[key] = []
            out.append(key)
        merged[key] += [v for v in r.verbs if v not in merged[key]]
    return [x if isinstance(x, Rule) else Rule(tuple(merged[x]), *x) for x in out]
