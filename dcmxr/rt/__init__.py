"""Radiotherapy: RT Dose grids, RT Structure Sets, masks and DVHs.

``open_dose`` and ``open_rtstruct`` read; ``rasterize`` turns contours into
masks on any dcmxr grid; ``dvh`` computes dose-volume histograms and metrics;
``sum_doses`` adds doses (resampling onto one grid when needed).
"""

from .dose import open_dose
from .dvh import dose_at_volume, dvh, volume_at_dose
from .rasterize import rasterize
from .rtstruct import StructureSet, open_rtstruct
from .sum import sum_doses

__all__ = ["open_dose", "open_rtstruct", "StructureSet", "rasterize", "dvh", "dose_at_volume",
           "volume_at_dose", "sum_doses"]
