"""The float Xylo neuron: its NIR lowering runs identically in the reference simulator; its arithmetic."""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch

from neuroposter.ir.simulate import simulate
from neuroposter.models.xylo_neuron import XyloNeuron


def _graph(neuron: XyloNeuron, w: np.ndarray) -> nir.NIRGraph:
    n_out, n_in = w.shape
    nodes = {"input": nir.Input(np.array([n_in])), "fc": nir.Linear(w), "n": neuron.to_nir(n_out),
             "ro": nir.Linear(np.eye(n_out)), "output": nir.Output(np.array([n_out]))}
    names = list(nodes)
    return nir.NIRGraph(nodes=nodes, edges=list(zip(names, names[1:])))


@pytest.mark.parametrize("dash_syn,dash_mem,theta,bias", [(1, 1, 1.0, 0.0), (2, 0, 0.7, 0.1), (3, 4, 1.5, -0.05)])
def test_to_nir_matches_the_module_in_float64(dash_syn: int, dash_mem: int, theta: float, bias: float) -> None:
    rng = np.random.default_rng(dash_syn * 10 + dash_mem)
    w = rng.normal(0.0, 1.0, (7, 5))
    x = rng.normal(0.3, 1.5, (12, 4, 5))
    neuron = XyloNeuron(dash_syn, dash_mem, theta, bias)
    z = neuron(torch.as_tensor(x @ w.T, dtype=torch.float64)).numpy()
    res = simulate(_graph(neuron, w), x, mode="same_step", record=True)
    np.testing.assert_array_equal(res.records["n"].astype(np.float64), z)
    assert z.max() > 1, "the test should exercise multi-spike steps"


def test_arithmetic_by_hand() -> None:
    # dash_syn 1, dash_mem 1, theta 1: i = (i + x) / 2, v = v / 2 + i, n = floor(v), v -= n
    z = XyloNeuron(1, 1, 1.0)(torch.tensor([[4.0], [0.0], [0.0]], dtype=torch.float64)).flatten().tolist()
    # t0: i 2, v 2 -> 2 spikes, v 0; t1: i 1, v 1 -> 1 spike, v 0; t2: i .5, v .5 -> 0
    assert z == [2.0, 1.0, 0.0]
    assert XyloNeuron(1, 1, 1.0, max_spikes=1)(torch.tensor([[4.0]], dtype=torch.float64)).item() == 1.0


def test_surrogate_gradient_flows_and_bad_parameters_refused() -> None:
    x = torch.full((5, 3), 0.9, requires_grad=True)
    XyloNeuron(1, 1, 1.0)(x).sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    with pytest.raises(ValueError, match="dash_syn"):
        XyloNeuron(dash_syn=0)
    with pytest.raises(ValueError, match="v_th"):
        XyloNeuron(v_th=0.0)


def test_from_profile_reads_the_neuron_entry() -> None:
    n = XyloNeuron.from_profile({"neuron": {"model": "xylo", "dash_syn": 3, "dash_mem": 2}}, v_th=2.0)
    assert (n.dash_syn, n.dash_mem, n.v_th) == (3, 2, 2.0)
    meta = n.to_nir(4).metadata
    assert meta["reset"] == "subtract" and meta["xylo"]["dash_syn"] == 3
