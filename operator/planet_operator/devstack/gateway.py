"""The local ingress: one port in front of every InferenceService and InferenceGraph.

``/serving/<ns>/<name>/<path>`` proxies to a revision picked by the traffic split (``/_rev/<rev>/``
pins one, like KServe's tag routing); ``/graphs/<ns>/<name>`` runs an InferenceGraph's Sequence.
"""

from __future__ import annotations

import json
import random
from typing import Any

import aiohttp
from aiohttp import web

from planet_operator.devstack.runtime import LocalKServe

#: Hop-by-hop headers a proxy must not forward.
_HOP = {"connection", "keep-alive", "transfer-encoding", "host", "content-length", "upgrade"}


def build_app(runtime: LocalKServe, *, timeout: float = 900.0) -> web.Application:
    """The aiohttp app; the caller runs it on 127.0.0.1."""
    app = web.Application(client_max_size=256 * 1024 * 1024)
    session_key = web.AppKey("session", aiohttp.ClientSession)

    async def start(app: web.Application) -> None:
        app[session_key] = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout))

    async def stop(app: web.Application) -> None:
        await app[session_key].close()

    async def serve(request: web.Request) -> web.StreamResponse:
        namespace, name, tail = (
            request.match_info["ns"],
            request.match_info["name"],
            request.match_info["tail"],
        )
        service = runtime.services.get((namespace, name))
        if service is None:
            return _error(404, f"no InferenceService {namespace}/{name}")
        pinned = None
        if tail.startswith("_rev/"):
            _, pinned, tail = [*tail.split("/", 2), "", ""][:3]
        candidates = service.serving()
        if pinned:
            process = service.revisions.get(pinned)
            candidates = [(process, 100)] if process is not None and process.ready else []
        if not candidates:
            return _error(503, f"{namespace}/{name}: no ready revision takes traffic")
        process = random.choices([p for p, _ in candidates], weights=[w for _, w in candidates])[0]
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        target = f"{process.url}/{tail}"
        try:
            async with app[session_key].request(
                request.method, target, data=body, headers=headers, params=request.query
            ) as reply:
                payload = await reply.read()
                out = {k: v for k, v in reply.headers.items() if k.lower() not in _HOP}
                out["x-planet-revision"] = process.name
                return web.Response(status=reply.status, body=payload, headers=out)
        except aiohttp.ClientError as exc:
            return _error(502, f"{process.name}: {exc}")

    async def graph(request: web.Request) -> web.StreamResponse:
        namespace, name = request.match_info["ns"], request.match_info["name"]
        body = runtime.graphs.get((namespace, name))
        if body is None:
            return _error(404, f"no InferenceGraph {namespace}/{name}")
        root = body["spec"]["nodes"]["root"]
        if root.get("routerType") != "Sequence":
            return _error(501, f"the local runtime runs Sequence graphs only, not {root.get('routerType')}")
        original = await request.read()
        payload, status = original, 200
        content_type = request.headers.get("content-type", "application/json")
        for step in root.get("steps", []):
            service = step.get("serviceName", "")
            url = f"http://127.0.0.1:{request.url.port}/serving/{namespace}/{service}/v1/models/{service}:predict"
            data = payload if step.get("data") == "$response" else original
            async with app[session_key].post(url, data=data, headers={"content-type": content_type}) as reply:
                payload, status = await reply.read(), reply.status
            if status >= 400:
                # Like KServe's router: the failing step's answer is the graph's answer.
                break
        return web.Response(status=status, body=payload, content_type="application/json")

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    app.router.add_route("*", "/serving/{ns}/{name}/{tail:.*}", serve)
    app.router.add_post("/graphs/{ns}/{name}", graph)
    return app


def _error(status: int, message: str) -> web.Response:
    return web.Response(status=status, text=json.dumps({"error": message}), content_type="application/json")


def graph_url(gateway: str, namespace: str, name: str) -> str:
    """Where an InferenceGraph answers."""
    return f"{gateway}/graphs/{namespace}/{name}"


__all__: list[Any] = ["build_app", "graph_url"]
