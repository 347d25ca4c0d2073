"""The ``tiny`` upscaler preset: a small Real-ESRGAN Compact (SRVGGNetCompact) with seeded random weights.

Compact is plain 3x3 convolutions plus a pixel shuffle, the output being the nearest-neighbour upsample
plus the body's residual. With small weights the "upscaled" image stays close to the input, which keeps
tests readable, and its receptive field is tiny (``NUM_CONV + 2`` pixels each side) so tiling is exact
wherever a tile has that much context. spandrel detects it from its state dict keys like a real one.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import save_file
from spandrel.architectures.Compact import Compact

NAME = "tiny-upscaler"
#: Bumped when the architecture changes so stale checkpoints are rebuilt, not reused.
VERSION = "1"
SEED = 0
NUM_FEAT = 16
NUM_CONV = 4
#: Residual weights are scaled down so random weights add a faint texture, not noise that swamps the image.
_WEIGHT_SCALE = 0.1


def ensure(root: Path, *, scale: int = 2) -> Path:
    """Write the tiny checkpoint for ``scale`` under ``root`` once; return the ``.safetensors`` path."""
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    target = root / f"{NAME}-v{VERSION}-x{scale}.safetensors"
    if target.exists():
        return target
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f".{target.name}.{os.getpid()}"
    save_file(
        build_state_dict(scale=scale),
        str(staging),
        metadata={"preset": NAME, "version": VERSION, "seed": str(SEED), "scale": str(scale)},
    )
    # rename is atomic on one filesystem; a concurrent writer wrote identical weights (same seed).
    os.replace(staging, target)
    return target


def build_state_dict(*, scale: int = 2) -> dict[str, torch.Tensor]:
    """The seeded random weights for a ``scale``x Compact model."""
    torch.manual_seed(SEED + scale)
    model = Compact(num_in_ch=3, num_out_ch=3, num_feat=NUM_FEAT, num_conv=NUM_CONV, upscale=scale)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith(".weight") and tensor.dim() == 4:
                tensor.mul_(_WEIGHT_SCALE)
    return {k: v.contiguous() for k, v in model.state_dict().items()}


def describe(path: Path) -> dict[str, str]:
    """The metadata written with a preset checkpoint (empty for foreign files)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata() or {}
    return dict(meta)
