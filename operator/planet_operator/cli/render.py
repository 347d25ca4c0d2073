"""``planet render -f PIPELINE.yaml``: print every child object, exactly as the operator would apply it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from planet_contracts.api import validation
from planet_contracts.api.resource import KIND
from planet_operator import yamlio
from planet_operator.builders import children, plan, revision
from planet_operator.cli import errors


def add_parser(sub: Any) -> None:
    """Register ``render``."""
    parser = sub.add_parser("render", help="print the children of a PlanetPipeline as a YAML stream")
    parser.add_argument("-f", "--filename", required=True, help="a PlanetPipeline manifest, or - for stdin")
    parser.add_argument("--mode", choices=["knative", "standard"], help="override serving.deploymentMode")
    parser.add_argument("-n", "--namespace", help="namespace when the manifest names none (default: default)")
    parser.add_argument("--no-job", action="store_true", help="leave out the engine-build Job")
    parser.set_defaults(handler=run)


def load_pipelines(filename: str) -> list[dict[str, Any]]:
    """Read PlanetPipeline documents from a file or stdin; other kinds are refused by name."""
    try:
        text = sys.stdin.read() if filename == "-" else Path(filename).read_text()
    except OSError as exc:
        raise errors.UsageError(f"cannot read {filename}: {exc.strerror}") from None
    try:
        documents = list(yamlio.load_all(text))
    except yaml.YAMLError as exc:
        raise errors.UsageError(f"{filename}: not valid YAML: {exc}") from None
    if not documents:
        raise errors.UsageError(f"{filename}: no objects found")
    for index, document in enumerate(documents):
        if not isinstance(document, dict) or document.get("kind") != KIND:
            kind = document.get("kind") if isinstance(document, dict) else type(document).__name__
            raise errors.UsageError(f"{filename}: document {index}: expected kind {KIND}, got {kind!r}")
    return documents


def run(args: argparse.Namespace) -> int:
    """Validate each pipeline, then print its children."""
    out: list[dict[str, Any]] = []
    problems: list[str] = []
    for document in load_pipelines(args.filename):
        try:
            pipeline = validation.parse(document)
        except validation.InvalidPipeline as exc:
            problems.append(exc.render())
            continue
        namespace = document["metadata"].get("namespace") or args.namespace or "default"
        rev = revision.revision_of(pipeline.spec)
        deployed = plan.single(pipeline.metadata.name, namespace, pipeline.spec, rev, mode=args.mode)
        out.extend(children.build_all(deployed, include_job=not args.no_job))
    if problems:
        raise errors.InvalidInput("\n".join(problems))
    sys.stdout.write(yamlio.dump_all(out))
    return 0
