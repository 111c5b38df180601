"""Post-decode pixel fix-ups that make dcmxr's output match pydicom 3.

* unused high bits cleared / sign-extended from Bits Stored,
* JPEG 2000 and JPEG-LS signedness corrections,
* YBR_FULL_422 up-sampling of native data,
* YBR_FULL / YBR_FULL_422 -> RGB conversion (pydicom's own routine, so values
  are identical).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "target_dtype",
    "shift_correct",
    "expand_ybr_full_422",
    "to_rgb",
    "YBR_TO_RGB",
]

#: Photometric interpretations pydicom converts to RGB by default.
YBR_TO_RGB = ("YBR_FULL", "YBR_FULL_422")


def target_dtype(bits_allocated: int, pixel_representation: int, float_pixels: int = 0) -> np.dtype:
    """The (native byte order) dtype pydicom returns for these header values."""
    if float_pixels == 32:
        return np.dtype("float32")
    if float_pixels == 64:
        return np.dtype("float64")
    if bits_allocated == 1:
        return np.dtype("uint8")
    kind = "i" if pixel_representation else "u"
    return np.dtype(f"{kind}{bits_allocated // 8}")


def shift_correct(arr: np.ndarray, shift: int) -> np.ndarray:
    """Shift left then right by ``shift`` bits in the array's own dtype.

    For unsigned data this clears the bits above Bits Stored; for signed data
    it sign-extends from Bits Stored. Works in place when possible.
    """
    if shift <= 0:
        return arr
    if not arr.flags.writeable:
        arr = arr.copy()
    np.left_shift(arr, shift, out=arr)
    np.right_shift(arr, shift, out=arr)
    return arr


def expand_ybr_full_422(flat: np.ndarray) -> np.ndarray:
    """Up-sample native YBR_FULL_422 samples (Y1 Y2 Cb Cr) to YBR_FULL (Y Cb Cr per pixel)."""
    out = np.empty(flat.shape[0] // 4 * 6, dtype=flat.dtype)
    out[0::6] = flat[0::4]
    out[3::6] = flat[1::4]
    out[1::6] = flat[2::4]
    out[4::6] = flat[2::4]
    out[2::6] = flat[3::4]
    out[5::6] = flat[3::4]
    return out


def to_rgb(arr: np.ndarray) -> np.ndarray:
    """Convert YBR_FULL samples to RGB exactly as pydicom 3 does."""
    from pydicom.pixels.processing import convert_color_space

    if not arr.flags.writeable:
        arr = arr.copy()
    return convert_color_space(arr, "YBR_FULL", "RGB")
