"""Archive -> DICOM files: write back every instance of a :func:`to_zarr` archive.

Each instance is rebuilt from its stored DICOM JSON header and file meta, and
its pixel data from the archive: the ``frames`` array when the series has one,
otherwise by inverting the (integer) rescale of ``image``, which
:func:`dcmxr.stores.to_zarr` only allows when that is exact.

What changes on the way back
----------------------------
* The transfer syntax: Explicit VR Little Endian by default. With
  ``transfer_syntax="original"`` native originals keep theirs (Explicit VR Big
  Endian, retired, is written as Explicit VR Little Endian) and lossless
  compressed originals are re-encoded to theirs where pydicom has an encoder
  (RLE, JPEG-LS, JPEG 2000 lossless); otherwise a warning says which syntax was
  used instead.
* Colour frames stored as YBR (``YBR_FULL``, ``YBR_FULL_422``, ``YBR_ICT``,
  ``YBR_RCT``) are decoded to RGB on conversion (as pydicom's ``pixel_array``
  does), so they are written with ``PhotometricInterpretation = RGB``.
* Lossily compressed sources are written with their decoded pixels;
  ``LossyImageCompression`` and its ratio/method attributes are kept as they
  were, so the output still says it was lossy.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DcmxrWarning, ExportError
from .archive import _zarr, archive_status, safe_name

__all__ = ["to_dicom"]

EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
BIG_ENDIAN = "1.2.840.10008.1.2.2"
#: Lossless syntaxes pydicom can encode (given its encoder plugins).
_ENCODABLE = {"1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.90",
              "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.203"}


def _series_frames(g) -> tuple[Any, np.ndarray, np.ndarray]:
    """A callable ``frame(i) -> stored ndarray`` for one series group."""
    inst = np.asarray(g["frame_instance"][...])
    fnum = np.asarray(g["frame_number"][...])
    if "frames" in g:
        frames = g["frames"]
        return (lambda idx: np.asarray(frames[idx[0]:idx[-1] + 1])[np.asarray(idx) - idx[0]]), inst, fnum
    enc = dict(g.attrs).get("dcmxr_encoding") or {}
    stored = np.dtype(enc.get("stored_dtype", "<u2"))
    slope = np.asarray(g["frame_slope"][...])
    icpt = np.asarray(g["frame_intercept"][...])
    where = np.asarray(g["image_frame"][...])
    image = g["image"]
    lead = where.ndim
    pos = {int(f): np.unravel_index(k, where.shape) for k, f in enumerate(where.ravel()) if f >= 0}

    def get(idx):
        out = []
        for i in idx:
            img = np.asarray(image[pos[int(i)] + (slice(None),) * (image.ndim - lead)])
            s, b = slope[i], icpt[i]
            if s == 1 and b == 0:
                out.append(img.astype(stored))
            else:
                out.append(((img.astype(np.int64) - int(b)) // int(s)).astype(stored))
        return np.stack(out)

    return get, inst, fnum


def _pixel_element(ds, arr: np.ndarray) -> None:
    """Put native pixel values ``arr`` (frames, rows, cols[, samples]) into ``ds``."""
    from pydicom.pixels import pack_bits

    if arr.dtype.kind == "f":
        tag, vr = (0x7FE00008, "OF") if arr.dtype.itemsize == 4 else (0x7FE00009, "OD")
        ds.add_new(tag, vr, arr.astype(arr.dtype.newbyteorder("<")).tobytes())
        return
    if int(ds.get("BitsAllocated", 16)) == 1:
        data = pack_bits(arr.ravel(), pad=False)
        data += b"\0" * (len(data) % 2)
        ds.add_new(0x7FE00010, "OB", data)
        return
    if arr.ndim == 4 and int(ds.get("PlanarConfiguration", 0)) == 1:
        arr = np.ascontiguousarray(arr.transpose(0, 3, 1, 2))
    pi = str(ds.get("PhotometricInterpretation", ""))
    if pi.startswith("YBR"):
        ds.PhotometricInterpretation = "RGB"
    alloc = int(ds.get("BitsAllocated", arr.dtype.itemsize * 8))
    target = np.dtype(f"<{'i' if arr.dtype.kind == 'i' else 'u'}{max(1, alloc // 8)}")
    data = arr.astype(target).tobytes()
    data += b"\0" * (len(data) % 2)
    ds.add_new(0x7FE00010, "OB" if alloc <= 8 else "OW", data)


def _target_syntax(original: str, transfer_syntax: str) -> str:
    if transfer_syntax != "original":
        return transfer_syntax
    if original in (EXPLICIT_LE, IMPLICIT_LE, DEFLATED_LE):
        return original
    if original == BIG_ENDIAN:
        return EXPLICIT_LE
    return original


def _write_instance(ds, arr: np.ndarray | None, syntax: str, path: Path) -> None:
    from pydicom.uid import UID

    original = str(ds.file_meta.get("TransferSyntaxUID", EXPLICIT_LE))
    target = _target_syntax(original, syntax)
    if arr is not None:
        _pixel_element(ds, arr)
    native = target in (EXPLICIT_LE, IMPLICIT_LE, DEFLATED_LE)
    if arr is not None and not native:
        ds.file_meta.TransferSyntaxUID = EXPLICIT_LE
        if target in _ENCODABLE and int(ds.get("BitsAllocated", 16)) != 1:
            try:
                ds.compress(UID(target), encoding_plugin="")
            except Exception as exc:  # encoder plugins raise several types
                warnings.warn(f"{path.name}: cannot re-encode to {target} ({exc}); written as {EXPLICIT_LE}",
                              DcmxrWarning, stacklevel=3)
        else:
            warnings.warn(f"{path.name}: no lossless encoder for {target}; written as {EXPLICIT_LE}",
                          DcmxrWarning, stacklevel=3)
    else:
        ds.file_meta.TransferSyntaxUID = target if (arr is not None or native) else original
    import pydicom

    path.parent.mkdir(parents=True, exist_ok=True)
    with pydicom.config.disable_value_validation():
        ds.save_as(path, enforce_file_format=False, implicit_vr=target == IMPLICIT_LE if native else False,
                   little_endian=True)


def to_dicom(store: Any, out: str | os.PathLike, *, transfer_syntax: str = EXPLICIT_LE,
             groups: list[str] | None = None) -> list[Path]:
    """Write every instance of an archive back as DICOM files.

    Parameters
    ----------
    store : str or zarr store
        An archive written by :func:`dcmxr.stores.to_zarr`.
    out : path
        Output folder; files go to ``out/<group path>/<SOPInstanceUID>.dcm``.
    transfer_syntax : str
        Transfer Syntax UID of the output (default Explicit VR Little Endian),
        or ``"original"`` (see the module docstring).
    groups : list of str, optional
        Only these series groups (default: every complete one).

    Returns
    -------
    list of Path
        The files written.

    Raises
    ------
    ExportError
        The store is not a dcmxr archive, or a requested group is incomplete.
    """
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset

    zarr = _zarr()
    status = archive_status(store)
    if status.empty and "dcmxr_archive" not in dict(zarr.open_group(store, mode="r", use_consolidated=False).attrs):
        raise ExportError(f"{store} is not a dcmxr archive (no dcmxr_archive attrs)")
    if groups is not None:
        bad = [g for g in groups if g not in set(status["group"][status["complete"]])]
        if bad:
            raise ExportError(f"groups not complete in {store}: {bad}")
        todo = list(groups)
    else:
        todo = list(status["group"][status["complete"]])
    root = zarr.open_group(store, mode="r", use_consolidated=False)
    out = Path(out)
    written: list[Path] = []
    seen: set[Path] = set()
    for gpath in todo:
        g = root[gpath.strip("/")]
        headers = np.asarray(g["header"][...])
        metas = np.asarray(g["file_meta"][...])
        get = inst = fnum = None
        if "frame_instance" in g:
            get, inst, fnum = _series_frames(g)
        for i, (h, m) in enumerate(zip(headers, metas)):
            with pydicom.config.disable_value_validation():
                ds = Dataset.from_json(json.loads(str(h)))
                ds.file_meta = FileMetaDataset(Dataset.from_json(json.loads(str(m))))
            ds.preamble = b"\0" * 128
            arr = None
            if inst is not None:
                idx = np.flatnonzero(inst == i)
                if len(idx):
                    idx = idx[np.argsort(fnum[idx], kind="stable")]
                    arr = get(list(idx))
            stem = safe_name(ds.get("SOPInstanceUID", ""), f"instance{i:05d}")
            path = out.joinpath(*gpath.strip("/").split("/"), stem + ".dcm")
            k = 2
            while path in seen:  # the same SOP Instance UID twice in one series
                path = path.with_name(f"{stem}_{k}.dcm")
                k += 1
            seen.add(path)
            _write_instance(ds, arr, transfer_syntax, path)
            written.append(path)
    return written
