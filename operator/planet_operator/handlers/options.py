"""Operator options, from ``planet operator`` flags or ``PLANET_*`` environment variables."""

from __future__ import annotations

import dataclasses
import os

from planet_operator.reconcile.context import Settings


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    return default if value is None else value.strip().lower() in ("1", "true", "yes", "on")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Options(Settings):
    """How this operator process runs: the reconcile settings, plus where it serves its metrics."""

    metrics_port: int | None = None
    #: A pod's metrics port must be reachable by Prometheus, so all interfaces by default.
    metrics_host: str = "0.0.0.0"

    @classmethod
    def from_env(cls) -> Options:
        """Options from ``PLANET_RESYNC_SECONDS``, ``PLANET_NAMESPACE_LABEL`` and friends."""
        port = os.environ.get("PLANET_METRICS_PORT")
        return cls(
            resync_seconds=float(os.environ.get("PLANET_RESYNC_SECONDS", "60")),
            namespace_label=_flag("PLANET_NAMESPACE_LABEL", True),
            min_window_seconds=float(os.environ.get("PLANET_MIN_WINDOW_SECONDS", "60")),
            metrics_port=int(port) if port else None,
            metrics_host=os.environ.get("PLANET_METRICS_HOST", "0.0.0.0"),
        )


#: Set by ``planet operator`` before Kopf starts; ``kopf run`` falls back to the environment.
current: Options | None = None
