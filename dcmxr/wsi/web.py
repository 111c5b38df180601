"""Whole-slide images over DICOMweb: levels from WADO-RS metadata, tiles by WADO-RS frame retrieval.

``open_slide_dicomweb(url_or_client, study, series)`` (or
``dcmxr.wsi.open_slide("dicomweb://host/prefix?study=...&series=...")``)
builds the same DataTree as opening the files: each instance's header comes
from the series metadata (no pixels; the ICC profile, a bulk data value, is
fetched once per instance), and a read fetches the tiles it needs with one
WADO-RS frame request per instance, preferably in their stored transfer
syntax (:func:`dcmxr.dicomweb.retrieve_frames`), then decodes them as for
local files. Servers that leave the stored Transfer Syntax UID out of the
metadata (Orthanc does) label each frame answer with it instead; the level's
``transfer_syntax_uid`` attr is then absent.
"""

from __future__ import annotations

from typing import Any

from ..errors import SelectionError
from .headers import WsiHeader, header_from_dataset

__all__ = ["open_slide_dicomweb", "slide_headers"]

_ICC_TAG = "00282000"


class WadoFrames:
    """Picklable tile fetcher for a level: ``(instance index, 0-based frames) -> [(bytes, syntax)]``."""

    def __init__(self, client_or_url: Any, study: str, series: str, headers: list[WsiHeader],
                 http_headers: dict | None = None):
        self.client_or_url = client_or_url
        self.study = study
        self.series = series
        self.sops = [h.sop_instance_uid for h in headers]
        self.syntaxes = [h.transfer_syntax for h in headers]
        self.http_headers = http_headers

    def __call__(self, instance: int, frames: list[int]) -> list[tuple[bytes, str | None]]:
        from ..dicomweb import retrieve_frames

        parts = retrieve_frames(self.client_or_url, self.study, self.series, self.sops[instance],
                                [f + 1 for f in frames], stored_syntax=self.syntaxes[instance],
                                headers=self.http_headers)
        return [(p.data, p.transfer_syntax) for p in parts]


def slide_headers(client_or_url: Any, study: str, series: str, *, http_headers: dict | None = None) -> list[WsiHeader]:
    """:class:`~dcmxr.wsi.headers.WsiHeader` of every WSI instance of a series, from WADO-RS metadata.

    Raises
    ------
    SelectionError
        No such series, or no WSI instances in it.
    """
    import pydicom

    from ..dicomweb import _base_of, _client, retrieve_bulkdata, series_metadata

    client = _client(client_or_url, http_headers)
    base = _base_of(client)
    out = []
    for meta in series_metadata(client, study, series, headers=http_headers):
        def bulk(tag: str, vr: str, uri: str) -> Any:
            if tag.upper() == _ICC_TAG:
                return retrieve_bulkdata(client, uri, headers=http_headers)
            return None

        ds = pydicom.Dataset.from_json(meta, bulk_data_uri_handler=bulk)
        sop = str(ds.get("SOPInstanceUID", ""))
        url = f"{base}/studies/{study}/series/{series}/instances/{sop}"
        h = header_from_dataset(ds, url, None)
        if h is not None:
            if (0x0002, 0x0010) not in ds:  # stored syntax not in the metadata: the frame answers label it
                h.transfer_syntax = ""
            out.append(h)
    if not out:
        raise SelectionError(f"no VL Whole Slide Microscopy instances in series {series} of study {study} at {base}")
    return out


def open_slide_dicomweb(
    client_or_url: Any,
    study: str | None = None,
    series: str | None = None,
    *,
    http_headers: dict | None = None,
    chunks: Any = "auto",
    fill: float | None = None,
    threads: int = 1,
    apply_icc: bool = False,
    jpeg_decoder: str = "libjpeg-turbo",
):
    """Open a slide (one series) from a DICOMweb service as a lazy multiscale DataTree.

    Parameters
    ----------
    client_or_url : dicomweb_client.DICOMwebClient or str
        A client, the service root (``http(s)://host/prefix``) or
        ``dicomweb://host/prefix?study=S&series=SE``.
    study, series : str, optional
        Study / Series Instance UIDs (default: from the URL's query).
    http_headers : dict, optional
        HTTP headers (authorization ...).
    chunks, fill, threads, apply_icc, jpeg_decoder
        As for :func:`dcmxr.wsi.open_slide`.

    Returns
    -------
    xarray.DataTree
        Equal to opening the same instances from files.

    Raises
    ------
    SelectionError
        No study/series given, no such series, or no WSI instances in it.
    """
    from ..dicomweb import parse_url
    from .slide import _build_tree

    client = client_or_url
    if isinstance(client_or_url, str):
        base, q_study, q_series = parse_url(client_or_url)
        study, series, client = study or q_study, series or q_series, base
    if not study or not series:
        raise SelectionError("a DICOMweb slide needs its study and series UIDs (?study=...&series=...)")
    headers = slide_headers(client, study, series, http_headers=http_headers)

    def fetcher(level_headers: list[WsiHeader]) -> WadoFrames:
        return WadoFrames(client, study, series, level_headers, http_headers)

    return _build_tree(headers, chunks=chunks, fill=fill, threads=threads, storage_options=None,
                       apply_icc=apply_icc, jpeg_decoder=jpeg_decoder, fetcher=fetcher)
