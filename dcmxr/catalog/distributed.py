"""Scanning as a distributed job: header reads spread over a dask.distributed client.

The file list is made where :func:`scan_on_client` is called (a folder walk or
an fsspec listing, cheap next to the header reads); it is cut into batches and
each batch is one task running :func:`dcmxr.catalog.scan._scan_many` on a
worker. Tasks carry only the locations and ``storage_options`` (plain strings
and dicts), so the workers must see the same paths: a shared filesystem, or
URLs (``s3://``, ``gs://``, ``https://``) they can reach. Results come back as
plain row dicts and are assembled into the usual table.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import pandas as pd

from ..errors import missing_dependency
from .sources import Source, expand

__all__ = ["scan_on_client", "scan_locations_on_client", "default_batch_size"]


def default_batch_size(n_files: int, n_workers: int) -> int:
    """Files per task: about 8 tasks per worker thread, between 16 and 2048 files.

    Parameters
    ----------
    n_files : int
    n_workers : int
        Worker threads in the cluster.
    """
    return int(min(2048, max(16, n_files // max(1, 8 * n_workers))))


def _scan_strict(locations: Sequence[str], storage_options: dict | None) -> tuple[list[dict], list[dict], list[dict]]:
    """Like ``_scan_many`` but raising on the first bad file (``strict=True``)."""
    from .scan import scan_file

    rows: list[dict] = []
    others: list[dict] = []
    for loc in locations:
        r, other = scan_file(loc, storage_options)
        rows.extend(r)
        if other is not None:
            others.append(other)
    return rows, others, []


def _threads(client: Any) -> int:
    try:
        return max(1, sum(client.nthreads().values()))
    except Exception:  # noqa: BLE001 - a client without workers yet
        return 1


def scan_locations_on_client(
    locations: Sequence[str],
    client: Any,
    *,
    strict: bool = False,
    storage_options: dict | None = None,
    batch_size: int | None = None,
) -> tuple[list[dict], list[dict], list[dict]]:
    """Scan an explicit list of locations on a client's workers.

    Parameters
    ----------
    locations : sequence of str
        Files or URLs (as returned by :func:`dcmxr.catalog.sources.expand`).
    client : distributed.Client
    strict : bool
        Raise the first error of a bad file instead of skipping it.
    storage_options : dict, optional
        fsspec options, shipped to the workers.
    batch_size : int, optional
        Files per task (default :func:`default_batch_size`).

    Returns
    -------
    rows, others, skipped : list of dict
        Frame rows, non-image summary rows and skipped files (path + reason),
        in the order of ``locations``.
    """
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise missing_dependency("distributed", "distributed") from None
    from .scan import _scan_many

    locations = list(locations)
    if not locations:
        return [], [], []
    size = batch_size or default_batch_size(len(locations), _threads(client))
    batches = [locations[i : i + size] for i in range(0, len(locations), size)]
    fn = _scan_strict if strict else _scan_many
    tag = f"dcmxr-scan-{uuid.uuid4().hex[:12]}"
    futures = client.map(fn, batches, storage_options=storage_options, pure=False,
                         key=[f"{tag}-{i}" for i in range(len(batches))])
    try:
        results = client.gather(futures)  # in batch order; re-raises a strict-mode error
    finally:
        client.cancel(futures)
    rows: list[dict] = []
    others: list[dict] = []
    skipped: list[dict] = []
    for r, o, s in results:
        rows.extend(r)
        others.extend(o)
        skipped.extend(s)
    return rows, others, skipped


def scan_on_client(
    source: Source,
    client: Any,
    *,
    recursive: bool = True,
    strict: bool = False,
    storage_options: dict | None = None,
    batch_size: int | None = None,
) -> pd.DataFrame:
    """``dcmxr.scan`` with the header reads done by a dask.distributed client.

    Parameters
    ----------
    source : path, URL, glob, DICOMDIR or a sequence of them
        As for :func:`dcmxr.scan`; listed here, read on the workers.
    client : distributed.Client
    recursive, strict, storage_options
        As for :func:`dcmxr.scan`.
    batch_size : int, optional
        Files per task.

    Returns
    -------
    pandas.DataFrame
        The same table :func:`dcmxr.scan` returns.

    Warns
    -----
    SkippedFileWarning
        Once, when any file was skipped.
    """
    from .scan import build_table, warn_skipped

    locations = expand(source, recursive=recursive, storage_options=storage_options)
    rows, others, skipped = scan_locations_on_client(
        locations, client, strict=strict, storage_options=storage_options, batch_size=batch_size
    )
    warn_skipped(skipped, len(locations), stacklevel=4)
    return build_table(rows, others, skipped)
