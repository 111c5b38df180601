"""Byte-range proofs: what opening and computing actually read, and what goes into the graph.

Two independent counting readers:

* local files: ``os.open`` / ``os.pread`` / ``os.preadv`` / ``os.read`` / ``os.readv``
  and ``builtins.open`` are wrapped, so every byte any dcmxr layer (catalog,
  decode) reads from a series file is logged as ``(path, start, stop)``;
* fsspec: a ``MemoryFileSystem`` subclass (``countmem://``) logs every
  ``cat_file`` range and every ``open``.

Opening a series reads headers only. The header walker's first read is one
fixed 8 KiB block from offset 0 (it cannot know where Pixel Data starts before
reading), and for encapsulated data the catalog reads each fragment's 8-byte
item header plus a few codestream bytes to find frame boundaries; nothing else
inside any frame's ``[pixel_offset, pixel_offset + pixel_length)`` is read. The
tests assert exactly that. Computing one slice (one-frame chunks) reads exactly
that frame's byte range, in one request, and nothing else.
"""
from __future__ import annotations

import builtins
import dataclasses
import io
import os
import pickle
import types
from pathlib import Path

import numpy as np
import pytest

import dcmxr
from dcmxr.assembly.series import select_series
from dcmxr.assembly.stack import assemble, choose_stack, split_stacks
from dcmxr.decode.frameref import FrameRef
from dcmxr.decode.plan import BlockSpec

from _data import data_path

pytestmark = pytest.mark.filterwarnings("ignore::dcmxr.errors.GeometryWarning")

#: First header read of dcmxr.catalog.header.read_header (bytes from offset 0).
HEADER_PREFETCH = 8192
#: Largest read the catalog may make at a fragment item (8-byte header + codestream peek).
ITEM_PEEK = 64

UNCOMPRESSED = {
    "ct_single_frame_files": ("ct", "dcmqi", "ct-3slice"),  # Implicit VR LE, 3 files
    "multiframe_native": ("transfer_syntax", "pydicom-data", "emri_small.dcm"),  # 10 frames, one file
}
ENCAPSULATED = {
    "jpegls_single_frame_files": ("transfer_syntax", "dicom2nifti", "compressed_jpegls", "001"),
    "multiframe_jpegls": ("transfer_syntax", "pydicom-data", "emri_small_jpeg_ls_lossless.dcm"),
    "multiframe_rle": ("transfer_syntax", "pydicom-data", "emri_small_RLE.dcm"),
}
ALL = {**UNCOMPRESSED, **ENCAPSULATED}


# --------------------------------------------------------------------------- counting readers


class LocalReadLog:
    """Logs every byte range read from files under ``root`` through os.* and open()."""

    def __init__(self, monkeypatch, root: Path):
        self.root = str(root)
        self.reads: list[tuple[str, int, int]] = []
        self.opens: list[str] = []
        fds: dict[int, str] = {}
        o_open, o_close = os.open, os.close
        o_pread, o_preadv, o_read, o_readv = os.pread, getattr(os, "preadv", None), os.read, getattr(os, "readv", None)
        o_lseek = os.lseek
        o_bopen = builtins.open
        log = self

        def mine(path) -> bool:
            return isinstance(path, (str, os.PathLike)) and os.fspath(path).startswith(log.root)

        def w_open(path, flags, *a, **k):
            fd = o_open(path, flags, *a, **k)
            if mine(path):
                fds[fd] = os.fspath(path)
            return fd

        def w_close(fd):
            fds.pop(fd, None)
            return o_close(fd)

        def w_pread(fd, n, off):
            b = o_pread(fd, n, off)
            if fd in fds:
                log.reads.append((fds[fd], off, off + len(b)))
            return b

        def w_preadv(fd, bufs, off):
            n = o_preadv(fd, bufs, off)
            if fd in fds:
                log.reads.append((fds[fd], off, off + n))
            return n

        def w_read(fd, n):
            pos = o_lseek(fd, 0, os.SEEK_CUR) if fd in fds else 0
            b = o_read(fd, n)
            if fd in fds:
                log.reads.append((fds[fd], pos, pos + len(b)))
            return b

        def w_readv(fd, bufs):
            pos = o_lseek(fd, 0, os.SEEK_CUR) if fd in fds else 0
            n = o_readv(fd, bufs)
            if fd in fds:
                log.reads.append((fds[fd], pos, pos + n))
            return n

        def w_bopen(file, mode="r", *a, **k):
            if mine(file):
                log.opens.append(os.fspath(file))
            return o_bopen(file, mode, *a, **k)

        monkeypatch.setattr(os, "open", w_open)
        monkeypatch.setattr(os, "close", w_close)
        monkeypatch.setattr(os, "pread", w_pread)
        monkeypatch.setattr(os, "read", w_read)
        if o_preadv is not None:
            monkeypatch.setattr(os, "preadv", w_preadv)
        if o_readv is not None:
            monkeypatch.setattr(os, "readv", w_readv)
        monkeypatch.setattr(builtins, "open", w_bopen)
        monkeypatch.setattr(io, "open", w_bopen)

    def clear(self) -> None:
        self.reads.clear()
        self.opens.clear()


def _counting_fs_class():
    from fsspec.implementations.memory import MemoryFileSystem

    class CountingMemoryFS(MemoryFileSystem):
        """In-memory filesystem that logs every byte range served."""

        protocol = "countmem"
        store: dict = {}
        pseudo_dirs = [""]
        reads: list = []
        opens: list = []

        @classmethod
        def _strip_protocol(cls, path):
            if isinstance(path, str) and path.startswith("countmem://"):
                path = path[len("countmem://"):]
            return super()._strip_protocol(path)

        def cat_file(self, path, start=None, end=None, **kwargs):
            data = super().cat_file(path, start, end, **kwargs)
            p = self._strip_protocol(path)
            s = 0 if start is None else (start if start >= 0 else self.size(p) + start)
            self.reads.append((self.unstrip_protocol(p), s, s + len(data)))
            return data

        def _open(self, path, mode="rb", *a, **kw):
            self.opens.append(self._strip_protocol(path))
            return super()._open(path, mode, *a, **kw)

    return CountingMemoryFS


@pytest.fixture
def countmem():
    import fsspec

    cls = _counting_fs_class()
    fsspec.register_implementation("countmem", cls, clobber=True)
    cls.store.clear()
    cls.pseudo_dirs[:] = [""]
    cls.reads.clear()
    cls.opens.clear()
    yield cls
    cls.store.clear()


def _load_into(fs_cls, src: Path, name: str) -> str:
    """Copy a file or folder of DICOM into the counting memory filesystem; return its URL."""
    fs = fs_cls()
    files = [src] if src.is_file() else sorted(p for p in src.iterdir() if p.is_file())
    for f in files:
        rel = f"/{name}/{f.name}"
        fs.pipe_file(rel, f.read_bytes())
    return f"countmem://{name}" if src.is_dir() else f"countmem://{name}/{src.name}"


# --------------------------------------------------------------------------- helpers


def _grid(table):
    chosen, _ = choose_stack(split_stacks(select_series(table, None)), None)
    return assemble(chosen)


def _frame_ranges(table) -> dict[str, list[tuple[int, int]]]:
    out: dict[str, list[tuple[int, int]]] = {}
    for p, off, n in zip(table["path"], table["pixel_offset"], table["pixel_length"]):
        out.setdefault(str(p), []).append((int(off), int(off) + int(n)))
    return out


def _norm(path: str) -> str:
    return path[len("file://"):] if path.startswith("file://") else path


def _check_open_reads(reads, table) -> None:
    """Reads while opening touch no pixel payload: only the header prefetch and item headers."""
    frames = {_norm(k): v for k, v in _frame_ranges(table).items()}
    item_starts = {_norm(k): set() for k in frames}
    encapsulated = not str(table["transfer_syntax_uid"].iloc[0]).startswith(("1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2")) \
        and str(table["transfer_syntax_uid"].iloc[0]) != "1.2.840.10008.1.2"
    for path, start, stop in reads:
        path = _norm(path)
        for f0, f1 in frames.get(path, []):
            overlap = min(stop, f1) - max(start, f0)
            if overlap <= 0:
                continue
            if start == 0 and stop <= HEADER_PREFETCH:
                continue  # the fixed first header read of read_header
            assert encapsulated and stop - start <= ITEM_PEEK, (
                f"opening read bytes {start}-{stop} of {path}, inside frame range {f0}-{f1}"
            )
            item_starts[path].add(start)
    # and per frame, at most ITEM_PEEK bytes per fragment header were read
    for path, starts in item_starts.items():
        for f0, f1 in frames[path]:
            inside = [s for s in starts if f0 <= s < f1]
            assert len(inside) * ITEM_PEEK < (f1 - f0), f"{path}: frame {f0}-{f1} read almost whole while opening"


def _lead(da) -> str:
    return da.dims[0]


# --------------------------------------------------------------------------- local files


@pytest.mark.parametrize("key", list(ALL))
def test_local_open_reads_no_pixel_payload_and_slice_reads_only_its_frame(key, monkeypatch):
    pydicom = pytest.importorskip("pydicom")
    src = data_path(*ALL[key])
    root = src if src.is_dir() else src.parent
    log = LocalReadLog(monkeypatch, root)

    da = dcmxr.open_series(str(src), chunks=1, raw=True)
    table = dcmxr.scan(str(src))
    _check_open_reads(log.reads, table)
    assert log.opens == []  # no buffered/pydicom whole-file access for these files
    grid = _grid(table)
    assert da.sizes[_lead(da)] == len(grid.table)

    for k in (0, da.sizes[_lead(da)] // 2, da.sizes[_lead(da)] - 1):
        log.clear()
        vals = da.isel({_lead(da): k}).values
        row = grid.table.iloc[int(grid.index.reshape(-1)[k])]
        path, off, n = str(row["path"]), int(row["pixel_offset"]), int(row["pixel_length"])
        assert log.reads == [(path, off, off + n)], f"slice {k}: read {log.reads}, frame is {path} {off}+{n}"
        assert log.opens == []
        # the bytes read are that frame's: they decode to pydicom's frame
        ds = pydicom.dcmread(path)
        ref = ds.pixel_array
        if int(getattr(ds, "NumberOfFrames", 1) or 1) > 1:
            ref = ref[int(row["frame"])]
        np.testing.assert_array_equal(vals, ref)


def test_local_multi_frame_chunk_reads_only_its_frames(monkeypatch):
    """A 3-frame chunk of a 10-frame file reads those three frames' bytes (one coalesced request)."""
    src = data_path(*UNCOMPRESSED["multiframe_native"])
    log = LocalReadLog(monkeypatch, src.parent)
    da = dcmxr.open_series(str(src), chunks=3)
    table = dcmxr.scan(str(src))
    log.clear()
    da.isel({_lead(da): slice(3, 6)}).values
    (path, start, stop), = log.reads
    rows = table.set_index("frame").loc[[3, 4, 5]]
    assert start == int(rows["pixel_offset"].min())
    assert stop == int((rows["pixel_offset"] + rows["pixel_length"]).max())


# --------------------------------------------------------------------------- fsspec


@pytest.mark.parametrize("key", ["ct_single_frame_files", "multiframe_native", "jpegls_single_frame_files",
                                 "multiframe_jpegls"])
def test_fsspec_open_and_slice_byte_ranges(key, countmem):
    src = data_path(*ALL[key])
    url = _load_into(countmem, src, key)

    da = dcmxr.open_series(url, chunks=1, raw=True)
    open_reads = list(countmem.reads)
    assert open_reads, "the counting filesystem saw no reads at all"
    table = dcmxr.scan(url)
    _check_open_reads(open_reads, table)
    grid = _grid(table)

    n = da.sizes[_lead(da)]
    ref = dcmxr.open_series(str(src), chunks=1, raw=True).values
    for k in (0, n - 1):
        countmem.reads.clear()
        countmem.opens.clear()
        vals = da.isel({_lead(da): k}).values
        row = grid.table.iloc[int(grid.index.reshape(-1)[k])]
        off, length = int(row["pixel_offset"]), int(row["pixel_length"])
        assert countmem.reads == [(str(row["path"]), off, off + length)]
        assert countmem.opens == []
        np.testing.assert_array_equal(vals, ref[k])


# --------------------------------------------------------------------------- graph contents


_ALLOWED_LEAVES = (str, bytes, int, float, bool, type(None), np.integer, np.floating, np.dtype)


def _is_frame_stack(obj) -> bool:
    from dcmxr.backend.build import FrameStack

    return isinstance(obj, FrameStack)


def _walk(obj, seen: set, found: list) -> None:
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, _ALLOWED_LEAVES):
        return
    if isinstance(obj, (tuple, list)):
        for x in obj:
            _walk(x, seen, found)
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            _walk(k, seen, found)
            _walk(v, seen, found)
        return
    if isinstance(obj, (types.FunctionType, types.BuiltinFunctionType)):
        if not obj.__module__.startswith("dcmxr."):
            found.append(f"function from {obj.__module__}: {obj!r}")
        if getattr(obj, "__closure__", None):
            found.append(f"closure {obj!r}")
        return
    if isinstance(obj, np.ndarray) and obj.dtype.kind in "iuf":
        return  # the frame-grid index of a FrameStack
    if _is_frame_stack(obj):
        for v in vars(obj).values():
            _walk(v, seen, found)
        return
    if dataclasses.is_dataclass(obj) and type(obj).__module__.startswith("dcmxr."):
        for f in dataclasses.fields(obj):
            _walk(getattr(obj, f.name), seen, found)
        return
    found.append(f"{type(obj).__module__}.{type(obj).__qualname__}")


def _graph_problems(graph: dict) -> list[str]:
    found: list[str] = []
    _walk(graph, set(), found)
    return found


@pytest.mark.parametrize("key", ["ct_single_frame_files", "multiframe_jpegls"])
@pytest.mark.parametrize("cache", [False, True], ids=["plain", "cached"])
def test_graph_is_small_plain_and_picklable(key, cache, tmp_path):
    cloudpickle = pytest.importorskip("cloudpickle")
    if cache:
        pytest.importorskip("zarr")
    src = data_path(*ALL[key])
    da = dcmxr.open_series(str(src), chunks=1, cache=str(tmp_path / "c.zarr") if cache else None)
    graph = dict(da.data.__dask_graph__())
    n_frames = da.sizes[_lead(da)]
    if cache:
        assert len(graph) == n_frames
        # only plain values, dcmxr's frozen dataclasses and dcmxr functions: no Dataset, file handle, closure
        assert _graph_problems(graph) == []
    else:
        # one getter task per chunk on one shared FrameStack (the frame list is in the graph once)
        stacks = [v for v in graph.values() if _is_frame_stack(v)]
        assert len(stacks) == 1 and len(graph) == n_frames + 1
        assert all("getter" in repr(t) for t in graph.values() if not _is_frame_stack(t))
        assert _graph_problems({"stack": stacks[0]}) == []
        refs = [r for r in stacks[0].refs if isinstance(r, FrameRef)]
        assert len(refs) == n_frames
        func, (brefs, spec) = stacks[0].block_task((slice(0, 1),))
        assert isinstance(spec, BlockSpec) and len(brefs) == 1

    blob = pickle.dumps(graph)
    assert len(blob) / n_frames < 1024, f"{len(blob) / n_frames:.0f} bytes per frame"
    for bad in (b"pydicom.dataset", b"FileDataset", b"BufferedReader", b"FileIO", b"TextIOWrapper"):
        assert bad not in blob

    # cloudpickle round trip (what dask.distributed ships) computes the same values
    import dask.array as dska

    back = cloudpickle.loads(cloudpickle.dumps(da))
    np.testing.assert_array_equal(back.values, da.values)
    arr = dska.Array(cloudpickle.loads(cloudpickle.dumps(graph)), da.data.name, da.data.chunks, da.dtype)
    np.testing.assert_array_equal(arr.compute(scheduler="sync"), da.values)
