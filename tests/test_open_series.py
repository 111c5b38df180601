"""open_series / open_study / the xarray engine: selection, stacks, geometry honesty, errors."""
from __future__ import annotations

import os
import shutil
import warnings

import numpy as np
import pydicom
import pytest
import xarray as xr
from pydicom.data import get_testdata_file

import dcmxr
from dcmxr.errors import (AmbiguousSelectionError, DecodeError, GeometryWarning, InvalidDicomError,
                          SelectionError, SkippedFileWarning)
from dcmxr.testing.synthetic import write_series
from _data import data_path

DICOMDIR_TESTS = os.path.join(os.path.dirname(get_testdata_file("CT_small.dcm")), "dicomdirtests")


def _quiet(fn, *a, **k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*a, **k)


def test_ambiguous_selection_lists_series_and_how_to_pick():
    table = _quiet(dcmxr.scan, data_path("mr", "dcm_qa", "In"))
    with pytest.raises(AmbiguousSelectionError) as err:
        dcmxr.open_series(table)
    msg = str(err.value)
    assert "21 series" in msg and "series=" in msg
    assert "ax_asc_35sl" in msg and "1.3.12.2.1107.5.2.32.35131" in msg and "384x384" in msg
    assert isinstance(err.value, ValueError)


def test_select_by_uid_number_description_index():
    table = _quiet(dcmxr.scan, data_path("mr", "dcm_qa", "In", "Orientation", "sag"))
    listing = dcmxr.list_series(table)
    uid = listing.series_instance_uid[2]
    by_uid = _quiet(dcmxr.open_series, table, series=uid)
    by_number = _quiet(dcmxr.open_series, table, series=int(listing.series_number[2]))
    by_desc = _quiet(dcmxr.open_series, table, series=listing.series_description[2])
    by_index = _quiet(dcmxr.open_series, table, series=2)  # no series has number 2: index
    for da in (by_number, by_desc, by_index):
        assert da.attrs["series_instance_uid"] == uid
    with pytest.raises(SelectionError, match="matches no series"):
        dcmxr.open_series(table, series="no such series")
    assert by_uid.attrs["series_instance_uid"] == uid


def test_localizer_planes_are_split_not_mixed():
    """A 3-plane scout series holds frames of different orientations: never mixed in one stack."""
    table = _quiet(dcmxr.scan, DICOMDIR_TESTS)
    rows = table[(table.series_number == 2) & (table.modality == "MR")]
    rows = rows[rows.groupby("series_instance_uid")["path"].transform("size") == 3]
    rows = rows[rows.series_instance_uid == rows.series_instance_uid.iloc[0]]
    with pytest.warns(GeometryWarning, match="stacks"):
        da = dcmxr.open_series(rows)
    assert da.sizes["z"] == 1
    other = _quiet(dcmxr.open_series, rows, stack=1)
    assert other.x.attrs["direction"] != da.x.attrs["direction"] or other.y.attrs["direction"] != da.y.attrs["direction"]


def test_missing_slice_gives_nonuniform_z_and_warning(tmp_path):
    write_series(tmp_path, shape=(8, 6, 5), spacing=(2.0, 1.0, 1.0), missing_slices=(3,))
    with pytest.warns(GeometryWarning, match="missing slice"):
        da = dcmxr.open_series(tmp_path)
    steps = np.diff(da.z.values)
    assert da.sizes["z"] == 7 and np.allclose(sorted(set(np.round(steps, 6))), [2.0, 4.0])
    from dcmxr.errors import GeometryError
    from dcmxr.geometry.affine import affine_from_coords

    with pytest.raises(GeometryError, match="'z'"):
        affine_from_coords(da.x, da.y, da.z, *(da[a].attrs["direction"] for a in "xyz"))


def test_gantry_tilt_is_exact():
    """dicom2nifti/dcm2niix resample tilted CT; dcmxr keeps the tilted stacking direction instead.
    The equivalent check: every slice's ImagePositionPatient is reproduced exactly by
    x*dir_x + y*dir_y + z*dir_z at voxel (0, 0, k), and the measured tilt is the scanner's 14 deg."""
    folder = data_path("ct", "dicom2nifti_gantrytilt", "001")
    da = _quiet(dcmxr.open_series, folder)
    d = {a: np.array(da[a].attrs["direction"]) for a in "xyz"}
    files = sorted(folder.iterdir())
    ipps = sorted((np.array([float(v) for v in pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient])
                   for f in files), key=lambda p: p @ d["z"])
    for k, ipp in enumerate(ipps):
        pos = da.x.values[0] * d["x"] + da.y.values[0] * d["y"] + da.z.values[k] * d["z"]
        np.testing.assert_allclose(pos, ipp, atol=1e-6)
    normal = np.cross(d["x"], d["y"])
    tilt = np.degrees(np.arccos(abs(normal @ d["z"])))
    assert tilt == pytest.approx(14.0, abs=0.01)
    assert da.attrs["tilt_deg"] == pytest.approx(14.0, abs=0.01)


def test_repeated_volumes_give_t(tmp_path):
    write_series(tmp_path, shape=(4, 6, 5), n_timepoints=3, time_step_s=2.5)
    da = dcmxr.open_series(tmp_path)
    assert da.dims == ("t", "z", "y", "x")
    np.testing.assert_allclose(da.t.values, [0, 2.5, 5.0])
    assert da.t.attrs["units"] == "s"


def test_xarray_engine_and_datatree():
    path = get_testdata_file("CT_small.dcm")
    ds = xr.open_dataset(path, engine="dicom", chunks={})
    assert ds["image"].chunks is not None
    np.testing.assert_array_equal(ds["image"].values[0], pydicom.dcmread(path).pixel_array + (-1024))
    assert ds.z.attrs["units"] == "mm"
    from dcmxr.backend.entrypoint import DicomBackendEntrypoint

    ep = DicomBackendEntrypoint()
    assert ep.guess_can_open(path)
    assert not ep.guess_can_open(__file__)
    tree = _quiet(xr.open_datatree, DICOMDIR_TESTS, engine="dicom")
    leaves = [n for n in tree.subtree if "image" in n.ds]
    assert len(leaves) >= 10
    tree2 = _quiet(dcmxr.open_study, DICOMDIR_TESTS)
    assert sorted(n.path for n in tree2.subtree) == sorted(n.path for n in tree.subtree)


def test_engine_series_option():
    folder = str(data_path("mr", "dcm_qa", "In", "Orientation", "ax"))
    ds = _quiet(xr.open_dataset, os.path.join(folder, "axasc35"), engine="dicom")
    assert ds["image"].dims == ("t", "z", "y", "x")
    with pytest.raises(AmbiguousSelectionError):
        _quiet(xr.open_dataset, folder, engine="dicom")


# ---------------------------------------------------------------- bad input -----------------------

def _copy_ct(tmp_path, n=3):
    src = data_path("ct", "dcmqi", "ct-3slice")
    dst = tmp_path / "ct"
    shutil.copytree(src, dst)
    return dst


def test_bad_files_skipped_with_one_warning(tmp_path):
    folder = _copy_ct(tmp_path)
    files = sorted(folder.iterdir())
    (folder / "readme.txt").write_text("hello")
    data = files[0].read_bytes()
    (folder / "truncated.dcm").write_bytes(data[:2000])
    with pytest.warns(SkippedFileWarning, match="skipped 2 of 5"):
        da = dcmxr.open_series(folder)
    assert da.sizes["z"] == 3


def test_missing_pixel_data_is_reported(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    del ds.PixelData
    ds.save_as(tmp_path / "nopix.dcm")
    with pytest.raises(InvalidDicomError, match="no Pixel Data"):
        dcmxr.scan(tmp_path / "nopix.dcm", strict=True)


def test_missing_geometry_is_reported(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    del ds.ImagePositionPatient
    ds.save_as(tmp_path / "nogeo.dcm")
    with pytest.warns(GeometryWarning, match="no ImagePositionPatient"):
        da = dcmxr.open_series(tmp_path / "nogeo.dcm")
    assert da.dims == ("frame", "y", "x")


def test_inconsistent_rows_columns_split_into_stacks(tmp_path):
    folder = _copy_ct(tmp_path)
    f = sorted(folder.iterdir())[0]
    ds = pydicom.dcmread(f)
    small = ds.pixel_array[:256, :256].copy()
    ds.Rows, ds.Columns = small.shape
    ds.PixelData = small.tobytes()
    ds.save_as(f)
    with pytest.warns(GeometryWarning, match="2 stacks"):
        da = dcmxr.open_series(folder)
    assert da.sizes == {"z": 2, "y": 512, "x": 512}


def test_absurd_dimensions_checked_before_allocation(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.Rows = 60000
    ds.Columns = 60000
    ds.NumberOfFrames = 1000
    ds.save_as(tmp_path / "huge.dcm")
    with pytest.raises(InvalidDicomError):
        dcmxr.scan(tmp_path / "huge.dcm", strict=True)


def test_corrupt_compressed_frame_names_file_and_frame(tmp_path):
    src = data_path("transfer_syntax", "pydicom-data", "emri_small_jpeg_ls_lossless.dcm")
    dst = tmp_path / "bad.dcm"
    shutil.copy(src, dst)
    table = dcmxr.scan(dst)
    row = table.iloc[4]
    with open(dst, "r+b") as fh:  # destroy frame 4's JPEG-LS header (after the 8-byte item tag)
        fh.seek(int(row.pixel_offset) + 8)
        fh.write(b"\x00" * 64)
    da = dcmxr.open_series(dst)  # opening reads no pixels: fine
    with pytest.raises(DecodeError) as err:
        da.compute()
    assert "bad.dcm" in str(err.value) and "frame 4" in str(err.value)


def test_duplicated_position_is_reported_not_mixed(tmp_path):
    """A re-acquired slice (same position twice) must not create a second volume."""
    files = write_series(tmp_path, shape=(6, 4, 4), shuffle_names=False)
    ds = pydicom.dcmread(files[2])
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.InstanceNumber = 99
    ds.save_as(tmp_path / "dup.dcm")
    with pytest.warns(GeometryWarning, match="1 duplicate frame"):
        da = dcmxr.open_series(tmp_path)
    assert da.dims == ("z", "y", "x") and da.sizes["z"] == 6
    assert 99 not in da.instance_number.values
