"""The SDXL predictor's flags and factory: flags over the pipeline config ▶ an unloaded :class:`SDXLModel`.

``python -m planet_predictors.sdxl`` runs :func:`main`; tests and benchmarks build models here.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from planet_contracts.engines import FALLBACK_ENV
from planet_predictors import backends, config
from planet_predictors.backends.base import BackendSettings, fallback_backend
from planet_predictors.sdxl.model import SDXLModel
from planet_predictors.serving import cli
from planet_predictors.serving.cli import EXIT_UNAVAILABLE as EXIT_UNAVAILABLE
from planet_predictors.serving.cli import parse_lora as parse_lora
from planet_predictors.serving.metrics import Metrics
from planet_predictors.serving.model import ServeSettings

log = logging.getLogger("planet_predictors.sdxl")


def build_parser() -> argparse.ArgumentParser:
    """KServe's server flags plus the SDXL predictor's."""
    from planet_predictors.presets import tiny

    parser = cli.new_parser("python -m planet_predictors.sdxl", "planetgen SDXL predictor (KServe V1 + V2).")
    parser.add_argument(
        "--model-dir", type=Path, help="diffusers folder (KServe mounts storage at /mnt/models)"
    )
    parser.add_argument("--preset", choices=["tiny"], help="build a tiny random-weight SDXL and serve it")
    parser.add_argument(
        "--preset-dir", type=Path, default=tiny.default_dir(), help="where presets are written"
    )
    parser.add_argument("--pipeline-config", type=Path, help="PipelineConfig JSON rendered by the operator")
    parser.add_argument(
        "--backend", choices=backends.BACKENDS, help="default: spec.engine.backend with a config, else torch"
    )
    parser.add_argument("--engine-dir", type=Path, help="engines + manifest.json (onnxruntime, tensorrt)")
    parser.add_argument(
        "--lora", action="append", default=[], metavar="URI[:SCALE]", help="local .safetensors; repeatable"
    )
    parser.add_argument(
        "--scheduler", choices=sorted(_schedulers()), help="default: spec.generation.scheduler"
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the UNet (torch backend)")
    cli.add_serving_flags(parser)
    parser.add_argument("--no-warmup", action="store_true", help="mark ready without a warm-up generation")
    return parser


def _schedulers() -> list[str]:
    from planet_predictors.backends.torch_diffusers import SCHEDULERS

    return list(SCHEDULERS)


def build_model(args: argparse.Namespace) -> SDXLModel:
    """Turn parsed flags (over the pipeline config) into an unloaded model."""
    pipeline = config.load(args.pipeline_config)
    spec = pipeline.spec
    if args.preset == "tiny":
        from planet_predictors.presets import tiny

        model_dir = tiny.ensure(args.preset_dir)
    elif args.model_dir is not None:
        model_dir = args.model_dir
    else:
        base = spec.model.base.uri
        model_dir = (
            Path(base.removeprefix("file://")) if base.startswith(("/", "file://")) else Path("/mnt/models")
        )
    backend_name = args.backend or (
        spec.engine.backend if args.pipeline_config and not args.preset else "torch"
    )
    precision: str = spec.engine.precision
    served, fallback_precision = fallback_backend(backend_name, args.engine_dir)
    if served != backend_name:
        log.warning(
            "%s engines in %s were built as a fallback for %s (%s): serving them with %s %s",
            served, args.engine_dir, backend_name, FALLBACK_ENV, served, fallback_precision,
        )  # fmt: skip
        backend_name, precision = served, fallback_precision or precision
    if args.lora:
        loras = tuple(parse_lora(v) for v in args.lora)
    else:
        # Remote LoRAs are fused by the engine build; only local ones can be fused here.
        loras = tuple(
            (Path(a.uri.removeprefix("file://")), a.scale)
            for a in spec.model.loras
            if a.fuse and a.uri.startswith(("/", "file://"))
        )
    backend = backends.create(
        BackendSettings(
            model_dir=model_dir,
            backend=backend_name,
            device=args.device,
            precision=precision,
            scheduler=args.scheduler or spec.generation.scheduler,
            loras=loras,
            compile=args.compile,
            engine_dir=args.engine_dir,
        )
    )
    serve = ServeSettings(**cli.serve_options(args, spec.serving))
    metrics = Metrics(pipeline=pipeline.pipeline, revision=pipeline.revision, component=pipeline.component)
    return SDXLModel(args.model_name, config=pipeline, backend=backend, serve=serve, metrics=metrics)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status when the model cannot be served."""
    return cli.serve(build_parser(), build_model, argv)
