"""The graphs an engine build exports: what each takes and returns, and how it is exercised.

Each :class:`Component` wraps a torch module with flat tensor inputs and names its ONNX inputs and
outputs; those names are the contract with the predictors (``backends/onnxruntime.py`` and
``backends/tensorrt.py`` bind by name, and the upscaler predictor reads ``image`` / ``upscaled``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import torch

from planet_build import shapes
from planet_build.request import BuildRequest, upscaler_component
from planet_contracts import engines
from planet_predictors.backends import onnxruntime as ort_backend

#: CLIP's context length, both SDXL text encoders'; used when a tokenizer does not say its own.
SEQUENCE = 77


@dataclasses.dataclass(frozen=True, kw_only=True)
class Component:
    """One exported graph."""

    name: str
    module: torch.nn.Module
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    dynamic_axes: dict[str, dict[int, str]]
    #: Inputs the graph is traced with.
    example: Callable[[], tuple[torch.Tensor, ...]]
    #: Fixed-seed inputs of another batch and size than ``example``: parity checks the dynamic axes too.
    check: Callable[[], tuple[torch.Tensor, ...]]
    profile: shapes.Profile
    #: Runs in fp32 whatever the precision asked (SDXL's VAE overflows in fp16).
    force_fp32: bool = False
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


class _TextEncoder(torch.nn.Module):
    """CLIP text encoder ▶ the penultimate hidden states SDXL conditions on (+ pooled projection)."""

    def __init__(self, encoder: Any, *, projection: bool) -> None:
        super().__init__()
        self.encoder = encoder
        self.projection = projection

    def forward(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``input_ids`` (batch, 77) int64."""
        out = self.encoder(input_ids, output_hidden_states=True)
        if self.projection:
            return out.hidden_states[-2], out.text_embeds
        return out.hidden_states[-2], out.pooler_output


class _VaeDecoder(torch.nn.Module):
    """Scaled latents ▶ images in -1..1 (the pipeline's postprocess maps them to pixels)."""

    def __init__(self, vae: Any) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        """``latent`` already divided by the VAE's scaling factor, as ``vae.decode`` expects."""
        return self.vae.decode(latent, return_dict=False)[0]  # type: ignore[no-any-return]


class _Upscaler(torch.nn.Module):
    """An image-to-image model, clamped to 0..1 as spandrel's descriptor does."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``image`` NCHW float32 in 0..1."""
        return self.model(image).clamp(0.0, 1.0)  # type: ignore[no-any-return]


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def sequence_of(pipe: Any) -> int:
    """The tokenizer's padded length (77 for SDXL's; transformers reports a huge number when unset)."""
    length = int(getattr(pipe.tokenizer, "model_max_length", SEQUENCE) or SEQUENCE)
    return length if 0 < length <= 512 else SEQUENCE


def latent_factor_of(pipe: Any) -> int:
    """How much the VAE downsamples (8 for SDXL's, 4 for the planet preset's): the pipeline's own figure."""
    return int(pipe.vae_scale_factor)


def unet(pipe: Any, request: BuildRequest) -> Component:
    """The denoiser: inputs and output named as the backends bind them."""
    model = pipe.unet
    sequence = sequence_of(pipe)
    dims = ort_backend.unet_dims(model, sequence=sequence) | {"latent_factor": latent_factor_of(pipe)}
    h, w = ort_backend.EXPORT_LATENT
    return Component(
        name="unet",
        module=ort_backend.UNetExportWrapper(model).eval(),
        input_names=engines.UNET_INPUTS,
        output_names=(engines.UNET_OUTPUT,),
        dynamic_axes=ort_backend.unet_dynamic_axes(),
        example=lambda: ort_backend.unet_inputs(
            model, batch=2, height=h, width=w, generator=_seeded(1), sequence=sequence
        ),
        check=lambda: ort_backend.unet_inputs(
            model, batch=3, height=8, width=12, generator=_seeded(2), sequence=sequence
        ),
        profile=shapes.unet_profile(
            dims, batch_sizes=request.batch_sizes, width=request.width, height=request.height
        ),
        extra={"dims": dims},
    )


def vae_decoder(pipe: Any, request: BuildRequest) -> Component:
    """Latents ▶ images; height and width dynamic for ONNX Runtime, fixed by the profile for TensorRT."""
    vae = pipe.vae
    channels = int(vae.config.latent_channels)
    dims = {"latent_channels": channels, "latent_factor": latent_factor_of(pipe)}
    return Component(
        name="vae_decoder",
        module=_VaeDecoder(vae).eval(),
        input_names=("latent",),
        output_names=("images",),
        dynamic_axes={
            "latent": {0: "batch", 2: "height", 3: "width"},
            "images": {0: "batch", 2: "image_height", 3: "image_width"},
        },
        example=lambda: (torch.randn(2, channels, 7, 16, generator=_seeded(3)),),
        check=lambda: (torch.randn(1, channels, 8, 12, generator=_seeded(4)),),
        profile=shapes.vae_decoder_profile(
            dims, batch_sizes=request.batch_sizes, width=request.width, height=request.height
        ),
        force_fp32=bool(getattr(vae.config, "force_upcast", False)),
        extra={"scaling_factor": float(vae.config.scaling_factor)},
    )


def text_encoder(pipe: Any, request: BuildRequest, *, second: bool) -> Component:
    """One of SDXL's two CLIP encoders (the second adds the pooled projection ``text_embeds``)."""
    encoder = pipe.text_encoder_2 if second else pipe.text_encoder
    vocab = int(encoder.config.vocab_size)
    sequence = sequence_of(pipe)
    pooled = "text_embeds" if second else "pooled"
    outputs = ("hidden_states", pooled)
    return Component(
        name="text_encoder_2" if second else "text_encoder",
        module=_TextEncoder(encoder, projection=second).eval(),
        input_names=("input_ids",),
        output_names=outputs,
        dynamic_axes={"input_ids": {0: "batch"}, **{name: {0: "batch"} for name in outputs}},
        example=lambda: (torch.randint(0, vocab, (2, sequence), generator=_seeded(5)),),
        check=lambda: (torch.randint(0, vocab, (3, sequence), generator=_seeded(6)),),
        profile=shapes.text_encoder_profile({"sequence": sequence}, batch_sizes=request.batch_sizes),
        extra={"vocab": vocab},
    )


def upscaler(uri: str, descriptor: Any, request: BuildRequest) -> Component:
    """An ESRGAN-family upscaler loaded by spandrel; ``image`` ▶ ``upscaled``, batch and size dynamic."""
    requirements = descriptor.size_requirements
    multiple = max(1, int(getattr(requirements, "multiple_of", 1)))
    side = max(16, int(getattr(requirements, "minimum", 0)))
    side += -side % multiple
    return Component(
        name=upscaler_component(uri),
        module=_Upscaler(descriptor.model).eval(),
        input_names=("image",),
        output_names=("upscaled",),
        dynamic_axes={
            "image": {0: "batch", 2: "height", 3: "width"},
            "upscaled": {0: "batch", 2: "out_height", 3: "out_width"},
        },
        example=lambda: (torch.rand(1, 3, side, side + multiple, generator=_seeded(7)),),
        check=lambda: (torch.rand(2, 3, side + 2 * multiple, side + multiple, generator=_seeded(8)),),
        profile=shapes.upscaler_profile(batch_sizes=request.batch_sizes),
        extra={
            "uri": uri,
            "scale": int(descriptor.scale),
            "architecture": str(descriptor.architecture.name),
            "size_requirements": {
                "minimum": int(getattr(requirements, "minimum", 0)),
                "multiple_of": multiple,
            },
        },
    )


def inputs_for(
    component: Component, sizes: dict[str, shapes.Shape], *, seed: int = 9
) -> tuple[torch.Tensor, ...]:
    """Fixed-seed inputs of the given shapes (e.g. a TensorRT profile's), valid for each input's meaning."""
    generator = _seeded(seed)
    made = []
    for name in component.input_names:
        shape = sizes[name]
        if name == "input_ids":
            made.append(torch.randint(0, int(component.extra["vocab"]), shape, generator=generator))
        elif name == "timestep":
            made.append(torch.full(shape, 10.0))
        elif name == "image":
            made.append(torch.rand(shape, generator=generator))
        else:
            made.append(torch.randn(shape, generator=generator))
    return tuple(made)


def sdxl(pipe: Any, request: BuildRequest) -> list[Component]:
    """SDXL's exported parts, in build order (the UNet first: it is the one that matters most)."""
    return [
        unet(pipe, request),
        vae_decoder(pipe, request),
        text_encoder(pipe, request, second=False),
        text_encoder(pipe, request, second=True),
    ]


def names(request: BuildRequest) -> Sequence[str]:
    """Every component name a request builds (known before any model is loaded)."""
    return [
        "unet",
        "vae_decoder",
        "text_encoder",
        "text_encoder_2",
        *(upscaler_component(uri) for uri in request.upscalers),
    ]
