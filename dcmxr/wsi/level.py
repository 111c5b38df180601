"""One pyramid level (or associated image) -> a lazy DataArray whose chunks are tiles."""

from __future__ import annotations

from typing import Any

import numpy as np

from .headers import WsiHeader
from .index import register
from .instances import background
from .reader import LevelArray, LevelReader

__all__ = ["build_level", "slide_coords"]


def _chunk_tiles(chunks: Any) -> tuple[int, int]:
    if chunks is None or chunks == "auto":
        return 1, 1
    if isinstance(chunks, int):
        return chunks, chunks
    if isinstance(chunks, dict):
        return int(chunks.get("y", 1)), int(chunks.get("x", 1))
    ny, nx = chunks
    return int(ny), int(nx)


def slide_coords(info: WsiHeader, spacing: tuple[float, float] | None, shape: tuple[int, int]) -> dict:
    """``y``/``x`` coordinates: pixel centres in mm along the image axes (slide coordinate system).

    The Total Pixel Matrix Origin is taken as the top-left *corner* of the
    total pixel matrix (as wsidicom does), so pixel ``i`` is centred at
    ``origin . dir + (i + 0.5) * spacing``; this keeps all levels aligned.
    Without Pixel Spacing (labels, some overviews) the coordinates are plain
    pixel indices with no units.
    """
    import xarray as xr

    h, w = shape
    if spacing is None:
        return {"y": ("y", np.arange(h)), "x": ("x", np.arange(w))}
    dir_x = np.array(info.orientation[:3], dtype=float)
    dir_y = np.array(info.orientation[3:], dtype=float)
    origin = np.array([info.origin[0], info.origin[1], 0.0])
    sy, sx = spacing
    x = float(origin @ dir_x) + (np.arange(w) + 0.5) * sx
    y = float(origin @ dir_y) + (np.arange(h) + 0.5) * sy
    return {
        "y": xr.Variable("y", y, {"units": "mm", "direction": dir_y.tolist(), "long_name": "slide position along rows"}),
        "x": xr.Variable("x", x, {"units": "mm", "direction": dir_x.tolist(), "long_name": "slide position along columns"}),
    }


def build_level(
    headers: list[WsiHeader],
    *,
    name: str,
    chunks: Any = "auto",
    fill: float | None = None,
    threads: int = 1,
    storage_options: dict | None = None,
    apply_icc: bool = False,
    jpeg_decoder: str = "libjpeg-turbo",
    fetch: Any = None,
):
    """Build the lazy DataArray of one level from its instances' headers.

    Parameters
    ----------
    headers : list of WsiHeader
        Every instance (and concatenation part) of the level.
    name : str
        Used in error messages and in the Dask array name.
    chunks : "auto", int, (int, int) or {"y": int, "x": int}
        Tiles per chunk along y and x ("auto": one tile per chunk).
    fill : float, optional
        Value of pixels no frame covers (default: white for brightfield,
        0 for fluorescence).
    threads : int
        Decoder threads inside each chunk task.
    storage_options : dict, optional
    apply_icc : bool
        Convert through the ICC profile to sRGB at compute time.
    jpeg_decoder : {"libjpeg-turbo", "pydicom"}
        JPEG baseline tiles: libjpeg-turbo's RGB (fast) or pydicom's exact values.
    fetch : callable, optional
        Tile fetcher replacing file reads (see :class:`~dcmxr.wsi.reader.LevelReader`).

    Returns
    -------
    xarray.DataArray
        ``([optical_path], [focal_plane], y, x[, c])``, Dask-backed; no tile
        bytes (nor frame offsets) are read.

    Raises
    ------
    GeometryError
        Inconsistent tile sizes, or instances of one level disagree on
        the total pixel matrix.
    InvalidDicomError
        A TILED_FULL level whose frames do not cover its matrix, or frames
        beyond its grid.
    """
    import xarray as xr
    from dask.base import tokenize

    h0 = headers[0]
    path_ids: list[str] = []
    for h in headers:
        for op in h.optical_paths or ():
            if op.identifier not in path_ids:
                path_ids.append(op.identifier)
        for ident in h.frame_optical_paths or ():
            if ident not in path_ids:
                path_ids.append(ident)
    if not path_ids:
        path_ids = ["0"]
    sparse_z = None
    zs = [h.z_offsets for h in headers if h.z_offsets is not None]
    if zs:
        vals = sorted({round(float(z), 6) for arr in zs for z in arr if z == z})
        sparse_z = {z: i for i, z in enumerate(vals)}
    n_planes = max([h.focal_planes for h in headers] + [len(sparse_z) if sparse_z else 1])
    if fill is None:
        fill = background(h0.optical_paths, h0.samples_per_pixel, h0.bits_stored)
    icc = None
    if apply_icc and h0.samples_per_pixel == 3:
        icc = next((op.icc_profile for op in h0.optical_paths if op.icc_profile), None)
    reader = LevelReader(name, headers, path_ids=path_ids, n_planes=n_planes, sparse_z=sparse_z, fill=fill,
                         icc_profile=icc, jpeg_decoder=jpeg_decoder, storage_options=storage_options, fetch=fetch)
    reader.check_full_coverage()
    th, tw = reader.tile
    total = reader.total
    n_paths = len(path_ids)
    dtype = reader.dtype
    tail = reader.tail

    cy, cx = _chunk_tiles(chunks)
    token = tokenize(sorted(h.sop_instance_uid for h in headers), [h.path for h in headers], total, (th, tw),
                     cy, cx, fill, dtype.str, bool(icc), threads, jpeg_decoder, name)
    key = f"wsi-{name}-{token}"
    arr_like = LevelArray(reader, key, threads)
    lead_chunks = ((1,) * n_paths,) * (n_paths > 1) + ((1,) * n_planes,) * (n_planes > 1)
    chunk_spec = lead_chunks + (_edges(total[0], th * cy), _edges(total[1], tw * cx)) + (((tail[0],),) if tail else ())
    arr = _lazy_array(arr_like, chunk_spec, key)
    register(key, reader)

    lead_dims: list[str] = []
    if n_paths > 1:
        lead_dims.append("optical_path")
    if n_planes > 1:
        lead_dims.append("focal_plane")
    dims = tuple(lead_dims) + ("y", "x") + (("c",) if tail else ())
    coords: dict[str, Any] = slide_coords(h0, h0.spacing, total)
    if tail:
        coords["c"] = ("c", ["R", "G", "B"] if tail[0] == 3 else list(range(tail[0])))
    if n_paths > 1:
        coords["optical_path"] = ("optical_path", path_ids)
    if n_planes > 1:
        if sparse_z is not None:
            coords["focal_plane"] = xr.Variable("focal_plane", np.array(list(sparse_z)), {"units": "mm"})
        elif h0.spacing_between_slices:
            coords["focal_plane"] = xr.Variable(
                "focal_plane", np.arange(n_planes) * h0.spacing_between_slices, {"units": "mm"})
        else:
            coords["focal_plane"] = ("focal_plane", np.arange(n_planes))
    out = _data_array(arr, dims, coords, _level_attrs(headers, (th, tw), total, fill, h0.spacing))
    out.encoding["preferred_chunks"] = {"y": th, "x": tw}
    return out


def _num(v: Any) -> Any:
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    return v


def _edges(n: int, step: int) -> tuple[int, ...]:
    full, rest = divmod(n, step)
    return (step,) * full + ((rest,) if rest else ())


def _lazy_array(arr_like: LevelArray, chunks: tuple, name: str):
    """``dask.array.from_array(arr_like, chunks, name=name, asarray=False)`` without its per-call checks.

    The graph is one materialised key holding the array-like and a lazy
    Blockwise layer of getter tasks (nothing per chunk is built at open).
    """
    import dask.array as da
    from dask.array.core import graph_from_arraylike

    try:
        graph = graph_from_arraylike(arr_like, chunks, arr_like.shape, name, lock=False, asarray=False,
                                     dtype=arr_like.dtype, inline_array=False)
        return da.Array(graph, name, chunks, meta=np.empty((0,) * arr_like.ndim, dtype=arr_like.dtype))
    except TypeError:  # pragma: no cover - a Dask without this helper's signature
        return da.from_array(arr_like, chunks=chunks, name=name, asarray=False, fancy=False, lock=False,
                             meta=np.empty((0,) * arr_like.ndim, dtype=arr_like.dtype))


def _data_array(data, dims: tuple, coords: dict, attrs: dict):
    """``xr.DataArray(data, dims=dims, coords=coords, attrs=attrs, name="image")`` built directly.

    Coordinates are all dimension coordinates with pandas indexes made here,
    so xarray's validation (and its duck-array probing, which imports pint,
    sparse... on first use) can be skipped with its ``fastpath``.
    """
    import xarray as xr

    import pandas as pd
    from xarray.core.indexes import PandasIndex

    variables, indexes = {}, {}
    for name, value in coords.items():
        var = value if isinstance(value, xr.Variable) else xr.Variable(value[0], np.asarray(value[1]))
        vals = np.asarray(var.values)
        # labels as object (what xarray shows anyway): pandas would otherwise infer its string
        # dtype, whose first use in a process costs ~10 ms (pyarrow)
        index = PandasIndex(pd.Index(vals, dtype=object if vals.dtype.kind in "US" else None), name)
        variables.update(index.create_variables({name: var}))  # the IndexVariable shares the pandas index
        indexes[name] = index
    try:
        var = xr.Variable(dims, data, attrs, fastpath=True)
        return xr.DataArray(var, coords=variables, name="image", indexes=indexes, fastpath=True)
    except TypeError:  # pragma: no cover - an xarray without that signature
        return xr.DataArray(data, dims=dims, coords=_indexed(coords), name="image", attrs=attrs)


def _indexed(coords: dict):
    """Dimension coordinates with their pandas indexes built directly.

    Same result as passing the dict to ``xr.DataArray``, but it skips
    xarray's duck-array probing (which imports pint, sparse... on first use).
    """
    import pandas as pd
    import xarray as xr
    from xarray.core.indexes import PandasIndex

    variables, indexes = {}, {}
    for name, value in coords.items():
        var = value if isinstance(value, xr.Variable) else xr.Variable(value[0], np.asarray(value[1]))
        variables[name] = var
        indexes[name] = PandasIndex(pd.Index(np.asarray(var.values)), name)
    return xr.Coordinates(variables, indexes=indexes)


def _level_attrs(headers: list[WsiHeader], tile, total, fill, spacing) -> dict:
    h = headers[0]
    pi = h.photometric_interpretation
    attrs: dict[str, Any] = {
        "modality": "SM",
        "image_flavor": h.flavor,
        "photometric_interpretation": "RGB" if pi.startswith("YBR") else pi,
        "stored_photometric_interpretation": pi,
        "dimension_organization_type": h.organization,
        "tile_size": [int(tile[0]), int(tile[1])],
        "total_pixel_matrix": [int(total[0]), int(total[1])],
        "fill_value": _num(fill),
        "sop_instance_uids": sorted({x.sop_instance_uid for x in headers}),
    }
    if h.transfer_syntax:  # unknown for DICOMweb metadata without (0002,0010)
        attrs["transfer_syntax_uid"] = h.transfer_syntax
    if spacing is not None:
        attrs["pixel_spacing"] = [spacing[0], spacing[1]]
        attrs["pixel_spacing_units"] = "mm"
    attrs["series_instance_uid"] = h.series_instance_uid
    attrs["study_instance_uid"] = h.study_instance_uid
    for k in ("frame_of_reference_uid", "manufacturer", "manufacturer_model_name", "series_description",
              "image_type"):
        if k in h.extra:
            attrs[k] = h.extra[k]
    paths = h.optical_paths
    if paths:
        op = paths[0]
        if op.description:
            attrs["optical_path_description"] = op.description
        if op.illumination:
            attrs["illumination"] = op.illumination
        if op.objective_lens_power is not None:
            attrs["objective_lens_power"] = op.objective_lens_power
    if h.container_identifier:
        attrs["container_identifier"] = h.container_identifier
    return attrs
