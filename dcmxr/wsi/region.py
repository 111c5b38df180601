"""Region reads with OpenSlide semantics."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import SelectionError
from .index import lookup

__all__ = ["read_region", "level_image"]


def level_image(slide: Any, level: int | str):
    """The ``image`` DataArray of a level (``int`` index or node name) of an opened slide."""
    name = f"level_{level}" if isinstance(level, (int, np.integer)) else str(level)
    if name not in slide.children:
        levels = [k for k in slide.children if k.startswith("level_")]
        raise SelectionError(f"no node {name!r} in this slide; levels are {levels}")
    return slide[name]["image"]


def _lead_index(da, dim: str, value: int | str | None) -> int:
    if dim not in da.dims:
        return 0
    if value is None:
        return 0
    if isinstance(value, (int, np.integer)):
        return int(value)
    labels = [str(v) for v in da[dim].values]
    if str(value) not in labels:
        raise SelectionError(f"{dim} {value!r} not found; available: {labels}")
    return labels.index(str(value))


def _axis(coord, start: int, n: int):
    """Coordinate values for pixels ``start..start+n`` extrapolated from a regular axis."""
    import xarray as xr

    vals = np.asarray(coord.values, dtype=float)
    step = float(vals[1] - vals[0]) if len(vals) > 1 else 1.0
    return xr.Variable(coord.dims, vals[0] + (np.arange(start, start + n)) * step, dict(coord.attrs))


def read_region(
    slide: Any,
    location: tuple[int, int],
    level: int | str,
    size: tuple[int, int],
    *,
    focal_plane: int | None = None,
    optical_path: int | str | None = None,
    threads: int = 1,
):
    """Read a region the way ``openslide.OpenSlide.read_region`` does.

    Parameters
    ----------
    slide : xarray.DataTree
        From :func:`dcmxr.wsi.open_slide`.
    location : (int, int)
        ``(x, y)`` of the region's top-left pixel in **level-0** pixels.
    level : int or str
        Level index (``level_<n>`` node) or node name.
    size : (int, int)
        ``(width, height)`` in pixels of that level.
    focal_plane, optical_path : int or label, optional
        Which plane / path when the level has those dims (default the first).
    threads : int
        Decoder threads.

    Returns
    -------
    xarray.DataArray
        ``(y, x[, c])`` in memory, with mm coordinates; pixels outside the
        level read as the level's fill value (OpenSlide: transparent).
    """
    import xarray as xr

    w, h = int(size[0]), int(size[1])
    if w < 0 or h < 0:
        raise ValueError(f"size must be non-negative, got {size}")
    fast = _fast_context(slide, level)
    if fast is not None and focal_plane is None and optical_path is None:
        index, ctx = fast
        ds = ctx["downsample"]
        x0 = math.floor(location[0] / ds + 1e-9)
        y0 = math.floor(location[1] / ds + 1e-9)
        arr = _read_indexed(index, y0, x0, h, w, ctx["tail"], 0, 0, threads)
        return _region_array(arr, ctx, y0, x0, h, w)

    da = level_image(slide, level)
    ds = float(da.attrs.get("downsample", 1.0))
    x0 = math.floor(location[0] / ds + 1e-9)
    y0 = math.floor(location[1] / ds + 1e-9)
    ip = _lead_index(da, "optical_path", optical_path)
    iz = _lead_index(da, "focal_plane", focal_plane)
    index = lookup(da.data.name) if hasattr(da.data, "name") else None
    tail = (da.sizes["c"],) if "c" in da.dims else ()
    if index is not None:
        arr = _read_indexed(index, y0, x0, h, w, tail, ip, iz, threads)
    else:  # opened in another process: slice the Dask array
        arr = _via_dask(da, ip, iz, y0, x0, h, w, tail, threads)
    coords = {"y": _axis(da["y"], y0, h), "x": _axis(da["x"], x0, w)}
    if tail:
        coords["c"] = da["c"]
    out = xr.DataArray(arr, dims=("y", "x") + (("c",) if tail else ()), coords=coords, name="image",
                       attrs=dict(da.attrs))
    for dim, i in (("optical_path", ip), ("focal_plane", iz)):
        if dim in da.dims:
            out = out.assign_coords({dim: da[dim][i]})
    return out


def _read_indexed(reader, y0, x0, h, w, tail, ip, iz, threads) -> np.ndarray:
    return reader.read(y0, x0, h, w, path=ip, plane=iz, threads=threads, cache=True)


def _fast_context(slide: Any, level: int | str):
    """``(LevelReader, context)`` of a level without leading dims, read from the node without building a DataArray.

    The context (axis start/step and attrs, channel coordinate, level attrs)
    is computed once per level and kept on its reader.
    """
    name = f"level_{level}" if isinstance(level, (int, np.integer)) else str(level)
    node = slide.children.get(name) if hasattr(slide, "children") else None
    if node is None:
        return None
    var = node.variables.get("image")
    if var is None or var.dims[:2] != ("y", "x") or not hasattr(var.data, "name"):
        return None
    index = lookup(var.data.name)
    if index is None:
        return None
    ctx = getattr(index, "region_context", None)
    if ctx is None:
        import pandas as pd
        from xarray.core.indexes import PandasIndex

        axes = {}
        for dim in ("y", "x"):
            coord = node.variables[dim]
            vals = np.asarray(coord.values, dtype=float)
            step = float(vals[1] - vals[0]) if len(vals) > 1 else 1.0
            axes[dim] = (float(vals[0]) if len(vals) else 0.0, step, dict(coord.attrs))
        tail = (var.shape[2],) if var.ndim == 3 else ()
        c = None
        if tail:
            cvar = node.variables["c"]
            c = (cvar, PandasIndex(pd.Index(cvar.values), "c"))
        ctx = index.region_context = {"downsample": float(var.attrs.get("downsample", 1.0)), "axes": axes,
                                      "tail": tail, "c": c, "attrs": dict(var.attrs)}
    return index, ctx


def _region_array(arr: np.ndarray, ctx: dict, y0: int, x0: int, h: int, w: int):
    """The region as a DataArray with indexed mm coordinates (indexes built directly: ~0.1 ms)."""
    import pandas as pd
    import xarray as xr
    from xarray.core.indexes import PandasIndex

    variables, indexes = {}, {}
    for dim, start, n in (("y", y0, h), ("x", x0, w)):
        first, step, attrs = ctx["axes"][dim]
        vals = first + np.arange(start, start + n) * step
        variables[dim] = xr.Variable(dim, vals, attrs)
        indexes[dim] = PandasIndex(pd.Index(vals), dim)
    if ctx["c"] is not None:
        variables["c"], indexes["c"] = ctx["c"]
    dims = ("y", "x") + (("c",) if ctx["tail"] else ())
    var = xr.Variable(dims, arr, dict(ctx["attrs"]), fastpath=True)
    try:  # xarray's own fast constructor (validated coordinates, indexes given): ~10x cheaper per call
        return xr.DataArray(var, coords=variables, name="image", indexes=indexes, fastpath=True)
    except TypeError:  # pragma: no cover - an xarray without that signature
        coords = xr.Coordinates(variables, indexes=indexes)
        return xr.DataArray(arr, coords=coords, dims=dims, name="image", attrs=dict(ctx["attrs"]))


def _via_dask(da, ip, iz, y0, x0, h, w, tail, threads) -> np.ndarray:
    sel = {}
    if "optical_path" in da.dims:
        sel["optical_path"] = ip
    if "focal_plane" in da.dims:
        sel["focal_plane"] = iz
    sub = da.isel(sel) if sel else da
    fill = da.attrs.get("fill_value", 0)
    out = np.full((h, w) + tail, fill, dtype=da.dtype)
    ys, xs = max(y0, 0), max(x0, 0)
    ye, xe = min(y0 + h, da.sizes["y"]), min(x0 + w, da.sizes["x"])
    if ye > ys and xe > xs:
        part = sub.isel(y=slice(ys, ye), x=slice(xs, xe)).data.compute(scheduler="threads", num_workers=threads)
        out[ys - y0 : ye - y0, xs - x0 : xe - x0] = part
    return out
