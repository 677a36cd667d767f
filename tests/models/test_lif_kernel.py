"""The compiled float LIF (numba) against the torch form of the fused backend (itself bit-identical to Norse,
tests/models/test_fused_lif.py): spikes, membranes and input gradients bit for bit, across dtypes, shapes, step
counts, time constants and thresholds, threshold hits and resets included (a whole SDT's training step with either
form: tests/models/test_fused_lif.py)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from neuroposter.models.lif import LIF
from neuroposter.models.lif_kernel import kernel_applies


def _run(backend: str, x: torch.Tensor, g: torch.Tensor, tau: float, v_th: float):
    lif = LIF(tau, v_th, backend=backend)
    xr = x.clone().requires_grad_(True)
    z = lif(xr)
    (z * g).sum().backward()
    with torch.no_grad():
        z_eval = lif(x)             # the graph-free forward
    return z.detach(), xr.grad, z_eval


def _bits_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal bit patterns (tells -0 from +0), NaN where the other is NaN (a NaN's sign and payload carry nothing:
    vectorised and scalar code may produce different ones)."""
    ints = {torch.float32: torch.int32, torch.float64: torch.int64}[a.dtype]
    if a.dtype != b.dtype or a.shape != b.shape or not torch.equal(a.isnan(), b.isnan()):
        return False
    a, b = a.masked_fill(a.isnan(), 0.0), b.masked_fill(b.isnan(), 0.0)
    return torch.equal(a.view(ints), b.view(ints))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), dtype=st.sampled_from([torch.float32, torch.float64]),
       steps=st.integers(1, 7), shape=st.lists(st.integers(1, 9), min_size=1, max_size=3),
       tau=st.sampled_from([1.0, 1.5, 2.0, 3.0, 4.0, 10.0]), v_th=st.sampled_from([0.1, 0.25, 0.3, 0.5, 1.0, 1.7]),
       dyadic=st.booleans(), scale=st.sampled_from([0.5, 2.0, 50.0]))
def test_kernel_is_bit_identical_to_the_torch_form(seed: int, dtype: torch.dtype, steps: int, shape: list[int],
                                                   tau: float, v_th: float, dyadic: bool, scale: float) -> None:
    g = torch.Generator().manual_seed(seed)
    if dyadic:     # eighths: membranes land exactly on the threshold, and zeros occur
        x = (torch.randint(-8, 8 * int(tau) + 9, (steps, *shape), generator=g) / 8).to(dtype)
    else:
        x = (torch.randn(steps, *shape, generator=g, dtype=torch.float64) * scale).to(dtype)
    gr = torch.randn(x.shape, generator=g, dtype=dtype)
    assert kernel_applies(x)
    zk, gk, ek = _run("fused", x, gr, tau, v_th)
    zt, gt, et = _run("fused-torch", x, gr, tau, v_th)
    assert _bits_equal(zk, zt) and _bits_equal(ek, et) and _bits_equal(zk, ek)
    assert _bits_equal(gk, gt)


def test_kernel_handles_non_contiguous_inputs_and_special_values() -> None:
    g = torch.Generator().manual_seed(3)
    base = torch.randn(9, 6, 5, generator=g)
    x = base.transpose(1, 2)[::2]                    # [5, 5, 6], not contiguous
    x[0, 0, 0], x[1, 1, 1], x[2, 2, 2] = float("nan"), float("inf"), -float("inf")
    gr = torch.randn(x.shape, generator=g)
    zk, gk, _ = _run("fused", x, gr, 2.0, 1.0)
    zt, gt, _ = _run("fused-torch", x, gr, 2.0, 1.0)
    assert _bits_equal(zk, zt) and _bits_equal(gk, gt)


def test_other_dtypes_run_the_torch_form() -> None:
    x = torch.randn(3, 4, dtype=torch.bfloat16)
    assert not kernel_applies(x) and not kernel_applies(torch.zeros(0, 4))
    assert torch.equal(LIF(backend="fused")(x), LIF(backend="fused-torch")(x))
