"""Resource mapping and fit / no-fit verdicts (with small stand-in profiles)."""

from __future__ import annotations

from types import SimpleNamespace

from neuroposter.targets.mapping import map_graph
from neuroposter.testing.graphs import chain_graph, sdt_like_graph


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


def test_verdict_names_every_violated_limit_with_numbers() -> None:
    m = map_graph(sdt_like_graph(), _profile(neurons_per_core=8, cores_per_chip=4, neurons_per_chip=50, fan_in=3,
                                             fan_out=2, weight_bits=8, memory_per_core_kb=0.01,
                                             supports_weight_sharing=False))
    assert not m.fits
    assert set(m.violated_limits) == {"fan_in", "fan_out", "cores_per_chip", "neurons_per_chip", "memory_per_core_kb"}
    vl = m.violated_limits
    assert vl["neurons_per_chip"]["needed"] == 88 and vl["neurons_per_chip"]["available"] == 50
    assert vl["fan_in"]["available"] == 3 and vl["fan_in"]["needed"] == max(l.fan_in for l in m.layers)
    for k, e in vl.items():
        assert f"{k}: needs {e['needed']} > available {e['available']}" in m.verdict
    assert sum("fan-in" in v for v in m.violations) == len(vl["fan_in"]["nodes"]) > 1


def test_synapse_memory_lower_bound() -> None:
    # chip-wide store (SpiNNaker SDRAM style): total weight bytes against memory_per_chip_mb
    m = map_graph(sdt_like_graph(), _profile(weight_bits=16, memory_per_chip_mb=1e-4, supports_weight_sharing=False))
    need = m.totals["stored_synapses"] * 2
    assert m.totals["synapse_bytes_min"] == need
    assert any(f"needs at least {need} bytes of synapse memory" in v and "memory_per_chip_mb" in v
               for v in m.violations)
    # unknown weight width: not checked, and said so
    m = map_graph(sdt_like_graph(), _profile(memory_per_chip_mb=1e-4))
    assert m.fits and any(u.startswith("synapse memory") for u in m.unchecked) and "weight_bits" in m.unchecked
