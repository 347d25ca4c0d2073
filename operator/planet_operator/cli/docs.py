"""``planet docs``: print the API reference generated from the models, or write docs/api.md."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from planet_operator.crd import docs


def add_parser(sub: Any) -> None:
    """Register ``docs``."""
    parser = sub.add_parser("docs", help="print the PlanetPipeline API reference generated from the models")
    parser.add_argument("--write", action="store_true", help=f"write {docs.API_DOC} instead")
    parser.add_argument("--root", type=Path, default=Path("."), help="repository root for --write")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print or write."""
    text = docs.reference()
    if not args.write:
        sys.stdout.write(text)
        return 0
    target = args.root / docs.API_DOC
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    print(f"wrote {target}")
    return 0
