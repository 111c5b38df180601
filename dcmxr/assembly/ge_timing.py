"""GE slice timing: the RTIA timer and the Protocol Data Block, following dcm2niix.

GE writes no standard per-slice acquisition time. dcm2niix (console/
nii_dicom_batch.cpp, its GE/README.md and the dcm_qa_ge notes) uses, in
order:

1. Trigger Time (0018,1060) varying over the slices of a volume of an EPI
   series (the "epi" multiphase sequence), relative to the volume's first
   slice (cardiac trigger times of other sequences are not slice times);
2. the RTIA timer (0021,105E) varying over the slices. The first volume's
   values are unreliable, so the second volume's are used (relative to its
   first slice). Units changed between software versions (seconds in DV24,
   1/10000 s in 14.x): dcmxr takes seconds when the times fit in one TR,
   else 1/10000 s when those fit, else nothing;
3. the gzip-compressed Protocol Data Block (0025,101B): ``SLICEORDER``
   (0 sequential, 1 interleaved), ``MBACCEL`` (multiband factor, else the
   first value of (0043,10B6)), ``DELACQNOAV`` (group delay, ms, else
   (0043,107C) in s; 0 for a multiphase scan whose ``DELACQ`` is ``Minimum``), ``IOPT`` (``FMRI`` =
   BrainWave epiRT, ``MPh`` = multiphase, ``MPhVar`` = variable delays:
   unsupported, ``DIFF`` = diffusion: not reported, as by dcm2niix at the
   versions of our references) and the software release (before 27.0 R03
   the multiband excitation count is made odd). Times are then synthesised
   from TR, the slice count and the order: ``n_exc = ceil(n_slices / mb)``
   excitations, ``(TR - group delay) / n_exc`` apart, sequential or
   interleaved (even excitation indices first, counted from 0), repeated
   every ``n_exc`` slices; slice ``k`` is the k-th slice of the prescription
   (the InstanceNumber order of the first volume).

:func:`fill_slice_time` writes the result into a per-frame ``slice_time``
column (seconds), which the assembly exposes as the ``slice_time`` coordinate
on ``z`` exactly as it does for Siemens' CSA ``MosaicRefAcqTimes``.
"""

from __future__ import annotations

import gzip
import math
import re
import zlib
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["fill_slice_time", "protocol_block", "software_release", "synthesised_times", "rtia_times"]

_PDB_TAG = (0x0025, 0x101B)
_PDB_CREATOR = (0x0025, 0x0010)


# ---------------------------------------------------------------- Protocol Data Block
def parse_protocol_block(value: bytes) -> dict[str, str]:
    """Decode a GE Protocol Data Block value into ``{KEY: "value"}``.

    The value is a 4-byte little-endian length followed by a gzip member
    holding lines ``KEY "value"``. Empty on anything that does not decode.
    """
    raw = bytes(value)
    for start in (4, 0):
        blob = raw[start:]
        if blob[:3] != b"\x1f\x8b\x08":
            continue
        try:
            text = gzip.decompress(blob).decode("latin-1")
        except (OSError, EOFError, zlib.error):
            continue
        out: dict[str, str] = {}
        for line in text.splitlines():
            m = re.match(r'\s*([A-Za-z0-9_]+)\s+"(.*)"\s*$', line)
            if m:
                out.setdefault(m.group(1), m.group(2))
        return out
    return {}


def protocol_block(path: str) -> dict[str, str]:
    """The Protocol Data Block of one GE file (local path or fsspec URL); empty when absent."""
    try:
        import pydicom

        if "://" in str(path):
            import fsspec

            with fsspec.open(str(path), "rb") as f:
                ds = pydicom.dcmread(f, stop_before_pixels=True, specific_tags=[_PDB_CREATOR, _PDB_TAG])
        else:
            ds = pydicom.dcmread(str(path), stop_before_pixels=True, specific_tags=[_PDB_CREATOR, _PDB_TAG])
        creator = ds.get(_PDB_CREATOR)
        if creator is None or not str(creator.value).upper().startswith("GEMS_SERS"):
            return {}
        el = ds.get(_PDB_TAG)
        return parse_protocol_block(el.value) if el is not None and el.value else {}
    except Exception:  # advisory vendor data: any failure means "unknown"
        return {}


def software_release(versions: Any) -> tuple[float, bool]:
    """``(major, is_27r3)`` from GE SoftwareVersions, e.g. ``27\\LX\\MR Software release:DV26.0_R01_1725.a``.

    ``major`` is e.g. 26.0 (0.0 when unreadable); ``is_27r3`` is True from
    release 27.0 R03 on (multiband excitation order changed there).
    """
    s = "\\".join(map(str, versions)) if isinstance(versions, (list, tuple)) else str(versions or "")
    m = re.search(r"[A-Z]{2}(\d+)\.(\d+)_(R(\d+)|EA)", s)
    if not m:
        return 0.0, False
    major = int(m.group(1)) + 0.1 * int(m.group(2))
    release = int(m.group(4)) if m.group(4) else 0
    return major, bool(major >= 27.1 or (int(m.group(1)) == 27 and release >= 3))


def synthesised_times(n_slices: int, tr_ms: float, *, mb: int = 1, interleaved: bool = False,
                      is_27r3: bool = True, group_delay_ms: float = 0.0) -> np.ndarray:
    """Slice times (s) in prescription order from TR, order and multiband factor (dcm2niix's GE rule)."""
    mb = max(int(mb or 1), 1)
    n_exc = int(math.ceil(n_slices / mb))
    if mb > 1 and not is_27r3 and n_exc % 2 == 0:
        n_exc += 1
    step = (tr_ms - max(group_delay_ms, 0.0)) / n_exc
    if interleaved:
        n_odd = (n_exc - 1) // 2
        per = np.array([(i // 2) if i % 2 == 0 else n_odd + (i + 1) // 2 for i in range(n_exc)], float) * step
        if mb > 1 and is_27r3 and n_exc > 2 and n_exc % 2 == 0:
            per[[n_exc - 1, n_exc - 3]] = per[[n_exc - 3, n_exc - 1]]
    else:
        per = np.arange(n_exc, dtype=float) * step
    return per[np.arange(n_slices) % n_exc] / 1000.0


def _block_times(pdb: dict[str, str], n_slices: int, tr_ms: float, versions: Any, description: str,
                 mb_tag: Any, group_delay_s: Any = None) -> np.ndarray | None:
    if not pdb or n_slices < 2 or not tr_ms or tr_ms <= 0:
        return None
    iopt = pdb.get("IOPT", "").upper()
    try:
        order = int(float(pdb.get("SLICEORDER", "-1")))
    except ValueError:
        order = -1
    group_delay = _float(pdb.get("DELACQNOAV"))
    if group_delay is None:  # else GE's (0043,107C) "delay after slice group", in seconds
        group_delay = 1000.0 * (_float(group_delay_s) or 0.0)
    if "DIFF" in iopt:
        return None
    if "FMRI" in iopt:
        interleaved = order != 0
    elif "MPH" in iopt:
        if "MPHVAR" in iopt:
            return None
        if pdb.get("DELACQ", "").strip().lower() == "minimum":
            group_delay = 0.0
        interleaved = order > 0 if order >= 0 else "interleaved" in str(description or "").lower()
    elif order < 0:
        return None
    else:
        interleaved = order != 0
    mb = _int(pdb.get("MBACCEL")) or _int(mb_tag) or 1
    major, is_27r3 = software_release(versions)
    if mb > 1 and major < 26.0:
        return None
    return synthesised_times(n_slices, tr_ms, mb=mb, interleaved=interleaved, is_27r3=is_27r3,
                             group_delay_ms=group_delay)


def _float(v: Any) -> float | None:
    try:
        f = float(str(v).split("\\")[0])
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _int(v: Any) -> int | None:
    if isinstance(v, (list, tuple)):
        v = v[0] if v else None
    f = _float(v)
    return int(f) if f is not None else None


# ---------------------------------------------------------------- RTIA timer
def rtia_times(rtia_by_slice: np.ndarray, tr_ms: float) -> np.ndarray | None:
    """Slice times (s) from RTIA timer values, shape (n_volumes, n_slices) in slice order.

    Uses the second volume when there is one (the first volume's values are
    unreliable, per dcm2niix). Raw values are taken as seconds when they fit
    in one TR, else as 1/10000 s when those fit; None otherwise.
    """
    v = np.asarray(rtia_by_slice, dtype=float)
    if v.ndim != 2 or v.shape[1] < 2:
        return None
    row = v[1] if v.shape[0] > 1 else v[0]
    if not np.all(np.isfinite(row)):
        return None
    rel = row - row.min()
    if rel.max() <= 0:
        return None
    tr_s = tr_ms / 1000.0 if tr_ms and tr_ms > 0 else math.inf
    for scale in (1.0, 1e-4):
        if rel.max() * scale < tr_s:
            return rel * scale
    return None


# ---------------------------------------------------------------- per-frame column
def _slice_ranks(g: pd.DataFrame) -> tuple[np.ndarray, int] | None:
    """Prescription rank of each row's slice position, and the number of slices."""
    pos = [f"ipp_{i}" for i in range(3)]
    if not all(c in g.columns for c in pos) or g[pos].isna().any().any():
        return None
    key = np.round(g[pos].to_numpy(float), 3)
    _, inverse = np.unique(key, axis=0, return_inverse=True)
    inverse = np.asarray(inverse).ravel()
    n = int(inverse.max()) + 1
    if n < 2:
        return None
    inst = pd.to_numeric(g["instance_number"], errors="coerce").to_numpy(float) \
        if "instance_number" in g.columns else np.arange(len(g), dtype=float)
    if not np.all(np.isfinite(inst)):
        inst = np.arange(len(g), dtype=float)
    first = np.array([inst[inverse == k].min() for k in range(n)])
    rank_of_pos = np.empty(n, dtype=int)
    rank_of_pos[np.argsort(first, kind="stable")] = np.arange(n)
    return rank_of_pos[inverse], n


def _volume_of(g: pd.DataFrame, rank: np.ndarray, n: int) -> np.ndarray | None:
    """Volume index of each row: its occurrence number at its slice position, by InstanceNumber."""
    if len(g) % n:
        return None
    inst = pd.to_numeric(g["instance_number"], errors="coerce").to_numpy(float) \
        if "instance_number" in g.columns else np.arange(len(g), dtype=float)
    vol = np.empty(len(g), dtype=int)
    for k in range(n):
        rows = np.flatnonzero(rank == k)
        if len(rows) != len(g) // n:
            return None
        vol[rows[np.argsort(inst[rows], kind="stable")]] = np.arange(len(rows))
    return vol


def _trigger_times(g: pd.DataFrame, rank: np.ndarray, n: int, tr: float | None) -> np.ndarray | None:
    """Multiphase epi: Trigger Time (ms) of each slice relative to its volume's first slice."""
    tt = pd.to_numeric(g["trigger_time"], errors="coerce").to_numpy(float)
    vol = _volume_of(g, rank, n)
    if vol is None or not np.all(np.isfinite(tt)):
        return None
    rel = np.empty(len(g))
    for v in np.unique(vol):
        sel = vol == v
        rel[sel] = tt[sel] - tt[sel].min()
    if rel.max() <= 0 or (tr and rel.max() >= tr):
        return None
    return rel / 1000.0


def _series_times(g: pd.DataFrame) -> np.ndarray | None:
    """Per-row slice times (s) for one GE series, or None (3D acquisitions have no slice timing)."""
    if "mr_acquisition_type" in g.columns and (g["mr_acquisition_type"].astype(str).str.upper() == "3D").any():
        return None
    ranked = _slice_ranks(g)
    if ranked is None:
        return None
    rank, n = ranked
    tr = _float(g["repetition_time"].dropna().iloc[0]) if "repetition_time" in g and g["repetition_time"].notna().any() else None
    seq = str(g["scanning_sequence"].dropna().iloc[0]) if "scanning_sequence" in g and g["scanning_sequence"].notna().any() else ""
    epi = "EP" in seq.upper()
    if "trigger_time" in g.columns and g["trigger_time"].dropna().nunique() > 1:
        return _trigger_times(g, rank, n, tr) if epi else None  # cardiac trigger times are not slice times
    if "ge_rtia_timer" in g.columns:
        rt = pd.to_numeric(g["ge_rtia_timer"], errors="coerce").to_numpy(float)
        if np.all(np.isfinite(rt)) and np.unique(rt).size > 1:
            vol = _volume_of(g, rank, n)
            if vol is None:
                return None
            grid = np.full((vol.max() + 1, n), np.nan)
            grid[vol, rank] = rt
            times = rtia_times(grid, tr or 0.0)
            return None if times is None else times[rank]
    if not epi or "path" not in g.columns:
        return None
    pdb = protocol_block(str(g["path"].iloc[0]))
    versions = g["software_versions"].dropna().iloc[0] if "software_versions" in g and g["software_versions"].notna().any() else ""
    desc = g["series_description"].dropna().iloc[0] if "series_description" in g and g["series_description"].notna().any() else ""
    mb_tag = g["ge_multiband"].dropna().iloc[0] if "ge_multiband" in g and g["ge_multiband"].notna().any() else None
    delay = g["ge_group_delay"].dropna().iloc[0] if "ge_group_delay" in g and g["ge_group_delay"].notna().any() else None
    times = _block_times(pdb, n, tr or 0.0, versions, desc, mb_tag, delay)
    return None if times is None else times[rank]


def fill_slice_time(table: pd.DataFrame) -> pd.DataFrame:
    """Add GE slice times (s) as a ``slice_time`` column where the headers allow (in place).

    Parameters
    ----------
    table : DataFrame
        Frame rows (one series or more), after vendor normalisation.

    Returns
    -------
    DataFrame
        ``table``, with ``slice_time`` filled for the GE MR series whose
        timing the headers give (RTIA timer or Protocol Data Block).
    """
    if "manufacturer" not in table.columns:
        return table
    ge = table["manufacturer"].fillna("").astype(str).str.upper().str.startswith("GE").to_numpy().copy()
    if "modality" in table.columns:
        ge &= table["modality"].fillna("MR").astype(str).eq("MR").to_numpy()
    if "slice_time" in table.columns:
        ge &= table["slice_time"].isna().to_numpy()
    if not ge.any():
        return table
    key = (table["series_instance_uid"].astype(str).to_numpy() if "series_instance_uid" in table.columns
           else np.zeros(len(table), dtype=object))
    rows = np.flatnonzero(ge)
    for uid in pd.unique(key[rows]):
        pos = rows[key[rows] == uid]
        times = _series_times(table.iloc[pos])
        if times is None:
            continue
        if "slice_time" not in table.columns:
            table["slice_time"] = np.nan
        col = table.columns.get_loc("slice_time")
        table.iloc[pos, col] = np.round(times, 6)
    return table
