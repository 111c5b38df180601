"""Whole-slide microscopy pyramids (dcmxr.wsi) against wsidicom and pydicom.

References: wsidicom (level sizes, pixel spacings, regions, slide coordinate
mapping) and pydicom's pixel_array (the dicom-wsi-sample slide, whose
JPEG tiles are YCbCr coded while the header says RGB; wsidicom does not
convert them, pydicom does). Derived sparse / concatenated / broken files are
written from highdicom's real synthetic slide with pydicom into tmp_path.
"""

from __future__ import annotations

import base64
import shutil

import numpy as np
import pydicom
import pytest
import xarray as xr
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from dcmxr import errors
from dcmxr.wsi import list_slides, open_slide, open_slides, read_region, to_ome_zarr, to_zarr

from _data import data_path

wsidicom = pytest.importorskip("wsidicom")

SAMPLE = ("wsi", "dicom-wsi-sample", "cmu-1-small-region")
SYNTH = ("wsi", "highdicom_synthetic")


def _pillow_frames(ds) -> np.ndarray:
    """Every frame decoded by Pillow (libjpeg-turbo, its own YCbCr->RGB): the 'same libjpeg' reference."""
    from io import BytesIO

    from PIL import Image
    from pydicom.encaps import generate_frames

    n = int(ds.get("NumberOfFrames", 1))
    return np.stack([np.asarray(Image.open(BytesIO(f))) for f in generate_frames(ds.PixelData, number_of_frames=n)])


def _tiled_full_reference(path, decoder: str = "pydicom") -> np.ndarray:
    """A TILED_FULL level assembled from pydicom's (or Pillow's) decoded frames (row-major tiles)."""
    ds = pydicom.dcmread(path)
    if decoder == "pillow":
        frames = _pillow_frames(ds)
    else:
        frames = ds.pixel_array
        frames = frames[None] if int(ds.get("NumberOfFrames", 1)) == 1 else frames
    th, tw = ds.Rows, ds.Columns
    across = -(-ds.TotalPixelMatrixColumns // tw)
    down = -(-ds.TotalPixelMatrixRows // th)
    out = np.zeros((down * th, across * tw) + frames.shape[3:], frames.dtype)
    for i, f in enumerate(frames[: across * down]):
        r, c = divmod(i, across)
        out[r * th:(r + 1) * th, c * tw:(c + 1) * tw] = f
    return out[: ds.TotalPixelMatrixRows, : ds.TotalPixelMatrixColumns]


@pytest.fixture(scope="module")
def sample():
    return open_slide(data_path(*SAMPLE))


# --------------------------------------------------------------------------- real pyramid
def test_sample_opens_all_twelve_levels_and_matches_wsidicom_geometry(sample):
    folder = data_path(*SAMPLE)
    ref = wsidicom.WsiDicom.open(folder)
    # wsidicom opens only the factor-2 / equal-tile levels; dcmxr opens every instance's level
    assert len([k for k in sample.children if k.startswith("level_")]) == 12
    for lv in ref.levels:
        da = sample[f"level_{lv.level}"]["image"]
        assert (da.sizes["x"], da.sizes["y"]) == (lv.size.width, lv.size.height)
        assert da.attrs["pixel_spacing"][1] == pytest.approx(float(lv.pixel_spacing.width), rel=1e-9)
        assert da.attrs["pixel_spacing"][0] == pytest.approx(float(lv.pixel_spacing.height), rel=1e-9)
        assert da.attrs["tile_size"] == [lv.tile_size.height, lv.tile_size.width]
    # every level's size is its file's Total Pixel Matrix (pydicom header)
    sizes = {}
    for f in folder.glob("level-*.dcm"):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        sizes[int(f.name.split("-")[1])] = (ds.TotalPixelMatrixRows, ds.TotalPixelMatrixColumns)
    for i, (r, c) in sizes.items():
        assert sample[f"level_{i}"]["image"].shape[:2] == (r, c)
    assert sample.attrs["level_dimensions"][0] == [2220, 2967]


def test_opening_is_lazy_and_chunks_are_tiles(sample):
    da = sample["level_0"]["image"]
    assert da.chunks[0][0] == 500 and da.chunks[1][0] == 500
    assert da.data.npartitions == 6 * 5  # 2967/500 -> 6 rows of tiles, 2220/500 -> 5 columns
    assert da.dims == ("y", "x", "c")


@pytest.fixture(scope="module")
def sample_pydicom():
    return open_slide(data_path(*SAMPLE), jpeg_decoder="pydicom")


@pytest.mark.parametrize("level", [0, 1, 2, 3, 6, 11])
def test_sample_levels_equal_pydicom(sample_pydicom, level):
    # jpeg_decoder="pydicom": pylibjpeg-libjpeg + pydicom's YBR->RGB, pixel-exact
    folder = data_path(*SAMPLE)
    (path,) = folder.glob(f"level-{level}-frames-*.dcm")
    with pytest.warns(UserWarning):  # pydicom: header says RGB, JFIF says YBR_FULL_422
        ref = _tiled_full_reference(path)
    np.testing.assert_array_equal(sample_pydicom[f"level_{level}"]["image"].values, ref)


@pytest.mark.parametrize("level", [0, 1, 2, 3, 6, 11])
def test_sample_levels_equal_libjpeg_turbo_and_near_pydicom(sample, level):
    # default jpeg_decoder="libjpeg-turbo": identical to another libjpeg-turbo reader (Pillow), and
    # within a few grey levels of pydicom (different 4:2:0 chroma up-sampling / IDCT)
    folder = data_path(*SAMPLE)
    (path,) = folder.glob(f"level-{level}-frames-*.dcm")
    got = sample[f"level_{level}"]["image"].values
    np.testing.assert_array_equal(got, _tiled_full_reference(path, "pillow"))
    with pytest.warns(UserWarning):
        ref = _tiled_full_reference(path)
    diff = np.abs(got.astype(int) - ref)
    assert diff.max() <= 8 and diff.mean() < 0.5


def test_sample_turbo_matches_wsidicom_before_colour_conversion():
    """wsidicom returns this slide's YCbCr samples unconverted; libjpeg-turbo's YCbCr output equals them."""
    import imagecodecs
    from pydicom.encaps import generate_frames

    folder = data_path(*SAMPLE)
    (path,) = folder.glob("level-0-frames-*.dcm")
    ds = pydicom.dcmread(path)
    frames = list(generate_frames(ds.PixelData, number_of_frames=int(ds.NumberOfFrames)))
    ref = wsidicom.WsiDicom.open(folder)
    for i in (0, 7, 29):
        r, c = divmod(i, -(-ds.TotalPixelMatrixColumns // ds.Columns))
        want = np.asarray(ref.read_tile(0, (c, r)))
        ycc = imagecodecs.jpeg8_decode(frames[i], colorspace="YCBCR", outcolorspace="YCBCR")
        np.testing.assert_array_equal(ycc[: want.shape[0], : want.shape[1]], want)


def test_sample_read_region_openslide_semantics_equal_pydicom(sample_pydicom, sample):
    folder = data_path(*SAMPLE)
    (path,) = folder.glob("level-1-frames-*.dcm")
    with pytest.warns(UserWarning):
        ref = _tiled_full_reference(path)
    check_regions(sample_pydicom, ref)
    check_regions(sample, _tiled_full_reference(path, "pillow"))


def check_regions(sample, ref):
    rng = np.random.default_rng(5)
    for _ in range(8):
        x, y = int(rng.integers(0, 1000)), int(rng.integers(0, 1400))
        w, h = int(rng.integers(1, 400)), int(rng.integers(1, 400))
        region = read_region(sample, (2 * x, 2 * y), 1, (w, h))  # location in level-0 pixels
        want = np.full((h, w, 3), 255, np.uint8)
        part = ref[y:y + h, x:x + w]
        want[: part.shape[0], : part.shape[1]] = part  # outside the level: background
        np.testing.assert_array_equal(region.values, want)
        np.testing.assert_allclose(region.x.values[0], sample["level_1"]["image"].x.values[0] + x * 0.000998)
        assert region.x.attrs["units"] == "mm" and region.attrs["level"] == 1
        np.testing.assert_array_equal(region.sel(x=region.x[: w // 2 + 1]).values, region.values[:, : w // 2 + 1])


def test_mm_selection_reads_only_the_needed_tiles(sample):
    da = sample["level_0"]["image"]
    sub = da.sel(x=slice(0.3, 0.45), y=slice(0.3, 0.45))  # mm: inside tile (0, 0)
    assert sub.data.npartitions == 1
    x = np.asarray(da.x)
    ix = np.flatnonzero((x >= 0.3) & (x <= 0.45))
    np.testing.assert_array_equal(sub.values, da.values[ix[0]:ix[-1] + 1, ix[0]:ix[-1] + 1])
    tree = sample.sel(x=slice(0.3, 0.45), y=slice(0.3, 0.45))  # the same mm box on every level
    assert tree["level_1"]["image"].shape[:2] == (150, 150)


# --------------------------------------------------------------------------- synthetic slides vs wsidicom
@pytest.mark.parametrize("name", ["sm_image.dcm", "sm_image_jpegls.dcm", "sm_image_grayscale.dcm"])
def test_synthetic_levels_and_regions_equal_wsidicom(name):
    path = data_path(*SYNTH, name)
    slide = open_slide(path)
    ref = wsidicom.WsiDicom.open(path)
    da = slide["level_0"]["image"]
    want = np.asarray(ref.read_region((0, 0), 0, (50, 50), as_array=True))
    got = da.values
    if got.ndim == 2:
        want = want[..., 0] if want.ndim == 3 else want
    np.testing.assert_array_equal(got, want)
    rng = np.random.default_rng(1)
    for _ in range(5):
        x, y = (int(v) for v in rng.integers(0, 40, 2))
        w, h = (int(v) for v in rng.integers(1, 50 - max(x, y), 2))
        r = np.asarray(ref.read_region((x, y), 0, (w, h), as_array=True))
        r = r[..., 0] if got.ndim == 2 and r.ndim == 3 else r
        np.testing.assert_array_equal(read_region(slide, (x, y), 0, (w, h)).values, r)


def test_slide_coordinates_match_wsidicom_image_coordinate_system():
    from wsidicom.geometry import PointMm

    path = data_path(*SYNTH, "sm_image.dcm")
    da = open_slide(path)["level_0"]["image"]
    ics = wsidicom.WsiDicom.open(path).levels[0].image_coordinate_system
    sy, sx = da.attrs["pixel_spacing"]
    dx, dy = np.array(da.x.attrs["direction"]), np.array(da.y.attrs["direction"])
    for i, j in [(0, 0), (49, 0), (0, 49), (17, 33)]:
        ours = float(da.x[i]) * dx + float(da.y[j]) * dy  # pixel centre, LPS-style sum over axes
        theirs = ics.image_to_slide(PointMm((i + 0.5) * sx, (j + 0.5) * sy))
        np.testing.assert_allclose(ours[:2], [theirs.x, theirs.y], atol=1e-9)
    assert da.x.attrs["units"] == "mm"


def test_icc_profile_attr_and_apply_icc():
    from io import BytesIO

    from PIL import Image, ImageCms

    path = data_path(*SYNTH, "sm_image.dcm")
    icc = bytes(pydicom.dcmread(path, stop_before_pixels=True).OpticalPathSequence[0].ICCProfile)
    slide = open_slide(path)
    assert base64.b64decode(slide.attrs["icc_profile"]) == icc
    plain = slide["level_0"]["image"].values
    managed = open_slide(path, apply_icc=True)["level_0"]["image"].values
    t = ImageCms.buildTransform(ImageCms.ImageCmsProfile(BytesIO(icc)), ImageCms.createProfile("sRGB"), "RGB", "RGB")
    want = np.asarray(ImageCms.applyTransform(Image.fromarray(plain), t))
    # per-tile conversion equals whole-image conversion (the transform is per pixel)
    np.testing.assert_array_equal(managed, want)


# --------------------------------------------------------------------------- derived files
def _write_sparse(src, dst, keep):
    ds = pydicom.dcmread(src)
    th, tw, spp = ds.Rows, ds.Columns, ds.SamplesPerPixel
    across = -(-ds.TotalPixelMatrixColumns // tw)
    n = th * tw * spp * ds.BitsAllocated // 8
    raw = ds.PixelData
    ds.PixelData = b"".join(raw[i * n:(i + 1) * n] for i in keep)
    ds.NumberOfFrames = len(keep)
    ds.DimensionOrganizationType = "TILED_SPARSE"
    items = []
    for i in keep:
        r, c = divmod(i, across)
        pos = Dataset()
        pos.ColumnPositionInTotalImagePixelMatrix = c * tw + 1
        pos.RowPositionInTotalImagePixelMatrix = r * th + 1
        pos.XOffsetInSlideCoordinateSystem = "0"
        pos.YOffsetInSlideCoordinateSystem = "0"
        pos.ZOffsetInSlideCoordinateSystem = "0"
        item = Dataset()
        item.PlanePositionSlideSequence = Sequence([pos])
        items.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(items)
    ds.SOPInstanceUID = generate_uid()
    ds.save_as(dst, enforce_file_format=True)


def _write_parts(src, folder, split, rows_second=None):
    ds = pydicom.dcmread(src)
    n = ds.Rows * ds.Columns * ds.SamplesPerPixel
    raw, total = ds.PixelData, int(ds.NumberOfFrames)
    uid, source_uid = generate_uid(), ds.SOPInstanceUID
    paths = []
    for k, (a, b) in enumerate([(0, split), (split, total)]):
        part = pydicom.dcmread(src)
        part.PixelData = raw[a * n:b * n]
        part.NumberOfFrames = b - a
        part.ConcatenationUID = uid
        part.SOPInstanceUIDOfConcatenationSource = source_uid
        part.ConcatenationFrameOffsetNumber = a
        part.InConcatenationNumber = k + 1
        part.InConcatenationTotalNumber = 2
        part.SOPInstanceUID = generate_uid()
        if k == 1 and rows_second:  # an inconsistent tile size
            frames = np.frombuffer(part.PixelData, np.uint8).reshape(b - a, part.Rows, part.Columns, -1)
            part.PixelData = frames[:, :rows_second, :rows_second].tobytes()
            part.Rows = part.Columns = rows_second
        p = folder / f"part{k}.dcm"
        part.save_as(p, enforce_file_format=True)
        paths.append(p)
    return paths


def test_sparse_missing_tiles_read_as_background(tmp_path):
    src = data_path(*SYNTH, "sm_image.dcm")
    keep = [0, 1, 3, 7, 12, 13, 24]
    _write_sparse(src, tmp_path / "sparse.dcm", keep)
    da = open_slide(tmp_path / "sparse.dcm")["level_0"]["image"]
    assert da.attrs["dimension_organization_type"] == "TILED_SPARSE"
    full = np.asarray(wsidicom.WsiDicom.open(src).read_region((0, 0), 0, (50, 50), as_array=True))
    got = da.values
    for i in range(25):
        r, c = divmod(i, 5)
        tile = got[r * 10:(r + 1) * 10, c * 10:(c + 1) * 10]
        if i in keep:
            np.testing.assert_array_equal(tile, full[r * 10:(r + 1) * 10, c * 10:(c + 1) * 10])
        else:
            assert (tile == 255).all()  # brightfield: white
    assert (open_slide(tmp_path / "sparse.dcm", fill=0)["level_0"]["image"].values[0:10, 20:30] == 0).all()


def test_concatenation_parts_form_one_level(tmp_path):
    src = data_path(*SYNTH, "sm_image.dcm")
    _write_parts(src, tmp_path, split=12)
    slide = open_slide(tmp_path)
    assert [k for k in slide.children] == ["level_0"]
    full = np.asarray(wsidicom.WsiDicom.open(src).read_region((0, 0), 0, (50, 50), as_array=True))
    np.testing.assert_array_equal(slide["level_0"]["image"].values, full)
    assert len(slide["level_0"]["image"].attrs["sop_instance_uids"]) == 2


def test_missing_concatenation_part_is_an_error(tmp_path):
    src = data_path(*SYNTH, "sm_image.dcm")
    first, second = _write_parts(src, tmp_path, split=12)
    second.unlink()
    with pytest.raises(errors.InvalidDicomError, match="do not cover the total pixel matrix.*part0.dcm"):
        open_slide(tmp_path)


def test_inconsistent_tile_sizes_are_an_error(tmp_path):
    src = data_path(*SYNTH, "sm_image.dcm")
    _write_parts(src, tmp_path, split=12, rows_second=5)
    with pytest.raises(errors.GeometryError, match="inconsistent tile sizes"):
        open_slide(tmp_path)


def test_corrupt_frame_fails_at_compute_naming_file_and_frame(tmp_path):
    import dcmxr

    src = data_path(*SYNTH, "sm_image_jpegls.dcm")
    dst = tmp_path / "broken.dcm"
    shutil.copy(src, dst)
    row = dcmxr.scan(dst).iloc[6]
    data = bytearray(dst.read_bytes())
    start = int(row.pixel_offset) + 8  # past the item tag and length: the codestream
    data[start:start + int(row.pixel_length) - 8] = b"\x00" * (int(row.pixel_length) - 8)
    dst.write_bytes(bytes(data))
    slide = open_slide(dst)  # opening reads no tile bytes
    da = slide["level_0"]["image"]
    np.testing.assert_array_equal(da[:10, :10].values, open_slide(src)["level_0"]["image"][:10, :10].values)
    with pytest.raises(errors.DecodeError, match=r"frame 6 of .*broken\.dcm"):
        da.values


def test_several_slides_are_ambiguous(tmp_path):
    for name in ("sm_image.dcm", "sm_image_grayscale.dcm"):
        shutil.copy(data_path(*SYNTH, name), tmp_path / name)
    # both highdicom files share one series; make the second a different slide
    ds = pydicom.dcmread(tmp_path / "sm_image_grayscale.dcm")
    ds.SeriesInstanceUID = generate_uid()
    ds.save_as(tmp_path / "sm_image_grayscale.dcm")
    assert len(list_slides(tmp_path)) == 2
    with pytest.raises(errors.AmbiguousSelectionError, match="2 slides found"):
        open_slide(tmp_path)
    both = open_slides(tmp_path)
    assert sorted(t["level_0"]["image"].ndim for t in both.values()) == [2, 3]


# --------------------------------------------------------------------------- export
def test_ome_zarr_read_back_by_ome_zarr_py(sample, tmp_path):
    pytest.importorskip("ome_zarr")
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Multiscales, Reader

    to_ome_zarr(sample, tmp_path / "s.ome.zarr")
    (node,) = [n for n in Reader(parse_url(str(tmp_path / "s.ome.zarr")))() if n.load(Multiscales)]
    assert len(node.data) == 12
    assert [a["name"] for a in node.metadata["axes"]] == ["c", "y", "x"]
    for i in (0, 3):
        da = sample[f"level_{i}"]["image"]
        np.testing.assert_array_equal(np.asarray(node.data[i]).transpose(1, 2, 0), da.values)
        scale, shift = node.metadata["coordinateTransformations"][i]
        assert scale["scale"][1:] == pytest.approx([1000 * s for s in da.attrs["pixel_spacing"]])
        assert shift["translation"][1:] == pytest.approx([1000 * float(da.y[0]), 1000 * float(da.x[0])])


def test_zarr_datatree_round_trip(sample, tmp_path):
    to_zarr(sample, tmp_path / "s.zarr")
    back = xr.open_datatree(tmp_path / "s.zarr", engine="zarr")
    assert back.attrs == sample.attrs
    for name in ("level_0", "level_5"):
        xr.testing.assert_identical(back[name]["image"].load(), sample[name]["image"].load())
        assert back[name]["image"].x.attrs["direction"] == sample[name]["image"].x.attrs["direction"]
