"""Exact reorientation: flips and axis permutations, no interpolation.

Conventions (decided here; the accessor and docs refer to this docstring)
------------------------------------------------------------
*Dim names keep their meaning as the affine's index axes.* After
``reorient(da, "RAS")`` the dims are still ``(..., "z", "y", "x", ...)`` and
``x`` is index axis 0 of the affine (the first letter of the code: it points
towards R), ``y`` index axis 1 (A) and ``z`` index axis 2 (S). So
``da.dcm.orientation == "RAS"`` and ``da.dcm.affine`` has R, A, S columns;
the dim named ``x`` is no longer necessarily the DICOM row direction (a
sagittal series reoriented to RAS has its slice axis in ``x``). Per-frame
coordinates (``sop_instance_uid``, ``slice_time``...) travel with their axis.

*A flip keeps coordinates increasing.* Flipping an axis reverses its index
order; the coordinate values are negated (``x' = -x[::-1]``) and the
``direction`` attr is negated, so every voxel keeps its world position
``x*dir_x + ...``, coordinate values stay increasing (``sel`` slices and
``searchsorted`` keep working) and the sign of an axis lives only in its
``direction``. :func:`reorient` also turns any decreasing coordinate into an
increasing one this way (a relabelling, no data moves).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import xarray as xr

from ..geometry.orientation import axis_codes, direction_matrix
from ._grid import AXES, SPATIAL_DIMS, grid_of, split_dims

__all__ = ["flip", "reorient"]

_PAIR = {"L": 0, "R": 0, "P": 1, "A": 1, "S": 2, "I": 2}


def _negate_axis(da: xr.DataArray, ax: str) -> xr.DataArray:
    """Negate coordinate values and direction of ``ax`` (same world positions)."""
    c = da.coords[ax]
    attrs = dict(c.attrs)
    attrs["direction"] = [float(-v) for v in np.asarray(attrs["direction"], dtype=np.float64).reshape(3)]
    vals = -np.asarray(c.values, dtype=np.float64)
    return da.assign_coords({ax: xr.Variable(c.dims, vals, attrs=attrs)})


def flip(da: xr.DataArray, dims: str | Iterable[str]) -> xr.DataArray:
    """Reverse spatial axes, keeping every voxel's world position.

    Parameters
    ----------
    da : xarray.DataArray
        An array with dcmxr geometry (``x``/``y``/``z`` coordinates with a
        ``direction`` attr). Dask-backed arrays stay lazy.
    dims : str or iterable of str
        The spatial dims to reverse, e.g. ``"x"`` or ``("x", "z")``.

    Returns
    -------
    xarray.DataArray
        The data reversed along ``dims``; each flipped coordinate is
        ``-values[::-1]`` with a negated ``direction``, so coordinates stay
        increasing and ``.dcm.affine`` maps every voxel to the same place.

    Raises
    ------
    GeometryError
        When the array carries no geometry.
    ValueError
        When a dim is not one of the array's spatial dims.
    """
    names = [dims] if isinstance(dims, str) else list(dims)
    grid_of(da, need_dims=False)  # validates geometry
    for d in names:
        if d not in AXES:
            raise ValueError(f"flip works on spatial dims x, y, z; got {d!r} (use da.isel({d}=slice(None, None, -1)))")
        if d not in da.dims:
            raise ValueError(f"{d!r} is not a dimension of this array (dims {da.dims}); nothing to flip")
    if not names:
        return da
    out = da.isel({d: slice(None, None, -1) for d in names})
    for d in names:
        out = _negate_axis(out, d)
    return out


def _parse_code(code: str) -> str:
    if not isinstance(code, str) or len(code) != 3:
        raise ValueError(f"orientation code must be 3 letters such as 'RAS' or 'LPS', got {code!r}")
    c = code.upper()
    if any(ch not in _PAIR for ch in c) or sorted(_PAIR[ch] for ch in c) != [0, 1, 2]:
        raise ValueError(
            f"orientation code {code!r} must use one letter of each pair L/R, P/A, S/I (e.g. 'RAS', 'LPS', 'PIR')"
        )
    return c


def _signed_codes(da: xr.DataArray) -> str:
    g = grid_of(da)
    signed = []
    for ax in AXES:
        v = g.values(ax)
        s = np.sign(v[-1] - v[0]) if len(v) > 1 and v[-1] != v[0] else 1.0
        signed.append(g.direction(ax) * s)
    return axis_codes(direction_matrix(*signed))


def reorient(da: xr.DataArray, code: str = "RAS") -> xr.DataArray:
    """Permute and flip axes so the affine's index axes point to ``code``.

    Exact (no interpolation): the result holds the same voxels in another
    order. Lazy arrays stay lazy (a transpose and reversed slices).

    Parameters
    ----------
    da : xarray.DataArray
        A volume with dims ``(..., "z", "y", "x"[, "c"])`` and dcmxr geometry.
    code : str
        Three letters, one of each pair L/R, P/A, S/I (any case): the
        anatomical direction that index axes 0, 1, 2 (dims ``x``, ``y``,
        ``z``) point towards. ``"RAS"`` gives nibabel's closest canonical
        orientation; ``"LPS"`` the DICOM/ITK one.

    Returns
    -------
    xarray.DataArray
        Dims keep their order and names; ``x``, ``y``, ``z`` now mean the
        axes pointing to ``code[0]``, ``code[1]``, ``code[2]``, so
        ``.dcm.orientation == code``. Coordinates are increasing; each
        ``direction`` is the (signed) unit vector of its index axis.
        Oblique axes are assigned to the nearest anatomical axis (the same
        rule as ``.dcm.orientation``).

    Raises
    ------
    GeometryError
        When the array is not a 3-D spatial volume.
    ValueError
        For an invalid code.
    """
    target = _parse_code(code)
    lead, trail = split_dims(da)
    grid_of(da)  # raises for non-spatial input
    current = _signed_codes(da)
    src_for = {}
    to_flip = []
    for k, letter in enumerate(target):
        j = next(i for i, ch in enumerate(current) if _PAIR[ch] == _PAIR[letter])
        src_for[AXES[k]] = AXES[j]
        if current[j] != letter:
            to_flip.append(AXES[j])
    out = flip(da, to_flip) if to_flip else da
    # relabel decreasing coordinates as increasing ones (no data change)
    for ax in AXES:
        v = np.asarray(out.coords[ax].values, dtype=np.float64)
        if len(v) > 1 and v[-1] < v[0]:
            out = _negate_axis(out, ax)
    mapping = {src: dst for dst, src in src_for.items() if src != dst}
    if mapping:
        tmp = {src: f"__dcmxr_{src}" for src in mapping}
        out = out.rename(tmp).rename({tmp[src]: dst for src, dst in mapping.items()})
        for dst in mapping.values():
            c = out.coords[dst]
            attrs = dict(c.attrs)
            if "long_name" in attrs:
                attrs["long_name"] = f"{dst} position along its direction (LPS)"
            out = out.assign_coords({dst: xr.Variable(c.dims, c.values, attrs=attrs)})
    out = out.transpose(*lead, *SPATIAL_DIMS, *trail)
    return out
