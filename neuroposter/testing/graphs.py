"""Small hand-made NIR graphs for tests and benchmarks (test helpers, not a user API).

* :func:`chain_graph`: ``Input -> Affine -> LIF -> Affine -> LIF -> Affine -> Output`` (netx-shaped).
* :func:`sdt_like_graph`: a miniature Spike-Driven Transformer block in the project's conventions
  (channels-first ``[D, N]`` tokens, token-wise ``Conv1d(k=1)``, a residual fan-in of several edges
  into one LIF, and an SDSA sub-graph tagged ``{"op": "sdsa"}`` made of ``Threshold`` ANDs, a
  token-sum ``Linear``, an OR-like ``LIF`` and a broadcast ``Linear``).
* :func:`threshold_and_graph`: two selected halves of the input ANDed by a ``Threshold(1.5)``.
* :func:`random_spikes`: seeded Bernoulli spike trains ``[T, B, *shape]``.
"""

from __future__ import annotations

from typing import Any

import nir
import numpy as np

__all__ = ["chain_graph", "sdt_like_graph", "threshold_and_graph", "random_spikes"]


def _lif(shape: tuple[int, ...], *, tau: float = 2.0, vth: float = 1.0, leak: np.ndarray | None = None) -> nir.LIF:
    return nir.LIF(tau=np.full(shape, tau), r=np.ones(shape), v_leak=np.zeros(shape) if leak is None else leak,
                   v_threshold=np.full(shape, vth), v_reset=np.zeros(shape))


def chain_graph(sizes: tuple[int, ...] = (12, 10, 8, 3), *, seed: int = 0, tau: float = 2.0,
                vth: float = 1.0, bias: bool = True) -> nir.NIRGraph:
    """A chain ``Input -> (Affine -> LIF)* -> Affine -> Output`` with random weights.

    Args:
        sizes: layer widths, input first, read-out last.
        seed: RNG seed.
        tau, vth: LIF parameters.
        bias: give the Affine layers a bias.
    """
    rng = np.random.default_rng(seed)
    nodes: dict[str, nir.NIRNode] = {"input": nir.Input(input_type={"input": np.array([sizes[0]])})}
    edges: list[tuple[str, str]] = []
    prev = "input"
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        w = rng.normal(0, 1.6 / np.sqrt(a), size=(b, a))
        bb = rng.normal(0.1, 0.1, size=b) if bias else np.zeros(b)
        nodes[f"fc{i}"] = nir.Affine(weight=w, bias=bb)
        edges.append((prev, f"fc{i}"))
        prev = f"fc{i}"
        if i < len(sizes) - 2:
            nodes[f"lif{i}"] = _lif((b,), tau=tau, vth=vth)
            edges.append((prev, f"lif{i}"))
            prev = f"lif{i}"
    nodes["output"] = nir.Output(output_type={"output": np.array([sizes[-1]])})
    edges.append((prev, "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1.0, "reset": "zero", "threshold": "strict"})


def threshold_and_graph(n: int = 5) -> nir.NIRGraph:
    """``Input[2n] -> (two selector Linears) -> Threshold(1.5) -> Linear(I) -> Output``: an AND of halves."""
    sel_a = np.hstack([np.eye(n), np.zeros((n, n))])
    sel_b = np.hstack([np.zeros((n, n)), np.eye(n)])
    nodes = {
        "input": nir.Input(input_type={"input": np.array([2 * n])}),
        "a": nir.Linear(weight=sel_a), "b": nir.Linear(weight=sel_b),
        "a_sn": _lif((n,), tau=1.0, vth=0.5), "b_sn": _lif((n,), tau=1.0, vth=0.5),
        "and": nir.Threshold(threshold=np.full(n, 1.5)),
        "read": nir.Linear(weight=np.eye(n)),
        "output": nir.Output(output_type={"output": np.array([n])}),
    }
    edges = [("input", "a"), ("input", "b"), ("a", "a_sn"), ("b", "b_sn"), ("a_sn", "and"), ("b_sn", "and"),
             ("and", "read"), ("read", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1.0})


def _sdsa(d: int, n: int, kv_v_th: float, conv: Any) -> nir.NIRGraph:
    """SDSA sub-graph: ``[D, N]`` spikes in, AND-masked ``Q`` spikes ``[D*N]`` out."""
    dn = d * n
    s = np.zeros((d, dn))
    for c in range(d):
        s[c, c * n:(c + 1) * n] = 1.0          # channels-first flattening: idx = c * N + n
    nodes = {
        "input": nir.Input(input_type={"input": np.array([d, n])}),
        "q": conv(d, d, 2.0, 1.2), "k": conv(d, d, 2.0, 1.2), "v": conv(d, d, 2.0, 1.2),
        "q_sn": _lif((d, n)), "k_sn": _lif((d, n)), "v_sn": _lif((d, n)),
        "q_flat": nir.Flatten(input_type={"input": np.array([d, n])}, start_dim=0),
        "k_flat": nir.Flatten(input_type={"input": np.array([d, n])}, start_dim=0),
        "v_flat": nir.Flatten(input_type={"input": np.array([d, n])}, start_dim=0),
        "and_kv": nir.Threshold(threshold=np.full(dn, 1.5)),
        "colsum": nir.Linear(weight=s),
        "kv_sn": _lif((d,), tau=2.0, vth=kv_v_th),
        "bcast": nir.Linear(weight=s.T.copy()),
        "and_q": nir.Threshold(threshold=np.full(dn, 1.5)),
        "output": nir.Output(output_type={"output": np.array([dn])}),
    }
    edges = [("input", "q"), ("input", "k"), ("input", "v"), ("q", "q_sn"), ("k", "k_sn"), ("v", "v_sn"),
             ("q_sn", "q_flat"), ("k_sn", "k_flat"), ("v_sn", "v_flat"),
             ("k_flat", "and_kv"), ("v_flat", "and_kv"), ("and_kv", "colsum"), ("colsum", "kv_sn"),
             ("kv_sn", "bcast"), ("bcast", "and_q"), ("q_flat", "and_q"), ("and_q", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"op": "sdsa", "n_tokens": n, "dim": d, "heads": 1,
                                                            "kv_v_th": kv_v_th})


def sdt_like_graph(*, d_in: int = 6, d: int = 4, n: int = 3, n_classes: int = 3, seed: int = 0,
                   kv_v_th: float = 0.25) -> nir.NIRGraph:
    """A one-block miniature SDT with an SDSA sub-graph and a residual fan-in.

    Layout: tokens channels-first ``[D, N]`` for the token-wise ``Conv1d(k=1)`` layers, flattened
    ``[D*N]`` (``Flatten``) inside the attention and for the projection and the head.
    """
    rng = np.random.default_rng(seed)
    dn = d * n

    def conv(cin: int, cout: int, gain: float = 2.0, bias: float = 0.2) -> nir.Conv1d:
        return nir.Conv1d(input_shape=n, weight=rng.normal(0, gain / np.sqrt(cin), size=(cout, cin, 1)), stride=1,
                          padding=0, dilation=1, groups=1, bias=rng.normal(bias, 0.1, size=cout))

    pos = rng.normal(0.0, 0.3, size=(d, n))
    embed = conv(d_in, d, 3.0)
    attn = _sdsa(d, n, kv_v_th, conv)
    proj = np.kron(rng.normal(0, 1.5 / np.sqrt(d), size=(d, d)), np.eye(n))   # token-wise on the flat layout
    head = np.kron(rng.normal(0, 1.0, size=(n_classes, d)), np.full((1, n), 1.0 / n))  # mean over tokens
    nodes: dict[str, nir.NIRNode] = {
        "input": nir.Input(input_type={"input": np.array([d_in, n])}),
        "embed": embed,
        "sn_in": _lif((d, n), leak=pos * 2.0),                       # per-token positional bias as v_leak
        "attn": attn,
        "proj": nir.Affine(weight=proj, bias=np.full(dn, 0.1)),
        "embed_flat": nir.Flatten(input_type={"input": np.array([d, n])}, start_dim=0),
        "head_sn": _lif((dn,)),
        "head": nir.Affine(weight=head, bias=rng.normal(0, 0.1, size=n_classes)),
        "output": nir.Output(output_type={"output": np.array([n_classes])}),
    }
    edges = [("input", "embed"), ("embed", "sn_in"), ("sn_in", "attn"), ("attn", "proj"),
             # residual: U1 = U0 + proj(...) -> both edges into head_sn (NIR sums them)
             ("embed", "embed_flat"), ("embed_flat", "head_sn"), ("proj", "head_sn"),
             ("head_sn", "head"), ("head", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1.0, "reset": "zero", "threshold": "strict",
                                                            "T": 4, "n_classes": n_classes})


def random_spikes(t: int, b: int, shape: tuple[int, ...], *, p: float = 0.3, seed: int = 0) -> np.ndarray:
    """``[T, B, *shape]`` Bernoulli(p) spikes as uint8."""
    return (np.random.default_rng(seed).random((t, b) + tuple(shape)) < p).astype(np.uint8)
