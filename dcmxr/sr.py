"""Structured Reports: write TID 1500 measurement reports and read SR measurements.

>>> import dcmxr.sr
>>> sr = dcmxr.sr.measurement_report(ct, "liver_seg.dcm", ("volume", "mean"), path="sr.dcm")  # doctest: +SKIP
>>> dcmxr.sr.open_sr("sr.dcm")          # tidy pandas table                                     # doctest: +SKIP
"""

from __future__ import annotations

from .backend.derived import open_sr
from .export.codes import MEASUREMENT_CODES
from .export.sr import compute_measurements, measurement_report

__all__ = ["measurement_report", "compute_measurements", "open_sr", "MEASUREMENT_CODES"]
