"""``planet dev up``: the whole stack on this machine, in the foreground."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path
from typing import Any

from planet_operator.cli import errors

#: KServe's published CRDs, vendored so that a fresh clone runs the local stack (third_party/kserve).
DEFAULT_KSERVE_CRDS = Path(__file__).resolve().parents[3] / "third_party" / "kserve"


def add_parser(sub: Any) -> None:
    """Register ``dev``."""
    parser = sub.add_parser("dev", help="the local stack: API server, operator, local KServe runtime")
    verbs = parser.add_subparsers(dest="verb", required=True)
    up = verbs.add_parser("up", help="start everything; writes .planet/kubeconfig; Ctrl-C stops it all")
    up.add_argument("--state-dir", type=Path, default=Path(".planet"), help="kubeconfig, logs, presets")
    up.add_argument("--crds", type=Path, action="append", default=[], help="extra CRD folder (repeatable)")
    up.add_argument("--resync", type=float, default=5.0, help="operator resync seconds")
    up.set_defaults(handler=run)


def crd_paths(root: Path, extra: list[Path]) -> list[Path]:
    """Planetgen's CRDs, KServe's (when present) and any extras; missing folders are an error."""
    paths = [root / "crds"]
    if DEFAULT_KSERVE_CRDS.exists():
        paths.append(DEFAULT_KSERVE_CRDS)
    for path in extra:
        if not path.exists():
            raise errors.UsageError(f"--crds {path}: no such file or folder")
        paths.append(path)
    return paths


def run(args: argparse.Namespace) -> int:
    """Run until Ctrl-C / SIGTERM."""
    from planet_operator.devstack import stack

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not (Path("crds")).exists():
        raise errors.UsageError("run `planet dev up` from the repository root (crds/ not found)")
    options = stack.StackOptions(
        state_dir=args.state_dir, crd_paths=crd_paths(Path("."), args.crds), resync_seconds=args.resync
    )
    asyncio.run(stack.run_until_signalled(options))
    return 0
