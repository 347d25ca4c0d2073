"""What every batched predictor does around its own work: warm up, batch, admit all or nothing, finish.

Functions rather than a base class: each ``kserve.Model`` keeps its hooks in one readable place and
passes its own ``run_batch``/``finish`` here.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import hashlib
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from planet_operator.api.spec import Lane
from planet_predictors.config import PipelineConfig
from planet_predictors.serving import errors, http
from planet_predictors.serving.batcher import Batcher, LaneConfig, Result, RunBatch
from planet_predictors.serving.metrics import Metrics


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


def start_batcher(
    run_batch: RunBatch[Req, Out],
    *,
    warm_up: Callable[[], None],
    lanes: Mapping[str, Lane],
    serve: ServeSettings,
    metrics: Metrics,
    backend: str,
    executor: concurrent.futures.ThreadPoolExecutor,
) -> tuple[Batcher[Req, Out], float]:
    """Run ``warm_up`` on the device thread, then build the batcher; returns it and the seconds taken.

    The load time is recorded as ``backend``'s engine load metric.
    """
    started = time.perf_counter()
    # On the thread every batch runs on: torch keeps one OpenMP team per calling thread, and a second
    # team (a warm-up on the main thread) spins against the first and made every CPU batch 2.5x slower
    # (bench/serving.py); CUDA streams and TensorRT contexts also belong to the thread that made them.
    executor.submit(warm_up).result()
    batcher = Batcher(
        run_batch,
        lanes=[
            LaneConfig(
                name=name,
                max_concurrency=lane.max_concurrency,
                max_queue=serve.max_queue if serve.max_queue is not None else lane.max_queue,
                priority=lane.priority,
            )
            for name, lane in lanes.items()
        ],
        metrics=metrics,
        max_batch_size=serve.max_batch_size,
        max_wait=serve.max_batch_wait_ms / 1000,
        device_slots=serve.device_concurrency,
        shed_depth=serve.shed_depth,
        executor=executor,
    )
    seconds = time.perf_counter() - started
    metrics.set_engine_load(backend, seconds)
    return batcher, seconds


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
