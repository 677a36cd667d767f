"""Fixtures for the NIR tests: one torch thread, trained-model-sized SDT and spiking MLP that spike."""

from __future__ import annotations

import pytest
import torch

from neuroposter.models.sdt import SDTConfig, SpikeDrivenTransformer
from neuroposter.models.snn_mlp import SpikingMLPConfig, SpikingMLPNet
from neuroposter.testing.active_init import spiking_random_init

# The size of the default trained SDT (d=64, depth 2, N=40 tokens of 1664 channels, T=4).
SDT_CFG = SDTConfig(d_in=1664, n_tokens=40, d_model=64, depth=2, heads=4, mlp_hidden=128, n_classes=10)
T = 4


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def sdt() -> SpikeDrivenTransformer:
    torch.manual_seed(0)
    return spiking_random_init(SpikeDrivenTransformer(SDT_CFG))


@pytest.fixture(scope="session")
def mlp() -> SpikingMLPNet:
    torch.manual_seed(0)
    return spiking_random_init(SpikingMLPNet(SpikingMLPConfig(d_in=1664, hidden1=256, hidden2=128, n_classes=10)))


@pytest.fixture(scope="session")
def sdt_spikes() -> torch.Tensor:
    """Input spikes [T, B, N, D_in] at 10 % density."""
    g = torch.Generator().manual_seed(2)
    return (torch.rand(T, 6, SDT_CFG.n_tokens, SDT_CFG.d_in, generator=g) < 0.1).float()

