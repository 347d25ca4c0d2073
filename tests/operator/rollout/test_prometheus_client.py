import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from planet_operator.rollout import prometheus


@pytest.fixture
async def fake() -> AsyncIterator[str]:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.json_response({"status": "success", "data": {"resultType": "vector", "result": []}})

    async def gateway(request: web.Request) -> web.Response:
        return web.Response(status=502, text="<html>bad gateway</html>")

    async def vector(request: web.Request) -> web.Response:
        form = await request.post()
        result = (
            [{"metric": {"revision": "r"}, "value": [1700000000.5, "NaN"]}] if form["query"] == "nan" else []
        )
        return web.json_response({"status": "success", "data": {"resultType": "vector", "result": result}})

    app = web.Application()
    app.router.add_post("/slow/api/v1/query", slow)
    app.router.add_post("/gateway/api/v1/query", gateway)
    app.router.add_post("/ok/api/v1/query", vector)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_timeout_is_a_prometheus_error(fake: str) -> None:
    async with prometheus.PrometheusClient(base_url=f"{fake}/slow", timeout=0.3) as client:
        with pytest.raises(prometheus.PrometheusError, match=r"no answer within 0.3s") as caught:
            await client.query("up")
    assert caught.value.kind == "timeout"


async def test_non_prometheus_answer_is_an_http_error(fake: str) -> None:
    async with prometheus.PrometheusClient(base_url=f"{fake}/gateway") as client:
        with pytest.raises(prometheus.PrometheusError, match="HTTP 502") as caught:
            await client.query("up")
    assert (caught.value.kind, caught.value.status) == ("http", 502)


async def test_samples_keep_labels_and_nan(fake: str) -> None:
    async with prometheus.PrometheusClient(base_url=f"{fake}/ok/") as client:
        [sample] = await client.query("nan")
        assert await client.query("empty") == []
    assert sample.labels == {"revision": "r"}
    assert sample.value != sample.value  # NaN survives: analysis decides what it means
    assert sample.timestamp == 1700000000.5


async def test_unreachable_server() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connection refused
        async with prometheus.PrometheusClient(base_url=f"http://127.0.0.1:{port}", timeout=2) as client:
            with pytest.raises(prometheus.PrometheusError, match="unreachable") as caught:
                await client.query("up")
    assert caught.value.kind == "unreachable"


async def test_a_cluster_proxy_in_the_environment_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pods that reach Service names through ``HTTP_PROXY`` (the dev stack's gateway) reach Prometheus."""
    seen: list[str] = []

    async def proxy(request: web.Request) -> web.Response:
        seen.append(f"{request.url.host}{request.path}")
        return web.json_response({"status": "success", "data": {"resultType": "vector", "result": []}})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    try:
        address = "http://prometheus-operated.monitoring.svc:9090"
        async with prometheus.PrometheusClient(base_url=address, timeout=5) as client:
            assert await client.query("up") == []
    finally:
        await runner.cleanup()
    assert seen == ["prometheus-operated.monitoring.svc/api/v1/query"]
