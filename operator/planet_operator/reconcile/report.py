"""Status: phase and conditions from what was observed, written only when it changed."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pydantic

from planet_operator import metrics
from planet_operator.api import validation
from planet_operator.api.spec import PlanetPipelineSpec
from planet_operator.api.status import PlanetPipelineStatus
from planet_operator.builders import names
from planet_operator.kube import resources
from planet_operator.reconcile import history, observe
from planet_operator.reconcile.conditions import get, set_condition
from planet_operator.reconcile.context import Context

Body = Mapping[str, Any]
_WARNING_PHASES = ("Degraded", "RolledBack", "Failed")


def load_status(body: Body) -> PlanetPipelineStatus:
    """The persisted status; fields Kopf or a user added are ignored, a corrupt one starts over."""
    raw = dict(body.get("status") or {})
    known = {(info.alias or key) for key, info in PlanetPipelineStatus.model_fields.items()}
    try:
        return PlanetPipelineStatus.model_validate({k: v for k, v in raw.items() if k in known})
    except pydantic.ValidationError:
        return PlanetPipelineStatus()


def invalid(
    status: PlanetPipelineStatus, error: validation.InvalidPipeline, *, now: str, generation: int | None
) -> PlanetPipelineStatus:
    """Failed, with every field problem in the Ready condition."""
    out = status.model_copy(deep=True)
    out.phase = "Failed"
    out.observed_generation = generation
    out.conditions = set_condition(
        out.conditions,
        type="Ready",
        status=False,
        reason="InvalidSpec",
        message=error.short(),
        now=now,
        generation=generation,
    )
    return out


def rollout_ended(status: PlanetPipelineStatus, *, result: str, reason: str, now: str) -> list[Any]:
    """RolloutProgressing=False with how it ended."""
    return set_condition(
        status.conditions,
        type="RolloutProgressing",
        status=False,
        reason=result,
        message=reason,
        now=now,
        generation=status.observed_generation,
    )


def summarise(
    status: PlanetPipelineStatus,
    *,
    spec: PlanetPipelineSpec,
    revision: str,
    observed: observe.Observed,
    pipeline: str,
    deployed: bool,
    building: str,
    build_failed: str,
    now: str,
    generation: int | None,
) -> PlanetPipelineStatus:
    """Phase, conditions, URL and history from the children."""
    out = status.model_copy(deep=True)
    out.observed_generation = generation
    out.current_revision = revision
    wanted = [names.generate_service(pipeline)] + ([names.upscale_service(pipeline)] if spec.upscale else [])
    services = {name: observed.services.get(name) for name in wanted}
    graph = observed.graphs.get(names.graph(pipeline))
    not_ready = {
        name: observe.not_ready_reason(body) for name, body in services.items() if not observe.is_ready(body)
    }
    serving = deployed and not not_ready
    # The graph is the pipeline's one endpoint; its URL does not move while a revision rolls out.
    out.url = observe.url(graph) or out.url

    def mark(kind: str, value: bool | None, reason: str, message: str = "") -> None:
        out.conditions = set_condition(
            out.conditions,
            type=kind,
            status=value,
            reason=reason,
            message=message,
            now=now,
            generation=generation,
        )

    # Engines.
    if build_failed:
        mark("EnginesReady", False, "BuildFailed", build_failed)
    elif building:
        mark("EnginesReady", False, "Building", building)
    else:
        reason = "Built" if spec.engine.backend != "torch" else "NotNeeded"
        mark("EnginesReady", True, reason)

    # Readiness of what serves.
    if serving:
        mark("Ready", True, "Serving", f"revision {out.stable_revision} serving")
        if out.stable_revision and history.last_result(out.history, out.stable_revision) == "Progressing":
            out.history = history.finish(
                out.history, revision=out.stable_revision, result="Promoted", reason="ready", now=now
            )
    elif deployed:
        detail = "; ".join(f"{name}: {why}" for name, why in sorted(not_ready.items()))
        mark("Ready", False, "PredictorNotReady", detail)
    else:
        reason = "BuildFailed" if build_failed else "EnginesBuilding"
        mark("Ready", False, reason, build_failed or building)

    # Rollout.
    if out.canary_revision and out.rollout is not None:
        paused = out.rollout.paused
        mark("RolloutProgressing", True, "Paused" if paused else "Progressing", out.rollout.message)

    # Degraded: a build failed, or something that served stopped serving.
    was_ready = status.phase in ("Ready", "Progressing", "Degraded")
    degraded_reason = (
        "BuildFailed"
        if build_failed
        else ("PredictorNotReady" if deployed and not serving and was_ready else "")
    )
    degraded_message = build_failed or ("; ".join(not_ready.values()) if degraded_reason else "")
    mark("Degraded", bool(degraded_reason), degraded_reason or "AsExpected", degraded_message)
    out.history = history.trim(out.history, spec.rollback.revisions_kept)
    out.phase = _phase(
        out, deployed=deployed, serving=serving, building=building, degraded=bool(degraded_reason)
    )
    return out


def _phase(
    status: PlanetPipelineStatus, *, deployed: bool, serving: bool, building: str, degraded: bool
) -> Any:
    if degraded:
        return "Degraded"
    if not deployed:
        return "Building" if building else "Pending"
    if status.phase == "RolledBack" and not status.canary_revision:
        rolled = get(status.conditions, "RolloutProgressing")
        if (
            rolled is not None
            and rolled.reason in ("RolledBack", "Aborted")
            and status.current_revision != status.stable_revision
        ):
            return "RolledBack"
    if building:
        return "Building"
    if status.canary_revision:
        return "Progressing"
    return "Ready" if serving else "Deploying"


def _dump(status: PlanetPipelineStatus) -> dict[str, Any]:
    return status.model_dump(mode="json", by_alias=True, exclude_none=True)


async def write(ctx: Context, body: Body, before: PlanetPipelineStatus, after: PlanetPipelineStatus) -> bool:
    """Patch the status subresource with what changed; emit an event when the phase moves."""
    old, new = _dump(before), _dump(after)
    if old == new:
        return False
    patch: dict[str, Any] = {key: value for key, value in new.items() if old.get(key) != value}
    patch.update({key: None for key in old if key not in new})  # merge patch: null removes a key
    meta = body["metadata"]
    await ctx.client.patch(
        resources.PIPELINES,
        str(meta.get("namespace") or "default"),
        str(meta["name"]),
        {"status": patch},
        subresource="status",
    )
    if before.phase != after.phase:
        ready = get(after.conditions, "Ready")
        message = ready.message if ready is not None and ready.message else after.phase
        ctx.emit(body, "Warning" if after.phase in _WARNING_PHASES else "Normal", after.phase, message)
        metrics.PHASE_CHANGES.labels(phase=after.phase).inc()
    return True


def describe(status: PlanetPipelineStatus) -> str:
    """One line for logs."""
    return json.dumps(
        {"phase": status.phase, "stable": status.stable_revision, "canary": status.canary_revision}
    )
