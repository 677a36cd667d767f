"""A numpy/torch emulator of a Loihi network plan: the Lava build checked without Lava (tests, benchmarks).

Not a user API (see ``neuroposter/testing/__init__.py``).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

from neuroposter.ir.int_neuron import int_lif_step
from neuroposter.targets.loihi.builder import EmulationResult, NetworkPlan, SynapseSpec, input_dict, assemble_result
from neuroposter.targets.loihi.fixed_point import shift

__all__ = ["emulate"]


def emulate(plan: NetworkPlan, x: np.ndarray | Mapping[str, np.ndarray], *, record: bool = True) -> EmulationResult:
    """Runs a Loihi network plan with Lava's integer equations, without Lava (vectorised over the batch).

    The neurons are the one integer LIF (:func:`neuroposter.ir.int_neuron.int_lif_step`), the synapses
    :func:`~neuroposter.targets.loihi.fixed_point.shift` of the plan's sparse matrices, the timing the plan's
    depths and delays: an independent check of the Lava build (tests, ``benchmarks/lava_vs_reference.py``).

    Args:
        plan: the network plan.
        x: ``[T, B, *input_shape]`` 0/1 spikes (or a dict per Input).
        record: keep per-population spikes.

    Returns:
        An :class:`EmulationResult` aligned like the same-step result.
    """
    if plan.int_format is None:
        raise ValueError("the plan's integer graph records no int_format; quantise it with quantize_loihi")
    fmt = plan.int_format
    xs = input_dict(plan, x)
    t_in, batch = next(iter(xs.values())).shape[:2]
    L = plan.latency
    steps = t_in + L
    z: dict[str, np.ndarray] = {}   # unit -> [steps, n, B] spikes
    for name, arr in xs.items():
        buf = np.zeros((steps, int(np.prod(plan.inputs[name])), batch), dtype=np.int64)
        buf[:t_in] = arr.reshape(t_in, batch, -1).transpose(0, 2, 1)
        z[name] = buf
    into: dict[str, list[SynapseSpec]] = {}
    for s in plan.synapses:
        into.setdefault(s.dst, []).append(s)
    outs: dict[str, np.ndarray] = {}
    order = list(plan.populations) + list(plan.outputs)
    for u in order:
        n = plan.populations[u].size if u in plan.populations else int(np.prod(plan.outputs[u]["shape"]))
        a = np.zeros((steps, n, batch), dtype=np.int64)
        for s in into.get(u, []):
            src = z[s.src]
            lag = 1 + s.delay
            if lag < steps:
                flat = src[: steps - lag].transpose(1, 0, 2).reshape(src.shape[1], -1)
                cur = shift(np.asarray(s.weight @ flat, dtype=np.int64), s.weight_exp)
                a[lag:] += cur.reshape(n, steps - lag, batch).transpose(1, 0, 2)
        if u in plan.populations:
            p = plan.populations[u]
            uu = torch.zeros((n, batch), dtype=torch.int64)
            vv = torch.zeros((n, batch), dtype=torch.int64)
            bias = torch.as_tensor(p.bias[:, None])
            at = torch.as_tensor(a)
            zz = np.zeros((steps, n, batch), dtype=np.int64)
            # a population starts a sample (zero state) when the sample's first step reaches its depth
            for t in range(p.depth, min(steps, p.depth + t_in)):
                uu, vv, spk = int_lif_step(uu, vv, at[t], du=p.du, dv=p.dv, vth=p.vth, bias=bias, fmt=fmt)
                zz[t] = spk.numpy()
            z[u] = zz
        else:
            outs[u] = a
    return assemble_result(plan, z, outs, t_in, batch, steps, record)
