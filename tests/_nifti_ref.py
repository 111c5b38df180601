"""Compare a dcmxr DataArray with a dcm2niix NIfTI, through geometry.

The reference stores voxels in its own order (dcm2niix flips rows and may
reverse slices). Instead of copying dcm2niix's rules, we map our grid onto
the reference's: with both affines in RAS, ``inv(A_ref) @ A_ours`` must be a
signed permutation plus an integer shift; applying it to our voxels must give
the reference's voxel values, and the mapped affine must equal the
reference's within ``atol`` mm. A wrong geometry cannot pass: it would not
map voxel centres onto voxel centres, or would map the wrong values.
"""
from __future__ import annotations

import numpy as np

from dcmxr.geometry.affine import affine_from_coords, lps_to_ras


def ras_affine(da) -> np.ndarray:
    c = {ax: da[ax].values for ax in ("x", "y", "z")}
    d = {ax: da[ax].attrs["direction"] for ax in ("x", "y", "z")}
    default = {"z": float(da.attrs.get("spacing_between_slices") or da.attrs.get("slice_thickness") or 1.0)}
    return lps_to_ras(affine_from_coords(c["x"], c["y"], c["z"], d["x"], d["y"], d["z"], default_spacing=default))


def to_reference_grid(da, ref_affine: np.ndarray, ref_shape3: tuple[int, int, int]):
    """Our data as an (x, y, z[, t]) array in the reference's voxel order."""
    ours = ras_affine(da)
    lead = [d for d in da.dims if d not in ("x", "y", "z")]
    arr = np.asarray(da.transpose("x", "y", "z", *lead).values)
    if arr.ndim > 4:
        arr = arr.reshape(arr.shape[:3] + (-1,))
    T = np.linalg.inv(ref_affine) @ ours
    R = T[:3, :3]
    P = np.round(R)
    assert np.allclose(R, P, atol=2e-3), f"grids are not related by a permutation:\n{R}"
    assert np.all(np.abs(P).sum(axis=0) == 1) and np.all(np.abs(P).sum(axis=1) == 1), f"not a permutation:\n{P}"
    # ours axis k maps to ref axis perm[k] with sign
    perm = [int(np.flatnonzero(P[:, k])[0]) for k in range(3)]
    signs = [int(P[perm[k], k]) for k in range(3)]
    for k in range(3):
        if signs[k] < 0:
            arr = np.flip(arr, axis=k)
    inv = np.argsort(perm)
    arr = np.transpose(arr, list(inv) + list(range(3, arr.ndim)))
    # recompute: position of new voxel (a,b,c) via ours
    idx_new = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=float)
    def new_to_ours(v):
        o = np.zeros(3)
        for k in range(3):
            i = v[perm[k]]
            sz = arr.shape[perm[k]]
            o[k] = (sz - 1 - i) if signs[k] < 0 else i
        return o
    pts = np.array([ours @ np.r_[new_to_ours(v), 1.0] for v in idx_new])[:, :3]
    mapped = np.eye(4)
    mapped[:3, 3] = pts[0]
    for k in range(3):
        mapped[:3, k] = pts[k + 1] - pts[0]
    assert arr.shape[:3] == tuple(ref_shape3), f"shape {arr.shape[:3]} != reference {ref_shape3}"
    return arr, mapped


def compare_with_nifti(da, nii_path, atol_mm: float = 1e-3, rtol: float = 0.0, atol_range: float = 0.0) -> None:
    """Assert ``da`` equals the dcm2niix NIfTI at ``nii_path`` in values and geometry.

    ``rtol`` > 0 compares values with that relative tolerance (float data that
    dcm2niix scaled in float64 while dcmxr computes float32).
    """
    import nibabel as nib

    img = nib.load(str(nii_path))
    ref = np.asarray(img.dataobj)
    slope, inter = img.header.get_slope_inter()
    ref_aff = img.affine
    arr, mapped = to_reference_grid(da, ref_aff, ref.shape[:3])
    if ref.ndim > arr.ndim:
        ref = ref.reshape(ref.shape[:3] + (-1,)) if ref.ndim > 4 else ref
    if arr.ndim == 4 and ref.ndim == 3 and arr.shape[3] == 1:
        arr = arr[..., 0]
    assert arr.shape == ref.shape, f"shape {arr.shape} != reference {ref.shape}"
    assert np.allclose(mapped, ref_aff, atol=atol_mm, rtol=0), f"affine\n{mapped}\n!= reference\n{ref_aff}"
    if slope not in (None, 1.0) or inter not in (None, 0.0):
        s = 1.0 if slope is None or np.isnan(slope) else slope
        i = 0.0 if inter is None or np.isnan(inter) else inter
        ref_vals = ref.astype(np.float64) * s + i
        atol = max(abs(s) * 1e-4, atol_range * float(np.ptp(ref_vals)))
        np.testing.assert_allclose(arr.astype(np.float64), ref_vals, rtol=max(rtol, 1e-6), atol=atol)
    elif rtol:
        atol = atol_range * float(np.ptp(ref))
        np.testing.assert_allclose(arr.astype(np.float64), ref.astype(np.float64), rtol=rtol, atol=atol)
    else:
        np.testing.assert_array_equal(arr.astype(np.float64), ref.astype(np.float64))
