"""numcodecs codec that decodes one DICOM frame with dcmxr's decoders.

Virtual references (:mod:`dcmxr.stores.virtual`) point zarr chunks at byte
ranges inside DICOM files. For frames that are not plain little/big-endian
bytes (every encapsulated transfer syntax: JPEG, JPEG-LS, JPEG 2000, HTJ2K,
RLE, deflated frames; and 1-bit or planar native frames) the chunk's
"compressor" is :class:`DicomFrameCodec`, whose configuration names the
transfer syntax and pixel format; decoding calls
:func:`dcmxr.decode.codecs.decode_frame` on the referenced bytes (for
encapsulated syntaxes the range holds the frame's complete fragment items).

The codec is registered with numcodecs under ``dcmxr_dicom_frame`` when this
module is imported (:func:`register_codecs`); dcmxr's package metadata also
declares it as a ``numcodecs.codecs`` entry point so plain zarr finds it.
It only decodes: encoding raises ``NotImplementedError``.
"""

from __future__ import annotations

import numpy as np

from ..errors import missing_dependency

__all__ = ["DicomFrameCodec", "register_codecs", "CODEC_ID"]

CODEC_ID = "dcmxr_dicom_frame"

try:
    from numcodecs.abc import Codec as _Codec
except ImportError:  # pragma: no cover - numcodecs comes with zarr
    _Codec = object


class DicomFrameCodec(_Codec):
    """Decode one stored DICOM frame (read-only codec).

    Parameters
    ----------
    transfer_syntax : str
    rows, columns, samples_per_pixel, bits_allocated, bits_stored, pixel_representation : int
    photometric_interpretation : str
    planar_configuration : int
    bit_offset : int
        For 1-bit native frames that start inside a byte.
    float_pixels : int
        0, 32 or 64 (Float / Double Float Pixel Data).
    """

    codec_id = CODEC_ID

    def __init__(self, transfer_syntax: str, rows: int, columns: int, samples_per_pixel: int = 1,
                 bits_allocated: int = 16, bits_stored: int = 16, pixel_representation: int = 0,
                 photometric_interpretation: str = "MONOCHROME2", planar_configuration: int = 0,
                 bit_offset: int = 0, float_pixels: int = 0):
        self.transfer_syntax = str(transfer_syntax)
        self.rows, self.columns = int(rows), int(columns)
        self.samples_per_pixel = int(samples_per_pixel)
        self.bits_allocated, self.bits_stored = int(bits_allocated), int(bits_stored)
        self.pixel_representation = int(pixel_representation)
        self.photometric_interpretation = str(photometric_interpretation)
        self.planar_configuration = int(planar_configuration)
        self.bit_offset = int(bit_offset)
        self.float_pixels = int(float_pixels)

    def get_config(self) -> dict:
        return {"id": self.codec_id, "transfer_syntax": self.transfer_syntax, "rows": self.rows,
                "columns": self.columns, "samples_per_pixel": self.samples_per_pixel,
                "bits_allocated": self.bits_allocated, "bits_stored": self.bits_stored,
                "pixel_representation": self.pixel_representation,
                "photometric_interpretation": self.photometric_interpretation,
                "planar_configuration": self.planar_configuration, "bit_offset": self.bit_offset,
                "float_pixels": self.float_pixels}

    def _ref(self, n: int):
        from ..decode.frameref import FrameRef

        return FrameRef(url="<zarr chunk>", offset=0, length=n, transfer_syntax=self.transfer_syntax,
                        rows=self.rows, columns=self.columns, samples_per_pixel=self.samples_per_pixel,
                        bits_allocated=self.bits_allocated, bits_stored=self.bits_stored,
                        pixel_representation=self.pixel_representation,
                        photometric_interpretation=self.photometric_interpretation,
                        planar_configuration=self.planar_configuration, bit_offset=self.bit_offset,
                        float_pixels=self.float_pixels)

    def decode(self, buf, out=None):
        """Decode the frame's bytes to an ndarray (rows, columns[, samples])."""
        from ..decode.codecs import decode_frame

        data = memoryview(np.ascontiguousarray(np.frombuffer(buf, dtype=np.uint8)))
        arr = decode_frame(self._ref(len(data)), data)
        if out is not None:
            o = np.frombuffer(out, dtype=arr.dtype) if not isinstance(out, np.ndarray) else out
            o.reshape(-1)[...] = arr.reshape(-1)
            return out
        return arr

    def encode(self, buf):
        raise NotImplementedError("DicomFrameCodec only decodes: virtual references are read-only")


def register_codecs() -> None:
    """Register :class:`DicomFrameCodec` with numcodecs (idempotent)."""
    try:
        import numcodecs
    except ImportError:
        raise missing_dependency("numcodecs", "zarr") from None
    numcodecs.register_codec(DicomFrameCodec)


try:  # registering on import keeps `import dcmxr.stores.codecs` enough for plain zarr
    register_codecs()
except Exception:  # pragma: no cover - numcodecs missing: registered later by register_codecs()
    pass
