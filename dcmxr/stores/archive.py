"""DICOM tree -> one zarr v3 archive, losslessly.

:func:`to_zarr` writes one group per series::

    DST.zarr/                                   attrs {"dcmxr_archive": {"format": 1, "layout": ...}}
    DST.zarr/<patient>/<study>/<series>/        attrs: the image attrs + {"dcmxr_archive": {...}}
        image        the array as open_series gives it (dims, coords with units/direction)
        image_frame  int, on the image's frame dims: which ``dicom_frame`` fills each position (-1 none)
        header       (instance,)  every instance's header as DICOM JSON (all but pixel data)
        file_meta    (instance,)  its file meta information as DICOM JSON
        instance_uid (instance,)  SOP Instance UID of each header
        frame_instance, frame_number, frame_slope, frame_intercept   (dicom_frame,)
        frames       (dicom_frame, frame_row, frame_col[, frame_sample])  stored pixel values, only when
                     ``image`` cannot give them back exactly (MOSAIC, several stacks, float rescale ...)
    DST.zarr/<patient>/<study>/<series>_stackN/ further stacks of the series (image only)
    DST.zarr/<patient>/<study>/<series>/pyramid  with ``layout="ome"``, a whole-slide image as an
                 OME-NGFF 0.4 multiscale (written by :func:`dcmxr.wsi.ome.to_ome_zarr`)

Headers are made by :mod:`dcmxr.stores.dicomjson` (pydicom's DICOM JSON,
each distinct element converted once per series) one series ahead in a
background thread, while the previous series' pixels are decoded and
compressed. On a local directory a group's metadata and small arrays are made
by xarray in memory and written as plain files, and the Dask arrays are stored
chunk by chunk straight into the arrays on disk (:func:`_write_dataset`; the
files equal what ``Dataset.to_zarr`` writes, tests/test_archive_write.py).

Series without pixel data (SR, RTSTRUCT, RTPLAN ...) get a group with the
header variables only. A series group is *complete* when its
``dcmxr_archive.complete`` attr is true; that attr is written last, after
every array of the series (and its sibling stacks) is on disk, so an
interrupted conversion never leaves a group that reads as complete. A rerun
skips complete series (whose source files are unchanged) and rewrites
incomplete ones.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DcmxrError, DcmxrWarning, ExportError, missing_dependency

__all__ = ["to_zarr", "ArchiveReport", "archive_status", "series_groups", "ARCHIVE_FORMAT", "safe_name", "cli_convert"]

#: On-disk layout version.
ARCHIVE_FORMAT = 1

#: DICOM pixel data elements kept out of the JSON headers.
from .dicomjson import PIXEL_TAGS  # noqa: E402,F401  (re-exported)


@dataclass
class ArchiveReport:
    """What :func:`to_zarr` did.

    Attributes
    ----------
    store : str
    written : list of str
        Group paths written in this run.
    skipped : list of str
        Group paths already complete (left as they were).
    failed : list of dict
        ``{"series_instance_uid", "group", "reason"}`` for each series that
        could not be converted; the rest of the conversion went on.
    uid_map : dict
        Old -> new UIDs when ``deidentify=True`` (never stored in the archive);
        empty otherwise.
    """

    store: str
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)
    uid_map: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no series failed."""
        return not self.failed


# --------------------------------------------------------------------------- names
def safe_name(value: Any, fallback: str) -> str:
    """A group-name component from a DICOM value: no separators, no leading dots.

    Characters outside ``[0-9A-Za-z_.-]`` become ``_``; leading dots are
    stripped (no ``..``), and the result is at most 48 characters. When the
    value had to change, 6 hex digits of its SHA-1 are appended so two
    different values never share a name.
    """
    raw = "" if value is None or (isinstance(value, float) and value != value) else str(value).strip()
    s = re.sub(r"[^0-9A-Za-z_.-]+", "_", raw).strip("_.")[:48]
    if not s:
        s = fallback
    if s != raw and raw:
        s = f"{s}_{hashlib.sha1(raw.encode()).hexdigest()[:6]}"
    return s


def _short(uid: Any) -> str:
    return hashlib.sha1(str(uid).encode()).hexdigest()[:8]


#: Columns that must agree for frames to share one array.
_FORMAT = ("rows", "columns", "samples_per_pixel", "bits_allocated", "pixel_representation", "float_pixels",
           "photometric_interpretation")


def series_groups(table: pd.DataFrame) -> list[dict]:
    """One entry per series of a scan table: its group path and rows.

    Returns
    -------
    list of dict
        ``{"uid", "path", "rows"}`` where ``rows`` is a DataFrame of the
        series' frames (empty for series without pixel data, which carry
        ``"files"`` instead). Paths are ``/<patient>/<study>/<series>``, made
        with :func:`safe_name`; the study and series parts end in a short hash
        of the UID so they never collide.
    """
    out = []

    def path_of(first: dict) -> str:
        patient = safe_name(first.get("patient_id"), "patient")
        study = f"{safe_name(first.get('study_date'), 'study')}_{_short(first.get('study_instance_uid'))}"
        num = first.get("series_number")
        if isinstance(num, float) and num == num and num.is_integer():
            num = int(num)
        num = "" if num is None or (isinstance(num, float) and num != num) else str(num)
        desc = next((v for v in (first.get("series_description"), first.get("modality"))
                     if isinstance(v, str) and v.strip()), "series")
        series = f"{safe_name(num, 'S')}_{safe_name(desc, 'series')}_{_short(first.get('series_instance_uid'))}"
        return f"/{patient}/{study}/{series}"

    others: dict[str, list[dict]] = {}
    for rec in table.attrs.get("non_image", []) or []:
        others.setdefault(rec.get("series_instance_uid") or "", []).append(rec)
    table = table.copy(deep=False)
    table.attrs = {}  # pandas deep-copies attrs on every operation; the scan's lists are large
    if len(table) and "series_instance_uid" in table.columns:
        key = table["series_instance_uid"].fillna("")
        for uid, rows in table.groupby(key, sort=False):
            rows = rows.sort_values(["path", "frame"], kind="stable").reset_index(drop=True)
            if "bits_stored" in rows.columns and "bits_allocated" in rows.columns:
                # float pixel data has no BitsStored; backend.build.framerefs needs a number
                rows["bits_stored"] = rows["bits_stored"].fillna(rows["bits_allocated"])
            if "pixel_representation" in rows.columns:
                rows["pixel_representation"] = rows["pixel_representation"].fillna(0)
            # one group per frame format: a group's frames must share one shape and dtype
            fmt = [c for c in _FORMAT if c in rows.columns]
            parts = list(rows.groupby([rows[c].fillna(-1) for c in fmt], sort=True)) if fmt else [(None, rows)]
            for k, (_, part) in enumerate(parts):
                part = part.reset_index(drop=True)
                suffix = "" if k == 0 else f"_fmt{k}"
                out.append({"uid": uid, "path": path_of(part.iloc[0].to_dict()) + suffix, "rows": part,
                            "files": None})
    for uid, recs in others.items():
        out.append({"uid": uid, "path": path_of(recs[0]), "rows": pd.DataFrame(),
                    "files": sorted(r["path"] for r in recs)})
    return out


# --------------------------------------------------------------------------- headers
def read_header_json(path: str, *, deid: Any = None, cache: Any = None) -> tuple[str, str, str]:
    """``(sop_instance_uid, header_json, file_meta_json)`` of one file.

    Everything but the pixel data elements is kept, with bulk data inline
    (base64 ``InlineBinary``) and private elements as they are — pydicom's
    ``to_json_dict`` of the file, made fast by :mod:`dcmxr.stores.dicomjson`.
    ``deid`` is ``(uid_map, salt)`` to apply the Basic Profile first;
    ``cache`` a :class:`~dcmxr.stores.dicomjson.HeaderCache` shared by a series.
    """
    from .dicomjson import header_json

    return header_json(path, deid=deid, cache=cache)


# --------------------------------------------------------------------------- per series
def _zarr():
    try:
        import zarr
    except ImportError:
        raise missing_dependency("zarr", "zarr") from None
    return zarr


#: Default level of each named compressor (``level=None``).
DEFAULT_LEVELS = {"blosc-lz4": 5, "blosc-zstd": 1, "zstd": 1, "gzip": 6}


def _compressors(compressor: Any, level: int | None):
    """zarr v3 codecs for a compressor name (or codecs given as they are)."""
    zarr = _zarr()
    if compressor is None or compressor == "none":
        return None
    if isinstance(compressor, str):
        name = compressor.lower()
        if name == "blosc":
            name = "blosc-zstd"
        if name not in DEFAULT_LEVELS:
            raise ValueError(f"unknown compressor {compressor!r}: use 'blosc-lz4', 'blosc-zstd', 'zstd', 'gzip', "
                             "None or zarr codec(s)")
        lvl = DEFAULT_LEVELS[name] if level is None else int(level)
        if name == "blosc-lz4":  # LZ4 inside Blosc with bit-shuffle: fastest to write and to read
            return (zarr.codecs.BloscCodec(cname="lz4", clevel=lvl, shuffle="bitshuffle"),)
        if name == "blosc-zstd":  # Zstandard inside Blosc with byte-shuffle: smallest
            return (zarr.codecs.BloscCodec(cname="zstd", clevel=lvl, shuffle="shuffle"),)
        if name == "zstd":
            return (zarr.codecs.ZstdCodec(level=lvl),)
        return (zarr.codecs.GzipCodec(level=lvl),)
    return tuple(compressor) if isinstance(compressor, (list, tuple)) else (compressor,)


def _frames_per_chunk(frame_bytes: int, target: int) -> int:
    return max(1, int(target // max(frame_bytes, 1)))


def _exactly_invertible(grid, da, series_rows: pd.DataFrame, slope: np.ndarray, icpt: np.ndarray,
                        stored: np.dtype, n_stacks: int) -> bool:
    """Can every stored frame be recovered exactly from ``image``?"""
    t = grid.table
    if n_stacks != 1 or (grid.excluded is not None and len(grid.excluded)):
        return False
    if "tile_row0" in t.columns and t["tile_row0"].notna().any():
        return False
    idx = grid.index.ravel()
    if len(t) != len(series_rows) or (idx < 0).sum() + len(t) != idx.size or len(np.unique(idx[idx >= 0])) != len(t):
        return False
    if np.all(slope == 1) and np.all(icpt == 0) and da.dtype == stored:
        return True
    ints = np.all(np.mod(slope, 1) == 0) and np.all(np.mod(icpt, 1) == 0) and np.all(slope != 0)
    return bool(ints and da.dtype.kind in "iu" and stored.kind in "iu")


def _frames_dask(rows: pd.DataFrame, dtype: np.dtype, frame_shape: tuple, per_chunk: int):
    import dask.array as dska
    from dask.base import tokenize

    from ..backend.build import framerefs
    from ..decode.plan import BlockSpec, load_block

    refs = framerefs(rows)
    name = "dcmxr-frames-" + tokenize(tuple(refs), dtype.str, per_chunk)
    dsk, chunks = {}, []
    for b, s in enumerate(range(0, len(refs), per_chunk)):
        part = tuple(refs[s:s + per_chunk])
        chunks.append(len(part))
        spec = BlockSpec(shape=(len(part),), frame_shape=frame_shape, dtype=dtype.str)
        dsk[(name, b) + (0,) * len(frame_shape)] = (load_block, part, spec)
    return dska.Array(dsk, name, chunks=(tuple(chunks),) + tuple((n,) for n in frame_shape), dtype=dtype)


def _deid_attrs(obj: Any, uid_map: dict, salt: str) -> None:
    """Drop identifying attrs/coords of an xarray object and remap UIDs in place."""
    from .deid import BASIC_PROFILE, new_uid

    snake = {re.sub(r"(?<!^)(?=[A-Z])", "_", k).lower() for k in BASIC_PROFILE}
    snake |= {"patient_name", "patient_id", "study_date", "series_date", "acquisition_date", "content_date",
              "study_time", "series_time", "acquisition_time", "content_time", "acquisition_date_time",
              "frame_acquisition_date_time"}
    keep = {"sop_class_uid", "transfer_syntax_uid"}
    for k in list(obj.attrs):
        if k in snake:
            del obj.attrs[k]
        elif k.endswith("_uid") and k not in keep and isinstance(obj.attrs[k], str):
            obj.attrs[k] = new_uid(obj.attrs[k], uid_map, salt)
    for name in list(obj.coords):
        if name in snake and name not in obj.dims:
            obj = obj.drop_vars(name)
            continue
        if name.endswith("_uid") and name not in keep:
            vals = obj.coords[name].values
            mapped = np.vectorize(lambda v: new_uid(v, uid_map, salt) if v else v, otypes=[object])(vals)
            obj = obj.assign_coords({name: (obj.coords[name].dims, mapped, obj.coords[name].attrs)})
    return obj


def series_files(entry: dict) -> list[str]:
    """The files of a :func:`series_groups` entry, in instance order."""
    return entry["files"] if entry["files"] is not None else list(dict.fromkeys(entry["rows"]["path"]))


def read_series_headers(entry: dict, *, deid: Any = None) -> list[tuple[str, str, str]]:
    """``read_header_json`` of every file of a series (one shared cache)."""
    from .dicomjson import HeaderCache

    cache = HeaderCache()  # elements the instances of a series share are converted once
    return [read_header_json(f, deid=deid, cache=cache) for f in series_files(entry)]


def _header_dataset(heads: list[tuple[str, str, str]]):
    """The ``header``/``file_meta``/``instance_uid`` variables of a series group."""
    import xarray as xr

    return xr.Dataset(
        {"header": ("instance", np.array([h[1] for h in heads], dtype=object)),
         "file_meta": ("instance", np.array([h[2] for h in heads], dtype=object))},
        coords={"instance_uid": ("instance", np.array([h[0] for h in heads], dtype=object))},
    )


def _build_series(entry: dict, *, deid: Any, chunk_bytes: int, workers: int) -> dict:
    """The pixel Datasets of one series: ``{group_path: Dataset}`` (first = the series group).

    The series group's header variables are not included (see
    :func:`_header_dataset`): they are written after the pixels, so reading
    headers overlaps with decoding and compressing.
    """
    import xarray as xr

    from ..assembly.stack import assemble, choose_stack, split_stacks
    from ..backend.build import _rescale, build_dataarray, stored_dtype

    path = entry["path"]
    rows: pd.DataFrame = entry["rows"]
    files = series_files(entry)
    base = xr.Dataset()
    marker: dict[str, Any] = {"format": ARCHIVE_FORMAT, "series_instance_uid": entry["uid"],
                              "n_instances": len(files), "stacks": [], "frames_stored": False,
                              "source": [[f, os.path.getsize(f) if os.path.exists(f) else None] for f in files]}
    out: dict[str, xr.Dataset] = {}
    if rows.empty:
        out[path] = base
        return {"datasets": out, "marker": marker}

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            stacks = list(split_stacks(rows))
            order = sorted(range(len(stacks)), key=lambda i: -len(stacks[i]))
            chosen, _ = choose_stack(stacks, None)
            grids = [assemble(chosen)] + [assemble(stacks[i]) for i in order[1:]]
    except DcmxrError as exc:  # keep the series losslessly even when it does not assemble
        grids = []
        marker["image_error"] = f"{type(exc).__name__}: {exc}"
    first = rows.iloc[0]
    stored = stored_dtype(first)
    spp = int(first.get("samples_per_pixel") or 1)
    if spp > 1 and str(first.get("photometric_interpretation", "")).startswith("YBR"):
        stored = np.dtype("uint8") if stored.itemsize == 1 else stored
    frame_shape = (int(first["rows"]), int(first["columns"])) + ((spp,) if spp > 1 else ())
    key_of = {(p, int(f)): i for i, (p, f) in enumerate(zip(rows["path"], rows["frame"]))}
    inst_of = {f: i for i, f in enumerate(files)}
    # the image has the stored values' size, or 4 bytes when the rescale makes it float32
    frame_bytes = int(np.prod(frame_shape)) * stored.itemsize

    slope, icpt = _rescale(rows)
    fr = xr.Dataset(
        {"frame_instance": ("dicom_frame", np.array([inst_of[p] for p in rows["path"]], dtype=np.int64)),
         "frame_number": ("dicom_frame", rows["frame"].to_numpy(dtype=np.int64)),
         "frame_slope": ("dicom_frame", np.asarray(slope, dtype=np.float64)),
         "frame_intercept": ("dicom_frame", np.asarray(icpt, dtype=np.float64))})

    def add_frames():
        per = _frames_per_chunk(int(np.prod(frame_shape)) * stored.itemsize, chunk_bytes)
        fdims = ("dicom_frame", "frame_row", "frame_col") + (("frame_sample",) if spp > 1 else ())
        fr["frames"] = (fdims, _frames_dask(rows, stored, frame_shape, per))
        marker["frames_stored"] = True

    if not grids:
        add_frames()
        out[path] = xr.merge([base, fr])
        out[path].attrs["dcmxr_encoding"] = {"stored_dtype": stored.str}
        return {"datasets": out, "marker": marker}
    for k, grid in enumerate(grids):
        da = build_dataarray(grid, chunks=_frames_per_chunk(frame_bytes, chunk_bytes), name="image")
        enc = dict(da.encoding)
        da.encoding = {}
        gt = grid.table
        src = np.array([key_of.get((p, int(f)), -1) for p, f in zip(gt["path"], gt["frame"])])
        pos = np.where(grid.index >= 0, src[np.clip(grid.index, 0, None)], -1)
        img_frame = xr.DataArray(pos.astype(np.int64), dims=da.dims[:grid.index.ndim])
        if deid is not None:
            da = _deid_attrs(da, *deid)
        ds = xr.Dataset({"image": da, "image_frame": img_frame})
        ds.attrs = dict(da.attrs)
        ds.attrs["dcmxr_encoding"] = {k2: v for k2, v in enc.items() if k2 != "preferred_chunks"}
        if k == 0:
            if not _exactly_invertible(grid, da, rows, *_rescale(gt), stored, len(grids)):
                add_frames()
            series_ds = xr.merge([ds, base, fr], combine_attrs="override")
            series_ds.attrs = ds.attrs
            out[path] = series_ds
        else:
            spath = f"{path}_stack{k}"
            marker["stacks"].append(spath)
            out[spath] = ds
    return {"datasets": out, "marker": marker}


def _encoding(ds, compressors, shard_frames: bool) -> dict:
    enc: dict[str, dict] = {}
    for name, var in ds.data_vars.items():
        e: dict[str, Any] = {}
        if var.dtype.kind in "iufb":
            e["compressors"] = compressors
            if var.chunks is not None:
                inner = tuple(c[0] for c in var.chunks)
                if shard_frames and var.ndim > 2:
                    e["shards"] = inner
                    e["chunks"] = (1,) * (var.ndim - 2) + inner[-2:] if var.ndim > 2 else inner
                else:
                    e["chunks"] = inner
        elif var.dtype.kind in "OUT" or str(var.dtype).startswith("String"):
            e["compressors"] = (_zarr().codecs.ZstdCodec(level=3),) if compressors else None
        enc[name] = e
    return enc


def _local_dir(store: Any) -> str | None:
    """The directory of a local store given as a path, else None."""
    if isinstance(store, (str, os.PathLike)) and "://" not in str(store):
        return os.fspath(store)
    return None


#: Series whose lazy arrays together hold at most this many bytes are loaded and written in one go.
EAGER_BYTES = 32 * 2**20


def _write_dataset(store: Any, group: str, ds, encoding: dict, *, arrays_only: bool = False) -> None:
    """Write ``ds`` as ``ds.to_zarr(store, group=group, mode="w")`` would, but cheaper.

    On a local directory, xarray writes the metadata and the in-memory
    variables into a :class:`zarr.storage.MemoryStore` (about 3x less CPU than
    going through the local store, whose every small write is a round trip to
    zarr's event loop and a thread), and those bytes go to disk as plain files;
    the Dask variables are then stored chunk by chunk into the arrays on disk
    by :func:`dask.array.store` (as xarray would). ``arrays_only`` adds the
    variables to an existing group, leaving its attrs as they are. The target
    group must not exist yet (the caller deletes it first) unless
    ``arrays_only``.
    """
    import dask.array as dska

    zarr = _zarr()
    g = group.strip("/")
    root = _local_dir(store)
    lazy = [n for n, v in ds.variables.items() if isinstance(v.data, dska.Array)]
    if root is None or any(ds.variables[n].encoding for n in lazy):
        if arrays_only:
            # mode "a" replaces the group attrs: keep what is there (image attrs, OME metadata)
            ds = ds.copy()
            ds.attrs = dict(zarr.open_group(store, path=g, mode="r").attrs)
        ds.to_zarr(store, group=g, mode="a" if arrays_only else "w", zarr_format=3, consolidated=False,
                   encoding=encoding)
        return
    from zarr.storage import LocalStore, MemoryStore

    if lazy and sum(ds.variables[n].nbytes for n in lazy) <= EAGER_BYTES:
        # a small series: load it now and write everything through memory (no Dask store graphs)
        import dask

        one = all(all(len(c) == 1 for c in ds.variables[n].chunks) for n in lazy)
        with dask.config.set(scheduler="sync") if one else contextlib.nullcontext():
            values = dask.compute(*[ds.variables[n].data for n in lazy])
        ds = ds.copy()
        for n, v in zip(lazy, values):
            ds.variables[n].data = v
        lazy = []
    files: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ds.to_zarr(MemoryStore(files), group=g, mode="w", zarr_format=3, consolidated=False, encoding=encoding,
                   compute=False)
    own = f"{g}/zarr.json" if g else "zarr.json"
    made: set[str] = set()
    for key, buf in files.items():
        target = os.path.join(root, *key.split("/"))
        if key.endswith("zarr.json") and key.count("/") <= own.count("/"):
            # the group itself and its parents: never replace a parent (the root holds the archive's attrs)
            if key != own and os.path.exists(target):
                continue
            if key == own and arrays_only:
                continue
        parent = os.path.dirname(target)
        if parent not in made:  # one mkdir per directory (each costs a system call even when it exists)
            os.makedirs(parent, exist_ok=True)
            made.add(parent)
        with open(target, "wb") as fh:
            fh.write(buf.to_bytes())
    if lazy:
        local = LocalStore(root)
        targets = [zarr.open_array(local, path=f"{g}/{n}" if g else n, mode="r+", zarr_format=3) for n in lazy]
        for n, t in zip(lazy, targets):
            if t.dtype != ds.variables[n].dtype or t.shape != ds.variables[n].shape:
                raise ExportError(f"{group}/{n}: on-disk array {t.dtype}{t.shape} does not match the data "
                                  f"{ds.variables[n].dtype}{ds.variables[n].shape}")
        dska.store([ds.variables[n].data for n in lazy], targets, lock=False)


def _group_complete(root, path: str, marker: dict) -> bool:
    try:
        g = root[path.strip("/")]
    except KeyError:
        return False
    m = dict(g.attrs).get("dcmxr_archive") or {}
    return bool(m.get("complete")) and m.get("source") == marker["source"]


def _delete(root, path: str) -> None:
    try:
        del root[path.strip("/")]
    except KeyError:
        pass


def archive_status(store: Any) -> pd.DataFrame:
    """One row per series group of an archive: path, series UID, complete.

    Parameters
    ----------
    store : str or zarr store

    Returns
    -------
    DataFrame
        Columns ``group, series_instance_uid, complete, frames_stored, n_instances``.
    """
    zarr = _zarr()
    root = zarr.open_group(store, mode="r", use_consolidated=False)
    recs = []
    for name, g in root.groups():
        _walk(g, "/" + name, recs)
    df = pd.DataFrame(recs, columns=["group", "series_instance_uid", "complete", "frames_stored", "n_instances"])
    return df.sort_values("group", kind="stable").reset_index(drop=True)  # zarr lists groups in any order


def _walk(g, path: str, recs: list) -> None:
    m = dict(g.attrs).get("dcmxr_archive")
    if m is not None and "series_instance_uid" in m:
        recs.append({"group": path, "series_instance_uid": m["series_instance_uid"],
                     "complete": bool(m.get("complete")), "frames_stored": bool(m.get("frames_stored")),
                     "n_instances": m.get("n_instances")})
        return
    for name, child in g.groups():
        _walk(child, f"{path}/{name}", recs)


def to_zarr(
    source: Any,
    store: Any,
    *,
    layout: str = "dicom",
    compressor: Any = "blosc-lz4",
    level: int | None = None,
    shards: bool = False,
    chunk_mb: float = 16,
    deidentify: bool = False,
    salt: str = "",
    progress: bool = True,
    workers: int | None = None,
    overwrite: bool = False,
    storage_options: dict | None = None,
) -> ArchiveReport:
    """Convert a DICOM tree into one zarr v3 archive (a group per series).

    Parameters
    ----------
    source : path, glob, list, DICOMDIR or a table from :func:`dcmxr.scan`
        Any mix of patients, studies, series and modalities.
    store : str or zarr store
        The destination (created if absent; an existing archive is resumed).
    layout : {"dicom", "ome"}
        "dicom" (default) keeps every header and enough pixel data to write
        the DICOM back losslessly (:func:`dcmxr.stores.to_dicom`); "ome" adds
        OME-NGFF multiscales metadata to each image (see :mod:`dcmxr.stores.ome`).
    compressor : "blosc-lz4", "blosc-zstd", "zstd", "gzip", None, or zarr codec(s)
        Lossless compression of the numeric arrays. The default, LZ4 inside
        Blosc with bit-shuffle, is the fastest to write and to read back
        (about 1.4 GB/s to compress and 1.8 GB/s to decompress per core on a
        16-bit CT); ``"blosc-zstd"`` (Zstandard, byte-shuffle) makes archives
        about 12% smaller and reads about half as fast. Headers are always
        plain Zstandard. See docs/archive.md for sizes per transfer syntax.
    level : int, optional
        Compression level (default per compressor: ``DEFAULT_LEVELS``).
    shards : bool
        Store each Dask chunk as one shard of single-frame inner chunks (few
        files, frame-level reads).
    chunk_mb : float
        Target size of one chunk (one Dask task) in MB.
    deidentify : bool
        Apply the DICOM PS3.15 Basic Profile to headers, attrs and coordinates
        (see :mod:`dcmxr.stores.deid`); the old -> new UID map is returned in
        the report and not stored.
    salt : str
        Make de-identified UIDs reproducible across runs.
    progress : bool
        Show a progress bar (tqdm) over series.
    workers : int, optional
        Threads for header reads and the Dask threaded scheduler.
    overwrite : bool
        Rewrite series that are already complete.
    storage_options : dict, optional
        fsspec options for remote sources.

    Returns
    -------
    ArchiveReport
        Groups written, skipped (already complete) and failed (with reasons).
    """
    import dask

    zarr = _zarr()
    from ..catalog.scan import scan

    if layout not in ("dicom", "ome"):
        raise ValueError(f"layout must be 'dicom' or 'ome', not {layout!r}")
    table = source if isinstance(source, pd.DataFrame) else scan(source, storage_options=storage_options)
    workers = workers or min(8, os.cpu_count() or 1)
    compressors = _compressors(compressor, level)
    entries = series_groups(table)
    try:
        root = zarr.open_group(store, mode="a", zarr_format=3, use_consolidated=False)
        meta = dict(root.attrs).get("dcmxr_archive")
        if meta is None:
            root.attrs["dcmxr_archive"] = {"format": ARCHIVE_FORMAT, "layout": layout}
    except (OSError, PermissionError) as exc:
        raise ExportError(f"cannot write the archive at {store}: {exc}") from exc
    report = ArchiveReport(store=str(store))
    deid = (report.uid_map, salt) if deidentify else None
    bar = _bar(len(entries), progress)
    # Headers are read one series ahead in a background thread: the header walk holds the GIL,
    # decoding and compressing pixels mostly release it, so the two overlap on two cores.
    prefetch = ThreadPoolExecutor(1, thread_name_prefix="dcmxr-headers")
    futures: dict[int, Any] = {}

    def heads_of(i: int):
        if i < len(entries) and i not in futures and deid is None:
            futures[i] = prefetch.submit(read_series_headers, entries[i])
        return futures.get(i)

    try:
        for i, entry in enumerate(entries):
            gpath = entry["path"]
            fut = heads_of(i)
            heads_of(i + 1)
            try:
                built = _build_series(entry, deid=deid, chunk_bytes=int(chunk_mb * 2**20), workers=workers)
                if deid is not None:
                    built["headers"] = _header_dataset(read_series_headers(entry, deid=deid))
                    built = _rename_deid(built, entry)
                marker = built["marker"]
                gpath = next(iter(built["datasets"]))
                if not overwrite and _group_complete(root, gpath, marker):
                    report.skipped.append(gpath)
                    continue
                for p in [gpath] + marker["stacks"]:
                    _delete(root, p)
                heads = built.get("headers")
                if heads is None and fut.done():  # ready: written with the pixels, in one call
                    heads = _series_heads(fut)
                together = heads is not None
                datasets = dict(built["datasets"])
                if together:
                    datasets[gpath] = _merge_heads(datasets[gpath], heads)
                with dask.config.set(scheduler="threads", num_workers=workers):
                    for p, ds in list(datasets.items())[::-1]:  # series group last
                        _write_dataset(store, p, ds, _encoding(ds, compressors, shards))
                        if layout == "ome" and "image" in ds:
                            _write_ome(store, p, ds["image"])
                if not together:  # the headers were still being read: add them now
                    heads = _series_heads(fut)
                    _write_dataset(store, gpath, heads, _encoding(heads, compressors, shards), arrays_only=True)
                if layout == "ome" and _is_slide(entry) and not gpath.rsplit("_", 1)[-1].startswith("fmt"):
                    marker["ome_pyramid"] = write_slide_pyramid(table, entry["uid"], store, gpath)
                g = zarr.open_group(store, path=gpath.strip("/"), mode="r+")
                g.attrs["dcmxr_archive"] = {**marker, "complete": True}
                report.written.append(gpath)
            except (DcmxrError, OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
                report.failed.append({"series_instance_uid": entry["uid"], "group": gpath,
                                      "reason": f"{type(exc).__name__}: {exc}"})
            finally:
                futures.pop(i, None)
                bar.update(1)
    finally:
        for f in futures.values():
            f.cancel()
        prefetch.shutdown(wait=True)
    bar.close()
    try:
        with warnings.catch_warnings():  # zarr notes consolidated metadata is not in the v3 spec
            warnings.simplefilter("ignore", UserWarning)
            zarr.consolidate_metadata(store)
    except Exception as exc:  # consolidation is an optimisation; never lose a finished archive to it
        warnings.warn(f"could not consolidate metadata of {store}: {exc}", DcmxrWarning, stacklevel=2)
    if report.failed:
        warnings.warn(f"{len(report.failed)} series failed to convert: "
                      + "; ".join(f"{f['group']}: {f['reason']}" for f in report.failed[:5]),
                      DcmxrWarning, stacklevel=2)
    return report


#: SOP Class UID of VL Whole Slide Microscopy Image Storage.
WSI_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"
#: Name of the OME-NGFF pyramid subgroup of a slide's series group (``layout="ome"``).
PYRAMID = "pyramid"


def _is_slide(entry: dict) -> bool:
    rows = entry["rows"]
    return (not rows.empty and "sop_class_uid" in rows.columns
            and bool((rows["sop_class_uid"] == WSI_SOP_CLASS).any()))


def write_slide_pyramid(table: pd.DataFrame, series_uid: str, store: Any, group: str) -> str:
    """Write the slide ``series_uid`` of ``table`` as an OME-NGFF multiscale under ``group/pyramid``.

    The slide is opened with :func:`dcmxr.wsi.open_slide` (every level,
    concatenations, sparse tiling) and written by the WSI module's
    :func:`dcmxr.wsi.ome.to_ome_zarr` (OME-NGFF 0.4: ``c, y, x`` levels in
    micrometres, one tile per chunk). The archive's own groups keep the
    stored tiles (lossless round trip); the pyramid is what image viewers and
    ome-zarr-py read.

    Returns
    -------
    str
        The pyramid's group path inside the archive.
    """
    from ..wsi import open_slide
    from ..wsi.ome import to_ome_zarr

    files = sorted(set(table.loc[table["series_instance_uid"] == series_uid, "path"]))
    slide = open_slide(files)
    sub = f"{group.strip('/')}/{PYRAMID}"
    if isinstance(store, (str, os.PathLike)) and "://" not in str(store):
        target: Any = os.path.join(os.fspath(store), *sub.split("/"))
    else:
        from zarr.storage import StorePath

        target = StorePath(store, path=sub)
    to_ome_zarr(slide, target, overwrite=True)
    return "/" + sub


def _series_heads(fut):
    try:
        return _header_dataset(fut.result())
    except Exception as exc:  # pydicom's own errors (e.g. InvalidDicomError) included
        raise DcmxrError(f"cannot read the headers: {type(exc).__name__}: {exc}") from exc


def _merge_heads(ds, heads):
    """The series group's Dataset with its header variables added (attrs kept)."""
    import xarray as xr

    out = xr.merge([ds, heads], combine_attrs="override")
    out.attrs = dict(ds.attrs)
    return out


def _write_ome(store: Any, group: str, image) -> None:
    from .ome import write_ome_metadata

    write_ome_metadata(store, group, image)


def _rename_deid(built: dict, entry: dict) -> dict:
    """Re-derive group names from the de-identified header values."""
    head = json.loads(str(built["headers"]["header"].values[0]))

    def val(tag):
        v = head.get(tag, {}).get("Value")
        return v[0] if v else None

    new_first = {"patient_id": val("00100020") or "", "study_date": val("00080020"),
                 "study_instance_uid": val("0020000D"), "series_number": val("00200011"),
                 "series_description": None, "modality": val("00080060"),
                 "series_instance_uid": val("0020000E")}
    patient = safe_name(new_first["patient_id"], "patient")
    study = f"{safe_name(new_first['study_date'], 'study')}_{_short(new_first['study_instance_uid'])}"
    num = new_first["series_number"]
    series = (f"{safe_name('' if num is None else num, 'S')}_{safe_name(new_first['modality'], 'series')}"
              f"_{_short(new_first['series_instance_uid'])}")
    newpath = f"/{patient}/{study}/{series}"
    old = entry["path"]
    ds_new = {p.replace(old, newpath, 1): d for p, d in built["datasets"].items()}
    marker = dict(built["marker"])
    marker["series_instance_uid"] = new_first["series_instance_uid"]
    marker["stacks"] = [p.replace(old, newpath, 1) for p in marker["stacks"]]
    marker["source"] = [[_short(f), s] for f, s in marker["source"]]
    return {"datasets": ds_new, "marker": marker, "headers": built["headers"]}


def _bar(total: int, enabled: bool):
    if enabled:
        try:
            from tqdm.auto import tqdm

            return tqdm(total=total, desc="series", unit="series")
        except ImportError:  # pragma: no cover - tqdm is a core dependency
            pass

    class _Null:
        def update(self, n):
            pass

        def close(self):
            pass

    return _Null()


def cli_convert(args) -> int:
    """``dcmxr convert SRC DST.zarr``: the CLI body (argparse Namespace in, exit code out).

    Expects ``args.source``, ``args.dest`` and optionally ``args.layout``,
    ``args.compressor``, ``args.level``, ``args.shards``, ``args.deidentify``,
    ``args.uid_map`` (a JSON path for the old -> new UID map), ``args.overwrite``,
    ``args.workers``, ``args.quiet``. Prints a summary; returns 1 when a series
    failed, else 0.
    """
    report = to_zarr(
        args.source if len(args.source) != 1 else args.source[0], args.dest,
        layout=getattr(args, "layout", "dicom"), compressor=getattr(args, "compressor", "blosc-lz4"),
        level=getattr(args, "level", None), shards=getattr(args, "shards", False),
        deidentify=getattr(args, "deidentify", False), overwrite=getattr(args, "overwrite", False),
        workers=getattr(args, "workers", None), progress=not getattr(args, "quiet", False),
    )
    print(f"{args.dest}: {len(report.written)} series written, {len(report.skipped)} already complete, "
          f"{len(report.failed)} failed")
    for f in report.failed:
        print(f"  FAILED {f['group']}: {f['reason']}")
    uid_map_path = getattr(args, "uid_map", None)
    if uid_map_path and report.uid_map:
        with open(uid_map_path, "w") as fh:
            json.dump(report.uid_map, fh, indent=1)
        print(f"UID map ({len(report.uid_map)} UIDs) written to {uid_map_path}; keep it apart from the archive")
    return 1 if report.failed else 0
