"""Loihi 2 fixed point and generic n-bit quantisation of NIR graphs.

Two entry points:

* :func:`quantize_loihi` turns a float NIR graph into the **integer graph** that the Loihi 2 target
  (``neuroposter.targets.loihi``) builds in Lava and that the reference simulator
  (``neuroposter.ir.simulate(..., arithmetic="int")``) executes bit for bit.
* :func:`quantize_nbit` fake-quantises a graph to a chip's weight / state precision (simulated chips):
  the result is still a float graph (weights on an n-bit grid), run by the reference simulator in
  float arithmetic.

The integer graph
=================
:func:`quantize_loihi` returns a **flat** ``nir.NIRGraph`` (sub-graphs inlined; node names are the
dotted paths ``"blocks.0.attn.and_kv"``; the sub-graph metadata, e.g. the SDSA tags, is kept in
``graph.metadata["loihi_groups"]``). Chains of dense connection nodes (``Affine``/``Linear``) without a
neuron in between are composed into one node (named after the last one), because every Lava synapse
is one connection. ``Flatten`` nodes are kept (a free reshape). Every node that computes carries
``metadata["loihi"]``:

Connection node (``Affine``, ``Linear``, ``Conv1d``, ``Conv2d``) -- one Lava ``Dense``/``Sparse``
synapse. ``weight`` holds the integer values handed to Lava (``int32``, even numbers in
``[-254, 254]``: an 8-bit signed mantissa ``m`` times 2, Lava's mixed-sign convention), ``bias`` is 0
(biases move to the neurons). ``metadata["loihi"]``: ``weight_exp`` (int, Lava's exponent),
``num_weight_bits`` (8), ``scale`` (integer current units per float current unit of the target),
``mantissa_exp`` (``e``: the float weight is ``m * 2**e / scale``), ``rel_error``.

Neuron node (``LIF``, ``IF``, ``Threshold``, ``CubaLIF``) -- one Lava ``LIF`` population; the float
parameters are kept, ``metadata["loihi"]`` holds ``du``, ``dv`` (12-bit), ``vth`` (17-bit mantissa),
``bias_mant`` (int array of the neuron shape, 13-bit signed), ``bias_exp`` (int, 0..7), ``scale``
(``s``: integer threshold units per float unit). Every edge arriving **directly** from another
neuron or an ``Input`` (no connection node in between) gets an explicit identity synapse: a
``Scale`` node ``"<neuron>.identity<i>"`` (integer ``scale`` = the identity weight, with
``metadata["loihi"]`` like a connection), so the integer graph has no implicit synapses.

Output node: ``metadata["loihi"]`` holds ``scale`` (integer units per float logit unit) and ``bias``
(int array, integer units), which the host adds to the read-out currents.

Integer equations (exactly Lava 0.10's ``PyDenseModelBitAcc`` / ``PySparseModelBitAcc`` and
``PyLifModelBitAcc``; all integers, ``>>`` is an arithmetic (flooring) shift)::

    shift(x, e)   = x << e  if e > 0  else  x >> -e
    a_c[t]        = shift(W_c @ s_src[t], weight_exp_c)                 # one connection / direct edge
    a[t]          = sum over incoming connections and direct edges of a_c[t]
    trunc12(x)    = sign(x) * (|x| >> 12)                                # rounds toward zero
    u[t]          = wrap24(trunc12(u[t-1] * (4096 - (du + 1))) + (a[t] << 6))
    v~[t]         = clip(trunc12(v[t-1] * (4096 - dv)) + u[t] + (bias_mant << bias_exp),
                         -(2**23 - 1), 2**23 - 1)
    z[t]          = v~[t] > (vth << 6)                                   # strict
    v[t]          = 0 where z[t] else v~[t]                              # hard reset
    wrap24(x)     = x - 2**24 if x > 2**23;  x + 2**24 if x <= -2**23;  x otherwise
    readout[t]    = (a[t] + bias_out) / scale_out                        # Output node, host side

:func:`neuron_step_int` and :func:`synapse_int` implement these equations (numpy, int64) so that every
simulator of the project shares one implementation.

Mapping of the NIR neuron models (forward Euler, ``dt`` from ``graph.metadata["dt"]``, default 1):

=============  ======  ==========================  ==============================================
NIR node        du      dv                          input gain ``g`` (folded into the weights)
=============  ======  ==========================  ==============================================
``LIF``         4095    ``round(4096 dt / tau)``    ``r dt / tau``; bias ``dt / tau * v_leak``
``IF``          4095    0                           ``r dt``
``Threshold``   4095    4095                        1 (stateless up to a ``v >> 12`` residual)
``CubaLIF``     ``round(4096 dt/tau_syn) - 1``  ``round(4096 dt/tau_mem)``  ``w_in r dt^2/(tau_syn tau_mem)``
=============  ======  ==========================  ==============================================

Scales: each neuron population gets ``s = 2**k`` with ``vth * s`` in ``[2**9, 2**10)`` (so the
threshold has 10 significant bits) unless the worst-case input (all inputs spiking) would overflow
the 24-bit membrane, in which case ``k`` is lowered. Each connection into it is quantised to an
8-bit signed mantissa with its own exponent: ``round(W * g * s / 2**e)`` with the smallest ``e``
that keeps ``|m| <= 127`` (so the relative weight error is at most ``2**-8`` of the connection's
largest weight). Biases: ``round(b * s * 64)`` split into a 13-bit mantissa and a 3-bit exponent.
A reset to a non-zero ``v_reset`` has no Lava equivalent and is refused.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import nir
import numpy as np

from neuroposter.errors import NeuroposterError
from neuroposter.ir.graph import EndpointError, bypass_junctions, flatten_nested, topo_sort

__all__ = [
    "QuantizationError",
    "QuantizedWeights",
    "quantize_weights",
    "FlatGraph",
    "flatten_graph",
    "Projection",
    "projections",
    "NEURON_TYPES",
    "CONNECTION_TYPES",
    "LayerError",
    "QuantReport",
    "quantize_loihi",
    "quantize_nbit",
    "neuron_step_int",
    "synapse_int",
    "shift",
    "loihi_params",
]

log = logging.getLogger(__name__)

NEURON_TYPES: tuple[type[nir.NIRNode], ...] = (nir.LIF, nir.IF, nir.Threshold, nir.CubaLIF)
CONNECTION_TYPES: tuple[type[nir.NIRNode], ...] = (nir.Affine, nir.Linear, nir.Conv1d, nir.Conv2d, nir.Scale)
_PASSTHROUGH_TYPES: tuple[type[nir.NIRNode], ...] = (nir.Flatten,)

MANT_MAX = 127                 # symmetric 8-bit signed mantissa
VTH_MAX = (1 << 17) - 1        # 17-bit threshold mantissa
STATE_MAX = (1 << 23) - 1      # 24-bit signed state
BIAS_MANT_MAX = (1 << 12) - 1  # 13-bit signed bias mantissa
BIAS_EXP_MAX = 7               # 3-bit bias exponent
VTH_TARGET_BITS = 10
TINY = 1e-30                   # weights below this magnitude quantise to 0


class QuantizationError(NeuroposterError):
    """A graph (node) that cannot be expressed in the requested fixed point; names the node."""

    def __init__(self, node: str, node_type: str, reason: str) -> None:
        super().__init__(f"cannot quantise node {node!r} ({node_type}): {reason}")
        self.node, self.node_type, self.reason = node, node_type, reason


# ---------------------------------------------------------------------------------------------
# weights
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuantizedWeights:
    """A weight tensor as ``mantissa * 2**exp``.

    Attributes:
        mantissa: int32 array, ``|m| <= 2**(bits-1) - 1``.
        exp: the shared exponent (may be negative).
        bits: mantissa bits including the sign.
    """

    mantissa: np.ndarray
    exp: int
    bits: int = 8

    @property
    def step(self) -> float:
        """The quantisation step ``2**exp``."""
        return float(2.0 ** self.exp)

    def dequantize(self) -> np.ndarray:
        """``mantissa * 2**exp`` as float64."""
        return self.mantissa.astype(np.float64) * self.step


def quantize_weights(w: np.ndarray, *, bits: int = 8) -> QuantizedWeights:
    """Quantises ``w`` to a signed ``bits``-bit mantissa with one shared power-of-two exponent.

    The exponent is the smallest ``e`` with ``max|w| / 2**e <= 2**(bits-1) - 1``; mantissas are
    rounded to nearest, so the error is at most half a step and nothing clips. The result is
    idempotent: quantising ``dequantize()`` again returns the same mantissa and exponent.

    Args:
        w: float weights (any shape).
        bits: mantissa bits including the sign (>= 2).

    Returns:
        The :class:`QuantizedWeights`; an all-zero tensor gets exponent 0.
    """
    if bits < 2:
        raise ValueError(f"bits must be >= 2, got {bits}")
    w = np.asarray(w, dtype=np.float64)
    qmax = (1 << (bits - 1)) - 1
    amax = float(np.max(np.abs(w))) if w.size else 0.0
    if amax < TINY or not math.isfinite(amax):
        if not math.isfinite(amax):
            raise ValueError("weights contain NaN or inf")
        return QuantizedWeights(np.zeros(w.shape, dtype=np.int32), 0, bits)
    exp = math.ceil(math.log2(amax / qmax))
    # guard float rounding of log2 at exact powers of two
    while amax / 2.0 ** (exp - 1) <= qmax:
        exp -= 1
    while amax / 2.0 ** exp > qmax:
        exp += 1
    mant = np.rint(w / 2.0 ** exp).astype(np.int64)
    mant = np.clip(mant, -qmax, qmax).astype(np.int32)
    if float(np.max(np.abs(mant))) * 2.0 ** exp < TINY:      # keeps the tiny-weight edge idempotent
        return QuantizedWeights(np.zeros(w.shape, dtype=np.int32), 0, bits)
    return QuantizedWeights(mant, int(exp), bits)


def _split_mant_exp(x: np.ndarray, mant_max: int, exp_max: int) -> tuple[np.ndarray, int]:
    """Integer ``x`` as ``mant << exp`` with ``|mant| <= mant_max`` and ``0 <= exp <= exp_max``."""
    x = np.asarray(x, dtype=np.int64)
    amax = int(np.max(np.abs(x))) if x.size else 0
    exp = 0
    while amax > mant_max << exp and exp < exp_max:
        exp += 1
    mant = np.clip(np.rint(x / float(1 << exp)), -mant_max - 1, mant_max).astype(np.int64)
    return mant, exp


# ---------------------------------------------------------------------------------------------
# integer arithmetic (the shared executable spec)
# ---------------------------------------------------------------------------------------------


def shift(x: np.ndarray, e: int) -> np.ndarray:
    """Lava's synaptic exponent: ``x << e`` for ``e > 0``, else the flooring ``x >> -e``."""
    x = np.asarray(x, dtype=np.int64)
    return np.left_shift(x, e) if e > 0 else np.right_shift(x, -e)


def synapse_int(weight: Any, spikes: np.ndarray, weight_exp: int) -> np.ndarray:
    """Integer synaptic current ``shift(W @ s, weight_exp)`` of one connection.

    Args:
        weight: int matrix ``(out, in)`` (numpy or scipy sparse).
        spikes: ``(in,)`` or ``(in, B)`` 0/1 spikes.
        weight_exp: the connection's Lava exponent.
    """
    acc = weight @ np.asarray(spikes, dtype=np.int64)
    return shift(np.asarray(acc, dtype=np.int64), int(weight_exp))


def _trunc12(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.right_shift(np.abs(x), 12)


def neuron_step_int(u: np.ndarray, v: np.ndarray, a: np.ndarray, *, du: int, dv: int, vth: int,
                    bias: np.ndarray | int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One step of Lava's bit-accurate LIF (``PyLifModelBitAcc``), vectorised over any shape.

    Args:
        u, v: int64 current and voltage state (modified copies are returned).
        a: int64 summed synaptic input of this step.
        du, dv: 12-bit decays.
        vth: 17-bit threshold mantissa (compared as ``vth << 6``).
        bias: ``bias_mant << bias_exp`` (int, broadcastable).

    Returns:
        ``(u, v, z)``: the new states and the boolean spikes.
    """
    max_uv = 1 << 23
    cu = _trunc12(np.asarray(u, np.int64) * (4096 - (int(du) + 1))) + np.left_shift(np.asarray(a, np.int64), 6)
    cu = np.where(cu > max_uv, cu - 2 * max_uv, cu)
    cu = np.where(cu <= -max_uv, cu + 2 * max_uv, cu)
    nv = _trunc12(np.asarray(v, np.int64) * (4096 - int(dv))) + cu + np.asarray(bias, np.int64)
    nv = np.clip(nv, -max_uv + 1, max_uv - 1)
    z = nv > (int(vth) << 6)
    nv = np.where(z, 0, nv)
    return cu, nv, z


def loihi_params(node: nir.NIRNode) -> dict[str, Any]:
    """The ``metadata["loihi"]`` of a node of an integer graph (empty dict when absent)."""
    return dict(node.metadata.get("loihi", {})) if isinstance(node.metadata, Mapping) else {}


# ---------------------------------------------------------------------------------------------
# graph flattening and projections
# ---------------------------------------------------------------------------------------------


@dataclass
class FlatGraph:
    """A NIR graph with its sub-graphs inlined.

    Attributes:
        nodes: dotted node path -> node (no sub-graph ``Input``/``Output`` nodes).
        edges: ``(src, dst)`` pairs between those paths.
        groups: sub-graph path -> its metadata (e.g. ``{"op": "sdsa", ...}``).
        metadata: the top graph's metadata.
    """

    nodes: dict[str, nir.NIRNode]
    edges: list[tuple[str, str]]
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    def preds(self, name: str) -> list[str]:
        """Sources of the edges into ``name`` (in edge order)."""
        return [s for s, d in self.edges if d == name]

    def succs(self, name: str) -> list[str]:
        """Destinations of the edges out of ``name``."""
        return [d for s, d in self.edges if s == name]

    def inputs(self) -> list[str]:
        """Names of the top-level ``Input`` nodes."""
        return [k for k, n in self.nodes.items() if isinstance(n, nir.Input)]

    def outputs(self) -> list[str]:
        """Names of the top-level ``Output`` nodes."""
        return [k for k, n in self.nodes.items() if isinstance(n, nir.Output)]

    def topo_order(self) -> list[str]:
        """Nodes in a topological order (raises on a cycle, which the targets do not support)."""
        order, cyclic = topo_sort(self.nodes, self.edges)
        if cyclic:
            first = min(cyclic)
            raise QuantizationError(first, type(self.nodes[first]).__name__,
                                    "recurrent connections are not supported by this target")
        return order


def flatten_graph(graph: nir.NIRGraph) -> FlatGraph:
    """Inlines every sub-``NIRGraph``; its ``Input``/``Output`` nodes become plain junctions, bypassed
    (:func:`neuroposter.ir.graph.flatten_nested`; repeated edges are kept once).

    Args:
        graph: a NIR graph, possibly nested.

    Returns:
        The :class:`FlatGraph` (top-level ``Input``/``Output`` nodes kept).
    """
    try:
        nested = flatten_nested(graph, sub_ends="some")
    except EndpointError as exc:
        if exc.count is None:
            raise QuantizationError(exc.ref, "?", "edge refers to a node that does not exist") from None
        what = "Output" if exc.side == "src" else "Input"
        raise QuantizationError(exc.ref, "NIRGraph", f"sub-graph has no {what} node") from None
    nodes, edges = bypass_junctions(nested)
    return FlatGraph(nodes, list(dict.fromkeys(edges)), nested.subgraphs, dict(graph.metadata or {}))


def _is_unit(node: nir.NIRNode) -> bool:
    return isinstance(node, (nir.Input, nir.Output) + NEURON_TYPES)


@dataclass
class Projection:
    """One path ``src unit -> [Flatten] -> [connection] -> [Flatten] -> dst unit``.

    Attributes:
        src: source unit (neuron or ``Input``).
        dst: destination unit (neuron or ``Output``).
        conn: the (possibly composed) connection node name, or None for a direct (identity) edge.
        path: every node name between src and dst, in order.
    """

    src: str
    dst: str
    conn: str | None
    path: tuple[str, ...]


def projections(fg: FlatGraph) -> list[Projection]:
    """All unit-to-unit paths of a flat graph (one per route; chains of connections allowed).

    Raises:
        QuantizationError: a node type that is neither a unit, a connection nor a pass-through.
    """
    out: list[Projection] = []

    def back(node: str, path: tuple[str, ...], dst: str) -> None:
        for p in fg.preds(node):
            n = fg.nodes[p]
            if _is_unit(n):
                conns = [x for x in path if isinstance(fg.nodes[x], CONNECTION_TYPES)]
                out.append(Projection(p, dst, conns[-1] if conns else None, path))
            elif isinstance(n, CONNECTION_TYPES + _PASSTHROUGH_TYPES):
                back(p, (p,) + path, dst)
            else:
                raise QuantizationError(p, type(n).__name__, "node type is not supported")

    for name, node in fg.nodes.items():
        if _is_unit(node) and not isinstance(node, nir.Input):
            back(name, (), name)
    return out


# ---------------------------------------------------------------------------------------------
# linear operators of connection nodes
# ---------------------------------------------------------------------------------------------


def _dense_of(node: nir.NIRNode) -> tuple[np.ndarray, np.ndarray]:
    """(W, b) of an Affine / Linear node as a dense matrix over flattened shapes."""
    w = np.asarray(node.weight, dtype=np.float64)
    if w.ndim > 2:
        raise QuantizationError("?", type(node).__name__, "a channel-batched Linear chained to another "
                                "connection cannot be composed")
    w = w.reshape(w.shape[0], -1) if w.ndim != 2 else w
    b = np.asarray(getattr(node, "bias", np.zeros(w.shape[0])), dtype=np.float64).reshape(-1)
    if b.size == 1 and w.shape[0] != 1:
        b = np.full(w.shape[0], float(b[0]))
    return w, b


def _node_bias_current(node: nir.NIRNode, out_shape: tuple[int, ...]) -> np.ndarray:
    """The constant output of a connection node (its bias broadcast to the output shape)."""
    if isinstance(node, (nir.Conv1d, nir.Conv2d)):
        b = np.asarray(node.bias, dtype=np.float64).reshape(-1)
        cout = int(np.asarray(node.weight).shape[0])
        if b.size == 1:
            b = np.full(cout, float(b[0]))
        return np.broadcast_to(b.reshape((cout,) + (1,) * (len(out_shape) - 1)), out_shape).astype(np.float64)
    if isinstance(node, nir.Affine):
        return np.asarray(node.bias, dtype=np.float64).reshape(out_shape)
    return np.zeros(out_shape)


def _out_shape(node: nir.NIRNode) -> tuple[int, ...]:
    ot = node.output_type
    arr = ot.get("output", next(iter(ot.values())))
    return tuple(int(x) for x in np.asarray(arr).reshape(-1))


def _in_shape(node: nir.NIRNode) -> tuple[int, ...]:
    it = node.input_type
    arr = it.get("input", next(iter(it.values())))
    return tuple(int(x) for x in np.asarray(arr).reshape(-1))


def _w(node: nir.NIRNode) -> np.ndarray:
    """The weight tensor of a connection node (``scale`` for ``Scale``)."""
    return np.asarray(node.scale if isinstance(node, nir.Scale) else node.weight, dtype=np.float64)


def _abs_rowsum(node: nir.NIRNode) -> float:
    """max over outputs of sum |w| over that output's inputs (worst-case input drive)."""
    w = np.abs(_w(node))
    if isinstance(node, nir.Scale):
        return float(w.max()) if w.size else 0.0
    if isinstance(node, (nir.Affine, nir.Linear)) and w.ndim >= 3:   # channel-batched: rows are the last-but-one axis
        return float(w.sum(axis=-1).max()) if w.size else 0.0
    if isinstance(node, (nir.Conv1d, nir.Conv2d)):
        return float(w.reshape(w.shape[0], -1).sum(axis=1).max()) if w.size else 0.0
    w = w.reshape(w.shape[0], -1)
    return float(w.sum(axis=1).max()) if w.size else 0.0


# ---------------------------------------------------------------------------------------------
# neuron models
# ---------------------------------------------------------------------------------------------


def _scalar(x: Any, node: str, what: str, ntype: str) -> float:
    arr = np.asarray(x, dtype=np.float64).reshape(-1)
    if arr.size == 0:
        raise QuantizationError(node, ntype, f"{what} is empty")
    if not np.allclose(arr, arr[0]):
        raise QuantizationError(node, ntype, f"{what} varies across neurons; a Lava LIF population has one "
                                "value (split the population)")
    return float(arr[0])


@dataclass(frozen=True)
class _NeuronMap:
    du: int
    dv: int
    gain: float            # float input gain g folded into the weights
    vth: float             # float threshold
    bias: np.ndarray       # float per-step bias on v (before the connection biases), neuron shape
    bias_gain: float       # multiplier of connection biases


def _neuron_map(name: str, node: nir.NIRNode, dt: float) -> _NeuronMap:
    t = type(node).__name__
    shape = _out_shape(node)

    def reset_zero() -> None:
        vr = getattr(node, "v_reset", None)
        if vr is not None and np.any(np.asarray(vr) != 0):
            raise QuantizationError(name, t, "non-zero v_reset has no Loihi LIF equivalent (resets to 0)")

    if isinstance(node, nir.Threshold):
        vth = _scalar(node.threshold, name, "threshold", t)
        return _NeuronMap(4095, 4095, 1.0, vth, np.zeros(shape), 1.0)
    if isinstance(node, nir.LIF):
        reset_zero()
        tau = _scalar(node.tau, name, "tau", t)
        r = _scalar(node.r, name, "r", t)
        k = dt / tau
        vth = _scalar(node.v_threshold, name, "v_threshold", t)
        leak = np.broadcast_to(np.asarray(node.v_leak, dtype=np.float64), shape) * k
        # tau = dt (full decay) is dv = 4096, which 12 bits cannot hold: 4095 leaves a v >> 12 residual
        return _NeuronMap(4095, min(4095, int(round(4096 * k))), r * k, vth, np.array(leak), r * k)
    if isinstance(node, nir.IF):
        reset_zero()
        r = _scalar(node.r, name, "r", t)
        vth = _scalar(node.v_threshold, name, "v_threshold", t)
        return _NeuronMap(4095, 0, r * dt, vth, np.zeros(shape), r * dt)
    if isinstance(node, nir.CubaLIF):
        reset_zero()
        ts = _scalar(node.tau_syn, name, "tau_syn", t)
        tm = _scalar(node.tau_mem, name, "tau_mem", t)
        r = _scalar(node.r, name, "r", t)
        w_in = _scalar(node.w_in, name, "w_in", t)
        vth = _scalar(node.v_threshold, name, "v_threshold", t)
        leak = np.broadcast_to(np.asarray(node.v_leak, dtype=np.float64), shape) * (dt / tm)
        g = w_in * r * (dt / ts) * (dt / tm)
        return _NeuronMap(min(4095, max(0, int(round(4096 * dt / ts)) - 1)), min(4095, int(round(4096 * dt / tm))), g, vth,
                          np.array(leak), r * w_in * (dt / tm))
    raise QuantizationError(name, t, "not a neuron type the Loihi LIF can host")


# ---------------------------------------------------------------------------------------------
# reports
# ---------------------------------------------------------------------------------------------


@dataclass
class LayerError:
    """Quantisation error of one node.

    Attributes:
        node: node path.
        kind: ``"connection"``, ``"neuron"`` or ``"output"``.
        rel_weight_error: ``||W_q - W|| / ||W||`` (Frobenius; connections).
        max_abs_error_steps: largest error in quantisation steps (<= 0.5 unless clipped).
        weight_exp: Lava weight exponent (connections).
        rel_vth_error: relative threshold error (neurons).
        rel_bias_error: relative bias error (neurons, ``||b_q - b|| / ||b||``; 0 when no bias).
        scale: integer units per float unit.
    """

    node: str
    kind: str
    rel_weight_error: float | None = None
    max_abs_error_steps: float | None = None
    weight_exp: int | None = None
    rel_vth_error: float | None = None
    rel_bias_error: float | None = None
    scale: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (None fields dropped)."""
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class QuantReport:
    """Per-layer quantisation errors and warnings of one quantisation."""

    layers: list[LayerError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    scheme: str = "loihi2"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"scheme": self.scheme, "layers": {l.node: l.to_dict() for l in self.layers},
                "warnings": list(self.warnings)}


# ---------------------------------------------------------------------------------------------
# Loihi 2 quantisation
# ---------------------------------------------------------------------------------------------


def _compose(fg: FlatGraph, proj: Projection) -> tuple[np.ndarray | None, np.ndarray | None, nir.NIRNode | None]:
    """Dense (W, b) of a projection whose path holds several dense connections; else (None, None, conn)."""
    conns = [fg.nodes[x] for x in proj.path if isinstance(fg.nodes[x], CONNECTION_TYPES)]
    if len(conns) <= 1:
        return None, None, (conns[0] if conns else None)
    for name in proj.path:
        n = fg.nodes[name]
        if isinstance(n, (nir.Conv1d, nir.Conv2d)):
            raise QuantizationError(name, type(n).__name__, "a convolution chained to another connection "
                                    "without a neuron in between cannot be composed")
    w_tot: np.ndarray | None = None
    b_tot: np.ndarray | None = None
    for n in conns:
        w, b = _dense_of(n)
        if w_tot is None:
            w_tot, b_tot = w, b
        else:
            w_tot, b_tot = w @ w_tot, w @ b_tot + b
    return w_tot, b_tot, conns[-1]


def _weight_int(qw: QuantizedWeights) -> tuple[np.ndarray, int]:
    """Lava values (``2 m``, int32) and Lava ``weight_exp`` (``e - 1``) of a quantised tensor."""
    return (qw.mantissa.astype(np.int32) * 2), qw.exp - 1


def quantize_loihi(graph: nir.NIRGraph, *, vth_bits: int = VTH_TARGET_BITS,
                   netx: bool = False) -> tuple[nir.NIRGraph, QuantReport]:
    """The Loihi 2 integer graph of a float NIR graph (see the module docstring for its meaning).

    Args:
        graph: a float NIR graph (nested or flat).
        vth_bits: target significant bits of each population's threshold (``vth * s`` in
            ``[2**(vth_bits-1), 2**vth_bits)``).
        netx: lava-dl netx conventions: every connection gets ``weight_exp = 0`` (netx stores the
            effective integer weights, ``|w| <= 254``; each population's ``s`` is the power of two that
            puts its largest incoming weight in ``(127, 254]``) and every bias ``bias_exp = 6``
            (netx's fixed bias exponent).

    Returns:
        ``(graph_int, report)``.

    Raises:
        QuantizationError: a node the Loihi LIF / synapses cannot express (names it).
    """
    fg = flatten_graph(graph)
    dt = float(np.asarray(fg.metadata.get("dt", 1.0)).reshape(-1)[0]) if "dt" in fg.metadata else 1.0
    projs = projections(fg)
    report = QuantReport()
    by_dst: dict[str, list[Projection]] = {}
    for p in projs:
        by_dst.setdefault(p.dst, []).append(p)

    # scales per destination unit
    nmaps: dict[str, _NeuronMap] = {}
    scales: dict[str, float] = {}
    composed: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for p in projs:
        w, b, last = _compose(fg, p)
        if w is not None and last is not None:
            key = [x for x in p.path if isinstance(fg.nodes[x], CONNECTION_TYPES)][-1]
            composed[key] = (w, b)

    def drive(p: Projection) -> float:
        if p.conn is None:
            return 1.0
        if p.conn in composed:
            return float(np.abs(composed[p.conn][0]).sum(axis=1).max())
        return _abs_rowsum(fg.nodes[p.conn])

    def _peak(p: Projection) -> float:
        if p.conn is None:
            return 1.0
        if p.conn in composed:
            return float(np.abs(composed[p.conn][0]).max())
        return float(np.abs(_w(fg.nodes[p.conn])).max())

    for name, node in fg.nodes.items():
        if isinstance(node, NEURON_TYPES):
            nm = _neuron_map(name, node, dt)
            nmaps[name] = nm
            if nm.vth > 0:
                k = (vth_bits - 1) - math.floor(math.log2(nm.vth))
            else:
                peak = max([drive(p) * nm.gain for p in by_dst.get(name, [])] + [1e-12])
                k = 8 - math.floor(math.log2(peak))
            worst = sum(drive(p) * nm.gain for p in by_dst.get(name, [])) + float(np.max(np.abs(nm.bias), initial=0))
            # keep the worst-case membrane inside 24 bits: worst * s * 64 * (1 / (dv/4096)) < 2**23
            leak = max(nm.dv, 1) / 4096.0 if nm.dv else 1.0 / 64.0
            while k > -20 and worst * (2.0 ** k) * 64 / leak >= STATE_MAX and round(nm.vth * 2.0 ** (k - 1)) >= 64:
                k -= 1
            if netx:
                peak = max([_peak(p) * nm.gain for p in by_dst.get(name, [])] + [1e-12])
                k = math.floor(math.log2(254.0 / peak))
                while peak * 2.0 ** k <= 127:
                    k += 1
                while peak * 2.0 ** k > 254:
                    k -= 1
            while nm.vth * 2.0 ** k > VTH_MAX:
                k -= 1
            scales[name] = 2.0 ** k
        elif isinstance(node, nir.Output):
            peak = 0.0
            for p in by_dst.get(name, []):
                if p.conn is None:
                    peak = max(peak, 1.0)
                elif p.conn in composed:
                    peak = max(peak, float(np.abs(composed[p.conn][0]).max()))
                else:
                    peak = max(peak, float(np.abs(_w(fg.nodes[p.conn])).max()))
            k = 8 - math.floor(math.log2(peak)) if peak > 0 else 0
            scales[name] = 2.0 ** k

    def gain_scale(dst: str) -> float:
        n = fg.nodes[dst]
        return (nmaps[dst].gain if isinstance(n, NEURON_TYPES) else 1.0) * scales[dst]

    new_nodes: dict[str, nir.NIRNode] = {}
    conn_scale: dict[str, float] = {}
    bias_float: dict[str, np.ndarray] = {}  # float bias current per destination unit (input units)
    dropped: set[str] = set()
    seen: set[tuple[str, str]] = set()
    conn_bias: dict[str, np.ndarray] = {}
    for p in projs:
        if p.conn is None:
            continue
        gs = gain_scale(p.dst)
        if p.conn in conn_scale:
            if not math.isclose(conn_scale[p.conn], gs, rel_tol=1e-12):
                raise QuantizationError(p.conn, type(fg.nodes[p.conn]).__name__,
                                        "feeds neuron populations with different fixed-point scales "
                                        f"({conn_scale[p.conn]:g} vs {gs:g}); give them equal tau and threshold")
        else:
            conn_scale[p.conn] = gs
            node = fg.nodes[p.conn]
            if p.conn in composed:
                w, b = composed[p.conn]
                for x in p.path:
                    if isinstance(fg.nodes[x], CONNECTION_TYPES) and x != p.conn:
                        dropped.add(x)
                qw = quantize_weights(w * gs)
                wi, we = _weight_int(qw)
                in_shape = _in_shape(fg.nodes[[x for x in p.path if isinstance(fg.nodes[x], CONNECTION_TYPES)][0]])
                new = nir.Affine(weight=wi, bias=np.zeros(wi.shape[0], dtype=np.int32))
                ref_w = w
                bias_cur = b.reshape(_out_shape(node))
                new.metadata = {"composed_from": ",".join(x for x in p.path if isinstance(fg.nodes[x], CONNECTION_TYPES)),
                                "input_size": int(np.prod(in_shape))}
            else:
                ref_w = _w(node)
                qw = quantize_weights(ref_w * gs)
                wi, we = _weight_int(qw)
                new = copy.copy(node)
                if isinstance(node, nir.Scale):
                    new.scale = wi
                else:
                    new.weight = wi
                if hasattr(node, "bias") and node.bias is not None and not isinstance(node, nir.Linear):
                    new.bias = np.zeros(np.asarray(node.bias).shape, dtype=np.int32)
                new.metadata = dict(node.metadata or {})
                bias_cur = _node_bias_current(node, _out_shape(node))
            deq = qw.dequantize() / gs
            nrm = float(np.linalg.norm(ref_w))
            rel = float(np.linalg.norm(deq - ref_w) / nrm) if nrm > 0 else 0.0
            err_steps = float(np.max(np.abs(ref_w * gs / qw.step - qw.mantissa))) if ref_w.size else 0.0
            new.metadata["loihi"] = {"weight_exp": int(we), "num_weight_bits": 8, "scale": float(gs),
                                     "mantissa_exp": int(qw.exp), "rel_error": rel}
            new_nodes[p.conn] = new
            report.layers.append(LayerError(p.conn, "connection", rel_weight_error=rel,
                                            max_abs_error_steps=err_steps, weight_exp=int(we), scale=float(gs)))
            conn_bias[p.conn] = bias_cur
        # connection bias reaches every destination of the connection once per (conn, dst)
        key = (p.conn, p.dst)
        if key not in seen:
            seen.add(key)
            cb = conn_bias[p.conn]
            dst_shape = _out_shape(fg.nodes[p.dst]) if not isinstance(fg.nodes[p.dst], nir.Output) else _in_shape(fg.nodes[p.dst])
            cb = cb.reshape(dst_shape) if cb.size == int(np.prod(dst_shape)) else np.broadcast_to(cb, dst_shape)
            bias_float[p.dst] = bias_float.get(p.dst, np.zeros(dst_shape)) + cb

    # neurons and outputs
    identity: dict[tuple[str, tuple[str, ...], str], str] = {}
    for name, node in fg.nodes.items():
        if isinstance(node, NEURON_TYPES):
            nm, s = nmaps[name], scales[name]
            shape = _out_shape(node)
            b = nm.bias + nm.bias_gain * bias_float.get(name, np.zeros(shape))
            b_fx = np.rint(b * s * 64).astype(np.int64)
            if netx:
                bexp = 6
                bmant = np.clip(np.rint(b_fx / 64.0), -BIAS_MANT_MAX - 1, BIAS_MANT_MAX).astype(np.int64)
            else:
                bmant, bexp = _split_mant_exp(b_fx, BIAS_MANT_MAX, BIAS_EXP_MAX)
            if np.any(np.abs(b_fx) > (BIAS_MANT_MAX << BIAS_EXP_MAX)):
                report.warnings.append(f"{name}: bias clipped to 13-bit mantissa << 7")
            vth_fx = int(round(nm.vth * s))
            if vth_fx > VTH_MAX or vth_fx < 0:
                raise QuantizationError(name, type(node).__name__, f"threshold {nm.vth} does not fit 17 bits")
            direct = [p for p in by_dst.get(name, []) if p.conn is None]
            if direct:
                # every neuron -> neuron edge becomes an explicit identity synapse (a Scale node)
                qd = quantize_weights(np.array([nm.gain * s]))
                dw, de = _weight_int(qd)
                for i, p in enumerate(direct):
                    sname = f"{name}.identity{i}"
                    sc = nir.Scale(scale=np.full(shape, int(dw[0]), dtype=np.int32))
                    sc.metadata = {"loihi": {"weight_exp": int(de), "num_weight_bits": 8, "scale": float(nm.gain * s),
                                             "mantissa_exp": int(qd.exp), "rel_error": 0.0}, "identity_of": p.src}
                    new_nodes[sname] = sc
                    identity[(p.src, p.path, name)] = sname
            dmeta: dict[str, int] = {}
            new = copy.copy(node)
            new.metadata = dict(node.metadata or {})
            new.metadata["loihi"] = {"du": nm.du, "dv": nm.dv, "vth": vth_fx,
                                     "bias_mant": bmant.reshape(shape).astype(np.int32),
                                     "bias_exp": int(bexp), "scale": float(s), **dmeta}
            new_nodes[name] = new
            bq = (bmant.astype(np.float64) * 2.0 ** bexp) / (s * 64)
            bn = float(np.linalg.norm(b))
            report.layers.append(LayerError(
                name, "neuron", rel_vth_error=abs(vth_fx / s - nm.vth) / nm.vth if nm.vth else 0.0,
                rel_bias_error=float(np.linalg.norm(bq - b) / bn) if bn > 0 else 0.0, scale=float(s)))
        elif isinstance(node, nir.Output):
            s = scales[name]
            shape = _in_shape(node)
            b = bias_float.get(name, np.zeros(shape))
            new = nir.Output(output_type={"output": np.asarray(shape)})
            new.metadata = {"loihi": {"scale": float(s), "bias": np.rint(b * s).astype(np.int64).reshape(shape)}}
            new_nodes[name] = new
            report.layers.append(LayerError(name, "output", scale=float(s)))
        elif isinstance(node, (nir.Input,) + _PASSTHROUGH_TYPES):
            new_nodes[name] = node

    # rebuild edges (composed chains collapse onto their last connection)
    edges: list[tuple[str, str]] = []
    for p in projs:
        ident = [identity[(p.src, p.path, p.dst)]] if (p.src, p.path, p.dst) in identity else []
        chain = [p.src] + [x for x in p.path if x not in dropped] + ident + [p.dst]
        for a, b in zip(chain[:-1], chain[1:]):
            if (a, b) not in edges:
                edges.append((a, b))
    for name in list(new_nodes):
        if name in dropped:
            del new_nodes[name]
    # the input of a composed Affine is the first dropped node's input: keep Flatten where needed
    for name, node in new_nodes.items():
        if isinstance(node, nir.Affine) and "composed_from" in node.metadata:
            srcs = [a for a, b in edges if b == name]
            for src in srcs:
                st = _out_shape(new_nodes[src])
                if int(np.prod(st)) != node.weight.shape[1]:
                    raise QuantizationError(name, "Affine", "composed input size mismatch")
    meta = dict(fg.metadata)
    meta["arithmetic"] = "loihi2_int"
    meta["loihi_groups"] = {k.replace(".", "/"): _plain(v) for k, v in fg.groups.items()} if fg.groups else {}
    if not meta["loihi_groups"]:
        del meta["loihi_groups"]
    out = nir.NIRGraph(nodes=new_nodes, edges=edges, metadata=meta, type_check=False)
    _fix_affine_input_types(out)
    return out, report


def _plain(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return np.asarray(v)
    return v


def _fix_affine_input_types(g: nir.NIRGraph) -> None:
    """Composed Affine nodes take the flat input of their source; Flatten nodes fix the shape."""
    for name, node in g.nodes.items():
        if isinstance(node, nir.Affine) and "composed_from" in node.metadata:
            srcs = [a for a, b in g.edges if b == name]
            for src in srcs:
                st = _out_shape(g.nodes[src])
                if len(st) != 1:
                    # insert a Flatten in front
                    fname = f"{name}.flatten_in"
                    g.nodes[fname] = nir.Flatten(input_type={"input": np.asarray(st)}, start_dim=0, end_dim=-1)
                    g.edges.remove((src, name))
                    g.edges.extend([(src, fname), (fname, name)])


# ---------------------------------------------------------------------------------------------
# generic n-bit (simulated chips)
# ---------------------------------------------------------------------------------------------


def _grid(x: np.ndarray, bits: int, ref: float) -> np.ndarray:
    qmax = (1 << (bits - 1)) - 1
    if ref <= 0:
        return np.asarray(x, dtype=np.float64)
    step = ref / qmax
    return np.clip(np.rint(np.asarray(x, dtype=np.float64) / step), -qmax, qmax) * step


def quantize_nbit(graph: nir.NIRGraph, *, weight_bits: int | None, state_bits: int | None = None
                  ) -> tuple[nir.NIRGraph, QuantReport]:
    """Fake-quantises a graph to ``weight_bits`` weights and ``state_bits`` neuron parameters.

    Weights of every connection get a symmetric per-tensor grid of ``2**(weight_bits-1) - 1`` levels
    over ``max|W|``; connection biases are neuron offsets and get the ``state_bits`` grid over their own
    range (left float when ``state_bits`` is None); with ``state_bits`` every neuron's threshold
    and leak are put on the grid of ``2**(state_bits-1) - 1`` levels over ``threshold * 8``
    (membranes up to 8x threshold representable). ``weight_bits=1`` is binary ``{-a, +a}`` weights
    with one magnitude ``a = mean|W|`` per connection (TrueNorth-like sign + shared weight).
    The graph stays float (dequantised values), flat (sub-graphs inlined) and type-checkable.

    Args:
        graph: the float NIR graph.
        weight_bits: weight precision (None: unchanged).
        state_bits: state precision (None: unchanged).

    Returns:
        ``(graph_q, report)`` with the relative weight error per connection.
    """
    fg = flatten_graph(graph)
    report = QuantReport(scheme=f"nbit(w={weight_bits}, s={state_bits})")
    nodes: dict[str, nir.NIRNode] = {}
    for name, node in fg.nodes.items():
        new = copy.copy(node)
        if isinstance(node, CONNECTION_TYPES) and not isinstance(node, nir.Scale) and weight_bits:
            w = np.asarray(node.weight, dtype=np.float64)
            ref = float(np.max(np.abs(w))) if w.size else 0.0
            if weight_bits == 1:
                a = float(np.mean(np.abs(w[w != 0]))) if np.any(w != 0) else 0.0
                wq = np.sign(w) * a
            else:
                wq = _grid(w, weight_bits, ref)
            new.weight = wq
            if hasattr(node, "bias") and not isinstance(node, nir.Linear):
                # A bias is a per-neuron offset on these chips (py-spinnaker2 ``i_offset``, TrueNorth's
                # leak), i.e. neuron-state precision over its own range -- not the weight grid, which
                # would clip BN-folded biases (often several times max|W|) to max|W|.
                b = np.asarray(node.bias, dtype=np.float64)
                new.bias = _grid(b, state_bits, float(np.max(np.abs(b)))) if (state_bits and b.size) else b.copy()
            nrm = float(np.linalg.norm(w))
            report.layers.append(LayerError(name, "connection",
                                            rel_weight_error=float(np.linalg.norm(wq - w) / nrm) if nrm else 0.0))
        elif isinstance(node, NEURON_TYPES) and state_bits:
            thr_attr = "threshold" if isinstance(node, nir.Threshold) else "v_threshold"
            th = np.asarray(getattr(node, thr_attr), dtype=np.float64)
            ref = float(np.max(np.abs(th))) * 8 if th.size else 0.0
            thq = _grid(th, state_bits, ref)
            setattr(new, thr_attr, thq)
            if hasattr(node, "v_leak"):
                new.v_leak = _grid(node.v_leak, state_bits, ref)
            report.layers.append(LayerError(name, "neuron", rel_vth_error=float(
                np.max(np.abs(thq - th) / np.where(th == 0, 1, np.abs(th))))))
        nodes[name] = new
    meta = dict(fg.metadata)
    meta["arithmetic"] = f"nbit_w{weight_bits}_s{state_bits}"
    out = nir.NIRGraph(nodes=nodes, edges=list(fg.edges), metadata=meta, type_check=False)
    return out, report
