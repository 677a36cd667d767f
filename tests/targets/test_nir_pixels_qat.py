"""``export --target nir`` of a pixel SDT fine-tuned for Loihi 2 (quantisation-aware: on-grid stem and SDT weights,
the image as 8-bit graded input): the bundle's graph, fed as its input contract says, is the fine-tuned network
spike for spike -- checked against an independent reference (the model's float-neuron forward on images the Loihi
quantiser put on its graded grid), and the verification fails a graph whose stem weights are written unquantised."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import neuroposter.ir as ir_pkg
from neuroposter._io import atomic_write_json
from neuroposter.ir import read_graph
from neuroposter.ir.graph import flatten
from neuroposter.ir.lower import fold_bn, to_graph_input
from neuroposter.ir.qat import Arithmetic, enable
from neuroposter.ir.simulate import simulate
from neuroposter.manifest import write_manifest
from neuroposter.models.lif import LIF
from neuroposter.targets import ExportRequest, get_exporter, inputs, training_quantiser
from neuroposter.targets.loihi.fixed_point import graded_input, quantize_input
from neuroposter.testing.active_init import spiking_pixel_sdt

S, T, C1, D, CLASSES, B = 8, 3, 4, 8, 3, 8
AMAX = 2.5
LOIHI = Arithmetic("loihi", "loihi2", "pow2", 8, input_amax=AMAX)
KWARGS = {"n_classes": CLASSES, "image_size": S, "T": T, "c1": C1, "d_model": D, "depth": 1, "heads": 2,
          "mlp_hidden": 16}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _images(b: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 3, S, S, generator=g) * 1.5     # some |x| beyond the graded range (+-127/32): clipped


def _fine_tuned() -> torch.nn.Module:
    """A tiny firing pixel SDT, fine-tuned a few steps with the Loihi arithmetic (integer neurons, graded input) on
    random images: its float parameters are off the grid, its forward on it."""
    model = spiking_pixel_sdt(image_size=S, T=T, c1=C1, d_model=D, depth=1, mlp_hidden=16, n_classes=CLASSES,
                              dtype=torch.float32)
    enable(model, LOIHI, training_quantiser(LOIHI))
    x = _images(16, seed=7)
    y = (torch.rand(16, CLASSES, generator=torch.Generator().manual_seed(8)) < 0.4).float()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    model.train()
    for _ in range(3):
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x).mean(0).float(), y)
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = _fine_tuned()
    ws = tmp_path / "ws"
    run_dir = ws / "runs" / "sdt-pixels-loihi"
    run_dir.mkdir(parents=True)
    torch.save(model.state_dict(), run_dir / "checkpoint.pt")
    atomic_write_json(run_dir / "model.json", {"model": "sdt-pixels", "kwargs": KWARGS, "deploy": LOIHI.to_dict()})
    write_manifest(run_dir, "run", inputs={"dataset": {"path": str(ws / "data"), "key": "k"}}, key="runkey",
                   extra={"model": "sdt-pixels"})
    images = _images(B, seed=11).numpy()
    xt = np.ascontiguousarray(np.broadcast_to(images[None], (T, *images.shape)))     # direct encoding

    def fake_inputs(loaded, run_dir, *, samples, split="test", seed=None):  # stands in for the dataset's posters
        k = min(samples, B)
        return inputs.EvalInputs(xt[:, :k], np.zeros((k, CLASSES)), np.arange(k), "dataset", Path("fake"), "fake",
                                 split, T)

    monkeypatch.setattr(inputs, "evaluation_inputs", fake_inputs)
    return run_dir, images


def _export(run_dir: Path, out: Path):
    return get_exporter("nir")(ExportRequest("nir", run_dir, out, run_dir.parent.parent,
                                             {"samples": B, "count_samples": B, "min_agreement": 1.0}))


def _independent_reference(run_dir: Path, images: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The fine-tuned network with float neurons (NIR's semantics), float64: on-grid weights (its own quantised
    forward, integer neurons off), fed the images the Loihi quantiser makes of them (its graded payloads / scale)."""
    from neuroposter.train import load_run

    run = load_run(run_dir)
    model = run.model.double()
    flat_int = training_quantiser(LOIHI)(model)          # the deployed integer graph's graded input format
    g = graded_input(flat_int)
    xq = quantize_input(images, flat_int).astype(np.float64) / float(g["scale"])
    enable(model, LOIHI)                                  # weights on the grid, float neurons
    for m in model.modules():
        if isinstance(m, LIF):
            m.record_spikes = True
    with torch.no_grad():
        logits = model(torch.from_numpy(xq)).numpy()
    spikes = {name: m.last_spikes.numpy() for name, m in model.named_modules()
              if isinstance(m, LIF) and m.last_spikes is not None}
    return logits, spikes


def _as_model_layout(s: np.ndarray) -> np.ndarray:
    return np.swapaxes(s, -1, -2) if s.ndim == 4 else s   # token populations [T, B, d, N] -> [T, B, N, d]


def test_nir_bundle_of_a_loihi_fine_tuned_pixel_sdt_is_the_trained_network(workspace, tmp_path) -> None:
    run_dir, images = workspace
    out = tmp_path / "bundle"
    res = _export(run_dir, out)
    assert res.ok, res.lines
    summary = json.loads((out / "summary.json").read_text())
    v = summary["verification"]["vs_norse"]
    assert v["spike_agreement"] == 1.0 and v["label_agreement"] == 1.0
    assert {"stem.sn1", "stem.sn2", "head_sn"} <= set(v["spike_agreement_per_layer"])
    assert v["max_abs_step_logit_diff"] < 1e-9

    # the input contract: the Loihi graded input (8 bits, the largest power of two keeping AMAX inside 127)
    graph = read_graph(out / "graph.nir")
    iq = graph.metadata["input_quantization"]
    assert (iq["bits"], iq["qmax"], iq["scale"]) == (8, 127, 2.0 ** math.floor(math.log2(127 / AMAX)))
    assert iq["amax"] == AMAX and summary["input_quantization"] == iq
    if (out / "graph_flat.nir").exists():              # (the pixel stem's token flatten has no portable form yet)
        assert read_graph(out / "graph_flat.nir").metadata["input_quantization"] == iq
    readme = (out / "README.md").read_text()
    assert "Input contract" in readme and f"rint(x * {iq['scale']:g}), -127, 127) / {iq['scale']:g}" in readme

    # the stem's convolutions are on Loihi's 8-bit mantissa x power-of-two grid (not the float fold)
    for name in ("stem.conv1", "stem.conv2"):
        w = np.asarray(graph.nodes[name].weight, dtype=np.float64)
        e = math.ceil(math.log2(np.abs(w).max() / 127))
        m = w / 2.0 ** e
        assert np.array_equal(m, np.rint(m)) and np.abs(m).max() <= 127, name

    # fed as documented, the graph is the fine-tuned network spike for spike, against an independent reference
    logits, ref = _independent_reference(run_dir, images)
    x = to_graph_input(images, graph)
    assert np.array_equal(x * iq["scale"], np.rint(x * iq["scale"])) and not np.array_equal(x, np.broadcast_to(
        images[None], x.shape))                              # the images were quantised (and not all on the grid)
    sim = simulate(flatten(graph, strict=True), x, mode="same_step")
    assert set(ref) <= set(sim.records)
    for name, want in ref.items():
        got = _as_model_layout(sim.records[name])
        np.testing.assert_array_equal(got.reshape(want.shape), want, err_msg=name)
        assert 0 < want.mean() < 1, name                      # a layer that fires, not always
    assert np.abs(sim.output - logits).max() < 1e-9


def test_nir_export_fails_a_graph_with_unquantised_stem_weights(workspace, tmp_path, monkeypatch) -> None:
    """The bug this guards: the stem's float (BatchNorm-folded) weights written into graph.nir. The verification
    (every LIF layer, min_agreement 1) must refuse such a bundle; and the graph fed the float images is not the
    trained network either."""
    run_dir, images = workspace
    from neuroposter.train import load_run

    stem = load_run(run_dir).model.stem
    float_w = {"stem.conv1": fold_bn(stem.conv1.weight, stem.conv1.bias, stem.bn1)[0],
               "stem.conv2": fold_bn(stem.conv2.weight, stem.conv2.bias, stem.bn2)[0] / 4.0}   # pool1's 1/4
    real_write = ir_pkg.write_graph

    def write_float_stem(path, graph, **kw):
        for name, w in float_w.items():
            assert graph.nodes[name].weight.shape == w.shape
            assert not np.array_equal(graph.nodes[name].weight, w)   # the export's own weights are not these
            graph.nodes[name].weight = w.astype(graph.nodes[name].weight.dtype)
        return real_write(path, graph, **kw)

    monkeypatch.setattr(ir_pkg, "write_graph", write_float_stem)
    res = _export(run_dir, tmp_path / "bad")
    assert not res.ok
    summary = json.loads((tmp_path / "bad.failed" / "summary.json").read_text())
    assert summary["verification"]["vs_norse"]["spike_agreement"] < 1.0
    monkeypatch.setattr(ir_pkg, "write_graph", real_write)

    # the input contract matters too: the right graph fed the float images is another network
    good = tmp_path / "good"
    assert _export(run_dir, good).ok
    graph = read_graph(good / "graph.nir")
    logits, ref = _independent_reference(run_dir, images)
    raw = np.ascontiguousarray(np.broadcast_to(images[None].astype(np.float64), (T, *images.shape)))
    sim = simulate(flatten(graph, strict=True), raw, mode="same_step")
    assert any(not np.array_equal(_as_model_layout(sim.records[n]).reshape(s.shape), s) for n, s in ref.items())
