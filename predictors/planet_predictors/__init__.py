"""planetgen's predictors: the KServe model servers for SDXL generation and the upscale chain.

Entry points: ``python -m planet_predictors.sdxl`` and ``python -m planet_predictors.upscaler``
(flags in their ``factory`` modules, which also build models for tests and benchmarks);
:class:`SDXLModel` and :class:`UpscalerModel`, both :class:`BatchedModel` (lanes, admission and
micro-batches on one device thread, :class:`Batcher`); :func:`create_backend` for the
:class:`Backend` that runs the pipeline (torch, ONNX Runtime, TensorRT).

Packages, by job: ``serving`` (KServe glue, batcher, errors, metrics, protocols), ``backends``,
``sdxl`` and ``upscaler`` (each predictor's inputs, model and factory), ``presets`` (the tiny
models the project builds itself), ``imaging`` (encoders), ``config`` (the pipeline config the
operator mounts). Everything else is internal.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from planet_predictors.backends import create as create_backend
    from planet_predictors.backends.base import Backend, BackendSettings
    from planet_predictors.config import PipelineConfig
    from planet_predictors.sdxl.model import SDXLModel
    from planet_predictors.serving.batcher import Batcher
    from planet_predictors.serving.model import BatchedModel, ServeSettings
    from planet_predictors.upscaler.model import UpscalerModel

__all__ = [
    "Backend",
    "BackendSettings",
    "BatchedModel",
    "Batcher",
    "PipelineConfig",
    "SDXLModel",
    "ServeSettings",
    "UpscalerModel",
    "create_backend",
]

#: Public name ▶ (module, attribute). Imported on first use: importing the package stays cheap
#: (the operator never loads torch; a predictor never loads Kopf).
_EXPORTS = {
    "SDXLModel": ("planet_predictors.sdxl.model", "SDXLModel"),
    "UpscalerModel": ("planet_predictors.upscaler.model", "UpscalerModel"),
    "BatchedModel": ("planet_predictors.serving.model", "BatchedModel"),
    "ServeSettings": ("planet_predictors.serving.model", "ServeSettings"),
    "Batcher": ("planet_predictors.serving.batcher", "Batcher"),
    "Backend": ("planet_predictors.backends.base", "Backend"),
    "BackendSettings": ("planet_predictors.backends.base", "BackendSettings"),
    "create_backend": ("planet_predictors.backends", "create"),
    "PipelineConfig": ("planet_predictors.config", "PipelineConfig"),
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attribute = _EXPORTS[name]
    return getattr(importlib.import_module(module), attribute)
