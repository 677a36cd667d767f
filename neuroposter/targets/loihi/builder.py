"""Integer NIR graph -> Lava process network (Loihi 2 CPU simulation), and its bit-exact emulator.

The builder works in two stages:

1. :func:`plan_network` turns an integer graph (from :func:`neuroposter.ir.quantize.quantize_loihi`)
   into a Lava-independent :class:`NetworkPlan`: one :class:`PopulationSpec` per neuron node, one
   :class:`SynapseSpec` (sparse integer matrix + exponent + delay) per unit-to-unit projection, and
   the re-timing. Node types are converted through type-keyed tables (:data:`SYNAPSE_MATRIX`,
   :data:`NEURON_TYPES`); anything else raises :class:`UnsupportedNodeError` naming the node.
2. :func:`build_lava` instantiates stock Lava processes from the plan (``LIFReset`` per population,
   ``Sparse``/``Dense`` per synapse, ``DelaySparse`` for re-timed paths, ``RingBuffer`` sources and
   sinks) and :func:`run_lava` runs them on many samples in **one** Lava run.

Timing (verified in Lava 0.10: every synapse process adds one step, neurons, sources and sinks add
none). Every unit gets a depth ``d`` (Input 0; a unit is one hop deeper than its deepest source).
A projection from depth ``d_s`` into depth ``d`` gets ``delay = d - d_s - 1`` extra steps:
``DelaySparse(delays=delay)`` for neuron sources, a time-shifted copy of the input ``RingBuffer`` for
Input sources (the input is known in advance; this avoids delaying the 4 M-synapse embedding).
A neuron at depth ``d`` therefore sees step ``t`` of a sample at global step ``t + d``, and the output
(latency ``L`` = depth of the Output node) equals the same-step NIR result shifted by ``L``.

Batching: samples run **back to back** in one Lava run, ``P = T`` steps apart. Every population is a
``LIFReset`` with ``reset_interval = P`` and ``reset_offset = d + 1``, so its state is zeroed exactly
when the first step of the next sample reaches its depth; in-flight spikes of the previous sample
are all consumed by then. ``B`` samples cost ``B * T + L`` steps instead of ``B * (T + L)`` runs.

The same plan drives :func:`emulate`, a numpy model of exactly these equations (used to cross-check
Lava and as the fast path of the benchmark).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import nir
import numpy as np
import scipy.sparse as sp

from neuroposter.ir.quantize import (
    FlatGraph,
    Projection,
    QuantizationError,
    flatten_graph,
    loihi_params,
    neuron_step_int,
    projections,
    shift,
)
from neuroposter.targets.base import UnsupportedNodeError

__all__ = [
    "PopulationSpec",
    "SynapseSpec",
    "NetworkPlan",
    "SYNAPSE_MATRIX",
    "NEURON_TYPES",
    "plan_network",
    "emulate",
    "EmulationResult",
    "build_lava",
    "LavaNetwork",
    "run_lava",
    "LavaResult",
]

log = logging.getLogger(__name__)
TARGET = "loihi"


# ---------------------------------------------------------------------------------------------
# plan
# ---------------------------------------------------------------------------------------------


@dataclass
class PopulationSpec:
    """One Lava LIF population (a NIR neuron node).

    Attributes:
        name: node path.
        node_type: NIR type name.
        shape: NIR output shape (flattened row-major in Lava).
        du, dv, vth: fixed-point parameters.
        bias: ``bias_mant << bias_exp`` per neuron (int64, flat) -- the fixed-point bias.
        bias_mant, bias_exp: the Lava parameters.
        scale: integer units per float unit (``s``).
        depth: hop depth (re-timing).
    """

    name: str
    node_type: str
    shape: tuple[int, ...]
    du: int
    dv: int
    vth: int
    bias_mant: np.ndarray
    bias_exp: int
    scale: float
    depth: int = 0

    @property
    def size(self) -> int:
        """Number of neurons."""
        return int(np.prod(self.shape))

    @property
    def bias(self) -> np.ndarray:
        """Fixed-point bias ``bias_mant << bias_exp`` (flat int64)."""
        return np.left_shift(self.bias_mant.reshape(-1).astype(np.int64), self.bias_exp)


@dataclass
class SynapseSpec:
    """One Lava synapse process (a projection).

    Attributes:
        name: Lava process name (connection node path, ``->dst`` appended when shared).
        src, dst: unit names (``Input``/neuron -> neuron/``Output``).
        weight: integer CSR matrix ``(dst size, src size)`` of Lava weight values.
        weight_exp: Lava exponent.
        scale: integer units per float unit of the destination (``gain * s``).
        delay: extra steps (re-timing).
        kind: ``"connection"`` (a NIR connection node) or ``"direct"`` (an identity edge).
        node: the NIR connection node path (None for direct edges).
        node_type: NIR type name of the connection (``"Identity"`` for direct edges).
        shared: logical weights of a weight-shared connection (``Cout*Cin*K`` for a Conv1d), None if not shared.
    """

    name: str
    src: str
    dst: str
    weight: sp.csr_matrix
    weight_exp: int
    scale: float
    delay: int = 0
    kind: str = "connection"
    node: str | None = None
    node_type: str = "Identity"
    shared: int | None = None


@dataclass
class NetworkPlan:
    """A Lava-independent description of the network.

    Attributes:
        populations: neuron populations by name, in topological order.
        synapses: synapse processes.
        inputs: Input name -> shape.
        outputs: Output name -> (shape, scale, bias int64 flat, depth).
        latency: steps from an input step to its output (depth of the first Output).
        groups: sub-graph metadata (e.g. SDSA tags), keyed by path.
    """

    populations: dict[str, PopulationSpec]
    synapses: list[SynapseSpec]
    inputs: dict[str, tuple[int, ...]]
    outputs: dict[str, dict[str, Any]]
    latency: int
    groups: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Counts for reports."""
        return {
            "populations": len(self.populations),
            "neurons": int(sum(p.size for p in self.populations.values())),
            "synapse_processes": len(self.synapses),
            "delayed_synapses": sum(1 for s in self.synapses if s.delay > 0),
            "synapses_stored": int(sum(s.weight.nnz for s in self.synapses)),
            "latency": self.latency,
        }


def _shape_of(node: nir.NIRNode, key: str) -> tuple[int, ...]:
    types = node.output_type if key == "output" else node.input_type
    arr = types.get(key, next(iter(types.values())))
    return tuple(int(x) for x in np.asarray(arr).reshape(-1))


def _conv1d_matrix(node: nir.Conv1d, in_shape: tuple[int, ...], out_shape: tuple[int, ...],
                   w: np.ndarray) -> sp.csr_matrix:
    cout, cin_g, k = w.shape
    cin, length = in_shape
    _, lout = out_shape
    stride = int(np.asarray(node.stride).reshape(-1)[0])
    dil = int(np.asarray(node.dilation).reshape(-1)[0])
    groups = int(node.groups)
    pad = node.padding
    if isinstance(pad, str):
        pad = 0 if pad == "valid" else (dil * (k - 1)) // 2
    pad = int(np.asarray(pad).reshape(-1)[0])
    co, cl, kk, lo = np.meshgrid(np.arange(cout), np.arange(cin_g), np.arange(k), np.arange(lout), indexing="ij")
    ci = (co // (cout // groups)) * cin_g + cl
    li = lo * stride - pad + kk * dil
    ok = (li >= 0) & (li < length) & (w[co, cl, kk] != 0)
    rows = (co * lout + lo)[ok]
    cols = (ci * length + li)[ok]
    vals = w[co, cl, kk][ok]
    return sp.csr_matrix((vals, (rows, cols)), shape=(cout * lout, cin * length))


def _conv2d_matrix(node: nir.Conv2d, in_shape: tuple[int, ...], out_shape: tuple[int, ...],
                   w: np.ndarray) -> sp.csr_matrix:
    cout, cin_g, kh, kw = w.shape
    cin, h, wd = in_shape
    _, ho, wo = out_shape
    st = np.broadcast_to(np.asarray(node.stride).reshape(-1), (2,))
    dl = np.broadcast_to(np.asarray(node.dilation).reshape(-1), (2,))
    pad = node.padding
    if isinstance(pad, str):
        pad = (0, 0) if pad == "valid" else (int(dl[0]) * (kh - 1) // 2, int(dl[1]) * (kw - 1) // 2)
    pd = np.broadcast_to(np.asarray(pad).reshape(-1), (2,))
    groups = int(node.groups)
    co, cl, ky, kx, oy, ox = np.meshgrid(np.arange(cout), np.arange(cin_g), np.arange(kh), np.arange(kw),
                                         np.arange(ho), np.arange(wo), indexing="ij")
    ci = (co // (cout // groups)) * cin_g + cl
    iy = oy * int(st[0]) - int(pd[0]) + ky * int(dl[0])
    ix = ox * int(st[1]) - int(pd[1]) + kx * int(dl[1])
    ok = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < wd) & (w[co, cl, ky, kx] != 0)
    rows = ((co * ho + oy) * wo + ox)[ok]
    cols = ((ci * h + iy) * wd + ix)[ok]
    return sp.csr_matrix((w[co, cl, ky, kx][ok], (rows, cols)), shape=(cout * ho * wo, cin * h * wd))


def _dense_matrix(node: nir.NIRNode, in_shape: tuple[int, ...], out_shape: tuple[int, ...],
                  w: np.ndarray) -> sp.csr_matrix:
    """Affine/Linear: ``W (out, in)`` on the flattened input, or a channel-batched ``W (C..., out, in)``
    acting on the last axis of an input ``(C..., in)`` (block-diagonal over the leading axes)."""
    if w.ndim <= 2:
        w2 = w.reshape(w.shape[0], -1) if w.ndim == 2 else w.reshape(1, -1)
        if w2.shape[1] != int(np.prod(in_shape)):
            raise UnsupportedNodeError("?", type(node).__name__, TARGET,
                                       f"weight {w.shape} does not match input shape {in_shape}")
        return sp.csr_matrix(w2)
    lead = w.shape[:-2]
    n_out, n_in = w.shape[-2:]
    if tuple(in_shape[:-1]) != tuple(lead) or in_shape[-1] != n_in:
        raise UnsupportedNodeError("?", type(node).__name__, TARGET,
                                   f"batched weight {w.shape} does not match input shape {in_shape}")
    nb = int(np.prod(lead))
    wb = w.reshape(nb, n_out, n_in)
    b, o, i = np.nonzero(wb)
    return sp.csr_matrix((wb[b, o, i], (b * n_out + o, b * n_in + i)), shape=(nb * n_out, nb * n_in))


def _scale_matrix(node: nir.Scale, in_shape: tuple[int, ...], out_shape: tuple[int, ...],
                  w: np.ndarray) -> sp.csr_matrix:
    return sp.diags(np.broadcast_to(np.asarray(node.scale), out_shape).reshape(-1).astype(w.dtype)).tocsr()


#: NIR connection type -> function building the (dst, src) integer matrix over flattened shapes.
SYNAPSE_MATRIX: dict[type[nir.NIRNode], Callable[..., sp.csr_matrix]] = {
    nir.Affine: _dense_matrix,
    nir.Linear: _dense_matrix,
    nir.Conv1d: _conv1d_matrix,
    nir.Conv2d: _conv2d_matrix,
    nir.Scale: _scale_matrix,
}

#: NIR neuron types hosted as a Lava LIF population (the fixed-point mapping is in quantize.py).
NEURON_TYPES: dict[type[nir.NIRNode], str] = {nir.LIF: "LIF", nir.IF: "IF", nir.Threshold: "Threshold",
                                               nir.CubaLIF: "CubaLIF"}


def _shared_weights(node: nir.NIRNode) -> int | None:
    if isinstance(node, (nir.Conv1d, nir.Conv2d)):
        return int(np.count_nonzero(np.asarray(node.weight)))
    return None


def _check_types(fg: FlatGraph) -> None:
    allowed = tuple(SYNAPSE_MATRIX) + tuple(NEURON_TYPES) + (nir.Input, nir.Output, nir.Flatten)
    for name, node in fg.nodes.items():
        if not isinstance(node, allowed):
            raise UnsupportedNodeError(name, type(node).__name__, TARGET,
                                       "no Lava realisation for this node type (supported: "
                                       + ", ".join(sorted(t.__name__ for t in allowed)) + ")")
        if isinstance(node, tuple(NEURON_TYPES)) and "loihi" not in (node.metadata or {}):
            raise UnsupportedNodeError(name, type(node).__name__, TARGET,
                                       "neuron has no fixed-point parameters; quantise the graph first "
                                       "(neuroposter.ir.quantize.quantize_loihi)")


def plan_network(graph_int: nir.NIRGraph, *, max_delay: int = 62) -> NetworkPlan:
    """The :class:`NetworkPlan` of an integer graph, with re-timing.

    Args:
        graph_int: output of :func:`~neuroposter.ir.quantize.quantize_loihi` (or read from
            ``graph_int.nir``).
        max_delay: the largest synaptic delay the chip offers (Loihi 2: 62 in netx).

    Raises:
        UnsupportedNodeError: a node with no Lava realisation, or a delay beyond ``max_delay``.
    """
    fg = flatten_graph(graph_int)
    _check_types(fg)
    try:
        projs = projections(fg)
    except QuantizationError as exc:
        raise UnsupportedNodeError(exc.node, exc.node_type, TARGET, exc.reason) from None
    units = [n for n in fg.topo_order() if isinstance(fg.nodes[n], tuple(NEURON_TYPES) + (nir.Input, nir.Output))]
    depth: dict[str, int] = {}
    into: dict[str, list[Projection]] = {}
    for p in projs:
        into.setdefault(p.dst, []).append(p)
    for u in units:
        if isinstance(fg.nodes[u], nir.Input):
            depth[u] = 0
        else:
            srcs = into.get(u, [])
            if not srcs:
                raise UnsupportedNodeError(u, type(fg.nodes[u]).__name__, TARGET, "has no input")
            depth[u] = max(depth[p.src] + 1 for p in srcs)

    pops: dict[str, PopulationSpec] = {}
    for u in units:
        node = fg.nodes[u]
        if isinstance(node, tuple(NEURON_TYPES)):
            lp = loihi_params(node)
            shape = _shape_of(node, "output")
            pops[u] = PopulationSpec(u, type(node).__name__, shape, int(lp["du"]), int(lp["dv"]), int(lp["vth"]),
                                     np.asarray(lp["bias_mant"], dtype=np.int64).reshape(-1)
                                     * np.ones(int(np.prod(shape)), dtype=np.int64),
                                     int(np.asarray(lp["bias_exp"]).reshape(-1)[0]), float(lp["scale"]), depth[u])

    def size_of(u: str) -> int:
        n = fg.nodes[u]
        return int(np.prod(_shape_of(n, "input" if isinstance(n, nir.Output) else "output")))

    syns: list[SynapseSpec] = []
    per_conn = {}
    for p in projs:
        per_conn.setdefault(p.conn, []).append(p)
    for p in projs:
        delay = depth[p.dst] - depth[p.src] - 1
        if delay > max_delay and not isinstance(fg.nodes[p.src], nir.Input):
            raise UnsupportedNodeError(p.conn or p.dst, type(fg.nodes[p.conn or p.dst]).__name__, TARGET,
                                       f"re-timing needs a synaptic delay of {delay} > {max_delay} steps")
        if p.conn is None:
            lp = loihi_params(fg.nodes[p.dst])
            if "direct_weight" not in lp:
                raise UnsupportedNodeError(p.dst, type(fg.nodes[p.dst]).__name__, TARGET,
                                           "direct edge but no direct_weight in its fixed-point parameters")
            n = size_of(p.src)
            if n != size_of(p.dst):
                raise UnsupportedNodeError(p.dst, type(fg.nodes[p.dst]).__name__, TARGET,
                                           f"direct edge from {p.src} with a different size")
            w = sp.identity(n, dtype=np.int64, format="csr") * int(lp["direct_weight"])
            syns.append(SynapseSpec(f"{p.src}->{p.dst}", p.src, p.dst, w.tocsr(), int(lp["direct_weight_exp"]),
                                    float(pops[p.dst].scale if p.dst in pops else 1.0), delay, "direct", None,
                                    "Identity", None))
            continue
        node = fg.nodes[p.conn]
        builder = SYNAPSE_MATRIX.get(type(node))
        if builder is None:
            raise UnsupportedNodeError(p.conn, type(node).__name__, TARGET, "no Lava synapse for this type")
        lp = loihi_params(node)
        if "weight_exp" not in lp:
            raise UnsupportedNodeError(p.conn, type(node).__name__, TARGET,
                                       "connection has no fixed-point parameters; quantise the graph first")
        w_int = np.asarray(node.scale if isinstance(node, nir.Scale) else node.weight)
        if not np.all(np.equal(np.mod(w_int, 1), 0)):
            raise UnsupportedNodeError(p.conn, type(node).__name__, TARGET, "weights are not integers")
        in_shape, out_shape = _shape_of(node, "input"), _shape_of(node, "output")
        m = builder(node, in_shape, out_shape, w_int.astype(np.int64))
        if m.shape[1] != size_of(p.src):
            raise UnsupportedNodeError(p.conn, type(node).__name__, TARGET,
                                       f"input size {m.shape[1]} != source {p.src} size {size_of(p.src)}")
        name = p.conn if len(per_conn[p.conn]) == 1 else f"{p.conn}->{p.dst}"
        if len(per_conn[p.conn]) > 1 and len({q.dst for q in per_conn[p.conn]}) < len(per_conn[p.conn]):
            name = f"{p.src}->{p.conn}->{p.dst}"
        syns.append(SynapseSpec(name, p.src, p.dst, m.tocsr(), int(lp["weight_exp"]), float(lp["scale"]), delay,
                                "connection", p.conn, type(node).__name__, _shared_weights(node)))

    inputs = {u: _shape_of(fg.nodes[u], "output") for u in units if isinstance(fg.nodes[u], nir.Input)}
    outputs: dict[str, dict[str, Any]] = {}
    for u in units:
        node = fg.nodes[u]
        if isinstance(node, nir.Output):
            lp = loihi_params(node)
            shape = _shape_of(node, "input")
            outputs[u] = {"shape": shape, "scale": float(lp.get("scale", 1.0)),
                          "bias": np.asarray(lp.get("bias", 0), dtype=np.int64).reshape(-1)
                          * np.ones(int(np.prod(shape)), dtype=np.int64), "depth": depth[u]}
    if not outputs:
        raise UnsupportedNodeError("<graph>", "NIRGraph", TARGET, "graph has no Output node")
    latency = max(o["depth"] for o in outputs.values())
    groups = dict(fg.metadata.get("loihi_groups", {}) or {})
    return NetworkPlan(pops, syns, inputs, outputs, latency, groups)


# ---------------------------------------------------------------------------------------------
# emulator (numpy, same integer equations)
# ---------------------------------------------------------------------------------------------


@dataclass
class EmulationResult:
    """Output of :func:`emulate` / :func:`run_lava`.

    Attributes:
        output: integer read-out currents per Output, ``[T, B, *shape]`` aligned (latency removed),
            host bias added.
        logits: float read-out (``output / scale``), same shape.
        spikes: per population ``[T, B, *shape]`` uint8, aligned to the population's depth.
        latency: steps of latency.
        steps: simulated steps.
    """

    output: dict[str, np.ndarray]
    logits: dict[str, np.ndarray]
    spikes: dict[str, np.ndarray]
    latency: int
    steps: int


def emulate(plan: NetworkPlan, x: np.ndarray | Mapping[str, np.ndarray], *, record: bool = True) -> EmulationResult:
    """Runs the plan in numpy with Lava's integer equations (per sample, vectorised over the batch).

    Args:
        plan: the network plan.
        x: ``[T, B, *input_shape]`` 0/1 spikes (or a dict per Input).
        record: keep per-population spikes.

    Returns:
        An :class:`EmulationResult` aligned like the same-step result.
    """
    xs = _as_input_dict(plan, x)
    t_in, batch = next(iter(xs.values())).shape[:2]
    L = plan.latency
    steps = t_in + L
    z: dict[str, np.ndarray] = {}   # unit -> [steps, n, B] spikes
    for name, arr in xs.items():
        buf = np.zeros((steps, int(np.prod(plan.inputs[name])), batch), dtype=np.int64)
        buf[:t_in] = arr.reshape(t_in, batch, -1).transpose(0, 2, 1)
        z[name] = buf
    into: dict[str, list[SynapseSpec]] = {}
    for s in plan.synapses:
        into.setdefault(s.dst, []).append(s)
    outs: dict[str, np.ndarray] = {}
    order = list(plan.populations) + list(plan.outputs)
    for u in order:
        n = plan.populations[u].size if u in plan.populations else int(np.prod(plan.outputs[u]["shape"]))
        a = np.zeros((steps, n, batch), dtype=np.int64)
        for s in into.get(u, []):
            src = z[s.src]
            lag = 1 + s.delay
            if lag < steps:
                flat = src[: steps - lag].transpose(1, 0, 2).reshape(src.shape[1], -1)
                cur = shift(np.asarray(s.weight @ flat, dtype=np.int64), s.weight_exp)
                a[lag:] += cur.reshape(n, steps - lag, batch).transpose(1, 0, 2)
        if u in plan.populations:
            p = plan.populations[u]
            uu = np.zeros((n, batch), dtype=np.int64)
            vv = np.zeros((n, batch), dtype=np.int64)
            bias = p.bias[:, None]
            zz = np.zeros((steps, n, batch), dtype=np.int64)
            # a population starts a sample (zero state) when the sample's first step reaches its depth
            for t in range(p.depth, min(steps, p.depth + t_in)):
                uu, vv, spk = neuron_step_int(uu, vv, a[t], du=p.du, dv=p.dv, vth=p.vth, bias=bias)
                zz[t] = spk
            z[u] = zz
        else:
            outs[u] = a
    return _assemble(plan, z, outs, t_in, batch, steps, record)


def _as_input_dict(plan: NetworkPlan, x: np.ndarray | Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    if isinstance(x, Mapping):
        return {k: np.asarray(v) for k, v in x.items()}
    if len(plan.inputs) != 1:
        raise ValueError(f"graph has {len(plan.inputs)} inputs; pass a dict")
    return {next(iter(plan.inputs)): np.asarray(x)}


def _assemble(plan: NetworkPlan, z: Mapping[str, np.ndarray], outs: Mapping[str, np.ndarray], t_in: int,
              batch: int, steps: int, record: bool) -> EmulationResult:
    output, logits, spikes = {}, {}, {}
    for u, a in outs.items():
        o = plan.outputs[u]
        d = o["depth"]
        cur = a[d:d + t_in].transpose(0, 2, 1) + o["bias"][None, None, :]
        output[u] = cur.reshape((t_in, batch) + tuple(o["shape"]))
        logits[u] = output[u].astype(np.float64) / o["scale"]
    if record:
        for u, p in plan.populations.items():
            spikes[u] = z[u][p.depth:p.depth + t_in].transpose(0, 2, 1).reshape((t_in, batch) + p.shape).astype(np.uint8)
    return EmulationResult(output, logits, spikes, plan.latency, steps)


# ---------------------------------------------------------------------------------------------
# Lava
# ---------------------------------------------------------------------------------------------


@dataclass
class LavaNetwork:
    """The Lava processes of a plan (built by :func:`build_lava`).

    Attributes:
        processes: every process by name.
        sinks: Output name -> sink process (currents).
        spike_sinks: population name -> sink process (spikes), when recorded.
        steps: steps the run needs.
        period: steps per sample.
        batch: samples in the run.
        t_in: steps per sample of input.
        select_tag: ``"fixed_pt"`` or ``"floating_pt"``.
        record_dir: temporary folder of the spike recordings (removed after reading).
    """

    processes: dict[str, Any]
    sinks: dict[str, Any]
    spike_sinks: dict[str, Any]
    steps: int
    period: int
    batch: int
    t_in: int
    select_tag: str
    record_dir: str | None = None


def _float_params(plan: NetworkPlan, pop: PopulationSpec) -> dict[str, Any]:
    """Floating-point LIF parameters equivalent to the fixed-point ones (v in threshold units)."""
    return {"du": (pop.du + 1) / 4096.0, "dv": pop.dv / 4096.0, "vth": pop.vth / pop.scale,
            "bias_mant": pop.bias.astype(np.float64) / (64.0 * pop.scale), "bias_exp": 0}


def build_lava(plan: NetworkPlan, x: np.ndarray | Mapping[str, np.ndarray], *, select_tag: str = "fixed_pt",
               record: bool = True, gap: int = 0) -> LavaNetwork:
    """Instantiates the Lava processes for running ``x`` (all samples back to back).

    Args:
        plan: the network plan.
        x: ``[T, B, *input_shape]`` 0/1 spikes (or a dict per Input).
        select_tag: ``"fixed_pt"`` (bit-accurate) or ``"floating_pt"`` (debugging).
        record: add a spike sink per population (per-layer agreement).
        gap: extra silent steps between samples (0 is exact thanks to the state resets).

    Returns:
        The :class:`LavaNetwork` (not yet run).
    """
    from neuroposter.targets.loihi._mp import prepare_lava

    prepare_lava()
    from lava.proc.dense.process import Dense
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source
    from lava.proc.lif.process import LIFReset
    from lava.proc.sparse.process import DelaySparse, Sparse

    fixed = select_tag == "fixed_pt"
    xs = _as_input_dict(plan, x)
    t_in, batch = next(iter(xs.values())).shape[:2]
    period = t_in + gap
    L = plan.latency
    steps = batch * period + L
    procs: dict[str, Any] = {}
    dtype = np.int32 if fixed else np.float64

    # sources: one per (input, delay) pair
    sources: dict[tuple[str, int], Any] = {}
    base: dict[str, np.ndarray] = {}
    for name, arr in xs.items():
        n = int(np.prod(plan.inputs[name]))
        stream = np.zeros((n, steps), dtype=dtype)
        flat = arr.reshape(t_in, batch, n)
        for b in range(batch):
            stream[:, b * period:b * period + t_in] = flat[:, b, :].T
        base[name] = stream

    def source(name: str, delay: int) -> Any:
        key = (name, delay)
        if key not in sources:
            data = np.zeros_like(base[name])
            data[:, delay:] = base[name][:, :steps - delay] if delay else base[name]
            sources[key] = Source(data=data)
            procs[f"source:{name}@{delay}"] = sources[key]
        return sources[key]

    # populations
    for u, p in plan.populations.items():
        common = {"shape": (p.size,), "reset_interval": period if batch > 1 else steps + 1,
                  "reset_offset": (p.depth + 1) % (period if batch > 1 else steps + 1), "name": u}
        if fixed:
            procs[u] = LIFReset(du=p.du, dv=p.dv, vth=int(p.vth), bias_mant=p.bias_mant.astype(np.int32),
                                bias_exp=int(p.bias_exp), **common)
        else:
            procs[u] = LIFReset(**_float_params(plan, p), **common)

    # sinks
    sinks: dict[str, Any] = {}
    for u, o in plan.outputs.items():
        sinks[u] = Sink(shape=(int(np.prod(o["shape"])),), buffer=steps)
        procs[f"sink:{u}"] = sinks[u]
    spike_sinks: dict[str, Any] = {}
    record_dir = None
    if record:
        import tempfile

        from neuroposter.targets.loihi.processes import SpikeRecorder

        from neuroposter.artifact import check_free_space

        # one uint8 [size, steps] memmap per population (+ the .npy headers)
        needed = sum(int(p.size) * int(steps) + 4096 for p in plan.populations.values())
        check_free_space(tempfile.gettempdir(), needed, "Lava spike recordings (temporary)")
        record_dir = tempfile.mkdtemp(prefix="neuroposter-lava-")
        try:
            for i, (u, p) in enumerate(plan.populations.items()):
                path = f"{record_dir}/pop{i}.npy"
                np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(p.size, steps)).flush()
                spike_sinks[u] = SpikeRecorder(shape=(p.size,), path=path)
                procs[u].s_out.connect(spike_sinks[u].a_in)
                procs[f"spikes:{u}"] = spike_sinks[u]
        except BaseException:
            import shutil

            shutil.rmtree(record_dir, ignore_errors=True)
            raise

    # synapses
    for s in plan.synapses:
        if fixed:
            w = s.weight.astype(np.int32)
            kw: dict[str, Any] = {"weight_exp": int(s.weight_exp), "num_weight_bits": 8}
        else:
            dst_scale = plan.populations[s.dst].scale if s.dst in plan.populations else plan.outputs[s.dst]["scale"]
            w = s.weight.astype(np.float64) * (2.0 ** s.weight_exp) / dst_scale
            kw = {}
        from_input = s.src in plan.inputs
        delay = s.delay
        density = w.nnz / max(1, w.shape[0] * w.shape[1])
        if delay > 0 and not from_input:
            dm = w.copy()
            dm.data = np.full(dm.nnz, delay, dtype=int)
            dm = dm.astype(int)
            proc = DelaySparse(weights=w, delays=dm, max_delay=delay, name=s.name, **kw)
        elif density > 0.25 and w.shape[0] * w.shape[1] <= 1_000_000:
            proc = Dense(weights=w.toarray(), name=s.name, **kw)
        else:
            proc = Sparse(weights=w, name=s.name, **kw)
        procs[s.name] = proc
        if from_input:
            source(s.src, delay).s_out.connect(proc.s_in)
        else:
            procs[s.src].s_out.connect(proc.s_in)
        if s.dst in plan.populations:
            proc.a_out.connect(procs[s.dst].a_in)
        else:
            proc.a_out.connect(sinks[s.dst].a_in)
    return LavaNetwork(procs, sinks, spike_sinks, steps, period, batch, t_in, select_tag, record_dir)


@dataclass
class LavaResult(EmulationResult):
    """:class:`EmulationResult` of a Lava run plus timings.

    Attributes:
        build_s: seconds to build the processes.
        run_s: seconds of the Lava run (compile + execute).
        select_tag: the Lava model tag.
    """

    build_s: float = 0.0
    run_s: float = 0.0
    select_tag: str = "fixed_pt"


def run_lava(plan: NetworkPlan, x: np.ndarray | Mapping[str, np.ndarray], *, select_tag: str = "fixed_pt",
             record: bool = True, chunk: int | None = None, progress_desc: str | None = None) -> LavaResult:
    """Builds and runs the Lava network on every sample of ``x`` (back to back, one run per chunk).

    Args:
        plan: the network plan.
        x: ``[T, B, *input_shape]`` spikes.
        select_tag: ``"fixed_pt"`` or ``"floating_pt"``.
        record: record per-population spikes.
        chunk: samples per Lava run (None: all in one run).
        progress_desc: show a progress bar over the simulated steps with this label.

    Returns:
        A :class:`LavaResult` aligned like the same-step result (latency removed).
    """
    import time

    from neuroposter.targets.loihi._mp import prepare_lava

    prepare_lava()
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg

    from neuroposter.targets.loihi.processes import fast_models

    xs = _as_input_dict(plan, x)
    t_in, batch = next(iter(xs.values())).shape[:2]
    chunk = batch if not chunk else max(1, int(chunk))
    parts: list[EmulationResult] = []
    build_s = run_s = 0.0
    total_steps = sum(min(chunk, batch - i) * t_in + plan.latency for i in range(0, batch, chunk))
    bar = None
    if progress_desc:
        from neuroposter._progress import progress

        bar = progress(desc=progress_desc, total=total_steps, unit="step")
    try:
        for i in range(0, batch, chunk):
            sub = {k: v[:, i:i + chunk] for k, v in xs.items()}
            t0 = time.perf_counter()
            net = build_lava(plan, sub, select_tag=select_tag, record=record)
            build_s += time.perf_counter() - t0
            t0 = time.perf_counter()
            data_spk = {}
            try:
                first = next(iter(net.processes.values()))
                cfg = Loihi2SimCfg(select_tag=select_tag, exception_proc_model_map=fast_models(select_tag))
                import warnings

                warnings.filterwarnings("ignore", message="Cannot import module", category=UserWarning)
                try:
                    # run in a few slices so that the progress bar moves
                    slices = 1
                    done = 0
                    for k in range(slices):
                        n = (net.steps * (k + 1)) // slices - done
                        if n <= 0:
                            continue
                        first.run(condition=RunSteps(num_steps=n), run_cfg=cfg)
                        done += n
                        if bar is not None:
                            bar.update(n)
                    data_out = {u: s.data.get() for u, s in net.sinks.items()}
                finally:
                    first.stop()
                if net.record_dir:
                    for k, u in enumerate(net.spike_sinks):
                        data_spk[u] = np.array(np.load(f"{net.record_dir}/pop{k}.npy"))
            finally:
                if net.record_dir:   # the temporary recordings go, whatever happened
                    import shutil

                    shutil.rmtree(net.record_dir, ignore_errors=True)
            run_s += time.perf_counter() - t0
            parts.append(_from_streams(plan, net, data_out, data_spk, record))
    finally:
        if bar is not None:
            bar.close()
    res = _concat(parts)
    return LavaResult(res.output, res.logits, res.spikes, plan.latency, res.steps, build_s, run_s, select_tag)


def _from_streams(plan: NetworkPlan, net: LavaNetwork, data_out: Mapping[str, np.ndarray],
                  data_spk: Mapping[str, np.ndarray], record: bool) -> EmulationResult:
    """Cuts the back-to-back streams (``[n, steps]``) into ``[T, B, ...]`` per sample."""
    output, logits, spikes = {}, {}, {}
    t_in, batch, period = net.t_in, net.batch, net.period
    for u, stream in data_out.items():
        o = plan.outputs[u]
        d = o["depth"]
        arr = np.stack([stream[:, b * period + d:b * period + d + t_in] for b in range(batch)], axis=0)  # B,n,T
        arr = arr.transpose(2, 0, 1)
        if net.select_tag == "fixed_pt":
            cur = np.rint(arr).astype(np.int64) + o["bias"][None, None, :]
            output[u] = cur.reshape((t_in, batch) + tuple(o["shape"]))
            logits[u] = output[u].astype(np.float64) / o["scale"]
        else:
            # floating_pt currents are already in float units (weights / scale): add the float bias
            cur = arr + o["bias"][None, None, :] / o["scale"]
            logits[u] = cur.reshape((t_in, batch) + tuple(o["shape"]))
            output[u] = np.rint(logits[u] * o["scale"]).astype(np.int64)
    if record:
        for u, stream in data_spk.items():
            p = plan.populations[u]
            arr = np.stack([stream[:, b * period + p.depth:b * period + p.depth + t_in] for b in range(batch)], axis=0)
            spikes[u] = (arr.transpose(2, 0, 1) != 0).astype(np.uint8).reshape((t_in, batch) + p.shape)
    return EmulationResult(output, logits, spikes, plan.latency, net.steps)


def _concat(parts: list[EmulationResult]) -> EmulationResult:
    if len(parts) == 1:
        return parts[0]
    cat = lambda key: {k: np.concatenate([getattr(p, key)[k] for p in parts], axis=1)  # noqa: E731
                       for k in getattr(parts[0], key)}
    return EmulationResult(cat("output"), cat("logits"), cat("spikes"), parts[0].latency,
                           sum(p.steps for p in parts))
