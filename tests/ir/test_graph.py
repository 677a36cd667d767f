"""The shared flattening / topological order (neuroposter.ir.graph) and the three views built on it."""

from __future__ import annotations

import nir
import numpy as np
import pytest

from neuroposter.ir import _graph
from neuroposter.ir import quantize as q
from neuroposter.ir.graph import EndpointError, bypass_junctions, flatten_nested, topo_sort
from neuroposter.profiling import counts


def _lif(n: int) -> nir.LIF:
    return nir.LIF(tau=np.full(n, 2.0), r=np.ones(n), v_leak=np.zeros(n), v_threshold=np.ones(n))


def _nested() -> nir.NIRGraph:
    """input -> c -> mid{inner{a -> n} -> b, input -> b; b -> m} -> z -> output, plus mid.inner -> z, c -> z."""
    io = {"input": nir.Input(input_type={"input": np.array([3])}),
          "output": nir.Output(output_type={"output": np.array([3])})}
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
                        type_check=False, metadata={"dt": 1.0})


def test_flatten_nested_paths_junctions_and_parents():
    flat = flatten_nested(_nested())
    assert list(flat.nodes) == [
        "input", "c", "blocks.0.input", "blocks.0.inner.input", "blocks.0.inner.a", "blocks.0.inner.n",
        "blocks.0.inner.output", "blocks.0.b", "blocks.0.m", "blocks.0.output", "z", "output"]
    assert flat.junctions == ["blocks.0.input", "blocks.0.inner.input", "blocks.0.inner.output", "blocks.0.output"]
    assert flat.subgraphs == {"blocks.0": {"op": "sdsa"}, "blocks.0.inner": {}}
    assert flat.parent["blocks.0.inner.a"] == "blocks.0.inner" and flat.parent["blocks.0.inner"] == "blocks.0"
    # a sub-graph's edges come before the edges of the graph around it; "blocks.0.inner" (a dotted
    # sub-graph name) is reached through its shortest head that names a sub-graph
    assert flat.edges[:3] == [("blocks.0.inner.input", "blocks.0.inner.a"), ("blocks.0.inner.a", "blocks.0.inner.n"),
                              ("blocks.0.inner.n", "blocks.0.inner.output")]
    assert ("blocks.0.inner.output", "z") in flat.edges
    nodes, edges = bypass_junctions(flat)
    assert not set(flat.junctions) & set(nodes)
    assert sorted(edges) == sorted([
        ("blocks.0.inner.a", "blocks.0.inner.n"), ("blocks.0.b", "blocks.0.m"), ("input", "c"),
        ("blocks.0.m", "z"), ("z", "output"), ("c", "z"), ("c", "blocks.0.inner.a"), ("c", "blocks.0.b"),
        ("blocks.0.inner.n", "blocks.0.b"), ("blocks.0.inner.n", "z")])


def test_three_views_agree():
    g = _nested()
    sim = _graph.flatten(g)
    fg = q.flatten_graph(g)
    nodes, edges, tags = counts.flatten_graph(g)
    assert list(sim.units) == list(fg.nodes) == [n for n in nodes if n not in flatten_nested(g).junctions]
    assert fg.edges == list(dict.fromkeys(sim.edges))
    assert sim.subgraphs == fg.groups
    assert tags["blocks.0.inner.a"] == {"op": "sdsa"} and tags["c"] == {}   # innermost sub-graph with metadata
    order = fg.topo_order()
    assert order == _graph.topo_order(sim, sim.edges)
    counts_order, rest = topo_sort(nodes, edges)
    assert not rest and [n for n in counts_order if n in fg.nodes] == order


def test_topo_sort_is_stable_and_returns_cycles():
    assert topo_sort("abcd", [("c", "a"), ("d", "b"), ("c", "b")]) == (["c", "d", "a", "b"], [])
    assert topo_sort("ab", [("a", "b"), ("a", "b"), ("x", "a")]) == (["a", "b"], [])
    assert topo_sort("abcd", [("a", "b"), ("b", "c"), ("c", "b"), ("c", "d")]) == (["a"], ["b", "c", "d"])


def test_cycle_handling_per_caller():
    g = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([3])}), "n": _lif(3), "m": _lif(3),
                            "output": nir.Output(output_type={"output": np.array([3])})},
                     edges=[("input", "n"), ("n", "m"), ("m", "n"), ("m", "output")], type_check=False)
    sim = _graph.flatten(g)
    with pytest.raises(_graph.GraphStructureError, match=r"\['m', 'n', 'output'\] form a zero-delay cycle"):
        _graph.topo_order(sim, sim.edges)
    with pytest.raises(q.QuantizationError, match="node 'm' .*recurrent"):
        q.flatten_graph(g).topo_order()
    # op counts: the recurrent part follows in graph order
    nodes, edges, _ = counts.flatten_graph(g)
    order, rest = topo_sort(nodes, edges)
    assert order + rest == ["input", "n", "m", "output"]


def test_endpoint_errors_per_caller():
    g = _nested()
    g.edges.append(("c", "blocks.0.nope"))
    with pytest.raises(EndpointError) as exc:
        flatten_nested(g)
    assert (exc.value.prefix, exc.value.ref, exc.value.count) == ("blocks.0.", "nope", None)
    with pytest.raises(_graph.GraphStructureError, match=r"edge endpoint blocks\.0\.'nope' is not a node"):
        _graph.flatten(g)
    with pytest.raises(q.QuantizationError, match="node 'nope' .*does not exist"):
        q.flatten_graph(g)
    with pytest.raises(ValueError, match=r"NIR edge endpoint 'blocks\.0\.nope' names no node"):
        counts.flatten_graph(g)


def test_subgraph_end_counts_per_caller():
    sub = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([3])}), "n": _lif(3)},
                       edges=[("input", "n")], type_check=False)
    g = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([3])}), "s": sub, "z": _lif(3),
                            "output": nir.Output(output_type={"output": np.array([3])})},
                     edges=[("input", "s"), ("s", "z"), ("z", "output")], type_check=False)
    with pytest.raises(_graph.GraphStructureError, match="sub-graph 's' has 0 Output nodes"):
        _graph.flatten(g)
    with pytest.raises(q.QuantizationError, match="node 's' .*no Output node"):
        q.flatten_graph(g)
    _, edges, _ = counts.flatten_graph(g)          # counts drops the edge out of an Output-less sub-graph
    assert ("input", "s.input") in edges and not any(d == "z" for _, d in edges)
