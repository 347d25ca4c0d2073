"""The serving middleware on a real uvicorn with KServe's exception handlers: what no model path
reaches any more (a 500), and what every path shares (the error shape, counting, one log line)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from kserve import errors as kserve_errors
from tests.predictors.conftest import free_port

from planet_predictors.serving import errors, http


class App:
    def __init__(self, url: str, reasons: list[str]) -> None:
        self.url = url
        self.reasons = reasons


@pytest.fixture(scope="module")
def app() -> Iterator[App]:
    reasons: list[str] = []
    api = FastAPI()
    http.install(api, max_body_bytes=1024, on_error=reasons.append)
    # What KServe's RESTServer adds at start(), after ours.
    api.add_exception_handler(kserve_errors.InvalidInput, kserve_errors.invalid_input_handler)
    api.add_exception_handler(Exception, kserve_errors.generic_exception_handler)

    @api.get("/port")
    async def port(request: Request) -> dict[str, Any]:
        assert request.client is not None
        return {"port": request.client.port}

    @api.post("/boom")
    async def boom() -> None:
        raise RuntimeError("a bug")

    @api.post("/invalid")
    async def invalid() -> None:
        raise kserve_errors.InvalidInput("Unrecognized request format: nope")

    @api.post("/bad")
    async def bad() -> None:
        raise errors.BadRequest("instances[0].seed", "must be an integer")

    @api.post("/counted")
    async def counted() -> None:
        exc = errors.RequestTimeout("too slow")
        exc.counted = True  # the batcher counted it, per image
        raise exc

    @api.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    port_number = free_port()
    server = uvicorn.Server(
        uvicorn.Config(api, host="127.0.0.1", port=port_number, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    yield App(f"http://127.0.0.1:{port_number}", reasons)
    server.should_exit = True
    thread.join(timeout=10)


def test_a_500_keeps_the_keep_alive_connection_usable(app: App) -> None:
    with httpx.Client(base_url=app.url, timeout=10) as client:
        before = client.get("/port").json()["port"]
        boom = client.post("/boom")
        assert boom.status_code == 500
        assert boom.json() == {
            "error": "internal error (RuntimeError); see the server log",
            "reason": "internal",
        }
        assert boom.headers.get("connection") != "close"
        after = client.get("/port")
        assert after.status_code == 200
        # The same connection answered: the server did not drop it after the 500.
        assert after.json()["port"] == before


def test_500s_are_counted_once_and_counted_errors_not_again(app: App) -> None:
    app.reasons.clear()
    httpx.post(f"{app.url}/boom", timeout=10)
    httpx.post(f"{app.url}/bad", timeout=10)
    httpx.post(f"{app.url}/invalid", timeout=10)
    httpx.post(f"{app.url}/counted", timeout=10)
    httpx.get(f"{app.url}/nothing", timeout=10)  # GETs (probes, scrapers) are not counted
    assert app.reasons == ["internal", "bad_request", "bad_request"]


@pytest.mark.parametrize(
    ("method", "path", "status", "body"),
    [
        (
            "POST",
            "/bad",
            400,
            {
                "error": "instances[0].seed: must be an integer",
                "reason": "bad_request",
                "field": "instances[0].seed",
            },
        ),
        ("POST", "/invalid", 400, {"error": "Unrecognized request format: nope", "reason": "bad_request"}),
        ("GET", "/nothing", 404, {"error": "Not Found", "reason": "not_found"}),
        ("DELETE", "/port", 405, {"error": "Method Not Allowed", "reason": "bad_request"}),
        ("POST", "/counted", 504, {"error": "too slow", "reason": "timeout"}),
        (
            "POST",
            "/echo",
            400,
            {"error": "body: larger than the limit of 1024 bytes", "reason": "bad_request", "field": "body"},
        ),
    ],
)
def test_every_error_has_one_shape(
    app: App, method: str, path: str, status: int, body: dict[str, str]
) -> None:
    content = b"x" * 2000 if path == "/echo" else None
    reply = httpx.request(method, f"{app.url}{path}", content=content, timeout=10)
    assert reply.status_code == status
    assert reply.json() == body
    assert int(reply.headers["content-length"]) == len(reply.content)


def test_a_chunked_body_over_the_limit_is_refused_too(app: App) -> None:
    reply = httpx.post(f"{app.url}/echo", content=iter([b"x" * 600, b"y" * 600]), timeout=10)
    assert reply.status_code == 400 and reply.json()["field"] == "body"


def test_client_errors_are_one_log_line_without_tracebacks(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        httpx.post(f"{app.url}/invalid", timeout=10)
        httpx.post(f"{app.url}/bad", timeout=10)
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert not tracebacks, [r.getMessage() for r in tracebacks]
    lines = [r.getMessage() for r in caplog.records if r.name == "planet_predictors.serving.http"]
    assert lines == [
        "POST /invalid -> 400 bad_request: Unrecognized request format: nope",
        "POST /bad -> 400 bad_request: instances[0].seed: must be an integer",
    ]


def test_text_that_cannot_encode_is_escaped_in_answers() -> None:
    body = errors.BadRequest("instances[0].prompt.\ud800", 'unknown attribute "\udcff"').body()
    assert body["field"] == "instances[0].prompt.\\ud800"
    body_bytes = str(body).encode("utf-8")  # would raise on a lone surrogate
    assert b"\\udcff" in body_bytes
