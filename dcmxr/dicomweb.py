"""DICOMweb sources: a header table from WADO-RS metadata, frames from WADO-RS frame retrieval.

``open_series(client_or_url, study_uid, series_uid)`` asks the server for the
series metadata (DICOM JSON, no pixels), turns every instance into table rows
like :func:`dcmxr.scan` makes from files, and hands the table to the usual
assembly (:func:`dcmxr.open_series`): geometry, dims, rescale and chunking are
the same as for local files.

Each instance becomes a *virtual file* addressed by an fsspec URL::

    dicomweb://HOST[:PORT]/PREFIX/studies/S/series/SE/instances/I?frame_bytes=N

(``dicomwebs://`` for HTTPS) whose bytes are its frames, uncompressed, one after
the other, ``N`` bytes each. The :class:`DICOMwebFileSystem` registered for
that protocol turns a byte range into one WADO-RS frame retrieval
(``.../frames/3,4,5`` with ``application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1``,
so the server decodes compressed frames), so the ordinary byte-range layer
(:func:`dcmxr.decode.read.read_ranges`) coalesces adjacent frames of a chunk
into one request. The graph holds only these URLs: it runs on a
dask.distributed cluster whose workers can reach the server (the protocol is
also registered through the ``fsspec.specs`` entry point, so workers need no
import).

Requires ``dicomweb-client`` (``pip install 'dcmxr[dicomweb]'``).
"""

from __future__ import annotations

import urllib.parse
from typing import Any

import pandas as pd

from .errors import DcmxrError, InvalidDicomError, SelectionError, missing_dependency

__all__ = ["open_series", "scan_series", "DICOMwebFileSystem", "parse_url", "EXPLICIT_LE"]

EXPLICIT_LE = "1.2.840.10008.1.2.1"
_OCTETS = (("application/octet-stream", EXPLICIT_LE),)
_FLOAT_PIXEL_TAGS = {"7FE00008": 32, "7FE00009": 64}
EXTRA = "dicomweb"


def _dicomweb_client_class():
    try:
        from dicomweb_client.api import DICOMwebClient
    except ImportError:
        raise missing_dependency("dicomweb_client", EXTRA) from None
    return DICOMwebClient


def parse_url(url: str) -> tuple[str, str | None, str | None]:
    """Split ``dicomweb://host/prefix?study=S&series=SE`` (or an http(s) base URL).

    Returns
    -------
    base : str
        ``http(s)://host[:port]/prefix`` (the DICOMweb service root).
    study, series : str or None
        From the ``study`` / ``series`` query parameters.
    """
    parts = urllib.parse.urlsplit(url)
    scheme = {"dicomweb": "http", "dicomwebs": "https"}.get(parts.scheme, parts.scheme)
    if scheme not in ("http", "https"):
        raise ValueError(f"not a DICOMweb URL: {url!r} (use http(s):// or dicomweb(s)://)")
    query = urllib.parse.parse_qs(parts.query)
    base = urllib.parse.urlunsplit((scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
    return base, (query.get("study") or [None])[0], (query.get("series") or [None])[0]


def _client(client_or_url: Any, headers: dict | None = None):
    if isinstance(client_or_url, str):
        base, _, _ = parse_url(client_or_url)
        return _dicomweb_client_class()(base, headers=headers)
    return client_or_url


def _base_of(client: Any) -> str:
    base = getattr(client, "base_url", None) or getattr(client, "url", None)
    if base is None:
        raise TypeError("client_or_url must be a URL or a dicomweb_client.DICOMwebClient")
    return str(base).rstrip("/")


def _virtual_url(base: str, study: str, series: str, sop: str, frame_bytes: int) -> str:
    parts = urllib.parse.urlsplit(base)
    scheme = "dicomwebs" if parts.scheme == "https" else "dicomweb"
    path = f"{parts.path.rstrip('/')}/studies/{study}/series/{series}/instances/{sop}"
    return f"{scheme}://{parts.netloc}{path}?frame_bytes={frame_bytes}"


# --------------------------------------------------------------------------- metadata -> rows
def _plain_values(ds: Any) -> dict[str, Any]:
    """The attributes the catalog keeps, as the header walker would give them."""
    from .catalog.enhanced import _plain
    from .catalog.fields import WANTED

    values: dict[str, Any] = {}
    for tag, (kw, _vr) in WANTED.items():
        if tag in ds:
            elem = ds[tag]
            if elem.VR == "SQ" or isinstance(elem.value, (bytes, bytearray)):
                continue
            val = _plain(elem.value)
            if val is not None:
                values[kw] = val
    return values


def _instance_rows(meta: dict, base: str) -> tuple[list[dict], dict | None]:
    import pydicom

    from .catalog.enhanced import dimension_pointers, frame_values
    from .catalog.scan import _flatten

    ds = pydicom.Dataset.from_json(meta, bulk_data_uri_handler=lambda *a: b"")
    values = _plain_values(ds)
    study, series, sop = (values.get(k) for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"))
    if not (study and series and sop):
        raise InvalidDicomError("DICOMweb metadata without Study/Series/SOP Instance UID")
    float_pixels = next((v for k, v in _FLOAT_PIXEL_TAGS.items() if k in meta), 0)
    has_pixels = "7FE00010" in meta or float_pixels
    rows, cols = values.get("Rows"), values.get("Columns")
    stored_ts = ds.get((0x0002, 0x0010)).value if (0x0002, 0x0010) in ds else None
    base_row: dict[str, Any] = {"transfer_syntax_uid": EXPLICIT_LE, "enhanced": "52009230" in meta or "52009229" in meta,
                                "file_size": None, "mtime": 0.0, "deflate_from": None, "float_pixels": float_pixels}
    _flatten(values, base_row)
    if stored_ts:
        base_row["stored_transfer_syntax_uid"] = str(stored_ts)
    if not has_pixels and not (rows and cols):
        base_row.update(path=_virtual_url(base, study, series, sop, 0), number_of_frames=0)
        return [], base_row
    if not isinstance(rows, int) or not isinstance(cols, int) or rows <= 0 or cols <= 0:
        raise InvalidDicomError(f"instance {sop}: invalid Rows/Columns ({rows!r} x {cols!r})")
    spp = int(values.get("SamplesPerPixel") or 1)
    bits = int(values.get("BitsAllocated") or float_pixels or 16)
    n_frames = values.get("NumberOfFrames") or 1
    if not isinstance(n_frames, int) or n_frames < 1:
        raise InvalidDicomError(f"instance {sop}: invalid NumberOfFrames {n_frames!r}")
    pi = str(values.get("PhotometricInterpretation") or "")
    if spp == 3 and pi.startswith("YBR") and stored_ts and stored_ts != EXPLICIT_LE:
        # the server decodes compressed colour frames to RGB when it sends them uncompressed
        base_row["photometric_interpretation"] = "RGB"
    frame_bytes = -(-rows * cols * spp * bits // 8)
    url = _virtual_url(base, study, series, sop, frame_bytes)
    base_row["path"] = url
    per_frame = None
    if base_row["enhanced"]:
        per_frame = frame_values(ds)
        dims = dimension_pointers(ds)
        if dims:
            base_row["dimension_pointers"] = tuple(dims)
    out = []
    for i in range(n_frames):
        row = dict(base_row)
        row.update(frame=i, number_of_frames=n_frames, pixel_offset=i * frame_bytes, pixel_length=frame_bytes,
                   bit_offset=0)
        if per_frame is not None and i < len(per_frame):
            _flatten(per_frame[i], row)
        out.append(row)
    return out, None


def scan_series(client_or_url: Any, study_uid: str, series_uid: str, *, headers: dict | None = None) -> pd.DataFrame:
    """The header table of one DICOMweb series, from WADO-RS metadata (no pixels are moved).

    Parameters
    ----------
    client_or_url : dicomweb_client.DICOMwebClient or str
        A client, or the service root URL (``http(s)://host/prefix`` or
        ``dicomweb://host/prefix``).
    study_uid, series_uid : str
    headers : dict, optional
        HTTP headers (e.g. authorization) when a URL is given.

    Returns
    -------
    pandas.DataFrame
        Like :func:`dcmxr.scan`'s table; ``path`` holds ``dicomweb://`` URLs.

    Raises
    ------
    SelectionError
        The server has no such series.
    """
    from .catalog.scan import build_table

    client = _client(client_or_url, headers)
    base = _base_of(client)
    try:
        metadata = client.retrieve_series_metadata(study_uid, series_uid)
    except Exception as exc:  # noqa: BLE001 - requests.HTTPError and friends
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status == 404:
            raise SelectionError(f"no series {series_uid} in study {study_uid} at {base}") from exc
        raise OSError(f"{base}: WADO-RS metadata request failed: {exc}") from exc
    if not metadata:
        raise SelectionError(f"no instances in series {series_uid} of study {study_uid} at {base}")
    rows: list[dict] = []
    others: list[dict] = []
    skipped: list[dict] = []
    for meta in metadata:
        try:
            r, other = _instance_rows(meta, base)
        except (DcmxrError, ValueError, KeyError, TypeError) as exc:
            skipped.append({"path": f"{base} instance", "reason": f"{type(exc).__name__}: {exc}"})
            continue
        rows.extend(r)
        if other is not None:
            others.append(other)
    if skipped:
        import warnings

        from .errors import SkippedFileWarning

        warnings.warn(f"skipped {len(skipped)} of {len(metadata)} instances: {skipped[0]['reason']}",
                      SkippedFileWarning, stacklevel=2)
    return build_table(rows, others, skipped)


def open_series(client_or_url: Any, study_uid: str | None = None, series_uid: str | None = None, *,
                headers: dict | None = None, **kwargs: Any):
    """Open one DICOMweb series as a lazy DataArray (frames read with WADO-RS).

    Parameters
    ----------
    client_or_url : dicomweb_client.DICOMwebClient or str
        A client, a service root URL, or ``dicomweb://host/prefix?study=S&series=SE``.
    study_uid, series_uid : str, optional
        Required unless given in the URL.
    headers : dict, optional
        HTTP headers for the metadata and frame requests (e.g. ``Authorization``).
    **kwargs
        Passed to :func:`dcmxr.open_series` (``chunks``, ``raw``, ``stack``,
        ``where``, ``dims`` ...).

    Returns
    -------
    xarray.DataArray
        As from local files; ``encoding["source"]`` is not a file path but the
        frames' ``dicomweb://`` URLs are in the header table.
    """
    from .backend.api import open_series as _open

    if isinstance(client_or_url, str):
        _, study_q, series_q = parse_url(client_or_url)
        study_uid = study_uid or study_q
        series_uid = series_uid or series_q
    if not study_uid or not series_uid:
        raise SelectionError("open_series needs study_uid and series_uid (or ?study=...&series=... in the URL)")
    table = scan_series(client_or_url, study_uid, series_uid, headers=headers)
    storage_options = {"headers": headers} if headers else None
    return _open(table, storage_options=storage_options, **kwargs)


# --------------------------------------------------------------------------- the virtual files
def _fsspec_base():
    try:
        from fsspec.spec import AbstractFileSystem
    except ImportError:  # pragma: no cover - fsspec is a core dependency
        raise missing_dependency("fsspec", "remote") from None
    return AbstractFileSystem


class DICOMwebFileSystem(_fsspec_base()):
    """fsspec filesystem over ``dicomweb://`` instance URLs (see the module docstring).

    Parameters
    ----------
    headers : dict, optional
        HTTP headers sent with every frame request.
    timeout : float
        Seconds per request.
    """

    protocol = ("dicomweb", "dicomwebs")

    def __init__(self, headers: dict | None = None, timeout: float = 60.0, **kwargs: Any):
        super().__init__(**kwargs)
        self.headers = dict(headers or {})
        self.timeout = timeout
        self._clients: dict[str, Any] = {}

    @classmethod
    def _strip_protocol(cls, path: str) -> str:
        for p in ("dicomwebs://", "dicomweb://"):
            if path.startswith(p):
                return ("https://" if p == "dicomwebs://" else "http://") + path[len(p):]
        return path

    def _split(self, path: str) -> tuple[str, str, str, str, int]:
        url = self._strip_protocol(path)
        parts = urllib.parse.urlsplit(url)
        segs = parts.path.split("/")
        try:
            k = segs.index("studies")
            study, series, sop = segs[k + 1], segs[k + 3], segs[k + 5]
            assert segs[k + 2] == "series" and segs[k + 4] == "instances"
            frame_bytes = int(urllib.parse.parse_qs(parts.query)["frame_bytes"][0])
        except (ValueError, IndexError, KeyError, AssertionError):
            raise FileNotFoundError(f"not a dcmxr DICOMweb instance URL: {path}") from None
        base = urllib.parse.urlunsplit((parts.scheme, parts.netloc, "/".join(segs[:k]), "", ""))
        return base, study, series, sop, frame_bytes

    def _client_for(self, base: str):
        if base not in self._clients:
            self._clients[base] = _dicomweb_client_class()(base, headers=self.headers or None, timeout=self.timeout)
        return self._clients[base]

    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
        """Bytes ``[start, end)`` of the instance's uncompressed frames, fetched with one WADO-RS request."""
        base, study, series, sop, frame_bytes = self._split(path)
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
            frames = self._client_for(base).retrieve_instance_frames(study, series, sop, frame_numbers=numbers,
                                                                      media_types=_OCTETS)
        except Exception as exc:  # noqa: BLE001 - requests errors -> OSError for the caller
            status = getattr(getattr(exc, "response", None), "status_code", None)
            if status == 404:
                raise FileNotFoundError(f"{path}: frames {numbers} not found") from exc
            raise OSError(f"{path}: WADO-RS frame retrieval failed: {exc}") from exc
        if len(frames) != len(numbers):
            raise OSError(f"{path}: asked for {len(numbers)} frames, the server sent {len(frames)}")
        blob = b"".join(bytes(f[:frame_bytes]) for f in frames)
        lo = start - first * frame_bytes
        return blob[lo : lo + (end - start)]

    def info(self, path: str, **kwargs: Any) -> dict:
        base, study, series, sop, frame_bytes = self._split(path)
        return {"name": path, "size": None, "type": "file"}

    def ls(self, path: str, detail: bool = True, **kwargs: Any):
        raise NotImplementedError("DICOMweb series are listed with dcmxr.dicomweb.scan_series")


def _register() -> None:
    try:
        import fsspec
    except ImportError:  # pragma: no cover
        return
    for name in DICOMwebFileSystem.protocol:
        fsspec.register_implementation(name, DICOMwebFileSystem, clobber=True)


_register()
