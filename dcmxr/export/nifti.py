"""Write a geometry-carrying DataArray as NIfTI-1 (``.nii`` / ``.nii.gz``), streamed.

Layout
------
The NIfTI voxel axes are the array's ``x``, ``y``, ``z`` dims in their index
order (``i`` = ``x``, ``j`` = ``y``, ``k`` = ``z``), then the other dims in
reverse order (``("t", "z", "y", "x")`` -> ``(x, y, z, t)``). NIfTI stores
voxels Fortran-order (``x`` fastest), so the bytes of the file are exactly the
C-order bytes of the array in dim order ``(*other, "z", "y", "x")``: the
writer computes Dask chunks that are contiguous runs of that order and
appends their bytes, one chunk at a time, after the 352-byte header. Peak
memory is a few chunks: uncompressed files take each chunk at its own offset
as soon as Dask computes it (``os.pwrite``); gzip streams compute chunks in
file order, a batch ahead of the compressor. An in-memory (numpy) array skips
Dask: it is written straight from its buffer in slabs of :data:`WRITE_BYTES`
(converted slab by slab when ``dtype=`` asks for it), which is what nibabel
does too. With no scheduler given or configured and ``distributed`` never
imported, the threaded scheduler is used directly (Dask's own default
lookup imports ``distributed``, ~0.2 s on the first call).

Geometry
--------
The affine is the LPS affine of the coordinates (:mod:`dcmxr.geometry.affine`)
flipped to RAS; qform and sform both hold it with code 1 (scanner), as
dcm2niix writes. An irregular axis has no affine: :class:`~dcmxr.errors.GeometryError`
says to resample first. Nothing is reordered: dcm2niix flips rows and may
reverse slices, dcmxr does not, so voxel ``(i, j, k)`` is ``da.isel(x=i, y=j,
z=k)``; both files describe the same voxels in space.

Values
------
Written as they are, with ``scl_slope = 1``, ``scl_inter = 0``: integers keep
their dtype (NIfTI-1 has uint16, int32, int64 ...), floats stay float32 or
float64. ``dtype=`` converts; a conversion that could change a value
(narrower integer, float to integer, integer to a float without enough
mantissa) is checked chunk by chunk and raises :class:`~dcmxr.errors.ExportError`
instead of writing a wrong value. Narrowing float64 to float32 is an explicit
precision choice and is not checked.
"""

from __future__ import annotations

import gzip
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ExportError, GeometryError, missing_dependency
from ..backend.nifti import contiguous_chunks
from ..geometry.affine import lps_to_ras

__all__ = ["to_nifti", "nifti_affine", "nifti_header", "sidecar_paths"]

SPATIAL = ("x", "y", "z")

#: Bytes of decoded data per piece when an array must be re-chunked for writing.
PIECE_BYTES = 64 * 2**20

#: Bytes per write when an in-memory array is written directly (bounds conversion and gzip buffers).
WRITE_BYTES = 16 * 2**20

#: NIfTI-1 datatypes by numpy dtype (native order).
_NIFTI_DTYPES = {
    "uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64",
    "float32", "float64", "complex64", "complex128",
}


def sidecar_paths(path: str | os.PathLike) -> dict[str, Path]:
    """``{"json", "bval", "bvec"}`` paths beside a ``.nii`` / ``.nii.gz`` path."""
    p = Path(path)
    name = p.name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            stem = name[: -len(suffix)]
            break
    else:
        raise ExportError(f"NIfTI path must end in .nii or .nii.gz, got {name!r}")
    return {k: p.with_name(stem + "." + k) for k in ("json", "bval", "bvec")}


def _nifti_layout(da: Any):
    """Return ``(da_canonical, lead_dims)``: spatial dims last as (z, y, x), others first."""
    import xarray as xr

    if not isinstance(da, xr.DataArray):
        raise ExportError(f"to_nifti writes one DataArray, not {type(da).__name__} (select a variable)")
    missing = [ax for ax in SPATIAL if ax not in da.coords]
    if missing:
        raise GeometryError(
            f"to_nifti needs x, y and z coordinates with a 'direction' attr (LPS); this array has no "
            f"{', '.join(repr(m) for m in missing)} coordinate. Open it with dcmxr (open_series, "
            f"open_nifti) or assign coordinates in mm with a 'direction' attr before exporting"
        )
    for ax in SPATIAL:  # a scalar isel keeps the plane: give it back a length-1 dim
        if ax not in da.dims:
            if da.coords[ax].ndim != 0:
                raise GeometryError(f"coordinate {ax!r} is not a dim coordinate (dims {da.coords[ax].dims})")
            attrs = dict(da.coords[ax].attrs)
            da = da.expand_dims(ax)
            da.coords[ax].attrs.update(attrs)
    if "c" in da.dims:
        raise ExportError(
            "to_nifti writes scalar voxels; this array has a colour dim 'c' "
            "(select a channel with .sel(c=...) or convert to grey first)"
        )
    lead = tuple(d for d in da.dims if d not in SPATIAL)
    if len(lead) > 4:
        raise ExportError(f"NIfTI-1 holds at most 7 dims; this array has {da.ndim}: {da.dims}")
    return da.transpose(*lead, "z", "y", "x"), lead


def nifti_affine(da: Any) -> np.ndarray:
    """The RAS affine (NIfTI convention) of the array's x, y, z coordinates.

    Raises
    ------
    GeometryError
        When an axis is irregular (resample onto a regular grid first).
    """
    from ..accessors.spatial import spatial
    from ..geometry.affine import affine_from_coords

    s = spatial(da)
    try:
        lps = affine_from_coords(*s.as_args(), default_spacing=s.default_spacing)
    except GeometryError as exc:
        raise GeometryError(
            f"{exc}. NIfTI needs one affine for the whole grid: resample onto a regular grid first "
            f"(e.g. da.interp(z=np.linspace(z0, z1, n)) keeping the 'direction' attrs), or export the "
            f"regular pieces separately"
        ) from None
    return lps_to_ras(lps)


def _out_dtype(src: np.dtype, dtype: Any) -> np.dtype:
    if dtype is None:
        if src == np.bool_:
            out = np.dtype("uint8")
        elif src.kind == "f" and src.itemsize < 4:
            out = np.dtype("float32")
        else:
            out = src.newbyteorder("=")
    else:
        out = np.dtype(dtype).newbyteorder("=")
    if out.name not in _NIFTI_DTYPES:
        raise ExportError(
            f"NIfTI-1 has no datatype for {out}; pass dtype= one of {sorted(_NIFTI_DTYPES)}"
        )
    return out


def _needs_check(src: np.dtype, out: np.dtype) -> bool:
    """Whether casting ``src`` to ``out`` can change a value (float narrowing is allowed)."""
    if src == out or np.can_cast(src, out, "safe"):
        return False
    if src.kind == "f" and out.kind == "f":
        return False  # explicit precision choice
    if src.kind == "c" and out.kind == "c":
        return False
    return True


def _checked_cast(block: np.ndarray, out: str) -> np.ndarray:
    res = block.astype(out)
    back = res.astype(block.dtype)
    bad = ~((back == block) | (np.isnan(block) & np.isnan(back) if block.dtype.kind in "fc" else False))
    if np.any(bad):
        first = block[bad].ravel()[0]
        raise ExportError(
            f"value {first!r} does not fit {np.dtype(out)} exactly; to_nifti never writes lossy values "
            f"silently: choose a wider dtype= (or round/clip the data yourself first)"
        )
    return res


def nifti_header(da: Any, shape: tuple[int, ...], dtype: np.dtype, affine: np.ndarray):
    """The Nifti1Header dcmxr writes (qform = sform = RAS affine, code 1)."""
    import nibabel as nib

    hdr = nib.Nifti1Header()
    hdr.set_data_shape(shape)
    hdr.set_data_dtype(dtype)
    hdr.set_qform(affine, code=1)
    hdr.set_sform(affine, code=1)
    hdr.set_xyzt_units("mm", "sec")
    hdr["vox_offset"] = 352
    hdr["scl_slope"] = 1.0
    hdr["scl_inter"] = 0.0
    pixdim = hdr["pixdim"].copy()
    tr = da.attrs.get("repetition_time")
    step = None
    if "t" in da.coords and da.coords["t"].ndim == 1 and da.sizes.get("t", 0) > 1:
        tv = np.asarray(da.coords["t"].values, dtype=np.float64)
        if np.all(np.isfinite(tv)):
            step = float((tv[-1] - tv[0]) / (len(tv) - 1))
            hdr["toffset"] = float(tv[0])
    if isinstance(tr, (int, float)) and np.isfinite(tr) and tr > 0:
        pixdim[4] = float(tr) / 1000.0  # dcm2niix: pixdim[4] = TR (s), also for 3-D
    elif step is not None and step > 0:
        pixdim[4] = step
    elif len(shape) > 3:
        pixdim[4] = 1.0
    hdr["pixdim"] = pixdim
    ped = str(da.attrs.get("in_plane_phase_encoding_direction") or "").upper()
    phase = {"ROW": 0, "COL": 1}.get(ped)
    if phase is not None:
        hdr.set_dim_info(freq=1 - phase, phase=phase, slice=2)
    else:
        hdr.set_dim_info(slice=2)
    te = da.attrs.get("echo_time")
    descrip = "dcmxr" + (f";TE={te:g}" if isinstance(te, (int, float)) else "")
    hdr["descrip"] = descrip[:79].encode()
    return hdr


def _convert(block: Any, out_dtype: str, check_from: np.dtype | None) -> np.ndarray:
    arr = np.asarray(block)
    if check_from is not None:
        arr = _checked_cast(arr, out_dtype)
    elif arr.dtype != np.dtype(out_dtype):
        arr = arr.astype(out_dtype)
    return np.ascontiguousarray(arr)


class _PositionalWriter:
    """``dask.array.store`` target writing each contiguous region at its own file offset.

    Regions arrive in any order (Dask's) and go to disk at once with ``os.pwrite``,
    so nothing waits in memory. Used for uncompressed ``.nii``.
    """

    def __init__(self, fd: int, data_offset: int, shape: tuple[int, ...], itemsize: int, out_dtype: str,
                 check_from: np.dtype | None):
        self.fd = fd
        self.base = data_offset
        self.itemsize = itemsize
        self.strides = np.array([int(np.prod(shape[k + 1:], dtype=np.int64)) for k in range(len(shape))])
        self.out_dtype = out_dtype
        self.check_from = check_from
        self.written = 0
        self.lock = threading.Lock()

    def __setitem__(self, key, value) -> None:
        offset = int(np.dot([s.start or 0 for s in key], self.strides)) * self.itemsize
        buf = memoryview(_convert(value, self.out_dtype, self.check_from)).cast("B")
        pos = 0
        while pos < len(buf):
            pos += os.pwrite(self.fd, buf[pos:], self.base + offset + pos)
        with self.lock:
            self.written += len(buf)


def _write_in_order(fh, data, out_dtype: str, check_from: np.dtype | None, scheduler: Any, batch: int) -> None:
    """Compute blocks in file order, ``batch`` at a time, the next batch while writing this one.

    For gzip streams, which only append. Blocks must be contiguous runs whose
    C-order block index is their file order (what :func:`_contiguous` checks).
    """
    import dask
    from concurrent.futures import ThreadPoolExecutor

    blocks = data.to_delayed(optimize_graph=True).ravel().tolist()
    groups = [blocks[i:i + batch] for i in range(0, len(blocks), batch)]
    kw = {} if scheduler is None else {"scheduler": scheduler}

    def compute(group):
        return dask.compute(*group, **kw)

    with ThreadPoolExecutor(1) as ex:
        fut = ex.submit(compute, groups[0]) if groups else None
        for k in range(len(groups)):
            results = fut.result()
            fut = ex.submit(compute, groups[k + 1]) if k + 1 < len(groups) else None
            for block in results:
                fh.write(memoryview(_convert(block, out_dtype, check_from)).cast("B"))
            del results


def _contiguous(chunks: tuple[tuple[int, ...], ...], shape: tuple[int, ...]) -> bool:
    """True when every block is one contiguous run of the C-order array."""
    n = len(shape)
    for a in range(n):
        # a block may span >1 along axis a only if all inner axes are whole
        if any(c > 1 for c in chunks[a]) and not all(len(chunks[b]) == 1 for b in range(a + 1, n)):
            return False
    return True


def to_nifti(
    da: Any,
    path: str | os.PathLike,
    sidecar: bool = True,
    *,
    dtype: Any = None,
    compresslevel: int = 1,
    scheduler: Any = None,
) -> Path:
    """Write a DataArray as NIfTI-1, chunk by chunk, with a BIDS JSON sidecar.

    Parameters
    ----------
    da : xarray.DataArray
        Dims ``x``, ``y``, ``z`` (any order; a scalar spatial coordinate
        counts as a length-1 axis) and up to four others (``t``, ``echo``
        ...); ``x``/``y``/``z`` coordinates in mm with ``direction`` attrs
        (LPS), regularly spaced. Lazy (Dask) or in memory.
    path : str or path-like
        Ends in ``.nii`` or ``.nii.gz`` (gzip level ``compresslevel``).
    sidecar : bool
        Also write ``<stem>.json`` (BIDS fields, see :mod:`dcmxr.export.bids`)
        and, for diffusion arrays, ``<stem>.bval`` / ``<stem>.bvec``.
    dtype : dtype, optional
        Output voxel type; default the array's (bool -> uint8, float16 ->
        float32). Conversions that could change a value are checked.
    compresslevel : int
        gzip level for ``.nii.gz`` (1 = fastest, nibabel's default).
    scheduler : optional
        Dask scheduler for computing the chunks (default: Dask's current).

    Returns
    -------
    pathlib.Path
        The NIfTI path.

    Raises
    ------
    GeometryError
        No x/y/z geometry, or an irregular axis (resample first).
    ExportError
        Bad suffix, colour dim, unsupported dtype, or a value that the
        requested ``dtype`` cannot hold.
    MissingDependencyError
        nibabel is not installed (``pip install 'dcmxr[export]'``).
    """
    try:
        import nibabel  # noqa: F401
    except ImportError:  # pragma: no cover
        raise missing_dependency("nibabel", "export") from None
    import dask.array as dska

    path = Path(path)
    paths = sidecar_paths(path)
    canon, lead = _nifti_layout(da)
    affine = nifti_affine(canon)
    src = np.dtype(canon.dtype)
    out = _out_dtype(src, dtype)
    check = src if _needs_check(src, out) else None
    nifti_shape = (canon.sizes["x"], canon.sizes["y"], canon.sizes["z"]) + tuple(canon.sizes[d] for d in reversed(lead))
    hdr = nifti_header(canon, nifti_shape, out, affine)

    data = canon.data
    in_memory = not isinstance(data, dska.Array)
    scheduler = _local_scheduler(scheduler)
    if in_memory:
        data = np.asarray(data)
    elif not _contiguous(data.chunks, data.shape):
        block = max(int(np.prod(c)) for c in _block_shapes(data.chunks)) * max(out.itemsize, src.itemsize)
        data = data.rechunk(contiguous_chunks(data.shape, max(out.itemsize, src.itemsize), max(block, PIECE_BYTES)))

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    try:
        if in_memory:
            _write_numpy(tmp, hdr, data, out.str, check, path.name.endswith(".gz"), compresslevel)
        elif path.name.endswith(".gz"):
            block_bytes = max(int(np.prod(c)) for c in _block_shapes(data.chunks)) * out.itemsize
            batch = max(1, min(os.cpu_count() or 1, 8, PIECE_BYTES * 4 // max(block_bytes, 1)))
            with gzip.open(tmp, "wb", compresslevel=compresslevel) as fh:
                hdr.write_to(fh)  # 348 bytes + the 4-byte "no extensions" flag: data at vox_offset 352
                _write_in_order(fh, data, out.str, check, scheduler, batch)
        else:
            with open(tmp, "wb") as fh:
                hdr.write_to(fh)
                fh.flush()
                writer = _PositionalWriter(fh.fileno(), int(hdr["vox_offset"]), data.shape, out.itemsize, out.str, check)
                kw = {} if scheduler is None else {"scheduler": scheduler}
                dska.store(data, writer, lock=False, compute=True, **kw)
            expected = int(np.prod(data.shape, dtype=np.int64)) * out.itemsize
            if writer.written != expected:  # pragma: no cover
                raise ExportError(f"internal error: wrote {writer.written} of {expected} bytes")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if sidecar:
        from .bids import write_sidecars

        write_sidecars(canon, paths, affine)
    return path


def _local_scheduler(scheduler: Any) -> Any:
    """The scheduler to compute with: ``scheduler`` if given, else Dask's default, resolved cheaply.

    Dask resolves its default by importing ``distributed`` (about 0.2 s the
    first time) to look for a running client. No client can exist when
    ``distributed`` was never imported, so then (and when no ``scheduler`` is
    configured) the threaded scheduler, which Dask would pick, is used directly.
    """
    import sys

    import dask

    if scheduler is not None or dask.config.get("scheduler", None) is not None:
        return scheduler
    if "distributed" in sys.modules:
        return None  # let Dask find a client, if there is one
    import dask.threaded

    return dask.threaded.get


def _write_numpy(tmp: Path, hdr: Any, arr: np.ndarray, out_dtype: str, check_from: np.dtype | None,
                 gz: bool, compresslevel: int) -> None:
    """Write an in-memory array (already in file order) without Dask: header, then slabs.

    Slabs of about :data:`WRITE_BYTES` along the first axis bound the memory
    of dtype conversion (and of gzip's output buffer); when no conversion is
    needed the slabs are views of the array's own buffer.
    """
    opener = (lambda: gzip.open(tmp, "wb", compresslevel=compresslevel)) if gz else (lambda: open(tmp, "wb"))
    with opener() as fh:
        hdr.write_to(fh)
        if arr.size == 0:
            return
        if arr.ndim == 0:
            arr = arr.reshape(1)
        row = max(arr[0].size * max(np.dtype(out_dtype).itemsize, arr.itemsize), 1)
        step = max(1, WRITE_BYTES // row)
        for i in range(0, arr.shape[0], step):
            fh.write(memoryview(_convert(arr[i:i + step], out_dtype, check_from)).cast("B"))


def _block_shapes(chunks):
    import itertools

    return (tuple(p) for p in itertools.product(*chunks))
