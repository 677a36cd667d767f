"""neuroposter: train Spike-Driven Transformers on poster features, deploy them through NIR, profile energy.

Importing the package is cheap: heavy dependencies (torch, lava, onnxruntime) are imported by the
modules that need them, never here. ``neuroposter.profile(network, inputs, ...)`` (op counts under
NeuroBench's names and energies per view and profile, :mod:`neuroposter.profiling.api`) and its result
type ``neuroposter.ProfileResult`` load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "profile", "ProfileResult"]

_LAZY = {"profile": "neuroposter.profiling.api", "ProfileResult": "neuroposter.profiling.api"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'neuroposter' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
