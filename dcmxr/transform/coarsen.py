"""Block reduction (``coarsen``) that keeps geometry and per-frame traceability.

``xarray``'s ``da.coarsen(z=2).mean()`` averages every coordinate on a
coarsened dim with its default ``coord_func="mean"``. That is right for the
``x``/``y``/``z`` positions (the mean of a block's voxel centres is the new
voxel's centre, so a regular axis stays regular with its step times the
window), but it raises on the per-frame string coordinates dcmxr puts on the
frame dims (``sop_instance_uid``, ``instance_number`` strings...), and under
``xr.set_options(keep_attrs=False)`` it drops the ``units``/``direction``
attrs of the positions.

:func:`coarsen` passes ``coord_func`` per coordinate instead:

* floating-point, complex, datetime and timedelta coordinates: ``"mean"``
  (block centres, mean acquisition times);
* anything else (strings, objects, and integers, which on frame dims are
  identifiers such as ``instance_number``, where a mean like 1.5 names no
  frame): the block's values joined with ``"\\"`` (the DICOM multi-value
  separator), so each output voxel still names every source frame, e.g.
  ``sop_instance_uid = "1.2.3.1\\1.2.3.2"``, ``instance_number = "1\\2"``;

then it puts the input's attrs back on ``x``, ``y``, ``z`` (whatever the
``keep_attrs`` option) and scales the ``spacing_between_slices`` attr by the
``z`` window.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import xarray as xr

from ._grid import AXES

__all__ = ["coarsen", "join_values", "SEPARATOR"]

#: Separator of joined non-numeric coordinate values (DICOM's multi-value delimiter).
SEPARATOR = "\\"

_MEAN_KINDS = "fcmM"


def join_values(values: np.ndarray, axis: int | tuple[int, ...], **_: Any) -> np.ndarray:
    """Reduce blocks of non-numeric values by joining their text with :data:`SEPARATOR`.

    A ``coord_func`` for :meth:`xarray.DataArray.coarsen`: ``values`` is the
    reshaped coordinate with the window axes at ``axis``.

    Parameters
    ----------
    values : numpy.ndarray
        Coordinate values, window axes included.
    axis : int or tuple of int
        The window axes to reduce.

    Returns
    -------
    numpy.ndarray
        Object array of ``str`` without the window axes.
    """
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(int(a) for a in axis)
    axes = tuple(a % values.ndim for a in axes)
    moved = np.moveaxis(values, axes, tuple(range(values.ndim - len(axes), values.ndim)))
    keep = moved.shape[: values.ndim - len(axes)]
    flat = moved.reshape(keep + (-1,))
    out = np.empty(keep, dtype=object)
    for idx in np.ndindex(*keep):
        out[idx] = SEPARATOR.join("" if v is None else str(v) for v in flat[idx])
    return out


def _coord_funcs(da: xr.DataArray, dims: set[str]) -> dict[str, str | Callable]:
    funcs: dict[str, str | Callable] = {}
    for name, c in da.coords.items():
        if not dims.intersection(c.dims):
            continue
        funcs[str(name)] = "mean" if c.dtype.kind in _MEAN_KINDS else join_values
    return funcs


def coarsen(
    da: xr.DataArray,
    windows: Mapping[str, int] | None = None,
    *,
    func: str = "mean",
    boundary: str = "trim",
    side: str = "left",
    **windows_kwargs: int,
) -> xr.DataArray:
    """Reduce blocks of voxels (``coarsen(da, z=2)``), keeping geometry and frame traceability.

    Parameters
    ----------
    da : xarray.DataArray
        Any array (dask-backed input stays lazy); typically dims
        ``(..., "z", "y", "x")`` with dcmxr geometry.
    windows : mapping, optional
        Window size per dim, e.g. ``{"z": 2, "x": 4}``; or pass them as
        keywords (``z=2``).
    func : str
        The reduction: a method of xarray's coarsen object (``"mean"``,
        ``"max"``, ``"min"``, ``"sum"``, ``"median"``, ``"std"``...).
    boundary : {"trim", "pad", "exact"}
        What to do with a last, partial block (xarray's meaning). ``"trim"``
        (the default here, unlike xarray's ``"exact"``) drops it.
    side : {"left", "right"}
        Which end the blocks start from.

    Returns
    -------
    xarray.DataArray
        The reduced array. ``x``/``y``/``z`` hold block-centre positions with
        the input's attrs (``units``, ``direction``), so the affine is the
        input's with steps multiplied by the windows and the origin moved to
        the first block's centre. Non-numeric coordinates on coarsened dims
        hold the block's values joined with ``"\\"`` (see
        :func:`join_values`); numeric ones their block mean.

    Raises
    ------
    ValueError
        No windows, a window that is not a positive integer, or a dim the
        array does not have.
    """
    win = dict(windows or {})
    win.update(windows_kwargs)
    if not win:
        raise ValueError("give at least one window, e.g. coarsen(da, z=2)")
    for dim, w in win.items():
        if dim not in da.dims:
            raise ValueError(f"{dim!r} is not a dimension of this array (dims {da.dims})")
        if isinstance(w, (bool, np.bool_)) or not isinstance(w, (int, np.integer)) or w < 1:
            raise ValueError(f"window for {dim!r} must be a positive integer, got {w!r}")
    coarse = da.coarsen(win, boundary=boundary, side=side, coord_func=_coord_funcs(da, set(win)))
    try:
        reduce = getattr(coarse, func)
    except AttributeError:
        raise ValueError(f"unknown reduction func={func!r}; use e.g. 'mean', 'max', 'min', 'sum', 'median'") \
            from None
    out = reduce(keep_attrs=True)
    for ax in AXES:
        if ax in out.coords and ax in da.coords:
            out.coords[ax].attrs.update(da.coords[ax].attrs)
    wz = int(win.get("z", 1))
    if wz > 1 and isinstance(out.attrs.get("spacing_between_slices"), (int, float)):
        out.attrs["spacing_between_slices"] = float(out.attrs["spacing_between_slices"]) * wz
    return out
