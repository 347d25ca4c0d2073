"""The backend interface: load once, then generate batches of same-shaped images."""

from __future__ import annotations

import abc
import dataclasses
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from planet_contracts.engines import FALLBACK_ENV, MANIFEST
from planet_predictors.serving.errors import BackendUnavailable, Cancelled

#: Polled during a batch: True once nobody waits for its results.
Stop = Callable[[], bool]


@dataclasses.dataclass(frozen=True)
class BackendSettings:
    """How to load the model."""

    model_dir: Path
    backend: str = "torch"
    device: str = "auto"
    precision: str = "fp32"
    scheduler: str = "euler"
    loras: tuple[tuple[Path, float], ...] = ()
    compile: bool = False
    engine_dir: Path | None = None


@dataclasses.dataclass(frozen=True)
class BatchParams:
    """What every image of a batch shares."""

    width: int
    height: int
    steps: int
    guidance: float


@dataclasses.dataclass(frozen=True)
class Item:
    """One image of a batch."""

    prompt: str
    negative_prompt: str
    seed: int


@dataclasses.dataclass(frozen=True)
class Generated:
    """One image and the batch's stage timings (seconds)."""

    image: Image.Image
    timings: dict[str, float]


class Backend(abc.ABC):
    """Runs on one device; ``generate`` is blocking and called from one worker thread at a time."""

    name: str = "base"

    def __init__(self, settings: BackendSettings) -> None:
        self.settings = settings

    @abc.abstractmethod
    def load(self) -> None:
        """Load weights/engines; raise :class:`BackendUnavailable` when this machine cannot run them."""

    @abc.abstractmethod
    def generate(
        self, params: BatchParams, items: Sequence[Item], *, stop: Stop | None = None
    ) -> list[Generated]:
        """Make one image per item; the same seed gives the same image whatever the batch.

        ``stop`` is polled before the work and after every denoising step: once it returns True,
        raise :class:`~planet_predictors.serving.errors.Cancelled` (see :func:`check_stop`).
        """


def check_stop(stop: Stop | None, where: str) -> None:
    """Raise :class:`Cancelled` if ``stop`` says nobody waits for this batch any more."""
    if stop is not None and stop():
        raise Cancelled(f"stopped {where}")


def step_callback(stop: Stop | None) -> Callable[..., dict[str, Any]] | None:
    """A diffusers ``callback_on_step_end`` that interrupts the denoising loop once ``stop()``."""
    if stop is None:
        return None

    def on_step_end(_pipe: Any, step: int, _timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        check_stop(stop, f"after denoising step {step + 1}")
        return kwargs

    return on_step_end


def read_manifest(engine_dir: Path | None, *, backend: str) -> dict[str, Any]:
    """Read ``engine_dir/manifest.json``: ``{"backend", "precision", "components": {name: {"path"}}}``."""
    if engine_dir is None:
        raise BackendUnavailable(f"--engine-dir is required for the {backend} backend")
    path = engine_dir / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BackendUnavailable(f"cannot read engine manifest {path}: {exc}") from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("components"), dict):
        raise BackendUnavailable(f"{path}: expected an object with components")
    if manifest.get("backend") != backend:
        raise BackendUnavailable(
            f"{path}: engines are for backend {manifest.get('backend')!r}, not {backend!r}"
        )
    return manifest


def component_path(engine_dir: Path | None, *, backend: str, component: str) -> Path:
    """Where the manifest in ``engine_dir`` says ``component``'s engine file is."""
    manifest = read_manifest(engine_dir, backend=backend)
    assert engine_dir is not None  # read_manifest refused None
    entry = manifest["components"].get(component)
    if not isinstance(entry, dict) or "path" not in entry:
        raise BackendUnavailable(f"{engine_dir / MANIFEST}: no components.{component}.path")
    return engine_dir / str(entry["path"])


def fallback_backend(backend: str, engine_dir: Path | None) -> tuple[str, str | None]:
    """The backend (and precision) to serve: ``backend``, or the fallback the engine build recorded.

    Only where :data:`FALLBACK_ENV` allows it, and only when the manifest in ``engine_dir`` says its
    engines were built as that fallback; ``(backend, None)`` otherwise.
    """
    allowed = os.environ.get(FALLBACK_ENV)
    if backend != "tensorrt" or not allowed or engine_dir is None:
        return backend, None
    try:
        manifest = read_manifest(engine_dir, backend=allowed)
    except BackendUnavailable:  # TensorRT engines (or none): the TensorRT backend says what is wrong
        return backend, None
    if isinstance(manifest.get("fallback"), dict):
        return allowed, str(manifest.get("precision", "fp32"))
    return backend, None
