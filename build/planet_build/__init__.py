"""planetgen's engine builder: exports and compiles a pipeline's models into a cached engine entry.

Entry points: ``python -m planet_build`` (the build Job's command, :func:`main`) and :func:`run`
(a :class:`BuildRequest` ▶ an :class:`Outcome`, progress through a :class:`Reporter`).

Modules, by job: ``request`` (what to build), ``sources`` (where weights come from),
``onnx_export``, ``ort_engine`` and ``trt_engine`` (per runtime), ``parity`` (engine vs torch),
``cache`` (the entry; its key is ``planet_contracts.engines``), ``manifest``. Everything else is internal.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from planet_build.cli import main
    from planet_build.job import Outcome, run
    from planet_build.progress import Reporter
    from planet_build.request import BuildRequest

__all__ = [
    "BuildRequest",
    "Outcome",
    "Reporter",
    "main",
    "run",
]

#: Public name ▶ (module, attribute). Imported on first use: importing the package stays cheap
#: (the operator never loads torch; a predictor never loads Kopf).
_EXPORTS = {
    "BuildRequest": ("planet_build.request", "BuildRequest"),
    "Outcome": ("planet_build.job", "Outcome"),
    "Reporter": ("planet_build.progress", "Reporter"),
    "run": ("planet_build.job", "run"),
    "main": ("planet_build.cli", "main"),
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attribute = _EXPORTS[name]
    return getattr(importlib.import_module(module), attribute)
