"""``dcmxr.scan``: files -> a header table with one row per frame.

Headers only: each file is read up to the start of its Pixel Data element
(:mod:`.header`), enhanced objects get their functional groups flattened
(:mod:`.enhanced`), and the byte range of every frame is located
(:mod:`.pixeldata`). Bad files are skipped, collected and reported once.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pandas as pd

from ..errors import DcmxrError, InvalidDicomError, NotDicomError, SkippedFileWarning
from .fields import VECTOR_COLUMNS, snake
from .header import Header, read_header
from .siemens import parse_csa
from .sources import Source, expand, is_url, open_reader

#: Files above this count are scanned in worker processes (local files only).
PARALLEL_THRESHOLD = 2000

_BASE_COLUMNS = [
    "path",
    "frame",
    "number_of_frames",
    "transfer_syntax_uid",
    "pixel_offset",
    "pixel_length",
    "bit_offset",
    "float_pixels",
    "deflate_from",
    "enhanced",
    "file_size",
    "mtime",
]


_US_OR_SS = ("SmallestImagePixelValue", "LargestImagePixelValue")


def _flatten(values: dict[str, Any], row: dict[str, Any]) -> None:
    signed = values.get("PixelRepresentation") == 1
    for kw, val in values.items():
        if kw in _US_OR_SS and signed and isinstance(val, int) and val > 32767:
            val -= 65536
        if kw == "SpecificCharacterSet":
            continue
        if kw in VECTOR_COLUMNS:
            prefix, n = VECTOR_COLUMNS[kw]
            vals = val if isinstance(val, list) else [val]
            if len(vals) == n and all(isinstance(v, (int, float)) for v in vals):
                for i, v in enumerate(vals):
                    row[f"{prefix}_{i}"] = float(v)
            continue
        col = snake(kw) if kw[:1].isupper() else kw
        if kw == "siemens_csa_image":
            if isinstance(val, (bytes, bytearray)):
                row.update(parse_csa(bytes(val)))
            continue
        if isinstance(val, list):
            if kw in ("ImageType",):
                val = "\\".join(str(v) for v in val)
            elif kw in ("GridFrameOffsetVector", "DimensionIndexValues"):
                val = tuple(val)
            elif kw == "DiffusionBValue":
                val = val[0]
            elif kw == "siemens_gradient" and len(val) == 3:
                val = [float(v) for v in val]
                row[col] = val
                continue
            else:
                val = val[0] if all(isinstance(v, (int, float)) for v in val) else "\\".join(map(str, val))
        elif isinstance(val, (bytes, bytearray)):
            continue
        row[col] = val


def _pixel_ranges(header: Header, read, size: int | None, rows: int, cols: int, spp: int,
                  bits: int, n_frames: int, photometric: str | None) -> list[tuple[int, int, int]]:
    from .pixeldata import locate_frames

    if header.inflated is not None:
        inflated = header.inflated

        def read(offset: int, n: int) -> bytes:
            return inflated[offset : offset + n]

        size = len(inflated)
    return locate_frames(
        read,
        header.pixel_offset,
        header.transfer_syntax,
        n_frames,
        rows,
        cols,
        spp,
        bits,
        file_size=size,
        extended_offsets=header.extended_offsets,
        extended_lengths=header.extended_lengths,
        photometric_interpretation=photometric,
    )


def scan_file(location: str, storage_options: dict | None = None) -> tuple[list[dict], dict | None]:
    """Scan one file.

    Returns
    -------
    rows : list of dict
        One dict per frame (empty for objects without pixel data).
    other : dict or None
        A summary row for objects without pixel data (SR, RTSTRUCT, ...).

    Raises
    ------
    NotDicomError, InvalidDicomError, OSError
    """
    read, size, mtime, close = open_reader(location, storage_options)
    try:
        header = read_header(read, size)
        values = header.values
        if header.dicomdir:
            return [], {"path": location, "modality": "DICOMDIR", "number_of_frames": 0,
                        "file_size": size, "mtime": mtime}
        if "SOPInstanceUID" not in values and "SeriesInstanceUID" not in values:
            raise NotDicomError("no SOP/Series Instance UID: not a DICOM composite object")
        base: dict[str, Any] = {
            "path": location,
            "transfer_syntax_uid": header.transfer_syntax,
            "enhanced": header.enhanced,
            "file_size": size,
            "mtime": mtime,
            "deflate_from": header.deflate_from,
            "float_pixels": header.pixel_kind,
        }
        _flatten(values, base)
        if header.pixel_offset is None:
            if values.get("Rows") and values.get("Columns") and values.get("BitsAllocated"):
                raise InvalidDicomError("image header (Rows/Columns/BitsAllocated) but no Pixel Data element")
            base["number_of_frames"] = 0
            return [], base
        rows = values.get("Rows")
        cols = values.get("Columns")
        if not isinstance(rows, int) or not isinstance(cols, int) or rows <= 0 or cols <= 0:
            raise InvalidDicomError(f"Pixel Data present but Rows/Columns invalid ({rows!r} x {cols!r})")
        spp = values.get("SamplesPerPixel") or 1
        bits = values.get("BitsAllocated") or (32 if header.pixel_kind == 32 else 64 if header.pixel_kind == 64 else 0)
        if bits not in (1, 8, 16, 32, 64):
            raise InvalidDicomError(f"unsupported BitsAllocated {bits!r}")
        n_frames = values.get("NumberOfFrames") or 1
        if not isinstance(n_frames, int) or n_frames < 1:
            raise InvalidDicomError(f"invalid NumberOfFrames {n_frames!r}")
        ranges = _pixel_ranges(header, read, size, rows, cols, spp, bits, n_frames,
                               values.get("PhotometricInterpretation"))
        per_frame: list[dict] | None = None
        if header.enhanced:
            per_frame = _enhanced_frames(location, storage_options, base)
        out = []
        for i, (off, length, bit_off) in enumerate(ranges):
            row = dict(base)
            row.update(frame=i, number_of_frames=n_frames, pixel_offset=off, pixel_length=length,
                       bit_offset=bit_off)
            if per_frame is not None and i < len(per_frame):
                _flatten(per_frame[i], row)
            out.append(row)
        return out, None
    finally:
        close()


def _enhanced_frames(location: str, storage_options: dict | None, base: dict) -> list[dict]:
    import pydicom

    from .enhanced import dimension_pointers, frame_values

    if is_url(location):
        import fsspec

        with fsspec.open(location, "rb", **(storage_options or {})) as fh:
            ds = pydicom.dcmread(fh, stop_before_pixels=True)
    else:
        ds = pydicom.dcmread(location, stop_before_pixels=True)
    dims = dimension_pointers(ds)
    if dims:
        base["dimension_pointers"] = tuple(dims)
    return frame_values(ds)


def _scan_many(locations: Sequence[str], storage_options: dict | None) -> tuple[list[dict], list[dict], list[dict]]:
    rows: list[dict] = []
    others: list[dict] = []
    skipped: list[dict] = []
    for loc in locations:
        try:
            r, other = scan_file(loc, storage_options)
        except (DcmxrError, OSError, ValueError, KeyError, IndexError, OverflowError, MemoryError) as exc:
            skipped.append({"path": loc, "reason": f"{type(exc).__name__}: {exc}"})
            continue
        rows.extend(r)
        if other is not None:
            others.append(other)
    return rows, others, skipped


def scan(
    source: Source,
    *,
    recursive: bool = True,
    strict: bool = False,
    progress: bool | None = None,
    processes: int | None = None,
    storage_options: dict | None = None,
    client: Any = None,
) -> pd.DataFrame:
    """Read DICOM headers into a table with one row per frame.

    Parameters
    ----------
    source : path, URL, glob, DICOMDIR or a sequence of them
        What to scan (see :func:`dcmxr.catalog.sources.expand`).
    recursive : bool
        Walk sub-folders.
    strict : bool
        Raise on the first bad file instead of skipping it.
    progress : bool, optional
        Show a tqdm bar; by default it appears only when scanning takes
        more than a second.
    processes : int, optional
        Worker processes for large local scans. Default 1: the header walker is
        fast enough that a process pool on a 2-core machine was measured slower
        (benchmarks/run.py); pass e.g. ``processes=8`` on bigger machines.
    client : distributed.Client, optional
        Read the headers on a dask.distributed cluster (see
        :func:`dcmxr.catalog.distributed.scan_on_client`); the workers must reach
        the same paths or URLs.
    storage_options : dict, optional
        fsspec options for URLs.

    Returns
    -------
    pandas.DataFrame
        One row per frame. ``table.attrs["skipped"]`` lists skipped files
        (path + reason); ``table.attrs["non_image"]`` lists objects without
        pixel data (SR, RTSTRUCT, ...).

    Warns
    -----
    SkippedFileWarning
        Once, when any file was skipped.
    """
    if client is not None:
        from .distributed import scan_on_client

        return scan_on_client(source, client, recursive=recursive, strict=strict,
                              storage_options=storage_options)
    locations = expand(source, recursive=recursive, storage_options=storage_options)
    rows, others, skipped = _run(locations, strict, progress, processes, storage_options)
    return build_table(rows, others, skipped)


def _run(locations, strict, progress, processes, storage_options):
    tqdm = _tqdm_class()

    show = progress is not False
    n = len(locations)
    nproc = processes if processes is not None else 1
    local = not any(is_url(p) for p in locations)
    rows: list[dict] = []
    others: list[dict] = []
    skipped: list[dict] = []
    bar = tqdm(total=n, unit="file", desc="scan", delay=0 if progress else 1.0, disable=not show or n == 0)
    try:
        if strict:
            for loc in locations:
                r, other = scan_file(loc, storage_options)
                rows.extend(r)
                if other is not None:
                    others.append(other)
                bar.update(1)
        elif nproc > 1 and local and n > PARALLEL_THRESHOLD:
            batch = max(64, n // (nproc * 8))
            batches = [locations[i : i + batch] for i in range(0, n, batch)]
            import multiprocessing as mp

            ctx = mp.get_context("forkserver" if os.name == "posix" else "spawn")
            with ProcessPoolExecutor(max_workers=nproc, mp_context=ctx) as pool:
                for (r, o, s), b in zip(pool.map(_scan_many, batches, [storage_options] * len(batches)), batches):
                    rows.extend(r)
                    others.extend(o)
                    skipped.extend(s)
                    bar.update(len(b))
        else:
            step = 32
            for i in range(0, n, step):
                part = locations[i : i + step]
                r, o, s = _scan_many(part, storage_options)
                rows.extend(r)
                others.extend(o)
                skipped.extend(s)
                bar.update(len(part))
    finally:
        bar.close()
    warn_skipped(skipped, n, stacklevel=4)
    return rows, others, skipped


def warn_skipped(skipped: list[dict], n: int, *, stacklevel: int = 3) -> None:
    """One summary SkippedFileWarning for the files a scan skipped (none: no warning)."""
    if not skipped:
        return
    shown = "; ".join(f"{s['path']} ({s['reason']})" for s in skipped[:3])
    more = f" and {len(skipped) - 3} more" if len(skipped) > 3 else ""
    warnings.warn(
        f"skipped {len(skipped)} of {n} files: {shown}{more}; see table.attrs['skipped']",
        SkippedFileWarning,
        stacklevel=stacklevel,
    )


def _tqdm_class():
    """tqdm's notebook bar when ipywidgets can draw it, else the plain one (no TqdmWarning)."""
    try:
        import ipywidgets  # noqa: F401

        from tqdm.auto import tqdm
    except ImportError:
        from tqdm.std import tqdm
    return tqdm


class SharedList(list):
    """A list that pandas' attrs propagation shares instead of deep-copying on every operation."""

    def __deepcopy__(self, memo):
        return self


def build_table(rows: list[dict], others: list[dict], skipped: list[dict]) -> pd.DataFrame:
    """Assemble the frame table from row dicts."""
    table = pd.DataFrame.from_records(rows) if rows else pd.DataFrame(columns=_BASE_COLUMNS)
    for col in ("study_instance_uid", "series_instance_uid", "sop_instance_uid", "series_number",
                "series_description", "modality", "rows", "columns"):
        if col not in table.columns:
            table[col] = None
    front = [c for c in _BASE_COLUMNS if c in table.columns]
    table = table[front + [c for c in table.columns if c not in front]]
    table.attrs["skipped"] = SharedList(skipped)
    table.attrs["non_image"] = SharedList(others)
    return table
