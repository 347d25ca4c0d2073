"""Announce each distinct cause once, however many retries see it.

One Warning event and one log line when a cause starts; one Normal event and one log line (with how
often it was seen) when it goes away; nothing for the passes in between.

A :class:`Notices` lives in the pipeline's Kopf memo, so it lasts as long as the operator process.
A cause the persisted status already quotes was announced before this process started (a restart,
another replica): it is taken up without a second event.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from planet_operator.reconcile.causes import Cause

log = logging.getLogger("planet.reconcile")
#: Reason of the Normal event that says a cause went away.
RESOLVED = "Resolved"


@dataclasses.dataclass
class _Active:
    cause: Cause
    since: float
    count: int = 1


@dataclasses.dataclass(frozen=True, kw_only=True)
class Resolved:
    """A cause that was seen ``count`` times over ``seconds`` and is gone now."""

    cause: Cause
    count: int
    seconds: float


@dataclasses.dataclass(frozen=True, kw_only=True)
class Changes:
    """What one update found."""

    #: New causes: announce them.
    started: tuple[Cause, ...] = ()
    #: New to this process, but already quoted by the status: announced before; log only.
    known: tuple[Cause, ...] = ()
    resolved: tuple[Resolved, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.started or self.known or self.resolved)


class Notices:
    """The causes one pipeline (or one reconcile loop) has announced, each with how often it was seen."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._active: dict[tuple[str, ...], _Active] = {}

    @property
    def active(self) -> list[Cause]:
        """The causes seen at the last update, latest words."""
        return [entry.cause for entry in self._active.values()]

    def count(self, cause: Cause) -> int:
        """How many updates in a row have seen ``cause`` (0 when it is not active)."""
        entry = self._active.get(cause.identity)
        return entry.count if entry else 0

    def update(self, current: Iterable[Cause], *, reported: Sequence[str] = ()) -> Changes:
        """Record the causes of one pass; ``reported``: the messages the persisted status holds."""
        now = self._clock()
        started: list[Cause] = []
        known: list[Cause] = []
        seen: dict[tuple[str, ...], _Active] = {}
        for cause in current:
            key = cause.identity
            if key in seen:
                continue
            entry = self._active.get(key)
            if entry is None:
                entry = _Active(cause=cause, since=now, count=0)
                (known if any(cause.text in message for message in reported) else started).append(cause)
            entry.cause, entry.count = cause, entry.count + 1
            seen[key] = entry
        resolved = tuple(
            Resolved(cause=entry.cause, count=entry.count, seconds=now - entry.since)
            for key, entry in self._active.items()
            if key not in seen
        )
        self._active = seen
        return Changes(started=tuple(started), known=tuple(known), resolved=resolved)


#: ``emit(involved, type, reason, message)``, as :class:`planet_operator.reconcile.context.Context` has it.
Emit = Callable[[Mapping[str, Any], str, str, str], None]


def announce(
    changes: Changes,
    *,
    body: Mapping[str, Any],
    emit: Emit,
    subject: str,
    error: BaseException | None = None,
) -> None:
    """Events and log lines for what changed; ``subject`` names the pipeline in the log.

    ``error``: the exception behind a new cause, when its traceback is worth logging (a crash).
    """
    for cause in changes.started:
        log.warning("%s: %s", subject, cause.text, exc_info=error)
        emit(body, "Warning", cause.reason, cause.text)
    for cause in changes.known:
        log.warning("%s: %s (reported before this operator started)", subject, cause.text)
    for gone in changes.resolved:
        log.info("%s: resolved after %s: %s", subject, _seen(gone), gone.cause.text)
        cause = gone.cause
        emit(
            body,
            "Normal",
            RESOLVED,
            f"{cause.kind} {cause.name}: resolved ({cause.reason}, {_seen(gone)}); was: {cause.message}",
        )


def _seen(gone: Resolved) -> str:
    times = "once" if gone.count == 1 else f"{gone.count} times"
    return f"seen {times} over {gone.seconds:.0f} s"
