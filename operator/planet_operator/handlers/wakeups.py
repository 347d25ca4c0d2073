"""Wake a pipeline's reconcile loop early: child and spec events poke it instead of polling."""

from __future__ import annotations

import asyncio
import contextlib

#: Seconds to let events settle after a wakeup.
DEBOUNCE = 0.3


class Wakeups:
    """One asyncio.Event per pipeline uid."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}

    def wake(self, uid: str) -> None:
        """Make the pipeline's next wait return at once."""
        self._events.setdefault(uid, asyncio.Event()).set()

    async def wait(self, uid: str, seconds: float, *, settle: float = DEBOUNCE) -> None:
        """Sleep until woken or ``seconds`` pass; after a wakeup, wait ``settle`` more.

        The settling pause coalesces a burst of child events into one reconcile and lets Kopf's
        indexes catch up with objects this pipeline just created (otherwise it creates them twice).
        """
        event = self._events.setdefault(uid, asyncio.Event())
        woken = False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout=seconds)
            woken = True
        if woken and settle > 0:
            await asyncio.sleep(settle)
        event.clear()

    def forget(self, uid: str) -> None:
        """Drop a deleted pipeline's event."""
        self._events.pop(uid, None)


#: The process-wide registry (Kopf runs every handler in one event loop).
WAKEUPS = Wakeups()
