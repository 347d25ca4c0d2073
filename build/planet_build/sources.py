"""Where weights come from: local folders, the tiny presets, or the local Hugging Face cache.

The builder never downloads: in a cluster KServe's storage initializer (or a pre-populated cache
volume) puts weights on disk, and here there is no network. ``hf://`` URIs are resolved with
``local_files_only`` semantics, so a missing model is a clear error instead of a hanging download.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from planet_build.errors import UsageError
from planet_build.request import BuildRequest, Lora

log = logging.getLogger(__name__)
_REMOTE = ("s3://", "gs://", "gcs://", "azure://", "https://", "http://", "oci://", "pvc://")


def _local(uri: str, fetched: tuple[tuple[str, Path], ...] = ()) -> Path | None:
    for known, path in fetched:
        if known == uri:
            # KServe's storage initializer copies a single-file URI into its folder, by its base name.
            inside = path / uri.rstrip("/").rsplit("/", 1)[-1]
            return inside if path.is_dir() and inside.is_file() else path
    if uri.startswith("file://"):
        return Path(uri.removeprefix("file://"))
    if uri.startswith(("/", "./", "../")) or ("://" not in uri and Path(uri).exists()):
        return Path(uri)
    return None


def _unsupported(uri: str, what: str) -> UsageError:
    return UsageError(
        f"{what} {uri}: the builder reads local files and the local Hugging Face cache only;"
        " mount it into the Job (or pre-populate HF_HOME) and pass its path"
    )


def preset_dir(request: BuildRequest) -> Path:
    """Where the tiny presets are written (``--preset-dir`` or the predictors' default)."""
    from planet_predictors.presets import tiny

    return request.preset_dir or tiny.default_dir()


def model_revision(request: BuildRequest) -> str | None:
    """The revision the key uses: ``--revision``, or the preset's version for the tiny preset."""
    if request.preset is not None and request.revision is None:
        from planet_predictors.presets import tiny

        return f"v{tiny.VERSION}"
    return request.revision


def load_pipeline(request: BuildRequest) -> Any:
    """The SDXL pipeline (fp32, CPU) with every LoRA fused and the adapters unloaded."""
    import diffusers
    import transformers

    # Library progress bars would interleave with ours in the Job's log.
    diffusers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    pipeline_cls: Any = diffusers.StableDiffusionXLPipeline  # diffusers is untyped
    if request.preset is not None:
        from planet_predictors.presets import tiny

        source: str = str(tiny.ensure(preset_dir(request)))
        options: dict[str, Any] = {}
    else:
        assert request.model is not None
        source, options = _model_source(request.model, request.revision, request.fetched)
    try:
        pipe = pipeline_cls.from_pretrained(source, use_safetensors=True, **options)
    except OSError as exc:
        raise UsageError(f"cannot load model {request.base_uri}: {_first_line(exc)}") from None
    pipe.set_progress_bar_config(disable=True)
    fuse_loras(pipe, request.loras, request.fetched)
    return pipe


def _model_source(
    uri: str, revision: str | None, fetched: tuple[tuple[str, Path], ...] = ()
) -> tuple[str, dict[str, Any]]:
    local = _local(uri, fetched)
    if local is not None:
        if not (local / "model_index.json").is_file():
            raise UsageError(f"model {uri}: {local} is not a diffusers folder (no model_index.json)")
        return str(local), {}
    if uri.startswith("hf://"):
        repo = uri.removeprefix("hf://").strip("/")
        return repo, {"revision": revision, "local_files_only": True}
    raise _unsupported(uri, "model")


def lora_file(lora: Lora, fetched: tuple[tuple[str, Path], ...] = ()) -> Path:
    """A LoRA's ``.safetensors`` on disk (``hf://org/repo/file.safetensors`` from the local HF cache)."""
    local = _local(lora.uri, fetched)
    if local is not None:
        if not local.is_file():
            raise UsageError(f"LoRA {lora.uri}: {local} does not exist")
        return local
    if lora.uri.startswith("hf://"):
        parts = lora.uri.removeprefix("hf://").strip("/").split("/")
        if len(parts) < 3:
            raise UsageError(f"LoRA {lora.uri}: expected hf://ORG/REPO/FILE.safetensors")
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        try:
            return Path(hf_hub_download("/".join(parts[:2]), "/".join(parts[2:]), local_files_only=True))
        except LocalEntryNotFoundError:
            raise UsageError(
                f"LoRA {lora.uri} is not in the local Hugging Face cache and the builder does not download"
            ) from None
    raise _unsupported(lora.uri, "LoRA")


def fuse_loras(pipe: Any, loras: tuple[Lora, ...], fetched: tuple[tuple[str, Path], ...] = ()) -> None:
    """Fuse LoRAs into the weights at their scales, then unload the adapters (engines see plain weights)."""
    if not loras:
        return
    names = []
    for i, lora in enumerate(loras):
        path = lora_file(lora, fetched)
        name = f"lora{i}"
        try:
            pipe.load_lora_weights(str(path), adapter_name=name)
        except (ValueError, KeyError, OSError) as exc:
            raise UsageError(f"LoRA {lora.uri} does not fit this model: {_first_line(exc)}") from None
        names.append(name)
    pipe.set_adapters(names, adapter_weights=[lora.scale for lora in loras])
    pipe.fuse_lora(adapter_names=names, lora_scale=1.0)
    pipe.unload_lora_weights()
    log.info("fused %d LoRA(s)", len(names))


def upscaler_file(request: BuildRequest, uri: str) -> Path:
    """An upscaler checkpoint on disk; with ``--preset tiny`` every remote URI stands for the tiny ESRGAN."""
    local = _local(uri, request.fetched)
    if local is not None:
        if not local.is_file():
            raise UsageError(f"upscaler {uri}: {local} does not exist")
        return local
    if request.preset is not None:
        from planet_predictors.presets import tiny_upscaler

        return tiny_upscaler.ensure(preset_dir(request))
    raise _unsupported(uri, "upscaler")


def load_upscaler(path: Path) -> Any:
    """A spandrel image-to-image descriptor (ESRGAN family and friends)."""
    import spandrel

    try:
        descriptor = spandrel.ModelLoader().load_from_file(str(path))
    except Exception as exc:  # spandrel raises many types for unknown architectures
        raise UsageError(f"upscaler {path}: spandrel cannot load it: {_first_line(exc)}") from None
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise UsageError(f"upscaler {path} is not an image-to-image model")
    return descriptor


def check_inputs(request: BuildRequest) -> None:
    """Resolve every URI before the slow work, so a typo fails in a second, not after the UNet export."""
    if request.model is not None:
        _model_source(request.model, request.revision, request.fetched)
    for lora in request.loras:
        lora_file(lora, request.fetched)
    for uri in request.upscalers:
        upscaler_file(request, uri)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
