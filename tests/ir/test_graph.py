"""The one graph model (neuroposter.ir.graph) and the node-type table (neuroposter.ir.nodes)."""

from __future__ import annotations

import nir
import numpy as np
import pytest

from neuroposter.ir.graph import GraphError, Projection, flatten, topo_sort
from neuroposter.ir.nodes import NODE_TYPES, UnknownNodeTypeError, classes, names, node_type


def _lif(n: int) -> nir.LIF:
    return nir.LIF(tau=np.full(n, 2.0), r=np.ones(n), v_leak=np.zeros(n), v_threshold=np.ones(n))


def _io(n: int = 3) -> dict[str, nir.NIRNode]:
    return {"input": nir.Input(input_type={"input": np.array([n])}),
            "output": nir.Output(output_type={"output": np.array([n])})}


def _nested() -> nir.NIRGraph:
    """input -> c -> mid{inner{a -> n} -> b, input -> b; b -> m} -> z -> output, plus mid.inner -> z, c -> z."""
    io = _io()
    inner = nir.NIRGraph(nodes={"input": io["input"], "a": nir.Affine(weight=np.eye(3), bias=np.zeros(3)),
                                "n": _lif(3), "output": io["output"]},
                         edges=[("input", "a"), ("a", "n"), ("n", "output")], type_check=False)
    mid = nir.NIRGraph(nodes={"input": io["input"], "inner": inner,
                              "b": nir.Affine(weight=2 * np.eye(3), bias=np.zeros(3)), "m": _lif(3),
                              "output": io["output"]},
                       edges=[("input", "inner"), ("inner", "b"), ("input", "b"), ("b", "m"), ("m", "output")],
                       type_check=False, metadata={"op": "sdsa"})
    return nir.NIRGraph(nodes={"input": io["input"], "c": nir.Affine(weight=np.eye(3), bias=np.zeros(3)),
                               "blocks.0": mid, "z": _lif(3), "output": io["output"]},
                        edges=[("input", "c"), ("c", "blocks.0"), ("blocks.0", "z"), ("blocks.0.inner", "z"),
                               ("z", "output"), ("c", "z")],
                        type_check=False, metadata={"dt": 0.5})


# ----------------------------------------------------------------------------------------- node table


def _nir_node_classes() -> set[type]:
    found, stack = set(), [nir.NIRNode]
    while stack:
        for sub in stack.pop().__subclasses__():
            if sub.__module__.startswith("nir."):
                found.add(sub)
            stack.append(sub)
    return found


def test_node_table_covers_every_nir_class():
    classes_ = _nir_node_classes()
    assert {c.__name__ for c in classes_} == set(NODE_TYPES)
    for c in classes_:
        assert node_type(c).cls is c and node_type(c.__name__).cls is c
    assert set(names(role="neuron")) == {"LIF", "CubaLIF", "IF", "LI", "CubaLI", "I", "Threshold"}
    assert set(names(role="neuron", spiking=True)) == {"LIF", "CubaLIF", "IF", "Threshold"}
    assert set(names(role="conn")) == {"Affine", "Linear", "Conv1d", "Conv2d", "Scale", "SumPool2d", "AvgPool2d"}
    assert set(names(weighted=True)) == {"Affine", "Linear", "Conv1d", "Conv2d"}
    assert node_type(nir.I(r=np.ones(2))).role == "neuron"               # NIR's integrator is "I"
    assert (node_type("Flatten").role, node_type("Delay").role, node_type("NIRGraph").role) == (
        "reshape", "delay", "graph")
    assert classes("LIF", "IF") == (nir.LIF, nir.IF)


def test_unknown_type_error_lists_the_known_names():
    with pytest.raises(UnknownNodeTypeError, match=r"'Integrator'; known: .*\bI\b.*LIF"):
        node_type("Integrator")
    with pytest.raises(UnknownNodeTypeError):
        classes("LIF", "Integrator")
    with pytest.raises(ValueError, match="unknown role"):
        names(role="synapse")

    class Custom(nir.NIRNode):  # defined outside nir: no role
        pass

    with pytest.raises(UnknownNodeTypeError, match="'Custom'; known: Affine"):
        node_type(Custom)


# ----------------------------------------------------------------------------------------- flatten


def test_flatten_nested_paths_groups_and_bypassed_junctions():
    g = flatten(_nested())
    assert list(g.nodes) == ["input", "c", "blocks.0.inner.a", "blocks.0.inner.n", "blocks.0.b", "blocks.0.m",
                             "z", "output"]
    assert g.inputs == ("input",) and g.outputs == ("output",) and g.input == "input" and g.dt == 0.5
    assert g.groups == {"blocks.0": {"op": "sdsa"}, "blocks.0.inner": {}}
    assert g.nodes["blocks.0.inner.a"].group == "blocks.0.inner" and g.nodes["c"].group == ""
    assert g.tag("blocks.0.inner.a") == {"op": "sdsa"} and g.tag("c") == {}   # innermost group with metadata
    assert g.nodes["blocks.0.inner.n"].role == "neuron" and g.nodes["c"].type.name == "Affine"
    assert (g.nodes["c"].in_shape, g.nodes["c"].out_shape) == ((3,), (3,))
    # a -> sub.input -> b is a -> b; "blocks.0.inner" (a dotted sub-graph name) reached through "blocks.0"
    assert sorted(g.edges) == sorted([
        ("blocks.0.inner.a", "blocks.0.inner.n"), ("blocks.0.b", "blocks.0.m"), ("input", "c"),
        ("blocks.0.m", "z"), ("z", "output"), ("c", "z"), ("c", "blocks.0.inner.a"), ("c", "blocks.0.b"),
        ("blocks.0.inner.n", "blocks.0.b"), ("blocks.0.inner.n", "z")])


def _repeated() -> nir.NIRGraph:
    """c reaches n twice: through the sub-graph's Input, which has two edges into n."""
    io = _io()
    sub = nir.NIRGraph(nodes={"input": io["input"], "n": _lif(3), "output": io["output"]},
                       edges=[("input", "n"), ("input", "n"), ("n", "output")], type_check=False)
    return nir.NIRGraph(nodes={**_io(), "c": nir.Affine(weight=np.eye(3), bias=np.zeros(3)), "s": sub},
                        edges=[("input", "c"), ("c", "s"), ("s", "output")], type_check=False)


def test_junction_bypass_keeps_repeated_edges_and_offers_unique_view():
    g = flatten(_repeated())
    assert g.edges.count(("c", "s.n")) == 2                       # summed twice, as NIR does
    assert g.unique_edges() == [("input", "c"), ("c", "s.n"), ("s.n", "output")]
    assert g.preds("s.n") == ["c", "c"] and g.preds("s.n", unique=True) == ["c"]
    assert (g.fan_in("s.n"), g.fan_out("c"), g.fan_out("s.n"), g.fan_in("input")) == (2, 2, 1, 0)
    assert g.succs("c", unique=True) == ["s.n"]


def test_topo_order_is_stable_and_a_cycle_is_named():
    assert topo_sort("abcd", [("c", "a"), ("d", "b"), ("c", "b")]) == (["c", "d", "a", "b"], [])
    assert topo_sort("ab", [("a", "b"), ("a", "b"), ("x", "a")]) == (["a", "b"], [])
    assert topo_sort("abcd", [("a", "b"), ("b", "c"), ("c", "b"), ("c", "d")]) == (["a"], ["b", "c", "d"])
    assert flatten(_nested()).topo_order() == ["input", "c", "blocks.0.inner.a", "blocks.0.inner.n", "blocks.0.b",
                                               "blocks.0.m", "z", "output"]
    g = flatten(nir.NIRGraph(nodes={**_io(), "n": _lif(3), "m": _lif(3)},
                             edges=[("input", "n"), ("n", "m"), ("m", "n"), ("m", "output")], type_check=False))
    with pytest.raises(GraphError, match=r"\['m', 'n', 'output'\] form a cycle") as exc:
        g.topo_order()
    assert exc.value.nodes == ["output", "n", "m"] and exc.value.node == "m"   # graph order; node: the first by name
    assert g.topo_sort() == (["input"], ["output", "n", "m"])


def test_projections_walk_connections_and_reshapes_between_units():
    io = {"input": nir.Input(input_type={"input": np.array([2, 2])}),
          "output": nir.Output(output_type={"output": np.array([3])})}
    g = flatten(nir.NIRGraph(
        nodes={**io, "flat": nir.Flatten(input_type={"input": np.array([2, 2])}, start_dim=0),
               "fc": nir.Affine(weight=np.ones((4, 4)), bias=np.zeros(4)), "n1": _lif(4),
               "n2": _lif(4), "fc2": nir.Linear(weight=np.ones((3, 4))), "fc3": nir.Affine(weight=np.ones((3, 3)),
                                                                                         bias=np.zeros(3))},
        edges=[("input", "flat"), ("flat", "fc"), ("fc", "n1"), ("n1", "n2"), ("n2", "fc2"), ("fc2", "fc3"),
               ("fc3", "output"), ("n1", "n2")],
        type_check=False))
    assert g.projections() == [                             # by destination, in graph order
        Projection("n2", "output", "fc3", ("fc2", "fc3")),  # a chain of connections
        Projection("input", "n1", "fc", ("flat", "fc")),
        Projection("n1", "n2", None, ()),                   # a direct (identity) edge, once
    ]
    assert [g.is_unit(n) for n in ("input", "flat", "fc", "n1", "output")] == [True, False, False, True, True]


def test_projections_refuse_a_node_that_is_no_connection_or_reshape():
    g = flatten(nir.NIRGraph(nodes={**_io(), "d": nir.Delay(delay=np.ones(3)), "n": _lif(3)},
                             edges=[("input", "d"), ("d", "n"), ("n", "output")], type_check=False))
    with pytest.raises(GraphError, match="'d' \\(Delay\\)") as exc:
        g.projections()
    assert (exc.value.node, exc.value.node_type, exc.value.reason) == ("d", "Delay", "node type is not supported")


def test_synapse_counts_against_hand_computed_numbers():
    nodes = {
        "input": nir.Input(input_type={"input": np.array([2, 6, 6])}),
        "conv2": nir.Conv2d(input_shape=(6, 6), weight=np.ones((4, 2, 3, 3)), stride=1, padding=0, dilation=1,
                            groups=1, bias=np.zeros(4)),                                       # -> [4, 4, 4]
        "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        "flat": nir.Flatten(input_type={"input": np.array([4, 2, 2])}, start_dim=0),           # -> [16]
        "fc": nir.Affine(weight=np.ones((10, 16)), bias=np.zeros(10)),
        "lif": _lif(10),
        "scale": nir.Scale(scale=np.ones(10)),
        "conv1": nir.Conv1d(input_shape=5, weight=np.ones((3, 2, 2)), stride=1, padding=0, dilation=1, groups=1,
                            bias=np.zeros(3)),                                                  # [2, 5] -> [3, 4]
        "output": nir.Output(output_type={"output": np.array([10])}),
    }
    graph = nir.NIRGraph(nodes=nodes, edges=[("input", "conv2"), ("conv2", "pool"), ("pool", "flat"),
                                             ("flat", "fc"), ("fc", "lif"), ("lif", "scale"), ("scale", "output")],
                         type_check=True)
    g = flatten(graph)
    syn = {n: (g.synapses(n).stored, g.synapses(n).expanded) for n in g.nodes}
    assert syn["conv2"] == (72, 72 * 4 * 4)           # every kernel weight re-used at 16 output positions
    assert syn["pool"] == (0, 4 * 4 * 2 * 2)          # 2x2 window per output element, nothing stored
    assert syn["fc"] == (160, 160)
    assert syn["scale"] == (10, 10)
    assert syn["conv1"] == (12, 3 * 2 * 2 * 4)
    assert syn["lif"] == syn["flat"] == syn["input"] == (0, 0)


def test_flatten_errors_name_the_node():
    g = _nested()
    g.edges.append(("c", "blocks.0.nope"))
    with pytest.raises(GraphError, match=r"edge endpoint 'blocks\.0\.nope' names no node") as exc:
        flatten(g)
    assert exc.value.node == "blocks.0.nope"

    sub = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([3])}), "n": _lif(3)},
                       edges=[("input", "n")], type_check=False)
    g = nir.NIRGraph(nodes={**_io(), "s": sub, "z": _lif(3)},
                     edges=[("input", "s"), ("s", "z"), ("z", "output")], type_check=False)
    # an edge out of an Output-less sub-graph is an error for every caller (it used to vanish for one)
    for strict in (False, True):
        with pytest.raises(GraphError, match="sub-graph 's' has 0 Output nodes"):
            flatten(g, strict=strict)

    two = nir.NIRGraph(nodes={**_io(), "input2": nir.Input(input_type={"input": np.array([3])}), "n": _lif(3)},
                       edges=[("input", "n"), ("input2", "n"), ("n", "output")], type_check=False)
    assert flatten(two).inputs == ("input", "input2")
    with pytest.raises(GraphError, match="exactly one Input and one Output"):
        flatten(two, strict=True)
    with pytest.raises(GraphError, match="2 top-level Input nodes"):
        flatten(two).input

    class Custom(nir.NIRNode):
        pass

    odd = nir.NIRGraph(nodes={**_io(), "x": object.__new__(Custom)}, edges=[("input", "x"), ("x", "output")], type_check=False)
    with pytest.raises(GraphError, match="node 'x': unknown NIR node type 'Custom'; known: Affine"):
        flatten(odd)


def test_executors_take_a_strict_graph_only():
    from neuroposter.ir import retime
    from neuroposter.ir.graph import executable

    nested = _nested()
    g = flatten(nested, strict=True)
    assert g.strict and executable(g) is g and not flatten(nested).strict
    assert retime(g) == retime(nested)
    with pytest.raises(GraphError, match="without strict=True"):
        executable(flatten(nested))
