"""Tests for dcmxr.decode: byte-range reads and frame decoding vs pydicom 3."""

from __future__ import annotations

import pickle
import struct
import warnings

import numpy as np
import pytest

from dcmxr.decode import codecs
from dcmxr.decode.codecs import decode_frame, decode_frames
from dcmxr.decode.frameref import FrameRef
from dcmxr.decode.markers import split_fragments
from dcmxr.decode.read import coalesce_ranges, read_ranges
from dcmxr.errors import DecodeError, InvalidDicomError, MissingDependencyError, UnsupportedTransferSyntaxError
from test_pixeldata import TS_DIR, TS_FILES, _ids, needs_data, refs_for

# pydicom 3.0.2 cannot decode these (MANIFEST.md); they have their own tests.
NO_PYDICOM = {"liver_deflate.dcm", "liver_rle.dcm", "JPEG-lossy.dcm"}
PYDICOM_FILES = [p for p in TS_FILES if p.name not in NO_PYDICOM]


def pydicom_frames(path) -> np.ndarray:
    from pydicom import dcmread

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = dcmread(path)
        arr = ds.pixel_array
    return arr[None] if int(ds.get("NumberOfFrames", 1) or 1) == 1 else arr


def assert_same(got: np.ndarray, want: np.ndarray) -> None:
    # pydicom keeps big endian dtypes ('>i2'); dcmxr returns native byte order
    assert got.dtype == want.dtype.newbyteorder("=")
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)


# --------------------------------------------------------------------------- parity with pydicom
@needs_data
@pytest.mark.parametrize("path", PYDICOM_FILES, ids=_ids(PYDICOM_FILES))
def test_decode_matches_pydicom(path):
    refs = refs_for(path)
    want = pydicom_frames(path)
    got = decode_frames(refs)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert_same(g, w)
        assert g.flags.writeable


@needs_data
@pytest.mark.parametrize("name", ["liver_deflate.dcm", "liver_rle.dcm"])
def test_one_bit_compressed_match_uncompressed_twin(name):
    """pydicom cannot decode these; their reference is liver.dcm (same frames, native)."""
    got = decode_frames(refs_for(TS_DIR / "pydicom-data" / name))
    want = pydicom_frames(TS_DIR / "pydicom-data" / "liver.dcm")
    for g, w in zip(got, want):
        assert_same(g, w)


@needs_data
def test_jpeg_lossy_12bit_against_second_decoder():
    """JPEG-lossy.dcm: pydicom/pylibjpeg reject it, so the reference is a
    second decoder on the same bytes: imagecodecs' libjpeg-turbo 12-bit,
    called directly (checks our frame location, joining and dtype). The
    image is also the one in JPGExtended.dcm, which pydicom decodes with
    libjpeg 9: lossy IDCT rounding differs between the libraries by 1 grey
    level, so that comparison allows |diff| <= 1."""
    imagecodecs = pytest.importorskip("imagecodecs")
    path = TS_DIR / "pydicom" / "JPEG-lossy.dcm"
    (ref,) = refs_for(path)
    (data,) = read_ranges(str(path), [(ref.offset, ref.length)])
    got = decode_frame(ref, data)
    second = imagecodecs.jpeg8_decode(b"".join(bytes(f) for f in split_fragments(data)))
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(got, second)
    twin = pydicom_frames(TS_DIR / "pydicom" / "JPGExtended.dcm")[0]
    assert np.abs(got.astype(int) - twin).max() <= 1


def _pydicom_test_file(name):
    from pydicom.data import get_testdata_file

    try:
        path = get_testdata_file(name)
    except Exception:  # noqa: BLE001 - pydicom-data missing or offline
        path = None
    if path is None:
        pytest.skip(f"pydicom test file {name} not available")
    return path


@pytest.mark.parametrize(
    "name",
    [
        "SC_ybr_full_422_uncompressed.dcm",  # native YBR_FULL_422 -> RGB
        "SC_rgb_small_odd_jpeg.dcm",
        "SC_jpeg_no_color_transform.dcm",
        "J2K_pixelrep_mismatch.dcm",  # J2K signedness correction
        "SC_rgb_expb_32bit_2frame.dcm",
        "SC_rgb_jpeg.dcm",  # implicit VR pixel element in an explicit VR file
    ],
)
def test_pydicom_bundled_edge_cases(name):
    path = _pydicom_test_file(name)
    got = decode_frames(refs_for(path))
    for g, w in zip(got, pydicom_frames(path)):
        assert_same(g, w)


def test_one_bit_native_frames_not_byte_aligned(tmp_path):
    """3 frames of 3x5 1-bit pixels: frames 1 and 2 start mid-byte."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 2, size=(3, 3, 5), dtype=np.uint8)
    bits = np.packbits(frames.ravel(), bitorder="little").tobytes()
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns, ds.NumberOfFrames = 3, 5, 3
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 1
    ds.HighBit, ds.PixelRepresentation = 0, 0
    ds.PixelData = bits + b"\x00" * (len(bits) % 2)
    ds["PixelData"].VR = "OB"
    path = tmp_path / "bits.dcm"
    ds.save_as(path, enforce_file_format=True)
    refs = refs_for(path)
    assert [r.bit_offset for r in refs] == [0, 7, 6]
    got = decode_frames(refs)
    for g, w, f in zip(got, pydicom_frames(path), frames):
        assert_same(g, w)
        np.testing.assert_array_equal(g, f)


# --------------------------------------------------------------------------- errors
@needs_data
def test_corrupt_jpeg_fragment_names_file_frame_and_codec():
    path = TS_DIR / "pydicom-data" / "emri_small_jpeg_ls_lossless.dcm"
    ref = refs_for(path)[3]
    (data,) = read_ranges(str(path), [(ref.offset, ref.length)])
    bad = bytearray(data)
    bad[8 + 2 : 8 + 40] = b"\xff\xc9" * 19  # wreck the marker segments after SOI
    with pytest.raises(DecodeError) as info:
        decode_frame(ref, bytes(bad))
    msg = str(info.value)
    assert str(path) in msg and "frame 3" in msg and "jpegls" in msg


def test_garbage_frame_raises_decode_error():
    ref = FrameRef("memory://x.dcm", 0, 20, "1.2.840.10008.1.2.4.90", 8, 8, frame_index=7)
    data = b"\xfe\xff\x00\xe0" + struct.pack("<I", 12) + b"\xff\x4f\xff\x51" + b"\x00" * 8
    with pytest.raises(DecodeError, match=r"frame 7 of memory://x\.dcm"):
        decode_frame(ref, data)


def test_unsupported_syntax_names_the_extra():
    ref = FrameRef("a.dcm", 0, 10, "1.2.840.10008.1.2.4.110", 8, 8)  # JPEG XL
    with pytest.raises(UnsupportedTransferSyntaxError, match=r"pip install 'dcmxr\[jpeg\]'"):
        decode_frame(ref, b"")


def test_missing_codec_library_names_the_extra(monkeypatch):
    monkeypatch.setattr(codecs, "_AVAILABLE", {name: False for name in codecs.CODECS})
    ref = FrameRef("a.dcm", 0, 16, "1.2.840.10008.1.2.4.80", 8, 8)
    data = b"\xfe\xff\x00\xe0" + struct.pack("<I", 8) + b"\xff\xd8" + b"\x00" * 6
    with pytest.raises(MissingDependencyError, match=r"dcmxr\[jpeg\]"):
        decode_frame(ref, data)


def test_short_native_frame_is_decode_error():
    ref = FrameRef("a.dcm", 0, 10, "1.2.840.10008.1.2.1", 4, 4, frame_index=2)
    with pytest.raises(DecodeError, match="frame 2 of a.dcm"):
        decode_frame(ref, b"\x00" * 10)


# --------------------------------------------------------------------------- reads
def test_read_ranges_local(tmp_path):
    path = tmp_path / "blob.bin"
    blob = bytes(range(256)) * 64
    path.write_bytes(blob)
    ranges = [(100, 10), (0, 4), (105, 20), (10000, 50), (16000, 384)]
    got = read_ranges(str(path), ranges)
    assert [bytes(g) for g in got] == [blob[o : o + n] for o, n in ranges]
    assert np.frombuffer(got[0], np.uint8).flags.writeable
    with pytest.raises(InvalidDicomError, match="truncated"):
        read_ranges(str(path), [(len(blob) - 5, 10)])


def test_read_ranges_memory_fsspec():
    fsspec = pytest.importorskip("fsspec")
    blob = bytes(range(256)) * 8
    fs = fsspec.filesystem("memory")
    with fs.open("/dcmxr-test/blob.bin", "wb") as fh:
        fh.write(blob)
    try:
        ranges = [(7, 3), (1000, 24), (0, 2)]
        got = read_ranges("memory://dcmxr-test/blob.bin", ranges)
        assert [bytes(g) for g in got] == [blob[o : o + n] for o, n in ranges]
    finally:
        fs.rm("/dcmxr-test", recursive=True)


def test_coalesce_ranges():
    blocks = coalesce_ranges([(100, 10), (0, 10), (12, 8), (500, 1), (111, 4)], max_gap=4)
    assert blocks == [(0, 20, [1, 2]), (100, 115, [0, 4]), (500, 501, [3])]
    assert len(coalesce_ranges([(0, 10), (20, 10)], max_gap=0)) == 2
    with pytest.raises(ValueError):
        coalesce_ranges([(-1, 3)], 0)


def test_read_ranges_coalesces_into_few_requests(tmp_path, monkeypatch):
    import dcmxr.decode.read as readmod

    path = tmp_path / "blob.bin"
    path.write_bytes(b"x" * 100_000)
    calls = []
    original = readmod._pread_into

    def spy(fd, buf, offset):
        calls.append((offset, len(buf)))
        return original(fd, buf, offset)

    monkeypatch.setattr(readmod, "_pread_into", spy)
    read_ranges(str(path), [(0, 100), (200, 100), (90_000, 10)])
    assert calls == [(0, 300), (90_000, 10)]


@needs_data
def test_decode_frames_threads_and_pickle():
    path = TS_DIR / "pydicom-data" / "emri_small_jpeg_2k_lossless.dcm"
    refs = refs_for(path)
    assert pickle.loads(pickle.dumps(refs)) == refs
    one = decode_frames(refs)
    two = decode_frames(refs[::-1], threads=2)[::-1]
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


@needs_data
def test_decode_frames_from_memory_url():
    fsspec = pytest.importorskip("fsspec")
    src = TS_DIR / "pydicom-data" / "emri_small_RLE.dcm"
    fs = fsspec.filesystem("memory")
    fs.pipe("/dcmxr-test/emri.dcm", src.read_bytes())
    try:
        refs = [FrameRef(**{**{k: getattr(r, k) for k in r.__dataclass_fields__}, "url": "memory://dcmxr-test/emri.dcm"})
                for r in refs_for(src)]
        for g, w in zip(decode_frames(refs), pydicom_frames(src)):
            assert_same(g, w)
    finally:
        fs.rm("/dcmxr-test", recursive=True)



# --------------------------------------------------------------------------- decoding into the output slot
INTO_FILES = [p for p in PYDICOM_FILES if codecs.can_decode_into(refs_for(p)[0])] if TS_DIR.exists() else []


def _stored_dtype(ref: FrameRef) -> np.dtype:
    return np.dtype(f"{'i' if ref.pixel_representation else 'u'}{max(ref.bits_allocated // 8, 1)}")


@needs_data
def test_decode_into_covers_rle_and_jpeg_lossless():
    """The slot path is taken for RLE and JPEG lossless files, signed and unsigned, 8 and 16 bits."""
    refs = [refs_for(p)[0] for p in INTO_FILES]
    assert {r.transfer_syntax for r in refs} >= {"1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.70"}
    assert {r.pixel_representation for r in refs} == {0, 1}
    assert {r.bits_allocated for r in refs} == {8, 16}
    assert any(r.bits_stored < r.bits_allocated for r in refs)


@needs_data
@pytest.mark.parametrize("path", INTO_FILES, ids=_ids(INTO_FILES))
def test_decode_into_matches_pydicom(path):
    """decode_frame_into writes exactly pydicom's frame into a dirty slot (no stale bits left)."""
    refs = refs_for(path)
    want = pydicom_frames(path)
    for ref, w in zip(refs, want):
        (data,) = read_ranges(ref.url, [(ref.offset, ref.length)])
        slot = np.full((ref.rows, ref.columns * _stored_dtype(ref).itemsize), 0xFF, np.uint8).view(_stored_dtype(ref))  # every bit set
        assert codecs.decode_frame_into(ref, data, slot)
        assert_same(slot, w)


@needs_data
@pytest.mark.parametrize("threads", [1, 2])
def test_load_block_slot_path_with_intercept_matches_pydicom(threads):
    """load_block (per-frame tasks, shared pool) == pydicom + intercept, for every into-file."""
    from dcmxr.decode.plan import BlockSpec, load_block

    for path in INTO_FILES:
        refs = tuple(refs_for(path))
        want = pydicom_frames(path)
        r = refs[0]
        # stored values + a whole-number intercept in a signed output one size up when needed
        out_dtype = np.dtype(f"i{max(r.bits_allocated // 8, 1) * (1 if r.bits_stored < r.bits_allocated else 2)}")
        spec = BlockSpec(shape=(len(refs),), frame_shape=(r.rows, r.columns), dtype=out_dtype.str,
                         slopes=(1.0,) * len(refs), intercepts=(-7.0,) * len(refs), threads=threads)
        got = load_block(refs, spec)
        np.testing.assert_array_equal(got, want.astype(out_dtype) - 7, err_msg=path.name)
        out = np.full(got.shape, 99, dtype=out_dtype)
        assert load_block(refs, spec, out=out) is out
        np.testing.assert_array_equal(out, got)
        # stored values in the stored dtype: every frame takes the slot path
        raw = BlockSpec(shape=(len(refs),), frame_shape=(r.rows, r.columns), dtype=_stored_dtype(r).str,
                        threads=threads)
        assert_same(load_block(refs, raw), want)


@needs_data
def test_decode_into_refuses_truncated_rle_and_general_path_reports_it():
    path = next(p for p in INTO_FILES if refs_for(p)[0].transfer_syntax == "1.2.840.10008.1.2.5")
    ref = refs_for(path)[0]
    (data,) = read_ranges(ref.url, [(ref.offset, ref.length)])
    cut = bytearray(data[: len(data) // 2])
    struct.pack_into("<I", cut, 4, len(cut) - 8)  # keep the item header consistent
    slot = np.zeros((ref.rows, ref.columns), _stored_dtype(ref))
    assert not codecs.decode_frame_into(ref, bytes(cut), slot)
    with pytest.raises(DecodeError, match="frame 0"):
        decode_frame(ref, bytes(cut))


def test_decoder_pool_is_shared_and_reused():
    pool = codecs.decoder_pool(2)
    assert codecs.decoder_pool(2) is pool and codecs.decoder_pool(1) is pool
    assert pool._max_workers >= 2


def test_map_in_threads_keeps_order_uses_n_threads_and_waits_before_raising():
    import threading
    import time

    seen = set()

    def f(x):
        seen.add(threading.get_ident())
        time.sleep(0.002)
        return -x

    assert codecs.map_in_threads(f, list(range(20)), 3) == [-x for x in range(20)]
    assert len(seen) == 3 and threading.get_ident() in seen  # the caller takes a share
    assert codecs.map_in_threads(f, [1], 4) == [-1]
    done = []

    def g(x):
        if x == 1:
            raise ValueError("boom 1")
        time.sleep(0.01)
        done.append(x)

    with pytest.raises(ValueError, match="boom 1"):
        codecs.map_in_threads(g, [0, 1, 2, 3, 4, 5], 2)
    assert len(done) < 5  # no new item after the error ...
    n = len(done)
    time.sleep(0.05)
    assert len(done) == n  # ... and nothing still running once it surfaced
