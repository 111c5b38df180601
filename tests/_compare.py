"""Comparison helpers shared by the DICOMweb tests (remote vs local opens)."""
from __future__ import annotations

import numpy as np


def close(a, b, path="attrs") -> None:
    """Equal, with floats to 1e-9: Orthanc writes DS values as fixed-point JSON numbers (1e-16 -> 0)."""
    if isinstance(a, dict) and isinstance(b, dict):
        assert set(a) == set(b), f"{path}: keys differ: {set(a) ^ set(b)}"
        for k in a:
            close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple, np.ndarray)) and not isinstance(a, str):
        a_arr, b_arr = np.asarray(a), np.asarray(b)
        if a_arr.dtype.kind in "fiu" and b_arr.dtype.kind in "fiu":
            np.testing.assert_allclose(a_arr.astype(float), b_arr.astype(float), atol=1e-9, err_msg=path)
        else:
            assert len(a) == len(b), path
            for i, (x, y) in enumerate(zip(a, b)):
                close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert b is not None and a is not None and np.isclose(a, b, atol=1e-9, equal_nan=True), f"{path}: {a} != {b}"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"
