"""The autoscaling simulation's 10x burst on the real stack, beside the simulation's prediction.

Starts the whole stack with Prometheus and KEDA (``planet dev up``'s, with autoscaling), applies a
tiny-preset pipeline (torch, one request at a time per replica, 1..3 replicas, target queue depth
2), measures one request's service time S, then sends open-loop Poisson arrivals: a steady rate of
``--steady`` x 1/S, ten times that during the burst, as ``bench/autoscaling_sim.py`` does (its
profile compressed in time). Requests refused with 429 count as rejected and are not retried, as in
the simulation. It samples the Deployment's replicas (the HPA's decision) and ready replicas every
second, then runs the simulation's KEDA (queued + in flight) scaler with the same S, queue bound,
replica bounds, intervals and the cold start measured here, and writes both side by side.

Intervals are shortened as in tests/e2e/test_autoscaling.py (the products' defaults in brackets):
scrape 2 s [15 s], HPA sync 5 s [15 s], scale-down stabilization 30 s [300 s], the pipeline's own
``autoscaling.scaleDownStabilizationSeconds``.

What differs from the simulation, by construction: the node has two CPU cores, so replicas beyond
the first add queues and processes but little capacity; the gateway picks a ready endpoint at
random where the simulation routes to the least loaded replica.

Usage: python bench/autoscaling_real.py [--seed 7] [--out bench/results]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).parent))
import autoscaling_sim as sim
from planet_harness import devstack, workloads
from planet_harness import stack as harness

NS = "default"
PIPELINE = "bench-scale"
SCRAPE_SECONDS, HPA_SYNC_SECONDS, SCALE_DOWN_WINDOW_SECONDS = 2.0, 5.0, 30
MIN_REPLICAS, MAX_REPLICAS, TARGET, MAX_QUEUE = 1, 3, 2, 8
MANIFEST = workloads.scaling_pipeline(
    PIPELINE, namespace=NS, size=(304, 128), steps=4, max_queue=MAX_QUEUE,
    replicas=(MIN_REPLICAS, MAX_REPLICAS), target_queue_depth=TARGET,
    scale_down_window=SCALE_DOWN_WINDOW_SECONDS,
)  # fmt: skip
PROMPT = workloads.PROMPT


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


class Client:
    """Posts to one InferenceService through the gateway; one call is one arrival (no retries)."""

    def __init__(self, dev: devstack.DevStack, url: str) -> None:
        self.url = url
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": dev.stack.proxy}))

    def one(self, seed: int) -> tuple[int, float]:
        body = json.dumps({"instances": [{"prompt": PROMPT, "seed": seed}]}).encode()
        request = urllib.request.Request(self.url, data=body, headers={"content-type": "application/json"})
        started = time.monotonic()
        try:
            with self.opener.open(request, timeout=600) as reply:
                reply.read()
                return reply.status, time.monotonic() - started
        except urllib.error.HTTPError as exc:
            return exc.code, time.monotonic() - started
        except OSError:
            return 0, time.monotonic() - started


def kubectl_json(dev: devstack.DevStack, *args: str) -> dict[str, Any]:
    return dict(json.loads(dev.cluster.kubectl(*args, "-o", "json").stdout))


def wait(what: str, check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(1.0)
    raise TimeoutError(what)


def sample(dev: devstack.DevStack, deployment: str, query: str, stop: threading.Event, start: float,
           rows: list[dict[str, float]]) -> None:  # fmt: skip
    assert dev.stack.prometheus is not None
    while not stop.wait(1.0):
        found = kubectl_json(dev, "get", "deployment", deployment, "-n", NS)
        url = f"{dev.stack.prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": query})
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:
                result = json.loads(reply.read())["data"]["result"]
            queue = float(result[0]["value"][1]) if result else 0.0
        except OSError:
            queue = float("nan")
        rows.append(
            {
                "t": round(time.monotonic() - start, 1),
                "replicas": found["spec"].get("replicas", 0),
                "ready": found.get("status", {}).get("readyReplicas", 0),
                "queue_plus_inflight": queue,
            }
        )


def cold_starts(rows: list[dict[str, float]]) -> list[float]:
    """Seconds from the HPA raising replicas to each new replica being Ready (1 s samples)."""
    found = []
    for index in range(1, len(rows)):
        before, now = rows[index - 1]["replicas"], rows[index]["replicas"]
        for wanted in range(int(before) + 1, int(now) + 1):
            ready = next((r for r in rows[index:] if r["ready"] >= wanted), None)
            if ready is not None:
                found.append(round(ready["t"] - rows[index]["t"], 1))
    return found


def run_real(args: argparse.Namespace) -> dict[str, Any]:
    autoscaling = harness.Autoscaling(scrape_seconds=SCRAPE_SECONDS, hpa_sync_seconds=HPA_SYNC_SECONDS)
    state = Path(tempfile.mkdtemp(prefix="planet-bench-scale-"))
    options = devstack.Options(state_dir=state, resync_seconds=2, autoscaling=autoscaling)
    try:
        return _profile(options, args)
    finally:
        shutil.rmtree(state, ignore_errors=True)  # etcd, logs and models of a throw-away stack


def _profile(options: devstack.Options, args: argparse.Namespace) -> dict[str, Any]:
    with devstack.up(options, say=say) as dev:
        dev.cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(MANIFEST))
        say("waiting for the pipeline to be Ready ...")
        wait("pipeline Ready", lambda: kubectl_json(dev, "get", "pp", PIPELINE, "-n", NS).get("status", {})
             .get("phase") == "Ready", 900)  # fmt: skip
        isvc = f"{PIPELINE}-generate"
        deployment = f"{isvc}-predictor"
        url = kubectl_json(dev, "get", "isvc", isvc, "-n", NS)["status"]["url"] + f"/v1/models/{isvc}:predict"
        query = kubectl_json(dev, "get", "scaledobject", deployment, "-n", NS)["spec"]["triggers"][0][
            "metadata"
        ]["query"]
        client = Client(dev, url)
        warm = [client.one(i) for i in range(6)]
        assert all(code == 200 for code, _ in warm), warm
        service = statistics.median(latency for _, latency in warm[1:])
        steady = args.steady / service
        say(f"service time {service:.2f} s: steady {steady:.2f} req/s, burst {10 * steady:.2f} req/s")
        # The simulation's own arrival process on this run's rates: same seed, same profile.
        configure_sim(service, steady, [30.0], args)
        arrivals = sim.arrivals(np.random.default_rng(args.seed))
        rows: list[dict[str, float]] = []
        stop = threading.Event()
        start = time.monotonic()
        sampler = threading.Thread(
            target=sample, args=(dev, deployment, query, stop, start, rows), daemon=True
        )
        sampler.start()
        results: list[tuple[float, int, float]] = []
        with concurrent.futures.ThreadPoolExecutor(max_workers=128) as pool:
            futures = []
            for index, at in enumerate(arrivals):
                time.sleep(max(0.0, at - (time.monotonic() - start)))
                futures.append((at, pool.submit(client.one, 1000 + index)))
            for at, future in futures:
                code, latency = future.result()
                results.append((at, code, latency))
        say("profile sent; waiting for the replicas to return to the minimum ...")
        wait("scale-down", lambda: rows and rows[-1]["replicas"] == MIN_REPLICAS, 300)
        stop.set()
        sampler.join(timeout=10)
    return {
        "service_s": service,
        "steady_rps": steady,
        "rows": rows,
        "requests": results,
        "cold_starts": cold_starts(rows),
    }


def summarize(requests: list[tuple[float, int, float]], burst: tuple[float, float]) -> dict[str, Any]:
    served = [(at, latency) for at, code, latency in requests if code == 200]
    latencies = np.array([latency for _, latency in served])
    in_burst = np.array([burst[0] <= at < burst[1] for at, _ in served])
    codes: dict[str, int] = {}
    for _, code, _ in requests:
        codes[str(code)] = codes.get(str(code), 0) + 1
    return {
        "requests": len(requests),
        "served": len(served),
        "rejected": codes.get("429", 0),
        "rejected_share": round(codes.get("429", 0) / len(requests), 4),
        "errors": len(requests) - len(served) - codes.get("429", 0),
        "codes": codes,
        "p50_latency_s": round(float(np.percentile(latencies, 50)), 2),
        "p95_latency_s": round(float(np.percentile(latencies, 95)), 2),
        "p95_latency_burst_s": round(float(np.percentile(latencies[in_burst], 95)), 2)
        if in_burst.any()
        else None,
    }


def configure_sim(service: float, steady: float, starts: list[float], args: argparse.Namespace) -> None:
    """Set the simulation's model to this run's service time, bounds, profile and cold start."""
    sim.BATCH1_SECONDS, sim.BATCH_EXPONENT, sim.MAX_BATCH = service, 1.0, 1
    sim.MAX_QUEUE = MAX_QUEUE
    sim.COLD_START = (min(starts), max(starts))
    sim.MIN_REPLICAS, sim.MAX_REPLICAS, sim.START_REPLICAS = MIN_REPLICAS, MAX_REPLICAS, MIN_REPLICAS
    sim.STEADY_RPS, sim.BURST_FACTOR = steady, 10.0
    sim.BURST_START, sim.BURST_END = args.burst_start, args.burst_start + args.burst
    sim.HORIZON = args.horizon


def run_sim(real: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """The simulation's KEDA (queued + in flight) scaler, set up like the real run."""
    configure_sim(real["service_s"], real["steady_rps"], real["cold_starts"] or [30.0], args)
    scaler = sim.KedaOngoing()
    scaler.target, scaler.lag, scaler.sync = float(TARGET), SCRAPE_SECONDS, HPA_SYNC_SECONDS
    scaler.down_window = float(SCALE_DOWN_WINDOW_SECONDS)
    return sim.simulate(scaler, args.seed)


def plot(real: dict[str, Any], predicted: dict[str, Any], args: argparse.Namespace, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True)
    rows = real["rows"]
    top.step(
        [r["t"] for r in rows], [r["replicas"] for r in rows], where="post", label="real: replicas (HPA)"
    )
    top.step([r["t"] for r in rows], [r["ready"] for r in rows], where="post", label="real: ready", alpha=0.7)
    timeline = predicted["timeline"]
    top.step(timeline["t"], timeline["replicas"], where="post", linestyle="--", label="simulated: replicas")
    top.set_ylabel("replicas")
    top.legend(loc="upper right")
    bottom.plot(
        [r["t"] for r in rows], [r["queue_plus_inflight"] for r in rows], label="real: queue + in flight"
    )
    bottom.plot(timeline["t"], timeline["queued"], linestyle="--", label="simulated: queued")
    bottom.set_ylabel("requests")
    bottom.set_xlabel("seconds")
    bottom.legend(loc="upper right")
    for ax in (top, bottom):
        ax.axvspan(args.burst_start, args.burst_start + args.burst, color="orange", alpha=0.15)
    fig.suptitle("10x burst: real stack (KServe 0.20, KEDA 2.18, kcm 1.34) vs bench/autoscaling_sim.py")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--steady", type=float, default=0.5, help="steady load as a share of 1/S")
    parser.add_argument("--burst-start", type=float, default=30.0)
    parser.add_argument("--burst", type=float, default=60.0, help="burst length, seconds")
    parser.add_argument("--horizon", type=float, default=180.0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    if not 0 < args.steady <= 1 or args.burst_start + args.burst >= args.horizon:
        parser.error("--steady must be in (0, 1] and the burst must end before --horizon")
    started = time.perf_counter()
    real = run_real(args)
    predicted = run_sim(real, args)
    burst = (args.burst_start, args.burst_start + args.burst)
    measured = summarize(real["requests"], burst)
    summary = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "versions": {"kserve": "v0.20.0", "keda": "v2.18.0", "kubernetes": "v1.34.4", "prometheus": "3.4.2"},
        "intervals_s": {
            "scrape": SCRAPE_SECONDS,
            "hpa_sync": HPA_SYNC_SECONDS,
            "scale_down_stabilization": SCALE_DOWN_WINDOW_SECONDS,
            "note": "shortened for the run; defaults 15 / 15 / 300",
        },
        "pipeline": {
            "min": MIN_REPLICAS,
            "max": MAX_REPLICAS,
            "target_queue_depth": TARGET,
            "max_queue": MAX_QUEUE,
        },
        "service_s": round(real["service_s"], 3),
        "steady_rps": round(real["steady_rps"], 3),
        "burst_s": list(burst),
        "cold_start_s": [round(s, 1) for s in real["cold_starts"]],
        "real": {
            **measured,
            "max_replicas": max(r["replicas"] for r in real["rows"]),
            "timeline": real["rows"],
        },
        "simulated": {k: v for k, v in predicted.items()},
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "autoscaling_real.json").write_text(json.dumps(summary, indent=1) + "\n")
    plot(real, predicted, args, args.out / "autoscaling_real.png")
    keys = ["p50_latency_s", "p95_latency_s", "p95_latency_burst_s", "rejected_share", "max_replicas"]
    print(f"{'':10}" + "".join(f"{k:>22}" for k in keys))
    print(f"{'real':10}" + "".join(f"{summary['real'][k]!s:>22}" for k in keys))
    print(f"{'simulated':10}" + "".join(f"{predicted[k]!s:>22}" for k in keys))
    print(f"errors (not 200, not 429): {measured['errors']}; wall {summary['wall_seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
