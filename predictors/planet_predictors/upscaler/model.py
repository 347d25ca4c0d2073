"""The upscaler ``kserve.Model``: parse ▶ admit + batch ▶ stage chain ▶ encode with provenance."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from planet_predictors import imaging
from planet_predictors.config import PipelineConfig
from planet_predictors.quality.verifier import Verdict
from planet_predictors.serving import errors, protocol
from planet_predictors.serving import model as serving
from planet_predictors.serving.batcher import Stop
from planet_predictors.serving.metrics import Metrics
from planet_predictors.upscaler import engines, inputs
from planet_predictors.upscaler import stages as st

log = logging.getLogger(__name__)
TIMING_KEYS = ("queue", "stages", "encode_image", "total")


@dataclasses.dataclass(frozen=True)
class ServeSettings(serving.ServeSettings):
    """The shared knobs plus the largest input image accepted."""

    max_input_pixels: int = 4 * 1536 * 640


@dataclasses.dataclass(frozen=True)
class Upscaled:
    """One finished image and its per-stage records."""

    pixels: np.ndarray[Any, Any]
    stages: list[engines.StageResult]


class UpscalerModel(serving.BatchedModel[inputs.UpscaleRequest, Upscaled]):
    """Upscale-chain predictor; ``ready`` only after every stage ran once on a small image."""

    kind = "upscaler"

    def __init__(
        self,
        name: str,
        *,
        config: PipelineConfig,
        chain: engines.Chain,
        stages: tuple[st.Stage, ...],
        serve: ServeSettings,
        metrics: Metrics,
        backend_name: str = "torch",
    ) -> None:
        super().__init__(name, config=config, serve=serve, metrics=metrics, backend_name=backend_name)
        self.chain = chain
        self.stages = stages
        spec = config.spec
        from planet_predictors.sdxl.prompts import PromptBuilder

        self.limits = inputs.Limits(
            prompts=PromptBuilder(spec.generation.prompt),
            lanes=tuple(spec.serving.lanes),
            default_lane=spec.serving.default_lane,
            max_instances=serve.max_instances,
            max_input_pixels=serve.max_input_pixels,
            chain=stages,
            default_model=spec.upscale.model.uri if spec.upscale and spec.upscale.model else None,
            default_steps=spec.generation.steps,
            supports=chain.supports,
            cost_limits=st.cost_limits(spec, stages, max_input_pixels=serve.max_input_pixels),
        )

    async def preprocess(self, payload: Any, headers: dict[str, str] | None = None) -> inputs.ParsedBatch:
        """Decode images off the event loop; bad input is a 400 naming the field."""
        try:
            return await asyncio.to_thread(inputs.parse, payload, self.limits)
        except RecursionError:
            raise errors.BadRequest("body", "nested too deeply") from None

    def _warm_up(self) -> None:
        """Load the img2img pass if any, then run the chain once on a small image."""
        if self.chain.detail is not None:
            self.chain.detail.load()
        if self.serve.warmup:
            # Small but big enough for the 8-pixel VAE grid; resize stages keep their full size.
            probe = engines.Job(np.zeros((64, 64, 3), dtype=np.uint8), prompt="warm-up", seed=0)
            warm = tuple(
                dataclasses.replace(s, steps=1, strength=1.0) if isinstance(s, st.Img2Img) else s
                for s in self.stages
                if not isinstance(s, st.Resize)
            )
            self.chain.run([probe], warm)

    # -- work ---------------------------------------------------------------------------------

    def _run_batch(self, batch: Sequence[inputs.UpscaleRequest], stop: Stop) -> list[Upscaled]:
        """Runs in the device thread; every request of a batch has the same chain."""
        jobs = [engines.Job(r.pixels, prompt=r.prompt, seed=r.seed) for r in batch]
        images, records = self.chain.run(jobs, batch[0].stages, stop=stop)
        for request, record in zip(batch, records, strict=True):
            for stage in record:
                self.metrics.observe(request.lane, stage.type, stage.ms / 1000)
        return [Upscaled(im, rec) for im, rec in zip(images, records, strict=True)]

    def _finish(
        self, request: inputs.UpscaleRequest, result: Upscaled, queue_seconds: float, started: float
    ) -> dict[str, Any]:
        """Score one image, encode it with provenance and build its V1 prediction (runs in a thread)."""
        image = Image.fromarray(result.pixels)
        verdict = self.score(image, request.prompt, request.lane)
        encode_started = time.perf_counter()
        data = imaging.encode(image, request.format, provenance=self.provenance(request, verdict))
        timings = {
            "queue": queue_seconds,
            "stages": sum(s.ms for s in result.stages) / 1000,
            "encode_image": time.perf_counter() - encode_started,
            "total": time.perf_counter() - started,
        }
        self.metrics.observe(request.lane, "encode_image", timings["encode_image"])
        self.metrics.count_images(request.lane)
        return protocol.prediction(
            request,
            data=data,
            size=image.size,
            revision=self.config.revision,
            timings=timings,
            keys=TIMING_KEYS,
            quality=verdict.as_dict() if verdict is not None else None,
            stages=[s.as_dict() for s in result.stages],
        )

    def provenance(self, request: inputs.UpscaleRequest, verdict: Verdict | None = None) -> dict[str, str]:
        """This step's ``planetgen:*`` keys only: the chain, the input file's hash, and its score if any.

        The input's own keys are not carried over (a client can write any text chunk); the
        generate step's provenance stays verifiable in the file ``planetgen:input_sha256`` names.
        """
        chain = [dataclasses.asdict(s) for s in request.stages]
        keys = {
            **serving.provenance(self.config, seed=request.seed, prompt=request.prompt),
            "planetgen:upscale": json.dumps(chain, separators=(",", ":")),
            "planetgen:input_sha256": request.input_sha256,
        }
        if verdict is not None:
            keys["planetgen:quality"] = f"{verdict.score:.3f}"
        return keys
