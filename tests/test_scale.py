"""Scanning as a distributed job, and graphs that are cheap to ship, on a real LocalCluster."""
from __future__ import annotations

import inspect
import logging
import pickle
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest

distributed = pytest.importorskip("distributed")

import dcmxr  # noqa: E402
from dcmxr.catalog.distributed import default_batch_size, scan_on_client  # noqa: E402
from dcmxr.testing.rangeserver import RangeServer  # noqa: E402
from dcmxr.testing.synthetic import write_series  # noqa: E402

from _data import data_path  # noqa: E402

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180),
              pytest.mark.filterwarnings("ignore::dcmxr.errors.GeometryWarning")]

CT = ("ct", "dcmqi", "ct-3slice")
MOSAIC = ("mr", "dcm_qa", "In", "Orientation", "ax", "axasc35")
JPEGLS = ("transfer_syntax", "dicom2nifti", "compressed_jpegls", "001")


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cluster = LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None,
                               silence_logs=logging.ERROR)
    c = Client(cluster, set_as_default=False)
    try:
        c.wait_for_workers(2, timeout=60)
        yield c
    finally:
        c.close()
        cluster.close()


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """Real series of several kinds, a non-image junk file and a truncated file."""
    root = tmp_path_factory.mktemp("tree")
    shutil.copytree(data_path(*CT), root / "ct")
    shutil.copytree(data_path(*MOSAIC), root / "mosaic")
    shutil.copytree(data_path(*JPEGLS), root / "jpegls")
    (root / "junk.dcm").write_bytes(b"not dicom" * 10)
    (root / "cut.dcm").write_bytes((root / "ct" / "01.dcm").read_bytes()[:3000])
    return root


def _frames_equal(a: pd.DataFrame, b: pd.DataFrame) -> None:
    key = ["path", "frame"]
    a = a.sort_values(key).reset_index(drop=True)
    b = b.sort_values(key).reset_index(drop=True)
    assert list(a.columns) == list(b.columns)
    pd.testing.assert_frame_equal(a, b)


def _scan_tasks_ran_on_workers(client, run):
    from distributed import get_task_stream

    with get_task_stream(client) as ts:
        out = run()
    scan_tasks = [t for t in ts.data if str(t["key"]).startswith("dcmxr-scan") or "dcmxr-scan" in str(t["key"])]
    assert scan_tasks, "no scan task ran on the cluster"
    assert {t["worker"] for t in scan_tasks} <= set(client.scheduler_info()["workers"])
    return out, scan_tasks


def test_scan_on_client_equals_local_scan(client, tree):
    with pytest.warns(dcmxr.errors.SkippedFileWarning):
        local = dcmxr.scan(str(tree), progress=False)
    with pytest.warns(dcmxr.errors.SkippedFileWarning):
        remote, tasks = _scan_tasks_ran_on_workers(
            client, lambda: scan_on_client(str(tree), client, batch_size=2))
    assert len(tasks) >= 4  # the files really were split over several tasks
    _frames_equal(remote, local)
    assert sorted(s["path"] for s in remote.attrs["skipped"]) == sorted(s["path"] for s in local.attrs["skipped"])
    assert len(remote.attrs["skipped"]) == 2
    # the table opens as usual, and computes on the cluster
    da = dcmxr.open_series(remote, series=dcmxr.list_series(remote).iloc[0]["series_instance_uid"])
    ref = dcmxr.open_series(local, series=dcmxr.list_series(local).iloc[0]["series_instance_uid"])
    np.testing.assert_array_equal(da.compute(scheduler=client).values, ref.values)


def test_scan_on_client_strict_raises_the_documented_error(client, tree):
    with pytest.raises((dcmxr.errors.NotDicomError, dcmxr.errors.InvalidDicomError)):
        scan_on_client(str(tree), client, strict=True, batch_size=4)


def test_scan_client_keyword(client, tree):
    """``dcmxr.scan(..., client=client)`` delegates to the distributed scan."""
    if "client" not in inspect.signature(dcmxr.scan).parameters:
        pytest.skip("dcmxr.scan has no client= keyword yet (the scan.py change is pending)")
    with pytest.warns(dcmxr.errors.SkippedFileWarning):
        remote, _ = _scan_tasks_ran_on_workers(client, lambda: dcmxr.scan(str(tree), client=client))
    with pytest.warns(dcmxr.errors.SkippedFileWarning):
        local = dcmxr.scan(str(tree), progress=False)
    _frames_equal(remote, local)


def test_workers_scan_and_compute_over_http(client, tmp_path):
    """URLs are what make a cluster independent of a shared disk: the workers fetch ranges themselves."""
    pytest.importorskip("aiohttp")
    shutil.copytree(data_path(*CT), tmp_path / "ct")
    with RangeServer(tmp_path) as srv:
        table = scan_on_client(srv.url + "/ct/", client, batch_size=1)
        assert len(table) == 3
        da = dcmxr.open_series(table, chunks=1)
        out = da.compute(scheduler=client)
    np.testing.assert_array_equal(out.values, dcmxr.open_series(str(data_path(*CT))).values)


def test_graph_per_chunk_is_small_for_many_files(tmp_path):
    """Scan+open of 400 single-frame files: the graph pickles to well under 2 KB per chunk."""
    write_series(tmp_path, shape=(400, 8, 8), shuffle_names=True)
    table = dcmxr.scan(str(tmp_path), progress=False)
    da = dcmxr.open_series(table, chunks=1)
    graph = dict(da.data.__dask_graph__())
    per_chunk = len(pickle.dumps(graph, protocol=5)) / da.data.npartitions
    assert da.data.npartitions == 400
    assert per_chunk < 2048, per_chunk
    # the graph holds paths and numbers, no open files or pydicom objects
    blob = pickle.dumps(graph)
    assert b"pydicom" not in blob and b"_io." not in blob


def test_default_batch_size():
    assert default_batch_size(100_000, 8) == 1562
    assert default_batch_size(10, 8) == 16
    assert default_batch_size(10**8, 1) == 2048
