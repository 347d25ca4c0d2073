"""The pipeline config a predictor reads (``--pipeline-config``), shipped as an immutable ConfigMap."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from planet_contracts.api.resource import API_VERSION
from planet_operator.builders import meta, names
from planet_operator.builders.plan import Plan, Release, effective_spec
from planet_operator.builders.revision import model_hash

CONFIG_FILE = "pipeline.json"
CONFIG_DIR = "/etc/planetgen"


def pipeline_config(plan: Plan, release: Release, component: str) -> dict[str, Any]:
    """The document a predictor of ``release`` loads."""
    spec = effective_spec(plan.live, release)
    return {
        "apiVersion": API_VERSION,
        "kind": "PipelineConfig",
        "pipeline": plan.pipeline,
        "namespace": plan.namespace,
        "revision": release.revision,
        "component": component,
        "modelHash": model_hash(spec),
        "spec": spec.model_dump(mode="json", by_alias=True, exclude_none=True),
    }


def config_map(plan: Plan, release: Release) -> dict[str, Any]:
    """One ConfigMap per (revision, live settings): named by content, never edited in place."""
    data = {
        component: json.dumps(pipeline_config(plan, release, component), sort_keys=True, indent=2)
        for component in (names.GENERATE, names.UPSCALE)
    }
    digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:8]
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta.object_meta(
            plan, name=f"{names.config_map(plan.pipeline, release.revision)}-{digest}", release=release
        ),
        "immutable": True,
        "data": {f"{component}.json": text for component, text in data.items()},
    }
