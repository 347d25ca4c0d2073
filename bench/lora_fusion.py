"""What fusing a LoRA buys: the planet preset with its ``ethereal`` LoRA live (peft) and fused.

    .venv/bin/python bench/lora_fusion.py      # writes bench/results/lora_fusion.{json,md}

The backends fuse every LoRA at load time (``fuse_lora`` then ``unload_lora_weights``): the UNet's
attention projections carry the low-rank update in their weights and serving runs no adapter layers.
This measures the same images drawn both ways, side by side in one process: seconds per image at
the preset's native 384x160 (median of ``--rounds``), load seconds, and how far apart the pictures
are (mean absolute difference of 8-bit pixels; fusion reorders float additions, nothing more).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from planet_predictors.presets import planet

RESULTS = Path(__file__).resolve().parent / "results"
PROMPTS = (
    "realistic ethereal crimson planet with glowing magma cracks, two moons, colorful nebula",
    "realistic ethereal teal planet with frosted cloudy zones, no moons, distant stars dark sky",
)
SCALE = 0.8


def _pipeline(fused: bool) -> tuple[Any, float]:
    import diffusers as _diffusers

    diffusers: Any = _diffusers  # untyped
    started = time.perf_counter()
    pipe = diffusers.StableDiffusionXLPipeline.from_pretrained(str(planet.folder()))
    pipe.scheduler = diffusers.DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    pipe.load_lora_weights(str(planet.lora()), adapter_name="ethereal")
    pipe.set_adapters(["ethereal"], adapter_weights=[SCALE])
    if fused:  # as the backends do
        pipe.fuse_lora(adapter_names=["ethereal"], lora_scale=1.0)
        pipe.unload_lora_weights()
    pipe.set_progress_bar_config(disable=True)
    return pipe, time.perf_counter() - started


def _draw(pipe: Any, steps: int) -> tuple[list[np.ndarray[Any, Any]], float]:
    started = time.perf_counter()
    images = [
        np.asarray(
            pipe(
                prompt, negative_prompt="blurry, lowres", width=planet.NATIVE[0], height=planet.NATIVE[1],
                num_inference_steps=steps, guidance_scale=4.0, generator=torch.Generator().manual_seed(i),
            ).images[0],
            dtype=np.float32,
        )
        for i, prompt in enumerate(PROMPTS)
    ]  # fmt: skip
    return images, (time.perf_counter() - started) / len(PROMPTS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(2)
    _pipeline(False)  # imports and first reads of the files, so neither row pays for them
    rows: dict[str, Any] = {}
    pictures: dict[str, list[np.ndarray[Any, Any]]] = {}
    for name, fused in (("live adapter", False), ("fused", True)):
        pipe, load = _pipeline(fused)
        _draw(pipe, 2)  # warm-up
        seconds = []
        for _ in range(args.rounds):
            pictures[name], per_image = _draw(pipe, args.steps)
            seconds.append(per_image)
        rows[name] = {"load_s": round(load, 2), "s_per_image": round(statistics.median(seconds), 3)}
    pairs = zip(pictures["live adapter"], pictures["fused"], strict=True)
    diff = float(np.mean([np.abs(a - b).mean() for a, b in pairs]))
    speedup = rows["live adapter"]["s_per_image"] / rows["fused"]["s_per_image"]
    result = {
        "command": "python bench/lora_fusion.py",
        "machine": f"{platform.machine()} {torch.get_num_threads()} torch threads",
        "steps": args.steps,
        "size": list(planet.NATIVE),
        "lora_scale": SCALE,
        "rows": rows,
        "speedup": round(speedup, 3),
        "mean_abs_pixel_diff": round(diff, 4),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "lora_fusion.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [
        "# LoRA fusion: the planet preset's `ethereal` LoRA, live and fused",
        "",
        f"`{result['command']}` ({result['machine']}; {args.steps} DPM++ 2M steps at "
        f"{planet.NATIVE[0]}x{planet.NATIVE[1]}, guidance 4, LoRA scale {SCALE}, median of {args.rounds}).",
        "",
        "| LoRA | load s | s / image |",
        "| --- | ---: | ---: |",
        *(f"| {name} | {row['load_s']} | {row['s_per_image']} |" for name, row in rows.items()),
        "",
        f"Fused is {speedup:.2f}x the live adapter's speed; the pictures differ by {diff:.3f} of 255 "
        "(mean absolute, 8-bit).",
        "",
    ]
    (RESULTS / "lora_fusion.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
