"""Spike-sparse synapses: ``y = x W^T + b`` for a spike input ``x`` as gather-and-add over its active inputs.

A spiking model's first layer takes binary spikes (the SDT's tokens, the spiking MLP's pooled features: 10-30 %
ones). A dense GEMM pays for every zero; here each output row is the sum of the weight rows of its active inputs::

    y[m, :] = sum_{k : x[m, k] != 0} x[m, k] * W^T[k, :]     (then + b)

compiled with numba, rows in parallel, each row summed by one thread in increasing ``k``: the result does not depend
on the thread count. It is the same sum as the GEMM's in another order, so in floating point it is not bit-identical
to MKL's (``allclose``, relative error ~1e-7 in float32, ~1e-16 in float64; tests/models/test_sparse.py); with
integer-valued weights and inputs below the float's exact range (the integer reference simulator) it is exact.
``x[m, k] * w`` is ``w`` for a spike, so non-binary inputs are summed correctly too.

Per row, the active columns are first compacted branch-free into a list (every column index is written, the cursor
advances on non-zeros: no mispredicted branches at 10-30 % density), then their weight rows are added.

The weight gradient ``dW^T = X^T G`` is the matching scatter (:func:`_scatter_columns`, no transposed copy of the
input): blocks of input columns in parallel, each scanning its columns of every row and adding the gradient row
``G[m]`` to ``dW^T[k]`` for every active input ``k``, in increasing ``m``: again independent of the thread count. The
input gradient (when asked for) is the dense ``G W``.

When: :func:`use_sparse` -- CPU, float32/float64 (or an integer weight dtype), and the input's density (estimated on
an evenly spaced sample of rows) at most :data:`SPARSE_MAX_DENSITY` of the weight's dtype, the break-even measured
with ``benchmarks/sparse_linear.py`` on the demo shapes, for the forward alone (inference) and for forward plus
weight gradient (training). Spikes given as bool/uint8 are read as they are (a quarter of float32's bytes to scan, no
conversion pass). Where (:func:`spike_linear`, the first layer of the SDT and of the spiking MLP), by the model's
``sparse_input`` mode (:data:`SPARSE_MODES`, :func:`set_sparse_input`):

* ``"auto"`` (default) -- sparse wherever the density says it pays, in inference and in training. In training this
  is another float round-off than the dense GEMM's (allclose per step; in float64, the precision the spiking models
  train in, ~1e-16), and one that does not depend on the thread count or the BLAS build;
* ``"inference"`` -- sparse in inference only (``no_grad`` or frozen weights); training keeps the dense GEMM, bit for
  bit the arithmetic of earlier versions;
* ``"off"`` -- always the dense ``torch.nn.functional.linear``.

The SDT reads the same mode for its whole-network inference kernel (:mod:`neuroposter.models.sdt_inference`):
``"auto"``/``"inference"`` use it in inference, ``"off"`` keeps the torch layers.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from neuroposter.models.lif_kernel import match_torch_threads

__all__ = ["SPARSE_MAX_DENSITY", "SPARSE_MODES", "DEFAULT_SPARSE_MODE", "sparse_linear", "sparse_matmul_rows", "gather_row",
           "use_sparse", "estimate_density", "spike_linear", "set_sparse_input"]

#: Largest input density (fraction of non-zeros) at which the sparse path beats the dense GEMM, per weight dtype.
#: Measured with ``benchmarks/sparse_linear.py`` (2-core AMD EPYC VM, 2 threads; the SDT embed [5120 x 1664] x
#: [1664 x 64] and the spiking MLP's fc1 [128 x 1664] x [1664 x 256]). Forward (inference): float32 breaks even at
#: ~0.2-0.3 (embed 1.43x at 0.1, 0.94x at 0.2; fc1 1.50x at 0.2, 1.07x at 0.3), float64 (the dense GEMM at under half
#: float32's speed) at ~0.3-0.6 (embed 1.32x at 0.4, 0.99x at 0.6; fc1 1.01x at 0.3). Forward + weight gradient
#: (training): float32 ~0.25 (embed 1.13x at 0.2, 0.92x at 0.3; fc1 1.23x at 0.3), float64 ~0.35-0.55 (embed 1.29x
#: at 0.4, 1.12x at 0.5; fc1 1.04x at 0.3, 0.79x at 0.4). One limit per dtype serves both, set within those ranges.
SPARSE_MAX_DENSITY = {torch.float32: 0.25, torch.float64: 0.4, torch.int64: 1.0}
#: How a model's first layer may use the sparse path (module docstring).
SPARSE_MODES = ("auto", "inference", "off")
#: The mode of a model built without ``set_sparse_input``.
DEFAULT_SPARSE_MODE = "auto"
#: Rows sampled by :func:`estimate_density`.
_SAMPLE_ROWS = 64
_DTYPES = (torch.float32, torch.float64, torch.int64)


#: Rows per parallel block of the gather (each block reuses one index buffer).
_ROW_BLOCK = 32


@njit(cache=True, nogil=True, inline="always")
def compact_active(xm, k0, k1, idx):  # noqa: ANN001 - numba kernel
    """Writes the columns ``k0 <= k < k1`` where ``xm[k] != 0`` to ``idx[0:c]`` in increasing order, branch-free
    (every column is written, the cursor moves on non-zeros); returns ``c``."""
    c = 0
    for k in range(k0, k1):
        idx[c] = k
        c += xm[k] != 0
    return c


@njit(cache=True, nogil=True, inline="always")     # inlined where called: no call per row in the hot loops
def gather_row(xm, wt, idx, acc):  # noqa: ANN001 - numba kernel
    """``acc = sum_{k: xm[k] != 0} xm[k] * wt[k]`` in increasing ``k``, one pass over ``xm``: the active columns are
    compacted branch-free into ``idx`` (scratch of ``len(xm)``; every column written, the cursor moves on non-zeros),
    then their weight rows are added. Returns how many were active. (Also the SDT inference kernel's embed.)"""
    c = compact_active(xm, 0, xm.shape[0], idx)
    for o in range(acc.shape[0]):
        acc[o] = 0
    for p in range(c):
        k = idx[p]
        xv = xm[k]
        w = wt[k]
        for o in range(acc.shape[0]):
            acc[o] += xv * w[o]
    return c


@njit(parallel=True, cache=True, nogil=True)
def _gather_rows(x, wt, y):  # noqa: ANN001 - numba kernel
    """``y[m] = sum_{k: x[m, k] != 0} x[m, k] * wt[k]`` in increasing ``k`` (:func:`gather_row`), blocks of rows in
    parallel, each block reusing one index buffer."""
    M, K = x.shape
    nb = (M + _ROW_BLOCK - 1) // _ROW_BLOCK
    for b in prange(nb):
        idx = np.empty(K, np.int32)
        for m in range(b * _ROW_BLOCK, min(M, (b + 1) * _ROW_BLOCK)):
            gather_row(x[m], wt, idx, y[m])


def _np(t: Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


def sparse_matmul_rows(x: Tensor, wt: Tensor) -> Tensor:
    """``x [M, K] @ wt [K, O]`` by gather-and-add over the non-zeros of ``x`` (any dtype; the result in ``wt``'s).
    Exact for integer-valued operands while every partial sum stays in the dtype's exact range."""
    if x.dim() != 2 or wt.dim() != 2 or x.shape[1] != wt.shape[0]:
        raise ValueError(f"sparse_matmul_rows: shapes {tuple(x.shape)} @ {tuple(wt.shape)} do not chain")
    xs = _np(x.view(torch.uint8) if x.dtype == torch.bool else x)
    if xs.dtype != np.uint8 and xs.dtype != _np(wt[:0]).dtype:
        xs = xs.astype(_np(wt[:0]).dtype)
    y = np.empty((xs.shape[0], wt.shape[1]), dtype=_np(wt[:0]).dtype)
    match_torch_threads()
    _gather_rows(xs, _np(wt), y)
    return torch.from_numpy(y)


#: Input columns per parallel block of the weight-gradient scatter (:func:`_scatter_columns`): measured on
#: ``benchmarks/sparse_linear.py``'s products (SDT embed [5120 x 1664] x 64, fc1 [128 x 1664] x 256, float32 and
#: float64, density 0.1-0.3): 104 was the fastest on the embed (52: up to 2.3x slower in float32; 208-832: up to 1.5x
#: slower in float64) and within 15 % of the fastest (52) on fc1, a product 30x smaller.
_GRAD_COLUMNS = 104


@njit(parallel=True, cache=True, nogil=True)
def _scatter_columns(x, g, gwt, width):  # noqa: ANN001 - numba kernel
    """``gwt = x^T g`` as a scatter over the non-zeros of ``x`` (no transposed copy): blocks of input columns in
    parallel, each scanning its columns of every row in increasing ``m`` and adding ``x[m, k] * g[m]`` to ``gwt[k]``;
    so every ``gwt[k]`` is summed in increasing ``m`` from zero, whatever the thread count."""
    M, K = x.shape
    O = g.shape[1]
    nb = (K + width - 1) // width
    for b in prange(nb):
        k0 = b * width
        k1 = min(K, k0 + width)
        idx = np.empty(k1 - k0 if k1 > k0 else 1, np.int32)   # (the guard measured 3x faster than without)
        for k in range(k0, k1):
            for o in range(O):
                gwt[k, o] = 0
        for m in range(M):
            xm = x[m]
            c = compact_active(xm, k0, k1, idx)
            gm = g[m]
            for p in range(c):
                k = idx[p]
                xv = xm[k]
                w = gwt[k]
                for o in range(O):
                    w[o] += xv * gm[o]


def _weight_grad(x: Tensor, g: Tensor) -> Tensor:
    """``g^T x`` (``[O, K]``) by :func:`_scatter_columns`: for every input ``k`` the rows ``g[m]`` of the samples
    where it is active, in increasing ``m`` (independent of the thread count)."""
    xs = _np(x.view(torch.uint8) if x.dtype == torch.bool else x)
    gs = _np(g)
    if xs.dtype != np.uint8 and xs.dtype != gs.dtype:
        xs = xs.astype(gs.dtype)
    gwt = np.empty((xs.shape[1], gs.shape[1]), dtype=gs.dtype)
    match_torch_threads()
    _scatter_columns(xs, gs, gwt, _GRAD_COLUMNS)
    return torch.from_numpy(gwt).t()


class _SparseLinearFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:  # noqa: ANN001
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        y = sparse_matmul_rows(x, weight.detach().t().contiguous())
        return y + bias if bias is not None else y

    @staticmethod
    @once_differentiable
    def backward(ctx, g: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:  # noqa: ANN001
        x, weight = ctx.saved_tensors
        g = g.contiguous()
        gx = g @ weight if ctx.needs_input_grad[0] else None
        gw = _weight_grad(x, g) if ctx.needs_input_grad[1] else None
        gb = g.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return gx, gw, gb


def sparse_linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x [..., K] W^T + b`` by gather-and-add (module docstring), differentiable in ``weight``, ``bias`` and
    ``x``; CPU tensors, ``weight`` in :data:`_DTYPES`, ``x`` in its dtype or spikes as bool/uint8 (read as they
    are: no conversion pass)."""
    lead = x.shape[:-1]
    x2 = x.reshape(-1, x.shape[-1])
    if x2.dtype.is_floating_point and x2.dtype != weight.dtype:
        raise TypeError(f"sparse_linear: input {x2.dtype} and weight {weight.dtype} differ")
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad
                                    or (bias is not None and bias.requires_grad)):
        y = _SparseLinearFunction.apply(x2, weight, bias)
    else:
        y = sparse_matmul_rows(x2, weight.t().contiguous())
        if bias is not None:
            y = y + bias
    return y.reshape(*lead, weight.shape[0])


def estimate_density(x: Tensor) -> float:
    """Fraction of non-zeros of ``x`` on up to :data:`_SAMPLE_ROWS` evenly spaced rows of ``x.reshape(-1, K)``
    (all of it when it is small): cheap next to the product it decides on."""
    x2 = x.reshape(-1, x.shape[-1]) if x.dim() > 1 else x.reshape(1, -1)
    if x2.numel() == 0:
        return 0.0
    step = max(1, x2.shape[0] // _SAMPLE_ROWS)
    s = x2[::step]
    return float(torch.count_nonzero(s)) / s.numel()


def use_sparse(x: Tensor, weight: Tensor, max_density: float | None = None) -> bool:
    """Whether :func:`sparse_linear` is expected to beat the dense product on ``x``: CPU, ``weight`` in a supported
    dtype, ``x`` in it or bool/uint8, and an estimated density at most ``max_density`` (default: the weight dtype's
    :data:`SPARSE_MAX_DENSITY`)."""
    if not (x.device.type == "cpu" and weight.device.type == "cpu" and weight.dtype in _DTYPES
            and x.dtype in (weight.dtype, torch.bool, torch.uint8) and x.numel() > 0):
        return False
    limit = SPARSE_MAX_DENSITY[weight.dtype] if max_density is None else max_density
    return estimate_density(x) <= limit


def _tracing() -> bool:
    """ONNX export, TorchScript tracing or torch.compile: they need torch operations (the dense path)."""
    compiling = getattr(getattr(torch, "compiler", None), "is_compiling", lambda: False)
    return bool(torch.onnx.is_in_onnx_export() or torch.jit.is_tracing() or compiling())


def _plain(layer: nn.Module) -> bool:
    """Whether ``layer(x)`` is exactly ``F.linear(x, weight, bias)``: an ``nn.Linear`` whose forward is not replaced
    (quantisation-aware training swaps it for the deployed arithmetic, ``neuroposter.ir.qat.enable``) and that has
    no hooks."""
    return (isinstance(layer, nn.Linear) and type(layer).forward is nn.Linear.forward
            and "forward" not in layer.__dict__ and not layer._forward_hooks and not layer._forward_pre_hooks)


def spike_linear(layer: nn.Linear, x: Tensor, mode: str = DEFAULT_SPARSE_MODE) -> Tensor:
    """``layer(x)`` for a spike input ``x`` (0/1 of any dtype; converted to the layer's dtype unless bool/uint8 spikes
    go the sparse way as they are), sparse or dense by ``mode`` (:data:`SPARSE_MODES`) and the input's density
    (:func:`use_sparse`). A layer whose forward is replaced or hooked (QAT's deployed arithmetic) always runs its own
    forward.

    Raises:
        ValueError: an unknown mode (the message lists the valid ones).
    """
    if mode not in SPARSE_MODES:
        raise ValueError(f"unknown sparse-input mode {mode!r}; valid: {', '.join(SPARSE_MODES)}")
    w = layer.weight
    if x.dtype not in (w.dtype, torch.bool, torch.uint8):
        x = x.to(w.dtype)
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in layer.parameters()))
    if (mode == "off" or (mode == "inference" and needs_grad) or _tracing() or not _plain(layer)
            or not use_sparse(x, w)):
        return layer(x.to(w.dtype))
    return sparse_linear(x, w, layer.bias)


def set_sparse_input(module: nn.Module, mode: str) -> int:
    """Sets the ``sparse_input`` mode of every module inside ``module`` (itself included) that has one (the SDT and
    the spiking MLP); returns how many.

    Raises:
        ValueError: an unknown mode (the message lists the valid ones).
    """
    if mode not in SPARSE_MODES:
        raise ValueError(f"unknown sparse-input mode {mode!r}; valid: {', '.join(SPARSE_MODES)}")
    n = 0
    for m in module.modules():
        if hasattr(m, "sparse_input"):
            m.sparse_input = mode
            n += 1
    return n
