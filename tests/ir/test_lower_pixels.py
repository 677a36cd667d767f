"""Lowering the pixel SDT to NIR: stem nodes, exact folding of BatchNorm2d and the pools, spike-for-spike
equivalence in the reference simulator, the first convolution's op counts, and a run trained from a workspace."""

from __future__ import annotations

import itertools

import nir
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from neuroposter.ir import lower_model, retime, simulate
from neuroposter.ir.graph import flatten
from neuroposter.ir.lower import to_graph_input
from neuroposter.models.sdt_pixels import PixelSDT
from neuroposter.testing.active_init import spiking_pixel_sdt
from neuroposter.profiling.counts import count_snn
from neuroposter.targets.nir_target import norse_reference

S, T, C1, D, CLASSES, B = 16, 3, 8, 16, 5, 6


@pytest.fixture(scope="module")
def model() -> PixelSDT:
    """A small pixel SDT whose BatchNorms hold the statistics of real batches (every layer active)."""
    return spiking_pixel_sdt(image_size=S, T=T, c1=C1, d_model=D, depth=2, mlp_hidden=32, n_classes=CLASSES)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    torch.manual_seed(7)
    return torch.randn(B, 3, S, S, dtype=torch.float64)


@pytest.fixture(scope="module")
def graph(model: PixelSDT) -> nir.NIRGraph:
    return lower_model(model, T=T, source_run="runs/sdt-pixels")


@pytest.fixture(scope="module")
def same_step(graph, images):
    return simulate(flatten(graph, strict=True), to_graph_input(images, graph), mode="same_step")


def _fold(weight: torch.Tensor, bn: torch.nn.BatchNorm2d) -> tuple[np.ndarray, np.ndarray]:
    g = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    return ((g[:, None, None, None] * weight.detach()).numpy(),
            (bn.bias.detach() - g * bn.running_mean).numpy())


def test_stem_lowers_to_conv2d_lif_sumpool_flatten(graph) -> None:
    n = graph.nodes
    assert graph.metadata["model"] == "sdt-pixels" and graph.metadata["layout"] == "images"
    assert graph.metadata["n_tokens"] == (S // 4) ** 2 and graph.metadata["T"] == T
    assert tuple(n["input"].output_type["output"]) == (3, S, S)
    assert isinstance(n["stem.conv1"], nir.Conv2d) and n["stem.conv1"].weight.shape == (C1, 3, 3, 3)
    assert isinstance(n["stem.sn1"], nir.LIF) and n["stem.sn1"].tau.shape == (C1, S, S)
    assert isinstance(n["stem.pool1"], nir.SumPool2d) and list(n["stem.pool1"].kernel_size) == [2, 2]
    assert isinstance(n["stem.conv2"], nir.Conv2d) and n["stem.conv2"].weight.shape == (D, C1, 3, 3)
    assert isinstance(n["stem.sn2"], nir.LIF) and n["stem.sn2"].tau.shape == (D, S // 2, S // 2)
    assert isinstance(n["stem.pool2"], nir.SumPool2d)
    assert isinstance(n["stem.flatten"], nir.Flatten)
    assert isinstance(n["embed"], nir.Conv1d)                     # the SDT's token layers follow unchanged
    assert isinstance(n["blocks.1.attn"], nir.NIRGraph)
    chain = ["input", "stem.conv1", "stem.sn1", "stem.pool1", "stem.conv2", "stem.sn2", "stem.pool2",
             "stem.flatten", "embed"]
    assert all(e in graph.edges for e in zip(chain, chain[1:]))
    flat = flatten(graph, strict=True)
    assert tuple(flat.nodes["embed"].in_shape) == (D, (S // 4) ** 2)   # channels-first tokens [d, N]


def test_batchnorm2d_and_average_pools_fold_exactly(model, graph) -> None:
    st = model.stem
    w1, b1 = _fold(st.conv1.weight, st.bn1)
    np.testing.assert_allclose(graph.nodes["stem.conv1"].weight, w1, rtol=1e-13)
    np.testing.assert_allclose(graph.nodes["stem.conv1"].bias, b1, rtol=1e-12, atol=1e-14)
    w2, _ = _fold(st.conv2.weight, st.bn2)
    np.testing.assert_allclose(graph.nodes["stem.conv2"].weight * 4, w2, rtol=1e-13)   # pool1's 1/4 folded
    # exact: a sum pool followed by W/4 is bit for bit the average pool followed by W (1/4 is a power of two)
    rng = np.random.default_rng(0)
    s = torch.as_tensor((rng.random((8, C1, S, S)) < 0.3).astype(np.float64))
    wg = torch.as_tensor(graph.nodes["stem.conv2"].weight)
    summed = F.conv2d(F.avg_pool2d(s, 2, divisor_override=1), wg, padding=1)
    averaged = F.conv2d(F.avg_pool2d(s, 2), wg * 4, padding=1)
    assert torch.equal(summed, averaged)
    assert torch.equal(F.avg_pool2d(s, 2, divisor_override=1), 4 * F.avg_pool2d(s, 2))


def test_graph_equals_the_model_spike_for_spike(model, graph, images, same_step) -> None:
    logits, ref = norse_reference(model, to_graph_input(images, graph))
    assert set(ref) <= set(same_step.records)
    assert {"stem.sn1", "stem.sn2", "blocks.1.mlp.sn_hidden", "head_sn"} <= set(ref)
    active = 0
    for name, spikes in ref.items():
        got = same_step.records[name]
        assert got.shape == spikes.shape, name
        assert np.array_equal(got, spikes), name
        active += bool(spikes.any())
    assert active >= len(ref) - 1           # the comparison is not between silent layers
    for name in ("stem.sn1", "stem.sn2", "blocks.0.mlp.sn_in", "head_sn"):
        assert 0.005 < float(ref[name].mean()) < 0.95, name
    np.testing.assert_allclose(same_step.output, logits, rtol=0, atol=1e-10)


def test_per_hop_with_retiming_matches_same_step(graph, images, same_step) -> None:
    flat = flatten(graph, strict=True)
    rt = retime(flat)
    hop = simulate(flat, to_graph_input(images, graph), mode="per_hop", delays=rt.delays)
    for name in ("stem.sn1", "stem.sn2", "head_sn"):
        assert np.array_equal(hop.aligned(name), same_step.records[name])
    np.testing.assert_allclose(hop.aligned_output(), same_step.output, atol=1e-10)


def _hand_count_conv3x3_pad1(c_out: int, c_in: int, h: int, w: int) -> int:
    """Multiply-accumulates of a 3x3, stride-1, padding-1 convolution that touch a real (not padded) input:
    for every output position, the kernel taps that land inside the image, times ``c_in x c_out``."""
    taps = 0
    for i, j in itertools.product(range(h), range(w)):
        taps += sum(0 <= i + di < h and 0 <= j + dj < w for di in (-1, 0, 1) for dj in (-1, 0, 1))
    return taps * c_in * c_out


def test_first_convolution_counts_macs_on_direct_input(graph, images, same_step) -> None:
    x = to_graph_input(images, graph)
    counts = count_snn(graph, simulate(flatten(graph, strict=True), x, mode="same_step", record=True), x=x)
    conv1 = next(lc for lc in counts.layers if lc.name == "stem.conv1")
    hand = T * _hand_count_conv3x3_pad1(C1, 3, S, S)
    padded = T * S * S * C1 * 27                     # the count with the zero padding included
    # per image axis 3S - 2 valid (input, output) pairs; the 4S - 8 edge outputs lose 3 taps, the 4 corners 5
    assert hand == T * C1 * 3 * (3 * S - 2) ** 2 == padded - T * C1 * 3 * (3 * (4 * S - 8) + 5 * 4)
    assert conv1.dense_ops == hand
    assert conv1.effective_macs == hand             # real-valued input: every op is a MAC, every pixel is non-zero
    assert conv1.effective_acs == 0
    conv2 = next(lc for lc in counts.layers if lc.name == "stem.conv2")
    assert conv2.effective_macs + conv2.effective_acs < conv2.dense_ops   # event-driven after the first layer


def test_train_two_epochs_on_a_workspace_then_export(tmp_path) -> None:
    """``neuroposter train --model sdt-pixels`` on 24 synthetic posters writes a run; ``export --target nir`` passes
    its gates and stores the first convolution's MACs."""
    import json

    from neuroposter.cli import main

    torch.set_num_threads(1)
    ws, export = tmp_path / "ws", tmp_path / "export"
    for argv in (["data", "synth", "--n", "24", "-w", str(ws)], ["data", "import", "-w", str(ws)],
                 ["train", "--model", "sdt-pixels", "--epochs", "2", "--threads", "1", "--image-size", "16",
                  "--T", "2", "-w", str(ws)],
                 ["export", "--target", "nir", "--samples", "3", "--run", "sdt-pixels", "-w", str(ws),
                  "--export-root", str(export)]):
        assert main(argv) == 0, argv
    run = ws / "runs" / "sdt-pixels"
    for f in ("checkpoint.pt", "metrics.json", "model.json", "results.json", "manifest.json"):
        assert (run / f).is_file(), f
    spec = json.loads((run / "model.json").read_text())
    assert spec["model"] == "sdt-pixels" and spec["kwargs"]["image_size"] == 16 and spec["kwargs"]["T"] == 2
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs_run"] == 2 and "most_frequent" in metrics["baselines"]
    bundle = export / "nir" / "sdt-pixels"
    summary = json.loads((bundle / "summary.json").read_text())
    assert summary["verification"]["vs_norse"]["spike_agreement"] == 1.0
    counts = json.loads((bundle / "op_counts.json").read_text())["entries"]["model"]["counts"]
    conv1 = next(lc for lc in counts["layers"] if lc["name"] == "stem.conv1")
    c1 = 16   # the model's default
    assert conv1["dense_ops"] == 2 * _hand_count_conv3x3_pad1(c1, 3, 16, 16)
    assert conv1["effective_macs"] > 0 and conv1["effective_acs"] == 0
