"""Nested NIR graphs as flat node paths and edges, and the topological order of such a graph.

The one implementation of both that the reference simulator and re-timing pass
(:mod:`neuroposter.ir._graph`), quantisation and the chip targets (:mod:`neuroposter.ir.quantize`)
and the op counts (:mod:`neuroposter.profiling.counts`) build on; each adds what it needs on top
(units and hops, projections, SDSA tags) and its own errors.

:func:`flatten_nested` inlines every sub-``NIRGraph``: a leaf node's *path* joins the names of its
enclosing sub-graph nodes and its own with ``.`` (``"blocks.0.attn.and_kv"``). An edge end that names
a sub-graph resolves to the sub-graph's ``Output`` (as a source) or ``Input`` (as a destination)
nodes; a dotted end (``"sub.inner"``) reaches into a sub-graph, whose name may itself hold dots.
The sub-graphs' own ``Input``/``Output`` nodes stay, as *junctions*; :func:`bypass_junctions`
removes them (NIR edges are identity maps and fan-in is summed, so ``a -> sub.input -> b`` is
``a -> b``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import nir

__all__ = ["Edge", "EndpointError", "NestedGraph", "flatten_nested", "bypass_junctions", "topo_sort"]

Edge = tuple[str, str]


class EndpointError(ValueError):
    """An edge end that does not resolve.

    Attributes:
        prefix: path of the graph holding the reference, with a trailing ``.`` (``""`` at top level).
        ref: the reference, relative to that graph.
        side: ``"src"`` or ``"dst"``.
        count: ``None`` when no node has that name; else the number of ``Output`` (``src``) or
            ``Input`` (``dst``) nodes of the sub-graph it names, which the check refused.
    """

    def __init__(self, prefix: str, ref: str, side: str, count: int | None = None) -> None:
        if count is None:
            msg = f"edge endpoint {prefix + ref!r} names no node"
        else:
            what = "Output" if side == "src" else "Input"
            msg = f"sub-graph {prefix + ref!r} has {count} {what} nodes"
        super().__init__(msg)
        self.prefix, self.ref, self.side, self.count = prefix, ref, side, count


@dataclass
class NestedGraph:
    """A NIR graph with its sub-graphs inlined (junctions still in place).

    Attributes:
        nodes: path -> leaf node, in graph order (a sub-graph's nodes stand where the sub-graph stood),
            the sub-graphs' ``Input``/``Output`` nodes included.
        edges: ``(src, dst)`` paths, with repetition: each sub-graph's edges after its nodes and
            before the edges of the graph around it.
        junctions: paths of the sub-graphs' ``Input``/``Output`` nodes.
        subgraphs: sub-graph path -> a copy of its metadata, outer before inner.
        parent: node or sub-graph path -> path of the sub-graph that holds it (``""``: the top graph).
    """

    nodes: dict[str, nir.NIRNode]
    edges: list[Edge]
    junctions: list[str]
    subgraphs: dict[str, dict]
    parent: dict[str, str]


def flatten_nested(graph: nir.NIRGraph, *, sub_ends: str = "any",
                   on_node: Callable[[str, nir.NIRNode, str], None] | None = None) -> NestedGraph:
    """Inlines every sub-graph of ``graph`` (see the module docstring).

    Args:
        graph: a NIR graph, possibly nested.
        sub_ends: how many ``Output`` (as a source) / ``Input`` (as a destination) nodes a sub-graph
            named by an edge must have: ``"one"``, ``"some"`` (at least one) or ``"any"`` (none
            drops the edge).
        on_node: called as ``on_node(path, node, parent)`` for every leaf when it is met (before the
            edges of its graph are resolved), so that a caller's per-node check raises in graph order.

    Raises:
        EndpointError: an edge end that names no node, or a sub-graph with the wrong number of ends.
    """
    if sub_ends not in ("one", "some", "any"):
        raise ValueError(f"sub_ends must be 'one', 'some' or 'any', got {sub_ends!r}")
    flat = NestedGraph({}, [], [], {}, {})

    def resolve(g: nir.NIRGraph, prefix: str, ref: str, side: str) -> list[str]:
        node = g.nodes.get(ref)
        if node is None:  # "sub.inner": the shortest head that names a sub-graph
            parts = ref.split(".")
            for i in range(1, len(parts)):
                sub = g.nodes.get(".".join(parts[:i]))
                if isinstance(sub, nir.NIRGraph):
                    return resolve(sub, f"{prefix}{'.'.join(parts[:i])}.", ".".join(parts[i:]), side)
            raise EndpointError(prefix, ref, side)
        if not isinstance(node, nir.NIRGraph):
            return [prefix + ref]
        inner = list(node.outputs if side == "src" else node.inputs)
        if (sub_ends == "one" and len(inner) != 1) or (sub_ends == "some" and not inner):
            raise EndpointError(prefix, ref, side, len(inner))
        return [f"{prefix}{ref}.{k}" for k in inner]

    def visit(g: nir.NIRGraph, prefix: str, parent: str) -> None:
        for name, node in g.nodes.items():
            path = prefix + name
            flat.parent[path] = parent
            if isinstance(node, nir.NIRGraph):
                flat.subgraphs[path] = dict(node.metadata or {})
                visit(node, path + ".", path)
                continue
            flat.nodes[path] = node
            if prefix and isinstance(node, (nir.Input, nir.Output)):
                flat.junctions.append(path)
            if on_node is not None:
                on_node(path, node, parent)
        for src, dst in g.edges:
            for s in resolve(g, prefix, src, "src"):
                for d in resolve(g, prefix, dst, "dst"):
                    flat.edges.append((s, d))

    visit(graph, "", "")
    return flat


def bypass_junctions(flat: NestedGraph) -> tuple[dict[str, nir.NIRNode], list[Edge]]:
    """The nodes without the junctions and the edges through them: every source of a junction
    connects to every destination of it (junctions taken in sorted path order)."""
    nodes, edges = dict(flat.nodes), list(flat.edges)
    for j in sorted(set(flat.junctions)):
        ins = [s for s, d in edges if d == j]
        outs = [d for s, d in edges if s == j]
        edges = [(s, d) for s, d in edges if s != j and d != j]
        edges.extend((s, d) for s in ins for d in outs)
        del nodes[j]
    return nodes, edges


def topo_sort(nodes: Iterable[str], edges: Iterable[Edge]) -> tuple[list[str], list[str]]:
    """Kahn's topological order, stable: ready nodes leave in the order they became ready, the
    initially ready ones in node order.

    Args:
        nodes: the node names, in graph order.
        edges: ``(src, dst)``; a repeated edge counts as often as it stands, an edge with an end
            outside ``nodes`` is ignored.

    Returns:
        ``(order, cyclic)``: the ordered nodes, and the nodes on or behind a cycle (in node order),
        which the caller refuses or places as it sees fit.
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
