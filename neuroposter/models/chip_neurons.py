"""The neurons a chip-fitted model (:mod:`neuroposter.models.chip_snn`) can run on a chip.

:data:`CHIP_NEURONS` maps a neuron name (the ``neuron.model`` entry of a hardware profile) to its
``"module:Class"``. Every chip neuron is a torch module that

* takes already-weighted input currents time-first, ``x [T, ...]``, and returns spikes ``[T, ...]``
  (0/1 floats; the threshold's backward pass is a surrogate gradient);
* lowers itself: ``to_nir(shape) -> nir.NIRNode`` gives the node whose forward-Euler semantics in the reference
  simulator (:mod:`neuroposter.ir.simulate`, ``dt = 1``) equal its forward pass (exact parameters the NIR node
  cannot express go into the node's metadata);
* reports ``firing_rate`` and ``spike_count`` of its last forward, like :class:`neuroposter.models.lif.LIF`.

Registered here:

* ``"lif"`` -- :class:`ChipLIF`, the project's LIF (:class:`~neuroposter.models.lif.LIF`:
  ``v <- v + (x - v)/tau``, strict threshold, reset to 0), lowered to ``nir.LIF(tau = tau_steps, r = 1,
  v_leak = 0, v_reset = 0)`` exactly as :func:`neuroposter.ir.sdsa.lif_node` lowers the snn-mlp's neurons.
* ``"if"`` -- :class:`IF`, integrate-and-fire: ``v <- v + x``, ``z = [v > v_th]`` (strict), ``v <- 0`` where
  ``z``; lowered to ``nir.IF(r = 1, v_threshold = v_th, v_reset = 0)``, which the reference simulator runs as
  ``v <- v + dt r I`` (``dt = 1``), strict threshold, reset to ``v_reset``: the same update order and values.
* ``"xylo"`` -- Xylo's bit-shift current-based LIF (:mod:`neuroposter.models.xylo_neuron`, written beside
  the Xylo simulator; :func:`chip_neuron_class` fails with a clear error while that module is absent).

This module must not import :mod:`neuroposter.ir` (``ir`` imports ``models``): the NIR nodes are built here
with ``nir`` directly.
"""

from __future__ import annotations

import importlib
from typing import Any

import nir
import numpy as np
import torch
from norse.torch.functional.threshold import threshold
from torch import Tensor, nn

from neuroposter._registry import Registry
from neuroposter.models.lif import LIF

__all__ = ["CHIP_NEURONS", "ChipNeuronError", "ChipLIF", "IF", "chip_neuron_class", "build_chip_neuron"]

#: Chip neuron name -> ``"module:Class"`` (imported on use).
CHIP_NEURONS: Registry[str] = Registry("chip neuron")
CHIP_NEURONS.add("lif", "neuroposter.models.chip_neurons:ChipLIF")
CHIP_NEURONS.add("if", "neuroposter.models.chip_neurons:IF")
CHIP_NEURONS.add("xylo", "neuroposter.models.xylo_neuron:XyloNeuron")


class ChipNeuronError(ValueError):
    """A chip neuron that is unknown or whose module is not available."""


def _full(value: float, shape: tuple[int, ...]) -> np.ndarray:
    return np.full(tuple(int(s) for s in shape), float(value), dtype=np.float64)


class ChipLIF(LIF):
    """The project's LIF (:class:`~neuroposter.models.lif.LIF`) as a chip neuron: the same forward pass, plus
    :meth:`to_nir`.

    Args:
        tau: membrane time constant in steps.
        v_th: threshold (strict).
        surrogate: Norse surrogate of the threshold's backward pass.
    """

    def __init__(self, tau: float = 2.0, v_th: float = 1.0, *, surrogate: str = "super") -> None:
        super().__init__(tau, v_th, surrogate=surrogate)

    def to_nir(self, shape: tuple[int, ...]) -> nir.LIF:
        """``nir.LIF(tau = tau_steps, r = 1, v_leak = 0, v_threshold = v_th, v_reset = 0)`` of ``shape``
        (``dt = 1``: forward Euler ``v <- v + (I - v)/tau``, this module's update)."""
        return nir.LIF(tau=_full(self.tau, shape), r=_full(1.0, shape), v_leak=_full(0.0, shape),
                       v_threshold=_full(self.v_th, shape), v_reset=_full(0.0, shape),
                       metadata={"chip_neuron": "lif"})


class IF(LIF):
    """Integrate-and-fire: ``v <- v + x``; ``z = [v > v_th]`` (strict); ``v <- 0`` where ``z``; ``v_0 = 0``.

    No leak: a sub-threshold membrane (also a negative one) is kept until the next input. The threshold's
    backward pass is the surrogate named by ``surrogate`` (Norse's, as :class:`~neuroposter.models.lif.LIF`'s:
    ``"super"`` by default) on ``v - v_th``; the reset is not detached (as Norse's LIF). It derives from
    :class:`~neuroposter.models.lif.LIF` only for the spiking-layer bookkeeping every consumer looks for
    (``record_spikes``, ``last_spikes``, ``firing_rate``, ``spike_count``); its dynamics are IF's, and ``tau``
    is not used.

    Args:
        v_th: threshold (strict).
        surrogate: Norse surrogate of the threshold's backward pass.
        alpha: surrogate hyper-parameter (unused by ``"super"``).
    """

    def __init__(self, v_th: float = 1.0, *, surrogate: str = "super", alpha: float = 100.0) -> None:
        super().__init__(1.0, v_th, surrogate=surrogate, alpha=alpha)

    def extra_repr(self) -> str:
        return f"v_th={self.v_th}, surrogate={self.surrogate!r}"

    def forward(self, x: Tensor) -> Tensor:
        """Runs the neuron over time.

        Args:
            x: input currents ``[T, ...]`` (time first).

        Returns:
            Spikes ``[T, ...]`` (0/1, same dtype as ``x``).
        """
        if x.dim() < 2:
            raise ValueError(f"IF expects time-first input [T, ...] with at least 2 dims, got {tuple(x.shape)}")
        p = self.cell.p
        v = torch.zeros_like(x[0])
        out = []
        for x_t in x.unbind(0):
            v = v + x_t
            z = threshold(v - self.v_th, p.method, p.alpha)
            v = v - z * v
            out.append(z)
        spikes = torch.stack(out)
        return self._record(spikes)

    def to_nir(self, shape: tuple[int, ...]) -> nir.IF:
        """``nir.IF(r = 1, v_threshold = v_th, v_reset = 0)`` of ``shape`` (``dt = 1``: ``v <- v + I``)."""
        return nir.IF(r=_full(1.0, shape), v_threshold=_full(self.v_th, shape), v_reset=_full(0.0, shape),
                      metadata={"chip_neuron": "if"})


def chip_neuron_class(name: str) -> type[nn.Module]:
    """The class of chip neuron ``name`` (imports its module now).

    Raises:
        ChipNeuronError: an unknown name (the message lists the registered ones), or a registered neuron
            whose module is not available.
    """
    try:
        entry = CHIP_NEURONS.get(name)
    except KeyError as exc:
        raise ChipNeuronError(str(exc.args[0])) from None
    module, cls = entry.split(":")
    try:
        return getattr(importlib.import_module(module), cls)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise
        raise ChipNeuronError(f"chip neuron {name!r} lives in {module}, which is not available (yet)") from None
    except AttributeError:
        raise ChipNeuronError(f"chip neuron {name!r}: {module} has no class {cls}") from None


def build_chip_neuron(name: str, **params: Any) -> nn.Module:
    """Chip neuron ``name`` built from its constructor parameters (e.g. ``tau``, ``v_th``).

    Raises:
        ChipNeuronError: unknown or unavailable neuron, or parameters its class does not take.
    """
    cls = chip_neuron_class(name)
    try:
        return cls(**params)
    except TypeError as exc:
        raise ChipNeuronError(f"chip neuron {name!r}: {exc}") from None
