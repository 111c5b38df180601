"""A pyramid level's tiles: where each lies, and reading any rectangle of them.

:class:`LevelReader` is the one reader behind a level: the Dask chunks of the
lazy DataArray (through :class:`LevelArray`, an array-like handed to
``dask.array.from_array``, so slicing folds into the read and only the tiles
under the selection are fetched) and the direct region reads of
:func:`dcmxr.wsi.read_region` (no Dask at all).

A read finds the stored frames intersecting the rectangle (a tile grid lookup,
or a vectorised overlap test for unaligned sparse tiles), fetches their byte
ranges with one coalesced read per file, decodes them in a shared thread pool
(libjpeg-turbo releases the GIL) and pastes each into the output as it is
decoded; no frame covers -> the background ``fill``.
"""

from __future__ import annotations

import dataclasses
import itertools
import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..decode.frameref import FrameRef
from ..errors import GeometryError, InvalidDicomError
from .frames import FrameIndex
from .headers import WsiHeader

__all__ = ["LevelReader", "LevelArray", "TILE_CACHE_BYTES"]

#: Decoded tiles kept for region reads (bytes); 0 disables the cache.
TILE_CACHE_BYTES = 256 * 2**20


class _TileCache:
    """Process-wide LRU of decoded tiles (as wsidicom keeps one), for region reads."""

    def __init__(self):
        self.data: OrderedDict = OrderedDict()
        self.size = 0
        self.lock = threading.Lock()
        self.spare: list[np.ndarray] = []  # evicted tiles nobody else holds: reused as decode targets

    def take(self, shape: tuple[int, ...], dtype) -> np.ndarray | None:
        """A recycled tile buffer of this shape and dtype (no fresh pages to fault in), or None."""
        with self.lock:
            for i, arr in enumerate(self.spare):
                if arr.shape == shape and arr.dtype == dtype:
                    return self.spare.pop(i)
        return None

    def get(self, key):
        with self.lock:
            arr = self.data.get(key)
            if arr is not None:
                self.data.move_to_end(key)
            return arr

    def put(self, key, arr: np.ndarray, keep: int) -> None:
        from . import reader

        limit = reader.TILE_CACHE_BYTES
        if limit <= 0:
            return
        arr.flags.writeable = False
        with self.lock:
            if key not in self.data:
                self.data[key] = arr
                self.size += arr.nbytes
            while self.size > limit and len(self.data) > keep:
                _, old = self.data.popitem(last=False)
                self.size -= old.nbytes
                # recycle only a tile no reader still holds (refs: `old` and getrefcount's argument)
                if len(self.spare) < _SPARE and old.base is None and sys.getrefcount(old) <= 2:
                    old.flags.writeable = True
                    self.spare.append(old)


#: Evicted tile buffers kept for reuse.
_SPARE = 8

CACHE = _TileCache()
_LOCAL = threading.local()


def _scratch(shape: tuple[int, ...], dtype) -> np.ndarray:
    """A per-thread tile buffer (no fresh allocation, hence no page faults, per tile)."""
    buf = getattr(_LOCAL, "buf", None)
    if buf is None or buf.shape != shape or buf.dtype != dtype:
        buf = _LOCAL.buf = np.empty(shape, dtype)
    return buf


@dataclass
class Layout:
    """Where every frame of a level goes (arrays over the level's frames, instance order)."""

    inst: np.ndarray   # instance index
    num: np.ndarray    # frame number inside the instance
    row: np.ndarray    # 0-based top-left pixel
    col: np.ndarray
    plane: np.ndarray
    path: np.ndarray
    grid: np.ndarray | None  # (paths, planes, down, across) -> frame id, -1 empty; None: unaligned tiles


def _layout(headers: list[WsiHeader], tile, total, planes_of: list[int], paths_of: list[np.ndarray],
            sparse_z: dict[float, int] | None, n_paths: int, n_planes: int, name: str) -> Layout:
    th, tw = tile
    across, down = -(-total[1] // tw), -(-total[0] // th)
    parts = []
    for i, h in enumerate(headers):
        n = h.number_of_frames
        num = np.arange(n, dtype=np.int64)
        if h.organization == "TILED_FULL" or h.positions is None:
            k = num + h.concatenation_offset
            capacity = across * down * planes_of[i] * max(len(paths_of[i]), 1)
            if n and k[-1] >= capacity:
                raise InvalidDicomError(
                    f"{h.path}: frame {int(num[k >= capacity][0])} (tile {int(k[k >= capacity][0])}) lies outside "
                    f"the TILED_FULL grid of {down}x{across} tiles x {planes_of[i]} focal planes x "
                    f"{len(paths_of[i])} optical paths")
            col = (k % across) * tw
            row = ((k // across) % down) * th
            plane = (k // (across * down)) % planes_of[i]
            local_path = k // (across * down * planes_of[i])
            path = paths_of[i][np.minimum(local_path, len(paths_of[i]) - 1)]
        else:
            pos = h.positions[:n]
            if len(pos) < n or (pos < 0).any():
                bad = int(np.flatnonzero((pos < 0).any(axis=1))[0]) if len(pos) else 0
                raise InvalidDicomError(f"{h.path}: TILED_SPARSE frame {bad} has no Plane Position (Slide)")
            row, col = pos[:, 0].copy(), pos[:, 1].copy()
            plane = np.zeros(n, dtype=np.int64)
            if sparse_z is not None and h.z_offsets is not None:
                plane = np.array([sparse_z.get(round(float(z), 6), 0) if z == z else 0 for z in h.z_offsets[:n]],
                                 dtype=np.int64)
            if h.frame_optical_paths is not None:
                path = paths_of[i][:n] if len(paths_of[i]) >= n else np.zeros(n, dtype=np.int64)
            else:
                path = np.full(n, paths_of[i][0] if len(paths_of[i]) else 0, dtype=np.int64)
        parts.append((np.full(n, i, dtype=np.int64), num, row, col, plane, path))
    inst, num, row, col, plane, path = (np.concatenate(c) for c in zip(*parts))
    aligned = bool(((row % th) == 0).all() and ((col % tw) == 0).all())
    grid = None
    if aligned:
        grid = np.full((n_paths, n_planes, down, across), -1, dtype=np.int64)
        ty, tx = row // th, col // tw
        ok = (ty >= 0) & (ty < down) & (tx >= 0) & (tx < across)
        ids = np.arange(len(inst), dtype=np.int64)
        grid[path[ok], plane[ok], ty[ok], tx[ok]] = ids[ok]  # later frames win
    return Layout(inst, num, row, col, plane, path, grid)


class LevelReader:
    """Reads rectangles of one pyramid level (or associated image).

    Parameters
    ----------
    name : str
        Level name (error messages).
    headers : list of WsiHeader
        The level's instances (concatenation parts included).
    path_ids : list of str
        Optical path identifiers of the level, in order.
    fill : float
    icc_profile : bytes or None
        Convert RGB through this profile to sRGB.
    jpeg_decoder : {"libjpeg-turbo", "pydicom"}
    storage_options : dict, optional
    fetch : callable, optional
        ``fetch(instance_index, frame_numbers) -> list of bytes or (bytes, transfer syntax)``
        replacing the file reads (e.g. WADO-RS frame retrieval); its frames are
        raw codestreams (or native pixels), not items.
    """

    def __init__(self, name: str, headers: list[WsiHeader], *, path_ids: list[str], n_planes: int,
                 sparse_z: dict[float, int] | None, fill: float, icc_profile: bytes | None = None,
                 jpeg_decoder: str = "libjpeg-turbo", storage_options: dict | None = None,
                 fetch: Any = None):
        h0 = headers[0]
        shapes = {}
        for h in headers:
            shapes.setdefault((h.rows, h.columns), h.path)
        if len(shapes) > 1:
            listing = "; ".join(f"{r}x{c} in {p}" for (r, c), p in sorted(shapes.items()))
            raise GeometryError(f"{name}: inconsistent tile sizes across its instances ({listing})")
        if len({(h.total_rows, h.total_columns) for h in headers}) > 1:
            raise GeometryError(f"{name}: its instances disagree on the total pixel matrix size")
        self.name = name
        self.headers = headers
        self.tile = (h0.rows, h0.columns)
        self.total = (h0.total_rows, h0.total_columns)
        self.samples = h0.samples_per_pixel
        self.dtype = h0.dtype
        self.fill = fill
        self.icc_profile = icc_profile
        self.jpeg_decoder = jpeg_decoder
        self.storage_options = storage_options
        self.n_paths = len(path_ids)
        self.n_planes = n_planes
        self.fetch = fetch
        self.indexes = [FrameIndex(h, storage_options) for h in headers]
        paths_of = []
        for h in headers:
            if h.frame_optical_paths is not None:
                paths_of.append(np.array([path_ids.index(i) if i in path_ids else 0 for i in h.frame_optical_paths],
                                         dtype=np.int64))
            else:
                local = [op.identifier for op in h.optical_paths] or [path_ids[0]]
                paths_of.append(np.array([path_ids.index(i) if i in path_ids else 0 for i in local], dtype=np.int64))
        self.layout = _layout(headers, self.tile, self.total, [h.focal_planes for h in headers], paths_of, sparse_z,
                              self.n_paths, n_planes, name)
        self.tail = (self.samples,) if self.samples > 1 else ()

    # ------------------------------------------------------------------ geometry
    def check_full_coverage(self) -> None:
        """TILED_FULL levels must hold every tile of their total pixel matrix.

        Raises
        ------
        InvalidDicomError
            Naming the files (a concatenation part may be missing).
        """
        if not all(h.organization == "TILED_FULL" for h in self.headers):
            return
        g = self.layout.grid
        th, tw = self.tile
        need = self.n_paths * self.n_planes * -(-self.total[0] // th) * -(-self.total[1] // tw)
        have = int((g >= 0).sum()) if g is not None else 0
        if have < need:
            files = ", ".join(sorted({h.path for h in self.headers}))
            down, across = -(-self.total[0] // th), -(-self.total[1] // tw)
            raise InvalidDicomError(
                f"{self.name}: TILED_FULL frames do not cover the total pixel matrix {self.total[0]}x{self.total[1]}: "
                f"{have} of {need} tiles ({down}x{across} tiles x {self.n_planes} focal planes x {self.n_paths} "
                f"optical paths) in {files}; a concatenation part may be missing")

    def frames_in(self, y0: int, x0: int, h: int, w: int, path: int = 0, plane: int = 0) -> np.ndarray:
        """Ids of the frames intersecting a rectangle (stored order)."""
        return self._cover(y0, x0, h, w, path, plane)[0]

    def _cover(self, y0: int, x0: int, h: int, w: int, path: int, plane: int) -> tuple[np.ndarray, bool]:
        """Frame ids intersecting a rectangle, and whether stored tiles cover all of it."""
        L = self.layout
        th, tw = self.tile
        empty = np.empty(0, dtype=np.int64)
        if h <= 0 or w <= 0:
            return empty, True
        inside = y0 >= 0 and x0 >= 0 and y0 + h <= self.total[0] and x0 + w <= self.total[1]
        if L.grid is not None:
            g = L.grid[path, plane]
            ty0, ty1 = max(y0, 0) // th, min(max(y0 + h - 1, 0) // th + 1, g.shape[0])
            tx0, tx1 = max(x0, 0) // tw, min(max(x0 + w - 1, 0) // tw + 1, g.shape[1])
            if ty1 <= ty0 or tx1 <= tx0:
                return empty, False
            ids = g[ty0:ty1, tx0:tx1].ravel()
            found = ids[ids >= 0]
            return np.sort(found), inside and len(found) == len(ids)
        hit = ((L.path == path) & (L.plane == plane) & (L.row < y0 + h) & (L.row + th > y0)
               & (L.col < x0 + w) & (L.col + tw > x0))
        return np.flatnonzero(hit), False

    def ref(self, k: int) -> FrameRef:
        """The FrameRef of frame id ``k`` (reads the instance's frame index on first use)."""
        L = self.layout
        i, num = int(L.inst[k]), int(L.num[k])
        h = self.headers[i]
        if self.fetch is not None:
            offset, length = 0, 0
        else:
            offs, lens = self.indexes[i].table()
            offset, length = int(offs[num]), int(lens[num])
        return FrameRef(h.path, offset, length, h.transfer_syntax, h.rows, h.columns, h.samples_per_pixel,
                        h.bits_allocated, h.bits_stored, h.pixel_representation, h.photometric_interpretation,
                        h.planar_configuration, num)

    # ------------------------------------------------------------------ reads
    def _blobs(self, ids: list[int], refs: list[FrameRef]) -> list:
        """Encoded bytes of frames, one coalesced read per file (or the fetcher)."""
        from collections import defaultdict

        L = self.layout
        groups: dict[int, list[int]] = defaultdict(list)
        for j, k in enumerate(ids):
            groups[int(L.inst[k])].append(j)
        data: list = [None] * len(ids)
        for i, js in groups.items():
            if self.fetch is not None:
                blobs = self.fetch(i, [refs[j].frame_index for j in js])
            else:
                from ..decode.read import read_ranges

                blobs = read_ranges(self.headers[i].path, [(refs[j].offset, refs[j].length) for j in js],
                                    self.storage_options)
            for j, b in zip(js, blobs):
                data[j] = b
        return data

    def read(self, y0: int, x0: int, h: int, w: int, *, path: int = 0, plane: int = 0, threads: int = 1,
             cache: bool = False, out: np.ndarray | None = None) -> np.ndarray:
        """The rectangle ``[y0:y0+h, x0:x0+w]`` of the level (``fill`` beyond it / where no tile lies).

        Parameters
        ----------
        y0, x0, h, w : int
            Level pixels; the rectangle may extend past the level.
        path, plane : int
            Optical path / focal plane index.
        threads : int
            Decoder threads (a shared pool).
        cache : bool
            Keep decoded tiles in the process-wide LRU (region reads; ignored
            for reads larger than a quarter of :data:`TILE_CACHE_BYTES`, and
            only the tiles the rectangle cuts are kept: those wholly inside
            it are decoded straight into place).
        out : numpy.ndarray, optional
            Write into this C-contiguous ``(h, w[, samples])`` array of the
            level's dtype (e.g. a slot of a preallocated whole-level array)
            instead of a new one.

        Returns
        -------
        numpy.ndarray
            ``(h, w[, samples])``: ``out`` when given.
        """
        from . import reader as _self
        from .decode import decode_blob, pool

        ids_arr, complete = self._cover(y0, x0, h, w, path, plane)
        shape = (h, w) + self.tail
        given = out is not None
        if out is None:
            out = np.empty(shape, self.dtype) if complete else np.full(shape, self.fill, dtype=self.dtype)
        else:
            if out.shape != shape or out.dtype != self.dtype or not out.flags.c_contiguous:
                raise ValueError(f"out must be a C-contiguous {shape} {self.dtype} array, got {out.shape} "
                                 f"{out.dtype}")
            if not complete:
                out.fill(self.fill)
        ids = ids_arr.tolist()
        if not ids:
            return self._icc(out, inplace=given)
        cache = cache and out.nbytes <= _self.TILE_CACHE_BYTES // 4
        L = self.layout
        hmax, wmax = min(h, self.total[0] - y0), min(w, self.total[1] - x0)
        refs = [self.ref(k) for k in ids]
        dec = self.jpeg_decoder
        tiles: list = [None] * len(ids)
        need = list(range(len(ids)))
        if cache:
            need = []
            for j, r in enumerate(refs):
                t = CACHE.get((r.url, r.frame_index, r.offset, dec))
                if t is None:
                    need.append(j)
                else:
                    tiles[j] = t
        blobs = self._blobs([ids[j] for j in need], [refs[j] for j in need]) if need else []
        raw = self.fetch is not None
        ordered = L.grid is None  # unaligned sparse tiles may overlap: paste in stored order

        def place(j: int, rows: int, cols: int):
            r0, c0 = int(L.row[ids[j]]) - y0, int(L.col[ids[j]]) - x0
            ys, xs = max(r0, 0), max(c0, 0)
            ye, xe = min(r0 + rows, hmax), min(c0 + cols, wmax)
            return r0, c0, ys, xs, ye, xe

        def paste(j: int, arr: np.ndarray) -> None:
            r0, c0, ys, xs, ye, xe = place(j, arr.shape[0], arr.shape[1])
            if ye > ys and xe > xs:
                out[ys:ye, xs:xe] = arr[ys - r0:ye - r0, xs - c0:xe - c0]

        for j in range(len(ids)):
            if tiles[j] is not None and not ordered:
                paste(j, tiles[j])

        tile_shape = self.tile + self.tail

        def work(m: int):
            j = need[m]
            keep = cache
            if not ordered:
                r0, c0, ys, xs, ye, xe = place(j, *self.tile)
                # a tile wholly inside the region is not kept: a whole-level (or large) read decodes
                # each tile once, straight into place, with no cache copy
                keep = cache and not ((ys, xs) == (r0, c0) and (ye - ys, xe - xs) == self.tile)
            into = CACHE.take(tile_shape, self.dtype) if keep else None
            if not keep and not ordered:
                view = out[ys:ye, xs:xe]
                if (ys, xs) == (r0, c0) and view.shape == tile_shape and view.flags.c_contiguous:
                    into = view  # the tile is a contiguous block of the output: decode in place
                else:
                    into = _scratch(tile_shape, self.dtype)
            ref, blob = refs[j], blobs[m]
            if isinstance(blob, tuple):  # (bytes, transfer syntax) from a fetcher
                blob, syntax = blob
                if syntax and syntax != ref.transfer_syntax:
                    ref = dataclasses.replace(ref, transfer_syntax=syntax)
            arr = decode_blob(ref, blob, dec, raw=raw, out=into)
            if keep:
                CACHE.put((refs[j].url, refs[j].frame_index, refs[j].offset, dec), arr, len(ids))
            if ordered:
                return arr
            if not np.may_share_memory(arr, out):  # not decoded in place
                paste(j, arr)
            return None

        decoded: list = [None] * len(need)
        if threads > 1 and len(need) > 1:
            # the calling thread decodes too (threads - 1 pool workers): no idle hand-off per region
            order = itertools.count()

            def drain() -> None:
                for m in iter(lambda: next(order), None):
                    if m >= len(need):
                        return
                    decoded[m] = work(m)

            helpers = [pool(threads - 1).submit(drain) for _ in range(min(threads - 1, len(need) - 1))]
            try:
                drain()
            finally:
                for f in helpers:
                    f.result()
        else:
            decoded = [work(m) for m in range(len(need))]
        if ordered:
            for m, j in enumerate(need):
                tiles[j] = decoded[m]
            for j in range(len(ids)):
                paste(j, tiles[j])
        return self._icc(out, inplace=given)

    def _icc(self, out: np.ndarray, inplace: bool = False) -> np.ndarray:
        if self.icc_profile is None:
            return out
        from .icc import apply_icc

        conv = apply_icc(out, self.icc_profile)
        if inplace and conv is not out:
            out[...] = conv
            return out
        return conv


class LevelArray:
    """The array-like ``dask.array.from_array`` reads a level through.

    Shape ``([paths], [planes], rows, columns[, samples])``; indexing with
    slices (what Dask's getters pass, slicing folded in) reads only the tiles
    under the selection.
    """

    def __init__(self, reader: LevelReader, token: str, threads: int = 1):
        self.reader = reader
        self.token = token
        self.threads = threads
        lead = ((reader.n_paths,) if reader.n_paths > 1 else ()) + ((reader.n_planes,) if reader.n_planes > 1 else ())
        self.lead = len(lead)
        self.shape = lead + reader.total + reader.tail
        self.dtype = reader.dtype
        self.ndim = len(self.shape)

    def __dask_tokenize__(self):
        return self.token

    def __getitem__(self, key) -> np.ndarray:
        if not isinstance(key, tuple):
            key = (key,)
        if any(k is Ellipsis for k in key):
            i = key.index(Ellipsis)
            key = key[:i] + (slice(None),) * (self.ndim - len(key) + 1) + key[i + 1:]
        key = key + (slice(None),) * (self.ndim - len(key))
        r = self.reader
        lead_keys, (ky, kx), tail_key = key[:self.lead], key[self.lead:self.lead + 2], key[self.lead + 2:]
        ys = range(*ky.indices(self.shape[self.lead])) if isinstance(ky, slice) else None
        xs = range(*kx.indices(self.shape[self.lead + 1])) if isinstance(kx, slice) else None
        y0, h, ystep = (ys.start, len(ys), ys.step) if ys is not None else (int(ky) % self.shape[self.lead], 1, 1)
        x0, w, xstep = (xs.start, len(xs), xs.step) if xs is not None else (int(kx) % self.shape[self.lead + 1], 1, 1)
        if ystep < 0 or xstep < 0:  # read forwards, then flip
            full = self[tuple(lead_keys) + (slice(None), slice(None)) + tuple(tail_key)]
            kept = sum(isinstance(k, slice) for k in lead_keys)
            return full[(slice(None),) * kept + (ky, kx)]
        span_h = (h - 1) * ystep + 1 if h else 0
        span_w = (w - 1) * xstep + 1 if w else 0
        lead_ranges = []
        for k, n in zip(lead_keys, self.shape[:self.lead]):
            lead_ranges.append(list(range(*k.indices(n))) if isinstance(k, slice) else [int(k) % n])
        kinds = []
        if r.n_paths > 1:
            kinds.append("path")
        if r.n_planes > 1:
            kinds.append("plane")
        if any(not v for v in lead_ranges):  # an empty selection along a leading dim
            return np.array(np.broadcast_to(np.zeros((), self.dtype), self.shape)[key])  # no memory for the view
        blocks = []
        for combo in itertools.product(*lead_ranges):
            sel = dict(zip(kinds, combo))
            arr = r.read(y0, x0, span_h, span_w, path=sel.get("path", 0), plane=sel.get("plane", 0),
                         threads=self.threads)
            blocks.append(arr[::ystep, ::xstep])
        lead_shape = tuple(len(v) for v in lead_ranges)
        out = np.stack(blocks).reshape(lead_shape + blocks[0].shape) if self.lead else blocks[0]
        # integer keys drop their axes; the channel key applies last
        drop = tuple(0 if not isinstance(k, slice) else slice(None) for k in lead_keys)
        out = out[drop + (slice(None) if ys is not None else 0, slice(None) if xs is not None else 0)]
        if tail_key:
            out = out[(Ellipsis,) + tuple(tail_key)]
        return out
