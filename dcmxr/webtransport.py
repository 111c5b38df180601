"""HTTP for DICOMweb: bounded GETs, multipart/related bodies, Accept headers per transfer syntax.

Small and independent of xarray: :mod:`dcmxr.dicomweb` (series metadata and
frames) and the WSI DICOMweb reader use it.

* :func:`http_get` — one GET with a (connect, read) timeout and a bounded
  number of retries for transient failures (connection errors, timeouts,
  429/502/503/504). Never waits forever.
* :func:`parse_multipart` — the parts of a ``multipart/related`` body with
  each part's ``Content-Type`` and its ``transfer-syntax`` parameter (falling
  back to the message's ``type`` parameter), checking that the body ends with
  the closing boundary (a truncated body is an error, not short frames).
* :func:`frame_accept_headers` — the ``Accept`` values to try, in order, to
  get a frame in its *stored* transfer syntax (``transfer-syntax=*``, then the
  syntax's own media type) before asking the server to decode it to Explicit
  VR Little Endian.
* :func:`resolve_bulkdata_uri` — a BulkDataURI as an URL under the service
  root the client uses (servers behind proxies or relays often write their own
  host and port into it).
"""

from __future__ import annotations

import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

from .decode import syntax as ts
from .errors import InvalidDicomError

__all__ = [
    "HTTPStatusError",
    "Part",
    "http_get",
    "parse_multipart",
    "frame_accept_headers",
    "resolve_bulkdata_uri",
    "media_type_params",
]

#: statuses worth asking again (after a short pause)
RETRY_STATUSES = frozenset({429, 502, 503, 504})
#: (connect, read) seconds
DEFAULT_TIMEOUT = (10.0, 60.0)
DEFAULT_RETRIES = 3

_EXPLICIT_LE_ACCEPT = f'multipart/related; type="application/octet-stream"; transfer-syntax={ts.EXPLICIT_VR_LE}'
_AS_STORED_ACCEPT = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'

#: PS3.18 Table 8.7.3-5: media type of a compressed frame, per transfer syntax
_FRAME_MEDIA_TYPES = {
    ts.JPEG_BASELINE: "image/jpeg", ts.JPEG_EXTENDED: "image/jpeg", ts.JPEG_LOSSLESS: "image/jpeg",
    ts.JPEG_LOSSLESS_SV1: "image/jpeg", ts.JPEG_LS_LOSSLESS: "image/jls", ts.JPEG_LS_NEAR_LOSSLESS: "image/jls",
    ts.JPEG_2000_LOSSLESS: "image/jp2", ts.JPEG_2000: "image/jp2", ts.HTJ2K_LOSSLESS: "image/jphc",
    ts.HTJ2K_LOSSLESS_RPCL: "image/jphc", ts.HTJ2K: "image/jphc", ts.RLE_LOSSLESS: "image/dicom-rle",
}


class HTTPStatusError(OSError):
    """A DICOMweb request answered with an error status (``status`` holds it)."""

    def __init__(self, url: str, status: int, body: bytes = b""):
        detail = body[:300].decode("utf-8", "replace").strip()
        super().__init__(f"{url}: HTTP {status}" + (f" ({detail})" if detail else ""))
        self.url = url
        self.status = status


@dataclass(frozen=True)
class Part:
    """One part of a multipart/related body."""

    content_type: str
    transfer_syntax: str | None
    data: bytes


#: ``Accept-Encoding`` of pixel and bulk-data requests (see :func:`_session`)
PIXEL_ACCEPT_ENCODING = "identity"


def _session(headers: dict | None):
    """A ``requests.Session`` (one connection pool, keep-alive) for frame and bulk-data requests.

    It asks for ``Accept-Encoding: identity`` unless ``headers`` say otherwise:
    requests offers ``gzip, deflate`` by default, and servers that honour it
    for single-part answers (Orthanc does) spend far longer compressing a
    frame than sending it (Orthanc 1.10: ~50-100 ms to gzip a 0.5 MB CT frame,
    against ~2-4 ms to send it as is). Pixels are already compressed or
    compress poorly; a metadata request (JSON) keeps gzip.
    """
    import requests

    s = requests.Session()
    s.headers["Accept-Encoding"] = PIXEL_ACCEPT_ENCODING
    if headers:
        s.headers.update(headers)
    return s


def http_get(session: Any, url: str, *, accept: str | None = None, timeout: tuple[float, float] = DEFAULT_TIMEOUT,
             retries: int = DEFAULT_RETRIES, backoff: float = 0.2):
    """GET ``url`` and return the ``requests.Response`` (status 2xx, body read).

    Parameters
    ----------
    session : requests.Session
    url : str
    accept : str, optional
        The ``Accept`` header.
    timeout : (float, float)
        Connect and read timeouts in seconds (the read timeout bounds every
        wait for data, so a stalled server cannot hang the caller).
    retries : int
        Attempts for transient failures (connection errors, timeouts, bodies
        cut short, 429/502/503/504); other statuses fail at once.
    backoff : float
        Seconds before the second attempt, doubled for each further one.

    Raises
    ------
    HTTPStatusError
        An error status (after retries for the transient ones).
    OSError
        The connection failed, timed out or was cut every time.
    """
    import requests

    headers = {"Accept": accept} if accept else None
    last: Exception | None = None
    for attempt in range(max(1, retries)):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        try:
            r = session.get(url, headers=headers, timeout=timeout)
            body = r.content  # reads the whole body within the read timeout
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                requests.exceptions.ContentDecodingError) as exc:
            last = exc
            continue
        if r.status_code in RETRY_STATUSES:
            last = HTTPStatusError(url, r.status_code, body)
            continue
        if r.status_code >= 400:
            raise HTTPStatusError(url, r.status_code, body)
        declared = r.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) != len(body) \
                and not r.headers.get("Content-Encoding"):
            last = OSError(f"{url}: body cut short ({len(body)} of {declared} bytes)")
            continue
        return r
    if isinstance(last, HTTPStatusError):
        raise last
    raise OSError(f"{url}: request failed after {max(1, retries)} attempts: {last}") from last


def media_type_params(value: str) -> tuple[str, dict[str, str]]:
    """Split ``type/sub; a=1; b="x; y"`` into the media type and its parameters (names lower-cased)."""
    out: dict[str, str] = {}
    items: list[str] = []
    cur, quoted = [], False
    for ch in value:
        if ch == '"':
            quoted = not quoted
        if ch == ";" and not quoted:
            items.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    items.append("".join(cur))
    media = items[0].strip().lower()
    for item in items[1:]:
        name, _, val = item.partition("=")
        out[name.strip().lower()] = val.strip().strip('"')
    return media, out


def _syntax_of(content_type: str) -> tuple[str, str | None]:
    media, params = media_type_params(content_type)
    syntax = params.get("transfer-syntax")
    if syntax is None and "type" in params:  # Orthanc: type="image/jls; transfer-syntax=..."
        inner, inner_params = media_type_params(params["type"])
        syntax = inner_params.get("transfer-syntax")
        if media == "multipart/related":
            media = inner
    return media, syntax


def parse_multipart(content_type: str, body: bytes, url: str = "") -> list[Part]:
    """The parts of a ``multipart/related`` response.

    Parameters
    ----------
    content_type : str
        The response's ``Content-Type``.
    body : bytes
    url : str
        For error messages.

    Returns
    -------
    list of Part
        Each with its own media type and transfer syntax (the part's
        ``Content-Type``, else the message's ``type`` parameter).

    Raises
    ------
    InvalidDicomError
        Not multipart/related, no boundary, or the body ends before the
        closing boundary (truncated).
    """
    media, params = media_type_params(content_type)
    if media != "multipart/related":
        # a single-part answer some servers send: the body is the one part
        m, s = _syntax_of(content_type)
        return [Part(m, s, body)]
    boundary = params.get("boundary")
    if not boundary:
        raise InvalidDicomError(f"{url}: multipart/related response without a boundary")
    default_media, default_syntax = _syntax_of(content_type)
    marker = b"--" + boundary.encode("latin-1")
    end = body.rfind(marker + b"--")
    if end < 0:
        raise InvalidDicomError(f"{url}: multipart body truncated (no closing boundary)")
    start = body.find(marker)
    if start < 0:
        raise InvalidDicomError(f"{url}: multipart body without a boundary line")
    stop = end - 2 if body[end - 2 : end] == b"\r\n" else end  # that CRLF belongs to the delimiter
    chunks = body[start + len(marker) : stop].split(b"\r\n" + marker)
    parts = []
    for chunk in chunks:
        head, sep, data = chunk.partition(b"\r\n\r\n")  # the chunk starts with the boundary line's CRLF
        if not sep:
            if chunk.strip() == b"":
                continue
            raise InvalidDicomError(f"{url}: multipart part without a header block")
        headers = {}
        for line in head.split(b"\r\n"):
            if not line.strip():
                continue
            name, _, val = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = val.strip()
        ct = headers.get("content-type")
        if ct:
            pm, psyn = _syntax_of(ct)
            part_media, part_syntax = pm, psyn or default_syntax
        else:
            part_media, part_syntax = default_media, default_syntax
        declared = headers.get("content-length")
        if declared and declared.isdigit() and int(declared) != len(data):
            raise InvalidDicomError(f"{url}: multipart part of {len(data)} bytes, declared {declared}")
        parts.append(Part(part_media, part_syntax, bytes(data)))
    return parts


def frame_accept_headers(stored_syntax: str | None) -> list[str]:
    """``Accept`` values for frame retrieval, best first.

    Native stored syntaxes: Explicit VR Little Endian only (the server
    byte-swaps big endian). Unknown: the stored bytes, else Explicit VR Little
    Endian. Compressed ones: the stored bytes
    (``transfer-syntax=*``), then the syntax's own media type with its UID,
    then decoded by the server to Explicit VR Little Endian.
    """
    if not stored_syntax:  # unknown (servers rarely send the file meta): the stored bytes, else decoded
        return [_AS_STORED_ACCEPT, _EXPLICIT_LE_ACCEPT]
    if stored_syntax in ts.NATIVE:
        return [_EXPLICIT_LE_ACCEPT]
    out = [_AS_STORED_ACCEPT]
    media = _FRAME_MEDIA_TYPES.get(stored_syntax)
    if media:
        out.append(f'multipart/related; type="{media}"; transfer-syntax={stored_syntax}')
    out.append(_EXPLICIT_LE_ACCEPT)
    return out


def resolve_bulkdata_uri(uri: str, base: str) -> str:
    """A BulkDataURI as an URL under the service root ``base``.

    Relative URIs are joined to ``base``. Absolute ones that point at the
    same DICOMweb resource tree (``.../studies/...``) but name another host or
    port than ``base`` are moved under ``base`` (servers write the host they
    believe they have, which behind a proxy is not the one the client uses).
    """
    parts = urllib.parse.urlsplit(uri)
    root = urllib.parse.urlsplit(base)
    if not parts.scheme:
        if uri.startswith("/") and "/studies/" in uri:
            return base.rstrip("/") + uri[uri.index("/studies/"):]
        return urllib.parse.urljoin(base.rstrip("/") + "/", uri)
    if parts.netloc == root.netloc:
        return uri
    if "/studies/" in parts.path:
        rest = uri[uri.index("/studies/"):]
        return base.rstrip("/") + rest
    return uri
