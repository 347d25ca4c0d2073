"""What a reconcile needs from the outside world, passed in so tests can run it directly."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable, Mapping
from typing import Any

from planet_operator.kube.client import Client
from planet_operator.rollout import prometheus

#: ``emit(pipeline_body, type, reason, message)`` posts a Kubernetes Event about the pipeline.
Emit = Callable[[Mapping[str, Any], str, str, str], None]


def utcnow() -> datetime.datetime:
    """Timezone-aware now (the rollout machine refuses naive times)."""
    return datetime.datetime.now(datetime.UTC)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
    """Operator-wide knobs (``planet operator`` flags)."""

    #: Longest sleep between reconciles of an idle pipeline; child events wake it sooner.
    resync_seconds: float = 60.0
    #: Add ``namespace="…"`` to analysis queries (clusters whose scrape config adds that label).
    namespace_label: bool = True
    #: Shortest analysis window; Prometheus needs a few scrapes in a range to compute a rate.
    min_window_seconds: float = 60.0


@dataclasses.dataclass(kw_only=True)
class Context:
    """Clients and settings for one operator process."""

    client: Client
    emit: Emit
    settings: Settings = dataclasses.field(default_factory=Settings)
    clock: Callable[[], datetime.datetime] = utcnow
    _prometheus: dict[str, prometheus.PrometheusClient] = dataclasses.field(default_factory=dict)

    def prometheus(self, address: str) -> prometheus.PrometheusClient:
        """One client per Prometheus address, reused across reconciles."""
        if address not in self._prometheus:
            self._prometheus[address] = prometheus.PrometheusClient(base_url=address)
        return self._prometheus[address]

    async def close(self) -> None:
        """Close every connection pool."""
        await self.client.close()
        for client in self._prometheus.values():
            await client.close()
