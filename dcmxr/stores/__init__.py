"""zarr stores: the decoded-chunk cache, DICOM tree <-> zarr archives, OME-Zarr, virtual references.

Nothing here imports zarr at package import time; each function imports its
optional dependencies when called.
"""

from .archive import ArchiveReport, archive_status, to_zarr
from .dicom_out import to_dicom
from .virtual import open_virtual, virtual

__all__ = ["to_zarr", "to_dicom", "virtual", "open_virtual", "archive_status", "ArchiveReport"]
