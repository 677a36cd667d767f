"""The reference simulator on every node type it supports, both arithmetics, and its errors."""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from neuroposter.ir import SimResult, retime, simulate
from neuroposter.ir.int_neuron import IntFormat
from neuroposter.profiling.profiles import load_profile
from neuroposter.testing.lava_reference import lava_lif_reference
from neuroposter.ir.simulate import SimulationError

LOIHI2 = IntFormat.of_profile(load_profile("loihi2").fixed_point)


def _chain(*nodes: nir.NIRNode, dt: float = 1.0) -> nir.NIRGraph:
    g = nir.NIRGraph.from_list(*nodes)
    g.metadata = {"dt": dt}
    return g


def _only(res: SimResult) -> np.ndarray:
    assert len(res.records) == 1
    return next(iter(res.records.values()))


def test_affine_linear_scale(rng) -> None:
    w, b, s = rng.normal(size=(3, 4)), rng.normal(size=3), rng.normal(size=3)
    x = rng.normal(size=(5, 2, 4))
    out = simulate(_chain(nir.Affine(w, b), nir.Scale(s)), x).output
    np.testing.assert_allclose(out, (x @ w.T + b) * s, atol=1e-12)
    out = simulate(_chain(nir.Linear(w)), x).output
    np.testing.assert_allclose(out, x @ w.T, atol=1e-12)


def test_conv_pool_flatten(rng) -> None:
    w1 = rng.normal(size=(4, 2, 3))
    c1 = nir.Conv1d(input_shape=9, weight=w1, stride=2, padding=1, dilation=1, groups=1, bias=rng.normal(size=4))
    x = rng.normal(size=(3, 2, 2, 9))
    ref = F.conv1d(torch.from_numpy(x.reshape(6, 2, 9)), torch.from_numpy(w1), torch.from_numpy(c1.bias), 2, 1)
    np.testing.assert_allclose(simulate(_chain(c1), x).output, ref.numpy().reshape(3, 2, 4, 5), atol=1e-12)
    w2 = rng.normal(size=(3, 2, 3, 3))
    c2 = nir.Conv2d(input_shape=(6, 6), weight=w2, stride=1, padding=1, dilation=1, groups=1, bias=np.zeros(3))
    pool = nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0]))
    avg = nir.AvgPool2d(kernel_size=np.array([3, 3]), stride=np.array([3, 3]), padding=np.array([0, 0]))
    x2 = rng.normal(size=(2, 2, 2, 6, 6))
    g = nir.NIRGraph(nodes={"in": nir.Input(np.array([2, 6, 6])), "c": c2, "p": pool,
                            "f": nir.Flatten(input_type=np.array([3, 3, 3]), start_dim=0), "out": nir.Output(np.array([27]))},
                     edges=[("in", "c"), ("c", "p"), ("p", "f"), ("f", "out")])
    t = torch.from_numpy(x2.reshape(4, 2, 6, 6))
    ref = (F.avg_pool2d(F.conv2d(t, torch.from_numpy(w2), padding=1), 2) * 4).reshape(2, 2, 27)
    np.testing.assert_allclose(simulate(g, x2).output, ref.numpy(), atol=1e-10)
    g2 = nir.NIRGraph(nodes={"in": nir.Input(np.array([2, 6, 6])), "a": avg, "out": nir.Output(np.array([2, 2, 2]))},
                      edges=[("in", "a"), ("a", "out")])
    np.testing.assert_allclose(simulate(g2, x2).output, F.avg_pool2d(t, 3).numpy().reshape(2, 2, 2, 2, 2), atol=1e-12)


def test_neuron_models_follow_euler(rng) -> None:
    x = rng.normal(0.5, 1.0, size=(10, 2, 3))
    one = np.ones(3)
    dt, tau, tau_syn = 0.5, 2.0, 4.0

    def run(node: nir.NIRNode) -> SimResult:
        return simulate(_chain(node, dt=dt), x)

    # IF
    v, zs = np.zeros((2, 3)), []
    for t in range(10):
        v = v + dt * x[t]
        z = v > 1.0
        v = np.where(z, 0.0, v)
        zs.append(z)
    np.testing.assert_array_equal(_only(run(nir.IF(r=one, v_threshold=one))), np.array(zs, dtype=np.uint8))
    # LI and I (membranes recorded)
    v, vi, lis, ii = np.zeros((2, 3)), np.zeros((2, 3)), [], []
    for t in range(10):
        v = v + dt / tau * ((x[t] + 0.2) - v)
        vi = vi + dt * 2.0 * x[t]
        lis.append(v), ii.append(vi)
    np.testing.assert_allclose(_only(run(nir.LI(tau=tau * one, r=one, v_leak=0.2 * one))), np.array(lis), rtol=1e-6)
    np.testing.assert_allclose(_only(run(nir.I(r=2 * one))), np.array(ii), rtol=1e-6)
    # CubaLIF: the input enters the synaptic current, which drives the membrane in the same step
    i, v, zs = np.zeros((2, 3)), np.zeros((2, 3)), []
    for t in range(10):
        i = i + dt / tau_syn * (x[t] - i)
        v = v + dt / tau * (i - v)
        z = v > 0.1
        v = np.where(z, 0.0, v)
        zs.append(z)
    node = nir.CubaLIF(tau_syn=tau_syn * one, tau_mem=tau * one, r=one, v_leak=0 * one, v_threshold=0.1 * one)
    out = _only(run(node))
    np.testing.assert_array_equal(out, np.array(zs, dtype=np.uint8))
    assert out.sum() > 0
    # Threshold (strict)
    np.testing.assert_array_equal(_only(run(nir.Threshold(threshold=0.5 * one))), (x > 0.5).astype(np.uint8))


def test_delay_node_and_edge_delays(rng) -> None:
    x = rng.normal(size=(6, 1, 3))
    g = _chain(nir.Delay(delay=np.array([0.0, 1.0, 3.0])))
    res = simulate(g, x)
    assert res.latency == 3 and res.output.shape[0] == 9  # the run lasts until the longest delay is out
    for j, d in enumerate([0, 1, 3]):
        np.testing.assert_array_equal(res.output[d:d + 6, 0, j], x[:, 0, j])
        assert not res.output[:d, 0, j].any()


def test_subgraphs_recurse_and_fan_in_sums(rng) -> None:
    inner = nir.NIRGraph(nodes={"i": nir.Input(np.array([2])), "s": nir.Scale(np.array([2.0, 3.0])),
                                "o": nir.Output(np.array([2]))}, edges=[("i", "s"), ("s", "o")],
                         metadata={"op": "double"})
    g = nir.NIRGraph(nodes={"input": nir.Input(np.array([2])), "sub": inner,
                            "sum": nir.Scale(np.ones(2)), "output": nir.Output(np.array([2]))},
                     edges=[("input", "sub"), ("input", "sum"), ("sub", "sum"), ("sum", "output")])
    x = rng.normal(size=(3, 4, 2))
    res = simulate(g, x)
    np.testing.assert_allclose(res.output, x * np.array([3.0, 4.0]))
    assert set(res.inputs) == {"sub.s", "sum"}
    rt = retime(g)  # input -> sub.s -> sum (1 hop) vs input -> sum (0 hops)
    assert rt.latency == 2 and rt.delays == {("input", "sum"): 1}
    ph = simulate(g, x, mode="per_hop", delays=rt.delays)
    np.testing.assert_allclose(ph.aligned_output(), res.output)


def test_int_lif_is_lava_bit_accurate(rng) -> None:
    shape = (6,)
    meta = {"loihi": {"du": 4095, "dv": 2048, "vth": 40, "bias_mant": np.full(shape, 3), "bias_exp": 2}}
    node = nir.LIF(tau=2 * np.ones(shape), r=np.ones(shape), v_leak=np.zeros(shape), v_threshold=np.ones(shape),
                   metadata=meta)
    a = rng.integers(-30, 90, size=(12, 3, *shape))
    res = simulate(_chain(node), a, arithmetic="int", int_format=LOIHI2)
    ref = lava_lif_reference(a.reshape(12, -1).tolist(), du=4095, dv=2048, vth=40, bias=3 << 2)
    np.testing.assert_array_equal(_only(res), np.array(ref, dtype=np.uint8).reshape(a.shape))
    assert 0 < _only(res).sum() < _only(res).size


def test_int_connection_weight_exp_and_readout(rng) -> None:
    w = rng.integers(-100, 100, size=(4, 5)).astype(np.int32)
    node = nir.Linear(w.copy(), metadata={"loihi": {"weight_exp": -2}})
    out = nir.Output(np.array([4]), metadata={"loihi": {"scale": 8.0, "bias": np.array([1, 2, 3, 4])}})
    g = nir.NIRGraph(nodes={"input": nir.Input(np.array([5])), "w": node, "output": out},
                     edges=[("input", "w"), ("w", "output")])
    s = rng.integers(0, 2, size=(3, 2, 5))
    res = simulate(g, s, arithmetic="int", int_format=LOIHI2)
    ref = (((s @ w.T.astype(np.int64)) >> 2) + np.array([1, 2, 3, 4])) / 8.0
    np.testing.assert_array_equal(res.output, ref)
    with pytest.raises(SimulationError, match="'w'.*integer"):
        simulate(nir.NIRGraph(nodes={"input": nir.Input(np.array([5])), "w": nir.Linear(w * 0.5),
                                     "output": nir.Output(np.array([4]))},
                              edges=[("input", "w"), ("w", "output")]), s, arithmetic="int", int_format=LOIHI2)


@pytest.mark.parametrize("magnitude", [2 ** 20, 2 ** 40])
def test_int_products_exact_beyond_float_mantissas(rng, magnitude) -> None:
    # partial sums past 2**24 (float32 inexact) and past 2**53 (float64 inexact): still exact
    w = rng.integers(magnitude // 2, magnitude, size=(3, 64))
    w[0] *= -1
    x = rng.integers(0, 4096, size=(2, 5, 64))
    want = np.einsum("oi,tbi->tbo", w.astype(object), x.astype(object)).astype(np.int64)
    for node in (nir.Linear(w.astype(np.float64)),
                 nir.Conv1d(input_shape=1, weight=w[:, :, None].astype(np.float64), stride=1, padding=0, dilation=1,
                            groups=1, bias=np.zeros(3))):
        g = nir.NIRGraph.from_list(node)
        res = simulate(g, x.reshape((2, 5) + tuple(np.asarray(g.nodes["input"].input_type["input"]))),
                       arithmetic="int", int_format=LOIHI2)
        np.testing.assert_array_equal(res.output.reshape(want.shape), want)
    w3 = rng.integers(-100, 100, size=(4, 3, 5))   # channel-batched Linear: [C, O, I] on [C, I]
    s = rng.integers(0, 2, size=(3, 2, 4, 5))
    out = simulate(nir.NIRGraph.from_list(nir.Linear(w3.astype(np.float64))), s, arithmetic="int",
                   int_format=LOIHI2).output
    np.testing.assert_array_equal(out, np.einsum("coi,tbci->tbco", w3, s))


def test_chunks_and_tail_keep_the_results() -> None:
    from neuroposter.targets.loihi.fixed_point import quantize_loihi
    from neuroposter.testing.graphs import random_spikes, sdt_like_graph

    gi, _ = quantize_loihi(sdt_like_graph(), load_profile("loihi2"))
    x = random_spikes(4, 7, (6, 3), p=0.45, seed=4)
    x[:, 2] = 0                                    # a silent sample: its products are skipped
    kw = {"mode": "per_hop", "arithmetic": "int", "delays": retime(gi).delays}
    full = simulate(gi, x, tail=True, **kw)
    for other in (simulate(gi, x, tail=True, chunk=1, **kw), simulate(gi, x, tail=True, chunk=3, **kw)):
        np.testing.assert_array_equal(other.output, full.output)
        for k in full.records:
            np.testing.assert_array_equal(other.records[k], full.records[k], err_msg=k)
        for k in full.inputs:
            assert other.inputs[k].dtype == full.inputs[k].dtype
            np.testing.assert_array_equal(other.inputs[k], full.inputs[k], err_msg=k)
    short = simulate(gi, x, chunk=2, **kw)                  # by default no node runs past what reaches the output
    np.testing.assert_array_equal(short.output, full.output)
    for k in full.records:
        np.testing.assert_array_equal(short.aligned(k), full.aligned(k), err_msg=k)
        assert not short.records[k][full.start[k] + full.T + 1:].any()   # nothing after its window
    assert any(full.records[k][full.start[k] + full.T + 1:].any() for k in full.records)  # a tail there was
    np.testing.assert_array_equal(simulate(gi, x, record=False, **kw).output, full.output)
    silent = simulate(gi, x[:, 2:3], **kw)
    np.testing.assert_array_equal(silent.output[:, 0], full.output[:, 2])


def test_errors_name_the_node(rng) -> None:
    node = nir.CubaLI(tau_syn=np.ones(2), tau_mem=np.ones(2), r=np.ones(2), v_leak=np.zeros(2))
    with pytest.raises(SimulationError, match="cubali.*CubaLI"):
        simulate(_chain(node), rng.normal(size=(2, 1, 2)))
    with pytest.raises(SimulationError, match=r"input must be \[T, B, 3\]"):
        simulate(_chain(nir.Scale(np.ones(3))), np.zeros((2, 1, 4)))
    with pytest.raises(SimulationError, match="unknown mode"):
        simulate(_chain(nir.Scale(np.ones(3))), np.zeros((2, 1, 3)), mode="async")
