"""Suite-wide test settings: offline, quiet progress bars, deterministic seeds."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("NEUROPOSTER_NO_PROGRESS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded numpy generator."""
    return np.random.default_rng(0)
