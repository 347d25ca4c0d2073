"""Classical checks of a planet image against its prompt, combined into a score in [0, 1].

Fast by construction (a few milliseconds at 1536x640, see ``bench/results/verifier.md``): the planet
and its moons are found on a copy reduced to :data:`ANALYSIS_HEIGHT` rows (bright components against
the dark sky), and only the sharpness check reads full-resolution pixels, in a band around the limb.

The checks, each with its own score; a check whose input the prompt does not name is skipped:

- ``planet``: one body large enough to be the planet (without it, every other check fails, named);
- ``composition``: its bounding box inside the region, its diameter within the region's bounds;
- ``color``: its measured colour is nearest (CIELAB) to the one the prompt names, of :data:`palette.COLORS`;
- ``moons``: grey bodies apart from the planet, counted against the prompt's moon phrase;
- ``sharpness``: the limb's edge width in pixels (a crisp upscale keeps it near one pixel, a smudged
  one spreads it over several); left out on a render an upscale chain will still sharpen.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image
from scipy import ndimage

from planet_predictors.quality import palette
from planet_predictors.quality.region import Region

FloatImage = npt.NDArray[np.float32]
#: Rows of the reduced copy the planet and moons are found on (the native height of the planet preset).
ANALYSIS_HEIGHT = 160
#: Brighter than any sky (max channel, 0-1): the dataset keeps nebulae and galaxies under 0.07.
BODY_THRESHOLD = 0.11
#: A moon is grey: its saturation stays under this (suns and star glows are warmer).
MOON_SATURATION = 0.2
#: Moon areas at the analysis height, in pixels (a moonlet is about 55, a small moon about 340).
MOON_AREA = (40, 900)
#: Edge widths (Gaussian sigma, pixels at the image's own size) scored 1 and 0.
SHARP_SIGMA = (0.9, 1.7)
#: What each failed check multiplies the score by.
FAILED_FACTOR = 0.5
WEIGHTS: Mapping[str, float] = {"composition": 0.3, "color": 0.3, "moons": 0.2, "sharpness": 0.2}


@dataclasses.dataclass(frozen=True)
class Check:
    """One measurement: its score in [0, 1], whether it passed, and what was measured."""

    name: str
    passed: bool
    score: float
    detail: str


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The combined score and every check that ran."""

    score: float
    checks: tuple[Check, ...]

    @property
    def failed(self) -> list[str]:
        """Names of the checks that did not pass."""
        return [c.name for c in self.checks if not c.passed]

    def as_dict(self) -> dict[str, Any]:
        """The JSON a prediction carries (``quality``)."""
        return {
            "score": round(self.score, 4),
            "failed": self.failed,
            "checks": {c.name: {"passed": c.passed, "score": round(c.score, 4), "detail": c.detail}
                       for c in self.checks},
        }  # fmt: skip


@dataclasses.dataclass(frozen=True)
class _Body:
    labels: npt.NDArray[np.int32]
    planet: npt.NDArray[np.bool_]
    moons: int
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive) at the analysis size


class Verifier:
    """Scores images for one pipeline's composition region."""

    def __init__(self, region: Region | None = None, *, sharpness: bool = True) -> None:
        self.region = region or Region()
        self.sharpness = sharpness

    def verify(self, image: Image.Image | FloatImage, prompt: str) -> Verdict:
        """Measure ``image`` (PIL or ``(h, w, 3)`` floats in [0, 1]) against ``prompt``."""
        # PIL images stay 8-bit until cropped: converting a 3440x1440 frame to floats costs more
        # than every check together.
        pil = image.convert("RGB") if isinstance(image, Image.Image) else _to_pil(image)
        small = _reduce(pil)
        body = _find(small, self.region)
        wanted, moons = palette.requested_color(prompt), palette.requested_moons(prompt)
        if body is None:
            # Every check the prompt asks for fails by name: a client (and generation.regenerate's
            # ``checks``, and the demo's count) must not read "colour not failed" as "colour right".
            asked = ["composition"]
            asked += ["color"] if wanted is not None else []
            asked += ["moons"] if moons is not None else []
            asked += ["sharpness"] if self.sharpness else []
            missing = Check("planet", False, 0.0, "no body brighter than the sky large enough to be a planet")
            return Verdict(
                0.0, (missing, *(Check(name, False, 0.0, "no planet to measure") for name in asked))
            )
        checks = [
            Check("planet", True, 1.0, f"{int(body.planet.sum())} px at {small.shape[1]}x{small.shape[0]}")
        ]
        checks.append(self._composition(body, small.shape[1], small.shape[0]))
        if wanted is not None:
            checks.append(_color(small, body, wanted))
        if moons is not None:
            checks.append(_moons(body.moons, moons))
        if self.sharpness:
            checks.append(_sharpness(pil, body, small.shape))
        total = sum(WEIGHTS[c.name] for c in checks[1:])
        score = sum(WEIGHTS[c.name] * c.score for c in checks[1:]) / total
        # Each failed check halves the score: a planet in the wrong place or colour is not 70 % good,
        # and a gate's floor should see a canary that fails one check on most images.
        score *= FAILED_FACTOR ** sum(not c.passed for c in checks[1:])
        return Verdict(float(score), tuple(checks))

    def _composition(self, body: _Body, width: int, height: int) -> Check:
        x0, y0, x1, y1 = body.box
        rx0, ry0, rx1, ry1 = self.region.box(width, height)
        ys, xs = np.nonzero(body.planet)
        inside = float(np.mean((xs >= rx0 - 1) & (xs < rx1 + 1) & (ys >= ry0 - 1) & (ys < ry1 + 1)))
        diameter = (y1 - y0) / height
        sized = self.region.min_diameter - 0.02 <= diameter <= self.region.max_diameter + 0.02
        passed = inside >= 0.995 and sized
        detail = (
            f"box x {x0 / width:.3f}-{x1 / width:.3f} y {y0 / height:.3f}-{y1 / height:.3f} "
            f"(region x {self.region.left}-{self.region.right} y {self.region.top}-{self.region.bottom}), "
            f"diameter {diameter:.2f} of the height "
            f"(allowed {self.region.min_diameter}-{self.region.max_diameter})"
        )
        return Check("composition", passed, inside * (1.0 if sized else 0.5), detail)


def _to_pil(image: FloatImage) -> Image.Image:
    return Image.fromarray(np.clip(np.asarray(image) * 255 + 0.5, 0, 255).astype(np.uint8))


def _reduce(image: Image.Image) -> FloatImage:
    """A box-filtered copy :data:`ANALYSIS_HEIGHT` rows high, as floats (box keeps moons' areas honest)."""
    w, h = image.size
    if h > ANALYSIS_HEIGHT:
        image = image.resize((max(round(w * ANALYSIS_HEIGHT / h), 1), ANALYSIS_HEIGHT), Image.Resampling.BOX)
    return np.asarray(image, dtype=np.float32) / 255.0


def _find(small: FloatImage, region: Region) -> _Body | None:
    value = ndimage.uniform_filter(small.max(axis=2), size=2)
    labels, count = ndimage.label(value > BODY_THRESHOLD, structure=np.ones((3, 3)))
    if count == 0:
        return None
    areas = np.bincount(labels.ravel())[1:]
    biggest = int(np.argmax(areas)) + 1
    height = small.shape[0]
    smallest_planet = 0.5 * math.pi * (region.min_diameter * height / 2) ** 2 * 0.5
    if areas[biggest - 1] < smallest_planet:
        return None
    planet = ndimage.binary_fill_holes(labels == biggest)
    ys, xs = np.nonzero(planet)
    moons = 0
    saturation = (small.max(axis=2) - small.min(axis=2)) / np.maximum(small.max(axis=2), 1e-3)
    for index, area in enumerate(areas, start=1):
        if index == biggest or not MOON_AREA[0] <= area <= MOON_AREA[1]:
            continue
        if float(np.mean(saturation[labels == index])) < MOON_SATURATION:
            moons += 1
    return _Body(labels, planet, moons, (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1))


def _lab(rgb: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """SRGB (0-1, ``(..., 3)``) to CIELAB (D65)."""
    linear = np.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = linear @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


#: The palette as the verifier measures it: the lit body is darker than the albedo (shading).
_PALETTE_LAB = {name: _lab(np.array(rgb) * 0.85) for name, rgb in palette.COLORS.items()}


def _measured_color(small: FloatImage, body: _Body) -> npt.NDArray[np.float64]:
    core = ndimage.binary_erosion(body.planet, iterations=2)
    if core.sum() < 20:
        core = body.planet
    pixels = small[core].astype(np.float64)
    value = pixels.max(axis=1)
    lit = pixels[value >= np.quantile(value, 0.4)]  # the lit side: shading would darken every colour
    median: npt.NDArray[np.float64] = np.median(lit, axis=0)
    return median


def _color(small: FloatImage, body: _Body, wanted: str) -> Check:
    measured = _lab(_measured_color(small, body))
    weight = np.array([0.5, 1.0, 1.0])  # lightness counts less than hue: shading and haze change it
    distances = {n: float(np.linalg.norm((measured - lab) * weight)) for n, lab in _PALETTE_LAB.items()}
    nearest = min(distances, key=distances.__getitem__)
    passed = nearest == wanted
    score = 1.0 if passed else max(0.0, 1.0 - distances[wanted] / 60.0) * 0.5
    rgb = ",".join(f"{c:.2f}" for c in _measured_color(small, body))
    return Check("color", passed, score, f"measured rgb({rgb}), nearest {nearest!r}, asked {wanted!r}")


def _moons(found: int, wanted: int) -> Check:
    if wanted >= palette.RING_MIN:
        passed = found >= palette.RING_MIN
        score = 1.0 if passed else found / palette.RING_MIN * 0.5
        return Check("moons", passed, score, f"{found} moons, a ring asks for {palette.RING_MIN} or more")
    passed = found == wanted
    score = 1.0 if passed else (0.5 if abs(found - wanted) == 1 else 0.0)
    return Check("moons", passed, score, f"{found} moons, asked {wanted}")


def _sharpness(full: Image.Image, body: _Body, small_shape: tuple[int, ...]) -> Check:
    """Edge width at the limb, as the sigma of the Gaussian blur it carries (in the image's pixels)."""
    scale = full.size[1] / small_shape[0]
    x0, y0, x1, y1 = body.box
    pad = 3
    sx0, sy0 = max(x0 - pad, 0), max(y0 - pad, 0)
    sx1, sy1 = min(x1 + pad, small_shape[1]), min(y1 + pad, small_shape[0])
    planet = body.planet[sy0:sy1, sx0:sx1]
    # The disc's limb, not a ring's or a halo's soft edge: opening drops the thin ring from the mask.
    disc = ndimage.binary_opening(planet, iterations=3)
    planet = disc if disc.sum() > planet.sum() * 0.5 else planet
    band = ndimage.binary_dilation(planet, iterations=2) & ~ndimage.binary_erosion(planet, iterations=4)
    fy0, fy1 = round(sy0 * scale), round(sy1 * scale)
    fx0, fx1 = round(sx0 * scale), round(sx1 * scale)
    crop = np.asarray(full.crop((fx0, fy0, fx1, fy1)), dtype=np.float32).max(axis=2) / 255.0
    if crop.size == 0 or not band.any():
        return Check("sharpness", False, 0.0, "no limb to measure")
    gy, gx = np.gradient(crop)
    gradient = np.hypot(gx, gy)
    rows = np.minimum((np.arange(crop.shape[0]) / scale).astype(int), band.shape[0] - 1)
    cols = np.minimum((np.arange(crop.shape[1]) / scale).astype(int), band.shape[1] - 1)
    on_band = band[np.ix_(rows, cols)]
    # Blur it once more by a known sigma (1 px): a steep edge loses much of its slope, an edge that is
    # already blurred by s loses little (its slope scales by s / sqrt(s^2 + 1)). That ratio gives s
    # without knowing the edge's contrast, so a halo, a haze or a dark side does not read as blur.
    by, bx = np.gradient(ndimage.gaussian_filter(crop, 1.0))
    # The steepest limb pixels, and how much of their slope the extra blur takes away there.
    g = gradient[on_band]
    steep = g >= np.quantile(g, 0.98)
    reblurred = float(np.median(np.hypot(bx, by)[on_band][steep]))
    steepest = float(np.median(g[steep]))
    ratio = min(reblurred / max(steepest, 1e-6), 0.995)
    sigma = ratio / math.sqrt(1 - ratio * ratio)
    low, high = SHARP_SIGMA
    score = float(np.clip((high - sigma) / (high - low), 0.0, 1.0))
    return Check(
        "sharpness",
        sigma <= (low + high) / 2,
        score,
        f"limb edge width {sigma:.2f} px (crisp <= {(low + high) / 2:.1f})",
    )
