"""Resampling onto new grids, lazily, reading only the input chunks each output chunk needs.

How it works
------------
The output grid is cut into chunks (spatial chunks of about
``DEFAULT_BLOCK_BYTES``; leading dims such as ``t`` and a trailing ``c``
keep the input's chunks). For every output chunk, at graph-build time:

1. the world (LPS) positions of the chunk's corner voxels are mapped to
   fractional input indices with :func:`dcmxr.geometry.world_to_index`; the
   index box they span, grown by the interpolation footprint, is the part of
   the input the chunk needs (exact: the output->input map is affine in the
   coordinate values, and monotonic per axis for irregular input coordinates);
2. the graph task of that output chunk depends on the input chunks that
   intersect the box, and nothing else. It copies the needed parts into one
   small array and interpolates with :func:`scipy.ndimage.affine_transform`
   (both grids regular: the index map is one matrix) or
   :func:`scipy.ndimage.map_coordinates` (an irregular input, e.g. missing
   slices: indices are computed per voxel from the coordinates);
3. output chunks entirely outside the input depend on nothing and are filled.

So a 1 GB lazy input is never materialised: peak memory is a few output
chunks plus the input chunks they touch, and a small target reads only the
chunks under it. The tasks are plain functions with small picklable
arguments, so the graph runs on dask.distributed too.

Sampling rule (the same as ITK/SimpleITK): an output voxel is inside the
input when its continuous index lies within ``[-0.5, n - 0.5]`` on every
axis (the input's voxel-edge box); inside, values come from the chosen
interpolator with edge replication (``mode="nearest"``) at the borders;
outside, ``fill_value``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import product
from typing import Any

import numpy as np
import xarray as xr

from ..errors import GeometryError
from ..geometry.affine import world_to_index
from ._grid import AXES, SPATIAL_DIMS, Grid, grid_of, per_axis, regular_grid, split_dims

__all__ = ["resample", "resample_like", "resample_to_grid", "DEFAULT_BLOCK_BYTES"]

#: Target size in bytes of one output chunk (spatial block x leading chunk).
DEFAULT_BLOCK_BYTES = 32 * 2**20

_ORDER = {"nearest": 0, "linear": 1, "cubic": 3}
#: Extra input voxels read around the needed box, per interpolation order.
#: Cubic splines are prefiltered on the sub-array; 8 voxels make the edge
#: effect of that local prefilter < 1e-4 of the local signal range.
_HALO = {0: 0, 1: 1, 3: 8}
_EPS = 1e-6


# --------------------------------------------------------------------- helpers
def _method_order(method: str | None, dtype: np.dtype) -> int:
    if method is None:
        return 0 if (dtype == bool or np.issubdtype(dtype, np.integer)) else 1
    try:
        return _ORDER[str(method).lower()]
    except KeyError:
        raise ValueError(f"method must be 'nearest', 'linear' or 'cubic', got {method!r}") from None


def _out_dtype(dtype: np.dtype, order: int) -> np.dtype:
    if order == 0:
        return np.dtype(dtype)
    if np.issubdtype(dtype, np.complexfloating):
        raise TypeError("complex data cannot be interpolated; resample the real and imaginary parts")
    return np.dtype(np.float64) if dtype == np.float64 else np.dtype(np.float32)


def _fill(fill_value: Any, dtype: np.dtype) -> Any:
    if fill_value is None:
        if np.issubdtype(dtype, np.floating):
            return np.nan
        return dtype.type(0)
    if isinstance(fill_value, float) and math.isnan(fill_value) and not np.issubdtype(dtype, np.floating):
        raise ValueError(f"fill_value NaN cannot be stored in {dtype}; pass a number or use method='linear'")
    return fill_value


def _bounds(n: int, chunks: tuple[int, ...]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(chunks)]).astype(np.int64)


def _spatial_chunks(
    shape_zyx: tuple[int, int, int], bytes_per_voxel: float, chunks: Any
) -> tuple[tuple[int, ...], ...]:
    """Output spatial chunks: given, or about DEFAULT_BLOCK_BYTES of *work* per chunk.

    ``bytes_per_voxel`` counts the output voxel and the input voxels it
    needs (so a 4x downsampling gets smaller output chunks, keeping the input
    box of each task bounded).
    """
    from dask.array.core import normalize_chunks

    if chunks is not None:
        if isinstance(chunks, Mapping):
            spec = tuple(chunks.get(d, -1) for d in SPATIAL_DIMS)
        else:
            spec = chunks
        return normalize_chunks(spec, shape_zyx, dtype=np.uint8)
    nz, ny, nx = shape_zyx
    limit = max(int(DEFAULT_BLOCK_BYTES / max(bytes_per_voxel, 1.0)), 1)
    if ny * nx <= limit:  # whole slices, several per chunk
        bz = max(1, min(nz, limit // (ny * nx)))
        return normalize_chunks((bz, -1, -1), shape_zyx, dtype=np.uint8)
    return normalize_chunks("auto", shape_zyx, limit=limit, dtype=np.uint8)


def _volume_ratio(src: Grid, target: Grid) -> float:
    def vol(g: Grid) -> float:
        steps = [abs(float(np.median(np.diff(g.values(ax))))) if len(g.values(ax)) > 1
                 else float(g.default_spacing.get(ax, 1.0)) for ax in AXES]
        return abs(np.linalg.det(g.basis)) * float(np.prod(steps))

    return vol(target) / vol(src)


@dataclass(frozen=True)
class _BlockSpec:
    """Everything one output-chunk task needs (small, picklable, opaque to dask)."""

    out_shape: tuple[int, ...]  # full block shape: lead + (z, y, x) + trail
    n_lead: int
    sub_shape: tuple[int, ...]  # shape of the assembled input sub-array
    pieces: tuple  # per input key: (slices into the chunk, slices into the sub-array)
    order: int
    fill: Any
    dtype: np.dtype
    in_shape_xyz: tuple[int, int, int]  # full input spatial size (the inside test)
    sub_start_xyz: tuple[int, int, int]
    # regular path: input index = M @ out_local_index + t   (xyz order, local to the block/sub-array)
    matrix: np.ndarray | None = None
    offset: np.ndarray | None = None
    # general path
    out_vals: tuple | None = None  # block coordinate values (x, y, z) of the output
    out_dirs: tuple | None = None
    in_args: tuple | None = None  # (x, y, z, dir_x, dir_y, dir_z) of the input
    in_default: Mapping | None = None


def _inside_mask_affine(shape_zyx, M, t, n_xyz, start_xyz) -> np.ndarray:
    """Inside test of a block on the regular path, row by row (no 3-D index arrays).

    The map is affine, so when the block's 8 corner voxels are inside, all are:
    then a broadcast all-True view is returned without per-row work.
    """
    nz, ny, nx = shape_zyx
    corners = np.array(list(product((0, nx - 1), (0, ny - 1), (0, nz - 1))), dtype=np.float64)
    ci = corners @ M.T + t + np.asarray(start_xyz, dtype=np.float64)
    if np.all(ci >= -0.5 - _EPS) and np.all(ci <= np.asarray(n_xyz, dtype=np.float64) - 0.5 + _EPS):
        return np.broadcast_to(np.True_, (nz, ny, nx))
    kk = np.arange(nz, dtype=np.float64)[:, None]
    jj = np.arange(ny, dtype=np.float64)[None, :]
    imin = np.full((nz, ny), -np.inf)
    imax = np.full((nz, ny), np.inf)
    for a in range(3):  # input axis (x, y, z), global index = local + start
        lo = -0.5 - _EPS - start_xyz[a]
        hi = n_xyz[a] - 0.5 + _EPS - start_xyz[a]
        r = M[a, 1] * jj + M[a, 2] * kk + t[a]
        c = M[a, 0]
        if abs(c) < 1e-12:
            bad = (r < lo) | (r > hi)
            imin = np.where(bad, np.inf, imin)
        else:
            e1, e2 = (lo - r) / c, (hi - r) / c
            imin = np.maximum(imin, np.minimum(e1, e2))
            imax = np.minimum(imax, np.maximum(e1, e2))
    ii = np.arange(nx, dtype=np.float64)
    return (ii >= imin[..., None]) & (ii <= imax[..., None])


@dataclass(frozen=True)
class _AxisPlan:
    """1-D sampling of one axis: ``value = (1 - w) * a[i0] + w * a[i1]`` (``w`` None: ``a[i0]``)."""

    i0: np.ndarray
    i1: np.ndarray | None
    w: np.ndarray | None
    identity: bool


def _axis_plan(n_out: int, scale: float, shift: float, n_in: int, order: int, work: np.dtype) -> _AxisPlan:
    """Indices and weights of ``input index = scale * output index + shift``, edges replicated."""
    c = scale * np.arange(n_out, dtype=np.float64) + shift
    if order == 0:
        i0 = np.clip(np.floor(c + 0.5).astype(np.intp), 0, n_in - 1)
        i1 = w = None
    else:
        f = np.floor(c)
        i0 = np.clip(f.astype(np.intp), 0, n_in - 1)
        i1 = np.clip(f.astype(np.intp) + 1, 0, n_in - 1)
        w = (c - f).astype(work)
        if not np.any(w):  # on the input grid: a pure gather
            i1 = w = None
    identity = i1 is None and n_out == n_in and bool(np.array_equal(i0, np.arange(n_in)))
    return _AxisPlan(i0, i1, w, identity)


class _PlaneResampler:
    """Resamples 2-D ``(y, x)`` input slices along y then x, into reusable buffers.

    All work is numpy ufuncs and ``take`` with ``out=`` (no large temporaries,
    so no page faults per slice; numpy releases the GIL, so Dask threads run
    in parallel).
    """

    def __init__(self, py: _AxisPlan, px: _AxisPlan, shape_in: tuple[int, int], src_dtype: np.dtype,
                 work: np.dtype):
        self.py, self.px, self.work = py, px, work
        ny = len(py.i0)
        self.rows0 = np.empty((ny, shape_in[1]), src_dtype)
        self.rows1 = np.empty((ny, shape_in[1]), src_dtype) if py.w is not None else None
        self.t = np.empty((ny, shape_in[1]), work)
        self.b0 = np.empty((ny, len(px.i0)), work) if px.w is not None else None

    def __call__(self, S: np.ndarray, out: np.ndarray) -> np.ndarray:
        py, px = self.py, self.px
        # y: whole rows (contiguous copies)
        if py.identity:
            t = S
        elif py.w is None:
            t = np.take(S, py.i0, axis=0, out=self.rows0)
        else:
            np.take(S, py.i0, axis=0, out=self.rows0)
            np.take(S, py.i1, axis=0, out=self.rows1)
            t = self.t
            np.subtract(self.rows1, self.rows0, out=t, dtype=self.work)
            t *= py.w[:, None]
            np.add(t, self.rows0, out=t, dtype=self.work)
        # x
        if px.identity:
            np.copyto(out, t, casting="unsafe")
        elif px.w is None:
            if t.dtype == out.dtype:
                np.take(t, px.i0, axis=1, out=out)
            else:
                np.copyto(out, np.take(t, px.i0, axis=1), casting="unsafe")
        else:
            if t.dtype != self.work:  # y was a gather of the raw input
                np.copyto(self.t, t, casting="unsafe")
                t = self.t
            np.take(t, px.i0, axis=1, out=self.b0)
            np.take(t, px.i1, axis=1, out=out)
            out -= self.b0
            out *= px.w
            out += self.b0
        return out


def _separable(get_slice, n_in_zyx, scale, shift, out3: np.ndarray, order: int) -> np.ndarray:
    """Axis-aligned resampling (diagonal index map) into ``out3``, slice by slice.

    ``input index = scale * output index + shift`` per array axis (z, y, x);
    ``get_slice(k)`` returns the 2-D input slice ``k``. Each needed input
    slice is resampled in plane once (y then x), kept while output slices
    still need it (at most a few, since the z indices are monotonic), and
    output slices are linear blends of two of them. Equal to
    ``scipy.ndimage.affine_transform(..., order, mode="nearest")`` for orders
    0 and 1 (up to float rounding), with peak memory of a few slices beyond
    ``out3``.
    """
    work = out3.dtype
    nz, ny, nx = out3.shape
    pz, py, px = (_axis_plan(n, float(a), float(b), m, order, work)
                  for n, a, b, m in zip((nz, ny, nx), scale, shift, n_in_zyx))
    first = get_slice(int(pz.i0[0]))
    plane = _PlaneResampler(py, px, first.shape, first.dtype, work)
    cache: dict[int, np.ndarray] = {}
    free: list[np.ndarray] = []

    def resampled(k: int, keep: tuple[int, ...]) -> np.ndarray:
        p = cache.get(k)
        if p is None:
            for old in [o for o in cache if o not in keep]:
                free.append(cache.pop(old))
            p = free.pop() if free else np.empty((ny, nx), work)
            cache[k] = plane(get_slice(k), p)
        return p

    for k in range(nz):
        i0 = int(pz.i0[k])
        if pz.w is None or pz.w[k] == 0:
            np.copyto(out3[k], resampled(i0, (i0,)))
            continue
        i1 = int(pz.i1[k])
        a = resampled(i0, (i0, i1))
        b = resampled(i1, (i0, i1))
        o = out3[k]
        np.subtract(b, a, out=o)
        o *= pz.w[k]
        o += a
    return out3


def _slice_getter(chunks: list, spec: "_BlockSpec", lp: tuple, tp: tuple):
    """``k -> 2-D input slice k`` (local z) read from the chunks without assembling a sub-array.

    Only when the pieces split the needed box along z alone (the usual
    frame-aligned chunking); otherwise returns None.
    """
    nl = spec.n_lead
    pieces = spec.pieces
    yx0 = pieces[0][1][nl + 1 : nl + 3]
    if any(p[1][nl + 1 : nl + 3] != yx0 for p in pieces):
        return None
    table = []
    for arr, (src_sl, dst_sl) in zip(chunks, pieces):
        zs, zd = src_sl[nl], dst_sl[nl]
        table.append((zd.start, zd.stop, zs.start, np.asarray(arr), src_sl[nl + 1 : nl + 3]))

    def get(k: int) -> np.ndarray:
        for d0, d1, s0, arr, yx in table:
            if d0 <= k < d1:
                v = arr[lp + (s0 + k - d0,) + yx + tp]
                return v.view(np.uint8) if v.dtype == bool else v
        raise IndexError(k)  # pragma: no cover

    return get


def _assemble(chunks: list, spec: _BlockSpec) -> np.ndarray:
    """The needed input box as one array (a view when it lies in a single chunk)."""
    if len(chunks) == 1:
        sub = np.asarray(chunks[0])[spec.pieces[0][0]]
    else:
        sub = np.empty(spec.sub_shape, dtype=np.asarray(chunks[0]).dtype)
        for arr, (src_sl, dst_sl) in zip(chunks, spec.pieces):
            sub[dst_sl] = np.asarray(arr)[src_sl]
    return sub.view(np.uint8) if sub.dtype == bool else sub


def _widen(a: np.ndarray) -> np.ndarray:
    """64-bit integers and float16 are interpolated in float64 (scipy has no kernels for them)."""
    if a.dtype.kind in "iu" and a.dtype.itemsize > 4 or a.dtype == np.float16:
        return a.astype(np.float64)
    return a


def _interp_block(chunks: list, spec: _BlockSpec) -> np.ndarray:
    if not chunks:
        out = np.empty(spec.out_shape, dtype=spec.dtype)
        out[...] = spec.fill
        return out
    work_dtype = np.dtype(np.uint8) if spec.dtype == bool else np.dtype(spec.dtype)
    nl = spec.n_lead
    shape_zyx = spec.out_shape[nl : nl + 3]
    coords = None
    diagonal = False
    if spec.matrix is not None:
        M, t = spec.matrix, spec.offset
        mask = _inside_mask_affine(shape_zyx, M, t, spec.in_shape_xyz, spec.sub_start_xyz)
        # array axes are (z, y, x): reverse the xyz matrix
        Mz = M[::-1, ::-1].copy()
        tz = t[::-1].copy()
        off = Mz - np.diag(np.diag(Mz))
        diagonal = spec.order in (0, 1) and bool(np.all(np.abs(off) <= 1e-9 * np.abs(Mz).max()))
    else:
        xo, yo, zo = spec.out_vals
        dx, dy, dz = spec.out_dirs
        cz, cy, cx = np.meshgrid(zo, yo, xo, indexing="ij")
        pts = cx[..., None] * dx + cy[..., None] * dy + cz[..., None] * dz
        del cx, cy, cz
        idx = world_to_index(pts, *spec.in_args, default_spacing=dict(spec.in_default))
        del pts
        mask = np.ones(shape_zyx, dtype=bool)
        for a in range(3):
            mask &= (idx[..., a] >= -0.5 - _EPS) & (idx[..., a] <= spec.in_shape_xyz[a] - 0.5 + _EPS)
            idx[..., a] -= spec.sub_start_xyz[a]
        coords = np.stack([idx[..., 2], idx[..., 1], idx[..., 0]])  # (z, y, x) order
        del idx
    all_inside = bool(mask.all())
    out = np.empty(spec.out_shape, dtype=work_dtype)
    lead_trail_shapes = spec.out_shape[:nl] + spec.out_shape[nl + 3 :]
    src_dtype = np.asarray(chunks[0]).dtype
    # read slices straight from the chunks unless the values must be widened first (see _widen)
    direct = diagonal and not (src_dtype.kind in "iu" and src_dtype.itemsize > 4 or src_dtype == np.float16)
    sub = None
    for pos in np.ndindex(*lead_trail_shapes):
        lp, tp = pos[:nl], pos[nl:]
        sel = lp + (slice(None),) * 3 + tp
        o = out[sel]  # a view: every path writes the result in place
        get = _slice_getter(chunks, spec, lp, tp) if direct else None
        if get is not None:
            n_in = tuple(spec.sub_shape[nl : nl + 3])
            _separable(get, n_in, np.diag(Mz), tz, o, spec.order)
        else:
            if sub is None:
                sub = _assemble(chunks, spec)
            src3 = _widen(sub[sel])
            if diagonal:
                _separable(lambda k, a=src3: a[k], src3.shape, np.diag(Mz), tz, o, spec.order)
            else:
                from scipy import ndimage

                res = np.empty(shape_zyx, dtype=work_dtype)
                if coords is None:
                    ndimage.affine_transform(src3, Mz, offset=tz, output_shape=shape_zyx, output=res,
                                             order=spec.order, mode="nearest", prefilter=spec.order > 1)
                else:
                    ndimage.map_coordinates(src3, coords, output=res, order=spec.order, mode="nearest",
                                            prefilter=spec.order > 1)
                o[...] = res
        if not all_inside:
            np.copyto(o, spec.fill, where=~mask, casting="unsafe")
    return out.view(bool) if spec.dtype == bool else out


# ------------------------------------------------------------------ the engine
def resample_to_grid(
    da: xr.DataArray,
    target: Grid,
    *,
    method: str | None = None,
    fill_value: Any = None,
    chunks: Any = None,
    attrs: Mapping[str, Any] | None = None,
    coord_attrs_like: Any = None,
) -> xr.DataArray:
    """Resample ``da`` onto ``target`` (any orientations), lazily. See the module docstring.

    Parameters
    ----------
    da : xarray.DataArray
        Dims ``(lead..., "z", "y", "x", trail...)`` with dcmxr geometry.
    target : Grid
        The output grid (coordinate values and directions).
    method : {"nearest", "linear", "cubic"} or None
        None: nearest for bool/integer data, linear otherwise.
    fill_value : scalar, optional
        Outside the input; default NaN for float output, 0 otherwise.
    chunks : int, tuple or dict, optional
        Spatial chunks of the output (``{"z": 32}``); default about
        :data:`DEFAULT_BLOCK_BYTES` per chunk, whole slices when they fit.
    attrs : mapping, optional
        Attrs of the result (default: ``da.attrs``).
    coord_attrs_like : object, optional
        Where extra x/y/z coordinate attrs are copied from (default ``da``).

    Returns
    -------
    xarray.DataArray
        Dask-backed; spatial dim coordinates from ``target``; non-spatial
        dims, coordinates on them and ``name`` from ``da``. Coordinates on
        the spatial dims of ``da`` (``sop_instance_uid``...) are dropped:
        resampled voxels come from several frames.
    """
    import dask.array as dska
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

    src = grid_of(da)
    lead, trail = split_dims(da)
    da = da.transpose(*lead, *SPATIAL_DIMS, *trail)
    order = _method_order(method, da.dtype)
    odt = _out_dtype(da.dtype, order)
    fill = _fill(fill_value, odt)
    data = da.data
    if not isinstance(data, dska.Array):
        data = dska.from_array(np.asarray(data), chunks="auto")
    nl, nt = len(lead), len(trail)
    in_chunks = data.chunks
    sp_in_chunks = in_chunks[nl : nl + 3]  # (z, y, x)
    in_b = {ax: _bounds(len(src.values(ax)), sp_in_chunks[2 - k]) for k, ax in enumerate(AXES)}
    lead_chunks, trail_chunks = in_chunks[:nl], in_chunks[nl + 3 :]
    other_max = int(np.prod([max(c) for c in lead_chunks + trail_chunks])) if (nl or nt) else 1

    A_src, A_tgt = src.affine_or_none(), target.affine_or_none()
    regular = A_src is not None and A_tgt is not None
    M_full = np.linalg.inv(A_src) @ A_tgt if regular else None
    # input voxels per output voxel (volume ratio), to bound each task's input box
    density = abs(np.linalg.det(M_full[:3, :3])) if regular else _volume_ratio(src, target)
    bpv = other_max * (odt.itemsize + max(density, 1.0) * da.dtype.itemsize)
    out_sp_chunks = _spatial_chunks(target.shape_zyx, bpv, chunks)
    out_chunks = lead_chunks + out_sp_chunks + trail_chunks
    n_xyz = src.shape_xyz
    halo = _HALO[order]
    name = "dcmxr-resample-" + tokenize(data.name, target.args, order, fill, odt.str, out_chunks)
    dsk: dict = {}
    out_b = {ax: _bounds(target.shape_xyz[k], out_sp_chunks[2 - k]) for k, ax in enumerate(AXES)}
    n_out_blocks = {ax: len(out_sp_chunks[2 - k]) for k, ax in enumerate(AXES)}

    def block_range(bx, by, bz):
        """Output block -> needed input index box (inclusive) per xyz axis, or None when outside."""
        ob = [(out_b[ax][b], out_b[ax][b + 1]) for ax, b in zip(AXES, (bx, by, bz))]
        if regular:
            corners = np.array(list(product(*[(lo, hi - 1) for lo, hi in ob])), dtype=np.float64)
            idx = corners @ M_full[:3, :3].T + M_full[:3, 3]
        else:
            vals = [target.values(ax)[lo:hi] for ax, (lo, hi) in zip(AXES, ob)]
            corners = np.array(list(product(*[(v.min(), v.max()) for v in vals])))
            pts = target.world(corners[:, 0], corners[:, 1], corners[:, 2])
            idx = world_to_index(pts, *src.args, default_spacing=dict(src.default_spacing))
        lo, hi = idx.min(axis=0), idx.max(axis=0)
        rng = []
        for a in range(3):
            if hi[a] < -0.5 - _EPS or lo[a] > n_xyz[a] - 0.5 + _EPS:
                return ob, None
            a0 = max(0, int(math.floor(lo[a] + _EPS)) - halo)
            a1 = min(n_xyz[a] - 1, int(math.ceil(hi[a] - _EPS)) + halo)
            rng.append((a0, a1))
        return ob, rng

    lead_idx = [range(len(c)) for c in lead_chunks]
    trail_idx = [range(len(c)) for c in trail_chunks]
    for bz in range(n_out_blocks["z"]):
        for by in range(n_out_blocks["y"]):
            for bx in range(n_out_blocks["x"]):
                ob, rng = block_range(bx, by, bz)
                sp_shape = tuple(ob[a][1] - ob[a][0] for a in (2, 1, 0))
                # chunk indices of the input along x, y, z covering rng
                if rng is not None:
                    cidx = []
                    for a, ax in enumerate(AXES):
                        b = in_b[ax]
                        c0 = int(np.searchsorted(b, rng[a][0], side="right") - 1)
                        c1 = int(np.searchsorted(b, rng[a][1], side="right") - 1)
                        cidx.append(range(c0, c1 + 1))
                    sub_start = tuple(r[0] for r in rng)
                    sub_sp = tuple(rng[a][1] - rng[a][0] + 1 for a in (2, 1, 0))  # z, y, x
                for li in product(*lead_idx):
                    for ti in product(*trail_idx):
                        lshape = tuple(lead_chunks[d][i] for d, i in enumerate(li))
                        tshape = tuple(trail_chunks[d][i] for d, i in enumerate(ti))
                        key = (name, *li, bz, by, bx, *ti)
                        out_shape = lshape + sp_shape + tshape
                        if rng is None:
                            spec = _BlockSpec(out_shape, nl, (), (), order, fill, odt, n_xyz, (0, 0, 0))
                            dsk[key] = (_interp_block, [], spec)
                            continue
                        keys, pieces = [], []
                        for cx_ in cidx[0]:
                            for cy_ in cidx[1]:
                                for cz_ in cidx[2]:
                                    src_sl, dst_sl = [], []
                                    for a, (ax, c) in enumerate(zip(AXES, (cx_, cy_, cz_))):
                                        b = in_b[ax]
                                        g0 = max(int(b[c]), rng[a][0])
                                        g1 = min(int(b[c + 1]) - 1, rng[a][1])
                                        src_sl.append(slice(g0 - int(b[c]), g1 - int(b[c]) + 1))
                                        dst_sl.append(slice(g0 - rng[a][0], g1 - rng[a][0] + 1))
                                    full = (slice(None),) * nl
                                    tail = (slice(None),) * nt
                                    pieces.append((full + tuple(src_sl[::-1]) + tail, full + tuple(dst_sl[::-1]) + tail))
                                    keys.append((data.name, *li, cz_, cy_, cx_, *ti))
                        common = dict(out_shape=out_shape, n_lead=nl, sub_shape=lshape + sub_sp + tshape,
                                      pieces=tuple(pieces), order=order, fill=fill, dtype=odt,
                                      in_shape_xyz=n_xyz, sub_start_xyz=sub_start)
                        if regular:
                            o_start = np.array([ob[a][0] for a in range(3)], dtype=np.float64)
                            R = M_full[:3, :3]
                            t = R @ o_start + M_full[:3, 3] - np.asarray(sub_start, dtype=np.float64)
                            spec = _BlockSpec(**common, matrix=R.copy(), offset=t)
                        else:
                            spec = _BlockSpec(
                                **common,
                                out_vals=tuple(target.values(ax)[ob[a][0]:ob[a][1]] for a, ax in enumerate(AXES)),
                                out_dirs=(target.dir_x, target.dir_y, target.dir_z),
                                in_args=src.args, in_default=dict(src.default_spacing),
                            )
                        dsk[key] = (_interp_block, keys, spec)
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=[data])
    arr = dska.Array(graph, name, chunks=out_chunks, dtype=odt, meta=np.empty((0,) * len(out_chunks), dtype=odt))

    coords = {}
    for cname, c in da.coords.items():
        if cname in AXES or any(d in SPATIAL_DIMS for d in c.dims):
            continue
        coords[cname] = c.variable
    coords.update(target.coords(like=coord_attrs_like if coord_attrs_like is not None else da))
    out_attrs = dict(da.attrs if attrs is None else attrs)
    if "spacing_between_slices" in out_attrs and len(target.z) > 1:
        out_attrs["spacing_between_slices"] = abs(float(target.z[1] - target.z[0]))
    return xr.DataArray(arr, dims=da.dims, coords=coords, attrs=out_attrs, name=da.name)


# ----------------------------------------------------------------- public API
def _check_frames(da: Any, other: Any, allow_different_frame: bool) -> None:
    a = da.attrs.get("frame_of_reference_uid")
    b = other.attrs.get("frame_of_reference_uid")
    if a and b and a != b and not allow_different_frame:
        raise GeometryError(
            f"the arrays are in different frames of reference (frame_of_reference_uid {a!r} vs {b!r}): "
            f"their patient coordinates are not comparable, so resampling one onto the other would "
            f"misplace every voxel. If you know the frames coincide (e.g. a registration was applied), "
            f"pass allow_different_frame=True"
        )


def resample_like(
    da: xr.DataArray,
    other: xr.DataArray | xr.Dataset,
    method: str | None = None,
    *,
    fill_value: Any = None,
    allow_different_frame: bool = False,
    chunks: Any = None,
) -> xr.DataArray:
    """Resample ``da`` onto the x/y/z grid of ``other`` (any orientations), lazily.

    Typical uses: a mask onto an image, an RT dose onto its CT, an oblique
    MR onto an axial CT. Each output chunk reads only the input chunks under
    it (see the module docstring).

    Parameters
    ----------
    da : xarray.DataArray
        The array to resample, dims ``(lead..., "z", "y", "x"[, "c"])`` with
        dcmxr geometry; leading dims (``t``, ``echo``...) are carried through.
    other : xarray.DataArray or xarray.Dataset
        Supplies the target grid (its ``x``, ``y``, ``z`` coordinates and
        directions; they may be irregular). Only the grid is used.
    method : {"nearest", "linear", "cubic"} or None
        Default: ``"nearest"`` for boolean and integer data (labels, masks;
        pass ``method="linear"`` for integer-valued images such as CT in
        HU), ``"linear"`` for floats.
    fill_value : scalar, optional
        Value outside ``da``; default NaN for float output, 0 otherwise.
    allow_different_frame : bool
        ``other`` in a different FrameOfReferenceUID raises unless True.
        (When either array has no ``frame_of_reference_uid`` attr, no check
        is possible and none is made.) The result takes ``other``'s uid.
    chunks : int, tuple or dict, optional
        Spatial chunks of the output.

    Returns
    -------
    xarray.DataArray
        Dask-backed, dims ``(lead..., "z", "y", "x", trail...)``, the
        ``x``/``y``/``z`` coordinates of ``other``, ``da``'s attrs (with
        ``frame_of_reference_uid`` of ``other`` when it has one). Dtype:
        unchanged for nearest, float32 (float64 for float64 input) otherwise.

    Raises
    ------
    GeometryError
        Different frames of reference without ``allow_different_frame``;
        either array without geometry.
    """
    grid_of(da)
    target = grid_of(other, what="the target (other)")
    _check_frames(da, other, allow_different_frame)
    attrs = dict(da.attrs)
    if other.attrs.get("frame_of_reference_uid"):
        attrs["frame_of_reference_uid"] = other.attrs["frame_of_reference_uid"]
    return resample_to_grid(da, target, method=method, fill_value=fill_value, chunks=chunks,
                            attrs=attrs, coord_attrs_like=other)


def resample(
    da: xr.DataArray,
    spacing: Any = None,
    method: str | None = None,
    *,
    fill_value: Any = None,
    chunks: Any = None,
) -> xr.DataArray:
    """Resample onto a regular grid with new spacing, same orientation and field of view.

    Parameters
    ----------
    da : xarray.DataArray
        A volume with dcmxr geometry. Irregular axes (missing slices, uneven
        spacing) are allowed: this is the way to make them regular.
    spacing : float, str, pint Quantity or mapping
        New voxel size in mm: ``1.0``, ``"1 mm"``, ``ureg.Quantity(1, "mm")``
        (all axes), or ``{"z": 2.5}`` (only the axes given; the others keep
        their spacing; an irregular axis not given takes its median step).
    method : {"nearest", "linear", "cubic"} or None
        Default: nearest for bool/integer data, linear for floats (pass
        ``method="linear"`` for an integer CT or MR).
    fill_value : scalar, optional
        For output voxels outside the input (only possible at the far edges).
    chunks : int, tuple or dict, optional
        Spatial chunks of the output.

    Returns
    -------
    xarray.DataArray
        Lazy. Same directions; each axis covers the same field of view (the
        voxel-edge box ``[x0 - s/2, x_last + s/2]``) with ``n' = max(1,
        round(n * s / s'))`` voxels of the new size ``s'`` centred in it:
        the new first centre is ``x0 - s/2 + s'/2``. The affine's direction
        columns are unchanged and its steps are the new spacing.
    """
    src = grid_of(da)
    spec = per_axis(spacing, "spacing") if spacing is not None else {}
    if spacing is not None and not spec:
        raise ValueError("spacing is empty")
    steps, sizes, origin = {}, {}, []
    for ax in AXES:
        v = src.values(ax)
        if len(v) > 1:
            d = np.diff(v)
            s0 = float(np.median(d))
            lo_edge, hi_edge = v[0] - d[0] / 2, v[-1] + d[-1] / 2
        else:
            s0 = float(src.default_spacing.get(ax, 1.0))
            lo_edge, hi_edge = v[0] - s0 / 2, v[0] + s0 / 2
        if ax in spec:
            num, kind = spec[ax]
            if kind == "vox":
                num = num * abs(s0)
            if not num > 0:
                raise ValueError(f"spacing must be positive, got {num} mm for {ax!r}")
            s1 = math.copysign(num, s0)
        else:
            s1 = s0
        fov = hi_edge - lo_edge
        n1 = max(1, int(round(fov / s1 - 1e-9)))
        steps[ax], sizes[ax] = s1, n1
        origin.append(lo_edge + s1 / 2)
    dirs = {ax: src.direction(ax) for ax in AXES}
    target = regular_grid(np.array(origin), steps, sizes, dirs, src.default_spacing)
    return resample_to_grid(da, target, method=method, fill_value=fill_value, chunks=chunks)
