"""Resource mapping of a NIR graph onto a chip's limits, with a fit / no-fit verdict naming the limit.

Counting rules (what ``mapping.json`` reports):

* **Neurons**: every neuron node (``LIF``, ``IF``, ``Threshold``, ``CubaLIF``, ``LI``...) counts its
  size; a ``Threshold`` is one compartment. Input and Output nodes are not neurons (Source/Sink).
* **Synapses**: a connection is expanded to its neuron-to-neuron matrix (``Conv1d(k=1)`` on
  ``[D, N]`` = ``Cout * Cin * N`` synapses; an implicit neuron -> neuron edge = one synapse per
  neuron). *Stored* synapses are what the chip keeps in memory: with weight sharing
  (``supports_weight_sharing: true``, e.g. Loihi 2's convolutional connectivity) a convolution is
  stored **once per core that hosts part of its destination population** (``Cout * Cin * K`` weights
  per such core: the weights are shared across tokens, not across cores); without it, every
  expanded synapse is stored. Dense and batched ``Linear``/``Affine`` are stored as their non-zero
  entries.
* **Fan-in** of a neuron: the number of presynaptic neurons with a non-zero synapse onto it,
  summed over all incoming connections (the residual stream sums several); **fan-out**: the number
  of postsynaptic neurons a neuron reaches. The maxima and the node that attains them are reported.
* **Cores** per population: ``max(ceil(neurons / neurons_per_core), ceil(stored / synapses_per_core))``
  (synapses are stored at the destination core); **chips**: ``ceil(cores / cores_per_chip)``, also
  bounded by the per-chip neuron and synapse totals.
* **Synapse memory** (only when ``weight_bits`` is known): a *lower bound* of ``weight_bits`` per
  stored synapse (indices, delays, row headers and neuron state are not counted). With
  ``memory_per_chip_mb`` the synapses live in a chip-wide store (SpiNNaker's SDRAM) and the total is
  checked against it; otherwise, with ``memory_per_core_kb``, they live in core memory (SpiNNaker 2's
  PE SRAM) and each population needs at least ``ceil(bytes / memory_per_core)`` cores, which then
  count against ``cores_per_chip``.

Verdict: ``fits`` is True when no limit is violated on one chip. Every violation is a sentence
naming the node, the quantity and the limit (e.g. ``"fan-in 2560 of node 'head_sn' exceeds the
fan_in limit 256"``); every violated limit is also summarised once in ``violated_limits``
(``{limit: {"needed": worst value, "available": limit, "nodes": [...]}}``). Unknown limits (null in
the profile) are not checked and are listed under ``unchecked``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import nir
import numpy as np

from neuroposter.ir.graph import Graph, GraphError, flatten
from neuroposter.ir.connectivity import SYNAPSE_MATRIX, shape_of
from neuroposter.ir.quantize import QuantizationError

__all__ = ["LayerUsage", "MappingResult", "map_graph"]


@dataclass
class LayerUsage:
    """Resources of one neuron population (and the connections stored at it).

    Attributes:
        node: population path.
        node_type: NIR type.
        neurons: neurons in the population.
        synapses: expanded incoming synapses.
        stored: incoming synapses as the chip stores them.
        fan_in: largest fan-in of one of its neurons.
        fan_out: largest fan-out of one of its neurons.
        cores: cores it needs.
        inputs: incoming connections (node names).
    """

    node: str
    node_type: str
    neurons: int
    synapses: int = 0
    stored: int = 0
    fan_in: int = 0
    fan_out: int = 0
    cores: int = 0
    inputs: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return dict(self.__dict__)


@dataclass
class MappingResult:
    """The mapping of a graph onto a profile.

    Attributes:
        profile: profile name.
        layers: per neuron population usage.
        totals: neurons, synapses, stored, cores, chips, max fan-in/out, input/output sizes.
        fits: True when nothing is violated on one chip.
        violations: sentences naming node, quantity and limit.
        unchecked: limits that are unknown (null) in the profile.
        notes: counting conventions applied.
        violated_limits: per violated limit, the worst needed value, the available value and the
            nodes that violate it.
    """

    profile: str
    layers: list[LayerUsage]
    totals: dict[str, Any]
    fits: bool
    violations: list[str]
    unchecked: list[str]
    notes: list[str]
    violated_limits: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``mapping.json``)."""
        return {"profile": self.profile, "fits": self.fits, "violations": self.violations,
                "violated_limits": self.violated_limits, "totals": self.totals, "unchecked": self.unchecked, "notes": self.notes,
                "layers": {l.node: l.to_dict() for l in self.layers}}

    @property
    def verdict(self) -> str:
        """One line: ``"fits on 1 chip (...)"`` or ``"does not fit: <every violated limit, needed vs available>"``."""
        t = self.totals
        if self.fits:
            return (f"fits on {t['chips']} chip ({t['neurons']} neurons, {t['stored_synapses']} stored synapses, "
                    f"{t['cores']} cores)")
        def one(k: str, v: dict[str, Any]) -> str:
            nodes = v["nodes"]
            where = f" ({len(nodes)} nodes, e.g. {nodes[0]!r})" if len(nodes) > 1 else (f" ({nodes[0]!r})" if nodes else "")
            if isinstance(v["needed"], (int, float)):
                return f"{k}: needs {v['needed']} > available {v['available']}{where}"
            return f"{k}: {v['needed']} not in {v['available']}{where}"

        return "does not fit: " + "; ".join(one(k, v) for k, v in self.violated_limits.items())


def _lim(profile: Any, name: str) -> Any:
    limits = getattr(profile, "limits", None)
    val = getattr(limits, name, None) if limits is not None else None
    if isinstance(val, dict):
        val = val.get("value")
    return val


def _matrix(fg: Graph, conn: str | None, src: str, dst: str) -> Any:
    """Expanded 0/1 connectivity ``(dst, src)`` of a projection (sparse)."""
    import scipy.sparse as sp


    if conn is None:
        n = int(np.prod(shape_of(fg.nodes[src].nir, "output")))
        return sp.identity(n, format="csr", dtype=np.int8)
    node = fg.nodes[conn].nir
    if type(node) not in SYNAPSE_MATRIX:
        raise QuantizationError(conn, type(node).__name__, "node type is not supported")
    w = np.asarray(node.scale if isinstance(node, nir.Scale) else node.weight)
    try:
        m = SYNAPSE_MATRIX[type(node)](node, shape_of(node, "input"), shape_of(node, "output"), (w != 0).astype(np.int8))
    except GraphError as exc:
        raise QuantizationError(conn, type(node).__name__, exc.reason) from None
    return m.tocsr()


def _compose_chain(fg: Graph, path: tuple[str, ...], src: str) -> Any:
    """Connectivity of a chain of connections (composed)."""
    m = None
    for x in path:
        if fg.nodes[x].role == "conn":
            mx = _matrix(fg, x, src, x)
            m = mx if m is None else (mx @ m)
            m.data[:] = 1
    return m


def map_graph(graph: nir.NIRGraph | Graph, profile: Any, *,
              delays: dict[tuple[str, str], int] | None = None) -> MappingResult:
    """Maps a (float or integer) NIR graph onto ``profile``'s limits.

    Args:
        graph: the NIR graph, or its :func:`~neuroposter.ir.graph.flatten`.
        profile: a :class:`~neuroposter.profiling.profiles.HardwareProfile` (or any object with
            ``name``, ``limits`` and optionally ``nir_nodes``).
        delays: re-timing delays per edge (checked against ``max_delay``).

    Returns:
        The :class:`MappingResult`.

    Raises:
        QuantizationError: a graph that cannot be flattened, or a node that cannot stand between two
            neuron populations (names it).
    """
    try:
        fg = graph if isinstance(graph, Graph) else flatten(graph)
    except GraphError as exc:
        raise QuantizationError(exc.node or "<graph>", exc.node_type or "?", exc.reason) from None
    name = str(getattr(profile, "name", "profile"))
    npc, spc = _lim(profile, "neurons_per_core"), _lim(profile, "synapses_per_core")
    cpc = _lim(profile, "cores_per_chip")
    sharing = bool(_lim(profile, "supports_weight_sharing"))
    violations: list[str] = []
    violated: dict[str, dict[str, Any]] = {}

    def flag(limit: str, needed: Any, available: Any, node: str | None, msg: str) -> None:
        violations.append(msg)
        v = violated.setdefault(limit, {"needed": needed, "available": available, "nodes": []})
        if isinstance(needed, (int, float)) and isinstance(v["needed"], (int, float)) and needed > v["needed"]:
            v["needed"] = needed
        if node is not None and node not in v["nodes"]:
            v["nodes"].append(node)

    notes = [
        "Conv1d/Conv2d/Scale on a chip without them: realised as expanded Linear connectivity",
        "synapses expanded to neuron-to-neuron connectivity; stored = as the chip keeps them",
        ("weight sharing: a convolution is stored once per core hosting its destination neurons"
         if sharing else "no weight sharing: every expanded synapse is stored"),
    ]
    # node types
    nir_nodes = {str(x) for x in (getattr(profile, "nir_nodes", None) or ())}
    models = _lim(profile, "neuron_models")
    expandable = {"Conv1d", "Conv2d", "Scale"} if nir_nodes & {"Affine", "Linear"} else set()
    for n, nd in fg.nodes.items():
        t = nd.type.name
        if t in expandable and t not in nir_nodes:
            continue   # realised as an expanded (block-diagonal) Linear on a chip without this type
        if nir_nodes and t not in nir_nodes:
            flag("nir_nodes", t, sorted(nir_nodes), n, f"node {n!r} ({t}): node type {t} is not supported by {name} "
                 f"(supported: {', '.join(sorted(nir_nodes))})")
        elif models and nd.role == "neuron" and t not in set(models):
            flag("neuron_models", t, list(models), n, f"node {n!r} ({t}): neuron model {t} is not hosted by {name} "
                 f"(neuron_models: {', '.join(models)})")

    try:
        projs = fg.projections()
    except GraphError as exc:
        raise QuantizationError(exc.node or "<graph>", exc.node_type or "?", exc.reason) from None
    pops = [n for n, nd in fg.nodes.items() if nd.role == "neuron"]
    usage: dict[str, LayerUsage] = {}
    fan_out: dict[str, np.ndarray] = {}

    for n in pops:
        usage[n] = LayerUsage(n, fg.nodes[n].type.name, int(np.prod(shape_of(fg.nodes[n].nir, "output"))))
        fan_out[n] = np.zeros(usage[n].neurons, dtype=np.int64)
    fan_in_vec: dict[str, np.ndarray] = {n: np.zeros(usage[n].neurons, dtype=np.int64) for n in pops}
    out_fan_in = 0
    for p in projs:
        m = _compose_chain(fg, p.path, p.src) if p.conn is not None else _matrix(fg, None, p.src, p.dst)
        rows = np.diff(m.indptr)
        cols = np.bincount(m.indices, minlength=m.shape[1])
        if p.src in fan_out:
            fan_out[p.src] += cols
        if p.dst in usage:
            u = usage[p.dst]
            fan_in_vec[p.dst] += rows
            u.synapses += int(m.nnz)
            u.inputs.append(p.conn or f"{p.src} (direct)")
            node = fg.nodes[p.conn].nir if p.conn else None
            if sharing and isinstance(node, (nir.Conv1d, nir.Conv2d)):
                per_core = int(np.count_nonzero(np.asarray(node.weight)))
                cores = max(1, math.ceil(u.neurons / npc)) if npc else 1
                u.stored += per_core * cores
            else:
                u.stored += int(m.nnz)
        else:
            out_fan_in = max(out_fan_in, int(rows.max(initial=0)))
    wbits = _lim(profile, "weight_bits")
    mem_core_kb, mem_chip_mb = _lim(profile, "memory_per_core_kb"), _lim(profile, "memory_per_chip_mb")
    core_mem = (not mem_chip_mb) and bool(mem_core_kb) and bool(wbits)
    if wbits and (mem_chip_mb or mem_core_kb):
        notes.append(f"synapse memory: lower bound of {wbits} bits (weight_bits) per stored synapse, in "
                     + (f"the chip-wide {mem_chip_mb} MB store" if mem_chip_mb else f"{mem_core_kb} KB per core"))
    for n, u in usage.items():
        u.fan_in = int(fan_in_vec[n].max(initial=0))
        u.fan_out = int(fan_out[n].max(initial=0))
        c_n = math.ceil(u.neurons / npc) if npc else 1
        c_s = math.ceil(u.stored / spc) if spc else 1
        c_m = math.ceil(u.stored * wbits / 8 / (mem_core_kb * 1024)) if core_mem else 1
        u.cores = max(1, c_n, c_s, c_m)

    # limits
    fi, fo = _lim(profile, "fan_in"), _lim(profile, "fan_out")
    for u in usage.values():
        if fi is not None and u.fan_in > fi:
            flag("fan_in", u.fan_in, fi, u.node,
                 f"fan-in {u.fan_in} of node {u.node!r} ({u.node_type}) exceeds the fan_in limit {fi}")
        if fo is not None and u.fan_out > fo:
            flag("fan_out", u.fan_out, fo, u.node,
                 f"fan-out {u.fan_out} of node {u.node!r} ({u.node_type}) exceeds the fan_out limit {fo}")
    total_neurons = sum(u.neurons for u in usage.values())
    total_syn = sum(u.synapses for u in usage.values())
    total_stored = sum(u.stored for u in usage.values())
    cores = sum(u.cores for u in usage.values())
    chips = math.ceil(cores / cpc) if cpc else 1
    npch, spch = _lim(profile, "neurons_per_chip"), _lim(profile, "synapses_per_chip")
    if npch:
        chips = max(chips, math.ceil(total_neurons / npch))
    if spch:
        chips = max(chips, math.ceil(total_stored / spch))
    if cpc and cores > cpc:
        big = max(usage.values(), key=lambda u: u.cores)
        why = " by neurons_per_core / synapses_per_core" + (" / synapse memory per core" if core_mem else "")
        flag("cores_per_chip", cores, cpc, None, f"needs {cores} cores > cores_per_chip {cpc} (counted{why}; "
             f"largest: {big.node!r} with {big.cores})")
    if npch and total_neurons > npch:
        flag("neurons_per_chip", total_neurons, npch, None, f"needs {total_neurons} neurons > neurons_per_chip {npch}")
    if spch and total_stored > spch:
        flag("synapses_per_chip", total_stored, spch, None,
             f"needs {total_stored} stored synapses > synapses_per_chip {spch}")
    syn_bytes = int(math.ceil(total_stored * wbits / 8)) if wbits else None
    if syn_bytes is not None and mem_chip_mb:
        avail = int(mem_chip_mb * 2 ** 20)
        if syn_bytes > avail:
            flag("memory_per_chip_mb", syn_bytes, avail, None,
                 f"needs at least {syn_bytes} bytes of synapse memory ({total_stored} stored synapses x {wbits}-bit "
                 f"weights) > memory_per_chip_mb {mem_chip_mb} ({avail} bytes)")
    elif syn_bytes is not None and core_mem and cpc:
        avail = int(mem_core_kb * 1024 * cpc)
        if syn_bytes > avail:
            flag("memory_per_core_kb", syn_bytes, avail, None,
                 f"needs at least {syn_bytes} bytes of synapse memory ({total_stored} stored synapses x {wbits}-bit "
                 f"weights) > memory_per_core_kb {mem_core_kb} x cores_per_chip {cpc} ({avail} bytes)")
    inputs = [int(np.prod(shape_of(fg.nodes[i].nir, "output"))) for i in fg.inputs]
    outputs = [int(np.prod(shape_of(fg.nodes[o].nir, "input"))) for o in fg.outputs]
    ipc, opc = _lim(profile, "inputs_per_chip"), _lim(profile, "outputs_per_chip")
    if ipc and inputs and max(inputs) > ipc:
        flag("inputs_per_chip", max(inputs), ipc, fg.inputs[0],
             f"input {fg.inputs[0]!r} has {max(inputs)} channels > inputs_per_chip {ipc}")
    if opc and outputs and max(outputs) > opc:
        flag("outputs_per_chip", max(outputs), opc, fg.outputs[0],
             f"output {fg.outputs[0]!r} has {max(outputs)} channels > outputs_per_chip {opc}")
    ml = _lim(profile, "max_layers")
    if ml and len(usage) > ml:
        flag("max_layers", len(usage), ml, None, f"{len(usage)} neuron layers > max_layers {ml}")
    md = _lim(profile, "max_delay")
    if md is not None and delays:
        worst = max(delays.items(), key=lambda kv: kv[1])
        if worst[1] > md:
            flag("max_delay", worst[1], md, f"{worst[0][0]} -> {worst[0][1]}",
                 f"re-timing delay {worst[1]} on edge {worst[0][0]!r} -> {worst[0][1]!r} exceeds max_delay {md}")
    mk = _lim(profile, "max_kernel_size")
    mc = _lim(profile, "max_channels")
    for n, nd in fg.nodes.items():
        node = nd.nir
        if isinstance(node, (nir.Conv1d, nir.Conv2d)):
            k = max(np.asarray(node.weight).shape[2:])
            c = max(np.asarray(node.weight).shape[:2])
            if mk and k > mk:
                flag("max_kernel_size", k, mk, n, f"node {n!r} kernel {k} > max_kernel_size {mk}")
            if mc and c > mc:
                flag("max_channels", c, mc, n, f"node {n!r} has {c} channels > max_channels {mc}")
    unchecked = [k for k in ("neurons_per_core", "synapses_per_core", "cores_per_chip", "neurons_per_chip",
                             "synapses_per_chip", "fan_in", "fan_out", "max_delay", "weight_bits") if _lim(profile, k) is None]
    if not wbits or not (mem_chip_mb or mem_core_kb):
        unchecked.append("synapse memory (needs weight_bits and memory_per_chip_mb or memory_per_core_kb)")
    big_in = max(usage.values(), key=lambda u: u.fan_in) if usage else None
    big_out = max(usage.values(), key=lambda u: u.fan_out) if usage else None
    totals = {"neurons": total_neurons, "synapses": total_syn, "stored_synapses": total_stored, "cores": cores,
              "chips": chips, "populations": len(usage),
              "max_fan_in": {"value": big_in.fan_in, "node": big_in.node} if big_in else None,
              "max_fan_out": {"value": big_out.fan_out, "node": big_out.node} if big_out else None,
              "readout_fan_in": out_fan_in, "inputs": inputs, "outputs": outputs,
              "synapse_bytes_min": syn_bytes}
    return MappingResult(name, list(usage.values()), totals, not violations, violations, unchecked, notes, violated)
