"""Colour management: apply an instance's ICC profile with Pillow's ImageCms."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..errors import missing_dependency


@lru_cache(maxsize=8)
def _transform(profile: bytes):
    try:
        from io import BytesIO

        from PIL import ImageCms
    except ImportError:
        raise missing_dependency("Pillow", "wsi") from None
    src = ImageCms.ImageCmsProfile(BytesIO(profile))
    dst = ImageCms.createProfile("sRGB")
    return ImageCms.buildTransform(src, dst, "RGB", "RGB")


def apply_icc(rgb: np.ndarray, profile: bytes) -> np.ndarray:
    """Convert an 8-bit RGB block from ``profile`` to sRGB.

    Parameters
    ----------
    rgb : numpy.ndarray
        ``(h, w, 3)`` uint8.
    profile : bytes
        The ICC profile (ICCProfile of the Optical Path Sequence).

    Returns
    -------
    numpy.ndarray
        Same shape and dtype; other arrays are returned unchanged.
    """
    if rgb.ndim != 3 or rgb.shape[-1] != 3 or rgb.dtype != np.uint8:
        return rgb
    from PIL import Image, ImageCms

    img = Image.fromarray(np.ascontiguousarray(rgb), "RGB")
    return np.asarray(ImageCms.applyTransform(img, _transform(profile)))
