"""The upscaler's flags and factory: flags over the pipeline config ▶ an unloaded :class:`UpscalerModel`.

``python -m planet_predictors.upscaler`` runs :func:`main`; tests and benchmarks build models here.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from prometheus_client import CollectorRegistry

from planet_contracts.api.spec import MAX_OUTPUT_SIZE, UpscaleSpec
from planet_contracts.engines import MANIFEST
from planet_predictors import backends, config
from planet_predictors.backends.base import BackendSettings, read_manifest
from planet_predictors.backends.torch_diffusers import resolve_device
from planet_predictors.serving import cli
from planet_predictors.serving.cli import EXIT_UNAVAILABLE as EXIT_UNAVAILABLE
from planet_predictors.serving.errors import BackendUnavailable
from planet_predictors.serving.metrics import Metrics
from planet_predictors.upscaler import engines
from planet_predictors.upscaler import stages as st
from planet_predictors.upscaler.model import ServeSettings, UpscalerModel

log = logging.getLogger("planet_predictors.upscaler")
DEFAULT_UPSCALER_ROOT = Path("/mnt/upscalers")


def build_parser() -> argparse.ArgumentParser:
    """KServe's server flags plus the upscaler's."""
    from planet_predictors.presets import tiny

    parser = cli.new_parser(
        "python -m planet_predictors.upscaler", "planetgen upscale-chain predictor (KServe V1 + V2)."
    )
    parser.add_argument("--pipeline-config", type=Path, help="PipelineConfig JSON rendered by the operator")
    parser.add_argument(
        "--upscaler-root",
        type=Path,
        default=DEFAULT_UPSCALER_ROOT,
        help="where checkpoints are mounted: <root>/<sha256(uri)[:12]>/",
    )
    parser.add_argument("--model-dir", type=Path, help="SDXL diffusers folder for img2img stages")
    parser.add_argument("--engine-dir", type=Path, help="engines + manifest.json (onnxruntime)")
    parser.add_argument(
        "--lora", action="append", default=[], metavar="URI[:SCALE]", help="fused into img2img's UNet"
    )
    parser.add_argument(
        "--backend", choices=backends.BACKENDS, help="default: torch (tensorrt falls back to torch)"
    )
    parser.add_argument("--preset", choices=["tiny"], help="tiny random-weight ESRGAN + SDXL, no downloads")
    parser.add_argument(
        "--preset-dir", type=Path, default=tiny.default_dir(), help="where presets are written"
    )
    parser.add_argument(
        "--tile-size", type=tile_size, help="tile edge in pixels; 0 = untiled (default: spec)"
    )
    parser.add_argument(
        "--tile-overlap",
        type=cli.spec_integer(UpscaleSpec, "tile_overlap"),
        help="default: spec.upscale.tileOverlap",
    )
    parser.add_argument("--tile-batch", type=cli.integer(1, 64), default=4, help="tiles per forward")
    cli.add_serving_flags(parser)
    parser.add_argument(
        "--max-input-pixels",
        type=cli.integer(64 * 64, MAX_OUTPUT_SIZE**2),
        help="largest input image (default: 4 x the generation size)",
    )
    parser.add_argument("--no-warmup", action="store_true", help="mark ready without a warm-up run")
    return parser


def tile_size(text: str) -> int:
    """``--tile-size``: 0 (untiled) or what ``spec.upscale.tileSize`` allows."""
    if text.strip() == "0":
        return 0
    return cli.spec_integer(UpscaleSpec, "tile_size")(text)


def load_upscalers(
    chain: tuple[st.Stage, ...], args: argparse.Namespace, backend: str
) -> dict[tuple[str, int], engines.Upscaler]:
    """One upscaler per (uri, factor): ONNX graphs from the manifest, else spandrel checkpoints."""
    from planet_predictors.presets import tiny_upscaler

    device = resolve_device(args.device)
    components: dict[str, object] = {}
    if backend == "onnxruntime":
        components = read_manifest(args.engine_dir, backend=backend)["components"]
    loaded: dict[tuple[str, int], engines.Upscaler] = {}
    by_path: dict[Path, engines.Upscaler] = {}
    for stage in chain:
        if not isinstance(stage, st.Upscale) or stage.key in loaded:
            continue
        entry = components.get(f"upscaler-{st.sha12(stage.uri)}")
        if isinstance(entry, dict) and "path" in entry:
            assert args.engine_dir is not None
            loaded[stage.key] = engines.OrtUpscaler(args.engine_dir / str(entry["path"]), device=device)
            continue
        if backend == "onnxruntime":
            raise BackendUnavailable(
                f"{args.engine_dir / MANIFEST}: no components.upscaler-{st.sha12(stage.uri)} for {stage.uri}"
            )
        if args.preset == "tiny":
            path = tiny_upscaler.ensure(args.preset_dir, scale=stage.factor)
        else:
            path = st.checkpoint(args.upscaler_root, stage.uri)
        if path not in by_path:
            try:
                descriptor = engines.load_checkpoint(path)
            except Exception as exc:  # spandrel raises many kinds for unknown files
                raise BackendUnavailable(f"cannot load upscaler {stage.uri} from {path}: {exc}") from exc
            by_path[path] = engines.TorchUpscaler(descriptor, device=device, half=device.type == "cuda")
        loaded[stage.key] = by_path[path]
    return loaded


def build_detail(
    pipeline: config.PipelineConfig, args: argparse.Namespace, backend: str
) -> engines.DetailPass:
    """SDXL for img2img stages through the generate predictor's backends (LoRAs fused)."""
    spec = pipeline.spec
    if args.preset == "tiny":
        from planet_predictors.presets import tiny

        model_dir = tiny.ensure(args.preset_dir)
    else:
        model_dir = args.model_dir or Path("/mnt/models")
    name = "torch"
    if backend == "onnxruntime" and "unet" in read_manifest(args.engine_dir, backend=backend)["components"]:
        name = "onnxruntime"
    loras = tuple(cli.parse_lora(v) for v in args.lora)
    settings = BackendSettings(
        model_dir=model_dir,
        backend=name,
        device=args.device,
        precision=spec.engine.precision,
        scheduler=spec.generation.scheduler,
        loras=loras,
        engine_dir=args.engine_dir,
    )
    return engines.DetailPass(
        backends.create(settings),
        guidance=spec.generation.guidance_scale,
        negative_prompt=spec.generation.negative_prompt,
    )


def build_model(args: argparse.Namespace, *, registry: CollectorRegistry | None = None) -> UpscalerModel:
    """Turn parsed flags (over the pipeline config) into an unloaded model (``registry``: tests)."""
    pipeline = config.load(args.pipeline_config)
    spec = pipeline.spec
    chain = st.from_spec(spec)
    assert spec.upscale is not None  # from_spec refuses configs without one
    backend = args.backend or "torch"
    if backend == "tensorrt":
        # Decision: ESRGAN-family models are small convnets; torch (fp16 on CUDA) serves them well,
        # so a TensorRT pipeline keeps its upscale step up instead of failing to start.
        log.warning("no TensorRT upscaler engines: running the upscale chain with torch")
        backend = "torch"
    tiles = engines.Tiling(
        tile=args.tile_size if args.tile_size is not None else spec.upscale.tile_size,
        overlap=args.tile_overlap if args.tile_overlap is not None else spec.upscale.tile_overlap,
        batch=args.tile_batch,
    )
    if tiles.tile > 0 and tiles.overlap * 2 >= tiles.tile:
        # The spec's own rule holds for its values, so a flag broke it.
        raise cli.FlagError(
            f"argument --tile-overlap/--tile-size: overlap {tiles.overlap} must be less than half"
            f" of tile size {tiles.tile}"
        )
    detail = build_detail(pipeline, args, backend) if any(isinstance(s, st.Img2Img) for s in chain) else None
    runner = engines.Chain(upscalers=load_upscalers(chain, args, backend), detail=detail, tiles=tiles)
    serve = ServeSettings(
        **cli.serve_options(args, spec.serving),
        max_input_pixels=args.max_input_pixels or 4 * spec.generation.width * spec.generation.height,
    )
    metrics = Metrics(
        pipeline=pipeline.pipeline, revision=pipeline.revision, component="upscale", registry=registry
    )
    return UpscalerModel(
        args.model_name,
        config=pipeline,
        chain=runner,
        stages=chain,
        serve=serve,
        metrics=metrics,
        backend_name=backend,
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status when the chain cannot be served."""
    return cli.serve(build_parser(), build_model, argv)
