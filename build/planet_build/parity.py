"""Parity: an exported graph must compute what the torch module computes, on the same fixed inputs.

ONNX Runtime runs on the CPU everywhere, so every graph is checked here, before any engine is built.
Tolerances depend on the precision of the graph that is checked; the result goes into the manifest.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from planet_build.components import Component

#: (rtol, atol) per precision of the checked graph. fp32 graphs match to ~1e-6 on the tiny preset, ~2e-4
#: with a strong LoRA fused (large activations), so the fp32 bound leaves room for real weights;
#: half precision keeps ~3 significant digits, so its bound is loose (a wrong graph is off by O(1)).
TOLERANCES: dict[str, tuple[float, float]] = {
    "fp32": (1e-3, 1e-3),
    "fp16": (5e-2, 5e-2),
    # TensorRT runs fp32 as TF32 by default (10-bit mantissa), and fuses kernels differently.
    "engine-fp32": (1e-2, 1e-2),
    "engine-fp16": (1e-1, 1e-1),
}
#: Tolerance row for a TensorRT plan of each precision (int8/fp8 are recorded, not enforced).
ENGINE_PRECISION = {"fp32": "engine-fp32", "fp16": "engine-fp16", "int8": "engine-fp16", "fp8": "engine-fp16"}


@dataclasses.dataclass(frozen=True)
class Parity:
    """How far the graph's outputs are from torch's."""

    max_abs: float
    rtol: float
    atol: float
    passed: bool
    provider: str = "CPUExecutionProvider"

    def record(self) -> dict[str, Any]:
        """The manifest's ``parity`` object."""
        return dataclasses.asdict(self)


def reference(component: Component, inputs: Sequence[torch.Tensor]) -> list[np.ndarray[Any, Any]]:
    """The torch module's outputs (fp32, CPU)."""
    with torch.no_grad():
        out = component.module(*inputs)
    outputs = out if isinstance(out, tuple | list) else (out,)
    return [o.detach().to("cpu", torch.float32).numpy() for o in outputs]


def compare(
    expected: Sequence[np.ndarray[Any, Any]], got: Sequence[np.ndarray[Any, Any]], *, precision: str
) -> Parity:
    """Max abs error over every output, and whether all are within ``TOLERANCES[precision]``."""
    rtol, atol = TOLERANCES.get(precision, TOLERANCES["fp16"])
    if len(expected) != len(got):
        return Parity(max_abs=float("inf"), rtol=rtol, atol=atol, passed=False)
    max_abs = 0.0
    passed = True
    for want, have in zip(expected, got, strict=True):
        have = np.asarray(have, dtype=np.float32)
        if want.shape != have.shape or not np.isfinite(have).all():
            return Parity(max_abs=float("inf"), rtol=rtol, atol=atol, passed=False)
        max_abs = max(max_abs, float(np.abs(want - have).max(initial=0.0)))
        passed = passed and bool(np.allclose(have, want, rtol=rtol, atol=atol))
    return Parity(max_abs=max_abs, rtol=rtol, atol=atol, passed=passed)


def check_onnx(component: Component, path: Path, *, precision: str = "fp32") -> Parity:
    """Run ``path`` with ONNX Runtime on the CPU against the torch module on ``component.check()``."""
    import onnxruntime as ort

    inputs = component.check()
    options = ort.SessionOptions()
    options.log_severity_level = 3  # the graph's warnings (unused initializers) are not the user's problem
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feeds = {
        name: _feed(session, name, tensor) for name, tensor in zip(component.input_names, inputs, strict=True)
    }
    got = session.run(list(component.output_names), feeds)
    return compare(reference(component, inputs), got, precision=precision)


def _feed(session: Any, name: str, tensor: torch.Tensor) -> np.ndarray[Any, Any]:
    array = tensor.detach().cpu().numpy()
    kind = next(i.type for i in session.get_inputs() if i.name == name)
    # A graph converted to fp16 with fp32 I/O kept still gets fp32; one without kept I/O gets fp16.
    if kind == "tensor(float16)":
        return array.astype(np.float16)
    return array
