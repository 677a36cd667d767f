"""Fixtures for feature tests: one torch thread, a tiny in-memory poster dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from neuroposter.data.policy import ImagePolicy


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


class TinyPosters:
    """Duck-typed stand-in for ``neuroposter.data.PosterDataset`` (contract section 2)."""

    def __init__(self, root: Path, n: int = 10, height: int = 48, width: int = 64, key: str = "tiny-v1") -> None:
        self.root = root
        self.key = key
        self.genres = ["Drama", "Comedy", "Action"]
        rng = np.random.default_rng(0)
        self.labels = (rng.random((n, 3)) < 0.4).astype(np.uint8)
        self.split = np.array((["train"] * 6 + ["val"] * 2 + ["test"] * 2) * (n // 10 + 1))[:n]
        self.image_policy = ImagePolicy(mode="squash", height=height, width=width)
        self._images = [rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8) for _ in range(n)]
        self.loads = 0

    def __len__(self) -> int:
        return len(self._images)

    def indices(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.split == split).astype(np.int64)

    def load_image(self, i: int) -> Image.Image:
        self.loads += 1
        return Image.fromarray(self._images[i], "RGB")


@pytest.fixture
def tiny_posters(tmp_path: Path) -> TinyPosters:
    """Ten random 64x48 RGB posters (6 train / 2 val / 2 test), 3 genres."""
    return TinyPosters(tmp_path / "dataset")
