"""``planet docs``: print the API reference generated from the models, or write docs/api.md."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from planet_operator.cli import generated
from planet_operator.crd import docs


def add_parser(sub: Any) -> None:
    """Register ``docs``."""
    parser = sub.add_parser("docs", help="print the PlanetPipeline API reference generated from the models")
    parser.add_argument("--write", action="store_true", help=f"write {docs.API_DOC} instead")
    parser.add_argument("--root", type=Path, default=Path("."), help="repository root for --write")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print or write."""
    return generated.print_or_write(docs.reference(), write=args.write, targets=[args.root / docs.API_DOC])
