"""Assertions for tests: geometry of xarray objects."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["assert_geometry_equal"]

SPATIAL_DIMS = ("z", "y", "x")


def assert_geometry_equal(a: Any, b: Any, atol: float = 1e-4) -> None:
    """Assert two DataArrays/Datasets carry the same spatial geometry.

    Compares, for each of ``z``, ``y``, ``x`` present as a coordinate on
    either object (dim or scalar coordinate, e.g. after ``isel(z=5)``), the
    coordinate values (within ``atol`` mm), their ``direction`` attrs
    (within ``atol``) and their ``units`` attrs (when both set).

    Parameters
    ----------
    a, b : xarray.DataArray or xarray.Dataset
        Objects to compare.
    atol : float
        Absolute tolerance on coordinate values (mm) and direction cosines.

    Raises
    ------
    AssertionError
        Naming the first coordinate that differs and how.
    """
    import xarray  # noqa: F401  (the objects are xarray; fail clearly if it is missing)

    for name in SPATIAL_DIMS:
        in_a, in_b = name in a.coords, name in b.coords
        if not in_a and not in_b:
            continue
        if in_a != in_b:
            raise AssertionError(f"coordinate {name!r} present only in {'a' if in_a else 'b'}")
        ca, cb = a.coords[name], b.coords[name]
        va = np.asarray(ca.values, dtype=np.float64)
        vb = np.asarray(cb.values, dtype=np.float64)
        if va.shape != vb.shape:
            raise AssertionError(f"coordinate {name!r}: shapes differ, {va.shape} vs {vb.shape}")
        if va.size and not np.allclose(va, vb, rtol=0, atol=atol):
            worst = float(np.max(np.abs(va - vb)))
            raise AssertionError(
                f"coordinate {name!r}: values differ by up to {worst:.6g} mm (atol={atol:g})"
            )
        da_, db_ = ca.attrs.get("direction"), cb.attrs.get("direction")
        if (da_ is None) != (db_ is None):
            raise AssertionError(
                f"coordinate {name!r}: 'direction' attr present only in {'a' if da_ is not None else 'b'}"
            )
        if da_ is not None:
            ua = np.asarray(da_, dtype=np.float64).reshape(-1)
            ub = np.asarray(db_, dtype=np.float64).reshape(-1)
            if ua.shape != ub.shape or not np.allclose(ua, ub, rtol=0, atol=atol):
                raise AssertionError(
                    f"coordinate {name!r}: directions differ, {ua.tolist()} vs {ub.tolist()} (atol={atol:g})"
                )
        ua_, ub_ = ca.attrs.get("units"), cb.attrs.get("units")
        if ua_ is not None and ub_ is not None and ua_ != ub_:
            raise AssertionError(f"coordinate {name!r}: units differ, {ua_!r} vs {ub_!r}")
