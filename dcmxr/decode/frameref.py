"""FrameRef: everything needed to read and decode one stored frame.

A FrameRef is small, immutable and picklable: it names the source by URL or
path and the byte range of the frame inside it, never an open file or a
pydicom Dataset. Lists of FrameRefs are what dcmxr puts in Dask graphs.

Byte ranges
-----------
* Native (uncompressed) transfer syntaxes: ``offset``/``length`` cover exactly
  the frame's stored pixel bytes. For ``bits_allocated == 1`` frames are
  bit-packed and need not start on a byte boundary: ``bit_offset`` (0-7) is the
  bit at which the frame starts inside the first byte.
* Encapsulated transfer syntaxes: ``offset`` points at the *item tag*
  (FFFE,E000) of the frame's first fragment and ``length`` runs to the end of
  its last fragment, so the range holds one or more complete items; the
  decoder walks the item headers and joins the fragment values.
* Deflated Explicit VR Little Endian (1.2.840.10008.1.2.1.99) deflates the
  whole data set: ``deflate_from`` is the file offset where the raw deflate
  stream starts and ``offset`` is relative to the *inflated* stream.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FrameRef:
    """Where one frame's bytes live and how they are stored.

    Parameters
    ----------
    url : str
        Local path or fsspec URL of the file.
    offset, length : int
        Byte range of the frame (see module docstring).
    transfer_syntax : str
        Transfer Syntax UID.
    rows, columns : int
        Frame size in pixels (of the stored frame; a MOSAIC is one frame).
    samples_per_pixel : int
    bits_allocated, bits_stored : int
    pixel_representation : int
        0 unsigned, 1 two's complement.
    photometric_interpretation : str
    planar_configuration : int
    frame_index : int
        0-based frame number inside the file (for error messages).
    bit_offset : int
        Bit offset of the frame's first pixel for 1-bit native data.
    deflate_from : int or None
        Start of the deflated stream for the deflated transfer syntax.
    float_pixels : int
        0 for (7FE0,0010) Pixel Data, 32 for Float Pixel Data, 64 for
        Double Float Pixel Data.
    """

    url: str
    offset: int
    length: int
    transfer_syntax: str
    rows: int
    columns: int
    samples_per_pixel: int = 1
    bits_allocated: int = 16
    bits_stored: int = 16
    pixel_representation: int = 0
    photometric_interpretation: str = "MONOCHROME2"
    planar_configuration: int = 0
    frame_index: int = 0
    bit_offset: int = 0
    deflate_from: int | None = None
    float_pixels: int = 0
