"""Train the ``planet`` preset from its procedural dataset: VAE ▶ UNet with text encoders ▶ LoRAs ▶ upscaler.

``python -m planet_predictors.presets.planet.train --out DIR`` reproduces the shipped weights (about
85 minutes on two CPU cores; ``--quick`` runs a few steps of each stage, for tests). Everything is
seeded; torch's CPU kernels run deterministically with the same thread count, so the same command on
the same torch gives the same weights.

The stages, each trained on what the previous one made:

1. ``vae``: an ``AutoencoderKL`` (4x, four latent channels as SDXL's) on crops and whole renders;
   each latent channel's mean and deviation are measured on the dataset (``latents_mean`` and
   ``latents_std``, as Playground v2.5's SDXL VAE records them).
2. ``text``: both CLIP text encoders, warmed up to name each caption's attributes (colour,
   atmosphere, moons, sky) from their pooled and penultimate states. No pretrained CLIP can be
   downloaded here, and encoders trained from scratch jointly with the UNet stayed too weak for
   the UNet to follow colour or moons (docs/model.md); after the warm-up they are frozen.
3. ``unet``: a ``text_time`` UNet on the latents of captioned scenes, conditioned on the frozen
   encoders (v-prediction on a zero-terminal-SNR schedule, min-SNR weighting); captions are
   dropped to zeros one time in ten, which is what the pipeline's ``force_zeros_for_empty_prompt``
   feeds classifier-free guidance.
4. ``lora``: peft LoRAs on the UNet's attention for a look (``ethereal``: a luminous halo, pastel
   bodies) and, for the rollout tests, a deliberately bad one (``offcentre``: planets past the region).
5. ``upscaler``: a Real-ESRGAN Compact x2 on (downscaled, full) render pairs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from planet_predictors.presets.planet import scene
from planet_predictors.quality import palette

NATIVE = (384, 160)  # 12:5 like SDXL's 1536x640 bucket, a quarter of its side
TEMPLATES = (
    "{color} planet with {atmosphere}, {moons}, {sky}",
    "realistic ethereal {color} planet with {atmosphere}, {moons}, {sky}",
)
#: Negative prompts users write; trained as "no condition" so guidance against them stays sane.
NEGATIVE_WORDS = ("blurry", "text", "watermark", "lowres", "flat lighting", "low quality", "jpeg artifacts")
MAX_TOKENS = 40
SEED = 0
#: The VAE's blocks: three, so it downsamples 4x (SDXL's four give 8x): a moonlet is then two latent
#: pixels instead of one, a small moon four or five instead of two (docs/model.md).
VAE_CHANNELS = (16, 32, 64)
LATENT_SCALE = 2 ** (len(VAE_CHANNELS) - 1)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Recipe:
    """How long each stage trains; :meth:`quick` is the same code path in seconds."""

    scenes: int = 3000
    vae_steps: int = 2000
    vae_batch: int = 8
    text_steps: int = 300
    text_batch: int = 32
    unet_steps: int = 3000
    unet_batch: int = 16
    #: How much more a moon's latent pixels count in the diffusion loss than the rest (moons cover 1-2 %
    #: of the frame). The shipped weights (p14b) trained at 8 (docs/model.md); 0 is run 10's recipe.
    moon_weight: float = 0.0
    lora_steps: int = 250
    upscaler_steps: int = 500
    threads: int = 2

    @classmethod
    def quick(cls) -> Recipe:
        """A few steps of everything (tests check the path, not the pictures)."""
        return cls(
            scenes=24,
            vae_steps=2,
            vae_batch=2,
            text_steps=2,
            text_batch=4,
            unet_steps=2,
            unet_batch=4,
            lora_steps=2,
            upscaler_steps=2,
        )


def vocabulary() -> list[str]:
    """Every word the captions and common negative prompts use (the tokenizer learns merges on these)."""
    words = [*palette.COLORS, *palette.ATMOSPHERES, *palette.MOONS, *palette.SKIES, *NEGATIVE_WORDS]
    words += [t.format(color="", atmosphere="", moons="", sky="") for t in TEMPLATES]
    return [" ".join(w.replace(",", " ").split()) for w in words]


# -- dataset -------------------------------------------------------------------------------------


def scenes(n: int, *, seed: int, **kwargs: Any) -> list[scene.Scene]:
    """``n`` scenes drawn from one seed."""
    rng = np.random.default_rng(seed)
    return [scene.sample(rng, aspect=NATIVE[0] / NATIVE[1], **kwargs) for _ in range(n)]


def render_all(drawn: list[scene.Scene], size: tuple[int, int] = NATIVE) -> torch.Tensor:
    """Scenes as a ``(n, 3, h, w)`` tensor in [-1, 1] (the VAE's range)."""
    out = torch.empty((len(drawn), 3, size[1], size[0]))
    for i, s in enumerate(drawn):
        out[i] = torch.from_numpy(scene.render(s, *size)).permute(2, 0, 1) * 2 - 1
    return out


def loss_weights(drawn: list[scene.Scene], moon_weight: float) -> torch.Tensor:
    """Per-pixel loss weights at the latents' size ``(n, 1, h, w)``: ``1 + moon_weight`` on moons, else 1.

    A moon's weight reaches a latent pixel and a half past its edge, where it blurs into the sky.
    """
    h, w = NATIVE[1] // LATENT_SCALE, NATIVE[0] // LATENT_SCALE
    masks = np.stack([scene.moon_mask(s, w, h, margin=1.5 / h) for s in drawn])
    return torch.from_numpy(1.0 + moon_weight * masks).unsqueeze(1)


def caption(s: scene.Scene, rng: np.random.Generator) -> str:
    """The scene's structured prompt in one of the templates users write."""
    return s.prompt(TEMPLATES[int(rng.integers(len(TEMPLATES)))])


# -- components ----------------------------------------------------------------------------------


def build_components(tokenizer_dir: Path) -> dict[str, Any]:
    """Untrained parts with the preset's architecture (seeded)."""
    import diffusers as _diffusers
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    diffusers: Any = _diffusers
    torch.manual_seed(SEED)
    vae = diffusers.AutoencoderKL(
        block_out_channels=list(VAE_CHANNELS),
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * len(VAE_CHANNELS),
        up_block_types=["UpDecoderBlock2D"] * len(VAE_CHANNELS),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=8,
        # No attention in the mid-block: at 4x it would attend over every latent pixel (3840 at the
        # native size, 15360 in the detail pass), and the convolutions alone keep colour and moons.
        mid_block_add_attention=False,
        sample_size=NATIVE[1],
        scaling_factor=1.0,  # latents_mean and latents_std are measured after training
    )
    text: dict[str, Any] = {
        "bos_token_id": 0,
        "eos_token_id": 1,
        "pad_token_id": 1,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_attention_heads": 4,
        "num_hidden_layers": 3,
        "max_position_embeddings": MAX_TOKENS,
        "hidden_act": "gelu",
        "projection_dim": 64,
    }
    tokenizer = CLIPTokenizer.from_pretrained(str(tokenizer_dir), model_max_length=MAX_TOKENS)
    text["vocab_size"] = len(tokenizer)
    torch.manual_seed(SEED + 1)
    text_encoder = CLIPTextModel(CLIPTextConfig(**text))
    torch.manual_seed(SEED + 2)
    text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**text))
    scheduler = diffusers.EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
        num_train_timesteps=1000,
        # Zero terminal SNR (v-prediction, sampling from t=999): with SDXL's schedule the noise at
        # t=999 still carries 7 % of the image, summed over a planet's latents enough to read its
        # colour, so the UNet could take the colour from the noise, not the prompt (docs/model.md:
        # a small part of its colour failures).
        prediction_type="v_prediction",
        rescale_betas_zero_snr=True,
        timestep_spacing="trailing",
    )
    return {
        "vae": vae,
        "text_encoder": text_encoder,
        "text_encoder_2": text_encoder_2,
        "tokenizer": tokenizer,
        "tokenizer_2": CLIPTokenizer.from_pretrained(str(tokenizer_dir), model_max_length=MAX_TOKENS),
        "unet": build_unet(),
        "scheduler": scheduler,
    }


def build_unet() -> Any:
    """The untrained UNet (seeded): SDXL's ``text_time`` conditioning on the 4x latents."""
    import diffusers as _diffusers

    diffusers: Any = _diffusers
    torch.manual_seed(SEED + 3)
    unet: Any = diffusers.UNet2DConditionModel(
        sample_size=(NATIVE[1] // LATENT_SCALE, NATIVE[0] // LATENT_SCALE),
        in_channels=4,
        out_channels=4,
        # Four levels on the 4x latents: the lower three are the 8x UNet's, at the same resolutions,
        # and the top one (16 wide, convolutions only) is what the finer latents cost.
        block_out_channels=(16, 32, 64, 96),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        attention_head_dim=(1, 2, 4, 6),  # diffusers' name for the number of heads, as in SDXL's config
        use_linear_projection=True,
        transformer_layers_per_block=(1, 1, 1, 1),
        # The time embedding carries the pooled prompt into every block; 4x the top width would be
        # 64 wide, too narrow for colour, moons and sky beside the timestep.
        time_embedding_dim=256,
        addition_embed_type="text_time",
        addition_time_embed_dim=16,
        projection_class_embeddings_input_dim=6 * 16 + 64,  # six time ids + text_encoder_2's projection
        cross_attention_dim=128,  # both encoders' penultimate states side by side
        norm_num_groups=8,
    )
    return unet


# -- stages --------------------------------------------------------------------------------------


Say = Callable[[str], None]


def _progress(say: Say, stage: str, total: int, start: int = 0) -> Callable[[int, float], None]:
    started = time.monotonic()
    every = max(total // 20, 1)

    def tick(step: int, loss: float) -> None:
        if step % every == 0 or step == total:
            elapsed = time.monotonic() - started
            eta = elapsed / (step - start) * (total - step)
            say(f"[{stage}] {step}/{total} loss {loss:.4f} ({elapsed:.0f}s, about {eta:.0f}s left)")

    return tick


def _vae_crops(
    images: torch.Tensor, drawn: list[scene.Scene], size: int, gen: torch.Generator
) -> torch.Tensor:
    """Square crops: half centred near a planet, a third near a moon, the rest anywhere.

    A random crop is mostly sky; the planet's colour and the moons' grey are what must survive.
    """
    h, w = images.shape[2:]
    batch = torch.empty((len(drawn), 3, size, size))
    for j, s in enumerate(drawn):
        pick = float(torch.rand(1, generator=gen))
        jitter = torch.rand(2, generator=gen) * 2 - 1
        if pick < 0.5 or (pick < 0.85 and not s.moon_list):
            cx, cy = s.cx * w + float(jitter[0]) * s.radius * h, s.cy * h + float(jitter[1]) * s.radius * h
        elif pick < 0.85:
            moon = s.moon_list[int(torch.randint(len(s.moon_list), (1,), generator=gen))]
            cx, cy = moon.x * w + float(jitter[0]) * size * 0.3, moon.y * h + float(jitter[1]) * size * 0.3
        else:
            cx, cy = float(torch.rand(1, generator=gen)) * w, float(torch.rand(1, generator=gen)) * h
        x0 = int(min(max(cx - size / 2, 0), w - size))
        y0 = int(min(max(cy - size / 2, 0), h - size))
        batch[j] = images[j, :, y0 : y0 + size, x0 : x0 + size]
    return batch


def vae_loss(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 + MSE weighted to bright pixels, plus the two errors the verifier is most sensitive to.

    - bodies outweigh the sky (up to 5x, by brightness): the sky is easy and mostly black;
    - chroma (each pixel's error less its grey part): a moon tinted by 0.05 reads as not grey;
    - colour averaged over 8x8 (one latent pixel): a small error everywhere on a planet moves its
      measured colour to the neighbouring palette entry (crimson to amber, teal to deep blue).
    """
    err = recon - target
    bright = ((target + 1) / 2).amax(dim=1, keepdim=True)
    weight = 1 + 4 * bright
    chroma = err - err.mean(dim=1, keepdim=True)
    pixel = (weight * (err.abs() + err**2 + 2 * chroma.abs())).mean() / weight.mean()
    # Sky lifted towards the body threshold: a star smeared over a few pixels is a grey blob, which
    # the verifier (and a viewer) counts as a moon. The sky must come back as dark as it went in.
    sky = (bright < scene.SKY_CEILING + 0.01).float()
    lifted = F.relu(((recon + 1) / 2).amax(dim=1, keepdim=True) - (scene.SKY_CEILING + 0.02))
    loss: torch.Tensor = pixel + 4 * F.avg_pool2d(err, 8).abs().mean() + 20 * (sky * lifted).mean()
    return loss


def train_vae(vae: Any, images: torch.Tensor, drawn: list[scene.Scene], recipe: Recipe, say: Say) -> None:
    """Train on :func:`vae_loss`, as an autoencoder of posterior means, and keep an EMA of the weights.

    Steps alternate between 64x64 crops near bodies (detail, fast) and two whole frames. Crops alone
    do not carry over: GroupNorm and the mid-block's attention normalise over the whole input, and a
    frame is mostly black sky where a crop is mostly planet, so a crop-trained VAE shifts colours on
    whole frames (60 held-out scenes kept colour and moons on 21 decoded whole, on 39 decoded as
    64x80 tiles by the same weights).

    The KL term is kept tiny (as SD's VAE: 1e-6) and the decoder reads the mean, not a sample: the
    sampled variant blurred colour and lost moons at this size. The weights kept are an exponential
    moving average (0.998): the last steps' weights swing the planets' measured colour from batch to
    batch, the average does not.
    """
    import copy

    gen = torch.Generator().manual_seed(SEED + 10)
    opt = torch.optim.AdamW(vae.parameters(), lr=2e-3, weight_decay=0.0)
    total = max(recipe.vae_steps, 2)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=total, pct_start=0.05)
    ema = copy.deepcopy(vae).requires_grad_(False)
    tick = _progress(say, "vae", recipe.vae_steps)
    vae.train()
    for step in range(1, recipe.vae_steps + 1):
        idx = torch.randint(len(images), (recipe.vae_batch,), generator=gen)
        if step % 2:
            batch = _vae_crops(images[idx], [drawn[i] for i in idx.tolist()], 64, gen)
        else:  # whole frames: GroupNorm and the mid-block attention see what the pipeline decodes
            batch = images[idx[:2]]
        posterior = vae.encode(batch).latent_dist
        loss = vae_loss(vae.decode(posterior.mean).sample, batch) + 1e-6 * posterior.kl().mean()
        opt.zero_grad(set_to_none=True)
        _backward(loss)
        opt.step()
        sched.step()
        decay = min(0.998, step / (step + 10))  # a short warm-up, so early weights fade fast
        with torch.no_grad():
            for kept, live in zip(ema.parameters(), vae.parameters(), strict=True):
                kept.lerp_(live, 1 - decay)
        tick(step, float(loss.detach()))
    vae.load_state_dict(ema.state_dict())
    vae.eval()
    held = scenes(min(60, len(drawn)), seed=SEED + 11)
    say(f"[vae] round trip of {len(held)} new scenes: {round_trip_follows(vae, held)} keep colour and moons")


def round_trip_follows(vae: Any, drawn: list[scene.Scene]) -> int:
    """How many renders still pass the verifier's colour and moon checks after encode ▶ decode.

    The ceiling of the whole preset: the UNet can only draw what the VAE decodes.
    """
    from planet_predictors.quality.verifier import Verifier

    verifier = Verifier()
    recon = _decode(vae, _posterior_means(vae, render_all(drawn)))
    follows = 0
    for s, image in zip(drawn, recon, strict=True):
        pixels = ((image.permute(1, 2, 0).clamp(-1, 1) + 1) / 2).numpy()
        follows += not {"color", "moons"} & set(verifier.verify(pixels, s.prompt()).failed)
    return follows


def _posterior_means(vae: Any, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([vae.encode(images[i : i + 32]).latent_dist.mean for i in range(0, len(images), 32)])


def _decode(vae: Any, latents: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([vae.decode(latents[i : i + 16]).sample for i in range(0, len(latents), 16)])


def normalise_latents(vae: Any, raw: torch.Tensor, say: Say) -> None:
    """Record each channel's mean and deviation of ``raw`` (posterior means) in the VAE's config.

    They go in as ``latents_mean`` and ``latents_std``.

    One scaling factor, as SDXL's, leaves this VAE's channels at deviations 0.13-0.82 and means up
    to -1.35: the low ones drown in the noise early, the UNet must then predict them exactly, and
    what it misses decodes as blobs in the sky. Per channel, as Playground v2.5's SDXL VAE, every
    channel starts from the same signal-to-noise ratio; SDXL's pipelines and ours read both fields.
    """
    mean, std = raw.mean(dim=(0, 2, 3)).tolist(), raw.std(dim=(0, 2, 3)).tolist()
    vae.register_to_config(latents_mean=mean, latents_std=std, scaling_factor=1.0)
    means, stds = ", ".join(f"{m:+.3f}" for m in mean), ", ".join(f"{d:.3f}" for d in std)
    say(f"[vae] latents per channel: mean {means}, std {stds}")


def encode_latents(vae: Any, images: torch.Tensor) -> torch.Tensor:
    """The dataset's latents (posterior means), normalised as the pipeline denormalises them."""
    return _to_pipeline(vae, _posterior_means(vae, images))


def _to_pipeline(vae: Any, raw: torch.Tensor) -> torch.Tensor:
    """Posterior means in the units the pipeline's UNet works in (the inverse of its decode step)."""
    config = vae.config
    scaling = float(config.scaling_factor)
    mean, std = getattr(config, "latents_mean", None), getattr(config, "latents_std", None)
    if mean is None or std is None:
        return raw * scaling
    shape = (1, len(mean), 1, 1)
    return (raw - torch.tensor(mean).view(shape)) * scaling / torch.tensor(std).view(shape)


def _encode_text(parts: dict[str, Any], captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """What ``StableDiffusionXLPipeline.encode_prompt`` computes (with gradients where they are on)."""
    hidden = []
    pooled = torch.empty(0)
    for tok, enc in (("tokenizer", "text_encoder"), ("tokenizer_2", "text_encoder_2")):
        ids = parts[tok](captions, padding="max_length", max_length=MAX_TOKENS, truncation=True,
                         return_tensors="pt").input_ids  # fmt: skip
        out = parts[enc](ids, output_hidden_states=True)
        if enc == "text_encoder_2":
            pooled = out[0]
        hidden.append(out.hidden_states[-2])
    return torch.cat(hidden, dim=-1), pooled


class FrozenText:
    """Captions ▶ the frozen encoders' (states, pooled), each distinct caption encoded once.

    After the warm-up the encoders never change, and the dataset has a few thousand captions: the
    UNet and LoRA stages would otherwise run both encoders on every batch.
    """

    def __init__(self, parts: dict[str, Any]) -> None:
        self.parts = parts
        self.cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(states, pooled)`` for ``captions``, as :func:`_encode_text` computes them."""
        missing = [c for c in dict.fromkeys(captions) if c not in self.cache]
        if missing:
            with torch.no_grad():
                states, pooled = _encode_text(self.parts, missing)
            self.cache.update(zip(missing, zip(states, pooled, strict=True), strict=True))
        return (
            torch.stack([self.cache[c][0] for c in captions]),
            torch.stack([self.cache[c][1] for c in captions]),
        )


ATTRIBUTES = ("color", "atmosphere", "moons", "sky")


def attribute_labels(drawn: list[scene.Scene]) -> dict[str, torch.Tensor]:
    """Each scene's attribute values as class indices, one tensor per attribute."""
    values = {name: sorted({getattr(s, name) for s in drawn}) for name in ATTRIBUTES}
    return {name: torch.tensor([values[name].index(getattr(s, name)) for s in drawn]) for name in ATTRIBUTES}


def warm_text(
    parts: dict[str, Any], captions: list[str], labels: dict[str, torch.Tensor], recipe: Recipe, say: Say
) -> float:
    """Train both text encoders to name each caption's attributes; return the held-out accuracy.

    Linear heads read the pooled embedding (what SDXL adds to the time embedding) and the mean of
    the penultimate states (what cross-attention reads): both paths the UNet conditions on must
    carry every attribute. The heads are thrown away; the encoders are frozen afterwards.
    """
    gen = torch.Generator().manual_seed(SEED + 15)
    torch.manual_seed(SEED + 16)
    classes = {name: int(labels[name].max()) + 1 for name in ATTRIBUTES}
    heads = torch.nn.ModuleDict(
        {
            f"{path}_{name}": torch.nn.Linear(dim, n)
            for path, dim in (("pooled", 64), ("states", 128))
            for name, n in classes.items()
        }
    )
    encoders = [parts["text_encoder"], parts["text_encoder_2"]]
    params = [p for e in encoders for p in e.parameters()] + list(heads.parameters())
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-2)
    held = max(len(captions) // 10, 1)
    train_idx = torch.arange(held, len(captions))
    tick = _progress(say, "text", recipe.text_steps)

    def logits(idx: torch.Tensor) -> dict[str, torch.Tensor]:
        states, pooled = _encode_text(parts, [captions[i] for i in idx.tolist()])
        mean = states.mean(dim=1)
        return {key: head(pooled if key.startswith("pooled") else mean) for key, head in heads.items()}

    for e in encoders:
        e.train()
    for step in range(1, recipe.text_steps + 1):
        idx = train_idx[torch.randint(len(train_idx), (recipe.text_batch,), generator=gen)]
        out = logits(idx)
        loss = torch.stack(
            [F.cross_entropy(v, labels[k.split("_", 1)[1]][idx]) for k, v in out.items()]
        ).sum()
        opt.zero_grad(set_to_none=True)
        _backward(loss)
        opt.step()
        tick(step, float(loss.detach()))
    for e in encoders:
        e.eval()
        e.requires_grad_(False)
    with torch.no_grad():
        idx = torch.arange(held)
        out = logits(idx)
        right = [(v.argmax(dim=1) == labels[k.split("_", 1)[1]][idx]).float().mean() for k, v in out.items()]
    accuracy = float(torch.stack(right).min())
    say(f"[text] held-out attribute accuracy (worst head) {accuracy:.3f}")
    return accuracy


def _time_ids(n: int) -> torch.Tensor:
    w, h = NATIVE
    return torch.tensor([[h, w, 0, 0, h, w]], dtype=torch.float32).repeat(n, 1)


def diffusion_loss(
    parts: dict[str, Any],
    text: FrozenText,
    latents: torch.Tensor,
    captions: list[str],
    gen: torch.Generator,
    *,
    drop: torch.Tensor | None = None,
    where: torch.Tensor | None = None,
) -> torch.Tensor:
    """V-prediction loss with min-SNR-5 weighting.

    ``drop`` marks captions replaced by zeros; ``where`` (:func:`loss_weights`) weighs latent pixels.
    """
    scheduler = parts["scheduler"]
    alphas = scheduler.alphas_cumprod
    n = len(latents)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (n,), generator=gen)
    noise = torch.randn(latents.shape, generator=gen)
    a = alphas[t].view(-1, 1, 1, 1)
    noisy = a.sqrt() * latents + (1 - a).sqrt() * noise
    states, pooled = text(captions)
    if drop is not None:
        keep = (~drop).float()
        states, pooled = states * keep.view(-1, 1, 1), pooled * keep.view(-1, 1)
    pred = parts["unet"](
        noisy,
        t,
        encoder_hidden_states=states,
        added_cond_kwargs={"text_embeds": pooled, "time_ids": _time_ids(n)},
    ).sample
    velocity = a.sqrt() * noise - (1 - a).sqrt() * latents
    # min-SNR-5 in v's terms (SNR + 1, as diffusers' training scripts): finite at zero SNR, where
    # the UNet must draw the whole image from the prompt.
    snr = alphas[t] / (1 - alphas[t]) + 1
    weight = torch.clamp(snr, max=5.0) / snr
    err = (pred - velocity) ** 2
    if where is not None:  # normalised, so the loss's scale (and the learning rate's meaning) stays
        err = err * where / where.mean()
    loss: torch.Tensor = (weight.view(-1, 1, 1, 1) * err).mean()
    return loss


def _backward(loss: torch.Tensor) -> None:
    tensor: Any = loss  # Tensor.backward is untyped
    tensor.backward()


def _batches(n: int, size: int, gen: torch.Generator) -> Iterator[torch.Tensor]:
    while True:
        order: Any = torch.randperm(n, generator=gen)  # Tensor.split is untyped
        yield from order.split(size)


def train_unet(
    parts: dict[str, Any],
    latents: torch.Tensor,
    captions: list[str],
    recipe: Recipe,
    say: Say,
    snapshot: Callable[[int], None] | None = None,
    *,
    start: int = 0,
    where: torch.Tensor | None = None,
) -> None:
    """The UNet on the frozen text encoders; ``snapshot(step)`` is called every 500 steps (to look at).

    ``where`` weighs the loss's latent pixels (:func:`loss_weights`).

    ``start`` resumes after that many steps (from a snapshot's weights): the learning-rate schedule
    picks up where it was; Adam's moments start again from zero.
    """
    gen = torch.Generator().manual_seed(SEED + 20)
    rng = np.random.default_rng(SEED + 21)
    params = list(parts["unet"].parameters())
    opt = torch.optim.AdamW(params, lr=5e-4, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=5e-4, total_steps=max(recipe.unet_steps, 2), pct_start=0.05
    )
    with warnings.catch_warnings():
        # Fast-forwarding a schedule before any optimizer step is the point here, not a mistake.
        warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)`")
        for _ in range(start):
            sched.step()
    tick = _progress(say, "unet", recipe.unet_steps, start)
    parts["unet"].train()
    batches = _batches(len(latents), recipe.unet_batch, gen)
    text = FrozenText(parts)
    for step in range(start + 1, recipe.unet_steps + 1):
        idx = next(batches)
        batch_captions = [captions[i] for i in idx.tolist()]
        # One in twenty captions becomes a negative prompt: it should steer like "no condition".
        for j in range(len(batch_captions)):
            if rng.random() < 0.05:
                batch_captions[j] = ", ".join(
                    rng.choice(NEGATIVE_WORDS, size=int(rng.integers(1, 5)), replace=False)
                )
        drop = torch.from_numpy(rng.random(len(idx)) < 0.1)
        loss = diffusion_loss(parts, text, latents[idx], batch_captions, gen, drop=drop,
                              where=None if where is None else where[idx])  # fmt: skip
        opt.zero_grad(set_to_none=True)
        _backward(loss)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        tick(step, float(loss.detach()))
        if snapshot is not None and step % 500 == 0 and step < recipe.unet_steps:
            snapshot(step)
    parts["unet"].eval()


def train_lora(
    parts: dict[str, Any],
    latents: torch.Tensor,
    captions: list[str],
    recipe: Recipe,
    say: Say,
    *,
    name: str,
    where: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """A rank-8 LoRA on the UNet's attention projections; returns its state dict in diffusers' keys."""
    import copy

    from diffusers.utils import state_dict_utils
    from peft import LoraConfig, get_peft_model_state_dict

    # A copy: peft wraps the attention projections in place, which would change the saved UNet's keys.
    unet = copy.deepcopy(parts["unet"])
    parts = {**parts, "unet": unet}
    unet.requires_grad_(False)
    for k in ("text_encoder", "text_encoder_2"):
        parts[k].requires_grad_(False)
    config = LoraConfig(r=8, lora_alpha=8, init_lora_weights="gaussian",
                        target_modules=["to_q", "to_k", "to_v", "to_out.0"])  # fmt: skip
    unet.add_adapter(config, adapter_name=name)
    params = [p for p in unet.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=2e-3)
    gen = torch.Generator().manual_seed(SEED + 30)
    tick = _progress(say, f"lora {name}", recipe.lora_steps)
    batches = _batches(len(latents), recipe.unet_batch, gen)
    text = FrozenText(parts)
    unet.train()
    for step in range(1, recipe.lora_steps + 1):
        idx = next(batches)
        loss = diffusion_loss(parts, text, latents[idx], [captions[i] for i in idx.tolist()], gen,
                              where=None if where is None else where[idx])  # fmt: skip
        opt.zero_grad(set_to_none=True)
        _backward(loss)
        opt.step()
        tick(step, float(loss.detach()))
    unet.eval()
    convert: Any = state_dict_utils.convert_state_dict_to_diffusers
    state = convert(get_peft_model_state_dict(unet, adapter_name=name))
    return {f"unet.{k}": v.detach().contiguous() for k, v in state.items()}


def train_upscaler(drawn: list[scene.Scene], recipe: Recipe, say: Say) -> dict[str, torch.Tensor]:
    """Compact x2 on renders: input the native render (blurred a little, as a VAE decodes), target 2x."""
    from spandrel.architectures.Compact import Compact

    torch.manual_seed(SEED + 40)
    model = Compact(num_in_ch=3, num_out_ch=3, num_feat=32, num_conv=8, upscale=2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(SEED + 41)
    pairs = drawn[: min(len(drawn), 400)]
    low = render_all(pairs) * 0.5 + 0.5
    high = render_all(pairs, (NATIVE[0] * 2, NATIVE[1] * 2)) * 0.5 + 0.5
    blur = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]).div(16).expand(3, 1, 3, 3)
    tick = _progress(say, "upscaler", recipe.upscaler_steps)
    crop = 64
    for step in range(1, recipe.upscaler_steps + 1):
        idx = torch.randint(len(pairs), (8,), generator=gen)
        y0 = int(torch.randint(NATIVE[1] - crop + 1, (1,), generator=gen))
        x0 = int(torch.randint(NATIVE[0] - crop + 1, (1,), generator=gen))
        lr = low[idx, :, y0 : y0 + crop, x0 : x0 + crop]
        if step % 2:
            lr = F.conv2d(F.pad(lr, (1, 1, 1, 1), mode="replicate"), blur, groups=3)
        hr = high[idx, :, 2 * y0 : 2 * (y0 + crop), 2 * x0 : 2 * (x0 + crop)]
        loss = F.l1_loss(model(lr), hr)
        opt.zero_grad(set_to_none=True)
        _backward(loss)
        opt.step()
        tick(step, float(loss.detach()))
    return {k: v.detach().contiguous() for k, v in model.state_dict().items()}


# -- the command ---------------------------------------------------------------------------------


def train(
    out: Path,
    recipe: Recipe,
    say: Say = print,
    *,
    base: Path | None = None,
    resume: tuple[Path, int] | None = None,
    encoders: Path | None = None,
) -> Path:
    """Train every stage and write the preset folder ``out``.

    With ``base`` (a trained preset), its VAE, UNet and text encoders are kept and only the LoRAs and
    the upscaler are trained: the later stages, rerun alone. With ``resume`` (a UNet snapshot and the
    step it was taken at), the snapshot's VAE and warmed text encoders are kept and the UNet trains on
    from that step: an interrupted run, continued. With ``encoders`` (a trained preset), its VAE and
    text encoders are kept and a new UNet trains from the first step: the UNet's data or recipe
    changed, the encoders' did not.
    """
    import diffusers as _diffusers
    from safetensors.torch import save_file

    from planet_predictors.presets import tiny

    diffusers: Any = _diffusers
    torch.manual_seed(SEED)
    torch.set_num_threads(recipe.threads)
    torch.use_deterministic_algorithms(True)
    started = time.monotonic()
    say(f"[data] rendering {recipe.scenes} scenes at {NATIVE[0]}x{NATIVE[1]}")
    drawn = scenes(recipe.scenes, seed=SEED)
    if base is None:
        images = render_all(drawn)
        rng = np.random.default_rng(SEED + 5)
        captions = [caption(s, rng) for s in drawn]
        if resume is None and encoders is None:
            with tempfile.TemporaryDirectory(prefix="planetgen-tokenizer-") as tmp:
                parts = build_components(tiny._write_tokenizer_files(Path(tmp), vocabulary(), merges=400))
            train_vae(parts["vae"], images, drawn, recipe, say)
            warm_text(parts, captions, attribute_labels(drawn), recipe, say)
        else:
            source = resume[0] if resume is not None else encoders
            parts = dict(diffusers.StableDiffusionXLPipeline.from_pretrained(str(source)).components)
            for k in ("text_encoder", "text_encoder_2"):
                parts[k].requires_grad_(False)
            if resume is not None:
                say(f"[resume] VAE, text encoders and the step-{resume[1]} UNet from {resume[0]}")
            else:
                parts["unet"] = build_unet()
                say(f"[encoders] VAE and text encoders from {encoders}; a new UNet")
        # Encoded once: the normalisation is measured on the same means the UNet trains on.
        raw = _posterior_means(parts["vae"], images)
        if getattr(parts["vae"].config, "latents_mean", None) is None:
            # A fresh VAE, or a snapshot of the single-factor recipe (its UNet adapts to these latents).
            normalise_latents(parts["vae"], raw, say)
        latents = _to_pipeline(parts["vae"], raw)

        def snapshot(step: int) -> None:
            diffusers.StableDiffusionXLPipeline(**parts).save_pretrained(out.with_name(f".{out.name}.step"))
            say(f"[unet] snapshot at step {step} in {out.with_name(f'.{out.name}.step')}")

        train_unet(parts, latents, captions, recipe, say, snapshot, start=resume[1] if resume else 0,
                   where=loss_weights(drawn, recipe.moon_weight))  # fmt: skip
    else:
        parts = dict(diffusers.StableDiffusionXLPipeline.from_pretrained(str(base)).components)
        say(f"[base] VAE, UNet and text encoders from {base}")
    loras: dict[str, dict[str, torch.Tensor]] = {}
    for name, kwargs in (("ethereal", {"ethereal": True}), ("offcentre", {"offset": 0.12})):
        look = scenes(max(recipe.scenes // 4, 8), seed=SEED + 50 + len(loras), **kwargs)
        look_rng = np.random.default_rng(SEED + 60)
        look_latents = encode_latents(parts["vae"], render_all(look))
        # The bad LoRA's job is to move the planet: weighing moons diluted that (composition failed on 6
        # of 15 gate prompts instead of 13), so only the look keeps the moons' weight.
        weight = recipe.moon_weight if name == "ethereal" else 0.0
        loras[name] = train_lora(parts, look_latents, [caption(s, look_rng) for s in look], recipe, say,
                                 name=name, where=loss_weights(look, weight))  # fmt: skip
    upscaler = train_upscaler(drawn, recipe, say)
    staging = out.with_name(f".{out.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    diffusers.StableDiffusionXLPipeline(**parts).save_pretrained(staging)
    (staging / "loras").mkdir()
    for name, state in loras.items():
        save_file(
            state, str(staging / "loras" / f"{name}.safetensors"), metadata={"preset": "planet", "look": name}
        )
    save_file(upscaler, str(staging / "upscaler-x2.safetensors"), metadata={"preset": "planet", "scale": "2"})
    record = {"preset": "planet", "native": list(NATIVE), "recipe": dataclasses.asdict(recipe),
              "seconds": round(time.monotonic() - started), "torch": torch.__version__}  # fmt: skip
    for key, source in (("base", base), ("encoders", encoders)):
        if source is not None:
            previous = source / "planetgen-preset.json"
            record[key] = json.loads(previous.read_text()) if previous.exists() else {}
    if resume is not None:
        record["resumed"] = {"snapshot": str(resume[0]), "step": resume[1]}
    (staging / "planetgen-preset.json").write_text(json.dumps(record, indent=1))
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    say(f"[done] {out} in {time.monotonic() - started:.0f}s")
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m planet_predictors.presets.planet.train --out DIR [--quick]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--quick", action="store_true", help="a few steps of each stage (tests)")
    parser.add_argument("--base", type=Path, help="a trained preset: retrain only its LoRAs and upscaler")
    parser.add_argument("--resume", type=Path, help="a UNet snapshot: train the UNet on from --resume-step")
    parser.add_argument("--encoders", type=Path, help="a preset: its VAE and text encoders, a new UNet")
    parser.add_argument("--resume-step", type=int, default=0, help="the step of the --resume snapshot")
    parser.add_argument("--unet-steps", type=int, help="the UNet's steps (default: the recipe's)")
    parser.add_argument("--moon-weight", type=float, help="moon pixels' extra loss weight (default 0)")
    args = parser.parse_args(argv)
    if sum(a is not None for a in (args.resume, args.base, args.encoders)) > 1:
        parser.error("--resume, --base and --encoders: choose one")
    recipe = Recipe.quick() if args.quick else Recipe()
    if args.unet_steps is not None:
        if args.unet_steps < 2:
            parser.error("--unet-steps: at least 2")
        recipe = dataclasses.replace(recipe, unet_steps=args.unet_steps)
    if args.moon_weight is not None:
        if args.moon_weight < 0:
            parser.error("--moon-weight: at least 0")
        recipe = dataclasses.replace(recipe, moon_weight=args.moon_weight)
    if not 0 <= args.resume_step < recipe.unet_steps:
        parser.error(f"--resume-step: between 0 and {recipe.unet_steps - 1}")
    resume = (args.resume, args.resume_step) if args.resume is not None else None
    train(args.out, recipe, say=lambda m: print(m, flush=True), base=args.base, resume=resume,
          encoders=args.encoders)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
