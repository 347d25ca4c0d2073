"""``planet demo``: the reference pipeline end to end on this machine (what ``make demo`` runs)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from planet_operator.cli import errors
from planet_operator.cli.dev import crd_paths


def add_parser(sub: Any) -> None:
    """Register ``demo``."""
    parser = sub.add_parser("demo", help="start the local stack, deploy the reference pipeline, make planets")
    parser.add_argument("-f", "--filename", type=Path, default=Path("examples/ethereal-planets.yaml"))
    parser.add_argument("--out", type=Path, default=Path("out"), help="where images are written")
    parser.add_argument("--requests", type=int, default=3, help="how many planets to make")
    parser.add_argument("--steps", type=int, default=4, help="denoising steps per image (tiny model, CPU)")
    parser.add_argument("--state-dir", type=Path, default=Path(".planet/demo"))
    parser.add_argument("--timeout", type=float, default=480.0, help="seconds to wait for Ready")
    parser.add_argument(
        "--no-rollout", action="store_true", help="skip the canary / promote / rollback stage"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo and return its exit code."""
    import logging

    from rich.console import Console

    from planet_operator.devstack import demo, stack

    if not args.filename.exists():
        raise errors.UsageError(f"{args.filename}: no such file")
    if args.requests < 1 or args.steps < 1:
        raise errors.UsageError("--requests and --steps must be >= 1")
    logging.basicConfig(level=logging.WARNING)
    options = demo.DemoOptions(
        manifest=args.filename,
        out=args.out,
        requests=args.requests,
        steps=args.steps,
        timeout=args.timeout,
        rollout=not args.no_rollout,
        stack=stack.StackOptions(state_dir=args.state_dir, crd_paths=crd_paths(Path("."), [])),
    )
    # Piped into a log (make demo | tee), rich would assume 80 columns and fold every table row.
    console = Console() if sys.stdout.isatty() else Console(width=160)
    return asyncio.run(demo.run(options, console))
