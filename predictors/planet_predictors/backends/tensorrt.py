"""TensorRT backend (GPU only): the UNet runs as a serialized TensorRT engine.

``--engine-dir`` holds ``manifest.json`` written by ``python -m planet_build``:
``{"backend": "tensorrt", "precision": "fp16", "components": {"unet": {"path": "unet.plan"}}}``;
the engine's I/O tensors have the ONNX export's names (see :mod:`.onnxruntime`). Text encoders,
VAE and scheduler stay in torch on the same GPU; I/O buffers are torch CUDA tensors bound by
address, and the engine runs on torch's current stream so no extra synchronisation is needed.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from planet_contracts.engines import UNET_OUTPUT
from planet_predictors.backends.base import BackendSettings, component_path, read_manifest
from planet_predictors.backends.graph import GraphForward
from planet_predictors.backends.torch_diffusers import TorchBackend
from planet_predictors.serving.errors import BackendUnavailable

log = logging.getLogger(__name__)


class TensorRTBackend(TorchBackend):
    """Torch pipeline around a TensorRT UNet engine."""

    name = "tensorrt"

    def __init__(self, settings: BackendSettings) -> None:
        super().__init__(settings)
        self.engine: Any = None

    def load(self) -> None:
        """Fail fast and clearly where TensorRT cannot run, before loading any weights."""
        if not torch.cuda.is_available():
            raise BackendUnavailable(
                "the tensorrt backend needs an NVIDIA GPU with CUDA; torch sees none on this machine"
                " (use --backend torch or onnxruntime on CPU)"
            )
        if self.settings.device == "cpu":
            raise BackendUnavailable("the tensorrt backend cannot run with --device cpu")
        try:
            import tensorrt  # noqa: F401
        except ImportError as exc:
            raise BackendUnavailable(
                "the tensorrt backend needs the tensorrt Python package (pip install 'planetgen[tensorrt]')"
            ) from exc
        read_manifest(self.settings.engine_dir, backend=self.name)  # before the slow part
        super().load()

    def _after_load(self) -> None:
        import tensorrt as trt

        path = component_path(self.settings.engine_dir, backend=self.name, component="unet")
        logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(logger)
        try:
            engine = runtime.deserialize_cuda_engine(path.read_bytes())
        except OSError as exc:
            raise BackendUnavailable(f"cannot read TensorRT engine {path}: {exc}") from exc
        if engine is None:
            raise BackendUnavailable(
                f"TensorRT could not deserialize {path}: built for another GPU or TensorRT version?"
            )
        self.engine = engine
        self.pipe.unet.forward = _TrtForward(engine, self.device)
        log.info("TensorRT %s engine %s loaded", trt.__version__, path)


class _TrtForward(GraphForward):
    """Calls the engine with torch tensors; one execution context, used by one thread at a time."""

    def __init__(self, engine: Any, device: torch.device) -> None:
        import tensorrt as trt

        self.trt = trt
        self.engine = engine
        self.context = engine.create_execution_context()
        self.device = device

    def run(self, feeds: dict[str, torch.Tensor]) -> torch.Tensor:
        bound = {}
        for name, tensor in feeds.items():
            dtype = _torch_dtype(self.trt.nptype(self.engine.get_tensor_dtype(name)))
            value = tensor.to(self.device, dtype).contiguous()
            bound[name] = value  # keep alive until the stream finished
            self.context.set_input_shape(name, tuple(value.shape))
            self.context.set_tensor_address(name, value.data_ptr())
        out_dtype = _torch_dtype(self.trt.nptype(self.engine.get_tensor_dtype(UNET_OUTPUT)))
        out = torch.empty(
            tuple(self.context.get_tensor_shape(UNET_OUTPUT)), dtype=out_dtype, device=self.device
        )
        self.context.set_tensor_address(UNET_OUTPUT, out.data_ptr())
        stream = torch.cuda.current_stream(self.device)
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT execution failed")
        return out


def _torch_dtype(np_dtype: Any) -> torch.dtype:
    import numpy as np

    return {
        np.dtype(np.float32): torch.float32,
        np.dtype(np.float16): torch.float16,
        np.dtype(np.int32): torch.int32,
        np.dtype(np.int64): torch.int64,
    }[np.dtype(np_dtype)]
