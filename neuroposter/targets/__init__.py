"""Deployment targets.

Each target is one :class:`~neuroposter.targets.base.Target` subclass (the contract: lower -> quantise
for the profile -> build -> run -> verify -> bundle), registered by name as a lazily imported
``"module:Class"`` so that listing targets (e.g. for ``--help``) imports nothing heavy. One class may
serve several names: the simulated chips share :class:`~neuroposter.targets.chips.ChipTarget`, each
driven by the hardware profile of its name.
"""

from __future__ import annotations

import importlib
from typing import Callable

from neuroposter._registry import Registry
from neuroposter.targets.base import ExportRequest, ExportResult, Target, UnsupportedNodeError

__all__ = ["TARGETS", "CHIP_TARGET", "chip_targets", "get_target", "get_exporter", "ExportRequest", "ExportResult",
           "UnsupportedNodeError"]

TARGETS: Registry[str] = Registry("target")
TARGETS.add("nir", "neuroposter.targets.nir_target:NirTarget")
TARGETS.add("onnx", "neuroposter.targets.onnx_target:OnnxTarget")
TARGETS.add("loihi", "neuroposter.targets.loihi.target:LoihiTarget")

# Simulated chips: the profile of the same name in hardware_profiles/ drives each of them.
CHIP_TARGET = "neuroposter.targets.chips:ChipTarget"
for _chip in ("spinnaker", "spinnaker2", "truenorth", "xylo", "speck"):
    TARGETS.add(_chip, CHIP_TARGET)


def chip_targets() -> list[str]:
    """The registered simulated-chip targets (served by the profile-driven chip target)."""
    return [n for n in TARGETS.names() if TARGETS.get(n) == CHIP_TARGET]


def get_target(name: str) -> Target:
    """A fresh instance of target ``name`` (imports its module now).

    Raises:
        KeyError: unknown name (the message lists the registered ones).
    """
    module, cls = TARGETS.get(name).split(":")
    return getattr(importlib.import_module(module), cls)()


def get_exporter(name: str) -> Callable[[ExportRequest], ExportResult]:
    """The export function of target ``name``: runs the contract's stages (:func:`~.base.run_export`)."""
    from neuroposter.targets.base import run_export

    TARGETS.get(name)   # an unknown name fails here, listing the valid ones

    def export(request: ExportRequest) -> ExportResult:
        return run_export(get_target(name), request)

    return export
