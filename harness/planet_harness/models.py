"""The local model store: what a model hub and a bucket would serve, built here from seeded weights.

There is no network on this machine, so the storage-initializer image (``storage_initializer.py``)
copies ``hf://`` and ``s3://`` URIs from this folder. Each URI the examples and the e2e suite name
gets a model the project builds itself, loaded through the same path as real weights: a diffusers
folder for SDXL, a Real-ESRGAN-architecture ``.pth`` and LoRA ``.safetensors`` files: the tiny preset's
seeded random weights under the reference example's URIs, the trained ``planet`` preset (with its
LoRAs and upscaler) under ``planetgen`` URIs for ``examples/planet-demo.yaml``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

SDXL = "hf://stabilityai/stable-diffusion-xl-base-1.0"
UPSCALER = "s3://planetgen-models/upscalers/realesrgan-x2plus.pth"
LORA = "s3://planetgen-models/loras/ethereal-planets-v3.safetensors"
PLANET = "hf://planetgen/planet-sdxl"
PLANET_UPSCALER = "s3://planetgen-models/upscalers/planet-compact-x2.pth"
PLANET_LORA = "s3://planetgen-models/loras/planet-ethereal.safetensors"
#: A deliberately bad LoRA (planets pushed past the composition region) for quality-gate tests.
PLANET_BAD_LORA = "s3://planetgen-models/loras/planet-offcentre.safetensors"


#: How a model is made: ``make(target, scratch)`` writes it at ``target``.
Maker = Callable[[Path, Path], None]


def path_of(store: Path, uri: str) -> Path:
    """Where ``uri`` lives in ``store`` (the storage initializer reads the same layout)."""
    from planet_harness.storage_initializer import source

    return source(uri, store)


def _sdxl(target: Path, scratch: Path) -> None:
    from planet_predictors.presets import tiny

    shutil.copytree(tiny.ensure(scratch), target)


def _upscaler(target: Path, scratch: Path) -> None:
    import torch

    from planet_predictors.presets import tiny_upscaler

    # A .pth as Real-ESRGAN publishes it: a pickled state dict; spandrel detects the architecture.
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(tiny_upscaler.build_state_dict(scale=2), target)


def _lora(target: Path, scratch: Path) -> None:
    from planet_predictors.presets import tiny

    tiny.write_lora(target)


def _planet(target: Path, scratch: Path) -> None:
    from planet_predictors.presets import planet

    shutil.copytree(planet.folder(), target, ignore=shutil.ignore_patterns("loras", "upscaler-*"))


def _planet_upscaler(target: Path, scratch: Path) -> None:
    import torch
    from safetensors.torch import load_file

    from planet_predictors.presets import planet

    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(load_file(str(planet.upscaler())), target)


def _planet_lora(look: str) -> Maker:
    def copy(target: Path, scratch: Path) -> None:
        from planet_predictors.presets import planet

        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(planet.lora(look), target)

    return copy


#: The URIs made from the shipped planet preset (remade when it is retrained).
PLANET_MODELS = frozenset({PLANET, PLANET_UPSCALER, PLANET_LORA, PLANET_BAD_LORA})
#: Every URI the store serves, and how its model is made.
MODELS: dict[str, Maker] = {
    SDXL: _sdxl,
    UPSCALER: _upscaler,
    LORA: _lora,
    PLANET: _planet,
    PLANET_UPSCALER: _planet_upscaler,
    PLANET_LORA: _planet_lora("ethereal"),
    PLANET_BAD_LORA: _planet_lora("offcentre"),
}


def source_stamp(uri: str) -> str:
    """What a stored model was made from: the planet preset's record, or the tiny presets' seed.

    Each training run writes its own record (``planetgen-preset.json``), so a retrained preset differs.
    """
    if uri not in PLANET_MODELS:
        return "seeded"
    from planet_predictors.presets import planet

    try:
        record = (planet.folder() / "planetgen-preset.json").read_bytes()
    except FileNotFoundError:
        return "missing"
    return hashlib.sha256(record).hexdigest()


def ensure(store: Path, *, say: Callable[[str], None] = print) -> Path:
    """Fill ``store`` with every model in :data:`MODELS` it lacks or holds stale; return ``store``.

    Stale: made from an older planet preset than the checkout's (retrained since).
    """
    scratch = store / ".presets"
    stamps = store / ".stamps"
    for uri, make in MODELS.items():
        target = path_of(store, uri)
        stamp = stamps / hashlib.sha256(uri.encode()).hexdigest()[:16]
        wanted = source_stamp(uri)
        fresh = uri not in PLANET_MODELS or (stamp.exists() and stamp.read_text() == wanted)
        if target.exists() and fresh:
            continue
        say(f"model store: adding {uri} (once per version of its weights)")
        staging = target.with_name(f".{target.name}.{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.parent.mkdir(parents=True, exist_ok=True)
        try:
            make(staging, scratch)
        except FileNotFoundError as exc:  # a checkout without the planet preset's weights
            say(f"model store: {uri} left out: {exc}")
            shutil.rmtree(staging, ignore_errors=True)
            continue
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(staging, target)
        stamps.mkdir(parents=True, exist_ok=True)
        stamp.write_text(wanted)
    return store
