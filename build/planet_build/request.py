"""What to build: the validated flags, and the cache key they give."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

from planet_build.errors import UsageError
from planet_contracts import engines

BACKENDS = ("onnxruntime", "tensorrt")
#: Precisions each compiled backend can build; mirrors the operator's spec table (a test keeps them equal).
PRECISIONS: dict[str, tuple[str, ...]] = {
    "tensorrt": ("fp32", "fp16", "int8", "fp8"),
    "onnxruntime": ("fp32", "fp16"),
}
#: The ``base_uri`` the key is made of when the tiny preset stands in for a real model.
PRESET_URI = "preset:tiny"
MAX_BATCH = 64
#: SDXL's VAE works in 8x8 pixel blocks; other sizes cannot be represented by a latent.
PIXEL_MULTIPLE = 8


@dataclasses.dataclass(frozen=True, kw_only=True)
class Lora:
    """A LoRA fused into the weights before export."""

    uri: str
    scale: float = 1.0


@dataclasses.dataclass(frozen=True, kw_only=True)
class BuildRequest:
    """One engine build, as the operator's Job asks for it."""

    model: str | None
    revision: str | None = None
    preset: str | None = None
    preset_dir: Path | None = None
    loras: tuple[Lora, ...] = ()
    backend: str = "onnxruntime"
    precision: str = "fp32"
    width: int = 1024
    height: int = 1024
    batch_sizes: tuple[int, ...] = (1,)
    cache_dir: Path = Path("/mnt/engines")
    expect_key: str | None = None
    gpu_product: str | None = None
    upscalers: tuple[str, ...] = ()
    opset: int = 17
    ort_optimization: str = "basic"
    workspace_gib: float = 8.0
    keep_onnx: bool = False
    lock_timeout: float = 6 * 3600.0
    #: Pre-quantized (Q/DQ) graphs for int8/fp8 TensorRT builds, ``<dir>/<component>.onnx``.
    quantized_onnx: Path | None = None
    #: Where the Job's storage initializer put each URI's files; the URI stays the key's identity.
    fetched: tuple[tuple[str, Path], ...] = ()

    @property
    def base_uri(self) -> str:
        """The model identity the key is made of."""
        return self.model if self.model is not None else PRESET_URI

    def key(self, tensorrt_version: str | None) -> str:
        """The cache key, computed by the one function the operator uses too."""
        return engines.engine_key(
            base_uri=self.base_uri,
            base_revision=self.revision,
            loras=[{"uri": lora.uri, "scale": lora.scale} for lora in self.loras],
            width=self.width,
            height=self.height,
            backend=self.backend,
            precision=self.precision,
            batch_sizes=self.batch_sizes,
            gpu_product=self.gpu_product,
            tensorrt_version=tensorrt_version,
            upscaler_uris=self.upscalers,
        )

    def inputs(self) -> dict[str, object]:
        """The request as written into the manifest."""
        return {
            "model": self.base_uri,
            "revision": self.revision,
            "loras": [{"uri": lora.uri, "scale": lora.scale} for lora in self.loras],
            "width": self.width,
            "height": self.height,
            "precision": self.precision,
            "batch_sizes": sorted(set(self.batch_sizes)),
            "gpu_product": self.gpu_product,
            "upscalers": list(self.upscalers),
        }


def upscaler_component(uri: str) -> str:
    """The manifest name of an upscaler: the upscaler predictor looks it up the same way."""
    return f"upscaler-{hashlib.sha256(uri.encode()).hexdigest()[:12]}"


def parse_lora(value: str) -> Lora:
    """``URI[:SCALE]`` ▶ :class:`Lora`; the scale is whatever follows the last colon when it is a number."""
    head, sep, tail = value.rpartition(":")
    if sep and head and not tail.startswith("//"):
        try:
            return Lora(uri=head, scale=float(tail))
        except ValueError:
            pass
    return Lora(uri=value)


def parse_batch_sizes(value: str) -> tuple[int, ...]:
    """``1,2,4`` ▶ ``(1, 2, 4)``, sorted; each between 1 and :data:`MAX_BATCH`, no repeats."""
    try:
        sizes = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"--batch-sizes must be comma-separated integers, got {value!r}") from None
    if not sizes:
        raise UsageError("--batch-sizes needs at least one size")
    if len(set(sizes)) != len(sizes):
        raise UsageError(f"--batch-sizes has repeats: {value!r}")
    if any(not 1 <= size <= MAX_BATCH for size in sizes):
        raise UsageError(f"--batch-sizes must each be between 1 and {MAX_BATCH}, got {value!r}")
    return tuple(sorted(sizes))


def validate(request: BuildRequest) -> None:
    """Raise :class:`UsageError` for a request no build can satisfy (before any slow work)."""
    if (request.model is None) == (request.preset is None):
        raise UsageError("give exactly one of --model URI or --preset tiny")
    if request.backend not in BACKENDS:
        raise UsageError(f"--backend must be one of {', '.join(BACKENDS)}, got {request.backend!r}")
    allowed = PRECISIONS[request.backend]
    if request.precision not in allowed:
        raise UsageError(
            f"--precision {request.precision} is not available for {request.backend}"
            f" (choose {', '.join(allowed)})"
        )
    for name, value in (("--width", request.width), ("--height", request.height)):
        if not 64 <= value <= 4096 or value % PIXEL_MULTIPLE:
            raise UsageError(f"{name} must be a multiple of {PIXEL_MULTIPLE} in 64..4096, got {value}")
    for lora in request.loras:
        if not lora.uri:
            raise UsageError("--lora needs a URI")
        if not -10.0 <= lora.scale <= 10.0:
            raise UsageError(f"--lora {lora.uri}: scale {lora.scale} is outside -10..10")
    if len(set(request.upscalers)) != len(request.upscalers):
        raise UsageError("--upscaler repeats a URI; each checkpoint is built once")
    if request.expect_key is not None and (
        len(request.expect_key) != 64 or any(c not in "0123456789abcdef" for c in request.expect_key)
    ):
        raise UsageError(f"--expect-key must be a sha256 hex digest, got {request.expect_key!r}")
    if request.ort_optimization not in ("none", "basic", "extended"):
        raise UsageError(
            f"--ort-optimization must be none, basic or extended, got {request.ort_optimization!r}"
        )
    if request.quantized_onnx is not None and request.precision not in ("int8", "fp8"):
        raise UsageError("--quantized-onnx is for --precision int8 or fp8 (TensorRT)")
    if request.quantized_onnx is not None and not request.quantized_onnx.is_dir():
        raise UsageError(f"--quantized-onnx {request.quantized_onnx} is not a directory")
    if request.workspace_gib <= 0:
        raise UsageError("--workspace-gib must be positive")


def parse_fetched(value: str) -> tuple[str, Path]:
    """``URI=PATH`` ▶ (URI, PATH); the URI itself may hold ``=`` only before its scheme's ``://``."""
    uri, sep, path = value.rpartition("=")
    if not sep or not uri or not path:
        raise UsageError(f"--fetched {value!r}: expected URI=PATH")
    return uri, Path(path)
