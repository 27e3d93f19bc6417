"""The string formats kube-apiserver checks in custom objects.

A CRD schema may name any `format`, but kube validates only those its
`StripUnsupportedFormatsPostProcess` keeps (the rest, `int32` and `int64`
included, are ignored), each as kube-openapi's `strfmt` registry checks it.
Format names are compared with dashes removed, as strfmt normalizes them
(`date-time` is `datetime`).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import ipaddress
import re
from collections.abc import Callable
from email.utils import parseaddr
from urllib.parse import urlsplit


def _date(value: str) -> bool:
    """time.Parse("2006-01-02", value)."""
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        return False
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        return False
    return True


_TIME = re.compile(r"([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.[0-9]+)?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})")


def _datetime(value: str) -> bool:
    """strfmt.IsDateTime: a full-date, "t", then a time with a zone."""
    parts = value.lower().split("t")
    if len(value) < 4 or len(parts) < 2 or not _date(parts[0]):
        return False
    m = _TIME.fullmatch(parts[1])
    return m is not None and m[1] <= "23" and m[2] <= "59" and m[3] <= "59"


_GO_DURATION = re.compile(r"[-+]?((\d+(\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h))+|[-+]?0")
_STRFMT_DURATION = re.compile(
    r"(\d+)\s*(ns|nano|nanos|nanosec|nanosecs|nanosecond|nanoseconds|us|micro|micros|microsec|microsecs|"
    r"microsecond|microseconds|ms|milli|millis|millisec|millisecs|millisecond|milliseconds|s|sec|secs|second|"
    r"seconds|m|min|mins|minute|minutes|h|hr|hrs|hour|hours|d|day|days|w|wk|wks|week|weeks)"
)


def _duration(value: str) -> bool:
    """strfmt.IsDuration: Go's time.ParseDuration or the "3 days" form."""
    return bool(_GO_DURATION.fullmatch(value) or _STRFMT_DURATION.fullmatch(value))


def _ip(version: int) -> Callable[[str], bool]:
    def check(value: str) -> bool:
        try:
            return ipaddress.ip_address(value).version == version
        except ValueError:
            return False

    return check


def _cidr(value: str) -> bool:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return False
    return "/" in value


_MAC = re.compile(
    r"([0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}|([0-9A-Fa-f]{2}[:-]){7}[0-9A-Fa-f]{2}|"
    r"([0-9A-Fa-f]{2}[:-]){19}[0-9A-Fa-f]{2}|([0-9A-Fa-f]{4}\.){2}[0-9A-Fa-f]{4}|"
    r"([0-9A-Fa-f]{4}\.){3}[0-9A-Fa-f]{4}|([0-9A-Fa-f]{4}\.){9}[0-9A-Fa-f]{4}"
)
_HOSTNAME_LABEL = re.compile(r"[^\W_]([-\w]{0,61}[^\W_])?")


def _hostname(value: str) -> bool:
    labels = value.split(".")
    return 0 < len(value) <= 255 and all(_HOSTNAME_LABEL.fullmatch(label) for label in labels)


def _email(value: str) -> bool:
    _, address = parseaddr(value)
    return "@" in address and not address.startswith("@") and not address.endswith("@")


def _uri(value: str) -> bool:
    """net/url.ParseRequestURI: an absolute URI or an absolute path."""
    if not value or any(ch.isspace() for ch in value):
        return False
    return value.startswith("/") or bool(urlsplit(value).scheme)


def _isbn10(value: str) -> bool:
    digits = re.sub(r"[\s-]", "", value)
    if not re.fullmatch(r"\d{9}[\dX]", digits):
        return False
    total = sum((10 - i) * (10 if c == "X" else int(c)) for i, c in enumerate(digits))
    return total % 11 == 0


def _isbn13(value: str) -> bool:
    digits = re.sub(r"[\s-]", "", value)
    if not re.fullmatch(r"\d{13}", digits):
        return False
    return sum(int(c) * (1 if i % 2 == 0 else 3) for i, c in enumerate(digits)) % 10 == 0


_CREDIT_CARD = re.compile(
    r"(?:4[0-9]{12}(?:[0-9]{3})?|5[1-5][0-9]{14}|(222[1-9]|22[3-9][0-9]|2[3-6][0-9]{2}|27[01][0-9]|2720)[0-9]{12}|"
    r"6(?:011|5[0-9][0-9])[0-9]{12}|3[47][0-9]{13}|3(?:0[0-5]|[68][0-9])[0-9]{11}|(?:2131|1800|35\d{3})\d{11}|"
    r"6[27][0-9]{14})"
)


def _credit_card(value: str) -> bool:
    digits = re.sub(r"\D", "", value)
    if not _CREDIT_CARD.fullmatch(digits):
        return False
    total = 0
    for i, c in enumerate(reversed(digits)):
        n = int(c) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


def _base64(value: str) -> bool:
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return False
    return len(value) % 4 == 0


def _regex(pattern: str) -> Callable[[str], bool]:
    compiled = re.compile(pattern)
    return lambda value: compiled.fullmatch(value) is not None


_UUID = r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?"
CHECKS: dict[str, Callable[[str], bool]] = {
    "bsonobjectid": _regex(r"[0-9a-fA-F]{24}"),
    "uri": _uri,
    "email": _email,
    "hostname": _hostname,
    "ipv4": _ip(4),
    "ipv6": _ip(6),
    "cidr": _cidr,
    "mac": lambda value: _MAC.fullmatch(value) is not None,
    "uuid": _regex(_UUID + r"[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"),
    "uuid3": _regex(_UUID + r"3[0-9a-fA-F]{3}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"),
    "uuid4": _regex(_UUID + r"4[0-9a-fA-F]{3}-?[89abAB][0-9a-fA-F]{3}-?[0-9a-fA-F]{12}"),
    "uuid5": _regex(_UUID + r"5[0-9a-fA-F]{3}-?[89abAB][0-9a-fA-F]{3}-?[0-9a-fA-F]{12}"),
    "isbn": lambda value: _isbn10(value) or _isbn13(value),
    "isbn10": _isbn10,
    "isbn13": _isbn13,
    "creditcard": _credit_card,
    "ssn": _regex(r"\d{3}[- ]?\d{2}[- ]?\d{4}"),
    "hexcolor": _regex(r"#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})"),
    "rgbcolor": _regex(
        r"rgb\(\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*,\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*,"
        r"\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*\)"
    ),
    "byte": _base64,
    "password": lambda value: True,
    "date": _date,
    "duration": _duration,
    "datetime": _datetime,
}


def checked(name: str) -> Callable[[str], bool] | None:
    """The check of a format kube validates, None for a format it ignores."""
    return CHECKS.get(name.replace("-", ""))
