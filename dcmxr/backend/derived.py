"""Read derived objects back: SEG -> masks, Parametric Map -> float map, SR -> tidy table.

``open_seg`` reads BINARY and FRACTIONAL volume SEGs stored uncompressed
straight from their Pixel Data, lazily (:mod:`dcmxr.backend.seg_frames`: the
header parsed once, frames mapped through their functional groups, bits
unpacked with numpy, geometry from highdicom's own stacking functions). Other
SEGs (LABELMAP, TILED slides, compressed, frames without positions, in-memory
datasets) and ``open_paramap`` let highdicom decode the frames and sort them
into a volume (``get_volume``), then hand the result to
:func:`dcmxr.interop.from_highdicom_volume`, so the arrays carry dcmxr's
geometry (``x``/``y``/``z`` coordinates with ``direction`` attrs, LPS).
``open_sr`` walks the SR content tree with pydicom and returns one row per
numeric measurement. highdicom is imported inside the functions
(``dcmxr[export]``). Parametric maps and SRs are small and read eagerly.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AmbiguousSelectionError, InvalidDicomError, NotDicomError, missing_dependency

__all__ = ["open_seg", "open_paramap", "open_sr"]


def _hd():
    try:
        import highdicom as hd
    except ImportError as exc:  # pragma: no cover
        raise missing_dependency("highdicom", "export") from exc
    return hd


def _read(path: Any, what: str, sop_classes: tuple[str, ...], stop_before_pixels: bool = False) -> Any:
    import pydicom

    if isinstance(path, pydicom.Dataset):
        ds = path
        uid = str(ds.get("SOPClassUID", ""))
        if not any(uid.startswith(c) for c in sop_classes):
            raise InvalidDicomError(f"the dataset is not a {what} (SOPClassUID {uid or 'missing'})")
        return ds
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{what}: no such file {p}")
    try:
        ds = pydicom.dcmread(p, stop_before_pixels=stop_before_pixels)
    except pydicom.errors.InvalidDicomError as exc:
        raise NotDicomError(f"{p} is not a DICOM file: {exc}") from exc
    uid = str(ds.get("SOPClassUID", ""))
    if not any(uid.startswith(c) for c in sop_classes):
        raise InvalidDicomError(f"{p} is not a {what} (SOPClassUID {uid or 'missing'})")
    return ds


_IDENT = {"Modality": "modality", "PatientID": "patient_id", "StudyInstanceUID": "study_instance_uid",
          "SeriesInstanceUID": "series_instance_uid", "SOPInstanceUID": "sop_instance_uid",
          "SOPClassUID": "sop_class_uid", "FrameOfReferenceUID": "frame_of_reference_uid",
          "SeriesDescription": "series_description", "SeriesNumber": "series_number"}


def _ident_attrs(ds: Any) -> dict:
    attrs: dict = {}
    for kw, name in _IDENT.items():
        v = ds.get(kw)
        if v not in (None, ""):
            attrs[name] = int(v) if kw == "SeriesNumber" else str(v)
    return attrs


def _place_like(da: Any, like: Any, method: str) -> Any:
    """Put ``da`` (z, y, x[, segment]) on ``like``'s grid: exact when aligned, else resampled."""
    import xarray as xr

    from ..errors import ExportError
    from ..export.seg import _with_zyx, place_on_source

    like = _with_zyx(like)
    try:
        place = place_on_source(da, like, argument="seg")
    except ExportError:
        keep = {k: v for k, v in da.coords.items() if k not in ("x", "y", "z") and "z" not in v.dims}
        out = da.dcm.resample_like(like, method=method, fill_value=0).compute()
        return out.assign_coords(keep)
    lead = [d for d in da.dims if d not in ("z", "y", "x")]
    da = da.transpose(*lead, "z", "y", "x")
    shape = tuple(da.sizes[d] for d in lead) + tuple(like.sizes[d] for d in ("z", "y", "x"))
    out = np.zeros(shape, dtype=da.dtype)
    out[(Ellipsis, *np.ix_(place.z, place.y, place.x))] = np.asarray(da.values)
    coords = {d: da.coords[d] for d in lead if d in da.coords}
    coords.update({k: v for k, v in da.coords.items() if set(v.dims) <= set(lead)})
    for ax in ("z", "y", "x"):
        coords[ax] = like.coords[ax]
    return xr.DataArray(out, dims=(*lead, "z", "y", "x"), coords=coords, attrs=dict(da.attrs), name=da.name)


def open_seg(path: str | Path, like: Any = None, *, combine: bool | None = None) -> Any:
    """Read a DICOM Segmentation as masks or labels with dcmxr geometry.

    Parameters
    ----------
    path : str, Path or pydicom.Dataset
        A SEG file (Segmentation or Label Map Segmentation Storage), or one in memory
        (e.g. what :func:`dcmxr.export.seg.to_seg` returns).
    like : xarray.DataArray, optional
        Put the result on this array's grid (exactly when the SEG's voxels are
        ``like``'s voxels, e.g. its source; by nearest-neighbour resampling
        otherwise). Not for slide (TILED) SEGs.
    combine : bool, optional
        True: one integer label array (value = segment number); False: one
        mask per segment along a leading ``segment`` dim. Default: True for
        LABELMAP SEGs, False for BINARY and FRACTIONAL.

    Returns
    -------
    xarray.DataArray
        Volume SEGs: dims ``("segment", "z", "y", "x")`` (bool for BINARY,
        float in [0, 1] for FRACTIONAL) or ``("z", "y", "x")`` labels; the
        ``segment`` coordinate holds segment numbers and ``segment_label`` the
        labels. Masks of an uncompressed BINARY / FRACTIONAL SEG are
        Dask-backed and read frame by frame from the file when computed
        (one chunk per segment and up to 64 MiB of slices). Slide
        (TILED_FULL / TILED_SPARSE) SEGs: the total pixel matrix, dims
        ``("segment", "y", "x")`` or ``("y", "x")``, coordinates = pixel
        centres in mm from the matrix's top-left corner (slide frame, no
        ``direction``). SEGs whose frames have no patient position (of a
        radiograph): dims ``("segment", "frame", "y", "x")``, one frame per
        source instance (``source_sop_instance_uid`` coordinate), no geometry.

    Raises
    ------
    InvalidDicomError
        Not a SEG.
    AmbiguousSelectionError
        ``combine=True`` on overlapping segments.
    """
    hd = _hd()
    import pydicom

    classes = ("1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.66.7")
    if not isinstance(path, pydicom.Dataset):
        fast = _open_seg_direct(path, like, combine, classes)
        if fast is not None:
            return fast
    if isinstance(path, pydicom.Dataset):
        seg = hd.seg.Segmentation.from_dataset(_read(path, "Segmentation", classes), copy=False)
    else:  # the same reader as highdicom.seg.segread; the header is parsed once
        if not Path(path).exists():
            raise FileNotFoundError(f"Segmentation: no such file {path}")
        try:
            seg = hd.seg.Segmentation.from_file(path)
        except Exception as exc:
            _read(path, "Segmentation", classes, stop_before_pixels=True)  # raises the clear error
            raise InvalidDicomError(f"{path}: highdicom cannot read this SEG: {exc}") from exc
    ds = seg
    where = "the SEG dataset" if isinstance(path, pydicom.Dataset) else str(path)
    seg_type = str(getattr(seg.segmentation_type, "value", seg.segmentation_type))
    items = [s for s in seg.SegmentSequence if int(s.SegmentNumber) > 0]
    numbers = [int(s.SegmentNumber) for s in items]
    labels = [str(s.get("SegmentLabel", "")) for s in items]
    if combine is None:
        combine = seg_type == "LABELMAP"
    attrs = _ident_attrs(ds)
    attrs["segmentation_type"] = seg_type
    kw = dict(segment_numbers=numbers, combine_segments=bool(combine), relabel=False)
    if seg_type == "FRACTIONAL" and not combine:
        kw["rescale_fractional"] = True

    if "TotalPixelMatrixRows" in ds and like is not None:
        raise InvalidDicomError(f"{where} is a slide (TILED) SEG: like= places volume SEGs only")
    try:
        if "TotalPixelMatrixRows" in ds:
            arr = np.asarray(seg.get_total_pixel_matrix(**kw))
            return _slide_seg(ds, arr, combine, numbers, labels, seg_type, attrs)
        vol = seg.get_volume(**kw)
    except (ValueError, RuntimeError) as exc:
        if combine and "overlap" in str(exc).lower():
            raise AmbiguousSelectionError(
                f"{where}: segments overlap, so one label array is ambiguous; use combine=False") from exc
        raise InvalidDicomError(f"{where}: cannot arrange the SEG frames into a volume: {exc}") from exc
    except Exception:  # highdicom raises sqlite errors on frames without positions (projection images)
        return _by_source_instance(seg, combine, numbers, labels, seg_type, attrs, where)
    from ..interop import from_highdicom_volume

    da = from_highdicom_volume(vol, name="labels" if combine else "mask")
    if not combine:
        da = da.rename({da.dims[0]: "segment"}) if da.dims[0] != "segment" else da
        da = da.assign_coords(segment=("segment", numbers), segment_label=("segment", labels))
        if seg_type != "FRACTIONAL":
            da = da.copy(data=np.asarray(da.values).view(bool)) if da.dtype == np.uint8 else da.astype(bool)
    da.attrs.update(attrs)
    if like is not None:
        da = _place_like(da, like, "linear" if seg_type == "FRACTIONAL" and not combine else "nearest")
    return da


def _open_seg_direct(path: Any, like: Any, combine: bool | None, classes: tuple[str, ...]) -> Any:
    """BINARY / FRACTIONAL volume SEGs read straight from Pixel Data (lazily); None: use highdicom."""
    import pydicom

    from . import seg_frames

    if not Path(path).exists():
        raise FileNotFoundError(f"Segmentation: no such file {path}")
    try:
        p, ds = seg_frames.plan(path)
    except (pydicom.errors.InvalidDicomError, AttributeError, KeyError, ValueError, TypeError, IndexError):
        return None  # highdicom's path gives the precise error
    if p is None or not any(str(ds.get("SOPClassUID", "")).startswith(c) for c in classes):
        return None
    seg_type = "BINARY" if p.binary else "FRACTIONAL"
    attrs = dict(_ident_attrs(ds), segmentation_type=seg_type)
    if combine:
        if not p.binary:
            return None  # combining fractional segments: highdicom's rules
        da, _ = seg_frames.labels(p)
        if da is None:
            raise AmbiguousSelectionError(
                f"{path}: segments overlap, so one label array is ambiguous; use combine=False")
    else:
        da = seg_frames.masks(p)
    da.attrs.update(attrs)
    if like is not None:
        da = _place_like(da, like, "linear" if seg_type == "FRACTIONAL" and not combine else "nearest")
    return da


def _by_source_instance(seg: Any, combine: bool, numbers: list, labels: list, seg_type: str, attrs: dict,
                        path: Any) -> Any:
    """SEGs without patient positions (e.g. of a radiograph): one frame per source instance."""
    import xarray as xr

    uids = [str(u[2]) for u in seg.get_source_image_uids()]
    try:
        arr = np.asarray(seg.get_pixels_by_source_instance(
            source_sop_instance_uids=uids, segment_numbers=numbers, combine_segments=bool(combine),
            relabel=False))
    except Exception as exc:
        raise InvalidDicomError(f"{path}: cannot arrange the SEG frames by position or by source "
                                f"instance: {exc}") from exc
    coords: dict = {"source_sop_instance_uid": ("frame", uids)}
    attrs = dict(attrs, geometry="none (frames without patient positions)")
    if combine:
        return xr.DataArray(arr, dims=("frame", "y", "x"), coords=coords, attrs=attrs, name="labels")
    arr = np.moveaxis(arr, -1, 0)
    if seg_type != "FRACTIONAL":
        arr = arr.view(bool) if arr.dtype == np.uint8 else arr.astype(bool)
    coords.update(segment=("segment", numbers), segment_label=("segment", labels))
    return xr.DataArray(arr, dims=("segment", "frame", "y", "x"), coords=coords, attrs=attrs, name="mask")


def _slide_seg(ds: Any, arr: np.ndarray, combine: bool, numbers: list, labels: list, seg_type: str,
               attrs: dict) -> Any:
    import xarray as xr

    spacing = [1.0, 1.0]
    try:
        pm = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
        spacing = [float(v) for v in pm.PixelSpacing]
    except (AttributeError, IndexError, KeyError):
        pass
    ny, nx = arr.shape[:2]
    coords = {"y": ("y", (np.arange(ny) + 0.5) * spacing[0], {"units": "mm"}),
              "x": ("x", (np.arange(nx) + 0.5) * spacing[1], {"units": "mm"})}
    attrs = dict(attrs, coordinate_system="SLIDE")
    if combine:
        return xr.DataArray(arr, dims=("y", "x"), coords=coords, attrs=attrs, name="labels")
    arr = np.moveaxis(arr, -1, 0)
    if seg_type != "FRACTIONAL":
        arr = arr.view(bool) if arr.dtype == np.uint8 else arr.astype(bool)
    coords.update(segment=("segment", numbers), segment_label=("segment", labels))
    return xr.DataArray(arr, dims=("segment", "y", "x"), coords=coords, attrs=attrs, name="mask")


def _code_triple(item: Any) -> tuple[str, str, str]:
    return (str(item.get("CodeValue", item.get("LongCodeValue", item.get("URNCodeValue", "")))),
            str(item.get("CodingSchemeDesignator", "")), str(item.get("CodeMeaning", "")))


def open_paramap(path: str | Path) -> Any:
    """Read a Parametric Map as a float DataArray in real-world units.

    Parameters
    ----------
    path : str or Path
        A Parametric Map Storage file (integer, float or double float pixels).

    Returns
    -------
    xarray.DataArray
        float64, dims ``("z", "y", "x")`` with dcmxr geometry; values after the
        first Real World Value Mapping; ``attrs["units"]`` a pint string from
        the mapping's UCUM unit (:func:`dcmxr.units.ucum_to_pint`), plus
        ``ucum``, ``quantity`` (code meaning) and ``quantity_code``.

    Raises
    ------
    InvalidDicomError
        Not a Parametric Map, or frames that do not form a volume.
    """
    hd = _hd()
    ds = _read(path, "Parametric Map", ("1.2.840.10008.5.1.4.1.1.30",))
    pm = hd.pm.ParametricMap.from_dataset(ds, copy=False)
    try:
        vol = pm.get_volume(dtype=np.float64, apply_real_world_transform=True, allow_missing_positions=True)
    except Exception as exc:
        raise InvalidDicomError(f"{path}: cannot arrange the map's frames into a volume: {exc}") from exc
    from ..interop import from_highdicom_volume
    from ..units import ucum_to_pint

    da = from_highdicom_volume(vol, name="map")
    attrs = _ident_attrs(ds)
    rwv = _first_rwv(ds)
    if rwv is not None:
        if "MeasurementUnitsCodeSequence" in rwv:
            code = _code_triple(rwv.MeasurementUnitsCodeSequence[0])
            attrs["ucum"] = code[0]
            try:
                attrs["units"] = ucum_to_pint(code[0])
            except ValueError:
                warnings.warn(f"{path}: UCUM unit {code[0]!r} has no pint equivalent; units left out",
                              stacklevel=2)
        for q in rwv.get("QuantityDefinitionSequence", []):
            if "ConceptCodeSequence" in q:
                value, scheme, meaning = _code_triple(q.ConceptCodeSequence[0])
                attrs["quantity"] = meaning
                attrs["quantity_code"] = f"{scheme}:{value}"
                break
        if "LUTLabel" in rwv:
            attrs["long_name"] = str(rwv.LUTLabel)
    da.attrs.update(attrs)
    return da


def _first_rwv(ds: Any) -> Any:
    for groups in (ds.get("SharedFunctionalGroupsSequence", []), ds.get("PerFrameFunctionalGroupsSequence", [])[:1]):
        for g in groups:
            for pvt in g.get("RealWorldValueMappingSequence", []):
                return pvt
    return None


# ------------------------------------------------------------------ SR
_GROUP = ("125007", "DCM")        # Measurement Group
_TRACK_ID = ("112039", "DCM")     # Tracking Identifier
_TRACK_UID = ("112040", "DCM")    # Tracking Unique Identifier
_FINDING = ("121071", "DCM")      # Finding
_SITES = {("363698007", "SCT"), ("G-C0E3", "SRT")}  # Finding Site
_DERIVATION = ("121401", "DCM")


def _concept(item: Any) -> tuple[str, str, str]:
    seq = item.get("ConceptNameCodeSequence")
    return _code_triple(seq[0]) if seq else ("", "", "")


def open_sr(path: str | Path) -> Any:
    """Read the numeric measurements of a Structured Report as a tidy table.

    Parameters
    ----------
    path : str or Path
        An SR file (any SR storage class; TID 1500 reports get their
        measurement groups, tracking identifiers and finding sites filled in).

    Returns
    -------
    pandas.DataFrame
        One row per NUM content item: ``group`` (1-based measurement group,
        0 outside groups), ``tracking_id``, ``tracking_uid``, ``finding``,
        ``finding_site``, ``concept``, ``concept_code``, ``derivation``,
        ``value`` (float), ``unit`` (the unit's code value, normally
        UCUM), ``units`` (pint string for UCUM units, else None),
        ``referenced_segment``, ``referenced_sop_instance_uid``.
        ``attrs["references"]``: the evidence (study, series, SOP class and
        instance UIDs) listed in the document; ``attrs["title"]``.

    Raises
    ------
    InvalidDicomError
        Not an SR document.
    """
    import pandas as pd

    from ..units import ucum_to_pint

    ds = _read(path, "Structured Report", ("1.2.840.10008.5.1.4.1.1.88.",))
    rows: list[dict] = []
    state = {"group": 0}

    def walk(items: Any, ctx: dict) -> None:
        for item in items:
            vt = str(item.get("ValueType", ""))
            value, scheme, meaning = _concept(item)
            if vt == "CONTAINER" and (value, scheme) == _GROUP:
                state["group"] += 1
                sub = dict(ctx, group=state["group"], tracking_id=None, tracking_uid=None, finding=None,
                           finding_site=None, referenced_segment=None, referenced_sop_instance_uid=None)
                children = list(item.get("ContentSequence", []))
                for ch in children:  # group-level context first, then the NUMs
                    _collect_context(ch, sub)
                walk(children, sub)
                continue
            if vt == "NUM" and "MeasuredValueSequence" in item:
                mv = item.MeasuredValueSequence[0]
                unit, scheme_u = "", ""
                if "MeasurementUnitsCodeSequence" in mv:
                    unit, scheme_u, _ = _code_triple(mv.MeasurementUnitsCodeSequence[0])
                try:
                    units = ucum_to_pint(unit) if unit and scheme_u == "UCUM" else None
                except ValueError:
                    units = None
                derivation = None
                for ch in item.get("ContentSequence", []):
                    if (_concept(ch)[:2]) == _DERIVATION and "ConceptCodeSequence" in ch:
                        derivation = _code_triple(ch.ConceptCodeSequence[0])[2]
                rows.append(dict(ctx, concept=meaning, concept_code=f"{scheme}:{value}", derivation=derivation,
                                 value=float(mv.NumericValue), unit=unit, units=units))
            if "ContentSequence" in item and vt != "NUM":
                walk(item.ContentSequence, ctx)

    base = dict(group=0, tracking_id=None, tracking_uid=None, finding=None, finding_site=None,
                referenced_segment=None, referenced_sop_instance_uid=None)
    walk(ds.get("ContentSequence", []), base)
    cols = ["group", "tracking_id", "tracking_uid", "finding", "finding_site", "concept", "concept_code",
            "derivation", "value", "unit", "units", "referenced_segment", "referenced_sop_instance_uid"]
    table = pd.DataFrame(rows, columns=cols)
    refs = []
    for key in ("CurrentRequestedProcedureEvidenceSequence", "PertinentOtherEvidenceSequence"):
        for study in ds.get(key, []):
            for series in study.get("ReferencedSeriesSequence", []):
                for sop in series.get("ReferencedSOPSequence", []):
                    refs.append({"study_instance_uid": str(study.get("StudyInstanceUID", "")),
                                 "series_instance_uid": str(series.get("SeriesInstanceUID", "")),
                                 "sop_class_uid": str(sop.ReferencedSOPClassUID),
                                 "sop_instance_uid": str(sop.ReferencedSOPInstanceUID)})
    table.attrs["references"] = refs
    table.attrs["title"] = _concept(ds)[2]
    return table


def _collect_context(item: Any, ctx: dict) -> None:
    vt = str(item.get("ValueType", ""))
    code = _concept(item)[:2]
    if vt == "TEXT" and code == _TRACK_ID:
        ctx["tracking_id"] = str(item.TextValue)
    elif vt == "UIDREF" and code == _TRACK_UID:
        ctx["tracking_uid"] = str(item.UID)
    elif vt == "CODE" and code == _FINDING and "ConceptCodeSequence" in item:
        ctx["finding"] = _code_triple(item.ConceptCodeSequence[0])[2]
    elif vt == "CODE" and code in _SITES and "ConceptCodeSequence" in item:
        ctx["finding_site"] = _code_triple(item.ConceptCodeSequence[0])[2]
    elif vt == "IMAGE" and "ReferencedSOPSequence" in item:
        ref = item.ReferencedSOPSequence[0]
        ctx["referenced_sop_instance_uid"] = str(ref.ReferencedSOPInstanceUID)
        if "ReferencedSegmentNumber" in ref:
            ctx["referenced_segment"] = int(ref.ReferencedSegmentNumber)
