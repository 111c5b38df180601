"""Per-frame attributes of enhanced multi-frame objects (functional groups).

The Shared and Per-Frame Functional Groups Sequences hold, for every frame,
the attributes a classic series keeps in each file's header (position,
orientation, pixel measures, rescale, timing, diffusion, ASL context ...). This module
flattens them into one dict per frame whose keys are the same DICOM keywords
the classic header walker reports, so the assembly layer treats both kinds of
object alike.
"""

from __future__ import annotations

from typing import Any

#: (functional-group keyword) -> {element keyword -> output keyword}
_GROUPS: dict[str, dict[str, str]] = {
    "PlanePositionSequence": {"ImagePositionPatient": "ImagePositionPatient"},
    "PlaneOrientationSequence": {"ImageOrientationPatient": "ImageOrientationPatient"},
    "PixelMeasuresSequence": {
        "PixelSpacing": "PixelSpacing",
        "SliceThickness": "SliceThickness",
        "SpacingBetweenSlices": "SpacingBetweenSlices",
    },
    "PixelValueTransformationSequence": {
        "RescaleSlope": "RescaleSlope",
        "RescaleIntercept": "RescaleIntercept",
        "RescaleType": "RescaleType",
    },
    "FrameVOILUTSequence": {"WindowCenter": "WindowCenter", "WindowWidth": "WindowWidth"},
    "FrameContentSequence": {
        "FrameAcquisitionDateTime": "FrameAcquisitionDateTime",
        "FrameReferenceDateTime": "FrameReferenceDateTime",
        "FrameAcquisitionDuration": "FrameAcquisitionDuration",
        "FrameAcquisitionNumber": "FrameAcquisitionNumber",
        "TemporalPositionIndex": "TemporalPositionIndex",
        "StackID": "StackID",
        "InStackPositionNumber": "InStackPositionNumber",
        "DimensionIndexValues": "DimensionIndexValues",
    },
    "MRDiffusionSequence": {
        "DiffusionBValue": "DiffusionBValue",
        "DiffusionDirectionality": "DiffusionDirectionality",
    },
    "MREchoSequence": {"EffectiveEchoTime": "EchoTime"},
    "MRTimingAndRelatedParametersSequence": {
        "RepetitionTime": "RepetitionTime",
        "FlipAngle": "FlipAngle",
    },
    "MRModifierSequence": {"InversionTimes": "InversionTime"},
    "CardiacSynchronizationSequence": {
        "NominalCardiacTriggerDelayTime": "TriggerTime",
        "NominalPercentageOfCardiacPhase": "NominalPercentageOfCardiacPhase",
    },
    "TemporalPositionSequence": {"TemporalPositionTimeOffset": "TemporalPositionTimeOffset"},
    "MRImageFrameTypeSequence": {"FrameType": "ImageType"},
    "CTImageFrameTypeSequence": {"FrameType": "ImageType"},
    "SegmentIdentificationSequence": {"ReferencedSegmentNumber": "ReferencedSegmentNumber"},
    "PlanePositionSlideSequence": {
        "XOffsetInSlideCoordinateSystem": "XOffsetInSlideCoordinateSystem",
        "YOffsetInSlideCoordinateSystem": "YOffsetInSlideCoordinateSystem",
        "ZOffsetInSlideCoordinateSystem": "ZOffsetInSlideCoordinateSystem",
        "ColumnPositionInTotalImagePixelMatrix": "ColumnPositionInTotalImagePixelMatrix",
        "RowPositionInTotalImagePixelMatrix": "RowPositionInTotalImagePixelMatrix",
    },
    "RealWorldValueMappingSequence": {
        "RealWorldValueSlope": "RealWorldValueSlope",
        "RealWorldValueIntercept": "RealWorldValueIntercept",
        "LUTLabel": "RealWorldValueLUTLabel",
    },
    "CTExposureSequence": {"ExposureTime": "ExposureTime"},
    # MR Arterial Spin Labeling macro (PS3.3 C.8.13.5.14): ASL Context (0018,9257) LABEL / CONTROL /
    # M_ZERO_SCAN per frame -> the `asl` dim, like Philips (2005,1429)
    "MRArterialSpinLabelingSequence": {"ASLContext": "ASLContext"},
}

#: Keywords this module may add to frame rows (beyond fields.KEYWORDS).
FRAME_KEYWORDS: tuple[str, ...] = tuple(
    sorted({out for group in _GROUPS.values() for out in group.values()}
           | {"DiffusionGradientOrientation", "RealWorldValueUnits",
              "philips_scale_slope", "philips_scale_intercept"})
)


def _plain(value: Any) -> Any:
    """pydicom value -> plain Python (float/int/str/list)."""
    from pydicom.multival import MultiValue
    from pydicom.valuerep import DSfloat, IS

    if value is None or value == "":
        return None
    if isinstance(value, (MultiValue, list, tuple)):
        out = [_plain(v) for v in value]
        return out[0] if len(out) == 1 else out
    if isinstance(value, DSfloat):
        return float(value)
    if isinstance(value, IS):
        return int(value)
    if isinstance(value, (int, float, str)):
        return value
    return str(value)


_PHILIPS_PRIVATE_FG = 0x2005140F
_PHILIPS_SCALE = {0x2005100E: "philips_scale_slope", 0x2005100D: "philips_scale_intercept"}


def _philips_private(item: Any, out: dict[str, Any]) -> None:
    """Philips keeps its private scale slope/intercept in a per-frame private sequence."""
    import struct

    seq = item.get(_PHILIPS_PRIVATE_FG)
    if seq is None or not seq.value:
        return
    sub = seq.value[0]
    for tag, name in _PHILIPS_SCALE.items():
        if tag in sub:
            val = sub[tag].value
            if isinstance(val, (bytes, bytearray)) and len(val) >= 4:
                val = struct.unpack("<f", bytes(val[:4]))[0]
            if isinstance(val, (int, float)):
                out[name] = float(val)
    if 0x20051429 in sub:  # ASL label type (LABEL / CONTROL): the `asl` dim, as for classic Philips files
        label = sub[0x20051429].value
        if isinstance(label, (bytes, bytearray)):
            label = bytes(label).decode("latin-1")
        label = str(label).strip(" \x00")
        if label:
            out["philips_asl_label"] = label


def _group_values(item: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    _philips_private(item, out)
    for group_kw, mapping in _GROUPS.items():
        seq = item.get(group_kw)
        if not seq:
            continue
        sub = seq[0]
        for kw, name in mapping.items():
            if kw in sub:
                val = _plain(sub[kw].value)
                if val is not None:
                    out[name] = val
        if group_kw == "MRDiffusionSequence":
            grad = sub.get("DiffusionGradientDirectionSequence")
            if grad and "DiffusionGradientOrientation" in grad[0]:
                out["DiffusionGradientOrientation"] = _plain(grad[0].DiffusionGradientOrientation)
        if group_kw == "RealWorldValueMappingSequence":
            units = sub.get("MeasurementUnitsCodeSequence")
            if units and "CodeValue" in units[0]:
                out["RealWorldValueUnits"] = str(units[0].CodeValue)
    return out


def frame_values(ds: Any) -> list[dict[str, Any]]:
    """Per-frame attribute dicts of an enhanced multi-frame data set.

    Parameters
    ----------
    ds : pydicom.Dataset
        Header of an enhanced object (pixel data not needed).

    Returns
    -------
    list of dict
        One dict per frame: shared group values overridden by the frame's own.
    """
    n = int(ds.get("NumberOfFrames", 1) or 1)
    shared_seq = ds.get("SharedFunctionalGroupsSequence")
    shared = _group_values(shared_seq[0]) if shared_seq else {}
    per = ds.get("PerFrameFunctionalGroupsSequence") or []
    frames = []
    for i in range(n):
        values = dict(shared)
        if i < len(per):
            values.update(_group_values(per[i]))
        frames.append(values)
    return frames


def dimension_pointers(ds: Any) -> list[str]:
    """Keywords named by the Dimension Index Sequence, in order."""
    from pydicom.datadict import keyword_for_tag

    out = []
    for item in ds.get("DimensionIndexSequence") or []:
        ptr = item.get("DimensionIndexPointer")
        if ptr is not None:
            out.append(keyword_for_tag(int(ptr)) or f"{int(ptr):08X}")
    return out
