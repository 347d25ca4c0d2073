"""The SDXL predictor serves images from engines the builder wrote (ONNX Runtime, tiny preset)."""

from __future__ import annotations

import base64
import io
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

pytestmark = pytest.mark.slow


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_sdxl_predictor_generates_with_built_engines(
    tiny_build: Path, preset_dir: Path, tmp_path: Path
) -> None:
    port = _port()
    log = tmp_path / "server.log"
    cmd = [sys.executable, "-m", "planet_predictors.sdxl", "--backend", "onnxruntime",
           "--engine-dir", str(tiny_build), "--preset", "tiny", "--preset-dir", str(preset_dir),
           "--model_name", "sdxl", "--http_port", str(port), "--grpc_port", str(_port()),
           "--enable_grpc", "false", "--event-loop", "asyncio"]  # fmt: skip
    process = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                               env={**os.environ, "OMP_NUM_THREADS": "2"})  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            try:
                if httpx.get(f"{url}/v1/models/sdxl", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        body = {
            "instances": [{"prompt": "deep blue planet", "width": 64, "height": 64, "steps": 2, "seed": 1}]
        }
        reply = httpx.post(f"{url}/v1/models/sdxl:predict", json=body, timeout=120)
        assert reply.status_code == 200, reply.text
        image = Image.open(io.BytesIO(base64.b64decode(reply.json()["predictions"][0]["image"])))
        assert image.size == (64, 64)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
