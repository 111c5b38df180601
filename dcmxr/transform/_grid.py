"""The spatial grid of an xarray object, read from (and written to) its coordinates.

A :class:`Grid` is what the geometry convention puts on the coordinates:
the values of the ``x``, ``y``, ``z`` dim coordinates (voxel centres in mm
along each axis) and each axis's unit LPS ``direction``. Nothing is cached on
the array; every transform reads the grid afresh and writes new coordinates.

This module deliberately does not import :mod:`dcmxr.accessors` (the accessor
calls into ``dcmxr.transform``, never the other way round).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from ..errors import GeometryError
from ..geometry.affine import affine_from_coords, axis_step
from ..geometry.coords import basis_coefficients

AXES = ("x", "y", "z")
#: The dims a spatial volume has, in array order.
SPATIAL_DIMS = ("z", "y", "x")


@dataclass(frozen=True)
class Grid:
    """Coordinate values and unit directions of the ``x``, ``y``, ``z`` axes (LPS, mm)."""

    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    dir_x: np.ndarray
    dir_y: np.ndarray
    dir_z: np.ndarray
    default_spacing: Mapping[str, float]

    # ------------------------------------------------------------ basic views
    def values(self, ax: str) -> np.ndarray:
        return getattr(self, ax)

    def direction(self, ax: str) -> np.ndarray:
        return getattr(self, "dir_" + ax)

    @property
    def shape_xyz(self) -> tuple[int, int, int]:
        return (len(self.x), len(self.y), len(self.z))

    @property
    def shape_zyx(self) -> tuple[int, int, int]:
        return (len(self.z), len(self.y), len(self.x))

    @property
    def args(self) -> tuple:
        """``(x, y, z, dir_x, dir_y, dir_z)`` for :mod:`dcmxr.geometry` functions."""
        return (self.x, self.y, self.z, self.dir_x, self.dir_y, self.dir_z)

    @property
    def basis(self) -> np.ndarray:
        """3x3 matrix whose columns are ``dir_x``, ``dir_y``, ``dir_z``."""
        return np.column_stack([self.dir_x, self.dir_y, self.dir_z])

    def step(self, ax: str) -> float:
        """Signed regular step of an axis (raises :class:`GeometryError` if irregular)."""
        return axis_step(self.values(ax), ax, default_spacing=self.default_spacing.get(ax, 1.0))

    @property
    def affine(self) -> np.ndarray:
        """LPS affine ``[i_x, i_y, i_z, 1] -> mm`` (raises when irregular)."""
        return affine_from_coords(*self.args, default_spacing=dict(self.default_spacing))

    def affine_or_none(self) -> np.ndarray | None:
        try:
            return self.affine
        except GeometryError:
            return None

    def world(self, cx: np.ndarray, cy: np.ndarray, cz: np.ndarray) -> np.ndarray:
        """LPS positions of coordinate *values* (broadcast), shape ``(..., 3)``."""
        return (
            np.asarray(cx, dtype=np.float64)[..., None] * self.dir_x
            + np.asarray(cy, dtype=np.float64)[..., None] * self.dir_y
            + np.asarray(cz, dtype=np.float64)[..., None] * self.dir_z
        )

    def corners_world(self) -> np.ndarray:
        """LPS positions of the 8 corner voxel centres, shape ``(8, 3)``."""
        xs, ys, zs = (np.array([v[0], v[-1]]) for v in (self.x, self.y, self.z))
        cx, cy, cz = np.meshgrid(xs, ys, zs, indexing="ij")
        return self.world(cx.ravel(), cy.ravel(), cz.ravel())

    def is_orthogonal(self, tol: float = 1e-4) -> bool:
        b = self.basis
        return bool(np.allclose(b.T @ b, np.eye(3), atol=tol))

    # ------------------------------------------------------------ coordinates
    def coord(self, ax: str, attrs: Mapping[str, Any] | None = None) -> xr.Variable:
        """The dim coordinate of ``ax`` with the convention's attrs."""
        a = dict(attrs or {})
        a["units"] = "mm"
        a["direction"] = [float(v) for v in self.direction(ax)]
        a.setdefault("long_name", f"{ax} position along its direction (LPS)")
        return xr.Variable((ax,), np.asarray(self.values(ax), dtype=np.float64), attrs=a)

    def coords(self, like: Any = None) -> dict[str, xr.Variable]:
        """``{"x": Variable, "y": ..., "z": ...}``; other attrs copied from ``like``'s coords."""
        out = {}
        for ax in AXES:
            attrs = None
            if like is not None and ax in getattr(like, "coords", {}):
                attrs = like.coords[ax].attrs
            out[ax] = self.coord(ax, attrs)
        return out


def _unit(v: Any, name: str) -> np.ndarray:
    d = np.asarray(v, dtype=np.float64).reshape(-1)
    if d.shape != (3,) or not np.all(np.isfinite(d)) or np.linalg.norm(d) == 0:
        raise GeometryError(f"coordinate {name!r} has an invalid 'direction' attr {list(np.ravel(v))}")
    return d / np.linalg.norm(d)


def grid_of(obj: Any, *, need_dims: bool = True, what: str = "this array") -> Grid:
    """Read the spatial grid off a DataArray or Dataset.

    Parameters
    ----------
    obj : xarray.DataArray or xarray.Dataset
    need_dims : bool
        Require ``x``, ``y`` and ``z`` to be dimensions (not scalar coords).
    what : str
        How to name the object in error messages.

    Raises
    ------
    GeometryError
        When a coordinate or its ``direction`` attr is missing (a non-spatial
        array), or a required spatial dim is absent.
    """
    if not isinstance(obj, (xr.DataArray, xr.Dataset)):
        raise TypeError(f"expected an xarray DataArray or Dataset, got {type(obj).__name__}")
    vals, dirs = [], []
    for ax in AXES:
        if ax not in obj.coords:
            raise GeometryError(
                f"{what} has no {ax!r} coordinate, so it carries no DICOM geometry; spatial transforms "
                f"need x/y/z dim coordinates with a 'direction' attr (open the data with dcmxr, "
                f"or assign coordinates: da.assign_coords({ax}=xr.Variable({ax!r}, values, "
                f"{{'units': 'mm', 'direction': [...]}})))"
            )
        c = obj.coords[ax]
        if "direction" not in c.attrs:
            raise GeometryError(
                f"coordinate {ax!r} of {what} has no 'direction' attr (xarray dropped it, or the "
                f"array was not opened by dcmxr); assign one: da[{ax!r}].attrs['direction'] = [...]"
            )
        if need_dims and ax not in obj.dims:
            raise GeometryError(
                f"{what} has {ax!r} only as a scalar coordinate; this transform needs a 3-D grid "
                f"(use da.expand_dims({ax!r}) first)"
            )
        v = np.atleast_1d(np.asarray(c.values, dtype=np.float64))
        if v.ndim != 1:
            raise GeometryError(f"coordinate {ax!r} of {what} must be one-dimensional")
        vals.append(v)
        dirs.append(_unit(c.attrs["direction"], ax))
    attrs = getattr(obj, "attrs", {})
    thickness = attrs.get("spacing_between_slices") or attrs.get("slice_thickness") or 1.0
    return Grid(*vals, *dirs, default_spacing={"x": 1.0, "y": 1.0, "z": float(thickness)})


def regular_grid(
    origin_coef: np.ndarray,
    steps: Mapping[str, float],
    sizes: Mapping[str, int],
    dirs: Mapping[str, np.ndarray],
    default_spacing: Mapping[str, float] | None = None,
) -> Grid:
    """A regular grid from first-voxel coefficients, steps, sizes and directions."""
    vals = {
        ax: float(origin_coef[k]) + np.arange(int(sizes[ax]), dtype=np.float64) * float(steps[ax])
        for k, ax in enumerate(AXES)
    }
    ds = dict(default_spacing or {})
    for ax in AXES:
        ds[ax] = abs(float(steps[ax]))
    return Grid(
        vals["x"], vals["y"], vals["z"],
        *(np.asarray(dirs[ax], dtype=np.float64) for ax in AXES),
        default_spacing=ds,
    )


def coefficients(grid: Grid, points: np.ndarray) -> np.ndarray:
    """Coefficients of LPS points in the grid's axis basis."""
    return basis_coefficients(points, grid.dir_x, grid.dir_y, grid.dir_z)


def split_dims(obj: xr.DataArray) -> tuple[list[str], list[str]]:
    """Non-spatial dims before and after the spatial block (``("t",)``, ``("c",)``)."""
    dims = list(obj.dims)
    pos = [i for i, d in enumerate(dims) if d in SPATIAL_DIMS]
    if not pos:
        return dims, []
    lo, hi = min(pos), max(pos)
    inner = [d for d in dims[lo : hi + 1] if d not in SPATIAL_DIMS]
    if inner:
        raise GeometryError(
            f"non-spatial dims {inner} sit between the spatial dims of {tuple(dims)}; "
            f"transpose so x/y/z are contiguous (e.g. da.transpose(..., 'z', 'y', 'x', 'c'))"
        )
    return dims[:lo], dims[hi + 1 :]


# ------------------------------------------------------------------ quantities
_QTY = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([a-zA-Zµμ]*)\s*$")
_TO_MM = {"": None, "mm": 1.0, "millimeter": 1.0, "millimeters": 1.0, "millimetre": 1.0,
          "cm": 10.0, "centimeter": 10.0, "m": 1000.0, "meter": 1000.0, "um": 1e-3, "µm": 1e-3,
          "μm": 1e-3, "micrometer": 1e-3, "micron": 1e-3, "microns": 1e-3,
          "vox": "vox", "voxel": "vox", "voxels": "vox"}


def parse_length(value: Any, *, bare: str = "mm") -> tuple[float, str]:
    """A length as ``(number, "mm" | "vox")``.

    Accepts a number (interpreted as ``bare``), a string such as ``"1 mm"``,
    ``"0.5cm"``, ``"3 voxels"``, or a pint Quantity with a length unit
    (converted to mm).
    """
    if hasattr(value, "to") and hasattr(value, "magnitude") and hasattr(value, "units"):
        try:
            return float(value.to("mm").magnitude), "mm"
        except Exception as exc:  # pint DimensionalityError
            raise ValueError(f"{value!r} is not a length (expected a unit like mm)") from exc
    if isinstance(value, str):
        m = _QTY.match(value)
        if m is None:
            raise ValueError(f"cannot parse {value!r} as a length; use e.g. 1.5, '1.5 mm' or '3 voxels'")
        num, unit = float(m.group(1)), m.group(2)
        factor = _TO_MM.get(unit.lower() if unit not in ("µm", "μm") else unit)
        if unit and factor is None:
            raise ValueError(f"unknown length unit {unit!r} in {value!r}; use mm, cm, m, um or voxels")
        if factor == "vox":
            return num, "vox"
        if factor is None:
            return num, bare
        return num * float(factor), "mm"
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"expected a length, got {value!r}")
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value), bare
    raise TypeError(f"expected a number, a string like '1 mm' or a pint Quantity, got {type(value).__name__}")


def per_axis(value: Any, name: str, *, bare: str = "mm", allowed=AXES) -> dict[str, tuple[float, str]]:
    """Expand a scalar-or-mapping argument to ``{axis: (number, kind)}`` (only given axes)."""
    if isinstance(value, Mapping):
        bad = set(value) - set(allowed)
        if bad:
            raise ValueError(f"{name} keys must be among {list(allowed)}, got {sorted(bad)}")
        return {ax: parse_length(v, bare=bare) for ax, v in value.items() if v is not None}
    if isinstance(value, (list, tuple, np.ndarray)):
        raise TypeError(
            f"{name} must be a number, a string like '1 mm', a pint Quantity or a dict by dim name "
            f"(e.g. {{'x': 0.5, 'y': 0.5, 'z': 2}}); sequences are refused because their order is ambiguous"
        )
    v = parse_length(value, bare=bare)
    return {ax: v for ax in allowed}
