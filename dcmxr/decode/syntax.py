"""Transfer Syntax UIDs and how their pixel data is stored.

Plain strings (no pydicom import) so that the catalog and the decoders can
share them cheaply.
"""

from __future__ import annotations

IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
DEFLATED_EXPLICIT_VR_LE = "1.2.840.10008.1.2.1.99"
EXPLICIT_VR_BE = "1.2.840.10008.1.2.2"

JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"
JPEG_LOSSLESS = "1.2.840.10008.1.2.4.57"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80"
JPEG_LS_NEAR_LOSSLESS = "1.2.840.10008.1.2.4.81"
JPEG_2000_LOSSLESS = "1.2.840.10008.1.2.4.90"
JPEG_2000 = "1.2.840.10008.1.2.4.91"
HTJ2K_LOSSLESS = "1.2.840.10008.1.2.4.201"
HTJ2K_LOSSLESS_RPCL = "1.2.840.10008.1.2.4.202"
HTJ2K = "1.2.840.10008.1.2.4.203"
RLE_LOSSLESS = "1.2.840.10008.1.2.5"
DEFLATED_IMAGE_FRAME = "1.2.840.10008.1.2.8.1"

#: Native (uncompressed) syntaxes: frames are fixed-size byte ranges.
NATIVE = frozenset({IMPLICIT_VR_LE, EXPLICIT_VR_LE, DEFLATED_EXPLICIT_VR_LE, EXPLICIT_VR_BE})

JPEG = frozenset({JPEG_BASELINE, JPEG_EXTENDED, JPEG_LOSSLESS, JPEG_LOSSLESS_SV1})
JPEG_LS = frozenset({JPEG_LS_LOSSLESS, JPEG_LS_NEAR_LOSSLESS})
JPEG_2000_FAMILY = frozenset({JPEG_2000_LOSSLESS, JPEG_2000})
HTJ2K_FAMILY = frozenset({HTJ2K_LOSSLESS, HTJ2K_LOSSLESS_RPCL, HTJ2K})
J2K_ANY = JPEG_2000_FAMILY | HTJ2K_FAMILY

#: Encapsulated syntaxes this package knows how to decode.
ENCAPSULATED = JPEG | JPEG_LS | J2K_ANY | frozenset({RLE_LOSSLESS, DEFLATED_IMAGE_FRAME})


def is_big_endian(transfer_syntax: str) -> bool:
    """Return True for Explicit VR Big Endian."""
    return transfer_syntax == EXPLICIT_VR_BE


def is_implicit_vr(transfer_syntax: str) -> bool:
    """Return True for Implicit VR Little Endian."""
    return transfer_syntax == IMPLICIT_VR_LE


def is_native(transfer_syntax: str) -> bool:
    """Return True when pixel data of this syntax is stored uncompressed."""
    return transfer_syntax in NATIVE
