"""Hardware profiles, op counting (SNN records, ONNX graphs), the one energy function, and latency.

Submodules:
    profiles: ``HardwareProfile``, ``Limits``, ``load_profile``, ``list_profiles`` (YAML + typed loader).
    counts: SNN op counts from reference-simulator records (``count_snn``).
    onnx_counts: ANN op counts from ONNX graphs (``count_onnx``).
    energy: ``estimate_energy(counts, profile, view=...)`` and the standard views.
    latency: onnxruntime latency/throughput measurement.
    api: ``profile(network, inputs, ...)`` -> ``ProfileResult`` (NeuroBench-named metrics, energies per view and
        profile, ``results.json``); also ``neuroposter.profile``.

Only ``profiles`` is imported eagerly (it needs nothing beyond PyYAML); the others load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from neuroposter.profiling.profiles import (
    EnergyValue,
    HardwareProfile,
    Limits,
    ProfileError,
    list_profiles,
    load_profile,
)

__all__ = [
    "EnergyValue",
    "HardwareProfile",
    "Limits",
    "ProfileError",
    "list_profiles",
    "load_profile",
    "OpCounts",
    "LayerCounts",
    "count_snn",
    "count_onnx",
    "estimate_energy",
    "EnergyBreakdown",
    "measure_latency",
    "profile",
    "ProfileResult",
]

_LAZY = {
    "OpCounts": "counts",
    "LayerCounts": "counts",
    "count_snn": "counts",
    "count_onnx": "onnx_counts",
    "estimate_energy": "energy",
    "EnergyBreakdown": "energy",
    "measure_latency": "latency",
    "profile": "api",
    "ProfileResult": "api",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"neuroposter.profiling.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'neuroposter.profiling' has no attribute {name!r}")
