"""DICOMweb sources: a header table from WADO-RS metadata, frames from WADO-RS frame retrieval.

``open_series(client_or_url, study_uid, series_uid)`` asks the server for the
series metadata (DICOM JSON, no pixels), turns every instance into table rows
like :func:`dcmxr.scan` makes from files, and hands the table to the usual
assembly (:func:`dcmxr.open_series`): geometry, dims, rescale and chunking are
the same as for local files.

``open_study(client_or_url, study_uid)`` does the same for a whole study from
one WADO-RS study metadata request (``/studies/S/metadata``) and returns the
DataTree :func:`dcmxr.open_study` makes for local files (``/patient/study/series``).

Attributes the table needs that the server sends as a ``BulkDataURI`` (the
Siemens CSA header (0029,1010) of MOSAIC and diffusion images, private tags of
Implicit VR files sent as UN) are fetched with one request each, so MOSAIC
series unpack as from files.

Each instance becomes a *virtual file* addressed by an fsspec URL::

    dicomweb://HOST[:PORT]/PREFIX/studies/S/series/SE/instances/I?frame_bytes=N&px=...

(``dicomwebs://`` for HTTPS) whose bytes are its frames, uncompressed (little
endian, colour interleaved), one after the other, ``N`` bytes each; ``px``
carries the Image Pixel attributes needed to decode a compressed frame. The
:class:`DICOMwebFileSystem` registered for that protocol turns a byte range
into one WADO-RS frame retrieval (``.../frames/3,4,5``), asking for the frames
in their stored transfer syntax first and decoding whatever comes back with
dcmxr's decoders (the part's ``Content-Type`` names the syntax); servers that
only send decoded frames work too. The ordinary byte-range layer
(:func:`dcmxr.decode.read.read_ranges`) coalesces adjacent frames of a chunk
into one request. The graph holds only these URLs: it runs on a
dask.distributed cluster whose workers can reach the server (the protocol is
also registered through the ``fsspec.specs`` entry point, so workers need no
import).

Frame and bulk-data requests send ``Accept-Encoding: identity`` (see
:func:`dcmxr.webtransport._session`: servers that gzip a single frame spend far
longer compressing it than sending it).

Reusable pieces: :func:`series_metadata`, :func:`study_metadata`, :func:`bulkdata_tags`,
:func:`retrieve_bulkdata`, :func:`retrieve_frames` (a batch of frames of one
instance in one request), :func:`decode_part`; HTTP details (timeouts, bounded
retries, multipart parsing, Accept values) live in :mod:`dcmxr.webtransport`.

Requires ``dicomweb-client`` (``pip install 'dcmxr[dicomweb]'``).
"""

from __future__ import annotations

import urllib.parse
from typing import Any, Callable

import pandas as pd

from .errors import DcmxrError, InvalidDicomError, SelectionError, missing_dependency
from .webframes import EXPLICIT_LE, DICOMwebFileSystem, _PixelFormat, _virtual_url, decode_part

__all__ = ["open_series", "open_study", "scan_series", "scan_study", "study_metadata", "study_groups",
           "series_metadata", "retrieve_frames", "retrieve_bulkdata",
           "bulkdata_tags", "decode_part", "DICOMwebFileSystem", "parse_url", "EXPLICIT_LE"]

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


# --------------------------------------------------------------------------- metadata -> rows
def _plain_values(ds: Any) -> dict[str, Any]:
    """The attributes the catalog keeps, as the header walker would give them.

    Values that arrived as bytes with VR UN (private tags of Implicit VR files,
    fetched from their BulkDataURI) are converted with the catalog's VR.
    """
    from .catalog.enhanced import _plain
    from .catalog.fields import PRIVATE_TAGS, WANTED

    values: dict[str, Any] = {}
    for tag, (kw, vr) in {**WANTED, **PRIVATE_TAGS}.items():
        if tag in ds:
            elem = ds[tag]
            if kw == "siemens_csa_image":
                if isinstance(elem.value, (bytes, bytearray)) and elem.value:
                    values[kw] = bytes(elem.value)
                continue
            if elem.VR == "SQ":
                continue
            value = elem.value
            if isinstance(value, (bytes, bytearray)):
                if elem.VR != "UN" or not value or vr in ("OB", "OW", "UN", "SQ"):
                    continue
                value = _convert_un(tag, vr, bytes(value))
                if value is None:
                    continue
            val = _plain(value)
            if val is not None:
                values[kw] = val
    return values


def _convert_un(tag: int, vr: str, raw: bytes) -> Any:
    """Bytes of an element sent with VR UN, read as VR ``vr`` (little endian, as DICOM JSON carries them)."""
    from pydicom.dataelem import RawDataElement
    from pydicom.values import convert_value

    try:
        return convert_value(vr, RawDataElement(tag, vr, len(raw), raw, 0, False, True))
    except Exception:  # noqa: BLE001 - a malformed private value is left out, as the header walker does
        return None


def bulkdata_tags(meta: dict) -> dict[str, str]:
    """The top-level BulkDataURIs of one instance's DICOM JSON that the header table needs.

    Parameters
    ----------
    meta : dict
        One instance's WADO-RS metadata (DICOM JSON).

    Returns
    -------
    dict
        ``{"00291010": uri, ...}`` for the catalog's attributes (e.g. the
        Siemens CSA header, private tags of Implicit VR files sent as UN);
        pixel data is never included.
    """
    from .catalog.fields import PIXEL_TAGS, PRIVATE_TAGS, WANTED

    out = {}
    for key, entry in meta.items():
        if not isinstance(entry, dict) or "BulkDataURI" not in entry:
            continue
        try:
            tag = int(key, 16)
        except ValueError:
            continue
        if (tag in WANTED or tag in PRIVATE_TAGS) and tag not in PIXEL_TAGS:
            out[key.upper()] = entry["BulkDataURI"]
    return out


def retrieve_bulkdata(client_or_url: Any, uri: str, *, headers: dict | None = None,
                      session: Any = None, timeout: tuple[float, float] | None = None) -> bytes:
    """The bytes behind one BulkDataURI of WADO-RS metadata.

    The URI is resolved against the client's service root first
    (:func:`dcmxr.webtransport.resolve_bulkdata_uri`: servers behind a proxy
    write a host the client cannot reach). The answer may be a
    multipart/related body (one ``application/octet-stream`` part) or the
    bare bytes.

    Parameters
    ----------
    client_or_url : dicomweb_client.DICOMwebClient or str
        The service (its root URL is used, and its session's headers when no
        ``session`` is given).
    uri : str
        The BulkDataURI.
    headers : dict, optional
        HTTP headers (authorization ...).
    session : requests.Session, optional
        Re-use a session (and its connection pool).
    timeout : (float, float), optional
        Connect and read timeouts.

    Returns
    -------
    bytes

    Raises
    ------
    OSError
        The request failed (:class:`dcmxr.webtransport.HTTPStatusError` for an
        error status).
    InvalidDicomError
        The answer is not one bulk data value.
    """
    from . import webtransport as wt

    base = parse_url(client_or_url)[0] if isinstance(client_or_url, str) else _base_of(client_or_url)
    url = wt.resolve_bulkdata_uri(uri, base)
    if session is None:
        session = _session_for(client_or_url, headers)
    r = wt.http_get(session, url, accept='multipart/related; type="application/octet-stream"',
                    timeout=timeout or wt.DEFAULT_TIMEOUT)
    parts = wt.parse_multipart(r.headers.get("Content-Type", "application/octet-stream"), r.content, url)
    if len(parts) != 1:
        raise InvalidDicomError(f"{url}: expected one bulk data part, got {len(parts)}")
    return parts[0].data


def _session_for(client_or_url: Any, headers: dict | None):
    from .webtransport import _session

    s = _session(headers)
    inner = getattr(client_or_url, "_session", None)
    if inner is not None and not headers:
        skip = ("accept", "host", "accept-encoding")  # frames: identity (see webtransport._session)
        s.headers.update({k: v for k, v in inner.headers.items() if k.lower() not in skip})
        s.auth = getattr(inner, "auth", None)
    return s


def _fetch_bulk(client_or_url: Any, metadata: list[dict], headers: dict | None) -> list[dict[str, bytes]]:
    """Fetch the needed BulkDataURIs of every instance (a few threads); ``[{tag: bytes}]`` per instance."""
    from concurrent.futures import ThreadPoolExecutor

    wanted = [bulkdata_tags(m) for m in metadata]
    jobs = [(i, tag, uri) for i, tags in enumerate(wanted) for tag, uri in tags.items()]
    out: list[dict[str, bytes]] = [{} for _ in metadata]
    if not jobs:
        return out
    session = _session_for(client_or_url, headers)

    def one(job):
        i, tag, uri = job
        try:
            return i, tag, retrieve_bulkdata(client_or_url, uri, session=session)
        except (OSError, DcmxrError) as exc:
            sop = (metadata[i].get("00080018", {}).get("Value") or ["?"])[0]
            what = "the Siemens CSA header" if tag == "00291010" else "a header attribute"
            raise OSError(f"instance {sop}: cannot fetch ({tag[:4]},{tag[4:]}) ({what}) from its BulkDataURI "
                          f"{uri}: {exc}") from exc

    with ThreadPoolExecutor(max_workers=min(8, len(jobs))) as pool:
        for i, tag, data in pool.map(one, jobs):
            out[i][tag] = data
    return out


#: top-level sequences and file meta the row builder reads besides the catalog's attributes
_EXTRA_TAGS = frozenset({0x52009229, 0x52009230, 0x00209222, 0x00020010})
_KEEP: frozenset[int] | None = None


def _needed(meta: dict) -> dict:
    """Only the DICOM JSON entries the header table uses (pydicom's ``from_json`` of all is slow)."""
    global _KEEP
    if _KEEP is None:
        from .catalog.fields import PRIVATE_TAGS, WANTED

        _KEEP = frozenset(WANTED) | frozenset(PRIVATE_TAGS) | _EXTRA_TAGS
    out = {}
    for key, entry in meta.items():
        try:
            tag = int(key, 16)
        except (TypeError, ValueError):
            continue
        if tag in _KEEP:
            out[key] = entry
    return out


def _instance_rows(meta: dict, base: str, bulk: dict[str, bytes] | None = None) -> tuple[list[dict], dict | None]:
    import pydicom

    from .catalog.enhanced import dimension_pointers, frame_values
    from .catalog.scan import _flatten

    bulk = bulk or {}

    def handler(tag: str, vr: str, uri: str) -> bytes:
        return bulk.get(tag.upper(), b"")

    ds = pydicom.Dataset.from_json(_needed(meta), bulk_data_uri_handler=handler)
    values = _plain_values(ds)
    study, series, sop = (values.get(k) for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"))
    if not (study and series and sop):
        raise InvalidDicomError("DICOMweb metadata without Study/Series/SOP Instance UID")
    float_pixels = next((v for k, v in _FLOAT_PIXEL_TAGS.items() if k in meta), 0)
    has_pixels = "7FE00010" in meta or float_pixels
    rows, cols = values.get("Rows"), values.get("Columns")
    stored_ts = ds.get((0x0002, 0x0010)).value if (0x0002, 0x0010) in ds else None
    enhanced = "52009230" in meta or "52009229" in meta
    base_row: dict[str, Any] = {"transfer_syntax_uid": EXPLICIT_LE, "enhanced": enhanced,
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
    planar = int(values.get("PlanarConfiguration") or 0)
    if spp == 3:
        # the virtual file holds colour frames interleaved, and compressed YBR frames decoded to RGB
        # (by dcmxr's decoders or by the server), as pydicom's pixel_array has them
        base_row["planar_configuration"] = 0
        if pi.startswith("YBR") and stored_ts != EXPLICIT_LE:
            base_row["photometric_interpretation"] = "RGB"
    frame_bytes = -(-rows * cols * spp * bits // 8)
    pixel = _PixelFormat(rows, cols, spp, bits, int(values.get("BitsStored") or bits),
                         int(values.get("PixelRepresentation") or 0), planar, pi or "MONOCHROME2")
    url = _virtual_url(base, study, series, sop, frame_bytes, pixel, str(stored_ts) if stored_ts else None)
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


def series_metadata(client_or_url: Any, study_uid: str, series_uid: str, *,
                    headers: dict | None = None) -> list[dict]:
    """WADO-RS metadata (DICOM JSON, one dict per instance) of one series.

    Parameters
    ----------
    client_or_url : dicomweb_client.DICOMwebClient or str
        A client or the service root URL.
    study_uid, series_uid : str
    headers : dict, optional
        HTTP headers when a URL is given.

    Returns
    -------
    list of dict
        Bulk data (pixels, large private values) appear as ``BulkDataURI``
        entries; :func:`bulkdata_tags` lists the ones dcmxr's header table
        needs and :func:`retrieve_bulkdata` fetches one.

    Raises
    ------
    SelectionError
        No such series, or it has no instances.
    OSError
        The request failed.
    """
    client = _client(client_or_url, headers)
    metadata = _metadata(client, lambda: client.retrieve_series_metadata(study_uid, series_uid),
                         f"series {series_uid} in study {study_uid}")
    return metadata


def retrieve_frames(client_or_url: Any, study_uid: str, series_uid: str, sop_uid: str, frame_numbers: list[int],
                    *, stored_syntax: str | None = None, headers: dict | None = None,
                    timeout: float | tuple[float, float] = 60.0, retries: int = 3) -> list[Any]:
    """Frames of one instance with one WADO-RS request, preferably in their stored transfer syntax.

    The ``Accept`` values of :func:`dcmxr.webtransport.frame_accept_headers`
    are tried in order (stored bytes, the syntax's media type, then Explicit VR
    Little Endian decoded by the server); representations the server refuses
    (400/406/415/500) move on to the next one.

    Parameters
    ----------
    client_or_url : dicomweb_client.DICOMwebClient or str
        A client or the service root URL.
    study_uid, series_uid, sop_uid : str
    frame_numbers : list of int
        1-based, as in WADO-RS. Ask for a batch (e.g. all tiles of a region)
        in one call: one request, one multipart answer.
    stored_syntax : str, optional
        The instance's transfer syntax when known (a native one skips the
        "stored bytes" attempt).
    headers : dict, optional
        HTTP headers (authorization ...).
    timeout : float or (float, float)
        Connect and read timeouts per request.
    retries : int
        Attempts for transient failures.

    Returns
    -------
    list of dcmxr.webtransport.Part
        One per frame, in order, each with ``data`` (the frame's bytes: a
        JPEG/JPEG-LS/J2K/RLE codestream or native little-endian pixels),
        ``content_type`` and ``transfer_syntax`` as the server labelled them.
        :func:`decode_part` turns one into pixels.

    Raises
    ------
    FileNotFoundError
        The server has no such instance or frame (404).
    OSError
        Every representation failed, or the connection failed / timed out.
    InvalidDicomError
        A truncated multipart answer, or not as many parts as frames.
    """
    base = parse_url(client_or_url)[0] if isinstance(client_or_url, str) else _base_of(client_or_url)
    fs = DICOMwebFileSystem(headers=headers, timeout=timeout, retries=retries)
    if not headers and not isinstance(client_or_url, str):
        fs._sessions[base] = _session_for(client_or_url, None)
    path = _virtual_url(base, study_uid, series_uid, sop_uid, 0, None, stored_syntax)
    parts = fs.retrieve_frames(path, list(frame_numbers))
    if len(parts) != len(frame_numbers):
        raise InvalidDicomError(f"{path}: asked for {len(frame_numbers)} frames, the server sent {len(parts)}")
    return parts


def _table_from_metadata(client: Any, metadata: list[dict], headers: dict | None) -> pd.DataFrame:
    """The header table of WADO-RS metadata (any instances: one series or a whole study)."""
    from .catalog.scan import build_table

    base = _base_of(client)
    bulk = _fetch_bulk(client, metadata, headers)
    rows: list[dict] = []
    others: list[dict] = []
    skipped: list[dict] = []
    for meta, extra in zip(metadata, bulk):
        try:
            r, other = _instance_rows(meta, base, extra)
        except (DcmxrError, ValueError, KeyError, TypeError) as exc:
            sop = (meta.get("00080018", {}).get("Value") or ["?"])[0] if isinstance(meta, dict) else "?"
            skipped.append({"path": f"{base} instance {sop}", "reason": f"{type(exc).__name__}: {exc}"})
            continue
        rows.extend(r)
        if other is not None:
            others.append(other)
    if skipped:
        import warnings

        from .errors import SkippedFileWarning

        warnings.warn(f"skipped {len(skipped)} of {len(metadata)} instances: {skipped[0]['reason']}",
                      SkippedFileWarning, stacklevel=3)
    return build_table(rows, others, skipped)


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
    client = _client(client_or_url, headers)
    metadata = series_metadata(client, study_uid, series_uid)
    return _table_from_metadata(client, metadata, headers)


def study_metadata(client_or_url: Any, study_uid: str, *, headers: dict | None = None) -> list[dict]:
    """WADO-RS metadata (DICOM JSON, one dict per instance) of every instance of a study, in one request.

    Parameters
    ----------
    client_or_url : dicomweb_client.DICOMwebClient or str
        A client or the service root URL.
    study_uid : str
    headers : dict, optional
        HTTP headers when a URL is given.

    Returns
    -------
    list of dict

    Raises
    ------
    SelectionError
        No such study, or it has no instances.
    OSError
        The request failed.
    """
    client = _client(client_or_url, headers)
    return _metadata(client, lambda: client.retrieve_study_metadata(study_uid), f"study {study_uid}")


def _metadata(client: Any, request: Callable[[], list], what: str) -> list[dict]:
    """Run a WADO-RS metadata request; 404 or no instances -> SelectionError, other failures -> OSError."""
    base = _base_of(client)
    try:
        metadata = request()
    except Exception as exc:  # noqa: BLE001 - requests.HTTPError and friends
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status == 404:
            raise SelectionError(f"no {what} at {base}") from exc
        raise OSError(f"{base}: WADO-RS metadata request for {what} failed: {exc}") from exc
    if not metadata:
        raise SelectionError(f"no instances in {what} at {base}")
    return metadata


def _series_of(meta: dict) -> str:
    return str((meta.get("0020000E", {}).get("Value") or [""])[0]) if isinstance(meta, dict) else ""


def scan_study(client_or_url: Any, study_uid: str, *, series_uid: str | None = None,
               headers: dict | None = None) -> pd.DataFrame:
    """The header table of every series of a DICOMweb study (one metadata request, no pixels).

    Parameters
    ----------
    client_or_url : dicomweb_client.DICOMwebClient or str
        A client, or the service root URL.
    study_uid : str
    series_uid : str, optional
        Keep only this series.
    headers : dict, optional
        HTTP headers when a URL is given.

    Returns
    -------
    pandas.DataFrame
        Like :func:`dcmxr.scan`'s table of the study's files; ``path`` holds
        ``dicomweb://`` URLs.

    Raises
    ------
    SelectionError
        No such study (or series in it).
    """
    client = _client(client_or_url, headers)
    metadata = study_metadata(client, study_uid)
    if series_uid:
        metadata = [m for m in metadata if _series_of(m) == series_uid]
        if not metadata:
            raise SelectionError(f"no series {series_uid} in study {study_uid} at {_base_of(client)}")
    return _table_from_metadata(client, metadata, headers)


def _study_from_url(client_or_url: Any, study_uid: str | None, headers: dict | None) -> tuple[str, str | None]:
    series_uid = None
    if isinstance(client_or_url, str):
        _, study_q, series_uid = parse_url(client_or_url)
        study_uid = study_uid or study_q
    if not study_uid:
        hint = ""
        try:
            found = _client(client_or_url, headers).search_for_studies(limit=11, fields=["StudyDescription"])
            uids = [str((m.get("0020000D", {}).get("Value") or ["?"])[0]) for m in found]
            if uids:
                more = ", ..." if len(uids) > 10 else ""
                hint = f"; the server has: {', '.join(uids[:10])}{more}"
        except Exception:  # noqa: BLE001 - the listing is only a hint in the message
            pass
        raise SelectionError("open_study needs study_uid (or ?study=... in the URL)" + hint)
    return study_uid, series_uid


def _storage_options(headers: dict | None, timeout: float | None, retries: int | None) -> dict | None:
    return {k: v for k, v in (("headers", headers), ("timeout", timeout), ("retries", retries))
            if v is not None} or None


def study_groups(client_or_url: Any, study_uid: str | None = None, *, headers: dict | None = None,
                 timeout: float | None = None, retries: int | None = None, raw: bool = False,
                 chunks: Any = "auto") -> dict[str, Any]:
    """``{"/patient/study/series": Dataset}`` for every series of a DICOMweb study (see :func:`open_study`).

    The same groups :func:`dcmxr.backend.api.study_groups` makes for local
    files; the xarray engine's ``open_groups_as_dict`` uses this for
    ``dicomweb://`` URLs.
    """
    from .backend.api import study_groups as _groups
    from .backend.registry import remember

    study_uid, series_uid = _study_from_url(client_or_url, study_uid, headers)
    table = scan_study(client_or_url, study_uid, series_uid=series_uid, headers=headers)
    remember(table)
    return _groups(table, raw=raw, chunks=chunks, storage_options=_storage_options(headers, timeout, retries))


def open_study(client_or_url: Any, study_uid: str | None = None, *, headers: dict | None = None,
               timeout: float | None = None, retries: int | None = None, raw: bool = False,
               chunks: Any = "auto"):
    """Open every series of a DICOMweb study as a DataTree ``/patient/study/series`` (frames read lazily).

    The layout is :func:`dcmxr.open_study`'s for local files: one node per
    series holding a lazy ``image`` variable, extra stacks as sibling
    ``<series>_stackN`` nodes. The header table comes from one WADO-RS study
    metadata request (``/studies/S/metadata``, no pixels) plus the bulk data
    the table needs (the Siemens CSA header of MOSAIC images); frames are read
    with WADO-RS frame retrieval when computed, as in :func:`open_series`.

    Parameters
    ----------
    client_or_url : dicomweb_client.DICOMwebClient or str
        A client, a service root URL, or ``dicomweb://host/prefix?study=S``
        (``&series=SE`` keeps one series).
    study_uid : str, optional
        Required unless given in the URL.
    headers : dict, optional
        HTTP headers for every request (e.g. ``Authorization``).
    timeout : float, optional
        Seconds a frame request may wait for data (default 60).
    retries : int, optional
        Attempts per frame request for transient failures (default 3).
    raw : bool
        Keep stored values instead of real-world values.
    chunks : "auto", int, dict or tuple
        As for :func:`dcmxr.open_series`.

    Returns
    -------
    xarray.DataTree

    Raises
    ------
    SelectionError
        No study given (the message lists some of the server's studies), or
        the server has no such study.
    OSError
        The metadata request failed.
    """
    import xarray as xr

    groups = study_groups(client_or_url, study_uid, headers=headers, timeout=timeout, retries=retries,
                          raw=raw, chunks=chunks)
    return xr.DataTree.from_dict(groups)


def open_series(client_or_url: Any, study_uid: str | None = None, series_uid: str | None = None, *,
                headers: dict | None = None, timeout: float | None = None, retries: int | None = None,
                **kwargs: Any):
    """Open one DICOMweb series as a lazy DataArray (frames read with WADO-RS).

    Parameters
    ----------
    client_or_url : dicomweb_client.DICOMwebClient or str
        A client, a service root URL, or ``dicomweb://host/prefix?study=S&series=SE``.
    study_uid, series_uid : str, optional
        Required unless given in the URL.
    headers : dict, optional
        HTTP headers for the metadata and frame requests (e.g. ``Authorization``).
    timeout : float, optional
        Seconds a frame request may wait for data (default 60); a stalled
        server then raises ``OSError`` instead of hanging.
    retries : int, optional
        Attempts per frame request for transient failures (default 3).
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
    return _open(table, storage_options=_storage_options(headers, timeout, retries), **kwargs)
