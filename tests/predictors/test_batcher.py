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
from planet_predictors.serving.batcher import Batcher, LaneConfig, RunBatch, Stop
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

    def __call__(self, batch: Sequence[int], stop: Stop) -> list[int]:
        self.gate.wait(10)
        if len(batch) > self.oom_above:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        self.calls.append(list(batch))
        time.sleep(self.delay)
        return [2 * x for x in batch]


def make(
    backend: RunBatch[int, int], **kwargs: object
) -> tuple[Batcher[int, int], Metrics, CollectorRegistry]:
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
    gone = asyncio.Event()
    abandoned = asyncio.ensure_future(batcher.submit(1, lane="final", key="a", gone=gone))
    kept = asyncio.ensure_future(batcher.submit(2, lane="final", key="a"))
    await asyncio.sleep(0.01)
    gone.set()
    backend.gate.set()
    await running
    assert (await kept).value == 4
    with pytest.raises(errors.ClientGone):
        await abandoned
    assert [sorted(c) for c in backend.calls] == [[0], [2]]
    assert sample(registry, "planet_errors_total", reason="client_gone") == 1
    await batcher.close()


class Poisoned(FakeBackend):
    """Fails every batch that holds ``bad`` (as a tokenizer would on a prompt it cannot encode)."""

    def __init__(self, bad: int) -> None:
        super().__init__()
        self.bad = bad

    def __call__(self, batch: Sequence[int], stop: Stop) -> list[int]:
        if self.bad in batch:
            raise TypeError("TextEncodeInput must be Union[TextInputSequence, ...]")
        return super().__call__(batch, stop)


async def test_one_bad_item_fails_alone_and_its_batch_siblings_succeed() -> None:
    backend = Poisoned(bad=13)
    batcher, _, registry = make(backend)
    results = await asyncio.gather(
        *(batcher.submit(i, lane="final", key="k") for i in (1, 2, 13, 4, 5)), return_exceptions=True
    )
    assert [r.value for r in results if not isinstance(r, BaseException)] == [2, 4, 8, 10]
    failed = results[2]
    assert isinstance(failed, errors.Internal) and failed.status == 500
    assert sample(registry, "planet_errors_total", reason="internal") == 1  # one request, not five
    assert sorted(x for call in backend.calls for x in call) == [1, 2, 4, 5]
    await batcher.close()


async def test_a_disconnect_frees_the_slot_at_once_and_a_newcomer_is_admitted() -> None:
    backend = FakeBackend()
    backend.gate.clear()
    lanes = [LaneConfig("final", max_queue=1, priority=10)]
    registry = CollectorRegistry()
    metrics = Metrics(pipeline="p", revision="r", registry=registry)
    batcher: Batcher[int, int] = Batcher(backend, lanes=lanes, metrics=metrics, max_batch_size=1, max_wait=0)
    running = asyncio.ensure_future(batcher.submit(0, lane="final", key="a"))
    await asyncio.sleep(0.05)
    gone = asyncio.Event()
    waiting = asyncio.ensure_future(batcher.submit(1, lane="final", key="a", gone=gone))
    await asyncio.sleep(0.01)
    with pytest.raises(errors.QueueFull):
        await batcher.submit(2, lane="final", key="a")
    gone.set()
    started = time.monotonic()
    with pytest.raises(errors.ClientGone):
        await waiting
    assert sample(registry, "planet_queue_depth", lane="final") == 0
    assert time.monotonic() - started < 0.1
    newcomer = asyncio.ensure_future(batcher.submit(3, lane="final", key="a"))  # admitted now
    backend.gate.set()
    assert (await running).value == 0 and (await newcomer).value == 6
    assert [c[0] for c in backend.calls] == [0, 3]
    assert sample(registry, "planet_errors_total", reason="client_gone") == 1
    await batcher.close()


class Stepping:
    """A backend that denoises in steps of ``step`` seconds and polls ``stop`` after each, like diffusers."""

    def __init__(self, steps: int, step: float) -> None:
        self.steps, self.step = steps, step
        self.started: list[float] = []

    def __call__(self, batch: Sequence[int], stop: Stop) -> list[int]:
        for i in range(self.steps):
            self.started.append(time.monotonic())
            time.sleep(self.step)
            if stop():
                raise errors.Cancelled(f"stopped after step {i + 1}")
        return list(batch)


async def test_a_timed_out_request_stops_using_the_device_within_one_step() -> None:
    backend = Stepping(steps=100, step=0.05)
    registry = CollectorRegistry()
    metrics = Metrics(pipeline="p", revision="r", registry=registry)
    batcher: Batcher[int, int] = Batcher(backend, lanes=LANES, metrics=metrics, max_wait=0)
    with pytest.raises(errors.RequestTimeout):
        await batcher.submit(1, lane="final", key="a", time_limit=0.3)
    timed_out = time.monotonic()
    while sample(registry, "planet_inflight_requests", lane="final") > 0:  # noqa: ASYNC110 - a gauge
        await asyncio.sleep(0.01)
    assert len([t for t in backend.started if t > timed_out]) <= 1
    assert len(backend.started) < 10
    # The device is free: the next request runs at once.
    backend.steps = 1
    assert (await batcher.submit(2, lane="final", key="a")).value == 2
    await batcher.close()


async def test_a_batch_runs_on_while_one_of_its_requests_still_waits() -> None:
    backend = Stepping(steps=6, step=0.02)
    batcher, _, _ = make(backend, max_wait=0.05)
    impatient = asyncio.ensure_future(batcher.submit(1, lane="final", key="a", time_limit=0.07))
    patient = asyncio.ensure_future(batcher.submit(2, lane="final", key="a"))
    with pytest.raises(errors.RequestTimeout):
        await impatient
    assert (await patient).value == 2
    await batcher.close()


async def test_abort_stops_running_work_and_refuses_queued_with_503() -> None:
    backend = Stepping(steps=1000, step=0.01)
    batcher, _, _ = make(backend, max_batch_size=1, max_wait=0)
    running = asyncio.ensure_future(batcher.submit(1, lane="final", key="a"))
    await asyncio.sleep(0.05)
    queued = asyncio.ensure_future(batcher.submit(2, lane="final", key="a"))
    await asyncio.sleep(0.01)
    batcher.abort()
    for request in (running, queued):
        with pytest.raises(errors.ShuttingDown) as info:
            await request
        assert info.value.status == 503
    assert len(backend.started) < 50
    with pytest.raises(errors.ShuttingDown):
        await batcher.submit(3, lane="final", key="a")
    await batcher.close()


def test_capacity_is_the_queue_bound_and_the_shed_depth_for_lower_lanes() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(pipeline="p", revision="r", registry=registry)
    batcher: Batcher[int, int] = Batcher(FakeBackend(), lanes=LANES, metrics=metrics, shed_depth=3)
    assert (batcher.capacity("final"), batcher.capacity("draft")) == (8, 3)


@pytest.mark.parametrize(
    "options",
    [
        {"max_batch_size": 0},
        {"max_batch_size": -1},
        {"max_wait": -1.0},
        {"device_slots": 0},
        {"shed_depth": 0},
    ],
)
def test_settings_the_scheduler_cannot_run_with_are_refused(options: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=next(iter(options))):
        make(FakeBackend(), **options)


# A wait this long would blow every bound below: a test passes only if nothing waited for it.
LONG_WAIT = 30.0


async def test_a_lone_request_on_an_idle_device_starts_at_once() -> None:
    backend = FakeBackend()
    batcher, _, _ = make(backend, max_wait=LONG_WAIT)
    for i in range(3):  # one closed-loop client: each request alone, none waits for partners
        assert (await asyncio.wait_for(batcher.submit(i, lane="final", key="k"), 5)).value == 2 * i
    assert backend.calls == [[0], [1], [2]]
    await batcher.close()


async def test_requests_that_arrive_together_on_an_idle_device_start_together() -> None:
    backend = FakeBackend()
    batcher, _, _ = make(backend, max_wait=LONG_WAIT)
    burst = asyncio.gather(*(batcher.submit(i, lane="final", key="k") for i in range(3)))
    await asyncio.wait_for(burst, 5)
    assert backend.calls == [[0, 1, 2]]
    await batcher.close()


async def test_a_returning_crowd_is_waited_for_then_starts_without_the_full_wait() -> None:
    backend = FakeBackend()
    batcher, _, _ = make(backend, max_wait=LONG_WAIT)
    await asyncio.gather(*(batcher.submit(i, lane="final", key="k") for i in range(3)))
    # Three clients were answered together; the first one back waits for the other two...
    first = asyncio.ensure_future(batcher.submit(10, lane="final", key="k"))
    await asyncio.sleep(0.2)
    assert batcher.queued() == 1 and len(backend.calls) == 1
    # ...and the batch starts as soon as the crowd is back, though it is below max_batch_size.
    rest = [asyncio.ensure_future(batcher.submit(i, lane="final", key="k")) for i in (11, 12)]
    await asyncio.wait_for(asyncio.gather(first, *rest), 5)
    assert backend.calls == [[0, 1, 2], [10, 11, 12]]
    await batcher.close()


async def test_a_request_streaming_in_while_the_device_works_waits_for_a_partner() -> None:
    backend = FakeBackend()
    backend.gate.clear()  # the first batch holds one of the two slots
    lanes = [LaneConfig("final", max_concurrency=2, priority=10)]
    metrics = Metrics(pipeline="p", revision="r", registry=CollectorRegistry())
    batcher: Batcher[int, int] = Batcher(
        backend, lanes=lanes, metrics=metrics, max_batch_size=2, max_wait=LONG_WAIT, device_slots=2
    )
    running = asyncio.ensure_future(batcher.submit(0, lane="final", key="k"))
    await asyncio.sleep(0.05)
    second = asyncio.ensure_future(batcher.submit(1, lane="final", key="k"))
    await asyncio.sleep(0.2)
    assert batcher.queued() == 1  # a free slot, yet it waits: requests are arriving
    third = asyncio.ensure_future(batcher.submit(2, lane="final", key="k"))
    await asyncio.sleep(0.05)
    assert batcher.queued() == 0  # the batch is full: it starts
    backend.gate.set()
    await asyncio.wait_for(asyncio.gather(running, second, third), 5)
    assert sorted(backend.calls) == [[0], [1, 2]]
    await batcher.close()


async def test_a_request_queued_behind_a_crowd_waits_for_it_to_come_back() -> None:
    backend = FakeBackend()
    backend.gate.clear()
    batcher, _, _ = make(backend, max_wait=1.0)
    crowd = asyncio.gather(*(batcher.submit(i, lane="final", key="k") for i in range(3)))
    await asyncio.sleep(0.05)
    late = asyncio.ensure_future(batcher.submit(3, lane="final", key="k"))
    await asyncio.sleep(1.5)  # longer than max_wait: the late request is overdue when the device frees
    backend.gate.set()
    await asyncio.wait_for(crowd, 5)
    # The crowd's clients send again at once; the late request joins them instead of running alone.
    again = asyncio.gather(*(batcher.submit(i, lane="final", key="k") for i in (10, 11, 12)))
    await asyncio.wait_for(asyncio.gather(late, again), 5)
    assert backend.calls == [[0, 1, 2], [3, 10, 11, 12]]
    await batcher.close()
