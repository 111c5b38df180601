"""Repeated volumes -> named dims (t, echo, b / dwi, phase, flip_angle, ...).

Frames at one slice position that differ in an acquisition attribute become
separate volumes; the attributes that vary between them become dims, with
their values as coordinates. Steps:

1. find the candidate attributes that vary *within* a position;
2. give every frame a volume key (the tuple of those values); frames with the
   same key at the same position are repeats in time (``t``, ordered by
   acquisition) unless a temporal index already tells them apart;
3. factor the set of keys into a product of per-attribute dims when it is a
   full grid; otherwise keep one positional dim (``dwi`` for diffusion,
   ``volume`` otherwise) with the attributes as coordinates;
4. order dims outermost acquisition loop first: the attribute that changes
   least often along the acquisition order is outermost.

The user can name the dims by DICOM keyword (``dims=("EchoTime",)``), which
replaces step 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..catalog.fields import snake
from ..errors import AmbiguousSelectionError

#: (dim name, columns, units): candidates in naming priority order.
CANDIDATES: tuple[tuple[str, tuple[str, ...], str | None], ...] = (
    ("t", ("temporal_position_index", "temporal_position_identifier"), "s"),
    ("echo", ("echo_time", "echo_numbers"), "ms"),
    ("b", ("diffusion_b_value",), "s/mm**2"),
    ("gradient", ("diffusion_gradient_0", "diffusion_gradient_1", "diffusion_gradient_2",
                  "diffusion_gradient_vendor_0", "diffusion_gradient_vendor_1", "diffusion_gradient_vendor_2"), None),
    ("phase", ("nominal_percentage_of_cardiac_phase",), "percent"),
    ("flip_angle", ("flip_angle",), "degree"),
    ("inversion_time", ("inversion_time",), "ms"),
    ("asl", ("philips_asl_label", "asl_label"), None),
    ("image_type", ("image_type",), None),
)

#: dims of the time family: their coordinate is seconds from the first volume.
_TIME_COLUMNS = ("frame_acquisition_date_time", "acquisition_date_time", "acquisition_time", "content_time")

_ORDER_COLUMNS = ("frame_acquisition_date_time", "acquisition_date_time", "acquisition_time",
                  "content_time", "trigger_time", "acquisition_number", "instance_number", "frame")


@dataclass
class Volumes:
    """Result of :func:`volume_dims`.

    Attributes
    ----------
    dims : tuple of str
        Leading dims, outermost first (empty for a single volume).
    index : ndarray
        Shape ``sizes + (m,)``: table row per (volume..., position), -1 missing.
    coords : dict
        dim -> (values, attrs) for dim coordinates.
    extra : dict
        name -> (dims, values, attrs) for non-dim coordinates on the leading dims.
    dropped : list of int
        Rows left out (duplicates no attribute separates).
    """

    dims: tuple[str, ...]
    index: np.ndarray
    coords: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    dropped: list = field(default_factory=list)


def _hashable(v):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, (list, tuple)):
        return tuple(_hashable(x) for x in v)
    if isinstance(v, (np.floating, float)):
        return round(float(v), 6)
    if isinstance(v, np.integer):
        return int(v)
    return v


def seconds_of_day(value: object) -> float:
    """DICOM TM (HHMMSS.ffffff) or DT -> seconds of the day (NaN if unparsable)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return math.nan
    s = str(value).strip()
    if len(s) >= 14 and s[:8].isdigit():  # DT: YYYYMMDDHHMMSS
        s = s[8:]
    s = s.replace(":", "")
    try:
        hh = int(s[0:2])
        mm = int(s[2:4]) if len(s) >= 4 else 0
        ss = float(s[4:]) if len(s) > 4 else 0.0
    except ValueError:
        return math.nan
    return hh * 3600 + mm * 60 + ss


def acquisition_order(t: pd.DataFrame) -> np.ndarray:
    """Row order by acquisition (time columns first, then numbers)."""
    keys = []
    for col in reversed(_ORDER_COLUMNS):
        if col in t.columns and t[col].notna().any():
            if col in _TIME_COLUMNS:
                keys.append(np.array([seconds_of_day(v) for v in t[col]], dtype=float))
            else:
                keys.append(pd.to_numeric(t[col], errors="coerce").to_numpy(dtype=float))
    if not keys:
        return np.arange(len(t))
    keys = [np.where(np.isnan(k), np.inf, k) for k in keys]
    return np.lexsort(tuple(keys))


def _columns_for(name: str, cols: tuple[str, ...], t: pd.DataFrame) -> list[str]:
    present = [c for c in cols if c in t.columns and t[c].notna().any()]
    if name in ("t", "echo") and present:
        return present[:1]  # index or identifier; echo time before echo number
    return present


def _varying(t: pd.DataFrame, cluster: np.ndarray, cols: list[str]) -> bool:
    if not cols:
        return False
    keys = pd.Series([tuple(_hashable(t[c].iloc[i]) for c in cols) for i in range(len(t))])
    per = keys.groupby(cluster).nunique()
    return bool((per > 1).any())


def _changes(seq: list) -> int:
    return sum(1 for a, b in zip(seq, seq[1:]) if a != b)


def volume_dims(t: pd.DataFrame, cluster: np.ndarray, m: int, *, dims: tuple[str, ...] | None = None) -> Volumes:
    """Arrange frames into volumes and name the dims.

    Parameters
    ----------
    t : DataFrame
        Frames of one stack, index 0..n-1.
    cluster : ndarray of int
        Position index (0..m-1, ascending along the stack) of every frame.
    m : int
        Number of positions.
    dims : tuple of str, optional
        DICOM keywords (or table columns) to use as dims instead of the
        automatic choice.

    Raises
    ------
    AmbiguousSelectionError
        When frames at one position cannot be told apart and no time order
        separates them, naming the values found and the options ``dims=`` /
        ``where=``.
    """
    n = len(t)
    chosen: list[tuple[str, list[str], str | None]] = []
    if dims:
        for kw in dims:
            col = kw if kw in t.columns else snake(kw)
            if col not in t.columns:
                raise AmbiguousSelectionError(f"dims=: no attribute {kw!r} in these frames")
            name = next((d for d, cols, _ in CANDIDATES if col in cols), col)
            unit = next((u for d, cols, u in CANDIDATES if col in cols), None)
            chosen.append((name, [col], unit))
    else:
        for name, cols, unit in CANDIDATES:
            use = _columns_for(name, cols, t)
            if _varying(t, cluster, use):
                chosen.append((name, use, unit))
    order = acquisition_order(t)
    rank_in_acq = np.empty(n, dtype=np.int64)
    rank_in_acq[order] = np.arange(n)

    keys = [tuple(tuple(_hashable(t[c].iloc[i]) for c in cols) for _, cols, _ in chosen) for i in range(n)]
    # residual repeats: same key at the same position -> time
    groups: dict[tuple, list[int]] = {}
    for i in range(n):
        groups.setdefault((cluster[i], keys[i]), []).append(i)
    residual = max(len(g) for g in groups.values())
    rep = np.zeros(n, dtype=np.int64)
    for g in groups.values():
        g_sorted = sorted(g, key=lambda i: rank_in_acq[i])
        for r, i in enumerate(g_sorted):
            rep[i] = r
    names = [c[0] for c in chosen]
    if residual > 1:
        if "t" in names or dims:
            vals = {c[0]: sorted({k[j] for k in keys}, key=str)[:6] for j, c in enumerate(chosen)}
            raise AmbiguousSelectionError(
                f"{residual} frames share a position and the same values of {names} ({vals}); "
                f"nothing tells them apart: pick frames with where={{...}} or name the attribute "
                f"that separates them with dims=(...)"
            )
        chosen.insert(0, ("t", ["__repeat__"], "s"))
        keys = [((int(rep[i]),),) + keys[i] for i in range(n)]
        names = ["t"] + names
    if not chosen:
        index = np.full((1, m), -1, dtype=np.int64)
        for i in range(n):
            index[0, cluster[i]] = i
        return Volumes(dims=(), index=index[0])

    # combine b + gradient into a positional "dwi" dim when they do not factor
    uniq = [sorted({k[j] for k in keys}, key=lambda v: (v is None, str(v))) for j in range(len(chosen))]
    sizes = [len(u) for u in uniq]
    n_keys = len(set(keys))
    factor = int(np.prod(sizes)) == n_keys
    if not factor:
        joint_names = [nm for nm in names if nm in ("b", "gradient")]
        if len(joint_names) == 2 or ("b" in names and not factor):
            return _positional(t, chosen, keys, cluster, m, rank_in_acq, "dwi")
        return _positional(t, chosen, keys, cluster, m, rank_in_acq, "volume")
    if "gradient" in names:  # full grid of b x gradient is unusual; still keep it positional
        return _positional(t, chosen, keys, cluster, m, rank_in_acq, "dwi")

    # order values: numeric ascending (time by acquisition)
    for j, (name, cols, _) in enumerate(chosen):
        if cols == ["__repeat__"]:
            uniq[j] = sorted(uniq[j])
        else:
            uniq[j] = sorted(uniq[j], key=lambda v: _sort_value(v))
    # dim order: fewest changes along acquisition order first (outermost)
    acq = order
    change = [_changes([keys[i][j] for i in acq if cluster[i] == cluster[acq[0]]]) for j in range(len(chosen))]
    perm = sorted(range(len(chosen)), key=lambda j: (change[j], j))
    chosen = [chosen[j] for j in perm]
    uniq = [uniq[j] for j in perm]
    keys = [tuple(k[j] for j in perm) for k in keys]
    sizes = [len(u) for u in uniq]
    pos_of = [{v: i for i, v in enumerate(u)} for u in uniq]
    index = np.full(tuple(sizes) + (m,), -1, dtype=np.int64)
    for i in range(n):
        idx = tuple(pos_of[j][keys[i][j]] for j in range(len(chosen))) + (cluster[i],)
        index[idx] = i
    out = Volumes(dims=tuple(c[0] for c in chosen), index=index)
    for j, (name, cols, unit) in enumerate(chosen):
        values = [v[0] if isinstance(v, tuple) and len(v) == 1 else v for v in uniq[j]]
        out.coords[name] = (values, {"units": unit} if unit else {}, cols)
    _time_coords(t, out)
    return out


def _sort_value(v):
    inner = v[0] if isinstance(v, tuple) and len(v) == 1 else v
    if isinstance(inner, (int, float)):
        return (0, float(inner), "")
    return (1, 0.0, str(inner))


def _positional(t, chosen, keys, cluster, m, rank_in_acq, name) -> Volumes:
    """One positional dim over the distinct keys, in acquisition order."""
    first_rank: dict = {}
    for i, k in enumerate(keys):
        r = rank_in_acq[i]
        if k not in first_rank or r < first_rank[k]:
            first_rank[k] = r
    ordered = sorted(first_rank, key=lambda k: first_rank[k])
    pos = {k: j for j, k in enumerate(ordered)}
    index = np.full((len(ordered), m), -1, dtype=np.int64)
    for i, k in enumerate(keys):
        index[pos[k], cluster[i]] = i
    out = Volumes(dims=(name,), index=index)
    out.coords[name] = (np.arange(len(ordered)), {}, [])
    for j, (cname, cols, unit) in enumerate(chosen):
        if cols == ["__repeat__"]:
            continue
        for c_i, col in enumerate(cols):
            vals = [k[j][c_i] for k in ordered]
            out.extra[col] = ((name,), vals, {"units": unit} if unit and c_i == 0 else {})
    _time_coords(t, out)
    return out


def _time_coords(t: pd.DataFrame, out: Volumes) -> None:
    """Seconds from the first volume on ``t`` (replacing indices), when times are known."""
    if "t" not in out.dims:
        return
    axis = out.dims.index("t")
    idx = np.moveaxis(out.index, axis, 0)
    for col in _TIME_COLUMNS:
        if col in t.columns and t[col].notna().all():
            sec = np.array([seconds_of_day(v) for v in t[col]])
            if not np.isfinite(sec).all():
                continue
            per = np.array([np.min(sec[r[r >= 0]]) if (r >= 0).any() else np.nan
                            for r in idx.reshape(idx.shape[0], -1)])
            if np.all(np.isfinite(per)) and len(np.unique(per)) == len(per) and np.all(np.diff(per) > 0):
                values, attrs, cols = out.coords["t"]
                out.coords["t"] = (per - per[0], {"units": "s"}, cols)
                if cols and cols[0] != "__repeat__":
                    out.extra[cols[0]] = (("t",), list(values), {})
                return
    if "trigger_time" in t.columns and t["trigger_time"].notna().all():
        tt = t["trigger_time"].to_numpy(float) / 1000.0
        per = np.array([np.min(tt[r[r >= 0]]) for r in idx.reshape(idx.shape[0], -1)])
        if len(np.unique(per)) == len(per) and np.all(np.diff(per) > 0):
            values, attrs, cols = out.coords["t"]
            out.coords["t"] = (per, {"units": "s"}, cols)
            if cols and cols[0] != "__repeat__":
                out.extra[cols[0]] = (("t",), list(values), {})
            return
    values, attrs, cols = out.coords["t"]
    out.coords["t"] = (np.asarray(values if cols and cols[0] != "__repeat__" else np.arange(len(values))),
                       {"long_name": "volume index (no acquisition times in the headers)"}, cols)
