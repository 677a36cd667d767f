"""Quantisation-aware training's forward pass against the deployment quantisers and the reference simulator."""

from __future__ import annotations

import copy

import hypothesis.extra.numpy as hnp
import nir
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from neuroposter.ir.graph import flatten
from neuroposter.ir.lower import lower_model, to_graph_input
from neuroposter.ir.qat import (
    Arithmetic, QATError, arithmetic_of, connections, deployed_weights, disable, enable, fake_quant, quantize_tensor,
)
from neuroposter.ir.quantize import grid, quantize_nbit
from neuroposter.ir.simulate import simulate
from neuroposter.models.sdt import SDTConfig, SpikeDrivenTransformer
from neuroposter.models.snn_mlp import SpikingMLPConfig, SpikingMLPNet
from neuroposter.profiling.profiles import load_profile
from neuroposter.targets.loihi.fixed_point import quantize_loihi, quantize_weights
from neuroposter.testing.active_init import spiking_random_init

LOIHI = Arithmetic("loihi", "loihi2", "pow2", 8)

weights = hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=2, max_side=12),
                     elements=st.floats(-8, 8, allow_nan=False, width=64))


@settings(max_examples=200, deadline=None)
@given(w=weights, bits=st.integers(2, 12))
def test_pow2_grid_is_the_loihi_quantisers(w: np.ndarray, bits: int) -> None:
    q = quantize_tensor(torch.from_numpy(w), "pow2", bits).numpy()
    np.testing.assert_array_equal(q, quantize_weights(w, bits=bits).dequantize())


@settings(max_examples=200, deadline=None)
@given(w=weights, bits=st.integers(2, 16))
def test_linear_grid_is_the_chip_quantisers(w: np.ndarray, bits: int) -> None:
    q = quantize_tensor(torch.from_numpy(w), "grid", bits).numpy()
    np.testing.assert_array_equal(q, grid(w, bits, float(np.abs(w).max())))


@settings(max_examples=100, deadline=None)
@given(w=weights, bits=st.integers(2, 10), scheme=st.sampled_from(["pow2", "grid"]))
def test_quantisation_is_idempotent_and_within_half_a_step(w: np.ndarray, bits: int, scheme: str) -> None:
    q = quantize_tensor(torch.from_numpy(w), scheme, bits)
    np.testing.assert_array_equal(quantize_tensor(q, scheme, bits).numpy(), q.numpy())
    amax = float(np.abs(w).max())
    if amax > 1e-30:
        step = amax / ((1 << (bits - 1)) - 1)           # the grid step; pow2's is at most twice it
        assert float(np.abs(q.numpy() - w).max()) <= step * (1.0 if scheme == "pow2" else 0.5) + 1e-12


def test_one_bit_grid_is_sign_times_mean_magnitude() -> None:
    w = torch.tensor([[0.5, -1.5, 0.0], [2.0, -1.0, 0.0]], dtype=torch.float64)
    np.testing.assert_allclose(quantize_tensor(w, "grid", 1).numpy(), np.sign(w.numpy()) * 1.25)


def test_fake_quant_is_straight_through() -> None:
    w = torch.randn(5, 7, dtype=torch.float64, requires_grad=True)
    y = fake_quant(w, "pow2", 4)
    torch.testing.assert_close(y.detach(), quantize_tensor(w, "pow2", 4))
    (y * torch.arange(35.0, dtype=torch.float64).reshape(5, 7)).sum().backward()
    torch.testing.assert_close(w.grad, torch.arange(35.0, dtype=torch.float64).reshape(5, 7))


def test_arithmetic_round_trip_and_validation() -> None:
    assert Arithmetic.from_dict(LOIHI.to_dict()) == LOIHI
    with pytest.raises(QATError, match="valid: pow2, grid"):
        Arithmetic("x", "x", "float", 8)
    with pytest.raises(QATError, match="invalid deploy arithmetic"):
        Arithmetic.from_dict({"target": "loihi"})
    with pytest.raises(QATError, match="supported"):
        connections(torch.nn.Linear(2, 2))


def _small_sdt() -> SpikeDrivenTransformer:
    torch.manual_seed(0)
    return spiking_random_init(SpikeDrivenTransformer(SDTConfig(d_in=24, n_tokens=5, d_model=8, depth=2, heads=2,
                                                                 mlp_hidden=16, n_classes=4))).eval()


def _small_mlp() -> SpikingMLPNet:
    torch.manual_seed(0)
    return spiking_random_init(SpikingMLPNet(SpikingMLPConfig(d_in=24, hidden1=16, hidden2=12, n_classes=4))).eval()


def _spikes(model: torch.nn.Module, b: int = 8) -> torch.Tensor:
    n = getattr(model.cfg, "n_tokens", 1)
    g = torch.Generator().manual_seed(3)
    return (torch.rand(4, b, n, 24, generator=g) < 0.3).float()


@pytest.mark.parametrize("make", [_small_sdt, _small_mlp], ids=["sdt", "snn-mlp"])
def test_connections_are_the_lowered_graphs(make: object) -> None:
    """Every weighted node of the lowered graph is one connection (except SDSA's constant token sum/broadcast)."""
    model = make()
    flat = flatten(lower_model(model, T=4), strict=True)
    weighted = {p for p, nd in flat.nodes.items() if nd.role == "conn"
                and not p.endswith((".kv_sum", ".kv_bcast"))}
    assert {c.path for c in connections(model)} == weighted


def _assert_same_layout(graph_w: np.ndarray, w: np.ndarray, path: str) -> None:
    """A graph weight (Conv1d ``[out, in, 1]``, Affine ``[out, in]``; the read-out ``[C, d*N]`` repeats each
    column ``N`` times) equals the connection's ``[out, in]`` weight."""
    g2 = graph_w.reshape(graph_w.shape[0], -1)
    np.testing.assert_array_equal(g2, np.repeat(w, g2.shape[1] // w.shape[1], axis=1), err_msg=path)


@pytest.mark.parametrize("make", [_small_sdt, _small_mlp], ids=["sdt", "snn-mlp"])
def test_trained_weights_are_the_deployed_ones(make: object) -> None:
    """The forward's weights equal the Loihi integer graph's (dequantised) and the chips' n-bit graph's, exactly."""
    model = make()
    flat = flatten(lower_model(model, T=4), strict=True)
    g_int, _ = quantize_loihi(flat, load_profile("loihi2"))
    fi = flatten(g_int, strict=True)
    for path, w in deployed_weights(model, LOIHI).items():
        node = fi.nodes[path].nir
        meta = node.metadata["loihi"]
        deq = np.asarray(node.weight, dtype=np.float64) / 2 * 2.0 ** meta["mantissa_exp"] / meta["scale"]
        _assert_same_layout(deq, w, path)
    fq = flatten(quantize_nbit(flat, weight_bits=4)[0])
    for path, w in deployed_weights(model, Arithmetic("xylo", "xylo", "grid", 4)).items():
        wq = np.asarray(fq.nodes[path].nir.weight, dtype=np.float64)
        _assert_same_layout(wq, w, path)


def _dequantised_graph(model: torch.nn.Module) -> nir.NIRGraph:
    """The float graph with every connection's weights replaced by the Loihi integer graph's, dequantised."""
    graph = lower_model(model, T=4)
    flat = flatten(graph, strict=True)
    fi = flatten(quantize_loihi(flat, load_profile("loihi2"))[0], strict=True)
    for path, nd in fi.nodes.items():
        meta = (nd.nir.metadata or {}).get("loihi", {})
        if "mantissa_exp" in meta and path in flat.nodes and "identity_of" not in nd.nir.metadata:
            deq = np.asarray(nd.nir.weight, dtype=np.float64) / 2 * 2.0 ** meta["mantissa_exp"] / meta["scale"]
            target = flat.nodes[path].nir
            target.weight = deq.reshape(np.asarray(target.weight).shape)
    return graph


@pytest.mark.parametrize("make", [_small_sdt, _small_mlp], ids=["sdt", "snn-mlp"])
def test_qat_forward_is_the_deployed_graph_in_the_reference_simulator(make: object) -> None:
    model = make()
    x = _spikes(model)
    float_logits = model(x).detach()
    graph = _dequantised_graph(model)
    enable(model, LOIHI)
    qat_logits = model(x).detach()
    sim = simulate(graph, to_graph_input(x, graph), mode="same_step").aligned_output()
    np.testing.assert_allclose(qat_logits.numpy(), sim, atol=1e-5)
    assert not torch.allclose(qat_logits, float_logits)        # the arithmetic changed something
    disable(model)
    torch.testing.assert_close(model(x).detach(), float_logits, rtol=0, atol=0)


def test_enable_keeps_parameters_and_trains_through_the_fold() -> None:
    model = _small_sdt().train()
    before = copy.deepcopy(model.state_dict())
    enable(model, LOIHI)
    assert arithmetic_of(model) == LOIHI
    assert model.state_dict().keys() == before.keys()
    model(_spikes(model)).mean().backward()
    assert model.embed.weight.grad is not None and model.embed_bn.weight.grad is not None
    for k, v in model.state_dict().items():       # BatchNorm statistics frozen (folded), nothing else moved
        torch.testing.assert_close(v, before[k], rtol=0, atol=0, msg=k)


@pytest.mark.parametrize("make", [_small_sdt, _small_mlp], ids=["sdt", "snn-mlp"])
def test_integer_forward_is_the_integer_reference_bit_for_bit(make: object) -> None:
    """With the Loihi integer graph, the forward pass makes exactly the integer reference simulator's spikes and
    read-out (the simulator runs the graph Lava is verified against)."""
    from neuroposter.targets import training_quantiser

    model = make()
    x = _spikes(model, b=16)
    builder = training_quantiser(LOIHI)
    enable(model, LOIHI, builder)
    logits = model(x).detach().numpy()
    flat_int = builder(model)
    ref = simulate(flat_int, to_graph_input(x, lower_model(model, T=4)).astype(np.int64), mode="same_step",
                   arithmetic="int")
    np.testing.assert_allclose(logits, ref.aligned_output(), rtol=0, atol=1e-9)
    for mod in model.modules():
        if hasattr(mod, "record_spikes"):
            mod.record_spikes = True
    model(x)
    compared = 0
    for name, mod in model.named_modules():
        if hasattr(mod, "record_spikes") and name in ref.records:
            compared += 1
            got = mod.last_spikes.numpy()
            want = ref.records[name]
            want = np.swapaxes(want, -1, -2) if want.ndim == 4 else want     # [T, B, d, N] -> [T, B, N, d]
            np.testing.assert_array_equal(got.reshape(want.shape), want, err_msg=name)
    assert compared == sum(isinstance(m, type(model.head_sn if hasattr(model, "head_sn") else model.sn1))
                           for m in model.modules())             # every LIF population


def test_integer_plan_follows_the_weights() -> None:
    """After a parameter update the next forward rebuilds the plan (bias roundings follow the new biases)."""
    from neuroposter.targets import training_quantiser

    model = _small_mlp()
    enable(model, LOIHI, training_quantiser(LOIHI))
    x = _spikes(model)
    model(x)
    state = model._qat_state
    first = state.plan
    model(x)
    assert state.plan is first                          # unchanged weights: no rebuild
    with torch.no_grad():
        model.fc1_bn.bias.add_(0.37)
    model(x)
    assert state.plan is not first


@pytest.mark.parametrize("make", [_small_sdt, _small_mlp], ids=["sdt", "snn-mlp"])
def test_lowering_a_quantisation_aware_model_exports_the_trained_weights(make: object) -> None:
    """The NIR graph of a QAT model holds the weights it computes with; quantising it again changes nothing."""
    model = make()
    float_int = flatten(quantize_loihi(flatten(lower_model(model, T=4), strict=True), load_profile("loihi2"))[0])
    enable(model, LOIHI)
    flat = flatten(lower_model(model, T=4), strict=True)
    for path, w in deployed_weights(model, LOIHI).items():
        _assert_same_layout(np.asarray(flat.nodes[path].nir.weight, dtype=np.float64), w, path)
    qat_int = flatten(quantize_loihi(flat, load_profile("loihi2"))[0])
    for path in deployed_weights(model, LOIHI):
        np.testing.assert_array_equal(qat_int.nodes[path].nir.weight, float_int.nodes[path].nir.weight, err_msg=path)
    x = _spikes(model)
    np.testing.assert_allclose(model(x).detach().numpy(), simulate(flat, to_graph_input(x, lower_model(model, T=4)),
                                                                   mode="same_step").aligned_output(), atol=1e-5)


def test_a_deep_copy_keeps_the_integer_arithmetic() -> None:
    """Exports deep-copy the run's model: the copy refreshes its own integer plan and computes the same."""
    from neuroposter.targets import training_quantiser

    model = _small_mlp()
    enable(model, LOIHI, training_quantiser(LOIHI))
    x = _spikes(model)
    clone = copy.deepcopy(model).double()
    np.testing.assert_array_equal(clone(x.double()).detach().numpy(), model(x).detach().numpy())
    assert clone._qat_state is not model._qat_state and clone._qat_state.plan is not None


def _step_wise_int_lif(x: torch.Tensor, plan, rnd: torch.Tensor) -> torch.Tensor:
    """The integer LIF written step by step with autograd (straight-through roundings, SuperSpike surrogate on
    ``(v - vth) / unit``): the reference for the fused node."""
    from norse.torch.functional.threshold import threshold

    def ste(a, fn):
        return a + (fn(a.detach()) - a).detach()

    v = torch.zeros_like(x[0])
    out = []
    for x_t in x.unbind(0):
        v = ste(v * plan.decay, torch.trunc) + ste(x_t * (plan.gain_scale * plan.act), torch.round) + rnd
        v = torch.clamp(v, -plan.limit + 1, plan.limit - 1)
        z = threshold((v - plan.vth) / plan.unit, "super", 100.0)
        v = v - z * v
        out.append(z)
    return torch.stack(out)


@pytest.mark.parametrize("limit", [2.0 ** 23, 40.0], ids=["wide", "saturating"])
def test_fused_integer_lif_is_the_step_wise_one(limit: float) -> None:
    """One autograd node over T: the same spikes bit for bit and the same input gradient (to rounding), also where
    the membrane saturates at the state width (the clamp passes no gradient there)."""
    from neuroposter.ir.qat import IntLIFFunction, _NeuronPlan

    g = torch.Generator().manual_seed(5)
    plan = _NeuronPlan(gain_scale=3.0, unit=12.0, decay=0.5, decay_bits=12, act=4.0, vth=20.0, limit=limit,
                       bias_rounding=torch.zeros(6, dtype=torch.float64))
    rnd = (torch.rand(6, generator=g, dtype=torch.float64) < 0.5).double()
    x = (torch.randn(6, 7, 6, generator=g, dtype=torch.float64) * 3).requires_grad_(True)
    x2 = x.detach().clone().requires_grad_(True)
    fused, ref = IntLIFFunction.apply(x, plan, rnd), _step_wise_int_lif(x2, plan, rnd)
    assert 0 < float(fused.mean()) < 1
    torch.testing.assert_close(fused, ref, rtol=0, atol=0)
    w = torch.randn(fused.shape, generator=g, dtype=torch.float64)
    (fused * w).sum().backward()
    (ref * w).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-12, atol=1e-12)
    if limit < 100:                                     # the saturating case really saturates
        p_max = float((x.detach() * 12).round().abs().max())
        assert p_max > limit


@pytest.mark.parametrize("make", [_small_sdt, _small_mlp], ids=["sdt", "snn-mlp"])
def test_fused_integer_neurons_train_like_the_step_wise_ones(make: object) -> None:
    """A quantisation-aware model with the fused integer LIF: the same logits bit for bit and the same parameter
    gradients (to rounding) as with the step-wise integer LIF."""
    from neuroposter.models.lif import LIF
    from neuroposter.targets import training_quantiser

    grads = []
    for fused in (True, False):
        model = make()
        enable(model, LOIHI, training_quantiser(LOIHI))
        model.train()
        for mod in model.modules():
            if isinstance(mod, LIF):
                object.__setattr__(mod, "_qat_fused", fused)
        x = _spikes(model, b=16)
        out = model(x)
        out.float().pow(2).mean().backward()
        grads.append((out.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    (o1, g1), (o2, g2) = grads
    torch.testing.assert_close(o1, o2, rtol=0, atol=0)
    assert g1.keys() == g2.keys() and g1
    assert any(float(v.abs().max()) > 0 for v in g1.values())
    for k in g1:
        torch.testing.assert_close(g1[k], g2[k], rtol=1e-9, atol=1e-12, msg=k)
