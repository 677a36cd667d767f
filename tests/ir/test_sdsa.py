"""SDSA as standard NIR primitives: the OR property of SN_kv, the sub-graph, its round trip."""

from __future__ import annotations

import itertools

import nir
import numpy as np
import pytest

from neuroposter.ir.graph_io import graph_differences, write_graph
from neuroposter.ir.sdsa import lif_node, sdsa_graph
from neuroposter.ir.simulate import simulate

N = 7  # tokens


def _single_lif(v_th: float) -> nir.NIRGraph:
    return nir.NIRGraph.from_list(lif_node((1,), tau_steps=2.0, v_th=v_th, dt=1.0))


@pytest.mark.parametrize("v_th", [0.0, 0.1, 0.25, 0.4, 0.499])
def test_kv_neuron_is_exactly_or_over_counts(v_th: float) -> None:
    # Every sequence of three integer counts in 0..N: the neuron fires iff the count of that step is >= 1.
    seqs = np.array(list(itertools.product(range(N + 1), repeat=3)), dtype=np.float64)  # [S, 3]
    x = seqs.T[:, :, None]  # [T=3, B=S, 1]
    res = simulate(_single_lif(v_th), x)
    spikes = res.records[next(iter(res.records))][:, :, 0]
    np.testing.assert_array_equal(spikes, (seqs.T >= 1).astype(np.uint8))


def test_kv_neuron_at_half_misses_a_single_coincidence() -> None:
    res = simulate(_single_lif(0.5), np.array([[[1.0]], [[0.0]], [[2.0]]]))
    assert res.records[next(iter(res.records))][:, 0, 0].tolist() == [0, 0, 1]  # count 1 -> v = 0.5, not > 0.5


def _weights(rng: np.random.Generator, d: int) -> tuple[np.ndarray, np.ndarray]:
    return rng.normal(0, 0.6, size=(d, d)), rng.uniform(0.3, 1.0, size=d)


def _reference(u: np.ndarray, p: dict, v_th: float, kv_v_th: float) -> np.ndarray:
    """Numpy SDSA (with products) over time: u [T, B, D, N] -> current [T, B, D, N]."""
    T = u.shape[0]
    vs = {k: 0.0 for k in ("sn", "q", "k", "v", "kv")}

    def lif(key: str, x: np.ndarray, th: float) -> np.ndarray:
        v = vs[key] + (x - vs[key]) / 2.0
        z = v > th
        vs[key] = np.where(z, 0.0, v)
        return z.astype(np.float64)

    def conv(wb: tuple[np.ndarray, np.ndarray], x: np.ndarray) -> np.ndarray:
        return np.einsum("oi,bin->bon", wb[0], x) + wb[1][:, None]

    out = []
    for t in range(T):
        s = lif("sn", u[t], v_th)
        q, k, v = (lif(n, conv(p[n], s), v_th) for n in ("q", "k", "v"))
        kv = lif("kv", (k * v).sum(-1, keepdims=True), kv_v_th)
        out.append(conv(p["proj"], q * kv))
    return np.stack(out)


def test_sdsa_subgraph_matches_product_reference(rng: np.random.Generator, tmp_path) -> None:
    d, n = 8, 6
    p = {k: _weights(rng, d) for k in ("q", "k", "v", "proj")}
    g = sdsa_graph(n_tokens=n, dim=d, heads=2, tau_steps=2.0, v_th=1.0, kv_v_th=0.25, dt=1.0, dtype=np.float64, **p)
    allowed = {"Input", "Output", "LIF", "Threshold", "Conv1d", "Linear"}
    assert {type(v).__name__ for v in g.nodes.values()} <= allowed
    assert g.metadata["op"] == "sdsa" and g.metadata["n_tokens"] == n and g.metadata["dim"] == d
    assert g.metadata["heads"] == 2 and g.metadata["kv_v_th"] == 0.25
    # Token sum / broadcast store D*N entries, never a dense (N*D) x (N*D) matrix.
    assert g.nodes["kv_sum"].weight.size == d * n and g.nodes["kv_bcast"].weight.size == d * n
    # The AND is a Threshold in (1, 2) fed by two edges.
    assert 1.0 < float(g.nodes["and_kv"].threshold.flat[0]) < 2.0
    assert sorted(s for s, t in g.edges if t == "and_kv") == ["k_sn", "v_sn"]
    assert sorted(s for s, t in g.edges if t == "and_qkv") == ["kv_bcast", "q_sn"]
    back = write_graph(tmp_path / "sdsa.nir", g)
    assert graph_differences(g, back) == []
    u = rng.normal(1.0, 1.5, size=(6, 5, d, n))
    res = simulate(back, u)
    ref = _reference(u, p, 1.0, 0.25)
    np.testing.assert_allclose(res.output, ref, rtol=0, atol=1e-12)
    assert res.records["and_qkv"].sum() > 0 and res.records["kv_sn"].sum() > 0


def test_sdsa_rejects_threshold_that_breaks_the_or() -> None:
    w = (np.eye(4), None)
    with pytest.raises(ValueError, match="exact OR"):
        sdsa_graph(n_tokens=3, dim=4, heads=1, q=w, k=w, v=w, proj=w, tau_steps=2.0, v_th=1.0, kv_v_th=0.5, dt=1.0)
