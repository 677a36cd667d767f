"""The integer LIF neuron: one implementation, shared by the reference simulator and every emulation.

A fixed-point chip neuron (Loihi 2's, as Lava's bit-accurate ``PyLifModelBitAcc`` computes it) in the
integer format :class:`IntFormat` describes; the widths are chip facts and come from the chip's hardware
profile (``hardware_profiles/loihi2.yaml`` ``fixed_point``; the quantiser records them in the integer
graph's ``metadata["int_format"]``). All integers, ``>>`` rounding toward zero on the decays::

    decay(x, d)   = sign(x * (2**decay_bits - d)) * (|x * (2**decay_bits - d)| >> decay_bits)
    u[t]          = wrap(decay(u[t-1], du + decay_u_offset) + (a[t] << act_shift))
    v~[t]         = clip(decay(v[t-1], dv + decay_v_offset) + u[t] + bias, -(L - 1), L - 1)
    z[t]          = v~[t] > (vth << threshold_shift)                       # strict
    v[t]          = 0 where z[t] else v~[t]                                 # hard reset
    wrap(x)       = x - 2L if x > L;  x + 2L if x <= -L;  x otherwise      # L = 2**(state_bits - 1)

A non-spiking neuron (``LI``, ``I``) returns ``v~`` instead of spikes and keeps it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch

__all__ = ["IntFormat", "int_lif_step", "sm_shift"]


@dataclass(frozen=True)
class IntFormat:
    """The integer format of a chip's neuron (from its profile's ``fixed_point`` section).

    Attributes:
        state_bits: signed width of the states u and v.
        decay_bits: decay width (a decay ``d`` multiplies by ``(2**decay_bits - d) / 2**decay_bits``).
        act_shift: left shift of the synaptic input before it is added to u.
        threshold_shift: left shift of the threshold mantissa before the compare.
        decay_u_offset: added to the current decay ``du``.
        decay_v_offset: added to the voltage decay ``dv``.
    """

    state_bits: int
    decay_bits: int
    act_shift: int
    threshold_shift: int
    decay_u_offset: int
    decay_v_offset: int

    @property
    def state_limit(self) -> int:
        """``2**(state_bits - 1)``: a state wraps (u) or saturates (v) there."""
        return 1 << (self.state_bits - 1)

    @property
    def decay_unity(self) -> int:
        """``2**decay_bits``: the decay that empties a state."""
        return 1 << self.decay_bits

    def to_dict(self) -> dict[str, int]:
        """The format as plain integers (the integer graph's ``metadata["int_format"]``)."""
        return {k: int(getattr(self, k)) for k in ("state_bits", "decay_bits", "act_shift", "threshold_shift",
                                                  "decay_u_offset", "decay_v_offset")}

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any]) -> IntFormat:
        """The format from :meth:`to_dict`'s mapping (numbers may be 0-d arrays, as ``nir.read`` returns them).

        Raises:
            ValueError: a field is missing.
        """
        import numpy as np

        missing = [k for k in cls.__dataclass_fields__ if k not in m]
        if missing:
            raise ValueError(f"integer format lacks {', '.join(missing)}")
        return cls(**{k: int(np.asarray(m[k]).reshape(-1)[0]) for k in cls.__dataclass_fields__})

    @classmethod
    def of_profile(cls, fixed_point: Any) -> IntFormat:
        """The format of a profile's :class:`~neuroposter.profiling.profiles.FixedPoint` (duck-typed)."""
        return cls(int(fixed_point.state_bits), int(fixed_point.decay_bits), int(fixed_point.act_shift_bits),
                   int(fixed_point.threshold_shift_bits), int(fixed_point.decay_u_offset),
                   int(fixed_point.decay_v_offset))


def sm_shift(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Sign-magnitude right shift (rounds toward zero), as the fixed-point decays."""
    return torch.sign(x) * (x.abs() >> bits)


def int_lif_step(u: torch.Tensor, v: torch.Tensor, a: torch.Tensor, *, du: Any, dv: Any, vth: Any, bias: Any,
                 fmt: IntFormat, spiking: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step of the integer LIF (module docstring), int64, vectorised over any shape.

    Args:
        u, v: current and voltage states.
        a: the summed integer synaptic input of this step.
        du, dv: decays (ints or int64 tensors broadcastable to the state).
        vth: threshold mantissa (compared as ``vth << threshold_shift``; ignored when not ``spiking``).
        bias: integer bias added to v every step (``bias_mant << bias_exp``).
        fmt: the integer format.
        spiking: False for a neuron without threshold (``LI``, ``I``): its output is ``v``.

    Returns:
        ``(u, v, out)``: the new states and the spikes (int64 0/1) or, when not spiking, ``v``.
    """
    lim = fmt.state_limit
    decay_u = fmt.decay_unity - (torch.as_tensor(du, dtype=torch.int64) + fmt.decay_u_offset)
    decay_v = fmt.decay_unity - (torch.as_tensor(dv, dtype=torch.int64) + fmt.decay_v_offset)
    u = sm_shift(u * decay_u, fmt.decay_bits) + (a.to(torch.int64) << fmt.act_shift)
    u = torch.where(u > lim, u - 2 * lim, u)
    u = torch.where(u <= -lim, u + 2 * lim, u)
    v = sm_shift(v * decay_v, fmt.decay_bits) + u + torch.as_tensor(bias, dtype=torch.int64)
    v = torch.clamp(v, -lim + 1, lim - 1)
    if not spiking:
        return u, v, v
    z = v > (torch.as_tensor(vth, dtype=torch.int64) << fmt.threshold_shift)
    v = torch.where(z, torch.zeros_like(v), v)
    return u, v, z.to(torch.int64)
