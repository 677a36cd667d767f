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

from torch import Tensor, nn

from neuroposter.models.lif import LIF
from neuroposter.models.sdt import SDTConfig, SpikeDrivenTransformer

__all__ = ["SpikingStem", "PixelSDT"]


class SpikingStem(nn.Module):
    """Conv3x3 + BN + LIF, 2x2 average pool, Conv3x3 + BN + LIF, 2x2 average pool: images -> tokens ``[T, B, N, d]``.

    Args:
        T: time steps (direct encoding: the image current is fed at each).
        image_size: square image side ``S`` (a multiple of 4).
        c1: channels of the first convolution.
        d: channels of the second (the token width).
        tau, v_th: LIF constants (the SDT's).
        in_channels: image channels (3).
    """

    def __init__(self, T: int, image_size: int, c1: int, d: int, tau: float = 2.0, v_th: float = 1.0,
                 in_channels: int = 3) -> None:
        super().__init__()
        if int(image_size) < 4 or int(image_size) % 4:
            raise ValueError(f"image_size must be a positive multiple of 4 (two 2x2 poolings), got {image_size}")
        if int(T) < 1:
            raise ValueError(f"T must be >= 1, got {T}")
        self.T, self.image_size, self.in_channels = int(T), int(image_size), int(in_channels)
        self.conv1 = nn.Conv2d(in_channels, c1, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c1)
        self.sn1 = LIF(tau, v_th)
        self.pool1 = nn.AvgPool2d(2)
        self.conv2 = nn.Conv2d(c1, d, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(d)
        self.sn2 = LIF(tau, v_th)
        self.pool2 = nn.AvgPool2d(2)

    @property
    def n_tokens(self) -> int:
        """Tokens per image, ``(S/4)^2``."""
        return (self.image_size // 4) ** 2

    def forward(self, x: Tensor) -> Tensor:
        """Args: images ``[B, C, S, S]`` (the current of every step) or per-step currents ``[T', B, C, S, S]``.
        Returns: tokens ``[T, B, N, d]`` (``T' `` steps for a time-first input)."""
        S = self.image_size
        if x.dim() not in (4, 5) or tuple(x.shape[-3:]) != (self.in_channels, S, S):
            raise ValueError(f"the pixel SDT expects images [B, {self.in_channels}, {S}, {S}] or time-first "
                             f"[T, B, {self.in_channels}, {S}, {S}], got shape {tuple(x.shape)}")
        x = x.to(self.conv1.weight.dtype)
        if x.dim() == 4:   # direct encoding: one convolution, the same current at each of the T steps
            c = self.bn1(self.conv1(x))
            c = c.unsqueeze(0).expand(self.T, *c.shape)
        else:
            T, B = x.shape[:2]
            c = self.bn1(self.conv1(x.reshape(T * B, *x.shape[2:])))
            c = c.reshape(T, B, *c.shape[1:])
        T, B = c.shape[:2]
        s1 = self.sn1(c)                                                   # [T, B, c1, S, S]
        p1 = self.pool1(s1.reshape(T * B, *s1.shape[2:]))                  # [T*B, c1, S/2, S/2]
        c2 = self.bn2(self.conv2(p1))
        s2 = self.sn2(c2.reshape(T, B, *c2.shape[1:]))                     # [T, B, d, S/2, S/2]
        p2 = self.pool2(s2.reshape(T * B, *s2.shape[2:]))                  # [T*B, d, S/4, S/4]
        return p2.reshape(T, B, p2.shape[1], -1).transpose(2, 3)           # [T, B, N, d]


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

