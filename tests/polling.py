"""Polling for the tests on real components: wait until a check holds, or fail saying what was seen."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def until(
    what: str,
    check: Callable[[], Any],
    *,
    timeout: float = 60.0,
    interval: float = 0.5,
    describe: Callable[[], str] = str,
) -> Any:
    """``check()``'s first truthy value; past ``timeout``, an AssertionError with ``describe()``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{what} not within {timeout:.0f} s\n{describe()}")


def log_tails(logs: Path, *, each: int = 1500, total: int = 6000) -> Callable[[], str]:
    """A ``describe`` for :func:`until`: the end of every component's log in ``logs``."""

    def tails() -> str:
        found = {p.name: p.read_text(errors="replace")[-each:] for p in sorted(logs.glob("*.log"))}
        return json.dumps(found, indent=1)[-total:]

    return tails
