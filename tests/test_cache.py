"""The zarr decoded-chunk cache: ``open_series(..., cache=...)`` (dcmxr.stores.cache).

Real DICOM from the shared corpus is copied into pytest's tmp dir (never into the
repository) so tests can touch, rewrite and remove source files.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("zarr")

import dcmxr  # noqa: E402
import dcmxr.decode.read as read_mod  # noqa: E402
from dcmxr.errors import CacheError, CacheWarning  # noqa: E402
from dcmxr.stores.cache import cache_status  # noqa: E402

from _data import data_path  # noqa: E402

CT = ("ct", "dcmqi", "ct-3slice")  # 3 x 512 x 512 CT, Implicit VR LE
MOSAIC = ("mr", "dcm_qa", "In", "Orientation", "ax", "axasc35")  # 2 Siemens mosaics -> (t=2, z=35, 64, 64)
JPEGLS = ("transfer_syntax", "dicom2nifti", "compressed_jpegls", "001")  # 4 x 256 x 256 JPEG-LS


def copy_series(parts: tuple[str, ...], tmp_path: Path) -> Path:
    dst = tmp_path / "src"
    shutil.copytree(data_path(*parts), dst)
    return dst


class ReadCounter:
    """Counts pixel-byte reads by wrapping dcmxr.decode.read.read_ranges / read_inflated."""

    def __init__(self, monkeypatch):
        self.calls: list[tuple[str, list]] = []
        orig_ranges, orig_inflated = read_mod.read_ranges, read_mod.read_inflated

        def ranges(url, rngs, *a, **k):
            self.calls.append((os.fspath(url), list(rngs)))
            return orig_ranges(url, rngs, *a, **k)

        def inflated(url, deflate_from, rngs, *a, **k):
            self.calls.append((os.fspath(url), list(rngs)))
            return orig_inflated(url, deflate_from, rngs, *a, **k)

        monkeypatch.setattr(read_mod, "read_ranges", ranges)
        monkeypatch.setattr(read_mod, "read_inflated", inflated)

    @property
    def n_ranges(self) -> int:
        return sum(len(r) for _, r in self.calls)

    def reset(self) -> None:
        self.calls.clear()


@pytest.fixture
def counter(monkeypatch):
    return ReadCounter(monkeypatch)


def _open(src, cache=None, **kw):
    kw.setdefault("chunks", 1)
    return dcmxr.open_series(str(src), cache=None if cache is None else str(cache), **kw)


def _variant_dir(cache: Path) -> Path:
    (status,) = cache_status(cache)
    return cache / status["variant"]


# --------------------------------------------------------------------------- values and reuse


@pytest.mark.parametrize("parts,chunks", [(CT, 1), (MOSAIC, {"t": 1, "z": 5}), (JPEGLS, 3)],
                         ids=["ct", "mosaic", "jpegls"])
def test_cached_equals_uncached(parts, chunks, tmp_path):
    """Same dims/coords/attrs/chunks/dtype and identical values, on the first (write) and second (read) open."""
    src = copy_series(parts, tmp_path)
    ref = _open(src, chunks=chunks)
    for _ in range(2):
        da = _open(src, tmp_path / "c.zarr", chunks=chunks)
        assert da.dims == ref.dims and da.chunks == ref.chunks and da.dtype == ref.dtype
        assert da.attrs == ref.attrs
        for name, c in ref.coords.items():
            assert np.array_equal(da[name].values, c.values) and da[name].attrs == c.attrs
        np.testing.assert_array_equal(da.values, ref.values)
    (status,) = cache_status(tmp_path / "c.zarr")
    assert status["complete"] == status["blocks"] == int(np.prod(ref.data.numblocks))


def test_second_open_reads_no_pixel_bytes(tmp_path, counter):
    src = copy_series(MOSAIC, tmp_path)
    cache = tmp_path / "c.zarr"
    first = _open(src, cache, chunks={"t": 1, "z": 5}).values
    assert counter.n_ranges > 0
    counter.reset()
    second = _open(src, cache, chunks={"t": 1, "z": 5})
    np.testing.assert_array_equal(second.values, first)
    assert second.isel(t=1, z=7).mean().compute() == first[1, 7].mean()
    assert counter.calls == []


def test_partial_compute_fills_only_its_blocks(tmp_path, counter):
    src = copy_series(CT, tmp_path)
    cache = tmp_path / "c.zarr"
    _open(src, cache).isel(z=1).values
    assert cache_status(cache)[0]["complete"] == 1
    counter.reset()
    _open(src, cache).isel(z=1).values
    assert counter.calls == []
    _open(src, cache).values
    assert counter.n_ranges == 2  # only the two blocks not cached yet
    assert cache_status(cache)[0]["complete"] == 3


def test_other_process_reads_from_cache(tmp_path):
    """A second process computes from the cache with DICOM pixel reads disabled."""
    src = copy_series(CT, tmp_path)
    cache = tmp_path / "c.zarr"
    ref = _open(src, cache).values
    out = tmp_path / "out.npy"
    script = textwrap.dedent(f"""
        import numpy as np, dcmxr, dcmxr.decode.read as r
        def boom(*a, **k):
            raise AssertionError("pixel bytes read despite a complete cache")
        r.read_ranges = r.read_inflated = boom
        da = dcmxr.open_series({str(src)!r}, chunks=1, cache={str(cache)!r})
        np.save({str(out)!r}, da.values)
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    np.testing.assert_array_equal(np.load(out), ref)


def test_raw_and_rescaled_variants_coexist(tmp_path, counter):
    src = copy_series(CT, tmp_path)
    cache = tmp_path / "c.zarr"
    hu = _open(src, cache).values
    stored = _open(src, cache, raw=True).values
    assert not np.array_equal(hu, stored)  # intercept -1024
    assert len(cache_status(cache)) == 2
    counter.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        np.testing.assert_array_equal(_open(src, cache).values, hu)
        np.testing.assert_array_equal(_open(src, cache, raw=True).values, stored)
    assert counter.calls == []


def test_execution_settings_share_one_variant(tmp_path, counter):
    """threads= (and storage_options) decide how blocks are computed, not their values: same cache."""
    src = copy_series(CT, tmp_path)
    cache = tmp_path / "c.zarr"
    ref = _open(src, cache).values
    counter.reset()
    np.testing.assert_array_equal(_open(src, cache, threads=3).values, ref)
    assert counter.calls == [] and len(cache_status(cache)) == 1


def test_fingerprint_in_group_attrs(tmp_path):
    src = copy_series(CT, tmp_path)
    cache = tmp_path / "c.zarr"
    da = _open(src, cache)
    meta = json.loads((_variant_dir(cache) / "zarr.json").read_text())["attributes"]["dcmxr_cache"]
    assert meta["format"] == 1 and meta["dcmxr_version"] == dcmxr.__version__
    assert meta["source"]["series_instance_uids"] == [da.attrs["series_instance_uid"]]
    assert len(meta["source"]["sop_instance_uids"]) == 3
    files = {p: (s, m) for p, s, m in meta["source"]["files"]}
    for f in src.iterdir():
        st = f.stat()
        assert files[str(f)] == (st.st_size, st.st_mtime)
    assert meta["options"]["raw"] is False and meta["options"]["chunks"] == [[1, 1, 1], [512], [512]]
    assert da.encoding["dcmxr_cache"]["variant"] == _variant_dir(cache).name


# --------------------------------------------------------------------------- invalidation


def test_touched_source_invalidates(tmp_path, counter):
    src = copy_series(CT, tmp_path)
    cache = tmp_path / "c.zarr"
    ref = _open(src, cache).values
    old = cache_status(cache)[0]["variant"]
    victim = sorted(src.iterdir())[1]
    st = victim.stat()
    os.utime(victim, (st.st_atime, st.st_mtime + 10))
    counter.reset()
    with pytest.warns(CacheWarning, match=rf"stale.*{victim.name}.*mtime"):
        da = _open(src, cache)
    np.testing.assert_array_equal(da.values, ref)
    assert counter.n_ranges == 3  # rebuilt from DICOM
    (status,) = cache_status(cache)  # the stale copy is gone
    assert status["variant"] != old and status["complete"] == 3


def test_rewritten_source_gives_new_values(tmp_path):
    """A file rewritten with other pixel values: the cache must not serve the old ones."""
    pydicom = pytest.importorskip("pydicom")
    src = copy_series(CT, tmp_path)
    cache = tmp_path / "c.zarr"
    before = _open(src, cache).values
    victim = sorted(src.iterdir())[0]
    ds = pydicom.dcmread(victim)
    arr = ds.pixel_array.copy()
    arr[:10, :10] = 1234
    ds.PixelData = arr.astype(arr.dtype).tobytes()
    ds.save_as(victim)
    with pytest.warns(CacheWarning, match="stale"):
        after = _open(src, cache).values
    np.testing.assert_array_equal(after, _open(src).values)
    assert not np.array_equal(after, before)


def test_removed_and_added_files_invalidate(tmp_path):
    src = copy_series(CT, tmp_path)
    cache = tmp_path / "c.zarr"
    _open(src, cache).values
    removed = sorted(src.iterdir())[-1]
    parked = tmp_path / removed.name
    shutil.move(removed, parked)
    with pytest.warns(CacheWarning, match=r"1 file\(s\) removed"):
        da = _open(src, cache)
    assert da.sizes["z"] == 2
    np.testing.assert_array_equal(da.values, _open(src).values)
    shutil.move(parked, removed)
    with pytest.warns(CacheWarning, match=r"1 file\(s\) added"):
        da = _open(src, cache)
    np.testing.assert_array_equal(da.values, _open(src).values)
    assert len(cache_status(cache)) == 1


def test_source_changed_after_open_is_not_cached(tmp_path):
    src = copy_series(CT, tmp_path)
    cache = tmp_path / "c.zarr"
    da = _open(src, cache)
    victim = sorted(src.iterdir())[0]
    st = victim.stat()
    os.utime(victim, (st.st_atime, st.st_mtime + 10))
    with pytest.warns(CacheWarning, match="not cached"):
        da.values
    assert sum(s["complete"] for s in cache_status(cache)) == 2  # the two untouched slices only


# --------------------------------------------------------------------------- interrupted / corrupt writes


def _corrupt_block(cache: Path, z: int, *, marker: bool) -> None:
    """Overwrite block ``z`` of the data with garbage; keep or remove its marker."""
    import zarr

    vdir = _variant_dir(cache)
    data = zarr.open_array(vdir / "data", mode="r+")
    done = zarr.open_array(vdir / "done", mode="r+")
    data[z] = np.full(data.shape[1:], 7, dtype=data.dtype)
    if not marker:
        done[z, 0, 0] = -1


def test_chunk_without_marker_is_recomputed(tmp_path, counter):
    """Interrupted write: chunk bytes are there, the completion marker is not."""
    src = copy_series(CT, tmp_path)
    cache = tmp_path / "c.zarr"
    ref = _open(src, cache).values
    _corrupt_block(cache, 1, marker=False)
    assert cache_status(cache)[0]["complete"] == 2
    counter.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)  # a missing marker is a plain miss
        np.testing.assert_array_equal(_open(src, cache).values, ref)
    assert counter.n_ranges == 1  # only block 1 went back to DICOM
    assert cache_status(cache)[0]["complete"] == 3


def test_chunk_with_wrong_checksum_is_recomputed(tmp_path, counter):
    """Marker present but the chunk bytes differ from what it certifies."""
    src = copy_series(CT, tmp_path)
    cache = tmp_path / "c.zarr"
    ref = _open(src, cache).values
    _corrupt_block(cache, 2, marker=True)
    counter.reset()
    with pytest.warns(CacheWarning, match=r"block \(2, 0, 0\).*checksum"):
        np.testing.assert_array_equal(_open(src, cache).values, ref)
    assert counter.n_ranges == 1
    counter.reset()
    np.testing.assert_array_equal(_open(src, cache).values, ref)  # repaired
    assert counter.calls == []


def test_torn_chunk_file_is_recomputed(tmp_path, counter):
    """A chunk object cut short (e.g. a crash on a non-atomic store) is not trusted."""
    src = copy_series(CT, tmp_path)
    cache = tmp_path / "c.zarr"
    ref = _open(src, cache).values
    chunk = _variant_dir(cache) / "data" / "c" / "0" / "0" / "0"
    assert chunk.is_file()
    chunk.write_bytes(chunk.read_bytes()[: chunk.stat().st_size // 2])
    counter.reset()
    with pytest.warns(CacheWarning, match=r"block \(0, 0, 0\).*not trusted"):
        np.testing.assert_array_equal(_open(src, cache).values, ref)
    assert counter.n_ranges == 1


def test_torn_marker_is_recomputed(tmp_path, counter):
    src = copy_series(CT, tmp_path)
    cache = tmp_path / "c.zarr"
    ref = _open(src, cache).values
    marker = _variant_dir(cache) / "done" / "c" / "1" / "0" / "0"
    assert marker.is_file()
    marker.write_bytes(b"\x00")
    counter.reset()
    with pytest.warns(CacheWarning, match=r"marker of block \(1, 0, 0\)"):
        np.testing.assert_array_equal(_open(src, cache).values, ref)
    assert counter.n_ranges == 1


# --------------------------------------------------------------------------- concurrency


_WORKER = """
import sys, numpy as np, dcmxr
src, cache, out = sys.argv[1:4]
da = dcmxr.open_series(src, chunks={"t": 1, "z": 5}, cache=cache)
np.save(out, da.compute(scheduler="threads").values)
"""


def _run_many(src: Path, cache: Path, outs: list[Path]) -> None:
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, str(src), str(cache), str(o)],
                              stderr=subprocess.PIPE) for o in outs]
    for p in procs:
        _, err = p.communicate(timeout=180)
        assert p.returncode == 0, err.decode()


def test_concurrent_processes_fill_and_read(tmp_path):
    """Two processes fill one empty cache at once, then two read it at once: all identical."""
    src = copy_series(MOSAIC, tmp_path)
    cache = tmp_path / "c.zarr"
    ref = _open(src, chunks={"t": 1, "z": 5}).values
    writers = [tmp_path / f"w{i}.npy" for i in range(2)]
    _run_many(src, cache, writers)
    (status,) = cache_status(cache)
    assert status["complete"] == status["blocks"] == 14
    readers = [tmp_path / f"r{i}.npy" for i in range(2)]
    _run_many(src, cache, readers)
    for o in writers + readers:
        np.testing.assert_array_equal(np.load(o), ref)


# --------------------------------------------------------------------------- errors


def test_unwritable_store_raises_cache_error(tmp_path):
    src = copy_series(CT, tmp_path)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    bad = blocker / "c.zarr"
    with pytest.raises(CacheError, match=str(bad)) as info:
        _open(src, bad)
    assert isinstance(info.value, OSError)
    with pytest.raises(CacheError, match="not a directory"):
        _open(src, blocker)


def test_corrupt_or_foreign_store_raises_cache_error(tmp_path):
    import zarr

    src = copy_series(CT, tmp_path)
    corrupt = tmp_path / "corrupt.zarr"
    corrupt.mkdir()
    (corrupt / "zarr.json").write_text("{ this is not json")
    with pytest.raises(CacheError, match="corrupt"):
        _open(src, corrupt)

    foreign = tmp_path / "foreign.zarr"
    g = zarr.open_group(foreign, mode="w")
    g.create_array("something", shape=(2,), dtype="i1")
    with pytest.raises(CacheError, match="not a dcmxr cache"):
        _open(src, foreign)

    arr = tmp_path / "array.zarr"
    zarr.create_array(arr, shape=(2,), dtype="i1")
    with pytest.raises(CacheError, match="array"):
        _open(src, arr)

    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(CacheError, match="not a zarr"):
        _open(src, other)
    assert (other / "notes.txt").read_text() == "mine"


def test_corrupt_variant_metadata_raises(tmp_path):
    src = copy_series(CT, tmp_path)
    cache = tmp_path / "c.zarr"
    _open(src, cache).values
    (_variant_dir(cache) / "data" / "zarr.json").write_text("garbage")
    with pytest.raises(CacheError, match=str(cache)):
        _open(src, cache)


def test_cached_graph_pickles_small(tmp_path):
    import pickle

    src = copy_series(CT, tmp_path)
    da = _open(src, tmp_path / "c.zarr")
    blob = pickle.dumps(dict(da.data.__dask_graph__()))
    assert len(blob) < 4096 * da.sizes["z"]
    assert b"zarr.core" not in blob  # no open zarr objects: workers open the store themselves


def test_corrupt_variant_group_raises(tmp_path):
    src = copy_series(CT, tmp_path)
    cache = tmp_path / "c.zarr"
    _open(src, cache).values
    (_variant_dir(cache) / "zarr.json").write_text("garbage")
    with pytest.raises(CacheError, match="corrupt"):
        _open(src, cache)


# --------------------------------------------------------------------------- protocol units


def _fp(files, series=("1.2.3",), sops=("1.2.3.1",), version="1.0"):
    return {"format": 1, "dcmxr_version": version,
            "source": {"series_instance_uids": list(series), "sop_instance_uids": list(sops),
                       "files": [list(f) for f in files]},
            "options": {}}


def test_stale_rules():
    from dcmxr.stores.cache import _stale_reason

    base = _fp([("/a", 10, 1.0), ("/b", 10, 1.0)])
    assert _stale_reason(base, base) is None
    assert _stale_reason(base, _fp([("/a", 10, 1.0), ("/b", 10, 1.0)], series=("9.9",))) is None  # other series
    assert _stale_reason(base, _fp([("/c", 10, 1.0)])) is None  # another stack: disjoint files
    assert "mtime 1.0 -> 2.0" in _stale_reason(base, _fp([("/a", 10, 2.0), ("/b", 10, 1.0)]))
    assert "size 10 -> 11" in _stale_reason(base, _fp([("/a", 11, 1.0), ("/b", 10, 1.0)]))
    assert "1 file(s) added" in _stale_reason(base, _fp([("/a", 10, 1.0), ("/b", 10, 1.0), ("/c", 1, 1.0)]))
    assert "1 file(s) removed" in _stale_reason(base, _fp([("/a", 10, 1.0)]))
    assert "dcmxr 1.0" in _stale_reason(base, _fp([("/a", 10, 1.0), ("/b", 10, 1.0)], version="2.0"))


def test_zarr_chunks_align_with_dask_blocks():
    from dcmxr.stores.cache import _zarr_chunks

    assert _zarr_chunks(((64, 64, 8), (512,), (512,))) == (64, 512, 512)
    assert _zarr_chunks(((1, 1), (5, 5, 5, 5, 5, 5, 5), (64,))) == (1, 5, 64)
    assert _zarr_chunks(((4, 6, 2),)) == (2,)  # irregular: every block boundary is a chunk boundary


def test_cached_rejects_transformed_arrays(tmp_path):
    from dcmxr.stores.cache import cached

    src = copy_series(CT, tmp_path)
    da = _open(src)
    with pytest.raises(TypeError, match="before transforming"):
        cached(da + 1, tmp_path / "c.zarr", grid=None)
