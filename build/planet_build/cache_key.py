"""The engine cache key: one function, used by the operator (to find or build) and the builder (to store).

An engine is reusable across pipelines and revisions when everything that shapes its bytes is equal:
weights (base model and fused LoRAs), image shapes, precision, batch profile, the GPU it was tuned
on, and the TensorRT version. Anything else (lanes, autoscaling, rollout) must not change the key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

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
