"""Simulated chips: refuse what they cannot host (naming node and limit), export what they can."""

from __future__ import annotations

import json

import nir
import numpy as np
import pytest
import torch

from neuroposter.profiling.profiles import load_profile
from neuroposter.targets.base import ExportRequest
from neuroposter.targets.chips import check_chip
from neuroposter.testing.graphs import chain_graph, sdt_like_graph


def test_xylo_refuses_threshold_and_conv_fan_in() -> None:
    ok, violations, _ = check_chip(sdt_like_graph(), load_profile("xylo"))
    assert not ok
    assert any("'attn.and_kv' (Threshold)" in v for v in violations)


def test_truenorth_refuses_fan_in_above_its_crossbar() -> None:
    ok, violations, _ = check_chip(chain_graph(sizes=(300, 20, 10, 3)), load_profile("truenorth"))
    assert not ok
    assert any("fan-in 300 of node 'lif0'" in v and "256" in v for v in violations)


def test_speck_refuses_lif() -> None:
    ok, violations, _ = check_chip(chain_graph(), load_profile("speck"))
    assert not ok and any("'lif0' (LIF)" in v for v in violations)


def test_spinnaker_hosts_a_small_chain() -> None:
    ok, violations, _ = check_chip(chain_graph(), load_profile("spinnaker"))
    assert ok, violations


@pytest.mark.slow
@pytest.mark.parametrize("chip", ["spinnaker", "spinnaker2", "truenorth", "xylo", "speck"])
def test_every_chip_exports_or_refuses_the_sdt_naming_the_limit(monkeypatch, tmp_path, chip, stub_run) -> None:
    from neuroposter.models.sdt import SDTConfig, SpikeDrivenTransformer
    from neuroposter.targets import get_exporter

    def export(request):
        return get_exporter(request.target)(request)

    torch.manual_seed(0)
    model = SpikeDrivenTransformer(SDTConfig(d_in=8, n_tokens=3, d_model=8, depth=1, heads=2, mlp_hidden=8,
                                             n_classes=3))
    stub_run(model, "sdt", (np.random.default_rng(1).random((4, 3, 3, 8)) < 0.4).astype(np.uint8))
    res = export(ExportRequest(chip, tmp_path / "r", tmp_path / chip, tmp_path, {}))
    s = json.loads((res.out_dir / "summary.json").read_text())
    assert (res.out_dir / "mapping.json").is_file()
    if res.ok:
        assert s["verification"]["deployed_vs_trained"]["set_agreement"] >= 0.95
    elif res.failed:                        # hosted, but its arithmetic changes the trained model's decisions
        assert [g["metric"] for g in s["gates"] if not g["ok"]] == ["set_agreement"]
        assert "--min-trained-agreement" in s["reason"]
    else:
        assert "cannot host" in s["reason"] and "node '" in s["reason"]
        assert any("REFUSED" in line for line in res.lines)


@pytest.mark.slow
def test_chip_export_of_a_hostable_mlp(monkeypatch, tmp_path, stub_run) -> None:
    from neuroposter.models import build_model
    from neuroposter.targets import get_exporter

    def export(request):
        return get_exporter(request.target)(request)

    torch.manual_seed(0)
    model = build_model("snn-mlp", d_in=12, hidden1=10, hidden2=8, n_classes=3)
    stub_run(model, "snn-mlp", (np.random.default_rng(2).random((4, 4, 1, 12)) < 0.4).astype(np.uint8))
    res = export(ExportRequest("spinnaker", tmp_path / "r", tmp_path / "sp", tmp_path, {}))
    assert res.ok, res.lines
    assert (tmp_path / "sp" / "graph_q.nir").is_file()
    assert res.summary["precision"]["weight_bits"] == 16
    # 16-bit weights keep the trained model's decisions on the whole split (all 4 samples)
    vt = res.summary["verification"]["deployed_vs_trained"]
    assert vt["samples"] == 4 and vt["set_agreement"] == 1.0 and vt["micro_f1"]["diff"] == 0.0
    assert res.summary["gates"] == [{"check": "deployed_vs_trained", "metric": "set_agreement", "value": 1.0,
                                     "min": 0.95, "flag": "--min-trained-agreement", "ok": True}]


def _mlp_run(stub_run, samples: int = 6):
    from neuroposter.models import build_model

    torch.manual_seed(0)
    model = build_model("snn-mlp", d_in=12, hidden1=10, hidden2=8, n_classes=3)
    stub_run(model, "snn-mlp", (np.random.default_rng(2).random((4, samples, 1, 12)) < 0.4).astype(np.uint8))


@pytest.mark.slow
def test_chip_compares_with_the_trained_model_on_the_whole_split(tmp_path, stub_run) -> None:
    from neuroposter.targets import get_exporter

    _mlp_run(stub_run, samples=6)
    res = get_exporter("spinnaker")(ExportRequest("spinnaker", tmp_path / "r", tmp_path / "sp", tmp_path,
                                                  {"samples": 2}))
    s = res.summary
    assert s["samples"] == 6 and s["verification"]["deployed_vs_trained"]["samples"] == 6   # whole split
    assert s["quantization"]["spikes_quantised_vs_float_graph"]["samples"] == 2             # the --samples subset
    assert "vs_float_model" not in s["verification"] and "vs_float_graph" not in s["verification"]
    part = get_exporter("spinnaker")(ExportRequest("spinnaker", tmp_path / "r", tmp_path / "sp4", tmp_path,
                                                   {"samples": 2, "trained_samples": 4}))
    assert part.summary["verification"]["deployed_vs_trained"]["samples"] == 4


@pytest.mark.slow
def test_a_hosted_chip_whose_arithmetic_flips_the_decisions_fails(monkeypatch, tmp_path, stub_run) -> None:
    """Hosted (no limit violated) but deciding otherwise than the trained model: a failed verification kept as
    <name>.failed, with the verdict the demo reports (and goes on)."""
    import neuroposter.targets.chips as chips
    from neuroposter.cli.demo import _below_trained_agreement
    from neuroposter.targets import get_exporter

    _mlp_run(stub_run)
    real = chips._mean_output
    monkeypatch.setattr(chips, "_mean_output", lambda *a, **k: -real(*a, **k) - 1e-3)    # every decision flipped
    out = tmp_path / "export" / "spinnaker" / "snn-mlp"
    res = get_exporter("spinnaker")(ExportRequest("spinnaker", tmp_path / "r", out, tmp_path, {}))
    assert not res.ok and res.failed and res.out_dir == out.with_name("snn-mlp.failed") and not out.exists()
    s = json.loads((res.out_dir / "summary.json").read_text())
    assert s["verification"]["deployed_vs_trained"]["set_agreement"] == 0.0
    assert "genre set on 0.000 of 6 test samples" in s["reason"] and "--min-trained-agreement 0.95" in s["reason"]
    assert "neuroposter train --target spinnaker" in s["reason"]
    assert any(line.startswith("  FAILED:") for line in res.lines)
    argv = ["export", "--target", "spinnaker", "--run", "snn-mlp", "--export-root", str(tmp_path / "export")]
    assert _below_trained_agreement(argv, 0.0) == s["reason"]
    assert _below_trained_agreement(argv, 4e9) is None                    # a stale bundle from an earlier run


# ---------------------------------------------------------------------------------------------
# Threshold -> LIF(tau=dt) lowering and per-chip verdicts on the demo-sized SDT
# (d=64, depth 2, N=40 tokens, D_in=1664, T=4; random weights with perturbed BatchNorm so that every layer spikes)

DEMO_T = 4


@pytest.fixture(scope="module")
def demo_sdt():
    from neuroposter.testing.active_init import demo_sized_sdt

    return demo_sized_sdt(0)


@pytest.fixture(scope="module")
def demo_graph(demo_sdt):
    from neuroposter.ir import lower_model

    return lower_model(demo_sdt, T=DEMO_T)


@pytest.fixture(scope="module")
def demo_input(demo_sdt):

    g = torch.Generator().manual_seed(2)
    return (torch.rand(DEMO_T, 6, 40, 1664, generator=g) < 0.1).float().numpy()


def test_threshold_lowers_to_full_leak_lif_exactly(demo_graph, demo_input) -> None:
    import nir

    from neuroposter.ir import simulate
    from neuroposter.ir.lower import to_graph_input
    from neuroposter.ir.graph import flatten
    from neuroposter.targets.chips import lower_for_profile

    lowered, applied, refused = lower_for_profile(demo_graph, load_profile("spinnaker2"))
    assert [e["node"] for e in applied] == ["blocks.0.attn.and_kv", "blocks.0.attn.and_qkv",
                                            "blocks.1.attn.and_kv", "blocks.1.attn.and_qkv"] and not refused
    flat = {p: n.nir for p, n in flatten(lowered).nodes.items()}
    assert not any(isinstance(n, nir.Threshold) for n in flat.values())
    lif = flat["blocks.0.attn.and_kv"]
    assert isinstance(lif, nir.LIF) and np.all(lif.tau == 1.0) and np.all(lif.r == 1.0)
    assert np.all(lif.v_leak == 0.0) and np.all(lif.v_reset == 0.0) and np.all(lif.v_threshold == 1.5)
    assert not any(isinstance(n, nir.LIF) and "lowered_from" in n.metadata
                   for n in (x.nir for x in flatten(demo_graph).nodes.values()))          # the input graph is untouched
    x = to_graph_input(demo_input, demo_graph)
    a = simulate(demo_graph, x, mode="same_step", arithmetic="float")
    b = simulate(lowered, x, mode="same_step", arithmetic="float")
    assert set(a.records) == set(b.records)
    for k in a.records:                                        # spike for spike, every population
        np.testing.assert_array_equal(a.records[k], b.records[k], err_msg=k)
    np.testing.assert_array_equal(a.output, b.output)
    for k in ("blocks.0.attn.and_kv", "blocks.0.attn.and_qkv", "blocks.1.attn.and_qkv"):
        assert 0 < a.records[k].mean() < 1, k                 # the ANDs do fire (and not everywhere)


def test_lowering_only_where_exact() -> None:
    from neuroposter.targets.chips import lower_for_profile

    g = sdt_like_graph()
    for chip, n_lowered, n_refused in (("spinnaker", 2, 0), ("spinnaker2", 2, 0), ("xylo", 0, 2), ("speck", 0, 2),
                                       ("truenorth", 0, 0), ("loihi2", 0, 0)):
        _, applied, refused = lower_for_profile(g, load_profile(chip))
        assert (len(applied), len(refused)) == (n_lowered, n_refused), chip
    _, _, refused = lower_for_profile(g, load_profile("xylo"))
    assert "dash_syn = 0" in refused[0]["reason"]
    _, _, refused = lower_for_profile(g, load_profile("speck"))
    assert "IAF only" in refused[0]["reason"]


def test_lowering_follows_the_profiles_full_leak(tmp_path) -> None:
    """The capability is read from the profile (limits.full_leak), not from the chip's name."""
    import yaml

    from neuroposter.targets.chips import lower_for_profile

    raw = yaml.safe_load(load_profile("spinnaker2").path.read_text(encoding="utf-8"))
    g = sdt_like_graph()
    for value, n_lowered in ((None, 0), (False, 0), (True, 2)):
        raw["limits"]["full_leak"] = {"value": value, "note": "test reason"}
        path = tmp_path / "spinnaker2.yaml"                # same name as the shipped profile
        path.write_text(yaml.safe_dump(raw), encoding="utf-8")
        _, applied, refused = lower_for_profile(g, load_profile(path))
        assert (len(applied), len(refused)) == (n_lowered, 2 - n_lowered), value
        reasons = [e["why"] for e in applied] + [e["reason"] for e in refused]
        if value is None:
            assert all("can be set to full leak is unknown" in r and "limits.full_leak" in r for r in reasons)
        else:
            assert reasons == ["test reason"] * 2
    del raw["limits"]["full_leak"]                           # absent = unknown: no lowering
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    _, applied, refused = lower_for_profile(g, load_profile(path))
    assert not applied and len(refused) == 2


EXPECTED = {   # chip -> (Threshold nodes lowered, fragments every one of which the violations must contain)
    # (SpiNNaker and SpiNNaker 2 now host the demo SDT partitioned over their systems' chips:
    # tests/targets/test_partition.py::test_demo_sdt_fits_partitioned)
    "truenorth": (0, ["fan-in 2048 of node 'head_sn' (LIF) exceeds the fan_in limit 256; a split into partial sums "
                      "is not exact on truenorth"]),
    "xylo": (0, ["node 'blocks.0.attn.and_kv' (Threshold): node type Threshold is not supported by xylo",
                 "not lowered to LIF(tau=dt): Xylo's neuron", "needs 48768 neurons > neurons_per_chip 1000",
                 "fan-in 1664 of node 'blocks.0.attn.sn_in' (LIF) exceeds the fan_in limit 63",
                 "fan-out 256 of node 'blocks.0.attn.and_qkv' (Threshold) exceeds the fan_out limit 64",
                 "input 'input' has 66560 channels > inputs_per_chip 16",
                 "output 'output' has 10 channels > outputs_per_chip 8"]),
    "speck": (0, ["node 'blocks.0.attn.sn_in' (LIF): node type LIF is not supported by speck",
                  "node 'blocks.0.attn.and_kv' (Threshold)", "IAF only", "19 neuron layers > max_layers 9",
                  "destination populations 3 of node 'blocks.0.attn.sn_in' (LIF) exceeds the fan_out limit 2"]),
}


@pytest.mark.parametrize("chip", sorted(EXPECTED))
def test_demo_sdt_verdict_per_chip(demo_graph, chip) -> None:
    ok, violations, m = check_chip(demo_graph, load_profile(chip))
    n_lowered, fragments = EXPECTED[chip]
    assert len(m["lowerings"]) == n_lowered
    assert not ok                                              # the demo SDT fits none of these five chips
    for f in fragments:
        assert any(f in v for v in violations), (f, violations)
    if n_lowered:                                              # decided by limits, no longer by the node type
        assert not any("Threshold" in v and "not hosted" in v for v in violations)
        assert set(m["violated_limits"]) <= {"fan_in", "cores_per_chip", "memory_per_core_kb"}
    assert m["verdict"].startswith("does not fit: ") and all(k in m["verdict"] for k in m["violated_limits"])


def test_spinnaker_verdict_reports_unknown_limits(demo_graph) -> None:
    from neuroposter.targets.chips import limits_report

    _, _, m = check_chip(demo_graph, load_profile("spinnaker2"))
    assert {"neurons_per_core", "fan_in", "fan_out"} <= set(m["unchecked"])
    rep = limits_report(load_profile("spinnaker2"))
    assert {"neurons_per_core", "fan_in", "fan_out", "state_bits"} <= set(rep["unknown"])
    assert "py-spinnaker2" in rep["values"]["weight_bits"]["source"]
    rep1 = limits_report(load_profile("spinnaker"))
    assert "throughput budget" in rep1["values"]["fan_in"]["note"]


@pytest.mark.slow
def test_demo_sdt_on_spinnaker2_is_partitioned_over_the_board_with_precision_figures(monkeypatch, tmp_path, demo_sdt,
                                                                                     demo_input, stub_run) -> None:
    """The demo-size SDT needs more than one SpiNNaker 2 chip (25 MB of synapses > 19.9 MB of one chip's SRAM):
    the mapper places it over the profile's 48-chip board; the precision and lowering figures are reported."""
    from neuroposter.targets import get_exporter

    def export(request):
        return get_exporter(request.target)(request)

    stub_run(demo_sdt, "sdt", demo_input, n_classes=10)
    res = export(ExportRequest("spinnaker2", tmp_path / "r", tmp_path / "s2", tmp_path, {"min_trained_agreement": 0}))
    assert res.ok, res.lines
    s = json.loads((tmp_path / "s2" / "summary.json").read_text())
    mapping = json.loads((tmp_path / "s2" / "mapping.json").read_text())
    assert s["mapping"]["fits"] and s["mapping"]["violated_limits"] == {}
    place = mapping["placement"]
    assert place["system_chips"] == 48 and 1 < place["chips_used"] <= 48
    assert sum(place["cores_per_chip"]) == mapping["totals"]["cores"]
    assert max(place["cores_per_chip"]) <= 152          # cores_per_chip of the profile
    assert "fits on" in s["mapping"]["verdict"] and "of 48 chips" in s["mapping"]["verdict"]
    assert [e["node"] for e in s["lowerings"]][0] == "blocks.0.attn.and_kv"
    v, sq = s["verification"], s["quantization"]["spikes_quantised_vs_float_graph"]
    assert v["lowering"]["exact"] and v["lowering"]["mismatched_spikes"] == 0
    assert 0.0 <= v["deployed_vs_trained"]["set_agreement"] <= 1.0 and "intervals" in v["deployed_vs_trained"]
    assert set(sq["spike_agreement_per_layer"]) >= {"blocks.0.attn.and_kv", "head_sn"}
    # 8-bit weights with biases as (float) neuron offsets: most spikes survive
    assert "left float" in s["precision"]["bias"] and sq["spike_agreement_min"] > 0.9
    assert "neurons_per_core" in s["limits"]["unknown"]
    assert (tmp_path / "s2" / "graph_q.nir").exists() and (tmp_path / "s2" / "op_counts.json").exists()


@pytest.mark.slow
def test_small_sdt_exports_on_spinnaker2_after_lowering(monkeypatch, tmp_path, stub_run) -> None:
    from neuroposter.models.sdt import SDTConfig, SpikeDrivenTransformer
    from neuroposter.targets import get_exporter

    def export(request):
        return get_exporter(request.target)(request)

    torch.manual_seed(0)
    model = SpikeDrivenTransformer(SDTConfig(d_in=8, n_tokens=3, d_model=8, depth=1, heads=2, mlp_hidden=8,
                                             n_classes=3))
    stub_run(model, "sdt", (np.random.default_rng(1).random((4, 3, 3, 8)) < 0.4).astype(np.uint8))
    res = export(ExportRequest("spinnaker2", tmp_path / "r", tmp_path / "s2", tmp_path, {"min_trained_agreement": 0}))
    assert res.ok, res.lines
    s = res.summary
    assert len(s["lowerings"]) == 2 and s["verification"]["lowering"]["exact"]
    assert s["precision"]["weight_bits"] == 8
    assert 0.0 <= s["verification"]["deployed_vs_trained"]["set_agreement"] <= 1.0
    assert (tmp_path / "s2" / "graph_q.nir").is_file()


# ------------------------------------------------------------------- chip-fitted networks: vendor check, op counts


def _xylo_chain(seed: int = 0):
    """A small trained-statistics Xylo chain (host 20 -> 8, chip 8 -> 10 -> 3) and pooled spikes [T, B, 1, 20]."""
    from neuroposter.models.chip_snn import ChipSNN

    torch.manual_seed(seed)
    model = ChipSNN(d_in=20, n_classes=3, host_dim=8, widths=[10], neuron="xylo",
                    neuron_params={"v_th": 0.5, "alpha": 20.0})
    x = (np.random.default_rng(seed).random((4, 24, 1, 20)) < 0.5).astype(np.uint8)
    model.train()
    with torch.no_grad():
        for _ in range(5):          # running statistics of the pooled spikes
            model(torch.from_numpy(x).float())
    return model.eval(), x


@pytest.mark.slow
def test_xylo_bundle_is_verified_in_xylosim_and_stores_chip_and_host_counts(tmp_path, stub_run) -> None:
    from neuroposter.profiling.stored import read_op_counts
    from neuroposter.targets import get_exporter

    model, x = _xylo_chain()
    stub_run(model, "chip-snn", x)
    res = get_exporter("xylo")(ExportRequest("xylo", tmp_path / "r", tmp_path / "b", tmp_path,
                                             {"min_trained_agreement": 0, "vendor_samples": 5, "count_samples": 6}))
    assert res.ok, res.lines
    s = json.loads((tmp_path / "b" / "summary.json").read_text())
    ven = s["verification"]["vendor"]
    assert ven["simulator"].startswith("xylosim") and ven["bit_accurate"] and ven["exact"]
    assert ven["samples"] == 5 and ven["spikes_compared"] > 0 and "logits" not in ven
    assert "integer arithmetic" in s["verification"]["deployed_vs_trained"]["networks"]["deployed"]
    assert s["mapping"]["fits"] and "fits on 1 chip" in s["mapping"]["verdict"]
    counts = read_op_counts(tmp_path / "b")
    assert set(counts) == {"model", "host"} and counts["model"].counts.samples == 6
    assert {lc.name for lc in counts["host"].counts.layers} == {"host", "host_sn"}
    assert any("xylosim" in line and "spike for spike" in line for line in res.lines)


def test_a_bit_accurate_vendor_simulator_that_disagrees_fails_the_export(tmp_path, stub_run, monkeypatch) -> None:
    import neuroposter.targets.vendor.xylo as vx
    from neuroposter.targets import get_exporter

    model, x = _xylo_chain(1)
    stub_run(model, "chip-snn", x)
    monkeypatch.setattr(vx, "check", lambda g, xs, profile: {
        "simulator": "xylosim (stub)", "version": "0", "samples": int(xs.shape[1]), "spikes_compared": 100,
        "mismatched_spikes": 3, "exact": False, "bit_accurate": True, "logits": []})
    res = get_exporter("xylo")(ExportRequest("xylo", tmp_path / "r", tmp_path / "b", tmp_path,
                                             {"min_trained_agreement": 0, "vendor_samples": 2}))
    assert not res.ok and res.failed                  # a failed verification, kept as <name>.failed
    assert "differs from the project's integer reference on 3 of 100 spikes" in res.summary["reason"]
    assert {"check": "vendor", "metric": "mismatched_spikes", "value": 3.0, "max": 1.0,
            "flag": "none (a bit-accurate simulator must agree spike for spike)", "ok": False} in res.summary["gates"]
    assert not (tmp_path / "b").exists()


def test_speck_fan_out_counts_destination_layers(tmp_path) -> None:
    """Speck's fan_out (2) bounds a layer's destination layers (limits.fan_out_unit: population), not a neuron's
    postsynaptic neurons: a 3-layer IF chain of 128-wide layers fits; a layer feeding three layers does not."""
    from neuroposter.targets.chips import check_chip

    def lin(n_out, n_in):
        return nir.Linear(weight=np.ones((n_out, n_in)))

    def if_(n):
        return nir.IF(r=np.ones(n), v_threshold=np.ones(n), v_reset=np.zeros(n))

    nodes = {"input": nir.Input(input_type=np.array([16])), "fc0": lin(128, 16), "sn0": if_(128),
             "fc1": lin(128, 128), "sn1": if_(128), "head": lin(4, 128), "output": nir.Output(output_type=np.array([4]))}
    chain = nir.NIRGraph(nodes=nodes, edges=[("input", "fc0"), ("fc0", "sn0"), ("sn0", "fc1"), ("fc1", "sn1"),
                                             ("sn1", "head"), ("head", "output")])
    ok, violations, m = check_chip(chain, load_profile("speck"))
    assert not any("fan_out" in v or "destination" in v for v in violations), violations
    assert m["layers"]["sn0"]["fan_out"] == 1
    branchy = dict(nodes, fa=lin(128, 128), sa=if_(128), fb=lin(128, 128), sb=if_(128))
    edges = [("input", "fc0"), ("fc0", "sn0"), ("sn0", "fc1"), ("fc1", "sn1"), ("sn0", "fa"), ("fa", "sa"),
             ("sn0", "fb"), ("fb", "sb"), ("sn1", "head"), ("sa", "head"), ("sb", "head"), ("head", "output")]
    ok, violations, m = check_chip(nir.NIRGraph(nodes=branchy, edges=edges, type_check=False), load_profile("speck"))
    assert any("destination populations 3 of node 'sn0'" in v and "fan_out limit 2" in v for v in violations), violations


def test_truenorth_fan_out_counts_destination_cores() -> None:
    """TrueNorth's one axon per neuron reaches every neuron of one core (limits.fan_out_unit: core): a dense
    256 -> 128 -> 8 chain needs no neuron copies; a 256 -> 512 layer needs two axons (one copy more) per neuron."""
    from neuroposter.ir import lower_model
    from neuroposter.models.chip_snn import ChipSNN

    torch.manual_seed(0)
    small = lower_model(ChipSNN(d_in=64, n_classes=8, host_dim=0, widths=[256, 128], neuron="if").eval(), T=2)
    ok, violations, m = check_chip(small, load_profile("truenorth"))
    assert ok, violations
    assert {k: (v["fan_out"], v["copies"]) for k, v in m["layers"].items()} == {"layers.0.sn": (1, 1),
                                                                             "layers.1.sn": (1, 1)}
    wide = lower_model(ChipSNN(d_in=64, n_classes=8, host_dim=0, widths=[256, 512], neuron="if").eval(), T=2)
    ok, violations, m = check_chip(wide, load_profile("truenorth"))
    assert m["layers"]["layers.0.sn"]["fan_out"] == 2 and m["layers"]["layers.0.sn"]["copies"] == 2
    assert any("destination cores" in n for n in m["notes"])
