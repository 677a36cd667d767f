"""SynSense Xylo's neuron in float: the chip neuron ``"xylo"`` of a Xylo-fitted model.

Xylo Audio 2's integer neuron (SYNS61201 generation; established from the source of SynSense's bit-accurate
simulator ``xylosim`` 0.1.3, ``src/v2/cpp/XyloIAFNeuron.cpp`` / ``XyloLayer.cpp``, and confirmed spike for
spike by :mod:`neuroposter.targets.vendor.xylo`), one step, in this order:

1. *deliver*: every presynaptic event adds its weight ``w << weight_shift`` to the synaptic state ``i``
   (saturating 16-bit add, once per event);
2. *decay the synapse*: ``i <- i - decay(i, dash_syn)``;
3. *integrate*: ``v <- v - decay(v, dash_mem) + i + bias`` (saturating);
4. *fire*: while ``v >= threshold`` (and fewer than 31 spikes, 1 for an output neuron): one more spike and
   ``v <- v - threshold`` (subtractive reset, several spikes per step possible),

with the bit-shift decay ``decay(x, d) = x >> d``, or ``sign(x)`` when that is 0 (at least one unit).
Without rounding and saturation this is, with ``a_s = 2**-dash_syn`` and ``a_m = 2**-dash_mem``,

.. math::
    i_t = (1 - a_s)(i_{t-1} + I_t), \\qquad
    v'_t = (1 - a_m)\\, v_{t-1} + i_t + b, \\qquad
    n_t = \\min(\\max(\\lfloor v'_t / \\theta \\rfloor, 0), n_{max}), \\qquad v_t = v'_t - n_t \\theta,

which :class:`XyloNeuron` computes in float (``I`` the already weighted input current, time first), the spike
count ``n`` having a SuperSpike surrogate gradient. ``dash_syn = 0`` would empty the synaptic state before it
reaches the membrane (the input is lost), so it is refused.

:meth:`XyloNeuron.to_nir` lowers it to ``nir.CubaLIF`` with ``dt = 1``: ``tau_syn = 2**dash_syn``,
``w_in = 2**dash_syn - 1``, ``tau_mem = r = 2**dash_mem``, ``v_leak = b * 2**dash_mem``, ``v_threshold =
theta``, ``v_reset = 0``; under the forward Euler CubaLIF of :mod:`neuroposter.ir.simulate`
(``i <- i + (w_in I - i) / tau_syn``, ``v <- v + (r i + v_leak - v) / tau_mem``) these give the equations
above exactly (powers of two). NIR has no subtractive multi-spike reset: the node's metadata says
``{"reset": "subtract", "max_spikes": n_max}`` (read by the reference simulator) and keeps the chip's exact
parameters in ``metadata["xylo"]`` (``dash_syn``, ``dash_mem``, ``threshold``, ``bias``, ``max_spikes``,
``compare: ">="``).
"""

from __future__ import annotations

from typing import Any

import nir
import numpy as np
import torch
from torch import Tensor, nn

from neuroposter.models.lif import SpikeRecorder

__all__ = ["XyloNeuron", "impulse_peak", "MAX_DASH", "MAX_SPIKES_HIDDEN", "MAX_SPIKES_OUT"]

#: dashes are 4-bit fields on Xylo (xylosim ``XyloIAFNeuron``: "should be 4 bits").
MAX_DASH = 15
#: spikes one hidden neuron may emit per step (xylosim ``MAX_NUM_SPIKES``).
MAX_SPIKES_HIDDEN = 31
#: spikes one output neuron may emit per step (xylosim ``MAX_NUM_OUT_SPIKES``).
MAX_SPIKES_OUT = 1


def impulse_peak(dash_syn: int, dash_mem: int, steps: int = 64) -> float:
    """The largest membrane value a unit input pulse reaches in the neuron (float dynamics of :class:`XyloNeuron`:
    ``i <- (i + x)(1 - 2**-dash_syn)``, ``v <- v (1 - 2**-dash_mem) + i``); 0.5 for dashes 1 / 1."""
    keep_s, keep_m = 1.0 - 2.0 ** -int(dash_syn), 1.0 - 2.0 ** -int(dash_mem)
    i, v, peak = 0.0, 0.0, 0.0
    for t in range(int(steps)):
        i = (i + (1.0 if t == 0 else 0.0)) * keep_s
        v = v * keep_m + i
        peak = max(peak, v)
    return peak


class _SpikeCount(torch.autograd.Function):
    """``n = clamp(floor(v / theta), 0, n_max)`` forward; SuperSpike ``1 / (1 + alpha |v - theta|)^2`` backward."""

    @staticmethod
    def forward(ctx: Any, v: Tensor, theta: float, n_max: float, alpha: float) -> Tensor:  # noqa: D102
        ctx.save_for_backward(v)
        ctx.theta, ctx.alpha = theta, alpha
        return torch.clamp(torch.floor(v / theta), 0.0, n_max)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None, None]:  # noqa: D102
        (v,) = ctx.saved_tensors
        return grad / (1.0 + ctx.alpha * torch.abs(v - ctx.theta)) ** 2, None, None, None


class XyloNeuron(SpikeRecorder, nn.Module):
    """Multi-step Xylo neuron (synaptic + membrane bit-shift decays, subtractive multi-spike reset) in float.

    Args:
        dash_syn: synaptic decay bit shift (1..15); ``tau_syn = 2**dash_syn`` steps.
        dash_mem: membrane decay bit shift (0..15); ``tau_mem = 2**dash_mem`` steps.
        v_th: firing threshold (> 0); fires while ``v >= v_th``, subtracting it each time.
        bias: constant added to the membrane every step.
        max_spikes: spikes per step at most (31 on a hidden neuron, 1 on an output neuron).
        alpha: SuperSpike surrogate sharpness.

    Attributes:
        record_spikes: when True, ``last_spikes`` keeps the (detached) output of the last forward.
        synapse_bias: False: Xylo's synapses carry no bias (its only bias is the neuron's, on the membrane), so a
            chip-fitted layer feeding this neuron has a bias-free Linear and no BatchNorm (which would fold into
            a bias).
    """

    synapse_bias = False

    def __init__(self, dash_syn: int = 1, dash_mem: int = 1, v_th: float = 1.0, bias: float = 0.0, *,
                 max_spikes: int = MAX_SPIKES_HIDDEN, alpha: float = 100.0) -> None:
        super().__init__()
        if not (1 <= int(dash_syn) <= MAX_DASH):
            raise ValueError(f"dash_syn must be in 1..{MAX_DASH} (0 empties the synaptic state before the "
                             f"membrane sees it), got {dash_syn}")
        if not (0 <= int(dash_mem) <= MAX_DASH):
            raise ValueError(f"dash_mem must be in 0..{MAX_DASH}, got {dash_mem}")
        if not v_th > 0:
            raise ValueError(f"v_th (threshold) must be > 0, got {v_th}")
        if int(max_spikes) < 1:
            raise ValueError(f"max_spikes must be >= 1, got {max_spikes}")
        self.dash_syn = int(dash_syn)
        self.dash_mem = int(dash_mem)
        self.v_th = float(v_th)
        self.bias = float(bias)
        self.max_spikes = int(max_spikes)
        self.alpha = float(alpha)
        self._init_recorder()

    @classmethod
    def fitted_params(cls, base: dict[str, Any], given: Any) -> dict[str, Any]:
        """Parameters of a chip-fitted model's Xylo neuron from the full model's (``base``: ``v_th``) and the
        profile's (``given``: dashes).

        The synaptic filter halves (``dash_syn``) an input pulse before the membrane sees it and the membrane
        leaks (``dash_mem``): a unit pulse peaks at :func:`impulse_peak` ``< 1`` on the membrane, where an IF or
        the full model's LIF input reaches it whole. The threshold is scaled by that peak so that a pulse that
        fires the full model's neuron fires this one, and the surrogate's sharpness is relaxed to match (a
        sharp surrogate at the unscaled threshold leaves the BatchNorm-scaled layers silent and untrainable).
        """
        ds = int(given.get("dash_syn", 1))
        dm = int(given.get("dash_mem", 1))
        out = dict(base)
        out["v_th"] = float(base.get("v_th", 1.0)) * impulse_peak(ds, dm)
        out["alpha"] = 20.0
        return out

    @classmethod
    def from_profile(cls, profile: Any, **overrides: Any) -> "XyloNeuron":
        """A neuron with the dashes of a profile's ``neuron`` entry (``{model: xylo, dash_syn, dash_mem}``).

        Args:
            profile: a hardware profile (or a mapping) with a ``neuron`` entry; absent keys keep the defaults.
            **overrides: constructor arguments that win over the profile's.
        """
        neuron = profile.get("neuron") if isinstance(profile, dict) else getattr(profile, "neuron", None)
        neuron = dict(neuron or {})
        kw = {k: neuron[k] for k in ("dash_syn", "dash_mem") if neuron.get(k) is not None}
        kw.update(overrides)
        return cls(**kw)

    def extra_repr(self) -> str:
        return (f"dash_syn={self.dash_syn}, dash_mem={self.dash_mem}, v_th={self.v_th}, "
                f"bias={self.bias}, max_spikes={self.max_spikes}")

    def forward(self, x: Tensor) -> Tensor:
        """Runs the neuron over time.

        Args:
            x: weighted input currents ``[T, ...]`` (time first).

        Returns:
            Spike counts ``[T, ...]`` (0..max_spikes, same dtype as ``x``).
        """
        if x.dim() < 2:
            raise ValueError(f"XyloNeuron expects time-first input [T, ...] with at least 2 dims, got {tuple(x.shape)}")
        keep_s = 1.0 - 2.0 ** -self.dash_syn
        keep_m = 1.0 - 2.0 ** -self.dash_mem
        i = torch.zeros_like(x[0])
        v = torch.zeros_like(x[0])
        out = []
        for x_t in x.unbind(0):
            i = (i + x_t) * keep_s
            v = v * keep_m + i + self.bias
            n = _SpikeCount.apply(v, self.v_th, float(self.max_spikes), self.alpha)
            v = v - n * self.v_th
            out.append(n)
        spikes = torch.stack(out)
        return self._record(spikes)

    def to_nir(self, shape: tuple[int, ...] | int) -> nir.CubaLIF:
        """The neuron as ``nir.CubaLIF`` over ``shape`` (``dt = 1``; see the module docstring).

        Args:
            shape: the neuron population's shape (without time and batch).
        """
        shape = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(s) for s in shape)
        full = lambda v: np.full(shape, float(v), dtype=np.float64)  # noqa: E731
        xylo = {"dash_syn": self.dash_syn, "dash_mem": self.dash_mem, "threshold": self.v_th,
                "bias": self.bias, "max_spikes": self.max_spikes, "compare": ">=", "reset": "subtract"}
        return nir.CubaLIF(
            tau_syn=full(2.0 ** self.dash_syn), tau_mem=full(2.0 ** self.dash_mem), r=full(2.0 ** self.dash_mem),
            v_leak=full(self.bias * 2.0 ** self.dash_mem), v_threshold=full(self.v_th),
            v_reset=full(0.0), w_in=full(2.0 ** self.dash_syn - 1.0),
            metadata={"reset": "subtract", "max_spikes": self.max_spikes, "xylo": xylo})
