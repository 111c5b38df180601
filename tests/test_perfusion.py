"""Perfusion and N-D series (issue 4 items 3-5): discover, open_perfusion, open_bids.

References: dcm2niix outputs in the shared data's Ref/ folders (NIfTI shape and voxels, .bval/.bvec,
JSON RepetitionTime/EchoTime/FlipAngle/SliceTiming) and pydicom reads of the files we wrote.
Synthetic series (dcmxr.testing) cover what the real data lacks: TWIST-style per-timepoint exports,
mixed matrix sizes in a group, variable flip angles, BIDS ASL trees.
"""
from __future__ import annotations

import json
import warnings
from functools import lru_cache

import numpy as np
import pydicom
import pytest

import dcmxr
from dcmxr.errors import AmbiguousSelectionError, GeometryError, SelectionError
from dcmxr.perfusion import discover, open_bids, open_perfusion
from dcmxr.perfusion.bids import BidsValidityError
from dcmxr.testing.synthetic import write_series
from _data import data_path
from _nifti_ref import compare_with_nifti

nib = pytest.importorskip("nibabel")

SHAPE = (3, 6, 5)


@lru_cache(maxsize=None)
def _table(folder: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dcmxr.scan(folder)


def _quiet(fn, *a, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*a, **kw)


def _uids():
    return dict(study_uid=pydicom.uid.generate_uid(), frame_of_reference_uid=pydicom.uid.generate_uid())


# ------------------------------------------------------------------ real data against dcm2niix
GE_DYNAMIC = [  # (folder with In/ and Ref/, ref stem, series number, description)
    # multiphase: slice times in Trigger Time; the NIH runs (DV26): in GE's Protocol Data Block
    ("perfusion/dcm_qa_ge_multiphase", "fMRI_Multiphase_Des_2", 2, None),
    ("mr/dcm_qa_nih", "DCM2NIIX_regression_test_4", 4, "Axial EPI-FMRI (Interleaved I to S)"),
    ("mr/dcm_qa_nih", "DCM2NIIX_regression_test_5", 5, "Axial EPI-FMRI (Sequential I to S)"),
]


@pytest.mark.parametrize("folder,stem,number,desc", GE_DYNAMIC, ids=[c[1] for c in GE_DYNAMIC])
def test_discover_dynamic_shape_equals_dcm2niix(folder, stem, number, desc):
    """discover's role/shape/temporal positions from headers equal the 4D NIfTI dcm2niix wrote."""
    ref = nib.load(str(data_path(folder, "Ref", stem + ".nii")))
    info = json.loads(data_path(folder, "Ref", stem + ".json").read_text())
    found = discover(_table(str(data_path(folder, "In"))))
    row = found[(found.series_number == number) & (found.series_description == info["SeriesDescription"])]
    assert len(row) == 1
    row = row.iloc[0]
    nx, ny, nz, nt = ref.shape
    assert row.role_hint == "dynamic"
    assert row["shape"] == (nt, nz, ny, nx)
    assert row.n_temporal_positions == nt
    assert row.repetition_time / 1000 == pytest.approx(info["RepetitionTime"])
    assert row.echo_time / 1000 == pytest.approx(info["EchoTime"])
    assert row.flip_angle == pytest.approx(info["FlipAngle"])


@pytest.mark.parametrize("folder,stem,number,desc", GE_DYNAMIC, ids=[c[1] for c in GE_DYNAMIC])
def test_open_perfusion_ge_equals_dcm2niix(folder, stem, number, desc):
    """4D voxels, volume order, TR/TE/flip angle and SliceTiming (in s) equal dcm2niix's NIfTI + JSON."""
    ref_path = data_path(folder, "Ref", stem + ".nii")
    info = json.loads(ref_path.with_suffix(".json").read_text())
    rows = discover(_table(str(data_path(folder, "In"))))
    if desc is not None:
        rows = rows[rows.series_description == desc]
    da = _quiet(open_perfusion, rows, modality="DSC", series=number)
    assert da.dims == ("t", "z", "y", "x")
    compare_with_nifti(da, ref_path)
    assert da.attrs["repetition_time"] / 1000 == pytest.approx(info["RepetitionTime"])
    assert da.attrs["echo_time"] / 1000 == pytest.approx(info["EchoTime"])
    assert da.attrs["flip_angle"] == pytest.approx(info["FlipAngle"])
    assert da.attrs["acquisition_source"]["repetition_time"] == "standard"
    assert da.attrs["acquisition_units"]["echo_time"] == "ms"
    # SliceTiming is listed along the NIfTI k axis: map it to our z through the affines
    k_dir = nib.load(str(ref_path)).affine[:3, 2] * np.array([-1, -1, 1])  # RAS -> LPS
    same = float(np.dot(k_dir, da.z.attrs["direction"])) > 0
    st = da["slice_time"].values
    assert da["slice_time"].dims == ("z",) and da["slice_time"].attrs["units"] == "s"
    np.testing.assert_allclose(st if same else st[::-1], info["SliceTiming"], atol=1e-5)  # dcm2niix prints 6 digits
    if folder == "mr/dcm_qa_nih":  # no acquisition times between volumes in these headers: t is an index
        assert "temporal_resolution" not in da.attrs
        return
    assert da.attrs["temporal_resolution"] == pytest.approx(info["RepetitionTime"])


PHILIPS_ASL = ["201_pCASL_classic", "301_ASL_MultiPhase_classic", "401_3D_pCASL_6mm_classic",
               "402_SOURCE_-_3D_pCASL_6mm_classic"]


@pytest.mark.parametrize("stem", PHILIPS_ASL)
def test_philips_asl_discover_and_parameters(stem):
    """Every Philips ASL series is found as 'asl'; TR/TE/flip angle equal dcm2niix's JSON (s)."""
    info = json.loads(data_path("perfusion/dcm_qa_philips_asl/Ref", stem + ".json").read_text())
    found = discover(_table(str(data_path("perfusion/dcm_qa_philips_asl/In"))))
    assert set(found.role_hint) == {"asl"}
    da = _quiet(open_perfusion, found, modality="ASL", series=int(info["SeriesNumber"]))
    if stem.startswith("402"):  # dcm2niix writes its own per-volume TR estimate (15.8 s); DICOM says 4.234 s
        assert info["RepetitionTime"] > 3 * da.attrs["repetition_time"] / 1000
    else:
        assert da.attrs["repetition_time"] / 1000 == pytest.approx(info["RepetitionTime"], rel=1e-6)
    assert da.attrs["echo_time"] / 1000 == pytest.approx(info["EchoTime"], rel=1e-6)
    assert da.attrs["flip_angle"] == pytest.approx(info["FlipAngle"])
    assert da.attrs["m0_scale"] == 1.0 and da.attrs["acquisition_source"]["m0_scale"] == "default"
    nii = nib.load(str(data_path("perfusion/dcm_qa_philips_asl/Ref", stem + ".nii")))
    n_vol = int(np.prod(nii.shape[3:])) if nii.ndim > 3 else 1
    lead = int(np.prod([da.sizes[d] for d in da.dims if d not in ("z", "y", "x")]))
    assert lead == n_vol


def _dcm2niix_frame_lps(da) -> np.ndarray:
    """dcm2niix's NIfTI voxel axes for a classic 2D series, in LPS: i = row direction, j = the
    column direction flipped (dcm2niix flips rows), k = the slice normal in increasing position."""
    return np.stack([np.asarray(da.x.attrs["direction"]), -np.asarray(da.y.attrs["direction"]),
                     np.asarray(da.z.attrs["direction"])], axis=1)


def _bvec_to_lps(bvec: np.ndarray, frame_lps: np.ndarray) -> np.ndarray:
    """FSL bvecs (voxel frame; i negated when the RAS voxel->world determinant is positive) -> LPS."""
    v = bvec.copy()
    if np.linalg.det(np.diag([-1.0, -1.0, 1.0]) @ frame_lps) > 0:
        v[0] = -v[0]
    return frame_lps @ v


def test_dcm2niix_frame_rule_holds_on_ge_reference():
    """The frame used for Philips (no Ref NIfTI in the snapshot) is checked here against a real
    dcm2niix affine: the GE DWI Ref NIfTI's axes equal _dcm2niix_frame_lps of our array."""
    da = _quiet(open_perfusion, str(data_path("dwi/dcm_qa_ge/In")), modality="IVIM")
    aff = nib.load(str(data_path("dwi/dcm_qa_ge/Ref/Ax_DWI_TENSOR_R2_1.nii"))).affine
    frame = np.diag([-1.0, -1.0, 1.0]) @ (aff[:3, :3] / np.linalg.norm(aff[:3, :3], axis=0))
    np.testing.assert_allclose(frame, _dcm2niix_frame_lps(da), atol=1e-5)


@pytest.mark.parametrize("folder,series,stem", [
    ("dwi/dcm_qa_ge", None, "Ax_DWI_TENSOR_R2_1"),
    ("dwi/dcm_qa_philips_dwi", 701, "701_DTI_Biobank_2mm_MB3S2_EPI_cl"),
])
def test_dwi_order_bvals_bvecs_equal_dcm2niix(folder, series, stem):
    """Volume order and b-values exact; LPS gradients within 1e-4 of dcm2niix's .bvec after the frame
    change (b=0 volumes excluded: dcm2niix writes an arbitrary direction for them). GE gradients are
    vendor-frame only on the array (their bvec is checked in test_nifti through to_nifti)."""
    da = _quiet(open_perfusion, _table(str(data_path(folder, "In"))), modality="IVIM", series=series)
    bval = np.loadtxt(data_path(folder, "Ref", stem + ".bval"))
    bvec = np.loadtxt(data_path(folder, "Ref", stem + ".bvec"))
    np.testing.assert_array_equal(da["diffusion_b_value"].values.astype(float), bval)
    np.testing.assert_array_equal(da.attrs["b_values"], bval)
    assert da.attrs["acquisition_units"]["b_values"] == "s/mm**2"
    if folder == "dwi/dcm_qa_ge":
        assert "diffusion_gradient_0" not in da.coords and "diffusion_gradient_vendor_0" in da.coords
        return
    ours = np.stack([da[f"diffusion_gradient_{k}"].values for k in range(3)]).astype(float)
    theirs = _bvec_to_lps(bvec, _dcm2niix_frame_lps(da))
    dw = bval > 0
    assert dw.sum() >= 6
    np.testing.assert_allclose(ours[:, dw], theirs[:, dw], atol=1e-4)


# ------------------------------------------------------------------ synthetic: TWIST, VFA, roles
def _twist(tmp_path, tts=(12.5, 2.5, 7.5, 0.0), shapes=None, **kw):
    uids = _uids()
    for k, tt in enumerate(tts):
        shape = shapes[k] if shapes else SHAPE
        write_series(tmp_path, shape=shape, modality="MR", rescale_intercept=0.0, prefix=f"s{k}_",
                     series_number=10 + k, series_description=f"t1_twist_tra_dyn_TT={tt:.1f}s",
                     series_uid=pydicom.uid.generate_uid(), extra={"FlipAngle": 12.0, "RepetitionTime": 4.2},
                     pixel_fn=lambda t, z, y, x, k=k: 100 * k + 10 * z + y, **uids, **kw)
    return uids


def test_twist_group_is_stacked_sorted_by_tt(tmp_path):
    tts = (12.5, 2.5, 7.5, 0.0)
    uids = _twist(tmp_path, tts)
    write_series(tmp_path, shape=(3, 6, 5), modality="MR", prefix="loc_", series_number=1,
                 series_description="localizer", extra={"ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"]}, **uids)
    found = discover(tmp_path)
    frames = found[found.role_hint == "dynamic_frame"]
    assert len(frames) == 4 and frames.group_key.nunique() == 1
    assert list(frames.tt) == sorted(tts)
    assert found.loc[found.series_description == "localizer", "role_hint"].item() == "localizer"
    da = open_perfusion(frames, modality="DCE")
    assert da.dims == ("t", "z", "y", "x")
    np.testing.assert_allclose(da.tt.values, sorted(tts))
    np.testing.assert_allclose(da.t.values, np.array(sorted(tts)) - min(tts))
    assert da.t.attrs["units"] == "s"
    writer_index = [tts.index(v) for v in sorted(tts)]  # the pixel function encodes the written series
    v = da.values
    assert np.all(v[:, 0, 0, 0] == 100 * np.array(writer_index))
    assert np.all(v[0, :, 0, 0] == 100 * writer_index[0] + 10 * np.arange(SHAPE[0]))
    assert da.attrs["series_description"] == "t1_twist_tra_dyn"
    assert da.attrs["temporal_resolution"] == np.median(np.diff(sorted(tts))) and da.attrs["acquisition_source"]["temporal_resolution"] == "vendor"
    assert da.attrs["flip_angle"] == 12.0
    assert list(da.series_number.values) == [10 + i for i in writer_index]
    # geometry is the members' (z/y/x coords and directions survive the stack)
    one = dcmxr.open_series(tmp_path, series=10)
    for ax in ("x", "y", "z"):
        np.testing.assert_allclose(da[ax].values, one[ax].values)
        assert da[ax].attrs["direction"] == one[ax].attrs["direction"]
    # the same group, found from the folder alone (the only dynamic candidate)
    again = open_perfusion(tmp_path, modality="DCE")
    np.testing.assert_array_equal(again.values, v)


def test_twist_mixed_matrix_sizes_raise(tmp_path):
    _twist(tmp_path, (0.0, 5.0, 10.0), shapes=[SHAPE, (3, 8, 5), SHAPE])
    found = discover(tmp_path)
    with pytest.raises(GeometryError, match=r"(?s)mixes matrix sizes.*TT=5s"):
        open_perfusion(found, modality="DCE")
    # the message points at the fix: pass the members of one size
    same = found[found["shape"] == (3, 6, 5)]
    assert open_perfusion(same, modality="DCE").sizes["t"] == 2


def test_twist_shifted_member_raises(tmp_path):
    _twist(tmp_path, (0.0, 5.0))
    write_series(tmp_path, shape=SHAPE, modality="MR", rescale_intercept=0.0, prefix="off_", series_number=30,
                 series_description="t1_twist_tra_dyn_TT=10.0s", origin=(-30.0, -40.0, 12.0))
    found = discover(tmp_path)
    found = found[found.role_hint == "dynamic_frame"]
    assert found.group_key.nunique() == 2  # another study: its own group
    with pytest.raises(GeometryError, match="not on the grid"):
        open_perfusion(found[found.tt.isin([0.0, 5.0, 10.0])].assign(group_key="g"), modality="DCE")


def test_several_candidates_and_bad_modality(tmp_path):
    for k in range(2):
        write_series(tmp_path, shape=SHAPE, n_timepoints=3, modality="MR", prefix=f"d{k}_", series_number=k + 1,
                     series_description=f"dyn{k}")
    with pytest.raises(AmbiguousSelectionError, match="series="):
        open_perfusion(tmp_path, modality="DSC")
    assert open_perfusion(tmp_path, modality="DSC", series=2).attrs["series_number"] == 2
    with pytest.raises(SelectionError, match="no series with role"):
        open_perfusion(tmp_path, modality="IVIM")
    with pytest.raises(ValueError, match="modality="):
        open_perfusion(tmp_path, modality="PET")


def test_acquisition_priority(tmp_path):
    files = write_series(tmp_path, shape=SHAPE, n_timepoints=4, time_step_s=3.0, modality="MR",
                         extra={"FlipAngle": 15.0, "RepetitionTime": 5.0, "EchoTime": 2.0})
    hdr = pydicom.dcmread(files[0], stop_before_pixels=True)
    da = open_perfusion(tmp_path, modality="DCE")
    assert da.attrs["flip_angle"] == float(hdr.FlipAngle) and da.attrs["acquisition_source"]["flip_angle"] == "standard"
    assert da.attrs["temporal_resolution"] == 3.0 and da.attrs["n_timepoints"] == 4
    side = {"FlipAngle": 14.0, "RepetitionTime": 0.0051}
    da = open_perfusion(tmp_path, modality="DCE", sidecar=side)
    assert da.attrs["flip_angle"] == 14.0 and da.attrs["repetition_time"] == pytest.approx(5.1)
    assert da.attrs["acquisition_source"]["repetition_time"] == "sidecar"
    from dcmxr.units import ureg

    da = open_perfusion(tmp_path, modality="DCE", sidecar=side,
                        acquisition={"flip_angle": 13.0, "EchoTime": 0.0025, "repetition_time": ureg.Quantity(6, "ms")})
    assert da.attrs["flip_angle"] == 13.0 and da.attrs["echo_time"] == pytest.approx(2.5)
    assert da.attrs["repetition_time"] == pytest.approx(6.0)
    assert {da.attrs["acquisition_source"][k] for k in ("flip_angle", "echo_time", "repetition_time")} == {"acquisition"}
    assert ureg.Quantity(da.attrs["echo_time"], da.attrs["acquisition_units"]["echo_time"]).to("s").m == pytest.approx(0.0025)
    with pytest.raises(KeyError, match="unknown parameter"):
        open_perfusion(tmp_path, modality="DCE", acquisition={"flipangle": 1})


def test_vfa_group_and_m0(tmp_path):
    uids = _uids()
    for k, fa in enumerate((2.0, 5.0, 10.0)):
        write_series(tmp_path, shape=SHAPE, modality="MR", prefix=f"fa{k}_", series_number=k + 1,
                     series_description=f"vfa_fa{int(fa)}", series_uid=pydicom.uid.generate_uid(),
                     extra={"FlipAngle": fa, "RepetitionTime": 4.0}, **uids)
    write_series(tmp_path, shape=SHAPE, modality="MR", prefix="m0_", series_number=9, series_description="pCASL M0",
                 series_uid=pydicom.uid.generate_uid(), **uids)
    found = discover(tmp_path)
    vfa = found[found.role_hint == "vfa"]
    assert sorted(vfa.flip_angle) == [2.0, 5.0, 10.0] and vfa.group_key.nunique() == 1
    assert found.loc[found.series_number == 9, "role_hint"].item() == "m0"


# ------------------------------------------------------------------ BIDS
def _nifti(path, shape, affine=None, data=None):
    arr = np.arange(np.prod(shape), dtype=np.int16).reshape(shape) if data is None else data
    img = nib.Nifti1Image(arr, np.diag([2.0, 2.0, 3.0, 1.0]) if affine is None else affine)
    img.header.set_xyzt_units("mm", "sec")
    img.header["pixdim"][4] = 4.0
    nib.save(img, str(path))


ASL_META = {"ArterialSpinLabelingType": "PCASL", "PostLabelingDelay": 1.8, "LabelingDuration": 1.65,
            "M0Type": "Separate", "RepetitionTimePreparation": 4.0, "BackgroundSuppression": True,
            "RepetitionTime": 4.0, "EchoTime": 0.012, "FlipAngle": 90}


def _asl_tree(root, meta=ASL_META, context=("control", "label") * 3, m0=True, n=6):
    d = root / "sub-01" / "ses-1" / "perf"
    d.mkdir(parents=True)
    stem = d / "sub-01_ses-1_asl"
    _nifti(stem.with_suffix(".nii.gz"), (4, 5, 3, n))
    (root / "asl.json").write_text(json.dumps({"M0Scale": 10.0}))  # inherited from the root
    stem.with_suffix(".json").write_text(json.dumps(meta))
    if context is not None:
        (d / "sub-01_ses-1_aslcontext.tsv").write_text("volume_type\n" + "\n".join(context) + "\n")
    if m0:
        _nifti(d / "sub-01_ses-1_m0scan.nii.gz", (4, 5, 3, 2))
    return stem.with_suffix(".nii.gz")


def test_open_bids_asl(tmp_path):
    path = _asl_tree(tmp_path)
    ds = open_bids(tmp_path, subject="01", session="1", suffix="asl")
    asl = ds["asl"]
    assert asl.dims == ("t", "z", "y", "x") and asl.sizes["t"] == 6
    assert list(asl.asl_context.values) == ["control", "label"] * 3
    ref = nib.load(str(path)).get_fdata()
    np.testing.assert_array_equal(asl.values, ref.transpose(3, 2, 1, 0))  # NIfTI (x, y, z, t) -> (t, z, y, x)
    assert asl.attrs["post_labeling_delay"] == 1.8 and asl.attrs["labeling_duration"] == 1.65
    assert asl.attrs["arterial_spin_labeling_type"] == "PCASL"
    assert asl.attrs["m0_scale"] == 10.0 and asl.attrs["acquisition_source"]["m0_scale"] == "sidecar"
    assert asl.attrs["labeling_efficiency"] == 0.85 and asl.attrs["acquisition_source"]["labeling_efficiency"] == "default"
    assert asl.attrs["echo_time"] == pytest.approx(12.0)
    assert ds["m0scan"].dims == ("m0", "z", "y", "x") and ds["m0scan"].sizes["m0"] == 2
    # the control - label difference, lazily
    diff = asl.where(asl.asl_context == "control", drop=True).values - asl.where(asl.asl_context == "label", drop=True).values
    np.testing.assert_array_equal(diff, (ref[..., 0::2] - ref[..., 1::2]).transpose(3, 2, 1, 0))


@pytest.mark.parametrize("change,match", [
    ({"LabelingDuration": None}, "LabelingDuration"),
    ({"PostLabelingDelay": None}, "PostLabelingDelay"),
    ({"ArterialSpinLabelingType": None}, "ArterialSpinLabelingType"),
    ({"ArterialSpinLabelingType": "PASL", "LabelingDuration": None}, "BolusCutOffFlag"),
    ({"ArterialSpinLabelingType": "PASL", "BolusCutOffFlag": True}, "BolusCutOffDelayTime"),
    ({"M0Type": "Included"}, "m0scan"),
])
def test_open_bids_asl_validity(tmp_path, change, match):
    meta = {k: v for k, v in {**ASL_META, **change}.items() if v is not None}
    _asl_tree(tmp_path, meta=meta)
    with pytest.raises(BidsValidityError, match=match):
        open_bids(tmp_path, subject="sub-01", session="1", suffix="asl")


def test_open_bids_asl_context_problems(tmp_path):
    _asl_tree(tmp_path / "a", context=("control", "label"))
    with pytest.raises(BidsValidityError, match="lists 2 volumes"):
        open_bids(tmp_path / "a", subject="01", session="1")
    _asl_tree(tmp_path / "b", context=None)
    with pytest.raises(BidsValidityError, match="aslcontext"):
        open_bids(tmp_path / "b", subject="01", session="1")
    _asl_tree(tmp_path / "c", m0=False)
    with pytest.raises(BidsValidityError, match="Separate"):
        open_bids(tmp_path / "c", subject="01", session="1")
    with pytest.raises(SelectionError, match="subjects"):
        open_bids(tmp_path / "a", subject="02")


def test_open_bids_dwi_from_dcm2niix_output(tmp_path):
    """A BIDS tree made of dcm2niix's GE DWI output (symlinks): dims, b-values and gradients equal
    those open_series reads from the DICOM."""
    ref = data_path("dwi/dcm_qa_ge/Ref")
    d = tmp_path / "sub-01" / "dwi"
    d.mkdir(parents=True)
    for ext in ("nii", "json", "bval", "bvec"):
        (d / f"sub-01_acq-tensor_dwi.{ext}").symlink_to(ref / f"Ax_DWI_TENSOR_R2_1.{ext}")
    ds = open_bids(tmp_path, subject="01", suffix="dwi", acq="tensor")
    dwi = ds["dwi"]
    dicom = _quiet(dcmxr.open_series, _table(str(data_path("dwi/dcm_qa_ge/In"))))
    assert dwi.dims == dicom.dims == ("dwi", "z", "y", "x")
    np.testing.assert_array_equal(dwi.diffusion_b_value.values, dicom.diffusion_b_value.values.astype(float))
    np.testing.assert_array_equal(dwi.values, dcmxr.open_nifti(ref / "Ax_DWI_TENSOR_R2_1.nii").values)
    assert dwi.attrs["echo_time"] == pytest.approx(dicom.attrs["echo_time"])
    with pytest.raises(SelectionError, match="no \\*_bold"):
        open_bids(tmp_path, subject="01", suffix="bold")
    (d / "sub-01_acq-other_dwi.nii").symlink_to(ref / "Ax_DWI_TENSOR_R2_1.nii")
    with pytest.raises(AmbiguousSelectionError, match="acq-other"):
        open_bids(tmp_path, subject="01", suffix="dwi")
