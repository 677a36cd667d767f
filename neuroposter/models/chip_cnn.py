"""A convolutional variant of the pixel SDT fitted to a conv-native chip: the spiking stem, convolutions in place of
the SDSA blocks, a Linear read-out -- a plain chain a chip of convolution cores can host.

``images [B, 3, S, S]`` (direct encoding: the same current at each of the ``T`` steps, as
:class:`~neuroposter.models.sdt_pixels.PixelSDT`)
``-> (Conv kxk (padding k//2, no bias) + BatchNorm2d -> chip neuron -> [2x2 SumPool]) x len(convs)``
``-> Flatten -> Linear -> logits [T, B, C]``, the prediction being the mean over ``T``.

The layers (``convs``: ``[channels, kernel, pool]`` each), the chip neuron and how many leading layers run on the host
(``host_layers``: their nodes are lowered with ``metadata["placement"] = "host"``) are derived from a hardware
profile by :func:`neuroposter.targets.fit.derive_conv_fit`; this module only builds what the config says.

**Sum pooling.** The pool is a 2x2 *sum* of spikes (0..4 per window; ``avg_pool2d * 4``, exact in floating point), as
the chip's pooling adds the events of a window; the lowering writes it as ``nir.SumPool2d`` and the next weights are
the trained ones (no 1/4 to fold). BatchNorm2d is folded into its convolution for deployment.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neuroposter.models.chip_neurons import build_chip_neuron
from neuroposter.models.chip_snn import ScaleNorm2d
from neuroposter.models.lif import lif_firing_rates

__all__ = ["SumPool2d", "ScaleNorm2d", "ChipConvBlock", "ChipCNN"]


class SumPool2d(nn.Module):
    """Non-overlapping ``k x k`` sum pooling (``k = 1``: identity)."""

    def __init__(self, kernel: int = 2) -> None:
        super().__init__()
        self.kernel = int(kernel)

    def forward(self, x: Tensor) -> Tensor:
        if self.kernel == 1:
            return x
        return F.avg_pool2d(x, self.kernel) * float(self.kernel * self.kernel)

    def extra_repr(self) -> str:
        return f"kernel={self.kernel}"


class ChipConvBlock(nn.Module):
    """``Conv kxk + BatchNorm2d -> chip neuron -> SumPool`` on time-first maps ``[T, B, C, H, W]``; bias-free
    (``biased=False``: a :class:`ScaleNorm2d` instead of the BatchNorm, folding into the weights alone)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, pool: int, neuron: str,
                 neuron_params: dict[str, Any], biased: bool = True) -> None:
        super().__init__()
        if int(kernel) < 1 or int(kernel) % 2 == 0:
            raise ValueError(f"kernel must be odd and >= 1 (same-size convolution), got {kernel}")
        if int(pool) not in (1, 2):
            raise ValueError(f"pool must be 1 (none) or 2 (2x2 sum pool), got {pool}")
        self.conv = nn.Conv2d(int(c_in), int(c_out), int(kernel), padding=int(kernel) // 2, bias=False)
        self.bn = nn.BatchNorm2d(int(c_out)) if biased else ScaleNorm2d(int(c_out))
        self.sn = build_chip_neuron(neuron, **neuron_params)
        self.pool = SumPool2d(int(pool))

    def currents(self, x: Tensor) -> Tensor:
        """The connection's output on ``[N, C, H, W]`` (stateless: time and batch folded)."""
        return self.bn(self.conv(x))

    def forward(self, x: Tensor) -> Tensor:
        """Args: x ``[T, B, C, H, W]``. Returns: pooled spikes ``[T, B, C', H', W']``."""
        T, B = x.shape[:2]
        c = self.currents(x.reshape(T * B, *x.shape[2:]))
        s = self.sn(c.reshape(T, B, *c.shape[1:]))
        p = self.pool(s.reshape(T * B, *s.shape[2:]))
        return p.reshape(T, B, *p.shape[1:])


class ChipCNN(nn.Module):
    """Chip-fitted convolutional spiking model: images ``[B, 3, S, S]`` (or currents ``[T, B, 3, S, S]``) -> logits
    ``[T, B, C]`` (module docstring).

    Args:
        n_classes: genres.
        image_size: square image side ``S``.
        T: time steps of direct encoding.
        convs: ``[channels, kernel, pool]`` per convolution layer, in order.
        host_layers: leading layers that run on the host CPU (lowered with ``placement: host``).
        neuron: the chip neuron (:data:`~neuroposter.models.chip_neurons.CHIP_NEURONS` name).
        neuron_params: its constructor parameters.
        conv_bias: whether the chip's convolutions have a bias (False: :class:`ScaleNorm2d`, bias-free; the host
            layers keep their BatchNorm either way).
        chip: the profile the layers were derived for (informational).
        in_channels: image channels (3).

    Attributes (module paths, also the lowered graph's node names): ``convs.<i>.conv``, ``convs.<i>.bn``,
    ``convs.<i>.sn``, ``convs.<i>.pool``, ``head``.
    """

    def __init__(self, n_classes: int = 10, image_size: int = 32, T: int = 4,
                 convs: Sequence[Sequence[int]] = ((16, 3, 2), (64, 3, 2)), host_layers: int = 0,
                 neuron: str = "if", neuron_params: dict[str, Any] | None = None, conv_bias: bool = True,
                 chip: str = "", in_channels: int = 3) -> None:
        super().__init__()
        if int(T) < 1:
            raise ValueError(f"T must be >= 1, got {T}")
        if not convs:
            raise ValueError("convs must list at least one [channels, kernel, pool]")
        if not 0 <= int(host_layers) <= len(convs):
            raise ValueError(f"host_layers must be in [0, {len(convs)}], got {host_layers}")
        self.T, self.image_size, self.in_channels = int(T), int(image_size), int(in_channels)
        self.n_classes, self.host_layers, self.neuron, self.chip = int(n_classes), int(host_layers), neuron, chip
        self.neuron_params = dict(neuron_params or {})
        self.conv_spec = [[int(c), int(k), int(p)] for c, k, p in convs]
        blocks, c_prev, side = [], self.in_channels, self.image_size
        self.conv_bias = bool(conv_bias)
        for i, (c, k, p) in enumerate(self.conv_spec):
            if p == 2 and side % 2:
                raise ValueError(f"a 2x2 pool on an odd map side {side} (image_size {image_size})")
            blocks.append(ChipConvBlock(c_prev, c, k, p, neuron, self.neuron_params,
                                        biased=self.conv_bias or i < self.host_layers))
            c_prev, side = c, side // p
        self.convs = nn.ModuleList(blocks)
        self.out_shape = (c_prev, side, side)
        self.head = nn.Linear(c_prev * side * side, self.n_classes)

    @property
    def stem(self) -> nn.ModuleList:
        """The first two layers (the pixel SDT's stem); its presence marks a pixel model (time-first currents)."""
        return self.convs[:2]

    @property
    def cfg(self) -> Any:
        """What the lowering records (``n_classes``, ``tau`` unused by IF)."""
        from types import SimpleNamespace

        return SimpleNamespace(n_classes=self.n_classes, tau=float(self.neuron_params.get("tau", 1.0)))

    def forward(self, images: Tensor) -> Tensor:
        """Args: images ``[B, C, S, S]`` or time-first currents ``[T, B, C, S, S]``. Returns: logits ``[T, B, K]``."""
        S = self.image_size
        if images.dim() not in (4, 5) or tuple(images.shape[-3:]) != (self.in_channels, S, S):
            raise ValueError(f"chip-cnn expects images [B, {self.in_channels}, {S}, {S}] or time-first "
                             f"[T, B, {self.in_channels}, {S}, {S}], got shape {tuple(images.shape)}")
        x = images.to(self.head.weight.dtype)
        first = self.convs[0]
        if x.dim() == 4:   # direct encoding: one convolution, the same current at each of the T steps
            c = first.currents(x)
            c = c.unsqueeze(0).expand(self.T, *c.shape)
        else:
            T, B = x.shape[:2]
            c = first.currents(x.reshape(T * B, *x.shape[2:]))
            c = c.reshape(T, B, *c.shape[1:])
        T, B = c.shape[:2]
        s = first.sn(c)
        p = first.pool(s.reshape(T * B, *s.shape[2:]))
        h = p.reshape(T, B, *p.shape[1:])
        for block in self.convs[1:]:
            h = block(h)
        return self.head(h.reshape(T * B, -1)).reshape(T, B, -1)

    def firing_rates(self) -> dict[str, float]:
        """Firing rate of every spiking layer in the last forward, keyed by module path."""
        return lif_firing_rates(self)
