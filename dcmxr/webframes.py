"""The frames of DICOMweb instances as fsspec *virtual files*, and decoding what WADO-RS sends.

An instance of a DICOMweb series is addressed as::

    dicomweb://HOST[:PORT]/PREFIX/studies/S/series/SE/instances/I?frame_bytes=N&px=...

(``dicomwebs://`` for HTTPS). Its bytes are its frames, uncompressed (little
endian, colour interleaved, 1-bit frames packed), one after the other, ``N``
bytes each; ``px`` carries the Image Pixel attributes needed to decode a
compressed frame, ``ts`` (optional) the stored transfer syntax.
:class:`DICOMwebFileSystem`, registered with fsspec for both protocols, turns
a byte range into one WADO-RS frame retrieval (``.../frames/3,4,5``), asking
for the frames in their stored transfer syntax first and decoding whatever
comes back (:func:`decode_part`). :mod:`dcmxr.dicomweb` builds the header
table whose ``path`` column holds these URLs.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from typing import Any

from .decode.syntax import EXPLICIT_VR_LE as EXPLICIT_LE
from .errors import DcmxrError, InvalidDicomError, missing_dependency

__all__ = ["DICOMwebFileSystem", "decode_part", "EXPLICIT_LE"]


@dataclass(frozen=True)
class _PixelFormat:
    """What a frame's pixels look like (enough to decode a compressed frame the server sends)."""

    rows: int
    columns: int
    samples_per_pixel: int = 1
    bits_allocated: int = 16
    bits_stored: int = 16
    pixel_representation: int = 0
    planar_configuration: int = 0
    photometric_interpretation: str = "MONOCHROME2"

    def encode(self) -> str:
        return ".".join(str(v) for v in (self.rows, self.columns, self.samples_per_pixel, self.bits_allocated,
                                         self.bits_stored, self.pixel_representation, self.planar_configuration,
                                         self.photometric_interpretation))

    @classmethod
    def decode(cls, text: str) -> "_PixelFormat":
        *nums, pi = text.split(".")
        return cls(*(int(n) for n in nums), photometric_interpretation=pi)


def _virtual_url(base: str, study: str, series: str, sop: str, frame_bytes: int,
                 pixel: _PixelFormat | None = None, stored_syntax: str | None = None) -> str:
    parts = urllib.parse.urlsplit(base)
    scheme = "dicomwebs" if parts.scheme == "https" else "dicomweb"
    path = f"{parts.path.rstrip('/')}/studies/{study}/series/{series}/instances/{sop}"
    query = {"frame_bytes": frame_bytes}
    if pixel is not None:
        query["px"] = pixel.encode()
    if stored_syntax:
        query["ts"] = stored_syntax
    return f"{scheme}://{parts.netloc}{path}?{urllib.parse.urlencode(query)}"


def _fsspec_base():
    try:
        from fsspec.spec import AbstractFileSystem
    except ImportError:  # pragma: no cover - fsspec is a core dependency
        raise missing_dependency("fsspec", "remote") from None
    return AbstractFileSystem


class DICOMwebFileSystem(_fsspec_base()):
    """fsspec filesystem over ``dicomweb://`` instance URLs (see the module docstring).

    Frames are asked for in their stored transfer syntax first (``Accept:
    multipart/related; type="application/octet-stream"; transfer-syntax=*``,
    then the syntax's own media type, then Explicit VR Little Endian decoded by
    the server); whatever comes back is decoded by dcmxr according to the
    transfer syntax named in the part's ``Content-Type``. The Accept value that
    worked for an instance is remembered.

    Parameters
    ----------
    headers : dict, optional
        HTTP headers sent with every frame request.
    timeout : float or (float, float)
        Seconds to connect and to wait for data (per request; a stalled
        server raises instead of hanging).
    retries : int
        Attempts per request for transient failures (connection errors,
        timeouts, truncated bodies, 429/502/503/504).
    """

    protocol = ("dicomweb", "dicomwebs")

    def __init__(self, headers: dict | None = None, timeout: float | tuple[float, float] = 60.0,
                 retries: int = 3, **kwargs: Any):
        super().__init__(**kwargs)
        self.headers = dict(headers or {})
        self.timeout = (min(10.0, float(timeout)), float(timeout)) if isinstance(timeout, (int, float)) \
            else tuple(timeout)
        self.retries = int(retries)
        self._sessions: dict[str, Any] = {}
        self._accepted: dict[str, str] = {}

    @classmethod
    def _strip_protocol(cls, path: str) -> str:
        for p in ("dicomwebs://", "dicomweb://"):
            if path.startswith(p):
                return ("https://" if p == "dicomwebs://" else "http://") + path[len(p):]
        return path

    def _split(self, path: str) -> tuple[str, str, str, str, int]:
        base, study, series, sop, frame_bytes, _, _ = self._parse(path)
        return base, study, series, sop, frame_bytes

    def _parse(self, path: str):
        url = self._strip_protocol(path)
        parts = urllib.parse.urlsplit(url)
        segs = parts.path.split("/")
        query = urllib.parse.parse_qs(parts.query)
        try:
            k = segs.index("studies")
            study, series, sop = segs[k + 1], segs[k + 3], segs[k + 5]
            assert segs[k + 2] == "series" and segs[k + 4] == "instances"
            frame_bytes = int(query["frame_bytes"][0])
            pixel = _PixelFormat.decode(query["px"][0]) if "px" in query else None
        except (ValueError, IndexError, KeyError, AssertionError, TypeError):
            raise FileNotFoundError(f"not a dcmxr DICOMweb instance URL: {path}") from None
        stored = (query.get("ts") or [None])[0]
        base = urllib.parse.urlunsplit((parts.scheme, parts.netloc, "/".join(segs[:k]), "", ""))
        return base, study, series, sop, frame_bytes, pixel, stored

    def _session(self, base: str):
        if base not in self._sessions:
            from .webtransport import _session

            self._sessions[base] = _session(self.headers)
        return self._sessions[base]

    def retrieve_frames(self, path: str, numbers: list[int]) -> list[Any]:
        """The frames ``numbers`` (1-based) of the instance at ``path``, as WADO-RS parts.

        Returns
        -------
        list of dcmxr.webtransport.Part
            One per frame, with the media type and transfer syntax the server
            chose.
        """
        from . import webtransport as wt

        base, study, series, sop, _, _, stored = self._parse(path)
        url = f"{base}/studies/{study}/series/{series}/instances/{sop}/frames/{','.join(map(str, numbers))}"
        key = f"{base}/{sop}"
        accepts = wt.frame_accept_headers(stored)
        if key in self._accepted:
            accepts = [self._accepted[key]] + [a for a in accepts if a != self._accepted[key]]
        failures = []
        for accept in accepts:
            try:
                r = wt.http_get(self._session(base), url, accept=accept, timeout=self.timeout, retries=self.retries)
            except wt.HTTPStatusError as exc:
                if exc.status == 404:
                    raise FileNotFoundError(f"{path}: frames {numbers} not found") from exc
                if exc.status in (401, 403) or exc.status in wt.RETRY_STATUSES:
                    raise
                failures.append(str(exc))  # 400/406/415/500: this representation is not offered, try the next
                continue
            self._accepted[key] = accept
            return wt.parse_multipart(r.headers.get("Content-Type", ""), r.content, url)
        raise OSError(f"{url}: WADO-RS frame retrieval failed for every representation asked for: "
                      + "; ".join(failures))

    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
        """Bytes ``[start, end)`` of the instance's uncompressed frames, fetched with one WADO-RS request."""
        base, study, series, sop, frame_bytes, pixel, _ = self._parse(path)
        if frame_bytes <= 0:
            return b""
        start = start or 0
        if end is None:
            raise ValueError("DICOMweb virtual files need an explicit end (their size is not known)")
        if end <= start:
            return b""
        first, last = start // frame_bytes, (end - 1) // frame_bytes
        numbers = list(range(first + 1, last + 2))  # WADO-RS frame numbers are 1-based
        try:
            parts = self.retrieve_frames(path, numbers)
        except (OSError, DcmxrError):
            raise
        except Exception as exc:  # noqa: BLE001 - requests and friends -> OSError for the caller
            raise OSError(f"{path}: WADO-RS frame retrieval failed: {exc}") from exc
        if len(parts) != len(numbers):
            raise InvalidDicomError(f"{path}: asked for {len(numbers)} frames, the server sent {len(parts)}")
        blob = b"".join(_native_frame(p, pixel, frame_bytes, path, n) for p, n in zip(parts, numbers))
        lo = start - first * frame_bytes
        return blob[lo : lo + (end - start)]

    def info(self, path: str, **kwargs: Any) -> dict:
        self._parse(path)
        return {"name": path, "size": None, "type": "file"}

    def ls(self, path: str, detail: bool = True, **kwargs: Any):
        raise NotImplementedError("DICOMweb series are listed with dcmxr.dicomweb.scan_series")


def decode_part(part: Any, *, rows: int, columns: int, samples_per_pixel: int = 1, bits_allocated: int = 16,
                bits_stored: int | None = None, pixel_representation: int = 0,
                photometric_interpretation: str = "MONOCHROME2", planar_configuration: int = 0):
    """Pixels of one frame returned by :func:`retrieve_frames`, whatever representation the server chose.

    Parameters
    ----------
    part : dcmxr.webtransport.Part
    rows, columns, samples_per_pixel, bits_allocated, bits_stored, pixel_representation,
    photometric_interpretation, planar_configuration
        The instance's Image Pixel attributes (from its metadata).

    Returns
    -------
    numpy.ndarray
        (rows, columns) or (rows, columns, samples), equal to pydicom's
        ``pixel_array`` for the frame.
    """
    pixel = _PixelFormat(rows, columns, samples_per_pixel, bits_allocated, bits_stored or bits_allocated,
                         pixel_representation, planar_configuration, photometric_interpretation)
    return _decode_part(part, pixel, "DICOMweb frame", 1)


def _decode_part(part: Any, pixel: _PixelFormat, path: str, number: int):
    """decode_frame on a WADO-RS part: native bytes as they are, a codestream wrapped in one item."""
    from .decode import syntax as ts
    from .decode.codecs import decode_frame
    from .decode.frameref import FrameRef

    syntax = part.transfer_syntax or EXPLICIT_LE
    if syntax == ts.DEFLATED_EXPLICIT_VR_LE:
        syntax = EXPLICIT_LE  # a frame is never sent deflated as a data set
    data = part.data
    ref = FrameRef(url=path, offset=0, length=len(data), transfer_syntax=syntax, rows=pixel.rows,
                   columns=pixel.columns, samples_per_pixel=pixel.samples_per_pixel,
                   bits_allocated=pixel.bits_allocated, bits_stored=pixel.bits_stored,
                   pixel_representation=pixel.pixel_representation,
                   photometric_interpretation=pixel.photometric_interpretation,
                   planar_configuration=pixel.planar_configuration, frame_index=number - 1)
    if syntax in ts.NATIVE:
        return decode_frame(ref, data)
    item = data + (b"\0" if len(data) % 2 else b"")
    return decode_frame(ref, b"\xfe\xff\x00\xe0" + len(item).to_bytes(4, "little") + item)


def _native_frame(part: Any, pixel: _PixelFormat | None, frame_bytes: int, path: str, number: int) -> bytes:
    """One frame as the virtual file stores it: native little endian, colour interleaved, 1-bit packed."""
    import numpy as np

    from .decode import syntax as ts

    syntax = part.transfer_syntax or EXPLICIT_LE
    data = part.data
    if syntax in (EXPLICIT_LE, ts.IMPLICIT_VR_LE):
        if pixel is not None and pixel.samples_per_pixel > 1 and pixel.planar_configuration == 1 \
                and pixel.bits_allocated >= 8 and len(data) in (frame_bytes, frame_bytes + 1):
            item = pixel.bits_allocated // 8
            planes = np.frombuffer(data[:frame_bytes], dtype=f"<u{item}").reshape(
                pixel.samples_per_pixel, pixel.rows, pixel.columns)
            data = np.ascontiguousarray(planes.transpose(1, 2, 0)).tobytes()
        if len(data) not in (frame_bytes, frame_bytes + 1):  # + 1: a pad byte to even length
            raise InvalidDicomError(f"{path}: frame {number} has {len(data)} bytes, expected {frame_bytes} "
                                    f"(sent as {part.content_type}, transfer syntax {syntax})")
        return bytes(data[:frame_bytes])
    if pixel is None:
        raise InvalidDicomError(f"{path}: the server sent frame {number} as {part.content_type} "
                                f"(transfer syntax {syntax}) and the URL does not say how to decode it")
    if syntax == ts.EXPLICIT_VR_BE:
        item = pixel.bits_allocated // 8
        if pixel.bits_allocated < 8 or len(data) not in (frame_bytes, frame_bytes + 1):
            raise InvalidDicomError(f"{path}: frame {number}: cannot read {len(data)} big endian bytes "
                                    f"as a {frame_bytes}-byte frame")
        out = np.frombuffer(data[:frame_bytes], dtype=f">u{item}").astype(f"<u{item}").tobytes() if item > 1 \
            else bytes(data[:frame_bytes])
        return _native_frame(type(part)(part.content_type, EXPLICIT_LE, out), pixel, frame_bytes, path, number)
    arr = _decode_part(part, pixel, path, number)
    if pixel.bits_allocated == 1:
        out = np.packbits(np.asarray(arr, dtype=np.uint8).ravel() & 1, bitorder="little").tobytes()
    else:
        out = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
    if len(out) != frame_bytes:
        raise InvalidDicomError(f"{path}: frame {number} decoded to {len(out)} bytes, expected {frame_bytes}")
    return out


def _register() -> None:
    try:
        import fsspec
    except ImportError:  # pragma: no cover
        return
    for name in DICOMwebFileSystem.protocol:
        fsspec.register_implementation(name, DICOMwebFileSystem, clobber=True)


_register()
