"""Where each frame's bytes are, found once per instance when its level is first read.

Opening a slide reads headers only; the frame byte ranges come from the
Extended Offset Table (already in the header), the Basic Offset Table (one
small read) or, when neither is usable, a walk over the item tags
(:func:`dcmxr.catalog.pixeldata.locate_frames`). The result is kept on the
instance's :class:`FrameIndex`, so each file is indexed at most once per
process.
"""

from __future__ import annotations

import threading

import numpy as np

from ..decode import syntax as ts
from ..errors import InvalidDicomError, UnsupportedTransferSyntaxError
from .headers import WsiHeader

__all__ = ["FrameIndex"]


class FrameIndex:
    """Lazy ``(offsets, lengths)`` of one instance's frames.

    Parameters
    ----------
    header : WsiHeader
    storage_options : dict, optional

    Notes
    -----
    Encapsulated frames cover whole items (item tag of the first fragment to
    the end of the last), as on :class:`~dcmxr.decode.frameref.FrameRef`.
    Picklable: the lock and the cached table are rebuilt on the other side.
    """

    def __init__(self, header: WsiHeader, storage_options: dict | None = None):
        self.header = header
        self.storage_options = storage_options
        self._table: tuple[np.ndarray, np.ndarray] | None = None
        self._lock = threading.Lock()

    def __getstate__(self):
        return {"header": self.header, "storage_options": self.storage_options, "_table": self._table}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def table(self) -> tuple[np.ndarray, np.ndarray]:
        """``(offsets, lengths)`` as int64 arrays, one entry per frame."""
        if self._table is None:
            with self._lock:
                if self._table is None:
                    self._table = self._locate()
        return self._table

    def _locate(self) -> tuple[np.ndarray, np.ndarray]:
        from ..catalog.pixeldata import locate_frames
        from ..catalog.sources import open_reader

        h = self.header
        if h.pixel_offset is None:
            raise InvalidDicomError(f"{h.path}: no Pixel Data element")
        if h.transfer_syntax == ts.DEFLATED_EXPLICIT_VR_LE:
            raise UnsupportedTransferSyntaxError(f"{h.path}: deflated whole-slide instances are not supported")
        read, size, _, close = open_reader(h.path, self.storage_options)
        try:
            frames = locate_frames(
                read, h.pixel_offset, h.transfer_syntax, h.number_of_frames, h.rows, h.columns,
                h.samples_per_pixel, h.bits_allocated, file_size=size,
                extended_offsets=h.extended_offsets, extended_lengths=h.extended_lengths,
                photometric_interpretation=h.photometric_interpretation,
            )
        except InvalidDicomError as exc:
            raise InvalidDicomError(f"{h.path}: {exc}") from None
        finally:
            close()
        arr = np.asarray([(o, n) for o, n, _ in frames], dtype=np.int64).reshape(-1, 2)
        return arr[:, 0].copy(), arr[:, 1].copy()
