"""Integer NIR graph -> Lava process network (Loihi 2 CPU simulation), and its bit-exact emulator.

The builder works in two stages:

1. :func:`plan_network` turns an integer graph (from :func:`neuroposter.targets.loihi.fixed_point.quantize_loihi`)
   into a Lava-independent :class:`NetworkPlan`: one :class:`PopulationSpec` per neuron node, one
   :class:`SynapseSpec` (sparse integer matrix + exponent + delay) per unit-to-unit projection, and
   the re-timing. Node types are converted through :data:`neuroposter.ir.connectivity.SYNAPSE_MATRIX` (connections) and
   :data:`~neuroposter.targets.loihi.fixed_point.LOIHI_NEURONS` (neurons); anything else raises
   :class:`UnsupportedNodeError` naming the node.
2. :func:`build_lava` instantiates stock Lava processes from the plan (``LIFReset`` per population,
   ``Sparse``/``Dense`` per synapse, ``DelaySparse`` for re-timed paths, ``RingBuffer`` sources and
   sinks) and :func:`run_lava` runs them on many samples in **one** Lava run (per worker process:
   with ``workers > 1`` the samples are split over forked processes, each with its own runtime).

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
Because every sample starts from reset states, splitting the samples into chunks or worker processes
changes nothing in the result.

The same plan drives ``neuroposter.testing.emulate``, a numpy model of exactly these equations (used to cross-check
Lava and as the fast path of the benchmark).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Mapping

import nir
import numpy as np
import scipy.sparse as sp

from neuroposter.ir.graph import Graph, GraphError, Projection, flatten
from neuroposter.ir.connectivity import SYNAPSE_MATRIX, shape_of, shared_weights
from neuroposter.ir.int_neuron import IntFormat
from neuroposter.targets.loihi.fixed_point import LOIHI_NEURONS, loihi_params
from neuroposter.targets.base import UnsupportedNodeError

__all__ = [
    "PopulationSpec",
    "SynapseSpec",
    "NetworkPlan",
    "plan_network",
    "EmulationResult",
    "build_lava",
    "LavaNetwork",
    "run_lava",
    "default_workers",
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
        message_bits: payload bits of the graded spikes it receives (an analog Input's ``message_bits``; Lava's
            ``num_message_bits``), 0 for binary spikes.
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
    message_bits: int = 0


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
    int_format: IntFormat | None = None

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


def _check_types(fg: Graph) -> None:
    allowed = tuple(SYNAPSE_MATRIX) + LOIHI_NEURONS + (nir.Input, nir.Output, nir.Flatten)
    for name, nd in fg.nodes.items():
        node = nd.nir
        if not isinstance(node, allowed):
            raise UnsupportedNodeError(name, type(node).__name__, TARGET,
                                       "no Lava realisation for this node type (supported: "
                                       + ", ".join(sorted(t.__name__ for t in allowed)) + ")")
        if isinstance(node, LOIHI_NEURONS) and "loihi" not in (node.metadata or {}):
            raise UnsupportedNodeError(name, type(node).__name__, TARGET,
                                       "neuron has no fixed-point parameters; quantise the graph first "
                                       "(neuroposter.targets.loihi.fixed_point.quantize_loihi)")


def plan_network(graph_int: nir.NIRGraph | Graph, *, max_delay: int) -> NetworkPlan:
    """The :class:`NetworkPlan` of an integer graph, with re-timing.

    Args:
        graph_int: output of :func:`~neuroposter.targets.loihi.fixed_point.quantize_loihi` (or read from
            ``graph_int.nir``), or its :func:`~neuroposter.ir.graph.flatten`.
        max_delay: the largest synaptic delay the chip offers (the profile's ``limits.max_delay``).

    Raises:
        UnsupportedNodeError: a node with no Lava realisation, a recurrent graph, or a delay beyond
            ``max_delay``.
    """
    try:
        fg = graph_int if isinstance(graph_int, Graph) else flatten(graph_int)
    except GraphError as exc:
        raise UnsupportedNodeError(exc.node or "<graph>", exc.node_type or "?", TARGET, exc.reason) from None
    _check_types(fg)
    try:
        projs = fg.projections()
    except GraphError as exc:
        raise UnsupportedNodeError(exc.node or "<graph>", exc.node_type or "?", TARGET, exc.reason) from None
    try:
        order = fg.topo_order()
    except GraphError as exc:
        raise UnsupportedNodeError(exc.node or "<graph>", exc.node_type or "?", TARGET,
                                   "recurrent connections are not supported by this target") from None
    units = [n for n in order if isinstance(fg.nodes[n].nir, LOIHI_NEURONS + (nir.Input, nir.Output))]
    depth: dict[str, int] = {}
    into: dict[str, list[Projection]] = {}
    for p in projs:
        into.setdefault(p.dst, []).append(p)
    for u in units:
        if isinstance(fg.nodes[u].nir, nir.Input):
            depth[u] = 0
        else:
            srcs = into.get(u, [])
            if not srcs:
                raise UnsupportedNodeError(u, type(fg.nodes[u].nir).__name__, TARGET, "has no input")
            depth[u] = max(depth[p.src] + 1 for p in srcs)

    pops: dict[str, PopulationSpec] = {}
    for u in units:
        node = fg.nodes[u].nir
        if isinstance(node, LOIHI_NEURONS):
            lp = loihi_params(node)
            shape = shape_of(node, "output")
            pops[u] = PopulationSpec(u, type(node).__name__, shape, int(lp["du"]), int(lp["dv"]), int(lp["vth"]),
                                     np.asarray(lp["bias_mant"], dtype=np.int64).reshape(-1)
                                     * np.ones(int(np.prod(shape)), dtype=np.int64),
                                     int(np.asarray(lp["bias_exp"]).reshape(-1)[0]), float(lp["scale"]), depth[u])

    def size_of(u: str) -> int:
        n = fg.nodes[u].nir
        return int(np.prod(shape_of(n, "input" if isinstance(n, nir.Output) else "output")))

    # graded spikes: an analog Input sends integer payloads (fixed_point.quantize_input)
    message_bits = {u: int(loihi_params(fg.nodes[u].nir).get("message_bits", 0)) for u in units
                    if isinstance(fg.nodes[u].nir, nir.Input)}
    syns: list[SynapseSpec] = []
    per_conn = {}
    for p in projs:
        per_conn.setdefault(p.conn, []).append(p)
    for p in projs:
        delay = depth[p.dst] - depth[p.src] - 1
        if delay > max_delay and not isinstance(fg.nodes[p.src].nir, nir.Input):
            raise UnsupportedNodeError(p.conn or p.dst, type(fg.nodes[p.conn or p.dst].nir).__name__, TARGET,
                                       f"re-timing needs a synaptic delay of {delay} > {max_delay} steps")
        if p.conn is None:
            lp = loihi_params(fg.nodes[p.dst].nir)
            if "direct_weight" not in lp:
                raise UnsupportedNodeError(p.dst, type(fg.nodes[p.dst].nir).__name__, TARGET,
                                           "direct edge but no direct_weight in its fixed-point parameters")
            n = size_of(p.src)
            if n != size_of(p.dst):
                raise UnsupportedNodeError(p.dst, type(fg.nodes[p.dst].nir).__name__, TARGET,
                                           f"direct edge from {p.src} with a different size")
            w = sp.identity(n, dtype=np.int64, format="csr") * int(lp["direct_weight"])
            syns.append(SynapseSpec(f"{p.src}->{p.dst}", p.src, p.dst, w.tocsr(), int(lp["direct_weight_exp"]),
                                    float(pops[p.dst].scale if p.dst in pops else 1.0), delay, "direct", None,
                                    "Identity", None, message_bits.get(p.src, 0)))
            continue
        node = fg.nodes[p.conn].nir
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
        in_shape, out_shape = shape_of(node, "input"), shape_of(node, "output")
        try:
            m = builder(node, in_shape, out_shape, w_int.astype(np.int64))
        except GraphError as exc:
            raise UnsupportedNodeError(p.conn, type(node).__name__, TARGET, exc.reason) from None
        if m.shape[1] != size_of(p.src):
            raise UnsupportedNodeError(p.conn, type(node).__name__, TARGET,
                                       f"input size {m.shape[1]} != source {p.src} size {size_of(p.src)}")
        name = p.conn if len(per_conn[p.conn]) == 1 else f"{p.conn}->{p.dst}"
        if len(per_conn[p.conn]) > 1 and len({q.dst for q in per_conn[p.conn]}) < len(per_conn[p.conn]):
            name = f"{p.src}->{p.conn}->{p.dst}"
        syns.append(SynapseSpec(name, p.src, p.dst, m.tocsr(), int(lp["weight_exp"]), float(lp["scale"]), delay,
                                "connection", p.conn, type(node).__name__, shared_weights(node),
                                message_bits.get(p.src, 0)))

    inputs = {u: shape_of(fg.nodes[u].nir, "output") for u in units if isinstance(fg.nodes[u].nir, nir.Input)}
    outputs: dict[str, dict[str, Any]] = {}
    for u in units:
        node = fg.nodes[u].nir
        if isinstance(node, nir.Output):
            lp = loihi_params(node)
            shape = shape_of(node, "input")
            outputs[u] = {"shape": shape, "scale": float(lp.get("scale", 1.0)),
                          "bias": np.asarray(lp.get("bias", 0), dtype=np.int64).reshape(-1)
                          * np.ones(int(np.prod(shape)), dtype=np.int64), "depth": depth[u]}
    if not outputs:
        raise UnsupportedNodeError("<graph>", "NIRGraph", TARGET, "graph has no Output node")
    latency = max(o["depth"] for o in outputs.values())
    groups = dict(fg.metadata.get("loihi_groups", {}) or {})
    fmt = fg.metadata.get("int_format")
    return NetworkPlan(pops, syns, inputs, outputs, latency, groups,
                       IntFormat.from_mapping(fmt) if fmt is not None else None)


# ---------------------------------------------------------------------------------------------
# emulator (numpy, same integer equations)
# ---------------------------------------------------------------------------------------------


@dataclass
class EmulationResult:
    """Output of :func:`run_lava` (and of the test emulator ``neuroposter.testing.emulate``).

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


def input_dict(plan: NetworkPlan, x: np.ndarray | Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    if isinstance(x, Mapping):
        return {k: np.asarray(v) for k, v in x.items()}
    if len(plan.inputs) != 1:
        raise ValueError(f"graph has {len(plan.inputs)} inputs; pass a dict")
    return {next(iter(plan.inputs)): np.asarray(x)}


def assemble_result(plan: NetworkPlan, z: Mapping[str, np.ndarray], outs: Mapping[str, np.ndarray], t_in: int,
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
        x: ``[T, B, *input_shape]`` 0/1 spikes, or an analog Input's integer payloads (graded spikes,
            :func:`~neuroposter.targets.loihi.fixed_point.quantize_input`), or a dict per Input.
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
    xs = input_dict(plan, x)
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
        if s.message_bits:
            kw["num_message_bits"] = int(s.message_bits)   # graded spikes: W @ payload instead of W[:, spikes]
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


#: Fewest samples per Lava worker process: a runtime's start (compile, forking its processes, the
#: weight set-up) costs about as much CPU as 50 steps of the demo SDT.
MIN_SAMPLES_PER_WORKER = 8

#: Cores one Lava runtime keeps busy: its process models are OS processes stepping in parallel
#: (measured on 2 cores, 115 demo-SDT samples: 49.8 s CPU in 27.7 s wall with one runtime; two
#: runtimes took 35.3 s).
CORES_PER_RUNTIME = 2


def default_workers(batch: int, cores: int | None = None) -> int:
    """Lava worker processes for ``batch`` samples: ``min(2, cores // 2, batch // 8)``, at least 1.

    One runtime already uses about two cores (:data:`CORES_PER_RUNTIME`), so a second one pays off
    from four cores on, and only with at least :data:`MIN_SAMPLES_PER_WORKER` samples each.

    Args:
        batch: the number of samples.
        cores: usable cores (default: this process's CPU affinity).
    """
    import os

    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(2, cores // CORES_PER_RUNTIME, batch // MIN_SAMPLES_PER_WORKER))


def _shards(batch: int, workers: int) -> list[tuple[int, int]]:
    """``workers`` contiguous sample ranges ``[a, b)`` of nearly equal size covering ``range(batch)``."""
    from itertools import pairwise

    bounds = np.linspace(0, batch, workers + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in pairwise(bounds) if b > a]


def _with_models_per_process(first: Any, cfg: Any) -> Any:
    """``cfg`` with every process of ``first``'s network mapped to its ProcessModel up front.

    Lava's compiler looks a process's models up by importing and scanning the modules of its package for every
    process *instance* (``_find_proc_models``; it skips the search only for instances listed in
    ``exception_proc_model_map``), which takes seconds for a network of ~80 processes of a handful of types. The
    models are found here once per process *type*, with the same search and the same selection
    (``cfg.select``), and listed per instance, so the compiler makes the same choices without repeating the search.
    """
    from lava.magma.compiler.compiler_graphs import ProcGroupDiGraphs, find_processes

    by_type: dict[type, Any] = {}
    mapping = dict(cfg.exception_proc_model_map)
    for proc in find_processes(first):
        t = type(proc)
        if t not in by_type:
            by_type[t] = cfg.select(proc, ProcGroupDiGraphs._find_proc_models(proc=proc))
        mapping[proc] = by_type[t]
    cfg.exception_proc_model_map = mapping
    return cfg


def _run_shard(plan: NetworkPlan, xs: Mapping[str, np.ndarray], *, select_tag: str, record: bool, chunk: int,
               on_steps: Any = None) -> tuple[EmulationResult, float, float]:
    """Runs the samples of ``xs`` in this process, ``chunk`` samples per Lava run (one runtime at a
    time); ``on_steps(n)`` after each run. Returns the result and the build and run seconds."""
    import time
    import warnings

    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg

    from neuroposter.targets.loihi.processes import fast_models

    batch = next(iter(xs.values())).shape[1]
    parts: list[EmulationResult] = []
    build_s = run_s = 0.0
    for i in range(0, batch, chunk):
        sub = {k: v[:, i:i + chunk] for k, v in xs.items()}
        t0 = time.perf_counter()
        net = build_lava(plan, sub, select_tag=select_tag, record=record)
        build_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        data_spk = {}
        try:
            first = next(iter(net.processes.values()))
            cfg = _with_models_per_process(first, Loihi2SimCfg(select_tag=select_tag,
                                                               exception_proc_model_map=fast_models(select_tag)))
            warnings.filterwarnings("ignore", message="Cannot import module", category=UserWarning)
            try:
                first.run(condition=RunSteps(num_steps=net.steps), run_cfg=cfg)
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
        if on_steps is not None:
            on_steps(net.steps)
    return _concat(parts), build_s, run_s


def _worker(queue: Any, index: int, plan: NetworkPlan, xs: Mapping[str, np.ndarray], kwargs: dict[str, Any]) -> None:
    """Entry of a forked Lava worker: runs its shard and reports ``("steps", i, n)`` per Lava run,
    then ``("done", i, (result, build_s, run_s))`` or ``("error", i, (exception or text, traceback))``."""
    import pickle
    import signal
    import sys
    import traceback

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop() its Lava runtime on the way out
    try:
        out = _run_shard(plan, xs, on_steps=lambda n: queue.put(("steps", index, n)), **kwargs)
        queue.put(("done", index, out))
    except BaseException as exc:  # noqa: BLE001 - handed to the parent, which raises it
        tb = traceback.format_exc()
        try:
            pickle.dumps(exc)
            payload: Any = exc
        except Exception:  # noqa: BLE001 - an exception that does not pickle travels as text
            payload = f"{type(exc).__name__}: {exc}"
        queue.put(("error", index, (payload, tb)))


def _run_workers(plan: NetworkPlan, xs: Mapping[str, np.ndarray], shards: list[tuple[int, int]],
                 kwargs: dict[str, Any], bar: Any) -> tuple[EmulationResult, float, float]:
    """Runs each shard in its own forked process (its own Lava runtime) and merges in sample order.

    Lava 0.10 starts its process models with ``fork`` (see :mod:`neuroposter.targets.loihi._mp`), which
    needs non-daemonic parents: the workers are plain ``fork`` processes. Each builds its own network;
    the shared-memory channels and semaphores of two runtimes are distinct objects.
    """
    import multiprocessing as mp
    import queue as queue_mod

    ctx = mp.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(q, i, plan, {k: v[:, a:b] for k, v in xs.items()}, kwargs),
                         name=f"neuroposter-lava-{i}") for i, (a, b) in enumerate(shards)]
    results: dict[int, tuple[EmulationResult, float, float]] = {}
    try:
        for p in procs:
            p.start()
        while len(results) < len(procs):
            try:
                kind, i, payload = q.get(timeout=1.0)
            except queue_mod.Empty:
                dead = [p for k, p in enumerate(procs) if k not in results and not p.is_alive()]
                if dead:
                    try:  # its last message may still be in flight
                        kind, i, payload = q.get(timeout=5.0)
                    except queue_mod.Empty:
                        raise RuntimeError(f"Lava worker {dead[0].name} exited with code {dead[0].exitcode} "
                                           "without a result") from None
                else:
                    continue
            if kind == "steps":
                if bar is not None:
                    bar.update(payload)
            elif kind == "done":
                results[i] = payload
            else:
                exc, tb = payload
                log.error("Lava worker %d failed:\n%s", i, tb)
                if isinstance(exc, BaseException):
                    raise exc
                raise RuntimeError(f"Lava worker {i} failed: {exc}")
    finally:
        for p in procs:
            if p.is_alive() and p.pid is not None and len(results) < len(procs):
                p.terminate()
        for p in procs:
            if p.pid is not None:
                p.join(timeout=30)
        q.close()
    ordered = [results[i] for i in range(len(procs))]
    return (_concat([r[0] for r in ordered]), max(r[1] for r in ordered), max(r[2] for r in ordered))


def run_lava(plan: NetworkPlan, x: np.ndarray | Mapping[str, np.ndarray], *, select_tag: str = "fixed_pt",
             record: bool = True, chunk: int | None = None, progress_desc: str | None = None,
             workers: int | None = None) -> LavaResult:
    """Builds and runs the Lava network on every sample of ``x`` (back to back, one run per chunk).

    The samples are split into ``workers`` contiguous shards, each run by its own forked process
    with its own Lava runtime (in this process when there is one); the results are merged in sample
    order and do not depend on ``workers`` or ``chunk`` (every sample starts from reset states).

    Args:
        plan: the network plan.
        x: ``[T, B, *input_shape]`` spikes, or an analog Input's integer payloads (graded spikes).
        select_tag: ``"fixed_pt"`` or ``"floating_pt"``.
        record: record per-population spikes.
        chunk: samples per Lava run within a worker (None: all of the worker's samples in one run).
        progress_desc: show a progress bar over the simulated steps with this label (it moves as
            each Lava run finishes).
        workers: worker processes (None: :func:`default_workers`, i.e. ``min(2, cores // 2, B // 8)``,
            at least 1); capped at ``B``.

    Returns:
        A :class:`LavaResult` aligned like the same-step result (latency removed); ``build_s`` and
        ``run_s`` are the slowest worker's.
    """
    from neuroposter.targets.loihi._mp import prepare_lava

    prepare_lava()
    xs = input_dict(plan, x)
    t_in, batch = next(iter(xs.values())).shape[:2]
    n_workers = max(1, min(batch, default_workers(batch) if workers is None else int(workers)))
    shards = _shards(batch, n_workers)
    per = max(b - a for a, b in shards)
    chunk = per if not chunk else max(1, int(chunk))
    total_steps = sum(min(chunk, (b - a) - i) * t_in + plan.latency for a, b in shards for i in range(0, b - a, chunk))
    kwargs = {"select_tag": select_tag, "record": record, "chunk": chunk}
    bar = None
    if progress_desc:
        from neuroposter._progress import progress

        bar = progress(desc=progress_desc, total=total_steps, unit="step")
    try:
        if len(shards) == 1:
            res, build_s, run_s = _run_shard(plan, xs, on_steps=bar.update if bar is not None else None, **kwargs)
        else:
            res, build_s, run_s = _run_workers(plan, xs, shards, kwargs, bar)
    finally:
        if bar is not None:
            bar.close()
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
