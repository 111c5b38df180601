"""DICOMweb through a misbehaving proxy in front of a real Orthanc.

:class:`dcmxr.testing.faultproxy.FaultProxy` forwards to Orthanc and breaks
frame requests on demand (500/503, dropped connections, stalls, bodies cut
short, multipart bodies without their end or missing a part). dcmxr must
retry transient failures a bounded number of times, raise a clear error
otherwise, never hang and never return wrong pixels.
"""
from __future__ import annotations

import time

import numpy as np
import pytest

import dcmxr
from dcmxr.testing.faultproxy import FaultProxy

from _data import data_path
from dcmxr.testing.orthanc import Orthanc, skip_reason

pytestmark = [pytest.mark.timeout(180), pytest.mark.filterwarnings("ignore::dcmxr.errors.GeometryWarning")]

_REASON = skip_reason()
if _REASON:
    pytest.skip(_REASON, allow_module_level=True)


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    """Orthanc in its own network namespace (dcmxr.testing.orthanc); yields its DICOMweb root URL."""
    with Orthanc(tmp_path_factory.mktemp("orthanc")) as server:
        yield server.dicomweb_url


JLS = ("transfer_syntax", "pydicom-data", "emri_small_jpeg_ls_lossless.dcm")  # 10 frames


@pytest.fixture(scope="module")
def series(orthanc):
    import pydicom
    from dicomweb_client.api import DICOMwebClient

    ds = pydicom.dcmread(data_path(*JLS))
    DICOMwebClient(orthanc).store_instances([ds])
    local = dcmxr.open_series(str(data_path(*JLS)))
    return ds.StudyInstanceUID, ds.SeriesInstanceUID, local


@pytest.fixture
def proxy(orthanc):
    with FaultProxy(orthanc) as p:
        yield p


def _open(proxy, series, **kw):
    from dcmxr import dicomweb

    study, uid, _ = series
    return dicomweb.open_series(proxy.url, study, uid, chunks=5, **kw)


def test_transient_503s_are_retried(proxy, series):
    da = _open(proxy, series)
    proxy.set_fault("503", match="/frames/", count=2)
    np.testing.assert_array_equal(da.values, series[2].values)
    assert proxy.faults_served == 2


@pytest.mark.parametrize("fault", ["500", "drop", "truncate", "stall", "503"])
def test_failing_frame_requests_raise_quickly(proxy, series, fault):
    da = _open(proxy, series, timeout=2, retries=2)
    proxy.set_fault(fault, match="/frames/", stall_seconds=30)
    t0 = time.monotonic()
    with pytest.raises(OSError) as info:
        da.values
    assert time.monotonic() - t0 < 30
    assert "frames" in str(info.value) or "dicomweb" in str(info.value).lower()
    proxy.set_fault(None)
    np.testing.assert_array_equal(da.values, series[2].values)


def test_500_on_the_stored_syntax_falls_back_to_the_next_representation(proxy, series):
    """A server that refuses one representation (Orthanc answers 500 when it cannot transcode):
    the next Accept value is tried, and the pixels are the same."""
    da = _open(proxy, series)
    proxy.set_fault("500", match="/frames/", count=1)
    np.testing.assert_array_equal(da.isel({da.dims[0]: slice(0, 5)}).values, series[2].values[:5])
    accepts = [r[1] for r in proxy.requests("/frames/")]
    assert len(accepts) == 2 and accepts[0] != accepts[1]


@pytest.mark.parametrize("fault", ["cut-multipart", "fewer-parts"])
def test_malformed_multipart_is_a_clear_error(proxy, series, fault):
    """The filesystem raises InvalidDicomError; dcmxr's byte-range reader (dcmxr/decode/read.py)
    re-raises non-OSErrors from fsspec as OSError with the message kept."""
    da = _open(proxy, series)
    proxy.set_fault(fault, match="/frames/")
    with pytest.raises((dcmxr.errors.InvalidDicomError, OSError), match="truncated|asked for 5 frames"):
        da.values


def test_failing_metadata_request_is_an_oserror(proxy, series):
    from dcmxr import dicomweb

    study, uid, _ = series
    proxy.set_fault("500", match="/metadata")
    with pytest.raises(OSError, match="metadata"):
        dicomweb.scan_series(proxy.url, study, uid)
