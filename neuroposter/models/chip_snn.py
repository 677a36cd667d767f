"""A spiking model fitted to one chip's limits: an optional host projection, then a chain the chip can host.

``spikes [T, B, 1, D_in]``
``-> [host: Linear+BN -> LIF]`` (runs on the host CPU; only when ``host_dim > 0``)
``-> (Linear+BN -> chip neuron) x len(widths) -> Linear -> logits [T, B, C]``,
the prediction being the mean over ``T`` (as :class:`~neuroposter.models.snn_mlp.SpikingMLPNet`).

The sizes (``host_dim``, ``widths``) and the chip neuron (a name of
:data:`~neuroposter.models.chip_neurons.CHIP_NEURONS` with its parameters) are derived from a hardware
profile's limits by :func:`neuroposter.targets.fit.derive_fit`; this module only builds what the config says.
The host projection is what a chip whose input channels or fan-in are fewer than the features needs: the
host computes a learnt ``D_in -> host_dim`` projection and spikes it (the project's LIF) into the chip's input
channels. Its nodes are lowered with ``metadata["placement"] = "host"``. BatchNorm is folded into the
preceding Linear for deployment, as in the snn-mlp. Stateless layers run once on the folded ``T * B`` batch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from neuroposter.models.chip_neurons import build_chip_neuron
from neuroposter.models.lif import LIF, freeze_bias_before_bn, lif_firing_rates

__all__ = ["ChipSNNConfig", "ChipLayer", "ChipSNN", "ScaleNorm1d", "ScaleNorm2d"]


@dataclass(frozen=True)
class ChipSNNConfig:
    """Hyper-parameters of :class:`ChipSNN` (plain JSON in ``model.json``).

    Attributes:
        d_in: input channels (pooled DenseNet-169 features).
        n_classes: genres (read-out currents).
        host_dim: width of the host projection (0: none; the chip reads the input itself).
        widths: widths of the chip's hidden layers, in order.
        neuron: the chip neuron (:data:`~neuroposter.models.chip_neurons.CHIP_NEURONS` name).
        neuron_params: its constructor parameters (e.g. ``{"tau": 2.0, "v_th": 1.0}``).
        tau: time constant (steps) of the host's LIF.
        v_th: threshold of the host's LIF.
        chip: the profile the sizes were derived for (informational).
    """

    d_in: int = 1664
    n_classes: int = 10
    host_dim: int = 0
    widths: tuple[int, ...] = (256, 128)
    neuron: str = "lif"
    neuron_params: dict[str, Any] = field(default_factory=dict)
    tau: float = 2.0
    v_th: float = 1.0
    chip: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        object.__setattr__(self, "neuron_params", dict(self.neuron_params))
        for name in ("d_in", "n_classes"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"ChipSNNConfig.{name} must be >= 1, got {getattr(self, name)}")
        if int(self.host_dim) < 0:
            raise ValueError(f"ChipSNNConfig.host_dim must be >= 0 (0: no host projection), got {self.host_dim}")
        if not self.widths or min(self.widths) < 1:
            raise ValueError(f"ChipSNNConfig.widths must be one or more positive widths, got {list(self.widths)}")

    @property
    def chip_in(self) -> int:
        """Channels entering the chip: the host projection's width, else the input's."""
        return int(self.host_dim) or int(self.d_in)

    def to_dict(self) -> dict[str, Any]:
        """Plain constructor kwargs (for ``model.json``)."""
        d = asdict(self)
        d["widths"] = list(self.widths)
        return d


class _ScaleNorm:
    """Per-channel scale normalisation without centring or shift: ``y = h * weight / sqrt(E[h^2] + eps)``, the mean
    square taken over every dimension but the channels (dim 1).

    Mixed into a :class:`~torch.nn.BatchNorm1d` / ``BatchNorm2d`` whose ``running_mean`` stays 0 and whose ``bias``
    is 0 and frozen, with the running mean *square* in ``running_var``: the BatchNorm fold
    (:func:`neuroposter.ir.lower.fold_bn_tensors`) then scales the weights and adds no bias. It keeps a bias-free
    connection trainable (the pre-activations start at the neuron's threshold scale) where the chip's synapses take
    no bias (Xylo; the conv chip fits of :mod:`neuroposter.models.chip_cnn`).
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__(num_features, eps=eps, momentum=momentum)  # type: ignore[call-arg]
        nn.init.zeros_(self.bias)
        self.bias.requires_grad_(False)

    def forward(self, h: Tensor) -> Tensor:
        """Args: h ``[N, C, ...]``. Returns: ``h`` scaled per channel."""
        if self.training:
            ms = h.pow(2).mean([d for d in range(h.dim()) if d != 1])
            with torch.no_grad():
                self.running_var.mul_(1.0 - float(self.momentum)).add_(float(self.momentum) * ms.detach())
                self.num_batches_tracked += 1
        else:
            ms = self.running_var
        scale = self.weight / torch.sqrt(ms + self.eps)
        return h * scale.reshape(1, -1, *([1] * (h.dim() - 2)))


class ScaleNorm1d(_ScaleNorm, nn.BatchNorm1d):
    """:class:`_ScaleNorm` on ``[N, C]``."""


class ScaleNorm2d(_ScaleNorm, nn.BatchNorm2d):
    """:class:`_ScaleNorm` on ``[N, C, H, W]``."""


class ChipLayer(nn.Module):
    """One chip layer: ``Linear -> BN -> chip neuron`` on ``[T, B, in]``; a neuron whose class says
    ``synapse_bias = False`` (Xylo: synapses without bias) gets a bias-free Linear and a :class:`ScaleNorm1d`
    (folds into the weights without a bias)."""

    def __init__(self, d_in: int, d_out: int, neuron: str, neuron_params: dict[str, Any]) -> None:
        super().__init__()
        self.sn = build_chip_neuron(neuron, **neuron_params)
        biased = bool(getattr(type(self.sn), "synapse_bias", True))
        self.fc = nn.Linear(d_in, d_out, bias=biased)
        self.bn = nn.BatchNorm1d(d_out) if biased else ScaleNorm1d(d_out)
        if biased:
            freeze_bias_before_bn(self.fc)     # BN cancels this bias (zero gradient): zero and frozen

    @property
    def synapse_bias(self) -> bool:
        """Whether the deployed connection has a bias (False: a plain Linear)."""
        return not isinstance(self.bn, ScaleNorm1d)

    def forward(self, x: Tensor) -> Tensor:
        """Args: x ``[T, B, in]``. Returns: spikes ``[T, B, out]``."""
        T, B, D = x.shape
        return self.sn(self.bn(self.fc(x.reshape(T * B, D))).reshape(T, B, -1))


class ChipSNN(nn.Module):
    """Chip-fitted spiking model: pooled spikes ``[T, B, 1, D_in]`` (or ``[T, B, D_in]``) -> logits ``[T, B, C]``.

    Attributes (module paths, also the lowered graph's node names): ``host``, ``host_bn``, ``host_sn`` (when
    ``host_dim > 0``), ``layers.<i>.fc``, ``layers.<i>.bn``, ``layers.<i>.sn``, ``head``.
    """

    def __init__(self, cfg: ChipSNNConfig | None = None, **kwargs: Any) -> None:
        super().__init__()
        if cfg is None:
            cfg = ChipSNNConfig(**kwargs)
        elif kwargs:
            raise TypeError("pass either cfg or keyword arguments, not both")
        self.cfg = cfg
        if cfg.host_dim:
            self.host = nn.Linear(cfg.d_in, cfg.host_dim)
            self.host_bn = nn.BatchNorm1d(cfg.host_dim)
            self.host_sn = LIF(cfg.tau, cfg.v_th)
            freeze_bias_before_bn(self.host)
        dims = (cfg.chip_in, *cfg.widths)
        self.layers = nn.ModuleList(ChipLayer(a, b, cfg.neuron, cfg.neuron_params) for a, b in zip(dims, dims[1:]))
        self.head = nn.Linear(cfg.widths[-1], cfg.n_classes)

    def forward(self, spikes: Tensor) -> Tensor:
        """Args: spikes ``[T, B, 1, D_in]`` or ``[T, B, D_in]``. Returns: logits ``[T, B, C]``."""
        if spikes.dim() == 4:
            if spikes.shape[2] != 1:
                raise ValueError(f"chip-snn takes pooled spikes [T, B, 1, D_in]; got {spikes.shape[2]} tokens "
                                 "(encode the pooled features: `neuroposter encode --form pooled --name pooled`)")
            spikes = spikes[:, :, 0]
        if spikes.dim() != 3 or spikes.shape[-1] != self.cfg.d_in:
            raise ValueError(f"chip-snn expects [T, B, 1, {self.cfg.d_in}], got {tuple(spikes.shape)}")
        T, B, D = spikes.shape
        x = spikes.to(self.head.weight.dtype)
        if self.cfg.host_dim:
            x = self.host_sn(self.host_bn(self.host(x.reshape(T * B, D))).reshape(T, B, -1))
        for layer in self.layers:
            x = layer(x)
        return self.head(x)

    def firing_rates(self) -> dict[str, float]:
        """Firing rate of every spiking layer (host and chip) in the last forward, keyed by module path."""
        return lif_firing_rates(self)
