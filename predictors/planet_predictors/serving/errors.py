"""Errors a client can see, each with its HTTP status and its ``planet_errors_total`` reason."""

from __future__ import annotations

import math
from http import HTTPStatus


class PlanetError(Exception):
    """Base of every error the server answers with a status other than 500."""

    status: int = HTTPStatus.INTERNAL_SERVER_ERROR
    reason: str = "internal"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = dict(headers or {})

    def body(self) -> dict[str, str]:
        """The JSON body: KServe's ``{"error": ...}`` plus the machine-readable reason."""
        return {"error": self.message, "reason": self.reason}


class BadRequest(PlanetError):
    """The request is wrong; ``field`` says where (``instances[0].prompt.color``)."""

    status = HTTPStatus.BAD_REQUEST
    reason = "bad_request"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field


class QueueFull(PlanetError):
    """Backpressure: the lane's queue is full or the lane is shed; retry after a while."""

    status = HTTPStatus.TOO_MANY_REQUESTS
    reason = "queue_full"

    def __init__(self, message: str, *, retry_after: float) -> None:
        self.retry_after = max(1, math.ceil(retry_after))
        super().__init__(message, headers={"Retry-After": str(self.retry_after)})


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


class BackendUnavailable(RuntimeError):
    """A backend cannot run here (no CUDA for TensorRT, missing engines); raised at load time."""


def is_out_of_memory(exc: BaseException) -> bool:
    """True for CUDA/accelerator out-of-memory errors, whatever framework raised them."""
    if type(exc).__name__ == "OutOfMemoryError":
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
