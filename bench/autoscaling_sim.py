"""Discrete-event simulation: three autoscalers for a GPU pool serving SDXL through a 10x burst.

Service model (H100, TensorRT, SDXL 30 steps, 1024²): 1.47 s per image at batch 1 (Stability AI /
NVIDIA), a batch of b takes 1.47·b^0.8 s. The exponent is chosen so large batches gain ~1.5x
throughput, near MLPerf v4.0's offline/single-stream ratio for one H100 (1.642 samples/s at 20
steps ≈ 1.09 img/s at 30 steps vs 0.68 img/s at batch 1). Batches are capped at 4 (the engine's
largest profile by default). Each replica has a bounded queue: a request finding every queue full
is refused (429). A new replica needs 60-120 s (pull + load engines) before it serves; its GPU is
paid from the moment it is requested until it is removed (a scaled-down replica drains first).

Autoscalers (all with min 1, max 32 replicas):
  keda  queue depth: replicas = ceil(queued / 4), read every 15 s from Prometheus (15 s stale);
        the HPA under KEDA scales up by at most max(100 %, 4 pods) per sync, down after a 300 s window.
  keda-ongoing  the same on queued + in flight (what the operator's KEDA query should use, see below).
        The operator renders the target as KServe `{type: Value, value: 4}`: KServe makes it the
        Prometheus trigger's `threshold` and KEDA's HPA target is AverageValue, hence the division.
  hpa   GPU utilisation, target 80 %, same HPA mechanics; utilisation is averaged over 30 s, is
        capped at 100 % and unready replicas count as 0 %, so it can grow at most 1.25x per cold start.
  kpa   Knative: concurrency (queued + in flight, from the queue-proxies, no scrape lag) with target
        4 x 70 % per replica, 60 s stable and 6 s panic windows, panic at 200 %, ticks every 2 s.

Usage: python bench/autoscaling_sim.py [--seed 7] [--out bench/results]
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import heapq
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

BATCH1_SECONDS = 1.47
BATCH_EXPONENT = 0.8
MAX_BATCH = 4
MAX_QUEUE = 16  # per replica: ~16/0.9 img/s ≈ 18 s of waiting, near MLPerf's 20 s server bound
COLD_START = (60.0, 120.0)
MIN_REPLICAS, MAX_REPLICAS, START_REPLICAS = 1, 32, 2
STEADY_RPS, BURST_FACTOR = 1.5, 10.0
BURST_START, BURST_END, HORIZON = 600.0, 900.0, 1800.0
SAMPLE_EVERY = 1.0


def batch_seconds(size: int) -> float:
    return BATCH1_SECONDS * size**BATCH_EXPONENT


@dataclasses.dataclass
class Replica:
    ident: int
    requested: float
    ready_at: float
    ready: bool = False
    draining: bool = False
    removed: float | None = None
    queue: collections.deque[float] = dataclasses.field(default_factory=collections.deque)
    in_flight: list[float] = dataclasses.field(default_factory=list)
    busy_since: float | None = None
    busy_total: float = 0.0

    def load(self) -> int:
        return len(self.queue) + len(self.in_flight)

    def busy_until(self, now: float) -> float:
        """Busy seconds up to ``now``, the running batch included."""
        return self.busy_total + (now - self.busy_since if self.busy_since is not None else 0.0)


class Pool:
    """Replicas, routing and batching; an autoscaler only calls :meth:`scale_to`."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.events: list[tuple[float, int, str, Any]] = []
        self.seq = 0
        self.replicas: list[Replica] = []
        self.latencies: list[tuple[float, float]] = []  # (arrival, latency)
        self.rejected = 0
        self.arrived = 0

    def push(self, at: float, kind: str, payload: Any = None) -> None:
        self.seq += 1
        heapq.heappush(self.events, (at, self.seq, kind, payload))

    def live(self) -> list[Replica]:
        return [r for r in self.replicas if r.removed is None and not r.draining]

    def ready(self) -> list[Replica]:
        return [r for r in self.live() if r.ready]

    def queued(self) -> int:
        return sum(len(r.queue) for r in self.replicas if r.removed is None)

    def concurrency(self) -> int:
        return sum(r.load() for r in self.replicas if r.removed is None)

    def add(self, now: float, *, warm: bool = False) -> None:
        delay = 0.0 if warm else float(self.rng.uniform(*COLD_START))
        replica = Replica(ident=len(self.replicas), requested=now, ready_at=now + delay, ready=warm)
        self.replicas.append(replica)
        if not warm:
            self.push(now + delay, "ready", replica)

    def scale_to(self, now: float, desired: int) -> None:
        desired = min(MAX_REPLICAS, max(MIN_REPLICAS, desired))
        live = self.live()
        for _ in range(desired - len(live)):
            self.add(now)
        # Scale down: cancel cold starts first, then drain the least loaded.
        for replica in sorted(live, key=lambda r: (r.ready, r.load()))[: max(0, len(live) - desired)]:
            replica.draining = True
            if replica.load() == 0:
                replica.removed = now

    def arrive(self, now: float) -> None:
        self.arrived += 1
        candidates = [r for r in self.ready() if len(r.queue) < MAX_QUEUE]
        if not candidates:
            self.rejected += 1
            return
        target = min(candidates, key=lambda r: (r.load(), r.ident))
        target.queue.append(now)
        self.start_batch(now, target)

    def start_batch(self, now: float, replica: Replica) -> None:
        if replica.in_flight or not replica.queue:
            return
        size = min(MAX_BATCH, len(replica.queue))
        replica.in_flight = [replica.queue.popleft() for _ in range(size)]
        replica.busy_since = now
        self.push(now + batch_seconds(size), "done", replica)

    def finish(self, now: float, replica: Replica) -> None:
        self.latencies.extend((arrived, now - arrived) for arrived in replica.in_flight)
        replica.in_flight = []
        assert replica.busy_since is not None
        replica.busy_total += now - replica.busy_since
        replica.busy_since = None
        self.start_batch(now, replica)
        if replica.draining and replica.load() == 0:
            replica.removed = now

    def gpu_seconds(self, end: float) -> float:
        return sum((r.removed if r.removed is not None else end) - r.requested for r in self.replicas)


class Hpa:
    """Kubernetes HPA mechanics shared by the KEDA and GPU-utilisation scalers."""

    sync = 15.0
    down_window = 300.0

    def __init__(self) -> None:
        # The HPA already ran before t=0: seeding its history avoids a start-up scale-down.
        self.recommendations: collections.deque[tuple[float, int]] = collections.deque(
            [(0.0, START_REPLICAS)]
        )

    def apply(self, pool: Pool, now: float, wanted: int) -> None:
        current = len(pool.live())
        wanted = min(wanted, max(2 * current, current + 4))  # default scale-up policy per sync
        self.recommendations.append((now, wanted))
        while self.recommendations[0][0] < now - self.down_window:
            self.recommendations.popleft()
        # Scale down only to the highest recommendation of the last 300 s.
        desired = wanted if wanted >= current else min(current, max(w for _, w in self.recommendations))
        pool.scale_to(now, desired)


class Keda(Hpa):
    name = "keda"
    metric = "queued"
    target = 4.0
    lag = 15.0

    def tick(self, pool: Pool, now: float, history: Samples) -> None:
        queued = history.at(now - self.lag, self.metric)
        current = len(pool.live())
        ratio = queued / (self.target * current)
        if abs(ratio - 1.0) <= 0.1:  # HPA tolerance
            return
        self.apply(pool, now, math.ceil(queued / self.target))


class KedaOngoing(Keda):
    """KEDA on queued + in flight (Ray Serve's "ongoing requests"): an empty queue is not zero demand."""

    name = "keda-ongoing"
    metric = "concurrency"


class GpuHpa(Hpa):
    name = "hpa"
    target = 0.8
    window = 30.0
    lag = 15.0

    def __init__(self) -> None:
        super().__init__()
        self.busy: dict[int, collections.deque[tuple[float, float]]] = collections.defaultdict(
            collections.deque
        )

    def tick(self, pool: Pool, now: float, history: Samples) -> None:
        seen = now - self.lag
        utils = []
        for replica in pool.live():
            marks = self.busy[replica.ident]
            marks.append((now, replica.busy_until(now)))
            if not replica.ready or replica.ready_at > seen - self.window:
                utils.append(0.0)  # unready (or no full window yet) counts as idle on scale-up
                continue
            old = [m for m in marks if m[0] <= seen - self.window]
            new = [m for m in marks if m[0] <= seen]
            if not old or not new:
                utils.append(0.0)
                continue
            utils.append(min(1.0, (new[-1][1] - old[-1][1]) / (new[-1][0] - old[-1][0])))
        average = sum(utils) / len(utils)
        if abs(average / self.target - 1.0) <= 0.1:
            return
        self.apply(pool, now, math.ceil(len(utils) * average / self.target))


class Kpa:
    name = "kpa"
    sync = 2.0
    target = 4 * 0.7
    stable, panic = 60.0, 6.0

    def __init__(self) -> None:
        self.panic_until = -1.0

    def tick(self, pool: Pool, now: float, history: Samples) -> None:
        ready = max(1, len(pool.ready()))
        stable = math.ceil(history.mean(now - self.stable, now, "concurrency") / self.target)
        panic = math.ceil(history.mean(now - self.panic, now, "concurrency") / self.target)
        if panic / ready >= 2.0:
            self.panic_until = now + self.stable
        current = len(pool.live())
        # In panic never scale down; else at most halve per tick (max-scale-down-rate 2).
        desired = max(panic, current) if now < self.panic_until else max(stable, math.ceil(current / 2))
        pool.scale_to(now, desired)


class Samples:
    """Once-a-second samples of the pool, read back by the scalers and the plot."""

    def __init__(self) -> None:
        self.rows: list[tuple[float, int, int, int, int]] = []

    def take(self, now: float, pool: Pool) -> None:
        self.rows.append((now, len(pool.live()), len(pool.ready()), pool.queued(), pool.concurrency()))

    def _column(self, name: str) -> int:
        return {"replicas": 1, "ready": 2, "queued": 3, "concurrency": 4}[name]

    def at(self, when: float, name: str) -> float:
        index = min(len(self.rows) - 1, max(0, int(when / SAMPLE_EVERY)))
        return float(self.rows[index][self._column(name)]) if self.rows else 0.0

    def mean(self, start: float, end: float, name: str) -> float:
        col = self._column(name)
        values = [row[col] for row in self.rows[max(0, int(start / SAMPLE_EVERY)) :] if row[0] <= end]
        return float(np.mean(values)) if values else 0.0


def arrivals(rng: np.random.Generator) -> list[float]:
    """Poisson arrivals: steady load with a 10x burst between BURST_START and BURST_END."""
    times, now = [], 0.0
    while True:
        rate = STEADY_RPS * (BURST_FACTOR if BURST_START <= now < BURST_END else 1.0)
        step = float(rng.exponential(1.0 / rate))
        # Crossing a rate boundary restarts the clock there (memoryless), so the burst starts on time.
        boundary = next((b for b in (BURST_START, BURST_END) if now < b <= now + step), None)
        if boundary is not None:
            now = boundary
            continue
        now += step
        if now >= HORIZON:
            return times
        times.append(now)


def simulate(scaler: Keda | GpuHpa | Kpa, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    pool = Pool(np.random.default_rng(seed + 1))
    history = Samples()
    for at in arrivals(rng):
        pool.push(at, "arrive")
    for _ in range(START_REPLICAS):
        pool.add(0.0, warm=True)
    pool.push(0.0, "sample")
    pool.push(scaler.sync, "tick")
    while pool.events:
        now, _, kind, payload = heapq.heappop(pool.events)
        if now > HORIZON and kind in ("tick", "sample"):
            continue  # drain the work in flight, stop measuring and scaling
        if kind == "arrive":
            pool.arrive(now)
        elif kind == "done":
            pool.finish(now, payload)
        elif kind == "ready":
            payload.ready = True
        elif kind == "sample":
            history.take(now, pool)
            pool.push(now + SAMPLE_EVERY, "sample")
        elif kind == "tick":
            scaler.tick(pool, now, history)
            pool.push(now + scaler.sync, "tick")
    served = np.array(pool.latencies)
    latencies = served[:, 1]
    in_burst = (served[:, 0] >= BURST_START) & (served[:, 0] < BURST_END)
    return {
        "autoscaler": scaler.name,
        "requests": pool.arrived,
        "served": len(pool.latencies),
        "rejected": pool.rejected,
        "rejected_share": round(pool.rejected / pool.arrived, 4),
        "p50_latency_s": round(float(np.percentile(latencies, 50)), 2),
        "p95_latency_s": round(float(np.percentile(latencies, 95)), 2),
        "p99_latency_s": round(float(np.percentile(latencies, 99)), 2),
        "p95_latency_burst_s": round(float(np.percentile(latencies[in_burst], 95)), 2),
        "p95_latency_steady_s": round(float(np.percentile(latencies[~in_burst], 95)), 2),
        "gpu_seconds": round(pool.gpu_seconds(HORIZON), 0),
        "gpu_hours": round(pool.gpu_seconds(HORIZON) / 3600, 2),
        "max_replicas": max(row[1] for row in history.rows),
        "timeline": {
            "t": [row[0] for row in history.rows[::5]],
            "replicas": [row[1] for row in history.rows[::5]],
            "ready": [row[2] for row in history.rows[::5]],
            "queued": [row[3] for row in history.rows[::5]],
        },
    }


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, axes = plt.subplots(len(results), 1, figsize=(10, 3 * len(results)), sharex=True)
    for ax, result in zip(axes, results, strict=True):
        line = result["timeline"]
        ax.axvspan(BURST_START, BURST_END, color="orange", alpha=0.15, label="10x burst")
        ax.step(line["t"], line["replicas"], where="post", label="replicas (incl. starting)")
        ax.step(line["t"], line["ready"], where="post", label="ready replicas")
        ax.set_ylabel("replicas")
        twin = ax.twinx()
        twin.plot(line["t"], line["queued"], color="tab:red", alpha=0.6, label="queued requests")
        twin.set_ylabel("queued")
        ax.set_title(
            f"{result['autoscaler']}: p95 {result['p95_latency_s']} s, rejected {result['rejected']}, "
            f"{result['gpu_hours']} GPU-h, max {result['max_replicas']} replicas"
        )
        handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
        ax.legend(handles=handles, loc="upper right", fontsize=8)
    axes[-1].set_xlabel("seconds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=5, help="seeds seed..seed+N-1 for the spread")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    scalers = (Keda, KedaOngoing, GpuHpa, Kpa)
    results = [simulate(scaler(), args.seed) for scaler in scalers]
    spread = {}
    for scaler in scalers:
        runs = [simulate(scaler(), args.seed + i) for i in range(args.repeats)]
        spread[scaler.name] = {
            key: {
                "mean": round(float(np.mean([r[key] for r in runs])), 2),
                "std": round(float(np.std([r[key] for r in runs])), 2),
            }
            for key in (
                "p50_latency_s",
                "p95_latency_s",
                "p95_latency_steady_s",
                "rejected",
                "gpu_hours",
                "max_replicas",
            )
        }
    args.out.mkdir(parents=True, exist_ok=True)
    summary = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "seed": args.seed,
        "model": {
            "batch_seconds": f"{BATCH1_SECONDS} * b^{BATCH_EXPONENT}",
            "max_batch": MAX_BATCH,
            "max_queue_per_replica": MAX_QUEUE,
            "cold_start_s": COLD_START,
            "replicas": {"min": MIN_REPLICAS, "max": MAX_REPLICAS, "start": START_REPLICAS},
            "load": {
                "steady_rps": STEADY_RPS,
                "burst_factor": BURST_FACTOR,
                "burst_s": [BURST_START, BURST_END],
            },
            "horizon_s": HORIZON,
        },
        "results": results,
        "over_seeds": {"seeds": list(range(args.seed, args.seed + args.repeats)), **spread},
        "wall_seconds": round(time.perf_counter() - started, 2),
    }
    (args.out / "autoscaling_sim.json").write_text(json.dumps(summary, indent=1) + "\n")
    plot(results, args.out / "autoscaling_sim.png")
    keys = ["p50_latency_s", "p95_latency_s", "p95_latency_burst_s", "p95_latency_steady_s", "rejected"]
    keys += ["gpu_hours", "max_replicas"]
    print(f"seed {args.seed}")
    print(f"{'':13}" + "".join(f"{k.removesuffix('_s').replace('_latency', ''):>14}" for k in keys))
    for result in results:
        print(f"{result['autoscaler']:13}" + "".join(f"{result[k]:>14}" for k in keys))
    print(f"requests {results[0]['requests']}; over {args.repeats} seeds (mean ± std):")
    for name, stats in spread.items():
        print(f"{name:13}" + "  ".join(f"{k} {v['mean']}±{v['std']}" for k, v in stats.items()))
    print(f"wall {summary['wall_seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
