"""The checks per level and policy version, and a pod's evaluation (policy/registry.go, checks.go).

Each check has revisions from a minimum policy version on. At every version from v1.0 to the
newest a check names (v1.32), baseline runs the baseline checks in force and restricted runs the
restricted ones plus the baseline checks none of them overrides; both in the order of their IDs,
baseline first, so that messages are stable. Newer versions, and latest, evaluate as the newest.
"""

from __future__ import annotations

from dataclasses import dataclass

from k8py.apiserver.podsecurity import baseline, restricted
from k8py.apiserver.podsecurity.api import BASELINE, PRIVILEGED, RESTRICTED, LevelVersion
from k8py.apiserver.podsecurity.checks import CheckFn, Obj, Violation


@dataclass(frozen=True)
class Revision:
    minimum: int  # the first policy version (v1.<minimum>) it applies to
    check: CheckFn
    overrides: tuple[str, ...] = ()  # the baseline checks a restricted one supersedes


@dataclass(frozen=True)
class Check:
    id: str
    level: str
    revisions: tuple[Revision, ...]  # by increasing minimum


def _check(id: str, level: str, *revisions: Revision) -> Check:
    return Check(id, level, revisions)


CHECKS = (
    _check("appArmorProfile", BASELINE, Revision(0, baseline.app_armor_profile)),
    _check("capabilities_baseline", BASELINE, Revision(0, baseline.capabilities_baseline)),
    _check("hostNamespaces", BASELINE, Revision(0, baseline.host_namespaces)),
    _check("hostPathVolumes", BASELINE, Revision(0, baseline.host_path_volumes)),
    _check("hostPorts", BASELINE, Revision(0, baseline.host_ports)),
    _check("privileged", BASELINE, Revision(0, baseline.privileged)),
    _check("procMount", BASELINE, Revision(0, baseline.proc_mount)),
    _check(
        "seLinuxOptions",
        BASELINE,
        Revision(0, baseline.se_linux_options_1_0),
        Revision(31, baseline.se_linux_options_1_31),
    ),
    _check(
        "seccompProfile_baseline",
        BASELINE,
        Revision(0, baseline.seccomp_profile_baseline_1_0),
        Revision(19, baseline.seccomp_profile_baseline_1_19),
    ),
    _check(
        "sysctls",
        BASELINE,
        Revision(0, baseline.sysctls_1_0),
        Revision(27, baseline.sysctls_1_27),
        Revision(29, baseline.sysctls_1_29),
        Revision(32, baseline.sysctls_1_32),
    ),
    _check("windowsHostProcess", BASELINE, Revision(0, baseline.windows_host_process)),
    _check(
        "allowPrivilegeEscalation",
        RESTRICTED,
        Revision(8, restricted.allow_privilege_escalation_1_8),
        Revision(25, restricted.allow_privilege_escalation_1_25),
    ),
    _check(
        "capabilities_restricted",
        RESTRICTED,
        Revision(22, restricted.capabilities_restricted_1_22, ("capabilities_baseline",)),
        Revision(25, restricted.capabilities_restricted_1_25, ("capabilities_baseline",)),
    ),
    _check("restrictedVolumes", RESTRICTED, Revision(0, restricted.restricted_volumes, ("hostPathVolumes",))),
    _check("runAsNonRoot", RESTRICTED, Revision(0, restricted.run_as_non_root)),
    _check("runAsUser", RESTRICTED, Revision(23, restricted.run_as_user)),
    _check(
        "seccompProfile_restricted",
        RESTRICTED,
        Revision(19, restricted.seccomp_profile_restricted_1_19, ("seccompProfile_baseline",)),
        Revision(25, restricted.seccomp_profile_restricted_1_25, ("seccompProfile_baseline",)),
    ),
)

MAX_VERSION = max(c.revisions[-1].minimum for c in CHECKS)  # 32: the policy version of latest


def _revision(check: Check, minor: int) -> Revision | None:
    """The check's revision in force at v1.<minor>, if any."""
    return next((r for r in reversed(check.revisions) if r.minimum <= minor), None)


def _layout(minor: int) -> tuple[list[CheckFn], list[CheckFn]]:
    """The baseline and the restricted checks at v1.<minor>, in message order."""
    ordered = sorted((c for c in CHECKS if c.level == BASELINE), key=lambda c: c.id)
    ordered += sorted((c for c in CHECKS if c.level == RESTRICTED), key=lambda c: c.id)
    in_force = [(c, r) for c in ordered if (r := _revision(c, minor)) is not None]
    overridden = {o for c, r in in_force if c.level == RESTRICTED for o in r.overrides}
    return (
        [r.check for c, r in in_force if c.level == BASELINE],
        [r.check for c, r in in_force if c.level == RESTRICTED or c.id not in overridden],
    )


_CHECKS_BY_VERSION = {minor: _layout(minor) for minor in range(MAX_VERSION + 1)}


def evaluate(lv: LevelVersion, meta: Obj, spec: Obj) -> list[Violation]:
    """checkRegistry.EvaluatePod, keeping only refusals: a pod's (or template's) violations of a level."""
    if lv.level == PRIVILEGED:
        return []
    minor = MAX_VERSION if lv.version.minor is None else min(lv.version.minor, MAX_VERSION)
    baseline_checks, restricted_checks = _CHECKS_BY_VERSION[minor]
    checks = baseline_checks if lv.level == BASELINE else restricted_checks
    return [v for check in checks if (v := check(meta, spec)) is not None]


def forbidden_detail(violations: list[Violation]) -> str:
    """AggregateCheckResult.ForbiddenDetail: `reason (detail), reason, ...`."""
    return ", ".join(f"{v.reason} ({v.detail})" if v.detail else v.reason for v in violations)


def forbidden_reason(violations: list[Violation]) -> str:
    """AggregateCheckResult.ForbiddenReason: the reasons alone."""
    return ", ".join(v.reason for v in violations)
