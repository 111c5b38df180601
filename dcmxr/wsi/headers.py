"""One header read per WSI instance: everything a slide needs, no tile bytes.

:func:`read_header` parses an instance once with pydicom
(``stop_before_pixels``; pydicom defers the values until they are asked for)
and keeps the attributes of the instance, of its tiles (geometry, transfer
syntax) and where its Pixel Data element starts. The frame byte ranges are
*not* read here: :mod:`dcmxr.wsi.frames` finds them when a level is first read
(Extended / Basic Offset Table, or the item tags).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InvalidDicomError
from .instances import VOLUME, OpticalPath, _optical_path

__all__ = ["WsiHeader", "read_header", "read_headers"]

#: Bytes read at once while parsing a header (one request for most WSI headers).
HEADER_BLOCK = 64 * 1024


@dataclass
class WsiHeader:
    """One WSI instance: slide attributes, tile layout and where its pixel data starts.

    Parameters
    ----------
    path : str
        Local path or fsspec URL.
    sop_class_uid, sop_instance_uid, series_instance_uid, study_instance_uid : str
    flavor : str
        Image Type value 3 (VOLUME, LABEL, OVERVIEW, THUMBNAIL).
    rows, columns : int
        Tile size.
    total_rows, total_columns : int
        Total Pixel Matrix size (the tile size when absent).
    number_of_frames : int
    transfer_syntax : str
    samples_per_pixel, bits_allocated, bits_stored, pixel_representation, planar_configuration : int
    photometric_interpretation : str
    organization : str
        Dimension Organization Type (TILED_FULL, TILED_SPARSE, ...).
    pixel_offset : int or None
        File offset of the Pixel Data element tag.
    extended_offsets, extended_lengths : bytes or None
        Extended Offset Table (7FE0,0001/0002).
    spacing : (float, float) or None
        Pixel Spacing (row, column) in mm.
    origin, orientation, optical_paths, focal_planes, spacing_between_slices,
    concatenation_uid, concatenation_offset, container_identifier :
        As on :class:`dcmxr.wsi.instances.InstanceInfo`.
    positions : numpy.ndarray or None
        TILED_SPARSE (or per-frame positioned) frames: ``(n, 2)`` 0-based
        (row, column) of each frame's top-left pixel.
    z_offsets : numpy.ndarray or None
        Per-frame Z Offset in Slide Coordinate System (sparse, several planes).
    frame_optical_paths : tuple of str or None
        Per-frame Optical Path Identifier.
    extra : dict
        Descriptive attributes for the level attrs (manufacturer, ...).
    """

    path: str
    sop_class_uid: str
    sop_instance_uid: str
    series_instance_uid: str
    study_instance_uid: str
    flavor: str
    rows: int
    columns: int
    total_rows: int
    total_columns: int
    number_of_frames: int
    transfer_syntax: str
    samples_per_pixel: int
    bits_allocated: int
    bits_stored: int
    pixel_representation: int
    planar_configuration: int
    photometric_interpretation: str
    organization: str
    pixel_offset: int | None
    extended_offsets: bytes | None = None
    extended_lengths: bytes | None = None
    spacing: tuple[float, float] | None = None
    origin: tuple[float, float] = (0.0, 0.0)
    orientation: tuple[float, ...] = (0.0, -1.0, 0.0, -1.0, 0.0, 0.0)
    optical_paths: tuple[OpticalPath, ...] = ()
    focal_planes: int = 1
    spacing_between_slices: float | None = None
    concatenation_uid: str | None = None
    concatenation_offset: int = 0
    container_identifier: str | None = None
    positions: np.ndarray | None = field(default=None, repr=False)
    z_offsets: np.ndarray | None = field(default=None, repr=False)
    frame_optical_paths: tuple[str, ...] | None = field(default=None, repr=False)
    file_size: int | None = None
    extra: dict = field(default_factory=dict)

    @property
    def dtype(self) -> np.dtype:
        """Dtype of the decoded samples (as pydicom's ``pixel_array``)."""
        bits = self.bits_allocated or 8
        if bits == 1:
            return np.dtype("uint8")
        signed = self.pixel_representation == 1
        if self.photometric_interpretation.startswith("YBR") and self.transfer_syntax.startswith("1.2.840.10008.1.2.4.5"):
            signed = False
        return np.dtype(f"{'i' if signed else 'u'}{max(bits, 8) // 8}")


_TAG_CACHE: dict[str, int] = {}
_NUMERIC = {"US": "H", "UL": "I", "SS": "h", "SL": "i", "FL": "f", "FD": "d", "UV": "Q", "SV": "q"}


def _tag(keyword: str) -> int:
    tag = _TAG_CACHE.get(keyword)
    if tag is None:
        from pydicom.datadict import tag_for_keyword

        tag = _TAG_CACHE[keyword] = int(tag_for_keyword(keyword))
    return tag


def _get(ds, keyword: str, little: bool = True) -> Any:
    """A top-level value, decoded straight from pydicom's raw element for plain VRs.

    pydicom converts a raw element on first access through several layers
    (about 20-30 us each); a WSI header needs ~30 plain values, so numbers,
    UIDs and code strings are decoded here (little-endian data sets), and
    everything else (text with character sets, sequences, big endian) goes
    through pydicom. Returns a list for multi-valued elements.
    """
    from pydicom.dataelem import RawDataElement

    tag = _tag(keyword)
    elem = ds.get_item(tag)
    if elem is None:
        return None
    if not isinstance(elem, RawDataElement) or not little:
        return ds[tag].value
    vr = elem.VR
    if vr is None:
        from pydicom.datadict import dictionary_VR

        vr = dictionary_VR(tag)
    raw = elem.value
    if raw is None or len(raw) == 0:
        return None
    fmt = _NUMERIC.get(vr)
    if fmt is not None:
        import struct

        n = len(raw) // struct.calcsize(fmt)
        vals = struct.unpack(f"<{n}{fmt}", raw[: n * struct.calcsize(fmt)])
        return vals[0] if n == 1 else list(vals)
    if vr in ("UI", "CS", "IS", "DS", "DA", "TM", "DT", "AS"):
        text = raw.decode("ascii", "replace").strip("\x00 ")
        if vr == "IS" or vr == "DS":
            parts = [p.strip() for p in text.split("\\")]
            try:
                nums = [float(p) if vr == "DS" else int(float(p)) for p in parts if p]
            except ValueError:
                return ds[tag].value
            return (nums[0] if len(nums) == 1 else nums) if nums else None
        parts = [p.strip() for p in text.split("\\")]
        return parts[0] if len(parts) == 1 else parts
    return ds[tag].value


def _str(v: Any) -> str | None:
    if v is None or v == "":
        return None
    return str(v)


def _int(v: Any, default: int = 0) -> int:
    try:
        return int(v) if v not in (None, "") else default
    except (TypeError, ValueError):
        return default


def _per_frame(ds) -> tuple[np.ndarray | None, np.ndarray | None, tuple[str, ...] | None]:
    """Per-frame (row, column) positions, Z offsets and optical path identifiers."""
    per = ds.get("PerFrameFunctionalGroupsSequence")
    if not per:
        return None, None, None
    shared = ds.get("SharedFunctionalGroupsSequence")
    default_path = None
    if shared and shared[0].get("OpticalPathIdentificationSequence"):
        default_path = str(shared[0].OpticalPathIdentificationSequence[0].OpticalPathIdentifier)
    n = len(per)
    pos = np.full((n, 2), -1, dtype=np.int64)
    z = np.full(n, np.nan)
    paths: list[str] = []
    any_path = False
    for i, item in enumerate(per):
        seq = item.get("PlanePositionSlideSequence")
        if seq:
            p = seq[0]
            r, c = p.get("RowPositionInTotalImagePixelMatrix"), p.get("ColumnPositionInTotalImagePixelMatrix")
            if r is not None and c is not None:
                pos[i] = (int(r) - 1, int(c) - 1)
            zv = p.get("ZOffsetInSlideCoordinateSystem")
            if zv not in (None, ""):
                z[i] = float(zv)
        op = item.get("OpticalPathIdentificationSequence")
        if op:
            any_path = True
            paths.append(str(op[0].OpticalPathIdentifier))
        else:
            paths.append(default_path or "")
    return pos, (z if np.isfinite(z).any() else None), (tuple(paths) if any_path else None)


def read_header(path: str, storage_options: dict | None = None) -> WsiHeader | None:
    """Read one instance's header (stops before Pixel Data).

    Parameters
    ----------
    path : str
        Local path or fsspec URL.
    storage_options : dict, optional

    Returns
    -------
    WsiHeader or None
        None when the file is DICOM but not a VL Whole Slide Microscopy image.

    Raises
    ------
    InvalidDicomError
        The file cannot be parsed as DICOM.
    """
    import pydicom

    from ..decode.read import open_binary, is_local

    try:
        with open_binary(path, storage_options) as raw:
            fh = raw
            ds = pydicom.dcmread(fh, stop_before_pixels=True, force=True)
            pixel_offset = fh.tell() if "PixelData" not in ds else None
            size = None
            if is_local(path):
                size = os.fstat(raw.fileno()).st_size
    except Exception as exc:  # pydicom raises many types on broken headers
        raise InvalidDicomError(f"cannot read the WSI header of {path}: {exc}") from None
    return header_from_dataset(ds, path, pixel_offset, size)


def header_from_dataset(ds, path: str, pixel_offset: int | None, file_size: int | None = None) -> WsiHeader | None:
    """Build a :class:`WsiHeader` from a pydicom Dataset (a file header or WADO-RS metadata).

    Returns None when the dataset is not a VL Whole Slide Microscopy image.
    """
    from .instances import WSI_SOP_CLASS

    enc = getattr(ds, "original_encoding", None)
    little = not (enc is not None and enc[1] is False)

    def get(keyword: str) -> Any:
        return _get(ds, keyword, little)

    sop_class = str(get("SOPClassUID") or "")
    if not sop_class:
        meta = getattr(ds, "file_meta", None)
        sop_class = str(meta.get("MediaStorageSOPClassUID", "")) if meta is not None else ""
    if sop_class != WSI_SOP_CLASS:
        return None
    meta = getattr(ds, "file_meta", None)
    tsyntax = str(meta.get("TransferSyntaxUID", "") or "") if meta is not None else ""
    if not tsyntax:  # DICOM JSON metadata carries (0002,0010) in the data set itself
        tsyntax = str(ds.get("TransferSyntaxUID", "") or "")
    if not tsyntax:
        tsyntax = "1.2.840.10008.1.2" if enc is not None and enc[0] else "1.2.840.10008.1.2.1"
    image_type = get("ImageType") or []
    image_type = [image_type] if isinstance(image_type, str) else list(image_type)
    flavor = str(image_type[2]).upper() if len(image_type) > 2 else VOLUME
    rows, cols = _int(get("Rows")), _int(get("Columns"))
    origin = (0.0, 0.0)
    seq = ds.get("TotalPixelMatrixOriginSequence")
    if seq:
        item = seq[0]
        origin = (float(item.get("XOffsetInSlideCoordinateSystem", 0) or 0),
                  float(item.get("YOffsetInSlideCoordinateSystem", 0) or 0))
    ios = get("ImageOrientationSlide")
    orientation = tuple(float(v) for v in ios) if isinstance(ios, (list, tuple)) and len(ios) == 6 \
        else (0.0, -1.0, 0.0, -1.0, 0.0, 0.0)
    spacing = None
    between = None
    shared = ds.get("SharedFunctionalGroupsSequence")
    pm = shared[0].get("PixelMeasuresSequence") if shared else None
    if pm:
        ps = pm[0].get("PixelSpacing")
        if ps is not None and len(ps) == 2 and float(ps[0]) > 0 and float(ps[1]) > 0:
            spacing = (float(ps[0]), float(ps[1]))
        if pm[0].get("SpacingBetweenSlices") not in (None, ""):
            between = float(pm[0].SpacingBetweenSlices)
    if spacing is None:
        ps = get("PixelSpacing")
        if isinstance(ps, (list, tuple)) and len(ps) == 2 and float(ps[0]) > 0 and float(ps[1]) > 0:
            spacing = (float(ps[0]), float(ps[1]))
    organization = str(get("DimensionOrganizationType") or "").upper()
    positions = z = frame_paths = None
    if organization != "TILED_FULL":
        positions, z, frame_paths = _per_frame(ds)
        if positions is not None and (positions < 0).any():
            positions = None if organization != "TILED_SPARSE" else positions
    nz = get("TotalPixelMatrixFocalPlanes") or get("NumberOfFocalPlanes") or 1
    offset = get("ConcatenationFrameOffsetNumber")
    extra = {}
    for key, name in (("FrameOfReferenceUID", "frame_of_reference_uid"), ("Manufacturer", "manufacturer"),
                      ("ManufacturerModelName", "manufacturer_model_name"),
                      ("SeriesDescription", "series_description"), ("PatientID", "patient_id")):
        v = _str(get(key))
        if v:
            extra[name] = v
    if image_type:
        extra["image_type"] = "\\".join(str(v) for v in image_type)
    eot = get("ExtendedOffsetTable")
    eotl = get("ExtendedOffsetTableLengths")
    return WsiHeader(
        path=path,
        sop_class_uid=sop_class,
        sop_instance_uid=str(get("SOPInstanceUID") or ""),
        series_instance_uid=str(get("SeriesInstanceUID") or ""),
        study_instance_uid=str(get("StudyInstanceUID") or ""),
        flavor=flavor,
        rows=rows,
        columns=cols,
        total_rows=_int(get("TotalPixelMatrixRows"), rows),
        total_columns=_int(get("TotalPixelMatrixColumns"), cols),
        number_of_frames=_int(get("NumberOfFrames"), 1) or 1,
        transfer_syntax=tsyntax,
        samples_per_pixel=_int(get("SamplesPerPixel"), 1) or 1,
        bits_allocated=_int(get("BitsAllocated"), 8),
        bits_stored=_int(get("BitsStored"), 0) or _int(get("BitsAllocated"), 8),
        pixel_representation=_int(get("PixelRepresentation"), 0),
        planar_configuration=_int(get("PlanarConfiguration"), 0),
        photometric_interpretation=str(get("PhotometricInterpretation") or "MONOCHROME2"),
        organization=organization,
        pixel_offset=pixel_offset,
        extended_offsets=bytes(eot) if eot is not None else None,
        extended_lengths=bytes(eotl) if eotl is not None else None,
        spacing=spacing,
        origin=origin,
        orientation=orientation,
        optical_paths=tuple(_optical_path(it) for it in (ds.get("OpticalPathSequence") or [])),
        focal_planes=int(nz),
        spacing_between_slices=between,
        concatenation_uid=_str(get("ConcatenationUID")),
        concatenation_offset=_int(offset, 0),
        container_identifier=_str(get("ContainerIdentifier")),
        positions=positions,
        z_offsets=z,
        frame_optical_paths=frame_paths,
        file_size=file_size,
        extra=extra,
    )


def _warm_tags() -> None:
    """Resolve the keywords :func:`header_from_dataset` reads (pydicom builds its keyword table once)."""
    for kw in ("SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID", "ImageType", "Rows",
               "Columns", "ImageOrientationSlide", "PixelSpacing", "DimensionOrganizationType",
               "TotalPixelMatrixFocalPlanes", "NumberOfFocalPlanes", "ConcatenationFrameOffsetNumber",
               "FrameOfReferenceUID", "Manufacturer", "ManufacturerModelName", "SeriesDescription", "PatientID",
               "ExtendedOffsetTable", "ExtendedOffsetTableLengths", "TotalPixelMatrixRows",
               "TotalPixelMatrixColumns", "NumberOfFrames", "SamplesPerPixel", "BitsAllocated", "BitsStored",
               "PixelRepresentation", "PlanarConfiguration", "PhotometricInterpretation", "ConcatenationUID",
               "ContainerIdentifier"):
        _tag(kw)


_warm_tags()


def read_headers(paths: list[str], storage_options: dict | None = None, strict: bool = False) -> list[WsiHeader]:
    """Headers of the WSI instances among ``paths`` (others are left out).

    Files that are not DICOM (or not readable) are skipped with one
    :class:`~dcmxr.errors.SkippedFileWarning`, or raise with ``strict=True``.
    """
    from ..catalog.scan import warn_skipped

    out, skipped = [], []
    for p in paths:
        try:
            h = read_header(p, storage_options)
        except InvalidDicomError as exc:
            if strict:
                raise
            skipped.append({"path": p, "reason": str(exc)})
            continue
        if h is not None:
            out.append(h)
    warn_skipped(skipped, len(paths), stacklevel=4)
    return out
