"""Kubernetes resource quantities ("500m", "32Gi", 1) compared by value, as the API server stores them.

The server rewrites quantities into its canonical form (``1`` ▶ ``"1"``, ``"0.5"`` ▶ ``"500m"``),
so a child compared field by field with what the operator rendered would always look changed.
"""

from __future__ import annotations

import decimal
import re

_SUFFIXES: dict[str, decimal.Decimal | int] = {
    "": 1,
    "m": decimal.Decimal("0.001"),
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}
_QUANTITY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?$")


def parse(value: int | float | str) -> decimal.Decimal | None:
    """The value of a quantity, or None when ``value`` is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return decimal.Decimal(str(value))
    match = _QUANTITY.match(value.strip())
    if match is None:
        return None
    number, suffix = match.group(1), match.group(2) or ""
    return decimal.Decimal(number) * _SUFFIXES[suffix]


def equal(a: object, b: object) -> bool:
    """True when ``a`` and ``b`` are the same quantity (or equal as plain values)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if a == b:
        return True
    if not isinstance(a, int | float | str) or not isinstance(b, int | float | str):
        return False
    left, right = parse(a), parse(b)
    return left is not None and left == right
