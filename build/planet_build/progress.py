"""Progress: one line per step, styled on a terminal and plain in a Job's log."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console


class Reporter:
    """Prints ``▶ step`` lines with their duration; errors go to stderr."""

    def __init__(self, *, quiet: bool = False) -> None:
        # soft_wrap: a Job's log is not 80 columns wide, and a wrapped key cannot be copied.
        self.out = Console(file=sys.stdout, soft_wrap=True, highlight=False)
        self.err = Console(file=sys.stderr, soft_wrap=True, highlight=False)
        self.quiet = quiet
        self.timings: dict[str, float] = {}

    def info(self, message: str) -> None:
        """A line of its own (a decision, not a step)."""
        if not self.quiet:
            self.out.print(message, markup=False)

    def warn(self, message: str) -> None:
        """Something the user should know, without failing the build."""
        self.err.print(f"warning: {message}", markup=False, style="yellow")

    def error(self, message: str) -> None:
        """The one line a failed build ends with."""
        self.err.print(f"error: {message}", markup=False, style="bold red")

    @contextmanager
    def step(self, name: str) -> Iterator[list[str]]:
        """Time a step and print one line when it finishes (or fails); append details to the yielded list."""
        started = time.perf_counter()
        ok = False
        notes: list[str] = []
        try:
            yield notes
            ok = True
        finally:
            elapsed = time.perf_counter() - started
            self.timings[name] = elapsed
            if not self.quiet:
                mark, style = ("▶", "green") if ok else ("✗", "red")
                detail = f" {', '.join(notes)}" if notes else ""
                text = f"{mark} {name}{detail} ({elapsed:.2f} s)"
                self.out.print(text, markup=False, style=style)
