"""The streaming SEG writer and the direct SEG reader, against highdicom and pydicom.

Oracles: highdicom builds the same SEG in memory (``to_seg(..., stream=False)``,
i.e. ``highdicom.seg.Segmentation``) and reads files back (``segread`` /
``get_volume``); pydicom decodes the 1-bit Pixel Data on its own
(``pixel_array``, its ``unpack_bits``); dicom3tools' ``dciodvfy`` validates the
IOD. Third-party SEGs (dcmqi, highdicom) from ../shared/data/seg.
"""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pydicom
import pytest
import xarray as xr

import dcmxr
from _data import data_path
from dcmxr.backend import seg_frames
from dcmxr.backend.derived import open_seg
from dcmxr.errors import AmbiguousSelectionError, ExportError
from dcmxr.export.seg import to_seg
from dcmxr.interop import from_highdicom_volume

hd = pytest.importorskip("highdicom")
da_ = pytest.importorskip("dask.array")

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _dciodvfy_errors(path) -> list[str]:
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (Debian dicom3tools) is not installed")
    out = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    return [ln for ln in (out.stdout + out.stderr).splitlines() if ln.startswith("Error")]


@pytest.fixture(scope="module")
def ct():
    return dcmxr.open_series(data_path("ct", "dcmqi"))


@pytest.fixture(scope="module")
def small():
    """23 x 38 single-frame images: 874-bit frames, so BINARY frames are not byte aligned."""
    return dcmxr.open_series(data_path("seg", "dcmqi", "23x38x3", "image"))


def _volume(path, **kw):
    return hd.seg.segread(str(path)).get_volume(combine_segments=False, rescale_fractional=True, **kw)


def _same_as_highdicom_built(mask, source, segments, tmp_path, **kw):
    streamed, built = tmp_path / "streamed.dcm", tmp_path / "highdicom.dcm"
    ds = to_seg(mask, source, segments, path=streamed, **kw)
    ref = to_seg(mask, source, segments, path=built, stream=False, **kw)
    assert isinstance(ds, pydicom.Dataset) and not isinstance(ds, hd.seg.Segmentation)
    assert isinstance(ref, hd.seg.Segmentation)
    assert _dciodvfy_errors(streamed) == []
    a, b = _volume(streamed), _volume(built)
    np.testing.assert_array_equal(a.array, b.array)
    np.testing.assert_allclose(a.affine, b.affine, atol=1e-6)
    ours, theirs = pydicom.dcmread(streamed), pydicom.dcmread(built)
    # what to_seg returns (frames decoded on access, pixels deferred) is the file's content
    assert ds.PerFrameFunctionalGroupsSequence == ours.PerFrameFunctionalGroupsSequence
    assert ds.PixelData == ours.PixelData and ds.SOPInstanceUID == ours.SOPInstanceUID
    assert int(ours.NumberOfFrames) == int(theirs.NumberOfFrames)
    for kw_ in ("SegmentsOverlap", "SegmentationType", "Rows", "Columns", "BitsAllocated",
                "MaximumFractionalValue", "SOPClassUID"):
        assert ours.get(kw_) == theirs.get(kw_), kw_
    assert [s.SegmentLabel for s in ours.SegmentSequence] == [s.SegmentLabel for s in theirs.SegmentSequence]
    pm = [ds_.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0] for ds_ in (ours, theirs)]
    assert pm[0] == pm[1]
    assert ([r.ReferencedSOPInstanceUID for r in ours.SourceImageSequence]
            == [r.ReferencedSOPInstanceUID for r in theirs.SourceImageSequence])
    return streamed, a


# ------------------------------------------------------------------ writer
def test_streamed_labels_equal_highdicom(ct, tmp_path):
    labels = ((ct > 0).astype("uint8") + (ct > 200).astype("uint8")).chunk({"z": 1})
    _same_as_highdicom_built(labels, ct, {1: "liver", 2: "tumor"}, tmp_path, algorithm=("thr", "1"))


def test_streamed_cropped_subset_equals_highdicom(ct, tmp_path):
    labels = ((ct > 0).astype("uint8") + (ct > 200).astype("uint8"))
    sub = labels.isel(z=[0, 2], y=slice(100, 301), x=slice(37, 400))
    path, vol = _same_as_highdicom_built(sub, ct, {1: "liver", 2: "tumor"}, tmp_path)
    back = open_seg(path, like=ct)
    for n in (1, 2):
        exp = np.zeros(ct.shape, bool)
        exp[np.ix_([0, 2], range(100, 301), range(37, 400))] = (sub == n).values
        np.testing.assert_array_equal(back.sel(segment=n).values, exp)


def test_streamed_overlapping_dataset_equals_highdicom(ct, tmp_path):
    masks = xr.Dataset({"liver": ct > 0, "bone": ct > 200}).chunk({"z": 2})
    path, _ = _same_as_highdicom_built(masks, ct, None, tmp_path)
    assert pydicom.dcmread(path, stop_before_pixels=True).SegmentsOverlap == "YES"


def test_streamed_fractional_equals_highdicom(ct, tmp_path):
    prob = ((ct + 1024) / 4000).clip(0, 1).astype("float32").rename("liver")
    _same_as_highdicom_built(prob, ct, None, tmp_path)


def test_streamed_unaligned_frames_decode_with_pydicom(small, tmp_path):
    rng = np.random.default_rng(0)
    values = np.array([0, 3, 7, 40, 41])  # sparse labels among 1..45 declared
    arr = values[rng.integers(0, len(values), size=small.shape)].astype(np.uint8)
    arr[1] = 0  # an empty slice: its frames are omitted
    labels = xr.DataArray(arr, dims=small.dims, coords=small.coords, attrs=small.attrs).chunk({"z": 1})
    path, vol = _same_as_highdicom_built(labels, small, {k: "liver" for k in range(1, 46)}, tmp_path)
    ds = pydicom.dcmread(path)
    assert ds.Rows * ds.Columns % 8 != 0 and int(ds.NumberOfFrames) == 8
    frames = ds.pixel_array  # pydicom's own unpacking of bits running across frame boundaries
    uids = [str(u) for u in np.asarray(small["sop_instance_uid"].values)]
    table = small.dcm.headers.set_index("sop_instance_uid")
    for k, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
        n = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        uid = str(item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
        zi = uids.index(uid)
        np.testing.assert_array_equal(frames[k], (arr[zi] == n).astype(frames.dtype))
        src = pydicom.dcmread(table.loc[uid, "path"], stop_before_pixels=True)
        np.testing.assert_allclose([float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient],
                                   [float(v) for v in src.ImagePositionPatient])
    assert _dciodvfy_errors(path) == []


def test_streamed_all_empty_keeps_every_frame_like_highdicom(ct, tmp_path):
    empty = (ct > 1e9).rename("liver")
    _same_as_highdicom_built(empty, ct, None, tmp_path)


def test_lazy_mask_is_computed_once_chunk_by_chunk(ct, tmp_path):
    calls = []

    def make(block):
        if block.size:  # dask also calls it once on an empty array to learn the output type
            calls.append(block.shape[0])
        return block > 0

    lazy = ct.copy(data=da_.from_array(np.asarray(ct.values), chunks=(1, 512, 512)).map_blocks(make, dtype=bool))
    to_seg(lazy.rename("liver"), ct, path=tmp_path / "lazy.dcm")
    assert sorted(calls) == [1] * ct.sizes["z"]
    np.testing.assert_array_equal(open_seg(tmp_path / "lazy.dcm", like=ct).isel(segment=0).values,
                                  (ct > 0).values)


def test_bad_value_in_a_late_chunk_leaves_no_file(ct, tmp_path):
    labels = ((ct > 0).astype("uint8")).chunk({"z": 1})
    labels = labels.where(labels.z != labels.z[-1], 7).astype("uint8")  # undeclared 7 in the last slice only
    path = tmp_path / "bad.dcm"
    with pytest.raises(ExportError, match="not declared in segments"):
        to_seg(labels, ct, {1: "liver"}, path=path)
    assert list(tmp_path.iterdir()) == []


def test_stream_true_where_it_cannot_apply_is_refused(ct, tmp_path):
    with pytest.raises(ExportError, match="stream=True"):
        to_seg((ct > 0).rename("liver"), ct, stream=True)  # no path


# ------------------------------------------------------------------ reader
READABLE = ["dcmqi/liver.dcm", "dcmqi/partial_overlaps.dcm", "highdicom/seg_image_ct_binary.dcm",
            "highdicom/seg_image_ct_binary_fractional.dcm", "highdicom/seg_image_ct_true_fractional.dcm",
            "highdicom/seg_image_ct_binary_overlap.dcm", "highdicom/seg_image_ct_binary_single_frame.dcm"]


@pytest.mark.parametrize("name", READABLE)
def test_direct_reader_equals_highdicom_get_volume(name):
    path = data_path("seg", *name.split("/"))
    assert seg_frames.plan(path)[0] is not None  # the direct path is the one tested
    ours = open_seg(path, combine=False)
    assert isinstance(ours.data, da_.Array)
    ref = from_highdicom_volume(_volume(path))
    ref_vals = np.asarray(ref.values)
    got = ours.values
    np.testing.assert_array_equal(got, ref_vals.astype(bool) if got.dtype == bool else ref_vals)
    for ax in "zyx":
        np.testing.assert_allclose(ours[ax].values, ref[ax].values, atol=1e-6)
        np.testing.assert_allclose(ours[ax].attrs["direction"], ref[ax].attrs["direction"], atol=1e-9)
    seg = hd.seg.segread(str(path))
    if str(seg.SegmentationType) == "BINARY":
        try:
            lab = seg.get_volume(combine_segments=True)
        except (ValueError, RuntimeError):  # highdicom refuses overlapping segments
            with pytest.raises(AmbiguousSelectionError):
                open_seg(path, combine=True)
        else:
            mine = open_seg(path, combine=True)
            ref_lab = np.asarray(from_highdicom_volume(lab).values)
            assert mine.dtype == ref_lab.dtype
            np.testing.assert_array_equal(mine.values, ref_lab)


def test_direct_reader_on_unaligned_frames_equals_highdicom(small, tmp_path):
    rng = np.random.default_rng(1)
    masks = xr.Dataset({n: xr.DataArray(rng.random(small.shape) < 0.3, dims=small.dims, coords=small.coords,
                                        attrs=small.attrs) for n in ("liver", "tumor")})
    path = tmp_path / "hd.dcm"
    to_seg(masks, small, path=path, stream=False)  # highdicom writes, we read
    ref = from_highdicom_volume(_volume(path))
    np.testing.assert_array_equal(open_seg(path).values, np.asarray(ref.values).astype(bool))
