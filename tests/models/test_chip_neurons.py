"""The chip neurons of fitted models: dynamics against hand-computed traces, and each neuron's ``to_nir`` run in
the reference simulator against its torch forward."""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch

from neuroposter.models.chip_neurons import CHIP_NEURONS, IF, ChipLIF, ChipNeuronError, build_chip_neuron


def _simulate_node(node: nir.NIRNode, x: np.ndarray) -> np.ndarray:
    """Spikes of one neuron node on currents ``x [T, B, n]`` in the reference simulator (same step, float64)."""
    from neuroposter.ir.simulate import simulate

    n = x.shape[-1]
    g = nir.NIRGraph(nodes={"input": nir.Input(input_type=np.array([n])), "sn": node,
                            "output": nir.Output(output_type=np.array([n]))},
                     edges=[("input", "sn"), ("sn", "output")], metadata={"dt": 1.0})
    return np.asarray(simulate(g, x, mode="same_step", arithmetic="float").aligned_output())


def test_if_integrates_without_leak_fires_strictly_and_resets_to_zero() -> None:
    x = torch.tensor([[0.6], [0.4], [0.5], [-0.2], [0.8], [1.5]], dtype=torch.float64)
    # v: 0.6, 1.0 (not > 1: no spike, kept), 1.5 -> spike, 0; -0.2; 0.6; 2.1 -> spike
    z = IF(v_th=1.0)(x)
    assert z[:, 0].tolist() == [0, 0, 1, 0, 0, 1]


def test_if_has_a_surrogate_gradient_and_counts_its_spikes() -> None:
    sn = IF(v_th=1.0)
    x = torch.full((5, 3, 4), 0.45, requires_grad=True)
    z = sn(x)
    z.sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    spikes, numel = sn.spike_count
    assert numel == 60 and spikes == float(z.sum()) and sn.firing_rate == spikes / numel


@pytest.mark.parametrize("neuron", [ChipLIF(tau=2.0, v_th=1.0), ChipLIF(tau=3.0, v_th=0.7), IF(v_th=1.0),
                                    IF(v_th=0.5)])
def test_to_nir_reproduces_the_forward_in_the_reference_simulator(neuron: torch.nn.Module) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(0.4, 0.8, size=(12, 5, 7))
    with torch.no_grad():
        want = neuron(torch.from_numpy(x)).numpy()
    got = _simulate_node(neuron.to_nir((7,)), x)
    assert want.sum() > 0
    np.testing.assert_array_equal(got, want)


def test_chip_lif_is_the_project_lif() -> None:
    from neuroposter.models.lif import LIF

    x = torch.rand(6, 2, 5, generator=torch.Generator().manual_seed(0)) * 3
    torch.testing.assert_close(ChipLIF(2.0, 1.0)(x), LIF(2.0, 1.0)(x))
    node = ChipLIF(2.0, 1.0).to_nir((5,))
    assert isinstance(node, nir.LIF) and np.all(node.tau == 2.0) and np.all(node.v_reset == 0)


def test_registry_builds_by_name_and_refuses_unknown_ones() -> None:
    assert {"lif", "if", "xylo"} <= set(CHIP_NEURONS.names())
    assert isinstance(build_chip_neuron("if", v_th=0.5), IF)
    with pytest.raises(ChipNeuronError, match="available: lif"):
        build_chip_neuron("hodgkin-huxley")
    with pytest.raises(ChipNeuronError, match="'if'"):
        build_chip_neuron("if", tau=2.0)
