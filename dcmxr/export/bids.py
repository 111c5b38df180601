"""BIDS JSON sidecar, ``.bval`` and ``.bvec`` for a NIfTI written by :func:`~dcmxr.export.nifti.to_nifti`.

Field names and units follow BIDS and what dcm2niix writes (times in
seconds, angles in degrees, ``ImageType`` as a list, ``Manufacturer``
shortened to ``Siemens`` / ``GE`` / ``Philips`` ...). Values come from the
array's attrs and coords first, then from the header table the array was
opened from (``da.dcm.headers``, when this process opened it).

Fields relative to the NIfTI voxel axes (``PhaseEncodingDirection``,
``SliceTiming``, ``.bvec``) are expressed in the axes of the file dcmxr
writes (``i, j, k`` = the array's ``x, y, z`` index order), which differ
from dcm2niix's (it flips rows and may reverse slices): the same physical
direction can read ``j`` here and ``j-`` in dcm2niix's file. Both are right
for their own file.

Sources
-------
* ``PhaseEncodingDirection``: InPlanePhaseEncodingDirection (ROW -> the
  ``x`` axis, COL -> ``y``) with the polarity of Siemens' CSA
  ``PhaseEncodingDirectionPositive`` (1 = towards increasing DICOM row or
  column index). Without a polarity only ``PhaseEncodingAxis`` is written,
  as dcm2niix does.
* ``SliceTiming``: the ``slice_time`` coord (Siemens MosaicRefAcqTimes; GE
  RTIA timer / Protocol Data Block, see :mod:`dcmxr.assembly.ge_timing`; s);
  else ``frame_acquisition_date_time`` varying over ``z`` (enhanced MR);
  else, for GE, ``trigger_time`` varying over ``z`` (dcm2niix's rule). The
  first volume whose times fit in one TR is used (Siemens multiband mosaics
  carry junk times in the first volume; CSA times of other volumes differ by
  the scanner's 2.5 ms rounding, and dcm2niix reports one of them).
* ASL fields (``ArterialSpinLabelingType``, ``PostLabelingDelay``,
  ``LabelingDuration``, bolus cut-off ...): the attrs
  :func:`dcmxr.open_perfusion` set from headers, a sidecar or
  ``acquisition=`` (BIDS units), never its defaults.
* gradients: ``diffusion_gradient_0..2`` coords (LPS); for GE the
  ``diffusion_gradient_vendor_0..2`` coords or the private (0019,10BB-BD)
  (image axes, row and column components negated: the frame dcm2niix
  implies); else the table's DiffusionGradientOrientation or Siemens CSA
  columns (LPS). Arrays with no b-value above 0 get no .bval/.bvec.
  ``.bvec`` is in the FSL convention: voxel axes, ``x`` negated when the
  affine's determinant is positive.
"""

from __future__ import annotations

import json
import math
import warnings
from datetime import datetime
from typing import Any

import numpy as np

from ..errors import DcmxrWarning

__all__ = ["sidecar", "diffusion_table", "write_sidecars", "MANUFACTURERS"]

#: DICOM Manufacturer prefix (upper case) -> name dcm2niix writes.
MANUFACTURERS = {
    "SIEMENS": "Siemens",
    "GE": "GE",
    "PHILIPS": "Philips",
    "TOSHIBA": "Toshiba",
    "CANON": "Canon",
    "HITACHI": "Hitachi",
    "UIH": "UIH",
    "UNITED IMAGING": "UIH",
    "BRUKER": "Bruker",
    "MEDISO": "Mediso",
}

_FLIP = np.diag([-1.0, -1.0, 1.0])

#: (BIDS key, attr / table column, scale) for scalar fields; scale None = as is.
_SCALARS = (
    ("Modality", "modality", None),
    ("MagneticFieldStrength", "magnetic_field_strength", None),
    ("ImagingFrequency", "imaging_frequency", None),
    ("Manufacturer", "manufacturer", None),
    ("ManufacturersModelName", "manufacturer_model_name", None),
    ("InstitutionName", "institution_name", None),
    ("StationName", "station_name", None),
    ("DeviceSerialNumber", "device_serial_number", None),
    ("BodyPartExamined", "body_part_examined", None),
    ("PatientPosition", "patient_position", None),
    ("SoftwareVersions", "software_versions", None),
    ("MRAcquisitionType", "mr_acquisition_type", None),
    ("StudyDescription", "study_description", None),
    ("SeriesDescription", "series_description", None),
    ("ProtocolName", "protocol_name", None),
    ("ScanningSequence", "scanning_sequence", None),
    ("SequenceVariant", "sequence_variant", None),
    ("ScanOptions", "scan_options", None),
    ("SequenceName", "sequence_name", None),
    ("SeriesNumber", "series_number", None),
    ("AcquisitionNumber", "acquisition_number", None),
    ("SliceThickness", "slice_thickness", None),
    ("SpacingBetweenSlices", "spacing_between_slices", None),
    ("EchoTime", "echo_time", 1e-3),
    ("RepetitionTime", "repetition_time", 1e-3),
    ("InversionTime", "inversion_time", 1e-3),
    ("FlipAngle", "flip_angle", None),
    ("EchoTrainLength", "echo_train_length", None),
    ("PercentPhaseFOV", "percent_phase_field_of_view", None),
    ("PercentSampling", "percent_sampling", None),
    ("PixelBandwidth", "pixel_bandwidth", None),
    ("KVP", "kvp", None),
    ("ConvolutionKernel", "convolution_kernel", None),
)

#: Fields written only for MR.
_MR_ONLY = {
    "MagneticFieldStrength", "ImagingFrequency", "MRAcquisitionType", "ScanningSequence", "SequenceVariant",
    "ScanOptions", "SequenceName", "EchoTime", "RepetitionTime", "InversionTime", "FlipAngle",
    "EchoTrainLength", "PercentPhaseFOV", "PercentSampling", "PixelBandwidth",
}
#: Zero means "not given" for these (dcm2niix omits them).
_ZERO_IS_MISSING = {"EchoTime", "InversionTime", "RepetitionTime", "FlipAngle", "MagneticFieldStrength"}


# ---------------------------------------------------------------- helpers
def _missing(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, float) and math.isnan(v):
        return True
    if isinstance(v, str) and not v.strip():
        return True
    return False


def _py(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return v


def _clean_float(v: float) -> float | int:
    v = float(v)
    r = round(v, 9)
    return int(r) if r.is_integer() and abs(r) < 2**53 else r


def headers_table(da: Any):
    """The header table rows of ``da`` (``da.dcm.headers``) or None when unknown."""
    try:
        t = da.dcm.headers
    except (LookupError, AttributeError):
        return None
    return t if len(t) else None


def _const_column(table, col: str) -> Any:
    if table is None or col not in table.columns:
        return None
    vals = table[col].dropna()
    if len(vals) == 0:
        return None
    first = vals.iloc[0]
    try:
        same = bool((vals == first).all())
    except (TypeError, ValueError):
        same = False
    return _py(first) if same else None


def _value(da: Any, table, key: str) -> Any:
    v = da.attrs.get(key)
    if _missing(v):
        v = _const_column(table, key)
    return None if _missing(v) else _py(v)


def manufacturer_name(v: str) -> str:
    """``"SIEMENS"`` -> ``"Siemens"``, ``"GE MEDICAL SYSTEMS"`` -> ``"GE"`` (as dcm2niix)."""
    up = str(v).strip().upper()
    for k, name in MANUFACTURERS.items():
        if up.startswith(k):
            return name
    return str(v).strip()


def _tm(v: Any) -> str | None:
    """DICOM TM (``HHMMSS.ffffff``) or DT (``YYYYMMDDHHMMSS.ffffff``) -> ``HH:MM:SS.ffffff``."""
    s = str(v).strip().replace(":", "")
    whole, _, frac = s.partition(".")
    frac = frac.split("+")[0].split("-")[0]
    if len(whole) >= 14:
        whole = whole[8:14]
    if not whole.isdigit() or not (frac.isdigit() or frac == ""):
        return None
    whole = whole.ljust(6, "0")
    return f"{whole[0:2]}:{whole[2:4]}:{whole[4:6]}.{frac.ljust(6, '0')[:6]}"


def _seconds(v: Any) -> float | None:
    """DICOM TM or DT -> seconds since midnight (the date part of a DT is used)."""
    s = str(v).strip()
    if not s:
        return None
    try:
        if len(s) >= 14 and s[:14].isdigit():
            base = datetime.strptime(s[:14], "%Y%m%d%H%M%S")
            frac = float("0" + s[14:].split("+")[0].split("-")[0]) if s[14:15] == "." else 0.0
            return base.timestamp() + frac
        whole, _, frac = s.partition(".")
        whole = whole.ljust(6, "0")
        return int(whole[:2]) * 3600 + int(whole[2:4]) * 60 + int(whole[4:6]) + float("0." + (frac or "0"))
    except (ValueError, OverflowError):
        return None


def _lead_dims(da: Any) -> tuple[str, ...]:
    return tuple(d for d in da.dims if d not in ("x", "y", "z"))


def _axis_frame(da: Any, affine_ras: np.ndarray | None) -> np.ndarray:
    """Unit LPS directions of the NIfTI voxel axes i, j, k (columns)."""
    if affine_ras is not None:
        m = _FLIP @ np.asarray(affine_ras, dtype=np.float64)[:3, :3]
        return m / np.linalg.norm(m, axis=0)
    cols = []
    for ax in ("x", "y", "z"):
        d = np.asarray(da.coords[ax].attrs["direction"], dtype=np.float64)
        v = np.atleast_1d(np.asarray(da.coords[ax].values, dtype=np.float64))
        sign = -1.0 if len(v) > 1 and v[-1] < v[0] else 1.0
        cols.append(sign * d)
    return np.column_stack(cols)


def _axis_code(frame: np.ndarray, world: np.ndarray) -> str:
    proj = frame.T @ world
    k = int(np.argmax(np.abs(proj)))
    return "ijk"[k] + ("-" if proj[k] < 0 else "")


# ---------------------------------------------------------------- per-volume rows
def _volume_rows(da: Any, table) -> list | None:
    """One header-table row per index of the single leading dim (its first slice)."""
    lead = _lead_dims(da)
    if table is None or len(lead) != 1:
        return None
    dim = lead[0]
    keys = {}
    for name, col in (("sop_instance_uid", "sop_instance_uid"), ("frame_index", "frame")):
        if name in da.coords and col in table.columns:
            c = da.coords[name]
            if dim in c.dims:
                keys[col] = np.asarray(c.isel({d: 0 for d in c.dims if d != dim}).values)
    if not keys:
        return None
    rows = []
    for i in range(da.sizes[dim]):
        sel = np.ones(len(table), dtype=bool)
        for col, vals in keys.items():
            sel &= (table[col] == vals[i]).to_numpy()
        hit = table[sel]
        rows.append(hit.iloc[0] if len(hit) else None)
    return rows


# ---------------------------------------------------------------- phase encoding
def _siemens_csa_tag(path: str, name: str) -> Any:
    """One field of the Siemens CSA image header of a local file (None when absent)."""
    try:
        import pydicom
        from nibabel.nicom import csareader

        ds = pydicom.dcmread(path, stop_before_pixels=True)
        hdr = csareader.get_csa_header(ds, "image")
        items = (hdr or {}).get("tags", {}).get(name, {}).get("items") or []
        return items[0] if items else None
    except Exception:  # CSA is advisory: any failure means "unknown"
        return None


def phase_encoding(da: Any, table=None) -> tuple[str | None, int | None]:
    """``(axis, polarity)``: the dim phase is encoded along (``"x"``/``"y"``/``"z"``) and
    +1/-1 (along / against that axis's ``direction`` attr, i.e. towards increasing /
    decreasing DICOM row or column index), None when unknown.

    An array opened by :func:`dcmxr.open_nifti` carries it as the attr
    ``phase_encoding_direction`` (e.g. ``"y-"``).
    """
    pe = da.attrs.get("phase_encoding_direction")
    if isinstance(pe, str) and pe[:1] in ("x", "y", "z"):
        return pe[0], -1 if pe.endswith("-") else 1
    ped = _value(da, table, "in_plane_phase_encoding_direction")
    axis = {"ROW": "x", "COL": "y"}.get(str(ped).strip().upper()) if ped else None
    if axis is None:
        return None, None
    pos = _value(da, table, "csa_phase_positive")
    if pos is None and table is not None and "path" in table.columns:
        man = str(_value(da, table, "manufacturer") or "").upper()
        if man.startswith("SIEMENS"):
            pos = _siemens_csa_tag(str(table["path"].iloc[0]), "PhaseEncodingDirectionPositive")
    if isinstance(pos, (list, tuple, np.ndarray)):  # parse_csa returns lists of floats
        pos = pos[0] if len(pos) else None
    if pos is None or _missing(pos):
        return axis, None
    return axis, 1 if int(float(pos)) == 1 else -1


# ---------------------------------------------------------------- slice timing
def slice_timing(da: Any, table=None) -> list[float] | None:
    """Acquisition time (s) of each ``z`` index relative to the volume's first slice."""
    if "z" not in da.dims or da.sizes["z"] < 2:
        return None
    def per_volume(c) -> np.ndarray | None:
        if "z" not in c.dims:
            return None
        c = c.transpose(*[d for d in c.dims if d != "z"], "z")
        arr = np.asarray(c.values)
        return arr.reshape(-1, arr.shape[-1])

    times = None
    if "slice_time" in da.coords:
        times = per_volume(da.coords["slice_time"])
        times = None if times is None else times.astype(np.float64)
    if times is None and "frame_acquisition_date_time" in da.coords:
        raw = per_volume(da.coords["frame_acquisition_date_time"])
        if raw is not None:
            times = np.array([[np.nan if (s := _seconds(v)) is None else s for v in row] for row in raw])
    if times is None and "trigger_time" in da.coords:
        man = str(_value(da, table, "manufacturer") or "").upper()
        raw = per_volume(da.coords["trigger_time"])
        if man.startswith("GE") and raw is not None:
            times = raw.astype(np.float64) / 1000.0
    if times is None:
        return None
    tr = _value(da, table, "repetition_time")
    tr_s = float(tr) / 1000.0 if isinstance(tr, (int, float)) and tr > 0 else math.inf
    rel = times - np.nanmin(times, axis=1, keepdims=True) if times.size else times
    ok = np.all(np.isfinite(times), axis=1) & (np.ptp(times, axis=1) > 0) & (np.max(rel, axis=1) < tr_s)
    if not np.any(ok):
        return None
    # the first volume whose times fit in one TR (Siemens multiband writes junk CSA times in the
    # first volume); volumes differ from each other by the scanner's 2.5 ms rounding
    last = rel[int(np.flatnonzero(ok)[0])]
    return [_clean_float(round(float(v), 6)) for v in last]  # DICOM times resolve 1 us


# ---------------------------------------------------------------- diffusion
def _ge_gradient(path: str) -> np.ndarray | None:
    try:
        import pydicom

        ds = pydicom.dcmread(path, stop_before_pixels=True,
                             specific_tags=[(0x0019, 0x0010), (0x0019, 0x10BB), (0x0019, 0x10BC), (0x0019, 0x10BD)])
        vals = [ds.get((0x0019, e)) for e in (0x10BB, 0x10BC, 0x10BD)]
        if any(v is None for v in vals):
            return None
        return np.array([float(v.value) for v in vals])
    except Exception:
        return None


def diffusion_table(da: Any, affine_ras: np.ndarray | None = None, table=None):
    """``(bvals, bvecs)`` per volume of the single leading dim, or None.

    ``bvals`` in s/mm², shape (n,); ``bvecs`` shape (3, n) in the FSL
    convention for the NIfTI dcmxr writes (voxel axes, ``i`` negated when
    the affine determinant is positive).
    """
    lead = _lead_dims(da)
    if len(lead) != 1:
        return None
    dim = lead[0]
    n = da.sizes[dim]
    if table is None:
        table = headers_table(da)
    rows = _volume_rows(da, table)

    bvals = np.full(n, np.nan)
    if "diffusion_b_value" in da.coords:
        c = da.coords["diffusion_b_value"]
        if dim in c.dims:
            arr = np.asarray(c.transpose(dim, ...).values, dtype=np.float64).reshape(n, -1)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                bvals = np.nanmax(arr, axis=1)
    elif rows is not None:
        for i, r in enumerate(rows):
            for col in ("diffusion_b_value", "csa_b_value", "siemens_b_value", "philips_b_value"):
                if r is not None and col in r.index and not _missing(r[col]):
                    bvals[i] = float(r[col])
                    break
    if not np.any(bvals[np.isfinite(bvals)] > 0):  # no diffusion weighting: not a DWI
        return None
    bvals = np.where(np.isfinite(bvals), bvals, 0.0)

    grads = np.full((n, 3), np.nan)
    dx = np.asarray(da.coords["x"].attrs["direction"], dtype=np.float64)
    dy = np.asarray(da.coords["y"].attrs["direction"], dtype=np.float64)
    normal = np.cross(dx, dy)
    ge = str(_value(da, table, "manufacturer") or "").upper().startswith("GE")
    gcoords = [f"diffusion_gradient_{k}" for k in range(3)]
    if all(c in da.coords and dim in da.coords[c].dims for c in gcoords):
        for k, c in enumerate(gcoords):
            grads[:, k] = np.asarray(da.coords[c].transpose(dim, ...).values, dtype=np.float64).reshape(n, -1)[:, 0]
    elif ge and all(f"diffusion_gradient_vendor_{k}" in da.coords for k in range(3)):
        g = np.stack([np.asarray(da.coords[f"diffusion_gradient_vendor_{k}"].transpose(dim, ...).values,
                                 dtype=np.float64).reshape(n, -1)[:, 0] for k in range(3)], axis=1)
        grads = -g[:, :1] * dx - g[:, 1:2] * dy + g[:, 2:3] * normal
    elif rows is not None:
        for i, r in enumerate(rows):
            if r is None:
                continue
            if all(c in r.index and not _missing(r[c]) for c in gcoords):
                grads[i] = [float(r[c]) for c in gcoords]
            elif "csa_gradient" in r.index and isinstance(r["csa_gradient"], (list, tuple, np.ndarray)):
                grads[i] = np.asarray(r["csa_gradient"], dtype=np.float64)[:3]
            elif ge and "path" in r.index:
                g = _ge_gradient(str(r["path"]))
                if g is not None:
                    grads[i] = -g[0] * dx - g[1] * dy + g[2] * normal
    grads[bvals == 0] = 0.0
    if not np.all(np.isfinite(grads)):
        warnings.warn("diffusion gradients unknown for some volumes: .bvec not written", DcmxrWarning, stacklevel=3)
        return bvals, None
    frame = _axis_frame(da, affine_ras)
    vox = np.linalg.solve(frame, grads.T)  # (3, n) components along the voxel axes
    if np.linalg.det(frame) > 0:
        vox[0] = -vox[0]
    return bvals, vox


# ---------------------------------------------------------------- sidecar
def sidecar(da: Any, affine_ras: np.ndarray | None = None, table: Any = None) -> dict:
    """BIDS sidecar fields for ``da`` as written by ``to_nifti``.

    Parameters
    ----------
    da : xarray.DataArray
        A dcmxr array (attrs, coords).
    affine_ras : array, optional
        The NIfTI affine (defines the ``i, j, k`` axes); default from the coordinates.
    table : pandas.DataFrame, optional
        Header rows of the array; default ``da.dcm.headers`` when known.

    Returns
    -------
    dict
        JSON-safe.
    """
    from .. import __version__

    if table is None:
        table = headers_table(da)
    out: dict[str, Any] = {}
    modality = _value(da, table, "modality")
    for key, col, scale in _SCALARS:
        if key in _MR_ONLY and modality not in (None, "MR"):
            continue
        v = _value(da, table, col)
        if v is None:
            continue
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if key in _ZERO_IS_MISSING and v == 0:
                continue
            v = _clean_float(v * scale) if scale else _clean_float(v)
            if key in ("SeriesNumber", "AcquisitionNumber", "EchoTrainLength"):
                v = int(v)
        elif key == "Manufacturer":
            v = manufacturer_name(v)
        out[key] = v
    it = _value(da, table, "image_type")
    if it:
        out["ImageType"] = [s for s in str(it).split("\\")]
    acq = _acquisition_time(da, table)
    if acq:
        out["AcquisitionTime"] = acq
    st = slice_timing(da, table)
    if st is not None:
        out["SliceTiming"] = st
    out.update(_perfusion_fields(da))
    frame = _axis_frame(da, affine_ras)
    axis, pol = phase_encoding(da, table)
    if axis is not None:
        world = np.asarray(da.coords[axis].attrs["direction"], dtype=np.float64)
        code = _axis_code(frame, world if pol is None else pol * world)
        if pol is None:
            out["PhaseEncodingAxis"] = code.rstrip("-")
        else:
            out["PhaseEncodingDirection"] = code
    if all(ax in da.coords and "direction" in da.coords[ax].attrs for ax in ("x", "y")):
        iop = list(da.coords["x"].attrs["direction"]) + list(da.coords["y"].attrs["direction"])
        out["ImageOrientationPatientDICOM"] = [_clean_float(round(float(v), 8)) for v in iop]
    ped = _value(da, table, "in_plane_phase_encoding_direction")
    if ped:
        out["InPlanePhaseEncodingDirectionDICOM"] = str(ped)
    out["ConversionSoftware"] = "dcmxr"
    out["ConversionSoftwareVersion"] = __version__
    return out


#: BIDS ASL keys written from attrs that dcmxr.open_perfusion set (never from its defaults).
_ASL_BIDS = ("ArterialSpinLabelingType", "PostLabelingDelay", "LabelingDuration", "BolusCutOffFlag",
             "BolusCutOffTechnique", "BolusCutOffDelayTime", "LabelingSlabThickness", "VascularCrushing",
             "BackgroundSuppression", "M0Type", "M0Scale", "LabelingEfficiency")


def _perfusion_fields(da: Any) -> dict:
    """ASL fields of an array from :func:`dcmxr.open_perfusion` (headers, sidecar or ``acquisition=``)."""
    sources = da.attrs.get("acquisition_source")
    if not isinstance(sources, dict):
        return {}
    from ..perfusion.params import BIDS_KEYS

    out: dict[str, Any] = {}
    for key in _ASL_BIDS:
        attr = BIDS_KEYS[key][0]
        if attr in da.attrs and sources.get(attr) not in (None, "default"):
            v = _py(da.attrs[attr])
            out[key] = [_py(x) for x in v] if isinstance(v, (list, tuple, np.ndarray)) else v
    return out


def _acquisition_time(da: Any, table) -> str | None:
    cands = []
    for name in ("acquisition_time", "acquisition_date_time", "frame_acquisition_date_time"):
        vals = None
        if name in da.coords:
            vals = np.ravel(da.coords[name].values)
        elif not _missing(da.attrs.get(name)):
            vals = [da.attrs[name]]
        elif table is not None and name in table.columns:
            vals = table[name].dropna().to_numpy()
        if vals is not None and len(vals):
            secs = [(s, v) for v in vals if not _missing(v) and (s := _seconds(v)) is not None]
            if secs:
                cands.append(min(secs, key=lambda p: p[0])[1])
                break
    return _tm(cands[0]) if cands else None


def _fmt(v: float) -> str:
    return f"{v:.6g}" if v != 0 else "0"


def write_sidecars(da: Any, paths: dict, affine_ras: np.ndarray | None = None) -> dict:
    """Write ``paths["json"]`` and, for diffusion arrays, ``.bval`` / ``.bvec``.

    Returns the sidecar dict.
    """
    table = headers_table(da)
    meta = sidecar(da, affine_ras, table)
    paths["json"].write_text(json.dumps(meta, indent="\t") + "\n")
    dt = diffusion_table(da, affine_ras, table)
    if dt is not None:
        bvals, bvecs = dt
        paths["bval"].write_text(" ".join(_fmt(float(b)) for b in bvals) + "\n")
        if bvecs is not None:
            paths["bvec"].write_text("\n".join(" ".join(_fmt(float(v)) for v in row) for row in bvecs) + "\n")
    return meta
