"""The entry point as users and the operator run it."""

from __future__ import annotations

import subprocess
import sys


def test_help_lists_kserve_and_planet_flags() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "planet_predictors.sdxl", "--preset", "tiny", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for flag in (
        "--model_name",
        "--http_port",
        "--model-dir",
        "--preset",
        "--backend",
        "--lora",
        "--max-queue",
        "--pipeline-config",
        "--engine-dir",
        "--scheduler",
        "--compile",
        "--device",
    ):
        assert flag in result.stdout
