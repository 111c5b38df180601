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
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..decode import syntax as ts
from ..decode.frameref import FrameRef

__all__ = ["JPEG_DECODERS", "decode_tiles", "pool"]

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


def _decode_one(ref: FrameRef, blob, jpeg8) -> np.ndarray:
    from ..decode.codecs import _jpeg_photometric, decode_frame
    from ..decode.markers import split_fragments
    from ..decode.photometric import YBR_TO_RGB

    if jpeg8 is not None and _turbo_ok(ref):
        try:
            fragments = split_fragments(blob)
            src = fragments[0] if len(fragments) == 1 else b"".join(fragments)
            if ref.samples_per_pixel == 3:
                cs = "YCBCR" if _jpeg_photometric(ref, src) in YBR_TO_RGB else "RGB"
                arr = jpeg8(src, colorspace=cs, outcolorspace="RGB")
                shape = (ref.rows, ref.columns, 3)
            else:
                arr = jpeg8(src)
                shape = (ref.rows, ref.columns)
                if arr.ndim == 3 and arr.shape[-1] == 1:
                    arr = arr[..., 0]
            if arr.shape == shape and arr.dtype == np.uint8:
                return arr
        except Exception:  # noqa: BLE001 - fall back to the decode layer, which reports file and frame
            pass
    return decode_frame(ref, blob)


def _read(refs: Sequence[FrameRef], storage_options: dict | None) -> list:
    from ..decode.codecs import _read_group

    groups: dict[tuple[str, int | None], list[int]] = defaultdict(list)
    for i, ref in enumerate(refs):
        groups[(ref.url, ref.deflate_from)].append(i)
    data: list = [None] * len(refs)
    for (url, _), idx in groups.items():
        for i, blob in zip(idx, _read_group(url, [refs[i] for i in idx], storage_options)):
            data[i] = blob
    return data


def decode_tiles(
    refs: Sequence[FrameRef],
    threads: int = 1,
    storage_options: dict | None = None,
    jpeg_decoder: str = "libjpeg-turbo",
) -> list[np.ndarray]:
    """Read and decode WSI tiles (one read call per file, decodes in a shared thread pool).

    Parameters
    ----------
    refs : sequence of FrameRef
    threads : int
        Decoder threads (libjpeg-turbo and the other imagecodecs codecs release the GIL).
    storage_options : dict, optional
    jpeg_decoder : {"libjpeg-turbo", "pydicom"}
        JPEG baseline tiles: libjpeg-turbo's RGB output, or pydicom's exact values.

    Returns
    -------
    list of numpy.ndarray
        In the order of ``refs``.
    """
    if jpeg_decoder == "pydicom":
        from ..decode.codecs import decode_frames

        return decode_frames(refs, threads=threads, storage_options=storage_options)
    if jpeg_decoder not in JPEG_DECODERS:
        raise ValueError(f"jpeg_decoder must be one of {JPEG_DECODERS}, got {jpeg_decoder!r}")
    data = _read(refs, storage_options)
    jpeg8 = _jpeg8()
    if threads > 1 and len(refs) > 1:
        return list(pool(threads).map(_decode_one, refs, data, [jpeg8] * len(refs)))
    return [_decode_one(r, d, jpeg8) for r, d in zip(refs, data)]
