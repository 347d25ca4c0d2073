"""What the verifier costs per image, by size, and whether it tells good planets from bad ones.

    .venv/bin/python bench/verifier.py          # writes bench/results/verifier.{json,md}

Images are the procedural scenes the planet preset learns from (ground truth), rendered at the
preset's native 384x160, at SDXL's 1536x640 and at the upscale chain's 3440x1440; each is also
spoiled three ways the rollout gate must catch: the wrong colour asked for, the planet moved past the
region, and a smudged upscale (bicubic from a quarter of the size). Cost is the median of ``--rounds``
passes over the same images, one CPU thread (the verifier runs beside the request's encoding).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from planet_predictors.presets.planet import scene
from planet_predictors.quality import palette
from planet_predictors.quality.verifier import Verifier

SIZES = ((384, 160), (1536, 640), (3440, 1440))
RESULTS = Path(__file__).resolve().parent / "results"


def _wrong_color(prompt: str, color: str) -> str:
    other = next(
        c for c in palette.COLORS if c != color and palette.requested_color(c) == c and c not in color
    )
    return prompt.replace(color, other, 1)


def _smudged(image: Image.Image) -> Image.Image:
    w, h = image.size
    return image.resize((w // 4, h // 4), Image.Resampling.BOX).resize((w, h), Image.Resampling.BICUBIC)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    verifier = Verifier()
    rng = np.random.default_rng(7)
    drawn = [scene.sample(rng, aspect=2.4) for _ in range(args.scenes)]
    moved = [
        scene.sample(np.random.default_rng(100 + i), aspect=2.4, offset=0.32) for i in range(args.scenes)
    ]
    rows: dict[str, Any] = {}
    for width, height in SIZES:
        # 8-bit PIL images, as the predictors hand them over.
        good = [Image.fromarray((scene.render(s, width, height) * 255 + 0.5).astype(np.uint8)) for s in drawn]
        off = [scene.render(s, width, height) for s in moved]
        timings = []
        for _ in range(args.rounds):
            started = time.perf_counter()
            verdicts = [verifier.verify(img, s.prompt()) for img, s in zip(good, drawn, strict=True)]
            timings.append((time.perf_counter() - started) / len(good))
        wrong = [
            verifier.verify(img, _wrong_color(s.prompt(), s.color))
            for img, s in zip(good, drawn, strict=True)
        ]
        offside = [verifier.verify(img, s.prompt()) for img, s in zip(off, moved, strict=True)]
        rows[f"{width}x{height}"] = {
            "ms_per_image": round(statistics.median(timings) * 1000, 1),
            "good_score": round(float(np.mean([v.score for v in verdicts])), 3),
            "good_all_passed": sum(not v.failed for v in verdicts),
            "wrong_color_caught": sum("color" in v.failed for v in wrong),
            "off_region_caught": sum("composition" in v.failed for v in offside),
            "off_region_score": round(float(np.mean([v.score for v in offside])), 3),
        }
        if width > 384:
            smudged = [verifier.verify(_smudged(img), s.prompt()) for img, s in zip(good, drawn, strict=True)]
            rows[f"{width}x{height}"]["smudged_caught"] = sum("sharpness" in v.failed for v in smudged)
        print(f"{width}x{height}: {rows[f'{width}x{height}']}", flush=True)
    command = "python bench/verifier.py " + f"--scenes {args.scenes} --rounds {args.rounds}"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "verifier.json").write_text(
        json.dumps({"command": command, "scenes": args.scenes, "sizes": rows}, indent=1)
    )
    lines = [
        "# Verifier: cost per image and what it catches",
        "",
        f"`{command}` ({args.scenes} procedural scenes per size; each spoiled three ways).",
        "",
        "| size | ms / image | good: mean score | good: all passed | wrong colour caught "
        "| off-region caught | smudged upscale caught |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for size, r in rows.items():
        n = args.scenes
        caught = f"{r['smudged_caught']}/{n}" if "smudged_caught" in r else "n/a (native)"
        lines.append(
            f"| {size} | {r['ms_per_image']} | {r['good_score']} | {r['good_all_passed']}/{n} | "
            f"{r['wrong_color_caught']}/{n} | {r['off_region_caught']}/{n} | {caught} |"
        )
    (RESULTS / "verifier.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
