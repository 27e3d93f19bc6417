"""Resource lists (corev1.ResourceList) and the arithmetic kube's quota and limit code does on them.

A resource list maps resource names to `Quantity`s. Sums keep the format of
the first non-zero operand, like `resource.Quantity.Add`, so results print the
way kube prints them ("500m", "1Gi"). Comparisons are exact on the decimal
values; `milli` is `Quantity.MilliValue()` (rounded up) for the places where
kube compares at milli precision.

`pod_requests` and `pod_limits` are component-helpers' PodRequests/PodLimits
on the spec: the sum over containers, raised to what any init container
needs (sidecars, i.e. restartable init containers, keep running and so add to
everything that starts after them), plus the pod overhead unless excluded.
The LimitRanger, ResourceQuota and (later) the scheduler share them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import ROUND_CEILING, Decimal
from typing import Any

from k8py.api.validation.quantity import Quantity, parse_quantity

ResourceList = dict[str, Quantity]
ZERO = Quantity(Decimal(0), "DecimalSI")


def parse_list(raw: Mapping[str, Any] | None) -> ResourceList:
    """A resource list from its JSON form; malformed quantities (rejected by validation) are skipped."""
    out: ResourceList = {}
    for name, text in (raw or {}).items():
        q = parse_quantity(text)
        if q is not None:
            out[name] = q
    return out


def count(n: int) -> Quantity:
    """resource.NewQuantity(n, DecimalSI)."""
    return Quantity(Decimal(n), "DecimalSI")


def add_quantity(a: Quantity, b: Quantity) -> Quantity:
    return Quantity(a.value + b.value, a.format if a.value else b.format)


def milli(q: Quantity) -> int:
    """Quantity.MilliValue(): the value in thousandths, rounded up."""
    return int((q.value * 1000).to_integral_value(rounding=ROUND_CEILING))


def add(a: ResourceList, b: ResourceList) -> ResourceList:
    """quota.Add: every key of either list, summed where both have it."""
    out = dict(a)
    for name, q in b.items():
        out[name] = add_quantity(out[name], q) if name in out else q
    return out


def subtract_non_negative(a: ResourceList, b: ResourceList) -> ResourceList:
    """quota.SubtractWithNonNegativeResult: a's keys, a - b floored at zero."""
    out: ResourceList = {}
    for name, q in a.items():
        value = q.value - b[name].value if name in b else q.value
        out[name] = Quantity(max(value, Decimal(0)), q.format)
    return out


def raise_to(a: ResourceList, b: ResourceList) -> None:
    """maxResourceList: raise each of a's entries to b's where b's is larger (adding b's missing keys)."""
    for name, q in b.items():
        if name not in a or q.value > a[name].value:
            a[name] = q


def mask(a: ResourceList, names: Iterable[str]) -> ResourceList:
    keep = set(names)
    return {k: v for k, v in a.items() if k in keep}


def exceeded(usage: ResourceList, hard: ResourceList) -> list[str]:
    """The names whose usage is above the hard limit (quota.LessThanOrEqual's failures), sorted."""
    return sorted(k for k, limit in hard.items() if k in usage and usage[k].value > limit.value)


def is_zero(a: ResourceList) -> bool:
    return all(q.value == 0 for q in a.values())


def pretty(a: ResourceList) -> str:
    """`name=quantity` pairs sorted by name, comma-separated (the quota plugin's prettyPrint)."""
    return ",".join(f"{k}={a[k]}" for k in sorted(a))


def _containers_aggregate(pod: Mapping[str, Any], field: str) -> ResourceList:
    spec = pod.get("spec") or {}
    total: ResourceList = {}
    for c in spec.get("containers") or []:
        total = add(total, parse_list((c.get("resources") or {}).get(field)))
    sidecars: ResourceList = {}
    init_peak: ResourceList = {}
    for c in spec.get("initContainers") or []:
        own = parse_list((c.get("resources") or {}).get(field))
        if c.get("restartPolicy") == "Always":
            total = add(total, own)
            sidecars = add(sidecars, own)
            need = sidecars
        else:
            need = add(own, sidecars)
        raise_to(init_peak, need)
    raise_to(total, init_peak)
    return total


def pod_requests(pod: Mapping[str, Any], *, overhead: bool = True) -> ResourceList:
    """What the pod requests; with `overhead`, spec.overhead is added."""
    reqs = _containers_aggregate(pod, "requests")
    if overhead:
        reqs = add(reqs, parse_list((pod.get("spec") or {}).get("overhead")))
    return reqs


def pod_limits(pod: Mapping[str, Any], *, overhead: bool = True) -> ResourceList:
    """The pod's limits; with `overhead`, spec.overhead is added to the limits that are set."""
    limits = _containers_aggregate(pod, "limits")
    if overhead:
        for name, q in parse_list((pod.get("spec") or {}).get("overhead")).items():
            if name in limits:
                limits[name] = add_quantity(limits[name], q)
    return limits
