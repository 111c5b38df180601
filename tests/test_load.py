"""``da.dcm.load()``: the whole-array decode into one preallocated result.

Oracle: pydicom's ``pixel_array`` of the same files (stored values, ``raw=True``), under every
scheduler setting the load distinguishes (synchronous, Dask threads, decoder threads); MOSAIC
tiles and remote (fsspec) files are compared with the per-chunk Dask path (``.values``), which
tests/test_transfer_syntax_open.py and tests/test_dcm2niix_reference.py check against pydicom
and dcm2niix.
"""
from __future__ import annotations

import warnings

import dask
import numpy as np
import pydicom
import pytest

import dcmxr
from _data import data_path

CONFIGS = {
    "sync": ({"scheduler": "synchronous"}, 1),
    "sync-threads2": ({"scheduler": "synchronous"}, 2),
    "dask-threads2": ({"scheduler": "threads", "num_workers": 2}, 1),
    "dask-threads3-threads2": ({"scheduler": "threads", "num_workers": 3}, 2),
}


def _open(path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dcmxr.open_series(str(path), **kw)


def _load(path, config: str, **kw):
    cfg, threads = CONFIGS[config]
    da = _open(path, threads=threads, **kw)
    with dask.config.set(**cfg):
        out = da.dcm.load()
    assert isinstance(out.data, np.ndarray)
    assert out.dims == da.dims and out.dtype == da.dtype
    return da, out


def _pydicom_frames(files) -> dict[tuple[str, int], np.ndarray]:
    ref = {}
    for f in files:
        ds = pydicom.dcmread(f)
        arr = ds.pixel_array
        n = int(getattr(ds, "NumberOfFrames", 1) or 1)
        arr = arr.reshape((n,) + arr.shape[-2:]) if n > 1 or arr.ndim == 2 else arr
        for i in range(n):
            ref[(str(ds.SOPInstanceUID), i)] = arr[i]
    return ref


def _frames_by_source(da, values: np.ndarray, files) -> dict[tuple[str, int], np.ndarray]:
    """Our frames keyed by (SOP Instance UID, frame number in its file)."""
    lead = [d for d in da.dims if d not in ("y", "x", "c")]
    flat = values.reshape((-1,) + values.shape[len(lead):])
    shape = [da.sizes[d] for d in lead]
    if "sop_instance_uid" in da.coords:
        uids = np.broadcast_to(da["sop_instance_uid"].values, shape).ravel()
    else:
        (f,) = files
        uids = [str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID)] * len(flat)
    idx = (np.broadcast_to(da["frame_index"].values, shape).ravel() if "frame_index" in da.coords
           else np.zeros(len(flat), int))
    return {(str(u), int(i)): flat[k] for k, (u, i) in enumerate(zip(uids, idx))}


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("rel", [
    "pydicom-data/emri_small_RLE.dcm",  # RLE, decoded into the slot
    "pydicom-data/emri_small_jpeg_ls_lossless.dcm",  # decoded, then placed
    "pydicom-data/emri_small.dcm",  # native: preadv into the slot
    "dicom2nifti/compressed/001",  # JPEG 2000, one frame per file
])
def test_load_equals_pydicom(rel, config):
    path = data_path("transfer_syntax", rel)
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    da, out = _load(path, config, raw=True, chunks=3)
    assert len(da.chunks[0]) > 1  # several chunks: the load does not follow them
    got = _frames_by_source(da, out.values, files)
    ref = _pydicom_frames(files)
    assert got.keys() == ref.keys()
    for key, arr in got.items():
        np.testing.assert_array_equal(arr, ref[key].astype(arr.dtype), err_msg=str(key))


@pytest.mark.parametrize("config", ["sync", "dask-threads2"])
def test_load_rescaled_and_mosaic_equal_dask_path(config):
    """MOSAIC tiles (crops) of a JPEG lossless file, real-world values."""
    path = data_path("transfer_syntax", "dcm_qa_ts", "In", "5.dcm")
    da, out = _load(path, config, chunks=4)
    assert len(da.chunks[0]) > 1
    np.testing.assert_array_equal(out.values, da.values)


def test_load_remote_equals_local():
    """Remote frames keep one block per chunk; values equal the local file's."""
    fsspec = pytest.importorskip("fsspec")
    path = data_path("transfer_syntax", "pydicom-data", "emri_small_jpeg_ls_lossless.dcm")
    fs = fsspec.filesystem("memory")
    fs.pipe_file("/dcmxr-test-load/emri.dcm", path.read_bytes())
    try:
        da_remote, out_remote = _load("memory://dcmxr-test-load/emri.dcm", "dask-threads2", raw=True, chunks=3)
        _, out_local = _load(path, "sync", raw=True, chunks=3)
    finally:
        fs.rm("/dcmxr-test-load", recursive=True)
    np.testing.assert_array_equal(out_remote.values, out_local.values)
