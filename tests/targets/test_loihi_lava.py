"""Lava runs (CPU simulation): exact fixed point vs the reference, the AND and SDSA sub-graphs, netx."""

from __future__ import annotations

import numpy as np
import pytest

from neuroposter.targets.loihi.fixed_point import quantize_loihi
from neuroposter.ir.retime import retime
from neuroposter.ir.simulate import simulate
from neuroposter.targets.loihi.target import verify_plan
from neuroposter.testing.graphs import chain_graph, random_spikes, sdt_like_graph, threshold_and_graph

from neuroposter.profiling.profiles import load_profile

LOIHI2 = load_profile("loihi2")

pytestmark = [pytest.mark.lava, pytest.mark.slow]


def _run(factory, shape, *, tag="fixed_pt", batch=4, t=4, seed=0):
    from neuroposter.targets.loihi.builder import plan_network, run_lava

    gi, _ = quantize_loihi(factory(), LOIHI2)
    plan = plan_network(gi, max_delay=LOIHI2.limits.max_delay)
    x = random_spikes(t, batch, shape, p=0.45, seed=seed)
    res = run_lava(plan, x, select_tag=tag)
    ref = simulate(gi, x, mode="per_hop", arithmetic="int", delays=retime(gi).delays)
    return plan, res, ref


def test_chain_fixed_pt_exact_with_latency() -> None:
    plan, res, ref = _run(chain_graph, (12,))
    v = verify_plan(plan, res, ref)
    assert v["output_exact"] and v["prediction_agreement"] == 1.0
    assert v["latency"] == {"lava": 3, "reference": 3}             # 3 synapse hops
    assert all(a == 1.0 for a in v["spike_agreement_per_layer"].values())


def test_threshold_and_in_lava() -> None:
    plan, res, ref = _run(threshold_and_graph, (10,), batch=3)
    v = verify_plan(plan, res, ref)
    assert v["output_exact"] and v["spike_agreement_per_layer"]["and"] == 1.0
    a = res.spikes["a_sn"].astype(bool) & res.spikes["b_sn"].astype(bool)
    np.testing.assert_array_equal(res.spikes["and"].astype(bool), a)  # it is an AND


def test_sdsa_subgraph_in_lava_back_to_back_samples() -> None:
    plan, res, ref = _run(sdt_like_graph, (6, 3), batch=5)
    v = verify_plan(plan, res, ref)
    assert v["output_exact"], v
    assert v["latency"]["lava"] == 7 and all(a == 1.0 for a in v["spike_agreement_per_layer"].values())
    assert res.spikes["attn.and_kv"].any()                            # the AND path is exercised


def test_floating_pt_model_runs() -> None:
    plan, res, ref = _run(sdt_like_graph, (6, 3), tag="floating_pt", batch=3)
    v = verify_plan(plan, res, ref)
    assert v["prediction_agreement"] >= 0.66


def test_netx_round_trip_on_a_tiny_chain(tmp_path) -> None:
    from neuroposter.targets.loihi.netx_export import export_and_check, is_chain

    g = chain_graph()
    assert is_chain(g) and not is_chain(sdt_like_graph())
    res = export_and_check(g, random_spikes(4, 3, (12,), p=0.5), LOIHI2, path=str(tmp_path / "net.net"))
    assert res["ok"] and res["output_exact"], res["spike_agreement_per_layer"]
    assert (tmp_path / "net.net").stat().st_size > 0
