"""The fast DICOM JSON header walker equals pydicom's ``Dataset.to_json_dict``.

Reference: pydicom 3 (``dcmread`` + ``to_json_dict`` of the file without its
pixel data, and of its file meta). Covers every transfer syntax folder, CT,
RT, SR, parametric maps, WSI and enhanced MR (nested character sets), with
one :class:`HeaderCache` shared by all files (so a cached fragment is never
reused where it would be wrong).
"""

from __future__ import annotations

import json
import warnings

import pydicom
import pytest

from _data import data_path

import dcmxr
from dcmxr.stores import dicomjson as dj

FOLDERS = ("transfer_syntax", "ct", "rt/pydicom", "sr", "paramap", "wsi", "enhanced/dcm_qa_philips_enh",
           "mr/dicom2nifti/hitachi")


def _files() -> list[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = dcmxr.scan([str(data_path(*f.split("/"))) for f in FOLDERS], progress=False)
    return sorted(set(t["path"]) | {r["path"] for r in t.attrs.get("non_image", [])})


def _pydicom(path: str) -> tuple[str, dict, dict]:
    ds = pydicom.dcmread(path, force=True)
    for tag in dj.PIXEL_TAGS:
        if tag in ds:
            del ds[tag]
    with pydicom.config.disable_value_validation():
        return (str(ds.get("SOPInstanceUID", "")), ds.to_json_dict(bulk_data_threshold=2**62),
                ds.file_meta.to_json_dict(bulk_data_threshold=2**62))


def test_walker_equals_pydicom_to_json_dict():
    cache = dj.HeaderCache()
    files = _files()
    walked = problems = 0
    for f in files:
        try:
            with pydicom.config.disable_value_validation():
                sop, head, meta, dropped = dj._walk_file(f, cache)
        except dj._Fallback:
            continue  # converted by pydicom itself (checked below)
        walked += 1
        ref = _pydicom(f)
        if (sop, json.loads(head), json.loads(meta)) != ref or dropped:
            problems += 1
            print("differs:", f)
    assert problems == 0
    assert walked >= 0.8 * len(files), (walked, len(files))


def test_header_json_falls_back_to_pydicom():
    """Big endian, deflated and ISO 2022 character sets go through pydicom and still equal it."""
    for f in (data_path("transfer_syntax", "pydicom", "MR_small_bigendian.dcm"),
              data_path("transfer_syntax", "pydicom", "image_dfl.dcm"),
              data_path("mr", "dicom2nifti", "hitachi", "anatomical", "001", "001.dcm")):
        with pytest.raises(dj._Fallback):
            dj._walk_file(str(f), dj.HeaderCache())
        sop, head, meta = dj.header_json(str(f))
        assert (sop, json.loads(head), json.loads(meta)) == _pydicom(str(f))


def test_header_json_roundtrips_through_pydicom_from_json():
    """Dataset.from_json of the walker's JSON gives back the source's elements."""
    f = str(data_path("enhanced", "dcm_qa_philips_enh", "In", "1901_WIP_3DpCASL_real.dcm"))
    sop, head, meta = dj.header_json(f)
    src = pydicom.dcmread(f)
    with pydicom.config.disable_value_validation():
        back = pydicom.Dataset.from_json(json.loads(head))
    assert back.SOPInstanceUID == sop == src.SOPInstanceUID
    for e in src:
        if e.tag not in dj.PIXEL_TAGS and e.tag.element != 0:
            assert back[e.tag].value == e.value, e.tag


def test_long_headers_trailing_elements_and_truncation(tmp_path):
    """Headers longer than the first read, elements after the pixel data, and a truncated file."""
    src = data_path("transfer_syntax", "pydicom", "CT_small.dcm")
    ds = pydicom.dcmread(src)
    block = ds.private_block(0x0011, "DCMXR TEST", create=True)
    block.add_new(0x01, "OB", bytes(range(256)) * 400)  # 100 kB before the pixel data
    ds.add_new(0xFFFCFFFC, "OB", b"\0" * 64)  # Data Set Trailing Padding, after the pixel data
    path = tmp_path / "long.dcm"
    ds.save_as(path, enforce_file_format=True)
    cache = dj.HeaderCache()
    sop, head, meta, dropped = dj._walk_file(str(path), cache)  # read past the first block, no fallback
    assert (sop, json.loads(head), json.loads(meta)) == _pydicom(str(path)) and not dropped
    assert "FFFCFFFC" in json.loads(head) and f"{block.get_tag(0x01):08X}" in json.loads(head)
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(path.read_bytes()[:2000])  # ends inside the header
    with pytest.raises(dj._Fallback):
        dj._walk_file(str(cut), cache)
