"""Speck: sinabs' IAF layers against the project's reference simulator (not the chip: samna is unavailable)."""

from __future__ import annotations

import nir
import numpy as np
import pytest

from neuroposter.targets.vendor import VendorError
from neuroposter.targets.vendor import speck

pytest.importorskip("sinabs.layers")


def _net(seed: int, host: bool) -> nir.NIRGraph:
    rng = np.random.default_rng(seed)
    d, nin, h1, h2, c = 10, 8, 16, 12, 4
    nodes: dict[str, nir.NIRNode] = {"input": nir.Input(np.array([d if host else nin]))}
    if host:
        nodes["proj"] = nir.Affine(rng.normal(0, 0.5, (nin, d)), rng.normal(0, 0.2, nin), metadata={"placement": "host"})
        nodes["plif"] = nir.LIF(np.full(nin, 2.0), np.ones(nin), np.zeros(nin), np.full(nin, 0.5),
                                metadata={"placement": "host"})
    nodes.update({
        "fc1": nir.Affine(rng.normal(0, 0.5, (h1, nin)), rng.normal(0, 0.1, h1)),
        "if1": nir.IF(np.ones(h1), np.ones(h1), np.zeros(h1)),
        "fc2": nir.Linear(rng.normal(0, 0.4, (h2, h1))),
        "if2": nir.IF(np.ones(h2), np.full(h2, 0.8), np.zeros(h2)),
        "fc3": nir.Affine(rng.normal(0, 0.3, (c, h2)), rng.normal(0, 0.1, c)),
        "output": nir.Output(np.array([c]))})
    names = list(nodes)
    return nir.NIRGraph(nodes=nodes, edges=list(zip(names, names[1:])))


@pytest.mark.parametrize("seed,host", [(1, True), (2, False)])
def test_sinabs_matches_reference_spike_for_spike(seed: int, host: bool) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(0.5, 1.0, (10, 5, 10)) if host else (rng.random((10, 5, 8)) < 0.4).astype(np.float64)
    r = speck.check(_net(seed, host), x, None)
    assert r["exact"] and r["spikes_compared"] == 10 * 5 * 28
    assert all(l["spike_count_reference"] > 0 for l in r["layers"].values())
    assert r["logits_max_abs_diff"] < 1e-5
    assert "not Speck's chip simulator" in r["simulator"]


def test_support_says_why_no_vendor_simulator() -> None:
    s = speck.speck_support()
    assert s["vendor_simulator"] is None and "samna" in s["vendor_simulator_reason"]
    assert s["sinabs_importable"] is True


def test_if_with_gain_refused() -> None:
    g = _net(3, False)
    g.nodes["if1"] = nir.IF(np.full(16, 2.0), np.ones(16), np.zeros(16))
    with pytest.raises(VendorError, match="r != 1"):
        speck.check(g, np.zeros((3, 2, 8)), None)
