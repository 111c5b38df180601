"""Slides in an archive with ``layout="ome"``: an OME-NGFF pyramid that ome-zarr-py reads.

References: ome-zarr-py (reads the multiscale: levels, axes, scales),
wsidicom (level sizes, pixel spacing, the synthetic slide's pixels) and
Pillow's libjpeg-turbo for the JPEG sample's tiles (wsidicom does not convert
its YCbCr tiles, which the header calls RGB; see tests/test_wsi.py).
"""

from __future__ import annotations

import warnings
from io import BytesIO

import numpy as np
import pydicom
import pytest

from _data import data_path

zarr = pytest.importorskip("zarr")
wsidicom = pytest.importorskip("wsidicom")
ome_zarr = pytest.importorskip("ome_zarr")

from dcmxr.stores.archive import PYRAMID, archive_status, to_zarr  # noqa: E402
from dcmxr.stores.dicom_out import to_dicom  # noqa: E402

SAMPLE = ("wsi", "dicom-wsi-sample", "cmu-1-small-region")
SYNTH = ("wsi", "highdicom_synthetic", "sm_image.dcm")


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    out = tmp_path_factory.mktemp("wsi_archive") / "a.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = to_zarr([str(data_path(*SAMPLE)), str(data_path(*SYNTH))], out, layout="ome", progress=False)
    assert report.ok, report.failed
    return out


def _read_ome(path):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Multiscales, Reader

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "version mismatch": NGFF 0.4 read by a 0.5-default reader
        node = next(iter(Reader(parse_url(str(path)))()))
    assert any(isinstance(s, Multiscales) for s in node.specs)
    return node


def test_sample_slide_pyramid_read_by_ome_zarr(archive):
    pyr = next(p for p in _all_pyramids(archive) if "S_x" in p)
    node = _read_ome(str(archive) + pyr)
    shapes = [tuple(d.shape) for d in node.data]
    # every level: its file's Total Pixel Matrix (pydicom), in level order
    sizes = {}
    for f in data_path(*SAMPLE).glob("level-*.dcm"):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        sizes[int(f.name.split("-")[1])] = (3, ds.TotalPixelMatrixRows, ds.TotalPixelMatrixColumns)
    assert shapes == [sizes[i] for i in sorted(sizes)]
    assert [a["name"] for a in node.metadata["axes"]] == ["c", "y", "x"]
    # scales in micrometres = wsidicom's pixel spacing (mm) x 1000, for the levels wsidicom opens
    ref = wsidicom.WsiDicom.open(data_path(*SAMPLE))
    transforms = node.metadata["coordinateTransformations"]
    for lv in ref.levels:
        scale = next(t["scale"] for t in transforms[lv.level] if t["type"] == "scale")
        np.testing.assert_allclose(scale[1:], [1000 * float(lv.pixel_spacing.height),
                                               1000 * float(lv.pixel_spacing.width)], rtol=1e-9)
    # pixels of level 2 = its tiles decoded by Pillow (the same libjpeg-turbo), assembled row-major
    f = next(p for p in data_path(*SAMPLE).iterdir() if p.name.startswith("level-2-"))
    ds = pydicom.dcmread(f)
    from PIL import Image
    from pydicom.encaps import generate_frames

    tiles = [np.asarray(Image.open(BytesIO(b))) for b in generate_frames(ds.PixelData, number_of_frames=ds.NumberOfFrames)]
    across = -(-ds.TotalPixelMatrixColumns // ds.Columns)
    want = np.zeros((-(-ds.TotalPixelMatrixRows // ds.Rows) * ds.Rows, across * ds.Columns, 3), np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, across)
        want[r * ds.Rows:(r + 1) * ds.Rows, c * ds.Columns:(c + 1) * ds.Columns] = t
    want = want[:ds.TotalPixelMatrixRows, :ds.TotalPixelMatrixColumns]
    got = np.moveaxis(np.asarray(node.data[2]), 0, -1)
    np.testing.assert_array_equal(got, want)


def _all_pyramids(archive) -> list[str]:
    root = zarr.open_group(archive, mode="r")
    out = []
    for g in archive_status(archive)["group"]:
        p = dict(root[g.strip("/")].attrs)["dcmxr_archive"].get("ome_pyramid")
        if p:
            out.append(p)
    return out


def test_synthetic_slide_pyramid_equals_wsidicom(archive):
    pyrs = [p for p in _all_pyramids(archive) if "S_x" not in p]
    assert len(pyrs) == 1 and pyrs[0].endswith("/" + PYRAMID)
    node = _read_ome(str(archive) + pyrs[0])
    ref = wsidicom.WsiDicom.open([data_path(*SYNTH)])
    lv = ref.levels[0]
    want = np.asarray(ref.read_region((0, 0), 0, (lv.size.width, lv.size.height), as_array=True))
    got = np.moveaxis(np.asarray(node.data[0]), 0, -1)
    np.testing.assert_array_equal(got, want[..., :3])


def test_slide_archive_still_round_trips(archive, tmp_path):
    """The pyramid is extra: the series groups still write back every instance."""
    files = to_dicom(archive, tmp_path / "out")
    assert len(files) == 12 + 1
    assert not any(PYRAMID in str(f) for f in files)
