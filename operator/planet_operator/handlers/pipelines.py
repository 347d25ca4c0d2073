"""PlanetPipeline handlers: a reconcile loop per pipeline, woken by changes, resynced periodically."""

from __future__ import annotations

from typing import Any

import kopf

from planet_operator import metrics
from planet_operator.api import resource
from planet_operator.handlers import children
from planet_operator.handlers.wakeups import WAKEUPS
from planet_operator.kube.client import APIError
from planet_operator.reconcile import core, observe
from planet_operator.reconcile.context import Context

Index = kopf.Index[tuple[str, str], dict[str, Any]]
PIPELINES = (resource.GROUP, resource.VERSION, resource.PLURAL)
#: Back-off after a failed reconcile (API errors, Prometheus down): grows to a minute.
BACKOFF = (1.0, 2.0, 5.0, 15.0, 30.0, 60.0)
#: The phase each pipeline is in, for the pipelines-by-phase gauge.
_PHASES: dict[str, str] = {}
#: (generation, labels, annotations) last seen per pipeline uid: what a reconcile depends on.
_SEEN: dict[str, tuple[Any, ...]] = {}


@kopf.on.event(*PIPELINES)
def changed(uid: str, body: kopf.Body, **_: Any) -> None:
    """Spec, labels or annotations changed: reconcile now.

    A raw event handler rather than ``on.create/update/resume``: those persist Kopf's progress
    and diff-base annotations, two PATCHes per change that nothing here needs (the daemon reconciles
    at start, so creation and operator restarts are covered). Status writes, ours included, are
    events too; the fingerprint keeps them from waking the loop that made them.
    """
    meta = body.get("metadata", {})
    fingerprint = (meta.get("generation"), _stable(meta.get("labels")), _stable(meta.get("annotations")))
    if _SEEN.get(uid) != fingerprint:
        _SEEN[uid] = fingerprint
        WAKEUPS.wake(uid)


@kopf.daemon(*PIPELINES, cancellation_timeout=10.0)
async def reconcile_loop(
    body: kopf.Body,
    uid: str,
    stopped: kopf.DaemonStopped,
    memo: kopf.Memo,
    logger: kopf.Logger,
    **kwargs: Any,
) -> None:
    """Reconcile, then sleep until a child or the spec changes, a rollout step is due, or resync."""
    ctx: Context = memo["context"]
    try:
        await _loop(ctx, body, uid, stopped, logger, kwargs)
    finally:
        if stopped.reason and stopped.reason & kopf.DaemonStoppingReason.RESOURCE_DELETED:
            # Children go with their ownerReferences; only the operator's own bookkeeping is left.
            # Done here, not in an on.delete handler: any changing handler makes Kopf persist a
            # diff-base annotation on every pipeline, a write per change that nothing needs.
            WAKEUPS.forget(uid)
            _SEEN.pop(uid, None)
            _PHASES.pop(uid, None)
            _publish_phases()
            logger.info("pipeline deleted; its children are garbage-collected by ownerReferences")


async def _loop(
    ctx: Context, body: kopf.Body, uid: str, stopped: kopf.DaemonStopped, logger: kopf.Logger, kwargs: Any
) -> None:
    # Kopf passes every index by its function's name (see handlers.children).
    planet_services: Index = kwargs["planet_services"]
    planet_graphs: Index = kwargs["planet_graphs"]
    planet_revisions: Index = kwargs["planet_revisions"]
    planet_jobs: Index = kwargs["planet_jobs"]
    planet_configs: Index = kwargs["planet_configs"]
    failures = 0
    while not stopped:
        key = (body.metadata.namespace or "", body.metadata.name or "")
        observed = observe.Observed(
            services=_by_name(planet_services.get(key, [])),
            graphs=_by_name(planet_graphs.get(key, [])),
            revisions=_by_label(planet_revisions.get(key, []), resource.LABEL_REVISION),
            configs=_by_name(planet_configs.get(key, [])),
            jobs={k[1]: next(iter(v)) for k, v in planet_jobs.items() if k[0] == key[0] and v},
        )
        delay = ctx.settings.resync_seconds
        try:
            result = await core.reconcile(ctx, body, observed)
        except (APIError, OSError, TimeoutError) as exc:
            # Level-based: the next pass recomputes everything, so a retry after a pause is enough.
            delay = _failed(exc, failures, logger)
            failures += 1
        except Exception as exc:
            logger.exception("reconcile crashed; retrying")
            delay = _failed(exc, failures, logger)
            failures += 1
        else:
            failures = 0
            if result.requeue_after is not None:
                delay = min(delay, result.requeue_after)
            if result.waiting_on:
                children.WAITING_ON.setdefault(result.waiting_on, set()).add(uid)
            _PHASES[uid] = result.phase
            _publish_phases()
        await WAKEUPS.wait(uid, seconds=delay)


def _failed(exc: BaseException, failures: int, logger: kopf.Logger) -> float:
    metrics.RECONCILE_ERRORS.labels(error=type(exc).__name__).inc()
    delay = BACKOFF[min(failures, len(BACKOFF) - 1)]
    logger.warning("reconcile failed (retry in %.0fs): %s", delay, exc)
    return delay


def _by_name(bodies: Any) -> dict[str, dict[str, Any]]:
    return {str(b["metadata"]["name"]): b for b in bodies}


def _by_label(bodies: Any, label: str) -> dict[str, dict[str, Any]]:
    return {str(b["metadata"]["labels"][label]): b for b in bodies}


def _stable(mapping: Any) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((str(k), str(v)) for k, v in (mapping or {}).items()))


def _publish_phases() -> None:
    for phase in (
        "Pending",
        "Building",
        "Deploying",
        "Progressing",
        "Ready",
        "Degraded",
        "RolledBack",
        "Failed",
    ):
        metrics.PIPELINES.labels(phase=phase).set(sum(1 for p in _PHASES.values() if p == phase))
