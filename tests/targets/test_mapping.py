"""Resource mapping and fit / no-fit verdicts (with small stand-in profiles)."""

from __future__ import annotations

from types import SimpleNamespace

from neuroposter.targets.loihi.examples import chain_graph, sdt_like_graph
from neuroposter.targets.mapping import map_graph


def _profile(**limits):
    base = dict(neurons_per_core=64, synapses_per_core=10_000, cores_per_chip=16, neurons_per_chip=None,
                synapses_per_chip=None, fan_in=None, fan_out=None, supports_weight_sharing=True,
                neuron_models=["LIF", "Threshold"], max_delay=62)
    base.update(limits)
    return SimpleNamespace(name="standin", limits=SimpleNamespace(**base), nir_nodes=frozenset())


def test_graph_that_fits() -> None:
    m = map_graph(sdt_like_graph(), _profile())
    assert m.fits and m.verdict.startswith("fits")
    t = m.totals
    assert t["neurons"] == 4 * 3 * 7 + 4                     # 7 populations of D*N neurons + kv_sn [D]
    # weight sharing: the embedding Conv1d is stored once per core (6*4 weights), not per token (6*4*3)
    emb = next(l for l in m.layers if l.node == "sn_in")
    assert emb.synapses == 6 * 4 * 3 and emb.stored == 6 * 4


def test_fan_in_violation_names_the_node() -> None:
    m = map_graph(chain_graph(sizes=(40, 10, 8, 3)), _profile(fan_in=16))
    assert not m.fits
    assert any("fan-in 40 of node 'lif0'" in v and "fan_in limit 16" in v for v in m.violations)


def test_neuron_model_and_capacity_violations() -> None:
    m = map_graph(sdt_like_graph(), _profile(neuron_models=["LIF"], neurons_per_chip=50))
    assert any("'attn.and_kv' (Threshold)" in v for v in m.violations)
    assert any("neurons_per_chip 50" in v for v in m.violations)


def test_no_weight_sharing_stores_every_synapse() -> None:
    m = map_graph(sdt_like_graph(), _profile(supports_weight_sharing=False))
    assert m.totals["stored_synapses"] == m.totals["synapses"]


def test_real_loihi2_profile() -> None:
    from neuroposter.profiling.profiles import load_profile

    m = map_graph(sdt_like_graph(), load_profile("loihi2"))
    assert m.fits and m.totals["chips"] == 1
