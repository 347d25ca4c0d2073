"""The entry point as users and the operator run it."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from tests.predictors.conftest import upscale_config


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


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--max-batch-size", "-1"], "--max-batch-size"),  # used to spin the scheduler at 100 % CPU
        (["--max-batch-size", "0"], "--max-batch-size"),
        (["--max-batch-size", "65"], "--max-batch-size"),
        (["--max-batch-size", "four"], "--max-batch-size"),
        (["--max-batch-wait-ms", "-5"], "--max-batch-wait-ms"),
        (["--max-queue", "-1"], "--max-queue"),
        (["--shed-queue-depth", "0"], "--shed-queue-depth"),
        (["--device-concurrency", "0"], "--device-concurrency"),  # used to be a traceback, exit 1
        (["--max-instances", "0"], "--max-instances"),
        (["--grace-period", "-1"], "--grace-period"),
        (["--device", "gpu"], "--device"),
    ],
)
@pytest.mark.parametrize("predictor", ["sdxl", "upscaler"])
def test_a_bad_serving_flag_exits_2_naming_it(
    predictor: str, argv: list[str], flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    module = importlib.import_module(f"planet_predictors.{predictor}.__main__")
    with pytest.raises(SystemExit) as info:
        module.main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--tile-size", "32"], "--tile-size"),
        (["--tile-size", "-1"], "--tile-size"),
        (["--tile-overlap", "300"], "--tile-overlap"),
        (["--tile-batch", "0"], "--tile-batch"),
        (["--max-input-pixels", "0"], "--max-input-pixels"),
    ],
)
def test_a_bad_upscaler_flag_exits_2_naming_it(
    argv: list[str], flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from planet_predictors.upscaler.factory import main

    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert f"argument {flag}" in capsys.readouterr().err


def test_tile_flags_that_break_the_spec_rule_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from planet_predictors.upscaler.factory import main

    config = tmp_path / "upscale.json"
    config.write_text(json.dumps(upscale_config()))
    argv = [f"--pipeline-config={config}", "--preset=tiny", f"--preset-dir={tmp_path}", "--tile-size=64"]
    assert main([*argv, "--tile-overlap=32"]) == 2
    assert "argument --tile-overlap/--tile-size: overlap 32 must be less than half of tile size 64" in (
        capsys.readouterr().err
    )
