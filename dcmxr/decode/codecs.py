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

__all__ = ["decode_frame", "decode_frames", "available_codecs", "set_codec_order", "CODEC_ORDER", "CODECS"]

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
    if threads > 1 and len(refs) > 1:
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(decode_frame, refs, data))
    return [decode_frame(r, d) for r, d in zip(refs, data)]
