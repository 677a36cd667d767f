"""The chip's integer LIF over ``T`` steps as one compiled CPU kernel per direction (numba): quantisation-aware
training's hottest loop.

:class:`neuroposter.ir.qat.IntLIFFunction` runs the integer neuron of a population over all steps. Written with
torch operations, every step makes a dozen passes over the population's membranes (round, trunc, add, compare,
clamp, reset, copies), each a separate memory-bound kernel over float64 tensors; that was about half of a Loihi
fine-tune's time. Here each neuron's whole trajectory is computed in registers in one pass, neurons in parallel
(``prange``). The arithmetic is the same, operation for operation and in the same order (IEEE float64; ``np.rint``
rounds half to even as ``torch.round`` does; the hard reset ``v - z v`` is 0 where ``z = 1``), so the spikes and
the gradients are bit-identical to the torch path (``tests/ir/test_int_lif_kernel.py`` compares them).

Forward, per neuron (``g`` = gain, ``r`` = its rounding offset, ``d`` = decay)::

    p_t = trunc(v_{t-1} d) + (rint(x_t g) + r);   ok_t = lo <= p_t <= hi;   v^c_t = clamp(p_t, lo, hi)
    z_t = [(v^c_t - vth) / unit > 0];             v_t = 0 if z_t else v^c_t

Backward: the recursion of :class:`~neuroposter.ir.qat.IntLIFFunction` (SuperSpike surrogate), per neuron.
Compiled on first use and cached on disk (``cache=True``) next to this file.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange

__all__ = ["int_lif_forward", "int_lif_backward"]


@njit(parallel=True, cache=True, nogil=True)
def _forward(x, rnd, gain, decay, lo, hi, vth, unit, z, vc, ok):  # noqa: ANN001 - numba kernel
    steps, n = x.shape
    for i in prange(n):
        v = 0.0
        r = rnd[i]
        for t in range(steps):
            p = np.trunc(v * decay) + (np.rint(x[t, i] * gain) + r)
            ok[t, i] = (p >= lo) and (p <= hi)
            v = min(max(p, lo), hi)
            vc[t, i] = v
            if (v - vth) / unit > 0.0:
                z[t, i] = 1.0
                v = 0.0
            else:
                z[t, i] = 0.0


@njit(parallel=True, cache=True, nogil=True)
def _backward(grad, z, vc, ok, gain, decay, vth, unit, gx):  # noqa: ANN001 - numba kernel
    steps, n = grad.shape
    for i in prange(n):
        gv = 0.0
        for k in range(steps):
            t = steps - 1 - k
            v = vc[t, i]
            s = abs((v - vth) / unit) + 1.0
            den = s * s
            if k == 0:
                gvc = grad[t, i] / den / unit
            else:
                gvc = (grad[t, i] - gv * v) / den / unit + gv * (1.0 - z[t, i])
            gp = gvc if ok[t, i] else 0.0
            gx[t, i] = gp * gain
            gv = gp * decay


def _flat(a: torch.Tensor, steps: int) -> np.ndarray:
    return a.detach().contiguous().numpy().reshape(steps, -1)


def int_lif_forward(x: torch.Tensor, rnd: torch.Tensor, *, gain: float, decay: float, lo: float, hi: float,
                    vth: float, unit: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Spikes ``z``, clamped membranes ``vc`` and the clamp's pass mask ``ok`` of ``x [T, ...]`` (CPU float64;
    ``rnd`` broadcasts to ``x[0]``)."""
    steps = x.shape[0]
    xs = _flat(x, steps)
    r = np.ascontiguousarray(np.broadcast_to(rnd.detach().numpy(), x.shape[1:]), dtype=xs.dtype).reshape(-1)
    z, vc = np.empty_like(xs), np.empty_like(xs)
    ok = np.empty(xs.shape, dtype=np.bool_)
    _forward(xs, r, float(gain), float(decay), float(lo), float(hi), float(vth), float(unit), z, vc, ok)
    shape = tuple(x.shape)
    return (torch.from_numpy(z).reshape(shape), torch.from_numpy(vc).reshape(shape),
            torch.from_numpy(ok).reshape(shape))


def int_lif_backward(grad: torch.Tensor, z: torch.Tensor, vc: torch.Tensor, ok: torch.Tensor, *, gain: float,
                     decay: float, vth: float, unit: float) -> torch.Tensor:
    """The input gradient of :func:`int_lif_forward` for the output gradient ``grad``."""
    steps = grad.shape[0]
    g = _flat(grad, steps).astype(np.float64, copy=False)
    gx = np.empty_like(g)
    _backward(g, _flat(z, steps), _flat(vc, steps), _flat(ok, steps), float(gain), float(decay), float(vth),
              float(unit), gx)
    return torch.from_numpy(gx).reshape(tuple(grad.shape))
