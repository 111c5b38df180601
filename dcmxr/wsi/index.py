"""The readers of the levels opened in this process, for direct region reads.

Region reads (:func:`dcmxr.wsi.read_region`) skip Dask and read the tiles
they need straight away. Each level's :class:`~dcmxr.wsi.reader.LevelReader`
is kept here under the level's Dask array name (a token of its instances and
layout); in another process the registry is empty and region reads fall back
to slicing the Dask array (which reads through the same reader).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .reader import LevelReader

#: Levels kept (least recently used dropped first).
MAX_LEVELS = 256

_LEVELS: OrderedDict[str, LevelReader] = OrderedDict()


def register(name: str, reader: LevelReader) -> None:
    """Keep a level's reader under its Dask array name."""
    _LEVELS[name] = reader
    _LEVELS.move_to_end(name)
    while len(_LEVELS) > MAX_LEVELS:
        _LEVELS.popitem(last=False)


def lookup(name: str) -> LevelReader | None:
    """The reader of a level, or None when it was opened elsewhere."""
    return _LEVELS.get(name)
