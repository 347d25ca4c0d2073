"""What prompts ask for, in numbers: planet colours, moon counts, and where they are named in a prompt.

One table serves the procedural dataset (``presets/planet/scene.py`` paints these colours) and the
verifier (which measures a planet against them), so "crimson" means the same thing to both. Prompts
are read as text (structured prompts arrive rendered, free text as typed): the longest known phrase
found wins, so "pale gold" is not read as "gold".
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from planet_predictors.sdxl import prompts

#: Planet body colours (linear-ish sRGB in [0, 1]); every colour of the built-in and reference prompts.
COLORS: dict[str, tuple[float, float, float]] = {
    "deep blue": (0.10, 0.26, 0.86),
    "crimson": (0.80, 0.07, 0.16),
    "emerald": (0.06, 0.70, 0.34),
    "golden": (0.96, 0.72, 0.12),
    "violet": (0.58, 0.26, 0.88),
    "pearl white": (0.90, 0.89, 0.86),
    "amber": (0.98, 0.48, 0.04),
    "teal": (0.04, 0.60, 0.62),
    "pale gold": (0.90, 0.82, 0.55),
    "obsidian black": (0.17, 0.17, 0.20),
}

#: A ring of moonlets: this many small moons (the verifier accepts ``RING_MIN`` or more).
RING = 6
RING_MIN = 4
#: Moon phrases ▶ how many moons the image should show.
MOONS: dict[str, int] = {
    "no moons": 0,
    "one small moon": 1,
    "a small moon": 1,
    "one moon": 1,
    "two moons": 2,
    "a ring of moonlets": RING,
    "a shattered moon ring": RING,
}


def _builtin(name: str) -> tuple[str, ...]:
    return tuple(next(a.values for a in prompts.ETHEREAL_PLANETS.attributes if a.name == name))


#: The built-in prompt's values, then the reference example's (the order the dataset draws from).
ATMOSPHERES = (*_builtin("atmosphere"), "glowing magma cracks", "thin icy haze", "auroral rings")
SKIES = (*_builtin("sky"), "colorful nebula", "binary sunrise", "galactic core glow")


def find(prompt: str, phrases: Iterable[str]) -> str | None:
    """The longest of ``phrases`` that ``prompt`` contains as whole words."""
    text = " ".join(prompt.lower().split())
    best: str | None = None
    for phrase in phrases:
        if re.search(rf"(?<![a-z]){re.escape(phrase)}(?![a-z])", text) and (
            best is None or len(phrase) > len(best)
        ):
            best = phrase
    return best


def requested_color(prompt: str) -> str | None:
    """The colour ``prompt`` names, if it names one of :data:`COLORS`."""
    return find(prompt, COLORS)


def requested_moons(prompt: str) -> int | None:
    """How many moons ``prompt`` asks for, if it says."""
    phrase = find(prompt, MOONS)
    return None if phrase is None else MOONS[phrase]
