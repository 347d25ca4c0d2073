"""The serving core with a test-double backend: OOM split, priority, timeouts, shedding."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import pytest
import torch
from prometheus_client import CollectorRegistry

from planet_predictors.serving import errors
from planet_predictors.serving.batcher import Batcher, LaneConfig
from planet_predictors.serving.metrics import Metrics

LANES = [LaneConfig("final", max_queue=8, priority=10), LaneConfig("draft", max_queue=8, priority=0)]


class FakeBackend:
    """Doubles each number; raises CUDA OOM above ``oom_above`` items; can hold the device."""

    def __init__(self, oom_above: int = 64, delay: float = 0.0) -> None:
        self.oom_above = oom_above
        self.delay = delay
        self.calls: list[list[int]] = []
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, batch: Sequence[int]) -> list[int]:
        self.gate.wait(10)
        if len(batch) > self.oom_above:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        self.calls.append(list(batch))
        time.sleep(self.delay)
        return [2 * x for x in batch]


def make(backend: FakeBackend, **kwargs: object) -> tuple[Batcher[int, int], Metrics, CollectorRegistry]:
    registry = CollectorRegistry()
    metrics = Metrics(pipeline="p", revision="r", registry=registry)
    options: dict[str, object] = {"max_batch_size": 8, "max_wait": 0.2, **kwargs}
    return Batcher(backend, lanes=LANES, metrics=metrics, **options), metrics, registry  # type: ignore[arg-type]


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return (
        registry.get_sample_value(name, {"pipeline": "p", "revision": "r", "component": "generate", **labels})
        or 0.0
    )


async def test_oom_splits_the_batch_in_halves_and_every_request_succeeds() -> None:
    backend = FakeBackend(oom_above=2)
    batcher, _, registry = make(backend)
    results = await asyncio.gather(*(batcher.submit(i, lane="final", key="k") for i in range(7)))
    assert [r.value for r in results] == [2 * i for i in range(7)]
    assert sorted(len(c) for c in backend.calls) == [1, 2, 2, 2]  # 7 ▶ 3 + 4 ▶ (1 + 2) + (2 + 2)
    assert sorted(x for call in backend.calls for x in call) == list(range(7))
    assert sample(registry, "planet_batch_size_count") == 4
    await batcher.close()


async def test_oom_at_batch_of_one_is_a_503_for_that_request() -> None:
    batcher, _, registry = make(FakeBackend(oom_above=0))
    with pytest.raises(errors.OutOfMemory) as info:
        await batcher.submit(1, lane="final", key="k")
    assert info.value.status == 503
    assert sample(registry, "planet_errors_total", reason="oom") == 1
    await batcher.close()


async def test_only_matching_keys_share_a_batch() -> None:
    backend = FakeBackend()
    batcher, _, _ = make(backend)
    await asyncio.gather(*(batcher.submit(i, lane="final", key=i % 2) for i in range(6)))
    assert sorted(sorted(c) for c in backend.calls) == [[0, 2, 4], [1, 3, 5]]
    await batcher.close()


async def test_final_runs_before_queued_drafts() -> None:
    backend = FakeBackend()
    backend.gate.clear()  # hold the device with the first batch
    batcher, _, _ = make(backend, max_batch_size=1, max_wait=0)
    first = asyncio.ensure_future(batcher.submit(100, lane="draft", key="a"))
    await asyncio.sleep(0.05)
    drafts = [asyncio.ensure_future(batcher.submit(i, lane="draft", key="a")) for i in range(3)]
    await asyncio.sleep(0.05)
    final = asyncio.ensure_future(batcher.submit(50, lane="final", key="a"))
    await asyncio.sleep(0.05)
    backend.gate.set()
    await asyncio.gather(first, final, *drafts)
    assert [c[0] for c in backend.calls] == [100, 50, 0, 1, 2]
    await batcher.close()


async def test_drafts_are_shed_above_the_depth_but_finals_are_admitted() -> None:
    backend = FakeBackend()
    backend.gate.clear()
    batcher, _, registry = make(backend, max_batch_size=1, max_wait=0, shed_depth=2)
    running = asyncio.ensure_future(batcher.submit(0, lane="final", key="a"))
    await asyncio.sleep(0.05)
    queued = [asyncio.ensure_future(batcher.submit(i, lane="final", key="a")) for i in (1, 2)]
    await asyncio.sleep(0.01)
    with pytest.raises(errors.QueueFull) as info:
        await batcher.submit(3, lane="draft", key="a")
    assert info.value.headers["Retry-After"].isdigit()
    extra_final = asyncio.ensure_future(batcher.submit(4, lane="final", key="a"))
    backend.gate.set()
    await asyncio.gather(running, extra_final, *queued)
    assert sample(registry, "planet_errors_total", reason="queue_full") == 1
    await batcher.close()


async def test_timeout_in_queue_is_504_and_the_request_never_runs() -> None:
    backend = FakeBackend()
    backend.gate.clear()
    batcher, _, registry = make(backend, max_batch_size=1, max_wait=0)
    running = asyncio.ensure_future(batcher.submit(0, lane="final", key="a"))
    await asyncio.sleep(0.05)
    with pytest.raises(errors.RequestTimeout):
        await batcher.submit(1, lane="final", key="a", time_limit=0.1)
    backend.gate.set()
    await running
    await asyncio.sleep(0.05)
    assert [c[0] for c in backend.calls] == [0]
    assert sample(registry, "planet_errors_total", reason="timeout") == 1
    assert sample(registry, "planet_queue_depth", lane="final") == 0
    await batcher.close()


async def test_gone_clients_are_dropped_before_running() -> None:
    backend = FakeBackend()
    backend.gate.clear()
    batcher, _, registry = make(backend, max_batch_size=4, max_wait=0)
    running = asyncio.ensure_future(batcher.submit(0, lane="final", key="a"))
    await asyncio.sleep(0.05)
    flag = {"gone": False}
    abandoned = asyncio.ensure_future(batcher.submit(1, lane="final", key="a", gone=lambda: flag["gone"]))
    kept = asyncio.ensure_future(batcher.submit(2, lane="final", key="a"))
    await asyncio.sleep(0.01)
    flag["gone"] = True
    backend.gate.set()
    await running
    assert (await kept).value == 4
    with pytest.raises(errors.ClientGone):
        await abandoned
    assert [sorted(c) for c in backend.calls] == [[0], [2]]
    assert sample(registry, "planet_errors_total", reason="client_gone") == 1
    await batcher.close()
