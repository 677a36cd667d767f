"""The hop model: when data reaches each node of a :class:`~neuroposter.ir.graph.Graph`.

Used by ``per_hop`` execution of the reference simulator and by :func:`~neuroposter.ir.retime`,
as Lava / Loihi 2 execute a network:

* a *connection* node (role ``conn``: Affine, Linear, Conv1d, Conv2d, Scale, SumPool2d, AvgPool2d) is
  a synapse process: its output at step ``t`` is computed from its input at step ``t - 1`` (one hop);
* a *neuron* node (LIF, CubaLIF, IF, LI, I, Threshold) adds no step;
* an edge from a neuron or the ``Input`` into a neuron (possibly through a ``Flatten``/``Delay``) is
  an implicit identity synapse: it costs one hop (Lava needs an identity ``Dense``/``Sparse`` there;
  ``neuroposter.targets.loihi.fixed_point.quantize_loihi`` makes it an explicit ``Scale`` node, which counts the same);
* ``Flatten`` is a reshape (no step); ``Delay`` adds ``round(delay / dt)`` steps in both modes;
* ``Input`` feeds connection nodes directly (a Source port), ``Output`` reads directly (a Sink).

In ``same_step`` mode only ``Delay`` nodes and explicit per-edge delays take time.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from neuroposter.ir.graph import Edge, Graph, GraphError

__all__ = ["delay_steps", "internal_latency", "edge_hop", "topo_order", "edge_lags", "arrival_times"]


def delay_steps(g: Graph, path: str) -> np.ndarray:
    """Per-element delay in steps of a ``Delay`` node (``round(delay / dt)``).

    Raises:
        GraphError: a negative delay.
    """
    steps = np.rint(np.asarray(g.nodes[path].nir.delay, dtype=np.float64) / g.dt).astype(np.int64)
    if (steps < 0).any():
        raise GraphError(f"node {path!r} (Delay) has a negative delay", node=path, node_type="Delay")
    return steps


def internal_latency(g: Graph, path: str, mode: str) -> int:
    """Steps between a node's input and its output: 1 for connections in ``per_hop``, the (maximum)
    delay of a ``Delay`` node, else 0."""
    role = g.nodes[path].role
    if role == "conn" and mode == "per_hop":
        return 1
    if role == "delay":
        return int(delay_steps(g, path).max(initial=0))
    return 0


def _producer_roles(g: Graph, path: str, seen: frozenset[str] = frozenset()) -> set[str]:
    """Roles of the nearest non-reshape, non-delay producers of ``path``'s output."""
    role = g.nodes[path].role
    if role not in ("reshape", "delay") or path in seen:
        return {role}
    out: set[str] = set()
    for p in g.preds(path):
        out |= _producer_roles(g, p, seen | {path})
    return out


def edge_hop(g: Graph, edge: Edge, mode: str) -> int:
    """1 when ``edge`` is an implicit identity synapse in ``per_hop`` mode (neuron or Input ->
    neuron, possibly through a reshape/delay), else 0."""
    if mode != "per_hop":
        return 0
    src, dst = edge
    if g.nodes[dst].role != "neuron":
        return 0
    return 1 if {"neuron", "input"} & _producer_roles(g, src) else 0


def topo_order(g: Graph, instant: Iterable[Edge]) -> list[str]:
    """Order of evaluation within one step: a node comes after the sources of its instant edges.

    Raises:
        GraphError: the instant edges form a cycle (named).
    """
    order, cyclic = g.topo_sort(instant)
    if cyclic:
        raise GraphError(f"nodes {sorted(cyclic)[:6]} form a zero-delay cycle; add a Delay or a connection "
                         "node (per_hop) to break it", nodes=cyclic)
    return order


def edge_lags(g: Graph, mode: str, delays: dict[Edge, int] | None = None) -> list[int]:
    """Steps by which each edge (in ``g.edges`` order) delays its signal: implicit hop plus delay.

    Raises:
        GraphError: delays on edges that are not in the graph, or negative delays.
    """
    delays = delays or {}
    unknown = set(delays) - set(g.edges)
    if unknown:
        raise GraphError(f"delays given for edges that are not in the graph: {sorted(unknown)[:4]}")
    lags = []
    for e in g.edges:
        d = int(delays.get(e, 0))
        if d < 0:
            raise GraphError(f"negative delay {d} on edge {e}")
        lags.append(edge_hop(g, e, mode) + d)
    return lags


def arrival_times(g: Graph, mode: str, delays: dict[Edge, int] | None = None,
                  *, align: bool = False) -> tuple[dict[str, int], dict[Edge, int]]:
    """First step at which each node's input carries data from input step 0.

    Args:
        g: the flattened graph.
        mode: ``"same_step"`` or ``"per_hop"``.
        delays: extra per-edge delays (steps).
        align: when True, compute the delays that make every multi-input node see all its inputs
            arrive at the same step (the latest one) and include them.

    Returns:
        ``(start, delays)``: ``start[node]`` (the first step at which the node receives input-aligned
        data; it is held at rest before it) and the (possibly extended) per-edge delays.

    Raises:
        GraphError: a cycle, or bad delays.
    """
    delays = dict(delays or {})
    lags = edge_lags(g, mode, delays)
    lag_of: dict[Edge, list[int]] = {}
    for e, lag in zip(g.edges, lags):
        lag_of.setdefault(e, []).append(lag)
    # Any DAG order works for the longest-path computation; use one over *all* edges.
    order = topo_order(g, g.edges)
    start: dict[str, int] = {}
    for n in order:
        if g.nodes[n].role == "input":
            start[n] = 0
            continue
        arr: list[tuple[Edge, int]] = []
        for s in dict.fromkeys(g.preds(n)):
            ready = start[s] + internal_latency(g, s, mode)
            for lag in lag_of[(s, n)]:
                arr.append(((s, n), ready + lag))
        if not arr:
            start[n] = 0
            continue
        latest = max(a for _, a in arr)
        start[n] = latest
        if align:
            for e, a in arr:
                if a < latest:
                    delays[e] = delays.get(e, 0) + (latest - a)
    return start, delays
