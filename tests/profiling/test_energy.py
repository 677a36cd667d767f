"""Energy arithmetic on hand-computed examples (both SDT first-layer conventions, ranges, all-in refusal)."""

from __future__ import annotations

import pytest

from neuroposter.profiling.counts import LayerCounts, OpCounts
from neuroposter.profiling.energy import estimate_energy, memory_access_pj
from neuroposter.profiling.profiles import load_profile


@pytest.fixture
def snn():
    """T=4; encoding layer dense 1000 MACs/step; a hidden layer with 300 synops; one LIF layer; one AND mask."""
    layers = (
        LayerCounts("embed", "Conv1d", "synapse", dense_ops=4000, effective_acs=800, n_weights=100,
                    weight_bytes=100, weight_fetches=800, events_in=80, in_shape=(10,)),
        LayerCounts("lif1", "LIF", "neuron", n_neurons=50, spikes=40, updates_dense=200, updates_effective=120,
                    state_bytes=100),
        LayerCounts("fc", "Affine", "synapse", dense_ops=2000, effective_acs=300, n_weights=500,
                    weight_bytes=500, weight_fetches=300, events_in=40, in_shape=(50,)),
        LayerCounts("and", "Threshold", "mask", n_neurons=10, spikes=5, updates_dense=40, updates_effective=16),
    )
    return OpCounts("toy", "snn", T=4, samples=1, layers=layers)


@pytest.fixture
def ann():
    return OpCounts("cnn", "ann", T=1, samples=1, layers=(
        LayerCounts("conv", "Conv", "mac", dense_ops=1e6, effective_macs=1e6, other_ops=1e3, n_weights=100,
                    weight_bytes=400, out_shape=(10, 10)),))


def test_sdt_paper_both_first_layer_conventions(snn):
    once = estimate_energy(snn, "horowitz_45nm_fp32", view="sdt_paper", first_layer="once")
    xt = estimate_energy(snn, "horowitz_45nm_fp32", view="sdt_paper", first_layer="xT")
    # once: 1000 MAC x 4.6 + 300 AC x 0.9 = 4600 + 270
    assert once.total_pj == pytest.approx(4870.0)
    # xT: 4000 MAC x 4.6 + 270 = 18670
    assert xt.total_pj == pytest.approx(18670.0)
    assert once.variant == "first_layer=once" and xt.variant == "first_layer=xT"
    assert once.per_layer == pytest.approx({"embed": 4600.0, "fc": 270.0})
    assert once.term_pj("encoding_mac") == pytest.approx(4600.0)
    assert any("SDSA masks" in x for x in once.excludes)


def test_precision_view(snn, ann):
    e = estimate_energy(snn, "horowitz_45nm_int8", view="precision")
    # synops (800+300) x 0.03 + neuron 200 x (0.23 + 0.03) + mask 16 x 0.03
    assert e.total_pj == pytest.approx(1100 * 0.03 + 200 * 0.26 + 16 * 0.03)
    a = estimate_energy(ann, "horowitz_45nm_fp16", view="precision")
    assert a.total_pj == pytest.approx(1e6 * 1.5 + 1e3 * 0.4)


def test_device_per_term_loihi(snn):
    e = estimate_energy(snn, "loihi", view="device")
    # synops 1100 x 23.6; active 120+16 x 81; idle (80+24) x 52; spikes 45 x 1.7
    expect = 1100 * 23.6 + 136 * 81 + 104 * 52 + 45 * 1.7
    assert e.total_pj == pytest.approx(expect)
    # 23.6 is a minimum: the range is unbounded above
    assert e.low_pj == pytest.approx(expect) and e.high_pj is None
    s = estimate_energy(snn, "spinnaker2", view="device")
    assert s.total_pj == pytest.approx(1100 * 450 + 240 * 2190)


def test_device_all_in_truenorth_and_refusals(snn):
    e = estimate_energy(snn, "truenorth", view="device")
    assert e.total_pj == pytest.approx(1100 * 26)
    assert [t.term for t in e.terms] == ["synop_allin"]
    with pytest.raises(ValueError, match="all-in"):
        estimate_energy(snn, "truenorth", view="device", extras=["static"], latency_s=1e-3)
    with pytest.raises(ValueError, match="all-in"):
        estimate_energy(snn, "truenorth", view="memory")
    with pytest.raises(ValueError, match="all-in"):
        estimate_energy(snn, "truenorth", view="precision")


def test_static_extra_per_term(snn):
    e = estimate_energy(snn, "loihi", view="device", extras=["static"], latency_s=1e-3)
    base = estimate_energy(snn, "loihi", view="device")
    assert e.total_pj - base.total_pj == pytest.approx(104 * 1e-3 * 1e9)  # 104 mW x 1 ms = 104 uJ


def test_unpublished_constants_are_unavailable(snn, ann):
    e = estimate_energy(snn, "loihi2", view="device")
    assert not e.available and e.total_pj is None and "e_synop_pj" in e.reason
    assert not estimate_energy(ann, "loihi", view="device").available


def test_ann_lower_bound_range(ann):
    e = estimate_energy(ann, "a100_sxm", view="device")
    assert e.total_pj == pytest.approx(1e6 * 2.56 + 1e3 * 1.28)
    assert e.high_pj is None  # peak-derived lower bound
    d = estimate_energy(ann, "horowitz_45nm_fp32", view="precision")
    assert d.low_pj == d.high_pj == d.total_pj


def test_cpu_per_op(snn, ann):
    assert estimate_energy(ann, "cpu_i7_4960x", view="device").total_pj == pytest.approx(1e6 * 8600)
    assert estimate_energy(snn, "cpu_i7_4960x", view="device").total_pj == pytest.approx((1100 + 240) * 8600)


def test_memory_view_lemaire(snn):
    p = load_profile("lemaire_45nm")
    e = estimate_energy(snn, p, view="memory")
    acc = lambda bits: 13.2 + 1.09e-5 * bits  # noqa: E731
    expect = (1100 * 0.1 + 1100 * 0.1                                   # synaptic adds + addressing
              + 800 * acc(800) + 300 * acc(4000)                          # weight reads
              + 80 * acc(10 * 32) + 40 * acc(50 * 32)                     # input events
              + 200 * (3.1 + 0.1) + 2 * 200 * acc(50 * 16) + 40 * acc(50 * 32)   # LIF: leak, state r/w, spikes
              + 16 * 0.1 + 2 * 16 * acc(10 * 16) + 5 * acc(10 * 32))     # mask
    assert e.total_pj == pytest.approx(expect)
    h = load_profile("horowitz_45nm_fp32")
    assert memory_access_pj(h, 8 * 1024 * 8)[0] == 10
    assert memory_access_pj(h, 16 * 1024 * 8)[0] == pytest.approx(15.0)
    assert memory_access_pj(h, 10)[0] == 10 and memory_access_pj(h, 1e12)[0] == 100


def test_bad_view():
    with pytest.raises(ValueError, match="unknown energy view"):
        estimate_energy(OpCounts("x", "snn", 1, 1, ()), "loihi", view="magic")
