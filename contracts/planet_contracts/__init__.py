"""planetgen's contracts: what the operator, the predictors and the engine builder agree on.

The three components import each other nowhere; they meet here (import-linter keeps it so). Small
and dependency-light on purpose (pydantic only): every image carries it.

Modules, by job: ``api`` (the ``PlanetPipeline`` resource: pydantic models of the spec and status,
the single source of truth for the CRD, and their validation) and ``engines`` (the engine cache
key, the manifest's name, the UNet graph's input and output names, the build Job's exit statuses).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from planet_contracts.api.resource import PlanetPipeline
    from planet_contracts.api.spec import PlanetPipelineSpec
    from planet_contracts.api.validation import InvalidPipeline, parse, parse_spec
    from planet_contracts.engines import engine_key

__all__ = ["InvalidPipeline", "PlanetPipeline", "PlanetPipelineSpec", "engine_key", "parse", "parse_spec"]

#: Public name ▶ (module, attribute), imported on first use like the components' roots.
_EXPORTS = {
    "PlanetPipeline": ("planet_contracts.api.resource", "PlanetPipeline"),
    "PlanetPipelineSpec": ("planet_contracts.api.spec", "PlanetPipelineSpec"),
    "InvalidPipeline": ("planet_contracts.api.validation", "InvalidPipeline"),
    "parse": ("planet_contracts.api.validation", "parse"),
    "parse_spec": ("planet_contracts.api.validation", "parse_spec"),
    "engine_key": ("planet_contracts.engines", "engine_key"),
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attribute = _EXPORTS[name]
    return getattr(importlib.import_module(module), attribute)
