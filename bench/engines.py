"""Benchmark of the engine builder on the tiny preset (CPU): build steps, sizes, torch vs ONNX Runtime.

1. ``planet_build`` (ONNX Runtime, fp32 and fp16): export / engine / parity time per component, file sizes.
2. UNet forward latency at 1536x640 (latent 80x192, batch 2 = one image with CFG): torch eager vs the built
   ONNX Runtime graph, same inputs, same threads.
3. End to end (prompt ▶ image) through the predictor's backends: torch vs onnxruntime on the built engines.

Writes bench/results/engines.json and bench/results/engines.md (with the command line).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def timed(fn: Any, repeats: int, warmup: int = 1) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return {"median_s": statistics.median(samples), "min_s": min(samples), "n": repeats}


def build(precision: str, cache: Path, preset_dir: Path, width: int, height: int) -> dict[str, Any]:
    from planet_build import build as builder
    from planet_build.progress import Reporter
    from planet_build.request import BuildRequest

    request = BuildRequest(model=None, preset="tiny", preset_dir=preset_dir, precision=precision, width=width,
                           height=height, batch_sizes=(1, 2, 4), cache_dir=cache,
                           upscalers=("preset:tiny-upscaler",))  # fmt: skip
    reporter = Reporter(quiet=True)
    started = time.perf_counter()
    outcome = builder.run(request, reporter)
    total = time.perf_counter() - started
    parts = {}
    for name, record in outcome.manifest["components"].items():
        parts[name] = {
            "bytes": record["bytes"],
            "precision": record["precision"],
            "parity_max_abs": record["parity"]["max_abs"],
            "export_s": reporter.timings.get(f"export {name}"),
            "engine_s": reporter.timings.get(f"engine {name}"),
            "parity_s": reporter.timings.get(f"parity {name}"),
        }
    return {"entry": str(outcome.entry_dir), "total_s": total, "load_s": reporter.timings.get("load model"),
            "components": parts}  # fmt: skip


def unet_latency(entry: Path, preset_dir: Path, width: int, height: int, repeats: int) -> dict[str, Any]:
    import onnxruntime as ort
    import torch
    from diffusers import UNet2DConditionModel

    from planet_predictors.backends import onnxruntime as ort_backend
    from planet_predictors.presets import tiny

    unet = UNet2DConditionModel.from_pretrained(tiny.ensure(preset_dir) / "unet").eval()
    inputs = ort_backend.unet_inputs(unet, batch=2, height=height // 8, width=width // 8,
                                     generator=torch.Generator().manual_seed(0))  # fmt: skip
    wrapper = ort_backend.UNetExportWrapper(unet)
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(entry / "unet.onnx"), options, providers=["CPUExecutionProvider"])
    feeds = {name: t.numpy() for name, t in zip(ort_backend.INPUTS, inputs, strict=True)}

    def run_torch() -> None:
        with torch.inference_mode():
            wrapper(*inputs)

    def run_ort() -> None:
        session.run([ort_backend.OUTPUT], feeds)

    return {
        "shape": list(inputs[0].shape),
        "torch": timed(run_torch, repeats),
        "onnxruntime": timed(run_ort, repeats),
    }


def end_to_end(
    entry: Path, preset_dir: Path, width: int, height: int, steps: int, repeats: int
) -> dict[str, Any]:
    from planet_predictors import backends
    from planet_predictors.backends.base import BackendSettings, BatchParams, Item
    from planet_predictors.presets import tiny

    params = BatchParams(width=width, height=height, steps=steps, guidance=5.0)
    items = [Item(prompt="deep blue planet with frosted cloudy zones, no moons", negative_prompt="", seed=1)]
    out: dict[str, Any] = {"width": width, "height": height, "steps": steps}
    for name in ("torch", "onnxruntime"):
        backend = backends.create(
            BackendSettings(model_dir=tiny.ensure(preset_dir), backend=name, engine_dir=entry, device="cpu")
        )
        backend.load()
        out[name] = timed(lambda b=backend: b.generate(params, items), repeats)
    return out


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Engine builder benchmark (tiny preset, CPU)",
        "",
        f"Command: `{result['command']}`  ",
        f"Machine: {result['machine']}, torch threads {result['threads']}",
        "",
    ]
    for precision, built in result["builds"].items():
        title = (
            f"onnxruntime {precision} (total {built['total_s']:.2f} s, model load {built['load_s']:.2f} s)"
        )
        lines += [f"## Build: {title}",
                  "", "| component | precision | export s | engine s | parity s | parity max abs | size |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
        for name, part in built["components"].items():
            lines.append(
                f"| {name} | {part['precision']} | {part['export_s'] or 0:.2f} | "
                f"{part['engine_s'] or 0:.2f} | {part['parity_s'] or 0:.2f} | {part['parity_max_abs']:.1e} | "
                f"{part['bytes'] / 1e6:.2f} MB |"
            )
        lines.append("")
    unet = result["unet_forward"]
    lines += [f"## UNet forward, input {unet['shape']} (median of {unet['torch']['n']})", "",
              "| runtime | median ms | min ms |", "| --- | ---: | ---: |"]  # fmt: skip
    for name in ("torch", "onnxruntime"):
        lines.append(f"| {name} | {unet[name]['median_s'] * 1e3:.1f} | {unet[name]['min_s'] * 1e3:.1f} |")
    e2e = result["end_to_end"]
    size = f"{e2e['width']}x{e2e['height']}"
    heading = f"## End to end {size}, {e2e['steps']} steps, CFG (median of {e2e['torch']['n']})"
    lines += ["", heading, "", "| backend | median s | min s |", "| --- | ---: | ---: |"]
    for name in ("torch", "onnxruntime"):
        lines.append(f"| {name} | {e2e[name]['median_s']:.3f} | {e2e[name]['min_s']:.3f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=1536)
    parser.add_argument("--height", type=int, default=640)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    import torch

    with tempfile.TemporaryDirectory(prefix="planet-bench-") as tmp:
        work = Path(tmp)
        preset_dir = work / "presets"
        builds = {p: build(p, work / "cache", preset_dir, args.width, args.height) for p in ("fp32", "fp16")}
        entry = Path(builds["fp32"]["entry"])
        result = {
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "machine": f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} CPUs".strip(),
            "threads": torch.get_num_threads(),
            "builds": builds,
            "unet_forward": unet_latency(entry, preset_dir, args.width, args.height, args.repeats),
            "end_to_end": end_to_end(
                entry, preset_dir, args.width, args.height, args.steps, max(2, args.repeats // 2)
            ),
        }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "engines.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "engines.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
