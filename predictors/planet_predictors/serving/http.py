"""What the serving core adds to KServe's FastAPI app.

KServe 0.21 builds one module-level app (``kserve.model_server.app``) and, inside
``ModelServer.start()``, adds its own middleware and exception handlers (unknown exceptions become
500). Handlers and middleware added *before* ``start()`` survive, and Starlette picks the handler
of the most specific exception class, so :func:`install` makes our errors answer with their own
status and headers (429 + ``Retry-After``), turns FastAPI's 422 for malformed V2 bodies into 400,
limits body size and tells the model when a client disconnects (the model never sees the Request).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from planet_predictors.serving import errors

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Set for the duration of each HTTP request: returns True once its client has disconnected.
client_gone: contextvars.ContextVar[Callable[[], bool]] = contextvars.ContextVar(
    "planet_client_gone", default=lambda: False
)


def install(app: FastAPI, *, max_body_bytes: int, on_error: Callable[[str], None] | None = None) -> None:
    """Register handlers and middleware on KServe's app; call before ``ModelServer.start()``."""

    async def planet_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, errors.PlanetError)
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    async def validation_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body') or 'body'}: {e.get('msg', '')}"
            for e in exc.errors()[:5]
        )
        if on_error is not None:
            on_error("bad_request")
        return JSONResponse({"error": problems, "reason": "bad_request"}, status_code=400)

    app.add_exception_handler(errors.PlanetError, planet_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_middleware(_BodyLimitAndDisconnect, max_body_bytes=max_body_bytes, on_error=on_error)


class _BodyLimitAndDisconnect:
    """ASGI middleware: refuse bodies over the limit; watch for the client going away."""

    def __init__(
        self, app: ASGIApp, *, max_body_bytes: int, on_error: Callable[[str], None] | None = None
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.on_error = on_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            await self._too_large(send)
            return
        watcher = _DisconnectWatcher(receive, self.max_body_bytes)
        token = client_gone.set(watcher.gone)
        try:
            await self.app(scope, watcher.receive, send)
        except _BodyTooLarge:
            await self._too_large(send)
        finally:
            client_gone.reset(token)
            await watcher.close()

    async def _too_large(self, send: Send) -> None:
        if self.on_error is not None:
            self.on_error("bad_request")
        body = json.dumps(
            {"error": f"body: larger than the limit of {self.max_body_bytes} bytes", "reason": "bad_request"}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 400,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _BodyTooLarge(Exception):
    pass


class _DisconnectWatcher:
    """Wraps ``receive``: counts body bytes, then listens for ``http.disconnect`` in the background.

    Uvicorn's ``receive()`` blocks after the body until the client disconnects or the response is
    sent, so one background read is enough to notice a client that gave up while queued.
    """

    def __init__(self, receive: Receive, limit: int) -> None:
        self._receive = receive
        self._limit = limit
        self._seen = 0
        self._done_body = False
        self._disconnected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def gone(self) -> bool:
        return self._disconnected.is_set()

    async def receive(self) -> Message:
        if self._done_body:
            await self._disconnected.wait()
            return {"type": "http.disconnect"}
        message = await self._receive()
        if message["type"] == "http.disconnect":
            self._disconnected.set()
            return message
        self._seen += len(message.get("body", b""))
        if self._seen > self._limit:
            raise _BodyTooLarge
        if not message.get("more_body", False):
            self._done_body = True
            self._start_watching()
        return message

    def _start_watching(self) -> None:
        async def watch() -> None:
            while True:
                message = await self._receive()
                if message["type"] == "http.disconnect":
                    self._disconnected.set()
                    return

        self._task = asyncio.get_running_loop().create_task(watch())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
