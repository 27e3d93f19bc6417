"""What every check shares: its result, the containers it visits, and the wording of its details."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]


@dataclass(frozen=True)
class Violation:
    """A check's refusal: the short reason (always shown) and the detail (shown for a single object)."""

    reason: str
    detail: str = ""


# A check reads the pod's (or template's) metadata and spec; None when it allows them.
CheckFn = Callable[[Obj, Obj], Violation | None]


def containers(spec: Obj) -> Iterator[Obj]:
    """visitContainers: init containers, containers, then ephemeral containers."""
    for key in ("initContainers", "containers", "ephemeralContainers"):
        yield from spec.get(key) or []


def security_context(obj: Obj) -> Obj:
    """A container's or pod spec's securityContext ({} when unset)."""
    return obj.get("securityContext") or {}


def join_quote(items: list[str]) -> str:
    return '"' + '", "'.join(items) + '"' if items else ""


def pluralize(singular: str, plural: str, count: int) -> str:
    return singular if count == 1 else plural


def named(noun: str, names: list[str]) -> str:
    """`container "a"` / `containers "a", "b"`."""
    return f"{pluralize(noun, noun + 's', len(names))} {join_quote(names)}"


def setters(pod: bool, bad_containers: list[str]) -> list[str]:
    """What set a forbidden value: "pod" and/or the containers, as the details name them."""
    return (["pod"] if pod else []) + ([named("container", bad_containers)] if bad_containers else [])


@dataclass
class FieldUse:
    """How the pod and its containers set one securityContext field."""

    pod_forbidden: bool = False  # the pod sets a forbidden value
    pod_allowed: bool = False  # the pod sets an allowed value (containers leaving it unset inherit it)
    forbidden: list[str] = field(default_factory=list)  # containers setting a forbidden value
    unset: list[str] = field(default_factory=list)  # containers leaving it unset
    values: set[str] = field(default_factory=set)  # the forbidden values, as the details show them

    def setters(self) -> list[str]:
        return setters(self.pod_forbidden, self.forbidden)


def field_use(
    spec: Obj, key: str, allowed: Callable[[Any], bool], shown: Callable[[Any], str] = str
) -> FieldUse:
    """Who sets securityContext.<key> to what, of the pod spec and each container."""
    use = FieldUse()
    value = security_context(spec).get(key)
    if value is not None:
        use.pod_allowed = allowed(value)
        use.pod_forbidden = not use.pod_allowed
        if use.pod_forbidden:
            use.values.add(shown(value))
    for c in containers(spec):
        value = security_context(c).get(key)
        if value is None:
            use.unset.append(c.get("name", ""))
        elif not allowed(value):
            use.forbidden.append(c.get("name", ""))
            use.values.add(shown(value))
    return use


def profile_type(profile: Obj) -> str:
    """A seccomp or AppArmor profile as the details show it: its type."""
    return str(profile.get("type") or "")


def is_windows(spec: Obj) -> bool:
    """spec.os.name is windows: pod validation forbids the Linux-only fields these pods would need."""
    return (spec.get("os") or {}).get("name") == "windows"
