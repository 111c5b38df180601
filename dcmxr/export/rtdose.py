"""Write a dose DataArray as a DICOM RT Dose (``to_rtdose``).

Values are quantised to unsigned 32-bit (or 16-bit) integers with one
DoseGridScaling chosen so the largest dose maps to the largest integer; the
round trip through :func:`dcmxr.open_dose` is exact to half a scaling step.
Geometry: ImagePositionPatient is the first voxel, ImageOrientationPatient
the x and y directions, and the planes go in GridFrameOffsetVector in the
relative form (offsets along the slice normal from the first plane), so a
non-uniform ``z`` is written as it is. Patient, study and frame of reference
come from ``reference`` (an RT Plan, CT or dose: path or pydicom Dataset);
an RT Plan is also the Referenced RT Plan. The pixel data is computed in
memory (an RT Dose is one file).
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ExportError

RTDOSE_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.2"
RTPLAN_SOP_CLASSES = ("1.2.840.10008.5.1.4.1.1.481.5", "1.2.840.10008.5.1.4.1.1.481.8",
                      "1.2.840.10008.5.1.4.1.1.481.13")

_COPIED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
           "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber", "StudyDescription",
           "FrameOfReferenceUID", "PositionReferenceIndicator")


def _load(reference: Any):
    if reference is None:
        return None
    import pydicom

    if isinstance(reference, pydicom.Dataset):
        return reference
    return pydicom.dcmread(str(reference), stop_before_pixels=True, force=True)


def _geometry(da) -> tuple[list[float], list[float], list[float], list[float]]:
    dirs = {ax: np.asarray(da[ax].attrs.get("direction", ()), dtype=np.float64) for ax in ("x", "y", "z")}
    if any(v.shape != (3,) for v in dirs.values()):
        raise ExportError("the array has no dcmxr geometry (x/y/z coordinates with 'direction' attrs)")
    steps = {}
    for ax in ("x", "y"):
        v = np.asarray(da[ax].values, dtype=np.float64)
        if len(v) < 2:
            steps[ax] = 1.0
            continue
        s = np.diff(v)
        if not np.allclose(s, s[0], rtol=1e-4, atol=1e-4):
            raise ExportError(f"{ax!r} is not evenly spaced; an RT Dose needs a regular in-plane grid "
                              f"(resample with da.dcm.resample first)")
        steps[ax] = float(s[0])
    row = np.sign(steps["x"]) * dirs["x"]
    col = np.sign(steps["y"]) * dirs["y"]
    normal = np.cross(row, col)
    dz = dirs["z"]
    if abs(abs(float(normal @ dz)) - 1) > 1e-4:
        raise ExportError("z is not along the slice normal (a tilted stack); GridFrameOffsetVector cannot "
                          "describe it: deskew first (da.dcm.deskew)")
    z = np.atleast_1d(np.asarray(da["z"].values, dtype=np.float64))
    x0, y0 = float(np.ravel(da["x"].values)[0]), float(np.ravel(da["y"].values)[0])
    ipp = x0 * dirs["x"] + y0 * dirs["y"] + z[0] * dz
    offsets = (z - z[0]) * float(normal @ dz)
    if len(offsets) > 1 and not (np.all(np.diff(offsets) > 0) or np.all(np.diff(offsets) < 0)):
        raise ExportError("z positions are not strictly monotonic")
    return ([float(v) for v in ipp], [float(v) for v in np.concatenate([row, col])],
            [abs(steps["y"]), abs(steps["x"])], [float(v) for v in offsets])


def to_rtdose(da, path: str | Path, reference: Any = None, *, plan: Any = None, dose_type: str | None = None,
              summation_type: str | None = None, bits: int = 32, series_description: str = "RT Dose (dcmxr)") -> Path:
    """Write ``da`` (dose in Gy, dims ``("z", "y", "x")``) as an RT Dose file.

    Parameters
    ----------
    da : xarray.DataArray
        Non-negative finite dose with dcmxr geometry; ``units`` must be Gy
        (or absent).
    path : str or Path
        Output file (overwritten).
    reference : path or pydicom.Dataset, optional
        Source of patient, study and frame of reference (RT Plan, CT, dose);
        when it is an RT Plan it is also the referenced plan.
    plan : path or pydicom.Dataset, optional
        The RT Plan to reference when ``reference`` is not one. Default: the
        plan named by ``da.attrs["referenced_rt_plan_sop_instance_uid"]``.
    dose_type : str
        PHYSICAL, EFFECTIVE or ERROR; default ``da.attrs["dose_type"]`` or PHYSICAL.
    summation_type : str
        PLAN, FRACTION, BEAM, ...; default ``da.attrs["dose_summation_type"]`` or PLAN.
    bits : {32, 16}
        Stored integer size.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ExportError
        Wrong dims or units, NaN or negative dose, irregular in-plane grid,
        tilted stack, no referenced plan for a plan-based summation type.
    """
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    if tuple(d for d in da.dims) != ("z", "y", "x"):
        raise ExportError(f"to_rtdose needs dims ('z', 'y', 'x'), got {da.dims}")
    units = da.attrs.get("units")
    if units not in (None, "Gy", "gray"):
        raise ExportError(f"dose units are {units!r}; an RT Dose here is written in Gy")
    if bits not in (16, 32):
        raise ExportError(f"bits must be 16 or 32, got {bits}")
    ipp, iop, spacing, offsets = _geometry(da)
    values = np.asarray(da.values, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ExportError("the dose has NaN or infinite values (e.g. outside a resampled grid); fill them first")
    if values.min() < 0:
        raise ExportError(f"the dose has negative values (min {values.min()}); RT Dose stores unsigned doses")
    top = float(values.max())
    maxint = 2**bits - 1
    scaling = top / maxint if top > 0 else 1.0
    stored = np.rint(values / scaling).astype(np.uint32 if bits == 32 else np.uint16)

    ref = _load(reference)
    plan_ds = _load(plan)
    if ref is not None and str(ref.get("SOPClassUID", "")) in RTPLAN_SOP_CLASSES and plan_ds is None:
        plan_ds = ref
    ds = pydicom.Dataset()
    now = datetime.datetime.now()
    for kw in _COPIED:
        if ref is not None and kw in ref:
            setattr(ds, kw, ref.data_element(kw).value)
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = RTDOSE_SOP_CLASS
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "RTDOSE"
    for kw, default in (("PatientName", ""), ("PatientID", ""), ("PatientBirthDate", ""), ("PatientSex", ""),
                        ("StudyDate", now.strftime("%Y%m%d")), ("StudyTime", now.strftime("%H%M%S")),
                        ("ReferringPhysicianName", ""), ("StudyID", ""), ("AccessionNumber", ""),
                        ("PositionReferenceIndicator", "")):
        if kw not in ds:
            setattr(ds, kw, default)
    if "StudyInstanceUID" not in ds:
        ds.StudyInstanceUID = da.attrs.get("study_instance_uid") or generate_uid()
    if "FrameOfReferenceUID" not in ds:
        ds.FrameOfReferenceUID = da.attrs.get("frame_of_reference_uid") or generate_uid()
    elif da.attrs.get("frame_of_reference_uid") and da.attrs["frame_of_reference_uid"] != ds.FrameOfReferenceUID:
        raise ExportError(f"the dose is in frame of reference {da.attrs['frame_of_reference_uid']!r} but the "
                          f"reference is in {ds.FrameOfReferenceUID!r}")
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = 1
    ds.OperatorsName = ""
    ds.SeriesDescription = series_description
    ds.Manufacturer = "dcmxr"
    ds.InstanceNumber = 1
    ds.ContentDate = now.strftime("%Y%m%d")
    ds.ContentTime = now.strftime("%H%M%S")
    ds.ImagePositionPatient = [round(v, 6) for v in ipp]
    ds.ImageOrientationPatient = [round(v, 8) for v in iop]
    ds.PixelSpacing = [round(v, 6) for v in spacing]
    ds.SliceThickness = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.NumberOfFrames = int(stored.shape[0])
    ds.FrameIncrementPointer = pydicom.tag.Tag("GridFrameOffsetVector")
    ds.Rows, ds.Columns = int(stored.shape[1]), int(stored.shape[2])
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    ds.DoseUnits = "GY"
    ds.DoseType = dose_type or da.attrs.get("dose_type") or "PHYSICAL"
    ds.DoseSummationType = summation_type or da.attrs.get("dose_summation_type") or "PLAN"
    ds.GridFrameOffsetVector = [round(v, 6) for v in offsets]
    ds.DoseGridScaling = f"{scaling:.10g}"[:16]
    scaling_written = float(ds.DoseGridScaling)
    if scaling_written != scaling:  # keep values self-consistent with the written DS string
        stored = np.rint(values / scaling_written).clip(0, maxint).astype(stored.dtype)
    plan_uid = plan_class = None
    if plan_ds is not None:
        plan_uid, plan_class = str(plan_ds.SOPInstanceUID), str(plan_ds.SOPClassUID)
    elif da.attrs.get("referenced_rt_plan_sop_instance_uid"):
        plan_uid = da.attrs["referenced_rt_plan_sop_instance_uid"]
        plan_class = da.attrs.get("referenced_rt_plan_sop_class_uid") or RTPLAN_SOP_CLASSES[0]
    if plan_uid:
        item = pydicom.Dataset()
        item.ReferencedSOPClassUID = plan_class
        item.ReferencedSOPInstanceUID = plan_uid
        ds.ReferencedRTPlanSequence = [item]
    elif ds.DoseSummationType in ("PLAN", "MULTI_PLAN", "FRACTION", "BEAM", "BRACHY", "FRACTION_SESSION",
                                  "BEAM_SESSION", "BRACHY_SESSION", "CONTROL_POINT"):
        raise ExportError(f"DoseSummationType {ds.DoseSummationType} requires a Referenced RT Plan: pass "
                          f"reference=<RT Plan> or plan=<RT Plan>")
    ds.PixelData = stored.astype(stored.dtype.newbyteorder("<"), copy=False).tobytes()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    path = Path(path)
    ds.save_as(path, enforce_file_format=True)
    return path
