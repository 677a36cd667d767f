"""Flattened view of a (nested) NIR graph: the structure the simulator and the re-timing pass share.

A NIR graph may hold sub-``NIRGraph`` nodes. :func:`flatten` inlines them recursively (with
:mod:`neuroposter.ir.graph`, which quantisation and the op counts use as well): every
computational node gets a *path* (``"blocks.0.attn.and_kv"``: the names of the enclosing
sub-graph nodes and its own name, joined with ``.``), the ``Input``/``Output`` nodes of
sub-graphs disappear (edges are identity maps and fan-in is summed, so an edge ``a -> sub`` and
``sub.input -> b`` become ``a -> b``), and only the top graph's one ``Input`` and one ``Output``
remain (paths ``"input"``/``"output"`` unless named otherwise).

Hop model (used by ``per_hop`` execution and :func:`~neuroposter.ir.retime`), as Lava / Loihi 2
execute a network:

* a *connection* node (Affine, Linear, Conv1d, Conv2d, Scale, SumPool2d, AvgPool2d) is a synapse
  process: its output at step ``t`` is computed from its input at step ``t - 1`` (one hop);
* a *neuron* node (LIF, CubaLIF, IF, LI, I, Threshold) adds no step;
* an edge from a neuron or the ``Input`` into a neuron (possibly through a ``Flatten``/``Delay``) is
  an implicit identity synapse: it costs one hop (Lava needs an identity ``Dense``/``Sparse`` there;
  ``neuroposter.ir.quantize.quantize_loihi`` makes it an explicit ``Scale`` node, which counts the same);
* ``Flatten`` is a reshape (no step); ``Delay`` adds ``round(delay / dt)`` steps in both modes;
* ``Input`` feeds connection nodes directly (a Source port), ``Output`` reads directly (a Sink).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import nir
import numpy as np

from neuroposter.ir.graph import Edge, EndpointError, bypass_junctions, flatten_nested, topo_sort

__all__ = [
    "CONNECTION_TYPES",
    "NEURON_TYPES",
    "SPIKING_TYPES",
    "FlatGraph",
    "Unit",
    "flatten",
    "kind_of",
    "arrival_times",
]

CONNECTION_TYPES: tuple[type, ...] = (
    nir.Affine, nir.Linear, nir.Conv1d, nir.Conv2d, nir.Scale, nir.SumPool2d, nir.AvgPool2d,
)
NEURON_TYPES: tuple[type, ...] = (nir.LIF, nir.CubaLIF, nir.IF, nir.LI, nir.I, nir.Threshold)
SPIKING_TYPES: tuple[type, ...] = (nir.LIF, nir.CubaLIF, nir.IF, nir.Threshold)

class GraphStructureError(ValueError):
    """The graph cannot be executed as given; the message names the node."""


def kind_of(node: nir.NIRNode) -> str:
    """Role of a node: ``input``, ``output``, ``conn``, ``neuron``, ``reshape``, ``delay`` or ``unknown``."""
    if isinstance(node, nir.Input):
        return "input"
    if isinstance(node, nir.Output):
        return "output"
    if isinstance(node, CONNECTION_TYPES):
        return "conn"
    if isinstance(node, NEURON_TYPES):
        return "neuron"
    if isinstance(node, nir.Flatten):
        return "reshape"
    if isinstance(node, nir.Delay):
        return "delay"
    return "unknown"


@dataclass
class Unit:
    """One computational node of the flattened graph.

    Attributes:
        name: path of the node (sub-graph names joined with ``.``).
        node: the NIR node.
        kind: see :func:`kind_of`.
        in_shape: shape of the summed input (no batch dim).
        out_shape: shape of the output (no batch dim).
    """

    name: str
    node: nir.NIRNode
    kind: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]


@dataclass
class FlatGraph:
    """A NIR graph with sub-graphs inlined.

    Attributes:
        units: computational units (and the top Input/Output), by path, in graph order.
        edges: identity edges between unit paths (a list: a repeated edge is summed twice).
        input: path of the top ``Input`` unit.
        output: path of the top ``Output`` unit.
        dt: the time step (``graph.metadata["dt"]``, default 1.0).
        subgraphs: paths of the inlined sub-graphs with their metadata.
    """

    units: dict[str, Unit]
    edges: list[Edge]
    input: str
    output: str
    dt: float
    subgraphs: dict[str, dict] = field(default_factory=dict)

    def preds(self, name: str) -> list[str]:
        """Sources of the edges into ``name`` (with repetition)."""
        return [s for s, d in self.edges if d == name]

    def succs(self, name: str) -> list[str]:
        """Destinations of the edges out of ``name`` (with repetition)."""
        return [d for s, d in self.edges if s == name]

    def delay_steps(self, name: str) -> np.ndarray:
        """Per-element delay in steps of a ``Delay`` unit."""
        node = self.units[name].node
        steps = np.rint(np.asarray(node.delay, dtype=np.float64) / self.dt).astype(np.int64)
        if (steps < 0).any():
            raise GraphStructureError(f"node {name!r} (Delay) has a negative delay")
        return steps

    def internal_latency(self, name: str, mode: str) -> int:
        """Steps between a unit's input and its output: 1 for connections in ``per_hop``, the
        (maximum) delay for a ``Delay`` node, else 0."""
        kind = self.units[name].kind
        if kind == "conn" and mode == "per_hop":
            return 1
        if kind == "delay":
            return int(self.delay_steps(name).max(initial=0))
        return 0

    def _producer_kind(self, name: str, seen: frozenset[str] = frozenset()) -> set[str]:
        """Kinds of the nearest non-reshape, non-delay producers of ``name``'s output."""
        kind = self.units[name].kind
        if kind not in ("reshape", "delay") or name in seen:
            return {kind}
        out: set[str] = set()
        for p in self.preds(name):
            out |= self._producer_kind(p, seen | {name})
        return out

    def edge_hop(self, edge: Edge, mode: str) -> int:
        """1 when ``edge`` is an implicit identity synapse in ``per_hop`` mode (neuron or Input ->
        neuron, possibly through a reshape/delay), else 0."""
        if mode != "per_hop":
            return 0
        src, dst = edge
        if self.units[dst].kind != "neuron":
            return 0
        return 1 if {"neuron", "input"} & self._producer_kind(src) else 0


def _shape(types: dict | None, key: str, where: str) -> tuple[int, ...]:
    if types is None or types.get(key) is None:
        raise GraphStructureError(f"node {where!r} has no {key} type; build the graph with type_check=True")
    return tuple(int(s) for s in np.asarray(types[key]).reshape(-1))


def flatten(graph: nir.NIRGraph) -> FlatGraph:
    """Inlines sub-graphs and removes their Input/Output pass-through nodes
    (:func:`neuroposter.ir.graph.flatten_nested`, then :func:`~neuroposter.ir.graph.bypass_junctions`).

    Args:
        graph: a type-checked NIR graph with exactly one ``Input`` and one ``Output`` at top level.

    Returns:
        The :class:`FlatGraph`.

    Raises:
        GraphStructureError: several or no top-level inputs/outputs, dangling edges, missing types.
    """
    units: dict[str, Unit] = {}

    def unit(path: str, node: nir.NIRNode, parent: str) -> None:
        kind = kind_of(node)
        if kind == "input":
            shape = _shape(node.output_type, "output", path)
            units[path] = Unit(path, node, kind, shape, shape)
        elif kind == "output":
            shape = _shape(node.input_type, "input", path)
            units[path] = Unit(path, node, kind, shape, shape)
        else:
            units[path] = Unit(path, node, kind, _shape(node.input_type, "input", path),
                               _shape(node.output_type, "output", path))

    try:
        nested = flatten_nested(graph, sub_ends="one", on_node=unit)
    except EndpointError as exc:
        where = f"{exc.prefix}{exc.ref!r}"
        if exc.count is None:
            raise GraphStructureError(f"edge endpoint {where} is not a node of the graph") from None
        what = "Output" if exc.side == "src" else "Input"
        raise GraphStructureError(
            f"sub-graph {where} has {exc.count} {what} nodes; the simulator needs exactly one") from None
    nodes, edges = bypass_junctions(nested)
    units = {n: units[n] for n in nodes}
    inputs = [n for n, u in units.items() if u.kind == "input"]
    outputs = [n for n, u in units.items() if u.kind == "output"]
    if len(inputs) != 1 or len(outputs) != 1:
        raise GraphStructureError(
            f"the graph needs exactly one Input and one Output at top level, found inputs={inputs}, outputs={outputs}")
    meta = graph.metadata if isinstance(graph.metadata, dict) else {}
    dt = float(np.asarray(meta.get("dt", 1.0)).reshape(-1)[0])
    return FlatGraph(units=units, edges=edges, input=inputs[0], output=outputs[0], dt=dt,
                     subgraphs=nested.subgraphs)


def topo_order(flat: FlatGraph, instant: Iterable[Edge]) -> list[str]:
    """Order of evaluation within one step: a unit comes after the sources of its instant edges.

    Raises:
        GraphStructureError: the instant edges form a cycle (named).
    """
    order, cyclic = topo_sort(flat.units, instant)
    if cyclic:
        raise GraphStructureError(
            f"nodes {sorted(cyclic)[:6]} form a zero-delay cycle; add a Delay or a connection node (per_hop) to break it")
    return order


def edge_lags(flat: FlatGraph, mode: str, delays: dict[Edge, int] | None = None) -> list[int]:
    """Steps by which each edge (in ``flat.edges`` order) delays its signal: implicit hop plus delay."""
    delays = delays or {}
    unknown = set(delays) - set(flat.edges)
    if unknown:
        raise GraphStructureError(f"delays given for edges that are not in the graph: {sorted(unknown)[:4]}")
    lags = []
    for e in flat.edges:
        d = int(delays.get(e, 0))
        if d < 0:
            raise GraphStructureError(f"negative delay {d} on edge {e}")
        lags.append(flat.edge_hop(e, mode) + d)
    return lags


def arrival_times(flat: FlatGraph, mode: str, delays: dict[Edge, int] | None = None,
                  *, align: bool = False) -> tuple[dict[str, int], dict[Edge, int]]:
    """First step at which each unit's input carries data from input step 0.

    Args:
        flat: the flattened graph.
        mode: ``"same_step"`` or ``"per_hop"``.
        delays: extra per-edge delays (steps).
        align: when True, compute the delays that make every multi-input unit see all its inputs
            arrive at the same step (the latest one) and include them.

    Returns:
        ``(start, delays)``: ``start[unit]`` (the first step at which the unit receives input-aligned data;
        the unit is held at rest before it) and the (possibly extended) per-edge delays.
    """
    delays = dict(delays or {})
    lags = edge_lags(flat, mode, delays)
    lag_of: dict[Edge, list[int]] = {}
    for e, lag in zip(flat.edges, lags):
        lag_of.setdefault(e, []).append(lag)
    # Any DAG order works for the longest-path computation; use one over *all* edges.
    order = topo_order(flat, flat.edges)
    start: dict[str, int] = {}
    for n in order:
        if flat.units[n].kind == "input":
            start[n] = 0
            continue
        arr: list[tuple[Edge, int]] = []
        for s in dict.fromkeys(flat.preds(n)):
            ready = start[s] + flat.internal_latency(s, mode)
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
