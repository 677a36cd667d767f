"""Per-core limits of a chip that runs one layer per core (Speck / DYNAP-CNN): kernel memory, neuron memory, cores,
input and output map sides, checked on a deployed NIR chain.

:func:`core_usage` walks the chip part of a flattened graph (nodes with ``metadata["placement"] == "host"`` are the
host's) in topological order and puts weighted layer ``i`` (``Conv2d``, ``Conv1d``, ``Affine`` or ``Linear``) on core
``i``, as the chip's mapping does (one core per layer, in order). Per core:

* kernel memory: the connection's weight entries (``c_out c_in k^2``; a dense layer ``out x in``) against
  ``limits.kernel_memory_per_core[i]``;
* neuron memory: the neurons the layer writes (its neuron node's shape, ``c_out H W``; the read-out into the
  Output: its outputs) against ``limits.neuron_memory_per_core[i]``;
* more weighted layers than the lists name: a violated ``cores_per_chip`` (``len(kernel_memory_per_core)``);
* the first chip convolution's input map side against ``limits.max_input_side`` (else ``facts.max_input_side_count``)
  and every convolution's output side against ``limits.max_output_side`` (else
  ``facts.max_output_fmap_side_count``).

The generic mapping (:func:`neuroposter.targets.mapping.map_graph`) checks node types, neuron models, fan-out,
``max_layers``, ``max_channels`` and ``max_kernel_size``; this module adds what it does not know. Pure; profiles
without ``kernel_memory_per_core`` / ``neuron_memory_per_core`` get no per-core check (:func:`applies`).
"""

from __future__ import annotations

from typing import Any

import nir
import numpy as np

from neuroposter.ir.connectivity import shape_of
from neuroposter.ir.graph import Graph, flatten, host_paths
from neuroposter.targets.fit import side_limit

__all__ = ["applies", "core_usage"]

_WEIGHTED = (nir.Conv2d, nir.Conv1d, nir.Affine, nir.Linear)
_NEURONS = (nir.IF, nir.LIF, nir.CubaLIF, nir.LI, nir.Threshold)


def applies(profile: Any) -> bool:
    """Whether the profile lists per-core kernel or neuron memory."""
    lim = getattr(profile, "limits", None)
    return bool(getattr(lim, "kernel_memory_per_core", None) or getattr(lim, "neuron_memory_per_core", None))


def core_usage(graph: Any, profile: Any) -> dict[str, Any]:
    """The per-core usage of ``graph``'s chip layers and every violated per-core limit (module docstring).

    Returns:
        ``{"cores": [{"core", "connection", "neuron", "kernel_entries", "kernel_memory", "neurons",
        "neuron_memory"}...], "violations": [str], "violated_limits": {limit: {"needed", "available", "nodes"}},
        "checked": [limit names]}``.
    """
    g = graph if isinstance(graph, Graph) else flatten(graph)
    host = host_paths(g)
    lim = profile.limits
    kmem = [int(v) for v in (getattr(lim, "kernel_memory_per_core", None) or ())]
    nmem = [int(v) for v in (getattr(lim, "neuron_memory_per_core", None) or ())]
    in_side, in_src = side_limit(profile, "max_input_side", "max_input_side_count")
    out_side, out_src = side_limit(profile, "max_output_side", "max_output_fmap_side_count")
    violations: list[str] = []
    violated: dict[str, dict[str, Any]] = {}

    def flag(limit: str, needed: int, available: int, node: str, msg: str) -> None:
        violations.append(msg)
        v = violated.setdefault(limit, {"needed": needed, "available": available, "nodes": []})
        v["needed"] = max(int(v["needed"]), int(needed))
        if node not in v["nodes"]:
            v["nodes"].append(node)

    order = g.topo_order()
    cores: list[dict[str, Any]] = []
    first_conv = True
    n_cores = max(len(kmem), len(nmem))
    for path in order:
        node = g.nodes[path].nir
        if path in host or not isinstance(node, _WEIGHTED):
            continue
        i = len(cores)
        w = np.asarray(node.weight)
        entries = int(w.size)
        # the neurons this layer writes: the next neuron node along its chain, else (the read-out) its outputs
        nxt, neuron = path, None
        while True:
            succ = g.succs(nxt, unique=True)
            if len(succ) != 1:
                break
            nxt = succ[0]
            nd = g.nodes[nxt].nir
            if isinstance(nd, _NEURONS):
                neuron = nxt
                break
            if isinstance(nd, _WEIGHTED) or isinstance(nd, nir.Output):
                break
        neurons = int(np.prod(shape_of(g.nodes[neuron].nir, "output"))) if neuron else int(
            np.prod(shape_of(node, "output")))
        row = {"core": i, "connection": path, "neuron": neuron, "kernel_entries": entries,
               "kernel_memory": kmem[i] if i < len(kmem) else None, "neurons": neurons,
               "neuron_memory": nmem[i] if i < len(nmem) else None}
        cores.append(row)
        if i >= n_cores:
            flag("cores_per_chip", i + 1, n_cores, path, f"node {path!r} needs core {i} (one core per layer) but the "
                 f"profile lists {n_cores} cores (kernel_memory_per_core / neuron_memory_per_core)")
        if row["kernel_memory"] is not None and entries > row["kernel_memory"]:
            flag("kernel_memory_per_core", entries, row["kernel_memory"], path,
                 f"node {path!r} on core {i} holds {entries} kernel entries > kernel_memory_per_core[{i}] "
                 f"{row['kernel_memory']}")
        if row["neuron_memory"] is not None and neurons > row["neuron_memory"]:
            flag("neuron_memory_per_core", neurons, row["neuron_memory"], neuron or path,
                 f"node {neuron or path!r} on core {i} keeps {neurons} neurons > neuron_memory_per_core[{i}] "
                 f"{row['neuron_memory']}")
        if isinstance(node, nir.Conv2d):
            hw = [int(v) for v in np.atleast_1d(node.input_shape)]
            if first_conv and in_side is not None and max(hw) > in_side:
                flag("max_input_side", max(hw), in_side, path,
                     f"node {path!r} reads a {hw[0]}x{hw[-1]} map > {in_src} {in_side} (the chip's input)")
            first_conv = False
            out_hw = [int(v) for v in shape_of(node, "output")[-2:]]
            if out_side is not None and max(out_hw) > out_side:
                flag("max_output_side", max(out_hw), out_side, path,
                     f"node {path!r} writes a {out_hw[0]}x{out_hw[-1]} map > {out_src} {out_side}")
    checked = [k for k, v in (("kernel_memory_per_core", kmem), ("neuron_memory_per_core", nmem),
                              (in_src or "max_input_side", in_side), (out_src or "max_output_side", out_side)) if v]
    return {"cores": cores, "violations": violations, "violated_limits": violated, "checked": checked}
