"""TensorRT optimization profiles: ``(min, opt, max)`` shapes per input, from batch sizes and image size.

Pure functions, so they are tested without a GPU. TensorRT engines are fastest at ``opt`` and only
accept shapes within ``[min, max]``; image sizes are fixed by the spec, batch is the one dynamic axis.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

Shape = tuple[int, ...]
Profile = dict[str, tuple[Shape, Shape, Shape]]

#: Image tiles the upscaler engine accepts (pixels per side): the upscaler predictor tiles large images.
UPSCALER_TILE = (32, 256, 512)


def batch_range(batch_sizes: Sequence[int], *, guidance: bool) -> tuple[int, int, int]:
    """``(min, opt, max)`` batch for the served batch sizes.

    With classifier-free guidance the UNet sees the unconditional and conditional halves together,
    twice the served batch; without it (guidance <= 1) the served batch itself. Opt is the largest:
    full batches are what a busy server runs, and where throughput matters.
    """
    sizes = sorted(set(batch_sizes))
    if not sizes or sizes[0] < 1:
        raise ValueError(f"batch sizes must be positive integers, got {list(batch_sizes)}")
    if guidance:
        return sizes[0], 2 * sizes[-1], 2 * sizes[-1]
    return sizes[0], sizes[-1], sizes[-1]


def latent_size(width: int, height: int, *, factor: int = 8) -> tuple[int, int]:
    """``(height, width)`` of the latent for an image (SDXL's VAE downsamples by 8, the planet's by 4)."""
    if width % factor or height % factor:
        raise ValueError(f"{width}x{height} is not a multiple of {factor}")
    return height // factor, width // factor


def _batched(rest: Shape, batches: tuple[int, int, int]) -> tuple[Shape, Shape, Shape]:
    low, opt, high = batches
    return (low, *rest), (opt, *rest), (high, *rest)


def unet_profile(dims: Mapping[str, int], *, batch_sizes: Sequence[int], width: int, height: int) -> Profile:
    """The UNet's inputs (names from the ONNX export) at the spec's size, batch dynamic (CFG doubled)."""
    batches = batch_range(batch_sizes, guidance=True)
    h, w = latent_size(width, height, factor=dims.get("latent_factor", 8))
    return {
        "sample": _batched((dims["latent_channels"], h, w), batches),
        "timestep": _batched((), batches),
        "encoder_hidden_states": _batched((dims["sequence"], dims["cross_attention_dim"]), batches),
        "text_embeds": _batched((dims["text_embeds"],), batches),
        "time_ids": _batched((dims["time_ids"],), batches),
    }


def vae_decoder_profile(
    dims: Mapping[str, int], *, batch_sizes: Sequence[int], width: int, height: int
) -> Profile:
    """The VAE decoder decodes the served batch (guidance is done by then)."""
    h, w = latent_size(width, height, factor=dims.get("latent_factor", 8))
    return {"latent": _batched((dims["latent_channels"], h, w), batch_range(batch_sizes, guidance=False))}


def text_encoder_profile(dims: Mapping[str, int], *, batch_sizes: Sequence[int]) -> Profile:
    """Prompts and negative prompts are encoded in separate calls of the served batch."""
    return {"input_ids": _batched((dims["sequence"],), batch_range(batch_sizes, guidance=False))}


def upscaler_profile(*, batch_sizes: Sequence[int], tile: tuple[int, int, int] = UPSCALER_TILE) -> Profile:
    """Tiles of ``tile`` pixels (min, opt, max per side), a batch of tiles up to the largest batch size."""
    low, opt, high = batch_range(batch_sizes, guidance=False)
    return {
        "image": ((low, 3, tile[0], tile[0]), (opt, 3, tile[1], tile[1]), (high, 3, tile[2], tile[2])),
    }
