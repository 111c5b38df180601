"""The public openers: ``open_series`` (one DataArray) and ``open_study`` (a DataTree)."""

from __future__ import annotations

import re
import warnings
from typing import Any

import pandas as pd

from ..assembly.series import filter_frames, list_series, select_series
from ..assembly.stack import assemble, choose_stack, split_stacks
from ..catalog.scan import scan
from ..errors import DcmxrError
from .build import build_dataarray
from .registry import remember


def _as_table(source: Any, storage_options: dict | None, strict: bool) -> pd.DataFrame:
    if isinstance(source, pd.DataFrame):
        return source
    return scan(source, strict=strict, storage_options=storage_options)


def open_series(
    source: Any,
    series: str | int | None = None,
    *,
    stack: int | None = None,
    dims: tuple[str, ...] | None = None,
    where: dict | None = None,
    fill_missing: bool = False,
    philips: str = "display",
    chunks: Any = "auto",
    raw: bool = False,
    cache: str | None = None,
    strict: bool = False,
    threads: int = 1,
    storage_options: dict | None = None,
    cache_storage_options: dict | None = None,
):
    """Open one DICOM series as a lazy, geometry-carrying DataArray.

    Parameters
    ----------
    source : path, URL, glob, DICOMDIR, list of them, or a table from :func:`dcmxr.scan`
        Where the series lives.
    series : str or int, optional
        Which series, when the source holds several: SeriesInstanceUID,
        SeriesNumber (int), SeriesDescription, or index in
        :func:`dcmxr.list_series` order.
    stack : int, optional
        Which stack of the series (0 = the largest; others are localizers,
        other orientations or sizes). By default the largest, with a
        :class:`~dcmxr.errors.GeometryWarning` naming the others.
    dims : tuple of str, optional
        DICOM keywords that become the leading dims (e.g. ``("EchoTime",)``),
        instead of the automatic choice (t, echo, b/dwi, phase, flip_angle, ...).
    where : dict, optional
        Keep only frames whose attributes match, e.g.
        ``{"ImageType": "M", "EchoTime": 4.6}`` (keywords or table columns;
        strings match the whole value or one backslash-separated part;
        numbers match within 1e-6 relative).
    fill_missing : bool
        Read frames missing from a multi-volume grid as 0 (with a warning)
        instead of raising :class:`~dcmxr.errors.GeometryError`.
    philips : {"display", "precise"}
        Philips values: "display" is the DICOM standard RescaleSlope/Intercept
        value; "precise" is Philips' floating-point value (PV*RS + RI)/(RS*SS)
        with the private scale slope, which dcm2niix writes by default.
    chunks : "auto", int, dict or tuple
        Frames per Dask chunk along the frame dims (``z``, ``t`` ...); rows and
        columns are never split. "auto" targets about 64 MB per chunk.
    raw : bool
        Keep stored values instead of real-world values (Modality LUT).
    cache : str, optional
        Path of a zarr store that keeps decoded chunks (see
        :mod:`dcmxr.stores.cache`).
    strict : bool
        Raise on unreadable files instead of skipping them with a warning.
    threads : int
        Decoder threads inside each chunk task.
    storage_options : dict, optional
        fsspec options for URLs.
    cache_storage_options : dict, optional
        fsspec options for a remote ``cache`` store.

    Returns
    -------
    xarray.DataArray
        Dims ``("z", "y", "x")`` (with leading ``t`` for repeated volumes and
        trailing ``c`` for colour); ``x``/``y``/``z`` coordinates in mm with a
        ``direction`` attr each (LPS); per-frame attributes as non-dim coords.

    Raises
    ------
    AmbiguousSelectionError
        The source holds several series and ``series`` is not given.
    """
    if isinstance(source, str) and source.startswith(("dicomweb://", "dicomwebs://")):
        from ..dicomweb import open_series as _dicomweb_open

        opts = storage_options or {}
        return _dicomweb_open(source, headers=opts.get("headers"), timeout=opts.get("timeout"),
                              retries=opts.get("retries"), stack=stack,
                              dims=dims, where=where, chunks=chunks, raw=raw, philips=philips,
                              fill_missing=fill_missing, threads=threads)
    table = _as_table(source, storage_options, strict)
    rows = select_series(table, series)
    if where:
        rows = filter_frames(rows, where)
    remember(rows)
    stacks = split_stacks(rows)
    chosen, excluded = choose_stack(stacks, stack)
    grid = assemble(chosen, dims=dims, fill_missing=fill_missing)
    if grid.excluded is not None and len(excluded):
        grid.excluded = pd.concat([excluded, grid.excluded], ignore_index=True)
    elif len(excluded):
        grid.excluded = excluded
    da = build_dataarray(grid, raw=raw, chunks=chunks, threads=threads, name="image",
                         storage_options=storage_options, philips=philips)
    if cache is not None:
        from ..stores.cache import cached

        da = cached(da, cache, grid=grid, raw=raw, storage_options=cache_storage_options)
    return da


def _safe(name: Any, fallback: str) -> str:
    s = "" if name is None or (isinstance(name, float) and name != name) else str(name)
    s = re.sub(r"[^0-9A-Za-z_.-]+", "_", s).strip("_")
    return s or fallback


def _unique(name: str, used: set[str]) -> str:
    out, i = name, 2
    while out in used:
        out = f"{name}_{i}"
        i += 1
    used.add(out)
    return out


def study_groups(table: pd.DataFrame, *, raw: bool = False, chunks: Any = "auto",
                 storage_options: dict | None = None) -> dict[str, Any]:
    """``{"/patient/study/series": Dataset}`` for every image series in a table."""
    import xarray as xr

    groups: dict[str, Any] = {"/": xr.Dataset()}
    listing = list_series(table)
    used: dict[str, set[str]] = {}
    for _, s in listing.iterrows():
        rows = table[table["series_instance_uid"].fillna("") == s["series_instance_uid"]]
        first = rows.iloc[0]
        patient = _safe(first.get("patient_id"), "patient")
        study = _safe(first.get("study_date"), "study") + "_" + _safe(str(first.get("study_instance_uid", ""))[-8:], "x")
        series = f"{_safe(s['series_number'], 'S')}_{_safe(s['series_description'], s['modality'] or 'series')}"
        parent = f"/{patient}/{study}"
        series = _unique(series, used.setdefault(parent, set()))
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                stacks = split_stacks(rows)
                for i, st in enumerate(stacks):
                    grid = assemble(st)
                    da = build_dataarray(grid, raw=raw, chunks=chunks, name="image",
                                         storage_options=storage_options)
                    # extra stacks are siblings: DataTree children must align with their parent
                    path = f"{parent}/{series}" if i == 0 else f"{parent}/{series}_stack{i}"
                    ds = da.to_dataset()
                    ds.attrs = dict(da.attrs)
                    groups[path] = ds
            for w in caught:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        except DcmxrError as exc:
            warnings.warn(f"series {s['series_instance_uid']} skipped: {exc}", stacklevel=2)
    for path in list(groups):
        parts = path.strip("/").split("/")
        for k in range(1, len(parts)):
            groups.setdefault("/" + "/".join(parts[:k]), xr.Dataset())
    return groups


def open_study(source: Any, *, raw: bool = False, chunks: Any = "auto", strict: bool = False,
               storage_options: dict | None = None):
    """Open every series in a source as a DataTree: ``/patient/study/series``.

    Parameters
    ----------
    source : path, URL, glob, DICOMDIR, list, or a scan table
    raw, chunks, strict, storage_options
        As for :func:`open_series`.

    Returns
    -------
    xarray.DataTree
        One node per series holding an ``image`` variable (lazy); extra
        stacks of a series (localizers, other orientations) are sibling nodes
        ``<series>_stackN``.
    """
    import xarray as xr

    if isinstance(source, str) and source.startswith(("dicomweb://", "dicomwebs://")):
        from ..dicomweb import open_study as _dicomweb_open_study

        opts = storage_options or {}
        return _dicomweb_open_study(source, headers=opts.get("headers"), timeout=opts.get("timeout"),
                                    retries=opts.get("retries"), raw=raw, chunks=chunks)
    table = _as_table(source, storage_options, strict)
    remember(table)
    return xr.DataTree.from_dict(study_groups(table, raw=raw, chunks=chunks, storage_options=storage_options))
