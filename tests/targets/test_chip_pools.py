"""A chip that hosts no pool node (SpiNNaker, SpiNNaker 2) gets the pixel SDT's pools composed into the synapses
after them, exactly: the lowered graph spikes as the model's graph does, layer for layer."""

from __future__ import annotations

import numpy as np
import torch

from neuroposter.ir import lower_model, simulate
from neuroposter.ir.graph import flatten
from neuroposter.ir.lower import to_graph_input
from neuroposter.profiling.profiles import load_profile
from neuroposter.targets.chips import check_chip, lower_for_profile
from neuroposter.testing.active_init import spiking_pixel_sdt


def _pixel_graph():
    m = spiking_pixel_sdt(image_size=8, T=3, c1=4, d_model=8, depth=1, mlp_hidden=8, n_classes=3)
    g = lower_model(m, T=3)
    x = to_graph_input(torch.randn(6, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1)), g)
    return g, x


def test_pools_are_composed_exactly_where_the_chip_hosts_none() -> None:
    g, x = _pixel_graph()
    low, applied, refused = lower_for_profile(g, load_profile("spinnaker"))
    pools = [e for e in applied if e["from"] == "SumPool2d"]
    assert {e["node"] for e in pools} == {"stem.pool1", "stem.pool2"} and not refused
    assert {e["to"] for e in pools} == {"composed into stem.conv2", "composed into embed"}
    assert not any(type(n).__name__ == "SumPool2d" for n in low.nodes.values())
    a = simulate(g, x, mode="same_step", arithmetic="float")
    b = simulate(low, x, mode="same_step", arithmetic="float")
    assert np.array_equal(a.output, b.output)
    neurons = [k for k in a.records if k in b.records and k.endswith(("sn", "sn1", "sn2", "sn_in", "head_sn"))]
    assert neurons and all(np.array_equal(a.records[k], b.records[k]) for k in neurons)
    assert any(a.records[k].any() for k in neurons)                        # the comparison is not of silence
    hostable, violations, _ = check_chip(g, load_profile("spinnaker"))
    assert not any("SumPool2d" in v for v in violations)


def test_a_chip_that_hosts_pools_keeps_them() -> None:
    g, _ = _pixel_graph()
    low, applied, _ = lower_for_profile(g, load_profile("speck"))
    assert not any(e["from"] == "SumPool2d" for e in applied)
    assert sum(type(nd.nir).__name__ == "SumPool2d" for nd in flatten(low).nodes.values()) == 2
