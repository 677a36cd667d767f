"""Fixtures for model tests: one torch thread (shared CI cores), seeded generators."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture
def torch_gen() -> torch.Generator:
    """A seeded torch generator."""
    return torch.Generator().manual_seed(0)
