"""The integer LIF of :mod:`neuroposter.ir.int_neuron` over all its steps as one compiled CPU kernel (numba): the
integer reference simulator's neurons, and the one pass that checks and narrows its float inputs.

Stepped with torch operations (:func:`~neuroposter.ir.int_neuron.int_lif_step`), every step of a population makes
about twenty passes over its int64 states (multiply, sign, abs, shift, add, two ``where`` for the wrap, clamp,
compare, reset, conversions), each a separate memory-bound kernel: that was the larger part of the integer
``per_hop`` simulation of the demo SDT. Here blocks of a sample's neurons run in parallel (``prange``), each
block stepping its neurons row by row in one branch-free loop over int64 that LLVM vectorises (measured on this
machine's AVX-512 EPYC, 2560 neurons x 115 samples x 4 steps, one thread: 0.5 ns per neuron step, against 7 ns
for a scalar loop per neuron). The integer operations are the same as the torch step's, in the same order (module
docstring of :mod:`neuroposter.ir.int_neuron`)::

    u = sm_shift(u * decay_u, decay_bits) + (a << act_shift)        # a = x (or x * r)
    u = u - 2L if u > L;  u = u + 2L if u <= -L                     # the wrap, as the two torch.where
    v = clamp(sm_shift(v * decay_v, decay_bits) + u + bias, -(L - 1), L - 1)
    spiking: z = v > (vth << threshold_shift); v = 0 where z; out = z      non-spiking: out = v

with ``sm_shift(x, b) = sign(x) * (|x| >> b)`` written branch-free as ``((((x ^ s) - s) >> b) ^ s) - s`` with
``s = x >> 63`` (the same value), the wrap and the clamp as selects, all in two's-complement int64 as torch
computes them. So the outputs are bit-identical to the torch
step's (``tests/ir/test_int_neuron_kernel.py`` compares them with Hypothesis over formats, decays, thresholds,
biases and wrapping/saturating inputs, and whole simulations kernel vs torch).

The early stop of :class:`neuroposter.ir.simulate._IntNeuron` is kept, per block: after the last step with any
input (``last``), a spiking neuron whose bias is 0, threshold ``>= 0`` and voltage decay multiplier within
``[0, 2**decay_bits]`` is silent for good once ``u = 0`` and ``v <= vth << threshold_shift`` (its ``|v|`` only
shrinks and ``u`` stays 0); a block whose neurons all are stops there and its remaining outputs stay 0 (the output
is zero-initialised), which is what the torch steps would have computed. The gain ``r`` is always multiplied in
(``a * 1 = a``).

:func:`int_inputs` is the integer simulator's input check: one pass over a float input that verifies every value
is finite and integral, counts the values outside 0..255 and writes it as uint8 (int64 when there are any).

Compiled on first use and cached on disk (``cache=True``) next to this file. Threads: numba's pool, limited to
``torch.get_num_threads()`` for each call (:func:`neuroposter.models.lif_kernel.match_torch_threads`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from numba import njit, prange

from neuroposter.ir.int_neuron import IntFormat
from neuroposter.models.lif_kernel import match_torch_threads

__all__ = ["IntNeuronParams", "int_neuron_params", "int_neuron_run", "int_inputs", "INPUT_DTYPES", "warm"]

#: Neurons per block (one block: a run of one sample's neurons, stepped together row by row).
BLOCK = 512

#: Float input dtypes :func:`int_inputs` checks in one pass (others take the torch form).
INPUT_DTYPES = (torch.float32, torch.float64)


@njit(inline="always")
def _sm_shift(x, bits):  # noqa: ANN001, ANN202 - numba helper
    """``sign(x) * (|x| >> bits)`` branch-free: ``s = x >> 63`` is 0 or -1, ``(x ^ s) - s = |x|`` and the same
    again restores the sign (two's complement, as torch's ``abs`` and ``sign``)."""
    s = x >> 63
    return ((((x ^ s) - s) >> bits) ^ s) - s


@njit(parallel=True, cache=True, nogil=True)
def _run(x, gain, dec_u, dec_v, bias, thr, rest, k, spiking, last, out):  # noqa: ANN001 - numba kernel
    """``x [R, B, n]`` (uint8 or int64); per neuron ``gain, dec_u, dec_v, bias, thr`` ``[n]`` (int64) and ``rest``
    (bool: may stop early); ``k = [decay_bits, act_shift, L]``; writes ``out [R, B, n]`` (zero-initialised: uint8
    spikes, or int64 voltages when not ``spiking``) from rest. Blocks of one sample's neurons in parallel, each
    stepping its neurons row by row (the inner loop over neurons is branch-free, so LLVM vectorises it); after row
    ``last`` a block stops once all its neurons rest."""
    R, B, n = x.shape
    bits, act, lim = k[0], k[1], k[2]
    two_lim = 2 * lim
    vmin, vmax = -lim + 1, lim - 1
    nbn = (n + BLOCK - 1) // BLOCK
    for blk in prange(B * nbn):
        b = blk // nbn
        lo = (blk % nbn) * BLOCK
        hi = min(n, lo + BLOCK)
        m = hi - lo
        u = np.zeros(m, np.int64)
        v = np.zeros(m, np.int64)
        g, du, dv, bi, th = gain[lo:hi], dec_u[lo:hi], dec_v[lo:hi], bias[lo:hi], thr[lo:hi]
        may_rest = spiking
        for j in range(m):
            may_rest = may_rest and rest[lo + j]
        for t in range(R):
            if may_rest and t > last:
                quiet = True
                for j in range(m):
                    if u[j] != 0 or v[j] > th[j]:
                        quiet = False
                        break
                if quiet:
                    break
            xt = x[t, b, lo:hi]
            ot = out[t, b, lo:hi]
            if spiking:
                for j in range(m):
                    uj = _sm_shift(u[j] * du[j], bits) + ((np.int64(xt[j]) * g[j]) << act)
                    uj = uj - two_lim if uj > lim else uj          # the wrap
                    uj = uj + two_lim if uj <= -lim else uj
                    vj = _sm_shift(v[j] * dv[j], bits) + uj + bi[j]
                    vj = min(max(vj, vmin), vmax)
                    z = vj > th[j]
                    ot[j] = z
                    v[j] = 0 if z else vj                          # hard reset
                    u[j] = uj
            else:
                for j in range(m):
                    uj = _sm_shift(u[j] * du[j], bits) + ((np.int64(xt[j]) * g[j]) << act)
                    uj = uj - two_lim if uj > lim else uj
                    uj = uj + two_lim if uj <= -lim else uj
                    vj = _sm_shift(v[j] * dv[j], bits) + uj + bi[j]
                    vj = min(max(vj, vmin), vmax)
                    ot[j] = vj
                    v[j] = vj
                    u[j] = uj


@dataclass(frozen=True)
class IntNeuronParams:
    """One population's integer parameters as flat int64 arrays over its neurons (what :func:`int_neuron_run` reads).

    Attributes:
        gain, dec_u, dec_v, bias, thr: per neuron ``[n]``: the input gain ``r``, the decay multipliers
            ``2**decay_bits - (du + decay_u_offset)`` and ``2**decay_bits - (dv + decay_v_offset)``, the bias and
            the threshold ``vth << threshold_shift`` (0 when not spiking).
        rest: per neuron, whether it is silent for good once resting (bias 0, threshold >= 0, voltage decay
            multiplier within ``[0, 2**decay_bits]``).
        k: ``[decay_bits, act_shift, L]``.
    """

    gain: np.ndarray
    dec_u: np.ndarray
    dec_v: np.ndarray
    bias: np.ndarray
    thr: np.ndarray
    rest: np.ndarray
    k: np.ndarray


def _flat(a: object, shape: tuple[int, ...]) -> np.ndarray:
    arr = a.numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    return np.ascontiguousarray(np.broadcast_to(arr.astype(np.int64), shape)).reshape(-1)


def int_neuron_params(shape: tuple[int, ...], *, du: object, dv: object, vth: object, bias: object, gain: object,
                      fmt: IntFormat, spiking: bool) -> IntNeuronParams | None:
    """The flat parameters of a population of ``shape`` (each of ``du, dv, vth, bias, gain`` an int or int64
    array broadcastable to ``shape``), or None where the kernel does not apply (a parameter that does not broadcast
    to the neuron shape, a shift outside 0..62, a state wider than 62 bits): those run the torch step."""
    shifts = (fmt.act_shift, fmt.decay_bits, fmt.threshold_shift)
    if not all(0 <= s <= 62 for s in shifts) or not 2 <= fmt.state_bits <= 62:   # int64 shifts and 2L only
        return None
    try:
        f = {name: _flat(a, shape) for name, a in
             (("du", du), ("dv", dv), ("vth", vth), ("bias", bias), ("gain", gain))}
    except ValueError:      # not broadcastable to one sample's neurons
        return None
    one = fmt.decay_unity
    dec_u = one - (f["du"] + fmt.decay_u_offset)
    dec_v = one - (f["dv"] + fmt.decay_v_offset)
    thr = f["vth"] << fmt.threshold_shift if spiking else np.zeros_like(f["vth"])
    rest = (f["bias"] == 0) & (thr >= 0) & (dec_v >= 0) & (dec_v <= one)
    k = np.array([fmt.decay_bits, fmt.act_shift, fmt.state_limit], dtype=np.int64)
    return IntNeuronParams(f["gain"], dec_u, dec_v, f["bias"], thr, rest, k)


def int_neuron_run(p: IntNeuronParams, x: torch.Tensor, out: torch.Tensor, *, spiking: bool) -> None:
    """Runs the integer LIF from rest over the rows of ``x [R, B, *shape]`` (any integer dtype), writing ``out``
    (same shape, zero-initialised; uint8 spikes when ``spiking``, else int64 voltages)."""
    R, B = int(x.shape[0]), int(x.shape[1])
    n = int(p.dec_u.shape[0])
    if R == 0 or B == 0 or n == 0:
        return
    if x.dtype not in (torch.uint8, torch.int64):
        x = x.to(torch.int64)
    xs = x.contiguous().numpy().reshape(R, B, n)
    want = np.uint8 if spiking else np.int64
    assert out.is_contiguous() and out.numpy().dtype == want, "out must be a contiguous zero tensor of its dtype"
    os_ = out.numpy().reshape(R, B, n)
    last = R - 1
    if spiking and bool(p.rest.any()):     # the last row with any input (the early stop reads it)
        flat = x.reshape(R, -1)
        while last >= 0 and not bool(flat[last].any()):
            last -= 1
    match_torch_threads()
    _run(xs, p.gain, p.dec_u, p.dec_v, p.bias, p.thr, p.rest, p.k, spiking, last, os_)


@njit(parallel=True, cache=True, nogil=True)
def _check(x, out8):  # noqa: ANN001 - numba kernel
    """For a flat float ``x``: the number of values that are not finite or not integral and the number outside
    0..255; writes the values within 0..255 into ``out8`` (uint8). Branch-free; the two counts are ``prange``
    sum reductions (min/max reductions ran 2.5x slower)."""
    zero = x[0] * 0
    big = zero + 2.0 ** 52            # every finite float at least this large is an integer
    nbad = 0
    nwide = 0
    for i in prange(x.shape[0]):
        v = x[i]
        t = v if abs(v) < big else zero
        w = np.int64(t)                                   # exact below 2**52
        ok = (v - v == zero) & ((w == t) | (abs(v) >= big))  # finite (inf - inf, nan are nan) and integral
        inr = (v >= zero) & (v <= 255)
        nbad += np.int64(not ok)
        nwide += np.int64(not inr)
        out8[i] = np.uint8(w if inr else 0)
    return nbad, nwide


def int_inputs(xt: torch.Tensor) -> torch.Tensor | None:
    """A float input (:data:`INPUT_DTYPES`) of integer values as uint8 (int64 when a value is outside 0..255),
    checked in one pass; None when some value is not finite or not integral (the caller raises)."""
    flat = xt.contiguous().numpy().reshape(-1)
    out8 = np.empty(flat.shape[0], np.uint8)
    if flat.shape[0]:
        match_torch_threads()
        nbad, nwide = _check(flat, out8)
        if nbad:
            return None
        if nwide:
            return xt.to(torch.int64)
    return torch.from_numpy(out8).reshape(tuple(xt.shape))


def warm() -> None:
    """Compiles (or loads from the cache) every signature the simulator uses: the neuron on uint8 and int64 inputs,
    spiking and not, and the input check on float32 and float64 (for ``neuroposter._warm``)."""
    from neuroposter.profiling.profiles import load_profile

    fmt = IntFormat.of_profile(load_profile("loihi2").fixed_point)
    for spiking in (True, False):
        p = int_neuron_params((3,), du=0, dv=2048, vth=1, bias=0, gain=1, fmt=fmt, spiking=spiking)
        for dtype in (torch.uint8, torch.int64):
            int_neuron_run(p, torch.ones((2, 2, 3), dtype=dtype),
                           torch.zeros((2, 2, 3), dtype=torch.uint8 if spiking else torch.int64), spiking=spiking)
    for dtype in INPUT_DTYPES:
        int_inputs(torch.ones((2, 3), dtype=dtype))
