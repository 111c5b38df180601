"""DICOM tree <-> zarr archive: lossless round trip, read-back, resume, safety, OME-Zarr.

References: pydicom (every element of the source file and its ``pixel_array``),
the uncompressed twin ``liver.dcm`` and imagecodecs for the three files pydicom
cannot decode (see ../shared/data/MANIFEST.md), ome-zarr-py for the OME layout,
and ``open_series`` for what the archive's ``image`` must equal.

By default the round trip covers every file dcmxr opens in the folders listed
in ``FOLDERS`` (all transfer syntaxes, CT, RT, SR, parametric maps, WSI); ``DCMXR_FULL_CORPUS=1`` runs it over the whole of ../shared/data
(about 2 minutes on two cores).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest

from _data import data_path

zarr = pytest.importorskip("zarr")

import dcmxr  # noqa: E402
from dcmxr.errors import ExportError  # noqa: E402
from dcmxr.stores.archive import archive_status, cli_convert, safe_name, to_zarr  # noqa: E402
from dcmxr.stores.dicom_out import to_dicom  # noqa: E402

FOLDERS = ("transfer_syntax", "ct", "rt/pydicom", "sr", "paramap", "wsi")
PIXEL_TAGS = {0x7FE00008, 0x7FE00009, 0x7FE00010}

#: Files pydicom cannot decode (MANIFEST.md) -> how their reference pixels are obtained.
NOT_PYDICOM = {
    "liver_deflate.dcm": "twin",   # reference: liver.dcm, the same frames uncompressed
    "liver_rle.dcm": "twin",
    "JPEG-lossy.dcm": "imagecodecs",  # 12-bit JPEG extended: libjpeg-turbo 12-bit via imagecodecs
}


def _sources() -> list[Path]:
    root = data_path()
    if os.environ.get("DCMXR_FULL_CORPUS"):
        return [root]
    return [data_path(*f.split("/")) for f in FOLDERS]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("archive")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = dcmxr.scan([str(p) for p in _sources()], progress=False)
        report = to_zarr(table, out / "a.zarr", progress=False)
        files = to_dicom(out / "a.zarr", out / "dicom")
    return {"table": table, "report": report, "store": out / "a.zarr", "files": files, "dir": out}


def _reference_pixels(src: Path, ds) -> np.ndarray:
    how = NOT_PYDICOM.get(src.name)
    if how == "twin":
        return pydicom.dcmread(src.with_name("liver.dcm")).pixel_array
    if how == "imagecodecs":
        import imagecodecs
        from pydicom.encaps import generate_frames

        frame = next(generate_frames(ds.PixelData, number_of_frames=1))
        return imagecodecs.jpeg8_decode(frame)
    return ds.pixel_array


def _source_order(store) -> list[str]:
    root = zarr.open_group(store, mode="r")
    out = []
    for g in archive_status(store)["group"]:
        out += [f for f, _ in root[g.strip("/")].attrs["dcmxr_archive"]["source"]]
    return out


def test_every_source_file_is_archived(corpus):
    """Every file the scan opened (image and non-image) lands in exactly one complete series group."""
    t = corpus["table"]
    expected = set(t["path"]) | {r["path"] for r in t.attrs["non_image"]}
    assert corpus["report"].failed == []
    status = archive_status(corpus["store"])
    assert status["complete"].all()
    got = _source_order(corpus["store"])
    assert len(got) == len(set(got)) == len(expected)
    assert set(got) == expected
    assert len(corpus["files"]) == len(got)


def _same_value(got, want) -> bool:
    """Element values equal; inside sequences, group length elements (gggg,0000) are not compared."""
    if want.VR != "SQ":
        return got.value == want.value
    if got.VR != "SQ" or len(got.value) != len(want.value):
        return False
    for gi, wi in zip(got.value, want.value):
        gtags = {e.tag for e in gi if e.tag.element}
        wtags = {e.tag for e in wi if e.tag.element}
        if gtags != wtags or not all(_same_value(gi[t], wi[t]) for t in wtags):
            return False
    return True


def test_roundtrip_every_element_and_pixel(corpus):
    """to_dicom(to_zarr(x)) == x element by element (pydicom) and pixel by pixel.

    Documented differences, and only these: the file meta Transfer Syntax UID
    (written Explicit VR Little Endian), group length elements (gggg,0000),
    also inside sequence items (retired; pydicom does not write them back), and PhotometricInterpretation
    YBR_* -> RGB (the archive keeps decoded RGB pixels, as pydicom's
    pixel_array gives them).
    """
    problems = []
    for out, src in zip(corpus["files"], _source_order(corpus["store"])):
        src = Path(src)
        s = pydicom.dcmread(src, force=True)
        o = pydicom.dcmread(out)
        assert o.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
        for e in s:
            if e.tag in PIXEL_TAGS or e.tag.element == 0:
                continue
            if e.tag not in o:
                problems.append(f"{src}: {e.tag} {e.keyword} missing")
            elif e.keyword == "PhotometricInterpretation" and str(e.value).startswith("YBR"):
                assert o[e.tag].value == "RGB"
            elif not _same_value(o[e.tag], e):
                problems.append(f"{src}: {e.keyword or e.tag} {e.value!r:.60} != {o[e.tag].value!r:.60}")
        extra = [e.tag for e in o if e.tag not in s and e.tag not in PIXEL_TAGS]
        if extra:
            problems.append(f"{src}: extra elements {extra}")
        for kw in ("MediaStorageSOPClassUID", "MediaStorageSOPInstanceUID"):
            if kw in s.file_meta:
                assert o.file_meta[kw].value == s.file_meta[kw].value, (src, kw)
        if not any(t in s for t in PIXEL_TAGS):
            assert not any(t in o for t in PIXEL_TAGS)
            continue
        ref = _reference_pixels(src, s)
        got = o.pixel_array
        if not np.array_equal(ref, got):
            problems.append(f"{src}: pixels differ ({ref.dtype}{ref.shape} vs {got.dtype}{got.shape})")
    assert not problems, "\n".join(problems[:20])


def test_lossy_sources_say_so(corpus):
    """Lossily compressed sources keep LossyImageCompression = 01 in the written file."""
    seen = 0
    for out, src in zip(corpus["files"], _source_order(corpus["store"])):
        s = pydicom.dcmread(src, stop_before_pixels=True, force=True)
        if s.file_meta.get("TransferSyntaxUID") in ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51",
                                                    "1.2.840.10008.1.2.4.91") and "LossyImageCompression" in s:
            assert pydicom.dcmread(out, stop_before_pixels=True).LossyImageCompression == s.LossyImageCompression
            seen += 1
    assert seen >= 1


def test_datatree_reads_back_open_series(corpus):
    """xr.open_datatree(store) gives the image, coords (units, direction) and attrs of open_series."""
    import xarray as xr

    src = data_path("ct", "dicom2nifti_gantrytilt")
    tree = xr.open_datatree(corpus["store"], engine="zarr")
    da = dcmxr.open_series(src)
    status = archive_status(corpus["store"])
    uid = da.attrs["series_instance_uid"]
    group = status.loc[status["series_instance_uid"] == uid, "group"].iloc[0]
    img = tree[group]["image"]
    np.testing.assert_array_equal(img.values, da.values)
    assert img.dtype == da.dtype and img.dims == da.dims
    for ax in ("x", "y", "z"):
        np.testing.assert_allclose(img[ax].values, da[ax].values)
        assert img[ax].attrs["direction"] == da[ax].attrs["direction"]
        assert img[ax].attrs["units"] == "mm"
    for k, v in da.attrs.items():
        assert img.attrs[k] == v, k


def test_resume_skips_complete_and_redoes_interrupted(tmp_path):
    src = data_path("transfer_syntax", "pydicom")
    store = tmp_path / "r.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = to_zarr(src, store, progress=False)
        assert len(first.written) >= 3
        # simulate an interruption inside one series: marker gone, an array half-deleted
        victim = first.written[1]
        g = zarr.open_group(store, path=victim.strip("/"), mode="r+")
        m = dict(g.attrs["dcmxr_archive"])
        del m["complete"]
        g.attrs["dcmxr_archive"] = m
        del g["header"]
        assert not archive_status(store).set_index("group").loc[victim, "complete"]
        second = to_zarr(src, store, progress=False)
    assert second.written == [victim]
    assert sorted(second.skipped) == sorted(set(first.written) - {victim})
    assert archive_status(store)["complete"].all()
    files = to_dicom(store, tmp_path / "out", groups=[victim])
    assert files and all(pydicom.dcmread(f).SOPInstanceUID for f in files)


def test_failing_series_is_reported_and_rest_goes_on(tmp_path):
    """A file truncated after the scan (the source changed) fails its series only."""
    a = data_path("ct", "dicom2nifti_gantrytilt")
    b = data_path("transfer_syntax", "pydicom", "CT_small.dcm")
    work = tmp_path / "src"
    shutil.copytree(a, work / "a")
    shutil.copy(b, work / "b.dcm")
    table = dcmxr.scan(work, progress=False)
    victim = sorted((work / "a").rglob("*"))[-1]
    victim.write_bytes(victim.read_bytes()[:5000])  # pixel data gone
    with pytest.warns(dcmxr.errors.DcmxrWarning, match="failed"):
        report = to_zarr(table, tmp_path / "x.zarr", progress=False)
    assert len(report.failed) == 1 and report.failed[0]["reason"]
    assert len(report.written) == 1
    status = archive_status(tmp_path / "x.zarr")
    assert failed_not_complete(status, report.failed[0]["group"])


def failed_not_complete(status, group) -> bool:
    rows = status[status["group"] == group]
    return rows.empty or not rows["complete"].any()


def test_unwritable_destination_raises(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ExportError):
        to_zarr(data_path("transfer_syntax", "pydicom", "CT_small.dcm"), blocker / "x.zarr", progress=False)


def test_group_names_are_sanitised(tmp_path):
    """PatientID/SeriesDescription with separators and dots stay inside the store and never collide."""
    src = pydicom.dcmread(data_path("transfer_syntax", "pydicom", "CT_small.dcm"))
    names = [("../../etc", "/abs/path"), ("__etc", "abs_path"), ("..", "..")]
    for i, (pid, desc) in enumerate(names):
        ds = src.copy()
        ds.PatientID = pid
        ds.SeriesDescription = desc
        ds.SeriesInstanceUID = pydicom.uid.generate_uid()
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.save_as(tmp_path / f"{i}.dcm")
    report = to_zarr(tmp_path, tmp_path / "s.zarr", progress=False)
    assert len(report.written) == 3 and len(set(report.written)) == 3
    for g in report.written:
        parts = g.strip("/").split("/")
        assert len(parts) == 3 and all(p and not p.startswith(".") and "/" not in p for p in parts)
    assert not (tmp_path.parent / "etc").exists()
    assert safe_name("../../etc", "x") != safe_name("__etc", "x")


def test_deidentify_basic_profile(tmp_path):
    """Identifying attributes go, UIDs are replaced consistently (references too), the map stays out."""
    src = data_path("rt", "pydicom")
    store = tmp_path / "d.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = to_zarr(src, store, deidentify=True, progress=False)
        files = to_dicom(store, tmp_path / "out")
    assert not report.failed and report.uid_map
    sources = [pydicom.dcmread(p, force=True) for p in sorted(src.glob("*.dcm"))]
    outs: dict = {}
    for f in files:  # several sources share a SOP Instance UID (one object in several syntaxes)
        o = pydicom.dcmread(f)
        outs[(o.SOPInstanceUID, int(o.get("NumberOfFrames", 1) or 1))] = o
    assert len(files) == len(sources)
    for s in sources:
        new = report.uid_map[s.SOPInstanceUID]
        assert new.startswith("2.25.") and new != s.SOPInstanceUID
        o = outs[(new, int(s.get("NumberOfFrames", 1) or 1))]
        assert o.PatientIdentityRemoved == "YES"
        assert o.get("PatientName", "") == "" and o.get("PatientID", "") == ""
        assert "InstitutionName" not in o and "PatientBirthDate" not in o or o.PatientBirthDate == ""
        assert o.StudyInstanceUID == report.uid_map[s.StudyInstanceUID]
        assert o.SeriesInstanceUID == report.uid_map[s.SeriesInstanceUID]
        assert o.SOPClassUID == s.SOPClassUID  # class UIDs are kept
        assert not any(e.tag.is_private for e in o)
        old_refs = [r for r in _walk_refs(s)]
        assert [r for r in _walk_refs(o)] == [report.uid_map[u] for u in old_refs]
        if "PixelData" in s:
            np.testing.assert_array_equal(o.pixel_array, s.pixel_array)
    # neither identifying values nor any old UID is stored anywhere in the archive
    blob = b"".join(p.read_bytes() for p in store.rglob("*") if p.is_file())
    for s in sources:
        for v in (s.SOPInstanceUID, s.StudyInstanceUID, s.SeriesInstanceUID):
            assert v.encode() not in blob
        if str(s.get("PatientName", "")):
            assert str(s.PatientName).encode() not in blob


def _walk_refs(ds):
    for elem in ds.iterall():
        if elem.keyword == "ReferencedSOPInstanceUID":
            yield str(elem.value)


def test_original_transfer_syntax(tmp_path):
    """transfer_syntax='original' re-encodes lossless RLE / JPEG 2000 sources to their syntax."""
    srcs = [data_path("transfer_syntax", "pydicom", n) for n in ("MR_small_RLE.dcm", "MR_small_jp2klossless.dcm")]
    for i, s in enumerate(srcs):
        store = tmp_path / f"{i}.zarr"
        to_zarr(s, store, progress=False)
        (out,) = to_dicom(store, tmp_path / f"o{i}", transfer_syntax="original")
        a, b = pydicom.dcmread(s), pydicom.dcmread(out)
        assert b.file_meta.TransferSyntaxUID == a.file_meta.TransferSyntaxUID
        np.testing.assert_array_equal(a.pixel_array, b.pixel_array)


def test_ome_layout_readable_by_ome_zarr(tmp_path):
    ome_reader = pytest.importorskip("ome_zarr.reader")
    from ome_zarr.io import parse_url

    from dcmxr.stores.ome import read_direction

    src = data_path("ct", "dicom2nifti_gantrytilt")
    store = tmp_path / "o.zarr"
    report = to_zarr(src, store, layout="ome", progress=False)
    (group,) = report.written
    node = list(ome_reader.Reader(parse_url(str(store) + group))())[0]
    da = dcmxr.open_series(src)
    np.testing.assert_array_equal(np.asarray(node.data[0]), da.values)
    assert [a["name"] for a in node.metadata["axes"]] == ["z", "y", "x"]
    assert all(a["unit"] == "millimeter" for a in node.metadata["axes"])
    scale, trans = node.metadata["coordinateTransformations"][0]
    for i, ax in enumerate(("z", "y", "x")):
        np.testing.assert_allclose(scale["scale"][i], np.diff(da[ax].values).mean())
        np.testing.assert_allclose(trans["translation"][i], da[ax].values[0])
    assert read_direction(store, group)["z"] == da["z"].attrs["direction"]


def test_cli_convert(tmp_path, capsys):
    src = data_path("transfer_syntax", "pydicom", "CT_small.dcm")
    args = argparse.Namespace(source=[str(src)], dest=str(tmp_path / "c.zarr"), layout="dicom",
                              compressor="zstd", level=3, shards=True, deidentify=True,
                              uid_map=str(tmp_path / "map.json"), overwrite=False, workers=1, quiet=True)
    assert cli_convert(args) == 0
    assert "1 series written" in capsys.readouterr().out
    uid_map = json.loads((tmp_path / "map.json").read_text())
    assert pydicom.dcmread(src).SOPInstanceUID in uid_map
    (out,) = to_dicom(tmp_path / "c.zarr", tmp_path / "o")
    np.testing.assert_array_equal(pydicom.dcmread(out).pixel_array, pydicom.dcmread(src).pixel_array)
