"""Torch ▶ ONNX with dynamic batch axes, written atomically into the cache entry.

Graphs over 2 GiB (SDXL's UNet is 10 GiB in fp32) cannot live in one protobuf: their weights go to
one ``<name>.onnx.data`` file beside the graph, which TensorRT's parser and ONNX Runtime both read.
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import torch

from planet_build.components import Component

#: Opset 17 has LayerNormalization and is read by TensorRT 8.6+ and ONNX Runtime 1.14+.
DEFAULT_OPSET = 17


def export(component: Component, staging: Path, target: Path, *, opset: int = DEFAULT_OPSET) -> list[Path]:
    """Export ``component`` to ``target`` (via the ``staging`` folder); return the files written."""
    import onnx

    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    raw = staging / "model.onnx"
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape asserts: parity checks the graph
        torch.onnx.export(
            component.module,
            component.example(),
            str(raw),
            input_names=list(component.input_names),
            output_names=list(component.output_names),
            dynamic_axes=component.dynamic_axes,
            opset_version=opset,
            dynamo=False,
        )
    written = [target]
    if len(list(staging.iterdir())) > 1:
        # The exporter spilled weights into one file per tensor: gather them into a single data file.
        model = onnx.load(str(raw), load_external_data=True)
        data = target.with_name(target.name + ".data")
        final = staging / "final"
        final.mkdir()
        onnx.save_model(
            model,
            str(final / target.name),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=data.name,
        )
        os.replace(final / data.name, data)
        os.replace(final / target.name, target)
        written.append(data)
    else:
        os.replace(raw, target)
    shutil.rmtree(staging, ignore_errors=True)
    return written


def external_data(path: Path) -> Path | None:
    """The ``.data`` file beside a large graph, if it has one."""
    data = path.with_name(path.name + ".data")
    return data if data.is_file() else None
