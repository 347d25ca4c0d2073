"""Image encoding: the fast PNG path is lossless and keeps provenance; the Pillow fallback still works."""

from __future__ import annotations

import io
import logging
import struct

import numpy as np
import pytest
from PIL import Image

from planet_predictors import imaging

PROVENANCE = {
    "planetgen:pipeline": "p",
    "planetgen:revision": "r7",
    "planetgen:model_hash": "sha256:" + "ab" * 32,
    "planetgen:seed": "1234",
    "planetgen:prompt_sha256": "0f" * 32,
}


def noisy(width: int, height: int, channels: int = 3) -> Image.Image:
    """A gradient with noise: every byte value and every filter path gets exercised."""
    rng = np.random.default_rng(7)
    ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    pixels = np.clip(ramp + rng.normal(0, 20, (height, width, channels)), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def decode(data: bytes) -> tuple[Image.Image, dict[str, str]]:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return image.copy(), dict(image.text)  # type: ignore[attr-defined]


def chunk_types(png: bytes) -> list[bytes]:
    types, at = [], 8
    while at < len(png):
        length, kind = struct.unpack(">I4s", png[at : at + 8])
        types.append(kind)
        at += 12 + length
    return types


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L"])
def test_png_gives_back_the_exact_pixels_and_the_provenance(mode: str) -> None:
    image = noisy(97, 31, channels=4 if mode == "RGBA" else 3).convert(mode)
    decoded, text = decode(imaging.encode(image, "png", provenance=PROVENANCE))
    assert decoded.mode == mode
    assert np.array_equal(np.asarray(decoded), np.asarray(image))
    assert text == PROVENANCE


def test_fast_png_is_used_when_available_and_matches_pillow_pixels() -> None:
    if imaging._fpng is None:
        pytest.skip("fpng is not installed here")
    image = noisy(300, 120)
    fast = imaging.encode(image, "png", provenance=PROVENANCE)
    assert b"fdEC" in chunk_types(fast)  # fpng's own marker chunk: the fast path really ran
    assert chunk_types(fast)[:6] == [b"IHDR"] + [b"tEXt"] * 5  # text before the pixels, as Pillow puts it
    decoded, _ = decode(fast)
    assert np.array_equal(np.asarray(decoded), np.asarray(image))


def test_without_fpng_pillow_writes_the_same_pixels_and_text(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import builtins

    real_import = builtins.__import__

    def no_fpng(name: str, *args: object, **kwargs: object) -> object:
        if name == "fpng":
            raise ImportError("No module named 'fpng'")
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_fpng)
    with caplog.at_level(logging.WARNING, logger="planet_predictors.imaging"):
        loaded = imaging._load_fpng()
    assert loaded is None
    assert "Pillow" in caplog.text
    monkeypatch.setattr(imaging, "_fpng", None)
    image = noisy(64, 16)
    data = imaging.encode(image, "png", provenance=PROVENANCE)
    assert b"fdEC" not in chunk_types(data)
    decoded, text = decode(data)
    assert np.array_equal(np.asarray(decoded), np.asarray(image))
    assert text == PROVENANCE


def test_text_outside_latin1_survives_as_itxt_like_pillow_writes_it() -> None:
    provenance = {"planetgen:seed": "1", "planetgen:note": "ночь на Марсе ✨"}
    data = imaging.encode(noisy(8, 8), "png", provenance=provenance)
    assert imaging.read_provenance(data) == provenance


@pytest.mark.parametrize("fmt", ["webp", "jpeg"])
def test_webp_and_jpeg_still_carry_provenance(fmt: imaging.Format) -> None:
    data = imaging.encode(noisy(64, 32), fmt, provenance=PROVENANCE)
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == fmt.upper()
    assert imaging.read_provenance(data) == PROVENANCE


def test_with_text_refuses_bytes_that_are_not_a_png() -> None:
    with pytest.raises(ValueError, match="not a PNG"):
        imaging.with_text(b"GIF89a" + b"\0" * 40, PROVENANCE)
