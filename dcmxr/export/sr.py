"""TID 1500 Measurement Report (Comprehensive 3D SR) of statistics inside segments.

One measurement group per segment: tracking identifier and UID (the SEG's
segment tracking UID when it has one), finding (the segment's property type),
optional finding site, a reference to the segment in the SEG, and NUM
measurements with UCUM units. The statistics are Dask reductions of the image
inside each mask, computed together in one pass. highdicom builds the
document (``dcmxr[export]``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AmbiguousSelectionError, DcmxrError, ExportError, missing_dependency
from .codes import coded, measurement_code, segment_codes

__all__ = ["measurement_report", "compute_measurements"]

#: Procedure reported by default, per modality (LOINC).
PROCEDURES: dict[str, tuple[str, str, str]] = {
    "CT": ("25045-6", "LN", "CT unspecified body region"),
    "MR": ("25056-3", "LN", "MRI unspecified body region"),
    "PT": ("44136-0", "LN", "PET unspecified body region"),
}
_DEFAULT_PROCEDURE = ("363679005", "SCT", "Imaging procedure")

_INTENSITY = ("mean", "min", "max", "std", "median")


def _hd():
    try:
        import highdicom as hd
    except ImportError as exc:  # pragma: no cover
        raise missing_dependency("highdicom", "export") from exc
    return hd


def compute_measurements(image: Any, masks: Any, measurements: Sequence[str],
                         numbers: Sequence[int] | None = None) -> list[dict[str, float]]:
    """Statistics of ``image`` inside each mask, computed in one Dask pass.

    Parameters
    ----------
    image : xarray.DataArray
        ``(z, y, x)`` with dcmxr geometry (lazy is fine).
    masks : xarray.DataArray
        ``("segment", z, y, x)`` on the image's grid (bool, or fractional: > 0.5 counts),
        or ``(z, y, x)`` integer labels with the segment numbers in ``masks["segment"]``
        (a non-dim coordinate) or ``numbers``.
    measurements : sequence of str
        ``volume`` (mm3), ``mean``, ``min``, ``max``, ``std``, ``median``.

    Returns
    -------
    list of dict
        One ``{name: value}`` per segment; intensity statistics of an empty
        segment are left out.
    """
    import dask
    import dask.array as dska

    voxel_mm3 = float(abs(np.linalg.det(image.dcm.affine[:3, :3])))
    img = image.transpose("z", "y", "x").data
    if not isinstance(img, dska.Array):
        img = dska.from_array(np.asarray(img), chunks=(max(1, image.sizes["z"] // 4), -1, -1))
    if "segment" in masks.dims:
        m_all = masks.transpose("segment", "z", "y", "x").values
        if m_all.dtype.kind == "f":
            m_all = m_all > 0.5
        per_segment = [dska.from_array(m_all[k].astype(bool, copy=False), chunks=img.chunks)
                       for k in range(m_all.shape[0])]
    else:  # labels: one byte per voxel, each mask made lazily
        lab = dska.from_array(masks.transpose("z", "y", "x").values, chunks=img.chunks)
        per_segment = [lab == int(n) for n in numbers]
    lazy = []
    for m in per_segment:
        vals = img[m]  # lazy selection of the voxels inside the mask
        row = {"__count": m.sum()}
        for name in measurements:
            if name == "mean":
                row[name] = vals.mean()
            elif name == "min":
                row[name] = dska.where(m, img, np.inf).min()
            elif name == "max":
                row[name] = dska.where(m, img, -np.inf).max()
            elif name == "std":
                row[name] = vals.std()
            elif name == "median":
                row[name] = vals
        lazy.append(row)
    with np.errstate(invalid="ignore", divide="ignore"):
        (done,) = dask.compute(lazy)
    out = []
    for row in done:
        count = int(row.pop("__count"))
        res = {}
        for name in measurements:
            if name == "volume":
                res[name] = count * voxel_mm3
            elif count and name == "median":
                res[name] = float(np.median(row[name]))
            elif count:
                res[name] = float(np.ravel(row[name])[0])
        out.append(res)
    return out


def _seg_dataset(seg: Any, image: Any, segments: Any, seg_path: Any) -> Any:
    import pydicom
    import xarray as xr

    if isinstance(seg, pydicom.Dataset):
        return seg
    if isinstance(seg, (str, Path)):
        try:
            return pydicom.dcmread(seg)
        except (OSError, pydicom.errors.InvalidDicomError) as exc:
            raise ExportError(f"seg: cannot read {seg}: {exc}") from exc
    if isinstance(seg, (xr.DataArray, xr.Dataset)):
        from .seg import to_seg

        return to_seg(seg, image, segments, path=seg_path)
    raise ExportError(f"seg must be a SEG (path or dataset) or masks (DataArray/Dataset), not {type(seg).__name__}")


def measurement_report(
    image: Any,
    seg: Any,
    measurements: Sequence[str] = ("volume", "mean", "min", "max", "std"),
    *,
    segments: Any = None,
    finding_sites: Mapping[int, str | tuple[str, str, str]] | None = None,
    path: str | Path | None = None,
    seg_path: str | Path | None = None,
    procedure: tuple[str, str, str] | None = None,
    series_description: str = "Measurements",
    series_number: int = 500,
    manufacturer: str = "dcmxr",
) -> Any:
    """Write a TID 1500 Measurement Report of the image inside each segment.

    Parameters
    ----------
    image : xarray.DataArray
        The source image (opened by dcmxr: its headers are the SR's evidence),
        ``(z, y, x)``; statistics use its values and ``attrs["units"]``.
    seg : path, pydicom.Dataset, or masks
        A SEG of this image (file or dataset, e.g. from ``to_seg``), or masks
        accepted by :func:`dcmxr.export.seg.to_seg` (then a SEG is built, and
        written to ``seg_path`` when given, so the SR's reference resolves).
    measurements : sequence of str
        From :data:`dcmxr.export.codes.MEASUREMENT_CODES`: ``volume`` (mm3),
        ``mean``, ``min``, ``max``, ``std``, ``median`` (image units).
    segments : optional
        Segment descriptions when ``seg`` is masks (see ``to_seg``).
    finding_sites : dict, optional
        ``{segment number: name or (value, scheme, meaning)}`` (names from
        ``SEGMENT_CODES``).
    path : path, optional
        Where to write the SR.
    procedure : (value, scheme, meaning), optional
        Procedure reported; default from the modality (LOINC CT/MR/PET unspecified body region).
    series_description, series_number, manufacturer
        Identification of the SR series.

    Returns
    -------
    highdicom.sr.Comprehensive3DSR

    Raises
    ------
    ExportError
        Unknown measurements or finding sites, image units without a UCUM
        code, a SEG that does not belong to the image, bad masks (see ``to_seg``).
    """
    import xarray as xr

    from ..backend.derived import open_seg
    from .paramap import ucum_of
    from .seg import _with_zyx, source_datasets

    hd = _hd()
    if isinstance(measurements, str):
        measurements = (measurements,)
    codes_ = {m: measurement_code(m) for m in measurements}
    if not isinstance(image, xr.DataArray):
        raise ExportError(f"image must be a dcmxr DataArray, not {type(image).__name__}")
    unit = None
    if any(m in _INTENSITY for m in measurements):
        units = image.attrs.get("units")
        unit = ucum_of(units, "image.attrs['units']") if units else ("1", "no units")
    sites = {}
    for number, site in (finding_sites or {}).items():
        triple = site if isinstance(site, tuple) else segment_codes(site, "finding_sites")[1]
        sites[int(number)] = triple
    image = _with_zyx(image)
    seg_ds = _seg_dataset(seg, image, segments, seg_path)
    numbers = [int(s.SegmentNumber) for s in seg_ds.SegmentSequence if int(s.SegmentNumber) > 0]
    try:
        try:  # non-overlapping BINARY / LABELMAP: one label array (1 byte per voxel)
            if str(seg_ds.SegmentationType) == "FRACTIONAL":
                raise AmbiguousSelectionError("fractional")
            masks = open_seg(seg_ds, like=image, combine=True)
        except AmbiguousSelectionError:
            masks = open_seg(seg_ds, like=image, combine=False)
            numbers = [int(n) for n in masks["segment"].values]
    except DcmxrError as exc:
        raise ExportError(f"seg: {exc}") from exc
    stats = compute_measurements(image, masks, list(measurements), numbers)
    evidence, _ = source_datasets(image, np.arange(image.sizes["z"]))
    items = {int(s.SegmentNumber): s for s in seg_ds.SegmentSequence}
    groups = []
    for number, res in zip(numbers, stats):
        item = items[int(number)]
        label = str(item.get("SegmentLabel", f"segment {number}"))
        tracking = hd.sr.TrackingIdentifier(uid=str(item.get("TrackingUID") or hd.UID()),
                                            identifier=str(item.get("TrackingID") or label))
        nums = []
        for name, value in res.items():
            u = ("mm3", "cubic millimeter") if name == "volume" else unit
            nums.append(hd.sr.Measurement(name=coded(codes_[name]), value=float(value),
                                          unit=coded((u[0], "UCUM", u[1]))))
        finding = item.SegmentedPropertyTypeCodeSequence[0]
        groups.append(hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=tracking,
            referenced_segment=hd.sr.ReferencedSegment.from_segmentation(seg_ds, int(number)),
            finding_type=hd.sr.CodedConcept.from_dataset(finding),
            finding_sites=[hd.sr.FindingSite(coded(sites[number]))] if number in sites else None,
            measurements=nums,
        ))
    proc = procedure or PROCEDURES.get(str(image.attrs.get("modality", "")), _DEFAULT_PROCEDURE)
    observer = hd.sr.ObserverContext(
        observer_type=coded(("121007", "DCM", "Device")),
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=hd.UID(), name="dcmxr", manufacturer_name=manufacturer))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=coded(proc),
        imaging_measurements=groups,
    )
    try:
        sr = hd.sr.Comprehensive3DSR(
            evidence=[seg_ds, *evidence],
            content=report,
            series_instance_uid=hd.UID(),
            series_number=int(series_number),
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer=manufacturer,
        )
    except (ValueError, TypeError) as exc:
        raise ExportError(f"highdicom refused the report: {exc}") from exc
    sr.SeriesDescription = str(series_description)[:64]
    if path is not None:
        sr.save_as(str(path), enforce_file_format=True)
    return sr
