"""The one graph model: a (nested) NIR graph flattened into typed nodes and edges.

:func:`flatten` inlines every sub-``NIRGraph`` once and returns a :class:`Graph`, which the
reference simulator and re-timing (:mod:`neuroposter.ir.timing`), the quantisers, the op counter,
the mapper and every target use.

Paths: a leaf node's *path* joins the names of its enclosing sub-graph nodes and its own with ``.``
(``"blocks.0.attn.and_kv"``). An edge end that names a sub-graph resolves to the sub-graph's
``Output`` (as a source) or ``Input`` (as a destination) nodes; a dotted end (``"sub.inner"``)
reaches into a sub-graph, whose name may itself hold dots (the shortest head that names a sub-graph
wins). The sub-graphs' own ``Input``/``Output`` nodes are *junctions* and are removed: NIR edges are
identity maps and fan-in is summed, so ``a -> sub.input -> b`` is ``a -> b`` (every source of a
junction connects to every destination of it). Only the top graph's ``Input``/``Output`` nodes stay.

Edges keep their multiplicity (an edge that stands twice is summed twice, as the simulator needs);
:meth:`Graph.unique_edges` is the de-duplicated view (one synapse per node pair) that the quantisers,
the mapper and the Loihi builder use. Node roles come from :mod:`neuroposter.ir.nodes`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import nir
import numpy as np

from neuroposter.ir.nodes import NodeType, UnknownNodeTypeError, node_type

__all__ = ["Edge", "GraphError", "Node", "Graph", "Projection", "Synapses", "flatten", "executable", "topo_sort",
           "HOST_PLACEMENT", "host_paths"]

Edge = tuple[str, str]


class GraphError(ValueError):
    """A graph that cannot be flattened or walked as asked; the message names the node(s).

    Attributes:
        node: the node (path) at fault, or None.
        node_type: its NIR type name, or None.
        reason: what is wrong, without the node's name (for callers that wrap the error).
        nodes: every node concerned (for a cycle, the nodes on or behind it).
    """

    def __init__(self, message: str, *, node: str | None = None, node_type: str | None = None,
                 reason: str | None = None, nodes: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.node, self.node_type, self.reason = node, node_type, reason or message
        self.nodes = list(nodes) or ([node] if node is not None else [])


@dataclass(frozen=True)
class Node:
    """One node of the flattened graph.

    Attributes:
        path: the node's path.
        nir: the NIR node.
        type: its entry in the node-type table.
        in_shape: shape of its summed input (no batch dim); None when the node carries no type.
        out_shape: shape of its output (no batch dim); None when the node carries no type.
        group: path of the enclosing sub-graph (``""``: the top graph).
    """

    path: str
    nir: nir.NIRNode
    type: NodeType
    in_shape: tuple[int, ...] | None
    out_shape: tuple[int, ...] | None
    group: str = ""

    @property
    def role(self) -> str:
        """The role (see :mod:`neuroposter.ir.nodes`)."""
        return self.type.role


@dataclass(frozen=True)
class Synapses:
    """The synapses of one connection node.

    Attributes:
        stored: weight parameters as stored (a Conv1d kernel counts once however many tokens re-use
            it; ``Scale``: its scale vector; pooling: 0).
        expanded: (pre, post) pairs the node realises, i.e. its dense equivalent (weight re-use
            counted; for a padded convolution an upper bound).
    """

    stored: int
    expanded: int


@dataclass(frozen=True)
class Projection:
    """One path ``src unit -> [Flatten] -> [connections] -> [Flatten] -> dst unit``.

    Units are the neurons and the top-level ``Input``/``Output`` nodes.

    Attributes:
        src: source unit (neuron or ``Input``).
        dst: destination unit (neuron or ``Output``).
        conn: the last connection node on the path, or None for a direct (identity) edge.
        path: every node between src and dst, in order.
    """

    src: str
    dst: str
    conn: str | None
    path: tuple[str, ...]


def topo_sort(nodes: Iterable[str], edges: Iterable[Edge]) -> tuple[list[str], list[str]]:
    """Kahn's topological order, stable: ready nodes leave in the order they became ready, the
    initially ready ones in node order.

    Args:
        nodes: the node names, in graph order.
        edges: ``(src, dst)``; a repeated edge counts as often as it stands, an edge with an end
            outside ``nodes`` is ignored.

    Returns:
        ``(order, cyclic)``: the ordered nodes, and the nodes on or behind a cycle (in node order).
    """
    nodes = list(nodes)
    indeg = {n: 0 for n in nodes}
    succ: dict[str, list[str]] = {n: [] for n in nodes}
    for s, d in edges:
        if s in succ and d in indeg:
            succ[s].append(d)
            indeg[d] += 1
    ready = [n for n in nodes if indeg[n] == 0]
    order: list[str] = []
    while ready:
        n = ready.pop(0)
        order.append(n)
        for d in succ[n]:
            indeg[d] -= 1
            if indeg[d] == 0:
                ready.append(d)
    done = set(order)
    return order, [n for n in nodes if n not in done]


def _numel(shape: Any) -> int:
    return int(np.prod(np.asarray(shape).reshape(-1))) if shape is not None else 0


@dataclass
class Graph:
    """A NIR graph with its sub-graphs inlined (see the module docstring).

    Attributes:
        nodes: path -> :class:`Node`, in graph order (a sub-graph's nodes stand where it stood).
        edges: ``(src, dst)`` paths, with repetition.
        inputs: paths of the top-level ``Input`` nodes.
        outputs: paths of the top-level ``Output`` nodes.
        dt: the time step (``metadata["dt"]``, default 1.0).
        groups: sub-graph path -> a copy of its metadata (e.g. the SDSA tags), outer before inner.
        metadata: a copy of the top graph's metadata.
        group_parent: sub-graph path -> path of the sub-graph that holds it (``""``: the top graph).
        strict: flattened with ``strict=True`` (executable: one Input, one Output, every shape known).
    """

    nodes: dict[str, Node]
    edges: list[Edge]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    dt: float = 1.0
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    group_parent: dict[str, str] = field(default_factory=dict)
    strict: bool = False

    # -- structure ------------------------------------------------------------------------------

    @property
    def input(self) -> str:
        """The one top-level ``Input`` (GraphError when there is not exactly one)."""
        if len(self.inputs) != 1:
            raise GraphError(f"the graph has {len(self.inputs)} top-level Input nodes; one is needed")
        return self.inputs[0]

    @property
    def output(self) -> str:
        """The one top-level ``Output`` (GraphError when there is not exactly one)."""
        if len(self.outputs) != 1:
            raise GraphError(f"the graph has {len(self.outputs)} top-level Output nodes; one is needed")
        return self.outputs[0]

    def unique_edges(self) -> list[Edge]:
        """The edges without repetition, in first-seen order."""
        return list(dict.fromkeys(self.edges))

    def preds(self, path: str, *, unique: bool = False) -> list[str]:
        """Sources of the edges into ``path`` (with repetition unless ``unique``)."""
        return [s for s, d in (self.unique_edges() if unique else self.edges) if d == path]

    def succs(self, path: str, *, unique: bool = False) -> list[str]:
        """Destinations of the edges out of ``path`` (with repetition unless ``unique``)."""
        return [d for s, d in (self.unique_edges() if unique else self.edges) if s == path]

    def fan_in(self, path: str) -> int:
        """Number of edges into ``path`` (a repeated edge counts each time: NIR sums them)."""
        return sum(1 for _, d in self.edges if d == path)

    def fan_out(self, path: str) -> int:
        """Number of edges out of ``path``."""
        return sum(1 for s, _ in self.edges if s == path)

    def tag(self, path: str) -> dict[str, Any]:
        """Metadata of the innermost sub-graph enclosing ``path`` that has metadata (``{}``: none)."""
        group = self.nodes[path].group
        while group and not self.groups[group]:
            group = self.group_parent[group]
        return self.groups[group] if group else {}

    def topo_sort(self, edges: Iterable[Edge] | None = None) -> tuple[list[str], list[str]]:
        """:func:`topo_sort` over the nodes and ``edges`` (default: every edge)."""
        return topo_sort(self.nodes, self.edges if edges is None else edges)

    def topo_order(self, edges: Iterable[Edge] | None = None) -> list[str]:
        """The nodes in topological order over ``edges`` (default: every edge).

        Raises:
            GraphError: a cycle; ``.nodes`` holds the nodes on or behind it, the message names them.
        """
        order, cyclic = self.topo_sort(edges)
        if cyclic:
            first = min(cyclic)
            raise GraphError(f"nodes {sorted(cyclic)[:6]} form a cycle", node=first,
                             node_type=self.nodes[first].type.name, reason="is on a cycle", nodes=cyclic)
        return order

    # -- projections and synapses ---------------------------------------------------------------

    def is_unit(self, path: str) -> bool:
        """True for neurons and the top-level ``Input``/``Output`` nodes (the ends of projections)."""
        return self.nodes[path].type.role in ("input", "output", "neuron")

    def projections(self) -> list[Projection]:
        """Every unit-to-unit path (one per route; chains of connections and reshapes allowed),
        over the de-duplicated edges, grouped by destination in graph order.

        Raises:
            GraphError: a node on such a path that is neither a unit, a connection nor a reshape.
        """
        edges = self.unique_edges()
        preds: dict[str, list[str]] = {n: [] for n in self.nodes}
        for s, d in edges:
            preds[d].append(s)
        out: list[Projection] = []

        def back(path: str, route: tuple[str, ...], dst: str) -> None:
            for p in preds[path]:
                n = self.nodes[p]
                if self.is_unit(p):
                    conns = [x for x in route if self.nodes[x].role == "conn"]
                    out.append(Projection(p, dst, conns[-1] if conns else None, route))
                elif n.role in ("conn", "reshape"):
                    back(p, (p,) + route, dst)
                else:
                    raise GraphError(f"node {p!r} ({n.type.name}) cannot stand on a projection (a unit -> "
                                     "connections/reshapes -> unit path)", node=p, node_type=n.type.name,
                                     reason="node type is not supported")

        for name, node in self.nodes.items():
            if self.is_unit(name) and node.role != "input":
                back(name, (), name)
        return out

    def synapses(self, path: str) -> Synapses:
        """The stored and expanded synapse counts of a node (zero for a node that is no connection).

        Raises:
            GraphError: an expanded count that needs the node's output shape, which it lacks.
        """
        node = self.nodes[path]
        x = node.nir
        if node.role != "conn":
            return Synapses(0, 0)
        if isinstance(x, nir.Scale):
            n = int(np.asarray(x.scale).size)
            return Synapses(n, n)
        if isinstance(x, (nir.SumPool2d, nir.AvgPool2d)):
            k = np.asarray(x.kernel_size).reshape(-1)
            return Synapses(0, int(np.prod(k) * _numel(self._out(node))))
        w = np.asarray(x.weight)
        if isinstance(x, nir.Conv1d):
            return Synapses(int(w.size), int(w.shape[0] * w.shape[1] * w.shape[2] * self._out(node)[-1]))
        if isinstance(x, nir.Conv2d):
            out = self._out(node)
            return Synapses(int(w.size), int(w.size * out[-1] * out[-2]))
        return Synapses(int(w.size), int(w.size))   # Affine, Linear

    @staticmethod
    def _out(node: Node) -> tuple[int, ...]:
        if node.out_shape is None:
            raise GraphError(f"node {node.path!r} has no output type; build the graph with type_check=True",
                             node=node.path, node_type=node.type.name)
        return node.out_shape


def executable(graph: nir.NIRGraph | Graph) -> Graph:
    """``graph`` flattened with ``strict=True``, or ``graph`` itself when it is such a :class:`Graph`.

    Raises:
        GraphError: the strict checks of :func:`flatten`, or a :class:`Graph` flattened without them.
    """
    if isinstance(graph, Graph):
        if not graph.strict:
            raise GraphError("the graph was flattened without strict=True; executing it needs one Input, one "
                             "Output and every shape: pass the NIR graph or flatten(graph, strict=True)")
        return graph
    return flatten(graph, strict=True)


# -------------------------------------------------------------------------------------------------
# flattening
# -------------------------------------------------------------------------------------------------


def _shape(types: Any, key: str) -> tuple[int, ...] | None:
    if not isinstance(types, Mapping) or types.get(key) is None:
        return None
    return tuple(int(s) for s in np.asarray(types[key]).reshape(-1))


def _shapes(path: str, x: nir.NIRNode, t: NodeType, strict: bool) -> tuple[tuple[int, ...] | None, ...]:
    if t.role == "input":
        ins = outs = _shape(x.output_type, "output")
        missing = "output" if outs is None else None
    elif t.role == "output":
        ins = outs = _shape(x.input_type, "input")
        missing = "input" if ins is None else None
    else:
        ins, outs = _shape(x.input_type, "input"), _shape(x.output_type, "output")
        missing = "input" if ins is None else ("output" if outs is None else None)
    if strict and missing:
        raise GraphError(f"node {path!r} has no {missing} type; build the graph with type_check=True",
                         node=path, node_type=t.name)
    return ins, outs


def flatten(graph: nir.NIRGraph, *, strict: bool = False) -> Graph:
    """Flattens a (nested) NIR graph into a :class:`Graph` (see the module docstring).

    Args:
        graph: a NIR graph, possibly nested.
        strict: the graph must be executable as given: exactly one top-level ``Input`` and
            ``Output``, every node typed (shapes known), and a sub-graph named by an edge has exactly
            one ``Output`` (as a source) / ``Input`` (as a destination). Without it, such a sub-graph
            needs at least one, and missing shapes are ``None``.

    Returns:
        The :class:`Graph` (``.strict`` records the option).

    Raises:
        GraphError: an edge end that names no node, a sub-graph with no (strict: not exactly one)
            matching end, a node type outside the table; with ``strict`` also the I/O and type checks.
    """
    nodes: dict[str, Node] = {}
    edges: list[Edge] = []
    junctions: list[str] = []
    groups: dict[str, dict[str, Any]] = {}
    group_parent: dict[str, str] = {}

    def resolve(g: nir.NIRGraph, prefix: str, ref: str, side: str) -> list[str]:
        node = g.nodes.get(ref)
        if node is None:  # "sub.inner": the shortest head that names a sub-graph
            parts = ref.split(".")
            for i in range(1, len(parts)):
                sub = g.nodes.get(".".join(parts[:i]))
                if isinstance(sub, nir.NIRGraph):
                    return resolve(sub, f"{prefix}{'.'.join(parts[:i])}.", ".".join(parts[i:]), side)
            raise GraphError(f"edge endpoint {prefix + ref!r} names no node", node=prefix + ref, node_type="?",
                             reason="edge refers to a node that does not exist")
        if not isinstance(node, nir.NIRGraph):
            return [prefix + ref]
        inner = list(node.outputs if side == "src" else node.inputs)
        if (strict and len(inner) != 1) or not inner:
            what = "Output" if side == "src" else "Input"
            need = "exactly one" if strict else "at least one"
            raise GraphError(f"sub-graph {prefix + ref!r} has {len(inner)} {what} nodes; an edge naming it needs "
                             f"{need}", node=prefix + ref, node_type="NIRGraph", reason=f"sub-graph has no {what} node"
                             if not inner else f"sub-graph has {len(inner)} {what} nodes")
        return [f"{prefix}{ref}.{k}" for k in inner]

    def visit(g: nir.NIRGraph, prefix: str, group: str) -> None:
        for name, x in g.nodes.items():
            path = prefix + name
            if isinstance(x, nir.NIRGraph):
                groups[path] = dict(x.metadata or {})
                group_parent[path] = group
                visit(x, path + ".", path)
                continue
            try:
                t = node_type(x)
            except UnknownNodeTypeError as exc:
                raise GraphError(f"node {path!r}: {exc}", node=path, node_type=type(x).__name__,
                                 reason=str(exc)) from None
            ins, outs = _shapes(path, x, t, strict)
            nodes[path] = Node(path, x, t, ins, outs, group)
            if prefix and t.role in ("input", "output"):
                junctions.append(path)
        for src, dst in g.edges:
            for s in resolve(g, prefix, src, "src"):
                for d in resolve(g, prefix, dst, "dst"):
                    edges.append((s, d))

    visit(graph, "", "")
    for j in sorted(set(junctions)):   # bypass: every source of a junction to every destination of it
        ins = [s for s, d in edges if d == j]
        outs = [d for s, d in edges if s == j]
        edges = [(s, d) for s, d in edges if s != j and d != j]
        edges.extend((s, d) for s in ins for d in outs)
        del nodes[j]
    inputs = tuple(n for n, x in nodes.items() if x.role == "input")
    outputs = tuple(n for n, x in nodes.items() if x.role == "output")
    if strict and (len(inputs) != 1 or len(outputs) != 1):
        raise GraphError("the graph needs exactly one Input and one Output at top level, found "
                         f"inputs={list(inputs)}, outputs={list(outputs)}")
    meta = dict(graph.metadata) if isinstance(graph.metadata, Mapping) else {}
    dt = float(np.asarray(meta.get("dt", 1.0)).reshape(-1)[0])
    return Graph(nodes, edges, inputs, outputs, dt, groups, meta, group_parent, strict)


#: ``metadata["placement"]`` of a node (or sub-graph) that runs on the host CPU, not on the chip: a chip-fitted
#: model's host projection (:mod:`neuroposter.ir.lower`); the mapper, the op counts and the vendor checks skip it.
HOST_PLACEMENT = "host"


def host_paths(graph: "Graph | nir.NIRGraph") -> set[str]:
    """The flattened node paths that run on the host: a node whose metadata has ``"placement": "host"``, or any
    node inside a sub-graph whose metadata has it.

    Args:
        graph: a (nested) ``nir.NIRGraph`` or its :func:`flatten`.
    """
    g = graph if isinstance(graph, Graph) else flatten(graph)

    def hosted_group(group: str) -> bool:
        while group:
            if (g.groups.get(group) or {}).get("placement") == HOST_PLACEMENT:
                return True
            group = g.group_parent.get(group, "")
        return False

    return {p for p, n in g.nodes.items()
            if (getattr(n.nir, "metadata", None) or {}).get("placement") == HOST_PLACEMENT or hosted_group(n.group)}
