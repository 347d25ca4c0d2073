"""Indexes of the children (so a reconcile reads memory, not the API) and the events that wake owners."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from planet_operator.api import resource
from planet_operator.handlers.wakeups import WAKEUPS

#: Labels on every child the operator creates.
OWNED = {resource.LABEL_MANAGED_BY: resource.MANAGER}
#: Engine-build Jobs: shared by every pipeline with the key, so selected by the key, not the owner.
BUILDS = {resource.LABEL_ENGINE_KEY: kopf.PRESENT}

SERVICES = ("serving.kserve.io", "v1beta1", "inferenceservices")
GRAPHS = ("serving.kserve.io", "v1alpha1", "inferencegraphs")
REVISIONS = ("apps", "v1", "controllerrevisions")
CONFIGS = ("", "v1", "configmaps")
JOBS = ("batch", "v1", "jobs")

#: Every child resource the handlers below watch, with the one label filter they use on it. Kopf
#: applies ``labels=`` client-side, after listing every object of the kind in the cluster, so
#: lifecycle.configure() sends the same filters to the API server as label selectors; a handler on
#: a child resource takes its filter from here, or the server would not send it what it asks for.
FILTERS: dict[tuple[str, str, str], Mapping[str, Any]] = {
    SERVICES: OWNED,
    GRAPHS: OWNED,
    REVISIONS: OWNED,
    CONFIGS: OWNED,
    JOBS: BUILDS,
}


def label_selector(labels: Mapping[str, Any]) -> str:
    """A Kopf ``labels=`` filter as a Kubernetes label selector (``k=v``, ``k`` exists, ``!k``)."""
    parts: list[str] = []
    for key, value in labels.items():
        if value is kopf.PRESENT:
            parts.append(key)
        elif value is kopf.ABSENT:
            parts.append(f"!{key}")
        elif isinstance(value, str):
            parts.append(f"{key}={value}")
        else:
            raise TypeError(f"label {key!r}: a callable filter has no server-side selector")
    return ",".join(parts)


def _owner_uids(body: kopf.Body) -> list[str]:
    return [ref.get("uid", "") for ref in body.get("metadata", {}).get("ownerReferences", []) or []]


def _key(namespace: str | None, labels: kopf.Labels) -> tuple[str, str]:
    return (namespace or "", str(labels.get(resource.LABEL_PIPELINE, "")))


@kopf.index(*SERVICES, labels=FILTERS[SERVICES])
def planet_services(namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any) -> Any:
    """InferenceServices by (namespace, pipeline)."""
    return {_key(namespace, labels): dict(body)}


@kopf.index(*GRAPHS, labels=FILTERS[GRAPHS])
def planet_graphs(namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any) -> Any:
    """InferenceGraphs by (namespace, pipeline)."""
    return {_key(namespace, labels): dict(body)}


@kopf.index(*REVISIONS, labels=FILTERS[REVISIONS])
def planet_revisions(namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any) -> Any:
    """ControllerRevisions by (namespace, pipeline)."""
    return {_key(namespace, labels): dict(body)}


@kopf.index(*CONFIGS, labels=FILTERS[CONFIGS])
def planet_configs(namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any) -> Any:
    """Per-revision pipeline configs by (namespace, pipeline): immutable, so seeing one is enough."""
    return {_key(namespace, labels): dict(body)}


@kopf.index(*JOBS, labels=FILTERS[JOBS])
def planet_jobs(namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any) -> Any:
    """Engine-build Jobs by (namespace, engine key): shared by every pipeline with that key."""
    return {(namespace or "", str(labels[resource.LABEL_ENGINE_KEY])): dict(body)}


@kopf.on.event(*SERVICES, labels=FILTERS[SERVICES])
@kopf.on.event(*GRAPHS, labels=FILTERS[GRAPHS])
def child_changed(body: kopf.Body, **_: Any) -> None:
    """A child's status moved: let its pipeline look now rather than at the next resync."""
    for uid in _owner_uids(body):
        WAKEUPS.wake(uid)


@kopf.on.event(*JOBS, labels=FILTERS[JOBS])
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
