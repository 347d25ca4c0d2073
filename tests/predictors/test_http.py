"""End-to-end through a real KServe ModelServer serving the tiny SDXL preset."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import threading
import time
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from planet_predictors import imaging

SMALL = {"width": 128, "height": 56}  # 21:9-ish, multiples of 8
BLOCKER = {"prompt": "blocker", "width": 512, "height": 224, "steps": 12, "seed": 0}


def predict(server: Any, *instances: dict[str, Any], timeout: float = 60) -> httpx.Response:
    return httpx.post(server.predict_url, json={"instances": list(instances)}, timeout=timeout)


def image_of(prediction: dict[str, Any]) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(prediction["image"])))


def pixels(prediction: dict[str, Any]) -> np.ndarray:
    return np.asarray(image_of(prediction).convert("RGB"), dtype=np.int16)


def wait_until_running(server: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while server.metric("planet_inflight_requests") < 1:
        assert time.monotonic() < deadline, "blocker never started"
        time.sleep(0.05)


def wait_idle(server: Any, timeout: float = 30) -> None:
    """No request of an earlier test still running: its in-flight count would pass for the blocker's."""
    deadline = time.monotonic() + timeout
    while server.metric("planet_inflight_requests") > 0:
        assert time.monotonic() < deadline, "an earlier request never finished"
        time.sleep(0.05)


def background(
    server: Any, instance: dict[str, Any], *, idle: bool = True
) -> tuple[threading.Thread, list[httpx.Response]]:
    """``instance`` posted from a thread; first, unless ``idle`` is False, wait for an idle server."""
    if idle:
        wait_idle(server)
    out: list[httpx.Response] = []
    thread = threading.Thread(target=lambda: out.append(predict(server, instance)))
    thread.start()
    return thread, out


def test_v1_round_trip_has_requested_size_and_contract_fields(server: Any) -> None:
    prompt = {"color": "crimson", "atmosphere": "glowing auroras", "moons": "two moons", "sky": "nebula sky"}
    response = predict(server, {"prompt": prompt, "seed": 7, **SMALL})
    assert response.status_code == 200, response.text
    [prediction] = response.json()["predictions"]
    assert image_of(prediction).size == (128, 56)
    assert prediction["format"] == "png"
    assert (prediction["width"], prediction["height"], prediction["seed"]) == (128, 56, 7)
    assert prediction["prompt"] == "crimson planet with glowing auroras, two moons, nebula sky"
    assert prediction["lane"] == "final"
    assert prediction["revision"] == "r1"
    assert set(prediction["timings"]) == {
        "queue_ms",
        "encode_prompt_ms",
        "denoise_ms",
        "decode_ms",
        "encode_image_ms",
        "total_ms",
    }
    assert prediction["timings"]["total_ms"] >= prediction["timings"]["denoise_ms"] > 0


def test_default_size_and_random_seed_is_returned(server: Any) -> None:
    response = predict(server, {"prompt": "a quiet blue planet"})
    assert response.status_code == 200, response.text
    [prediction] = response.json()["predictions"]
    assert image_of(prediction).size == (512, 224)
    assert isinstance(prediction["seed"], int)


def test_png_provenance_chunks(server: Any) -> None:
    [prediction] = predict(server, {"prompt": {"color": "teal"}, "seed": 11, "steps": 3, **SMALL}).json()[
        "predictions"
    ]
    meta = imaging.read_provenance(base64.b64decode(prediction["image"]))
    assert meta["planetgen:pipeline"] == "planets"
    assert meta["planetgen:revision"] == "r1"
    assert meta["planetgen:model_hash"] == "ab" * 32
    assert meta["planetgen:seed"] == "11"
    assert meta["planetgen:steps"] == "3"
    assert meta["planetgen:prompt_sha256"] == hashlib.sha256(prediction["prompt"].encode()).hexdigest()


@pytest.mark.parametrize("fmt", ["webp", "jpeg"])
def test_other_formats(server: Any, fmt: str) -> None:
    [prediction] = predict(server, {"prompt": "x", "format": fmt, "seed": 1, **SMALL}).json()["predictions"]
    assert image_of(prediction).format == fmt.upper()
    assert imaging.read_provenance(base64.b64decode(prediction["image"]))["planetgen:seed"] == "1"


def test_same_seed_same_image_whatever_the_batch(server: Any) -> None:
    alone = predict(server, {"prompt": "ringed giant", "seed": 123, **SMALL}).json()["predictions"][0]
    again = predict(server, {"prompt": "ringed giant", "seed": 123, **SMALL}).json()["predictions"][0]
    batched = predict(
        server,
        {"prompt": "other", "seed": 5, **SMALL},
        {"prompt": "ringed giant", "seed": 123, **SMALL},
    ).json()["predictions"]
    assert again["image"] == alone["image"]
    assert np.abs(pixels(batched[1]) - pixels(alone)).max() <= 1
    other_seed = predict(server, {"prompt": "ringed giant", "seed": 124, **SMALL}).json()["predictions"][0]
    assert np.abs(pixels(other_seed) - pixels(alone)).mean() > 1


def test_v2_round_trip(server: Any) -> None:
    body = {
        "id": "req-1",
        "inputs": [
            {
                "name": "prompt",
                "shape": [2],
                "datatype": "BYTES",
                "data": [json.dumps({"color": "golden"}), "free text planet"],
            },
            {"name": "seed", "shape": [2], "datatype": "INT64", "data": [3, 4]},
            {"name": "steps", "shape": [2], "datatype": "INT32", "data": [2, 2]},
            {"name": "guidance", "shape": [2], "datatype": "FP32", "data": [4.0, 4.0]},
            {"name": "format", "shape": [2], "datatype": "BYTES", "data": ["png", "webp"]},
            {"name": "width", "shape": [2], "datatype": "INT32", "data": [128, 128]},
            {"name": "height", "shape": [2], "datatype": "INT32", "data": [56, 56]},
        ],
    }
    response = httpx.post(server.infer_url, json=body, timeout=60)
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    assert response.json()["id"] == "req-1"
    assert outputs["seed"]["data"] == [3, 4]
    images = [Image.open(io.BytesIO(base64.b64decode(d))) for d in outputs["image"]["data"]]
    assert [i.format for i in images] == ["PNG", "WEBP"]
    meta = [json.loads(m) for m in outputs["metadata"]["data"]]
    assert meta[0]["prompt"].startswith("golden planet with frosted cloudy zones")
    assert meta[1]["prompt"] == "free text planet"
    assert (meta[0]["width"], meta[0]["height"]) == (128, 56)
    assert "denoise_ms" in meta[0]["timings"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            {"instances": [{"prompt": {"color": "plaid"}}]},
            'instances[0].prompt.color: unsupported value "plaid"',
        ),
        ({"instances": [{"prompt": {"colour": "red"}}]}, "instances[0].prompt.colour: unknown attribute"),
        (
            {"instances": [{"prompt": "x", "steps": 99}]},
            "instances[0].steps: 99 is out of range; allowed: 1 to 12",
        ),
        ({"instances": [{"prompt": "x", "width": 100}]}, "instances[0].width: 100 is not a multiple of 8"),
        (
            {"instances": [{"prompt": "x", "width": 4096, "height": 4096}]},
            "larger than this pipeline's 512x224",
        ),
        ({"instances": [{"prompt": "x", "seed": "one"}]}, "instances[0].seed: must be an integer"),
        ({"instances": [{"prompt": "x", "lane": "vip"}]}, 'instances[0].lane: unsupported value "vip"'),
        ({"instances": [{"prompt": "x" * 600}]}, "instances[0].prompt: 600 characters; the limit is 500"),
        ({"instances": []}, "instances: empty"),
        ({"instances": [{"prompt": "x"}] * 17}, "instances: 17 items; the limit is 16"),
        ({"inputs": [{"name": "prompt"}]}, "instances: required"),
    ],
)
def test_bad_requests_name_the_field(server: Any, body: dict[str, Any], field: str) -> None:
    response = httpx.post(server.predict_url, json=body, timeout=30)
    assert response.status_code == 400
    assert field in response.json()["error"]


def test_bad_v2_and_oversized_bodies_are_400(server: Any) -> None:
    assert httpx.post(server.infer_url, json={"inputs": [{"name": "prompt"}]}, timeout=30).status_code == 400
    wrong_type = {"inputs": [{"name": "prompt", "shape": [1], "datatype": "INT64", "data": [1]}]}
    response = httpx.post(server.infer_url, json=wrong_type, timeout=30)
    assert response.status_code == 400
    assert "inputs.prompt: datatype must be BYTES" in response.json()["error"]
    big = httpx.post(server.predict_url, content=b'{"instances": [' + b" " * 5000 + b"]}", timeout=30)
    assert big.status_code == 400
    assert "larger than the limit of 4096 bytes" in big.json()["error"]


def test_batching_shows_in_metrics(server: Any) -> None:
    def big_batches() -> float:
        return server.metric("planet_batch_size_count") - server.metric("planet_batch_size_bucket", le="1.0")

    before = big_batches()
    wait_idle(server)
    threads = [background(server, {"prompt": f"p{i}", "seed": i, **SMALL}, idle=False) for i in range(4)]
    for thread, _ in threads:
        thread.join()
    assert all(out[0].status_code == 200 for _, out in threads)
    assert big_batches() > before


def test_metrics_answer_while_generating(server: Any) -> None:
    thread, out = background(server, BLOCKER)
    wait_until_running(server)
    started = time.monotonic()
    assert httpx.get(f"{server.url}/metrics", timeout=5).status_code == 200
    assert httpx.get(f"{server.url}/v1/models/sdxl", timeout=5).status_code == 200
    assert time.monotonic() - started < 1.0
    thread.join()
    assert out[0].status_code == 200


async def test_overload_gets_429_with_retry_after_and_admitted_finish(server: Any) -> None:
    thread, _ = background(server, BLOCKER)
    wait_until_running(server)
    async with httpx.AsyncClient(timeout=120) as client:
        responses = await asyncio.gather(
            *(
                client.post(server.predict_url, json={"instances": [{"prompt": f"o{i}", **SMALL}]})
                for i in range(10)
            )
        )
    thread.join()
    codes = sorted(r.status_code for r in responses)
    assert codes.count(200) == 6, codes  # the final lane holds 6
    assert codes.count(429) == 4, codes
    for r in responses:
        if r.status_code == 429:
            assert int(r.headers["Retry-After"]) >= 1
            assert "queue is full" in r.json()["error"]
            # KServe's graph router drops headers: the body carries the same value.
            assert r.json()["retryAfter"] == int(r.headers["Retry-After"])


async def test_final_overtakes_queued_drafts_and_drafts_are_shed(server: Any) -> None:
    thread, _ = background(server, BLOCKER)
    wait_until_running(server)
    finished: dict[str, float] = {}

    async def send(client: httpx.AsyncClient, name: str, instance: dict[str, Any]) -> httpx.Response:
        response = await client.post(server.predict_url, json={"instances": [instance]})
        finished[name] = time.monotonic()
        return response

    async with httpx.AsyncClient(timeout=120) as client:
        # Different sizes: each draft is its own batch, so order is observable.
        drafts = [
            asyncio.create_task(
                send(
                    client, f"draft{i}", {"prompt": "d", "lane": "draft", "width": 128 + 8 * i, "height": 56}
                )
            )
            for i in range(3)
        ]
        while server.metric("planet_queue_depth", lane="draft") < 3:  # noqa: ASYNC110 - polls another process
            await asyncio.sleep(0.02)
        shed = await client.post(
            server.predict_url, json={"instances": [{"prompt": "d", "lane": "draft", **SMALL}]}
        )
        final = await send(client, "final", {"prompt": "f", "lane": "final", **SMALL})
        results = await asyncio.gather(*drafts)
    thread.join()
    assert shed.status_code == 429
    assert "shed" in shed.json()["error"]
    assert final.status_code == 200
    assert all(r.status_code == 200 for r in results)
    assert all(r.json()["predictions"][0]["lane"] == "draft" for r in results)
    assert all(finished["final"] < finished[f"draft{i}"] for i in range(3)), finished


def test_client_gone_is_dropped_before_the_model(server: Any) -> None:
    gone_before = server.metric("planet_errors_total", reason="client_gone")
    images_before = server.metric("planet_images_total")
    thread, out = background(server, BLOCKER)
    wait_until_running(server)
    with pytest.raises(httpx.ReadTimeout):
        # Well under the blocker's time (about 0.45 s on two idle cores): the request is still queued.
        predict(server, {"prompt": "impatient", **SMALL}, timeout=0.15)
    thread.join()
    assert out[0].status_code == 200
    deadline = time.monotonic() + 10
    while server.metric("planet_errors_total", reason="client_gone") == gone_before:
        assert time.monotonic() < deadline, "the abandoned request was not dropped"
        time.sleep(0.1)
    assert server.metric("planet_errors_total", reason="client_gone") == gone_before + 1
    assert server.metric("planet_images_total") == images_before + 1  # only the blocker's image
