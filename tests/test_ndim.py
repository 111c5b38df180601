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


def _headers(folder):
    return [pydicom.dcmread(f, stop_before_pixels=True) for f in sorted(folder.glob("*.dcm"))]


def test_unseparable_repeats_raise(tmp_path):
    """Two frames per (t, position) with nothing that tells them apart: never a silent 4D order.
    The message names the attribute and the values found (read here with pydicom) and both remedies."""
    uids = _uids()
    write_series(tmp_path, shape=SHAPE, n_timepoints=2, prefix="a_", **uids)
    write_series(tmp_path, shape=SHAPE, n_timepoints=2, prefix="b_", **uids)
    found = sorted({int(ds.TemporalPositionIdentifier) for ds in _headers(tmp_path)})
    with pytest.raises(AmbiguousSelectionError) as err:
        dcmxr.open_series(tmp_path)
    msg = str(err.value)
    assert f"temporal_position_identifier={found}" in msg
    assert "2 frames share a position" in msg and "where={...}" in msg and "dims=(...)" in msg


def test_duplicate_copies_without_time_order_raise(tmp_path):
    """Repeats at every position whose times, acquisition and instance numbers are all equal: no
    attribute orders them, so no `t` is invented; the message names the values and the attribute
    that does differ, and where= on that attribute resolves it."""
    uids = _uids()
    write_series(tmp_path, shape=SHAPE, prefix="a_", series_description="run A", **uids)
    write_series(tmp_path, shape=SHAPE, prefix="b_", series_description="run B", **uids)
    heads = _headers(tmp_path)
    times = sorted({str(ds.AcquisitionTime) for ds in heads})
    assert len(times) == 1  # the premise: one acquisition time for both copies
    with pytest.raises(AmbiguousSelectionError) as err:
        dcmxr.open_series(tmp_path)
    msg = str(err.value)
    assert f"acquisition_time={times[0]}" in msg
    assert f"acquisition_number={int(heads[0].AcquisitionNumber)}" in msg
    assert "series_description=['run A', 'run B']" in msg
    assert "where={...}" in msg and "dims=(...)" in msg
    one = dcmxr.open_series(tmp_path, where={"SeriesDescription": "run B"})
    assert one.dims == ("z", "y", "x")
    both = dcmxr.open_series(tmp_path, dims=("SeriesDescription",))
    assert both.dims == ("series_description", "z", "y", "x")
    assert list(both.series_description.values) == ["run A", "run B"]


def test_unseparable_copies_differing_in_nothing(tmp_path):
    uids = _uids()
    write_series(tmp_path, shape=SHAPE, prefix="a_", **uids)
    write_series(tmp_path, shape=SHAPE, prefix="b_", **uids)
    with pytest.raises(AmbiguousSelectionError, match=r"differ only in SOPInstanceUID / file"):
        dcmxr.open_series(tmp_path)


def test_repeats_ordered_by_instance_number_stay_time(tmp_path):
    """Counterpart of the above: equal times but distinct instance numbers do order the repeats."""
    uids = _uids()
    write_series(tmp_path, shape=SHAPE, prefix="a_", rescale_intercept=0.0, pixel_fn=lambda t, z, y, x: z, **uids)
    files = write_series(tmp_path, shape=SHAPE, prefix="b_", rescale_intercept=0.0,
                         pixel_fn=lambda t, z, y, x: 100 + z, **uids)
    for f in files:
        ds = pydicom.dcmread(f)
        ds.InstanceNumber = int(ds.InstanceNumber) + 100
        ds.save_as(f)
    da = dcmxr.open_series(tmp_path)
    assert da.dims == ("t", "z", "y", "x")
    assert np.all(da.values[:, :, 0, 0] // 100 == np.array([[0], [1]]))


def test_timepoint_missing_a_slice_raises_or_fills(tmp_path):
    files = write_series(tmp_path, shape=SHAPE, n_timepoints=3, shuffle_names=False)
    heads = {f: pydicom.dcmread(f, stop_before_pixels=True) for f in files}
    gone = [f for f in files if heads[f].TemporalPositionIdentifier == 2][1]
    # expected, from pydicom: the time point (s from the first acquisition) and z index of the missing frame
    sec = {f: float(str(ds.AcquisitionTime)[4:]) + 60 * int(str(ds.AcquisitionTime)[2:4]) for f, ds in heads.items()}
    t_missing = sec[gone] - min(sec.values())
    z_all = sorted({float(ds.ImagePositionPatient[2]) for ds in heads.values()})
    z_missing = z_all.index(float(heads[gone].ImagePositionPatient[2]))
    os.remove(gone)
    with pytest.raises(GeometryError) as err:
        dcmxr.open_series(tmp_path)
    msg = str(err.value)
    assert f"(t={t_missing}, z index {z_missing})" in msg
    assert "1 frame(s) of the 3x4 grid ('t', 'z') are missing" in msg
    assert "where={...}" in msg and "dims=(...)" in msg and "fill_missing=True" in msg
    with pytest.warns(GeometryWarning, match="missing"):
        da = dcmxr.open_series(tmp_path, fill_missing=True)
    assert da.sizes["t"] == 3 and da.sizes["z"] == 4
    assert np.all(da.isel(t=1, z=z_missing).values == 0)


def test_mixed_matrix_sizes_in_a_multi_echo_group(tmp_path):
    """Echoes with different matrix sizes cannot share one array: the largest stack opens with a warning
    naming the other stack's size and stack=; where= on the echo opens the other one."""
    uids = _uids()
    write_series(tmp_path, shape=(4, 6, 5), modality="MR", rescale_intercept=0.0, prefix="a_",
                 extra={"EchoTime": 5.0}, pixel_fn=lambda t, z, y, x: z, **uids)
    write_series(tmp_path, shape=(4, 8, 5), modality="MR", rescale_intercept=0.0, prefix="b_",
                 extra={"EchoTime": 10.0}, pixel_fn=lambda t, z, y, x: 10 + z, **uids)
    other = pydicom.dcmread(sorted(tmp_path.glob("b_*.dcm"))[0])
    with pytest.warns(GeometryWarning) as rec:
        da = dcmxr.open_series(tmp_path)
    msg = " ".join(str(w.message) for w in rec)
    assert f"{other.Rows}x{other.Columns}" in msg and "stack=" in msg
    assert da.dims == ("z", "y", "x") and da.shape[1:] == (6, 5)
    b = dcmxr.open_series(tmp_path, where={"EchoTime": 10.0})
    assert b.shape[1:] == (int(other.Rows), int(other.Columns))
    np.testing.assert_array_equal(b.values[:, 0, 0], [10, 11, 12, 13])


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


def test_stack_differences_names_the_separating_attribute(tmp_path):
    """The sentence for the several-stacks warning names the attribute values (read with pydicom) and where=."""
    from dcmxr.assembly.stack import split_stacks
    from dcmxr.assembly.volumes import stack_differences

    uids = _uids()
    write_series(tmp_path, shape=(5, 6, 5), modality="MR", prefix="a_", extra={"EchoTime": 5.0}, **uids)
    write_series(tmp_path, shape=(4, 8, 5), modality="MR", prefix="b_", extra={"EchoTime": 10.0}, **uids)
    stacks = list(split_stacks(dcmxr.scan(tmp_path)))
    te = [float(pydicom.dcmread(sorted(tmp_path.glob(f"{p}_*.dcm"))[0], stop_before_pixels=True).EchoTime)
          for p in ("a", "b")]
    text = stack_differences(stacks, 0)
    assert f"echo_time (stack 0: {te[0]}; stack 1: {te[1]})" in text
    assert f"where={{'echo_time': {te[1]}}}" in text
    assert dcmxr.open_series(tmp_path, where={"echo_time": te[1]}).shape[1:] == (8, 5)
    uids = _uids()  # stacks that no single attribute separates: nothing to suggest
    write_series(tmp_path / "x", shape=(4, 6, 5), prefix="a_", **uids)
    write_series(tmp_path / "x", shape=(4, 8, 5), prefix="b_", **uids)
    assert stack_differences(list(split_stacks(dcmxr.scan(tmp_path / "x"))), 0) == ""


def test_enhanced_repeats_ordered_by_frame_number(tmp_path):
    """Within one multi-frame file the frame number orders repeats (no temporal index, equal times):
    `t` follows the file's frame order, read back here with pydicom."""
    from dcmxr.testing.synthetic import write_enhanced

    p = write_enhanced(tmp_path / "e.dcm", shape=SHAPE, n_timepoints=2, modality="MR", rescale_intercept=0.0,
                       pixel_fn=lambda t, z, y, x: 100 * t + z)
    ds = pydicom.dcmread(p)
    for item in ds.PerFrameFunctionalGroupsSequence:
        fc = item.FrameContentSequence[0]
        del fc.TemporalPositionIndex
        fc.FrameAcquisitionDateTime = fc.FrameReferenceDateTime = "20240102100000.000000"
    ds.save_as(p)
    back = pydicom.dcmread(p)
    zpos = [float(it.PlanePositionSequence[0].ImagePositionPatient[2]) for it in back.PerFrameFunctionalGroupsSequence]
    zs = sorted(set(zpos))
    expected = np.zeros((2, len(zs)), dtype=int)
    seen = {}
    for f, z in enumerate(zpos):  # the k-th frame at a position (file order) is time point k
        k = seen.get(z, 0)
        expected[k, zs.index(z)] = back.pixel_array[f][0, 0]
        seen[z] = k + 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        da = dcmxr.open_series(str(p))
    assert da.dims == ("t", "z", "y", "x")
    np.testing.assert_array_equal(da.values[:, :, 0, 0], expected)
