"""Byte-range reads from local files and fsspec URLs.

Every function opens what it needs and closes it before returning, so nothing
here leaves a file handle behind in a Dask graph.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import IO, Union

from dcmxr.errors import DcmxrError, InvalidDicomError, missing_dependency

__all__ = ["read_ranges", "read_inflated", "coalesce_ranges", "open_binary", "is_local"]

#: Bytes-like results: ``bytes`` or a (writeable) ``memoryview`` slice.
Buffer = Union[bytes, bytearray, memoryview]

#: Default largest gap (bytes) bridged when coalescing ranges.
LOCAL_MAX_GAP = 16 * 1024
REMOTE_MAX_GAP = 512 * 1024


def is_local(url: str | os.PathLike) -> bool:
    """True for plain paths and ``file://`` URLs."""
    url = os.fspath(url)
    return "://" not in url or url.startswith("file://")


def _local_path(url: str) -> str:
    return url[len("file://") :] if url.startswith("file://") else url


@contextmanager
def open_binary(url: str | os.PathLike, storage_options: dict | None = None) -> Iterator[IO[bytes]]:
    """Open a local path or fsspec URL for binary reading (closed on exit)."""
    url = os.fspath(url)
    if is_local(url):
        with open(_local_path(url), "rb") as fh:
            yield fh
        return
    try:
        import fsspec
    except ImportError:  # pragma: no cover - fsspec is a core dependency
        raise missing_dependency("fsspec", "remote") from None
    with fsspec.open(url, "rb", **(storage_options or {})) as fh:
        yield fh


def coalesce_ranges(
    ranges: Sequence[tuple[int, int]], max_gap: int
) -> list[tuple[int, int, list[int]]]:
    """Merge ranges that overlap or lie at most ``max_gap`` bytes apart.

    Parameters
    ----------
    ranges : sequence of (offset, length)
    max_gap : int
        Largest hole (bytes) read through to join two ranges.

    Returns
    -------
    list of (start, stop, indices)
        Merged blocks in file order and the indices of ``ranges`` each covers.
    """
    order = sorted(range(len(ranges)), key=lambda i: ranges[i][0])
    blocks: list[tuple[int, int, list[int]]] = []
    for i in order:
        off, n = ranges[i]
        if off < 0 or n < 0:
            raise ValueError(f"invalid byte range ({off}, {n})")
        if blocks and off <= blocks[-1][1] + max_gap:
            start, stop, idx = blocks[-1]
            idx.append(i)
            blocks[-1] = (start, max(stop, off + n), idx)
        else:
            blocks.append((off, off + n, [i]))
    return blocks


def _pread_into(fd: int, buf: bytearray, offset: int) -> int:
    view = memoryview(buf)
    got = 0
    while got < len(buf):
        if hasattr(os, "preadv"):
            n = os.preadv(fd, [view[got:]], offset + got)
        else:  # pragma: no cover - Windows
            os.lseek(fd, offset + got, os.SEEK_SET)
            n = os.readv(fd, [view[got:]])
        if n == 0:
            break
        got += n
    return got


def read_ranges(
    url: str | os.PathLike,
    ranges: Sequence[tuple[int, int]],
    storage_options: dict | None = None,
    *,
    max_gap: int | None = None,
) -> list[Buffer]:
    """Read byte ranges of one file in as few requests as possible.

    Parameters
    ----------
    url : str or path
        Local path, ``file://`` URL or any fsspec URL.
    ranges : sequence of (offset, length)
        Byte ranges, in any order; they may overlap.
    storage_options : dict, optional
        Passed to fsspec for remote URLs.
    max_gap : int, optional
        Ranges closer than this are fetched in one request (default 16 KiB
        locally, 512 KiB remotely).

    Returns
    -------
    list of bytes-like
        One buffer per range, in the order given. Local reads return
        writeable ``memoryview`` slices of one buffer per merged block (so
        ``np.frombuffer`` gives writeable arrays without a copy); remote
        reads return ``bytes`` or ``memoryview`` slices.

    Raises
    ------
    InvalidDicomError
        When the file ends before a range does (truncated file).
    """
    url = os.fspath(url)
    if not ranges:
        return []
    local = is_local(url)
    if max_gap is None:
        max_gap = LOCAL_MAX_GAP if local else REMOTE_MAX_GAP
    blocks = coalesce_ranges(ranges, max_gap)
    if local:
        data = _read_local(_local_path(url), blocks)
    else:
        data = _read_fsspec(url, blocks, storage_options)
    out: list[Buffer] = [b""] * len(ranges)
    for (start, stop, idx), block in zip(blocks, data):
        if len(block) > stop - start:
            raise InvalidDicomError(
                f"{url}: asked for bytes {start}-{stop} ({stop - start} bytes) and got {len(block)}: the server "
                f"ignores HTTP Range requests, so byte ranges cannot be read from it"
            )
        if len(block) < stop - start:
            raise InvalidDicomError(
                f"{url}: truncated file: wanted bytes {start}-{stop} but the file ends at "
                f"{start + len(block)}"
            )
        if len(idx) == 1 and ranges[idx[0]] == (start, stop - start):
            out[idx[0]] = block
            continue
        view = memoryview(block)
        for i in idx:
            off, n = ranges[i]
            out[i] = view[off - start : off - start + n]
    return out


def _read_local(path: str, blocks: list[tuple[int, int, list[int]]]) -> list[Buffer]:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        out: list[Buffer] = []
        for start, stop, _ in blocks:
            buf = bytearray(stop - start)
            got = _pread_into(fd, buf, start)
            out.append(buf if got == len(buf) else buf[:got])
        return out
    finally:
        os.close(fd)


def _read_fsspec(url: str, blocks: list[tuple[int, int, list[int]]], storage_options: dict | None) -> list[Buffer]:
    try:
        import fsspec
    except ImportError:  # pragma: no cover
        raise missing_dependency("fsspec", "remote") from None
    from dcmxr.catalog.sources import with_default_timeouts

    fs, path = fsspec.core.url_to_fs(url, **with_default_timeouts(url, storage_options))
    starts = [b[0] for b in blocks]
    stops = [b[1] for b in blocks]
    try:
        data = fs.cat_ranges([path] * len(blocks), starts, stops, on_error="raise")
    except (OSError, DcmxrError):
        raise
    except (AttributeError, NotImplementedError):  # pragma: no cover - very old fsspec
        with fs.open(path, "rb") as fh:
            data = []
            for start, stop in zip(starts, stops):
                fh.seek(start)
                data.append(fh.read(stop - start))
    except Exception as exc:  # noqa: BLE001 - backend errors (HTTP status ...) surface as OSError
        raise OSError(f"{url}: {type(exc).__name__}: {exc}") from exc
    return list(data)


def read_inflated(
    url: str | os.PathLike,
    deflate_from: int,
    ranges: Sequence[tuple[int, int]],
    storage_options: dict | None = None,
) -> list[bytes]:
    """Read byte ranges of the inflated stream of a deflated data set.

    The raw deflate stream (zlib ``wbits=-15``) starting at file offset
    ``deflate_from`` is inflated sequentially up to the end of the last range;
    only the inflated bytes from the first range on are kept.

    Parameters
    ----------
    url : str or path
    deflate_from : int
        File offset of the first deflated byte.
    ranges : sequence of (offset, length)
        Offsets relative to the inflated stream.
    storage_options : dict, optional

    Returns
    -------
    list of bytes
    """
    if not ranges:
        return []
    lo = min(o for o, _ in ranges)
    hi = max(o + n for o, n in ranges)
    kept = bytearray()
    pos = 0  # inflated offset of the next byte the inflater produces
    inflater = zlib.decompressobj(-15)
    with open_binary(url, storage_options) as fh:
        fh.seek(deflate_from)
        while pos < hi:
            chunk = fh.read(1 << 20)
            try:
                out = inflater.decompress(chunk) if chunk else inflater.flush()
            except zlib.error as exc:
                raise InvalidDicomError(f"{os.fspath(url)}: corrupt deflated data set: {exc}") from None
            if lo < pos + len(out):
                kept += out[max(0, lo - pos) :]
            pos += len(out)
            if not chunk or inflater.eof:
                break
    if pos < hi:
        raise InvalidDicomError(
            f"{os.fspath(url)}: truncated deflated data set: wanted inflated byte {hi}, stream ends at {pos}"
        )
    return [bytes(kept[o - lo : o - lo + n]) for o, n in ranges]
