"""The one spiking neuron of the project: a discrete LIF built on Norse's ``LIFBoxCell``.

Equations (``dt = 1``, ``v_leak = 0``, ``v_reset = 0``, one step per time index ``t``), exactly as
Norse 1.1.0 ``norse.torch.functional.lif_box.lif_box_feed_forward_step`` computes them:

.. math::
    \\tilde v_t = v_{t-1} + \\frac{1}{\\tau}\\,(x_t - v_{t-1})    \\qquad\\text{(leaky integration first)}

    z_t = \\Theta(\\tilde v_t - v_{th}) = [\\tilde v_t > v_{th}]   \\qquad\\text{(strict, on the updated } \\tilde v_t)

    v_t = (1 - z_t)\\,\\tilde v_t + z_t \\cdot 0                    \\qquad\\text{(hard reset to 0)}

Update order, verified in the Norse source: the membrane is integrated first (``v_decayed = v +
dt * tau_mem_inv * (x + v_leak - v)``), the threshold is applied to that *new* value
(``threshold(v_decayed - v_th)``, whose forward is ``norse.torch.functional.heaviside.heaviside``,
i.e. ``torch.gt(x, 0)`` -- strict, a membrane exactly at threshold does not fire), and the reset is
``reset_value``: ``(1 - z) * v_decayed + z * v_reset``. ``v_0 = 0`` before the first step.
With ``tau = 2`` this is ``v <- (v + x) / 2``. The threshold's backward pass is the surrogate
named by ``surrogate`` (Norse's ``"super"``: SuperSpike, ``dz/dv = 1 / (1 + |v - v_th|)^2``); the
reset is not detached (Norse's choice).

Tensors are time-first: ``forward`` takes ``x [T, ...]`` and loops only the neuron over ``T``;
every stateless layer around it runs once on the folded ``T * B`` batch.

Backends (``LIF(..., backend=...)``, default :data:`DEFAULT_BACKEND`):

* ``"fused"`` -- :class:`FusedLIFFunction`: one autograd node for all ``T`` steps. The forward loops over ``T``
  without building a graph and keeps only the integrated membranes ``v~ [T, ...]`` and the spike mask; the
  backward runs the reverse-time recursion of the same equations, written to perform the very floating-point
  operations autograd performs through Norse's step (same constants: Norse's float32 ``tau_mem_inv`` and
  ``v_th`` tensors, same type promotion), so spikes and input gradients are bit-identical to Norse's in float32
  and float64 (tests/models/test_fused_lif.py). With ``c = 1/tau``, ``s_t = v~_t - v_th``, ``g_t`` the
  gradient on ``z_t`` and ``\\bar v_t`` the gradient on the reset membrane ``v_t`` (0 after the last step):

  .. math::
      \\bar z_t = g_t - \\bar v_t\\,\\tilde v_t,\\quad
      \\bar{\\tilde v}_t = \\frac{\\bar z_t}{(|s_t| + 1)^2} + (1 - z_t)\\,\\bar v_t,\\quad
      \\bar x_t = c\\,\\bar{\\tilde v}_t,\\quad
      \\bar v_{t-1} = \\bar{\\tilde v}_t - \\bar x_t

  (the reset ``(1 - z) v~`` is differentiated, not detached, as in Norse). Only the ``"super"`` surrogate is
  fused (SuperSpike as Norse 1.1.0 implements it: ``1 / (|s| + 1)^2``, its ``alpha`` is not used); another
  surrogate falls back to the Norse path.

  On CPU float32/float64 tensors the fused forward and backward run as compiled numba kernels
  (:mod:`neuroposter.models.lif_kernel`: one pass per neuron over ``T``, neurons in parallel), which perform the same
  floating-point operations in the same order and precision: bit-identical spikes and gradients to the torch form
  (``tests/models/test_lif_kernel.py``); other devices and dtypes run the torch form.
* ``"fused-torch"`` -- the fused backend always in its torch form (the kernels' reference; any device).
* ``"norse"`` -- Norse's ``LIFBoxCell`` once per step (an autograd graph per step): the reference.

The two differ only where a membrane is infinite (the Norse reset gives ``0 * inf = nan``, the fused one 0) and
in the sign of zero membranes / gradients, which no later operation can tell apart.
"""

from __future__ import annotations

import torch
from norse.torch import LIFBoxCell, LIFBoxParameters
from norse.torch.functional.lif_box import LIFBoxFeedForwardState
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from neuroposter.models.lif_kernel import kernel_applies, lif_kernel_backward, lif_kernel_forward

__all__ = ["LIF", "SpikeRecorder", "LIF_BACKENDS", "DEFAULT_BACKEND", "FusedLIFFunction", "lif_fused", "set_lif_backend",
           "lif_firing_rates", "freeze_bias_before_bn"]

#: The ways :class:`LIF` can run its ``T`` steps (module docstring).
LIF_BACKENDS = ("fused", "norse", "fused-torch")
#: The backend a :class:`LIF` built without ``backend=`` uses.
DEFAULT_BACKEND = "fused"
#: Surrogates the fused backend implements (others run on the Norse path).
FUSED_SURROGATES = ("super",)


def _fused_forward(x: Tensor, c: Tensor, v_th: Tensor, keep: bool) -> tuple[Tensor, Tensor, Tensor | None]:
    """Spikes ``[T, ...]``, the same as a bool mask, and (``keep``) the integrated membranes ``v~ [T, ...]``,
    without a graph.

    The operations are Norse's (``v + c (x - v)``, ``(v~ - v_th) > 0``), with ``c`` and ``v_th`` the 0-dim
    parameter tensors of the cell, so type promotion and rounding are the same.
    """
    v = torch.zeros_like(x[0])
    fired = torch.empty(x.shape, dtype=torch.bool, device=x.device)
    vd_all = torch.empty(x.shape, dtype=x.dtype, device=x.device) if keep else None
    for t in range(x.shape[0]):   # out= and in-place forms of the same kernels: fewer large allocations
        dv = torch.sub(x[t], v)
        torch.mul(c, dv, out=dv)          # c first, as Norse: for half types c * b and b * c round differently
        vd = torch.add(v, dv, out=vd_all[t]) if vd_all is not None else v.add_(dv)
        z = torch.gt(torch.sub(vd, v_th, out=dv), 0.0, out=fired[t])     # dv reused for s = v~ - v_th
        v = vd.masked_fill(z, 0.0) if vd_all is not None else vd.masked_fill_(z, 0.0)
    return fired.to(x.dtype), fired, vd_all


def _fused_backward(grad: Tensor, vd_all: Tensor, fired_all: Tensor, c: Tensor, v_th: Tensor) -> Tensor:
    """Gradient on the input currents: the reverse-time recursion (module docstring), operation for operation
    what autograd computes through Norse's steps."""
    gx = torch.empty_like(grad)
    gv: Tensor | None = None
    for t in range(grad.shape[0] - 1, -1, -1):    # in-place forms of the same kernels, on buffers of this loop
        vd = vd_all[t]
        s = vd - v_th
        den = s.abs_().add_(1.0).pow_(2)                   # SuperSpike, as norse.torch.functional.superspike
        gz = grad[t].clone() if gv is None else torch.sub(grad[t], torch.mul(gv, vd))
        gvd = gz.div_(den)
        if gv is not None:
            gvd.add_(gv.masked_fill_(fired_all[t], 0.0))          # through the reset (1 - z) v~
        gb = torch.mul(gvd, c, out=gx[t])
        gv = gvd.sub_(gb)
    return gx


class FusedLIFFunction(torch.autograd.Function):
    """The LIF over all ``T`` steps as one autograd node (module docstring); ``apply(x, c, v_th, compiled)`` with
    ``c`` and ``v_th`` 0-dim tensors (no gradient); ``compiled``: the numba kernels where they apply (CPU
    float32/float64), else the torch form (bit-identical)."""

    @staticmethod
    def forward(ctx, x: Tensor, c: Tensor, v_th: Tensor, compiled: bool = True) -> Tensor:  # noqa: ANN001
        use_kernel = compiled and kernel_applies(x)
        run = lif_kernel_forward if use_kernel else _fused_forward
        spikes, fired, vd_all = run(x, c, v_th, keep=True)
        ctx.use_kernel = use_kernel
        ctx.save_for_backward(vd_all, fired, c, v_th)
        return spikes

    @staticmethod
    @once_differentiable          # the saved membranes carry no graph: no second derivatives
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, None, None, None]:  # noqa: ANN001
        vd_all, fired, c, v_th = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None, None
        run = lif_kernel_backward if ctx.use_kernel and grad.dtype == vd_all.dtype else _fused_backward
        return run(grad.contiguous(), vd_all, fired, c, v_th), None, None, None


def lif_fused(x: Tensor, c: Tensor, v_th: Tensor, compiled: bool = True) -> Tensor:
    """Spikes of the LIF over ``x [T, ...]`` (fused backend): one autograd node when ``x`` needs a gradient,
    a plain loop otherwise; ``compiled``: the numba kernels on CPU float32/float64 (:mod:`.lif_kernel`)."""
    if torch.is_grad_enabled() and x.requires_grad:
        return FusedLIFFunction.apply(x, c, v_th, compiled)
    if compiled and kernel_applies(x):
        return lif_kernel_forward(x, c, v_th, keep=False)[0]
    return _fused_forward(x, c, v_th, keep=False)[0]


class SpikeRecorder:
    """What the project's spiking layers remember of their last forward: the spike sum and element count (firing
    rates, also over several batches) and, with ``record_spikes``, the (detached) spikes themselves. A mix-in of
    :class:`LIF`, the chip neurons and Xylo's neuron; call :meth:`_init_recorder` in ``__init__`` and return
    :meth:`_record` of the spikes from ``forward``."""

    record_spikes: bool
    last_spikes: Tensor | None

    def _init_recorder(self) -> None:
        self.record_spikes = False
        self.last_spikes = None
        self._spike_sum: Tensor | None = None
        self._numel = 0

    def _record(self, spikes: Tensor) -> Tensor:
        detached = spikes.detach()
        self._spike_sum = detached.sum()
        self._numel = detached.numel()
        self.last_spikes = detached if self.record_spikes else None
        return spikes

    def _record_count(self, spike_sum: Tensor, numel: int) -> None:
        """Records a forward computed elsewhere (a fused inference kernel): its spike sum and element count."""
        self._spike_sum = spike_sum
        self._numel = int(numel)
        self.last_spikes = None

    @property
    def firing_rate(self) -> float:
        """Spikes per element in the last forward (a fraction for 0/1 spikes, a mean count for multi-spike neurons;
        nan before any forward)."""
        if self._spike_sum is None or self._numel == 0:
            return float("nan")
        return float(self._spike_sum) / self._numel

    @property
    def spike_count(self) -> tuple[float, int]:
        """``(spikes, elements)`` of the last forward, for averaging rates over several batches."""
        if self._spike_sum is None:
            return 0.0, 0
        return float(self._spike_sum), self._numel


class LIF(SpikeRecorder, nn.Module):
    """Multi-step discrete LIF neuron layer (Norse ``LIFBoxCell``, ``dt = 1``, strict threshold).

    Args:
        tau: membrane time constant in steps (``tau_mem_inv = 1 / tau``); 2 in SDT.
        v_th: firing threshold; a neuron fires when its membrane is strictly above it.
        surrogate: Norse threshold method used for the backward pass (``"super"``, ``"triangle"``, ...).
        alpha: surrogate hyper-parameter passed to Norse (unused by ``"super"``).
        backend: ``"fused"`` (one autograd node over ``T``, compiled on CPU), ``"fused-torch"`` (the same in torch
            operations) or ``"norse"`` (Norse's cell per step); None:
            :data:`DEFAULT_BACKEND`. Both compute the same spikes and gradients (module docstring).

    Attributes:
        tau: membrane time constant (float).
        v_th: threshold (float).
        backend: the backend in use (may be changed on an existing module).
        record_spikes: when True, ``last_spikes`` keeps the (detached) output of the last forward.
    """

    def __init__(self, tau: float = 2.0, v_th: float = 1.0, *, surrogate: str = "super",
                 alpha: float = 100.0, backend: str | None = None) -> None:
        super().__init__()
        backend = DEFAULT_BACKEND if backend is None else backend
        if backend not in LIF_BACKENDS:
            raise ValueError(f"unknown LIF backend {backend!r}; valid: {', '.join(LIF_BACKENDS)}")
        self.backend = backend
        if tau < 1.0:
            raise ValueError(f"tau must be >= 1 (dt = 1), got {tau}")
        self.tau = float(tau)
        self.v_th = float(v_th)
        self.surrogate = surrogate
        p = LIFBoxParameters(
            tau_mem_inv=torch.as_tensor(1.0 / self.tau),
            v_leak=torch.as_tensor(0.0),
            v_th=torch.as_tensor(self.v_th),
            v_reset=torch.as_tensor(0.0),
            method=surrogate,
            alpha=torch.as_tensor(float(alpha)),
        )
        self.cell = LIFBoxCell(p, dt=1.0)
        self._init_recorder()

    def extra_repr(self) -> str:
        return f"tau={self.tau}, v_th={self.v_th}, surrogate={self.surrogate!r}"

    def forward(self, x: Tensor) -> Tensor:
        """Runs the neuron over time.

        Args:
            x: input currents ``[T, ...]`` (time first).

        Returns:
            Spikes ``[T, ...]`` (0/1 floats, same dtype as ``x``).
        """
        if x.dim() < 2:
            raise ValueError(f"LIF expects time-first input [T, ...] with at least 2 dims, got {tuple(x.shape)}")
        p = self.cell.p
        if self.backend in ("fused", "fused-torch") and p.method in FUSED_SURROGATES:
            c = p.tau_mem_inv * self.cell.dt      # Norse's ``dt * tau_mem_inv`` (dt = 1: exact)
            spikes = lif_fused(x, c.to(x.device), p.v_th.to(x.device), compiled=self.backend == "fused")
        else:
            state = LIFBoxFeedForwardState(v=torch.zeros_like(x[0]))
            out = []
            for x_t in x.unbind(0):  # one backward node for all steps (x[t] would scatter T full-size grads)
                z, state = self.cell(x_t, state)
                out.append(z)
            spikes = torch.stack(out)  # [T, ...]
        return self._record(spikes)


def set_lif_backend(module: nn.Module, backend: str) -> int:
    """Sets the backend of every :class:`LIF` inside ``module`` (itself included); returns how many.

    Raises:
        ValueError: an unknown backend (the message lists the valid ones).
    """
    if backend not in LIF_BACKENDS:
        raise ValueError(f"unknown LIF backend {backend!r}; valid: {', '.join(LIF_BACKENDS)}")
    n = 0
    for m in module.modules():
        if isinstance(m, LIF):
            m.backend = backend
            n += 1
    return n


def lif_firing_rates(module: nn.Module) -> dict[str, float]:
    """Firing rate of the last forward of every :class:`LIF` inside ``module``, keyed by module path."""
    return {name: m.firing_rate for name, m in module.named_modules() if isinstance(m, LIF)}


def freeze_bias_before_bn(linear: nn.Linear) -> None:
    """Zeroes and freezes the bias of a Linear whose output goes straight into a BatchNorm.

    Training-mode BatchNorm subtracts the batch mean, so such a bias has an identically zero
    gradient; left trainable, Adam turns float round-off in that gradient into lr-sized random
    steps (absorbed by BN's running mean, but they make runs differ across reduction orders, e.g.
    DDP vs one process). Kept as a zero tensor so the module layout matches the official SDT.
    """
    if linear.bias is not None:
        with torch.no_grad():
            linear.bias.zero_()
        linear.bias.requires_grad_(False)
