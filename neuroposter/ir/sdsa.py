"""Spike-Driven Self-Attention as a sub-``NIRGraph`` of standard NIR primitives only.

NIR 1.0.8 has no multiply node and no custom nodes can be read back, but every product in SDSA
is a product of two 0/1 spike tensors, i.e. an AND, and the token sum feeds a neuron that is an
OR. Layout: one time step, no batch dim, tokens channels-first ``[D, N]``.

.. math::
    S = \\mathrm{LIF}(U),\\quad Q, K, V = \\mathrm{LIF}(\\mathrm{Conv1d}_{k=1}(S))

    A = [K + V > 1.5] = K \\wedge V            \\qquad (\\texttt{and\\_kv}: \\text{Threshold fed by both})

    c_d = \\textstyle\\sum_n A_{d,n}           \\qquad (\\texttt{kv\\_sum}: \\text{channel-batched Linear } [D, 1, N] \\text{ of ones})

    KV = \\mathrm{LIF}_{\\tau=2,\\,v_{th}=\\theta_{kv}}(c)  \\qquad (\\texttt{kv\\_sn}: \\text{per-channel OR, see below})

    B_{d,n} = KV_d                           \\qquad (\\texttt{kv\\_bcast}: \\text{channel-batched Linear } [D, N, 1] \\text{ of ones})

    O = \\mathrm{Conv1d}_{k=1}([Q + B > 1.5])  \\qquad (\\texttt{and\\_qkv}, \\texttt{proj})

Why ``kv_sn`` is an OR: with ``tau = 2`` (``dt = 1``) the membrane update is ``v <- (v + c)/2``.
For an integer count ``c >= 1`` and ``v >= 0``, ``v >= 0.5 > theta`` when ``0 <= theta < 0.5``
under the strict ``>``, so it fires and resets to 0; for ``c = 0`` a membrane at 0 stays 0. By
induction the membrane is 0 after every step and ``KV = [c >= 1]`` exactly. At ``theta = 0.5`` a
single coincidence (``c = 1``, ``v = 0.5``) does not fire (tested exhaustively).

Weight sharing: the token sum and broadcast store ``D * N`` ones each (no dense ``D x N*D``
selector); the per-token projections are ``Conv1d(kernel=1)`` (``D x D``). The sub-graph is tagged
``metadata = {"op": "sdsa", "n_tokens", "dim", "heads", "kv_v_th"}`` so a target may swap in a
fused implementation; any NIR reader can run the primitive form.
"""

from __future__ import annotations

from typing import Any

import nir
import numpy as np

__all__ = [
    "AND_THRESHOLD",
    "SDSA_NODE_NAMES",
    "and_node",
    "lif_node",
    "token_conv",
    "token_sum",
    "token_broadcast",
    "sdsa_graph",
]

AND_THRESHOLD = 1.5  # two 0/1 inputs summed: > 1.5 iff both are 1
SDSA_NODE_NAMES = ("input", "sn_in", "q", "q_sn", "k", "k_sn", "v", "v_sn", "and_kv", "kv_sum", "kv_sn",
                   "kv_bcast", "and_qkv", "proj", "output")


def _f(a: np.ndarray | float, shape: tuple[int, ...] | None = None, dtype: Any = np.float32) -> np.ndarray:
    arr = np.asarray(a, dtype=dtype)
    if shape is not None:
        arr = np.broadcast_to(arr, shape).copy()
    if arr.ndim == 0:
        arr = arr.reshape(1)
    return np.ascontiguousarray(arr)


def lif_node(shape: tuple[int, ...], *, tau_steps: float, v_th: float, dt: float,
             v_leak: np.ndarray | None = None, metadata: dict | None = None, dtype: Any = np.float32) -> nir.LIF:
    """A NIR LIF equal to the project's discrete LIF under forward Euler.

    The project's neuron is ``v <- v + (x - v)/tau_steps`` (``dt = 1`` step), strict threshold,
    hard reset to 0. NIR's ``tau dv/dt = (v_leak - v) + R I`` under Euler with step ``dt`` is
    ``v <- v + dt/tau ((R I + v_leak) - v)``; both agree for ``tau = tau_steps * dt``, ``R = 1``,
    ``v_reset = 0``. A constant input bias ``b`` (e.g. the per-token positional bias) is exactly
    ``v_leak = b`` (with ``R = 1``).

    Args:
        shape: neuron shape (``[D, N]`` for tokens).
        tau_steps: membrane time constant in steps.
        v_th: threshold (strict ``>``).
        dt: the graph's time step (recorded in the top graph's metadata).
        v_leak: per-neuron constant input bias (default 0).
        metadata: node metadata.
        dtype: parameter dtype.
    """
    z = np.zeros(shape, dtype=dtype)
    return nir.LIF(
        tau=_f(tau_steps * dt, shape, dtype),
        r=_f(1.0, shape, dtype),
        v_leak=z.copy() if v_leak is None else _f(v_leak, shape, dtype),
        v_threshold=_f(v_th, shape, dtype),
        v_reset=z.copy(),
        metadata=dict(metadata or {}),
    )


def and_node(shape: tuple[int, ...], dtype: Any = np.float32) -> nir.Threshold:
    """AND of two 0/1 spike tensors fed by two edges: ``Threshold(1.5)``."""
    return nir.Threshold(threshold=_f(AND_THRESHOLD, shape, dtype))


def token_conv(weight: np.ndarray, bias: np.ndarray | None, n_tokens: int, dtype: Any = np.float32) -> nir.Conv1d:
    """A token-wise Linear ``[D_out, D_in]`` as ``Conv1d(kernel=1)`` on ``[D_in, N]``, weight-shared over tokens."""
    w = _f(weight, None, dtype)
    b = np.zeros(w.shape[0], dtype=dtype) if bias is None else _f(bias, None, dtype)
    return nir.Conv1d(input_shape=int(n_tokens), weight=w[:, :, None].copy(), stride=1, padding=0,
                      dilation=1, groups=1, bias=b)


def token_sum(dim: int, n_tokens: int, dtype: Any = np.float32) -> nir.Linear:
    """Sum over tokens per channel, ``[D, N] -> [D, 1]``: a channel-batched ``Linear`` with weight
    ``[D, 1, N]`` of ones (NIR's ``(..., out, in)`` weight form: ``y[d] = W[d] x[d]``).

    A depthwise ``Conv1d`` (``groups = D``) would store the same ``D * N`` ones, but NIR 1.0.8 derives
    a Conv1d's input type from ``weight.shape[1]`` ignoring ``groups``, so it fails the type check.
    """
    return nir.Linear(weight=np.ones((int(dim), 1, int(n_tokens)), dtype=dtype))


def token_broadcast(dim: int, n_tokens: int, dtype: Any = np.float32) -> nir.Linear:
    """Copy per channel to every token, ``[D, 1] -> [D, N]``: channel-batched ``Linear`` with weight
    ``[D, N, 1]`` of ones."""
    return nir.Linear(weight=np.ones((int(dim), int(n_tokens), 1), dtype=dtype))


def sdsa_graph(
    *,
    n_tokens: int,
    dim: int,
    heads: int,
    q: tuple[np.ndarray, np.ndarray | None],
    k: tuple[np.ndarray, np.ndarray | None],
    v: tuple[np.ndarray, np.ndarray | None],
    proj: tuple[np.ndarray, np.ndarray | None],
    tau_steps: float,
    v_th: float,
    kv_v_th: float,
    dt: float,
    sn_in_bias: np.ndarray | None = None,
    dtype: Any = np.float32,
) -> nir.NIRGraph:
    """The SDSA block (with its input neuron) as a sub-graph: ``U [D, N] -> current [D, N]``.

    Args:
        n_tokens: N.
        dim: D (channels).
        heads: heads (they partition D; bookkeeping only, KV is per channel).
        q, k, v, proj: ``(weight [D, D], bias [D] or None)`` of the token-wise projections, BatchNorm folded.
        tau_steps: membrane time constant of every neuron in steps.
        v_th: threshold of ``sn_in``, ``q_sn``, ``k_sn``, ``v_sn``.
        kv_v_th: threshold of ``kv_sn``; must lie in ``[0, 1/tau_steps)`` for the OR to be exact.
        dt: the graph time step.
        sn_in_bias: per-neuron constant input bias of ``sn_in`` (``[D, N]``), e.g. the positional bias.
        dtype: parameter dtype.

    Returns:
        The tagged ``NIRGraph`` (nodes :data:`SDSA_NODE_NAMES`).

    Raises:
        ValueError: ``kv_v_th`` outside ``[0, 1/tau_steps)``.
    """
    if not 0.0 <= kv_v_th < 1.0 / tau_steps:
        raise ValueError(f"kv_v_th={kv_v_th} is not in [0, 1/tau) = [0, {1.0 / tau_steps:g}): "
                         "SN_kv would not be an exact OR under the strict threshold")
    shape = (int(dim), int(n_tokens))
    nodes: dict[str, nir.NIRNode] = {
        "input": nir.Input(input_type=np.array(shape)),
        "sn_in": lif_node(shape, tau_steps=tau_steps, v_th=v_th, dt=dt, v_leak=sn_in_bias, dtype=dtype),
        "q": token_conv(*q, n_tokens, dtype=dtype),
        "q_sn": lif_node(shape, tau_steps=tau_steps, v_th=v_th, dt=dt, dtype=dtype),
        "k": token_conv(*k, n_tokens, dtype=dtype),
        "k_sn": lif_node(shape, tau_steps=tau_steps, v_th=v_th, dt=dt, dtype=dtype),
        "v": token_conv(*v, n_tokens, dtype=dtype),
        "v_sn": lif_node(shape, tau_steps=tau_steps, v_th=v_th, dt=dt, dtype=dtype),
        "and_kv": and_node(shape, dtype),
        "kv_sum": token_sum(dim, n_tokens, dtype),
        "kv_sn": lif_node((int(dim), 1), tau_steps=tau_steps, v_th=kv_v_th, dt=dt, metadata={"role": "or"},
                          dtype=dtype),
        "kv_bcast": token_broadcast(dim, n_tokens, dtype),
        "and_qkv": and_node(shape, dtype),
        "proj": token_conv(*proj, n_tokens, dtype=dtype),
        "output": nir.Output(output_type=np.array(shape)),
    }
    edges = [
        ("input", "sn_in"),
        ("sn_in", "q"), ("sn_in", "k"), ("sn_in", "v"),
        ("q", "q_sn"), ("k", "k_sn"), ("v", "v_sn"),
        ("k_sn", "and_kv"), ("v_sn", "and_kv"),
        ("and_kv", "kv_sum"), ("kv_sum", "kv_sn"), ("kv_sn", "kv_bcast"),
        ("kv_bcast", "and_qkv"), ("q_sn", "and_qkv"),
        ("and_qkv", "proj"), ("proj", "output"),
    ]
    meta = {"op": "sdsa", "n_tokens": int(n_tokens), "dim": int(dim), "heads": int(heads),
            "kv_v_th": float(kv_v_th), "and_threshold": AND_THRESHOLD}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta, type_check=True)
