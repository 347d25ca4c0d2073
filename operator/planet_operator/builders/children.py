"""Every child of a pipeline, in apply order."""

from __future__ import annotations

from typing import Any

from planet_operator.builders import config, engine_job, graph, inference
from planet_operator.builders.plan import Plan
from planet_operator.builders.revision import needs_engine_build


def build_all(plan: Plan, *, include_job: bool = True) -> list[dict[str, Any]]:
    """ConfigMaps, the engine-build Job(s), the primary and canary InferenceServices, the graph."""
    releases = [plan.stable] + ([plan.canary] if plan.canary is not None else [])
    objects: list[dict[str, Any]] = [config.config_map(plan, release) for release in releases]
    if include_job:
        objects += [engine_job.engine_job(plan, r) for r in releases if needs_engine_build(r.spec)]
    objects += [inference.inference_service(plan, service) for service in plan.services()]
    objects.append(graph.inference_graph(plan))
    return objects
