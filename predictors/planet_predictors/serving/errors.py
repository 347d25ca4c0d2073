"""Errors a client can see, each with its HTTP status and its ``planet_errors_total`` reason.

Every error answer has one JSON shape, whatever produced it (this package, KServe, Starlette):
``{"error": "<message>", "reason": "<reason>"}`` plus ``"field"`` when one field is at fault, and
``"retryAfter"`` (seconds, as in the ``Retry-After`` header) on a 429.
"""

from __future__ import annotations

import math
from http import HTTPStatus
from typing import Any

#: Reasons of ``planet_errors_total``, exported as zeros at start (see ``Metrics.prime``).
REASONS = (
    "bad_request",
    "queue_full",
    "timeout",
    "client_gone",
    "oom",
    "internal",
    "unavailable",
    "not_found",
)


class PlanetError(Exception):
    """Base of every error the server answers with; ``status`` 500 unless a subclass says otherwise."""

    status: int = HTTPStatus.INTERNAL_SERVER_ERROR
    reason: str = "internal"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = dict(headers or {})
        self.field: str | None = None
        #: Set once this error is in ``planet_errors_total`` (the batcher counts per image).
        self.counted = False

    def body(self) -> dict[str, Any]:
        """The JSON body of every error answer (see the module docstring)."""
        return error_body(self.message, self.reason, self.field)


class BadRequest(PlanetError):
    """The request is wrong; ``field`` says where (``instances[0].prompt.color``)."""

    status = HTTPStatus.BAD_REQUEST
    reason = "bad_request"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field or None


class QueueFull(PlanetError):
    """Backpressure: the lane's queue is full or the lane is shed; retry after a while."""

    status = HTTPStatus.TOO_MANY_REQUESTS
    reason = "queue_full"

    def __init__(self, message: str, *, retry_after: float) -> None:
        self.retry_after = max(1, math.ceil(retry_after))
        super().__init__(message, headers={"Retry-After": str(self.retry_after)})

    def body(self) -> dict[str, Any]:
        """The error body with ``retryAfter`` (seconds), the header's value.

        KServe's InferenceGraph router passes a step's status and body on but drops its headers:
        through the graph, the body is the only place a client finds when to retry.
        """
        return {**super().body(), "retryAfter": self.retry_after}


class RequestTimeout(PlanetError):
    """The request did not finish within ``serving.timeoutSeconds``."""

    status = HTTPStatus.GATEWAY_TIMEOUT
    reason = "timeout"


class ClientGone(PlanetError):
    """The client disconnected; nobody reads the answer (nginx's 499)."""

    status = 499
    reason = "client_gone"


class OutOfMemory(PlanetError):
    """Even a batch of one ran out of accelerator memory."""

    status = HTTPStatus.SERVICE_UNAVAILABLE
    reason = "oom"


class Internal(PlanetError):
    """The backend failed on this request alone (its batch siblings were retried without it)."""


class ShuttingDown(PlanetError):
    """The server is stopping: queued and running work is dropped; retry on another replica."""

    status = HTTPStatus.SERVICE_UNAVAILABLE
    reason = "unavailable"


class Cancelled(PlanetError):
    """Raised inside a backend when nobody waits for its batch any more (never answered as such)."""

    status = 499
    reason = "client_gone"


class BackendUnavailable(RuntimeError):
    """A backend cannot run here (no CUDA for TensorRT, missing engines); raised at load time."""


def is_out_of_memory(exc: BaseException) -> bool:
    """True for CUDA/accelerator out-of-memory errors, whatever framework raised them."""
    if type(exc).__name__ == "OutOfMemoryError":
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def error_body(message: str, reason: str, field: str | None = None) -> dict[str, str]:
    """``{"error", "reason"[, "field"]}`` with text that always encodes (clients' text is echoed)."""
    body = {"error": printable(message), "reason": reason}
    if field:
        body["field"] = printable(field)
    return body


def reason_for(status: int) -> str:
    """The reason of an error answer that carries none (KServe's and Starlette's own answers)."""
    return {
        400: "bad_request",
        404: "not_found",
        405: "bad_request",
        413: "bad_request",
        415: "bad_request",
        422: "bad_request",
        429: "queue_full",
        499: "client_gone",
        503: "unavailable",
        504: "timeout",
    }.get(status, "internal" if status >= 500 else "bad_request")


def message_of(body: Any) -> str:
    """The message of a foreign error body: KServe's ``error``, Starlette's ``detail``, or the text."""
    if isinstance(body, dict):
        for key in ("error", "detail", "message"):
            if key in body:
                value = body[key]
                return value if isinstance(value, str) else str(value)
    return str(body)


def printable(text: str) -> str:
    """``text`` with lone surrogates escaped, so it encodes to UTF-8 (JSON answers, log lines)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
