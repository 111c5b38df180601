"""``open_slide`` / ``open_slides``: whole-slide microscopy pyramids as DataTrees."""

from __future__ import annotations

from typing import Any

import pandas as pd

from ..errors import AmbiguousSelectionError, SelectionError
from .instances import ASSOCIATED, VOLUME, WSI_SOP_CLASS, InstanceInfo, icc_base64, read_instance
from .level import build_level

__all__ = ["list_slides", "open_slide", "open_slides"]


def _as_table(source: Any, storage_options: dict | None, strict: bool) -> pd.DataFrame:
    if isinstance(source, pd.DataFrame):
        return source
    from ..catalog.scan import scan

    return scan(source, strict=strict, storage_options=storage_options, progress=False)


def _wsi_rows(table: pd.DataFrame) -> pd.DataFrame:
    if "sop_class_uid" not in table.columns:
        return table.iloc[0:0]
    return table[table["sop_class_uid"] == WSI_SOP_CLASS]


def _flavor(image_type: Any) -> str:
    parts = str(image_type or "").split("\\")
    return parts[2].upper() if len(parts) > 2 else VOLUME


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
    table = _wsi_rows(_as_table(source, storage_options, strict))
    out = []
    for uid, rows in table.groupby(table["series_instance_uid"].fillna(""), sort=False):
        flav = rows["image_type"].map(_flavor) if "image_type" in rows else pd.Series(VOLUME, index=rows.index)
        vol = rows[flav == VOLUME]
        sizes = vol.groupby(["total_pixel_matrix_rows", "total_pixel_matrix_columns"]).size().index
        big = max(sizes, key=lambda s: s[1]) if len(sizes) else (None, None)
        out.append({
            "series_instance_uid": uid,
            "study_instance_uid": rows["study_instance_uid"].iloc[0],
            "series_description": rows["series_description"].iloc[0] if "series_description" in rows else None,
            "levels": len(sizes),
            "associated": sorted(set(flav[flav != VOLUME])),
            "width": None if big[1] is None else int(big[1]),
            "height": None if big[0] is None else int(big[0]),
            "instances": int(rows["path"].nunique()),
        })
    return pd.DataFrame(out, columns=["series_instance_uid", "study_instance_uid", "series_description", "levels",
                                      "associated", "width", "height", "instances"])


def _select(table: pd.DataFrame, slide: str | int | None) -> pd.DataFrame:
    if slide is None and len(table) and table["series_instance_uid"].nunique(dropna=False) == 1:
        return table  # one slide: no listing needed
    listing = list_slides(table)
    if len(listing) == 0:
        raise SelectionError("no VL Whole Slide Microscopy images (SOP class 1.2.840.10008.5.1.4.1.1.77.1.6) found")
    if slide is None:
        if len(listing) > 1:
            shown = "\n".join(f"  [{i}] {r.series_instance_uid} ({r.width}x{r.height}, {r.levels} levels)"
                              for i, r in enumerate(listing.itertuples()))
            raise AmbiguousSelectionError(
                f"{len(listing)} slides found; pick one with slide=<index or SeriesInstanceUID> "
                f"or use dcmxr.open_slides:\n{shown}")
        uid = listing["series_instance_uid"].iloc[0]
    elif isinstance(slide, int):
        if not 0 <= slide < len(listing):
            raise SelectionError(f"slide index {slide} out of range (0..{len(listing) - 1})")
        uid = listing["series_instance_uid"].iloc[slide]
    else:
        if slide not in set(listing["series_instance_uid"]):
            raise SelectionError(f"no slide with SeriesInstanceUID {slide!r}; found {list(listing['series_instance_uid'])}")
        uid = slide
    return table[table["series_instance_uid"].fillna("") == uid]


def _build_tree(rows: pd.DataFrame, *, chunks, fill, threads, storage_options, apply_icc, jpeg_decoder):
    import xarray as xr

    infos: dict[str, InstanceInfo] = {p: read_instance(p, storage_options) for p in rows["path"].unique()}
    flavor = rows["path"].map(lambda p: infos[p].flavor)
    vol = rows[flavor == VOLUME]
    groups: dict[str, xr.Dataset] = {}
    levels = []
    if len(vol):
        key = ["total_pixel_matrix_rows", "total_pixel_matrix_columns"]
        parts = dict(iter(vol.groupby(key, sort=False)))
        sizes = sorted(parts, key=lambda s: (-s[1], -s[0]))
        for i, (r, c) in enumerate(sizes):
            lrows = parts[(r, c)]
            da = build_level(lrows, infos, name=f"level_{i}", chunks=chunks, fill=fill, threads=threads,
                             storage_options=storage_options, apply_icc=apply_icc, jpeg_decoder=jpeg_decoder)
            levels.append(da)
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
    for path in rows[flavor.isin(ASSOCIATED)]["path"].unique():
        info = infos[path]
        arows = rows[rows["path"] == path]
        n = used.get(info.flavor, 0)
        used[info.flavor] = n + 1
        name = info.flavor.lower() + (f"_{n + 1}" if n else "")
        da = build_level(arows, infos, name=name, chunks=chunks, fill=fill, threads=threads,
                         storage_options=storage_options, apply_icc=apply_icc, jpeg_decoder=jpeg_decoder)
        node = da.to_dataset()
        node.attrs = {"image_flavor": info.flavor}
        groups[f"/{name}"] = node
    first = infos[str((vol if len(vol) else rows)["path"].iloc[0])]
    root = xr.Dataset(attrs=_slide_attrs(rows, first, downsamples, levels))
    groups["/"] = root
    return xr.DataTree.from_dict(groups)


def _downsample(base, da) -> float:
    """Level-0 pixels per pixel of this level, from Pixel Spacing (sizes when spacing is absent)."""
    if base is None:
        return 1.0
    b, s = base.attrs.get("pixel_spacing"), da.attrs.get("pixel_spacing")
    if b and s:
        return round((s[0] / b[0] + s[1] / b[1]) / 2, 6)
    return round((base.sizes["y"] / da.sizes["y"] + base.sizes["x"] / da.sizes["x"]) / 2, 6)


def _slide_attrs(rows: pd.DataFrame, info: InstanceInfo, downsamples: list[float], levels: list) -> dict:
    first = rows.iloc[0]
    attrs: dict[str, Any] = {
        "modality": "SM",
        "series_instance_uid": str(first["series_instance_uid"]),
        "study_instance_uid": str(first["study_instance_uid"]),
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
        v = first.get(col)
        if isinstance(v, str) and v:
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
    source : path, URL, glob, DICOMDIR, list of them, or a scan table
        The slide's instances (all levels, associated images, concatenation parts).
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
    table = _as_table(source, storage_options, strict)
    rows = _select(_wsi_rows(table), slide)
    return _build_tree(rows, chunks=chunks, fill=fill, threads=threads, storage_options=storage_options,
                       apply_icc=apply_icc, jpeg_decoder=jpeg_decoder)


def open_slides(source: Any, **kwargs: Any) -> dict[str, Any]:
    """Open every slide in a source: ``{SeriesInstanceUID: DataTree}``.

    Parameters
    ----------
    source : as for :func:`open_slide`
    **kwargs
        Passed to :func:`open_slide`.
    """
    table = _as_table(source, kwargs.get("storage_options"), kwargs.get("strict", False))
    listing = list_slides(table)
    return {uid: open_slide(table, uid, **kwargs) for uid in listing["series_instance_uid"]}
