"""What to deploy: the stable revision, an optional canary, and the live (non-revision) settings."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from planet_contracts.api.spec import PlanetPipelineSpec
from planet_operator.builders import names

Mode = Literal["knative", "standard"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Release:
    """A revision and the spec it was made from."""

    revision: str
    spec: PlanetPipelineSpec


@dataclasses.dataclass(frozen=True, kw_only=True)
class Service:
    """One InferenceService of a plan: which component of which revision, under which name."""

    name: str
    component: str
    release: Release
    canary: bool


def components(spec: PlanetPipelineSpec) -> list[str]:
    """The components a revision runs: generate, and upscale when it has an upscale chain."""
    return [names.GENERATE] + ([names.UPSCALE] if spec.upscale is not None else [])


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
    def handoff(self) -> bool:
        """A promoted canary keeps all traffic while the primary rolls to its revision (Flagger's way)."""
        return self.canary is not None and self.canary.revision == self.stable.revision

    def primary(self) -> list[Service]:
        """The stable revision's InferenceServices, under the names that never change."""
        return [
            Service(name=names.service(self.pipeline, c), component=c, release=self.stable, canary=False)
            for c in components(self.stable.spec)
        ]

    def canaries(self) -> list[Service]:
        """The canary revision's InferenceServices, named after it (none without a canary)."""
        if self.canary is None:
            return []
        rev = self.canary.revision
        return [
            Service(name=names.service(self.pipeline, c, rev), component=c, release=self.canary, canary=True)
            for c in components(self.canary.spec)
        ]

    def services(self) -> list[Service]:
        """Every InferenceService to apply: the primary, and the canary beside it."""
        return self.primary() + self.canaries()

    def serving(self) -> list[Service]:
        """The services whose readiness is the pipeline's: the canary's while it has all traffic."""
        return self.canaries() if self.canary_percent >= 100 else self.primary()

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
