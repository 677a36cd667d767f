"""Lowering of the project's Norse models (SDT, pixel SDT, spiking MLP, chip-fitted chains) to NIR graphs.

A chip-fitted chain (:class:`~neuroposter.models.chip_snn.ChipSNN`) is a plain chain whose chip neurons lower
themselves (``to_nir``); its graph is built node by node (:func:`_chip_snn_nodes`), the host projection's
nodes marked ``metadata["placement"] = "host"`` (they run on the host CPU, in float). The SDT (also on pixels) and
the spiking MLP are traced as follows.

The models' ``forward`` runs whole sequences ``[T, B, ...]`` with a time loop and BatchNorm, which
``torch.fx`` (and so ``nirtorch.torch_to_nir``) cannot express; a NIR graph is one time step
without a batch dim. The lowering therefore builds a **per-step export view** of the model: a small
module tree with the same structure and names (``embed``, ``blocks.<i>.attn``,
``blocks.<i>.mlp.fc1``, ``head_sn``, ...) holding the model's weights with BatchNorm folded in,
whose ``forward(input, state=None) -> (output, state)`` is one time step. The view is traced by
``nirtorch.torch_to_nir`` with the project's module map:

* ``_StepLIF`` (stateful: returns ``(spikes, v)``) -> ``nir.LIF`` (see :func:`~neuroposter.ir.sdsa.lif_node`);
* ``_TokenConv`` (token-wise Linear + BN) -> ``nir.Conv1d(kernel=1)`` on channels-first ``[D, N]``;
* ``_Dense`` (Linear + BN) -> ``nir.Affine``;
* ``_StepSDSA`` (stateful leaf; its forward uses ``*``, which the tracer rejects) -> the SDSA
  sub-``NIRGraph`` of :func:`~neuroposter.ir.sdsa.sdsa_graph`;
* ``_TokenFlatten`` -> ``nir.Flatten``;

* the pixel SDT's stem (:class:`PixelSDTStepView`, paths ``stem.*``): ``_StepConv2d`` -> ``nir.Conv2d`` (BatchNorm2d
  folded), ``_StepLIF`` on ``[C, H, W]`` -> ``nir.LIF`` per pixel, ``_SumPool2d`` -> ``nir.SumPool2d`` (the model's
  ``AvgPool2d(2)``; its 1/4 is folded into the next weights, ``stem.conv2`` and ``embed``: a power of two, so the
  fold is exact), ``_MapFlatten`` -> ``nir.Flatten`` of ``[d, H/4, W/4]`` into the channels-first tokens ``[d, N]``
  the SDT's layers consume. Its graph input is the image ``[3, S, S]``, the same current at every step (direct
  encoding; ``metadata["layout"] = "images"``, :func:`to_graph_input`). A quantisation-aware pixel SDT's stem
  connections hold its on-grid weights like every other connection (:func:`_fold`); an image it was trained to
  see quantised is the graph's input contract (``metadata["input_quantization"]``, set by the exporting target,
  applied by :func:`to_graph_input`).

``stateful_modules`` covers the two stateful leaves (index 0 of their output is the signal, index 1
the ignored state) and ``concrete_args={"state": None}``. Residual ``u = u + x`` becomes fan-in
edges (NIR sums edges): the membrane shortcut. Node names are the view's module paths
(``"blocks.0.mlp.sn_hidden"``), so simulator records read ``"blocks.0.attn.and_qkv"``.

Conventions (recorded in ``graph.metadata`` and in every sub-graph's): ``dt = 1`` (one step),
``reset = "zero"``, ``threshold = "strict"``, ``integration = "forward_euler"``; a NIR reader must be given
``dt`` (:mod:`neuroposter.ir.interop`). BatchNorm (eval statistics) is folded into the preceding weights:

.. math::
    W' = \\frac{\\gamma}{\\sigma} W,\\qquad b' = \\beta - \\frac{\\gamma\\mu}{\\sigma} + \\frac{\\gamma}{\\sigma} b,
    \\qquad \\sigma = \\sqrt{\\mathrm{var} + \\epsilon}

The SDT's per-token positional bias ``P [N, d]`` enters every residual current
``U = U_0 + \\dots`` and so becomes ``v_leak = P^T`` (shape ``[d, N]``) of every LIF that reads the
residual stream (``blocks.<i>.attn.sn_in``, ``blocks.<i>.mlp.sn_in``, ``head_sn``); with ``R = 1``
a constant input ``b`` and ``v_leak = b`` give the same Euler update (exact). The readout
``logits = W mean_n(z) + b`` is ``Flatten`` + ``Affine`` with ``W'[c, i N + n] = W[c, i] / N``.
"""

from __future__ import annotations

import logging
from typing import Any

import nir
import numpy as np
import torch
from torch import Tensor, nn

from neuroposter.errors import NeuroposterError
from neuroposter.ir.graph import HOST_PLACEMENT
from neuroposter.ir.sdsa import AND_THRESHOLD, lif_node, sdsa_graph, token_conv

__all__ = ["DT", "HOST_METADATA", "lower_model", "to_graph_input", "export_view", "fold_bn", "fold_bn_tensors", "LoweringError"]

log = logging.getLogger(__name__)

DT = 1.0  # one time step; the project's neurons are discrete with tau in steps


class LoweringError(NeuroposterError):
    """A model (or part of it) cannot be lowered to NIR."""


def fold_bn(weight: Tensor, bias: Tensor | None, bn: nn.modules.batchnorm._BatchNorm | None
            ) -> tuple[np.ndarray, np.ndarray]:
    """Folds eval-mode BatchNorm into the preceding Linear or convolution (float64).

    Args:
        weight: ``[out, in]`` (Linear) or ``[out, in, *kernel]`` (a convolution).
        bias: ``[out]`` or None.
        bn: the BatchNorm1d (after a Linear or Conv1d) or BatchNorm2d (after a Conv2d) over the ``out`` channels
            (None: no folding).

    Returns:
        ``(W' [out, ...], b' [out])`` as float64 numpy arrays; ``W'`` scales each output channel's weights.
    """
    with torch.no_grad():
        w, b = fold_bn_tensors(weight, bias, bn)
    return w.cpu().numpy(), b.cpu().numpy()


def fold_bn_tensors(weight: Tensor, bias: Tensor | None, bn: nn.modules.batchnorm._BatchNorm | None
                    ) -> tuple[Tensor, Tensor]:
    """:func:`fold_bn` as float64 tensors, differentiable in the Linear's and BatchNorm's parameters (the running
    statistics are constants); quantisation-aware training folds with it, so its weights are the exported ones.

    Raises:
        LoweringError: a BatchNorm without running statistics.
    """
    w = weight.to(torch.float64)
    b = torch.zeros(w.shape[0], dtype=torch.float64, device=w.device) if bias is None else bias.to(torch.float64)
    if bn is None:
        return w, b
    if not bn.track_running_stats or bn.running_mean is None:
        raise LoweringError("BatchNorm without running statistics cannot be folded")
    sigma = torch.sqrt(bn.running_var.detach().to(torch.float64) + bn.eps)
    gamma = bn.weight.to(torch.float64) if bn.affine else torch.ones_like(sigma)
    beta = bn.bias.to(torch.float64) if bn.affine else torch.zeros_like(sigma)
    g = gamma / sigma
    return g.reshape(-1, *([1] * (w.dim() - 1))) * w, beta - g * bn.running_mean.detach().to(torch.float64) + g * b


def _fold(linear: nn.Linear | nn.Conv2d, bn: nn.modules.batchnorm._BatchNorm | None, div: int = 1
          ) -> tuple[np.ndarray, np.ndarray]:
    """The deployed ``(W' / div, b')`` of a connection (a Linear, or a Conv2d of the pixel SDT's stem):
    :func:`fold_bn`, or -- for a model trained with a target's arithmetic (:func:`neuroposter.ir.qat.enable`) --
    the weights on that target's grid the model computes with, ``Q(W'/div)``, so the graph holds what was trained."""
    from neuroposter.ir.qat import deployed_connection

    qat = deployed_connection(linear, bn, div)
    if qat is not None:
        return qat
    w, b = fold_bn(linear.weight, linear.bias, bn)
    return (w / div if div != 1 else w), b


# ---------------------------------------------------------------------------------------------
# the per-step export view


class _StepLIF(nn.Module):
    """One step of the project's LIF, ``v <- v + ((x + bias) - v)/tau``, ``z = [v > v_th]``, reset to 0.

    Stateful: ``forward(x, state) -> (z, v)``.
    """

    def __init__(self, shape: tuple[int, ...], tau: float, v_th: float, bias: np.ndarray | None = None,
                 role: str = "") -> None:
        super().__init__()
        self.shape = tuple(int(s) for s in shape)
        self.tau, self.v_th, self.role = float(tau), float(v_th), role
        b = np.zeros(self.shape) if bias is None else np.asarray(bias, dtype=np.float64).reshape(self.shape)
        self.register_buffer("bias", torch.as_tensor(b, dtype=torch.float64))

    def forward(self, x: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        v = torch.zeros_like(x) if state is None else state
        v = v + (DT / self.tau) * ((x + self.bias.to(x.dtype)) - v)
        z = v > self.v_th
        return z.to(x.dtype), torch.where(z, torch.zeros_like(v), v)


class _TokenConv(nn.Module):
    """Token-wise Linear (+ folded BN) on channels-first tokens ``[B, D_in, N] -> [B, D_out, N]``."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray, n_tokens: int) -> None:
        super().__init__()
        self.n_tokens = int(n_tokens)
        self.register_buffer("weight", torch.as_tensor(weight, dtype=torch.float64))
        self.register_buffer("bias", torch.as_tensor(bias, dtype=torch.float64))

    def forward(self, x: Tensor) -> Tensor:
        return torch.einsum("oi,bin->bon", self.weight.to(x.dtype), x) + self.bias.to(x.dtype)[:, None]


class _Dense(nn.Module):
    """Linear (+ folded BN) ``[B, in] -> [B, out]``."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("weight", torch.as_tensor(weight, dtype=torch.float64))
        self.register_buffer("bias", torch.as_tensor(bias, dtype=torch.float64))

    def forward(self, x: Tensor) -> Tensor:
        return x @ self.weight.to(x.dtype).T + self.bias.to(x.dtype)


class _TokenFlatten(nn.Module):
    """``[B, D, N] -> [B, D*N]`` (row-major: index ``d*N + n``)."""

    def __init__(self, dim: int, n_tokens: int) -> None:
        super().__init__()
        self.dim, self.n_tokens = int(dim), int(n_tokens)

    def forward(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], -1)


class _StepConv2d(nn.Module):
    """A 3x3 (any kernel) convolution (+ folded BN) on one step's maps ``[B, C_in, H, W] -> [B, C_out, H', W']``."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray, input_hw: tuple[int, int], padding: int,
                 stride: int = 1) -> None:
        super().__init__()
        self.input_hw = (int(input_hw[0]), int(input_hw[1]))
        self.padding, self.stride = int(padding), int(stride)
        self.register_buffer("weight", torch.as_tensor(weight, dtype=torch.float64))
        self.register_buffer("bias", torch.as_tensor(bias, dtype=torch.float64))

    def forward(self, x: Tensor) -> Tensor:
        return torch.nn.functional.conv2d(x, self.weight.to(x.dtype), self.bias.to(x.dtype), self.stride,
                                          self.padding)


class _SumPool2d(nn.Module):
    """Sum over ``k x k`` windows (stride ``k``): the model's ``AvgPool2d(k)`` without its ``1/k^2``, which the
    lowering folds into the weights that follow."""

    def __init__(self, kernel: int) -> None:
        super().__init__()
        self.kernel = int(kernel)

    def forward(self, x: Tensor) -> Tensor:
        return torch.nn.functional.avg_pool2d(x, self.kernel, self.kernel, divisor_override=1)


class _MapFlatten(nn.Module):
    """``[B, D, H, W] -> [B, D, H*W]``: feature maps as channels-first tokens (``n = i W + j``, row-major)."""

    def __init__(self, dim: int, hw: tuple[int, int]) -> None:
        super().__init__()
        self.dim, self.hw = int(dim), (int(hw[0]), int(hw[1]))

    def forward(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], x.shape[1], -1)


class _StepSDSA(nn.Module):
    """One step of SDSA with its input neuron (a stateful leaf lowered to a sub-graph)."""

    def __init__(self, attn: nn.Module, *, n_tokens: int, tau: float, v_th: float, kv_v_th: float,
                 heads: int, sn_in_bias: np.ndarray | None) -> None:
        super().__init__()
        d = int(attn.dim)
        self.dim, self.n_tokens, self.heads = d, int(n_tokens), int(heads)
        self.tau, self.v_th, self.kv_v_th = float(tau), float(v_th), float(kv_v_th)
        shape = (d, self.n_tokens)
        self.sn_in = _StepLIF(shape, tau, v_th, sn_in_bias)
        for name in ("q", "k", "v"):
            setattr(self, name, _TokenConv(*_fold(getattr(attn, name), getattr(attn, f"{name}_bn")), n_tokens))
            setattr(self, f"{name}_sn", _StepLIF(shape, tau, v_th))
        self.kv_sn = _StepLIF((d, 1), tau, kv_v_th, role="or")
        self.proj = _TokenConv(*_fold(attn.proj, attn.proj_bn), n_tokens)

    def forward(self, u: Tensor, state: dict[str, Tensor] | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        st = state or {}
        new: dict[str, Tensor] = {}
        s, new["sn_in"] = self.sn_in(u, st.get("sn_in"))
        q, new["q_sn"] = self.q_sn(self.q(s), st.get("q_sn"))
        k, new["k_sn"] = self.k_sn(self.k(s), st.get("k_sn"))
        v, new["v_sn"] = self.v_sn(self.v(s), st.get("v_sn"))
        and_kv = ((k + v) > AND_THRESHOLD).to(u.dtype)
        kv, new["kv_sn"] = self.kv_sn(and_kv.sum(dim=-1, keepdim=True), st.get("kv_sn"))
        and_qkv = ((q + kv) > AND_THRESHOLD).to(u.dtype)
        return self.proj(and_qkv), new


class _StepMLP(nn.Module):
    """One step of the block's spiking MLP (traced through: its leaves become NIR nodes)."""

    def __init__(self, mlp: nn.Module, *, n_tokens: int, d_model: int, tau: float, v_th: float,
                 sn_in_bias: np.ndarray | None) -> None:
        super().__init__()
        hidden = int(mlp.fc1.out_features)
        self.sn_in = _StepLIF((d_model, n_tokens), tau, v_th, sn_in_bias)
        self.fc1 = _TokenConv(*_fold(mlp.fc1, mlp.fc1_bn), n_tokens)
        self.sn_hidden = _StepLIF((hidden, n_tokens), tau, v_th)
        self.fc2 = _TokenConv(*_fold(mlp.fc2, mlp.fc2_bn), n_tokens)

    def forward(self, u: Tensor, state: dict[str, Tensor] | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        st = state or {}
        a = self.sn_in(u, st.get("sn_in"))
        h = self.sn_hidden(self.fc1(a[0]), st.get("sn_hidden"))
        return self.fc2(h[0]), {"sn_in": a[1], "sn_hidden": h[1]}


class _StepBlock(nn.Module):
    """Holds ``attn`` and ``mlp`` so that node paths read ``blocks.<i>.attn`` / ``blocks.<i>.mlp.*``."""

    def __init__(self, attn: _StepSDSA, mlp: _StepMLP) -> None:
        super().__init__()
        self.attn, self.mlp = attn, mlp


class SDTStepView(nn.Module):
    """Per-step export view of :class:`~neuroposter.models.sdt.SpikeDrivenTransformer`.

    ``forward(input [B, D_in, N], state=None) -> (logits [B, C], state)``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        cfg = model.cfg
        n, d = int(cfg.n_tokens), int(cfg.d_model)
        self.n_tokens, self.d_model, self.n_classes = n, d, int(cfg.n_classes)
        pos = model.pos_bias.detach().double().cpu().numpy().T.copy()  # [d, N]
        self.embed = _TokenConv(*_fold(model.embed, model.embed_bn), n)
        self.blocks = nn.ModuleList(
            _StepBlock(
                _StepSDSA(blk.attn, n_tokens=n, tau=cfg.tau, v_th=cfg.v_th, kv_v_th=cfg.kv_v_th, heads=cfg.heads,
                          sn_in_bias=pos),
                _StepMLP(blk.mlp, n_tokens=n, d_model=d, tau=cfg.tau, v_th=cfg.v_th, sn_in_bias=pos),
            )
            for blk in model.blocks
        )
        self.head_sn = _StepLIF((d, n), cfg.tau, cfg.v_th, pos)
        self.head_flatten = _TokenFlatten(d, n)
        w, b = _fold(model.head, None, div=n)
        self.head = _Dense(np.repeat(w, n, axis=1), b)  # W'[c, i*N + n] = W[c, i] / N

    def forward(self, input: Tensor, state: dict[str, Any] | None = None) -> tuple[Tensor, dict[str, Any]]:  # noqa: A002
        prev = {} if state is None else state
        return self._blocks_and_head(self.embed(input), prev, {})

    def _blocks_and_head(self, u: Tensor, prev: dict[str, Any], new: dict[str, Any]) -> tuple[Tensor, dict[str, Any]]:
        """The SDT blocks and the read-out from the embedded tokens ``U_0 [B, d, N]``."""
        for i, blk in enumerate(self.blocks):
            a = blk.attn(u, prev.get(f"blocks.{i}.attn"))
            new[f"blocks.{i}.attn"] = a[1]
            u = u + a[0]
            m, new[f"blocks.{i}.mlp"] = blk.mlp(u, prev.get(f"blocks.{i}.mlp"))
            u = u + m
        z = self.head_sn(u, prev.get("head_sn"))
        new["head_sn"] = z[1]
        return self.head(self.head_flatten(z[0])), new


class _StepStem(nn.Module):
    """One step of :class:`~neuroposter.models.sdt_pixels.SpikingStem` (node paths ``stem.conv1``, ``stem.sn1``,
    ``stem.pool1``, ...); BatchNorm folded, ``pool1``'s 1/4 folded into ``conv2``."""

    def __init__(self, stem: nn.Module, *, tau: float, v_th: float) -> None:
        super().__init__()
        S = int(stem.image_size)
        c1, d = int(stem.conv1.out_channels), int(stem.conv2.out_channels)
        for conv in (stem.conv1, stem.conv2):
            if tuple(conv.kernel_size) != (3, 3) or tuple(conv.stride) != (1, 1) or tuple(conv.padding) != (1, 1) \
                    or conv.groups != 1 or tuple(conv.dilation) != (1, 1):
                raise LoweringError(f"the stem's convolutions must be 3x3, stride 1, padding 1; got {conv}")
        for pool in (stem.pool1, stem.pool2):
            k = pool.kernel_size if isinstance(pool.kernel_size, int) else pool.kernel_size[0]
            if not isinstance(pool, nn.AvgPool2d) or k != 2 or (pool.stride or k) not in (2, (2, 2)) or pool.padding:
                raise LoweringError(f"the stem's poolings must be AvgPool2d(2); got {pool}")
        # _fold: BatchNorm2d folded, or for a quantisation-aware model the on-grid weights its forward computes with
        # (pool1's 1/4 inside the grid, Q(W'/4), as the model's stem.conv2 connection has div = 4)
        self.conv1 = _StepConv2d(*_fold(stem.conv1, stem.bn1), (S, S), 1)
        self.sn1 = _StepLIF((c1, S, S), tau, v_th)
        self.pool1 = _SumPool2d(2)
        self.conv2 = _StepConv2d(*_fold(stem.conv2, stem.bn2, div=4), (S // 2, S // 2), 1)   # AvgPool's 1/4: exact
        self.sn2 = _StepLIF((d, S // 2, S // 2), tau, v_th)
        self.pool2 = _SumPool2d(2)
        self.flatten = _MapFlatten(d, (S // 4, S // 4))


class PixelSDTStepView(SDTStepView):
    """Per-step export view of :class:`~neuroposter.models.sdt_pixels.PixelSDT`: the stem, then the SDT's view.

    ``forward(input [B, 3, S, S], state=None) -> (logits [B, C], state)``; ``pool2``'s 1/4 is folded into ``embed``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        cfg = model.cfg
        self.stem = _StepStem(model.stem, tau=cfg.tau, v_th=cfg.v_th)
        # AvgPool's 1/4 (exact): Q(W'/4) on a quantisation-aware model, as its embed connection (div = 4) computes
        self.embed = _TokenConv(*_fold(model.embed, model.embed_bn, div=4), int(cfg.n_tokens))

    def forward(self, input: Tensor, state: dict[str, Any] | None = None) -> tuple[Tensor, dict[str, Any]]:  # noqa: A002
        prev = {} if state is None else state
        new: dict[str, Any] = {}
        st = self.stem
        s1 = st.sn1(st.conv1(input), prev.get("stem.sn1"))
        new["stem.sn1"] = s1[1]
        s2 = st.sn2(st.conv2(st.pool1(s1[0])), prev.get("stem.sn2"))
        new["stem.sn2"] = s2[1]
        return self._blocks_and_head(self.embed(st.flatten(st.pool2(s2[0]))), prev, new)


class _StepFrontEnd(nn.Module):
    """One step of :class:`~neuroposter.models.sdt_frontend.TokenFrontEnd` (node paths ``stem.conv<i>``,
    ``stem.sn<i>``, ``stem.pool<i>``, ``stem.flatten``, ``stem.proj``, ``stem.proj_sn``): BatchNorm folded, each
    pool's 1/4 folded into the next synapse (``stem.conv<i+1>``, the last one into ``stem.proj``); the projection is a
    token-wise ``Conv1d`` (kernel 1) on the channels-first tokens, its LIF emits the SDT's input spikes ``[D, N]``."""

    def __init__(self, stem: nn.Module, *, tau: float, v_th: float) -> None:
        super().__init__()
        H, W = (int(v) for v in stem.image_hw)
        self.n_stages = int(stem.n_stages)
        for i in range(1, self.n_stages + 1):
            conv, pool = getattr(stem, f"conv{i}"), getattr(stem, f"pool{i}")
            if tuple(conv.kernel_size) != (3, 3) or tuple(conv.stride) != (1, 1) or tuple(conv.padding) != (1, 1) \
                    or conv.groups != 1 or tuple(conv.dilation) != (1, 1):
                raise LoweringError(f"the front end's convolutions must be 3x3, stride 1, padding 1; got {conv}")
            k = pool.kernel_size if isinstance(pool.kernel_size, int) else pool.kernel_size[0]
            if not isinstance(pool, nn.AvgPool2d) or k != 2 or (pool.stride or k) not in (2, (2, 2)) or pool.padding:
                raise LoweringError(f"the front end's poolings must be AvgPool2d(2); got {pool}")
            w, b = fold_bn(conv.weight, conv.bias, getattr(stem, f"bn{i}"))
            h, wd = H >> (i - 1), W >> (i - 1)
            # the previous AvgPool's 1/4 is a power of two: folding it into these weights is exact
            setattr(self, f"conv{i}", _StepConv2d(w if i == 1 else w / 4.0, b, (h, wd), 1))
            setattr(self, f"sn{i}", _StepLIF((int(conv.out_channels), h, wd), tau, v_th))
            setattr(self, f"pool{i}", _SumPool2d(2))
        gh, gw = H >> self.n_stages, W >> self.n_stages
        self.n_tokens = gh * gw
        self.flatten = _MapFlatten(int(stem.widths[-1]), (gh, gw))
        wp, bp = _fold(stem.proj, stem.proj_bn)
        self.proj = _TokenConv(wp / 4.0, bp, self.n_tokens)
        self.proj_sn = _StepLIF((int(stem.d_out), self.n_tokens), tau, v_th)


class FrontendSDTStepView(SDTStepView):
    """Per-step export view of :class:`~neuroposter.models.sdt_frontend.FrontendSDT`: the spiking front end, then
    the (unchanged) SDT's view on its spikes. ``forward(input [B, 3, H, W], state=None) -> (logits [B, C], state)``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        cfg = model.cfg
        self.stem = _StepFrontEnd(model.stem, tau=cfg.tau, v_th=cfg.v_th)

    def forward(self, input: Tensor, state: dict[str, Any] | None = None) -> tuple[Tensor, dict[str, Any]]:  # noqa: A002
        prev = {} if state is None else state
        new: dict[str, Any] = {}
        st = self.stem
        x = input
        for i in range(1, st.n_stages + 1):
            z = getattr(st, f"sn{i}")(getattr(st, f"conv{i}")(x), prev.get(f"stem.sn{i}"))
            new[f"stem.sn{i}"] = z[1]
            x = getattr(st, f"pool{i}")(z[0])
        z = st.proj_sn(st.proj(st.flatten(x)), prev.get("stem.proj_sn"))
        new["stem.proj_sn"] = z[1]
        return self._blocks_and_head(self.embed(z[0]), prev, new)


class MLPStepView(nn.Module):
    """Per-step export view of :class:`~neuroposter.models.snn_mlp.SpikingMLPNet`.

    ``forward(input [B, D_in], state=None) -> (logits [B, C], state)``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        cfg = model.cfg
        self.n_classes = int(cfg.n_classes)
        self.fc1 = _Dense(*_fold(model.fc1, model.fc1_bn))
        self.sn1 = _StepLIF((int(model.fc1.out_features),), cfg.tau, cfg.v_th)
        self.fc2 = _Dense(*_fold(model.fc2, model.fc2_bn))
        self.sn2 = _StepLIF((int(model.fc2.out_features),), cfg.tau, cfg.v_th)
        self.head = _Dense(*_fold(model.head, None))

    def forward(self, input: Tensor, state: dict[str, Any] | None = None) -> tuple[Tensor, dict[str, Any]]:  # noqa: A002
        prev = {} if state is None else state
        h1 = self.sn1(self.fc1(input), prev.get("sn1"))
        h2 = self.sn2(self.fc2(h1[0]), prev.get("sn2"))
        return self.head(h2[0]), {"sn1": h1[1], "sn2": h2[1]}


# ---------------------------------------------------------------------------------------------
# module map


def _np(t: Tensor, dtype: np.dtype) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().numpy().astype(dtype))


def _module_map(dtype: np.dtype) -> dict[type, Any]:
    def bias_of(m: _StepLIF) -> np.ndarray | None:
        return m.bias.numpy() if bool(m.bias.abs().sum() > 0) else None

    def lif(m: _StepLIF) -> nir.NIRNode:
        meta = {"role": m.role} if m.role else {}
        return lif_node(m.shape, tau_steps=m.tau, v_th=m.v_th, dt=DT, v_leak=bias_of(m), metadata=meta, dtype=dtype)

    def tconv(m: _TokenConv) -> nir.NIRNode:
        return token_conv(m.weight.numpy(), m.bias.numpy(), m.n_tokens, dtype=dtype)

    def dense(m: _Dense) -> nir.NIRNode:
        return nir.Affine(weight=_np(m.weight, dtype), bias=_np(m.bias, dtype))

    def flat(m: _TokenFlatten) -> nir.NIRNode:
        # negative dims: the same axes in NIR (no batch dim) and in torch consumers (batch dim in front)
        return nir.Flatten(input_type=np.array([m.dim, m.n_tokens]), start_dim=-2, end_dim=-1)

    def sdsa(m: _StepSDSA) -> nir.NIRNode:
        def wb(c: _TokenConv) -> tuple[np.ndarray, np.ndarray]:
            return c.weight.numpy(), c.bias.numpy()

        return sdsa_graph(n_tokens=m.n_tokens, dim=m.dim, heads=m.heads, q=wb(m.q), k=wb(m.k), v=wb(m.v),
                          proj=wb(m.proj), tau_steps=m.tau, v_th=m.v_th, kv_v_th=m.kv_v_th, dt=DT,
                          sn_in_bias=bias_of(m.sn_in), dtype=dtype)

    def conv2d(m: _StepConv2d) -> nir.NIRNode:
        return nir.Conv2d(input_shape=m.input_hw, weight=_np(m.weight, dtype), stride=m.stride, padding=m.padding,
                          dilation=1, groups=1, bias=_np(m.bias, dtype))

    def sumpool(m: _SumPool2d) -> nir.NIRNode:
        k = np.array([m.kernel, m.kernel])
        return nir.SumPool2d(kernel_size=k, stride=k.copy(), padding=np.array([0, 0]))

    def map_flat(m: _MapFlatten) -> nir.NIRNode:
        return nir.Flatten(input_type=np.array([m.dim, *m.hw]), start_dim=-2, end_dim=-1)

    return {_StepLIF: lif, _TokenConv: tconv, _Dense: dense, _TokenFlatten: flat, _StepSDSA: sdsa,
            _StepConv2d: conv2d, _SumPool2d: sumpool, _MapFlatten: map_flat}


def _model_kind(model: nn.Module) -> str:
    name = type(model).__name__
    if name == "SpikeDrivenTransformer":
        return "sdt"
    if name == "PixelSDT":
        return "sdt-pixels"
    if name == "FrontendSDT":
        return "sdt-frontend"
    if name == "SpikingMLPNet":
        return "snn-mlp"
    if name == "ChipSNN":
        return "chip-snn"
    if name == "ChipCNN":
        return "chip-cnn"
    raise LoweringError(f"cannot lower a {name} to NIR; supported: SpikeDrivenTransformer (sdt), "
                        "PixelSDT (sdt-pixels), SpikingMLPNet (snn-mlp), ChipSNN (chip-snn)")


# ---------------------------------------------------------------------------------------------
# chip-fitted chains: built node by node (each chip neuron lowers itself)

#: node metadata of the nodes that run on the host CPU, not on the chip (the host projection of a fitted model)
HOST_METADATA = {"placement": HOST_PLACEMENT}


def _cast(node: nir.NIRNode, dtype: np.dtype) -> nir.NIRNode:
    """``node`` with its float array parameters in ``dtype`` (in place; returned)."""
    for k, v in list(vars(node).items()):
        if isinstance(v, np.ndarray) and v.dtype.kind == "f":
            setattr(node, k, np.ascontiguousarray(v.astype(dtype)))
    return node


def _chip_snn_nodes(model: nn.Module, dtype: np.dtype) -> tuple[dict[str, nir.NIRNode], list[tuple[str, str]]]:
    """The nodes and edges of a :class:`~neuroposter.models.chip_snn.ChipSNN`: a chain
    ``input -> [host -> host_sn] -> (layers.<i>.fc -> layers.<i>.sn)* -> head -> output``.

    BatchNorm is folded (:func:`_fold`, the target's grid when trained with its arithmetic); the host
    projection's two nodes carry ``metadata["placement"] = "host"`` (:data:`HOST_METADATA`) and its LIF is
    :func:`~neuroposter.ir.sdsa.lif_node`; every chip neuron is its module's ``to_nir``.
    """
    cfg = model.cfg

    def affine(lin: nn.Linear, bn: nn.BatchNorm1d | None, meta: dict[str, Any] | None = None, *,
               biased: bool = True) -> nir.Affine | nir.Linear:
        w, b = _fold(lin, bn)
        if not biased:   # a chip whose synapses have no bias (ChipLayer with ScaleNorm1d: b is 0): a plain Linear
            if np.any(b != 0):
                raise LoweringError(f"{lin}: a bias-free chip connection folded to a non-zero bias")
            return nir.Linear(weight=np.ascontiguousarray(w.astype(dtype)), metadata=dict(meta or {}))
        return nir.Affine(weight=np.ascontiguousarray(w.astype(dtype)), bias=np.ascontiguousarray(b.astype(dtype)),
                          metadata=dict(meta or {}))

    nodes: dict[str, nir.NIRNode] = {"input": nir.Input(input_type=np.array([int(cfg.d_in)]))}
    if cfg.host_dim:
        nodes["host"] = affine(model.host, model.host_bn, HOST_METADATA)
        nodes["host_sn"] = lif_node((int(cfg.host_dim),), tau_steps=model.host_sn.tau, v_th=model.host_sn.v_th,
                                    dt=DT, metadata=dict(HOST_METADATA), dtype=dtype)
    for i, layer in enumerate(model.layers):
        nodes[f"layers.{i}.fc"] = affine(layer.fc, layer.bn, biased=layer.synapse_bias)
        sn = layer.sn.to_nir((int(layer.fc.out_features),))
        nodes[f"layers.{i}.sn"] = _cast(sn, dtype)
    nodes["head"] = affine(model.head, None)
    nodes["output"] = nir.Output(output_type=np.array([int(cfg.n_classes)]))
    order = list(nodes)
    return nodes, list(zip(order, order[1:]))


def _chip_cnn_nodes(model: nn.Module, dtype: np.dtype) -> tuple[dict[str, nir.NIRNode], list[tuple[str, str]]]:
    """The nodes and edges of a :class:`~neuroposter.models.chip_cnn.ChipCNN`: a chain ``input [3, S, S] ->
    (convs.<i>.conv -> convs.<i>.sn -> [convs.<i>.pool]) * -> flatten -> head -> output``.

    ``nir.Conv2d`` with BatchNorm2d folded (:func:`_fold`: the chip's grid when trained with its arithmetic), the
    chip neuron's own ``to_nir`` on ``[C, H, W]``, ``nir.SumPool2d`` (the model sums its pools: nothing to fold),
    ``nir.Flatten`` of the last map and the read-out ``nir.Affine``. The first ``host_layers`` layers' nodes carry
    ``metadata["placement"] = "host"`` (:data:`HOST_METADATA`).
    """
    S = int(model.image_size)
    nodes: dict[str, nir.NIRNode] = {"input": nir.Input(input_type=np.array([int(model.in_channels), S, S]))}
    side = S
    for i, block in enumerate(model.convs):
        meta = dict(HOST_METADATA) if i < int(model.host_layers) else {}
        w, b = _fold(block.conv, block.bn)
        k = int(block.conv.kernel_size[0])
        nodes[f"convs.{i}.conv"] = nir.Conv2d(input_shape=(side, side), weight=np.ascontiguousarray(w.astype(dtype)),
                                              stride=1, padding=k // 2, dilation=1, groups=1,
                                              bias=np.ascontiguousarray(b.astype(dtype)), metadata=meta)
        c = int(block.conv.out_channels)
        sn = _cast(block.sn.to_nir((c, side, side)), dtype)
        sn.metadata = {**dict(sn.metadata or {}), **meta}
        nodes[f"convs.{i}.sn"] = sn
        if block.pool.kernel > 1:
            kk = np.array([block.pool.kernel, block.pool.kernel])
            nodes[f"convs.{i}.pool"] = nir.SumPool2d(kernel_size=kk, stride=kk.copy(), padding=np.array([0, 0]),
                                                     metadata=dict(meta))
            side //= block.pool.kernel
    c, h, w_ = (int(v) for v in model.out_shape)
    nodes["flatten"] = nir.Flatten(input_type=np.array([c, h, w_]), start_dim=0, end_dim=-1)
    wh, bh = _fold(model.head, None)
    nodes["head"] = nir.Affine(weight=np.ascontiguousarray(wh.astype(dtype)),
                               bias=np.ascontiguousarray(bh.astype(dtype)))
    nodes["output"] = nir.Output(output_type=np.array([int(model.n_classes)]))
    order = list(nodes)
    return nodes, list(zip(order, order[1:]))


def export_view(model: nn.Module) -> nn.Module:
    """The per-step export view of ``model`` (BN folded, float64 buffers, eval semantics).

    Raises:
        LoweringError: a model without one (a chip-fitted chain is lowered node by node).
    """
    kind = _model_kind(model)
    if kind in ("chip-snn", "chip-cnn"):
        raise LoweringError(f"a {kind} has no per-step export view: lower_model builds its graph node by node")
    if model.training:
        log.warning("lowering a model in training mode: BatchNorm is folded with its running statistics")
    with torch.no_grad():
        views = {"sdt": SDTStepView, "sdt-pixels": PixelSDTStepView, "sdt-frontend": FrontendSDTStepView,
                 "snn-mlp": MLPStepView}
        return views[kind](model)


def lower_model(model: nn.Module, *, T: int, source_run: str | None = None,
                dtype: str = "float64") -> nir.NIRGraph:
    """Lowers an SDT, a spiking MLP or a chip-fitted chain to a type-checked NIR graph (one time step).

    Args:
        model: a :class:`SpikeDrivenTransformer`, :class:`SpikingMLPNet` or :class:`ChipSNN` (eval statistics
            are used).
        T: time steps per sample the model was trained with (recorded; the graph is one step).
        source_run: the run folder or name it came from (recorded).
        dtype: parameter dtype in the graph (``"float64"``, default: the folded weights exactly; or
            ``"float32"``).

    Returns:
        The ``nir.NIRGraph``; node names are module paths (see the module docstring); ``metadata``
        holds ``dt``, ``reset``, ``threshold``, ``model``, ``T``, ``source_run``, ``n_classes``,
        ``layout`` and the LIF convention.
    """
    np_dtype = {"float64": np.float64, "float32": np.float32}.get(dtype)
    if np_dtype is None:
        raise LoweringError(f"dtype must be float64 or float32, got {dtype!r}")
    kind = _model_kind(model)
    if kind == "chip-snn":
        if model.training:
            log.warning("lowering a model in training mode: BatchNorm is folded with its running statistics")
        with torch.no_grad():
            nodes, edges = _chip_snn_nodes(model, np.dtype(np_dtype))
    elif kind == "chip-cnn":
        if model.training:
            log.warning("lowering a model in training mode: BatchNorm is folded with its running statistics")
        with torch.no_grad():
            nodes, edges = _chip_cnn_nodes(model, np.dtype(np_dtype))
    else:
        nodes, edges = _traced_nodes(model, kind, np.dtype(np_dtype))
    cfg = model.cfg
    meta: dict[str, Any] = {
        "producer": "neuroposter",
        "model": kind,
        "source_run": str(source_run or ""),
        "T": int(T),
        "n_classes": int(cfg.n_classes),
        "dt": float(DT),
        "time_unit": "step",
        "reset": "zero",
        "threshold": "strict",
        "lif": "forward Euler: v += dt/tau*((r*I + v_leak) - v); z = v > v_threshold; v = v_reset where z; "
               "tau = tau_steps*dt (Norse LIFBoxCell, dt = 1)",
        "tau_steps": float(cfg.tau),
        "integration": "forward_euler",
        "consumers": "give NIR readers dt = metadata['dt'] (1 step), e.g. norse.torch.from_nir(graph, dt=1.0); "
                     "see neuroposter.ir.interop",
        "layout": {"sdt": "channels_first_tokens", "sdt-pixels": "images", "chip-cnn": "images",
                   "sdt-frontend": "images"}.get(kind, "flat"),
        "output": "readout currents (logits) per step; prediction = mean over steps",
    }
    if kind == "chip-snn":
        meta.update({"chip": str(cfg.chip), "neuron": str(cfg.neuron), "host_dim": int(cfg.host_dim),
                     "widths": [int(w) for w in cfg.widths],
                     "placement": "nodes with metadata placement = host (the host projection) run on the host CPU; "
                                  "the others on the chip"})
    if kind == "chip-cnn":
        meta.update({"chip": str(model.chip), "neuron": str(model.neuron), "image_size": int(model.image_size),
                     "convs": [list(c) for c in model.conv_spec], "host_layers": int(model.host_layers),
                     "encoding": "direct", "pooling": "SumPool2d (the model sums its 2x2 windows)",
                     "input": "the image [3, S, S] (ImageNet-normalised) is the input current at every step",
                     "placement": "nodes with metadata placement = host (the first host_layers layers) run on the "
                                  "host CPU; the others on the chip"})
    if kind in ("sdt", "sdt-pixels", "sdt-frontend"):
        meta.update({"n_tokens": int(cfg.n_tokens), "d_model": int(cfg.d_model), "depth": int(cfg.depth),
                     "heads": int(cfg.heads), "kv_v_th": float(cfg.kv_v_th), "positional_bias": "v_leak"})
    if kind == "sdt-pixels":
        meta.update({"image_size": int(model.image_size), "c1": int(model.c1), "encoding": "direct",
                     "input": "the image [3, S, S] (ImageNet-normalised) is the input current at every step",
                     "pooling": "SumPool2d; the model's AvgPool2d 1/4 is folded into the next weights "
                                "(stem.conv2, embed)"})
        from neuroposter.ir.qat import input_amax_of   # the input range trained with (QAT): the export's too
        meta.update({} if input_amax_of(model) is None else {"input_amax": input_amax_of(model)})
    if kind == "sdt-frontend":
        meta.update({"image_size": [int(v) for v in model.image_size], "grid": [int(v) for v in model.grid],
                     "widths": [int(v) for v in model.widths], "encoding": "direct",
                     "input": "the image [3, H, W] (ImageNet-normalised) is the input current at every step",
                     "frontend": "spiking conv front end (stem.*) emitting the SDT's token spikes [D, N] "
                                 "(stem.proj_sn); the SDT is the sdt run's, unchanged",
                     "head_run": str(model.head_run),
                     "pooling": "SumPool2d; the model's AvgPool2d 1/4 is folded into the next weights "
                                "(stem.conv<i+1>, stem.proj)"})
    for sub in nodes.values():   # each sub-graph states the time convention too (readers may load it alone)
        if isinstance(sub, nir.NIRGraph):
            sub.metadata = {**dict(sub.metadata or {}),
                            **{k: meta[k] for k in ("dt", "time_unit", "reset", "threshold", "integration")}}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta, type_check=True)


def _traced_nodes(model: nn.Module, kind: str, np_dtype: np.dtype
                  ) -> tuple[dict[str, nir.NIRNode], list[tuple[str, str]]]:
    """The nodes (named by module path) and ordered edges of an SDT's or spiking MLP's export view, traced by
    ``nirtorch`` with the project's module map."""
    import nirtorch
    from nirtorch.torch_tracer import NIRTorchTracer

    view = export_view(model)
    mmap = _module_map(np_dtype)
    stateful = {_StepLIF, _StepSDSA}
    concrete = {"state": None}
    try:
        traced = nirtorch.torch_to_nir(view, mmap, stateful_modules=stateful, concrete_args=concrete)
    except Exception as exc:  # noqa: BLE001 - the tracer raises ValueError/KeyError/TraceError
        raise LoweringError(f"nirtorch could not trace the {kind} export view: {type(exc).__name__}: {exc}") from exc
    # Rename fx node names (blocks_0_attn) to module paths (blocks.0.attn).
    fx_graph = NIRTorchTracer(tuple(mmap)).trace(view, concrete_args=concrete)
    names = {n.name: str(n.target) for n in fx_graph.nodes if n.op == "call_module"}
    names.update({n.name: "input" for n in fx_graph.nodes if n.op == "placeholder" and n.name in traced.nodes})
    nodes = {names.get(k, k): v for k, v in traced.nodes.items()}
    for k, v in list(nodes.items()):
        if isinstance(v, nir.Input):  # nirtorch 2.6 copies the follower's {"input": ...} into output_type
            nodes[k] = nir.Input(input_type=np.asarray(next(iter(v.input_type.values()))).copy())
    edges = [(names.get(a, a), names.get(b, b)) for a, b in traced.edges]
    # nirtorch collects users in sets: order the edges by graph order (deterministic files, and the
    # fan-in sum in the order the model adds the residual currents).
    rank = {k: i for i, k in enumerate(nodes)}
    edges = sorted(dict.fromkeys(edges), key=lambda e: (rank[e[1]], rank[e[0]]))
    return nodes, edges


def to_graph_input(spikes: Tensor | np.ndarray, graph: nir.NIRGraph) -> np.ndarray:
    """Converts model input spikes ``[T, B, N, D]`` to the graph's input layout.

    ``channels_first_tokens``: ``[T, B, D, N]``; ``flat`` (pooled, N = 1): ``[T, B, D]``; ``images`` (the pixel
    SDT): time-first currents ``[T, B, 3, S, S]`` as they are, or images ``[B, 3, S, S]`` repeated over the
    graph's ``T`` steps (direct encoding). A graph with an input contract (``metadata["input_quantization"]``,
    :func:`neuroposter.ir.quantize.graded_input_contract`: a run trained to see its image as graded values) gets
    the images quantised as it states (float64).
    """
    from neuroposter.ir.quantize import INPUT_QUANTIZATION, apply_input_quantization

    x = spikes.detach().cpu().numpy() if isinstance(spikes, Tensor) else np.asarray(spikes)
    layout = str((graph.metadata or {}).get("layout", "channels_first_tokens"))
    if layout == "images":
        if x.ndim == 4:
            x = np.broadcast_to(x[None], (int(graph.metadata["T"]), *x.shape))
        if x.ndim != 5:
            raise LoweringError(f"expected images [B, C, S, S] or currents [T, B, C, S, S], got shape {x.shape}")
        contract = (graph.metadata or {}).get(INPUT_QUANTIZATION)
        if contract:
            try:
                return np.ascontiguousarray(apply_input_quantization(x, contract))
            except ValueError as exc:
                raise LoweringError(f"the graph's input contract ({INPUT_QUANTIZATION}): {exc}") from None
        return np.ascontiguousarray(x)
    if x.ndim != 4:
        raise LoweringError(f"expected spikes [T, B, N, D], got shape {x.shape}")
    if layout == "flat":
        if x.shape[2] != 1:
            raise LoweringError(f"a flat graph takes pooled spikes (N = 1), got N = {x.shape[2]}")
        return np.ascontiguousarray(x[:, :, 0])
    return np.ascontiguousarray(np.swapaxes(x, 2, 3))
