"""Durations for humans, as k8s.io/apimachinery/pkg/util/duration formats them.

`human_duration` is what the API server's table printers put in AGE and
similar columns ("45s", "3m2s", "2d3h", "4y12d"): about two significant
figures, more precision while the duration is short. `short_human_duration`
is the older one-unit form ("3m", "2d") that some kubectl commands still use.
Both accept a clock skew of under two seconds as "0s" and call anything
further in the future "<invalid>".
"""

from __future__ import annotations

import math

_DAY_HOURS = 24
_YEAR_DAYS = 365


def _whole_seconds(seconds: float) -> int | None:
    """Go's int(d.Seconds()), or None for a duration too far in the future to show."""
    whole = math.trunc(seconds)
    if whole < -1:
        return None
    return max(whole, 0)


def human_duration(seconds: float) -> str:
    """duration.HumanDuration."""
    s = _whole_seconds(seconds)
    if s is None:
        return "<invalid>"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rest = s % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // _DAY_HOURS
    if hours < _DAY_HOURS * 8:
        rest = hours % _DAY_HOURS
        return f"{days}d{rest}h" if rest else f"{days}d"
    if hours < _DAY_HOURS * _YEAR_DAYS * 2:
        return f"{days}d"
    years = days // _YEAR_DAYS
    if hours < _DAY_HOURS * _YEAR_DAYS * 8:
        rest = days % _YEAR_DAYS
        return f"{years}y{rest}d" if rest else f"{years}y"
    return f"{years}y"


def short_human_duration(seconds: float) -> str:
    """duration.ShortHumanDuration."""
    s = _whole_seconds(seconds)
    if s is None:
        return "<invalid>"
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    hours = s // 3600
    if hours < _DAY_HOURS:
        return f"{hours}h"
    if hours < _DAY_HOURS * _YEAR_DAYS:
        return f"{hours // _DAY_HOURS}d"
    return f"{hours // _DAY_HOURS // _YEAR_DAYS}y"
