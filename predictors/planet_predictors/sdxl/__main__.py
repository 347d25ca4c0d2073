"""``python -m planet_predictors.sdxl``: load, warm up, then serve with ``kserve.ModelServer``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import kserve

from planet_predictors import backends, config
from planet_predictors.backends.base import BackendSettings
from planet_predictors.sdxl.model import SDXLModel, ServeSettings
from planet_predictors.serving import http
from planet_predictors.serving.errors import BackendUnavailable
from planet_predictors.serving.metrics import Metrics

log = logging.getLogger("planet_predictors.sdxl")
#: Exit status for "this configuration cannot run here": the pod should not crash-loop silently.
EXIT_UNAVAILABLE = 3


def build_parser() -> argparse.ArgumentParser:
    """KServe's server flags plus the SDXL predictor's."""
    from planet_predictors.presets import tiny

    parser = argparse.ArgumentParser(
        prog="python -m planet_predictors.sdxl",
        parents=[kserve.model_server.parser],
        description="planetgen SDXL predictor (KServe V1 + V2).",
    )
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
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--max-batch-size", type=int, help="default: spec.serving.maxBatchSize")
    parser.add_argument("--max-batch-wait-ms", type=int, help="default: spec.serving.maxBatchWaitMs")
    parser.add_argument(
        "--max-queue", type=int, help="queue bound for every lane (default: each lane's maxQueue)"
    )
    parser.add_argument("--shed-queue-depth", type=int, help="total queued at which lower lanes get 429")
    parser.add_argument(
        "--device-concurrency", type=int, default=1, help="batches running at once per device"
    )
    parser.add_argument("--max-instances", type=int, help="images per request (default: 4 x max batch size)")
    parser.add_argument("--no-warmup", action="store_true", help="mark ready without a warm-up generation")
    return parser


def _schedulers() -> list[str]:
    from planet_predictors.backends.torch_diffusers import SCHEDULERS

    return list(SCHEDULERS)


def parse_lora(value: str) -> tuple[Path, float]:
    """``/path/x.safetensors:0.8`` or ``file:///path/x.safetensors`` ▶ (path, scale)."""
    scale = 1.0
    head, sep, tail = value.rpartition(":")
    if sep and head and not tail.startswith("//"):
        try:
            scale = float(tail)
            value = head
        except ValueError:
            pass
    return Path(value.removeprefix("file://")), scale


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
            precision=spec.engine.precision,
            scheduler=args.scheduler or spec.generation.scheduler,
            loras=loras,
            compile=args.compile,
            engine_dir=args.engine_dir,
        )
    )
    max_batch = args.max_batch_size or spec.serving.max_batch_size
    serve = ServeSettings(
        max_batch_size=max_batch,
        max_batch_wait_ms=(
            args.max_batch_wait_ms if args.max_batch_wait_ms is not None else spec.serving.max_batch_wait_ms
        ),
        max_queue=args.max_queue,
        device_concurrency=args.device_concurrency,
        shed_depth=args.shed_queue_depth,
        timeout_seconds=float(spec.serving.timeout_seconds),
        max_instances=args.max_instances or 4 * max_batch,
        warmup=not args.no_warmup,
    )
    metrics = Metrics(pipeline=pipeline.pipeline, revision=pipeline.revision, component=pipeline.component)
    return SDXLModel(args.model_name, config=pipeline, backend=backend, serve=serve, metrics=metrics)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status when the model cannot be served."""
    args = build_parser().parse_args(argv)
    if args.workers != 1:
        # The batcher and the device live in one process; more workers would each load the model.
        print("error: --workers must be 1 (scale with replicas; batching is per process)", file=sys.stderr)
        return 2
    try:
        model = build_model(args)
        model.load()
    except (BackendUnavailable, config.ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    http.install(
        kserve.model_server.app,
        max_body_bytes=model.config.spec.serving.max_body_bytes,
        on_error=model.metrics.count_error,
    )
    server = kserve.ModelServer(
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        workers=args.workers,
        enable_grpc=args.enable_grpc,
        enable_docs_url=args.enable_docs_url,
        enable_latency_logging=args.enable_latency_logging,
        event_loop=args.event_loop,
        timeout_keep_alive=args.timeout_keep_alive,
    )
    server.start([model])
    return 0


if __name__ == "__main__":
    sys.exit(main())
