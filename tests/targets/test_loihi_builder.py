"""Loihi builder without Lava: type dispatch, re-timing, the integer emulator vs the reference simulator."""

from __future__ import annotations

import nir
import numpy as np
import pytest

from neuroposter.targets.loihi.fixed_point import quantize_loihi
from neuroposter.ir.retime import retime
from neuroposter.ir.simulate import simulate
from neuroposter.targets.base import UnsupportedNodeError
from neuroposter.targets.loihi.target import reference_readout_int
from neuroposter.targets.verify import prediction_agreement
from neuroposter.ir.connectivity import SYNAPSE_MATRIX
from neuroposter.targets.loihi.builder import plan_network
from neuroposter.testing.emulate import emulate
from neuroposter.testing.graphs import chain_graph, random_spikes, sdt_like_graph, threshold_and_graph

from neuroposter.profiling.profiles import load_profile

LOIHI2 = load_profile("loihi2")


@pytest.mark.parametrize("factory,shape", [(chain_graph, (12,)), (threshold_and_graph, (10,)),
                                           (sdt_like_graph, (6, 3))])
def test_emulator_equals_reference_per_hop_int(factory, shape) -> None:
    gi, _ = quantize_loihi(factory(), LOIHI2)
    plan = plan_network(gi, max_delay=LOIHI2.limits.max_delay)
    x = random_spikes(4, 6, shape, p=0.45, seed=1)
    em = emulate(plan, x)
    ref = simulate(gi, x, mode="per_hop", arithmetic="int", delays=retime(gi).delays)
    assert ref.latency == plan.latency
    out = next(iter(plan.outputs))
    np.testing.assert_array_equal(reference_readout_int(plan, ref), em.output[out].reshape(4, 6, -1))
    for name, spk in em.spikes.items():
        np.testing.assert_array_equal(np.asarray(ref.aligned(name)), spk, err_msg=name)


def test_sdt_like_retiming_and_latency() -> None:
    gi, _ = quantize_loihi(sdt_like_graph(), LOIHI2)
    plan = plan_network(gi, max_delay=LOIHI2.limits.max_delay)
    depth = {k: p.depth for k, p in plan.populations.items()}
    assert depth["sn_in"] == 1 and depth["attn.and_q"] == 5 and depth["head_sn"] == 6
    assert plan.latency == 7
    delayed = {(s.src, s.dst): s.delay for s in plan.synapses if s.delay}
    assert delayed[("attn.q_sn", "attn.and_q")] == 2          # Q waits for K AND V -> sum -> OR -> broadcast
    assert delayed[("input", "head_sn")] == 5                  # the membrane shortcut from the embedding


def test_sdt_like_int_close_to_float_same_step() -> None:
    g = sdt_like_graph()
    gi, _ = quantize_loihi(g, LOIHI2)
    plan = plan_network(gi, max_delay=LOIHI2.limits.max_delay)
    x = random_spikes(4, 8, (6, 3), p=0.45, seed=2)
    em = emulate(plan, x)
    fl = simulate(g, x, mode="same_step")
    for name, spk in em.spikes.items():
        assert (np.asarray(fl.records[name]) == spk).mean() > 0.95, name
    out = next(iter(plan.outputs))
    assert prediction_agreement(em.logits[out].mean(0), np.asarray(fl.output).mean(0)) >= 0.75


def test_type_keyed_dispatch_and_unsupported_node_named() -> None:
    assert nir.Conv1d in SYNAPSE_MATRIX and nir.Scale in SYNAPSE_MATRIX
    g = chain_graph()
    gi, _ = quantize_loihi(g, LOIHI2)
    gi.nodes["pool"] = nir.Delay(delay=np.ones(10))
    gi.edges.append(("lif0", "pool"))
    gi.edges.append(("pool", "fc1"))
    with pytest.raises(UnsupportedNodeError, match="'pool'"):
        plan_network(gi, max_delay=LOIHI2.limits.max_delay)


def test_unquantised_graph_is_refused() -> None:
    with pytest.raises(UnsupportedNodeError, match="quantise"):
        plan_network(chain_graph(), max_delay=LOIHI2.limits.max_delay)


def test_conv1d_block_diagonal_matrix() -> None:
    w = np.arange(6, dtype=np.int64).reshape(3, 2, 1) + 1
    node = nir.Conv1d(input_shape=4, weight=w.astype(float), stride=1, padding=0, dilation=1, groups=1,
                      bias=np.zeros(3))
    m = SYNAPSE_MATRIX[nir.Conv1d](node, (2, 4), (3, 4), w).toarray()
    x = np.random.default_rng(0).integers(0, 2, size=(2, 4))
    np.testing.assert_array_equal(m @ x.reshape(-1), np.einsum("oc,cn->on", w[:, :, 0], x).reshape(-1))
    assert np.count_nonzero(m) == 3 * 2 * 4                     # never a dense (D*N)^2 matrix
