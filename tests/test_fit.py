"""Chip-fitted models: the derivation from real profiles (every limit checked against the profile's own values),
the chip-snn's shapes, its lowering (host placement; the reference simulator reproduces the model), its
quantisation-aware connections, the 1-bit / n-bit weight grids, and ``neuroposter fit`` end to end."""

from __future__ import annotations

import math
from pathlib import Path

import nir
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from neuroposter.ir.lower import lower_model, to_graph_input
from neuroposter.ir.qat import Arithmetic, connections, deployed_weights, enable, quantize_tensor
from neuroposter.ir.quantize import quantize_nbit
from neuroposter.ir.simulate import simulate
from neuroposter.models.chip_snn import ChipSNN
from neuroposter.profiling.profiles import HardwareProfile, load_profile
from neuroposter.targets.fit import FitError, FitPlan, derive_fit, needs_fit

CHIPS = ("truenorth", "xylo", "speck", "spinnaker", "spinnaker2")
D_IN, N_CLASSES, T = 1664, 8, 4


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


# ------------------------------------------------------------------------------------------- derivation


def _accepting(lim) -> list[int]:
    out = [lim.inputs_per_chip, lim.max_channels]
    if lim.fan_in_split != "exact":
        out.append(lim.fan_in)
    return [int(v) for v in out if v is not None]


@pytest.mark.parametrize("chip", CHIPS)
def test_the_derived_plan_respects_every_limit_of_the_real_profile(chip: str) -> None:
    prof = load_profile(chip)
    lim = prof.limits
    plan = derive_fit(chip, D_IN, N_CLASSES, T)
    dims = [plan.chip_in, *plan.widths, N_CLASSES]
    accept = _accepting(lim)
    # the host projection exists exactly when the features exceed what the chip accepts (or its kernel memory)
    if accept and D_IN > min(accept):
        assert 0 < plan.host_dim <= min(accept)
    for k in accept:
        assert plan.chip_in <= k
    if lim.fan_in is not None and lim.fan_in_split != "exact":
        assert max(dims[:-1]) <= lim.fan_in                      # every chip layer's fan-in
    if lim.max_channels is not None:
        assert max(dims[:-1]) <= lim.max_channels
    if lim.fan_out is not None and lim.fan_out_split != "exact" and N_CLASSES <= lim.fan_out:
        assert max(dims[1:]) <= lim.fan_out                       # destinations of every neuron
    if lim.neurons_per_chip is not None:
        assert sum(plan.widths) + (0 if lim.outputs_per_chip else N_CLASSES) <= lim.neurons_per_chip
    if lim.outputs_per_chip is not None:
        assert N_CLASSES <= lim.outputs_per_chip
    if lim.max_layers is not None:
        assert len(plan.widths) + 1 <= lim.max_layers
    for i, k in enumerate(lim.kernel_memory_per_core or ()):
        if i < len(dims) - 1:
            assert dims[i] * dims[i + 1] <= k
    assert plan.weight_bits == lim.weight_bits
    if prof.neuron is not None:
        assert plan.neuron == prof.neuron.model
    else:
        assert plan.neuron.upper() in lim.neuron_models
    assert all(w >= 1 for w in plan.widths) and plan.reasons


def test_the_reasons_name_the_limits_that_forced_each_decision() -> None:
    xylo = derive_fit("xylo", D_IN, N_CLASSES, T)
    assert xylo.host_dim == load_profile("xylo").limits.inputs_per_chip
    assert any(r.startswith(f"host projection {D_IN} -> {xylo.host_dim}: inputs_per_chip") for r in xylo.reasons)
    assert any("fan_in 63" in r for r in xylo.reasons)
    tn = derive_fit("truenorth", D_IN, N_CLASSES, T)
    assert any(r.startswith(f"host projection {D_IN} -> 256: fan_in 256") for r in tn.reasons)
    assert tn.weight_bits == 1 and tn.neuron == "if"
    speck = derive_fit("speck", D_IN, N_CLASSES, T)
    assert any("kernel_memory_per_core[0]" in r for r in speck.reasons) and speck.neuron == "if"


def test_too_many_classes_for_the_read_out_is_a_clear_error() -> None:
    opc = load_profile("xylo").limits.outputs_per_chip
    with pytest.raises(FitError, match=f"outputs_per_chip {opc}"):
        derive_fit("xylo", D_IN, opc + 2, T)


def _toy_profile(**limits) -> HardwareProfile:
    return HardwareProfile.from_mapping({"name": "toychip", "kind": "neuromorphic", "evidence": "derived",
                                         "scope": "per-term", "source": "a test", "limits": limits})


def test_a_new_profile_gets_a_fitted_model_from_its_limits_alone() -> None:
    prof = _toy_profile(inputs_per_chip=32, neurons_per_chip=100, fan_in=48, weight_bits=4,
                        neuron_models=["CubaLIF", "LIF"], max_layers=2)
    plan = derive_fit(prof, 500, 6, 8)
    assert plan.host_dim == 32 and len(plan.widths) == 1               # max_layers 2: one hidden + read-out
    assert plan.widths[0] <= 48 and plan.widths[0] + 6 <= 100
    assert plan.neuron == "lif" and plan.neuron_params == {"tau": 2.0, "v_th": 1.0} and plan.weight_bits == 4
    assert any("neuron_models" in r for r in plan.reasons)
    model = ChipSNN(**plan.to_model_kwargs())
    assert model(torch.zeros(3, 2, 1, 500)).shape == (3, 2, 6)


def test_neuron_budget_and_kernel_memory_shrink_the_widths() -> None:
    plan = derive_fit(_toy_profile(neurons_per_chip=90, neuron_models=["IF"]), 20, 4, 2)
    assert sum(plan.widths) <= 90 - 4 and any("neurons_per_chip 90" in r for r in plan.reasons)
    plan = derive_fit(_toy_profile(kernel_memory_per_core=[400, 400, 400], neuron_models=["IF"]), 50, 4, 2)
    dims = [plan.chip_in, *plan.widths, 4]
    assert all(a * b <= 400 for a, b in zip(dims, dims[1:])) and plan.host_dim > 0
    with pytest.raises(FitError, match="no neuron"):
        derive_fit(_toy_profile(neuron_models=["Izhikevich"]), 20, 4, 2)


def test_needs_fit_reads_the_mapping_verdict() -> None:
    assert needs_fit({"fits": False}) and not needs_fit({"fits": True})


# ------------------------------------------------------------------------------------------- model


def _pooled(T: int, B: int, D: int, p: float = 0.3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, B, 1, D, generator=g, dtype=torch.float64) < p).double()


def _trained_stats(model: ChipSNN, x: torch.Tensor) -> ChipSNN:
    """BatchNorm statistics from a few training-mode passes, then eval mode."""
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(x)
    return model.eval()


def test_model_shapes_and_config_round_trip() -> None:
    plan = FitPlan(profile="p", d_in=40, n_classes=5, T=3, host_dim=12, widths=(16, 9), neuron="if",
                   neuron_params={"v_th": 1.0})
    kwargs = plan.to_model_kwargs()
    import json

    model = ChipSNN(**json.loads(json.dumps(kwargs)))                  # plain JSON: model.json rebuilds it
    assert model.cfg.to_dict() == {**kwargs, "tau": 2.0, "v_th": 1.0}
    assert model.host.weight.shape == (12, 40) and [l.fc.weight.shape for l in model.layers] == [(16, 12), (9, 16)]
    assert model(_pooled(3, 2, 40).float()).shape == (3, 2, 5)
    assert model(_pooled(3, 2, 40).float()[:, :, 0]).shape == (3, 2, 5)
    with pytest.raises(ValueError, match="pooled"):
        model(torch.zeros(3, 2, 4, 40))
    assert not hasattr(ChipSNN(d_in=8, n_classes=2, widths=[4]), "host")


@pytest.mark.parametrize("neuron, params", [("lif", {"tau": 2.0, "v_th": 1.0}), ("if", {"v_th": 1.0}),
                                            ("xylo", {"v_th": 0.5, "alpha": 20.0})])
@pytest.mark.parametrize("host_dim", [0, 12])
def test_the_reference_simulator_reproduces_the_model(neuron: str, params: dict, host_dim: int) -> None:
    torch.manual_seed(0)
    model = ChipSNN(d_in=40, n_classes=5, host_dim=host_dim, widths=[16, 9], neuron=neuron,
                    neuron_params=params).double()
    x = _pooled(6, 24, 40)
    model = _trained_stats(model, x)
    with torch.no_grad():
        want = model(x).numpy()
    graph = lower_model(model, T=6)
    got = simulate(graph, to_graph_input(x, graph), mode="same_step", arithmetic="float").aligned_output()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(got.mean(0).argmax(-1), want.mean(0).argmax(-1))
    host = {k for k, v in graph.nodes.items() if (v.metadata or {}).get("placement") == "host"}
    assert host == ({"host", "host_sn"} if host_dim else set())
    kinds = {k: type(v).__name__ for k, v in graph.nodes.items()}
    assert kinds["layers.0.sn"] == {"lif": "LIF", "if": "IF", "xylo": "CubaLIF"}[neuron]
    # Xylo's synapses take no bias: its layers are scale-normalised and lower to plain Linear nodes
    assert {kinds["layers.0.fc"], kinds["layers.1.fc"]} == {"Linear" if neuron == "xylo" else "Affine"}
    assert graph.metadata["model"] == "chip-snn" and graph.metadata["layout"] == "flat"


def test_chip_quantisation_leaves_the_host_projection_in_float() -> None:
    torch.manual_seed(0)
    model = _trained_stats(ChipSNN(d_in=30, n_classes=4, host_dim=10, widths=[8], neuron="if").double(),
                           _pooled(4, 16, 30))
    graph = lower_model(model, T=4)
    graph_q, report = quantize_nbit(graph, weight_bits=1, state_bits=8)
    for name in ("host", "host_sn"):
        for attr, v in vars(graph.nodes[name]).items():
            if isinstance(v, np.ndarray):
                np.testing.assert_array_equal(getattr(graph_q.nodes[name], attr), v, err_msg=f"{name}.{attr}")
    for name in ("layers.0.fc", "head"):
        assert len(np.unique(np.abs(graph_q.nodes[name].weight))) <= 2       # sign x one magnitude
    assert {l.node for l in report.layers} == {"layers.0.fc", "layers.0.sn", "head"}


def test_qat_connections_are_the_chip_connections_and_deploy_what_they_compute() -> None:
    torch.manual_seed(0)
    x = _pooled(4, 16, 30)
    model = _trained_stats(ChipSNN(d_in=30, n_classes=4, host_dim=10, widths=[8, 6], neuron="if").double(), x)
    assert [c.path for c in connections(model)] == ["layers.0.fc", "layers.1.fc", "head"]
    arith = Arithmetic("truenorth", "truenorth", "grid", 1)
    enable(model, arith)
    for path, w in deployed_weights(model, arith).items():
        assert len(np.unique(w[w != 0])) <= 2, path
    with torch.no_grad():
        want = model(x).numpy()
    graph = lower_model(model, T=4)                          # holds the trained (1-bit) weights
    np.testing.assert_allclose(graph.nodes["layers.0.fc"].weight, deployed_weights(model, arith)["layers.0.fc"])
    got = simulate(graph, to_graph_input(x, graph)).aligned_output()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)
    graph_q, _ = quantize_nbit(graph, weight_bits=1)          # the chip's quantiser keeps the trained weights
    for c in ("layers.0.fc", "layers.1.fc", "head"):
        np.testing.assert_allclose(graph_q.nodes[c].weight, graph.nodes[c].weight, rtol=1e-12, atol=0)


# ------------------------------------------------------------------------------------------- weight grids


_weights = arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(1, 6)),
                  elements=st.floats(-4, 4, allow_nan=False, allow_subnormal=False))


def _nbit(w: np.ndarray, bits: int) -> np.ndarray:
    g = nir.NIRGraph(nodes={"input": nir.Input(input_type=np.array([w.shape[1]])),
                            "fc": nir.Linear(weight=w.copy()),
                            "output": nir.Output(output_type=np.array([w.shape[0]]))},
                     edges=[("input", "fc"), ("fc", "output")])
    return np.asarray(quantize_nbit(g, weight_bits=bits)[0].nodes["fc"].weight)


@settings(max_examples=60, deadline=None)
@given(w=_weights, bits=st.integers(1, 8))
def test_weight_grid_properties(w: np.ndarray, bits: int) -> None:
    q = quantize_tensor(torch.from_numpy(w), "grid", bits).numpy()
    np.testing.assert_allclose(_nbit(w, bits), q, rtol=1e-12, atol=1e-12)          # export == training grid
    q2 = quantize_tensor(torch.from_numpy(q), "grid", bits).numpy()
    np.testing.assert_allclose(q2, q, rtol=1e-9, atol=1e-12)                        # idempotent
    levels = np.unique(q)
    assert len(levels) <= 2 ** bits if bits > 1 else len(levels[levels != 0]) <= 2  # 1 bit: {-a, +a} (+ no synapse)
    assert np.all((np.sign(q) == np.sign(w)) | (q == 0))                            # sign-preserving
    if bits == 1:
        assert np.all(np.sign(q) == np.sign(w))                                     # 1 bit: every sign kept
        nz = w[w != 0]
        if nz.size:
            assert math.isclose(float(np.abs(q[q != 0]).max()), float(np.abs(nz).mean()), rel_tol=1e-12)


# ------------------------------------------------------------------------------------------- end to end


def _task(n: int = 96, T: int = 4, D: int = 300, G: int = 4, seed: int = 0):
    """Pooled spikes where genre ``g`` raises the firing probability of channels ``[g*k, (g+1)*k)``."""
    from neuroposter.train.data import SplitData, TaskData

    rng = np.random.default_rng(seed)
    labels = (rng.random((n, G)) < 0.3).astype(np.float32)
    labels[np.arange(n), rng.integers(0, G, n)] = 1.0
    p = np.full((n, 1, D), 0.05)
    k = D // (2 * G)
    for g in range(G):
        p[labels[:, g] == 1, :, g * k:(g + 1) * k] = 0.6
    x = torch.from_numpy((rng.random((n, T, 1, D)) < p[:, None]).astype(np.uint8))
    y = torch.from_numpy(labels)
    a, b = n // 2, 3 * n // 4
    return TaskData(SplitData(x[:a], y[:a]), SplitData(x[a:b], y[a:b]), SplitData(x[b:], y[b:]),
                    [f"g{i}" for i in range(G)], "spikes", meta={"T": T, "n_tokens": 1, "d_in": D, "form": "pooled"},
                    inputs_manifest={"encoded": {"path": "memory", "key": f"fake-{seed}"}})


FIT_EXPECT = {   # chip -> (host width, neuron, weight bits, vendor simulator or None)
    "truenorth": (256, "if", 1, None),
    "xylo": (16, "xylo", 8, "xylosim"),
    "speck": (128, "if", 8, "sinabs"),
}


@pytest.mark.slow
@pytest.mark.parametrize("chip", sorted(FIT_EXPECT))
def test_fit_derives_trains_exports_and_verifies(chip: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    import neuroposter.targets.inputs as inputs
    import neuroposter.train as train_pkg
    from neuroposter._io import read_json
    from neuroposter.cli import main

    task = _task()
    monkeypatch.setattr(train_pkg, "load_task_data", lambda model, ws, **kw: (task, None))

    def evaluation_inputs(loaded, run_dir, *, samples, split="test", seed=None):
        x = task.test.inputs.permute(1, 0, 2, 3).numpy()
        k = min(int(samples), x.shape[1])
        return inputs.EvalInputs(x[:, :k], task.test.labels.numpy()[:k].astype(np.uint8), np.arange(k), "encoded",
                                 Path("stub"), "stub", split, int(x.shape[0]), genres=list(task.genres))

    monkeypatch.setattr(inputs, "evaluation_inputs", evaluation_inputs)
    host, neuron, bits, vendor = FIT_EXPECT[chip]
    code = main(["fit", "--target", chip, "-w", str(tmp_path / "ws"), "--export-root", str(tmp_path / "ex"),
                 "--epochs", "6", "--qat-epochs", "3", "--batch-size", "16", "--device", "cpu", "--threads", "1"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"fit {chip}: host 300 -> {host}" in out and "fits and verified" in out
    spec = read_json(tmp_path / "ws" / "runs" / f"fit-{chip}" / "model.json")
    assert spec["model"] == "chip-snn" and spec["kwargs"]["host_dim"] == host and spec["kwargs"]["neuron"] == neuron
    assert spec["deploy"]["weight_bits"] == bits
    bundle = tmp_path / "ex" / chip / f"fit-{chip}"
    summary = read_json(bundle / "summary.json")
    assert summary["ok"] and summary["mapping"]["fits"]
    agree = summary["verification"]["deployed_vs_trained"]
    metrics = read_json(tmp_path / "ws" / "runs" / f"fit-{chip}" / "metrics.json")
    base = max(v["map"] for v in metrics["baselines"].values())
    assert metrics["test"]["map"] > base                         # learnt something beyond the constant baseline
    assert agree["set_agreement"] >= 0.95 and agree["samples"] == len(task.test.labels)
    # the vendor simulator ran the deployed network beside the project's reference, spike for spike
    ven = summary["verification"].get("vendor")
    if vendor is None:
        assert ven is None
    else:
        assert ven["simulator"].startswith(vendor) and ven["exact"] and ven["spikes_compared"] > 0, ven
    if chip == "xylo":   # deployed accuracy from Xylo's integer arithmetic, not the float reference simulator
        assert "integer arithmetic" in agree["networks"]["deployed"]
    # op counts of the deployed graph: the chip part (it spikes) and the host projection
    from neuroposter.profiling.stored import read_op_counts

    counts = read_op_counts(bundle)
    assert set(counts) == {"model", "host"}
    assert counts["model"].counts.synops > 0 and counts["host"].counts.synops > 0
    assert {lc.name for lc in counts["host"].counts.layers} == {"host", "host_sn"}


def test_fit_refuses_a_token_encoded_set_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    import neuroposter.train as train_pkg
    from neuroposter.cli import main

    task = _task(n=16, D=20)
    task.meta["n_tokens"] = 5
    monkeypatch.setattr(train_pkg, "load_task_data", lambda model, ws, **kw: (task, None))
    code = main(["fit", "--target", "xylo", "-w", str(tmp_path), "--encoded", "default", "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--encoded pooled" in err[0]
