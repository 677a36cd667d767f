"""The pixel-input Spike-Driven Transformer: a spiking convolutional stem on the poster image, then the SDT.

The SDT of the literature (Yao et al., NeurIPS 2023) starts from pixels with a spiking patch-splitting stem and is
event-driven end to end; :class:`PixelSDT` is that model at the project's conventions (strict threshold ``v > v_th``,
hard reset, ``tau = 2``, :class:`~neuroposter.models.lif.LIF`). All tensors time-first:

.. math::
    C_1 = \\mathrm{BN}_{2d}(\\mathrm{Conv}_{3\\times3}(X))       \\quad (X\\ [B, 3, H, W]: \\text{the same current at every step})

    S_1 = \\mathrm{SN}(C_1)\\ [T, B, c_1, H, W], \\qquad P_1 = \\mathrm{AvgPool}_{2\\times2}(S_1)

    S_2 = \\mathrm{SN}(\\mathrm{BN}_{2d}(\\mathrm{Conv}_{3\\times3}(P_1)))\\ [T, B, d, H/2, W/2], \\qquad
    P_2 = \\mathrm{AvgPool}_{2\\times2}(S_2)

    \\text{tokens} = P_2 \\text{ as } [T, B, N, d],\\ N = (H/4)(W/4),\\ n = i\\,(W/4) + j \\text{ (row-major)}

then exactly :class:`~neuroposter.models.sdt.SpikeDrivenTransformer` on the tokens (this class is one, with
``d_in = d``): ``U_0 = BN(tokens W_e) + P`` (the token embedding, a 1x1 convolution, and the per-token positional
bias), the SDT blocks with their membrane shortcuts, and the read-out ``mean_n SN(U) W_h + b_h`` per step.

**Direct encoding.** The image (ImageNet-normalised, real-valued) is the input current of the first convolution at
every one of the ``T`` steps: the first layer computes MACs on non-binary input, every later layer accumulates
spikes (or spike counts of a pooling window). Since the convolution and BatchNorm are stateless and the input is the
same at every step, ``forward`` computes them once per image and feeds the same current to ``SN`` at each step (the
same numbers as ``T`` identical convolutions). ``forward`` also accepts a time-first ``[T, B, 3, H, W]`` input
(any per-step currents, e.g. the image repeated: what the NIR graph receives step by step).

**Pooling.** The average's 1/4 is a power of two: the NIR lowering (:mod:`neuroposter.ir.lower`) writes each pool as
``SumPool2d`` and folds the 1/4 into the weights that follow (``conv2``, ``embed``), exactly in binary floating
point. The pooled spikes are spike counts of a 2x2 window (0..4) on the graph, 0..1 in quarters in the model.

Convolutions before BatchNorm carry no bias (BatchNorm cancels it).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from torch import Tensor, nn

from neuroposter.models.lif import LIF
from neuroposter.models.sdt import SDTConfig, SpikeDrivenTransformer

__all__ = ["image_hw", "SpikingStem", "PixelSDT"]


def image_hw(image_size: int | Sequence[int]) -> tuple[int, int]:
    """``(H, W)`` of an image size given as a square side ``S`` or as ``(H, W)``."""
    if isinstance(image_size, (int, np.integer)) or (isinstance(image_size, float) and image_size.is_integer()):
        return int(image_size), int(image_size)
    hw = tuple(int(v) for v in image_size)
    if len(hw) != 2:
        raise ValueError(f"image_size must be a side S or (H, W), got {image_size!r}")
    return hw   # type: ignore[return-value]


class SpikingStem(nn.Module):
    """``len(widths)`` stages of Conv3x3 + BN + LIF + 2x2 average pool: images -> tokens ``[T, B, N, widths[-1]]``.

    The pixel SDT's stem is the two-stage one (``widths = (c1, d)``); the spiking front end of the seed's SDT
    (:mod:`neuroposter.models.sdt_frontend`) uses three on a rectangular poster. Stage ``i`` (from 1) holds
    ``conv<i>``, ``bn<i>``, ``sn<i>``, ``pool<i>``; the tokens are the last pooled map, row-major
    (``n = i W' + j`` on the ``(H / 2^k) x (W / 2^k)`` grid).

    Args:
        T: time steps (direct encoding: the image current is fed at each).
        image_size: square image side ``S``, or ``(H, W)``; each a multiple of ``2^k`` (``k`` poolings).
        c1: channels of the first convolution (with ``d``: ``widths = (c1, d)``).
        d: channels of the second (the token width).
        tau, v_th: LIF constants (the SDT's).
        in_channels: image channels (3).
        widths: the channels of every stage (overrides ``c1`` and ``d``).
    """

    def __init__(self, T: int, image_size: int | Sequence[int], c1: int | None = None, d: int | None = None,
                 tau: float = 2.0, v_th: float = 1.0, in_channels: int = 3,
                 widths: Sequence[int] | None = None) -> None:
        super().__init__()
        widths = tuple(int(w) for w in (widths if widths is not None else (c1, d)))
        if not widths or any(w < 1 for w in widths):
            raise ValueError(f"the stem needs at least one stage of >= 1 channels, got widths {widths}")
        H, W = image_hw(image_size)
        k = 2 ** len(widths)
        if H < k or W < k or H % k or W % k:
            raise ValueError(f"image_size must be a positive multiple of {k} ({len(widths)} 2x2 poolings), "
                             f"got {image_size}")
        if int(T) < 1:
            raise ValueError(f"T must be >= 1, got {T}")
        self.T, self.in_channels = int(T), int(in_channels)
        self.image_size = image_size if isinstance(image_size, int) else (H, W)
        self.image_hw, self.widths = (H, W), widths
        prev = self.in_channels
        for i, w in enumerate(widths, start=1):
            setattr(self, f"conv{i}", nn.Conv2d(prev, w, 3, padding=1, bias=False))
            setattr(self, f"bn{i}", nn.BatchNorm2d(w))
            setattr(self, f"sn{i}", LIF(tau, v_th))
            setattr(self, f"pool{i}", nn.AvgPool2d(2))
            prev = w

    @property
    def n_stages(self) -> int:
        """Conv/pool stages."""
        return len(self.widths)

    @property
    def grid(self) -> tuple[int, int]:
        """The token grid ``(H / 2^k, W / 2^k)``."""
        k = 2 ** self.n_stages
        return self.image_hw[0] // k, self.image_hw[1] // k

    @property
    def n_tokens(self) -> int:
        """Tokens per image (the grid's cells)."""
        return self.grid[0] * self.grid[1]

    def forward(self, x: Tensor) -> Tensor:
        """Args: images ``[B, C, H, W]`` (the current of every step) or per-step currents ``[T', B, C, H, W]``.
        Returns: tokens ``[T, B, N, d]`` (``T' `` steps for a time-first input)."""
        H, W = self.image_hw
        if x.dim() not in (4, 5) or tuple(x.shape[-3:]) != (self.in_channels, H, W):
            raise ValueError(f"the spiking stem expects images [B, {self.in_channels}, {H}, {W}] or time-first "
                             f"[T, B, {self.in_channels}, {H}, {W}], got shape {tuple(x.shape)}")
        x = x.to(self.conv1.weight.dtype)
        if x.dim() == 4:   # direct encoding: one convolution, the same current at each of the T steps
            c = self.bn1(self.conv1(x))
            c = c.unsqueeze(0).expand(self.T, *c.shape)
        else:
            T, B = x.shape[:2]
            c = self.bn1(self.conv1(x.reshape(T * B, *x.shape[2:])))
            c = c.reshape(T, B, *c.shape[1:])
        T, B = c.shape[:2]
        for i in range(1, self.n_stages + 1):
            if i > 1:
                c = getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(p))
                c = c.reshape(T, B, *c.shape[1:])
            s = getattr(self, f"sn{i}")(c)                                  # [T, B, c_i, H_i, W_i]
            p = getattr(self, f"pool{i}")(s.reshape(T * B, *s.shape[2:]))   # [T*B, c_i, H_i/2, W_i/2]
        return p.reshape(T, B, p.shape[1], -1).transpose(2, 3)             # [T, B, N, d]


class PixelSDT(SpikeDrivenTransformer):
    """The Spike-Driven Transformer on poster pixels: ``images [B, 3, S, S] -> logits [T, B, C]`` (module docstring).

    A :class:`~neuroposter.models.sdt.SpikeDrivenTransformer` (``d_in = d_model``, ``n_tokens = (S/4)^2``) whose
    input tokens come from a :class:`SpikingStem`; the prediction is the mean of the logits over ``T``.

    Args:
        n_classes: genres.
        image_size: square image side ``S`` (a multiple of 4).
        T: time steps of direct encoding.
        c1: channels of the stem's first convolution.
        d_model: the stem's token width and the SDT's residual width.
        depth, heads, mlp_hidden, tau, v_th, kv_v_th: as :class:`~neuroposter.models.sdt.SDTConfig`.
    """

    def __init__(self, n_classes: int = 10, image_size: int = 32, T: int = 4, c1: int = 16, d_model: int = 64,
                 depth: int = 1, heads: int = 4, mlp_hidden: int = 128, tau: float = 2.0, v_th: float = 1.0,
                 kv_v_th: float = 0.25) -> None:
        stem = SpikingStem(T, image_size, c1, d_model, tau, v_th)
        cfg = SDTConfig(d_in=d_model, n_tokens=stem.n_tokens, d_model=d_model, depth=depth, heads=heads,
                        mlp_hidden=mlp_hidden, n_classes=n_classes, tau=tau, v_th=v_th, kv_v_th=kv_v_th)
        super().__init__(cfg)
        self.stem = stem
        self.T, self.image_size, self.c1 = int(T), int(image_size), int(c1)

    def forward(self, images: Tensor) -> Tensor:  # type: ignore[override]
        """Args: images ``[B, 3, S, S]`` or time-first currents ``[T, B, 3, S, S]``. Returns: logits ``[T, B, C]``."""
        return super().forward(self.stem(images))

