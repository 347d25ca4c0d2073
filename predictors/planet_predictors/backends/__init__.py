"""Backends run a batch of generations on one device; they know nothing of HTTP or queues."""

from __future__ import annotations

from planet_predictors.backends.base import Backend, BackendSettings

BACKENDS = ("torch", "onnxruntime", "tensorrt")


def create(settings: BackendSettings) -> Backend:
    """The backend named by ``settings.backend``; heavy imports happen only for the chosen one."""
    if settings.backend == "torch":
        from planet_predictors.backends.torch_diffusers import TorchBackend

        return TorchBackend(settings)
    if settings.backend == "onnxruntime":
        from planet_predictors.backends.onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(settings)
    if settings.backend == "tensorrt":
        from planet_predictors.backends.tensorrt import TensorRTBackend

        return TensorRTBackend(settings)
    raise ValueError(f"unknown backend {settings.backend!r}; choose one of {', '.join(BACKENDS)}")
