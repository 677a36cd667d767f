"""Reference discrete-time simulator for NIR graphs: the ground truth every target is compared to.

One call runs a (nested) NIR graph over ``T`` steps on a batch of inputs ``x [T, B, *input_shape]``
(vectorised over the batch, torch kernels on CPU). Node semantics (forward Euler with the graph's
``dt``, ``metadata["dt"]``, default 1; ``I`` is the summed input of the node's incoming edges):

.. math::
    \\text{Affine: } y = W I + b \\qquad \\text{Linear: } y = W I \\qquad \\text{Scale: } y = s \\odot I

    \\text{LIF: } v \\leftarrow v + \\tfrac{dt}{\\tau}\\big((R I + v_{leak}) - v\\big),\\;
    z = [v > v_{th}],\\; v \\leftarrow v_{reset} \\text{ where } z

    \\text{CubaLIF: } i \\leftarrow i + \\tfrac{dt}{\\tau_{syn}}(w_{in} I - i),\\;
    v \\leftarrow v + \\tfrac{dt}{\\tau_{mem}}\\big((R i + v_{leak}) - v\\big),\\; z, \\text{reset as LIF}

    \\text{IF: } v \\leftarrow v + dt\\,R I,\\; z, \\text{reset} \\qquad
    \\text{LI: as LIF without } z \\qquad \\text{I: } v \\leftarrow v + dt\\,R I

    \\text{Threshold: } z = [I > \\theta] \\qquad \\text{Delay: } y_t = I_{t - \\mathrm{round}(d/dt)}

A spiking node whose metadata says ``reset: subtract`` (Xylo's neuron, :mod:`neuroposter.models.xylo_neuron`;
float arithmetic only) fires ``n = clamp(floor(v / v_th), 0, max_spikes)`` spikes per step (``max_spikes`` from
its metadata; its output is a spike count) and subtracts ``n v_th`` from the membrane instead of resetting it.

Conv1d/Conv2d/SumPool2d/AvgPool2d/Flatten follow PyTorch semantics (NIR has no batch dim; the
simulator adds it in front). The input of step ``t`` reaches a neuron's membrane in step ``t``
(Norse ``LIFBoxCell`` order: integrate, then threshold the new membrane, then reset), so with
``dt = 1``, ``tau = 2``, ``r = 1``, ``v_leak = 0`` the LIF is exactly the project's
``v <- v + (x - v)/2``.

Modes:

* ``same_step``: every edge and connection is instantaneous; nodes are evaluated in topological
  order each step, as the Norse model computes them. Latency 0.
* ``per_hop``: as Lava/Loihi 2 execute: every connection node (synapse) adds one step, neurons add
  none, and an edge from a neuron (or the Input) straight into a neuron is an implicit identity synapse (one step);
  see :mod:`neuroposter.ir.timing`. Per-edge ``delays`` (from :func:`~neuroposter.ir.retime`) are
  added. Every node is held at rest (state at its initial value, output 0, biases silent) until
  the first step at which data from input step 0 reaches it (``SimResult.start``), i.e. a
  pipelined start; with the re-timing delays, the output then equals the ``same_step`` output
  shifted by the latency ``L`` and every node's record equals its ``same_step`` record shifted by
  its start step. The run lasts ``T + L`` steps (the input is zero after step ``T - 1``).

Arithmetic:

* ``float``: float64 by default (``dtype="float32"`` available).
* ``int``: a chip's fixed point (Loihi 2's, as the Loihi target quantises). Connection weights/biases
  must be integer-valued; ``y = (W I) << e`` (arithmetic ``>>`` for ``e < 0``,
  ``e = metadata["loihi"]["weight_exp"]``, default 0) ``+ b``. Neurons (LIF, CubaLIF, IF, LI, I, and
  Threshold when it carries ``metadata["loihi"]``) run the integer LIF of
  :mod:`neuroposter.ir.int_neuron` (Lava's ``PyLifModelBitAcc``) in the format of the graph's
  ``metadata["int_format"]`` (recorded by the quantiser from the chip's profile) or ``int_format=``.
  The integer parameters come from ``node.metadata["loihi"]`` (keys ``du``, ``dv``, ``vth``, ``bias``
  (effective, i.e. ``bias_mant << bias_exp``; or ``bias_mant`` + ``bias_exp``)); without it they are
  derived from the float parameters: ``du`` the largest decay, ``dv = round(2**decay_bits dt/tau)`` (LIF,
  LI; 0 for IF, I; CubaLIF ``du = round(2**decay_bits dt/tau_syn) - 1``), ``vth = round(v_threshold)``,
  ``bias = round(v_leak * 2**act_shift)``. A Threshold without ``loihi`` metadata is the exact
  integer comparison ``[I > threshold]``.

Output: the summed input of the ``Output`` node; in ``int`` arithmetic, when the Output carries
``metadata["loihi"] = {"scale", "bias"}`` (as ``neuroposter.targets.loihi.fixed_point.quantize_loihi`` writes),
the host-side read-out ``(a + bias) / scale`` (float).

Records (``record=True``): ``SimResult.records[path]`` holds the output of every neuron-like node
(spikes as ``uint8``; LI/I membranes as float/int), ``SimResult.inputs[path]`` the summed input
of every connection node (spike counts for op counting; ``uint8`` when they fit), both
``[T_out, B, *shape]``. Paths join sub-graph names with ``.``. A node is only run up to its last
step that can still reach the Output (never before the end of its aligned window
``[start, start + T)``); its later record steps are 0 unless ``tail=True`` runs them (in
``same_step`` without delays every node runs all ``T`` steps anyway).

Execution: the graph is a DAG (a cycle is refused), so nodes run one after the other over whole
windows of steps and samples (chunked by samples for memory); ``int`` products run in float32 or
float64 where every partial sum provably fits the mantissa, else in int64, so they are exact. In ``int``
arithmetic a matrix product (``Affine``/``Linear``, kernel-1 ``Conv1d``) whose input is spikes (``uint8`` rows) and
sparse enough (:func:`neuroposter.models.sparse.use_sparse`) is a gather-and-add of the weight rows of the active
inputs (``sparse=True``, the default): integer sums in another order, still exact, so the result is bit-identical.
In ``int`` arithmetic each integer neuron runs all its steps in one compiled call
(:mod:`neuroposter.ir.int_neuron_kernel`, numba, ``compiled=True``, the default): blocks of a sample's neurons in
parallel, each stepping its neurons row by row with the states in int64, the same integer operations in the same
order as :func:`~neuroposter.ir.int_neuron.int_lif_step` (sign-magnitude decays, the wrap of ``u``, the clamp of
``v``, the threshold ``vth << threshold_shift``, the hard reset; ``LI``/``I`` output ``v``), so the outputs are
bit-identical to stepping it in torch (``compiled=False``); after the last step with input a block of resting
neurons that provably stays silent stops (its outputs stay 0). A float input is checked (finite, integral) and
narrowed to uint8 (int64 outside 0..255) in one compiled pass too. Parameters that do not broadcast to one
sample's neurons, and an exact integer ``Threshold``, run in torch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import nir
import numpy as np
import torch
import torch.nn.functional as F

from neuroposter.errors import NeuroposterError
from neuroposter.ir.graph import Graph, GraphError, Node, executable
from neuroposter.ir.int_neuron import IntFormat, int_lif_step
from neuroposter.ir.int_neuron_kernel import INPUT_DTYPES, int_inputs, int_neuron_params, int_neuron_run
from neuroposter.ir.nodes import names
from neuroposter.ir.timing import arrival_times, delay_steps, edge_lags, topo_order
from neuroposter.models.sparse import sparse_matmul_rows, use_sparse

__all__ = ["SimResult", "SimulationError", "simulate", "MODES", "ARITHMETICS"]

log = logging.getLogger(__name__)

MODES = ("same_step", "per_hop")
ARITHMETICS = ("float", "int")


class SimulationError(NeuroposterError):
    """The simulator cannot run a node (type, parameters, arithmetic); the message names it."""


@dataclass
class SimResult:
    """What :func:`simulate` computed.

    Attributes:
        output: the Output node's input per step, ``[T_out, B, *output_shape]``.
        latency: steps between input step 0 and the output step that corresponds to it (0 in
            ``same_step`` without delays).
        records: per neuron-like node path, its output ``[T_out, B, *shape]`` (spikes as uint8).
        inputs: per connection node path, its summed input ``[T_out, B, *in_shape]``.
        start: per node path, the first step at which it receives data of input step 0.
        mode: ``"same_step"`` or ``"per_hop"``.
        arithmetic: ``"float"`` or ``"int"``.
        T: number of input steps.
    """

    output: np.ndarray
    latency: int
    records: dict[str, np.ndarray] = field(default_factory=dict)
    inputs: dict[str, np.ndarray] = field(default_factory=dict)
    start: dict[str, int] = field(default_factory=dict)
    mode: str = "same_step"
    arithmetic: str = "float"
    T: int = 0

    def aligned_output(self) -> np.ndarray:
        """The ``T`` output steps that correspond to the input steps: ``output[L:L+T]``."""
        return self.output[self.latency:self.latency + self.T]

    def aligned(self, path: str) -> np.ndarray:
        """A record (or connection input) shifted to input time: ``[T, B, *shape]``."""
        arr = self.records[path] if path in self.records else self.inputs[path]
        s = self.start[path]
        return arr[s:s + self.T]


# ---------------------------------------------------------------------------------------------
# helpers


def _arr(x: Any) -> np.ndarray:
    return np.asarray(x)


def _int1(x: Any) -> int:
    return int(np.asarray(x).reshape(-1)[0])


def _pair(x: Any) -> tuple[int, int]:
    a = np.asarray(x).reshape(-1)
    return (int(a[0]), int(a[0])) if a.size == 1 else (int(a[0]), int(a[1]))


def _padding(p: Any, nd: int) -> Any:
    if isinstance(p, (str, bytes)):
        return p.decode() if isinstance(p, bytes) else p
    a = np.asarray(p).reshape(-1)
    if a.dtype.kind in "SUO":
        return str(a[0].decode() if isinstance(a[0], bytes) else a[0])
    if nd == 1:
        return int(a[0])
    return (int(a[0]), int(a[0])) if a.size == 1 else (int(a[0]), int(a[1]))


def _integral(a: np.ndarray, what: str, unit: Node) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if not np.all(np.isfinite(a)) or not np.array_equal(a, np.round(a)):
        raise SimulationError(
            f"node {unit.path!r} ({unit.type.name}): int arithmetic needs integer {what}; "
            "quantize the graph first (e.g. neuroposter.targets.loihi.fixed_point.quantize_loihi)")
    return a


# ---------------------------------------------------------------------------------------------
# node operators: each computes a whole window of steps of one node at once


#: An integer-valued sum in this float dtype is exact while every partial sum stays below the bound.
_EXACT_BELOW: dict[torch.dtype, float] = {torch.float32: 2.0 ** 24, torch.float64: 2.0 ** 53}

#: Working-memory budget of one chunk of samples (the whole batch runs in one call, chunked by
#: samples only so that the per-node signals of a chunk stay within it).
_CHUNK_BYTES = 1024 * 2 ** 20


#: Fewest inputs per output for which the spike-sparse product is tried: below, the dense product of a few dozen
#: inputs is cheaper than compacting the spikes (measured on the demo SDT: its 64-wide hidden products ran 1.2x
#: slower sparse; its 1664-wide embed runs faster).
_SPARSE_MIN_INPUTS = 256


def _t(a: Any, dtype: torch.dtype) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(np.asarray(a, dtype=np.float64)), dtype=torch.float64).to(dtype)


class _Conn:
    """A connection node's map of a batch of rows ``[N, *in_shape] -> [N, *out_shape]`` (no state).

    In ``int`` arithmetic the weighted sum is computed exactly in the cheapest dtype that holds it:
    float32 for matrix products when every partial sum is provably below 2**24 (``max|x|`` times the
    largest ``sum |w|`` of an output), float64 below 2**53, else int64. General convolutions (kernel
    > 1: their CPU kernels may use non-exact transforms) and pools use float64 and are rounded.
    """

    def __init__(self, unit: Node, arithmetic: str, dtype: torch.dtype, sparse: bool = True) -> None:
        node = unit.nir
        self.path = unit.path
        self.sparse = sparse and arithmetic == "int"    # exact only on integers: float keeps the GEMM's round-off
        self.node = node
        self.integer = arithmetic == "int"
        self.dtype = dtype
        self.in_shape, self.out_shape = unit.in_shape, unit.out_shape
        self.heavy = isinstance(node, (nir.Affine, nir.Linear, nir.Conv1d, nir.Conv2d))
        self._cache: dict[tuple[str, torch.dtype], torch.Tensor] = {}
        self._raw: dict[str, np.ndarray] = {}
        for name in ("weight", "bias", "scale"):
            if hasattr(node, name) and getattr(node, name) is not None and not (
                    name == "bias" and isinstance(node, nir.Linear)):
                a = np.asarray(getattr(node, name), dtype=np.float64)
                self._raw[name] = _integral(a, name, unit) if self.integer else a
        self.matmul = False  # a plain matrix product (exact in float32 under the bound)
        self.wsum = 0.0      # the largest sum |w| over the inputs of one output
        if isinstance(node, (nir.Affine, nir.Linear)):
            w = np.abs(self._raw["weight"])
            self.wsum = float(w.sum(-1).max(initial=0.0))
            self.matmul = True
        elif isinstance(node, (nir.Conv1d, nir.Conv2d)):
            w = np.abs(self._raw["weight"])
            self.wsum = float(w.reshape(w.shape[0], -1).sum(1).max(initial=0.0))
            nd = 1 if isinstance(node, nir.Conv1d) else 2
            self.stride = _int1(node.stride) if nd == 1 else _pair(node.stride)
            self.dil = _int1(node.dilation) if nd == 1 else _pair(node.dilation)
            self.groups = _int1(node.groups)
            self.pad = _padding(node.padding, nd)
            ksize = int(np.prod(w.shape[2:]))
            # kernel 1, stride 1, no padding, one group: a matrix product over the channels
            self.pointwise = (nd == 1 and ksize == 1 and self.stride == 1 and self.groups == 1
                              and self.pad in (0, "valid"))
            self.matmul = self.pointwise
        elif isinstance(node, nir.Scale):
            self.wsum = float(np.abs(self._raw["scale"]).max(initial=0.0))
            self.matmul = True
        elif isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
            self.k, self.st, self.p = _pair(node.kernel_size), _pair(node.stride), _pair(node.padding)
        else:  # pragma: no cover - _make_op guarantees one of the above
            raise SimulationError(f"node {unit.path!r} ({type(node).__name__}) is not a connection")
        meta = node.metadata.get("loihi", {}) if isinstance(node.metadata, dict) else {}
        self.wexp = int(np.asarray(meta.get("weight_exp", 0)).reshape(-1)[0]) if self.integer else 0

    def param(self, name: str, dtype: torch.dtype) -> torch.Tensor:
        """A parameter as a tensor of ``dtype`` (cached)."""
        key = (name, dtype)
        if key not in self._cache:
            a = self._raw[name]
            if name == "weight" and getattr(self, "pointwise", False):
                a = a[:, :, 0]
            self._cache[key] = (torch.as_tensor(a.astype(np.int64)) if dtype == torch.int64
                                else _t(a, dtype))
        return self._cache[key]

    def _compute_dtype(self, x: torch.Tensor) -> torch.dtype:
        if not self.integer:
            return self.dtype
        if not (self.matmul or isinstance(self.node, (nir.Conv1d, nir.Conv2d))):
            return torch.float64  # pools: floor division as the float64 reference does
        f32 = self.matmul and torch.get_float32_matmul_precision() == "highest"
        if x.dtype == torch.uint8 and 255 * self.wsum < _EXACT_BELOW[torch.float32 if f32 else torch.float64]:
            return torch.float32 if f32 else torch.float64  # the cheapest exact dtype for any uint8 input: no scan
        lo, hi = torch.aminmax(x) if x.numel() else (torch.tensor(0), torch.tensor(0))
        bound = max(abs(float(lo)), abs(float(hi))) * self.wsum
        if f32 and bound < _EXACT_BELOW[torch.float32]:
            return torch.float32
        if bound < _EXACT_BELOW[torch.float64]:
            return torch.float64
        return torch.int64

    def _sparse_linear(self, x: torch.Tensor, cdt: torch.dtype) -> torch.Tensor | None:
        """The weighted sum (no bias) in ``cdt`` by gather-and-add over the spikes of ``x`` (uint8), or None where
        that does not apply (not a plain matrix product, or the spikes too dense to pay)."""
        node = self.node
        pointwise = isinstance(node, nir.Conv1d) and self.pointwise
        if not (self.sparse and x.dtype == torch.uint8 and x.dim() >= 2
                and (pointwise or (isinstance(node, (nir.Affine, nir.Linear)) and self._raw["weight"].ndim == 2))):
            return None
        key = ("weight_t", cdt)
        if key not in self._cache:
            self._cache[key] = self.param("weight", cdt).t().contiguous()     # [in, out]
        wt = self._cache[key]
        if wt.shape[0] < _SPARSE_MIN_INPUTS:
            return None
        rows = x.transpose(1, 2).reshape(-1, x.shape[1]) if pointwise else x.reshape(-1, x.shape[-1])
        if not use_sparse(rows, wt):
            return None
        y = sparse_matmul_rows(rows, wt)
        if pointwise:       # rows were [N, L] positions of [N, C, L]: back to channels-first [N, O, L]
            return y.reshape(x.shape[0], x.shape[2], -1).transpose(1, 2).contiguous()
        return y.reshape(*x.shape[:-1], -1)

    def _linear(self, x: torch.Tensor, cdt: torch.dtype) -> torch.Tensor:
        """The weighted sum (no bias) in ``cdt``."""
        node = self.node
        if isinstance(node, (nir.Affine, nir.Linear)):
            W = self.param("weight", cdt)
            if W.dim() == 2:
                return x @ W.T
            # channel-batched Linear: W [C, O, I], x [N, C, I] -> [N, C, O]
            if W.shape[-1] == 1:
                return x * W[:, :, 0]
            if W.shape[1] == 1:
                return (x * W[:, 0, :]).sum(-1, keepdim=True)
            return torch.einsum("coi,nci->nco", W, x)
        if isinstance(node, nir.Conv1d):
            W = self.param("weight", cdt)
            if self.pointwise:
                return torch.matmul(W, x)
            return F.conv1d(x, W, None, self.stride, self.pad, self.dil, self.groups)
        if isinstance(node, nir.Conv2d):
            return F.conv2d(x, self.param("weight", cdt), None, self.stride, self.pad, self.dil, self.groups)
        if isinstance(node, nir.Scale):
            return x * self.param("scale", cdt)
        y = F.avg_pool2d(x, self.k, self.st, self.p, count_include_pad=True, divisor_override=1)
        if isinstance(node, nir.SumPool2d):
            return y
        n = self.k[0] * self.k[1]
        return torch.floor(y / n) if self.integer else y / n

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The node's output for the rows ``x`` ``[N, *in_shape]``: int64 (int) or the float dtype."""
        cdt = self._compute_dtype(x)
        y = self._sparse_linear(x, cdt)
        if y is None:
            y = self._linear(x.to(cdt), cdt)
        if self.integer:
            if cdt == torch.float64 and not self.matmul:
                y = torch.round(y)
            y = y.to(torch.int64)      # a fresh tensor (the product's, or its conversion): updated in place below
            if self.wexp > 0:
                y.bitwise_left_shift_(self.wexp)
            elif self.wexp < 0:
                y.bitwise_right_shift_(-self.wexp)
        if "bias" in self._raw:
            b = self.param("bias", torch.int64 if self.integer else cdt)
            if not isinstance(self.node, nir.Affine):  # conv bias is per output channel
                b = b.reshape((-1,) + (1,) * (y.dim() - 2))
            y = y.add_(b) if self.integer else y + b
        return y


class _FloatNeuron:
    """Forward-Euler LIF / CubaLIF / IF / LI / I / Threshold (see the module docstring)."""

    def __init__(self, unit: Node, dt: float, dtype: torch.dtype) -> None:
        node = unit.nir
        self.kind = type(node).__name__
        self.spiking = unit.type.spiking
        self.shape = unit.out_shape
        self.dtype = dtype
        t = lambda a: _t(a, dtype)  # noqa: E731
        if isinstance(node, nir.Threshold):
            self.th = t(node.threshold)
            return
        self.r = t(node.r)
        if isinstance(node, (nir.LIF, nir.LI)):
            self.a = t(dt / np.asarray(node.tau, dtype=np.float64))
            self.v_leak = t(node.v_leak)
        if isinstance(node, nir.CubaLIF):
            self.a = t(dt / np.asarray(node.tau_mem, dtype=np.float64))
            self.a_syn = t(dt / np.asarray(node.tau_syn, dtype=np.float64))
            self.v_leak = t(node.v_leak)
            self.w_in = t(node.w_in)
        if isinstance(node, (nir.IF, nir.I)):
            self.dt = dt
        if self.spiking:
            self.vth = t(node.v_threshold)
            self.v_reset = t(node.v_reset if node.v_reset is not None else np.zeros_like(node.v_threshold))
            meta = getattr(node, "metadata", None) or {}  # Xylo-style: fire floor(v/vth) <= max_spikes, subtract
            self.max_spikes = float(meta.get("max_spikes", 1)) if meta.get("reset") == "subtract" else None

    def init(self, batch: int) -> Any:
        if self.kind == "Threshold":
            return None
        z = torch.zeros((batch, *self.shape), dtype=self.dtype)
        return (z, z.clone()) if self.kind == "CubaLIF" else z

    def step(self, x: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        x = x.to(self.dtype)
        k = self.kind
        if k == "Threshold":
            return (x > self.th).to(torch.uint8), None
        if k == "CubaLIF":
            i, v = state
            i = i + self.a_syn * (self.w_in * x - i)
            v = v + self.a * ((self.r * i + self.v_leak) - v)
        elif k in ("LIF", "LI"):
            v = state + self.a * ((self.r * x + self.v_leak) - state)
        else:  # IF, I
            v = state + self.dt * self.r * x
        if not self.spiking:
            return v, v
        if self.max_spikes is not None:
            n = torch.clamp(torch.floor(v / self.vth), 0.0, self.max_spikes)
            v = v - n * self.vth
            return n.to(torch.uint8), ((i, v) if k == "CubaLIF" else v)
        z = v > self.vth
        v = torch.where(z, self.v_reset.expand_as(v), v)
        return z.to(torch.uint8), ((i, v) if k == "CubaLIF" else v)

    def run(self, x: torch.Tensor, out: torch.Tensor) -> None:
        """Steps over the rows of ``x`` ``[R, B, *shape]`` from rest, writing ``out[r]``."""
        state = self.init(int(x.shape[1]))
        for r in range(int(x.shape[0])):
            out[r], state = self.step(x[r], state)


class _IntNeuron:
    """The integer LIF (:func:`neuroposter.ir.int_neuron.int_lif_step`) of one node, in the graph's format."""

    def __init__(self, unit: Node, dt: float, fmt: IntFormat | None, compiled: bool = True) -> None:
        node = unit.nir
        self.name = unit.path
        self.kernel = None  # the compiled neuron's parameters (None: the torch steps)
        self.kind = type(node).__name__
        self.spiking = unit.type.spiking
        self.shape = unit.out_shape
        meta = dict(node.metadata.get("loihi", {})) if isinstance(node.metadata, dict) else {}
        self.exact_threshold = self.kind == "Threshold" and not meta
        if self.exact_threshold:
            self.th = _t(node.threshold, torch.float64)
            return
        if fmt is None:
            raise SimulationError(
                f"node {self.name!r} ({self.kind}): int arithmetic needs the integer neuron format; quantise the "
                "graph for a profile (its metadata['int_format']) or pass int_format= (e.g. "
                "IntFormat.of_profile(load_profile('loihi2').fixed_point))")
        self.fmt = fmt
        one, dmax = fmt.decay_unity, fmt.decay_unity - 1
        if "du" in meta:
            du = np.asarray(meta["du"])
        elif self.kind == "CubaLIF":
            du = np.rint(one * dt / np.asarray(node.tau_syn, dtype=np.float64)) - 1
        else:
            du = np.asarray(dmax)
        if "dv" in meta:
            dv = np.asarray(meta["dv"])
        elif self.kind in ("LIF", "LI"):
            dv = np.rint(one * dt / np.asarray(node.tau, dtype=np.float64))
        elif self.kind == "CubaLIF":
            dv = np.rint(one * dt / np.asarray(node.tau_mem, dtype=np.float64))
        elif self.kind == "Threshold":
            dv = np.asarray(dmax)
        else:
            dv = np.asarray(0)
        if "bias" in meta:
            bias = np.asarray(meta["bias"])
        elif "bias_mant" in meta:
            mant = np.asarray(meta["bias_mant"], dtype=np.int64)
            e = np.asarray(meta.get("bias_exp", 0), dtype=np.int64)
            bias = np.where(e >= 0, mant << np.maximum(e, 0), mant >> np.maximum(-e, 0))
        elif hasattr(node, "v_leak"):
            bias = np.rint(np.asarray(node.v_leak, dtype=np.float64) * 2 ** fmt.act_shift)
        else:
            bias = np.asarray(0)
        self.vth = torch.as_tensor(0)
        if self.spiking:
            if "vth" in meta:
                vth = np.asarray(meta["vth"])
            else:
                vth = np.rint(np.asarray(node.threshold if self.kind == "Threshold" else node.v_threshold,
                                         dtype=np.float64))
            v_reset = getattr(node, "v_reset", None)
            if v_reset is not None and np.any(np.asarray(v_reset) != 0):
                raise SimulationError(f"node {self.name!r} ({self.kind}): the integer neuron resets to 0; int "
                                      "arithmetic needs v_reset = 0")
            self.vth = torch.as_tensor(np.asarray(vth, dtype=np.int64))
        r = getattr(node, "r", None)
        if r is not None and not meta and self.kind != "CubaLIF":  # with loihi params the gain is in the weights
            self.r = torch.as_tensor(_integral(np.asarray(r), "r", unit).astype(np.int64))
        else:
            self.r = torch.as_tensor(1)
        self.unit_gain = bool((self.r == 1).all())
        self.du = torch.as_tensor(np.asarray(du, dtype=np.int64))
        self.dv = torch.as_tensor(np.asarray(dv, dtype=np.int64))
        self.bias = torch.as_tensor(np.asarray(bias, dtype=np.int64))
        # Silent for good once u = 0, v <= threshold and the input stays 0 (no bias, threshold >= 0,
        # decays that only shrink |v|): the remaining steps need not run.
        self.thr = self.vth << fmt.threshold_shift
        decay_v = fmt.decay_unity - (self.dv + fmt.decay_v_offset)
        self.can_rest = bool(self.spiking and not self.bias.any() and (self.thr >= 0).all()
                             and (decay_v >= 0).all() and (decay_v <= fmt.decay_unity).all())
        if compiled:
            self.kernel = int_neuron_params(tuple(self.shape), du=self.du, dv=self.dv, vth=self.vth, bias=self.bias,
                                            gain=self.r, fmt=fmt, spiking=self.spiking)

    def init(self, batch: int) -> Any:
        if self.exact_threshold:
            return None
        z = torch.zeros((batch, *self.shape), dtype=torch.int64)
        return (z, z.clone())

    def step(self, x: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        if self.exact_threshold:
            return (x.to(torch.float64) > self.th).to(torch.uint8), None
        u, v = state
        a = x.to(torch.int64) if self.unit_gain else x.to(torch.int64) * self.r
        u, v, out = int_lif_step(u, v, a, du=self.du, dv=self.dv, vth=self.vth,
                                 bias=self.bias, fmt=self.fmt, spiking=self.spiking)
        return out, (u, v)

    def run(self, x: torch.Tensor, out: torch.Tensor) -> None:
        """Steps over the rows of ``x`` ``[R, B, *shape]`` from rest, writing ``out[r]`` (left 0 once
        the neuron provably stays silent)."""
        if self.exact_threshold:   # no state: every row in one comparison
            out.copy_((x.to(torch.float64) > self.th).to(torch.uint8))
            return
        if self.kernel is not None:
            int_neuron_run(self.kernel, x, out, spiking=self.spiking)
            return
        state = self.init(int(x.shape[1]))
        rows = int(x.shape[0])
        last = rows - 1  # the last row with input
        if not self.exact_threshold and self.can_rest:
            while last >= 0 and not bool(x[last].any()):
                last -= 1
        for r in range(rows):
            if r > last:
                u, v = state
                if not u.any() and bool((v <= self.thr).all()):
                    return
            out[r], state = self.step(x[r], state)


def _delay_rows(steps: np.ndarray, x: torch.Tensor) -> torch.Tensor:
    """``y[r] = x[r - d]`` per element (0 before the first row) for rows ``x [R, B, *shape]``."""
    d = torch.as_tensor(steps.astype(np.int64)).expand(x.shape[2:]) if steps.size else torch.zeros(
        x.shape[2:], dtype=torch.int64)
    depth = int(d.max()) if d.numel() else 0
    padded = torch.cat([torch.zeros((depth, *x.shape[1:]), dtype=x.dtype), x]) if depth else x
    R = int(x.shape[0])
    idx = (torch.arange(R).reshape((R,) + (1,) * (x.dim() - 1)) + depth - d).expand(x.shape)
    return torch.gather(padded, 0, idx)


#: Neuron types the simulator runs (``CubaLI`` has no implementation here).
_NEURONS: tuple[str, ...] = ("LIF", "CubaLIF", "IF", "LI", "I", "Threshold")


def _make_op(unit: Node, flat: Graph, arithmetic: str, dtype: torch.dtype, fmt: IntFormat | None = None,
             sparse: bool = True, compiled: bool = True) -> Any:
    role = unit.role
    if role == "conn":
        return _Conn(unit, arithmetic, dtype, sparse)
    if role == "neuron" and unit.type.name in _NEURONS:
        return _IntNeuron(unit, flat.dt, fmt, compiled) if arithmetic == "int" else _FloatNeuron(unit, flat.dt, dtype)
    if role == "delay":
        return delay_steps(flat, unit.path)
    if role in ("input", "output", "reshape"):
        return None
    raise SimulationError(
        f"the simulator cannot run node {unit.path!r} of type {unit.type.name}; supported: "
        f"{', '.join(names(role='conn'))}, Flatten, Delay, {', '.join(_NEURONS)}, Input, Output and sub-graphs")


def _input_tensor(xt: torch.Tensor, arithmetic: str, vdtype: torch.dtype, unit: Node,
                  compiled: bool = True) -> torch.Tensor:
    """The inputs in the narrowest dtype that holds them exactly: every consumer converts them to its
    own dtype (so an integer or lower-precision float input is not widened up front, a wider float
    input is rounded to the float dtype as a first step would). A float input of ``int`` arithmetic
    must be integral (finite); it becomes uint8 when it fits 0..255, else int64 (``compiled``: checked
    and converted in one compiled pass, :func:`~neuroposter.ir.int_neuron_kernel.int_inputs`)."""
    if xt.dtype == torch.bool:
        return xt.to(torch.uint8)
    if xt.is_complex():
        return xt.to(vdtype)
    if not xt.dtype.is_floating_point:
        return xt
    if arithmetic == "int":
        conv = _integral_input(xt, compiled)
        if conv is None:
            raise SimulationError(
                f"node {unit.path!r} ({unit.type.name}): int arithmetic needs integer inputs; "
                "quantize the graph first (e.g. neuroposter.targets.loihi.fixed_point.quantize_loihi)")
        return conv
    return xt.to(vdtype) if xt.element_size() > torch.tensor([], dtype=vdtype).element_size() else xt


def _integral_input(xt: torch.Tensor, compiled: bool) -> torch.Tensor | None:
    """A float input of integer values as uint8 (int64 when a value is outside 0..255); None when some value is not
    finite or not integral."""
    if compiled and xt.dtype in INPUT_DTYPES:
        return int_inputs(xt)
    if not bool(torch.isfinite(xt).all()) or not bool((xt == torch.round(xt)).all()):
        return None
    lo, hi = torch.aminmax(xt) if xt.numel() else (torch.tensor(0), torch.tensor(0))
    return xt.to(torch.uint8 if float(lo) >= 0 and float(hi) <= 255 else torch.int64)


# ---------------------------------------------------------------------------------------------
# the schedule: node-major evaluation of a DAG over whole time windows


@dataclass
class _Signal:
    """A node's output: ``rows`` holds steps ``[first, first + len(rows))``; every other step is 0."""

    rows: torch.Tensor
    first: int

    def window(self, a: int, c: int) -> tuple[torch.Tensor | None, int]:
        """Its stored rows inside steps ``[a, c]`` and the step of the first one (None: all zero)."""
        lo, hi = max(a, self.first), min(c, self.first + int(self.rows.shape[0]) - 1)
        if hi < lo:
            return None, lo
        return self.rows[lo - self.first:hi - self.first + 1], lo


@dataclass
class _Schedule:
    """What :func:`simulate` runs: the nodes in order and, per node, the steps it computes.

    Attributes:
        flat: the flattened graph.
        order: every node, sources before destinations (the graph is a DAG).
        incoming: node -> ``(source, lag)`` per edge into it.
        uses: node -> number of edges out of it (its signal is freed after its last consumer).
        ops: node -> its operator (:class:`_Conn`, a neuron, a Delay's steps, or None).
        pipelined: the connection nodes that take one step (``per_hop``).
        start: node -> first step at which it receives data of input step 0 (held at rest before).
        last: node -> last output step that is computed (``T_out - 1``, or see :func:`_last_steps`).
        T: input steps; T_out: steps of the run.
        vdtype: the value dtype (int64 or the float dtype).
        tail: every node runs to the end of the run.
    """

    flat: Graph
    order: list[str]
    incoming: dict[str, list[tuple[str, int]]]
    uses: dict[str, int]
    ops: dict[str, Any]
    pipelined: set[str]
    start: dict[str, int]
    last: dict[str, int]
    T: int
    T_out: int
    vdtype: torch.dtype
    tail: bool

    def in_rows(self, n: str) -> tuple[int, int]:
        """Steps ``[a, c]`` of ``n``'s summed input that its computation reads."""
        if self.flat.nodes[n].role == "output":
            return 0, self.T_out - 1
        return self.start[n], self.last[n] - (1 if n in self.pipelined else 0)


def _last_steps(flat: Graph, order: list[str], incoming: dict[str, list[tuple[str, int]]], pipelined: set[str],
                start: Mapping[str, int], T: int, T_out: int, aligned: bool) -> dict[str, int]:
    """Per node, the last output step to compute: the last one that can still reach one of the
    ``T_out`` Output steps, and, when ``aligned``, at least the end of its own aligned window
    (``start + T - 1``; a step later for a ``per_hop`` connection) so that every aligned record is
    exact even on a node that does not reach the Output."""
    outgoing: dict[str, list[tuple[str, int]]] = {n: [] for n in flat.nodes}
    for d, ins in incoming.items():
        for s, lag in ins:
            outgoing[s].append((d, lag))
    last_in: dict[str, int] = {}
    last: dict[str, int] = {}
    for n in reversed(order):
        u = flat.nodes[n]
        lat = 1 if n in pipelined else 0
        if u.role == "output":
            last[n] = T_out - 1
        else:
            last[n] = max((last_in[d] - lag for d, lag in outgoing[n]), default=-1)
            if aligned:
                last[n] = max(last[n], start[n] + lat + T - 1)
            last[n] = min(T_out - 1, last[n])
        if u.role == "delay":
            lat = int(delay_steps(flat, n).min(initial=0))
        last_in[n] = last[n] - lat
    return last


def _gather(sch: _Schedule, sig: dict[str, _Signal], n: str, a: int, c: int, b: int) -> torch.Tensor:
    """The summed input of ``n`` over steps ``[a, c]``: ``[c - a + 1, b, *in_shape]`` (a view when one
    source covers it)."""
    shape = (max(c - a + 1, 0), b, *sch.flat.nodes[n].in_shape)
    parts = []
    for s, lag in sch.incoming[n]:
        rows, first = sig[s].window(a - lag, c - lag)
        if rows is not None:
            parts.append((rows, first + lag - a))
    if len(parts) == 1 and parts[0][1] == 0 and parts[0][0].shape[0] == shape[0]:
        return parts[0][0]
    dtype = parts[0][0].dtype if len(parts) == 1 else sch.vdtype  # one source keeps its (spike) dtype
    total = torch.zeros(shape, dtype=dtype)
    for rows, off in parts:
        total[off:off + rows.shape[0]].add_(rows)       # in place, promoting a narrower (spike) dtype
    return total


def _conn_rows(op: _Conn, x: torch.Tensor) -> torch.Tensor:
    """``op`` on rows ``x [N, *in_shape]``. Spike rows (uint8) that are all zero get ``op(0)`` without a
    product: after the input ends, and before a population first fires, most are."""
    N = int(x.shape[0])
    if not op.heavy or N == 0 or x.dtype != torch.uint8:
        return op(x)
    nz = x.reshape(N, -1).any(1).bool()
    k = int(nz.sum())
    if k == N:
        return op(x)
    zero = op(torch.zeros((1, *x.shape[1:]), dtype=x.dtype))
    y = zero.expand((N, *zero.shape[1:])).clone()
    if k:
        y[nz] = op(x[nz])
    return y


def _record_value(t: torch.Tensor, integer: bool) -> np.ndarray:
    """A connection input as recorded: int64 (int) or float32 (float), as uint8 when every value is a
    small non-negative integer (spike counts)."""
    if t.dtype == torch.uint8:
        return t.numpy()
    if t.dtype.is_floating_point and not integer:
        t = t.to(torch.float32)
        if t.numel() and not bool((t == torch.round(t)).all()):
            return t.numpy()
    if t.numel():
        lo, hi = torch.aminmax(t)
        if float(lo) >= 0 and float(hi) <= 255:
            return t.to(torch.uint8).numpy()
    return t.to(torch.int64 if integer else torch.float32).numpy()


class _Recorder:
    """The records of a run, written chunk by chunk into ``[T_out, B, *shape]`` arrays (an array
    widens from uint8 when a later chunk does not fit it)."""

    def __init__(self, T_out: int, B: int) -> None:
        self.T_out, self.B = T_out, B
        self.records: dict[str, np.ndarray] = {}
        self.inputs: dict[str, np.ndarray] = {}

    def put(self, kind: str, path: str, b0: int, first: int, rows: np.ndarray) -> None:
        """Writes steps ``[first, first + len(rows))`` of samples ``b0...`` of ``path``."""
        store = self.records if kind == "records" else self.inputs
        arr = store.get(path)
        if arr is None:
            arr = store[path] = np.zeros((self.T_out, self.B, *rows.shape[2:]), dtype=rows.dtype)
        elif arr.dtype != rows.dtype and np.result_type(arr.dtype, rows.dtype) != arr.dtype:
            arr = store[path] = arr.astype(np.result_type(arr.dtype, rows.dtype))
        arr[first:first + rows.shape[0], b0:b0 + rows.shape[1]] = rows


def _run_chunk(sch: _Schedule, xc: torch.Tensor, rec: _Recorder | None, b0: int,
               readout: Callable[[torch.Tensor], np.ndarray]) -> np.ndarray:
    """Runs every node over its window on the samples ``xc [T, b, *input_shape]`` (samples ``b0...``
    of the batch); returns the output, writes the records into ``rec``."""
    flat, T_out, b = sch.flat, sch.T_out, int(xc.shape[1])
    integer = sch.vdtype == torch.int64
    sig: dict[str, _Signal] = {}
    left = dict(sch.uses)
    output = np.zeros(0)
    for n in sch.order:
        u = flat.nodes[n]
        role, op, s0, last = u.role, sch.ops[n], sch.start[n], sch.last[n]
        if role == "input":
            sig[n] = _Signal(xc[:max(0, min(sch.T, last + 1))], 0)
            continue
        a, c = sch.in_rows(n)
        if rec is not None and role == "conn":  # recorded from step 0 on
            full = _gather(sch, sig, n, 0, T_out - 1 if sch.tail else c, b)
            rec.put("inputs", n, b0, 0, _record_value(full, integer))
            x = full[a:c + 1] if c >= a else full[:0]
        else:
            x = _gather(sch, sig, n, a, c, b)
        for s, _ in sch.incoming[n]:
            left[s] -= 1
            if left[s] == 0:
                del sig[s]
        if role == "output":
            output = readout(x)
            continue
        first = s0 + 1 if n in sch.pipelined else s0
        if role == "conn":
            rows = x.reshape(-1, *u.in_shape)
            y = _conn_rows(op, rows).reshape(x.shape[0], b, *u.out_shape)
        elif role == "neuron":
            y = torch.zeros((x.shape[0], b, *u.out_shape),
                            dtype=torch.uint8 if u.type.spiking else sch.vdtype)
            op.run(x, y)
            if rec is not None:
                rec.put("records", n, b0, first, y.numpy() if u.type.spiking else y.to(
                    torch.int64 if integer else torch.float32).numpy())
        elif role == "reshape":
            y = x.reshape(x.shape[0], b, *u.out_shape)
        else:  # delay
            y = _delay_rows(op, x)
        if sch.uses[n]:
            sig[n] = _Signal(y, first)
    return output


def _chunk_size(sch: _Schedule, B: int, in_itemsize: int) -> int:
    """Samples per chunk: the peak bytes per sample of the signals alive at once plus the node being
    computed (its input and output, twice for temporaries), within :data:`_CHUNK_BYTES`."""
    flat = sch.flat

    def numel(shape: tuple[int, ...]) -> int:
        return int(np.prod(shape)) if shape else 1

    def nbytes(n: str) -> int:
        u = flat.nodes[n]
        if u.role == "input":
            return sch.T * numel(u.out_shape) * in_itemsize
        return sch.T_out * numel(u.out_shape) * (1 if u.type.spiking else 8)

    left = dict(sch.uses)
    live, peak = 0, 0
    for n in sch.order:
        u = flat.nodes[n]
        work = 2 * sch.T_out * (numel(u.in_shape) + numel(u.out_shape)) * 8
        peak = max(peak, live + work)
        for s, _ in sch.incoming[n]:
            left[s] -= 1
            if left[s] == 0:
                live -= nbytes(s)
        if sch.uses[n]:
            live += nbytes(n)
    return int(max(1, min(B, _CHUNK_BYTES // max(1, peak))))


# ---------------------------------------------------------------------------------------------


def simulate(
    graph: nir.NIRGraph | Graph,
    x: np.ndarray | torch.Tensor,
    *,
    mode: str = "same_step",
    arithmetic: str = "float",
    delays: Mapping[tuple[str, str], int] | None = None,
    record: bool = True,
    dtype: str = "float64",
    int_format: IntFormat | None = None,
    tail: bool = False,
    chunk: int | None = None,
    sparse: bool = True,
    compiled: bool = True,
) -> SimResult:
    """Runs a NIR graph over time on a batch of inputs.

    The graph (a DAG) is evaluated node by node, sources first, each over its whole window of steps:
    a connection node in one product over all its steps and samples (spike rows without a spike
    skipped), a neuron step by step (an integer neuron: all its steps in one compiled call). A node
    runs from its start step to its last step that can still reach the Output, or to the end of the
    run with ``tail``.

    Args:
        graph: a type-checked NIR graph (sub-graphs allowed) with one Input and one Output, or its
            ``flatten(graph, strict=True)`` (:mod:`neuroposter.ir.graph`) to avoid flattening again.
        x: inputs ``[T, B, *input_shape]`` (numpy or torch).
        mode: ``"same_step"`` (all edges instantaneous, as the Norse model) or ``"per_hop"`` (one
            step per synapse, as Lava/Loihi).
        arithmetic: ``"float"`` or ``"int"`` (Loihi 2 fixed point; see the module docstring).
        delays: extra delays in steps per flattened edge ``(src_path, dst_path)``, typically
            ``retime(graph).delays``.
        record: keep per-node spikes and per-connection inputs.
        dtype: float precision of ``float`` arithmetic (``"float64"`` or ``"float32"``).
        int_format: the integer neuron format of ``int`` arithmetic (default: the graph's
            ``metadata["int_format"]``, which the fixed-point quantisers record from the chip's profile).
        tail: run every node to the end of the run, so that the records are exact over all ``T + L``
            steps. By default each node stops at its last step that can still reach the Output (and
            not before the end of its aligned window): the output and every :meth:`SimResult.aligned`
            record are the same, record steps after that stop are 0, and a ``per_hop`` run costs
            about ``T`` steps per node instead of ``T + L``. Without ``record`` it changes nothing.
        chunk: samples per chunk (default: as many as fit a fixed working-memory budget); the result
            does not depend on it.
        sparse: in ``int`` arithmetic, spike inputs of matrix products as gather-and-add where they are
            sparse enough (module docstring); the result does not depend on it (exact either way).
        compiled: in ``int`` arithmetic, the integer neurons run as one compiled kernel over all their steps
            and a float input is checked and narrowed in one compiled pass
            (:mod:`neuroposter.ir.int_neuron_kernel`); False steps the neurons with torch
            (:func:`~neuroposter.ir.int_neuron.int_lif_step`). Bit-identical either way.

    Returns:
        A :class:`SimResult`; in ``per_hop`` it covers ``T + L`` steps.

    Raises:
        SimulationError: unknown mode, a node it cannot run (named), bad input shape.
    """
    if mode not in MODES:
        raise SimulationError(f"unknown mode {mode!r}; valid: {', '.join(MODES)}")
    if arithmetic not in ARITHMETICS:
        raise SimulationError(f"unknown arithmetic {arithmetic!r}; valid: {', '.join(ARITHMETICS)}")
    fdtype = {"float64": torch.float64, "float32": torch.float32}.get(str(dtype))
    if fdtype is None:
        raise SimulationError(f"unknown dtype {dtype!r}; valid: float64, float32")
    try:
        flat = executable(graph)
        start, all_delays = arrival_times(flat, mode, dict(delays or {}))
        lags = edge_lags(flat, mode, all_delays)
        order = topo_order(flat, flat.edges)
    except GraphError as exc:
        raise SimulationError(str(exc)) from None
    vdtype = torch.int64 if arithmetic == "int" else fdtype

    xt = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x.detach().cpu())
    in_shape = flat.nodes[flat.input].out_shape
    if xt.dim() < 2 or tuple(xt.shape[2:]) != in_shape:
        raise SimulationError(f"input must be [T, B, {', '.join(map(str, in_shape))}] for Input "
                              f"{flat.input!r}; got {tuple(xt.shape)}")
    xt = _input_tensor(xt, arithmetic, vdtype, flat.nodes[flat.input], compiled)
    T, B = int(xt.shape[0]), int(xt.shape[1])
    L = start[flat.output]
    T_out = T + L

    pipelined = {n for n, u in flat.nodes.items() if mode == "per_hop" and u.role == "conn"}
    incoming: dict[str, list[tuple[str, int]]] = {n: [] for n in flat.nodes}
    uses: dict[str, int] = {n: 0 for n in flat.nodes}
    for (s, d), lag in zip(flat.edges, lags):
        incoming[d].append((s, lag))
        uses[s] += 1

    fmt = int_format
    if fmt is None and arithmetic == "int" and "int_format" in (flat.metadata or {}):
        fmt = IntFormat.from_mapping(flat.metadata["int_format"])
    ops = {n: _make_op(u, flat, arithmetic, fdtype, fmt, sparse, compiled) for n, u in flat.nodes.items()}
    last = ({n: T_out - 1 for n in flat.nodes} if record and tail
            else _last_steps(flat, order, incoming, pipelined, start, T, T_out, aligned=record))
    sch = _Schedule(flat, order, incoming, uses, ops, pipelined, dict(start), last, T, T_out, vdtype,
                    record and tail)

    out_meta = flat.nodes[flat.output].nir.metadata
    out_loihi = dict(out_meta.get("loihi", {})) if isinstance(out_meta, dict) else {}
    scaled = arithmetic == "int" and "scale" in out_loihi
    out_dtype = np.int64 if arithmetic == "int" and not scaled else np.float64

    def readout(a: torch.Tensor) -> np.ndarray:
        """Host-side read-out: ``(a + bias) / scale`` when the Output carries Loihi read-out params."""
        if not scaled:
            return a.numpy().astype(out_dtype, copy=False)
        bias = np.asarray(out_loihi.get("bias", 0), dtype=np.float64)
        return (a.numpy().astype(np.float64) + bias) / np.asarray(out_loihi["scale"], dtype=np.float64)

    size = max(1, int(chunk) if chunk else _chunk_size(sch, B, xt.element_size()))
    rec = _Recorder(T_out, B) if record else None
    outputs = []
    with torch.no_grad():
        for b0 in range(0, max(B, 1), size):
            outputs.append(_run_chunk(sch, xt[:, b0:b0 + size], rec, b0, readout))
    output = np.concatenate(outputs, axis=1) if len(outputs) > 1 else outputs[0]
    return SimResult(output=output, latency=L, records=rec.records if rec else {}, inputs=rec.inputs if rec else {},
                     start=dict(start), mode=mode, arithmetic=arithmetic, T=T)
