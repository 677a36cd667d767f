"""The one spiking neuron of the project: a discrete LIF built on Norse's ``LIFBoxCell``.

Equations (``dt = 1``, ``v_leak = 0``, ``v_reset = 0``, one step per time index ``t``), exactly as
Norse 1.1.0 ``norse.torch.functional.lif_box.lif_box_feed_forward_step`` computes them:

.. math::
    \\tilde v_t = v_{t-1} + \\frac{1}{\\tau}\\,(x_t - v_{t-1})    \\qquad\\text{(leaky integration first)}

    z_t = \\Theta(\\tilde v_t - v_{th}) = [\\tilde v_t > v_{th}]   \\qquad\\text{(strict, on the updated } \\tilde v_t)

    v_t = (1 - z_t)\\,\\tilde v_t + z_t \\cdot 0                    \\qquad\\text{(hard reset to 0)}

Update order, verified in the Norse source: the membrane is integrated first (``v_decayed = v +
dt * tau_mem_inv * (x + v_leak - v)``), the threshold is applied to that *new* value
(``threshold(v_decayed - v_th)``, whose forward is ``norse.torch.functional.heaviside.heaviside``,
i.e. ``torch.gt(x, 0)`` -- strict, a membrane exactly at threshold does not fire), and the reset is
``reset_value``: ``(1 - z) * v_decayed + z * v_reset``. ``v_0 = 0`` before the first step.
With ``tau = 2`` this is ``v <- (v + x) / 2``. The threshold's backward pass is the surrogate
named by ``surrogate`` (Norse's ``"super"``: SuperSpike, ``dz/dv = 1 / (1 + |v - v_th|)^2``); the
reset is not detached (Norse's choice).

Tensors are time-first: ``forward`` takes ``x [T, ...]`` and loops only the neuron over ``T``;
every stateless layer around it runs once on the folded ``T * B`` batch.
"""

from __future__ import annotations

import torch
from norse.torch import LIFBoxCell, LIFBoxParameters
from norse.torch.functional.lif_box import LIFBoxFeedForwardState
from torch import Tensor, nn

__all__ = ["LIF", "lif_firing_rates", "freeze_bias_before_bn"]


class LIF(nn.Module):
    """Multi-step discrete LIF neuron layer (Norse ``LIFBoxCell``, ``dt = 1``, strict threshold).

    Args:
        tau: membrane time constant in steps (``tau_mem_inv = 1 / tau``); 2 in SDT.
        v_th: firing threshold; a neuron fires when its membrane is strictly above it.
        surrogate: Norse threshold method used for the backward pass (``"super"``, ``"triangle"``, ...).
        alpha: surrogate hyper-parameter passed to Norse (unused by ``"super"``).

    Attributes:
        tau: membrane time constant (float).
        v_th: threshold (float).
        record_spikes: when True, ``last_spikes`` keeps the (detached) output of the last forward.
    """

    def __init__(self, tau: float = 2.0, v_th: float = 1.0, *, surrogate: str = "super",
                 alpha: float = 100.0) -> None:
        super().__init__()
        if tau < 1.0:
            raise ValueError(f"tau must be >= 1 (dt = 1), got {tau}")
        self.tau = float(tau)
        self.v_th = float(v_th)
        self.surrogate = surrogate
        p = LIFBoxParameters(
            tau_mem_inv=torch.as_tensor(1.0 / self.tau),
            v_leak=torch.as_tensor(0.0),
            v_th=torch.as_tensor(self.v_th),
            v_reset=torch.as_tensor(0.0),
            method=surrogate,
            alpha=torch.as_tensor(float(alpha)),
        )
        self.cell = LIFBoxCell(p, dt=1.0)
        self.record_spikes = False
        self.last_spikes: Tensor | None = None
        self._spike_sum: Tensor | None = None
        self._numel = 0

    def extra_repr(self) -> str:
        return f"tau={self.tau}, v_th={self.v_th}, surrogate={self.surrogate!r}"

    def forward(self, x: Tensor) -> Tensor:
        """Runs the neuron over time.

        Args:
            x: input currents ``[T, ...]`` (time first).

        Returns:
            Spikes ``[T, ...]`` (0/1 floats, same dtype as ``x``).
        """
        if x.dim() < 2:
            raise ValueError(f"LIF expects time-first input [T, ...] with at least 2 dims, got {tuple(x.shape)}")
        state = LIFBoxFeedForwardState(v=torch.zeros_like(x[0]))
        out = []
        for x_t in x.unbind(0):  # one backward node for all steps (x[t] would scatter T full-size grads)
            z, state = self.cell(x_t, state)
            out.append(z)
        spikes = torch.stack(out)  # [T, ...]
        detached = spikes.detach()
        self._spike_sum = detached.sum()
        self._numel = detached.numel()
        self.last_spikes = detached if self.record_spikes else None
        return spikes

    @property
    def firing_rate(self) -> float:
        """Fraction of non-zero outputs in the last forward (nan before any forward)."""
        if self._spike_sum is None or self._numel == 0:
            return float("nan")
        return float(self._spike_sum) / self._numel

    @property
    def spike_count(self) -> tuple[float, int]:
        """``(spikes, elements)`` of the last forward, for averaging rates over several batches."""
        if self._spike_sum is None:
            return 0.0, 0
        return float(self._spike_sum), self._numel


def lif_firing_rates(module: nn.Module) -> dict[str, float]:
    """Firing rate of the last forward of every :class:`LIF` inside ``module``, keyed by module path."""
    return {name: m.firing_rate for name, m in module.named_modules() if isinstance(m, LIF)}


def freeze_bias_before_bn(linear: nn.Linear) -> None:
    """Zeroes and freezes the bias of a Linear whose output goes straight into a BatchNorm.

    Training-mode BatchNorm subtracts the batch mean, so such a bias has an identically zero
    gradient; left trainable, Adam turns float round-off in that gradient into lr-sized random
    steps (absorbed by BN's running mean, but they make runs differ across reduction orders, e.g.
    DDP vs one process). Kept as a zero tensor so the module layout matches the official SDT.
    """
    if linear.bias is not None:
        with torch.no_grad():
            linear.bias.zero_()
        linear.bias.requires_grad_(False)
