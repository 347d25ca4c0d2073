"""What ``planet crds`` and ``planet docs`` share: print a generated file, or write its committed copies."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path


def print_or_write(text: str, *, write: bool, targets: Iterable[Path]) -> int:
    """Print ``text``; with ``write``, write it to every target instead and say where."""
    if not write:
        sys.stdout.write(text)
        return 0
    for target in targets:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        print(f"wrote {target}")
    return 0
