"""Procedural, attribute-labelled planets: the ground truth the ``planet`` preset is trained on.

A :class:`Scene` is drawn from a seed (colour, atmosphere, moons and sky from the prompt vocabulary;
the planet placed inside the composition region) and :func:`render` paints it at any size: every
texture is a function of frame coordinates in units of the height, so the same scene at 384x160 and
at 768x320 is the same picture, which is what the upscaler learns from.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import numpy.typing as npt

from planet_predictors.quality import palette
from planet_predictors.quality.region import Region

Image = npt.NDArray[np.floating[Any]]
#: Atmospheres that draw a ring around the planet (it widens the planet's footprint).
RINGED = ("thin hazy rings", "auroral rings")
#: Brightest any sky feature gets (max channel): the verifier's planet mask starts above it.
SKY_CEILING = 0.07
_RING_WIDTH = 1.75  # ring half-width, in planet radii
# Neutral: the verifier calls a moon grey under 0.2 saturation, and its antialiased edge already mixes
# in the blue-black sky (a bluish grey measured 0.13-0.16, leaving the VAE no room for a tint).
_MOON_GREY = (0.76, 0.76, 0.76)
_SUN = (1.0, 0.6, 0.25)  # the suns and their glow


@dataclasses.dataclass(frozen=True)
class Moon:
    """A moon: centre (x as a fraction of the width, y of the height) and radius (of the height)."""

    x: float
    y: float
    r: float


@dataclasses.dataclass(frozen=True)
class Scene:
    """Everything :func:`render` needs; ``seed`` drives textures and stars."""

    color: str
    atmosphere: str
    moons: str
    sky: str
    cx: float  # fraction of the width
    cy: float  # fraction of the height
    radius: float  # fraction of the height
    moon_list: tuple[Moon, ...]
    seed: int
    light: float  # light direction (radians, in the image plane)
    ethereal: bool = False

    def prompt(self, template: str = "{color} planet with {atmosphere}, {moons}, {sky}") -> str:
        """The structured prompt this scene illustrates."""
        return template.format(color=self.color, atmosphere=self.atmosphere, moons=self.moons, sky=self.sky)


def sample(
    rng: np.random.Generator,
    *,
    aspect: float,
    region: Region | None = None,
    ethereal: bool = False,
    color: str | None = None,
    offset: float = 0.0,
) -> Scene:
    """A random scene; ``offset`` (a fraction of the width) pushes the planet past the region's near side."""
    region = region or Region()
    color = color or str(rng.choice(list(palette.COLORS)))
    atmosphere = str(rng.choice(palette.ATMOSPHERES))
    moons = str(
        rng.choice(["no moons", "one small moon", "two moons", "a ring of moonlets", "a shattered moon ring"])
    )
    sky = str(rng.choice(palette.SKIES))
    # Diameter inside the bounds with a margin, so the verifier's measurement noise stays inside them.
    radius = float(rng.uniform(region.min_diameter + 0.06, region.max_diameter - 0.14)) / 2
    reach = radius * (_RING_WIDTH if atmosphere in RINGED else 1.12)  # ring or halo
    x0, x1 = region.left * aspect + reach + 0.02, region.right * aspect - reach - 0.02
    y0, y1 = region.top + radius * 1.12 + 0.02, region.bottom - radius * 1.12 - 0.02
    if palette.MOONS[moons]:  # leave the moons room right of the planet
        x1 = max(x0, min(x1, aspect - moon_room(radius, ringed=atmosphere in RINGED)))
    cx = float(rng.uniform(x0, x1)) if x1 > x0 else (x0 + x1) / 2
    cy = float(rng.uniform(y0, y1)) if y1 > y0 else 0.5
    if offset:  # past the nearer side of the region by ``offset`` of the width, but still in frame
        push = offset * aspect
        cx = cx - push if cx < aspect / 2 else cx + push
        cx = float(np.clip(cx, radius * 0.3, aspect - radius * 0.3))
        edge = min(cx - region.left * aspect, region.right * aspect - cx)
        if edge > radius * 0.6:  # the push left it inside: put the limb across the region's edge
            cx = (
                region.left * aspect + radius * 0.2
                if cx < aspect / 2
                else region.right * aspect - radius * 0.2
            )
    moon_list = _moons(rng, palette.MOONS[moons], cx=cx, cy=cy, radius=radius, aspect=aspect,
                       ringed=atmosphere in RINGED)  # fmt: skip
    return Scene(
        color=color,
        atmosphere=atmosphere,
        moons=moons,
        sky=sky,
        cx=cx / aspect,
        cy=cy,
        radius=radius,
        moon_list=moon_list,
        seed=int(rng.integers(0, 2**31 - 1)),
        light=float(rng.uniform(math.radians(200), math.radians(250))),
        ethereal=ethereal,
    )


# Moons sit right of the planet at set heights for their count, so the UNet learns one layout per
# phrase: a moon anywhere around the planet averages, in the early denoising steps, into a faint halo
# the later steps never draw, and moons on either side drew both (docs/model.md, "Moons at a set place").
_MOON_SIZES = (0.065, 0.05)
_MOONLET = 0.026  # a ring's moonlets
_MOON_GAP = 0.08  # past the limb or the ring
_MOON_JITTER = 0.04  # farther out, at most
_MOON_HEIGHTS = {1: (0.0,), 2: (-0.24, 0.24)}  # from the planet's centre, in units of the height


def _moon_distance(radius: float, r: float, *, ringed: bool) -> float:
    """From the planet's centre to a moon's of radius ``r``, before the jitter: clear of the limb or ring."""
    return radius * (_RING_WIDTH + 0.15 if ringed else 1.12) + r + _MOON_GAP


def _arc_distance(radius: float, *, ringed: bool) -> float:
    """From the planet's centre to its moonlets' arc."""
    return radius * (1.95 if ringed else 1.45) + 0.04


def moon_room(radius: float, *, ringed: bool) -> float:
    """How far right of the planet's centre its moons reach, edge margin included (units of the height)."""
    big = _moon_distance(radius, _MOON_SIZES[0], ringed=ringed) + _MOON_JITTER + _MOON_SIZES[0]
    return max(big, _arc_distance(radius, ringed=ringed) + _MOONLET) + 0.04


def _moons(
    rng: np.random.Generator, count: int, *, cx: float, cy: float, radius: float, aspect: float, ringed: bool
) -> tuple[Moon, ...]:
    """Moons right of the planet (left when a planet pushed off-region leaves no room there)."""
    if count == 0:
        return ()
    side = 1.0 if cx + moon_room(radius, ringed=ringed) < aspect else -1.0
    if count >= palette.RING_MIN:  # an arc of moonlets
        start = float(rng.uniform(-0.9, -0.5))
        dist = _arc_distance(radius, ringed=ringed)
        found = []
        for i in range(count):
            angle = start + i * (1.6 / (count - 1))
            x, y = cx + side * dist * math.cos(angle), cy + dist * math.sin(angle) * 0.9
            found.append(Moon(x / aspect, float(np.clip(y, 0.06, 0.94)), _MOONLET))
        return tuple(found)
    found = []
    for r, dy in zip(_MOON_SIZES, _MOON_HEIGHTS[count], strict=False):
        x = cx + side * (_moon_distance(radius, r, ringed=ringed) + float(rng.uniform(0.0, _MOON_JITTER)))
        y = float(np.clip(cy + dy + float(rng.uniform(-0.03, 0.03)), r + 0.04, 1 - r - 0.04))
        found.append(Moon(x / aspect, y, r))
    return tuple(found)


def moon_mask(scene: Scene, width: int, height: int, *, margin: float = 0.0) -> Image:
    """``(height, width)``: 1 where a moon (grown by ``margin``, in units of the height) covers a pixel."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    u, v = (xs + 0.5) / height, (ys + 0.5) / height
    mask = np.zeros((height, width), dtype=np.float32)
    for moon in scene.moon_list:
        near = np.hypot(u - moon.x * width / height, v - moon.y) < moon.r + margin
        mask[near] = 1.0
    return mask


def render(scene: Scene, width: int, height: int) -> Image:
    """Paint ``scene`` as an ``(height, width, 3)`` float image in [0, 1]."""
    rng = np.random.default_rng(scene.seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    u, v = (xs + 0.5) / height, (ys + 0.5) / height  # frame coordinates in units of the height
    image = _sky(scene, u, v, rng, width / height)
    base = np.array(palette.COLORS[scene.color], dtype=np.float32)
    cx, cy, r = scene.cx * width / height, scene.cy, scene.radius
    dx, dy = (u - cx) / r, (v - cy) / r
    lx, ly = math.cos(scene.light), math.sin(scene.light)
    light = np.array([lx * 0.6, ly * 0.6, 0.75], dtype=np.float32)
    light /= np.linalg.norm(light)
    ring = scene.atmosphere in RINGED
    tilt = 0.2
    rx, ry = dx * math.cos(tilt) + dy * math.sin(tilt), -dx * math.sin(tilt) + dy * math.cos(tilt)
    if ring:  # the far half of the ring, behind the planet
        image = _ring(image, base, rx, ry, r, height, front=False, aurora=scene.atmosphere == "auroral rings")
    if scene.ethereal:
        image = _halo(image, base, dx, dy, strength=0.32, reach=0.16)
    elif scene.atmosphere == "thin icy haze":
        image = _halo(image, base * 0.5 + 0.5, dx, dy, strength=0.18, reach=0.07)
    d2 = dx * dx + dy * dy
    inside = d2 < 1.0
    z = np.sqrt(np.clip(1.0 - d2, 0.0, 1.0))
    shade = 0.5 + 0.62 * np.clip(dx * light[0] + dy * light[1] + z * light[2], 0.0, 1.0)
    albedo = _surface(scene, base, dx, dy, z, rng)
    body = albedo * shade[..., None]
    rim = np.clip((d2 - 0.8) / 0.2, 0.0, 1.0)[..., None] ** 2  # atmosphere at the limb
    body = body * (1 - 0.35 * rim) + (base * 0.45 + 0.55) * 0.35 * rim
    if scene.ethereal:  # pastel and luminous
        body = body * 0.8 + (base * 0.4 + 0.6) * 0.2 + 0.04
    edge = np.clip((1.0 - np.sqrt(d2)) * r * height * 1.5, 0.0, 1.0)[..., None]  # one-pixel antialias
    image = np.where(inside[..., None], image * (1 - edge) + body * edge, image)
    if ring:
        image = _ring(image, base, rx, ry, r, height, front=True, aurora=scene.atmosphere == "auroral rings")
    for moon in scene.moon_list:
        image = _moon(image, u, v, moon, width / height, light, height)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def _noise(rng: np.random.Generator, u: Image, v: Image, *, cells: float, octaves: int = 4) -> Image:
    """Value noise (fractal, bilinear) over frame coordinates; in [0, 1]."""
    total = np.zeros_like(u)
    amplitude, norm = 1.0, 0.0
    for octave in range(octaves):
        scale = cells * 2**octave
        gx, gy = (u + 1.0) * scale, (v + 1.0) * scale
        # The grid is drawn at a fixed size for the octave, so any resolution samples the same values.
        side = int(12 * scale) + 3
        grid = rng.random((side, side)).astype(np.float32)
        ix, iy = np.floor(gx).astype(np.int64), np.floor(gy).astype(np.int64)
        fx, fy = gx - ix, gy - iy
        fx, fy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
        ix, iy = np.clip(ix, 0, grid.shape[1] - 2), np.clip(iy, 0, grid.shape[0] - 2)
        top = grid[iy, ix] * (1 - fx) + grid[iy, ix + 1] * fx
        bottom = grid[iy + 1, ix] * (1 - fx) + grid[iy + 1, ix + 1] * fx
        total += amplitude * (top * (1 - fy) + bottom * fy)
        norm += amplitude
        amplitude *= 0.5
    return total / norm


def _sky(scene: Scene, u: Image, v: Image, rng: np.random.Generator, aspect: float) -> Image:
    image = np.zeros((*u.shape, 3), dtype=np.float32) + np.array([0.008, 0.01, 0.02], dtype=np.float32)
    sky = scene.sky
    if "nebula" in sky:
        cloud = np.clip(_noise(rng, u, v, cells=1.5) * 1.6 - 0.6, 0.0, 1.0)
        tint = np.array([0.9, 0.3, 0.8] if rng.random() < 0.5 else [0.3, 0.45, 1.0], dtype=np.float32)
        image += cloud[..., None] * tint * SKY_CEILING * 0.9
    if "galax" in sky:
        # Dim enough that a star on the band, blurred by the VAE, stays under the body threshold
        # (at 0.06 the band's stars came back as 40-170 pixel grey blobs: moons to the verifier).
        band = np.exp(-(((v - 0.5) - (u - aspect / 2) * 0.35) ** 2) / 0.02)
        image += band[..., None] * np.array([1.0, 0.8, 0.55], dtype=np.float32) * SKY_CEILING * 0.55
    # Sparse and faint: a dense field of bright stars came back from the VAE as blobs, two close
    # stars as one grey body of moon size (an extra moon to the verifier, and to the eye).
    n_stars = int(60 * aspect)
    sx, sy = rng.uniform(0, aspect, n_stars), rng.uniform(0, 1, n_stars)
    brightness = rng.uniform(0.1, 0.4, n_stars)
    _dots(image, u, v, sx, sy, np.full(n_stars, 0.0035), brightness, np.array([1.0, 1.0, 1.0]))
    if sky in ("twin suns", "binary sunrise"):
        corner = aspect - 0.12 if rng.random() < 0.5 else 0.12
        sx = np.array([corner - 0.04, corner + 0.05])
        sy = np.array([0.08, 0.12])
        glow = np.exp(-((u[..., None] - sx) ** 2 + (v[..., None] - sy) ** 2) / 0.01).sum(-1)
        # Suns are orange and a few latent pixels wide, well clear of a moon's grey: small and at
        # saturation 0.27, the VAE's round trip took them under the verifier's 0.2 (moons to it).
        image += glow[..., None] * np.array(_SUN, dtype=np.float32) * SKY_CEILING * 0.8
        _dots(image, u, v, sx, sy, np.array([0.02, 0.016]), np.array([1.0, 0.95]), np.array(_SUN))
    return image


def _dots(
    image: Image,
    u: Image,
    v: Image,
    xs: npt.NDArray[np.float64],
    ys: npt.NDArray[np.float64],
    radii: npt.NDArray[np.float64],
    brightness: npt.NDArray[np.float64],
    color: npt.NDArray[np.float64],
) -> None:
    """Soft dots (stars, suns) added in place; each touches only its own neighbourhood."""
    height = u.shape[0]
    for x, y, r, b in zip(xs, ys, radii, brightness, strict=True):
        x0, x1 = max(int((x - 4 * r) * height), 0), int((x + 4 * r) * height) + 2
        y0, y1 = max(int((y - 4 * r) * height), 0), int((y + 4 * r) * height) + 2
        du, dv = u[y0:y1, x0:x1] - x, v[y0:y1, x0:x1] - y
        sigma = max(r, 0.6 / height)
        image[y0:y1, x0:x1] += (b * np.exp(-(du * du + dv * dv) / (2 * sigma * sigma)))[..., None] * color


def _surface(scene: Scene, base: Image, dx: Image, dy: Image, z: Image, rng: np.random.Generator) -> Image:
    """The planet's albedo: its colour, textured by the atmosphere (hue kept, brightness varied)."""
    # Texture coordinates on the sphere (so bands curve with the limb).
    su, sv = dx / (1.0 + z * 0.6) * 2.0 + 3.0, dy / (1.0 + z * 0.6) * 2.0 + 3.0
    n = _noise(rng, su, sv, cells=2.0, octaves=4)
    albedo = np.broadcast_to(base, (*dx.shape, 3)).copy()
    kind = scene.atmosphere
    if kind in ("swirling storm bands", "thin hazy rings", "auroral rings"):
        bands = np.sin(dy * 9.0 + (n - 0.5) * 5.0)
        albedo *= (0.95 + 0.2 * bands)[..., None]
    elif kind == "frosted cloudy zones":
        clouds = np.clip((n - 0.5) * 4.0, 0.0, 1.0)[..., None]
        albedo = albedo * (1 - 0.4 * clouds) + 0.4 * clouds * np.float32(0.95)
    elif kind == "crystalline ice fields":
        ice = np.clip((n - 0.55) * 6.0, 0.0, 1.0)[..., None]
        albedo = albedo * (1 - 0.45 * ice) + 0.45 * ice * np.array([0.88, 0.95, 1.0], dtype=np.float32)
    elif kind == "volcanic ash clouds":
        ash = np.clip((n - 0.5) * 5.0, 0.0, 1.0)[..., None]
        albedo *= 1 - 0.45 * ash
    elif kind == "glowing magma cracks":
        cracks = np.clip(1.0 - np.abs(n - 0.5) * 30.0, 0.0, 1.0)[..., None]
        albedo = albedo * (0.85 + 0.15 * n[..., None]) + cracks * (base * 0.4 + np.array([0.6, 0.3, 0.05]))
    elif kind == "glowing auroras":
        polar = np.clip((np.abs(dy) - 0.7) / 0.3, 0.0, 1.0)[..., None]
        albedo = albedo * (0.9 + 0.2 * n[..., None]) + polar * (base * 0.5 + 0.35)
    elif kind == "thin icy haze":
        albedo = albedo * (0.9 + 0.15 * n[..., None]) * 0.85 + 0.13
    return albedo.astype(np.float32)


def _ring(
    image: Image, base: Image, rx: Image, ry: Image, r: float, height: int, *, front: bool, aurora: bool
) -> Image:
    """A thin tilted ring: an ellipse band, the half behind the planet drawn first."""
    e = np.sqrt((rx / _RING_WIDTH) ** 2 + (ry / (_RING_WIDTH * 0.22)) ** 2)
    band = np.clip(1.0 - np.abs(e - 0.93) / 0.06, 0.0, 1.0)
    half = (ry > 0) if front else (ry <= 0)
    alpha = (band * half * (0.75 if front else 0.6))[..., None]
    color = base * 0.5 + (0.45 if not aurora else 0.55)
    return image * (1 - alpha) + color * alpha


def _halo(image: Image, color: Image, dx: Image, dy: Image, *, strength: float, reach: float) -> Image:
    d = np.sqrt(dx * dx + dy * dy)
    glow = np.clip(1.0 - (d - 1.0) / reach, 0.0, 1.0) * (d >= 1.0)
    return image + (glow**2 * strength)[..., None] * color


def _moon(image: Image, u: Image, v: Image, moon: Moon, aspect: float, light: Image, height: int) -> Image:
    mx, my = moon.x * aspect, moon.y
    dx, dy = (u - mx) / moon.r, (v - my) / moon.r
    d2 = dx * dx + dy * dy
    z = np.sqrt(np.clip(1.0 - d2, 0.0, 1.0))
    shade = 0.5 + 0.55 * np.clip(dx * light[0] + dy * light[1] + z * light[2], 0.0, 1.0)
    edge = np.clip((1.0 - np.sqrt(d2)) * moon.r * height * 1.5, 0.0, 1.0)[..., None]
    body = np.array(_MOON_GREY, dtype=np.float32) * shade[..., None]
    return np.where((d2 < 1.0)[..., None], image * (1 - edge) + body * edge, image)
