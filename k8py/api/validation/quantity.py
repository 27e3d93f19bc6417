"""resource.Quantity, as far as validation needs it: parse, compare, print canonically.

Error messages quote quantities in canonical form (`quantity.String()`), so
"0.5" prints as "500m" and "1024Mi" as "1Gi": a quantity keeps the format of its
suffix (binary, decimal SI or decimal exponent) and prints with the largest
suffix that keeps the number whole, never below nano.
"""

from __future__ import annotations

import re
from decimal import ROUND_CEILING, Decimal
from typing import NamedTuple

QUANTITY_FORMAT_ERROR = (
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
)

_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_DECIMAL_SUFFIX = {exp: suffix for suffix, exp in _DECIMAL.items()}
_QUANTITY = re.compile(r"([+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+))(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?")


class Quantity(NamedTuple):
    value: Decimal
    format: str  # "BinarySI", "DecimalSI" or "DecimalExponent"

    def __str__(self) -> str:
        return _canonical(self)


def parse_quantity(text: object) -> Quantity | None:
    """A quantity from its JSON form (a string or a number); None when malformed."""
    if isinstance(text, bool):
        return None
    if isinstance(text, int | float):
        text = str(text)
    if not isinstance(text, str):
        return None
    m = _QUANTITY.fullmatch(text.strip())
    if m is None:
        return None
    number, suffix = Decimal(m[1]), m[2] or ""
    if suffix in _BINARY:
        return Quantity(number * (1 << _BINARY[suffix]), "BinarySI")
    if suffix in _DECIMAL:
        return Quantity(number.scaleb(_DECIMAL[suffix]), "DecimalSI")
    return Quantity(number.scaleb(int(suffix[1:])), "DecimalExponent")


def _canonical(q: Quantity) -> str:
    # Like kube, never show more precision than nano: round up.
    value = (
        q.value.quantize(Decimal("1e-9"), rounding=ROUND_CEILING)
        if q.value.as_tuple().exponent < -9
        else q.value
    )
    if value == 0:
        return "0"
    if q.format == "BinarySI" and abs(value) >= 1024 and value == value.to_integral_value():
        number, exponent = int(value), 0
        while exponent < 60 and number % 1024 == 0:
            number //= 1024
            exponent += 10
        suffix = next((s for s, e in _BINARY.items() if e == exponent), "")
        return f"{number}{suffix}"
    # Decimal: the largest multiple-of-3 exponent that keeps the mantissa whole.
    exponent = 18
    while exponent > -9 and value.scaleb(-exponent) != value.scaleb(-exponent).to_integral_value():
        exponent -= 3
    mantissa = int(value.scaleb(-exponent))
    if q.format == "DecimalExponent":
        return f"{mantissa}e{exponent}" if exponent else str(mantissa)
    return f"{mantissa}{_DECIMAL_SUFFIX[exponent]}"
