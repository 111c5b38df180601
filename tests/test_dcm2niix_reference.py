"""dcmxr against dcm2niix: every dcm_qa series with a reference NIfTI.

Each case opens a series with dcmxr, maps our grid onto the NIfTI's through
both affines (see _nifti_ref.py) and asserts equal voxel values and an affine
within 1e-3 mm. Where dcm2niix splits one DICOM series into several NIfTIs
(echoes, magnitude/phase), the test selects the same frames from the scan
table with pandas, as a user would, and passes the filtered table.
"""
from __future__ import annotations

import json
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

import dcmxr
from _data import DATA, data_path
from _nifti_ref import compare_with_nifti


@lru_cache(maxsize=None)
def _table(folder: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dcmxr.scan(folder)


def _ref(path: Path) -> dict:
    return json.loads(path.with_name(path.name.split(".nii")[0] + ".json").read_text())


def _open(table, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dcmxr.open_series(table, **kw)


DCM_QA = sorted(p.name for p in (DATA / "mr/dcm_qa/Ref").glob("*.nii")) if (DATA / "mr/dcm_qa/Ref").exists() else ["missing"]


@pytest.mark.parametrize("name", DCM_QA)
def test_siemens_mosaic_orientations(name):
    """21 Siemens mosaic EPI series (axial/coronal/sagittal, asc/desc/interleaved, multiband JPEG)."""
    ref = data_path("mr/dcm_qa/Ref", name)
    table = _table(str(data_path("mr/dcm_qa/In")))
    da = _open(table, series=int(_ref(ref)["SeriesNumber"]))
    assert da.dims == ("t", "z", "y", "x")
    compare_with_nifti(da, ref)


@pytest.mark.parametrize("n", range(1, 10))
def test_transfer_syntax_mosaic(n):
    """The same mosaic in 9 transfer syntaxes (explicit/implicit/big endian, RLE, JPEG lossless,
    JPEG-LS, JPEG 2000): each file alone must equal dcm2niix's NIfTI of it."""
    src = data_path("transfer_syntax/dcm_qa_ts/In", f"{n}.dcm")
    da = _open(str(src))
    compare_with_nifti(da, data_path("transfer_syntax/dcm_qa_ts/Ref", f"{n}.nii"))


@pytest.mark.parametrize("name", ["DCM2NIIX_regression_test_4", "DCM2NIIX_regression_test_5",
                                  "EPI_PE=AP_3", "EPI_PE=PA_4"])
def test_nih_ge_and_siemens_classic(name):
    """GE and Siemens classic single-frame EPI (two vendors reuse series number 4: pick by description)."""
    ref = data_path("mr/dcm_qa_nih/Ref", name + ".nii")
    table = _table(str(data_path("mr/dcm_qa_nih/In")))
    info = _ref(ref)
    rows = table[(table.series_number == info["SeriesNumber"])
                 & (table.series_description == info["SeriesDescription"])]
    compare_with_nifti(_open(rows), ref)


@pytest.mark.parametrize("folder,name", [
    ("dwi/dcm_qa_ge", "Ax_DWI_TENSOR_R2_1"),
    ("perfusion/dcm_qa_ge_multiphase", "fMRI_Multiphase_Des_2"),
])
def test_ge_repeated_volumes(folder, name):
    """GE DWI (7 volumes) and multiphase fMRI (10 phases): repeated volumes become a leading dim."""
    ref = data_path(folder, "Ref", name + ".nii")
    table = _table(str(data_path(folder, "In")))
    da = _open(table, series=int(_ref(ref)["SeriesNumber"]))
    assert da.dims[0] in ("t", "dwi") and da.sizes[da.dims[0]] > 1
    compare_with_nifti(da, ref)
    bval = ref.with_suffix(".bval")
    if bval.exists():  # volume order and b-values equal dcm2niix's
        expected = [float(v) for v in bval.read_text().split()]
        np.testing.assert_array_equal(da["diffusion_b_value"].values.astype(float), expected)


def test_enhanced_siemens_sms():
    """Siemens XA enhanced multi-frame, 4 files of 6 frames: time from TemporalPositionIndex."""
    ref = data_path("enhanced/dcm_qa_enh/Ref", "Siemens_REST1_w_SMS_PF7-8_6.nii")
    table = _table(str(data_path("enhanced/dcm_qa_enh/In")))
    da = _open(table, series=6)
    assert da.sizes["t"] == 4
    compare_with_nifti(da, ref)


@pytest.mark.parametrize("name,image_type", [
    ("Philips_WIP_B0_NS_801_e1", "M"),
    ("Philips_WIP_B0_NS_801_e2_fieldmaphz", "FIELD_MAP"),
])
def test_enhanced_philips_b0(name, image_type):
    """Philips enhanced B0 map: dcm2niix writes magnitude and field map apart; select by ImageType."""
    ref = data_path("enhanced/dcm_qa_enh/Ref", name + ".nii")
    table = _table(str(data_path("enhanced/dcm_qa_enh/In")))
    rows = table[(table.series_number == 801) & table.image_type.str.endswith("\\" + image_type)]
    da = _open(rows)
    assert da.dtype == np.float32  # rescale slopes are not integers
    # dcm2niix's int16 + float32 scaling with RescaleIntercept -500 rounds to ~1e-5 of the range
    compare_with_nifti(_philips_precise(da), ref, rtol=1e-5, atol_range=1e-5)


@pytest.mark.parametrize("name,echo,image_type", [
    ("2001_WIP_fcMRI_Field_Mapping_enh_e1", 2.3, "M"),
    ("2001_WIP_fcMRI_Field_Mapping_enh_e1_ph", 2.3, "P"),
    ("2001_WIP_fcMRI_Field_Mapping_enh_e2", 4.6, "M"),
    ("2001_WIP_fcMRI_Field_Mapping_enh_e2_ph", 4.6, "P"),
])
def test_enhanced_philips_fieldmap_echoes(name, echo, image_type):
    """Philips enhanced dual-echo magnitude/phase: one NIfTI per (echo, image type)."""
    ref = data_path("enhanced/dcm_qa_philips_enh/Ref", name + ".nii.gz")
    table = _table(str(data_path("enhanced/dcm_qa_philips_enh/In")))
    rows = table[(table.series_number == 2001) & (table.echo_time == echo)
                 & table.image_type.str.endswith("\\" + image_type)]
    # phase images have RescaleIntercept -3142: float32 scaling in dcm2niix, see atol_range
    compare_with_nifti(_philips_precise(_open(rows)), ref, rtol=1e-5, atol_range=1e-4)


def test_enhanced_philips_3d_pcasl():
    """Philips enhanced 3D pCASL (derived, float values)."""
    ref = data_path("enhanced/dcm_qa_philips_enh/Ref", "1901_WIP_3DpCASL_enh_real.nii.gz")
    table = _table(str(data_path("enhanced/dcm_qa_philips_enh/In")))
    compare_with_nifti(_philips_precise(_open(table, series=1901)), ref, rtol=1e-5)


def _philips_precise(da):
    """Turn dcmxr's values into what dcm2niix writes for Philips.

    dcmxr returns the standard DICOM real-world value DV = PV*RS + RI (RescaleSlope/Intercept).
    dcm2niix (default ``-p y``) writes Philips "precise floating point" values from the private
    scale slope SS (2005,100E): FP = DV / (RS*SS) when RS is constant over the series; when RS varies
    between frames it first converts each frame to DV and then divides by the first frame's SS
    (one NIfTI scale for the whole file). Both are computed here from dcmxr's per-frame coords.
    """
    def pick(name):
        return da.coords[name] if name in da.coords else da.attrs.get(name, da.encoding.get(name))

    rs, ss = pick("rescale_slope"), pick("philips_scale_slope")
    if "rescale_slope" in da.coords:
        first = float(np.ravel(da.coords["philips_scale_slope"].values)[0]) if "philips_scale_slope" in da.coords else float(ss)
        out = da.astype("float64") / first
    else:
        out = da.astype("float64") / (rs * ss)
    return out.assign_coords({k: da[k] for k in ("x", "y", "z")})


@pytest.mark.parametrize("name", ["201_pCASL_classic", "301_ASL_MultiPhase_classic",
                                  "401_3D_pCASL_6mm_classic", "402_SOURCE_-_3D_pCASL_6mm_classic"])
def test_philips_classic_asl(name):
    """Philips classic ASL: same grid; values compared after applying Philips' precise scaling."""
    ref = data_path("perfusion/dcm_qa_philips_asl/Ref", name + ".nii")
    table = _table(str(data_path("perfusion/dcm_qa_philips_asl/In")))
    da = _open(table, series=int(_ref(ref)["SeriesNumber"]))
    compare_with_nifti(_philips_precise(da), ref, rtol=1e-5)
