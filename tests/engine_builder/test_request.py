"""Flags: the operator's Job args give the operator's key; bad flags are one line and exit 2."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.conftest import EXAMPLES

from planet_build import cli, request, trt_version
from planet_build.errors import UsageError
from planet_contracts.api import spec as api_spec
from planet_contracts.api import validation
from planet_operator.builders import engine_job, plan, revision


def compiled_examples() -> list[Any]:
    found = []
    for path in EXAMPLES:
        for document in yaml.safe_load_all(path.read_text()):
            pipeline = validation.parse(document)
            if revision.needs_engine_build(pipeline.spec):
                found.append(pipeline)
    return found


def job_args(spec: Any) -> list[str]:
    built = plan.single("p", "ns", spec, revision.revision_of(spec), mode="standard", owner={})
    job = engine_job.engine_job(built, built.stable)
    return list(job["spec"]["template"]["spec"]["containers"][0]["args"])


def test_precision_table_matches_the_operator_spec() -> None:
    assert {k: v for k, v in api_spec.PRECISIONS.items() if k in request.BACKENDS} == request.PRECISIONS


@pytest.mark.parametrize("backend", ["onnxruntime", "tensorrt"])
def test_the_jobs_flags_give_the_operators_key(backend: str) -> None:
    pipelines = compiled_examples()
    assert pipelines, "no example builds engines"
    for pipeline in pipelines:
        spec = pipeline.spec.model_copy(
            update={
                "engine": pipeline.spec.engine.model_copy(update={"backend": backend, "precision": "fp16"})
            }
        )
        args = job_args(spec)
        parsed, _ = cli.parse(args)
        installed = f"{spec.engine.tensorrt_version}.0.35"  # the builder image has a patch release
        key, spelling = trt_version.resolve_key(parsed, installed if backend == "tensorrt" else None)
        assert key == revision.engine_key_of(spec)
        assert spelling == (spec.engine.tensorrt_version if backend == "tensorrt" else None)


def test_another_tensorrt_than_the_spec_names_is_a_mismatch_with_both_keys() -> None:
    spec = compiled_examples()[0].spec
    spec = spec.model_copy(update={"engine": spec.engine.model_copy(update={"backend": "tensorrt"})})
    parsed, _ = cli.parse(job_args(spec))
    with pytest.raises(UsageError, match="engine key mismatch") as caught:
        trt_version.resolve_key(parsed, "9.3.0.1")
    assert parsed.expect_key is not None and parsed.expect_key in str(caught.value)


def test_version_prefixes() -> None:
    assert trt_version.version_prefixes("10.13.0.35+cuda12") == ["10", "10.13", "10.13.0", "10.13.0.35"]


def test_lora_and_batch_parsing() -> None:
    assert request.parse_lora("hf://org/repo/style.safetensors:0.8") == request.Lora(
        uri="hf://org/repo/style.safetensors", scale=0.8
    )
    assert request.parse_lora("file:///m/a.safetensors") == request.Lora(uri="file:///m/a.safetensors")
    assert request.parse_batch_sizes("4,1,2") == (1, 2, 4)
    for bad in ("", "1,1", "0,2", "a", "65"):
        with pytest.raises(UsageError):
            request.parse_batch_sizes(bad)


BAD = [
    (["--backend", "onnxruntime"], "exactly one of --model"),
    (["--preset", "tiny", "--backend", "cuda"], "--backend must be one of"),
    (["--preset", "tiny", "--precision", "int8"], "not available for onnxruntime"),
    (["--preset", "tiny", "--width", "100"], "--width must be a multiple of 8"),
    (["--preset", "tiny", "--batch-sizes", "1,x"], "--batch-sizes must be"),
    (["--preset", "tiny", "--expect-key", "abc"], "--expect-key must be a sha256"),
    (["--preset", "tiny", "--width", "wide"], "invalid int value"),
    (["--preset", "tiny", "--bogus"], "unrecognized arguments"),
    (["--model", "s3://bucket/sdxl"], "local files and the local Hugging Face cache only"),
    (["--model", "/nonexistent/sdxl"], "not a diffusers folder"),
    (["--preset", "tiny", "--lora", "/nonexistent/style.safetensors:0.5"], "does not exist"),
    (["--preset", "tiny", "--expect-key", "0" * 64], "engine key mismatch"),
]


@pytest.mark.parametrize(("argv", "message"), BAD, ids=[m for _a, m in BAD])
def test_bad_input_is_one_line_and_exit_2(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main([*argv, "--cache-dir", str(tmp_path / "cache"), "--preset-dir", str(tmp_path / "p")])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_tensorrt_without_cuda_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code = cli.main(
        ["--preset", "tiny", "--backend", "tensorrt", "--precision", "fp16", "--cache-dir", str(tmp_path)]
    )
    assert code == 2
    assert "TensorRT needs CUDA; use --backend onnxruntime" in capsys.readouterr().err
    assert not any(tmp_path.iterdir()), "nothing is written before the check"


def test_fetched_uris_resolve_to_where_the_initializer_put_them(tmp_path: Path) -> None:
    from planet_build import sources

    model = tmp_path / "0"
    model.mkdir()
    (model / "model_index.json").write_text("{}")
    upscalers = tmp_path / "1"
    upscalers.mkdir()
    (upscalers / "x2.pth").write_bytes(b"weights")
    parsed, _ = cli.parse(
        [
            "--model", "hf://org/sdxl", "--upscaler", "s3://bucket/up/x2.pth", "--cache-dir", str(tmp_path),
            "--fetched", f"hf://org/sdxl={model}", "--fetched", f"s3://bucket/up/x2.pth={upscalers}",
        ]
    )  # fmt: skip
    # A folder URI is the folder; a file URI is its base name inside the folder (KServe's layout).
    assert sources.check_inputs(parsed) is None
    assert sources.upscaler_file(parsed, "s3://bucket/up/x2.pth") == upscalers / "x2.pth"
    with pytest.raises(UsageError, match="expected URI=PATH"):
        cli.parse(["--model", "hf://org/sdxl", "--fetched", "no-equals-sign"])
