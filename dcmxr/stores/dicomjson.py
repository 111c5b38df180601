"""Fast DICOM JSON (PS3.18 Annex F) of a file's complete header.

:func:`header_json` walks the file's raw data elements itself (file meta
and data set, private tags and sequences included, everything but the pixel
data) and converts each element with pydicom's own value converters and
``DataElement.to_json_dict`` — so the JSON is exactly pydicom's
``Dataset.to_json_dict`` — but it converts each distinct ``(tag, VR, bytes)``
only once: a :class:`HeaderCache` shared by the files of a series turns the
elements every instance repeats (most of a CT/MR header) into a dictionary
lookup of a ready JSON fragment.

Files the walker does not handle (no ``DICM`` preamble, big endian or
deflated syntaxes, character sets other than the default, Latin-1 and UTF-8,
undefined-length ``UN``, remote files) are converted by pydicom as a whole
(:func:`pydicom_header_json`), which gives the same JSON more slowly.
"""

from __future__ import annotations

import base64
import json
import os
import struct
import warnings
from typing import Any

from ..errors import DcmxrWarning

__all__ = ["header_json", "pydicom_header_json", "HeaderCache", "PIXEL_TAGS"]

#: DICOM pixel data elements kept out of the JSON headers.
PIXEL_TAGS = (0x7FE00008, 0x7FE00009, 0x7FE00010)
_PIXEL = frozenset(PIXEL_TAGS)
_BIG = 2**62
_LONG_VR = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT", b"SV", b"UV"})
_SHORT_VR = frozenset({b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"PN",
                       b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US"})
_IMPLICIT = "1.2.840.10008.1.2"
#: Transfer syntaxes whose data set is Explicit VR Little Endian (native and encapsulated).
_NOT_EXPLICIT_LE = {_IMPLICIT, "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"}
#: Specific Character Sets the walker handles (single-byte default/Latin-1 and UTF-8).
_CHARSETS = frozenset({"", "ISO_IR 6", "ISO_IR 100", "ISO_IR 192"})
_UNDEF = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_TAG = struct.Struct("<HH")
_EXPL = struct.Struct("<HH2sH")
_U32 = struct.Struct("<I")
_IMPL = struct.Struct("<HHI")


class _Fallback(Exception):
    """The walker does not handle this file; pydicom converts it instead."""


class _Short(Exception):
    """The header runs past the bytes read so far."""


class HeaderCache:
    """JSON fragments of elements already converted, shared by the files of a series.

    One table per ``(character set, implicit VR)``, keyed by the element's
    complete encoding (tag, VR, length and value bytes), holding its
    ``"GGGGEEEE":{...}`` fragment. Values longer than ``max_value`` bytes are
    not cached; at most ``max_entries`` fragments are kept.
    """

    def __init__(self, max_value: int = 1024, max_entries: int = 200_000):
        self.max_value = max_value
        self.max_entries = max_entries
        self.tables: dict[tuple[str, bool], dict[bytes, str]] = {}
        self.size = 0

    def table(self, encoding: str, implicit: bool) -> dict[bytes, str]:
        return self.tables.setdefault((encoding, implicit), {})

    def put(self, table: dict[bytes, str], key: bytes, frag: str) -> None:
        if self.size < self.max_entries:
            table[key] = frag
            self.size += 1


class _Walk:
    """One file's walk: raw elements -> JSON fragments."""

    def __init__(self, buf: bytes, path: str, cache: HeaderCache, encoding: str, size: int, fd: int):
        self.buf = buf
        self.size = size
        self.fd = fd
        self.path = path
        self.cache = cache
        self.encoding = encoding
        self.dropped: list[str] = []
        self.depth = 0

    # ------------------------------------------------------------ elements
    def elements(self, off: int, end: int | None, implicit: bool, ctx: dict,
                 top: bool = False) -> tuple[list[str], int]:
        """Fragments of the elements in ``buf[off:end]`` (``end=None``: until an item delimiter)."""
        buf = self.buf
        frags: list[str] = []
        append = frags.append
        n = len(buf)
        limit = (self.size if top else n) if end is None else end
        cache = self.cache
        table = cache.table(self.encoding, implicit)
        maxv = cache.max_value
        while off < limit:
            if off + 8 > n:
                raise self._short("truncated element")
            if implicit:
                group, elem, length = _IMPL.unpack_from(buf, off)
                vr = None
                voff = off + 8
            else:
                group, elem, vr, length = _EXPL.unpack_from(buf, off)
                if vr in _SHORT_VR:
                    voff = off + 8
                elif vr in _LONG_VR:
                    length = _U32.unpack_from(buf, off + 8)[0]
                    voff = off + 12
                elif group == 0xFFFE:  # delimiters carry no VR
                    length = _U32.unpack_from(buf, off + 4)[0]
                    voff = off + 8
                else:
                    raise _Fallback(f"unknown VR {vr!r}")
            tag = (group << 16) | elem
            if group == 0xFFFE:
                if tag == _ITEM_END and end is None:
                    return frags, off + 8
                raise _Fallback("misplaced delimiter")
            if top and tag in _PIXEL:
                off = self._skip_encapsulated(voff) if length == _UNDEF else voff + length
                continue
            if tag == 0x00080005 and self.depth:  # an item's own character set, for the rest of the item
                self.encoding = _encoding_of(bytes(buf[voff:voff + length]))
                table = cache.table(self.encoding, implicit)
            if vr == b"SQ" or (implicit and (length == _UNDEF or _dictionary_vr(tag) == "SQ")):
                frag, off = self.sequence(tag, voff, length, implicit)
                append(frag)
                continue
            if length == _UNDEF:
                raise _Fallback("undefined length outside a sequence")
            stop = voff + length
            if stop > n:
                raise self._short("value runs past the end of the file")
            if group == 0x0028 or (group & 1 and elem <= 0xFF):
                # what later VR look-ups may need (group 0028, private creators)
                ctx[tag] = (vr, bytes(buf[voff:stop]), voff)
            contextual = (vr is None or vr == b"UN") and ((group & 1 and elem > 0xFF) or _ambiguous(tag))
            key = None
            if not contextual and length <= maxv:
                key = bytes(buf[off:stop])
                hit = table.get(key)
                if hit is not None:
                    append(hit)
                    off = stop
                    continue
            frag, cacheable = self._convert(tag, vr, bytes(buf[voff:stop]), voff, implicit,
                                            _context(ctx, implicit, self.encoding) if contextual else None)
            if frag is not None:
                append(frag)
                if key is not None and cacheable:
                    cache.put(table, key, frag)
            off = stop
        if end is not None and off != end:
            raise _Fallback("element runs past its item")
        return frags, off

    def _convert(self, tag, vr, value, voff, implicit, ds) -> tuple[str | None, bool]:
        from pydicom.dataelem import RawDataElement, convert_raw_data_element
        from pydicom.tag import Tag
        from pydicom.valuerep import AMBIGUOUS_VR

        raw = RawDataElement(Tag(tag), None if vr is None else vr.decode(), len(value), value, voff, implicit, True)
        try:
            el = convert_raw_data_element(raw, encoding=self.encoding, ds=ds)
            cacheable = el.VR != "SQ"  # an element pydicom reads as a sequence (e.g. UN of a known SQ tag)
            if el.VR in AMBIGUOUS_VR:
                from pydicom.filewriter import correct_ambiguous_vr_element

                cacheable = False
                el = correct_ambiguous_vr_element(el, ds if ds is not None else _Empty(), True)
            body = el.to_json_dict(None, _BIG)
            return f'"{tag:08X}":{json.dumps(body)}', cacheable
        except Exception as exc:  # pydicom raises several types for values it cannot represent
            # DICOM JSON has no form for e.g. a DS value that is not a number: keep the bytes as UN
            self.dropped.append(f"({tag >> 16:04X},{tag & 0xFFFF:04X}): {exc}")
            if not value:
                return None, False
            return f'"{tag:08X}":{{"vr":"UN","InlineBinary":"{base64.b64encode(value).decode()}"}}', False

    def sequence(self, tag: int, voff: int, length: int, implicit: bool) -> tuple[str, int]:
        buf = self.buf
        items: list[str] = []
        off = voff
        end = None if length == _UNDEF else voff + length
        while True:
            if end is not None and off >= end:
                if off != end:
                    raise _Fallback("sequence runs past its length")
                break
            if off + 8 > len(buf):
                raise self._short("truncated sequence")
            g, e = _TAG.unpack_from(buf, off)
            t = (g << 16) | e
            ilen = _U32.unpack_from(buf, off + 4)[0]
            if t == _SEQ_END:
                off += 8
                break
            if t != _ITEM:
                raise _Fallback("sequence without items")
            ioff = off + 8
            self.depth += 1
            outer = self.encoding
            frags, off = self.elements(ioff, None if ilen == _UNDEF else ioff + ilen, implicit, {})
            self.encoding = outer
            self.depth -= 1
            items.append("{" + ",".join(frags) + "}")
        return f'"{tag:08X}":{{"vr":"SQ","Value":[{",".join(items)}]}}', off

    def _short(self, why: str) -> Exception:
        """The buffer ends early: read more of the file, or the file itself ends early."""
        return _Short(why) if len(self.buf) < self.size else _Fallback(why)

    def _skip_encapsulated(self, off: int) -> int:
        """Offset after encapsulated pixel data (item headers read from the file, not the buffer)."""
        while off + 8 <= self.size:
            head = os.pread(self.fd, 8, off)
            if len(head) < 8:
                break
            g, e, ln = _IMPL.unpack(head)
            t = (g << 16) | e
            if t == _SEQ_END:
                return off + 8
            if t != _ITEM or ln == _UNDEF:
                raise _Fallback("bad encapsulated pixel data")
            off += 8 + ln
        return self.size  # no sequence delimiter at the end of the file: pydicom accepts that too


def _context(ctx: dict, implicit: bool, encoding: str):
    """A pydicom Dataset of the level's private creators and group 0028 (for VR look-ups)."""
    from pydicom.dataelem import RawDataElement, convert_raw_data_element
    from pydicom.dataset import Dataset
    from pydicom.tag import Tag

    ds = Dataset()
    for tag, (vr, value, voff) in ctx.items():
        raw = RawDataElement(Tag(tag), None if vr is None else vr.decode(), len(value), value, voff, implicit, True)
        try:
            ds[tag] = convert_raw_data_element(raw, encoding=encoding, ds=ds)
        except Exception:  # a bad context value only loses the look-up it would have helped
            pass
    return ds


def _Empty():
    from pydicom.dataset import Dataset

    return Dataset()


_DICT_VR: dict[int, str | None] = {}
_AMBIGUOUS: dict[int, bool] = {}


def _ambiguous(tag: int) -> bool:
    """Is the dictionary VR of ``tag`` ambiguous ("US or SS" ...)?"""
    amb = _AMBIGUOUS.get(tag)
    if amb is None:
        amb = _AMBIGUOUS[tag] = " or " in (_dictionary_vr(tag) or "")
    return amb


def _dictionary_vr(tag: int) -> str | None:
    vr = _DICT_VR.get(tag, "")
    if vr == "":
        from pydicom.datadict import dictionary_VR

        try:
            vr = dictionary_VR(tag)
        except KeyError:
            vr = None
        _DICT_VR[tag] = vr
    return vr


def _head(buf, off: int, implicit: bool) -> tuple[int, int, int, int]:
    """``(group, element, length, value offset)`` of the element header at ``off`` (little endian)."""
    if implicit:
        g, e = _TAG.unpack_from(buf, off)
        return g, e, _U32.unpack_from(buf, off + 4)[0], off + 8
    g, e, vr, ln = _EXPL.unpack_from(buf, off)
    if vr in _LONG_VR:
        return g, e, _U32.unpack_from(buf, off + 8)[0], off + 12
    return g, e, ln, off + 8


def _meta_string(buf, start: int, tag_want: int) -> str | None:
    """A string value of the (explicit VR LE) file meta group."""
    off = start
    while off + 8 <= len(buf):
        g, e, ln, off = _head(buf, off, False)
        if g != 0x0002:
            return None
        if ((g << 16) | e) == tag_want:
            return bytes(buf[off:off + ln]).decode("ascii", "replace").rstrip("\0 ")
        off += ln
    return None


def _charset(buf, off: int, implicit: bool) -> str:
    """The Python encoding pydicom uses for the data set's Specific Character Set (or fall back)."""
    if off + 8 > len(buf):
        return "iso8859"
    g, e = _TAG.unpack_from(buf, off)
    # Specific Character Set, when present, is among the first elements (group 0008, element 0005)
    while off + 8 <= len(buf) and (g, e) < (0x0008, 0x0005):
        _, _, ln, off = _head(buf, off, implicit)
        if ln == _UNDEF:
            raise _Fallback("undefined length before the character set")
        off += ln
        if off + 8 > len(buf):
            return "iso8859"
        g, e = _TAG.unpack_from(buf, off)
    if (g, e) != (0x0008, 0x0005):
        return "iso8859"
    _, _, ln, off = _head(buf, off, implicit)
    return _encoding_of(bytes(buf[off:off + ln]))


def _encoding_of(raw: bytes) -> str:
    """pydicom's Python encoding for a Specific Character Set value the walker handles."""
    value = raw.decode("ascii", "replace").strip("\0 ")
    if value not in _CHARSETS:
        raise _Fallback(f"character set {value!r}")
    from pydicom.charset import convert_encodings

    return convert_encodings(value or "ISO_IR 6")[0]


#: Bytes read first; the rest of a file is read only when its header is longer.
_FIRST_READ = 1 << 16
#: Larger files whose header does not fit in the first read go through pydicom.
_MAX_WHOLE_READ = 64 << 20


def _walk_file(path: str, cache: HeaderCache) -> tuple[str, str, str, list[str]]:
    """Walk one file (plain reads, never a memory map: a file truncated meanwhile is an error, not SIGBUS)."""
    with open(path, "rb", buffering=0) as fh:
        size = os.fstat(fh.fileno()).st_size
        if size < 144:
            raise _Fallback("too small")
        buf = fh.read(min(size, _FIRST_READ))
        try:
            return _walk_buffer(buf, path, cache, size, fh.fileno())
        except _Short:
            if size > _MAX_WHOLE_READ:
                raise _Fallback("header longer than the first read of a large file") from None
            fh.seek(0)
            buf = fh.read()
            if len(buf) != size:
                raise _Fallback("file changed while reading") from None
            return _walk_buffer(buf, path, cache, size, fh.fileno())


def _walk_buffer(buf: bytes, path: str, cache: HeaderCache, size: int, fd: int):
    if buf[128:132] != b"DICM":
        raise _Fallback("no DICM preamble")
    # the file meta group: walk it (its group length is not trusted, as pydicom does not)
    meta_end = 132
    while meta_end + 8 <= len(buf) and _TAG.unpack_from(buf, meta_end)[0] == 0x0002:
        _, _, vr2, ln2 = _EXPL.unpack_from(buf, meta_end)
        if vr2 in _LONG_VR:
            ln2 = _U32.unpack_from(buf, meta_end + 8)[0]
            meta_end += 12 + ln2
        elif vr2 in _SHORT_VR:
            meta_end += 8 + ln2
        else:
            raise _Fallback("bad file meta")
    if meta_end + 8 > len(buf):
        raise _Short("file meta") if len(buf) < size else _Fallback("no data set")
    ts = _meta_string(buf, 132, 0x00020010) or ""
    if ts in _NOT_EXPLICIT_LE and ts != _IMPLICIT:
        raise _Fallback(f"transfer syntax {ts}")
    implicit = ts == _IMPLICIT
    # a data set that says Implicit but is Explicit (or the reverse) is left to pydicom
    looks_explicit = buf[meta_end + 4:meta_end + 6] in _SHORT_VR | _LONG_VR
    if looks_explicit == implicit:
        raise _Fallback("VR encoding differs from the transfer syntax")
    walk = _Walk(buf, path, cache, "iso8859", size, fd)
    meta_frags, _ = walk.elements(132, meta_end, False, {})
    walk.encoding = _charset(buf, meta_end, implicit)
    frags, _ = walk.elements(meta_end, None, implicit, {}, top=True)
    sop = _find_sop(buf, meta_end, implicit)
    return sop, "{" + ",".join(frags) + "}", "{" + ",".join(meta_frags) + "}", walk.dropped


def _find_sop(buf, off: int, implicit: bool) -> str:
    n = len(buf)
    while off + 8 <= n:
        g, e, ln, off = _head(buf, off, implicit)
        if (g, e) == (0x0008, 0x0018):
            return bytes(buf[off:off + ln]).decode("ascii", "replace").rstrip("\0 ")
        if ln == _UNDEF or g > 0x0008:
            return ""
        off += ln
    return ""


def pydicom_header_json(path: str, *, deid: Any = None) -> tuple[str, str, str]:
    """``(sop_instance_uid, header_json, file_meta_json)`` converted by pydicom as a whole.

    ``deid`` is ``(uid_map, salt)`` to apply the PS3.15 Basic Profile first.
    """
    import pydicom

    ds = pydicom.dcmread(path, defer_size="256 KB", force=True)
    for tag in PIXEL_TAGS:
        if tag in ds:
            del ds[tag]
    if deid is not None:
        from .deid import deidentify_dataset, new_uid

        uid_map, salt = deid
        deidentify_dataset(ds, uid_map, salt=salt)
        if "MediaStorageSOPInstanceUID" in ds.file_meta:
            ds.file_meta.MediaStorageSOPInstanceUID = new_uid(ds.file_meta.MediaStorageSOPInstanceUID,
                                                                uid_map, salt)
    with pydicom.config.disable_value_validation():  # keep invalid values as they are
        try:
            header = ds.to_json_dict(bulk_data_threshold=_BIG)
        except Exception:  # pydicom raises several types for bad values
            header = ds.to_json_dict(bulk_data_threshold=_BIG, suppress_invalid_tags=True)
            warnings.warn(f"{path}: some invalid elements could not be kept in the archive header",
                          DcmxrWarning, stacklevel=2)
        meta = ds.file_meta.to_json_dict(bulk_data_threshold=_BIG) if getattr(ds, "file_meta", None) else {}
    return str(ds.get("SOPInstanceUID", "")), json.dumps(header), json.dumps(meta)


def header_json(path: str, *, deid: Any = None, cache: HeaderCache | None = None) -> tuple[str, str, str]:
    """``(sop_instance_uid, header_json, file_meta_json)`` of one DICOM file.

    Every element but the pixel data (``7FE0,0008/0009/0010``) is kept —
    private elements, sequences and bulk data (inline, base64) included —
    exactly as pydicom's ``Dataset.to_json_dict`` gives it. An element whose
    value DICOM JSON cannot represent (e.g. a DS that is not a number) is kept
    as its raw bytes with VR ``UN`` (``InlineBinary``), with a
    :class:`~dcmxr.errors.DcmxrWarning`; pydicom reads it back with its
    dictionary VR. Files converted by pydicom as a whole drop such elements
    (``suppress_invalid_tags``), also with a warning.

    Parameters
    ----------
    path : str
        A local DICOM file (other paths go through pydicom).
    deid : tuple, optional
        ``(uid_map, salt)``: apply the PS3.15 Basic Profile (pydicom path).
    cache : HeaderCache, optional
        Share converted elements between the files of a series.
    """
    import pydicom

    if deid is not None or not isinstance(path, (str, os.PathLike)) or not os.path.isfile(path):
        return pydicom_header_json(path, deid=deid)
    try:
        with pydicom.config.disable_value_validation():
            sop, head, meta, dropped = _walk_file(os.fspath(path), cache or HeaderCache())
    except (_Fallback, ValueError, struct.error, OSError):
        return pydicom_header_json(path)
    if dropped:
        warnings.warn(f"{path}: elements whose value DICOM JSON cannot represent are kept as UN bytes: "
                      + "; ".join(dropped[:3]), DcmxrWarning, stacklevel=2)
    return sop, head, meta
