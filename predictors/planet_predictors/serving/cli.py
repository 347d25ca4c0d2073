"""What every predictor's ``__main__`` shares: KServe's flags, the batching flags, starting the server."""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypedDict

import kserve
import pydantic

from planet_contracts.api.spec import Lane, ServingSpec
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


#: Most images one request may carry, whatever ``--max-instances`` says.
MAX_INSTANCES = 1024
#: ``--device`` values: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
DEVICE = re.compile(r"^(auto|cpu|cuda(:[0-9]{1,2})?)$")


class FlagError(ValueError):
    """Flags that cannot go together (exit 2, like argparse's own errors)."""


def new_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """A parser that starts from KServe's server flags (``--model_name``, ``--http_port``...)."""
    return argparse.ArgumentParser(prog=prog, parents=[kserve.model_server.parser], description=description)


def integer(low: int, high: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer from ``low`` to ``high`` (argparse exits 2 naming the flag)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be an integer from {low} to {high}, got {text!r}"
            ) from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is out of range; allowed: {low} to {high}")
        return value

    return parse


def spec_bounds(model: type[pydantic.BaseModel], field: str) -> tuple[int, int]:
    """The ``ge``/``le`` bounds the API model declares for ``field``."""
    bounds = {type(m).__name__: m for m in model.model_fields[field].metadata}
    return int(bounds["Ge"].ge), int(bounds["Le"].le)


def spec_integer(model: type[pydantic.BaseModel], field: str) -> Callable[[str], int]:
    """:func:`integer` with the bounds the API model gives ``field`` (a flag overriding it)."""
    return integer(*spec_bounds(model, field))


def device(text: str) -> str:
    """An argparse ``type`` for ``--device``."""
    if not DEVICE.match(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not one of auto, cpu, cuda, cuda:N")
    return text


def add_serving_flags(parser: argparse.ArgumentParser) -> None:
    """``--device`` and the batching/admission flags, which override ``spec.serving``."""
    parser.add_argument("--device", type=device, default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument(
        "--max-batch-size",
        type=spec_integer(ServingSpec, "max_batch_size"),
        help="default: spec.serving.maxBatchSize",
    )
    parser.add_argument(
        "--max-batch-wait-ms",
        type=spec_integer(ServingSpec, "max_batch_wait_ms"),
        help="default: spec.serving.maxBatchWaitMs",
    )
    parser.add_argument(
        "--max-queue",
        type=spec_integer(Lane, "max_queue"),
        help="queue bound for every lane (default: each lane's maxQueue)",
    )
    parser.add_argument(
        "--shed-queue-depth",
        type=integer(1, spec_bounds(Lane, "max_queue")[1]),
        help="total queued at which lower lanes get 429",
    )
    parser.add_argument(
        "--device-concurrency",
        type=spec_integer(Lane, "max_concurrency"),
        default=1,
        help="batches running at once per device",
    )
    parser.add_argument(
        "--max-instances",
        type=integer(1, MAX_INSTANCES),
        help="images per request (default: 4 x max batch size)",
    )
    parser.add_argument(
        "--grace-period",
        type=integer(0, 3600),
        default=30,
        help="seconds to finish running requests after SIGTERM; then work is stopped and the process exits",
    )


def serve_options(args: argparse.Namespace, serving: ServingSpec) -> ServeOptions:
    """The flags of :func:`add_serving_flags` (and ``--no-warmup``) over ``spec.serving``."""
    max_batch: int = args.max_batch_size if args.max_batch_size is not None else serving.max_batch_size
    return ServeOptions(
        max_batch_size=max_batch,
        max_batch_wait_ms=(
            args.max_batch_wait_ms if args.max_batch_wait_ms is not None else serving.max_batch_wait_ms
        ),
        max_queue=args.max_queue,
        device_concurrency=args.device_concurrency,
        shed_depth=args.shed_queue_depth,
        timeout_seconds=float(serving.timeout_seconds),
        max_instances=(
            args.max_instances if args.max_instances is not None else min(4 * max_batch, MAX_INSTANCES)
        ),
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

    Returns the exit status when the model cannot be served (2: bad flags, 3: cannot run here);
    once it has served, the process exits with 0 (see the end).
    """
    args = parser.parse_args(argv)  # a bad value exits 2 naming the flag
    _configure_logging(args)
    if args.workers != 1:
        # The batcher and the device live in one process; more workers would each load the model.
        print("error: --workers must be 1 (scale with replicas; batching is per process)", file=sys.stderr)
        return 2
    try:
        model = build_model(args)
        model.load()
    except FlagError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
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
        grace_period=args.grace_period,
    )
    server.start([model])
    # Here uvicorn has drained every request (or cancelled them after --grace-period) and the
    # batcher was told to stop at the next step. Tearing down an interpreter with torch and
    # diffusers loaded spends seconds in garbage collection: exit now, as a stopped pod should.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _configure_logging(args: argparse.Namespace) -> None:
    """Set up KServe's logging now (``ModelServer`` would, after the load) and send ours through it.

    Without its handlers this package's INFO lines (load times, the one-line error log) go nowhere.
    """
    if not args.configure_logging:
        return
    kserve.logging.configure_logging(args.log_config_file)
    ours, theirs = logging.getLogger("planet_predictors"), logging.getLogger("kserve")
    if not ours.handlers and theirs.handlers:
        for handler in theirs.handlers:
            ours.addHandler(handler)
        ours.setLevel(logging.INFO)
        ours.propagate = False
