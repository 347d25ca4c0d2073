"""What every predictor's ``__main__`` shares: KServe's flags, the batching flags, starting the server."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypedDict

import kserve

from planet_operator.api.spec import ServingSpec
from planet_predictors import config
from planet_predictors.serving import http
from planet_predictors.serving.errors import BackendUnavailable
from planet_predictors.serving.metrics import Metrics

#: Exit status for "this configuration cannot run here": the pod should not crash-loop silently.
EXIT_UNAVAILABLE = 3


class Servable(Protocol):
    """A loadable ``kserve.Model`` with the config and metrics :func:`serve` wires into the app."""

    config: config.PipelineConfig
    metrics: Metrics

    def load(self) -> bool: ...  # noqa: D102


class ServeOptions(TypedDict):
    """The :class:`~planet_predictors.serving.model.ServeSettings` fields the shared flags set."""

    max_batch_size: int
    max_batch_wait_ms: int
    max_queue: int | None
    device_concurrency: int
    shed_depth: int | None
    timeout_seconds: float
    max_instances: int
    warmup: bool


def new_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """A parser that starts from KServe's server flags (``--model_name``, ``--http_port``...)."""
    return argparse.ArgumentParser(prog=prog, parents=[kserve.model_server.parser], description=description)


def add_serving_flags(parser: argparse.ArgumentParser) -> None:
    """``--device`` and the batching/admission flags, which override ``spec.serving``."""
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


def serve_options(args: argparse.Namespace, serving: ServingSpec) -> ServeOptions:
    """The flags of :func:`add_serving_flags` (and ``--no-warmup``) over ``spec.serving``."""
    max_batch: int = args.max_batch_size or serving.max_batch_size
    return ServeOptions(
        max_batch_size=max_batch,
        max_batch_wait_ms=(
            args.max_batch_wait_ms if args.max_batch_wait_ms is not None else serving.max_batch_wait_ms
        ),
        max_queue=args.max_queue,
        device_concurrency=args.device_concurrency,
        shed_depth=args.shed_queue_depth,
        timeout_seconds=float(serving.timeout_seconds),
        max_instances=args.max_instances or 4 * max_batch,
        warmup=not args.no_warmup,
    )


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


def serve(
    parser: argparse.ArgumentParser,
    build_model: Callable[[argparse.Namespace], Servable],
    argv: list[str] | None,
) -> int:
    """Parse flags, build and load the model, then run ``kserve.ModelServer`` until it stops.

    Returns the exit status when the model cannot be served (2: bad flags, 3: cannot run here).
    """
    args = parser.parse_args(argv)
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
    server: Any = kserve.ModelServer(
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
