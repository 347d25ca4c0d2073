"""Status: phase and conditions from what was observed, written only when it changed."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pydantic

from planet_contracts.api import validation
from planet_contracts.api.spec import PlanetPipelineSpec
from planet_contracts.api.status import PlanetPipelineStatus
from planet_operator import metrics
from planet_operator.builders import names
from planet_operator.kube import resources
from planet_operator.reconcile import causes as causes_
from planet_operator.reconcile import history, observe
from planet_operator.reconcile.conditions import get, set_condition
from planet_operator.reconcile.context import Context

Body = Mapping[str, Any]
_WARNING_PHASES = ("RolledBack", "Failed")


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


def graph_url(graph: observe.Body | None, *, standard: bool) -> str | None:
    """Where clients reach the graph.

    In Standard mode KServe 0.20 gives an InferenceGraph a Service but no HTTPRoute, so its
    ``status.url`` (``http://NAME-NS.<domain>``) leads nowhere; its Service does, from inside the
    cluster or through a gateway that routes Services. Knative mode's URL is routed by Knative.
    """
    url = observe.url(graph)
    if not standard or not url or graph is None:
        return url
    meta = graph.get("metadata") or {}
    return f"http://{meta.get('name')}.{meta.get('namespace')}.svc.cluster.local"


def summarise(
    status: PlanetPipelineStatus,
    *,
    spec: PlanetPipelineSpec,
    revision: str,
    observed: observe.Observed,
    pipeline: str,
    deployed: bool,
    building: str,
    routed: Sequence[str],
    causes: Sequence[causes_.Cause] = (),
    waiting: Mapping[str, str] | None = None,
    now: str,
    generation: int | None,
) -> PlanetPipelineStatus:
    """Phase, conditions, URL and history from the children and this pass's causes.

    ``building`` describes a build in progress ("" when none runs); ``routed`` names the
    InferenceServices the graph sends the pipeline's traffic to (the primary's, or a promoted
    canary's while the primary rolls); ``causes`` are the refused writes and failing children of
    this pass; ``waiting`` what each starting InferenceService's pods wait for. Every message says
    what is true now.
    """
    waiting = waiting or {}
    out = status.model_copy(deep=True)
    out.observed_generation = generation
    out.current_revision = revision
    services = {name: observed.services.get(name) for name in routed}
    graph = observed.graphs.get(names.graph(pipeline))
    not_ready = {
        name: "; ".join(filter(None, [observe.not_ready_reason(body), waiting.get(name, "")]))
        for name, body in services.items()
        if not observe.is_ready(body)
    }
    if deployed and not not_ready and not observe.is_ready(graph):
        # Clients call the graph: the pipeline serves when KServe's router does, not before.
        not_ready[names.graph(pipeline)] = observe.not_ready_reason(graph) or "router not ready"
    serving = deployed and not not_ready
    # The graph is the pipeline's one endpoint; its URL does not move while a revision rolls out.
    out.url = graph_url(graph, standard=spec.serving.deployment_mode == "standard") or out.url

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

    # Engines: the build's own causes (refused, failed, stuck) say more than "building".
    builds = [c for c in causes if c.kind == "Job"]
    if builds:
        mark("EnginesReady", False, *causes_.summary(builds))
    elif building:
        mark("EnginesReady", False, "Building", building)
    else:
        reason = "Built" if spec.engine.backend != "torch" else "NotNeeded"
        mark("EnginesReady", True, reason)

    # Readiness: whatever was refused or fails comes first; then the step the pipeline is at.
    if causes:
        mark("Ready", False, *causes_.summary(causes))
    elif serving:
        mark("Ready", True, "Serving", f"revision {out.stable_revision} serving")
    elif deployed:
        detail = "; ".join(f"{name}: {why}" for name, why in sorted(not_ready.items()))
        mark("Ready", False, "PredictorNotReady", detail)
    else:
        mark("Ready", False, "EnginesBuilding" if building else "Pending", building)
    if (
        serving
        and out.stable_revision
        and history.last_result(out.history, out.stable_revision) == "Progressing"
    ):
        out.history = history.finish(
            out.history, revision=out.stable_revision, result="Promoted", reason="ready", now=now
        )

    # Rollout.
    if out.canary_revision and out.rollout is not None:
        paused = out.rollout.paused
        mark("RolloutProgressing", True, "Paused" if paused else "Progressing", out.rollout.message)
    elif out.canary_revision:
        # The canary's InferenceServices run but are not all Ready: no traffic, the clock not started.
        mark(
            "RolloutProgressing",
            True,
            "CanaryStarting",
            f"canary {out.canary_revision} starting; it takes traffic once its predictors are ready",
        )

    # Degraded: something was refused, failed, or stopped serving.
    if causes:
        mark("Degraded", True, *causes_.summary(causes))
    else:
        mark("Degraded", False, "AsExpected")
    out.history = history.trim(out.history, spec.rollback.revisions_kept)
    out.phase = _phase(out, deployed=deployed, serving=serving, building=building, degraded=bool(causes))
    return out


def has_served(status: PlanetPipelineStatus) -> bool:
    """The stable revision became ready once: not being ready now is a loss, not a start."""
    stable = status.stable_revision
    return bool(stable) and history.last_result(status.history, stable or "") == "Promoted"


def reported(status: PlanetPipelineStatus) -> list[str]:
    """The messages of the conditions that quote causes, as the persisted status has them."""
    return [
        c.message for c in status.conditions if c.type in ("Ready", "Degraded", "EnginesReady") and c.message
    ]


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
    # Degraded is announced per cause (reconcile.notices), not again as a phase.
    if before.phase != after.phase and after.phase != "Degraded":
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
