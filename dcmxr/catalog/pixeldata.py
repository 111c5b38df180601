"""Locate the frames inside a Pixel Data element without reading them.

The functions here take a ``read(offset, n) -> bytes`` callable so they work on
local files, fsspec files and the inflated stream of a deflated data set alike.
They read only element and item headers (8-12 bytes at a time) and the offset
tables, never fragment bodies, and check every declared size against the data
actually present before anything is allocated. Errors are
:class:`~dcmxr.errors.InvalidDicomError` with path-free messages; the caller
adds the path.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from dcmxr.decode import syntax as ts
from dcmxr.errors import InvalidDicomError, UnsupportedTransferSyntaxError

__all__ = [
    "PixelElement",
    "read_pixel_element_header",
    "locate_frames",
    "DeflatedReader",
    "deflated_reader",
]

Reader = Callable[[int, int], bytes]

UNDEFINED_LENGTH = 0xFFFFFFFF
PIXEL_TAGS = {(0x7FE0, 0x0010): 0, (0x7FE0, 0x0008): 32, (0x7FE0, 0x0009): 64}
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
_ITEM = b"\xfe\xff\x00\xe0"  # (FFFE,E000) little endian
_SEQ_DELIM = b"\xfe\xff\xdd\xe0"  # (FFFE,E0DD)

# Sanity limits on header values (US attributes are 16-bit anyway).
_MAX_DIM = 0xFFFF
_MAX_FRAMES = 2**31 - 1
_VALID_BITS_ALLOCATED = (1, 8, 16, 32, 64)


@dataclass(frozen=True)
class PixelElement:
    """The parsed header of a pixel data element.

    Attributes
    ----------
    tag : tuple of int
        (group, element).
    vr : str
        Value representation ("" for implicit VR).
    value_offset : int
        Offset of the first value byte.
    length : int or None
        Value length, None when undefined (encapsulated).
    float_pixels : int
        0, 32 or 64 (Pixel Data, Float Pixel Data, Double Float Pixel Data).
    """

    tag: tuple[int, int]
    vr: str
    value_offset: int
    length: int | None
    float_pixels: int


def _read_exact(read: Reader, offset: int, n: int, what: str) -> bytes:
    data = read(offset, n)
    if len(data) < n:
        raise InvalidDicomError(
            f"truncated pixel data: {what} at byte {offset} needs {n} bytes but only "
            f"{len(data)} are present"
        )
    return bytes(data[:n])


def read_pixel_element_header(read: Reader, element_offset: int, transfer_syntax: str) -> PixelElement:
    """Parse the header of the pixel data element starting at ``element_offset``.

    Parameters
    ----------
    read : callable
        ``read(offset, n) -> bytes``.
    element_offset : int
        Offset of the element's tag.
    transfer_syntax : str
        Transfer Syntax UID (decides implicit/explicit VR and byte order).

    Returns
    -------
    PixelElement
    """
    big = ts.is_big_endian(transfer_syntax)
    end = ">" if big else "<"
    head = _read_exact(read, element_offset, 8, "pixel data element header")
    group, elem = struct.unpack(end + "HH", head[:4])
    if (group, elem) not in PIXEL_TAGS:
        raise InvalidDicomError(
            f"expected a pixel data element at byte {element_offset}, found tag "
            f"({group:04X},{elem:04X})"
        )
    if ts.is_implicit_vr(transfer_syntax):
        vr = ""
        (length,) = struct.unpack(end + "I", head[4:8])
        value_offset = element_offset + 8
    else:
        vr_bytes = head[4:6]
        if vr_bytes in _LONG_VRS:
            (length,) = struct.unpack(end + "I", _read_exact(read, element_offset + 8, 4, "element length"))
            value_offset = element_offset + 12
        elif vr_bytes.isalpha() and vr_bytes.isupper():
            (length,) = struct.unpack(end + "H", head[6:8])
            value_offset = element_offset + 8
        else:
            # Some writers put an implicit VR pixel element in an explicit VR
            # data set (pydicom reads these too): no VR, 4-byte length.
            (length,) = struct.unpack(end + "I", head[4:8])
            value_offset = element_offset + 8
            vr_bytes = b""
        vr = vr_bytes.decode("ascii")
    return PixelElement(
        tag=(group, elem),
        vr=vr,
        value_offset=value_offset,
        length=None if length == UNDEFINED_LENGTH else length,
        float_pixels=PIXEL_TAGS[(group, elem)],
    )


def _check_geometry(number_of_frames: int, rows: int, columns: int, samples_per_pixel: int, bits_allocated: int) -> None:
    problems = []
    if not 1 <= rows <= _MAX_DIM:
        problems.append(f"Rows={rows}")
    if not 1 <= columns <= _MAX_DIM:
        problems.append(f"Columns={columns}")
    if samples_per_pixel not in (1, 3, 4):
        problems.append(f"SamplesPerPixel={samples_per_pixel}")
    if bits_allocated not in _VALID_BITS_ALLOCATED:
        problems.append(f"BitsAllocated={bits_allocated}")
    if not 1 <= number_of_frames <= _MAX_FRAMES:
        problems.append(f"NumberOfFrames={number_of_frames}")
    if problems:
        raise InvalidDicomError("invalid image header: " + ", ".join(problems))


def locate_frames(
    read: Reader,
    element_offset: int,
    transfer_syntax: str,
    number_of_frames: int,
    rows: int,
    columns: int,
    samples_per_pixel: int,
    bits_allocated: int,
    *,
    file_size: int | None = None,
    extended_offsets: bytes | Sequence[int] | None = None,
    extended_lengths: bytes | Sequence[int] | None = None,
    photometric_interpretation: str | None = None,
) -> list[tuple[int, int, int]]:
    """Return ``(offset, length, bit_offset)`` of every frame of a pixel data element.

    Parameters
    ----------
    read : callable
        ``read(offset, n) -> bytes`` at absolute offsets of the file (or of the
        inflated stream for the deflated transfer syntax, see
        :func:`deflated_reader`).
    element_offset : int
        Offset of the pixel data element's tag (7FE0,0010/0008/0009).
    transfer_syntax : str
        Transfer Syntax UID.
    number_of_frames, rows, columns, samples_per_pixel, bits_allocated : int
        From the image header (NumberOfFrames defaults to 1).
    file_size : int, optional
        Size of the file/stream; when given, truncation is detected up front.
    extended_offsets, extended_lengths : bytes or sequence of int, optional
        The Extended Offset Table (7FE0,0001) and its lengths (7FE0,0002),
        as raw little-endian 64-bit values or as integers.
    photometric_interpretation : str, optional
        Needed for native YBR_FULL_422 data, whose frames hold 2 samples per
        pixel instead of 3.

    Returns
    -------
    list of (int, int, int)
        Per frame, as documented on :class:`~dcmxr.decode.frameref.FrameRef`:
        native frames cover the frame's pixel bytes (``bit_offset`` > 0 only
        for 1-bit data); encapsulated frames cover whole items, from the item
        tag of the first fragment to the end of the last.

    Raises
    ------
    InvalidDicomError
        Absurd dimensions, truncated data or inconsistent offset tables.
    UnsupportedTransferSyntaxError
        Storage this module cannot describe with byte ranges (8-bit OW
        big endian).
    """
    _check_geometry(number_of_frames, rows, columns, samples_per_pixel, bits_allocated)
    elem = read_pixel_element_header(read, element_offset, transfer_syntax)
    if file_size is not None and elem.value_offset > file_size:
        raise InvalidDicomError("truncated pixel data: the element header runs past the end of the file")
    if ts.is_native(transfer_syntax) and elem.length is not None:
        if ts.is_big_endian(transfer_syntax) and bits_allocated == 8 and elem.vr == "OW":
            raise UnsupportedTransferSyntaxError(
                "8-bit pixel data stored as OW in Explicit VR Big Endian (byte-swapped pairs) "
                "is not supported"
            )
        samples = samples_per_pixel
        if photometric_interpretation == "YBR_FULL_422" and samples_per_pixel == 3:
            samples = 2  # Y1 Y2 Cb Cr per pair of pixels
        return _native_frames(elem, number_of_frames, rows, columns, samples, bits_allocated, file_size)
    if elem.length is not None:
        raise InvalidDicomError(
            f"transfer syntax {transfer_syntax} needs encapsulated (undefined length) pixel data, "
            f"found a defined length of {elem.length}"
        )
    if ts.is_native(transfer_syntax):
        raise InvalidDicomError(f"native transfer syntax {transfer_syntax} with undefined-length pixel data")
    return _encapsulated_frames(
        read, elem.value_offset, transfer_syntax, number_of_frames, file_size, extended_offsets, extended_lengths
    )


# --------------------------------------------------------------------------- native
def _native_frames(
    elem: PixelElement,
    number_of_frames: int,
    rows: int,
    columns: int,
    samples_per_pixel: int,
    bits_allocated: int,
    file_size: int | None,
) -> list[tuple[int, int, int]]:
    frame_bits = rows * columns * samples_per_pixel * bits_allocated
    needed = -(-number_of_frames * frame_bits // 8)
    available = elem.length
    assert available is not None
    if needed > available:
        raise InvalidDicomError(
            f"pixel data holds {available} bytes but {number_of_frames} frame(s) of "
            f"{rows}x{columns}x{samples_per_pixel} at {bits_allocated} bits need {needed}"
        )
    if file_size is not None and elem.value_offset + needed > file_size:
        raise InvalidDicomError(
            f"truncated pixel data: {number_of_frames} frame(s) need {needed} bytes but the file "
            f"ends {file_size - elem.value_offset} bytes after the element header"
        )
    out = []
    start = elem.value_offset
    for i in range(number_of_frames):
        bit = i * frame_bits
        bit_offset = bit % 8
        out.append((start + bit // 8, -(-(bit_offset + frame_bits) // 8), bit_offset))
    return out


# --------------------------------------------------------------------------- encapsulated
def _as_ints(table: bytes | Sequence[int]) -> list[int]:
    if isinstance(table, (bytes, bytearray, memoryview)):
        raw = bytes(table)
        if len(raw) % 8:
            raise InvalidDicomError("Extended Offset Table length is not a multiple of 8")
        return list(struct.unpack(f"<{len(raw) // 8}Q", raw))
    return [int(v) for v in table]


def _item_header(read: Reader, offset: int, extra: int = 0) -> tuple[bytes, int, bytes]:
    """Read an item header (+ ``extra`` value bytes when available)."""
    data = read(offset, 8 + extra)
    if len(data) < 8:
        raise InvalidDicomError(f"truncated pixel data: no item header at byte {offset}")
    data = bytes(data)
    (length,) = struct.unpack("<I", data[4:8])
    return data[:4], length, data[8:]


def _frame_start(value: bytes, transfer_syntax: str) -> bool:
    """Does a fragment starting with ``value`` begin a new frame?"""
    if transfer_syntax in ts.J2K_ANY:
        return value.startswith(b"\xff\x4f\xff\x51") or value.startswith(b"\x00\x00\x00\x0cjP  ")
    if transfer_syntax in ts.JPEG or transfer_syntax in ts.JPEG_LS:
        return value.startswith(b"\xff\xd8")
    return False


def _scan_items(
    read: Reader, first: int, transfer_syntax: str, file_size: int | None, peek: int
) -> tuple[list[tuple[int, int, bytes]], int]:
    """Walk the fragment items from ``first`` to the sequence delimiter.

    Returns ``[(item_offset, value_length, first_value_bytes)]`` and the
    offset of the delimiter.
    """
    items = []
    pos = first
    while True:
        if file_size is not None and pos + 8 > file_size:
            raise InvalidDicomError("truncated pixel data: missing the sequence delimiter")
        tag, length, head = _item_header(read, pos, peek)
        if tag == _SEQ_DELIM:
            return items, pos
        if tag != _ITEM:
            raise InvalidDicomError(f"expected a pixel data item at byte {pos}, found {tag.hex()}")
        if length == UNDEFINED_LENGTH:
            raise InvalidDicomError(f"pixel data fragment at byte {pos} has undefined length")
        if file_size is not None and pos + 8 + length > file_size:
            raise InvalidDicomError(
                f"truncated pixel data: fragment at byte {pos} declares {length} bytes past the end of the file"
            )
        items.append((pos, length, head))
        pos += 8 + length


def _encapsulated_frames(
    read: Reader,
    value_offset: int,
    transfer_syntax: str,
    number_of_frames: int,
    file_size: int | None,
    extended_offsets: bytes | Sequence[int] | None,
    extended_lengths: bytes | Sequence[int] | None,
) -> list[tuple[int, int, int]]:
    tag, bot_length, _ = _item_header(read, value_offset)
    if tag != _ITEM:
        raise InvalidDicomError(f"encapsulated pixel data does not start with an item tag (found {tag.hex()})")
    if bot_length % 4 or (file_size is not None and value_offset + 8 + bot_length > file_size):
        raise InvalidDicomError(f"invalid Basic Offset Table length {bot_length}")
    first = value_offset + 8 + bot_length

    if extended_offsets is not None and extended_lengths is not None:
        offsets, lengths = _as_ints(extended_offsets), _as_ints(extended_lengths)
        if len(offsets) < number_of_frames or len(lengths) < number_of_frames:
            raise InvalidDicomError(
                f"Extended Offset Table has {len(offsets)} entries for {number_of_frames} frames"
            )
        out = [(first + o, 8 + n, 0) for o, n in zip(offsets[:number_of_frames], lengths[:number_of_frames])]
        if file_size is not None and any(o + n > file_size for o, n, _ in out):
            raise InvalidDicomError("truncated pixel data: Extended Offset Table points past the end of the file")
        return out

    if bot_length:
        bot = struct.unpack(f"<{bot_length // 4}I", _read_exact(read, value_offset + 8, bot_length, "Basic Offset Table"))
        frames = _frames_from_bot(read, first, bot, transfer_syntax, number_of_frames, file_size)
        if frames is not None:
            return frames

    # No usable offset table: walk the item headers.
    single = number_of_frames == 1 or transfer_syntax in (ts.RLE_LOSSLESS, ts.DEFLATED_IMAGE_FRAME)
    items, end = _scan_items(read, first, transfer_syntax, file_size, 0 if single else 8)
    if not items:
        raise InvalidDicomError("encapsulated pixel data has no fragments")
    if number_of_frames == 1:
        return [(first, end - first, 0)]
    if len(items) == number_of_frames:
        return [(pos, 8 + n, 0) for pos, n, _ in items]
    if single:
        raise InvalidDicomError(
            f"{len(items)} fragments for {number_of_frames} frames; this transfer syntax "
            "stores one fragment per frame"
        )
    if len(items) < number_of_frames:
        raise InvalidDicomError(f"only {len(items)} fragments for {number_of_frames} frames")
    starts = [i for i, (_, _, head) in enumerate(items) if _frame_start(head, transfer_syntax)]
    if not starts or starts[0] != 0 or len(starts) < number_of_frames:
        raise InvalidDicomError(
            f"cannot split {len(items)} fragments into {number_of_frames} frames: found "
            f"{len(starts)} frame start markers"
        )
    bounds = [items[s][0] for s in starts] + [end]
    return [(bounds[i], bounds[i + 1] - bounds[i], 0) for i in range(number_of_frames)]


def _frames_from_bot(
    read: Reader,
    first: int,
    bot: Sequence[int],
    transfer_syntax: str,
    number_of_frames: int,
    file_size: int | None,
) -> list[tuple[int, int, int]] | None:
    """Frames from the Basic Offset Table, or None when the table is unusable."""
    if len(bot) != number_of_frames or bot[0] != 0 or any(b <= a for a, b in zip(bot, bot[1:])):
        return None
    # The last frame runs to the sequence delimiter: walk its items only
    # (this also checks that the last offset lands on an item tag).
    last = first + bot[-1]
    if file_size is not None and last + 8 > file_size:
        return None
    tag, _, _ = _item_header(read, last)
    if tag != _ITEM:
        return None
    _, end = _scan_items(read, last, transfer_syntax, file_size, 0)
    starts = [first + b for b in bot] + [end]
    return [(starts[i], starts[i + 1] - starts[i], 0) for i in range(number_of_frames)]


# --------------------------------------------------------------------------- deflated data sets
class DeflatedReader:
    """``read(offset, n)`` over the inflated stream of a deflated data set.

    Deflated Explicit VR Little Endian (1.2.840.10008.1.2.1.99) deflates the
    whole data set after the file meta information (raw deflate, zlib
    ``wbits=-15``). Random access needs the stream inflated up to the wanted
    offset; this reader inflates once, lazily, up to the furthest byte asked
    for and keeps the inflated prefix. It is meant for header parsing and
    frame location; decoding streams the data again (see
    :func:`dcmxr.decode.read.read_inflated`).

    Parameters
    ----------
    path_or_url : str
        Local path or fsspec URL.
    deflate_from : int
        File offset where the deflate stream starts.
    storage_options : dict, optional
        fsspec options.
    """

    def __init__(self, path_or_url: str, deflate_from: int, storage_options: dict | None = None) -> None:
        self.url = os.fspath(path_or_url)
        self.deflate_from = deflate_from
        self.storage_options = storage_options
        self._data = bytearray()
        self._inflater = zlib.decompressobj(-15)
        self._consumed = 0  # compressed bytes fed to the inflater so far
        self._done = False

    def _inflate_to(self, stop: int) -> None:
        if self._done or len(self._data) >= stop:
            return
        from dcmxr.decode.read import open_binary

        with open_binary(self.url, self.storage_options) as fh:
            fh.seek(self.deflate_from + self._consumed)
            while len(self._data) < stop:
                chunk = fh.read(1 << 20)
                if not chunk:
                    self._data += self._inflater.flush()
                    self._done = True
                    break
                self._consumed += len(chunk)
                try:
                    self._data += self._inflater.decompress(chunk)
                except zlib.error as exc:
                    raise InvalidDicomError(f"corrupt deflated data set: {exc}") from None
                if self._inflater.eof:
                    self._done = True
                    break

    def __call__(self, offset: int, n: int) -> bytes:
        self._inflate_to(offset + n)
        return bytes(self._data[offset : offset + n])

    def size(self) -> int:
        """Inflate the whole stream and return its length."""
        self._inflate_to(2**62)
        return len(self._data)


def deflated_reader(path_or_url: str, deflate_from: int, storage_options: dict | None = None) -> DeflatedReader:
    """Return a ``read(offset, n)`` callable over a deflated data set's inflated stream.

    Parameters
    ----------
    path_or_url : str
        Local path or fsspec URL of the file.
    deflate_from : int
        File offset where the raw deflate stream starts (just after the
        file meta information group).
    storage_options : dict, optional
        fsspec options.

    Returns
    -------
    DeflatedReader
    """
    return DeflatedReader(path_or_url, deflate_from, storage_options)
