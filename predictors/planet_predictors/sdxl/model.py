"""The SDXL ``kserve.Model``: parse ▶ admit + batch ▶ backend ▶ encode with provenance."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

import kserve
from kserve.protocol.infer_type import InferOutput, InferResponse

from planet_predictors import imaging
from planet_predictors.backends.base import Backend, BatchParams, Generated, Item
from planet_predictors.config import PipelineConfig
from planet_predictors.sdxl import requests
from planet_predictors.serving import errors, http
from planet_predictors.serving.batcher import Batcher, LaneConfig, device_executor
from planet_predictors.serving.metrics import Metrics

log = logging.getLogger(__name__)
TIMING_KEYS = ("queue", "encode_prompt", "denoise", "decode", "encode_image", "total")


@dataclasses.dataclass(frozen=True)
class ServeSettings:
    """Batching and admission knobs (flags override the pipeline spec)."""

    max_batch_size: int = 4
    max_batch_wait_ms: int = 50
    max_queue: int | None = None  # overrides every lane's maxQueue
    device_concurrency: int = 1
    shed_depth: int | None = None
    timeout_seconds: float = 600.0
    max_instances: int = 16
    warmup: bool = True


class SDXLModel(kserve.Model):  # type: ignore[misc]  # kserve ships no type hints
    """Text-to-image SDXL predictor; ``ready`` only after a warm-up generation."""

    ready: bool

    def __init__(
        self, name: str, *, config: PipelineConfig, backend: Backend, serve: ServeSettings, metrics: Metrics
    ) -> None:
        super().__init__(name)
        self.config = config
        self.backend = backend
        self.serve = serve
        self.metrics = metrics
        self.limits = requests.Limits.from_spec(config.spec, max_instances=serve.max_instances)
        self.batcher: Batcher[requests.GenerateRequest, Generated] | None = None
        self._load_lock = threading.Lock()
        self._device = device_executor(serve.device_concurrency)

    # -- lifecycle ----------------------------------------------------------------------------

    def load(self) -> bool:
        """Load the backend, warm it up, then mark ready; calling it again does nothing."""
        with self._load_lock:
            if self.ready:
                return True
            started = time.perf_counter()
            self.backend.load()
            if self.serve.warmup:
                spec = self.config.spec.generation
                params = BatchParams(
                    width=spec.width, height=spec.height, steps=1, guidance=spec.guidance_scale
                )
                self.backend.generate(params, [Item(prompt="warm-up", negative_prompt="", seed=0)])
            lanes = self.config.spec.serving.lanes
            self.batcher = Batcher(
                self._run_batch,
                lanes=[
                    LaneConfig(
                        name=name,
                        max_concurrency=lane.max_concurrency,
                        max_queue=self.serve.max_queue
                        if self.serve.max_queue is not None
                        else lane.max_queue,
                        priority=lane.priority,
                    )
                    for name, lane in lanes.items()
                ],
                metrics=self.metrics,
                max_batch_size=self.serve.max_batch_size,
                max_wait=self.serve.max_batch_wait_ms / 1000,
                device_slots=self.serve.device_concurrency,
                shed_depth=self.serve.shed_depth,
                executor=self._device,
            )
            seconds = time.perf_counter() - started
            self.metrics.set_engine_load(self.backend.name, seconds)
            log.info("%s backend loaded and warmed in %.1f s", self.backend.name, seconds)
            self.ready = True
            return True

    def _load_and_warm(self) -> None:
        """Runs on the device thread, like every later batch."""
        self.backend.load()
        if self.serve.warmup:
            spec = self.config.spec.generation
            params = BatchParams(width=spec.width, height=spec.height, steps=1, guidance=spec.guidance_scale)
            self.backend.generate(params, [Item(prompt="warm-up", negative_prompt="", seed=0)])

    # -- kserve hooks -------------------------------------------------------------------------

    def validate(self, payload: Any) -> Any:
        """Parsing already validated everything (KServe's own check expects dicts)."""
        return payload

    async def preprocess(self, payload: Any, headers: dict[str, str] | None = None) -> requests.ParsedBatch:
        """Decode V1/V2 into typed requests; bad input is a 400 naming the field."""
        try:
            return requests.parse(payload, self.limits)
        except errors.BadRequest:
            self.metrics.count_error("bad_request")
            raise

    async def predict(
        self, payload: requests.ParsedBatch, headers: dict[str, str] | None = None
    ) -> dict[str, Any] | InferResponse:
        """Queue every image, wait for all, answer in the request's protocol."""
        started = time.perf_counter()
        try:
            outputs = await self._generate_all(payload.requests, started)
        finally:
            for request in payload.requests:
                self.metrics.observe(request.lane, "total", time.perf_counter() - started)
        if payload.protocol == "v2":
            return self._v2_response(payload, outputs)
        return {"predictions": outputs}

    # -- generation ---------------------------------------------------------------------------

    async def _generate_all(
        self, batch: Sequence[requests.GenerateRequest], started: float
    ) -> list[dict[str, Any]]:
        if self.batcher is None:
            raise errors.PlanetError("model is not loaded")
        gone = http.client_gone.get()
        tasks = [
            asyncio.ensure_future(
                self.batcher.submit(
                    request,
                    lane=request.lane,
                    key=request.batch_key(),
                    time_limit=self.serve.timeout_seconds,
                    gone=gone,
                )
            )
            for request in batch
        ]
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        failed = next((t for t in tasks if t in done and t.exception() is not None), None)
        if failed is not None:
            # All or nothing: a refused image frees the slots its siblings hold.
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            exc = failed.exception()
            assert exc is not None
            raise exc
        results = [t.result() for t in tasks]
        return list(
            await asyncio.gather(
                *(
                    asyncio.to_thread(self._finish, request, result.value, result.queue_seconds, started)
                    for request, result in zip(batch, results, strict=True)
                )
            )
        )

    def _run_batch(self, batch: Sequence[requests.GenerateRequest]) -> list[Generated]:
        """Runs in the device thread; every request of a batch has the same key."""
        first = batch[0]
        params = BatchParams(
            width=first.width, height=first.height, steps=first.steps, guidance=first.guidance
        )
        items = [Item(prompt=r.prompt, negative_prompt=r.negative_prompt, seed=r.seed) for r in batch]
        return self.backend.generate(params, items)

    def _finish(
        self, request: requests.GenerateRequest, generated: Generated, queue_seconds: float, started: float
    ) -> dict[str, Any]:
        """Encode one image with provenance and build its V1 prediction (runs in a thread)."""
        encode_started = time.perf_counter()
        data = imaging.encode(generated.image, request.format, provenance=self.provenance(request))
        timings = dict.fromkeys(TIMING_KEYS, 0.0) | generated.timings
        timings["queue"] = queue_seconds
        timings["encode_image"] = time.perf_counter() - encode_started
        timings["total"] = time.perf_counter() - started
        for stage in ("encode_prompt", "denoise", "decode", "encode_image"):
            self.metrics.observe(request.lane, stage, timings[stage])
        self.metrics.count_images(request.lane)
        return {
            "image": base64.b64encode(data).decode("ascii"),
            "format": request.format,
            "width": generated.image.width,
            "height": generated.image.height,
            "seed": request.seed,
            "prompt": request.prompt,
            "lane": request.lane,
            "revision": self.config.revision,
            "timings": {f"{key}_ms": round(timings[key] * 1000, 2) for key in TIMING_KEYS},
        }

    def provenance(self, request: requests.GenerateRequest) -> dict[str, str]:
        """The ``planetgen:*`` keys written into every image."""
        return {
            "planetgen:pipeline": self.config.pipeline,
            "planetgen:revision": self.config.revision,
            "planetgen:model_hash": self.config.model_hash,
            "planetgen:seed": str(request.seed),
            "planetgen:prompt_sha256": hashlib.sha256(request.prompt.encode()).hexdigest(),
            "planetgen:steps": str(request.steps),
        }

    def _v2_response(self, payload: requests.ParsedBatch, outputs: list[dict[str, Any]]) -> InferResponse:
        n = len(outputs)
        metadata = [
            json.dumps({k: v for k, v in out.items() if k not in ("image", "seed")}, separators=(",", ":"))
            for out in outputs
        ]
        return InferResponse(
            response_id=payload.request_id or str(uuid.uuid4()),
            model_name=self.name,
            infer_outputs=[
                InferOutput(name="image", shape=[n], datatype="BYTES", data=[o["image"] for o in outputs]),
                InferOutput(name="seed", shape=[n], datatype="INT64", data=[o["seed"] for o in outputs]),
                InferOutput(name="metadata", shape=[n], datatype="BYTES", data=metadata),
            ],
        )
