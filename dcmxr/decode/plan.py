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


def load_block(refs: tuple[FrameRef | None, ...], spec: BlockSpec) -> np.ndarray:
    """Read, decode, crop and rescale the frames of one block.

    Parameters
    ----------
    refs : tuple of FrameRef or None
        Frames in C order of ``spec.shape``.
    spec : BlockSpec

    Returns
    -------
    numpy.ndarray
        Shape ``spec.shape + spec.frame_shape``.
    """
    from .codecs import decode_frames

    unique: dict[FrameRef, int] = {}
    for r in refs:
        if r is not None and r not in unique:
            unique[r] = len(unique)
    # Decode before allocating the block: a header declaring huge Rows/Columns
    # over a small codestream fails in the decoder (shape check) instead of
    # first reserving gigabytes for the output.
    decoded = (decode_frames(list(unique), threads=spec.threads, storage_options=spec.storage_options)
               if unique else [])
    out = np.empty(spec.shape + spec.frame_shape, dtype=spec.dtype)
    flat = out.reshape((-1,) + spec.frame_shape)
    h, w = spec.frame_shape[:2]
    for i, r in enumerate(refs):
        if r is None:
            flat[i] = spec.fill
            continue
        arr = decoded[unique[r]]
        if spec.crops is not None and spec.crops[i] is not None:
            r0, c0 = spec.crops[i]
            arr = arr[r0 : r0 + h, c0 : c0 + w]
        if spec.slopes is None:
            flat[i] = arr
            continue
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
    return out
