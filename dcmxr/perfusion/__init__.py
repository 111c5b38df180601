"""Perfusion and other N-D acquisitions: discovery with role hints, dynamic stacks, BIDS."""
from __future__ import annotations

from .bids import open_bids
from .discover import ROLE_HINTS, discover
from .open import open_perfusion
from .params import PARAM_UNITS

__all__ = ["discover", "open_perfusion", "open_bids", "ROLE_HINTS", "PARAM_UNITS"]
