"""Where a release's engines stand: built, building (and what the build waits for), or failed, and why."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping
from typing import Any, Literal

from planet_contracts.api.spec import PlanetPipelineSpec
from planet_operator.builders import names, revision
from planet_operator.kube import resources
from planet_operator.kube.client import APIError, Client
from planet_operator.reconcile import causes, diagnose, observe

State = Literal["ready", "building", "failed"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Engines:
    """The build step of one release."""

    state: State
    #: What a running build does and waits for ("" unless building).
    detail: str = ""
    #: A failed build, or one whose pod cannot start or was refused.
    causes: tuple[causes.Cause, ...] = ()


async def assess(
    client: Client,
    observed: observe.Observed,
    spec: PlanetPipelineSpec,
    *,
    namespace: str,
    now: datetime.datetime,
) -> Engines:
    """The engines of ``spec``, from its build Job and that Job's pods (and, if it has none, events)."""
    if not revision.needs_engine_build(spec):
        return Engines(state="ready")
    key = revision.engine_key_of(spec)
    job = observed.jobs.get(key[:63])
    state, _ = observe.job_state(job)
    if state == "complete":
        return Engines(state="ready")
    name = names.engine_job(key)
    pods = observed.pods.get(("Job", name), ())
    if job is not None and state == "failed":
        return Engines(state="failed", causes=(diagnose.job_failed(job, pods),))
    found: list[causes.Cause] = []
    if job is not None and (stuck := diagnose.job_stuck(job, pods, now=now)) is not None:
        found.append(stuck)
    elif job is not None and diagnose.lacks_pods(job, pods, now=now):
        refused = await _pods_refused(client, job, namespace=namespace)
        if refused is not None:
            found.append(refused)
    progress = diagnose.job_progress(job, pods, now=now)
    detail = f"building engines {key[:12]} ({name})" + (f": {progress}" if progress else "")
    return Engines(state="building", detail=detail, causes=tuple(found))


async def _pods_refused(client: Client, job: Mapping[str, Any], *, namespace: str) -> causes.Cause | None:
    """Why a build Job has no pod, from the Job controller's FailedCreate events (read only then)."""
    fields = {
        "involvedObject.kind": "Job",
        "involvedObject.name": str(job["metadata"]["name"]),
        "reason": "FailedCreate",
    }
    try:
        found = await client.list_objects(resources.EVENTS, namespace, fields=fields)
    except APIError:
        return None  # not allowed to read events: the Building message is all there is
    return diagnose.pods_refused(job, found.get("items") or [])
