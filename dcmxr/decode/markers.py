"""Tiny parsers for codestream headers (JPEG, JPEG-LS, JPEG 2000) and DICOM items.

Only what the decoders need to reproduce pydicom's interpretation: sample
precision, signedness, component ids and APP markers.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from dcmxr.errors import InvalidDicomError

__all__ = ["split_fragments", "JpegInfo", "jpeg_info", "j2k_info"]

_ITEM = b"\xfe\xff\x00\xe0"


def split_fragments(data) -> list:
    """Return the values of the items in an encapsulated frame's byte range.

    ``data`` starts at an item tag (FFFE,E000); a value longer than the
    remaining bytes is clipped (Extended Offset Table lengths may omit the
    padding byte). Returns memoryview slices (no copies).
    """
    view = memoryview(data).cast("B")
    out = []
    pos = 0
    end = len(view)
    while pos + 8 <= end:
        tag = bytes(view[pos : pos + 4])
        if tag != _ITEM:
            if tag == b"\xfe\xff\xdd\xe0":
                break
            raise InvalidDicomError(f"expected a pixel data item at frame byte {pos}, found {tag.hex()}")
        (length,) = struct.unpack("<I", view[pos + 4 : pos + 8])
        out.append(view[pos + 8 : min(pos + 8 + length, end)])
        pos += 8 + length
    if not out:
        raise InvalidDicomError("frame byte range holds no pixel data item")
    return out


@dataclass
class JpegInfo:
    """Header facts of a JPEG / JPEG-LS codestream."""

    precision: int = 0
    components: int = 0
    component_ids: list[int] = field(default_factory=list)
    app: dict[int, bytes] = field(default_factory=dict)
    sof: int = 0


def jpeg_info(data) -> JpegInfo:
    """Parse markers up to the first SOS (reads only the header)."""
    buf = bytes(memoryview(data)[: 64 * 1024])
    info = JpegInfo()
    if not buf.startswith(b"\xff\xd8"):
        return info
    pos = 2
    n = len(buf)
    while pos + 4 <= n:
        if buf[pos] != 0xFF:
            pos += 1
            continue
        marker = buf[pos + 1]
        if marker == 0xFF or marker == 0x01 or 0xD0 <= marker <= 0xD8:
            pos += 2 if marker != 0xFF else 1
            continue
        (length,) = struct.unpack(">H", buf[pos + 2 : pos + 4])
        seg = buf[pos + 4 : pos + 2 + length]
        if 0xE0 <= marker <= 0xEF:
            info.app.setdefault(marker, seg)
        elif marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7):
            if len(seg) >= 6:
                info.sof = marker
                info.precision = seg[0]
                info.components = seg[5]
                info.component_ids = [seg[6 + 3 * i] for i in range(info.components) if 6 + 3 * i < len(seg)]
        elif marker == 0xDA:
            break
        pos += 2 + length
    return info


def j2k_info(data) -> tuple[int, bool] | None:
    """Return (precision, is_signed) of the first component, or None."""
    buf = bytes(memoryview(data)[: 64 * 1024])
    i = buf.find(b"\xff\x4f\xff\x51")
    if i < 0 or len(buf) < i + 4 + 2 + 2 + 32 + 2 + 1:
        return None
    ssiz = buf[i + 4 + 2 + 2 + 32 + 2]
    return (ssiz & 0x7F) + 1, bool(ssiz & 0x80)
