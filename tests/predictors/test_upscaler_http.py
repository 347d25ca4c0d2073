"""A real ``python -m planet_predictors.upscaler --preset tiny`` server over HTTP on 127.0.0.1."""

from __future__ import annotations

import base64
import hashlib
import io
import json
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from tests.predictors.conftest import UpscaleServer


def png_b64(width: int, height: int, *, seed: int = 0, text: dict[str, str] | None = None) -> str:
    from PIL import PngImagePlugin

    pixels = (np.random.default_rng(seed).random((height, width, 3)) * 255).astype(np.uint8)
    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", pnginfo=info)
    return base64.b64encode(buffer.getvalue()).decode()


Server = UpscaleServer


@pytest.fixture
def server(upscaler_server: UpscaleServer) -> UpscaleServer:
    return upscaler_server


def test_sdxl_response_is_accepted_as_the_request(server: Server) -> None:
    # Exactly what the InferenceGraph passes on: the generate step's V1 answer.
    forged = {
        "planetgen:steps": "30",
        "planetgen:seed": "7",
        "planetgen:model_hash": "evil",
        "planetgen:x": "1",
    }
    image_b64 = png_b64(168, 72, text=forged)
    sdxl_answer = {
        "predictions": [
            {
                "image": image_b64,
                "format": "png",
                "width": 168,
                "height": 72,
                "seed": 7,
                "prompt": "deep blue planet with frosted cloudy zones, no moons, distant stars dark sky",
                "lane": "final",
                "revision": "gen-r1",
                "timings": {"queue_ms": 1.0, "total_ms": 2.0},
                "quality": {"score": 0.9, "failed": [], "checks": {}},
            }
        ]
    }
    reply = server.post(sdxl_answer)
    assert reply.status_code == 200, reply.text
    [prediction] = reply.json()["predictions"]
    assert (prediction["width"], prediction["height"]) == (420, 180)
    assert prediction["seed"] == 7 and prediction["lane"] == "final" and prediction["revision"] == "r1"
    assert [s["type"] for s in prediction["stages"]] == ["upscale", "resize", "img2img", "upscale", "resize"]
    assert set(prediction["timings"]) == {"queue_ms", "stages_ms", "encode_image_ms", "total_ms"}
    image = Image.open(io.BytesIO(base64.b64decode(prediction["image"])))
    assert image.size == (420, 180)
    text: dict[str, str] = image.text  # type: ignore[attr-defined]
    # Anyone can write text chunks into the input: none is carried over, the keys are ours alone.
    assert set(text) == {
        "planetgen:pipeline",
        "planetgen:revision",
        "planetgen:model_hash",
        "planetgen:seed",
        "planetgen:prompt_sha256",
        "planetgen:upscale",
        "planetgen:input_sha256",
        "planetgen:quality",  # this server's verifier, not the input's
    }
    assert text["planetgen:model_hash"] == "cd" * 32
    assert text["planetgen:revision"] == "r1" and "img2img" in text["planetgen:upscale"]
    assert text["planetgen:input_sha256"] == hashlib.sha256(base64.b64decode(image_b64)).hexdigest()


def test_two_requests_in_one_call_and_a_stage_override(server: Server) -> None:
    body = {
        "instances": [
            {"image": png_b64(168, 72, seed=1), "prompt": "crimson planet", "seed": 1},
            {
                "image": png_b64(112, 48, seed=2),
                "seed": 2,
                "format": "webp",
                "stages": [{"type": "upscale", "factor": 2}, {"type": "resize", "width": 168, "height": 72}],
            },
        ]
    }
    reply = server.post(body)
    assert reply.status_code == 200, reply.text
    first, second = reply.json()["predictions"]
    assert (first["width"], first["height"]) == (420, 180)
    assert [(s["width"], s["height"]) for s in second["stages"]] == [(224, 96), (168, 72)]
    assert second["format"] == "webp"
    assert Image.open(io.BytesIO(base64.b64decode(second["image"]))).format == "WEBP"


def test_v2_infer(server: Server) -> None:
    body = {
        "inputs": [
            {"name": "image", "shape": [1], "datatype": "BYTES", "data": [png_b64(168, 72, seed=4)]},
            {"name": "prompt", "shape": [1], "datatype": "BYTES", "data": ["violet planet"]},
            {"name": "seed", "shape": [1], "datatype": "INT64", "data": [11]},
        ]
    }
    reply = httpx.post(server.infer_url, json=body, timeout=60)
    assert reply.status_code == 200, reply.text
    outputs = {o["name"]: o for o in reply.json()["outputs"]}
    assert outputs["seed"]["data"] == [11]
    meta = json.loads(outputs["metadata"]["data"][0])
    assert (meta["width"], meta["height"]) == (420, 180)
    assert Image.open(io.BytesIO(base64.b64decode(outputs["image"]["data"][0]))).size == (420, 180)


def flat_png(width: int, height: int) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 20, 30)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"instances": []}, "instances", "empty"),
        ({"instances": [{"image": "%%% not base64 %%%"}]}, "instances[0].image", "base64"),
        (
            {"instances": [{"image": base64.b64encode(b"hello world").decode()}]},
            "instances[0].image",
            "not a PNG",
        ),
        # 1000x1000 compresses to a few KB but is over 4 x 512x224 pixels.
        ({"instances": [{"image": flat_png(1000, 1000)}]}, "instances[0].image", "the limit is 458752"),
        (
            {"instances": [{"image": flat_png(64, 32), "stages": [{"type": "sharpen"}]}]},
            "instances[0].stages[0].type",
            "upscale",
        ),
        (
            {"instances": [{"image": flat_png(64, 32), "stages": [{"type": "upscale", "factor": 3}]}]},
            "instances[0].stages[0]",
            "no upscaler loaded for x3",
        ),
        (
            {
                "instances": [
                    {
                        "image": flat_png(64, 32),
                        "stages": [{"type": "upscale", "factor": 2, "model": {"uri": "/x"}}],
                    }
                ]
            },
            "instances[0].stages[0].model",
            "cannot load",
        ),
        # Per-request stages follow the spec's own rules (the CRD's CEL rules, from the same models).
        (
            {"instances": [{"image": flat_png(64, 32), "stages": [{"type": "resize"}]}]},
            "instances[0].stages[0].width",
            "a resize stage needs width and height",
        ),
        (
            {"instances": [{"image": flat_png(64, 32), "stages": [{"type": "img2img"}]}]},
            "instances[0].stages[0].strength",
            "an img2img stage needs strength",
        ),
        (
            {
                "instances": [
                    {"image": flat_png(64, 32), "stages": [{"type": "img2img", "strength": 0.5, "factor": 2}]}
                ]
            },
            "instances[0].stages[0].type",
            "factor and model apply to upscale stages only",
        ),
        # The 657-byte request: 2048x2048 x 200 img2img steps, ~19 minutes of device time.
        (
            {
                "instances": [
                    {
                        "image": flat_png(64, 32),
                        "stages": [
                            {"type": "resize", "width": 2048, "height": 2048},
                            {"type": "img2img", "strength": 1.0, "steps": 200},
                        ],
                    }
                ]
            },
            "instances[0].stages",
            "costs 838.9M pixel-steps; lane 'final' allows",
        ),
        ({"instances": [{"image": flat_png(64, 32), "lane": "vip"}]}, "instances[0].lane", "allowed"),
        ({"instances": [{"image": flat_png(64, 32), "colour": "red"}]}, "instances[0].colour", "unknown"),
        ({"predictions": [{"prompt": "x"}]}, "predictions[0].image", "required"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(server: Server, body: Any, field: str, words: str) -> None:
    reply = server.post(body)
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error.startswith(field + ":"), error
    assert words in error


def test_body_over_the_limit_is_a_400(server: Server) -> None:
    reply = server.post({"instances": [{"image": "A" * 2_100_000}]})
    assert reply.status_code == 400
    assert "larger than the limit" in reply.json()["error"]


def test_metrics_are_labelled_upscale(server: Server) -> None:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    assert 'planet_queue_depth{component="upscale",lane="final",pipeline="planets",revision="r1"}' in text
    assert (
        'planet_errors_total{component="upscale",pipeline="planets",reason="bad_request",revision="r1"}'
        in text
    )


def raw_png(width: int, height: int, *, seed: int = 0) -> bytes:
    return base64.b64decode(png_b64(width, height, seed=seed))


async def test_v2_binary_data_from_kserves_own_client(server: Server) -> None:
    """The KServe SDK's binary extension: the PNG travels as raw bytes, the seed packed INT64."""
    from kserve import InferenceRESTClient, RESTConfig
    from kserve.protocol.infer_type import InferInput, InferRequest

    image = InferInput("image", [1], "BYTES")
    image.set_data_from_numpy(np.array([raw_png(168, 72, seed=4)], dtype=np.object_), binary_data=True)
    seed = InferInput("seed", [1], "INT64")
    seed.set_data_from_numpy(np.array([11], dtype=np.int64), binary_data=True)
    prompt = InferInput("prompt", [1], "BYTES")
    prompt.set_data_from_numpy(np.array([b"violet planet"], dtype=np.object_), binary_data=True)
    request = InferRequest(model_name="upscale", infer_inputs=[image, seed, prompt], request_id="bin-1")
    client = InferenceRESTClient(RESTConfig(protocol="v2", retries=0, timeout=60))
    response = await client.infer(server.url, request, model_name="upscale")
    outputs = {o.name: o for o in response.outputs}
    assert response.id == "bin-1"
    assert list(outputs["seed"].data) == [11]
    meta = json.loads(outputs["metadata"].data[0])
    assert (meta["width"], meta["height"]) == (420, 180) and meta["prompt"] == "violet planet"
    assert Image.open(io.BytesIO(base64.b64decode(outputs["image"].data[0]))).size == (420, 180)
