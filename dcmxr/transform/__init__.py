"""Spatial transforms of dcmxr arrays: reorient, flip, crop, pad, resample, deskew.

Every function takes and returns an xarray DataArray and writes the geometry
of its result on the output's ``x``/``y``/``z`` coordinates (values in mm and
a unit LPS ``direction`` attr), so ``.dcm.affine`` and ``.dcm.orientation``
describe the result. Dask-backed input gives dask-backed output; nothing is
computed except the bounding box of a mask in :func:`crop`.

* exact (no interpolation): :func:`reorient`, :func:`flip`, :func:`crop`, :func:`pad`, :func:`coarsen`
* interpolating: :func:`resample`, :func:`resample_like`, :func:`deskew`

The ``.dcm`` accessor exposes each as a method (``da.dcm.reorient("RAS")``).
"""
from .crop import bounding_box, crop, pad
from .deskew import deskew, is_tilted
from .reorient import flip, reorient
from .resample import resample, resample_like, resample_to_grid
from .coarsen import coarsen

__all__ = [
    "coarsen",
    "reorient",
    "flip",
    "crop",
    "pad",
    "bounding_box",
    "resample",
    "resample_like",
    "resample_to_grid",
    "deskew",
    "is_tilted",
]
