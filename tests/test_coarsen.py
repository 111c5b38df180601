"""dcmxr.transform.coarsen: block reduction that keeps geometry and per-frame traceability.

References: the geometry that ``dcmxr.testing.synthetic.expected_geometry``
computes for the written series (independent of the reader), numpy block
means of the decoded voxels, the SOP Instance UIDs read back from the files
with pydicom, and, for a real Siemens MR series, the same checks against its
DICOM headers.
"""

from __future__ import annotations

import numpy as np
import pytest

xr = pytest.importorskip("xarray")
pydicom = pytest.importorskip("pydicom")

import dcmxr  # noqa: E402
from dcmxr.geometry import affine_from_coords  # noqa: E402
from dcmxr.testing.synthetic import expected_geometry, write_series  # noqa: E402
from dcmxr.transform.coarsen import SEPARATOR, coarsen, join_values  # noqa: E402

from _data import data_path  # noqa: E402

OBLIQUE = (0.866025, 0.5, 0.0, -0.353553, 0.612372, -0.707107)
SYN = dict(shape=(9, 10, 8), spacing=(2.5, 0.75, 0.5), iop=OBLIQUE, origin=(-30.0, -40.0, 10.0))


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    d = tmp_path_factory.mktemp("coarsen")
    write_series(d, **SYN)
    return d, dcmxr.open_series(d, chunks={"z": 4})


def _affine(da):
    c = {ax: da.coords[ax] for ax in "xyz"}
    return affine_from_coords(c["x"].values, c["y"].values, c["z"].values,
                              c["x"].attrs["direction"], c["y"].attrs["direction"], c["z"].attrs["direction"])


def _uids_by_position(d, da):
    """SOP Instance UIDs of the files, in the order of the array's z positions (pydicom, not dcmxr)."""
    dz = np.asarray(da.z.attrs["direction"])
    rows = []
    for f in sorted(d.iterdir()):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        rows.append((float(np.dot(np.asarray(ds.ImagePositionPatient, float), dz)), str(ds.SOPInstanceUID),
                     int(ds.InstanceNumber)))
    rows.sort()
    return [r[1] for r in rows], [r[2] for r in rows]


def test_values_geometry_and_uids(series):
    d, da = series
    out = coarsen(da, z=2)
    assert out.chunks is not None  # lazy stays lazy
    # values: numpy block means over z pairs (the 9th slice is trimmed)
    v = da.values.astype(np.float64)
    np.testing.assert_allclose(out.values, 0.5 * (v[0:8:2] + v[1:8:2]), rtol=0, atol=1e-9)
    # geometry: block centres of the positions the synthetic builder put in the files
    exp = expected_geometry(SYN["shape"], SYN["spacing"], OBLIQUE, SYN["origin"], 0.0)
    np.testing.assert_allclose(out.z.values, 0.5 * (exp["z"][0:8:2] + exp["z"][1:8:2]), atol=1e-5)
    np.testing.assert_allclose(out.x.values, exp["x"], atol=1e-5)
    for ax in "xyz":
        assert out[ax].attrs == da[ax].attrs
    a0, a1 = _affine(da), _affine(out)
    np.testing.assert_allclose(a1[:3, 2], 2 * a0[:3, 2], atol=1e-6)  # z step doubled, same direction
    np.testing.assert_allclose(a1[:3, :2], a0[:3, :2], atol=1e-9)
    np.testing.assert_allclose(a1[:3, 3], a0[:3, 3] + 0.5 * a0[:3, 2], atol=1e-6)  # first block's centre
    # traceability: each output slice names its two source files, in order
    uids, numbers = _uids_by_position(d, da)
    assert list(out.sop_instance_uid.values) == [uids[k] + SEPARATOR + uids[k + 1] for k in range(0, 8, 2)]
    assert list(out.instance_number.values) == [f"{numbers[k]}{SEPARATOR}{numbers[k + 1]}" for k in range(0, 8, 2)]
    np.testing.assert_allclose(out.slice_location.values, out.z.values, atol=1e-4)  # floats: block mean


def test_keep_attrs_false_still_keeps_geometry(series):
    _, da = series
    with xr.set_options(keep_attrs=False):
        out = coarsen(da, {"z": 2, "x": 2}, func="max")
    for ax in "xyz":
        assert out[ax].attrs["units"] == "mm" and out[ax].attrs["direction"] == da[ax].attrs["direction"]
    v = da.values
    ref = v[:8, :, :8].reshape(4, 2, 10, 4, 2).max(axis=(1, 4))
    np.testing.assert_array_equal(out.values, ref)
    assert out.dtype == da.dtype


def test_spacing_attr_scaled(series):
    _, da = series
    out = coarsen(da.assign_attrs(spacing_between_slices=2.5), z=3)
    assert out.attrs["spacing_between_slices"] == pytest.approx(7.5)
    assert out.sizes["z"] == 3
    assert out.dcm.spacing["z"] == pytest.approx(7.5, abs=1e-5)


def test_boundary_pad_keeps_partial_block(series):
    _, da = series
    out = coarsen(da, z=2, boundary="pad")
    assert out.sizes["z"] == 5
    assert out.sop_instance_uid.values[-1].count(SEPARATOR) == 1  # the last block: one file and a gap


def test_join_values_multiple_axes():
    a = np.array([["a", "b"], ["c", "d"]]).reshape(1, 2, 1, 2)
    out = join_values(a, axis=(1, 3))
    assert out.shape == (1, 1) and out[0, 0] == SEPARATOR.join("abcd")


@pytest.mark.parametrize("kwargs, match", [({}, "at least one"), ({"q": 2}, "not a dimension"),
                                           ({"z": 0}, "positive integer"), ({"z": 1.5}, "positive integer")])
def test_bad_windows(series, kwargs, match):
    _, da = series
    with pytest.raises(ValueError, match=match):
        coarsen(da, **kwargs)


def test_unknown_func(series):
    _, da = series
    with pytest.raises(ValueError, match="unknown reduction"):
        coarsen(da, z=2, func="nope")


def test_real_mr_series_over_t_and_z():
    """A real Siemens MR series (two volumes, dims t, z, y, x): coarsen z and t."""
    path = data_path("mr", "dcm_qa", "In", "Orientation", "ax", "axasc35")
    da = dcmxr.open_series(path)
    out = coarsen(da, z=2)
    v = da.values.astype(np.float64)
    n = 2 * (da.sizes["z"] // 2)
    zax = da.get_axis_num("z")
    ref = 0.5 * (np.take(v, np.arange(0, n, 2), axis=zax) + np.take(v, np.arange(1, n, 2), axis=zax))
    np.testing.assert_allclose(out.values, ref, atol=1e-9)
    a0, a1 = _affine(da), _affine(out)
    np.testing.assert_allclose(a1[:3, 2], 2 * a0[:3, 2], atol=1e-5)
    np.testing.assert_allclose(a1[:3, 3], a0[:3, 3] + 0.5 * a0[:3, 2], atol=1e-5)
    # z blocks: the per-volume string coords on t are untouched; slice_time (t, z) is a block mean
    assert list(out.sop_instance_uid.values) == list(da.sop_instance_uid.values)
    st = da.slice_time.values
    np.testing.assert_allclose(out.slice_time.values, 0.5 * (st[:, 0:n:2] + st[:, 1:n:2]))
    # t blocks: the one output volume names both source files (read back with pydicom)
    both = coarsen(da, t=2)
    assert both.sizes["t"] == 1
    files = [pydicom.dcmread(f, stop_before_pixels=True) for f in sorted(path.rglob("*")) if f.is_file()]
    files.sort(key=lambda ds: int(ds.InstanceNumber))
    assert both.sop_instance_uid.values[0] == SEPARATOR.join(str(ds.SOPInstanceUID) for ds in files)
    np.testing.assert_allclose(both.values[0], v.mean(axis=0), atol=1e-9)
