"""GE slice timing (issue 4): RTIA timer and Protocol Data Block, as dcm2niix derives them.

References: dcm2niix's JSON ``SliceTiming`` for every GE series in the shared data (present or absent),
and pydicom reads of the synthetic files we wrote (RTIA timer values).
"""
from __future__ import annotations

import gzip
import json
import struct
import warnings

import numpy as np
import pydicom
import pytest

import dcmxr
from dcmxr.assembly.ge_timing import parse_protocol_block, software_release, synthesised_times
from dcmxr.export.bids import sidecar
from dcmxr.export.nifti import to_nifti
from dcmxr.testing.synthetic import write_series
from _data import data_path

nib = pytest.importorskip("nibabel")

#: (In folder, Ref stem): every GE series with a dcm2niix reference in the shared data
GE_CASES = [
    (("mr/dcm_qa_nih", "In", "20180918GE", "mr_0004"), ("mr/dcm_qa_nih", "Ref", "DCM2NIIX_regression_test_4")),
    (("mr/dcm_qa_nih", "In", "20180918GE", "mr_0005"), ("mr/dcm_qa_nih", "Ref", "DCM2NIIX_regression_test_5")),
    (("perfusion/dcm_qa_ge_multiphase", "In", "SliceTimingMPh", "2_fMRI_Multiphase_Des"),
     ("perfusion/dcm_qa_ge_multiphase", "Ref", "fMRI_Multiphase_Des_2")),
    (("dwi/dcm_qa_ge", "In", "01_Ax_DWI_TENSOR_R2"), ("dwi/dcm_qa_ge", "Ref", "Ax_DWI_TENSOR_R2_1")),
]


def _quiet(fn, *a, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*a, **kw)


@pytest.mark.parametrize("src,ref", GE_CASES, ids=[c[1][-1] for c in GE_CASES])
def test_ge_slice_timing_equals_dcm2niix(src, ref, tmp_path):
    """SliceTiming in our sidecar equals dcm2niix's (same presence; values within its 6 printed digits)."""
    folder = data_path(*src)
    ref_json = data_path(*ref[:-1], ref[-1] + ".json")
    info = json.loads(ref_json.read_text())
    da = _quiet(dcmxr.open_series, str(folder))
    ours = sidecar(da)
    assert ("SliceTiming" in ours) == ("SliceTiming" in info)
    if "SliceTiming" not in info:  # dcm2niix (at this reference's version) reports none for GE diffusion
        assert "slice_time" not in da.coords
        return
    assert da["slice_time"].dims == ("z",)
    out = _quiet(to_nifti, da, tmp_path / "s.nii")
    k_ours = nib.load(str(out)).affine[:3, 2]
    k_ref = nib.load(str(ref_json.with_suffix(".nii"))).affine[:3, 2]
    st = np.asarray(ours["SliceTiming"])
    same = float(np.dot(k_ours, k_ref)) > 0
    np.testing.assert_allclose(st if same else st[::-1], info["SliceTiming"], atol=1e-5)
    assert max(info["SliceTiming"]) < info["RepetitionTime"]


# ------------------------------------------------------------------ synthetic: what the real data lacks
def _ge_series(tmp_path, n_t=2, nz=4, tr_ms=2000.0, rtia=None, pdb: bytes | None = None, desc="fMRI"):
    paths = write_series(tmp_path, shape=(nz, 8, 8), n_timepoints=n_t, modality="MR", series_description=desc,
                         extra={"Manufacturer": "GE MEDICAL SYSTEMS", "RepetitionTime": tr_ms,
                                "ScanningSequence": "EP\\GR",
                                "SoftwareVersions": ["28", "LX", "MR Software release:DV28.0_R02_1947.a"]})
    for i, p in enumerate(paths):  # time point outer, slice inner
        ds = pydicom.dcmread(p)
        ds.InstanceNumber = i + 1
        if rtia is not None:
            ds.add_new((0x0021, 0x0010), "LO", "GEMS_RELA_01")
            ds.add_new((0x0021, 0x105E), "DS", f"{rtia[i // nz][i % nz]:.6f}")
        if pdb is not None:
            ds.add_new((0x0025, 0x0010), "LO", "GEMS_SERS_01")
            ds.add_new((0x0025, 0x101B), "OB", struct.pack("<I", len(pdb)) + pdb)
        ds.save_as(p)
    return paths


def _pdb(**keys) -> bytes:
    return gzip.compress("\n".join(f'{k} "{v}"' for k, v in keys.items()).encode("latin-1"))


@pytest.mark.parametrize("scale", [1.0, 1e-4], ids=["seconds", "tenth-ms"])
def test_rtia_timer_second_volume(tmp_path, scale):
    """RTIA times of the second volume (first is junk), relative to its first slice, as pydicom reads them."""
    times_s = np.array([0.0, 1.0, 0.5, 1.5])
    rtia = [[0.0] * 4, list(7.25 / scale + times_s / scale)]
    paths = _ge_series(tmp_path, rtia=rtia)
    da = _quiet(dcmxr.open_series, str(tmp_path))
    read = np.array([float(pydicom.dcmread(p)[0x0021, 0x105E].value) for p in paths[4:]])
    expected = (read - read.min()) * scale
    z_order = np.argsort([float(pydicom.dcmread(p).ImagePositionPatient[2]) for p in paths[4:]])
    np.testing.assert_allclose(da["slice_time"].values, expected[z_order], atol=1e-6)
    assert sidecar(da)["SliceTiming"] == pytest.approx(list(expected[z_order]), abs=1e-6)


def test_rtia_timer_that_fits_no_tr_is_ignored(tmp_path):
    rtia = [[0.0] * 4, [0.0, 9e4, 1e5, 2e5]]  # neither seconds nor 1/10000 s fit a 2 s TR
    _ge_series(tmp_path, rtia=rtia)
    assert "slice_time" not in _quiet(dcmxr.open_series, str(tmp_path)).coords


def test_protocol_block_round_trip():
    block = _pdb(SLICEORDER=1, MBACCEL=2, IOPT="EPI, FMRI")
    keys = parse_protocol_block(struct.pack("<I", len(block)) + block)
    assert keys == {"SLICEORDER": "1", "MBACCEL": "2", "IOPT": "EPI, FMRI"}
    assert parse_protocol_block(b"\x00\x01 not gzip") == {}


@pytest.mark.parametrize("order", [0, 1], ids=["sequential", "interleaved"])
def test_protocol_block_multiband(tmp_path, order):
    """Multiband: slices k and k + n/mb share an excitation; excitations TR / n_exc apart, all within TR."""
    nz, mb, tr = 8, 2, 2000.0
    _ge_series(tmp_path, nz=nz, tr_ms=tr, pdb=_pdb(SLICEORDER=order, MBACCEL=mb, IOPT="EPI, FMRI"))
    st = _quiet(dcmxr.open_series, str(tmp_path))["slice_time"].values
    n_exc = nz // mb
    np.testing.assert_allclose(st[:n_exc], st[n_exc:])
    np.testing.assert_allclose(np.sort(st[:n_exc]), np.arange(n_exc) * tr / 1000 / n_exc)
    assert (np.diff(st[:n_exc]) > 0).all() == (order == 0)


@pytest.mark.parametrize("iopt,order", [("EDR, EPI, DIFF, Asset", 1), ("MPhVar, EPI", 0), ("EPI", -1)],
                         ids=["diffusion", "variable-delays", "no-order"])
def test_protocol_block_unsupported(tmp_path, iopt, order):
    """What dcm2niix does not time (diffusion, variable multiphase delays, no SLICEORDER) gets no slice_time."""
    keys = {"IOPT": iopt} if order < 0 else {"IOPT": iopt, "SLICEORDER": order}
    _ge_series(tmp_path, pdb=_pdb(**keys))
    da = _quiet(dcmxr.open_series, str(tmp_path))
    assert "slice_time" not in da.coords and "SliceTiming" not in sidecar(da)


def test_group_delay_shortens_the_slice_step():
    """An epiRT group delay is idle time at the end of the TR (GE README): slices fill TR - delay."""
    st = synthesised_times(10, 2000.0, group_delay_ms=500.0)
    np.testing.assert_allclose(np.diff(st), 0.15)


@pytest.mark.parametrize("versions,major,r3", [
    ("27\\LX\\MR Software release:DV26.0_R01_1725.a", 26.0, False),
    ("28\\LX\\MR Software release:DV28.0_R02_1947.a", 28.0, True),
    ("28\\LX\\MR29.1_EA_2039.g", 29.1, True),
    ("27\\LX\\MR Software release:RX27.0_R03_1831.a", 27.0, True),
    ("27\\LX\\MR Software release:RX27.0_R02_1831.a", 27.0, False),
])
def test_software_release(versions, major, r3):
    """Release parsing of GE SoftwareVersions (the values in our data and dcm2niix's examples)."""
    assert software_release(versions) == (pytest.approx(major), r3)


def test_group_delay_from_private_tag(tmp_path):
    """Without DELACQNOAV in the block, GE's (0043,107C) group delay (s, as pydicom reads it) shortens the step."""
    paths = _ge_series(tmp_path, nz=5, tr_ms=2000.0, pdb=_pdb(SLICEORDER=0, IOPT="EPI, FMRI"))
    for p in paths:
        ds = pydicom.dcmread(p)
        ds.add_new((0x0043, 0x0010), "LO", "GEMS_PARM_01")
        ds.add_new((0x0043, 0x107C), "FL", 0.5)
        ds.save_as(p)
    delay = float(pydicom.dcmread(paths[0])[0x0043, 0x107C].value)
    st = _quiet(dcmxr.open_series, str(tmp_path))["slice_time"].values
    np.testing.assert_allclose(np.diff(np.sort(st)), (2.0 - delay) / 5, atol=1e-6)


def test_cardiac_trigger_times_are_not_slice_times(tmp_path):
    """A non-EPI GE series whose TriggerTime varies (cardiac phases) gets no slice_time."""
    paths = write_series(tmp_path, shape=(3, 8, 8), n_timepoints=2, modality="MR",
                         extra={"Manufacturer": "GE MEDICAL SYSTEMS", "RepetitionTime": 5.0, "ScanningSequence": "GR"})
    for i, p in enumerate(paths):
        ds = pydicom.dcmread(p)
        ds.TriggerTime = 40.0 * (i // 3) + 3.0 * (i % 3)
        ds.save_as(p)
    assert "slice_time" not in _quiet(dcmxr.open_series, str(tmp_path)).coords
