"""N-D acquisitions: dims from the data (issue 4 item 1), on synthetic series written as real DICOM."""
from __future__ import annotations

import os
import random
import shutil
import warnings

import numpy as np
import pydicom
import pytest

import dcmxr
from dcmxr.errors import AmbiguousSelectionError, GeometryError, GeometryWarning
from dcmxr.testing.synthetic import write_series
from _data import data_path

SHAPE = (4, 6, 5)


def _uids():
    return dict(study_uid=pydicom.uid.generate_uid(), series_uid=pydicom.uid.generate_uid(),
                frame_of_reference_uid=pydicom.uid.generate_uid())


def _write_echoes(tmp_path, echoes=(5.0, 10.0, 20.0), n_timepoints=1, **kw):
    uids = _uids()
    for e, te in enumerate(echoes):
        write_series(tmp_path, shape=SHAPE, n_timepoints=n_timepoints, modality="MR",
                     rescale_intercept=0.0, extra={"EchoTime": te, "EchoNumbers": e + 1},
                     prefix=f"e{e}_", pixel_fn=lambda t, z, y, x, e=e: 1000 * e + 100 * t + 10 * z + y,
                     **uids, **kw)


def test_multi_echo_becomes_echo_dim(tmp_path):
    _write_echoes(tmp_path)
    da = dcmxr.open_series(tmp_path)
    assert da.dims == ("echo", "z", "y", "x")
    np.testing.assert_array_equal(da.echo.values, [5.0, 10.0, 20.0])
    assert da.echo.attrs["units"] == "ms"
    v = da.values
    for e in range(3):  # the pixel function encodes the echo: the right frames are in each echo
        assert np.all(v[e, :, 0, 0] // 1000 == e)


def test_time_outer_echo_inner(tmp_path):
    """Echoes are acquired within each time point: the outermost loop (t) comes first."""
    _write_echoes(tmp_path, echoes=(5.0, 10.0), n_timepoints=3)
    da = dcmxr.open_series(tmp_path)
    assert da.dims == ("t", "echo", "z", "y", "x")
    np.testing.assert_allclose(da.t.values, [0.0, 2.0, 4.0])
    v = da.values
    assert np.all((v[:, :, 0, 0, 0] % 1000) // 100 == np.arange(3)[:, None])
    assert np.all(v[:, :, 0, 0, 0] // 1000 == np.arange(2)[None, :])


def test_cardiac_phases(tmp_path):
    uids = _uids()
    for p, pct in enumerate((0.0, 25.0, 50.0, 75.0)):
        write_series(tmp_path, shape=SHAPE, modality="MR", rescale_intercept=0.0, prefix=f"p{p}_",
                     extra={"NominalPercentageOfCardiacPhase": pct, "TriggerTime": 200.0 * p},
                     pixel_fn=lambda t, z, y, x, p=p: 100 * p + z, **uids)
    da = dcmxr.open_series(tmp_path)
    assert da.dims == ("phase", "z", "y", "x")
    np.testing.assert_array_equal(da.phase.values, [0.0, 25.0, 50.0, 75.0])
    assert np.all(da.values[:, 0, 0, 0] // 100 == np.arange(4))


def test_dce_temporal_positions_shuffled(tmp_path):
    files = write_series(tmp_path, shape=SHAPE, n_timepoints=6, time_step_s=4.5, modality="MR",
                         rescale_intercept=0.0, pixel_fn=lambda t, z, y, x: 100 * t + z)
    order = [str(f) for f in files]
    random.Random(1).shuffle(order)
    da = dcmxr.open_series(order)
    assert da.dims == ("t", "z", "y", "x")
    np.testing.assert_allclose(da.t.values, np.arange(6) * 4.5)
    np.testing.assert_array_equal(da.temporal_position_identifier.values, np.arange(1, 7))
    assert np.all(da.values[:, :, 0, 0] == 100 * np.arange(6)[:, None] + np.arange(4)[None, :])


def test_flip_angles_vfa(tmp_path):
    uids = _uids()
    for k, fa in enumerate((2.0, 5.0, 10.0, 15.0)):
        write_series(tmp_path, shape=SHAPE, modality="MR", rescale_intercept=0.0, prefix=f"fa{k}_",
                     extra={"FlipAngle": fa}, pixel_fn=lambda t, z, y, x, k=k: k, **uids)
    da = dcmxr.open_series(tmp_path)
    assert da.dims == ("flip_angle", "z", "y", "x")
    np.testing.assert_array_equal(da.flip_angle.values, [2.0, 5.0, 10.0, 15.0])
    assert da.flip_angle.attrs["units"] == "degree"


def test_forced_dims_and_where(tmp_path):
    _write_echoes(tmp_path, echoes=(5.0, 10.0), n_timepoints=2)
    da = dcmxr.open_series(tmp_path, dims=("EchoTime", "AcquisitionNumber"))
    assert da.dims[:2] in (("echo", "acquisition_number"), ("acquisition_number", "echo"))
    one = dcmxr.open_series(tmp_path, where={"EchoTime": 10.0})
    assert one.dims == ("t", "z", "y", "x")
    assert float(one.attrs["echo_time"]) == 10.0
    with pytest.raises(dcmxr.errors.SelectionError, match="matches no frame"):
        dcmxr.open_series(tmp_path, where={"EchoTime": 99.0})


def test_unseparable_repeats_raise(tmp_path):
    """Two frames per (t, position) with nothing that tells them apart: never a silent 4D order."""
    uids = _uids()
    write_series(tmp_path, shape=SHAPE, n_timepoints=2, prefix="a_", **uids)
    write_series(tmp_path, shape=SHAPE, n_timepoints=2, prefix="b_", **uids)
    with pytest.raises(AmbiguousSelectionError, match=r"where=|dims="):
        dcmxr.open_series(tmp_path)


def test_timepoint_missing_a_slice_raises_or_fills(tmp_path):
    files = write_series(tmp_path, shape=SHAPE, n_timepoints=3, shuffle_names=False)
    gone = [f for f in files if pydicom.dcmread(f, stop_before_pixels=True).TemporalPositionIdentifier == 2][1]
    os.remove(gone)
    with pytest.raises(GeometryError, match="missing.*fill_missing=True"):
        dcmxr.open_series(tmp_path)
    with pytest.warns(GeometryWarning, match="missing"):
        da = dcmxr.open_series(tmp_path, fill_missing=True)
    assert da.sizes["t"] == 3 and da.sizes["z"] == 4


def test_philips_precise_switch_equals_dcm2niix():
    """philips="precise" gives dcm2niix's values directly for a constant-scale Philips series."""
    from _nifti_ref import compare_with_nifti

    table = dcmxr.scan(data_path("perfusion", "dcm_qa_philips_asl", "In"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        da = dcmxr.open_series(table, series=201, philips="precise")
    compare_with_nifti(da, data_path("perfusion", "dcm_qa_philips_asl", "Ref", "201_pCASL_classic.nii"), rtol=1e-5)


def test_ge_dwi_b_values_and_order_equal_dcm2niix():
    table = dcmxr.scan(data_path("dwi", "dcm_qa_ge", "In"))
    da = dcmxr.open_series(table)
    assert da.dims[0] == "dwi"
    ref = data_path("dwi", "dcm_qa_ge", "Ref", "Ax_DWI_TENSOR_R2_1.bval").read_text().split()
    np.testing.assert_array_equal(da.diffusion_b_value.values, [float(v) for v in ref])


def test_philips_asl_label_control_dim():
    table = dcmxr.scan(data_path("perfusion", "dcm_qa_philips_asl", "In"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        da = dcmxr.open_series(table, series=402)
    assert da.dims == ("t", "asl", "z", "y", "x")
    assert list(da.asl.values) == ["CONTROL", "LABEL"]
