"""Siemens CSA Image Header Info (0029,1010): the few fields dcmxr needs.

The CSA header is a private binary blob ("SV10" = CSA2, or the older CSA1
layout). We read the element table and keep only the fields that geometry and
labelling need, so the catalog never stores the whole blob.
"""

from __future__ import annotations

import struct

WANTED = {
    "NumberOfImagesInMosaic": "csa_mosaic_n",
    "SliceNormalVector": "csa_slice_normal",
    "B_value": "csa_b_value",
    "DiffusionGradientDirection": "csa_gradient",
    "MosaicRefAcqTimes": "csa_slice_times",
    "PhaseEncodingDirectionPositive": "csa_phase_positive",
}


def parse_csa(blob: bytes) -> dict:
    """Parse a CSA header into ``{name: list_of_strings}`` for wanted names.

    Parameters
    ----------
    blob : bytes
        Value of (0029,1010) or (0029,1020).

    Returns
    -------
    dict
        Column name (see ``WANTED``) -> value (float, list of floats, or int).
        Empty on anything that does not parse: CSA is advisory.
    """
    try:
        return _parse(blob)
    except (struct.error, ValueError, IndexError, UnicodeDecodeError):
        return {}


def _parse(blob: bytes) -> dict:
    if blob[:4] == b"SV10":
        csa2, pos = True, 8
    else:
        csa2, pos = False, 0
    n_tags, check = struct.unpack_from("<2I", blob, pos)
    if not 0 < n_tags <= 1000:
        return {}
    pos += 8
    out: dict = {}
    for tag_no in range(n_tags):
        name = blob[pos : pos + 64].split(b"\x00", 1)[0].decode("latin-1")
        vm, vr, syngodt, nitems, xx = struct.unpack_from("<i4sii i", blob, pos + 64)
        pos += 84
        items = []
        for _ in range(nitems):
            x = struct.unpack_from("<4i", blob, pos)
            pos += 16
            item_len = x[1] if csa2 else x[0] - tag_no
            if item_len < 0 or pos + item_len > len(blob):
                return out
            items.append(blob[pos : pos + item_len].split(b"\x00", 1)[0].decode("latin-1").strip())
            pos += (item_len + 3) // 4 * 4
        if name in WANTED:
            vals = [v for v in items if v != ""]
            if vm > 0:
                vals = vals[:vm] if vm < len(vals) or name != "MosaicRefAcqTimes" else vals
            if not vals:
                continue
            nums = [float(v) for v in vals]
            col = WANTED[name]
            if name in ("NumberOfImagesInMosaic", "PhaseEncodingDirectionPositive"):
                out[col] = int(nums[0])
            elif name == "B_value":
                out[col] = nums[0]
            else:
                out[col] = nums
    return out
