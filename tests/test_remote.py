"""Remote files over a real HTTP server on 127.0.0.1 (byte ranges), and fsspec's memory filesystem.

The server (:class:`dcmxr.testing.rangeserver.RangeServer`) logs every request
with the bytes it sent, so these tests prove what moves over the wire: scanning
reads a few ranged requests per file and no pixel payload; computing reads the
frames asked for (under 1.1x their bytes) and nothing else.
"""
from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest

import dcmxr
from dcmxr.testing.rangeserver import RangeServer

from _data import data_path

pytestmark = [pytest.mark.timeout(120), pytest.mark.filterwarnings("ignore::dcmxr.errors.GeometryWarning")]

pytest.importorskip("aiohttp", reason="fsspec's HTTP filesystem needs aiohttp (dcmxr[remote])")

CT = ("ct", "dcmqi", "ct-3slice")  # 3 single-frame files, Implicit VR LE, 512x512 int16
EMRI = ("transfer_syntax", "pydicom-data", "emri_small.dcm")  # 10 frames, one file, native
JPEGLS = ("transfer_syntax", "pydicom-data", "emri_small_jpeg_ls_lossless.dcm")  # 10 frames, JPEG-LS


@pytest.fixture
def served(tmp_path):
    """A temp folder with real series, served on 127.0.0.1."""
    root = tmp_path / "www"
    shutil.copytree(data_path(*CT), root / "ct")
    (root / "multi").mkdir()
    shutil.copy(data_path(*EMRI), root / "multi" / "emri.dcm")
    shutil.copy(data_path(*JPEGLS), root / "multi" / "emri_jls.dcm")
    with RangeServer(root) as srv:
        yield srv, root


def _sizes(root, sub):
    return {p.name: p.stat().st_size for p in (root / sub).iterdir()}


def test_http_scan_reads_a_few_ranged_requests_per_file_and_no_pixels(served):
    srv, root = served
    table = dcmxr.scan(srv.url + "/ct/", progress=False)
    assert len(table) == 3 and table.attrs["skipped"] == []
    assert all(p.startswith(srv.url + "/ct/") for p in table["path"])
    for name, size in _sizes(root, "ct").items():
        reqs = [r for r in srv.requests(f"/ct/{name}")]
        assert 1 <= len(reqs) <= 4, reqs  # size (HEAD) + header block + pixel element header
        assert all(r.method == "HEAD" or r.range is not None for r in reqs)  # never a whole-file GET
        row = table[table["path"].str.endswith(name)].iloc[0]
        pixel_start = int(row["pixel_offset"])
        moved = sum(r.sent for r in reqs)
        assert moved <= max(8192, pixel_start) + 64
        # the only pixel bytes read are those inside the walker's fixed first 8 KiB block
        assert all(r.range[1] <= max(8192, pixel_start) for r in reqs if r.range is not None)
        assert moved < 0.05 * size


def test_http_compute_moves_only_the_frames_asked_for(served):
    srv, root = served
    da = dcmxr.open_series(srv.url + "/ct/", chunks=1)
    local = dcmxr.open_series(str(data_path(*CT)), chunks=1)
    srv.reset()
    one = da.isel(z=1).values
    frame_bytes = 512 * 512 * 2
    moved = srv.bytes_sent()
    assert frame_bytes <= moved <= 1.1 * frame_bytes, moved
    assert len(srv.requests()) == 1  # one ranged GET for one slice
    np.testing.assert_array_equal(one, local.isel(z=1).values)
    srv.reset()
    np.testing.assert_array_equal(da.values, local.values)
    assert srv.bytes_sent() <= 1.1 * 3 * frame_bytes
    assert da.attrs == local.attrs


def test_http_multiframe_reads_are_coalesced(served):
    """Adjacent frames of one file in one chunk travel in one request."""
    srv, _ = served
    da = dcmxr.open_series(srv.url + "/multi/emri.dcm", chunks=10)
    local = dcmxr.open_series(str(data_path(*EMRI)))
    srv.reset()
    dim = da.dims[0]  # no geometry in this file: ("frame", "y", "x")
    part = da.isel({dim: slice(2, 5)}).values
    reqs = [r for r in srv.requests() if r.range is not None]
    frame_bytes = 64 * 64 * 2
    assert len(reqs) == 1
    # the chunk holds all 10 frames: Dask computes whole chunks, which is what moved
    assert srv.bytes_sent() <= 1.1 * 10 * frame_bytes
    np.testing.assert_array_equal(part, local.isel({dim: slice(2, 5)}).values)

    small = dcmxr.open_series(srv.url + "/multi/emri.dcm", chunks=1)
    srv.reset()
    small.isel({dim: slice(2, 5)}).values
    assert len(srv.requests()) == 3 and srv.bytes_sent() <= 1.1 * 3 * frame_bytes


def test_http_encapsulated_equals_local(served):
    srv, _ = served
    da = dcmxr.open_series(srv.url + "/multi/emri_jls.dcm", chunks=2)
    local = dcmxr.open_series(str(data_path(*JPEGLS)), chunks=2)
    np.testing.assert_array_equal(da.values, local.values)
    assert da.dims == local.dims and da.attrs == local.attrs


def test_storage_options_reach_scan_and_the_chunk_tasks(tmp_path):
    """A server that demands a header: without storage_options every file is skipped;
    with them scan, open and compute (the Dask chunk tasks) all authenticate."""
    root = tmp_path / "www"
    shutil.copytree(data_path(*CT), root / "ct")
    with RangeServer(root, required_header=("X-Token", "s3cret")) as srv:
        with pytest.warns(dcmxr.errors.SkippedFileWarning):
            table = dcmxr.scan([f"{srv.url}/ct/0{i}.dcm" for i in (1, 2, 3)], progress=False)
        assert len(table) == 0 and len(table.attrs["skipped"]) == 3
        denied = len([r for r in srv.requests() if r.status == 403])
        assert denied >= 3  # fsspec reports a refused file as FileNotFoundError; the server saw 403s
        opts = {"headers": {"X-Token": "s3cret"}}
        da = dcmxr.open_series(srv.url + "/ct/", storage_options=opts, chunks=1)
        scan_done = len(srv.requests())
        local = dcmxr.open_series(str(data_path(*CT)))
        np.testing.assert_array_equal(da.values, local.values)  # the chunk tasks sent the header too
        assert len(srv.requests()) == scan_done + 3  # three ranged frame reads
        assert len([r for r in srv.requests() if r.status == 403]) == denied  # nothing refused since


def test_http_missing_and_truncated_files_are_skipped(served):
    srv, root = served
    data = (root / "ct" / "01.dcm").read_bytes()
    (root / "ct" / "cut.dcm").write_bytes(data[:4000])
    with pytest.warns(dcmxr.errors.SkippedFileWarning):
        table = dcmxr.scan([srv.url + "/ct/01.dcm", srv.url + "/ct/cut.dcm", srv.url + "/ct/nope.dcm"],
                           progress=False)
    assert len(table) == 1
    reasons = {s["path"].rsplit("/", 1)[-1]: s["reason"] for s in table.attrs["skipped"]}
    assert set(reasons) == {"cut.dcm", "nope.dcm"}
    assert "FileNotFoundError" in reasons["nope.dcm"] or "404" in reasons["nope.dcm"]
    with pytest.raises(dcmxr.errors.InvalidDicomError):
        dcmxr.scan(srv.url + "/ct/cut.dcm", strict=True, progress=False)


def test_http_open_study(served):
    srv, _ = served
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tree = dcmxr.open_study(srv.url + "/ct/")
        local = dcmxr.open_study(str(data_path(*CT)))
    leaves = [n for n in tree.subtree if "image" in n.ds]
    local_leaves = [n for n in local.subtree if "image" in n.ds]
    assert len(leaves) == len(local_leaves) == 1
    np.testing.assert_array_equal(leaves[0].ds["image"].values, local_leaves[0].ds["image"].values)


def test_memory_filesystem_round_trip():
    fsspec = pytest.importorskip("fsspec")
    fs = fsspec.filesystem("memory")
    for p in data_path(*CT).iterdir():
        fs.pipe(f"/dcmxr-remote-test/ct/{p.name}", p.read_bytes())
    try:
        da = dcmxr.open_series("memory://dcmxr-remote-test/ct", chunks=1)
        np.testing.assert_array_equal(da.values, dcmxr.open_series(str(data_path(*CT))).values)
        table = dcmxr.scan("memory://dcmxr-remote-test/ct", progress=False)
        assert len(table) == 3
        assert all(p.startswith("memory://") and "/dcmxr-remote-test/ct/" in p for p in table["path"])
    finally:
        fs.rm("/dcmxr-remote-test", recursive=True)


# --------------------------------------------------------------------------- hostile servers
def _short_timeouts(seconds: float = 2.0) -> dict:
    import aiohttp

    return {"client_kwargs": {"timeout": aiohttp.ClientTimeout(total=None, sock_connect=seconds, sock_read=seconds)}}


@pytest.mark.parametrize("fault", ["500", "503", "drop", "truncate", "stall"])
def test_http_faulty_server_at_compute_raises_quickly(served, fault):
    """The server answers the scan, then fails every frame read: a clear OSError within seconds,
    never a hang (``stall`` would hold the read 30 s; the read timeout is 2 s) and never pixels."""
    import time

    srv, _ = served
    opts = _short_timeouts()
    da = dcmxr.open_series(srv.url + "/ct/", chunks=1, storage_options=opts)
    srv.set_fault(fault, stall_seconds=30)
    t0 = time.monotonic()
    with pytest.raises(OSError) as info:
        da.isel(z=0).values
    assert time.monotonic() - t0 < 20
    assert srv.url in str(info.value) or fault in ("drop", "truncate", "stall")
    assert srv.faults_served >= 1
    srv.set_fault(None)
    np.testing.assert_array_equal(da.isel(z=0).values, dcmxr.open_series(str(data_path(*CT))).isel(z=0).values)


@pytest.mark.parametrize("fault", ["500", "drop", "truncate", "ignore-range"])
def test_http_faulty_server_at_scan_skips_the_file(served, fault):
    """Header reads that fail (or that a range-ignoring server answers with the whole file) skip
    the file with a reason; with ``strict=True`` they raise."""
    srv, _ = served
    srv.set_fault(fault, path="/ct/01.dcm")
    with pytest.warns(dcmxr.errors.SkippedFileWarning):
        table = dcmxr.scan(srv.url + "/ct/", progress=False, storage_options=_short_timeouts())
    assert len(table) == 2
    (skipped,) = table.attrs["skipped"]
    assert skipped["path"].endswith("/ct/01.dcm")
    if fault == "ignore-range":
        assert "ignores HTTP Range" in skipped["reason"]
        with pytest.raises(dcmxr.errors.InvalidDicomError, match="ignores HTTP Range"):
            dcmxr.scan(srv.url + "/ct/01.dcm", strict=True, progress=False)


def test_http_server_ignoring_ranges_at_compute_never_gives_wrong_pixels(served):
    srv, _ = served
    da = dcmxr.open_series(srv.url + "/ct/", chunks=1)
    srv.set_fault("ignore-range")
    with pytest.raises(dcmxr.errors.InvalidDicomError, match="ignores HTTP Range"):
        da.isel(z=1).values


def test_http_get_retries_transient_failures_a_bounded_number_of_times(served):
    """dcmxr.webtransport.http_get (DICOMweb requests): 503 twice then success -> the body;
    503 forever -> HTTPStatusError after ``retries`` attempts; a stalled read -> OSError after the
    read timeout; a cut body -> retried, then OSError."""
    import time

    import requests

    from dcmxr import webtransport as wt

    srv, root = served
    url = srv.url + "/ct/01.dcm"
    want = (root / "ct" / "01.dcm").read_bytes()
    s = requests.Session()
    srv.set_fault("503", count=2, ranged_only=False)
    assert wt.http_get(s, url, retries=3, backoff=0.01).content == want
    assert srv.faults_served == 2
    srv.set_fault("503", ranged_only=False)
    with pytest.raises(wt.HTTPStatusError) as info:
        wt.http_get(s, url, retries=3, backoff=0.01)
    assert info.value.status == 503 and srv.faults_served == 3
    srv.set_fault("500", ranged_only=False)
    with pytest.raises(wt.HTTPStatusError):
        wt.http_get(s, url, retries=3, backoff=0.01)
    assert srv.faults_served == 1  # not a transient status: no retry
    srv.set_fault("truncate", ranged_only=False)
    with pytest.raises(OSError):
        wt.http_get(s, url, retries=2, backoff=0.01)
    assert srv.faults_served == 2
    srv.set_fault("stall", ranged_only=False, stall_seconds=30)
    t0 = time.monotonic()
    with pytest.raises(OSError):
        wt.http_get(s, url, retries=1, timeout=(2, 1))
    assert time.monotonic() - t0 < 10


def test_http_listing_of_a_stalled_server_times_out(served):
    """A folder URL whose listing never comes: the scan warns and skips it after the read timeout."""
    import time

    srv, _ = served
    srv.set_fault("stall", ranged_only=False, stall_seconds=30)
    t0 = time.monotonic()
    with pytest.warns(dcmxr.errors.SkippedFileWarning, match="Timeout"):
        table = dcmxr.scan(srv.url + "/ct/", progress=False, storage_options=_short_timeouts(1.0))
    assert time.monotonic() - t0 < 15
    assert len(table) == 0 and "Timeout" in table.attrs["skipped"][0]["reason"]
