"""dcmxr: DICOM as lazy, labelled, geometry-carrying xarray objects."""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("dcmxr")
except PackageNotFoundError:  # pragma: no cover
    __version__ = "0+unknown"
