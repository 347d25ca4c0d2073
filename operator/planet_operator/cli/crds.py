"""``planet crds``: print the generated CRDs, or write the committed copies."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from planet_operator.cli import generated
from planet_operator.crd import generate

#: Where the committed copies live, relative to the repository root.
COPIES = (Path("crds"), Path("charts/planetgen/crds"))


def add_parser(sub: Any) -> None:
    """Register ``crds``."""
    parser = sub.add_parser("crds", help="print the PlanetPipeline CRD generated from the API models")
    parser.add_argument("--write", action="store_true", help="write crds/ and charts/planetgen/crds/ instead")
    parser.add_argument("--root", type=Path, default=Path("."), help="repository root for --write")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print or write."""
    targets = [args.root / folder / generate.CRD_FILE for folder in COPIES]
    return generated.print_or_write(generate.crds_yaml(), write=args.write, targets=targets)
