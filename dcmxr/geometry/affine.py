"""4x4 affines from dim coordinates, and index <-> world mappings.

Index order
-----------
dcmxr affines follow NIfTI/nibabel: the columns of the affine are the
``x``, ``y``, ``z`` *index* axes, so::

    affine @ [i_x, i_y, i_z, 1] -> [L, P, S, 1]   (mm, DICOM LPS)

where ``i_x`` is the index along dim ``x`` (the column index of a DICOM
frame), ``i_y`` along ``y`` (the row index) and ``i_z`` along ``z`` (the
slice index). This is the *reverse* of the array's dim order ``("z", "y",
"x")``: for ``arr[k, j, i]`` use ``affine @ [i, j, k, 1]``. (highdicom's
``Volume.affine`` uses array order ``[slice, row, column]``: its columns are
ours reversed.) :func:`index_to_world` and :func:`world_to_index` use the
same ``(i_x, i_y, i_z)`` order in their last axis.

The affine is in LPS; :func:`lps_to_ras` gives the NIfTI (RAS) affine. It is
always derived from the coordinates and never stored in attrs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from dcmxr.errors import GeometryError
from dcmxr.geometry.coords import basis_coefficients
from dcmxr.geometry.tolerances import SPACING_ATOL, SPACING_RTOL

__all__ = [
    "affine_from_coords",
    "lps_to_ras",
    "ras_to_lps",
    "index_to_world",
    "world_to_index",
    "axis_step",
]

_AXES = ("x", "y", "z")
_FLIP = np.diag([-1.0, -1.0, 1.0, 1.0])


def _single_spacing(default_spacing: float | Mapping[str, float], axis: str) -> float:
    if isinstance(default_spacing, Mapping):
        return float(default_spacing.get(axis, 1.0))
    return float(default_spacing)


def axis_step(
    values: np.ndarray | Sequence[float] | float,
    axis: str = "?",
    *,
    spacing_rtol: float = SPACING_RTOL,
    spacing_atol: float = SPACING_ATOL,
    default_spacing: float = 1.0,
) -> float:
    """The constant step of a regular coordinate.

    Parameters
    ----------
    values : array_like or float
        Coordinate values (a scalar or length-1 array has no step).
    axis : str
        Dim name, used in error messages.
    spacing_rtol, spacing_atol : float
        Each step must equal the mean step within ``spacing_atol +
        spacing_rtol * |mean step|``.
    default_spacing : float
        Returned for a single value.

    Returns
    -------
    float
        The mean step (negative for a descending coordinate).

    Raises
    ------
    GeometryError
        When the steps are uneven (the message names the axis, the measured
        deviation, the tolerance and the options that relax it).
    """
    v = np.ravel(np.asarray(values, dtype=np.float64))
    if len(v) < 2:
        return float(default_spacing)
    step = float((v[-1] - v[0]) / (len(v) - 1))
    if step == 0:
        raise GeometryError(f"coordinate {axis!r} is constant; it has no step")
    dev = float(np.max(np.abs(np.diff(v) - step)))
    tol = spacing_atol + spacing_rtol * abs(step)
    if dev > tol:
        raise GeometryError(
            f"coordinate {axis!r} is not regularly spaced: steps deviate from the mean step "
            f"{step:.6g} mm by up to {dev:.4g} mm, more than spacing_atol + spacing_rtol * |step| "
            f"= {tol:.4g} mm (spacing_atol={spacing_atol:g}, spacing_rtol={spacing_rtol:g}; "
            f"relax them, or resample onto a regular grid)"
        )
    return step


def affine_from_coords(
    x: np.ndarray | Sequence[float] | float,
    y: np.ndarray | Sequence[float] | float,
    z: np.ndarray | Sequence[float] | float,
    dir_x: Sequence[float],
    dir_y: Sequence[float],
    dir_z: Sequence[float],
    *,
    spacing_rtol: float = SPACING_RTOL,
    spacing_atol: float = SPACING_ATOL,
    default_spacing: float | Mapping[str, float] = 1.0,
) -> np.ndarray:
    """LPS affine mapping ``[i_x, i_y, i_z, 1]`` to mm, from dim coordinates.

    Parameters
    ----------
    x, y, z : array_like or float
        Coordinate values of dims ``x``, ``y``, ``z`` (scalars allowed: a
        slice keeps its plane).
    dir_x, dir_y, dir_z : sequence of 3 float
        Unit axis directions (LPS).
    spacing_rtol, spacing_atol : float
        Regularity tolerances, see :func:`axis_step`.
    default_spacing : float or mapping
        Step used for an axis with a single value (e.g. ``{"z":
        slice_thickness}``); default 1.0.

    Returns
    -------
    numpy.ndarray, shape (4, 4)
        Column ``k`` is ``step_k * dir_k`` (k = x, y, z); the translation is
        the position of voxel ``(0, 0, 0)``.

    Raises
    ------
    GeometryError
        When an axis is not regular, naming it.
    """
    vals = [np.ravel(np.asarray(v, dtype=np.float64)) for v in (x, y, z)]
    dirs = [np.asarray(d, dtype=np.float64).reshape(3) for d in (dir_x, dir_y, dir_z)]
    aff = np.eye(4)
    for k, name in enumerate(_AXES):
        step = axis_step(
            vals[k],
            name,
            spacing_rtol=spacing_rtol,
            spacing_atol=spacing_atol,
            default_spacing=_single_spacing(default_spacing, name),
        )
        aff[:3, k] = step * dirs[k]
    aff[:3, 3] = sum(vals[k][0] * dirs[k] for k in range(3))
    return aff


def lps_to_ras(affine: np.ndarray) -> np.ndarray:
    """Convert an LPS affine (DICOM) to RAS (NIfTI) by negating rows 0 and 1.

    Parameters
    ----------
    affine : array_like, shape (4, 4)

    Returns
    -------
    numpy.ndarray, shape (4, 4)
    """
    return _FLIP @ np.asarray(affine, dtype=np.float64)


def ras_to_lps(affine: np.ndarray) -> np.ndarray:
    """Convert a RAS affine to LPS (the same flip as :func:`lps_to_ras`).

    Parameters
    ----------
    affine : array_like, shape (4, 4)

    Returns
    -------
    numpy.ndarray, shape (4, 4)
    """
    return _FLIP @ np.asarray(affine, dtype=np.float64)


def _value_at(coord: np.ndarray, idx: np.ndarray, single: float) -> np.ndarray:
    """Coordinate value at fractional indices; linear extrapolation outside."""
    n = len(coord)
    if n == 1:
        return coord[0] + idx * single
    grid = np.arange(n, dtype=np.float64)
    out = np.interp(idx, grid, coord)
    lo, hi = idx < 0, idx > n - 1
    out = np.where(lo, coord[0] + idx * (coord[1] - coord[0]), out)
    out = np.where(hi, coord[-1] + (idx - (n - 1)) * (coord[-1] - coord[-2]), out)
    return out


def _index_at(coord: np.ndarray, val: np.ndarray, single: float, axis: str) -> np.ndarray:
    """Fractional index of coordinate values (inverse of :func:`_value_at`)."""
    n = len(coord)
    if n == 1:
        return (val - coord[0]) / single
    steps = np.diff(coord)
    if np.all(steps > 0):
        c, flip = coord, False
    elif np.all(steps < 0):
        c, flip = coord[::-1], True
    else:
        raise GeometryError(f"coordinate {axis!r} is not strictly monotonic; cannot invert it")
    grid = np.arange(n, dtype=np.float64)
    out = np.interp(val, c, grid)
    lo, hi = val < c[0], val > c[-1]
    out = np.where(lo, (val - c[0]) / (c[1] - c[0]), out)
    out = np.where(hi, (n - 1) + (val - c[-1]) / (c[-1] - c[-2]), out)
    return (n - 1) - out if flip else out


def index_to_world(
    indices: np.ndarray | Sequence,
    x: np.ndarray | Sequence[float] | float,
    y: np.ndarray | Sequence[float] | float,
    z: np.ndarray | Sequence[float] | float,
    dir_x: Sequence[float],
    dir_y: Sequence[float],
    dir_z: Sequence[float],
    *,
    default_spacing: float | Mapping[str, float] = 1.0,
) -> np.ndarray:
    """LPS positions (mm) of fractional voxel indices.

    Works on irregular grids: each index is mapped to a coordinate value by
    linear interpolation along that axis's coordinate values (linear
    extrapolation from the end steps outside), then combined with the axis
    directions. On a regular grid this equals ``affine_from_coords(...) @
    [i_x, i_y, i_z, 1]``.

    Parameters
    ----------
    indices : array_like, shape (..., 3)
        ``(i_x, i_y, i_z)`` in the last axis (the affine's index order).
    x, y, z, dir_x, dir_y, dir_z
        The dim coordinates and directions.
    default_spacing : float or mapping
        Step for an axis with a single value.

    Returns
    -------
    numpy.ndarray, shape (..., 3)
    """
    idx = np.asarray(indices, dtype=np.float64)
    if idx.shape[-1] != 3:
        raise ValueError(f"indices must have a last axis of length 3, got shape {idx.shape}")
    vals = [np.ravel(np.asarray(v, dtype=np.float64)) for v in (x, y, z)]
    c = np.stack(
        [_value_at(vals[k], idx[..., k], _single_spacing(default_spacing, n)) for k, n in enumerate(_AXES)],
        axis=-1,
    )
    basis = np.column_stack([np.asarray(d, dtype=np.float64).reshape(3) for d in (dir_x, dir_y, dir_z)])
    return c @ basis.T


def world_to_index(
    points: np.ndarray | Sequence,
    x: np.ndarray | Sequence[float] | float,
    y: np.ndarray | Sequence[float] | float,
    z: np.ndarray | Sequence[float] | float,
    dir_x: Sequence[float],
    dir_y: Sequence[float],
    dir_z: Sequence[float],
    *,
    default_spacing: float | Mapping[str, float] = 1.0,
) -> np.ndarray:
    """Fractional voxel indices ``(i_x, i_y, i_z)`` of LPS points.

    The inverse of :func:`index_to_world`: points are written in the axis
    basis (a 3x3 solve, exact for tilted stacks), then each coefficient is
    located on its axis's coordinate values by linear interpolation.

    Parameters
    ----------
    points : array_like, shape (..., 3)
        LPS positions in mm.
    x, y, z, dir_x, dir_y, dir_z
        The dim coordinates (strictly monotonic) and directions.
    default_spacing : float or mapping
        Step for an axis with a single value.

    Returns
    -------
    numpy.ndarray, shape (..., 3)
        Fractional ``(i_x, i_y, i_z)``; round to get the nearest voxel.
    """
    c = basis_coefficients(points, dir_x, dir_y, dir_z)
    vals = [np.ravel(np.asarray(v, dtype=np.float64)) for v in (x, y, z)]
    return np.stack(
        [
            _index_at(vals[k], c[..., k], _single_spacing(default_spacing, n), n)
            for k, n in enumerate(_AXES)
        ],
        axis=-1,
    )
