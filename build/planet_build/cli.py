"""``python -m planet_build``: flags ▶ :class:`~planet_build.request.BuildRequest` ▶ build; 1-line errors."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import NoReturn

from planet_build import request as req
from planet_build.errors import EXIT_FAILED, BuildError, UsageError
from planet_build.progress import Reporter


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting, so every error looks the same."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    """The builder's flags: the operator's Job passes the first group, the rest have defaults."""
    parser = _Parser(
        prog="python -m planet_build",
        description="Export SDXL (+ upscalers) to ONNX, check parity, build ONNX Runtime or TensorRT engines"
        " into a content-addressed cache.",
    )
    job = parser.add_argument_group("what to build (the operator's Job passes these)")
    job.add_argument(
        "--model", help="base model: local diffusers folder, file://, or hf://ORG/NAME (local cache)"
    )
    job.add_argument("--revision", help="model revision (hf:// models)")
    job.add_argument(
        "--fetched",
        action="append",
        default=[],
        metavar="URI=PATH",
        help="where a storage initializer put URI (model, LoRA or upscaler); the key still uses URI",
    )
    job.add_argument(
        "--preset", choices=["tiny"], help="build the tiny random-weight SDXL instead of --model"
    )
    job.add_argument("--preset-dir", type=Path, help="where presets are written (default: the predictors')")
    job.add_argument(
        "--lora",
        action="append",
        default=[],
        metavar="URI[:SCALE]",
        help="LoRA fused before export; repeatable",
    )
    job.add_argument("--backend", default="onnxruntime", help="onnxruntime | tensorrt")
    job.add_argument("--precision", default="fp32", help="fp32 | fp16 (| int8 | fp8 for tensorrt)")
    job.add_argument("--width", type=int, default=1024, help="image width in pixels")
    job.add_argument("--height", type=int, default=1024, help="image height in pixels")
    job.add_argument("--batch-sizes", default="1", help="served batch sizes, e.g. 1,2,4")
    job.add_argument("--cache-dir", type=Path, default=Path("/mnt/engines"), help="engine cache root")
    job.add_argument("--expect-key", help="the key the operator computed; a different one is an error")
    job.add_argument("--gpu-product", help="nvidia.com/gpu.product the engines are for (tensorrt)")
    job.add_argument(
        "--upscaler", action="append", default=[], metavar="URI", help="upscaler checkpoint; repeatable"
    )
    tuning = parser.add_argument_group("tuning")
    tuning.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    tuning.add_argument(
        "--ort-optimization",
        default="basic",
        help="offline ONNX Runtime graph optimization: none | basic | extended",
    )
    tuning.add_argument("--workspace-gib", type=float, default=8.0, help="TensorRT builder workspace (GiB)")
    tuning.add_argument("--quantized-onnx", type=Path, help="Q/DQ graphs <DIR>/<component>.onnx for int8/fp8")
    tuning.add_argument(
        "--keep-onnx", action="store_true", help="keep the exported fp32 graphs in <entry>/onnx"
    )
    tuning.add_argument(
        "--lock-timeout", type=float, default=6 * 3600.0, help="seconds to wait for another builder"
    )
    tuning.add_argument("--quiet", action="store_true", help="only errors and the final line")
    return parser


def parse(argv: list[str] | None = None) -> tuple[req.BuildRequest, argparse.Namespace]:
    """Flags ▶ a validated request (raises :class:`UsageError`)."""
    args = build_parser().parse_args(argv)
    request = req.BuildRequest(
        model=args.model,
        revision=args.revision,
        preset=args.preset,
        preset_dir=args.preset_dir,
        loras=tuple(req.parse_lora(value) for value in args.lora),
        backend=args.backend,
        precision=args.precision,
        width=args.width,
        height=args.height,
        batch_sizes=req.parse_batch_sizes(args.batch_sizes),
        cache_dir=args.cache_dir,
        expect_key=args.expect_key,
        gpu_product=args.gpu_product,
        upscalers=tuple(args.upscaler),
        opset=args.opset,
        ort_optimization=args.ort_optimization,
        workspace_gib=args.workspace_gib,
        keep_onnx=args.keep_onnx,
        lock_timeout=args.lock_timeout,
        quantized_onnx=args.quantized_onnx,
        fetched=tuple(req.parse_fetched(value) for value in args.fetched),
    )
    req.validate(request)
    return request, args


def main(argv: list[str] | None = None) -> int:
    """Run one build; 0 on success or cache hit, 2 for bad input, 1 for a failed build."""
    if argv is None:
        argv = sys.argv[1:]
    if "-h" in argv or "--help" in argv:
        build_parser().print_help()
        return 0
    reporter = Reporter(quiet="--quiet" in argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the builder never downloads (see sources)
    try:
        request, _args = parse(argv)
        from planet_build import job

        outcome = job.run(request, reporter)
    except BuildError as exc:
        reporter.error(str(exc))
        return exc.code
    except KeyboardInterrupt:
        reporter.error("interrupted; the next run resumes where this one stopped")
        return 130
    except MemoryError:
        reporter.error("out of memory while building; give the Job more memory")
        return EXIT_FAILED
    except Exception as exc:
        # A bug or a library failure we did not foresee: still one line, the traceback on request.
        if os.environ.get("PLANET_BUILD_TRACEBACK"):
            raise
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        reporter.error(f"unexpected {type(exc).__name__}: {first} (PLANET_BUILD_TRACEBACK=1 shows where)")
        return EXIT_FAILED
    print(f"{'hit' if outcome.hit else 'built'} {outcome.entry_dir}", flush=True)
    return 0
