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


def _direct_native(ref: FrameRef | None, spec: BlockSpec, out_dtype: np.dtype, i: int) -> np.dtype | None:
    """The stored dtype when frame ``i`` can be read straight into its output slot, else None.

    True for little-endian native monochrome frames of a local file whose stored values,
    after clearing the bits above Bits Stored, keep their value when the output's bytes
    are viewed as the stored dtype (same item size; unsigned stored into a signed output
    only when Bits Stored leaves the sign bit clear), and whose rescale is a whole-number
    intercept with slope 1 (or none).
    """
    if (ref is None or ref.transfer_syntax not in _NATIVE_LE or ref.samples_per_pixel != 1
            or ref.bit_offset or ref.deflate_from is not None or ref.float_pixels
            or ref.bits_allocated not in (8, 16, 32) or "://" in ref.url
            or ref.photometric_interpretation not in ("MONOCHROME1", "MONOCHROME2")
            or (spec.crops is not None and spec.crops[i] is not None)
            or spec.frame_shape != (ref.rows, ref.columns)):
        return None
    stored = np.dtype(f"{'i' if ref.pixel_representation else 'u'}{ref.bits_allocated // 8}")
    if stored.itemsize != out_dtype.itemsize or out_dtype.kind not in "iu":
        return None
    if ref.length < ref.rows * ref.columns * stored.itemsize:
        return None  # a short range: let the decoder report it
    if stored != out_dtype:
        if stored.kind == "i" or ref.bits_stored >= ref.bits_allocated:
            return None
    if spec.slopes is not None:
        if spec.slopes[i] != 1 or not float(spec.intercepts[i]).is_integer():
            return None
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
    # Decode the first batch before allocating the block: a header declaring huge
    # Rows/Columns over a small codestream fails in the decoder (shape check) instead of
    # first reserving gigabytes for the output. Frames are decoded a few at a time and
    # copied into place, so a chunk never holds its frames twice.
    batch = max(8, 4 * max(spec.threads, 1))
    if any("://" in r.url for r in todo):
        batch = max(len(todo), 1)  # remote: one coalesced request per file matters more
    first = (decode_frames(todo[:batch], threads=spec.threads, storage_options=spec.storage_options)
             if todo else [])
    if out is None:
        out = np.empty(spec.shape + spec.frame_shape, dtype=out_dtype)
    flat = out.reshape((-1,) + spec.frame_shape)
    _read_direct([(r, flat[i].view(direct[i])) for i, r in enumerate(refs) if direct[i] is not None])
    for i, r in enumerate(refs):
        if r is None:
            flat[i] = spec.fill
        elif direct[i] is not None:
            slot = flat[i].view(direct[i])
            shift = r.bits_allocated - r.bits_stored
            if shift > 0:  # clear bits above Bits Stored / sign-extend, as pydicom does
                np.left_shift(slot, shift, out=slot)
                np.right_shift(slot, shift, out=slot)
            if spec.slopes is not None and spec.intercepts[i] != 0:
                np.add(flat[i], out_dtype.type(int(spec.intercepts[i])), out=flat[i])
    for start in range(0, len(todo), batch):
        group = todo[start:start + batch]
        decoded = first if start == 0 else decode_frames(group, threads=spec.threads,
                                                         storage_options=spec.storage_options)
        for r, arr in zip(group, decoded):
            for i in slots[r]:
                _place(flat, i, arr, spec)
    return out
