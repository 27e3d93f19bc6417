"""Cron schedules as the CronJob controller reads them: robfig/cron v3's ``ParseStandard`` and
``Schedule.Next``, which kube-controller-manager uses.

A standard schedule has five fields (minute, hour, day of month, month, day of week) with
``*``/``?``, lists, ranges, steps and month/weekday names, or one of the descriptors
``@yearly``/``@annually``, ``@monthly``, ``@weekly``, ``@daily``/``@midnight``, ``@hourly`` and
``@every <duration>``; an optional ``TZ=<zone>`` or ``CRON_TZ=<zone>`` prefix names its time zone
(the controller builds that prefix from ``spec.timeZone``). Each field is a bit set, with a
"star" bit when the field was ``*`` or ``?``: as in cron, when both day fields are restricted a
day matches if *either* does.

``SpecSchedule.next`` walks the fields as robfig does, in the schedule's zone, with *absolute*
time arithmetic (Go's ``Time.Add``): across a spring-forward gap a wall-clock time that does not
exist is skipped, and across a fall-back overlap a time that happens twice fires twice. Python's
``datetime + timedelta`` is wall-clock arithmetic, so every step goes through UTC (``_add``).
Errors carry robfig's messages, which kube puts into events.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import zoneinfo
from dataclasses import dataclass
from typing import Protocol

UTC = dt.UTC

STAR_BIT = 1 << 63


@dataclass(frozen=True)
class _Bounds:
    low: int
    high: int
    names: dict[str, int]


_MINUTES = _Bounds(0, 59, {})
_HOURS = _Bounds(0, 23, {})
_DOM = _Bounds(1, 31, {})
_MONTHS = _Bounds(
    1, 12, {m: i + 1 for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split())}
)
_DOW = _Bounds(0, 6, {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())})


class Schedule(Protocol):
    def next(self, t: dt.datetime) -> dt.datetime | None:
        """The first activation strictly after `t` (an aware datetime), or None if there is none."""
        ...


def local_zone() -> dt.tzinfo:
    """The controller manager's local zone (Go's time.Local): $TZ, else /etc/localtime, else UTC."""
    name = os.environ.get("TZ", "").lstrip(":")
    try:
        if name:
            return zoneinfo.ZoneInfo(name)
        with open("/etc/localtime", "rb") as f:
            return zoneinfo.ZoneInfo.from_file(f, key="Local")
    except (OSError, ValueError, zoneinfo.ZoneInfoNotFoundError):
        return UTC


def load_location(name: str) -> dt.tzinfo:
    """time.LoadLocation: "" and "UTC" are UTC, "Local" the local zone; ValueError otherwise."""
    if name in ("", "UTC"):
        return UTC
    if name == "Local":
        return local_zone()
    try:
        return zoneinfo.ZoneInfo(name)
    except (ValueError, zoneinfo.ZoneInfoNotFoundError):
        raise ValueError(f"unknown time zone {name}") from None


# -- absolute time arithmetic in a zone ----------------------------------------------------------


def _add(t: dt.datetime, seconds: float) -> dt.datetime:
    """Go's t.Add: elapsed time, not wall-clock time."""
    tz = t.tzinfo
    return (t.astimezone(UTC) + dt.timedelta(seconds=seconds)).astimezone(tz)


def _date(year: int, month: int, day: int, hour: int, tz: dt.tzinfo) -> dt.datetime:
    """Go's time.Date (minutes and seconds zero), normalising month and day overflow; a wall-clock
    time in a gap resolves to the time as if the earlier offset still applied."""
    year += (month - 1) // 12
    month = (month - 1) % 12 + 1
    base = dt.datetime(year, month, 1) + dt.timedelta(days=day - 1, hours=hour)
    return base.replace(tzinfo=tz).astimezone(UTC).astimezone(tz)


# -- schedules -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpecSchedule:
    """A five-field schedule (seconds always 0) in a zone (None: the local zone of `now`)."""

    minute: int
    hour: int
    dom: int
    month: int
    dow: int
    location: dt.tzinfo | None = None

    def next(self, t: dt.datetime) -> dt.datetime | None:
        orig_tz = t.tzinfo
        tz = self.location or orig_tz or UTC
        t = t.astimezone(tz)
        # the earliest possible time: the next whole second
        t = _add(t, 1 - t.microsecond / 1e6)
        added = False
        year_limit = t.year + 5
        while True:  # robfig's WRAP label
            if t.year > year_limit:
                return None
            wrapped = False
            while not (1 << t.month) & self.month:
                if not added:
                    added = True
                    t = _date(t.year, t.month, 1, 0, tz)
                t = _date(t.year, t.month + 1, t.day, t.hour, tz)
                if t.month == 1:
                    wrapped = True
                    break
            if wrapped:
                continue
            while not self._day_matches(t):
                if not added:
                    added = True
                    t = _date(t.year, t.month, t.day, 0, tz)
                t = _date(t.year, t.month, t.day + 1, t.hour, tz)
                # midnight may not exist (a DST change at midnight): get back to the day's start
                if t.hour != 0:
                    t = _add(t, 3600 * (24 - t.hour) if t.hour > 12 else -3600 * t.hour)
                if t.day == 1:
                    wrapped = True
                    break
            if wrapped:
                continue
            while not (1 << t.hour) & self.hour:
                if not added:
                    added = True
                    t = _date(t.year, t.month, t.day, t.hour, tz)
                t = _add(t, 3600)
                if t.hour == 0:
                    wrapped = True
                    break
            if wrapped:
                continue
            while not (1 << t.minute) & self.minute:
                if not added:
                    added = True
                    t = t.replace(second=0, microsecond=0)
                t = _add(t, 60)
                if t.minute == 0:
                    wrapped = True
                    break
            if wrapped:
                continue
            if t.second != 0:  # the seconds field is always "0"
                if not added:
                    added = True
                    t = t.replace(microsecond=0)
                t = _add(t, 60 - t.second)
                continue  # t.Second() wrapped to 0: robfig goes back to WRAP
            return t.astimezone(orig_tz) if orig_tz is not None else t

    def _day_matches(self, t: dt.datetime) -> bool:
        dom_match = bool((1 << t.day) & self.dom)
        dow_match = bool((1 << ((t.weekday() + 1) % 7)) & self.dow)
        if self.dom & STAR_BIT or self.dow & STAR_BIT:
            return dom_match and dow_match
        return dom_match or dow_match


@dataclass(frozen=True)
class ConstantDelaySchedule:
    """``@every <duration>``: fires every `delay` seconds (whole seconds, at least one)."""

    delay: int

    def next(self, t: dt.datetime) -> dt.datetime | None:
        return _add(t, self.delay - t.microsecond / 1e6)


# -- parsing -----------------------------------------------------------------------------------


def _bits(low: int, high: int, step: int) -> int:
    if step == 1:
        return ~(~0 << (high + 1)) & (~0 << low)
    bits = 0
    for i in range(low, high + 1, step):
        bits |= 1 << i
    return bits


def _all(b: _Bounds) -> int:
    return _bits(b.low, b.high, 1) | STAR_BIT


def _must_parse_int(text: str) -> int:
    if re.fullmatch(r"[+-]?[0-9]+", text) is None:
        raise ValueError(f'failed to parse int from {text}: strconv.Atoi: parsing "{text}": invalid syntax')
    number = int(text)
    if number < 0:
        raise ValueError(f"negative number ({number}) not allowed: {text}")
    return number


def _parse_int_or_name(text: str, names: dict[str, int]) -> int:
    if names and text.lower() in names:
        return names[text.lower()]
    return _must_parse_int(text)


def _get_range(expr: str, b: _Bounds) -> int:
    range_and_step = expr.split("/")
    low_and_high = range_and_step[0].split("-")
    single = len(low_and_high) == 1
    extra = 0
    if low_and_high[0] in ("*", "?"):
        start, end, extra = b.low, b.high, STAR_BIT
    else:
        start = _parse_int_or_name(low_and_high[0], b.names)
        if len(low_and_high) == 1:
            end = start
        elif len(low_and_high) == 2:
            end = _parse_int_or_name(low_and_high[1], b.names)
        else:
            raise ValueError(f"too many hyphens: {expr}")
    if len(range_and_step) == 1:
        step = 1
    elif len(range_and_step) == 2:
        step = _must_parse_int(range_and_step[1])
        if single:  # "N/step" means "N-max/step"
            end = b.high
        if step > 1:
            extra = 0
    else:
        raise ValueError(f"too many slashes: {expr}")
    if start < b.low:
        raise ValueError(f"beginning of range ({start}) below minimum ({b.low}): {expr}")
    if end > b.high:
        raise ValueError(f"end of range ({end}) above maximum ({b.high}): {expr}")
    if start > end:
        raise ValueError(f"beginning of range ({start}) beyond end of range ({end}): {expr}")
    if step == 0:
        raise ValueError(f"step of range should be a positive number: {expr}")
    return _bits(start, end, step) | extra


def _get_field(field: str, b: _Bounds) -> int:
    bits = 0
    for expr in (part for part in field.split(",") if part):
        bits |= _get_range(expr, b)
    return bits


_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: str) -> float:
    """Go's time.ParseDuration, in seconds."""
    s = text
    sign = 1.0
    if s[:1] in ("-", "+"):
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if s == "0":
        return 0.0
    if not s:
        raise ValueError(f'time: invalid duration "{text}"')
    total = 0.0
    pos = 0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if m is None or m.group(1) in ("", "."):
            if m is None and re.match(r"[0-9.]+$", s[pos:]):
                raise ValueError(f'time: missing unit in duration "{text}"')
            if m is None and re.match(r"[0-9.]+", s[pos:]):
                unit = re.sub(r"^[0-9.]+", "", s[pos:])
                raise ValueError(f'time: unknown unit "{unit}" in duration "{text}"')
            raise ValueError(f'time: invalid duration "{text}"')
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    return sign * total


def _parse_descriptor(descriptor: str, loc: dt.tzinfo | None) -> Schedule:
    one = {"minute": 1 << 0, "hour": 1 << 0, "dom": 1 << 1, "month": 1 << 1, "dow": 1 << 0}
    if descriptor in ("@yearly", "@annually"):
        return SpecSchedule(one["minute"], one["hour"], one["dom"], one["month"], _all(_DOW), loc)
    if descriptor == "@monthly":
        return SpecSchedule(one["minute"], one["hour"], one["dom"], _all(_MONTHS), _all(_DOW), loc)
    if descriptor == "@weekly":
        return SpecSchedule(one["minute"], one["hour"], _all(_DOM), _all(_MONTHS), one["dow"], loc)
    if descriptor in ("@daily", "@midnight"):
        return SpecSchedule(one["minute"], one["hour"], _all(_DOM), _all(_MONTHS), _all(_DOW), loc)
    if descriptor == "@hourly":
        return SpecSchedule(one["minute"], _all(_HOURS), _all(_DOM), _all(_MONTHS), _all(_DOW), loc)
    every = "@every "
    if descriptor.startswith(every):
        try:
            seconds = parse_duration(descriptor[len(every) :])
        except ValueError as e:
            raise ValueError(f"failed to parse duration {descriptor}: {e}") from None
        return ConstantDelaySchedule(max(1, int(seconds)))
    raise ValueError(f"unrecognized descriptor: {descriptor}")


def parse_standard(spec: str) -> Schedule:
    """cron.ParseStandard: raises ValueError with robfig/cron's message."""
    if not spec:
        raise ValueError("empty spec string")
    loc: dt.tzinfo | None = None
    if spec.startswith(("TZ=", "CRON_TZ=")):
        space = spec.find(" ")
        eq = spec.find("=")
        name = spec[eq + 1 : space] if space >= 0 else spec[eq + 1 :]
        try:
            loc = load_location(name)
        except ValueError as e:
            raise ValueError(f"provided bad location {name}: {e}") from None
        spec = spec[space:].strip() if space >= 0 else ""
    if spec.startswith("@"):
        return _parse_descriptor(spec, loc)
    fields = spec.split()
    if len(fields) != 5:
        raise ValueError(f"expected exactly 5 fields, found {len(fields)}: [{' '.join(fields)}]")
    minute = _get_field(fields[0], _MINUTES)
    hour = _get_field(fields[1], _HOURS)
    dom = _get_field(fields[2], _DOM)
    month = _get_field(fields[3], _MONTHS)
    dow = _get_field(fields[4], _DOW)
    return SpecSchedule(minute, hour, dom, month, dow, loc)
