"""ONNX Runtime engines: the exported graph, converted to fp16 where asked and optimized offline.

Offline optimization is limited to levels whose output is valid on every execution provider
("basic": constant folding, redundant node removal; "extended" adds fusions ORT's CPU and CUDA
providers both run). Layout optimizations are hardware-specific and left to session creation.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from planet_build import onnx_export

#: Above this a graph's weights go to an external data file (protobuf's limit is 2 GiB).
EXTERNAL_THRESHOLD = 1 << 30


def build(source: Path, target: Path, staging: Path, *, fp16: bool, optimization: str) -> list[Path]:
    """Write the served graph for ``source`` to ``target``; return the files written."""
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    current = source
    if fp16:
        current = _to_fp16(current, staging / "fp16.onnx")
    if optimization != "none":
        current = _optimize(current, staging / "optimized.onnx", level=optimization)
    written = [target]
    data = onnx_export.external_data(current)
    if current == source:
        # Nothing to change: a copy keeps the exported graph for resumes and for TensorRT.
        shutil.copyfile(source, staging / "copy.onnx")
        if data is not None:
            shutil.copyfile(data, staging / "copy.onnx.data")
        current, data = staging / "copy.onnx", onnx_export.external_data(staging / "copy.onnx")
    if data is not None:
        # The graph names its data file; keep that name next to the final graph.
        final = _rewrite_location(current, target)
        os.replace(final.with_name(final.name + ".data"), target.with_name(target.name + ".data"))
        os.replace(final, target)
        written.append(target.with_name(target.name + ".data"))
    else:
        os.replace(current, target)
    shutil.rmtree(staging, ignore_errors=True)
    return written


def _to_fp16(source: Path, target: Path) -> Path:
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    model = onnx.load(str(source), load_external_data=True)
    _constants_to_initializers(model)
    # fp32 inputs and outputs stay: callers feed float32 whatever the engine's precision. Resize stays
    # fp32 because its scales must be float32 (upscalers' nearest-neighbour path); the converter keeps a
    # blocked node's initializers fp32 but not its Constant nodes, hence the conversion to initializers.
    converted = convert_float_to_float16(
        model,
        keep_io_types=True,
        # Casts around blocked nodes need inferred types; ONNX shape inference cannot take > 2 GiB protos.
        disable_shape_infer=source.stat().st_size > EXTERNAL_THRESHOLD
        or onnx_export.external_data(source) is not None,
        op_block_list=[*DEFAULT_OP_BLOCK_LIST, "Resize"],
    )
    _save(converted, target)
    return target


def _constants_to_initializers(model: Any) -> None:
    """Turn tensor-valued Constant nodes into initializers (the fp16 converter respects those)."""
    keep = []
    for node in model.graph.node:
        value = next((a for a in node.attribute if a.name == "value"), None)
        if node.op_type == "Constant" and value is not None and len(node.attribute) == 1:
            tensor = value.t
            tensor.name = node.output[0]
            model.graph.initializer.append(tensor)
        else:
            keep.append(node)
    del model.graph.node[:]
    model.graph.node.extend(keep)


def _optimize(source: Path, target: Path, *, level: str) -> Path:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    }[level]
    options.optimized_model_filepath = str(target)
    options.log_severity_level = 3
    if onnx_export.external_data(source) is not None or source.stat().st_size > EXTERNAL_THRESHOLD:
        options.add_session_config_entry(
            "session.optimized_model_external_initializers_file_name", target.name + ".data"
        )
        options.add_session_config_entry(
            "session.optimized_model_external_initializers_min_size_in_bytes", "1024"
        )
    ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
    return target


def _save(model: Any, target: Path) -> None:
    import onnx

    try:
        large = int(model.ByteSize()) > EXTERNAL_THRESHOLD  # type: ignore[attr-defined]
    except Exception:  # protobuf cannot even size a message past 2 GiB
        large = True
    onnx.save_model(
        model,
        str(target),
        save_as_external_data=large,
        all_tensors_to_one_file=True,
        location=target.name + ".data",
    )


def _rewrite_location(source: Path, target: Path) -> Path:
    """Re-save a graph with external data so its data file is named after ``target``."""
    import onnx

    model = onnx.load(str(source), load_external_data=True)
    out_dir = source.parent / "final"
    out_dir.mkdir(exist_ok=True)
    out = out_dir / target.name
    onnx.save_model(
        model,
        str(out),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=target.name + ".data",
    )
    return out
