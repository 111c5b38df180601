"""``open_slide`` / ``open_slides``: whole-slide microscopy pyramids as DataTrees.

Opening reads each instance's header once (:mod:`dcmxr.wsi.headers`), with
no generic scan table: the levels are built from the headers, the frame byte
ranges are found when a level is first read, and the Dask graphs are lazy
(one ``from_array`` layer per level).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from ..errors import AmbiguousSelectionError, SelectionError
from .headers import WsiHeader, read_headers
from .instances import ASSOCIATED, VOLUME, icc_base64
from .level import build_level

__all__ = ["list_slides", "open_slide", "open_slides"]


def _headers(source: Any, storage_options: dict | None, strict: bool) -> list[WsiHeader]:
    """Headers of the WSI instances a source names (a scan table: its files)."""
    if isinstance(source, list) and source and all(isinstance(h, WsiHeader) for h in source):
        return source
    if isinstance(source, pd.DataFrame):
        paths = list(dict.fromkeys(source["path"].astype(str))) if "path" in source.columns else []
    else:
        from ..catalog.sources import expand

        paths = expand(source, storage_options=storage_options)
    return read_headers(paths, storage_options, strict)


def _by_series(headers: list[WsiHeader]) -> dict[str, list[WsiHeader]]:
    out: dict[str, list[WsiHeader]] = {}
    for h in headers:
        out.setdefault(h.series_instance_uid, []).append(h)
    return out


def _level_sizes(headers: list[WsiHeader]) -> list[tuple[int, int]]:
    sizes = {(h.total_rows, h.total_columns) for h in headers if h.flavor == VOLUME}
    return sorted(sizes, key=lambda s: (-s[1], -s[0]))


def _listing(headers: list[WsiHeader]) -> pd.DataFrame:
    out = []
    for uid, hs in _by_series(headers).items():
        sizes = _level_sizes(hs)
        out.append({
            "series_instance_uid": uid,
            "study_instance_uid": hs[0].study_instance_uid,
            "series_description": hs[0].extra.get("series_description"),
            "levels": len(sizes),
            "associated": sorted({h.flavor for h in hs if h.flavor != VOLUME}),
            "width": int(sizes[0][1]) if sizes else None,
            "height": int(sizes[0][0]) if sizes else None,
            "instances": len({h.path for h in hs}),
        })
    return pd.DataFrame(out, columns=["series_instance_uid", "study_instance_uid", "series_description", "levels",
                                      "associated", "width", "height", "instances"])


def list_slides(source: Any, *, storage_options: dict | None = None, strict: bool = False) -> pd.DataFrame:
    """One row per slide (Series Instance UID) of VL Whole Slide Microscopy images.

    Parameters
    ----------
    source : path, URL, glob, DICOMDIR, list of them, or a scan table

    Returns
    -------
    pandas.DataFrame
        Columns ``series_instance_uid``, ``study_instance_uid``,
        ``series_description``, ``levels``, ``associated``, ``width``,
        ``height`` (of the largest level), ``instances``.
    """
    return _listing(_headers(source, storage_options, strict))


def _select(headers: list[WsiHeader], slide: str | int | None) -> list[WsiHeader]:
    series = _by_series(headers)
    if not series:
        raise SelectionError("no VL Whole Slide Microscopy images (SOP class 1.2.840.10008.5.1.4.1.1.77.1.6) found")
    if slide is None and len(series) == 1:
        return headers
    listing = _listing(headers)
    if slide is None:
        shown = "\n".join(f"  [{i}] {r.series_instance_uid} ({r.width}x{r.height}, {r.levels} levels)"
                          for i, r in enumerate(listing.itertuples()))
        raise AmbiguousSelectionError(
            f"{len(listing)} slides found; pick one with slide=<index or SeriesInstanceUID> "
            f"or use dcmxr.open_slides:\n{shown}")
    if isinstance(slide, int):
        if not 0 <= slide < len(listing):
            raise SelectionError(f"slide index {slide} out of range (0..{len(listing) - 1})")
        return series[listing["series_instance_uid"].iloc[slide]]
    if slide not in series:
        raise SelectionError(f"no slide with SeriesInstanceUID {slide!r}; found {list(series)}")
    return series[slide]


def _build_tree(headers: list[WsiHeader], fetcher: Any = None, **kw):
    """The DataTree of one slide; ``fetcher(level_headers)`` gives a tile fetcher per level (DICOMweb)."""
    import xarray as xr

    def level(hs: list[WsiHeader], name: str):
        return build_level(hs, name=name, fetch=fetcher(hs) if fetcher is not None else None, **kw)

    groups: dict[str, xr.Dataset] = {}
    levels = []
    for i, size in enumerate(_level_sizes(headers)):
        hs = [h for h in headers if h.flavor == VOLUME and (h.total_rows, h.total_columns) == size]
        levels.append(level(hs, f"level_{i}"))
    base = levels[0] if levels else None
    downsamples = []
    for i, da in enumerate(levels):
        ds_ = _downsample(base, da)
        da.attrs["downsample"] = ds_
        da.attrs["level"] = i
        downsamples.append(ds_)
        node = da.to_dataset()
        node.attrs = {"downsample": ds_, "level": i}
        groups[f"/level_{i}"] = node
    used: dict[str, int] = {}
    for h in headers:
        if h.flavor not in ASSOCIATED:
            continue
        n = used.get(h.flavor, 0)
        used[h.flavor] = n + 1
        name = h.flavor.lower() + (f"_{n + 1}" if n else "")
        da = level([h], name)
        node = da.to_dataset()
        node.attrs = {"image_flavor": h.flavor}
        groups[f"/{name}"] = node
    vol = [h for h in headers if h.flavor == VOLUME]
    first = vol[0] if vol else headers[0]
    root = xr.Dataset(attrs=_slide_attrs(first, downsamples, levels))
    # the constructor with children is cheaper than DataTree.from_dict (no path parsing)
    return xr.DataTree(dataset=root, children={k.lstrip("/"): xr.DataTree(dataset=v) for k, v in groups.items()})


def _downsample(base, da) -> float:
    """Level-0 pixels per pixel of this level, from Pixel Spacing (sizes when spacing is absent)."""
    if base is None:
        return 1.0
    b, s = base.attrs.get("pixel_spacing"), da.attrs.get("pixel_spacing")
    if b and s:
        return round((s[0] / b[0] + s[1] / b[1]) / 2, 6)
    return round((base.sizes["y"] / da.sizes["y"] + base.sizes["x"] / da.sizes["x"]) / 2, 6)


def _slide_attrs(info: WsiHeader, downsamples: list[float], levels: list) -> dict:
    attrs: dict[str, Any] = {
        "modality": "SM",
        "series_instance_uid": info.series_instance_uid,
        "study_instance_uid": info.study_instance_uid,
        "level_count": len(levels),
        "level_downsamples": downsamples,
        "level_dimensions": [[int(d.sizes["x"]), int(d.sizes["y"])] for d in levels],
        "total_pixel_matrix_origin": [info.origin[0], info.origin[1]],
        "image_orientation_slide": list(info.orientation),
        "optical_paths": [
            {k: v for k, v in {"identifier": op.identifier, "description": op.description,
                               "illumination": op.illumination, "objective_lens_power": op.objective_lens_power}.items()
             if v is not None}
            for op in info.optical_paths
        ],
    }
    if levels and "pixel_spacing" in levels[0].attrs:
        attrs["mpp"] = [1000 * levels[0].attrs["pixel_spacing"][1], 1000 * levels[0].attrs["pixel_spacing"][0]]
    if info.container_identifier:
        attrs["container_identifier"] = info.container_identifier
    for col in ("frame_of_reference_uid", "series_description", "manufacturer", "patient_id"):
        v = info.extra.get(col)
        if v:
            attrs[col] = v
    icc = icc_base64(info.optical_paths)
    if icc is not None:
        attrs["icc_profile"] = icc
    return attrs


def open_slide(
    source: Any,
    slide: str | int | None = None,
    *,
    chunks: Any = "auto",
    fill: float | None = None,
    threads: int = 1,
    apply_icc: bool = False,
    jpeg_decoder: str = "libjpeg-turbo",
    strict: bool = False,
    storage_options: dict | None = None,
):
    """Open one whole-slide microscopy pyramid as a lazy multiscale DataTree.

    Parameters
    ----------
    source : path, URL, glob, DICOMDIR, list of them, a scan table, or ``dicomweb://host/prefix?study=S&series=SE``
        The slide's instances (all levels, associated images, concatenation parts);
        a DICOMweb URL opens that series with :func:`dcmxr.wsi.web.open_slide_dicomweb`.
    slide : int or str, optional
        Which slide when the source holds several: index in
        :func:`list_slides` order or SeriesInstanceUID.
    chunks : "auto", int, (int, int) or {"y": int, "x": int}
        Stored tiles per Dask chunk along y and x ("auto": one tile per chunk).
    fill : float, optional
        Value of pixels no tile covers (missing TILED_SPARSE tiles, padding):
        by default white (2**BitsStored - 1) for brightfield, 0 for fluorescence.
    threads : int
        Decoder threads inside each chunk task.
    apply_icc : bool
        Convert RGB tiles through the instance's ICC profile to sRGB (Pillow ImageCms).
    jpeg_decoder : {"libjpeg-turbo", "pydicom"}
        How JPEG baseline tiles decode: libjpeg-turbo with its own YCbCr->RGB
        (default; fast; identical to Pillow / other libjpeg-turbo readers) or
        pydicom's exact values (pylibjpeg-libjpeg + pydicom's conversion,
        about 15x slower; differs by a few grey levels on 4:2:0 chroma).
    strict : bool
        Raise on unreadable files instead of skipping them.
    storage_options : dict, optional
        fsspec options for URLs.

    Returns
    -------
    xarray.DataTree
        Nodes ``level_0`` (largest), ``level_1``, ... and the associated images
        (``label``, ``overview``, ``thumbnail``), each with an ``image``
        variable ``([optical_path], [focal_plane], y, x[, c])`` whose chunks
        are the stored tiles; ``y``/``x`` are pixel centres in mm in the slide
        coordinate system. Opening reads headers only, no tile bytes.

    Raises
    ------
    AmbiguousSelectionError
        Several slides and no ``slide=``.
    SelectionError
        No WSI instances, or ``slide`` matches none.
    GeometryError
        A level's instances disagree on tile or total matrix size.
    """
    from .decode import JPEG_DECODERS

    if jpeg_decoder not in JPEG_DECODERS:
        raise ValueError(f"jpeg_decoder must be one of {JPEG_DECODERS}, got {jpeg_decoder!r}")
    if isinstance(source, str) and source.startswith(("dicomweb://", "dicomwebs://")):
        from .web import open_slide_dicomweb

        return open_slide_dicomweb(source, chunks=chunks, fill=fill, threads=threads, apply_icc=apply_icc,
                                   jpeg_decoder=jpeg_decoder)
    headers = _select(_headers(source, storage_options, strict), slide)
    return _build_tree(headers, chunks=chunks, fill=fill, threads=threads, storage_options=storage_options,
                       apply_icc=apply_icc, jpeg_decoder=jpeg_decoder)


def open_slides(source: Any, **kwargs: Any) -> dict[str, Any]:
    """Open every slide in a source: ``{SeriesInstanceUID: DataTree}``.

    Parameters
    ----------
    source : as for :func:`open_slide`
    **kwargs
        Passed to :func:`open_slide`.
    """
    headers = _headers(source, kwargs.get("storage_options"), kwargs.get("strict", False))
    series = _by_series(headers)
    if not series:
        raise SelectionError("no VL Whole Slide Microscopy images (SOP class 1.2.840.10008.5.1.4.1.1.77.1.6) found")
    return {uid: open_slide(hs, **kwargs) for uid, hs in series.items()}
