"""Kubernetes Events about pipelines, posted by the operator's own client without blocking a reconcile.

Kopf's ``kopf.event`` goes through one background queue that posts one Event at a time; with
hundreds of pipelines changing phase at once that queue fell minutes behind (bench/operator_scale.py
counted its posts as writes long after every pipeline was Ready). Here each Event is its own task on
the shared connection pool, so they go out as fast as the API server takes them.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Mapping
from typing import Any

from planet_operator.kube import resources
from planet_operator.kube.client import APIError, Client

log = logging.getLogger("planet.events")
#: ``source.component`` / ``reportingComponent``: what ``kubectl describe`` shows as "From".
COMPONENT = "planetgen-operator"
#: The most an Event message may hold (the API server's own limit is 1 KiB for core Events' notes).
MAX_MESSAGE = 1024


def event_body(involved: Mapping[str, Any], type_: str, reason: str, message: str) -> dict[str, Any]:
    """A core/v1 Event about ``involved``, named like client-go names them (object name + nanos)."""
    meta = involved.get("metadata", {})
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{meta.get('name')}.{time.time_ns():x}", "namespace": meta.get("namespace")},
        "involvedObject": {
            "apiVersion": involved.get("apiVersion"),
            "kind": involved.get("kind"),
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        },
        "type": type_,
        "reason": reason,
        "message": message[:MAX_MESSAGE],
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": COMPONENT,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


class EventRecorder:
    """``emit(...)`` schedules a post and returns at once; ``flush()`` waits for those in flight."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._pending: set[asyncio.Task[None]] = set()

    def emit(self, involved: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        """Post an Event in the background; a failure is logged, never raised into a reconcile."""
        body = event_body(involved, type_, reason, message)
        task = asyncio.get_running_loop().create_task(self._post(body))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _post(self, body: dict[str, Any]) -> None:
        try:
            await self.client.create(resources.EVENTS, str(body["metadata"]["namespace"]), body)
        except (APIError, OSError, TimeoutError) as exc:
            # Events are best effort, as in client-go's recorder: the status carries the truth.
            log.warning("could not post event %s: %s", body["reason"], exc)

    async def flush(self, seconds: float = 5.0) -> None:
        """Wait (a bounded time) for the posts in flight, e.g. before the client closes."""
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=seconds)
