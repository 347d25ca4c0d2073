"""TensorRT optimization profiles from batch sizes and image size (pure, no GPU)."""

from __future__ import annotations

import pytest

from planet_build import shapes

DIMS = {"latent_channels": 4, "cross_attention_dim": 2048, "text_embeds": 1280, "sequence": 77, "time_ids": 6}


def test_batch_range_doubles_for_guidance() -> None:
    assert shapes.batch_range([2, 1, 4], guidance=True) == (1, 8, 8)
    assert shapes.batch_range([1, 2, 4], guidance=False) == (1, 4, 4)
    assert shapes.batch_range([3], guidance=False) == (3, 3, 3)
    with pytest.raises(ValueError, match="positive"):
        shapes.batch_range([], guidance=False)


def test_unet_profile_at_the_reference_shape() -> None:
    profile = shapes.unet_profile(DIMS, batch_sizes=[1, 2, 4], width=1536, height=640)
    assert profile["sample"] == ((1, 4, 80, 192), (8, 4, 80, 192), (8, 4, 80, 192))
    assert profile["encoder_hidden_states"] == ((1, 77, 2048), (8, 77, 2048), (8, 77, 2048))
    assert profile["timestep"] == ((1,), (8,), (8,))
    assert profile["text_embeds"][2] == (8, 1280)
    assert profile["time_ids"][0] == (1, 6)


def test_the_planet_presets_profiles_follow_its_tokenizer_and_4x_vae() -> None:
    """The shipped preset pads text to 40 tokens and its VAE downsamples by 4, not SDXL's 77 and 8."""
    from diffusers import StableDiffusionXLPipeline

    from planet_build import components
    from planet_predictors.presets import planet

    pipe = StableDiffusionXLPipeline.from_pretrained(str(planet.folder()))
    assert components.sequence_of(pipe) == 40
    assert components.latent_factor_of(pipe) == 4 == pipe.vae_scale_factor
    dims = {
        "latent_channels": 4,
        "cross_attention_dim": 128,
        "text_embeds": 64,
        "sequence": 40,
        "time_ids": 6,
    }
    profile = shapes.unet_profile({**dims, "latent_factor": 4}, batch_sizes=[1, 2], width=384, height=160)
    assert profile["sample"][2] == (4, 4, 40, 96)
    assert profile["encoder_hidden_states"][2] == (4, 40, 128)
    vae = shapes.vae_decoder_profile(
        {"latent_channels": 4, "latent_factor": 4}, batch_sizes=[1], width=384, height=160
    )
    assert vae["latent"][0] == (1, 4, 40, 96)


def test_every_profile_is_ordered_min_opt_max() -> None:
    profiles = [
        shapes.unet_profile(DIMS, batch_sizes=[1, 2, 4], width=1024, height=1024),
        shapes.vae_decoder_profile(DIMS, batch_sizes=[1, 2, 4], width=1024, height=1024),
        shapes.text_encoder_profile(DIMS, batch_sizes=[1, 2, 4]),
        shapes.upscaler_profile(batch_sizes=[1, 2, 4]),
    ]
    for profile in profiles:
        for low, opt, high in profile.values():
            assert len(low) == len(opt) == len(high)
            assert all(a <= b <= c for a, b, c in zip(low, opt, high, strict=True))


def test_vae_and_text_encoders_see_the_served_batch() -> None:
    vae = shapes.vae_decoder_profile(DIMS, batch_sizes=[1, 2], width=1536, height=640)
    assert vae["latent"] == ((1, 4, 80, 192), (2, 4, 80, 192), (2, 4, 80, 192))
    assert shapes.text_encoder_profile(DIMS, batch_sizes=[4])["input_ids"] == ((4, 77), (4, 77), (4, 77))


def test_latent_size_needs_multiples_of_8() -> None:
    assert shapes.latent_size(1536, 640) == (80, 192)
    with pytest.raises(ValueError, match="multiple of 8"):
        shapes.latent_size(1530, 640)
