"""The WSI opener's own layers: one header read per instance, lazy frame index, one reader for Dask and regions.

References: pydicom (header values, frame bytes via ``generate_frames``,
``pixel_array``) and numpy slicing of the fully computed level. Derived files
(unaligned sparse tiles, an Extended Offset Table) are written with pydicom
from the real highdicom / dicom-wsi-sample slides into tmp_path.
"""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from dcmxr.wsi import open_slide, read_region
from dcmxr.wsi.headers import read_header
from dcmxr.wsi.index import lookup

from _data import data_path

SAMPLE = ("wsi", "dicom-wsi-sample", "cmu-1-small-region")
SYNTH = ("wsi", "highdicom_synthetic")


def _all_wsi_files():
    files = sorted(data_path(*SAMPLE).glob("*.dcm"))
    files += [data_path(*SYNTH, n) for n in ("sm_image.dcm", "sm_image_grayscale.dcm", "sm_image_jpegls.dcm")]
    return files


def test_header_values_equal_pydicom():
    for path in _all_wsi_files():
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        h = read_header(str(path))
        assert h is not None, path
        assert h.sop_instance_uid == ds.SOPInstanceUID and h.series_instance_uid == ds.SeriesInstanceUID
        assert (h.rows, h.columns) == (ds.Rows, ds.Columns)
        assert (h.total_rows, h.total_columns) == (ds.TotalPixelMatrixRows, ds.TotalPixelMatrixColumns)
        assert h.number_of_frames == int(ds.get("NumberOfFrames", 1))
        assert h.transfer_syntax == ds.file_meta.TransferSyntaxUID
        assert h.samples_per_pixel == ds.SamplesPerPixel and h.bits_allocated == ds.BitsAllocated
        assert h.photometric_interpretation == ds.PhotometricInterpretation
        assert h.organization == ds.DimensionOrganizationType
        assert h.flavor == ds.ImageType[2]
        assert h.orientation == tuple(float(v) for v in ds.ImageOrientationSlide)
        ps = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing
        assert h.spacing == (float(ps[0]), float(ps[1]))
        if "TotalPixelMatrixOriginSequence" in ds:
            org = ds.TotalPixelMatrixOriginSequence[0]
            assert h.origin == (float(org.XOffsetInSlideCoordinateSystem), float(org.YOffsetInSlideCoordinateSystem))
        else:
            assert h.origin == (0.0, 0.0)
        paths = ds.get("OpticalPathSequence") or []
        assert [p.identifier for p in h.optical_paths] == [str(p.OpticalPathIdentifier) for p in paths]
        # the Pixel Data element starts where the header stops
        with open(path, "rb") as fh:
            fh.seek(h.pixel_offset)
            assert fh.read(4) == b"\xe0\x7f\x10\x00"


def test_non_wsi_dicom_is_not_a_slide():
    assert read_header(str(data_path(*SYNTH, "sm_annotations.dcm"))) is None


def test_opening_reads_no_frame_offsets_and_reading_indexes_only_the_touched_instance():
    slide = open_slide(data_path(*SAMPLE))
    readers = {name: lookup(slide[name]["image"].data.name) for name in slide.children}
    assert all(ix._table is None for r in readers.values() for ix in r.indexes)
    read_region(slide, (0, 0), 0, (10, 10))
    assert readers["level_0"].indexes[0]._table is not None
    assert all(ix._table is None for name, r in readers.items() if name != "level_0" for ix in r.indexes)


def test_frame_index_equals_pydicom_fragments():
    from pydicom.encaps import generate_frames

    path = next(p for p in _all_wsi_files() if "level-0" in p.name)
    slide = open_slide(path)
    reader = lookup(slide["level_0"]["image"].data.name)
    ds = pydicom.dcmread(path)
    frames = list(generate_frames(ds.PixelData, number_of_frames=int(ds.NumberOfFrames)))
    data = path.read_bytes()
    for k, want in enumerate(frames):
        ref = reader.ref(k)
        item = data[ref.offset:ref.offset + ref.length]
        assert item[:4] == b"\xfe\xff\x00\xe0" and item[8:8 + len(want)] == want


@pytest.fixture(scope="module")
def sample_level():
    slide = open_slide(data_path(*SAMPLE))
    da = slide["level_1"]["image"]
    return slide, da, da.values


@pytest.mark.parametrize("key", [
    (slice(None), slice(None)),
    (slice(10, 700, 3), slice(490, 1010)),
    (5, slice(None, None, -7)),
    (slice(-30, None), 1000),
    (slice(400, 620), slice(0, 1483, 2), slice(1, 3)),
    (slice(None), slice(None), 2),
])
def test_lazy_slicing_reads_the_same_as_numpy(sample_level, key):
    """Dask folds slicing into the level reader: any slice equals numpy's on the full level."""
    _, da, full = sample_level
    np.testing.assert_array_equal(da.data[key].compute(), full[key])


def test_dask_chunks_equal_direct_region_reads(sample_level):
    slide, da, full = sample_level
    h, w = full.shape[:2]
    region = read_region(slide, (0, 0), 1, (w + 7, h + 5))  # level 1 = downsample 2: level-0 location
    np.testing.assert_array_equal(region.values[:h, :w], full)
    assert (region.values[h:] == da.attrs["fill_value"]).all() and (region.values[:, w:] == da.attrs["fill_value"]).all()


def test_chunks_group_tiles(sample_level):
    slide = open_slide(data_path(*SAMPLE), chunks=2)
    da = slide["level_1"]["image"]
    assert da.data.chunks[:2] == ((1000, 483), (1000, 110))  # 1483 x 1110, 500 px tiles
    np.testing.assert_array_equal(da.values, sample_level[2])


def test_unaligned_sparse_tiles_paste_in_stored_order(tmp_path):
    """Sparse tiles at arbitrary positions (overlapping): later frames overwrite earlier ones."""
    src = data_path(*SYNTH, "sm_image.dcm")
    ds = pydicom.dcmread(src)
    th, tw, spp = ds.Rows, ds.Columns, ds.SamplesPerPixel
    frames = np.frombuffer(ds.PixelData, np.uint8).reshape(int(ds.NumberOfFrames), th, tw, spp)
    positions = [(0, 0), (3, 4), (20, 17), (25, 30), (38, 40)]  # (row, col), overlapping, off the grid
    ds.PixelData = frames[: len(positions)].tobytes()
    ds.NumberOfFrames = len(positions)
    ds.DimensionOrganizationType = "TILED_SPARSE"
    items = []
    for r, c in positions:
        pos = Dataset()
        pos.ColumnPositionInTotalImagePixelMatrix = c + 1
        pos.RowPositionInTotalImagePixelMatrix = r + 1
        pos.XOffsetInSlideCoordinateSystem = "0"
        pos.YOffsetInSlideCoordinateSystem = "0"
        pos.ZOffsetInSlideCoordinateSystem = "0"
        item = Dataset()
        item.PlanePositionSlideSequence = Sequence([pos])
        items.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(items)
    ds.SOPInstanceUID = generate_uid()
    ds.save_as(tmp_path / "unaligned.dcm", enforce_file_format=True)

    want = np.full((ds.TotalPixelMatrixRows, ds.TotalPixelMatrixColumns, spp), 255, np.uint8)
    for (r, c), f in zip(positions, frames):
        part = want[r:r + th, c:c + tw]
        part[...] = f[: part.shape[0], : part.shape[1]]
    slide = open_slide(tmp_path / "unaligned.dcm")
    np.testing.assert_array_equal(slide["level_0"]["image"].values, want)
    np.testing.assert_array_equal(read_region(slide, (5, 2), 0, (30, 33)).values, want[2:35, 5:35])


def test_extended_offset_table_is_used(tmp_path):
    from pydicom.encaps import encapsulate_extended, generate_frames

    src = next(p for p in _all_wsi_files() if "level-1-" in p.name)
    ds = pydicom.dcmread(src)
    frames = list(generate_frames(ds.PixelData, number_of_frames=int(ds.NumberOfFrames)))
    ds.PixelData, ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths = encapsulate_extended(frames)
    ds.save_as(tmp_path / "eot.dcm", enforce_file_format=True)
    h = read_header(str(tmp_path / "eot.dcm"))
    assert h.extended_offsets is not None
    got = open_slide(tmp_path / "eot.dcm")["level_0"]["image"].values
    np.testing.assert_array_equal(got, open_slide(src)["level_0"]["image"].values)


def test_scan_table_source_opens_the_same(tmp_path):
    import dcmxr

    table = dcmxr.scan(data_path(*SAMPLE))
    a = open_slide(table)
    b = open_slide(data_path(*SAMPLE))
    assert list(a.children) == list(b.children) and a.attrs == b.attrs


def test_level_graph_pickles_and_computes_elsewhere(sample_level):
    """The graph holds one picklable reader (no file handles): it computes after a pickle round trip."""
    import pickle

    import dask

    _, da, full = sample_level
    sub = da.data[100:900, 400:1100]
    from dask.array.core import concatenate3

    sub = dask.optimize(sub)[0]
    graph = pickle.loads(pickle.dumps(dict(sub.__dask_graph__())))
    blocks = dask.get(graph, sub.__dask_keys__())
    np.testing.assert_array_equal(concatenate3(blocks), full[100:900, 400:1100])


def test_focal_planes_and_optical_paths_are_leading_dims(tmp_path):
    """A TILED_FULL file with 2 focal planes x 2 optical paths (frames: column, row, plane, path order)."""
    src = data_path(*SYNTH, "sm_image.dcm")
    ds = pydicom.dcmread(src)
    n, th, tw, spp = int(ds.NumberOfFrames), ds.Rows, ds.Columns, ds.SamplesPerPixel
    frames = np.frombuffer(ds.PixelData, np.uint8).reshape(n, th, tw, spp)
    variants = [frames, 255 - frames, frames // 2, frames[:, ::-1]]  # (path 0, z0), (0, z1), (1, z0), (1, z1)
    ds.PixelData = np.concatenate(variants).tobytes()
    ds.NumberOfFrames = 4 * n
    ds.TotalPixelMatrixFocalPlanes = 2
    ds.NumberOfOpticalPaths = 2
    second = Dataset()
    second.update(ds.OpticalPathSequence[0])
    second.OpticalPathIdentifier = "2"
    ds.OpticalPathSequence = Sequence([ds.OpticalPathSequence[0], second])
    ds.SOPInstanceUID = generate_uid()
    ds.save_as(tmp_path / "zp.dcm", enforce_file_format=True)

    slide = open_slide(tmp_path / "zp.dcm")
    da = slide["level_0"]["image"]
    assert da.dims == ("optical_path", "focal_plane", "y", "x", "c")
    assert list(da.optical_path.values) == [str(ds.OpticalPathSequence[0].OpticalPathIdentifier), "2"]
    single = open_slide(src)["level_0"]["image"].values
    across = -(-ds.TotalPixelMatrixColumns // tw)

    def assemble(fr):
        out = np.zeros_like(single)
        for i, f in enumerate(fr):
            r, c = divmod(i, across)
            part = out[r * th:(r + 1) * th, c * tw:(c + 1) * tw]
            part[...] = f[: part.shape[0], : part.shape[1]]
        return out

    want = np.stack([np.stack([assemble(variants[0]), assemble(variants[1])]),
                     np.stack([assemble(variants[2]), assemble(variants[3])])])
    np.testing.assert_array_equal(da.values, want)
    np.testing.assert_array_equal(da.isel(optical_path=1, focal_plane=0).values, want[1, 0])
    np.testing.assert_array_equal(da.data[1, :, 5:17, 3:40:2].compute(), want[1, :, 5:17, 3:40:2])
    assert da.data[1:1, :, :3].compute().shape == (0, 2, 3, 50, 3)
    region = read_region(slide, (4, 6), 0, (20, 30), focal_plane=1, optical_path="2")
    np.testing.assert_array_equal(region.values, want[1, 1, 6:36, 4:24])
    assert float(region.focal_plane) == float(da.focal_plane[1]) and str(region.optical_path.values) == "2"
