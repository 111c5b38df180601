"""Decoded-chunk cache: keep the decoded blocks of a series in a zarr v3 store.

``open_series(..., cache="series.zarr")`` wraps every chunk task of the lazy
array: the task returns the block from the store when the store holds a
*complete, verified* copy of it, and otherwise runs the original DICOM task and
writes the result through to the store. A second open (in this process or any
other that sees the same path) then computes without reading DICOM pixel bytes.

Layout
------
::

    series.zarr/                  root group; attrs {"dcmxr_cache": {"format": 1}}
    series.zarr/<variant>/        one group per (source, options) fingerprint;
                                  attrs {"dcmxr_cache": <fingerprint>}
    series.zarr/<variant>/data    the decoded array (shape/dtype of the DataArray;
                                  zarr chunks aligned so each Dask block owns
                                  whole zarr chunks)
    series.zarr/<variant>/done    int64, one element (and one stored object) per
                                  Dask block: -1 = not written, else the CRC-32
                                  of the block's bytes (C order)

``<variant>`` is ``v`` + the first 20 hex digits of the SHA-256 of the
fingerprint, so differently-decoded copies of the same series (``raw=True``
and ``raw=False``, other chunks) live side by side and never mix.

Validity protocol
-----------------
* A task first reads its ``done`` element. ``-1`` -> miss. Otherwise it reads
  the block from ``data`` and trusts it only when its CRC-32 equals the marker;
  a mismatch or an unreadable chunk issues a :class:`~dcmxr.errors.CacheWarning`
  and the block is recomputed and rewritten.
* On a miss the task computes the block from DICOM, writes ``data`` and only
  then writes the marker. An interrupted write therefore leaves either no
  marker (recomputed next time) or a marker whose checksum does not match a
  torn chunk (recomputed, with a warning).
* Before writing, the task re-stats the block's local source files; if a file's
  size or mtime no longer matches the fingerprint the block is returned but not
  cached (``CacheWarning``), so a cache is never filled from a file that changed
  after it was scanned.
* Different Dask blocks own disjoint zarr chunks and disjoint marker objects, so
  concurrent writers never read-modify-write a shared object; two writers of the
  same block write identical bytes (decoding is deterministic). Readers only
  trust blocks with a matching marker, so any number of processes may read and
  fill one cache at once.

Invalidation
------------
The fingerprint records the series and SOP Instance UIDs, every source file
with its size and mtime (from the scan table), the decode options (``raw``,
dtype, shape, dims, chunks, a hash of every chunk task's FrameRefs and
BlockSpec), the dcmxr version and the cache format. When a store holds a variant
of the *same series* that was built from a different source (a common file
whose size or mtime changed, files added to or removed from the set, or the same
files decoded by another dcmxr version) it is stale: a ``CacheWarning`` says
why, the stale variant is deleted and the cache is rebuilt (lazily, as chunks
are computed). Variants that differ only in decode options are kept.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import threading
import warnings
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import CacheError, CacheWarning, missing_dependency

__all__ = ["cached", "cache_status", "CACHE_FORMAT"]

#: Version of the on-disk layout; bump when it changes incompatibly.
CACHE_FORMAT = 1

_ATTR = "dcmxr_cache"
_MISSING = -1


# --------------------------------------------------------------------------- graph pieces


@dataclasses.dataclass(frozen=True, slots=True)
class _Thunk:
    """The original chunk computation, held so Dask does not run it eagerly."""

    func: Callable[..., np.ndarray]
    args: tuple

    def __call__(self) -> np.ndarray:
        return self.func(*self.args)


@dataclasses.dataclass(frozen=True, slots=True)
class CacheSpec:
    """Where a cached array lives (one per array, shared by all its tasks).

    Parameters
    ----------
    store : str
        Path or fsspec URL of the zarr store.
    variant : str
        Name of the variant group inside the store.
    storage_options : tuple
        Sorted ``(key, value)`` pairs for fsspec (empty for local paths).
    """

    store: str
    variant: str
    storage_options: tuple = ()


def _zarr():
    try:
        import zarr
    except ImportError:  # pragma: no cover - exercised only without zarr
        raise missing_dependency("zarr", "zarr") from None
    return zarr


_OPEN: dict[tuple, tuple[Any, Any]] = {}
_OPEN_LOCK = threading.Lock()


def _arrays(spec: CacheSpec) -> tuple[Any, Any]:
    """``(data, done)`` zarr arrays of a variant, opened once per process."""
    key = (spec.store, spec.variant, spec.storage_options)
    with _OPEN_LOCK:
        hit = _OPEN.get(key)
    if hit is not None:
        return hit
    zarr = _zarr()
    so = dict(spec.storage_options) or None
    data = zarr.open_array(spec.store, path=f"{spec.variant}/data", mode="r+", storage_options=so)
    done = zarr.open_array(spec.store, path=f"{spec.variant}/done", mode="r+", storage_options=so)
    with _OPEN_LOCK:
        _OPEN[key] = (data, done)
    return data, done


def _forget(spec: CacheSpec) -> None:
    with _OPEN_LOCK:
        _OPEN.pop((spec.store, spec.variant, spec.storage_options), None)


def _crc(arr: np.ndarray) -> int:
    return zlib.crc32(memoryview(np.ascontiguousarray(arr)).cast("B"))


def _files_unchanged(files: tuple[tuple[str, int | None, float | None], ...]) -> str | None:
    """None when every local file still has its fingerprinted size and mtime, else why not."""
    from ..decode.read import _local_path, is_local

    for path, size, mtime in files:
        if not is_local(path) or size is None:
            continue
        try:
            st = os.stat(_local_path(path))
        except OSError as exc:
            return f"{path}: {exc.strerror or exc}"
        if st.st_size != size or (mtime is not None and st.st_mtime != mtime):
            return f"{path} changed (size {size} -> {st.st_size}, mtime {mtime} -> {st.st_mtime})"
    return None


def cached_block(spec: CacheSpec, block: tuple[int, ...], region: tuple[tuple[int, int], ...],
                 files: tuple, compute: _Thunk) -> np.ndarray:
    """The chunk task of a cached array: read a verified block or compute and write it.

    Parameters
    ----------
    spec : CacheSpec
    block : tuple of int
        The Dask block index (position in the ``done`` array).
    region : tuple of (start, stop)
        The block's extent in the full array.
    files : tuple of (path, size, mtime)
        The block's source files as fingerprinted.
    compute : callable
        The original task (reads and decodes DICOM).

    Returns
    -------
    numpy.ndarray
    """
    sel = tuple(slice(a, b) for a, b in region)
    try:
        data, done = _arrays(spec)
    except Exception as exc:  # noqa: BLE001 - any store failure is reported the same way
        raise CacheError(f"cache {spec.store}: cannot open variant {spec.variant}: {exc}") from exc
    try:
        mark = int(done[block])
    except Exception as exc:  # noqa: BLE001 - a torn marker object counts as no marker
        warnings.warn(
            f"cache {spec.store}: the completion marker of block {block} of {spec.variant} cannot be read "
            f"({type(exc).__name__}: {exc}); recomputing the block", CacheWarning, stacklevel=2,
        )
        mark = _MISSING
    if mark != _MISSING:
        try:
            arr = np.asarray(data[sel])
            ok = _crc(arr) == mark
            why = "its checksum does not match its completion marker"
        except Exception as exc:  # noqa: BLE001 - a torn/corrupt chunk is recomputed
            ok, why = False, f"it cannot be read ({type(exc).__name__}: {exc})"
        if ok:
            return arr
        warnings.warn(
            f"cache {spec.store}: block {block} of {spec.variant} is not trusted ({why}); recomputing it",
            CacheWarning, stacklevel=2,
        )
    arr = compute()
    changed = _files_unchanged(files)
    if changed is not None:
        warnings.warn(
            f"cache {spec.store}: source changed since it was opened ({changed}); block {block} "
            "is returned but not cached", CacheWarning, stacklevel=2,
        )
        return arr
    try:
        data[sel] = arr
        done[block] = _crc(arr)  # the marker goes last: a torn write is never trusted
    except Exception as exc:  # noqa: BLE001
        _forget(spec)
        raise CacheError(f"cache {spec.store}: cannot write block {block} of {spec.variant}: {exc}") from exc
    return arr


# --------------------------------------------------------------------------- fingerprint


def _jsonable(v: Any) -> Any:
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        f = float(v)
        return None if math.isnan(f) else f
    if isinstance(v, np.ndarray):
        return [_jsonable(x) for x in v.tolist()]
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return v


def _file_stats(table) -> list[list]:
    cols = table.columns
    out = []
    for path, rows in table.groupby("path", sort=True):
        r = rows.iloc[0]
        size = r["file_size"] if "file_size" in cols else None
        mtime = r["mtime"] if "mtime" in cols else None
        size = None if size is None or (isinstance(size, float) and math.isnan(size)) else int(size)
        mtime = None if mtime is None or (isinstance(mtime, float) and math.isnan(mtime)) else float(mtime)
        out.append([str(path), size, mtime])
    return out


def _uids(table, col: str) -> list[str]:
    if col not in table.columns:
        return []
    return sorted({str(v) for v in table[col].dropna()})


#: Task-argument fields that change how a block is computed, never its values.
_EXECUTION_ONLY = {"threads": 1, "storage_options": None}


def _normalized(obj: Any) -> str:
    """repr of a task argument with execution-only settings (threads, storage_options) reset.

    ``storage_options`` may hold credentials or objects without a stable repr;
    they decide how bytes are fetched, not which bytes or what they decode to.
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        names = {f.name for f in dataclasses.fields(obj)}
        reset = {k: v for k, v in _EXECUTION_ONLY.items() if k in names}
        if reset:
            obj = dataclasses.replace(obj, **reset)
    return repr(obj)


def fingerprint(da, grid, raw: bool, tasks: dict) -> dict:
    """What a cached copy was built from (JSON-safe).

    Parameters
    ----------
    da : xarray.DataArray
        The uncached array.
    grid : Grid
        Its grid (the table gives the files, sizes, mtimes and UIDs).
    raw : bool
    tasks : dict
        Block index -> ``(func, args)`` of the original chunk tasks.

    Returns
    -------
    dict
        ``{"format", "dcmxr_version", "source": {...}, "options": {...}}``.
    """
    from .. import __version__

    t = grid.table
    h = hashlib.sha256()
    for block in sorted(tasks):
        func, args = tasks[block]
        h.update(repr(block).encode())
        h.update(f"{getattr(func, '__module__', '')}.{getattr(func, '__qualname__', func)}".encode())
        for a in args:
            h.update(_normalized(a).encode())
    return _jsonable({
        "format": CACHE_FORMAT,
        "dcmxr_version": __version__,
        "source": {
            "series_instance_uids": _uids(t, "series_instance_uid"),
            "sop_instance_uids": _uids(t, "sop_instance_uid"),
            "files": _file_stats(t),
        },
        "options": {
            "raw": bool(raw),
            "dtype": np.dtype(da.dtype).str,
            "dims": list(da.dims),
            "shape": list(da.shape),
            "chunks": [list(c) for c in da.chunks],
            "tasks_sha256": h.hexdigest(),
        },
    })


def _variant_name(fp: dict) -> str:
    blob = json.dumps(fp, sort_keys=True, separators=(",", ":")).encode()
    return "v" + hashlib.sha256(blob).hexdigest()[:20]


def _stale_reason(old: dict, new: dict) -> str | None:
    """Why an existing variant of the same series is stale, or None when it is not."""
    so, sn = old.get("source", {}), new["source"]
    if so.get("series_instance_uids") != sn["series_instance_uids"]:
        return None  # another series sharing the store
    of = {p: (s, m) for p, s, m in so.get("files", [])}
    nf = {p: (s, m) for p, s, m in sn["files"]}
    common = of.keys() & nf.keys()
    if not common:
        return None  # another stack of the series (disjoint files)
    reasons = []
    changed = sorted(p for p in common if of[p] != nf[p])
    for p in changed[:3]:
        (s0, m0), (s1, m1) = of[p], nf[p]
        what = []
        if s0 != s1:
            what.append(f"size {s0} -> {s1}")
        if m0 != m1:
            what.append(f"mtime {m0} -> {m1}")
        reasons.append(f"{p}: {', '.join(what)}")
    if len(changed) > 3:
        reasons.append(f"{len(changed) - 3} more files changed")
    added, removed = len(nf.keys() - of.keys()), len(of.keys() - nf.keys())
    if added:
        reasons.append(f"{added} file(s) added")
    if removed:
        reasons.append(f"{removed} file(s) removed")
    if not reasons and so.get("sop_instance_uids") != sn["sop_instance_uids"]:
        reasons.append("the SOP Instance UIDs differ")
    if not reasons and (old.get("format") != new["format"] or old.get("dcmxr_version") != new["dcmxr_version"]):
        reasons.append(
            f"it was written by dcmxr {old.get('dcmxr_version')} (cache format {old.get('format')}), "
            f"this is dcmxr {new['dcmxr_version']} (format {new['format']})"
        )
    return "; ".join(reasons) or None


# --------------------------------------------------------------------------- store handling


def _store_str(store: Any) -> str:
    if isinstance(store, (str, os.PathLike)):
        s = os.fspath(store)
        return os.path.abspath(s) if "://" not in s else s
    raise TypeError(f"cache must be a path or URL string, not {type(store).__name__}")


def _open_root(store: str, storage_options: dict | None):
    """Open (creating if needed) the root group and check it is a dcmxr cache."""
    zarr = _zarr()
    from zarr.errors import ContainsArrayError

    if "://" not in store:
        if os.path.exists(store) and not os.path.isdir(store):
            raise CacheError(f"cache {store}: exists and is not a directory (not a zarr store)")
        if os.path.isdir(store) and os.listdir(store) and not os.path.exists(os.path.join(store, "zarr.json")):
            raise CacheError(
                f"cache {store}: a non-empty directory that is not a zarr v3 store; "
                "pick a new path or an existing dcmxr cache"
            )
    try:
        # attributes= is written with the group's zarr.json when the group is created, so a
        # concurrent process never sees a fresh cache root without its marker attribute
        root = zarr.open_group(store, mode="a", zarr_format=3, storage_options=storage_options,
                               attributes={_ATTR: {"format": CACHE_FORMAT}})
    except ContainsArrayError:
        raise CacheError(f"cache {store}: holds a zarr array, not a dcmxr cache group") from None
    except (OSError, PermissionError) as exc:
        raise CacheError(f"cache {store}: cannot create or open the store: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - corrupt metadata, wrong format ...
        raise CacheError(f"cache {store}: corrupt or unreadable zarr store: {type(exc).__name__}: {exc}") from exc
    meta = root.attrs.get(_ATTR)
    if meta is None and root.nmembers() > 0:
        import time

        time.sleep(0.2)  # another process may be initialising the same cache right now
        root = zarr.open_group(store, mode="a", zarr_format=3, storage_options=storage_options)
        meta = root.attrs.get(_ATTR)
    if meta is None:
        if root.nmembers() > 0:
            raise CacheError(f"cache {store}: a zarr group that is not a dcmxr cache (no {_ATTR!r} attribute)")
        try:
            root.update_attributes({_ATTR: {"format": CACHE_FORMAT}})
        except Exception as exc:  # noqa: BLE001
            raise CacheError(f"cache {store}: cannot write to the store: {exc}") from exc
    elif not isinstance(meta, dict) or meta.get("format") != CACHE_FORMAT:
        raise CacheError(
            f"cache {store}: written in cache format {meta.get('format') if isinstance(meta, dict) else meta!r}, "
            f"this dcmxr writes format {CACHE_FORMAT}; delete it or use another path"
        )
    return root


def _zarr_chunks(chunks: tuple[tuple[int, ...], ...]) -> tuple[int, ...]:
    """zarr chunk shape such that every Dask block covers whole zarr chunks."""
    out = []
    for c in chunks:
        if len(c) == 1 or (len(set(c[:-1])) == 1 and c[-1] <= c[0]):
            out.append(max(1, c[0]))
        else:
            out.append(max(1, math.gcd(*c)))
    return tuple(out)


def _ensure_variant(root, name: str, fp: dict, shape, dtype, chunks, numblocks, store: str):
    zarr = _zarr()
    from zarr.errors import ContainsArrayError, ContainsArrayAndGroupError, ContainsGroupError

    exists = (ContainsArrayError, ContainsGroupError, ContainsArrayAndGroupError)

    def child(parent, key, create):
        # open first: create only when absent (zarr's create would silently
        # replace unreadable metadata, hiding corruption)
        try:
            return parent[key]
        except KeyError:
            pass
        try:
            return create()
        except exists:  # another process created it between the two calls
            return parent[key]

    try:
        grp = child(root, name, lambda: root.create_group(name, attributes={_ATTR: fp}, overwrite=False))
        got = grp.attrs.get(_ATTR)
        if got != fp:
            raise CacheError(f"cache {store}: variant {name} does not hold the fingerprint its name promises (corrupt)")

        def ensure(key, **kw):
            arr = child(grp, key, lambda: grp.create_array(key, overwrite=False, **kw))
            if tuple(arr.shape) != tuple(kw["shape"]) or np.dtype(arr.dtype) != np.dtype(kw["dtype"]) \
                    or tuple(arr.chunks) != tuple(kw["chunks"]):
                raise CacheError(
                    f"cache {store}: {name}/{key} has shape {arr.shape}, dtype {arr.dtype}, chunks "
                    f"{arr.chunks}; expected {tuple(kw['shape'])}, {kw['dtype']}, {tuple(kw['chunks'])} (corrupt)"
                )
            return arr

        ensure("data", shape=shape, dtype=dtype, chunks=chunks, fill_value=0)
        ensure("done", shape=numblocks, dtype="int64", chunks=(1,) * len(numblocks), fill_value=_MISSING)
    except CacheError:
        raise
    except (OSError, PermissionError) as exc:
        raise CacheError(f"cache {store}: cannot write to the store: {exc}") from exc
    except Exception as exc:  # noqa: BLE001
        raise CacheError(f"cache {store}: corrupt variant {name}: {type(exc).__name__}: {exc}") from exc


def _list_groups(root) -> list:
    """Child groups of the root (stray non-zarr entries ignored quietly)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not recognized as a component of a Zarr hierarchy")
        return list(root.groups())


def _drop_stale(root, name: str, fp: dict, store: str) -> None:
    try:
        members = _list_groups(root)
    except Exception as exc:  # noqa: BLE001 - unreadable member metadata
        raise CacheError(f"cache {store}: corrupt zarr store: {type(exc).__name__}: {exc}") from exc
    for key, grp in members:
        if key == name:
            continue
        try:
            old = grp.attrs.get(_ATTR)
        except Exception:  # noqa: BLE001 - vanished under us
            continue
        if not isinstance(old, dict):
            continue
        why = _stale_reason(old, fp)
        if why is None:
            continue
        warnings.warn(
            f"cache {store}: the cached copy {key} of series "
            f"{', '.join(fp['source']['series_instance_uids']) or '?'} is stale ({why}); "
            "it is deleted and rebuilt as chunks are computed",
            CacheWarning, stacklevel=4,
        )
        try:
            del root[key]
        except (KeyError, FileNotFoundError):
            pass  # another process removed it first
        except Exception as exc:  # noqa: BLE001
            warnings.warn(f"cache {store}: could not delete stale {key}: {exc}", CacheWarning, stacklevel=4)


def _is_key(a: Any, graph: dict) -> bool:
    try:
        return a in graph
    except TypeError:  # unhashable argument
        return False


def _original_tasks(arr) -> dict[tuple[int, ...], tuple[Callable, tuple]]:
    """Block index -> (func, args) of a graph whose chunk tasks have no dependencies."""
    import dask.core

    from ..backend.build import FrameStack

    graph = dict(arr.__dask_graph__())
    stacks = [v for v in graph.values() if isinstance(v, FrameStack)]
    if len(stacks) == 1 and len(graph) == int(np.prod(arr.numblocks)) + 1:
        # an untransformed array from build_dataarray: one getter per chunk on the FrameStack
        stack = stacks[0]
        nlead = stack.index.ndim
        starts = [np.cumsum((0,) + tuple(c)).tolist() for c in arr.chunks[:nlead]]
        out = {}
        for block in np.ndindex(*arr.numblocks):
            lead = tuple(slice(starts[d][b], starts[d][b + 1]) for d, b in enumerate(block[:nlead]))
            out[tuple(block)] = stack.block_task(lead)
        return out
    out = {}
    for key in dask.core.flatten(arr.__dask_keys__()):
        task = graph[key]
        if not (isinstance(task, tuple) and task and callable(task[0])) or any(_is_key(a, graph) for a in task[1:]):
            raise TypeError(
                "cached() wraps arrays straight from dcmxr.open_series / build_dataarray "
                f"(one self-contained task per chunk); chunk {key} is not such a task; "
                "cache the array before transforming it"
            )
        out[tuple(key[1:])] = (task[0], tuple(task[1:]))
    return out


# --------------------------------------------------------------------------- public


def cached(da, store, *, grid, raw: bool = False, storage_options: dict | None = None):
    """Back a lazy DICOM DataArray with a zarr v3 cache of its decoded chunks.

    Parameters
    ----------
    da : xarray.DataArray
        A Dask-backed array straight from :func:`dcmxr.open_series` (each chunk
        task self-contained).
    store : str or path
        Path (or fsspec URL) of the zarr store; created if absent.
    grid : Grid
        The grid ``da`` was built from (source files, sizes, mtimes, UIDs).
    raw : bool
        Whether ``da`` holds stored values (part of the fingerprint).
    storage_options : dict, optional
        fsspec options for a URL store.

    Returns
    -------
    xarray.DataArray
        Same dims, coords, attrs and chunks; each chunk is read from the store
        when a verified copy is there, else computed from DICOM and written
        through. ``encoding["dcmxr_cache"]`` names the store and variant.

    Raises
    ------
    CacheError
        The store cannot be created or written, is corrupt, or is not a dcmxr
        cache.

    Warns
    -----
    CacheWarning
        A cached copy of the same series built from a different source (or
        dcmxr version) was found; it is deleted and rebuilt.
    """
    import dask.array as dska
    from dask.base import tokenize

    store = _store_str(store)
    data = da.data
    if not isinstance(data, dska.Array):
        raise TypeError("cached() needs a Dask-backed DataArray")
    tasks = _original_tasks(data)
    fp = fingerprint(da, grid, raw, tasks)
    name = _variant_name(fp)
    root = _open_root(store, storage_options)
    _drop_stale(root, name, fp, store)
    _ensure_variant(root, name, fp, da.shape, da.dtype, _zarr_chunks(data.chunks), data.numblocks, store)

    spec = CacheSpec(store, name, tuple(sorted((storage_options or {}).items())))
    _forget(spec)
    files_of = {p: (p, s, m) for p, s, m in fp["source"]["files"]}
    starts = [np.cumsum((0,) + tuple(c)).tolist() for c in data.chunks]
    out_name = "dcmxr-cached-" + tokenize(data.name, store, name)
    dsk = {}
    for block, (func, args) in tasks.items():
        region = tuple((starts[d][b], starts[d][b + 1]) for d, b in enumerate(block))
        urls = sorted({r.url for a in args if isinstance(a, tuple) for r in a if hasattr(r, "url")})
        files = tuple(files_of.get(u, (u, None, None)) for u in urls)
        dsk[(out_name,) + block] = (cached_block, spec, block, region, files, _Thunk(func, args))
    new = dska.Array(dsk, out_name, chunks=data.chunks, dtype=data.dtype)
    out = da.copy(data=new)
    out.encoding = dict(da.encoding)
    out.encoding["dcmxr_cache"] = {"store": store, "variant": name}
    return out


def cache_status(store, storage_options: dict | None = None) -> list[dict]:
    """Describe the variants held by a cache store.

    Parameters
    ----------
    store : str or path
    storage_options : dict, optional

    Returns
    -------
    list of dict
        One per variant: ``variant``, ``series_instance_uids``, ``raw``,
        ``shape``, ``blocks`` (total) and ``complete`` (blocks with a marker).

    Raises
    ------
    CacheError
        The store is missing, corrupt or not a dcmxr cache.
    """
    store = _store_str(store)
    if "://" not in store and not os.path.exists(store):
        raise CacheError(f"cache {store}: does not exist")
    root = _open_root(store, storage_options)
    out = []
    for key, grp in _list_groups(root):
        fp = grp.attrs.get(_ATTR, {})
        try:
            done = np.asarray(grp["done"][...])
            n, complete = int(done.size), int((done != _MISSING).sum())
        except Exception:  # noqa: BLE001
            n = complete = 0
        out.append({
            "variant": key,
            "series_instance_uids": fp.get("source", {}).get("series_instance_uids"),
            "raw": fp.get("options", {}).get("raw"),
            "shape": tuple(fp.get("options", {}).get("shape", ())),
            "blocks": n,
            "complete": complete,
        })
    return out
