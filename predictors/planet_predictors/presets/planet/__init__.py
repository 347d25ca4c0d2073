"""The ``planet`` preset: a small SDXL-architecture pipeline trained here to draw planets.

Trained on the procedural dataset of :mod:`.scene` by :mod:`.train` (the command that reproduces
the shipped weights is in ``weights/planetgen-preset.json`` and docs/model.md), it draws 21:9
planets at its native 384x160 whose colour, moons and place follow the structured prompt. The
folder is a plain diffusers folder (loaded with ``from_pretrained`` like real weights) plus two
peft LoRAs (``loras/ethereal``, the reference look, and ``loras/offcentre``, a deliberately bad one
for rollout tests) and a Real-ESRGAN Compact x2 upscaler trained on the same scenes.
"""

from __future__ import annotations

from pathlib import Path

NAME = "planet"
#: The preset's native size (width, height): a quarter of SDXL's 1536x640 bucket on each side.
NATIVE = (384, 160)
WEIGHTS = Path(__file__).parent / "weights"


def folder() -> Path:
    """The shipped diffusers folder; a clear error if the weights are missing from this checkout."""
    if not (WEIGHTS / "model_index.json").exists():
        raise FileNotFoundError(
            f"{WEIGHTS}: the planet preset's weights are missing; "
            "train them with: python -m planet_predictors.presets.planet.train --out " + str(WEIGHTS)
        )
    return WEIGHTS


def lora(name: str = "ethereal") -> Path:
    """A shipped LoRA (``ethereal`` or ``offcentre``)."""
    return folder() / "loras" / f"{name}.safetensors"


def upscaler() -> Path:
    """The shipped x2 upscaler checkpoint (a Compact state dict spandrel detects)."""
    return folder() / "upscaler-x2.safetensors"
