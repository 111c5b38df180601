"""RT Dose files -> lazy dose DataArrays in Gy (``open_dose``).

An RT Dose is one multi-frame file: ImagePositionPatient once, the plane
positions in GridFrameOffsetVector (GFOV), the stored integers scaled by
DoseGridScaling. The catalog (:func:`dcmxr.scan`) already lists every frame
with its byte range, so this module only builds the :class:`Grid` (z from the
GFOV) and hands it to :func:`dcmxr.backend.build.build_dataarray` with the
DoseGridScaling as the per-frame rescale slope: the same lazy Dask graph of
byte-range reads as every other dcmxr array.

GridFrameOffsetVector forms (PS3.3 C.8.8.3.2)
---------------------------------------------
* relative (first element 0): plane ``k`` is at ``IPP + GFOV[k] * n``, with
  ``n`` the slice normal (row x column direction);
* absolute (first element non-zero, only for IOP ``1\\0\\0\\0\\1\\0``): the
  elements are the patient z of each plane.

Planes are sorted by increasing position (DESIGN.md); non-uniform offsets are
kept as a non-uniform ``z`` coordinate with a :class:`GeometryWarning`.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import GeometryWarning, InvalidDicomError, SelectionError

#: SOP Class UID of RT Dose Storage.
RTDOSE_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.2"

#: DoseUnits -> units string parsed by dcmxr.units.ureg.
DOSE_UNITS = {"GY": "Gy", "RELATIVE": "dimensionless"}

#: Tolerance (mm) for the absolute GFOV form's first element vs IPP z.
GFOV_ABSOLUTE_TOL = 0.01


def _header(path: str, storage_options: dict | None) -> Any:
    """The RT-specific attributes the catalog does not keep (pydicom, no pixels)."""
    import pydicom

    tags = ["DoseType", "DoseSummationType", "DoseUnits", "ReferencedRTPlanSequence",
            "TissueHeterogeneityCorrection", "DoseComment", "InstanceNumber"]
    if "://" in path:
        import fsspec

        with fsspec.open(path, "rb", **(storage_options or {})) as f:
            return pydicom.dcmread(f, stop_before_pixels=True, specific_tags=tags, force=True)
    return pydicom.dcmread(path, stop_before_pixels=True, specific_tags=tags, force=True)


def dose_attrs(hdr: Any) -> dict[str, Any]:
    """JSON-safe RT attrs of one dose header (dose type, summation, plan)."""
    out: dict[str, Any] = {}
    for kw, name in (("DoseType", "dose_type"), ("DoseSummationType", "dose_summation_type"),
                     ("DoseUnits", "dose_units"), ("DoseComment", "dose_comment")):
        v = hdr.get(kw)
        if v not in (None, ""):
            out[name] = str(v)
    thc = hdr.get("TissueHeterogeneityCorrection")
    if thc:
        out["tissue_heterogeneity_correction"] = [str(v) for v in ([thc] if isinstance(thc, str) else thc)]
    seq = hdr.get("ReferencedRTPlanSequence")
    if seq:
        out["referenced_rt_plan_sop_instance_uid"] = str(seq[0].get("ReferencedSOPInstanceUID", ""))
        out["referenced_rt_plan_sop_class_uid"] = str(seq[0].get("ReferencedSOPClassUID", ""))
    return out


def plane_offsets(rows: pd.DataFrame, where: str) -> np.ndarray:
    """Offsets (mm, along the slice normal, from IPP) of each frame, in frame order.

    Raises
    ------
    InvalidDicomError
        GFOV missing for a multi-frame dose, its length differing from
        NumberOfFrames, or the absolute form on a non-axial grid.
    """
    first = rows.iloc[0]
    nframes = len(rows)
    gfov = first.get("grid_frame_offset_vector")
    if gfov is None or (isinstance(gfov, float) and np.isnan(gfov)):
        if nframes == 1:
            return np.zeros(1)
        raise InvalidDicomError(f"{where}: {nframes} frames but no GridFrameOffsetVector; "
                                f"the plane positions are unknown")
    g = np.atleast_1d(np.asarray(gfov, dtype=np.float64))
    if len(g) != nframes:
        raise InvalidDicomError(
            f"{where}: GridFrameOffsetVector has {len(g)} values but the file has NumberOfFrames = "
            f"{nframes}; one offset per frame is required, so the plane positions are ambiguous")
    if not np.all(np.isfinite(g)):
        raise InvalidDicomError(f"{where}: GridFrameOffsetVector has non-finite values")
    if g[0] == 0:
        return g
    iop = np.array([first[f"iop_{i}"] for i in range(6)], dtype=float)
    if not np.allclose(iop, [1, 0, 0, 0, 1, 0], atol=1e-4):
        raise InvalidDicomError(
            f"{where}: GridFrameOffsetVector starts with {g[0]} (the absolute form), which PS3.3 "
            f"allows only for ImageOrientationPatient 1\\0\\0\\0\\1\\0, but it is {iop.tolist()}")
    z0 = float(first["ipp_2"])
    if abs(g[0] - z0) > GFOV_ABSOLUTE_TOL:
        warnings.warn(f"{where}: absolute GridFrameOffsetVector starts at z = {g[0]} but "
                      f"ImagePositionPatient z is {z0}; using the offsets as plane positions",
                      GeometryWarning, stacklevel=3)
    return g - z0


def dose_grid(rows: pd.DataFrame, where: str):
    """Grid (dcmxr.assembly.stack) of one RT Dose file's frame rows."""
    from ..assembly.stack import Grid
    from ..geometry.coords import stack_coords
    from ..geometry.orientation import row_col_normal

    rows = rows.sort_values("frame").reset_index(drop=True)
    offsets = plane_offsets(rows, where)
    first = rows.iloc[0]
    iop = [float(first[f"iop_{i}"]) for i in range(6)]
    _, _, normal = row_col_normal(iop)
    ipp = np.array([first[f"ipp_{i}"] for i in range(3)], dtype=float)
    order = np.argsort(offsets, kind="stable")
    if len(offsets) > 1 and np.any(np.diff(offsets[order]) == 0):
        raise InvalidDicomError(f"{where}: GridFrameOffsetVector repeats a plane position")
    positions = ipp[None, :] + offsets[order, None] * normal[None, :]
    coords = stack_coords(positions[0], iop, [first["pixel_spacing_0"], first["pixel_spacing_1"]],
                          int(first["rows"]), int(first["columns"]), positions)
    steps = np.diff(offsets[order])
    regular = bool(len(steps) < 2 or np.allclose(steps, steps[0], rtol=1e-3, atol=1e-3))
    if not regular:
        warnings.warn(f"{where}: dose planes are not evenly spaced (steps {np.unique(np.round(steps, 3)).tolist()} mm); "
                      f"z is kept as a non-uniform coordinate", GeometryWarning, stacklevel=3)
    table = rows.copy()
    scaling = pd.to_numeric(table.get("dose_grid_scaling"), errors="coerce") if "dose_grid_scaling" in table else None
    if scaling is None or scaling.isna().all():
        table["rescale_slope"] = 1.0
    else:
        table["rescale_slope"] = scaling.fillna(1.0).to_numpy(float)
    table["rescale_intercept"] = 0.0
    return Grid(table=table, index=order.astype(np.int64), lead_dims=("z",), coords=coords, regular=regular)


def _one_dose(rows: pd.DataFrame, *, raw: bool, chunks: Any, dtype: Any, storage_options: dict | None):
    from ..backend.build import build_dataarray

    path = str(rows.iloc[0]["path"])
    grid = dose_grid(rows, path)
    da = build_dataarray(grid, raw=raw, chunks=chunks, name="dose", storage_options=storage_options)
    hdr = _header(path, storage_options)
    attrs = dict(da.attrs)
    attrs.update(dose_attrs(hdr))
    scaling = grid.table["rescale_slope"].iloc[0]
    attrs["dose_grid_scaling"] = float(scaling)
    attrs["sop_instance_uid"] = str(rows.iloc[0].get("sop_instance_uid", ""))
    if not raw:
        if dtype is not None and np.dtype(dtype) != da.dtype:
            da = da.astype(dtype)
        units = DOSE_UNITS.get(str(attrs.get("dose_units", "")).upper())
        if units:
            attrs["units"] = units
        attrs["long_name"] = "dose"
    da.attrs = attrs
    da.encoding["dose_grid_scaling"] = float(scaling)
    return da


def _var_name(path: str, used: set[str]) -> str:
    base = re.sub(r"\W+", "_", Path(path).stem).strip("_") or "dose"
    name, i = base, 1
    while name in used:
        i += 1
        name = f"{base}_{i}"
    used.add(name)
    return name


def _same_grid(a, b) -> bool:
    for ax in ("x", "y", "z"):
        if a.sizes[ax] != b.sizes[ax] or not np.allclose(a[ax].values, b[ax].values, atol=1e-4):
            return False
        if not np.allclose(a[ax].attrs["direction"], b[ax].attrs["direction"], atol=1e-6):
            return False
    return True


def open_dose(
    source: Any,
    *,
    like: Any = None,
    chunks: Any = "auto",
    raw: bool = False,
    dtype: Any = "float32",
    strict: bool = False,
    storage_options: dict | None = None,
):
    """Open RT Dose file(s) as lazy dose grids in Gy.

    Parameters
    ----------
    source : path, URL, glob, list of them, or a table from :func:`dcmxr.scan`
        One or several RT Dose files (other objects in the source are ignored).
    like : None, "first" or xarray object
        Only for several doses on different grids: resample every dose onto
        this grid (``"first"``: the first dose's) with
        :func:`dcmxr.transform.resample_like` (linear, 0 outside a grid).
        Without it, differing grids raise :class:`~dcmxr.errors.GeometryError`.
    chunks : "auto", int, dict or tuple
        Planes per Dask chunk (see :func:`dcmxr.open_series`).
    raw : bool
        Keep stored integers (no DoseGridScaling, no units).
    dtype : dtype
        Output dtype of the scaled dose (float32 by default).
    strict : bool
        Raise on unreadable files instead of skipping them with a warning.
    storage_options : dict, optional
        fsspec options for remote URLs.

    Returns
    -------
    xarray.DataArray or xarray.Dataset
        One dose: a DataArray named ``dose`` with dims ``("z", "y", "x")``,
        ``units`` ``"Gy"`` (``"dimensionless"`` for RELATIVE doses), attrs
        ``dose_type``, ``dose_summation_type``, ``dose_units``,
        ``dose_grid_scaling``, ``referenced_rt_plan_sop_instance_uid`` ...
        Several: a Dataset with one variable per file (named after the file).

    Raises
    ------
    SelectionError
        No RT Dose in ``source``.
    InvalidDicomError
        GridFrameOffsetVector missing, of the wrong length, or unusable.
    GeometryError
        Several doses on different grids without ``like``.
    """
    import xarray as xr

    from ..backend.registry import remember
    from ..catalog.scan import scan
    from ..errors import GeometryError

    table = source if isinstance(source, pd.DataFrame) else scan(source, strict=strict,
                                                                   storage_options=storage_options)
    if len(table) == 0:
        raise SelectionError(f"no DICOM files found in {source!r}")
    is_dose = (table.get("modality", pd.Series(index=table.index, dtype=object)) == "RTDOSE") | (
        table.get("sop_class_uid", pd.Series(index=table.index, dtype=object)) == RTDOSE_SOP_CLASS)
    doses = table[is_dose.fillna(False).astype(bool)]
    if len(doses) == 0:
        found = sorted(set(map(str, table.get("modality", pd.Series(dtype=object)).dropna())))
        raise SelectionError(f"no RT Dose found in {source!r} (modalities found: {found})")
    remember(doses)
    key = doses["path"]  # an RT Dose is one file (copies may share a SOPInstanceUID)
    arrays = [_one_dose(rows, raw=raw, chunks=chunks, dtype=dtype, storage_options=storage_options)
              for _, rows in doses.groupby(key, sort=False)]
    if len(arrays) == 1:
        return arrays[0]
    used: set[str] = set()
    paths = [str(p) for p in pd.unique(key)]
    names = [_var_name(p, used) for p in paths]
    if like is None:
        for n, a in zip(names[1:], arrays[1:]):
            if not _same_grid(arrays[0], a):
                raise GeometryError(
                    f"dose {n!r} is on a different grid from {names[0]!r}; pass like='first' (or an array) "
                    f"to resample every dose onto one grid, or open them one at a time")
        target = arrays[0]
    else:
        from ..transform import resample_like

        target = arrays[0] if isinstance(like, str) and like == "first" else like
        arrays = [a if _same_grid(target, a) else resample_like(a, target, "linear", fill_value=0.0)
                  for a in arrays]
    data = {}
    for n, a in zip(names, arrays):
        a = a.assign_coords({ax: target[ax] for ax in ("x", "y", "z")})
        a = a.drop_vars([c for c in a.coords if c not in ("x", "y", "z")])
        data[n] = a.rename(n)
    return xr.Dataset(data, attrs={"modality": "RTDOSE"})
