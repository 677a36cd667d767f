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
``[T_out, B, *shape]``. Paths join sub-graph names with ``.``.
"""

from __future__ import annotations

import abc
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
from neuroposter.ir.nodes import names
from neuroposter.ir.timing import arrival_times, delay_steps, edge_lags, topo_order

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
# node operators


class _Op(abc.ABC):
    """A node's computation: ``init(B)`` -> state; ``step(x, state)`` -> (out, state)."""

    spiking = False

    def init(self, batch: int) -> Any:
        return None

    @abc.abstractmethod
    def step(self, x: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        """One time step: output and the new state."""


class _Stateless(_Op):
    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.fn = fn

    def step(self, x: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        return self.fn(x), None


def _t(a: Any, dtype: torch.dtype) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(np.asarray(a, dtype=np.float64)), dtype=torch.float64).to(dtype)


def _conn_op(unit: Node, arithmetic: str, dtype: torch.dtype) -> _Op:
    node = unit.nir
    integer = arithmetic == "int"
    cdt = torch.float64 if integer else dtype  # integer convolutions run exactly in float64

    def weights(name: str) -> torch.Tensor:
        a = _arr(getattr(node, name))
        if integer:
            a = _integral(a, name, unit)
        return _t(a, cdt)

    if isinstance(node, (nir.Affine, nir.Linear)):
        W = weights("weight")
        b = weights("bias") if isinstance(node, nir.Affine) else None

        def fn(x: torch.Tensor) -> torch.Tensor:
            y = x @ W.T if W.dim() == 2 else (W @ x.unsqueeze(-1)).squeeze(-1)
            return y if b is None else (y, b)  # type: ignore[return-value]
    elif isinstance(node, nir.Conv1d):
        W, b = weights("weight"), weights("bias")
        stride, dil, groups = _int1(node.stride), _int1(node.dilation), _int1(node.groups)
        pad = _padding(node.padding, 1)

        def fn(x: torch.Tensor) -> torch.Tensor:
            return (F.conv1d(x, W, None, stride, pad, dil, groups), b)  # type: ignore[return-value]
    elif isinstance(node, nir.Conv2d):
        W, b = weights("weight"), weights("bias")
        stride, dil, groups = _pair(node.stride), _pair(node.dilation), _int1(node.groups)
        pad = _padding(node.padding, 2)

        def fn(x: torch.Tensor) -> torch.Tensor:
            return (F.conv2d(x, W, None, stride, pad, dil, groups), b)  # type: ignore[return-value]
    elif isinstance(node, nir.Scale):
        s = weights("scale")

        def fn(x: torch.Tensor) -> torch.Tensor:
            return x * s
    elif isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
        k, st, p = _pair(node.kernel_size), _pair(node.stride), _pair(node.padding)
        is_sum = isinstance(node, nir.SumPool2d)

        def fn(x: torch.Tensor) -> torch.Tensor:
            y = F.avg_pool2d(x, k, st, p, count_include_pad=True, divisor_override=1)
            if is_sum:
                return y
            return torch.floor(y / (k[0] * k[1])) if integer else y / (k[0] * k[1])
    else:  # pragma: no cover - _make_op guarantees one of the above
        raise SimulationError(f"node {unit.path!r} ({type(node).__name__}) is not a connection")

    meta = node.metadata.get("loihi", {}) if isinstance(node.metadata, dict) else {}
    wexp = int(np.asarray(meta.get("weight_exp", 0)).reshape(-1)[0]) if integer else 0

    def run(x: torch.Tensor) -> torch.Tensor:
        out = fn(x.to(cdt))
        bias = None
        if isinstance(out, tuple):
            out, bias = out
        if integer:
            out = torch.round(out).to(torch.int64)
            if wexp > 0:
                out = out << wexp
            elif wexp < 0:
                out = out >> (-wexp)
        if bias is not None:
            if not isinstance(node, nir.Affine):  # conv bias is per output channel
                bias = bias.reshape((-1,) + (1,) * (out.dim() - 2))
            out = out + (bias.to(torch.int64) if integer else bias)
        return out

    return _Stateless(run)


class _FloatNeuron(_Op):
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

    def init(self, batch: int) -> Any:
        if self.kind == "Threshold":
            return None
        z = torch.zeros((batch, *self.shape), dtype=self.dtype)
        return (z, z.clone()) if self.kind == "CubaLIF" else z

    def step(self, x: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        x = x.to(self.dtype)
        k = self.kind
        if k == "Threshold":
            return (x > self.th).to(self.dtype), None
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
        z = v > self.vth
        v = torch.where(z, self.v_reset.expand_as(v), v)
        zf = z.to(self.dtype)
        return zf, ((i, v) if k == "CubaLIF" else v)


class _IntNeuron(_Op):
    """The integer LIF (:func:`neuroposter.ir.int_neuron.int_lif_step`) of one node, in the graph's format."""

    def __init__(self, unit: Node, dt: float, fmt: IntFormat | None) -> None:
        node = unit.nir
        self.name = unit.path
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
        if r is not None and not meta and not self.kind == "CubaLIF":  # with loihi params the gain is in the weights
            self.r = torch.as_tensor(_integral(np.asarray(r), "r", unit).astype(np.int64))
        else:
            self.r = torch.as_tensor(1)
        self.du = torch.as_tensor(np.asarray(du, dtype=np.int64))
        self.dv = torch.as_tensor(np.asarray(dv, dtype=np.int64))
        self.bias = torch.as_tensor(np.asarray(bias, dtype=np.int64))

    def init(self, batch: int) -> Any:
        if self.exact_threshold:
            return None
        z = torch.zeros((batch, *self.shape), dtype=torch.int64)
        return (z, z.clone())

    def step(self, x: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        if self.exact_threshold:
            return (x.to(torch.float64) > self.th).to(torch.int64), None
        u, v = state
        u, v, out = int_lif_step(u, v, x.to(torch.int64) * self.r, du=self.du, dv=self.dv, vth=self.vth,
                                 bias=self.bias, fmt=self.fmt, spiking=self.spiking)
        return out, (u, v)


class _DelayLine(_Op):
    """Per-element delay ``y_t = x_{t - d}`` (d in steps, possibly 0)."""

    def __init__(self, steps: np.ndarray, shape: tuple[int, ...]) -> None:
        self.steps = torch.as_tensor(steps.astype(np.int64)).expand(shape) if steps.size else torch.zeros(shape)
        self.depth = int(steps.max(initial=0)) + 1

    def init(self, batch: int) -> Any:
        return []

    def step(self, x: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        hist = ([x] + state)[: self.depth]  # hist[k] = input k steps ago
        padded = hist + [torch.zeros_like(x)] * (self.depth - len(hist))
        stack = torch.stack(padded)  # [depth, B, *shape]
        idx = self.steps.unsqueeze(0).expand_as(x).unsqueeze(0)
        return torch.gather(stack, 0, idx).squeeze(0), hist


#: Neuron types the simulator runs (``CubaLI`` has no implementation here).
_NEURONS: tuple[str, ...] = ("LIF", "CubaLIF", "IF", "LI", "I", "Threshold")


def _make_op(unit: Node, flat: Graph, arithmetic: str, dtype: torch.dtype, fmt: IntFormat | None = None) -> _Op:
    role = unit.role
    if role == "conn":
        return _conn_op(unit, arithmetic, dtype)
    if role == "neuron" and unit.type.name in _NEURONS:
        return _IntNeuron(unit, flat.dt, fmt) if arithmetic == "int" else _FloatNeuron(unit, flat.dt, dtype)
    if role == "reshape":
        shape = unit.out_shape
        return _Stateless(lambda x: x.reshape((x.shape[0], *shape)))
    if role == "delay":
        return _DelayLine(delay_steps(flat, unit.path), unit.out_shape)
    if role in ("input", "output"):
        return _Stateless(lambda x: x)
    raise SimulationError(
        f"the simulator cannot run node {unit.path!r} of type {unit.type.name}; supported: "
        f"{', '.join(names(role='conn'))}, Flatten, Delay, {', '.join(_NEURONS)}, Input, Output and sub-graphs")


def _compact(arr: np.ndarray) -> np.ndarray:
    """Stores counts as uint8 when they are small non-negative integers."""
    if arr.size and arr.dtype != np.uint8:
        if arr.min() >= 0 and arr.max() <= 255 and np.array_equal(arr, np.round(arr)):
            return arr.astype(np.uint8)
    return arr


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
) -> SimResult:
    """Runs a NIR graph over time on a batch of inputs.

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
    except GraphError as exc:
        raise SimulationError(str(exc)) from None
    vdtype = torch.int64 if arithmetic == "int" else fdtype

    xt = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x.detach().cpu())
    in_shape = flat.nodes[flat.input].out_shape
    if xt.dim() < 2 or tuple(xt.shape[2:]) != in_shape:
        raise SimulationError(f"input must be [T, B, {', '.join(map(str, in_shape))}] for Input "
                              f"{flat.input!r}; got {tuple(xt.shape)}")
    if arithmetic == "int":
        _integral(xt.numpy(), "inputs", flat.nodes[flat.input])
    xt = xt.to(vdtype)
    T, B = int(xt.shape[0]), int(xt.shape[1])
    L = start[flat.output]
    T_out = T + L

    pipelined = {n for n, u in flat.nodes.items() if mode == "per_hop" and u.role == "conn"}
    instant = [e for e, lag in zip(flat.edges, lags) if lag == 0 and e[0] not in pipelined]
    try:
        order = topo_order(flat, instant)
    except GraphError as exc:
        raise SimulationError(str(exc)) from None
    incoming: dict[str, list[tuple[str, int]]] = {n: [] for n in flat.nodes}
    max_lag: dict[str, int] = {n: 0 for n in flat.nodes}
    for (s, d), lag in zip(flat.edges, lags):
        incoming[d].append((s, lag))
        max_lag[s] = max(max_lag[s], lag)

    fmt = int_format
    if fmt is None and arithmetic == "int" and "int_format" in (flat.metadata or {}):
        fmt = IntFormat.from_mapping(flat.metadata["int_format"])
    ops = {n: _make_op(u, flat, arithmetic, fdtype, fmt) for n, u in flat.nodes.items()}
    states = {n: op.init(B) for n, op in ops.items()}
    zeros_out = {n: torch.zeros((B, *u.out_shape), dtype=vdtype) for n, u in flat.nodes.items()}
    hist: dict[str, dict[int, torch.Tensor]] = {n: {} for n in flat.nodes}
    pending: dict[str, torch.Tensor] = {}

    records: dict[str, np.ndarray] = {}
    inputs: dict[str, np.ndarray] = {}
    if record:
        for n, u in flat.nodes.items():
            if u.role == "neuron":
                spk = u.type.spiking
                records[n] = np.zeros((T_out, B, *u.out_shape),
                                      dtype=np.uint8 if spk else (np.int64 if arithmetic == "int" else np.float32))
            elif u.role == "conn":
                inputs[n] = np.zeros((T_out, B, *u.in_shape),
                                     dtype=np.int64 if arithmetic == "int" else np.float32)
    out_meta = flat.nodes[flat.output].nir.metadata
    out_loihi = dict(out_meta.get("loihi", {})) if isinstance(out_meta, dict) else {}
    scaled = arithmetic == "int" and "scale" in out_loihi
    output = np.zeros((T_out, B, *flat.nodes[flat.output].in_shape),
                      dtype=np.int64 if arithmetic == "int" and not scaled else np.float64)

    def readout(a: torch.Tensor) -> np.ndarray:
        """Host-side read-out: ``(a + bias) / scale`` when the Output carries Loihi read-out params."""
        if not scaled:
            return a.numpy()
        bias = np.asarray(out_loihi.get("bias", 0), dtype=np.float64)
        return (a.numpy().astype(np.float64) + bias) / np.asarray(out_loihi["scale"], dtype=np.float64)

    def push(n: str, t: int, value: torch.Tensor) -> None:
        h = hist[n]
        h[t] = value
        old = t - max_lag[n] - 1
        if old in h:
            del h[old]

    def gather(n: str, t: int) -> torch.Tensor:
        total = None
        for s, lag in incoming[n]:
            v = hist[s].get(t - lag)
            if v is None:
                continue
            total = v if total is None else total + v
        if total is None:
            return torch.zeros((B, *flat.nodes[n].in_shape), dtype=vdtype)
        return total

    with torch.no_grad():
        for t in range(T_out):
            for n in pipelined:
                push(n, t, pending.pop(n, zeros_out[n]))
            for n in order:
                u = flat.nodes[n]
                if u.role == "input":
                    push(n, t, xt[t] if t < T else zeros_out[n])
                    continue
                inp = gather(n, t)
                active = t >= start[n]
                if record and n in inputs:
                    inputs[n][t] = inp.numpy()
                if u.role == "output":
                    output[t] = readout(inp)
                    push(n, t, inp)
                    continue
                if n in pipelined:
                    if active:
                        pending[n], _ = ops[n].step(inp, None)
                    continue
                if not active:
                    push(n, t, zeros_out[n])
                    continue
                out, states[n] = ops[n].step(inp, states[n])
                out = out.to(vdtype)
                if record and n in records:
                    records[n][t] = out.numpy()
                push(n, t, out)

    if record:
        inputs = {n: _compact(a) for n, a in inputs.items()}
    return SimResult(output=output, latency=L, records=records, inputs=inputs, start=dict(start),
                     mode=mode, arithmetic=arithmetic, T=T)
