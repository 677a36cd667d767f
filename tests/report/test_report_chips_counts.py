"""A chip bundle's own op counts (:func:`neuroposter.profiling.stored.chip_counts`): the deployed graph counted by
the NIR bundle's code, split into the chip part and the host part (nodes with ``placement=host``), every number
checked against counts made by hand on a small graph."""

from __future__ import annotations

from pathlib import Path

import nir
import numpy as np
import pytest

from neuroposter.ir.graph import host_paths
from neuroposter.profiling.stored import chip_counts, read_op_counts, write_op_counts

HOST = {"placement": "host"}


def _lif(n: int, meta: dict | None = None) -> nir.LIF:
    """A neuron that spikes on this step's input alone: tau = dt, r = 1, no leak, threshold 0.5, reset to 0."""
    return nir.LIF(tau=np.ones(n), r=np.ones(n), v_leak=np.zeros(n), v_threshold=np.full(n, 0.5),
                   v_reset=np.zeros(n), metadata=dict(meta or {}))


# host projection: 4 inputs -> 3 host neurons (input 0 reaches 2 of them, 1..3 reach one; a zero weight left out)
W_HOST = np.array([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]])
W_CHIP = np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])     # 3 host neurons -> 2 chip neurons, fan-out 1 each
W_OUT = np.array([[1.0, 1.0]])                             # 2 chip neurons -> 1 output, fan-out 1 each
# two steps, one sample: step 0 inputs 0 and 1 fire, step 1 input 2 fires
X = np.array([[[1.0, 1.0, 0.0, 0.0]], [[0.0, 0.0, 1.0, 0.0]]])


def _graph(nested_host: bool = False) -> nir.NIRGraph:
    host_aff = nir.Affine(weight=W_HOST, bias=np.zeros(3), metadata={} if nested_host else dict(HOST))
    host_sn = _lif(3, {} if nested_host else HOST)
    nodes: dict = {"input": nir.Input(input_type={"input": np.array([4])})}
    edges = []
    if nested_host:
        nodes["host"] = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([4])}),
                                            "aff": host_aff, "sn": host_sn,
                                            "output": nir.Output(output_type={"output": np.array([3])})},
                                     edges=[("input", "aff"), ("aff", "sn"), ("sn", "output")], metadata=dict(HOST))
        edges += [("input", "host"), ("host", "chip_aff")]
    else:
        nodes.update(host_aff=host_aff, host_sn=host_sn)
        edges += [("input", "host_aff"), ("host_aff", "host_sn"), ("host_sn", "chip_aff")]
    nodes.update(chip_aff=nir.Affine(weight=W_CHIP, bias=np.zeros(2)), chip_sn=_lif(2),
                 out_aff=nir.Affine(weight=W_OUT, bias=np.zeros(1)),
                 output=nir.Output(output_type={"output": np.array([1])}))
    edges += [("chip_aff", "chip_sn"), ("chip_sn", "out_aff"), ("out_aff", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1.0, "layout": "flat"})


@pytest.mark.parametrize("nested", [False, True])
def test_host_and_chip_parts_counted_by_hand(nested: bool, tmp_path: Path) -> None:
    g = _graph(nested)
    prefix = "host." if nested else "host_"
    assert host_paths(g) == {f"{prefix}aff", f"{prefix}sn"}
    entries = chip_counts(g, X, run_dir=tmp_path / "fit-xylo", encoded="pooled", chip="xylo", samples_requested=8,
                          weight_bits=8, state_bits=16)
    assert set(entries) == {"model", "host"}
    host, chip = entries["host"].counts, entries["model"].counts
    # host: step 0 inputs 0, 1 (fan-out 2 + 1), step 1 input 2 (fan-out 1) -> 4 synops; dense 5 x 2 steps
    # pre-activations [1, 2, 0] then [0, 0, 1] -> 3 host spikes; 3 neurons x 2 steps updates
    assert host.synops == 4 and host.acs == 4 and host.macs == 0 and host.dense_ops == 10
    assert host.spikes == 3 and host.neuron_updates_dense == 6
    assert [lc.name for lc in host.layers] == [f"{prefix}aff", f"{prefix}sn"]
    # chip: host spikes (2 then 1) x fan-out 1 = 3 synops, pre-activations [2, 0] then [0, 1] -> 2 chip spikes,
    # readout 2 spikes x fan-out 1 = 2 synops; dense (3 + 2) x 2 steps
    assert chip.synops == 5 and chip.spikes == 2 and chip.dense_ops == 10 and chip.neuron_updates_dense == 4
    assert [lc.name for lc in chip.layers] == ["chip_aff", "chip_sn", "out_aff"]
    assert chip.samples == host.samples == 1 and chip.T == host.T == 2
    # precisions: the chip's for the chip part, float on the host
    assert (chip.weight_bits, chip.state_bits) == (8, 16) and (host.weight_bits, host.state_bits) == (32, 32)
    assert entries["host"].info["placement"] == "host" and entries["model"].info["placement"] == "chip"
    assert entries["model"].info["samples_requested"] == 8 and "xylo" in entries["model"].provenance
    # the same format as every bundle's op_counts.json, host entry separable
    write_op_counts(tmp_path, entries)
    back = read_op_counts(tmp_path)
    assert back["model"].counts == chip and back["host"].counts == host


def test_no_host_nodes_is_one_entry(tmp_path: Path) -> None:
    g = _graph()
    for k in ("host_aff", "host_sn"):
        g.nodes[k].metadata = {}
    entries = chip_counts(g, X, run_dir=tmp_path / "sdt", encoded="pooled", chip="spinnaker", samples_requested=1)
    assert set(entries) == {"model"}
    c = entries["model"].counts
    assert c.synops == 4 + 5 and c.spikes == 3 + 2
    assert (c.weight_bits, c.state_bits) == (8, 16)          # the SNN defaults without the chip's precision
