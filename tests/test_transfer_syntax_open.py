"""Every transfer syntax in ../shared/data/transfer_syntax, opened through dcmxr.open_series.

Oracle: pydicom's own ``pixel_array`` for the same file and frame (stored values, ``raw=True``),
and for the default (real-world) values pydicom's ``apply_modality_lut``. Files pydicom cannot
decode (listed in the data MANIFEST) are compared with their uncompressed twin.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest

import dcmxr
from _data import DATA, data_path

TS = DATA / "transfer_syntax"
SKIP_SUFFIX = (".nii", ".gz", ".json", ".txt", ".md")
FILES = sorted(
    str(p.relative_to(TS)) for p in TS.rglob("*") if p.is_file() and not p.name.endswith(SKIP_SUFFIX)
) if TS.exists() else ["missing"]

# pydicom 3.0.2 cannot decode these; the reference is the same data stored uncompressed
TWINS = {"pydicom-data/liver_deflate.dcm": "pydicom-data/liver.dcm",
         "pydicom-data/liver_rle.dcm": "pydicom-data/liver.dcm"}


def _open(path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dcmxr.open_series(str(path), **kw)


def _frames_in_file_order(da) -> np.ndarray:
    """Our frames back in the file's frame order (using the frame_index coord), any dims."""
    values = da.values
    lead = [d for d in da.dims if d not in ("y", "x", "c")]
    flat = values.reshape((-1,) + values.shape[len(lead):])
    if "frame_index" in da.coords:
        idx = np.broadcast_to(da["frame_index"].values, [da.sizes[d] for d in lead]).ravel()
        order = np.argsort(idx)
        return flat[order]
    return flat


@pytest.mark.parametrize("rel", FILES)
def test_stored_values_equal_pydicom(rel):
    path = data_path("transfer_syntax", rel)
    if rel.startswith("pydicom/JPEG-lossy"):
        pytest.skip("12-bit JPEG extended: pydicom cannot decode it; covered in test_decode.py "
                    "against imagecodecs and JPGExtended.dcm")
    ref_path = data_path("transfer_syntax", TWINS[rel]) if rel in TWINS else path
    ds = pydicom.dcmread(ref_path)
    ref = ds.pixel_array
    n = int(ds.get("NumberOfFrames", 1) or 1)
    spp = int(ds.get("SamplesPerPixel", 1))
    ref = ref.reshape((n, ds.Rows, ds.Columns) + ((spp,) if spp > 1 else ()))
    da = _open(path, raw=True)
    if "tile_row0" in dcmxr.scan(str(path)).columns or "MOSAIC" in str(ds.get("ImageType", "")):
        # Siemens MOSAIC: slice k of ours (z increasing along CSA SliceNormalVector) is tile k
        m = int(np.ceil(np.sqrt(da.sizes["z"])))
        r, c = da.sizes["y"], da.sizes["x"]
        vals = da.values
        for k in range(da.sizes["z"]):
            tile = ref[0, (k // m) * r:(k // m + 1) * r, (k % m) * c:(k % m + 1) * c]
            np.testing.assert_array_equal(vals[k], tile, err_msg=f"slice {k}")
        return
    ours = _frames_in_file_order(da)
    ref = ref.reshape(ours.shape)
    assert ours.dtype == ref.dtype.newbyteorder("=") or ours.dtype == ref.dtype
    np.testing.assert_array_equal(ours, ref)


@pytest.mark.parametrize("rel", [f for f in FILES if "CT" in f or "MR_small" in f or "emri" in f])
def test_real_world_values_equal_modality_lut(rel):
    from pydicom.pixels import apply_modality_lut

    path = data_path("transfer_syntax", rel)
    ds = pydicom.dcmread(path)
    da = _open(path)
    ours = _frames_in_file_order(da)
    ref = ds.pixel_array
    if "PerFrameFunctionalGroupsSequence" not in ds:
        ref = apply_modality_lut(ref, ds)
    else:  # enhanced: Pixel Value Transformation per frame (shared or per-frame group)
        ref = ref.astype(float).reshape((-1,) + ref.shape[-2:])
        for i in range(ref.shape[0]):
            pvt = (ds.PerFrameFunctionalGroupsSequence[i].get("PixelValueTransformationSequence")
                   or ds.SharedFunctionalGroupsSequence[0].get("PixelValueTransformationSequence"))
            if pvt:
                ref[i] = ref[i] * float(pvt[0].RescaleSlope) + float(pvt[0].RescaleIntercept)
    np.testing.assert_allclose(ours.reshape(ref.shape).astype(float), np.asarray(ref, dtype=float), rtol=1e-6)


def test_unsupported_transfer_syntax_names_the_extra(tmp_path):
    from dcmxr.errors import UnsupportedTransferSyntaxError

    src = data_path("transfer_syntax", "pydicom", "MR_small_RLE.dcm")
    ds = pydicom.dcmread(src)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2: no codec
    out = tmp_path / "mpeg.dcm"
    ds.save_as(out, enforce_file_format=True)
    da = _open(out, raw=True)
    with pytest.raises(UnsupportedTransferSyntaxError, match=r"dcmxr\["):
        da.compute()
