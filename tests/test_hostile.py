"""Hostile input: broken and malicious files built from real ones.

Every case must end in a documented ``dcmxr.errors`` exception or a
``SkippedFileWarning`` skip, within a time bound (pytest-timeout per test and a
wall-clock check per case), with bounded memory (tracemalloc peak per case) and
without modifying any source file (SHA-256 before and after). The checks live
in :func:`dcmxr.testing.fuzz.check_source`; these tests feed it the corpus.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import dcmxr
from dcmxr.errors import InvalidDicomError, NotDicomError, SkippedFileWarning
from dcmxr.testing.fuzz import (
    DEFAULT_SEEDS,
    HostileInputFailure,
    boundaries,
    check_source,
    checksums,
    mutants,
    not_dicom_files,
    run_fuzz,
)

from _data import DATA, data_path

#: Seconds one hostile case may take (scan + open + compute + strict scan).
CASE_SECONDS = 5.0
#: Peak allocation one case may make; the seeds decode to well under 1 MB.
CASE_BYTES = 64 * 2**20

CT = ("transfer_syntax", "pydicom", "CT_small.dcm")


@pytest.fixture(scope="module", autouse=True)
def warm_up():
    """Import codecs/dask once so the per-case time bound measures dcmxr, not imports."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcmxr.open_series(str(data_path(*CT))).compute()


def _pixel_end(data: bytes) -> int:
    """Offset just past the pixel data (the end of the last fragment / the value)."""
    _, bounds = boundaries(data)
    pix = [b for b in bounds if b.tag == 0x7FE00010]
    if not pix:
        return len(data)
    if pix[0].length != 0xFFFFFFFF:
        return pix[0].value_start + pix[0].length
    delim = [b for b in bounds if b.tag == 0xFFFEE0DD and b.start > pix[0].start]
    return delim[0].start if delim else len(data)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("seed", DEFAULT_SEEDS, ids=[Path(s).stem for s in DEFAULT_SEEDS])
def test_mutants_of_real_files(seed, tmp_path):
    """Truncations at every structural boundary, wrong VRs/lengths, undelimited sequences,
    huge dimensions, bad offset tables, corrupt codestreams: all end documented."""
    src = data_path(*seed.split("/"))
    before = checksums(src)
    blob = src.read_bytes()
    pixel_end = _pixel_end(blob)
    results: dict[str, int] = {}
    n = 0
    for name, data in mutants(blob):
        case = tmp_path / f"{n:04d}.dcm"
        case.write_bytes(data)
        try:
            out = check_source(case, time_limit=CASE_SECONDS, memory_limit=CASE_BYTES)
        except HostileInputFailure as exc:
            pytest.fail(f"{seed} mutant {name}: {exc}")
        results[out.result] = results.get(out.result, 0) + 1
        if name.startswith("truncated@") and int(name.split("@")[1]) < pixel_end:
            # a file cut before the end of its pixels never yields an image
            assert out.computed == 0, f"{seed} {name}: truncated pixel data computed silently"
        if name.startswith(("huge_", "zero_rows", "negative_frames", "eot_past_eof", "bot_length_past_eof")):
            assert out.computed == 0, f"{seed} {name}: impossible header opened: {out}"
        case.unlink()
        n += 1
    assert n > 50
    # the corpus is hostile: most cases are refused, none silently
    assert results.get("skipped", 0) + results.get("error", 0) > n / 2, results
    assert checksums(src) == before


@pytest.mark.timeout(60)
def test_huge_declared_dimensions_do_not_allocate(tmp_path):
    """65535 x 65535 over a small codestream: a DecodeError, not an 8 GB allocation
    (the chunk task decodes before it allocates its output)."""
    src = data_path("transfer_syntax", "pydicom", "MR_small_jp2klossless.dcm")
    case = dict(mutants(src.read_bytes()))["huge_rows_columns"]
    path = tmp_path / "huge.dcm"
    path.write_bytes(case)
    out = check_source(path, time_limit=CASE_SECONDS, memory_limit=16 * 2**20)
    assert out.result == "error" and out.computed == 0
    assert any("DecodeError" in e for e in out.errors), out.errors


@pytest.mark.timeout(60)
def test_deeply_nested_sequences_are_refused(tmp_path):
    """3000 nested undefined-length sequences: InvalidDicomError, not a RecursionError."""
    src = data_path(*CT)
    case = dict(mutants(src.read_bytes()))["deep_nested_sequences"]
    path = tmp_path / "deep.dcm"
    path.write_bytes(case)
    with pytest.raises(InvalidDicomError, match="nested"):
        dcmxr.scan(str(path), strict=True, progress=False)
    out = check_source(path, time_limit=CASE_SECONDS, memory_limit=CASE_BYTES)
    assert out.result == "skipped"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name,data", not_dicom_files(), ids=[n for n, _ in not_dicom_files()])
def test_non_dicom_with_dcm_names(name, data, tmp_path):
    path = tmp_path / f"{name}.dcm"
    path.write_bytes(data)
    out = check_source(path, time_limit=CASE_SECONDS, memory_limit=CASE_BYTES)
    assert out.result == "skipped" and out.skipped == 1
    with pytest.raises((NotDicomError, InvalidDicomError)):
        dcmxr.scan(str(path), strict=True, progress=False)


@pytest.mark.timeout(60)
def test_symlink_loops_and_hostile_names_in_a_tree(tmp_path):
    """A scanned tree with a directory loop, a file-symlink cycle, a dangling link and
    names with traversal / control characters: the walk ends, the one real image opens once."""
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    shutil.copy(data_path(*CT), tree / "sub" / "ct.dcm")
    os.symlink(tree, tree / "sub" / "loop")  # directory loop
    os.symlink(tree / "a.dcm", tree / "b.dcm")  # a <-> b cycle
    os.symlink(tree / "b.dcm", tree / "a.dcm")
    os.symlink("/nonexistent/x.dcm", tree / "dangling.dcm")
    odd = ["..\\..\\evil.dcm", "evil\nname.dcm", "%2e%2e%2fetc%2fpasswd", "ünïcødé.dcm", "-rf.dcm", "x" * 250]
    for name in odd:
        (tree / name).write_bytes(b"not dicom at all")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = dcmxr.scan(str(tree), progress=False)
    assert list(table["path"].unique()) == [str(tree / "sub" / "ct.dcm")]
    skipped = {Path(s["path"]).name: s["reason"] for s in table.attrs["skipped"]}
    assert {"a.dcm", "b.dcm", "dangling.dcm"} <= set(skipped)
    assert "too many levels of symbolic links" in skipped["a.dcm"].lower() or "ELOOP" in skipped["a.dcm"]
    assert any(issubclass(w.category, SkippedFileWarning) for w in caught)
    out = check_source(tree, time_limit=CASE_SECONDS, memory_limit=CASE_BYTES)
    assert out.computed == 1
    assert not (tmp_path / "etc").exists()


@pytest.mark.timeout(60)
@pytest.mark.filterwarnings("ignore:.*VR CS:UserWarning")  # pydicom on the hostile ReferencedFileID
def test_dicomdir_cannot_reference_files_outside_its_folder(tmp_path):
    """A DICOMDIR whose ReferencedFileID climbs out with '..' is not followed."""
    pydicom = pytest.importorskip("pydicom")
    from pydicom.fileset import FileSet

    root = tmp_path / "media"
    root.mkdir()
    fs = FileSet()
    fs.add(pydicom.dcmread(data_path(*CT)))
    fs.write(root)
    secret = tmp_path / "secret.dcm"
    shutil.copy(data_path("transfer_syntax", "pydicom", "MR_small.dcm"), secret)
    dicomdir = pydicom.dcmread(root / "DICOMDIR")
    recs = [r for r in dicomdir.DirectoryRecordSequence if "ReferencedFileID" in r]
    good = list(recs[0].ReferencedFileID)
    recs[0].ReferencedFileID = ["..", "..", tmp_path.name, "secret.dcm"]
    dicomdir.save_as(root / "DICOMDIR", enforce_file_format=True)
    before = checksums(tmp_path)
    with pytest.warns(SkippedFileWarning, match="outside"):
        table = dcmxr.scan(str(root / "DICOMDIR"), progress=False)
    assert str(secret) not in set(table["path"]) and len(table) == 0
    assert checksums(tmp_path) == before
    assert good  # the original reference was a plain relative path


@pytest.mark.timeout(180)
def test_fuzz_session_bounded(tmp_path):
    """A short hypothesis session of random byte edits over the seeds (the long one:
    ``python -m dcmxr.testing.fuzz --minutes 10``)."""
    seeds = [DATA / s for s in DEFAULT_SEEDS if (DATA / s).exists()]
    if not seeds:
        pytest.skip(f"real test data not found at {DATA}")
    before = {s: checksums(s) for s in seeds}
    ran = run_fuzz(seeds, max_examples=80, workdir=tmp_path, time_limit=CASE_SECONDS, memory_limit=CASE_BYTES)
    assert ran >= 80
    assert {s: checksums(s) for s in seeds} == before


@pytest.mark.timeout(120)
def test_fuzz_command_line(tmp_path):
    """The documented long-fuzz command runs (here for a few seconds) and exits 0."""
    data = data_path("transfer_syntax")
    proc = subprocess.run(
        [sys.executable, "-m", "dcmxr.testing.fuzz", "--minutes", "0.05", "--batch", "15",
         "--data", str(data.parent), "--out", str(tmp_path / "fail")],
        capture_output=True, text=True, timeout=110,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "examples, no failure" in proc.stdout


def test_boundary_walker_sees_the_structure():
    """The corpus builder really finds elements, sequences and fragments (so truncations hit them)."""
    ts, bounds = boundaries(data_path("transfer_syntax", "pydicom-data", "emri_small_jpeg_2k_lossless.dcm").read_bytes())
    tags = [b.tag for b in bounds]
    assert 0x7FE00010 in tags and tags.count(0xFFFEE000) >= 11  # offset table + 10 frames
    assert 0xFFFEE0DD in tags
    assert ts == "1.2.840.10008.1.2.4.90"
    with pytest.raises(ValueError):
        boundaries(b"not dicom")
