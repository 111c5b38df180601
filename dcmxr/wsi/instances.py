"""Slide-level metadata of whole-slide microscopy instances.

The fast header walker (:mod:`dcmxr.catalog`) does not descend into sequences,
so the attributes that live in them (Total Pixel Matrix Origin, Optical Path,
ICC profile, concatenation, per-frame optical path) are read here with pydicom,
from one header per instance (``stop_before_pixels``), when a slide is opened.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidDicomError

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


@dataclass(frozen=True)
class InstanceInfo:
    """What one WSI instance adds to its slide beyond the scan table.

    Parameters
    ----------
    path : str
    sop_instance_uid : str
    flavor : str
        Image Type value 3 (VOLUME, LABEL, OVERVIEW, THUMBNAIL).
    origin : tuple of float
        (X, Y) of Total Pixel Matrix Origin Sequence in mm (slide coordinates).
    orientation : tuple of float
        Image Orientation (Slide): row direction then column direction.
    optical_paths : tuple of OpticalPath
    focal_planes : int
        Total Pixel Matrix Focal Planes.
    spacing_between_slices : float or None
        mm between focal planes.
    concatenation_uid : str or None
    concatenation_offset : int
        Concatenation Frame Offset Number (0 when not concatenated).
    frame_optical_paths : tuple of str or None
        Per-frame Optical Path Identifier (sparse tiling with several paths).
    """

    path: str
    sop_instance_uid: str
    flavor: str
    origin: tuple[float, float]
    orientation: tuple[float, ...]
    optical_paths: tuple[OpticalPath, ...]
    focal_planes: int
    spacing_between_slices: float | None
    concatenation_uid: str | None
    concatenation_offset: int
    frame_optical_paths: tuple[str, ...] | None = None
    container_identifier: str | None = None
    extended_depth_of_field: bool = False


_TAGS = [
    "ImageType", "SOPInstanceUID", "TotalPixelMatrixOriginSequence", "ImageOrientationSlide",
    "OpticalPathSequence", "TotalPixelMatrixFocalPlanes", "NumberOfFocalPlanes", "NumberOfOpticalPaths",
    "SharedFunctionalGroupsSequence", "ConcatenationUID", "ConcatenationFrameOffsetNumber",
    "ContainerIdentifier", "ExtendedDepthOfField", "DimensionOrganizationType", "NumberOfFrames",
]


def _read(path: str, storage_options: dict | None, full: bool):
    import pydicom

    from ..decode.read import open_binary

    tags = None if full else _TAGS
    with open_binary(path, storage_options) as fh:
        return pydicom.dcmread(fh, stop_before_pixels=True, specific_tags=tags, force=True)


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


def read_instance(path: str, storage_options: dict | None = None) -> InstanceInfo:
    """Read the slide-level attributes of one WSI instance (header only).

    Parameters
    ----------
    path : str
        Local path or fsspec URL.
    storage_options : dict, optional

    Raises
    ------
    InvalidDicomError
        The header cannot be parsed.
    """
    try:
        ds = _read(path, storage_options, full=False)
    except Exception as exc:  # pydicom raises many types on broken headers
        raise InvalidDicomError(f"cannot read the WSI header of {path}: {exc}") from None
    image_type = list(ds.get("ImageType") or [])
    flavor = str(image_type[2]).upper() if len(image_type) > 2 else VOLUME
    origin_seq = ds.get("TotalPixelMatrixOriginSequence")
    if origin_seq:
        item = origin_seq[0]
        origin = (float(item.get("XOffsetInSlideCoordinateSystem", 0) or 0),
                  float(item.get("YOffsetInSlideCoordinateSystem", 0) or 0))
    else:
        origin = (0.0, 0.0)
    ios = ds.get("ImageOrientationSlide")
    orientation = tuple(float(v) for v in ios) if ios is not None and len(ios) == 6 else (0.0, -1.0, 0.0, -1.0, 0.0, 0.0)
    paths = tuple(_optical_path(it) for it in (ds.get("OpticalPathSequence") or []))
    nz = ds.get("TotalPixelMatrixFocalPlanes") or ds.get("NumberOfFocalPlanes") or 1
    spacing = None
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        pm = shared[0].get("PixelMeasuresSequence")
        if pm and pm[0].get("SpacingBetweenSlices") not in (None, ""):
            spacing = float(pm[0].SpacingBetweenSlices)
    frame_paths = None
    n_paths = int(ds.get("NumberOfOpticalPaths") or len(paths) or 1)
    if str(ds.get("DimensionOrganizationType", "")).upper() == "TILED_SPARSE" and n_paths > 1:
        frame_paths = _frame_optical_paths(path, storage_options)
    offset = ds.get("ConcatenationFrameOffsetNumber")
    return InstanceInfo(
        path=path,
        sop_instance_uid=str(ds.get("SOPInstanceUID", "")),
        flavor=flavor,
        origin=origin,
        orientation=orientation,
        optical_paths=paths,
        focal_planes=int(nz),
        spacing_between_slices=spacing,
        concatenation_uid=str(ds.ConcatenationUID) if ds.get("ConcatenationUID") else None,
        concatenation_offset=int(offset) if offset not in (None, "") else 0,
        frame_optical_paths=frame_paths,
        container_identifier=str(ds.ContainerIdentifier) if ds.get("ContainerIdentifier") else None,
        extended_depth_of_field=str(ds.get("ExtendedDepthOfField", "NO")).upper() == "YES",
    )


def _frame_optical_paths(path: str, storage_options: dict | None) -> tuple[str, ...]:
    ds = _read(path, storage_options, full=True)
    shared = ds.get("SharedFunctionalGroupsSequence")
    default = None
    if shared and shared[0].get("OpticalPathIdentificationSequence"):
        default = str(shared[0].OpticalPathIdentificationSequence[0].OpticalPathIdentifier)
    out = []
    for item in ds.get("PerFrameFunctionalGroupsSequence") or []:
        seq = item.get("OpticalPathIdentificationSequence")
        out.append(str(seq[0].OpticalPathIdentifier) if seq else default or "")
    return tuple(out)


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
