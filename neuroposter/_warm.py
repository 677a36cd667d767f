"""Compiles the project's numba kernels once, at set-up: ``python -m neuroposter._warm`` (``scripts/bootstrap.sh``).

The compiled LIF (:mod:`neuroposter.models.lif_kernel`), the spike-sparse products (:mod:`neuroposter.models.sparse`),
the SDT's inference kernel (:mod:`neuroposter.models.sdt_inference`), the integer simulator's neuron and input check
(:mod:`neuroposter.ir.int_neuron_kernel`) and the integer LIF of quantisation-aware training (:mod:`neuroposter.ir.int_lif_kernel`) are numba functions with
``cache=True``: the first call of each type signature compiles it (seconds) and writes the machine code next to its
module, where every later process finds it. Calling each signature the pipeline uses once here moves that cost from
the first ``neuroposter`` command to the set-up. Nothing else happens: a missed signature still compiles on first
use.
"""

from __future__ import annotations

import time

__all__ = ["warm"]


def warm() -> float:
    """Calls every compiled kernel once per dtype the pipeline uses; returns the seconds it took."""
    import torch

    from neuroposter.ir.int_lif_kernel import int_lif_backward, int_lif_forward
    from neuroposter.ir.int_neuron_kernel import warm as warm_int_sim
    from neuroposter.models.lif import LIF
    from neuroposter.models.sdt import SDTConfig, SpikeDrivenTransformer
    from neuroposter.models.sdt_inference import sdt_inference
    from neuroposter.models.sparse import _weight_grad, sparse_matmul_rows

    t0 = time.perf_counter()
    g = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        lif = LIF().to(dtype)
        x = torch.randn(3, 2, 5, dtype=dtype, generator=g, requires_grad=True)
        lif(x).sum().backward()                       # training: forward keeping the membranes, backward
        with torch.no_grad():
            lif(x.detach())                           # inference: spikes only
        w = torch.randn(7, 3, dtype=dtype, generator=g)
        for spikes in (torch.rand(4, 7, generator=g) > 0.5, (torch.rand(4, 7, generator=g) > 0.5).to(torch.uint8),
                       (torch.rand(4, 7, generator=g) > 0.5).to(dtype)):
            sparse_matmul_rows(spikes, w)
            _weight_grad(spikes, torch.randn(4, 3, dtype=dtype, generator=g))   # the first layer's training
    sparse_matmul_rows((torch.rand(4, 7, generator=g) > 0.5).to(torch.uint8), torch.randint(-9, 9, (7, 3)))
    sdt = SpikeDrivenTransformer(SDTConfig(d_in=8, n_tokens=3, d_model=4, depth=1, heads=1, mlp_hidden=4,
                                           n_classes=2)).eval()
    with torch.no_grad():
        for dtype in (torch.float32, torch.float64):
            sdt.to(dtype)
            s = torch.rand(2, 1, 3, 8, generator=g) > 0.5
            for spikes in (s, s.to(torch.uint8), s.to(dtype)):
                sdt_inference(sdt, x=spikes)                  # from spikes (bool, uint8, float)
            sdt_inference(sdt, u0=torch.randn(2, 1, 3, 4, dtype=dtype, generator=g))   # from embedded membranes
    xi = torch.randn(3, 2, 5, dtype=torch.float64, generator=g) * 100
    z, vc, ok = int_lif_forward(xi, torch.zeros(2, 5, dtype=torch.float64), gain=1.0, decay=0.5, lo=-255.0,
                                hi=255.0, vth=64.0, unit=64.0)
    int_lif_backward(torch.ones_like(z), z, vc, ok, gain=1.0, decay=0.5, vth=64.0, unit=64.0)
    warm_int_sim()
    return time.perf_counter() - t0


if __name__ == "__main__":
    print(f"compiled kernels ready ({warm():.1f} s)")
