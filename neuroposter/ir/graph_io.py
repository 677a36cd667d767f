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
from neuroposter.ir._graph import SPIKING_TYPES, flatten, kind_of

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


def _stored_weights(node: nir.NIRNode) -> int:
    if isinstance(node, (nir.Affine, nir.Linear, nir.Conv1d, nir.Conv2d)):
        return int(np.asarray(node.weight).size)
    if isinstance(node, nir.Scale):
        return int(np.asarray(node.scale).size)
    return 0


def _expanded_synapses(unit: Any) -> int:
    """Number of (pre, post) pairs a connection node realises (weight re-use counted)."""
    node = unit.node
    if isinstance(node, (nir.Affine, nir.Linear)):
        w = np.asarray(node.weight)
        return int(w.size)
    if isinstance(node, nir.Conv1d):
        w = np.asarray(node.weight)
        return int(w.shape[0] * w.shape[1] * w.shape[2] * unit.out_shape[-1])  # upper bound (padding included)
    if isinstance(node, nir.Conv2d):
        w = np.asarray(node.weight)
        return int(w.size * unit.out_shape[-1] * unit.out_shape[-2])
    if isinstance(node, nir.Scale):
        return int(np.asarray(node.scale).size)
    if isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
        k = np.asarray(node.kernel_size).reshape(-1)
        return int(np.prod(k) * _numel(unit.out_shape))
    return 0


def graph_stats(graph: nir.NIRGraph) -> dict[str, Any]:
    """What a graph holds: node counts by type (sub-graphs inlined, plus the count of sub-graphs by
    ``metadata["op"]``), neurons, synapses.

    Synapses are counted three ways: ``stored`` (weight parameters as stored: a Conv1d kernel is
    counted once however many tokens re-use it), ``expanded`` (pre/post pairs realised, i.e. the
    dense equivalent of each weight-shared connection; for a padded convolution an upper bound), and
    ``identity`` (neuron -> neuron edges, one synapse per element, weight 1).

    Returns:
        ``{"nodes_by_type", "subgraphs", "neurons", "spiking_neurons", "synapses_stored",
        "synapses_expanded", "synapses_identity", "edges"}``.
    """
    flat = flatten(graph)
    by_type = Counter(type(u.node).__name__ for u in flat.units.values())
    neurons = sum(_numel(u.out_shape) for u in flat.units.values() if u.kind == "neuron")
    spiking = sum(_numel(u.out_shape) for u in flat.units.values() if isinstance(u.node, SPIKING_TYPES))
    stored = sum(_stored_weights(u.node) for u in flat.units.values() if u.kind == "conn")
    expanded = sum(_expanded_synapses(u) for u in flat.units.values() if u.kind == "conn")
    identity = sum(_numel(flat.units[d].in_shape) for e in flat.edges
                   if flat.edge_hop(e, "per_hop") for d in [e[1]])
    ops = Counter(str(m.get("op", "graph")) for m in flat.subgraphs.values())
    return {
        "nodes_by_type": dict(sorted(by_type.items())),
        "subgraphs": dict(sorted(ops.items())),
        "neurons": int(neurons),
        "spiking_neurons": int(spiking),
        "synapses_stored": int(stored),
        "synapses_expanded": int(expanded),
        "synapses_identity": int(identity),
        "edges": len(flat.edges),
        "connection_nodes": sum(1 for u in flat.units.values() if u.kind == "conn"),
        "neuron_nodes": sum(1 for u in flat.units.values() if u.kind == "neuron"),
        "kinds": dict(Counter(kind_of(u.node) for u in flat.units.values())),
    }
