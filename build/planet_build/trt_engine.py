"""TensorRT engines: ONNX ▶ serialized plan, with an optimization profile, timing cache and precision flags.

Runs only where CUDA and the ``tensorrt`` package are; everything else in the builder is CPU-only.
Plans are tied to the GPU and TensorRT version they were built with, which is why both are in the key.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any

from planet_build import shapes
from planet_build.errors import ComponentFailed, UsageError

#: Compute capability each reduced precision needs (FP8 tensor cores arrived with Ada/Hopper).
MIN_CAPABILITY = {"int8": (7, 5), "fp8": (8, 9)}
_QDQ = {"QuantizeLinear", "DequantizeLinear"}


def installed_version() -> str | None:
    """The importable ``tensorrt`` version, or None."""
    try:
        import tensorrt as trt
    except ImportError:
        return None
    return str(trt.__version__)


def preflight(precision: str, *, quantized_dir: Path | None) -> str:
    """Check this machine can build TensorRT engines at ``precision``; return TensorRT's version."""
    import torch

    if not torch.cuda.is_available():
        raise UsageError("TensorRT needs CUDA; use --backend onnxruntime (torch sees no CUDA device here)")
    version = installed_version()
    if version is None:
        raise UsageError(
            "TensorRT needs the tensorrt Python package (pip install 'planetgen[tensorrt]');"
            " use --backend onnxruntime"
        )
    needed = MIN_CAPABILITY.get(precision)
    if needed is not None:
        capability = torch.cuda.get_device_capability()
        if capability < needed:
            raise UsageError(
                f"--precision {precision} needs compute capability {needed[0]}.{needed[1]}+,"
                f" {torch.cuda.get_device_name()} has {capability[0]}.{capability[1]}; use fp16"
            )
        if quantized_dir is None:
            raise UsageError(
                f"--precision {precision} needs Q/DQ-quantized ONNX graphs (e.g. from NVIDIA ModelOpt) passed"
                " with --quantized-onnx DIR (TensorRT 10 builds explicit quantization only), or use fp16"
            )
    return version


def gpu_product_warning(gpu_product: str | None) -> str | None:
    """A warning when the GPU here is not the one the engines are keyed for (plans are GPU-specific)."""
    if gpu_product is None:
        return None
    import torch

    name = torch.cuda.get_device_name()

    def norm(text: str) -> str:
        return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")

    if norm(gpu_product) != norm(name) and norm(name) not in norm(gpu_product):
        return f"building on {name!r} for --gpu-product {gpu_product!r}: the plans may not load there"
    return None


def is_quantized(path: Path) -> bool:
    """Whether a graph carries explicit quantization (Q/DQ nodes)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return any(node.op_type in _QDQ for node in model.graph.node)


@dataclasses.dataclass(frozen=True, kw_only=True)
class PlanSettings:
    """How one component's plan is built."""

    precision: str
    profile: shapes.Profile
    workspace_gib: float
    timing_cache: Path
    optimization_level: int = 3


def timing_cache_path(cache_dir: Path, version: str) -> Path:
    """One timing cache per GPU model and TensorRT version, shared by every key built here."""
    import torch

    device = re.sub(r"[^A-Za-z0-9]+", "-", torch.cuda.get_device_name()).strip("-")
    return cache_dir / "timing-caches" / f"{device}-trt{version}.cache"


def build_plan(component: str, onnx_path: Path, target: Path, staging: Path, settings: PlanSettings) -> None:
    """Parse ``onnx_path``, build a serialized engine for ``settings`` and write it to ``target``."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if settings.precision in ("int8", "fp8") and is_quantized(onnx_path):
        # Q/DQ graphs carry their own types; TensorRT must not re-type them.
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ComponentFailed(component, f"TensorRT cannot parse {onnx_path.name}: {errors[:500]}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(settings.workspace_gib * (1 << 30)))
    config.builder_optimization_level = settings.optimization_level
    if not flags & (1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)):
        _set_precision(trt, config, settings.precision)
    profile = builder.create_optimization_profile()
    for index in range(network.num_inputs):
        tensor = network.get_input(index)
        if tensor.name not in settings.profile:
            raise ComponentFailed(component, f"no profile shape for input {tensor.name!r}")
        low, opt, high = settings.profile[tensor.name]
        profile.set_shape(tensor.name, low, opt, high)
    config.add_optimization_profile(profile)
    cache = config.create_timing_cache(_read(settings.timing_cache))
    config.set_timing_cache(cache, ignore_mismatch=False)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ComponentFailed(component, "TensorRT failed to build the engine (see the log above)")
    staging.write_bytes(memoryview(plan))
    os.replace(staging, target)
    _save_timing_cache(trt, config, settings.timing_cache)


def _set_precision(trt: Any, config: Any, precision: str) -> None:
    if precision == "fp32":
        return  # TF32 stays on (TensorRT's default): fp32 range with tensor-core speed
    config.set_flag(trt.BuilderFlag.FP16)  # reduced precisions fall back to fp16, never to fp32
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
    if precision == "fp8":
        config.set_flag(trt.BuilderFlag.FP8)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


def _save_timing_cache(trt: Any, config: Any, path: Path) -> None:
    """Merge with what other builders saved meanwhile, then replace the file atomically."""
    cache = config.get_timing_cache()
    latest = _read(path)
    if latest:
        # Another key's build may have added entries since we read it; keep them too.
        cache.combine(config.create_timing_cache(latest), False)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(memoryview(cache.serialize()))
    os.replace(tmp, path)


def run_plan(plan: Path, feeds: dict[str, Any], outputs: tuple[str, ...]) -> list[Any]:
    """Run a plan once on CUDA tensors (parity on the GPU); returns the outputs as fp32 numpy arrays."""
    import tensorrt as trt
    import torch

    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(plan.read_bytes())
    if engine is None:
        raise RuntimeError(f"cannot deserialize {plan}")
    context = engine.create_execution_context()
    keep = {}
    for name, value in feeds.items():
        dtype = _torch_dtype(torch, trt.nptype(engine.get_tensor_dtype(name)))
        tensor = value.to("cuda", dtype).contiguous()
        keep[name] = tensor
        context.set_input_shape(name, tuple(tensor.shape))
        context.set_tensor_address(name, tensor.data_ptr())
    results = []
    for name in outputs:
        dtype = _torch_dtype(torch, trt.nptype(engine.get_tensor_dtype(name)))
        out = torch.empty(tuple(context.get_tensor_shape(name)), dtype=dtype, device="cuda")
        context.set_tensor_address(name, out.data_ptr())
        results.append(out)
    stream = torch.cuda.current_stream()
    if not context.execute_async_v3(stream.cuda_stream):
        raise RuntimeError("TensorRT execution failed")
    stream.synchronize()
    return [r.float().cpu().numpy() for r in results]


def _torch_dtype(torch: Any, np_dtype: Any) -> Any:
    import numpy as np

    table = {
        np.dtype(np.float32): torch.float32,
        np.dtype(np.float16): torch.float16,
        np.dtype(np.int32): torch.int32,
        np.dtype(np.int64): torch.int64,
        np.dtype(np.bool_): torch.bool,
    }
    return table[np.dtype(np_dtype)]
