"""Indexes of the children (so a reconcile reads memory, not the API) and the events that wake owners."""

from __future__ import annotations

from typing import Any

import kopf

from planet_operator.api import resource
from planet_operator.handlers.wakeups import WAKEUPS

OWNED = {resource.LABEL_MANAGED_BY: resource.MANAGER}


def _owner_uids(body: kopf.Body) -> list[str]:
    return [ref.get("uid", "") for ref in body.get("metadata", {}).get("ownerReferences", []) or []]


def _key(namespace: str | None, labels: kopf.Labels) -> tuple[str, str]:
    return (namespace or "", str(labels.get(resource.LABEL_PIPELINE, "")))


@kopf.index("serving.kserve.io", "v1beta1", "inferenceservices", labels=OWNED)
def planet_services(namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any) -> Any:
    """InferenceServices by (namespace, pipeline)."""
    return {_key(namespace, labels): dict(body)}


@kopf.index("serving.kserve.io", "v1alpha1", "inferencegraphs", labels=OWNED)
def planet_graphs(namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any) -> Any:
    """InferenceGraphs by (namespace, pipeline)."""
    return {_key(namespace, labels): dict(body)}


@kopf.index("apps", "v1", "controllerrevisions", labels=OWNED)
def planet_revisions(namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any) -> Any:
    """ControllerRevisions by (namespace, pipeline)."""
    return {_key(namespace, labels): dict(body)}


@kopf.index("", "v1", "configmaps", labels=OWNED)
def planet_configs(namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any) -> Any:
    """Per-revision pipeline configs by (namespace, pipeline): immutable, so seeing one is enough."""
    return {_key(namespace, labels): dict(body)}


@kopf.index("batch", "v1", "jobs", labels={resource.LABEL_ENGINE_KEY: kopf.PRESENT})
def planet_jobs(namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any) -> Any:
    """Engine-build Jobs by (namespace, engine key): shared by every pipeline with that key."""
    return {(namespace or "", str(labels[resource.LABEL_ENGINE_KEY])): dict(body)}


@kopf.on.event("serving.kserve.io", "v1beta1", "inferenceservices", labels=OWNED)
@kopf.on.event("serving.kserve.io", "v1alpha1", "inferencegraphs", labels=OWNED)
def child_changed(body: kopf.Body, **_: Any) -> None:
    """A child's status moved: let its pipeline look now rather than at the next resync."""
    for uid in _owner_uids(body):
        WAKEUPS.wake(uid)


@kopf.on.event("batch", "v1", "jobs", labels={resource.LABEL_ENGINE_KEY: kopf.PRESENT})
def job_changed(body: kopf.Body, **_: Any) -> None:
    """A build finished or failed: wake every pipeline that waits on that engine key."""
    key = body.get("metadata", {}).get("labels", {}).get(resource.LABEL_ENGINE_KEY, "")
    for uid in _owner_uids(body):
        WAKEUPS.wake(uid)
    for uid in list(WAITING_ON.get(key, ())):
        WAKEUPS.wake(uid)


#: Pipelines (uids) waiting for a build, by engine key; pipelines that did not create the Job
#: are not its owners, so they register here.
WAITING_ON: dict[str, set[str]] = {}
