"""dcmxr.transform: reorient, flip, crop, pad, resample, resample_like, deskew.

References used, each independent of dcmxr:

* nibabel ``as_closest_canonical`` on dcm2niix's NIfTI of 21 Siemens mosaic
  series (axial/coronal/sagittal, oblique) for :func:`reorient`;
* SimpleITK (its own ``ImageSeriesReader`` + ``ResampleImageFilter``) for
  :func:`resample` and :func:`resample_like` on real CT and oblique MR;
* scipy.ndimage on the whole in-memory array (our chunked version must agree);
* dcm2niix's gantry-tilt correction (``_Tilt_1`` output) for :func:`deskew`;
* analytic data: a field linear in world position is reproduced exactly by
  linear interpolation on any grid, in any orientation.
"""
from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import threading
import tracemalloc
import warnings
from functools import lru_cache

import dask
import dask.array as dska
import numpy as np
import pytest
import xarray as xr

import dcmxr
from _data import DATA, data_path
from dcmxr.errors import GeometryError
from dcmxr.geometry import coords_from_affine, lps_to_ras
from dcmxr.transform import crop, deskew, flip, pad, reorient, resample, resample_like

sitk = pytest.importorskip("SimpleITK")
nib = pytest.importorskip("nibabel")
ndimage = pytest.importorskip("scipy.ndimage")


# --------------------------------------------------------------------- helpers
def _open(path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dcmxr.open_series(str(path), **kw)


@lru_cache(maxsize=None)
def _orientation_table():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dcmxr.scan(str(data_path("mr/dcm_qa/In/Orientation")))


def grid_array(affine, shape, data=None, chunks=-1, lead=None, **attrs):
    """A DataArray on the regular grid ``affine`` (LPS, [i_x, i_y, i_z] -> mm), dims (z, y, x)."""
    c = coords_from_affine(affine, shape)
    coords = {ax: xr.Variable(ax, c[ax], {"units": "mm", "direction": list(c["dir_" + ax])}) for ax in "xyz"}
    if data is None:
        data = dska.zeros(shape, dtype=np.uint8, chunks=chunks)
    elif not isinstance(data, dska.Array):
        data = dska.from_array(np.asarray(data), chunks=chunks)
    dims = ("z", "y", "x")
    if lead:
        dims = (lead,) + dims
    return xr.DataArray(data, dims=dims, coords=coords, attrs=attrs)


def rotation(deg_x=0.0, deg_y=0.0, deg_z=0.0):
    a, b, c = np.deg2rad([deg_x, deg_y, deg_z])
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


def affine(rot=np.eye(3), spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0)):
    A = np.eye(4)
    A[:3, :3] = np.asarray(rot) * np.asarray(spacing)
    A[:3, 3] = origin
    return A


def world_of(da):
    """LPS positions of every voxel of a (z, y, x) array, shape (nz, ny, nx, 3)."""
    d = {ax: np.asarray(da[ax].attrs["direction"]) for ax in "xyz"}
    z, y, x = np.meshgrid(da.z.values, da.y.values, da.x.values, indexing="ij")
    return x[..., None] * d["x"] + y[..., None] * d["y"] + z[..., None] * d["z"]


LIN = np.array([0.7, -1.3, 2.1])


def strictly_inside(src, out):
    """Output voxels whose source index lies in [0, n - 1] on every axis (no edge replication involved)."""
    idx = src.dcm.world_to_index(world_of(out).reshape(-1, 3))
    n = np.array([src.sizes["x"], src.sizes["y"], src.sizes["z"]])
    ok = np.all((idx >= -1e-6) & (idx <= n - 1 + 1e-6), axis=-1)
    return ok.reshape(out.shape[-3:])


def linear_field(da):
    """World-linear values (mm-weighted sum of L, P, S): linear interpolation reproduces them exactly."""
    return (world_of(da) @ LIN + 5.0).astype(np.float64)


def sitk_read(folder):
    r = sitk.ImageSeriesReader()
    r.SetFileNames(r.GetGDCMSeriesFileNames(str(folder)))
    return r.Execute()


def sitk_affine(img):
    A = np.eye(4)
    A[:3, :3] = np.array(img.GetDirection()).reshape(3, 3) * np.array(img.GetSpacing())
    A[:3, 3] = img.GetOrigin()
    return A


def sitk_resample_like(out, img, interpolator):
    """SimpleITK's ResampleImageFilter onto the grid of ``out`` (NaN outside)."""
    A = out.dcm.affine
    sp = np.linalg.norm(A[:3, :3], axis=0)
    f = sitk.ResampleImageFilter()
    f.SetOutputOrigin(tuple(A[:3, 3]))
    f.SetOutputSpacing(tuple(sp))
    f.SetOutputDirection(tuple((A[:3, :3] / sp).ravel()))
    f.SetSize([out.sizes["x"], out.sizes["y"], out.sizes["z"]])
    f.SetInterpolator(interpolator)
    f.SetDefaultPixelValue(float("nan"))
    f.SetOutputPixelType(sitk.sitkFloat32)
    return sitk.GetArrayFromImage(f.Execute(sitk.Cast(img, sitk.sitkFloat32)))


SITK_SERIES = ["ct/dcmqi/ct-3slice", "mr/dicom2nifti/philips/anatomical/001", "mr/dicom2nifti/hitachi/anatomical/001"]


# ==================================================================== reorient
DCM_QA = sorted(p.name for p in (DATA / "mr/dcm_qa/Ref").glob("*.nii")) if (DATA / "mr/dcm_qa/Ref").exists() else ["missing"]


@pytest.mark.parametrize("name", DCM_QA)
def test_reorient_ras_equals_nibabel_closest_canonical(name):
    """reorient("RAS") of 21 oblique mosaic series (ax/cor/sag) = nibabel as_closest_canonical of dcm2niix's
    NIfTI: the same voxels in the same order, the same RAS affine, and orientation reported as RAS."""
    ref = data_path("mr/dcm_qa/Ref", name)
    sn = int(json.loads(ref.with_suffix(".json").read_text())["SeriesNumber"])
    da = _open_table_series(sn)
    can = nib.as_closest_canonical(nib.load(str(ref)))
    r = reorient(da, "RAS")
    assert isinstance(r.data, dska.Array)  # lazy
    assert r.dims == da.dims == ("t", "z", "y", "x")
    assert r.dcm.orientation == "RAS"
    np.testing.assert_allclose(r.dcm.affine_ras, can.affine, atol=1e-3)
    np.testing.assert_array_equal(r.transpose("x", "y", "z", "t").values, np.asarray(can.dataobj))
    for ax in "xyz":
        assert np.all(np.diff(r[ax].values) > 0)  # coordinates stay increasing


def _open_table_series(sn):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dcmxr.open_series(_orientation_table(), series=sn)


CODES = ["".join(p[k][s] for k, s in zip(range(3), signs))
         for p in itertools.permutations(("LR", "PA", "SI")) for signs in itertools.product((0, 1), repeat=3)]


@pytest.mark.parametrize("code", ["RAS", "LPS", "PIR", "SAL", "ALI", "SRP"])
def test_reorient_any_code_and_back_is_identity(code):
    """Every code is reported back by .dcm.orientation; reorienting back gives the exact original
    (voxels, coordinates, directions); world positions of all voxels are preserved."""
    sag = _open(next(iter(sorted(data_path("mr/dcm_qa/In/Orientation/sag").iterdir()))))
    r = reorient(sag, code)
    assert r.dcm.orientation == code
    back = reorient(r, sag.dcm.orientation)
    xr.testing.assert_identical(back.drop_attrs(deep=False).reset_coords(drop=True),
                                sag.drop_attrs(deep=False).reset_coords(drop=True))
    np.testing.assert_allclose(back.dcm.affine, sag.dcm.affine, atol=1e-9)
    # the voxel with a given world position has the same value
    v = sag.isel(t=0).values
    w = world_of(sag.isel(t=0))
    rv = r.isel(t=0)
    idx = np.round(rv.dcm.world_to_index(w.reshape(-1, 3))).astype(int)
    np.testing.assert_array_equal(rv.values[idx[:, 2], idx[:, 1], idx[:, 0]], v.ravel())
    # reorient twice with the same code = once
    xr.testing.assert_identical(reorient(r, code), r)


def test_reorient_all_48_codes_synthetic_oblique():
    A = affine(rotation(10, -20, 30), (0.5, 0.8, 2.0), (10, -20, 30))
    a = grid_array(A, (4, 5, 6), data=np.arange(120, dtype=np.int16).reshape(4, 5, 6))
    for code in CODES:
        r = reorient(a, code)
        assert r.dcm.orientation == code
        assert sorted(r.values.ravel()) == list(range(120))
        xr.testing.assert_identical(reorient(r, a.dcm.orientation), a)


def test_reorient_rejects_bad_codes_and_nonspatial():
    a = grid_array(np.eye(4), (2, 2, 2))
    for bad in ("RAA", "RA", "XYZ", 5):
        with pytest.raises(ValueError):
            reorient(a, bad)
    with pytest.raises(GeometryError, match="no 'x' coordinate"):
        reorient(xr.DataArray(np.zeros((2, 2, 2)), dims=("z", "y", "x")), "RAS")


def test_flip_keeps_world_positions_and_increasing_coords():
    A = affine(rotation(0, 15, 0), (0.5, 0.7, 2.0), (3, 4, 5))
    a = grid_array(A, (3, 4, 5), data=np.arange(60.0).reshape(3, 4, 5), chunks=(1, 2, 5))
    f = flip(a, ("x", "z"))
    assert isinstance(f.data, dska.Array)
    np.testing.assert_array_equal(f.values, a.values[::-1, :, ::-1])
    assert np.all(np.diff(f.x.values) > 0) and np.all(np.diff(f.z.values) > 0)
    np.testing.assert_allclose(world_of(f), world_of(a)[::-1, :, ::-1], atol=1e-9)
    F = np.diag([-1.0, 1.0, -1.0, 1.0])
    F[0, 3], F[2, 3] = 4, 2  # index i -> n - 1 - i
    np.testing.assert_allclose(f.dcm.affine, A @ F, atol=1e-9)
    xr.testing.assert_identical(flip(f, ("z", "x")), a)
    with pytest.raises(ValueError):
        flip(a, "t")


# ================================================================= crop / pad
def test_crop_index_mm_and_world_box():
    A = affine(np.eye(3), (0.5, 0.5, 2.0), (-10, -20, -30))
    a = grid_array(A, (10, 40, 30), data=np.random.default_rng(0).random((10, 40, 30)), chunks=(5, 20, 30))
    c = crop(a, {"z": slice(2, 7), "x": slice(5, 25)})
    assert c.shape == (5, 40, 20) and isinstance(c.data, dska.Array)
    np.testing.assert_allclose(c.dcm.affine[:3, :3], A[:3, :3])
    np.testing.assert_allclose(c.dcm.affine[:3, 3], (A @ np.array([5, 0, 2, 1]))[:3])
    np.testing.assert_array_equal(c.values, a.values[2:7, :, 5:25])
    # mm coordinate ranges (inclusive), margin in voxels and in mm
    m = crop(a, {"y": (-15.0, -10.0)})
    assert m.y.values[0] == -15.0 and m.y.values[-1] == -10.0
    m2 = crop(a, {"y": (-15.0, -10.0)}, margin="1 mm")
    assert m2.sizes["y"] == m.sizes["y"] + 4
    # world box = another array's bounds
    sub = a.isel(z=slice(3, 6), y=slice(10, 20), x=slice(0, 4))
    w = crop(a, sub.dcm.bounds)
    xr.testing.assert_identical(w, sub)
    with pytest.raises(ValueError):
        crop(a, {"z": (500.0, 600.0)})


def test_crop_to_mask_with_margin_and_mask_on_other_grid():
    A = affine(rotation(0, 0, 20), (0.8, 0.8, 3.0), (1, 2, 3))
    a = grid_array(A, (12, 30, 30), data=np.arange(12 * 900, dtype=np.int32).reshape(12, 30, 30), chunks=(4, 30, 30))
    mask = xr.zeros_like(a, dtype=bool)
    mask[4:7, 10:12, 20:25] = True
    c = crop(a, mask, margin=2)
    assert c.shape == (3 + 4, 2 + 4, 5 + 4)
    np.testing.assert_array_equal(c.values, a.values[2:9, 8:14, 18:27])
    np.testing.assert_allclose(c.dcm.affine[:3, 3], (A @ np.array([18, 8, 2, 1]))[:3])
    # margin clipped at the array edge; mm margin is per-axis voxels rounded up
    assert crop(a, mask, margin=100).shape == a.shape
    assert crop(a, mask, margin="3 mm").shape == (3 + 2, 2 + 8, 5 + 8)
    other = mask.assign_coords(x=mask.x + 0.4)
    with pytest.raises(GeometryError, match="resample_like"):
        crop(a, other)
    with pytest.raises(ValueError, match="no True voxel"):
        crop(a, xr.zeros_like(mask))


def test_pad_extends_coordinates_regularly():
    A = affine(rotation(5, 0, 0), (0.5, 0.6, 2.5), (0, 0, 0))
    a = grid_array(A, (4, 6, 8), data=np.ones((4, 6, 8), np.int16), chunks=(2, 6, 8))
    p = pad(a, {"z": (2, 1), "x": 3}, value=-1024)
    assert p.shape == (7, 6, 14) and isinstance(p.data, dska.Array) and p.dtype == np.int16
    np.testing.assert_allclose(p.dcm.affine[:3, :3], A[:3, :3], atol=1e-9)
    np.testing.assert_allclose(p.dcm.affine[:3, 3], (A @ np.array([-3, 0, -2, 1]))[:3], atol=1e-9)
    assert p.values[0, 0, 0] == -1024 and p.values[2, 0, 3] == 1
    assert p.x.attrs["direction"] == a.x.attrs["direction"]
    q = pad(a, {"z": ("5 mm", 0)})  # 5 mm / 2.5 mm = 2 slices
    assert q.sizes["z"] == 6
    np.testing.assert_allclose(crop(p, {"z": slice(2, 6), "x": slice(3, 11)}).dcm.affine, a.dcm.affine, atol=1e-9)


# ==================================================================== resample
@pytest.mark.parametrize("folder", SITK_SERIES)
def test_resample_matches_simpleitk(folder):
    """resample(da, 1 mm) against SimpleITK's ResampleImageFilter on the image read by SimpleITK's own
    ImageSeriesReader: same source geometry, and linear / nearest values on the same output grid
    (linear: within float32 rounding; nearest: differs only on ties)."""
    path = data_path(folder)
    da = _open(path)
    img = sitk_read(path)
    np.testing.assert_allclose(da.dcm.affine, sitk_affine(img), atol=1e-4)
    np.testing.assert_array_equal(da.values, sitk.GetArrayFromImage(img))
    lin = resample(da, "1 mm", method="linear")
    assert isinstance(lin.data, dska.Array) and lin.dtype == np.float32
    np.testing.assert_allclose(np.diag(np.abs(np.linalg.qr(lin.dcm.affine[:3, :3])[1])), 1.0, atol=1e-9)
    np.testing.assert_allclose(lin.dcm.direction, da.dcm.direction, atol=1e-12)
    ref = sitk_resample_like(lin, img, sitk.sitkLinear)
    ours = lin.values
    assert np.array_equal(np.isnan(ours), np.isnan(ref))
    np.testing.assert_allclose(ours, ref, atol=1e-5 * np.nanmax(np.abs(ref)) + 1e-3, equal_nan=True)
    near = resample(da, 1.0, method="nearest")
    assert near.dtype == da.dtype
    refn = sitk_resample_like(near, img, sitk.sitkNearestNeighbor)
    differ = near.values.astype(np.float32) != refn
    # ties (a fractional source index of exactly .5) may round either way: only there may values differ
    src_idx = da.dcm.world_to_index(world_of(near)[differ])
    frac = np.abs(src_idx - np.floor(src_idx) - 0.5).min(axis=-1)
    assert np.all(frac < 1e-3), f"{differ.sum()} nearest-neighbour values differ away from ties"


@pytest.mark.parametrize("method,interp", [("linear", "sitkLinear"), ("nearest", "sitkNearestNeighbor")])
def test_resample_like_oblique_mr_onto_axial_grid_matches_simpleitk(method, interp):
    """An oblique MR (Hitachi, 4 slices) onto an axial 1.5 mm grid covering its bounds: the inside/outside
    voxels and the values equal SimpleITK's."""
    path = data_path("mr/dicom2nifti/hitachi/anatomical/001")
    da, img = _open(path), sitk_read(path)
    b = da.dcm.bounds
    shape = tuple(int(v) for v in (np.ceil((b[1] - b[0]) / 1.5)[::-1] + 1))
    tgt = grid_array(affine(np.eye(3), (1.5, 1.5, 1.5), b[0]), shape, chunks=(16, 40, 40))
    out = resample_like(da, tgt, method=method, fill_value=np.nan if method == "linear" else -1)
    o = out.values.astype(np.float32)
    ref = sitk_resample_like(out, img, getattr(sitk, interp))
    inside = ~np.isnan(ref)
    assert 0.1 < inside.mean() < 0.9  # the oblique slab cuts the axial grid
    if method == "linear":
        assert np.array_equal(np.isnan(o), ~inside)
    else:
        assert np.array_equal(o == -1, ~inside)
    np.testing.assert_allclose(o[inside], ref[inside], atol=2e-3)


def test_resample_like_ct_onto_rotated_grid_matches_simpleitk():
    path = data_path("ct/dcmqi/ct-3slice")
    ct, img = _open(path), sitk_read(path)
    A = affine(rotation(0, 0, 25), (0.9, 0.9, 1.0), ct.dcm.origin + np.array([-50, 100, 0.0]))
    tgt = grid_array(A, (3, 400, 400), chunks=(3, 128, 128))
    out = resample_like(ct, tgt, method="linear")
    ref = sitk_resample_like(out, img, sitk.sitkLinear)
    assert np.array_equal(np.isnan(out.values), np.isnan(ref))
    np.testing.assert_allclose(out.values, ref, atol=1e-3, equal_nan=True)


@pytest.mark.parametrize("order,method", [(1, "linear"), (3, "cubic"), (0, "nearest")])
def test_resample_matches_scipy_on_in_memory_array(order, method):
    """Chunked resampling (many small input chunks, many output chunks, halos) equals
    scipy.ndimage.affine_transform on the whole array (cubic: the local spline prefilter agrees
    to < 1e-3 of the data range)."""
    rng = np.random.default_rng(1)
    vol = ndimage.gaussian_filter(rng.random((24, 40, 36)), 2).astype(np.float32)
    A = affine(rotation(3, 0, 0), (0.9, 0.8, 2.0), (5, 6, 7))
    a = grid_array(A, vol.shape, data=vol, chunks=(5, 13, 11))
    tgt_aff = affine(rotation(3, 0, 0) @ rotation(0, 0, 17), (0.7, 0.75, 1.3), (4, 8, 9))
    tgt = grid_array(tgt_aff, (30, 40, 40))
    out = resample_like(a, tgt, method=method, chunks={"z": 7, "y": 16, "x": 13}, fill_value=0)
    assert out.data.npartitions == 5 * 3 * 4
    M = np.linalg.inv(A) @ tgt_aff  # output xyz index -> input xyz index
    P = np.eye(4)[[2, 1, 0, 3]]
    Mz = P @ M @ P  # the same in array (z, y, x) order
    ref = ndimage.affine_transform(vol, Mz[:3, :3], Mz[:3, 3], output_shape=(30, 40, 40), order=order,
                                   mode="nearest", output=np.float32)
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in (30, 40, 40)], indexing="ij"), -1) @ Mz[:3, :3].T + Mz[:3, 3]
    inside = np.all((idx >= -0.5) & (idx <= np.array(vol.shape) - 0.5), axis=-1)
    ref[~inside] = 0
    tol = {0: 0, 1: 1e-5, 3: 1e-3 * np.ptp(vol)}[order]
    if order == 0:  # ties aside, identical
        assert (out.values != ref).mean() < 1e-3
    else:
        np.testing.assert_allclose(out.values, ref, atol=tol)


def test_linear_field_is_exact_on_any_grid_including_irregular_input():
    """Linear interpolation reproduces a world-linear field exactly, whatever the orientations, also when
    the input has a missing slice (irregular z: the map_coordinates path)."""
    A = affine(rotation(12, -7, 33), (0.9, 1.1, 2.0), (-20, 10, 5))
    a = grid_array(A, (14, 30, 28), chunks=(4, 15, 14))
    a = a.copy(data=dska.from_array(linear_field(a), chunks=(4, 15, 14)))
    irregular = a.isel(z=[0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13])  # slice 4 missing
    with pytest.raises(GeometryError):
        irregular.dcm.affine
    tgt = grid_array(affine(rotation(0, 25, 0), (1.0, 1.0, 1.0), (-15, 14, 12)), (12, 14, 16), chunks=(5, 7, 16))
    for src in (a, irregular):
        out = resample_like(src, tgt, method="linear").values
        want = linear_field(tgt)
        ok = strictly_inside(src, tgt)
        assert ok.sum() > 200 and not np.isnan(out[ok]).any()
        np.testing.assert_allclose(out[ok], want[ok], atol=1e-3)
    # resample() makes an irregular stack regular
    reg = resample(irregular, {"z": 2.0}, method="linear")
    assert reg.dcm.is_regular and reg.sizes["z"] == 14
    ok = strictly_inside(irregular, reg)
    np.testing.assert_allclose(reg.values[ok], linear_field(reg)[ok], atol=1e-3)


def test_round_trip_smooth_data():
    """resample_like(a, b) then back onto a's grid ~ a in the interior (smooth data, linear and cubic)."""
    A = affine(rotation(0, 0, 0), (1.0, 1.0, 2.0), (0, 0, 0))
    z, y, x = np.meshgrid(np.arange(20) * 2.0, np.arange(48.0), np.arange(48.0), indexing="ij")
    vol = (np.sin(x / 9) * np.cos(y / 11) + z / 40).astype(np.float32)
    a = grid_array(A, vol.shape, data=vol, chunks=(10, 24, 24), frame_of_reference_uid="1.2.3")
    B = affine(rotation(20, 10, 30), (0.8, 0.8, 0.8), (8, 8, 8))
    b = grid_array(B, (30, 40, 40), frame_of_reference_uid="1.2.3")
    covered = ~np.isnan(resample_like(resample_like(a, b), a).values)  # b's footprint on a's grid
    interior = ndimage.binary_erosion(covered, iterations=3)
    assert interior.sum() > 1000
    for method, tol in (("linear", 0.02), ("cubic", 0.002)):
        # (a NaN fill would spread through the cubic spline prefilter: fill with 0, judge the interior)
        back = resample_like(resample_like(a, b, method=method, fill_value=0.0), a, method=method).values
        assert np.abs(back[interior] - vol[interior]).max() < tol


def test_leading_dims_carried_through():
    """A (t, z, y, x) mosaic: resampling keeps t and its coords and equals resampling each volume."""
    da = _open(next(iter(sorted(data_path("mr/dcm_qa/In/Orientation/cor").iterdir()))))
    out = resample(da, 2.0, method="linear")
    assert out.dims == ("t", "z", "y", "x")
    assert "acquisition_time" in out.coords and "slice_time" not in out.coords
    for t in range(da.sizes["t"]):
        np.testing.assert_array_equal(out.isel(t=t).values, resample(da.isel(t=t), 2.0, method="linear").values)


def test_default_method_by_dtype_and_bool_masks():
    A = affine(rotation(0, 0, 10), (1.0, 1.0, 1.0))
    lab = np.zeros((8, 16, 16), np.uint8)
    lab[2:6, 4:12, 4:12] = 3
    a = grid_array(A, lab.shape, data=lab)
    out = resample(a, 0.5)
    assert out.dtype == np.uint8 and set(np.unique(out.values)) <= {0, 3}
    m = resample_like(a == 3, grid_array(affine(np.eye(3), (0.7, 0.7, 0.7)), (10, 20, 20)))
    assert m.dtype == bool and m.values.any()
    f = resample(a.astype(np.float32), 0.5)
    assert f.dtype == np.float32 and len(np.unique(f.values)) > 2  # linear for floats


def test_spacing_forms():
    A = affine(np.eye(3), (0.5, 0.5, 2.0))
    a = grid_array(A, (10, 20, 20), data=np.ones((10, 20, 20), np.float32))
    assert resample(a, "1 mm").dcm.spacing == pytest.approx({"x": 1, "y": 1, "z": 1})
    assert resample(a, "0.1 cm").shape == (20, 10, 10)
    assert resample(a, {"z": 4}).shape == (5, 20, 20)
    assert resample(a, {"x": "2 voxels"}).dcm.spacing["x"] == pytest.approx(1.0)
    pint = pytest.importorskip("pint")
    assert resample(a, pint.UnitRegistry().Quantity(1, "mm")).shape == (20, 10, 10)
    with pytest.raises(TypeError, match="ambiguous"):
        resample(a, (1, 1, 1))
    with pytest.raises(ValueError):
        resample(a, "1 furlong")
    # same field of view: the voxel-edge box is kept
    r = resample(a, 1.0)
    assert r.x.values[0] - 0.5 == pytest.approx(a.x.values[0] - 0.25)
    assert r.x.values[-1] + 0.5 == pytest.approx(a.x.values[-1] + 0.25)


def test_frame_of_reference_mismatch():
    a = grid_array(np.eye(4), (4, 4, 4), data=np.ones((4, 4, 4), np.float32), frame_of_reference_uid="1.2.3")
    b = grid_array(np.eye(4), (4, 4, 4), frame_of_reference_uid="9.9.9")
    with pytest.raises(GeometryError, match="allow_different_frame=True"):
        resample_like(a, b)
    out = resample_like(a, b, allow_different_frame=True)
    assert out.attrs["frame_of_reference_uid"] == "9.9.9"


def test_non_spatial_input_raises():
    plain = xr.DataArray(np.zeros((2, 3, 4)), dims=("z", "y", "x"))
    a = grid_array(np.eye(4), (2, 3, 4))
    for call in (lambda: resample(plain, 1.0), lambda: resample_like(plain, a), lambda: resample_like(a, plain),
                 lambda: deskew(plain), lambda: crop(plain, {"x": slice(0, 2)}), lambda: pad(plain, {"x": 1})):
        with pytest.raises(GeometryError):
            call()
    nodir = a.copy()
    nodir.x.attrs.pop("direction")
    with pytest.raises(GeometryError, match="direction"):
        resample(nodir, 1.0)
    with pytest.raises(GeometryError, match="expand_dims"):
        resample(a.isel(z=0), 1.0)


# ============================================================ laziness / memory
class _RecordingArray:
    """A lazily generated volume that records which chunks were read."""

    def __init__(self, shape, dtype=np.float32):
        self.shape, self.dtype, self.ndim = shape, np.dtype(dtype), len(shape)
        self.reads, self._lock = [], threading.Lock()

    def __getitem__(self, sl):
        shp = tuple(s.stop - s.start for s in sl)
        if 0 not in shp:
            with self._lock:
                self.reads.append(tuple((s.start, s.stop) for s in sl))
        return np.full(shp, float(sl[0].start), dtype=self.dtype)


def test_resample_like_reads_only_needed_chunks_of_a_1gb_lazy_input():
    """A 1 GiB lazy input (16 chunks of 64 MiB); a small oblique target reads only the 2 chunks
    under it, and peak traced memory stays far below the input size."""
    rec = _RecordingArray((256, 1024, 1024))
    c = coords_from_affine(np.diag([0.5, 0.5, 1.0, 1.0]), rec.shape)
    coords = {ax: xr.Variable(ax, c[ax], {"units": "mm", "direction": list(c["dir_" + ax])}) for ax in "xyz"}
    big = xr.DataArray(dska.from_array(rec, chunks=(16, 1024, 1024), asarray=False, fancy=False),
                       dims=("z", "y", "x"), coords=coords)
    tgt = grid_array(affine(rotation(0, 0, 30), (1, 1, 1), (200, 200, 100)), (20, 40, 40))
    out = resample_like(big, tgt, method="linear")
    tracemalloc.start()
    try:
        with dask.config.set(scheduler="threads", num_workers=2):
            vals = out.values
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert sorted(r[0] for r in rec.reads) == [(96, 112), (112, 128)]  # z = 100..119 mm only
    np.testing.assert_allclose(vals, np.where(world_of(tgt)[..., 2] < 111.5, 96.0, 112.0), atol=1e-6)
    assert peak < 300 * 2**20, f"peak {peak / 2**20:.0f} MiB"


def test_full_downsample_of_a_1gb_lazy_input_stays_bounded():
    """Downsampling all of a 1 GiB lazy input reads every chunk once and never holds it all."""
    rec = _RecordingArray((256, 1024, 1024))
    c = coords_from_affine(np.diag([0.5, 0.5, 1.0, 1.0]), rec.shape)
    coords = {ax: xr.Variable(ax, c[ax], {"units": "mm", "direction": list(c["dir_" + ax])}) for ax in "xyz"}
    big = xr.DataArray(dska.from_array(rec, chunks=(16, 1024, 1024), asarray=False, fancy=False),
                       dims=("z", "y", "x"), coords=coords)
    out = resample(big, 2.0, method="linear")
    tracemalloc.start()
    try:
        with dask.config.set(scheduler="threads", num_workers=2):
            vals = out.values
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(rec.reads) == 16 and vals.shape == (128, 256, 256)
    assert peak < 0.6 * 2**30, f"peak {peak / 2**20:.0f} MiB for a 1024 MiB input"


# ====================================================================== deskew
def test_deskew_gantry_tilt_matches_dcm2niix(tmp_path):
    """14-degree gantry tilt: deskew gives orthogonal axes (dir_x, dir_y, normal) and the same grid as
    dcm2niix's tilt-corrected NIfTI (_Tilt_1: 512x521x4, same affine); values agree within dcm2niix's
    rounding to int16."""
    src = data_path("ct/dicom2nifti_gantrytilt/001")
    ct = _open(src)
    d = deskew(ct, fill_value=-1024)
    assert isinstance(d.data, dska.Array)
    D = d.dcm.direction
    np.testing.assert_allclose(D.T @ D, np.eye(3), atol=1e-9)
    np.testing.assert_allclose(D[:, :2], ct.dcm.direction[:, :2], atol=1e-12)
    tilt = np.degrees(np.arccos(D[:, 2] @ ct.dcm.direction[:, 2]))
    assert tilt == pytest.approx(14.0, abs=0.05)
    assert d.dcm.spacing["z"] == pytest.approx(ct.dcm.spacing["z"] * np.cos(np.radians(tilt)))
    assert d.shape == (4, 521, 512)
    exe = shutil.which("dcm2niix")
    if exe is None:
        pytest.skip("dcm2niix not installed")
    subprocess.run([exe, "-o", str(tmp_path), "-f", "tilt", str(src)], check=True, capture_output=True)
    ref_img = nib.load(str(tmp_path / "tilt_Tilt_1.nii"))
    ref = np.asarray(ref_img.dataobj)
    from _nifti_ref import to_reference_grid

    arr, mapped = to_reference_grid(d, ref_img.affine, ref.shape)
    np.testing.assert_allclose(mapped, ref_img.affine, atol=1e-3)
    assert np.abs(arr.astype(np.float64) - ref).max() <= 0.5 + 1e-3


def test_deskew_keeps_world_positions_of_structures():
    """On the real tilted geometry (the series' own pixels are noise), put known structures at known
    world positions: a world-linear field is reproduced exactly, and the centroid (world mm) of a ball in
    each slice is the same before and after deskew (within a tenth of a voxel)."""
    ct = _open(data_path("ct/dicom2nifti_gantrytilt/001"))
    w = world_of(ct)
    lin = ct.copy(data=dska.from_array(linear_field(ct), chunks=(2, 256, 512)))
    d = deskew(lin)
    got, want = d.values, linear_field(d)
    ok = strictly_inside(lin, d)
    assert ok.mean() > 0.95 and not np.isnan(got[ok]).any()
    np.testing.assert_allclose(got[ok], want[ok], atol=1e-6 * np.abs(want).max())
    centre = w[1, 256, 256] + np.array([10.0, -20.0, 0.0])
    ball = np.clip(60.0 - np.linalg.norm(w - centre, axis=-1), 0, None)  # a cone-shaped ball, radius 60 mm
    db = deskew(ct.copy(data=dska.from_array(ball, chunks=(4, 512, 512))), fill_value=0.0)
    wd, vd = world_of(db), db.values
    for k in range(ct.sizes["z"]):
        ca = (w[k] * ball[k][..., None]).sum((0, 1)) / ball[k].sum()
        cd = (wd[k] * vd[k][..., None]).sum((0, 1)) / vd[k].sum()
        assert np.linalg.norm(ca - cd) < 0.1 * ct.dcm.spacing["y"]
    # and back onto the tilted grid: the ball returns (linear interpolation error only)
    back = resample_like(db, ct, method="linear").values
    assert np.abs(back - ball).max() < 0.5


def test_deskew_is_noop_for_orthogonal_and_rejects_sheared_plane():
    a = grid_array(affine(rotation(10, 0, 0), (1, 1, 2)), (3, 4, 5))
    assert deskew(a) is a
    bad = a.copy()
    bad.y.attrs["direction"] = list(np.array([0.3, 1.0, 0.0]) / np.linalg.norm([0.3, 1.0, 0.0]))
    with pytest.raises(GeometryError, match="not orthogonal"):
        deskew(bad)
