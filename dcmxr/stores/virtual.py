"""Virtual references: read DICOM pixel data through plain zarr, without copying it.

:func:`virtual` writes a kerchunk-style reference file (JSON, version 1)
describing one zarr (format 2) group per series, whose chunks are byte ranges
inside the original DICOM files, one chunk per frame::

    {"version": 1, "refs": {
        ".zgroup": ..., ".zattrs": ...,
        "<series>/image/.zarray": {..., "chunks": [1, rows, cols], "compressor": {"id": "dcmxr_dicom_frame", ...}},
        "<series>/image/.zattrs": {"_ARRAY_DIMENSIONS": ["z", "y", "x"], ...},
        "<series>/image/3.0.0": ["/data/ct/slice004.dcm", 1394, 524300],
        "<series>/z/0": "base64:...",  ...}}

Uncompressed little/big-endian frames need no codec (the dtype carries the
byte order); every other frame format names :class:`dcmxr.stores.codecs.DicomFrameCodec`
with the frame's transfer syntax, which calls dcmxr's decoders. Open it with
fsspec's reference filesystem and zarr (or :func:`open_virtual`)::

    import fsspec, zarr, dcmxr.stores.codecs
    fs = fsspec.filesystem("reference", fo="refs.json")
    g = zarr.open_group(fs.get_mapper(), mode="r", zarr_format=2)

The array holds *stored* values (as ``open_series(..., raw=True)``) in the
order of the series' first stack (``z`` by position, leading ``t`` etc. as
dcmxr assembles them); the rescale is in the array attrs
(``rescale_slope``/``rescale_intercept`` when constant). Missing grid
positions are absent chunks (fill value 0). A series whose files use several transfer syntaxes is split into one group
per syntax (``<series>_ts1`` ...). MOSAIC series (one stored frame
holds many slices) and files that are deflated as a whole
(1.2.840.10008.1.2.1.99) cannot be expressed as byte ranges per slice: for
MOSAIC the group holds the stored frames (``dicom_frame``, ``frame_row``,
``frame_col``) instead of ``image``; deflated data sets are skipped with a
warning.
"""

from __future__ import annotations

import base64
import json
import os
import warnings
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DcmxrError, DcmxrWarning
from .archive import series_groups

__all__ = ["virtual", "open_virtual"]

_NATIVE_LE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}
_NATIVE_BE = {"1.2.840.10008.1.2.2"}


def _inline(values: np.ndarray) -> str:
    return "base64:" + base64.b64encode(np.ascontiguousarray(values).tobytes()).decode()


def _coord_refs(prefix: str, name: str, values: np.ndarray, attrs: dict, refs: dict) -> None:
    values = np.asarray(values, dtype="<f8")
    refs[f"{prefix}/{name}/.zarray"] = json.dumps({
        "zarr_format": 2, "shape": [len(values)], "chunks": [max(1, len(values))], "dtype": "<f8",
        "compressor": None, "filters": None, "fill_value": None, "order": "C"})
    refs[f"{prefix}/{name}/.zattrs"] = json.dumps({"_ARRAY_DIMENSIONS": [name], **attrs})
    refs[f"{prefix}/{name}/0"] = _inline(values)


def _frame_format(r: pd.Series) -> tuple[str, dict | None]:
    """(zarr dtype, compressor config or None) of one frame."""
    from ..backend.build import framerefs, stored_dtype
    from .codecs import CODEC_ID

    ref = framerefs(r.to_frame().T)[0]  # the same row -> FrameRef mapping as open_series
    ts, spp, planar = ref.transfer_syntax, ref.samples_per_pixel, ref.planar_configuration
    pi = ref.photometric_interpretation
    dt = stored_dtype(r)
    if ref.bits_allocated >= 8 and not pi.startswith("YBR") and not (spp > 1 and planar) \
            and ref.bits_stored == ref.bits_allocated:
        if ts in _NATIVE_LE:
            return dt.newbyteorder("<").str, None
        if ts in _NATIVE_BE:
            return dt.newbyteorder(">").str, None
    if spp > 1 and pi.startswith("YBR"):
        dt = np.dtype("uint8") if dt.itemsize == 1 else dt
    cfg = {"id": CODEC_ID, "transfer_syntax": ts, "rows": ref.rows, "columns": ref.columns,
           "samples_per_pixel": spp, "bits_allocated": ref.bits_allocated, "bits_stored": ref.bits_stored,
           "pixel_representation": ref.pixel_representation, "photometric_interpretation": pi,
           "planar_configuration": planar, "bit_offset": ref.bit_offset, "float_pixels": ref.float_pixels}
    return dt.newbyteorder("=").str, cfg


def _series_refs(entry: dict, refs: dict, name: str) -> None:
    from ..assembly.stack import assemble, choose_stack, split_stacks
    from ..backend.build import _const, _rescale, framerefs

    rows: pd.DataFrame = entry["rows"]
    if rows["deflate_from"].notna().any() if "deflate_from" in rows.columns else False:
        raise DcmxrError("deflated data set (1.2.840.10008.1.2.1.99): frames are not byte ranges of the file")
    grid = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            chosen, _ = choose_stack(list(split_stacks(rows)), None)
            grid = assemble(chosen)
            if "tile_row0" in grid.table.columns and grid.table["tile_row0"].notna().any():
                grid = None
        except DcmxrError:
            grid = None
    first = rows.iloc[0]
    dtype, comp = _frame_format(first)
    spp = framerefs(rows.iloc[:1])[0].samples_per_pixel
    fshape = [int(first["rows"]), int(first["columns"])] + ([spp] if spp > 1 else [])
    fdims = ["y", "x"] + (["c"] if spp > 1 else [])
    prefix = f"{name}/image"
    if grid is not None:
        t, index, lead_dims = grid.table, grid.index, list(grid.lead_dims)
    else:
        t, index, lead_dims = rows, np.arange(len(rows)), ["dicom_frame"]
        fdims = ["frame_row", "frame_col"] + (["frame_sample"] if spp > 1 else [])
        prefix = f"{name}/frames"
    shape = list(index.shape) + fshape
    refs[f"{prefix}/.zarray"] = json.dumps({
        "zarr_format": 2, "shape": shape, "chunks": [1] * index.ndim + fshape, "dtype": dtype,
        "compressor": comp, "filters": None, "fill_value": None, "order": "C"})
    slope, icpt = _rescale(t)
    attrs: dict[str, Any] = {"_ARRAY_DIMENSIONS": lead_dims + fdims,
                             "transfer_syntax_uid": str(first["transfer_syntax_uid"]),
                             "series_instance_uid": entry["uid"]}
    same_s, s0 = _const(pd.Series(slope))
    same_i, i0 = _const(pd.Series(icpt))
    if same_s and same_i:
        attrs["rescale_slope"], attrs["rescale_intercept"] = float(s0), float(i0)
    refs[f"{prefix}/.zattrs"] = json.dumps(attrs)
    tail = ".".join("0" for _ in fshape)
    paths, offs, lens = t["path"].to_numpy(), t["pixel_offset"].to_numpy(), t["pixel_length"].to_numpy()
    for pos in np.ndindex(*index.shape):
        i = int(index[pos])
        if i < 0:
            continue
        key = ".".join(str(p) for p in pos) + "." + tail
        refs[f"{prefix}/{key}"] = [os.path.abspath(str(paths[i])), int(offs[i]), int(lens[i])]
    if grid is not None and grid.coords:
        for ax in ("x", "y", "z"):
            _coord_refs(name, ax, grid.coords[ax],
                        {"units": "mm", "direction": [float(v) for v in grid.coords[f"dir_{ax}"]]}, refs)
    refs[f"{name}/.zgroup"] = json.dumps({"zarr_format": 2})
    refs[f"{name}/.zattrs"] = json.dumps({"series_instance_uid": entry["uid"],
                                          "modality": str(first.get("modality") or "")})


def virtual(source: Any, out: str | os.PathLike | None = None, *,
            storage_options: dict | None = None) -> dict:
    """Write kerchunk-style references that expose DICOM frames as zarr chunks.

    Parameters
    ----------
    source : path, glob, list, DICOMDIR or a table from :func:`dcmxr.scan`
        Local files (references hold absolute paths).
    out : path, optional
        Where to write the JSON; when None only the dict is returned.
    storage_options : dict, optional
        fsspec options for scanning remote sources.

    Returns
    -------
    dict
        The reference document ``{"version": 1, "refs": {...}}``; its
        ``"dcmxr_failed"`` key (not part of the kerchunk spec, ignored by
        readers) lists series that could not be referenced, with reasons.
    """
    from ..catalog.scan import scan

    table = source if isinstance(source, pd.DataFrame) else scan(source, storage_options=storage_options,
                                                                  progress=False)
    refs: dict[str, Any] = {".zgroup": json.dumps({"zarr_format": 2}),
                            ".zattrs": json.dumps({"dcmxr_virtual": {"format": 1}})}
    failed = []
    for entry in _by_syntax(series_groups(table)):
        name = entry["path"].strip("/")
        for parent in _parents(name):
            refs.setdefault(f"{parent}/.zgroup", json.dumps({"zarr_format": 2}))
        try:
            part: dict = {}
            _series_refs(entry, part, name)
            refs.update(part)
        except (DcmxrError, ValueError, KeyError, TypeError) as exc:
            failed.append({"series_instance_uid": entry["uid"], "group": entry["path"],
                           "reason": f"{type(exc).__name__}: {exc}"})
    if failed:
        warnings.warn(f"{len(failed)} series not referenced: "
                      + "; ".join(f"{f['group']}: {f['reason']}" for f in failed[:5]), DcmxrWarning,
                      stacklevel=2)
    doc = {"version": 1, "refs": refs, "dcmxr_failed": failed}
    if out is not None:
        with open(out, "w") as fh:
            json.dump(doc, fh)
    return doc


def _by_syntax(entries: list[dict]) -> list[dict]:
    """Split series whose files use several transfer syntaxes: one array needs one codec."""
    out = []
    for e in entries:
        rows = e["rows"]
        if rows.empty:
            continue
        parts = list(rows.groupby(rows["transfer_syntax_uid"].astype(str), sort=True))
        for k, (_, part) in enumerate(parts):
            out.append({**e, "rows": part.reset_index(drop=True),
                        "path": e["path"] + ("" if k == 0 else f"_ts{k}")})
    return out


def _parents(name: str) -> list[str]:
    parts = name.split("/")
    return ["/".join(parts[:k]) for k in range(1, len(parts))]


def open_virtual(refs: str | os.PathLike | dict):
    """Open a reference file (or dict) from :func:`virtual` as a read-only zarr group.

    Parameters
    ----------
    refs : path or dict

    Returns
    -------
    zarr.Group
    """
    import fsspec
    import zarr

    from . import codecs  # noqa: F401  (registers DicomFrameCodec)

    fo = refs if isinstance(refs, dict) else str(refs)
    fs = fsspec.filesystem("reference", fo=fo)
    return zarr.open_group(fs.get_mapper(), mode="r", zarr_format=2)
