"""``manifest.json``: what an entry holds, how it was made, and how well each graph matched torch."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from importlib import metadata
from typing import Any

from planet_build.request import BuildRequest

TOOLS = ("torch", "diffusers", "transformers", "onnx", "onnxruntime", "tensorrt", "spandrel")


def tool_versions() -> dict[str, str | None]:
    """Installed versions of the tools an engine's bytes depend on (None when absent)."""
    found: dict[str, str | None] = {}
    for name in TOOLS:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def build(
    request: BuildRequest,
    *,
    key: str,
    tensorrt_version: str | None,
    components: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    """The manifest object; ``components`` maps names to records with at least ``path``."""
    inputs = request.inputs()
    inputs["tensorrt_version"] = tensorrt_version
    return {
        "backend": request.backend,
        "key": key,
        "precision": request.precision,
        "inputs": inputs,
        "tools": tool_versions(),
        "components": {name: dict(record) for name, record in components.items()},
        "created": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
