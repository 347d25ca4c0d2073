"""The engine cache key: what changes an engine's bytes changes the key, and nothing else does."""

from __future__ import annotations

from typing import Any

import pytest

from planet_contracts import engines

BASE: dict[str, Any] = {
    "base_uri": "hf://stabilityai/stable-diffusion-xl-base-1.0",
    "base_revision": "abc123",
    "loras": [{"name": "planet", "uri": "s3://loras/planet.safetensors", "scale": 0.8}],
    "width": 1536,
    "height": 640,
    "backend": "tensorrt",
    "precision": "fp16",
    "batch_sizes": [1, 2, 4],
    "gpu_product": "NVIDIA-H100-80GB-HBM3",
    "tensorrt_version": "10.13",
}


def key(**change: Any) -> str:
    return engines.engine_key(**{**BASE, **change})


def test_the_key_is_a_stable_sha256() -> None:
    assert key() == key()
    assert len(key()) == 64 and int(key(), 16) >= 0


@pytest.mark.parametrize(
    "change",
    [
        {"base_uri": "hf://org/other"},
        {"base_revision": "def456"},
        {"loras": [{"name": "planet", "uri": "s3://loras/planet.safetensors", "scale": 0.5}]},
        {"loras": []},
        {"width": 1024},
        {"height": 1024},
        {"backend": "onnxruntime"},
        {"precision": "int8"},
        {"batch_sizes": [1, 2]},
        {"gpu_product": "NVIDIA-L4"},
        {"tensorrt_version": "10.14"},
        {"upscaler_uris": ["hf://org/realesrgan-x2"]},
    ],
    ids=lambda c: next(iter(c)),
)
def test_what_shapes_the_bytes_changes_the_key(change: dict[str, Any]) -> None:
    assert key(**change) != key()


def test_lora_names_batch_order_and_unfused_loras_leave_the_key_alone() -> None:
    renamed = [{"name": "other-name", "uri": "s3://loras/planet.safetensors", "scale": 0.8}]
    unfused = [*BASE["loras"], {"name": "live", "uri": "s3://loras/live.safetensors", "fuse": False}]
    assert key(loras=renamed) == key()
    assert key(loras=unfused) == key()
    assert key(batch_sizes=[4, 2, 1, 2]) == key()


def test_portable_backends_ignore_the_gpu_and_tensorrt_version() -> None:
    ort = {"backend": "onnxruntime", "precision": "fp16"}
    assert key(**ort, gpu_product="NVIDIA-L4", tensorrt_version=None) == key(**ort)


def test_the_lora_order_is_part_of_the_key() -> None:
    two = [{"uri": "s3://a"}, {"uri": "s3://b"}]
    assert key(loras=two) != key(loras=list(reversed(two)))
