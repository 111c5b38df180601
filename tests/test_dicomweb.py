"""DICOMweb against a real Orthanc (Debian ``orthanc`` + ``orthanc-dicomweb``).

Orthanc runs on loopback inside its own network namespace (``unshare -n``, then
``ip link set lo up``), from a config in a temp dir, and is stopped by pid
(:class:`dcmxr.testing.orthanc.Orthanc`). The test process reaches it through
a small TCP relay: a listening socket on this namespace's 127.0.0.1 whose relay
thread has entered Orthanc's namespace (``setns``) to open the outgoing
connections. Series from ../shared/data are loaded with STOW-RS; opening them
over DICOMweb must equal opening the files.
"""
from __future__ import annotations

import importlib
import os
import warnings

import numpy as np
import pytest

import dcmxr
from dcmxr.testing.orthanc import Orthanc, skip_reason

from _data import data_path

pytestmark = [pytest.mark.timeout(180), pytest.mark.filterwarnings("ignore::dcmxr.errors.GeometryWarning")]

CT = ("ct", "dcmqi", "ct-3slice")  # 3 single-frame CT files
MULTI = ("transfer_syntax", "pydicom-data", "emri_small_jpeg_ls_lossless.dcm")  # 10 frames, JPEG-LS


_REASON = skip_reason()
if _REASON:
    pytest.skip(_REASON, allow_module_level=True)


def _entry_point_registered() -> bool:
    from importlib.metadata import entry_points

    return any(ep.name == "dicomweb" for ep in entry_points(group="fsspec.specs"))


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    """Orthanc in its own network namespace; yields the DICOMweb root URL reachable from here."""
    with Orthanc(tmp_path_factory.mktemp("orthanc")) as server:
        yield server.dicomweb_url


@pytest.fixture(scope="module")
def loaded(orthanc):
    """Series from ../shared/data stored with STOW-RS; returns {name: (study, series, local path)}."""
    import pydicom
    from dicomweb_client.api import DICOMwebClient

    client = DICOMwebClient(orthanc)
    out = {}
    for name, parts in (("ct", CT), ("multi", MULTI)):
        path = data_path(*parts)
        files = sorted(path.iterdir()) if path.is_dir() else [path]
        datasets = [pydicom.dcmread(f) for f in files]
        client.store_instances(datasets)
        out[name] = (datasets[0].StudyInstanceUID, datasets[0].SeriesInstanceUID, str(path))
    return out


def test_orthanc_runs_in_its_own_network_namespace(orthanc):
    """Orthanc answers through the relay, and its process sits in a different network namespace."""
    import requests

    assert requests.get(orthanc.rsplit("/dicom-web", 1)[0] + "/system", timeout=5).json()["Name"] == "dcmxr-test"
    pids = [p for p in os.listdir("/proc") if p.isdigit()]
    ours = os.readlink("/proc/self/ns/net")
    orthancs = []
    for pid in pids:
        try:
            if open(f"/proc/{pid}/comm").read().strip() == "Orthanc":
                orthancs.append(os.readlink(f"/proc/{pid}/ns/net"))
        except OSError:
            continue
    assert orthancs and any(ns != ours for ns in orthancs)


def test_dicomweb_series_equals_local_files(loaded, orthanc):
    study, series, local_path = loaded["ct"]
    from dcmxr import dicomweb

    da = dicomweb.open_series(orthanc, study, series, chunks=1)
    local = dcmxr.open_series(local_path, chunks=1)
    assert da.dims == local.dims and da.shape == local.shape and da.dtype == local.dtype
    np.testing.assert_array_equal(da.values, local.values)
    for dim in ("z", "y", "x"):
        np.testing.assert_allclose(da[dim].values, local[dim].values)
        assert da[dim].attrs == local[dim].attrs
    assert da.attrs == local.attrs


def test_dicomweb_url_form_and_multiframe_compressed(loaded, orthanc):
    """A 10-frame JPEG-LS instance: the server decodes frames (octet-stream, Explicit VR LE);
    a chunk of adjacent frames is one WADO-RS request."""
    from dcmxr import dicomweb

    study, series, local_path = loaded["multi"]
    url = orthanc.replace("http://", "dicomweb://") + f"?study={study}&series={series}"
    da = dicomweb.open_series(url, chunks=5)
    local = dcmxr.open_series(local_path)
    assert da.shape == local.shape
    np.testing.assert_array_equal(da.values, local.values)

    calls = []
    fs_cls = dicomweb.DICOMwebFileSystem
    original = fs_cls.cat_file

    def counting(self, path, start=None, end=None, **kw):
        calls.append((start, end))
        return original(self, path, start, end, **kw)

    fs_cls.cat_file = counting
    try:
        part = da.isel({da.dims[0]: slice(0, 5)}).values  # one chunk
    finally:
        fs_cls.cat_file = original
    np.testing.assert_array_equal(part, local.values[:5])
    assert len(calls) == 1 and calls[0] == (0, 5 * 64 * 64 * 2)


def test_dicomweb_header_table_moves_no_pixels(loaded, orthanc):
    from dcmxr import dicomweb

    study, series, local_path = loaded["ct"]
    table = dicomweb.scan_series(orthanc, study, series)
    local = dcmxr.scan(local_path, progress=False)
    assert len(table) == len(local) == 3
    assert set(table["sop_instance_uid"]) == set(local["sop_instance_uid"])
    assert all(p.startswith("dicomweb://") and "frame_bytes=524288" in p for p in table["path"])
    for col in ("ipp_0", "ipp_1", "ipp_2", "rescale_intercept", "rows", "columns"):
        a = table.sort_values("sop_instance_uid")[col].to_numpy(float)
        b = local.sort_values("sop_instance_uid")[col].to_numpy(float)
        np.testing.assert_allclose(a, b)


def test_dicomweb_unknown_series_is_a_selection_error(loaded, orthanc):
    from dcmxr import dicomweb

    study, _, _ = loaded["ct"]
    with pytest.raises(dcmxr.errors.SelectionError):
        dicomweb.open_series(orthanc, study, "1.2.3.4.5.6.7.8.9")


def test_dicomweb_graph_runs_on_a_local_cluster(loaded, orthanc):
    """The graph holds only dicomweb:// URLs: worker processes fetch the frames themselves.

    The workers live in this namespace and reach Orthanc through the same relay.
    """
    distributed = pytest.importorskip("distributed")
    import logging

    from dcmxr import dicomweb

    study, series, local_path = loaded["ct"]
    da = dicomweb.open_series(orthanc, study, series, chunks=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cluster = distributed.LocalCluster(n_workers=1, processes=True, threads_per_worker=2,
                                           dashboard_address=None, silence_logs=logging.ERROR)
    with cluster, distributed.Client(cluster, set_as_default=False) as client:
        if not _entry_point_registered():
            # until pyproject declares the fsspec.specs entry point, workers learn the protocol by import
            client.run(importlib.import_module, "dcmxr.dicomweb")
        out = da.compute(scheduler=client)
    np.testing.assert_array_equal(out.values, dcmxr.open_series(local_path).values)
