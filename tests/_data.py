"""Where the shared real-data corpus lives, and skip helpers for tests."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

DATA = Path(os.environ.get("DCMXR_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def data_path(*parts: str) -> Path:
    """Path under the shared data folder; skip the test when it is absent."""
    p = DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"real test data not found at {p} (set DCMXR_TEST_DATA to ../shared/data)")
    return p
