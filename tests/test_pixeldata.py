"""Tests for dcmxr.catalog.pixeldata: locating frames inside Pixel Data."""

from __future__ import annotations

import os
import struct
import warnings
from pathlib import Path

import pytest

from dcmxr.catalog.pixeldata import deflated_reader, locate_frames, read_pixel_element_header
from dcmxr.decode.frameref import FrameRef
from dcmxr.decode.markers import split_fragments
from dcmxr.errors import InvalidDicomError

DATA = Path(os.environ.get("DCMXR_TEST_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
TS_DIR = DATA / "transfer_syntax"
TS_FILES = sorted(TS_DIR.rglob("*.dcm")) if TS_DIR.is_dir() else []
needs_data = pytest.mark.skipif(not TS_FILES, reason=f"shared test data not found at {TS_DIR} (set DCMXR_TEST_DATA)")

DEFLATED = "1.2.840.10008.1.2.1.99"
NATIVE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", DEFLATED}


def _ids(paths):
    return [str(p.relative_to(DATA)) if DATA in p.parents else p.name for p in paths]


# --------------------------------------------------------------------------- helpers (also used by test_decode)
def file_reader(path):
    """``read(offset, n)`` over a local file, counting calls and bytes."""

    def read(offset: int, n: int) -> bytes:
        read.calls.append((offset, n))
        with open(path, "rb") as fh:
            fh.seek(offset)
            return fh.read(n)

    read.calls = []
    return read


def bytes_reader(buf: bytes):
    def read(offset: int, n: int) -> bytes:
        read.calls.append((offset, n))
        return buf[offset : offset + n]

    read.calls = []
    return read


def deflate_start(path) -> int:
    """File offset right after the file meta group (where deflate starts)."""
    with open(path, "rb") as fh:
        head = fh.read(144)
    assert head[128:132] == b"DICM" and head[132:136] == b"\x02\x00\x00\x00"
    (group_length,) = struct.unpack("<I", head[140:144])
    return 144 + group_length


def refs_for(path) -> list[FrameRef]:
    """FrameRefs for every frame of ``path`` (pydicom finds the pixel element
    offset for now; the catalog will do this later)."""
    from pydicom import dcmread

    path = str(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with open(path, "rb") as fh:
            ds = dcmread(fh, stop_before_pixels=True)
            element_offset = fh.tell()
    syntax = str(ds.file_meta.TransferSyntaxUID)
    deflate_from = None
    if syntax == DEFLATED:
        deflate_from = deflate_start(path)
        read = deflated_reader(path, deflate_from)
        size = read.size()
        # pydicom's position is in the inflated stream: find the last pixel tag.
        element_offset = read(0, size).rfind(b"\xe0\x7f\x10\x00")
    else:
        read = file_reader(path)
        size = os.path.getsize(path)
    locs = locate_frames(
        read,
        element_offset,
        syntax,
        int(ds.get("NumberOfFrames", 1) or 1),
        ds.Rows,
        ds.Columns,
        ds.get("SamplesPerPixel", 1),
        ds.BitsAllocated,
        file_size=size,
        extended_offsets=ds.get("ExtendedOffsetTable"),
        extended_lengths=ds.get("ExtendedOffsetTableLengths"),
        photometric_interpretation=ds.get("PhotometricInterpretation"),
    )
    header = read_pixel_element_header(read, element_offset, syntax)
    return [
        FrameRef(
            url=path,
            offset=off,
            length=n,
            transfer_syntax=syntax,
            rows=ds.Rows,
            columns=ds.Columns,
            samples_per_pixel=ds.get("SamplesPerPixel", 1),
            bits_allocated=ds.BitsAllocated,
            bits_stored=ds.get("BitsStored", ds.BitsAllocated),
            pixel_representation=ds.get("PixelRepresentation", 0),
            photometric_interpretation=ds.get("PhotometricInterpretation", "MONOCHROME2"),
            planar_configuration=ds.get("PlanarConfiguration", 0) or 0,
            frame_index=i,
            bit_offset=bit,
            deflate_from=deflate_from,
            float_pixels=header.float_pixels,
        )
        for i, (off, n, bit) in enumerate(locs)
    ]


# --------------------------------------------------------------------------- real files
@needs_data
@pytest.mark.parametrize("path", TS_FILES, ids=_ids(TS_FILES))
def test_frames_match_pydicom_fragments(path):
    """Every frame's range holds exactly pydicom's frame bytes."""
    from pydicom import dcmread
    from pydicom.encaps import generate_frames

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = dcmread(path)
    refs = refs_for(path)
    nframes = int(ds.get("NumberOfFrames", 1) or 1)
    assert len(refs) == nframes
    if str(ds.file_meta.TransferSyntaxUID) not in NATIVE:
        expected = list(generate_frames(ds.PixelData, number_of_frames=nframes))
        with open(path, "rb") as fh:
            blob = fh.read()
        for ref, want in zip(refs, expected):
            got = b"".join(bytes(f) for f in split_fragments(blob[ref.offset : ref.offset + ref.length]))
            assert got == want
    else:
        pixels = ds.PixelData
        frame_bits = ds.Rows * ds.Columns * ds.get("SamplesPerPixel", 1) * ds.BitsAllocated
        start = refs[0].offset
        for i, ref in enumerate(refs):
            bit = i * frame_bits
            assert ref.offset - start == bit // 8 and ref.bit_offset == bit % 8
            assert ref.offset - start + ref.length <= len(pixels)


@needs_data
def test_encapsulated_reads_are_small():
    """Locating frames reads only headers and the offset table, never fragment bodies."""
    path = TS_DIR / "pydicom-data" / "emri_small_jpeg_2k_lossless.dcm"
    from pydicom import dcmread

    with open(path, "rb") as fh:
        ds = dcmread(fh, stop_before_pixels=True)
        offset = fh.tell()
    read = file_reader(path)
    locate_frames(read, offset, ds.file_meta.TransferSyntaxUID, 10, 64, 64, 1, 16, file_size=os.path.getsize(path))
    assert len(read.calls) <= 14
    assert max(n for _, n in read.calls) <= 4 * 10  # the Basic Offset Table at most


@needs_data
def test_deflated_reader_inflates_lazily():
    path = TS_DIR / "pydicom" / "image_dfl.dcm"
    read = deflated_reader(str(path), deflate_start(path))
    head = read(0, 8)
    assert len(head) == 8 and head[:2] == b"\x08\x00"  # the data set starts with group 0008
    assert read.size() > 512 * 512


# --------------------------------------------------------------------------- synthetic encapsulated data
def _item(value: bytes) -> bytes:
    if len(value) % 2:
        value += b"\x00"
    return b"\xfe\xff\x00\xe0" + struct.pack("<I", len(value)) + value


def _encapsulated(frames: list[list[bytes]], bot: bool) -> tuple[bytes, int]:
    """An explicit VR LE pixel element with ``frames`` (lists of fragment values)."""
    items = [b"".join(_item(f) for f in fragments) for fragments in frames]
    offsets, pos = [], 0
    for it in items:
        offsets.append(pos)
        pos += len(it)
    table = struct.pack(f"<{len(offsets)}I", *offsets) if bot else b""
    element = b"\xe0\x7f\x10\x00OB\x00\x00\xff\xff\xff\xff" + _item(table) + b"".join(items)
    element += b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    prefix = b"\x00" * 10
    return prefix + element, len(prefix)


JPEG_FRAMES = [
    [b"\xff\xd8" + b"a" * 30, b"b" * 20],
    [b"\xff\xd8" + b"c" * 11],
    [b"\xff\xd8" + b"d" * 7, b"e" * 5, b"f" * 9],
]


@pytest.mark.parametrize("bot", [True, False])
def test_multi_fragment_frames(bot):
    buf, off = _encapsulated(JPEG_FRAMES, bot)
    read = bytes_reader(buf)
    locs = locate_frames(read, off, "1.2.840.10008.1.2.4.50", 3, 8, 8, 1, 8, file_size=len(buf))
    for (o, n, bit), fragments in zip(locs, JPEG_FRAMES):
        assert bit == 0
        got = [bytes(f).rstrip(b"\x00") for f in split_fragments(buf[o : o + n])]
        assert got == fragments
    # only item headers (+8 marker bytes when scanning) and the table were read
    assert max(n for _, n in read.calls) <= 16


def test_extended_offset_table():
    frames = [[b"\xff\xd8" + b"x" * 10], [b"\xff\xd8" + b"y" * 20]]
    buf, off = _encapsulated(frames, bot=False)
    first = off + 12 + 8
    offsets = [0, 8 + 12]
    lengths = [12, 22]
    read = bytes_reader(buf)
    locs = locate_frames(
        read, off, "1.2.840.10008.1.2.4.50", 2, 4, 4, 1, 8, extended_offsets=struct.pack("<2Q", *offsets),
        extended_lengths=lengths,
    )
    assert [(o - first, n) for o, n, _ in locs] == [(0, 20), (20, 30)]
    assert len(read.calls) <= 3  # element header, its 4-byte length, the BOT item header


def test_bad_basic_offset_table_falls_back_to_scanning():
    buf, off = _encapsulated([[b"\xff\xd8" + b"a" * 4], [b"\xff\xd8" + b"b" * 6]], bot=False)
    # replace the empty BOT by a wrong one (not increasing): rebuild by hand
    element = bytearray(buf[off:])
    element[12:20] = b"\xfe\xff\x00\xe0\x00\x00\x00\x00"
    locs = locate_frames(bytes_reader(bytes(element)), 0, "1.2.840.10008.1.2.4.50", 2, 2, 2, 1, 8)
    assert len(locs) == 2


def test_too_few_fragments_is_invalid():
    buf, off = _encapsulated([[b"\xff\xd8abcd"]], bot=False)
    with pytest.raises(InvalidDicomError, match="fragments"):
        locate_frames(bytes_reader(buf), off, "1.2.840.10008.1.2.4.50", 3, 2, 2, 1, 8)


def test_truncated_encapsulated_file():
    buf, off = _encapsulated(JPEG_FRAMES, bot=False)
    cut = buf[: len(buf) - 30]
    with pytest.raises(InvalidDicomError, match="truncated"):
        locate_frames(bytes_reader(cut), off, "1.2.840.10008.1.2.4.50", 3, 8, 8, 1, 8, file_size=len(cut))


# --------------------------------------------------------------------------- native sizes and sanity checks
def _native(value_length: int, payload: int | None = None) -> bytes:
    payload = value_length if payload is None else payload
    return b"\xe0\x7f\x10\x00OW\x00\x00" + struct.pack("<I", value_length) + b"\x00" * payload


def test_native_one_bit_frames_start_mid_byte():
    # 3 frames of 3x3 1-bit pixels = 27 bits -> 4 bytes
    buf = _native(4)
    locs = locate_frames(bytes_reader(buf), 0, "1.2.840.10008.1.2.1", 3, 3, 3, 1, 1, file_size=len(buf))
    assert locs == [(12, 2, 0), (13, 2, 1), (14, 2, 2)]


def test_absurd_dimensions_raise_before_reading_pixels():
    buf = _native(1024)
    read = bytes_reader(buf)
    with pytest.raises(InvalidDicomError, match="need"):
        locate_frames(read, 0, "1.2.840.10008.1.2.1", 100000, 65535, 65535, 3, 16, file_size=len(buf))
    assert sum(n for _, n in read.calls) <= 12  # only the element header was read


@pytest.mark.parametrize(
    "args",
    [(1, 0, 10, 1, 16), (1, 10, 70000, 1, 16), (1, 10, 10, 2, 16), (1, 10, 10, 1, 12), (0, 10, 10, 1, 16)],
)
def test_invalid_header_values(args):
    read = bytes_reader(_native(1000))
    with pytest.raises(InvalidDicomError, match="invalid image header"):
        locate_frames(read, 0, "1.2.840.10008.1.2.1", *args)
    assert read.calls == []  # nothing read at all


def test_truncated_native_file():
    buf = _native(200, payload=100)  # header claims 200 bytes, file has 100
    with pytest.raises(InvalidDicomError, match="truncated"):
        locate_frames(bytes_reader(buf), 0, "1.2.840.10008.1.2.1", 1, 10, 10, 1, 16, file_size=len(buf))


@needs_data
def test_truncated_real_file(tmp_path):
    src = TS_DIR / "pydicom" / "CT_small.dcm"
    with open(src, "rb") as fh:
        blob = fh.read()
    from pydicom import dcmread

    with open(src, "rb") as fh:
        dcmread(fh, stop_before_pixels=True)
        offset = fh.tell()
    cut = blob[: len(blob) - 5000]
    with pytest.raises(InvalidDicomError, match="truncated"):
        locate_frames(bytes_reader(cut), offset, "1.2.840.10008.1.2.1", 1, 128, 128, 1, 16, file_size=len(cut))


def test_wrong_tag_is_invalid():
    buf = b"\x08\x00\x10\x00OW\x00\x00" + b"\x00" * 8
    with pytest.raises(InvalidDicomError, match="expected a pixel data element"):
        locate_frames(bytes_reader(buf), 0, "1.2.840.10008.1.2.1", 1, 1, 1, 1, 8)


def test_implicit_and_big_endian_headers():
    implicit = b"\xe0\x7f\x10\x00" + struct.pack("<I", 8) + b"\x00" * 8
    assert locate_frames(bytes_reader(implicit), 0, "1.2.840.10008.1.2", 1, 2, 2, 1, 16) == [(8, 8, 0)]
    big = b"\x7f\xe0\x00\x10OW\x00\x00" + struct.pack(">I", 8) + b"\x00" * 8
    assert locate_frames(bytes_reader(big), 0, "1.2.840.10008.1.2.2", 1, 2, 2, 1, 16) == [(12, 8, 0)]
    floats = b"\xe0\x7f\x08\x00OF\x00\x00" + struct.pack("<I", 16) + b"\x00" * 16
    assert read_pixel_element_header(bytes_reader(floats), 0, "1.2.840.10008.1.2.1").float_pixels == 32
