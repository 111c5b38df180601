"""dcmxr.interop: highdicom / SimpleITK / nibabel round trips and real-data oracles.

Oracles (independent readers of the same DICOM files):
- SimpleITK's ImageSeriesReader (GDCM): origin, spacing, direction, voxel values;
- highdicom's get_volume_from_series: affine (via Volume.match_geometry) and values;
- dcm2niix's reference NIfTI (dcm_qa Ref/): RAS affine and values, compared through
  nibabel's as_closest_canonical;
- pydicom's ImagePositionPatient for the gantry-tilted CT, where ITK ignores the tilt.
"""
from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np
import pytest
import xarray as xr

import dcmxr
from dcmxr import interop as I
from dcmxr.errors import ExportError, GeometryError
from dcmxr.testing.assertions import assert_geometry_equal

from _data import DATA, data_path

sitk = pytest.importorskip("SimpleITK")
hd = pytest.importorskip("highdicom")
nib = pytest.importorskip("nibabel")
pydicom = pytest.importorskip("pydicom")


@lru_cache(maxsize=None)
def _open(rel: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if rel == "eCT_Supplemental":
            return dcmxr.open_series(pydicom.data.get_testdata_file("eCT_Supplemental.dcm"))
        return dcmxr.open_series(data_path(rel))


def _vol3(da):
    return da.isel({d: 0 for d in da.dims if d not in ("z", "y", "x")})


def _same(back, src, atol=1e-4):  # regular grid = mean step: DICOM positions jitter ~1e-6 mm
    assert_geometry_equal(back, src, atol=atol)
    np.testing.assert_array_equal(back.transpose(*src.dims).values, src.values)


ROUND_TRIP = [
    "ct/dcmqi/ct-3slice",
    "eCT_Supplemental",  # enhanced CT, x direction -L (RPI)
    "mr/dcm_qa/In/Orientation/ax/axasc35",  # oblique mosaic, (t, z, y, x)
    "mr/dcm_qa/In/Orientation/sag/sagasc36",
    "mr/dicom2nifti/hitachi/anatomical/001",  # oblique
]


# ------------------------------------------------------------------ round trips
@pytest.mark.parametrize("rel", ROUND_TRIP)
def test_simpleitk_round_trip(rel):
    src = _vol3(_open(rel))
    img = I.to_simpleitk(src)
    assert img.GetSize() == (src.sizes["x"], src.sizes["y"], src.sizes["z"])
    np.testing.assert_allclose(img.GetOrigin(), src.dcm.origin, atol=1e-9)
    np.testing.assert_allclose(img.GetSpacing(), [src.dcm.spacing[a] for a in "xyz"], atol=1e-9)
    np.testing.assert_allclose(np.reshape(img.GetDirection(), (3, 3)), src.dcm.direction, atol=1e-9)
    # voxel (i, j, k) lands where dcmxr puts it
    idx = (src.sizes["x"] - 1, 1, src.sizes["z"] - 1)
    np.testing.assert_allclose(img.TransformIndexToPhysicalPoint(idx), src.dcm.index_to_world(idx), atol=1e-6)
    _same(I.from_simpleitk(img), src)


@pytest.mark.parametrize("rel", ROUND_TRIP)
def test_highdicom_round_trip(rel):
    src = _open(rel)  # 4-D series: t becomes a custom channel dim and back
    vol = I.to_highdicom_volume(src)
    assert vol.spatial_shape == (src.sizes["z"], src.sizes["y"], src.sizes["x"])
    np.testing.assert_allclose(vol.affine, src.dcm.affine[:, [2, 1, 0, 3]], atol=1e-9)
    assert vol.frame_of_reference_uid == src.attrs.get("frame_of_reference_uid")
    back = I.from_highdicom_volume(vol)
    assert back.dims == src.dims
    _same(back, src)
    if "t" in src.dims:
        np.testing.assert_array_equal(back["t"].values, src["t"].values)


@pytest.mark.parametrize("rel", ROUND_TRIP)
def test_nibabel_round_trip(rel, tmp_path):
    src = _open(rel)
    img = I.to_nibabel(src)
    np.testing.assert_allclose(img.affine, src.dcm.affine_ras, atol=1e-9)
    assert img.shape[:3] == (src.sizes["x"], src.sizes["y"], src.sizes["z"])
    _same(I.from_nibabel(img), src)
    # through a file: the header holds float32 affines
    path = tmp_path / "v.nii.gz"
    nib.save(img, path)
    loaded = nib.load(path)
    np.testing.assert_allclose(loaded.affine, src.dcm.affine_ras, atol=1e-4)
    assert int(loaded.header["sform_code"]) == 1
    back = I.from_nibabel(loaded)
    assert_geometry_equal(back, src, atol=1e-3)
    np.testing.assert_array_equal(back.transpose(*src.dims).values, src.values)
    if "t" in src.dims:
        assert loaded.header.get_zooms()[3] == pytest.approx(float(np.diff(src["t"].values).mean()), abs=1e-3)


def test_slice_becomes_one_slice_volume():
    src = _open("ct/dcmqi/ct-3slice")
    sl = src.isel(z=1)
    img = I.to_simpleitk(sl)
    assert img.GetSize() == (512, 512, 1)
    np.testing.assert_allclose(img.GetOrigin(), src.dcm.index_to_world([0, 0, 1]), atol=1e-9)
    back = I.from_simpleitk(img)
    np.testing.assert_allclose(back.z.values, [float(sl.z)], atol=1e-9)
    np.testing.assert_array_equal(back.isel(z=0).values, sl.values)
    nii = I.to_nibabel(sl)
    assert nii.shape == (512, 512, 1)


def test_rgb_round_trips():
    src = _open("ct/dcmqi/ct-3slice")
    base = (src.astype(np.int16) // 8).clip(0, 255).astype(np.uint8)
    rgb = xr.concat([base, base // 2, base // 4], dim=xr.DataArray(list("RGB"), dims="c"))
    rgb = rgb.transpose("z", "y", "x", "c")
    img = I.to_simpleitk(rgb)
    assert img.GetNumberOfComponentsPerPixel() == 3
    _same(I.from_simpleitk(img), rgb)
    vol = I.to_highdicom_volume(rgb)
    assert vol.channel_shape == (3,)
    _same(I.from_highdicom_volume(vol), rgb)


# ------------------------------------------------------------------ SimpleITK oracle
SITK_ORACLE = [
    "ct/dcmqi/ct-3slice",
    "mr/dicom2nifti/ge/anatomical/001",  # oblique
    "mr/dicom2nifti/hitachi/anatomical/001",  # oblique
    "mr/dicom2nifti/siemens/anatomical/001",
    "mr/dicom2nifti/philips/anatomical/001",
    "perfusion/dcm_qa_philips_asl/In/Classic/401_3D_pCASL_6mm",
]


def _sitk_read(path):
    r = sitk.ImageSeriesReader()
    r.SetFileNames(r.GetGDCMSeriesFileNames(str(path)))
    return r.Execute()


@pytest.mark.parametrize("rel", SITK_ORACLE)
def test_simpleitk_matches_imageseriesreader(rel):
    """to_simpleitk(open_series(p)) == SimpleITK's own reader on the same files."""
    path = data_path(rel)
    ref = _sitk_read(path)
    mine = I.to_simpleitk(_open(rel))
    assert mine.GetSize() == ref.GetSize()
    np.testing.assert_allclose(mine.GetOrigin(), ref.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(mine.GetSpacing(), ref.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(mine.GetDirection(), ref.GetDirection(), atol=1e-5)
    a, b = sitk.GetArrayFromImage(mine), sitk.GetArrayFromImage(ref)
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-4)  # ITK rescales to float for non-integer slopes
    # and the other way: SimpleITK's image converts to what open_series gives
    back = I.from_simpleitk(ref)
    assert_geometry_equal(back, _open(rel), atol=1e-4)


def test_gantry_tilt_is_exact_where_itk_is_not():
    """ITK's reader ignores gantry tilt (slice direction = normal); dcmxr keeps the true
    stacking direction, so every slice origin lands on its ImagePositionPatient (pydicom)."""
    rel = "ct/dicom2nifti_gantrytilt/001"
    path = data_path(rel)
    da = _open(rel)
    assert da.attrs.get("tilt_deg", 0) > 1
    mine, ref = I.to_simpleitk(da), _sitk_read(path)
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(path))
    ipp = np.array([[float(v) for v in pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient]
                    for f in files])
    ipp = ipp[np.argsort(ipp @ np.reshape(mine.GetDirection(), (3, 3))[:, 2])]
    for k in range(mine.GetSize()[2]):
        np.testing.assert_allclose(mine.TransformIndexToPhysicalPoint((0, 0, k)), ipp[k], atol=1e-3)
    np.testing.assert_allclose(mine.GetOrigin(), ref.GetOrigin(), atol=1e-4)
    dm, dr = np.reshape(mine.GetDirection(), (3, 3)), np.reshape(ref.GetDirection(), (3, 3))
    np.testing.assert_allclose(dm[:, :2], dr[:, :2], atol=1e-6)  # in-plane axes agree
    assert np.abs(dm[:, 2] - dr[:, 2]).max() > 0.1  # the stack axis: ITK's normal vs the true tilt
    np.testing.assert_array_equal(sitk.GetArrayFromImage(mine), sitk.GetArrayFromImage(ref))
    with pytest.raises(GeometryError, match="orthogonal"):
        I.to_highdicom_volume(da)
    # SimpleITK carries the sheared direction; it converts back exactly
    assert_geometry_equal(I.from_simpleitk(mine), da, atol=1e-6)


# ------------------------------------------------------------------ highdicom oracle
HD_ORACLE = [
    "ct/dcmqi/ct-3slice",
    "seg/dcmqi/23x38x3/image",
    "perfusion/dcm_qa_philips_asl/In/Classic/201_pCASL",
    "perfusion/dcm_qa_philips_asl/In/Classic/401_3D_pCASL_6mm",
]


@pytest.mark.parametrize("rel", HD_ORACLE)
def test_highdicom_matches_get_volume_from_series(rel):
    path = data_path(rel)
    files = sorted(p for p in path.iterdir() if p.is_file())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = hd.get_volume_from_series([pydicom.dcmread(f) for f in files])
    da = _open(rel)
    mine = I.to_highdicom_volume(da)
    # same voxel grid up to axis order/flips: highdicom can match it without resampling
    matched = mine.match_geometry(ref)
    assert matched.geometry_equal(ref, tol=1e-4)
    np.testing.assert_allclose(matched.affine, ref.affine, atol=1e-4)
    np.testing.assert_allclose(matched.array, ref.array, rtol=1e-6, atol=1e-4)
    assert mine.frame_of_reference_uid == ref.frame_of_reference_uid
    back = I.from_highdicom_volume(ref)  # canonical stacking == open_series
    assert_geometry_equal(back, da, atol=1e-4)
    np.testing.assert_allclose(back.values, da.values, rtol=1e-6, atol=1e-4)


# ------------------------------------------------------------------ dcm2niix oracle
@pytest.mark.parametrize("ref_name", ["ax_asc_35sl_6.nii", "cor_asc_36sl_13.nii", "sag_asc_36sl_16.nii"])
def test_nibabel_matches_dcm2niix(ref_name):
    """to_nibabel gives dcm2niix's grid: equal after nibabel's as_closest_canonical."""
    import json

    ref_path = DATA / "mr/dcm_qa/Ref" / ref_name
    if not ref_path.exists():
        cands = sorted((DATA / "mr/dcm_qa/Ref").glob(ref_name.split("_")[0] + "*.nii"))
        if not cands:
            pytest.skip(f"no dcm2niix reference {ref_name}")
        ref_path = cands[0]
    series = int(json.loads(ref_path.with_suffix(".json").read_text())["SeriesNumber"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        da = dcmxr.open_series(dcmxr.scan(DATA / "mr/dcm_qa/In"), series=series)
    ref = nib.as_closest_canonical(nib.load(ref_path))
    mine = nib.as_closest_canonical(I.to_nibabel(da))
    assert mine.shape == ref.shape
    np.testing.assert_allclose(mine.affine, ref.affine, atol=1e-3)
    np.testing.assert_array_equal(np.asanyarray(mine.dataobj), np.asanyarray(ref.dataobj))


# ------------------------------------------------------------------ errors
def test_errors_are_clear():
    da = _open("ct/dcmqi/ct-3slice")
    plain = xr.DataArray(np.zeros((2, 3, 4)), dims=("z", "y", "x"))
    for f in (I.to_simpleitk, I.to_highdicom_volume, I.to_nibabel):
        with pytest.raises(GeometryError, match="no 'x' coordinate.*no DICOM geometry"):
            f(plain)
        with pytest.raises(TypeError):
            f(da.to_dataset(name="v"))
    irregular = xr.concat([da.isel(z=[0, 1]), da.isel(z=[2]).assign_coords(z=da.z[2:] + 5.0)], dim="z")
    irregular.z.attrs.update(da.z.attrs)
    for f in (I.to_simpleitk, I.to_highdicom_volume, I.to_nibabel):
        with pytest.raises(GeometryError, match="'z' is not regularly spaced"):
            f(irregular)
    four = _open("mr/dcm_qa/In/Orientation/ax/axasc35")
    with pytest.raises(ExportError, match=r"\['t'\].*isel\(t=0\)"):
        I.to_simpleitk(four)
    with pytest.raises(ExportError, match="dtype"):
        I.to_nibabel(da.astype(object))
    with pytest.raises(GeometryError, match="3-D"):
        I.from_simpleitk(sitk.Image(4, 4, sitk.sitkUInt8))


@pytest.mark.parametrize("module,func,extra", [
    ("SimpleITK", I.to_simpleitk, "itk"),
    ("highdicom", I.to_highdicom_volume, "export"),
    ("nibabel", I.to_nibabel, "export"),
])
def test_missing_dependency_names_the_extra(monkeypatch, module, func, extra):
    from dcmxr.errors import MissingDependencyError

    da = _open("ct/dcmqi/ct-3slice")
    monkeypatch.setitem(__import__("sys").modules, module, None)  # import now raises ImportError
    with pytest.raises(MissingDependencyError, match=rf"dcmxr\[{extra}\]"):
        func(da)
