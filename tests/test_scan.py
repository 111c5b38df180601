"""dcmxr.scan: sources, headers-only reads, per-frame rows, skipped files."""
from __future__ import annotations

import os
import shutil
import warnings

import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.data import get_testdata_file

import dcmxr
from dcmxr.errors import NotDicomError, SkippedFileWarning
from _data import data_path

DICOMDIR_TESTS = os.path.join(os.path.dirname(get_testdata_file("CT_small.dcm")), "dicomdirtests")


def _quiet_scan(*a, **k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dcmxr.scan(*a, **k)


def test_header_values_equal_pydicom():
    """Every column we fill agrees with pydicom's reading of the same header (oracle)."""
    folder = data_path("mr", "dcm_qa_nih", "In")
    table = _quiet_scan(folder)
    assert len(table) > 300
    for _, row in table.sample(40, random_state=0).iterrows():
        ds = pydicom.dcmread(row["path"], stop_before_pixels=True)
        assert row["sop_instance_uid"] == ds.SOPInstanceUID
        assert row["series_instance_uid"] == ds.SeriesInstanceUID
        assert row["rows"] == ds.Rows and row["columns"] == ds.Columns
        np.testing.assert_allclose([row[f"ipp_{i}"] for i in range(3)], [float(v) for v in ds.ImagePositionPatient])
        np.testing.assert_allclose([row[f"iop_{i}"] for i in range(6)], [float(v) for v in ds.ImageOrientationPatient])
        assert row["instance_number"] == int(ds.InstanceNumber)
        if "EchoTime" in ds:
            assert row["echo_time"] == pytest.approx(float(ds.EchoTime))


def test_pixel_byte_ranges_match_pydicom():
    """Native frames: the byte range holds exactly the frame's bytes as pydicom reads them."""
    path = get_testdata_file("CT_small.dcm")
    row = dcmxr.scan(path).iloc[0]
    ds = pydicom.dcmread(path)
    with open(path, "rb") as fh:
        fh.seek(int(row["pixel_offset"]))
        raw = fh.read(int(row["pixel_length"]))
    assert raw == ds.PixelData


def test_one_row_per_frame_enhanced():
    path = data_path("transfer_syntax", "pydicom-data", "emri_small_jpeg_ls_lossless.dcm")
    table = dcmxr.scan(path)
    assert len(table) == 10
    assert table["frame"].tolist() == list(range(10))
    assert table["pixel_offset"].is_monotonic_increasing


def test_enhanced_per_frame_geometry_from_functional_groups():
    path = data_path("transfer_syntax", "pydicom-data", "eCT_Supplemental.dcm")
    table = dcmxr.scan(path)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    for i, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
        ipp = [float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient]
        np.testing.assert_allclose(table.loc[i, ["ipp_0", "ipp_1", "ipp_2"]].astype(float), ipp)


def test_sources_folder_list_glob_dicomdir_url(tmp_path):
    folder = data_path("ct", "dcmqi", "ct-3slice")
    files = sorted(str(p) for p in folder.iterdir())
    by_folder = dcmxr.scan(folder)
    by_list = dcmxr.scan(files)
    by_glob = dcmxr.scan(str(folder / "*"))
    by_url = dcmxr.scan("file://" + str(folder))
    for t in (by_list, by_glob, by_url):
        assert sorted(t["sop_instance_uid"]) == sorted(by_folder["sop_instance_uid"])
    # DICOMDIR: pydicom's bundled media (the referenced files only)
    dicomdir = os.path.join(DICOMDIR_TESTS, "DICOMDIR")
    from pydicom.fileset import FileSet

    expected = {str(inst.path) for inst in FileSet(pydicom.dcmread(dicomdir))}
    t = _quiet_scan(dicomdir)
    assert set(t["path"]) | {o["path"] for o in t.attrs["non_image"]} <= expected
    assert len(set(t["path"])) > 0


def test_fsspec_memory_url():
    import fsspec

    fs = fsspec.filesystem("memory")
    src = get_testdata_file("MR_small.dcm")
    with open(src, "rb") as fh:
        fs.pipe("/scan/a.dcm", fh.read())
    t = dcmxr.scan("memory://scan/")
    assert len(t) == 1
    da = dcmxr.open_series(t)
    np.testing.assert_array_equal(da.values[0], pydicom.dcmread(src).pixel_array)


def test_reads_only_headers(monkeypatch):
    """scan never reads past the start of the Pixel Data element."""
    import dcmxr.catalog.sources as sources

    path = get_testdata_file("CT_small.dcm")
    ds = pydicom.dcmread(path)
    real = sources.local_reader
    seen = []

    def counting(p):
        read, size, mtime, close = real(p)

        def r(offset, n):
            data = read(offset, n)
            seen.append((offset, offset + len(data)))
            return data

        return r, size, mtime, close

    monkeypatch.setattr(sources, "local_reader", counting)
    table = dcmxr.scan(path)
    start = int(table["pixel_offset"].iloc[0])
    # the header walker may read a buffer that overlaps pixel data, but the caller gets the header
    # only; no read starts inside pixel data and the total bytes are bounded by the first buffer
    assert all(a < start for a, b in seen)
    assert sum(b - a for a, b in seen) <= max(8192, start) + 16  # + the pixel element header
    assert len(ds.PixelData) > 8192  # the file has more pixel bytes than were read


def test_skipped_files_are_listed_once(tmp_path):
    shutil.copy(get_testdata_file("CT_small.dcm"), tmp_path / "ok.dcm")
    (tmp_path / "notes.txt").write_text("not dicom")
    with open(get_testdata_file("CT_small.dcm"), "rb") as fh:
        (tmp_path / "truncated.dcm").write_bytes(fh.read(600))
    with pytest.warns(SkippedFileWarning, match="skipped 2 of 3") as rec:
        t = dcmxr.scan(tmp_path)
    assert len([w for w in rec if issubclass(w.category, SkippedFileWarning)]) == 1
    assert len(t) == 1
    reasons = {os.path.basename(s["path"]): s["reason"] for s in t.attrs["skipped"]}
    assert set(reasons) == {"notes.txt", "truncated.dcm"}
    assert "NotDicomError" in reasons["notes.txt"]
    with pytest.raises(NotDicomError):
        dcmxr.scan(tmp_path, strict=True)


def test_non_image_objects_listed():
    t = _quiet_scan([str(data_path("sr", "pydicom", "test-SR.dcm")), get_testdata_file("CT_small.dcm")])
    assert len(t) == 1
    assert [o["modality"] for o in t.attrs["non_image"]] == ["SR"]


def test_parallel_scan_equals_serial(tmp_path, monkeypatch):
    import dcmxr.catalog.scan as scan_mod

    src = data_path("mr", "dcm_qa_nih", "In")
    serial = _quiet_scan(src)
    monkeypatch.setattr(scan_mod, "PARALLEL_THRESHOLD", 10)
    parallel = _quiet_scan(src, processes=2)
    cols = ["path", "frame", "pixel_offset", "sop_instance_uid", "ipp_2"]
    pd.testing.assert_frame_equal(serial[cols].reset_index(drop=True), parallel[cols].reset_index(drop=True))


def test_source_files_are_never_modified(tmp_path):
    import hashlib

    src = data_path("ct", "dcmqi", "ct-3slice")
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in src.iterdir()}
    da = dcmxr.open_series(src)
    da.compute()
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in src.iterdir()}
    assert before == after
