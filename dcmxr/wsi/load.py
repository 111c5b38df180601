"""Whole pyramid levels read straight into one preallocated array (``da.dcm.load()``).

A level's Dask array is one getter task per tile chunk: computing it returns
every chunk as a new array and concatenates them (twice the level in memory),
and ``dask.array.store`` still allocates each chunk before copying it into
place. For an untransformed level array this reads the whole level with its
:class:`~dcmxr.wsi.reader.LevelReader` instead: every tile is decoded by the
calling thread and the shared decoder pool straight into (or through a
per-thread tile buffer into) its slot of ``out``, with no Dask scheduler at
all (so no per-task overhead and no first-compute set-up in a fresh process).
"""

from __future__ import annotations

import itertools
import os
from typing import Any

import numpy as np

from .index import lookup

__all__ = ["load_level_into"]

#: ``scheduler=`` values this reader honours (anything else: the caller falls back to Dask).
_THREADED = {None, "threads", "threading", "sync", "synchronous", "single-threaded"}


def load_level_into(data: Any, out: np.ndarray, *, scheduler: Any = None, num_workers: int | None = None,
                    **_ignored: Any) -> bool:
    """Read an untransformed WSI level Dask array into ``out``.

    Parameters
    ----------
    data : dask.array.Array
        ``slide["level_<n>"]["image"].data`` as built by :func:`dcmxr.wsi.open_slide`
        (in this process; no operations applied).
    out : numpy.ndarray
        C-contiguous, ``data.shape`` and ``data.dtype``.
    scheduler : str, optional
        ``None``/``"threads"`` (decoder threads: ``num_workers``, default the
        CPU count) or a synchronous scheduler (one thread).
    num_workers : int, optional

    Returns
    -------
    bool
        False (nothing done) when ``data`` is not such a level array, ``out``
        does not fit or the scheduler is another one (the caller then computes
        it with Dask).
    """
    name = getattr(data, "name", None)
    reader = lookup(name) if isinstance(name, str) else None
    if reader is None or not (scheduler is None or isinstance(scheduler, str)) or scheduler not in _THREADED:
        return False
    lead = ((reader.n_paths,) if reader.n_paths > 1 else ()) + ((reader.n_planes,) if reader.n_planes > 1 else ())
    shape = lead + reader.total + reader.tail
    if (tuple(data.shape) != shape or out.shape != shape or out.dtype != reader.dtype or data.dtype != reader.dtype
            or not out.flags.c_contiguous):
        return False
    if scheduler in ("sync", "synchronous", "single-threaded"):
        threads = 1
    else:
        threads = max(int(num_workers or os.cpu_count() or 1), 1)
    kinds = (["path"] if reader.n_paths > 1 else []) + (["plane"] if reader.n_planes > 1 else [])
    h, w = reader.total
    for combo in itertools.product(*(range(n) for n in lead)):
        sel = dict(zip(kinds, combo))
        reader.read(0, 0, h, w, path=sel.get("path", 0), plane=sel.get("plane", 0), threads=threads,
                    out=out[combo])
    return True
