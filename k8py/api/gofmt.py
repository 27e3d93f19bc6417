"""Go's `%v` rendering of JSON numbers, and `%q` of strings, which kube's messages and printed cells show.

JSON numbers decode to int64 or float64 in Go. An int64 prints plainly; a float64
with `%v` is strconv's shortest 'g' form, which switches to an exponent when the
decimal exponent is below -4 or at least 6 (`1e+06`, `1.5e-05`, but `123456`),
unlike Python's `repr` (`1000000.0`). Validation messages ("should be less than
or equal to 1e+06") and JSONPath text output (printer columns) both use it.
"""

from __future__ import annotations

import math
from decimal import Decimal


def go_number(value: int | float) -> str:
    """`fmt.Sprint(v)` for an int64 or float64 `v`."""
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    sign, digit_tuple, exponent = Decimal(repr(value)).as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple)).rstrip("0") or "0"
    point = len(digit_tuple) + exponent  # digits before the decimal point
    exp = point - 1
    prefix = "-" if sign else ""
    if exp < -4 or exp >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{prefix}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if point <= 0:
        return f"{prefix}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return prefix + digits + "0" * (point - len(digits))
    return f"{prefix}{digits[:point]}.{digits[point:]}"


_QUOTE_ESCAPES = {
    "\a": r"\a", "\b": r"\b", "\f": r"\f", "\n": r"\n", "\r": r"\r", "\t": r"\t", "\v": r"\v",
    "\\": "\\\\", '"': '\\"',
}


def go_quote(data: str | bytes) -> str:
    """strconv.Quote (`%q`): printable characters as they are, the rest escaped; bytes that are not
    UTF-8 as \\xNN."""
    text = data.decode("utf-8", errors="surrogateescape") if isinstance(data, bytes) else data
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in _QUOTE_ESCAPES:
            out.append(_QUOTE_ESCAPES[ch])
        elif 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch.isprintable():
            out.append(ch)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)
