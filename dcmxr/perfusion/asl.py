"""ASL acquisition parameters read from DICOM headers (standard attributes, then vendor fields).

Two layers, merged by :func:`dcmxr.perfusion.params.resolve` under the BIDS
sidecar and ``acquisition=`` (see :mod:`dcmxr.perfusion.params`):

``standard`` -- the Enhanced MR ASL attributes, looked up at the top level, in
the Shared Functional Groups and in the first Per-Frame Functional Groups
item (inside MR Arterial Spin Labeling Sequence (0018,9251) and its ASL Slab /
Bolus Cut-off Timing items):

* Arterial Spin Labeling Contrast (0018,9250): ``CONTINUOUS`` /
  ``PSEUDOCONTINUOUS`` / ``PULSED`` -> ``arterial_spin_labeling_type``
  ``CASL`` / ``PCASL`` / ``PASL`` (the BIDS names);
* ASL Technique Description (0018,9252) -> ``asl_technique_description``;
* ASL Pulse Train Duration (0018,9258, ms) -> ``labeling_duration`` (s), the
  correspondence BIDS names for LabelingDuration;
* ASL Bolus Cut-off Flag (0018,925C) -> ``bolus_cut_off_flag``; ASL Bolus
  Cut-off Technique (0018,925E) -> ``bolus_cut_off_technique``; ASL Bolus
  Cut-off Delay Time (0018,925F, ms) -> ``bolus_cut_off_delay_time`` (s);
* ASL Slab Thickness (0018,9254, mm) -> ``labeling_slab_thickness``;
  ASL Crusher Flag (0018,9259) -> ``vascular_crushing``;
* ASL Context (0018,9257) of every frame -> ``asl_context`` (one value per
  frame in file order) when frames differ.

The standard ASL macro carries no post-labeling delay.

``vendor`` -- private fields, as dcm2niix reads them:

* GE 3D ASL (GE/README.md of dcm2niix): (0043,10A3) ASL contrast technique
  (``PSEUDOCONTINUOUS`` on the perfusion-weighted pass -> ``PCASL``;
  ``CONTINUOUS`` marks the proton-density reference pass, not a labeling
  type, so it is not mapped),
  (0043,10A4) labeling technique text, (0043,10A5) label duration (ms); when
  the label duration is given, Inversion Time (0018,0082, ms) is the
  post-labeling delay.
* Philips classic and enhanced ASL: label/control per volume is (2005,1429)
  (the ``asl`` dim of :func:`dcmxr.open_series`). Philips headers carry no
  post-labeling delay or labeling duration that dcm2niix trusts (the
  multi-phase Trigger Time varies per slice; dcm2niix leaves it out), so none
  is reported: pass them with ``acquisition=`` or a sidecar.
"""

from __future__ import annotations

from typing import Any

__all__ = ["header_params", "dataset_params", "ASL_TYPES"]

#: DICOM Arterial Spin Labeling Contrast / GE contrast technique -> BIDS ArterialSpinLabelingType.
ASL_TYPES = {"CONTINUOUS": "CASL", "PSEUDOCONTINUOUS": "PCASL", "PULSED": "PASL"}

_KEYWORDS = ("ArterialSpinLabelingContrast", "ASLTechniqueDescription", "ASLPulseTrainDuration",
             "ASLBolusCutoffFlag", "ASLBolusCutoffTechnique", "ASLBolusCutoffDelayTime", "ASLSlabThickness",
             "ASLCrusherFlag", "ASLContext")
_GE_CREATOR = (0x0043, 0x0010)
_GE_TAGS = {(0x0043, 0x10A3): "contrast", (0x0043, 0x10A4): "labeling", (0x0043, 0x10A5): "duration"}


def _find(item: Any, keyword: str, depth: int = 0) -> Any:
    """First value of ``keyword`` in ``item`` or its nested sequences (Per-Frame groups excluded)."""
    if keyword in item:
        return item[keyword].value
    if depth > 4:
        return None
    for el in item:
        if el.VR == "SQ" and el.keyword != "PerFrameFunctionalGroupsSequence" and el.value:
            for sub in el.value[:1]:
                v = _find(sub, keyword, depth + 1)
                if v is not None:
                    return v
    return None


def _lookup(ds: Any, keyword: str) -> Any:
    v = _find(ds, keyword)
    if v is None:
        per = ds.get("PerFrameFunctionalGroupsSequence")
        if per:
            v = _find(per[0], keyword)
    return None if v in ("", None) else v


def _frame_contexts(ds: Any) -> list[str] | None:
    per = ds.get("PerFrameFunctionalGroupsSequence")
    if not per:
        return None
    vals = [_find(item, "ASLContext") for item in per]
    if any(v is None for v in vals):
        return None
    return [str(v).strip().upper() for v in vals]


def _num(v: Any) -> float | None:
    try:
        f = float(v[0] if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue" else v)
    except (TypeError, ValueError, IndexError):
        return None
    return f


def _flag(v: Any) -> bool | None:
    s = str(v).strip().upper()
    return True if s == "YES" else False if s == "NO" else None


def dataset_params(ds: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(standard, vendor)`` ASL parameters of one pydicom data set (units of ``PARAM_UNITS``).

    Parameters
    ----------
    ds : pydicom.Dataset
        A header (pixel data not needed).

    Returns
    -------
    standard, vendor : dict, dict
        Parameter name -> value; empty when the header says nothing.
    """
    std: dict[str, Any] = {}
    contrast = _lookup(ds, "ArterialSpinLabelingContrast")
    if contrast is not None and str(contrast).strip().upper() in ASL_TYPES:
        std["arterial_spin_labeling_type"] = ASL_TYPES[str(contrast).strip().upper()]
    desc = _lookup(ds, "ASLTechniqueDescription")
    if desc is not None:
        std["asl_technique_description"] = str(desc).strip()
    dur = _num(_lookup(ds, "ASLPulseTrainDuration"))
    if dur is not None and dur > 0:
        std["labeling_duration"] = round(dur / 1000.0, 9)
    flag = _flag(_lookup(ds, "ASLBolusCutoffFlag"))
    if flag is not None:
        std["bolus_cut_off_flag"] = flag
    tech = _lookup(ds, "ASLBolusCutoffTechnique")
    if tech is not None:
        std["bolus_cut_off_technique"] = str(tech).strip()
    delay = _num(_lookup(ds, "ASLBolusCutoffDelayTime"))
    if delay is not None:
        std["bolus_cut_off_delay_time"] = round(delay / 1000.0, 9)
    slab = _num(_lookup(ds, "ASLSlabThickness"))
    if slab is not None:
        std["labeling_slab_thickness"] = slab
    crush = _flag(_lookup(ds, "ASLCrusherFlag"))
    if crush is not None:
        std["vascular_crushing"] = crush
    contexts = _frame_contexts(ds)
    if contexts and len(set(contexts)) > 1:
        std["asl_context"] = contexts
    elif contexts is None and _lookup(ds, "ASLContext") is not None and "PerFrameFunctionalGroupsSequence" not in ds:
        std["asl_context"] = [str(_lookup(ds, "ASLContext")).strip().upper()]

    vendor: dict[str, Any] = {}
    man = str(ds.get("Manufacturer", "")).upper()
    creator = ds.get(_GE_CREATOR)
    if man.startswith("GE") and creator is not None and str(creator.value).upper().startswith("GEMS_PARM"):
        ge = {name: ds[tag].value for tag, name in _GE_TAGS.items() if tag in ds and ds[tag].value not in ("", None)}
        kind = str(ge.get("contrast", "")).strip().upper()
        if kind == "PSEUDOCONTINUOUS":  # GE's PD reference pass says CONTINUOUS: not a labeling type
            vendor["arterial_spin_labeling_type"] = "PCASL"
        if "labeling" in ge:
            vendor["asl_technique_description"] = str(ge["labeling"]).strip()
        label_ms = _num(ge.get("duration"))
        if label_ms is not None and label_ms > 0:
            vendor["labeling_duration"] = round(label_ms / 1000.0, 9)
            ti = _num(ds.get("InversionTime"))
            if ti is not None and ti > 0:  # dcm2niix: for GE ASL, InversionTime is the post-label delay
                vendor["post_labeling_delay"] = round(ti / 1000.0, 9)
    return std, vendor


def header_params(path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """:func:`dataset_params` of the file at ``path`` (local or fsspec URL); empty on any read failure."""
    try:
        import pydicom

        if "://" in str(path):
            import fsspec

            with fsspec.open(str(path), "rb") as f:
                ds = pydicom.dcmread(f, stop_before_pixels=True)
        else:
            ds = pydicom.dcmread(str(path), stop_before_pixels=True)
    except Exception:  # headers are advisory here: an unreadable file says nothing
        return {}, {}
    return dataset_params(ds)
