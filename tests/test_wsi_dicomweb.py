"""Whole-slide images over DICOMweb against a real Orthanc (Debian ``orthanc`` + ``orthanc-dicomweb``).

Orthanc runs on loopback in its own network namespace (:class:`dcmxr.testing.orthanc.Orthanc`,
as in tests/test_dicomweb.py); the real dicom-wsi-sample pyramid and a highdicom
synthetic slide are stored with STOW-RS. Opening them over DICOMweb must equal
opening the same files locally (every level, values, coordinates and attrs).
"""
from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from dcmxr import errors
from dcmxr.testing.orthanc import Orthanc, skip_reason
from dcmxr.wsi import open_slide, read_region
from dcmxr.wsi.web import open_slide_dicomweb

from _data import data_path

pytestmark = [pytest.mark.timeout(180)]

SAMPLE = ("wsi", "dicom-wsi-sample", "cmu-1-small-region")
SYNTH = ("wsi", "highdicom_synthetic", "sm_image.dcm")

_REASON = skip_reason()
if _REASON:
    pytest.skip(_REASON, allow_module_level=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Orthanc with both slides stored; yields (root URL, {name: (study, series, local path)})."""
    import pydicom
    from dicomweb_client.api import DICOMwebClient

    with Orthanc(tmp_path_factory.mktemp("orthanc-wsi")) as orthanc:
        client = DICOMwebClient(orthanc.dicomweb_url)
        out = {}
        for name, parts in (("sample", SAMPLE), ("synthetic", SYNTH)):
            path = data_path(*parts)
            files = sorted(path.glob("*.dcm")) if path.is_dir() else [path]
            datasets = [pydicom.dcmread(f) for f in files]
            client.store_instances(datasets)
            out[name] = (datasets[0].StudyInstanceUID, datasets[0].SeriesInstanceUID, path)
        yield orthanc.dicomweb_url, out


def _assert_same_tree(web, local):
    assert list(web.children) == list(local.children)
    assert web.attrs == local.attrs
    for name in local.children:
        want = local[name]["image"].compute()
        got = web[name]["image"].compute()
        # Orthanc's metadata leaves out the stored Transfer Syntax UID (its frame answers carry it)
        assert got.attrs.get("transfer_syntax_uid", want.attrs["transfer_syntax_uid"]) == want.attrs["transfer_syntax_uid"]
        want.attrs.pop("transfer_syntax_uid")
        got.attrs.pop("transfer_syntax_uid", None)
        xr.testing.assert_identical(got, want)


def test_sample_pyramid_over_dicomweb_equals_local_files(server):
    url, slides = server
    study, series, path = slides["sample"]
    web = open_slide(f"dicomweb://{url.split('://', 1)[1]}?study={study}&series={series}")
    local = open_slide(path)
    assert len(web.children) == 12
    _assert_same_tree(web, local)
    got = read_region(web, (700, 900), 0, (512, 400), threads=2)
    np.testing.assert_array_equal(got.values, read_region(local, (700, 900), 0, (512, 400)).values)
    np.testing.assert_array_equal(got.x.values, read_region(local, (700, 900), 0, (512, 400)).x.values)


def test_synthetic_slide_with_icc_over_dicomweb_equals_local(server):
    from dicomweb_client.api import DICOMwebClient

    url, slides = server
    study, series, path = slides["synthetic"]
    web = open_slide_dicomweb(DICOMwebClient(url), study, series, apply_icc=True)
    local = open_slide(path, apply_icc=True)
    assert "icc_profile" in web.attrs
    _assert_same_tree(web, local)


def test_opening_over_dicomweb_moves_no_pixels(server):
    url, slides = server
    study, series, _ = slides["sample"]
    web = open_slide_dicomweb(url, study, series)
    from dcmxr.wsi.index import lookup

    reader = lookup(web["level_0"]["image"].data.name)
    assert reader.fetch is not None and all(ix._table is None for ix in reader.indexes)
    assert np.asarray(web["level_0"]["image"][:3, :3]).shape == (3, 3, 3)


def test_unknown_series_is_a_selection_error(server):
    url, slides = server
    study, _, _ = slides["sample"]
    with pytest.raises(errors.SelectionError):
        open_slide_dicomweb(url, study, "1.2.3.4.5.6.7")
    with pytest.raises(errors.SelectionError, match="study and series"):
        open_slide_dicomweb(url)
