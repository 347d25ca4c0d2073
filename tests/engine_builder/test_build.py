"""``python -m planet_build``, tiny preset, ONNX Runtime: manifest, parity, hit, resume, concurrency."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.engine_builder.conftest import TINY, builder

from planet_build import cache, cli, components, parity

pytestmark = pytest.mark.slow
SDXL_PARTS = ("unet", "vae_decoder", "text_encoder", "text_encoder_2")


def manifest_of(entry: Path) -> dict[str, Any]:
    return json.loads((entry / "manifest.json").read_text())


def test_manifest_lists_every_component_with_hashes_and_parity(tiny_build: Path) -> None:
    manifest = manifest_of(tiny_build)
    upscaler = f"upscaler-{hashlib.sha256(b'hf://acme/x2').hexdigest()[:12]}"
    assert manifest["backend"] == "onnxruntime"
    assert manifest["key"] == tiny_build.name
    assert set(manifest["components"]) == {*SDXL_PARTS, upscaler}
    assert manifest["inputs"]["batch_sizes"] == [1, 2, 4]
    assert manifest["inputs"]["upscalers"] == ["hf://acme/x2"]
    assert manifest["tools"]["onnxruntime"] and manifest["tools"]["torch"]
    for name, record in manifest["components"].items():
        assert cache.verify_files(tiny_build, record) is None, name
        assert record["parity"]["passed"] is True
        assert record["parity"]["max_abs"] < 1e-4, (
            name,
            record["parity"],
        )  # the tiny preset is exact to ~1e-6
    unet = manifest["components"]["unet"]
    assert unet["path"] == "unet.onnx"
    assert unet["inputs"] == ["sample", "timestep", "encoder_hidden_states", "text_embeds", "time_ids"]
    assert unet["outputs"] == ["out_sample"]
    assert manifest["components"][upscaler]["inputs"] == ["image"]
    assert manifest["components"][upscaler]["outputs"] == ["upscaled"]
    assert manifest["components"][upscaler]["scale"] == 2
    # Only what is served is left: no progress file, no intermediate graphs, no temporary files.
    assert sorted(p.name for p in tiny_build.iterdir()) == sorted(
        ["manifest.json", *(f"{n}.onnx" for n in manifest["components"])]
    )


def test_graphs_take_any_batch(tiny_build: Path) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(str(tiny_build / "vae_decoder.onnx"), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        (images,) = session.run(["images"], {"latent": np.zeros((batch, 4, 8, 16), np.float32)})
        assert images.shape == (batch, 3, 64, 128)
    session = ort.InferenceSession(
        str(tiny_build / "text_encoder_2.onnx"), providers=["CPUExecutionProvider"]
    )
    hidden, pooled = session.run(None, {"input_ids": np.ones((5, 77), np.int64)})
    assert hidden.shape[0] == pooled.shape[0] == 5


def test_a_complete_entry_is_a_hit_that_writes_nothing(tiny_build: Path, preset_dir: Path) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in tiny_build.iterdir()}
    done = builder(*TINY, "--preset-dir", str(preset_dir), "--cache-dir", str(tiny_build.parent),
                   "--upscaler", "hf://acme/x2", "--expect-key", tiny_build.name)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "cache hit" in done.stdout
    assert {p.name: p.stat().st_mtime_ns for p in tiny_build.iterdir()} == before


def test_a_damaged_entry_is_rebuilt(tiny_build: Path, preset_dir: Path, tmp_path: Path) -> None:
    entry = tmp_path / tiny_build.name
    shutil.copytree(tiny_build, entry)
    (entry / "vae_decoder.onnx").write_bytes(b"truncated")
    done = builder(
        *TINY, "--preset-dir", str(preset_dir), "--cache-dir", str(tmp_path), "--upscaler", "hf://acme/x2"
    )
    assert done.returncode == 0, done.stderr
    assert "cache hit" not in done.stdout
    assert cache.Entry(tmp_path, tiny_build.name).complete() is not None


def test_a_failed_build_resumes_without_redoing_finished_components(
    preset_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [*TINY, "--preset-dir", str(preset_dir), "--cache-dir", str(tmp_path)]

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("simulated crash while exporting the VAE")

    with monkeypatch.context() as patch:
        patch.setattr(components, "vae_decoder", broken)
        assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert "simulated crash" in err and "Traceback" not in err
    (entry,) = (p for p in tmp_path.iterdir() if p.is_dir())
    assert not (entry / "manifest.json").exists()
    progress = json.loads((entry / cache.PROGRESS).read_text())
    assert "unet" in progress["done"]
    unet_inode = (entry / "unet.onnx").stat().st_ino
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "resuming: unet already built" in out
    assert "export unet" not in out
    assert (entry / "unet.onnx").stat().st_ino == unet_inode
    assert set(manifest_of(entry)["components"]) == set(SDXL_PARTS)


def test_a_parity_failure_names_the_component_and_fails(
    preset_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(parity.TOLERANCES, "fp32", (0.0, 0.0))
    code = cli.main([*TINY, "--preset-dir", str(preset_dir), "--cache-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1
    assert "component unet: ONNX Runtime output differs from torch" in err
    assert not list(tmp_path.glob("*/manifest.json"))


def test_concurrent_builders_of_one_key_agree(preset_dir: Path, tmp_path: Path) -> None:
    argv = [
        sys.executable,
        "-m",
        "planet_build",
        *TINY,
        "--preset-dir",
        str(preset_dir),
        "--cache-dir",
        str(tmp_path),
    ]
    procs = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    finals = sorted(out.strip().splitlines()[-1].split(" ")[0] for out, _err in outs)
    assert finals == ["built", "hit"]
    (entry,) = (p for p in tmp_path.iterdir() if p.is_dir())
    assert cache.Entry(tmp_path, entry.name).complete() is not None


def test_a_fused_lora_changes_the_unet(preset_dir: Path, tiny_build: Path, tmp_path: Path) -> None:
    from planet_predictors.presets import tiny

    lora = tiny.write_lora(tmp_path / "style.safetensors")
    done = builder(
        *TINY, "--preset-dir", str(preset_dir), "--cache-dir", str(tmp_path / "c"), "--lora", f"{lora}:0.7"
    )
    assert done.returncode == 0, done.stderr
    (entry,) = (tmp_path / "c").glob("*/manifest.json")
    assert entry.parent.name != tiny_build.name, "a LoRA changes the key"
    manifest = json.loads(entry.read_text())
    assert manifest["inputs"]["loras"] == [{"uri": str(lora), "scale": 0.7}]
    assert all(p["parity"]["passed"] for p in manifest["components"].values())
    plain = manifest_of(tiny_build)["components"]
    assert manifest["components"]["unet"]["sha256"] != plain["unet"]["sha256"]
    assert manifest["components"]["vae_decoder"]["sha256"] == plain["vae_decoder"]["sha256"]


def test_fp16_engines_halve_the_unet_and_keep_the_vae_fp32(
    preset_dir: Path, tiny_build: Path, tmp_path: Path
) -> None:
    args = [a if a != "fp32" else "fp16" for a in TINY]
    done = builder(*args, "--preset-dir", str(preset_dir), "--cache-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    (entry,) = tmp_path.glob("*/manifest.json")
    parts = json.loads(entry.read_text())["components"]
    assert parts["unet"]["precision"] == "fp16"
    assert parts["vae_decoder"]["precision"] == "fp32", "SDXL's VAE overflows in fp16: it stays fp32"
    assert all(p["parity"]["passed"] for p in parts.values())
    assert parts["unet"]["bytes"] < 0.6 * manifest_of(tiny_build)["components"]["unet"]["bytes"]


def test_a_node_without_cuda_may_fall_back_to_onnxruntime_under_the_operators_key(
    preset_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from planet_contracts.engines import FALLBACK_ENV
    from planet_predictors.backends.base import fallback_backend

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: TensorRT builds for real")
    flags = [*TINY, "--preset-dir", str(preset_dir), "--cache-dir", str(tmp_path)]
    flags[flags.index("--backend") + 1], flags[flags.index("--precision") + 1] = "tensorrt", "fp16"
    # A gpuProduct too, as the reference spec has: nothing may touch CUDA on the way to the fallback.
    flags += ["--expect-key", "ab" * 32, "--gpu-product", "NVIDIA-H100-80GB-HBM3"]
    monkeypatch.setenv(FALLBACK_ENV, "onnxruntime")
    done = builder(*flags)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "TensorRT needs CUDA" in done.stdout + done.stderr and FALLBACK_ENV in done.stdout + done.stderr
    entry = tmp_path / ("ab" * 32)
    manifest = json.loads((entry / "manifest.json").read_text())
    assert (manifest["backend"], manifest["precision"]) == ("onnxruntime", "fp32")
    assert manifest["fallback"]["requested"] == "tensorrt"
    # The generate predictor serves what was built, only where the node allows the fallback.
    assert fallback_backend("tensorrt", entry) == ("onnxruntime", "fp32")
    monkeypatch.delenv(FALLBACK_ENV)
    assert fallback_backend("tensorrt", entry) == ("tensorrt", None)
