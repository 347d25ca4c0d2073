"""Backends on the tiny preset: LoRA fusion, schedulers, ONNX Runtime parity, TensorRT without CUDA."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from planet_predictors import backends
from planet_predictors.backends.base import BackendSettings, BatchParams, Item
from planet_predictors.presets import tiny
from planet_predictors.sdxl.factory import main, parse_lora
from planet_predictors.serving import errors
from planet_predictors.serving.errors import BackendUnavailable

PARAMS = BatchParams(width=128, height=56, steps=2, guidance=5.0)
ITEMS = [Item(prompt="deep blue planet with frosted cloudy zones", negative_prompt="", seed=3)]


def render(model_dir: Path, **settings: object) -> np.ndarray:
    backend = backends.create(BackendSettings(model_dir=model_dir, **settings))  # type: ignore[arg-type]
    backend.load()
    return np.asarray(backend.generate(PARAMS, ITEMS)[0].image, dtype=np.int16)


@pytest.fixture(scope="module")
def model_dir(preset_dir: Path) -> Path:
    return tiny.ensure(preset_dir)


@pytest.fixture(scope="module")
def plain(model_dir: Path) -> np.ndarray:
    return render(model_dir)


def test_lora_is_fused_and_changes_the_output(model_dir: Path, plain: np.ndarray, tmp_path: Path) -> None:
    lora = tiny.write_lora(tmp_path / "style.safetensors")
    backend = backends.create(BackendSettings(model_dir=model_dir, loras=((lora, 1.0),)))
    backend.load()
    unet = backend.pipe.unet  # type: ignore[attr-defined]
    assert not getattr(unet, "peft_config", None), "adapters must be unloaded after fusing"
    fused = np.asarray(backend.generate(PARAMS, ITEMS)[0].image, dtype=np.int16)
    assert np.abs(fused - plain).mean() > 1.0
    half = render(model_dir, loras=((lora, 0.3),))
    assert 0 < np.abs(half - plain).mean() < np.abs(fused - plain).mean()


def test_a_lora_folder_is_what_the_storage_initializer_filled(tmp_path: Path) -> None:
    from planet_predictors.backends.torch_diffusers import lora_file
    from planet_predictors.serving.errors import BackendUnavailable

    folder = tmp_path / "loras" / "style"
    lora = tiny.write_lora(folder / "ethereal-planets-v3.safetensors")
    assert lora_file(folder) == lora == lora_file(lora)
    with pytest.raises(BackendUnavailable, match="does not exist"):
        lora_file(tmp_path / "missing")
    tiny.write_lora(folder / "second.safetensors")
    with pytest.raises(BackendUnavailable, match=r"2 \.safetensors files"):
        lora_file(folder)


@pytest.mark.parametrize("scheduler", ["euler-ancestral", "dpmpp-2m", "ddim", "unipc", "lcm"])
def test_every_spec_scheduler_runs(model_dir: Path, scheduler: str) -> None:
    image = render(model_dir, scheduler=scheduler)
    assert image.shape == (56, 128, 3)


async def test_a_timed_out_request_stops_the_pipeline_within_one_step(model_dir: Path) -> None:
    """diffusers' step callback interrupts the denoising loop once nobody waits for the batch."""
    from prometheus_client import CollectorRegistry

    from planet_predictors.serving.batcher import Batcher, LaneConfig
    from planet_predictors.serving.metrics import Metrics

    backend = backends.create(BackendSettings(model_dir=model_dir))
    backend.load()
    steps: list[float] = []  # one UNet forward per step (guidance > 1 batches both halves)
    hook = backend.pipe.unet.register_forward_hook(lambda *_: steps.append(time.monotonic()))  # type: ignore[attr-defined]
    params = BatchParams(width=512, height=224, steps=200, guidance=5.0)
    registry = CollectorRegistry()
    batcher: Batcher[Item, Any] = Batcher(
        lambda batch, stop: backend.generate(params, batch, stop=stop),
        lanes=[LaneConfig("final")],
        metrics=Metrics(pipeline="p", revision="r", registry=registry),
        max_wait=0,
    )
    try:
        with pytest.raises(errors.RequestTimeout):
            await batcher.submit(ITEMS[0], lane="final", key="k", time_limit=2.5)
        timed_out = time.monotonic()
        labels = {"pipeline": "p", "revision": "r", "component": "generate", "lane": "final"}
        while registry.get_sample_value("planet_inflight_requests", labels):  # noqa: ASYNC110 - a gauge
            await asyncio.sleep(0.005)
        freed = time.monotonic() - timed_out
    finally:
        hook.remove()
        await batcher.close()
    assert len(steps) >= 2, "not even two steps in 2.5 s"
    step = (steps[-1] - steps[0]) / (len(steps) - 1)
    after = [t for t in steps if t > timed_out]
    print(
        f"device free {freed * 1000:.0f} ms ({freed / step:.2f} steps of {step * 1000:.0f} ms) after"
        f" the timeout; {len(after)} step(s) started after it, {len(steps)} of 200 ran"
    )
    assert len(after) <= 1
    assert len(steps) < 200


def test_onnxruntime_unet_matches_torch(model_dir: Path, plain: np.ndarray, tmp_path: Path) -> None:
    from diffusers import UNet2DConditionModel

    from planet_predictors.backends.onnxruntime import export_unet

    export_unet(UNet2DConditionModel.from_pretrained(model_dir / "unet"), tmp_path)
    image = render(model_dir, backend="onnxruntime", engine_dir=tmp_path)
    assert np.abs(image - plain).max() <= 2


def test_onnxruntime_without_engines_is_a_clear_error(model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailable, match="manifest"):
        render(model_dir, backend="onnxruntime", engine_dir=tmp_path)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_tensorrt_without_cuda_is_a_clear_error(model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailable, match="needs an NVIDIA GPU with CUDA"):
        render(model_dir, backend="tensorrt", engine_dir=tmp_path)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_server_exits_with_a_message_not_a_traceback(
    preset_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "--preset",
        "tiny",
        "--preset-dir",
        str(preset_dir),
        "--backend",
        "tensorrt",
        "--engine-dir",
        str(tmp_path),
    ]
    assert main(argv) == 3
    err = capsys.readouterr().err
    assert "error: the tensorrt backend needs an NVIDIA GPU with CUDA" in err
    assert "Traceback" not in err


@pytest.mark.gpu
def test_tensorrt_backend_reports_missing_engines_on_gpu(model_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("tensorrt")
    with pytest.raises(BackendUnavailable, match="manifest"):
        render(model_dir, backend="tensorrt", engine_dir=tmp_path, device="cuda")


def test_lora_flag_parsing() -> None:
    assert parse_lora("/m/a.safetensors:0.5") == (Path("/m/a.safetensors"), 0.5)
    assert parse_lora("file:///m/a.safetensors") == (Path("/m/a.safetensors"), 1.0)
    assert parse_lora("/m/a.safetensors") == (Path("/m/a.safetensors"), 1.0)
