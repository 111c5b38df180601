"""Add dose grids (beam or fraction doses) into one (``sum_doses``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import GeometryError


def _same_grid(a, b) -> bool:
    from .dose import _same_grid as same

    return same(a, b)


def sum_doses(doses: Any, *, like: Any = None, method: str = "linear"):
    """Sum several doses, resampling onto one grid where they differ.

    Parameters
    ----------
    doses : sequence of DataArray or Dataset
        Doses with dcmxr geometry in the same units and frame of reference (a
        Dataset from :func:`open_dose` sums its variables).
    like : xarray object, optional
        Target grid; default the first dose's grid (dicompyler-core also sums
        onto the first grid). Doses on another grid are resampled with
        :func:`dcmxr.transform.resample_like` (``method``), 0 outside their grid.
    method : {"linear", "nearest", "cubic"}
        Interpolation for resampled doses.

    Returns
    -------
    xarray.DataArray
        Lazy float32 (float64 if any input is) sum named ``dose`` with attrs
        ``dose_summation_type`` and ``summed_sop_instance_uids``.

    Raises
    ------
    ValueError
        Fewer than one dose, or different units.
    GeometryError
        Different frames of reference (from ``resample_like``).
    """
    import xarray as xr

    from ..transform import resample_like

    items = list(doses.data_vars.values()) if isinstance(doses, xr.Dataset) else list(doses)
    if not items:
        raise ValueError("sum_doses needs at least one dose")
    units = {d.attrs.get("units") for d in items}
    if len(units) > 1:
        raise ValueError(f"doses have different units {sorted(map(str, units))}; convert them first "
                         f"(a RELATIVE dose cannot be added to one in Gy)")
    target = items[0] if like is None else like
    frames = {d.attrs.get("frame_of_reference_uid") for d in items} - {None}
    if len(frames) > 1:
        raise GeometryError(f"doses are in different frames of reference {sorted(frames)}; they cannot be summed")
    total = None
    for d in items:
        if not _same_grid(target, d):
            d = resample_like(d, target, method, fill_value=0.0)
        d = d.drop_vars([c for c in d.coords if c not in ("x", "y", "z")])
        d = d.assign_coords({ax: target[ax] for ax in ("x", "y", "z")})
        total = d if total is None else total + d
    dtype = np.result_type(*[d.dtype for d in items], np.float32)
    attrs = {k: v for k, v in items[0].attrs.items() if k not in ("sop_instance_uid", "dose_grid_scaling",
                                                                  "referenced_rt_plan_sop_instance_uid")}
    if len(items) > 1:
        attrs["dose_summation_type"] = "MULTI_PLAN" if len({d.attrs.get("referenced_rt_plan_sop_instance_uid")
                                                             for d in items}) > 1 else "PLAN"
    attrs["summed_sop_instance_uids"] = [str(d.attrs.get("sop_instance_uid", "")) for d in items]
    return total.astype(dtype).rename("dose").assign_attrs(attrs)
