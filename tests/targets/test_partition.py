"""Partitioned mapping over a chip system: placement, exact fan-in splits, fan-out copies, host placement and
structural synapse counts (checked against hand counts and against the expanded neuron-to-neuron matrices)."""

from __future__ import annotations

from types import SimpleNamespace

import nir
import numpy as np
import pytest

from neuroposter.ir.graph import flatten
from neuroposter.profiling.profiles import load_profile
from neuroposter.targets.mapping import map_graph, projection_counts
from neuroposter.targets.partition import ChipCapacity, place, slice_groups
from neuroposter.testing.graphs import chain_graph, sdt_like_graph


def _profile(chips: int = 1, system: str = "toy board", **limits):
    base = dict(neurons_per_core=10, synapses_per_core=None, cores_per_chip=2, neurons_per_chip=None,
                synapses_per_chip=None, fan_in=None, fan_out=None, supports_weight_sharing=False,
                neuron_models=["LIF", "Threshold"], max_delay=None, fan_in_split=None, fan_out_split=None)
    base.update(limits)
    return SimpleNamespace(name="toy", limits=SimpleNamespace(**base), nir_nodes=frozenset(),
                           system=SimpleNamespace(name=system, chips=chips))


# ------------------------------------------------------------------------------------------- placement


def test_slices_and_next_fit_placement_by_hand() -> None:
    groups = (slice_groups("a", 10, 7, 0, 1) + slice_groups("b", 21, 10, 0, 3)
              + slice_groups("c", 5, 0, 0, 1, synapse_cores_per_slice=1))
    assert [g.neurons for g in groups] == [10, 7, 7, 7, 5] and [g.stored for g in groups[1:4]] == [4, 3, 3]
    p = place(groups, ChipCapacity(cores=3))
    # chip 0: a, b0, b1 (3 cores); chip 1: b2 (1) + c (2 cores: neuron + synapse core) = 3
    assert p.cores_per_chip == [3, 3] and p.to_dict()["populations_per_chip"] == [["a", "b"], ["b", "c"]]
    p = place(groups, ChipCapacity(cores=3, neurons=15))
    assert [c.neurons for c in p.chips] == [10, 14, 12] and not p.too_big
    p = place(groups, ChipCapacity(cores=1))
    assert p.too_big and p.too_big[0][0].population == "c" and p.too_big[0][1] == ["cores"]


def test_three_populations_on_a_toy_system() -> None:
    # lif0 10, lif1 20, lif2 10 neurons; 10 neurons per core -> 1 + 2 + 1 cores; 2 cores per chip -> [2, 2]
    g = chain_graph(sizes=(4, 10, 20, 10, 3))
    m = map_graph(g, _profile(chips=3))
    assert m.fits, m.violations
    assert m.totals["cores"] == 4 and m.totals["chips"] == 2
    assert m.placement["cores_per_chip"] == [2, 2] and m.placement["neurons_per_chip"] == [20, 20]
    assert m.verdict.startswith("fits on 2 of 3 chips (toy board)")
    # 1 + 5 + 1 = 7 cores -> 4 chips > 3
    m = map_graph(chain_graph(sizes=(4, 10, 50, 10, 3)), _profile(chips=3))
    assert not m.fits and m.violated_limits["system_chips"] == {"needed": 4, "available": 3, "nodes": []}
    assert "needs 4 chips > 3 chips of the toy board" in m.violations[0]
    # one chip (no system): the classic single-chip verdict
    m = map_graph(g, _profile(chips=1))
    assert not m.fits and m.violated_limits["cores_per_chip"]["needed"] == 4
    assert any("needs 4 cores > cores_per_chip 2" in v for v in m.violations)


def test_checked_and_unchecked_are_named() -> None:
    m = map_graph(chain_graph(sizes=(4, 10, 20, 10, 3)), _profile(chips=3))
    assert "cores_per_chip" in m.checked and "chips (3 in the toy board)" in m.checked
    assert {"routing tables", "inter-chip bandwidth / spike traffic"} <= set(m.unchecked)
    assert "fan_in" in m.unchecked and "not modelled" in m.placement["policy"]


# ------------------------------------------------------------------------------------ fan-in / fan-out


def test_exact_fan_in_split_counts_synapse_cores() -> None:
    # lif0 has fan-in 40 > 16: ceil(40 / 16) = 3 partial sums; 10 neurons on 1 neuron core + 3 synapse cores
    g = chain_graph(sizes=(40, 10, 8, 3))
    m = map_graph(g, _profile(chips=4, fan_in=16, fan_in_split="exact", cores_per_chip=4))
    assert m.fits, m.violations
    lif0 = next(l for l in m.layers if l.node == "lif0")
    assert (lif0.fan_in_parts, lif0.neuron_cores, lif0.synapse_cores, lif0.cores) == (3, 1, 3, 4)
    assert m.totals["synapse_cores"] == 3 and m.totals["cores"] == 5
    assert m.placement["fan_in_splits"] == {"lif0": 3} and m.placement["cores_per_chip"] == [4, 1]
    assert "fan-in split into up to 3 partial sums on 1 population" in m.verdict
    # a slice and its synapse cores must share a chip: 4 cores do not fit a 2-core chip
    m = map_graph(g, _profile(chips=4, fan_in=16, fan_in_split="exact", cores_per_chip=2))
    assert not m.fits and "cores_per_chip" in m.violated_limits
    assert any("must sit on one chip" in v for v in m.violations)


def test_no_split_where_not_exact_or_unknown() -> None:
    g = chain_graph(sizes=(40, 10, 8, 3))
    m = map_graph(g, _profile(chips=4, fan_in=16, fan_in_split="none"))
    assert not m.fits and any("not exact on toy" in v for v in m.violations)
    m = map_graph(g, _profile(chips=4, fan_in=16))
    assert not m.fits and any("limits.fan_in_split unknown" in v for v in m.violations)


def test_truenorth_refuses_the_split_as_not_exact() -> None:
    m = map_graph(chain_graph(sizes=(300, 20, 10, 3)), load_profile("truenorth"))
    assert not m.fits
    v = next(v for v in m.violations if "fan-in 300 of node 'lif0'" in v)
    assert "not exact on truenorth" in v and "spike" in v


def test_exact_fan_out_copies() -> None:
    # lif0 (10 neurons) reaches the 8 neurons of lif1: fan-out 8 > 4 -> 2 copies of each neuron
    m = map_graph(chain_graph(sizes=(4, 10, 8, 3)), _profile(chips=4, fan_out=4, fan_out_split="exact"))
    assert m.fits, m.violations
    lif0 = next(l for l in m.layers if l.node == "lif0")
    assert lif0.copies == 2 and lif0.stored == 2 * 4 * 10 and lif0.neuron_cores == 2
    assert m.totals["copy_neurons"] == 10 and m.totals["neurons"] == 10 * 2 + 8
    m = map_graph(chain_graph(sizes=(4, 10, 8, 3)), _profile(chips=4, fan_out=4))
    assert not m.fits and "fan_out" in m.violated_limits


# ----------------------------------------------------------------------------------------- host placement


def _host_graph() -> nir.NIRGraph:
    rng = np.random.default_rng(0)

    def lif(n: int, **meta) -> nir.LIF:
        return nir.LIF(tau=np.full(n, 2.0), r=np.ones(n), v_leak=np.zeros(n), v_threshold=np.ones(n),
                       v_reset=np.zeros(n), metadata=meta)

    nodes = {
        "input": nir.Input(input_type={"input": np.array([6])}),
        "proj": nir.Affine(weight=rng.normal(size=(5, 6)), bias=np.zeros(5), metadata={"placement": "host"}),
        "proj_sn": lif(5, placement="host"),
        "fc": nir.Affine(weight=rng.normal(size=(4, 5)), bias=np.zeros(4)),
        "sn": lif(4),
        "head": nir.Affine(weight=rng.normal(size=(3, 4)), bias=np.zeros(3)),
        "output": nir.Output(output_type={"output": np.array([3])}),
    }
    edges = [("input", "proj"), ("proj", "proj_sn"), ("proj_sn", "fc"), ("fc", "sn"), ("sn", "head"),
             ("head", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1.0})


def test_host_nodes_are_sources_not_chip_populations() -> None:
    m = map_graph(_host_graph(), _profile(chips=1, neuron_models=["LIF"], inputs_per_chip=5))
    assert [l.node for l in m.layers] == ["sn"] and m.host == ["proj", "proj_sn"]
    assert m.totals["neurons"] == 4 and m.totals["synapses"] == 4 * 5
    assert m.totals["inputs"] == [5]                      # the chip's input channels: the host LIF's outputs
    assert m.fits, m.violations
    m = map_graph(_host_graph(), _profile(chips=1, neuron_models=["LIF"], inputs_per_chip=4))
    assert "input 'proj_sn' has 5 channels > inputs_per_chip 4" in m.violations


# ---------------------------------------------------------------------------- structural == expanded counts


def _assert_structural_equals_expanded(graph: nir.NIRGraph) -> int:
    fg = flatten(graph)
    n = 0
    for p in fg.projections():
        a, b = projection_counts(fg, p), projection_counts(fg, p, expand=True)
        np.testing.assert_array_equal(a.fan_in, b.fan_in, err_msg=f"{p.src}->{p.dst}")
        np.testing.assert_array_equal(a.fan_out, b.fan_out, err_msg=f"{p.src}->{p.dst}")
        assert a.synapses == b.synapses, (p.src, p.dst)
        n += a.structural
    return n


def test_structural_counts_equal_expansion_on_small_graphs() -> None:
    assert _assert_structural_equals_expanded(sdt_like_graph()) > 0
    assert _assert_structural_equals_expanded(chain_graph(sizes=(12, 10, 8, 3))) > 0


def test_structural_counts_equal_expansion_on_a_tiny_sdt() -> None:
    import torch

    from neuroposter.ir import lower_model
    from neuroposter.models.sdt import SDTConfig, SpikeDrivenTransformer
    from neuroposter.testing.active_init import spiking_random_init

    torch.manual_seed(0)
    model = spiking_random_init(SpikeDrivenTransformer(SDTConfig(d_in=24, n_tokens=5, d_model=8, depth=2, heads=2,
                                                                 mlp_hidden=16, n_classes=3)))
    with torch.no_grad():                      # some zero weights, so that the non-zero pattern matters
        for mod in model.modules():
            if isinstance(mod, torch.nn.Linear):
                mod.weight[mod.weight.abs() < 0.05] = 0.0
    g = lower_model(model, T=2)
    assert _assert_structural_equals_expanded(g) == len(flatten(g).projections())


# ---------------------------------------------------------------------------------- real profiles


def test_profiles_describe_their_systems() -> None:
    chips = {c: load_profile(c).system.chips for c in ("spinnaker", "spinnaker2", "loihi2", "truenorth", "xylo",
                                                        "speck", "loihi")}
    assert chips == {"spinnaker": 48, "spinnaker2": 48, "loihi2": 8, "truenorth": 16, "xylo": 1, "speck": 1,
                     "loihi": 1}
    assert load_profile("spinnaker").limits.fan_in_split == "exact"
    assert load_profile("truenorth").limits.fan_in_split == "none"
    assert "sPyNNaker" in load_profile("spinnaker").limits.sources["fan_in_split"]


@pytest.fixture(scope="module")
def demo_graph():
    from neuroposter.ir import lower_model
    from neuroposter.testing.active_init import demo_sized_sdt

    return lower_model(demo_sized_sdt(0), T=4)


@pytest.mark.parametrize("chip, chips, cores, synapse_cores", [("spinnaker", 6, 92, 33), ("spinnaker2", 2, 206, 0),
                                                               ("loihi2", 1, 19, 0)])
def test_demo_sdt_fits_partitioned(demo_graph, chip, chips, cores, synapse_cores) -> None:
    from neuroposter.targets.chips import check_chip

    ok, violations, m = check_chip(demo_graph, load_profile(chip))
    assert ok, violations
    t = m["totals"]
    assert (t["chips"], t["cores"], t["synapse_cores"]) == (chips, cores, synapse_cores)
    assert sum(m["placement"]["cores_per_chip"]) == cores
    cpc = load_profile(chip).limits.cores_per_chip
    assert max(m["placement"]["cores_per_chip"]) <= cpc
    assert m["verdict"].startswith(f"fits on {chips} of {load_profile(chip).system.chips} chips")
    if chip == "spinnaker":   # synapse memory per chip within the 128 MB SDRAM
        assert max(m["placement"]["synapse_bytes_per_chip"]) <= 128 * 2 ** 20
        assert "fan-in split into up to 3 partial sums" in m["verdict"]
