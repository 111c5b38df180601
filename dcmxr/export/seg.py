"""Write a DICOM Segmentation (SEG) from masks aligned with a source series.

The mask is matched to the source through its coordinates: every mask voxel
centre must coincide with a source voxel centre (any subset of slices and any
in-plane crop is allowed; the frames are padded back to the source's frame
size). Masks on another grid are refused with a message pointing at
``resample_like``, or resampled when ``resample=True``. Lazy (Dask) masks are
computed one chunk of slices at a time into a compact array; values are
checked chunk by chunk, before highdicom builds anything and before any file
is written. highdicom (``dcmxr[export]``) builds the object; with ``path=``,
BINARY and FRACTIONAL SEGs of single-frame sources are streamed to the file
instead (:mod:`dcmxr.export.seg_stream`, highdicom still making the header).

:func:`place_on_source` and :func:`source_datasets` are shared with the
Parametric Map writer.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DcmxrError, ExportError, missing_dependency
from .codes import coded, segment_codes

__all__ = ["to_seg", "place_on_source", "source_datasets", "segment_descriptions", "Placement"]

#: Largest distance (mm) between a mask voxel centre and the source voxel centre it is matched to,
#: as a fraction of the source spacing along that axis.
ALIGN_RTOL: float = 1e-2

#: Tolerance on direction cosines when matching a mask to its source.
DIRECTION_ATOL: float = 1e-3

_AXES = ("z", "y", "x")


def _hd():
    try:
        import highdicom as hd
    except ImportError as exc:  # pragma: no cover
        raise missing_dependency("highdicom", "export") from exc
    return hd


# ------------------------------------------------------------------ source and alignment
def _as_source(source: Any) -> Any:
    """A dcmxr DataArray for ``source`` (a DataArray, or paths opened with open_series)."""
    import xarray as xr

    if isinstance(source, xr.DataArray):
        return source
    if isinstance(source, (xr.Dataset,)):
        raise ExportError("source: pass the source image DataArray (or its paths), not a Dataset")
    if isinstance(source, (str, Path)) or (isinstance(source, Sequence) and source
                                            and all(isinstance(p, (str, Path)) for p in source)):
        from ..backend.api import open_series

        try:
            return open_series(source)
        except (DcmxrError, FileNotFoundError) as exc:
            raise ExportError(f"source: could not open {source!r} as one series: {exc}") from exc
    raise ExportError(f"source must be a dcmxr DataArray or DICOM paths, not {type(source).__name__}")


def _with_zyx(da: Any) -> Any:
    """Expand a scalar spatial coordinate (left by ``isel(z=k)``) back to a length-1 dim."""
    for ax in _AXES:
        if ax in da.coords and ax not in da.dims:
            attrs = dict(da[ax].attrs)
            da = da.expand_dims(ax)
            da[ax].attrs.update(attrs)
    return da


@dataclass(frozen=True)
class Placement:
    """Where a mask sits in its source: source index of every mask z, y and x."""

    z: np.ndarray
    y: np.ndarray
    x: np.ndarray


def _match_axis(mvals: np.ndarray, svals: np.ndarray, ax: str) -> np.ndarray | None:
    if len(svals) > 1:
        step = float(np.median(np.abs(np.diff(svals))))
    else:
        step = 1.0
    tol = max(ALIGN_RTOL * step, 1e-4)
    order = np.argsort(svals)
    pos = np.searchsorted(svals[order], mvals)
    cand = np.clip(np.stack([pos - 1, pos]), 0, len(svals) - 1)
    dist = np.abs(svals[order][cand] - mvals)
    best = cand[np.argmin(dist, axis=0), np.arange(len(mvals))]
    if np.any(np.abs(svals[order][best] - mvals) > tol):
        return None
    idx = order[best]
    if len(np.unique(idx)) != len(idx):
        return None
    return idx


def place_on_source(mask: Any, source: Any, *, argument: str = "mask") -> Placement:
    """Match the voxel centres of ``mask`` to those of ``source``.

    Parameters
    ----------
    mask, source : xarray.DataArray
        dcmxr geometry on both (``x``/``y``/``z`` coordinates with ``direction`` attrs).

    Returns
    -------
    Placement
        Source indices of each mask index along z, y and x.

    Raises
    ------
    ExportError
        When the mask is not on (a subset of) the source grid; the message
        suggests ``mask.dcm.resample_like(source)`` or ``resample=True``.
    """
    from ..accessors.spatial import spatial

    try:
        ms, ss = spatial(mask), spatial(source)
    except DcmxrError as exc:
        raise ExportError(f"{argument}: {exc}") from exc
    fa, fb = mask.attrs.get("frame_of_reference_uid"), source.attrs.get("frame_of_reference_uid")
    if fa and fb and fa != fb:
        raise ExportError(f"{argument} is in frame of reference {fa!r} but the source is in {fb!r}")
    hint = (f"{argument} is not on the source's voxel grid ({{why}}); resample it first with "
            f"`{argument}.dcm.resample_like(source, method='nearest')`, or pass resample=True")
    idx = {}
    for k, ax in enumerate("xyz"):
        dm, ds = ms.directions[k], ss.directions[k]
        sign = float(np.dot(dm, ds))
        if abs(abs(sign) - 1) > DIRECTION_ATOL or (ax != "z" and sign < 0):
            raise ExportError(hint.format(why=f"the {ax} directions differ: {dm.tolist()} vs {ds.tolist()}"))
        mvals = ms.values[k] * np.sign(sign)
        found = _match_axis(mvals, ss.values[k], ax)
        if found is None:
            raise ExportError(hint.format(why=f"its {ax} positions are not source {ax} positions"))
        idx[ax] = found
    return Placement(z=idx["z"], y=idx["y"], x=idx["x"])


def _read_header(path: str) -> Any:
    """Header of a source file (in memory only; the file is never modified).

    An empty SpecificCharacterSet (seen in real CTs) means the default
    repertoire; highdicom rejects the empty value, so it is dropped here.
    """
    import pydicom

    ds = pydicom.dcmread(path, stop_before_pixels=True)
    if "SpecificCharacterSet" in ds and not str(ds.SpecificCharacterSet or "").strip():
        del ds.SpecificCharacterSet
    return ds


def source_datasets(source: Any, z_index: np.ndarray) -> tuple[list, list[int] | None]:
    """pydicom headers (no pixels) of the source frames at ``z_index``.

    Returns
    -------
    (datasets, frames)
        ``frames`` is None for a series of single-frame files (one dataset per
        z index, in order); for one enhanced multi-frame source it lists the
        0-based frame number of each z index and ``datasets`` holds that one file.

    Raises
    ------
    ExportError
        When the source's header table is unavailable or the frames span several
        multi-frame files.
    """
    try:
        table = source.dcm.headers
    except LookupError as exc:
        raise ExportError(f"source: {exc}") from exc
    src = _with_zyx(source)
    if "frame_index" in src.coords and table["sop_instance_uid"].nunique() == 1:  # one multi-frame file
        fidx = np.asarray(src["frame_index"].values).reshape(-1)
        return [_read_header(table["path"].iloc[0])], [int(fidx[i]) for i in z_index]
    uids = np.asarray(src["sop_instance_uid"].values).reshape(-1) if "sop_instance_uid" in src.coords else None
    if uids is None or len(uids) != src.sizes["z"]:
        raise ExportError("source: needs a per-slice 'sop_instance_uid' coordinate along z (open it with dcmxr)")
    by_uid: dict = {}
    for _, row in table.iterrows():
        by_uid.setdefault(row["sop_instance_uid"], []).append(row)
    wanted = [str(uids[i]) for i in z_index]
    out = []
    for uid in wanted:
        if uid not in by_uid:
            raise ExportError(f"source: no header row for SOPInstanceUID {uid}")
        out.append(_read_header(by_uid[uid][0]["path"]))
    return out, None


# ------------------------------------------------------------------ segments
def _description(number: int, spec: Any, algorithm: Any, argument: str) -> Any:
    hd = _hd()
    if isinstance(spec, hd.seg.SegmentDescription):
        if int(spec.SegmentNumber) != number:
            raise ExportError(f"{argument}: SegmentDescription {spec.SegmentLabel!r} has number "
                              f"{spec.SegmentNumber}, keyed as {number}")
        return spec
    if isinstance(spec, str):
        cat, typ = segment_codes(spec, argument)
        label = spec
    elif isinstance(spec, Mapping):
        try:
            cat, typ = spec["category"], spec["type"]
        except KeyError as exc:
            raise ExportError(f"{argument}[{number}]: a dict needs 'category' and 'type' "
                              f"(value, scheme, meaning) triples") from exc
        label = spec.get("label", typ[2] if isinstance(typ, tuple) else str(typ))
    else:
        raise ExportError(f"{argument}[{number}] must be a name, a dict or a SegmentDescription, "
                          f"not {type(spec).__name__}")
    kwargs: dict[str, Any] = {}
    if algorithm is None:
        kwargs["algorithm_type"] = hd.seg.SegmentAlgorithmTypeValues.MANUAL
    else:
        name, version = (algorithm, "unknown") if isinstance(algorithm, str) else tuple(algorithm)
        kwargs["algorithm_type"] = hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC
        kwargs["algorithm_identification"] = hd.AlgorithmIdentificationSequence(
            name=str(name), version=str(version),
            family=coded(("123110", "DCM", "Artificial Intelligence")))
    as_code = (lambda c: c if not isinstance(c, tuple) else coded(c))
    return hd.seg.SegmentDescription(
        segment_number=number, segment_label=str(label)[:64],
        segmented_property_category=as_code(cat), segmented_property_type=as_code(typ),
        tracking_uid=hd.UID(), tracking_id=str(label)[:64], **kwargs)


def segment_descriptions(segments: Any, algorithm: Any = None, argument: str = "segments") -> list:
    """highdicom ``SegmentDescription`` objects for ``{number: name | dict | SegmentDescription}``.

    A list of names numbers them 1, 2, ...

    Raises
    ------
    ExportError
        Unknown names, bad numbers, missing terminology.
    """
    if segments is None or (hasattr(segments, "__len__") and len(segments) == 0):
        raise ExportError(f"{argument} is required: e.g. segments={{1: 'liver'}} (names from "
                          f"dcmxr.export.codes.SEGMENT_CODES) or SegmentDescription objects")
    if not isinstance(segments, Mapping):
        segments = {k + 1: s for k, s in enumerate(segments)}
    out = []
    for number, spec in segments.items():
        if not isinstance(number, (int, np.integer)) or not 1 <= int(number) <= 65535:
            raise ExportError(f"{argument}: segment numbers must be integers in 1..65535, got {number!r}")
        out.append(_description(int(number), spec, algorithm, argument))
    return sorted(out, key=lambda d: int(d.SegmentNumber))


# ------------------------------------------------------------------ mask -> compact frames
def _slabs(da: Any) -> Iterator[tuple[int, int]]:
    """z ranges aligned with the Dask chunks (or 32 slices for in-memory data)."""
    n = da.sizes["z"]
    if da.chunks:
        bounds = np.cumsum((0,) + tuple(da.chunksizes["z"]))
    else:
        bounds = np.append(np.arange(0, n, 32), n)
    for a, b in zip(bounds[:-1], bounds[1:]):
        yield int(a), int(b)


def _check_block(block: np.ndarray, kind: str, numbers: np.ndarray, argument: str) -> None:
    if kind == "fractional":
        if np.isnan(block).any():
            raise ExportError(f"{argument}: a FRACTIONAL mask holds NaN")
        lo, hi = float(block.min()), float(block.max())
        if lo < 0 or hi > 1:
            raise ExportError(f"{argument}: a FRACTIONAL mask must lie in [0, 1], found [{lo:g}, {hi:g}]")
    elif kind == "labels" and block.size:
        lo, hi = int(block.min()), int(block.max())
        allowed = np.append(numbers, 0)
        if lo >= 0 and hi <= numbers.max() and len(numbers) == numbers.max():  # 1..n: the range says it all
            return
        if lo < 0 or hi > numbers.max():
            bad = [v for v in (lo, hi) if v not in allowed]
        else:
            present = np.flatnonzero(np.bincount(block.ravel(), minlength=hi + 1))
            bad = np.setdiff1d(present, allowed).tolist()
        if bad:
            raise ExportError(f"{argument} holds values {bad[:10]} that are not declared in "
                              f"segments (declared: {numbers.tolist()}; 0 is background)")


def _frames(arr_da: Any, place: Placement, shape: tuple[int, int], nz_out: int, out_z: np.ndarray,
            kind: str, numbers: np.ndarray, argument: str) -> np.ndarray:
    """Compute ``arr_da`` (dims (z, y, x[, segment])) slab by slab into full source frames."""
    trailing = (arr_da.sizes["segment"],) if "segment" in arr_da.dims else ()
    dtype = {"fractional": np.float32, "stack": bool}.get(kind)
    if kind == "labels":
        dtype = np.uint8 if numbers.max() < 256 else np.uint16
    out = np.zeros((nz_out, *shape, *trailing), dtype=dtype)
    yy, xx = _index(place.y), _index(place.x)
    if not (isinstance(yy, slice) and isinstance(xx, slice)):
        yy, xx = np.ix_(place.y, place.x)
    for a, b in _slabs(arr_da):
        block = np.asarray(arr_da.isel(z=slice(a, b)).values)
        if kind == "labels" and block.dtype.kind == "b":
            block = block.astype(np.uint8)
        _check_block(block, kind, numbers, argument)
        for k in range(b - a):
            out[out_z[a + k], yy, xx] = block[k]
    return out


def _index(idx: np.ndarray) -> slice | np.ndarray:
    """A slice when the indices are consecutive and increasing (fast assignment), else the array."""
    if len(idx) and np.array_equal(idx, np.arange(idx[0], idx[0] + len(idx))):
        return slice(int(idx[0]), int(idx[0]) + len(idx))
    return idx


def _classify(mask: Any, segmentation_type: str | None, argument: str) -> str:
    import xarray as xr

    if isinstance(mask, xr.Dataset):
        kinds = {v.dtype.kind for v in mask.data_vars.values()}
        if kinds - {"b"}:
            raise ExportError(f"{argument}: a Dataset of masks must hold boolean variables (found dtype kinds {kinds})")
        return "stack"
    kind = mask.dtype.kind
    if kind == "f":
        if segmentation_type not in (None, "FRACTIONAL"):
            raise ExportError(f"{argument}: float masks are FRACTIONAL; got segmentation_type={segmentation_type!r}")
        return "fractional"
    if kind == "b":
        return "stack" if "segment" in mask.dims else "labels"
    if kind in "iu":
        if segmentation_type == "FRACTIONAL":
            raise ExportError(f"{argument}: a FRACTIONAL SEG needs a float mask in [0, 1]")
        return "labels"
    raise ExportError(f"{argument}: dtype {mask.dtype} is not a mask (bool, integer labels or float probabilities)")


def to_seg(
    mask: Any,
    source: Any,
    segments: Any = None,
    *,
    path: str | Path | None = None,
    segmentation_type: str | None = None,
    algorithm: str | tuple[str, str] | None = None,
    resample: bool = False,
    series_description: str = "Segmentation",
    series_number: int = 300,
    omit_empty_frames: bool = True,
    max_fractional_value: int = 255,
    manufacturer: str = "dcmxr",
    stream: bool | None = None,
) -> Any:
    """Write a DICOM Segmentation aligned with a source series.

    Parameters
    ----------
    mask : xarray.DataArray or xarray.Dataset
        dims ``(z, y, x)`` (a 2-D slice with a scalar ``z`` works) with dcmxr
        geometry, on (a subset of) the source's voxels. Boolean: one segment;
        integer: labels (value = segment number, 0 = background); float in
        [0, 1]: FRACTIONAL; a trailing or leading ``segment`` dim, or a Dataset
        of boolean variables: overlapping segments. Dask-backed masks are
        computed slab by slab.
    source : xarray.DataArray or path(s)
        The source series (opened by dcmxr, so ``source.dcm.headers`` finds its
        files) or its files.
    segments : dict, list or None
        ``{number: name}`` with names from :data:`dcmxr.export.codes.SEGMENT_CODES`
        (``{1: "liver", 2: "tumor"}``), a dict ``{"label", "category", "type"}``
        with (value, scheme, meaning) triples, or a ``highdicom.seg.SegmentDescription``.
        For a Dataset the keys are variable names (default: the variable names
        as segment names); for a boolean DataArray the default is its ``name``.
    path : path, optional
        Where to write the file.
    segmentation_type : {"BINARY", "FRACTIONAL", "LABELMAP"}, optional
        Default: FRACTIONAL for float masks, BINARY otherwise.
    algorithm : str or (name, version), optional
        Algorithm identification (segment algorithm type AUTOMATIC); None: MANUAL.
    resample : bool
        Resample a mask on another grid onto the source (nearest; linear for
        fractional) instead of refusing it.
    series_description, series_number, manufacturer
        Identification of the new series.
    omit_empty_frames : bool
        Leave frames with no segmented pixel out (highdicom's default).
    max_fractional_value : int
        Stored value of probability 1 (FRACTIONAL).
    stream : bool, optional
        Write the file slab by slab (:mod:`dcmxr.export.seg_stream`): the mask
        is computed one Dask chunk at a time and only that chunk plus the
        per-frame bookkeeping is held in memory. Default (None): stream
        whenever ``path`` is given, the type is BINARY or FRACTIONAL and the
        source is a series of single-frame images; otherwise highdicom builds
        the whole object in memory. ``stream=True`` where it does not apply
        raises ExportError.

    Returns
    -------
    highdicom.seg.Segmentation or pydicom.FileDataset
        The SEG (a pydicom Dataset), also written to ``path`` when given. A
        streamed SEG is returned as the written file's header: its per-frame
        functional groups are decoded on first access and its Pixel Data is
        read from ``path`` on access (nothing large is held).

    Raises
    ------
    ExportError
        Unknown or missing segment terminology, values outside the declared
        segments, probabilities outside [0, 1] or NaN, a mask off the source
        grid (without ``resample=True``), an unknown ``segmentation_type``.
    """
    import xarray as xr

    hd = _hd()
    if segmentation_type is not None:
        segmentation_type = str(segmentation_type).upper()
        if segmentation_type not in ("BINARY", "FRACTIONAL", "LABELMAP"):
            raise ExportError(f"segmentation_type must be BINARY, FRACTIONAL or LABELMAP, not {segmentation_type!r}")
    if not isinstance(mask, (xr.DataArray, xr.Dataset)):
        raise ExportError(f"mask must be an xarray DataArray or Dataset, not {type(mask).__name__}")
    kind = _classify(mask, segmentation_type, "mask")
    if isinstance(mask, xr.Dataset):
        names = list(mask.data_vars)
        if segments is None:
            segments = {n: n for n in names}
        if not isinstance(segments, Mapping) or set(segments) != set(names):
            raise ExportError(f"segments: for a Dataset give one entry per variable {names}")
        descs = segment_descriptions({k + 1: segments[n] for k, n in enumerate(names)}, algorithm)
        mask = xr.concat([mask[n] for n in names], dim="segment")
    else:
        if segments is None and kind == "labels" and mask.dtype.kind == "b" and mask.name:
            segments = {1: str(mask.name)}
        if segments is None and kind == "fractional" and mask.name:
            segments = {1: str(mask.name)}
        descs = segment_descriptions(segments, algorithm)
    numbers = np.array([int(d.SegmentNumber) for d in descs])
    if kind in ("stack", "fractional") and list(numbers) != list(range(1, len(numbers) + 1)):
        raise ExportError("segments: overlapping and fractional segments must be numbered 1..n")
    nseg = mask.sizes.get("segment", 1)
    if kind in ("stack", "fractional") and nseg != len(descs):
        raise ExportError(f"segments: {len(descs)} described but the mask has {nseg} segment(s)")
    if segmentation_type == "LABELMAP" and kind != "labels":
        raise ExportError("segmentation_type='LABELMAP' needs an integer label mask without a 'segment' dim")

    src = _with_zyx(_as_source(source))
    mask = _with_zyx(mask)
    other = [d for d in mask.dims if d not in (*_AXES, "segment")]
    if other:
        raise ExportError(f"mask has extra dims {other}; select one volume first, e.g. .isel({other[0]}=0)")
    try:
        place = place_on_source(mask, src)
    except ExportError:
        if not resample:
            raise
        method = "linear" if kind == "fractional" else "nearest"
        mask = _with_zyx(mask.dcm.resample_like(src, method=method, fill_value=0))
        place = place_on_source(mask, src)
    mask = mask.transpose(*_AXES, *(("segment",) if "segment" in mask.dims else ()))

    datasets, frames = source_datasets(src, place.z)
    rows, cols = int(src.sizes["y"]), int(src.sizes["x"])
    if frames is None:
        out_z, nz = np.arange(len(place.z)), len(place.z)
    else:
        out_z, nz = np.asarray(frames), int(datasets[0].NumberOfFrames)
    # The array is (frames, rows, cols): rows run along y, columns along x.
    if _descending(src, "y") or _descending(src, "x"):
        raise ExportError("source: its x/y coordinates must increase (as dcmxr opens them); "
                          "do not pass a flipped source")
    seg_type = segmentation_type or ("FRACTIONAL" if kind == "fractional" else "BINARY")
    streamable = path is not None and frames is None and seg_type in ("BINARY", "FRACTIONAL")
    if stream and not streamable:
        raise ExportError("stream=True needs path=, a BINARY or FRACTIONAL type and a source of "
                          "single-frame images")
    if streamable and stream is not False:
        from .seg_stream import stream_seg

        return stream_seg(
            mask, _slabs(mask), place, datasets, kind, numbers, descs, seg_type, path,
            check=lambda block: _check_block(block, kind, numbers, "mask"),
            series_description=series_description, omit_empty_frames=omit_empty_frames,
            max_fractional_value=max_fractional_value,
            header_kwargs=dict(series_instance_uid=hd.UID(), series_number=int(series_number),
                               sop_instance_uid=hd.UID(), instance_number=1, manufacturer=manufacturer,
                               manufacturer_model_name="dcmxr", software_versions=_version(),
                               device_serial_number="0", omit_empty_frames=True,
                               content_label="SEGMENTATION"))
    pixels = _frames(mask, place, (rows, cols), nz, out_z, kind, numbers, "mask")
    if frames is None:
        order = np.argsort(place.z)
        datasets, pixels = [datasets[i] for i in order], pixels[order]
    try:
        seg = hd.seg.Segmentation(
            source_images=datasets,
            pixel_array=pixels,
            segmentation_type=seg_type,
            segment_descriptions=descs,
            series_instance_uid=hd.UID(),
            series_number=int(series_number),
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer=manufacturer,
            manufacturer_model_name="dcmxr",
            software_versions=_version(),
            device_serial_number="0",
            max_fractional_value=max_fractional_value,
            omit_empty_frames=omit_empty_frames,
            content_label="SEGMENTATION",
        )
    except (ValueError, TypeError) as exc:
        raise ExportError(f"highdicom refused the segmentation: {exc}") from exc
    seg.SeriesDescription = str(series_description)[:64]
    if path is not None:
        seg.save_as(str(path), enforce_file_format=True)
    return seg


def _descending(src: Any, ax: str) -> bool:
    v = np.asarray(src[ax].values)
    return v.size > 1 and v[-1] < v[0]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dcmxr")
    except PackageNotFoundError:  # pragma: no cover
        return "0"
