"""Whole WSI levels read straight into one array (dcmxr.wsi.load.load_level_into, behind ``da.dcm.load()``).

References: Pillow's libjpeg-turbo decode of every frame of the real
dicom-wsi-sample pyramid, wsidicom's region of highdicom's synthetic slide
(sparse copy written with pydicom) and Pillow's ImageCms for the ICC path.
"""

from __future__ import annotations

from io import BytesIO

import numpy as np
import pydicom
import pytest

from dcmxr.wsi import open_slide
from dcmxr.wsi.load import load_level_into

from _data import data_path
from test_wsi import SAMPLE, SYNTH, _tiled_full_reference, _write_sparse

wsidicom = pytest.importorskip("wsidicom")


def _load(da, **kw) -> np.ndarray:
    out = np.empty(da.shape, da.dtype)
    assert load_level_into(da.data, out, **kw)
    return out


@pytest.mark.parametrize("level", [0, 3])
@pytest.mark.parametrize("kw", [{}, {"scheduler": "threads", "num_workers": 2}, {"scheduler": "sync"}])
def test_sample_level_loads_equal_pillow(level, kw):
    folder = data_path(*SAMPLE)
    (path,) = folder.glob(f"level-{level}-frames-*.dcm")
    da = open_slide(folder)[f"level_{level}"]["image"]
    np.testing.assert_array_equal(_load(da, **kw), _tiled_full_reference(path, "pillow"))


def test_sparse_level_load_fills_background_and_equals_wsidicom(tmp_path):
    src = data_path(*SYNTH, "sm_image.dcm")
    keep = [0, 1, 3, 7, 12, 13, 24]
    _write_sparse(src, tmp_path / "sparse.dcm", keep)
    da = open_slide(tmp_path / "sparse.dcm")["level_0"]["image"]
    full = np.asarray(wsidicom.WsiDicom.open(src).read_region((0, 0), 0, (50, 50), as_array=True))
    got = _load(da, num_workers=2)
    for i in range(25):
        r, c = divmod(i, 5)
        tile = got[r * 10:(r + 1) * 10, c * 10:(c + 1) * 10]
        want = full[r * 10:(r + 1) * 10, c * 10:(c + 1) * 10] if i in keep else 255
        np.testing.assert_array_equal(tile, np.broadcast_to(want, tile.shape))


def test_icc_level_load_equals_imagecms():
    from PIL import Image, ImageCms

    path = data_path(*SYNTH, "sm_image.dcm")
    icc = bytes(pydicom.dcmread(path, stop_before_pixels=True).OpticalPathSequence[0].ICCProfile)
    plain = np.asarray(wsidicom.WsiDicom.open(path).read_region((0, 0), 0, (50, 50), as_array=True))
    t = ImageCms.buildTransform(ImageCms.ImageCmsProfile(BytesIO(icc)), ImageCms.createProfile("sRGB"), "RGB", "RGB")
    want = np.asarray(ImageCms.applyTransform(Image.fromarray(plain), t))
    da = open_slide(path, apply_icc=True)["level_0"]["image"]
    np.testing.assert_array_equal(_load(da), want)


def test_other_arrays_and_schedulers_are_left_to_dask():
    da = open_slide(data_path(*SAMPLE))["level_3"]["image"]
    out = np.empty(da.shape, da.dtype)
    assert not load_level_into((da.data + 0), out)          # a transformed array: new name
    assert not load_level_into(da.data, out, scheduler="processes")
    assert not load_level_into(da.data, np.empty(da.shape, np.uint16))
    assert not load_level_into(da.data, np.empty(da.shape[::-1], da.dtype).T)  # not C-contiguous
    assert not load_level_into(np.zeros(3), out)


def test_read_into_a_wrong_buffer_is_refused():
    from dcmxr.wsi.index import lookup

    da = open_slide(data_path(*SAMPLE))["level_3"]["image"]
    reader = lookup(da.data.name)
    with pytest.raises(ValueError, match="C-contiguous"):
        reader.read(0, 0, 10, 10, out=np.empty((10, 11, 3), np.uint8))
