"""Re-timing: the delays that make one-step-per-hop execution equal the same-step result, shifted.

NIR edges are instantaneous, so a lowered graph equals the Norse model computed within one time
step. On Loihi 2 every synapse costs a step (see the hop model in :mod:`neuroposter.ir.timing`),
so two paths of different hop counts into one unit (the SDSA's ``Q`` vs ``K AND V -> sum -> SN ->
broadcast`` paths, every membrane shortcut) would combine signals of different input steps. This
pass computes, for every unit, the step at which data of input step 0 reaches it:

.. math::
    s(u) = \\max_{e = (p \\to u)} \\big(s(p) + \\ell(p) + h(e)\\big)

(``l(p)`` = 1 for a connection, the delay of a ``Delay`` node, else 0; ``h(e)`` = 1 for an implicit
neuron -> neuron synapse), and gives every earlier-arriving edge the delay
``d(e) = s(u) - (s(p) + l(p) + h(e))``. With these delays the ``per_hop`` run equals the
``same_step`` run shifted by ``L = s(Output)`` (tested), each node ``u`` by ``s(u)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import nir

from neuroposter.ir.graph import Edge, Graph, executable
from neuroposter.ir.timing import arrival_times, edge_hop

__all__ = ["Retiming", "retime"]


@dataclass(frozen=True)
class Retiming:
    """Result of :func:`retime`.

    Attributes:
        latency: ``L``, the output step that corresponds to input step 0 under ``per_hop``.
        delays: extra delay in steps per flattened edge ``(src_path, dst_path)`` (only non-zero
            entries). Edge paths are those of :func:`neuroposter.ir.simulate` (sub-graph Input/Output
            nodes removed); a delay on an edge into a neuron from a connection belongs to that
            connection (``DelayDense``), one on a neuron -> neuron edge to its implicit identity synapse.
        arrival: per unit path, ``s(u)``: the step at which data of input step 0 reaches it.
        identity_edges: the neuron/Input -> neuron edges that are implicit identity synapses (1 hop each).
    """

    latency: int
    delays: dict[Edge, int] = field(default_factory=dict)
    arrival: dict[str, int] = field(default_factory=dict)
    identity_edges: tuple[Edge, ...] = ()

    @property
    def max_delay(self) -> int:
        """Largest single delay (Loihi 2 synaptic delays are limited, e.g. 62 in netx)."""
        return max(self.delays.values(), default=0)


def retime(graph: nir.NIRGraph | Graph) -> Retiming:
    """Computes the per-hop latency of every path and the aligning delays.

    Args:
        graph: a type-checked NIR graph (sub-graphs allowed), acyclic, or its strict
            :func:`~neuroposter.ir.graph.flatten` (one Input, one Output, typed nodes).

    Returns:
        The :class:`Retiming`; pass ``.delays`` to ``simulate(..., mode="per_hop", delays=...)``.

    Raises:
        neuroposter.ir.graph.GraphError: a graph that cannot be executed as given (named).
    """
    flat = executable(graph)
    start, delays = arrival_times(flat, "per_hop", None, align=True)
    identity = tuple(dict.fromkeys(e for e in flat.edges if edge_hop(flat, e, "per_hop")))
    return Retiming(latency=int(start[flat.output]), delays={e: d for e, d in delays.items() if d},
                    arrival=dict(start), identity_edges=identity)
