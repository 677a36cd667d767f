"""The onnx target: CNN, ViT and the ANN transformer exported, checked and run in onnxruntime."""

from __future__ import annotations

import json

import onnx
import numpy as np
import pytest
import torch

from neuroposter._io import atomic_write_json
from neuroposter.manifest import write_manifest
from neuroposter.targets import ExportRequest, get_exporter
from neuroposter.targets.onnx_target import OPSET, export_onnx, verify_onnx


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _make_run(run_dir, model, name: str, kwargs: dict) -> None:
    run_dir.mkdir(parents=True)
    torch.save(model.state_dict(), run_dir / "checkpoint.pt")
    atomic_write_json(run_dir / "model.json", {"model": name, "kwargs": kwargs})
    write_manifest(run_dir, "run", inputs={}, key="k", extra={"model": name})


def _ann():
    from neuroposter.models.ann_transformer import ANNTransformer, ANNTransformerConfig

    cfg = ANNTransformerConfig(d_in=32, n_tokens=6, d_model=16, depth=2, heads=4, mlp_hidden=24, n_classes=5)
    torch.manual_seed(0)
    return ANNTransformer(cfg).eval(), cfg


def test_ann_transformer_tokens_to_logits(tmp_path) -> None:
    model, cfg = _ann()
    x = torch.randn(7, cfg.n_tokens, cfg.d_in)
    facts = export_onnx(model, x[:1], tmp_path / "m.onnx", input_name="tokens")
    assert facts["opset"] == OPSET == 17
    assert facts["inputs"]["tokens"] == ["batch", cfg.n_tokens, cfg.d_in]
    assert facts["outputs"]["logits"] == ["batch", cfg.n_classes]
    assert onnx.load(str(tmp_path / "m.onnx")).opset_import[0].version == 17
    check = verify_onnx(tmp_path / "m.onnx", model, x)
    assert check["samples"] == 7 and check["max_rel_diff"] < 1e-4 and check["single_sample_max_abs_diff"] < 1e-4


def test_vit_images_to_logits(tmp_path) -> None:
    from neuroposter.models.vit import ViTClassifier

    torch.manual_seed(0)
    model = ViTClassifier(4, image_size=32, patch_size=16, num_layers=1, num_heads=2, hidden_dim=16,
                          mlp_dim=32).eval()
    with torch.no_grad():  # torchvision zero-initialises the head: give it weights so logits are not all 0
        for p in model.parameters():
            if not p.any():
                p.normal_(0.0, 0.5)
    x = torch.randn(3, 3, 32, 32)
    facts = export_onnx(model, x[:1], tmp_path / "v.onnx", input_name="images")
    assert facts["inputs"]["images"] == ["batch", 3, 32, 32]
    check = verify_onnx(tmp_path / "v.onnx", model, x)
    assert check["max_rel_diff"] < 1e-4 and check["logit_scale"] >= 1.0


@pytest.mark.slow
def test_cnn_images_to_logits(tmp_path) -> None:
    from neuroposter.models.cnn import CNNClassifier

    torch.manual_seed(0)
    model = CNNClassifier(4, weights="random").eval()
    x = torch.randn(2, 3, 64, 64)
    facts = export_onnx(model, x[:1], tmp_path / "c.onnx", input_name="images")
    assert facts["inputs"]["images"] == ["batch", 3, 64, 64] and facts["outputs"]["logits"] == ["batch", 4]
    assert verify_onnx(tmp_path / "c.onnx", model, x)["max_rel_diff"] < 1e-4


def test_onnx_target_bundle(tmp_path, monkeypatch) -> None:

    model, cfg = _ann()
    ws = tmp_path / "ws"
    _make_run(ws / "runs" / "ann-transformer", model, "ann-transformer", cfg.to_dict())
    x = torch.randn(4, cfg.n_tokens, cfg.d_in, generator=torch.Generator().manual_seed(0))
    from neuroposter.targets import inputs

    labels = (np.random.default_rng(0).random((4, cfg.n_classes)) < 0.5).astype(np.uint8)
    monkeypatch.setattr(inputs, "evaluation_inputs", lambda loaded, run_dir, *, samples, split="test", seed=None: (
        inputs.EvalInputs(x[:samples], labels[:samples], np.arange(min(samples, 4)), "encoded",
                          tmp_path / "enc", "e", split, None, "test feature tokens of stub")))
    out = tmp_path / "out"
    res = get_exporter("onnx")(ExportRequest("onnx", ws / "runs" / "ann-transformer", out, ws, {}))
    assert res.ok, res.lines
    summary = json.loads((out / "summary.json").read_text())
    v = summary["verification"]["deployed_vs_trained"]         # onnxruntime vs the trained model, the whole split
    assert v["max_abs_logit_diff"] < 1e-4 and summary["opset"] == 17 and v["samples"] == 4
    assert v["set_agreement"] == 1.0 and v["map"]["diff"] == 0.0 and v["intervals"]["set_agreement"] == [1.0, 1.0]
    assert {g["metric"]: g["ok"] for g in summary["gates"]} == {"set_agreement": True, "max_rel_diff": True}
    assert summary["inputs_source"] == "test feature tokens of stub"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "export" and "model.onnx" in manifest["artifacts"]
    assert manifest["inputs"]["encoded"]["key"] == "e" and "model.onnx" in manifest["files"]
    # the op counts of model.onnx are stored with the bundle (hashed by its manifest); no backbone, no front end
    from neuroposter.profiling.onnx_counts import count_onnx
    from neuroposter.profiling.stored import read_op_counts

    assert "op_counts.json" in manifest["files"]
    stored = read_op_counts(out)
    assert set(stored) == {"model"}
    c = stored["model"].counts
    assert c.name == "ann-transformer" and c.weight_bits == 32
    assert c.totals() == count_onnx(out / "model.onnx").totals() and c.macs > 0
    assert stored["model"].provenance.startswith(f"ONNX bundle {out / 'model.onnx'} (sha256 ")


def test_onnx_target_never_falls_back_to_random_inputs(tmp_path) -> None:
    from neuroposter.errors import ManifestError

    model, cfg = _ann()
    ws = tmp_path / "ws"
    _make_run(ws / "runs" / "ann-transformer", model, "ann-transformer", cfg.to_dict())   # names no encoded set
    with pytest.raises(ManifestError, match="names no encoded set"):
        get_exporter("onnx")(ExportRequest("onnx", ws / "runs" / "ann-transformer", tmp_path / "out", ws, {}))
    run = ws / "runs" / "cnn"
    run.mkdir(parents=True)
    write_manifest(run, "run", inputs={"features": {"path": str(ws / "features" / "gone"), "key": "f"}},
                   extra={"model": "cnn"})
    from types import SimpleNamespace

    from neuroposter.targets.inputs import evaluation_inputs

    loaded = SimpleNamespace(model_name="cnn", model=None, manifest=json.loads((run / "manifest.json").read_text()))
    with pytest.raises(ManifestError, match=r"feature store .*gone.* is missing; re-create it with `neuroposter features`"):
        evaluation_inputs(loaded, run, samples=2)
    assert not (tmp_path / "out").exists()
