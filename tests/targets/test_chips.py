"""Simulated chips: refuse what they cannot host (naming node and limit), export what they can."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from neuroposter.profiling.profiles import load_profile
from neuroposter.targets.base import ExportRequest
from neuroposter.targets.chips import check_chip
from neuroposter.targets.loihi.examples import chain_graph, sdt_like_graph


def test_xylo_refuses_threshold_and_conv_fan_in() -> None:
    ok, violations, _ = check_chip(sdt_like_graph(), load_profile("xylo"))
    assert not ok
    assert any("'attn.and_kv' (Threshold)" in v for v in violations)


def test_truenorth_refuses_fan_in_above_its_crossbar() -> None:
    ok, violations, _ = check_chip(chain_graph(sizes=(300, 20, 10, 3)), load_profile("truenorth"))
    assert not ok
    assert any("fan-in 300 of node 'lif0'" in v and "256" in v for v in violations)


def test_speck_refuses_lif() -> None:
    ok, violations, _ = check_chip(chain_graph(), load_profile("speck"))
    assert not ok and any("'lif0' (LIF)" in v for v in violations)


def test_spinnaker_hosts_a_small_chain() -> None:
    ok, violations, _ = check_chip(chain_graph(), load_profile("spinnaker"))
    assert ok, violations


def _stub(monkeypatch, model, name, x):
    import neuroposter.targets.loihi as loihi
    import neuroposter.train as train

    labels = (np.random.default_rng(0).random((x.shape[1], 3)) < 0.4).astype(np.uint8)
    run = SimpleNamespace(model=model.eval(), model_name=name, manifest={"key": "k"}, metrics={}, config={})
    monkeypatch.setattr(train, "load_run", lambda run_dir: run)
    monkeypatch.setattr(loihi, "_load_inputs", lambda req, loaded, samples, split, seed: (
        x, labels, np.arange(x.shape[1]), {"path": "stub", "key": "stub", "split": split, "T": x.shape[0]}))


@pytest.mark.slow
@pytest.mark.parametrize("chip", ["spinnaker", "spinnaker2", "truenorth", "xylo", "speck"])
def test_every_chip_exports_or_refuses_the_sdt_naming_the_limit(monkeypatch, tmp_path, chip) -> None:
    from neuroposter.models.sdt import SDTConfig, SpikeDrivenTransformer
    from neuroposter.targets.chips import export

    torch.manual_seed(0)
    model = SpikeDrivenTransformer(SDTConfig(d_in=8, n_tokens=3, d_model=8, depth=1, heads=2, mlp_hidden=8,
                                             n_classes=3))
    _stub(monkeypatch, model, "sdt", (np.random.default_rng(1).random((4, 3, 3, 8)) < 0.4).astype(np.uint8))
    res = export(ExportRequest(chip, tmp_path / "r", tmp_path / chip, tmp_path, {}))
    s = json.loads((tmp_path / chip / "summary.json").read_text())
    assert (tmp_path / chip / "mapping.json").is_file()
    if res.ok:
        assert s["verification"]["vs_float_model"]["prediction_agreement"] >= 0.0
    else:
        assert "cannot host" in s["reason"] and "node '" in s["reason"]
        assert any("REFUSED" in line for line in res.lines)


@pytest.mark.slow
def test_chip_export_of_a_hostable_mlp(monkeypatch, tmp_path) -> None:
    from neuroposter.models import build_model
    from neuroposter.targets.chips import export

    torch.manual_seed(0)
    model = build_model("snn-mlp", d_in=12, hidden1=10, hidden2=8, n_classes=3)
    _stub(monkeypatch, model, "snn-mlp", (np.random.default_rng(2).random((4, 4, 1, 12)) < 0.4).astype(np.uint8))
    res = export(ExportRequest("spinnaker", tmp_path / "r", tmp_path / "sp", tmp_path, {}))
    assert res.ok, res.lines
    assert (tmp_path / "sp" / "graph_q.nir").is_file()
    assert res.summary["precision"]["weight_bits"] == 16
