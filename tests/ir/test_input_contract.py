"""A graph's input contract (``metadata["input_quantization"]``): the graded values it states are the Loihi
quantiser's payloads divided by its scale, and ``to_graph_input`` applies it to images (only)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuroposter.ir.graph import flatten
from neuroposter.ir.lower import LoweringError, lower_model, to_graph_input
from neuroposter.ir.quantize import INPUT_QUANTIZATION, apply_input_quantization, graded_input_contract
from neuroposter.profiling.profiles import load_profile
from neuroposter.targets.loihi.fixed_point import graded_input, quantize_input, quantize_loihi
from neuroposter.testing.active_init import spiking_pixel_sdt


@pytest.fixture(scope="module")
def pixel_graph():
    model = spiking_pixel_sdt(image_size=8, T=2, c1=4, d_model=8, depth=1, mlp_hidden=16, n_classes=3)
    return lower_model(model, T=2)


@pytest.mark.parametrize("amax", [0.7, 2.5, 4.0, 100.0])
def test_graded_values_are_the_loihi_payloads_over_the_scale(pixel_graph, amax: float) -> None:
    """Independent reference: the Loihi target's integer graph of the same graph and range."""
    gi, _ = quantize_loihi(flatten(pixel_graph, strict=True), load_profile("loihi2"), input_amax=amax)
    g = graded_input(gi)
    contract = graded_input_contract(bits=g["message_bits"], scale=g["scale"], amax=amax, source="test")
    assert contract["qmax"] == 127 and contract["scale"] * amax <= 127 < 2 * contract["scale"] * amax
    x = np.random.default_rng(0).normal(0, amax, (2, 3, 3, 8, 8))     # some values beyond the range: clipped
    want = quantize_input(x, gi).astype(np.float64) / g["scale"]
    np.testing.assert_array_equal(apply_input_quantization(x, contract), want)
    assert np.abs(want).max() == contract["range"]


def test_to_graph_input_applies_the_contract_to_images(pixel_graph) -> None:
    images = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    plain = to_graph_input(images, pixel_graph)
    assert np.array_equal(plain, np.broadcast_to(images.numpy()[None], plain.shape))   # no contract: as they are
    contract = graded_input_contract(bits=4, scale=2.0, amax=3.0, source="test")       # qmax 7: steps of 0.5
    pixel_graph.metadata[INPUT_QUANTIZATION] = contract
    try:
        x = to_graph_input(images, pixel_graph)
        assert x.shape == (2, 4, 3, 8, 8) and set(np.unique(x * 2)) <= set(range(-7, 8))
        np.testing.assert_array_equal(x, np.clip(np.round(plain * 2), -7, 7) / 2)
        np.testing.assert_array_equal(to_graph_input(x, pixel_graph), x)           # idempotent
        pixel_graph.metadata[INPUT_QUANTIZATION] = {**contract, "encoding": "mu-law"}
        with pytest.raises(LoweringError, match="input_quantization.*graded"):
            to_graph_input(images, pixel_graph)
    finally:
        del pixel_graph.metadata[INPUT_QUANTIZATION]


def test_contract_refuses_a_scale_that_is_not_a_power_of_two() -> None:
    with pytest.raises(ValueError, match="power of two"):
        graded_input_contract(bits=8, scale=3.0, amax=1.0, source="test")
    with pytest.raises(ValueError, match="2 bits"):
        graded_input_contract(bits=1, scale=2.0, amax=1.0, source="test")
