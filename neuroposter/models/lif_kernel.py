"""The float LIF of :mod:`neuroposter.models.lif` over ``T`` steps as one compiled CPU kernel per direction (numba).

The torch form of the fused backend (``_fused_forward``/``_fused_backward``) makes a dozen passes over the
population's membranes per step (sub, mul, add, sub, compare, masked fill; in the backward abs, add, pow, mul, sub,
div, masked fill, add, mul, sub), each a separate memory-bound kernel: about a third of an SDT inference on CPU. Here
each neuron's whole trajectory is computed in registers in one pass, neurons in parallel (``prange``).

Bit-identical to the torch path (``tests/models/test_lif_kernel.py``): the same IEEE operations in the same order
and in the same precision. The constants ``c = 1/tau`` and ``v_th`` are Norse's float32 0-dim tensors; torch's type
promotion computes ``c * (x - v)`` in the dtype of ``x`` with the float32 values converted to it, so they are passed
here as 1-element arrays already in ``x``'s dtype (exact: a float32 value converted to float64), and every literal is
taken from such an array too, never a Python float (numba would promote ``float32 op float`` to float64). ``pow(2)``
is ``a * a``, as torch computes it; no ``fastmath`` (no contraction into FMA, no reassociation). Where a reset
adds ``0`` the kernel adds ``0`` too (``-0 + 0 = +0``, as ``masked_fill`` then ``add`` gives).

Compiled on first use and cached on disk (``cache=True``) next to this file. Threads: numba's pool, limited to
``torch.get_num_threads()`` for each call (so a benchmark's thread count holds for these kernels too).
"""

from __future__ import annotations

import numba
import numpy as np
import torch
from numba import njit, prange

__all__ = ["KERNEL_DTYPES", "lif_kernel_forward", "lif_kernel_backward", "kernel_applies", "match_torch_threads",
           "lif_update"]

#: dtypes the kernels are compiled for (others run the torch form).
KERNEL_DTYPES = (torch.float32, torch.float64)


#: Neurons per block: each block runs its neurons' ``T`` steps with the step loop outside and the neuron loop
#: inside (vectorised by LLVM: the recursion is over ``t``, the neurons are independent), blocks in parallel.
BLOCK = 512


@njit(inline="always")
def lif_update(v, x, c, vth, zero):  # noqa: ANN001, ANN202 - numba helper
    """One step of one neuron, Norse's operations in Norse's order: the integrated membrane ``v~ = v + c (x - v)``
    (``torch.sub``, ``torch.mul(c, dv)``, ``torch.add``) and whether it fires, ``v~ - v_th > 0`` (``torch.gt``). The
    caller resets (``0`` where it fires, ``masked_fill``). Inlined where called (also the SDT inference kernel)."""
    vd = v + c * (x - v)
    return vd, vd - vth > zero


@njit(parallel=True, cache=True, nogil=True)
def _forward(x, k, z, vd_out, fired, keep):  # noqa: ANN001 - numba kernel
    """``x [T, n]``; ``k = [c, v_th, 0, 1]`` in ``x``'s dtype; writes spikes ``z`` (0/1 in x's dtype) and, with
    ``keep``, the integrated membranes ``vd_out`` and the spike mask ``fired`` (bool)."""
    steps, n = x.shape
    c, vth, zero, one = k[0], k[1], k[2], k[3]
    nblocks = (n + BLOCK - 1) // BLOCK
    for b in prange(nblocks):
        lo = b * BLOCK
        m = min(BLOCK, n - lo)
        v = np.full(m, zero)
        for t in range(steps):
            xt = x[t, lo:lo + m]
            zt = z[t, lo:lo + m]
            if keep:
                vt = vd_out[t, lo:lo + m]
                ft = fired[t, lo:lo + m]
                for j in range(m):
                    vd, f = lif_update(v[j], xt[j], c, vth, zero)
                    vt[j] = vd
                    ft[j] = f
                    zt[j] = one if f else zero
                    v[j] = zero if f else vd            # masked_fill(z, 0)
            else:
                for j in range(m):
                    vd, f = lif_update(v[j], xt[j], c, vth, zero)
                    zt[j] = one if f else zero
                    v[j] = zero if f else vd


@njit(parallel=True, cache=True, nogil=True)
def _backward(grad, vd_all, fired, k, gx):  # noqa: ANN001 - numba kernel
    """The reverse-time recursion of ``lif._fused_backward``, per neuron, same operations in the same order."""
    steps, n = grad.shape
    c, vth, zero, one = k[0], k[1], k[2], k[3]
    nblocks = (n + BLOCK - 1) // BLOCK
    for b in prange(nblocks):
        lo = b * BLOCK
        m = min(BLOCK, n - lo)
        gv = np.full(m, zero)
        for s in range(steps):
            t = steps - 1 - s
            vdt = vd_all[t, lo:lo + m]
            gt = grad[t, lo:lo + m]
            ft = fired[t, lo:lo + m]
            gxt = gx[t, lo:lo + m]
            if s == 0:                                  # no later step: gz = grad, no reset term
                for j in range(m):
                    a = abs(vdt[j] - vth) + one
                    gvd = gt[j] / (a * a)               # pow_(2) is a * a
                    gb = gvd * c
                    gxt[j] = gb
                    gv[j] = gvd - gb
            else:
                for j in range(m):
                    a = abs(vdt[j] - vth) + one
                    gvd = (gt[j] - gv[j] * vdt[j]) / (a * a) + (zero if ft[j] else gv[j])
                    gb = gvd * c
                    gxt[j] = gb
                    gv[j] = gvd - gb


def kernel_applies(x: torch.Tensor) -> bool:
    """Whether the compiled kernels run ``x``: a CPU float32/float64 tensor with at least one step."""
    return x.device.type == "cpu" and x.dtype in KERNEL_DTYPES and x.dim() >= 1 and x.shape[0] > 0


def _consts(c: torch.Tensor, v_th: torch.Tensor, dtype: torch.dtype) -> np.ndarray:
    """``[c, v_th, 0, 1]`` in ``dtype``: the values torch's promotion gives the 0-dim constants."""
    # a 0-dim float tensor with a dimensioned float tensor: the result has the latter's dtype, the constant is
    # converted to it (exact float32 -> float64; float64 -> float32 rounds, as torch does)
    return np.array([c.detach().cpu().to(dtype).item(), v_th.detach().cpu().to(dtype).item(), 0.0, 1.0],
                    dtype=np.float32 if dtype == torch.float32 else np.float64)


def match_torch_threads() -> None:
    """Limits numba's pool to ``torch.get_num_threads()`` (per call: a benchmark's thread count holds for the kernels)."""
    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))


def lif_kernel_forward(x: torch.Tensor, c: torch.Tensor, v_th: torch.Tensor,
                       keep: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """What ``lif._fused_forward`` returns (spikes, bool mask, membranes), from the compiled kernel; without
    ``keep`` only the spikes (mask and membranes None)."""
    steps = x.shape[0]
    xs = x.detach().contiguous().numpy().reshape(steps, -1)
    z = np.empty_like(xs)
    vd = np.empty_like(xs) if keep else np.empty((1, 1), dtype=xs.dtype)
    fired = np.empty(xs.shape if keep else (1, 1), dtype=np.bool_)
    match_torch_threads()
    _forward(xs, _consts(c, v_th, x.dtype), z, vd, fired, keep)
    shape = tuple(x.shape)
    spikes = torch.from_numpy(z).reshape(shape)
    if not keep:             # inference: the spikes only (no mask, no membranes)
        return spikes, None, None
    return spikes, torch.from_numpy(fired).reshape(shape), torch.from_numpy(vd).reshape(shape)


def lif_kernel_backward(grad: torch.Tensor, vd_all: torch.Tensor, fired: torch.Tensor, c: torch.Tensor,
                        v_th: torch.Tensor) -> torch.Tensor:
    """``lif._fused_backward`` from the compiled kernel (``grad`` in the membranes' dtype)."""
    steps = grad.shape[0]
    g = grad.detach().contiguous().numpy().reshape(steps, -1)
    gx = np.empty_like(g)
    match_torch_threads()
    _backward(g, vd_all.contiguous().numpy().reshape(steps, -1), fired.contiguous().numpy().reshape(steps, -1),
              _consts(c, v_th, grad.dtype), gx)
    return torch.from_numpy(gx).reshape(tuple(grad.shape))
