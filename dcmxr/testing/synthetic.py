"""Synthetic DICOM series with known geometry and pixel values (writes real files).

Builders start from a real header (pydicom's bundled ``CT_small.dcm``), give
every object fresh UIDs, and write files with pydicom, so readers under test
see ordinary DICOM. Pixel values encode ``(t, z, y, x)`` through a
deterministic function (:func:`default_pixel_fn`), so tests can check that a
reader put every frame and every pixel in the right place.

Geometry of a synthetic stack (all LPS, mm)::

    row, col = iop[:3], iop[3:]; normal = cross(row, col)
    stack    = cos(tilt) * normal + sin(tilt) * col      # unit
    IPP(k)   = origin + k * dz * stack                    # slice k = 0..nz-1
    pixel (k, j, i) centre = IPP(k) + j * dy * col + i * dx * row

so slice ``k`` (``z`` index before removing ``missing_slices``) lies at
increasing position along the stack, and the dcmxr ``z`` coordinate of slice
``k`` is ``z0 + k * dz``. :func:`expected_geometry` returns these numbers.

This module imports pydicom; it is never imported by the library itself.
"""

from __future__ import annotations

import copy
import datetime as _dt
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "default_pixel_fn",
    "expected_stored",
    "expected_geometry",
    "slice_positions",
    "write_series",
    "write_enhanced",
]

PixelFn = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"
ENHANCED_MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4.1"

_NATIVE = {
    "1.2.840.10008.1.2": (True, True),  # implicit VR little endian
    "1.2.840.10008.1.2.1": (False, True),  # explicit VR little endian
    "1.2.840.10008.1.2.2": (False, False),  # explicit VR big endian (retired)
    "1.2.840.10008.1.2.1.99": (False, True),  # deflated explicit VR little endian
}

# attributes that a synthetic header must not inherit from the template
_DROP = (
    "PixelPaddingValue",
    "SliceLocation",
    "ImageComments",
    "WindowCenter",
    "WindowWidth",
    "DataSetTrailingPadding",
    "OtherPatientIDsSequence",
)


def default_pixel_fn(t: np.ndarray, z: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The default stored value of voxel ``(t, z, y, x)``.

    ``t * 4096 + z * 64 + (3 * y + x) % 64``: the time point and slice are
    readable from a value (``v // 4096``, ``v // 64 % 64``) and the in-plane
    pattern is not symmetric in ``x``/``y``, so transposes and flips show.
    Fits int16 for ``t < 8`` and ``z < 64``, uint16 for ``t < 16``.

    Parameters
    ----------
    t, z, y, x : numpy.ndarray
        Broadcastable integer index arrays (``z`` is the slice index on the
        complete grid, counting missing slices).

    Returns
    -------
    numpy.ndarray of int64
    """
    t, z, y, x = (np.asarray(a, dtype=np.int64) for a in (t, z, y, x))
    return t * 4096 + z * 64 + (3 * y + x) % 64


def _present(nz: int, missing_slices: Iterable[int]) -> np.ndarray:
    miss = {int(k) for k in missing_slices}
    bad = [k for k in miss if not 0 <= k < nz]
    if bad:
        raise ValueError(f"missing_slices {sorted(bad)} outside 0..{nz - 1}")
    return np.array([k for k in range(nz) if k not in miss], dtype=np.int64)


def expected_stored(
    shape: Sequence[int],
    n_timepoints: int = 1,
    *,
    missing_slices: Iterable[int] = (),
    pixel_fn: PixelFn | None = None,
    dtype: Any = np.int16,
) -> np.ndarray:
    """Stored values a builder writes, as a ``(t, z, y, x)`` array.

    Parameters
    ----------
    shape : (nz, ny, nx)
        Complete grid shape (before removing ``missing_slices``).
    n_timepoints : int
        Number of repeated volumes.
    missing_slices : iterable of int
        Slice indices left out; the result's ``z`` axis holds only the
        present slices, in increasing position.
    pixel_fn : callable, optional
        ``f(t, z, y, x) -> values``; default :func:`default_pixel_fn`.
    dtype : numpy dtype
        int16 or uint16 (values must fit; ValueError otherwise).

    Returns
    -------
    numpy.ndarray, shape (n_timepoints, n_present, ny, nx)
    """
    nz, ny, nx = (int(s) for s in shape)
    zs = _present(nz, missing_slices)
    fn = pixel_fn or default_pixel_fn
    t, z, y, x = np.ix_(np.arange(n_timepoints), zs, np.arange(ny), np.arange(nx))
    vals = np.broadcast_to(np.asarray(fn(t, z, y, x)), (n_timepoints, len(zs), ny, nx))
    dt = np.dtype(dtype)
    info = np.iinfo(dt)
    if vals.size and (vals.min() < info.min or vals.max() > info.max):
        raise ValueError(
            f"pixel values {vals.min()}..{vals.max()} do not fit {dt}; use fewer slices/time "
            f"points or another pixel_fn"
        )
    return np.ascontiguousarray(vals.astype(dt))


def _basis(iop: Sequence[float], tilt_deg: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    a = np.asarray(iop, dtype=np.float64).reshape(6)
    row = a[:3] / np.linalg.norm(a[:3])
    col = a[3:] / np.linalg.norm(a[3:])
    normal = np.cross(row, col)
    normal /= np.linalg.norm(normal)
    th = np.radians(tilt_deg)
    stack = np.cos(th) * normal + np.sin(th) * col
    return row, col, normal, stack / np.linalg.norm(stack)


def slice_positions(
    shape: Sequence[int],
    spacing: Sequence[float],
    iop: Sequence[float],
    origin: Sequence[float],
    tilt_deg: float = 0.0,
) -> np.ndarray:
    """ImagePositionPatient of every slice of the complete grid.

    Parameters
    ----------
    shape, spacing, iop, origin, tilt_deg
        As for :func:`write_series`.

    Returns
    -------
    numpy.ndarray, shape (nz, 3)
    """
    _, _, _, stack = _basis(iop, tilt_deg)
    nz = int(shape[0])
    o = np.asarray(origin, dtype=np.float64).reshape(3)
    return o + np.arange(nz)[:, None] * float(spacing[0]) * stack


def expected_geometry(
    shape: Sequence[int],
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    iop: Sequence[float] = (1, 0, 0, 0, 1, 0),
    origin: Sequence[float] = (0.0, 0.0, 0.0),
    tilt_deg: float = 0.0,
    missing_slices: Iterable[int] = (),
) -> dict[str, np.ndarray]:
    """The dcmxr coordinates a correct reader should produce for a builder call.

    Parameters
    ----------
    shape, spacing, iop, origin, tilt_deg, missing_slices
        As for :func:`write_series`.

    Returns
    -------
    dict
        ``x``, ``y``, ``z`` coordinate values (z only for present slices) and
        ``dir_x``, ``dir_y``, ``dir_z`` unit vectors.
    """
    row, col, _, stack = _basis(iop, tilt_deg)
    nz, ny, nx = (int(s) for s in shape)
    dz, dy, dx = (float(s) for s in spacing)
    c0 = np.linalg.solve(np.column_stack([row, col, stack]), np.asarray(origin, dtype=np.float64))
    zs = _present(nz, missing_slices)
    return {
        "x": c0[0] + np.arange(nx) * dx,
        "y": c0[1] + np.arange(ny) * dy,
        "z": c0[2] + zs * dz,
        "dir_x": row,
        "dir_y": col,
        "dir_z": stack,
    }


def _template() -> Any:
    import pydicom
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.remove_private_tags()
    for kw in _DROP:
        if kw in ds:
            delattr(ds, kw)
    del ds.PixelData
    return ds


def _ds_value(v: float) -> Any:
    from pydicom.valuerep import DSfloat

    return DSfloat(float(v), auto_format=True)


def _ds_list(vals: Iterable[float]) -> list[Any]:
    return [_ds_value(v) for v in vals]


def _set_pixel_module(ds: Any, rows: int, cols: int, dtype: np.dtype) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = int(rows)
    ds.Columns = int(cols)
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if dtype.kind == "i" else 0


def _finish_and_write(ds: Any, arr: np.ndarray, path: Path, transfer_syntax: str) -> None:
    """Attach pixel data in the requested transfer syntax and write ``path``."""
    from pydicom import dcmwrite
    from pydicom.uid import UID

    ts = UID(str(transfer_syntax))
    if ts in _NATIVE:
        implicit, little = _NATIVE[ts]
        ds.file_meta.TransferSyntaxUID = ts
        data = arr.astype(arr.dtype.newbyteorder("<" if little else ">"), copy=False).tobytes()
        ds.PixelData = data
        ds["PixelData"].VR = "OW"
        # dcmwrite (unlike FileDataset.save_as) may change the template's endianness;
        # the only OB/OW element left is PixelData, swapped above
        dcmwrite(path, ds, implicit_vr=implicit, little_endian=little, enforce_file_format=True)
        return
    # encapsulated: let pydicom's encoders do it (RLE is always available)
    ds.file_meta.TransferSyntaxUID = UID("1.2.840.10008.1.2.1")
    ds.compress(ts, arr, generate_instance_uid=False)
    ds.save_as(path, enforce_file_format=True)


def _new_uid() -> str:
    from pydicom.uid import generate_uid

    return generate_uid()


def _dt_parts(base: _dt.datetime, seconds: float) -> tuple[str, str, str]:
    t = base + _dt.timedelta(seconds=float(seconds))
    return t.strftime("%Y%m%d"), t.strftime("%H%M%S.%f"), t.strftime("%Y%m%d%H%M%S.%f")


def write_series(
    directory: str | os.PathLike,
    shape: Sequence[int] = (8, 16, 12),
    spacing: Sequence[float] = (2.5, 0.75, 0.5),
    iop: Sequence[float] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    origin: Sequence[float] = (-30.0, -40.0, 10.0),
    tilt_deg: float = 0.0,
    n_timepoints: int = 1,
    transfer_syntax: str = "1.2.840.10008.1.2.1",
    dtype: Any = np.int16,
    rescale_slope: float = 1.0,
    rescale_intercept: float = -1024.0,
    modality: str = "CT",
    missing_slices: Iterable[int] = (),
    shuffle_names: bool = True,
    pixel_fn: PixelFn | None = None,
    *,
    seed: int = 0,
    time_step_s: float = 2.0,
    study_uid: str | None = None,
    series_uid: str | None = None,
    frame_of_reference_uid: str | None = None,
    series_number: int = 1,
    series_description: str = "synthetic",
    extra: Mapping[str, Any] | None = None,
    prefix: str = "",
) -> list[Path]:
    """Write a single-frame series with known geometry and pixel values.

    Parameters
    ----------
    directory : path
        Created if needed; files are named ``{prefix}{n:04d}.dcm``.
    shape : (nz, ny, nx)
        Slices, Rows, Columns of the complete grid.
    spacing : (dz, dy, dx)
        Step along the stack, PixelSpacing ``[dy, dx]`` (row spacing, column
        spacing), in mm. SliceThickness and SpacingBetweenSlices are ``dz``.
    iop : sequence of 6 float
        ImageOrientationPatient.
    origin : sequence of 3 float
        ImagePositionPatient of slice 0.
    tilt_deg : float
        Gantry tilt: the stack moves along ``cos * normal + sin * col``; also
        written to GantryDetectorTilt for CT.
    n_timepoints : int
        Repeated volumes (same positions): TemporalPositionIdentifier
        ``t + 1``, NumberOfTemporalPositions, AcquisitionNumber ``t + 1`` and
        AcquisitionTime/ContentTime ``time_step_s`` apart.
    transfer_syntax : str
        UID: Implicit/Explicit VR Little Endian, Explicit VR Big Endian,
        Deflated, or any syntax pydicom can encode (RLE Lossless; JPEG-LS and
        JPEG 2000 lossless when their plugins are installed).
    dtype : int16 or uint16
        Stored pixel type (PixelRepresentation follows).
    rescale_slope, rescale_intercept : float
        Written as RescaleSlope/RescaleIntercept (always for CT; for other
        modalities only when not identity).
    modality : {"CT", "MR", ...}
        Modality; "MR" uses MR Image Storage, anything else CT Image Storage.
    missing_slices : iterable of int
        Slice indices (on the complete grid) not written.
    shuffle_names : bool
        File names in a random order unrelated to position and time.
    pixel_fn : callable, optional
        ``f(t, z, y, x)`` stored values; default :func:`default_pixel_fn`.
    seed : int
        Seed of the name shuffle.
    study_uid, series_uid, frame_of_reference_uid : str, optional
        Reuse UIDs (e.g. to put a localizer in the same series); fresh by default.
    series_number, series_description : int, str
        SeriesNumber, SeriesDescription.
    extra : mapping, optional
        Further keyword -> value set on every file (e.g. ``{"ImageType":
        ["ORIGINAL", "PRIMARY", "LOCALIZER"]}``).
    prefix : str
        File name prefix (lets several series share a directory).

    Returns
    -------
    list of pathlib.Path
        Paths in acquisition order: time point outer, slice (increasing
        position) inner.
    """
    import pydicom  # noqa: F401  (fail early with a clear ImportError)

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    nz, ny, nx = (int(s) for s in shape)
    dz, dy, dx = (float(s) for s in spacing)
    dt = np.dtype(dtype)
    stored = expected_stored(shape, n_timepoints, missing_slices=missing_slices, pixel_fn=pixel_fn, dtype=dt)
    zs = _present(nz, missing_slices)
    pos = slice_positions(shape, spacing, iop, origin, tilt_deg)
    _, _, normal, _ = _basis(iop, tilt_deg)

    study_uid = study_uid or _new_uid()
    series_uid = series_uid or _new_uid()
    for_uid = frame_of_reference_uid or _new_uid()
    n_files = n_timepoints * len(zs)
    names = np.arange(n_files)
    if shuffle_names:
        names = np.random.default_rng(seed).permutation(n_files)
    base_time = _dt.datetime(2024, 1, 2, 10, 0, 0)

    template = _template()
    is_mr = modality.upper() == "MR"
    sop_class = MR_IMAGE_STORAGE if is_mr else CT_IMAGE_STORAGE
    paths: list[Path] = []
    n = 0
    for t in range(n_timepoints):
        for zi, k in enumerate(zs):
            ds = copy.deepcopy(template)
            sop_uid = _new_uid()
            ds.file_meta.MediaStorageSOPClassUID = sop_class
            ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
            ds.SOPClassUID = sop_class
            ds.SOPInstanceUID = sop_uid
            ds.StudyInstanceUID = study_uid
            ds.SeriesInstanceUID = series_uid
            ds.FrameOfReferenceUID = for_uid
            ds.Modality = modality
            ds.SeriesNumber = series_number
            ds.SeriesDescription = series_description
            ds.InstanceNumber = n + 1
            ds.AcquisitionNumber = t + 1
            d, tm, _ = _dt_parts(base_time, t * time_step_s)
            ds.AcquisitionDate = ds.ContentDate = d
            ds.AcquisitionTime = ds.ContentTime = tm
            if n_timepoints > 1:
                ds.TemporalPositionIdentifier = t + 1
                ds.NumberOfTemporalPositions = n_timepoints
            ds.ImagePositionPatient = _ds_list(pos[k])
            ds.ImageOrientationPatient = _ds_list(iop)
            ds.PixelSpacing = _ds_list([dy, dx])
            ds.SliceThickness = _ds_value(dz)
            ds.SpacingBetweenSlices = _ds_value(dz)
            ds.SliceLocation = _ds_value(float(pos[k] @ normal))
            if is_mr:
                for kw in ("KVP", "GantryDetectorTilt", "XRayTubeCurrent", "Exposure", "ExposureTime"):
                    if kw in ds:
                        delattr(ds, kw)
            else:
                ds.GantryDetectorTilt = _ds_value(tilt_deg)
            if not is_mr or rescale_slope != 1 or rescale_intercept != 0:
                ds.RescaleSlope = _ds_value(rescale_slope)
                ds.RescaleIntercept = _ds_value(rescale_intercept)
                ds.RescaleType = "HU" if modality.upper() == "CT" else "US"
            else:
                for kw in ("RescaleSlope", "RescaleIntercept"):
                    if kw in ds:
                        delattr(ds, kw)
            _set_pixel_module(ds, ny, nx, dt)
            for kw, v in (extra or {}).items():
                setattr(ds, kw, v)
            path = directory / f"{prefix}{int(names[n]):04d}.dcm"
            _finish_and_write(ds, stored[t, zi], path, transfer_syntax)
            paths.append(path)
            n += 1
    return paths


def write_enhanced(
    path: str | os.PathLike,
    shape: Sequence[int] = (6, 16, 12),
    spacing: Sequence[float] = (2.5, 0.75, 0.5),
    iop: Sequence[float] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    origin: Sequence[float] = (-30.0, -40.0, 10.0),
    tilt_deg: float = 0.0,
    n_timepoints: int = 1,
    transfer_syntax: str = "1.2.840.10008.1.2.1",
    dtype: Any = np.int16,
    rescale_slope: float = 1.0,
    rescale_intercept: float = -1024.0,
    modality: str = "CT",
    missing_slices: Iterable[int] = (),
    shuffle_frames: bool = False,
    pixel_fn: PixelFn | None = None,
    *,
    rescale_fn: Callable[[int, int], tuple[float, float]] | None = None,
    seed: int = 0,
    time_step_s: float = 2.0,
    extra: Mapping[str, Any] | None = None,
    asl_context: Sequence[str] | None = None,
    asl_outer: bool = False,
) -> Path:
    """Write one Enhanced CT/MR multi-frame object with functional groups.

    Shared Functional Groups hold PixelMeasuresSequence (PixelSpacing,
    SliceThickness, SpacingBetweenSlices), PlaneOrientationSequence and, unless
    ``rescale_fn`` is given, PixelValueTransformationSequence. Per-Frame
    Functional Groups hold PlanePositionSequence, FrameContentSequence
    (StackID "1", InStackPositionNumber, TemporalPositionIndex,
    DimensionIndexValues, FrameAcquisitionDateTime) and, with ``rescale_fn``,
    a per-frame PixelValueTransformationSequence. The Dimension Index
    Sequence points at StackID, InStackPositionNumber, TemporalPositionIndex.

    Parameters
    ----------
    path : path
        File to write (parent directories are created).
    shape, spacing, iop, origin, tilt_deg, n_timepoints, transfer_syntax, dtype,
    rescale_slope, rescale_intercept, modality, missing_slices, pixel_fn, seed,
    time_step_s, extra
        As for :func:`write_series` (``modality`` "MR" -> Enhanced MR Image
        Storage, otherwise Enhanced CT Image Storage).
    shuffle_frames : bool
        Store frames in a random order (seeded by ``seed``) instead of time
        outer / position inner; the functional groups still say where each
        frame belongs.
    rescale_fn : callable, optional
        ``f(t, k) -> (slope, intercept)`` per frame (``k`` on the complete
        grid) to exercise per-frame rescale.
    asl_context : sequence of str, optional
        ASL Context values (``"LABEL"``, ``"CONTROL"``, ``"M_ZERO_SCAN"``):
        every time point then holds one volume per value, each frame gets a
        per-frame MR Arterial Spin Labeling Sequence with its ASL Context, and
        the Dimension Index Sequence gains an ASL Context pointer (index
        value = position in ``asl_context`` + 1). Volume ``v = t * len(asl_context)
        + c`` is passed to ``pixel_fn`` as its time argument.
    asl_outer : bool
        With ``asl_context``: acquire (and store) the ASL contexts as the outer
        loop (context, time, slice) instead of (time, context, slice); the
        Dimension Index Sequence then lists ASL Context before Temporal
        Position Index and frame acquisition times follow that order.

    Returns
    -------
    pathlib.Path
        The written file. Frame ``f`` (0-based, file order) holds time point
        ``TemporalPositionIndex - 1`` and the present slice
        ``InStackPositionNumber - 1``.
    """
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as DSequence
    from pydicom.tag import Tag

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nz, ny, nx = (int(s) for s in shape)
    dz, dy, dx = (float(s) for s in spacing)
    dt = np.dtype(dtype)
    contexts = [str(c) for c in asl_context] if asl_context else []
    nc = max(len(contexts), 1)
    stored = expected_stored(shape, n_timepoints * nc, missing_slices=missing_slices, pixel_fn=pixel_fn, dtype=dt)
    zs = _present(nz, missing_slices)
    pos = slice_positions(shape, spacing, iop, origin, tilt_deg)
    is_mr = modality.upper() == "MR"
    sop_class = ENHANCED_MR_IMAGE_STORAGE if is_mr else ENHANCED_CT_IMAGE_STORAGE

    if contexts and asl_outer:
        frames = [(t, c, zi) for c in range(nc) for t in range(n_timepoints) for zi in range(len(zs))]
    else:
        frames = [(t, c, zi) for t in range(n_timepoints) for c in range(nc) for zi in range(len(zs))]
    if shuffle_frames:
        perm = np.random.default_rng(seed).permutation(len(frames))
        frames = [frames[i] for i in perm]

    ds = _template()
    for kw in (
        "ImagePositionPatient",
        "ImageOrientationPatient",
        "PixelSpacing",
        "SliceThickness",
        "SpacingBetweenSlices",
        "RescaleIntercept",
        "RescaleSlope",
        "RescaleType",
        "AcquisitionDate",
        "AcquisitionTime",
        "GantryDetectorTilt",
    ):
        if kw in ds:
            delattr(ds, kw)
    sop_uid = _new_uid()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = _new_uid()
    ds.SeriesInstanceUID = _new_uid()
    ds.FrameOfReferenceUID = _new_uid()
    ds.Modality = modality
    ds.SeriesNumber = 1
    ds.SeriesDescription = "synthetic enhanced"
    ds.InstanceNumber = 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
    base_time = _dt.datetime(2024, 1, 2, 10, 0, 0)
    d, tm, dtm = _dt_parts(base_time, 0)
    ds.ContentDate, ds.ContentTime, ds.AcquisitionDateTime = d, tm, dtm
    ds.NumberOfFrames = len(frames)
    _set_pixel_module(ds, ny, nx, dt)
    if is_mr:
        for kw in ("KVP", "XRayTubeCurrent", "Exposure", "ExposureTime"):
            if kw in ds:
                delattr(ds, kw)

    dim_uid = _new_uid()
    org = Dataset()
    org.DimensionOrganizationUID = dim_uid
    ds.DimensionOrganizationSequence = DSequence([org])
    ds.DimensionOrganizationType = "3D" if n_timepoints == 1 else "3D_TEMPORAL"
    dims = []
    pointers = ["StackID", "InStackPositionNumber", "TemporalPositionIndex"]
    if contexts:
        pointers.insert(1 if asl_outer else 3, "ASLContext")
    for kw in pointers:
        item = Dataset()
        item.DimensionOrganizationUID = dim_uid
        item.DimensionIndexPointer = Tag(kw)
        item.FunctionalGroupPointer = Tag("MRArterialSpinLabelingSequence" if kw == "ASLContext"
                                          else "FrameContentSequence")
        dims.append(item)
    ds.DimensionIndexSequence = DSequence(dims)

    def rescale_item(slope: float, intercept: float) -> Dataset:
        item = Dataset()
        item.RescaleIntercept = _ds_value(intercept)
        item.RescaleSlope = _ds_value(slope)
        item.RescaleType = "HU" if modality.upper() == "CT" else "US"
        return item

    shared = Dataset()
    pm = Dataset()
    pm.PixelSpacing = _ds_list([dy, dx])
    pm.SliceThickness = _ds_value(dz)
    pm.SpacingBetweenSlices = _ds_value(dz)
    shared.PixelMeasuresSequence = DSequence([pm])
    po = Dataset()
    po.ImageOrientationPatient = _ds_list(iop)
    shared.PlaneOrientationSequence = DSequence([po])
    ft = Dataset()
    ft.FrameType = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
    if is_mr:
        shared.MRImageFrameTypeSequence = DSequence([ft])
    else:
        shared.CTImageFrameTypeSequence = DSequence([ft])
    if rescale_fn is None:
        shared.PixelValueTransformationSequence = DSequence([rescale_item(rescale_slope, rescale_intercept)])
    ds.SharedFunctionalGroupsSequence = DSequence([shared])

    per_frame = []
    arr = np.empty((len(frames), ny, nx), dtype=dt)
    for f, (t, c, zi) in enumerate(frames):
        k = int(zs[zi])
        v = t * nc + c  # volume index into `stored`
        acq = (c * n_timepoints + t) if asl_outer else v  # acquisition order of the volume
        item = Dataset()
        pp = Dataset()
        pp.ImagePositionPatient = _ds_list(pos[k])
        item.PlanePositionSequence = DSequence([pp])
        fc = Dataset()
        fc.StackID = "1"
        fc.InStackPositionNumber = zi + 1
        fc.TemporalPositionIndex = t + 1
        index = {"StackID": 1, "InStackPositionNumber": zi + 1, "TemporalPositionIndex": t + 1, "ASLContext": c + 1}
        fc.DimensionIndexValues = [index[kw] for kw in pointers]
        _, _, fdt = _dt_parts(base_time, (acq if contexts else t) * time_step_s)
        fc.FrameAcquisitionDateTime = fdt
        fc.FrameReferenceDateTime = fdt
        item.FrameContentSequence = DSequence([fc])
        if contexts:
            asl = Dataset()
            asl.ASLContext = contexts[c]
            item.MRArterialSpinLabelingSequence = DSequence([asl])
        if rescale_fn is not None:
            slope, intercept = rescale_fn(t, k)
            item.PixelValueTransformationSequence = DSequence([rescale_item(slope, intercept)])
        per_frame.append(item)
        arr[f] = stored[v, zi]
    ds.PerFrameFunctionalGroupsSequence = DSequence(per_frame)
    for kw, v in (extra or {}).items():
        setattr(ds, kw, v)
    _finish_and_write(ds, arr, path, transfer_syntax)
    return path
