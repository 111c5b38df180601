"""Region reads with OpenSlide semantics."""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import numpy as np

from ..errors import SelectionError
from .index import lookup
from .tiles import TileSpec, read_tiles

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

    da = level_image(slide, level)
    w, h = int(size[0]), int(size[1])
    if w < 0 or h < 0:
        raise ValueError(f"size must be non-negative, got {size}")
    ds = float(da.attrs.get("downsample", 1.0))
    x0 = math.floor(location[0] / ds + 1e-9)
    y0 = math.floor(location[1] / ds + 1e-9)
    ip = _lead_index(da, "optical_path", optical_path)
    iz = _lead_index(da, "focal_plane", focal_plane)
    index = lookup(da.data.name) if hasattr(da.data, "name") else None
    tail = (da.sizes["c"],) if "c" in da.dims else ()
    if index is not None:
        spec = TileSpec(y0=y0, x0=x0, shape=(h, w) + tail, dtype=index.dtype, fill=index.fill, threads=threads,
                        storage_options=index.storage_options, icc_profile=index.icc_profile,
                        limit=index.total)
        arr = read_tiles(index.select(y0, x0, h, w, ip, iz), spec,
                         decoder=lambda refs: _cached_decode(refs, threads, index.storage_options))
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


#: Decoded tiles kept for region reads (bytes); 0 disables the cache.
TILE_CACHE_BYTES = 256 * 2**20
_CACHE: OrderedDict = OrderedDict()
_CACHE_SIZE = [0]


def _cached_decode(refs, threads: int, storage_options) -> list[np.ndarray]:
    """decode_frames with a process-wide LRU of decoded tiles (as wsidicom keeps one)."""
    from ..decode.codecs import decode_frames

    missing = [r for r in dict.fromkeys(refs) if r not in _CACHE]
    if missing:
        for r, arr in zip(missing, decode_frames(missing, threads=threads, storage_options=storage_options)):
            arr.flags.writeable = False
            _CACHE[r] = arr
            _CACHE_SIZE[0] += arr.nbytes
    out = []
    for r in refs:
        _CACHE.move_to_end(r)
        out.append(_CACHE[r])
    while _CACHE_SIZE[0] > TILE_CACHE_BYTES and len(_CACHE) > len(refs):
        _, old = _CACHE.popitem(last=False)
        _CACHE_SIZE[0] -= old.nbytes
    return out


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
