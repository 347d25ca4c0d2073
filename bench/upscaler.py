"""Benchmark of the upscale chain on the tiny preset (CPU): time and peak RSS, tiled vs untiled.

1. Full chain 1536x640 ▶ x2 ▶ 1720x720 ▶ img2img (strength 0.3, 20 steps) ▶ x2 ▶ 3440x1440, with
   512-pixel tiles (overlap 32) and untiled.
2. Upscale only (one x2 stage, tiled): 1536x640 input vs 3440x1440 input; peak RSS must stay within 15%.

Every case runs in a fresh subprocess (peak RSS = that process's ``ru_maxrss``), models loaded
before the clock starts. Writes bench/results/upscaler.json and bench/results/upscaler.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
URI = "s3://planetgen-models/upscalers/realesrgan-x2plus.pth"
CHAIN = [
    {"type": "upscale", "factor": 2},
    {"type": "resize", "width": 1720, "height": 720, "filter": "lanczos"},
    {"type": "img2img", "strength": 0.3, "steps": 20},
    {"type": "upscale", "factor": 2},
    {"type": "resize", "width": 3440, "height": 1440, "filter": "lanczos"},
]
CASES: dict[str, dict[str, Any]] = {
    "chain_tiled": {"input": (1536, 640), "stages": CHAIN, "tile": 512},
    "chain_untiled": {"input": (1536, 640), "stages": CHAIN, "tile": 0},
    "x2_tiled_1536x640": {"input": (1536, 640), "stages": CHAIN[:1], "tile": 512},
    "x2_tiled_3440x1440": {"input": (3440, 1440), "stages": CHAIN[:1], "tile": 512},
    "x2_untiled_3440x1440": {"input": (3440, 1440), "stages": CHAIN[:1], "tile": 0},
}


def config(stages: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "planetgen.io/v1alpha1",
        "kind": "PipelineConfig",
        "pipeline": "bench",
        "revision": "r1",
        "component": "upscale",
        "spec": {
            "model": {"base": {"uri": "/mnt/models"}},
            "generation": {"width": 1536, "height": 640, "guidanceScale": 7.0},
            "engine": {"backend": "torch", "precision": "fp32"},
            "upscale": {"model": {"uri": URI}, "tileSize": 512, "tileOverlap": 32, "stages": stages},
        },
    }


def rss_mib() -> float:
    # ru_maxrss is KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_case(name: str, preset_dir: Path, workdir: Path) -> dict[str, Any]:
    """Runs inside the child process: load, then time one chain run on a noise image."""
    import numpy as np

    from planet_predictors.upscaler import engines
    from planet_predictors.upscaler import stages as st
    from planet_predictors.upscaler.factory import build_model, build_parser

    case = CASES[name]
    path = workdir / f"{name}.json"
    path.write_text(json.dumps(config(case["stages"])))
    args = build_parser().parse_args(
        [
            "--model_name=upscale",
            f"--pipeline-config={path}",
            "--preset=tiny",
            f"--preset-dir={preset_dir}",
            f"--tile-size={case['tile']}",
            "--tile-overlap=32",
            "--no-warmup",
        ]
    )
    model = build_model(args)
    model.load()
    width, height = case["input"]
    # uint8 directly: a float64 noise temporary would count in the peak RSS being measured.
    pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    loaded = rss_mib()
    started = time.perf_counter()
    images, records = model.chain.run([engines.Job(pixels, prompt="deep blue planet", seed=1)], model.stages)
    seconds = time.perf_counter() - started
    out_h, out_w = images[0].shape[:2]
    return {
        "case": name,
        "input": f"{width}x{height}",
        "output": f"{out_w}x{out_h}",
        "stages": [r.as_dict() for r in records[0]],
        "chain": [type(s).__name__ for s in st.from_spec(model.config.spec)],
        "tile": case["tile"],
        "seconds": round(seconds, 2),
        "rss_after_load_mib": round(loaded, 1),
        "peak_rss_mib": round(rss_mib(), 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--case", choices=sorted(CASES), help="(internal) run one case and print JSON")
    parser.add_argument("--preset-dir", type=Path)
    parser.add_argument("--only", nargs="*", choices=sorted(CASES), help="cases to run (default: all)")
    args = parser.parse_args()
    if args.case:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(run_case(args.case, args.preset_dir, Path(tmp))))
        return 0

    from planet_predictors.presets import tiny, tiny_upscaler

    preset_dir = Path(tempfile.mkdtemp(prefix="planetgen-bench-"))
    tiny.ensure(preset_dir)
    tiny_upscaler.ensure(preset_dir, scale=2)
    env = {**os.environ, "OMP_NUM_THREADS": str(os.cpu_count() or 1)}
    results: list[dict[str, Any]] = []
    for name in args.only or list(CASES):
        cmd = [sys.executable, __file__, "--case", name, "--preset-dir", str(preset_dir)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            return 1
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"{name:22s} {result['seconds']:7.2f} s  peak {result['peak_rss_mib']:7.1f} MiB", flush=True)
        results.append(result)
    by_name = {r["case"]: r for r in results}
    summary: dict[str, Any] = {}
    if {"x2_tiled_1536x640", "x2_tiled_3440x1440"} <= by_name.keys():
        small, large = by_name["x2_tiled_1536x640"], by_name["x2_tiled_3440x1440"]
        growth = large["peak_rss_mib"] / small["peak_rss_mib"] - 1
        summary["tiled_peak_rss_growth_1536x640_to_3440x1440"] = round(growth, 3)
        summary["within_15_percent"] = growth <= 0.15
    command = " ".join(["python", "bench/upscaler.py", *sys.argv[1:]])
    report = {
        "command": command,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "preset": "tiny (Real-ESRGAN Compact 16 feat x 4 convs, tiny SDXL img2img on CPU)",
        "results": results,
        "summary": summary,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "upscaler.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# Upscaler benchmark (tiny preset, CPU)",
        "",
        f"Command: `{command}` ({os.cpu_count()} CPUs).",
        "Each case runs in a fresh process; models are loaded before timing.",
        "",
        "| case | input ▶ output | tile | seconds | RSS after load (MiB) | peak RSS (MiB) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        lines.append(
            f"| {r['case']} | {r['input']} ▶ {r['output']} | {r['tile'] or 'off'} | {r['seconds']} |"
            f" {r['rss_after_load_mib']} | {r['peak_rss_mib']} |"
        )
    if summary:
        lines += [
            "",
            "Tiled x2 peak RSS, 3440x1440 input vs 1536x640:"
            f" {summary['tiled_peak_rss_growth_1536x640_to_3440x1440']:+.1%} (limit +15%).",
        ]
    (RESULTS / "upscaler.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
