"""Vendor fields -> the standard columns the assembly reads.

Diffusion b-values and gradient directions are written in the standard
attributes by recent scanners (DiffusionBValue, DiffusionGradientOrientation)
but in private elements by many others. Following dcm2niix:

* Siemens: CSA ``B_value`` / ``DiffusionGradientDirection`` (LPS), or
  (0019,100C) / (0019,100E).
* GE: (0043,1039) "slop_int_6..9": the first value is the b-value, with a
  vendor offset on some software (values >= 100000 are taken modulo 100000, as
  dcm2niix does); gradients in (0019,10BB/BC/BD) are kept as given (GE's
  logical frame) in ``diffusion_gradient_vendor_*`` only.
* Philips: (2001,1003) b-value; (2005,10B0/B1/B2) gradient, kept in
  ``diffusion_gradient_vendor_*`` (its signs vary with software versions).

Standard attributes win when present.

Slice timing: GE's RTIA timer / Protocol Data Block give a per-frame
``slice_time`` column (s), see :mod:`dcmxr.assembly.ge_timing`; Siemens'
comes from the CSA header when mosaics are expanded.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

_GRAD = ["diffusion_gradient_0", "diffusion_gradient_1", "diffusion_gradient_2"]


def _fill(t: pd.DataFrame, col: str, values: pd.Series) -> None:
    if col not in t.columns:
        t[col] = values
    else:
        t[col] = t[col].where(t[col].notna(), values)


def normalize(table: pd.DataFrame) -> pd.DataFrame:
    """Fill ``diffusion_b_value`` / ``diffusion_gradient_*`` from vendor columns.

    Parameters
    ----------
    table : DataFrame
        Frame table (one series or more).

    Returns
    -------
    DataFrame
        A copy with the standard columns filled where vendor data exists.
    """
    t = table.copy()
    manufacturer = t["manufacturer"].fillna("").astype(str).str.upper() if "manufacturer" in t else pd.Series("", index=t.index)
    if "csa_b_value" in t:
        _fill(t, "diffusion_b_value", pd.to_numeric(t["csa_b_value"], errors="coerce"))
    if "siemens_b_value" in t:
        b = pd.to_numeric(t["siemens_b_value"], errors="coerce").where(manufacturer.str.contains("SIEMENS"))
        _fill(t, "diffusion_b_value", b)
    if "siemens_gradient" in t:
        g = t["siemens_gradient"].where(manufacturer.str.contains("SIEMENS"))
        t["csa_gradient"] = t["csa_gradient"].where(t["csa_gradient"].notna(), g) if "csa_gradient" in t else g
    if "csa_gradient" in t:
        g = t["csa_gradient"].apply(lambda v: v if isinstance(v, (list, tuple)) and len(v) == 3 else None)
        for i, col in enumerate(_GRAD):
            _fill(t, col, g.apply(lambda v, i=i: float(v[i]) if v is not None else np.nan))
    if "ge_slop_int" in t:
        b = pd.to_numeric(t["ge_slop_int"], errors="coerce")
        b = b.where(b < 100000, b % 100000).where(manufacturer.str.contains("GE"))
        _fill(t, "diffusion_b_value", b)
    for i, col in enumerate(("ge_gradient_x", "ge_gradient_y", "ge_gradient_z")):
        if col in t:
            _fill(t, f"diffusion_gradient_vendor_{i}", pd.to_numeric(t[col], errors="coerce"))
    if "philips_b_value" in t:
        b = pd.to_numeric(t["philips_b_value"], errors="coerce").where(manufacturer.str.contains("PHILIPS"))
        _fill(t, "diffusion_b_value", b)
    for i, col in enumerate(("philips_gradient_rl", "philips_gradient_ap", "philips_gradient_fh")):
        if col in t:
            # sign conventions of Philips' private (RL, AP, FH) differ between software versions:
            # kept as vendor values (they still tell volumes apart), never as LPS
            _fill(t, f"diffusion_gradient_vendor_{i}", pd.to_numeric(t[col], errors="coerce"))
    if "manufacturer" in t and manufacturer.str.startswith("GE").any():
        from .ge_timing import fill_slice_time

        fill_slice_time(t)
    return t
