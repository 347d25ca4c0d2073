"""Shared by the predictor tests: a real ``python -m planet_predictors.sdxl --preset tiny`` server for
the HTTP tests, and the upscale pipeline config the upscaler's tests (in process and over HTTP) serve."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

#: Small enough for two CPU cores: 128x56 images take ~50 ms; a 512x224 x 8-step "blocker" ~1-2 s.
SPEC = {
    "model": {"base": {"uri": "/mnt/models"}},
    "generation": {"width": 512, "height": 224, "steps": 2, "maxSteps": 12, "guidanceScale": 5.0},
    "engine": {"backend": "torch", "precision": "fp32"},
    "serving": {
        "lanes": {
            "final": {"steps": 2, "maxConcurrency": 1, "maxQueue": 6, "priority": 10},
            "draft": {"steps": 1, "maxConcurrency": 1, "maxQueue": 5, "priority": 0},
        },
        "defaultLane": "final",
        "maxBatchSize": 4,
        "maxBatchWaitMs": 250,
        "maxBodyBytes": 4096,
        "timeoutSeconds": 60,
    },
}
CONFIG = {
    "apiVersion": "planetgen.io/v1alpha1",
    "kind": "PipelineConfig",
    "pipeline": "planets",
    "namespace": "test",
    "revision": "r1",
    "component": "generate",
    "modelHash": "ab" * 32,
    "spec": SPEC,
}
#: The upscale pipeline's checkpoint; ``--preset tiny`` stands in for it.
UPSCALER_URI = "s3://planetgen-models/upscalers/tiny-x2.pth"
#: 168x72 is 21:9; every stage keeps it: x2 ▶ 280x120 ▶ img2img ▶ x2 ▶ 420x180.
CHAIN = [
    {"type": "upscale", "factor": 2},
    {"type": "resize", "width": 280, "height": 120, "filter": "lanczos"},
    {"type": "img2img", "strength": 0.5, "steps": 2},
    {"type": "upscale", "factor": 2},
    {"type": "resize", "width": 420, "height": 180, "filter": "bicubic"},
]


def upscale_config(stages: list[dict[str, Any]] = CHAIN, **upscale: Any) -> dict[str, Any]:
    """An upscale PipelineConfig over the tiny preset; ``upscale`` overrides spec.upscale keys."""
    return {
        "apiVersion": "planetgen.io/v1alpha1",
        "kind": "PipelineConfig",
        "pipeline": "planets",
        "namespace": "test",
        "revision": "r1",
        "component": "upscale",
        "modelHash": "cd" * 32,
        "spec": {
            "model": {"base": {"uri": "/mnt/models"}},
            "generation": {"width": 512, "height": 224, "steps": 2, "maxSteps": 12, "guidanceScale": 5.0},
            "engine": {"backend": "torch", "precision": "fp32"},
            "upscale": {
                "model": {"uri": UPSCALER_URI},
                "tileSize": 64,
                "tileOverlap": 16,
                "stages": stages,
                **upscale,
            },
            "serving": {
                "lanes": {
                    "final": {"steps": 2, "maxConcurrency": 1, "maxQueue": 6, "priority": 10},
                    "draft": {"steps": 1, "maxConcurrency": 1, "maxQueue": 5, "priority": 0},
                },
                "maxBatchSize": 4,
                "maxBatchWaitMs": 20,
                "maxBodyBytes": 2_000_000,
                "timeoutSeconds": 60,
            },
        },
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def preset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny preset per session (built by the first server or test that needs it)."""
    from planet_predictors.presets import tiny

    root = tmp_path_factory.mktemp("presets")
    tiny.ensure(root)
    return root


class Server:
    def __init__(self, url: str, process: subprocess.Popen[bytes], log: Path) -> None:
        self.url = url
        self.process = process
        self.log = log
        self.predict_url = f"{url}/v1/models/sdxl:predict"
        self.infer_url = f"{url}/v2/models/sdxl/infer"

    def metrics(self) -> str:
        return httpx.get(f"{self.url}/metrics", timeout=10).text

    def metric(self, name: str, **labels: str) -> float:
        return sample(self.metrics(), name, **labels)


def sample(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``, in a /metrics page."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total


def start_server(tmp: Path, preset_dir: Path, *extra: str, config: dict[str, object] | None = None) -> Server:
    port = free_port()
    config_path = tmp / "pipeline.json"
    config_path.write_text(json.dumps(config or CONFIG))
    log = tmp / "server.log"
    cmd = [
        sys.executable,
        "-m",
        "planet_predictors.sdxl",
        "--preset",
        "tiny",
        "--preset-dir",
        str(preset_dir),
        "--pipeline-config",
        str(config_path),
        "--model_name",
        "sdxl",
        "--http_port",
        str(port),
        "--grpc_port",
        str(free_port()),
        "--enable_grpc",
        "false",
        "--event-loop",
        "asyncio",
        *extra,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    process = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/v1/models/sdxl", timeout=2).status_code == 200:
                return Server(url, process, log)
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"server did not get ready:\n{log.read_text()[-3000:]}")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, preset_dir: Path) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("server"), preset_dir)
    yield srv
    stop(srv.process)


class UpscaleServer:
    def __init__(self, url: str, process: subprocess.Popen[bytes], log: Path) -> None:
        self.url = url
        self.process = process
        self.log = log
        self.predict_url = f"{url}/v1/models/upscale:predict"
        self.infer_url = f"{url}/v2/models/upscale/infer"

    def post(self, body: object) -> httpx.Response:
        return httpx.post(self.predict_url, json=body, timeout=60)

    def metric(self, name: str, **labels: str) -> float:
        return sample(self.metrics(), name, **labels)

    def metrics(self) -> str:
        return httpx.get(f"{self.url}/metrics", timeout=10).text


def start_upscaler(tmp: Path, preset_dir: Path, config: dict[str, Any] | None = None) -> UpscaleServer:
    (tmp / "upscale.json").write_text(json.dumps(config or upscale_config()))
    port = free_port()
    log = tmp / "server.log"
    cmd = [
        sys.executable,
        "-m",
        "planet_predictors.upscaler",
        "--model_name=upscale",
        f"--http_port={port}",
        f"--grpc_port={free_port()}",
        "--enable_grpc=false",
        "--event-loop=asyncio",
        f"--pipeline-config={tmp / 'upscale.json'}",
        "--backend=torch",
        "--preset=tiny",
        f"--preset-dir={preset_dir}",
    ]
    process = subprocess.Popen(
        cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "2"}
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"server did not start:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/v2/models/upscale/ready", timeout=2).status_code == 200:
                return UpscaleServer(url, process, log)
        except httpx.HTTPError:
            pass
        time.sleep(0.3)


@pytest.fixture(scope="session")
def upscaler_server(tmp_path_factory: pytest.TempPathFactory, preset_dir: Path) -> Iterator[UpscaleServer]:
    """One upscaler server per session (its HTTP tests and the fuzz suite share it)."""
    srv = start_upscaler(tmp_path_factory.mktemp("upscale-server"), preset_dir)
    yield srv
    stop(srv.process)
