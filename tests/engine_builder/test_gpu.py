"""TensorRT builds of the tiny preset (needs CUDA and the tensorrt package; skipped elsewhere)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.engine_builder.conftest import builder

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("precision", ["fp16", "fp32"])
def test_tensorrt_plans_with_profiles_timing_cache_and_engine_parity(
    preset_dir: Path, tmp_path: Path, precision: str
) -> None:
    pytest.importorskip("tensorrt")
    done = builder("--preset", "tiny", "--preset-dir", str(preset_dir), "--backend", "tensorrt",
                   "--precision",
                   precision, "--width", "256", "--height", "128", "--batch-sizes", "1,2", "--cache-dir",
                   str(tmp_path), "--upscaler", "hf://acme/x2", timeout=1800)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    (entry,) = tmp_path.glob("*/manifest.json")
    manifest = json.loads(entry.read_text())
    assert manifest["backend"] == "tensorrt" and manifest["tools"]["tensorrt"]
    unet = manifest["components"]["unet"]
    assert unet["path"] == "unet.plan"
    assert unet["profile"]["sample"] == {"min": [1, 4, 16, 32], "opt": [4, 4, 16, 32], "max": [4, 4, 16, 32]}
    for record in manifest["components"].values():
        assert record["engine_parity"]["passed"], record
    assert list((tmp_path / "timing-caches").glob("*.cache")), "the timing cache is kept for the next build"


def test_tensorrt_backend_loads_a_built_unet(preset_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("tensorrt")
    from planet_predictors import backends
    from planet_predictors.backends.base import BackendSettings, BatchParams, Item
    from planet_predictors.presets import tiny

    done = builder("--preset", "tiny", "--preset-dir", str(preset_dir), "--backend", "tensorrt",
                   "--precision",
                   "fp16", "--width", "128", "--height", "64", "--batch-sizes", "1",
                   "--cache-dir", str(tmp_path),
                   timeout=1800)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    (entry,) = tmp_path.glob("*/manifest.json")
    settings = BackendSettings(model_dir=tiny.ensure(preset_dir), backend="tensorrt", device="cuda",
                               precision="fp16", engine_dir=entry.parent)  # fmt: skip
    backend = backends.create(settings)
    backend.load()
    (out,) = backend.generate(
        BatchParams(width=128, height=64, steps=2, guidance=5.0), [Item("planet", "", 1)]
    )
    assert out.image.size == (128, 64)
