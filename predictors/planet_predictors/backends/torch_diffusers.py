"""diffusers + torch backend (CPU or CUDA); the ONNX Runtime and TensorRT backends build on it."""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import torch

from planet_predictors.backends.base import (
    Backend,
    BackendSettings,
    BatchParams,
    Generated,
    Item,
    Stop,
    check_stop,
    step_callback,
)
from planet_predictors.serving.errors import BackendUnavailable

log = logging.getLogger(__name__)

#: Spec scheduler names ▶ (diffusers class name, extra config).
SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "euler": ("EulerDiscreteScheduler", {}),
    "euler-ancestral": ("EulerAncestralDiscreteScheduler", {}),
    "dpmpp-2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "ddim": ("DDIMScheduler", {}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "lcm": ("LCMScheduler", {}),
}
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without it is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise BackendUnavailable(f"--device {name} asked for CUDA, but torch sees no CUDA device here")
    return torch.device(name)


class TorchBackend(Backend):
    """``StableDiffusionXLPipeline.from_pretrained`` with LoRAs fused, optional ``torch.compile``."""

    name = "torch"

    def __init__(self, settings: BackendSettings) -> None:
        super().__init__(settings)
        self.device = torch.device("cpu")
        self.dtype = torch.float32
        self.pipe: Any = None
        self._scheduler: Any = None  # a fresh scheduler, never stepped: each batch steps a copy

    def load(self) -> None:
        """Load the pipeline, swap the scheduler, fuse LoRAs, compile; idempotent."""
        if self.pipe is not None:
            return
        import diffusers

        self.device = resolve_device(self.settings.device)
        # Half precision on CPU is slow or unsupported: CPU always runs fp32.
        self.dtype = (
            DTYPES.get(self.settings.precision, torch.float32)
            if self.device.type == "cuda"
            else torch.float32
        )
        if not (self.settings.model_dir / "model_index.json").exists():
            raise BackendUnavailable(
                f"{self.settings.model_dir} is not a diffusers folder (no model_index.json)"
            )
        pipeline_cls: Any = diffusers.StableDiffusionXLPipeline  # diffusers is untyped
        pipe = pipeline_cls.from_pretrained(
            str(self.settings.model_dir), dtype=self.dtype, use_safetensors=True
        )
        pipe.set_progress_bar_config(disable=True)
        class_name, extra = SCHEDULERS[self.settings.scheduler]
        pipe.scheduler = getattr(diffusers, class_name).from_config({**dict(pipe.scheduler.config), **extra})
        self._scheduler = copy.deepcopy(pipe.scheduler)
        self._fuse_loras(pipe)
        pipe.to(self.device)
        if self.settings.compile:
            pipe.unet = torch.compile(pipe.unet)
        self.pipe = pipe
        self._after_load()

    def _after_load(self) -> None:
        """Hook for subclasses that replace the UNet with an engine."""

    def _fuse_loras(self, pipe: Any) -> None:
        """Fuse every ``--lora`` into the weights (a file, or the folder a storage initializer filled)."""
        if not self.settings.loras:
            return
        names = []
        for i, (given, _scale) in enumerate(self.settings.loras):
            path = lora_file(given)
            name = f"lora{i}"
            pipe.load_lora_weights(str(path), adapter_name=name)
            names.append(name)
        pipe.set_adapters(names, adapter_weights=[scale for _path, scale in self.settings.loras])
        pipe.fuse_lora(adapter_names=names, lora_scale=1.0)
        # Fused weights stay; the adapter layers go, so serving pays nothing for them.
        pipe.unload_lora_weights()
        log.info("fused %d LoRA(s) into the weights", len(names))

    def generate(
        self, params: BatchParams, items: Sequence[Item], *, stop: Stop | None = None
    ) -> list[Generated]:
        """Run one batch: encode prompts, denoise, decode; returns PIL images (``stop``: see base)."""
        if self.pipe is None:
            raise RuntimeError("backend not loaded")
        check_stop(stop, "before the batch started")
        # 1. Check inputs: the pipeline view gets its own scheduler, whose state changes per call (a
        #    copy of a fresh one: 0.3 ms, where from_config took 1.6 ms of every request).
        pipe = type(self.pipe)(**{**self.pipe.components, "scheduler": copy.deepcopy(self._scheduler)})
        pipe.set_progress_bar_config(disable=True)
        cfg = params.guidance > 1.0
        started = time.perf_counter()
        with torch.inference_mode():
            # 2. Encode prompt (per-item negatives; empty ones are zeros, as SDXL does by default)
            embeds = self._encode(pipe, items, cfg)
            encoded = time.perf_counter()
            # 3. Denoise: one CPU generator per item makes each image depend on its own seed only.
            generators = [torch.Generator("cpu").manual_seed(item.seed) for item in items]
            latents = pipe(
                **embeds,
                width=params.width,
                height=params.height,
                num_inference_steps=params.steps,
                guidance_scale=params.guidance,
                generator=generators,
                output_type="latent",
                callback_on_step_end=step_callback(stop),
            ).images
            denoised = time.perf_counter()
            # 4. Decode latents to images
            images = self._decode(pipe, latents)
            decoded = time.perf_counter()
        timings = {
            "encode_prompt": encoded - started,
            "denoise": denoised - encoded,
            "decode": decoded - denoised,
        }
        return [Generated(image=image, timings=timings) for image in images]

    def _encode(self, pipe: Any, items: Sequence[Item], cfg: bool) -> dict[str, torch.Tensor]:
        negatives = [item.negative_prompt for item in items]
        any_negative = any(negatives)
        prompt_embeds, negative_embeds, pooled, negative_pooled = pipe.encode_prompt(
            prompt=[item.prompt for item in items],
            device=self.device,
            num_images_per_prompt=1,
            do_classifier_free_guidance=cfg,
            negative_prompt=negatives if any_negative else None,
        )
        out = {"prompt_embeds": prompt_embeds, "pooled_prompt_embeds": pooled}
        if cfg:
            if any_negative:
                empty = torch.tensor([not n for n in negatives], device=self.device)
                negative_embeds = torch.where(empty[:, None, None], 0.0, negative_embeds).to(
                    prompt_embeds.dtype
                )
                negative_pooled = torch.where(empty[:, None], 0.0, negative_pooled).to(pooled.dtype)
            out["negative_prompt_embeds"] = negative_embeds
            out["negative_pooled_prompt_embeds"] = negative_pooled
        return cast(dict[str, torch.Tensor], out)

    def _decode(self, pipe: Any, latents: torch.Tensor) -> list[Any]:
        vae = pipe.vae
        if vae.dtype == torch.float16 and vae.config.force_upcast:
            # SDXL's VAE overflows in fp16; decode in fp32 like the pipeline does.
            vae = vae.to(torch.float32)
        latents = latents.to(vae.dtype)
        mean = getattr(vae.config, "latents_mean", None)
        std = getattr(vae.config, "latents_std", None)
        if mean is not None and std is not None:
            mean_t = torch.tensor(mean).view(1, 4, 1, 1).to(latents)
            std_t = torch.tensor(std).view(1, 4, 1, 1).to(latents)
            latents = latents * std_t / vae.config.scaling_factor + mean_t
        else:
            latents = latents / vae.config.scaling_factor
        image = vae.decode(latents, return_dict=False)[0]
        return cast(list[Any], pipe.image_processor.postprocess(image, output_type="pil"))


def lora_file(path: Path) -> Path:
    """The ``.safetensors`` at ``path``: the file itself, or the only one in the folder.

    KServe's storage initializer copies a single-file URI *into* its mount folder, so the predictor
    is handed the folder (``/mnt/loras/NAME``) and finds the file there.
    """
    if path.is_file():
        return path
    found = sorted(path.glob("*.safetensors")) if path.is_dir() else []
    if len(found) != 1:
        what = "does not exist" if not path.exists() else f"holds {len(found)} .safetensors files, not one"
        raise BackendUnavailable(f"LoRA {path} {what}")
    return found[0]
