"""``open_nifti``: a NIfTI-1/2 file (+ BIDS sidecar, .bval/.bvec) as a lazy dcmxr DataArray.

The file's voxel axes become dims in reverse order (NIfTI is Fortran-order,
``x`` fastest), so ``(x, y, z, t)`` on disk is ``("t", "z", "y", "x")`` here
and every Dask chunk is one contiguous byte range of the file. ``x``, ``y``,
``z`` follow the *file's* voxel axes ``i, j, k`` (dcm2niix flips DICOM rows,
so ``y`` of a dcm2niix file points the other way than ``y`` of the DICOM);
the coordinates place every voxel in space exactly, so geometry-aware
comparisons (``da.dcm.affine``, ``world_to_index``) agree with the DICOM.

Geometry comes from the sform when ``sform_code > 0``, else the qform when
``qform_code > 0`` (the NIfTI rule); the RAS affine is flipped to LPS and
split into unit directions and spacings with
:func:`dcmxr.geometry.coords.coords_from_affine`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DecodeError, GeometryError, missing_dependency

__all__ = ["open_nifti", "BIDS_ATTRS", "read_sidecars"]

#: BIDS sidecar key -> (dcmxr attr, factor from BIDS units to dcmxr units).
BIDS_ATTRS: dict[str, tuple[str, float | None]] = {
    "Modality": ("modality", None),
    "MagneticFieldStrength": ("magnetic_field_strength", None),
    "ImagingFrequency": ("imaging_frequency", None),
    "Manufacturer": ("manufacturer", None),
    "ManufacturersModelName": ("manufacturer_model_name", None),
    "InstitutionName": ("institution_name", None),
    "StationName": ("station_name", None),
    "DeviceSerialNumber": ("device_serial_number", None),
    "BodyPartExamined": ("body_part_examined", None),
    "PatientPosition": ("patient_position", None),
    "SoftwareVersions": ("software_versions", None),
    "MRAcquisitionType": ("mr_acquisition_type", None),
    "StudyDescription": ("study_description", None),
    "SeriesDescription": ("series_description", None),
    "ProtocolName": ("protocol_name", None),
    "ScanningSequence": ("scanning_sequence", None),
    "SequenceVariant": ("sequence_variant", None),
    "ScanOptions": ("scan_options", None),
    "SequenceName": ("sequence_name", None),
    "SeriesNumber": ("series_number", None),
    "AcquisitionNumber": ("acquisition_number", None),
    "SliceThickness": ("slice_thickness", None),
    "SpacingBetweenSlices": ("spacing_between_slices", None),
    "EchoTime": ("echo_time", 1000.0),
    "RepetitionTime": ("repetition_time", 1000.0),
    "InversionTime": ("inversion_time", 1000.0),
    "FlipAngle": ("flip_angle", None),
    "EchoTrainLength": ("echo_train_length", None),
    "PercentPhaseFOV": ("percent_phase_field_of_view", None),
    "PercentSampling": ("percent_sampling", None),
    "PixelBandwidth": ("pixel_bandwidth", None),
    "KVP": ("kvp", None),
    "ConvolutionKernel": ("convolution_kernel", None),
    "InPlanePhaseEncodingDirectionDICOM": ("in_plane_phase_encoding_direction", None),
}

#: dcmxr attr -> unit string (as backend.build writes them).
_UNITS = {"slice_thickness": "mm", "spacing_between_slices": "mm", "echo_time": "ms", "repetition_time": "ms",
          "inversion_time": "ms", "flip_angle": "degree", "magnetic_field_strength": "T", "kvp": "kV"}

#: Target bytes per chunk for chunks="auto" (gzip files decompress from the start on every
#: seek unless indexed_gzip is installed, so they get larger chunks).
AUTO_CHUNK_BYTES = 64 * 2**20
AUTO_CHUNK_BYTES_GZ = 512 * 2**20

_SPACE_MM = {0: 1.0, 1: 1000.0, 2: 1.0, 3: 1e-3}  # unknown, meter, mm, micron
_TIME_S = {0: 1.0, 8: 1.0, 16: 1e-3, 24: 1e-6}  # unknown, sec, msec, usec
_EXTRA_DIMS = ("t", "u", "v", "w")


def _stem(path: Path) -> Path:
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return path.with_name(name[: -len(suffix)])
    return path.with_suffix("")


def read_sidecars(path: str | os.PathLike) -> tuple[dict, np.ndarray | None, np.ndarray | None]:
    """``(json dict, bvals or None, bvecs (3, n) or None)`` beside a NIfTI path."""
    stem = _stem(Path(path))
    meta: dict = {}
    j = stem.with_name(stem.name + ".json")
    if j.exists():
        meta = json.loads(j.read_text())
    bval = bvec = None
    bv = stem.with_name(stem.name + ".bval")
    if bv.exists():
        bval = np.array(bv.read_text().split(), dtype=np.float64)
    bc = stem.with_name(stem.name + ".bvec")
    if bc.exists():
        rows = [r.split() for r in bc.read_text().strip().splitlines() if r.strip()]
        bvec = np.array(rows, dtype=np.float64)
        if bvec.shape[0] != 3 and bvec.shape[-1] == 3:
            bvec = bvec.T
    return meta, bval, bvec


def _affine(hdr) -> tuple[np.ndarray, str]:
    scode, qcode = int(hdr["sform_code"]), int(hdr["qform_code"])
    if scode > 0:
        return np.asarray(hdr.get_sform(), dtype=np.float64), "sform"
    if qcode > 0:
        return np.asarray(hdr.get_qform(), dtype=np.float64), "qform"
    raise GeometryError(
        "this NIfTI has neither an sform (sform_code 0) nor a qform (qform_code 0): it gives voxel sizes "
        "but no position or orientation, so dcmxr cannot place it in patient space. Set one with nibabel "
        "(img.set_sform(affine, code=1); img.to_filename(...)) and open it again"
    )


def _out_dtype(stored: np.dtype, slope: float, inter: float) -> np.dtype:
    if slope == 1.0 and inter == 0.0:
        return stored
    if stored.kind in "iu" and float(slope).is_integer() and float(inter).is_integer():
        info = np.iinfo(stored)
        ends = [slope * info.min + inter, slope * info.max + inter]
        for cand in ("uint8", "int8", "uint16", "int16", "uint32", "int32", "int64"):
            ci = np.iinfo(cand)
            if ci.min <= min(ends) and max(ends) <= ci.max:
                return np.dtype(cand)
    if stored.kind == "f" and stored.itemsize >= 8:
        return np.dtype("float64")
    return np.dtype("float32") if stored.itemsize <= 2 or stored.kind == "f" else np.dtype("float64")


def contiguous_chunks(shape: tuple[int, ...], itemsize: int, target: int) -> tuple[int, ...]:
    """Chunks that are contiguous runs of a C-order file: fill the inner dims first, up to ``target`` bytes."""
    out = [1] * len(shape)
    inner = itemsize
    for a in range(len(shape) - 1, -1, -1):
        if inner * shape[a] <= target:
            out[a] = shape[a]
            inner *= shape[a]
        else:
            out[a] = max(1, target // inner)
            break
    return tuple(out)


def _chunks(shape: tuple[int, ...], itemsize: int, chunks: Any, dims: tuple[str, ...], gz: bool):
    if chunks is None or chunks == -1:
        return shape
    if chunks == "auto":
        return contiguous_chunks(shape, itemsize, AUTO_CHUNK_BYTES_GZ if gz else AUTO_CHUNK_BYTES)
    if isinstance(chunks, int):
        chunks = {dims[0]: chunks}
    if isinstance(chunks, dict):
        return tuple(shape[k] if chunks.get(d, -1) in (-1, None) else int(chunks[d]) for k, d in enumerate(dims))
    return tuple(chunks)


class _CView:
    """The C-order (reversed-axis) view of a nibabel ArrayProxy, for ``dask.array.from_array``."""

    def __init__(self, proxy):
        self.proxy = proxy
        self.shape = tuple(reversed(proxy.shape))
        self.dtype = proxy.dtype
        self.ndim = len(self.shape)

    def __getitem__(self, key):
        if not isinstance(key, tuple):
            key = (key,)
        key = key + (slice(None),) * (self.ndim - len(key))
        return np.asarray(self.proxy[tuple(reversed(key))]).T


def open_nifti(
    path: str | os.PathLike,
    chunks: Any = "auto",
    *,
    raw: bool = False,
    sidecar: bool = True,
    name: str = "image",
):
    """Open a NIfTI-1/2 file lazily as a dcmxr DataArray.

    Parameters
    ----------
    path : str or path-like
        ``.nii`` or ``.nii.gz`` (a ``.json`` / ``.bval`` / ``.bvec`` with the same
        stem are read when ``sidecar``).
    chunks : "auto", int, dict, tuple or None
        Dask chunks; "auto" makes contiguous chunks of about 64 MB (512 MB for
        gzip files, which cannot seek cheaply). None = one chunk.
    raw : bool
        Keep stored values; by default ``scl_slope``/``scl_inter`` are applied
        (real-world values, in the smallest exact dtype: integer when slope and
        intercept are integers, else float32 for 8/16-bit data, float64 above).
    sidecar : bool
        Map the BIDS sidecar back to dcmxr attrs (``EchoTime`` s -> ``echo_time``
        ms ...), ``SliceTiming`` to a ``slice_time`` coord on ``z`` (s),
        ``.bval``/``.bvec`` to ``diffusion_b_value`` and
        ``diffusion_gradient_0..2`` (LPS unit vectors) on a positional ``dwi``
        dim (instead of ``t``), as open_series names diffusion volumes.
    name : str
        The DataArray's name.

    Returns
    -------
    xarray.DataArray
        Dims ``("z", "y", "x")``, ``("t", "z", "y", "x")`` or with ``u``, ``v``,
        ``w`` leading for 5-7-D files; ``x``/``y``/``z`` in mm with LPS
        ``direction`` attrs; ``t`` in seconds from ``toffset`` and ``pixdim[4]``.

    Raises
    ------
    GeometryError
        Neither sform nor qform is set.
    DecodeError
        The file is not NIfTI-1/2.
    """
    try:
        import nibabel as nib
    except ImportError:  # pragma: no cover
        raise missing_dependency("nibabel", "export") from None
    import dask.array as dska
    import xarray as xr

    from ..geometry.affine import ras_to_lps
    from ..geometry.coords import coords_from_affine

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(path)
    try:
        img = nib.load(str(path))
    except Exception as exc:
        raise DecodeError(f"{path}: not a readable NIfTI file ({exc})") from exc
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise DecodeError(f"{path}: {type(img).__name__} is not NIfTI-1/2; open_nifti reads .nii / .nii.gz")
    hdr = img.header
    aff_ras, _ = _affine(hdr)
    space_unit, time_unit = (int(v) for v in _units(hdr))
    scale_mm = _SPACE_MM.get(space_unit, 1.0)
    aff_ras = aff_ras.copy()
    aff_ras[:3, :] *= scale_mm

    shape = tuple(int(s) for s in img.shape)
    while len(shape) < 3:
        shape = shape + (1,)
    extra = len(shape) - 3
    meta, bval, bvec = read_sidecars(path) if sidecar else ({}, None, None)
    diffusion = extra == 1 and bval is not None and len(bval) == shape[3]
    lead_names = ("dwi",) if diffusion else _EXTRA_DIMS[:extra]  # DESIGN: repeated b-values -> positional "dwi"
    dims = tuple(reversed(lead_names)) + ("z", "y", "x")

    proxy = img.dataobj
    stored = np.dtype(hdr.get_data_dtype()).newbyteorder("=")
    raw_proxy = nib.arrayproxy.ArrayProxy(proxy.file_like, (shape, hdr.get_data_dtype(), proxy.offset, 1.0, 0.0),
                                          keep_file_open=False)
    view = _CView(raw_proxy)
    gz = path.name.endswith(".gz")
    cshape = _chunks(view.shape, stored.itemsize, chunks, dims, gz)
    data = dska.from_array(view, chunks=cshape, asarray=False, meta=np.empty((0,) * len(dims), dtype=stored),
                           name=f"nifti-{_token(path, hdr)}")
    if data.dtype != stored:
        data = data.astype(stored)
    slope, inter = getattr(proxy, "slope", None), getattr(proxy, "inter", None)  # nib.load moves scl_* here
    slope = 1.0 if slope is None or not np.isfinite(slope) else float(slope)
    inter = 0.0 if inter is None or not np.isfinite(inter) else float(inter)
    out = stored if raw else _out_dtype(stored, slope, inter)
    if not raw and (slope != 1.0 or inter != 0.0):
        work = np.float64 if out.kind == "f" else np.int64
        data = (data.astype(work) * (slope if out.kind == "f" else int(slope)) + (inter if out.kind == "f" else int(inter))).astype(out)

    lps = ras_to_lps(aff_ras)
    g = coords_from_affine(lps, shape[2::-1])
    coords: dict[str, Any] = {}
    for ax in ("x", "y", "z"):
        coords[ax] = xr.Variable(ax, g[ax], attrs={
            "units": "mm", "direction": [float(v) for v in g[f"dir_{ax}"]],
            "long_name": f"{ax} position along its direction (LPS)"})
    pix = hdr["pixdim"]
    if extra >= 1 and not diffusion and time_unit in _TIME_S and float(pix[4]) > 0:
        step = float(pix[4]) * _TIME_S[time_unit]
        t0 = float(hdr["toffset"]) * _TIME_S[time_unit]
        coords["t"] = xr.Variable("t", t0 + np.arange(shape[3]) * step, attrs={"units": "s"})

    attrs: dict[str, Any] = {}
    if sidecar:
        attrs.update(_attrs_from_bids(meta))
        if "SliceTiming" in meta and len(meta["SliceTiming"]) == shape[2]:
            coords["slice_time"] = xr.Variable("z", np.asarray(meta["SliceTiming"], dtype=np.float64), attrs={"units": "s"})
        pe = meta.get("PhaseEncodingDirection")
        if isinstance(pe, str) and pe[:1] in "ijk":
            attrs["phase_encoding_direction"] = "xyz"["ijk".index(pe[0])] + pe[1:]
        if diffusion:
            coords["diffusion_b_value"] = xr.Variable("dwi", bval)
            if bvec is not None and bvec.shape == (3, shape[3]):
                frame = lps[:3, :3] / np.linalg.norm(lps[:3, :3], axis=0)
                v = bvec.copy()
                if np.linalg.det(frame) > 0:  # FSL: i is negated for a positive determinant
                    v[0] = -v[0]
                world = frame @ v
                for k in range(3):
                    coords[f"diffusion_gradient_{k}"] = xr.Variable("dwi", world[k])
    if not raw and "units" not in attrs and str(attrs.get("modality", "")).upper() == "CT":
        attrs["units"] = "HU"
    da = xr.DataArray(data, dims=dims, coords=coords, attrs=attrs, name=name)
    da.encoding.update({
        "source": str(path),
        "stored_dtype": stored.str,
        "scl_slope": slope,
        "scl_inter": inter,
        "preferred_chunks": dict(zip(dims, cshape)),
    })
    return da


def _units(hdr) -> tuple[int, int]:
    code = int(hdr["xyzt_units"])
    return code & 0x07, code & 0x38


def _token(path: Path, hdr) -> str:
    from dask.base import tokenize

    st = path.stat()
    return tokenize(str(path.resolve()), st.st_size, st.st_mtime_ns, hdr.binaryblock)


def _attrs_from_bids(meta: dict) -> dict:
    out: dict[str, Any] = {}
    for key, (attr, factor) in BIDS_ATTRS.items():
        v = meta.get(key)
        if v is None or isinstance(v, (list, dict)):
            continue
        if factor is not None and isinstance(v, (int, float)):
            v = round(float(v) * factor, 9)
        if isinstance(v, float) and v.is_integer() and attr in ("series_number", "acquisition_number", "echo_train_length"):
            v = int(v)
        out[attr] = v
    it = meta.get("ImageType")
    if isinstance(it, list):
        out["image_type"] = "\\".join(str(s) for s in it)
    return out
