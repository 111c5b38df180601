"""``dcmxr.discover``: one row per series with what it is likely for (headers only).

Before loading anything, a perfusion or relaxometry pipeline needs to know
which series is the dynamic run, which are the variable-flip-angle
pre-contrast scans, which is the M0 of an ASL run, and which single-timepoint
series belong together (Siemens TWIST / TWIST-VIBE exports one series per time
point, with ``TT=12.3s`` at the end of the SeriesDescription). ``discover``
answers from the header table alone; it reads no pixel data.

``role_hint`` is a hint, decided by the first rule that matches:

==================  ==========================================================
``localizer``       ImageType contains LOCALIZER, or the description says
                    localizer/scout/survey/3-plane, or the frames have several
                    orientations
``dynamic_frame``   the description ends in ``TT=<seconds>s``; rows with the
                    same ``group_key`` are one dynamic acquisition
``m0``              the description names an M0 scan (``M0``, ``m0scan``)
``asl``             Philips ASL label/control tag, GE (0043,10A3) PSEUDOCONTINUOUS
                    (the perfusion-weighted pass of GE's 3D ASL; its PD reference
                    pass says CONTINUOUS and is ``m0``), or the description names
                    ASL (a word ending in ``asl``: ASL, pCASL, 3DpCASL, PASL)
``dwi``             a b-value above 0, or more than one b-value
``t1_look_locker``  several inversion times, or the description names
                    Look-Locker / MOLLI
``vfa``             several flip angles in the series, or series of one
                    study that differ only in flip angle (same description
                    apart from numbers, matrix, slices and TR): those share a
                    ``group_key``
``dynamic``         more than one temporal position, or repeated volumes with
                    one echo time and one image type
``unknown``         none of the above
==================  ==========================================================
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pandas as pd

ROLE_HINTS = ("dynamic", "dynamic_frame", "vfa", "t1_look_locker", "dwi", "asl", "m0", "localizer", "unknown")

#: ``... TT=12.3s`` at the end of a Siemens TWIST per-timepoint SeriesDescription.
TT_PATTERN = re.compile(r"[\s_]*TT\s*=\s*([0-9]*\.?[0-9]+)\s*s?\s*$", re.IGNORECASE)

_LOCALIZER = re.compile(r"locali[sz]er|scout|survey|3[\s_-]?plane|\bloc\b|aahead", re.IGNORECASE)
_M0 = re.compile(r"(^|[^a-z0-9])m0(scan)?([^a-z0-9]|$)", re.IGNORECASE)
_ASL = re.compile(r"asl(?![a-z])", re.IGNORECASE)
_LOOK_LOCKER = re.compile(r"look[\s_-]?locker|molli|shmolli|tapir", re.IGNORECASE)

COLUMNS = [
    "series_instance_uid", "series_number", "series_description", "modality", "manufacturer",
    "role_hint", "group_key", "tt", "shape", "n_frames", "n_slices", "n_temporal_positions",
    "flip_angle", "repetition_time", "echo_time", "inversion_time", "b_values", "study_instance_uid",
]


def tt_seconds(description: Any) -> float | None:
    """The ``TT=X.Xs`` time (s) at the end of a SeriesDescription, or None."""
    if not isinstance(description, str):
        return None
    m = TT_PATTERN.search(description)
    return float(m.group(1)) if m else None


def base_description(description: Any) -> str:
    """The description without its ``TT=X.Xs`` suffix."""
    if not isinstance(description, str):
        return ""
    return TT_PATTERN.sub("", description).strip()


def _numbers(col: pd.Series) -> list[float]:
    vals = pd.to_numeric(col, errors="coerce").dropna().to_numpy(dtype=float)
    return sorted({round(float(v), 6) for v in vals})


def _one_or_many(vals: list[float]) -> Any:
    if not vals:
        return None
    return vals[0] if len(vals) == 1 else tuple(vals)


def _first(col: pd.Series) -> Any:
    vals = col.dropna()
    if not len(vals):
        return None
    v = vals.iloc[0]
    return v.item() if isinstance(v, np.generic) else v


def _n_orientations(rows: pd.DataFrame) -> int:
    cols = [f"iop_{i}" for i in range(6)]
    if not all(c in rows for c in cols):
        return 1
    iop = rows[cols].dropna().round(3)
    return max(1, len(iop.drop_duplicates()))


def _n_slices(rows: pd.DataFrame) -> int:
    """Distinct slice positions along the stack normal (0.01 mm bins)."""
    cols_p = [f"ipp_{i}" for i in range(3)]
    cols_o = [f"iop_{i}" for i in range(6)]
    mosaic = pd.to_numeric(rows.get("siemens_mosaic_n", pd.Series(dtype=float)), errors="coerce").dropna()
    if len(mosaic):
        return int(mosaic.iloc[0])
    if not all(c in rows for c in cols_p + cols_o):
        return 1
    ok = rows[cols_p + cols_o].dropna()
    if ok.empty:
        return 1
    iop = ok[cols_o].to_numpy(dtype=float)[0]
    normal = np.cross(iop[:3], iop[3:])
    d = ok[cols_p].to_numpy(dtype=float) @ normal
    return int(len(np.unique(np.round(d / 0.01).astype(np.int64))))


def _in_plane(rows: pd.DataFrame) -> tuple[int | None, int | None]:
    r, c = _first(rows["rows"]), _first(rows["columns"])
    mosaic = pd.to_numeric(rows.get("siemens_mosaic_n", pd.Series(dtype=float)), errors="coerce").dropna()
    if len(mosaic) and r and c:
        tiles = math.ceil(math.sqrt(int(mosaic.iloc[0])))
        return int(r) // tiles, int(c) // tiles
    return (None if r is None else int(r)), (None if c is None else int(c))


def _temporal_positions(rows: pd.DataFrame, n_slices: int) -> int:
    counts = [1]
    for col in ("temporal_position_index", "temporal_position_identifier"):
        if col in rows:
            counts.append(int(pd.to_numeric(rows[col], errors="coerce").nunique()))
    if "number_of_temporal_positions" in rows:
        ntp = pd.to_numeric(rows["number_of_temporal_positions"], errors="coerce").max()
        if np.isfinite(ntp):
            counts.append(int(ntp))
    return max(counts)


def _summarise(rows: pd.DataFrame) -> dict[str, Any]:
    desc = _first(rows["series_description"]) if "series_description" in rows else None
    n_slices = _n_slices(rows)
    ny, nx = _in_plane(rows)
    mosaic = "siemens_mosaic_n" in rows and pd.to_numeric(rows["siemens_mosaic_n"], errors="coerce").notna().any()
    n_images = len(rows) * (n_slices if mosaic else 1)
    n_volumes = max(1, n_images // max(n_slices, 1))
    shape = (n_volumes, n_slices, ny, nx) if n_volumes > 1 else (n_slices, ny, nx)
    b = _numbers(rows["diffusion_b_value"]) if "diffusion_b_value" in rows else []
    return {
        "series_instance_uid": _first(rows["series_instance_uid"]),
        "series_number": _first(rows["series_number"]) if "series_number" in rows else None,
        "series_description": desc,
        "modality": _first(rows["modality"]) if "modality" in rows else None,
        "manufacturer": _first(rows["manufacturer"]) if "manufacturer" in rows else None,
        "study_instance_uid": _first(rows["study_instance_uid"]) if "study_instance_uid" in rows else None,
        "tt": tt_seconds(desc),
        "shape": shape,
        "n_frames": int(len(rows)),
        "n_slices": n_slices,
        "n_volumes": n_volumes,
        "n_temporal_positions": _temporal_positions(rows, n_slices),
        "flip_angle": _one_or_many(_numbers(rows["flip_angle"])) if "flip_angle" in rows else None,
        "repetition_time": _one_or_many(_numbers(rows["repetition_time"])) if "repetition_time" in rows else None,
        "echo_time": _one_or_many(_numbers(rows["echo_time"])) if "echo_time" in rows else None,
        "inversion_time": _one_or_many(_numbers(rows["inversion_time"])) if "inversion_time" in rows else None,
        "b_values": tuple(b) if b else None,
        "_image_type": "\\".join(rows["image_type"].dropna().astype(str).unique()) if "image_type" in rows else "",
        "_image_types": int(rows["image_type"].nunique()) if "image_type" in rows else 1,
        "_asl_label": any(c in rows and rows[c].notna().any() for c in ("philips_asl_label", "asl_context"))
                      and not ("asl_context" in rows and set(rows["asl_context"].dropna().astype(str)) == {"M_ZERO_SCAN"}),
        "_ge_asl": (str(rows["ge_asl_contrast"].dropna().iloc[0]).strip().upper()
                    if "ge_asl_contrast" in rows and rows["ge_asl_contrast"].notna().any() else ""),
        "_orientations": _n_orientations(rows),
    }


def _count(v: Any) -> int:
    return len(v) if isinstance(v, tuple) else (0 if v is None else 1)


def _role(s: dict[str, Any]) -> str:
    desc = s["series_description"] or ""
    if "LOCALIZER" in s["_image_type"].upper() or _LOCALIZER.search(desc) or s["_orientations"] > 1:
        return "localizer"
    if s["tt"] is not None:
        return "dynamic_frame"
    if _M0.search(desc) or s["_ge_asl"] == "CONTINUOUS":  # GE 3D ASL: the PD reference pass says CONTINUOUS
        return "m0"
    if s["_asl_label"] or s["_ge_asl"] == "PSEUDOCONTINUOUS" or _ASL.search(desc) or "\\ASL" in s["_image_type"].upper():
        return "asl"
    b = s["b_values"] or ()
    if any(v > 0 for v in b) or len(b) > 1:
        return "dwi"
    if _count(s["inversion_time"]) > 1 or _LOOK_LOCKER.search(desc):
        return "t1_look_locker"
    if _count(s["flip_angle"]) > 1:
        return "vfa"
    if s["n_temporal_positions"] > 1:
        return "dynamic"
    if s["n_volumes"] > 1 and _count(s["echo_time"]) <= 1 and s["_image_types"] <= 1:
        return "dynamic"  # repeated volumes that nothing but time tells apart
    return "unknown"


def _vfa_key(s: dict[str, Any]) -> tuple:
    desc = re.sub(r"\d+(\.\d+)?", "#", s["series_description"] or "").strip().lower()
    return (s["study_instance_uid"], desc, s["shape"], s["repetition_time"])


def discover(source: Any, *, strict: bool = False, storage_options: dict | None = None) -> pd.DataFrame:
    """One row per series, with a role hint for perfusion and relaxometry pipelines.

    Parameters
    ----------
    source : path, URL, glob, DICOMDIR, list of them, or a table from :func:`dcmxr.scan`
        Where the series live. Only headers are read.
    strict : bool
        Raise on unreadable files instead of skipping them with a warning.
    storage_options : dict, optional
        fsspec options for URLs.

    Returns
    -------
    pandas.DataFrame
        Columns ``series_instance_uid, series_number, series_description,
        modality, manufacturer, role_hint, group_key, tt, shape, n_frames,
        n_slices, n_temporal_positions, flip_angle, repetition_time,
        echo_time, inversion_time, b_values, study_instance_uid``.
        ``shape`` is ``(volumes, slices, rows, columns)`` (or without
        volumes for one volume); times are ms (as the DICOM headers), flip
        angle degrees, b-values s/mm**2; a column holds one number when the
        series has one value and a tuple when it has several. ``tt`` is the
        ``TT=`` time (s) of a per-timepoint export, and ``group_key`` names
        the group of ``dynamic_frame`` (or cross-series ``vfa``) rows that
        belong together. ``result.attrs["frames"]`` keeps the frame table, so
        the rows can be passed straight to :func:`dcmxr.open_perfusion`.
        Rows are ordered by study and series number, the members of a
        group together in ``tt`` order.
    """
    from ..assembly.vendor import normalize
    from ..backend.api import _as_table
    from ..backend.registry import remember

    table = _as_table(source, storage_options, strict)
    if table.empty or "series_instance_uid" not in table.columns:
        out = pd.DataFrame(columns=COLUMNS)
        out.attrs["frames"] = table
        return out
    table = normalize(table)
    remember(table)
    summaries = []
    for _, rows in table.groupby(table["series_instance_uid"].fillna(""), sort=False):
        s = _summarise(rows)
        s["role_hint"] = _role(s)
        s["group_key"] = None
        if s["role_hint"] == "dynamic_frame":
            s["group_key"] = f"{base_description(s['series_description'])}@{s['study_instance_uid']}"
        summaries.append(s)
    _group_vfa(summaries)
    out = pd.DataFrame.from_records(summaries)
    # members of a group sit together, at their first series number, in TT order
    key = out["group_key"].fillna(out["series_instance_uid"])
    out["_order"] = pd.to_numeric(out["series_number"], errors="coerce").groupby(key).transform("min")
    out = out.sort_values(["study_instance_uid", "_order", "tt", "series_number"], na_position="last", kind="stable")
    out = out[COLUMNS].reset_index(drop=True)
    out.attrs["frames"] = table
    return out


def _group_vfa(summaries: list[dict]) -> None:
    """Single-flip-angle series of one protocol that differ only in flip angle -> one vfa group."""
    groups: dict[tuple, list[dict]] = {}
    for s in summaries:
        if s["role_hint"] in ("unknown", "dynamic") and _count(s["flip_angle"]) == 1 and s["n_volumes"] == 1:
            groups.setdefault(_vfa_key(s), []).append(s)
    for key, members in groups.items():
        angles = {m["flip_angle"] for m in members}
        if len(members) > 1 and len(angles) == len(members):
            name = re.sub(r"\d+(\.\d+)?", "#", members[0]["series_description"] or "").strip()
            for m in members:
                m["role_hint"] = "vfa"
                m["group_key"] = f"{name}@{m['study_instance_uid']}"
