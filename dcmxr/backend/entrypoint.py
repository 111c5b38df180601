"""The xarray backend: ``xr.open_dataset(path, engine="dicom")``."""

from __future__ import annotations

import os
from typing import Any

from xarray.backends import BackendEntrypoint


def _sniff(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


class DicomBackendEntrypoint(BackendEntrypoint):
    """Open DICOM files, folders, globs, DICOMDIRs or fsspec URLs with xarray.

    ``open_dataset`` returns one series as a Dataset with an ``image``
    variable (see :func:`dcmxr.open_series` for the options);
    ``open_datatree`` returns every series (see :func:`dcmxr.open_study`).
    """

    description = "Open DICOM series lazily as geometry-carrying arrays (dcmxr)"
    url = "https://github.com/dcmxr/dcmxr"
    open_dataset_parameters = ("filename_or_obj", "drop_variables", "series", "stack", "raw")
    supports_groups = True

    def guess_can_open(self, filename_or_obj: Any) -> bool:
        try:
            path = os.fspath(filename_or_obj)
        except TypeError:
            return False
        if os.path.isdir(path):
            return os.path.isfile(os.path.join(path, "DICOMDIR"))
        return os.path.isfile(path) and _sniff(path)

    def open_dataset(self, filename_or_obj: Any, *, drop_variables=None, series=None, stack=None,
                     raw: bool = False, storage_options: dict | None = None):
        from .api import open_series

        src = filename_or_obj if not isinstance(filename_or_obj, os.PathLike) else os.fspath(filename_or_obj)
        da = open_series(src, series=series, stack=stack, raw=raw, storage_options=storage_options)
        ds = da.to_dataset()
        ds.attrs = dict(da.attrs)
        if drop_variables:
            ds = ds.drop_vars(drop_variables, errors="ignore")
        return ds

    def open_groups_as_dict(self, filename_or_obj: Any, *, drop_variables=None, raw: bool = False,
                            storage_options: dict | None = None, **kwargs):
        from ..catalog.scan import scan
        from .api import study_groups

        src = filename_or_obj if not isinstance(filename_or_obj, os.PathLike) else os.fspath(filename_or_obj)
        if isinstance(src, str) and src.startswith(("dicomweb://", "dicomwebs://")):
            from ..dicomweb import study_groups as _dicomweb_groups

            opts = storage_options or {}
            return _dicomweb_groups(src, headers=opts.get("headers"), timeout=opts.get("timeout"),
                                    retries=opts.get("retries"), raw=raw)
        return study_groups(scan(src, storage_options=storage_options), raw=raw)

    def open_datatree(self, filename_or_obj: Any, *, drop_variables=None, raw: bool = False,
                      storage_options: dict | None = None, **kwargs):
        import xarray as xr

        groups = self.open_groups_as_dict(filename_or_obj, raw=raw, storage_options=storage_options)
        return xr.DataTree.from_dict(groups)
