"""Read the spatial grid (coordinates + directions) off an xarray object.

Everything the accessor knows about geometry comes from here, computed afresh
from the coordinates on every call: no state, nothing cached.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


AXES = ("x", "y", "z")


@dataclass(frozen=True)
class Spatial:
    """Coordinate values and unit directions of the x, y, z axes.

    ``values[k]`` may hold a single value (an axis reduced by a scalar isel).
    ``default_spacing`` is used for single-valued axes (slice thickness for z).
    """

    values: tuple[np.ndarray, np.ndarray, np.ndarray]
    directions: tuple[np.ndarray, np.ndarray, np.ndarray]
    default_spacing: dict

    @property
    def shape(self) -> tuple[int, int, int]:
        """Number of voxels along x, y, z."""
        return tuple(len(v) for v in self.values)  # type: ignore[return-value]

    def as_args(self) -> tuple:
        """``(x, y, z, dir_x, dir_y, dir_z)`` for dcmxr.geometry functions."""
        return (*self.values, *self.directions)


def spatial(obj: Any) -> Spatial:
    """Extract the spatial grid of a DataArray or Dataset.

    The coordinates are read (and validated) by :func:`dcmxr.transform._grid.grid_of`,
    the one reader of dcmxr geometry; scalar axes (after ``isel(z=k)``) are allowed.

    Raises
    ------
    GeometryError
        When an axis coordinate is missing or has no ``direction`` attr.
    """
    from ..transform._grid import grid_of

    g = grid_of(obj, need_dims=False)
    return Spatial((g.x, g.y, g.z), (g.dir_x, g.dir_y, g.dir_z), dict(g.default_spacing))
