"""Loihi 2 fixed point of NIR graphs: the integer graph that the Loihi target builds in Lava.

:func:`quantize_loihi` turns a float NIR graph into the **integer graph** that the Loihi 2 target
(:mod:`neuroposter.targets.loihi.target`) builds in Lava and that the reference simulator
(``neuroposter.ir.simulate(..., arithmetic="int")``) executes bit for bit. Every width comes from the
profile's ``fixed_point`` section and limits (``hardware_profiles/loihi2.yaml``; the numbers below are its
values): weight mantissa bits, state bits, threshold / bias mantissa and bias exponent bits, decay bits,
the activation and threshold shifts. The integer graph records the neuron's format in
``metadata["int_format"]`` (:class:`neuroposter.ir.int_neuron.IntFormat`), so the simulator runs it in the
same format.

The integer graph
=================
:func:`quantize_loihi` returns a **flat** ``nir.NIRGraph`` (sub-graphs inlined; node names are the
dotted paths ``"blocks.0.attn.and_kv"``; the sub-graph metadata, e.g. the SDSA tags, is kept in
``graph.metadata["loihi_groups"]``). Chains of dense connection nodes (``Affine``/``Linear``) without a
neuron in between are composed into one node (named after the last one), because every Lava synapse
is one connection. A pool (``SumPool2d``/``AvgPool2d``) and the connection after it are one synapse too: they are
composed first (:func:`neuroposter.targets.compose.compose_pools`: a 2x2 pool then a 3x3 ``Conv2d`` is one
6x6 ``Conv2d`` of stride 2; a 2x2 pool then a ``Flatten`` into tokens then a token-wise ``Conv1d`` is one 2x2
``Conv2d`` of stride 2 then a ``Flatten`` named ``"<conv>.flatten"``). ``Flatten`` nodes are kept (a free
reshape). Every node that computes carries ``metadata["loihi"]``:

Input node -- binary spikes need nothing. A **direct-encoded (analog) input** (``graph.metadata["encoding"] ==
"direct"``, e.g. the pixel SDT's image) travels as **graded spikes**: signed integer payloads of ``message_bits``
bits (default :data:`INPUT_BITS`, at most the profile's ``fixed_point.graded_spike_bits``)::

    x_int = clip(rint(x * 2**k), -(2**(message_bits-1) - 1), 2**(message_bits-1) - 1)

with ``2**k`` (``scale``) the largest power of two that keeps ``input_amax`` (the input range the caller gives)
in range. ``metadata["loihi"]`` = ``{"message_bits", "scale", "exp": k, "amax"}``; :func:`quantize_input` makes
the payloads, the same integers for the reference simulator and for Lava (whose synapses from the input get
``num_message_bits = message_bits``). ``2**-k`` is folded into the weights of every synapse from the input, so
``a = shift(W x_int, weight_exp)`` is the float current in the destination's integer units.

Connection node (``Affine``, ``Linear``, ``Conv1d``, ``Conv2d``) -- one Lava ``Dense``/``Sparse``
synapse. ``weight`` holds the integer values handed to Lava (``int32``, even numbers in
``[-254, 254]``: an 8-bit signed mantissa ``m`` times 2, Lava's mixed-sign convention), ``bias`` is 0
(biases move to the neurons). ``metadata["loihi"]``: ``weight_exp`` (int, Lava's exponent),
``num_weight_bits`` (8), ``scale`` (integer current units per float current unit of the target),
``mantissa_exp`` (``e``: the float weight is ``m * 2**e / scale``), ``rel_error``.

Neuron node (``LIF``, ``IF``, ``Threshold``, ``CubaLIF``) -- one Lava ``LIF`` population; the float
parameters are kept, ``metadata["loihi"]`` holds ``du``, ``dv`` (12-bit), ``vth`` (17-bit mantissa),
``bias_mant`` (int array of the neuron shape, 13-bit signed), ``bias_exp`` (int, 0..7), ``scale``
(``s``: integer threshold units per float unit), ``bias_rounding`` (int array: ``bias_mant << bias_exp`` minus
the rounded float bias ``rint(b s 2**6)``, i.e. what the mantissa split and clipping changed; quantisation-aware
training adds it to emulate the deployed bias, :mod:`neuroposter.ir.qat`). Every edge arriving **directly** from another
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
    u, v, z       = the integer LIF of neuroposter.ir.int_neuron (decays of 12 bits, a[t] << 6 into u,
                    24-bit states, strict threshold vth << 6, hard reset)
    readout[t]    = (a[t] + bias_out) / scale_out                        # Output node, host side

:func:`shift` and :func:`neuroposter.ir.int_neuron.int_lif_step` implement these equations; the reference
simulator and the builder's emulator both use them (one implementation).

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
from dataclasses import dataclass
from typing import Any, Mapping

import nir
import numpy as np

from neuroposter.ir.graph import Graph, GraphError, Projection
from neuroposter.ir.int_neuron import IntFormat
from neuroposter.ir.nodes import classes
from neuroposter.ir.quantize import LayerError, QuantizationError, QuantReport, flat_for_quantisation, pow2_exponent
from neuroposter.targets.compose import POOLS, compose_pools

__all__ = ["QuantizationError", "QuantizedWeights", "quantize_weights", "LOIHI_NEURONS", "quantize_loihi", "shift",
           "loihi_params", "int_format", "INPUT_BITS", "graded_input", "quantize_input", "input_error",
           "supported_types"]

log = logging.getLogger(__name__)

#: Neurons a Loihi LIF population hosts: the spiking ones (LIF, CubaLIF, IF, Threshold).
LOIHI_NEURONS: tuple[type[nir.NIRNode], ...] = classes(role="neuron", spiking=True)
#: Connections a Loihi synapse realises.
_LOIHI_CONNECTIONS: tuple[type[nir.NIRNode], ...] = classes("Affine", "Linear", "Conv1d", "Conv2d", "Scale")

VTH_TARGET_BITS = 10           # significant bits the quantiser aims at for each threshold (a choice, not a chip fact)
TINY = 1e-30                   # weights below this magnitude quantise to 0
NETX_BIAS_EXP = 6              # lava-dl netx stores every bias with this exponent (a netx file convention)
INPUT_BITS = 8                 # payload bits of an analog input's graded spikes (a choice; the profile bounds it)


def _fixed_point(profile_or_fp: Any) -> Any:
    """The :class:`~neuroposter.profiling.profiles.FixedPoint` of a profile (or the object itself)."""
    fp = getattr(profile_or_fp, "fixed_point", profile_or_fp)
    if fp is None or not hasattr(fp, "mant_max"):
        name = getattr(profile_or_fp, "name", profile_or_fp)
        raise QuantizationError("<graph>", "NIRGraph", f"profile {name!r} has no fixed_point section; the Loihi "
                                "fixed point needs its integer formats (hardware_profiles/loihi2.yaml)")
    return fp


def int_format(profile_or_fp: Any) -> IntFormat:
    """The integer neuron format of a profile (what the integer graph records in ``metadata["int_format"]``)."""
    return IntFormat.of_profile(_fixed_point(profile_or_fp))


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
    exp = pow2_exponent(amax, qmax)
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



def shift(x: np.ndarray, e: int) -> np.ndarray:
    """Lava's synaptic exponent: ``x << e`` for ``e > 0``, else the flooring ``x >> -e``."""
    x = np.asarray(x, dtype=np.int64)
    return np.left_shift(x, e) if e > 0 else np.right_shift(x, -e)



def loihi_params(node: nir.NIRNode) -> dict[str, Any]:
    """The ``metadata["loihi"]`` of a node of an integer graph (empty dict when absent)."""
    return dict(node.metadata.get("loihi", {})) if isinstance(node.metadata, Mapping) else {}



# ---------------------------------------------------------------------------------------------
# the graph
# ---------------------------------------------------------------------------------------------


def _projections(fg: Graph) -> list[Projection]:
    try:
        return fg.projections()
    except GraphError as exc:
        raise QuantizationError(exc.node or "<graph>", exc.node_type or "?", exc.reason) from None


def supported_types() -> str:
    """The NIR node types the Loihi fixed point takes, as one line for error messages."""
    names = lambda ts: ", ".join(t.__name__ for t in ts)  # noqa: E731
    return (f"neurons {names(LOIHI_NEURONS)}; synapses {names(_LOIHI_CONNECTIONS)}; pools {names(POOLS)} "
            "composed into the next synapse; Flatten; Input, Output")


def _check_loihi_types(fg: Graph) -> None:
    """Every node must be an Input/Output, a Flatten, a Loihi synapse or a Loihi neuron (pools are composed)."""
    for name, nd in fg.nodes.items():
        node = nd.nir
        if nd.role == "neuron" and not isinstance(node, LOIHI_NEURONS):
            raise QuantizationError(name, nd.type.name, "not a neuron type the Loihi LIF can host "
                                    f"(supported: {supported_types()})")
        if not (nd.role in ("input", "output", "reshape", "neuron") or isinstance(node, _LOIHI_CONNECTIONS)):
            raise QuantizationError(name, nd.type.name, f"node type is not supported (supported: {supported_types()})")


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


def _neuron_map(name: str, node: nir.NIRNode, dt: float, fp: Any) -> _NeuronMap:
    t = type(node).__name__
    one, dmax = fp.decay_unity, fp.decay_max
    shape = _out_shape(node)

    def reset_zero() -> None:
        vr = getattr(node, "v_reset", None)
        if vr is not None and np.any(np.asarray(vr) != 0):
            raise QuantizationError(name, t, "non-zero v_reset has no Loihi LIF equivalent (resets to 0)")

    if isinstance(node, nir.Threshold):
        vth = _scalar(node.threshold, name, "threshold", t)
        return _NeuronMap(dmax, dmax, 1.0, vth, np.zeros(shape), 1.0)
    if isinstance(node, nir.LIF):
        reset_zero()
        tau = _scalar(node.tau, name, "tau", t)
        r = _scalar(node.r, name, "r", t)
        k = dt / tau
        vth = _scalar(node.v_threshold, name, "v_threshold", t)
        leak = np.broadcast_to(np.asarray(node.v_leak, dtype=np.float64), shape) * k
        # tau = dt (full decay) is dv = 2**decay_bits, which the decay cannot hold: the largest decay leaves a
        # v >> decay_bits residual
        return _NeuronMap(dmax, min(dmax, int(round(one * k))), r * k, vth, np.array(leak), r * k)
    if isinstance(node, nir.IF):
        reset_zero()
        r = _scalar(node.r, name, "r", t)
        vth = _scalar(node.v_threshold, name, "v_threshold", t)
        return _NeuronMap(dmax, 0, r * dt, vth, np.zeros(shape), r * dt)
    if isinstance(node, nir.CubaLIF):
        reset_zero()
        ts = _scalar(node.tau_syn, name, "tau_syn", t)
        tm = _scalar(node.tau_mem, name, "tau_mem", t)
        r = _scalar(node.r, name, "r", t)
        w_in = _scalar(node.w_in, name, "w_in", t)
        vth = _scalar(node.v_threshold, name, "v_threshold", t)
        leak = np.broadcast_to(np.asarray(node.v_leak, dtype=np.float64), shape) * (dt / tm)
        g = w_in * r * (dt / ts) * (dt / tm)
        return _NeuronMap(min(dmax, max(0, int(round(one * dt / ts)) - 1)), min(dmax, int(round(one * dt / tm))), g, vth,
                          np.array(leak), r * w_in * (dt / tm))
    raise QuantizationError(name, t, "not a neuron type the Loihi LIF can host")


# ---------------------------------------------------------------------------------------------
# Loihi 2 quantisation
# ---------------------------------------------------------------------------------------------


def _compose(fg: Graph, proj: Projection) -> tuple[np.ndarray | None, np.ndarray | None, nir.NIRNode | None]:
    """Dense (W, b) of a projection whose path holds several dense connections; else (None, None, conn)."""
    conns = [fg.nodes[x].nir for x in proj.path if fg.nodes[x].role == "conn"]
    if len(conns) <= 1:
        return None, None, (conns[0] if conns else None)
    for name in proj.path:
        n = fg.nodes[name].nir
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


# ---------------------------------------------------------------------------------------------
# analog inputs: graded spikes
# ---------------------------------------------------------------------------------------------


def _graded_inputs(fg: Graph, fp: Any, bits: int | None, amax: float | None) -> dict[str, dict[str, Any]]:
    """``{input: metadata["loihi"]}`` of the direct-encoded inputs (none for a spiking graph)."""
    if str((fg.metadata or {}).get("encoding", "")) != "direct":
        return {}
    out: dict[str, dict[str, Any]] = {}
    for name in fg.inputs:
        t = fg.nodes[name].type.name
        limit = getattr(fp, "graded_spike_bits", None)
        if limit is None:
            raise QuantizationError(name, t, "a direct-encoded (analog) input needs graded spikes; the profile gives "
                                    "no fixed_point.graded_spike_bits")
        b = INPUT_BITS if bits is None else int(bits)
        if not 2 <= b <= int(limit):
            raise QuantizationError(name, t, f"input payload of {b} bits; graded spikes carry 2 to {limit} bits")
        if amax is None or not math.isfinite(float(amax)) or float(amax) <= 0:
            raise QuantizationError(name, t, "a direct-encoded (analog) input needs its range (input_amax > 0) to "
                                    f"choose its scale; got {amax!r}")
        qmax = (1 << (b - 1)) - 1
        k = math.floor(math.log2(qmax / float(amax)))
        out[name] = {"message_bits": b, "scale": float(2.0 ** k), "exp": int(k), "amax": float(amax)}
    return out


def graded_input(graph_int: nir.NIRGraph | Graph) -> dict[str, Any] | None:
    """The graded-spike format (``metadata["loihi"]`` of the Input) of an integer graph's analog input, or None
    when its input is spikes."""
    nodes = graph_int.nodes
    for node in nodes.values():
        x = getattr(node, "nir", node)
        if isinstance(x, nir.Input):
            lp = loihi_params(x)
            return lp if "message_bits" in lp else None
    return None


def quantize_input(x: np.ndarray, graph_int: nir.NIRGraph | Graph) -> np.ndarray:
    """The integer graph's input of ``x``: the graded-spike payloads ``clip(rint(x 2**k), -q, q)`` (``int32``,
    ``q = 2**(message_bits-1) - 1``) for an analog input, ``x`` unchanged for spikes.

    Raises:
        ValueError: ``x`` holds NaN or inf.
    """
    g = graded_input(graph_int)
    if g is None:
        return x
    xf = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(xf)):
        raise ValueError("the input holds NaN or inf")
    q = (1 << (int(g["message_bits"]) - 1)) - 1
    return np.clip(np.rint(xf * float(g["scale"])), -q, q).astype(np.int32)


def input_error(x: np.ndarray, graph_int: nir.NIRGraph | Graph) -> dict[str, Any] | None:
    """The float -> int error of an analog input on ``x`` (None for spikes): bits, scale, the largest and the
    RMS error in input units, the relative RMS error, and the fraction of values clipped."""
    g = graded_input(graph_int)
    if g is None:
        return None
    xf = np.asarray(x, dtype=np.float64)
    xq = quantize_input(xf, graph_int).astype(np.float64) / float(g["scale"])
    err = xq - xf
    q = (1 << (int(g["message_bits"]) - 1)) - 1
    rms_x = float(np.sqrt(np.mean(xf ** 2))) if xf.size else 0.0
    rms = float(np.sqrt(np.mean(err ** 2))) if xf.size else 0.0
    return {"encoding": "graded spikes", "message_bits": int(g["message_bits"]), "scale": float(g["scale"]),
            "step": 1.0 / float(g["scale"]), "amax": float(g["amax"]),
            "max_abs_error": float(np.max(np.abs(err))) if xf.size else 0.0, "rms_error": rms,
            "rel_rms_error": rms / rms_x if rms_x > 0 else 0.0,
            "clipped_frac": float(np.mean(np.abs(np.rint(xf * float(g["scale"]))) > q)) if xf.size else 0.0}


def _weight_int(qw: QuantizedWeights) -> tuple[np.ndarray, int]:
    """Lava values (``2 m``, int32) and Lava ``weight_exp`` (``e - 1``) of a quantised tensor."""
    return (qw.mantissa.astype(np.int32) * 2), qw.exp - 1


def quantize_loihi(graph: nir.NIRGraph | Graph, profile: Any, *, vth_bits: int = VTH_TARGET_BITS,
                   netx: bool = False, input_bits: int | None = None,
                   input_amax: float | None = None) -> tuple[nir.NIRGraph, QuantReport]:
    """The Loihi 2 integer graph of a float NIR graph (see the module docstring for its meaning).

    Args:
        graph: a float NIR graph (nested or flat), or its :func:`~neuroposter.ir.graph.flatten`.
        vth_bits: target significant bits of each population's threshold (``vth * s`` in
            ``[2**(vth_bits-1), 2**vth_bits)``).
        netx: lava-dl netx conventions: every connection gets ``weight_exp = 0`` (netx stores the
            effective integer weights, ``|w| <= 254``; each population's ``s`` is the power of two that
            puts its largest incoming weight in ``(127, 254]``) and every bias ``bias_exp = 6``
            (netx's fixed bias exponent).
        input_bits: payload bits of a direct-encoded input's graded spikes (default :data:`INPUT_BITS`; at most
            the profile's ``graded_spike_bits``); ignored for spiking inputs.
        input_amax: the largest ``|x|`` a direct-encoded input takes (its range; required for such an input):
            the input scale is the largest power of two that maps it inside the payload.

    Returns:
        ``(graph_int, report)``.

    Raises:
        QuantizationError: a node the Loihi LIF / synapses cannot express (names it).
    """
    fp = _fixed_point(profile)
    act = float(1 << fp.act_shift_bits)      # the synaptic input enters u shifted left by this
    fg = compose_pools(flat_for_quantisation(graph))
    _check_loihi_types(fg)
    graded = _graded_inputs(fg, fp, input_bits, input_amax)

    def in_scale(src: str) -> float:
        return float(graded[src]["scale"]) if src in graded else 1.0

    def in_amax(src: str) -> float:
        return float(graded[src]["amax"]) if src in graded else 1.0
    dt = fg.dt
    projs = _projections(fg)
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
            key = [x for x in p.path if fg.nodes[x].role == "conn"][-1]
            composed[key] = (w, b)

    def drive(p: Projection) -> float:
        if p.conn is None:
            return in_amax(p.src)
        if p.conn in composed:
            return float(np.abs(composed[p.conn][0]).sum(axis=1).max()) * in_amax(p.src)
        return _abs_rowsum(fg.nodes[p.conn].nir) * in_amax(p.src)

    def _peak(p: Projection) -> float:
        if p.conn is None:
            return 1.0
        if p.conn in composed:
            return float(np.abs(composed[p.conn][0]).max())
        return float(np.abs(_w(fg.nodes[p.conn].nir)).max())

    for name, nd in fg.nodes.items():
        node = nd.nir
        if isinstance(node, LOIHI_NEURONS):
            nm = _neuron_map(name, node, dt, fp)
            nmaps[name] = nm
            if nm.vth > 0:
                k = (vth_bits - 1) - math.floor(math.log2(nm.vth))
            else:
                peak = max([drive(p) * nm.gain for p in by_dst.get(name, [])] + [1e-12])
                k = 8 - math.floor(math.log2(peak))
            worst = sum(drive(p) * nm.gain for p in by_dst.get(name, [])) + float(np.max(np.abs(nm.bias), initial=0))
            # keep the worst-case membrane inside the state: worst * s * act * (1 / (dv / unity)) <= state_max
            leak = max(nm.dv, 1) / float(fp.decay_unity) if nm.dv else 1.0 / 64.0
            while k > -20 and worst * (2.0 ** k) * act / leak >= fp.state_max and round(nm.vth * 2.0 ** (k - 1)) >= 64:
                k -= 1
            if netx:
                peak = max([_peak(p) * nm.gain for p in by_dst.get(name, [])] + [1e-12])
                k = math.floor(math.log2(2.0 * fp.mant_max / peak))
                while peak * 2.0 ** k <= fp.mant_max:
                    k += 1
                while peak * 2.0 ** k > 2 * fp.mant_max:
                    k -= 1
            while nm.vth * 2.0 ** k > fp.vth_max:
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
                    peak = max(peak, float(np.abs(_w(fg.nodes[p.conn].nir)).max()))
            k = 8 - math.floor(math.log2(peak)) if peak > 0 else 0
            scales[name] = 2.0 ** k

    def gain_scale(dst: str) -> float:
        n = fg.nodes[dst].nir
        return (nmaps[dst].gain if isinstance(n, LOIHI_NEURONS) else 1.0) * scales[dst]

    new_nodes: dict[str, nir.NIRNode] = {}
    conn_scale: dict[str, float] = {}
    bias_float: dict[str, np.ndarray] = {}  # float bias current per destination unit (input units)
    dropped: set[str] = set()
    seen: set[tuple[str, str]] = set()
    conn_bias: dict[str, np.ndarray] = {}
    for p in projs:
        if p.conn is None:
            continue
        gs = gain_scale(p.dst) / in_scale(p.src)     # an analog input's scale is folded into its synapses
        if p.conn in conn_scale:
            if not math.isclose(conn_scale[p.conn], gs, rel_tol=1e-12):
                raise QuantizationError(p.conn, type(fg.nodes[p.conn].nir).__name__,
                                        "feeds neuron populations with different fixed-point scales "
                                        f"({conn_scale[p.conn]:g} vs {gs:g}); give them equal tau and threshold")
        else:
            conn_scale[p.conn] = gs
            node = fg.nodes[p.conn].nir
            if p.conn in composed:
                w, b = composed[p.conn]
                for x in p.path:
                    if fg.nodes[x].role == "conn" and x != p.conn:
                        dropped.add(x)
                qw = quantize_weights(w * gs, bits=fp.weight_bits)
                wi, we = _weight_int(qw)
                in_shape = _in_shape(fg.nodes[[x for x in p.path if fg.nodes[x].role == "conn"][0]].nir)
                new = nir.Affine(weight=wi, bias=np.zeros(wi.shape[0], dtype=np.int32))
                ref_w = w
                bias_cur = b.reshape(_out_shape(node))
                new.metadata = {"composed_from": ",".join(x for x in p.path if fg.nodes[x].role == "conn"),
                                "input_size": int(np.prod(in_shape))}
            else:
                ref_w = _w(node)
                qw = quantize_weights(ref_w * gs, bits=fp.weight_bits)
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
            new.metadata["loihi"] = {"weight_exp": int(we), "num_weight_bits": fp.weight_bits, "scale": float(gs),
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
            dst_shape = _out_shape(fg.nodes[p.dst].nir) if not isinstance(fg.nodes[p.dst].nir, nir.Output) else _in_shape(fg.nodes[p.dst].nir)
            cb = cb.reshape(dst_shape) if cb.size == int(np.prod(dst_shape)) else np.broadcast_to(cb, dst_shape)
            bias_float[p.dst] = bias_float.get(p.dst, np.zeros(dst_shape)) + cb

    # neurons and outputs
    identity: dict[tuple[str, tuple[str, ...], str], str] = {}
    for name, nd in fg.nodes.items():
        node = nd.nir
        if isinstance(node, LOIHI_NEURONS):
            nm, s = nmaps[name], scales[name]
            shape = _out_shape(node)
            b = nm.bias + nm.bias_gain * bias_float.get(name, np.zeros(shape))
            b_fx = np.rint(b * s * act).astype(np.int64)
            if netx:
                bexp = NETX_BIAS_EXP
                bmant = np.clip(np.rint(b_fx / float(1 << NETX_BIAS_EXP)), -fp.bias_mant_max - 1,
                                fp.bias_mant_max).astype(np.int64)
            else:
                bmant, bexp = _split_mant_exp(b_fx, fp.bias_mant_max, fp.bias_exp_max)
            if np.any(np.abs(b_fx) > (fp.bias_mant_max << fp.bias_exp_max)):
                report.warnings.append(f"{name}: bias clipped to {fp.bias_mant_bits}-bit mantissa << {fp.bias_exp_max}")
            vth_fx = int(round(nm.vth * s))
            if vth_fx > fp.vth_max or vth_fx < 0:
                raise QuantizationError(name, type(node).__name__, f"threshold {nm.vth} does not fit {fp.threshold_mant_bits} bits")
            direct = [p for p in by_dst.get(name, []) if p.conn is None]
            if direct:
                # every neuron -> neuron edge becomes an explicit identity synapse (a Scale node)
                for i, p in enumerate(direct):
                    qd = quantize_weights(np.array([nm.gain * s / in_scale(p.src)]), bits=fp.weight_bits)
                    dw, de = _weight_int(qd)
                    sname = f"{name}.identity{i}"
                    sc = nir.Scale(scale=np.full(shape, int(dw[0]), dtype=np.int32))
                    sc.metadata = {"loihi": {"weight_exp": int(de), "num_weight_bits": fp.weight_bits,
                                             "scale": float(nm.gain * s / in_scale(p.src)),
                                             "mantissa_exp": int(qd.exp), "rel_error": 0.0}, "identity_of": p.src}
                    new_nodes[sname] = sc
                    identity[(p.src, p.path, name)] = sname
            dmeta: dict[str, int] = {}
            new = copy.copy(node)
            new.metadata = dict(node.metadata or {})
            new.metadata["loihi"] = {"du": nm.du, "dv": nm.dv, "vth": vth_fx,
                                     "bias_mant": bmant.reshape(shape).astype(np.int32),
                                     "bias_exp": int(bexp), "scale": float(s),
                                     # deployed bias minus the rounded float bias (mantissa split, clipping):
                                     # what quantisation-aware training adds to emulate it (neuroposter.ir.qat)
                                     "bias_rounding": (bmant.astype(np.int64) * (1 << int(bexp))
                                                       - b_fx).reshape(shape).astype(np.int32), **dmeta}
            new_nodes[name] = new
            bq = (bmant.astype(np.float64) * 2.0 ** bexp) / (s * act)
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
        elif name in graded:
            new = copy.copy(node)
            new.metadata = {**dict(node.metadata or {}), "loihi": dict(graded[name])}
            new_nodes[name] = new
        elif nd.role in ("input", "reshape"):
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
    meta["int_format"] = int_format(fp).to_dict()
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


