"""Indexes of the children (so a reconcile reads memory, not the API) and the events that wake owners."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from planet_contracts.api import resource
from planet_operator.handlers.wakeups import WAKEUPS
from planet_operator.reconcile import diagnose

#: Labels on every child the operator creates.
OWNED = {resource.LABEL_MANAGED_BY: resource.MANAGER}
#: Engine-build Jobs: shared by every pipeline with the key, so selected by the key, not the owner.
BUILDS = {resource.LABEL_ENGINE_KEY: kopf.PRESENT}

SERVICES = ("serving.kserve.io", "v1beta1", "inferenceservices")
GRAPHS = ("serving.kserve.io", "v1alpha1", "inferencegraphs")
REVISIONS = ("apps", "v1", "controllerrevisions")
CONFIGS = ("", "v1", "configmaps")
JOBS = ("batch", "v1", "jobs")
PODS = ("", "v1", "pods")

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
    # Build and predictor pods carry the children's labels (Job template, KServe's predictor labels).
    PODS: OWNED,
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


def _owner_uids(body: Mapping[str, Any]) -> list[str]:
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


@kopf.index(*PODS, labels=FILTERS[PODS])
def planet_pods(namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any) -> Any:
    """Pods by (namespace, kind, name) of the Job or InferenceService they run for: why a child fails.

    Only what explains a failure is kept (phase, conditions, container states), not whole pods.
    """
    owner = diagnose.pod_owner(labels)
    return {(namespace or "", *owner): diagnose.slim_pod(body)} if owner else None


@kopf.on.event(*PODS, labels=FILTERS[PODS])
def pod_changed(namespace: str | None, labels: kopf.Labels, **kwargs: Any) -> None:
    """A child's pod moved (a crash, a pull error, a build that ended): wake the pipelines it serves.

    Pods are owned by ReplicaSets and Jobs, not by pipelines; the owners are found in the indexes
    (which Kopf passes by their functions' names).
    """
    planet_services: kopf.Index[tuple[str, str], dict[str, Any]] = kwargs["planet_services"]
    planet_jobs: kopf.Index[tuple[str, str], dict[str, Any]] = kwargs["planet_jobs"]
    owner = diagnose.pod_owner(labels)
    if owner is None:
        return
    kind, name = owner
    if kind == "Job":
        key = str(labels.get(resource.LABEL_ENGINE_KEY, ""))
        for job in planet_jobs.get((namespace or "", key), []):
            for uid in _owner_uids(job):
                WAKEUPS.wake(uid)
        for uid in list(WAITING_ON.get(key, ())):
            WAKEUPS.wake(uid)
        return
    for service in planet_services.get(_key(namespace, labels), []):
        if service.get("metadata", {}).get("name") == name:
            for uid in _owner_uids(service):
                WAKEUPS.wake(uid)


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
#: are not its owners, so they register here (:func:`wait_for_build`).
WAITING_ON: dict[str, set[str]] = {}


def wait_for_build(uid: str, key: str | None) -> None:
    """Record that pipeline ``uid`` now waits on the build of ``key`` (None: on no build)."""
    stop_waiting(uid, keep=key)
    if key:
        WAITING_ON.setdefault(key, set()).add(uid)


def stop_waiting(uid: str, *, keep: str | None = None) -> None:
    """Forget ``uid`` under every engine key but ``keep``; keys nobody waits on go."""
    for key in [k for k in WAITING_ON if k != keep]:
        WAITING_ON[key].discard(uid)
        if not WAITING_ON[key]:
            del WAITING_ON[key]
