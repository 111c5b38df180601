"""Standard per-frame ASL Context (0018,9257) of enhanced MR -> the ``asl`` dim (issue 4).

ASL Context lives in the MR Arterial Spin Labeling functional group (PS3.3 C.8.13.5.14, Enumerated
Values LABEL / CONTROL / M_ZERO_SCAN); the classic MR Image IOD has no such attribute. The expected
values (contexts, temporal positions, slice positions, stored pixels, rescale) are read back with
pydicom from the files written, never from dcmxr; the dim convention is the one of the Philips
(2005,1429) label, checked here by writing the same object with the Philips private label instead.
"""
from __future__ import annotations

import warnings

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

import dcmxr
from dcmxr.testing.synthetic import write_enhanced

CONTEXTS = ("LABEL", "CONTROL", "M_ZERO_SCAN")
SHAPE = (4, 6, 5)


def _open(path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dcmxr.open_series(str(path), **kw)


def _pixel_fn(t, z, y, x):
    return 100 * t + 10 * z + y


def _reference(path):
    """pydicom's view of the file: {(context, temporal index, z position): rescaled frame}."""
    ds = pydicom.dcmread(path)
    pixels = ds.pixel_array
    shared = ds.SharedFunctionalGroupsSequence[0]
    out = {}
    for f, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
        rescale = (item.get("PixelValueTransformationSequence") or shared.PixelValueTransformationSequence)[0]
        ctx = item.MRArterialSpinLabelingSequence[0].ASLContext
        tpi = int(item.FrameContentSequence[0].TemporalPositionIndex)
        zpos = float(item.PlanePositionSequence[0].ImagePositionPatient[2])
        out[(ctx, tpi, zpos)] = pixels[f] * float(rescale.RescaleSlope) + float(rescale.RescaleIntercept)
    return out


def _check_voxels(da, ref):
    """Every frame pydicom reads is where dcmxr's coordinates say (axial stack: z index by ascending IPP z)."""
    contexts = sorted({k[0] for k in ref})  # the Philips convention: label values in sorted order
    times = sorted({k[1] for k in ref})
    zs = sorted({k[2] for k in ref})
    assert list(da["asl"].values) == contexts
    assert da.sizes.get("t", 1) == len(times) and da.sizes["z"] == len(zs)
    values = da.values
    for (ctx, tpi, zpos), frame in ref.items():
        sel = {"asl": contexts.index(ctx), "z": zs.index(zpos)}
        if "t" in da.dims:
            sel["t"] = times.index(tpi)
        key = tuple(sel.get(d, slice(None)) for d in da.dims)
        np.testing.assert_array_equal(values[key], frame)


@pytest.mark.parametrize("asl_outer,shuffle", [(False, False), (True, False), (True, True), (False, True)])
def test_asl_context_becomes_asl_dim(tmp_path, asl_outer, shuffle):
    """LABEL/CONTROL/M_ZERO_SCAN x 2 time points; the acquisition loop order decides the dim order,
    the file order of the frames (shuffled, or as the Dimension Index Sequence lists them) does not."""
    p = write_enhanced(tmp_path / "asl.dcm", shape=SHAPE, n_timepoints=2, modality="MR", rescale_intercept=0.0,
                       asl_context=CONTEXTS, asl_outer=asl_outer, shuffle_frames=shuffle, pixel_fn=_pixel_fn)
    ds = pydicom.dcmread(p, stop_before_pixels=True)
    pointers = [pydicom.datadict.keyword_for_tag(it.DimensionIndexPointer) for it in ds.DimensionIndexSequence]
    assert ("ASLContext" in pointers) and (pointers.index("ASLContext") < pointers.index("TemporalPositionIndex")) \
        == asl_outer
    da = _open(p)
    outer = ("asl", "t") if asl_outer else ("t", "asl")
    assert da.dims == outer + ("z", "y", "x")
    _check_voxels(da, _reference(p))
    # t in seconds from the first volume: the FrameAcquisitionDateTime pydicom reads, earliest per time point
    per_t = {}
    for it in ds.PerFrameFunctionalGroupsSequence:
        fc = it.FrameContentSequence[0]
        sec = float(str(fc.FrameAcquisitionDateTime)[12:])
        per_t[int(fc.TemporalPositionIndex)] = min(sec, per_t.get(int(fc.TemporalPositionIndex), np.inf))
    first = [per_t[k] for k in sorted(per_t)]
    np.testing.assert_allclose(da.t.values, np.array(first) - first[0])


def test_single_time_point_asl_dim(tmp_path):
    p = write_enhanced(tmp_path / "asl.dcm", shape=SHAPE, modality="MR", rescale_intercept=0.0,
                       asl_context=("CONTROL", "LABEL"), pixel_fn=_pixel_fn)
    da = _open(p)
    assert da.dims == ("asl", "z", "y", "x")
    _check_voxels(da, _reference(p))


def test_where_selects_one_context(tmp_path):
    p = write_enhanced(tmp_path / "asl.dcm", shape=SHAPE, n_timepoints=2, modality="MR", rescale_intercept=0.0,
                       asl_context=CONTEXTS, pixel_fn=_pixel_fn)
    m0 = _open(p, where={"ASLContext": "M_ZERO_SCAN"})
    assert m0.dims == ("t", "z", "y", "x")
    ref = {k[1:]: v for k, v in _reference(p).items() if k[0] == "M_ZERO_SCAN"}
    zs = sorted({k[1] for k in ref})
    for (tpi, zpos), frame in ref.items():
        np.testing.assert_array_equal(m0.values[tpi - 1, zs.index(zpos)], frame)


def _to_philips(path, out):
    """Same object with the Philips private label (2005,140F)>(2005,1429) instead of the standard macro."""
    ds = pydicom.dcmread(path)
    for item in ds.PerFrameFunctionalGroupsSequence:
        ctx = item.MRArterialSpinLabelingSequence[0].ASLContext
        del item.MRArterialSpinLabelingSequence
        sub = Dataset()
        sub.add_new(0x20050010, "LO", "Philips MR Imaging DD 005")
        sub.add_new(0x20051429, "CS", ctx)
        item.add_new(0x20050010, "LO", "Philips MR Imaging DD 005")
        item.add_new(0x2005140F, "SQ", Sequence([sub]))
    ds.save_as(out)
    return out


def test_same_dim_as_philips_label(tmp_path):
    """The standard and the Philips label give the same dims, coordinate values and voxels."""
    p = write_enhanced(tmp_path / "std.dcm", shape=SHAPE, n_timepoints=2, modality="MR", rescale_intercept=0.0,
                       asl_context=("LABEL", "CONTROL"), asl_outer=True, pixel_fn=_pixel_fn)
    q = _to_philips(p, tmp_path / "philips.dcm")
    assert str(pydicom.dcmread(q, stop_before_pixels=True).PerFrameFunctionalGroupsSequence[0][0x2005, 0x140F]
               .value[0][0x2005, 0x1429].value) == "LABEL"
    std, phil = _open(p), _open(q)
    assert std.dims == phil.dims == ("asl", "t", "z", "y", "x")
    assert list(std.asl.values) == list(phil.asl.values)
    np.testing.assert_array_equal(std.values, phil.values)
    np.testing.assert_allclose(std.t.values, phil.t.values)


def test_context_per_time_point_is_a_t_coordinate(tmp_path):
    """Interleaved label/control numbered by temporal position (one context per time point): no grid,
    so ``t`` stays the dim and the context is its coordinate (as BIDS' aslcontext.tsv)."""
    p = write_enhanced(tmp_path / "asl.dcm", shape=SHAPE, n_timepoints=4, modality="MR", rescale_intercept=0.0,
                       pixel_fn=_pixel_fn)
    ds = pydicom.dcmread(p)
    for item in ds.PerFrameFunctionalGroupsSequence:
        ctx = Dataset()
        ctx.ASLContext = "CONTROL" if item.FrameContentSequence[0].TemporalPositionIndex % 2 else "LABEL"
        item.MRArterialSpinLabelingSequence = Sequence([ctx])
    ds.save_as(p)
    back = pydicom.dcmread(p, stop_before_pixels=True)
    per_t = {int(it.FrameContentSequence[0].TemporalPositionIndex): it.MRArterialSpinLabelingSequence[0].ASLContext
             for it in back.PerFrameFunctionalGroupsSequence}
    da = _open(p)
    assert da.dims == ("t", "z", "y", "x")
    assert list(da.asl_context.values) == [per_t[k] for k in sorted(per_t)]
    assert da.asl_context.dims == ("t",)
