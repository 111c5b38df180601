"""Hypothesis strategies for geometry: rotations, orientations, spacings, shapes.

Requires ``hypothesis`` (a test dependency); never imported by the library.
"""

from __future__ import annotations

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

__all__ = [
    "rotations",
    "orientations",
    "spacings",
    "shapes",
    "origins",
    "tilts",
]

_unit = st.floats(min_value=-1.0, max_value=1.0, allow_nan=False, allow_infinity=False)


@st.composite
def rotations(draw: st.DrawFn) -> np.ndarray:
    """Random proper rotation matrices (3x3, det +1) from random unit quaternions.

    Returns
    -------
    numpy.ndarray, shape (3, 3)
        Columns are the rotated x, y, z axes (orthonormal, right-handed).
    """
    q = np.array([draw(_unit) for _ in range(4)])
    n = float(np.linalg.norm(q))
    assume(n > 0.1)
    w, x, y, z = q / n
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


@st.composite
def orientations(draw: st.DrawFn, oblique: bool = True) -> np.ndarray:
    """ImageOrientationPatient values (6,): first two columns of a rotation.

    Parameters
    ----------
    oblique : bool
        If False, draw only axis-aligned orientations (signed permutations).
    """
    if oblique:
        r = draw(rotations())
    else:
        perm = draw(st.permutations([0, 1, 2]))
        signs = [draw(st.sampled_from([-1.0, 1.0])) for _ in range(3)]
        r = np.zeros((3, 3))
        for c, (row, s) in enumerate(zip(perm, signs)):
            r[row, c] = s
    return np.concatenate([r[:, 0], r[:, 1]])


def spacings(min_value: float = 0.1, max_value: float = 5.0) -> st.SearchStrategy[tuple[float, float, float]]:
    """Voxel spacings ``(dz, dy, dx)`` in mm."""
    f = st.floats(min_value=min_value, max_value=max_value, allow_nan=False, allow_infinity=False)
    return st.tuples(f, f, f)


def shapes(
    max_z: int = 12, max_yx: int = 16, min_z: int = 1
) -> st.SearchStrategy[tuple[int, int, int]]:
    """Array shapes ``(nz, ny, nx)``."""
    return st.tuples(
        st.integers(min_value=min_z, max_value=max_z),
        st.integers(min_value=1, max_value=max_yx),
        st.integers(min_value=1, max_value=max_yx),
    )


def origins(bound: float = 500.0) -> st.SearchStrategy[tuple[float, float, float]]:
    """ImagePositionPatient of the first voxel, in mm."""
    f = st.floats(min_value=-bound, max_value=bound, allow_nan=False, allow_infinity=False)
    return st.tuples(f, f, f)


def tilts(max_deg: float = 30.0) -> st.SearchStrategy[float]:
    """Gantry tilt angles in degrees (0 included, both signs)."""
    return st.one_of(
        st.just(0.0),
        st.floats(min_value=1.0, max_value=max_deg),
        st.floats(min_value=-max_deg, max_value=-1.0),
    )
