"""Lowering the SDT's spiking front end (sdt-frontend) to NIR: its nodes, and the graph equal to the model spike for
spike (every front-end layer firing) in the reference simulator, same-step and per-hop with retiming."""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch

from neuroposter.ir import lower_model, retime, simulate
from neuroposter.ir.graph import flatten
from neuroposter.ir.lower import to_graph_input
from neuroposter.models.sdt_frontend import FrontendSDT
from neuroposter.targets.nir_target import norse_reference
from neuroposter.testing.active_init import calibrate_batchnorms

T, B, CLASSES, HW, GRID, WIDTHS, D_IN = 3, 4, 5, (32, 16), (4, 2), (4, 6, 8), 24


@pytest.fixture(scope="module")
def model() -> FrontendSDT:
    """A tiny front end + SDT whose BatchNorms (head's included) hold one random batch's statistics, scaled so that
    every layer fires."""
    torch.manual_seed(2)
    m = FrontendSDT(n_classes=CLASSES, image_size=HW, grid=GRID, T=T, widths=WIDTHS, d_in=D_IN, n_tokens=8,
                    d_model=16, depth=1, heads=2, mlp_hidden=16).double()
    return calibrate_batchnorms(m, lambda: torch.randn(32, 3, *HW, dtype=torch.float64))


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    torch.manual_seed(9)
    return torch.randn(B, 3, *HW, dtype=torch.float64)


@pytest.fixture(scope="module")
def graph(model) -> nir.NIRGraph:
    return lower_model(model, T=T, source_run="runs/sdt-frontend")


def test_front_end_lowers_to_conv2d_lif_sumpool_flatten_and_a_token_conv(graph) -> None:
    n = graph.nodes
    assert graph.metadata["model"] == "sdt-frontend" and graph.metadata["layout"] == "images"
    assert graph.metadata["image_size"] == list(HW) and graph.metadata["grid"] == list(GRID)
    assert tuple(n["input"].output_type["output"]) == (3, *HW)
    for i, (c, k) in enumerate(zip(WIDTHS, (1, 2, 4)), start=1):
        assert isinstance(n[f"stem.conv{i}"], nir.Conv2d) and n[f"stem.conv{i}"].weight.shape[0] == c
        assert n[f"stem.sn{i}"].tau.shape == (c, HW[0] // k, HW[1] // k)
        assert isinstance(n[f"stem.pool{i}"], nir.SumPool2d)
    assert isinstance(n["stem.proj"], nir.Conv1d) and n["stem.proj_sn"].tau.shape == (D_IN, 8)
    assert ("stem.proj_sn", "embed") in graph.edges


def test_graph_equals_the_model_spike_for_spike(model, graph, images) -> None:
    x = to_graph_input(images, graph)
    same = simulate(flatten(graph, strict=True), x, mode="same_step")
    logits, ref = norse_reference(model, x)
    assert {"stem.sn1", "stem.sn2", "stem.sn3", "stem.proj_sn", "blocks.0.mlp.sn_hidden", "head_sn"} <= set(ref)
    for name, spikes in ref.items():
        assert np.array_equal(same.records[name], spikes), name
    for name in ("stem.sn1", "stem.sn2", "stem.sn3", "stem.proj_sn", "head_sn"):
        assert 0.005 < float(ref[name].mean()) < 0.95, name      # not a comparison between silent layers
    # and the model itself: its front-end spikes are the graph's (tokens [D, N] channels-first)
    with torch.no_grad():
        fe = model.frontend(images).numpy()                        # [T, B, N, D]
    assert np.array_equal(np.swapaxes(same.records["stem.proj_sn"], -1, -2), fe)
    np.testing.assert_allclose(same.output, logits, rtol=0, atol=1e-10)
    flat = flatten(graph, strict=True)
    hop = simulate(flat, x, mode="per_hop", delays=retime(flat).delays)
    np.testing.assert_allclose(hop.aligned_output(), same.output, atol=1e-10)
