"""Lava ProcessModels of the Loihi 2 target (side-effect free: Lava's model discovery imports it).

The network itself uses only **stock** Lava processes (``LIFReset``, ``Sparse``, ``DelaySparse``,
``Dense``, ``RingBuffer``), so that what runs in the CPU simulation is what the Loihi 2 compiler
could map. This module adds *faster CPU models* of the stock synapse processes with bit-identical
results, selected per run through ``Loihi2SimCfg(exception_proc_model_map=...)``:

* ``Sparse``: the stock model gathers the columns of active inputs (``W[:, s].sum(1)``), which is
  slow for the 4 M-entry token-wise embedding; these models compute ``W @ s`` (identical for 0/1
  spikes: the sum of the selected columns).
* ``DelaySparse``: the stock model rebuilds its delay-expanded weight matrix on every step; these
  models build it once (the weights are static: no learning in this target).

Everything else (clipping to 8 bits, LSB truncation, the ``weight_exp`` shift, the one-step
``a_buff`` latency, the delay ring buffer) is inherited unchanged from the stock models.
Both ``fixed_pt`` and ``floating_pt`` variants are provided.

:class:`SpikeRecorder` is a host-side probe (not part of the network) that writes a population's
spikes to a memory-mapped file, because ``Var.get()`` of a large sink buffer is very slow in Lava 0.10.
"""

from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.sparse.models import (
    AbstractPySparseModelBitAcc,
    AbstractPySparseModelFloat,
    PyDelaySparseModelBitAcc,
    PyDelaySparseModelFloat,
)
from lava.proc.sparse.process import DelaySparse, Sparse
from lava.utils.weightutils import SignMode, clip_weights, determine_sign_mode, truncate_weights

__all__ = ["FastSparseFixed", "FastSparseFloat", "FastDelaySparseFixed", "FastDelaySparseFloat",
           "SpikeRecorder", "PySpikeRecorderFixed", "PySpikeRecorderFloat", "fast_models"]


@implements(proc=Sparse, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class FastSparseFixed(AbstractPySparseModelBitAcc):
    """Bit-accurate ``Sparse`` (same as ``PySparseModelBitAcc``) computing ``W @ s``."""

    def run_spk(self) -> None:
        """One step: send last step's activation, integrate this step's spikes."""
        self.weight_exp = self.proc_params.get("weight_exp", 0)
        if not self.weights_set:
            num_weight_bits: int = self.proc_params.get("num_weight_bits", 8)
            sign_mode: SignMode = self.proc_params.get("sign_mode") or determine_sign_mode(self.weights)
            self.weights = clip_weights(self.weights, sign_mode, num_bits=8)
            self.weights = truncate_weights(self.weights, sign_mode, num_weight_bits).tocsr()
            self.weights_set = True
        self.a_out.send(self.a_buff)
        s_in = self.s_in.recv()
        if self.num_message_bits.item() == 0:
            s_in = (s_in != 0)
        a_accum = np.asarray(self.weights.dot(s_in.astype(np.int64)), dtype=np.int64)
        self.a_buff = (np.left_shift(a_accum, self.weight_exp) if self.weight_exp > 0
                       else np.right_shift(a_accum, -self.weight_exp)).astype(np.int32)


@implements(proc=Sparse, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class FastSparseFloat(AbstractPySparseModelFloat):
    """Floating-point ``Sparse`` computing ``W @ s``."""

    def run_spk(self) -> None:
        """One step: send last step's activation, integrate this step's spikes."""
        self.a_out.send(self.a_buff)
        s_in = self.s_in.recv()
        if self.num_message_bits.item() == 0:
            s_in = (s_in != 0)
        self.a_buff = np.asarray(self.weights.dot(s_in.astype(np.float64)), dtype=np.float64)


class _CachedDelayMixin:
    """Caches the delay-expanded weight matrix (static weights)."""

    _delay_wgts = None

    def calc_act(self, s_in: np.ndarray) -> np.ndarray:  # noqa: D401 - overrides the stock method
        """``delay_wgts @ s_in`` reshaped to ``(out, max_delay + 1)``."""
        if self._delay_wgts is None:
            self._delay_wgts = self.get_delay_wgts_mat(  # type: ignore[attr-defined]
                self.weights, self.delays, self.a_buff.shape[-1] - 1).tocsr()  # type: ignore[attr-defined]
        s = np.asarray(s_in).astype(self.a_buff.dtype if self.a_buff.dtype.kind == "f" else np.int64)  # type: ignore[attr-defined]
        act = self._delay_wgts.dot(s)
        return np.reshape(act, (self.a_buff.shape[-1], self.weights.shape[0])).T  # type: ignore[attr-defined]


@implements(proc=DelaySparse, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class FastDelaySparseFixed(_CachedDelayMixin, PyDelaySparseModelBitAcc):
    """Bit-accurate ``DelaySparse`` with a cached delay-expanded weight matrix."""


@implements(proc=DelaySparse, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class FastDelaySparseFloat(_CachedDelayMixin, PyDelaySparseModelFloat):
    """Floating-point ``DelaySparse`` with a cached delay-expanded weight matrix."""


def fast_models(select_tag: str) -> dict[type, type]:
    """The ``exception_proc_model_map`` for ``Loihi2SimCfg`` of a tag (``fixed_pt``/``floating_pt``)."""
    if select_tag == "fixed_pt":
        return {Sparse: FastSparseFixed, DelaySparse: FastDelaySparseFixed, SpikeRecorder: PySpikeRecorderFixed}
    return {Sparse: FastSparseFloat, DelaySparse: FastDelaySparseFloat, SpikeRecorder: PySpikeRecorderFloat}


# ---------------------------------------------------------------------------------------------
# host-side spike recorder (instrumentation, not part of the network)
# ---------------------------------------------------------------------------------------------

from lava.magma.core.model.py.model import PyLoihiProcessModel  # noqa: E402
from lava.magma.core.model.py.ports import PyInPort  # noqa: E402
from lava.magma.core.model.py.type import LavaPyType  # noqa: E402
from lava.magma.core.process.ports.ports import InPort  # noqa: E402
from lava.magma.core.process.process import AbstractProcess  # noqa: E402


class SpikeRecorder(AbstractProcess):
    """Records a population's spikes into a ``uint8 [n, steps]`` ``.npy`` memmap the host created.

    A stock ``RingBuffer`` sink returns its data through ``Var.get()``, which in Lava 0.10's CPU
    runtime costs about 100 s for the 49 k x 80 spikes of the demo SDT; writing to a memory-mapped file
    from the process model costs nothing. It is a probe (the role ``StateProbe`` plays on hardware),
    not part of the network.

    Args:
        shape: ``(n,)`` of the recorded port.
        path: the ``.npy`` file (``np.lib.format.open_memmap(path, "w+", np.uint8, (n, steps))``).
    """

    def __init__(self, *, shape: tuple[int, ...], path: str, name: str | None = None) -> None:
        super().__init__(shape=shape, path=path, name=name)
        self.a_in = InPort(shape=shape)


class _RecorderBase(PyLoihiProcessModel):
    _mm = None

    def run_spk(self) -> None:
        """Stores this step's spikes in column ``time_step - 1``."""
        data = self.a_in.recv()
        if self._mm is None:
            self._mm = np.load(self.proc_params["path"], mmap_mode="r+")
        t = self.time_step - 1
        if t < self._mm.shape[1]:
            self._mm[:, t] = (np.asarray(data).reshape(-1) != 0)

    def __del__(self) -> None:  # flush on shutdown
        if self._mm is not None:
            self._mm.flush()


@implements(proc=SpikeRecorder, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PySpikeRecorderFixed(_RecorderBase):
    """Fixed-point model of :class:`SpikeRecorder`."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)


@implements(proc=SpikeRecorder, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PySpikeRecorderFloat(_RecorderBase):
    """Floating-point model of :class:`SpikeRecorder`."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
