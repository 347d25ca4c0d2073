"""planet: render pipelines, print CRDs, run the operator (plus the dev stack and demo, when installed)."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from importlib import metadata

from planet_operator.cli import errors

#: Each subcommand is a module of this package with ``add_parser(sub)``.
SUBCOMMANDS = ("render", "crds", "docs", "operator", "release_finalizers")
#: More subcommands from installed distributions: ``name = "module:add_parser"`` entry points.
#: The dev harness adds ``dev`` and ``demo`` this way; the operator image ships without them.
PLUGINS = "planetgen.cli"
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand registered."""
    parser = argparse.ArgumentParser(prog="planet", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f"planet_operator.cli.{name}").add_parser(sub)
    for plugin in sorted(metadata.entry_points(group=PLUGINS), key=lambda e: e.name):
        try:
            register = plugin.load()
        except ImportError as exc:  # a half-installed plugin must not take the product's commands down
            print(f"warning: planet {plugin.name} unavailable ({plugin.value}: {exc})", file=sys.stderr)
            continue
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: exit 0 on success, 2 on bad input (with the reason on stderr)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except errors.UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
