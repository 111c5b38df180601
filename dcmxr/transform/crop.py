"""Crop to a box or a mask's bounding box; pad with regularly extended coordinates.

Both are exact (index operations, no interpolation) and keep dask arrays lazy,
except that cropping to a *mask* computes the mask's bounding box (three small
``any`` reductions of the mask, not of the image).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from ..errors import GeometryError
from ..geometry.affine import world_to_index
from ._grid import AXES, Grid, grid_of, parse_length, per_axis

__all__ = ["crop", "pad", "bounding_box"]

_EPS = 1e-6


def _to_voxels(spec: tuple[float, str], grid: Grid, ax: str) -> int:
    num, kind = spec
    if kind == "vox":
        if num < 0:
            raise ValueError(f"margin/pad widths must be >= 0, got {num} voxels on {ax!r}")
        return int(math.ceil(num - _EPS))
    if num < 0:
        raise ValueError(f"margin/pad widths must be >= 0, got {num} mm on {ax!r}")
    step = abs(_end_steps(grid, ax)[0])
    return int(math.ceil(num / step - _EPS))


def _end_steps(grid: Grid, ax: str) -> tuple[float, float]:
    v = grid.values(ax)
    if len(v) < 2:
        s = float(grid.default_spacing.get(ax, 1.0))
        return s, s
    return float(v[1] - v[0]), float(v[-1] - v[-2])


def _same_grid(a: Grid, b: Grid, atol: float = 1e-3) -> bool:
    for ax in AXES:
        va, vb = a.values(ax), b.values(ax)
        if va.shape != vb.shape or not np.allclose(va, vb, atol=atol, rtol=0):
            return False
        if not np.allclose(a.direction(ax), b.direction(ax), atol=1e-4):
            return False
    return True


def bounding_box(mask: xr.DataArray) -> dict[str, tuple[int, int]]:
    """Inclusive index range ``{"x": (lo, hi), ...}`` of the True voxels of a mask.

    Non-spatial dims (``t``...) are reduced with ``any``. Computes only the
    three 1-D projections of the mask.

    Raises
    ------
    ValueError
        When the mask has no True voxel.
    """
    import dask

    m = mask if mask.dtype == bool else mask != 0
    proj = {}
    for ax in AXES:
        if ax not in m.dims:
            continue
        others = [d for d in m.dims if d != ax]
        proj[ax] = m.any(dim=others) if others else m
    (vals,) = dask.compute({ax: p.data for ax, p in proj.items()})
    out = {}
    for ax, v in vals.items():
        idx = np.flatnonzero(np.asarray(v))
        if idx.size == 0:
            raise ValueError("the mask has no True voxel; there is nothing to crop to")
        out[ax] = (int(idx[0]), int(idx[-1]))
    return out


def crop(
    da: xr.DataArray,
    box_or_mask: Any,
    margin: Any = 0,
) -> xr.DataArray:
    """Crop to a box (world mm, coordinate mm or index) or to a mask's bounding box.

    Parameters
    ----------
    da : xarray.DataArray
        An array with dcmxr geometry; dask arrays stay lazy.
    box_or_mask : DataArray, mapping or array_like
        * a boolean (or label) ``DataArray`` on the same x/y/z grid as ``da``:
          crop to the bounding box of its nonzero voxels (any ``t``...);
        * a mapping by dim name, each value either a ``slice`` of indices
          (``{"z": slice(10, 50)}``) or a ``(lo, hi)`` pair of coordinate
          values in mm along that axis (inclusive, order-agnostic; axes not
          given are kept whole);
        * an array of shape ``(2, 3)``: a world box ``[[L, P, S]_min, [L, P,
          S]_max]`` in LPS mm (what ``.dcm.bounds`` returns). The result is
          the smallest index box holding every voxel centre inside the world
          box (for an oblique grid it also holds a few voxels outside it).
    margin : int, float, str, pint Quantity or mapping
        Grown on each side of the box, clipped to the array: a bare number
        counts **voxels**; ``"5 mm"`` (or a pint length) is converted to
        voxels per axis (rounded up). A mapping gives it per dim.

    Returns
    -------
    xarray.DataArray
        ``da.isel(...)``: the same voxels and coordinates, so the affine's
        direction and spacing are unchanged and its origin moves to the
        first kept voxel.

    Raises
    ------
    GeometryError
        A mask on another grid (resample it first with
        ``resample_like(mask, da, method="nearest")``), or an array without
        geometry.
    ValueError
        An empty mask, or a box that holds no voxel.
    """
    grid = grid_of(da, need_dims=False)
    ranges: dict[str, tuple[int, int]] = {}
    if isinstance(box_or_mask, xr.DataArray):
        mgrid = grid_of(box_or_mask, need_dims=False, what="the mask")
        if not _same_grid(grid, mgrid):
            raise GeometryError(
                "the mask is not on the same x/y/z grid as the array (coordinates or directions differ); "
                "bring it onto the array's grid first: dcmxr.transform.resample_like(mask, da, method='nearest')"
            )
        ranges = bounding_box(box_or_mask)
    elif isinstance(box_or_mask, Mapping):
        for ax, spec in box_or_mask.items():
            if ax not in AXES or ax not in da.dims:
                raise ValueError(f"box keys must be spatial dims of the array among {[a for a in AXES if a in da.dims]}, got {ax!r}")
            n = len(grid.values(ax))
            if isinstance(spec, slice):
                idx = np.arange(n)[spec]
                if spec.step not in (None, 1):
                    raise ValueError("index boxes take slices with step 1; use isel for strided selection")
                if idx.size == 0:
                    raise ValueError(f"slice {spec} selects no voxel along {ax!r} (size {n})")
                ranges[ax] = (int(idx[0]), int(idx[-1]))
            else:
                lo, hi = sorted(float(parse_length(v)[0]) for v in spec)
                v = grid.values(ax)
                idx = np.flatnonzero((v >= lo - _EPS) & (v <= hi + _EPS))
                if idx.size == 0:
                    raise ValueError(f"no {ax!r} coordinate lies in [{lo}, {hi}] mm (range {v.min():.4g}..{v.max():.4g})")
                ranges[ax] = (int(idx[0]), int(idx[-1]))
    else:
        box = np.asarray(box_or_mask, dtype=np.float64)
        if box.shape != (2, 3):
            raise TypeError(
                "box_or_mask must be a DataArray mask, a dict by dim name, or a (2, 3) world box "
                f"[[L, P, S]_min, [L, P, S]_max]; got {type(box_or_mask).__name__} of shape {box.shape}"
            )
        lo, hi = box.min(axis=0), box.max(axis=0)
        corners = np.array([[a, b, c] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])])
        idx = world_to_index(corners, *grid.args, default_spacing=dict(grid.default_spacing))
        for k, ax in enumerate(AXES):
            if ax not in da.dims:
                continue
            n = len(grid.values(ax))
            a = max(0, int(math.ceil(idx[:, k].min() - _EPS)))
            b = min(n - 1, int(math.floor(idx[:, k].max() + _EPS)))
            if a > b:
                raise ValueError(f"the world box does not overlap the array along {ax!r}")
            ranges[ax] = (a, b)
    margins = per_axis(margin, "margin", bare="vox") if margin is not None else {}
    sel = {}
    for ax, (a, b) in ranges.items():
        m = _to_voxels(margins[ax], grid, ax) if ax in margins else 0
        n = len(grid.values(ax))
        sel[ax] = slice(max(0, a - m), min(n - 1, b + m) + 1)
    return da.isel(sel)


def pad(
    da: xr.DataArray,
    widths: Mapping[str, Any],
    value: Any = 0,
    *,
    mode: str = "constant",
) -> xr.DataArray:
    """Pad spatial axes and extend their coordinates regularly.

    Parameters
    ----------
    da : xarray.DataArray
        An array with dcmxr geometry; dask arrays stay lazy.
    widths : mapping
        ``{"z": (before, after), "x": n}`` (``n`` means ``(n, n)``). Each
        width is a number of voxels, or a length such as ``"10 mm"`` (or a
        pint Quantity), rounded up to whole voxels of that axis.
    value : scalar
        Fill value for ``mode="constant"`` (default 0; e.g. -1024 for CT air).
    mode : str
        Any ``xarray.DataArray.pad`` mode (``"constant"``, ``"edge"``,
        ``"reflect"``...).

    Returns
    -------
    xarray.DataArray
        New coordinates continue the end steps of each padded axis (for a
        single-slice axis, the ``slice_thickness``/``spacing_between_slices``
        attr or 1 mm), so the affine is the input's with the origin moved by
        ``before`` voxels. Non-dim coordinates along a padded dim (e.g.
        ``sop_instance_uid``) get missing values at the new positions.
    """
    grid = grid_of(da, need_dims=False)
    pw: dict[str, tuple[int, int]] = {}
    for ax, w in widths.items():
        if ax not in AXES:
            raise ValueError(f"pad works on spatial dims x, y, z; got {ax!r}")
        if ax not in da.dims:
            raise ValueError(f"{ax!r} is not a dimension of this array (dims {da.dims})")
        before, after = (w, w) if not isinstance(w, (tuple, list)) else w
        pw[ax] = (
            _to_voxels(parse_length(before, bare="vox"), grid, ax),
            _to_voxels(parse_length(after, bare="vox"), grid, ax),
        )
    pw = {ax: p for ax, p in pw.items() if p != (0, 0)}
    if not pw:
        return da
    kw = {"constant_values": value} if mode == "constant" else {}
    out = da.pad(pw, mode=mode, **kw)
    for ax, (b, a) in pw.items():
        v = grid.values(ax)
        s0, s1 = _end_steps(grid, ax)
        new = np.concatenate([v[0] - s0 * np.arange(b, 0, -1), v, v[-1] + s1 * np.arange(1, a + 1)])
        out = out.assign_coords({ax: xr.Variable((ax,), new, attrs=dict(da.coords[ax].attrs))})
    return out
