"""The one table of NIR node types: each class ``nir`` defines, with its role in a graph.

Every module that needs to know what a NIR node *is* (a connection, a neuron, a reshape ...) asks
this table, so the simulator, the quantisers, the op counter, the mapper and the targets agree.
The table is built from the node classes of the installed ``nir`` (every ``nir.NIRNode``
subclass in ``nir.ir``); :data:`ROLE_OF` gives each its role and a test checks that no class is
left without one. What a *consumer* supports (the simulator runs no ``CubaLI``, Loihi hosts only
spiking neurons) is the consumer's business and is written there, by type name through
:func:`classes`, which refuses a name that is not in the table.

Roles (the strings are the ``kinds`` of :func:`neuroposter.ir.graph_io.graph_stats`):

=============  ===============================================================================
``input``      the graph's (or a sub-graph's) ``Input``: a source
``output``     ``Output``: a sink
``conn``       a connection (synapse) node: a linear map of its summed input (``Affine``,
               ``Linear``, ``Conv1d``, ``Conv2d``, ``Scale``, ``SumPool2d``, ``AvgPool2d``)
``neuron``     a neuron population (``LIF``, ``CubaLIF``, ``IF``, ``LI``, ``CubaLI``, ``I``,
               ``Threshold``); ``spiking`` when it emits spikes (it has a threshold)
``reshape``    ``Flatten``: a free reshape
``delay``      ``Delay``: a per-element delay line
``identity``   ``Identity``: passes its input through
``graph``      ``NIRGraph``: a sub-graph (inlined by :func:`neuroposter.ir.graph.flatten`)
=============  ===============================================================================
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import nir
import nir.ir

__all__ = [
    "ROLES",
    "ROLE_OF",
    "NodeType",
    "NODE_TYPES",
    "UnknownNodeTypeError",
    "node_type",
    "classes",
    "names",
]

ROLES: tuple[str, ...] = ("input", "output", "conn", "neuron", "reshape", "delay", "identity", "graph")

#: NIR class name -> (role, spiking, weighted). ``weighted``: the node holds a ``weight`` tensor.
ROLE_OF: dict[str, tuple[str, bool, bool]] = {
    "Input": ("input", False, False),
    "Output": ("output", False, False),
    "Affine": ("conn", False, True),
    "Linear": ("conn", False, True),
    "Conv1d": ("conn", False, True),
    "Conv2d": ("conn", False, True),
    "Scale": ("conn", False, False),
    "SumPool2d": ("conn", False, False),
    "AvgPool2d": ("conn", False, False),
    "LIF": ("neuron", True, False),
    "CubaLIF": ("neuron", True, False),
    "IF": ("neuron", True, False),
    "Threshold": ("neuron", True, False),
    "LI": ("neuron", False, False),
    "CubaLI": ("neuron", False, False),
    "I": ("neuron", False, False),
    "Flatten": ("reshape", False, False),
    "Delay": ("delay", False, False),
    "Identity": ("identity", False, False),
    "NIRGraph": ("graph", False, False),
}


@dataclass(frozen=True)
class NodeType:
    """One NIR node class and its role.

    Attributes:
        name: the class name (``"LIF"``), as NIR writes it.
        cls: the ``nir`` class.
        role: one of :data:`ROLES`.
        spiking: a neuron that emits spikes (LIF, CubaLIF, IF, Threshold).
        weighted: a connection that holds a ``weight`` tensor (Affine, Linear, Conv1d, Conv2d).
    """

    name: str
    cls: type[nir.NIRNode]
    role: str
    spiking: bool = False
    weighted: bool = False


class UnknownNodeTypeError(KeyError):
    """A node type that is not in the table; the message lists the known names."""

    def __init__(self, what: str) -> None:
        super().__init__(f"unknown NIR node type {what}; known: {', '.join(sorted(NODE_TYPES))}")
        self.what = what

    def __str__(self) -> str:
        return str(self.args[0])


def _nir_classes() -> dict[str, type[nir.NIRNode]]:
    """Every ``nir.NIRNode`` subclass defined in ``nir.ir`` (and its sub-modules), by name."""
    found: dict[str, type[nir.NIRNode]] = {}
    stack = [nir.NIRNode]
    while stack:
        for sub in stack.pop().__subclasses__():
            if sub.__module__.startswith("nir.ir") and inspect.isclass(sub):
                found.setdefault(sub.__name__, sub)
            stack.append(sub)
    return found


def _build() -> dict[str, NodeType]:
    table: dict[str, NodeType] = {}
    for name, cls in sorted(_nir_classes().items()):
        if name in ROLE_OF:
            role, spiking, weighted = ROLE_OF[name]
            table[name] = NodeType(name, cls, role, spiking, weighted)
    return table


#: class name -> :class:`NodeType`, for every NIR class of the installed ``nir`` that has a role.
NODE_TYPES: dict[str, NodeType] = _build()
_BY_CLASS: dict[type, NodeType] = {t.cls: t for t in NODE_TYPES.values()}


def node_type(x: nir.NIRNode | type | str) -> NodeType:
    """The table entry of a node, a node class or a class name.

    Raises:
        UnknownNodeTypeError: a type that is not in the table (the message lists the known names).
    """
    if isinstance(x, str):
        if x in NODE_TYPES:
            return NODE_TYPES[x]
        raise UnknownNodeTypeError(repr(x))
    cls = x if isinstance(x, type) else type(x)
    for c in cls.__mro__:
        if c in _BY_CLASS:
            return _BY_CLASS[c]
    raise UnknownNodeTypeError(repr(cls.__name__))


def names(*, role: str | None = None, spiking: bool | None = None, weighted: bool | None = None
          ) -> tuple[str, ...]:
    """Names of the table's types with the given role / flags (``None``: any), in table order.

    Raises:
        ValueError: an unknown role.
    """
    if role is not None and role not in ROLES:
        raise ValueError(f"unknown role {role!r}; valid: {', '.join(ROLES)}")
    return tuple(t.name for t in NODE_TYPES.values()
                 if (role is None or t.role == role) and (spiking is None or t.spiking == spiking)
                 and (weighted is None or t.weighted == weighted))


def classes(*type_names: str, role: str | None = None, spiking: bool | None = None,
            weighted: bool | None = None) -> tuple[type[nir.NIRNode], ...]:
    """The ``nir`` classes of the named types, or (no names) of the types with a role / flags, for
    ``isinstance`` checks.

    Raises:
        UnknownNodeTypeError: a name that is not in the table.
    """
    if type_names:
        return tuple(node_type(n).cls for n in type_names)
    return tuple(NODE_TYPES[n].cls for n in names(role=role, spiking=spiking, weighted=weighted))
