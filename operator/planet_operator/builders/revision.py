"""Revisions: the identity of what is served.

A revision hash covers what changes the images a client gets back (base model, LoRAs, engine
settings, generation defaults, upscale chain, images). Changing anything else (autoscaling, lanes,
rollout policy) updates the serving revision in place instead of starting a canary.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from planet_contracts import engines
from planet_contracts.api.spec import GenerationSpec, PlanetPipelineSpec

#: Length of the short revision id used in names and labels.
REVISION_LENGTH = 10
#: ``generation`` fields (python names) newer than the first revisions: hashed only when not default.
_LATER_FIELDS = ("composition", "verify")


def served_model(spec: PlanetPipelineSpec) -> dict[str, Any]:
    """The part of the spec a revision is made of."""
    dumped = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    generation = dict(dumped["generation"])
    # Fields added after revisions were first hashed count only when set away from their default,
    # so upgrading the operator does not roll every pipeline out again.
    defaults = GenerationSpec().model_dump(mode="json", by_alias=True, include=set(_LATER_FIELDS))
    for key, default in defaults.items():
        if generation.get(key) == default:
            generation.pop(key, None)
    return {
        "model": dumped["model"],
        "generation": generation,
        "upscale": dumped.get("upscale"),
        "engine": dumped["engine"],
        "images": dumped["serving"]["images"],
    }


def revision_of(spec: PlanetPipelineSpec) -> str:
    """Short content hash of :func:`served_model`; equal specs give equal revisions."""
    blob = json.dumps(served_model(spec), sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:REVISION_LENGTH]


def model_hash(spec: PlanetPipelineSpec) -> str:
    """Hash of the weights' identity (base + LoRAs), written into image provenance."""
    blob = json.dumps(spec.model.model_dump(mode="json", by_alias=True), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


def engine_key_of(spec: PlanetPipelineSpec) -> str:
    """The engine cache key for this spec (the same function the builder uses)."""
    return engines.engine_key(
        base_uri=spec.model.base.uri,
        base_revision=spec.model.base.revision,
        loras=[lora.model_dump() for lora in spec.model.loras],
        width=spec.generation.width,
        height=spec.generation.height,
        backend=spec.engine.backend,
        precision=spec.engine.precision,
        batch_sizes=spec.engine.batch_sizes,
        gpu_product=spec.engine.gpu_product,
        tensorrt_version=spec.engine.tensorrt_version,
        upscaler_uris=upscaler_uris(spec),
    )


def upscaler_uris(spec: PlanetPipelineSpec) -> list[str]:
    """Every distinct upscaler checkpoint the chain uses, in stage order."""
    if spec.upscale is None:
        return []
    found: list[str] = []
    for stage in spec.upscale.stages:
        source = stage.model or spec.upscale.model
        if stage.type == "upscale" and source is not None and source.uri not in found:
            found.append(source.uri)
    return found


def needs_engine_build(spec: PlanetPipelineSpec) -> bool:
    """Torch loads weights directly; compiled backends need a build Job first."""
    return spec.engine.backend != "torch"
