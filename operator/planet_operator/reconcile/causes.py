"""Why a pipeline is not where its spec wants it, one cause per refused write or failing child.

A cause names the child (kind and name) and quotes the API server or the child in its own words.
The pipeline's conditions aggregate the causes of one pass; :mod:`.notices` announces each distinct
cause once (an event, a log line) however many passes see it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence

from planet_operator.kube.client import APIError

#: Ready/Degraded reason for a write of a child that the API server refused.
REJECTED = "ChildRejected"
#: EnginesReady/Ready/Degraded reason for a build Job that failed.
BUILD_FAILED = "BuildFailed"
#: Reason for the operator's own failure to reconcile (the pipeline's status cannot say it).
RECONCILE_FAILED = "ReconcileFailed"
#: HTTP statuses that mean "later", not "no": a bad token (the client already re-read it once),
#: a request timeout, API priority and fairness throttling.
_LATER = frozenset({401, 408, 429})
#: Longest quote of one cause; the end of a log or message says most, so the start is cut.
MAX_MESSAGE = 600
#: Longest condition message made of several causes.
MAX_SUMMARY = 2000


@dataclasses.dataclass(frozen=True, kw_only=True)
class Cause:
    """One reason a pipeline is not where it should be."""

    #: The object at fault: a child's kind and name (or the pipeline's, for its own writes).
    kind: str
    name: str
    #: The condition reason: ``ChildRejected``, ``BuildFailed``, or the child's own reason.
    reason: str
    #: The cause in the words of the server or the child.
    message: str
    #: What makes two observations the same cause (defaults to reason, kind, name and message):
    #: a child that fails in slightly different words from pass to pass is still one cause.
    key: tuple[str, ...] = ()

    @property
    def identity(self) -> tuple[str, ...]:
        """The key that de-duplicates events and log lines."""
        return self.key or (self.reason, self.kind, self.name, self.message)

    @property
    def text(self) -> str:
        """``Kind name: message``, as conditions and events quote it."""
        return f"{self.kind} {self.name}: {self.message}"


def is_refusal(error: APIError) -> bool:
    """True for a "no" from the API server (RBAC, quota, admission, validation), not a "later"."""
    if error.status in _LATER:
        return False
    if 400 <= error.status < 500:
        return True
    # A webhook the API server could not call refuses by its failurePolicy, as a 500 naming it.
    return "webhook" in error.message


def refused(*, kind: str, name: str, error: APIError) -> Cause:
    """A refused write of a child: the verb, the status and the server's message."""
    verb = error.verb or "write"
    return Cause(
        kind=kind,
        name=name,
        reason=REJECTED,
        message=clip(
            f"{verb} refused ({error.status} {error.reason}): {one_line(error.message)}", keep="start"
        ),
        key=(REJECTED, kind, name, verb, str(error.status), error.message),
    )


def reconcile_failed(*, kind: str, name: str, error: BaseException) -> Cause:
    """The operator's own failure (its status write refused, the API server unreachable)."""
    key: tuple[str, ...]
    if isinstance(error, APIError):
        verb = f"{error.verb} " if error.verb else ""
        message = f"{verb}failed ({error.status} {error.reason}): {one_line(error.message)}"
        key = (RECONCILE_FAILED, str(error.status), error.verb, error.message)
    else:
        message = f"{type(error).__name__}: {one_line(str(error))}"
        key = (RECONCILE_FAILED, type(error).__name__, str(error))
    return Cause(kind=kind, name=name, reason=RECONCILE_FAILED, message=clip(message, keep="start"), key=key)


def unique(causes: Iterable[Cause]) -> list[Cause]:
    """Causes in order, each identity once."""
    seen: dict[tuple[str, ...], Cause] = {}
    for cause in causes:
        seen.setdefault(cause.identity, cause)
    return list(seen.values())


def summary(causes: Sequence[Cause]) -> tuple[str, str]:
    """(reason, message) for a condition: refusals first, then the rest in order; every text joined."""
    ordered = sorted(causes, key=lambda c: c.reason != REJECTED)
    return ordered[0].reason, clip("; ".join(c.text for c in ordered), MAX_SUMMARY, keep="start")


def camel(reason: str, default: str) -> str:
    """A child's reason as a condition reason (``Predictor Deployment NotReady`` ▶ one CamelCase word)."""
    words = re.findall(r"[A-Za-z0-9]+", reason)
    out = "".join(word[:1].upper() + word[1:] for word in words)
    return out if out[:1].isalpha() else default


def one_line(text: str) -> str:
    """Whitespace (a log's newlines, indentation) folded to single spaces."""
    return " ".join(text.split())


def tail(text: str, *, lines: int = 3) -> str:
    """The last non-empty lines of a log or termination message, on one line (``|`` between lines)."""
    kept = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
    return clip(" | ".join(kept))


def clip(text: str, limit: int = MAX_MESSAGE, *, keep: str = "end") -> str:
    """``text`` within ``limit`` characters, marked with an ellipsis where it was cut."""
    if len(text) <= limit:
        return text
    return "…" + text[-(limit - 1) :] if keep == "end" else text[: limit - 1] + "…"
