"""One reconcile of one pipeline: validate ▶ revisions ▶ engines ▶ rollout ▶ apply ▶ status.

Level-based: every call recomputes what should exist from the spec, the persisted status and the
children, and writes only differences. Running it twice in a row writes nothing the second time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from planet_contracts.api import resource, validation
from planet_contracts.api.resource import API_VERSION, KIND
from planet_contracts.api.spec import PlanetPipelineSpec
from planet_contracts.api.status import PlanetPipelineStatus
from planet_operator import metrics
from planet_operator.builders import children, engine_job, names, plan, revision
from planet_operator.builders.inference import DEPLOYMENT_MODE, MODE_ANNOTATION
from planet_operator.kube import apply, resources
from planet_operator.kube.client import APIError, Conflict
from planet_operator.reconcile import causes, diagnose, engines, history, notices, observe, report
from planet_operator.reconcile.context import Context
from planet_operator.rollout import analysis, machine

Body = Mapping[str, Any]
_MakePlan = Callable[..., plan.Plan]
#: How often a rollout waiting on predictors looks again (their changes also wake it at once).
HANDOFF_POLL_SECONDS = 5.0
#: How long it outlives the graph's change: the router's rollout, and requests in flight through it
#: (at most serving.timeoutSeconds, if that is shorter).
RETIRE_GRACE_SECONDS = 30.0
_T = TypeVar("_T")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Result:
    """What the caller should do next."""

    #: Seconds until the next reconcile is needed even if nothing changes (None: only on change).
    requeue_after: float | None
    phase: str
    #: The engine key this pipeline waits for, when a build is running.
    waiting_on: str | None = None
    #: Why the pipeline is not where its spec wants it (refused writes, failing children).
    causes: tuple[causes.Cause, ...] = ()
    #: Some write was refused: try again (with back-off) even if nothing wakes the pipeline.
    retry: bool = False


@dataclasses.dataclass(kw_only=True)
class _Pass:
    """Working state of one reconcile."""

    ctx: Context
    body: Body
    observed: observe.Observed
    spec: PlanetPipelineSpec
    revision: str
    status: PlanetPipelineStatus
    now: str
    requeue_after: float | None = None
    building: str = ""
    waiting_on: str | None = None
    #: Refused writes and failing children seen so far in this pass.
    causes: list[causes.Cause] = dataclasses.field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.body["metadata"].get("namespace") or "default")

    @property
    def owner(self) -> dict[str, Any]:
        meta = self.body["metadata"]
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": meta["name"],
            "uid": meta.get("uid", ""),
            "controller": True,
            "blockOwnerDeletion": True,
        }


async def reconcile(
    ctx: Context, body: Body, observed: observe.Observed, *, announced: notices.Notices | None = None
) -> Result:
    """Bring one pipeline's children and status in line with its spec.

    ``announced`` (kept in the pipeline's Kopf memo) remembers which causes were announced, so a
    cause that lasts many passes gets one event; without it only the status de-duplicates.
    """
    with metrics.RECONCILE_SECONDS.time():
        return await _reconcile(ctx, body, observed, announced or notices.Notices())


async def _reconcile(
    ctx: Context, body: Body, observed: observe.Observed, announced: notices.Notices
) -> Result:
    now = ctx.clock()
    before = report.load_status(body)
    status = before.model_copy(deep=True)
    name = str(body["metadata"]["name"])

    # 1. Validate: a bad spec changes nothing but status (and an event says why).
    try:
        spec = validation.parse_spec(body.get("spec") or {}, name=name)
    except validation.InvalidPipeline as exc:
        status = report.invalid(status, exc, now=now.isoformat(), generation=_generation(body))
        await report.write(ctx, body, before, status)
        return Result(requeue_after=None, phase=status.phase)

    work = _Pass(
        ctx=ctx,
        body=body,
        observed=observed,
        spec=spec,
        revision=revision.revision_of(spec),
        status=status,
        now=now.isoformat(),
    )
    # 2. Manual rollback to a stored revision replaces the spec; nothing else happens this pass.
    commands = machine.commands_from_annotations(body["metadata"].get("annotations"))
    if commands.rollback_to:
        await _rollback_to(work, commands.rollback_to)
        return Result(requeue_after=0.0, phase=work.status.phase)

    # 3. Every served-model change is a revision, stored with its exact spec.
    await _record_revision(work)

    # 4. Decide what serves: the stable revision and, during a rollout, a canary.
    deployed = await _plan(work, commands)

    # 5. Apply children (only what differs) and drop the ones the spec no longer wants.
    if deployed is not None:
        await _apply(work, deployed)

    # 6. What the children do: predictors that fail, or stopped serving.
    serving = [s.name for s in deployed.serving()] if deployed is not None else []
    work.causes.extend(
        diagnose.services(observed, serving=serving, served=report.has_served(before), now=ctx.clock())
    )

    # 7. Report, then announce what started or stopped going wrong (once per cause).
    found = causes.unique(work.causes)
    work.status = report.summarise(
        work.status,
        spec=spec,
        revision=work.revision,
        observed=observed,
        pipeline=work.name,
        deployed=deployed is not None,
        building=work.building,
        routed=serving,
        causes=found,
        waiting={
            name: diagnose.waiting_for(observed.pods.get(("InferenceService", name), ()), now=now)
            for name in observed.services
        },
        now=work.now,
        generation=_generation(body),
    )
    await report.write(ctx, body, before, work.status)
    changes = announced.update(found, reported=report.reported(before))
    notices.announce(changes, body=body, emit=ctx.emit, subject=f"{work.namespace}/{work.name}")
    return Result(
        requeue_after=work.requeue_after,
        phase=work.status.phase,
        waiting_on=work.waiting_on,
        causes=tuple(found),
        retry=any(c.reason == causes.REJECTED for c in found),
    )


async def _attempt(work: _Pass, kind: str, name: str, call: Awaitable[_T]) -> _T | None:
    """Await one write of a child; a refusal becomes a cause of this pass instead of an error.

    The rest of the pass goes on: other children are still applied and the status still says what
    is true (a refused InferenceService no longer leaves "building engines" behind).
    """
    try:
        return await call
    except APIError as exc:
        if not causes.is_refusal(exc):
            raise
        work.causes.append(causes.refused(kind=kind, name=name, error=exc))
        return None


def _generation(body: Body) -> int | None:
    value = body["metadata"].get("generation")
    return int(value) if value is not None else None


async def _record_revision(work: _Pass) -> None:
    if work.revision in work.observed.revisions:
        return
    stored = history.controller_revision(
        pipeline=work.name,
        namespace=work.namespace,
        revision=work.revision,
        spec=work.body.get("spec") or {},
        version=work.spec.version,
        number=history.next_number(work.observed.revisions),
        owner=work.owner,
    )

    async def create() -> None:
        # Known absent from the index: create without a GET; a 409 means another pass got there first.
        with contextlib.suppress(Conflict):
            await work.ctx.client.create(resources.CONTROLLER_REVISIONS, work.namespace, stored)

    await _attempt(work, "ControllerRevision", stored["metadata"]["name"], create())
    keep = work.spec.rollback.revisions_kept
    protected = {work.revision, work.status.stable_revision or "", work.status.canary_revision or ""}
    for old in history.prunable(work.observed.revisions, keep=keep - 1, protected=protected):
        name = names.controller_revision(work.name, old)
        await _attempt(
            work,
            "ControllerRevision",
            name,
            work.ctx.client.delete(resources.CONTROLLER_REVISIONS, work.namespace, name),
        )


def _stored_spec(work: _Pass, rev: str) -> PlanetPipelineSpec | None:
    if rev == work.revision:
        return work.spec
    stored = work.observed.revisions.get(rev)
    if stored is None:
        return None
    try:
        return history.spec_of(stored)
    except (validation.InvalidPipeline, KeyError, ValueError):
        return None


async def _engines(work: _Pass, release: plan.Release) -> tuple[str, str]:
    """('ready'|'building'|'failed', what the build is doing); a failing build adds its causes."""
    found = await engines.assess(
        work.ctx.client, work.observed, release.spec, namespace=work.namespace, now=work.ctx.clock()
    )
    work.causes.extend(found.causes)
    return found.state, found.detail


async def _plan(work: _Pass, commands: machine.Commands) -> plan.Plan | None:
    status, rev = work.status, work.revision
    stable_rev = status.stable_revision
    stable_spec = _stored_spec(work, stable_rev) if stable_rev else None
    make: _MakePlan = functools.partial(
        plan.Plan,
        pipeline=work.name,
        namespace=work.namespace,
        live=work.spec,
        owner=work.owner,
        mode=_live_mode(work),
    )

    # First deploy (or the stable revision's record is gone): the current revision is all there is.
    if stable_rev is None or stable_spec is None:
        target = plan.Release(revision=rev, spec=work.spec)
        state, detail = await _engines(work, target)
        await _ensure_job(work, target, state)
        if state != "ready":
            work.building = detail
            return None
        status.stable_revision = rev
        status.history = history.begin(status.history, revision=rev, version=work.spec.version, now=work.now)
        return make(stable=target)

    stable = plan.Release(revision=stable_rev, spec=stable_spec)
    # The spec is on the stable revision (it came back, or its canary was promoted).
    if rev == stable_rev:
        if status.canary_revision:
            _end_canary(work, result="Superseded", reason="spec returned to the stable revision")
        promoted = make(stable=stable, canary=stable, canary_percent=100)
        if _handing_off(work, promoted):
            # The promoted canary keeps all traffic until the primary serves its revision.
            _requeue(work, HANDOFF_POLL_SECONDS)
            return promoted
        return make(stable=stable)

    # A revision that was rolled back or aborted stays off until the spec changes again.
    if status.canary_revision != rev and history.last_result(status.history, rev) in (
        "RolledBack",
        "Aborted",
    ):
        if status.canary_revision:
            _end_canary(work, result="Superseded", reason=f"replaced by {rev}")
        work.status.phase = "RolledBack"
        return make(stable=stable)

    canary = plan.Release(revision=rev, spec=work.spec)
    if status.canary_revision and status.canary_revision != rev:
        _end_canary(work, result="Superseded", reason=f"replaced by {rev}")
    state, detail = await _engines(work, canary)
    await _ensure_job(work, canary, state)
    if state != "ready":
        # Engines first: the stable revision keeps all traffic meanwhile.
        work.building = detail
        return make(stable=stable)
    return await _rollout(work, commands, make=make, stable=stable, canary=canary)


async def _ensure_job(work: _Pass, release: plan.Release, state: str) -> None:
    if state == "building":
        work.waiting_on = revision.engine_key_of(release.spec)[:63]
        desired = engine_job.engine_job(
            plan.single(work.name, work.namespace, release.spec, release.revision, owner=work.owner), release
        )
        live = work.observed.jobs.get(revision.engine_key_of(release.spec)[:63])
        await _attempt(
            work,
            "Job",
            desired["metadata"]["name"],
            apply.ensure(work.ctx.client, desired, live=dict(live) if live else None),
        )


async def _rollout(
    work: _Pass, commands: machine.Commands, *, make: _MakePlan, stable: plan.Release, canary: plan.Release
) -> plan.Plan:
    status, spec, ctx = work.status, work.spec, work.ctx
    now = ctx.clock()
    if status.canary_revision != canary.revision:
        status.canary_revision = canary.revision
        status.rollout = None
        status.history = history.begin(
            status.history, revision=canary.revision, version=spec.version, now=work.now
        )
        ctx.emit(
            work.body,
            "Normal",
            "RolloutStarted",
            f"canary {canary.revision} against stable {stable.revision}",
        )
        metrics.ROLLOUTS.labels(result="started").inc()

    if status.rollout is None and not _all_ready(work, make(stable=stable, canary=canary).canaries()):
        # Flagger's rule: no traffic until the canary's predictors are ready (the graph's router
        # also needs their addresses). The rollout's clock starts when they are.
        status.traffic_percent = 0
        _requeue(work, HANDOFF_POLL_SECONDS)
        return make(stable=stable, canary=canary, canary_percent=0)

    result = None
    if machine.analysis_due(spec=spec.rollout, state=status.rollout, now=now):
        address = spec.rollout.analysis.prometheus_address or spec.autoscaling.prometheus_address
        target = analysis.Target(
            pipeline=work.name,
            revision=canary.revision,
            namespace=work.namespace if ctx.settings.namespace_label else None,
        )
        result = await analysis.analyse(
            client=ctx.prometheus(address),
            spec=spec.rollout.analysis,
            target=target,
            now=now,
            min_window_seconds=ctx.settings.min_window_seconds,
        )
    decision = machine.decide(
        spec=spec.rollout,
        rollback=spec.rollback,
        state=status.rollout,
        now=now,
        analysis=result,
        commands=commands,
    )
    if decision.handled:
        await _clear_annotations(work, decision.handled)

    if decision.outcome == "promote":
        status.stable_revision = canary.revision
        _end_canary(work, result="Promoted", reason=decision.reason)
        ctx.emit(work.body, "Normal", "Promoted", f"{canary.revision} promoted: {decision.reason}")
        metrics.ROLLOUTS.labels(result="promoted").inc()
        # The warm canary takes all traffic at once; the primary follows (see _handing_off).
        return make(stable=canary, canary=canary, canary_percent=100)
    if decision.outcome in ("rollback", "abort"):
        result_name = "RolledBack" if decision.outcome == "rollback" else "Aborted"
        _end_canary(work, result=result_name, reason=decision.reason)
        work.status.phase = "RolledBack"
        ctx.emit(work.body, "Warning", result_name, f"{canary.revision}: {decision.reason}")
        metrics.ROLLBACKS.labels(kind="automatic" if decision.outcome == "rollback" else "abort").inc()
        return make(stable=stable)

    status.rollout = decision.state
    weight = machine.canary_weight(spec=spec.rollout, state=decision.state)
    status.traffic_percent = weight
    wait = machine.requeue_after(spec=spec.rollout, state=decision.state, now=now)
    work.requeue_after = max(wait, 0.5)
    return make(stable=stable, canary=canary, canary_percent=weight)


def _live_mode(work: _Pass) -> plan.Mode | None:
    """The mode the running primary has when the spec asks for another; None when they agree.

    KServe refuses to change a live InferenceService's deployment mode (it is pinned in its status),
    so the pipeline keeps serving in the mode it has and says why the spec's mode is not applied.
    """
    primary = work.observed.services.get(names.generate_service(work.name))
    if primary is None:
        return None
    annotations = (primary.get("metadata") or {}).get("annotations") or {}
    live = (primary.get("status") or {}).get("deploymentMode") or annotations.get(MODE_ANNOTATION)
    wanted = work.spec.serving.deployment_mode
    mode: plan.Mode | None = next((m for m, v in DEPLOYMENT_MODE.items() if v == live), None)
    if mode is None or mode == wanted:
        return None
    work.causes.append(
        causes.Cause(
            kind=KIND,
            name=work.name,
            reason="DeploymentModeImmutable",
            message=(
                f"spec.serving.deploymentMode: {wanted} is not applied: KServe cannot change the mode of "
                f"a running InferenceService, so the pipeline keeps serving in {mode} mode. To move, "
                f"create a pipeline with the new mode, move clients to it, then delete this one "
                f"(or set the mode back to {mode})"
            ),
        )
    )
    return mode


def _all_ready(work: _Pass, services: list[plan.Service]) -> bool:
    return all(observe.is_ready(work.observed.services.get(s.name)) for s in services)


def _handing_off(work: _Pass, promoted: plan.Plan) -> bool:
    """A promoted canary still runs and the primary does not yet serve its revision everywhere."""
    canaries = promoted.canaries()
    if not any(s.name in work.observed.services for s in canaries):
        return False
    if not _all_ready(work, canaries):
        # The canary went away or broke: nothing to hand over from, the primary serves as it can.
        return False
    return not all(
        observe.serves_revision(
            work.observed.services.get(s.name),
            work.observed.pods.get(("InferenceService", s.name), ()),
            promoted.stable.revision,
        )
        for s in promoted.primary()
    )


def _end_canary(work: _Pass, *, result: str, reason: str) -> None:
    status = work.status
    if status.canary_revision:
        status.history = history.finish(
            status.history, revision=status.canary_revision, result=result, reason=reason, now=work.now
        )
    status.canary_revision = None
    status.rollout = None
    status.traffic_percent = None
    status.conditions = report.rollout_ended(status, result=result, reason=reason, now=work.now)


async def _clear_annotations(work: _Pass, keys: tuple[str, ...]) -> None:
    patch = {"metadata": {"annotations": dict.fromkeys(keys)}}
    await work.ctx.client.patch(resources.PIPELINES, work.namespace, work.name, patch)


async def _rollback_to(work: _Pass, target: str) -> None:
    """Restore ``target``'s exact spec and serve it at once (no canary: it served before)."""
    stored = work.observed.revisions.get(target)
    spec = _stored_spec(work, target) if stored is not None else None
    if stored is None or spec is None:
        work.ctx.emit(
            work.body, "Warning", "UnknownRevision", f"rollback-to {target}: no such revision is stored"
        )
        await _clear_annotations(work, (machine.ROLLBACK_TO,))
        return
    before = work.status.model_copy(deep=True)
    status = work.status
    if status.canary_revision and status.canary_revision != target:
        _end_canary(work, result="Aborted", reason=f"rollback to {target} requested")
    if status.stable_revision != target:
        status.history = history.begin(status.history, revision=target, version=spec.version, now=work.now)
        status.history = history.finish(
            status.history, revision=target, result="Promoted", reason="manual rollback", now=work.now
        )
    status.stable_revision = target
    status.phase = "RolledBack"
    # Status first: if the operator dies before the spec patch, the annotation is still there and
    # the next pass redoes this idempotently.
    await report.write(work.ctx, work.body, before, status)
    # Replace the whole spec (a merge patch would keep fields added since), drop the annotation.
    annotation = "/metadata/annotations/" + machine.ROLLBACK_TO.replace("~", "~0").replace("/", "~1")
    patch: list[dict[str, Any]] = [
        {"op": "replace", "path": "/spec", "value": history.raw_spec_of(stored)},
        {"op": "remove", "path": annotation},
    ]
    await work.ctx.client.patch(resources.PIPELINES, work.namespace, work.name, patch, kind="json")
    work.ctx.emit(work.body, "Normal", "RolledBack", f"spec restored to revision {target}")
    metrics.ROLLBACKS.labels(kind="manual").inc()


async def _apply(work: _Pass, deployed: plan.Plan) -> None:
    desired = children.build_all(deployed, include_job=False)
    live_by_kind = {
        "InferenceService": work.observed.services,
        "InferenceGraph": work.observed.graphs,
        "ConfigMap": work.observed.configs,
    }
    for obj in desired:
        name = obj["metadata"]["name"]
        live = live_by_kind.get(obj["kind"], {}).get(name)
        await _attempt(
            work,
            obj["kind"],
            name,
            apply.ensure(work.ctx.client, obj, live=dict(live) if live else None, indexed=True),
        )
    wanted = {o["metadata"]["name"] for o in desired if o["kind"] == "InferenceService"}
    for name, live in work.observed.services.items():
        if name not in wanted:
            await _retire(work, name, live)


async def _retire(work: _Pass, name: str, live: Mapping[str, Any]) -> None:
    """Delete an InferenceService the graph no longer routes to, after a grace.

    The graph's change rolls its router's pods; the old router still sends requests (and finishes
    those in flight) to the canary meanwhile. The deadline is an annotation on the service itself,
    so an operator restart keeps it.
    """
    annotations = (live.get("metadata") or {}).get("annotations") or {}
    now = work.ctx.clock()
    deadline = diagnose.parse_time(annotations.get(resource.RETIRE_AFTER))
    if deadline is None:
        grace = min(work.spec.serving.timeout_seconds, RETIRE_GRACE_SECONDS)
        stamp = (now + datetime.timedelta(seconds=grace)).isoformat()
        patch = {"metadata": {"annotations": {resource.RETIRE_AFTER: stamp}}}
        await _attempt(
            work,
            "InferenceService",
            name,
            work.ctx.client.patch(resources.INFERENCE_SERVICES, work.namespace, name, patch),
        )
        _requeue(work, grace)
    elif now < deadline:
        _requeue(work, (deadline - now).total_seconds())
    else:
        await _attempt(
            work,
            "InferenceService",
            name,
            work.ctx.client.delete(resources.INFERENCE_SERVICES, work.namespace, name),
        )


def _requeue(work: _Pass, seconds: float) -> None:
    """Look again in ``seconds`` at the latest (sooner when another part of the pass asks)."""
    seconds = max(seconds, 0.5)
    work.requeue_after = seconds if work.requeue_after is None else min(work.requeue_after, seconds)
