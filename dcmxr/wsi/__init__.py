"""Whole-slide microscopy (VL Whole Slide Microscopy Image Storage) as lazy multiscale DataTrees.

>>> import dcmxr.wsi
>>> slide = dcmxr.wsi.open_slide("path/to/slide")          # DataTree: level_0, level_1, ..., label
>>> region = dcmxr.wsi.read_region(slide, (1000, 2000), 1, (512, 512))   # OpenSlide semantics
"""

# Opening a slide always builds Dask arrays and reads headers with pydicom, and the first read
# locates frames and reads byte ranges: import what they need here, once, rather than inside
# the first open_slide / read_region call.
import dask.array  # noqa: F401
import pydicom  # noqa: F401

from ..catalog import pixeldata as _pixeldata  # noqa: F401
from ..decode import read as _read  # noqa: F401
from . import decode as _decode, headers as _headers, reader as _reader  # noqa: F401

# imagecodecs (libjpeg-turbo, ~85 ms to import) loads on the first tile decode, not with the package:
# `import dcmxr` imports dcmxr.wsi.
from .ome import to_ome_zarr, to_zarr
from .region import level_image, read_region
from .slide import list_slides, open_slide, open_slides

__all__ = ["list_slides", "open_slide", "open_slides", "read_region", "level_image", "to_ome_zarr", "to_zarr"]
