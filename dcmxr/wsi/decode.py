"""Tile decoding for whole-slide images: libjpeg-turbo for JPEG baseline tiles.

The library-wide decode layer (:mod:`dcmxr.decode.codecs`) returns pydicom's
exact values, so for JPEG baseline it decodes with pylibjpeg-libjpeg and
converts YCbCr with pydicom's float routine: about 16-20 ms per 500x500
colour tile. WSI tiles are nearly always JPEG baseline, and the issue's
reference for them is "identical decoded JPEG output when both use the same
libjpeg": here they go to libjpeg-turbo (``imagecodecs.jpeg8_decode``, which
releases the GIL) asking for RGB output, so the YCbCr->RGB conversion (and
the chroma up-sampling) is libjpeg-turbo's own, about 1 ms per tile. The
result equals Pillow's decode of the same stream (also libjpeg-turbo) exactly,
and before colour conversion it equals wsidicom's output exactly; it differs
from pydicom's by at most a few grey levels on chroma-subsampled tiles
(different up-sampling filters). ``jpeg_decoder="pydicom"`` on
:func:`dcmxr.wsi.open_slide` keeps pydicom's exact values.

Whether a stream is YCbCr is decided as pydicom decides it (component ids
"RGB", a JFIF APP0 marker, else the header's Photometric Interpretation), so
the colour space is the same as with the pydicom path. Every other transfer
syntax (and anything libjpeg-turbo rejects) goes through the library decode
layer, which names the file and frame in its errors.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..decode import syntax as ts
from ..decode.frameref import FrameRef

__all__ = ["JPEG_DECODERS", "decode_blob", "pool"]

#: ``jpeg_decoder`` choices: libjpeg-turbo (fast) or pydicom's exact values.
JPEG_DECODERS = ("libjpeg-turbo", "pydicom")

_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOL_LOCK = threading.Lock()
_TURBO: list = []  # [jpeg8_decode] once imagecodecs is known to work, [None] when unavailable


def pool(threads: int) -> ThreadPoolExecutor:
    """A process-wide thread pool of this size (reused: no start-up cost per call)."""
    with _POOL_LOCK:
        ex = _POOLS.get(threads)
        if ex is None:
            ex = _POOLS[threads] = ThreadPoolExecutor(threads, thread_name_prefix=f"dcmxr-wsi{threads}")
        return ex


def _jpeg8():
    if not _TURBO:
        try:
            import imagecodecs

            _TURBO.append(imagecodecs.jpeg8_decode if imagecodecs.JPEG8.available else None)
        except (ImportError, AttributeError):
            _TURBO.append(None)
    return _TURBO[0]


def _turbo_ok(ref: FrameRef) -> bool:
    return (ref.transfer_syntax == ts.JPEG_BASELINE and ref.bits_allocated == 8
            and ref.samples_per_pixel in (1, 3) and ref.pixel_representation == 0)


def _decode_one(ref: FrameRef, blob, jpeg8, out: np.ndarray | None = None) -> np.ndarray:
    """Decode one tile; ``out`` (C-contiguous, the tile's shape and dtype) receives it when given."""
    from ..decode.codecs import _jpeg_photometric, decode_frame
    from ..decode.markers import split_fragments
    from ..decode.photometric import YBR_TO_RGB

    if jpeg8 is not None and _turbo_ok(ref):
        try:
            fragments = split_fragments(blob)
            src = fragments[0] if len(fragments) == 1 else b"".join(fragments)
            if ref.samples_per_pixel == 3:
                shape = (ref.rows, ref.columns, 3)
                cs = "YCBCR" if _jpeg_photometric(ref, src) in YBR_TO_RGB else "RGB"
                into = out if out is not None and out.shape == shape else None
                arr = jpeg8(src, colorspace=cs, outcolorspace="RGB", out=into)
            else:
                shape = (ref.rows, ref.columns)
                arr = jpeg8(src)
                if arr.ndim == 3 and arr.shape[-1] == 1:
                    arr = arr[..., 0]
            if arr.shape == shape and arr.dtype == np.uint8:
                return arr
        except Exception:  # noqa: BLE001 - fall back to the decode layer, which reports file and frame
            pass
    return decode_frame(ref, blob)


def _as_item(codestream) -> bytes:
    """Wrap a raw codestream (e.g. a WADO-RS frame) as one pixel data item."""
    import struct

    data = bytes(codestream)
    if len(data) % 2:
        data += b"\x00"
    return b"\xfe\xff\x00\xe0" + struct.pack("<I", len(data)) + data


def decode_blob(ref: FrameRef, blob, jpeg_decoder: str = "libjpeg-turbo", *, raw: bool = False,
                out: np.ndarray | None = None) -> np.ndarray:
    """Decode one tile's bytes (items as stored in the file, or a raw codestream with ``raw=True``).

    Parameters
    ----------
    ref : FrameRef
        Geometry and transfer syntax of the frame (its byte range is not used).
    blob : bytes-like
    jpeg_decoder : {"libjpeg-turbo", "pydicom"}
    raw : bool
        ``blob`` is the frame's codestream (or native bytes), not pixel data items.
    out : numpy.ndarray, optional
        A C-contiguous buffer of the tile's shape that libjpeg-turbo may
        decode into (the result may still be a new array: check identity).

    Returns
    -------
    numpy.ndarray
        ``(rows, columns[, samples])``.

    Raises
    ------
    DecodeError
        Naming the file and frame.
    """
    if raw and not ts.is_native(ref.transfer_syntax):
        blob = _as_item(blob)
    if jpeg_decoder == "pydicom":
        from ..decode.codecs import decode_frame

        return decode_frame(ref, blob)
    return _decode_one(ref, blob, _jpeg8(), out)
