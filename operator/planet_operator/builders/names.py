"""Names and labels of children, derived from the pipeline's name and revision."""

from __future__ import annotations

import hashlib

from planet_contracts.api import resource

GENERATE = "generate"
UPSCALE = "upscale"


def service(pipeline: str, component: str, canary: str | None = None) -> str:
    """An InferenceService: ``<p>-generate`` serves the stable revision, ``<p>-generate-<rev>`` a canary.

    Flagger's primary/canary in KServe's terms: the primary's name never changes (clients may call
    it directly), a canary runs beside it under its revision's name until promoted or rolled back.
    """
    return f"{pipeline}-{component}" if canary is None else f"{pipeline}-{component}-{canary}"


def generate_service(pipeline: str, canary: str | None = None) -> str:
    """The SDXL InferenceService (of the canary revision ``canary`` when given)."""
    return service(pipeline, GENERATE, canary)


def upscale_service(pipeline: str, canary: str | None = None) -> str:
    """The upscaler InferenceService (of the canary revision ``canary`` when given)."""
    return service(pipeline, UPSCALE, canary)


def graph(pipeline: str) -> str:
    """The InferenceGraph clients call: generate ▶ upscale."""
    return pipeline


def config_map(pipeline: str, revision: str) -> str:
    """The immutable per-revision pipeline config, so a rollback finds its config unchanged."""
    return f"{pipeline}-{revision}"


def engine_job(engine_key: str) -> str:
    """Build Jobs are shared across pipelines with the same engine key."""
    return f"planet-engine-{engine_key[:16]}"


def controller_revision(pipeline: str, revision: str) -> str:
    """The apps/v1 ControllerRevision that stores a revision's spec."""
    return f"{pipeline}-{revision}"


#: Where upscaler checkpoints are mounted in the upscale predictor (KServe storage initializer).
UPSCALER_ROOT = "/mnt/upscalers"


def upscaler_dir(uri: str) -> str:
    """The mount folder of the upscaler checkpoint at ``uri``; the predictor uses the same function."""
    return f"{UPSCALER_ROOT}/{hashlib.sha256(uri.encode()).hexdigest()[:12]}"


def labels(pipeline: str, revision: str, component: str | None = None) -> dict[str, str]:
    """Labels every child carries (DESIGN)."""
    out = {
        resource.LABEL_PIPELINE: pipeline,
        resource.LABEL_REVISION: revision,
        resource.LABEL_MANAGED_BY: resource.MANAGER,
    }
    if component:
        out[resource.LABEL_COMPONENT] = component
    return out
