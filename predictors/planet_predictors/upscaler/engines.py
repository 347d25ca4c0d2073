"""What runs each stage: upscalers (spandrel/torch or ONNX Runtime), the img2img detail pass, PIL resize."""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import spandrel
import torch
from PIL import Image

from planet_predictors.backends.base import Backend, Stop, check_stop, step_callback
from planet_predictors.serving.errors import BackendUnavailable
from planet_predictors.upscaler import stages as st
from planet_predictors.upscaler import tiling

log = logging.getLogger(__name__)
#: Input and output names of an upscaler ONNX graph (NCHW float32 in 0..1, dynamic batch/height/width).
ONNX_INPUT, ONNX_OUTPUT = "image", "upscaled"


@dataclasses.dataclass(frozen=True)
class Tiling:
    """Tile edge and overlap in input pixels (``tile <= 0``: untiled) and tiles per forward."""

    tile: int = 512
    overlap: int = 32
    batch: int = 4


class Upscaler(abc.ABC):
    """An image-to-image model with an integer ``scale``; ``forward`` maps NCHW 0..1 ▶ NCHW 0..1."""

    name = "base"
    scale: int = 1

    @abc.abstractmethod
    def forward(self, batch: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """Upscale a float32 NCHW batch; returns float32 NCHW."""

    def tiles(self, tiles: Sequence[tiling.Tile]) -> list[tiling.F32]:
        """:data:`tiling.Forward` over uint8 HWC tiles."""
        batch = np.stack([t.pixels for t in tiles]).transpose(0, 3, 1, 2).astype(np.float32) / 255.0
        out = np.clip(self.forward(batch), 0.0, 1.0).transpose(0, 2, 3, 1)
        return list(np.ascontiguousarray(out, dtype=np.float32))


def load_checkpoint(path: Path) -> spandrel.ImageModelDescriptor[torch.nn.Module]:
    """An upscaler checkpoint through spandrel (any ESRGAN-family file, the tiny preset's too).

    Raises ``TypeError`` when the file is a model spandrel knows that is not image-to-image.
    """
    descriptor = spandrel.ModelLoader().load_from_file(str(path))
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise TypeError(f"{path} is a {type(descriptor).__name__}, not an image-to-image model")
    return descriptor


class TorchUpscaler(Upscaler):
    """A spandrel ``ImageModelDescriptor`` on a torch device."""

    name = "torch"

    def __init__(self, descriptor: Any, *, device: torch.device, half: bool = False) -> None:
        self.device = device
        self.dtype = torch.float16 if half and descriptor.supports_half else torch.float32
        self.model: torch.nn.Module = descriptor.model.eval().to(device, self.dtype)
        self.scale = int(descriptor.scale)

    def forward(self, batch: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """Run the module under ``inference_mode``."""
        with torch.inference_mode():
            x = torch.from_numpy(batch).to(self.device, self.dtype)
            y: torch.Tensor = self.model(x)
            return np.asarray(y.to("cpu", torch.float32).numpy())


class OrtUpscaler(Upscaler):
    """An ONNX graph with input ``image`` and output ``upscaled``; its scale is probed at load."""

    name = "onnxruntime"

    def __init__(self, path: Path, *, device: torch.device) -> None:
        import onnxruntime as ort

        providers = ["CPUExecutionProvider"]
        if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session: Any = ort.InferenceSession(str(path), providers=providers)
            probe = self.forward(np.zeros((1, 3, 16, 16), dtype=np.float32))
        except Exception as exc:  # ORT raises its own untyped errors
            raise BackendUnavailable(f"cannot run upscaler graph {path}: {exc}") from exc
        if probe.shape[2] % 16 or probe.shape[2] != probe.shape[3]:
            raise BackendUnavailable(
                f"{path}: a 16x16 input gave {tuple(probe.shape)}, not a square multiple"
            )
        self.scale = probe.shape[2] // 16

    def forward(self, batch: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """Run the session."""
        (out,) = self.session.run([ONNX_OUTPUT], {ONNX_INPUT: np.ascontiguousarray(batch, dtype=np.float32)})
        return np.asarray(out, dtype=np.float32)


@dataclasses.dataclass(frozen=True)
class Job:
    """One image going through the chain: its pixels (HWC uint8 RGB), prompt and seed."""

    pixels: tiling.U8
    prompt: str
    seed: int


class DetailPass:
    """SDXL img2img over tiles (pixel space, sides multiples of 8) with the same feathered blend."""

    def __init__(self, backend: Backend, *, guidance: float, negative_prompt: str) -> None:
        self.backend = backend
        self.guidance = guidance
        self.negative_prompt = negative_prompt
        self._pipe: Any = None

    def load(self) -> None:
        """Load SDXL through the generate backend (LoRAs fused, scheduler set), reuse its parts."""
        import diffusers

        # The img2img pipeline moves its VAE to fp32 and back on every call; diffusers warns each time.
        logging.getLogger("diffusers.models.modeling_utils").setLevel(logging.ERROR)
        self.backend.load()
        base: Any = getattr(self.backend, "pipe", None)
        if base is None:
            raise BackendUnavailable(f"the {self.backend.name} backend exposes no diffusers pipeline")
        pipeline_cls: Any = diffusers.StableDiffusionXLImg2ImgPipeline  # diffusers is untyped
        self._pipe = pipeline_cls(**base.components)
        self._pipe.set_progress_bar_config(disable=True)

    def run(
        self, jobs: Sequence[Job], stage: st.Img2Img, tiles: Tiling, *, stop: Stop | None = None
    ) -> list[tiling.U8]:
        """Denoise every image at ``stage.strength``; tiles of all images share pipeline calls.

        ``stop`` is polled before every tile batch and after every denoising step.
        """
        if self._pipe is None:
            raise RuntimeError("detail pass not loaded")
        steps = stage.schedule_steps
        # Tiles must be multiples of 8 (the VAE's factor); pad images up to that, crop after.
        tile = tiles.tile - tiles.tile % 8 if tiles.tile > 0 else 0
        overlap = tiles.overlap - tiles.overlap % 8
        padded = [_pad8(j.pixels) for j in jobs]
        # A pipeline view with a fresh scheduler per run: schedulers keep per-run state.
        scheduler = self._pipe.scheduler
        pipe = type(self._pipe)(
            **{**self._pipe.components, "scheduler": type(scheduler).from_config(scheduler.config)}
        )
        pipe.set_progress_bar_config(disable=True)

        def forward(batch: Sequence[tiling.Tile]) -> list[tiling.F32]:
            images = np.stack([t.pixels for t in batch]).astype(np.float32) / 255.0
            generators = [
                torch.Generator("cpu").manual_seed(_tile_seed(jobs[t.image].seed, t.index)) for t in batch
            ]
            with torch.inference_mode():
                result = pipe(
                    prompt=[jobs[t.image].prompt for t in batch],
                    negative_prompt=[self.negative_prompt] * len(batch) if self.negative_prompt else None,
                    image=images,
                    strength=stage.strength,
                    num_inference_steps=steps,
                    guidance_scale=self.guidance,
                    generator=generators,
                    output_type="np",
                    callback_on_step_end=step_callback(stop),
                ).images
            return list(np.asarray(result, dtype=np.float32))

        outputs = tiling.run(
            padded, forward, scale=1, tile=tile, overlap=overlap, batch=tiles.batch, check=_checker(stop)
        )
        return [
            np.ascontiguousarray(out[: j.pixels.shape[0], : j.pixels.shape[1]])
            for out, j in zip(outputs, jobs, strict=True)
        ]


def _pad8(pixels: tiling.U8) -> tiling.U8:
    h, w = pixels.shape[:2]
    ph, pw = -h % 8, -w % 8
    if not ph and not pw:
        return pixels
    return np.pad(pixels, ((0, ph), (0, pw), (0, 0)), mode="edge")


def _tile_seed(seed: int, index: int) -> int:
    """A per-tile seed: tiles must not share a noise pattern, yet stay reproducible per request."""
    digest = hashlib.sha256(f"{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def resize(pixels: tiling.U8, stage: st.Resize) -> tiling.U8:
    """PIL resize with the stage's filter."""
    image = Image.fromarray(pixels).resize((stage.width, stage.height), st.FILTERS[stage.filter])
    return np.asarray(image, dtype=np.uint8)


def _checker(stop: Stop | None) -> Callable[[], None] | None:
    """A ``tiling.run`` check that raises ``Cancelled`` once ``stop()``."""
    if stop is None:
        return None
    return lambda: check_stop(stop, "before a tile")


def upscale(
    upscaler: Upscaler,
    images: Sequence[tiling.U8],
    stage: st.Upscale,
    tiles: Tiling,
    *,
    stop: Stop | None = None,
) -> list[tiling.U8]:
    """Tiled upscale of several images at once; a model whose scale is not the factor is resized to it."""
    outputs = tiling.run(
        images,
        upscaler.tiles,
        scale=upscaler.scale,
        tile=tiles.tile,
        overlap=tiles.overlap,
        batch=tiles.batch,
        check=_checker(stop),
    )
    if upscaler.scale == stage.factor:
        return outputs
    fixed: list[tiling.U8] = []
    for image, out in zip(images, outputs, strict=True):
        size = (image.shape[1] * stage.factor, image.shape[0] * stage.factor)
        fixed.append(np.asarray(Image.fromarray(out).resize(size, Image.Resampling.LANCZOS), dtype=np.uint8))
    return fixed


@dataclasses.dataclass
class StageResult:
    """Per-stage record returned to clients: type, output size, milliseconds (shared by the batch)."""

    type: str
    width: int
    height: int
    ms: float

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape in ``predictions[].stages``."""
        return {"type": self.type, "width": self.width, "height": self.height, "ms": round(self.ms, 2)}


class Chain:
    """Runs resolved stages over a batch of jobs with the loaded upscalers and detail pass."""

    def __init__(
        self,
        *,
        upscalers: Mapping[tuple[str, int], Upscaler],
        detail: DetailPass | None,
        tiles: Tiling,
    ) -> None:
        self.upscalers = dict(upscalers)
        self.detail = detail
        self.tiles = tiles

    def supports(self, stage: st.Stage) -> str | None:
        """Why this server cannot run ``stage`` (``None`` when it can)."""
        if isinstance(stage, st.Upscale) and stage.key not in self.upscalers:
            loaded = ", ".join(f"x{f} {u}" for u, f in self.upscalers) or "none"
            return f"no upscaler loaded for x{stage.factor} {stage.uri}; loaded: {loaded}"
        if isinstance(stage, st.Img2Img) and self.detail is None:
            return "this server has no img2img detail pass (its config has no img2img stage)"
        return None

    def run(
        self, jobs: Sequence[Job], chain: Sequence[st.Stage], *, stop: Stop | None = None
    ) -> tuple[list[tiling.U8], list[list[StageResult]]]:
        """Every stage in order over every image; returns the images and each one's stage records.

        ``stop`` is polled between stages, tiles and denoising steps (raises ``Cancelled``).
        """
        images = [j.pixels for j in jobs]
        records: list[list[StageResult]] = [[] for _ in jobs]
        for i, stage in enumerate(chain):
            check_stop(stop, f"before stage {i} ({stage.type})")
            started = time.perf_counter()
            if isinstance(stage, st.Upscale):
                images = upscale(self.upscalers[stage.key], images, stage, self.tiles, stop=stop)
            elif isinstance(stage, st.Resize):
                images = [resize(im, stage) for im in images]
            else:
                if self.detail is None:
                    raise RuntimeError("img2img stage without a detail pass")
                current = [dataclasses.replace(j, pixels=im) for j, im in zip(jobs, images, strict=True)]
                images = self.detail.run(current, stage, self.tiles, stop=stop)
            ms = (time.perf_counter() - started) * 1000
            for record, image in zip(records, images, strict=True):
                record.append(StageResult(stage.type, image.shape[1], image.shape[0], ms))
        return images, records
