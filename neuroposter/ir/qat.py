"""Quantisation-aware training: a target's weight arithmetic in the model's own forward pass.

A deployed network runs its connections on the target's weight grid: Loihi 2 stores every weight as a
signed ``b``-bit mantissa times one power-of-two exponent per connection (:func:`neuroposter.targets.loihi.
fixed_point.quantize_weights`); the simulated chips put every connection on a symmetric grid of
``2**(b-1) - 1`` levels over its largest weight, or ``sign(w) * mean|w|`` for 1-bit weights
(:func:`neuroposter.ir.quantize.quantize_nbit`). Both act on the **deployed** weights, i.e. the weights
with BatchNorm (eval statistics) folded in, as the lowering (:mod:`neuroposter.ir.lower`) computes them.

:func:`enable` makes a spiking model compute with exactly those weights: every connection of the
deployed graph (:func:`connections`: a Linear, the BatchNorm folded into it, and the divisor the lowering
applies, e.g. the read-out's mean over tokens) runs as

.. math::
    W' = \\frac{\\gamma}{\\sigma} W,\\quad b' = \\beta - \\frac{\\gamma\\mu}{\\sigma} + \\frac{\\gamma}{\\sigma} b,
    \\qquad y = x\\, (k\\,Q(W'/k))^\\top + b'

with ``Q`` the target's grid (:func:`quantize_tensor`, computed in float64 with the same formulas as the
deployment quantisers, so the mantissas are the ones the export writes) and a straight-through gradient
(``dQ/dW' = 1``); the BatchNorm itself becomes the identity (its statistics frozen: they are folded).

Integer neurons
===============
For a target whose deployed network is an integer graph (Loihi 2: ``integer_graph`` given to :func:`enable`,
e.g. :func:`neuroposter.targets.training_quantiser`), the forward pass also runs the chip's integer neuron,
read from that graph (the same equations as :func:`neuroposter.ir.int_neuron.int_lif_step`), in float64 on
integer values:

* a connection into a neuron population floors its synaptic sum in the population's integer units
  (``a = floor(y * g s)``: Lava's flooring weight exponent shift; exact when the exponent is not negative);
* each LIF takes ``I = round(x g s 2**act_shift) + r`` (``r``: the graph's ``bias_rounding``, the 13-bit
  mantissa split of the bias), decays with the chip's truncating shift, saturates at its state width, fires
  on ``v > vth << threshold_shift`` and resets to 0;
* the read-out bias is rounded to the Output's integer scale.

The pixel SDT
=============
:class:`~neuroposter.models.sdt_pixels.PixelSDT` adds its stem: ``stem.conv1`` and ``stem.conv2`` are connections
(``nn.Conv2d`` with its ``BatchNorm2d`` folded), and each 2x2 average pool's 1/4 sits in the next connection's weights
(``stem.conv2``, ``embed``: ``div = 4``), as the lowering writes it (the graph sums the pool; the integer graph composes
pool and connection into one synapse whose every weight is one of those). Its analog image is the Loihi target's
**graded input**: the first synapse sees ``clip(rint(x 2**k), -q, q) / 2**k`` (:func:`graded_input`, straight-through;
``2**k`` from the arithmetic's ``input_amax``, the training split's largest ``|x|``, and the payload bits of the
integer graph's Input), and its integer units fold the ``2**-k`` back in. The lowering of a quantisation-aware model
records ``input_amax`` in ``graph.metadata``, where the Loihi target takes its input scale from: training and export
quantise the image alike by construction.

Gradients: straight-through for every rounding, the model's own surrogate on the threshold (applied in float
units, ``v / (s 2**act_shift)``, so the gradient scale is the float model's). The integer graph is rebuilt from
the current weights whenever they change (a lowering and a quantisation, tens of milliseconds), so scales and
bias roundings follow the training. The forward pass then computes what the deployed network computes; the
export measures the rest (deployed vs trained agreement over the whole test split).

The arithmetic a run was trained with is stored in its ``model.json`` (``"deploy"``) and restored by
``neuroposter.train.load_run``, so the run's model *is* the network the target deploys.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from types import MethodType
from typing import Any, Callable, Mapping

import numpy as np
import torch
from norse.torch.functional.threshold import threshold
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from neuroposter.errors import NeuroposterError
from neuroposter.ir.lower import fold_bn_tensors
from neuroposter.ir.quantize import pow2_exponent

__all__ = ["WEIGHT_SCHEMES", "Arithmetic", "Connection", "QATError", "connections", "quantize_tensor",
           "fake_quant", "enable", "disable", "arithmetic_of", "deployed_weights", "round_ste", "IntegerPlan", "IntLIFFunction",
           "integer_plan", "deployed_connection", "graded_input", "input_amax_of"]

#: Weight grids: ``pow2`` (mantissa x shared power-of-two exponent: Loihi 2) and ``grid`` (symmetric linear grid
#: over the connection's largest weight; 1 bit: sign x mean magnitude: the simulated chips).
WEIGHT_SCHEMES = ("pow2", "grid")
TINY = 1e-30   # as the Loihi quantiser: weights below this magnitude quantise to 0


class QATError(NeuroposterError):
    """A model or arithmetic quantisation-aware training cannot handle (says which and why)."""


@dataclass(frozen=True)
class Arithmetic:
    """The deployed weight arithmetic a run is trained with (``model.json`` ``"deploy"``).

    Attributes:
        target: the deployment target (``loihi``, ``spinnaker2``, ...).
        profile: the hardware profile the widths come from.
        weights: the weight scheme (:data:`WEIGHT_SCHEMES`).
        weight_bits: weight precision in bits (including the sign).
        input_amax: a direct-encoded (analog) input's range, the largest ``|x|`` it takes (the pixel SDT's image:
            the training split's largest ``|x|``); the lowering records it (``graph.metadata["input_amax"]``) and
            the Loihi target's graded input takes its scale from it, so training and export agree by
            construction. None: a spiking input.
    """

    target: str
    profile: str
    weights: str
    weight_bits: int
    input_amax: float | None = None

    def __post_init__(self) -> None:
        if self.weights not in WEIGHT_SCHEMES:
            raise QATError(f"unknown weight scheme {self.weights!r}; valid: {', '.join(WEIGHT_SCHEMES)}")
        if int(self.weight_bits) < 1 or (self.weights == "pow2" and int(self.weight_bits) < 2):
            raise QATError(f"weight_bits={self.weight_bits} is too small for the {self.weights} scheme")
        if self.input_amax is not None and not (math.isfinite(float(self.input_amax)) and float(self.input_amax) > 0):
            raise QATError(f"input_amax={self.input_amax} must be a positive finite number")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (``input_amax`` only when set, so a spiking model's record is as before)."""
        d = asdict(self)
        if d["input_amax"] is None:
            del d["input_amax"]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Arithmetic:
        """From :meth:`to_dict` (as stored in ``model.json``).

        Raises:
            QATError: a field is missing or invalid.
        """
        try:
            amax = d.get("input_amax")
            return cls(str(d["target"]), str(d["profile"]), str(d["weights"]), int(d["weight_bits"]),
                       None if amax is None else float(amax))
        except (KeyError, TypeError, ValueError) as exc:
            raise QATError(f"invalid deploy arithmetic {dict(d)!r}: {exc}") from None

    def describe(self) -> str:
        """One line: ``loihi (loihi2 profile): 8-bit mantissa x power-of-two exponent per connection``."""
        grid = ("mantissa x power-of-two exponent per connection" if self.weights == "pow2"
                else ("sign x mean magnitude per connection" if self.weight_bits == 1
                      else "levels over each connection's largest weight"))
        graded = "" if self.input_amax is None else f", graded input over |x| <= {self.input_amax:g}"
        return f"{self.target} ({self.profile} profile): {self.weight_bits}-bit {grid}{graded}"


@dataclass(frozen=True)
class Connection:
    """One connection of the deployed graph as the model holds it.

    Attributes:
        path: the graph node (and Linear module) path, e.g. ``"blocks.0.attn.q"``.
        linear: module path of the ``nn.Linear`` (or ``nn.Conv2d``: the pixel SDT's stem).
        bn: module path of the BatchNorm folded into it (None: none).
        div: the lowering divides the folded weight by this (the read-out's mean over ``N`` tokens; a 2x2 average
            pool's 4 before the pixel SDT's ``stem.conv2`` and ``embed``, whose graph input is the pool's sum).
    """

    path: str
    linear: str
    bn: str | None = None
    div: int = 1


def connections(model: nn.Module) -> list[Connection]:
    """The connections of ``model``'s deployed graph, as :mod:`neuroposter.ir.lower` builds them (a chip-fitted
    chain's host projection is not one: it runs on the host CPU, in float).

    Raises:
        QATError: a model without a deployed graph (the message lists the supported ones).
    """
    name = type(model).__name__
    if name in ("SpikeDrivenTransformer", "PixelSDT"):
        # the pixel SDT: its stem's convolutions first; each 2x2 average pool's 1/4 is in the next weights
        # (neuroposter.ir.lower: the graph sums the pool), so stem.conv2 and embed divide by 4
        pixels = name == "PixelSDT"
        out = ([Connection("stem.conv1", "stem.conv1", "stem.bn1"), Connection("stem.conv2", "stem.conv2",
                                                                               "stem.bn2", 4)] if pixels else [])
        out.append(Connection("embed", "embed", "embed_bn", 4 if pixels else 1))
        for i in range(len(model.blocks)):
            a, m = f"blocks.{i}.attn", f"blocks.{i}.mlp"
            out += [Connection(f"{a}.{x}", f"{a}.{x}", f"{a}.{x}_bn") for x in ("q", "k", "v", "proj")]
            out += [Connection(f"{m}.{x}", f"{m}.{x}", f"{m}.{x}_bn") for x in ("fc1", "fc2")]
        return out + [Connection("head", "head", None, int(model.cfg.n_tokens))]
    if name == "SpikingMLPNet":
        return [Connection("fc1", "fc1", "fc1_bn"), Connection("fc2", "fc2", "fc2_bn"), Connection("head", "head")]
    if name == "ChipSNN":   # the host projection runs on the host CPU in float: not a connection of the chip
        out = [Connection(f"layers.{i}.fc", f"layers.{i}.fc", f"layers.{i}.bn") for i in range(len(model.layers))]
        return out + [Connection("head", "head")]
    if name == "ChipCNN":   # its host layers run on the host CPU in float: not connections of the chip
        out = [Connection(f"convs.{i}.conv", f"convs.{i}.conv", f"convs.{i}.bn")
               for i in range(int(model.host_layers), len(model.convs))]
        return out + [Connection("head", "head")]
    raise QATError(f"no quantisation-aware training for a {name}; supported: SpikeDrivenTransformer (sdt), "
                   "PixelSDT (sdt-pixels), SpikingMLPNet (snn-mlp), ChipSNN (chip-snn), ChipCNN (chip-cnn)")


def quantize_tensor(w: Tensor, scheme: str, bits: int) -> Tensor:
    """``w`` on the deployed grid (no gradient), float64, with the deployment quantisers' formulas.

    Args:
        w: weights (any shape).
        scheme: ``"pow2"`` or ``"grid"`` (:data:`WEIGHT_SCHEMES`).
        bits: precision including the sign.
    """
    w = w.detach().to(torch.float64)
    qmax = (1 << (bits - 1)) - 1
    amax = float(w.abs().max()) if w.numel() else 0.0
    if not math.isfinite(amax):
        raise QATError("weights contain NaN or inf")
    if scheme == "pow2":
        if amax < TINY:
            return torch.zeros_like(w)
        step = 2.0 ** pow2_exponent(amax, qmax)
        q = torch.clamp(torch.round(w / step), -qmax, qmax) * step
        return q if float(q.abs().max()) >= TINY else torch.zeros_like(w)
    if scheme == "grid":
        if bits == 1:
            nz = w[w != 0]
            return torch.sign(w) * (float(nz.abs().mean()) if nz.numel() else 0.0)
        if amax <= 0:
            return w.clone()
        step = amax / qmax
        return torch.clamp(torch.round(w / step), -qmax, qmax) * step
    raise QATError(f"unknown weight scheme {scheme!r}; valid: {', '.join(WEIGHT_SCHEMES)}")


def fake_quant(w: Tensor, scheme: str, bits: int) -> Tensor:
    """:func:`quantize_tensor` in the forward pass, the identity in the backward pass (straight-through)."""
    return w + (quantize_tensor(w, scheme, bits) - w).detach()


def _folded(lin: nn.Module, bn: nn.Module | None) -> tuple[Tensor, Tensor]:
    """``(W', b')`` in float64, differentiable: the lowering's own fold."""
    return fold_bn_tensors(lin.weight, lin.bias, bn)


def round_ste(x: Tensor, fn: Callable[[Tensor], Tensor] = torch.round) -> Tensor:
    """``fn(x)`` (round, floor, trunc) in the forward pass, the identity in the backward pass."""
    return x + (fn(x.detach()) - x).detach()


@dataclass(frozen=True)
class _ConnPlan:
    gain_scale: float        # integer synaptic units per float current unit (g * s of the destination)
    to_output: bool          # feeds the read-out (bias rounded to its scale) rather than a neuron population
    in_scale: float = 0.0    # from a graded (analog) input: its payload scale 2**k (0: spikes)
    in_qmax: float = 0.0     # ... and its largest payload 2**(message_bits-1) - 1


@dataclass(frozen=True)
class _NeuronPlan:
    gain_scale: float        # g * s: the population's integer units per float input current
    unit: float              # s * 2**act_shift: integer membrane units per float membrane unit
    decay: float             # (2**decay_bits - dv - decay_v_offset) / 2**decay_bits
    decay_bits: int
    act: float               # 2**act_shift
    vth: float               # vth << threshold_shift (integer membrane units)
    limit: float             # 2**(state_bits - 1)
    bias_rounding: Tensor    # per neuron, in the model's layout (channels last)


@dataclass
class IntegerPlan:
    """The integer formats a model's forward pass emulates, read from its deployed integer graph."""

    conns: dict[str, _ConnPlan]
    neurons: dict[str, _NeuronPlan]


def integer_plan(flat_int: Any) -> IntegerPlan:
    """The :class:`IntegerPlan` of a flattened integer graph (nodes' ``metadata["loihi"]``, ``int_format``).

    Raises:
        QATError: the graph carries no integer format.
    """
    from neuroposter.ir.int_neuron import IntFormat

    if "int_format" not in (flat_int.metadata or {}):
        raise QATError("the deployed graph has no integer format (metadata['int_format'])")
    fmt = IntFormat.from_mapping(flat_int.metadata["int_format"])
    conns: dict[str, _ConnPlan] = {}
    neurons: dict[str, _NeuronPlan] = {}

    def graded(conn: str) -> dict[str, Any]:
        """The graded-input format of a connection's source (empty: spikes)."""
        for p in flat_int.preds(conn):
            g = (flat_int.nodes[p].nir.metadata or {}).get("loihi") or {}
            if flat_int.nodes[p].role == "input" and "message_bits" in g:
                return g
        return {}

    def gain(conn: str) -> float:
        # a synapse from a graded input has the payload scale 2**-k folded in (its weights act on x 2**k):
        # per float current unit it is scale * 2**k
        return float(flat_int.nodes[conn].nir.metadata["loihi"]["scale"]) * float(graded(conn).get("scale", 1.0))

    def conn_preds(node: str) -> list[str]:
        """The connections into ``node``, through reshapes (a composed pool's ``"<conv>.flatten"``)."""
        out: list[str] = []
        for p in flat_int.preds(node):
            role = flat_int.nodes[p].role
            out += [p] if role == "conn" else (conn_preds(p) if role == "reshape" else [])
        return out

    for path, nd in flat_int.nodes.items():
        meta = (nd.nir.metadata or {}).get("loihi") or {}
        if nd.role == "conn" and "scale" in meta:
            g = graded(path)
            conns[path] = _ConnPlan(gain(path), all(flat_int.nodes[d].role == "output" for d in flat_int.succs(path)),
                                    float(g.get("scale", 0.0)),
                                    float((1 << (int(g["message_bits"]) - 1)) - 1) if g else 0.0)
        elif nd.role == "neuron" and "dv" in meta:
            if int(meta["du"]) + fmt.decay_u_offset != fmt.decay_unity:
                raise QATError(f"{path}: a neuron with a current decay (du={meta['du']}) is not emulated; the "
                               "project's LIF has none")
            gs = [gain(p) for p in conn_preds(path)]
            if not gs:
                continue
            rnd = np.asarray(meta.get("bias_rounding", np.zeros(nd.out_shape)), dtype=np.float64)
            rnd = rnd.T if rnd.ndim == 2 else rnd         # graph [d, N] channels first -> model [N, d]
            #                                               (a stem's [C, H, W] is the model's layout already)
            neurons[path] = _NeuronPlan(
                gain_scale=gs[0], unit=float(meta["scale"]) * float(1 << fmt.act_shift),
                decay=(fmt.decay_unity - int(meta["dv"]) - fmt.decay_v_offset) / fmt.decay_unity,
                decay_bits=fmt.decay_bits, act=float(1 << fmt.act_shift),
                vth=float(int(meta["vth"]) << fmt.threshold_shift), limit=float(fmt.state_limit),
                bias_rounding=torch.from_numpy(np.ascontiguousarray(rnd)))
    return IntegerPlan(conns, neurons)


class _QATState:
    """What :func:`enable` attaches to a model: the arithmetic, the integer graph builder and its last plan."""

    def __init__(self, arithmetic: Arithmetic, integer_graph: Callable[[nn.Module], Any] | None) -> None:
        self.arithmetic = arithmetic
        self.integer_graph = integer_graph
        self.plan: IntegerPlan | None = None
        self.version: tuple[int, ...] | None = None
        self.hook: Any = None

    def pre_hook(self, model: nn.Module, args: Any) -> None:
        """The model's forward pre-hook (a bound method, so a deep copy of the model refreshes its own copy)."""
        self.refresh(model)

    def refresh(self, model: nn.Module) -> None:
        """Rebuilds the integer plan when the parameters changed since the last one."""
        if self.integer_graph is None:
            return
        version = tuple(p._version for p in model.parameters()) + tuple(b._version for b in model.buffers())
        if version == self.version and self.plan is not None:
            return
        was = model.training
        model.train(False)
        try:
            with torch.no_grad():
                self.plan = integer_plan(self.integer_graph(model))
        finally:
            model.train(was)
        self.version = version


def _deployed(lin: nn.Module, bn: nn.Module | None, div: int, arith: Arithmetic) -> tuple[Tensor, Tensor]:
    w, b = _folded(lin, bn)
    return fake_quant(w / div, arith.weights, arith.weight_bits) * div, b


def _apply(mod: nn.Module, x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
    """The module's own operation with weights ``w``, bias ``b``: a Linear's or a Conv2d's."""
    if isinstance(mod, nn.Conv2d):
        if mod.padding_mode != "zeros":
            raise QATError(f"{mod}: only zero padding is deployed")
        return nn.functional.conv2d(x, w, b, mod.stride, mod.padding, mod.dilation, mod.groups)
    return nn.functional.linear(x, w, b)


def graded_input(x: Tensor, scale: float, qmax: float) -> Tensor:
    """An analog input as the target sends it, ``clip(rint(x scale), -qmax, qmax) / scale`` (the Loihi target's
    graded spikes, :func:`neuroposter.targets.loihi.fixed_point.quantize_input`, in input units), float64;
    straight-through inside the range (the data has no gradient to give; the straight-through keeps any
    input-gradient use well defined)."""
    xs = x.to(torch.float64) * scale
    return torch.clamp(round_ste(xs), -qmax, qmax) / scale


def _qat_forward(self: nn.Module, x: Tensor) -> Tensor:
    st: _QATState = self._qat_state
    w, b = _deployed(self, self._qat_bn, self._qat_div, st.arithmetic)
    plan = st.plan.conns.get(self._qat_path) if st.plan is not None else None
    if plan is None:
        return _apply(self, x, w.to(x.dtype), b.to(x.dtype))
    x = graded_input(x, plan.in_scale, plan.in_qmax) if plan.in_scale else x.to(torch.float64)
    y = _apply(self, x, w, None) * plan.gain_scale
    if isinstance(self, nn.Conv2d):
        b = b.reshape(-1, 1, 1)             # per output channel
    if plan.to_output:    # the read-out: the host adds the bias rounded to the Output's scale
        return (y + round_ste(b * plan.gain_scale)) / plan.gain_scale
    return round_ste(y, torch.floor) / plan.gain_scale + b      # Lava's flooring exponent shift


def _kernel_applies(*ts: Tensor) -> bool:
    """Whether the compiled integer LIF (:mod:`neuroposter.ir.int_lif_kernel`) runs these tensors: CPU float64
    (float32 would be computed in float64 there, not as torch computes it)."""
    return all(t.device.type == "cpu" and t.dtype == torch.float64 for t in ts)


def _int_lif_steps(x: Tensor, plan: _NeuronPlan, rnd: Tensor, keep: bool) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """The integer LIF's forward over ``x [T, ...]`` (float64) without a graph: spikes ``[T, ...]`` and (``keep``)
    the clamped membranes before the reset and the clamp's pass mask, which the backward pass reads. The same
    operations in the same order as the step-wise autograd path, so the spikes are bit-identical (a straight-through
    rounding ``x + (round(x) - x)`` is exactly ``round(x)``)."""
    gain = plan.gain_scale * plan.act
    lo, hi = -plan.limit + 1, plan.limit - 1
    if _kernel_applies(x, rnd):   # the same arithmetic compiled into one pass (bit-identical; int_lif_kernel)
        from neuroposter.ir.int_lif_kernel import int_lif_forward

        z, vc, ok = int_lif_forward(x, rnd, gain=gain, decay=plan.decay, lo=lo, hi=hi, vth=plan.vth, unit=plan.unit)
        return (z, vc, ok) if keep else (z, None, None)
    v = torch.zeros_like(x[0])
    z_all = torch.empty_like(x)
    vc_all = torch.empty_like(x) if keep else None
    ok_all = torch.empty(x.shape, dtype=torch.bool, device=x.device) if keep else None
    for t in range(x.shape[0]):
        i_t = torch.round(x[t] * gain) + rnd
        p = torch.trunc(v * plan.decay) + i_t
        if ok_all is not None:
            torch.logical_and(p >= lo, p <= hi, out=ok_all[t])
        v = torch.clamp(p, lo, hi)
        if vc_all is not None:
            vc_all[t] = v
        z = torch.gt((v - plan.vth) / plan.unit, 0.0).to(x.dtype)
        z_all[t] = z
        v = v - z * v
    return z_all, vc_all, ok_all


class IntLIFFunction(torch.autograd.Function):
    """The chip's integer LIF over all ``T`` steps as one autograd node, with the SuperSpike surrogate (Norse's
    ``"super"``: ``1 / (|s| + 1)^2`` of ``s = (v - vth) / unit``) and straight-through roundings; ``apply(x, plan,
    rnd)``. Its spikes are those of the step-wise path bit for bit; its input gradient is the same recursion
    (equal to rounding: autograd sums the membrane's three gradient terms in another order):

    .. math::
        \bar z_t = g_t - \bar v_t v_t,\quad
        \bar v^c_t = \frac{\bar z_t}{u (|s_t| + 1)^2} + (1 - z_t) \bar v_t,\quad
        \bar p_t = [lo \le p_t \le hi]\, \bar v^c_t,\quad
        \bar x_t = g s\, 2^{a} \bar p_t,\quad
        \bar v_{t-1} = d\, \bar p_t
    """

    @staticmethod
    def forward(ctx, x: Tensor, plan: _NeuronPlan, rnd: Tensor) -> Tensor:  # noqa: ANN001 - torch's ctx
        z, vc, ok = _int_lif_steps(x, plan, rnd, keep=True)
        ctx.plan = plan
        ctx.save_for_backward(z, vc, ok)
        return z

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, None, None]:  # noqa: ANN001
        z_all, vc_all, ok_all = ctx.saved_tensors
        plan = ctx.plan
        gain = plan.gain_scale * plan.act
        if _kernel_applies(grad, vc_all):
            from neuroposter.ir.int_lif_kernel import int_lif_backward

            return int_lif_backward(grad, z_all, vc_all, ok_all, gain=gain, decay=plan.decay, vth=plan.vth,
                                    unit=plan.unit), None, None
        gx = torch.empty_like(grad)
        gv: Tensor | None = None
        for t in range(grad.shape[0] - 1, -1, -1):
            vc, z = vc_all[t], z_all[t]
            den = ((vc - plan.vth) / plan.unit).abs_().add_(1.0).pow_(2)
            gz = grad[t] if gv is None else grad[t] - gv * vc
            gvc = gz / den / plan.unit
            if gv is not None:
                gvc = gvc + gv * (1.0 - z)
            gp = gvc.masked_fill_(~ok_all[t], 0.0)
            gx[t] = gp * gain
            gv = gp * plan.decay
        return gx, None, None


def _int_lif_forward(self: nn.Module, x: Tensor) -> Tensor:
    """The chip's integer LIF over ``x [T, ...]`` (module docstring), spikes as the float LIF returns them."""
    st: _QATState = self._qat_state
    plan = st.plan.neurons.get(self._qat_path) if st.plan is not None else None
    if plan is None:
        return type(self).forward(self, x)
    x = x.to(torch.float64)
    rnd = plan.bias_rounding.to(x.device)
    p = self.cell.p
    if p.method == "super" and getattr(self, "_qat_fused", True):   # one autograd node over T (IntLIFFunction)
        if torch.is_grad_enabled() and x.requires_grad:
            return self._record(IntLIFFunction.apply(x, plan, rnd))
        return self._record(_int_lif_steps(x, plan, rnd, keep=False)[0])
    v = torch.zeros_like(x[0])
    out = []
    for x_t in x.unbind(0):
        i_t = round_ste(x_t * (plan.gain_scale * plan.act)) + rnd
        v = round_ste(v * plan.decay, torch.trunc) + i_t
        v = torch.clamp(v, -plan.limit + 1, plan.limit - 1)
        z = threshold((v - plan.vth) / plan.unit, p.method, p.alpha)
        v = v - z * v
        out.append(z)
    return self._record(torch.stack(out))   # the LIF's own bookkeeping (firing rates, recorded spikes)


def _identity(self: nn.Module, x: Tensor) -> Tensor:
    return x


def _set(mod: nn.Module, **attrs: Any) -> None:
    for k, v in attrs.items():
        object.__setattr__(mod, k, v)     # plain attributes: neither sub-modules nor state


def enable(model: nn.Module, arithmetic: Arithmetic,
           integer_graph: Callable[[nn.Module], Any] | None = None) -> nn.Module:
    """Makes ``model`` compute with the deployed arithmetic (module docstring); in place.

    Every connection's Linear computes with its folded, quantised weights and the folded BatchNorm becomes
    the identity (its running statistics stay as they are: frozen). With ``integer_graph`` (the model ->
    its flattened deployed integer graph) the LIF neurons run the chip's integer neuron too. Parameters,
    buffers and the state dict are unchanged, so a checkpoint loads either way. Calling it again replaces
    the arithmetic.

    Raises:
        QATError: an unsupported model, or a BatchNorm without running statistics.
    """
    from neuroposter.models.lif import LIF

    disable(model)
    state = _QATState(arithmetic, integer_graph)
    for c in connections(model):
        lin = model.get_submodule(c.linear)
        bn = model.get_submodule(c.bn) if c.bn else None
        if bn is not None and (not bn.track_running_stats or bn.running_mean is None):
            raise QATError(f"{c.bn}: a BatchNorm without running statistics cannot be folded")
        _set(lin, _qat_bn=bn, _qat_div=int(c.div), _qat_state=state, _qat_path=c.path,
             forward=MethodType(_qat_forward, lin))
        if bn is not None:
            _set(bn, _qat_state=state, forward=MethodType(_identity, bn))
    if integer_graph is not None:
        for path, mod in model.named_modules():
            if isinstance(mod, LIF):
                _set(mod, _qat_state=state, _qat_path=path, forward=MethodType(_int_lif_forward, mod))
    state.hook = model.register_forward_pre_hook(state.pre_hook)
    _set(model, _qat_state=state)
    return model


def disable(model: nn.Module) -> nn.Module:
    """Undoes :func:`enable` (the float forward again); a model without it is left as it is."""
    state = getattr(model, "_qat_state", None)
    if state is None:
        return model
    state.hook.remove()
    for mod in model.modules():
        for attr in ("forward", "_qat_bn", "_qat_div", "_qat_state", "_qat_path"):
            mod.__dict__.pop(attr, None)
    return model


def arithmetic_of(model: nn.Module) -> Arithmetic | None:
    """The arithmetic :func:`enable` set on ``model`` (None: the float forward)."""
    state = getattr(model, "_qat_state", None)
    return None if state is None else state.arithmetic


def input_amax_of(model: nn.Module) -> float | None:
    """The analog input range ``model`` was trained with (:attr:`Arithmetic.input_amax`; None: none recorded).
    The lowering writes it into ``graph.metadata["input_amax"]``, which the Loihi target's graded input uses."""
    arith = arithmetic_of(model)
    return None if arith is None or arith.input_amax is None else float(arith.input_amax)


def _on_grid(lin: nn.Linear, bn: nn.BatchNorm1d | None, div: int, arith: Arithmetic) -> tuple[np.ndarray, np.ndarray]:
    """``(Q(W'/div), b')`` as float64 numpy, as the lowering lays a connection out."""
    with torch.no_grad():
        w, b = _folded(lin, bn)
        w = quantize_tensor(w / div, arith.weights, arith.weight_bits)
    # detached: for a float64 model without BatchNorm the fold returns the parameters themselves
    return w.detach().cpu().numpy(), b.detach().cpu().numpy()


def deployed_weights(model: nn.Module, arithmetic: Arithmetic) -> dict[str, np.ndarray]:
    """The weight each connection computes with under ``arithmetic`` (as the lowering lays it out, i.e.
    ``Q(W'/div)``), keyed by connection path, float64 numpy (for checks against the export's quantiser)."""
    return {c.path: _on_grid(model.get_submodule(c.linear), model.get_submodule(c.bn) if c.bn else None, c.div,
                             arithmetic)[0] for c in connections(model)}


def deployed_connection(linear: nn.Linear, bn: nn.BatchNorm1d | None, div: int = 1
                        ) -> tuple[np.ndarray, np.ndarray] | None:
    """``(Q(W'/div), b')`` (float64 numpy) a Linear of an :func:`enable`-d model computes with, as the lowering
    lays it out; None when the Linear is not under quantisation-aware arithmetic."""
    state = linear.__dict__.get("_qat_state")
    return None if state is None else _on_grid(linear, bn, div, state.arithmetic)
