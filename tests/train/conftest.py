"""Fixtures for training tests: one torch thread, and small in-memory tasks with a planted signal."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuroposter.train.data import SplitData, TaskData


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def make_spike_task(n: int = 96, T: int = 4, N: int = 6, D: int = 32, G: int = 4, seed: int = 0,
                    pooled: bool = False) -> TaskData:
    """Random spikes where genre ``g`` raises the firing probability of channels ``[g*k, (g+1)*k)``."""
    rng = np.random.default_rng(seed)
    N = 1 if pooled else N
    labels = (rng.random((n, G)) < 0.3).astype(np.float32)
    labels[np.arange(n), rng.integers(0, G, n)] = 1.0          # at least one genre each
    p = np.full((n, N, D), 0.05)
    k = D // (2 * G)
    for g in range(G):
        p[labels[:, g] == 1, :, g * k:(g + 1) * k] = 0.6
    spikes = (rng.random((n, T, N, D)) < p[:, None]).astype(np.uint8)    # [n, T, N, D]
    x, y = torch.from_numpy(spikes), torch.from_numpy(labels)
    a, b = n // 2, 3 * n // 4
    return TaskData(SplitData(x[:a], y[:a]), SplitData(x[a:b], y[a:b]), SplitData(x[b:], y[b:]),
                    [f"g{i}" for i in range(G)], "spikes",
                    meta={"T": T, "n_tokens": N, "d_in": D, "form": "pooled" if pooled else "tokens"},
                    inputs_manifest={"encoded": {"path": "memory", "key": f"fake-{seed}"}})


@pytest.fixture
def spike_task() -> TaskData:
    """96 samples of [T=4, N=6, D=32] spikes, 4 genres."""
    return make_spike_task()
