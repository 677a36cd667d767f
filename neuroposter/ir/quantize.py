"""Quantisation of NIR graphs: the shared error and report types, and generic n-bit fake quantisation.

* :func:`quantize_nbit` fake-quantises a graph to a chip's weight / state precision (the simulated chips,
  ``weight_bits`` / ``state_bits`` of their hardware profiles): the result is still a float graph (weights
  on an n-bit grid), run by the reference simulator in float arithmetic.
* :class:`QuantReport` / :class:`LayerError`: the per-layer error report every quantiser returns;
  :class:`QuantizationError` names a node a quantiser cannot express.
* :func:`graded_input_contract` / :func:`apply_input_quantization`: a graph's **input contract** for an analog
  (direct-encoded) input that a run was trained to see quantised (the pixel SDT fine-tuned for Loihi 2 sees its
  image as 8-bit graded spikes). NIR has no quantiser node, so the contract travels in
  ``graph.metadata["input_quantization"]`` (:data:`INPUT_QUANTIZATION`) and every reader applies it to the input
  before the graph: ``x_graph = clip(rint(x * scale), -qmax, qmax) / scale``
  (:func:`neuroposter.ir.lower.to_graph_input` does).

Loihi 2 fixed point (the integer graph Lava runs) is a target's arithmetic and lives with the target:
:mod:`neuroposter.targets.loihi.fixed_point`.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass, field
from typing import Any

import nir
import numpy as np

from neuroposter.errors import NeuroposterError
from neuroposter.ir.graph import Graph, GraphError, flatten

__all__ = ["QuantizationError", "LayerError", "QuantReport", "quantize_nbit", "flat_for_quantisation", "pow2_exponent",
           "grid", "INPUT_QUANTIZATION", "graded_input_contract", "apply_input_quantization"]

#: the graph metadata key of an input contract (:func:`graded_input_contract`)
INPUT_QUANTIZATION = "input_quantization"
_GRADED_RULE = "x_graph = clip(rint(x * scale), -qmax, qmax) / scale"

log = logging.getLogger(__name__)


class QuantizationError(NeuroposterError):
    """A graph (node) that cannot be expressed in the requested fixed point; names the node."""

    def __init__(self, node: str, node_type: str, reason: str) -> None:
        super().__init__(f"cannot quantise node {node!r} ({node_type}): {reason}")
        self.node, self.node_type, self.reason = node, node_type, reason


# ---------------------------------------------------------------------------------------------
# weights
# ---------------------------------------------------------------------------------------------


def flat_for_quantisation(graph: nir.NIRGraph | Graph) -> Graph:
    """The flattened graph, graph errors as :class:`QuantizationError` naming the node."""
    if isinstance(graph, Graph):
        return graph
    try:
        return flatten(graph)
    except GraphError as exc:
        raise QuantizationError(exc.node or "<graph>", exc.node_type or "?", exc.reason) from None


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
# generic n-bit (simulated chips)
# ---------------------------------------------------------------------------------------------


def pow2_exponent(amax: float, qmax: int) -> int:
    """The smallest ``e`` with ``amax / 2**e <= qmax``: the shared exponent of a mantissa-times-power-of-two
    weight format (Loihi 2's ``weight_exp``); guarded against float rounding of ``log2`` at exact powers of two.

    Args:
        amax: the largest magnitude to represent (> 0, finite).
        qmax: the largest mantissa magnitude (``2**(bits-1) - 1``).
    """
    exp = math.ceil(math.log2(amax / qmax))
    while amax / 2.0 ** (exp - 1) <= qmax:
        exp -= 1
    while amax / 2.0 ** exp > qmax:
        exp += 1
    return int(exp)


def grid(x: np.ndarray, bits: int, ref: float) -> np.ndarray:
    """``x`` on the symmetric grid of ``2**(bits-1) - 1`` levels over ``[-ref, ref]`` (clipped; float64).

    The weight and state grid of the simulated chips (:func:`quantize_nbit`); ``ref <= 0`` leaves ``x``.

    Raises:
        ValueError: ``bits < 2`` (no level besides 0; 1-bit weights are sign x magnitude, :func:`quantize_nbit`).
    """
    if bits < 2:
        raise ValueError(f"a symmetric grid needs bits >= 2, got {bits} (1-bit weights: sign x mean magnitude)")
    qmax = (1 << (bits - 1)) - 1
    if ref <= 0:
        return np.asarray(x, dtype=np.float64)
    step = ref / qmax
    return np.clip(np.rint(np.asarray(x, dtype=np.float64) / step), -qmax, qmax) * step


def _state_ref(threshold: float, state_bits: int) -> float:
    """The range of the ``state_bits`` neuron-state grid for a population of threshold ``threshold``: at least 8x
    the threshold, with the threshold itself a level (``2**k`` steps of ``threshold / 2**k``, exact in binary
    floating point), so that quantising the states never moves the threshold."""
    if threshold <= 0 or state_bits < 2:
        return threshold * 8
    qmax = (1 << (state_bits - 1)) - 1
    k = max(0, int(math.floor(math.log2(qmax / 8))))
    return threshold / 2.0 ** k * qmax


def quantize_nbit(graph: nir.NIRGraph | Graph, *, weight_bits: int | None, state_bits: int | None = None
                  ) -> tuple[nir.NIRGraph, QuantReport]:
    """Fake-quantises a graph to ``weight_bits`` weights and ``state_bits`` neuron parameters.

    Weights of every connection get a symmetric per-tensor grid of ``2**(weight_bits-1) - 1`` levels
    over ``max|W|``; connection biases are neuron offsets and get the ``state_bits`` grid over their own
    range (left float when ``state_bits`` is None); with ``state_bits`` every neuron's threshold
    and leak are put on the grid of ``2**(state_bits-1) - 1`` levels of ``threshold / 2**k`` (``2**k`` the largest
    power of two with ``8 * 2**k <= 2**(state_bits-1) - 1``: membranes up to at least 8x threshold representable,
    the threshold itself a level). ``weight_bits=1`` is binary ``{-a, +a}`` weights
    with one magnitude ``a = mean|W|`` (over the non-zero weights) per connection (TrueNorth-like sign + shared
    weight; an exactly zero weight stays 0: no synapse). Nodes with ``metadata["placement"] == "host"`` (a fitted
    model's host projection) run on the host CPU and are left in float.
    The graph stays float (dequantised values), flat (sub-graphs inlined) and type-checkable.

    Args:
        graph: the float NIR graph, or its :func:`~neuroposter.ir.graph.flatten`.
        weight_bits: weight precision (None: unchanged).
        state_bits: state precision (None: unchanged).

    Returns:
        ``(graph_q, report)`` with the relative weight error per connection.
    """
    fg = flat_for_quantisation(graph)
    report = QuantReport(scheme=f"nbit(w={weight_bits}, s={state_bits})")
    nodes: dict[str, nir.NIRNode] = {}
    for name, nd in fg.nodes.items():
        node = nd.nir
        new = copy.copy(node)
        if (node.metadata or {}).get("placement") == "host":
            pass                   # runs on the host CPU, in float (a fitted model's host projection)
        elif nd.type.weighted and weight_bits:
            w = np.asarray(node.weight, dtype=np.float64)
            ref = float(np.max(np.abs(w))) if w.size else 0.0
            if weight_bits == 1:
                a = float(np.mean(np.abs(w[w != 0]))) if np.any(w != 0) else 0.0
                wq = np.sign(w) * a
            else:
                wq = grid(w, weight_bits, ref)
            new.weight = wq
            if hasattr(node, "bias") and not isinstance(node, nir.Linear):
                # A bias is a per-neuron offset on these chips (py-spinnaker2 ``i_offset``, TrueNorth's
                # leak), i.e. neuron-state precision over its own range -- not the weight grid, which
                # would clip BN-folded biases (often several times max|W|) to max|W|.
                b = np.asarray(node.bias, dtype=np.float64)
                new.bias = grid(b, state_bits, float(np.max(np.abs(b)))) if (state_bits and b.size) else b.copy()
            nrm = float(np.linalg.norm(w))
            report.layers.append(LayerError(name, "connection",
                                            rel_weight_error=float(np.linalg.norm(wq - w) / nrm) if nrm else 0.0))
        elif nd.type.spiking and state_bits:
            thr_attr = "threshold" if isinstance(node, nir.Threshold) else "v_threshold"
            th = np.asarray(getattr(node, thr_attr), dtype=np.float64)
            ref = _state_ref(float(np.max(np.abs(th))) if th.size else 0.0, state_bits)
            thq = grid(th, state_bits, ref)
            setattr(new, thr_attr, thq)
            if hasattr(node, "v_leak"):
                new.v_leak = grid(node.v_leak, state_bits, ref)
            report.layers.append(LayerError(name, "neuron", rel_vth_error=float(
                np.max(np.abs(thq - th) / np.where(th == 0, 1, np.abs(th))))))
        nodes[name] = new
    meta = dict(fg.metadata)
    meta["arithmetic"] = f"nbit_w{weight_bits}_s{state_bits}"
    out = nir.NIRGraph(nodes=nodes, edges=fg.unique_edges(), metadata=meta, type_check=False)
    return out, report


def graded_input_contract(*, bits: int, scale: float, amax: float, source: str) -> dict[str, Any]:
    """The input contract of a graph whose analog input is quantised to ``bits``-bit graded values with the
    power-of-two ``scale`` (``graph.metadata["input_quantization"]``; plain JSON/NIR metadata values).

    Args:
        bits: payload bits including the sign (``qmax = 2**(bits-1) - 1``).
        scale: ``2**k``, payload units per input unit.
        amax: the input range the scale was chosen for (the largest ``|x|`` of the training split).
        source: where the format comes from (one line).

    Raises:
        ValueError: a scale that is not a positive power of two, or fewer than 2 bits.
    """
    k = math.log2(float(scale)) if float(scale) > 0 else float("nan")
    if not (math.isfinite(k) and k == int(k)):
        raise ValueError(f"the input scale must be a power of two, got {scale!r}")
    if int(bits) < 2:
        raise ValueError(f"graded input needs at least 2 bits, got {bits}")
    qmax = (1 << (int(bits) - 1)) - 1
    return {"encoding": "graded", "bits": int(bits), "scale": float(scale), "exp": int(k), "qmax": int(qmax),
            "amax": float(amax), "rule": _GRADED_RULE,
            "step": 1.0 / float(scale), "range": float(qmax) / float(scale), "source": str(source)}


def apply_input_quantization(x: np.ndarray, contract: Any) -> np.ndarray:
    """``x`` (float64) as a graph with input contract ``contract`` (:func:`graded_input_contract`; None or empty:
    no contract, ``x`` unchanged) takes it: ``clip(rint(x * scale), -qmax, qmax) / scale``, exact in float64
    (``scale`` is a power of two).

    Raises:
        ValueError: an unknown encoding, or ``x`` holds NaN or inf.
    """
    if not contract:
        return x
    enc = str(contract.get("encoding", ""))
    if enc != "graded":
        raise ValueError(f"unknown input quantisation {enc!r}; valid: graded")
    xf = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(xf)):
        raise ValueError("the input holds NaN or inf")
    scale, q = float(contract["scale"]), float(contract["qmax"])
    return np.clip(np.rint(xf * scale), -q, q) / scale
