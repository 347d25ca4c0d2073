"""What every peer server shares: one diffusers pipeline, one call for a batch, Pillow's PNG.

The peers are what a user of each framework would write from its docs: the pipeline loaded once,
one ``pipe(...)`` call per batch (a list of prompts and one seeded generator per image, so each
image depends on its own seed only) and ``Image.save(format="PNG")``. Run from ``bench/serving.py``.
"""

from __future__ import annotations

import base64
import io
import os
from dataclasses import dataclass
from typing import Any

import torch
from diffusers import StableDiffusionXLPipeline


@dataclass(frozen=True)
class Params:
    """The generation every request of a run asks for (the bench sends one shape)."""

    width: int
    height: int
    steps: int
    guidance: float

    @classmethod
    def of(cls, body: dict[str, Any]) -> Params:
        """The shape of one request body."""
        return cls(int(body["width"]), int(body["height"]), int(body["steps"]), float(body["guidance"]))


def load(model_dir: str) -> Any:
    """The pipeline, on CPU, with ``PLANET_BENCH_THREADS`` torch threads (the same for every peer)."""
    torch.set_num_threads(int(os.environ.get("PLANET_BENCH_THREADS", torch.get_num_threads())))
    pipe = StableDiffusionXLPipeline.from_pretrained(model_dir)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(pipe: Any, bodies: list[dict[str, Any]]) -> list[str]:
    """One pipeline call for a batch of same-shape requests; base64 PNGs in request order."""
    params = Params.of(bodies[0])
    if any(Params.of(body) != params for body in bodies):
        raise ValueError("a batch mixes image shapes; the bench sends one shape")
    with torch.inference_mode():
        images = pipe(
            [str(body["prompt"]) for body in bodies],
            num_inference_steps=params.steps,
            width=params.width,
            height=params.height,
            guidance_scale=params.guidance,
            generator=[torch.Generator().manual_seed(int(body.get("seed", 0))) for body in bodies],
        ).images
    return [png_base64(image) for image in images]


def png_base64(image: Any) -> str:
    """Pillow's PNG, as a peer's docs would write it."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")
