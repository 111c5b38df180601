"""Series in a frame table: the listing users see, and picking one."""

from __future__ import annotations

import pandas as pd

from ..errors import AmbiguousSelectionError, SelectionError

_KEY = "series_instance_uid"


def _first(col: pd.Series):
    vals = col.dropna()
    return vals.iloc[0] if len(vals) else None


def list_series(table: pd.DataFrame) -> pd.DataFrame:
    """One row per series: UID, number, description, modality, size.

    Parameters
    ----------
    table : DataFrame
        A frame table from :func:`dcmxr.scan`.

    Returns
    -------
    DataFrame
        Columns ``series_instance_uid, series_number, series_description,
        modality, rows, columns, frames, files, study_instance_uid,
        patient_id``; ordered by study, then series number.
    """
    if table.empty or _KEY not in table.columns:
        return pd.DataFrame(columns=[_KEY, "series_number", "series_description", "modality",
                                     "rows", "columns", "frames", "files"])
    cols = ["series_number", "series_description", "modality", "rows", "columns",
            "study_instance_uid", "patient_id"]
    t = table[[c for c in cols + [_KEY, "path"] if c in table.columns]].copy()
    for c in cols:
        if c not in t.columns:
            t[c] = None
    t[_KEY] = t[_KEY].fillna("")
    g = t.groupby(_KEY, sort=False, dropna=False)
    out = g[cols].first()  # first non-missing value per series
    out["frames"] = g.size()
    out["files"] = g["path"].nunique()
    out = out[["series_number", "series_description", "modality", "rows", "columns", "frames", "files",
               "study_instance_uid", "patient_id"]].reset_index()
    out = out.sort_values(["study_instance_uid", "series_number", _KEY], na_position="last", kind="stable")
    return out.reset_index(drop=True)


def _describe(listing: pd.DataFrame) -> str:
    lines = []
    for i, r in listing.iterrows():
        lines.append(
            f"  [{i}] number={r['series_number']!s:>5} modality={r['modality']!s:<5} "
            f"{r['rows']}x{r['columns']}x{r['frames']} frames "
            f"description={r['series_description']!r} uid={r[_KEY]}"
        )
    return "\n".join(lines)


def select_series(table: pd.DataFrame, series: str | int | None = None) -> pd.DataFrame:
    """Rows of one series.

    Parameters
    ----------
    table : DataFrame
    series : str or int, optional
        A SeriesInstanceUID, a SeriesNumber (int), a SeriesDescription
        (exact, then case-insensitive substring), or a position in
        :func:`list_series` order (int, when no SeriesNumber matches).
        None selects the only series.

    Raises
    ------
    AmbiguousSelectionError
        Several series match; the message lists them and how to pick one.
    SelectionError
        Nothing matches.
    """
    if isinstance(series, str) and _KEY in table.columns:
        hit = table[_KEY] == series
        if hit.any():  # fast path: an exact SeriesInstanceUID
            return table[hit]
    listing = list_series(table)
    if listing.empty:
        skipped = table.attrs.get("skipped") or []
        why = ""
        if skipped:
            why = f"; {len(skipped)} file(s) were skipped, e.g. {skipped[0]['path']} ({skipped[0]['reason']})"
        raise SelectionError(f"no image series found in the source{why}")
    how = ("pick one with series=<SeriesInstanceUID>, series=<SeriesNumber as int>, "
           "series=<SeriesDescription>, or series=<index in the list>")
    if series is None:
        if len(listing) == 1:
            uid = listing[_KEY].iloc[0]
        else:
            raise AmbiguousSelectionError(
                f"the source holds {len(listing)} series; {how}:\n{_describe(listing)}"
            )
    else:
        uid = _match(listing, series, how)
    return table[table[_KEY].fillna("") == uid]


def _match(listing: pd.DataFrame, series: str | int, how: str) -> str:
    if isinstance(series, str):
        hits = listing[listing[_KEY] == series]
        if len(hits) == 0:
            hits = listing[listing["series_description"].fillna("") == series]
        if len(hits) == 0:
            desc = listing["series_description"].fillna("").str.lower()
            hits = listing[desc.str.contains(series.lower(), regex=False)]
        if len(hits) == 0 and series.isdigit():
            return _match(listing, int(series), how)
    elif isinstance(series, int) and not isinstance(series, bool):
        hits = listing[listing["series_number"] == series]
        if len(hits) == 0 and 0 <= series < len(listing):
            hits = listing.iloc[[series]]
    else:
        raise TypeError(f"series= must be a str or int, not {type(series).__name__}")
    if len(hits) == 1:
        return hits[_KEY].iloc[0]
    if len(hits) == 0:
        raise SelectionError(f"series={series!r} matches no series; {how}:\n{_describe(listing)}")
    raise AmbiguousSelectionError(
        f"series={series!r} matches {len(hits)} series; {how}:\n{_describe(hits)}"
    )


def filter_frames(table: pd.DataFrame, where: dict) -> pd.DataFrame:
    """Rows whose attributes match ``where`` (DICOM keywords or column names).

    Strings match the whole value or one backslash-separated part (so
    ``{"ImageType": "M"}`` keeps ``ORIGINAL\\PRIMARY\\M``); numbers match within
    1e-6 relative; a list/tuple of values matches any of them.

    Raises
    ------
    SelectionError
        When a key names no attribute, or nothing matches.
    """
    import numpy as np

    from ..catalog.fields import snake

    mask = pd.Series(True, index=table.index)
    for key, want in where.items():
        col = key if key in table.columns else snake(key)
        if col not in table.columns:
            raise SelectionError(f"where=: no attribute {key!r} in these frames")
        values = table[col]
        wants = list(want) if isinstance(want, (list, tuple, set)) else [want]
        hit = pd.Series(False, index=table.index)
        for w in wants:
            if isinstance(w, str):
                s = values.fillna("").astype(str)
                hit |= (s == w) | s.str.split("\\").apply(lambda parts, w=w: w in parts)
            else:
                num = pd.to_numeric(values, errors="coerce")
                hit |= pd.Series(np.isclose(num, float(w), rtol=1e-6, atol=0), index=table.index)
        mask &= hit
    out = table[mask]
    if out.empty:
        raise SelectionError(f"where={where!r} matches no frame")
    return out
