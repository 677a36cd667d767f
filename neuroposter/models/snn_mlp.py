"""A chain-shaped spiking MLP on pooled spikes: the network lava-dl netx can carry as a plain chain.

``spikes [T, B, 1, D_in] -> Linear+BN -> LIF -> Linear+BN -> LIF -> Linear -> logits [T, B, C]``,
the prediction being the mean over ``T``. Stateless layers run once on the folded ``T * B`` batch;
only the :class:`~neuroposter.models.lif.LIF` neurons loop over time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from torch import Tensor, nn

from neuroposter.models.lif import LIF, freeze_bias_before_bn, lif_firing_rates
from neuroposter.models.sparse import DEFAULT_SPARSE_MODE, spike_linear

__all__ = ["SpikingMLPConfig", "SpikingMLPNet"]


@dataclass(frozen=True)
class SpikingMLPConfig:
    """Hyper-parameters of :class:`SpikingMLPNet`."""

    d_in: int = 1664       # input channels (pooled DenseNet-169 features)
    hidden1: int = 256     # first hidden layer
    hidden2: int = 128     # second hidden layer
    n_classes: int = 10    # genres
    tau: float = 2.0       # LIF time constant in steps
    v_th: float = 1.0      # LIF threshold (strict)

    def __post_init__(self) -> None:
        for name in ("d_in", "hidden1", "hidden2", "n_classes"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"SpikingMLPConfig.{name} must be >= 1, got {getattr(self, name)}")

    def to_dict(self) -> dict[str, float | int]:
        """Plain constructor kwargs (for ``model.json``)."""
        return asdict(self)


class SpikingMLPNet(nn.Module):
    """Spiking MLP: pooled spikes ``[T, B, 1, D_in]`` (or ``[T, B, D_in]``) -> logits ``[T, B, C]``."""

    def __init__(self, cfg: SpikingMLPConfig | None = None, **kwargs: float | int) -> None:
        super().__init__()
        if cfg is None:
            cfg = SpikingMLPConfig(**kwargs)  # type: ignore[arg-type]
        elif kwargs:
            raise TypeError("pass either cfg or keyword arguments, not both")
        self.cfg = cfg
        self.fc1 = nn.Linear(cfg.d_in, cfg.hidden1)
        self.fc1_bn = nn.BatchNorm1d(cfg.hidden1)
        self.sn1 = LIF(cfg.tau, cfg.v_th)
        self.fc2 = nn.Linear(cfg.hidden1, cfg.hidden2)
        self.fc2_bn = nn.BatchNorm1d(cfg.hidden2)
        self.sn2 = LIF(cfg.tau, cfg.v_th)
        self.head = nn.Linear(cfg.hidden2, cfg.n_classes)
        freeze_bias_before_bn(self.fc1)   # BN cancels these biases (zero gradient): zero and frozen
        freeze_bias_before_bn(self.fc2)
        #: how ``fc1`` and ``fc2`` treat their spike inputs (:data:`neuroposter.models.sparse.SPARSE_MODES`)
        self.sparse_input = DEFAULT_SPARSE_MODE

    def forward(self, spikes: Tensor) -> Tensor:
        """Args: spikes ``[T, B, 1, D_in]`` or ``[T, B, D_in]``. Returns: logits ``[T, B, C]``."""
        if spikes.dim() == 4:
            if spikes.shape[2] != 1:
                raise ValueError(f"snn-mlp takes pooled spikes [T, B, 1, D_in]; got {spikes.shape[2]} tokens "
                                 "(encode the pooled features, or use the SDT for tokens)")
            spikes = spikes[:, :, 0]                                     # [T, B, D_in]
        if spikes.dim() != 3 or spikes.shape[-1] != self.cfg.d_in:
            raise ValueError(f"snn-mlp expects [T, B, 1, {self.cfg.d_in}], got {tuple(spikes.shape)}")
        T, B, D = spikes.shape
        x = spike_linear(self.fc1, spikes.reshape(T * B, D), self.sparse_input)   # [T*B, h1], sparse or dense
        h = self.sn1(self.fc1_bn(x).reshape(T, B, -1))                   # [T, B, h1]
        h = self.fc2_bn(spike_linear(self.fc2, h.reshape(T * B, -1), self.sparse_input)).reshape(T, B, -1)
        h = self.sn2(h)                                                  # [T, B, h2]
        return self.head(h)                                              # [T, B, C]

    def firing_rates(self) -> dict[str, float]:
        """Firing rate of every LIF layer in the last forward, keyed by module path."""
        return lif_firing_rates(self)
