"""What the children say: readiness, URLs and build results, read from raw objects."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from typing import Any, Literal

from planet_contracts.api import resource

Body = Mapping[str, Any]
JobState = Literal["missing", "running", "complete", "failed"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Observed:
    """A snapshot of one pipeline's children (from Kopf indexes, or listed in tests)."""

    services: Mapping[str, Body] = dataclasses.field(default_factory=dict)
    graphs: Mapping[str, Body] = dataclasses.field(default_factory=dict)
    #: Build Jobs of the namespace by engine key: shared across pipelines.
    jobs: Mapping[str, Body] = dataclasses.field(default_factory=dict)
    #: ControllerRevisions of this pipeline by revision.
    revisions: Mapping[str, Body] = dataclasses.field(default_factory=dict)
    #: Pipeline-config ConfigMaps by name.
    configs: Mapping[str, Body] = dataclasses.field(default_factory=dict)
    #: Pods of the namespace's build Jobs and InferenceServices by (kind, name) of what they run for,
    #: slimmed to what explains a failure (reconcile.diagnose.slim_pod).
    pods: Mapping[tuple[str, str], Collection[Body]] = dataclasses.field(default_factory=dict)


def condition(body: Body | None, type: str) -> Mapping[str, Any] | None:
    """A status condition of a child."""
    if not body:
        return None
    for item in (body.get("status") or {}).get("conditions") or []:
        if item.get("type") == type:
            return dict(item)
    return None


def is_ready(body: Body | None) -> bool:
    """Ready=True, as KServe reports it for an InferenceService or an InferenceGraph.

    ``status.observedGeneration`` is not compared: KServe copies it from the Deployment (or Knative
    Service) it made, so it says nothing about the KServe object's own generation. In Knative mode a
    revision still rolling out shows as ``latestCreatedRevision`` ahead of ``latestReadyRevision``.
    """
    ready = condition(body, "Ready")
    if body is None or ready is None or ready.get("status") != "True":
        return False
    predictor = ((body.get("status") or {}).get("components") or {}).get("predictor") or {}
    created, serving = predictor.get("latestCreatedRevision"), predictor.get("latestReadyRevision")
    return not created or not serving or created == serving


def serves_revision(body: Body | None, pods: Collection[Body], revision: str) -> bool:
    """The InferenceService is ready and none of its ready pods serves another revision.

    KServe's Ready (Deployment Available) holds all through a rolling update, while old pods still
    answer: the pods' revision labels say when the update is through. With no pods known (scaled
    to zero, or not indexed) Ready is all there is to go by.
    """
    if not is_ready(body):
        return False
    live = [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp") and _pod_ready(p)]
    return all(_labels(p).get(resource.LABEL_REVISION) == revision for p in live)


def _pod_ready(pod: Body) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def _labels(body: Body) -> Mapping[str, Any]:
    return (body.get("metadata") or {}).get("labels") or {}


def not_ready_reason(body: Body | None) -> str:
    """Why a child is not ready, in its own words when it gave any."""
    if body is None:
        return "not created yet"
    ready = condition(body, "Ready")
    if ready is None:
        return "no status yet"
    return str(ready.get("message") or ready.get("reason") or "not ready")


def url(body: Body | None) -> str | None:
    """``status.url`` of a KServe object."""
    if not body:
        return None
    value = (body.get("status") or {}).get("url")
    return str(value) if value else None


def job_state(job: Body | None) -> tuple[JobState, str]:
    """A Job's outcome and, when it failed, the Job's own reason."""
    if job is None:
        return "missing", ""
    for item in (job.get("status") or {}).get("conditions") or []:
        if item.get("status") != "True":
            continue
        if item.get("type") == "Complete":
            return "complete", ""
        if item.get("type") == "Failed":
            reason = item.get("reason") or "Failed"
            message = item.get("message") or ""
            return "failed", f"{reason}: {message}" if message else str(reason)
    return "running", ""
