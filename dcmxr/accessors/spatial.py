"""Read the spatial grid (coordinates + directions) off an xarray object.

Everything the accessor knows about geometry comes from here, computed afresh
from the coordinates on every call: no state, nothing cached.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import GeometryError

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

    Raises
    ------
    GeometryError
        When an axis coordinate is missing or has no ``direction`` attr.
    """
    vals, dirs = [], []
    for ax in AXES:
        if ax not in obj.coords:
            raise GeometryError(
                f"no {ax!r} coordinate: this array carries no DICOM geometry "
                f"(open it with dcmxr, or assign x/y/z coordinates with a 'direction' attr)"
            )
        coord = obj.coords[ax]
        direction = coord.attrs.get("direction")
        if direction is None:
            raise GeometryError(
                f"coordinate {ax!r} has no 'direction' attr; xarray dropped it or the array was "
                f"not opened by dcmxr (assign one: da[{ax!r}].attrs['direction'] = [...])"
            )
        vals.append(np.atleast_1d(np.asarray(coord.values, dtype=np.float64)))
        dirs.append(np.asarray(direction, dtype=np.float64).reshape(3))
    thickness = obj.attrs.get("spacing_between_slices") or obj.attrs.get("slice_thickness") or 1.0
    return Spatial(tuple(vals), tuple(dirs), {"x": 1.0, "y": 1.0, "z": float(thickness)})
