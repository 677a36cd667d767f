"""The integer simulator's spike-sparse products: bit-identical to the dense path (integer sums are exact in any
order) on a quantised SDT-like graph, and to an exact integer reference on plain Linear / kernel-1 Conv1d nodes in
every compute dtype (float32, float64, int64)."""

from __future__ import annotations

import importlib

import nir
import numpy as np
import pytest

from neuroposter.ir import retime, simulate
from neuroposter.ir.int_neuron import IntFormat
from neuroposter.profiling.profiles import load_profile

LOIHI2 = IntFormat.of_profile(load_profile("loihi2").fixed_point)
sim = importlib.import_module("neuroposter.ir.simulate")     # the module (the package exports the function)


@pytest.fixture
def sparse_calls(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = sim.sparse_matmul_rows

    def spy(x, wt):  # noqa: ANN001, ANN202
        calls.append(int(x.shape[0]))
        return real(x, wt)

    monkeypatch.setattr(sim, "sparse_matmul_rows", spy)
    monkeypatch.setattr(sim, "_SPARSE_MIN_INPUTS", 1)        # small test layers take the sparse path too
    return calls


@pytest.mark.parametrize("magnitude", [100, 2 ** 20, 2 ** 40])   # float32, float64, int64 sums
def test_sparse_spike_products_are_exact(rng, magnitude: int, sparse_calls: list[int]) -> None:
    w = rng.integers(-magnitude, magnitude, size=(6, 80))
    x = (rng.random((3, 4, 80)) < 0.15).astype(np.uint8)          # spikes [T, B, in]
    want = np.einsum("oi,tbi->tbo", w.astype(object), x.astype(object)).astype(np.int64)
    for node in (nir.Linear(w.astype(np.float64)),
                 nir.Conv1d(input_shape=1, weight=w[:, :, None].astype(np.float64), stride=1, padding=0, dilation=1,
                            groups=1, bias=np.zeros(6))):
        g = nir.NIRGraph.from_list(node)
        shape = tuple(np.asarray(g.nodes["input"].input_type["input"]))
        n0 = len(sparse_calls)
        res = simulate(g, x.reshape((3, 4) + shape), arithmetic="int", int_format=LOIHI2)
        assert len(sparse_calls) > n0                                  # the sparse path ran
        np.testing.assert_array_equal(res.output.reshape(want.shape), want)


def test_channels_first_tokens(rng, sparse_calls: list[int]) -> None:
    # kernel-1 Conv1d over [C, L] tokens: every (sample, position) is a row of the gather
    w = rng.integers(-50, 50, size=(5, 30))
    x = (rng.random((2, 3, 30, 7)) < 0.2).astype(np.uint8)
    node = nir.Conv1d(input_shape=7, weight=w[:, :, None].astype(np.float64), stride=1, padding=0, dilation=1,
                      groups=1, bias=np.zeros(5))
    res = simulate(nir.NIRGraph.from_list(node), x, arithmetic="int", int_format=LOIHI2)
    assert sparse_calls
    np.testing.assert_array_equal(res.output, np.einsum("oc,tbcl->tbol", w, x))


def test_quantised_sdt_graph_bit_identical_sparse_or_dense(sparse_calls: list[int]) -> None:
    from neuroposter.targets.loihi.fixed_point import quantize_loihi
    from neuroposter.testing.graphs import random_spikes, sdt_like_graph

    gi, _ = quantize_loihi(sdt_like_graph(), load_profile("loihi2"))
    x = random_spikes(4, 9, (6, 3), p=0.2, seed=5)
    for kw in ({"mode": "per_hop", "delays": retime(gi).delays, "tail": True}, {"mode": "same_step"}):
        dense = simulate(gi, x, arithmetic="int", sparse=False, **kw)
        n0 = len(sparse_calls)
        sparse = simulate(gi, x, arithmetic="int", **kw)
        assert len(sparse_calls) > n0
        np.testing.assert_array_equal(sparse.output, dense.output)
        assert sparse.records.keys() == dense.records.keys() and sparse.inputs.keys() == dense.inputs.keys()
        for k in dense.records:
            np.testing.assert_array_equal(sparse.records[k], dense.records[k], err_msg=k)
        for k in dense.inputs:
            np.testing.assert_array_equal(sparse.inputs[k], dense.inputs[k], err_msg=k)
        assert any(r.any() for r in dense.records.values())


def test_narrow_layers_keep_the_dense_products(rng, monkeypatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(sim, "sparse_matmul_rows", lambda x, wt: calls.append(1))
    w = rng.integers(-50, 50, size=(4, sim._SPARSE_MIN_INPUTS - 1))
    x = (rng.random((3, 2, w.shape[1])) < 0.1).astype(np.uint8)
    out = simulate(nir.NIRGraph.from_list(nir.Linear(w.astype(np.float64))), x, arithmetic="int", int_format=LOIHI2)
    np.testing.assert_array_equal(out.output, np.einsum("oi,tbi->tbo", w, x))
    assert not calls


def test_float_arithmetic_keeps_the_dense_products(rng, sparse_calls: list[int]) -> None:
    w = rng.normal(size=(4, 20))
    x = (rng.random((3, 2, 20)) < 0.2).astype(np.uint8)
    simulate(nir.NIRGraph.from_list(nir.Linear(w)), x)
    assert not sparse_calls
