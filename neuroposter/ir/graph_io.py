"""Writing, reading, comparing and measuring NIR graphs.

``write_graph`` writes with ``nir.write`` (atomically), reads the file back with ``nir.read``
(type check on) and refuses a file that does not reproduce every parameter array and metadata
value of the graph. ``graph_stats`` counts what the graph stores.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import nir
import numpy as np

from neuroposter._io import atomic_path
from neuroposter.errors import DataError
from neuroposter.ir.graph import Graph, executable
from neuroposter.ir.timing import edge_hop

__all__ = ["write_graph", "read_graph", "graph_differences", "graph_stats"]


def read_graph(path: str | os.PathLike[str]) -> nir.NIRGraph:
    """Reads a NIR file with ``nir.read`` and the type check on.

    Raises:
        DataError: missing or unreadable file, or a graph that fails the type check.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such NIR file")
    try:
        return nir.read(str(path), type_check=True)
    except Exception as exc:  # noqa: BLE001 - nir raises assorted errors
        raise DataError(f"{path}: not a readable NIR graph ({type(exc).__name__}: {exc})") from None


def _diff(a: Any, b: Any, where: str, out: list[str]) -> None:
    if isinstance(a, dict) or isinstance(b, dict):
        if not (isinstance(a, dict) and isinstance(b, dict)):
            out.append(f"{where}: dict vs {type(b).__name__}")
            return
        for k in sorted(set(a) | set(b), key=str):
            if k not in a or k not in b:
                out.append(f"{where}.{k}: missing on one side")
            else:
                _diff(a[k], b[k], f"{where}.{k}", out)
        return
    if isinstance(a, (str, bytes)) or isinstance(b, (str, bytes)):
        sa = a.decode() if isinstance(a, bytes) else a
        sb = b.decode() if isinstance(b, bytes) else b
        if not (isinstance(sa, str) and isinstance(sb, str) and sa == sb) and not (
                isinstance(sa, str) and isinstance(sb, np.ndarray) and sb.size == 1 and str(sb.reshape(-1)[0]) == sa):
            out.append(f"{where}: {a!r} != {b!r}")
        return
    if a is None or b is None:
        if a is not b:
            out.append(f"{where}: {a!r} != {b!r}")
        return
    if isinstance(a, (list, tuple)) and a and isinstance(a[0], (list, tuple)):  # edges
        la = [tuple(map(str, e)) for e in a]
        lb = [tuple(x.decode() if isinstance(x, bytes) else str(x) for x in e) for e in b]
        if la != lb:
            out.append(f"{where}: edge lists differ")
        return
    xa, xb = np.asarray(a), np.asarray(b)
    if xa.dtype.kind in "SUO" or xb.dtype.kind in "SUO":
        if [str(v) for v in xa.reshape(-1)] != [v.decode() if isinstance(v, bytes) else str(v) for v in xb.reshape(-1)]:
            out.append(f"{where}: {a!r} != {b!r}")
        return
    if xa.shape != xb.shape or not np.array_equal(xa, xb):
        out.append(f"{where}: values differ (shapes {xa.shape} vs {xb.shape})")
    elif isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype != b.dtype:
        out.append(f"{where}: dtype {a.dtype} != {b.dtype}")


def graph_differences(a: nir.NIRGraph, b: nir.NIRGraph) -> list[str]:
    """Every difference between two graphs: nodes, edges, parameter arrays (values, shapes and
    dtypes) and metadata. Empty when they are equal."""
    out: list[str] = []
    _diff(a.to_dict(), b.to_dict(), "graph", out)
    return out


def write_graph(path: str | os.PathLike[str], graph: nir.NIRGraph, *, verify: bool = True) -> nir.NIRGraph:
    """Writes ``graph`` with ``nir.write`` (gzip) atomically, then re-reads it with ``nir.read``.

    Args:
        path: the ``.nir`` file to write.
        graph: the graph (parameters as numpy arrays with >= 1 dims).
        verify: compare the re-read graph with ``graph`` (every parameter and metadata value).

    Returns:
        The graph as read back from the file.

    Raises:
        DataError: the file does not reproduce the graph (the message lists the first differences).
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        nir.write(str(tmp), graph)
        back = read_graph(tmp)
        if verify:
            diffs = graph_differences(graph, back)
            if diffs:
                raise DataError(f"{path}: the written NIR file does not reproduce the graph: {'; '.join(diffs[:5])}")
    return back


def _numel(shape: Any) -> int:
    return int(np.prod(np.asarray(shape).reshape(-1))) if shape is not None else 0


def graph_stats(graph: nir.NIRGraph | Graph) -> dict[str, Any]:
    """What a graph holds: node counts by type (sub-graphs inlined, plus the count of sub-graphs by
    ``metadata["op"]``), neurons, synapses.

    Synapses are counted three ways: ``stored`` and ``expanded`` are the sums of
    :meth:`neuroposter.ir.graph.Graph.synapses` over the connection nodes (weight parameters as
    stored: a Conv1d kernel is counted once however many tokens re-use it; pre/post pairs realised,
    i.e. the dense equivalent of each weight-shared connection; for a padded convolution an upper
    bound), and ``identity`` (neuron -> neuron edges, one synapse per element, weight 1).

    Args:
        graph: a type-checked NIR graph, or its ``flatten(graph, strict=True)``.

    Returns:
        ``{"nodes_by_type", "subgraphs", "neurons", "spiking_neurons", "synapses_stored",
        "synapses_expanded", "synapses_identity", "edges", "connection_nodes", "neuron_nodes", "kinds"}``
        (``kinds``: node count per role, see :mod:`neuroposter.ir.nodes`).
    """
    flat = executable(graph)
    units = flat.nodes.values()
    by_type = Counter(u.type.name for u in units)
    neurons = sum(_numel(u.out_shape) for u in units if u.role == "neuron")
    spiking = sum(_numel(u.out_shape) for u in units if u.type.spiking)
    syn = [flat.synapses(u.path) for u in units if u.role == "conn"]
    identity = sum(_numel(flat.nodes[e[1]].in_shape) for e in flat.edges if edge_hop(flat, e, "per_hop"))
    ops = Counter(str(m.get("op", "graph")) for m in flat.groups.values())
    return {
        "nodes_by_type": dict(sorted(by_type.items())),
        "subgraphs": dict(sorted(ops.items())),
        "neurons": int(neurons),
        "spiking_neurons": int(spiking),
        "synapses_stored": int(sum(s.stored for s in syn)),
        "synapses_expanded": int(sum(s.expanded for s in syn)),
        "synapses_identity": int(identity),
        "edges": len(flat.edges),
        "connection_nodes": sum(1 for u in units if u.role == "conn"),
        "neuron_nodes": sum(1 for u in units if u.role == "neuron"),
        "kinds": dict(Counter(u.role for u in units)),
    }
