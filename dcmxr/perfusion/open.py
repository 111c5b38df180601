"""``dcmxr.open_perfusion``: a dynamic series, or a group of per-timepoint series, as ``("t", "z", "y", "x")``.

A dynamic acquisition reaches us in one of two shapes:

* one series with repeated volumes (temporal positions): opened with
  :func:`dcmxr.open_series`, whose ``t`` comes from the headers;
* one series per time point (Siemens TWIST / TWIST-VIBE exports, each
  SeriesDescription ending in ``TT=X.Xs``): every series is opened on its own,
  checked to share one grid (matrix, slices, positions and directions) and
  stacked along ``t`` sorted by the TT time.

Acquisition parameters go to attrs with units (see
:mod:`dcmxr.perfusion.params`), by priority ``acquisition=`` > BIDS sidecar >
vendor > standard DICOM > defaults; for ASL the headers' ASL attributes and
vendor fields are read too (:mod:`dcmxr.perfusion.asl`).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import AmbiguousSelectionError, GeometryError, SelectionError
from . import params as P
from .discover import base_description, discover

MODALITY_ROLES: dict[str, tuple[str, ...]] = {
    "DCE": ("dynamic", "dynamic_frame"),
    "DSC": ("dynamic", "dynamic_frame"),
    "ASL": ("asl",),
    "IVIM": ("dwi",),
}

#: Positions of two members of a dynamic_frame group may differ by this much (mm).
GROUP_POSITION_TOLERANCE_MM = 1e-3


def _frames_of(rows: pd.DataFrame) -> pd.DataFrame:
    """The frame table behind discover rows (attrs, else the registry)."""
    frames = rows.attrs.get("frames")
    uids = set(rows["series_instance_uid"])
    if isinstance(frames, pd.DataFrame) and "series_instance_uid" in frames:
        sel = frames[frames["series_instance_uid"].isin(uids)]
        if sel["series_instance_uid"].nunique() == len(uids):
            return sel
    from ..backend.registry import lookup

    parts = [lookup(str(u)) for u in uids]
    if any(p is None for p in parts):
        raise SelectionError("these discover rows have lost their frame table (pandas attrs); pass the "
                             "source again: open_perfusion(path, series=...)")
    return pd.concat(parts)


def _describe(rows: pd.DataFrame) -> str:
    return "\n".join(
        f"  number={r.series_number!s:>5} role={r.role_hint:<13} shape={r.shape} "
        f"group_key={r.group_key!r} description={r.series_description!r}"
        for r in rows.itertuples()
    )


def _pick(found: pd.DataFrame, modality: str, series: Any) -> pd.DataFrame:
    """Rows of the one acquisition to open (a series, or a dynamic_frame group)."""
    if series is not None:
        s = found
        if isinstance(series, str):
            hit = s[(s.series_instance_uid == series) | (s.group_key == series)
                    | (s.series_description.fillna("") == series)]
            if hit.empty:
                hit = s[s.series_description.fillna("").str.lower().str.contains(series.lower(), regex=False)]
        else:
            hit = s[s.series_number == series]
        if hit.empty:
            raise SelectionError(f"series={series!r} matches nothing; the source holds:\n{_describe(found)}")
        found = hit
        if len(found) > 1 and found.group_key.notna().all() and found.group_key.nunique() == 1:
            return found
        if len(found) == 1:
            return found
    roles = MODALITY_ROLES[modality]
    cand = found[found.role_hint.isin(roles)]
    units: list[pd.DataFrame] = []
    for key, grp in cand.groupby(cand.group_key.fillna(cand.series_instance_uid), sort=False):
        units.append(grp)
    if len(units) == 1:
        return units[0]
    how = ("pick one with series=<SeriesInstanceUID, SeriesNumber, SeriesDescription or group_key>, "
           "or pass rows of dcmxr.discover(...)")
    if not units:
        raise SelectionError(f"no series with role {' / '.join(roles)} for modality={modality!r}; {how}:\n"
                             f"{_describe(found)}")
    raise AmbiguousSelectionError(f"{len(units)} candidate acquisitions for modality={modality!r}; {how}:\n"
                                  f"{_describe(cand)}")


def _as_rows(obj: Any, modality: str, series: Any, strict: bool, storage_options: dict | None) -> pd.DataFrame:
    if isinstance(obj, pd.Series):
        rows = obj.to_frame().T
        rows.attrs = dict(obj.attrs)
        return rows
    if isinstance(obj, pd.DataFrame) and "role_hint" in obj.columns:
        return obj if series is None else _pick(obj, modality, series)
    return _pick(discover(obj, strict=strict, storage_options=storage_options), modality, series)


def _open_one(frames: pd.DataFrame, **kw):
    from ..backend.api import open_series

    return open_series(frames, **kw)


def _spatial(da) -> tuple:
    return tuple(d for d in da.dims if d in ("z", "y", "x"))


def stack_timepoints(members: list[tuple[float, Any]]):
    """Stack single-timepoint volumes ``[(tt_seconds, DataArray), ...]`` along ``t``.

    Every member must be ``("z", "y", "x")`` on the same grid: equal shape,
    directions and positions within :data:`GROUP_POSITION_TOLERANCE_MM`.

    Raises
    ------
    GeometryError
        Members on different grids (mixed matrix sizes, slices, positions) or
        with repeated TT times, naming each member.
    """
    import xarray as xr

    members = sorted(members, key=lambda m: m[0])

    def name(da) -> str:
        return f"series {da.attrs.get('series_number')} {da.attrs.get('series_description')!r}"

    listing = "\n".join(f"  TT={tt:g}s {name(da)} dims={dict(da.sizes)}" for tt, da in members)
    tts = [tt for tt, _ in members]
    if len(set(tts)) != len(tts):
        raise GeometryError(f"repeated TT times in one group; pick series with series=... or filter the discover "
                            f"rows:\n{listing}")
    ref = members[0][1]
    for tt, da in members:
        if da.dims != ("z", "y", "x"):
            raise GeometryError(f"{name(da)} has dims {da.dims}; each member of a per-timepoint group must be one "
                                f"(z, y, x) volume:\n{listing}")
        if da.shape != ref.shape:
            raise GeometryError(
                f"the group mixes matrix sizes: {name(ref)} is {dict(ref.sizes)} but {name(da)} is "
                f"{dict(da.sizes)}; open the members of one size (filter the discover rows by 'shape' and pass "
                f"them, or series=...):\n{listing}")
        for ax in ("x", "y", "z"):
            a, b = np.asarray(ref[ax].values, float), np.asarray(da[ax].values, float)
            da_dir = np.asarray(da[ax].attrs.get("direction", [0, 0, 0]), float)
            ref_dir = np.asarray(ref[ax].attrs.get("direction", [0, 0, 0]), float)
            off = float(np.max(np.abs(a - b))) if len(a) else 0.0
            if off > GROUP_POSITION_TOLERANCE_MM or not np.allclose(da_dir, ref_dir, atol=1e-6):
                raise GeometryError(
                    f"{name(da)} is not on the grid of {name(ref)}: {ax} positions differ by up to {off:.4g} mm "
                    f"(tolerance GROUP_POSITION_TOLERANCE_MM={GROUP_POSITION_TOLERANCE_MM}) or directions differ "
                    f"({list(ref_dir)} vs {list(da_dir)}); open the members separately and resample:\n{listing}")
    arrays = []
    for tt, da in members:
        keep = {k: v for k, v in da.coords.items() if set(v.dims) <= {"z"} and k not in ("x", "y")}
        arrays.append(da.reset_coords(drop=True).assign_coords(keep).assign_coords(x=ref.x, y=ref.y, z=ref.z))
    t = np.array(tts, dtype=float)
    out = xr.concat(arrays, dim="t", coords="different", compat="equals", join="override",
                    combine_attrs="drop_conflicts")
    out = out.assign_coords(
        t=("t", t - t[0], {"units": "s", "long_name": "time from the first TT"}),
        tt=("t", t, {"units": "s", "long_name": "TT time from the SeriesDescription"}),
        series_instance_uid=("t", [str(da.attrs.get("series_instance_uid")) for _, da in members]),
        series_number=("t", [da.attrs.get("series_number") for _, da in members]),
    )
    for k in ("series_instance_uid", "series_number"):
        out.attrs.pop(k, None)
    out.attrs["series_description"] = base_description(ref.attrs.get("series_description"))
    for ax in ("x", "y", "z"):
        out[ax].attrs.update(ref[ax].attrs)
    return out


def _read_sidecar(sidecar: Any, da) -> dict:
    if isinstance(sidecar, dict):
        return sidecar
    if isinstance(sidecar, (str, os.PathLike)):
        return json.loads(Path(sidecar).read_text())
    src = da.encoding.get("source")
    if sidecar is None and isinstance(src, str):
        from ..backend.nifti import read_sidecars

        return read_sidecars(src)[0]
    return {}


def standard_params(da) -> dict[str, Any]:
    """Parameters from the array's own (standard DICOM) attrs and coords."""
    out: dict[str, Any] = {}
    for k in ("repetition_time", "echo_time", "flip_angle", "inversion_time"):
        if k in da.attrs:
            out[k] = da.attrs[k]
        elif k in da.coords and da.coords[k].size:
            vals = sorted({float(v) for v in np.ravel(da.coords[k].values) if np.isfinite(float(v))})
            out[k] = vals[0] if len(vals) == 1 else vals
    if "t" in da.dims:
        out["n_timepoints"] = int(da.sizes["t"])
        t = da["t"]
        if t.attrs.get("units") == "s" and da.sizes["t"] > 1:
            out["temporal_resolution"] = round(float(np.median(np.diff(np.asarray(t.values, float)))), 6)
    if "diffusion_b_value" in da.coords:
        out["b_values"] = [float(v) for v in np.ravel(da["diffusion_b_value"].values)]
    elif "b" in da.dims:
        out["b_values"] = [float(v) for v in da["b"].values]
    return out


def vendor_params(da) -> dict[str, Any]:
    """Vendor conventions: TWIST TT times give the temporal resolution (median TT step)."""
    out: dict[str, Any] = {}
    if "tt" in da.coords and da.sizes.get("t", 0) > 1:
        out["temporal_resolution"] = round(float(np.median(np.diff(np.asarray(da["tt"].values, float)))), 6)
    return out


def asl_header_params(da) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(standard, vendor)`` ASL parameters from the header of the array's first file (see
    :mod:`dcmxr.perfusion.asl`); empty when the array's headers are not known to this process."""
    from ..backend.registry import lookup
    from .asl import header_params

    uid = da.attrs.get("series_instance_uid")
    if uid is None and "series_instance_uid" in da.coords:
        uid = np.ravel(da.coords["series_instance_uid"].values)[0]
    table = lookup(str(uid)) if uid is not None else None
    if table is None or "path" not in table.columns or not len(table):
        return {}, {}
    if "sop_instance_uid" in da.coords and "sop_instance_uid" in table.columns:
        first = np.ravel(da.coords["sop_instance_uid"].values)[0]
        hit = table[table["sop_instance_uid"] == first]
        if len(hit):
            table = hit
    return header_params(str(table["path"].iloc[0]))


def apply_acquisition(da, modality: str, *, acquisition: dict | None = None, sidecar: Any = None,
                      vendor: dict | None = None):
    """Set the modality's acquisition parameters on ``da.attrs`` by priority.

    Parameters
    ----------
    da : xarray.DataArray
    modality : {"DCE", "DSC", "ASL", "IVIM"}
    acquisition : dict, optional
        Highest priority; keys in snake_case (units of
        :data:`dcmxr.perfusion.params.PARAM_UNITS`) or BIDS names (BIDS
        units); pint Quantities are converted.
    sidecar : dict or path, optional
        A BIDS sidecar; by default the JSON beside ``da.encoding["source"]``
        (arrays from :func:`dcmxr.open_nifti`), when there is one.
    vendor : dict, optional
        Extra vendor-derived values (merged over :func:`vendor_params`).

    Returns
    -------
    xarray.DataArray
        A shallow copy with the parameters in attrs,
        ``attrs["acquisition_source"]`` (parameter -> source) and
        ``attrs["acquisition_units"]`` (parameter -> units).
    """
    modality = _check_modality(modality)
    meta = _read_sidecar(sidecar, da)
    std_hdr, vendor_hdr = asl_header_params(da) if modality == "ASL" else ({}, {})
    layers = {
        "standard": {**standard_params(da), **std_hdr},
        "vendor": {**vendor_params(da), **vendor_hdr, **(vendor or {})},
        "sidecar": P.from_bids(meta) if meta else {},
        "acquisition": P.from_user(acquisition or {}),
    }
    values, sources = P.resolve(modality, layers)
    out = da.copy(deep=False)
    out.attrs = dict(da.attrs)
    out.attrs.update(values)
    out.attrs["perfusion_modality"] = modality
    out.attrs["acquisition_source"] = sources
    out.attrs["acquisition_units"] = {k: P.PARAM_UNITS[k] for k in values if P.PARAM_UNITS.get(k)}
    return out


def _check_modality(modality: str) -> str:
    m = str(modality).upper()
    if m not in MODALITY_ROLES:
        raise ValueError(f"modality= must be one of {sorted(MODALITY_ROLES)}, not {modality!r}")
    return m


def _slice_time(da):
    """``slice_time`` (s) on ``z`` from the headers (as the BIDS SliceTiming), when known."""
    if "slice_time" in da.coords:
        if "units" not in da["slice_time"].attrs:  # from the assembly (Siemens CSA, GE): seconds
            da = da.assign_coords(slice_time=da["slice_time"].copy())
            da["slice_time"].attrs["units"] = "s"
        return da
    if "z" not in da.dims:
        return da
    from ..backend.registry import lookup
    from ..export.bids import slice_timing

    uid = da.attrs.get("series_instance_uid")
    table = lookup(str(uid)) if uid else None
    try:
        st = slice_timing(da, table)
    except (KeyError, ValueError, TypeError):
        st = None
    if st is None or len(st) != da.sizes["z"]:
        return da
    return da.assign_coords(slice_time=("z", np.asarray(st, float), {"units": "s"}))


def open_perfusion(
    rows_or_series: Any,
    modality: str = "DCE",
    acquisition: dict | None = None,
    *,
    series: Any = None,
    sidecar: Any = None,
    chunks: Any = "auto",
    philips: str = "display",
    strict: bool = False,
    storage_options: dict | None = None,
):
    """Open a dynamic (DCE, DSC), ASL or IVIM acquisition with its parameters in attrs.

    Parameters
    ----------
    rows_or_series : discover rows, a discover row, a path/URL/list/scan table, or a DataArray
        What to open. Rows of :func:`dcmxr.discover`: one series, or the
        ``dynamic_frame`` rows of one ``group_key`` (stacked along ``t`` by TT
        time). A source: discovered first, then the one acquisition whose
        role fits ``modality`` is opened (``series=`` picks when there are
        several). A DataArray (e.g. from :func:`dcmxr.open_bids`) only gets
        its parameters set.
    modality : {"DCE", "DSC", "ASL", "IVIM"}
        Which parameters to report (and which roles are candidates).
    acquisition : dict, optional
        Parameters that override everything else (snake_case names in
        :data:`dcmxr.perfusion.params.PARAM_UNITS` units, BIDS names in BIDS
        units, or pint Quantities).
    series : str or int, optional
        SeriesInstanceUID, SeriesNumber, SeriesDescription or ``group_key``.
    sidecar : dict or path, optional
        A BIDS sidecar to read parameters from (priority below
        ``acquisition``, above the headers).
    chunks, philips, strict, storage_options
        As for :func:`dcmxr.open_series`.

    Returns
    -------
    xarray.DataArray
        Lazy; ``("t", "z", "y", "x")`` for dynamic data (``t`` in s from the
        first volume), the series' own leading dims for ASL (``t``, ``asl``)
        and IVIM (``dwi`` or ``b``). Parameters in attrs, with
        ``acquisition_source`` and ``acquisition_units``; ``slice_time`` (s)
        on ``z`` when the headers give slice timing.

    Raises
    ------
    AmbiguousSelectionError
        Several candidate acquisitions; the message lists them.
    SelectionError
        No candidate for the modality.
    GeometryError
        A per-timepoint group whose members are not on one grid.
    """
    import xarray as xr

    modality = _check_modality(modality)
    if isinstance(rows_or_series, xr.DataArray):
        return apply_acquisition(rows_or_series, modality, acquisition=acquisition, sidecar=sidecar)
    rows = _as_rows(rows_or_series, modality, series, strict, storage_options)
    if rows.empty:
        raise SelectionError("open_perfusion: no rows given")
    frames = _frames_of(rows)
    kw = dict(chunks=chunks, philips=philips)
    if len(rows) == 1:
        da = _open_one(frames, **kw)
    else:
        keys = rows["group_key"].dropna().unique()
        if len(keys) != 1 or rows["group_key"].isna().any() or rows["tt"].isna().any():
            raise AmbiguousSelectionError(
                "several series given, but they are not one dynamic_frame group (one group_key, a TT time "
                f"each); pass one series or the rows of one group:\n{_describe(rows)}")
        members = []
        for r in rows.itertuples():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", category=UserWarning)
                member = _open_one(frames[frames.series_instance_uid == r.series_instance_uid], **kw)
            members.append((float(r.tt), _slice_time(member)))
        da = stack_timepoints(members)
    da = _slice_time(da)
    da.name = "image"
    return apply_acquisition(da, modality, acquisition=acquisition, sidecar=sidecar)
