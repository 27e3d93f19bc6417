"""Helpers shared by the node plugins: taint/toleration matching and score normalization.

``tolerates`` and ``find_untolerated_taint`` are core/v1's ``Toleration.ToleratesTaint`` and
``v1helper.FindMatchingUntoleratedTaint`` on plain JSON dicts (the taint manager and the
DaemonSet controller need the same rules); ``default_normalize_score`` and
``build_broken_linear_function`` are ``pkg/scheduler/framework/plugins/helper``'s.

Go's integer division truncates towards zero; Python's ``//`` floors. Where an operand can
be negative (a decreasing shape of RequestedToCapacityRatio) ``go_div`` keeps Go's answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from operator import attrgetter
from typing import Any

from k8py.scheduler.framework.interface import NodeScore

Obj = dict[str, Any]

_score_of = attrgetter("score")

NO_SCHEDULE = "NoSchedule"
NO_EXECUTE = "NoExecute"
PREFER_NO_SCHEDULE = "PreferNoSchedule"

TAINT_NODE_UNSCHEDULABLE = "node.kubernetes.io/unschedulable"


# -- taints and tolerations ----------------------------------------------------------------------


def tolerates(toleration: Mapping[str, Any], taint: Mapping[str, Any]) -> bool:
    """Toleration.ToleratesTaint: an empty effect matches every effect, an empty key with
    ``Exists`` every key; the operator defaults to ``Equal``; unknown operators match nothing."""
    effect = toleration.get("effect")
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key")
    if key and key != taint.get("key"):
        return False
    op = toleration.get("operator") or "Equal"
    if op == "Equal":
        return (toleration.get("value") or "") == (taint.get("value") or "")
    return op == "Exists"


def tolerations_tolerate_taint(
    tolerations: Iterable[Mapping[str, Any]] | None, taint: Mapping[str, Any]
) -> bool:
    """v1helper.TolerationsTolerateTaint: whether any of `tolerations` tolerates `taint`."""
    return any(tolerates(t, taint) for t in tolerations or ())


def do_not_schedule_taints_filter(taint: Mapping[str, Any]) -> bool:
    """helper.DoNotScheduleTaintsFilterFunc: the taints a pod must tolerate to be scheduled."""
    return taint.get("effect") in (NO_SCHEDULE, NO_EXECUTE)


def find_untolerated_taint(
    taints: Iterable[Mapping[str, Any]] | None,
    tolerations: Iterable[Mapping[str, Any]] | None,
    filter: Callable[[Mapping[str, Any]], bool] | None = None,
) -> Mapping[str, Any] | None:
    """v1helper.FindMatchingUntoleratedTaint: the first taint (among those `filter` keeps)
    that no toleration tolerates, or None."""
    tols = list(tolerations or ())
    for taint in taints or ():
        if filter is not None and not filter(taint):
            continue
        if not any(tolerates(t, taint) for t in tols):
            return taint
    return None


# Tolerations compiled once per pod for the filter/score loops: (key, exists, value, effect)
# with "" for the empty key/effect (which match anything).
CompiledToleration = tuple[str, bool, str, str]


def compile_tolerations(tolerations: Iterable[Mapping[str, Any]] | None) -> tuple[CompiledToleration, ...]:
    out = []
    for t in tolerations or ():
        op = t.get("operator") or "Equal"
        if op not in ("Equal", "Exists"):
            continue  # tolerates nothing
        out.append((t.get("key") or "", op == "Exists", t.get("value") or "", t.get("effect") or ""))
    return tuple(out)


def compiled_tolerate(tolerations: Sequence[CompiledToleration], taint: Mapping[str, Any]) -> bool:
    """tolerations_tolerate_taint over compiled tolerations."""
    tkey = taint.get("key")
    teffect = taint.get("effect")
    tvalue = None
    for key, exists, value, effect in tolerations:
        if effect and effect != teffect:
            continue
        if key and key != tkey:
            continue
        if exists:
            return True
        if tvalue is None:
            tvalue = taint.get("value") or ""
        if value == tvalue:
            return True
    return False


def taint_reason(taint: Mapping[str, Any]) -> str:
    return f"node(s) had untolerated taint {{{taint.get('key', '')}: {taint.get('value', '')}}}"


# -- scores --------------------------------------------------------------------------------------


def go_div(a: int, b: int) -> int:
    """Go's integer division (truncating towards zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def default_normalize_score(max_priority: int, reverse: bool, scores: Sequence[NodeScore]) -> None:
    """helper.DefaultNormalizeScore: scale scores to [0, max_priority] by the highest one,
    reversed (max - score) when `reverse`; all-zero scores become max_priority when reversed."""
    max_count = max(map(_score_of, scores), default=0)
    if max_count <= 0:
        if reverse:
            for ns in scores:
                ns.score = max_priority
        return None
    for ns in scores:
        s = ns.score
        s = max_priority * s // max_count if s >= 0 else go_div(max_priority * s, max_count)
        ns.score = max_priority - s if reverse else s
    return None


FunctionShape = Sequence[tuple[int, int]]  # (utilization, score), utilization increasing


def build_broken_linear_function(shape: FunctionShape) -> Callable[[int], int]:
    """helper.BuildBrokenLinearFunction: the piecewise-linear function through `shape`'s points,
    flat before the first and after the last."""
    points = [(int(u), int(s)) for u, s in shape]

    def f(p: int) -> int:
        for i, (u, s) in enumerate(points):
            if p <= u:
                if i == 0:
                    return points[0][1]
                pu, ps = points[i - 1]
                return ps + go_div((s - ps) * (p - pu), u - pu)
        return points[-1][1]

    return f
