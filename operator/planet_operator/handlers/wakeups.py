"""Wake a pipeline's reconcile loop early: child and spec events poke it instead of polling."""

from __future__ import annotations

import asyncio
import contextlib


class Wakeups:
    """One asyncio.Event per pipeline uid."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}

    def wake(self, uid: str) -> None:
        """Make the pipeline's next wait return at once."""
        self._events.setdefault(uid, asyncio.Event()).set()

    async def wait(self, uid: str, seconds: float) -> None:
        """Sleep until woken or ``seconds`` pass."""
        event = self._events.setdefault(uid, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout=seconds)
        event.clear()

    def forget(self, uid: str) -> None:
        """Drop a deleted pipeline's event."""
        self._events.pop(uid, None)


#: The process-wide registry (Kopf runs every handler in one event loop).
WAKEUPS = Wakeups()
