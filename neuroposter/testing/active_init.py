"""Untrained networks that spike in every layer: for equivalence tests and benchmarks (not a user API).

A freshly initialised SDT is mostly silent, so comparing two executions of it (Norse vs NIR,
float vs quantised, simulator vs Lava) would compare zeros. :func:`spiking_random_init` perturbs the
BatchNorm statistics and affine parameters (seeded) so that every LIF layer fires.
"""

from __future__ import annotations

from typing import Callable

import torch

__all__ = ["spiking_random_init", "demo_sized_sdt", "spiking_pixel_sdt", "calibrate_batchnorms"]


def spiking_random_init(model: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    """Perturbs every ``BatchNorm1d`` of ``model`` (seeded) so that its spiking layers fire; returns it in eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, torch.nn.BatchNorm1d):
                mod.running_mean.normal_(0.0, 0.1, generator=g)
                mod.running_var.uniform_(0.2, 1.0, generator=g)
                mod.weight.uniform_(0.8, 2.5, generator=g)
                mod.bias.uniform_(0.2, 1.0, generator=g)
    return model.eval()


def demo_sized_sdt(seed: int = 0) -> torch.nn.Module:
    """A random SDT of the demo's size (``SDTConfig()`` defaults: d=64, depth 2, N=40, D_in=1664) that spikes."""
    from neuroposter.models.sdt import SDTConfig, SpikeDrivenTransformer

    torch.manual_seed(seed)
    return spiking_random_init(SpikeDrivenTransformer(SDTConfig()), seed + 1)


def spiking_pixel_sdt(*, image_size: int, T: int, c1: int, d_model: int, depth: int, mlp_hidden: int,
                      n_classes: int, dtype: torch.dtype = torch.float64, seed: int = 0) -> torch.nn.Module:
    """A small random pixel SDT whose layers all fire: every BatchNorm (1d and 2d) holds the statistics of one random
    batch of 32 images, with its scale doubled and its shift drawn from [-0.2, 0.5]; returned in eval mode."""
    from neuroposter.models.sdt_pixels import PixelSDT

    torch.manual_seed(seed)
    m = PixelSDT(n_classes=n_classes, image_size=image_size, T=T, c1=c1, d_model=d_model, depth=depth, heads=2,
                 mlp_hidden=mlp_hidden).to(dtype)
    return calibrate_batchnorms(m, lambda: torch.randn(32, 3, image_size, image_size, dtype=dtype))


def calibrate_batchnorms(model: torch.nn.Module, make_input: Callable[[], torch.Tensor]) -> torch.nn.Module:
    """Every BatchNorm of ``model`` (1d and 2d, frozen ones included) with the statistics of one batch
    ``make_input()``, its scale doubled and its shift drawn from [-0.2, 0.5] (torch's global generator: seed it
    before), so that every layer fires; returned in eval mode."""
    bns = [b for b in model.modules() if isinstance(b, torch.nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
        with torch.no_grad():
            bn.weight.mul_(2.0)
            bn.bias.uniform_(-0.2, 0.5)
    model.eval()
    for bn in bns:          # batch statistics in every BatchNorm (a model's train() may keep some frozen)
        bn.train()
    with torch.no_grad():
        model(make_input())
    return model.eval()
