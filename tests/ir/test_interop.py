"""NIR interop: the spiking MLP and the SDT run in other NIR consumers (Norse, snnTorch, nirtorch) and agree with the
torch model; a network exported to NIR by snnTorch runs, and is profiled, in neuroposter."""

from __future__ import annotations

import contextlib
import io

import nir
import numpy as np
import pytest
import torch

from neuroposter.ir import interop, simulate, write_graph
from neuroposter.ir.lower import lower_model, to_graph_input
from neuroposter.models.sdt import SDTConfig, SpikeDrivenTransformer
from neuroposter.models.snn_mlp import SpikingMLPConfig, SpikingMLPNet
from neuroposter.targets.verify import float_model_logits
from neuroposter.testing.active_init import spiking_random_init

T = 4
SDT = SDTConfig(d_in=48, n_tokens=6, d_model=16, depth=2, heads=2, mlp_hidden=32, n_classes=5)
MLP = SpikingMLPConfig(d_in=48, hidden1=32, hidden2=16, n_classes=5)


def _model(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return spiking_random_init(SpikeDrivenTransformer(SDT) if kind == "sdt" else SpikingMLPNet(MLP))


def _spikes(kind: str, batch: int = 6) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    n = SDT.n_tokens if kind == "sdt" else 1
    return (torch.rand(T, batch, n, 48, generator=g) < 0.25).float()


@pytest.fixture(scope="module", params=["snn-mlp", "sdt"])
def case(request, tmp_path_factory):
    """(kind, graph and portable graph as read back from their files, graph inputs, torch model's logits)."""
    kind = request.param
    model, spikes = _model(kind), _spikes(kind)
    d = tmp_path_factory.mktemp(kind)
    graph = write_graph(d / "graph.nir", lower_model(model, T=T))
    portable = write_graph(d / "graph_flat.nir", interop.portable_graph(graph))
    return kind, graph, portable, to_graph_input(spikes, graph), float_model_logits(model, spikes.numpy())


def _agree(logits: np.ndarray, ref: np.ndarray) -> None:
    assert logits.shape == ref.shape
    assert np.array_equal(logits.mean(0) > 0, ref.mean(0) > 0)        # identical genre sets
    np.testing.assert_allclose(logits, ref, atol=1e-4)                   # float32 consumers


def test_the_models_spike_and_the_reference_simulator_matches_torch(case) -> None:
    kind, graph, portable, x, ref = case
    assert (ref.mean(0) > 0).any() and (ref.mean(0) <= 0).any()          # a non-trivial genre set
    _agree(simulate(graph, x).output, ref)
    # the portable graph is the same network (exact rewrites): same output under the reference simulator
    xp = x.reshape(x.shape[0], x.shape[1], *np.asarray(portable.metadata["input_shape"]))
    np.testing.assert_allclose(simulate(portable, xp).output, simulate(graph, x).output, atol=1e-12)


@pytest.mark.parametrize("consumer", ["norse", "snntorch", "nirtorch"])
def test_consumer_reproduces_the_model(case, consumer) -> None:
    pytest.importorskip(consumer)
    kind, graph, portable, x, ref = case
    why = interop.consumer_support(graph, consumer)
    if kind == "sdt" and consumer == "norse":   # Norse 1.1.0's executor runs DAGs depth-first (see interop)
        assert why and "depth-first" in why and "previous step" in why
        return
    assert why is None
    _agree(interop.run_consumer(consumer, graph, x, portable=portable), ref)


def test_two_consumers_run_each_model(case) -> None:
    kind, graph, *_ = case
    ok = [c for c in interop.CONSUMERS if interop.consumer_support(graph, c) is None]
    assert len(ok) >= 2, ok


def test_norse_needs_dt_from_the_graph(case) -> None:
    """With Norse's default dt (1e-3) the decays are 1000x too small: the MLP's predictions change."""
    import norse.torch

    kind, graph, portable, x, ref = case
    if kind != "snn-mlp":
        pytest.skip("Norse runs the chain only")
    assert graph.metadata["dt"] == 1.0 and graph.metadata["reset"] == "zero"
    module = norse.torch.from_nir(portable)   # default dt
    xt = torch.as_tensor(x, dtype=torch.float32)
    state, outs = None, []
    for t in range(T):
        o, state = module(xt[t], state)
        outs.append(o.detach().numpy())
    assert np.abs(np.stack(outs) - ref).max() > 1e-2


def test_graphs_record_the_time_convention_in_every_graph(case) -> None:
    kind, graph, portable, *_ = case
    subs = [g for g in graph.nodes.values() if isinstance(g, nir.NIRGraph)]
    assert len(subs) == (SDT.depth if kind == "sdt" else 0)
    for g in [graph, portable, *subs]:
        assert (g.metadata["dt"], g.metadata["reset"], g.metadata["threshold"]) == (1.0, "zero", "strict")
        assert g.metadata["integration"] == "forward_euler"


def test_portable_graph_uses_only_nodes_every_consumer_maps(case) -> None:
    kind, graph, portable, *_ = case
    allowed = (nir.Input, nir.Output, nir.Affine, nir.Conv2d, nir.SumPool2d, nir.Flatten, nir.LIF)
    assert all(isinstance(n, allowed) for n in portable.nodes.values())
    assert not interop.is_nested(portable)
    for n in portable.nodes.values():
        if isinstance(n, nir.Flatten):
            assert n.start_dim < 0 and n.end_dim < 0
        if isinstance(n, nir.LIF):
            assert not np.any(np.asarray(n.v_leak))                      # snnTorch asserts v_leak = 0
    if kind == "sdt":
        assert "blocks.0.attn.and_kv" in portable.nodes                  # dotted paths
        assert portable.nodes["blocks.0.attn.and_kv"].metadata["subgraph_op"] == "sdsa"
        assert portable.metadata["rewrites"]["Threshold -> LIF(tau=dt)"] == 2 * SDT.depth


def test_rescale_time_keeps_the_discrete_network(case) -> None:
    kind, graph, portable, x, ref = case
    fast = interop.rescale_time(graph, 1e-4)
    assert fast.metadata["dt"] == 1e-4
    np.testing.assert_allclose(simulate(fast, x).output, simulate(graph, x).output, atol=1e-9)


def test_an_unknown_consumer_is_refused() -> None:
    with pytest.raises(KeyError):
        interop.consumer_support(lower_model(_model("snn-mlp"), T=T), "brian2")


# -------------------------------------------------------------------------------------------------
# the other direction: a graph written by snnTorch


def _snntorch_net() -> torch.nn.Module:
    snn = pytest.importorskip("snntorch")
    torch.manual_seed(5)
    net = torch.nn.Sequential(
        torch.nn.Linear(12, 16),
        snn.Leaky(beta=torch.full((16,), 0.8), threshold=torch.ones(16), init_hidden=True, reset_mechanism="zero"),
        torch.nn.Linear(16, 4, bias=False),
        snn.Leaky(beta=torch.full((4,), 0.6), threshold=torch.ones(4), init_hidden=True, reset_mechanism="zero"),
    )
    with torch.no_grad():
        net[0].weight.mul_(4.0)
        net[2].weight.mul_(3.0).add_(0.4)
    return net


def test_a_graph_exported_by_snntorch_runs_and_is_profiled_in_neuroposter(tmp_path) -> None:
    import snntorch.utils
    from snntorch.export_nir import export_to_nir

    from neuroposter.profiling.counts import count_snn

    net = _snntorch_net()
    x = (torch.rand(10, 5, 12, generator=torch.Generator().manual_seed(1)) < 0.4).float()
    snntorch.utils.reset(net)
    with torch.no_grad():
        want = torch.stack([net(x[t]) for t in range(10)]).numpy()       # snnTorch's own output spikes
    assert 0.05 < want.mean() < 0.95
    with contextlib.redirect_stdout(io.StringIO()):
        nir.write(str(tmp_path / "snn.nir"), export_to_nir(net, x[0], ignore_dims=[0]))

    graph = interop.load_foreign(tmp_path / "snn.nir", producer="snntorch")
    assert graph.metadata["dt"] == interop.SNNTORCH_DT
    types = sorted(type(n).__name__ for n in graph.nodes.values())
    assert types == ["Affine", "Input", "LIF", "LIF", "Linear", "Output"]
    res = simulate(graph, x.numpy())
    np.testing.assert_array_equal(res.output, want)
    counts = count_snn(graph, res, x=x.numpy(), name="snntorch-net")
    assert counts.synops > 0 and counts.totals()["spikes"] > 0
    # the step matters: read with dt = 1 (neuroposter's convention) it is another network
    assert not np.array_equal(simulate(interop.load_foreign(tmp_path / "snn.nir", dt=1.0), x.numpy()).output, want)


def test_load_foreign_needs_a_dt(tmp_path) -> None:
    g = nir.NIRGraph.from_list(nir.Affine(weight=np.ones((2, 3)), bias=np.zeros(2)),
                               nir.LIF(tau=np.ones(2), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2)))
    with pytest.raises(interop.InteropError, match="dt"):
        interop.load_foreign(g)
    assert interop.load_foreign(g, producer="norse").metadata["dt"] == 1e-3


def test_a_norse_export_with_a_batch_dim_loads_and_runs() -> None:
    """Norse's ``to_nir`` with a batched sample (``[1, 8]``) puts the batch dim on Input *and* Output; both are
    dropped, so the graph type-checks and runs. (Its LIF ``tau`` is written as ``dt / tau_mem_inv`` -- 5e-6 s for
    Norse's 1 ms step and a 5 ms membrane -- so the step a reader needs is not Norse's ``dt``: ``load_foreign``
    takes ``dt=`` for such files; the snnTorch round trip is the reproduced one.)"""
    import norse.torch as nt
    import torch

    from neuroposter.ir.interop import load_foreign
    from neuroposter.ir.simulate import simulate

    torch.manual_seed(0)
    net = nt.SequentialState(torch.nn.Linear(8, 6), nt.LIFBoxCell(), torch.nn.Linear(6, 3), nt.LIFBoxCell())
    graph = load_foreign(nt.to_nir(net, torch.zeros(1, 8)), producer="norse")
    assert tuple(graph.nodes["input"].input_type["input"]) == (8,)
    assert tuple(graph.nodes["output"].output_type["output"]) == (3,)
    x = (np.random.default_rng(0).random((5, 2, 8)) < 0.5).astype(np.float64)
    assert simulate(graph, x).output.shape == (5, 2, 3)
