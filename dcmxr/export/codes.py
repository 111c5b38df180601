"""Coded terminology for derived objects: segment, quantity and measurement codes.

Small built-in tables so that ``segments={1: "liver", 2: "tumor"}``,
``quantity="ADC"`` and ``measurements=("volume", "mean")`` work without the
user looking up SNOMED CT or DICOM (DCM) codes. Each entry is a plain
``(value, scheme, meaning)`` triple; the tests check every triple against
pydicom's own code dictionary. highdicom is imported inside the functions.
"""

from __future__ import annotations

from typing import Any

from ..errors import ExportError, missing_dependency

__all__ = [
    "SEGMENT_CODES",
    "QUANTITY_CODES",
    "MEASUREMENT_CODES",
    "segment_codes",
    "quantity_code",
    "measurement_code",
    "coded",
]

Triple = tuple[str, str, str]

_TISSUE: Triple = ("85756007", "SCT", "Tissue")
_ANATOMY: Triple = ("91723000", "SCT", "Anatomical Structure")
_ALTERED: Triple = ("49755003", "SCT", "Morphologically Abnormal Structure")

#: name -> (segmented property category, segmented property type), SNOMED CT (CID 7150 / 7151 / 7159).
SEGMENT_CODES: dict[str, tuple[Triple, Triple]] = {
    "liver": (_ANATOMY, ("10200004", "SCT", "Liver")),
    "kidney": (_ANATOMY, ("64033007", "SCT", "Kidney")),
    "spleen": (_ANATOMY, ("78961009", "SCT", "Spleen")),
    "lung": (_ANATOMY, ("39607008", "SCT", "Lung")),
    "heart": (_ANATOMY, ("80891009", "SCT", "Heart")),
    "brain": (_ANATOMY, ("12738006", "SCT", "Brain")),
    "prostate": (_ANATOMY, ("41216001", "SCT", "Prostate")),
    "pancreas": (_ANATOMY, ("15776009", "SCT", "Pancreas")),
    "bladder": (_ANATOMY, ("89837001", "SCT", "Bladder")),
    "aorta": (_ANATOMY, ("15825003", "SCT", "Aorta")),
    "stomach": (_ANATOMY, ("69695003", "SCT", "Stomach")),
    "gallbladder": (_ANATOMY, ("28231008", "SCT", "Gallbladder")),
    "esophagus": (_ANATOMY, ("32849002", "SCT", "Esophagus")),
    "trachea": (_ANATOMY, ("44567001", "SCT", "Trachea")),
    "breast": (_ANATOMY, ("76752008", "SCT", "Breast")),
    "vertebra": (_ANATOMY, ("51282000", "SCT", "Vertebra")),
    "bone": (_TISSUE, ("272673000", "SCT", "Bone")),
    "muscle": (_TISSUE, ("71616004", "SCT", "Muscle")),
    "fat": (_TISSUE, ("55603005", "SCT", "Fat")),
    "tissue": (_TISSUE, ("85756007", "SCT", "Tissue")),
    "tumor": (_ALTERED, ("108369006", "SCT", "Tumor")),
    "neoplasm": (_ALTERED, ("108369006", "SCT", "Neoplasm")),
    "lesion": (_ALTERED, ("52988006", "SCT", "Lesion")),
    "mass": (_ALTERED, ("4147007", "SCT", "Mass")),
    "nodule": (_ALTERED, ("27925004", "SCT", "Nodule")),
}

#: name -> (quantity code (DCM, CID 7180 / 218), default UCUM unit of the quantity).
QUANTITY_CODES: dict[str, tuple[Triple, str]] = {
    "ADC": (("113041", "DCM", "Apparent Diffusion Coefficient"), "um2/s"),
    "Ktrans": (("126312", "DCM", "Ktrans"), "/min"),
    "kep": (("126313", "DCM", "kep"), "/min"),
    "ve": (("126314", "DCM", "ve"), "{ratio}"),
    "vp": (("126331", "DCM", "vp"), "{ratio}"),
    "CBF": (("126390", "DCM", "Absolute Regional Blood Flow"), "ml/100g/min"),
    "CBV": (("126391", "DCM", "Absolute Regional Blood Volume"), "ml/100g"),
    "MTT": (("113052", "DCM", "Mean Transit Time"), "s"),
    "T1": (("113063", "DCM", "T1"), "ms"),
    "T2": (("113065", "DCM", "T2"), "ms"),
}

#: statistic name -> SNOMED CT concept of the NUM item.
MEASUREMENT_CODES: dict[str, Triple] = {
    "volume": ("118565006", "SCT", "Volume"),
    "mean": ("373098007", "SCT", "Mean"),
    "min": ("255605001", "SCT", "Minimum"),
    "max": ("56851009", "SCT", "Maximum"),
    "std": ("386136009", "SCT", "Standard Deviation"),
    "median": ("373099004", "SCT", "Median"),
}


def coded(triple: Triple) -> Any:
    """A :class:`highdicom.sr.CodedConcept` from ``(value, scheme, meaning)``."""
    try:
        import highdicom as hd
    except ImportError as exc:  # pragma: no cover
        raise missing_dependency("highdicom", "export") from exc
    value, scheme, meaning = triple
    return hd.sr.CodedConcept(value=value, scheme_designator=scheme, meaning=meaning)


def _lookup(table: dict, name: str, what: str, argument: str) -> Any:
    key = {k.lower(): k for k in table}.get(str(name).lower())
    if key is None:
        raise ExportError(
            f"{argument}: no built-in {what} code for {name!r}; known: {', '.join(sorted(table))}. "
            f"Pass a full description instead (see docs/exports.md)"
        )
    return table[key]


def segment_codes(name: str, argument: str = "segments") -> tuple[Triple, Triple]:
    """(category, type) triples of a built-in segment name such as ``"liver"``.

    Raises
    ------
    ExportError
        When the name is not in :data:`SEGMENT_CODES` (the message lists them).
    """
    return _lookup(SEGMENT_CODES, name, "segment", argument)


def quantity_code(name: str, argument: str = "quantity") -> tuple[Triple, str]:
    """(quantity triple, default UCUM unit) of a built-in quantity such as ``"ADC"``.

    Raises
    ------
    ExportError
        When the name is not in :data:`QUANTITY_CODES`.
    """
    return _lookup(QUANTITY_CODES, name, "quantity", argument)


def measurement_code(name: str, argument: str = "measurements") -> Triple:
    """Concept triple of a statistic (``"volume"``, ``"mean"``, ...).

    Raises
    ------
    ExportError
        When the statistic is not in :data:`MEASUREMENT_CODES`.
    """
    return _lookup(MEASUREMENT_CODES, name, "measurement", argument)
