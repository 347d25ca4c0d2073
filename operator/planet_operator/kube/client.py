"""An async Kubernetes REST client on aiohttp, configured like kubectl.

Kopf's own client is private; the handlers need a handful of verbs on arbitrary resources (KServe
objects, Jobs, ControllerRevisions), so this is a thin typed layer over the REST paths with errors
that say what happened (NotFound, Conflict, Invalid) instead of bare HTTP codes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import ssl
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

import aiohttp

Body = dict[str, Any]
PatchType = Literal["merge", "json", "strategic"]
_PATCH_CONTENT = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
}
#: How often a token file is read again: the kubelet rewrites a projected ServiceAccount token well
#: before it expires (bound tokens live about an hour); client-go re-reads it once a minute too.
TOKEN_REREAD_SECONDS = 60.0

log = logging.getLogger(__name__)


class APIError(Exception):
    """The API server refused a request; ``status`` is the HTTP code, ``reason`` the Status reason.

    ``verb`` and ``path`` say which request it was (empty when built by hand).
    """

    def __init__(self, status: int, reason: str, message: str, *, verb: str = "", path: str = "") -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.verb = verb
        self.path = path


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
    #: Where ``token`` came from when it is a file the kubelet rotates (in-cluster): read it again.
    token_file: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify: bool = True


def load_connection(*, token_file: str | None = None, ca_file: str | None = None) -> Connection:
    """In-cluster service account first, then ``$KUBECONFIG`` / ``~/.kube/config``.

    Args:
        token_file: the ServiceAccount token (default: the path the kubelet mounts it at).
        ca_file: the cluster CA bundle next to it.
    """
    from kubernetes import client, config
    from kubernetes.config import incluster_config

    token_file = token_file or incluster_config.SERVICE_TOKEN_FILENAME
    configuration = client.Configuration()
    try:
        # The loader ``load_incluster_config`` uses, with paths; our client re-reads the token itself.
        incluster_config.InClusterConfigLoader(  # type: ignore[no-untyped-call]
            token_filename=token_file,
            cert_filename=ca_file or incluster_config.SERVICE_CERT_FILENAME,
            try_refresh_token=False,
        ).load_and_set(client_configuration=configuration)
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        token_file = None
    auth = configuration.api_key.get("authorization") or configuration.api_key.get("BearerToken")
    return Connection(
        server=configuration.host.rstrip("/"),
        token=_bearer(auth) if auth else None,
        token_file=token_file,
        ca_file=configuration.ssl_ca_cert,
        cert_file=configuration.cert_file,
        key_file=configuration.key_file,
        verify=bool(configuration.verify_ssl),
    )


def _bearer(auth: str) -> str | None:
    """The token of an ``Authorization`` value.

    The in-cluster loader writes ``bearer <token>``, kubeconfig ``Bearer <token>``: the scheme is
    case-insensitive (RFC 9110).
    """
    scheme, _, rest = auth.strip().partition(" ")
    if scheme.lower() == "bearer":
        return rest.strip() or None
    return auth.strip() or None


class Client:
    """The verbs the operator uses. One instance per process; close it on shutdown.

    Credentials are kept fresh the way client-go keeps them: a token file is read again at most
    every ``token_reread_seconds``, and a 401 re-authenticates (the token file, else ``reload``,
    e.g. :func:`load_connection` for kubeconfig exec plugins) and retries the request once.
    """

    def __init__(
        self,
        connection: Connection,
        *,
        timeout: float = 30.0,
        reload: Callable[[], Connection] | None = None,
        token_reread_seconds: float = TOKEN_REREAD_SECONDS,
    ) -> None:
        self.connection = connection
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._retired: list[aiohttp.ClientSession] = []
        self._reload = reload
        self._reread_seconds = token_reread_seconds
        self._token_read_at = time.monotonic()
        self._auth_lock = asyncio.Lock()
        #: Requests by verb, for the scale benchmark and the operator's metrics.
        self.requests: dict[str, int] = {}

    async def close(self) -> None:
        """Release the connection pool."""
        for session in [*self._retired, *([self._session] if self._session else [])]:
            await session.close()
        self._retired.clear()
        self._session = None

    async def get(self, resource: Resource, namespace: str, name: str) -> Body:
        """One object, or :class:`NotFound`."""
        return await self._call("GET", resource.path(namespace, name), verb="get")

    async def list_objects(
        self,
        resource: Resource,
        namespace: str | None,
        *,
        labels: Mapping[str, str] | None = None,
        fields: Mapping[str, str] | None = None,
    ) -> Body:
        """A list, filtered by equality label and field selectors."""
        params = {}
        if labels:
            params["labelSelector"] = ",".join(f"{k}={v}" for k, v in labels.items())
        if fields:
            params["fieldSelector"] = ",".join(f"{k}={v}" for k, v in fields.items())
        return await self._call("GET", resource.path(namespace), params=params or None, verb="list")

    async def create(self, resource: Resource, namespace: str, body: Body) -> Body:
        """Create; :class:`Conflict` with reason AlreadyExists when the name is taken."""
        return await self._call("POST", resource.path(namespace), body=body, verb="create")

    async def replace(self, resource: Resource, namespace: str, name: str, body: Body) -> Body:
        """PUT: fails with :class:`Conflict` when ``body`` carries a stale resourceVersion."""
        return await self._call("PUT", resource.path(namespace, name), body=body, verb="update")

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
        return await self._call("PATCH", path, body=patch, content_type=_PATCH_CONTENT[kind], verb="patch")

    async def delete(self, resource: Resource, namespace: str, name: str) -> None:
        """Delete; a missing object is not an error (it is what was wanted)."""
        with contextlib.suppress(NotFound):
            await self._call(
                "DELETE",
                resource.path(namespace, name),
                body={"propagationPolicy": "Background"},
                verb="delete",
            )

    async def _call(
        self,
        method: str,
        path: str,
        *,
        body: Body | list[Body] | None = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        verb: str = "",
    ) -> Body:
        data = json.dumps(body) if body is not None else None
        if self.connection.token_file and time.monotonic() - self._token_read_at >= self._reread_seconds:
            self._reread_token()
        used = self.connection
        status, payload, text = await self._send(used, method, path, data, params, content_type)
        if status == 401 and await self._reauthenticate(used):
            # Once, with the new credentials: a 401 means nothing ran, so even a POST may go again.
            status, payload, text = await self._send(
                self.connection, method, path, data, params, content_type
            )
        if status < 400:
            return payload
        raise _error(status, payload, text, verb=verb or method.lower(), path=path)

    async def _send(
        self,
        connection: Connection,
        method: str,
        path: str,
        data: str | None,
        params: Mapping[str, str] | None,
        content_type: str,
    ) -> tuple[int, Body, str]:
        session = await self._ensure_session()
        headers = {"Accept": "application/json", "Content-Type": content_type}
        if connection.token:
            headers["Authorization"] = f"Bearer {connection.token}"
        self.requests[method] = self.requests.get(method, 0) + 1
        async with session.request(
            method, connection.server + path, data=data, params=params, headers=headers
        ) as response:
            text = await response.text()
            payload: Body = json.loads(text) if text and text.lstrip().startswith("{") else {}
            return response.status, payload, text

    async def _reauthenticate(self, used: Connection) -> bool:
        """New credentials after a 401; False when there are none to try (the same would fail)."""
        async with self._auth_lock:
            if self.connection != used:
                return True  # a concurrent request has refreshed them already
            if self.connection.token_file:
                self._reread_token()
            elif self._reload is not None:
                try:
                    fresh = await asyncio.to_thread(self._reload)
                except Exception as exc:  # the 401 is the error to report, not the failed reload
                    log.warning("cannot reload the connection after a 401: %s", exc)
                    return False
                if _tls(fresh) != _tls(self.connection) and self._session is not None:
                    # Requests in flight keep the old pool; close() releases it.
                    self._retired.append(self._session)
                    self._session = None
                self.connection = fresh
            return self.connection != used

    def _reread_token(self) -> None:
        """The token file again (a small local file: read synchronously, as client-go does)."""
        path = self.connection.token_file
        assert path is not None
        self._token_read_at = time.monotonic()
        try:
            with open(path) as f:
                token = f.read().strip()
        except OSError as exc:
            log.warning("cannot re-read the token file %s, keeping the current token: %s", path, exc)
            return
        if not token:
            log.warning("token file %s is empty, keeping the current token", path)
        elif token != self.connection.token:
            log.info("token file %s changed: using the new token", path)
            self.connection = dataclasses.replace(self.connection, token=token)

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


def _tls(connection: Connection) -> tuple[object, ...]:
    """What the connection pool's SSL context is built from."""
    c = connection
    return (c.server, c.ca_file, c.cert_file, c.key_file, c.verify)


def _error(status: int, payload: Body, text: str, *, verb: str = "", path: str = "") -> APIError:
    reason = str(payload.get("reason") or "")
    message = str(payload.get("message") or text[:300])
    where = {"verb": verb, "path": path}
    if status == 404:
        return NotFound(status, reason or "NotFound", message, **where)
    if status == 409:
        return Conflict(status, reason or "Conflict", message, **where)
    if status == 422:
        return Invalid(status, reason or "Invalid", message, **where)
    return APIError(status, reason or "Error", message, **where)
