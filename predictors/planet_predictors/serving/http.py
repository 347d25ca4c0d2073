"""What the serving core adds to KServe's FastAPI app.

KServe 0.21 builds one module-level app (``kserve.model_server.app``) and, inside
``ModelServer.start()``, adds its own middleware and exception handlers. Handlers and middleware
added *before* ``start()`` survive, and Starlette picks the handler of the most specific exception
class, so :func:`install` makes our errors answer with their own status and headers (429 +
``Retry-After``) and turns FastAPI's 422 for malformed V2 bodies into 400. Its middleware, the
innermost one, also:

* gives every error answer the one JSON shape of :mod:`errors` (KServe's ``{"error"}`` and
  Starlette's ``{"detail"}`` are rewritten), counts it in ``planet_errors_total`` (POSTs only, once:
  the batcher counts per image) and logs it as one line;
* answers an unexpected exception with a 500 itself. Left to Starlette, it is sent and then
  re-raised, and uvicorn closes the keep-alive connection without ``Connection: close``, so the
  client's next request on it gets no answer;
* limits body size, refuses JSON bodies KServe or FastAPI would decode into what nothing can
  answer about (lone surrogates, nesting past 1024 levels), tells the model when a client
  disconnects (the model never sees the Request), and rewrites V2 binary-data requests into their
  JSON equivalent (:mod:`binary`).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from planet_predictors.serving import binary, errors

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Set for the duration of each POST: set once its client has disconnected.
disconnected: contextvars.ContextVar[asyncio.Event | None] = contextvars.ContextVar(
    "planet_disconnected", default=None
)
#: Scope key: this request's error is already in ``planet_errors_total``.
COUNTED = "planet.counted"
V2_INFER = re.compile(r"^/v2/models/[^/]+(/versions/[^/]+)?/infer$")
INFERENCE = re.compile(r"^/v1/models/[^/]+:(predict|explain)$|" + V2_INFER.pattern)
#: KServe's handlers for client errors log a traceback each; the middleware logs one line instead.
_KSERVE_CLIENT_ERROR_HANDLERS = frozenset(
    {
        "invalid_input_handler",
        "model_not_found_handler",
        "model_not_ready_handler",
        "not_implemented_error_handler",
        "unsupported_protocol_error_handler",
        "server_not_ready_handler",
        "server_not_live_handler",
    }
)
_LOGGED_CHARS = 300


def install(app: FastAPI, *, max_body_bytes: int, on_error: Callable[[str], None] | None = None) -> None:
    """Register handlers and middleware on KServe's app; call before ``ModelServer.start()``."""

    async def planet_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, errors.PlanetError)
        request.scope[COUNTED] = exc.counted
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    async def validation_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        problems = exc.errors()[:5]
        where = [".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body" for e in problems]
        message = "; ".join(f"{w}: {e.get('msg', '')}" for w, e in zip(where, problems, strict=True))
        return JSONResponse(errors.error_body(message, "bad_request", where[0] if where else None), 400)

    async def too_large(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, _BodyTooLarge)
        return await planet_error(request, exc.error)

    app.add_exception_handler(errors.PlanetError, planet_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(_BodyTooLarge, too_large)
    app.add_middleware(_Guard, max_body_bytes=max_body_bytes, on_error=on_error)
    kserve_log = logging.getLogger("kserve")
    if not any(isinstance(f, _NoClientErrorTracebacks) for f in kserve_log.filters):
        kserve_log.addFilter(_NoClientErrorTracebacks())


class _NoClientErrorTracebacks(logging.Filter):
    """Drops KServe's traceback for each 4xx/503 it answers (the middleware's line says it all)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.funcName in _KSERVE_CLIENT_ERROR_HANDLERS and record.exc_info)


class _Guard:
    """ASGI middleware: one error shape, no 500 left to Starlette, body limit, disconnects, V2 binary."""

    def __init__(
        self, app: ASGIApp, *, max_body_bytes: int, on_error: Callable[[str], None] | None = None
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.on_error = on_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        reply = _Reply(scope, send, self.on_error if scope.get("method") == "POST" else None)
        try:
            if scope.get("method") == "POST":
                await self._post(scope, receive, reply)
            else:
                await self.app(scope, receive, reply.send)
        except Exception as exc:
            if reply.started:
                raise  # half an answer is out: only closing the connection is left
            log.exception("%s %s failed", scope.get("method"), scope.get("path"))
            await reply.error(errors.Internal(f"internal error ({type(exc).__name__}); see the server log"))

    async def _post(self, scope: Scope, receive: Receive, reply: _Reply) -> None:
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            await reply.error(_BodyTooLarge(self.max_body_bytes).error)
            return
        watcher = _DisconnectWatcher(receive, self.max_body_bytes)
        token = disconnected.set(watcher.event)
        try:
            app_receive: Receive = watcher.receive
            json_length = headers.get(binary.HEADER.encode())
            if json_length is not None and V2_INFER.match(scope.get("path", "")):
                body = await watcher.read_body()
                if body is None:
                    return  # the client left while sending
                converted = binary.to_json(body, json_length.decode("latin-1"))
                scope["headers"] = [
                    *(
                        (k, v)
                        for k, v in scope.get("headers") or []
                        if k not in (b"content-type", b"content-length", binary.HEADER.encode())
                    ),
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(converted)).encode()),
                ]
                app_receive = watcher.replay(converted)
            elif INFERENCE.match(scope.get("path", "")) and _parsed_as_json(headers.get(b"content-type")):
                body = await watcher.read_body()
                if body is None:
                    return
                _check_json(body)
                app_receive = watcher.replay(body)
            await self.app(scope, app_receive, reply.send)
        except _BodyTooLarge as exc:
            await reply.error(exc.error)
        except errors.BadRequest as exc:
            if reply.started:
                raise
            await reply.error(exc)
        finally:
            disconnected.reset(token)
            await watcher.close()


def _parsed_as_json(content_type: bytes | None) -> bool:
    """Whether KServe or FastAPI will decode this body as JSON (no content type counts)."""
    if not content_type:
        return True
    media = content_type.split(b";")[0].strip().lower()
    return media in (b"application/json", b"text/json") or media.endswith(b"+json")


def _check_json(body: bytes) -> None:
    """Refuse, before KServe or FastAPI decode it, JSON they would accept but cannot answer about.

    The json module (FastAPI's V2 path) takes lone surrogates, which then fail in the tokenizer or
    in any answer that echoes them, and raises RecursionError on deep nesting. orjson, as KServe's
    V1 path uses it, refuses both; parsing twice costs milliseconds next to a denoising step.
    """
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise errors.BadRequest("body", f"not valid JSON ({exc})") from None


class _Reply:
    """Wraps ``send``: error answers get the shared shape, one log line and one count."""

    def __init__(self, scope: Scope, send: Send, on_error: Callable[[str], None] | None) -> None:
        self.scope = scope
        self._send = send
        self.on_error = on_error
        self.started = False
        self._start: Message | None = None
        self._chunks: list[bytes] = []

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
            if int(message.get("status", 200)) >= 400:
                self._start = message  # held until the whole body is known
                return
        elif message["type"] == "http.response.body" and self._start is not None:
            self._chunks.append(bytes(message.get("body", b"")))
            if not message.get("more_body", False):
                await self._finish_error()
            return
        await self._send(message)

    async def error(self, exc: errors.PlanetError) -> None:
        """Answer ``exc`` directly (for what never reaches the app's exception handlers)."""
        self.scope[COUNTED] = exc.counted
        body = json.dumps(exc.body()).encode()
        headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in exc.headers.items()]
        await self.send(
            {
                "type": "http.response.start",
                "status": int(exc.status),
                "headers": [(b"content-type", b"application/json"), *headers],
            }
        )
        await self.send({"type": "http.response.body", "body": body})

    async def _finish_error(self) -> None:
        assert self._start is not None
        status = int(self._start["status"])
        raw = b"".join(self._chunks)
        try:
            decoded: Any = json.loads(raw) if raw else ""
        except ValueError:
            decoded = raw.decode("utf-8", "replace")
        if isinstance(decoded, dict) and isinstance(decoded.get("reason"), str) and "error" in decoded:
            reason, message, body = decoded["reason"], errors.message_of(decoded), raw
        else:
            reason, message = errors.reason_for(status), errors.message_of(decoded)
            body = json.dumps(errors.error_body(message or f"HTTP {status}", reason)).encode()
        headers = [
            (k, v)
            for k, v in self._start.get("headers") or []
            if k.lower() not in (b"content-length", b"content-type")
        ]
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if self.on_error is not None and not self.scope.get(COUNTED):
            self.on_error(reason)
        line = " ".join(errors.printable(message).split())[:_LOGGED_CHARS]
        level = logging.WARNING if status >= 500 else logging.INFO
        where = f"{self.scope.get('method')} {self.scope.get('path')}"
        log.log(level, "%s -> %d %s: %s", where, status, reason, line)
        await self._send({**self._start, "headers": headers})
        await self._send({"type": "http.response.body", "body": body})
        self._start = None


class _BodyTooLarge(HTTPException):
    """Raised from ``receive``: an HTTPException, so FastAPI's body parsing passes it on unchanged."""

    def __init__(self, limit: int) -> None:
        self.error = errors.BadRequest("body", f"larger than the limit of {limit} bytes")
        super().__init__(400, self.error.message)


class _DisconnectWatcher:
    """Wraps ``receive``: counts body bytes, then listens for ``http.disconnect`` in the background.

    Uvicorn's ``receive()`` blocks after the body until the client disconnects or the response is
    sent, so one background read is enough to notice a client that gave up while queued; the
    batcher waits on :attr:`event` and frees the request's slot at once.
    """

    def __init__(self, receive: Receive, limit: int) -> None:
        self._receive = receive
        self._limit = limit
        self._seen = 0
        self._done_body = False
        self._replay: bytes | None = None
        self.event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def receive(self) -> Message:
        if self._replay is not None:
            body, self._replay = self._replay, None
            return {"type": "http.request", "body": body, "more_body": False}
        if self._done_body:
            await self.event.wait()
            return {"type": "http.disconnect"}
        message = await self._receive()
        if message["type"] == "http.disconnect":
            self.event.set()
            return message
        self._seen += len(message.get("body", b""))
        if self._seen > self._limit:
            raise _BodyTooLarge(self._limit)
        if not message.get("more_body", False):
            self._done_body = True
            self._start_watching()
        return message

    async def read_body(self) -> bytes | None:
        """The whole body (within the limit), or ``None`` if the client disconnected first."""
        chunks: list[bytes] = []
        while not self._done_body:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                return None
            chunks.append(bytes(message.get("body", b"")))
        return b"".join(chunks)

    def replay(self, body: bytes) -> Receive:
        """A ``receive`` that yields ``body`` once, then waits for the disconnect."""
        self._replay = body
        return self.receive

    def _start_watching(self) -> None:
        async def watch() -> None:
            while True:
                message = await self._receive()
                if message["type"] == "http.disconnect":
                    self.event.set()
                    return

        self._task = asyncio.get_running_loop().create_task(watch())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
