"""Slice geometry <-> dim coordinates (the dcmxr geometry convention).

A volume has dims ``("z", "y", "x")``. Each dim coordinate holds voxel-centre
positions in mm along the axis direction ``dir_<dim>`` (a unit LPS vector):
the LPS position of voxel ``(z, y, x)`` is::

    x * dir_x + y * dir_y + z * dir_z

where ``x``, ``y``, ``z`` are coordinate *values*. ``dir_x`` is the row
direction (ImageOrientationPatient[:3]), ``dir_y`` the column direction
(IOP[3:]) and ``dir_z`` the stacking direction: the slice normal for an
ordinary stack, the true (tilted) direction for a gantry-tilted one. For a
tilted stack the basis is not orthogonal and the values are the coefficients
of the position in that basis (a 3x3 solve), not dot products.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dcmxr.errors import GeometryError
from dcmxr.geometry.orientation import row_col_normal
from dcmxr.geometry.stacking import stack_direction
from dcmxr.geometry.tolerances import (
    COLLINEARITY_ATOL,
    MAX_TILT_DEG,
    ORIENTATION_TOL,
    TILT_TOL_DEG,
)

__all__ = ["stack_coords", "positions_from_coords", "basis_coefficients", "coords_from_affine"]


def basis_coefficients(
    points: np.ndarray | Sequence,
    dir_x: Sequence[float],
    dir_y: Sequence[float],
    dir_z: Sequence[float],
) -> np.ndarray:
    """Coefficients of LPS points in the (possibly non-orthogonal) axis basis.

    Parameters
    ----------
    points : array_like, shape (..., 3)
        LPS positions in mm.
    dir_x, dir_y, dir_z : sequence of 3 float
        Axis directions.

    Returns
    -------
    numpy.ndarray, shape (..., 3)
        ``(x, y, z)`` with ``x * dir_x + y * dir_y + z * dir_z == point``.

    Raises
    ------
    GeometryError
        When the directions are (nearly) coplanar.
    """
    basis = np.column_stack([np.asarray(v, dtype=np.float64).reshape(3) for v in (dir_x, dir_y, dir_z)])
    det = float(np.linalg.det(basis))
    if abs(det) < 1e-6:
        raise GeometryError(f"axis directions are coplanar (det = {det:.3g}); no 3-D basis")
    p = np.asarray(points, dtype=np.float64)
    flat = p.reshape(-1, 3)
    c = np.linalg.solve(basis, flat.T).T
    return c.reshape(p.shape)


def stack_coords(
    first_position: Sequence[float],
    iop: Sequence[float],
    pixel_spacing: Sequence[float],
    rows: int,
    cols: int,
    slice_positions: np.ndarray | Sequence | None = None,
    *,
    orientation_tol: float = ORIENTATION_TOL,
    tilt_tol_deg: float = TILT_TOL_DEG,
    max_tilt_deg: float = MAX_TILT_DEG,
    collinearity_atol: float = COLLINEARITY_ATOL,
) -> dict[str, np.ndarray]:
    """Dim coordinates and directions of one stack of slices.

    Parameters
    ----------
    first_position : sequence of 3 float
        ImagePositionPatient (centre of the first transmitted pixel) of the
        first slice; its in-plane coefficients define ``x[0]`` and ``y[0]``.
    iop : sequence of 6 float
        ImageOrientationPatient shared by the slices.
    pixel_spacing : sequence of 2 float
        PixelSpacing: ``[row spacing (between rows, along y), column spacing
        (between columns, along x)]`` in mm.
    rows, cols : int
        Rows (length of ``y``) and Columns (length of ``x``).
    slice_positions : array_like, shape (n, 3), optional
        ImagePositionPatient of each slice, one per slice, already sorted by
        increasing position along the stack (see
        :func:`~dcmxr.geometry.stacking.sort_stack`). Default: just
        ``first_position`` (a single slice).
    orientation_tol, tilt_tol_deg, max_tilt_deg, collinearity_atol : float
        See :mod:`dcmxr.geometry.tolerances`.

    Returns
    -------
    dict
        ``x`` (cols,), ``y`` (rows,), ``z`` (n,) float64 coordinate values in
        mm and ``dir_x``, ``dir_y``, ``dir_z`` unit 3-vectors (LPS).

    Raises
    ------
    GeometryError
        Invalid orientation, non-positive spacing, positions not on one line,
        tilt too large, or ``slice_positions`` not strictly increasing.
    """
    dir_x, dir_y, normal = row_col_normal(iop, orientation_tol=orientation_tol)
    ps = np.asarray(pixel_spacing, dtype=np.float64).reshape(-1)
    if ps.shape != (2,) or not np.all(np.isfinite(ps)) or np.any(ps <= 0):
        raise GeometryError(f"PixelSpacing must be two positive numbers, got {ps.tolist()}")
    p0 = np.asarray(first_position, dtype=np.float64).reshape(3)
    if slice_positions is None:
        pos = p0[None, :]
    else:
        pos = np.asarray(slice_positions, dtype=np.float64).reshape(-1, 3)
    dir_z, _ = stack_direction(
        pos,
        normal,
        tilt_tol_deg=tilt_tol_deg,
        max_tilt_deg=max_tilt_deg,
        collinearity_atol=collinearity_atol,
    )
    c0 = basis_coefficients(p0, dir_x, dir_y, dir_z)
    z = basis_coefficients(pos, dir_x, dir_y, dir_z)[:, 2]
    if len(z) > 1 and np.any(np.diff(z) <= 0):
        raise GeometryError(
            "slice_positions must hold one position per slice, sorted by increasing position "
            "along the stack (use sort_stack and find_repeats first)"
        )
    x = c0[0] + np.arange(int(cols), dtype=np.float64) * ps[1]
    y = c0[1] + np.arange(int(rows), dtype=np.float64) * ps[0]
    return {"x": x, "y": y, "z": z, "dir_x": dir_x, "dir_y": dir_y, "dir_z": dir_z}


def positions_from_coords(
    x: np.ndarray | Sequence[float] | float,
    y: np.ndarray | Sequence[float] | float,
    z: np.ndarray | Sequence[float] | float,
    dir_x: Sequence[float],
    dir_y: Sequence[float],
    dir_z: Sequence[float],
) -> np.ndarray:
    """ImagePositionPatient of each slice from dim coordinates.

    The inverse of :func:`stack_coords`: the position of voxel ``(z[k], y[0],
    x[0])`` for every ``k``.

    Parameters
    ----------
    x, y, z : array_like or float
        Coordinate values (scalars allowed, e.g. after ``isel(z=5)``).
    dir_x, dir_y, dir_z : sequence of 3 float
        Axis directions.

    Returns
    -------
    numpy.ndarray, shape (n, 3)
        One LPS position per ``z`` value, in ``z`` order.
    """
    x0 = float(np.ravel(x)[0])
    y0 = float(np.ravel(y)[0])
    zz = np.ravel(np.asarray(z, dtype=np.float64))
    dx, dy, dz = (np.asarray(v, dtype=np.float64).reshape(3) for v in (dir_x, dir_y, dir_z))
    return x0 * dx + y0 * dy + zz[:, None] * dz


def coords_from_affine(affine: np.ndarray, shape: Sequence[int]) -> dict[str, np.ndarray]:
    """Dim coordinates of a regular grid given by an LPS affine.

    Parameters
    ----------
    affine : array_like, shape (4, 4)
        LPS affine mapping ``[i_x, i_y, i_z, 1]`` to mm (the dcmxr index
        order, see :mod:`dcmxr.geometry.affine`).
    shape : sequence of 3 int
        The array shape in dim order ``(nz, ny, nx)``.

    Returns
    -------
    dict
        ``x``, ``y``, ``z`` values and ``dir_x``, ``dir_y``, ``dir_z`` (unit
        columns of the affine; the signed column lengths become the steps).
    """
    a = np.asarray(affine, dtype=np.float64)
    nz, ny, nx = (int(s) for s in shape)
    cols = a[:3, :3]
    lengths = np.linalg.norm(cols, axis=0)
    if np.any(lengths == 0):
        raise GeometryError("affine has a zero-length axis")
    dirs = cols / lengths
    origin = basis_coefficients(a[:3, 3], dirs[:, 0], dirs[:, 1], dirs[:, 2])
    out: dict[str, np.ndarray] = {}
    for k, (name, n) in enumerate((("x", nx), ("y", ny), ("z", nz))):
        out[name] = origin[k] + np.arange(n, dtype=np.float64) * lengths[k]
    out.update(dir_x=dirs[:, 0].copy(), dir_y=dirs[:, 1].copy(), dir_z=dirs[:, 2].copy())
    return out
