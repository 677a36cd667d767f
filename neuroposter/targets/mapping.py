"""Resource mapping of a NIR graph onto a chip *system* (the profile's chips, cores and limits), with a verdict.

Counting rules (what ``mapping.json`` reports):

* **Host placement**: a node whose metadata has ``"placement": "host"`` runs on the host CPU (a fitted
  model's host-side projection). Host nodes are *sources*, like the graph's ``Input``: they have no neurons,
  synapses or cores on the chip, their node types are not checked, and the chip's input channels
  (``totals["inputs"]``) are the outputs of the sources (Input nodes and host neurons) that feed chip nodes.
* **Neurons**: every chip neuron node (``LIF``, ``IF``, ``Threshold``, ``CubaLIF``, ``LI``...) counts its
  size; a ``Threshold`` is one compartment. Input and Output nodes are not neurons (Source/Sink).
* **Synapses** are the neuron-to-neuron connectivity of each projection (``Conv1d(k=1)`` on ``[D, N]`` =
  ``Cout * Cin * N`` synapses; an implicit neuron -> neuron edge = one synapse per neuron). They are counted
  **structurally** (:func:`projection_counts`) for the structured node types -- dense and token-batched
  ``Linear``/``Affine``, ``Conv1d`` with kernel 1, ``Scale`` and identity edges -- from the weights' non-zero
  pattern without building the neuron-to-neuron matrix; anything else (other convolutions, chains of several
  connections) is expanded to a sparse matrix (:data:`~neuroposter.ir.connectivity.SYNAPSE_MATRIX`). Both give
  the same counts (tested). *Stored* synapses are what the chip keeps: with weight sharing
  (``supports_weight_sharing: true``) a convolution is stored once per core that hosts part of its destination
  population; without it every synapse is stored.
* **Fan-in** of a neuron: presynaptic neurons with a non-zero synapse onto it, summed over all incoming
  projections (the residual stream sums several); **fan-out**: postsynaptic neurons it reaches.
* **Cores** of a population: ``max(ceil(neurons / neurons_per_core), ceil(stored / synapses_per_core))``, and
  with synapses in core memory (no ``memory_per_chip_mb``, but ``memory_per_core_kb`` and ``weight_bits``)
  at least ``ceil(synapse bytes / memory_per_core)``.
* **Fan-in above ``fan_in``**: where the profile says ``limits.fan_in_split: exact`` (SpiNNaker's split
  synapse / neuron cores), the inputs of every neuron are split over ``k = ceil(fan-in / fan_in)`` synapse
  cores per neuron core that each add a partial sum, handed to the neuron core in the same step; the synapse
  cores are counted into the cores and placed with their neuron core. Elsewhere (``none``: TrueNorth, whose
  relays would have to spike; unknown) the limit is violated and the violation says why no split was made.
* **Fan-out above ``fan_out``**: where ``limits.fan_out_split: exact`` (TrueNorth), each neuron gets
  ``ceil(fan-out / fan_out)`` identical copies (same inputs, so their synapses are stored again); copies count
  as neurons and cores. Where ``limits.fan_out_unit: population`` (Speck), ``fan_out`` bounds the destination
  populations (cores) of a population instead of a neuron's postsynaptic neurons.
* **Synapse memory** (only when ``weight_bits`` is known): a *lower bound* of ``weight_bits`` per stored
  synapse (indices, delays, row headers and neuron state are not counted).
* **Placement** (:mod:`neuroposter.targets.partition`): every population is cut into slices of one neuron core
  (plus its synapse cores), placed greedily in graph order onto the chips of the profile's ``system``
  (``chips`` is 1 when the profile has no system). Per chip it checks cores, neurons, stored synapses and
  synapse memory (``memory_per_chip_mb``); the network fits when every slice fits a chip and the chips used are
  at most the system's.

Verdict: ``fits`` is True when no limit is violated on the system. Every violation is a sentence naming the
node, the quantity and the limit (e.g. ``"fan-in 2560 of node 'head_sn' exceeds the fan_in limit 256"``);
every violated limit is also summarised once in ``violated_limits`` (``{limit: {"needed", "available",
"nodes"}}``). ``checked`` names what was checked, ``unchecked`` what was not: limits that are unknown (null) in
the profile, and routing tables, inter-chip bandwidth and timing, which are never modelled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import nir
import numpy as np

from neuroposter.ir.connectivity import SYNAPSE_MATRIX, shape_of
from neuroposter.ir.graph import Graph, GraphError, Projection, flatten, host_paths
from neuroposter.ir.quantize import QuantizationError
from neuroposter.targets.partition import ChipCapacity, place, slice_groups

__all__ = ["LayerUsage", "MappingResult", "ProjectionCounts", "map_graph", "projection_counts",
           "NEVER_CHECKED"]

#: what the mapper never models (always listed under ``unchecked``)
NEVER_CHECKED: tuple[str, ...] = ("routing tables", "inter-chip bandwidth / spike traffic",
                                  "timing (real-time step budget)")


@dataclass
class LayerUsage:
    """Resources of one neuron population (and the connections stored at it).

    Attributes:
        node: population path.
        node_type: NIR type.
        neurons: neurons in the population (the network's, without copies).
        synapses: incoming synapses (neuron-to-neuron).
        stored: incoming synapses as the chip stores them (copies included).
        fan_in: largest fan-in of one of its neurons.
        fan_out: largest fan-out of one of its neurons (destination populations where the profile's ``fan_out_unit``
            is ``"population"``).
        cores: cores it needs (neuron cores + synapse cores).
        inputs: incoming connections (node names).
        neuron_cores: cores that hold its neurons.
        synapse_cores: partial-sum (relay) cores of a split fan-in.
        fan_in_parts: partial sums each neuron's input is split into (1: no split).
        copies: instances of each neuron (1: no fan-out duplication).
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
    neuron_cores: int = 0
    synapse_cores: int = 0
    fan_in_parts: int = 1
    copies: int = 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return dict(self.__dict__)


@dataclass
class MappingResult:
    """The mapping of a graph onto a profile's system.

    Attributes:
        profile: profile name.
        layers: per neuron population usage.
        totals: neurons, synapses, stored, cores, chips, max fan-in/out, input/output sizes.
        fits: True when nothing is violated on the system.
        violations: sentences naming node, quantity and limit.
        unchecked: what was not checked: limits unknown (null) in the profile, and :data:`NEVER_CHECKED`.
        notes: counting conventions applied.
        violated_limits: per violated limit, the worst needed value, the available value and the
            nodes that violate it.
        checked: what was checked (limits the profile gives, and the placement's per-chip capacities).
        placement: the system (name, chips) and the placement (chips used, per-chip cores, neurons, synapses,
            synapse bytes, populations), the policy, and the fan-in splits / fan-out copies applied.
        host: nodes placed on the host (not counted on the chip).
    """

    profile: str
    layers: list[LayerUsage]
    totals: dict[str, Any]
    fits: bool
    violations: list[str]
    unchecked: list[str]
    notes: list[str]
    violated_limits: dict[str, dict[str, Any]] = field(default_factory=dict)
    checked: list[str] = field(default_factory=list)
    placement: dict[str, Any] = field(default_factory=dict)
    host: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``mapping.json``)."""
        return {"profile": self.profile, "fits": self.fits, "verdict": self.verdict, "violations": self.violations,
                "violated_limits": self.violated_limits, "totals": self.totals, "checked": self.checked,
                "unchecked": self.unchecked, "placement": self.placement, "host": self.host, "notes": self.notes,
                "layers": {l.node: l.to_dict() for l in self.layers}}

    @property
    def verdict(self) -> str:
        """One line: ``"fits on 2 of 48 chips (SpiNN-5 board): ..."`` or ``"does not fit: <every violated limit>"``."""
        t = self.totals
        if self.fits:
            system, n_sys = self.placement.get("system", "one chip"), self.placement.get("system_chips", 1)
            where = (f"fits on {t['chips']} chip" if n_sys == 1 else
                     f"fits on {t['chips']} of {n_sys} chips ({system})")
            extra = ""
            splits = self.placement.get("fan_in_splits") or {}
            if splits:
                extra += (f", fan-in split into up to {max(splits.values())} partial sums on {len(splits)} "
                          f"population{'s' if len(splits) > 1 else ''} ({t.get('synapse_cores', 0)} synapse cores)")
            copies = self.placement.get("fan_out_copies") or {}
            if copies:
                extra += (f", fan-out served by up to {max(copies.values())} neuron copies on {len(copies)} "
                          f"population{'s' if len(copies) > 1 else ''}")
            return (f"{where} ({t['neurons']} neurons, {t['stored_synapses']} stored synapses, "
                    f"{t['cores']} cores{extra})")

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


def _lim_note(profile: Any, name: str) -> str | None:
    notes = getattr(getattr(profile, "limits", None), "notes", None) or {}
    note = notes.get(name) if hasattr(notes, "get") else None
    return " ".join(str(note).split()) if note else None


# ------------------------------------------------------------------------------------------ counting


@dataclass
class ProjectionCounts:
    """Connectivity counts of one projection.

    Attributes:
        fan_in: per destination neuron, presynaptic neurons with a non-zero synapse onto it (flattened order).
        fan_out: per source neuron, postsynaptic neurons it reaches.
        synapses: non-zero synapses (neuron-to-neuron).
        structural: counted from the weights' pattern (True) or by expanding the matrix (False).
    """

    fan_in: np.ndarray
    fan_out: np.ndarray
    synapses: int
    structural: bool


def _pool_matrix(node: nir.NIRNode, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> Any:
    """The 0/1 connectivity of a 2-d pool: the depthwise convolution with an all-ones window of its kernel, stride
    and padding (sparse CSR ``(dst, src)``)."""
    c = int(in_shape[0])
    k = tuple(int(v) for v in np.broadcast_to(np.asarray(node.kernel_size).reshape(-1), (2,)))
    ones = np.ones((c, 1, *k), dtype=np.int8)
    conv = nir.Conv2d(input_shape=np.array(in_shape[1:]), weight=ones, stride=node.stride, padding=node.padding,
                      dilation=1, groups=c, bias=np.zeros(c))
    return SYNAPSE_MATRIX[nir.Conv2d](conv, in_shape, out_shape, ones).tocsr()


def _matrix(fg: Graph, conn: str) -> Any:
    """Expanded 0/1 connectivity ``(dst, src)`` of one connection node (sparse CSR)."""
    node = fg.nodes[conn].nir
    if isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):   # each output reads its window: a depthwise all-ones conv
        return _pool_matrix(node, shape_of(node, "input"), shape_of(node, "output"))
    if type(node) not in SYNAPSE_MATRIX:
        raise QuantizationError(conn, type(node).__name__, "node type is not supported")
    w = np.asarray(node.scale if isinstance(node, nir.Scale) else node.weight)
    try:
        m = SYNAPSE_MATRIX[type(node)](node, shape_of(node, "input"), shape_of(node, "output"), (w != 0).astype(np.int8))
    except GraphError as exc:
        raise QuantizationError(conn, type(node).__name__, exc.reason) from None
    return m.tocsr()


def _expanded(fg: Graph, conns: list[str], n_src: int) -> ProjectionCounts:
    import scipy.sparse as sp

    m = sp.identity(n_src, format="csr", dtype=np.int8) if not conns else None
    for x in conns:
        mx = _matrix(fg, x)
        m = mx if m is None else (mx @ m)
        m.data[:] = 1
    m.eliminate_zeros()
    return ProjectionCounts(np.diff(m.indptr).astype(np.int64),
                            np.bincount(m.indices, minlength=m.shape[1]).astype(np.int64), int(m.nnz), False)


def _pad_of(node: nir.Conv1d, k: int, dil: int) -> int:
    pad = node.padding
    if isinstance(pad, str):
        return 0 if pad == "valid" else (dil * (k - 1)) // 2
    return int(np.asarray(pad).reshape(-1)[0])


def _structural(fg: Graph, conn: str) -> ProjectionCounts | None:
    """Counts of one structured connection from its weights' non-zero pattern; None when not structured."""
    node = fg.nodes[conn].nir
    in_shape, out_shape = shape_of(node, "input"), shape_of(node, "output")
    why = None
    if isinstance(node, (nir.Affine, nir.Linear)):
        nz = np.asarray(node.weight) != 0
        if nz.ndim <= 2:
            nz2 = nz.reshape(nz.shape[0], -1) if nz.ndim == 2 else nz.reshape(1, -1)
            if nz2.shape[1] != int(np.prod(in_shape)):
                why = f"weight {nz.shape} does not match input shape {in_shape}"
            else:
                return ProjectionCounts(nz2.sum(1, dtype=np.int64), nz2.sum(0, dtype=np.int64),
                                        int(nz2.sum(dtype=np.int64)), True)
        else:
            lead, (n_out, n_in) = nz.shape[:-2], nz.shape[-2:]
            if tuple(in_shape[:-1]) != tuple(lead) or in_shape[-1] != n_in:
                why = f"batched weight {nz.shape} does not match input shape {in_shape}"
            else:
                nzb = nz.reshape(-1, n_out, n_in)
                return ProjectionCounts(nzb.sum(2, dtype=np.int64).reshape(-1), nzb.sum(1, dtype=np.int64).reshape(-1),
                                        int(nzb.sum(dtype=np.int64)), True)
        raise QuantizationError(conn, type(node).__name__, why)
    if isinstance(node, nir.Conv1d):
        w = np.asarray(node.weight)
        cout, cin_g, k = w.shape
        stride = int(np.asarray(node.stride).reshape(-1)[0])
        dil = int(np.asarray(node.dilation).reshape(-1)[0])
        if k != 1 or stride != 1 or _pad_of(node, k, dil) != 0 or len(in_shape) != 2 or in_shape[1] != out_shape[-1]:
            return None
        groups = int(node.groups)
        length = int(in_shape[1])
        nz = w[:, :, 0] != 0                                            # (cout, cin_g)
        fi = np.repeat(nz.sum(1, dtype=np.int64), length)              # output (co, l) -> co * L + l
        fo_c = nz.reshape(groups, cout // groups, cin_g).sum(1, dtype=np.int64).reshape(-1)   # input channel ci
        return ProjectionCounts(fi, np.repeat(fo_c, length), int(nz.sum(dtype=np.int64)) * length, True)
    if isinstance(node, nir.Scale):
        s = np.broadcast_to(np.asarray(node.scale), out_shape).reshape(-1) != 0
        return ProjectionCounts(s.astype(np.int64), s.astype(np.int64), int(s.sum()), True)
    return None


def projection_counts(fg: Graph, p: Projection, *, expand: bool = False) -> ProjectionCounts:
    """Fan-in, fan-out and synapse counts of one projection.

    Structured connections (dense / token-batched Linear and Affine, Conv1d with kernel 1, Scale, identity
    edges) are counted from their weights' non-zero pattern; other ones, and chains of several connections,
    are expanded to a sparse neuron-to-neuron matrix. ``expand=True`` always expands (the reference the
    structural counts are tested against).

    Raises:
        QuantizationError: a node that cannot stand between two neuron populations (names it).
    """
    conns = [x for x in p.path if fg.nodes[x].role == "conn"]
    n_src = int(np.prod(shape_of(fg.nodes[p.src].nir, "output")))
    if not expand:
        if not conns:
            ones = np.ones(n_src, dtype=np.int64)
            return ProjectionCounts(ones, ones.copy(), n_src, True)
        if len(conns) == 1:
            node = fg.nodes[conns[0]].nir
            if type(node) not in SYNAPSE_MATRIX:
                raise QuantizationError(conns[0], type(node).__name__, "node type is not supported")
            c = _structural(fg, conns[0])
            if c is not None:
                return c
    return _expanded(fg, conns, n_src)


# ------------------------------------------------------------------------------------------ mapping


def _system(profile: Any) -> tuple[str, int]:
    sys_ = getattr(profile, "system", None)
    return (str(getattr(sys_, "name", None) or "one chip"), int(getattr(sys_, "chips", None) or 1))


def map_graph(graph: nir.NIRGraph | Graph, profile: Any, *,
              delays: dict[tuple[str, str], int] | None = None) -> MappingResult:
    """Maps a (float or integer) NIR graph onto ``profile``'s system (chips, cores, limits).

    Args:
        graph: the NIR graph, or its :func:`~neuroposter.ir.graph.flatten`.
        profile: a :class:`~neuroposter.profiling.profiles.HardwareProfile` (or any object with
            ``name``, ``limits`` and optionally ``nir_nodes`` and ``system``).
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
    sys_name, sys_chips = _system(profile)
    npc, spc = _lim(profile, "neurons_per_core"), _lim(profile, "synapses_per_core")
    cpc = _lim(profile, "cores_per_chip")
    sharing = bool(_lim(profile, "supports_weight_sharing"))
    host = host_paths(fg)
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
        "synapses counted structurally for Linear/Affine (dense or token-batched), Conv1d k=1, Scale and identity "
        "edges, expanded to neuron-to-neuron connectivity otherwise; stored = as the chip keeps them",
        ("weight sharing: a convolution is stored once per core hosting its destination neurons"
         if sharing else "no weight sharing: every synapse is stored"),
        "placement: population slices (one neuron core each, with its synapse cores) placed greedily in graph "
        "order (next-fit) onto the system's chips",
    ]
    if host:
        notes.append(f"{len(host)} host-placed nodes are sources on the host CPU, not chip populations")
    # node types
    nir_nodes = {str(x) for x in (getattr(profile, "nir_nodes", None) or ())}
    models = _lim(profile, "neuron_models")
    expandable = {"Conv1d", "Conv2d", "Scale"} if nir_nodes & {"Affine", "Linear"} else set()
    for n, nd in fg.nodes.items():
        t = nd.type.name
        if n in host or (t in expandable and t not in nir_nodes):
            continue   # on the host, or realised as an expanded (block-diagonal) Linear on a chip without this type
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
    pops = [n for n, nd in fg.nodes.items() if nd.role == "neuron" and n not in host]
    usage: dict[str, LayerUsage] = {}
    for n in pops:
        usage[n] = LayerUsage(n, fg.nodes[n].type.name, int(np.prod(shape_of(fg.nodes[n].nir, "output"))))
    fan_out: dict[str, np.ndarray] = {n: np.zeros(usage[n].neurons, dtype=np.int64) for n in pops}
    fo_unit = _lim(profile, "fan_out_unit") or "neuron"
    per_core = fo_unit == "core"
    if per_core and not npc:
        notes.append("fan_out_unit is core but neurons_per_core is unknown: fan-out counted in neurons")
    destinations: dict[str, set[str]] = {n: set() for n in pops}   # chip populations each population feeds
    fan_in_vec: dict[str, np.ndarray] = {n: np.zeros(usage[n].neurons, dtype=np.int64) for n in pops}
    out_fan_in = 0
    sources: dict[str, int] = {}       # chip input channels: sources (Input / host neurons) feeding chip nodes
    counted = {"structural": 0, "expanded": 0}
    for p in projs:
        if p.dst in host or (p.dst not in usage and p.src not in usage):
            continue                   # a projection on the host (or host -> output): nothing on the chip
        c = projection_counts(fg, p)
        counted["structural" if c.structural else "expanded"] += 1
        if p.src in fan_out:
            if per_core and npc:   # destination cores: the targets packed into the fewest cores (a lower bound)
                fan_out[p.src] += -(-np.asarray(c.fan_out, dtype=np.int64) // int(npc))
            else:
                fan_out[p.src] += c.fan_out
            if p.dst in usage:
                destinations[p.src].add(p.dst)
        elif p.dst in usage:
            sources[p.src] = int(np.prod(shape_of(fg.nodes[p.src].nir, "output")))
        if p.dst in usage:
            u = usage[p.dst]
            fan_in_vec[p.dst] += c.fan_in
            u.synapses += c.synapses
            u.inputs.append(p.conn or f"{p.src} (direct)")
            node = fg.nodes[p.conn].nir if p.conn else None
            if sharing and isinstance(node, (nir.Conv1d, nir.Conv2d)):
                per_core = int(np.count_nonzero(np.asarray(node.weight)))
                cores = max(1, math.ceil(u.neurons / npc)) if npc else 1
                u.stored += per_core * cores
            else:
                u.stored += c.synapses
        else:
            out_fan_in = max(out_fan_in, int(c.fan_in.max(initial=0)))
    notes.append(f"projections counted structurally: {counted['structural']}, by expansion: {counted['expanded']}")

    wbits = _lim(profile, "weight_bits")
    mem_core_kb, mem_chip_mb = _lim(profile, "memory_per_core_kb"), _lim(profile, "memory_per_chip_mb")
    core_mem = (not mem_chip_mb) and bool(mem_core_kb) and bool(wbits)
    if wbits and (mem_chip_mb or mem_core_kb):
        notes.append(f"synapse memory: lower bound of {wbits} bits (weight_bits) per stored synapse, in "
                     + (f"the chip-wide {mem_chip_mb} MB store" if mem_chip_mb else f"{mem_core_kb} KB per core"))

    # fan-in / fan-out: exact splits where the profile allows them, violations otherwise
    fi, fo = _lim(profile, "fan_in"), _lim(profile, "fan_out")
    fi_split, fo_split = _lim(profile, "fan_in_split"), _lim(profile, "fan_out_split")
    per_population = fo_unit == "population"
    if per_population and fo is not None:
        notes.append(f"fan_out counts destination populations (cores) per population (limits.fan_out_unit), "
                     f"at most {fo}")
    if per_core and npc and fo is not None:
        notes.append(f"fan_out counts destination cores per neuron (limits.fan_out_unit): each projection's targets "
                     f"packed into ceil(targets / {npc}) cores (a lower bound where a sparse projection's targets "
                     "spread over more cores)")
    for n, u in usage.items():
        u.fan_in = int(fan_in_vec[n].max(initial=0))
        u.fan_out = len(destinations[n]) if per_population else int(fan_out[n].max(initial=0))
        if fi is not None and u.fan_in > fi:
            if fi_split == "exact":
                u.fan_in_parts = math.ceil(u.fan_in / fi)
            else:
                why = (f"; a split into partial sums is not exact on {name}" if fi_split == "none"
                       else f"; no exact partial-sum split is known for {name} (limits.fan_in_split unknown)")
                note = _lim_note(profile, "fan_in_split")
                flag("fan_in", u.fan_in, fi, u.node,
                     f"fan-in {u.fan_in} of node {u.node!r} ({u.node_type}) exceeds the fan_in limit {fi}{why}"
                     + (f" ({note})" if note and fi_split == "none" else ""))
        if fo is not None and u.fan_out > fo:
            if fo_split == "exact":
                u.copies = math.ceil(u.fan_out / fo)
            else:
                what = {"population": "destination populations", "core": "destination cores"}.get(fo_unit, "fan-out")
                flag("fan_out", u.fan_out, fo, u.node,
                     f"{what} {u.fan_out} of node {u.node!r} ({u.node_type}) exceeds the fan_out limit {fo}")

    # cores per population (copies hold neurons and their own copy of the input synapses)
    groups = []
    for n, u in usage.items():
        neurons = u.neurons * u.copies
        u.stored *= u.copies
        c_n = math.ceil(neurons / npc) if npc else 1
        c_s = math.ceil(u.stored / spc) if spc else 1
        c_m = math.ceil(u.stored * wbits / 8 / (mem_core_kb * 1024)) if core_mem else 1
        u.neuron_cores = max(1, c_n, c_s, c_m)
        u.synapse_cores = u.neuron_cores * (u.fan_in_parts if u.fan_in_parts > 1 else 0)
        u.cores = u.neuron_cores + u.synapse_cores
        nbytes = int(math.ceil(u.stored * wbits / 8)) if wbits else 0
        groups += slice_groups(n, neurons, u.stored, nbytes, u.neuron_cores,
                               u.fan_in_parts if u.fan_in_parts > 1 else 0)

    total_neurons = sum(u.neurons * u.copies for u in usage.values())
    total_syn = sum(u.synapses for u in usage.values())
    total_stored = sum(u.stored for u in usage.values())
    cores = sum(u.cores for u in usage.values())
    npch, spch = _lim(profile, "neurons_per_chip"), _lim(profile, "synapses_per_chip")
    syn_bytes = int(math.ceil(total_stored * wbits / 8)) if wbits else None
    chip_bytes = int(mem_chip_mb * 2 ** 20) if (wbits and mem_chip_mb) else None
    cap = ChipCapacity(cores=cpc, neurons=npch, stored=spch, nbytes=chip_bytes)
    placed = place(groups, cap)
    chips = placed.chips_used if usage else 0
    chips = max(chips, 1) if usage else 0

    if sys_chips == 1:
        # one chip: the totals against the chip's limits (the classic single-chip verdict)
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
        if syn_bytes is not None and mem_chip_mb and chip_bytes is not None and syn_bytes > chip_bytes:
            flag("memory_per_chip_mb", syn_bytes, chip_bytes, None,
                 f"needs at least {syn_bytes} bytes of synapse memory ({total_stored} stored synapses x {wbits}-bit "
                 f"weights) > memory_per_chip_mb {mem_chip_mb} ({chip_bytes} bytes)")
        elif syn_bytes is not None and core_mem and cpc:
            avail = int(mem_core_kb * 1024 * cpc)
            if syn_bytes > avail:
                flag("memory_per_core_kb", syn_bytes, avail, None,
                     f"needs at least {syn_bytes} bytes of synapse memory ({total_stored} stored synapses x "
                     f"{wbits}-bit weights) > memory_per_core_kb {mem_core_kb} x cores_per_chip {cpc} ({avail} bytes)")
    else:
        limit_of = {"cores": ("cores_per_chip", cpc), "neurons": ("neurons_per_chip", npch),
                    "stored": ("synapses_per_chip", spch), "nbytes": ("memory_per_chip_mb", chip_bytes)}
        for g, what in placed.too_big:
            for k in what:
                lim, avail = limit_of[k]
                need = {"cores": g.cores, "neurons": g.neurons, "stored": g.stored, "nbytes": g.nbytes}[k]
                flag(lim, need, avail, g.population,
                     f"one slice of node {g.population!r} needs {need} {k if k != 'nbytes' else 'bytes'} > "
                     f"{lim} {avail} (a slice and its synapse cores must sit on one chip)")
        if chips > sys_chips:
            flag("system_chips", chips, sys_chips, None,
                 f"needs {chips} chips > {sys_chips} chips of the {sys_name} ({cores} cores"
                 + (f", {cpc} per chip" if cpc else "") + "; greedy placement in graph order)")

    # inputs / outputs (sources on the host or the graph's Input nodes that feed chip nodes)
    inputs = list(sources.values()) if usage else [int(np.prod(shape_of(fg.nodes[i].nir, "output"))) for i in fg.inputs]
    outputs = [int(np.prod(shape_of(fg.nodes[o].nir, "input"))) for o in fg.outputs]
    ipc, opc = _lim(profile, "inputs_per_chip"), _lim(profile, "outputs_per_chip")
    if ipc and inputs and sum(inputs) > ipc:
        src = list(sources) or list(fg.inputs)
        what = f"input {src[0]!r} has" if len(src) == 1 else f"inputs {', '.join(repr(s) for s in src)} have"
        flag("inputs_per_chip", sum(inputs), ipc, src[0], f"{what} {sum(inputs)} channels > inputs_per_chip {ipc}")
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
        if n not in host and isinstance(node, (nir.Conv1d, nir.Conv2d)):
            k = max(np.asarray(node.weight).shape[2:])
            c = max(np.asarray(node.weight).shape[:2])
            if mk and k > mk:
                flag("max_kernel_size", k, mk, n, f"node {n!r} kernel {k} > max_kernel_size {mk}")
            if mc and c > mc:
                flag("max_channels", c, mc, n, f"node {n!r} has {c} channels > max_channels {mc}")

    # what was checked, what not
    limit_names = ("neurons_per_core", "synapses_per_core", "cores_per_chip", "neurons_per_chip",
                   "synapses_per_chip", "fan_in", "fan_out", "max_delay", "weight_bits")
    checked = ["node types", "neuron models"] + [k for k in limit_names if _lim(profile, k) is not None]
    checked += [k for k in ("inputs_per_chip", "outputs_per_chip", "max_layers", "max_kernel_size", "max_channels")
                if _lim(profile, k) is not None]
    unchecked = [k for k in limit_names if _lim(profile, k) is None]
    if wbits and (mem_chip_mb or mem_core_kb):
        checked.append("synapse memory per " + ("chip" if mem_chip_mb else "core"))
    else:
        unchecked.append("synapse memory (needs weight_bits and memory_per_chip_mb or memory_per_core_kb)")
    checked.append(f"chips ({sys_chips} in the {sys_name})" if sys_chips > 1 else "one chip")
    if md is not None and not delays:
        unchecked.append("max_delay (no re-timing delays given)")
    unchecked += list(NEVER_CHECKED)

    fan_in_splits = {u.node: u.fan_in_parts for u in usage.values() if u.fan_in_parts > 1}
    fan_out_copies = {u.node: u.copies for u in usage.values() if u.copies > 1}
    if fan_in_splits:
        notes.append(f"fan-in split (limits.fan_in_split = exact): {len(fan_in_splits)} populations, "
                     f"{sum(u.synapse_cores for u in usage.values())} synapse cores; each adds a partial sum of a "
                     f"disjoint set of presynaptic neurons, handed to its neuron core in the same step (extra delay: "
                     f"0 steps)" + (f" [{_lim_note(profile, 'fan_in_split')}]" if _lim_note(profile, "fan_in_split")
                                     else ""))
    if fan_out_copies:
        notes.append(f"fan-out duplication (limits.fan_out_split = exact): {len(fan_out_copies)} populations, "
                     f"{sum(u.neurons * (u.copies - 1) for u in usage.values())} copy neurons")
    placement = {"system": sys_name, "system_chips": sys_chips,
                 "policy": "greedy next-fit of population slices in graph order; a slice's synapse cores stay on "
                           "its chip; inter-chip edges and spike traffic are not modelled (unchecked)",
                 **placed.to_dict(), "fan_in_splits": fan_in_splits, "fan_out_copies": fan_out_copies,
                 "extra_delay_steps": 0}
    big_in = max(usage.values(), key=lambda u: u.fan_in) if usage else None
    big_out = max(usage.values(), key=lambda u: u.fan_out) if usage else None
    totals = {"neurons": total_neurons, "synapses": total_syn, "stored_synapses": total_stored, "cores": cores,
              "chips": chips, "system_chips": sys_chips, "populations": len(usage),
              "neuron_cores": sum(u.neuron_cores for u in usage.values()),
              "synapse_cores": sum(u.synapse_cores for u in usage.values()),
              "copy_neurons": sum(u.neurons * (u.copies - 1) for u in usage.values()),
              "max_fan_in": {"value": big_in.fan_in, "node": big_in.node} if big_in else None,
              "max_fan_out": {"value": big_out.fan_out, "node": big_out.node} if big_out else None,
              "readout_fan_in": out_fan_in, "inputs": inputs, "outputs": outputs,
              "synapse_bytes_min": syn_bytes}
    return MappingResult(name, list(usage.values()), totals, not violations, violations, unchecked, notes, violated,
                         checked, placement, sorted(host))
