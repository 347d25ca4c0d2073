"""The SDXL ``kserve.Model``: parse ▶ admit + batch ▶ backend ▶ encode with provenance."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from planet_predictors import imaging
from planet_predictors.backends.base import Backend, BatchParams, Generated, Item
from planet_predictors.config import PipelineConfig
from planet_predictors.quality.verifier import Verdict
from planet_predictors.sdxl import inputs
from planet_predictors.serving import errors, protocol
from planet_predictors.serving import model as serving
from planet_predictors.serving.batcher import Stop
from planet_predictors.serving.metrics import Metrics
from planet_predictors.serving.model import ServeSettings as ServeSettings

TIMING_KEYS = ("queue", "encode_prompt", "denoise", "decode", "encode_image", "total")


class SDXLModel(serving.BatchedModel[inputs.GenerateRequest, Generated]):
    """Text-to-image SDXL predictor; ``ready`` only after a warm-up generation."""

    kind = "sdxl"

    def __init__(
        self, name: str, *, config: PipelineConfig, backend: Backend, serve: ServeSettings, metrics: Metrics
    ) -> None:
        super().__init__(name, config=config, serve=serve, metrics=metrics, backend_name=backend.name)
        self.backend = backend
        self.limits = inputs.Limits.from_spec(config.spec, max_instances=serve.max_instances)

    async def preprocess(self, payload: Any, headers: dict[str, str] | None = None) -> inputs.ParsedBatch:
        """Decode V1/V2 into typed requests; bad input is a 400 naming the field."""
        try:
            return inputs.parse(payload, self.limits)
        except RecursionError:
            raise errors.BadRequest("body", "nested too deeply") from None

    def _warm_up(self) -> None:
        self.backend.load()
        if self.serve.warmup:
            spec = self.config.spec.generation
            params = BatchParams(width=spec.width, height=spec.height, steps=1, guidance=spec.guidance_scale)
            self.backend.generate(params, [Item(prompt="warm-up", negative_prompt="", seed=0)])

    def _run_batch(self, batch: Sequence[inputs.GenerateRequest], stop: Stop) -> list[Generated]:
        """Every request of a batch has the same key (size, steps, guidance)."""
        first = batch[0]
        params = BatchParams(
            width=first.width, height=first.height, steps=first.steps, guidance=first.guidance
        )
        items = [Item(prompt=r.prompt, negative_prompt=r.negative_prompt, seed=r.seed) for r in batch]
        return self.backend.generate(params, items, stop=stop)

    def _finish(
        self, request: inputs.GenerateRequest, generated: Generated, queue_seconds: float, started: float
    ) -> dict[str, Any]:
        """Score one image, encode it with provenance and build its V1 prediction."""
        verdict = self.score(generated.image, request.prompt, request.lane)
        encode_started = time.perf_counter()
        data = imaging.encode(generated.image, request.format, provenance=self.provenance(request, verdict))
        timings = dict.fromkeys(TIMING_KEYS, 0.0) | generated.timings
        timings["queue"] = queue_seconds
        timings["encode_image"] = time.perf_counter() - encode_started
        timings["total"] = time.perf_counter() - started
        for stage in ("encode_prompt", "denoise", "decode", "encode_image"):
            self.metrics.observe(request.lane, stage, timings[stage])
        self.metrics.count_images(request.lane)
        size = (generated.image.width, generated.image.height)
        return protocol.prediction(
            request,
            data=data,
            size=size,
            revision=self.config.revision,
            timings=timings,
            keys=TIMING_KEYS,
            quality=verdict.as_dict() if verdict is not None else None,
        )

    def provenance(self, request: inputs.GenerateRequest, verdict: Verdict | None = None) -> dict[str, str]:
        """The ``planetgen:*`` keys written into every image (``planetgen:quality`` when scored)."""
        keys = {
            **serving.provenance(self.config, seed=request.seed, prompt=request.prompt),
            "planetgen:steps": str(request.steps),
        }
        if verdict is not None:
            keys["planetgen:quality"] = f"{verdict.score:.3f}"
        return keys
