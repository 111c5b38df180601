"""Whole-slide microscopy constants and optical paths (read by :mod:`dcmxr.wsi.headers`)."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any


#: VL Whole Slide Microscopy Image Storage.
WSI_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"

#: Value 3 of Image Type for pyramid levels, and the associated image flavors.
VOLUME = "VOLUME"
ASSOCIATED = ("LABEL", "OVERVIEW", "THUMBNAIL")

#: Illumination codes (DCM) that mean a dark background.
_DARK_ILLUMINATION = {"111741", "111742", "111743"}  # transmission / epi- / reflectance fluorescence


@dataclass(frozen=True)
class OpticalPath:
    """One Optical Path Sequence item, reduced to JSON-safe values."""

    identifier: str
    description: str | None = None
    illumination: str | None = None
    illumination_code: str | None = None
    objective_lens_power: float | None = None
    icc_profile: bytes | None = field(default=None, repr=False)


def _optical_path(item: Any) -> OpticalPath:
    illum = item.get("IlluminationTypeCodeSequence")
    illum = illum[0] if illum else None
    power = item.get("ObjectiveLensPower")
    icc = item.get("ICCProfile")
    return OpticalPath(
        identifier=str(item.get("OpticalPathIdentifier", "") or ""),
        description=str(item.OpticalPathDescription) if item.get("OpticalPathDescription") else None,
        illumination=str(illum.get("CodeMeaning")) if illum is not None and illum.get("CodeMeaning") else None,
        illumination_code=str(illum.get("CodeValue")) if illum is not None and illum.get("CodeValue") else None,
        objective_lens_power=float(power) if power not in (None, "") else None,
        icc_profile=bytes(icc) if icc else None,
    )


def background(paths: tuple[OpticalPath, ...], samples_per_pixel: int, bits_stored: int) -> int:
    """Default fill value of missing tiles: white for brightfield, 0 for fluorescence."""
    if any(p.illumination_code in _DARK_ILLUMINATION for p in paths):
        return 0
    return (1 << int(bits_stored)) - 1


def icc_base64(paths: tuple[OpticalPath, ...]) -> str | None:
    """The first optical path's ICC profile as base64 text (JSON-safe), or None."""
    for p in paths:
        if p.icc_profile:
            return base64.b64encode(p.icc_profile).decode("ascii")
    return None
