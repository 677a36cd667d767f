"""The convolutional variant of the pixel SDT fitted to a conv chip (``chip-cnn``, ``fit --input images``): the plan
derived from a profile (every chip layer checked against the profile's own numbers), the model against a plain-torch
reference written here, its lowering in the reference simulator, the per-core checks, sinabs' conv chain spike for
spike (and that the check can fail), and ``neuroposter fit --target speck --input images`` end to end."""

from __future__ import annotations

from pathlib import Path

import nir
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from neuroposter.ir.lower import lower_model, to_graph_input
from neuroposter.ir.qat import Arithmetic, connections, enable
from neuroposter.ir.quantize import quantize_nbit
from neuroposter.ir.simulate import simulate
from neuroposter.models.chip_cnn import ChipCNN
from neuroposter.profiling.profiles import HardwareProfile, load_profile
from neuroposter.targets.conv_cores import core_usage
from neuroposter.targets.fit import FitError, derive_conv_fit

S, C, T = 16, 5, 4


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _toy(facts: dict | None = None, **limits) -> HardwareProfile:
    base = {"weight_bits": 6, "neuron_models": ["IF"], "max_kernel_size": 8, "max_channels": 512}
    return HardwareProfile.from_mapping({"name": "toyconv", "kind": "neuromorphic", "evidence": "derived",
                                         "scope": "per-term", "source": "a test", "limits": {**base, **limits},
                                         "facts": dict(facts or {}),
                                         "nir_nodes": ["Input", "Output", "Conv2d", "IF", "SumPool2d", "Flatten",
                                                       "Affine"]})


def _randomise_norms(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial eval statistics (a BatchNorm's mean and shift only where it has them: ScaleNorm2d has none)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) * 1.5 + 0.5)
            if type(m) is torch.nn.BatchNorm2d:
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 0.4 - 0.2)
                m.bias.data.copy_(torch.rand(m.num_features, generator=g) * 0.9 - 0.3)
    return model.eval()


# ------------------------------------------------------------------------------------------- derivation


@pytest.mark.parametrize("size", [16, 32, 64])
def test_the_speck_plan_respects_every_per_core_limit_of_the_profile(size: int) -> None:
    prof = load_profile("speck")
    lim = prof.limits
    plan = derive_conv_fit("speck", size, 10, T)
    chip = [lay for lay in plan.layers if lay.placement == "chip"]
    assert len(chip) == plan.chip_layers <= lim.max_layers
    assert [lay.core for lay in chip] == list(range(len(chip)))
    for lay in chip:
        assert lay.c_in * lay.c_out * lay.kernel ** 2 <= lim.kernel_memory_per_core[lay.core]
        neurons = lay.c_out if lay.role == "readout" else lay.c_out * lay.side_in ** 2
        assert neurons <= lim.neuron_memory_per_core[lay.core]
        assert max(lay.c_in, lay.c_out) <= lim.max_channels or lay.role == "readout"
        assert lay.kernel <= lim.max_kernel_size
        assert lay.side_in <= prof.facts["max_output_fmap_side_count"]
    assert chip[0].side_in <= prof.facts["max_input_side_count"]
    # the pixel SDT's stem: conv3x3 -> neuron -> 2x2 pool twice, c1 = 16 then d = 64 channels (no limit caps them)
    assert [(lay.c_out, lay.kernel, lay.pool) for lay in plan.layers[:2]] == [(16, 3, 2), (64, 3, 2)]
    assert plan.layers[-1].role == "readout" and plan.layers[-1].c_out == 10
    assert plan.neuron == "if" and plan.weight_bits == 8
    # Speck's cores take events: the analog first layer runs on the host
    assert plan.layers[0].placement == "host" and plan.host_layers == 1


def test_the_reasons_say_why_sdsa_and_shortcuts_are_not_on_the_chip() -> None:
    plan = derive_conv_fit("speck", 32, 10, T)
    text = "\n".join(plan.reasons)
    assert "SDSA blocks not on the chip" in text and "full_leak" in text
    assert "membrane shortcuts not on the chip" in text and "fan_out 2" in text
    assert "kernel_memory_per_core[1] 16384" in text          # 64 x 64 x 3x3 = 36864 does not fit core 1
    assert any(r.startswith("weights: 8-bit") for r in plan.reasons)


def test_another_conv_profile_gets_its_own_plan() -> None:
    prof = _toy(max_layers=3, kernel_memory_per_core=[4096, 4096, 2048], neuron_memory_per_core=[8192, 4096, 64])
    plan = derive_conv_fit(prof, 16, 4, 2)
    assert plan.host_layers == 1 and plan.chip_layers == 3          # max_layers 3: conv2, one block layer, read-out
    host, a, b, ro = plan.layers
    assert (host.c_in, host.c_out, host.placement) == (3, 16, "host")
    assert (a.c_in, a.c_out) == (16, 4096 // (16 * 9))               # kernel memory of core 0 caps d = 64 to 28
    assert b.role == "sdsa" and b.c_in == a.c_out
    assert ro.role == "readout" and ro.c_out == 4 and ro.c_in * 4 <= 2048
    assert any("max_layers 3" in r for r in plan.reasons)
    assert plan.weight_bits == 6 and plan.conv_bias                 # no state_bits: biases stay as trained
    for lay in plan.layers[1:]:
        assert lay.kernel_entries <= prof.limits.kernel_memory_per_core[lay.core]
        assert lay.neurons <= prof.limits.neuron_memory_per_core[lay.core]
    model = ChipCNN(**plan.to_model_kwargs())
    assert model(torch.zeros(3, 3, 16, 16)).shape == (2, 3, 4)


def test_limits_no_width_can_meet_are_named() -> None:
    with pytest.raises(FitError, match="max_input_side_count 8"):
        derive_conv_fit(_toy(facts={"max_input_side_count": 8}), 32, 4, 2)
    with pytest.raises(FitError, match="max_layers 1"):             # the stem's chip layer + the read-out need 2
        derive_conv_fit(_toy(max_layers=1), 32, 4, 2)
    with pytest.raises(FitError, match="multiple of 4"):
        derive_conv_fit("speck", 30, 4, 2)


# ------------------------------------------------------------------------------------------- the model


def _reference_forward(model: ChipCNN, images: torch.Tensor) -> torch.Tensor:
    """conv -> BN (eval) -> IF (v += x; spike if v > v_th; v = 0 where spiked) -> 2x2 sum pool, by hand; then the
    Linear read-out per step. Written from the definitions, not from the model's code."""
    x = images.unsqueeze(0).expand(model.T, *images.shape)
    for blk in model.convs:
        bn = blk.bn
        out = []
        v = None
        for t in range(model.T):
            h = F.conv2d(x[t], blk.conv.weight, None, padding=blk.conv.padding)
            mean = bn.running_mean if type(bn) is torch.nn.BatchNorm2d else torch.zeros_like(bn.running_mean)
            h = (h - mean[:, None, None]) / torch.sqrt(bn.running_var[:, None, None] + bn.eps)
            h = h * bn.weight[:, None, None] + (bn.bias[:, None, None] if type(bn) is torch.nn.BatchNorm2d else 0)
            v = h if v is None else v + h
            z = (v > blk.sn.v_th).to(h.dtype)
            v = torch.where(z > 0, torch.zeros_like(v), v)
            k = blk.pool.kernel
            if k > 1:
                z = z.reshape(*z.shape[:2], z.shape[2] // k, k, z.shape[3] // k, k).sum((3, 5))
            out.append(z)
        x = torch.stack(out)
    return torch.stack([x[t].reshape(x.shape[1], -1) @ model.head.weight.T + model.head.bias for t in range(model.T)])


@pytest.mark.parametrize("conv_bias,host_layers", [(True, 0), (False, 1)])
def test_the_model_is_conv_bn_if_sumpool_as_written_by_hand(conv_bias: bool, host_layers: int) -> None:
    torch.manual_seed(1)
    model = ChipCNN(n_classes=C, image_size=S, T=T, convs=[[6, 3, 2], [8, 3, 2], [8, 1, 1]],
                    host_layers=host_layers, neuron="if", neuron_params={"v_th": 1.0}, conv_bias=conv_bias).double()
    _randomise_norms(model)
    x = torch.randn(3, 3, S, S, dtype=torch.float64) * 1.5
    with torch.no_grad():
        got, want = model(x), _reference_forward(model, x)
    assert got.shape == (T, 3, C)
    assert torch.equal(got, want)
    assert 0 < model.firing_rates()["convs.1.sn"] < 1                   # the check is not about silent layers
    # time-first currents (what the graph receives step by step) give the same
    with torch.no_grad():
        assert torch.equal(model(x.unsqueeze(0).expand(T, *x.shape)), got)


def test_the_reference_simulator_reproduces_the_model_and_host_nodes_are_marked() -> None:
    plan = derive_conv_fit("speck", S, C, T)
    torch.manual_seed(0)
    model = _randomise_norms(ChipCNN(**plan.to_model_kwargs()).double())
    x = torch.randn(4, 3, S, S, dtype=torch.float64) * 1.5
    g = lower_model(model, T=T)
    assert g.metadata["layout"] == "images" and g.metadata["model"] == "chip-cnn"
    assert {type(n).__name__ for n in g.nodes.values()} <= {"Input", "Conv2d", "IF", "SumPool2d", "Flatten", "Affine",
                                                           "Output"}
    host = {k for k, n in g.nodes.items() if (n.metadata or {}).get("placement") == "host"}
    assert host == {"convs.0.conv", "convs.0.sn", "convs.0.pool"}
    # bias-free chip convolutions (Speck has state_bits): the folded graph has zero chip biases
    assert all(not np.any(np.asarray(g.nodes[f"convs.{i}.conv"].bias)) for i in range(1, len(model.convs)))
    res = simulate(g, to_graph_input(x.numpy(), g), mode="same_step", record=True)
    with torch.no_grad():
        y = model(x).numpy()
    assert np.array_equal(np.asarray(res.output, dtype=np.float64).reshape(y.shape), y)


def test_qat_connections_are_the_chip_layers_and_the_deployed_graph_is_what_was_trained() -> None:
    plan = derive_conv_fit("speck", S, C, T)
    torch.manual_seed(0)
    model = _randomise_norms(ChipCNN(**plan.to_model_kwargs()).double())
    assert [c.path for c in connections(model)] == [f"convs.{i}.conv" for i in range(1, len(model.convs))] + ["head"]
    enable(model, Arithmetic("speck", "speck", "grid", 8))
    x = torch.randn(4, 3, S, S, dtype=torch.float64) * 1.5
    g = lower_model(model, T=T)
    # the Speck export's weight grid (its state grid also moves every threshold by 1/4095.875 of a step: not here)
    gq, _ = quantize_nbit(g, weight_bits=8, state_bits=None)
    for i in range(1, len(model.convs)):
        w = np.asarray(gq.nodes[f"convs.{i}.conv"].weight)
        levels = w / (np.abs(w).max() / 127)
        assert np.allclose(levels, np.rint(levels), atol=1e-6)       # 8-bit grid
    res = simulate(gq, to_graph_input(x.numpy(), g), mode="same_step", record=False)
    with torch.no_grad():
        y = model(x).numpy()
    assert np.allclose(np.asarray(res.output, dtype=np.float64).reshape(y.shape), y, rtol=0, atol=1e-9)


# ------------------------------------------------------------------------------------------- mapping, sinabs


def test_per_core_checks_pass_on_the_plan_and_name_the_violated_limit_otherwise() -> None:
    prof = load_profile("speck")
    fitted = ChipCNN(**derive_conv_fit("speck", 32, C, T).to_model_kwargs()).eval()
    ok = core_usage(lower_model(fitted, T=T), prof)
    assert ok["violations"] == [] and len(ok["cores"]) == 5
    wide = ChipCNN(n_classes=C, image_size=32, T=T, convs=[[16, 3, 2], [64, 3, 2], [64, 3, 2]], host_layers=1).eval()
    bad = core_usage(lower_model(wide, T=T), prof)
    assert set(bad["violated_limits"]) == {"kernel_memory_per_core"}
    assert bad["violated_limits"]["kernel_memory_per_core"] == {"needed": 64 * 64 * 9, "available": 16384,
                                                                "nodes": ["convs.2.conv"]}
    many = ChipCNN(n_classes=C, image_size=32, T=T, convs=[[16, 3, 2]] + [[8, 1, 1]] * 10, host_layers=1).eval()
    assert "cores_per_chip" in core_usage(lower_model(many, T=T), prof)["violated_limits"]


def _speck_fitted(seed: int = 0) -> tuple[nir.NIRGraph, np.ndarray]:
    plan = derive_conv_fit("speck", S, C, T)
    torch.manual_seed(seed)
    model = _randomise_norms(ChipCNN(**plan.to_model_kwargs()), seed)
    g = lower_model(model, T=T)
    gq, _ = quantize_nbit(g, weight_bits=8, state_bits=16)
    x = torch.randn(3, 3, S, S, generator=torch.Generator().manual_seed(seed)) * 1.5
    return gq, to_graph_input(x.numpy(), g)


def test_sinabs_runs_the_conv_chain_spike_for_spike() -> None:
    pytest.importorskip("sinabs.layers")
    from neuroposter.targets.vendor import speck

    gq, x = _speck_fitted()
    r = speck.check(gq, x, load_profile("speck"))
    assert r["exact"] and r["mismatched_spikes"] == 0
    assert set(r["layers"]) == {f"convs.{i}.sn" for i in range(1, 5)}      # the chip's IF layers, not the host's
    assert all(e["spike_count_reference"] > 0 for e in r["layers"].values())
    assert r["logits_max_abs_diff"] < 1e-4


def test_the_sinabs_check_fails_when_a_chip_weight_differs(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("sinabs.layers")
    from neuroposter.targets.vendor import speck

    gq, x = _speck_fitted()
    build = speck._chip_graph

    def perturbed(g, chip, in_shape):            # sinabs gets a copy with one weight changed; the reference not
        sub = build(g, chip, in_shape)
        w = np.array(sub.nodes["convs_2_conv"].weight, dtype=np.float64)
        w[0, 0, 1, 1] += 2.0
        sub.nodes["convs_2_conv"].weight = w
        return sub

    monkeypatch.setattr(speck, "_chip_graph", perturbed)
    r = speck.check(gq, x, load_profile("speck"))
    assert not r["exact"] and r["mismatched_spikes"] > 0
    assert r["layers"]["convs.1.sn"]["mismatched_spikes"] == 0 and r["layers"]["convs.2.sn"]["mismatched_spikes"] > 0


# ------------------------------------------------------------------------------------------- fit end to end


def _image_task(n: int = 64, G: int = 4, seed: int = 0):
    """Images whose genre ``g`` brightens channel ``g % 3`` in quadrant ``g``."""
    from neuroposter.train.data import SplitData, TaskData

    rng = np.random.default_rng(seed)
    labels = (rng.random((n, G)) < 0.3).astype(np.float32)
    labels[np.arange(n), rng.integers(0, G, n)] = 1.0
    x = rng.normal(0, 0.5, (n, 3, S, S)).astype(np.float32)
    h = S // 2
    for g in range(G):
        r0, c0 = (g // 2) * h, (g % 2) * h
        x[labels[:, g] == 1, g % 3, r0:r0 + h, c0:c0 + h] += 1.5
    xt, y = torch.from_numpy(x), torch.from_numpy(labels)
    a, b = n // 2, 3 * n // 4
    return TaskData(SplitData(xt[:a], y[:a]), SplitData(xt[a:b], y[a:b]), SplitData(xt[b:], y[b:]),
                    [f"g{i}" for i in range(G)], "images", meta={"image_size": S},
                    inputs_manifest={"dataset": {"path": "memory", "key": f"fake-images-{seed}"}})


@pytest.mark.slow
def test_fit_speck_images_derives_trains_exports_and_verifies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    import neuroposter.targets.inputs as inputs
    import neuroposter.train as train_pkg
    from neuroposter._io import read_json
    from neuroposter.cli import main

    task = _image_task()
    seen = {}

    def load(model, ws, **kw):
        seen.update(model=model, **kw)
        return task, None

    monkeypatch.setattr(train_pkg, "load_task_data", load)

    def evaluation_inputs(loaded, run_dir, *, samples, split="test", seed=None):
        x = task.test.inputs.numpy()
        k = min(int(samples), x.shape[0])
        xt = np.ascontiguousarray(np.broadcast_to(x[None, :k], (int(loaded.model.T), k, *x.shape[1:])))
        return inputs.EvalInputs(xt, task.test.labels.numpy()[:k].astype(np.uint8), np.arange(k), "dataset",
                                 Path("stub"), "stub", split, int(loaded.model.T), genres=list(task.genres))

    monkeypatch.setattr(inputs, "evaluation_inputs", evaluation_inputs)
    code = main(["fit", "--target", "speck", "--input", "images", "--image-size", str(S), "-w", str(tmp_path / "ws"),
                 "--export-root", str(tmp_path / "ex"), "--epochs", "6", "--qat-epochs", "2", "--batch-size", "16",
                 "--device", "cpu", "--threads", "1"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert seen["model"] == "chip-cnn" and seen["image_size"] == S
    assert "fit speck: images 3x16x16" in out and "fits and verified" in out
    run = tmp_path / "ws" / "runs" / "fit-speck-pixels"
    spec = read_json(run / "model.json")
    assert spec["model"] == "chip-cnn" and spec["kwargs"]["host_layers"] == 1 and spec["deploy"]["weight_bits"] == 8
    summary = read_json(tmp_path / "ex" / "speck" / "fit-speck-pixels" / "summary.json")
    assert summary["ok"] and summary["mapping"]["fits"] and len(summary["mapping"]["cores"]) == 5
    agree = summary["verification"]["deployed_vs_trained"]
    assert agree["set_agreement"] >= 0.95 and agree["samples"] == len(task.test.labels)
    ven = summary["verification"]["vendor"]
    assert ven["simulator"].startswith("sinabs") and ven["exact"] and ven["spikes_compared"] > 0
    metrics = read_json(run / "metrics.json")
    assert metrics["test"]["map"] > max(v["map"] for v in metrics["baselines"].values())
