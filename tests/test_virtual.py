"""Virtual references: DICOM frames read through plain fsspec + zarr, checked against open_series / pydicom."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pydicom
import pytest

from _data import data_path

zarr = pytest.importorskip("zarr")
fsspec = pytest.importorskip("fsspec")
numcodecs = pytest.importorskip("numcodecs")

import dcmxr  # noqa: E402
import dcmxr.stores.codecs  # noqa: E402,F401  (registers the codec with numcodecs)
from dcmxr.stores.virtual import virtual  # noqa: E402

# one file per transfer syntax dcmxr decodes (names from ../shared/data/MANIFEST.md)
SINGLE = [
    ("transfer_syntax", "pydicom", "CT_small.dcm"),              # explicit VR LE
    ("transfer_syntax", "pydicom", "MR_small_implicit.dcm"),     # implicit VR LE
    ("transfer_syntax", "pydicom", "MR_small_bigendian.dcm"),    # explicit VR BE: dtype >i2, no codec
    ("transfer_syntax", "pydicom", "MR_small_RLE.dcm"),          # RLE
    ("transfer_syntax", "pydicom", "MR_small_jp2klossless.dcm"),  # JPEG 2000 lossless
    ("transfer_syntax", "pydicom-data", "JPEG-LL.dcm"),          # JPEG lossless SV1
    ("transfer_syntax", "pydicom-data", "emri_small_jpeg_ls_lossless.dcm"),  # JPEG-LS, 10 frames
    ("transfer_syntax", "pydicom", "SC_rgb_rle.dcm"),            # RGB RLE
    ("transfer_syntax", "pydicom", "SC_rgb_jpeg_dcmtk.dcm"),     # YBR_FULL_422 baseline JPEG -> RGB
    ("transfer_syntax", "pydicom", "JPGExtended.dcm"),           # JPEG extended 12-bit (lossy)
    ("transfer_syntax", "pydicom-data", "HTJ2KLossless_08_RGB.dcm"),  # HTJ2K lossless RGB
    ("transfer_syntax", "pydicom-data", "liver_deflate.dcm"),    # deflated image frames, 1-bit
]


def _plain_zarr(doc: dict):
    """Open the references with fsspec + zarr only (no dcmxr reader)."""
    fs = fsspec.filesystem("reference", fo=doc)
    return fs


def _series_arrays(doc: dict) -> list[str]:
    return sorted(k[: -len("/.zarray")] for k in doc["refs"] if k.endswith(("image/.zarray", "frames/.zarray")))


@pytest.mark.parametrize("parts", SINGLE, ids=[p[-1] for p in SINGLE])
def test_single_file_equals_open_series_raw(parts, tmp_path):
    path = data_path(*parts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        doc = virtual(path, tmp_path / "refs.json")
        expected = dcmxr.open_series(path, raw=True).values
    assert doc["dcmxr_failed"] == []
    (name,) = _series_arrays(doc)
    fs = _plain_zarr(json.loads((tmp_path / "refs.json").read_text()))
    arr = zarr.open_array(fs.get_mapper(name), mode="r", zarr_format=2)
    got = arr[...]
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)
    if parts[-1] not in ("liver_deflate.dcm",):  # pydicom cannot decode that one (MANIFEST.md)
        ref = pydicom.dcmread(path).pixel_array
        np.testing.assert_array_equal(got.reshape(ref.shape), ref)


def test_multifile_series_through_xarray(tmp_path):
    """A 4-slice tilted CT: xarray over the references gives open_series' stored values and coords."""
    import xarray as xr

    src = data_path("ct", "dicom2nifti_gantrytilt")
    doc = virtual(src)
    (name,) = _series_arrays(doc)
    fs = fsspec.filesystem("reference", fo=doc)
    ds = xr.open_zarr(fs.get_mapper(name.rsplit("/", 1)[0]), consolidated=False, zarr_format=2,
                      mask_and_scale=False)
    da = dcmxr.open_series(src, raw=True)
    np.testing.assert_array_equal(ds["image"].values, da.values)
    for ax in ("x", "y", "z"):
        np.testing.assert_allclose(ds[ax].values, da[ax].values)
        assert ds[ax].attrs["direction"] == da[ax].attrs["direction"]
    # real-world values from the stored rescale give open_series' default array
    img = ds["image"].values * ds["image"].attrs["rescale_slope"] + ds["image"].attrs["rescale_intercept"]
    np.testing.assert_array_equal(img, dcmxr.open_series(src).values)


def test_mosaic_is_referenced_as_stored_frames():
    """A Siemens MOSAIC cannot be split into byte ranges per slice: the stored frame is referenced."""
    src = data_path("transfer_syntax", "dcm_qa_ts", "In", "7.dcm")  # JPEG-LS mosaic
    doc = virtual(src)
    (name,) = _series_arrays(doc)
    assert name.endswith("/frames")
    fs = fsspec.filesystem("reference", fo=doc)
    got = zarr.open_array(fs.get_mapper(name), mode="r", zarr_format=2)[0]
    np.testing.assert_array_equal(got, pydicom.dcmread(src).pixel_array)


def test_deflated_dataset_is_reported_not_referenced():
    src = data_path("transfer_syntax", "pydicom", "image_dfl.dcm")
    with pytest.warns(dcmxr.errors.DcmxrWarning, match="not referenced"):
        doc = virtual(src)
    assert len(doc["dcmxr_failed"]) == 1 and "deflated" in doc["dcmxr_failed"][0]["reason"]
    assert _series_arrays(doc) == []


def test_codec_registered_and_read_only():
    from dcmxr.stores.codecs import CODEC_ID, DicomFrameCodec

    cfg = {"id": CODEC_ID, "transfer_syntax": "1.2.840.10008.1.2.5", "rows": 2, "columns": 2}
    codec = numcodecs.get_codec(dict(cfg))
    assert isinstance(codec, DicomFrameCodec)
    assert codec.get_config()["transfer_syntax"] == "1.2.840.10008.1.2.5"
    with pytest.raises(NotImplementedError):
        codec.encode(b"\0" * 8)
    with pytest.raises(dcmxr.errors.DecodeError):
        codec.decode(b"\xfe\xff\x00\xe0\x04\x00\x00\x00abcd")  # one item, not an RLE segment table
