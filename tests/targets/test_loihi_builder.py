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
from neuroposter.targets.loihi.builder import _shards, default_workers, plan_network
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


def test_default_workers_and_shards() -> None:
    # one Lava runtime keeps about two cores busy: a second pays off from four cores, 8+ samples each
    assert default_workers(115, cores=2) == 1
    assert default_workers(115, cores=4) == 2 and default_workers(115, cores=16) == 2
    assert default_workers(15, cores=16) == 1 and default_workers(16, cores=16) == 2
    assert default_workers(3, cores=1) == 1 and default_workers(0, cores=8) == 1
    assert _shards(115, 2) == [(0, 58), (58, 115)] and _shards(5, 1) == [(0, 5)]
    assert _shards(3, 3) == [(0, 1), (1, 2), (2, 3)]


@pytest.mark.lava
@pytest.mark.slow
def test_two_lava_workers_equal_one() -> None:
    from neuroposter.targets.loihi.builder import run_lava

    gi, _ = quantize_loihi(sdt_like_graph(), LOIHI2)
    plan = plan_network(gi, max_delay=LOIHI2.limits.max_delay)
    x = random_spikes(4, 5, (6, 3), p=0.45, seed=3)
    one = run_lava(plan, x, workers=1)
    two = run_lava(plan, x, workers=2, chunk=2, progress_desc="lava")   # shards of 3 and 2, runs of <= 2
    assert two.steps == 3 * 4 + 2 * plan.latency + 2 * 4 + plan.latency   # runs: 2+1 and 2 samples
    for k in one.output:
        np.testing.assert_array_equal(two.output[k], one.output[k])
        np.testing.assert_array_equal(two.logits[k], one.logits[k])
    assert set(two.spikes) == set(one.spikes)
    for k in one.spikes:
        np.testing.assert_array_equal(two.spikes[k], one.spikes[k], err_msg=k)
    ref = simulate(gi, x, mode="per_hop", arithmetic="int", delays=retime(gi).delays)
    out = next(iter(plan.outputs))
    np.testing.assert_array_equal(two.output[out].reshape(reference_readout_int(plan, ref).shape),
                                  reference_readout_int(plan, ref))


@pytest.mark.lava
@pytest.mark.slow
def test_a_failing_lava_worker_raises_in_the_caller(monkeypatch) -> None:
    from neuroposter.targets.loihi import builder

    plan = plan_network(quantize_loihi(chain_graph(), LOIHI2)[0], max_delay=LOIHI2.limits.max_delay)

    def broken(*args, **kwargs):
        raise ValueError("no network today")

    monkeypatch.setattr(builder, "build_lava", broken)   # inherited by the forked workers
    with pytest.raises(ValueError, match="no network today"):
        builder.run_lava(plan, random_spikes(4, 4, (12,), p=0.5), workers=2)
