"""One pyramid level (or associated image) -> a lazy DataArray whose chunks are tiles."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from ..errors import GeometryError, InvalidDicomError
from .index import LevelIndex, register
from .instances import InstanceInfo, background
from .tiles import Placement, TileSpec, bin_placements, check_tile_shapes, place_frames, read_tiles

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


def slide_coords(info: InstanceInfo, spacing: tuple[float, float] | None, shape: tuple[int, int]) -> dict:
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


def _spacing(rows: pd.DataFrame) -> tuple[float, float] | None:
    if "pixel_spacing_0" not in rows.columns:
        return None
    sy, sx = rows["pixel_spacing_0"].iloc[0], rows["pixel_spacing_1"].iloc[0]
    if pd.isna(sy) or pd.isna(sx) or sy <= 0 or sx <= 0:
        return None
    return float(sy), float(sx)


def _total_shape(rows: pd.DataFrame) -> tuple[int, int]:
    first = _first_row(rows)
    tr, tc = first.get("total_pixel_matrix_rows"), first.get("total_pixel_matrix_columns")
    if tr is None or tc is None or pd.isna(tr) or pd.isna(tc):
        return int(first["rows"]), int(first["columns"])
    return int(tr), int(tc)


def _first_row(rows: pd.DataFrame) -> dict:
    """The first row as a dict (cheaper than ``rows.iloc[0]``, which builds an object Series)."""
    return rows.head(1).to_dict("records")[0]


def _num(v: Any) -> Any:
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    return v


def build_level(
    rows: pd.DataFrame,
    infos: dict[str, InstanceInfo],
    *,
    name: str,
    chunks: Any = "auto",
    fill: float | None = None,
    threads: int = 1,
    storage_options: dict | None = None,
    apply_icc: bool = False,
    jpeg_decoder: str = "libjpeg-turbo",
):
    """Build the lazy DataArray of one level from its frames' table rows.

    Parameters
    ----------
    rows : pandas.DataFrame
        Scan rows of every instance (and concatenation part) of the level.
    infos : dict
        path -> :class:`InstanceInfo`.
    name : str
        Used in error messages and as the array name.
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

    Returns
    -------
    xarray.DataArray
        ``([optical_path], [focal_plane], y, x[, c])``, Dask-backed.

    Raises
    ------
    GeometryError
        Inconsistent tile sizes, or instances of one level disagree on
        the total pixel matrix.
    InvalidDicomError
        A TILED_FULL instance has frames beyond its grid.
    """
    import dask.array as da
    import xarray as xr
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

    th, tw = check_tile_shapes(rows, name)
    total = _total_shape(rows)
    if len(set(zip(rows["total_pixel_matrix_rows"].astype(str), rows["total_pixel_matrix_columns"].astype(str)))) > 1:
        raise GeometryError(f"{name}: its instances disagree on the total pixel matrix size")
    first_path = str(rows["path"].iloc[0])
    info0 = infos[first_path]

    # optical paths (union of identifiers, in order) and focal planes
    path_ids: list[str] = []
    for p in rows["path"].unique():
        for op in infos[p].optical_paths or ():
            if op.identifier not in path_ids:
                path_ids.append(op.identifier)
    if not path_ids:
        path_ids = ["0"]
    sparse_z = None
    if "z_offset_in_slide_coordinate_system" in rows.columns and rows["z_offset_in_slide_coordinate_system"].notna().any():
        zs = sorted({round(float(z), 6) for z in rows["z_offset_in_slide_coordinate_system"].dropna()})
        sparse_z = {z: i for i, z in enumerate(zs)}
    placements: list[Placement] = []
    n_planes = 1
    for p, inst in rows.groupby("path", sort=False):
        info = infos[str(p)]
        local_ids = [op.identifier for op in info.optical_paths] or ["0"]
        path_of_frame = None
        if info.frame_optical_paths is not None:
            path_of_frame = [path_ids.index(i) if i in path_ids else 0 for i in info.frame_optical_paths]
        placed = place_frames(
            inst, tile_shape=(th, tw), total_shape=total, focal_planes=info.focal_planes,
            optical_paths=len(local_ids), concatenation_offset=info.concatenation_offset,
            plane_of_z=sparse_z, path_of_frame=path_of_frame,
        )
        remap = [path_ids.index(i) for i in local_ids]
        for pl in placed:
            gp = remap[pl.path] if path_of_frame is None and pl.path < len(remap) else pl.path
            placements.append(Placement(pl.ref, pl.row, pl.col, pl.plane, gp))
        n_planes = max(n_planes, info.focal_planes)
    if sparse_z is not None:
        n_planes = max(n_planes, len(sparse_z))
    n_paths = len(path_ids)
    _check_full_coverage(rows, placements, (th, tw), total, n_planes, n_paths, name)

    ref0 = placements[0].ref
    spp = ref0.samples_per_pixel
    from ..backend.build import stored_dtype

    dtype = stored_dtype(_first_row(rows))
    if fill is None:
        fill = background(info0.optical_paths, spp, ref0.bits_stored)
    icc = None
    if apply_icc and spp == 3:
        icc = next((op.icc_profile for op in info0.optical_paths if op.icc_profile), None)

    cy, cx = _chunk_tiles(chunks)
    y_edges = np.unique(np.r_[np.arange(0, total[0], th * cy), total[0]])
    x_edges = np.unique(np.r_[np.arange(0, total[1], tw * cx), total[1]])
    bins = bin_placements(placements, y_edges, x_edges)

    lead_dims: list[str] = []
    if n_paths > 1:
        lead_dims.append("optical_path")
    if n_planes > 1:
        lead_dims.append("focal_plane")
    tail = (spp,) if spp > 1 else ()
    token = tokenize(sorted({str(r) for r in rows["sop_instance_uid"]}), total, (th, tw), cy, cx, fill, dtype.str,
                     bool(icc), threads, jpeg_decoder, [(pl.ref.url, pl.ref.offset) for pl in placements[:4]])
    key = f"wsi-{name}-{token}"
    graph: dict = {}
    for ip in range(n_paths):
        for iz in range(n_planes):
            for iy in range(len(y_edges) - 1):
                for ix in range(len(x_edges) - 1):
                    y0, y1 = int(y_edges[iy]), int(y_edges[iy + 1])
                    x0, x1 = int(x_edges[ix]), int(x_edges[ix + 1])
                    spec = TileSpec(y0=y0, x0=x0, shape=(y1 - y0, x1 - x0) + tail, dtype=dtype.str, fill=fill,
                                    lead=len(lead_dims), threads=threads, storage_options=storage_options,
                                    icc_profile=icc, jpeg_decoder=jpeg_decoder)
                    lead_idx = ((ip,) if n_paths > 1 else ()) + ((iz,) if n_planes > 1 else ())
                    idx = lead_idx + (iy, ix) + ((0,) if tail else ())
                    graph[(key,) + idx] = (read_tiles, tuple(bins.get((ip, iz, iy, ix), ())), spec)
    chunk_spec = ((1,) * n_paths,) * (n_paths > 1) + ((1,) * n_planes,) * (n_planes > 1)
    chunk_spec += (tuple(np.diff(y_edges).tolist()), tuple(np.diff(x_edges).tolist()))
    chunk_spec += ((spp,),) if tail else ()
    register(key, LevelIndex(placements=tuple(placements), tile=(th, tw), total=total, dtype=dtype.str,
                             fill=fill, samples=spp, storage_options=storage_options, icc_profile=icc,
                             jpeg_decoder=jpeg_decoder))
    hlg = HighLevelGraph.from_collections(key, graph, dependencies=())
    arr = da.Array(hlg, key, chunks=chunk_spec, dtype=dtype)

    dims = tuple(lead_dims) + ("y", "x") + (("c",) if tail else ())
    spacing = _spacing(rows)
    coords: dict[str, Any] = slide_coords(info0, spacing, total)
    if tail:
        coords["c"] = ("c", ["R", "G", "B"] if spp == 3 else list(range(spp)))
    if n_paths > 1:
        coords["optical_path"] = ("optical_path", path_ids)
    if n_planes > 1:
        if sparse_z is not None:
            coords["focal_plane"] = xr.Variable("focal_plane", np.array(list(sparse_z)), {"units": "mm"})
        elif info0.spacing_between_slices:
            coords["focal_plane"] = xr.Variable(
                "focal_plane", np.arange(n_planes) * info0.spacing_between_slices, {"units": "mm"})
        else:
            coords["focal_plane"] = ("focal_plane", np.arange(n_planes))
    out = xr.DataArray(arr, dims=dims, coords=_indexed(coords), name="image")
    out.attrs.update(_level_attrs(rows, infos, (th, tw), total, fill, spacing, ref0.photometric_interpretation))
    out.encoding["preferred_chunks"] = {"y": th, "x": tw}
    return out


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


def _check_full_coverage(rows, placements, tile, total, n_planes, n_paths, name) -> None:
    """TILED_FULL levels must hold every tile of their total pixel matrix."""
    org = rows["dimension_organization_type"] if "dimension_organization_type" in rows else None
    if org is None or not (org.astype(str).str.upper() == "TILED_FULL").all():
        return
    across, down = -(-total[1] // tile[1]), -(-total[0] // tile[0])
    need = across * down * n_planes * n_paths
    have = len({(p.path, p.plane, p.row, p.col) for p in placements})
    if have < need:
        files = ", ".join(sorted({str(p) for p in rows["path"].unique()}))
        raise InvalidDicomError(
            f"{name}: TILED_FULL frames do not cover the total pixel matrix {total[0]}x{total[1]}: "
            f"{have} of {need} tiles ({down}x{across} tiles x {n_planes} focal planes x {n_paths} optical paths) "
            f"in {files}; a concatenation part may be missing")


def _level_attrs(rows, infos, tile, total, fill, spacing, stored_pi) -> dict:
    first = _first_row(rows)
    info = infos[str(first["path"])]
    pi = str(first.get("photometric_interpretation") or "")
    attrs: dict[str, Any] = {
        "modality": "SM",
        "image_flavor": info.flavor,
        "photometric_interpretation": "RGB" if pi.startswith("YBR") else pi,
        "stored_photometric_interpretation": stored_pi,
        "transfer_syntax_uid": str(first["transfer_syntax_uid"]),
        "dimension_organization_type": str(first.get("dimension_organization_type") or ""),
        "tile_size": [int(tile[0]), int(tile[1])],
        "total_pixel_matrix": [int(total[0]), int(total[1])],
        "fill_value": _num(fill),
        "sop_instance_uids": sorted({str(u) for u in rows["sop_instance_uid"]}),
    }
    if spacing is not None:
        attrs["pixel_spacing"] = [spacing[0], spacing[1]]
        attrs["pixel_spacing_units"] = "mm"
    for col in ("series_instance_uid", "study_instance_uid", "frame_of_reference_uid", "manufacturer",
                "manufacturer_model_name", "series_description", "image_type"):
        v = first.get(col)
        if v is not None and not (isinstance(v, float) and math.isnan(v)):
            attrs[col] = _num(v)
    paths = info.optical_paths
    if paths:
        op = paths[0]
        if op.description:
            attrs["optical_path_description"] = op.description
        if op.illumination:
            attrs["illumination"] = op.illumination
        if op.objective_lens_power is not None:
            attrs["objective_lens_power"] = op.objective_lens_power
    if info.container_identifier:
        attrs["container_identifier"] = info.container_identifier
    return attrs
