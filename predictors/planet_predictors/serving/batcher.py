"""Lanes, admission control and the micro-batcher in front of one device.

Policy (written down because clients and the autoscaler depend on it):

* Each lane has a bounded FIFO queue. A request to a full lane gets 429 with ``Retry-After``.
  A request for more images than the lane can ever queue at once (:meth:`Batcher.capacity`) is the
  client's mistake, a 400, not a 429 it would retry forever.
* **Shedding**: when the requests queued over all lanes reach ``shed_depth``, lanes below the top
  priority (drafts) are refused with 429 at once, so a burst fills the queue with finals only.
* **Priority**: whenever the device is free, the highest-priority lane with queued work and spare
  concurrency goes next. A final queued behind drafts runs before every queued draft; drafts wait
  (they are never started ahead of a queued final).
* **Batching**: a batch takes the oldest request of the chosen lane plus every queued request of the
  same lane with the same ``key`` (size, steps, guidance...), up to ``max_batch_size``. A partial
  batch waits for partners only when they are likely, for at most ``max_wait``:

  - right after a batch finished (its oldest request arrived before, or within ``max_wait`` after,
    that finish), while it is smaller than the crowd then running or queued: closed-loop clients
    come back together. ``max_wait`` counts from that finish or its oldest arrival, whichever is
    later, so clients that fell out of step are gathered into one batch again;
  - otherwise, when one of its requests arrived within ``max_wait`` of the previous arrival while a
    batch was running (requests are streaming in), until its oldest request has waited ``max_wait``.

  A lone request on an idle device starts at once, requests that arrived together start together,
  and a partial batch starts at once while other work waits for the device (waiting would only add
  latency). While every device slot is busy nothing starts, so requests gather into batches anyway.
* **Caps**: ``max_concurrency`` batches per lane and ``device_slots`` batches in all (1 per GPU).
* **Abandoned work**: a request whose client disconnects, or that times out, leaves its queue at
  once (its slot and ``planet_queue_depth`` are freed, the scheduler is woken). A running batch
  whose requests are all abandoned is stopped: ``run_batch`` gets a ``stop()`` to poll, and the
  backends poll it at every denoising step and tile. :meth:`Batcher.abort` stops everything.
* **Failures stay with their request**: a batch that runs out of accelerator memory, or fails any
  other way, is split in halves and retried, down to one request, so only the request at fault
  gets its error (503 ``oom`` or 500 ``internal``) and its batch siblings their images.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Generic, TypeVar

from planet_predictors.serving import errors
from planet_predictors.serving.metrics import Metrics

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")
#: Polled by a running batch: True once nobody waits for its results (stop at the next step).
Stop = Callable[[], bool]


@dataclasses.dataclass(frozen=True)
class LaneConfig:
    """One lane: its concurrency cap, queue bound and priority (higher runs first)."""

    name: str
    max_concurrency: int = 1
    max_queue: int = 64
    priority: int = 0


@dataclasses.dataclass(eq=False)
class Ticket(Generic[T, R]):
    """One queued request."""

    payload: T
    lane: str
    key: Hashable
    future: asyncio.Future[R]
    gone: Callable[[], bool]
    enqueued: float
    started: float | None = None
    #: Arrived within ``max_wait`` of the previous request while a batch was running.
    crowded: bool = False

    def abandoned(self) -> bool:
        """True when nobody will read the result (also read from the device thread)."""
        return self.future.done() or self.gone()


@dataclasses.dataclass(frozen=True)
class Result(Generic[R]):
    """What :meth:`Batcher.submit` returns: the value and the seconds it waited in the queue."""

    value: R
    queue_seconds: float


@dataclasses.dataclass(frozen=True)
class _Failed:
    """One request's failure inside a batch whose other requests may have succeeded."""

    error: errors.PlanetError


RunBatch = Callable[[Sequence[T], Stop], Sequence[R]]


class Batcher(Generic[T, R]):
    """Schedules requests onto a blocking ``run_batch`` that executes in a worker thread."""

    def __init__(
        self,
        run_batch: RunBatch[T, R],
        *,
        lanes: Sequence[LaneConfig],
        metrics: Metrics,
        max_batch_size: int = 4,
        max_wait: float = 0.05,
        device_slots: int = 1,
        shed_depth: int | None = None,
        executor: concurrent.futures.ThreadPoolExecutor | None = None,
    ) -> None:
        _check(lanes, max_batch_size=max_batch_size, max_wait=max_wait, device_slots=device_slots)
        if shed_depth is not None and shed_depth < 1:
            raise ValueError(f"shed_depth must be at least 1, got {shed_depth}")
        self._run_batch = run_batch
        self.lanes = {lane.name: lane for lane in lanes}
        self._order = sorted(lanes, key=lambda lane: -lane.priority)
        top = self._order[0].priority
        self._deferrable = {lane.name for lane in lanes if lane.priority < top}
        self.metrics = metrics
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait
        self.device_slots = device_slots
        top_queue = max(lane.max_queue for lane in lanes if lane.priority == top)
        self.shed_depth = shed_depth if shed_depth is not None else max(1, top_queue // 2)
        self._queues: dict[str, collections.deque[Ticket[T, R]]] = {
            n: collections.deque() for n in self.lanes
        }
        self._running: dict[str, int] = dict.fromkeys(self.lanes, 0)
        self._busy = 0
        self._inflight = 0  # requests in running batches
        self._last_arrival = -math.inf
        # When the last batch finished and how many requests were running or queued then: the crowd
        # likely to be back within max_wait (a closed-loop client resends as soon as it is answered).
        self._wave_end = -math.inf
        self._wave_size = 0
        self._closing = False
        self._batch_seconds = 1.0  # EWMA, seeds Retry-After before the first batch
        self._wake = asyncio.Event()
        # The model's own device threads when given: load, warm-up and batches then share the threads
        # (CUDA streams and TensorRT execution contexts are best kept on the thread that made them).
        self._owns_executor = executor is None
        self._executor = executor or device_executor(device_slots)
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        metrics.prime(list(self.lanes))

    # -- public API ---------------------------------------------------------------------------

    def queued(self, lane: str | None = None) -> int:
        """Requests waiting (one lane, or all)."""
        if lane is not None:
            return len(self._queues[lane])
        return sum(len(q) for q in self._queues.values())

    def capacity(self, lane: str) -> int:
        """The most requests ``lane`` can ever queue at once (lower lanes are shed at ``shed_depth``)."""
        bound = self.lanes[lane].max_queue
        return min(bound, self.shed_depth) if lane in self._deferrable else bound

    async def submit(
        self,
        payload: T,
        *,
        lane: str,
        key: Hashable,
        time_limit: float | None = None,
        gone: asyncio.Event | None = None,
    ) -> Result[R]:
        """Queue ``payload`` and wait for its result; raises :class:`errors.PlanetError` subclasses.

        ``gone`` is set when the client disconnects: the request leaves the queue at once.
        """
        self._ensure_started()
        ticket = self._admit(payload, lane=lane, key=key, gone=gone.is_set if gone else lambda: False)
        watch = asyncio.ensure_future(gone.wait()) if gone is not None else None
        waits: set[asyncio.Future[Any]] = {ticket.future} if watch is None else {ticket.future, watch}
        try:
            await asyncio.wait(waits, timeout=time_limit, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            # The caller went away (e.g. the server cancelled the handler): free the slot, stop the work.
            self._forget(ticket)
            raise
        finally:
            if watch is not None:
                watch.cancel()
        if not ticket.future.done():
            self._forget(ticket)
            if gone is not None and gone.is_set():
                raise self._count(errors.ClientGone("client disconnected"))
            raise self._count(errors.RequestTimeout(f"request did not finish within {time_limit:g} s"))
        value = ticket.future.result()
        assert ticket.started is not None
        return Result(value, ticket.started - ticket.enqueued)

    def abort(self) -> None:
        """Shutting down: queued requests fail with 503, running batches stop at their next step."""
        self._closing = True
        self._wake.set()

    async def close(self) -> None:
        """Stop scheduling; running batches are told to stop and finish in their thread."""
        self.abort()
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
            self._loop_task = None
        self._fail_queued()
        if self._owns_executor:
            self._executor.shutdown(wait=False, cancel_futures=True)

    # -- admission ----------------------------------------------------------------------------

    def _admit(self, payload: T, *, lane: str, key: Hashable, gone: Callable[[], bool]) -> Ticket[T, R]:
        config = self.lanes[lane]
        queue = self._queues[lane]
        if self._closing:
            raise self._count(_shutting_down())
        if len(queue) >= config.max_queue:
            raise self._count(
                errors.QueueFull(
                    f"lane {lane!r} queue is full ({config.max_queue} requests)",
                    retry_after=self._retry_after(lane),
                )
            )
        if lane in self._deferrable and self.queued() >= self.shed_depth:
            raise self._count(
                errors.QueueFull(
                    f"lane {lane!r} is shed while {self.queued()} requests are queued"
                    f" (limit {self.shed_depth}); higher-priority lanes go first",
                    retry_after=self._retry_after(lane),
                )
            )
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        now = time.monotonic()
        crowded = self._inflight > 0 and now - self._last_arrival <= self.max_wait
        self._last_arrival = now
        ticket = Ticket(payload, lane, key, future, gone, now, crowded=crowded)
        queue.append(ticket)
        self.metrics.set_queue_depth(lane, len(queue))
        self._wake.set()
        return ticket

    def _retry_after(self, lane: str) -> float:
        ahead = sum(len(self._queues[o.name]) for o in self._order if o.priority >= self.lanes[lane].priority)
        return math.ceil(ahead / self.max_batch_size + 1) * self._batch_seconds

    def _forget(self, ticket: Ticket[T, R]) -> None:
        """Drop an abandoned request: out of its queue now, its batch stops if nobody else waits."""
        queue = self._queues[ticket.lane]
        if ticket in queue:
            queue.remove(ticket)
            self.metrics.set_queue_depth(ticket.lane, len(queue))
        if not ticket.future.done():
            ticket.future.cancel()
        self._wake.set()

    def _count(self, exc: errors.PlanetError) -> errors.PlanetError:
        self.metrics.count_error(exc.reason)
        exc.counted = True
        return exc

    # -- scheduling ---------------------------------------------------------------------------

    def _ensure_started(self) -> None:
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.get_running_loop().create_task(self._schedule(), name="planet-batcher")

    async def _schedule(self) -> None:
        while True:
            self._wake.clear()
            delay = self._dispatch()
            if delay is None:
                await self._wake.wait()
            else:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()

    def _dispatch(self) -> float | None:
        """Start every batch that may start now; return seconds until a waiting batch is due."""
        if self._closing:
            self._fail_queued()
            return None
        self._drop_abandoned()
        while self._busy < self.device_slots:
            lane = next(
                (
                    o.name
                    for o in self._order
                    if self._queues[o.name] and self._running[o.name] < o.max_concurrency
                ),
                None,
            )
            if lane is None:
                return None
            queue = self._queues[lane]
            head = queue[0]
            batch = [t for t in queue if t.key == head.key][: self.max_batch_size]
            others_waiting = len(batch) < self.queued()
            if len(batch) < self.max_batch_size and not others_waiting:
                wait = self._partner_wait(batch)
                if wait > 0:
                    return wait
            for ticket in batch:
                queue.remove(ticket)
            self.metrics.set_queue_depth(lane, len(queue))
            self._start(lane, batch)
        return None

    def _partner_wait(self, batch: Sequence[Ticket[T, R]]) -> float:
        """Seconds a partial ``batch`` should still wait for partners; 0 or less: start it now."""
        head = batch[0]
        if head.enqueued - self._wave_end <= self.max_wait:  # a crowd was just answered
            if len(batch) >= self._wave_size:
                return 0.0
            since = max(head.enqueued, self._wave_end)
        elif any(t.crowded for t in batch):
            since = head.enqueued
        else:
            return 0.0
        return since + self.max_wait - time.monotonic()

    def _drop_abandoned(self) -> None:
        for lane, queue in self._queues.items():
            gone = [t for t in queue if t.abandoned()]
            for ticket in gone:
                queue.remove(ticket)
                if not ticket.future.done():
                    gone_error = errors.ClientGone("client disconnected while queued")
                    ticket.future.set_exception(self._count(gone_error))
                    ticket.future.exception()  # retrieved: nobody awaits it
            if gone:
                log.info("dropped %d queued request(s) in lane %s: client gone", len(gone), lane)
                self.metrics.set_queue_depth(lane, len(queue))

    def _fail_queued(self) -> None:
        for lane, queue in self._queues.items():
            while queue:
                ticket = queue.popleft()
                if not ticket.future.done():
                    ticket.future.set_exception(self._count(_shutting_down()))
                    ticket.future.exception()
            self.metrics.set_queue_depth(lane, 0)

    def _start(self, lane: str, batch: list[Ticket[T, R]]) -> None:
        now = time.monotonic()
        for ticket in batch:
            ticket.started = now
            self.metrics.observe(lane, "queue", now - ticket.enqueued)
        self._busy += 1
        self._inflight += len(batch)
        self._running[lane] += 1
        self.metrics.add_inflight(lane, len(batch))
        task = asyncio.get_running_loop().create_task(self._execute(lane, batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _execute(self, lane: str, batch: list[Ticket[T, R]]) -> None:
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        payloads = [t.payload for t in batch]

        def stop() -> bool:
            return self._closing or all(t.abandoned() for t in batch)

        try:
            outcomes = await loop.run_in_executor(self._executor, self._run_split, payloads, stop)
        except errors.Cancelled as exc:
            log.info("stopped a batch of %d in lane %s (%s): nobody waits for it", len(batch), lane, exc)
            outcomes = [_Failed(self._stopped(t)) for t in batch]
        except Exception:  # a bug of the batcher itself: every waiting client must still hear
            log.exception("batch of %d failed in lane %s", len(batch), lane)
            outcomes = [_Failed(errors.Internal("the batch failed; see the server log")) for _ in batch]
        else:
            elapsed = time.monotonic() - started
            self._batch_seconds = 0.7 * self._batch_seconds + 0.3 * elapsed
        finally:
            self._wave_end, self._wave_size = time.monotonic(), self._inflight + self.queued()
            self._busy -= 1
            self._inflight -= len(batch)
            self._running[lane] -= 1
            self.metrics.add_inflight(lane, -len(batch))
            self._wake.set()
        for ticket, outcome in zip(batch, outcomes, strict=True):
            if ticket.future.done():
                continue
            if isinstance(outcome, _Failed):
                ticket.future.set_exception(self._count(outcome.error))
                ticket.future.exception()
            else:
                ticket.future.set_result(outcome)

    def _stopped(self, ticket: Ticket[T, R]) -> errors.PlanetError:
        """Why a stopped batch did not answer ``ticket`` (only a shutdown stops wanted work)."""
        if self._closing and not ticket.gone():
            return _shutting_down()
        return errors.ClientGone("client disconnected while running")

    def _run_split(self, payloads: Sequence[T], stop: Stop) -> list[R | _Failed]:
        """Run in the worker thread; a failed batch is retried as two halves until the fault is alone."""
        try:
            values = list(self._run_batch(payloads, stop))
        except errors.Cancelled:
            raise
        except Exception as exc:
            oom = errors.is_out_of_memory(exc)
            if oom:
                _release_accelerator_memory()
            if len(payloads) == 1:
                if oom:
                    return [_Failed(errors.OutOfMemory("out of accelerator memory even for a batch of one"))]
                if isinstance(exc, errors.PlanetError):
                    return [_Failed(exc)]
                log.error("request failed alone (its batch siblings were retried)", exc_info=exc)
                failed = errors.Internal(f"the backend failed on this request ({type(exc).__name__})")
                return [_Failed(failed)]
            half = len(payloads) // 2
            log.warning(
                "%s at batch size %d; retrying as %d + %d",
                "out of memory" if oom else f"{type(exc).__name__} ({exc})",
                len(payloads),
                half,
                len(payloads) - half,
            )
            return self._run_split(payloads[:half], stop) + self._run_split(payloads[half:], stop)
        if len(values) != len(payloads):
            raise RuntimeError(f"backend returned {len(values)} results for {len(payloads)} requests")
        self.metrics.observe_batch(len(payloads))
        return list(values)


def _check(lanes: Sequence[LaneConfig], *, max_batch_size: int, max_wait: float, device_slots: int) -> None:
    """Refuse settings the scheduler cannot run with (a batch size of 0 would spin forever)."""
    if not lanes:
        raise ValueError("at least one lane is needed")
    if max_batch_size < 1:
        raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
    if not max_wait >= 0:
        raise ValueError(f"max_wait must be 0 or more seconds, got {max_wait}")
    if device_slots < 1:
        raise ValueError(f"device_slots must be at least 1, got {device_slots}")
    for lane in lanes:
        if lane.max_concurrency < 1 or lane.max_queue < 0:
            raise ValueError(f"lane {lane.name!r}: max_concurrency must be >= 1 and max_queue >= 0")


def _shutting_down() -> errors.ShuttingDown:
    return errors.ShuttingDown("the server is shutting down; retry on another replica")


def device_executor(slots: int = 1) -> concurrent.futures.ThreadPoolExecutor:
    """The worker threads that run every backend call (load, warm-up and batches alike)."""
    return concurrent.futures.ThreadPoolExecutor(slots, thread_name_prefix="planet-device")


def _release_accelerator_memory() -> None:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is always there in the predictor image
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
