"""Where each level's tiles are, kept for direct region reads.

Region reads (:func:`dcmxr.wsi.read_region`) skip Dask and decode the tiles
they need straight away. The tile placements of every level opened in this
process are kept here, keyed by the level's Dask array name (a token of its
instances and layout); on another process the registry is empty and region
reads fall back to slicing the Dask array.
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field

from .tiles import Placement

#: Levels kept (least recently used dropped first).
MAX_LEVELS = 256

_LEVELS: OrderedDict[str, LevelIndex] = OrderedDict()


@dataclass
class LevelIndex:
    """A level's placements and what a block of it needs."""

    placements: tuple[Placement, ...]
    tile: tuple[int, int]
    total: tuple[int, int]
    dtype: str
    fill: float
    samples: int
    storage_options: dict | None = None
    icc_profile: bytes | None = None
    jpeg_decoder: str = "libjpeg-turbo"
    _grid: dict | None = field(default=None, repr=False)
    region_context: dict | None = field(default=None, repr=False)

    def grid(self) -> dict[tuple[int, int, int, int], list[Placement]]:
        """``(path, plane, tile_row, tile_col) -> placements`` touching that tile cell."""
        if self._grid is None:
            th, tw = self.tile
            g: dict = defaultdict(list)
            for p in self.placements:
                for ty in range(p.row // th, (p.row + p.ref.rows - 1) // th + 1):
                    for tx in range(p.col // tw, (p.col + p.ref.columns - 1) // tw + 1):
                        g[(p.path, p.plane, ty, tx)].append(p)
            self._grid = dict(g)
        return self._grid

    def select(self, y0: int, x0: int, h: int, w: int, path: int = 0, plane: int = 0) -> tuple[Placement, ...]:
        """Placements intersecting the rectangle, in stored order, without duplicates."""
        th, tw = self.tile
        g = self.grid()
        seen: dict[Placement, None] = {}
        for ty in range(max(y0, 0) // th, max(y0 + h - 1, 0) // th + 1):
            for tx in range(max(x0, 0) // tw, max(x0 + w - 1, 0) // tw + 1):
                for p in g.get((path, plane, ty, tx), ()):
                    if p.row < y0 + h and p.row + p.ref.rows > y0 and p.col < x0 + w and p.col + p.ref.columns > x0:
                        seen.setdefault(p)
        return tuple(seen)


def register(name: str, index: LevelIndex) -> None:
    """Keep a level's index under its Dask array name."""
    _LEVELS[name] = index
    _LEVELS.move_to_end(name)
    while len(_LEVELS) > MAX_LEVELS:
        _LEVELS.popitem(last=False)


def lookup(name: str) -> LevelIndex | None:
    """The index of a level, or None when it was opened elsewhere."""
    return _LEVELS.get(name)
