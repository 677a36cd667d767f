"""Vendor simulators of the chip targets, each beside the project's own reference of that chip.

``VENDOR_SIMULATORS`` maps a chip (profile) name to ``"module:function"``; every function has the signature
``check(graph_q: nir.NIRGraph, x: np.ndarray, profile) -> dict``: it runs the deployed chip graph on inputs
``x [T, B, ...]`` in the vendor's simulator *and* in the project's own integer/reference model of the chip and
returns a JSON-ready dict (``simulator``, ``version``, ``samples``, ``spikes_compared``, ``mismatched_spikes``,
``exact``, ``bit_accurate`` (whether the vendor's simulator is the chip's bit-accurate model: then a mismatch fails
the export), ``layers`` (per-layer mismatches), ``logits`` (the project reference's mean output ``[B, C]``)) or
raises :class:`VendorError` with the reason.

* ``xylo``: SynSense's bit-accurate ``xylosim`` (:mod:`neuroposter.targets.vendor.xylo`);
* ``speck``: sinabs' torch IAF layers (not the chip: Speck's own simulator needs ``samna``, which cannot be
  installed here; :mod:`neuroposter.targets.vendor.speck`).
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from neuroposter.errors import NeuroposterError

__all__ = ["VENDOR_SIMULATORS", "CHIP_ARITHMETIC", "VendorError", "vendor_check", "chip_arithmetic"]

#: chip name -> ``"module:function"`` of its vendor-simulator check.
VENDOR_SIMULATORS: dict[str, str] = {
    "xylo": "neuroposter.targets.vendor.xylo:check",
    "speck": "neuroposter.targets.vendor.speck:check",
}

#: chip name -> ``"module:function"`` of the chip's own integer arithmetic, where the generic reference simulator
#: (n-bit weights and states, float neuron updates) is not what the chip computes. Signature
#: ``deployed_logits(graph_q, x [T, B, ...], profile) -> logits [B, C]``.
CHIP_ARITHMETIC: dict[str, str] = {
    "xylo": "neuroposter.targets.vendor.xylo:deployed_logits",
}


class VendorError(NeuroposterError):
    """A vendor simulator cannot run the graph (not installed, unsupported structure, chip limit)."""


def vendor_check(chip: str) -> Callable[..., dict[str, Any]]:
    """The ``check`` function registered for ``chip``.

    Raises:
        KeyError: no vendor simulator is registered for ``chip``.
    """
    if chip not in VENDOR_SIMULATORS:
        raise KeyError(f"no vendor simulator for {chip!r} (registered: {sorted(VENDOR_SIMULATORS)})")
    return _load(VENDOR_SIMULATORS[chip])


def chip_arithmetic(chip: str) -> Callable[..., Any] | None:
    """The chip's own integer arithmetic (``deployed_logits``), or None where the reference simulator is it."""
    return _load(CHIP_ARITHMETIC[chip]) if chip in CHIP_ARITHMETIC else None


def _load(spec: str) -> Callable[..., Any]:
    module, func = spec.split(":")
    return getattr(importlib.import_module(module), func)
