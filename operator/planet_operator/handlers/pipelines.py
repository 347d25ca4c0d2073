"""PlanetPipeline handlers: a reconcile loop per pipeline, woken by changes, resynced periodically."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from typing import Any

import kopf

from planet_contracts.api import resource, status
from planet_operator import metrics
from planet_operator.handlers import children
from planet_operator.handlers.wakeups import WAKEUPS
from planet_operator.kube.client import APIError
from planet_operator.reconcile import causes, core, notices, observe
from planet_operator.reconcile.context import Context

Index = kopf.Index[tuple[str, str], dict[str, Any]]
PodIndex = kopf.Index[tuple[str, str, str], dict[str, Any]]
PIPELINES = (resource.GROUP, resource.VERSION, resource.PLURAL)
#: Back-off after a failed reconcile (API errors, Prometheus down) or a refused write: grows to a
#: minute, and never past the resync interval (a fixed quota or webhook is noticed by then).
BACKOFF = (1.0, 2.0, 5.0, 15.0, 30.0, 60.0)
#: Where a pipeline's Kopf memo keeps the causes it has announced (reconcile.notices).
NOTICES = "notices"
#: Where a pipeline's memo keeps (generation, labels, annotations) as last seen: what a reconcile
#: depends on. Kopf's memo is per resource and forgotten with it.
SEEN = "seen"
#: The phase each pipeline is in, for the pipelines-by-phase gauge: the one state across pipelines
#: (a gauge sums them), pruned when a pipeline goes.
_PHASES: dict[str, str] = {}


@kopf.on.event(*PIPELINES)
def changed(uid: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Spec, labels or annotations changed: reconcile now.

    A raw event handler rather than ``on.create/update/resume``: those persist Kopf's progress
    and diff-base annotations, two PATCHes per change that nothing here needs (the daemon reconciles
    at start, so creation and operator restarts are covered). Status writes, ours included, are
    events too; the fingerprint keeps them from waking the loop that made them.
    """
    meta = body.get("metadata", {})
    fingerprint = (meta.get("generation"), _stable(meta.get("labels")), _stable(meta.get("annotations")))
    if memo.get(SEEN) != fingerprint:
        memo[SEEN] = fingerprint
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
    # Kopf's memo is per pipeline: the announced causes live as long as the pipeline's daemon.
    announced = memo.setdefault(NOTICES, notices.Notices())
    try:
        await _loop(ctx, body, uid, stopped, announced, kwargs)
    finally:
        if stopped.reason and stopped.reason & kopf.DaemonStoppingReason.RESOURCE_DELETED:
            # Children go with their ownerReferences; only the operator's own bookkeeping is left.
            # Done here, not in an on.delete handler: any changing handler makes Kopf persist a
            # diff-base annotation on every pipeline, a write per change that nothing needs.
            WAKEUPS.forget(uid)
            children.stop_waiting(uid)
            _PHASES.pop(uid, None)
            _publish_phases()
            logger.info("pipeline deleted; its children are garbage-collected by ownerReferences")


async def _loop(
    ctx: Context,
    body: kopf.Body,
    uid: str,
    stopped: kopf.DaemonStopped,
    announced: notices.Notices,
    kwargs: Any,
) -> None:
    # Kopf passes every index by its function's name (see handlers.children).
    planet_services: Index = kwargs["planet_services"]
    planet_graphs: Index = kwargs["planet_graphs"]
    planet_revisions: Index = kwargs["planet_revisions"]
    planet_jobs: Index = kwargs["planet_jobs"]
    planet_configs: Index = kwargs["planet_configs"]
    planet_pods: PodIndex = kwargs["planet_pods"]
    # The loop's own failures (a status write refused, the API server unreachable) are announced
    # apart from the pass's causes: one failed pass must not "resolve" a refusal it never reached.
    failing = notices.Notices()
    retries = 0
    while not stopped:
        key = (body.metadata.namespace or "", body.metadata.name or "")
        observed = observe.Observed(
            services=_by_name(planet_services.get(key, [])),
            graphs=_by_name(planet_graphs.get(key, [])),
            revisions=_by_label(planet_revisions.get(key, []), resource.LABEL_REVISION),
            configs=_by_name(planet_configs.get(key, [])),
            jobs={k[1]: next(iter(v)) for k, v in planet_jobs.items() if k[0] == key[0] and v},
            pods=_Scoped(planet_pods, key[0]),
        )
        resync = ctx.settings.resync_seconds
        delay = resync
        subject = f"{key[0]}/{key[1]}"
        try:
            result = await core.reconcile(ctx, body, observed, announced=announced)
        except Exception as exc:
            # Level-based: the next pass recomputes everything, so a retry after a pause is enough.
            metrics.RECONCILE_ERRORS.labels(error=type(exc).__name__).inc()
            cause = causes.reconcile_failed(kind=resource.KIND, name=key[1], error=exc)
            # A crash (a bug, not the API) gets its traceback, once per distinct cause like the rest.
            crashed = not isinstance(exc, APIError | OSError | TimeoutError)
            notices.announce(
                failing.update([cause]),
                body=body,
                emit=ctx.emit,
                subject=subject,
                error=exc if crashed else None,
            )
            delay = _backoff(retries, resync)
            retries += 1
        else:
            notices.announce(failing.update([]), body=body, emit=ctx.emit, subject=subject)
            if result.retry:
                # A refused write: nothing wakes the pipeline when the quota, webhook or RBAC is fixed.
                delay = _backoff(retries, resync)
                retries += 1
            else:
                retries = 0
            if result.requeue_after is not None:
                delay = min(delay, result.requeue_after)
            children.wait_for_build(uid, result.waiting_on)
            _PHASES[uid] = result.phase
            _publish_phases()
        await WAKEUPS.wait(uid, seconds=delay)


def _backoff(retries: int, resync: float) -> float:
    """Seconds before retry number ``retries`` (from 0): the BACKOFF steps, capped at the resync."""
    return min(BACKOFF[min(retries, len(BACKOFF) - 1)], max(resync, BACKOFF[0]))


class _Scoped(Mapping[tuple[str, str], Collection[dict[str, Any]]]):
    """The pod index seen from one namespace: (kind, name) ▶ pods, looked up without a scan."""

    def __init__(self, index: PodIndex, namespace: str) -> None:
        self._index, self._namespace = index, namespace

    def __getitem__(self, key: tuple[str, str]) -> Collection[dict[str, Any]]:
        return self._index[(self._namespace, *key)]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter([(k[1], k[2]) for k in self._index if k[0] == self._namespace])

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _by_name(bodies: Any) -> dict[str, dict[str, Any]]:
    return {str(b["metadata"]["name"]): b for b in bodies}


def _by_label(bodies: Any, label: str) -> dict[str, dict[str, Any]]:
    return {str(b["metadata"]["labels"][label]): b for b in bodies}


def _stable(mapping: Any) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((str(k), str(v)) for k, v in (mapping or {}).items()))


def _publish_phases() -> None:
    for phase in status.PHASES:
        metrics.PIPELINES.labels(phase=phase).set(sum(1 for p in _PHASES.values() if p == phase))
