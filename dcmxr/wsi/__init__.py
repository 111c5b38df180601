"""Whole-slide microscopy (VL Whole Slide Microscopy Image Storage) as lazy multiscale DataTrees.

>>> import dcmxr.wsi
>>> slide = dcmxr.wsi.open_slide("path/to/slide")          # DataTree: level_0, level_1, ..., label
>>> region = dcmxr.wsi.read_region(slide, (1000, 2000), 1, (512, 512))   # OpenSlide semantics
"""

# Opening a slide always builds Dask arrays and reads headers: import what it needs here, once,
# rather than inside the first open_slide call.
import dask.array  # noqa: F401

from ..catalog import enhanced as _enhanced, pixeldata as _pixeldata  # noqa: F401
from ..decode import read as _read  # noqa: F401
from . import decode as _decode  # noqa: F401
from .ome import to_ome_zarr, to_zarr
from .region import level_image, read_region
from .slide import list_slides, open_slide, open_slides

__all__ = ["list_slides", "open_slide", "open_slides", "read_region", "level_image", "to_ome_zarr", "to_zarr"]
