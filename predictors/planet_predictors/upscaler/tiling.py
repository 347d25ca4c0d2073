"""Tiled inference with feathered blending whose memory does not grow with the tile count.

Tiles of ``tile`` pixels overlap by at least ``overlap``; they are spread evenly so every tile of an
image has the same shape (one shape ▶ one batched forward). Each tile's output is weighted by a
separable linear ramp across the overlaps (the outermost quarter of each overlap gets no weight:
tile borders lack context) and the weights are normalised to sum to one, so the blend is exact
wherever the model's receptive field fits inside the overlap and seamless elsewhere.

Outputs are accumulated tile row by tile row in a float32 *band* one output tile tall; rows that no
later tile touches are converted to ``uint8`` and written to the preallocated output at once. The
float32 state is therefore ``tile x width``, not ``height x width``, and tile outputs are never kept.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import numpy.typing as npt

U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]
#: Rows converted from float32 to uint8 at a time (bounds the temporaries of the conversion).
_FLUSH_ROWS = 256


@dataclasses.dataclass(frozen=True)
class Tile:
    """One tile handed to a forward function: which image, its ordinal there, its pixels (HWC uint8)."""

    image: int
    index: int
    pixels: U8


Forward = Callable[[Sequence[Tile]], Sequence[F32]]


@dataclasses.dataclass(frozen=True)
class Grid:
    """Where the tiles of one image start (input pixels) and their common size."""

    height: int
    width: int
    tile_h: int
    tile_w: int
    ys: tuple[int, ...]
    xs: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.ys) * len(self.xs)


def starts(length: int, tile: int, overlap: int) -> tuple[int, ...]:
    """Evenly spread tile starts covering ``length`` with overlaps of at least ``overlap``."""
    if tile <= 0 or length <= tile:
        return (0,)
    n = math.ceil((length - overlap) / (tile - overlap))
    n = max(n, 2)
    return tuple(round(i * (length - tile) / (n - 1)) for i in range(n))


def make_grid(height: int, width: int, *, tile: int, overlap: int) -> Grid:
    """The grid for an image; ``tile <= 0`` means one tile (untiled)."""
    tile_h = height if tile <= 0 else min(tile, height)
    tile_w = width if tile <= 0 else min(tile, width)
    return Grid(height, width, tile_h, tile_w, starts(height, tile, overlap), starts(width, tile, overlap))


def axis_weights(positions: Sequence[int], size: int, length: int) -> list[F32]:
    """Per-tile 1-D weights along one axis (output pixels), normalised to sum to one everywhere."""
    raw: list[F32] = []
    for k, start in enumerate(positions):
        w = np.ones(size, dtype=np.float32)
        if k > 0:
            left = positions[k - 1] + size - start
            w[:left] = np.minimum(w[:left], _ramp(left))
        if k + 1 < len(positions):
            right = start + size - positions[k + 1]
            w[size - right :] = np.minimum(w[size - right :], _ramp(right)[::-1])
        raw.append(w)
    total = np.zeros(length, dtype=np.float32)
    for start, w in zip(positions, raw, strict=True):
        total[start : start + size] += w
    # Dead zones can leave a pixel with no weight only in degenerate grids; never divide by zero.
    total = np.maximum(total, np.float32(1e-6))
    return [w / total[start : start + size] for start, w in zip(positions, raw, strict=True)]


def _ramp(n: int) -> F32:
    """0 over the first quarter, linear to 1 across the middle half, 1 over the last quarter."""
    margin = n // 4
    span = max(n - 2 * margin, 1)
    i = np.arange(n, dtype=np.float32)
    return np.clip((i - margin + 0.5) / span, 0.0, 1.0).astype(np.float32)


class Canvas:
    """The output of one image: tiles are added in raster order, finished rows become ``uint8``."""

    def __init__(self, grid: Grid, *, scale: int, channels: int = 3) -> None:
        self.grid = grid
        self.scale = scale
        self.height, self.width = grid.height * scale, grid.width * scale
        self.tile_h, self.tile_w = grid.tile_h * scale, grid.tile_w * scale
        self.out: U8 = np.empty((self.height, self.width, channels), dtype=np.uint8)
        self._band: F32 = np.zeros((self.tile_h, self.width, channels), dtype=np.float32)
        self._band_y = 0
        self._wy = axis_weights([y * scale for y in grid.ys], self.tile_h, self.height)
        self._wx = axis_weights([x * scale for x in grid.xs], self.tile_w, self.width)
        self.remaining = len(grid)

    def add(self, index: int, output: F32) -> None:
        """Blend the output of tile ``index`` (row-major); tiles must arrive in order."""
        row, col = divmod(index, len(self.grid.xs))
        if output.shape[:2] != (self.tile_h, self.tile_w):
            raise ValueError(f"tile output is {output.shape[:2]}, expected {(self.tile_h, self.tile_w)}")
        y0 = self.grid.ys[row] * self.scale
        if y0 > self._band_y:
            self._flush(y0)
        x0 = self.grid.xs[col] * self.scale
        weights = self._wy[row][:, None, None] * self._wx[col][None, :, None]
        band = self._band[y0 - self._band_y : y0 - self._band_y + self.tile_h, x0 : x0 + self.tile_w]
        band += output * weights
        self.remaining -= 1
        if self.remaining == 0:
            self._flush(self.height)

    def _flush(self, upto: int) -> None:
        n = upto - self._band_y
        for start in range(0, n, _FLUSH_ROWS):
            stop = min(start + _FLUSH_ROWS, n)
            chunk = self._band[start:stop]
            self.out[self._band_y + start : self._band_y + stop] = np.clip(
                chunk * 255.0 + 0.5, 0.0, 255.0
            ).astype(np.uint8)
        keep = self._band.shape[0] - n
        if keep > 0:
            self._band[:keep] = self._band[n:].copy()
        self._band[max(keep, 0) :] = 0.0
        self._band_y = upto


def iter_tiles(image: U8, grid: Grid, image_index: int) -> Iterator[Tile]:
    """The tiles of ``image`` in raster order (views, no copies)."""
    n = 0
    for y in grid.ys:
        for x in grid.xs:
            yield Tile(image_index, n, image[y : y + grid.tile_h, x : x + grid.tile_w])
            n += 1


def run(
    images: Sequence[U8],
    forward: Forward,
    *,
    scale: int,
    tile: int,
    overlap: int,
    batch: int,
    check: Callable[[], None] | None = None,
) -> list[U8]:
    """Run ``forward`` over the tiles of every image, ``batch`` same-shaped tiles per call.

    Tiles of consecutive images share a call when their shapes match, which is how several small
    requests fill one forward. ``check`` is called before every forward; it raises to abandon the run.
    """
    grids = [make_grid(im.shape[0], im.shape[1], tile=tile, overlap=overlap) for im in images]
    canvases = [Canvas(g, scale=scale, channels=im.shape[2]) for g, im in zip(grids, images, strict=True)]
    pending: list[Tile] = []

    def flush() -> None:
        if check is not None:
            check()
        outputs = forward(pending)
        for t, out in zip(pending, outputs, strict=True):
            canvases[t.image].add(t.index, out)
        pending.clear()

    for i, (image, grid) in enumerate(zip(images, grids, strict=True)):
        for t in iter_tiles(image, grid, i):
            if pending and (len(pending) >= batch or pending[0].pixels.shape != t.pixels.shape):
                flush()
            pending.append(t)
    if pending:
        flush()
    return [c.out for c in canvases]
