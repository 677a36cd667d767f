"""Model cards and the reference-architecture table (neuroposter.report.baselines) on hand-made runs and bundles.

Independent references: the parameter count of the model rebuilt from the run by ``neuroposter.train.run.load_run``
(``sum(p.numel())``) and, for the ViT, by hand; the training budget as the test writes it into ``metrics.json`` and
the manifest; the SDT-paper energy of an ANN = MACs x E_MAC read from the profile's YAML.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from neuroposter.manifest import write_manifest
from neuroposter.profiling.counts import LayerCounts, OpCounts
from neuroposter.profiling.profiles import load_profile
from neuroposter.profiling.stored import StoredCounts, write_op_counts
from neuroposter.report.baselines import (NOT_TRAINED_HERE, model_cards, model_cards_text, reference_table,
                                          reference_table_text, stored_references)
from neuroposter.report.collect import Bundle, RunInfo
from neuroposter.report.tables import PAPER_PROFILE


def _features(ws: Path, size=(64, 48)) -> Path:
    d = ws / "features" / "default"
    d.mkdir(parents=True)
    write_manifest(d, "features", key="feat-key", extra={"input_size": list(size)})
    return d


def _run(ws: Path, name: str, model: str, kwargs: dict, *, module: torch.nn.Module | None, input_meta: dict,
         epochs: int, ran: int, best: int, early: bool, patience: int = 10, qat: dict | None = None) -> RunInfo:
    d = ws / "runs" / name
    d.mkdir(parents=True)
    if module is not None:
        torch.save(module.state_dict(), d / "checkpoint.pt")
    mj = {"model": model, "kwargs": kwargs, "input_meta": input_meta}
    metrics = {"model": model, "test": {"map": 0.5}, "epochs_run": ran, "best_epoch": best, "stopped_early": early}
    if qat:
        metrics["qat"] = qat
    (d / "model.json").write_text(json.dumps(mj))
    (d / "metrics.json").write_text(json.dumps(metrics))
    man = write_manifest(d, "run", key=f"key-{name}",
                         inputs={"features": {"path": str(ws / "features" / "default"), "key": "feat-key"}},
                         config={"model": model, "train": {"epochs": epochs, "patience": patience}},
                         extra={"model": model})
    return RunInfo(name, d, model, metrics, man, mj)


def _nparams(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.fixture
def ws(tmp_path):
    ws = tmp_path / "ws"
    _features(ws)
    return ws


SDT_KW = {"d_in": 24, "n_tokens": 6, "n_classes": 3, "d_model": 16, "depth": 1, "heads": 2, "mlp_hidden": 8}
VIT_KW = {"n_classes": 3, "image_size": 32, "patch_size": 16, "num_layers": 2, "num_heads": 2, "hidden_dim": 8,
          "mlp_dim": 12}


def test_parameters_equal_the_rebuilt_model_and_the_early_stop_is_told(ws):
    from neuroposter.models.sdt import SpikeDrivenTransformer
    from neuroposter.models.vit import ViTClassifier
    from neuroposter.train.run import load_run

    torch.manual_seed(0)
    sdt = _run(ws, "sdt", "sdt", SDT_KW, module=SpikeDrivenTransformer(**SDT_KW),
               input_meta={"T": 4, "n_tokens": 6, "d_in": 24}, epochs=40, ran=14, best=4, early=True, patience=10)
    vit = _run(ws, "vit", "vit", VIT_KW, module=ViTClassifier(**VIT_KW), input_meta={"image_size": 32},
               epochs=3, ran=3, best=3, early=False)
    cards = model_cards([sdt, vit]).set_index("run")
    for r in (sdt, vit):
        assert cards.loc[r.name, "parameters"] == _nparams(load_run(r.path).model)
        assert cards.loc[r.name, "parameters_source"].startswith("checkpoint.pt")
    # the ViT by hand: patch conv, class token, positions (2x2 patches + 1), blocks (2 LN, attention, MLP), LN, head
    D, M, n = 8, 12, 5
    block = 2 * 2 * D + (3 * D * D + 3 * D) + (D * D + D) + (D * M + M) + (M * D + D)
    assert cards.loc["vit", "parameters"] == 3 * 16 * 16 * D + D + D + n * D + 2 * block + 2 * D + D * 3 + 3
    assert cards.loc["sdt", "training"] == "early-stopped after 14 of 40 epochs (patience 10); best epoch 4"
    assert bool(cards.loc["sdt", "stopped_early"]) and cards.loc["sdt", "epochs_planned"] == 40
    assert cards.loc["vit", "training"] == "3 of 3 epochs, no early stop; best epoch 3"
    assert not bool(cards.loc["vit", "stopped_early"])
    assert cards.loc["sdt", "architecture"] == ("SDT, 1 SDSA blocks, width 16, 2 heads, MLP 8, T=4, on 6 tokens of "
                                                "24-d DenseNet-169 features of 64x48 posters")
    assert cards.loc["vit", "architecture"] == "ViT from scratch: patch 16, depth 2, 2 heads, width 8, MLP 12, 32x32 input"
    assert cards.loc["sdt", "input"] == "T=4 x 6 tokens x 24 spikes"


def test_defaults_fill_what_model_json_leaves_out(ws):
    """model.json stores only the kwargs given; the card states the constructor's defaults too."""
    from neuroposter.models.sdt import SDTConfig

    kw = {"d_in": 1664, "n_tokens": 40, "n_classes": 8}
    r = _run(ws, "sdt", "sdt", kw, module=None, input_meta={"T": 4, "n_tokens": 40, "d_in": 1664},
             epochs=3, ran=3, best=1, early=False)
    card = model_cards([r]).iloc[0]
    d = SDTConfig()
    assert card["architecture"].startswith(f"SDT, {d.depth} SDSA blocks, width {d.d_model}, {d.heads} heads, "
                                           f"MLP {d.mlp_hidden}, T=4, on 40 tokens of 1664-d DenseNet-169 features")
    # no checkpoint: the architecture's own count, and the card says where it comes from
    from neuroposter.models.sdt import SpikeDrivenTransformer

    assert card["parameters"] == _nparams(SpikeDrivenTransformer(**kw))
    assert card["parameters_source"].startswith("model.json")


def test_counts_and_qat_budget_on_the_card(ws):
    from neuroposter.models.snn_mlp import SpikingMLPNet

    kw = {"d_in": 20, "n_classes": 3, "hidden1": 6, "hidden2": 5}
    r = _run(ws, "snn-mlp-loihi", "snn-mlp", kw, module=SpikingMLPNet(**kw), input_meta={"T": 4, "d_in": 20},
             epochs=2, ran=2, best=2, early=False,
             qat={"arithmetic": {"target": "loihi"}, "init_from": {"run": "/somewhere/runs/snn-mlp"}})
    layer = LayerCounts(name="fc1", op_type="Affine", kind="synapse", dense_ops=480.0, effective_macs=0.0,
                        effective_acs=123.0)
    r.counts, r.counts_source = OpCounts("snn-mlp-loihi", "snn", 4, 8, (layer,)), "nir bundle (test)"
    no_counts = _run(ws, "other", "snn-mlp", kw, module=None, input_meta={"T": 4, "d_in": 20}, epochs=1, ran=1,
                     best=1, early=False)
    cards = model_cards([r, no_counts]).set_index("run")
    assert cards.loc["snn-mlp-loihi", "synops"] == 123.0 and cards.loc["snn-mlp-loihi", "macs"] == 0.0
    assert cards.loc["snn-mlp-loihi", "architecture"].startswith("spiking MLP 20-6-5-3, T=4")
    assert cards.loc["snn-mlp-loihi", "training"] == ("quantisation-aware (loihi arithmetic): 2 of 2 epochs, no early "
                                                      "stop; best epoch 2; started from run snn-mlp")
    assert pd.isna(cards.loc["other", "synops"])
    assert "no op counts" in cards.loc["other", "notes"]
    text = model_cards_text(model_cards([r]))
    assert len(text) == 1 and "123 SynOps per inference" in text[0] and "0 MACs" not in text[0]


def _onnx_bundle(tmp_path: Path, run: RunInfo, entries: dict) -> Bundle:
    d = tmp_path / "export" / "onnx" / run.name
    d.mkdir(parents=True)
    write_op_counts(d, entries)
    man = write_manifest(d, "export", inputs={"run": {"path": str(run.path), "key": f"key-{run.name}"}},
                         extra={"target": "onnx", "source_run": run.name})
    return Bundle(d, "onnx", run.name, man)


def _ann(name: str, macs: float) -> OpCounts:
    layer = LayerCounts(name="fc", op_type="Gemm", kind="mac", dense_ops=macs, effective_macs=macs,
                        effective_acs=0.0, other_ops=10.0, n_weights=100, weight_bytes=400.0)
    return OpCounts(name, "ann", 1, 1, (layer,), weight_bits=32, state_bits=32)


def test_reference_table_prices_the_stored_references(ws, tmp_path):
    from neuroposter.profiling.reference_models import reference_entries

    cnn = _run(ws, "cnn", "cnn", {"n_classes": 3}, module=None, input_meta={}, epochs=1, ran=1, best=1, early=False)
    refs = reference_entries((64, 48), names=["vit_s_16"])
    fe = StoredCounts(_ann("frontend", 1e6), "front end (test)", {"image_size": [64, 48]})
    b = _onnx_bundle(tmp_path, cnn, {"model": StoredCounts(_ann("cnn", 2e6), "cnn (test)"), "frontend": fe, **refs})
    profiles = {PAPER_PROFILE: load_profile(PAPER_PROFILE)}
    table = reference_table([cnn], [b], profiles)
    assert list(table["reference"]) == ["vit_s_16"]
    row = table.iloc[0]
    macs = refs["reference:vit_s_16"].counts.macs
    assert row["macs"] == macs and row["input_size"] == "64x48" and row["status"] == NOT_TRAINED_HERE
    e_mac = load_profile(PAPER_PROFILE).energy["e_mac_pj"]
    assert row["sdt_paper_mj"] == pytest.approx(macs * e_mac * 1e-9)
    assert row["parameters"] == refs["reference:vit_s_16"].info["parameters"]
    for key in ("int8", "memory", "device"):
        assert (row[f"{key}_mj"] is not None and row[f"{key}_mj"] > 0) or row[f"{key}_reason"]
    text = reference_table_text(table)
    assert "not trained here: cost only" in text[0] and text[1].startswith("- **ViT-S/16**")


def test_reference_table_empty_when_no_bundle_matches_the_posters(ws, tmp_path):
    cnn = _run(ws, "cnn", "cnn", {"n_classes": 3}, module=None, input_meta={}, epochs=1, ran=1, best=1, early=False)
    other = StoredCounts(_ann("reference:vit_s_16", 5e6), "elsewhere", {"requested_size": [224, 224],
                                                                       "image_size": [224, 224]})
    fe = StoredCounts(_ann("frontend", 1e6), "front end (test)", {"image_size": [224, 224]})
    b = _onnx_bundle(tmp_path, cnn, {"frontend": fe, "reference:vit_s_16": other})
    refs, why = stored_references([cnn], [b])
    assert refs == {} and "64x48" in why and "neuroposter export --target onnx" in why
    table = reference_table([cnn], [b], {})
    assert table.empty and "sdt_paper_mj" in table.columns
    assert reference_table_text(table)[0].startswith("Standard architectures not priced")


def test_the_pixel_sdt_card_names_its_stem_and_its_input(ws):
    """The pixel SDT's card: its spiking stem, the tokens it makes, T, and that it reads the image itself; its
    parameter count is the rebuilt model's."""
    from neuroposter.models.sdt_pixels import PixelSDT
    from neuroposter.train.run import load_run

    kw = {"n_classes": 3, "image_size": 16, "T": 2, "c1": 4, "d_model": 8, "depth": 1, "heads": 2, "mlp_hidden": 8}
    torch.manual_seed(0)
    r = _run(ws, "sdt-pixels", "sdt-pixels", kw, module=PixelSDT(**kw), input_meta={"image_size": 16},
             epochs=5, ran=5, best=5, early=False)
    card = model_cards([r]).iloc[0]
    assert card["architecture"] == ("pixel SDT: spiking stem conv3x3 3->4 + LIF, 2x2 pool, conv3x3 4->8 + LIF, "
                                    "2x2 pool -> 16 tokens; 1 SDSA blocks, width 8, 2 heads, MLP 8, T=2, on the "
                                    "16x16 image (direct encoding: no front end)")
    assert card["input"] == "16x16 RGB image, the same current at each of T=2 steps"
    assert card["parameters"] == _nparams(load_run(r.path).model)
