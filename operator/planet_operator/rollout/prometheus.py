"""A small async client for Prometheus's instant-query API (``/api/v1/query``).

One attempt per call and no retries: the operator requeues, so a down Prometheus costs one failed
check per interval instead of a burst of requests.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self

import aiohttp


class PrometheusError(Exception):
    """A query could not be answered: bad query, HTTP error, timeout or unreachable server."""

    def __init__(self, message: str, *, kind: str, status: int | None = None) -> None:
        super().__init__(message)
        #: Prometheus's ``errorType`` (``bad_data``, ``execution``, ...), or ``http``, ``timeout``,
        #: ``unreachable``, ``protocol``.
        self.kind = kind
        self.status = status


@dataclasses.dataclass(frozen=True, kw_only=True)
class Sample:
    """One element of an instant vector (or a scalar, with no labels)."""

    labels: Mapping[str, str]
    value: float
    timestamp: float


class PrometheusClient:
    """Instant queries against one Prometheus server.

    Use as ``async with PrometheusClient(base_url=...) as client``, or call :meth:`close` when done.
    """

    def __init__(
        self, *, base_url: str, timeout: float = 10.0, session: aiohttp.ClientSession | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._session = session
        self._owns_session = session is None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session if this client created it."""
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def query(self, promql: str, *, time: datetime.datetime | None = None) -> list[Sample]:
        """Evaluate ``promql`` at ``time`` (Prometheus's now when None).

        Returns:
            The vector's samples; a scalar result becomes one sample without labels.

        Raises:
            PrometheusError: the query is invalid, the server answered an error, or did not answer in time.
        """
        form = {"query": promql, "timeout": f"{self.timeout:g}s"}
        if time is not None:
            form["time"] = f"{time.timestamp():.3f}"
        body = await self._post("/api/v1/query", form)
        return _samples(body.get("data"))

    async def _post(self, path: str, form: Mapping[str, str]) -> dict[str, Any]:
        if self._session is None:
            # trust_env: a cluster that reaches Prometheus through HTTP_PROXY (NO_PROXY honoured).
            self._session = aiohttp.ClientSession(trust_env=True)
        url = self.base_url + path
        # POST form: long PromQL does not hit URL length limits.
        try:
            async with self._session.post(
                url, data=dict(form), timeout=aiohttp.ClientTimeout(total=self.timeout)
            ) as response:
                text = await response.text()
                status = response.status
        except TimeoutError as exc:
            raise PrometheusError(f"{url}: no answer within {self.timeout:g}s", kind="timeout") from exc
        except aiohttp.ClientError as exc:
            raise PrometheusError(f"{url}: unreachable: {exc}", kind="unreachable") from exc
        try:
            body = json.loads(text)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise PrometheusError(
                f"{url}: HTTP {status}, not a Prometheus answer: {text[:200]!r}", kind="http", status=status
            )
        if body.get("status") != "success":
            kind = str(body.get("errorType") or "http")
            raise PrometheusError(
                f"{url}: {kind}: {body.get('error', f'HTTP {status}')}", kind=kind, status=status
            )
        return body


def _samples(data: object) -> list[Sample]:
    if not isinstance(data, dict):
        raise PrometheusError("answer has no data", kind="protocol")
    kind, result = data.get("resultType"), data.get("result")
    try:
        if kind == "vector" and isinstance(result, list):
            return [
                Sample(
                    labels=dict(item["metric"]),
                    value=float(item["value"][1]),
                    timestamp=float(item["value"][0]),
                )
                for item in result
            ]
        if kind == "scalar" and isinstance(result, list):
            return [Sample(labels={}, value=float(result[1]), timestamp=float(result[0]))]
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise PrometheusError(f"malformed {kind} result: {exc}", kind="protocol") from exc
    raise PrometheusError(f"expected an instant vector or scalar, got {kind!r}", kind="protocol")
