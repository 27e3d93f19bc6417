"""Levels, policy versions and the namespace labels that select them (pod-security-admission/api)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from k8py.api import errors
from k8py.api.gofmt import go_quote

PRIVILEGED, BASELINE, RESTRICTED = "privileged", "baseline", "restricted"
LEVELS = (PRIVILEGED, BASELINE, RESTRICTED)  # least strict first

LABEL_PREFIX = "pod-security.kubernetes.io/"  # also the prefix of the audit annotations
MODES = ("enforce", "audit", "warn")

_VERSION = re.compile(r"v1\.(0|[1-9][0-9]*)")


@dataclass(frozen=True)
class Version:
    """A policy version: v1.<minor>, or latest (minor None), newer than any numbered version."""

    minor: int | None

    def __str__(self) -> str:
        return "latest" if self.minor is None else f"v1.{self.minor}"

    def older(self, other: Version) -> bool:
        if self.minor is None:
            return False
        return other.minor is None or self.minor < other.minor


LATEST = Version(None)


@dataclass(frozen=True)
class LevelVersion:
    level: str
    version: Version

    def __str__(self) -> str:
        return f"{self.level}:{self.version}"


@dataclass(frozen=True)
class Policy:
    enforce: LevelVersion
    audit: LevelVersion
    warn: LevelVersion

    def fully_privileged(self) -> bool:
        return self.enforce.level == self.audit.level == self.warn.level == PRIVILEGED


_PRIVILEGED_LATEST = LevelVersion(PRIVILEGED, LATEST)
DEFAULT_POLICY = Policy(
    _PRIVILEGED_LATEST, _PRIVILEGED_LATEST, _PRIVILEGED_LATEST
)  # nothing configured: no limits


def compare_levels(a: str, b: str) -> int:
    """-1, 0 or 1 as level `a` is less strict than, as strict as, or stricter than `b`."""
    return (LEVELS.index(a) > LEVELS.index(b)) - (LEVELS.index(a) < LEVELS.index(b))


def policy_to_evaluate(
    labels: dict[str, str] | None, defaults: Policy = DEFAULT_POLICY
) -> tuple[Policy, list[dict[str, str]]]:
    """api.PolicyToEvaluate: the namespace's policy and the causes of its invalid labels.

    An invalid level enforces restricted but audits and warns at privileged (audit and warn fail
    open); an invalid version is latest."""
    labels = labels or {}
    causes: list[dict[str, str]] = []
    modes = {"enforce": defaults.enforce, "audit": defaults.audit, "warn": defaults.warn}
    for mode, current in modes.items():
        level, version = current.level, current.version
        label = LABEL_PREFIX + mode
        if label in labels:
            value = labels[label]
            if value in LEVELS:
                level = value
            else:
                level = RESTRICTED if mode == "enforce" else PRIVILEGED
                causes.append(_invalid(label, value, "must be one of " + ", ".join(LEVELS)))
        if label + "-version" in labels:
            value = labels[label + "-version"]
            match = _VERSION.fullmatch(value)
            if match:
                version = Version(int(match.group(1)))
            else:
                version = LATEST
                if value != "latest":
                    causes.append(_invalid(label + "-version", value, 'must be "latest" or "v1.x"'))
        modes[mode] = LevelVersion(level, version)
    return Policy(**modes), causes


def _invalid(label: str, value: str, detail: str) -> dict[str, str]:
    return errors.cause(f"metadata.labels[{label}]", f"Invalid value: {go_quote(value)}: {detail}")
