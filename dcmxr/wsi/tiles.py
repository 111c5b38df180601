"""Tiles -> pixels: where each stored frame sits in its level, and the chunk task.

A level is a list of :class:`Placement` (a FrameRef plus the pixel position of
its top-left corner, focal plane and optical path). A Dask chunk (or a region
read) is the rectangle it covers: :func:`read_tiles` decodes only the frames
that intersect it and pastes them in, leaving the background fill where no
frame lies (missing tiles of TILED_SPARSE levels, the padding of edge tiles).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..decode.frameref import FrameRef
from ..errors import GeometryError, InvalidDicomError

__all__ = ["Placement", "TileSpec", "read_tiles", "place_frames", "bin_placements"]


@dataclass(frozen=True, slots=True)
class Placement:
    """One stored frame and where it goes: 0-based pixel row/column of its top-left corner."""

    ref: FrameRef
    row: int
    col: int
    plane: int = 0
    path: int = 0


@dataclass(frozen=True, slots=True)
class TileSpec:
    """The rectangle a :func:`read_tiles` call fills.

    Parameters
    ----------
    y0, x0 : int
        Level pixel of the output's top-left corner.
    shape : tuple of int
        ``(h, w)`` or ``(h, w, c)``.
    dtype : str
    fill : float
        Value where no frame lies.
    lead : int
        Number of leading length-1 dims to add (focal_plane / optical_path).
    threads : int
    storage_options : dict or None
    icc_profile : bytes or None
        Apply this ICC profile (to sRGB) with Pillow's ImageCms.
    limit : (int, int) or None
        Level size ``(rows, columns)``: tile padding beyond it is not pasted.
    jpeg_decoder : str
        "libjpeg-turbo" or "pydicom" (see :mod:`dcmxr.wsi.decode`).
    """

    y0: int
    x0: int
    shape: tuple[int, ...]
    dtype: str
    fill: float = 255
    lead: int = 0
    threads: int = 1
    storage_options: dict | None = None
    icc_profile: bytes | None = None
    limit: tuple[int, int] | None = None
    jpeg_decoder: str = "libjpeg-turbo"


def read_tiles(placements: tuple[Placement, ...], spec: TileSpec, decoder=None) -> np.ndarray:
    """Decode the frames of ``placements`` and paste them into one block.

    This is the task in every WSI Dask chunk; its arguments are small and
    picklable (FrameRefs, never file handles).

    Parameters
    ----------
    placements : tuple of Placement
        Frames intersecting the block (later ones overwrite earlier ones).
    spec : TileSpec
    decoder : callable, optional
        ``refs -> arrays`` replacing :func:`dcmxr.wsi.decode.decode_tiles`
        (region reads pass a cached one).

    Returns
    -------
    numpy.ndarray
        ``(1,) * spec.lead + spec.shape``.
    """
    from .decode import decode_tiles

    refs = [p.ref for p in placements]
    decoded = decoder(refs) if decoder is not None else decode_tiles(
        refs, threads=spec.threads, storage_options=spec.storage_options, jpeg_decoder=spec.jpeg_decoder)
    if (len(decoded) == 1 and spec.limit is None and placements[0].row == spec.y0 and placements[0].col == spec.x0
            and decoded[0].shape == tuple(spec.shape) and decoded[0].dtype == np.dtype(spec.dtype)
            and decoded[0].flags.writeable and spec.icc_profile is None):
        out = decoded[0]  # the block is exactly one stored tile: no fill, no copy
    else:
        out = np.full(spec.shape, spec.fill, dtype=spec.dtype)
        if placements:
            paste(out, placements, decoded, spec)
    if spec.icc_profile is not None:
        from .icc import apply_icc

        out = apply_icc(out, spec.icc_profile)
    return out.reshape((1,) * spec.lead + out.shape)


def paste(out: np.ndarray, placements, decoded, spec: TileSpec) -> None:
    """Copy decoded frames into ``out`` (the block at ``spec.y0, spec.x0``), clipped to ``spec.limit``."""
    h, w = spec.shape[:2]
    if spec.limit is not None:  # keep edge-tile padding out of the block
        h, w = min(h, spec.limit[0] - spec.y0), min(w, spec.limit[1] - spec.x0)
    for p, arr in zip(placements, decoded):
        r0, c0 = p.row - spec.y0, p.col - spec.x0
        ys, xs = max(r0, 0), max(c0, 0)
        ye, xe = min(r0 + arr.shape[0], h), min(c0 + arr.shape[1], w)
        if ye > ys and xe > xs:
            out[ys:ye, xs:xe] = arr[ys - r0 : ye - r0, xs - c0 : xe - c0]


def place_frames(
    rows: pd.DataFrame,
    *,
    tile_shape: tuple[int, int],
    total_shape: tuple[int, int],
    focal_planes: int,
    optical_paths: int,
    concatenation_offset: int = 0,
    plane_of_z: dict[float, int] | None = None,
    path_of_frame: list[int] | None = None,
) -> list[Placement]:
    """Placements of one instance's frames.

    TILED_FULL instances (and those without per-frame positions) follow the
    standard's implicit order: column fastest, then row, focal plane, optical
    path, counted from the concatenation's frame offset. TILED_SPARSE frames
    use their Plane Position (Slide) row/column (1-based in DICOM).

    Raises
    ------
    InvalidDicomError
        A TILED_FULL instance has more frames than its total pixel matrix
        holds, or a sparse frame has no position.
    """
    th, tw = tile_shape
    total_r, total_c = total_shape
    across = -(-total_c // tw)
    down = -(-total_r // th)
    organization = str(rows["dimension_organization_type"].iloc[0]) if "dimension_organization_type" in rows else ""
    has_pos = ("column_position_in_total_image_pixel_matrix" in rows.columns
               and rows["column_position_in_total_image_pixel_matrix"].notna().all()
               and "row_position_in_total_image_pixel_matrix" in rows.columns)
    out: list[Placement] = []
    path = str(rows["path"].iloc[0])
    refs = _frame_refs(rows)
    frames = [r.frame_index for r in refs]
    if organization.upper() == "TILED_FULL" or not has_pos:
        capacity = across * down * focal_planes * optical_paths
        for ref, frame in zip(refs, frames):
            i = frame + concatenation_offset
            if i >= capacity:
                raise InvalidDicomError(
                    f"{path}: frame {frame} (tile {i}) lies outside the TILED_FULL grid of "
                    f"{down}x{across} tiles x {focal_planes} focal planes x {optical_paths} optical paths"
                )
            c, r = i % across, (i // across) % down
            z, p = (i // (across * down)) % focal_planes, i // (across * down * focal_planes)
            out.append(Placement(ref, r * th, c * tw, z, p))
        return out
    zcol = rows["z_offset_in_slide_coordinate_system"].tolist() if "z_offset_in_slide_coordinate_system" in rows else None
    cols = rows["column_position_in_total_image_pixel_matrix"].tolist()
    rws = rows["row_position_in_total_image_pixel_matrix"].tolist()
    for k, (ref, frame) in enumerate(zip(refs, frames)):
        col, rr = cols[k], rws[k]
        if pd.isna(col) or pd.isna(rr):
            raise InvalidDicomError(f"{path}: TILED_SPARSE frame {frame} has no Plane Position (Slide)")
        z = 0
        if plane_of_z is not None and zcol is not None and pd.notna(zcol[k]):
            z = plane_of_z.get(round(float(zcol[k]), 6), 0)
        p = path_of_frame[frame] if path_of_frame is not None and frame < len(path_of_frame) else 0
        out.append(Placement(ref, int(rr) - 1, int(col) - 1, z, p))
    return out


def _column(rows: pd.DataFrame, name: str, default, cast):
    """A column as a Python list (``default`` where missing / NaN)."""
    if name not in rows.columns:
        return [default] * len(rows)
    return [default if v is None or (isinstance(v, float) and v != v) or v is pd.NA else cast(v)
            for v in rows[name].tolist()]


def _frame_refs(rows: pd.DataFrame) -> list[FrameRef]:
    """FrameRefs of every row (column-wise: no per-row pandas access)."""
    n = len(rows)
    cols = {
        "url": _column(rows, "path", "", str),
        "offset": _column(rows, "pixel_offset", 0, int),
        "length": _column(rows, "pixel_length", 0, int),
        "transfer_syntax": _column(rows, "transfer_syntax_uid", "", str),
        "rows": _column(rows, "rows", 0, int),
        "columns": _column(rows, "columns", 0, int),
        "samples_per_pixel": _column(rows, "samples_per_pixel", 1, int),
        "bits_allocated": _column(rows, "bits_allocated", 0, int),
        "bits_stored": _column(rows, "bits_stored", 0, int),
        "pixel_representation": _column(rows, "pixel_representation", 0, int),
        "photometric_interpretation": _column(rows, "photometric_interpretation", "MONOCHROME2", str),
        "planar_configuration": _column(rows, "planar_configuration", 0, int),
        "frame_index": _column(rows, "frame", 0, int),
        "bit_offset": _column(rows, "bit_offset", 0, int),
        "deflate_from": _column(rows, "deflate_from", None, int),
    }
    out = []
    for i in range(n):
        kw = {k: v[i] for k, v in cols.items()}
        kw["samples_per_pixel"] = kw["samples_per_pixel"] or 1
        kw["bits_stored"] = kw["bits_stored"] or kw["bits_allocated"]
        kw["pixel_representation"] = kw["pixel_representation"] or 0
        kw["photometric_interpretation"] = kw["photometric_interpretation"] or "MONOCHROME2"
        kw["bit_offset"] = kw["bit_offset"] or 0
        out.append(FrameRef(**kw))
    return out


def bin_placements(
    placements: list[Placement], y_edges: np.ndarray, x_edges: np.ndarray
) -> dict[tuple[int, int, int, int], list[Placement]]:
    """Group placements by the chunks they intersect: ``(path, plane, iy, ix) -> [Placement]``.

    Parameters
    ----------
    placements : list of Placement
    y_edges, x_edges : numpy.ndarray
        Chunk boundaries in level pixels (``[0, ..., size]``).
    """
    bins: dict[tuple[int, int, int, int], list[Placement]] = defaultdict(list)
    for p in placements:
        h, w = p.ref.rows, p.ref.columns
        iy0 = max(int(np.searchsorted(y_edges, p.row, side="right")) - 1, 0)
        iy1 = int(np.searchsorted(y_edges, p.row + h, side="left"))
        ix0 = max(int(np.searchsorted(x_edges, p.col, side="right")) - 1, 0)
        ix1 = int(np.searchsorted(x_edges, p.col + w, side="left"))
        for iy in range(iy0, min(iy1, len(y_edges) - 1)):
            for ix in range(ix0, min(ix1, len(x_edges) - 1)):
                bins[(p.path, p.plane, iy, ix)].append(p)
    return bins


def check_tile_shapes(rows: pd.DataFrame, level_name: str) -> tuple[int, int]:
    """The one tile shape of a level's frames.

    Raises
    ------
    GeometryError
        The instances of one level use different tile sizes.
    """
    shapes: dict = {}
    for r, c, p in zip(rows["rows"].tolist(), rows["columns"].tolist(), rows["path"].tolist()):
        shapes.setdefault((int(r), int(c)), p)
    if len(shapes) > 1:
        listing = "; ".join(f"{r}x{c} in {p}" for (r, c), p in sorted(shapes.items()))
        raise GeometryError(f"{level_name}: inconsistent tile sizes across its instances ({listing})")
    (r, c) = next(iter(shapes))
    return r, c
