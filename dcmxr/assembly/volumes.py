"""Repeated volumes -> named dims (t, echo, b / dwi, phase, flip_angle, ...).

Frames at one slice position that differ in an acquisition attribute become
separate volumes; the attributes that vary between them become dims, with
their values as coordinates. Steps:

1. find the candidate attributes that vary *within* a position;
2. give every frame a volume key (the tuple of those values); frames with the
   same key at the same position are repeats in time (``t``, ordered by
   acquisition) unless a temporal index already tells them apart; repeats
   that no acquisition-order attribute orders (identical times, acquisition
   and instance numbers) are an error, never an arbitrary ``t``;
3. factor the set of keys into a product of per-attribute dims when it is a
   full grid; otherwise keep one positional dim (``dwi`` for diffusion,
   ``volume`` otherwise) with the attributes as coordinates;
4. order dims outermost acquisition loop first: the attribute that changes
   least often along the acquisition order is outermost.

The user can name the dims by DICOM keyword (``dims=("EchoTime",)``), which
replaces step 1. :func:`stack_differences` names the attributes that separate
the stacks of a series (for the several-stacks warning).
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
    # Philips (2005,1429) LABEL/CONTROL, or the standard per-frame ASL Context (0018,9257)
    ("asl", ("philips_asl_label", "asl_context"), None),
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
    if name in ("t", "echo", "asl") and present:
        return present[:1]  # index or identifier; echo time before echo number; one ASL label source
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

    Notes
    -----
    An ASL label (Philips (2005,1429) or the standard ASL Context) that is a
    function of the temporal position (one label per time point, interleaved
    label/control) is no dim of its own: it becomes a coordinate on ``t``.

    Raises
    ------
    AmbiguousSelectionError
        When frames at one position cannot be told apart -- the same values of
        the dim attributes, or (without a temporal index) the same values of
        every attribute that orders repeats in time -- naming the values found,
        the attributes that do differ, and the options ``dims=`` / ``where=``.
    """
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
    demoted = _labels_of_time(t, chosen) if not dims else []
    chosen = [c for c in chosen if c[1] not in demoted]
    out = _arrange(t, cluster, m, chosen, forced=bool(dims))
    for cols in demoted:
        _coord_per_volume(t, out, cols[0])
    return out


def _labels_of_time(t: pd.DataFrame, chosen: list) -> list[list[str]]:
    """ASL label columns that are a function of the temporal position (one label per time point).

    Interleaved label/control series number every volume with its own temporal
    position: label x time is then no grid, and the label belongs on ``t`` as a
    coordinate (as BIDS' aslcontext.tsv), not in a positional ``volume`` dim.
    """
    t_cols = next((cols for name, cols, _ in chosen if name == "t"), None)
    if t_cols is None:
        return []
    out = []
    for name, cols, _ in chosen:
        if name != "asl":
            continue
        pairs = {(_hashable(a), _hashable(b)) for a, b in zip(t[t_cols[0]], t[cols[0]])}
        times = [p[0] for p in pairs]
        if len(times) == len(set(times)):
            out.append(cols)
    return out


def _coord_per_volume(t: pd.DataFrame, out: Volumes, col: str) -> None:
    """Add column ``col`` (constant within a volume) as a coordinate on the time-carrying dim."""
    dim = "t" if "t" in out.dims else (out.dims[0] if len(out.dims) == 1 else None)
    if dim is None:
        return
    axis = out.dims.index(dim)
    idx = np.moveaxis(out.index, axis, 0).reshape(out.index.shape[axis], -1)
    values = [t[col].iloc[int(r[r >= 0][0])] if (r >= 0).any() else None for r in idx]
    out.extra[col] = ((dim,), values, {})


def _arrange(t: pd.DataFrame, cluster: np.ndarray, m: int, chosen: list, *, forced: bool) -> Volumes:
    """Volumes from the chosen (dim, columns, units) candidates (steps 2-4 of the module docstring)."""
    n = len(t)
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
        if "t" in names or forced:
            vals = {col: _shown(t[col]) for _, cols, _ in chosen for col in cols}
            raise AmbiguousSelectionError(
                f"{residual} frames share a position and the same values of {_listing(vals)}; "
                f"nothing tells them apart{_differing(t, groups)}: pick frames with where={{...}} or name "
                f"the attribute that separates them with dims=(...)"
            )
        tied = _tied_repeats(t, groups)
        if tied:
            vals = {col: _shown(t[col].iloc[tied]) for col in _ORDER_COLUMNS
                    if col != "frame" and col in t.columns and t[col].iloc[tied].notna().any()}
            raise AmbiguousSelectionError(
                f"{residual} frames share a position and every attribute that orders repeats in time "
                f"({_listing(vals) or 'none present'}); nothing tells them apart{_differing(t, groups)}: "
                f"pick frames with where={{...}} or name the attribute that separates them with dims=(...)"
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


#: columns that differ between any two files and never separate repeats
_IDENTITY = frozenset({"path", "frame", "pixel_offset", "pixel_length", "bit_offset", "deflate_from", "file_size",
                       "mtime", "sop_instance_uid", "instance_number"})


def _shown(values) -> list:
    """Distinct values of a column, plain Python, sorted, at most 6."""
    distinct = {_hashable(v.item() if isinstance(v, np.generic) else v) for v in values}
    out = sorted(distinct, key=lambda v: (v is None, _sort_value(v)))
    return out[:6] + (["..."] if len(out) > 6 else [])


def _listing(vals: dict) -> str:
    return ", ".join(f"{col}={v[0] if len(v) == 1 else v}" for col, v in vals.items())


def _tied_repeats(t: pd.DataFrame, groups: dict) -> list[int]:
    """Rows of the first group of repeats that no acquisition-order attribute orders (else [])."""
    cols = [c for c in _ORDER_COLUMNS if c != "frame" and c in t.columns]
    path = t["path"].tolist() if "path" in t.columns else [None] * len(t)
    frame = t["frame"].tolist() if "frame" in t.columns else [0] * len(t)
    order_keys = list(zip(*([_hashable(v) for v in t[c].tolist()] for c in cols))) if cols else [()] * len(t)
    for g in groups.values():
        if len(g) < 2:
            continue
        seen: dict = {}
        for i in g:
            key = order_keys[i]
            for j in seen.get(key, []):
                if path[i] != path[j] or frame[i] == frame[j]:  # frames of one file are ordered by frame number
                    return list(g)
            seen.setdefault(key, []).append(i)
    return []


def _differing(t: pd.DataFrame, groups: dict) -> str:
    """' (they differ only in ...)' for the first group of repeats."""
    g = next(g for g in groups.values() if len(g) > 1)
    sub = t.iloc[g]
    cols = [c for c in sub.columns if c not in _IDENTITY and not c.startswith("__")
            and sub[c].map(_hashable).nunique(dropna=False) > 1]
    if not cols:
        return " (they differ only in SOPInstanceUID / file: duplicate copies?)"
    return f" (attributes that differ between them: {_listing({c: _shown(sub[c]) for c in cols[:4]})})"


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


#: Attributes, beyond the dim candidates, that commonly tell the stacks of one series apart.
_STACK_HINTS = ("series_description", "sequence_name", "protocol_name", "acquisition_number")


def stack_differences(stacks: list[pd.DataFrame], opened: int = 0) -> str:
    """Sentence naming the acquisition attributes whose values separate the stacks of a series.

    Used in the warning for series split into several stacks (for example
    echoes with different matrix sizes) so the user sees which attribute to
    select on.

    Parameters
    ----------
    stacks : list of DataFrame
        The stacks (frame tables) of one series.
    opened : int
        Index of the stack that was opened.

    Returns
    -------
    str
        ``" They differ in echo_time (stack 0: 5.0; stack 1: 10.0): select one with
        where={'echo_time': 10.0}."`` or ``""`` when no single attribute separates them.
    """
    if len(stacks) < 2:
        return ""
    cols = [c for _, cs, _ in CANDIDATES for c in cs] + list(_STACK_HINTS)
    found = []
    for col in dict.fromkeys(cols):
        if not all(col in s.columns and s[col].notna().all() for s in stacks):
            continue
        sets = [{_hashable(v) for v in s[col]} for s in stacks]
        if sum(len(v) for v in sets) == len(set().union(*sets)):  # pairwise disjoint: it separates the stacks
            found.append((col, [_shown(s[col]) for s in stacks]))
    if not found:
        return ""
    parts = []
    for col, per in found[:3]:
        shown = "; ".join(f"stack {i}: {v[0] if len(v) == 1 else v}" for i, v in enumerate(per))
        parts.append(f"{col} ({shown})")
    col, per = found[0]
    other = next(i for i in range(len(stacks)) if i != opened)
    return f" They differ in {', '.join(parts)}: select one with where={{{col!r}: {per[other][0]!r}}}."
