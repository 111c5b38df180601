"""The synthetic builders write real, readable DICOM with the requested content."""

from __future__ import annotations

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")

from dcmxr.testing.synthetic import (  # noqa: E402
    default_pixel_fn,
    expected_geometry,
    expected_stored,
    slice_positions,
    write_enhanced,
    write_series,
)

OBLIQUE = (0.866025, 0.5, 0.0, -0.353553, 0.612372, -0.707107)


def _read_all(paths):
    return [pydicom.dcmread(p) for p in paths]


def test_write_series_default(tmp_path):
    shape, spacing, origin = (4, 6, 5), (2.0, 0.7, 0.4), (1.0, 2.0, 3.0)
    paths = write_series(tmp_path, shape=shape, spacing=spacing, origin=origin, n_timepoints=2)
    assert len(paths) == 8 and all(p.exists() for p in paths)
    # names are shuffled: lexical order is not acquisition order
    assert sorted(paths) != paths
    dss = _read_all(paths)
    exp = expected_stored(shape, 2)
    pos = slice_positions(shape, spacing, (1, 0, 0, 0, 1, 0), origin)
    uids = {d.SOPInstanceUID for d in dss}
    assert len(uids) == 8
    assert len({d.SeriesInstanceUID for d in dss}) == 1
    assert dss[0].SOPInstanceUID != "1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322"
    for n, ds in enumerate(dss):
        t, z = divmod(n, 4)
        assert ds.InstanceNumber == n + 1
        assert ds.TemporalPositionIdentifier == t + 1 and ds.NumberOfTemporalPositions == 2
        assert ds.Rows == 6 and ds.Columns == 5
        np.testing.assert_allclose([float(v) for v in ds.PixelSpacing], [0.7, 0.4])
        np.testing.assert_allclose([float(v) for v in ds.ImagePositionPatient], pos[z], atol=1e-6)
        np.testing.assert_array_equal(ds.pixel_array, exp[t, z])
        assert ds.pixel_array.dtype == np.int16
        assert float(ds.RescaleIntercept) == -1024 and float(ds.RescaleSlope) == 1
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert not any(e.tag.is_private for e in ds)
    # acquisition times differ between time points
    assert dss[0].AcquisitionTime != dss[4].AcquisitionTime


def test_pixel_fn_encodes_indices():
    v = default_pixel_fn(np.array(3), np.array(5), np.array(2), np.array(7))
    assert v // 4096 == 3 and (v // 64) % 64 == 5
    # not symmetric in x and y
    assert default_pixel_fn(0, 0, 1, 2) != default_pixel_fn(0, 0, 2, 1)


def test_expected_stored_overflow():
    with pytest.raises(ValueError, match="do not fit"):
        expected_stored((2, 2, 2), 9, dtype=np.int16)


def test_missing_slices_and_oblique(tmp_path):
    shape, spacing, origin = (6, 4, 4), (1.5, 1.0, 1.0), (0.0, 10.0, -5.0)
    paths = write_series(
        tmp_path, shape=shape, spacing=spacing, iop=OBLIQUE, origin=origin, missing_slices=[2, 4]
    )
    dss = _read_all(paths)
    assert len(dss) == 4
    pos = slice_positions(shape, spacing, OBLIQUE, origin)[[0, 1, 3, 5]]
    got = np.array([[float(v) for v in d.ImagePositionPatient] for d in dss])
    np.testing.assert_allclose(got, pos, atol=1e-6)
    exp = expected_stored(shape, missing_slices=[2, 4])
    assert exp.shape == (1, 4, 4, 4)
    for zi, d in enumerate(dss):
        np.testing.assert_array_equal(d.pixel_array, exp[0, zi])
        assert (d.pixel_array // 64 % 64 == [0, 1, 3, 5][zi]).all()
    geo = expected_geometry(shape, spacing, OBLIQUE, origin, missing_slices=[2, 4])
    np.testing.assert_allclose(geo["z"][1:] - geo["z"][0], [1.5, 4.5, 7.5])
    with pytest.raises(ValueError):
        write_series(tmp_path / "bad", shape=shape, missing_slices=[9])


def test_tilt_written(tmp_path):
    paths = write_series(tmp_path, shape=(3, 4, 4), spacing=(2.0, 1, 1), tilt_deg=10.0, shuffle_names=False)
    assert [p.name for p in paths] == ["0000.dcm", "0001.dcm", "0002.dcm"]
    dss = _read_all(paths)
    assert float(dss[0].GantryDetectorTilt) == 10.0
    p = np.array([[float(v) for v in d.ImagePositionPatient] for d in dss])
    step = p[1] - p[0]
    assert np.linalg.norm(step) == pytest.approx(2.0)
    assert np.degrees(np.arccos(step[2] / 2.0)) == pytest.approx(10.0)


TS = {
    "explicit_le": "1.2.840.10008.1.2.1",
    "implicit_le": "1.2.840.10008.1.2",
    "explicit_be": "1.2.840.10008.1.2.2",
    "deflated": "1.2.840.10008.1.2.1.99",
    "rle": "1.2.840.10008.1.2.5",
    "jpegls": "1.2.840.10008.1.2.4.80",
    "j2k_lossless": "1.2.840.10008.1.2.4.90",
}


@pytest.mark.parametrize("dtype", [np.int16, np.uint16])
@pytest.mark.parametrize("name", list(TS))
def test_transfer_syntaxes(tmp_path, name, dtype):
    ts = TS[name]
    if ts not in {"1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"}:
        from pydicom.pixels import get_encoder

        if not get_encoder(ts).is_available:
            pytest.skip(f"no pydicom encoder installed for {name}")
    shape = (2, 32, 32)  # JPEG 2000 needs frames of a few dozen pixels
    paths = write_series(tmp_path, shape=shape, transfer_syntax=ts, dtype=dtype, n_timepoints=2)
    exp = expected_stored(shape, 2, dtype=dtype)
    for n, p in enumerate(paths):
        ds = pydicom.dcmread(p)
        assert ds.file_meta.TransferSyntaxUID == ts
        assert ds.PixelRepresentation == (1 if np.dtype(dtype).kind == "i" else 0)
        t, z = divmod(n, 2)
        arr = ds.pixel_array
        assert arr.dtype.kind == np.dtype(dtype).kind
        np.testing.assert_array_equal(arr, exp[t, z])


def test_mr_modality_and_rescale(tmp_path):
    paths = write_series(
        tmp_path, shape=(2, 3, 3), modality="MR", rescale_slope=1.0, rescale_intercept=0.0, dtype=np.uint16
    )
    ds = pydicom.dcmread(paths[0])
    assert ds.Modality == "MR" and ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4"
    assert "RescaleSlope" not in ds and "KVP" not in ds
    paths = write_series(tmp_path / "b", shape=(2, 3, 3), modality="MR", rescale_slope=0.5, rescale_intercept=3)
    ds = pydicom.dcmread(paths[0])
    assert float(ds.RescaleSlope) == 0.5 and float(ds.RescaleIntercept) == 3


def test_extra_and_shared_uids(tmp_path):
    main = write_series(tmp_path, shape=(3, 4, 4), prefix="ax_")
    s0 = pydicom.dcmread(main[0])
    loc = write_series(
        tmp_path,
        shape=(1, 8, 8),
        iop=(0, 1, 0, 0, 0, -1),
        prefix="loc_",
        study_uid=s0.StudyInstanceUID,
        series_uid=s0.SeriesInstanceUID,
        frame_of_reference_uid=s0.FrameOfReferenceUID,
        extra={"ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"]},
    )
    ds = pydicom.dcmread(loc[0])
    assert ds.SeriesInstanceUID == s0.SeriesInstanceUID
    assert list(ds.ImageType)[-1] == "LOCALIZER"
    assert len(list(tmp_path.glob("*.dcm"))) == 4


def test_write_enhanced_structure(tmp_path):
    shape, spacing, origin = (5, 8, 6), (2.0, 0.5, 0.25), (3.0, -4.0, 20.0)
    p = write_enhanced(
        tmp_path / "enh.dcm",
        shape=shape,
        spacing=spacing,
        iop=OBLIQUE,
        origin=origin,
        n_timepoints=3,
        missing_slices=[1],
        shuffle_frames=True,
    )
    ds = pydicom.dcmread(p)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2.1"
    assert ds.NumberOfFrames == 12
    assert "ImagePositionPatient" not in ds and "PixelSpacing" not in ds
    sh = ds.SharedFunctionalGroupsSequence[0]
    np.testing.assert_allclose([float(v) for v in sh.PixelMeasuresSequence[0].PixelSpacing], [0.5, 0.25])
    np.testing.assert_allclose([float(v) for v in sh.PlaneOrientationSequence[0].ImageOrientationPatient], OBLIQUE)
    assert float(sh.PixelValueTransformationSequence[0].RescaleIntercept) == -1024
    pointers = [item.DimensionIndexPointer for item in ds.DimensionIndexSequence]
    assert pointers == [0x00209056, 0x00209057, 0x00209128]
    exp = expected_stored(shape, 3, missing_slices=[1])
    present = [0, 2, 3, 4]
    pos = slice_positions(shape, spacing, OBLIQUE, origin)
    arr = ds.pixel_array
    order = []
    for f, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
        fc = item.FrameContentSequence[0]
        t, zi = fc.TemporalPositionIndex - 1, fc.InStackPositionNumber - 1
        assert list(fc.DimensionIndexValues) == [1, zi + 1, t + 1]
        order.append((t, zi))
        ipp = [float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient]
        np.testing.assert_allclose(ipp, pos[present[zi]], atol=1e-6)
        np.testing.assert_array_equal(arr[f], exp[t, zi])
    assert sorted(order) == [(t, z) for t in range(3) for z in range(4)]
    assert order != sorted(order)  # shuffled


def test_write_enhanced_per_frame_rescale_and_mr(tmp_path):
    p = write_enhanced(
        tmp_path / "mr.dcm",
        shape=(3, 4, 4),
        modality="MR",
        rescale_fn=lambda t, k: (1.0 + k, -float(k)),
        transfer_syntax="1.2.840.10008.1.2.5",
    )
    ds = pydicom.dcmread(p)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4.1"
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.5"
    assert "PixelValueTransformationSequence" not in ds.SharedFunctionalGroupsSequence[0]
    for f, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
        pv = item.PixelValueTransformationSequence[0]
        assert float(pv.RescaleSlope) == 1.0 + f and float(pv.RescaleIntercept) == -f
    np.testing.assert_array_equal(ds.pixel_array, expected_stored((3, 4, 4))[0])


def test_write_enhanced_read_by_highdicom(tmp_path):
    hd = pytest.importorskip("highdicom")
    shape, spacing, origin = (6, 8, 7), (1.5, 0.5, 0.75), (3.0, -4.0, 20.0)
    p = write_enhanced(tmp_path / "e.dcm", shape=shape, spacing=spacing, iop=OBLIQUE, origin=origin)
    vol = hd.imread(str(p)).get_volume()
    assert tuple(vol.spatial_shape) == shape
    geo = expected_geometry(shape, spacing, OBLIQUE, origin)
    first = origin + 0 * geo["dir_z"]
    # highdicom's volume holds the same voxel centres (its slice axis may run either way)
    aff = vol.affine
    corners_hd = {tuple(np.round((aff @ [k, 0, 0, 1])[:3], 3)) for k in (0, shape[0] - 1)}
    last = np.asarray(origin) + (shape[0] - 1) * spacing[0] * geo["dir_z"]
    assert corners_hd == {tuple(np.round(first, 3)), tuple(np.round(last, 3))}


def test_assert_geometry_equal():
    xr = pytest.importorskip("xarray")
    from dcmxr.testing.assertions import assert_geometry_equal

    geo = expected_geometry((3, 4, 5), (2.0, 1.0, 0.5), OBLIQUE, (1, 2, 3))

    def make(g):
        coords = {
            k: (k, g[k], {"units": "mm", "direction": g[f"dir_{k}"].tolist()}) for k in ("z", "y", "x")
        }
        return xr.DataArray(np.zeros((3, 4, 5)), dims=("z", "y", "x"), coords=coords)

    a = make(geo)
    assert_geometry_equal(a, make(geo))
    assert_geometry_equal(a.isel(z=1), make(geo).isel(z=1))
    moved = dict(geo, x=geo["x"] + 0.01)
    with pytest.raises(AssertionError, match="'x'"):
        assert_geometry_equal(a, make(moved))
    turned = dict(geo, dir_z=-geo["dir_z"])
    with pytest.raises(AssertionError, match="directions"):
        assert_geometry_equal(a, make(turned))
    with pytest.raises(AssertionError, match="present only"):
        assert_geometry_equal(a, a.drop_vars("z"))


def test_strategies_produce_rotations():
    from hypothesis import given, settings

    from dcmxr.testing.strategies import orientations, rotations

    @settings(max_examples=50, deadline=None)
    @given(rotations(), orientations(oblique=False))
    def check(r, iop):
        np.testing.assert_allclose(r.T @ r, np.eye(3), atol=1e-9)
        assert np.linalg.det(r) == pytest.approx(1.0)
        assert sorted(np.abs(iop).tolist()) == [0, 0, 0, 0, 1, 1]

    check()
