"""Which header attributes the catalog keeps, and the table columns they become.

Columns are the snake_case form of the DICOM keyword. Multi-valued geometry
attributes are split into scalar float columns so the table stays vectorisable
(``ipp_0..2``, ``iop_0..5``, ``pixel_spacing_0..1``).
"""

from __future__ import annotations

import re
from functools import lru_cache

from pydicom.datadict import dictionary_VR, tag_for_keyword

#: Keywords read from every file header (top level of the data set).
KEYWORDS: tuple[str, ...] = (
    "SpecificCharacterSet",
    "SOPClassUID",
    "SOPInstanceUID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "FrameOfReferenceUID",
    "Modality",
    "PatientID",
    "PatientName",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "StudyDescription",
    "SeriesDate",
    "SeriesTime",
    "SeriesNumber",
    "SeriesDescription",
    "ProtocolName",
    "AcquisitionDate",
    "AcquisitionTime",
    "AcquisitionDateTime",
    "ContentDate",
    "ContentTime",
    "AcquisitionNumber",
    "InstanceNumber",
    "ImageType",
    "Manufacturer",
    "ManufacturerModelName",
    "BodyPartExamined",
    "ScanningSequence",
    "SequenceName",
    "Rows",
    "Columns",
    "SamplesPerPixel",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "PhotometricInterpretation",
    "PlanarConfiguration",
    "NumberOfFrames",
    "SmallestImagePixelValue",
    "LargestImagePixelValue",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PixelSpacing",
    "SliceThickness",
    "SpacingBetweenSlices",
    "SliceLocation",
    "GantryDetectorTilt",
    "RescaleSlope",
    "RescaleIntercept",
    "RescaleType",
    "WindowCenter",
    "WindowWidth",
    "KVP",
    "ConvolutionKernel",
    "EchoTime",
    "EchoNumbers",
    "RepetitionTime",
    "InversionTime",
    "FlipAngle",
    "MagneticFieldStrength",
    "TriggerTime",
    "NominalPercentageOfCardiacPhase",
    "TemporalPositionIdentifier",
    "NumberOfTemporalPositions",
    "DiffusionBValue",
    "DiffusionGradientOrientation",
    "FrameReferenceTime",
    "ActualFrameDuration",
    "DimensionOrganizationType",
    "TotalPixelMatrixRows",
    "TotalPixelMatrixColumns",
    "DoseGridScaling",
    "DoseUnits",
    "GridFrameOffsetVector",
    "Units",
    # BIDS sidecar (dcmxr.export.bids): acquisition fields dcm2niix writes
    "InPlanePhaseEncodingDirection",
    "MRAcquisitionType",
    "ImagingFrequency",
    "SoftwareVersions",
    "PatientPosition",
    "InstitutionName",
    "StationName",
    "DeviceSerialNumber",
    "SequenceVariant",
    "ScanOptions",
    "PixelBandwidth",
    "EchoTrainLength",
    "PercentPhaseFieldOfView",
    "PercentSampling",
)

#: Sequences whose presence marks an enhanced multi-frame object.
FUNCTIONAL_GROUPS = (
    tag_for_keyword("SharedFunctionalGroupsSequence"),
    tag_for_keyword("PerFrameFunctionalGroupsSequence"),
)

#: Private tags kept (creator-checked when the data is assembled).
PRIVATE_TAGS: dict[int, tuple[str, str]] = {
    0x0019100A: ("siemens_mosaic_n", "US"),  # NumberOfImagesInMosaic
    0x0019100C: ("siemens_b_value", "IS"),
    0x00291010: ("siemens_csa_image", "OB"),  # CSA Image Header Info
    0x0019100E: ("siemens_gradient", "FD"),  # DiffusionGradientDirection
    0x00431039: ("ge_slop_int", "IS"),  # GE b-value (value[0] % 100000)
    0x001910BB: ("ge_gradient_x", "DS"),
    0x001910BC: ("ge_gradient_y", "DS"),
    0x001910BD: ("ge_gradient_z", "DS"),
    0x0021105E: ("ge_rtia_timer", "DS"),  # RTIA timer: GE slice timing on some software
    0x0043107C: ("ge_group_delay", "FL"),  # epiRT group delay (s), idle time after each volume
    0x004310B6: ("ge_multiband", "LO"),  # multiband factor \\ slice FOV shift \\ calibration
    0x004310A3: ("ge_asl_contrast", "LO"),  # ASL contrast technique (PSEUDOCONTINUOUS / CONTINUOUS)
    0x004310A4: ("ge_asl_labeling", "LO"),  # ASL labeling technique ("3D pulsed continuous ASL technique")
    0x004310A5: ("ge_asl_label_duration", "IS"),  # label duration (ms)
    0x20051429: ("philips_asl_label", "CS"),  # LABEL / CONTROL
    0x200510B0: ("philips_gradient_rl", "FL"),
    0x200510B1: ("philips_gradient_ap", "FL"),
    0x200510B2: ("philips_gradient_fh", "FL"),
    0x20011003: ("philips_b_value", "FL"),
    0x2005100E: ("philips_scale_slope", "FL"),
    0x2005100D: ("philips_scale_intercept", "FL"),
}

#: DICOMDIR's Directory Record Sequence: marks a media directory, not an image.
DIRECTORY_RECORDS = 0x00041220

#: Pixel data tags and the extended offset table.
PIXEL_TAGS = {0x7FE00010: 0, 0x7FE00008: 32, 0x7FE00009: 64}
EXTENDED_OFFSET_TABLE = 0x7FE00001
EXTENDED_OFFSET_TABLE_LENGTHS = 0x7FE00002

#: Attributes split into numbered float columns.
VECTOR_COLUMNS = {
    "ImagePositionPatient": ("ipp", 3),
    "ImageOrientationPatient": ("iop", 6),
    "PixelSpacing": ("pixel_spacing", 2),
    "DiffusionGradientOrientation": ("diffusion_gradient", 3),
}


@lru_cache(maxsize=4096)
def snake(keyword: str) -> str:
    """``SeriesInstanceUID`` -> ``series_instance_uid``."""
    s = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", keyword)
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", s)
    return s.lower()


def _build() -> dict[int, tuple[str, str]]:
    table: dict[int, tuple[str, str]] = {}
    for kw in KEYWORDS:
        tag = tag_for_keyword(kw)
        assert tag is not None, kw
        vr = dictionary_VR(tag)
        # ambiguous VRs ("US or SS", "OB or OW"): take the first; signedness is fixed up from
        # PixelRepresentation where it matters (scan._flatten)
        table[tag] = (kw, vr.split(" or ")[0])
    return table


#: tag -> (keyword, VR) for the public keywords.
WANTED: dict[int, tuple[str, str]] = _build()
