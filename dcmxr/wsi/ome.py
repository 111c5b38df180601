"""Export a slide to OME-Zarr (NGFF 0.4 multiscales) or to a zarr DataTree.

NGFF requires space axes last, so an RGB level ``(y, x, c)`` is written
transposed as ``(c, y, x)`` with ``c`` a channel axis; leading
``optical_path`` becomes the channel axis of single-sample levels and
``focal_plane`` a ``z`` space axis. Scales and translations are in
micrometers (NGFF's unit names); the translation is the centre of the first
pixel, so the physical position of every pixel equals dcmxr's mm coordinates
times 1000.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..errors import ExportError, missing_dependency

__all__ = ["to_ome_zarr", "to_zarr"]

NGFF_VERSION = "0.4"


def _zarr():
    try:
        import zarr
    except ImportError:
        raise missing_dependency("zarr", "zarr") from None
    return zarr


def _levels(slide) -> list:
    names = sorted((k for k in slide.children if k.startswith("level_")), key=lambda k: int(k.split("_")[1]))
    if not names:
        raise ExportError("the slide has no pyramid levels (level_0, level_1, ...) to export")
    return [slide[n]["image"] for n in names]


def _ngff_layout(da) -> tuple[list[str], list[dict]]:
    """Dim order to write and the NGFF axes for it."""
    order: list[str] = []
    axes: list[dict] = []
    if "c" in da.dims and "optical_path" in da.dims:
        raise ExportError("NGFF allows one channel axis: select one optical_path (isel) before exporting RGB levels")
    for dim in ("c", "optical_path"):
        if dim in da.dims:
            order.append(dim)
            axes.append({"name": "c", "type": "channel"})
    if "focal_plane" in da.dims:
        order.append("focal_plane")
        axes.append({"name": "z", "type": "space", "unit": "micrometer"})
    order += ["y", "x"]
    axes += [{"name": "y", "type": "space", "unit": "micrometer"}, {"name": "x", "type": "space", "unit": "micrometer"}]
    return order, axes


def _transform(da, order: list[str]) -> list[dict]:
    scale, shift = [], []
    for dim in order:
        if dim in ("y", "x", "focal_plane") and da[dim].attrs.get("units") == "mm":
            v = np.asarray(da[dim].values, dtype=float)
            spacing = da.attrs.get("pixel_spacing")
            if dim in ("y", "x") and spacing:
                step = float(spacing[0] if dim == "y" else spacing[1])
            else:
                step = float(v[1] - v[0]) if len(v) > 1 else 1.0
            scale.append(round(step * 1000, 12))
            shift.append(round(float(v[0]) * 1000, 12))
        else:
            scale.append(1.0)
            shift.append(0.0)
    return [{"type": "scale", "scale": scale}, {"type": "translation", "translation": shift}]


def to_ome_zarr(slide, store: str | os.PathLike, *, name: str | None = None, overwrite: bool = False,
                compute: bool = True):
    """Write the slide's pyramid as an OME-Zarr (NGFF 0.4) multiscale image.

    Parameters
    ----------
    slide : xarray.DataTree
        From :func:`dcmxr.wsi.open_slide`.
    store : path or zarr store
    name : str, optional
        Multiscale name (default: the SeriesInstanceUID).
    overwrite : bool
        Replace an existing store.
    compute : bool
        Write now (default) or return the Dask delayed write.

    Returns
    -------
    zarr.Group, or a Dask delayed object when ``compute=False``.

    Raises
    ------
    ExportError
        No pyramid levels, or both ``c`` and ``optical_path`` dims.
    """
    import dask.array as da

    zarr = _zarr()
    levels = _levels(slide)
    order, axes = _ngff_layout(levels[0])
    root = zarr.open_group(os.fspath(store) if isinstance(store, os.PathLike) else store,
                           mode="w" if overwrite else "w-", zarr_format=2)
    datasets, sources, targets = [], [], []
    for i, lv in enumerate(levels):
        arr = lv.transpose(*order)
        th, tw = lv.attrs.get("tile_size", [512, 512])
        chunks = tuple(1 if d in ("optical_path", "focal_plane") else arr.sizes[d] if d == "c"
                       else min(th if d == "y" else tw, arr.sizes[d]) for d in order)
        z = root.create_array(str(i), shape=arr.shape, chunks=chunks, dtype=arr.dtype,
                              fill_value=lv.attrs.get("fill_value", 0), chunk_key_encoding={"name": "v2", "separator": "/"})
        data = arr.data if isinstance(arr.data, da.Array) else da.from_array(arr.data)
        sources.append(data.rechunk(chunks))
        targets.append(z)
        datasets.append({"path": str(i), "coordinateTransformations": _transform(arr, order)})
    attrs = slide.attrs
    ms = {"version": NGFF_VERSION, "name": name or str(attrs.get("series_instance_uid", "slide")),
          "axes": axes, "datasets": datasets, "type": "dicom-wsi",
          "metadata": {"source": "dcmxr", "level_downsamples": attrs.get("level_downsamples", [])}}
    root.attrs["multiscales"] = [ms]
    if "c" in order and levels[0].sizes["c"] == 3:
        root.attrs["omero"] = {"version": NGFF_VERSION, "channels": [
            {"label": lab, "color": col, "active": True, "window": {"start": 0, "end": 255, "min": 0, "max": 255}}
            for lab, col in (("R", "FF0000"), ("G", "00FF00"), ("B", "0000FF"))], "rdefs": {"model": "color"}}
    delayed = da.store(sources, targets, lock=False, compute=compute)
    return root if compute else delayed


def to_zarr(slide, store: str | os.PathLike, *, mode: str = "w-", **kwargs: Any):
    """Write the whole slide DataTree (levels, associated images, attrs) to zarr.

    ``xr.open_datatree(store, engine="zarr")`` reads it back equal. Thin
    wrapper over :meth:`xarray.DataTree.to_zarr` that drops the DICOM-only
    ``preferred_chunks`` encoding and keeps tile-sized zarr chunks.

    Parameters
    ----------
    slide : xarray.DataTree
    store : path or zarr store
    mode : str
        As for :meth:`xarray.DataTree.to_zarr` (default: fail if it exists).
    **kwargs
        Passed to :meth:`xarray.DataTree.to_zarr`.
    """
    _zarr()
    tree = slide.copy()
    for node in tree.subtree:
        for var in node.variables.values():
            var.encoding.pop("preferred_chunks", None)
    return tree.to_zarr(store, mode=mode, **kwargs)
