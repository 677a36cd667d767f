"""Deployment targets. Each target is registered by name with a lazily imported entry point
``module:function`` taking an :class:`ExportRequest` and returning an :class:`ExportResult`,
so that listing targets (e.g. for ``--help``) imports nothing heavy.
"""

from __future__ import annotations

import importlib
from typing import Callable

from neuroposter._registry import Registry
from neuroposter.targets.base import ExportRequest, ExportResult, UnsupportedNodeError

__all__ = ["TARGETS", "SIMULATED_CHIPS", "get_exporter", "ExportRequest", "ExportResult", "UnsupportedNodeError"]

TARGETS: Registry[str] = Registry("target")
TARGETS.add("nir", "neuroposter.targets.nir_target:export")
TARGETS.add("onnx", "neuroposter.targets.onnx_target:export")
TARGETS.add("loihi", "neuroposter.targets.loihi:export")

# Simulated chips: the profile of the same name in hardware_profiles/ drives each of them.
SIMULATED_CHIPS = ("spinnaker", "spinnaker2", "truenorth", "xylo", "speck")
for _chip in SIMULATED_CHIPS:
    TARGETS.add(_chip, "neuroposter.targets.chips:export")


def get_exporter(name: str) -> Callable[[ExportRequest], ExportResult]:
    """The export function of target ``name`` (imports its module now)."""
    module, func = TARGETS.get(name).split(":")
    return getattr(importlib.import_module(module), func)
