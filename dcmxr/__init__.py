"""dcmxr: DICOM as lazy, labelled, geometry-carrying xarray objects.

>>> import dcmxr
>>> table = dcmxr.scan("path/to/dicom")          # headers only, one row per frame
>>> da = dcmxr.open_series("path/to/dicom")       # lazy DataArray (z, y, x) in mm
>>> tree = dcmxr.open_study("path/to/dicom")      # DataTree: patient/study/series
"""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version as _version

from . import accessors, errors  # noqa: F401  (registers .dcm)
from . import interop, plotting, units  # noqa: F401  (heavy deps load inside functions)
from .interop import (from_highdicom_volume, from_nibabel, from_simpleitk, to_highdicom_volume,
                      to_nibabel, to_simpleitk)
from .assembly.series import list_series
from .backend.api import open_series, open_study
from .backend.nifti import open_nifti
from .perfusion import discover, open_bids, open_perfusion
from .wsi import list_slides, open_slide, open_slides
from . import dicomweb, rt, sr, stores  # noqa: F401  (heavy deps load lazily)
from .backend.derived import open_paramap, open_seg, open_sr
from .rt import open_dose, open_rtstruct
from .catalog.scan import scan

try:
    __version__ = _version("dcmxr")
except PackageNotFoundError:  # pragma: no cover
    __version__ = "0+unknown"

__all__ = [
    "scan", "list_series", "open_series", "open_study", "open_nifti", "errors", "__version__",
    "discover", "open_perfusion", "open_bids", "open_slide", "open_slides", "list_slides",
    "open_dose", "open_rtstruct", "rt", "stores", "dicomweb", "sr",
    "open_seg", "open_paramap", "open_sr",
    "units", "interop", "plotting", "to_simpleitk", "from_simpleitk", "to_highdicom_volume",
    "from_highdicom_volume", "to_nibabel", "from_nibabel",
]
