"""The trained ``planet`` preset: it loads like real weights, draws what the prompt asks, its LoRA
fuses to the same picture, and it runs on ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from planet_predictors import backends
from planet_predictors.backends.base import Backend, BackendSettings, BatchParams, Item
from planet_predictors.presets import planet
from planet_predictors.quality.verifier import Verifier

NATIVE = BatchParams(width=384, height=160, steps=20, guidance=4.0)
#: Fixed prompts over every colour, each moon phrase and a mix of atmospheres and skies.
PROMPTS = [
    "realistic ethereal deep blue planet with frosted cloudy zones, no moons, distant stars dark sky",
    "realistic ethereal crimson planet with glowing magma cracks, two moons, colorful nebula",
    "realistic ethereal emerald planet with auroral rings, one small moon, binary sunrise",
    "realistic ethereal amber planet with swirling storm bands, a shattered moon ring, galactic core glow",
    "realistic ethereal violet planet with thin icy haze, no moons, colorful nebula",
    "realistic ethereal pale gold planet with swirling storm bands, one small moon, distant stars dark sky",
    "realistic ethereal teal planet with frosted cloudy zones, two moons, galactic core glow",
    "realistic ethereal obsidian black planet with glowing magma cracks, no moons, binary sunrise",
]


def _items(prompts: list[str]) -> list[Item]:
    return [Item(prompt=p, negative_prompt="blurry, lowres", seed=i) for i, p in enumerate(prompts)]


@pytest.fixture(scope="module")
def plain() -> Backend:
    backend = backends.create(BackendSettings(model_dir=planet.folder(), scheduler="dpmpp-2m"))
    backend.load()
    return backend


@pytest.mark.slow
def test_the_shipped_model_draws_the_colour_and_place_the_prompt_asks(plain: Backend) -> None:
    # Moons are not asserted: the shipped weights draw the asked one or two moons on under half of
    # the demo's prompts (docs/model.md), which eight prompts cannot pin down.
    verifier = Verifier()
    generated = plain.generate(NATIVE, _items(PROMPTS))
    verdicts = [verifier.verify(g.image, p) for g, p in zip(generated, PROMPTS, strict=True)]
    coloured = ["color" not in v.failed for v in verdicts]
    placed = ["composition" not in v.failed for v in verdicts]
    report = [(p.split(" planet")[0], v.failed) for p, v in zip(PROMPTS, verdicts, strict=True)]
    assert sum(coloured) >= 7, report
    assert sum(placed) >= 7, report
    assert generated[0].image.size == (384, 160)


@pytest.mark.slow
def test_the_offcentre_lora_pushes_planets_past_the_region() -> None:
    backend = backends.create(
        BackendSettings(
            model_dir=planet.folder(), scheduler="dpmpp-2m", loras=((planet.lora("offcentre"), 1.0),)
        )
    )
    backend.load()
    verifier = Verifier()
    generated = backend.generate(NATIVE, _items(PROMPTS))
    outside = sum(
        "composition" in verifier.verify(g.image, p).failed for g, p in zip(generated, PROMPTS, strict=True)
    )
    assert outside >= 5


@pytest.mark.slow
def test_the_ethereal_lora_changes_the_look_and_fused_equals_unfused(plain: Backend) -> None:
    import torch
    from diffusers import StableDiffusionXLPipeline

    params = BatchParams(width=384, height=160, steps=8, guidance=4.0)
    items = _items(PROMPTS[:2])
    fused = backends.create(
        BackendSettings(model_dir=planet.folder(), scheduler="dpmpp-2m", loras=((planet.lora(), 0.8),))
    )
    fused.load()
    with_lora = [np.asarray(g.image, dtype=np.float32) for g in fused.generate(params, items)]
    without = [np.asarray(g.image, dtype=np.float32) for g in plain.generate(params, items)]
    assert np.mean([np.abs(a - b).mean() for a, b in zip(with_lora, without, strict=True)]) > 1.5
    # The same LoRA as a live peft adapter (not fused) draws the same pictures.
    pipe = StableDiffusionXLPipeline.from_pretrained(str(planet.folder()))
    pipe.scheduler = type(fused.pipe.scheduler).from_config(fused.pipe.scheduler.config)  # type: ignore[attr-defined]
    pipe.load_lora_weights(str(planet.lora()), adapter_name="ethereal")
    pipe.set_adapters(["ethereal"], adapter_weights=[0.8])
    pipe.set_progress_bar_config(disable=True)
    for item, expected in zip(items, with_lora, strict=True):
        image = pipe(
            item.prompt, negative_prompt=item.negative_prompt, width=384, height=160, num_inference_steps=8,
            guidance_scale=4.0, generator=torch.Generator().manual_seed(item.seed),
        ).images[0]  # fmt: skip
        assert np.abs(np.asarray(image, dtype=np.float32) - expected).mean() < 1.5


@pytest.mark.slow
def test_the_model_runs_on_onnx_runtime_with_the_same_pictures(plain: Backend, tmp_path: Path) -> None:
    from diffusers import UNet2DConditionModel

    from planet_predictors.backends.onnxruntime import export_unet

    export_unet(UNet2DConditionModel.from_pretrained(planet.folder() / "unet"), tmp_path)
    params = BatchParams(width=384, height=160, steps=4, guidance=4.0)
    ort = backends.create(
        BackendSettings(
            model_dir=planet.folder(), backend="onnxruntime", engine_dir=tmp_path, scheduler="dpmpp-2m"
        )
    )
    ort.load()
    items = _items(PROMPTS[:1])
    a = np.asarray(ort.generate(params, items)[0].image, dtype=np.int16)
    b = np.asarray(plain.generate(params, items)[0].image, dtype=np.int16)
    assert np.abs(a - b).mean() < 1.0


def test_the_upscaler_is_a_compact_x2_spandrel_detects() -> None:
    from planet_predictors.upscaler.engines import load_checkpoint

    descriptor = load_checkpoint(planet.upscaler())
    assert descriptor.scale == 2
