"""One exception tree for dcmxr.

Every error derives from :class:`DcmxrError` *and* from the builtin a caller
would naturally catch (``ValueError``, ``FileNotFoundError``, ``ImportError``
...), following zarr-python's pattern, so ``except ValueError`` keeps working.
Warnings derive from :class:`DcmxrWarning`.
"""

from __future__ import annotations

__all__ = [
    "DcmxrError",
    "NotDicomError",
    "AmbiguousSelectionError",
    "SelectionError",
    "GeometryError",
    "UnsupportedTransferSyntaxError",
    "DecodeError",
    "ExportError",
    "CacheError",
    "MissingDependencyError",
    "InvalidDicomError",
    "DcmxrWarning",
    "SkippedFileWarning",
    "GeometryWarning",
    "CacheWarning",
]


class DcmxrError(Exception):
    """Base class of every error raised by dcmxr."""


class NotDicomError(DcmxrError, ValueError):
    """The input is not a DICOM file (no ``DICM`` preamble and no parsable header)."""


class InvalidDicomError(DcmxrError, ValueError):
    """A DICOM file whose header is broken, truncated or self-contradictory."""


class SelectionError(DcmxrError, KeyError):
    """A ``series=`` (or similar) argument matched nothing."""

    def __str__(self) -> str:  # KeyError quotes its message; undo that
        return str(self.args[0]) if self.args else ""


class AmbiguousSelectionError(DcmxrError, ValueError):
    """Several candidates (series, slides, ...) match; the message lists them."""


class GeometryError(DcmxrError, ValueError):
    """Geometry is irregular or inconsistent beyond a tolerance."""


class UnsupportedTransferSyntaxError(DcmxrError, NotImplementedError):
    """No installed codec decodes this transfer syntax; the message names the extra."""


class DecodeError(DcmxrError, ValueError):
    """Decoding a frame failed; the message names the file, frame and codec."""


class ExportError(DcmxrError, ValueError):
    """Writing a derived object failed."""


class CacheError(DcmxrError, OSError):
    """The zarr cache is unusable."""


class MissingDependencyError(DcmxrError, ImportError):
    """An optional dependency is missing; the message names the pip extra."""


class DcmxrWarning(UserWarning):
    """Base class of every warning issued by dcmxr."""


class SkippedFileWarning(DcmxrWarning):
    """Files were skipped while scanning (the list is kept on the result)."""


class GeometryWarning(DcmxrWarning):
    """Geometry is usable but not regular (uneven spacing, missing slices, ...)."""


class CacheWarning(DcmxrWarning):
    """A cache was ignored or rebuilt."""


def missing_dependency(package: str, extra: str) -> MissingDependencyError:
    """Build the error raised when an optional dependency is absent.

    Parameters
    ----------
    package : str
        The import name that failed.
    extra : str
        The dcmxr extra that installs it.
    """
    return MissingDependencyError(
        f"{package} is required for this feature; install it with "
        f"`pip install 'dcmxr[{extra}]'`"
    )
