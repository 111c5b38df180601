"""One series' frame table -> stacks -> an N-D grid of frames with geometry.

The result, :class:`Grid`, says which table row fills each position of the
frame grid (leading dims such as ``t`` plus ``z``), the spatial coordinates and
directions, and the per-frame values that become non-dim coordinates. It knows
nothing of xarray or Dask; :mod:`dcmxr.backend.build` turns it into a
DataArray.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import GeometryError, GeometryWarning, SelectionError
from ..geometry.coords import stack_coords
from ..geometry.orientation import row_col_normal
from ..geometry.stacking import find_repeats, group_stacks, sort_stack, spacing_regularity
from .mosaic import expand_mosaic
from .vendor import normalize
from .volumes import seconds_of_day, volume_dims

#: Columns whose values order repeated volumes at one position (first wins).
_VOLUME_ORDER = (
    "temporal_position_index",
    "temporal_position_identifier",
    "frame_acquisition_date_time",
    "acquisition_date_time",
    "trigger_time",
    "acquisition_time",
    "content_time",
    "acquisition_number",
    "instance_number",
    "frame",
)

#: Per-frame columns offered as non-dim coordinates when they vary.
FRAME_COORDS = (
    "sop_instance_uid",
    "frame",
    "instance_number",
    "acquisition_number",
    "acquisition_time",
    "content_time",
    "frame_acquisition_date_time",
    "trigger_time",
    "temporal_position_identifier",
    "temporal_position_index",
    "echo_time",
    "echo_numbers",
    "repetition_time",
    "inversion_time",
    "flip_angle",
    "diffusion_b_value",
    "slice_location",
    "slice_time",
    "image_type",
    "rescale_slope",
    "rescale_intercept",
    "philips_scale_slope",
    "philips_scale_intercept",
    "real_world_value_slope",
    "real_world_value_intercept",
    "in_stack_position_number",
    "stack_id",
)

_POS = [f"ipp_{i}" for i in range(3)]
_IOP = [f"iop_{i}" for i in range(6)]


@dataclass
class Grid:
    """Frames of one stack arranged on a grid.

    Attributes
    ----------
    table : DataFrame
        The stack's rows (after MOSAIC expansion), index 0..n-1.
    index : ndarray of int
        Shape ``lead_shape``: the table row of each grid position, -1 if
        missing.
    lead_dims : tuple of str
        Names of the frame-grid dims, e.g. ``("t", "z")`` or ``("z",)``.
    coords : dict
        ``x``, ``y``, ``z`` coordinate values (mm) and ``dir_x``... directions;
        empty when the frames carry no geometry.
    lead_coords : dict
        dim name -> (values, attrs) for leading dims other than ``z``.
    lead_extra : dict
        name -> (dims, values, attrs): non-dim coords on the leading dims.
    regular : bool
        True when ``z`` is evenly spaced with no gaps.
    excluded : DataFrame
        Rows of the series that are not in this grid (other stacks, extra
        duplicates), with a ``reason`` column.
    """

    table: pd.DataFrame
    index: np.ndarray
    lead_dims: tuple[str, ...]
    coords: dict = field(default_factory=dict)
    lead_coords: dict = field(default_factory=dict)
    lead_extra: dict = field(default_factory=dict)
    regular: bool = True
    tilt_deg: float = 0.0
    excluded: pd.DataFrame | None = None


def _has_geometry(t: pd.DataFrame) -> np.ndarray:
    cols = _POS + _IOP + ["pixel_spacing_0", "pixel_spacing_1"]
    if not all(c in t.columns for c in cols):
        return np.zeros(len(t), dtype=bool)
    return np.isfinite(t[cols].to_numpy(dtype=float)).all(axis=1)


def _format_key(t: pd.DataFrame) -> pd.Series:
    cols = [c for c in ("rows", "columns", "samples_per_pixel", "bits_allocated",
                        "photometric_interpretation") if c in t.columns]
    return t[cols].astype(str).agg("|".join, axis=1)


def split_stacks(series: pd.DataFrame) -> list[pd.DataFrame]:
    """Split one series' rows into stacks, largest first.

    Frames go together when they share size, pixel format and orientation
    (and pixel spacing); frames without geometry form their own stack.
    """
    t = normalize(expand_mosaic(series.reset_index(drop=True)))
    groups: list[np.ndarray] = []
    geo = _has_geometry(t)
    fmt = _format_key(t)
    for key in pd.unique(fmt):
        members = np.flatnonzero((fmt == key).to_numpy())
        with_geo = members[geo[members]]
        without = members[~geo[members]]
        if len(with_geo):
            sub = t.iloc[with_geo]
            for g in group_stacks(
                sub[_POS].to_numpy(float),
                sub[_IOP].to_numpy(float),
                pixel_spacing=sub[["pixel_spacing_0", "pixel_spacing_1"]].to_numpy(float),
            ):
                groups.append(with_geo[g])
        if len(without):
            groups.append(without)
    groups.sort(key=lambda g: (-len(g), g[0]))
    return [t.iloc[g].reset_index(drop=True) for g in groups]


def _sort_key_frame(t: pd.DataFrame) -> list[str]:
    return [c for c in _VOLUME_ORDER if c in t.columns and t[c].notna().any()]


def _volume_times(t: pd.DataFrame, index: np.ndarray) -> np.ndarray | None:
    """Seconds from the first volume, or None when no timing is known."""
    for col in ("frame_acquisition_date_time", "acquisition_date_time", "acquisition_time", "content_time"):
        if col in t.columns and t[col].notna().all():
            sec = np.array([seconds_of_day(v) for v in t[col]])
            if np.isfinite(sec).all():
                per_vol = np.array([np.nanmin(sec[row[row >= 0]]) if (row >= 0).any() else np.nan
                                    for row in index])
                if len(np.unique(per_vol)) == len(per_vol):
                    return per_vol - per_vol[0]
    if "trigger_time" in t.columns and t["trigger_time"].notna().all():
        tt = t["trigger_time"].to_numpy(float) / 1000.0
        per_vol = np.array([np.min(tt[row[row >= 0]]) for row in index])
        if len(np.unique(per_vol)) == len(per_vol):
            return per_vol
    return None


def assemble(stack: pd.DataFrame, *, dims: tuple[str, ...] | None = None,
             fill_missing: bool = False) -> Grid:
    """Arrange one stack's frames on a grid.

    Parameters
    ----------
    stack : DataFrame
        Rows of one stack (see :func:`split_stacks`).
    dims : tuple of str, optional
        DICOM keywords to use as leading dims (see :mod:`.volumes`).
    fill_missing : bool
        Accept N-D grids with missing frames (read as 0) instead of raising.

    Raises
    ------
    GeometryError
        Frames missing from a multi-volume grid (unless ``fill_missing``).

    Returns
    -------
    Grid
    """
    t = stack.reset_index(drop=True)
    n = len(t)
    excluded = []
    if not _has_geometry(t).all():
        warnings.warn(
            "frames carry no ImagePositionPatient/ImageOrientationPatient/PixelSpacing: "
            "dims are ('frame', 'y', 'x') without spatial coordinates (no geometry in mm)",
            GeometryWarning,
            stacklevel=3,
        )
        keys = _sort_key_frame(t)
        order = np.lexsort(tuple(pd.to_numeric(t[k], errors="coerce").fillna(0).to_numpy()
                                 for k in reversed(keys))) if keys else np.arange(n)
        return Grid(table=t, index=order.astype(np.int64), lead_dims=("frame",), regular=True)

    iop = t[_IOP].to_numpy(float)[0]
    _, _, normal = row_col_normal(iop)
    pos = t[_POS].to_numpy(float)
    order, dist = sort_stack(pos, normal)
    rep = find_repeats(dist)
    m = len(rep.unique)
    cluster = np.empty(len(t), dtype=np.int64)
    cluster[order] = rep.index
    vols = volume_dims(t, cluster, m, dims=dims)
    only_repeat = vols.dims == ("t",) and vols.coords["t"][2] == ["__repeat__"]
    if not rep.uniform and (not vols.dims or only_repeat):
        index = _uneven_repeats(t, order, rep, m, excluded, fill_missing)
        vols = None
    else:
        index = vols.index
        missing = int((index < 0).sum())
        if missing:
            _report_missing(t, vols.dims, vols.coords, index, fill_missing)
    flat = index.reshape(-1, m)
    first_pos = np.array([pos[flat[:, c][flat[:, c] >= 0][0]] for c in range(m)])
    ps = t[["pixel_spacing_0", "pixel_spacing_1"]].to_numpy(float)[0]
    rows, cols = int(t["rows"].iloc[0]), int(t["columns"].iloc[0])
    coords = stack_coords(first_pos[0], iop, ps, rows, cols, first_pos)
    tilt = float(np.degrees(np.arccos(np.clip(abs(coords["dir_z"] @ normal), -1, 1))))
    regular = True
    if m > 1:
        reg = spacing_regularity(coords["z"])
        regular = reg.regular
        if not reg.regular:
            miss = reg.missing.tolist()
            shown = f"{miss[:8]}{' ...' if len(miss) > 8 else ''}"
            what = (f"{len(miss)} missing slice(s) at grid index {shown}"
                    if reg.on_grid else f"uneven slice spacing (steps {np.round(reg.steps, 4).tolist()[:8]} mm)")
            warnings.warn(
                f"{what}: z is a non-uniform coordinate and the grid has no single affine",
                GeometryWarning,
                stacklevel=3,
            )
    dropped_rows = pd.concat(excluded, ignore_index=True) if excluded else None
    if vols is None:  # uneven repeats without a separating attribute
        if index.shape[0] == 1:
            return Grid(table=t, index=index[0], lead_dims=("z",), coords=coords, regular=regular,
                        tilt_deg=tilt, excluded=dropped_rows)
        lead = {}
        times = _volume_times(t, index)
        if times is not None:
            lead["t"] = (times, {"units": "s"})
        return Grid(table=t, index=index, lead_dims=("t", "z"), coords=coords, lead_coords=lead,
                    regular=regular, tilt_deg=tilt, excluded=dropped_rows)
    lead = {d: (v, a) for d, (v, a, _cols) in vols.coords.items()}
    return Grid(table=t, index=index, lead_dims=vols.dims + ("z",), coords=coords, lead_coords=lead,
                lead_extra=vols.extra, regular=regular, tilt_deg=tilt, excluded=dropped_rows)


def _report_missing(t: pd.DataFrame, dims: tuple, coords: dict, index: np.ndarray, fill_missing: bool) -> None:
    """Frames missing from an N-D grid: an error naming them, or a warning with fill_missing."""
    holes = np.argwhere(index < 0)
    described = []
    for h in holes[:5]:
        parts = []
        for d, i in zip(dims, h[:-1]):
            values = coords[d][0] if d in coords else None
            parts.append(f"{d}={values[i] if values is not None and len(values) > i else i}")
        parts.append(f"z index {h[-1]}")
        described.append("(" + ", ".join(parts) + ")")
    more = f" and {len(holes) - 5} more" if len(holes) > 5 else ""
    what = f"{len(holes)} frame(s) of the {'x'.join(map(str, index.shape))} grid {tuple(dims) + ('z',)} are missing: {', '.join(described)}{more}"
    if not fill_missing:
        raise GeometryError(
            f"{what}. Drop the incomplete volumes with where={{...}}, choose other dims with dims=(...), "
            f"or pass fill_missing=True to read them as 0"
        )
    warnings.warn(f"{what}; read as the fill value 0 (fill_missing=True)", GeometryWarning, stacklevel=4)


def _uneven_repeats(t: pd.DataFrame, order: np.ndarray, rep, m: int, excluded: list,
                    fill_missing: bool = False) -> np.ndarray:
    """Positions hold different numbers of frames and no attribute separates them.

    The most common count is the number of volumes; positions with more frames keep the
    first k in acquisition order (the rest are reported), positions with fewer have
    missing frames.
    """
    counts = rep.counts
    keys = _sort_key_frame(t)
    values, freq = np.unique(counts, return_counts=True)
    k = int(values[np.argmax(freq)])
    index = np.full((k, m), -1, dtype=np.int64)
    dropped: list[int] = []
    for c in range(m):
        members = order[rep.index == c]
        if len(members) > 1 and keys:
            sub = t.iloc[members]
            vals = [pd.to_numeric(sub[kk], errors="coerce").fillna(np.inf).to_numpy()
                    if kk not in ("frame_acquisition_date_time", "acquisition_date_time")
                    else sub[kk].astype(str).to_numpy() for kk in reversed(keys)]
            members = members[np.lexsort(tuple(vals))]
        index[: min(len(members), k), c] = members[:k]
        dropped.extend(int(i) for i in members[k:])
    missing = int((index < 0).sum())
    parts = []
    if dropped:
        inst = t["instance_number"].iloc[dropped].tolist()[:8] if "instance_number" in t else dropped[:8]
        parts.append(f"{len(dropped)} duplicate frame(s) at already-filled positions were left out "
                     f"(instance numbers {inst})")
        excluded.append(t.iloc[dropped].assign(reason="duplicate position"))
    if missing:
        if k > 1 and not fill_missing:
            _report_missing(t, ("t",), {}, index, fill_missing)
        parts.append(f"{missing} frame(s) are missing and read as the fill value 0")
    warnings.warn(
        f"positions hold different numbers of frames ({counts.min()}..{counts.max()}, "
        f"{k} volume(s) assumed): " + "; ".join(parts),
        GeometryWarning,
        stacklevel=4,
    )
    return index


def choose_stack(stacks: list[pd.DataFrame], stack: int | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pick a stack (default: the largest) and report the others."""
    if not stacks:
        raise SelectionError("the series holds no frames with pixel data")
    idx = 0 if stack is None else stack
    if not 0 <= idx < len(stacks):
        raise SelectionError(f"stack={stack} out of range: the series has {len(stacks)} stacks")
    others = [s.assign(stack=i) for i, s in enumerate(stacks) if i != idx]
    excluded = pd.concat(others, ignore_index=True) if others else stacks[idx].iloc[0:0]
    if others and stack is None:
        desc = ", ".join(
            f"stack {i}: {len(s)} frame(s) {s['rows'].iloc[0]}x{s['columns'].iloc[0]}"
            + (" (no geometry)" if not _has_geometry(s).all() else "")
            for i, s in enumerate(stacks) if i != idx
        )
        from .volumes import stack_differences

        warnings.warn(
            f"the series holds {len(stacks)} stacks (localizers, other orientations or sizes); "
            f"opened the largest ({len(stacks[idx])} frames, {stacks[idx]['rows'].iloc[0]}x"
            f"{stacks[idx]['columns'].iloc[0]}); not included: {desc}. "
            f"Pick another with stack=<index>." + stack_differences(stacks, idx),
            GeometryWarning,
            stacklevel=3,
        )
    return stacks[idx], excluded
