"""RTSTRUCT contours -> masks on any dcmxr grid (``rasterize``).

Model
-----
Each contour plane of an ROI stands for a slab as thick as the ROI's plane
spacing (the smallest distance between its contour planes, as dicompyler-core
uses for volumes). A slice of the target grid takes the polygons of the
nearest contour plane when it lies within half that thickness, and nothing
otherwise. In-plane, a voxel is inside when its centre is inside by the
even-odd rule over *all* polygons of the plane: nested contours (a hole
inside an outline, an island in the hole) toggle, which is how RTSTRUCT
encodes holes and what dicompyler-core's XOR of contour masks does.
Fractional masks sample ``subsamples x subsamples`` points per voxel in the
plane and return the inside fraction (partial volume in-plane only).

Contours are expressed in the grid's own axes (:func:`basis_coefficients`),
so any grid orientation works as long as its slices are parallel to the
contour planes; otherwise :class:`~dcmxr.errors.GeometryError`.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ..errors import DcmxrWarning, GeometryError, SelectionError
from .rtstruct import StructureSet, closed_contours

#: Contour planes closer than this (mm) are one plane.
PLANE_TOL = 0.01
#: Largest out-of-plane spread (mm) of one contour's points before it is refused.
PLANARITY_TOL = 0.5


def grid_axes(like: Any) -> dict[str, Any]:
    """x, y, z coordinate values and directions of a dcmxr array (z may be scalar)."""
    out: dict[str, Any] = {}
    for ax in ("x", "y", "z"):
        if ax not in like.coords or "direction" not in like[ax].attrs:
            raise GeometryError(f"`like` has no {ax!r} coordinate with a 'direction' attr; it needs dcmxr geometry "
                                f"(open it with dcmxr or build it with dcmxr.testing.synthetic)")
        out[ax] = np.atleast_1d(np.asarray(like[ax].values, dtype=np.float64))
        out[f"dir_{ax}"] = np.asarray(like[ax].attrs["direction"], dtype=np.float64)
    return out


def fill_polygons(polygons: list[np.ndarray], xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Even-odd fill of polygons sampled at the points ``(xs[i], ys[j])``.

    Parameters
    ----------
    polygons : list of (n, 2) arrays
        Closed polygons (last point joins the first) in the same units as
        ``xs``/``ys``.
    xs, ys : 1-D arrays
        Sample positions along x (columns) and y (rows), any order.

    Returns
    -------
    ndarray of bool, shape (len(ys), len(xs))
        True where an odd number of polygon edges cross the ray from the
        point towards -x.
    """
    nx, ny = len(xs), len(ys)
    order = np.argsort(xs, kind="stable")
    xs_sorted = xs[order]
    a = np.concatenate([p for p in polygons if len(p) >= 3]) if polygons else np.zeros((0, 2))
    if len(a) == 0:
        return np.zeros((ny, nx), dtype=bool)
    b = np.concatenate([np.roll(p, -1, axis=0) for p in polygons if len(p) >= 3])
    xa, ya, xb, yb = a[:, 0], a[:, 1], b[:, 0], b[:, 1]
    rows = np.flatnonzero((ys >= min(ya.min(), yb.min())) & (ys <= max(ya.max(), yb.max())))
    inside = np.zeros((ny, nx), dtype=bool)
    if len(rows) == 0:
        return inside
    y = ys[rows][:, None]
    cross = (ya[None, :] > y) != (yb[None, :] > y)
    j, e = np.nonzero(cross)
    with np.errstate(divide="ignore", invalid="ignore"):
        xc = xa[e] + (ys[rows][j] - ya[e]) * (xb[e] - xa[e]) / (yb[e] - ya[e])
    k = np.searchsorted(xs_sorted, xc, side="right")
    toggles = np.bincount(j * (nx + 1) + k, minlength=len(rows) * (nx + 1)).reshape(len(rows), nx + 1)
    odd = (np.cumsum(toggles[:, :nx], axis=1) % 2).astype(bool)
    out_rows = np.empty_like(odd)
    out_rows[:, order] = odd
    inside[rows] = out_rows
    return inside


def roi_planes(structs: StructureSet, number: int, axes: dict) -> tuple[np.ndarray, list[list[np.ndarray]], float]:
    """Contour planes of one ROI in a grid's axes.

    Returns
    -------
    planes : ndarray
        Sorted plane positions along the grid's z axis (mm).
    polygons : list of list of (n, 2) arrays
        In-plane (x, y) polygons of each plane.
    thickness : float
        Smallest distance between planes (0 for a single plane).
    """
    closed = closed_contours(structs, number)
    name = structs.rois.at[number, "roi_name"]
    cz, polys = [], []
    for pts in closed["points"]:
        c = _coeffs(pts, axes)
        spread = float(np.ptp(c[:, 2]))
        if spread > PLANARITY_TOL:
            raise GeometryError(
                f"ROI {name!r} (number {number}): a contour spans {spread:.2f} mm across the slices of the target "
                f"grid (tolerance {PLANARITY_TOL} mm): its planes are not parallel to the grid's slices. Rasterise "
                f"onto a grid whose slices are parallel to the contours (e.g. the planning CT) and resample that")
        cz.append(float(c[:, 2].mean()))
        polys.append(c[:, :2])
    cz = np.asarray(cz)
    order = np.argsort(cz, kind="stable")
    planes: list[float] = []
    groups: list[list[np.ndarray]] = []
    members: list[list[float]] = []
    for i in order:
        if planes and cz[i] - members[-1][0] <= PLANE_TOL:
            groups[-1].append(polys[i])
            members[-1].append(cz[i])
            planes[-1] = float(np.mean(members[-1]))
        else:
            planes.append(float(cz[i]))
            groups.append([polys[i]])
            members.append([cz[i]])
    p = np.asarray(planes)
    thickness = float(np.min(np.diff(p))) if len(p) > 1 else 0.0
    return p, groups, thickness


def _coeffs(pts: np.ndarray, axes: dict) -> np.ndarray:
    from ..geometry.coords import basis_coefficients

    return basis_coefficients(pts, axes["dir_x"], axes["dir_y"], axes["dir_z"])


def plane_masks(polygons: list[list[np.ndarray]], plane_of_slice: np.ndarray, xs: np.ndarray, ys: np.ndarray,
                *, fractional: bool = False, subsamples: int = 5) -> np.ndarray:
    """Stack of in-plane masks: slice k takes the polygons of plane ``plane_of_slice[k]`` (-1: empty)."""
    nz = len(plane_of_slice)
    shape = (nz, len(ys), len(xs))
    if fractional:
        s = int(subsamples)
        if s < 1:
            raise ValueError(f"subsamples must be >= 1, got {subsamples}")
        offs = (np.arange(s) + 0.5) / s - 0.5
        dx = _step(xs)
        dy = _step(ys)
        fx = (xs[:, None] + offs[None, :] * dx).ravel()
        fy = (ys[:, None] + offs[None, :] * dy).ravel()
        out = np.zeros(shape, dtype=np.float32)
    else:
        out = np.zeros(shape, dtype=bool)
    cache: dict[int, np.ndarray] = {}
    for k, j in enumerate(plane_of_slice):
        if j < 0:
            continue
        if j not in cache:
            if fractional:
                fine = fill_polygons(polygons[j], fx, fy)
                cache[j] = fine.reshape(len(ys), s, len(xs), s).mean(axis=(1, 3), dtype=np.float32)
            else:
                cache[j] = fill_polygons(polygons[j], xs, ys)
        out[k] = cache[j]
    return out


def _step(v: np.ndarray) -> float:
    return float(np.median(np.diff(v))) if len(v) > 1 else 1.0


def assign_planes(z: np.ndarray, planes: np.ndarray, thickness: float) -> np.ndarray:
    """Index of the contour plane each grid slice takes (-1 when none is within half a thickness)."""
    if len(planes) == 0:
        return np.full(len(z), -1)
    j = np.argmin(np.abs(z[:, None] - planes[None, :]), axis=1)
    d = np.abs(z - planes[j])
    half = thickness / 2 if thickness > 0 else PLANE_TOL
    return np.where(d <= half + 1e-6, j, -1)


def _check_frame(structs: StructureSet, number: int, like: Any, allow_different_frame: bool) -> None:
    a = structs.rois.at[number, "frame_of_reference_uid"]
    b = like.attrs.get("frame_of_reference_uid")
    if a and b and a != b and not allow_different_frame:
        raise GeometryError(
            f"ROI {structs.rois.at[number, 'roi_name']!r} is in frame of reference {a!r} but the grid is in {b!r}: "
            f"the contours' coordinates do not refer to the grid's patient space. Pass allow_different_frame=True "
            f"only if you know the frames coincide")


def _one(structs, number, like, axes, fractional, subsamples, allow_different_frame):
    import xarray as xr

    _check_frame(structs, number, like, allow_different_frame)
    planes, polys, thickness = roi_planes(structs, number, axes)
    if thickness == 0 and len(axes["z"]) > 1:
        thickness = _step(axes["z"])
    which = assign_planes(axes["z"], planes, thickness)
    data = plane_masks(polys, which, axes["x"], axes["y"], fractional=fractional, subsamples=subsamples)
    name = str(structs.rois.at[number, "roi_name"])
    if not data.any():
        warnings.warn(f"ROI {name!r} (number {number}) does not overlap the grid: its mask is empty",
                      DcmxrWarning, stacklevel=3)
    color = structs.rois.at[number, "color"]
    attrs = {"roi_name": name, "roi_number": int(number), "long_name": name,
             "frame_of_reference_uid": structs.rois.at[number, "frame_of_reference_uid"] or
             like.attrs.get("frame_of_reference_uid"),
             "contour_thickness_mm": float(thickness)}
    if color is not None:
        attrs["color"] = [int(c) for c in color]
    if fractional:
        attrs["units"] = "dimensionless"
    attrs = {k: v for k, v in attrs.items() if v is not None}
    coords = {ax: like[ax].variable for ax in ("x", "y", "z")}
    if "z" in like.dims:
        return xr.DataArray(data, dims=("z", "y", "x"), coords=coords, attrs=attrs, name=name)
    return xr.DataArray(data[0], dims=("y", "x"), coords=coords, attrs=attrs, name=name)


def rasterize(structs: StructureSet, like: Any, roi: str | int | list | None = None, *,
              fractional: bool = False, subsamples: int = 5, allow_different_frame: bool = False):
    """Rasterise RTSTRUCT ROIs onto the grid of ``like``.

    Parameters
    ----------
    structs : StructureSet
        From :func:`dcmxr.open_rtstruct`.
    like : xarray.DataArray or Dataset
        Any dcmxr grid (a CT, a dose, a resampled grid) whose slices are
        parallel to the contour planes; only its x/y/z coordinates are used.
    roi : str, int, list or None
        ROI name (case-insensitive) or number, a list of them, or None for all.
    fractional : bool
        Return the in-plane inside fraction of each voxel (float32 0..1)
        instead of a boolean centre test.
    subsamples : int
        Samples per voxel side for ``fractional``.
    allow_different_frame : bool
        Skip the FrameOfReferenceUID check.

    Returns
    -------
    xarray.DataArray or xarray.Dataset
        One ROI: a mask named after it with ``like``'s x/y/z coordinates and
        attrs ``roi_name``, ``roi_number``, ``color``. Several: a Dataset with
        one variable per ROI name (ROIs without closed contours are skipped
        with a warning).

    Raises
    ------
    SelectionError
        Unknown ROI, or a single requested ROI without closed contours.
    GeometryError
        Different frame of reference, or contours not parallel to the slices.
    """
    import xarray as xr

    axes = grid_axes(like)
    if roi is not None and not isinstance(roi, (list, tuple)):
        return _one(structs, structs.roi_number(roi), like, axes, fractional, subsamples, allow_different_frame)
    numbers = [structs.roi_number(r) for r in roi] if roi is not None else list(structs.rois.index)
    out = {}
    for n in numbers:
        try:
            m = _one(structs, n, like, axes, fractional, subsamples, allow_different_frame)
        except SelectionError as exc:
            warnings.warn(f"{exc}; skipped", DcmxrWarning, stacklevel=2)
            continue
        out[m.name] = m
    return xr.Dataset(out, attrs={k: v for k, v in structs.attrs.items()})
