"""Lava's bit-accurate LIF written out in plain Python integers: the independent reference of the integer neuron.

Not a user API (see ``neuroposter/testing/__init__.py``). It deliberately shares no code with
:mod:`neuroposter.ir.int_neuron`; the Loihi 2 numbers are written out as Lava 0.10's ``PyLifModelBitAcc`` has them.
"""

from __future__ import annotations

__all__ = ["lava_lif_reference"]


def lava_lif_reference(a_seq, *, du: int, dv: int, vth: int, bias: int = 0) -> list[list[int]]:
    """Lava 0.10 ``PyLifModelBitAcc`` written out element by element in plain Python integers, with Loihi 2's
    numbers (24-bit states, 12-bit decays, ``<< 6`` on the input and the threshold, ``ds_offset`` 1,
    ``dm_offset`` 0): the independent reference of the integer neuron. ``a_seq`` is ``[T][n]`` inputs;
    returns ``[T][n]`` spikes (0/1)."""
    def trunc12(x: int) -> int:
        return -((-x) >> 12) if x < 0 else x >> 12

    n = len(a_seq[0])
    u, v, out = [0] * n, [0] * n, []
    for a in a_seq:
        z = []
        for i in range(n):
            ui = trunc12(u[i] * (4096 - (du + 1))) + (int(a[i]) << 6)
            if ui > 2 ** 23:
                ui -= 2 ** 24
            elif ui <= -(2 ** 23):
                ui += 2 ** 24
            vi = trunc12(v[i] * (4096 - dv)) + ui + bias
            vi = max(-(2 ** 23 - 1), min(2 ** 23 - 1, vi))
            fire = vi > (vth << 6)
            u[i], v[i] = ui, (0 if fire else vi)
            z.append(int(fire))
        out.append(z)
    return out
