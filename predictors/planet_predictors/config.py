"""The pipeline config file the operator renders from a ``PlanetPipeline`` (flags override it).

``{"apiVersion": "planetgen.io/v1alpha1", "kind": "PipelineConfig", "pipeline": ..., "namespace": ...,
"revision": ..., "component": "generate", "modelHash": ..., "spec": {PlanetPipeline spec, camelCase}}``
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from planet_contracts.api import validation
from planet_contracts.api.spec import PlanetPipelineSpec

API_VERSION = "planetgen.io/v1alpha1"
KIND = "PipelineConfig"


class ConfigError(ValueError):
    """The config file is missing, not JSON, or not a valid pipeline config."""


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """Who this predictor serves and with which spec."""

    spec: PlanetPipelineSpec
    pipeline: str = "local"
    namespace: str = "default"
    revision: str = "dev"
    component: str = "generate"
    model_hash: str = ""


def default() -> PipelineConfig:
    """The config without a file: the spec's own defaults, model at KServe's mount point."""
    return PipelineConfig(spec=PlanetPipelineSpec.model_validate({"model": {"base": {"uri": "/mnt/models"}}}))


def load(path: Path | None) -> PipelineConfig:
    """Read and validate a config file; ``None`` gives :func:`default`."""
    if path is None:
        return default()
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read pipeline config {path}: {exc}") from exc
    return parse(raw, source=str(path))


def parse(raw: Any, *, source: str = "pipeline config") -> PipelineConfig:
    """Validate a decoded config document."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a JSON object")
    if raw.get("apiVersion") != API_VERSION or raw.get("kind") != KIND:
        raise ConfigError(f"{source}: expected apiVersion {API_VERSION} and kind {KIND}")
    spec_raw = raw.get("spec")
    if not isinstance(spec_raw, dict):
        raise ConfigError(f"{source}: spec must be an object")
    try:
        spec = validation.parse_spec(spec_raw, name=str(raw.get("pipeline", "")))
    except validation.InvalidPipeline as exc:
        raise ConfigError(f"{source}: {exc.short()}") from exc
    fields = {
        "pipeline": "pipeline",
        "namespace": "namespace",
        "revision": "revision",
        "component": "component",
        "modelHash": "model_hash",
    }
    values = {py: str(raw[key]) for key, py in fields.items() if raw.get(key) is not None}
    return PipelineConfig(spec=spec, **values)
