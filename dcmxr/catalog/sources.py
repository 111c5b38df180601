"""Turn what a user passes (folder, file, list, glob, DICOMDIR, fsspec URL)
into a flat list of file locations, and open byte readers on them.
"""

from __future__ import annotations

import glob as _glob
import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Callable

from ..errors import InvalidDicomError, NotDicomError, SkippedFileWarning

Source = str | os.PathLike | Sequence[str | os.PathLike]

_SKIP_NAMES = {".DS_Store", "Thumbs.db", "desktop.ini"}


def is_url(path: str) -> bool:
    """True for ``proto://...`` locations other than ``file://``."""
    return "://" in path and not path.startswith("file://")


def _strip_file(path: str) -> str:
    return path[len("file://") :] if path.startswith("file://") else path


def expand(source: Source, *, recursive: bool = True, storage_options: dict | None = None) -> list[str]:
    """List the files a source names.

    Parameters
    ----------
    source : path, URL, glob or sequence of them
        A folder (walked recursively), a file, a DICOMDIR (its referenced
        files), a glob pattern, an fsspec URL (folder or file), or a list of any
        of these.
    recursive : bool
        Walk sub-folders.
    storage_options : dict, optional
        Passed to fsspec for URLs.

    Returns
    -------
    list of str
        File paths / URLs in a stable (sorted) order, duplicates removed.
    """
    if isinstance(source, (str, os.PathLike)):
        items: Iterable[Any] = [source]
    else:
        items = source
    out: list[str] = []
    for item in items:
        s = _strip_file(os.fspath(item))
        if is_url(s):
            out.extend(_expand_url(s, recursive, storage_options or {}))
        elif os.path.isdir(s):
            dicomdir = os.path.join(s, "DICOMDIR")
            if os.path.isfile(dicomdir) and not recursive:
                out.extend(read_dicomdir(dicomdir))
            else:
                out.extend(_walk(s, recursive))
        elif os.path.isfile(s):
            if os.path.basename(s).upper() == "DICOMDIR":
                out.extend(read_dicomdir(s))
            else:
                out.append(s)
        elif any(ch in s for ch in "*?["):
            out.extend(sorted(p for p in _glob.glob(s, recursive=True) if os.path.isfile(p)))
        else:
            raise FileNotFoundError(f"no such file, folder or pattern: {s!r}")
    seen: set[str] = set()
    unique = []
    for p in out:
        if p not in seen:
            seen.add(p)
            unique.append(p)
    return unique


def _walk(root: str, recursive: bool) -> list[str]:
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or name in _SKIP_NAMES or name.upper() == "DICOMDIR":
                continue
            files.append(os.path.join(dirpath, name))
        if not recursive:
            break
    return files


def _expand_url(url: str, recursive: bool, storage_options: dict) -> list[str]:
    import fsspec

    fs, path = fsspec.core.url_to_fs(url, **with_default_timeouts(url, storage_options))
    protocol = fs.protocol[0] if isinstance(fs.protocol, (tuple, list)) else fs.protocol
    if protocol in ("http", "https") and not path.endswith("/"):
        # HTTP has no directories: fsspec's isdir GETs the whole resource to look for links,
        # which for a DICOM file downloads all of it. Only URLs ending in "/" are listings.
        paths = [path]
    elif any(ch in path for ch in "*?["):
        paths = _as_oserror(url, lambda: fs.glob(path))
    elif _isdir(fs, path):
        paths = _as_oserror(url, lambda: fs.find(path, maxdepth=None if recursive else 1))
    else:
        paths = [path]
    return [fs.unstrip_protocol(p) if protocol not in ("http", "https") else p for p in sorted(paths)]


def _isdir(fs: Any, path: str) -> bool:
    """``fs.isdir`` that answers False when the server refuses to say (403, 500 ...):
    the location is then read as a file, and a failing read skips it."""
    try:
        return bool(fs.isdir(path))
    except Exception:  # noqa: BLE001 - backend-specific errors
        return False


def read_dicomdir(path: str) -> list[str]:
    """Files referenced by a DICOMDIR (existing ones only), in directory order."""
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError as PydicomInvalid

    try:
        ds = dcmread(path)
    except (PydicomInvalid, OSError) as exc:
        raise NotDicomError(f"{path}: not a readable DICOMDIR ({exc})") from exc
    root = os.path.dirname(os.path.abspath(path))
    out = []
    escaping = []
    for rec in ds.get("DirectoryRecordSequence") or []:
        ref = rec.get("ReferencedFileID")
        if ref is None:
            continue
        parts = [ref] if isinstance(ref, str) else list(ref)
        full = os.path.normpath(os.path.join(root, *(str(p) for p in parts)))
        if os.path.commonpath([root, full]) != root:
            # ".." or absolute components: a DICOMDIR only references files below itself
            escaping.append("\\".join(str(p) for p in parts))
            continue
        if os.path.isfile(full):
            out.append(full)
        else:  # case-insensitive media
            for cand in (full.lower(), full.upper()):
                if os.path.isfile(cand):
                    out.append(cand)
                    break
    if escaping:
        warnings.warn(
            f"{path}: ignored {len(escaping)} ReferencedFileID(s) pointing outside the DICOMDIR's folder "
            f"(e.g. {escaping[0]!r})",
            SkippedFileWarning,
            stacklevel=3,
        )
    return out


def local_reader(path: str) -> tuple[Callable[[int, int], bytes], int, float, Callable[[], None]]:
    """Open a local file for header reads.

    Returns
    -------
    read, size, mtime, close
    """
    fd = os.open(path, os.O_RDONLY)
    st = os.fstat(fd)

    def read(offset: int, n: int) -> bytes:
        return os.pread(fd, n, offset)

    return read, st.st_size, st.st_mtime, lambda: os.close(fd)


def _as_oserror(url: str, fn: Callable[[], Any]) -> Any:
    """Run an fsspec call; errors that are not OSError (e.g. aiohttp's ClientResponseError
    for HTTP 403/500) become OSError naming the URL, so scans skip the file."""
    try:
        return fn()
    except OSError:
        raise
    except Exception as exc:  # noqa: BLE001 - fsspec backends raise their own types
        raise OSError(f"{url}: {type(exc).__name__}: {exc}") from exc


#: default per-read timeouts (seconds) for http(s) URLs when storage_options give none
HTTP_CONNECT_TIMEOUT = 10.0
HTTP_READ_TIMEOUT = 60.0


def with_default_timeouts(url: str, storage_options: dict | None) -> dict:
    """``storage_options`` plus connect/read timeouts for http(s) URLs, unless the caller set any.

    fsspec's HTTP filesystem otherwise waits up to aiohttp's 5-minute total
    timeout on a stalled server.
    """
    opts = dict(storage_options or {})
    if not url.startswith(("http://", "https://")):
        return opts
    client_kwargs = dict(opts.get("client_kwargs") or {})
    if "timeout" not in client_kwargs:
        try:
            import aiohttp
        except ImportError:  # pragma: no cover - fsspec's HTTP needs it anyway
            return opts
        client_kwargs["timeout"] = aiohttp.ClientTimeout(total=None, sock_connect=HTTP_CONNECT_TIMEOUT,
                                                         sock_read=HTTP_READ_TIMEOUT)
        opts["client_kwargs"] = client_kwargs
    return opts


def checked_range(url: str, data: bytes, start: int, stop: int) -> bytes:
    """``data`` if it can be bytes ``[start, stop)`` of ``url``; a server that ignored the Range
    header (and sent more) raises :class:`~dcmxr.errors.InvalidDicomError` instead of giving
    the wrong bytes."""
    if len(data) > stop - start:
        raise InvalidDicomError(
            f"{url}: asked for bytes {start}-{stop} ({stop - start} bytes) and got {len(data)}: the server "
            f"ignores HTTP Range requests, so byte ranges cannot be read from it"
        )
    return data


def remote_reader(url: str, storage_options: dict | None = None):
    """Like :func:`local_reader` for an fsspec URL (ranged reads).

    Backend errors other than ``OSError`` (HTTP status errors, ...) are
    raised as ``OSError``; http(s) reads time out (:func:`with_default_timeouts`);
    a server that ignores ranges raises :class:`~dcmxr.errors.InvalidDicomError`.
    """
    import fsspec

    fs, path = fsspec.core.url_to_fs(url, **with_default_timeouts(url, storage_options))
    info = _as_oserror(url, lambda: fs.info(path))
    size = info.get("size")
    mtime = info.get("mtime") or info.get("LastModified") or info.get("last_modified") or 0.0
    try:
        mtime = float(mtime)
    except (TypeError, ValueError):
        mtime = 0.0

    def read(offset: int, n: int) -> bytes:
        end = offset + n if size is None else min(offset + n, size)
        if end <= offset:
            return b""
        return checked_range(url, _as_oserror(url, lambda: fs.cat_file(path, start=offset, end=end)), offset, end)

    return read, size, mtime, lambda: None


def open_reader(location: str, storage_options: dict | None = None):
    """Reader for a local path or URL: ``(read, size, mtime, close)``."""
    if is_url(location):
        return remote_reader(location, storage_options)
    return local_reader(location)


def as_local_path(location: str) -> Path | None:
    """Path object for local locations, None for URLs."""
    return None if is_url(location) else Path(location)
