"""``open_study`` over DICOMweb against a real Orthanc, equal to ``dcmxr.open_study`` of the same files.

A study of 7 Siemens MOSAIC EPI series (2 volumes each; ../shared/data
mr/dcm_qa/In/Orientation/ax) and, in another study, 3 CT slices are stored
with STOW-RS as they are. ``dcmxr.dicomweb.open_study`` builds the DataTree
from one WADO-RS study metadata request plus the CSA bulk data; node names,
shapes, values, coordinates and attrs must equal opening the files locally.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr

import dcmxr
from dcmxr.testing.orthanc import Orthanc, skip_reason

from _compare import close as _close
from _data import data_path

pytestmark = [pytest.mark.timeout(300), pytest.mark.filterwarnings("ignore::dcmxr.errors.GeometryWarning")]

_REASON = skip_reason()
if _REASON:
    pytest.skip(_REASON, allow_module_level=True)

STUDY = ("mr", "dcm_qa", "In", "Orientation", "ax")  # 7 MOSAIC series x 2 volumes, one study
OTHER = ("ct", "dcmqi", "ct-3slice")  # another study


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    """Orthanc in its own network namespace (dcmxr.testing.orthanc); yields its DICOMweb root URL."""
    with Orthanc(tmp_path_factory.mktemp("orthanc")) as server:
        yield server.dicomweb_url


@pytest.fixture(scope="module")
def stored(orthanc):
    """{name: (study uid, local folder)} stored by STOW-RS, unchanged."""
    import pydicom
    from dicomweb_client.api import DICOMwebClient

    client = DICOMwebClient(orthanc)
    out = {}
    for name, parts in (("mosaic", STUDY), ("ct", OTHER)):
        folder = data_path(*parts)
        datasets = [pydicom.dcmread(f) for f in sorted(folder.rglob("*")) if f.is_file()]
        client.store_instances(datasets)
        out[name] = (datasets[0].StudyInstanceUID, folder)
    return out


def _trees_equal(web: xr.DataTree, local: xr.DataTree) -> int:
    """Same node paths; every node's variables, coords and attrs equal. Returns the number of images."""
    web_paths = {n.path for n in web.subtree}
    local_paths = {n.path for n in local.subtree}
    assert web_paths == local_paths
    images = 0
    for node in local.subtree:
        w, lo = web[node.path].to_dataset(), node.to_dataset()
        assert set(w.data_vars) == set(lo.data_vars), node.path
        _close(w.attrs, lo.attrs, f"{node.path}.attrs")
        for name in lo.data_vars:
            a, b = w[name], lo[name]
            assert a.dims == b.dims and a.shape == b.shape and a.dtype == b.dtype, node.path
            assert isinstance(a.variable._data, type(b.variable._data)), "lazy like the local one"
            np.testing.assert_array_equal(a.values, b.values, err_msg=node.path)
            images += 1
        assert set(w.coords) == set(lo.coords), node.path
        for name in lo.coords:
            a, b = np.asarray(w[name].values), np.asarray(lo[name].values)
            if a.dtype.kind == "f":
                np.testing.assert_allclose(a, b, atol=1e-9, err_msg=f"{node.path}:{name}")
            else:
                np.testing.assert_array_equal(a, b, err_msg=f"{node.path}:{name}")
            _close(w[name].attrs, lo[name].attrs, f"{node.path}:{name}.attrs")
    return images


def test_open_study_equals_local_open_study(stored, orthanc):
    """7 MOSAIC series (CSA header by BulkDataURI) as 7 lazy nodes equal to the local DataTree."""
    from dcmxr import dicomweb

    study, folder = stored["mosaic"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        web = dicomweb.open_study(orthanc, study, chunks=1)
        local = dcmxr.open_study(str(folder), chunks=1)
    assert _trees_equal(web, local) == 7
    leaves = [n for n in web.subtree if "image" in n.ds]
    assert all(n.ds["image"].dims == ("t", "z", "y", "x") and n.ds["image"].shape[:2] in ((2, 35), (2, 36))
               for n in leaves)


def test_open_study_moves_no_pixels_until_computed(stored, orthanc):
    """Opening: one study metadata request + one CSA bulk data request per instance, no frame request."""
    from dcmxr import dicomweb
    from dcmxr.testing.faultproxy import FaultProxy

    study, folder = stored["mosaic"]
    with FaultProxy(orthanc) as proxy, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tree = dicomweb.open_study(proxy.url, study)
        paths = [r[0] for r in proxy.requests()]
        assert sum(p.endswith(f"/studies/{study}/metadata") for p in paths) == 1
        assert not [p for p in paths if "/frames/" in p]
        assert len([p for p in paths if "/bulk" in p or "0029" in p.lower()]) == 14  # CSA of 14 instances
        proxy.reset()
        leaf = next(n for n in tree.subtree if "image" in n.ds)
        one = leaf.ds["image"].isel(t=0, z=0).values  # one slice of one MOSAIC: one frame request
        frames = [r for r in proxy.requests() if "/frames/" in r[0]]
    assert len(frames) == 1
    local = dcmxr.open_study(str(folder))
    np.testing.assert_array_equal(one, local[leaf.path].ds["image"].isel(t=0, z=0).values)


def test_open_study_url_form_and_series_filter(stored, orthanc):
    from dcmxr import dicomweb

    study, folder = stored["mosaic"]
    url = orthanc.replace("http://", "dicomweb://") + f"?study={study}"
    tree = dicomweb.open_study(url)
    local = dcmxr.open_study(str(folder))
    assert {n.path for n in tree.subtree} == {n.path for n in local.subtree}
    leaf = sorted(n.path for n in local.subtree if "image" in n.ds)[0]
    series = local[leaf].ds.attrs["series_instance_uid"]
    one = dicomweb.open_study(url + f"&series={series}")
    assert [n.path for n in one.subtree if "image" in n.ds] == [leaf]


def test_open_study_other_study_is_separate(stored, orthanc):
    from dcmxr import dicomweb

    study, folder = stored["ct"]
    web = dicomweb.open_study(orthanc, study)
    local = dcmxr.open_study(str(folder))
    assert _trees_equal(web, local) == 1


def test_open_study_errors(stored, orthanc):
    from dcmxr import dicomweb

    with pytest.raises(dcmxr.errors.SelectionError, match="no study"):
        dicomweb.open_study(orthanc, "1.2.3.4.5.6.7.8.9")
    with pytest.raises(dcmxr.errors.SelectionError) as err:  # no study: the message lists the server's studies
        dicomweb.open_study(orthanc.replace("http://", "dicomweb://"))
    assert stored["mosaic"][0] in str(err.value) and stored["ct"][0] in str(err.value)
    study = stored["ct"][0]
    with pytest.raises(dcmxr.errors.SelectionError, match="no series"):
        dicomweb.open_study(orthanc.replace("http://", "dicomweb://") + f"?study={study}&series=1.2.3")


def test_dcmxr_open_study_takes_a_dicomweb_url(stored, orthanc):
    study, folder = stored["ct"]
    tree = dcmxr.open_study(orthanc.replace("http://", "dicomweb://") + f"?study={study}")
    assert _trees_equal(tree, dcmxr.open_study(str(folder))) == 1


def test_xarray_open_datatree_takes_a_dicomweb_url(stored, orthanc):
    study, folder = stored["ct"]
    tree = xr.open_datatree(orthanc.replace("http://", "dicomweb://") + f"?study={study}", engine="dicom")
    # compared with the engine on the local files (xarray wraps backend arrays the same way for both)
    assert _trees_equal(tree, xr.open_datatree(str(folder), engine="dicom")) == 1


def test_frame_requests_ask_for_identity_encoding_and_gzip_still_works(stored, orthanc):
    """Frame sessions send ``Accept-Encoding: identity`` (Orthanc gzips a single-part answer when offered,
    ~50 ms for a 0.5 MB frame); a user who asks for gzip in ``headers`` gets it, with equal pixels."""
    from dcmxr import dicomweb, webtransport

    study, folder = stored["ct"]
    table = dicomweb.scan_study(orthanc, study)
    fs = dicomweb.DICOMwebFileSystem()
    base, study_, series, sop, _ = fs._split(table["path"].iloc[0])
    url = f"{base}/studies/{study_}/series/{series}/instances/{sop}/frames/1"
    accept = webtransport.frame_accept_headers(None)[0]
    plain = webtransport.http_get(webtransport._session(None), url, accept=accept)
    zipped = webtransport.http_get(webtransport._session({"Accept-Encoding": "gzip"}), url, accept=accept)
    assert plain.headers.get("Content-Encoding") is None
    assert zipped.headers.get("Content-Encoding") == "gzip"  # Orthanc does compress when asked
    parts = [webtransport.parse_multipart(r.headers["Content-Type"], r.content, url) for r in (plain, zipped)]
    assert len(parts[0]) == 1 and parts[0][0].data == parts[1][0].data

    local = dcmxr.open_study(str(folder))
    leaf = next(n.path for n in local.subtree if "image" in n.ds)
    web = dicomweb.open_study(orthanc, study, headers={"Accept-Encoding": "gzip"})
    np.testing.assert_array_equal(web[leaf].ds["image"].values, local[leaf].ds["image"].values)
