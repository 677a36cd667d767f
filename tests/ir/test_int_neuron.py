"""The one integer LIF against Lava's equations written out in plain Python, and its format from the profile."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from neuroposter.ir.int_neuron import IntFormat, int_lif_step
from neuroposter.profiling.profiles import load_profile
from neuroposter.testing.lava_reference import lava_lif_reference

LOIHI2 = IntFormat.of_profile(load_profile("loihi2").fixed_point)


def test_loihi2_format_is_lavas() -> None:
    assert LOIHI2 == IntFormat(state_bits=24, decay_bits=12, act_shift=6, threshold_shift=6, decay_u_offset=1,
                               decay_v_offset=0)
    assert IntFormat.from_mapping(LOIHI2.to_dict()) == LOIHI2


def _run(a: np.ndarray, **kw) -> np.ndarray:
    u = v = torch.zeros(a.shape[1], dtype=torch.int64)
    out = []
    for t in range(a.shape[0]):
        u, v, z = int_lif_step(u, v, torch.as_tensor(a[t]), fmt=LOIHI2, **kw)
        out.append(z.numpy())
    return np.array(out)


def test_if_neuron_fires_on_the_third_step() -> None:
    # a non-leaky IF (du=4095, dv=0): u = a << 6, v accumulates, fires when v > vth << 6, resets
    z = _run(np.full((4, 1), 40), du=4095, dv=0, vth=100, bias=0)
    assert z[:, 0].tolist() == [0, 0, 1, 0]          # 40*64*3 = 7680 > 6400


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 4095), st.integers(0, 4095), st.integers(0, 2000), st.integers(-300, 300), st.integers(0, 10**6))
def test_equals_lava_equations(du: int, dv: int, vth: int, bias: int, seed: int) -> None:
    a = np.random.default_rng(seed).integers(-2000, 5000, size=(10, 5))   # large inputs exercise wrap and clip
    got = _run(a, du=du, dv=dv, vth=vth, bias=bias)
    assert got.tolist() == lava_lif_reference(a.tolist(), du=du, dv=dv, vth=vth, bias=bias)
