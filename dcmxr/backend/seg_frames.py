"""Read the frames of a volume SEG straight from its Pixel Data, lazily.

For BINARY and FRACTIONAL SEGs of a stack of slices stored uncompressed (the
common case, and what :func:`dcmxr.export.seg.to_seg` writes), the header is
parsed once with pydicom (stopping before Pixel Data), every frame is mapped to
its (segment, volume position) through the per-frame functional groups, and
frames are read from the file on demand: BINARY frames are bit-unpacked with
numpy (bits run contiguously across frame boundaries, least significant bit
first, as in pydicom's ``pack_bits``), FRACTIONAL frames divided by the
Maximum Fractional Value. The slice geometry is inferred with highdicom's own
``get_volume_positions`` and ``VolumeGeometry`` (the functions its
``get_volume`` uses), so the result is voxel-for-voxel what highdicom gives.

:func:`plan` returns None for anything else (LABELMAP, TILED, compressed,
frames without positions, several frames at one position of one segment);
the caller then uses highdicom.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["SegPlan", "plan", "masks", "labels"]

_UNCOMPRESSED = {"1.2.840.10008.1.2.1": False, "1.2.840.10008.1.2": True}  # UID -> implicit VR

#: Largest chunk (bytes of output) of the lazy mask array.
CHUNK_BYTES: int = 64 * 2**20


@dataclass(frozen=True)
class SegPlan:
    """Where every frame of a SEG goes, and where its bits are in the file."""

    path: str
    offset: int  # byte offset of the first Pixel Data byte
    rows: int
    cols: int
    binary: bool
    max_fractional: int
    numbers: list  # segment numbers, in SegmentSequence order
    labels: list
    lut: np.ndarray  # (segment, z) -> 0-based frame index, -1 when absent (canonical z order)
    coords: dict  # dcmxr geometry (z, y, x, dir_*)


_TAGS = {"SegmentIdentificationSequence": 0x0062000A, "ReferencedSegmentNumber": 0x0062000B,
         "PlanePositionSequence": 0x00209113, "ImagePositionPatient": 0x00200032,
         "PlaneOrientationSequence": 0x00209116, "ImageOrientationPatient": 0x00200037,
         "PixelMeasuresSequence": 0x00289110, "PixelSpacing": 0x00280030, "SpacingBetweenSlices": 0x00180088}


def _item(seq_parent: Any, name: str) -> Any:
    seq = seq_parent.get(name)
    return seq[0] if seq else None


def _number(item: Any, tag: int) -> Any:
    """Value of a DS / US element; raw (undecoded) explicit-VR ones are parsed directly (thousands of frames)."""
    from pydicom.dataelem import RawDataElement

    elem = item.get_item(tag)
    if not isinstance(elem, RawDataElement) or elem.VR not in ("DS", "US") or elem.value is None:
        return item[tag].value
    if elem.VR == "US":
        vals = np.frombuffer(elem.value, "<u2" if elem.is_little_endian else ">u2").tolist()
    else:
        vals = [float(v) for v in elem.value.decode("ascii").strip(" \x00").split("\\") if v.strip()]
    return vals[0] if len(vals) == 1 else vals


def _frame_value(shared: Any, frame: Any, seq: str, kw: str) -> Any:
    tag = _TAGS[kw]
    for grp in (frame, shared):
        if grp is not None:
            it = _item(grp, seq)
            if it is not None and tag in it:
                return _number(it, tag)
    return None


def _pixel_offset(fp: Any, implicit: bool) -> tuple[int, int] | None:
    """(offset of the value, its length) of the Pixel Data element at the file position."""
    head = fp.read(12 if not implicit else 8)
    if len(head) < 8 or head[:4] != b"\xe0\x7f\x10\x00":
        return None
    if implicit:
        (length,) = struct.unpack("<I", head[4:8])
        start = fp.tell()
    else:
        if head[4:6] not in (b"OB", b"OW"):
            return None
        (length,) = struct.unpack("<I", head[8:12])
        start = fp.tell()
    if length == 0xFFFFFFFF:  # encapsulated
        return None
    return start, length


def plan(path: str | Path) -> tuple[SegPlan | None, Any]:
    """Parse a SEG's header once: (the plan or None when the fast path does not apply, the header)."""
    import highdicom as hd
    import pydicom

    from ..geometry.coords import coords_from_affine
    from ..interop import _canonical_z

    with open(path, "rb") as fp:
        ds = pydicom.dcmread(fp, stop_before_pixels=True)
        ts = str(getattr(ds.get("file_meta", None), "TransferSyntaxUID", ""))
        if ts not in _UNCOMPRESSED:
            return None, ds
        where = _pixel_offset(fp, _UNCOMPRESSED[ts])
    if where is None:
        return None, ds
    seg_type = str(ds.get("SegmentationType", ""))
    if seg_type not in ("BINARY", "FRACTIONAL") or "TotalPixelMatrixRows" in ds:
        return None, ds
    if "FrameOfReferenceUID" not in ds:
        return None, ds
    rows, cols, nf = int(ds.Rows), int(ds.Columns), int(ds.get("NumberOfFrames", 1))
    binary = seg_type == "BINARY"
    if int(ds.BitsAllocated) != (1 if binary else 8) or where[1] < (nf * rows * cols + 7) // 8 * (1 if binary else 8):
        return None, ds
    shared = _item(ds, "SharedFunctionalGroupsSequence")
    per = ds.get("PerFrameFunctionalGroupsSequence") or []
    if len(per) != nf:
        return None, ds
    items = [s for s in ds.SegmentSequence if int(s.SegmentNumber) > 0]
    numbers = [int(s.SegmentNumber) for s in items]
    labels = [str(s.get("SegmentLabel", "")) for s in items]
    seg_of, pos = np.empty(nf, np.int64), np.empty((nf, 3), np.float64)
    ori, spacing, hint = set(), set(), set()
    for k, fr in enumerate(per):
        n = _frame_value(shared, fr, "SegmentIdentificationSequence", "ReferencedSegmentNumber")
        p = _frame_value(shared, fr, "PlanePositionSequence", "ImagePositionPatient")
        if n is None or p is None:
            return None, ds
        seg_of[k] = int(n)
        pos[k] = [float(v) for v in p]
        ori.add(tuple(float(v) for v in _frame_value(shared, fr, "PlaneOrientationSequence",
                                                     "ImageOrientationPatient") or ()))
        spacing.add(tuple(float(v) for v in _frame_value(shared, fr, "PixelMeasuresSequence", "PixelSpacing") or ()))
        sbs = _frame_value(shared, fr, "PixelMeasuresSequence", "SpacingBetweenSlices")
        hint.add(None if sbs is None else float(sbs))
    if len(ori) != 1 or len(spacing) != 1 or len(hint) != 1 or not next(iter(ori)) or not next(iter(spacing)):
        return None, ds
    orientation, pixel_spacing, spacing_hint = next(iter(ori)), next(iter(spacing)), next(iter(hint))
    slice_spacing, vol_pos = hd.spatial.get_volume_positions(
        image_positions=pos.tolist(), image_orientation=list(orientation), allow_missing_positions=True,
        allow_duplicate_positions=True, spacing_hint=spacing_hint)
    if vol_pos is None:
        return None, ds
    vol_pos = np.asarray(vol_pos)
    nz = int(vol_pos.max()) + 1
    geom = hd.VolumeGeometry.from_attributes(
        image_position=pos[int(np.flatnonzero(vol_pos == 0)[0])].tolist(), image_orientation=list(orientation),
        rows=rows, columns=cols, pixel_spacing=list(pixel_spacing), number_of_frames=nz,
        spacing_between_slices=slice_spacing, coordinate_system="PATIENT")
    aff = np.asarray(geom.affine, dtype=np.float64)[:, [2, 1, 0, 3]]
    plain = coords_from_affine(aff, geom.spatial_shape)
    flipped = float(np.dot(np.cross(plain["dir_x"], plain["dir_y"]), plain["dir_z"])) < 0
    _, coords = _canonical_z(np.zeros((nz, 1)), plain, 0)  # the same flip dcmxr applies to highdicom volumes
    index = {n: i for i, n in enumerate(numbers)}
    if not set(seg_of.tolist()) <= set(index):
        return None, ds
    lut = np.full((len(numbers), nz), -1, np.int64)
    si = np.array([index[int(n)] for n in seg_of])
    zi = (nz - 1 - vol_pos) if flipped else vol_pos
    if len(np.unique(si * nz + zi)) != nf:  # two frames at one place: leave it to highdicom
        return None, ds
    lut[si, zi] = np.arange(nf)
    return SegPlan(path=str(path), offset=where[0], rows=rows, cols=cols, binary=binary,
                   max_fractional=int(ds.get("MaximumFractionalValue", 255) or 255), numbers=numbers,
                   labels=labels, lut=lut, coords=coords), ds


def _read_frames(p: SegPlan, frames: np.ndarray) -> np.ndarray:
    """Frames (uint8 0/1 for BINARY, stored values for FRACTIONAL) in the order given."""
    n = p.rows * p.cols
    out = np.empty((len(frames), p.rows, p.cols), np.uint8)
    with open(p.path, "rb") as fp:
        for k, f in enumerate(frames):
            if p.binary:
                bit = int(f) * n
                a, b = bit // 8, (bit + n + 7) // 8
                fp.seek(p.offset + a)
                bits = np.unpackbits(np.frombuffer(fp.read(b - a), np.uint8), bitorder="little")
                out[k] = bits[bit - 8 * a: bit - 8 * a + n].reshape(p.rows, p.cols)
            else:
                fp.seek(p.offset + int(f) * n)
                out[k] = np.frombuffer(fp.read(n), np.uint8).reshape(p.rows, p.cols)
    return out


class _MaskStack:
    """Array-like (segment, z, y, x) over the SEG's frames, for ``dask.array.from_array``."""

    def __init__(self, p: SegPlan) -> None:
        self.p = p
        self.shape = (len(p.numbers), p.lut.shape[1], p.rows, p.cols)
        self.dtype = np.dtype(bool) if p.binary else np.dtype(np.float32)
        self.ndim = 4

    def __getitem__(self, key: Any) -> np.ndarray:
        if not isinstance(key, tuple):
            key = (key,)
        key = key + (slice(None),) * (4 - len(key))
        sel = []
        for k, size in zip(key[:2], self.shape[:2]):
            sel.append(np.arange(size)[k])
        segs, zs = (np.atleast_1d(s) for s in sel)
        frames = self.p.lut[np.ix_(segs, zs)]
        out = np.zeros((len(segs), len(zs), self.p.rows, self.p.cols), np.uint8)
        have = frames >= 0
        if have.any():
            out[have] = _read_frames(self.p, frames[have])
        if self.p.binary:
            res = out.view(bool)
        else:
            res = out.astype(np.float32) / self.p.max_fractional
        res = res[:, :, key[2], key[3]]
        squeeze = tuple(i for i, s in enumerate(sel) if np.ndim(s) == 0)
        return res.squeeze(axis=squeeze) if squeeze else res


def _token(p: SegPlan) -> str:
    import hashlib
    import os

    st = os.stat(p.path)
    h = hashlib.sha1(f"{os.path.abspath(p.path)}|{st.st_mtime_ns}|{st.st_size}|{p.offset}".encode())
    h.update(p.lut.tobytes())
    return h.hexdigest()[:16]


def masks(p: SegPlan) -> Any:
    """Lazy ``(segment, z, y, x)`` masks (bool or float32) as a dcmxr DataArray."""
    import dask.array as dska

    from ..interop import _build

    stack = _MaskStack(p)
    per_slice = p.rows * p.cols * stack.dtype.itemsize
    zc = max(1, min(stack.shape[1], CHUNK_BYTES // per_slice))
    arr = dska.from_array(stack, chunks=(1, zc, p.rows, p.cols), asarray=False, fancy=False,
                          name=f"seg-{Path(p.path).name}-{_token(p)}")
    da = _build(arr, p.coords, [("segment", p.numbers, {})], [], {}, "mask")
    return da.assign_coords(segment_label=("segment", p.labels))


def labels(p: SegPlan) -> tuple[np.ndarray | None, dict]:
    """One label array (z, y, x) from a BINARY SEG (value = segment number), read eagerly.

    Returns (None, coords) when segments overlap.
    """
    from ..interop import _build

    nz = p.lut.shape[1]
    dtype = np.uint8 if max(p.numbers, default=0) < 256 else np.uint16
    out = np.zeros((nz, p.rows, p.cols), dtype)
    for s, number in enumerate(p.numbers):
        zs = np.flatnonzero(p.lut[s] >= 0)
        for a in range(0, len(zs), 64):
            chunk = zs[a:a + 64]
            frames = _read_frames(p, p.lut[s, chunk]).view(bool)
            for z, m in zip(chunk, frames):
                sl = out[z]
                if sl[m].any():
                    return None, p.coords
                sl[m] = number
    return _build(out, p.coords, [], [], {}, "labels"), p.coords
