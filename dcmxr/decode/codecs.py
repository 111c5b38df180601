"""Decode one stored frame into exactly what pydicom 3's ``pixel_array`` gives.

Codec choice per transfer syntax
--------------------------------
Measured on this project's dev machine (2 cores), imagecodecs 2026.3.6,
pylibjpeg 2.1 (+libjpeg 2.5, openjpeg 2.6, rle 2.2), decoded output MB/s over
the same frames (../shared/data; numbers include dcmxr's post-processing,
e.g. pydicom's YBR->RGB conversion), 1 thread / 2 threads:

  syntax                      codec                  1 thread  2 threads
  .4.50  JPEG baseline        imagecodecs.jpeg8        158       504   (43 WSI 500x500 RGB 4:2:0 tiles)
                              pylibjpeg.libjpeg         97       174
  .4.51  JPEG extended 12-bit imagecodecs.jpeg8       1683      1681   (1 small frame: noisy)
                              pylibjpeg.libjpeg        456       375
  .4.57/.70 JPEG lossless     imagecodecs.jpeg8        309       456   (libjpeg-turbo 3 lossless)
                              imagecodecs.ljpeg        220       375
                              imagecodecs.jpegsof3     149       271
                              pylibjpeg.libjpeg         67        64
  .4.80/.81 JPEG-LS           imagecodecs.jpegls        98       167
                              pylibjpeg.libjpeg         25        24
  .4.90  JPEG 2000 lossless   imagecodecs.jpeg2k        27        52
                              pylibjpeg.openjpeg        27        27
  .4.91  JPEG 2000            imagecodecs.jpeg2k       116       191
                              pylibjpeg.openjpeg       113       107
  .4.201 HTJ2K lossless       imagecodecs.htj2k        292       477
                              imagecodecs.jpeg2k       117       209
                              pylibjpeg.openjpeg       111       100
  .4.203 HTJ2K                imagecodecs.htj2k        271       401
                              imagecodecs.jpeg2k       142       247
                              pylibjpeg.openjpeg       129       120
  .5     RLE lossless         imagecodecs.dicomrle    2956      2776
                              pylibjpeg.rle           2125      1349
  .8.1   Deflated image frame zlib (stdlib; releases the GIL)

Choice: the fastest (imagecodecs; it releases the GIL so 2 threads scale)
for every syntax EXCEPT lossy JPEG (.50/.51), where pylibjpeg-libjpeg comes
first because it is the decoder pydicom uses and the brief asks for pydicom's
exact values: libjpeg-turbo (imagecodecs) differs from it by up to 7 grey
levels on chroma-subsampled (4:2:0) colour tiles (different chroma
up-sampling) and by 1 on 12-bit IDCT rounding. imagecodecs stays second and
is used when pylibjpeg is missing or fails (e.g. JPEG-lossy.dcm, which
pylibjpeg rejects). Users who prefer speed over pydicom parity (WSI) call
``set_codec_order(JPEG_BASELINE, ["imagecodecs.jpeg8", "pylibjpeg.libjpeg"])``
(about 3x faster with 2 threads). Lossy HTJ2K (.203) also departs from
"fastest": OpenJPH (imagecodecs.htj2k) gave values up to 255 off OpenJPEG's
(pydicom's) on 1331 pixels of HTJ2K_08_RGB.dcm (apparently no clipping of
overshoots), so imagecodecs.jpeg2k (OpenJPEG, exact) comes first there; for
lossless HTJ2K OpenJPH is exact and used. The lossless codecs were checked for
exact equality with pydicom on every file in ../shared/data/transfer_syntax.

Every codec library is imported lazily; a missing one raises
:class:`~dcmxr.errors.MissingDependencyError` naming the ``jpeg`` extra. The
output follows pydicom 3 (stored values, no rescale): dtype from Bits
Allocated / Pixel Representation (native byte order), unused high bits
cleared or sign-extended from Bits Stored, JPEG 2000 / JPEG-LS signedness
corrections, YBR_FULL(_422) converted to RGB with pydicom's own routine,
planar configuration resolved, 1-bit data unpacked to uint8.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
import zlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from dcmxr.decode import syntax as ts
from dcmxr.decode.frameref import FrameRef
from dcmxr.decode.markers import j2k_info, jpeg_info, split_fragments
from dcmxr.decode.native import decode_native
from dcmxr.decode.photometric import YBR_TO_RGB, shift_correct, target_dtype, to_rgb
from dcmxr.errors import (
    DecodeError,
    InvalidDicomError,
    MissingDependencyError,
    UnsupportedTransferSyntaxError,
    missing_dependency,
)

__all__ = [
    "decode_frame",
    "decode_frame_into",
    "decode_frames",
    "decoder_pool",
    "map_in_threads",
    "available_codecs",
    "set_codec_order",
    "CODEC_ORDER",
    "CODECS",
]

EXTRA = "jpeg"

# --------------------------------------------------------------------------- codec functions
# Each takes the joined fragment bytes and the FrameRef and returns
# ``(array, mode, photometric_after_decode)`` where mode says how pydicom
# interprets the decoded samples (see ``_finish``).


def _imagecodecs():
    try:
        return importlib.import_module("imagecodecs")
    except ImportError:
        raise missing_dependency("imagecodecs", EXTRA) from None


def _module(name: str, package: str):
    try:
        return importlib.import_module(name)
    except ImportError:
        raise missing_dependency(package, EXTRA) from None


def _jpeg_photometric(ref: FrameRef, src) -> str:
    """The colour space pydicom assumes for a JPEG / JPEG-LS frame."""
    pi = ref.photometric_interpretation
    if ref.samples_per_pixel != 3:
        return pi
    info = jpeg_info(src)
    if info.component_ids in ([82, 71, 66], [114, 103, 98]):  # "RGB" / "rgb"
        return "RGB"
    app0 = info.app.get(0xE0, b"")
    if app0.startswith(b"JFIF") and "YBR" not in pi:
        return "YBR_FULL_422" if ref.transfer_syntax == ts.JPEG_BASELINE else "YBR_FULL"
    return pi


def _ic_jpeg8(src, ref: FrameRef):
    ic = _imagecodecs()
    pi = _jpeg_photometric(ref, src)
    if ref.samples_per_pixel == 3 and pi in YBR_TO_RGB:
        arr = ic.jpeg8_decode(src, colorspace="YCBCR", outcolorspace="YCBCR")
    elif ref.samples_per_pixel == 3:
        arr = ic.jpeg8_decode(src, colorspace="RGB", outcolorspace="RGB")
    else:
        arr = ic.jpeg8_decode(src)
    return arr, "reinterpret", pi


def _ic_ljpeg(src, ref: FrameRef):
    return _imagecodecs().ljpeg_decode(src), "reinterpret", _jpeg_photometric(ref, src)


def _ic_jpegsof3(src, ref: FrameRef):
    return _imagecodecs().jpegsof3_decode(src), "reinterpret", _jpeg_photometric(ref, src)


def _libjpeg(src, ref: FrameRef):
    mod = _module("libjpeg", "pylibjpeg-libjpeg")
    mode = "jls" if ref.transfer_syntax in ts.JPEG_LS else "reinterpret"
    return mod.decode(bytes(src), colour_transform=0), mode, _jpeg_photometric(ref, src)


def _ic_jpegls(src, ref: FrameRef):
    return _imagecodecs().jpegls_decode(src), "jls", _jpeg_photometric(ref, src)


def _j2k_photometric(ref: FrameRef) -> str:
    # OpenJPEG applies the inverse component transform itself.
    pi = ref.photometric_interpretation
    return "RGB" if pi in ("YBR_ICT", "YBR_RCT") else pi


def _ic_jpeg2k(src, ref: FrameRef):
    return _imagecodecs().jpeg2k_decode(src), "j2k", _j2k_photometric(ref)


def _ic_htj2k(src, ref: FrameRef):
    return _imagecodecs().htj2k_decode(src), "j2k", _j2k_photometric(ref)


def _openjpeg(src, ref: FrameRef):
    mod = _module("openjpeg", "pylibjpeg-openjpeg")
    return mod.decode(bytes(src)), "j2k", _j2k_photometric(ref)


def _rle_layout(flat: np.ndarray, ref: FrameRef) -> np.ndarray:
    rows, cols, spp = ref.rows, ref.columns, ref.samples_per_pixel
    if ref.bits_allocated == 1:  # one segment holding the bit-packed frame
        flat = np.unpackbits(flat.view(np.uint8), bitorder="little")[: rows * cols * spp]
    if spp == 1:
        return flat.reshape(rows, cols)
    # RLE stores one segment set per sample: planar configuration 1
    return flat.reshape(spp, rows, cols).transpose(1, 2, 0)


def _rle_dtype(ref: FrameRef) -> np.dtype:
    return np.dtype("u1") if ref.bits_allocated <= 8 else np.dtype(f"<u{ref.bits_allocated // 8}")


def _ic_rle(src, ref: FrameRef):
    dt = _rle_dtype(ref)
    flat = np.frombuffer(_imagecodecs().dicomrle_decode(src, dt), dt)
    return _rle_layout(flat, ref), "reinterpret", ref.photometric_interpretation


def _pylibjpeg_rle(src, ref: FrameRef):
    if ref.bits_allocated == 1:
        raise UnsupportedTransferSyntaxError("pylibjpeg-rle cannot decode 1-bit RLE data")
    mod = _module("rle.utils", "pylibjpeg-rle")
    dt = _rle_dtype(ref)
    raw = mod.decode_frame(bytes(src), ref.rows * ref.columns, ref.bits_allocated, "<")
    return _rle_layout(np.frombuffer(raw, dt), ref), "reinterpret", ref.photometric_interpretation


CodecFn = Callable[[object, FrameRef], tuple[np.ndarray, str, str]]

#: name -> (function, import name that must be present)
CODECS: dict[str, tuple[CodecFn, str]] = {
    "imagecodecs.jpeg8": (_ic_jpeg8, "imagecodecs"),
    "imagecodecs.ljpeg": (_ic_ljpeg, "imagecodecs"),
    "imagecodecs.jpegsof3": (_ic_jpegsof3, "imagecodecs"),
    "imagecodecs.jpegls": (_ic_jpegls, "imagecodecs"),
    "imagecodecs.jpeg2k": (_ic_jpeg2k, "imagecodecs"),
    "imagecodecs.htj2k": (_ic_htj2k, "imagecodecs"),
    "imagecodecs.dicomrle": (_ic_rle, "imagecodecs"),
    "pylibjpeg.libjpeg": (_libjpeg, "libjpeg"),
    "pylibjpeg.openjpeg": (_openjpeg, "openjpeg"),
    "pylibjpeg.rle": (_pylibjpeg_rle, "rle"),
}

#: Preferred codecs per transfer syntax, fastest first (see the table above).
CODEC_ORDER: dict[str, list[str]] = {
    ts.JPEG_BASELINE: ["pylibjpeg.libjpeg", "imagecodecs.jpeg8"],
    ts.JPEG_EXTENDED: ["pylibjpeg.libjpeg", "imagecodecs.jpeg8"],
    ts.JPEG_LOSSLESS: ["imagecodecs.jpeg8", "imagecodecs.ljpeg", "pylibjpeg.libjpeg"],
    ts.JPEG_LOSSLESS_SV1: ["imagecodecs.jpeg8", "imagecodecs.ljpeg", "pylibjpeg.libjpeg"],
    ts.JPEG_LS_LOSSLESS: ["imagecodecs.jpegls", "pylibjpeg.libjpeg"],
    ts.JPEG_LS_NEAR_LOSSLESS: ["imagecodecs.jpegls", "pylibjpeg.libjpeg"],
    ts.JPEG_2000_LOSSLESS: ["imagecodecs.jpeg2k", "pylibjpeg.openjpeg"],
    ts.JPEG_2000: ["imagecodecs.jpeg2k", "pylibjpeg.openjpeg"],
    ts.HTJ2K_LOSSLESS: ["imagecodecs.htj2k", "imagecodecs.jpeg2k", "pylibjpeg.openjpeg"],
    ts.HTJ2K_LOSSLESS_RPCL: ["imagecodecs.htj2k", "imagecodecs.jpeg2k", "pylibjpeg.openjpeg"],
    # OpenJPH differs from OpenJPEG/pydicom on lossy HTJ2K (see above)
    ts.HTJ2K: ["imagecodecs.jpeg2k", "imagecodecs.htj2k", "pylibjpeg.openjpeg"],
    ts.RLE_LOSSLESS: ["imagecodecs.dicomrle", "pylibjpeg.rle"],
}

_AVAILABLE: dict[str, bool] = {}


def _is_available(name: str) -> bool:
    if name not in _AVAILABLE:
        module = CODECS[name][1]
        try:
            mod = importlib.import_module(module)
            if module == "imagecodecs":
                fn = {"imagecodecs.jpeg8": "JPEG8", "imagecodecs.ljpeg": "LJPEG", "imagecodecs.jpegsof3": "JPEGSOF3",
                      "imagecodecs.jpegls": "JPEGLS", "imagecodecs.jpeg2k": "JPEG2K", "imagecodecs.htj2k": "HTJ2K",
                      "imagecodecs.dicomrle": "DICOMRLE"}[name]
                ok = bool(getattr(getattr(mod, fn, None), "available", False))
            else:
                ok = True
        except ImportError:
            ok = False
        _AVAILABLE[name] = ok
    return _AVAILABLE[name]


def available_codecs(transfer_syntax: str) -> list[str]:
    """Names of the installed codecs for a transfer syntax, preferred first."""
    return [n for n in CODEC_ORDER.get(transfer_syntax, []) if _is_available(n)]


def set_codec_order(transfer_syntax: str, names: Sequence[str]) -> None:
    """Set the codec preference for a transfer syntax (process-wide).

    Parameters
    ----------
    transfer_syntax : str
    names : sequence of str
        Codec names from ``CODECS``, preferred first.
    """
    unknown = [n for n in names if n not in CODECS]
    if unknown:
        raise ValueError(f"unknown codec(s) {unknown}; choose from {sorted(CODECS)}")
    CODEC_ORDER[transfer_syntax] = list(names)


def _unsupported(transfer_syntax: str) -> UnsupportedTransferSyntaxError:
    return UnsupportedTransferSyntaxError(
        f"transfer syntax {transfer_syntax} is not supported by dcmxr; the codecs it can use "
        f"(JPEG, JPEG-LS, JPEG 2000, HTJ2K, RLE) are installed with `pip install 'dcmxr[{EXTRA}]'`"
    )


# --------------------------------------------------------------------------- post-processing
def _finish(arr: np.ndarray, ref: FrameRef, mode: str, pi: str, src) -> np.ndarray:
    """Turn a decoder's array into pydicom's values and dtype."""
    rows, cols, spp = ref.rows, ref.columns, ref.samples_per_pixel
    shape = (rows, cols) if spp == 1 else (rows, cols, spp)
    if arr.ndim == 3 and spp == 1 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.shape != shape:
        raise ValueError(f"decoded shape {arr.shape} does not match the header's {shape}")
    dt = target_dtype(ref.bits_allocated, ref.pixel_representation)

    if mode == "reinterpret":
        # pydicom reads the decoded buffer with the header's dtype.
        arr = arr.view(dt) if arr.dtype.itemsize == dt.itemsize and arr.dtype.kind in "ui" else arr.astype(dt)
        if 0 < ref.bits_stored < ref.bits_allocated:
            arr = shift_correct(arr, ref.bits_allocated - ref.bits_stored)
    else:
        if mode == "j2k":
            info = j2k_info(src)
            precision, signed = info if info else (ref.bits_stored, bool(ref.pixel_representation))
        else:
            precision = jpeg_info(src).precision or ref.bits_stored
            signed = False
        size = 1 if precision <= 8 else 2 if precision <= 16 else 4
        container = np.dtype(f"{'i' if ref.pixel_representation else 'u'}{size}")
        if arr.dtype.itemsize != size:
            arr = arr.astype(f"u{size}")
        arr = arr.view(container).astype(dt, copy=False)
        shift = dt.itemsize * 8 - precision
        if mode == "j2k":
            fix = pi in ("MONOCHROME1", "MONOCHROME2") and signed != bool(ref.pixel_representation)
        else:
            fix = ref.pixel_representation == 1
        if fix and shift > 0:
            arr = shift_correct(arr, shift)

    if spp == 3 and pi in YBR_TO_RGB:
        arr = to_rgb(arr)
    if not arr.flags.writeable:
        arr = arr.copy()
    return arr


def _decode_deflated_frame(src, ref: FrameRef) -> np.ndarray:
    raw = zlib.decompress(src, -15)
    flat = FrameRef(**{**_as_dict(ref), "transfer_syntax": ts.EXPLICIT_VR_LE, "bit_offset": 0})
    return decode_native(flat, raw)


def _as_dict(ref: FrameRef) -> dict:
    return {name: getattr(ref, name) for name in ref.__dataclass_fields__}


# --------------------------------------------------------------------------- decoding into a slot
# The fast codecs (libjpeg-turbo lossless ~1.5 ms, DICOM RLE ~0.5 ms per 512x512 frame) are
# so quick that an intermediate array, a copy into the block and a separate bit-correction
# pass are a visible share of the work. For monochrome frames whose output slot can hold
# the stored values (see ``dcmxr.decode.plan``), these decode straight into the slot
# (imagecodecs' ``out=``) and fix the unused high bits in place, only when they can be set.


def _jpeg8_into(src, ref: FrameRef, slot: np.ndarray) -> bool:
    precision = jpeg_info(src).precision
    if not precision or (1 if precision <= 8 else 2) != slot.dtype.itemsize:
        return False
    _imagecodecs().jpeg8_decode(src, out=slot.view(f"u{slot.dtype.itemsize}"))
    # pydicom clears (unsigned) or sign-extends (signed) the bits above Bits Stored; for
    # unsigned samples of at most Bits Stored bits of precision there is nothing to clear
    if ref.pixel_representation or precision > ref.bits_stored:
        shift_correct(slot, ref.bits_allocated - ref.bits_stored)
    return True


def _rle_into(src, ref: FrameRef, slot: np.ndarray) -> bool:
    if ref.bits_allocated not in (8, 16, 32) or slot.dtype.itemsize * 8 != ref.bits_allocated:
        return False
    got = _imagecodecs().dicomrle_decode(src, _rle_dtype(ref), out=memoryview(slot.reshape(-1).view(np.uint8)))
    if len(got) != slot.nbytes:
        return False  # short data: the general path reports it
    shift = ref.bits_allocated - ref.bits_stored
    if 0 < shift and not ref.pixel_representation:
        np.bitwise_and(slot, slot.dtype.type((1 << ref.bits_stored) - 1), out=slot)
    else:
        shift_correct(slot, shift)
    return True


#: codecs that can decode a monochrome frame into a given array
_INTO: dict[str, Callable[[object, FrameRef, np.ndarray], bool]] = {
    "imagecodecs.jpeg8": _jpeg8_into,
    "imagecodecs.dicomrle": _rle_into,
}


def can_decode_into(ref: FrameRef) -> bool:
    """True when :func:`decode_frame_into` may handle ``ref`` (the preferred codec supports it)."""
    if ref.samples_per_pixel != 1 or sys.byteorder != "little" or ref.transfer_syntax not in ts.ENCAPSULATED:
        return False
    names = available_codecs(ref.transfer_syntax)
    return bool(names) and names[0] in _INTO


def decode_frame_into(ref: FrameRef, data, slot: np.ndarray) -> bool:
    """Decode a monochrome frame straight into ``slot`` when the preferred codec can.

    Parameters
    ----------
    ref : FrameRef
    data : bytes-like
        The bytes of ``ref``'s range.
    slot : numpy.ndarray
        C-contiguous ``(rows, columns)`` array of the stored dtype (Bits Allocated,
        Pixel Representation, native order).

    Returns
    -------
    bool
        True when ``slot`` now holds exactly what :func:`decode_frame` returns; False
        when nothing usable was written (the caller then uses :func:`decode_frame`,
        which also reports errors).
    """
    if not can_decode_into(ref) or slot.shape != (ref.rows, ref.columns) or not slot.flags.c_contiguous:
        return False
    try:
        fragments = split_fragments(data)
        src = fragments[0] if len(fragments) == 1 else b"".join(fragments)
        return _INTO[available_codecs(ref.transfer_syntax)[0]](src, ref, slot)
    except Exception:  # noqa: BLE001 - any codec failure: the general path decodes or reports it
        return False


_POOL: list = []  # [ThreadPoolExecutor] once made
_POOL_LOCK = threading.Lock()


def _forget_pool() -> None:  # a forked child has no pool threads
    global _POOL_LOCK
    _POOL.clear()
    _POOL_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def decoder_pool(threads: int = 1) -> ThreadPoolExecutor:
    """The process-wide pool of decoder threads (made once, reused by every chunk).

    It has at least ``max(threads, os.cpu_count())`` workers, so several Dask tasks can
    use it at once; :func:`map_in_threads` keeps each call to its own ``threads``.
    Starting a pool per chunk costs thread start-up and a join barrier per batch; the
    codecs release the GIL, so one long-lived pool is all dcmxr needs.
    """
    want = max(int(threads), os.cpu_count() or 1)
    with _POOL_LOCK:
        if not _POOL or _POOL[0]._max_workers < want:
            old = _POOL[0] if _POOL else None
            _POOL[:] = [ThreadPoolExecutor(want, thread_name_prefix="dcmxr-decode")]
            if old is not None:
                old.shutdown(wait=False)
        return _POOL[0]


def map_in_threads(fn: Callable, items: Sequence, threads: int) -> list:
    """``[fn(x) for x in items]`` on ``threads`` threads: the caller and ``threads - 1`` pool workers.

    Each thread takes the next item as it becomes free (a busy or descheduled thread does
    not hold back a fixed share of the work). After the first error no new item is
    started; every thread has stopped before this returns or raises (the error of the
    earliest failing item is raised), so no worker still writes into a caller's buffer
    afterwards.
    """
    n = min(int(threads), len(items))
    if n <= 1:
        return [fn(x) for x in items]
    import itertools
    from concurrent.futures import wait

    out: list = [None] * len(items)
    errors: dict[int, BaseException] = {}
    ticket = itertools.count()  # next() is atomic under the GIL

    def runner() -> None:
        for i in ticket:
            if i >= len(items) or errors:
                return
            try:
                out[i] = fn(items[i])
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
                errors[i] = exc
                return

    pool = decoder_pool(n)
    futures = [pool.submit(runner) for _ in range(n - 1)]
    try:
        runner()
    finally:
        wait(futures)
    if errors:
        raise errors[min(errors)]
    return out


# --------------------------------------------------------------------------- public API
def decode_frame(ref: FrameRef, data, *, codec: str | None = None) -> np.ndarray:
    """Decode one frame's bytes.

    Parameters
    ----------
    ref : FrameRef
        Where the frame came from and how it is stored.
    data : bytes-like
        The bytes of ``ref``'s range (for the deflated data set syntax, the
        inflated bytes).
    codec : str, optional
        Force a codec by name (see ``CODECS``); default: the first available
        in ``CODEC_ORDER``.

    Returns
    -------
    numpy.ndarray
        (rows, columns) or (rows, columns, samples), writeable, native byte
        order, equal to pydicom 3's ``pixel_array`` for the frame.

    Raises
    ------
    UnsupportedTransferSyntaxError
        No dcmxr codec handles the transfer syntax.
    MissingDependencyError
        The codec library is not installed (message names the extra).
    DecodeError
        The frame's bytes could not be decoded (message names file, frame
        and codec).
    """
    syntax = ref.transfer_syntax
    where = f"frame {ref.frame_index} of {ref.url}"
    if syntax in ts.NATIVE:
        try:
            return decode_native(ref, data, big_endian=ts.is_big_endian(syntax))
        except InvalidDicomError as exc:
            raise DecodeError(f"cannot decode {where} (native): {exc}") from None
    if syntax not in ts.ENCAPSULATED:
        raise _unsupported(syntax)

    try:
        fragments = split_fragments(data)
    except InvalidDicomError as exc:
        raise DecodeError(f"cannot decode {where}: {exc}") from None
    src = fragments[0] if len(fragments) == 1 else b"".join(fragments)

    if syntax == ts.DEFLATED_IMAGE_FRAME:
        try:
            return _decode_deflated_frame(src, ref)
        except (zlib.error, InvalidDicomError, ValueError) as exc:
            raise DecodeError(f"cannot decode {where} with zlib (deflate): {exc}") from None

    if codec is not None:
        names = [codec]
    else:
        names = available_codecs(syntax)
        if not names:
            raise MissingDependencyError(
                f"no codec for transfer syntax {syntax} is installed; install one with "
                f"`pip install 'dcmxr[{EXTRA}]'`"
            )
    failures = []
    for name in names:  # fall back to the next codec when one rejects the frame
        try:
            arr, mode, pi = CODECS[name][0](src, ref)
            return _finish(arr, ref, mode, pi, src)
        except (MissingDependencyError, UnsupportedTransferSyntaxError):
            if codec is not None:
                raise
            failures.append(f"{name}: not usable")
        except Exception as exc:  # codec libraries raise many types
            failures.append(f"{name}: {exc}")
    raise DecodeError(f"cannot decode {where} with {', '.join(names)}: " + "; ".join(failures))


def _read_group(url: str, refs: list[FrameRef], storage_options: dict | None) -> list:
    from dcmxr.decode.read import read_inflated, read_ranges

    ranges = [(r.offset, r.length) for r in refs]
    deflate_from = refs[0].deflate_from
    if deflate_from is not None:
        return read_inflated(url, deflate_from, ranges, storage_options)
    return read_ranges(url, ranges, storage_options)


def decode_frames(
    refs: Sequence[FrameRef], threads: int = 1, storage_options: dict | None = None
) -> list[np.ndarray]:
    """Read and decode several frames (one read call per file).

    Parameters
    ----------
    refs : sequence of FrameRef
    threads : int
        Decode in a thread pool of this size (codecs release the GIL).
    storage_options : dict, optional
        fsspec options for remote URLs.

    Returns
    -------
    list of numpy.ndarray
        In the order of ``refs``.
    """
    groups: dict[tuple[str, int | None], list[int]] = defaultdict(list)
    for i, ref in enumerate(refs):
        groups[(ref.url, ref.deflate_from)].append(i)
    data: list = [None] * len(refs)
    for (url, _), idx in groups.items():
        blobs = _read_group(url, [refs[i] for i in idx], storage_options)
        for i, blob in zip(idx, blobs):
            data[i] = blob
    return map_in_threads(lambda rd: decode_frame(*rd), list(zip(refs, data)), threads)
