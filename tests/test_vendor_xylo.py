"""Xylo: the project's integer reference against SynSense's bit-accurate xylosim, spike for spike."""

from __future__ import annotations

import nir
import numpy as np
import pytest

from neuroposter.ir.quantize import grid
from neuroposter.models.xylo_neuron import XyloNeuron
from neuroposter.targets.vendor import VENDOR_SIMULATORS, VendorError, vendor_check
from neuroposter.targets.vendor import xylo

pytest.importorskip("xylosim.v2")


class _Limits:
    inputs_per_chip, neurons_per_chip, outputs_per_chip, weight_bits, fan_in, fan_out = 16, 1000, 8, 8, None, None


class _Profile:
    name = "xylo"
    limits = _Limits()


def _net(seed: int, sizes: tuple[int, ...], n_out: int, *, host: bool = True, d: int = 20) -> nir.NIRGraph:
    rng = np.random.default_rng(seed)
    nodes: dict[str, nir.NIRNode] = {"input": nir.Input(np.array([d if host else sizes[0]]))}
    if host:
        n0 = sizes[0]
        nodes["proj"] = nir.Affine(rng.normal(0, 0.5, (n0, d)), rng.normal(0, 0.2, n0), metadata={"placement": "host"})
        nodes["plif"] = nir.LIF(np.full(n0, 2.0), np.ones(n0), np.zeros(n0), np.full(n0, 0.5),
                                metadata={"placement": "host"})
    for l in range(1, len(sizes)):
        w = rng.normal(0, 0.6, (sizes[l], sizes[l - 1])) * (rng.random((sizes[l], sizes[l - 1])) < 0.7)
        nodes[f"fc{l}"] = nir.Linear(grid(w, 8, float(np.abs(w).max())))
        neuron = XyloNeuron(int(rng.integers(1, 4)), int(rng.integers(0, 4)), float(rng.uniform(0.5, 1.5)),
                            float(rng.normal(0, 0.05)))
        nodes[f"n{l}"] = neuron.to_nir(sizes[l])
    w = rng.normal(0, 0.3, (n_out, sizes[-1]))
    nodes["head"] = nir.Affine(grid(w, 8, float(np.abs(w).max())), rng.normal(0, 0.1, n_out))
    nodes["output"] = nir.Output(np.array([n_out]))
    names = list(nodes)
    return nir.NIRGraph(nodes=nodes, edges=list(zip(names, names[1:])))


@pytest.mark.parametrize("seed,sizes", [(0, (12, 40, 30)), (1, (16, 64)), (2, (8, 20, 20, 10))])
def test_integer_reference_equals_xylosim_bit_for_bit(seed: int, sizes: tuple[int, ...]) -> None:
    g = _net(seed, sizes, 5)
    x = np.random.default_rng(seed).normal(0.5, 1.0, (10, 6, 20))
    r = vendor_check("xylo")(g, x, _Profile())
    assert r["exact"] and r["mismatched_spikes"] == 0 and r["spikes_compared"] > 0
    assert sum(l["spike_count_reference"] for l in r["layers"].values()) > 0
    assert not any(r["state_mismatches"].values())
    assert np.asarray(r["logits"]).shape == (6, 5)
    # the float graph (reference simulator) and the integer chip: measured, mostly the same spikes
    agree = r["vs_float_graph"]["spike_agreement"]
    assert min(agree.values()) > 0.9, agree


def test_saturation_and_multi_spike_paths_match() -> None:
    """Large weights, counts and a tiny threshold: saturating delivery and the 31-spike cap are exercised."""
    rng = np.random.default_rng(5)
    n_in, n_hid, n_out = 16, 24, 3
    cfg = xylo.XyloConfig(
        w_in=rng.integers(-127, 128, (n_in, n_hid)), w_rec=np.triu(rng.integers(-127, 128, (n_hid, n_hid)), 1),
        w_out=rng.integers(-127, 128, (n_hid, n_out)), threshold=rng.integers(1, 3000, n_hid),
        threshold_out=np.full(n_out, 500), bias=rng.integers(-50, 50, n_hid), bias_out=np.zeros(n_out, np.int64),
        dash_syn=rng.integers(0, 5, n_hid), dash_mem=rng.integers(0, 5, n_hid), dash_syn_out=np.full(n_out, 1),
        dash_mem_out=np.full(n_out, 2), weight_shift_in=8, weight_shift_rec=6, weight_shift_out=3,
        layers=[("all", 0, n_hid)], readout_scale=1.0, readout_bias=np.zeros(n_out))
    x = rng.integers(0, 20, (15, 3, n_in))
    a, b = xylo.simulate_xylo_int(cfg, x), xylo.run_xylosim(cfg, x)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert a["spikes"].max() == 31 and np.abs(a["v_mem"]).max() >= 32767 - 3000  # multi-spike cap, near saturation


def test_limits_refused_with_needed_and_available() -> None:
    g = _net(3, (17, 10), 9, host=True)  # 17 inputs > 16, 9 outputs > 8
    with pytest.raises(VendorError, match=r"inputs_per_chip: 17 > 16.*outputs_per_chip: 9 > 8"):
        xylo.xylo_config(g, _Profile())


def test_unsupported_neuron_refused() -> None:
    nodes = {"input": nir.Input(np.array([4])), "fc": nir.Linear(np.ones((3, 4))),
             "lif": nir.LIF(np.full(3, 2.0), np.ones(3), np.zeros(3), np.ones(3)),
             "head": nir.Linear(np.ones((2, 3))), "output": nir.Output(np.array([2]))}
    names = list(nodes)
    g = nir.NIRGraph(nodes=nodes, edges=list(zip(names, names[1:])))
    with pytest.raises(VendorError, match="not a Xylo neuron"):
        xylo.xylo_config(g, _Profile())


def test_registry() -> None:
    assert VENDOR_SIMULATORS["xylo"] == "neuroposter.targets.vendor.xylo:check"
    with pytest.raises(KeyError):
        vendor_check("truenorth")
