"""Loihi 2 / n-bit quantisation: weight quantiser properties and the integer graph's semantics."""

from __future__ import annotations

import os

import nir
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from neuroposter.ir.graph import flatten
from neuroposter.ir.quantize import QuantizationError, quantize_nbit
from neuroposter.targets.loihi.fixed_point import quantize_loihi, quantize_weights
from neuroposter.testing.graphs import chain_graph, random_spikes, sdt_like_graph, threshold_and_graph

from neuroposter.profiling.profiles import load_profile

LOIHI2 = load_profile("loihi2")

finite = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_infinity=False)
weights = arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(1, 6)), elements=finite)


@settings(max_examples=200, deadline=None)
@given(weights)
def test_mantissa_in_signed_8bit_range_and_error_within_half_step(w: np.ndarray) -> None:
    q = quantize_weights(w, bits=8)
    assert q.mantissa.dtype == np.int32
    assert np.all(np.abs(q.mantissa) <= 127)
    assert np.all(np.abs(q.dequantize() - w) <= q.step / 2 * (1 + 1e-9))


@settings(max_examples=200, deadline=None)
@given(weights)
def test_exponent_is_the_smallest_that_fits(w: np.ndarray) -> None:
    q = quantize_weights(w)
    amax = np.abs(w).max()
    if not q.mantissa.any():  # only vanishing weights (at the 1e-30 floor) quantise to all zeros
        assert q.exp == 0 and amax < 2e-30
    else:
        assert amax / 2.0 ** q.exp <= 127
        assert amax / 2.0 ** (q.exp - 1) > 127


@settings(max_examples=200, deadline=None)
@given(weights, st.integers(2, 12))
def test_idempotent(w: np.ndarray, bits: int) -> None:
    q = quantize_weights(w, bits=bits)
    q2 = quantize_weights(q.dequantize(), bits=bits)
    assert q2.exp == q.exp or not q.mantissa.any()
    np.testing.assert_array_equal(q2.mantissa, q.mantissa)


@pytest.mark.parametrize("factory", [chain_graph, threshold_and_graph, sdt_like_graph])
def test_integer_graph_round_trips_and_is_integral(factory, tmp_path) -> None:
    gi, rep = quantize_loihi(factory(), LOIHI2)
    path = os.path.join(tmp_path, "g.nir")
    nir.write(path, gi)
    back = nir.read(path)
    for name, node in back.nodes.items():
        meta = (node.metadata or {}).get("loihi")
        if isinstance(node, (nir.Affine, nir.Linear, nir.Conv1d, nir.Scale)):
            w = np.asarray(node.scale if isinstance(node, nir.Scale) else node.weight)
            assert np.all(np.mod(w, 1) == 0) and np.abs(w).max() <= 256, name
            assert "weight_exp" in meta
        if isinstance(node, (nir.LIF, nir.Threshold)):
            assert 0 <= int(meta["vth"]) < 2 ** 17 and 0 <= int(meta["du"]) < 4096 and 0 <= int(meta["dv"]) < 4096
            assert np.abs(np.asarray(meta["bias_mant"])).max() < 4096
    assert all(l.rel_weight_error is None or l.rel_weight_error < 0.02 for l in rep.layers)


def test_threshold_and_maps_to_full_decay_lif() -> None:
    gi, _ = quantize_loihi(threshold_and_graph(), LOIHI2)
    meta = gi.nodes["and"].metadata["loihi"]
    assert (meta["du"], meta["dv"]) == (4095, 4095)
    # the identity synapses are explicit Scale nodes
    assert any(isinstance(n, nir.Scale) for n in gi.nodes.values())


def test_integer_graph_equals_reference_simulator_per_hop() -> None:
    from neuroposter.ir.retime import retime
    from neuroposter.ir.simulate import simulate
    from neuroposter.targets.loihi.builder import plan_network
    from neuroposter.testing.emulate import emulate

    g = sdt_like_graph()
    gi, _ = quantize_loihi(g, LOIHI2)
    plan = plan_network(gi, max_delay=LOIHI2.limits.max_delay)
    x = random_spikes(5, 4, (6, 3), p=0.5, seed=3)
    em = emulate(plan, x)
    ref = simulate(gi, x, mode="per_hop", arithmetic="int", delays=retime(gi).delays)
    assert ref.latency == plan.latency
    from neuroposter.targets.loihi.target import reference_readout_int

    out = next(iter(plan.outputs))
    np.testing.assert_array_equal(reference_readout_int(plan, ref), em.output[out].reshape(5, 4, -1))
    for name, spk in em.spikes.items():
        np.testing.assert_array_equal(np.asarray(ref.aligned(name)), spk)


def test_nonzero_reset_is_refused_naming_the_node() -> None:
    g = chain_graph()
    g.nodes["lif0"].v_reset = np.full(10, 0.3)
    with pytest.raises(QuantizationError, match="lif0"):
        quantize_loihi(g, LOIHI2)


def test_nbit_quantisation_reduces_levels() -> None:
    g = chain_graph()
    gq, rep = quantize_nbit(g, weight_bits=4, state_bits=8)
    fg = flatten(gq)
    w = np.asarray(fg.nodes["fc0"].nir.weight)
    assert len(np.unique(np.round(w / (np.abs(w).max() / 7), 6))) <= 15
    assert all(l.rel_weight_error is None or l.rel_weight_error < 0.2 for l in rep.layers)


def test_nbit_biases_are_neuron_offsets_not_clipped_to_the_weight_grid() -> None:
    g = chain_graph()
    fc = flatten(g).nodes["fc0"].nir
    big = np.abs(np.asarray(fc.weight)).max() * 20  # BN-folded biases are often much larger than weights
    g_big = chain_graph()
    for name, node in g_big.nodes.items():
        if name == "fc0":
            node.bias = np.linspace(-big, big, np.asarray(node.bias).size)
    gq, _ = quantize_nbit(g_big, weight_bits=4, state_bits=8)
    b = np.asarray(flatten(gq).nodes["fc0"].nir.bias)
    b0 = np.asarray(flatten(g_big).nodes["fc0"].nir.bias)
    assert np.max(np.abs(b - b0)) <= big / 127 / 2 + 1e-12  # within half a state_bits step, not clipped
    gq_float, _ = quantize_nbit(g_big, weight_bits=4, state_bits=None)
    np.testing.assert_array_equal(np.asarray(flatten(gq_float).nodes["fc0"].nir.bias), b0)


@settings(max_examples=200, deadline=None)
@given(th=st.floats(1e-6, 1e6, allow_nan=False, allow_infinity=False), bits=st.integers(5, 32))
def test_state_grid_keeps_the_threshold_a_level_and_room_for_8x(th: float, bits: int) -> None:
    """Quantising neuron states never moves a threshold (it used to become v_th * 1.00003 on 16 bits), and membranes
    up to 8x the threshold stay representable."""
    from neuroposter.ir.quantize import _state_ref, grid

    ref = _state_ref(th, bits)
    assert ref >= 8 * th
    assert grid(np.array([th]), bits, ref)[0] == pytest.approx(th, rel=1e-15, abs=0)
