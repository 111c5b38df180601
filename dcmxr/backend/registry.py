"""Where an array's header table can be found again.

attrs stay short and JSON-safe (DESIGN.md), so the per-frame header table an
array was built from is kept here, keyed by SeriesInstanceUID, for
``da.dcm.headers``. The accessor filters it by the array's own per-frame
coordinates, so a sliced array gets only its own frames' rows. The registry
lives in the process that opened the data; on a worker it may be empty, and
``headers`` says so.
"""

from __future__ import annotations

import pandas as pd

_TABLES: dict[str, pd.DataFrame] = {}


def remember(table: pd.DataFrame) -> None:
    """Keep the rows of each series in ``table`` for later ``headers`` lookups."""
    if "series_instance_uid" not in table.columns:
        return
    for uid, rows in table.groupby(table["series_instance_uid"].fillna(""), sort=False):
        _TABLES[str(uid)] = rows


def lookup(series_instance_uid: str) -> pd.DataFrame | None:
    """The rows kept for a series, or None."""
    return _TABLES.get(series_instance_uid)
