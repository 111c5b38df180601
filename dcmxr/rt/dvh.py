"""Dose-volume histograms and their metrics (``dvh``).

A DVH is a weighted histogram of dose values: each voxel counts with the
volume of the structure inside it (mask x voxel volume, so fractional masks
and non-uniform ``z`` spacing count correctly). Bins are ``[i*w, (i+1)*w)``
Gy with ``w = bin_width``; the ``dose`` coordinate holds the lower edges;
``cumulative_dvh[i]`` is the volume receiving at least ``dose[i]`` and
``differential_dvh[i]`` the volume with dose in bin ``i`` (both cm³).

Two ways to call it:

* ``dvh(dose, mask)``: ``mask`` (bool or fraction, a DataArray or a Dataset
  of ROIs) is on the dose grid (e.g. ``rasterize(structs, like=dose)``);
  voxel volumes come from the coordinates. Works lazily on Dask arrays.
* ``dvh(dose, structs, roi=...)``: the dicompyler-core method. Each ROI is
  sampled on the dose's in-plane grid at its *own contour planes*, each plane
  a slab of the ROI's plane spacing; the dose at a contour plane is the dose
  plane within ``snap`` mm, else linearly interpolated between the two
  neighbouring planes (NaN outside the dose grid).

Metrics: ``volume`` (whole structure, cm³), ``volume_in_dose`` (the part
inside the dose grid, which the histogram covers), ``dmin``/``dmax``/``dmean``
(exact over the voxels, weighted), and ``d2``, ``d95``, ``d98``
(:func:`dose_at_volume`: linear interpolation on the cumulative curve);
``volume_at_dose`` gives V20Gy-style values.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ..errors import DcmxrWarning, GeometryError, SelectionError

#: Dose planes closer than this (mm) to a contour plane are used as they are.
SNAP_MM = 0.5


def _is_dask(a: Any) -> bool:
    return hasattr(a, "dask") or type(a).__module__.startswith("dask")


def _cells(v: np.ndarray, fallback: float) -> np.ndarray:
    """Cell size of each coordinate value (midpoint rule; a single value takes ``fallback``)."""
    v = np.atleast_1d(np.asarray(v, dtype=np.float64))
    if len(v) == 1:
        return np.array([fallback])
    mid = (v[1:] + v[:-1]) / 2
    edges = np.concatenate([[v[0] - (mid[0] - v[0])], mid, [v[-1] + (v[-1] - mid[-1])]])
    return np.abs(np.diff(edges))


def _hist_numpy(d: np.ndarray, w: np.ndarray, bin_width: float, nbins: int) -> dict:
    sel = w > 0
    d, w = d[sel].astype(np.float64, copy=False), w[sel].astype(np.float64, copy=False)
    total = float(w.sum())
    fin = np.isfinite(d)
    d, w = d[fin], w[fin]
    inv = 1.0 / bin_width
    idx = np.floor(d * inv if float(inv).is_integer() else d / bin_width).astype(np.int64)
    idx = np.clip(idx, 0, nbins - 1)
    diff = np.bincount(idx, weights=w, minlength=nbins)
    inside = float(w.sum())
    if len(d):
        stats = (float(d.min()), float(d.max()), float((d * w).sum() / inside))
    else:
        stats = (np.nan, np.nan, np.nan)
    return {"differential": diff, "volume": total, "volume_in_dose": inside,
            "dmin": stats[0], "dmax": stats[1], "dmean": stats[2]}


def _hist_dask(d, w, bin_width: float, nbins: int) -> dict:
    import dask.array as da

    d = da.asarray(d).astype(np.float64)
    w = da.broadcast_to(da.asarray(w), d.shape).rechunk(d.chunks).astype(np.float64)
    edges = np.arange(nbins + 1) * bin_width
    edges[-1] = np.inf
    inmask = w > 0
    fin = da.isfinite(d) & inmask
    wd = da.where(fin, w, 0.0)
    dd = da.where(fin, d, 0.0)
    diff, _ = da.histogram(da.clip(dd, 0, None), bins=edges, weights=wd)
    inside = wd.sum()
    return {"differential": diff, "volume": da.where(inmask, w, 0.0).sum(), "volume_in_dose": inside,
            "dmin": da.where(fin, d, np.inf).min(), "dmax": da.where(fin, d, -np.inf).max(),
            "dmean": (dd * wd).sum() / inside}


def _dose_at(cum: np.ndarray, edges: np.ndarray, pct: float) -> float:
    cum = np.asarray(cum, dtype=np.float64)
    if cum.size == 0 or not cum[0] > 0:
        return np.nan
    rel = 100.0 * cum / cum[0]
    i = int(np.flatnonzero(rel >= pct)[-1]) if np.any(rel >= pct) else 0
    if i + 1 < len(rel) and rel[i] > rel[i + 1]:
        step = edges[1] - edges[0] if len(edges) > 1 else 0.0
        return float(edges[i] + (rel[i] - pct) / (rel[i] - rel[i + 1]) * step)
    return float(edges[i])


def dose_at_volume(result, percent: float):
    """D``percent``%: the lowest dose received by the hottest ``percent`` % of the volume in the dose grid.

    Parameters
    ----------
    result : xarray.Dataset
        From :func:`dvh`.
    percent : float
        Volume percentage (e.g. 95 for D95%).

    Returns
    -------
    xarray.DataArray
        Gy, one value per ROI (lazy when ``result`` is).
    """
    import xarray as xr

    edges = result["dose"].values
    out = xr.apply_ufunc(_dose_at, result["cumulative_dvh"], kwargs={"edges": edges, "pct": float(percent)},
                         input_core_dims=[["dose"]], vectorize=True, dask="parallelized", output_dtypes=[float])
    return out.assign_attrs(units="Gy", long_name=f"D{percent:g}%")


def volume_at_dose(result, dose_gy: float, *, relative: bool = False):
    """V(x): volume receiving at least ``dose_gy`` Gy (cm³, or % of the volume in the dose grid).

    Linear interpolation on the cumulative curve; 0 beyond its last bin.
    """
    import xarray as xr

    edges = result["dose"].values

    def _v(cum):
        v = float(np.interp(dose_gy, edges, cum, right=0.0))
        return 100.0 * v / cum[0] if relative and cum[0] > 0 else v

    out = xr.apply_ufunc(_v, result["cumulative_dvh"], input_core_dims=[["dose"]], vectorize=True,
                         dask="parallelized", output_dtypes=[float])
    return out.assign_attrs(units="percent" if relative else "cm**3", long_name=f"V{dose_gy:g}Gy")


def _assemble(parts: dict, name: str | None, bin_width: float, nbins: int, attrs: dict):
    import xarray as xr

    edges = np.arange(nbins) * bin_width
    diff = parts["differential"] / 1000.0
    if _is_dask(diff):
        cum = diff[::-1].cumsum(axis=0)[::-1]
    else:
        cum = np.cumsum(diff[::-1])[::-1]
    dose = xr.Variable("dose", edges, attrs={"units": "Gy", "long_name": "dose (bin lower edge)",
                                             "bin_width": float(bin_width)})
    ds = xr.Dataset(
        {
            "cumulative_dvh": ("dose", cum, {"units": "cm**3", "long_name": "volume receiving at least dose"}),
            "differential_dvh": ("dose", diff, {"units": "cm**3", "long_name": "volume per dose bin"}),
            "volume": ((), parts["volume"] / 1000.0, {"units": "cm**3", "long_name": "structure volume"}),
            "volume_in_dose": ((), parts["volume_in_dose"] / 1000.0,
                               {"units": "cm**3", "long_name": "structure volume inside the dose grid"}),
            "dmin": ((), parts["dmin"], {"units": "Gy", "long_name": "minimum dose"}),
            "dmax": ((), parts["dmax"], {"units": "Gy", "long_name": "maximum dose"}),
            "dmean": ((), parts["dmean"], {"units": "Gy", "long_name": "mean dose"}),
        },
        coords={"dose": dose},
        attrs=attrs,
    )
    if name is not None:
        ds = ds.assign_coords(roi=name)
    return ds


def _with_metrics(ds):
    for p in (2, 95, 98):
        ds[f"d{p}"] = dose_at_volume(ds, p)
    return ds


def _dose_units_ok(dose) -> None:
    u = dose.attrs.get("units")
    if u not in (None, "Gy", "gray"):
        warnings.warn(f"dose units are {u!r}, not Gy; bins and metrics are in those units", DcmxrWarning, stacklevel=3)


def _nbins(dose, max_dose: float | None, bin_width: float) -> int:
    if bin_width <= 0:
        raise ValueError(f"bin_width must be positive, got {bin_width}")
    m = float(dose.max()) if max_dose is None else float(max_dose)
    if not np.isfinite(m):
        raise ValueError("the dose has no finite values")
    return int(np.floor(max(m, 0.0) / bin_width + 1e-9)) + 1


def _check_same_grid(dose, mask) -> None:
    for ax in ("x", "y", "z"):
        a, b = np.atleast_1d(dose[ax].values), np.atleast_1d(mask[ax].values)
        if a.shape != b.shape or not np.allclose(a, b, atol=1e-3):
            raise GeometryError(f"mask {mask.name!r} is not on the dose grid (its {ax!r} coordinate differs); "
                                f"rasterise onto the dose (rasterize(structs, like=dose)) or resample the mask "
                                f"with mask.dcm.resample_like(dose)")


def _nonzero(volume, name):
    if not np.all(np.asarray(volume) > 0):
        raise SelectionError(f"mask {name!r} is empty: no DVH to compute")
    return volume


def _mask_dvh(dose, mask, bin_width: float, nbins: int):
    _check_same_grid(dose, mask)
    name = str(mask.name) if mask.name is not None else None
    cx = _cells(dose["x"].values, 1.0)
    cy = _cells(dose["y"].values, 1.0)
    cz = _cells(dose["z"].values, float(mask.attrs.get("contour_thickness_mm", 0.0)))
    if cz.size == 1 and cz[0] == 0:
        raise GeometryError(f"mask {name!r} has one slice and no thickness; its volume is undefined")
    vox = (cz[:, None, None] * cy[None, :, None] * cx[None, None, :])
    d = dose.transpose("z", "y", "x").data
    m = mask.transpose("z", "y", "x").data
    if not _is_dask(m):
        _nonzero(float(np.asarray(m, dtype=np.float64).sum()), name)
    if _is_dask(d) or _is_dask(m):
        parts = _hist_dask(d, m * vox, bin_width, nbins)
    else:
        parts = _hist_numpy(np.asarray(d).ravel(), (np.asarray(m, dtype=np.float64) * vox).ravel(), bin_width, nbins)
    if _is_dask(parts["volume"]):
        parts["volume"] = parts["volume"].map_blocks(_nonzero, name, dtype=float)
    else:
        _nonzero(parts["volume"], name)
    return _assemble(parts, name, bin_width, nbins, {"roi_name": name} if name else {})


def dose_on_planes(dose, planes: np.ndarray, snap: float = SNAP_MM):
    """Dose at positions ``planes`` along z: nearest plane within ``snap`` mm, else linear; NaN outside."""
    z = np.asarray(dose["z"].values, dtype=np.float64)
    d = dose.transpose("z", "y", "x").data
    near = np.argmin(np.abs(planes[:, None] - z[None, :]), axis=1)
    lo = np.clip(np.searchsorted(z, planes, side="right") - 1, 0, len(z) - 1)
    hi = np.clip(lo + 1, 0, len(z) - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(hi > lo, (planes - z[lo]) / (z[hi] - z[lo]), 0.0)
    snapped = np.abs(z[near] - planes) <= snap
    lo = np.where(snapped, near, lo)
    hi = np.where(snapped, near, hi)
    w = np.where(snapped, 0.0, w)
    outside = ~snapped & ((planes < z[0]) | (planes > z[-1]))
    if _is_dask(d):
        a, b = d[lo], d[hi]
    else:
        a, b = np.asarray(d)[lo], np.asarray(d)[hi]
    w3 = w[:, None, None]
    out = a * (1.0 - w3) + b * w3 if np.any(w) else a * 1.0
    nan = np.where(outside, np.nan, 0.0)[:, None, None]
    return out + nan


def _struct_dvh(dose, structs, number: int, bin_width: float, nbins: int, snap: float, axes: dict, allow):
    from .rasterize import _check_frame, plane_masks, roi_planes

    _check_frame(structs, number, dose, allow)
    planes, polys, thickness = roi_planes(structs, number, axes)
    name = str(structs.rois.at[number, "roi_name"])
    if thickness == 0:
        thickness = float(np.median(np.diff(axes["z"]))) if len(axes["z"]) > 1 else 0.0
        warnings.warn(f"ROI {name!r} (number {number}) has a single contour plane; its slab thickness is taken from "
                      f"the dose grid's z spacing ({thickness} mm)", DcmxrWarning, stacklevel=3)
    masks = plane_masks(polys, np.arange(len(planes)), axes["x"], axes["y"])
    dplanes = dose_on_planes(dose, planes, snap)
    area = abs(float(np.mean(np.diff(axes["x"]))) * float(np.mean(np.diff(axes["y"]))))
    w = masks * (area * thickness)
    if _is_dask(dplanes):
        parts = _hist_dask(dplanes, w, bin_width, nbins)
    else:
        parts = _hist_numpy(np.asarray(dplanes).ravel(), w.ravel(), bin_width, nbins)
        outside = parts["volume"] - parts["volume_in_dose"]
        if parts["volume"] == 0:
            raise SelectionError(f"ROI {name!r} (number {number}) encloses no dose-grid voxel centre: its volume "
                                 f"is 0 on this grid, so there is no DVH")
        if outside > 1e-9 * parts["volume"]:
            warnings.warn(f"ROI {name!r} (number {number}): {outside / 1000:.3f} cm³ of its "
                          f"{parts['volume'] / 1000:.3f} cm³ lie outside the dose grid; the DVH covers the part "
                          f"inside (volume_in_dose)", DcmxrWarning, stacklevel=3)
    attrs = {"roi_name": name, "roi_number": int(number), "contour_thickness_mm": float(thickness)}
    return _assemble(parts, name, bin_width, nbins, attrs)


def dvh(dose, mask, *, roi: Any = None, bin_width: float = 0.01, max_dose: float | None = None,
        snap: float = SNAP_MM, allow_different_frame: bool = False):
    """Cumulative and differential DVHs with metrics.

    Parameters
    ----------
    dose : xarray.DataArray
        Dose in Gy with dcmxr geometry, dims ``("z", "y", "x")`` (numpy or Dask).
    mask : xarray.DataArray, xarray.Dataset or StructureSet
        Boolean or fractional mask(s) on the dose grid, or a structure set
        (the dicompyler-core method; see the module docstring; the dose is
        read into memory once and the result is computed eagerly).
    roi : str, int, list or None
        With a structure set (or a Dataset of masks): which ROIs; None = all.
    bin_width : float
        Bin width in Gy (0.01 = 1 cGy, dicompyler-core's).
    max_dose : float, optional
        Upper end of the bins; default the dose maximum (which computes it;
        give it to keep a Dask pipeline fully lazy). Doses above it count in
        the last bin.
    snap : float
        Structure-set method: a dose plane within this many mm of a contour
        plane is used without interpolation (dicompyler-core uses 0.5).
    allow_different_frame : bool
        Structure-set method: skip the FrameOfReferenceUID check.

    Returns
    -------
    xarray.Dataset
        ``cumulative_dvh`` and ``differential_dvh`` over ``dose`` (cm³), and
        ``volume``, ``volume_in_dose`` (cm³), ``dmin``, ``dmax``, ``dmean``,
        ``d2``, ``d95``, ``d98`` (Gy); with a leading ``roi`` dim when several
        ROIs are asked for. Lazy when the inputs are Dask-backed.

    Raises
    ------
    SelectionError
        Unknown ROI; a single ROI without closed contours or with an empty mask.
    GeometryError
        Mask not on the dose grid; different frames of reference.
    """
    import xarray as xr

    from .rtstruct import StructureSet

    _dose_units_ok(dose)
    nbins = _nbins(dose, max_dose, bin_width)
    if isinstance(mask, StructureSet):
        from .rasterize import grid_axes

        axes = grid_axes(dose)
        dose = dose.compute()  # every ROI samples the dose: read it once
        single = roi is not None and not isinstance(roi, (list, tuple))
        numbers = [mask.roi_number(roi)] if single else (
            [mask.roi_number(r) for r in roi] if roi is not None else list(mask.rois.index))
        results = []
        for n in numbers:
            try:
                results.append(_struct_dvh(dose, mask, n, bin_width, nbins, snap, axes, allow_different_frame))
            except SelectionError as exc:
                if single:
                    raise
                warnings.warn(f"{exc}; skipped", DcmxrWarning, stacklevel=2)
        if single:
            return _with_metrics(results[0])
        return _with_metrics(xr.concat(results, dim="roi", combine_attrs="drop"))
    if isinstance(mask, xr.Dataset):
        names = list(mask.data_vars) if roi is None else ([roi] if not isinstance(roi, (list, tuple)) else list(roi))
        results = [_mask_dvh(dose, mask[n], bin_width, nbins) for n in names]
        return _with_metrics(xr.concat(results, dim="roi", combine_attrs="drop"))
    return _with_metrics(_mask_dvh(dose, mask, bin_width, nbins))
