"""Shared pytest configuration: tests/ helpers importable, quiet warnings of dependencies."""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("MPLBACKEND", "Agg")
