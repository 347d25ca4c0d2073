"""An async Kubernetes REST client on aiohttp, configured like kubectl.

Kopf's own client is private; the handlers need a handful of verbs on arbitrary resources (KServe
objects, Jobs, ControllerRevisions), so this is a thin typed layer over the REST paths with errors
that say what happened (NotFound, Conflict, Invalid) instead of bare HTTP codes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import ssl
from collections.abc import Mapping
from typing import Any, Literal

import aiohttp

Body = dict[str, Any]
PatchType = Literal["merge", "json", "strategic"]
_PATCH_CONTENT = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
}


class APIError(Exception):
    """The API server refused a request; ``status`` is the HTTP code, ``reason`` the Status reason."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class NotFound(APIError):
    """404."""


class Conflict(APIError):
    """409: a stale resourceVersion, or the object already exists (``reason == "AlreadyExists"``)."""


class Invalid(APIError):
    """422: the server's validation refused the object."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Resource:
    """Where a kind lives in the REST API."""

    group: str
    version: str
    plural: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        """``group/version`` or ``v1`` for the core group."""
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(
        self, namespace: str | None = None, name: str | None = None, subresource: str | None = None
    ) -> str:
        """The REST path of the collection, or of one object (and its subresource)."""
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name:
            base += f"/{name}"
            if subresource:
                base += f"/{subresource}"
        return base


@dataclasses.dataclass(frozen=True, kw_only=True)
class Connection:
    """Server address and credentials, as kubectl would use them."""

    server: str
    token: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify: bool = True


def load_connection() -> Connection:
    """In-cluster service account first, then ``$KUBECONFIG`` / ``~/.kube/config``."""
    from kubernetes import client, config

    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    token = None
    auth = configuration.api_key.get("authorization") or configuration.api_key.get("BearerToken")
    if auth:
        token = auth.removeprefix("Bearer ").strip()
    return Connection(
        server=configuration.host.rstrip("/"),
        token=token,
        ca_file=configuration.ssl_ca_cert,
        cert_file=configuration.cert_file,
        key_file=configuration.key_file,
        verify=bool(configuration.verify_ssl),
    )


class Client:
    """The verbs the operator uses. One instance per process; close it on shutdown."""

    def __init__(self, connection: Connection, *, timeout: float = 30.0) -> None:
        self.connection = connection
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        #: Requests by verb, for the scale benchmark and the operator's metrics.
        self.requests: dict[str, int] = {}

    async def close(self) -> None:
        """Release the connection pool."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def get(self, resource: Resource, namespace: str, name: str) -> Body:
        """One object, or :class:`NotFound`."""
        return await self._call("GET", resource.path(namespace, name))

    async def list_objects(
        self, resource: Resource, namespace: str | None, *, labels: Mapping[str, str] | None = None
    ) -> Body:
        """A list, filtered by equality label selectors."""
        params = {"labelSelector": ",".join(f"{k}={v}" for k, v in labels.items())} if labels else None
        return await self._call("GET", resource.path(namespace), params=params)

    async def create(self, resource: Resource, namespace: str, body: Body) -> Body:
        """Create; :class:`Conflict` with reason AlreadyExists when the name is taken."""
        return await self._call("POST", resource.path(namespace), body=body)

    async def replace(self, resource: Resource, namespace: str, name: str, body: Body) -> Body:
        """PUT: fails with :class:`Conflict` when ``body`` carries a stale resourceVersion."""
        return await self._call("PUT", resource.path(namespace, name), body=body)

    async def patch(
        self,
        resource: Resource,
        namespace: str,
        name: str,
        patch: Body | list[Body],
        *,
        kind: PatchType = "merge",
        subresource: str | None = None,
    ) -> Body:
        """PATCH the object or its subresource (``status``)."""
        path = resource.path(namespace, name, subresource)
        return await self._call("PATCH", path, body=patch, content_type=_PATCH_CONTENT[kind])

    async def delete(self, resource: Resource, namespace: str, name: str) -> None:
        """Delete; a missing object is not an error (it is what was wanted)."""
        with contextlib.suppress(NotFound):
            await self._call(
                "DELETE", resource.path(namespace, name), body={"propagationPolicy": "Background"}
            )

    async def _call(
        self,
        method: str,
        path: str,
        *,
        body: Body | list[Body] | None = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Body:
        session = await self._ensure_session()
        headers = {"Accept": "application/json", "Content-Type": content_type}
        if self.connection.token:
            headers["Authorization"] = f"Bearer {self.connection.token}"
        data = json.dumps(body) if body is not None else None
        self.requests[method] = self.requests.get(method, 0) + 1
        async with session.request(
            method, self.connection.server + path, data=data, params=params, headers=headers
        ) as response:
            text = await response.text()
            payload: Body = json.loads(text) if text and text.lstrip().startswith("{") else {}
            if response.status < 400:
                return payload
            raise _error(response.status, payload, text)

    async def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=self._ssl(), limit=64)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self._session

    def _ssl(self) -> ssl.SSLContext | bool:
        if not self.connection.server.startswith("https"):
            return False
        if not self.connection.verify:
            return False
        context = ssl.create_default_context(cafile=self.connection.ca_file)
        if self.connection.cert_file and self.connection.key_file:
            context.load_cert_chain(self.connection.cert_file, self.connection.key_file)
        return context


def _error(status: int, payload: Body, text: str) -> APIError:
    reason = str(payload.get("reason") or "")
    message = str(payload.get("message") or text[:300])
    if status == 404:
        return NotFound(status, reason or "NotFound", message)
    if status == 409:
        return Conflict(status, reason or "Conflict", message)
    if status == 422:
        return Invalid(status, reason or "Invalid", message)
    return APIError(status, reason or "Error", message)
