"""Placement of population slices onto the cores and chips of a multi-chip system.

A neuron population that needs ``c`` neuron cores is cut into ``c`` *slices* of (almost) equal size
(:func:`slice_groups`); when its fan-in is split into ``k`` exact partial sums, each slice travels with its
``k`` synapse (relay) cores as one *group* that must sit on one chip (sPyNNaker places a neuron core and its
synapse cores on the same chip, since they share SDRAM). :func:`place` puts the groups onto chips **greedily in
graph order** (next-fit: the current chip takes the next group while every per-chip capacity holds, otherwise a
new chip is opened), so a population's slices stay contiguous. It is a feasibility placement, not an optimised
one: inter-chip spike traffic, routing tables and link bandwidth are not modelled.

Example:
    >>> cap = ChipCapacity(cores=2)
    >>> groups = [g for n, c in (("a", 1), ("b", 2), ("c", 1)) for g in slice_groups(n, 10 * c, 0, 0, c)]
    >>> place(groups, cap).cores_per_chip
    [2, 2]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Group", "ChipCapacity", "ChipLoad", "Placement", "slice_groups", "place"]


@dataclass(frozen=True)
class Group:
    """Cores that must be placed on one chip: one slice of a population (and its synapse cores).

    Attributes:
        population: the population's path.
        cores: cores of the group (1 neuron core + its synapse cores).
        neurons: neurons of the slice (on-chip neurons, copies included).
        stored: stored synapses of the slice.
        nbytes: synapse memory of the slice (lower bound, bytes; 0 when unknown).
    """

    population: str
    cores: int
    neurons: int
    stored: int
    nbytes: int


@dataclass(frozen=True)
class ChipCapacity:
    """What one chip holds; None = unknown or unbounded (not checked)."""

    cores: int | None = None
    neurons: int | None = None
    stored: int | None = None
    nbytes: int | None = None

    def exceeded_by(self, cores: int, neurons: int, stored: int, nbytes: int) -> list[str]:
        """Names of the capacities that the given load exceeds (``cores``, ``neurons``, ``stored``, ``nbytes``)."""
        load = {"cores": cores, "neurons": neurons, "stored": stored, "nbytes": nbytes}
        return [k for k, v in load.items() if getattr(self, k) is not None and v > getattr(self, k)]


@dataclass
class ChipLoad:
    """The load placed on one chip."""

    cores: int = 0
    neurons: int = 0
    stored: int = 0
    nbytes: int = 0
    populations: list[str] = field(default_factory=list)

    def add(self, g: Group) -> None:
        """Places a group on this chip."""
        self.cores += g.cores
        self.neurons += g.neurons
        self.stored += g.stored
        self.nbytes += g.nbytes
        if not self.populations or self.populations[-1] != g.population:
            self.populations.append(g.population)


@dataclass
class Placement:
    """Groups placed onto chips.

    Attributes:
        chips: the load of every chip used, in order.
        too_big: groups that exceed one chip's capacity on their own, with the capacities they exceed (they are
            still placed, alone on a chip, so that the counts stay meaningful).
    """

    chips: list[ChipLoad]
    too_big: list[tuple[Group, list[str]]] = field(default_factory=list)

    @property
    def chips_used(self) -> int:
        """Chips that hold at least one group."""
        return len(self.chips)

    @property
    def cores_per_chip(self) -> list[int]:
        """Cores used on each chip."""
        return [c.cores for c in self.chips]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (per-chip lists)."""
        return {"chips_used": self.chips_used, "cores_per_chip": self.cores_per_chip,
                "neurons_per_chip": [c.neurons for c in self.chips],
                "stored_synapses_per_chip": [c.stored for c in self.chips],
                "synapse_bytes_per_chip": [c.nbytes for c in self.chips],
                "populations_per_chip": [list(c.populations) for c in self.chips]}


def _spread(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` integers that differ by at most one (larger first)."""
    base, extra = divmod(int(total), int(parts))
    return [base + (1 if i < extra else 0) for i in range(parts)]


def slice_groups(population: str, neurons: int, stored: int, nbytes: int, neuron_cores: int,
                 synapse_cores_per_slice: int = 0) -> list[Group]:
    """Cuts a population into ``neuron_cores`` slices, each a :class:`Group` with its synapse cores.

    Args:
        population: the population's path.
        neurons: its on-chip neurons.
        stored: its stored synapses.
        nbytes: its synapse memory in bytes (0 when unknown).
        neuron_cores: slices (one neuron core each), >= 1.
        synapse_cores_per_slice: synapse (partial-sum) cores that travel with each slice.

    Returns:
        ``neuron_cores`` groups whose neurons, synapses and bytes add up to the population's.
    """
    n = max(1, int(neuron_cores))
    return [Group(population, 1 + int(synapse_cores_per_slice), a, b, c)
            for a, b, c in zip(_spread(neurons, n), _spread(stored, n), _spread(nbytes, n))]


def place(groups: list[Group], capacity: ChipCapacity) -> Placement:
    """Places groups onto chips greedily in the given order (next-fit).

    Args:
        groups: the groups, in graph order.
        capacity: one chip's capacity.

    Returns:
        The :class:`Placement`. A group that alone exceeds a capacity is listed in ``too_big`` and placed alone.
    """
    chips: list[ChipLoad] = []
    too_big: list[tuple[Group, list[str]]] = []
    cur: ChipLoad | None = None          # the chip that takes the next group (None: open a new one)
    for g in groups:
        alone = capacity.exceeded_by(g.cores, g.neurons, g.stored, g.nbytes)
        if alone:
            too_big.append((g, alone))
            chips.append(ChipLoad())
            chips[-1].add(g)
            cur = None
            continue
        if cur is None or capacity.exceeded_by(cur.cores + g.cores, cur.neurons + g.neurons,
                                               cur.stored + g.stored, cur.nbytes + g.nbytes):
            cur = ChipLoad()
            chips.append(cur)
        cur.add(g)
    return Placement(chips, too_big)
