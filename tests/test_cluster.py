"""The same graphs compute on a dask.distributed cluster (worker processes) with identical results."""
from __future__ import annotations

import logging
import shutil
import warnings

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

import dcmxr  # noqa: E402

from _data import data_path  # noqa: E402

pytestmark = pytest.mark.cluster

MOSAIC = ("mr", "dcm_qa", "In", "Orientation", "ax", "axasc35")  # 2 Siemens mosaics -> (t, z, y, x)
JPEGLS = ("transfer_syntax", "dicom2nifti", "compressed_jpegls", "001")  # JPEG-LS lossless
J2K_MULTIFRAME = ("transfer_syntax", "pydicom-data", "emri_small_jpeg_2k_lossless.dcm")  # 10-frame JPEG 2000
CT = ("ct", "dcmqi", "ct-3slice")


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # port/dashboard notices
        cluster = LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None,
                               silence_logs=logging.ERROR)
    c = Client(cluster, set_as_default=False)
    try:
        c.wait_for_workers(2, timeout=60)
        yield c
    finally:
        c.close()
        cluster.close()


def _on_cluster(da, client):
    """Compute on the cluster and check the work really ran in the worker processes."""
    from distributed import get_task_stream

    with get_task_stream(client) as ts:
        out = da.compute(scheduler=client)
    workers = {t["worker"] for t in ts.data}
    assert len(ts.data) >= da.data.npartitions and workers <= set(client.scheduler_info()["workers"])
    return out, workers


@pytest.mark.parametrize("parts,chunks", [(MOSAIC, {"t": 1, "z": 5}), (JPEGLS, 1), (J2K_MULTIFRAME, 2)],
                         ids=["mosaic", "jpegls", "j2k_multiframe"])
def test_cluster_equals_local(parts, chunks, client):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dcmxr.errors.GeometryWarning)
        da = dcmxr.open_series(str(data_path(*parts)), chunks=chunks)
    local = da.compute(scheduler="threads")
    remote, workers = _on_cluster(da, client)
    assert remote.dtype == local.dtype and remote.dims == local.dims
    np.testing.assert_array_equal(remote.values, local.values)
    assert remote.attrs == local.attrs
    if da.data.npartitions >= 4:
        assert len(workers) == 2  # both worker processes decoded chunks

    # reductions run as graphs on the cluster too
    mean_remote = da.mean(dim=da.dims[-2:]).compute(scheduler=client)
    mean_local = da.mean(dim=da.dims[-2:]).compute(scheduler="threads")
    np.testing.assert_array_equal(mean_remote.values, mean_local.values)
    total = float(da.astype("float64").mean().compute(scheduler=client))
    assert total == pytest.approx(float(local.values.astype("float64").mean()), rel=1e-12)


def test_cluster_fills_and_reads_cache(client, tmp_path):
    """Workers write a zarr cache; a second run reads it with DICOM pixel reads disabled on the workers."""
    pytest.importorskip("zarr")
    src = tmp_path / "src"
    shutil.copytree(data_path(*CT), src)
    cache = tmp_path / "c.zarr"
    ref = dcmxr.open_series(str(src), chunks=1).values

    first, _ = _on_cluster(dcmxr.open_series(str(src), chunks=1, cache=str(cache)), client)
    np.testing.assert_array_equal(first.values, ref)

    def disable_pixel_reads():
        import dcmxr.decode.read as r

        def boom(*a, **k):
            raise AssertionError("pixel bytes read on a worker despite a complete cache")

        r._saved = (r.read_ranges, r.read_inflated)
        r.read_ranges = r.read_inflated = boom

    def restore_pixel_reads():
        import dcmxr.decode.read as r

        r.read_ranges, r.read_inflated = r._saved

    client.run(disable_pixel_reads)
    try:
        second, _ = _on_cluster(dcmxr.open_series(str(src), chunks=1, cache=str(cache)), client)
    finally:
        client.run(restore_pixel_reads)
    np.testing.assert_array_equal(second.values, ref)
