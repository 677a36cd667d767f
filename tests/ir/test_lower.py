"""Lowering the SDT and the spiking MLP to NIR: structure, folding, equivalence, timing, readers."""

from __future__ import annotations

import nir
import nirtorch
import numpy as np
import pytest
import torch

from neuroposter.ir import lower_model, read_graph, retime, simulate, write_graph
from neuroposter.ir.graph_io import graph_differences, graph_stats
from neuroposter.ir.lower import LoweringError, fold_bn, to_graph_input
from neuroposter.models.lif import LIF

from neuroposter.models.sdt import SDTConfig

SDT_CFG = SDTConfig(d_in=1664, n_tokens=40, d_model=64, depth=2, heads=4, mlp_hidden=128, n_classes=10)
T = 4


@pytest.fixture(scope="module")
def graph(sdt):
    assert sdt.cfg == SDT_CFG
    return lower_model(sdt, T=T, source_run="runs/sdt")


@pytest.fixture(scope="module")
def reference(sdt, sdt_spikes):
    """The Norse model in float64 with every LIF recording its spikes."""
    model = __import__("copy").deepcopy(sdt).double()
    for m in model.modules():
        if isinstance(m, LIF):
            m.record_spikes = True
    with torch.no_grad():
        logits = model(sdt_spikes.double()).numpy()
    spikes = {name: np.swapaxes(m.last_spikes.numpy(), 2, 3)  # [T, B, N, C] -> [T, B, C, N]
              for name, m in model.named_modules() if isinstance(m, LIF)}
    return logits, spikes


@pytest.fixture(scope="module")
def same_step(graph, sdt_spikes):
    return simulate(graph, to_graph_input(sdt_spikes, graph))


def test_node_names_follow_the_module_tree(graph) -> None:
    names = set(graph.nodes)
    assert {"input", "embed", "blocks.0.attn", "blocks.1.attn", "blocks.0.mlp.sn_in", "blocks.0.mlp.fc1",
            "blocks.0.mlp.sn_hidden", "blocks.0.mlp.fc2", "head_sn", "head", "output"} <= names
    sub = graph.nodes["blocks.0.attn"]
    assert isinstance(sub, nir.NIRGraph) and sub.metadata["op"] == "sdsa"
    assert sub.metadata == {**sub.metadata, "n_tokens": 40, "dim": 64, "heads": 4, "kv_v_th": 0.25}
    assert graph.metadata["dt"] == 1.0 and graph.metadata["reset"] == "zero"
    assert graph.metadata["threshold"] == "strict" and graph.metadata["T"] == T
    assert graph.metadata["source_run"] == "runs/sdt" and graph.metadata["model"] == "sdt"


def test_token_layers_are_kernel1_convs_channels_first(graph) -> None:
    d, n = SDT_CFG.d_model, SDT_CFG.n_tokens
    embed = graph.nodes["embed"]
    assert isinstance(embed, nir.Conv1d) and embed.weight.shape == (d, SDT_CFG.d_in, 1)
    assert tuple(graph.nodes["input"].output_type["output"]) == (SDT_CFG.d_in, n)
    for path in ("q", "k", "v", "proj"):
        node = graph.nodes["blocks.0.attn"].nodes[path]
        assert isinstance(node, nir.Conv1d) and node.weight.shape == (d, d, 1)
    biggest = max(np.asarray(getattr(v, "weight", np.zeros(1))).size
                  for g in (graph, graph.nodes["blocks.0.attn"]) for v in g.nodes.values())
    assert biggest < (n * d) ** 2 / 10  # nothing close to a dense N*D x N*D matrix


def test_batchnorm_folded_and_positional_bias_on_residual_neurons(sdt, graph) -> None:
    bn = sdt.embed_bn
    g = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    w = (g[:, None] * sdt.embed.weight.double()).detach().numpy()
    b = (bn.bias.double() - g * bn.running_mean.double()).detach().numpy()
    np.testing.assert_allclose(graph.nodes["embed"].weight[:, :, 0], w, rtol=1e-12)
    np.testing.assert_allclose(graph.nodes["embed"].bias, b, rtol=1e-12, atol=1e-15)
    pos = sdt.pos_bias.detach().double().numpy().T
    for node in (graph.nodes["blocks.0.attn"].nodes["sn_in"], graph.nodes["blocks.1.mlp.sn_in"], graph.nodes["head_sn"]):
        assert node.v_leak.shape == pos.shape
        np.testing.assert_array_equal(node.v_leak, pos)
    assert not graph.nodes["blocks.0.mlp.sn_hidden"].v_leak.any()
    lif = graph.nodes["head_sn"]  # tau = 2 dt, r = 1, v_reset = 0
    assert np.all(lif.tau == 2.0) and np.all(lif.r == 1.0) and not lif.v_reset.any()


def test_fold_bn_formula() -> None:
    torch.manual_seed(0)
    lin, bn = torch.nn.Linear(5, 3), torch.nn.BatchNorm1d(3)
    bn.running_mean.normal_(), bn.running_var.uniform_(0.5, 2), bn.weight.data.normal_(), bn.bias.data.normal_()
    bn.eval()
    w, b = fold_bn(lin.weight, lin.bias, bn)
    x = torch.randn(7, 5, dtype=torch.float64)
    with torch.no_grad():
        ref = bn.double()(lin.double()(x)).numpy()
    np.testing.assert_allclose(x.numpy() @ w.T + b, ref, rtol=1e-12, atol=1e-12)


def test_lif_convention_matches_the_model_neuron(rng) -> None:
    from neuroposter.ir.sdsa import lif_node

    x = rng.normal(0.8, 1.0, size=(12, 3, 5))
    layer = LIF(tau=2.0, v_th=1.0).double()
    with torch.no_grad():
        ref = layer(torch.from_numpy(x)).numpy()
    g = nir.NIRGraph.from_list(lif_node((5,), tau_steps=2.0, v_th=1.0, dt=1.0, dtype=np.float64))
    res = simulate(g, x)
    np.testing.assert_array_equal(res.records[next(iter(res.records))], ref.astype(np.uint8))


def test_same_step_equals_norse_spike_for_spike(graph, same_step, reference) -> None:
    logits, spikes = reference
    assert set(spikes) <= set(same_step.records)
    for name, ref in spikes.items():
        assert ref.sum() > 0, f"{name} never spikes: the test would be vacuous"
        np.testing.assert_array_equal(same_step.records[name], ref.astype(np.uint8), err_msg=name)
    np.testing.assert_allclose(same_step.output, logits, rtol=1e-9, atol=1e-9)
    assert same_step.latency == 0


def test_per_hop_with_retiming_is_same_step_shifted(graph, same_step, sdt_spikes) -> None:
    rt = retime(graph)
    assert rt.latency == 16  # 2 blocks x 7 hops + embed + readout
    assert rt.delays[("blocks.0.attn.q_sn", "blocks.0.attn.and_qkv")] == 2
    res = simulate(graph, to_graph_input(sdt_spikes, graph), mode="per_hop", delays=rt.delays)
    assert res.latency == rt.latency and res.output.shape[0] == T + rt.latency
    np.testing.assert_array_equal(res.aligned_output(), same_step.output)
    for name in same_step.records:
        assert res.start[name] == rt.arrival[name]
        np.testing.assert_array_equal(res.aligned(name), same_step.records[name], err_msg=name)


def test_per_hop_without_retiming_differs(graph, same_step, sdt_spikes) -> None:
    res = simulate(graph, to_graph_input(sdt_spikes, graph), mode="per_hop")
    assert np.abs(res.aligned_output() - same_step.output).max() > 1e-3
    assert any(not np.array_equal(res.aligned(n), same_step.records[n]) for n in same_step.records)


def test_write_read_lossless(graph, tmp_path) -> None:
    back = write_graph(tmp_path / "sdt.nir", graph)
    assert graph_differences(graph, back) == []
    again = read_graph(tmp_path / "sdt.nir")
    for name in ("embed", "head"):
        for attr in ("weight", "bias"):
            a, b = getattr(graph.nodes[name], attr), getattr(again.nodes[name], attr)
            assert a.dtype == b.dtype and np.array_equal(a, b)
    assert all(np.asarray(v).ndim >= 1 for node in again.nodes.values() if not isinstance(node, nir.NIRGraph)
               for k, v in vars(node).items() if isinstance(v, np.ndarray))


def test_graph_stats_count_weight_sharing(graph) -> None:
    st = graph_stats(graph)
    d, n, h = SDT_CFG.d_model, SDT_CFG.n_tokens, SDT_CFG.mlp_hidden
    per_block_stored = 4 * d * d + 2 * d * n + d * h * 2
    assert st["synapses_stored"] == SDT_CFG.d_in * d + 2 * per_block_stored + SDT_CFG.n_classes * d * n
    assert st["synapses_expanded"] > st["synapses_stored"]
    assert st["subgraphs"] == {"sdsa": 2}
    assert st["nodes_by_type"]["Threshold"] == 4


def test_mlp_loads_in_nirtorch_and_matches(mlp, tmp_path) -> None:
    graph = lower_model(mlp, T=T)
    assert graph.metadata["layout"] == "flat"
    path = tmp_path / "mlp.nir"
    write_graph(path, graph)

    def affine(node: nir.Affine) -> torch.nn.Module:  # nirtorch's default leaves the bias random
        lin = torch.nn.Linear(node.weight.shape[1], node.weight.shape[0])
        lin.weight.data, lin.bias.data = torch.from_numpy(node.weight), torch.from_numpy(node.bias)
        return lin

    class NirLIF(torch.nn.Module):
        def __init__(self, node: nir.LIF) -> None:
            super().__init__()
            for k in ("tau", "r", "v_leak", "v_threshold", "v_reset"):
                self.register_buffer(k, torch.from_numpy(np.asarray(getattr(node, k))))

        def forward(self, x: torch.Tensor, state: torch.Tensor | None = None):
            v = torch.zeros_like(x) if state is None else state
            v = v + (1.0 / self.tau) * ((self.r * x + self.v_leak) - v)  # Euler, dt = 1
            z = v > self.v_threshold
            return z.to(x.dtype), torch.where(z, self.v_reset.expand_as(v), v)

    module = nirtorch.nir_to_torch(str(path), {nir.Affine: affine, nir.LIF: NirLIF}, dtype=torch.float64)
    g = torch.Generator().manual_seed(3)
    spikes = (torch.rand(T, 5, 1, 1664, generator=g) < 0.1).double()
    model = __import__("copy").deepcopy(mlp).double()
    with torch.no_grad():
        ref = model(spikes).numpy()
        state, outs = None, []
        x = torch.from_numpy(to_graph_input(spikes, graph))
        for t in range(T):
            out, state = module(x[t], state)
            outs.append(out)
    np.testing.assert_allclose(torch.stack(outs).numpy(), ref, rtol=1e-10, atol=1e-10)
    sim = simulate(read_graph(path), x.numpy())
    np.testing.assert_allclose(sim.output, ref, rtol=1e-10, atol=1e-10)
    assert all(r.sum() > 0 for r in sim.records.values())


def test_unsupported_model_is_refused() -> None:
    with pytest.raises(LoweringError, match="SpikeDrivenTransformer"):
        lower_model(torch.nn.Linear(2, 2), T=1)
