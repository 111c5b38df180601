"""Siemens MOSAIC: one stored frame holding a grid of slices -> one row per slice.

Each mosaic frame is an m x m grid of tiles (m = ceil(sqrt(n))). The stored
ImagePositionPatient is the corner of the whole mosaic viewed as one large
image; the true position of the first slice is shifted by half the size
difference between mosaic and tile along the row and column directions, and
slice k lies k * SpacingBetweenSlices further along the CSA SliceNormalVector
(whose sign says which way the stored slices run). This is the geometry
dcm2niix and nibabel use.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..errors import InvalidDicomError


def is_mosaic(table: pd.DataFrame) -> np.ndarray:
    """Boolean mask of rows that are Siemens MOSAIC frames."""
    if "image_type" not in table.columns:
        return np.zeros(len(table), dtype=bool)
    it = table["image_type"].fillna("").astype(str)
    return it.str.upper().str.contains("MOSAIC").to_numpy()


def _n_images(row: pd.Series) -> int | None:
    for col in ("csa_mosaic_n", "siemens_mosaic_n"):
        v = row.get(col)
        if v is not None and not (isinstance(v, float) and math.isnan(v)):
            return int(v)
    return None


def expand_mosaic(table: pd.DataFrame) -> pd.DataFrame:
    """Replace MOSAIC rows by one row per slice (other rows pass through).

    Added columns: ``tile_row0``, ``tile_col0`` (position of the tile inside
    the stored frame), ``mosaic_slice`` (slice index in the mosaic) and
    ``stored_rows``/``stored_columns`` (the stored frame's size).
    """
    mask = is_mosaic(table)
    if not mask.any():
        return table
    parts = [table[~mask]]
    new_rows: list[dict] = []
    index: list = []
    for name, row in zip(table.index[mask], table[mask].to_dict("records")):
        n = _n_images(row)
        if n is None or n < 1:
            raise InvalidDicomError(f"{row['path']}: MOSAIC without NumberOfImagesInMosaic")
        m = math.ceil(math.sqrt(n))
        R, C = int(row["rows"]), int(row["columns"])
        if R % m or C % m:
            raise InvalidDicomError(f"{row['path']}: mosaic {R}x{C} does not divide into {m}x{m} tiles")
        r, c = R // m, C // m
        iop = np.array([row[f"iop_{i}"] for i in range(6)], dtype=float)
        ipp = np.array([row[f"ipp_{i}"] for i in range(3)], dtype=float)
        dr, dc = float(row["pixel_spacing_0"]), float(row["pixel_spacing_1"])
        rowdir, coldir = iop[:3], iop[3:]
        normal = row.get("csa_slice_normal")
        if isinstance(normal, (list, tuple)) and len(normal) == 3:
            normal = np.asarray(normal, dtype=float)
            normal = normal / np.linalg.norm(normal)
        else:
            normal = np.cross(rowdir, coldir)
        spacing = row.get("spacing_between_slices")
        if spacing is None or (isinstance(spacing, float) and math.isnan(spacing)):
            spacing = row.get("slice_thickness")
        spacing = float(spacing)
        first = ipp + rowdir * dc * (C - c) / 2.0 + coldir * dr * (R - r) / 2.0
        times = row.get("csa_slice_times")
        for k in range(n):
            new = dict(row)  # a dict per slice: growing a pandas Series key by key is ~100x slower
            pos = first + k * spacing * normal
            new["ipp_0"], new["ipp_1"], new["ipp_2"] = pos
            new["rows"], new["columns"] = r, c
            new["stored_rows"], new["stored_columns"] = R, C
            new["tile_row0"], new["tile_col0"] = (k // m) * r, (k % m) * c
            new["mosaic_slice"] = k
            if isinstance(times, (list, tuple)) and len(times) == n:
                new["slice_time"] = float(times[k]) / 1000.0
            new_rows.append(new)
            index.append(name)
    parts.append(pd.DataFrame(new_rows, index=index))
    out = pd.concat(parts, ignore_index=False)
    return out.sort_index(kind="stable").reset_index(drop=True)
