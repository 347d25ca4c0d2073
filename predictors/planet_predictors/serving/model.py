"""What every batched predictor does around its own work: warm up, batch, admit all or nothing, finish.

:class:`BatchedModel` is the ``kserve.Model`` both predictors extend: it owns the lifecycle (load on
the device thread, ready, stop), KServe's hooks and the batcher; a predictor supplies its own
steps: ``preprocess`` (parse), ``_warm_up``, ``_run_batch`` (on the device thread) and ``_finish``
(encode one answer, in a worker thread).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Generic, Protocol, TypeVar

import kserve
from kserve.protocol.infer_type import InferResponse

from planet_predictors.config import PipelineConfig
from planet_predictors.quality import spec as quality
from planet_predictors.quality.verifier import Verdict
from planet_predictors.serving import errors, http, protocol
from planet_predictors.serving.batcher import Batcher, LaneConfig, Result, Stop, device_executor
from planet_predictors.serving.metrics import Metrics
from planet_predictors.serving.protocol import ParsedBatch

log = logging.getLogger(__name__)


class Queued(Protocol):
    """What the batcher and the metrics need from one parsed request."""

    @property
    def lane(self) -> str: ...  # noqa: D102
    def batch_key(self) -> Hashable: ...  # noqa: D102


Req = TypeVar("Req", bound=Queued)
Out = TypeVar("Out")
#: Turns one request's batch output into its V1 prediction: (request, value, queue s, started).
Finish = Callable[[Req, Out, float, float], dict[str, Any]]


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


class BatchedModel(kserve.Model, Generic[Req, Out]):  # type: ignore[misc]  # kserve ships no type hints
    """A predictor whose requests queue per lane and run in micro-batches on one device thread."""

    ready: bool
    #: Names the model in its load log line ("sdxl (torch)").
    kind = "model"
    #: Whether the images it returns are the pipeline's last (generate's go on through an upscale
    #: chain when there is one, and are not judged on sharpness).
    final = True

    def __init__(
        self, name: str, *, config: PipelineConfig, serve: ServeSettings, metrics: Metrics, backend_name: str
    ) -> None:
        super().__init__(name)
        self.config = config
        self.serve = serve
        self.metrics = metrics
        self.backend_name = backend_name
        #: None when ``generation.verify`` is false.
        self.verifier = quality.verifier_of(config.spec, final=self.final)
        self.batcher: Batcher[Req, Out] | None = None
        self._load_lock = threading.Lock()
        # Load, warm-up and every batch share these threads (see load).
        self._device = device_executor(serve.device_concurrency)

    def score(self, image: Any, prompt: str, lane: str) -> Verdict | None:
        """The verifier's verdict on a finished image, recorded in ``planet_quality_score``."""
        return self.record(quality.judge(self.verifier, image, prompt), lane)

    def record(self, verdict: Verdict | None, lane: str) -> Verdict | None:
        """Record the verdict of an image about to be returned in ``planet_quality_score``."""
        if verdict is not None:
            self.metrics.observe_quality(lane, verdict.score)
        return verdict

    # -- the predictor's own steps --------------------------------------------------------------

    def _warm_up(self) -> None:
        """Load weights and engines, then run the work once (on the device thread)."""
        raise NotImplementedError

    def _run_batch(self, batch: Sequence[Req], stop: Stop) -> Sequence[Out]:
        """Run one batch of same-key requests on the device thread; one output per request."""
        raise NotImplementedError

    def _finish(self, request: Req, value: Out, queue_seconds: float, started: float) -> dict[str, Any]:
        """Encode one output as its V1 prediction (in a worker thread)."""
        raise NotImplementedError

    # -- lifecycle ----------------------------------------------------------------------------

    def load(self) -> bool:
        """Warm up on the device thread, build the batcher, then mark ready; calling it again does nothing."""
        with self._load_lock:
            if self.ready:
                return True
            started = time.perf_counter()
            # On the thread every batch runs on: torch keeps one OpenMP team per calling thread, and a
            # second team (a warm-up on the main thread) spins against the first: every CPU batch ran
            # 2.5x slower (bench/serving.py). CUDA streams and TensorRT contexts also stay on it.
            self._device.submit(self._warm_up).result()
            max_queue = self.serve.max_queue
            self.batcher = Batcher(
                self._run_batch,
                lanes=[
                    LaneConfig(
                        name=name,
                        max_concurrency=lane.max_concurrency,
                        max_queue=lane.max_queue if max_queue is None else max_queue,
                        priority=lane.priority,
                    )
                    for name, lane in self.config.spec.serving.lanes.items()
                ],
                metrics=self.metrics,
                max_batch_size=self.serve.max_batch_size,
                max_wait=self.serve.max_batch_wait_ms / 1000,
                device_slots=self.serve.device_concurrency,
                shed_depth=self.serve.shed_depth,
                executor=self._device,
            )
            seconds = time.perf_counter() - started
            self.metrics.set_engine_load(self.backend_name, seconds)
            log.info("%s (%s) loaded and warmed in %.1f s", self.kind, self.backend_name, seconds)
            self.ready = True
            return True

    def stop(self) -> None:
        """KServe's shutdown hook: running batches stop at their next step or tile, queued ones get 503."""
        self.ready = False
        if self.batcher is not None:
            self.batcher.abort()

    # -- kserve hooks -------------------------------------------------------------------------

    def validate(self, payload: Any) -> Any:
        """Parsing already validated everything (KServe's own check expects dicts)."""
        return payload

    async def predict(
        self, payload: ParsedBatch[Req], headers: dict[str, str] | None = None
    ) -> dict[str, Any] | InferResponse:
        """Queue every image, wait for all, answer in the request's protocol."""
        outputs = await run_all(
            self.batcher,
            payload.requests,
            self._finish,
            time_limit=self.serve.timeout_seconds,
            metrics=self.metrics,
            field=payload.field,
        )
        return protocol.respond(self.name, payload, outputs)


async def run_all(
    batcher: Batcher[Req, Out] | None,
    batch: Sequence[Req],
    finish: Finish[Req, Out],
    *,
    time_limit: float,
    metrics: Metrics,
    field: str = "instances",
) -> list[dict[str, Any]]:
    """Queue every request, wait for all, finish each in a thread; observes every request's total.

    ``field`` names the list of images in errors (``instances``, ``predictions``, ``inputs``).
    """
    if batcher is None:
        raise errors.PlanetError("model is not loaded")
    check_capacity(batcher, batch, field=field)
    started = time.perf_counter()
    try:
        results = await submit_all(batcher, batch, time_limit=time_limit)
        return list(
            await asyncio.gather(
                *(
                    asyncio.to_thread(finish, request, result.value, result.queue_seconds, started)
                    for request, result in zip(batch, results, strict=True)
                )
            )
        )
    finally:
        for request in batch:
            metrics.observe(request.lane, "total", time.perf_counter() - started)


def check_capacity(batcher: Batcher[Req, Out], batch: Sequence[Req], *, field: str) -> None:
    """Refuse (400) more images for a lane than its queue can ever hold: a 429 would be retried forever."""
    per_lane = collections.Counter(request.lane for request in batch)
    for lane, n in per_lane.items():
        capacity = batcher.capacity(lane)
        if n > capacity:
            raise errors.BadRequest(
                field, f"{n} images for lane {lane!r}, which queues at most {capacity}; split the request"
            )


async def submit_all(
    batcher: Batcher[Req, Out], batch: Sequence[Req], *, time_limit: float
) -> list[Result[Out]]:
    """Submit every request; the first refusal cancels the rest and is raised."""
    gone = http.disconnected.get()
    tasks = [
        asyncio.ensure_future(
            batcher.submit(
                request, lane=request.lane, key=request.batch_key(), time_limit=time_limit, gone=gone
            )
        )
        for request in batch
    ]
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    except asyncio.CancelledError:
        # asyncio.wait leaves its tasks running: cancel them, or their slots and work outlive us.
        for task in tasks:
            task.cancel()
        raise
    failed = next((t for t in tasks if t in done and t.exception() is not None), None)
    if failed is not None:
        # All or nothing: a refused image frees the slots its siblings hold.
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        exc = failed.exception()
        assert exc is not None
        raise exc
    return [t.result() for t in tasks]


def provenance(config: PipelineConfig, *, seed: int, prompt: str) -> dict[str, str]:
    """The ``planetgen:*`` keys every predictor writes into its images."""
    return {
        "planetgen:pipeline": config.pipeline,
        "planetgen:revision": config.revision,
        "planetgen:model_hash": config.model_hash,
        "planetgen:seed": str(seed),
        "planetgen:prompt_sha256": hashlib.sha256(prompt.encode()).hexdigest(),
    }
