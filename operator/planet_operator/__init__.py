"""planetgen's operator: reconciles ``PlanetPipeline`` resources into KServe InferenceServices.

Entry points: ``planet`` (:func:`main`; ``planet operator`` runs the Kopf operator, ``planet
render`` prints what a manifest becomes), ``kubectl planet`` (``planet_operator.plugin``), and
:func:`reconcile`, one pass of one pipeline against a :class:`Context` (what tests drive).

The resource's models and validation live in ``planet_contracts.api``, shared with the predictors
and the builder. Packages, by job: ``builders`` (pure renders of the children), ``reconcile`` (one
pass: observe, plan, apply, report), ``rollout`` (the canary state machine and its Prometheus
analysis), ``handlers`` (Kopf wiring: events, daemons, indexes), ``kube`` (the API client, the seam
tests fake), ``crd``/``schemas`` (the CRD and KServe's schemas), ``cli`` and ``plugin``.
Everything else is internal.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from planet_operator.cli.main import main
    from planet_operator.reconcile.context import Context, Settings
    from planet_operator.reconcile.core import Result, reconcile

__all__ = [
    "Context",
    "Result",
    "Settings",
    "main",
    "reconcile",
]

#: Public name ▶ (module, attribute). Imported on first use: importing the package stays cheap
#: (the operator never loads torch; a predictor never loads Kopf).
_EXPORTS = {
    "Context": ("planet_operator.reconcile.context", "Context"),
    "Settings": ("planet_operator.reconcile.context", "Settings"),
    "Result": ("planet_operator.reconcile.core", "Result"),
    "reconcile": ("planet_operator.reconcile.core", "reconcile"),
    "main": ("planet_operator.cli.main", "main"),
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attribute = _EXPORTS[name]
    return getattr(importlib.import_module(module), attribute)
