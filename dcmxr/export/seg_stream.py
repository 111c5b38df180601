"""Stream a BINARY or FRACTIONAL SEG to a file, one slab of slices at a time.

The mask is computed slab by slab (its Dask chunks along z); each slab's
non-empty frames are bit-packed (BINARY: bits contiguous across frame
boundaries, least significant bit first, as pydicom's ``pack_bits``) or
quantised (FRACTIONAL: ``round(p * MaximumFractionalValue)``, as highdicom
does) and appended to a temporary file next to the output, while only the
(slice, segment) of every frame is kept. Then the file is assembled: the
header, the Per-Frame Functional Groups written item by item, the Pixel Data
copied from the temporary file. Peak memory is one slab plus the per-frame
bookkeeping, not the object.

highdicom stays the source of truth for the header: it builds a Segmentation
of one source image and one frame (a template), from which the shared
attributes and the per-frame item layout are taken; the per-frame items
differ only in the source reference, the plane position, the dimension index
values and the segment number. What depends on all frames is redone the way
highdicom does it: the Source Image / Referenced Series sequences list every
source image, Spacing Between Slices comes from all source positions, the
position dimension index is the rank of the plane among the planes that have
a frame (sorted along the normal), SegmentsOverlap is YES / NO / UNDEFINED by
highdicom's rules. Frames are written in slab order (the dimension index
values say where each belongs; highdicom writes segment-major).
"""

from __future__ import annotations

import copy
import os
import shutil
import struct
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["stream_seg"]

_ITEM = b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
_ITEM_END = b"\xfe\xff\x0d\xe0\x00\x00\x00\x00"
_SEQ_END = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
_PFFG = 0x52009230
_PIXEL_DATA = 0x7FE00010


def _encode(elem: Any) -> bytes:
    """One data element in Explicit VR Little Endian, encoded by pydicom."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_data_element

    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_data_element(fp, elem)
    return fp.getvalue()


class _BitWriter:
    """Appends frames to a file: bit-packed (BINARY) or as bytes (FRACTIONAL)."""

    def __init__(self, fp: Any, binary: bool) -> None:
        self.fp, self.binary = fp, binary
        self.carry = np.zeros(0, np.uint8)
        self.nbytes = 0

    def write(self, frames: np.ndarray) -> None:
        if not len(frames):
            return
        if not self.binary:
            data = np.ascontiguousarray(frames, np.uint8).tobytes()
        else:
            bits = np.concatenate([self.carry, frames.reshape(-1).view(np.uint8)])
            full = len(bits) // 8 * 8
            data = np.packbits(bits[:full], bitorder="little").tobytes()
            self.carry = bits[full:].copy()
        self.fp.write(data)
        self.nbytes += len(data)

    def close(self) -> None:
        if self.binary and len(self.carry):
            data = np.packbits(self.carry, bitorder="little").tobytes()
            self.fp.write(data)
            self.nbytes += len(data)
            self.carry = np.zeros(0, np.uint8)


def _slab_frames(block: np.ndarray, kind: str, numbers: np.ndarray, omit: bool, max_frac: int
                 ) -> tuple[list[tuple[int, int]], list[np.ndarray], bool]:
    """Frames of one slab on the mask's own grid: [(slice in slab, segment number)], arrays, overlap seen."""
    where, arrays, overlap = [], [], False
    if kind == "labels":
        for j, sl in enumerate(block):
            if omit:
                found = set(np.flatnonzero(np.bincount(sl.ravel())).tolist())
                present = [n for n in numbers.tolist() if n in found]
            else:
                present = numbers.tolist()
            for n in present:
                where.append((j, int(n)))
                arrays.append(sl == n)
        return where, arrays, False
    if kind == "fractional":
        block = np.around(block * float(max_frac)).astype(np.uint8)
    if block.ndim == 3:
        block = block[..., None]
    if kind == "stack" and block.shape[-1] > 1:
        overlap = bool((block.sum(axis=-1, dtype=np.int32) > 1).any())
    for j in range(block.shape[0]):
        for s, n in enumerate(numbers):
            fr = block[j, :, :, s]
            if not omit or fr.any():
                where.append((j, int(n)))
                arrays.append(fr)
    return where, arrays, overlap


def _template(hd: Any, ds0: Any, rows: int, cols: int, seg_type: str, kw: dict) -> Any:
    """highdicom's Segmentation of one source image, one segment and one full frame."""
    desc = hd.seg.SegmentDescription(
        segment_number=1, segment_label="template",
        segmented_property_category=hd.sr.CodedConcept("91723000", "SCT", "Anatomical Structure"),
        segmented_property_type=hd.sr.CodedConcept("10200004", "SCT", "Liver"), algorithm_type="MANUAL")
    pixels = np.ones((1, rows, cols), np.float32 if seg_type == "FRACTIONAL" else bool)
    return hd.seg.Segmentation(source_images=[ds0], pixel_array=pixels, segmentation_type=seg_type,
                               segment_descriptions=[desc], **kw)


def _references(datasets: list) -> tuple[list, list]:
    """SourceImageSequence and ReferencedSeriesSequence over every source image (highdicom's layout)."""
    from pydicom import Dataset

    source, series = [], {}
    for s in datasets:
        ref = Dataset()
        ref.ReferencedSOPClassUID = s.SOPClassUID
        ref.ReferencedSOPInstanceUID = s.SOPInstanceUID
        source.append(ref)
        series.setdefault(s.SeriesInstanceUID, []).append(ref)
    out = []
    for uid, refs in series.items():
        item = Dataset()
        item.SeriesInstanceUID = uid
        item.ReferencedInstanceSequence = refs
        out.append(item)
    return source, out


def stream_seg(mask: Any, slabs: Any, place: Any, datasets: list, kind: str, numbers: np.ndarray,
               descs: list, seg_type: str, path: str | Path, *, check: Any, series_description: str,
               omit_empty_frames: bool, max_fractional_value: int, header_kwargs: dict) -> Any:
    """Write the SEG of ``mask`` (dims z, y, x[, segment]) to ``path``, slab by slab.

    Parameters
    ----------
    mask : xarray.DataArray
        On (a subset of) the source grid, transposed to (z, y, x[, segment]).
    slabs : iterable of (start, stop)
        z ranges to compute at a time (the Dask chunks).
    place : dcmxr.export.seg.Placement
        Source index of every mask z / y / x.
    datasets : list of pydicom.Dataset
        Source headers, one per mask z (single-frame source images).
    kind : {"labels", "stack", "fractional"}
    numbers : numpy.ndarray
        Segment numbers, in the order of ``descs`` (and of a ``segment`` dim).
    check : callable
        ``check(block)`` raises ExportError on bad values (called on every slab).
    header_kwargs : dict
        Identification passed to highdicom (UIDs, series number, manufacturer...).

    Returns
    -------
    pydicom.FileDataset
        The written SEG's header: Per-Frame Functional Groups decoded on first
        access, Pixel Data read from ``path`` on access (nothing large held).
    """
    import highdicom as hd
    from pydicom.dataelem import DataElement

    from ..errors import ExportError

    path = Path(path)
    ds0 = datasets[0]
    rows, cols = int(ds0.Rows), int(ds0.Columns)
    binary = seg_type == "BINARY"
    yy = slice(int(place.y[0]), int(place.y[0]) + len(place.y)) if _consecutive(place.y) else place.y
    xx = slice(int(place.x[0]), int(place.x[0]) + len(place.x)) if _consecutive(place.x) else place.x
    if not (isinstance(yy, slice) and isinstance(xx, slice)):
        yy, xx = np.ix_(place.y, place.x)
    try:
        tmpl = _template(hd, ds0, rows, cols, seg_type, dict(header_kwargs, max_fractional_value=max_fractional_value))
    except (ValueError, TypeError) as exc:
        raise ExportError(f"highdicom refused the segmentation: {exc}") from exc

    frame_z: list[np.ndarray] = []
    frame_n: list[np.ndarray] = []
    overlap = False
    tmp = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".pixels", delete=False)
    try:
        with tmp:
            writer = _BitWriter(tmp, binary)
            for a, b in slabs:
                block = np.asarray(mask.isel(z=slice(a, b)).values)
                if kind == "labels" and block.dtype.kind == "b":
                    block = block.astype(np.uint8)
                check(block)
                for j in range(b - a):  # one slice at a time: its frames are all that is held
                    where, arrays, ov = _slab_frames(block[j:j + 1], kind, numbers, omit_empty_frames,
                                                     max_fractional_value)
                    overlap |= ov
                    if not where:
                        continue
                    out = np.zeros((len(arrays), rows, cols), bool if binary else np.uint8)
                    for k, fr in enumerate(arrays):
                        out[k][yy, xx] = fr
                    writer.write(out)
                    w = np.asarray(where)
                    frame_z.append(w[:, 0] + a + j)
                    frame_n.append(w[:, 1])
                del block
            fz = np.concatenate(frame_z) if frame_z else np.zeros(0, np.int64)
            fn = np.concatenate(frame_n) if frame_n else np.zeros(0, np.int64)
            if not len(fz):  # every frame empty: highdicom then keeps them all
                fz = np.repeat(np.arange(len(datasets)), len(numbers))
                fn = np.tile(numbers, len(datasets))
                empty = np.zeros((1, rows, cols), bool if binary else np.uint8)
                for _ in range(len(fz)):
                    writer.write(empty)
            writer.close()
            nbytes = writer.nbytes
        try:
            return _assemble(path, tmpl, tmp.name, nbytes, fz, fn, datasets, kind, numbers, descs, overlap,
                             series_description, DataElement)
        except BaseException:
            path.unlink(missing_ok=True)  # no half-written SEG is left behind
            raise
    finally:
        if os.path.exists(tmp.name):
            os.unlink(tmp.name)


def _undefined_lengths(elem: Any) -> Any:
    """Mark a sequence and everything nested in it to be written with undefined lengths (delimiters).

    Then an element inside can be swapped for one of another length in the encoded bytes.
    """
    if elem.VR == "SQ":
        elem.is_undefined_length = True
        for it in elem.value:
            it.is_undefined_length_sequence_item = True
            for sub in it:
                _undefined_lengths(sub)
    return elem


def _consecutive(idx: np.ndarray) -> bool:
    return bool(len(idx)) and np.array_equal(idx, np.arange(idx[0], idx[0] + len(idx)))


def _assemble(path: Path, tmpl: Any, pixels: str, nbytes: int, fz: np.ndarray, fn: np.ndarray,
              datasets: list, kind: str, numbers: np.ndarray, descs: list, overlap: bool,
              series_description: str, DataElement: Any) -> None:
    """Header + Per-Frame Functional Groups + Pixel Data (copied from ``pixels``) into ``path``."""
    import highdicom as hd
    from pydicom import Dataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import dcmwrite
    from pydicom.valuerep import format_number_as_ds

    item = tmpl.PerFrameFunctionalGroupsSequence[0]
    del tmpl.PerFrameFunctionalGroupsSequence
    del tmpl.PixelData
    tmpl.SegmentSequence = list(descs)
    nseg = len(numbers)
    if kind == "labels" or nseg == 1:
        tmpl.SegmentsOverlap = "NO"
    elif kind == "stack":
        tmpl.SegmentsOverlap = "YES" if overlap else "NO"
    else:
        tmpl.SegmentsOverlap = "UNDEFINED"
    tmpl.SourceImageSequence, tmpl.ReferencedSeriesSequence = _references(datasets)
    tmpl.NumberOfFrames = int(len(fz))
    tmpl.SeriesDescription = str(series_description)[:64]
    positions = np.array([[float(v) for v in d.ImagePositionPatient] for d in datasets])
    shared = tmpl.SharedFunctionalGroupsSequence[0]
    ori = [float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient]
    measures = shared.PixelMeasuresSequence[0]
    if "SpacingBetweenSlices" not in datasets[0]:
        spacing, _ = hd.spatial.get_volume_positions(image_positions=positions.tolist(), image_orientation=ori)
        if spacing is not None:
            measures.SpacingBetweenSlices = format_number_as_ds(float(spacing))
        elif "SpacingBetweenSlices" in measures:
            del measures.SpacingBetweenSlices
    # position dimension index: rank along the normal among the planes that have a frame
    normal = np.cross(ori[:3], ori[3:])
    included = np.unique(fz)
    order = included[np.argsort(positions[included] @ normal, kind="stable")]
    rank = np.zeros(len(datasets), np.int64)
    rank[order] = np.arange(1, len(order) + 1)

    if "SegmentIdentificationSequence" in shared:  # highdicom shares it when there is one segment
        if "SegmentIdentificationSequence" not in item:
            item.SegmentIdentificationSequence = shared.SegmentIdentificationSequence
        del shared.SegmentIdentificationSequence

    per_slice: dict[int, bytes] = {}
    per_seg: dict[int, bytes] = {}
    const: list[tuple[int, bytes]] = []
    fc_template = None
    for elem in item:
        kw = elem.keyword
        if kw in ("DerivationImageSequence", "PlanePositionSequence", "SegmentIdentificationSequence"):
            continue
        if kw == "FrameContentSequence":
            fc_template = elem
            continue
        const.append((int(elem.tag), _encode(elem)))

    # The Derivation Image item is encoded once with placeholder UIDs, then the two UI elements are
    # swapped per slice (pydicom writes sequences and items with undefined lengths, so sizes may change).
    der = _undefined_lengths(copy.deepcopy(item["DerivationImageSequence"]))
    ref = der.value[0].SourceImageSequence[0]
    marks = ("1.2.3.999999999999.1", "1.2.3.999999999999.2")
    ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = marks
    der_bytes = _encode(der)
    mark_bytes = [_encode(DataElement(t, "UI", m)) for t, m in zip((0x00081150, 0x00081155), marks)]
    i0, i1 = der_bytes.index(mark_bytes[0]), der_bytes.index(mark_bytes[1])
    assert i0 + len(mark_bytes[0]) == i1, "unexpected Derivation Image encoding"
    der_head, der_tail = der_bytes[:i0], der_bytes[i1 + len(mark_bytes[1]):]
    pp_tag = item["PlanePositionSequence"].tag

    def slice_bytes(z: int) -> tuple[bytes, bytes]:
        d = datasets[z]
        der = (der_head + _encode(DataElement(0x00081150, "UI", d.SOPClassUID))
               + _encode(DataElement(0x00081155, "UI", d.SOPInstanceUID)) + der_tail)
        pos = Dataset()
        pos.ImagePositionPatient = d.ImagePositionPatient
        return der, _encode(DataElement(pp_tag, "SQ", [pos]))

    def seg_bytes(n: int) -> bytes:
        si = copy.deepcopy(item["SegmentIdentificationSequence"])
        si.value[0].ReferencedSegmentNumber = int(n)
        return _encode(si)

    fc = copy.deepcopy(fc_template)
    fc.value[0].DimensionIndexValues = [1, 1]
    fc_bytes = _encode(fc)
    marker = struct.pack("<II", 1, 1)
    cut = fc_bytes.rfind(marker)
    assert cut > 0 and fc_bytes.count(marker) == 1, "unexpected Frame Content encoding"
    fc_head, fc_tail = fc_bytes[:cut], fc_bytes[cut + 8:]

    header = DicomBytesIO()
    after = [e for e in tmpl if _PFFG < int(e.tag) < _PIXEL_DATA]
    for e in after:
        del tmpl[e.tag]
    dcmwrite(header, tmpl, enforce_file_format=True)
    pffg: list[bytes] = []
    with open(path, "wb") as out:
        out.write(header.getvalue())
        out.write(b"\x00\x52\x30\x92SQ\x00\x00\xff\xff\xff\xff")
        pffg_tell = out.tell()
        buf = []
        for z, n in zip(fz.tolist(), fn.tolist()):
            if z not in per_slice:
                per_slice[z] = slice_bytes(z)
            if n not in per_seg:
                per_seg[n] = seg_bytes(n)
            der, pp = per_slice[z]
            parts = {0x00089124: der, 0x00209111: fc_head + struct.pack("<II", n, int(rank[z])) + fc_tail,
                     0x00209113: pp, 0x0062000A: per_seg[n]}
            parts.update(const)
            buf.append(_ITEM + b"".join(parts[t] for t in sorted(parts)) + _ITEM_END)
            if len(buf) >= 512:
                pffg.append(b"".join(buf))
                out.write(pffg[-1])
                buf = []
        pffg.append(b"".join(buf) + _SEQ_END)
        out.write(pffg[-1])
        for e in after:
            out.write(_encode(e))
        padded = nbytes + (nbytes & 1)
        out.write(b"\xe0\x7f\x10\x00OB\x00\x00" + struct.pack("<I", padded))
        pixel_tell = out.tell()
        with open(pixels, "rb") as src:
            shutil.copyfileobj(src, out, 2**20)
        if nbytes & 1:
            out.write(b"\x00")
    return _header_dataset(path, tmpl, after, b"".join(pffg), pffg_tell, padded, pixel_tell)


def _header_dataset(path: Path, tmpl: Any, after: list, pffg: bytes, pffg_tell: int, padded: int,
                    pixel_tell: int) -> Any:
    """The written SEG as a FileDataset without re-reading it.

    The Per-Frame Functional Groups are kept as their encoded bytes (a raw
    element pydicom decodes on first access) and the Pixel Data as a deferred
    element (read from the file on access), so nothing large is held.
    """
    from pydicom import Dataset, FileDataset
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    ds = FileDataset(str(path), Dataset(tmpl), preamble=b"\x00" * 128, file_meta=tmpl.file_meta)
    for e in after:
        ds[e.tag] = e
    ds[_PFFG] = RawDataElement(Tag(_PFFG), "SQ", 0xFFFFFFFF, pffg, pffg_tell, False, True)
    ds[_PIXEL_DATA] = RawDataElement(Tag(_PIXEL_DATA), "OB", padded, None, pixel_tell, False, True)
    return ds
