"""Uncompressed frames: bytes -> ndarray with ``np.frombuffer``."""

from __future__ import annotations

import numpy as np

from dcmxr.decode.frameref import FrameRef
from dcmxr.decode.photometric import YBR_TO_RGB, expand_ybr_full_422, shift_correct, target_dtype, to_rgb
from dcmxr.errors import InvalidDicomError

__all__ = ["native_frame_bytes", "decode_native"]


def native_frame_bytes(ref: FrameRef) -> int:
    """Number of bytes a native frame covers (including a leading bit offset)."""
    pixels = ref.rows * ref.columns
    if ref.photometric_interpretation == "YBR_FULL_422" and ref.samples_per_pixel == 3:
        samples = pixels * 2
    else:
        samples = pixels * ref.samples_per_pixel
    bits = samples * ref.bits_allocated + ref.bit_offset
    return -(-bits // 8)


def decode_native(ref: FrameRef, data, *, big_endian: bool = False) -> np.ndarray:
    """Decode one native frame.

    Parameters
    ----------
    ref : FrameRef
    data : bytes-like
        The frame's bytes (``ref.length`` of them).
    big_endian : bool
        Explicit VR Big Endian storage.

    Returns
    -------
    numpy.ndarray
        (rows, columns) or (rows, columns, samples), native byte order.
    """
    need = native_frame_bytes(ref)
    if len(data) < need:
        raise InvalidDicomError(f"frame {ref.frame_index} has {len(data)} bytes, expected {need}")
    rows, cols, spp = ref.rows, ref.columns, ref.samples_per_pixel
    dtype = target_dtype(ref.bits_allocated, ref.pixel_representation, ref.float_pixels)

    if ref.bits_allocated == 1 and not ref.float_pixels:
        count = rows * cols * spp
        bits = np.unpackbits(np.frombuffer(data, np.uint8, need), bitorder="little")
        flat = bits[ref.bit_offset : ref.bit_offset + count]
    else:
        stored = dtype.newbyteorder(">" if big_endian else "<")
        flat = np.frombuffer(data, stored, need // dtype.itemsize)
        if stored != dtype:  # swap to native order (makes a writeable copy)
            flat = flat.byteswap().view(dtype)

    pi = ref.photometric_interpretation
    if pi == "YBR_FULL_422" and spp == 3:
        flat = expand_ybr_full_422(flat)
        pi = "YBR_FULL"

    if spp == 1:
        arr = flat.reshape(rows, cols)
    elif ref.planar_configuration == 0:
        arr = flat.reshape(rows, cols, spp)
    else:
        arr = flat.reshape(spp, rows, cols).transpose(1, 2, 0)

    if not ref.float_pixels and ref.bits_allocated > ref.bits_stored > 0:
        arr = shift_correct(arr, ref.bits_allocated - ref.bits_stored)
    if spp == 3 and pi in YBR_TO_RGB:
        arr = to_rgb(arr)
    if not arr.flags.writeable:
        arr = arr.copy()
    return arr
