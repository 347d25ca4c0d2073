"""Upscaler internals: the tiny ESRGAN preset, tiled blending, the stage chain, the ONNX Runtime path."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from prometheus_client import CollectorRegistry
from tests.predictors.conftest import UPSCALER_URI, upscale_config

from planet_predictors.presets import tiny_upscaler
from planet_predictors.serving import errors
from planet_predictors.upscaler import engines, tiling
from planet_predictors.upscaler import stages as st
from planet_predictors.upscaler.factory import build_model, build_parser


def noise(width: int, height: int, seed: int = 0) -> np.ndarray[Any, Any]:
    return (np.random.default_rng(seed).random((height, width, 3)) * 255).astype(np.uint8)


def png_b64(pixels: np.ndarray[Any, Any]) -> str:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture(scope="module")
def upscaler_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("upscalers")


@pytest.fixture(scope="module")
def tiny_x2(upscaler_dir: Path) -> engines.TorchUpscaler:
    descriptor = engines.load_checkpoint(tiny_upscaler.ensure(upscaler_dir, scale=2))
    return engines.TorchUpscaler(descriptor, device=torch.device("cpu"))


# -- the preset ------------------------------------------------------------------------------


def test_tiny_preset_is_written_once_and_detected_by_spandrel(tmp_path: Path) -> None:
    path = tiny_upscaler.ensure(tmp_path, scale=4)
    mtime = path.stat().st_mtime_ns
    assert tiny_upscaler.ensure(tmp_path, scale=4) == path
    assert path.stat().st_mtime_ns == mtime
    descriptor = engines.load_checkpoint(path)
    assert descriptor.architecture.id == "Compact"
    assert descriptor.scale == 4
    assert not list(tmp_path.glob(".*")), "staging files left behind"
    # Same seed, same weights: concurrent writers cannot disagree.
    from safetensors.torch import load_file

    mine, other = load_file(path), load_file(tiny_upscaler.ensure(tmp_path / "again", scale=4))
    assert mine.keys() == other.keys() and all(torch.equal(mine[k], other[k]) for k in mine)


# -- tiling ----------------------------------------------------------------------------------


def test_tiled_matches_untiled_without_seams(tiny_x2: engines.TorchUpscaler) -> None:
    image = noise(168, 72)
    whole = tiling.run([image], tiny_x2.tiles, scale=2, tile=0, overlap=0, batch=4)[0].astype(int)
    grid = tiling.make_grid(72, 168, tile=48, overlap=8)
    assert len(grid.xs) > 2 and len(grid.ys) > 1
    tiled = tiling.run([image], tiny_x2.tiles, scale=2, tile=48, overlap=8, batch=3)[0].astype(int)
    assert tiled.shape == whole.shape == (144, 336, 3)
    diff = np.abs(tiled - whole)
    assert diff.max() <= 2 and diff.mean() < 0.05
    # Seams would show at tile edges: the columns and rows where a tile starts or ends.
    seam_cols = sorted({x * 2 for x in grid.xs[1:]} | {(x + grid.tile_w) * 2 - 1 for x in grid.xs[:-1]})
    seam_rows = sorted({y * 2 for y in grid.ys[1:]} | {(y + grid.tile_h) * 2 - 1 for y in grid.ys[:-1]})
    assert diff[:, seam_cols].max() <= 2
    assert diff[seam_rows, :].max() <= 2


def test_blend_weights_sum_to_one_so_an_identity_model_is_exact() -> None:
    image = noise(200, 90, seed=3)

    def nearest_x3(tiles: Sequence[tiling.Tile]) -> list[tiling.F32]:
        return [np.repeat(np.repeat(t.pixels, 3, 0), 3, 1).astype(np.float32) / 255 for t in tiles]

    out = tiling.run([image], nearest_x3, scale=3, tile=64, overlap=20, batch=2)[0]
    assert np.array_equal(out, np.repeat(np.repeat(image, 3, 0), 3, 1))


def test_float_state_is_one_tile_row_not_the_image() -> None:
    grid = tiling.make_grid(1440, 3440, tile=256, overlap=32)
    canvas = tiling.Canvas(grid, scale=2)
    assert canvas._band.shape == (512, 6880, 3)
    assert canvas.out.dtype == np.uint8


def test_tiles_of_several_images_share_forwards(tiny_x2: engines.TorchUpscaler) -> None:
    calls: list[int] = []

    def counting(tiles: Sequence[tiling.Tile]) -> list[tiling.F32]:
        calls.append(len(tiles))
        return tiny_x2.tiles(tiles)

    small = [noise(40, 40, seed=i) for i in range(3)]
    outputs = tiling.run(small, counting, scale=2, tile=64, overlap=16, batch=4)
    assert calls == [3]
    for image, out in zip(small, outputs, strict=True):
        alone = tiling.run([image], tiny_x2.tiles, scale=2, tile=64, overlap=16, batch=4)[0]
        assert np.array_equal(out, alone)


# -- stages ----------------------------------------------------------------------------------


def test_upscaler_mount_folder_matches_the_operator(tmp_path: Path) -> None:
    from planet_operator.builders import names

    assert names.upscaler_dir(UPSCALER_URI).endswith("/" + st.sha12(UPSCALER_URI))
    folder = tmp_path / st.sha12(UPSCALER_URI)
    folder.mkdir()
    (folder / "README.md").write_text("not a checkpoint")
    (folder / "realesrgan-x2.pth").write_bytes(b"")
    assert st.checkpoint(tmp_path, UPSCALER_URI) == folder / "realesrgan-x2.pth"


def test_a_pvc_upscaler_is_found_at_its_path_in_the_mounted_claim(tmp_path: Path) -> None:
    # KServe mounts the whole claim of a pvc:// storageUri: other checkpoints may sit beside it.
    uri = "pvc://weights/upscalers/x4.pth"
    claim = tmp_path / st.sha12(uri)
    (claim / "upscalers").mkdir(parents=True)
    (claim / "upscalers" / "a-other.pth").write_bytes(b"")
    (claim / "upscalers" / "x4.pth").write_bytes(b"")
    assert st.checkpoint(tmp_path, uri) == claim / "upscalers" / "x4.pth"
    folder_uri = "pvc://weights/esrgan"
    (tmp_path / st.sha12(folder_uri) / "esrgan").mkdir(parents=True)
    (tmp_path / st.sha12(folder_uri) / "a.pth").write_bytes(b"")
    (tmp_path / st.sha12(folder_uri) / "esrgan" / "b.pth").write_bytes(b"")
    assert st.checkpoint(tmp_path, folder_uri) == tmp_path / st.sha12(folder_uri) / "esrgan" / "b.pth"


#: The batcher binds to the loop it first runs on, as in the server: one loop for the module.
LOOP = asyncio.new_event_loop()


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory, upscaler_dir: Path) -> Iterator[Any]:
    from planet_predictors.presets import tiny

    tmp = tmp_path_factory.mktemp("model")
    tiny.ensure(upscaler_dir)
    (tmp / "upscale.json").write_text(json.dumps(upscale_config()))
    args = build_parser().parse_args(
        [
            "--model_name=upscale",
            f"--pipeline-config={tmp / 'upscale.json'}",
            "--preset=tiny",
            f"--preset-dir={upscaler_dir}",
            "--max-batch-wait-ms=0",
        ]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = build_model(args, registry=CollectorRegistry())
        m.load()
    yield m
    # Stop the batcher so no task is left pending on the module's loop.
    LOOP.run_until_complete(m.batcher.close())


def predict(model: Any, body: dict[str, Any]) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        result: dict[str, Any] = await model.predict(await model.preprocess(body))
        return result

    return LOOP.run_until_complete(go())


def test_chain_sizes_keep_21_9(model: Any) -> None:
    answer = predict(
        model, {"instances": [{"image": png_b64(noise(168, 72)), "prompt": "teal planet", "seed": 5}]}
    )
    [prediction] = answer["predictions"]
    sizes = [(s["type"], s["width"], s["height"]) for s in prediction["stages"]]
    assert sizes == [
        ("upscale", 336, 144),
        ("resize", 280, 120),
        ("img2img", 280, 120),
        ("upscale", 560, 240),
        ("resize", 420, 180),
    ]
    for _type, width, height in sizes:
        assert abs(width / height - 21 / 9) < 0.01
    image = Image.open(io.BytesIO(base64.b64decode(prediction["image"])))
    assert image.size == (420, 180) == (prediction["width"], prediction["height"])
    assert image.text["planetgen:seed"] == "5"  # type: ignore[attr-defined]
    assert prediction["seed"] == 5 and prediction["revision"] == "r1"


def test_same_seed_same_image_and_prompt_matters(model: Any) -> None:
    image = png_b64(noise(168, 72, seed=1))
    first = predict(model, {"instances": [{"image": image, "prompt": "teal planet", "seed": 9}]})
    again = predict(model, {"instances": [{"image": image, "prompt": "teal planet", "seed": 9}]})
    other = predict(model, {"instances": [{"image": image, "prompt": "teal planet", "seed": 10}]})
    assert first["predictions"][0]["image"] == again["predictions"][0]["image"]
    assert first["predictions"][0]["image"] != other["predictions"][0]["image"]


# -- stopping abandoned work ---------------------------------------------------------------------


def test_a_stopped_upscale_ends_before_its_next_tile(tiny_x2: engines.TorchUpscaler) -> None:
    polls: list[int] = []

    def stop() -> bool:
        polls.append(1)
        return len(polls) > 2  # two tiles run, then nobody waits

    tiles = engines.Tiling(tile=32, overlap=8, batch=1)
    with pytest.raises(errors.Cancelled, match="before a tile"):
        engines.upscale(tiny_x2, [noise(168, 72)], st.Upscale(factor=2, uri="x"), tiles, stop=stop)
    assert len(polls) == 3


def test_a_stopped_img2img_pass_ends_at_its_next_denoising_step(model: Any) -> None:
    assert model.chain.detail is not None
    unet = model.chain.detail._pipe.unet
    calls: list[int] = []
    hook = unet.register_forward_hook(lambda *_: calls.append(1))
    try:
        job = engines.Job(noise(64, 64), prompt="teal planet", seed=1)
        with pytest.raises(errors.Cancelled, match="after denoising step 3"):
            model.chain.run([job], (st.Img2Img(strength=1.0, steps=50),), stop=lambda: len(calls) >= 3)
    finally:
        hook.remove()
    assert len(calls) == 3


def test_cost_counts_denoising_steps_as_diffusers_runs_them() -> None:
    assert st.Img2Img(strength=0.3, steps=30).denoising_steps == 9
    assert st.Img2Img(strength=0.5, steps=1).denoising_steps == 1  # never none
    chain = (st.Upscale(2, "x"), st.Resize(100, 50), st.Img2Img(strength=1.0, steps=200))
    assert st.cost(chain, 1000) == 1000 + 100 * 50 * 200


# -- ONNX Runtime ----------------------------------------------------------------------------


def test_onnxruntime_upscaler_matches_torch(tmp_path: Path, upscaler_dir: Path) -> None:
    descriptor = engines.load_checkpoint(tiny_upscaler.ensure(upscaler_dir, scale=2))
    engine_dir = tmp_path / "engines"
    engine_dir.mkdir()
    name = f"upscaler-{st.sha12(UPSCALER_URI)}"
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            descriptor.model.eval(),
            (torch.rand(1, 3, 24, 40),),
            str(engine_dir / f"{name}.onnx"),
            input_names=[engines.ONNX_INPUT],
            output_names=[engines.ONNX_OUTPUT],
            dynamic_axes={
                engines.ONNX_INPUT: {0: "batch", 2: "height", 3: "width"},
                engines.ONNX_OUTPUT: {0: "batch", 2: "height", 3: "width"},
            },
            opset_version=17,
            dynamo=False,
        )
    manifest = {"backend": "onnxruntime", "components": {name: {"path": f"{name}.onnx"}}}
    (engine_dir / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "upscale.json").write_text(json.dumps(upscale_config([{"type": "upscale", "factor": 2}])))
    args = build_parser().parse_args(
        [
            "--model_name=upscale",
            f"--pipeline-config={tmp_path / 'upscale.json'}",
            "--backend=onnxruntime",
            f"--engine-dir={engine_dir}",
            "--upscaler-root=/nonexistent",
            "--no-warmup",
        ]
    )
    ort_model = build_model(args, registry=CollectorRegistry())
    [upscaler] = ort_model.chain.upscalers.values()
    assert isinstance(upscaler, engines.OrtUpscaler) and upscaler.scale == 2
    image = noise(168, 72, seed=2)
    torch_out = tiling.run(
        [image],
        engines.TorchUpscaler(descriptor, device=torch.device("cpu")).tiles,
        scale=2,
        tile=64,
        overlap=16,
        batch=4,
    )[0]
    ort_out = tiling.run([image], upscaler.tiles, scale=2, tile=64, overlap=16, batch=4)[0]
    assert np.abs(torch_out.astype(int) - ort_out.astype(int)).max() <= 1


def test_onnxruntime_without_the_upscaler_component_is_a_clear_error(tmp_path: Path) -> None:
    from planet_predictors.serving.errors import BackendUnavailable

    (tmp_path / "manifest.json").write_text(json.dumps({"backend": "onnxruntime", "components": {}}))
    (tmp_path / "upscale.json").write_text(json.dumps(upscale_config([{"type": "upscale", "factor": 2}])))
    args = build_parser().parse_args(
        [
            "--model_name=upscale",
            f"--pipeline-config={tmp_path / 'upscale.json'}",
            "--backend=onnxruntime",
            f"--engine-dir={tmp_path}",
        ]
    )
    with pytest.raises(BackendUnavailable, match=f"upscaler-{st.sha12(UPSCALER_URI)}"):
        build_model(args, registry=CollectorRegistry())
