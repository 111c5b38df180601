"""Perfusion acquisition parameters: names, units, and the priority of their sources.

Parameters live in ``attrs`` as plain numbers (JSON-safe) in the units of
:data:`PARAM_UNITS`; ``attrs["acquisition_source"]`` says where each came
from. Sources, lowest priority first: ``default`` < ``standard`` (DICOM
standard attributes) < ``vendor`` (private/vendor conventions) < ``sidecar``
(a BIDS JSON) < ``acquisition`` (the caller's ``acquisition=``).
"""

from __future__ import annotations

import math
from typing import Any

#: attr name -> units (strings :data:`dcmxr.units.ureg` parses; None for text/flags).
PARAM_UNITS: dict[str, str | None] = {
    "repetition_time": "ms",
    "echo_time": "ms",
    "flip_angle": "degree",
    "inversion_time": "ms",
    "temporal_resolution": "s",
    "n_timepoints": None,
    "b_values": "s/mm**2",
    "arterial_spin_labeling_type": None,
    "post_labeling_delay": "s",
    "labeling_duration": "s",
    "bolus_cut_off_flag": None,
    "bolus_cut_off_technique": None,
    "bolus_cut_off_delay_time": "s",
    "asl_technique_description": None,
    "labeling_slab_thickness": "mm",
    "vascular_crushing": None,
    "asl_context": None,
    "background_suppression": None,
    "m0_type": None,
    "m0_scale": "dimensionless",
    "labeling_efficiency": "dimensionless",
    "contrast_bolus_ingredient": None,
}

#: What each modality reports (the others are dropped from the result).
MODALITY_PARAMS: dict[str, tuple[str, ...]] = {
    "DCE": ("repetition_time", "echo_time", "flip_angle", "temporal_resolution", "n_timepoints",
            "contrast_bolus_ingredient"),
    "DSC": ("repetition_time", "echo_time", "flip_angle", "temporal_resolution", "n_timepoints",
            "contrast_bolus_ingredient"),
    "ASL": ("repetition_time", "echo_time", "flip_angle", "inversion_time", "arterial_spin_labeling_type",
            "asl_technique_description", "post_labeling_delay", "labeling_duration", "bolus_cut_off_flag",
            "bolus_cut_off_technique", "bolus_cut_off_delay_time", "labeling_slab_thickness",
            "vascular_crushing", "asl_context", "background_suppression", "m0_type", "m0_scale",
            "labeling_efficiency", "n_timepoints"),
    "IVIM": ("repetition_time", "echo_time", "flip_angle", "b_values"),
}

#: BIDS sidecar key -> (attr, factor from BIDS units to PARAM_UNITS).
BIDS_KEYS: dict[str, tuple[str, float | None]] = {
    "RepetitionTime": ("repetition_time", 1000.0),
    "RepetitionTimePreparation": ("repetition_time", 1000.0),
    "EchoTime": ("echo_time", 1000.0),
    "FlipAngle": ("flip_angle", None),
    "InversionTime": ("inversion_time", 1000.0),
    "ArterialSpinLabelingType": ("arterial_spin_labeling_type", None),
    "PostLabelingDelay": ("post_labeling_delay", None),
    "LabelingDuration": ("labeling_duration", None),
    "BolusCutOffFlag": ("bolus_cut_off_flag", None),
    "BolusCutOffTechnique": ("bolus_cut_off_technique", None),
    "BolusCutOffDelayTime": ("bolus_cut_off_delay_time", None),
    "LabelingSlabThickness": ("labeling_slab_thickness", None),
    "VascularCrushing": ("vascular_crushing", None),
    "BackgroundSuppression": ("background_suppression", None),
    "M0Type": ("m0_type", None),
    "M0Scale": ("m0_scale", None),
    "LabelingEfficiency": ("labeling_efficiency", None),
    "ContrastBolusIngredient": ("contrast_bolus_ingredient", None),
}

#: ASL white paper (Alsop et al. 2015) labeling efficiencies, used only when nothing else says.
_EFFICIENCY = {"PCASL": 0.85, "CASL": 0.68, "PASL": 0.98}

SOURCES = ("default", "standard", "vendor", "sidecar", "acquisition")


def _json_safe(v: Any) -> Any:
    if hasattr(v, "item") and getattr(v, "ndim", 1) == 0:
        v = v.item()
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    if hasattr(v, "tolist"):
        return v.tolist()
    return v


def from_bids(meta: dict) -> dict[str, Any]:
    """Perfusion parameters from a BIDS sidecar dict, in :data:`PARAM_UNITS`."""
    out: dict[str, Any] = {}
    for key, (attr, factor) in BIDS_KEYS.items():
        if key not in meta or meta[key] is None:
            continue
        v = meta[key]
        if factor is not None:
            v = [round(float(x) * factor, 9) for x in v] if isinstance(v, list) else round(float(v) * factor, 9)
        out.setdefault(attr, _json_safe(v))
    return out


def from_user(acquisition: dict) -> dict[str, Any]:
    """Normalise ``acquisition=``: snake_case or BIDS keys; numbers or pint Quantities.

    Plain numbers under snake_case names are taken in :data:`PARAM_UNITS`;
    under BIDS names in BIDS units (seconds); pint Quantities are converted.

    Raises
    ------
    KeyError
        For a name that is not a known parameter.
    """
    out: dict[str, Any] = {}
    for key, v in acquisition.items():
        if key in BIDS_KEYS:
            attr, factor = BIDS_KEYS[key]
        elif key in PARAM_UNITS:
            attr, factor = key, None
        else:
            raise KeyError(f"acquisition=: unknown parameter {key!r}; known: {sorted(PARAM_UNITS)} "
                           f"or their BIDS names {sorted(BIDS_KEYS)}")
        unit = PARAM_UNITS[attr]
        if hasattr(v, "to") and hasattr(v, "magnitude"):  # a pint Quantity: convert, no BIDS factor
            v = v.to(unit).magnitude if unit is not None else v.magnitude
            factor = None
        if factor is not None:
            v = [float(x) * factor for x in v] if isinstance(v, (list, tuple)) else float(v) * factor
        out[attr] = _json_safe(v)
    return out


def defaults(modality: str, known: dict[str, Any]) -> dict[str, Any]:
    """Defaults for what headers rarely say (ASL: M0 scale 1, white-paper labeling efficiency)."""
    out: dict[str, Any] = {}
    if modality == "ASL":
        out["m0_scale"] = 1.0
        kind = str(known.get("arterial_spin_labeling_type") or "").upper()
        if kind in _EFFICIENCY:
            out["labeling_efficiency"] = _EFFICIENCY[kind]
    return out


def resolve(modality: str, layers: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], dict[str, str]]:
    """Merge parameter layers by priority; keep the modality's parameters only.

    Returns
    -------
    values, sources : dict, dict
    """
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    wanted = MODALITY_PARAMS[modality]
    merged_layers = dict(layers)
    partial: dict[str, Any] = {}
    for name in SOURCES:
        if name != "default":
            partial.update(merged_layers.get(name) or {})
    merged_layers["default"] = {**defaults(modality, partial), **(merged_layers.get("default") or {})}
    for name in SOURCES:
        for k, v in (merged_layers.get(name) or {}).items():
            if k not in wanted or v is None or (isinstance(v, float) and math.isnan(v)):
                continue
            values[k] = v
            sources[k] = name
    return values, sources
