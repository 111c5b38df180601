"""The chunk task: a block of FrameRefs -> one ndarray of real-world values.

``load_block`` is the only function dcmxr puts in Dask graphs. Its arguments
are a tuple of FrameRefs (None for a missing frame) and a small
:class:`BlockSpec`; both pickle to a few hundred bytes per frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .frameref import FrameRef


@dataclass(frozen=True, slots=True)
class BlockSpec:
    """How to turn decoded frames into the block.

    Parameters
    ----------
    shape : tuple of int
        Leading (frame-grid) shape of the block, e.g. ``(nt, nz)``.
    frame_shape : tuple of int
        Output shape of one frame: ``(rows, cols)`` or ``(rows, cols, c)``.
    dtype : str
        Output dtype.
    slopes, intercepts : tuple of float or None
        Per-frame rescale (None: stored values).
    crops : tuple or None
        Per-frame ``(row0, col0)`` of a tile inside the decoded frame (MOSAIC);
        the tile size is ``frame_shape[:2]``.
    fill : float
        Value of missing frames.
    threads : int
        Threads for decoding compressed frames.
    storage_options : dict or None
        fsspec options for remote URLs.
    """

    shape: tuple[int, ...]
    frame_shape: tuple[int, ...]
    dtype: str
    slopes: tuple[float, ...] | None = None
    intercepts: tuple[float, ...] | None = None
    crops: tuple[tuple[int, int] | None, ...] | None = None
    fill: float = 0
    threads: int = 1
    storage_options: dict | None = None


_NATIVE_LE = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1")


def _slot_dtype(ref: FrameRef | None, spec: BlockSpec, out_dtype: np.dtype, i: int) -> np.dtype | None:
    """The stored dtype when frame ``i``'s stored values can be written straight into its output slot.

    True for monochrome frames whose stored values, after clearing the bits above Bits
    Stored, keep their value when the output's bytes are viewed as the stored dtype (same
    item size; unsigned stored into a signed output only when Bits Stored leaves the sign
    bit clear), and whose rescale is a whole-number intercept with slope 1 (or none).
    """
    if (ref is None or ref.samples_per_pixel != 1 or ref.float_pixels
            or ref.bits_allocated not in (8, 16, 32)
            or ref.photometric_interpretation not in ("MONOCHROME1", "MONOCHROME2")
            or (spec.crops is not None and spec.crops[i] is not None)
            or spec.frame_shape != (ref.rows, ref.columns)):
        return None
    stored = np.dtype(f"{'i' if ref.pixel_representation else 'u'}{ref.bits_allocated // 8}")
    if stored.itemsize != out_dtype.itemsize or out_dtype.kind not in "iu":
        return None
    if stored != out_dtype:
        if stored.kind == "i" or ref.bits_stored >= ref.bits_allocated:
            return None
    if spec.slopes is not None:
        if spec.slopes[i] != 1 or not float(spec.intercepts[i]).is_integer():
            return None
    return stored


def _direct_native(ref: FrameRef | None, spec: BlockSpec, out_dtype: np.dtype, i: int) -> np.dtype | None:
    """The stored dtype when native frame ``i`` of a local file can be read straight into its slot."""
    if (ref is None or ref.transfer_syntax not in _NATIVE_LE or ref.bit_offset
            or ref.deflate_from is not None or "://" in ref.url):
        return None
    stored = _slot_dtype(ref, spec, out_dtype, i)
    if stored is None or ref.length < ref.rows * ref.columns * stored.itemsize:
        return None  # a short range: let the decoder report it
    return stored


def _read_direct(jobs: list[tuple[FrameRef, np.ndarray]]) -> None:
    """Read native frames straight into their output slots.

    One open per file and one ``preadv`` per run of frames that lie back to back in the
    file (the slots are the iovecs), so adjacent frames cost one request, as in
    :func:`dcmxr.decode.read.read_ranges`.
    """
    import os

    from ..errors import InvalidDicomError

    by_file: dict[str, list[tuple[FrameRef, np.ndarray]]] = {}
    for ref, slot in jobs:
        by_file.setdefault(ref.url, []).append((ref, slot))
    for path, items in by_file.items():
        items.sort(key=lambda it: it[0].offset)
        fd = os.open(path, os.O_RDONLY)
        try:
            run: list[tuple[FrameRef, np.ndarray]] = []
            for item in items + [None]:
                if run and (item is None or item[0].offset != run[-1][0].offset + run[-1][0].length):
                    views = [memoryview(s.reshape(-1).view(np.uint8))[: r.length] for r, s in run]
                    want = sum(v.nbytes for v in views)
                    got = os.preadv(fd, views, run[0][0].offset)
                    if got != want:
                        raise InvalidDicomError(
                            f"{path}: frame {run[0][0].frame_index} truncated ({got} of {want} bytes)")
                    run = []
                if item is not None:
                    run.append(item)
        finally:
            os.close(fd)


def _place(flat: np.ndarray, i: int, arr: np.ndarray, spec: BlockSpec) -> None:
    """Crop (MOSAIC tile) and rescale one decoded frame into ``flat[i]``."""
    h, w = spec.frame_shape[:2]
    if spec.crops is not None and spec.crops[i] is not None:
        r0, c0 = spec.crops[i]
        arr = arr[r0 : r0 + h, c0 : c0 + w]
    if spec.slopes is None:
        flat[i] = arr
        return
    slope = spec.slopes[i]
    icpt = spec.intercepts[i]
    if slope == 1 and icpt == 0:
        flat[i] = arr
    elif slope == 1 and flat.dtype.kind in "iu" and float(icpt).is_integer():
        # exact in the output dtype: it was chosen to hold every stored value + intercept
        np.add(arr, flat.dtype.type(int(icpt)), out=flat[i], dtype=flat.dtype, casting="unsafe")
    elif flat.dtype.kind in "iu" and float(slope).is_integer() and float(icpt).is_integer():
        np.add(arr.astype(np.int64, copy=False) * int(slope), int(icpt), out=flat[i], casting="unsafe")
    else:
        np.multiply(arr, slope, out=flat[i], casting="unsafe")
        flat[i] += icpt


def _read_local_range(ref: FrameRef):
    """The bytes of one frame's range in a local file (one open, one pread)."""
    from . import read  # looked up per call: the read functions are the single place that touches files

    return read.read_ranges(ref.url, [(ref.offset, ref.length)])[0]


def _rescale_slot(flat: np.ndarray, i: int, spec: BlockSpec) -> None:
    """Add frame ``i``'s whole-number intercept in place (slot chosen by :func:`_slot_dtype`)."""
    if spec.slopes is not None and spec.intercepts[i] != 0:
        np.add(flat[i], flat.dtype.type(int(spec.intercepts[i])), out=flat[i])


def _load_local_encoded(todo: list[FrameRef], slots: dict[FrameRef, list[int]], spec: BlockSpec,
                        out_dtype: np.dtype, alloc) -> np.ndarray:
    """Decode the encoded frames of local files, one task per frame (read, decode, place).

    Each task reads its own range and, when the codec and the slot allow it, decodes
    straight into the output (no intermediate frame, no copy); otherwise it decodes and
    places the frame. With ``spec.threads`` > 1 the tasks are shared between the calling
    thread and the shared decoder pool, so reading, bit fixing and placing run in parallel
    too, not only the codec.
    """
    from .codecs import can_decode_into, decode_frame, decode_frame_into, map_in_threads

    # Decode the first frame before allocating the block: a header declaring huge
    # Rows/Columns over a small codestream fails in the decoder (shape check) instead of
    # first reserving gigabytes for the output.
    first = decode_frame(todo[0], _read_local_range(todo[0]))
    flat = alloc()
    for i in slots[todo[0]]:
        _place(flat, i, first, spec)
    del first

    def one(ref: FrameRef) -> None:
        data = _read_local_range(ref)
        idx = slots[ref]
        if len(idx) == 1 and can_decode_into(ref):
            i = idx[0]
            stored = _slot_dtype(ref, spec, out_dtype, i)
            if stored is not None and decode_frame_into(ref, data, flat[i].view(stored)):
                _rescale_slot(flat, i, spec)
                return
        arr = decode_frame(ref, data)
        for i in idx:
            _place(flat, i, arr, spec)

    map_in_threads(one, todo[1:], spec.threads)
    return flat


def load_block(refs: tuple[FrameRef | None, ...], spec: BlockSpec, out: np.ndarray | None = None) -> np.ndarray:
    """Read, decode, crop and rescale the frames of one block.

    Parameters
    ----------
    refs : tuple of FrameRef or None
        Frames in C order of ``spec.shape``.
    spec : BlockSpec
    out : numpy.ndarray, optional
        Where to write the block (shape ``spec.shape + spec.frame_shape``, dtype
        ``spec.dtype``); allocated when not given. Uncompressed local frames are
        read straight into it (no intermediate buffer).

    Returns
    -------
    numpy.ndarray
        Shape ``spec.shape + spec.frame_shape``.
    """
    from .codecs import decode_frames

    out_dtype = np.dtype(spec.dtype)
    direct = [_direct_native(r, spec, out_dtype, i) for i, r in enumerate(refs)]
    slots: dict[FrameRef, list[int]] = {}
    for i, (r, d) in enumerate(zip(refs, direct)):
        if r is not None and d is None:
            slots.setdefault(r, []).append(i)
    todo = list(slots)
    if out is None:
        def alloc():
            return np.empty(spec.shape + spec.frame_shape, dtype=out_dtype).reshape((-1,) + spec.frame_shape)
    else:
        def alloc():
            return out.reshape((-1,) + spec.frame_shape)
    local = bool(todo) and all(r.deflate_from is None and ("://" not in r.url or r.url.startswith("file://"))
                               for r in todo)
    first: list = []
    flat = None
    batch = 1
    if local:
        flat = _load_local_encoded(todo, slots, spec, out_dtype, alloc)
        todo = []
    else:
        # Remote or deflated: read in batches (one coalesced request per file; remote: all
        # at once) and decode the first batch before allocating the block (see above).
        # Frames are decoded a batch at a time and copied into place, so a chunk never
        # holds its frames twice.
        batch = max(8, 4 * max(spec.threads, 1))
        if any("://" in r.url for r in todo):
            batch = max(len(todo), 1)  # remote: one coalesced request per file matters more
        first = (decode_frames(todo[:batch], threads=spec.threads, storage_options=spec.storage_options)
                 if todo else [])
    if flat is None:
        flat = alloc()
    _read_direct([(r, flat[i].view(direct[i])) for i, r in enumerate(refs) if direct[i] is not None])
    for i, r in enumerate(refs):
        if r is None:
            flat[i] = spec.fill
        elif direct[i] is not None:
            slot = flat[i].view(direct[i])
            shift = r.bits_allocated - r.bits_stored
            if shift > 0 and not r.pixel_representation:  # clear bits above Bits Stored, as pydicom does
                np.bitwise_and(slot, slot.dtype.type((1 << r.bits_stored) - 1), out=slot)
            elif shift > 0:  # sign-extend from Bits Stored
                np.left_shift(slot, shift, out=slot)
                np.right_shift(slot, shift, out=slot)
            _rescale_slot(flat, i, spec)
    for start in range(0, len(todo), batch):
        group = todo[start:start + batch]
        decoded = first if start == 0 else decode_frames(group, threads=spec.threads,
                                                         storage_options=spec.storage_options)
        for r, arr in zip(group, decoded):
            for i in slots[r]:
                _place(flat, i, arr, spec)
    return flat.reshape(spec.shape + spec.frame_shape) if out is None else out
