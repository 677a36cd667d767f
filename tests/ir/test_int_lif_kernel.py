"""The compiled integer LIF (numba) against the chip neuron's equations written out here, step by step, in torch:
spikes, clamped membranes, clamp masks and gradients bit for bit, saturation and resets included."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from neuroposter.ir.int_lif_kernel import int_lif_backward, int_lif_forward


def _reference(x, rnd, gain, decay, lo, hi, vth, unit):
    """The integer LIF one step at a time (strict threshold, hard reset to 0, saturating membrane)."""
    v = torch.zeros_like(x[0])
    zs, vcs, oks = [], [], []
    for t in range(x.shape[0]):
        p = torch.trunc(v * decay) + (torch.round(x[t] * gain) + rnd)
        oks.append((p >= lo) & (p <= hi))
        v = torch.clamp(p, lo, hi)
        vcs.append(v)
        z = ((v - vth) / unit > 0).to(x.dtype)
        zs.append(z)
        v = v - z * v
    return torch.stack(zs), torch.stack(vcs), torch.stack(oks)


def _reference_grad(grad, z, vc, ok, gain, decay, vth, unit):
    """Backpropagation through time of the SuperSpike surrogate 1 / (|s| + 1)^2 with straight-through roundings."""
    gx = torch.empty_like(grad)
    gv = None
    for t in range(grad.shape[0] - 1, -1, -1):
        den = (((vc[t] - vth) / unit).abs() + 1.0) ** 2
        gz = grad[t] if gv is None else grad[t] - gv * vc[t]
        gvc = gz / den / unit
        if gv is not None:
            gvc = gvc + gv * (1.0 - z[t])
        gp = torch.where(ok[t], gvc, torch.zeros_like(gvc))
        gx[t] = gp * gain
        gv = gp * decay
    return gx


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), steps=st.integers(1, 6), scale=st.sampled_from([0.5, 30.0, 400.0, 5000.0]),
       decay=st.sampled_from([0.0, 0.5, 0.75, 1.0]), limit=st.sampled_from([2**7, 2**13, 2**23]))
def test_kernel_equals_the_step_wise_equations(seed: int, steps: int, scale: float, decay: float, limit: int) -> None:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(steps, 3, 5, 7, dtype=torch.float64, generator=g) * scale
    rnd = (torch.rand(3, 5, 7, dtype=torch.float64, generator=g) < 0.5).double() * 0.5
    kw = dict(gain=64.0, decay=decay, lo=-limit + 1.0, hi=limit - 1.0, vth=6400.0, unit=6400.0)
    z, vc, ok = int_lif_forward(x, rnd, **kw)
    rz, rvc, rok = _reference(x, rnd, **kw)
    assert torch.equal(z, rz) and torch.equal(vc, rvc) and torch.equal(ok, rok)
    grad = torch.randn(x.shape, dtype=torch.float64, generator=g)
    bkw = {k: kw[k] for k in ("gain", "decay", "vth", "unit")}
    assert torch.equal(int_lif_backward(grad, z, vc, ok, **bkw), _reference_grad(grad, rz, rvc, rok, **bkw))


def test_saturation_and_resets_are_exercised() -> None:
    """The cases above reach the clamp and both spike outcomes (the test would be vacuous otherwise)."""
    x = torch.linspace(-3000.0, 3000.0, 4 * 50, dtype=torch.float64).reshape(4, 50)
    z, _, ok = int_lif_forward(x, torch.zeros(50, dtype=torch.float64), gain=64.0, decay=0.5, lo=-2.0**13 + 1,
                               hi=2.0**13 - 1, vth=6400.0, unit=6400.0)
    assert 0 < z.sum() < z.numel() and not ok.all()
