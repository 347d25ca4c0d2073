"""The stage chain (x2 ▶ resize ▶ img2img ▶ x2 ▶ resize) as resolved, hashable steps."""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

from PIL import Image

from planet_contracts.api.spec import MAX_OUTPUT_SIZE, PlanetPipelineSpec, UpscaleStage
from planet_predictors.serving.errors import BackendUnavailable

#: Checkpoint suffixes looked for in an upscaler's mount folder, in this order of preference.
CHECKPOINT_SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt")
FILTERS: dict[str, Image.Resampling] = {
    "lanczos": Image.Resampling.LANCZOS,
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
}


@dataclasses.dataclass(frozen=True)
class Upscale:
    """Run the ESRGAN-family model at ``uri`` (its output resized to ``factor`` if its scale differs)."""

    factor: int
    uri: str
    type: Literal["upscale"] = "upscale"

    @property
    def key(self) -> tuple[str, int]:
        """Which loaded upscaler runs this stage."""
        return (self.uri, self.factor)


@dataclasses.dataclass(frozen=True)
class Resize:
    """Resize to an exact size with a PIL filter."""

    width: int
    height: int
    filter: str = "lanczos"
    type: Literal["resize"] = "resize"


@dataclasses.dataclass(frozen=True)
class Img2Img:
    """SDXL img2img detail pass with the request's prompt and seed."""

    strength: float
    steps: int
    type: Literal["img2img"] = "img2img"

    @property
    def schedule_steps(self) -> int:
        """The scheduler's step count: img2img runs ``int(steps * strength)``; never let that be 0."""
        return max(self.steps, math.ceil(1.0 / self.strength))

    @property
    def denoising_steps(self) -> int:
        """The denoising steps diffusers runs (``get_timesteps`` of its img2img pipeline)."""
        steps = self.schedule_steps
        return min(int(steps * self.strength), steps)


Stage = Upscale | Resize | Img2Img


def sha12(uri: str) -> str:
    """Same mapping as ``planet_operator.builders.names.upscaler_dir``: the mount folder's name."""
    return hashlib.sha256(uri.encode()).hexdigest()[:12]


def resolve(
    stages: Sequence[UpscaleStage], *, default_model: str | None, default_steps: int
) -> tuple[Stage, ...]:
    """Spec stages ▶ steps; an upscale stage without a model uses ``default_model``."""
    out: list[Stage] = []
    for i, stage in enumerate(stages):
        if stage.type == "upscale":
            uri = stage.model.uri if stage.model is not None else default_model
            if uri is None or stage.factor is None:
                raise ValueError(f"stages[{i}]: an upscale stage needs factor and a model")
            out.append(Upscale(factor=stage.factor, uri=uri))
        elif stage.type == "resize":
            if stage.width is None or stage.height is None:  # the spec's rules refuse this first
                raise ValueError(f"stages[{i}]: a resize stage needs width and height")
            out.append(Resize(width=stage.width, height=stage.height, filter=stage.filter or "lanczos"))
        else:
            if stage.strength is None:
                raise ValueError(f"stages[{i}]: an img2img stage needs strength")
            out.append(Img2Img(strength=stage.strength, steps=stage.steps or default_steps))
    return tuple(out)


def from_spec(spec: PlanetPipelineSpec) -> tuple[Stage, ...]:
    """The configured chain; a pipeline without an ``upscale`` section cannot be served."""
    if spec.upscale is None:
        raise BackendUnavailable("the pipeline config has no upscale section: nothing to serve")
    default = spec.upscale.model.uri if spec.upscale.model is not None else None
    return resolve(spec.upscale.stages, default_model=default, default_steps=spec.generation.steps)


def sizes(stages: Sequence[Stage], width: int, height: int) -> list[tuple[int, int]]:
    """The (width, height) after each stage, for an input of ``width`` x ``height``."""
    out: list[tuple[int, int]] = []
    for stage in stages:
        if isinstance(stage, Upscale):
            width, height = width * stage.factor, height * stage.factor
        elif isinstance(stage, Resize):
            width, height = stage.width, stage.height
        out.append((width, height))
    return out


def too_large(stages: Sequence[Stage], width: int, height: int) -> str | None:
    """Why this input would grow past :data:`MAX_OUTPUT_SIZE` at some stage, or ``None``."""
    for i, (w, h) in enumerate(sizes(stages, width, height)):
        if max(w, h) > MAX_OUTPUT_SIZE:
            return (
                f"{width}x{height} becomes {w}x{h} at stage {i} ({stages[i].type});"
                f" the limit is {MAX_OUTPUT_SIZE} per side"
            )
    return None


def cost(stages: Sequence[Stage], pixels: int) -> int:
    """Device work of one image of ``pixels`` through ``stages``, in pixel-steps.

    An img2img stage costs its pixels x the denoising steps it runs, an upscale stage its input
    pixels (one forward), a resize nothing worth counting. Tile overlap is left out: the figure
    is for comparing requests, not for predicting seconds.
    """
    total = 0
    for stage in stages:
        if isinstance(stage, Upscale):
            total += pixels
            pixels *= stage.factor**2
        elif isinstance(stage, Resize):
            pixels = stage.width * stage.height
        else:
            total += pixels * stage.denoising_steps
    return total


def cost_limits(spec: PlanetPipelineSpec, chain: Sequence[Stage], *, max_input_pixels: int) -> dict[str, int]:
    """Per lane, the most pixel-steps one image may cost.

    That is what the pipeline's own chain costs on the largest input accepted, or one generation
    at the lane's steps, whichever is more: the configured chain always fits, a per-request chain
    may not ask for more.
    """
    generation = spec.generation
    own = cost(chain, max_input_pixels)
    lanes: Mapping[str, int] = {name: lane.steps for name, lane in spec.serving.lanes.items()}
    return {name: max(own, generation.width * generation.height * steps) for name, steps in lanes.items()}


def checkpoint(root: Path, uri: str) -> Path:
    """The checkpoint file for ``uri``: ``<root>/<sha12(uri)>/`` (first match), or a local path."""
    folder = root / sha12(uri)
    if uri.startswith("pvc://"):
        # KServe mounts a pvc:// URI's whole claim there; the URI's path is the checkpoint's place.
        inner = uri.removeprefix("pvc://").partition("/")[2].strip("/")
        if inner and (folder / inner).is_file():
            return folder / inner
        folder = folder / inner if inner else folder
    if folder.is_dir():
        for suffix in CHECKPOINT_SUFFIXES:
            found = sorted(p for p in folder.rglob(f"*{suffix}") if p.is_file())
            if found:
                return found[0]
        raise BackendUnavailable(
            f"{folder} (upscaler {uri}) holds no {'/'.join(CHECKPOINT_SUFFIXES)} checkpoint"
        )
    local = Path(uri.removeprefix("file://"))
    if uri.startswith(("/", "file://")) and local.is_file():
        return local
    raise BackendUnavailable(
        f"upscaler {uri} is not mounted: expected {folder}/ (KServe storageUris mount it there)"
    )
