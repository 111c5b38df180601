"""Hostile-input corpus and fuzz target for ``scan`` + ``open_series`` + compute.

A broken or malicious file must end in a documented :mod:`dcmxr.errors`
exception or a :class:`~dcmxr.errors.SkippedFileWarning` skip, quickly, with
bounded memory and without modifying any source file. This module

* walks the element/item structure of a real DICOM file (:func:`boundaries`)
  so mutants can be cut at every structural boundary;
* builds named mutants of real files (:func:`mutants`): truncations, wrong VRs
  and lengths, undefined-length sequences without delimiters, huge
  Rows/Columns/NumberOfFrames, offset tables pointing outside the file,
  corrupt codestreams, non-DICOM bytes;
* runs the whole pipeline on one file or folder and classifies the outcome
  (:func:`check_source`), raising :class:`HostileInputFailure` when dcmxr
  crashes with an undocumented exception, runs too long, allocates too much or
  touches a source file;
* offers a hypothesis fuzz target (:func:`fuzz_once`, :func:`run_fuzz`) and a
  command line for long sessions::

      python -m dcmxr.testing.fuzz --minutes 10 --out fuzz-failures/

Requires ``hypothesis`` for the fuzz session (a test dependency); never
imported by the library.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import struct
import sys
import tempfile
import time
import tracemalloc
import traceback
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "Boundary",
    "Outcome",
    "HostileInputFailure",
    "boundaries",
    "mutants",
    "not_dicom_files",
    "check_source",
    "checksums",
    "fuzz_once",
    "run_fuzz",
    "DEFAULT_SEEDS",
]

#: Seed files under the shared data folder: one per storage kind.
DEFAULT_SEEDS = (
    "transfer_syntax/pydicom/CT_small.dcm",  # explicit VR LE, native
    "transfer_syntax/pydicom/MR_small_implicit.dcm",  # implicit VR LE
    "transfer_syntax/pydicom/MR_small_bigendian.dcm",  # explicit VR BE
    "transfer_syntax/pydicom/MR_small_RLE.dcm",  # RLE
    "transfer_syntax/pydicom/MR_small_jp2klossless.dcm",  # JPEG 2000
    "transfer_syntax/pydicom/MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS
    "transfer_syntax/pydicom/SC_rgb_jpeg_dcmtk.dcm",  # JPEG baseline, RGB
    "transfer_syntax/pydicom/image_dfl.dcm",  # deflated data set
    "transfer_syntax/pydicom-data/emri_small_jpeg_2k_lossless.dcm",  # 10-frame J2K with offset table
    "transfer_syntax/pydicom-data/emri_small_RLE.dcm",  # 10-frame RLE
)

_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_DELIM, _SEQ_DELIM = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_PIXEL = 0x7FE00010
_IMPLICIT, _BIG, _DEFLATED = "1.2.840.10008.1.2", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"


class HostileInputFailure(AssertionError):
    """dcmxr mishandled a hostile input (crash, hang, memory blow-up or a touched source)."""


@dataclass(frozen=True)
class Boundary:
    """One element or item of a DICOM file, by byte offsets.

    Attributes
    ----------
    tag : int
        ``(group << 16) | element``.
    start : int
        Offset of the tag.
    value_start : int
        Offset of the first value byte.
    length_at : int
        Offset of the length field.
    length_size : int
        2 or 4 (bytes of the length field).
    length : int
        Declared length (``0xFFFFFFFF`` undefined).
    vr_at : int or None
        Offset of the explicit VR, None for implicit VR / items.
    little : bool
        Byte order of the length field.
    depth : int
        0 for top-level elements, 1+ inside sequences / pixel data items.
    """

    tag: int
    start: int
    value_start: int
    length_at: int
    length_size: int
    length: int
    vr_at: int | None
    little: bool
    depth: int


@dataclass
class Outcome:
    """What the pipeline did with one hostile source.

    Attributes
    ----------
    result : str
        ``"ok"`` (opened and computed), ``"skipped"`` (scan skipped every file,
        with a SkippedFileWarning), ``"error"`` (a documented dcmxr error).
    errors : list of str
        ``"Type: message"`` of the documented errors met.
    skipped : int
        Files skipped by the scan.
    computed : int
        Series opened and computed without error.
    seconds : float
        Wall-clock time of the whole pipeline.
    peak_bytes : int
        Peak Python/numpy allocation (tracemalloc) during the pipeline.
    """

    result: str
    errors: list[str] = field(default_factory=list)
    skipped: int = 0
    computed: int = 0
    seconds: float = 0.0
    peak_bytes: int = 0


# --------------------------------------------------------------------------- structure
def _meta(data: bytes) -> tuple[str, int, list[Boundary]]:
    out: list[Boundary] = []
    pos, ts = 132, ""
    while pos + 8 <= len(data):
        g, e = struct.unpack_from("<HH", data, pos)
        if g != 2:
            break
        vr = data[pos + 4 : pos + 6]
        if vr in _LONG_VRS:
            if pos + 12 > len(data):
                break
            (n,) = struct.unpack_from("<I", data, pos + 8)
            out.append(Boundary((g << 16) | e, pos, pos + 12, pos + 8, 4, n, pos + 4, True, 0))
            vstart = pos + 12
        else:
            (n,) = struct.unpack_from("<H", data, pos + 6)
            out.append(Boundary((g << 16) | e, pos, pos + 8, pos + 6, 2, n, pos + 4, True, 0))
            vstart = pos + 8
        if e == 0x0010:
            ts = data[vstart : vstart + n].decode("ascii", "replace").rstrip("\x00 ")
        pos = vstart + n
    return ts, pos, out


def _walk(data: bytes, pos: int, end: int, implicit: bool, little: bool, depth: int,
          out: list[Boundary], stop_tag: int | None) -> int:
    e = "<" if little else ">"
    while pos + 8 <= end and len(out) < 100_000:
        g, el = struct.unpack_from(e + "HH", data, pos)
        tag = (g << 16) | el
        if g == 0xFFFE or implicit:
            (n,) = struct.unpack_from(e + "I", data, pos + 4)
            b = Boundary(tag, pos, pos + 8, pos + 4, 4, n, None, little, depth)
        else:
            vr = data[pos + 4 : pos + 6]
            if vr in _LONG_VRS:
                if pos + 12 > end:
                    return end
                (n,) = struct.unpack_from(e + "I", data, pos + 8)
                b = Boundary(tag, pos, pos + 12, pos + 8, 4, n, pos + 4, little, depth)
            else:
                (n,) = struct.unpack_from(e + "H", data, pos + 6)
                b = Boundary(tag, pos, pos + 8, pos + 6, 2, n, pos + 4, little, depth)
        out.append(b)
        if stop_tag is not None and tag == stop_tag:
            return b.value_start
        if n != _UNDEFINED:
            if tag == _ITEM and depth < 8:
                _walk(data, b.value_start, min(end, b.value_start + n), implicit, little, depth + 1, out, None)
            pos = b.value_start + n
            continue
        if tag == _PIXEL:  # encapsulated fragments: items of bytes
            pos = _walk_fragments(data, b.value_start, end, little, depth + 1, out)
        elif tag == _ITEM:
            pos = _walk(data, b.value_start, end, implicit, little, depth + 1, out, _ITEM_DELIM)
        else:
            pos = _walk(data, b.value_start, end, implicit, little, depth + 1, out, _SEQ_DELIM)
    return end


def _walk_fragments(data: bytes, pos: int, end: int, little: bool, depth: int, out: list[Boundary]) -> int:
    while pos + 8 <= end:
        tag = (struct.unpack_from("<H", data, pos)[0] << 16) | struct.unpack_from("<H", data, pos + 2)[0]
        (n,) = struct.unpack_from("<I", data, pos + 4)
        out.append(Boundary(tag, pos, pos + 8, pos + 4, 4, n, None, True, depth))
        if tag != _ITEM or n == _UNDEFINED:
            return pos + 8
        pos += 8 + n
    return end


def boundaries(data: bytes) -> tuple[str, list[Boundary]]:
    """List the elements and items of a DICOM file (meta, data set, sequences, fragments).

    Parameters
    ----------
    data : bytes
        The whole file.

    Returns
    -------
    transfer_syntax : str
    list of Boundary
        In file order. The data set of the deflated transfer syntax is not
        walked (it is compressed); only its meta elements are listed.
    """
    if data[128:132] != b"DICM":
        raise ValueError("seed files must have a DICM preamble")
    ts, pos, out = _meta(data)
    if ts == _DEFLATED:
        return ts, out
    _walk(data, pos, len(data), ts == _IMPLICIT, ts != _BIG, 0, out, None)
    return ts, out


# --------------------------------------------------------------------------- mutants
def _put_length(data: bytearray, b: Boundary, value: int) -> None:
    fmt = ("<" if b.little else ">") + ("H" if b.length_size == 2 else "I")
    data[b.length_at : b.length_at + b.length_size] = struct.pack(fmt, value & (0xFFFF if b.length_size == 2 else 0xFFFFFFFF))


def _set_attributes(data: bytes, **values: object) -> bytes | None:
    """Rewrite attributes with pydicom (pixel data bytes kept as they are)."""
    import io

    import pydicom

    try:
        ds = pydicom.dcmread(io.BytesIO(data))
        for k, v in values.items():
            if v is None:
                if k in ds:
                    del ds[k]
            else:
                setattr(ds, k, v)
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=False)
        return buf.getvalue()
    except Exception:  # noqa: BLE001 - a seed pydicom cannot rewrite gives no mutant
        return None


def _truncations(data: bytes, bounds: list[Boundary], limit: int) -> Iterator[tuple[str, bytes]]:
    cuts = {0, 1, 127, 128, 131, 132}
    for b in bounds:
        cuts.update({b.start, b.start + 4, b.value_start - 1, b.value_start})
        if b.length != _UNDEFINED and b.length > 1:
            cuts.add(b.value_start + b.length // 2)
    cuts = sorted(c for c in cuts if 0 <= c < len(data))
    if len(cuts) > limit:  # keep an even spread, always including both ends
        step = len(cuts) / limit
        cuts = sorted({cuts[int(i * step)] for i in range(limit)} | {cuts[0], cuts[-1]})
    for c in cuts:
        yield f"truncated@{c}", data[:c]


def _wrong_vrs_and_lengths(data: bytes, bounds: list[Boundary], limit: int) -> Iterator[tuple[str, bytes]]:
    top = [b for b in bounds if b.depth == 0 and b.tag >> 16 != 0xFFFE]
    picks = top[:: max(1, len(top) // max(1, limit // 6))]
    for b in picks:
        if b.vr_at is not None:
            for vr in (b"SQ", b"UN", b"\x00\x01", b"OB"):
                m = bytearray(data)
                m[b.vr_at : b.vr_at + 2] = vr
                yield f"vr{vr!r}@{b.start}", bytes(m)
        for value in (0xFFFFFFFF, 0xFFFFFFF0, 0x7FFFFFFF, b.length + 1, max(b.length - 1, 0), 0xFFFF):
            m = bytearray(data)
            _put_length(m, b, value)
            yield f"length{value:#x}@{b.start}", bytes(m)


def _undelimited_sequences(data: bytes, ts: str, bounds: list[Boundary]) -> Iterator[tuple[str, bytes]]:
    """Insert a private undefined-length sequence whose item and sequence are never delimited."""
    top = [b for b in bounds if b.depth == 0 and b.tag >> 16 >= 0x0009]
    if not top or ts == _DEFLATED:
        return
    at = top[0].start
    e = ">" if ts == _BIG else "<"
    inner = struct.pack(e + "HH", 0x0009, 0x0010) + (b"LO" + struct.pack(e + "H", 4) if ts != _IMPLICIT else struct.pack(e + "I", 4)) + b"ABCD"
    if ts == _IMPLICIT:
        sq = struct.pack(e + "HHI", 0x0009, 0x1010, _UNDEFINED)
    else:
        sq = struct.pack(e + "HH", 0x0009, 0x1010) + b"SQ\x00\x00" + struct.pack(e + "I", _UNDEFINED)
    item = struct.pack(e + "HHI", 0xFFFE, 0xE000, _UNDEFINED)
    yield "undelimited_sequence", data[:at] + sq + item + inner + data[at:]
    # an undefined-length sequence running to the end of the file
    yield "undelimited_sequence_at_end", data + sq + item + inner
    # deep nesting: thousands of undefined-length items
    yield "deep_nested_sequences", data[:at] + (sq + item) * 3000 + data[at:]


def _huge_dimensions(data: bytes) -> Iterator[tuple[str, bytes]]:
    for name, values in (
        ("huge_rows", {"Rows": 65535}),
        ("huge_columns", {"Columns": 65535}),
        ("huge_rows_columns", {"Rows": 65535, "Columns": 65535}),
        ("huge_frames", {"NumberOfFrames": 2**31 - 1}),
        ("huge_frames_overflow", {"NumberOfFrames": "99999999999"}),
        ("negative_frames", {"NumberOfFrames": "-5"}),
        ("zero_rows", {"Rows": 0}),
        ("huge_samples", {"SamplesPerPixel": 65535}),
        ("odd_bits", {"BitsAllocated": 12, "BitsStored": 12, "HighBit": 11}),
        ("bits_stored_above_allocated", {"BitsStored": 64, "HighBit": 63}),
    ):
        m = _set_attributes(data, **values)
        if m is not None:
            yield name, m


def _offset_tables(data: bytes, bounds: list[Boundary]) -> Iterator[tuple[str, bytes]]:
    frags = [b for b in bounds if b.tag == _ITEM and b.depth >= 1]
    pix = [b for b in bounds if b.tag == _PIXEL and b.length == _UNDEFINED]
    if not pix or not frags:
        return
    bot = next((b for b in frags if b.start == pix[0].value_start), None)
    if bot is not None and bot.length >= 4:
        for name, value in (("bot_past_eof", 0x7FFFFFF0), ("bot_backwards", 0xFFFFFFFC), ("bot_unaligned", 3)):
            m = bytearray(data)
            for k in range(bot.length // 4):
                struct.pack_into("<I", m, bot.value_start + 4 * k, value if k else 0 if name != "bot_backwards" else value)
            yield name, bytes(m)
        m = bytearray(data)
        _put_length(m, bot, 0x7FFFFFF0)
        yield "bot_length_past_eof", bytes(m)
    for name, offs, lens in (
        ("eot_past_eof", [2**62] * 64, [16] * 64),
        ("eot_huge_length", [0] * 64, [2**40] * 64),
        ("eot_short", [0], [8]),
    ):
        m = _set_attributes(
            data,
            ExtendedOffsetTable=struct.pack(f"<{len(offs)}Q", *offs),
            ExtendedOffsetTableLengths=struct.pack(f"<{len(lens)}Q", *lens),
        )
        if m is not None:
            yield name, m


def _corrupt_codestreams(data: bytes, bounds: list[Boundary]) -> Iterator[tuple[str, bytes]]:
    pix = [b for b in bounds if b.tag == _PIXEL]
    if not pix:
        return
    frags = [b for b in bounds if b.tag == _ITEM and b.depth >= 1 and b.start > pix[0].start and b.length not in (0, _UNDEFINED)]
    if pix[0].length == _UNDEFINED and frags:
        f = frags[-1]  # the last fragment (the first may be the offset table)
        body = slice(f.value_start, f.value_start + f.length)
        for name, fill in (("codestream_zeroed", b"\x00"), ("codestream_ff", b"\xff")):
            m = bytearray(data)
            m[body] = fill * f.length
            yield name, bytes(m)
        m = bytearray(data)
        for k in range(f.value_start + 2, f.value_start + f.length, 7):  # keep the SOI/SOC marker
            m[k] ^= 0x5A
        yield "codestream_bitflips", bytes(m)
        m = bytearray(data)
        half = f.length // 2 & ~1
        m[f.value_start + half : f.value_start + f.length] = b"\x00" * (f.length - half)
        yield "codestream_half_zeroed", bytes(m)
        m = bytearray(data)  # RLE header claiming 15 segments at absurd offsets
        m[f.value_start : f.value_start + 64] = struct.pack("<16I", 15, *([0x7FFFFFFF] * 15))[:64]
        yield "codestream_bad_rle_header", bytes(m)
        # the fragment shortened: item length smaller, rest becomes garbage items
        m = bytearray(data)
        _put_length(m, f, max(f.length // 3 & ~1, 2))
        yield "fragment_shortened", bytes(m)
    else:
        m = bytearray(data)
        _put_length(m, pix[0], _UNDEFINED)
        yield "native_as_undefined", bytes(m)


def not_dicom_files() -> list[tuple[str, bytes]]:
    """Non-DICOM contents that arrive with ``.dcm`` names."""
    return [
        ("empty", b""),
        ("one_byte", b"\x00"),
        ("text", b"This is not a DICOM file\n" * 20),
        ("png_header", b"\x89PNG\r\n\x1a\n" + bytes(200)),
        ("zip_header", b"PK\x03\x04" + bytes(500)),
        ("preamble_only", bytes(128) + b"DICM"),
        ("preamble_garbage", bytes(128) + b"DICM" + bytes(range(256)) * 4),
        ("all_ff", b"\xff" * 4096),
        ("group8_garbage", b"\x08\x00\x05\x00CS" + b"\xff" * 1000),
        ("group8_implicit_huge", b"\x08\x00\x05\x00" + b"\xf0\xff\xff\x7f" + b"x" * 100),
        ("big_zero_file", bytes(1 << 20)),
    ]


def mutants(data: bytes, *, truncations: int = 60, lengths: int = 30) -> Iterator[tuple[str, bytes]]:
    """Hostile variants of one real DICOM file.

    Parameters
    ----------
    data : bytes
        A valid DICOM file with a DICM preamble.
    truncations : int
        At most this many truncation points (spread over every structural
        boundary: element tags, lengths, value starts and middles, items).
    lengths : int
        About this many wrong-VR / wrong-length variants.

    Yields
    ------
    (name, bytes)
    """
    ts, bounds = boundaries(data)
    yield from _truncations(data, bounds, truncations)
    yield from _wrong_vrs_and_lengths(data, bounds, lengths)
    yield from _undelimited_sequences(data, ts, bounds)
    yield from _huge_dimensions(data)
    yield from _offset_tables(data, bounds)
    yield from _corrupt_codestreams(data, bounds)


# --------------------------------------------------------------------------- the pipeline check
def checksums(root: str | os.PathLike) -> dict[str, str]:
    """SHA-256 of every regular file under ``root`` (or of ``root`` itself); symlinks are not followed."""
    root = Path(root)
    files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()]
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(files)}


def _pipeline(source: str, max_series: int) -> Outcome:
    import dcmxr
    from dcmxr.errors import DcmxrError, SkippedFileWarning

    out = Outcome("ok")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = dcmxr.scan(source, progress=False)
        out.skipped = len(table.attrs.get("skipped", []))
        warned = any(issubclass(w.category, SkippedFileWarning) for w in caught)
        if out.skipped and not warned:
            raise HostileInputFailure(f"{out.skipped} files skipped without a SkippedFileWarning")
        uids = [u for u in table["series_instance_uid"].dropna().unique()][:max_series] if len(table) else []
        if not uids and out.skipped:
            out.result = "skipped"
        for uid in uids:
            try:
                da = dcmxr.open_series(table, series=uid, chunks=1)
                da.compute(scheduler="synchronous")
                out.computed += 1
            except DcmxrError as exc:
                out.result = "error"
                out.errors.append(f"{type(exc).__name__}: {exc}")
        try:
            dcmxr.scan(source, strict=True, progress=False)
        except DcmxrError as exc:
            out.errors.append(f"strict {type(exc).__name__}: {exc}")
    return out


def check_source(
    source: str | os.PathLike,
    *,
    time_limit: float = 10.0,
    memory_limit: int = 256 * 2**20,
    max_series: int = 3,
    protect: str | os.PathLike | None = None,
) -> Outcome:
    """Run scan + open_series + compute (and a strict scan) on a hostile source.

    Parameters
    ----------
    source : path
        A file or folder.
    time_limit : float
        Seconds the whole pipeline may take.
    memory_limit : int
        Peak bytes (tracemalloc: Python objects and numpy buffers) allowed.
    max_series : int
        Series opened and computed at most.
    protect : path, optional
        Folder or file whose checksums must not change (default ``source``).

    Returns
    -------
    Outcome

    Raises
    ------
    HostileInputFailure
        An exception outside ``dcmxr.errors``, a skip without warning, the
        time or memory bound exceeded, or a checksum changed.
    """
    source = os.fspath(source)
    guarded = protect if protect is not None else source
    before = checksums(guarded)
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    t0 = time.perf_counter()
    try:
        out = _pipeline(source, max_series)
    except HostileInputFailure:
        raise
    except Exception as exc:  # noqa: BLE001 - anything undocumented is the failure we look for
        raise HostileInputFailure(
            f"{source}: undocumented {type(exc).__name__}: {exc}\n{traceback.format_exc()}"
        ) from exc
    finally:
        seconds = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
        if not was_tracing:
            tracemalloc.stop()
    out.seconds, out.peak_bytes = seconds, peak
    if seconds > time_limit:
        raise HostileInputFailure(f"{source}: took {seconds:.1f} s (limit {time_limit} s)")
    if peak > memory_limit:
        raise HostileInputFailure(f"{source}: peak allocation {peak / 2**20:.0f} MiB (limit {memory_limit / 2**20:.0f} MiB)")
    after = checksums(guarded)
    if after != before:
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        raise HostileInputFailure(f"source files changed: {changed[:5]}")
    return out


# --------------------------------------------------------------------------- fuzzing
def fuzz_once(seed: bytes, edits: list[tuple[str, int, bytes]], workdir: str | os.PathLike, **limits) -> Outcome:
    """Apply byte edits to a seed file, write it under ``workdir`` and check it.

    Parameters
    ----------
    seed : bytes
        A real DICOM file.
    edits : list of (op, position, payload)
        ``op`` is ``"overwrite"``, ``"insert"``, ``"delete"`` (``len(payload)``
        bytes) or ``"truncate"``; ``position`` is taken modulo the length.
    workdir : path
        Where the mutant is written (a fresh ``case.dcm`` each call).
    **limits
        Passed to :func:`check_source`.
    """
    data = bytearray(seed)
    for op, pos, payload in edits:
        pos = pos % (len(data) + 1)
        if op == "overwrite":
            data[pos : pos + len(payload)] = payload
        elif op == "insert":
            data[pos:pos] = payload
        elif op == "delete":
            del data[pos : pos + max(1, len(payload))]
        elif op == "truncate":
            del data[pos:]
    path = Path(workdir) / "case.dcm"
    path.write_bytes(bytes(data))
    return check_source(path, **limits)


def edit_strategy():
    """Hypothesis strategy for the ``edits`` of :func:`fuzz_once`."""
    from hypothesis import strategies as st

    interesting = st.sampled_from([b"\xff\xff\xff\xff", b"\xf0\xff\xff\x7f", b"\x00\x00", b"SQ", b"UN", b"OB",
                                   b"\xfe\xff\x00\xe0", b"\xfe\xff\xdd\xe0", b"\xe0\x7f\x10\x00", b"\xff\xd8"])
    payload = st.one_of(interesting, st.binary(min_size=1, max_size=16))
    edit = st.tuples(st.sampled_from(["overwrite", "overwrite", "insert", "delete", "truncate"]),
                     st.integers(min_value=0, max_value=1 << 20), payload)
    return st.lists(edit, min_size=1, max_size=4)


def run_fuzz(seeds: list[Path], *, max_examples: int, workdir: str | os.PathLike,
             random_seed: int | None = None, **limits) -> int:
    """Run one hypothesis session over ``seeds``; raise on the first (shrunk) failure.

    Returns
    -------
    int
        Examples run.
    """
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as hseed
    from hypothesis import strategies as st

    blobs = [p.read_bytes() for p in seeds]
    count = [0]

    @settings(max_examples=max_examples, deadline=None, database=None, derandomize=random_seed is None,
              suppress_health_check=list(HealthCheck))
    @given(st.integers(min_value=0, max_value=len(blobs) - 1), edit_strategy())
    def target(index: int, edits: list) -> None:
        count[0] += 1
        fuzz_once(blobs[index], edits, workdir, **limits)

    if random_seed is not None:
        target = hseed(random_seed)(target)
    target()
    return count[0]


def _default_data() -> Path:
    env = os.environ.get("DCMXR_TEST_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared" / "data"


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m dcmxr.testing.fuzz --minutes 10``."""
    p = argparse.ArgumentParser(prog="python -m dcmxr.testing.fuzz", description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=10.0, help="how long to fuzz (default 10)")
    p.add_argument("--data", type=Path, default=_default_data(), help="shared data folder holding the seeds")
    p.add_argument("--batch", type=int, default=200, help="examples per hypothesis session")
    p.add_argument("--out", type=Path, default=None, help="folder to keep failing inputs in")
    args = p.parse_args(argv)
    seeds = [args.data / s for s in DEFAULT_SEEDS if (args.data / s).exists()]
    if not seeds:
        print(f"no seed files under {args.data}", file=sys.stderr)
        return 2
    stop = time.monotonic() + 60 * args.minutes
    total, session = 0, 0
    while time.monotonic() < stop:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                total += run_fuzz(seeds, max_examples=args.batch, workdir=tmp, random_seed=session)
            except HostileInputFailure as exc:
                if args.out is not None:
                    args.out.mkdir(parents=True, exist_ok=True)
                    kept = args.out / f"failure-{session}.dcm"
                    (Path(tmp) / "case.dcm").replace(kept)
                    print(f"failing input kept at {kept}", file=sys.stderr)
                print(f"FAILURE after {total} examples:\n{exc}", file=sys.stderr)
                return 1
        session += 1
        print(f"{total} examples, no failure ({session} sessions)", flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
