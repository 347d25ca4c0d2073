"""Fixtures for the engine builder: one tiny preset, one tiny ONNX Runtime build per session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

#: Small enough for two CPU cores: the whole tiny build takes ~10 s.
TINY = ["--preset", "tiny", "--backend", "onnxruntime", "--precision", "fp32", "--width", "128",
        "--height", "64", "--batch-sizes", "1,2,4"]  # fmt: skip


def builder(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``python -m planet_build`` as the Job does."""
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    return subprocess.run(
        [sys.executable, "-m", "planet_build", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


@pytest.fixture(scope="session")
def preset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from planet_predictors.presets import tiny

    root = tmp_path_factory.mktemp("presets")
    tiny.ensure(root)
    return root


@pytest.fixture(scope="session")
def tiny_build(tmp_path_factory: pytest.TempPathFactory, preset_dir: Path) -> Path:
    """A finished tiny build (with one upscaler); returns its entry folder."""
    cache = tmp_path_factory.mktemp("cache")
    done = builder(
        *TINY, "--preset-dir", str(preset_dir), "--cache-dir", str(cache), "--upscaler", "hf://acme/x2"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return Path(done.stdout.strip().splitlines()[-1].split(" ", 1)[1])
