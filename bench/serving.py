"""planetgen's predictor against the serving stacks users compare it with, side by side in one run.

    .venv/bin/python bench/serving.py [--rounds 3] [--clients 1 4 16 64]

The same tiny SDXL pipeline (CPU) served four ways, alternating within each round: planetgen's
predictor (``python -m planet_predictors.sdxl``), plain FastAPI (``bench/peers/fastapi_server.py``),
LitServe with its batching and Ray Serve with ``@serve.batch`` (``bench/peers/``). Same size, steps,
guidance, torch threads, batch size and batch wait, PNG out. Closed-loop clients at each level;
per peer: throughput, p50/p95/p99 and errors, as medians over rounds with their spread. Each round
also times the pipeline called directly in this process (diffusers' own call, and planetgen's
backend), so the added latency at one client is measured against the same work.

Writes bench/results/serving.{json,md,png}. Needs the bench extras (``make bench`` installs them).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import clients  # bench/ is not a package: found through the path set above

ROOT = Path(__file__).resolve().parents[1]
PEERS_DIR = ROOT / "bench" / "peers"
RESULTS = ROOT / "bench" / "results"
PROMPT = "a realistic ethereal planet, teal oceans, thin atmosphere, two moons, starfield"


@dataclasses.dataclass(frozen=True)
class Peer:
    """One way of serving the pipeline: how to start it, reach it, ask it and read its answer."""

    name: str
    argv: Callable[[argparse.Namespace, Path, int], list[str]]
    health: str
    path: str
    body: Callable[[dict[str, Any]], Any]
    image_of: clients.ImageOf
    how: str


def _planetgen(args: argparse.Namespace, _model_dir: Path, port: int) -> list[str]:
    return [
        *("-m", "planet_predictors.sdxl", "--preset", "tiny", "--model_name", "sdxl"),
        *("--http_port", str(port), "--enable_grpc", "false", "--max-queue", "1000"),
        *("--max-batch-size", str(args.max_batch_size), "--max-batch-wait-ms", str(args.max_batch_wait_ms)),
        *("--enable_latency_logging", "false"),
    ]


def _script(name: str, *, batching: bool) -> Callable[[argparse.Namespace, Path, int], list[str]]:
    def argv(args: argparse.Namespace, model_dir: Path, port: int) -> list[str]:
        extra = [str(args.max_batch_size), str(args.max_batch_wait_ms / 1000)] if batching else []
        return [str(PEERS_DIR / name), str(model_dir), str(port), *extra]

    return argv


PEERS: dict[str, Peer] = {
    peer.name: peer
    for peer in (
        Peer(
            name="planetgen",
            argv=_planetgen,
            health="/v1/models/sdxl",
            path="/v1/models/sdxl:predict",
            body=lambda b: {"instances": [b]},
            image_of=lambda a: a["predictions"][0]["image"],
            how="KServe ModelServer (V1), planetgen's batcher: max batch, max wait; fpng PNG",
        ),
        Peer(
            name="fastapi",
            argv=_script("fastapi_server.py", batching=False),
            health="/health",
            path="/generate",
            body=lambda b: b,
            image_of=lambda a: a["image"],
            how="FastAPI + uvicorn, sync handler behind a lock, one image per call; Pillow PNG",
        ),
        Peer(
            name="litserve",
            argv=_script("litserve_server.py", batching=True),
            health="/health",
            path="/predict",
            body=lambda b: b,
            image_of=lambda a: a["image"],
            how="LitServe 0.2: LitAPI(max_batch_size, batch_timeout), workers_per_device=1; Pillow PNG",
        ),
        Peer(
            name="ray",
            argv=_script("ray_server.py", batching=True),
            health="/-/healthz",
            path="/generate",
            body=lambda b: b,
            image_of=lambda a: a["image"],
            how="Ray Serve: @serve.batch(max_batch_size, batch_wait_timeout_s), max_ongoing_requests="
            "4x batch, num_cpus=threads, local Ray on 127.0.0.1; Pillow PNG",
        ),
    )
}


@contextlib.contextmanager
def serving(peer: Peer, args: argparse.Namespace, model_dir: Path, env: dict[str, str]) -> Iterator[str]:
    """Start ``peer`` in its own process group, wait until it answers, yield its URL, stop it all."""
    port = clients.free_port()
    log = tempfile.NamedTemporaryFile(prefix=f"planet-bench-{peer.name}-", suffix=".log", delete=False)  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [sys.executable, *peer.argv(args, model_dir, port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # Ray starts daemons: stopping the group stops them too
    )
    base = f"http://127.0.0.1:{port}"
    try:
        clients.wait_ready(base + peer.health, process)
        url = base + peer.path
        _warm(url, peer, args)
        yield url
    except Exception:
        print(Path(log.name).read_text()[-3000:], file=sys.stderr)
        raise
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # whatever the group left behind
        log.close()
        Path(log.name).unlink()


def _warm(url: str, peer: Peer, args: argparse.Namespace) -> None:
    """A few single and concurrent requests first (routes appear late on Ray; first calls are slow)."""
    deadline = time.monotonic() + 120
    while True:
        try:
            answer = httpx.post(url, json=peer.body(request(args, 0)), timeout=120)
            if answer.status_code == 200 and clients.is_png(answer.json(), peer.image_of):
                break
            problem = f"{answer.status_code} {answer.text[:200]}"
        except (httpx.HTTPError, ValueError) as exc:
            problem = repr(exc)
        if time.monotonic() > deadline:
            raise RuntimeError(f"{peer.name} never answered a request: {problem}")
        time.sleep(1)
    level = clients.Level(clients=args.max_batch_size, requests=2 * args.max_batch_size)
    asyncio.run(clients.run_level(url, lambda i: peer.body(request(args, i)), peer.image_of, level))


def request(args: argparse.Namespace, i: int) -> dict[str, Any]:
    """The one request shape of the run, seeded by its index."""
    return {
        "prompt": PROMPT,
        "seed": i,
        "width": args.width,
        "height": args.height,
        "steps": args.steps,
        "guidance": args.guidance,
    }


def anatomy(url: str, args: argparse.Namespace, n: int = 20) -> dict[str, float]:
    """Where one client's latency goes on planetgen: medians (ms) of its own timings and the rest.

    The predictor answers each image with its stage timings; what the client sees beyond the model's
    ``total`` is HTTP, KServe's request path and JSON/base64 on both ends.
    """
    rows: list[dict[str, float]] = []
    with httpx.Client(timeout=120) as http:
        for i in range(n):
            started = time.perf_counter()
            answer = http.post(url, json={"instances": [request(args, 10_000 + i)]})
            seen = 1000 * (time.perf_counter() - started)
            timings = answer.json()["predictions"][0]["timings"]
            backend = sum(timings[f"{k}_ms"] for k in ("encode_prompt", "denoise", "decode"))
            rows.append(
                {
                    "client_ms": seen,
                    "backend_ms": backend,
                    "queue_ms": timings["queue_ms"],
                    "encode_image_ms": timings["encode_image_ms"],
                    "model_other_ms": timings["total_ms"]
                    - backend
                    - timings["queue_ms"]
                    - timings["encode_image_ms"],
                    "http_kserve_json_ms": seen - timings["total_ms"],
                }
            )
    return {key: statistics.median(r[key] for r in rows) for key in rows[0]}


def direct(model_dir: Path, args: argparse.Namespace) -> dict[str, float]:
    """Median seconds of one image called in this process: diffusers' call, planetgen's backend."""
    import torch

    sys.path.insert(0, str(PEERS_DIR))
    import common  # bench/peers is not a package

    from planet_predictors import imaging
    from planet_predictors.backends import create
    from planet_predictors.backends.base import BackendSettings, BatchParams, Item

    torch.set_num_threads(args.threads)
    pipe = common.load(str(model_dir))
    backend = create(BackendSettings(model_dir=model_dir))
    backend.load()
    params = BatchParams(width=args.width, height=args.height, steps=args.steps, guidance=args.guidance)

    def ours(i: int) -> None:
        generated = backend.generate(params, [Item(prompt=PROMPT, negative_prompt="", seed=i)])
        imaging.encode(generated[0].image, "png")

    timings: dict[str, list[float]] = {"diffusers": [], "planetgen_backend": []}
    for i in range(args.direct_repeats + 1):  # alternate the two; the first call of each warms up
        for name, call in (
            ("diffusers", lambda i: common.generate(pipe, [request(args, i)])),
            ("planetgen_backend", ours),
        ):
            started = time.perf_counter()
            call(i)
            if i:
                timings[name].append(time.perf_counter() - started)
    return {f"{name}_p50_s": statistics.median(values) for name, values in timings.items()}


def summarize(rounds: list[dict[str, Any]], names: list[str], levels: list[int]) -> dict[str, Any]:
    """Per peer and level: the median of each figure over rounds, with its min and max."""
    summary: dict[str, Any] = {}
    for name in names:
        rows = []
        for n in levels:
            runs = [row for r in rounds for row in r["load"][name] if row["clients"] == n]
            row: dict[str, Any] = {"clients": n, "errors": sum(run["errors"] for run in runs)}
            for key in ("throughput_rps", "p50_s", "p95_s", "p99_s"):
                values = [run[key] for run in runs]
                row[key] = statistics.median(values)
                row[f"{key}_spread"] = [min(values), max(values)]
            rows.append(row)
        summary[name] = rows
    anatomies = [r["anatomy"] for r in rounds if "anatomy" in r]
    if anatomies:
        summary["anatomy_ms"] = {k: statistics.median(a[k] for a in anatomies) for k in anatomies[0]}
    direct_rows = [r["direct"] for r in rounds]
    summary["direct"] = {k: statistics.median(d[k] for d in direct_rows) for k in direct_rows[0]}
    return summary


def verdict(summary: dict[str, Any], names: list[str], levels: list[int]) -> list[str]:
    """The issue's targets, each with its measured margin."""
    lines = []
    if "planetgen" not in summary:
        return []
    ours = {row["clients"]: row for row in summary["planetgen"]}
    peers = [n for n in names if n != "planetgen"]
    if 1 in ours:
        added = 1000 * (ours[1]["p50_s"] - summary["direct"]["planetgen_backend_p50_s"])
        lines.append(
            f"added latency at 1 client vs planetgen's backend called directly: {added:+.1f} ms p50"
            " (target <= 10)"
        )
        added_d = 1000 * (ours[1]["p50_s"] - summary["direct"]["diffusers_p50_s"])
        lines.append(f"added latency at 1 client vs diffusers called directly: {added_d:+.1f} ms p50")
    for n in levels:
        rows = {p: next(r for r in summary[p] if r["clients"] == n) for p in peers}
        if not rows:
            continue
        if n == 1:
            best = min(rows, key=lambda p: rows[p]["p50_s"])
            ratio = ours[1]["p50_s"] / rows[best]["p50_s"] - 1
            lines.append(f"1 client: p50 {100 * ratio:+.1f} % vs the fastest peer ({best}) (target <= +5 %)")
            continue
        best_t = max(rows, key=lambda p: rows[p]["throughput_rps"])
        best_p = min(rows, key=lambda p: rows[p]["p95_s"])
        t = ours[n]["throughput_rps"] / rows[best_t]["throughput_rps"] - 1
        p = ours[n]["p95_s"] / rows[best_p]["p95_s"] - 1
        lines.append(
            f"{n} clients: throughput {100 * t:+.1f} % vs the best peer ({best_t}),"
            f" p95 {100 * p:+.1f} % vs the best peer's ({best_p}) (targets >= 0 %, <= 0 %)"
        )
    return lines


def table(results: dict[str, Any]) -> str:
    """The summary as Markdown."""
    summary, names = results["summary"], results["config"]["peers"]
    out = [
        f"# Serving four ways (`{results['command']}`)",
        "",
        f"Tiny SDXL preset on CPU ({results['machine']['cpus']} cores), {results['config']['width']}x"
        f"{results['config']['height']}, {results['config']['steps']} steps, guidance"
        f" {results['config']['guidance']}, batch {results['config']['max_batch_size']}, wait"
        f" {results['config']['max_batch_wait_ms']} ms, {results['config']['threads']} torch threads;"
        f" medians of {results['config']['rounds']} alternating rounds, [min, max] in brackets.",
        "",
        "| clients | peer | images/s | p50 ms | p95 ms | p99 ms | errors |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]

    def ms(row: dict[str, Any], key: str) -> str:
        lo, hi = row[f"{key}_spread"]
        return f"{1000 * row[key]:.0f} [{1000 * lo:.0f}, {1000 * hi:.0f}]"

    for n in results["config"]["clients"]:
        for name in names:
            row = next(r for r in summary[name] if r["clients"] == n)
            lo, hi = row["throughput_rps_spread"]
            out.append(
                f"| {n} | {name} | {row['throughput_rps']:.2f} [{lo:.2f}, {hi:.2f}] | {ms(row, 'p50_s')} |"
                f" {ms(row, 'p95_s')} | {ms(row, 'p99_s')} | {row['errors']} |"
            )
    d = summary["direct"]
    out += [
        "",
        f"Direct call in-process (no server): diffusers {1000 * d['diffusers_p50_s']:.0f} ms,"
        f" planetgen's backend {1000 * d['planetgen_backend_p50_s']:.0f} ms p50.",
        "",
        *(
            [
                "Where one client's latency goes on planetgen (medians, ms): "
                + ", ".join(f"{k.removesuffix('_ms')} {v:.1f}" for k, v in summary["anatomy_ms"].items()),
                "",
            ]
            if "anatomy_ms" in summary
            else []
        ),
        "Targets:",
        *(f"- {line}" for line in results["verdict"]),
        "",
        "How each peer is configured:",
        *(f"- {name}: {PEERS[name].how}" for name in names),
    ]
    return "\n".join(out) + "\n"


def plot(results: dict[str, Any], path: Path) -> None:
    """Throughput and p95 against clients, one line per peer, spread as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name in results["config"]["peers"]:
        rows = results["summary"][name]
        xs = [r["clients"] for r in rows]
        for ax, key, scale in ((ax1, "throughput_rps", 1), (ax2, "p95_s", 1000)):
            ys = [scale * r[key] for r in rows]
            err = [
                [y - scale * r[f"{key}_spread"][0] for y, r in zip(ys, rows, strict=True)],
                [scale * r[f"{key}_spread"][1] - y for y, r in zip(ys, rows, strict=True)],
            ]
            ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=name)
    ax1.set(xscale="log", xlabel="concurrent clients", ylabel="images/s", title="Throughput")
    ax2.set(xscale="log", yscale="log", xlabel="concurrent clients", ylabel="ms", title="p95 latency")
    ax1.legend()
    ax2.legend()
    c = results["config"]
    fig.suptitle(
        f"Tiny SDXL on CPU, {c['width']}x{c['height']} x {c['steps']} steps, batch {c['max_batch_size']}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", nargs="+", choices=sorted(PEERS), default=list(PEERS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--requests-per-client", type=int, default=3, help="at least 12 per level")
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--height", type=int, default=112)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--max-batch-size", type=int, default=4)
    parser.add_argument("--max-batch-wait-ms", type=int, default=50)
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="torch threads of every peer"
    )
    parser.add_argument("--direct-repeats", type=int, default=8)
    parser.add_argument("--out", type=Path, default=RESULTS / "serving")
    args = parser.parse_args()

    from planet_predictors.presets import tiny

    preset_root = Path(tempfile.mkdtemp(prefix="planet-bench-"))
    model_dir = tiny.ensure(preset_root)
    env = {
        **os.environ,
        "PLANET_PRESET_DIR": str(preset_root),
        "OMP_NUM_THREADS": str(args.threads),
        "PLANET_BENCH_THREADS": str(args.threads),
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    levels = [clients.Level(n, max(12, n * args.requests_per_client)) for n in args.clients]
    rounds: list[dict[str, Any]] = []
    for r in range(args.rounds):
        order = args.peers[r % len(args.peers) :] + args.peers[: r % len(args.peers)]  # rotate who goes first
        this: dict[str, Any] = {"order": order, "load": {}}
        for name in order:
            peer = PEERS[name]
            print(f"round {r + 1}/{args.rounds}: {name}", flush=True)
            with serving(peer, args, model_dir, env) as url:
                this["load"][name] = []
                for level in levels:
                    row = asyncio.run(
                        clients.run_level(
                            url, lambda i, p=peer: p.body(request(args, i)), peer.image_of, level
                        )
                    )
                    print(
                        f"  {level.clients:>3} clients: {row['throughput_rps']:.2f}/s"
                        f" p50 {1000 * row['p50_s']:.0f} ms p95 {1000 * row['p95_s']:.0f} ms"
                        f" errors {row['errors']}",
                        flush=True,
                    )
                    this["load"][name].append(row)
                if name == "planetgen":
                    this["anatomy"] = anatomy(url, args)
                    print(f"  anatomy (ms): {this['anatomy']}", flush=True)
        this["direct"] = direct(model_dir, args)
        print(f"round {r + 1}: direct {this['direct']}", flush=True)
        rounds.append(this)

    results: dict[str, Any] = {
        "command": " ".join(["python", *(str(a) for a in sys.argv)]),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "config": {**{k: v for k, v in vars(args).items() if k != "out"}},
        "versions": _versions(),
        "rounds": rounds,
    }
    results["summary"] = summarize(rounds, args.peers, args.clients)
    results["verdict"] = verdict(results["summary"], args.peers, args.clients)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(table(results))
    plot(results, args.out.with_suffix(".png"))
    print(table(results))


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("kserve", "fastapi", "uvicorn", "litserve", "ray", "torch", "diffusers"):
        with contextlib.suppress(PackageNotFoundError):
            found[package] = version(package)
    return found


if __name__ == "__main__":
    main()
