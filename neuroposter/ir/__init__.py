"""Norse model -> NIR lowering, the reference NIR simulator, re-timing and graph I/O.

Public API (``lower_model`` and the graph I/O are imported lazily; ``simulate`` and ``retime`` are
imported eagerly because their names are also submodule names, and a loaded submodule would
otherwise shadow the function of the same name):

* :func:`lower_model` (``neuroposter.ir.lower``): SDT / spiking MLP -> ``nir.NIRGraph``;
* :func:`simulate`, :class:`SimResult` (``neuroposter.ir.simulate``): same-step / per-hop,
  float / int execution of NIR graphs;
* :func:`retime`, :class:`Retiming` (``neuroposter.ir.retime``): per-hop latency and aligning delays;
* :func:`write_graph`, :func:`read_graph` (``neuroposter.ir.graph_io``): ``nir.write`` + verified
  ``nir.read`` (type-checked).

* :mod:`neuroposter.ir.graph` / :mod:`neuroposter.ir.nodes`: the one flattened graph model and the node-type
  table derived from ``nir``'s classes; :mod:`neuroposter.ir.int_neuron`: the one integer LIF;
  :mod:`neuroposter.ir.quantize`: n-bit quantisation and the quantisation report (Loihi 2 fixed point lives
  with its target, :mod:`neuroposter.targets.loihi.fixed_point`).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["lower_model", "simulate", "SimResult", "retime", "Retiming", "write_graph", "read_graph"]

from neuroposter.ir.retime import Retiming, retime  # noqa: E402
from neuroposter.ir.simulate import SimResult, simulate  # noqa: E402

_WHERE = {
    "lower_model": "neuroposter.ir.lower",
    "write_graph": "neuroposter.ir.graph_io",
    "read_graph": "neuroposter.ir.graph_io",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'neuroposter.ir' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
