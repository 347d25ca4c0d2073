"""The HTTP face of the store: Kubernetes REST paths, watch streams, tables, Status errors."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from planet_operator.kubeapi import discovery, errors, openapi, patching, registry, selectors, tables
from planet_operator.kubeapi.store import Store, Watcher

#: Seconds between BOOKMARK events on watches that allow them.
BOOKMARK_EVERY = 5.0


class Stats:
    """Requests by verb and resource: what the scale benchmark measures."""

    def __init__(self) -> None:
        self.verbs: collections.Counter[str] = collections.Counter()
        self.resources: collections.Counter[str] = collections.Counter()

    def count(self, verb: str, resource: str) -> None:
        """One request."""
        self.verbs[verb] += 1
        self.resources[f"{verb} {resource}"] += 1

    def by_verb(self) -> dict[str, int]:
        """Counts per HTTP verb (watch counted as WATCH)."""
        return dict(self.verbs)

    def as_dict(self) -> dict[str, Any]:
        """Everything, for /debug/planet/stats."""
        return {"verbs": dict(self.verbs), "resources": dict(self.resources)}


class APIServer:
    """An embedded Kubernetes-compatible API server (see the package docstring for its limits)."""

    def __init__(
        self, *, crd_paths: list[Path] | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.host, self.port = host, port
        self.registry = registry.Registry()
        self.store = Store()
        self.store.on_crd = self._serve_crd
        self.stats = Stats()
        self._runner: web.AppRunner | None = None
        self._watches: set[asyncio.Task[Any]] = set()
        namespaces = self.registry.get("", "v1", "namespaces")
        assert namespaces is not None
        for name in ("default", "kube-system", "kube-public"):
            created = self.store.create(namespaces, "", {"metadata": {"name": name}})
            self.store.update(
                namespaces, "", name, lambda b: {**b, "status": {"phase": "Active"}}, subresource="status"
            )
            del created
        for crd in registry.read_crds(crd_paths or []):
            info = self.registry.get("apiextensions.k8s.io", "v1", "customresourcedefinitions")
            assert info is not None
            self.store.create(info, "", crd)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` once started."""
        return f"http://{self.host}:{self.port}"

    def _serve_crd(self, crd: dict[str, Any]) -> None:
        versions = {v["name"]: v for v in crd["spec"].get("versions", [])}
        for info in registry.from_crd(crd):
            self.registry.add(info)
            schema = (versions[info.version].get("schema") or {}).get("openAPIV3Schema")
            if schema:
                self.store.schemas[openapi.schema_key(info)] = schema
                self.store.validators[(info.group, info.plural)] = schema

    async def start(self) -> None:
        """Listen (port 0 picks a free one)."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/version", self._version)
        app.router.add_get("/version/", self._version)
        app.router.add_get("/api", self._api)
        app.router.add_get("/apis", self._apis)
        app.router.add_get("/debug/planet/stats", self._stats)
        app.router.add_get("/openapi/v3", self._openapi_index)
        app.router.add_get("/openapi/v3/{prefix:apis?}/{rest:.*}", self._openapi_document)
        app.router.add_route("*", "/api/{version}{rest:.*}", self._core)
        app.router.add_route("*", "/apis/{group}{rest:.*}", self._grouped)
        app.router.add_route("*", "/{tail:.*}", self._unknown)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:
            sockets = getattr(site._server, "sockets", None) or []  # aiohttp keeps the bound socket here
            self.port = int(sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Close watches and the listener."""
        for task in list(self._watches):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()

    # --- discovery ---

    async def _version(self, request: web.Request) -> web.Response:
        return web.json_response(discovery.VERSION)

    async def _api(self, request: web.Request) -> web.Response:
        return web.json_response(discovery.core_versions())

    async def _apis(self, request: web.Request) -> web.Response:
        return web.json_response(discovery.group_list(self.registry))

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats.as_dict())

    async def _openapi_index(self, request: web.Request) -> web.Response:
        return web.json_response(openapi.index(self.registry))

    async def _openapi_document(self, request: web.Request) -> web.Response:
        parts = request.match_info["rest"].split("/")
        group, version = ("", parts[0]) if request.match_info["prefix"] == "api" else (parts[0], parts[-1])
        if version not in self.registry.groups().get(group, []):
            return _status(errors.no_resource(request.path))
        return web.json_response(openapi.document(self.registry, group, version, self.store.schemas))

    async def _unknown(self, request: web.Request) -> web.Response:
        # kubectl probes /openapi/v2 and /openapi/v3; a 404 makes it fall back to what it can do without.
        return _status(errors.no_resource(request.path))

    async def _core(self, request: web.Request) -> web.StreamResponse:
        version, rest = request.match_info["version"], request.match_info["rest"]
        if not rest.strip("/"):
            if request.method != "GET":
                return _status(errors.APIError(405, "MethodNotAllowed", "method not allowed"))
            return web.json_response(discovery.resource_list(self.registry, "", version))
        return await self._resource(request, "", version, rest)

    async def _grouped(self, request: web.Request) -> web.StreamResponse:
        group, rest = request.match_info["group"], request.match_info["rest"]
        parts = [p for p in rest.split("/") if p]
        if not parts:
            if group not in self.registry.groups():
                return _status(errors.no_resource(request.path))
            return web.json_response(discovery.group(self.registry, group))
        version = parts[0]
        if len(parts) == 1:
            if version not in self.registry.groups().get(group, []):
                return _status(errors.no_resource(request.path))
            return web.json_response(discovery.resource_list(self.registry, group, version))
        return await self._resource(request, group, version, "/" + "/".join(parts[1:]))

    # --- resources ---

    async def _resource(
        self, request: web.Request, group: str, version: str, rest: str
    ) -> web.StreamResponse:
        parts = [p for p in rest.split("/") if p]
        namespace: str | None = None
        # /namespaces/NS/PLURAL/... is namespaced; /namespaces/NAME[/status] is a Namespace itself.
        if len(parts) >= 3 and parts[0] == "namespaces" and parts[2] not in ("status", "finalize"):
            namespace, parts = parts[1], parts[2:]
        if not parts:
            return _status(errors.no_resource(request.path))
        plural, name, sub = (
            parts[0],
            (parts[1] if len(parts) > 1 else None),
            (parts[2] if len(parts) > 2 else None),
        )
        info = self.registry.get(group, version, plural)
        if info is None:
            return _status(errors.no_resource(request.path))
        if not info.namespaced:
            namespace = None
        verb = request.method
        watching = request.query.get("watch") in ("1", "true")
        self.stats.count(
            "WATCH" if watching else verb, f"{info.plural}/{parts[2]}" if len(parts) > 2 else info.plural
        )
        try:
            if watching:
                return await self._watch(request, info, namespace)
            return await self._dispatch(request, info, namespace, name, sub)
        except errors.APIError as exc:
            return _status(exc)

    async def _dispatch(
        self, request: web.Request, info: registry.ResourceInfo, namespace: str | None, name: str | None,
        sub: str | None,
    ) -> web.StreamResponse:  # fmt: skip
        if sub not in (None, "status"):
            raise errors.no_resource(request.path)
        if sub == "status" and not info.status:
            raise errors.no_resource(request.path)
        ns = namespace or ""
        method = request.method
        if name is None:
            if method == "GET":
                items, rv = self.store.list_objects(
                    info, namespace, labels=request.query.get("labelSelector", ""),
                    fields=request.query.get("fieldSelector", ""),
                )  # fmt: skip
                if "as=Table" in request.headers.get("Accept", ""):
                    return web.json_response(tables.table(info, items, rv))
                return web.json_response({"kind": f"{info.kind}List", "apiVersion": info.api_version,
                                          "metadata": {"resourceVersion": rv}, "items": items})  # fmt: skip
            if method == "POST":
                body = await _body(request)
                dry = request.query.get("dryRun") == "All"
                created = self.store.create(info, ns, body, dry_run=dry)
                return web.json_response(created, status=201)
            if method == "DELETE":
                items, _ = self.store.list_objects(
                    info, namespace, labels=request.query.get("labelSelector", "")
                )
                for item in items:
                    self.store.delete(
                        info, ns or item["metadata"].get("namespace", ""), item["metadata"]["name"]
                    )
                return web.json_response({"kind": f"{info.kind}List", "apiVersion": info.api_version,
                                          "metadata": {}, "items": items})  # fmt: skip
            raise errors.APIError(405, "MethodNotAllowed", f"{method} is not allowed on a collection")
        if method == "GET":
            body = self.store.get(info, ns, name)
            if "as=Table" in request.headers.get("Accept", ""):
                return web.json_response(tables.table(info, [body], body["metadata"]["resourceVersion"]))
            return web.json_response(body)
        if method == "PUT":
            body = await _body(request)
            return web.json_response(self.store.update(info, ns, name, lambda _: body, subresource=sub))
        if method == "PATCH":
            kind = request.content_type
            if kind not in (patching.MERGE, patching.JSON_PATCH, patching.STRATEGIC, patching.APPLY):
                raise errors.unsupported_media(kind)
            patch = await _body(request, allow_list=kind == patching.JSON_PATCH)
            if kind == patching.APPLY:
                try:
                    self.store.get(info, ns, name)
                except errors.APIError as missing:
                    if missing.code != 404:
                        raise
                    assert isinstance(patch, dict)
                    patch.setdefault("metadata", {})["name"] = name
                    return web.json_response(self.store.create(info, ns, patch), status=201)
            return web.json_response(self.store.patch(info, ns, name, patch, kind, subresource=sub))
        if method == "DELETE":
            return web.json_response(self.store.delete(info, ns, name))
        raise errors.APIError(405, "MethodNotAllowed", f"{method} is not allowed")

    async def _watch(
        self, request: web.Request, info: registry.ResourceInfo, namespace: str | None
    ) -> web.StreamResponse:
        match = selectors.matcher(
            request.query.get("labelSelector", ""), request.query.get("fieldSelector", "")
        )
        watcher = Watcher(info=info, namespace=namespace, match=match)
        since = request.query.get("resourceVersion", "")
        timeout = float(request.query.get("timeoutSeconds", "1800") or 1800)
        bookmarks = request.query.get("allowWatchBookmarks") in ("1", "true")
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        self.store.watchers.add(watcher)
        task = asyncio.current_task()
        if task is not None:
            self._watches.add(task)
        try:
            if since in ("", "0"):
                items, _ = self.store.list_objects(info, namespace,
                                                   labels=request.query.get("labelSelector", ""),
                                           fields=request.query.get("fieldSelector", ""))  # fmt: skip
                for item in items:
                    await _send(response, "ADDED", item)
            else:
                try:
                    backlog = self.store.replay(watcher, int(since))
                except (ValueError, errors.APIError) as exc:
                    gone = exc if isinstance(exc, errors.APIError) else errors.gone(0)
                    await _send(response, "ERROR", gone.status())
                    return response
                for event in backlog:
                    await _send(response, event.type, self._as(info, event.object))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while (left := deadline - loop.time()) > 0:
                try:
                    event = await asyncio.wait_for(watcher.queue.get(), timeout=min(left, BOOKMARK_EVERY))
                except TimeoutError:
                    if bookmarks:
                        mark = {"kind": info.kind, "apiVersion": info.api_version,
                                "metadata": {"resourceVersion": str(self.store.rv)}}  # fmt: skip
                        await _send(response, "BOOKMARK", mark)
                    continue
                await _send(response, event.type, self._as(info, event.object))
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.store.watchers.discard(watcher)
            if task is not None:
                self._watches.discard(task)
        with contextlib.suppress(ConnectionResetError, RuntimeError):
            await response.write_eof()
        return response

    def _as(self, info: registry.ResourceInfo, body: dict[str, Any]) -> dict[str, Any]:
        return {**body, "apiVersion": info.api_version}


async def _send(response: web.StreamResponse, kind: str, body: dict[str, Any]) -> None:
    await response.write(json.dumps({"type": kind, "object": body}).encode() + b"\n")


async def _body(request: web.Request, *, allow_list: bool = False) -> Any:
    if "protobuf" in request.content_type:
        # client-go retries in JSON after a 415 for protobuf.
        raise errors.unsupported_media(request.content_type)
    raw = await request.read()
    try:
        if request.content_type == patching.APPLY or request.content_type.endswith("yaml"):
            body = yaml.safe_load(raw)
        else:
            body = json.loads(raw)
    except (ValueError, yaml.YAMLError) as exc:
        raise errors.bad_request(f"the request body is not valid JSON/YAML: {exc}") from None
    if isinstance(body, dict) or (allow_list and isinstance(body, list)):
        return body
    raise errors.bad_request("the request body must be a JSON object")


def _status(exc: errors.APIError) -> web.Response:
    return web.json_response(exc.status(), status=exc.code)
