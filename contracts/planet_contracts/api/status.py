"""``PlanetPipeline.status``: what the operator reports."""

from __future__ import annotations

from typing import Literal, get_args

import pydantic

from planet_contracts.api.rules import RuledModel

Phase = Literal[
    "Pending", "Building", "Deploying", "Progressing", "Ready", "Degraded", "RolledBack", "Failed"
]
PHASES: tuple[Phase, ...] = get_args(Phase)
ConditionType = Literal["EnginesReady", "Ready", "RolloutProgressing", "Degraded"]


class StatusModel(RuledModel):
    """Status parts are rewritten by the operator, so they are not frozen."""

    model_config = pydantic.ConfigDict(frozen=False)


class Condition(StatusModel):
    """A Kubernetes-style condition."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str = ""
    message: str = ""
    last_transition_time: str | None = None
    observed_generation: int | None = None


class HistoryEntry(StatusModel):
    """One revision's life: when it started serving, how it ended."""

    revision: str
    version: str | None = None
    started: str | None = None
    finished: str | None = None
    result: Literal["Progressing", "Promoted", "RolledBack", "Aborted", "Superseded", "Failed"] = (
        "Progressing"
    )
    reason: str = ""


class RolloutState(StatusModel):
    """Where a canary rollout stands; persisted so a restarted operator resumes at the same step."""

    step: int = 0
    step_started: str | None = None
    paused: bool = False
    failed_checks: int = 0
    inconclusive_checks: int = 0
    last_analysis: str | None = None
    message: str = ""


class PlanetPipelineStatus(StatusModel):
    """The observed state of a pipeline."""

    phase: Phase = "Pending"
    conditions: list[Condition] = pydantic.Field(default_factory=list)
    observed_generation: int | None = None
    current_revision: str | None = None
    stable_revision: str | None = None
    canary_revision: str | None = None
    traffic_percent: int | None = pydantic.Field(default=None, ge=0, le=100)
    url: str | None = None
    engine_key: str | None = None
    rollout: RolloutState | None = None
    history: list[HistoryEntry] = pydantic.Field(default_factory=list)
