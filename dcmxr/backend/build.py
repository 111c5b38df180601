"""Grid -> lazy xarray.DataArray (Dask graph of FrameRef blocks).

The graph has one task per chunk; each task holds only the FrameRefs of its
own frames and a :class:`~dcmxr.decode.plan.BlockSpec`, so graphs stay small
and run anywhere the paths or URLs resolve.
"""

from __future__ import annotations

import hashlib
import math
import os
from typing import Any

import numpy as np
import pandas as pd

from ..assembly.stack import FRAME_COORDS, Grid
from ..decode.frameref import FrameRef
from ..decode.plan import BlockSpec, load_block
from ..units import ATTR_UNITS

#: Target decoded bytes per chunk for chunks="auto".
AUTO_CHUNK_BYTES = 64 * 2**20

#: Attributes copied to attrs when constant over the array.
SHARED_ATTRS = (
    "modality",
    "patient_id",
    "study_instance_uid",
    "series_instance_uid",
    "frame_of_reference_uid",
    "sop_class_uid",
    "series_number",
    "series_description",
    "study_description",
    "study_date",
    "series_date",
    "protocol_name",
    "body_part_examined",
    "manufacturer",
    "manufacturer_model_name",
    "image_type",
    "slice_thickness",
    "spacing_between_slices",
    "kvp",
    "convolution_kernel",
    "echo_time",
    "repetition_time",
    "inversion_time",
    "flip_angle",
    "magnetic_field_strength",
    "scanning_sequence",
    "sequence_name",
    "photometric_interpretation",
    "rescale_type",
    "gantry_detector_tilt",
    "philips_scale_slope",
    "philips_scale_intercept",
)

_UNIT_OF_ATTR = ATTR_UNITS  # one table, owned by dcmxr.units


def _num(v: Any) -> Any:
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _const(col: pd.Series) -> tuple[bool, Any]:
    """(True, value) when every row holds the same non-missing value."""
    if col.isna().any() or len(col) == 0:
        return False, None
    try:
        same = col.nunique(dropna=False) == 1
    except TypeError:  # unhashable values (lists)
        first = col.iloc[0]
        try:
            same = bool((col == first).all())
        except (TypeError, ValueError):
            same = False
    return bool(same), _num(col.iloc[0])


def stored_dtype(row: pd.Series) -> np.dtype:
    """Dtype of decoded stored values (what pydicom's pixel_array returns)."""
    fp = int(row.get("float_pixels") or 0)
    if fp == 32:
        return np.dtype("float32")
    if fp == 64:
        return np.dtype("float64")
    bits = int(row["bits_allocated"]) if not _is_missing(row.get("bits_allocated")) else 16
    if bits == 1:
        return np.dtype("uint8")
    signed = int(row.get("pixel_representation") or 0) == 1
    photometric = str(row.get("photometric_interpretation") or "")
    if photometric.startswith("YBR") and str(row.get("transfer_syntax_uid", "")).startswith("1.2.840.10008.1.2.4.5"):
        signed = False
    return np.dtype(f"{'i' if signed else 'u'}{max(bits, 8) // 8}")


def _rescale(t: pd.DataFrame, philips: str = "display") -> tuple[np.ndarray, np.ndarray]:
    """Per-frame slope and intercept of the real-world values.

    ``philips="precise"`` applies Philips' floating-point formula
    FP = (PV*RS + RI) / (RS*SS) with the private scale slope SS (2005,100E), as
    dcm2niix does by default; "display" (the default) is the standard DICOM
    RescaleSlope/Intercept value PV*RS + RI.
    """
    n = len(t)
    slope = pd.to_numeric(t["rescale_slope"], errors="coerce").to_numpy(float) if "rescale_slope" in t else np.ones(n)
    icpt = pd.to_numeric(t["rescale_intercept"], errors="coerce").to_numpy(float) if "rescale_intercept" in t else np.zeros(n)
    slope = np.where(np.isfinite(slope), slope, 1.0)
    icpt = np.where(np.isfinite(icpt), icpt, 0.0)
    slope = np.where(slope == 0, 1.0, slope)
    if philips == "precise" and "philips_scale_slope" in t:
        ss = pd.to_numeric(t["philips_scale_slope"], errors="coerce").to_numpy(float)
        ok = np.isfinite(ss) & (ss != 0)
        denom = np.where(ok, slope * np.where(ok, ss, 1.0), 1.0)
        icpt = np.where(ok, icpt / denom, icpt)
        slope = np.where(ok, slope / denom, slope)
    elif philips not in ("display", "precise"):
        raise ValueError(f"philips= must be 'display' or 'precise', not {philips!r}")
    return slope, icpt


def output_dtype(t: pd.DataFrame, stored: np.dtype, slope: np.ndarray, icpt: np.ndarray) -> np.dtype:
    """Smallest dtype holding every rescaled value exactly, decided from headers."""
    if stored.kind == "f":
        return stored if (np.all(slope == 1) and np.all(icpt == 0)) else np.dtype("float32" if stored.itemsize <= 4 else "float64")
    if np.all(slope == 1) and np.all(icpt == 0):
        return stored
    if np.all(np.mod(slope, 1) == 0) and np.all(np.mod(icpt, 1) == 0):
        bits = int(pd.to_numeric(t["bits_stored"], errors="coerce").max()) if "bits_stored" in t else stored.itemsize * 8
        bits = min(bits, stored.itemsize * 8)
        if stored.kind == "i":
            lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        else:
            lo, hi = 0, 2**bits - 1
        # SmallestImagePixelValue/LargestImagePixelValue, when every frame declares them, narrow the
        # stored range (a 16-bit CT with intercept -1024 then fits int16 HU)
        for col, better in (("smallest_image_pixel_value", max), ("largest_image_pixel_value", min)):
            if col in t and t[col].notna().all():
                v = pd.to_numeric(t[col], errors="coerce")
                if v.notna().all():
                    if better is max:
                        lo = max(lo, int(v.min()))
                    else:
                        hi = min(hi, int(v.max()))
        ends = np.concatenate([slope * lo + icpt, slope * hi + icpt])
        vmin, vmax = ends.min(), ends.max()
        for cand in ("uint8", "int8", "uint16", "int16", "uint32", "int32", "int64"):
            info = np.iinfo(cand)
            if info.min <= vmin and vmax <= info.max:
                return np.dtype(cand)
    return np.dtype("float32") if stored.itemsize <= 2 else np.dtype("float64")


def framerefs(t: pd.DataFrame) -> list[FrameRef]:
    """FrameRefs of every table row, built column-wise (no per-row pandas access)."""
    n = len(t)

    def col(name, default):
        if name not in t.columns:
            return [default] * n
        return [default if _is_missing(v) else v for v in t[name].tolist()]

    float_px = [int(v) for v in col("float_pixels", 0)]
    bits = [int(b) if not _is_missing(b) else (32 if f == 32 else 64 if f == 64 else 16)
            for b, f in zip(col("bits_allocated", None), float_px)]
    rows = [int(r) for r in col("rows", 0)]
    cols = [int(c) for c in col("columns", 0)]
    srows = col("stored_rows", None)
    scols = col("stored_columns", None)
    bstored = col("bits_stored", None)
    out = []
    for i, (path, off, length, ts, spp, pr, pi, pc, frame, bo, df) in enumerate(zip(
            col("path", ""), col("pixel_offset", 0), col("pixel_length", 0), col("transfer_syntax_uid", ""),
            col("samples_per_pixel", 1), col("pixel_representation", 0),
            col("photometric_interpretation", "MONOCHROME2"), col("planar_configuration", 0),
            col("frame", 0), col("bit_offset", 0), col("deflate_from", None))):
        out.append(FrameRef(
            url=str(path), offset=int(off), length=int(length), transfer_syntax=str(ts),
            rows=int(srows[i]) if srows[i] is not None else rows[i],
            columns=int(scols[i]) if scols[i] is not None else cols[i],
            samples_per_pixel=int(spp), bits_allocated=bits[i],
            bits_stored=int(bstored[i]) if bstored[i] is not None else bits[i],
            pixel_representation=int(pr), photometric_interpretation=str(pi or "MONOCHROME2"),
            planar_configuration=int(pc), frame_index=int(frame), bit_offset=int(bo),
            deflate_from=None if df is None else int(df), float_pixels=float_px[i],
        ))
    return out


class FrameStack:
    """A lazy, picklable array of frames: what ``dask.array.from_array`` reads from.

    ``stack[key]`` decodes only the frames that ``key`` selects along the leading
    (frame-grid) dims, then applies the in-plane part of the key. Holds FrameRefs
    and per-row rescale values only: no file handles, no pydicom objects.
    """

    def __init__(self, refs, index, frame_shape, dtype, slopes=None, intercepts=None, crops=None,
                 threads=1, storage_options=None, fill=0):
        self.refs = refs
        self.index = index
        self.frame_shape = tuple(frame_shape)
        self.dtype = np.dtype(dtype)
        self.slopes = slopes
        self.intercepts = intercepts
        self.crops = crops
        self.threads = threads
        self.storage_options = storage_options
        self.fill = fill
        self.shape = tuple(index.shape) + self.frame_shape
        self.ndim = len(self.shape)
        self.token: str | None = None

    def __dask_tokenize__(self):
        # a content hash (build_dataarray sets it): dask would otherwise pickle the whole frame
        # list to tokenize the stack (~3 ms for 300 frames)
        if self.token is None:
            self.token = hashlib.sha1(repr((
                [(r.url, r.offset, r.length, r.transfer_syntax, r.frame_index) if r is not None else None
                 for r in self.refs],
                self.index.tobytes(), self.index.shape, self.frame_shape, self.dtype.str, self.slopes,
                self.intercepts, self.crops, self.threads, self.fill,
            )).encode()).hexdigest()
        return ("dcmxr.FrameStack", self.token)

    def block_task(self, lead_key: tuple) -> tuple:
        """``(load_block, (refs, spec))`` for the frames selected by ``lead_key``."""
        idx = self.index[lead_key]
        flat = np.asarray(idx).ravel()
        spec = BlockSpec(
            shape=np.shape(idx),
            frame_shape=self.frame_shape,
            dtype=self.dtype.str,
            slopes=None if self.slopes is None else tuple(self.slopes[i] if i >= 0 else 1.0 for i in flat),
            intercepts=None if self.intercepts is None else tuple(self.intercepts[i] if i >= 0 else 0.0 for i in flat),
            crops=None if self.crops is None else tuple(self.crops[i] if i >= 0 else None for i in flat),
            fill=self.fill,
            threads=self.threads,
            storage_options=self.storage_options,
        )
        refs = tuple(self.refs[i] if i >= 0 else None for i in flat)
        return load_block, (refs, spec)

    def __getitem__(self, key):
        if not isinstance(key, tuple):
            key = (key,)
        if any(k is Ellipsis for k in key):
            i = next(j for j, k in enumerate(key) if k is Ellipsis)
            key = key[:i] + (slice(None),) * (self.ndim - len(key) + 1) + key[i + 1:]
        key = key + (slice(None),) * (self.ndim - len(key))
        nlead = self.index.ndim
        func, (refs, spec) = self.block_task(key[:nlead])
        block = func(refs, spec)
        inner = key[nlead:]
        if all(isinstance(k, slice) and k == slice(None) for k in inner):
            return block
        return block[(slice(None),) * len(spec.shape) + inner]

    def __repr__(self) -> str:
        return f"FrameStack(shape={self.shape}, dtype={self.dtype}, frames={len(self.refs)})"


_NATIVE_SYNTAXES = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2")


def _load_threads(stack: FrameStack) -> int:
    """Threads for a whole-array load under the current Dask scheduler setting.

    Synchronous: the stack's own ``threads``. Uncompressed: 1 (a memory copy from the
    page cache; threads only add overhead). Otherwise the Dask worker count (``num_workers``,
    else the CPU count), at least the stack's ``threads``.
    """
    import dask

    if dask.config.get("scheduler", None) in ("sync", "synchronous", "single-threaded"):
        return max(int(stack.threads), 1)
    if all(r.transfer_syntax in _NATIVE_SYNTAXES for r in stack.refs if r is not None):
        return 1
    workers = dask.config.get("num_workers", None) or os.cpu_count() or 1
    return max(int(workers), int(stack.threads), 1)


def load_into(data, out: np.ndarray) -> bool:
    """Decode an untransformed dcmxr Dask array straight into ``out`` (``da.dcm.load()``).

    Local frames are decoded as **one** block over the whole array: every frame is a task
    of :func:`dcmxr.decode.codecs.map_in_threads`, so the threads (the caller plus the
    shared decoder pool) take the next frame as they become free, with no per-chunk barrier
    and no chunk handed whole to a worker that may be descheduled. Remote frames keep one
    block per chunk (one coalesced request per file and chunk).

    Parameters
    ----------
    data : dask.array.Array
        The ``.data`` of an array from :func:`build_dataarray` (no operations applied).
    out : numpy.ndarray
        C-contiguous, ``data.shape`` and ``data.dtype``.

    Returns
    -------
    bool
        False (nothing done) when ``data`` is not a plain FrameStack graph or ``out`` does not
        fit; the caller then computes it another way.
    """
    from dataclasses import replace

    graph = dict(data.__dask_graph__())
    stacks = [v for v in graph.values() if isinstance(v, FrameStack)]
    if (len(stacks) != 1 or len(graph) != int(np.prod(data.numblocks)) + 1
            or out.shape != stacks[0].shape or out.dtype != stacks[0].dtype or not out.flags.c_contiguous):
        return False
    stack = stacks[0]
    threads = _load_threads(stack)
    nlead = stack.index.ndim
    remote = any(r is not None and "://" in r.url and not r.url.startswith("file://") for r in stack.refs)
    if not remote:
        func, (refs, spec) = stack.block_task((slice(None),) * nlead)
        func(refs, replace(spec, threads=threads), out=out)
        return True
    starts = [np.cumsum((0,) + tuple(c)).tolist() for c in data.chunks[:nlead]]

    def one(block):
        lead = tuple(slice(starts[d][b], starts[d][b + 1]) for d, b in enumerate(block))
        func, (refs, spec) = stack.block_task(lead)
        target = out[lead]
        if target.flags.c_contiguous:
            func(refs, spec, out=target)
        else:
            target[...] = func(refs, spec)

    blocks = list(np.ndindex(*data.numblocks[:nlead]))
    if threads == 1 or len(blocks) == 1:
        for b in blocks:
            one(b)
    else:  # its own pool: the chunks themselves may use the shared decoder pool
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(min(threads, len(blocks))) as pool:
            list(pool.map(one, blocks))
    return True


def _chunks_along(n: int, size: int) -> tuple[int, ...]:
    size = max(1, min(size, n)) if n else 1
    full, rest = divmod(n, size)
    return (size,) * full + ((rest,) if rest else ())


def plan_chunks(lead_shape: tuple[int, ...], lead_dims: tuple[str, ...], frame_bytes: int,
                chunks: Any) -> tuple[tuple[int, ...], ...]:
    """Chunk sizes for the leading (frame) dims; y/x/c are never split."""
    if chunks == "auto" or chunks is None or chunks == {}:
        per = max(1, AUTO_CHUNK_BYTES // max(frame_bytes, 1))
        out = []
        for k, n in enumerate(reversed(lead_shape)):  # fill the innermost frame dim first
            take = min(n, per)
            if k == 0 and n > 1:
                # equal chunks, and a number of them that the worker threads divide evenly
                workers = os.cpu_count() or 1
                count = -(-n // take)
                if count > 1 or n * frame_bytes > AUTO_CHUNK_BYTES // 4:
                    count = min(n, -(-max(count, workers) // workers) * workers)
                take = -(-n // count)
            out.append(_chunks_along(n, take))
            per = max(1, per // max(n, 1))
        return tuple(reversed(out))
    if isinstance(chunks, int):
        chunks = {lead_dims[-1]: chunks}
    if isinstance(chunks, dict):
        auto = plan_chunks(lead_shape, lead_dims, frame_bytes, "auto")
        out = []
        for d, n, a in zip(lead_dims, lead_shape, auto):
            if d not in chunks:
                out.append(a)
                continue
            c = chunks[d]
            out.append(_chunks_along(n, n if c in (-1, None) else int(c)))
        return tuple(out)
    if isinstance(chunks, (tuple, list)):
        return tuple(_chunks_along(n, n if c in (-1, None) else int(c)) for n, c in zip(lead_shape, chunks))
    raise TypeError(f"chunks must be 'auto', an int, a dict or a tuple, not {chunks!r}")


def build_dataarray(grid: Grid, *, raw: bool = False, chunks: Any = "auto", threads: int = 1,
                    name: str | None = None, storage_options: dict | None = None,
                    philips: str = "display"):
    """Make the lazy DataArray for a grid.

    Parameters
    ----------
    grid : Grid
    raw : bool
        Keep stored values (no Modality LUT / rescale).
    chunks : "auto", int, dict or tuple
        Frames per chunk along the leading dims (y and x are whole).
    threads : int
        Decoder threads inside one task.

    Returns
    -------
    xarray.DataArray
    """
    import dask.array as dska
    import xarray as xr

    t = grid.table
    first = t.iloc[0]
    lead_shape = grid.index.shape
    rows, cols = int(first["rows"]), int(first["columns"])
    spp = int(first.get("samples_per_pixel") or 1)
    frame_shape = (rows, cols) if spp == 1 else (rows, cols, spp)
    stored = stored_dtype(first)
    if spp > 1 and str(first.get("photometric_interpretation", "")).startswith("YBR"):
        stored = np.dtype("uint8") if stored.itemsize == 1 else stored
    slope, icpt = _rescale(t, philips)
    dtype = stored if raw else output_dtype(t, stored, slope, icpt)

    refs = framerefs(t)
    crops = None
    if "tile_row0" in t.columns:
        crops = tuple(None if _is_missing(a) else (int(a), int(b)) for a, b in zip(t["tile_row0"], t["tile_col0"]))
    frame_bytes = int(np.prod(frame_shape)) * dtype.itemsize
    lead_chunks = plan_chunks(lead_shape, grid.lead_dims, frame_bytes, chunks)
    stack = FrameStack(
        refs=tuple(refs),
        index=np.ascontiguousarray(grid.index, dtype=np.int64),
        frame_shape=frame_shape,
        dtype=dtype.str,
        slopes=None if raw else tuple(float(v) for v in slope),
        intercepts=None if raw else tuple(float(v) for v in icpt),
        crops=crops,
        threads=threads,
        storage_options=storage_options or None,
    )
    # a content hash of the frame list (cheaper than tokenizing every FrameRef dataclass)
    token = hashlib.sha1(repr((
        [(r.url, r.offset, r.length, r.transfer_syntax, r.frame_index) for r in stack.refs],
        crops, raw, str(dtype), lead_chunks, grid.index.tobytes(), stack.slopes, stack.intercepts,
        frame_shape, threads,
    )).encode()).hexdigest()
    stack.token = token
    all_chunks = lead_chunks + tuple((n,) for n in frame_shape)
    # from_array + a lazy getter: dask folds slicing (isel) into the read, so a slice of a
    # chunk decodes only the frames it needs; the FrameStack is one graph key shared by the
    # chunk tasks (no per-task copy of the frame list)
    data = dska.from_array(stack, chunks=all_chunks, name=f"dicom-{token}", inline_array=False,
                           asarray=False, fancy=True, meta=np.empty((0,) * len(stack.shape), dtype=dtype))

    dims = grid.lead_dims + ("y", "x") + (("c",) if spp > 1 else ())
    coords: dict[str, Any] = {}
    if grid.coords:
        for ax in ("x", "y", "z"):
            coords[ax] = xr.Variable(
                ax, grid.coords[ax],
                attrs={"units": "mm", "direction": [float(v) for v in grid.coords[f"dir_{ax}"]],
                       "long_name": f"{ax} position along its direction (LPS)"},
            )
    for d, (vals, cattrs) in grid.lead_coords.items():
        coords[d] = xr.Variable(d, _tidy(np.asarray(list(vals), dtype=object)) if len(vals) else vals,
                                attrs={k: v for k, v in cattrs.items() if v is not None})
    for cname, (edims, vals, cattrs) in grid.lead_extra.items():
        coords[cname] = xr.Variable(edims, _tidy(np.asarray(list(vals), dtype=object)),
                                   attrs={k: v for k, v in cattrs.items() if v is not None})
    if spp > 1:
        coords["c"] = ("c", list("RGB") if spp == 3 else list(range(spp)))

    attrs: dict[str, Any] = {}
    for col in SHARED_ATTRS:
        if col in t.columns:
            same, val = _const(t[col])
            if same and not _is_missing(val):
                attrs[col] = val
    _frame_coords(grid, t, coords, attrs)
    if not raw:
        units = _value_units(t, attrs)
        if units:
            attrs["units"] = units
    if grid.tilt_deg > 0.05:
        attrs["tilt_deg"] = round(grid.tilt_deg, 4)
    encoding = {
        "transfer_syntax_uid": str(first["transfer_syntax_uid"]),
        "stored_dtype": stored.str,
        "preferred_chunks": {d: c[0] for d, c in zip(grid.lead_dims, lead_chunks)},
    }
    same_s, s0 = _const(pd.Series(slope))
    same_i, i0 = _const(pd.Series(icpt))
    if same_s and same_i:
        encoding["rescale_slope"] = float(s0)
        encoding["rescale_intercept"] = float(i0)
    da = xr.DataArray(data, dims=dims, coords=coords, attrs=attrs, name=name)
    da.encoding.update(encoding)
    return da


def _value_units(t: pd.DataFrame, attrs: dict) -> str | None:
    rt = attrs.get("rescale_type")
    if isinstance(rt, str) and rt.strip():
        return {"HU": "HU", "US": None, "MGML": "mg/ml"}.get(rt.strip().upper(), None)
    if attrs.get("modality") == "CT":
        return "HU"
    return None


def _frame_coords(grid: Grid, t: pd.DataFrame, coords: dict, attrs: dict) -> None:
    """Per-frame attributes that vary -> non-dim coords on the frame dims."""
    idx = grid.index
    dims = grid.lead_dims
    for col in FRAME_COORDS:
        if col not in t.columns or col in grid.lead_extra or col in grid.lead_coords:
            continue
        if t[col].isna().all():
            continue
        same, val = _const(t[col])
        if same:
            continue
        vals = t[col].to_numpy(dtype=object)
        arr = np.empty(idx.shape, dtype=object)
        arr[...] = None
        ok = idx >= 0
        arr[ok] = vals[idx[ok]]
        # reduce to the dims it varies along
        use_dims = list(dims)
        for ax in range(len(dims) - 1, -1, -1):
            if len(use_dims) > 1 and _constant_along(arr, ax):
                arr = np.take(arr, 0, axis=ax)
                use_dims.pop(ax)
        use_dims = tuple(use_dims)
        arr = _tidy(arr)
        coords[_COORD_NAMES.get(col, col)] = xr_var(use_dims, arr)


#: table column -> coordinate name where they differ
_COORD_NAMES = {"frame": "frame_index"}


def _constant_along(arr: np.ndarray, axis: int) -> bool:
    ref = np.take(arr, [0], axis=axis)
    return bool(np.all(arr == ref))


def _tidy(arr: np.ndarray) -> np.ndarray:
    flat = [v for v in arr.ravel() if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if flat and all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in flat):
        out = np.array([np.nan if _is_missing(v) else float(v) for v in arr.ravel()]).reshape(arr.shape)
        if all(float(v).is_integer() for v in flat) and len(flat) == arr.size:
            return out.astype(np.int64)
        return out
    return np.array(["" if _is_missing(v) else str(v) for v in arr.ravel()], dtype=object).reshape(arr.shape)


def xr_var(dims, values):
    import xarray as xr

    return xr.Variable(dims, values)
