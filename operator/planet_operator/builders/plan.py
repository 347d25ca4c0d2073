"""What to deploy: the stable revision, an optional canary, and the live (non-revision) settings."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from planet_operator.api.spec import PlanetPipelineSpec

Mode = Literal["knative", "standard"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Release:
    """A revision and the spec it was made from."""

    revision: str
    spec: PlanetPipelineSpec


@dataclasses.dataclass(frozen=True, kw_only=True)
class Plan:
    """Everything the builders need; nothing they would have to look up."""

    pipeline: str
    namespace: str
    #: The spec as it is now: lanes, autoscaling and batching apply to every revision at once.
    live: PlanetPipelineSpec
    stable: Release
    canary: Release | None = None
    canary_percent: int = 0
    owner: dict[str, Any] | None = None
    mode: Mode | None = None

    @property
    def deployment_mode(self) -> Mode:
        """``mode`` when forced (``planet render --mode``), else what the spec says."""
        return self.mode or self.live.serving.deployment_mode


def effective_spec(live: PlanetPipelineSpec, release: Release) -> PlanetPipelineSpec:
    """The revision's served model with the live serving, autoscaling and rollout settings."""
    serving = live.serving.model_copy(update={"images": release.spec.serving.images})
    return release.spec.model_copy(
        update={
            "serving": serving,
            "autoscaling": live.autoscaling,
            "rollout": live.rollout,
            "rollback": live.rollback,
        }
    )


def single(pipeline: str, namespace: str, spec: PlanetPipelineSpec, revision: str, **kwargs: Any) -> Plan:
    """A plan with one revision taking all traffic (what ``planet render`` shows)."""
    return Plan(
        pipeline=pipeline,
        namespace=namespace,
        live=spec,
        stable=Release(revision=revision, spec=spec),
        **kwargs,
    )
