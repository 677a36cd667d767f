"""Fixtures for encoder tests: one torch thread, a tiny synthetic feature store (no DenseNet needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from neuroposter.data.policy import ImagePolicy
from neuroposter.features import open_store, store_key
from neuroposter.manifest import write_manifest


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


class FakeDataset:
    """The parts of ``PosterDataset`` the encoder reads: genres, labels, splits, key."""

    def __init__(self, n: int, n_genres: int = 4, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.key = "fake-dataset"
        self.genres = [f"g{i}" for i in range(n_genres)]
        self.labels = (rng.random((n, n_genres)) < 0.35).astype(np.uint8)
        self.split = np.array(["train", "train", "train", "val", "test"] * (n // 5 + 1))[:n]
        self.image_policy = ImagePolicy(mode="squash", height=64, width=64)

    def __len__(self) -> int:
        return len(self.labels)

    def indices(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.split == split).astype(np.int64)


def make_store(path: Path, n: int = 20, n_tokens: int = 4, dim: int = 16, seed: int = 0):
    """A complete feature store with heavy-tailed ReLU-like features whose labels depend on them."""
    rng = np.random.default_rng(seed)
    ds = FakeDataset(n, seed=seed)
    base = rng.lognormal(0.0, 1.0, size=(n, n_tokens, dim)) * (rng.random((n, n_tokens, dim)) < 0.6)
    base[:, :, :4] += 3.0 * ds.labels[:, None, :]  # features 0..3 carry the labels
    tokens = base.astype(np.float16)
    path.mkdir(parents=True)
    np.save(path / "tokens.npy", tokens)
    np.save(path / "pooled.npy", tokens.astype(np.float32).mean(axis=1).astype(np.float16))
    np.save(path / "done.npy", np.ones(n, dtype=bool))
    np.save(path / "rows.npy", np.arange(n, dtype=np.int64))
    key = store_key(ds.key, "random", ds.image_policy.to_dict())
    write_manifest(path, "features", inputs={"dataset": {"path": str(path), "key": ds.key}}, key=key,
                   extra={"complete": True, "grid": [1, n_tokens], "weights": "random", "weights_note": ""})
    return open_store(path, dataset=ds)


@pytest.fixture
def fake_store(tmp_path: Path):
    """20 posters x 4 tokens x 16 features (12 train / 4 val / 4 test)."""
    return make_store(tmp_path / "features" / "default")
