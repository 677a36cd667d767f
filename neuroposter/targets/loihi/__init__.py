"""Loihi 2 target (Lava): ``neuroposter export --target loihi``.

The face of the package; the work lives in its modules:

* :mod:`.target` -- the target contract's stages (lower, quantise, build, run, verify, bundle);
* :mod:`.fixed_point` -- Loihi 2 fixed point of a NIR graph (the integer graph), format from the
  ``loihi2`` profile; an analog (direct-encoded) input as graded spikes;
* pools are composed into the synapse after them by :mod:`neuroposter.targets.compose` (one Loihi synapse);
* :mod:`.builder` -- integer graph -> Lava network plan -> stock Lava processes, and the numpy emulator;
* :mod:`.netx_export` -- lava-dl netx HDF5 for chain-shaped networks;
* :mod:`.processes` -- fast process models and the spike recorder;
* :mod:`.run` -- ``python -m neuroposter.targets.loihi.run BUNDLE`` re-runs a bundle.

Lava discovers process models by importing every ``.py`` next to a Process: every module here is
side-effect free on import.
"""

from __future__ import annotations

from neuroposter.targets.base import ExportRequest, ExportResult

__all__ = ["export"]


def export(request: ExportRequest) -> ExportResult:
    """Exports a run to a verified Loihi 2 (Lava) bundle (:class:`.target.LoihiTarget`)."""
    from neuroposter.targets.base import run_export
    from neuroposter.targets.loihi.target import LoihiTarget

    return run_export(LoihiTarget(), request)
