"""Benchmark of the SDXL predictor on the tiny preset (CPU), side by side with a plain FastAPI baseline.

1. Server overhead: HTTP round trip through KServe + batcher vs calling the backend directly.
2. Throughput and p50/p95 at 1, 4 and 16 concurrent clients: planetgen vs bench/baseline_server.py.
3. Image encoding cost at 1536x640 and 3440x1440: PNG vs WebP vs JPEG.

Writes bench/results/predictor.json (with the command line) and bench/results/predictor.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} never became ready")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def load_test(url: str, make_body: Any, concurrency: int, total: int) -> dict[str, float]:
    latencies: list[float] = []
    codes: list[int] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(total):
        queue.put_nowait(i)

    async def client(http: httpx.AsyncClient) -> None:
        while not queue.empty():
            i = queue.get_nowait()
            started = time.perf_counter()
            response = await http.post(url, json=make_body(i))
            latencies.append(time.perf_counter() - started)
            codes.append(response.status_code)

    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=64)) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return {
        "concurrency": concurrency,
        "requests": total,
        "ok": codes.count(200),
        "throughput_rps": total / wall,
        "p50_s": pct(latencies, 0.5),
        "p95_s": pct(latencies, 0.95),
    }


def bench_overhead(model_dir: Path, url: str, args: argparse.Namespace) -> dict[str, float]:
    from planet_predictors import imaging
    from planet_predictors.backends import create
    from planet_predictors.backends.base import BackendSettings, BatchParams, Item

    backend = create(BackendSettings(model_dir=model_dir))
    backend.load()
    params = BatchParams(width=args.width, height=args.height, steps=args.steps, guidance=5.0)
    direct: list[float] = []
    for i in range(args.repeats + 1):
        started = time.perf_counter()
        generated = backend.generate(params, [Item(prompt="a planet", negative_prompt="", seed=i)])
        imaging.encode(generated[0].image, "png")
        direct.append(time.perf_counter() - started)
    served: list[float] = []
    body = {
        "prompt": "a planet",
        "width": args.width,
        "height": args.height,
        "steps": args.steps,
        "guidance": 5.0,
    }
    for i in range(args.repeats + 1):
        started = time.perf_counter()
        response = httpx.post(url, json={"instances": [{**body, "seed": i}]}, timeout=600)
        served.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text
    direct, served = direct[1:], served[1:]  # first call of each warms caches
    return {
        "direct_median_s": statistics.median(direct),
        "served_median_s": statistics.median(served),
        "added_ms": 1000 * (statistics.median(served) - statistics.median(direct)),
    }


def bench_encoding(model_dir: Path) -> list[dict[str, Any]]:
    from PIL import Image

    from planet_predictors import imaging
    from planet_predictors.backends import create
    from planet_predictors.backends.base import BackendSettings, BatchParams, Item

    backend = create(BackendSettings(model_dir=model_dir))
    backend.load()
    source = backend.generate(BatchParams(384, 160, 2, 5.0), [Item("a planet", "", 1)])[0].image
    rows = []
    for width, height in ((1536, 640), (3440, 1440)):
        image = source.resize((width, height), Image.Resampling.LANCZOS)
        for fmt in imaging.FORMATS:
            times = []
            for _ in range(3):
                started = time.perf_counter()
                data = imaging.encode(image, fmt, provenance={"planetgen:seed": "1"})
                times.append(time.perf_counter() - started)
            rows.append(
                {"size": f"{width}x{height}", "format": fmt, "ms": 1000 * min(times), "bytes": len(data)}
            )
    return rows


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(15, 4.5))
    for name, rows in results["load"].items():
        xs = [r["concurrency"] for r in rows]
        ax1.plot(xs, [r["throughput_rps"] for r in rows], marker="o", label=name)
        ax2.plot(xs, [r["p95_s"] for r in rows], marker="o", label=f"{name} p95")
        ax2.plot(xs, [r["p50_s"] for r in rows], marker="x", linestyle="--", label=f"{name} p50")
    ax1.set(xscale="log", xlabel="concurrent clients", ylabel="images/s", title="Throughput")
    ax2.set(xscale="log", xlabel="concurrent clients", ylabel="seconds", title="Latency")
    ax1.legend()
    ax2.legend()
    enc = results["encoding"]
    labels = [f"{r['size']}\n{r['format']}" for r in enc]
    ax3.bar(range(len(enc)), [r["ms"] for r in enc])
    ax3.set_xticks(range(len(enc)), labels, fontsize=7)
    ax3.set(ylabel="ms", title="Image encoding")
    fig.suptitle(
        f"planetgen SDXL predictor, tiny preset, {results['config']['width']}x{results['config']['height']}"
        f" x {results['config']['steps']} steps, CPU"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--height", type=int, default=112)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=8, help="sequential requests for the overhead test")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--requests-per-client", type=int, default=3)
    parser.add_argument("--max-batch-size", type=int, default=4)
    parser.add_argument("--max-batch-wait-ms", type=int, default=50)
    args = parser.parse_args()

    from planet_predictors.presets import tiny

    preset_root = Path(tempfile.mkdtemp(prefix="planet-bench-"))
    model_dir = tiny.ensure(preset_root)
    env = {**os.environ, "PLANET_PRESET_DIR": str(preset_root)}
    results: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "config": vars(args),
        "load": {},
    }

    # planetgen: the real entry point; max queue large enough that the load test sees no 429.
    port = free_port()
    planet = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "planet_predictors.sdxl",
            "--preset",
            "tiny",
            "--model_name",
            "sdxl",
            "--http_port",
            str(port),
            "--enable_grpc",
            "false",
            "--max-queue",
            "1000",
            "--max-batch-size",
            str(args.max_batch_size),
            "--max-batch-wait-ms",
            str(args.max_batch_wait_ms),
            "--enable_latency_logging",
            "false",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}/v1/models/sdxl", planet)
        url = f"http://127.0.0.1:{port}/v1/models/sdxl:predict"
        results["overhead"] = bench_overhead(model_dir, url, args)
        body = {
            "prompt": "a planet",
            "width": args.width,
            "height": args.height,
            "steps": args.steps,
            "guidance": 5.0,
        }
        results["load"]["planetgen"] = [
            asyncio.run(
                load_test(
                    url, lambda i: {"instances": [{**body, "seed": i}]}, c, c * args.requests_per_client
                )
            )
            for c in args.concurrency
        ]
    finally:
        planet.terminate()
        planet.wait(30)

    port = free_port()
    baseline = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "baseline_server.py"), str(model_dir), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}/health", baseline)
        url = f"http://127.0.0.1:{port}/generate"
        plain = {"prompt": "a planet", "width": args.width, "height": args.height, "steps": args.steps}
        results["load"]["fastapi-baseline"] = [
            asyncio.run(load_test(url, lambda i: {**plain, "seed": i}, c, c * args.requests_per_client))
            for c in args.concurrency
        ]
    finally:
        baseline.terminate()
        baseline.wait(30)

    results["encoding"] = bench_encoding(model_dir)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "predictor.json").write_text(json.dumps(results, indent=2))
    plot(results, RESULTS / "predictor.png")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
