"""What an engine is, as the operator, the builder and the predictors all read it.

The cache key (:func:`engine_key`): the operator computes it to find or build an engine, the
builder to store one. An engine is reusable across pipelines and revisions when everything that
shapes its bytes is equal: weights (base model and fused LoRAs), image shapes, precision, batch
profile, the GPU it was tuned on, and the TensorRT version. Anything else (lanes, autoscaling,
rollout) must not change the key.

The rest is the layout the builder writes and the predictors load: the manifest's file name, the
UNet graph's input and output names, the fallback switch for CUDA-less nodes, and the build Job's
exit statuses (the operator's Job fails fast on :data:`EXIT_USAGE`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

#: File in an engine directory that lists its engines (the builder writes it, predictors read it).
MANIFEST = "manifest.json"
#: The UNet graph's inputs, in the order the ONNX export and the TensorRT bindings use, and its output.
UNET_INPUTS = ("sample", "timestep", "encoder_hidden_states", "text_embeds", "time_ids")
UNET_OUTPUT = "out_sample"
#: Set on development nodes without CUDA (``planet dev up`` sets it): a TensorRT spec's build Job then
#: writes ONNX Runtime engines under the operator's key, their manifest says so (``fallback``), and the
#: generate predictor serves them, warning in its log. Unset, TensorRT without CUDA is an error.
FALLBACK_ENV = "PLANET_ENGINE_FALLBACK"
#: Build exit status for bad flags or inputs, or a request this machine cannot build (no CUDA, no
#: TensorRT): retrying the same Job will not help.
EXIT_USAGE = 2
#: Build exit status when the build ran and failed (parity outside tolerance, a component failed).
EXIT_FAILED = 1
#: Bump when the builder's output layout changes, so old cache entries are not mistaken for new ones.
LAYOUT_VERSION = 1


def engine_key(
    *,
    base_uri: str,
    base_revision: str | None,
    loras: Sequence[Mapping[str, Any]],
    width: int,
    height: int,
    backend: str,
    precision: str,
    batch_sizes: Sequence[int],
    gpu_product: str | None,
    tensorrt_version: str | None,
    upscaler_uris: Sequence[str] = (),
) -> str:
    """A stable sha256 hex digest of everything an engine's bytes depend on."""
    material = {
        "layout": LAYOUT_VERSION,
        "base": {"uri": base_uri, "revision": base_revision},
        # Only fused LoRAs are baked into engines; order matters for fusion, so it is kept.
        "loras": [
            {"uri": str(lora["uri"]), "scale": float(lora.get("scale", 1.0))}
            for lora in loras
            if lora.get("fuse", True)
        ],
        "shape": [int(width), int(height)],
        "backend": backend,
        "precision": precision,
        "batch_sizes": sorted({int(b) for b in batch_sizes}),
        # ONNX Runtime and torch engines are portable; TensorRT plans are tied to the GPU and version.
        "gpu": gpu_product if backend == "tensorrt" else None,
        "tensorrt": tensorrt_version if backend == "tensorrt" else None,
        "upscalers": list(upscaler_uris),
    }
    blob = json.dumps(material, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()
