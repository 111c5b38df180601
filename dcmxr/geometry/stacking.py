"""Frames -> stacks: grouping by orientation, sorting, tilt, repeats, regularity.

Inputs are plain per-frame numpy arrays (positions ``(n, 3)`` from
ImagePositionPatient, orientations ``(n, 6)`` from ImageOrientationPatient),
so the same code serves single-frame series and enhanced multi-frame objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dcmxr.errors import GeometryError
from dcmxr.geometry.tolerances import (
    COLLINEARITY_ATOL,
    DUPLICATE_POSITION_ATOL,
    MAX_TILT_DEG,
    ORIENTATION_TOL,
    PIXEL_SPACING_RTOL,
    SPACING_ATOL,
    SPACING_RTOL,
    TILT_TOL_DEG,
)

__all__ = [
    "group_stacks",
    "sort_stack",
    "stack_direction",
    "find_repeats",
    "Repeats",
    "spacing_regularity",
    "Regularity",
]


def _as_points(positions: np.ndarray | Sequence, name: str = "positions") -> np.ndarray:
    p = np.asarray(positions, dtype=np.float64)
    if p.ndim == 1 and p.shape == (3,):
        p = p[None, :]
    if p.ndim != 2 or p.shape[1] != 3:
        raise ValueError(f"{name} must have shape (n, 3), got {p.shape}")
    return p


def _unit(v: np.ndarray | Sequence, name: str) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64).reshape(3)
    n = float(np.linalg.norm(a))
    if not np.isfinite(n) or n == 0:
        raise GeometryError(f"{name} must be a non-zero finite 3-vector, got {a.tolist()}")
    return a / n


def group_stacks(
    positions: np.ndarray | Sequence,
    orientations: np.ndarray | Sequence,
    *,
    rows: np.ndarray | Sequence[int] | None = None,
    cols: np.ndarray | Sequence[int] | None = None,
    pixel_spacing: np.ndarray | Sequence | None = None,
    orientation_tol: float = ORIENTATION_TOL,
    pixel_spacing_rtol: float = PIXEL_SPACING_RTOL,
) -> list[np.ndarray]:
    """Split frames into groups that can form one stack.

    Frames go together when their orientations agree (every normalised
    direction cosine within ``orientation_tol``) and, when given, their
    ``rows``, ``cols`` and ``pixel_spacing`` agree. Localizers and other
    planes therefore land in their own groups. Frames without a finite
    position or orientation form one group of their own.

    Parameters
    ----------
    positions : array_like, shape (n, 3)
        ImagePositionPatient per frame (NaN when absent).
    orientations : array_like, shape (n, 6)
        ImageOrientationPatient per frame (NaN when absent).
    rows, cols : array_like of int, shape (n,), optional
        Rows and Columns per frame.
    pixel_spacing : array_like, shape (n, 2), optional
        PixelSpacing per frame.
    orientation_tol : float
        Largest componentwise difference of direction cosines within a group.
    pixel_spacing_rtol : float
        Relative tolerance when comparing pixel spacing.

    Returns
    -------
    list of numpy.ndarray
        Frame indices (int64, ascending) of each group; groups are ordered by
        their first frame, so the result is deterministic. Frames are not
        sorted spatially here (use :func:`sort_stack`).
    """
    pos = _as_points(positions)
    ori = np.asarray(orientations, dtype=np.float64).reshape(-1, 6)
    n = len(pos)
    if len(ori) != n:
        raise ValueError(f"{n} positions but {len(ori)} orientations")
    norms = np.concatenate(
        [np.linalg.norm(ori[:, :3], axis=1, keepdims=True), np.linalg.norm(ori[:, 3:], axis=1, keepdims=True)],
        axis=1,
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        unit = np.concatenate([ori[:, :3] / norms[:, :1], ori[:, 3:] / norms[:, 1:]], axis=1)
    valid = np.all(np.isfinite(unit), axis=1) & np.all(np.isfinite(pos), axis=1)

    keys: list[tuple] = []
    for name, arr in (("rows", rows), ("cols", cols)):
        if arr is not None:
            a = np.asarray(arr).reshape(-1)
            if len(a) != n:
                raise ValueError(f"{n} frames but {len(a)} {name}")
            keys.append(tuple(int(v) for v in a))
    ps = None
    if pixel_spacing is not None:
        ps = np.asarray(pixel_spacing, dtype=np.float64).reshape(n, -1)

    group_ref: list[int] = []  # index of each group's reference frame
    members: list[list[int]] = []
    invalid: list[int] = []
    for i in range(n):
        if not valid[i]:
            invalid.append(i)
            continue
        for g, r in enumerate(group_ref):
            if np.max(np.abs(unit[i] - unit[r])) > orientation_tol:
                continue
            if any(k[i] != k[r] for k in keys):
                continue
            if ps is not None and not np.allclose(ps[i], ps[r], rtol=pixel_spacing_rtol, atol=0, equal_nan=True):
                continue
            members[g].append(i)
            break
        else:
            group_ref.append(i)
            members.append([i])
    if invalid:
        members.append(invalid)
        members.sort(key=lambda m: m[0])
    return [np.asarray(m, dtype=np.int64) for m in members]


def sort_stack(
    positions: np.ndarray | Sequence, normal: np.ndarray | Sequence
) -> tuple[np.ndarray, np.ndarray]:
    """Order frames by their position along the slice normal.

    Parameters
    ----------
    positions : array_like, shape (n, 3)
        ImagePositionPatient per frame.
    normal : array_like, shape (3,)
        The slice normal (``cross(row, col)``); need not be unit length.

    Returns
    -------
    order : numpy.ndarray of int64, shape (n,)
        Frame indices sorted by increasing distance along ``normal``; the sort
        is stable, so frames at the same position keep their input order.
    distances : numpy.ndarray of float64, shape (n,)
        The sorted distances ``positions[order] @ unit(normal)`` in mm.
    """
    p = _as_points(positions)
    d = p @ _unit(normal, "normal")
    order = np.argsort(d, kind="stable")
    return order.astype(np.int64), d[order]


def stack_direction(
    positions: np.ndarray | Sequence,
    normal: np.ndarray | Sequence,
    *,
    tilt_tol_deg: float = TILT_TOL_DEG,
    max_tilt_deg: float = MAX_TILT_DEG,
    collinearity_atol: float = COLLINEARITY_ATOL,
    duplicate_position_atol: float = DUPLICATE_POSITION_ATOL,
) -> tuple[np.ndarray, float]:
    """Unit direction along which the slices are stacked, and the tilt.

    The direction is the best-fit line through the positions (principal
    axis), oriented into the half-space of ``normal``, so slices sorted by
    :func:`sort_stack` have increasing coordinates along it and the basis
    ``(row, col, direction)`` is right-handed. When it is within
    ``tilt_tol_deg`` of the normal, the normal itself is returned (an
    ordinary stack). Repeated positions are fine.

    Parameters
    ----------
    positions : array_like, shape (n, 3)
        ImagePositionPatient of the frames of one stack (any order).
    normal : array_like, shape (3,)
        Slice normal ``cross(row, col)``.
    tilt_tol_deg : float
        Tilts below this (degrees) are treated as rounding noise.
    max_tilt_deg : float
        Larger tilts raise :class:`GeometryError`.
    collinearity_atol : float
        Largest distance (mm) of any position from the fitted line.
    duplicate_position_atol : float
        When all positions lie within this (mm) of each other there is no
        measurable direction and the normal is returned.

    Returns
    -------
    direction : numpy.ndarray, shape (3,)
        Unit stacking direction in LPS.
    tilt_deg : float
        Measured angle between the fitted line and the normal in degrees
        (reported even when below ``tilt_tol_deg``; 0 for a single position).

    Raises
    ------
    GeometryError
        When the positions are not on one line or the tilt exceeds
        ``max_tilt_deg``.
    """
    p = _as_points(positions)
    nrm = _unit(normal, "normal")
    if len(p) < 2:
        return nrm, 0.0
    centred = p - p.mean(axis=0)
    if np.max(np.linalg.norm(centred, axis=1)) == 0.0:
        return nrm, 0.0
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    d = vt[0]
    if d @ nrm < 0:
        d = -d
    along = centred @ d
    residual = float(np.max(np.linalg.norm(centred - np.outer(along, d), axis=1)))
    if residual > collinearity_atol:
        raise GeometryError(
            f"frame positions are not on one line: largest distance from the fitted stack "
            f"axis is {residual:.4g} mm, exceeding collinearity_atol={collinearity_atol:g} mm "
            f"(pass a larger collinearity_atol to relax, or split the frames into stacks)"
        )
    if float(np.ptp(along)) <= duplicate_position_atol:
        # all positions (nearly) coincide: no measurable direction
        return nrm, 0.0
    tilt = float(np.degrees(np.arccos(np.clip(d @ nrm, -1.0, 1.0))))
    if tilt > max_tilt_deg:
        raise GeometryError(
            f"slice positions move at {tilt:.3g} degrees to the slice normal, exceeding "
            f"max_tilt_deg={max_tilt_deg:g} (pass a larger max_tilt_deg to relax)"
        )
    if tilt < tilt_tol_deg:
        return nrm, tilt
    return d / np.linalg.norm(d), tilt


@dataclass(frozen=True)
class Repeats:
    """How frames share positions along a stack.

    Attributes
    ----------
    unique : numpy.ndarray, shape (m,)
        Distinct positions (mean of each cluster), ascending.
    index : numpy.ndarray of int64, shape (n,)
        For each input frame, the index into ``unique`` of its position.
    repeat : numpy.ndarray of int64, shape (n,)
        For each input frame, how many earlier frames (in input order) share
        its position: the repeat (volume, time point) number when frames are
        given in acquisition order.
    counts : numpy.ndarray of int64, shape (m,)
        Frames per position.
    """

    unique: np.ndarray
    index: np.ndarray
    repeat: np.ndarray
    counts: np.ndarray

    @property
    def uniform(self) -> bool:
        """True when every position has the same number of frames."""
        return bool(len(self.counts) == 0 or np.all(self.counts == self.counts[0]))

    @property
    def n_repeats(self) -> int | None:
        """Frames per position when uniform (the number of volumes), else None."""
        return int(self.counts[0]) if self.uniform and len(self.counts) else None


def find_repeats(
    distances: np.ndarray | Sequence[float],
    *,
    duplicate_position_atol: float = DUPLICATE_POSITION_ATOL,
) -> Repeats:
    """Find frames that share a position (repeated volumes).

    Parameters
    ----------
    distances : array_like, shape (n,)
        Position of each frame along the stack (e.g. from :func:`sort_stack`,
        or ``positions @ normal``), in any order.
    duplicate_position_atol : float
        Positions closer than this (mm, chained between neighbours) are one
        position.

    Returns
    -------
    Repeats
    """
    d = np.asarray(distances, dtype=np.float64).reshape(-1)
    if len(d) == 0:
        e = np.zeros(0, dtype=np.int64)
        return Repeats(np.zeros(0), e, e, e)
    order = np.argsort(d, kind="stable")
    ds = d[order]
    new = np.concatenate([[True], np.diff(ds) > duplicate_position_atol])
    cluster_sorted = np.cumsum(new) - 1
    index = np.empty(len(d), dtype=np.int64)
    index[order] = cluster_sorted
    m = int(cluster_sorted[-1]) + 1
    counts = np.bincount(index, minlength=m).astype(np.int64)
    unique = np.bincount(index, weights=d, minlength=m) / counts
    repeat = np.empty(len(d), dtype=np.int64)
    seen = np.zeros(m, dtype=np.int64)
    for i, k in enumerate(index):
        repeat[i] = seen[k]
        seen[k] += 1
    return Repeats(unique=unique, index=index, repeat=repeat, counts=counts)


@dataclass(frozen=True)
class Regularity:
    """Result of :func:`spacing_regularity`.

    Attributes
    ----------
    regular : bool
        Every step equals ``spacing`` within tolerance (no gaps).
    spacing : float
        Nominal step in mm (NaN with fewer than two positions).
    steps : numpy.ndarray
        The measured steps between consecutive sorted positions.
    missing : numpy.ndarray of int64
        Indices, on the complete regular grid starting at the first position,
        of slices that are absent (steps that are whole multiples of
        ``spacing``).
    on_grid : bool
        Every position lies on the regular grid (regular, or regular with
        missing slices). False means uneven spacing.
    max_deviation : float
        Largest ``|step - k * spacing|`` over steps, ``k = round(step /
        spacing)``, in mm.
    """

    regular: bool
    spacing: float
    steps: np.ndarray
    missing: np.ndarray
    on_grid: bool
    max_deviation: float


def spacing_regularity(
    distances: np.ndarray | Sequence[float],
    *,
    spacing_rtol: float = SPACING_RTOL,
    spacing_atol: float = SPACING_ATOL,
) -> Regularity:
    """Check whether sorted, distinct positions are evenly spaced.

    Parameters
    ----------
    distances : array_like, shape (n,)
        Distinct slice positions along the stack, ascending (for example
        ``Repeats.unique`` or a ``z`` coordinate).
    spacing_rtol, spacing_atol : float
        A step ``s`` matches ``k`` grid steps when ``|s - k * spacing| <=
        spacing_atol + spacing_rtol * k * spacing``.

    Returns
    -------
    Regularity

    Raises
    ------
    GeometryError
        When positions are not strictly increasing (repeats must be removed
        first, see :func:`find_repeats`).
    """
    d = np.asarray(distances, dtype=np.float64).reshape(-1)
    empty = np.zeros(0, dtype=np.int64)
    if len(d) < 2:
        return Regularity(True, float("nan"), np.zeros(0), empty, True, 0.0)
    steps = np.diff(d)
    if np.any(steps <= spacing_atol):
        i = int(np.argmin(steps))
        raise GeometryError(
            f"slice positions must be strictly increasing and distinct: step {i} -> {i + 1} is "
            f"{steps[i]:.4g} mm (<= spacing_atol={spacing_atol:g}); sort them and remove repeated "
            f"positions (find_repeats) first"
        )
    # Candidate steps: the smallest step (right when every step is a whole multiple of it, even if
    # most steps are doubles from missing slices) and the median (right for noisy even spacing).
    smallest = float(np.min(steps))
    k_small = np.maximum(np.rint(steps / smallest), 1.0)
    if np.all(np.abs(steps - k_small * smallest) <= spacing_atol + spacing_rtol * k_small * smallest):
        guess = smallest
    else:
        guess = float(np.median(steps))
    # a minority of double steps (missing slices) would inflate the median
    k = np.maximum(np.rint(steps / guess), 1.0)
    ok = np.abs(steps - k * guess) <= spacing_atol + spacing_rtol * k * guess
    spacing = float(np.sum(steps[ok]) / np.sum(k[ok])) if np.any(ok) else guess
    k = np.maximum(np.rint(steps / spacing), 1.0)
    dev = np.abs(steps - k * spacing)
    on = dev <= spacing_atol + spacing_rtol * k * spacing
    on_grid = bool(np.all(on))
    regular = on_grid and bool(np.all(k == 1))
    missing = empty
    if on_grid and not regular:
        grid_index = np.concatenate([[0], np.cumsum(k)]).astype(np.int64)
        full = np.arange(grid_index[-1] + 1)
        missing = np.setdiff1d(full, grid_index).astype(np.int64)
    return Regularity(
        regular=regular,
        spacing=spacing,
        steps=steps,
        missing=missing,
        on_grid=on_grid,
        max_deviation=float(np.max(dev)),
    )
