"""The stack's gateway: serves the HTTPRoutes KServe writes, and Service names for pods, by pod address.

No project provides this for a cluster without kube-proxy or a load balancer, so it is ours: it
reads HTTPRoutes, Services and EndpointSlices from the API server and forwards each request to a
ready endpoint's pod address. Clients outside the pod network use it as an HTTP proxy
(``curl --proxy $PLANET_PROXY http://NAME-NS.example.com/...``); pods use it as ``HTTP_PROXY`` for
``*.svc.cluster.local`` (KServe's router calls its steps there). It marks the routes it serves
``Accepted`` and ``ResolvedRefs``, as a Gateway API implementation does, since KServe waits for that.
Its CONNECT listener is the pods' ``HTTPS_PROXY``: a tunnel to a Service name's ready endpoint, for
clients that speak TLS end to end (KEDA's metrics server calls its operator over gRPC that way).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import re
import sys
from typing import Any

import aiohttp
from aiohttp import web

from planet_operator.kube import client as kube

log = logging.getLogger("planet_harness.gateway")
CONTROLLER = "planetgen.io/gateway"
ROUTES = kube.Resource(group="gateway.networking.k8s.io", version="v1", plural="httproutes")
GATEWAYS = kube.Resource(group="gateway.networking.k8s.io", version="v1", plural="gateways")
SERVICES = kube.Resource(group="", version="v1", plural="services")
SLICES = kube.Resource(group="discovery.k8s.io", version="v1", plural="endpointslices")
_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
    "proxy-authorization",
    "proxy-authenticate",
    "host",
    "content-length",
}
_SERVICE_HOST = re.compile(r"^(?P<name>[a-z0-9-]+)\.(?P<ns>[a-z0-9-]+)\.svc(\.cluster\.local)?$")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")


def seconds(duration: str) -> float:
    """A Gateway API duration ("600s", "1m30s", "500ms") in seconds."""
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(n) * scale[u] for n, u in _DURATION.findall(duration))


#: Tries per request when the chosen endpoint refuses the connection.
CONNECT_ATTEMPTS = 3


class _Unreachable(Exception):
    """The endpoint refused or dropped the connection before any of the request was sent."""


class Snapshot:
    """What the gateway routes by, refreshed from the API server."""

    def __init__(self) -> None:
        self.routes: list[dict[str, Any]] = []
        self.services: dict[tuple[str, str], dict[str, Any]] = {}
        self.slices: dict[tuple[str, str], list[dict[str, Any]]] = {}

    def endpoint(self, namespace: str, service: str, port: int | None) -> tuple[str, int]:
        """A ready pod address and target port behind ``service``'s ``port`` (first port if None)."""
        spec = self.services.get((namespace, service))
        if spec is None:
            raise LookupError(f"no Service {namespace}/{service}")
        ports = spec["spec"].get("ports", [])
        chosen = next((p for p in ports if port is None or p["port"] == port), None)
        if chosen is None:
            raise LookupError(f"Service {namespace}/{service} has no port {port}")
        candidates: list[tuple[str, int]] = []
        for piece in self.slices.get((namespace, service), []):
            target = next(
                (p["port"] for p in piece.get("ports") or [] if p.get("name", "") == chosen.get("name", "")),
                None,
            )
            if target is None:
                continue
            for endpoint in piece.get("endpoints") or []:
                if endpoint.get("conditions", {}).get("ready", True):
                    candidates.extend((address, int(target)) for address in endpoint["addresses"])
        if not candidates:
            raise LookupError(f"Service {namespace}/{service} has no ready endpoint")
        return random.choice(candidates)

    def route(self, host: str, path: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """The HTTPRoute rule that serves ``host`` + ``path`` (longest matching path wins)."""
        best: tuple[int, dict[str, Any], dict[str, Any]] | None = None
        for route in self.routes:
            names = route["spec"].get("hostnames") or ["*"]
            if not any(_host_matches(pattern, host) for pattern in names):
                continue
            for rule in route["spec"].get("rules", []):
                for match in rule.get("matches") or [{"path": {"type": "PathPrefix", "value": "/"}}]:
                    want = match.get("path", {"type": "PathPrefix", "value": "/"})
                    value, kind = want.get("value", "/"), want.get("type", "PathPrefix")
                    if _path_matches(kind, value, path) and (best is None or len(value) > best[0]):
                        best = (len(value), route, rule)
        return None if best is None else (best[1], best[2])


def _host_matches(pattern: str, host: str) -> bool:
    if pattern == "*" or pattern == host:
        return True
    return pattern.startswith("*.") and host.endswith(pattern[1:])


def _path_matches(kind: str, value: str, path: str) -> bool:
    if kind == "Exact":
        return path == value
    if kind == "RegularExpression":
        return re.match(value, path) is not None
    prefix = value.rstrip("/")
    return path == prefix or path.startswith(prefix + "/") or prefix == ""


class Gateway:
    """The proxy and the loop that keeps its snapshot and the routes' status current."""

    def __init__(self, client: kube.Client, *, addresses: list[str], refresh: float = 1.0) -> None:
        self.client = client
        self.addresses = addresses
        self.refresh = refresh
        self.snapshot = Snapshot()
        self.session: aiohttp.ClientSession | None = None

    async def sync(self) -> None:
        """Read routes, Services and EndpointSlices; mark routes and Gateways served."""
        routes = (await self.client.list_objects(ROUTES, None))["items"]
        services = (await self.client.list_objects(SERVICES, None))["items"]
        slices = (await self.client.list_objects(SLICES, None))["items"]
        snapshot = Snapshot()
        snapshot.routes = routes
        snapshot.services = {(s["metadata"]["namespace"], s["metadata"]["name"]): s for s in services}
        for piece in slices:
            owner = piece["metadata"].get("labels", {}).get("kubernetes.io/service-name")
            if owner:
                snapshot.slices.setdefault((piece["metadata"]["namespace"], owner), []).append(piece)
        self.snapshot = snapshot
        for route in routes:
            await self._accept(route)
        for gateway in (await self.client.list_objects(GATEWAYS, None))["items"]:
            await self._program(gateway)

    async def _accept(self, route: dict[str, Any]) -> None:
        meta = route["metadata"]
        parents = []
        for ref in route["spec"].get("parentRefs", []):
            conditions = [
                {
                    "type": kind,
                    "status": "True",
                    "reason": kind,
                    "message": "served by the planetgen gateway",
                    "observedGeneration": meta.get("generation", 1),
                    "lastTransitionTime": _now(),
                }
                for kind in ("Accepted", "ResolvedRefs")
            ]
            parents.append({"parentRef": ref, "controllerName": CONTROLLER, "conditions": conditions})
        current = route.get("status", {}).get("parents", [])
        if [
            (p["parentRef"], [(c["type"], c["status"], c.get("observedGeneration")) for c in p["conditions"]])
            for p in current
        ] == [
            (p["parentRef"], [(c["type"], c["status"], c["observedGeneration"]) for c in p["conditions"]])
            for p in parents
        ]:
            return
        await self.client.patch(
            ROUTES, meta["namespace"], meta["name"], {"status": {"parents": parents}}, subresource="status"
        )

    async def _program(self, gateway: dict[str, Any]) -> None:
        meta = gateway["metadata"]
        if any(
            c.get("type") == "Programmed" and c.get("status") == "True"
            for c in gateway.get("status", {}).get("conditions", [])
        ):
            return
        status = {
            "addresses": [{"type": "IPAddress", "value": address} for address in self.addresses],
            "conditions": [
                {
                    "type": kind,
                    "status": "True",
                    "reason": kind,
                    "message": "planetgen gateway",
                    "observedGeneration": meta.get("generation", 1),
                    "lastTransitionTime": _now(),
                }
                for kind in ("Accepted", "Programmed")
            ],
        }
        await self.client.patch(
            GATEWAYS, meta["namespace"], meta["name"], {"status": status}, subresource="status"
        )

    async def watch(self) -> None:
        """Refresh forever; a failed pass is logged and retried."""
        while True:
            try:
                await self.sync()
            except (kube.APIError, OSError, aiohttp.ClientError) as exc:
                # Before KServe's CRDs are installed the Gateway API kinds are not served yet.
                log.warning("sync failed: %s", exc)
            await asyncio.sleep(self.refresh)

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        """Forward one request by its Host: a Service name, else an HTTPRoute hostname.

        A refused connection is retried on a fresh snapshot, as Envoy-based gateways retry
        ``connect-failure``: the request never reached the pod (one that is shutting down, say,
        before its endpoint's removal reached the snapshot), so another endpoint may take it.
        """
        # Not request.read(): its 1 MiB cap is aiohttp's, not a gateway's (images ride in JSON bodies).
        body = await request.content.read()
        for attempt in range(CONNECT_ATTEMPTS):
            try:
                return await self._route(request, body)
            except LookupError as exc:
                if attempt == CONNECT_ATTEMPTS - 1:
                    return _error(503, str(exc))
            except _Unreachable as exc:
                if attempt == CONNECT_ATTEMPTS - 1:
                    return _error(502, str(exc))
                await asyncio.sleep(0.2 * (attempt + 1))
            # What was just created or removed (a route, an endpoint) may be newer than the snapshot.
            await self.sync()
        raise AssertionError("unreachable")

    async def _route(self, request: web.BaseRequest, body: bytes) -> web.StreamResponse:
        host_header = request.headers.get("Host", "") or request.url.host or ""
        host, _, port_text = host_header.partition(":")
        target = _SERVICE_HOST.match(host)
        timeout = 600.0
        if target is not None:
            address = self.snapshot.endpoint(
                target["ns"], target["name"], int(port_text) if port_text else 80
            )
        else:
            found = self.snapshot.route(host, request.rel_url.path)
            if found is None:
                raise LookupError(f"no HTTPRoute serves {host}{request.rel_url.path}")
            route, rule = found
            backends = [b for b in rule.get("backendRefs", []) if b.get("weight", 1) > 0]
            if not backends:
                raise LookupError(f"route {route['metadata']['name']}: no backend with weight")
            backend = random.choices(backends, weights=[b.get("weight", 1) for b in backends])[0]
            namespace = backend.get("namespace", route["metadata"]["namespace"])
            address = self.snapshot.endpoint(namespace, backend["name"], backend.get("port"))
            timeout = seconds(rule.get("timeouts", {}).get("request", "600s")) or timeout
        return await self._forward(request, body, address, timeout)

    async def _forward(
        self, request: web.BaseRequest, body: bytes, address: tuple[str, int], limit: float
    ) -> web.StreamResponse:
        assert self.session is not None
        url = f"http://{address[0]}:{address[1]}{request.rel_url.path_qs or '/'}"
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        headers["Host"] = request.headers.get("Host", "")
        try:
            async with self.session.request(
                request.method,
                url,
                headers=headers,
                data=body,
                timeout=aiohttp.ClientTimeout(total=limit),
                allow_redirects=False,
            ) as upstream:
                payload = await upstream.read()
                out = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP}
                return web.Response(status=upstream.status, body=payload, headers=out)
        except TimeoutError:
            return _error(504, f"upstream {url} did not answer within {limit:.0f} s")
        except aiohttp.ClientConnectorError as exc:
            raise _Unreachable(f"upstream {url}: {exc}") from exc
        except aiohttp.ClientError as exc:
            return _error(502, f"upstream {url}: {exc}")


class Tunnels:
    """HTTP CONNECT to ``NAME.NS.svc[.cluster.local]:PORT``: a TCP tunnel to one ready endpoint."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer one CONNECT, then copy bytes both ways until either side closes."""
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=30)
            method, authority, *_ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            host, _, port = authority.rpartition(":")
            target = _SERVICE_HOST.match(host)
            if method != "CONNECT" or target is None or not port.isdigit():
                await self._refuse(writer, 400, f"only CONNECT to a Service name: {method} {authority}")
                return
            try:
                address = self.gateway.snapshot.endpoint(target["ns"], target["name"], int(port))
            except LookupError:
                await self.gateway.sync()
                try:
                    address = self.gateway.snapshot.endpoint(target["ns"], target["name"], int(port))
                except LookupError as exc:
                    await self._refuse(writer, 503, str(exc))
                    return
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection(*address)
            except OSError as exc:
                await self._refuse(writer, 502, f"{address[0]}:{address[1]}: {exc}")
                return
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
            pass
        finally:
            with contextlib.suppress(OSError):
                writer.close()

    @staticmethod
    async def _refuse(writer: asyncio.StreamWriter, status: int, message: str) -> None:
        log.warning("CONNECT refused (%s): %s", status, message)
        writer.write(f"HTTP/1.1 {status} Refused\r\ncontent-length: 0\r\n\r\n".encode())
        await writer.drain()


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while chunk := await source.read(65536):
            sink.write(chunk)
            await sink.drain()
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.close()


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message, "reason": "Gateway"}, status=status)


def _now() -> str:
    import datetime

    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def serve(listen: list[tuple[str, int]], connect: list[tuple[str, int]] | None = None) -> None:
    """Run the gateway on every ``(host, port)``, its CONNECT tunnels on ``connect``, until cancelled."""
    client = kube.Client(kube.load_connection())
    gateway = Gateway(client, addresses=sorted({host for host, _ in listen if host != "127.0.0.1"}))
    # A low-level server: every request reaches the handler, also a proxy request for a bare host
    # ("POST http://name-ns.example.com"), whose empty path no application route would match.
    server = web.Server(gateway.handle)
    runner = web.ServerRunner(server, access_log=None)
    await runner.setup()
    # Bodies pass through as the upstream encoded them, with their Content-Encoding (a proxy does not
    # decode; KEDA's Prometheus client asks for gzip).
    gateway.session = aiohttp.ClientSession(auto_decompress=False)
    for host, port in listen:
        await web.TCPSite(runner, host, port).start()
    tunnels = Tunnels(gateway)
    servers = [await asyncio.start_server(tunnels.handle, host, port) for host, port in connect or []]
    log.info("gateway on %s", ", ".join(f"{h}:{p}" for h, p in listen))
    if connect:
        log.info("CONNECT tunnels on %s", ", ".join(f"{h}:{p}" for h, p in connect))
    try:
        await gateway.watch()
    finally:
        with contextlib.suppress(Exception):
            await gateway.session.close()
            for item in servers:
                item.close()
            await client.close()
            await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    """``python -m planet_harness.gateway --listen 127.0.0.1:8080 --listen 10.233.0.1:8080``."""
    parser = argparse.ArgumentParser(prog="python -m planet_harness.gateway", description=__doc__)
    parser.add_argument("--listen", action="append", required=True, help="HOST:PORT (repeatable)")
    parser.add_argument(
        "--connect-listen", action="append", default=[], help="HOST:PORT for CONNECT tunnels (repeatable)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    listen = [(item.rsplit(":", 1)[0], int(item.rsplit(":", 1)[1])) for item in args.listen]
    connect = [(item.rsplit(":", 1)[0], int(item.rsplit(":", 1)[1])) for item in args.connect_listen]
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(listen, connect))
    return 0


if __name__ == "__main__":
    sys.exit(main())
