"""Where a planet may be: the composition region of the reference workload, as fractions of the frame."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True, kw_only=True)
class Region:
    """The box a planet's bounding box must stay in, and its diameter bounds (fractions of the height).

    Defaults are the reference workload's: small margins on both sides and at the top and bottom,
    a planet between 40 % and 85 % of the frame's height.
    """

    left: float = 0.08
    right: float = 0.92
    top: float = 0.06
    bottom: float = 0.94
    min_diameter: float = 0.40
    max_diameter: float = 0.85

    def box(self, width: int, height: int) -> tuple[float, float, float, float]:
        """The region in pixels: ``(x0, y0, x1, y1)``."""
        return (self.left * width, self.top * height, self.right * width, self.bottom * height)
