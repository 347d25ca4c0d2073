"""Kubernetes-style durations ("500ms", "30s", "5m", "1h30m") as seconds."""

from __future__ import annotations

import re

_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in ``text``, e.g. ``"1h30m"`` is 5400.0.

    Args:
        text: one or more ``<number><unit>`` parts, unit in ms, s, m, h (the CRD's ``Duration``).

    Raises:
        ValueError: ``text`` is empty or not made only of such parts.
    """
    pos, total = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _SECONDS[match.group(2)]
        pos = match.end()
    if not text or pos != len(text):
        raise ValueError(f"invalid duration {text!r}: expected parts like 500ms, 30s, 5m, 1h30m")
    return total


def format_seconds(seconds: float) -> str:
    """A PromQL range duration for ``seconds``, in whole milliseconds (``"2500ms"``, ``"60s"``)."""
    millis = max(1, round(seconds * 1000))
    return f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"
