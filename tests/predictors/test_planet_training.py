"""The ``planet`` preset's training command, on the quick recipe: it writes a preset that loads like
SDXL's weights, reruns its later stages on a base, resumes an interrupted UNet run and trains a new
UNet on a preset's encoders; the latents it trains on are normalised per channel the way SDXL's
pipelines undo it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from planet_predictors.presets.planet import train


@pytest.mark.slow
def test_the_training_command_writes_a_preset_that_loads_like_the_shipped_one(tmp_path: Path) -> None:
    from diffusers import StableDiffusionXLPipeline

    out = train.train(tmp_path / "planet", train.Recipe.quick(), say=lambda _m: None)
    pipe = StableDiffusionXLPipeline.from_pretrained(str(out))
    pipe.load_lora_weights(str(out / "loras" / "ethereal.safetensors"))
    pipe.set_progress_bar_config(disable=True)
    image = pipe("teal planet", width=384, height=160, num_inference_steps=1).images[0]
    assert image.size == (384, 160)
    assert sorted(p.name for p in (out / "loras").iterdir()) == [
        "ethereal.safetensors",
        "offcentre.safetensors",
    ]
    again = train.train(tmp_path / "retrained", train.Recipe.quick(), say=lambda _m: None, base=out)
    assert (again / "upscaler-x2.safetensors").exists()
    # A preset folder is a UNet snapshot too: the run goes on from step 1 with its encoders.
    said: list[str] = []
    resumed = train.train(tmp_path / "resumed", train.Recipe.quick(), say=said.append, resume=(out, 1))
    record = json.loads((resumed / "planetgen-preset.json").read_text())
    assert record["resumed"] == {"snapshot": str(out), "step": 1}
    assert not any(m.startswith(("[vae]", "[text]")) for m in said)
    assert any(m.startswith("[unet]") for m in said)
    # New UNet data on the same encoders: the VAE and text encoders are the preset's, the UNet is new.
    said.clear()
    fresh = train.train(tmp_path / "fresh", train.Recipe.quick(), say=said.append, encoders=out)
    assert not any(m.startswith(("[vae]", "[text]")) for m in said)
    assert json.loads((fresh / "planetgen-preset.json").read_text())["encoders"]["preset"] == "planet"
    for part in ("vae", "text_encoder_2"):
        (name,) = [f.name for f in (out / part).glob("*.safetensors")]
        assert (fresh / part / name).read_bytes() == (out / part / name).read_bytes(), part
    assert any(m.startswith("[unet] 1/") for m in said)  # from the first step, not a snapshot's


def test_latents_are_normalised_per_channel_as_the_pipeline_denormalises_them() -> None:
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=[8], down_block_types=["DownEncoderBlock2D"], up_block_types=["UpDecoderBlock2D"],
        latent_channels=4, norm_num_groups=4,
    )  # fmt: skip
    images = torch.rand(6, 3, 16, 16) * 2 - 1
    said: list[str] = []
    with torch.no_grad():
        raw = vae.encode(images).latent_dist.mean
    train.normalise_latents(vae, raw, said.append)
    latents = train.encode_latents(vae, images)
    assert torch.allclose(latents.mean(dim=(0, 2, 3)), torch.zeros(4), atol=1e-5)
    assert torch.allclose(latents.std(dim=(0, 2, 3)), torch.ones(4), atol=1e-5)
    # What StableDiffusionXLPipeline (and the torch backend's decode) does before vae.decode.
    mean = torch.tensor(vae.config.latents_mean).view(1, 4, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(1, 4, 1, 1)
    assert torch.allclose(latents * std / vae.config.scaling_factor + mean, raw, atol=1e-5)
    assert said and said[0].startswith("[vae] latents per channel")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--resume", "snap", "--base", "w"], "--resume, --base and --encoders: choose one"),
        (["--base", "w", "--encoders", "w"], "--resume, --base and --encoders: choose one"),
        (["--resume", "snap", "--resume-step", "-1"], "--resume-step: between 0 and"),
        (["--quick", "--resume", "snap", "--resume-step", "99999"], "--resume-step: between 0 and"),
        (["--unet-steps", "1"], "--unet-steps: at least 2"),
        (["--moon-weight", "-1"], "--moon-weight: at least 0"),
    ],
)
def test_bad_resume_arguments_exit_2_and_say_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], words: str
) -> None:
    with pytest.raises(SystemExit) as stopped:
        train.main(["--out", str(tmp_path / "out"), *args])
    assert stopped.value.code == 2
    assert words in capsys.readouterr().err


def test_the_vae_loss_weighs_a_colour_cast_above_noise_of_the_same_size() -> None:
    torch.manual_seed(0)
    target = torch.full((1, 3, 16, 16), -1.0)
    target[:, :, 4:12, 4:12] = torch.tensor([0.6, -0.86, -0.68]).view(1, 3, 1, 1)  # a crimson body
    cast = target + torch.tensor([-0.1, 0.1, -0.1]).view(1, 3, 1, 1)  # crimson drifting to amber
    noise = target + torch.sign(torch.randn_like(target)) * 0.1  # the same |error|, no mean
    grey = target + 0.1  # the same |error| and a cast too, but in brightness: the hue is kept
    assert train.vae_loss(cast, target) > train.vae_loss(grey, target) > train.vae_loss(noise, target)


def test_the_vae_loss_weighs_a_star_smeared_into_a_blob_above_a_faint_haze() -> None:
    # A star on a black sky; two reconstructions with the same total error: the star smeared into a
    # blob bright enough to pass for a moon, and the same error spread thin over the sky.
    target = torch.full((1, 3, 16, 16), -1.0)
    target[:, :, 8, 8] = -0.2
    blob = target.clone()
    blob[:, :, 7:10, 7:10] = torch.maximum(blob[:, :, 7:10, 7:10], torch.tensor(-0.7))
    haze = target + (blob - target).abs().sum() / 3 / 256
    assert float((blob - target).abs().sum()) == pytest.approx(float((haze - target).abs().sum()), rel=1e-4)
    # Without the sky term the two cost about the same (1.06x); the blob must cost clearly more.
    assert train.vae_loss(blob, target) > 1.5 * train.vae_loss(haze, target)


def test_vae_crops_land_on_planets_and_moons() -> None:
    drawn = [s for s in train.scenes(12, seed=3) if s.moon_list][:4]
    images = train.render_all(drawn)
    gen = torch.Generator().manual_seed(0)
    crops = torch.cat([train._vae_crops(images, drawn, 64, gen) for _ in range(8)])
    assert crops.shape == (32, 3, 64, 64)
    bright = ((crops + 1) / 2).amax(dim=(1, 2, 3)) > 0.5  # a lit body, not just sky and stars
    assert float(bright.float().mean()) >= 0.75


def test_the_loss_weighs_moon_pixels_and_only_those() -> None:
    drawn = train.scenes(40, seed=3)
    weights = train.loss_weights(drawn, 15.0)
    h, w = train.NATIVE[1] // train.LATENT_SCALE, train.NATIVE[0] // train.LATENT_SCALE
    assert weights.shape == (40, 1, h, w)
    assert set(torch.unique(weights).tolist()) <= {1.0, 16.0}
    for s, weight in zip(drawn, weights, strict=True):
        heavy = weight[0] > 1
        assert bool(heavy.any()) == bool(s.moon_list)
        for moon in s.moon_list:  # each moon's centre is weighed; the planet's never is
            assert heavy[min(int(moon.y * h), h - 1), min(int(moon.x * w), w - 1)]
        assert not heavy[min(int(s.cy * h), h - 1), min(int(s.cx * w), w - 1)]
    # Moons are a small part of a frame: the weighting shifts the loss toward them, not onto them.
    assert 0.005 < float((weights > 1).float().mean()) < 0.05


def test_the_weighting_is_normalised_and_moves_the_loss(tmp_path: Path) -> None:
    from planet_predictors.presets import tiny

    parts = train.build_components(tiny._write_tokenizer_files(tmp_path, train.vocabulary(), merges=50))
    text = train.FrozenText(parts)
    latents = torch.randn((2, 4, 40, 96), generator=torch.Generator().manual_seed(1))
    corner = torch.ones((2, 1, 40, 96))
    corner[:, :, :4, :4] = 16.0

    def loss(where: torch.Tensor | None) -> float:
        gen = torch.Generator().manual_seed(0)  # the same timesteps and noise for every call
        with torch.no_grad():
            return float(train.diffusion_loss(parts, text, latents, ["teal planet"] * 2, gen, where=where))

    plain = loss(None)
    assert loss(torch.full((2, 1, 40, 96), 16.0)) == pytest.approx(plain, rel=1e-5)  # scale-free
    assert loss(corner) != pytest.approx(plain, rel=1e-3)


@pytest.mark.slow
def test_an_untrained_vae_loses_what_the_verifier_checks() -> None:
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=[8, 8], down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2, latent_channels=4, norm_num_groups=4,
    ).eval()  # fmt: skip
    drawn = train.scenes(4, seed=1)
    assert train.round_trip_follows(vae, drawn) == 0
