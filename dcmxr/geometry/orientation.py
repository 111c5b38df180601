"""Direction cosines: validation, row/column/normal vectors, orientation codes.

All vectors are in the DICOM patient frame (LPS: +x towards the patient's
Left, +y Posterior, +z Superior) unless a function says otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dcmxr.errors import GeometryError
from dcmxr.geometry.tolerances import OBLIQUE_TOL, ORIENTATION_TOL

__all__ = [
    "normalize_iop",
    "row_col_normal",
    "direction_matrix",
    "axis_codes",
    "is_oblique",
]

# Letter an axis direction points *towards*, for each frame convention:
# (positive, negative) per frame axis.
_LABELS = {
    "LPS": (("L", "R"), ("P", "A"), ("S", "I")),
    "RAS": (("R", "L"), ("A", "P"), ("S", "I")),
}


def normalize_iop(
    iop: Sequence[float] | np.ndarray, *, orientation_tol: float = ORIENTATION_TOL
) -> np.ndarray:
    """Validate ImageOrientationPatient and return it with unit vectors.

    Parameters
    ----------
    iop : sequence of 6 float
        Row direction cosines (IOP[:3]) then column direction cosines (IOP[3:]).
    orientation_tol : float
        Largest accepted deviation of each vector's norm from 1 and largest
        accepted ``|row . col|``.

    Returns
    -------
    numpy.ndarray
        Shape (6,), float64: both vectors scaled to unit length (their
        directions are not changed, so a tiny non-orthogonality remains).

    Raises
    ------
    GeometryError
        If the input does not hold 6 finite numbers, or a vector is not unit
        length, or the two vectors are not orthogonal, within
        ``orientation_tol``.
    """
    a = np.asarray(iop, dtype=np.float64).reshape(-1)
    if a.shape != (6,) or not np.all(np.isfinite(a)):
        raise GeometryError(
            f"ImageOrientationPatient must be 6 finite numbers, got {list(np.ravel(iop))}"
        )
    row, col = a[:3], a[3:]
    for name, v in (("row", row), ("column", col)):
        dev = abs(float(np.linalg.norm(v)) - 1.0)
        if dev > orientation_tol:
            raise GeometryError(
                f"ImageOrientationPatient {name} cosines {v.tolist()} have norm "
                f"{np.linalg.norm(v):.6g}: |norm - 1| = {dev:.3g} exceeds "
                f"orientation_tol={orientation_tol:g} (pass a larger orientation_tol to relax)"
            )
    row = row / np.linalg.norm(row)
    col = col / np.linalg.norm(col)
    dot = abs(float(row @ col))
    if dot > orientation_tol:
        raise GeometryError(
            f"ImageOrientationPatient row and column cosines are not orthogonal: "
            f"|row . col| = {dot:.3g} exceeds orientation_tol={orientation_tol:g} "
            f"(pass a larger orientation_tol to relax)"
        )
    return np.concatenate([row, col])


def row_col_normal(
    iop: Sequence[float] | np.ndarray, *, orientation_tol: float = ORIENTATION_TOL
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row, column and slice-normal unit vectors of an orientation.

    Parameters
    ----------
    iop : sequence of 6 float
        ImageOrientationPatient.
    orientation_tol : float
        See :func:`normalize_iop`.

    Returns
    -------
    row, col, normal : numpy.ndarray
        Unit 3-vectors; ``row`` is the direction the column index grows along
        (dim ``x``), ``col`` the direction the row index grows along (dim
        ``y``), ``normal = cross(row, col)`` normalised.
    """
    a = normalize_iop(iop, orientation_tol=orientation_tol)
    row, col = a[:3], a[3:]
    n = np.cross(row, col)
    return row, col, n / np.linalg.norm(n)


def direction_matrix(
    dir_x: Sequence[float], dir_y: Sequence[float], dir_z: Sequence[float]
) -> np.ndarray:
    """Stack three axis directions as the columns of a 3x3 matrix.

    Parameters
    ----------
    dir_x, dir_y, dir_z : sequence of 3 float
        Directions of the ``x``, ``y`` and ``z`` dims.

    Returns
    -------
    numpy.ndarray
        Shape (3, 3); column ``k`` is the k-th direction.
    """
    return np.column_stack(
        [np.asarray(d, dtype=np.float64).reshape(3) for d in (dir_x, dir_y, dir_z)]
    )


def _columns(matrix: np.ndarray) -> np.ndarray:
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape == (4, 4):
        m = m[:3, :3]
    if m.ndim != 2 or m.shape[0] != 3:
        raise ValueError(f"expected a 3xN direction matrix or a 4x4 affine, got shape {m.shape}")
    norms = np.linalg.norm(m, axis=0)
    if np.any(norms == 0):
        raise GeometryError("direction matrix has a zero column")
    return m / norms


def axis_codes(direction_matrix: np.ndarray, convention: str = "LPS") -> str:
    """Anatomical letter each axis points towards (nearest patient axis).

    Like nibabel's ``aff2axcodes``, but the input may be in the DICOM (LPS)
    frame. Each column is assigned to a distinct patient axis, largest
    absolute cosine first, so 45-degree ties still give a valid code.

    Parameters
    ----------
    direction_matrix : array_like
        3xN matrix whose columns are the axis directions (N <= 3), or a 4x4
        affine (its upper-left 3x3 is used, columns normalised).
    convention : {"LPS", "RAS"}
        The frame the matrix is expressed in. ``"LPS"`` (DICOM, default):
        +x is Left; ``"RAS"`` (NIfTI): +x is Right.

    Returns
    -------
    str
        One letter per column, e.g. ``"LPS"`` for the identity in LPS,
        ``"RAS"`` for the identity in RAS, ``"LAI"`` for LPS axes
        (1,0,0), (0,-1,0), (0,0,-1).
    """
    try:
        labels = _LABELS[convention.upper()]
    except KeyError:
        raise ValueError(f"convention must be 'LPS' or 'RAS', got {convention!r}") from None
    m = _columns(direction_matrix)
    n_axes = m.shape[1]
    a = np.abs(m)
    out = [""] * n_axes
    free_rows, free_cols = set(range(3)), set(range(n_axes))
    while free_cols:
        best = max(((a[r, c], r, c) for r in free_rows for c in free_cols))
        _, r, c = best
        out[c] = labels[r][0] if m[r, c] >= 0 else labels[r][1]
        free_rows.discard(r)
        free_cols.discard(c)
    return "".join(out)


def is_oblique(directions: Sequence[float] | np.ndarray, *, oblique_tol: float = OBLIQUE_TOL) -> bool:
    """Whether any direction is off the nearest patient axis.

    Parameters
    ----------
    directions : array_like
        ImageOrientationPatient (6 numbers), a 3xN direction matrix (columns
        are directions) or a 4x4 affine.
    oblique_tol : float
        A direction is axis-aligned when its largest absolute cosine is at
        least ``1 - oblique_tol``.

    Returns
    -------
    bool
    """
    a = np.asarray(directions, dtype=np.float64)
    if a.shape == (6,):
        a = np.column_stack([a[:3], a[3:]])
    m = _columns(a)
    return bool(np.any(np.max(np.abs(m), axis=0) < 1.0 - oblique_tol))
