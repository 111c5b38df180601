"""A fast, headers-only DICOM element walker.

pydicom builds a DataElement for every element it meets; the catalog needs a
few dozen attributes from files with hundreds of elements, and it needs the
file offset of Pixel Data. This walker reads the bytes before Pixel Data once,
hops over elements it does not want (sequences included, nested or of undefined
length) and converts only the wanted values. It never reads past the start of
the pixel-data element value.

Enhanced multi-frame objects (functional-group sequences) are handed to pydicom
afterwards by :mod:`dcmxr.catalog.enhanced`; this module only records where
their header ends.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import InvalidDicomError, NotDicomError
from .fields import (
    DIRECTORY_RECORDS,
    EXTENDED_OFFSET_TABLE,
    EXTENDED_OFFSET_TABLE_LENGTHS,
    FUNCTIONAL_GROUPS,
    PIXEL_TAGS,
    PRIVATE_TAGS,
    WANTED,
)

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
DEFLATED = "1.2.840.10008.1.2.1.99"

_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
_ITEM = 0xFFFEE000
_ITEM_DELIM = 0xFFFEE00D
_SEQ_DELIM = 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF
#: Deepest nesting of undefined-length sequences/items the walker follows.
MAX_NESTING = 64

_EXPL_LE = struct.Struct("<HH2sH")
_EXPL_BE = struct.Struct(">HH2sH")
_IMPL_LE = struct.Struct("<HHI")
_IMPL_BE = struct.Struct(">HHI")
_U32_LE = struct.Struct("<I")
_U32_BE = struct.Struct(">I")

_BIN_FORMATS = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d", "UV": "Q", "SV": "q"}
_TEXT_VRS = {"LO", "SH", "PN", "LT", "ST", "UT", "UC"}

Reader = Callable[[int, int], bytes]


class _NeedMore(Exception):
    """Raised when the buffer ends before the element being parsed."""


@dataclass
class Header:
    """What the walker found in one file.

    Attributes
    ----------
    values : dict
        keyword (or private column name) -> Python value.
    transfer_syntax : str
    pixel_offset : int or None
        File offset of the pixel-data element tag (None: no pixel data).
    pixel_kind : int
        0 Pixel Data, 32 Float Pixel Data, 64 Double Float Pixel Data.
    enhanced : bool
        True when functional-group sequences are present.
    extended_offsets, extended_lengths : bytes or None
        Raw Extended Offset Table values.
    deflate_from : int or None
        Start of the deflated stream (deflated transfer syntax only).
    header_end : int
        Bytes of the (possibly inflated) stream consumed.
    """

    values: dict[str, Any] = field(default_factory=dict)
    transfer_syntax: str = EXPLICIT_LE
    pixel_offset: int | None = None
    pixel_kind: int = 0
    enhanced: bool = False
    extended_offsets: bytes | None = None
    extended_lengths: bytes | None = None
    deflate_from: int | None = None
    header_end: int = 0
    has_meta: bool = True
    inflated: bytes | None = None
    dicomdir: bool = False


class _Buffer:
    """Grows on demand from a reader; offsets are absolute file offsets."""

    def __init__(self, read: Reader, first: bytes, size: int | None):
        self.read = read
        self.data = first
        self.size = size

    def ensure(self, end: int) -> None:
        if end <= len(self.data):
            return
        if self.size is not None and end > self.size:
            raise _NeedMore(end)
        want = max(end, 2 * len(self.data))
        if self.size is not None:
            want = min(want, self.size)
        more = self.read(len(self.data), want - len(self.data))
        if not more:
            raise _NeedMore(end)
        self.data += more
        if len(self.data) < end:
            raise _NeedMore(end)


def _decode_value(raw: bytes, vr: str, little: bool, charset: str) -> Any:
    if vr in _BIN_FORMATS:
        fmt = _BIN_FORMATS[vr]
        n = len(raw) // struct.calcsize(fmt)
        if n == 0:
            return None
        vals = struct.unpack(("<" if little else ">") + fmt * n, raw[: n * struct.calcsize(fmt)])
        return vals[0] if n == 1 else list(vals)
    if vr in ("OB", "OW", "UN", "OF", "OD", "OL", "OV"):
        return bytes(raw)
    if vr == "AT":
        return bytes(raw)
    enc = charset if vr in _TEXT_VRS else "ascii"
    try:
        text = raw.decode(enc)
    except (UnicodeDecodeError, LookupError):
        text = raw.decode("latin-1")
    text = text.rstrip("\x00 ").lstrip(" ") if vr != "UI" else text.rstrip("\x00 ")
    if text == "":
        return None
    if vr in ("DS", "IS"):
        parts = [p.strip() for p in text.split("\\")]
        try:
            nums = [float(p) if vr == "DS" else int(float(p)) for p in parts if p != ""]
        except ValueError:
            return None
        if not nums:
            return None
        return nums[0] if len(nums) == 1 else nums
    if vr in ("LT", "ST", "UT"):
        return text
    parts = text.split("\\")
    return parts[0] if len(parts) == 1 else parts


_CHARSETS = {
    "ISO_IR 100": "latin-1",
    "ISO_IR 101": "iso8859-2",
    "ISO_IR 109": "iso8859-3",
    "ISO_IR 110": "iso8859-4",
    "ISO_IR 144": "iso8859-5",
    "ISO_IR 127": "iso8859-6",
    "ISO_IR 126": "iso8859-7",
    "ISO_IR 138": "iso8859-8",
    "ISO_IR 148": "iso8859-9",
    "ISO_IR 192": "utf-8",
    "GB18030": "gb18030",
    "GBK": "gbk",
    "ISO_IR 13": "shift_jis",
    "ISO_IR 166": "tis-620",
}


_SPECIAL = (
    set(WANTED) | set(PRIVATE_TAGS) | set(PIXEL_TAGS) | set(FUNCTIONAL_GROUPS)
    | {EXTENDED_OFFSET_TABLE, EXTENDED_OFFSET_TABLE_LENGTHS, DIRECTORY_RECORDS}
)


class _Walker:
    def __init__(self, buf: _Buffer, little: bool, implicit: bool):
        self.buf = buf
        self.little = little
        self.implicit = implicit
        self.e = "<" if little else ">"

    def _tag_len(self, pos: int, implicit: bool, little: bool) -> tuple[int, bytes | None, int, int]:
        """Return (tag, vr bytes or None, length, value_start) for the element at ``pos``."""
        buf = self.buf
        data = buf.data
        if pos + 12 > len(data):
            try:
                buf.ensure(pos + 12)
            except _NeedMore:
                buf.ensure(pos + 8)
            data = buf.data
        if implicit:
            g, el, length = (_IMPL_LE if little else _IMPL_BE).unpack_from(data, pos)
            return (g << 16) | el, None, length, pos + 8
        g, el, vr, length = (_EXPL_LE if little else _EXPL_BE).unpack_from(data, pos)
        if g == 0xFFFE:  # item / delimiters: always tag + 4-byte length
            (length,) = (_U32_LE if little else _U32_BE).unpack_from(data, pos + 4)
            return (g << 16) | el, None, length, pos + 8
        if vr in _LONG_VRS:
            if pos + 12 > len(data):
                raise _NeedMore(pos + 12)
            (length,) = (_U32_LE if little else _U32_BE).unpack_from(data, pos + 8)
            return (g << 16) | el, vr, length, pos + 12
        if not (65 <= vr[0] <= 90 and 65 <= vr[1] <= 90):
            # Not a valid VR: some writers switch to implicit VR illegally.
            (length,) = (_U32_LE if little else _U32_BE).unpack_from(data, pos + 4)
            return (g << 16) | el, None, length, pos + 8
        return (g << 16) | el, vr, length, pos + 8

    def skip_undefined(self, pos: int, implicit: bool, little: bool, end_tag: int, depth: int = 0) -> int:
        """Skip a run of items/elements up to and including ``end_tag``.

        ``depth`` counts the enclosing undefined-length sequences and items;
        nesting deeper than ``MAX_NESTING`` is rejected (hostile files nest
        thousands of levels to exhaust the stack).
        """
        if depth > MAX_NESTING:
            raise InvalidDicomError(f"sequences nested more than {MAX_NESTING} levels deep")
        depth_guard = 0
        while True:
            depth_guard += 1
            if depth_guard > 10_000_000:
                raise InvalidDicomError("sequence never terminates")
            tag, vr, length, vstart = self._tag_len(pos, implicit, little)
            if tag == end_tag:
                return vstart
            if tag == _ITEM:
                if length == _UNDEFINED:
                    pos = self.skip_undefined(vstart, implicit, little, _ITEM_DELIM, depth + 1)
                else:
                    pos = vstart + length
                continue
            if tag in (_ITEM_DELIM, _SEQ_DELIM):
                return vstart  # tolerate mismatched delimiters
            if length == _UNDEFINED:
                # a nested SQ (or UN holding implicit-VR-LE items)
                nested_implicit = implicit or vr == b"UN"
                nested_little = little if vr != b"UN" else True
                pos = self.skip_undefined(vstart, nested_implicit, nested_little, _SEQ_DELIM, depth + 1)
            else:
                pos = vstart + length

    def walk(self, pos: int, header: Header) -> None:
        b = self.buf
        charset = "latin-1"
        last_tag = -1
        tag_len = self._tag_len
        implicit, little = self.implicit, self.little
        special = _SPECIAL
        while True:
            try:
                tag, vr, length, vstart = tag_len(pos, implicit, little)
                # fast path: an element we neither want nor need to look into
                if length != _UNDEFINED and tag not in special and tag > last_tag:
                    last_tag = tag
                    pos = vstart + length
                    continue
            except _NeedMore:
                if b.size is not None and pos != b.size:
                    raise InvalidDicomError(
                        f"file truncated: an element runs to byte {pos}, the file has {b.size}"
                    ) from None
                header.header_end = pos
                return  # end of data set without pixel data
            if tag < last_tag and tag >> 16 != 0xFFFE:
                # tags must ascend; anything else is garbage after the data set
                if tag == 0 or pos >= len(b.data):
                    header.header_end = pos
                    return
            last_tag = tag
            if tag in PIXEL_TAGS:
                header.pixel_offset = pos
                header.pixel_kind = PIXEL_TAGS[tag]
                header.header_end = pos
                return
            if tag == DIRECTORY_RECORDS:
                header.dicomdir = True
            if length == _UNDEFINED:
                if tag in FUNCTIONAL_GROUPS:
                    header.enhanced = True
                nested_implicit = self.implicit or vr == b"UN"
                nested_little = self.little if vr != b"UN" else True
                pos = self.skip_undefined(vstart, nested_implicit, nested_little, _SEQ_DELIM)
                continue
            end = vstart + length
            if tag in FUNCTIONAL_GROUPS:
                header.enhanced = True
            want = WANTED.get(tag)
            if want is not None:
                b.ensure(end)
                kw, dvr = want
                use_vr = dvr if vr is None or vr == b"UN" else vr.decode("ascii")
                val = _decode_value(b.data[vstart:end], use_vr, self.little, charset)
                if kw == "SpecificCharacterSet":
                    cs = val[-1] if isinstance(val, list) else val
                    charset = _CHARSETS.get(cs or "", "latin-1")
                header.values[kw] = val
            elif tag in PRIVATE_TAGS:
                b.ensure(end)
                name, pvr = PRIVATE_TAGS[tag]
                use_vr = vr.decode("ascii") if vr and vr not in (b"UN", b"OB", b"OW") else pvr
                header.values[name] = _decode_value(b.data[vstart:end], use_vr, self.little, "latin-1")
            elif tag == EXTENDED_OFFSET_TABLE:
                b.ensure(end)
                header.extended_offsets = bytes(b.data[vstart:end])
            elif tag == EXTENDED_OFFSET_TABLE_LENGTHS:
                b.ensure(end)
                header.extended_lengths = bytes(b.data[vstart:end])
            pos = end


def _parse_meta(buf: _Buffer, pos: int) -> tuple[str, int]:
    """Parse group 0002 (explicit VR LE); return (transfer syntax, data set start)."""
    ts = None
    group_end = None
    while True:
        buf.ensure(pos + 8)
        g, el = struct.unpack_from("<HH", buf.data, pos)
        if g != 0x0002 or (group_end is not None and pos >= group_end):
            break
        vr = bytes(buf.data[pos + 4 : pos + 6])
        if vr in _LONG_VRS:
            buf.ensure(pos + 12)
            (length,) = struct.unpack_from("<I", buf.data, pos + 8)
            vstart = pos + 12
        else:
            (length,) = struct.unpack_from("<H", buf.data, pos + 6)
            vstart = pos + 8
        if length == _UNDEFINED:
            raise InvalidDicomError("undefined length in file meta information")
        buf.ensure(vstart + length)
        if el == 0x0000 and length == 4:
            (glen,) = struct.unpack_from("<I", buf.data, vstart)
            group_end = vstart + 4 + glen
        elif el == 0x0010:
            ts = bytes(buf.data[vstart : vstart + length]).decode("ascii", "replace").rstrip("\x00 ")
        pos = vstart + length
    return ts or "", pos


def read_header(read: Reader, size: int | None, *, first_bytes: int = 8192) -> Header:
    """Walk one file's header.

    Parameters
    ----------
    read : callable
        ``read(offset, n) -> bytes``.
    size : int or None
        File size in bytes when known (bounds every read).
    first_bytes : int
        Size of the first read; the buffer grows by doubling.

    Returns
    -------
    Header

    Raises
    ------
    NotDicomError
        The bytes are not DICOM.
    InvalidDicomError
        The header is truncated or malformed.
    """
    first = read(0, first_bytes if size is None else min(first_bytes, size))
    buf = _Buffer(read, first, size)
    header = Header()
    try:
        if len(first) >= 132 and first[128:132] == b"DICM":
            ts, pos = _parse_meta(buf, 132)
            if not ts:
                ts = EXPLICIT_LE
        else:
            ts, pos = _sniff_no_meta(first)
            header.has_meta = False
        header.transfer_syntax = ts
        if ts == DEFLATED:
            header.deflate_from = pos
            buf.ensure(size if size is not None else pos)
            rest = buf.data[pos:] if size is not None else buf.data[pos:] + _read_all(read, len(buf.data))
            try:
                inflated = zlib.decompress(bytes(rest), -15)
            except zlib.error as exc:
                raise InvalidDicomError(f"deflated data set does not inflate: {exc}") from exc
            header.inflated = inflated
            ibuf = _Buffer(lambda o, n: b"", inflated, len(inflated))
            _Walker(ibuf, True, False).walk(0, header)
            return header
        little = ts != EXPLICIT_BE
        implicit = ts == IMPLICIT_LE
        _Walker(buf, little, implicit).walk(pos, header)
    except _NeedMore as exc:
        raise InvalidDicomError(f"header truncated (needed byte {exc.args[0]}, file has {size})") from None
    except struct.error as exc:
        raise InvalidDicomError(f"malformed header: {exc}") from None
    return header


def _read_all(read: Reader, start: int) -> bytes:
    chunks = []
    pos = start
    while True:
        b = read(pos, 1 << 22)
        if not b:
            break
        chunks.append(b)
        pos += len(b)
    return b"".join(chunks)


def _sniff_no_meta(first: bytes) -> tuple[str, int]:
    """Accept a data set without preamble/meta if it clearly starts with group 0008."""
    if len(first) < 12:
        raise NotDicomError("too short to be DICOM")
    g, el = struct.unpack_from("<HH", first, 0)
    if g in (0x0008, 0x0002):
        vr = first[4:6]
        if 65 <= vr[0] <= 90 and 65 <= vr[1] <= 90:
            return EXPLICIT_LE, 0
        return IMPLICIT_LE, 0
    g, el = struct.unpack_from(">HH", first, 0)
    if g == 0x0008 and 65 <= first[4] <= 90:
        return EXPLICIT_BE, 0
    raise NotDicomError("no DICM preamble and no recognisable data set")
