"""The ``tiny`` preset: a real SDXL-architecture pipeline with small, seeded random weights.

It has SDXL's parts (a ``text_time`` UNet, two CLIP text encoders, an 8x VAE, Euler) so every serving
path runs offline exactly as with real weights, only fast: about a second per step at 1536x640 on two
CPU cores. Sizes follow diffusers' own ``get_dummy_components()`` for SDXL, except that the VAE keeps
four blocks so its scale factor is 8, like the real one.
"""

from __future__ import annotations

import itertools
import json
import os
import random
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from planet_predictors.sdxl import prompts

NAME = "tiny"
#: Bumped when the architecture changes so stale preset folders are rebuilt, not reused.
VERSION = "1"
SEED = 0
_MARKER = "planetgen-preset.json"
_MERGES = 160


def default_dir() -> Path:
    """Where presets are written unless ``--preset-dir`` says otherwise."""
    env = os.environ.get("PLANET_PRESET_DIR")
    return Path(env) if env else Path.home() / ".cache" / "planetgen" / "presets"


def ensure(root: Path) -> Path:
    """Write the tiny pipeline under ``root`` once; return its folder (a normal diffusers folder)."""
    target = root / f"{NAME}-v{VERSION}"
    if (target / _MARKER).exists():
        return target
    staging = root / f".{NAME}-v{VERSION}.{os.getpid()}"
    build_pipeline().save_pretrained(staging)
    (staging / _MARKER).write_text(json.dumps({"preset": NAME, "version": VERSION, "seed": SEED}))
    try:
        staging.rename(target)
    except OSError:
        # Another process won the race; its copy is identical (same seed).
        if not (target / _MARKER).exists():
            raise
    return target


def build_pipeline() -> Any:
    """Build the pipeline in memory (random weights seeded with :data:`SEED`)."""
    import diffusers as _diffusers
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    diffusers: Any = _diffusers  # untyped library
    torch.manual_seed(SEED)
    unet = diffusers.UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=80,  # 6 time ids x 8 + text_encoder_2's projection (32)
        cross_attention_dim=64,  # both encoders' hidden states side by side (32 + 32)
        norm_num_groups=8,
    )
    scheduler = diffusers.EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        steps_offset=1,
        beta_schedule="scaled_linear",
        timestep_spacing="leading",
    )
    torch.manual_seed(SEED + 1)
    vae = diffusers.AutoencoderKL(
        block_out_channels=[8, 16, 16, 16],  # four blocks: latents are 1/8 of the image, as in SDXL
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=128,
    )
    tokenizer_dir = _write_tokenizer_files(Path(_tmpdir()))
    config: dict[str, Any] = {
        "bos_token_id": 0,
        "eos_token_id": 1,
        "pad_token_id": 1,
        "hidden_size": 32,
        "intermediate_size": 37,
        "layer_norm_eps": 1e-05,
        "num_attention_heads": 4,
        "num_hidden_layers": 3,
        "vocab_size": 1000,
        "hidden_act": "gelu",
        "projection_dim": 32,
    }
    torch.manual_seed(SEED + 2)
    text_encoder = CLIPTextModel(CLIPTextConfig(**config))
    torch.manual_seed(SEED + 3)
    text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**config))
    tokenizer = CLIPTokenizer.from_pretrained(str(tokenizer_dir), model_max_length=77)
    tokenizer_2 = CLIPTokenizer.from_pretrained(str(tokenizer_dir), model_max_length=77)
    return diffusers.StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=scheduler,
    )


def write_lora(path: Path, *, rank: int = 4, seed: int = 1, std: float = 0.5) -> Path:
    """Write a random LoRA for the tiny UNet's attention projections (peft keys diffusers loads)."""
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(seed)
    # (block path, inner dim) of every attention in the tiny UNet; cross-attn keys/values see 64 dims.
    blocks = [
        "down_blocks.1.attentions.0.transformer_blocks.0",
        "up_blocks.0.attentions.0.transformer_blocks.0",
        "up_blocks.0.attentions.1.transformer_blocks.0",
        "mid_block.attentions.0.transformer_blocks.0",
    ]
    tensors: dict[str, torch.Tensor] = {}
    for block in blocks:
        for attn, kv_dim in (("attn1", 64), ("attn2", 64)):
            for proj in ("to_q", "to_k", "to_v", "to_out.0"):
                in_dim = kv_dim if proj in ("to_k", "to_v") else 64
                key = f"unet.{block}.{attn}.{proj}"
                tensors[f"{key}.lora_A.weight"] = torch.randn(rank, in_dim, generator=generator) * std
                tensors[f"{key}.lora_B.weight"] = torch.randn(64, rank, generator=generator) * std
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))
    return path


def _tmpdir() -> str:
    import tempfile

    return tempfile.mkdtemp(prefix="planetgen-tokenizer-")


def _bytes_to_unicode() -> dict[int, str]:
    """CLIP's byte ▶ printable character table (same as GPT-2's)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in codes), strict=True))


def _write_tokenizer_files(folder: Path, phrases: list[str] | None = None, *, merges: int = _MERGES) -> Path:
    """Train a tiny CLIP BPE (bytes + merges learnt from ``phrases``, planet prompts) and write its files."""
    chars = list(_bytes_to_unicode().values())
    vocab: dict[str, int] = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for token in [*chars, *(c + "</w>" for c in chars)]:
        vocab.setdefault(token, len(vocab))
    # Corpus: every word the built-in template can produce; merges make those words a token or two.
    if phrases is None:
        phrases = prompts.default_vocabulary()
    words = Counter(w for text in phrases for w in text.lower().split())
    corpus = {tuple([*w[:-1], w[-1] + "</w>"]): n for w, n in words.items() if w.isascii() and w.isalpha()}
    learnt: list[tuple[str, str]] = []
    rng = random.Random(SEED)
    while len(learnt) < merges:
        pairs: Counter[tuple[str, str]] = Counter()
        for word, count in corpus.items():
            for pair in itertools.pairwise(word):
                pairs[pair] += count
        if not pairs:
            break
        best = max(pairs.items(), key=lambda kv: (kv[1], rng.random()))[0]
        learnt.append(best)
        vocab.setdefault(best[0] + best[1], len(vocab))
        corpus = {_merge(word, best): n for word, n in corpus.items()}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    lines = ["#version: 0.2", *(f"{a} {b}" for a, b in learnt)]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def _merge(word: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    out: list[str] = []
    i = 0
    while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
            out.append(word[i] + word[i + 1])
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)
